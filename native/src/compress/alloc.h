/* Free space of a compress volume's data region, in two levels so that RAM
 * does not grow with the region at full resolution:
 *
 *   level 1  per segment of FB_CMP_SEG_UNITS allocation units: how many are
 *            used (always in RAM: 6 bytes per segment, 5.7 MB per TB at
 *            512-byte units, 0.7 at 4 KiB);
 *   level 2  a bitmap (one bit per unit) only for segments that are partly
 *            used: an empty or a full segment needs none.
 *
 * Next-fit over units, so chunks written one after another pack densely in
 * write order and fill segments whole. Rebuilt from the chunk map on open;
 * the caller serializes calls (the bdev's metadata lock). Bitmaps come from
 * a pool reserved at init (calloc: its pages are only touched once used),
 * so the I/O path never allocates. */
#ifndef FB_COMPRESS_ALLOC_H
#define FB_COMPRESS_ALLOC_H

#include <stdint.h>

#define FB_CMP_SEG_UNITS 2048u
#define FB_CMP_SEG_WORDS (FB_CMP_SEG_UNITS / 64)

struct fb_cmp_alloc {
	uint64_t units;
	uint64_t used;
	uint64_t cursor;     /* where the next search starts */
	uint64_t nsegs;
	uint16_t *seg_used;  /* per segment: units in use */
	uint32_t *seg_bm;    /* per segment: 1 + its bitmap's pool index, 0 = none */
	uint64_t *pool;      /* bitmaps, FB_CMP_SEG_WORDS words each */
	uint32_t *pool_free; /* bitmaps given back, reused first */
	uint32_t pool_nfree;
	uint32_t pool_top;   /* bitmaps ever handed out (the pool's touched part) */
	uint32_t bitmaps;    /* in use now */
};

/* 0 or -ENOMEM (control path). */
int fb_cmp_alloc_init(struct fb_cmp_alloc *a, uint64_t units);
void fb_cmp_alloc_fini(struct fb_cmp_alloc *a);
/* Marks [start, start + n) used (rebuild from the map): 0, -ERANGE past the
 * end, or -EEXIST if any unit was already used (nothing is marked then). */
int fb_cmp_alloc_mark(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* n contiguous free units: 0 and *start, or -ENOSPC. */
int fb_cmp_alloc_get(struct fb_cmp_alloc *a, uint64_t n, uint64_t *start);
/* Frees [start, start + n) (all must be in use). */
void fb_cmp_alloc_put(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* Bytes of RAM in use: the segment table plus the bitmaps handed out. */
uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a);
/* Bytes per unit of the level-1 table (for per-TB figures). */
double fb_cmp_alloc_table_bytes_per_unit(void);

#endif
