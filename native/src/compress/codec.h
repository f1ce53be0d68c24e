/* Codecs of the compress bdev, behind one interface.
 *
 * A codec turns one chunk into a self-contained compressed stream and back;
 * nothing is shared between chunks, so any chunk decodes alone. Each codec
 * works on a private per-thread context (the worker pool owns one per codec
 * per thread), so the hot path allocates nothing once a context exists.
 *
 * Formats vs. implementations: "deflate" (ISA-L igzip, the default on x86)
 * and "zlib" (the portable fallback) both write raw deflate (RFC 1951), so a
 * volume written by one is read by the other, on any CPU, and by the DOCA
 * slot below. lz4 writes an LZ4 block, zstd a zstd frame.
 *
 * DOCA slot (BlueField, not implemented here): BlueField-3's compress engine
 * can only decompress (deflate and LZ4 blocks), so DOCA plugs in as a
 * decompress-only implementation of a format: an entry of
 * fb_cmp_decompress_impl[] (codec.c) whose decompress submits a DOCA
 * compress "decompress deflate" task and whose compress is NULL. Writes keep
 * using the CPU codec of the same format. The bdev refuses engine "doca"
 * (and "gpu") at create with -EINVAL until such an entry exists.
 */
#ifndef FB_COMPRESS_CODEC_H
#define FB_COMPRESS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Stored in the volume header: never renumber. */
enum fb_cmp_algo {
	FB_CMP_DEFLATE = 1, /* raw deflate through ISA-L igzip */
	FB_CMP_ZLIB = 2,    /* raw deflate through zlib (same format as DEFLATE) */
	FB_CMP_LZ4 = 3,     /* LZ4 block; levels >= 2 use LZ4HC */
	FB_CMP_ZSTD = 4,    /* zstd frame */
	FB_CMP_NONE = 5,    /* every chunk stored raw: the same bdev without a codec */
	FB_CMP_ALGO_MAX = 5,
};

struct fb_cmp_codec {
	enum fb_cmp_algo algo;
	const char *name;           /* "deflate", "zlib", "lz4", "zstd" */
	enum fb_cmp_algo format;    /* algorithms with the same format decode each other */
	int min_level, max_level, default_level;
	/* Per-thread context: ctx_size zeroed bytes (codec.c allocates and
	 * frees them), then ctx_init (0 or -ENOMEM; NULL = nothing to do);
	 * ctx_fini undoes ctx_init (NULL = nothing). */
	size_t ctx_size;
	int (*ctx_init)(void *ctx);
	void (*ctx_fini)(void *ctx);
	/* Compresses src into at most cap bytes of dst: 0 with *out set, or
	 * -ENOSPC when the result would not fit (the early-abort signal). */
	int (*compress)(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			size_t *out);
	/* Decodes exactly dst_len bytes from exactly src_len bytes: 0, or
	 * -EBADMSG for a stream that is damaged or of the wrong length. */
	int (*decompress)(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len);
};

/* NULL for an unknown id or name. Names accept SPDK's spellings too
 * (case-insensitive "deflate", "lz4"). */
const struct fb_cmp_codec *fb_cmp_codec_get(enum fb_cmp_algo algo);
const struct fb_cmp_codec *fb_cmp_codec_by_name(const char *name);
/* "deflate, zlib, lz4, zstd, none" for messages. */
const char *fb_cmp_codec_names(void);

/* Incompressibility probe, run before the codec: a byte histogram of 128
 * bytes sampled at four places across the buffer (256 at eight when the
 * first sample is borderline). True when the sample's
 * bytes are as evenly spread as random data's (already compressed or
 * encrypted data), which no codec shrinks by the 1/8 early abort asks for;
 * the chunk is then stored raw without running the codec. Costs a few
 * hundred cycles.
 * Data whose redundancy is only in long repeats of random-looking blocks
 * is stored raw too: the price of not running the codec. */
bool fb_cmp_looks_incompressible(const void *buf, size_t len);
/* The probe's verdict: RAW as above; CODEC when the first sample is
 * clearly uneven (over 3x random's pairs); UNSURE when it took the doubled
 * sample to decide against RAW: the caller may learn from recent codec
 * tries on such chunks. */
enum fb_cmp_probe { FB_CMP_PROBE_CODEC, FB_CMP_PROBE_UNSURE, FB_CMP_PROBE_RAW };
enum fb_cmp_probe fb_cmp_probe(const void *buf, size_t len);

/* The probe for a stream of chunks from one writer (the bdev keeps one
 * per channel): once FB_CMP_RUN_GLANCE chunks in a row were judged RAW, a
 * chunk is judged RAW at a glance when one of the probe's windows, drawn
 * anew each time, looks random (~1/10 of the probe's cost), but after 0 to
 * FB_CMP_RUN_FULL - 1 glances (drawn too) a chunk gets the full probe. So
 * compressible data that glances miss (random bytes in the windows drawn,
 * compressible elsewhere) goes raw for at most FB_CMP_RUN_FULL - 1 chunks
 * in a row; a chunk shrinkable in any quarter of it meets a window there at
 * least 1 time in 4, and a full probe about 1 time in 16.5, whatever the
 * pattern. A verdict other than RAW ends the run. Start a run zeroed. */
enum { FB_CMP_RUN_GLANCE = 8, FB_CMP_RUN_FULL = 32 };
struct fb_cmp_probe_run {
	unsigned raw;     /* chunks in a row judged RAW by the full probe, up to FB_CMP_RUN_GLANCE */
	unsigned glances; /* glances left before the next full probe */
	uint32_t lcg;     /* draws windows and glances */
};
enum fb_cmp_probe fb_cmp_probe_next(struct fb_cmp_probe_run *run, const void *buf, size_t len);
/* Pairs of equal bytes among the 32 at p (what a glance counts). */
unsigned fb_cmp_glance_pairs(const void *p);

/* A thread's contexts for every codec, created on first use. */
struct fb_cmp_codec_ctxs {
	void *ctx[FB_CMP_ALGO_MAX + 1];
};
/* 0 or -ENOMEM. */
int fb_cmp_codec_ctx(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec, void **out);
void fb_cmp_codec_ctxs_free(struct fb_cmp_codec_ctxs *c);

/* Convenience wrappers that pick the context from c (0 / -errno). The
 * decompressor is the fastest implementation of the codec's format. */
int fb_cmp_compress(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec, int level,
		    const void *src, size_t len, void *dst, size_t cap, size_t *out);
int fb_cmp_decompress(struct fb_cmp_codec_ctxs *c, const struct fb_cmp_codec *codec,
		      const void *src, size_t src_len, void *dst, size_t dst_len);

/* The per-implementation descriptors (codec_*.c). */
extern const struct fb_cmp_codec fb_cmp_codec_isal;
extern const struct fb_cmp_codec fb_cmp_codec_zlib;
extern const struct fb_cmp_codec fb_cmp_codec_lz4;
extern const struct fb_cmp_codec fb_cmp_codec_zstd;
extern const struct fb_cmp_codec fb_cmp_codec_none;

#endif
