#include <semaphore.h>
#include <stdarg.h>

#include "harness.h"

void th_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: FAIL: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

struct fb_engine *th_engine(unsigned reactors)
{
	struct fb_engine_opts o;
	struct fb_engine *e = NULL;
	struct fb_err err;

	fb_engine_opts_init(&o);
	o.reactors = reactors;
	o.poll_us = 20;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	return e;
}

int th_rpc(struct fb_engine *e, struct fb_err *err, const char *method, const char *params_fmt, ...)
{
	char params[4096];
	char *result = NULL;
	va_list ap;
	int rc;

	va_start(ap, params_fmt);
	vsnprintf(params, sizeof(params), params_fmt, ap);
	va_end(ap);
	rc = fb_rpc_call(e, method, params, &result, err);
	free(result);
	return rc;
}

uint64_t th_stat_u64(struct fb_engine *e, const char *method, const char *name, const char *key)
{
	char params[512], pat[128], *res = NULL;
	const char *at;
	struct fb_err err;
	uint64_t v;

	snprintf(params, sizeof(params), "{\"name\":\"%s\"}", name);
	if (fb_rpc_call(e, method, params, &res, &err))
		th_fail(__FILE__, __LINE__, "%s %s: %s", method, params, err.msg);
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	at = strstr(res, pat);
	if (!at)
		th_fail(__FILE__, __LINE__, "%s has no %s: %s", method, key, res);
	v = strtoull(at + strlen(pat), NULL, 10);
	free(res);
	return v;
}

int th_malloc(struct fb_engine *e, const char *name, uint64_t num_blocks, uint32_t block_size,
	      struct fb_err *err)
{
	return th_rpc(e, err, "bdev_malloc_create", "{\"name\":\"%s\",\"num_blocks\":%llu,"
		      "\"block_size\":%u}", name, (unsigned long long)num_blocks, block_size);
}

int th_null(struct fb_engine *e, const char *name, uint64_t num_blocks, uint32_t block_size,
	    struct fb_err *err)
{
	return th_rpc(e, err, "bdev_null_create", "{\"name\":\"%s\",\"num_blocks\":%llu,"
		      "\"block_size\":%u}", name, (unsigned long long)num_blocks, block_size);
}

int th_file(struct fb_engine *e, const char *name, const char *path, uint32_t block_size,
	    const char *extra, struct fb_err *err)
{
	char bs[32] = "";

	if (block_size)
		snprintf(bs, sizeof(bs), ",\"block_size\":%u", block_size);
	return th_rpc(e, err, "bdev_uring_create", "{\"name\":\"%s\",\"filename\":\"%s\"%s%s%s}",
		      name, path, bs, extra && *extra ? "," : "", extra ? extra : "");
}

int th_error_create(struct fb_engine *e, const char *base_name, struct fb_err *err)
{
	return th_rpc(e, err, "bdev_error_create", "{\"base_name\":\"%s\"}", base_name);
}

int th_open(struct fb_engine *e, const char *name, bool write, struct fb_bdev_desc **out,
	    struct fb_err *err)
{
	struct fb_bdev_open_opts o = {.size = sizeof(o), .write = write, .holder = "a test"};

	return fb_bdev_open(e, name, &o, out, err);
}

struct th_io_ctx {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	enum fb_io_type type;
	struct iovec *iov;
	int iovcnt;
	uint64_t off, num;
	uint32_t flags;
	int rc;
	sem_t done;
};

static void th_io_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct th_io_ctx *c = arg;

	c->rc = status;
	fb_bdev_free_io(io);
	fb_put_io_channel(c->ch);
	sem_post(&c->done);
}

static void th_io_msg(void *arg)
{
	struct th_io_ctx *c = arg;
	int rc;

	c->ch = fb_bdev_get_io_channel(c->desc);
	if (!c->ch) {
		c->rc = -ENOMEM;
		sem_post(&c->done);
		return;
	}
	switch (c->type) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(c->desc, c->ch, c->iov, c->iovcnt, c->off, c->num, th_io_done, c);
		break;
	case FB_IO_WRITE:
		rc = fb_bdev_writev_blocks(c->desc, c->ch, c->iov, c->iovcnt, c->off, c->num, c->flags,
					   th_io_done, c);
		break;
	case FB_IO_FLUSH:
		rc = fb_bdev_flush_blocks(c->desc, c->ch, c->off, c->num, th_io_done, c);
		break;
	case FB_IO_UNMAP:
		rc = fb_bdev_unmap_blocks(c->desc, c->ch, c->off, c->num, th_io_done, c);
		break;
	default:
		rc = fb_bdev_write_zeroes_blocks(c->desc, c->ch, c->off, c->num, c->flags, th_io_done, c);
		break;
	}
	if (rc) {
		c->rc = rc;
		fb_put_io_channel(c->ch);
		sem_post(&c->done);
	}
}

int th_io(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, enum fb_io_type type,
	  struct iovec *iov, int iovcnt, uint64_t off, uint64_t num, uint32_t flags)
{
	struct th_io_ctx c = {.desc = desc, .type = type, .iov = iov, .iovcnt = iovcnt,
			      .off = off, .num = num, .flags = flags};

	sem_init(&c.done, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, reactor), th_io_msg, &c);
	while (sem_wait(&c.done) != 0)
		;
	sem_destroy(&c.done);
	return c.rc;
}

int th_read(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, void *buf,
	    uint64_t off, uint64_t num)
{
	struct iovec iov = {buf, num * fb_bdev_get_block_size(fb_bdev_desc_get_bdev(desc))};

	return th_io(e, reactor, desc, FB_IO_READ, &iov, 1, off, num, 0);
}

int th_write(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, const void *buf,
	     uint64_t off, uint64_t num)
{
	struct iovec iov = {(void *)buf, num * fb_bdev_get_block_size(fb_bdev_desc_get_bdev(desc))};

	return th_io(e, reactor, desc, FB_IO_WRITE, &iov, 1, off, num, 0);
}

void th_fill_random(void *buf, size_t len, uint64_t *seed)
{
	unsigned char *p = buf;
	uint64_t x = *seed ? *seed : 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
	*seed = x;
}

void *th_aligned(size_t align, size_t len)
{
	void *p = NULL;

	CHECK(posix_memalign(&p, align, len) == 0);
	return p;
}
