/* Two-level allocator (see alloc.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static uint64_t seg_units(const struct fb_cmp_alloc *a, uint64_t s)
{
	uint64_t left = a->units - s * FB_CMP_SEG_UNITS;

	return left < FB_CMP_SEG_UNITS ? left : FB_CMP_SEG_UNITS;
}

static uint64_t *seg_bits(const struct fb_cmp_alloc *a, uint64_t s)
{
	return a->seg_bm[s] ? a->pool + (uint64_t)(a->seg_bm[s] - 1) * FB_CMP_SEG_WORDS : NULL;
}

static bool bit_get(const struct fb_cmp_alloc *a, uint64_t i)
{
	uint64_t s = i / FB_CMP_SEG_UNITS, b = i % FB_CMP_SEG_UNITS;
	const uint64_t *bits = seg_bits(a, s);

	if (bits)
		return (bits[b / 64] >> (b % 64)) & 1u;
	return a->seg_used[s] != 0; /* no bitmap: empty or full */
}

/* Gives segment s a bitmap that matches its state (empty or full). The pool
 * holds one bitmap per segment, so this cannot fail. */
static uint64_t *seg_bits_get(struct fb_cmp_alloc *a, uint64_t s)
{
	uint64_t *bits = seg_bits(a, s);
	uint32_t idx;

	if (bits)
		return bits;
	idx = a->pool_nfree ? a->pool_free[--a->pool_nfree] : a->pool_top++;
	a->seg_bm[s] = idx + 1;
	a->bitmaps++;
	bits = a->pool + (uint64_t)idx * FB_CMP_SEG_WORDS;
	memset(bits, a->seg_used[s] ? 0xff : 0, FB_CMP_SEG_WORDS * sizeof(uint64_t));
	return bits;
}

/* Drops the bitmap of a segment that became empty or full. */
static void seg_settle(struct fb_cmp_alloc *a, uint64_t s)
{
	if (!a->seg_bm[s] || (a->seg_used[s] != 0 && a->seg_used[s] != seg_units(a, s)))
		return;
	a->pool_free[a->pool_nfree++] = a->seg_bm[s] - 1;
	a->seg_bm[s] = 0;
	a->bitmaps--;
}

static void set_range(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, bool used)
{
	while (n) {
		uint64_t s = start / FB_CMP_SEG_UNITS, b = start % FB_CMP_SEG_UNITS;
		uint64_t len = seg_units(a, s) - b < n ? seg_units(a, s) - b : n;

		if (len == seg_units(a, s) && !a->seg_bm[s]) {
			a->seg_used[s] = used ? (uint16_t)len : 0; /* whole segment */
		} else {
			uint64_t *bits = seg_bits_get(a, s);

			for (uint64_t i = b; i < b + len; i++) {
				uint64_t m = (uint64_t)1 << (i % 64);

				if (used)
					bits[i / 64] |= m;
				else
					bits[i / 64] &= ~m;
			}
			a->seg_used[s] = (uint16_t)(used ? a->seg_used[s] + len : a->seg_used[s] - len);
			seg_settle(a, s);
		}
		start += len;
		n -= len;
	}
}

int fb_cmp_alloc_init(struct fb_cmp_alloc *a, uint64_t units)
{
	memset(a, 0, sizeof(*a));
	a->units = units;
	a->nsegs = (units + FB_CMP_SEG_UNITS - 1) / FB_CMP_SEG_UNITS;
	a->seg_used = calloc((size_t)a->nsegs, sizeof(*a->seg_used));
	a->seg_bm = calloc((size_t)a->nsegs, sizeof(*a->seg_bm));
	a->pool = calloc((size_t)a->nsegs, FB_CMP_SEG_WORDS * sizeof(uint64_t));
	a->pool_free = calloc((size_t)a->nsegs, sizeof(*a->pool_free));
	if (!a->seg_used || !a->seg_bm || !a->pool || !a->pool_free || a->nsegs > UINT32_MAX) {
		fb_cmp_alloc_fini(a);
		return -ENOMEM;
	}
	return 0;
}

void fb_cmp_alloc_fini(struct fb_cmp_alloc *a)
{
	free(a->seg_used);
	free(a->seg_bm);
	free(a->pool);
	free(a->pool_free);
	memset(a, 0, sizeof(*a));
}

int fb_cmp_alloc_mark(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	if (start > a->units || n > a->units - start)
		return -ERANGE;
	for (uint64_t i = start; i < start + n; i++)
		if (bit_get(a, i))
			return -EEXIST;
	set_range(a, start, n, true);
	a->used += n;
	return 0;
}

/* First run of n free units in [from, to): true and *out. Whole empty or
 * full segments, and whole words of a bitmap, are stepped over at once. */
static bool find_run(const struct fb_cmp_alloc *a, uint64_t from, uint64_t to, uint64_t n,
		     uint64_t *out)
{
	uint64_t run = 0, start = from, i = from;

	while (i < to) {
		uint64_t s = i / FB_CMP_SEG_UNITS, b = i % FB_CMP_SEG_UNITS;
		const uint64_t *bits = seg_bits(a, s);
		uint64_t step = 0;
		bool free_span = false;

		if (!bits && b == 0 && i + seg_units(a, s) <= to) {
			step = seg_units(a, s);
			free_span = a->seg_used[s] == 0;
		} else if (bits && b % 64 == 0 && i + 64 <= to &&
			   (bits[b / 64] == UINT64_MAX || bits[b / 64] == 0)) {
			step = 64;
			free_span = bits[b / 64] == 0;
		}
		if (step) {
			if (!free_span) {
				run = 0;
			} else {
				if (run == 0)
					start = i;
				run += step;
				if (run >= n) {
					*out = start;
					return true;
				}
			}
			i += step;
			continue;
		}
		if (bit_get(a, i)) {
			run = 0;
		} else {
			if (run == 0)
				start = i;
			if (++run == n) {
				*out = start;
				return true;
			}
		}
		i++;
	}
	return false;
}

int fb_cmp_alloc_get(struct fb_cmp_alloc *a, uint64_t n, uint64_t *start)
{
	uint64_t s;

	if (n == 0 || n > a->units - a->used)
		return -ENOSPC;
	if (!find_run(a, a->cursor, a->units, n, &s) &&
	    !find_run(a, 0, a->cursor + n - 1 < a->units ? a->cursor + n - 1 : a->units, n, &s))
		return -ENOSPC;
	set_range(a, s, n, true);
	a->used += n;
	a->cursor = s + n < a->units ? s + n : 0;
	*start = s;
	return 0;
}

void fb_cmp_alloc_put(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	set_range(a, start, n, false);
	a->used -= n;
}

double fb_cmp_alloc_table_bytes_per_unit(void)
{
	return (double)(sizeof(uint16_t) + sizeof(uint32_t)) / FB_CMP_SEG_UNITS;
}

uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a)
{
	return a->nsegs * (sizeof(uint16_t) + sizeof(uint32_t)) +
	       (uint64_t)a->pool_top * (FB_CMP_SEG_WORDS * sizeof(uint64_t) + sizeof(uint32_t));
}
