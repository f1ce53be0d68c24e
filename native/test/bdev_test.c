/* bdev layer on malloc and null: integrity across reactors, range checks,
 * open/claim/delete rules, config dump, stats. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static int uuid_of(const struct fb_bdev_info *info, void *arg)
{
	memcpy(arg, info->uuid, FB_UUID_STR_LEN);
	return 0;
}

static void fb_uuid_get_test(struct fb_engine *e, const char *name, char out[FB_UUID_STR_LEN])
{
	CHECK_EQ(fb_bdev_foreach(e, name, uuid_of, out), 0);
}

#define BS 512u
#define NB 2048u

struct worker {
	struct fb_engine *e;
	struct fb_bdev_desc *desc;
	unsigned reactor;
	unsigned char *ref; /* shared reference image; each worker owns a slice */
	uint64_t first, count;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = malloc(16 * BS);
	uint64_t seed = 1234 + w->reactor;

	for (int i = 0; i < 300; i++) {
		uint64_t n = 1 + seed % 16, off;

		th_fill_random(buf, 16 * BS, &seed);
		if (n > w->count)
			n = w->count;
		off = w->first + seed % (w->count - n + 1);
		if (i % 3 == 0) {
			CHECK_EQ(th_read(w->e, w->reactor, w->desc, buf, off, n), 0);
			CHECK(memcmp(buf, w->ref + off * BS, n * BS) == 0);
		} else {
			CHECK_EQ(th_write(w->e, w->reactor, w->desc, buf, off, n), 0);
			memcpy(w->ref + off * BS, buf, n * BS);
		}
	}
	free(buf);
	return NULL;
}

/* kind: "M0" malloc, "FD" file with O_DIRECT on /tmp, "FB" buffered file on /dev/shm. */
static void integrity(const char *kind)
{
	struct fb_engine *e = th_engine(3);
	char path[128] = "";
	struct fb_bdev_desc *desc;
	struct fb_err err;
	unsigned char *ref = calloc(NB, BS), *all = malloc((size_t)NB * BS);
	struct worker w[3];
	pthread_t t[3];

	if (kind[0] == 'M') {
		CHECK_OK(th_malloc(e, kind, NB, BS, &err));
	} else {
		int fd;

		snprintf(path, sizeof(path), "%s/fb_bdev_test_XXXXXX", kind[1] == 'D' ? "/tmp" : "/dev/shm");
		fd = mkstemp(path);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, (off_t)NB * BS) == 0);
		close(fd);
		CHECK_OK(th_file(e, kind, path, BS,
				 kind[1] == 'D' ? "\"direct_io\":true" : "\"direct_io\":false", &err));
	}
	CHECK_OK(th_open(e, kind, true, &desc, &err));
	for (unsigned i = 0; i < 3; i++) {
		w[i] = (struct worker){.e = e, .desc = desc, .reactor = i, .ref = ref,
				       .first = i * (NB / 3), .count = NB / 3};
		CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
	}
	for (unsigned i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	/* Whole image read from each reactor matches the reference. */
	for (unsigned r = 0; r < 3; r++) {
		CHECK_EQ(th_read(e, r, desc, all, 0, NB), 0);
		CHECK(memcmp(all, ref, (size_t)NB * BS) == 0);
	}
	fb_bdev_close(desc);
	CHECK_OK(fb_bdev_delete(e, kind, &err));
	free(ref);
	free(all);
	fb_engine_destroy(e);
	if (path[0])
		unlink(path);
}

TEST(malloc_integrity)
{
	integrity("M0");
}

TEST(file_direct_integrity)
{
	integrity("FD");
}

TEST(file_buffered_integrity)
{
	integrity("FB");
}

TEST(null_reads_zero)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	unsigned char buf[4096];

	CHECK_OK(th_null(e, "N0", 1 << 20, 4096, &err));
	CHECK_OK(th_open(e, "N0", true, &desc, &err));
	memset(buf, 0xab, sizeof(buf));
	CHECK_EQ(th_write(e, 0, desc, buf, 7, 1), 0);
	CHECK_EQ(th_read(e, 0, desc, buf, 7, 1), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		CHECK_EQ(buf[i], 0);
	CHECK_EQ(th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0);
	fb_bdev_close(desc);
	fb_engine_destroy(e); /* deletes N0 */
}

TEST(range_checks)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc, *ro;
	struct fb_err err;
	unsigned char buf[2 * BS];
	struct iovec iov = {buf, BS};

	CHECK_OK(th_malloc(e, "M1", 16, BS, &err));
	CHECK_OK(th_open(e, "M1", true, &desc, &err));
	CHECK_EQ(th_read(e, 0, desc, buf, 16, 1), -EINVAL);
	CHECK_EQ(th_read(e, 0, desc, buf, 15, 2), -EINVAL);
	CHECK_EQ(th_read(e, 0, desc, buf, UINT64_MAX, 2), -EINVAL);
	CHECK_EQ(th_read(e, 0, desc, buf, 0, 0), -EINVAL);
	CHECK_EQ(th_io(e, 0, desc, FB_IO_READ, &iov, 1, 0, 2, 0), -EINVAL); /* iov too short */
	CHECK_EQ(th_io(e, 0, desc, FB_IO_UNMAP, NULL, 0, 10, 7, 0), -EINVAL);
	CHECK_EQ(th_read(e, 0, desc, buf, 14, 2), 0);
	CHECK_OK(th_open(e, "M1", false, &ro, &err));
	CHECK_EQ(th_write(e, 0, ro, buf, 0, 1), -EBADF);
	fb_bdev_close(ro);
	fb_bdev_close(desc);
	CHECK_EQ(th_malloc(e, "M1", 16, BS, &err), -EEXIST);
	CHECK_EQ(th_malloc(e, "M2", 16, 1000, &err), -EINVAL);
	CHECK(strstr(err.msg, "'block_size': must be a multiple of 512") != NULL);
	CHECK_OK(th_malloc(e, "M3", 16, 1536, &err)); /* any multiple of 512 */
	CHECK_EQ(th_malloc(e, "", 16, BS, &err), -EINVAL); /* decodes; an empty name is refused */
	CHECK(strstr(err.msg, "Invalid parameter 'name'") != NULL);
	CHECK_EQ(th_open(e, "nope", false, &desc, &err), -ENOENT);
	CHECK(strstr(err.msg, "'nope'") != NULL);
	fb_engine_destroy(e);
}

static const struct fb_bdev_module fake_module = {.size = sizeof(fake_module), .name = "test"};

TEST(open_claim_delete)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d1, *d2;
	struct fb_err err;
	unsigned char buf[BS];

	CHECK_OK(th_malloc(e, "M0", 64, BS, &err));
	CHECK_OK(fb_bdev_open(e, "M0", &(struct fb_bdev_open_opts){.size = sizeof(struct fb_bdev_open_opts),
			       .write = true, .holder = "NBD export 'x'"}, &d1, &err));
	CHECK_EQ(th_read(e, 1, d1, buf, 0, 1), 0); /* creates a channel on reactor 1 */
	CHECK_EQ(fb_bdev_delete(e, "M0", &err), -EBUSY);
	CHECK(strstr(err.msg, "bdev 'M0' is open by NBD export 'x'") != NULL);
	CHECK_EQ(fb_bdev_claim(d1, &fake_module, &err), 0);
	CHECK_OK(th_open(e, "M0", false, &d2, &err)); /* read-only open still allowed */
	fb_bdev_close(d2);
	CHECK_EQ(th_open(e, "M0", true, &d2, &err), -EPERM);
	fb_bdev_desc_set_holder(d1, "error bdev 'EE_M0'");
	CHECK_EQ(fb_bdev_delete(e, "M0", &err), -EBUSY);
	CHECK(strstr(err.msg, "bdev 'M0' is claimed by error bdev 'EE_M0'") != NULL);
	fb_bdev_close(d1);
	CHECK_OK(fb_bdev_delete(e, "M0", &err));
	CHECK_EQ(fb_bdev_delete(e, "M0", &err), -ENOENT);
	fb_engine_destroy(e);
}

struct collected {
	char text[2048];
	size_t len;
};

static int collect(const struct fb_bdev_info *info, void *arg)
{
	struct collected *c = arg;
	int n;

	n = snprintf(c->text + c->len, sizeof(c->text) - c->len, "%s|%s|%s|%s|%llu|%llu|%llu;",
		     info->name, info->product_name, info->uuid, info->config_json,
		     (unsigned long long)info->stats.num_write_ops,
		     (unsigned long long)info->stats.bytes_read,
		     (unsigned long long)info->stats.num_write_zeroes_ops);
	c->len += n > 0 ? (size_t)n : 0;
	return 0;
}

struct per_reactor {
	struct fb_bdev_stats s[4];
	unsigned n;
};

static int per_reactor_cb(unsigned reactor, const struct fb_bdev_stats *s, void *arg)
{
	struct per_reactor *pr = arg;

	CHECK_EQ(reactor, pr->n);
	pr->s[pr->n++] = *s;
	return 0;
}

TEST(config_and_stats)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	struct collected c = {.len = 0};
	char want[2048], mu[FB_UUID_STR_LEN], nu[FB_UUID_STR_LEN];
	struct fb_uuid u;
	unsigned char buf[4 * BS];

	/* A name that needs escaping, a given uuid, and a generated one. */
	CHECK_OK(th_rpc(e, &err, "bdev_malloc_create",
			"{\"name\":\"M\\\"q\",\"num_blocks\":8,\"block_size\":512,"
			"\"uuid\":\"0F1E2D3C-4B5A-4978-8695-a4b3c2d1e0f0\"}"));
	CHECK_OK(th_null(e, "N0", 100, 4096, &err));
	CHECK_OK(th_open(e, "M\"q", true, &d, &err));
	fb_uuid_get_test(e, "N0", nu);
	CHECK(fb_uuid_parse(nu, &u) == 0 && !fb_uuid_is_null(&u));
	CHECK_EQ(nu[14], '4'); /* version 4 */
	snprintf(mu, sizeof(mu), "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0");
	memset(buf, 0x5a, sizeof(buf));
	CHECK_EQ(th_write(e, 0, d, buf, 0, 4), 0);
	CHECK_EQ(th_write(e, 1, d, buf, 4, 4), 0);
	CHECK_EQ(th_read(e, 1, d, buf, 2, 4), 0);
	CHECK_EQ(th_io(e, 0, d, FB_IO_WRITE_ZEROES, NULL, 0, 3, 2, 0), 0);
	CHECK_EQ(th_read(e, 0, d, buf, 0, 4), 0);
	for (unsigned i = 0; i < 4 * BS; i++)
		CHECK_EQ(buf[i], (i >= 3 * BS) ? 0 : 0x5a);
	CHECK_EQ(th_io(e, 1, d, FB_IO_UNMAP, NULL, 0, 0, 1, 0), 0);
	CHECK_EQ(th_read(e, 0, d, buf, 0, 1), 0);
	CHECK_EQ(buf[0], 0);
	CHECK_EQ(fb_bdev_foreach(e, NULL, collect, &c), 0);
	snprintf(want, sizeof(want),
		 "M\"q|Malloc disk|%s|[{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"M\\\"q\","
		 "\"num_blocks\":8,\"block_size\":512,\"uuid\":\"%s\"}}]|2|4608|1;"
		 "N0|Null disk|%s|[{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"N0\","
		 "\"num_blocks\":100,\"block_size\":4096,\"uuid\":\"%s\"}}]|0|0|0;", mu, mu, nu, nu);
	CHECK(strcmp(c.text, want) == 0 || (fprintf(stderr, "got  %s\nwant %s\n", c.text, want), 0));
	/* The uuid is an alias: it opens, finds and deletes the bdev too. */
	c.len = 0;
	CHECK_EQ(fb_bdev_foreach(e, mu, collect, &c), 0);
	CHECK(strncmp(c.text, "M\"q|", 4) == 0);
	CHECK_EQ(fb_bdev_foreach(e, "zz", collect, &c), -ENOENT);
	CHECK_EQ(th_malloc(e, nu, 8, 512, &err), -EEXIST); /* a name may not be another's uuid */
	/* Per reactor: the writes were one on each reactor, the read on 1. */
	{
		struct per_reactor pr = {.n = 0};

		CHECK_EQ(fb_bdev_stats_per_reactor(e, mu, per_reactor_cb, &pr), 0);
		CHECK_EQ(pr.n, 2);
		CHECK(pr.s[0].num_write_ops == 1 && pr.s[1].num_write_ops == 1); /* wz is not a write */
		CHECK(pr.s[1].num_read_ops == 1 && pr.s[0].num_read_ops == 2);
		CHECK(pr.s[1].read_latency_min_ns > 0 &&
		      pr.s[1].read_latency_min_ns <= pr.s[1].read_latency_max_ns);
		CHECK_EQ(fb_bdev_stats_per_reactor(e, "zz", per_reactor_cb, &pr), -ENOENT);
		/* maxmin_only keeps the counters; a full reset zeroes them. */
		CHECK_OK(fb_bdev_stats_reset(e, mu, true));
		pr.n = 0;
		CHECK_EQ(fb_bdev_stats_per_reactor(e, mu, per_reactor_cb, &pr), 0);
		CHECK(pr.s[1].num_read_ops == 1 && pr.s[1].read_latency_max_ns == 0 &&
		      pr.s[1].read_latency_min_ns == 0);
		CHECK_OK(fb_bdev_stats_reset(e, NULL, false));
		pr.n = 0;
		CHECK_EQ(fb_bdev_stats_per_reactor(e, mu, per_reactor_cb, &pr), 0);
		CHECK(pr.s[0].num_write_ops == 0 && pr.s[1].num_read_ops == 0 && pr.s[0].bytes_written == 0);
		CHECK_EQ(fb_bdev_stats_reset(e, "zz", false), -ENOENT);
	}
	fb_bdev_close(d);
	CHECK_OK(fb_bdev_delete(e, "0f1e2d3c-4b5a-4978-8695-A4B3C2D1E0F0", &err));
	CHECK_EQ(fb_bdev_foreach(e, "M\"q", collect, &c), -ENOENT);
	fb_engine_destroy(e);
}

/* Latency histograms: counts from I/O on both reactors merge on read; off
 * stops counting, on again starts at zero; the bucket layout round-trips. */
TEST(histogram)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	static uint64_t h[FB_HISTOGRAM_BUCKETS];
	unsigned char buf[4 * BS];
	uint64_t total = 0;
	struct fb_bdev_stats s;

	/* Every value lands in the bucket whose range holds it. */
	for (uint64_t v = 0; v < 1u << 20; v = v * 3 / 2 + 1) {
		unsigned k = fb_histogram_bucket(v);

		CHECK(k < FB_HISTOGRAM_BUCKETS);
		CHECK(fb_histogram_bucket_start(k) <= v && v < fb_histogram_bucket_start(k + 1));
	}
	CHECK_EQ(fb_histogram_bucket(UINT64_MAX), FB_HISTOGRAM_BUCKETS - 1);
	CHECK_EQ(fb_histogram_bucket(127), 127);
	CHECK_EQ(fb_histogram_bucket(128), 128);
	CHECK_EQ(fb_histogram_bucket(256), 256);
	CHECK_EQ(fb_histogram_bucket(257), 256); /* two values per bucket in range 2 */

	CHECK_OK(th_malloc(e, "H", 64, BS, &err));
	CHECK_OK(th_open(e, "H", true, &d, &err));
	CHECK_EQ(fb_bdev_histogram_get(e, "H", h), -ENODATA);
	CHECK_EQ(fb_bdev_histogram_enable(e, "zz", true), -ENOENT);
	CHECK_EQ(fb_bdev_histogram_get(e, "zz", h), -ENOENT);
	memset(buf, 0x33, sizeof(buf));
	CHECK_EQ(th_write(e, 0, d, buf, 0, 4), 0); /* not counted: off */
	CHECK_OK(fb_bdev_histogram_enable(e, "H", true));
	CHECK_OK(fb_bdev_histogram_enable(e, "H", true)); /* again: no reset, no error */
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(th_write(e, i % 2, d, buf, 4 * i, 4), 0);
	CHECK_EQ(th_read(e, 1, d, buf, 0, 4), 0);
	CHECK_EQ(th_io(e, 0, d, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0); /* not timed */
	CHECK_OK(fb_bdev_histogram_get(e, "H", h));
	for (unsigned k = 0; k < FB_HISTOGRAM_BUCKETS; k++)
		total += h[k];
	CHECK_EQ(total, 6);
	/* The counts sit where the latencies the stats recorded fall. */
	{
		struct per_reactor pr = {.n = 0};
		uint64_t lo, hi, below = 0;

		CHECK_EQ(fb_bdev_stats_per_reactor(e, "H", per_reactor_cb, &pr), 0);
		s = pr.s[1];
		lo = s.read_latency_min_ns;
		hi = s.read_latency_max_ns;
		CHECK(lo > 0 && lo == hi); /* one read, on reactor 1 */
		CHECK(h[fb_histogram_bucket(lo)] >= 1);
		for (unsigned k = 0; k < fb_histogram_bucket(lo); k++)
			below += h[k];
		CHECK(below <= 5);
	}
	CHECK_OK(fb_bdev_histogram_enable(e, "H", false));
	CHECK_EQ(fb_bdev_histogram_get(e, "H", h), -ENODATA);
	CHECK_EQ(th_write(e, 0, d, buf, 0, 4), 0);
	CHECK_OK(fb_bdev_histogram_enable(e, "H", true));
	CHECK_OK(fb_bdev_histogram_get(e, "H", h));
	total = 0;
	for (unsigned k = 0; k < FB_HISTOGRAM_BUCKETS; k++)
		total += h[k];
	CHECK_EQ(total, 0);
	/* SPDK's RPCs: off again by RPC, then get names the fix; base64 of the buckets. */
	CHECK_OK(th_rpc(e, &err, "bdev_enable_histogram", "{\"name\":\"H\",\"enable\":false}"));
	CHECK_EQ(th_rpc(e, &err, "bdev_get_histogram", "{\"name\":\"H\"}"), -EFAULT);
	CHECK(strstr(err.msg, "bdev_enable_histogram") != NULL);
	CHECK_EQ(th_rpc(e, &err, "bdev_enable_histogram", "{\"name\":\"nope\",\"enable\":true}"), -ENODEV);
	CHECK_OK(th_rpc(e, &err, "bdev_enable_histogram", "{\"name\":\"H\",\"enable\":true}"));
	CHECK_EQ(th_write(e, 1, d, buf, 0, 4), 0);
	{
		char *res = NULL;
		const char *b64;

		CHECK_OK(fb_rpc_call(e, "bdev_get_histogram", "{\"name\":\"H\"}", &res, &err));
		CHECK(res && strstr(res, "\"bucket_shift\":7") && strstr(res, "\"tsc_rate\":1000000000"));
		b64 = strstr(res, "\"histogram\":\"");
		CHECK(b64 != NULL);
		b64 += strlen("\"histogram\":\"");
		/* 4 base64 characters per 3 bytes of FB_HISTOGRAM_BUCKETS uint64s */
		CHECK_EQ((size_t)(strchr(b64, '"') - b64), (FB_HISTOGRAM_BUCKETS * 8 + 2) / 3 * 4);
		free(res);
	}
	fb_bdev_close(d);
	CHECK_OK(fb_bdev_delete(e, "H", &err));
	fb_engine_destroy(e);
}

/* A huge TRIM or WRITE_ZEROES on malloc gives memory back in slices, one
 * per reactor turn: a read of another bdev submitted on the same reactor
 * right after it completes first (order of completions, not timings), and
 * the range then reads as zeros. */
#define SLICED_BIG_BLOCKS (1u << 18)  /* 1 GiB of 4 KiB blocks: 256 slices */

struct sliced {
	struct fb_engine *e;
	struct fb_bdev_desc *big, *small;
	struct fb_io_channel *ch_big, *ch_small;
	enum fb_io_type type;
	unsigned char buf[4096];
	atomic_uint done;
	unsigned order[2];  /* 1: the big zeroing, 2: the small read */
	int rc[2];
};

static struct sliced *g_sl;

static void sliced_big_done(struct fb_bdev_io *io, int status, void *arg)
{
	(void)arg;
	g_sl->rc[0] = status;
	g_sl->order[atomic_fetch_add(&g_sl->done, 1)] = 1;
	fb_bdev_free_io(io);
}

static void sliced_small_done(struct fb_bdev_io *io, int status, void *arg)
{
	(void)arg;
	g_sl->rc[1] = status;
	g_sl->order[atomic_fetch_add(&g_sl->done, 1)] = 2;
	fb_bdev_free_io(io);
}

static void sliced_submit(void *arg)
{
	struct sliced *s = arg;
	struct iovec iov = { s->buf, sizeof(s->buf) };

	s->ch_big = fb_bdev_get_io_channel(s->big);
	s->ch_small = fb_bdev_get_io_channel(s->small);
	CHECK(s->ch_big && s->ch_small);
	if (s->type == FB_IO_UNMAP)
		CHECK_EQ(fb_bdev_unmap_blocks(s->big, s->ch_big, 0, SLICED_BIG_BLOCKS, sliced_big_done, s), 0);
	else
		CHECK_EQ(fb_bdev_write_zeroes_blocks(s->big, s->ch_big, 0, SLICED_BIG_BLOCKS, 0,
						     sliced_big_done, s), 0);
	CHECK_EQ(fb_bdev_readv_blocks(s->small, s->ch_small, &iov, 1, 0, 1, sliced_small_done, s), 0);
}

static void sliced_put(void *arg)
{
	struct sliced *s = arg;

	fb_put_io_channel(s->ch_big);
	fb_put_io_channel(s->ch_small);
}

TEST(malloc_zeroing_sliced)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	struct sliced s;
	unsigned char *w = malloc(1 << 20), *r = malloc(1 << 20);
	uint64_t seed = 3;
	enum fb_io_type types[2] = { FB_IO_UNMAP, FB_IO_WRITE_ZEROES };

	CHECK(w && r);
	CHECK_OK(th_malloc(e, "BIG", SLICED_BIG_BLOCKS, 4096, &err));
	CHECK_OK(th_malloc(e, "SMALL", 256, 4096, &err));
	for (int k = 0; k < 2; k++) {
		memset(&s, 0, sizeof(s));
		g_sl = &s;
		s.type = types[k];
		CHECK_OK(th_open(e, "BIG", true, &s.big, &err));
		CHECK_OK(th_open(e, "SMALL", false, &s.small, &err));
		/* Written data at both ends of the range. */
		th_fill_random(w, 1 << 20, &seed);
		CHECK_EQ(th_write(e, 0, s.big, w, 0, 256), 0);
		CHECK_EQ(th_write(e, 0, s.big, w, SLICED_BIG_BLOCKS - 256, 256), 0);
		fb_reactor_run_sync(fb_engine_get_reactor(e, 0), sliced_submit, &s);
		for (int i = 0; atomic_load(&s.done) < 2; i++) {
			CHECK(i < 3000);  /* 30 s */
			usleep(10000);
		}
		CHECK_EQ(s.rc[0], 0);
		CHECK_EQ(s.rc[1], 0);
		CHECK_EQ(s.order[0], 2);  /* the other bdev's read did not wait for the zeroing */
		CHECK_EQ(s.order[1], 1);
		fb_reactor_run_sync(fb_engine_get_reactor(e, 0), sliced_put, &s);
		memset(w, 0, 1 << 20);
		CHECK_EQ(th_read(e, 0, s.big, r, 0, 256), 0);
		CHECK(memcmp(r, w, 1 << 20) == 0);
		CHECK_EQ(th_read(e, 0, s.big, r, SLICED_BIG_BLOCKS - 256, 256), 0);
		CHECK(memcmp(r, w, 1 << 20) == 0);
		fb_bdev_close(s.big);
		fb_bdev_close(s.small);
	}
	free(w);
	free(r);
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(malloc_integrity);
	RUN(file_direct_integrity);
	RUN(file_buffered_integrity);
	RUN(null_reads_zero);
	RUN(range_checks);
	RUN(open_claim_delete);
	RUN(config_and_stats);
	RUN(histogram);
	RUN(malloc_zeroing_sliced);
	return 0;
}
