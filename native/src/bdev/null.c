/* null bdev: reads return zeros, writes are discarded (a benchmark sink). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"

static const struct fb_bdev_module null_module = {
	.name = "null",
	.create_method = "bdev_null_create",
};

static void null_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	(void)ch;
	if (fb_bdev_io_get_type(io) == FB_IO_READ) {
		int iovcnt;
		struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);

		for (int i = 0; i < iovcnt; i++)
			memset(iov[i].iov_base, 0, iov[i].iov_len);
	}
	fb_bdev_io_complete_deferred(io, 0);
}

static bool null_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	/* No zcopy: a shared zero page would do, but nothing needs it yet. */
	return type < FB_IO_TYPE_COUNT && type != FB_IO_ZCOPY;
}

static int null_dump_config(struct fb_bdev *bdev, struct fb_strbuf *sb)
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

static const struct fb_bdev_fn_table null_fn = {
	.submit_request = null_submit,
	.io_type_supported = null_io_type_supported,
	.dump_config_json = null_dump_config,
};

int fb_bdev_null_create(struct fb_engine *e, const char *name, uint64_t num_blocks,
			uint32_t block_size, struct fb_err *err)
{
	struct fb_bdev_desc_params p;

	if (block_size < 512 || block_size > 65536 || (block_size & (block_size - 1))) {
		fb_err_set(err, 
			 "block_size %u is invalid; use a power of two from 512 to 65536", block_size);
		return -EINVAL;
	}
	memset(&p, 0, sizeof(p));
	p.name = name;
	p.block_size = block_size;
	p.num_blocks = num_blocks;
	p.module = &null_module;
	p.fn = &null_fn;
	return fb_bdev_register(e, &p, NULL, err);
}
