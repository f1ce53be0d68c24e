/* Two-level allocator with a bitmap budget (see alloc.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define EVICT_SAMPLE 32 /* tracked slots looked at to pick one to drop */

static uint64_t seg_units(const struct fb_cmp_alloc *a, uint64_t s)
{
	uint64_t left = a->units - s * FB_CMP_SEG_UNITS;

	return left < FB_CMP_SEG_UNITS ? left : FB_CMP_SEG_UNITS;
}

static uint8_t seg_state(const struct fb_cmp_alloc *a, uint64_t s)
{
	return a->seg_bm[s] ? a->pool_state[a->seg_bm[s] - 1] : FB_CMP_BM_FREE;
}

static uint64_t *slot_bits(const struct fb_cmp_alloc *a, uint32_t idx)
{
	return a->pool + (uint64_t)idx * FB_CMP_SEG_WORDS;
}

static uint64_t *seg_bits(const struct fb_cmp_alloc *a, uint64_t s)
{
	return a->seg_bm[s] ? slot_bits(a, a->seg_bm[s] - 1) : NULL;
}

/* Free units of s that allocation cannot use. */
static uint64_t seg_stranded(const struct fb_cmp_alloc *a, uint64_t s)
{
	uint64_t u = seg_units(a, s), c = a->seg_used[s];

	if (c == 0 || c == u || seg_state(a, s) == FB_CMP_BM_TRACKED)
		return 0;
	return u - c;
}

/* Every change of a segment's state goes between these two. */
#define STRANDED_BEGIN(a, s) uint64_t stranded_before_ = seg_stranded(a, s)
#define STRANDED_END(a, s) ((a)->stranded = (a)->stranded - stranded_before_ + seg_stranded(a, s))

static bool is_unchecked(const struct fb_cmp_alloc *a, uint64_t s)
{
	return a->unchecked && (a->unchecked[s / 8] >> (s % 8)) & 1u;
}

static void set_unchecked(struct fb_cmp_alloc *a, uint64_t s, bool on)
{
	if (on)
		a->unchecked[s / 8] |= (uint8_t)(1u << (s % 8));
	else
		a->unchecked[s / 8] &= (uint8_t)~(1u << (s % 8));
	a->nunchecked = on ? a->nunchecked + 1 : a->nunchecked - 1;
}

static bool is_quarantined(const struct fb_cmp_alloc *a, uint64_t s)
{
	return (a->quarantined[s / 8] >> (s % 8)) & 1u;
}

static bool bit_get(const struct fb_cmp_alloc *a, uint64_t i)
{
	uint64_t s = i / FB_CMP_SEG_UNITS, b = i % FB_CMP_SEG_UNITS;
	const uint64_t *bits = seg_bits(a, s);

	if (bits)
		return (bits[b / 64] >> (b % 64)) & 1u;
	if (is_unchecked(a, s))
		return false; /* a later pass checks it */
	return a->seg_used[s] != 0; /* open's first pass: no bitmap means empty or full */
}

static void slot_release(struct fb_cmp_alloc *a, uint64_t s)
{
	a->pool_free[a->pool_nfree++] = a->seg_bm[s] - 1;
	a->pool_state[a->seg_bm[s] - 1] = FB_CMP_BM_FREE;
	a->seg_bm[s] = 0;
	a->bitmaps--;
}

static bool slot_take(struct fb_cmp_alloc *a, uint64_t s, uint8_t state)
{
	uint32_t idx;

	if (a->pool_nfree)
		idx = a->pool_free[--a->pool_nfree];
	else if (a->pool_top < a->pool_cap)
		idx = a->pool_top++;
	else
		return false;
	a->seg_bm[s] = idx + 1;
	a->pool_seg[idx] = (uint32_t)s;
	a->pool_state[idx] = state;
	a->bitmaps++;
	return true;
}

/* Drops the bitmap of a nearly full tracked segment (the fullest of a
 * sample) not being filled now, so an empty one can start. */
static bool evict_one(struct fb_cmp_alloc *a)
{
	uint32_t best = UINT32_MAX, seen = 0;

	for (uint32_t step = 0; step < a->pool_top && seen < EVICT_SAMPLE; step++) {
		uint32_t i = a->hand++ % a->pool_top;
		uint64_t s = a->pool_seg[i];

		if (a->pool_state[i] != FB_CMP_BM_TRACKED || (s >= a->keep_lo && s <= a->keep_hi))
			continue;
		seen++;
		if (best == UINT32_MAX || a->seg_used[s] > a->seg_used[a->pool_seg[best]])
			best = i;
	}
	if (best == UINT32_MAX)
		return false;
	{
		uint64_t s = a->pool_seg[best];
		STRANDED_BEGIN(a, s);

		slot_release(a, s);
		STRANDED_END(a, s);
	}
	a->evictions++;
	return true;
}

/* Gives segment s (empty or full) a bitmap that matches it; false when
 * none is free (and evict is false, or nothing could be evicted). */
static uint64_t *seg_bits_get(struct fb_cmp_alloc *a, uint64_t s, bool evict)
{
	uint64_t *bits = seg_bits(a, s);

	if (bits)
		return bits;
	if (!slot_take(a, s, FB_CMP_BM_TRACKED) && (!evict || !evict_one(a) ||
						    !slot_take(a, s, FB_CMP_BM_TRACKED)))
		return NULL;
	bits = seg_bits(a, s);
	memset(bits, a->seg_used[s] ? 0xff : 0, FB_CMP_SEG_WORDS * sizeof(uint64_t));
	return bits;
}

/* Drops the bitmap of a tracked segment that became empty or full. */
static void seg_settle(struct fb_cmp_alloc *a, uint64_t s)
{
	if (seg_state(a, s) != FB_CMP_BM_TRACKED ||
	    (a->seg_used[s] != 0 && a->seg_used[s] != seg_units(a, s)))
		return;
	slot_release(a, s);
}

static void bits_set(uint64_t *bits, uint64_t b, uint64_t len, bool used)
{
	for (uint64_t i = b; i < b + len; i++) {
		uint64_t m = (uint64_t)1 << (i % 64);

		if (used)
			bits[i / 64] |= m;
		else
			bits[i / 64] &= ~m;
	}
}

/* Open's first pass: a partly used segment first touched when no bitmap
 * is free is counted only, and unchecked (a later pass recounts it, so
 * its count may stop at the segment's size rather than overflow). */
static bool open_count_only(struct fb_cmp_alloc *a, uint64_t s, uint64_t len)
{
	uint64_t c = a->seg_used[s] + len;

	if (!is_unchecked(a, s)) {
		if (a->seg_bm[s] || (a->seg_used[s] == 0 && len == seg_units(a, s)) ||
		    fb_cmp_alloc_free_slots(a))
			return false;
		set_unchecked(a, s, true);
	}
	a->seg_used[s] = (uint16_t)(c < seg_units(a, s) ? c : seg_units(a, s));
	return true;
}

static void set_range(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, bool used)
{
	while (n) {
		uint64_t s = start / FB_CMP_SEG_UNITS, b = start % FB_CMP_SEG_UNITS;
		uint64_t len = seg_units(a, s) - b < n ? seg_units(a, s) - b : n;
		STRANDED_BEGIN(a, s);
		uint64_t *bits = seg_bits(a, s);

		if (a->opening && used && open_count_only(a, s, len)) {
			/* counted */
		} else if (!bits && len == seg_units(a, s)) {
			a->seg_used[s] = used ? (uint16_t)len : 0; /* whole segment */
		} else {
			/* Allocation fills empty or tracked segments only, so a
			 * bitmap is always had for it. A free into a full segment
			 * takes a slot only while more than a quarter are free: the
			 * rest go to reclaim passes, which pick the segments with
			 * the most free units rather than the first freed into. */
			if (!bits && (used || (a->seg_used[s] == seg_units(a, s) &&
					       fb_cmp_alloc_free_slots(a) > a->pool_cap / 4)))
				bits = seg_bits_get(a, s, used);
			if (bits)
				bits_set(bits, b, len, used);
			else if (!used)
				a->untracked_frees += len;
			a->seg_used[s] = (uint16_t)(used ? a->seg_used[s] + len : a->seg_used[s] - len);
			seg_settle(a, s);
		}
		STRANDED_END(a, s);
		start += len;
		n -= len;
	}
}

static int pool_alloc(struct fb_cmp_alloc *a, uint32_t cap)
{
	a->pool = calloc(cap, FB_CMP_SEG_WORDS * sizeof(uint64_t));
	a->pool_free = calloc(cap, sizeof(*a->pool_free));
	a->pool_seg = calloc(cap, sizeof(*a->pool_seg));
	a->pool_state = calloc(cap, sizeof(*a->pool_state));
	a->pool_cap = cap;
	return a->pool && a->pool_free && a->pool_seg && a->pool_state ? 0 : -ENOMEM;
}

static void pool_free_all(struct fb_cmp_alloc *a)
{
	free(a->pool);
	free(a->pool_free);
	free(a->pool_seg);
	free(a->pool_state);
}

int fb_cmp_alloc_init(struct fb_cmp_alloc *a, uint64_t units)
{
	memset(a, 0, sizeof(*a));
	a->units = units;
	a->nsegs = (units + FB_CMP_SEG_UNITS - 1) / FB_CMP_SEG_UNITS;
	if (a->nsegs >= UINT32_MAX)
		return -ENOMEM;
	a->seg_used = calloc((size_t)a->nsegs, sizeof(*a->seg_used));
	a->seg_inflight = calloc((size_t)a->nsegs, sizeof(*a->seg_inflight));
	a->seg_bm = calloc((size_t)a->nsegs, sizeof(*a->seg_bm));
	a->hist = calloc(FB_CMP_SEG_UNITS + 1, sizeof(*a->hist));
	a->unchecked = calloc((size_t)(a->nsegs + 7) / 8, 1);
	a->quarantined = calloc((size_t)(a->nsegs + 7) / 8, 1);
	a->opening = true;
	a->open_passes = 1;
	if (!a->seg_used || !a->seg_inflight || !a->seg_bm || !a->hist || !a->unchecked ||
	    !a->quarantined || pool_alloc(a, (uint32_t)a->nsegs)) {
		fb_cmp_alloc_fini(a);
		return -ENOMEM;
	}
	return 0;
}

void fb_cmp_alloc_fini(struct fb_cmp_alloc *a)
{
	free(a->seg_used);
	free(a->seg_inflight);
	free(a->seg_bm);
	free(a->hist);
	free(a->unchecked);
	free(a->quarantined);
	pool_free_all(a);
	memset(a, 0, sizeof(*a));
}

/* The free-unit count f such that at most want candidates have more than
 * f and at least want (or all) have f or more; hist[f]: segments with f
 * free units. */
static uint64_t threshold(const uint32_t *hist, uint64_t want)
{
	uint64_t acc = 0;

	for (uint64_t f = FB_CMP_SEG_UNITS; f > 0; f--) {
		acc += hist[f];
		if (acc >= want)
			return f;
	}
	return 1;
}

/* Drops the bitmaps of tracked segments beyond keep, keeping those with
 * the most free units (then those at the threshold, in slot order). */
static void keep_best(struct fb_cmp_alloc *a, uint32_t keep)
{
	uint32_t *hist = a->hist;
	uint64_t t, at_t = 0;

	memset(hist, 0, (FB_CMP_SEG_UNITS + 1) * sizeof(*hist));
	for (uint32_t i = 0; i < a->pool_top; i++)
		if (a->pool_state[i] == FB_CMP_BM_TRACKED)
			hist[seg_units(a, a->pool_seg[i]) - a->seg_used[a->pool_seg[i]]]++;
	t = threshold(hist, keep);
	for (uint64_t f = t + 1; f <= FB_CMP_SEG_UNITS; f++)
		at_t += hist[f];
	at_t = keep > at_t ? keep - at_t : 0;
	for (uint32_t i = 0; i < a->pool_top; i++) {
		uint64_t s = a->pool_seg[i], f;

		if (a->pool_state[i] != FB_CMP_BM_TRACKED)
			continue;
		f = seg_units(a, s) - a->seg_used[s];
		if (f > t)
			continue;
		if (f == t && at_t > 0)
			at_t--;
		else
			slot_release(a, s);
	}
}

int fb_cmp_alloc_trim(struct fb_cmp_alloc *a, uint32_t budget)
{
	struct fb_cmp_alloc old = *a;

	if (budget < FB_CMP_ALLOC_MIN_BUDGET)
		budget = FB_CMP_ALLOC_MIN_BUDGET;
	if (pool_alloc(a, budget)) {
		pool_free_all(a);
		*a = old;
		return -ENOMEM;
	}
	a->open_bitmaps = old.pool_top;
	keep_best(&old, budget); /* shares seg_bm with a */
	a->pool_nfree = 0;
	a->pool_top = 0;
	a->bitmaps = 0;
	for (uint32_t i = 0; i < old.pool_top; i++) {
		uint64_t s = old.pool_seg[i];

		if (old.pool_state[i] != FB_CMP_BM_TRACKED)
			continue;
		a->seg_bm[s] = 0;
		memcpy(slot_bits(a, a->pool_top), slot_bits(&old, i), FB_CMP_SEG_WORDS * sizeof(uint64_t));
		slot_take(a, s, FB_CMP_BM_TRACKED);
	}
	free(old.pool);
	free(old.pool_free);
	free(old.pool_seg);
	free(old.pool_state);
	free(a->unchecked);
	a->unchecked = NULL;
	a->nunchecked = 0;
	a->opening = false;
	/* Counts stopped at a segment's size, and segments left untracked. */
	a->used = a->stranded = 0;
	for (uint64_t s = 0; s < a->nsegs; s++) {
		a->used += a->seg_used[s];
		a->stranded += seg_stranded(a, s);
	}
	return 0;
}

int fb_cmp_alloc_open_budget(struct fb_cmp_alloc *a, uint32_t budget)
{
	if (budget < FB_CMP_ALLOC_MIN_BUDGET)
		budget = FB_CMP_ALLOC_MIN_BUDGET;
	if (budget >= a->pool_cap)
		return 0;
	pool_free_all(a);
	return pool_alloc(a, budget);
}

uint32_t fb_cmp_alloc_open_window(struct fb_cmp_alloc *a, uint32_t keep)
{
	uint32_t n = 0;

	if (!a->nunchecked)
		return 0;
	keep_best(a, keep < a->pool_cap / 2 ? keep : a->pool_cap / 2);
	for (; a->open_next < a->nsegs && fb_cmp_alloc_free_slots(a); a->open_next++) {
		uint64_t s = a->open_next;

		if (!is_unchecked(a, s))
			continue;
		slot_take(a, s, FB_CMP_BM_BUILDING);
		memset(seg_bits(a, s), 0, FB_CMP_SEG_WORDS * sizeof(uint64_t));
		a->seg_used[s] = 0;
		n++;
	}
	if (n)
		a->open_passes++;
	return n;
}

/* Runs the body for each part of [start, start + n) within one segment:
 * segment s, its first unit b there, len units. */
#define FOR_PARTS(a, start, n, s, b, len)                                                      \
	for (uint64_t at_ = (start), left_ = (n), s, b, len;                                   \
	     left_ && (s = at_ / FB_CMP_SEG_UNITS, b = at_ % FB_CMP_SEG_UNITS,                 \
		       len = seg_units(a, s) - b < left_ ? seg_units(a, s) - b : left_, 1);    \
	     at_ += len, left_ -= len)

bool fb_cmp_alloc_open_claim(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	FOR_PARTS(a, start, n, s, b, len)
	{
		const uint64_t *bits = seg_bits(a, s);

		if (seg_state(a, s) != FB_CMP_BM_BUILDING)
			continue;
		for (uint64_t i = b; i < b + len; i++)
			if ((bits[i / 64] >> (i % 64)) & 1u)
				return false;
	}
	FOR_PARTS(a, start, n, s, b, len)
	{
		if (seg_state(a, s) != FB_CMP_BM_BUILDING)
			continue;
		bits_set(seg_bits(a, s), b, len, true);
		a->seg_used[s] = (uint16_t)(a->seg_used[s] + len);
	}
	return true;
}

void fb_cmp_alloc_open_release(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	FOR_PARTS(a, start, n, s, b, len)
	{
		if (seg_state(a, s) == FB_CMP_BM_BUILDING || is_unchecked(a, s))
			continue;
		set_range(a, s * FB_CMP_SEG_UNITS + b, len, false);
	}
}

void fb_cmp_alloc_open_window_end(struct fb_cmp_alloc *a)
{
	for (uint32_t i = 0; i < a->pool_top; i++) {
		uint64_t s = a->pool_seg[i];

		if (a->pool_state[i] != FB_CMP_BM_BUILDING)
			continue;
		a->pool_state[i] = FB_CMP_BM_TRACKED;
		set_unchecked(a, s, false);
		seg_settle(a, s);
	}
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

/* First run of n free units in [from, to) within empty and tracked
 * segments: true and *out. Whole segments, and whole words of a bitmap,
 * are stepped over at once. */
static bool find_run(const struct fb_cmp_alloc *a, uint64_t from, uint64_t to, uint64_t n,
		     uint64_t *out)
{
	uint64_t run = 0, start = from, i = from;

	while (i < to) {
		uint64_t s = i / FB_CMP_SEG_UNITS, b = i % FB_CMP_SEG_UNITS;
		uint64_t end = s * FB_CMP_SEG_UNITS + seg_units(a, s);
		uint8_t st = seg_state(a, s);
		const uint64_t *bits;
		bool free_unit;

		if (end > to)
			end = to;
		if (st != FB_CMP_BM_TRACKED) {
			if (st == FB_CMP_BM_FREE && a->seg_used[s] == 0) {
				if (run == 0)
					start = i;
				run += end - i;
				if (run >= n) {
					*out = start;
					return true;
				}
			} else {
				run = 0; /* full, untracked or being rebuilt */
			}
			i = end;
			continue;
		}
		bits = seg_bits(a, s);
		if (b % 64 == 0 && i + 64 <= end && (bits[b / 64] == UINT64_MAX || bits[b / 64] == 0)) {
			if (bits[b / 64] == UINT64_MAX) {
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
		free_unit = !((bits[b / 64] >> (b % 64)) & 1u);
		if (!free_unit) {
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

static void inflight_add(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, int d)
{
	for (uint64_t s = start / FB_CMP_SEG_UNITS; s <= (start + n - 1) / FB_CMP_SEG_UNITS; s++)
		a->seg_inflight[s] = (uint16_t)(a->seg_inflight[s] + d);
}

int fb_cmp_alloc_get(struct fb_cmp_alloc *a, uint64_t n, uint64_t *start)
{
	uint64_t s;

	if (n == 0 || n > a->units - a->used)
		return -ENOSPC;
	if (!find_run(a, a->cursor, a->units, n, &s) &&
	    !find_run(a, 0, a->cursor + n - 1 < a->units ? a->cursor + n - 1 : a->units, n, &s))
		return -ENOSPC;
	a->keep_lo = s / FB_CMP_SEG_UNITS;
	a->keep_hi = (s + n - 1) / FB_CMP_SEG_UNITS;
	set_range(a, s, n, true);
	a->keep_lo = a->keep_hi = UINT64_MAX;
	a->used += n;
	inflight_add(a, s, n, 1);
	a->cursor = s + n < a->units ? s + n : 0;
	*start = s;
	return 0;
}

void fb_cmp_alloc_done(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	inflight_add(a, start, n, -1);
}

void fb_cmp_alloc_put(struct fb_cmp_alloc *a, uint64_t start, uint64_t n)
{
	set_range(a, start, n, false);
	a->used -= n;
}

uint64_t fb_cmp_alloc_avail(const struct fb_cmp_alloc *a)
{
	return a->units - a->used - a->stranded;
}

uint32_t fb_cmp_alloc_free_slots(const struct fb_cmp_alloc *a)
{
	return a->pool_nfree + (a->pool_cap - a->pool_top);
}

/* ---- reclaim ---- */

static bool eligible(const struct fb_cmp_alloc *a, uint64_t s)
{
	return !a->seg_bm[s] && seg_stranded(a, s) && a->seg_inflight[s] == 0 && !is_quarantined(a, s);
}

uint32_t fb_cmp_alloc_reclaim_pick(struct fb_cmp_alloc *a, bool urgent)
{
	uint32_t *hist = a->hist, slots = fb_cmp_alloc_free_slots(a), want, picked = 0;
	uint64_t t;

	if (a->pool_cap <= 3)
		return 0;
	memset(hist, 0, (FB_CMP_SEG_UNITS + 1) * sizeof(*hist));
	for (uint64_t s = 0; s < a->nsegs; s++)
		if (eligible(a, s))
			hist[seg_stranded(a, s)]++;
	/* A pass builds at least a quarter of the budget, trading tracked
	 * segments that hold fewer free units than the chosen ones; three
	 * slots stay out of it, so starting an empty segment always finds
	 * one to evict. */
	want = slots < a->pool_cap / 4 ? a->pool_cap / 4 : slots;
	if (want + 3 > a->pool_cap)
		want = a->pool_cap - 3;
	t = threshold(hist, want);
	for (uint32_t i = 0; i < a->pool_top && slots < want; i++) {
		uint64_t s = a->pool_seg[i];

		if (a->pool_state[i] == FB_CMP_BM_TRACKED && seg_units(a, s) - a->seg_used[s] < t &&
		    (urgent || seg_units(a, s) - a->seg_used[s] < t / 2)) {
			STRANDED_BEGIN(a, s);

			slot_release(a, s);
			STRANDED_END(a, s);
			slots++;
		}
	}
	if (want > slots)
		want = slots;
	/* Those with more than t free units, then those with t. */
	for (int round = 0; round < 2 && picked < want; round++) {
		for (uint64_t s = 0; s < a->nsegs && picked < want; s++) {
			uint64_t f = seg_stranded(a, s);

			if (!eligible(a, s) || (round == 0 ? f <= t : f != t))
				continue;
			slot_take(a, s, FB_CMP_BM_BUILDING);
			memset(seg_bits(a, s), 0, FB_CMP_SEG_WORDS * sizeof(uint64_t));
			picked++;
		}
	}
	return picked;
}

bool fb_cmp_alloc_reclaim_mark(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, bool check)
{
	bool ok = true;

	while (n) {
		uint64_t s = start / FB_CMP_SEG_UNITS, b = start % FB_CMP_SEG_UNITS;
		uint64_t len = seg_units(a, s) - b < n ? seg_units(a, s) - b : n;
		uint8_t st = seg_state(a, s);

		if (st == FB_CMP_BM_BUILDING || st == FB_CMP_BM_BAD) {
			uint64_t *bits = seg_bits(a, s);

			for (uint64_t i = b; i < b + len; i++) {
				uint64_t m = (uint64_t)1 << (i % 64);

				if (check && (bits[i / 64] & m)) {
					a->pool_state[a->seg_bm[s] - 1] = FB_CMP_BM_BAD;
					ok = false;
				}
				bits[i / 64] |= m;
			}
		}
		start += len;
		n -= len;
	}
	return ok;
}

static uint64_t popcount(const uint64_t *bits)
{
	uint64_t n = 0;

	for (unsigned w = 0; w < FB_CMP_SEG_WORDS; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	return n;
}

uint64_t fb_cmp_alloc_reclaim_end(struct fb_cmp_alloc *a, bool abort, uint64_t *mismatch)
{
	uint64_t made = 0;

	for (uint32_t i = 0; i < a->pool_top; i++) {
		uint8_t st = a->pool_state[i];
		uint64_t s = a->pool_seg[i];

		if (st != FB_CMP_BM_BUILDING && st != FB_CMP_BM_BAD)
			continue;
		STRANDED_BEGIN(a, s);
		if (!abort && st == FB_CMP_BM_BUILDING && popcount(slot_bits(a, i)) == a->seg_used[s]) {
			a->pool_state[i] = FB_CMP_BM_TRACKED;
			made += stranded_before_;
			seg_settle(a, s);
		} else {
			/* Never free what might be live: the segment keeps its
			 * count and stays untracked, and out of later passes. */
			if (!abort && st == FB_CMP_BM_BUILDING)
				(*mismatch)++;
			if (!abort && !is_quarantined(a, s)) {
				a->quarantined[s / 8] |= (uint8_t)(1u << (s % 8));
				a->nquarantined++;
			}
			slot_release(a, s);
		}
		STRANDED_END(a, s);
	}
	return made;
}

double fb_cmp_alloc_table_bytes_per_unit(void)
{
	return (2.0 * sizeof(uint16_t) + sizeof(uint32_t) + 1.0 / 8) / FB_CMP_SEG_UNITS;
}

uint64_t fb_cmp_alloc_slot_bytes(void)
{
	return FB_CMP_SEG_WORDS * sizeof(uint64_t) + 2 * sizeof(uint32_t) + sizeof(uint8_t);
}

uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a)
{
	return a->nsegs * (2 * sizeof(uint16_t) + sizeof(uint32_t)) + (a->nsegs + 7) / 8 +
	       (uint64_t)a->pool_top * fb_cmp_alloc_slot_bytes();
}
