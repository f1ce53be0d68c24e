/* The codec registry: names, levels, per-thread contexts, and which
 * implementation decodes each format. */
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include "codec.h"

static const struct fb_cmp_codec *const codecs[FB_CMP_ALGO_MAX + 1] = {
	[FB_CMP_DEFLATE] = &fb_cmp_codec_isal,
	[FB_CMP_ZLIB] = &fb_cmp_codec_zlib,
	[FB_CMP_LZ4] = &fb_cmp_codec_lz4,
	[FB_CMP_ZSTD] = &fb_cmp_codec_zstd,
};

/* The decoder used for each format: ISA-L inflate is the fastest deflate
 * decoder on x86 (and builds for aarch64). A DOCA decompress-only entry for
 * FB_CMP_DEFLATE and FB_CMP_LZ4 would be chosen here per bdev (see codec.h). */
static const struct fb_cmp_codec *const decompress_impl[FB_CMP_ALGO_MAX + 1] = {
	[FB_CMP_DEFLATE] = &fb_cmp_codec_isal,
	[FB_CMP_ZLIB] = &fb_cmp_codec_isal,
	[FB_CMP_LZ4] = &fb_cmp_codec_lz4,
	[FB_CMP_ZSTD] = &fb_cmp_codec_zstd,
};

const struct fb_cmp_codec *fb_cmp_codec_get(enum fb_cmp_algo algo)
{
	if ((unsigned)algo == 0 || (unsigned)algo > FB_CMP_ALGO_MAX)
		return NULL;
	return codecs[algo];
}

const struct fb_cmp_codec *fb_cmp_codec_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 1; i <= FB_CMP_ALGO_MAX; i++)
		if (strcasecmp(codecs[i]->name, name) == 0)
			return codecs[i];
	/* ISA-L's own name for its deflate. */
	if (strcasecmp(name, "isal") == 0 || strcasecmp(name, "igzip") == 0)
		return codecs[FB_CMP_DEFLATE];
	return NULL;
}

const char *fb_cmp_codec_names(void)
{
	return "deflate, zlib, lz4, zstd";
}

int fb_cmp_codec_ctx(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec, void **out)
{
	void **slot = &c->ctx[codec->algo];
	int rc;

	if (!*slot) {
		rc = codec->ctx_new(slot);
		if (rc)
			return rc;
	}
	*out = *slot;
	return 0;
}

void fb_cmp_codec_ctxs_free(struct fb_cmp_codec_ctxs *c)
{
	for (unsigned i = 1; i <= FB_CMP_ALGO_MAX; i++) {
		if (c->ctx[i])
			codecs[i]->ctx_free(c->ctx[i]);
		c->ctx[i] = NULL;
	}
}

int fb_cmp_compress(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec, int level,
		    const void *src, size_t len, void *dst, size_t cap, size_t *out)
{
	void *ctx;
	int rc = fb_cmp_codec_ctx(c, codec, &ctx);

	if (rc)
		return rc;
	return codec->compress(ctx, level, src, len, dst, cap, out);
}

int fb_cmp_decompress(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec,
		      const void *src, size_t src_len, void *dst, size_t dst_len)
{
	const struct fb_cmp_codec *d = decompress_impl[codec->algo];
	void *ctx;
	int rc = fb_cmp_codec_ctx(c, d, &ctx);

	if (rc)
		return rc;
	return d->decompress(ctx, src, src_len, dst, dst_len);
}
