/* Free space of a compress volume's data region: one bit per allocation
 * unit, next-fit, so chunks written one after another pack densely in
 * write order. Rebuilt from the chunk map on open; the caller serializes
 * calls (the bdev's metadata lock). */
#ifndef FB_COMPRESS_ALLOC_H
#define FB_COMPRESS_ALLOC_H

#include <stdint.h>

struct fb_cmp_alloc {
	uint64_t *bits;   /* 1 = in use */
	uint64_t units;
	uint64_t used;
	uint64_t cursor;  /* where the next search starts */
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
/* Bytes of RAM the bitmap takes. */
uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a);

#endif
