/* Stacked bdevs on the module ABI, with the test-only modules under
 * test/modules (linked only into this test): randomized I/O against a
 * reference image through a passthru (core write-zeroes emulation), a
 * striping module that fans out itself (scratch buffers, io_wait, core
 * bounce for required_alignment) and one the core splits on its strip
 * boundary (and max_io_blocks); hot-remove of a base under I/O; resize
 * events; for-each-channel in both forms; examine reassembling a bdev from
 * on-disk metadata through fb_bdev_io_sync. */
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define BS 512u
#define QD 8u
#define MAX_BLOCKS 40u
#define DEADLINE_S 60

/* ------------------------------------------------------------ random I/O */

struct rio;

struct slot {
	struct rio *r;
	uint64_t first, count;          /* the blocks this slot owns */
	unsigned char *buf;             /* MAX_BLOCKS * BS + slack for misalignment */
	struct iovec iov[3];
	int iovcnt;
	enum fb_io_type type;
	uint64_t off, n;
};

struct rio {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	unsigned char *ref;             /* the reference image, shared; slots own slices */
	uint64_t seed;
	long ops_left;                  /* < 0: until the bdev is removed */
	unsigned active;
	bool removal;                   /* hot-remove run: stop on -ENODEV or any error */
	bool stop;
	atomic_uint completed, failed, enodev;
	sem_t done;
	struct slot slots[QD];
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void slot_next(struct slot *s);

static void slot_stop(struct slot *s)
{
	struct rio *r = s->r;

	if (--r->active == 0) {
		fb_put_io_channel(r->ch);
		sem_post(&r->done);
	}
}

static void slot_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct slot *s = arg;
	struct rio *r = s->r;
	size_t len = s->n * BS, pos = 0;

	fb_bdev_free_io(io);
	atomic_fetch_add(&r->completed, 1);
	if (status) {
		atomic_fetch_add(&r->failed, 1);
		if (!r->removal)
			th_fail(__FILE__, __LINE__, "io type %d at %llu+%llu failed: %d", s->type,
				(unsigned long long)s->off, (unsigned long long)s->n, status);
		r->stop = true; /* the reference is unknown from here */
	} else if (!r->stop) {
		switch (s->type) {
		case FB_IO_READ:
			for (int i = 0; i < s->iovcnt; i++) {
				if (memcmp(s->iov[i].iov_base, r->ref + s->off * BS + pos, s->iov[i].iov_len))
					th_fail(__FILE__, __LINE__, "read %llu+%llu differs from the reference",
						(unsigned long long)s->off, (unsigned long long)s->n);
				pos += s->iov[i].iov_len;
			}
			break;
		case FB_IO_WRITE:
			for (int i = 0; i < s->iovcnt; i++) {
				memcpy(r->ref + s->off * BS + pos, s->iov[i].iov_base, s->iov[i].iov_len);
				pos += s->iov[i].iov_len;
			}
			break;
		case FB_IO_WRITE_ZEROES:
			memset(r->ref + s->off * BS, 0, len);
			break;
		default:
			break;
		}
	}
	slot_next(s);
}

static void slot_next(struct slot *s)
{
	struct rio *r = s->r;
	uint64_t x = rnd(&r->seed);
	size_t len, cut1, cut2, mis;
	int rc;

	if (r->stop || r->ops_left == 0) {
		slot_stop(s);
		return;
	}
	if (r->ops_left > 0)
		r->ops_left--;
	s->n = 1 + x % (MAX_BLOCKS < s->count ? MAX_BLOCKS : s->count);
	s->off = s->first + (x >> 8) % (s->count - s->n + 1);
	switch ((x >> 24) % 20) {
	case 0: case 1: s->type = FB_IO_WRITE_ZEROES; break;
	case 2: s->type = FB_IO_FLUSH; break;
	case 3: case 4: case 5: case 6: case 7: case 8: case 9: case 10: s->type = FB_IO_READ; break;
	default: s->type = FB_IO_WRITE; break;
	}
	/* 1 to 3 pieces of any byte length at any address. */
	len = s->n * BS;
	mis = (x >> 32) % 64;
	cut1 = (x >> 40) % (len + 1);
	cut2 = cut1 + (x >> 48) % (len - cut1 + 1);
	s->iovcnt = 0;
	{
		size_t edges[4] = {0, cut1, cut2, len};

		for (int i = 0; i < 3; i++) {
			if (edges[i + 1] == edges[i])
				continue;
			s->iov[s->iovcnt].iov_base = s->buf + mis + edges[i] + (size_t)i * 8;
			s->iov[s->iovcnt].iov_len = edges[i + 1] - edges[i];
			s->iovcnt++;
		}
	}
	switch (s->type) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(r->desc, r->ch, s->iov, s->iovcnt, s->off, s->n, slot_done, s);
		break;
	case FB_IO_WRITE:
		for (int i = 0; i < s->iovcnt; i++)
			th_fill_random(s->iov[i].iov_base, s->iov[i].iov_len, &r->seed);
		rc = fb_bdev_writev_blocks(r->desc, r->ch, s->iov, s->iovcnt, s->off, s->n,
					   (x & 1) ? FB_IO_FLAG_FUA : 0, slot_done, s);
		break;
	case FB_IO_WRITE_ZEROES:
		rc = fb_bdev_write_zeroes_blocks(r->desc, r->ch, s->off, s->n, 0, slot_done, s);
		break;
	default:
		rc = fb_bdev_flush_blocks(r->desc, r->ch, 0, 0, slot_done, s);
		break;
	}
	if (rc == -ENODEV && r->removal) {
		atomic_fetch_add(&r->enodev, 1);
		r->stop = true;
		slot_stop(s);
		return;
	}
	if (rc)
		th_fail(__FILE__, __LINE__, "submit of io type %d failed: %d", s->type, rc);
}

static void rio_start_msg(void *arg)
{
	struct rio *r = arg;

	r->ch = fb_bdev_get_io_channel(r->desc);
	CHECK(r->ch != NULL);
	r->active = QD;
	for (unsigned i = 0; i < QD; i++)
		slot_next(&r->slots[i]);
}

/* Random I/O on reactor `reactor` over blocks [first, first+count) of desc. */
static struct rio *rio_start(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc,
			     unsigned char *ref, uint64_t first, uint64_t count, long ops, bool removal)
{
	struct rio *r = calloc(1, sizeof(*r));

	CHECK(r != NULL);
	r->desc = desc;
	r->ref = ref;
	r->seed = 0x9e3779b97f4a7c15ull ^ (first * 7919 + reactor);
	r->ops_left = ops;
	r->removal = removal;
	sem_init(&r->done, 0, 0);
	for (unsigned i = 0; i < QD; i++) {
		r->slots[i] = (struct slot){.r = r, .first = first + i * (count / QD), .count = count / QD};
		r->slots[i].buf = malloc(MAX_BLOCKS * BS + 128);
		CHECK(r->slots[i].buf != NULL);
	}
	fb_reactor_send(fb_engine_get_reactor(e, reactor), rio_start_msg, r);
	return r;
}

static void rio_wait(struct rio *r)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DEADLINE_S;
	if (sem_timedwait(&r->done, &ts) != 0)
		th_fail(__FILE__, __LINE__, "random I/O did not finish within %d s (a hang)", DEADLINE_S);
	sem_destroy(&r->done);
	for (unsigned i = 0; i < QD; i++)
		free(r->slots[i].buf);
	free(r);
}

/* Two reactors, each on half of the bdev, then the whole image is compared. */
static void random_io(struct fb_engine *e, const char *name, uint64_t nb, long ops)
{
	struct fb_bdev_desc *d;
	struct fb_err err;
	unsigned char *ref = calloc(nb, BS), *all = malloc(nb * BS);
	struct rio *r0, *r1;

	CHECK(ref && all);
	CHECK_OK(th_open(e, name, true, &d, &err));
	/* Start from a known image: zeros everywhere. */
	CHECK_EQ(th_io(e, 0, d, FB_IO_WRITE_ZEROES, NULL, 0, 0, nb, 0), 0);
	r0 = rio_start(e, 0, d, ref, 0, nb / 2, ops, false);
	r1 = rio_start(e, 1, d, ref, nb / 2, nb / 2, ops, false);
	rio_wait(r0);
	rio_wait(r1);
	for (unsigned r = 0; r < 2; r++) {
		CHECK_EQ(th_read(e, r, d, all, 0, nb), 0);
		CHECK(memcmp(all, ref, nb * BS) == 0);
	}
	fb_bdev_close(d);
	free(ref);
	free(all);
}

/* The striping module's layout: virtual strip k is base strip k ^ 1. */
static void check_strips(struct fb_engine *e, const char *split, const char *base, uint32_t strip,
			 uint64_t data_offset)
{
	struct fb_bdev_desc *ds, *db;
	struct fb_err err;
	uint64_t nb;
	unsigned char *v, *b;

	CHECK_OK(th_open(e, split, false, &ds, &err));
	CHECK_OK(th_open(e, base, false, &db, &err));
	nb = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(ds));
	v = malloc(nb * BS);
	b = malloc(nb * BS);
	CHECK_EQ(th_read(e, 0, ds, v, 0, nb), 0);
	CHECK_EQ(th_read(e, 1, db, b, data_offset, nb), 0);
	for (uint64_t s = 0; s < nb / strip; s++)
		CHECK(memcmp(v + s * strip * BS, b + (s ^ 1) * strip * BS, (size_t)strip * BS) == 0);
	free(v);
	free(b);
	fb_bdev_close(ds);
	fb_bdev_close(db);
}

/* ---------------------------------------------------------------- tests */

TEST(passthru_random)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *d;
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M0", 4096, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_passthru_create", "{\"base_bdev_name\":\"M0\",\"name\":\"P0\"}"));
	CHECK_OK(th_open(e, "P0", false, &d, &err));
	/* Write-zeroes emulated by the core; unmap not claimed. */
	CHECK(fb_bdev_io_type_supported(fb_bdev_desc_get_bdev(d), FB_IO_WRITE_ZEROES));
	CHECK(!fb_bdev_io_type_supported(fb_bdev_desc_get_bdev(d), FB_IO_UNMAP));
	fb_bdev_close(d);
	random_io(e, "P0", 4096, 3000);
	fb_engine_destroy(e);
}

TEST(split_module_fans_out)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M1", 4096, BS, &err));
	/* The module splits itself; the core bounces addresses off 512 bytes. */
	CHECK_OK(th_rpc(e, &err, "test_split_create", "{\"name\":\"S1\",\"base_bdev_name\":\"M1\","
			"\"strip_blocks\":8,\"required_alignment\":9}"));
	random_io(e, "S1", 4096, 3000);
	check_strips(e, "S1", "M1", 8, 0);
	fb_engine_destroy(e);
}

TEST(split_by_core)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M2", 4096, BS, &err));
	/* The core splits on the strip and into at most 4 blocks per I/O. */
	CHECK_OK(th_rpc(e, &err, "test_split_create", "{\"name\":\"S2\",\"base_bdev_name\":\"M2\","
			"\"strip_blocks\":8,\"core_split\":true,\"max_io_blocks\":4}"));
	random_io(e, "S2", 4096, 3000);
	check_strips(e, "S2", "M2", 8, 0);
	/* And a stack: passthru (core write-zeroes) over the core-split module. */
	CHECK_OK(th_rpc(e, &err, "bdev_passthru_create", "{\"base_bdev_name\":\"S2\",\"name\":\"P2\"}"));
	random_io(e, "P2", 4096, 2000);
	check_strips(e, "S2", "M2", 8, 0);
	fb_engine_destroy(e);
}

struct remove_watch {
	atomic_int removes, resizes;
	struct fb_bdev_desc *desc;
};

static void consumer_event(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx)
{
	struct remove_watch *w = ctx;

	(void)bdev;
	if (type == FB_BDEV_EVENT_REMOVE)
		atomic_fetch_add(&w->removes, 1);
	else
		atomic_fetch_add(&w->resizes, 1);
}

struct deleter {
	struct fb_engine *e;
	int rc;
	atomic_bool done;
	struct fb_err err;
};

static void *deleter_main(void *arg)
{
	struct deleter *d = arg;

	d->rc = fb_bdev_delete(d->e, "M3", &d->err);
	atomic_store(&d->done, true);
	return NULL;
}

static int count_bdevs(const struct fb_bdev_info *info, void *arg)
{
	(void)info;
	(*(int *)arg)++;
	return 0;
}

TEST(hot_remove_under_io)
{
	struct fb_engine *e = th_engine(2);
	struct remove_watch w = {0};
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = true, .holder = "the test",
				       .event_cb = consumer_event, .event_ctx = &w};
	struct deleter del = {.e = e};
	unsigned char *ref = calloc(4096, BS);
	struct rio *r0, *r1;
	struct fb_err err;
	pthread_t t;
	struct timespec ts;
	int n = 0;

	CHECK_OK(th_malloc(e, "M3", 4096, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_passthru_create", "{\"base_bdev_name\":\"M3\",\"name\":\"P3\"}"));
	CHECK_OK(fb_bdev_open(e, "P3", &oo, &w.desc, &err));
	r0 = rio_start(e, 0, w.desc, ref, 0, 2048, -1, true);
	r1 = rio_start(e, 1, w.desc, ref, 2048, 2048, -1, true);
	/* Let I/O run, then delete the base under it. */
	for (int i = 0; i < 5000 && atomic_load(&r0->completed) + atomic_load(&r1->completed) < 2000; i++)
		usleep(1000);
	CHECK(atomic_load(&r0->completed) > 0);
	CHECK(pthread_create(&t, NULL, deleter_main, &del) == 0);
	/* The REMOVE reaches the consumer through the passthru; new I/O then
	 * fails -ENODEV and what was in flight completes. */
	rio_wait(r0);
	rio_wait(r1);
	CHECK_EQ(atomic_load(&w.removes), 1);
	CHECK(!atomic_load(&del.done)); /* the delete waits for the consumer to close */
	fb_bdev_close(w.desc);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DEADLINE_S;
	CHECK(pthread_timedjoin_np(t, NULL, &ts) == 0);
	CHECK_OK(del.rc);
	CHECK_EQ(fb_bdev_foreach(e, NULL, count_bdevs, &n), 0);
	CHECK_EQ(n, 0); /* the passthru went with its base */
	free(ref);
	fb_engine_destroy(e);
}

TEST(resize_event)
{
	struct fb_engine *e = th_engine(1);
	struct remove_watch w = {0};
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .event_cb = consumer_event, .event_ctx = &w};
	struct fb_err err;
	unsigned char buf[BS];

	CHECK_OK(th_malloc(e, "M4", 64, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_passthru_create", "{\"base_bdev_name\":\"M4\",\"name\":\"P4\"}"));
	CHECK_OK(fb_bdev_open(e, "P4", &oo, &w.desc, &err));
	CHECK_OK(fb_bdev_notify_blockcnt_change(fb_bdev_desc_get_bdev(w.desc), 32));
	CHECK_EQ(atomic_load(&w.resizes), 1);
	CHECK_EQ(fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(w.desc)), 32);
	CHECK_EQ(th_read(e, 0, w.desc, buf, 32, 1), -EINVAL);
	CHECK_EQ(th_read(e, 0, w.desc, buf, 31, 1), 0);
	fb_bdev_close(w.desc);
	fb_engine_destroy(e);
}

struct iter {
	atomic_int calls;
	bool returned;
	struct fb_reactor *origin;
	struct fb_bdev *bdev;
	sem_t done;
};

static void iter_fn(struct fb_io_channel *ch, void *ctx, void *arg)
{
	struct iter *it = arg;

	CHECK(fb_io_channel_get_reactor(ch) == fb_reactor_current());
	CHECK(ctx == fb_io_channel_get_ctx(ch));
	atomic_fetch_add(&it->calls, 1);
}

static void iter_done(void *arg, int status)
{
	struct iter *it = arg;

	CHECK_EQ(status, 0);
	CHECK(it->returned); /* never before fb_bdev_for_each_channel returned */
	CHECK(fb_reactor_current() == it->origin);
	sem_post(&it->done);
}

static void iter_async_msg(void *arg)
{
	struct iter *it = arg;

	it->origin = fb_reactor_current();
	CHECK_EQ(fb_bdev_for_each_channel(it->bdev, iter_fn, it, iter_done), 0);
	it->returned = true;
}

TEST(for_each_channel)
{
	struct fb_engine *e = th_engine(3);
	struct fb_bdev_desc *d;
	struct fb_err err;
	struct iter it = {0};
	unsigned char buf[BS];
	struct timespec ts;

	CHECK_OK(th_malloc(e, "M5", 64, BS, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_passthru_create", "{\"base_bdev_name\":\"M5\",\"name\":\"P5\"}"));
	CHECK_OK(th_open(e, "P5", true, &d, &err));
	it.bdev = fb_bdev_desc_get_bdev(d);
	sem_init(&it.done, 0, 0);
	/* Channels on reactors 0 and 2 only (th_io puts them back; the open
	 * descriptor keeps them cached). */
	CHECK_EQ(th_read(e, 0, d, buf, 0, 1), 0);
	CHECK_EQ(th_read(e, 2, d, buf, 0, 1), 0);
	CHECK_EQ(fb_bdev_for_each_channel(it.bdev, iter_fn, &it, NULL), 0);
	CHECK_EQ(atomic_load(&it.calls), 2);
	atomic_store(&it.calls, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 1), iter_async_msg, &it);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DEADLINE_S;
	CHECK(sem_timedwait(&it.done, &ts) == 0);
	CHECK_EQ(atomic_load(&it.calls), 2);
	sem_destroy(&it.done);
	fb_bdev_close(d);
	fb_engine_destroy(e);
}

TEST(examine_reassembles)
{
	struct fb_engine *e = th_engine(2);
	char path[] = "/tmp/fb_stack_test_XXXXXX";
	unsigned char sb[BS] = "FBSPLIT1";
	uint32_t strip = 4;
	struct fb_bdev_desc *d;
	struct fb_err err;
	int fd = mkstemp(path), n = 0;

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 1 << 20) == 0);
	memcpy(sb + 9, &strip, sizeof(strip));
	CHECK_EQ(pwrite(fd, sb, sizeof(sb), 0), (long long)sizeof(sb));
	close(fd);
	/* Creating the file bdev runs the split module's examine, which finds
	 * its superblock (fb_bdev_io_sync) and claims the bdev. */
	CHECK_OK(th_file(e, "F6", path, BS, "", &err));
	CHECK_EQ(fb_bdev_foreach(e, NULL, count_bdevs, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_OK(th_open(e, "F6_split", false, &d, &err));
	CHECK_EQ(fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d)), (2048 - 2 * 4) / 8 * 8);
	fb_bdev_close(d);
	CHECK_EQ(th_open(e, "F6", true, &d, &err), -EPERM); /* claimed */
	random_io(e, "F6_split", 2032, 1000);
	check_strips(e, "F6_split", "F6", 4, 8);
	/* The superblock is untouched by data I/O; io_sync reads it back. */
	CHECK_OK(th_open(e, "F6", false, &d, &err));
	{
		unsigned char back[BS];

		CHECK_EQ(fb_bdev_io_sync(d, FB_IO_READ, back, 0, 1, 0), 0);
		CHECK(memcmp(back, sb, BS) == 0);
		CHECK_EQ(fb_bdev_io_sync(d, FB_IO_WRITE, back, 0, 1, 0), -EBADF); /* read-only */
	}
	fb_bdev_close(d);
	fb_engine_destroy(e);
	unlink(path);
}

int main(void)
{
	RUN(passthru_random);
	RUN(split_module_fans_out);
	RUN(split_by_core);
	RUN(hot_remove_under_io);
	RUN(resize_event);
	RUN(for_each_channel);
	RUN(examine_reassembles);
	fprintf(stderr, "stack_test: ok\n");
	return 0;
}
