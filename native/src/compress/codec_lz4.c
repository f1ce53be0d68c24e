/* LZ4 blocks: level 1 is LZ4's fast mode, 2..12 its HC mode. */
#include <errno.h>
#include <lz4.h>
#include <lz4hc.h>

#include "codec.h"

/* The library's state types, sized and aligned for its extState calls. */
struct lz4_ctx {
	LZ4_stream_t fast;
	LZ4_streamHC_t hc;
};

static int lz4_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			size_t *out)
{
	struct lz4_ctx *c = ctx;
	int n;

	if (level <= 1)
		n = LZ4_compress_fast_extState(&c->fast, src, dst, (int)len, (int)cap, 1);
	else
		n = LZ4_compress_HC_extStateHC(&c->hc, src, dst, (int)len, (int)cap, level);
	if (n <= 0)
		return -ENOSPC; /* LZ4 returns 0 only when dst is too small */
	*out = (size_t)n;
	return 0;
}

static int lz4_decompress(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len)
{
	(void)ctx;
	if (LZ4_decompress_safe(src, dst, (int)src_len, (int)dst_len) != (int)dst_len)
		return -EBADMSG;
	return 0;
}

const struct fb_cmp_codec fb_cmp_codec_lz4 = {
	.algo = FB_CMP_LZ4,
	.name = "lz4",
	.format = FB_CMP_LZ4,
	.min_level = 1,
	.max_level = LZ4HC_CLEVEL_MAX,
	.default_level = 1,
	.ctx_size = sizeof(struct lz4_ctx),
	.compress = lz4_compress,
	.decompress = lz4_decompress,
};
