/* Raw deflate through zlib: the portable fallback, same format as ISA-L's. */
#include <errno.h>
#include <stdbool.h>
#include <zlib.h>

#include "codec.h"

struct zlib_ctx {
	z_stream def, inf;
	int def_level; /* -1 = deflate side not initialized */
	bool inf_ready;
};

static int zlib_ctx_init(void *ctx)
{
	((struct zlib_ctx *)ctx)->def_level = -1;
	return 0;
}

static void zlib_ctx_fini(void *ctx)
{
	struct zlib_ctx *c = ctx;

	if (c->def_level >= 0)
		deflateEnd(&c->def);
	if (c->inf_ready)
		inflateEnd(&c->inf);
}

static int zlib_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			 size_t *out)
{
	struct zlib_ctx *c = ctx;
	int rc;

	if (c->def_level != level) {
		if (c->def_level >= 0)
			deflateEnd(&c->def);
		c->def_level = -1;
		/* -15: raw deflate, 32 KiB window; memLevel 8 is zlib's default. */
		if (deflateInit2(&c->def, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		c->def_level = level;
	} else if (deflateReset(&c->def) != Z_OK) {
		return -EINVAL;
	}
	c->def.next_in = (Bytef *)src;
	c->def.avail_in = (uInt)len;
	c->def.next_out = dst;
	c->def.avail_out = (uInt)cap;
	rc = deflate(&c->def, Z_FINISH);
	if (rc == Z_STREAM_END) {
		*out = c->def.total_out;
		return 0;
	}
	return rc == Z_OK || rc == Z_BUF_ERROR ? -ENOSPC : -EINVAL;
}

static int zlib_decompress(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len)
{
	struct zlib_ctx *c = ctx;
	int rc;

	if (!c->inf_ready) {
		if (inflateInit2(&c->inf, -15) != Z_OK)
			return -ENOMEM;
		c->inf_ready = true;
	} else if (inflateReset(&c->inf) != Z_OK) {
		return -EINVAL;
	}
	c->inf.next_in = (Bytef *)src;
	c->inf.avail_in = (uInt)src_len;
	c->inf.next_out = dst;
	c->inf.avail_out = (uInt)dst_len;
	rc = inflate(&c->inf, Z_FINISH);
	if (rc != Z_STREAM_END || c->inf.total_out != dst_len)
		return -EBADMSG;
	return 0;
}

const struct fb_cmp_codec fb_cmp_codec_zlib = {
	.algo = FB_CMP_ZLIB,
	.name = "zlib",
	.format = FB_CMP_DEFLATE,
	.min_level = 1,
	.max_level = 9,
	.default_level = 6,
	.ctx_size = sizeof(struct zlib_ctx),
	.ctx_init = zlib_ctx_init,
	.ctx_fini = zlib_ctx_fini,
	.compress = zlib_compress,
	.decompress = zlib_decompress,
};
