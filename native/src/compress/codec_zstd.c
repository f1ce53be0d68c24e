/* zstd frames, one per chunk. */
#include <errno.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"

struct zstd_ctx {
	ZSTD_CCtx *c;
	ZSTD_DCtx *d;
};

static void zstd_ctx_fini(void *ctx)
{
	struct zstd_ctx *c = ctx;

	ZSTD_freeCCtx(c->c);
	ZSTD_freeDCtx(c->d);
}

static int zstd_ctx_init(void *ctx)
{
	struct zstd_ctx *c = ctx;

	c->c = ZSTD_createCCtx();
	c->d = ZSTD_createDCtx();
	if (!c->c || !c->d) {
		zstd_ctx_fini(c);
		return -ENOMEM;
	}
	return 0;
}

static int zstd_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			 size_t *out)
{
	struct zstd_ctx *c = ctx;
	size_t n = ZSTD_compressCCtx(c->c, dst, cap, src, len, level);

	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EINVAL;
	*out = n;
	return 0;
}

static int zstd_decompress(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len)
{
	struct zstd_ctx *c = ctx;
	size_t n = ZSTD_decompressDCtx(c->d, dst, dst_len, src, src_len);

	if (ZSTD_isError(n) || n != dst_len)
		return -EBADMSG;
	return 0;
}

const struct fb_cmp_codec fb_cmp_codec_zstd = {
	.algo = FB_CMP_ZSTD,
	.name = "zstd",
	.format = FB_CMP_ZSTD,
	.min_level = 1,
	.max_level = 19, /* 20..22 are "ultra" levels with 128+ MiB windows: not for chunks */
	.default_level = 3,
	.ctx_size = sizeof(struct zstd_ctx),
	.ctx_init = zstd_ctx_init,
	.ctx_fini = zstd_ctx_fini,
	.compress = zstd_compress,
	.decompress = zstd_decompress,
};
