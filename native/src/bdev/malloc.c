/* malloc bdev: a RAM disk (anonymous mapping, zero-filled). Supports zcopy
 * reads: the consumer reads straight from the mapping. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "flexbso/bdev_module.h"

struct malloc_bdev {
	unsigned char *mem;
	size_t size;
};

static const struct fb_bdev_module malloc_module = {
	.name = "malloc",
	.create_method = "bdev_malloc_create",
	.io_ctx_size = 0,
	.channel_ctx_size = 0,
};

static void malloc_destruct(struct fb_bdev *bdev)
{
	struct malloc_bdev *m = fb_bdev_get_module_ctx(bdev);

	munmap(m->mem, m->size);
	free(m);
}

static void iov_copy_out(struct iovec *iov, int iovcnt, const unsigned char *src)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

static void iov_copy_in(unsigned char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

static void malloc_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct fb_bdev *bdev = fb_bdev_io_get_bdev(io);
	struct malloc_bdev *m = fb_bdev_get_module_ctx(bdev);
	uint64_t bs = fb_bdev_get_block_size(bdev);
	unsigned char *p = m->mem + fb_bdev_io_get_offset_blocks(io) * bs;
	size_t len = fb_bdev_io_get_num_blocks(io) * bs;
	struct iovec *iov;
	int iovcnt;

	(void)ch;
	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
		iov_copy_out(iov, iovcnt, p);
		break;
	case FB_IO_WRITE:
		iov_copy_in(p, iov, iovcnt);
		break;
	case FB_IO_UNMAP:
	case FB_IO_WRITE_ZEROES:
		memset(p, 0, len);
		break;
	case FB_IO_ZCOPY:
		/* Lend the RAM disk itself: it lives until the bdev is destructed,
		 * which waits for every io to be freed. One piece, so this cannot fail. */
		(void)fb_bdev_io_set_buf(io, p, len);
		break;
	default: /* flush: RAM is as durable as it gets */
		break;
	}
	/* Deferred so a callback that resubmits cannot recurse. */
	fb_bdev_io_complete_deferred(io, 0);
}

static bool malloc_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type < FB_IO_TYPE_COUNT;
}

static int malloc_dump_config(struct fb_bdev *bdev, struct fb_strbuf *sb)
{
	int rc = fb_strbuf_printf(sb, "{\"name\":");

	if (!rc)
		rc = fb_strbuf_json_str(sb, fb_bdev_get_name(bdev));
	if (!rc)
		rc = fb_strbuf_printf(sb, ",\"num_blocks\":%llu,\"block_size\":%u}",
				      (unsigned long long)fb_bdev_get_num_blocks(bdev),
				      fb_bdev_get_block_size(bdev));
	return rc;
}

static const struct fb_bdev_fn_table malloc_fn = {
	.destruct = malloc_destruct,
	.submit_request = malloc_submit,
	.io_type_supported = malloc_io_type_supported,
	.dump_config_json = malloc_dump_config,
};

int fb_bdev_malloc_create(struct fb_engine *e, const char *name, uint64_t num_blocks,
			  uint32_t block_size, struct fb_err *err)
{
	struct malloc_bdev *m = NULL;
	struct fb_bdev_desc_params p;
	int rc = 0;

	if (block_size < 512 || block_size > 65536 || (block_size & (block_size - 1))) {
		fb_err_set(err, 
			 "block_size %u is invalid; use a power of two from 512 to 65536", block_size);
		rc = -EINVAL;
		goto out;
	}
	if (num_blocks == 0 || num_blocks > (UINT64_MAX >> 17)) {
		fb_err_set(err, "num_blocks must be at least 1");
		rc = -EINVAL;
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto out;
	}
	m->size = num_blocks * block_size;
	/* Anonymous memory is zero-filled and only costs RAM when written. */
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (m->mem == MAP_FAILED) {
		m->mem = NULL;
		fb_err_set(err, "cannot allocate %llu bytes for malloc bdev '%s'; "
			 "use a smaller num_blocks", (unsigned long long)m->size, name ? name : "");
		rc = -ENOMEM;
		goto out;
	}
	memset(&p, 0, sizeof(p));
	p.name = name;
	p.block_size = block_size;
	p.num_blocks = num_blocks;
	p.module = &malloc_module;
	p.fn = &malloc_fn;
	p.module_ctx = m;
	rc = fb_bdev_register(e, &p, NULL, err);
	if (rc == 0)
		m = NULL;
out:
	if (m) {
		if (m->mem)
			munmap(m->mem, m->size);
		free(m);
	}
	return rc;
}
