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
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

static uint64_t page_of(uint64_t chunk)
{
	return chunk / FB_CMP_ENTRIES_PER_PAGE;
}

static bool dirty_get(const struct fb_cmp_map *m, uint64_t p)
{
	return (m->dirty_bits[p / 64] >> (p % 64)) & 1u;
}

static void dirty_mark(struct fb_cmp_map *m, uint64_t p)
{
	if (dirty_get(m, p))
		return;
	m->dirty_bits[p / 64] |= (uint64_t)1 << (p % 64);
	m->dirty[m->ndirty++] = p;
}

int fb_cmp_map_init(struct fb_cmp_map *m, const struct fb_cmp_header *h, size_t dirty_cap,
		    size_t pending_cap)
{
	memset(m, 0, sizeof(*m));
	m->h = *h;
	if (dirty_cap > h->map_pages)
		dirty_cap = (size_t)h->map_pages;
	m->dirty_cap = dirty_cap;
	m->pending_cap = pending_cap;
	m->ent = calloc((size_t)h->num_chunks, sizeof(*m->ent));
	m->gen = calloc((size_t)h->map_pages, sizeof(*m->gen));
	m->dirty_bits = calloc((size_t)(h->map_pages + 63) / 64, sizeof(uint64_t));
	m->dirty = calloc(dirty_cap, sizeof(*m->dirty));
	m->pending[0].v = calloc(pending_cap, sizeof(struct fb_cmp_extent));
	m->pending[1].v = calloc(pending_cap, sizeof(struct fb_cmp_extent));
	m->stage = aligned_alloc(FB_CMP_PAGE_SIZE, dirty_cap * FB_CMP_PAGE_SIZE);
	m->stage_page = calloc(dirty_cap, sizeof(*m->stage_page));
	if (!m->ent || !m->gen || !m->dirty_bits || !m->dirty || !m->pending[0].v ||
	    !m->pending[1].v || !m->stage || !m->stage_page ||
	    fb_cmp_alloc_init(&m->alloc, h->data_units)) {
		fb_cmp_map_fini(m);
		return -ENOMEM;
	}
	return 0;
}

void fb_cmp_map_fini(struct fb_cmp_map *m)
{
	free(m->ent);
	free(m->gen);
	free(m->dirty_bits);
	free(m->dirty);
	free(m->pending[0].v);
	free(m->pending[1].v);
	free(m->stage);
	free(m->stage_page);
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

int fb_cmp_map_load_page(struct fb_cmp_map *m, uint64_t page, const void *slot0, const void *slot1)
{
	const void *slots[2] = {slot0, slot1};
	uint64_t g[2] = {0, 0};
	int best = -1;

	for (int s = 0; s < 2; s++) {
		if (fb_cmp_page_check(&m->h, slots[s], page, &g[s]) == 0 && (best < 0 || g[s] > g[best]))
			best = s;
	}
	if (best < 0) {
		for (int s = 0; s < 2; s++) {
			if (fb_cmp_page_is_ours(&m->h, slots[s], page)) {
				fb_cmp_map_mark_dirty(m, page);
				return 2;
			}
		}
		return 1;
	}
	m->gen[page] = g[best];
	memcpy(&m->ent[page * FB_CMP_ENTRIES_PER_PAGE],
	       (const uint8_t *)slots[best] + sizeof(struct fb_cmp_page_hdr),
	       page_entries(m, page) * sizeof(struct fb_cmp_entry));
	return 0;
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

void fb_cmp_map_mark_dirty(struct fb_cmp_map *m, uint64_t page)
{
	if (m->ndirty < m->dirty_cap || dirty_get(m, page))
		dirty_mark(m, page);
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

uint64_t fb_cmp_map_rebuild(struct fb_cmp_map *m, fb_cmp_repair_fn report, void *arg)
{
	uint64_t repaired = 0;

	for (uint64_t c = 0; c < m->h.num_chunks; c++) {
		struct fb_cmp_entry *e = &m->ent[c];
		const char *why = entry_problem(m, e);
		enum fb_cmp_state s = fb_cmp_entry_state(e);

		if (!why && (s == FB_CMP_COMPRESSED || s == FB_CMP_RAW) &&
		    fb_cmp_alloc_mark(&m->alloc, e->unit, fb_cmp_map_units(m, fb_cmp_entry_len(e))))
			why = "extent overlaps another chunk's";
		if (!why) {
			count(m, e, 1);
			continue;
		}
		if (report)
			report(arg, c, why);
		memset(e, 0, sizeof(*e));
		/* Repairs are written by the first commit; past dirty_cap the
		 * rest are redone from the same damage on the next open. */
		fb_cmp_map_mark_dirty(m, page_of(c));
		repaired++;
	}
	return repaired;
}

bool fb_cmp_map_can_set(const struct fb_cmp_map *m, uint64_t chunk)
{
	if (m->pending[m->collect].n >= m->pending_cap)
		return false;
	return dirty_get(m, page_of(chunk)) || m->ndirty < m->dirty_cap;
}

int fb_cmp_map_alloc(struct fb_cmp_map *m, uint32_t len, uint64_t *unit)
{
	return fb_cmp_alloc_get(&m->alloc, fb_cmp_map_units(m, len), unit);
}

void fb_cmp_map_unalloc(struct fb_cmp_map *m, uint64_t unit, uint32_t len)
{
	fb_cmp_alloc_put(&m->alloc, unit, fb_cmp_map_units(m, len));
}


bool fb_cmp_map_set(struct fb_cmp_map *m, uint64_t chunk, const struct fb_cmp_entry *e)
{
	struct fb_cmp_entry *cur = &m->ent[chunk];
	struct fb_cmp_pending *p = &m->pending[m->collect];

	if (memcmp(cur, e, sizeof(*e)) == 0)
		return false;
	count(m, cur, -1);
	count(m, e, 1);
	if (has_data(cur))
		p->v[p->n++] = (struct fb_cmp_extent){cur->unit, fb_cmp_map_units(m, fb_cmp_entry_len(cur))};
	*cur = *e;
	dirty_mark(m, page_of(chunk));
	return true;
}

bool fb_cmp_map_has_work(const struct fb_cmp_map *m)
{
	return m->ndirty > 0 || m->pending[m->collect].n > 0;
}

size_t fb_cmp_map_snapshot(struct fb_cmp_map *m)
{
	for (size_t i = 0; i < m->ndirty; i++) {
		uint64_t p = m->dirty[i];

		fb_cmp_page_seal(&m->h, m->stage + i * FB_CMP_PAGE_SIZE, p, m->gen[p] + 1,
				 &m->ent[p * FB_CMP_ENTRIES_PER_PAGE], page_entries(m, p));
		m->stage_page[i] = p;
		m->dirty_bits[p / 64] &= ~((uint64_t)1 << (p % 64));
	}
	m->nstage = m->ndirty;
	m->ndirty = 0;
	/* The commit owns what was freed before its snapshot. */
	m->collect = 1 - m->collect;
	return m->nstage;
}

unsigned fb_cmp_map_stage_slot(const struct fb_cmp_map *m, size_t i)
{
	return (unsigned)((m->gen[m->stage_page[i]] + 1) & 1u);
}

void fb_cmp_map_commit_done(struct fb_cmp_map *m, bool ok)
{
	struct fb_cmp_pending *done = &m->pending[1 - m->collect];
	struct fb_cmp_pending *cur = &m->pending[m->collect];

	if (ok) {
		for (size_t i = 0; i < m->nstage; i++)
			m->gen[m->stage_page[i]]++;
		for (size_t i = 0; i < done->n; i++)
			fb_cmp_alloc_put(&m->alloc, done->v[i].unit, done->v[i].n);
	} else {
		/* Written or not, the pages must be written again; their old
		 * generation stays the reference (a slot may hold the new image:
		 * writing gen + 1 again to the same slot is what the retry does). */
		for (size_t i = 0; i < m->nstage; i++) {
			uint64_t p = m->stage_page[i];

			if (!dirty_get(m, p) && m->ndirty < m->dirty_cap)
				dirty_mark(m, p);
		}
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
}

uint64_t fb_cmp_map_ram(const struct fb_cmp_map *m)
{
	return m->h.num_chunks * sizeof(struct fb_cmp_entry) + m->h.map_pages * sizeof(uint64_t) +
	       (m->h.map_pages + 63) / 64 * 8 + m->dirty_cap * (8 + 8 + FB_CMP_PAGE_SIZE) +
	       2 * m->pending_cap * sizeof(struct fb_cmp_extent) + fb_cmp_alloc_ram(&m->alloc);
}
