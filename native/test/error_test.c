/* error bdev: each injection kind, LBA ranges, counts, clearing, claims, and
 * switching injections while I/O runs on every reactor. */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define BS 512u
#define NB 256u

enum kind { K_NONE, K_FAILURE, K_CORRUPT, K_DROP, K_PENDING, K_NOMEM };

struct inj {
	uint32_t mask; /* one io type bit, or 0 for all */
	enum kind kind;
	uint64_t count; /* 0 = every I/O */
	uint64_t off, num;
	uint64_t coff;  /* corrupt_data: corrupt_offset and corrupt_value */
	unsigned cval;
};

static struct inj inj_of(uint32_t mask, enum kind kind, uint64_t count, uint64_t off, uint64_t num)
{
	return (struct inj){.mask = mask, .kind = kind, .count = count, .off = off, .num = num};
}

/* Through bdev_error_inject_error, as the engine process calls it. */
static int inject(struct fb_engine *e, const char *name, const struct inj *i, struct fb_err *err)
{
	static const char *const types[] = {"read", "write", "flush", "unmap", "write_zeroes"};
	static const char *const kinds[] = {"failure", "failure", "corrupt_data", "drop_write",
					    "pending", "nomem"};
	const char *io_type = i->kind == K_NONE && !i->mask ? "clear" : "all";

	for (unsigned t = 0; t < 5; t++)
		if (i->mask == 1u << t)
			io_type = types[t];
	return th_rpc(e, err, "bdev_error_inject_error",
		      "{\"name\":\"%s\",\"io_type\":\"%s\",\"error_type\":\"%s\",\"num\":%llu,"
		      "\"offset_blocks\":%llu,\"num_blocks\":%llu,\"corrupt_offset\":%llu,"
		      "\"corrupt_value\":%u}", name, io_type, kinds[i->kind],
		      i->kind == K_NONE ? 0ull : i->count ? (unsigned long long)i->count : 4294967295ull,
		      (unsigned long long)i->off, (unsigned long long)i->num,
		      (unsigned long long)i->coff, i->cval);
}

/* A number from EE_M0's driver_specific info: "key":N after `after`. */
struct driver_num {
	const char *after, *key;
	unsigned long long v;
};

static int driver_num_of(const struct fb_bdev_info *info, void *arg)
{
	struct driver_num *q = arg;
	const char *p = q->after ? strstr(info->driver_json, q->after) : info->driver_json;
	char k[64];

	CHECK(p != NULL);
	snprintf(k, sizeof(k), "\"%s\":", q->key);
	p = strstr(p, k);
	CHECK(p != NULL);
	q->v = strtoull(p + strlen(k), NULL, 10);
	return 0;
}

static unsigned long long driver_num(struct fb_engine *e, const char *after, const char *key)
{
	struct driver_num q = {.after = after, .key = key};

	CHECK_EQ(fb_bdev_foreach(e, "EE_M0", driver_num_of, &q), 0);
	return q.v;
}

#define R (1u << FB_IO_READ)
#define W (1u << FB_IO_WRITE)

TEST(claims)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *d;
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M0", NB, BS, &err));
	CHECK_OK(th_error_create(e, "M0", &err));
	CHECK_EQ(th_error_create(e, "M0", &err), -EEXIST); /* SPDK's -17 */
	CHECK(strstr(err.msg, "'EE_M0' already exists") != NULL);
	CHECK_EQ(fb_bdev_delete(e, "M0", &err), -EBUSY);
	CHECK(strstr(err.msg, "bdev 'M0' is claimed by error bdev 'EE_M0'") != NULL);
	CHECK_EQ(th_open(e, "M0", true, &d, &err), -EPERM);
	/* Over a base that does not exist yet: made when it appears (examine),
	 * and replayed as asked meanwhile. */
	CHECK_OK(th_error_create(e, "later", &err));
	CHECK_EQ(th_error_create(e, "later", &err), -EEXIST);
	{
		char *cfg = NULL;

		CHECK_OK(fb_rpc_call(e, "flexbso_bdev_get_module_config", NULL, &cfg, &err));
		CHECK(strcmp(cfg, "[{\"method\":\"bdev_error_create\",\"params\":{\"base_name\":\"later\"}}]") == 0);
		free(cfg);
		CHECK_OK(th_malloc(e, "later", NB, BS, &err));
		CHECK_OK(th_open(e, "EE_later", false, &d, &err));
		fb_bdev_close(d);
		CHECK_OK(fb_rpc_call(e, "flexbso_bdev_get_module_config", NULL, &cfg, &err));
		CHECK(strcmp(cfg, "[]") == 0);
		free(cfg);
		CHECK_OK(fb_bdev_delete(e, "EE_later", &err));
		CHECK_OK(fb_bdev_delete(e, "later", &err));
	}
	struct inj i = inj_of(0, K_FAILURE, 0, 0, 0);
	CHECK_EQ(inject(e, "M1", &i, &err), -ENODEV);
	CHECK_OK(th_malloc(e, "M1", NB, BS, &err));
	CHECK_EQ(inject(e, "M1", &i, &err), -ENODEV);
	CHECK(strstr(err.msg, "not an error bdev") != NULL);
	i.off = NB;
	CHECK_EQ(inject(e, "EE_M0", &i, &err), -EINVAL);
	CHECK_OK(fb_bdev_delete(e, "EE_M0", &err));
	CHECK_OK(fb_bdev_delete(e, "M0", &err));
	fb_engine_destroy(e);
}

TEST(kinds)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	unsigned char a[4 * BS], b[4 * BS], c[4 * BS];
	uint64_t seed = 7;
	struct inj i;

	CHECK_OK(th_malloc(e, "M0", NB, BS, &err));
	CHECK_OK(th_error_create(e, "M0", &err));
	CHECK_OK(th_open(e, "EE_M0", true, &d, &err));
	th_fill_random(a, sizeof(a), &seed);
	CHECK_EQ(th_write(e, 0, d, a, 10, 4), 0);

	/* failure: reads in [12,14), two times, then pass. */
	i = inj_of(R, K_FAILURE, 2, 12, 2);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	CHECK_EQ(th_read(e, 0, d, b, 8, 4), 0);     /* [8,12) misses */
	CHECK_EQ(th_write(e, 1, d, a, 10, 4), 0);   /* writes unaffected */
	CHECK_EQ(th_read(e, 1, d, b, 10, 4), -EIO); /* overlaps */
	CHECK_EQ(th_read(e, 0, d, b, 13, 1), -EIO);
	CHECK_EQ(th_read(e, 0, d, b, 10, 4), 0);    /* count used up */
	CHECK(memcmp(a, b, sizeof(a)) == 0);

	/* corrupt_data needs a value to XOR in (SPDK's -22). */
	i = inj_of(R, K_CORRUPT, 1, 0, 0);
	CHECK_EQ(inject(e, "EE_M0", &i, &err), -EINVAL);
	CHECK(strstr(err.msg, "'corrupt_value'") != NULL);
	/* corrupt_data, by the name of the base too: corrupt_value XORed into
	 * the byte corrupt_offset from the I/O's start (no range: SPDK's). */
	i.coff = 3;
	i.cval = 0x81;
	CHECK_OK(inject(e, "M0", &i, &err));
	CHECK_EQ(th_read(e, 1, d, b, 10, 4), 0);
	for (unsigned k = 0; k < sizeof(a); k++)
		CHECK_EQ(b[k] ^ a[k], k == 3 ? 0x81 : 0);
	CHECK_EQ(th_read(e, 1, d, b, 10, 4), 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	/* With a range, from the first block of the range the I/O covers. */
	i = inj_of(R, K_CORRUPT, 1, 12, 1);
	i.coff = 7;
	i.cval = 0x10;
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	CHECK_EQ(th_read(e, 0, d, b, 10, 4), 0);
	for (unsigned k = 0; k < sizeof(a); k++)
		CHECK_EQ(b[k] ^ a[k], k == 2 * BS + 7 ? 0x10 : 0);
	/* Writes store the corrupted byte (SPDK's). */
	i = inj_of(W, K_CORRUPT, 1, 0, 0);
	i.coff = BS + 1;
	i.cval = 0xff;
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	memcpy(c, a, sizeof(a));
	CHECK_EQ(th_write(e, 1, d, c, 10, 4), 0);
	CHECK_EQ(th_read(e, 1, d, b, 10, 4), 0);
	for (unsigned k = 0; k < sizeof(a); k++)
		CHECK_EQ(b[k] ^ a[k], k == BS + 1 ? 0xff : 0);
	CHECK_EQ(th_write(e, 1, d, a, 10, 4), 0);

	/* nomem: each of three tries meets a shortage and waits on the
	 * -ENOMEM queue; the fourth passes: the caller sees no error. */
	i = inj_of(R, K_NOMEM, 3, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	memset(b, 0, sizeof(b));
	CHECK_EQ(th_read(e, 0, d, b, 10, 4), 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	CHECK_EQ(driver_num(e, "\"nomem\"", "remaining"), 0);
	i = inj_of(R, K_NONE, 0, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));

	/* drop_write: acknowledged, not stored; unlimited until cleared. */
	i = inj_of(W, K_DROP, 0, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	memset(c, 0x77, sizeof(c));
	CHECK_EQ(th_write(e, 0, d, c, 10, 4), 0);
	CHECK_EQ(th_write(e, 1, d, c, 10, 4), 0);
	CHECK_EQ(th_read(e, 0, d, b, 10, 4), 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
	/* Failure on all types wins first match order: add then clear writes. */
	i = inj_of(0, K_NONE, 0, 0, 0);
	i.mask = W;
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	CHECK_EQ(th_write(e, 0, d, c, 10, 4), 0);
	CHECK_EQ(th_read(e, 0, d, b, 10, 4), 0);
	CHECK(memcmp(c, b, sizeof(c)) == 0);
	/* failure on flush, then clear all. */
	i = inj_of(1u << FB_IO_FLUSH, K_FAILURE, 0, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	CHECK_EQ(th_io(e, 0, d, FB_IO_FLUSH, NULL, 0, 0, 0, 0), -EIO);
	i = inj_of(0, K_NONE, 0, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	CHECK_EQ(th_io(e, 0, d, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0);
	CHECK_EQ(th_io(e, 0, d, FB_IO_WRITE_ZEROES, NULL, 0, 10, 1, 0), 0);
	CHECK_EQ(th_read(e, 0, d, b, 10, 1), 0);
	CHECK_EQ(b[0], 0);
	fb_bdev_close(d);
	fb_engine_destroy(e); /* deletes EE_M0 then M0 */
}

struct held_read {
	struct fb_engine *e;
	struct fb_bdev_desc *d;
	atomic_int rc;          /* 1 until the read returns */
};

static void *held_read_main(void *arg)
{
	struct held_read *h = arg;
	unsigned char buf[BS];

	atomic_store(&h->rc, th_read(h->e, 1, h->d, buf, 5, 1));
	return NULL;
}

/* pending: a read is held until its injection is cleared, then fails with
 * -ECANCELED; other I/O goes on meanwhile. */
TEST(pending)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	struct held_read h;
	pthread_t t;
	unsigned char buf[BS];
	uint64_t deadline = fb_now_ns() + 30ull * 1000000000ull;
	struct inj i = inj_of(R, K_PENDING, 1, 0, 0);

	CHECK_OK(th_malloc(e, "M0", NB, BS, &err));
	CHECK_OK(th_error_create(e, "M0", &err));
	CHECK_OK(th_open(e, "EE_M0", true, &d, &err));
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	h.e = e;
	h.d = d;
	atomic_init(&h.rc, 1);
	CHECK(pthread_create(&t, NULL, held_read_main, &h) == 0);
	while (driver_num(e, NULL, "pending_ios") == 0 && fb_now_ns() < deadline)
		usleep(1000);
	CHECK_EQ(driver_num(e, NULL, "pending_ios"), 1);
	CHECK_EQ(th_read(e, 0, d, buf, 6, 1), 0);   /* the count is used up */
	CHECK_EQ(th_write(e, 1, d, buf, 7, 1), 0);
	i = inj_of(R, K_NONE, 0, 0, 0);
	CHECK_OK(inject(e, "EE_M0", &i, &err));
	while (atomic_load(&h.rc) == 1 && fb_now_ns() < deadline)
		usleep(1000);
	CHECK_EQ(atomic_load(&h.rc), -ECANCELED);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(driver_num(e, NULL, "pending_ios"), 0);
	fb_bdev_close(d);
	fb_engine_destroy(e);
}

struct hammer {
	struct fb_engine *e;
	struct fb_bdev_desc *d;
	unsigned reactor;
	atomic_int *stop;
	atomic_uint ok, failed; /* read by the main thread while hammering */
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	unsigned char buf[2 * BS];
	uint64_t seed = h->reactor + 1;

	while (!atomic_load(h->stop)) {
		int rc;

		th_fill_random(buf, sizeof(buf), &seed);
		/* Each hammer keeps to its half: overlapping I/O would race on data. */
		uint64_t off = h->reactor * (NB / 2) + seed % (NB / 2 - 1);

		rc = (seed & 1) ? th_read(h->e, h->reactor, h->d, buf, off, 2)
				: th_write(h->e, h->reactor, h->d, buf, off, 2);
		CHECK(rc == 0 || rc == -EIO);
		if (rc)
			h->failed++;
		else
			h->ok++;
	}
	return NULL;
}

TEST(switch_under_load)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;
	atomic_int stop = 0;
	struct hammer h[2];
	pthread_t t[2];

	CHECK_OK(th_malloc(e, "M0", NB, BS, &err));
	CHECK_OK(th_error_create(e, "M0", &err));
	CHECK_OK(th_open(e, "EE_M0", true, &d, &err));
	for (unsigned i = 0; i < 2; i++) {
		h[i] = (struct hammer){.e = e, .d = d, .reactor = i, .stop = &stop};
		CHECK(pthread_create(&t[i], NULL, hammer_main, &h[i]) == 0);
	}
	for (unsigned k = 0; k < 60; k++) {
		struct inj i = inj_of(0, (enum kind)(k % 4), k % 3, k % NB, k % 7);

		i.cval = 1;
		CHECK_OK(inject(e, "EE_M0", &i, &err));
	}
	/* Cleared, I/O succeeds again on both reactors. Wait for it rather than
	 * assume the hammers ran during the injections: on a loaded machine the
	 * 60 switches can finish before either thread is scheduled. */
	struct inj clear = inj_of(0, K_NONE, 0, 0, 0);

	CHECK_OK(inject(e, "EE_M0", &clear, &err));
	unsigned base0 = atomic_load(&h[0].ok), base1 = atomic_load(&h[1].ok);

	for (unsigned w = 0; w < 20000; w++) {
		if (atomic_load(&h[0].ok) > base0 && atomic_load(&h[1].ok) > base1)
			break;
		usleep(1000);
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(h[0].ok > base0 && h[1].ok > base1);
	fb_bdev_close(d);
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(claims);
	RUN(kinds);
	RUN(pending);
	RUN(switch_under_load);
	return 0;
}
