/* The chunk map in RAM, its free space, and the bookkeeping of map commits
 * (crash-consistency rules: top of map.c). No I/O here: the bdev reads and
 * writes what this prepares. Callers serialize every call (the bdev's
 * metadata lock). */
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

struct fb_cmp_map {
	struct fb_cmp_header h;
	struct fb_cmp_entry *ent;      /* num_chunks entries */
	uint64_t *gen;                 /* per page: generation of its newest durable copy (0 = none) */
	uint64_t *dirty_bits;          /* per page: changed since its last snapshot */
	uint64_t *dirty;               /* the dirty pages, in order of first change */
	size_t ndirty, dirty_cap;
	/* Extents of replaced entries, not reusable until the page that
	 * dropped them is durable: [collect] fills now, [1 - collect] belongs
	 * to the commit in flight. */
	struct fb_cmp_pending pending[2];
	unsigned collect;
	size_t pending_cap;
	struct fb_cmp_alloc alloc;
	/* The commit in flight: sealed page images and their page indices. */
	uint8_t *stage;                /* dirty_cap * FB_CMP_PAGE_SIZE bytes */
	uint64_t *stage_page;
	size_t nstage;
	uint64_t leaked_units;         /* frees lost to a failed commit (back after reopen) */
	/* What the RAM map holds now (stats). */
	uint64_t chunks_compressed, chunks_raw, chunks_zero;
	uint64_t stored_bytes;         /* sum of stored lengths */
	uint64_t stored_units;         /* sum of units they take */
};

/* 0 or -ENOMEM. dirty_cap: most pages one commit writes (also the most
 * that may be dirty at once). */
int fb_cmp_map_init(struct fb_cmp_map *m, const struct fb_cmp_header *h, size_t dirty_cap,
		    size_t pending_cap);
void fb_cmp_map_fini(struct fb_cmp_map *m);

/* Units a stored length takes. */
uint64_t fb_cmp_map_units(const struct fb_cmp_map *m, uint32_t len);

/* Open: page p's two slot images (read from the base). Returns 0 when a
 * valid copy was found (entries loaded), 1 when neither slot holds a copy
 * (a page never written: its entries are unmapped), 2 when a slot holds
 * this volume's page header but no slot is valid (both copies damaged: the
 * entries are lost, read as unmapped, and the page is marked for rewrite). */
int fb_cmp_map_load_page(struct fb_cmp_map *m, uint64_t page, const void *slot0, const void *slot1);

/* Open, after every page is loaded: checks each entry and marks its units
 * used. Entries that cannot be right (unknown state, bad length, extent past
 * the data region, units claimed by an earlier chunk) are unmapped, their
 * page marked dirty so the repair is written by the first commit, and
 * report(arg, chunk, why) is called for each. Returns how many. */
typedef void (*fb_cmp_repair_fn)(void *arg, uint64_t chunk, const char *why);
uint64_t fb_cmp_map_rebuild(struct fb_cmp_map *m, fb_cmp_repair_fn report, void *arg);

/* Marks a page to be written by the next commit (repairs at open). */
void fb_cmp_map_mark_dirty(struct fb_cmp_map *m, uint64_t page);

/* Whether set(chunk) can run now; false means a commit must finish first
 * (the dirty page list or the pending-free list is full). */
bool fb_cmp_map_can_set(const struct fb_cmp_map *m, uint64_t chunk);
/* Space for a new stored copy: 0 and *unit, or -ENOSPC. */
int fb_cmp_map_alloc(struct fb_cmp_map *m, uint32_t len, uint64_t *unit);
/* Gives back space allocated by fb_cmp_map_alloc and never mapped. */
void fb_cmp_map_unalloc(struct fb_cmp_map *m, uint64_t unit, uint32_t len);
/* Points chunk at e (its data is written); the old extent becomes pending
 * until this change is durable. Requires fb_cmp_map_can_set. Returns true
 * when something changed. */
bool fb_cmp_map_set(struct fb_cmp_map *m, uint64_t chunk, const struct fb_cmp_entry *e);

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
 * pending frees are released; failed -> the pages are dirty again. */
void fb_cmp_map_commit_done(struct fb_cmp_map *m, bool ok);

/* RAM held by the map and the allocator, bytes. */
uint64_t fb_cmp_map_ram(const struct fb_cmp_map *m);

#endif
