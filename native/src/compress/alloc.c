/* Bitmap allocator (see alloc.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "alloc.h"

static bool bit_get(const struct fb_cmp_alloc *a, uint64_t i)
{
	return (a->bits[i / 64] >> (i % 64)) & 1u;
}

static void set_range(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, bool used)
{
	for (uint64_t i = start; i < start + n; i++) {
		uint64_t m = (uint64_t)1 << (i % 64);

		if (used)
			a->bits[i / 64] |= m;
		else
			a->bits[i / 64] &= ~m;
	}
}

int fb_cmp_alloc_init(struct fb_cmp_alloc *a, uint64_t units)
{
	a->bits = calloc((size_t)((units + 63) / 64 + 1), sizeof(uint64_t));
	a->units = units;
	a->used = 0;
	a->cursor = 0;
	return a->bits ? 0 : -ENOMEM;
}

void fb_cmp_alloc_fini(struct fb_cmp_alloc *a)
{
	free(a->bits);
	a->bits = NULL;
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

/* First run of n free units in [from, to): true and *out. */
static bool find_run(const struct fb_cmp_alloc *a, uint64_t from, uint64_t to, uint64_t n,
		     uint64_t *out)
{
	uint64_t run = 0, start = from, i = from;

	while (i < to) {
		uint64_t w = a->bits[i / 64];

		if (i % 64 == 0 && i + 64 <= to && (w == UINT64_MAX || w == 0)) {
			if (w == UINT64_MAX) {
				run = 0;
			} else {
				if (run == 0)
					start = i;
				run += 64;
				if (run >= n) {
					*out = start;
					return true;
				}
			}
			i += 64;
			continue;
		}
		if ((w >> (i % 64)) & 1u) {
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

uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a)
{
	return ((a->units + 63) / 64 + 1) * sizeof(uint64_t);
}
