/* RAID module: every level against a reference image, bad input, overlapping
 * writes from several reactors, silent corruption (error bdevs flip bits
 * under members), member failure with rebuild, and reassembly from
 * superblocks after an engine restart (clean, stale member). The crash test
 * (SIGKILL during partial-stripe writes) is raid_crash_test.c. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "flexbso/json.h"
#include "flexbso/thread.h"

#define BS 4096u

static uint64_t seed = 0x5eed1234abcdull;

static uint64_t rnd(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return seed;
}

/* ------------------------------------------------------------ helpers */

static int rpc_result(struct fb_engine *e, const char *method, const char *params, char **out,
		      struct fb_err *err)
{
	*out = NULL;
	return fb_rpc_call(e, method, params, out, err);
}

/* One raid's object from bdev_raid_get_bdevs (parsed; caller frees). */
static struct fb_json_val *raid_info(struct fb_engine *e, const char *name)
{
	struct fb_err err;
	char *res;
	struct fb_json_val *v, *hit = NULL;

	CHECK_OK(rpc_result(e, "bdev_raid_get_bdevs", "{\"category\":\"all\"}", &res, &err));
	v = fb_json_parse(res, strlen(res), &err);
	CHECK(v);
	free(res);
	for (size_t i = 0; i < fb_json_val_array_size(v); i++) {
		const char *n;

		if (!fb_json_val_string(fb_json_val_object_get(fb_json_val_array_get(v, i), "name"), &n) &&
		    !strcmp(n, name))
			hit = (struct fb_json_val *)fb_json_val_array_get(v, i);
	}
	CHECK(hit);
	/* Keep the whole document alive: callers free it through info_free. */
	return v;
}

static const struct fb_json_val *info_of(const struct fb_json_val *doc, const char *name)
{
	for (size_t i = 0; i < fb_json_val_array_size(doc); i++) {
		const char *n;
		const struct fb_json_val *o = fb_json_val_array_get(doc, i);

		if (!fb_json_val_string(fb_json_val_object_get(o, "name"), &n) && !strcmp(n, name))
			return o;
	}
	return NULL;
}

static uint64_t info_u64(struct fb_engine *e, const char *raid, const char *obj, const char *key)
{
	struct fb_json_val *doc = raid_info(e, raid);
	const struct fb_json_val *o = info_of(doc, raid);
	uint64_t v = UINT64_MAX;

	if (obj)
		o = fb_json_val_object_get(o, obj);
	CHECK(o);
	CHECK(fb_json_val_uint64(fb_json_val_object_get(o, key), &v) == 0);
	fb_json_val_free(doc);
	return v;
}

/* State of base bdev slot i ("online", "failed", ...), copied into out. */
static void member_state(struct fb_engine *e, const char *raid, unsigned i, char *out, size_t len)
{
	struct fb_json_val *doc = raid_info(e, raid);
	const struct fb_json_val *l = fb_json_val_object_get(info_of(doc, raid), "base_bdevs_list");
	const char *s = "?";

	CHECK(fb_json_val_string(fb_json_val_object_get(fb_json_val_array_get(l, i), "state"), &s) == 0);
	snprintf(out, len, "%s", s);
	fb_json_val_free(doc);
}

static void raid_state(struct fb_engine *e, const char *raid, char *out, size_t len)
{
	struct fb_json_val *doc = raid_info(e, raid);
	const char *s = "?";

	CHECK(fb_json_val_string(fb_json_val_object_get(info_of(doc, raid), "state"), &s) == 0);
	snprintf(out, len, "%s", s);
	fb_json_val_free(doc);
}

struct count_arg {
	const char *type;
	const char *needle;
	uint64_t n, last;
};

static int count_cb(const struct fb_notification *n, void *arg)
{
	struct count_arg *c = arg;

	c->last = n->id;
	if (!strcmp(n->type, c->type) && (!c->needle || strstr(n->ctx_json, c->needle)))
		c->n++;
	return 0;
}

/* Notifications of `type` (whose ctx contains needle, if given) after id since. */
static uint64_t notes(struct fb_engine *e, const char *type, const char *needle, uint64_t since)
{
	struct count_arg c = {.type = type, .needle = needle};

	fb_notify_foreach(e, since, 0, count_cb, &c);
	return c.n;
}

static uint64_t last_note(struct fb_engine *e)
{
	struct count_arg c = {.type = ""};

	fb_notify_foreach(e, 0, 0, count_cb, &c);
	return c.last;
}

static const char *level_str(int level)
{
	return level == 0 ? "raid0" : level == 1 ? "raid1" : level == 5 ? "raid5f" : "raid10";
}

/* Members M<i> (malloc), optionally under error bdevs EE_M<i>; the raid
 * is "R". Returns the raid's size in blocks. */
static uint64_t make_raid(struct fb_engine *e, int level, unsigned n, uint64_t member_blocks,
			  unsigned strip_kb, bool error_bdevs, bool superblock, const char *safe)
{
	struct fb_err err;
	char members[512] = "", name[32];
	struct fb_bdev_desc *d;
	uint64_t nb;

	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "M%u", i);
		CHECK_OK(th_malloc(e, name, member_blocks, BS, &err));
		if (error_bdevs)
			CHECK_OK(th_error_create(e, name, &err));
		snprintf(members + strlen(members), sizeof(members) - strlen(members), "%s\"%s%s\"",
			 i ? "," : "", error_bdevs ? "EE_" : "", name);
	}
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"R\",\"raid_level\":\"%s\",\"base_bdevs\":[%s],"
			"\"strip_size_kb\":%u,\"superblock\":%s,\"safe_read\":\"%s\"}",
			level_str(level), members, strip_kb, superblock ? "true" : "false", safe));
	CHECK_OK(th_open(e, "R", false, &d, &err));
	nb = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d));
	fb_bdev_close(d);
	return nb;
}

static void set_safe_read(struct fb_engine *e, const char *mode)
{
	struct fb_err err;

	CHECK_OK(th_rpc(e, &err, "bdev_raid_set_safe_read", "{\"name\":\"R\",\"safe_read\":\"%s\"}",
			mode));
}

/* Member data_offset (blocks) from bdev_raid_get_bdevs. */
static uint64_t data_offset(struct fb_engine *e)
{
	struct fb_json_val *doc = raid_info(e, "R");
	const struct fb_json_val *l = fb_json_val_object_get(info_of(doc, "R"), "base_bdevs_list");
	uint64_t v = 0;

	CHECK(fb_json_val_uint64(fb_json_val_object_get(fb_json_val_array_get(l, 0), "data_offset"),
				 &v) == 0);
	fb_json_val_free(doc);
	return v;
}

/* Reads the whole array in chunks and compares with ref. */
static void check_all(struct fb_engine *e, struct fb_bdev_desc *d, const uint8_t *ref, uint64_t nb)
{
	const uint64_t chunk = 64;
	uint8_t *buf = th_aligned(4096, chunk * BS);

	for (uint64_t b = 0; b < nb; b += chunk) {
		uint64_t num = nb - b < chunk ? nb - b : chunk;

		CHECK_EQ(th_read(e, (unsigned)(b / chunk) % fb_engine_reactor_count(e), d, buf, b, num), 0);
		if (memcmp(buf, ref + b * BS, num * BS))
			th_fail(__FILE__, __LINE__, "array blocks %llu+%llu differ from the reference",
				(unsigned long long)b, (unsigned long long)num);
	}
	free(buf);
}

static void random_write(struct fb_engine *e, struct fb_bdev_desc *d, uint8_t *ref, uint64_t nb,
			 uint64_t max_blocks, uint8_t *buf)
{
	uint64_t num = 1 + rnd() % max_blocks, off;

	if (num > nb)
		num = nb;
	off = rnd() % (nb - num + 1);
	th_fill_random(buf, num * BS, &seed);
	CHECK_EQ(th_write(e, (unsigned)(rnd() % fb_engine_reactor_count(e)), d, buf, off, num), 0);
	memcpy(ref + off * BS, buf, num * BS);
}

static void random_read(struct fb_engine *e, struct fb_bdev_desc *d, const uint8_t *ref, uint64_t nb,
			uint64_t max_blocks, uint8_t *buf)
{
	uint64_t num = 1 + rnd() % max_blocks, off;

	if (num > nb)
		num = nb;
	off = rnd() % (nb - num + 1);
	CHECK_EQ(th_read(e, (unsigned)(rnd() % fb_engine_reactor_count(e)), d, buf, off, num), 0);
	if (memcmp(buf, ref + off * BS, num * BS))
		th_fail(__FILE__, __LINE__, "read %llu+%llu differs from the reference",
			(unsigned long long)off, (unsigned long long)num);
}

/* ------------------------------------------------------------ bad input */

TEST(bad_input)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	int rc;

	CHECK_OK(th_malloc(e, "A", 1024, BS, &err));
	CHECK_OK(th_malloc(e, "B", 1024, BS, &err));
	CHECK_OK(th_malloc(e, "C", 1024, BS, &err));
	CHECK_OK(th_malloc(e, "S", 8192, 512, &err));
#define BAD(code, needle, params)                                                              \
	do {                                                                                   \
		rc = th_rpc(e, &err, "bdev_raid_create", params);                             \
		if (rc != (code) || !strstr(err.msg, needle))                                 \
			th_fail(__FILE__, __LINE__, "%s: got %d '%s', want %d naming %s", params, rc, \
				err.msg, code, needle);                                        \
	} while (0)
	BAD(-22, "raid_level", "{\"name\":\"X\",\"raid_level\":\"raid6\",\"base_bdevs\":[\"A\",\"B\",\"C\"],\"strip_size_kb\":64}");
	BAD(-22, "base_bdevs", "{\"name\":\"X\",\"raid_level\":\"5f\",\"base_bdevs\":[\"A\",\"B\"],\"strip_size_kb\":64}");
	BAD(-22, "base_bdevs", "{\"name\":\"X\",\"raid_level\":\"10\",\"base_bdevs\":[\"A\",\"B\",\"C\"],\"strip_size_kb\":64}");
	BAD(-22, "base_bdevs", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"A\"]}");
	BAD(-22, "strip_size_kb", "{\"name\":\"X\",\"raid_level\":\"raid0\",\"base_bdevs\":[\"A\",\"B\"],\"strip_size_kb\":48}");
	BAD(-22, "strip_size_kb", "{\"name\":\"X\",\"raid_level\":\"raid0\",\"base_bdevs\":[\"A\",\"B\"]}");
	BAD(-22, "strip_size_kb", "{\"name\":\"X\",\"raid_level\":\"raid0\",\"base_bdevs\":[\"A\",\"B\"],\"strip_size_kb\":2}");
	BAD(-22, "listed twice", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"A\",\"A\"]}");
	BAD(-19, "Nope", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"A\",\"Nope\"]}");
	BAD(-22, "block size", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"A\",\"S\"]}");
	BAD(-22, "safe_read", "{\"name\":\"X\",\"raid_level\":\"raid0\",\"base_bdevs\":[\"A\",\"B\"],\"strip_size_kb\":64,\"safe_read\":\"repair\"}");
	BAD(-22, "safe_read", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"A\",\"B\"],\"safe_read\":\"always\"}");
	/* A failed create left nothing claimed: A and B make an array now... */
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"R1\",\"raid_level\":\"1\",\"base_bdevs\":[\"A\",\"B\"]}"));
	/* ...and a member of it cannot join another. */
	BAD(-22, "'B'", "{\"name\":\"X\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"C\",\"B\"]}");
	rc = th_rpc(e, &err, "bdev_raid_create",
		    "{\"name\":\"R1\",\"raid_level\":\"1\",\"base_bdevs\":[\"C\",\"S\"]}");
	CHECK(rc == -17 || rc == -22);
	rc = th_rpc(e, &err, "bdev_raid_delete", "{\"name\":\"nope\"}");
	CHECK_EQ(rc, -19);
	rc = th_rpc(e, &err, "bdev_raid_get_bdevs", "{\"category\":\"weird\"}");
	CHECK_EQ(rc, -22);
	CHECK(strstr(err.msg, "category"));
	CHECK_OK(th_rpc(e, &err, "bdev_raid_delete", "{\"name\":\"R1\"}"));
	/* Deleting released the members. */
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"R2\",\"raid_level\":\"raid0\",\"base_bdevs\":[\"A\",\"B\",\"C\"],"
			"\"strip_size_kb\":4}"));
#undef BAD
	fb_engine_destroy(e);
}

/* ------------------------------------------------- randomized I/O */

/* strip_kb 64 and more than two reactors: children of 64 KiB run on their
 * members' home reactors (with the full-row CRC and parity work). */
static void random_io_on(int level, unsigned n, const char *safe, bool superblock,
			 unsigned strip_kb, unsigned reactors)
{
	struct fb_engine *e = th_engine(reactors);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t sb = strip_kb * 1024 / BS;
	uint64_t nb = make_raid(e, level, n, 768 + 64 * sb, strip_kb, false, superblock, safe);
	/* Up to a bit more than two RAID5 rows. */
	uint64_t maxb = sb * (uint64_t)n * 2 + 3;
	uint8_t *ref = calloc(nb, BS), *buf = th_aligned(4096, maxb * BS);

	fprintf(stderr, "    %s x%u safe_read=%s superblock=%d strip=%uK reactors=%u: %llu blocks\n",
		level_str(level), n, safe, superblock, strip_kb, reactors, (unsigned long long)nb);
	CHECK(ref);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	check_all(e, d, ref, nb);  /* a new array reads zeroes */
	for (int i = 0; i < 400; i++) {
		if (rnd() % 2)
			random_write(e, d, ref, nb, maxb, buf);
		else
			random_read(e, d, ref, nb, maxb, buf);
	}
	check_all(e, d, ref, nb);
	if (level != 0) {
		/* Copies and parity agree everywhere. */
		set_safe_read(e, "verify");
		check_all(e, d, ref, nb);
		CHECK_EQ(info_u64(e, "R", "safe_read_stats", "verify_mismatches"), 0);
	}
	fb_bdev_close(d);
	free(ref);
	free(buf);
	fb_engine_destroy(e);
}

static void random_io(int level, unsigned n, const char *safe, bool superblock)
{
	random_io_on(level, n, safe, superblock, 16, 2);
}

TEST(random_io_all_levels)
{
	random_io(0, 3, "off", false);
	random_io(1, 2, "off", false);
	random_io(1, 3, "repair", true);
	random_io(10, 4, "off", true);
	random_io(10, 4, "verify", false);
	random_io(5, 3, "off", false);
	random_io(5, 4, "repair", true);
	random_io(5, 5, "verify", true);
	random_io_on(5, 4, "repair", true, 64, 3);
	random_io_on(10, 4, "off", false, 64, 3);
	random_io_on(5, 3, "verify", false, 64, 2);
}

/* ------------------------------------------ overlapping writes, reactors */

struct burst {
	struct fb_engine *e;
	struct fb_bdev_desc *d;
	uint8_t *data;           /* per write: BS bytes */
	uint64_t *lba;
	unsigned count, first;
	atomic_uint done;
	atomic_int failed;
	struct fb_io_channel *ch;
	struct iovec iov[24];    /* must live until each write completes */
};

static void burst_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct burst *b = arg;

	fb_bdev_free_io(io);
	if (status)
		atomic_store(&b->failed, status);
	atomic_fetch_add(&b->done, 1);
}

static void burst_msg(void *arg)
{
	struct burst *b = arg;

	b->ch = fb_bdev_get_io_channel(b->d);
	for (unsigned i = b->first; i < b->first + b->count; i++) {
		int rc;

		b->iov[i] = (struct iovec){b->data + (size_t)i * BS, BS};
		rc = fb_bdev_writev_blocks(b->d, b->ch, &b->iov[i], 1, b->lba[i], 1, 0, burst_done, b);

		if (rc) {
			atomic_store(&b->failed, rc);
			atomic_fetch_add(&b->done, 1);
		}
	}
}

static void put_ch_msg(void *arg)
{
	struct burst *b = arg;

	fb_put_io_channel(b->ch);
}

TEST(overlapping_writes_two_reactors)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t nb = make_raid(e, 5, 4, 512, 16, false, true, "off");
	uint8_t *ref = calloc(nb, BS);
	const unsigned per = 12;
	uint8_t *data = th_aligned(4096, (size_t)per * 2 * BS);
	uint64_t lba[24];

	CHECK_OK(th_open(e, "R", true, &d, &err));
	for (int round = 0; round < 30; round++) {
		struct burst b[2];
		uint64_t row = rnd() % (nb / 12 - 1);
		uint64_t deadline = fb_now_ns() + 30ull * 1000000000ull;

		/* The 24 data blocks of two adjacent rows (12 each), shuffled,
		 * half written from each reactor at once: read-modify-writes
		 * and reconstruct-writes race for the same parity unless rows
		 * serialize. */
		for (unsigned i = 0; i < 24; i++)
			lba[i] = row * 12 + i;
		for (unsigned i = 23; i > 0; i--) {
			unsigned k = (unsigned)(rnd() % (i + 1));
			uint64_t t = lba[i];

			lba[i] = lba[k];
			lba[k] = t;
		}
		th_fill_random(data, (size_t)2 * per * BS, &seed);
		for (int k = 0; k < 2; k++) {
			b[k] = (struct burst){.e = e, .d = d, .data = data, .lba = lba, .count = 12,
					      .first = (unsigned)k * 12};
			atomic_init(&b[k].done, 0);
			atomic_init(&b[k].failed, 0);
		}
		fb_reactor_send(fb_engine_get_reactor(e, 0), burst_msg, &b[0]);
		fb_reactor_send(fb_engine_get_reactor(e, 1), burst_msg, &b[1]);
		while ((atomic_load(&b[0].done) < 12 || atomic_load(&b[1].done) < 12) &&
		       fb_now_ns() < deadline)
			usleep(100);
		CHECK(atomic_load(&b[0].done) == 12 && atomic_load(&b[1].done) == 12);
		CHECK_EQ(atomic_load(&b[0].failed), 0);
		CHECK_EQ(atomic_load(&b[1].failed), 0);
		fb_reactor_run_sync(fb_engine_get_reactor(e, 0), put_ch_msg, &b[0]);
		fb_reactor_run_sync(fb_engine_get_reactor(e, 1), put_ch_msg, &b[1]);
		for (unsigned i = 0; i < 24; i++)
			memcpy(ref + lba[i] * BS, data + (size_t)i * BS, BS);
	}
	check_all(e, d, ref, nb);
	set_safe_read(e, "verify");
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	free(data);
	fb_engine_destroy(e);
}

/* ----------------------------------------------------- corruption */

/* Member slot and member block that array block `lba` is read from by the
 * fast path (raid.h's layout; RAID1/10 read copy member_row % copies). */
static void read_target(int level, unsigned n, uint64_t strip, uint64_t lba, unsigned *member,
			uint64_t *mblk)
{
	if (level == 5) {
		uint64_t row = lba / (strip * (n - 1)), k = (lba % (strip * (n - 1))) / strip;
		unsigned p = n - 1 - (unsigned)(row % n);

		*member = (unsigned)((p + 1 + k) % n);
		*mblk = row * strip + lba % strip;
	} else if (level == 1) {
		*mblk = lba;
		*member = (unsigned)((lba / strip) % n);
	} else {
		uint64_t s = lba / strip, groups = n / 2, mrow = s / groups;

		*member = (unsigned)(s % groups) * 2 + (unsigned)(mrow % 2);
		*mblk = mrow * strip + lba % strip;
	}
}

static void corruption(int level, unsigned n, const char *mode, unsigned flips)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	const uint64_t strip = 4;
	uint64_t nb = make_raid(e, level, n, 1024, 16, true, true, mode);
	uint64_t data_off = (uint64_t)-1, since = last_note(e);
	uint8_t *ref = calloc(nb, BS), *buf = th_aligned(4096, 64 * BS);
	bool verify = !strcmp(mode, "verify");
	unsigned failed_reads = 0;

	fprintf(stderr, "    %s x%u safe_read=%s: %u flips\n", level_str(level), n, mode, flips);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	for (uint64_t b = 0; b < nb; b += 64) {
		uint64_t num = nb - b < 64 ? nb - b : 64;

		th_fill_random(ref + b * BS, num * BS, &seed);
		CHECK_EQ(th_write(e, 0, d, ref + b * BS, b, num), 0);
	}
	data_off = data_offset(e);
	for (unsigned i = 0; i < flips; i++) {
		uint64_t lba = rnd() % nb, mblk;
		unsigned m;

		read_target(level, n, strip, lba, &m, &mblk);
		/* verify reads each copy or strip once; repair reads the bad one
		 * twice (the CRC check, then the repair's look at every copy). */
		CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
				"{\"name\":\"EE_M%u\",\"io_type\":\"read\",\"error_type\":\"corrupt_data\","
				"\"num\":%u,\"offset_blocks\":%llu,\"num_blocks\":1,"
				"\"corrupt_offset\":%u,\"corrupt_value\":%u}",
				m, verify ? 1 : 2, (unsigned long long)(data_off + mblk),
				(unsigned)(rnd() % BS), 1u << (rnd() % 8)));
		memset(buf, 0, BS);
		int rc = th_read(e, (unsigned)(i % 2), d, buf, lba, 1);

		if (verify) {
			if (rc == 0)
				th_fail(__FILE__, __LINE__, "flip %u at lba %llu (member %u block %llu) "
					"was not detected", i, (unsigned long long)lba, m,
					(unsigned long long)mblk);
			CHECK_EQ(rc, -EIO);
			failed_reads++;
		} else {
			CHECK_EQ(rc, 0);
			if (memcmp(buf, ref + lba * BS, BS))
				th_fail(__FILE__, __LINE__, "flip %u: repair returned wrong data at lba %llu",
					i, (unsigned long long)lba);
		}
		CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
				"{\"name\":\"EE_M%u\",\"io_type\":\"clear\",\"error_type\":\"failure\"}", m));
	}
	if (verify) {
		CHECK_EQ(failed_reads, flips);
		CHECK_EQ(info_u64(e, "R", "safe_read_stats", "verify_mismatches"), flips);
		CHECK_EQ(notes(e, "raid_safe_read_mismatch", NULL, since), flips);
	} else {
		char needle[64];

		CHECK_EQ(info_u64(e, "R", "safe_read_stats", "repairs"), flips);
		CHECK_EQ(notes(e, "raid_safe_read_repair", NULL, since), flips);
		snprintf(needle, sizeof(needle), "\"member\":\"EE_M");
		CHECK_EQ(notes(e, "raid_safe_read_repair", needle, since), flips);
		/* A scrub afterwards finds nothing left to fix. */
		CHECK_OK(th_rpc(e, &err, "bdev_raid_scrub_start", "{\"name\":\"R\"}"));
		uint64_t deadline = fb_now_ns() + 60ull * 1000000000ull;

		while (notes(e, "raid_scrub_done", NULL, since) == 0 && fb_now_ns() < deadline)
			usleep(2000);
		CHECK_EQ(notes(e, "raid_scrub_done", NULL, since), 1);
		CHECK_EQ(info_u64(e, "R", "process", "mismatches_found"), 0);
	}
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	free(buf);
	fb_engine_destroy(e);
}

TEST(corruption_1000_flips)
{
	corruption(1, 2, "repair", 1000);
	corruption(1, 3, "verify", 1000);
	corruption(5, 4, "repair", 1000);
	corruption(5, 3, "verify", 1000);
	corruption(10, 4, "repair", 1000);
	corruption(10, 4, "verify", 1000);
}

/* A scrub paced to a crawl (it waits on its rate-limit timer) stops at
 * once when asked, says so, and a new one can start and finish. */
TEST(scrub_stop_while_paced)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	uint64_t since, deadline = fb_now_ns() + 60ull * 1000000000ull;

	make_raid(e, 1, 2, 1024, 16, false, true, "repair");
	since = last_note(e);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_scrub_start", "{\"name\":\"R\",\"rate_kb_per_sec\":1}"));
	CHECK_EQ(th_rpc(e, &err, "bdev_raid_scrub_start", "{\"name\":\"R\"}"), -EBUSY);
	/* One row (2 x 16 KiB) at 1 KiB/s: the walk then waits ~32 s on its timer. */
	for (;;) {
		struct fb_json_val *doc = raid_info(e, "R");
		const struct fb_json_val *pr = fb_json_val_object_get(
			fb_json_val_object_get(info_of(doc, "R"), "process"), "progress");
		uint64_t blocks = 0;

		CHECK(fb_json_val_uint64(fb_json_val_object_get(pr, "blocks"), &blocks) == 0);
		fb_json_val_free(doc);
		if (blocks > 0)
			break;
		CHECK(fb_now_ns() < deadline);
		usleep(1000);
	}
	CHECK_OK(th_rpc(e, &err, "bdev_raid_scrub_stop", "{\"name\":\"R\"}"));
	CHECK_EQ(notes(e, "raid_scrub_done", "\"error\":-125", since), 1);
	since = last_note(e);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_scrub_start", "{\"name\":\"R\",\"rate_kb_per_sec\":0}"));
	while (notes(e, "raid_scrub_done", NULL, since) == 0 && fb_now_ns() < deadline)
		usleep(2000);
	CHECK_EQ(notes(e, "raid_scrub_done", "\"error\":0", since), 1);
	fb_engine_destroy(e);
}

/* The one raid_safe_read_repair after since, parsed (caller frees). */
struct grab {
	unsigned count;
	char *json;
};

static int grab_repair(const struct fb_notification *n, void *arg)
{
	struct grab *g = arg;

	if (!strcmp(n->type, "raid_safe_read_repair")) {
		g->count++;
		free(g->json);
		g->json = strdup(n->ctx_json);
	}
	return 0;
}

/* One repair event after since, naming member M<member>'s block mlba and
 * array block lba (-1: a parity block, which holds none), with io_key (the
 * read_lba of the I/O that found it, or the scrub's strip_member_lba). */
static void expect_repair(struct fb_engine *e, uint64_t since, unsigned member, uint64_t mlba,
			  int64_t lba, const char *io_key, uint64_t io_lba)
{
	struct grab g = {0};
	struct fb_err err;
	struct fb_json_val *v;
	const char *name = "";
	char want[32];
	uint64_t got = 0;
	bool parity = false;

	fb_notify_foreach(e, since, 0, grab_repair, &g);
	CHECK_EQ(g.count, 1);
	v = fb_json_parse(g.json, strlen(g.json), &err);
	CHECK(v);
	snprintf(want, sizeof(want), "EE_M%u", member);
	CHECK(fb_json_val_string(fb_json_val_object_get(v, "member"), &name) == 0);
	if (strcmp(name, want))
		th_fail(__FILE__, __LINE__, "repair names member %s, the flip was on %s", name, want);
	CHECK(fb_json_val_uint64(fb_json_val_object_get(v, "member_lba"), &got) == 0);
	CHECK_EQ(got, mlba);
	CHECK(fb_json_val_uint64(fb_json_val_object_get(v, io_key), &got) == 0);
	CHECK_EQ(got, io_lba);
	if (lba < 0) {
		CHECK(fb_json_val_bool(fb_json_val_object_get(v, "parity"), &parity) == 0);
		CHECK(parity);
		CHECK(fb_json_val_object_get(v, "lba") == NULL);
	} else {
		CHECK(fb_json_val_uint64(fb_json_val_object_get(v, "lba"), &got) == 0);
		CHECK_EQ(got, (uint64_t)lba);
		CHECK(fb_json_val_object_get(v, "parity") == NULL);
	}
	fb_json_val_free(v);
	free(g.json);
}

/* Scrub finds and repairs a flip the reads never touched, and names the
 * block: member M<m>'s block mblk, which holds array block lba (-1: RAID5
 * parity). */
static void scrub_repair_on(int level, unsigned n, unsigned m, uint64_t mblk, int64_t lba)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *d;
	struct fb_err err;
	const uint64_t strip = 4;
	uint64_t nb = make_raid(e, level, n, 512, 16, true, true, "repair"), since;
	uint8_t *ref = calloc(nb, BS);

	fprintf(stderr, "    %s x%u: flip on M%u block %llu\n", level_str(level), n, m,
		(unsigned long long)mblk);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	th_fill_random(ref, nb * BS, &seed);
	for (uint64_t b = 0; b < nb; b += 32)
		CHECK_EQ(th_write(e, 0, d, ref + b * BS, b, nb - b < 32 ? nb - b : 32), 0);
	since = last_note(e);
	/* One read of the block returns a flipped bit: the scrub's. */
	CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
			"{\"name\":\"EE_M%u\",\"io_type\":\"read\",\"error_type\":\"corrupt_data\","
			"\"num\":1,\"offset_blocks\":%llu,\"num_blocks\":1,\"corrupt_value\":1}",
			m, (unsigned long long)(data_offset(e) + mblk)));
	CHECK_OK(th_rpc(e, &err, "bdev_raid_scrub_start", "{\"name\":\"R\",\"rate_kb_per_sec\":0}"));
	uint64_t deadline = fb_now_ns() + 60ull * 1000000000ull;

	while (notes(e, "raid_scrub_done", NULL, since) == 0 && fb_now_ns() < deadline)
		usleep(2000);
	CHECK_EQ(notes(e, "raid_scrub_done", NULL, since), 1);
	expect_repair(e, since, m, mblk, lba, "strip_member_lba", mblk / strip * strip);
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	fb_engine_destroy(e);
}

TEST(scrub_repairs)
{
	/* RAID5 x3, row 5 (parity on M0): M1 holds data strip 0 */
	scrub_repair_on(5, 3, 1, 5 * 4 + 1, 5 * 8 + 1);
	/* row 4 (parity on M1): M1's block is parity */
	scrub_repair_on(5, 3, 1, 4 * 4 + 2, -1);
	/* RAID1: member and array blocks are the same */
	scrub_repair_on(1, 2, 1, 22, 22);
	/* RAID10 x4: M3 is group 1's second copy; member row 3 -> array strip 7 */
	scrub_repair_on(10, 4, 3, 3 * 4 + 3, 7 * 4 + 3);
}

/* RAID5 repairs name the bad block (member, member block, array block),
 * for every rotation of the parity and every strip of a row: data flips
 * are found by a read of the whole row (the block sits mid-column), a
 * parity flip by a one-block write's read-modify-write. */
TEST(raid5_repair_names_the_block)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *d;
	struct fb_err err;
	const unsigned n = 4;
	const uint64_t strip = 4, rowb = strip * (n - 1);
	const uint64_t rows[] = {0, 1, 2, 3, 9};
	uint64_t nb = make_raid(e, 5, n, 512, 16, true, true, "repair"), doff;
	uint8_t *ref = calloc(nb, BS), *buf = th_aligned(4096, rowb * BS);

	CHECK_OK(th_open(e, "R", true, &d, &err));
	th_fill_random(ref, nb * BS, &seed);
	for (uint64_t b = 0; b < nb; b += 32)
		CHECK_EQ(th_write(e, 0, d, ref + b * BS, b, nb - b < 32 ? nb - b : 32), 0);
	doff = data_offset(e);
	for (size_t ri = 0; ri < sizeof(rows) / sizeof(rows[0]); ri++) {
		uint64_t row = rows[ri];
		unsigned p = n - 1 - (unsigned)(row % n);

		for (unsigned k = 0; k < n; k++) {
			uint64_t o = (row + k) % strip, mlba = row * strip + o, since = last_note(e);
			unsigned m = k < n - 1 ? (p + 1 + k) % n : p;

			/* twice: the first look and the repair's look at every strip */
			CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
					"{\"name\":\"EE_M%u\",\"io_type\":\"read\",\"error_type\":"
					"\"corrupt_data\",\"num\":2,\"offset_blocks\":%llu,\"num_blocks\":1,"
					"\"corrupt_offset\":%u,\"corrupt_value\":%u}",
					m, (unsigned long long)(doff + mlba), (unsigned)(o * 7 + k), 1u << k));
			if (k < n - 1) {
				CHECK_EQ(th_read(e, 0, d, buf, row * rowb, rowb), 0);
				CHECK(memcmp(buf, ref + row * rowb * BS, rowb * BS) == 0);
				expect_repair(e, since, m, mlba, (int64_t)(row * rowb + k * strip + o),
					      "read_lba", row * rowb);
			} else {
				uint64_t lba = row * rowb + (row % (n - 1)) * strip + o;

				th_fill_random(ref + lba * BS, BS, &seed);
				CHECK_EQ(th_write(e, 0, d, ref + lba * BS, lba, 1), 0);
				expect_repair(e, since, m, mlba, -1, "read_lba", lba);
			}
			CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
					"{\"name\":\"EE_M%u\",\"io_type\":\"clear\",\"error_type\":\"failure\"}",
					m));
		}
	}
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	free(buf);
	fb_engine_destroy(e);
}

/* --------------------------------------------- member failure, rebuild */

static void wait_rebuild(struct fb_engine *e, uint64_t since)
{
	uint64_t deadline = fb_now_ns() + 120ull * 1000000000ull;

	while (notes(e, "raid_rebuild_done", NULL, since) == 0 &&
	       notes(e, "raid_rebuild_failed", NULL, since) == 0 && fb_now_ns() < deadline)
		usleep(2000);
	CHECK_EQ(notes(e, "raid_rebuild_done", NULL, since), 1);
}

static void failure_rebuild(int level, unsigned n, unsigned fail)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t nb = make_raid(e, level, n, 1024, 16, true, true, "off"), since;
	uint8_t *ref = calloc(nb, BS), *buf = th_aligned(4096, 64 * BS);
	char st[32];

	fprintf(stderr, "    %s x%u, member %u fails\n", level_str(level), n, fail);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	for (int i = 0; i < 150; i++)
		random_write(e, d, ref, nb, 20, buf);
	since = last_note(e);
	/* Every I/O to the member fails from now on. */
	CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error",
			"{\"name\":\"EE_M%u\",\"io_type\":\"all\",\"error_type\":\"failure\",\"num\":1000000}",
			fail));
	for (int i = 0; i < 300; i++) {
		if (i % 3)
			random_write(e, d, ref, nb, 20, buf);
		else
			random_read(e, d, ref, nb, 20, buf);
	}
	member_state(e, "R", fail, st, sizeof(st));
	CHECK(!strcmp(st, "failed"));
	CHECK_EQ(notes(e, "raid_member_failed", "EE_M", since), 1);
	check_all(e, d, ref, nb);
	/* A spare takes the failed slot; writes go on during the rebuild. */
	CHECK_OK(th_malloc(e, "SPARE", 1024, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_raid_add_base_bdev",
			"{\"raid_bdev\":\"R\",\"base_bdev\":\"SPARE\",\"rebuild_rate_kb\":4096}"));
	for (int i = 0; i < 200; i++)
		random_write(e, d, ref, nb, 20, buf);
	wait_rebuild(e, since);
	CHECK(notes(e, "raid_rebuild_progress", "SPARE", since) >= 1);
	member_state(e, "R", fail, st, sizeof(st));
	CHECK(!strcmp(st, "online"));
	check_all(e, d, ref, nb);
	set_safe_read(e, "verify");
	check_all(e, d, ref, nb);
	set_safe_read(e, "off");
	/* Redundancy is back: lose another member (not the spare's partner
	 * copy) and every byte is still there, read through the spare. */
	{
		unsigned other = level == 5 ? (fail + 1) % n : fail ^ 1u;
		char name[16];

		snprintf(name, sizeof(name), "EE_M%u", other);
		CHECK_OK(th_rpc(e, &err, "bdev_raid_remove_base_bdev", "{\"name\":\"%s\"}", name));
		raid_state(e, "R", st, sizeof(st));
		CHECK(!strcmp(st, "online"));
	}
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	free(buf);
	fb_engine_destroy(e);
}

TEST(member_failure_and_rebuild)
{
	failure_rebuild(5, 4, 2);
	failure_rebuild(1, 2, 0);
	failure_rebuild(10, 4, 1);
}

/* RAID0 has nothing to rebuild from: losing a member takes it offline. */
TEST(raid0_member_loss_offline)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint8_t *buf = th_aligned(4096, 4 * BS);
	uint64_t since;
	char st[32];

	make_raid(e, 0, 2, 512, 16, true, false, "off");
	since = last_note(e);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	CHECK_EQ(th_write(e, 0, d, buf, 0, 4), 0);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_remove_base_bdev", "{\"name\":\"EE_M1\"}"));
	raid_state(e, "R", st, sizeof(st));
	CHECK(!strcmp(st, "offline"));
	CHECK_EQ(notes(e, "raid_offline", NULL, since), 1);
	CHECK_EQ(th_read(e, 0, d, buf, 0, 4), -EIO);   /* member 0's strip too */
	CHECK_EQ(th_write(e, 0, d, buf, 4, 4), -EIO);
	fb_bdev_close(d);
	free(buf);
	fb_engine_destroy(e);
}

/* Deleting a member bdev under a live array hot-removes it: the member is
 * failed, I/O goes on, and a spare rebuilds it. */
TEST(hot_remove_member)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t nb = make_raid(e, 5, 3, 1024, 16, false, true, "repair"), since = last_note(e);
	uint8_t *ref = calloc(nb, BS), *buf = th_aligned(4096, 64 * BS);
	char st[32];

	CHECK_OK(th_open(e, "R", true, &d, &err));
	for (int i = 0; i < 100; i++)
		random_write(e, d, ref, nb, 20, buf);
	CHECK_OK(th_rpc(e, &err, "bdev_malloc_delete", "{\"name\":\"M1\"}"));
	member_state(e, "R", 1, st, sizeof(st));
	CHECK(!strcmp(st, "failed"));
	CHECK_EQ(notes(e, "raid_member_failed", "\"member\":\"M1\"", since), 1);
	for (int i = 0; i < 100; i++)
		random_write(e, d, ref, nb, 20, buf);
	check_all(e, d, ref, nb);
	CHECK_OK(th_malloc(e, "SPARE", 1024, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_raid_add_base_bdev",
			"{\"raid_bdev\":\"R\",\"base_bdev\":\"SPARE\"}"));
	wait_rebuild(e, since);
	set_safe_read(e, "verify");
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	free(ref);
	free(buf);
	fb_engine_destroy(e);
}

/* ----------------------------------------------- superblock reassembly */

static void make_files(char paths[][64], unsigned n, uint64_t bytes)
{
	for (unsigned i = 0; i < n; i++) {
		int fd;

		snprintf(paths[i], 64, "/tmp/raid_test_%d_%u.img", (int)getpid(), i);
		fd = open(paths[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, (off_t)bytes) == 0);
		close(fd);
	}
}

static void files_up(struct fb_engine *e, char paths[][64], unsigned n, int skip)
{
	struct fb_err err;
	char name[16];

	for (unsigned i = 0; i < n; i++) {
		if ((int)i == skip)
			continue;
		snprintf(name, sizeof(name), "F%u", i);
		CHECK_OK(th_file(e, name, paths[i], BS, "", &err));
	}
}

TEST(superblock_reassembly)
{
	char paths[4][64], st[32];
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t nb, since;
	uint8_t *ref, *buf = th_aligned(4096, 64 * BS);

	make_files(paths, 4, 8u << 20);
	files_up(e, paths, 4, -1);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"R\",\"raid_level\":\"raid5f\",\"base_bdevs\":[\"F0\",\"F1\",\"F2\",\"F3\"],"
			"\"strip_size_kb\":16,\"superblock\":true,\"safe_read\":\"repair\"}"));
	CHECK_OK(th_open(e, "R", true, &d, &err));
	nb = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d));
	ref = calloc(nb, BS);
	for (int i = 0; i < 200; i++)
		random_write(e, d, ref, nb, 30, buf);
	fb_bdev_close(d);
	fb_engine_destroy(e);

	/* Restart: the members alone bring the array back, CRCs included. */
	e = th_engine(2);
	files_up(e, paths, 4, -1);
	CHECK_OK(th_open(e, "R", true, &d, &err));
	check_all(e, d, ref, nb);
	CHECK_EQ(info_u64(e, "R", "safe_read_stats", "repairs"), 0);
	/* Take member 0 out; the others' superblocks move on without it. */
	CHECK_OK(th_rpc(e, &err, "bdev_raid_remove_base_bdev", "{\"name\":\"F0\"}"));
	for (int i = 0; i < 50; i++)
		random_write(e, d, ref, nb, 30, buf);
	fb_bdev_close(d);
	fb_engine_destroy(e);

	/* Restart again: F0 still claims to be member 0 of an older
	 * generation; it is refused by name and the array runs degraded. */
	e = th_engine(2);
	since = last_note(e);
	files_up(e, paths, 4, -1);
	CHECK(notes(e, "raid_member_refused", "\"member\":\"F0\"", since) >= 1);
	raid_state(e, "R", st, sizeof(st));
	CHECK(!strcmp(st, "online"));
	member_state(e, "R", 0, st, sizeof(st));
	CHECK(strcmp(st, "online"));
	CHECK_OK(th_open(e, "R", true, &d, &err));
	check_all(e, d, ref, nb);
	fb_bdev_close(d);
	fb_engine_destroy(e);

	/* With a member missing (never created) a RAID5 that needs all four
	 * waits in "configuring". */
	make_files(paths, 4, 8u << 20);
	e = th_engine(1);
	files_up(e, paths, 4, -1);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"Q\",\"raid_level\":\"raid1\",\"base_bdevs\":[\"F0\",\"F1\"],"
			"\"superblock\":true}"));
	fb_engine_destroy(e);
	e = th_engine(1);
	files_up(e, paths, 1, -1);
	raid_state(e, "Q", st, sizeof(st));
	CHECK(!strcmp(st, "configuring"));
	CHECK_OK(th_rpc(e, &err, "bdev_raid_delete", "{\"name\":\"Q\"}"));
	fb_engine_destroy(e);
	for (unsigned i = 0; i < 4; i++)
		unlink(paths[i]);
	free(ref);
	free(buf);
}

/* Optional argument: run only the tests whose name contains it. */
int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
#define RUN_IF(t)                                     \
	do {                                          \
		if (!only || strstr(#t, only))        \
			RUN(t);                       \
	} while (0)
	RUN_IF(bad_input);
	RUN_IF(random_io_all_levels);
	RUN_IF(overlapping_writes_two_reactors);
	RUN_IF(corruption_1000_flips);
	RUN_IF(scrub_repairs);
	RUN_IF(raid5_repair_names_the_block);
	RUN_IF(scrub_stop_while_paced);
	RUN_IF(member_failure_and_rebuild);
	RUN_IF(hot_remove_member);
	RUN_IF(raid0_member_loss_offline);
	RUN_IF(superblock_reassembly);
	fprintf(stderr, "raid_test: ok\n");
	return 0;
}
