/* Module interface: a test module checks lazy per-reactor channels, their
 * teardown on last close and on delete, I/O pool growth under a deep queue,
 * deferred completion, and I/O still held by a consumer at close. */
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static atomic_int ch_created, ch_destroyed, destructed;

struct tmod_ch {
	unsigned magic;
	unsigned reactor;
};

static void noop_msg(void *arg)
{
	(void)arg;
}

static struct fb_bdev_module tmod = {
	.size = sizeof(struct fb_bdev_module),
	.name = "tmod",
	.io_ctx_size = 40,
	.channel_ctx_size = sizeof(struct tmod_ch),
};
FB_BDEV_MODULE_REGISTER(tmod)

static int tmod_ch_create(struct fb_bdev *b, void *ctx)
{
	struct tmod_ch *c = ctx;

	(void)b;
	CHECK_EQ(c->magic, 0); /* zeroed by the engine */
	c->magic = 0xfeed;
	c->reactor = fb_reactor_index(fb_reactor_current());
	atomic_fetch_add(&ch_created, 1);
	return 0;
}

static void tmod_ch_destroy(struct fb_bdev *b, void *ctx)
{
	struct tmod_ch *c = ctx;

	(void)b;
	CHECK_EQ(c->magic, 0xfeed);
	CHECK_EQ(c->reactor, fb_reactor_index(fb_reactor_current()));
	atomic_fetch_add(&ch_destroyed, 1);
}

static void tmod_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	unsigned char *ctx = fb_bdev_io_get_driver_ctx(io);

	CHECK(fb_io_channel_get_reactor(ch) == fb_reactor_current());
	memset(ctx, 0xcd, 40); /* ASan: the driver ctx really has io_ctx_size bytes */
	fb_bdev_io_complete_deferred(io, fb_bdev_io_get_type(io) == FB_IO_FLUSH ? -EIO : 0);
}

static void tmod_destruct(struct fb_bdev *b)
{
	CHECK_EQ(fb_bdev_get_module_ctx(b), (long long)(uintptr_t)&tmod);
	atomic_fetch_add(&destructed, 1);
}

static const struct fb_bdev_fn_table tmod_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = tmod_destruct,
	.submit_request = tmod_submit,
	.channel_create = tmod_ch_create,
	.channel_destroy = tmod_ch_destroy,
};

static void tmod_register(struct fb_engine *e, const char *name)
{
	struct fb_bdev_register_opts p = {.size = sizeof(p), .name = name, .block_size = 512,
					  .num_blocks = 100, .module = &tmod, .fn = &tmod_fn,
					  .ctx = (void *)&tmod};
	struct fb_err err;

	CHECK_OK(fb_bdev_register(e, &p, NULL, &err));
}

TEST(lazy_channels)
{
	struct fb_engine *e = th_engine(3);
	struct fb_bdev_desc *d1, *d2;
	struct fb_err err;
	char buf[512];

	atomic_store(&ch_created, 0);
	atomic_store(&ch_destroyed, 0);
	atomic_store(&destructed, 0);
	tmod_register(e, "T0");
	CHECK_OK(th_open(e, "T0", true, &d1, &err));
	CHECK_OK(th_open(e, "T0", false, &d2, &err));
	CHECK_EQ(atomic_load(&ch_created), 0);
	CHECK_EQ(th_read(e, 0, d1, buf, 0, 1), 0);
	CHECK_EQ(th_read(e, 0, d2, buf, 1, 1), 0);  /* same (bdev, reactor): cached */
	CHECK_EQ(atomic_load(&ch_created), 1);
	CHECK_EQ(th_read(e, 2, d2, buf, 1, 1), 0);
	CHECK_EQ(atomic_load(&ch_created), 2);
	CHECK_EQ(th_io(e, 2, d2, FB_IO_FLUSH, NULL, 0, 0, 0, 0), -EBADF); /* read-only desc */
	CHECK_EQ(th_io(e, 2, d1, FB_IO_FLUSH, NULL, 0, 0, 0, 0), -ENOTSUP); /* no io_type_supported: r/w only */
	fb_bdev_close(d2);
	fb_engine_run_on_all(e, noop_msg, NULL); /* barrier */
	CHECK_EQ(atomic_load(&ch_destroyed), 0); /* d1 still open */
	fb_bdev_close(d1);
	fb_engine_run_on_all(e, noop_msg, NULL);
	CHECK_EQ(atomic_load(&ch_destroyed), 2);
	/* Reopen: channels come back lazily; delete tears them down. */
	CHECK_OK(th_open(e, "T0", true, &d1, &err));
	CHECK_EQ(th_write(e, 1, d1, buf, 5, 1), 0);
	fb_bdev_close(d1);
	CHECK_OK(fb_bdev_delete(e, "T0", &err));
	CHECK_EQ(atomic_load(&ch_created), 3);
	CHECK_EQ(atomic_load(&ch_destroyed), 3);
	CHECK_EQ(atomic_load(&destructed), 1);
	fb_engine_destroy(e);
}

/* A deep queue on one channel grows the pool past one slab; a consumer that
 * frees its I/O only after closing keeps the channel alive until then. */
struct deep {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	struct fb_bdev_io *held[200];
	unsigned done;
	char buf[512];
	struct iovec iov;
	atomic_int finished;
};

static void deep_cb(struct fb_bdev_io *io, int status, void *arg)
{
	struct deep *d = arg;

	CHECK_EQ(status, 0);
	d->held[d->done++] = io; /* keep it: freed later */
	if (d->done == 200) {
		fb_put_io_channel(d->ch);
		atomic_store(&d->finished, 1);
	}
}

static void deep_start(void *arg)
{
	struct deep *d = arg;

	d->ch = fb_bdev_get_io_channel(d->desc);
	d->iov.iov_base = d->buf;
	d->iov.iov_len = sizeof(d->buf);
	for (unsigned i = 0; i < 200; i++)
		CHECK_EQ(fb_bdev_readv_blocks(d->desc, d->ch, &d->iov, 1, i % 100, 1, deep_cb, d), 0);
	CHECK_EQ(d->done, 0); /* deferred: nothing completes inside submit */
}

static void deep_free(void *arg)
{
	struct deep *d = arg;

	for (unsigned i = 0; i < 200; i++)
		fb_bdev_free_io(d->held[i]);
}

TEST(deep_queue_and_late_free)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	struct deep d = {0};

	atomic_store(&ch_created, 0);
	atomic_store(&ch_destroyed, 0);
	tmod_register(e, "T1");
	CHECK_OK(th_open(e, "T1", false, &d.desc, &err));
	fb_reactor_send(fb_engine_get_reactor(e, 0), deep_start, &d);
	while (!atomic_load(&d.finished))
		usleep(1000);
	fb_bdev_close(d.desc);
	fb_engine_run_on_all(e, noop_msg, NULL);
	CHECK_EQ(atomic_load(&ch_destroyed), 0); /* 200 I/Os still held */
	fb_reactor_run_sync(fb_engine_get_reactor(e, 0), deep_free, &d);
	CHECK_EQ(atomic_load(&ch_destroyed), 1);
	fb_engine_destroy(e);
}

static int dup_subsys_fini_calls;

static void subsys_fini(struct fb_engine *e, void *ctx)
{
	(void)e;
	CHECK(ctx == &dup_subsys_fini_calls);
	dup_subsys_fini_calls++;
}

TEST(subsystems)
{
	struct fb_engine *e = th_engine(1);

	CHECK_EQ(fb_engine_subsys_register(e, "nbd", &dup_subsys_fini_calls, subsys_fini), 0);
	CHECK_EQ(fb_engine_subsys_register(e, "nbd", NULL, NULL), -EEXIST);
	CHECK(fb_engine_subsys_get(e, "nbd") == &dup_subsys_fini_calls);
	CHECK(fb_engine_subsys_get(e, "vhost") == NULL);
	fb_engine_destroy(e);
	CHECK_EQ(dup_subsys_fini_calls, 1);
}

int main(void)
{
	RUN(lazy_channels);
	RUN(deep_queue_and_late_free);
	RUN(subsystems);
	return 0;
}
