/* LZ4 blocks: level 1 is LZ4's fast mode, 2..12 its HC mode. */
#include <errno.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>

#include "codec.h"

struct lz4_ctx {
	void *fast; /* LZ4_sizeofState() bytes */
	void *hc;   /* LZ4_sizeofStateHC() bytes */
};

static int lz4_ctx_new(void **out)
{
	struct lz4_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fast = malloc((size_t)LZ4_sizeofState());
	c->hc = malloc((size_t)LZ4_sizeofStateHC());
	if (!c->fast || !c->hc) {
		free(c->fast);
		free(c->hc);
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

static void lz4_ctx_free(void *ctx)
{
	struct lz4_ctx *c = ctx;

	free(c->fast);
	free(c->hc);
	free(c);
}

static int lz4_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			size_t *out)
{
	struct lz4_ctx *c = ctx;
	int n;

	if (level <= 1)
		n = LZ4_compress_fast_extState(c->fast, src, dst, (int)len, (int)cap, 1);
	else
		n = LZ4_compress_HC_extStateHC(c->hc, src, dst, (int)len, (int)cap, level);
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
	.ctx_new = lz4_ctx_new,
	.ctx_free = lz4_ctx_free,
	.compress = lz4_compress,
	.decompress = lz4_decompress,
};
