/* Chunk map and its commits.
 *
 * Crash consistency without persistent memory rests on four rules:
 *
 *  1. Copy on write. New chunk data always goes to units that no durable
 *     map entry references (the allocator's free units, see rule 3); a live
 *     chunk's stored bytes are never written again.
 *  2. Data before map. A RAM entry is changed only after its data write
 *     completed, and a commit flushes the base before it writes any map
 *     page, so a durable entry never points at data that is not.
 *  3. Frees after the map. Units dropped by an overwrite, unmap or
 *     write-zeroes stay pending (not allocatable) until the commit that
 *     carries the page without them is durable. Until then the durable map
 *     may still point at them, so they must keep their old bytes.
 *  4. Atomic pages. Each map page has two 4 KiB slots; a commit writes the
 *     next generation into the slot not holding the newest copy, then
 *     flushes. On open the valid (CRC, magic, page index, volume uuid) copy
 *     with the highest generation wins, so a torn page write leaves the
 *     previous copy in force.
 *
 * Hence after a crash each page is its old or its new version, each entry
 * in either version references units written (rule 2) and not reused
 * (rules 1, 3), and any mix of old and new pages is consistent: a chunk
 * reads its old or its new content, never garbage. A write is durable once
 * a commit that snapshotted its entry completes; writes with FUA and
 * flushes wait for that (compress.c). Open rebuilds free space from the
 * map; entries that still cannot be right (a page whose both copies are
 * damaged reads as unmapped; overlapping or out-of-range extents) are
 * unmapped and reported, and the repaired pages are written at once: the
 * volume stays writable, never a read-only dead end.
 *
 * The page cache keeps the rules: a page whose RAM entries differ from its
 * newest durable copy is dirty or staged, and such a slot is never evicted,
 * so a page read back from the base is always the RAM map's own state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#define NONE UINT32_MAX

uint64_t fb_cmp_map_page_of(uint64_t chunk)
{
	return chunk / FB_CMP_ENTRIES_PER_PAGE;
}

static bool on_disk(const struct fb_cmp_map *m, uint64_t p)
{
	return (m->on_disk[p / 64] >> (p % 64)) & 1u;
}

static void set_on_disk(struct fb_cmp_map *m, uint64_t p)
{
	m->on_disk[p / 64] |= (uint64_t)1 << (p % 64);
}

static struct fb_cmp_entry *slot_ents(const struct fb_cmp_map *m, uint32_t s)
{
	return m->ents + (size_t)s * FB_CMP_ENTRIES_PER_PAGE;
}

static size_t bucket_of(const struct fb_cmp_map *m, uint64_t page)
{
	return (size_t)((page * 0x9e3779b97f4a7c15ull) >> 32) & (m->nbuckets - 1);
}

static uint32_t find(const struct fb_cmp_map *m, uint64_t page)
{
	for (uint32_t s = m->buckets[bucket_of(m, page)]; s != NONE; s = m->slots[s].hnext)
		if (m->slots[s].page == page)
			return s;
	return NONE;
}

static void unhash(struct fb_cmp_map *m, uint32_t s)
{
	uint32_t *pp = &m->buckets[bucket_of(m, m->slots[s].page)];

	while (*pp != s)
		pp = &m->slots[*pp].hnext;
	*pp = m->slots[s].hnext;
	m->slots[s].page = FB_CMP_NO_PAGE;
}

static bool evictable(const struct fb_cmp_cpage *c)
{
	return !c->pins && !c->loading && !c->dirty && !c->staged;
}

/* A slot for page (a free one, or a clean unpinned page's: clock). NONE
 * when none; *dirty_held then says whether a commit would free one. */
static uint32_t claim(struct fb_cmp_map *m, uint64_t page, bool *dirty_held)
{
	uint32_t s = NONE;

	*dirty_held = false;
	for (size_t step = 0; step < 2 * m->nslots; step++) {
		uint32_t i = (uint32_t)(m->clock++ % m->nslots);
		struct fb_cmp_cpage *c = &m->slots[i];

		if (c->page == FB_CMP_NO_PAGE) {
			s = i;
			break;
		}
		if (c->dirty || c->staged)
			*dirty_held = true;
		if (!evictable(c))
			continue;
		if (c->ref) {
			c->ref = false;
			continue;
		}
		if (c->changed && c->page >= m->rc_p0 && c->page < m->rc_p0 + m->rc_n)
			m->rc_stale |= (uint64_t)1 << (c->page - m->rc_p0);
		unhash(m, i);
		m->evictions++;
		s = i;
		break;
	}
	if (s == NONE)
		return NONE;
	m->slots[s] = (struct fb_cmp_cpage){.page = page, .ref = true,
					    .hnext = m->buckets[bucket_of(m, page)]};
	m->buckets[bucket_of(m, page)] = s;
	return s;
}

int fb_cmp_map_init(struct fb_cmp_map *m, const struct fb_cmp_header *h, size_t cache_pages,
		    size_t dirty_cap, size_t pending_cap)
{
	memset(m, 0, sizeof(*m));
	m->h = *h;
	if (cache_pages < 2 * dirty_cap + 2)
		return -EINVAL;
	if (cache_pages > h->map_pages)
		cache_pages = (size_t)h->map_pages;
	if (dirty_cap > cache_pages)
		dirty_cap = cache_pages; /* a small map: every page fits dirty */
	m->nslots = cache_pages;
	m->dirty_cap = dirty_cap;
	m->pending_cap = pending_cap;
	for (m->nbuckets = 1; m->nbuckets < cache_pages; m->nbuckets *= 2)
		;
	m->slots = calloc(cache_pages, sizeof(*m->slots));
	m->ents = calloc(cache_pages * FB_CMP_ENTRIES_PER_PAGE, sizeof(*m->ents));
	m->buckets = malloc(m->nbuckets * sizeof(*m->buckets));
	m->on_disk = calloc((size_t)(h->map_pages + 63) / 64, sizeof(uint64_t));
	m->dirty = calloc(2 * dirty_cap, sizeof(*m->dirty));
	m->pending[0].v = calloc(pending_cap, sizeof(struct fb_cmp_extent));
	m->pending[1].v = calloc(pending_cap, sizeof(struct fb_cmp_extent));
	m->stage = aligned_alloc(FB_CMP_PAGE_SIZE, 2 * dirty_cap * FB_CMP_PAGE_SIZE);
	m->stage_page = calloc(2 * dirty_cap, sizeof(*m->stage_page));
	m->stage_slot = calloc(2 * dirty_cap, sizeof(*m->stage_slot));
	if (!m->slots || !m->ents || !m->buckets || !m->on_disk || !m->dirty || !m->pending[0].v ||
	    !m->pending[1].v || !m->stage || !m->stage_page || !m->stage_slot ||
	    fb_cmp_alloc_init(&m->alloc, h->data_units)) {
		fb_cmp_map_fini(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->nbuckets; i++)
		m->buckets[i] = NONE;
	for (size_t i = 0; i < cache_pages; i++)
		m->slots[i].page = FB_CMP_NO_PAGE;
	return 0;
}

void fb_cmp_map_fini(struct fb_cmp_map *m)
{
	free(m->slots);
	free(m->ents);
	free(m->buckets);
	free(m->on_disk);
	free(m->dirty);
	free(m->pending[0].v);
	free(m->pending[1].v);
	free(m->stage);
	free(m->stage_page);
	free(m->stage_slot);
	fb_cmp_alloc_fini(&m->alloc);
	memset(m, 0, sizeof(*m));
}

uint64_t fb_cmp_map_units(const struct fb_cmp_map *m, uint32_t len)
{
	return (len + (uint64_t)m->h.unit_size - 1) / m->h.unit_size;
}

static size_t page_entries(const struct fb_cmp_map *m, uint64_t page)
{
	uint64_t first = page * FB_CMP_ENTRIES_PER_PAGE;
	uint64_t left = m->h.num_chunks - first;

	return left < FB_CMP_ENTRIES_PER_PAGE ? (size_t)left : FB_CMP_ENTRIES_PER_PAGE;
}

int fb_cmp_map_best_slot(const struct fb_cmp_header *h, uint64_t page, const void *slot0,
			 const void *slot1, uint64_t *gen)
{
	const void *slots[2] = {slot0, slot1};
	uint64_t g[2] = {0, 0};
	int best = -1;

	for (int s = 0; s < 2; s++) {
		if (fb_cmp_page_check(h, slots[s], page, &g[s]) == 0 && (best < 0 || g[s] > g[best]))
			best = s;
	}
	if (best >= 0) {
		*gen = g[best];
		return best;
	}
	for (int s = 0; s < 2; s++)
		if (fb_cmp_page_is_ours(h, slots[s], page))
			return -2;
	return -1;
}

static bool has_data(const struct fb_cmp_entry *e)
{
	enum fb_cmp_state s = fb_cmp_entry_state(e);

	return s == FB_CMP_COMPRESSED || s == FB_CMP_RAW;
}

/* Adds (sign 1) or removes (-1) an entry from the counters. */
static void count(struct fb_cmp_map *m, const struct fb_cmp_entry *e, int sign)
{
	uint64_t len = fb_cmp_entry_len(e);

	switch (fb_cmp_entry_state(e)) {
	case FB_CMP_COMPRESSED: m->chunks_compressed += (uint64_t)sign; break;
	case FB_CMP_RAW: m->chunks_raw += (uint64_t)sign; break;
	case FB_CMP_ZERO: m->chunks_zero += (uint64_t)sign; break;
	default: return;
	}
	if (has_data(e)) {
		m->stored_bytes += (uint64_t)sign * len;
		m->stored_units += (uint64_t)sign * fb_cmp_map_units(m, (uint32_t)len);
	}
}

static void dirty_mark(struct fb_cmp_map *m, uint32_t s)
{
	if (m->slots[s].dirty)
		return;
	m->slots[s].dirty = true;
	m->slots[s].changed = true;
	m->dirty[m->ndirty++] = s;
}

static const char *entry_problem(const struct fb_cmp_map *m, const struct fb_cmp_entry *e)
{
	enum fb_cmp_state s = fb_cmp_entry_state(e);
	uint32_t len = fb_cmp_entry_len(e);

	switch (s) {
	case FB_CMP_UNMAPPED:
	case FB_CMP_ZERO:
		return len ? "a data-less entry has a length" : NULL;
	case FB_CMP_COMPRESSED:
		if (len == 0 || len >= m->h.chunk_size)
			return "compressed length out of range";
		break;
	case FB_CMP_RAW:
		if (len != m->h.chunk_size)
			return "raw length is not the chunk size";
		break;
	default:
		return "unknown entry state";
	}
	if (e->unit >= m->h.data_units || fb_cmp_map_units(m, len) > m->h.data_units - e->unit)
		return "extent past the end of the data region";
	return NULL;
}

/* Puts a page into the cache, dirty (open's repairs). */
static void install_dirty(struct fb_cmp_map *m, uint64_t page, uint64_t gen,
			  const struct fb_cmp_entry *ents)
{
	bool dirty_held;
	uint32_t s = find(m, page);

	if (s == NONE)
		s = claim(m, page, &dirty_held);
	/* Open pins nothing and commits before dirty_cap is reached, so a
	 * slot is always free. */
	if (s == NONE)
		abort();
	m->slots[s].gen = gen;
	memset(slot_ents(m, s), 0, FB_CMP_ENTRIES_PER_PAGE * sizeof(struct fb_cmp_entry));
	memcpy(slot_ents(m, s), ents, page_entries(m, page) * sizeof(struct fb_cmp_entry));
	dirty_mark(m, s);
}

int fb_cmp_map_scan_page(struct fb_cmp_map *m, uint64_t page, const void *slot0,
			 const void *slot1, fb_cmp_repair_fn report, void *arg, uint64_t *repaired)
{
	struct fb_cmp_entry ents[FB_CMP_ENTRIES_PER_PAGE];
	uint64_t gen = 0, first = page * FB_CMP_ENTRIES_PER_PAGE;
	size_t n = page_entries(m, page);
	int best = fb_cmp_map_best_slot(&m->h, page, slot0, slot1, &gen);
	bool fix = false;

	*repaired = 0;
	if (best == -1)
		return 0; /* never written: every entry unmapped */
	if (best == -2) {
		memset(ents, 0, sizeof(ents));
		install_dirty(m, page, 0, ents);
		return 2;
	}
	set_on_disk(m, page);
	memcpy(ents, (const uint8_t *)(best ? slot1 : slot0) + sizeof(struct fb_cmp_page_hdr),
	       n * sizeof(struct fb_cmp_entry));
	for (size_t i = 0; i < n; i++) {
		struct fb_cmp_entry *e = &ents[i];
		const char *why = entry_problem(m, e);
		uint64_t units = why ? 0 : fb_cmp_map_units(m, fb_cmp_entry_len(e));

		if (m->open_window) {
			/* The first pass counted what is left here and unmapped
			 * the rest (committed since). */
			if (why || !has_data(e) || fb_cmp_alloc_open_claim(&m->alloc, e->unit, units))
				continue;
			fb_cmp_alloc_open_release(&m->alloc, e->unit, units);
			count(m, e, -1);
			why = "extent overlaps another chunk's";
		} else if (!why && has_data(e) && fb_cmp_alloc_mark(&m->alloc, e->unit, units)) {
			why = "extent overlaps another chunk's";
		}
		if (!why) {
			count(m, e, 1);
			continue;
		}
		if (report)
			report(arg, first + i, why);
		memset(e, 0, sizeof(*e));
		fix = true;
		(*repaired)++;
	}
	if (fix)
		install_dirty(m, page, gen, ents);
	return 0;
}

uint32_t fb_cmp_map_open_next(struct fb_cmp_map *m, uint32_t keep)
{
	uint32_t n;

	fb_cmp_alloc_open_window_end(&m->alloc);
	n = fb_cmp_alloc_open_window(&m->alloc, keep);
	m->open_window = n > 0;
	return n;
}

int fb_cmp_map_get(struct fb_cmp_map *m, uint64_t chunk, struct fb_cmp_entry *e,
		   struct fb_cmp_map_waiter *w)
{
	uint64_t page = fb_cmp_map_page_of(chunk);
	uint32_t s = find(m, page);
	bool dirty_held;

	if (s != NONE && m->slots[s].loading) {
		w->next = m->slots[s].waiters;
		m->slots[s].waiters = w;
		return -EINPROGRESS;
	}
	if (s != NONE) {
		m->hits++;
		m->slots[s].pins++;
		m->slots[s].ref = true;
		*e = slot_ents(m, s)[chunk % FB_CMP_ENTRIES_PER_PAGE];
		return 0;
	}
	s = claim(m, page, &dirty_held);
	if (s == NONE) {
		if (dirty_held)
			return -EAGAIN;
		w->next = m->full;
		m->full = w;
		return -EBUSY;
	}
	m->misses++;
	if (on_disk(m, page)) {
		m->slots[s].loading = true;
		return FB_CMP_MAP_LOAD;
	}
	/* Never written: nothing to read. */
	memset(slot_ents(m, s), 0, FB_CMP_ENTRIES_PER_PAGE * sizeof(struct fb_cmp_entry));
	m->slots[s].pins = 1;
	memset(e, 0, sizeof(*e));
	return 0;
}

struct fb_cmp_map_waiter *fb_cmp_map_load_done(struct fb_cmp_map *m, uint64_t page,
					       const void *slot0, const void *slot1, bool *lost)
{
	uint32_t s = find(m, page);
	struct fb_cmp_map_waiter *w = m->slots[s].waiters;
	uint64_t gen = 0;
	int best;

	*lost = false;
	m->slots[s].waiters = NULL;
	m->slots[s].loading = false;
	if (!slot0) {
		unhash(m, s);
		return w;
	}
	best = fb_cmp_map_best_slot(&m->h, page, slot0, slot1, &gen);
	memset(slot_ents(m, s), 0, FB_CMP_ENTRIES_PER_PAGE * sizeof(struct fb_cmp_entry));
	if (best >= 0)
		memcpy(slot_ents(m, s), (const uint8_t *)(best ? slot1 : slot0) + sizeof(struct fb_cmp_page_hdr),
		       page_entries(m, page) * sizeof(struct fb_cmp_entry));
	else
		*lost = true; /* damaged since open: reads as unmapped until rewritten */
	m->slots[s].gen = gen;
	return w;
}

static struct fb_cmp_map_waiter *take_full(struct fb_cmp_map *m)
{
	struct fb_cmp_map_waiter *w = m->full;

	m->full = NULL;
	return w;
}

struct fb_cmp_map_waiter *fb_cmp_map_unpin(struct fb_cmp_map *m, uint64_t chunk)
{
	uint32_t s = find(m, fb_cmp_map_page_of(chunk));

	if (--m->slots[s].pins == 0 && evictable(&m->slots[s]))
		return take_full(m);
	return NULL;
}

bool fb_cmp_map_can_set(const struct fb_cmp_map *m, uint64_t chunk)
{
	uint32_t s = find(m, fb_cmp_map_page_of(chunk));

	if (m->pending[m->collect].n >= m->pending_cap)
		return false;
	/* ndirty + nstage stays within the lists' 2 x dirty_cap, so the pages
	 * of a failed commit always fit back beside the new ones. */
	return m->slots[s].dirty || (m->ndirty < m->dirty_cap && m->ndirty + m->nstage < 2 * m->dirty_cap);
}

int fb_cmp_map_alloc(struct fb_cmp_map *m, uint32_t len, uint64_t *unit)
{
	return fb_cmp_alloc_get(&m->alloc, fb_cmp_map_units(m, len), unit);
}

void fb_cmp_map_unalloc(struct fb_cmp_map *m, uint64_t unit, uint32_t len)
{
	fb_cmp_alloc_done(&m->alloc, unit, fb_cmp_map_units(m, len));
	fb_cmp_alloc_put(&m->alloc, unit, fb_cmp_map_units(m, len));
}

bool fb_cmp_map_set(struct fb_cmp_map *m, uint64_t chunk, const struct fb_cmp_entry *e)
{
	uint32_t s = find(m, fb_cmp_map_page_of(chunk));
	struct fb_cmp_entry *cur = &slot_ents(m, s)[chunk % FB_CMP_ENTRIES_PER_PAGE];
	struct fb_cmp_pending *p = &m->pending[m->collect];

	if (has_data(e)) /* its units came from fb_cmp_map_alloc */
		fb_cmp_alloc_done(&m->alloc, e->unit, fb_cmp_map_units(m, fb_cmp_entry_len(e)));
	if (memcmp(cur, e, sizeof(*e)) == 0)
		return false;
	count(m, cur, -1);
	count(m, e, 1);
	if (has_data(cur))
		p->v[p->n++] = (struct fb_cmp_extent){cur->unit, fb_cmp_map_units(m, fb_cmp_entry_len(cur))};
	*cur = *e;
	dirty_mark(m, s);
	return true;
}

bool fb_cmp_map_has_work(const struct fb_cmp_map *m)
{
	return m->ndirty > 0 || m->pending[m->collect].n > 0;
}

size_t fb_cmp_map_snapshot(struct fb_cmp_map *m)
{
	for (size_t i = 0; i < m->ndirty; i++) {
		uint32_t s = m->dirty[i];
		struct fb_cmp_cpage *c = &m->slots[s];

		fb_cmp_page_seal(&m->h, m->stage + i * FB_CMP_PAGE_SIZE, c->page, c->gen + 1,
				 slot_ents(m, s), page_entries(m, c->page));
		m->stage_page[i] = c->page;
		m->stage_slot[i] = s;
		c->dirty = false;
		c->staged = true;
	}
	m->nstage = m->ndirty;
	m->ndirty = 0;
	/* The commit owns what was freed before its snapshot. */
	m->collect = 1 - m->collect;
	return m->nstage;
}

unsigned fb_cmp_map_stage_slot(const struct fb_cmp_map *m, size_t i)
{
	return (unsigned)((m->slots[m->stage_slot[i]].gen + 1) & 1u);
}

struct fb_cmp_map_waiter *fb_cmp_map_commit_done(struct fb_cmp_map *m, bool ok)
{
	struct fb_cmp_pending *done = &m->pending[1 - m->collect];
	struct fb_cmp_pending *cur = &m->pending[m->collect];

	for (size_t i = 0; i < m->nstage; i++) {
		struct fb_cmp_cpage *c = &m->slots[m->stage_slot[i]];

		c->staged = false;
		if (ok) {
			c->gen++;
			set_on_disk(m, c->page);
		} else {
			/* Written or not, the page must be written again; its old
			 * generation stays the reference (a slot may hold the new
			 * image: writing gen + 1 again to the same slot is what the
			 * retry does). It fits: see fb_cmp_map_can_set. */
			dirty_mark(m, m->stage_slot[i]);
		}
	}
	if (ok) {
		for (size_t i = 0; i < done->n; i++)
			fb_cmp_alloc_put(&m->alloc, done->v[i].unit, done->v[i].n);
	} else {
		/* Frees stay pending: moved to the collecting list where there is
		 * room, otherwise leaked until the next open rebuilds free space. */
		for (size_t i = 0; i < done->n; i++) {
			if (cur->n < m->pending_cap)
				cur->v[cur->n++] = done->v[i];
			else
				m->leaked_units += done->v[i].n;
		}
	}
	done->n = 0;
	m->nstage = 0;
	return take_full(m);
}

/* ---- reclaim ---- */

_Static_assert(FB_CMP_RECLAIM_PAGES <= 64, "a window's pages are bits of one word (rc_todo, rc_stale)");

bool fb_cmp_map_reclaim_due(const struct fb_cmp_map *m)
{
	const struct fb_cmp_alloc *a = &m->alloc;

	/* Each pass scans the whole map: one per 1/64 of the volume stranded. */
	return !m->rc_running && a->stranded && fb_cmp_alloc_avail(a) < a->units / 16 &&
	       a->untracked_frees - m->rc_quiet_at >= a->units / 64;
}

uint32_t fb_cmp_map_reclaim_start(struct fb_cmp_map *m, bool urgent)
{
	uint32_t n;

	if (m->rc_running)
		return 0;
	m->rc_quiet_at = m->alloc.untracked_frees;
	n = fb_cmp_alloc_reclaim_pick(&m->alloc, urgent);
	if (n == 0)
		return 0;
	m->rc_running = true;
	m->rc_urgent = urgent;
	m->reclaim_passes++;
	return n;
}

void fb_cmp_map_reclaim_window(struct fb_cmp_map *m, uint64_t p0, size_t n)
{
	m->rc_p0 = p0;
	m->rc_n = n;
	m->rc_todo = n == 64 ? UINT64_MAX : ((uint64_t)1 << n) - 1;
	m->rc_stale = 0;
}

static void reclaim_entries(struct fb_cmp_map *m, uint64_t page, const struct fb_cmp_entry *ents)
{
	for (size_t i = 0; i < page_entries(m, page); i++) {
		const struct fb_cmp_entry *e = &ents[i];

		if (!has_data(e) || entry_problem(m, e))
			continue;
		if (!fb_cmp_alloc_reclaim_mark(&m->alloc, e->unit, fb_cmp_map_units(m, fb_cmp_entry_len(e)),
					       true) &&
		    m->reclaim_overlaps++ == 0)
			m->rc_overlap_chunk = page * FB_CMP_ENTRIES_PER_PAGE + i;
	}
}

bool fb_cmp_map_reclaim_apply(struct fb_cmp_map *m, const uint8_t *imgs)
{
	for (size_t i = 0; i < m->rc_n; i++) {
		uint64_t bit = (uint64_t)1 << i, page = m->rc_p0 + i, gen;
		uint32_t s = find(m, page);
		const uint8_t *s0 = imgs + 2 * i * FB_CMP_PAGE_SIZE;
		int best;

		if (!(m->rc_todo & bit))
			continue;
		if (s != NONE && !m->slots[s].loading) {
			reclaim_entries(m, page, slot_ents(m, s)); /* RAM holds the newest */
		} else if (m->rc_stale & bit) {
			continue; /* changed and evicted while being read */
		} else {
			best = fb_cmp_map_best_slot(&m->h, page, s0, s0 + FB_CMP_PAGE_SIZE, &gen);
			if (best >= 0) {
				struct fb_cmp_entry ents[FB_CMP_ENTRIES_PER_PAGE];

				memcpy(ents, (best ? s0 + FB_CMP_PAGE_SIZE : s0) + sizeof(struct fb_cmp_page_hdr),
				       page_entries(m, page) * sizeof(struct fb_cmp_entry));
				reclaim_entries(m, page, ents);
			}
		}
		m->rc_todo &= ~bit;
	}
	m->rc_stale = 0;
	return m->rc_todo == 0;
}

uint64_t fb_cmp_map_reclaim_end(struct fb_cmp_map *m, bool abort)
{
	uint64_t made;

	/* Pending frees may still be referenced by the durable map (rule 3). */
	for (int l = 0; l < 2 && !abort; l++)
		for (size_t i = 0; i < m->pending[l].n; i++)
			fb_cmp_alloc_reclaim_mark(&m->alloc, m->pending[l].v[i].unit, m->pending[l].v[i].n,
						  false);
	made = fb_cmp_alloc_reclaim_end(&m->alloc, abort, &m->reclaim_mismatches);
	m->reclaimed_units += made;
	m->rc_running = false;
	m->rc_n = 0;
	return made;
}

uint64_t fb_cmp_map_fixed_ram(size_t cache_pages, size_t dirty_cap, size_t pending_cap)
{
	size_t nbuckets = 1;

	while (nbuckets < cache_pages)
		nbuckets *= 2;
	return cache_pages * (sizeof(struct fb_cmp_cpage) +
			      FB_CMP_ENTRIES_PER_PAGE * sizeof(struct fb_cmp_entry)) +
	       nbuckets * sizeof(uint32_t) +
	       2 * dirty_cap * (sizeof(uint32_t) + FB_CMP_PAGE_SIZE + sizeof(uint64_t) + sizeof(uint32_t)) +
	       2 * pending_cap * sizeof(struct fb_cmp_extent) + FB_CMP_ALLOC_FIXED_BYTES;
}

uint64_t fb_cmp_map_ram(const struct fb_cmp_map *m, uint64_t *fixed)
{
	uint64_t f = fb_cmp_map_fixed_ram(m->nslots, m->dirty_cap, m->pending_cap);

	if (fixed)
		*fixed = f;
	return f + (m->h.map_pages + 63) / 64 * 8 + fb_cmp_alloc_ram(&m->alloc);
}
