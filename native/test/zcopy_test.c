/* Zero-copy reads: malloc lends its memory (data, stats, range checks, the
 * lent memory outliving the descriptor), other bdevs refuse, and the core
 * catches a module that lends the wrong length. */
#include <semaphore.h>
#include <unistd.h>

#include "harness.h"

#define BS 512u
#define NB 256u

/* One zcopy on a reactor; the io is kept (not freed) when it succeeds. */
struct zc_ctx {
	struct fb_bdev_desc *desc;
	uint64_t off, num;
	bool populate;
	int rc;
	struct fb_bdev_io *io;
	const struct iovec *iov;
	int iovcnt;
	sem_t done;
};

static void zc_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct zc_ctx *z = arg;

	z->rc = status;
	z->iov = fb_bdev_io_get_buf_iovs(io, &z->iovcnt);
	if (status == 0)
		z->io = io;
	else
		fb_bdev_free_io(io);
	sem_post(&z->done);
}

static void zc_msg(void *arg)
{
	struct zc_ctx *z = arg;
	struct fb_io_channel *ch = fb_bdev_get_io_channel(z->desc);
	int rc;

	if (!ch) {
		z->rc = -ENOMEM;
		sem_post(&z->done);
		return;
	}
	rc = fb_bdev_zcopy_start(z->desc, ch, z->off, z->num, z->populate, zc_done, z);
	/* The io pins the channel; our reference can go now. */
	fb_put_io_channel(ch);
	if (rc) {
		z->rc = rc;
		sem_post(&z->done);
	}
}

static void zc_free_msg(void *arg)
{
	struct zc_ctx *z = arg;

	fb_bdev_free_io(z->io);
	z->io = NULL;
	sem_post(&z->done);
}

static void zc_run(struct fb_engine *e, unsigned reactor, struct zc_ctx *z, fb_msg_fn fn)
{
	fb_reactor_send(fb_engine_get_reactor(e, reactor), fn, z);
	while (sem_wait(&z->done) != 0)
		;
}

/* Starts a zcopy read; returns the submit error or completion status. */
static int zc_start(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc,
		    struct zc_ctx *z, uint64_t off, uint64_t num, bool populate)
{
	memset(z, 0, sizeof(*z));
	sem_init(&z->done, 0, 0);
	z->desc = desc;
	z->off = off;
	z->num = num;
	z->populate = populate;
	zc_run(e, reactor, z, zc_msg);
	return z->rc;
}

static void zc_end(struct fb_engine *e, unsigned reactor, struct zc_ctx *z)
{
	if (z->io)
		zc_run(e, reactor, z, zc_free_msg);
	sem_destroy(&z->done);
}

static int get_stats(const struct fb_bdev_info *info, void *arg)
{
	*(struct fb_bdev_stats *)arg = info->stats;
	return 0;
}

TEST(test_malloc_read)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *desc, *ro;
	struct fb_bdev_stats s0, s1;
	struct fb_err err;
	struct zc_ctx z;
	unsigned char *data = malloc((size_t)NB * BS);
	uint64_t seed = 42;

	CHECK_OK(th_malloc(e, "M0", NB, BS, &err));
	CHECK_OK(th_open(e, "M0", true, &desc, &err));
	CHECK(fb_bdev_zcopy_supported(fb_bdev_desc_get_bdev(desc)));
	th_fill_random(data, (size_t)NB * BS, &seed);
	CHECK_EQ(th_write(e, 0, desc, data, 0, NB), 0);
	CHECK_OK(fb_bdev_foreach(e, "M0", get_stats, &s0));

	/* Same data as written, from either reactor, with one lent iovec. */
	for (unsigned r = 0; r < 2; r++) {
		CHECK_EQ(zc_start(e, r, desc, &z, 10 + r, 33, true), 0);
		CHECK_EQ(z.iovcnt, 1);
		CHECK_EQ(z.iov[0].iov_len, 33 * BS);
		CHECK(memcmp(z.iov[0].iov_base, data + (10 + r) * BS, 33 * BS) == 0);
		zc_end(e, r, &z);
	}
	CHECK_OK(fb_bdev_foreach(e, "M0", get_stats, &s1));
	CHECK_EQ(s1.num_read_ops - s0.num_read_ops, 2);
	CHECK_EQ(s1.bytes_read - s0.bytes_read, 2 * 33 * BS);
	CHECK(s1.read_latency_ns > s0.read_latency_ns);
	CHECK_EQ(s1.io_errors, s0.io_errors);

	/* Out of range, empty, and write-shaped (populate = false) requests. */
	CHECK_EQ(zc_start(e, 0, desc, &z, NB - 1, 2, true), -EINVAL);
	zc_end(e, 0, &z);
	CHECK_EQ(zc_start(e, 0, desc, &z, NB, 1, true), -EINVAL);
	zc_end(e, 0, &z);
	CHECK_EQ(zc_start(e, 0, desc, &z, UINT64_MAX, 2, true), -EINVAL);
	zc_end(e, 0, &z);
	CHECK_EQ(zc_start(e, 0, desc, &z, 0, 0, true), -EINVAL);
	zc_end(e, 0, &z);
	CHECK_EQ(zc_start(e, 0, desc, &z, 0, 1, false), -ENOTSUP);
	zc_end(e, 0, &z);
	CHECK_OK(fb_bdev_foreach(e, "M0", get_stats, &s0));
	CHECK_EQ(s0.num_read_ops, s1.num_read_ops);

	/* A read-only descriptor may read without copying. */
	CHECK_OK(th_open(e, "M0", false, &ro, &err));
	CHECK_EQ(zc_start(e, 1, ro, &z, 0, NB, true), 0);
	CHECK(memcmp(z.iov[0].iov_base, data, (size_t)NB * BS) == 0);
	zc_end(e, 1, &z);
	fb_bdev_close(ro);

	/* The lent memory outlives the descriptor: the bdev cannot be deleted
	 * (nor its mapping freed) until the io is. */
	CHECK_EQ(zc_start(e, 0, desc, &z, 5, 7, true), 0);
	fb_bdev_close(desc);
	usleep(20000); /* let the reactors process the channel release */
	CHECK(memcmp(z.iov[0].iov_base, data + 5 * BS, 7 * BS) == 0);
	zc_end(e, 0, &z);
	CHECK_OK(fb_bdev_delete(e, "M0", &err));
	free(data);
	fb_engine_destroy(e);
}

TEST(test_unsupported)
{
	struct fb_engine *e = th_engine(1);
	const char *names[] = {"F0", "N0", "EE_M1"};
	char path[] = "/tmp/fb_zcopy_test_XXXXXX";
	struct fb_err err;
	struct zc_ctx z;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)NB * BS) == 0);
	close(fd);
	CHECK_OK(th_file(e, "F0", path, BS, "", &err));
	CHECK_OK(th_null(e, "N0", NB, BS, &err));
	CHECK_OK(th_malloc(e, "M1", NB, BS, &err));
	CHECK_OK(th_error_create(e, "M1", &err)); /* over a zcopy bdev, still none */
	for (unsigned i = 0; i < 3; i++) {
		struct fb_bdev_desc *desc;

		CHECK_OK(th_open(e, names[i], false, &desc, &err));
		CHECK(!fb_bdev_zcopy_supported(fb_bdev_desc_get_bdev(desc)));
		CHECK(!fb_bdev_io_type_supported(fb_bdev_desc_get_bdev(desc), FB_IO_ZCOPY));
		CHECK_EQ(zc_start(e, 0, desc, &z, 0, 1, true), -ENOTSUP);
		zc_end(e, 0, &z);
		fb_bdev_close(desc);
	}
	fb_engine_destroy(e);
	unlink(path);
}

/* A module that lends `lend` bytes whatever was asked. */
static size_t g_lend;
static unsigned char g_mem[5 * BS];

static void short_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	int rc = 0;

	(void)ch;
	for (size_t left = g_lend; left && !rc; left -= BS)
		rc = fb_bdev_io_set_buf(io, g_mem + (g_lend - left), BS);
	fb_bdev_io_complete_deferred(io, rc);
}

static bool short_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_ZCOPY;
}

static struct fb_bdev_module short_module = {.size = sizeof(struct fb_bdev_module), .name = "short"};
FB_BDEV_MODULE_REGISTER(short_module)
static const struct fb_bdev_fn_table short_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.submit_request = short_submit,
	.io_type_supported = short_supported,
};

TEST(test_module_contract)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_register_opts p = {.size = sizeof(p), .name = "S0", .block_size = BS,
					  .num_blocks = 4, .module = &short_module, .fn = &short_fn};
	struct fb_bdev_desc *desc;
	struct fb_bdev_stats s;
	struct fb_err err;
	struct zc_ctx z;

	CHECK_OK(fb_bdev_register(e, &p, NULL, &err));
	CHECK_OK(th_open(e, "S0", false, &desc, &err));
	/* Pieces add up: four iovecs are fine. */
	g_lend = 4 * BS;
	CHECK_EQ(zc_start(e, 0, desc, &z, 0, 4, true), 0);
	CHECK_EQ(z.iovcnt, 4);
	CHECK(z.iov[3].iov_base == g_mem + 3 * BS);
	zc_end(e, 0, &z);
	/* Too little lent: failed, nothing handed out. */
	g_lend = 2 * BS;
	CHECK_EQ(zc_start(e, 0, desc, &z, 0, 3, true), -EIO);
	CHECK(z.iov == NULL);
	CHECK_EQ(z.iovcnt, 0);
	zc_end(e, 0, &z);
	/* More pieces than FB_ZCOPY_IOV_MAX: set_buf refuses the fifth. */
	g_lend = 5 * BS;
	CHECK_EQ(zc_start(e, 0, desc, &z, 0, 4, true), -ENOSPC);
	zc_end(e, 0, &z);
	CHECK_OK(fb_bdev_foreach(e, "S0", get_stats, &s));
	CHECK_EQ(s.num_read_ops, 1);
	CHECK_EQ(s.io_errors, 2);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(test_malloc_read);
	RUN(test_unsupported);
	RUN(test_module_contract);
	fprintf(stderr, "zcopy_test: ok\n");
	return 0;
}
