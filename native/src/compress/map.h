/* The chunk map, paged: a bounded cache of map pages in RAM (loaded on
 * demand, dirty pages written back by the commits), the volume's free
 * space, and the bookkeeping of map commits (crash-consistency rules: top
 * of map.c). No I/O here: the bdev reads and writes what this prepares.
 * Callers serialize every call (the bdev's metadata lock).
 *
 * RAM: the cache (cache_pages x ~4.1 KiB, fixed), the commit stage and
 * pending-free lists (fixed), one bit per map page (a page has a copy on
 * disk: 30 KB per TB logical at 16 KiB chunks) and the allocator (alloc.h).
 * Nothing is held per chunk. */
#ifndef FB_COMPRESS_MAP_H
#define FB_COMPRESS_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "format.h"

struct fb_cmp_extent {
	uint64_t unit, n;
};

struct fb_cmp_pending {
	struct fb_cmp_extent *v;
	size_t n;
};

/* Embedded by the caller in what waits for a page (an I/O). */
struct fb_cmp_map_waiter {
	struct fb_cmp_map_waiter *next;
};

/* A cache slot. */
struct fb_cmp_cpage {
	uint64_t page;                 /* FB_CMP_NO_PAGE: slot free */
	uint64_t gen;                  /* generation of its newest durable copy (0 = none) */
	uint32_t pins;                 /* I/Os using its entries */
	uint32_t hnext;                /* next slot in its hash chain, UINT32_MAX = none */
	bool loading, dirty, staged, ref;
	bool changed;                  /* entries changed since loaded (a reclaim's read may be stale) */
	struct fb_cmp_map_waiter *waiters; /* waiting for the load */
};
#define FB_CMP_NO_PAGE UINT64_MAX

struct fb_cmp_map {
	struct fb_cmp_header h;
	/* The cache. */
	struct fb_cmp_cpage *slots;
	struct fb_cmp_entry *ents;     /* nslots x FB_CMP_ENTRIES_PER_PAGE */
	uint32_t *buckets;             /* hash heads, UINT32_MAX = empty */
	size_t nslots, nbuckets, clock;
	uint64_t *on_disk;             /* per page: a valid copy may be on disk */
	struct fb_cmp_map_waiter *full; /* waiting for a slot to free up */
	uint64_t hits, misses, evictions;
	/* Commits. dirty_cap bounds what new changes may dirty; the lists hold
	 * twice that, so pages of a failed commit always fit back. */
	uint32_t *dirty;               /* slots of the dirty pages, in order of first change */
	size_t ndirty, dirty_cap;
	struct fb_cmp_pending pending[2]; /* frees awaiting a commit: [collect] fills now */
	unsigned collect;
	size_t pending_cap;
	struct fb_cmp_alloc alloc;
	uint8_t *stage;                /* sealed page images of the commit in flight */
	uint64_t *stage_page;
	uint32_t *stage_slot;
	size_t nstage;
	uint64_t leaked_units;         /* frees lost to a failed commit (back after reopen) */
	/* Reclaim (fb_cmp_map_reclaim_*): the pass in flight and its window of
	 * pages being read; stale: pages whose read may predate a change. */
	bool rc_running, rc_urgent;
	uint64_t rc_p0, rc_todo, rc_stale;
	size_t rc_n;
	uint64_t rc_quiet_at;          /* alloc.untracked_frees when the last pass started */
	uint64_t reclaim_passes, reclaimed_units, reclaim_mismatches, reclaim_overlaps;
	uint64_t rc_overlap_chunk;     /* the first chunk found overlapping (log) */
	/* What the map holds now (stats). */
	uint64_t chunks_compressed, chunks_raw, chunks_zero;
	uint64_t stored_bytes;         /* sum of stored lengths */
	uint64_t stored_units;         /* sum of units they take */
	bool open_window;              /* open: a pass checking a window of segments */
};

/* 0, -EINVAL (cache_pages < 2 * dirty_cap + 2), or -ENOMEM. cache_pages
 * beyond the map's size are not allocated. */
int fb_cmp_map_init(struct fb_cmp_map *m, const struct fb_cmp_header *h, size_t cache_pages,
		    size_t dirty_cap, size_t pending_cap);
void fb_cmp_map_fini(struct fb_cmp_map *m);

/* Units a stored length takes. */
uint64_t fb_cmp_map_units(const struct fb_cmp_map *m, uint32_t len);
/* The page holding chunk's entry. */
uint64_t fb_cmp_map_page_of(uint64_t chunk);

/* Which of a page's two slot images is in force: 0 or 1 (and *gen), -1
 * when neither is valid, -2 when neither is valid but one holds this
 * volume's page header (both copies damaged). */
int fb_cmp_map_best_slot(const struct fb_cmp_header *h, uint64_t page, const void *slot0,
			 const void *slot1, uint64_t *gen);

/* ---- open: every page is scanned in order, once per pass ---- */

/* Page p's two slot images (read from the base): checks each entry and
 * marks its units used. Entries that cannot be right (unknown state, bad
 * length, extent past the data region, units claimed by an earlier chunk)
 * are unmapped and report(arg, chunk, why) is called for each; a page
 * with repairs, or with both copies damaged (its entries are lost and read
 * as unmapped), goes into the cache dirty, to be written by the next
 * commit: call it only while ndirty < dirty_cap. Returns 2 when both
 * copies were damaged, else 0; *repaired counts the entries unmapped. */
typedef void (*fb_cmp_repair_fn)(void *arg, uint64_t chunk, const char *why);
int fb_cmp_map_scan_page(struct fb_cmp_map *m, uint64_t page, const void *slot0,
			 const void *slot1, fb_cmp_repair_fn report, void *arg, uint64_t *repaired);
/* After a pass whose repairs are committed (so the base holds the map as
 * it is): starts the next pass when segments were left unchecked for
 * want of bitmaps (alloc.h, open budget), keeping at most keep bitmaps of
 * checked segments. Returns the segments that pass checks, 0 when open's
 * checks are done. In such a pass, scan_page checks only those segments:
 * an extent claiming a unit an earlier one claimed there is unmapped and
 * reported, its units counted by earlier passes freed. */
uint32_t fb_cmp_map_open_next(struct fb_cmp_map *m, uint32_t keep);

/* ---- the I/O path ---- */

#define FB_CMP_MAP_LOAD 1
/* Looks up chunk's entry:
 *   0             *e set and the page pinned (fb_cmp_map_unpin when done);
 *   FB_CMP_MAP_LOAD  the caller must read both copies of page
 *                 fb_cmp_map_page_of(chunk), call fb_cmp_map_load_done,
 *                 and look up again;
 *   -EINPROGRESS  another caller is loading the page: w is queued;
 *   -EBUSY        every slot is pinned or loading: w is queued;
 *   -EAGAIN       every free-able slot holds a dirty page: commit, then
 *                 look up again (w is not queued).
 * Queued waiters come back from load_done, unpin or commit_done; they
 * look up again. */
int fb_cmp_map_get(struct fb_cmp_map *m, uint64_t chunk, struct fb_cmp_entry *e,
		   struct fb_cmp_map_waiter *w);
/* Ends a load: slot images (NULL for both when the read failed: the slot
 * is given up). Returns the waiters to wake. *lost set when both copies
 * were damaged (its entries read as unmapped). */
struct fb_cmp_map_waiter *fb_cmp_map_load_done(struct fb_cmp_map *m, uint64_t page,
					       const void *slot0, const void *slot1, bool *lost);
/* Unpins chunk's page; returns the waiters to wake (a slot may be free). */
struct fb_cmp_map_waiter *fb_cmp_map_unpin(struct fb_cmp_map *m, uint64_t chunk);

/* Whether set(chunk) can run now (chunk's page pinned); false means a
 * commit must finish first (the dirty list or the pending frees are full). */
bool fb_cmp_map_can_set(const struct fb_cmp_map *m, uint64_t chunk);
/* Space for a new stored copy: 0 and *unit, or -ENOSPC. */
int fb_cmp_map_alloc(struct fb_cmp_map *m, uint32_t len, uint64_t *unit);
/* Gives back space allocated by fb_cmp_map_alloc and never mapped. */
void fb_cmp_map_unalloc(struct fb_cmp_map *m, uint64_t unit, uint32_t len);
/* Points chunk (its page pinned) at e (its data is written); the old
 * extent becomes pending until this change is durable. Requires
 * fb_cmp_map_can_set. Returns true when something changed. */
bool fb_cmp_map_set(struct fb_cmp_map *m, uint64_t chunk, const struct fb_cmp_entry *e);

/* ---- commits ---- */

/* Whether a commit has anything to write or release. */
bool fb_cmp_map_has_work(const struct fb_cmp_map *m);
/* Starts a commit: seals every dirty page (next generation) into the stage
 * and hands the pending frees to it. Returns the number of staged pages;
 * their images are stage + i * FB_CMP_PAGE_SIZE, to be written at
 * fb_cmp_page_offset(h, stage_page[i], slot) with slot from
 * fb_cmp_map_stage_slot. */
size_t fb_cmp_map_snapshot(struct fb_cmp_map *m);
unsigned fb_cmp_map_stage_slot(const struct fb_cmp_map *m, size_t i);
/* Ends the commit: durable (ok) -> the new generations count and the
 * pending frees are released; failed -> the pages are dirty again. Returns
 * the waiters to wake (clean pages can be evicted). */
struct fb_cmp_map_waiter *fb_cmp_map_commit_done(struct fb_cmp_map *m, bool ok);

/* ---- reclaim: bitmaps for stranded segments (alloc.h) ----
 *
 * A pass builds the bitmaps of segments chosen at its start from the map
 * as it is while the volume serves I/O: every page's entries (the cache's
 * when the page is cached, else the base's copy: a page not cached holds
 * no change, see the rules above), then the pending frees of both lists
 * (the collecting one and the commit's in flight). That is every unit
 * that may be live: chosen segments have no allocation in flight and take
 * none until the pass ends, and frees out of them during the pass clear
 * their bits (whether marked yet or not). A bitmap whose popcount differs
 * from its segment's count (frees leaked by a failed commit, damage) is
 * dropped and counted: its units stay used. */

#define FB_CMP_RECLAIM_PAGES 32 /* map pages per read of a pass (and per hold of the lock) */
/* Whether a background pass would help now: under 1/16 of the volume is
 * allocatable, and 1/64 more was stranded since the last pass started. */
bool fb_cmp_map_reclaim_due(const struct fb_cmp_map *m);
/* Starts a pass (urgent: a write found no space; may trade tracked
 * segments for emptier ones). Returns the segments chosen; 0 = no pass. */
uint32_t fb_cmp_map_reclaim_start(struct fb_cmp_map *m, bool urgent);
/* Pages [p0, p0 + n) (n <= FB_CMP_RECLAIM_PAGES) are about to be read. */
void fb_cmp_map_reclaim_window(struct fb_cmp_map *m, uint64_t p0, size_t n);
/* Their two slot images each, as on the base (imgs + 2 * i pages): marks
 * their entries. True when the window is done; false: read it again (a
 * page changed and left the cache during the read). */
bool fb_cmp_map_reclaim_apply(struct fb_cmp_map *m, const uint8_t *imgs);
/* Ends the pass (abort: every build dropped). Returns the units made
 * allocatable. */
uint64_t fb_cmp_map_reclaim_end(struct fb_cmp_map *m, bool abort);

/* RAM held by the map and the allocator now, bytes; *fixed gets the part
 * that does not grow with the volume (cache, stage, pending lists, the
 * allocator's histogram). */
uint64_t fb_cmp_map_ram(const struct fb_cmp_map *m, uint64_t *fixed);
/* That fixed part for a map of at least cache_pages pages. */
uint64_t fb_cmp_map_fixed_ram(size_t cache_pages, size_t dirty_cap, size_t pending_cap);

#endif
