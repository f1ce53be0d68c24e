/* Free space of a compress volume's data region, in two levels so that RAM
 * stays bounded whatever the fragmentation:
 *
 *   level 1  per segment of FB_CMP_SEG_UNITS allocation units: how many are
 *            used, how many allocations in it are not yet mapped, and a
 *            quarantine bit (always in RAM: 8 bytes and a bit per segment,
 *            7.7 MB per TB at 512-byte units, 1 at 4 KiB);
 *   level 2  a bitmap (one bit per unit) for at most `budget` partly used
 *            segments (the pool, fixed after open: 265 bytes a bitmap).
 *
 * A segment is empty (count 0), full, tracked (partly used, with a bitmap)
 * or untracked (partly used, count only). Allocation uses empty and
 * tracked segments only, so no unit of an untracked segment is ever handed
 * out: its free units are "stranded" until a reclaim pass (map.c) rebuilds
 * its bitmap from the chunk map. Frees into a full segment take a free
 * bitmap while more than a quarter of the budget is free, else they only
 * lower the count (the rest is kept for reclaim passes). Starting an
 * empty segment with no bitmap free untracks a sampled, nearly full one.
 *
 * Open rebuilds free space from the map with a transient pool of at most
 * an open budget of bitmaps (fb_cmp_alloc_open_budget; the bdev gives 4x
 * the steady budget). Pass 1 hands them to partly used segments as they
 * are first touched; a segment touched after they ran out is counted only
 * and flagged unchecked (1 bit per segment): its overlaps are not seen.
 * Further passes over the map (fb_cmp_alloc_open_window) each recount a
 * window of unchecked segments with bitmaps, in segment order, finding
 * their overlaps. Then fb_cmp_alloc_trim keeps the budget's worth (the
 * emptiest partly used segments) before the volume serves I/O.
 *
 * Next-fit over units, so chunks written one after another pack densely in
 * write order and fill segments whole. The caller serializes calls (the
 * bdev's metadata lock); the I/O path never allocates. */
#ifndef FB_COMPRESS_ALLOC_H
#define FB_COMPRESS_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

#define FB_CMP_SEG_UNITS 2048u
#define FB_CMP_SEG_WORDS (FB_CMP_SEG_UNITS / 64)
#define FB_CMP_ALLOC_MIN_BUDGET 8u

/* A bitmap slot's state. */
enum { FB_CMP_BM_FREE, FB_CMP_BM_TRACKED, FB_CMP_BM_BUILDING, FB_CMP_BM_BAD };

struct fb_cmp_alloc {
	uint64_t units;
	uint64_t used;
	uint64_t cursor;        /* where the next search starts */
	uint64_t nsegs;
	uint16_t *seg_used;     /* per segment: units in use */
	uint16_t *seg_inflight; /* per segment: allocations not yet mapped nor given back */
	uint32_t *seg_bm;       /* per segment: 1 + its bitmap's slot, 0 = none */
	uint64_t *pool;         /* bitmaps, FB_CMP_SEG_WORDS words each */
	uint32_t *pool_free;    /* slots given back, reused first */
	uint32_t *pool_seg;     /* per slot: its segment */
	uint8_t *pool_state;    /* per slot: FB_CMP_BM_* */
	uint32_t *hist;         /* reclaim's scratch: segments per free-unit count */
	uint32_t pool_cap;      /* slots: one per segment until trimmed, then the budget */
	uint32_t pool_nfree;
	uint32_t pool_top;      /* slots ever handed out (the pool's touched part) */
	uint32_t bitmaps;       /* slots in use now (tracked or building) */
	uint32_t hand;          /* where the next eviction sample starts */
	uint64_t keep_lo, keep_hi; /* segments an allocation is filling: not evicted */
	uint64_t stranded;      /* free units of partly used segments without a usable bitmap */
	uint64_t untracked_frees; /* units freed into untracked segments (count only) */
	uint64_t evictions;     /* bitmaps dropped to start an empty segment */
	/* Segments a reclaim pass found not adding up (units counted that no
	 * entry holds: frees leaked by a failed commit; or two entries on one
	 * unit), 1 bit each: never picked again, or every pass would fail on
	 * them and crowd out segments it can rebuild. Reopen rebuilds their
	 * free space from the map. */
	uint8_t *quarantined;
	uint64_t nquarantined;
	uint32_t open_bitmaps;  /* bitmaps the open scan held (transient) */
	/* Open, until trim: segments counted only (1 bit each), how many, the
	 * next one a window may start at, and the passes over the map. */
	uint8_t *unchecked;
	uint64_t nunchecked, open_next;
	uint32_t open_passes;
	bool opening;
};

/* 0 or -ENOMEM (control path). The pool holds one bitmap per segment
 * until fb_cmp_alloc_open_budget or fb_cmp_alloc_trim. */
int fb_cmp_alloc_init(struct fb_cmp_alloc *a, uint64_t units);
/* Before open's first mark: the scan holds at most budget bitmaps (>=
 * FB_CMP_ALLOC_MIN_BUDGET; more than the segments changes nothing).
 * 0 or -ENOMEM. */
int fb_cmp_alloc_open_budget(struct fb_cmp_alloc *a, uint32_t budget);
/* Open's next pass: keeps at most keep tracked bitmaps (the emptiest;
 * at most half the pool) and gives the rest, in segment order, to
 * unchecked segments, recounted from zero by the pass's
 * fb_cmp_alloc_open_claim calls. Returns how many (0: all checked). */
uint32_t fb_cmp_alloc_open_window(struct fb_cmp_alloc *a, uint32_t keep);
/* An extent as a window pass reads it: false when it claims a unit an
 * earlier extent claimed in a window segment (nothing marked then); else
 * its window parts are marked. */
bool fb_cmp_alloc_open_claim(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* An extent refused by fb_cmp_alloc_open_claim is unmapped: frees its
 * parts counted by earlier passes (not those in the window or in
 * unchecked segments still to come: their passes recount them). */
void fb_cmp_alloc_open_release(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* Ends a window pass: its segments are checked and tracked. */
void fb_cmp_alloc_open_window_end(struct fb_cmp_alloc *a);
void fb_cmp_alloc_fini(struct fb_cmp_alloc *a);
/* Ends open: keeps at most budget (>= FB_CMP_ALLOC_MIN_BUDGET) bitmaps,
 * those of the partly used segments with the most free units, shrinks
 * the pool to budget slots and recounts used and stranded units from the
 * segment table. 0 or -ENOMEM (nothing changed then). */
int fb_cmp_alloc_trim(struct fb_cmp_alloc *a, uint32_t budget);
/* Marks [start, start + n) used (open's first pass, before trim): 0,
 * -ERANGE past the end, or -EEXIST if any unit was already used in a
 * checked segment (nothing is marked then). Counts in unchecked segments
 * stop at the segment's size (overlapping claims may exceed it). */
int fb_cmp_alloc_mark(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* n contiguous free units: 0 and *start, or -ENOSPC. The allocation stays
 * in flight until fb_cmp_alloc_done. */
int fb_cmp_alloc_get(struct fb_cmp_alloc *a, uint64_t n, uint64_t *start);
/* An allocation from fb_cmp_alloc_get is mapped or given back. */
void fb_cmp_alloc_done(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* Frees [start, start + n) (all must be in use). */
void fb_cmp_alloc_put(struct fb_cmp_alloc *a, uint64_t start, uint64_t n);
/* Units allocation can use now (empty and tracked segments). */
uint64_t fb_cmp_alloc_avail(const struct fb_cmp_alloc *a);
/* Bitmap slots free now. */
uint32_t fb_cmp_alloc_free_slots(const struct fb_cmp_alloc *a);

/* ---- reclaim (driven by map.c) ---- */
/* Gives free slots, and slots of tracked segments holding fewer free units
 * than the chosen ones (half as many unless urgent), to the untracked
 * segments with the most free units and no allocation in flight; their
 * bitmaps start empty and are built by fb_cmp_alloc_reclaim_mark. Returns
 * how many. */
uint32_t fb_cmp_alloc_reclaim_pick(struct fb_cmp_alloc *a, bool urgent);
/* Marks the parts of [start, start + n) in building segments used; with
 * check, a unit already marked makes its segment bad (two extents claim
 * it) and returns false. */
bool fb_cmp_alloc_reclaim_mark(struct fb_cmp_alloc *a, uint64_t start, uint64_t n, bool check);
/* Ends the builds: a bitmap whose popcount equals its segment's count
 * becomes tracked; others (abort, bad, or *mismatch counted) are dropped,
 * their segments stay untracked. Returns the free units made usable. */
uint64_t fb_cmp_alloc_reclaim_end(struct fb_cmp_alloc *a, bool abort, uint64_t *mismatch);

/* Bytes that do not grow with the volume (reclaim's histogram). */
#define FB_CMP_ALLOC_FIXED_BYTES ((FB_CMP_SEG_UNITS + 1) * sizeof(uint32_t))
/* Bytes of RAM in use that grow with the volume: the segment table and
 * the bitmap slots touched (plus FB_CMP_ALLOC_FIXED_BYTES). */
uint64_t fb_cmp_alloc_ram(const struct fb_cmp_alloc *a);
/* Bytes per unit of the level-1 table, and per bitmap slot (per-TB figures). */
double fb_cmp_alloc_table_bytes_per_unit(void);
uint64_t fb_cmp_alloc_slot_bytes(void);

#endif
