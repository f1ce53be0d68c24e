/* The codec registry: names, levels, per-thread contexts, and which
 * implementation decodes each format. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"

static const struct fb_cmp_codec *const codecs[FB_CMP_ALGO_MAX + 1] = {
	[FB_CMP_DEFLATE] = &fb_cmp_codec_isal,
	[FB_CMP_ZLIB] = &fb_cmp_codec_zlib,
	[FB_CMP_LZ4] = &fb_cmp_codec_lz4,
	[FB_CMP_ZSTD] = &fb_cmp_codec_zstd,
	[FB_CMP_NONE] = &fb_cmp_codec_none,
};

/* The decoder used for each format: ISA-L inflate is the fastest deflate
 * decoder on x86 (and builds for aarch64). A DOCA decompress-only entry for
 * FB_CMP_DEFLATE and FB_CMP_LZ4 would be chosen here per bdev (see codec.h). */
static const struct fb_cmp_codec *const decompress_impl[FB_CMP_ALGO_MAX + 1] = {
	[FB_CMP_DEFLATE] = &fb_cmp_codec_isal,
	[FB_CMP_ZLIB] = &fb_cmp_codec_isal,
	[FB_CMP_LZ4] = &fb_cmp_codec_lz4,
	[FB_CMP_ZSTD] = &fb_cmp_codec_zstd,
	[FB_CMP_NONE] = &fb_cmp_codec_none,
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
	return "deflate, zlib, lz4, zstd, none";
}

int fb_cmp_codec_ctx(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec, void **out)
{
	void **slot = &c->ctx[codec->algo];
	int rc;

	if (!*slot) {
		void *ctx = calloc(1, codec->ctx_size ? codec->ctx_size : 1);

		if (!ctx)
			return -ENOMEM;
		rc = codec->ctx_init ? codec->ctx_init(ctx) : 0;
		if (rc) {
			free(ctx);
			return rc;
		}
		*slot = ctx;
	}
	*out = *slot;
	return 0;
}

void fb_cmp_codec_ctxs_free(struct fb_cmp_codec_ctxs *c)
{
	for (unsigned i = 1; i <= FB_CMP_ALGO_MAX; i++) {
		if (c->ctx[i] && codecs[i]->ctx_fini)
			codecs[i]->ctx_fini(c->ctx[i]);
		free(c->ctx[i]);
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

/* "none": nothing shrinks, so every chunk takes the bdev's raw path. */
static int none_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			 size_t *out)
{
	(void)ctx, (void)level, (void)src, (void)len, (void)dst, (void)cap, (void)out;
	return -ENOSPC;
}

static int none_decompress(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len)
{
	(void)ctx, (void)src, (void)src_len, (void)dst, (void)dst_len;
	return -EBADMSG; /* it never wrote a compressed chunk */
}

const struct fb_cmp_codec fb_cmp_codec_none = {
	.algo = FB_CMP_NONE,
	.name = "none",
	.format = FB_CMP_NONE,
	.min_level = 0,
	.max_level = 0,
	.default_level = 0,
	.compress = none_compress,
	.decompress = none_decompress,
};

/* Where window w (0-3) of a stage (0 or 1) of the probe lies in a buffer
 * of len bytes (len >= 4096). Window w lies in quarter w (its 4 KiB page,
 * for 16 KiB chunks), at a 512-byte block spread over the quarter (0, 1/4,
 * 1/2, 3/4 of it for stage 0; 1/8 later for stage 1), so a page whose data
 * is all in one half is seen; within its block at w * 136 + stage * 68
 * bytes: no two windows at the same offset of a block or of an 8-byte
 * word, as data made block by block from one generator (fio's buffers)
 * repeats bytes at equal offsets of each block, which no codec can use but
 * aligned windows would count. Windows in the first lines of each page only
 * would be ~2% cheaper on random writes (the CRC32C misses those lines
 * anyway) but store pages with a random first half raw, and count fio's
 * per-block stamps: through NBD, zlib took 40x longer on fio's random
 * writes than codec none. */
static size_t window_off(size_t len, unsigned stage, size_t w)
{
	size_t q = len / 4;

	return q * w + (q - 512) * (2 * w + stage) / 8 / 512 * 512 + w * 136 + stage * 68;
}

enum { WIN = 32 };

/* Pairs of equal bytes among the WIN bytes at p, and each with those
 * already in count (which it adds them to). */
static inline unsigned count_window(const uint8_t *p, uint8_t count[256])
{
	unsigned pairs = 0;

	for (size_t i = 0; i < WIN; i++)
		pairs += count[p[i]]++;
	return pairs;
}

/* Pairs of equal bytes among the four windows of buf of a stage (0 or 1),
 * added to count (and to the pairs so far). */
static unsigned probe_windows(const uint8_t *p, size_t len, unsigned stage, uint8_t count[256])
{
	size_t off[4];
	unsigned pairs = 0;

	for (size_t w = 0; w < 4; w++) {
		off[w] = window_off(len, stage, w);
		__builtin_prefetch(p + off[w]); /* the misses at once, not one after another */
	}
	for (size_t w = 0; w < 4; w++)
		pairs += count_window(p + off[w], count);
	return pairs;
}

/* A count table, cleared with 32-byte stores: a memset of it compiles to
 * `rep stos`, whose start-up cost was most of the probe's. */
typedef uint8_t probe_v32 __attribute__((vector_size(32)));

static inline void probe_clear(probe_v32 count[8])
{
	for (int i = 0; i < 8; i++)
		count[i] = (probe_v32){0};
}

/* Pairs of equal bytes among the WIN bytes at p: what a glance counts. A
 * glance runs on nearly every chunk of a random run, where the count
 * table's ~25 ns was most of what the probe added to a raw chunk (and
 * through NBD, on 2 vCPUs, that cost showed ~3x its CPU share). So
 * where the CPU shuffles bytes (SSSE3 on x86, any aarch64) the pairs are
 * counted with 16-byte vectors in ~5 ns: each byte against the bytes 1 to
 * 15 places after it, cyclically over the 32, and the two halves against
 * each other, which meets every pair once (a pair d places apart at d from
 * its first byte, or at 32 - d from its second; d = 16 is the halves). */
#if defined(__x86_64__) || defined(__aarch64__)
typedef uint8_t probe_v16 __attribute__((vector_size(16)));

#define ROT(x, y, r)                                                                               \
	__builtin_shuffle(x, y,                                                                    \
			  (probe_v16){r, r + 1, r + 2, r + 3, r + 4, r + 5, r + 6, r + 7, r + 8, r + 9,    \
				      r + 10, r + 11, r + 12, r + 13, r + 14, r + 15})
/* An equal byte adds 1 (a true lane of == is all ones: -1). */
#define COUNT_ROT(r) acc -= (probe_v16)(a == ROT(a, b, r)) + (probe_v16)(b == ROT(b, a, r))

#if defined(__x86_64__)
__attribute__((target("ssse3")))
#endif
static unsigned pairs32_vec(const uint8_t *p)
{
	probe_v16 a, b, acc;
	uint64_t h[2], s;

	memcpy(&a, p, 16);
	memcpy(&b, p + 16, 16);
	acc = -(probe_v16)(a == b);
	COUNT_ROT(1); COUNT_ROT(2); COUNT_ROT(3); COUNT_ROT(4); COUNT_ROT(5);
	COUNT_ROT(6); COUNT_ROT(7); COUNT_ROT(8); COUNT_ROT(9); COUNT_ROT(10);
	COUNT_ROT(11); COUNT_ROT(12); COUNT_ROT(13); COUNT_ROT(14); COUNT_ROT(15);
	/* Lanes hold at most 31: add them up in 64-bit words. */
	memcpy(h, &acc, sizeof(h));
	s = h[0] + h[1];
	s = (s & 0x00ff00ff00ff00ffull) + ((s >> 8) & 0x00ff00ff00ff00ffull);
	s += s >> 16;
	s += s >> 32;
	return (unsigned)(s & 0xffff);
}
#undef COUNT_ROT
#undef ROT
#endif

#if !defined(__aarch64__)
static unsigned pairs32_table(const uint8_t *p)
{
	probe_v32 count[8];

	probe_clear(count);
	return count_window(p, (uint8_t *)count);
}
#endif

unsigned fb_cmp_glance_pairs(const void *p)
{
#if defined(__x86_64__)
	if (!__builtin_cpu_supports("ssse3"))
		return pairs32_table(p);
#endif
#if defined(__x86_64__) || defined(__aarch64__)
	return pairs32_vec(p);
#else
	return pairs32_table(p);
#endif
}

enum fb_cmp_probe fb_cmp_probe(const void *buf, size_t len)
{
	enum { N = 4 * WIN };
	const uint8_t *p = buf;
	probe_v32 count[8];
	unsigned pairs;

	if (len < 4096) /* the windows need 1 KiB quarters: too short to judge, run the codec */
		return FB_CMP_PROBE_CODEC;
	probe_clear(count);
	pairs = probe_windows(p, len, 0, (uint8_t *)count);
	/* Random bytes give N(N-1)/512 = 31.75 pairs on average (standard
	 * deviation ~5.6); text and code give hundreds. Under 1.5x random's
	 * mean: raw. Over 3x: the codec. */
	if (pairs * 512 * 2 < (unsigned)N * (N - 1) * 3)
		return FB_CMP_PROBE_RAW;
	if (pairs * 512 > (unsigned)N * (N - 1) * 3)
		return FB_CMP_PROBE_CODEC;
	/* In between lie random data ~1 time in 200 (a 2.8 sigma tail) and
	 * data whose bytes are only a little uneven (fio's write buffers:
	 * ~1.4x), and a codec try costs more than the probe saves on 200
	 * chunks (zlib: ~300 us on 16 KiB). Twice the sample, against 2x:
	 * where the byte histogram is all a codec could use, 2x is 7 bits of
	 * entropy per byte, the most that saves the 1/8 (random: 11 sigma
	 * below). Data with long repeats has far more pairs than that. */
	pairs += probe_windows(p, len, 1, (uint8_t *)count);
	return pairs * 512 < (unsigned)(2 * N) * (2 * N - 1) * 2 ? FB_CMP_PROBE_RAW : FB_CMP_PROBE_UNSURE;
}

/* One window: random bytes give 1.94 pairs on average; up to 3x that (5)
 * passes as random (~1 random chunk in 70 gets the full probe), where text
 * gives tens. */
static bool glance_random(const uint8_t *p)
{
	return fb_cmp_glance_pairs(p) * 512 < (unsigned)WIN * (WIN - 1) * 3;
}

/* The next draw of a run's generator (an LCG), reduced to [0, n). */
static unsigned run_draw(struct fb_cmp_probe_run *run, unsigned n)
{
	run->lcg = run->lcg * 1664525u + 1013904223u;
	return (unsigned)(((uint64_t)run->lcg * n) >> 32); /* the top bits: the LCG's best */
}

enum fb_cmp_probe fb_cmp_probe_next(struct fb_cmp_probe_run *run, const void *buf, size_t len)
{
	enum fb_cmp_probe v;

	/* The glance looks at one of the probe's eight windows, drawn each
	 * time: a chunk shrinkable in any quarter is caught at a glance at
	 * least 1 time in 4, where a fixed window could never see it. */
	if (run->raw >= FB_CMP_RUN_GLANCE && run->glances && len >= 4096) {
		unsigned k = run_draw(run, 8);

		if (glance_random((const uint8_t *)buf + window_off(len, k & 1, k >> 1))) {
			run->glances--;
			return FB_CMP_PROBE_RAW;
		}
	}
	v = fb_cmp_probe(buf, len);
	run->raw = v != FB_CMP_PROBE_RAW ? 0 : run->raw < FB_CMP_RUN_GLANCE ? run->raw + 1 : run->raw;
	/* 0 to FB_CMP_RUN_FULL - 1 glances until the next full probe, drawn:
	 * at a fixed period, a writer that interleaves random chunks with
	 * compressible ones in step could keep every compressible one at a
	 * glance. */
	run->glances = run_draw(run, FB_CMP_RUN_FULL);
	return v;
}

bool fb_cmp_looks_incompressible(const void *buf, size_t len)
{
	return fb_cmp_probe(buf, len) == FB_CMP_PROBE_RAW;
}
