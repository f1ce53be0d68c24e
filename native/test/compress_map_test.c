/* Compress bdev layout, allocator and chunk map, without the engine:
 * geometry and its refusals, header damage named, page slots, next-fit
 * packing, and a crash simulation of the commit protocol (map.c's rules):
 * after a crash at any point, every chunk maps to its last committed or
 * its in-flight content, and the units it maps were never reused. */
#include "../src/compress/alloc.h"
#include "../src/compress/codec.h"
#include "../src/compress/format.h"
#include "../src/compress/map.h"
#include "harness.h"

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct fb_cmp_header make_header(uint64_t base_bytes, uint32_t bbs, uint32_t chunk,
					uint64_t num_chunks)
{
	struct fb_cmp_geometry_req r = {.base_bytes = base_bytes, .base_block_size = bbs,
					.chunk_size = chunk, .lb_size = 512, .num_chunks = num_chunks};
	struct fb_cmp_header h;
	char msg[512];

	if (fb_cmp_geometry(&r, &h, msg, sizeof(msg)))
		th_fail(__FILE__, __LINE__, "geometry: %s", msg);
	h.algo = FB_CMP_LZ4;
	h.level = 1;
	for (int i = 0; i < 16; i++)
		h.uuid[i] = (uint8_t)(i * 7 + 1);
	fb_cmp_header_seal(&h);
	return h;
}

TEST(test_geometry)
{
	struct fb_cmp_geometry_req r = {.base_bytes = 64 << 20, .base_block_size = 512,
					.chunk_size = 16384, .lb_size = 4096};
	struct fb_cmp_header h;
	char msg[512];

	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), 0);
	/* 1:1: every chunk fits raw, and one more would not. */
	CHECK(h.num_chunks * 16384 <= h.data_units * h.unit_size);
	CHECK(h.num_chunks >= (64u << 20) / 16384 - 12); /* 4 KiB header + 17 map pages x 8 KiB */
	CHECK_EQ(h.unit_size, 512);
	CHECK(h.data_offset + h.data_units * h.unit_size <= r.base_bytes);
	r.num_chunks = h.num_chunks + 1;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), 0); /* overcommit is allowed */
	r.num_chunks = 0;

	r.chunk_size = 12288;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "'chunk_size'") && strstr(msg, "power of two") && strstr(msg, "12288"));
	r.chunk_size = 2048; /* smaller than lb_size 4096 */
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "'chunk_size'") && strstr(msg, "4096"));
	r.chunk_size = 16384;
	r.lb_size = 1024;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "'lb_size'"));
	r.lb_size = 512;
	r.base_bytes = 20000; /* header + map + one chunk need 4096 + 8192 + 16384 */
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), -ENOSPC);
	CHECK(strstr(msg, "too small") && strstr(msg, "28672"));
	r.base_bytes = 28672;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), 0);
	CHECK_EQ(h.num_chunks, 1);
	r.base_block_size = 4096;
	r.base_bytes = 64 << 20;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), 0);
	CHECK_EQ(h.unit_size, 4096);
	r.base_block_size = 8192;
	CHECK_EQ(fb_cmp_geometry(&r, &h, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "block size 8192"));
}

TEST(test_header_damage)
{
	struct fb_cmp_header h = make_header(64 << 20, 512, 16384, 0), out;
	uint8_t buf[FB_CMP_HEADER_REGION] = {0};
	char msg[512];

	memcpy(buf, &h, sizeof(h));
	CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 512, &out, msg, sizeof(msg)), 0);
	CHECK_EQ(out.num_chunks, h.num_chunks);
	/* Any flipped bit in the header is named as damage. */
	for (size_t i = 8; i < sizeof(h); i += 5) {
		buf[i] ^= 0x10;
		CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 512, &out, msg, sizeof(msg)), -EINVAL);
		CHECK(strstr(msg, "CRC32C mismatch"));
		buf[i] ^= 0x10;
	}
	/* No magic: not a compress volume at all. */
	buf[0] ^= 1;
	CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 512, &out, msg, sizeof(msg)), -ENOENT);
	buf[0] ^= 1;
	/* A base that shrank. */
	CHECK_EQ(fb_cmp_header_check(buf, 32 << 20, 512, &out, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "shrank"));
	/* Another block size than at create. */
	CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 4096, &out, msg, sizeof(msg)), -EINVAL);
	CHECK(strstr(msg, "geometry"));
	/* A newer version, sealed correctly. */
	{
		struct fb_cmp_header v2 = h;

		v2.version = 3;
		v2.crc = 0;
		v2.crc = fb_cmp_crc32c(&v2, sizeof(v2));
		memcpy(buf, &v2, sizeof(v2));
		CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 512, &out, msg, sizeof(msg)), -EINVAL);
		CHECK(strstr(msg, "version 3"));
	}
	/* Version 1 (160 bytes, no name) still opens, with no name. */
	{
		struct fb_cmp_header v1 = h;

		memset(buf, 0, sizeof(buf));
		v1.version = 1;
		v1.header_size = FB_CMP_HEADER_V1_SIZE;
		v1.crc = 0;
		v1.crc = fb_cmp_crc32c(&v1, FB_CMP_HEADER_V1_SIZE);
		memcpy(buf, &v1, FB_CMP_HEADER_V1_SIZE);
		memset(buf + FB_CMP_HEADER_V1_SIZE, 'x', 64); /* not covered in version 1 */
		CHECK_EQ(fb_cmp_header_check(buf, 64 << 20, 512, &out, msg, sizeof(msg)), 0);
		CHECK_EQ(out.name[0], 0);
		CHECK_EQ(out.num_chunks, h.num_chunks);
	}
}

TEST(test_page_slots)
{
	struct fb_cmp_header h = make_header(64 << 20, 512, 16384, 0), other = h;
	struct fb_cmp_entry e[FB_CMP_ENTRIES_PER_PAGE] = {{0}};
	static uint8_t a[FB_CMP_PAGE_SIZE], b[FB_CMP_PAGE_SIZE];
	uint64_t gen;

	e[3] = (struct fb_cmp_entry){.unit = 40, .len_state = fb_cmp_len_state(FB_CMP_COMPRESSED, 999),
				     .crc = 0x1234};
	fb_cmp_page_seal(&h, a, 1, 7, e, FB_CMP_ENTRIES_PER_PAGE);
	CHECK_EQ(fb_cmp_page_check(&h, a, 1, &gen), 0);
	CHECK_EQ(gen, 7);
	CHECK_EQ(fb_cmp_page_check(&h, a, 2, &gen), -1);  /* another page's image */
	other.uuid[0] ^= 1;
	CHECK_EQ(fb_cmp_page_check(&other, a, 1, &gen), -1); /* another volume's */
	memcpy(b, a, sizeof(b));
	b[2000] ^= 4;
	CHECK_EQ(fb_cmp_page_check(&h, b, 1, &gen), -1); /* torn / damaged */
	memset(b, 0, sizeof(b));
	CHECK_EQ(fb_cmp_page_check(&h, b, 1, &gen), -1); /* never written */
	CHECK(fb_cmp_page_offset(&h, 1, 1) == h.map_offset + 3 * FB_CMP_PAGE_SIZE);
}

TEST(test_alloc)
{
	struct fb_cmp_alloc a;
	uint64_t s, prev = 0;

	CHECK_EQ(fb_cmp_alloc_init(&a, 1000), 0);
	/* Next-fit packs consecutive allocations back to back. */
	for (int i = 0; i < 10; i++) {
		CHECK_EQ(fb_cmp_alloc_get(&a, 7, &s), 0);
		CHECK_EQ(s, i ? prev + 7 : 0);
		prev = s;
	}
	CHECK_EQ(a.used, 70);
	fb_cmp_alloc_put(&a, 7, 7);
	CHECK_EQ(fb_cmp_alloc_mark(&a, 6, 2), -EEXIST);
	CHECK_EQ(fb_cmp_alloc_mark(&a, 7, 7), 0);
	CHECK_EQ(fb_cmp_alloc_mark(&a, 995, 6), -ERANGE);
	/* Fill to the end, then wrap into a freed hole. */
	while (fb_cmp_alloc_get(&a, 10, &s) == 0)
		;
	CHECK(a.used >= 990);
	fb_cmp_alloc_put(&a, 100, 20);
	CHECK_EQ(fb_cmp_alloc_get(&a, 20, &s), 0);
	CHECK_EQ(s, 100);
	CHECK_EQ(fb_cmp_alloc_get(&a, 1000, &s), -ENOSPC);
	/* Runs across 64-bit words. */
	fb_cmp_alloc_put(&a, 60, 70);
	CHECK_EQ(fb_cmp_alloc_get(&a, 70, &s), 0);
	CHECK_EQ(s, 60);
	fb_cmp_alloc_fini(&a);
}

/* Two levels: only partly used segments hold a bitmap, runs cross
 * segment boundaries, and full or empty segments give theirs back. */
TEST(test_alloc_segments)
{
	struct fb_cmp_alloc a;
	uint64_t s, units = 3 * FB_CMP_SEG_UNITS + 100;

	CHECK_EQ(fb_cmp_alloc_init(&a, units), 0);
	CHECK_EQ(a.nsegs, 4);
	/* Sequential fill: one partly used segment at a time. */
	for (uint64_t i = 0; i < 3 * FB_CMP_SEG_UNITS / 30; i++) {
		CHECK_EQ(fb_cmp_alloc_get(&a, 30, &s), 0);
		CHECK_EQ(s, i * 30);
		CHECK(a.bitmaps <= 2); /* a run straddling two segments touches both */
	}
	CHECK_EQ(a.seg_used[0], FB_CMP_SEG_UNITS);
	CHECK_EQ(a.seg_bm[0], 0);
	/* A free in a full segment gives it a bitmap with only that hole. */
	fb_cmp_alloc_put(&a, 10, 5);
	CHECK(a.seg_bm[0] != 0);
	CHECK_EQ(fb_cmp_alloc_mark(&a, 9, 2), -EEXIST);
	CHECK_EQ(fb_cmp_alloc_mark(&a, 10, 5), 0);
	CHECK_EQ(a.seg_bm[0], 0); /* full again */
	/* A run across the boundary of segments 1 and 2. */
	fb_cmp_alloc_put(&a, 2 * FB_CMP_SEG_UNITS - 20, 40);
	a.cursor = 0;
	CHECK_EQ(fb_cmp_alloc_get(&a, 40, &s), 0);
	CHECK_EQ(s, 2 * FB_CMP_SEG_UNITS - 20);
	/* Emptying everything leaves no bitmap. */
	fb_cmp_alloc_put(&a, 0, a.used == units ? units : 3 * FB_CMP_SEG_UNITS / 30 * 30);
	CHECK_EQ(a.used, 0);
	CHECK_EQ(a.bitmaps, 0);
	CHECK_EQ(fb_cmp_alloc_get(&a, units, &s), 0);
	CHECK_EQ(a.bitmaps, 0);
	CHECK_EQ(fb_cmp_alloc_get(&a, 1, &s), -ENOSPC);
	fb_cmp_alloc_fini(&a);
}

/* A bitmap budget: frees into full segments beyond it strand space that
 * allocation never hands out; a reclaim rebuilds bitmaps from what is
 * live, and one that does not add up (a unit left out, two extents on one
 * unit) is dropped, its units kept used. */
TEST(test_alloc_budget)
{
	const uint64_t segs = 16, units = segs * FB_CMP_SEG_UNITS, per = FB_CMP_SEG_UNITS / 16;
	struct fb_cmp_alloc a;
	uint64_t s, mismatch = 0, runs = 0, left_out = segs, bad;
	bool tracked[16] = {0};

	CHECK_EQ(fb_cmp_alloc_init(&a, units), 0);
	for (uint64_t i = 0; i < units / 16; i++) {
		CHECK_EQ(fb_cmp_alloc_get(&a, 16, &s), 0);
		fb_cmp_alloc_done(&a, s, 16);
	}
	CHECK_EQ(fb_cmp_alloc_trim(&a, 8), 0);
	CHECK_EQ(a.pool_cap, 8);
	/* Every other run freed: 6 frees into full segments get bitmaps (2 of 8
	 * stay for reclaim), the other 10 segments strand half their units. */
	for (uint64_t i = 1; i < units / 16; i += 2)
		fb_cmp_alloc_put(&a, i * 16, 16);
	CHECK_EQ(a.bitmaps, 6);
	CHECK_EQ(a.stranded, 10 * FB_CMP_SEG_UNITS / 2);
	CHECK_EQ(fb_cmp_alloc_avail(&a), 6 * FB_CMP_SEG_UNITS / 2);
	for (uint64_t g = 0; g < segs; g++)
		tracked[g] = a.seg_bm[g] != 0;
	while (fb_cmp_alloc_get(&a, 16, &s) == 0) {
		CHECK(tracked[s / FB_CMP_SEG_UNITS]); /* never a stranded unit */
		CHECK_EQ(s % 32, 16);
		fb_cmp_alloc_done(&a, s, 16);
		runs++;
	}
	CHECK_EQ(runs, 6 * per / 2);
	CHECK_EQ(a.bitmaps, 0); /* the tracked ones filled up */
	/* A pass over 5 segments (3 slots stay out): the live runs marked. */
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, false), 5);
	for (uint64_t i = 0; i < units / 16; i += 2)
		CHECK(fb_cmp_alloc_reclaim_mark(&a, i * 16, 16, true));
	CHECK_EQ(fb_cmp_alloc_reclaim_end(&a, false, &mismatch), 5 * FB_CMP_SEG_UNITS / 2);
	CHECK_EQ(mismatch, 0);
	CHECK_EQ(a.stranded, 5 * FB_CMP_SEG_UNITS / 2);
	/* A pass that leaves a live run out: that segment is not rebuilt. */
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, false), 3);
	for (uint64_t i = 0; i < units / 16; i += 2) {
		uint64_t g = i * 16 / FB_CMP_SEG_UNITS;

		if (left_out == segs && a.seg_bm[g] && a.pool_state[a.seg_bm[g] - 1] == FB_CMP_BM_BUILDING) {
			left_out = g;
			continue;
		}
		CHECK(fb_cmp_alloc_reclaim_mark(&a, i * 16, 16, true));
	}
	CHECK_EQ(fb_cmp_alloc_reclaim_end(&a, false, &mismatch), 2 * FB_CMP_SEG_UNITS / 2);
	CHECK_EQ(mismatch, 1);
	/* Two extents on one unit: that segment is dropped too. One slot is
	 * free and none of the tracked is emptier than the rest. */
	CHECK(left_out < segs);
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, true), 1);
	CHECK(!a.seg_bm[left_out]); /* a segment that did not add up is not picked again */
	for (uint64_t i = 0; i < units / 16; i += 2)
		CHECK(fb_cmp_alloc_reclaim_mark(&a, i * 16, 16, true));
	for (bad = 0; bad < segs; bad++)
		if (a.seg_bm[bad] && a.pool_state[a.seg_bm[bad] - 1] == FB_CMP_BM_BUILDING)
			break;
	CHECK(bad < segs);
	CHECK(!fb_cmp_alloc_reclaim_mark(&a, bad * FB_CMP_SEG_UNITS + 8, 16, true));
	CHECK_EQ(fb_cmp_alloc_reclaim_end(&a, false, &mismatch), 0);
	CHECK_EQ(mismatch, 1);
	CHECK_EQ(a.stranded, 3 * FB_CMP_SEG_UNITS / 2);
	CHECK_EQ(a.nquarantined, 2);
	/* The one stranded segment left that adds up is still rebuilt; the two
	 * that did not never come back (reopen rebuilds them from the map). */
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, true), 1);
	CHECK(!a.seg_bm[left_out] && !a.seg_bm[bad]);
	for (uint64_t i = 0; i < units / 16; i += 2)
		CHECK(fb_cmp_alloc_reclaim_mark(&a, i * 16, 16, true));
	CHECK_EQ(fb_cmp_alloc_reclaim_end(&a, false, &mismatch), FB_CMP_SEG_UNITS / 2);
	CHECK_EQ(mismatch, 1);
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, true), 0);
	CHECK_EQ(a.stranded, 2 * FB_CMP_SEG_UNITS / 2);
	fb_cmp_alloc_fini(&a);
}

/* A segment holding an allocation not yet mapped is never rebuilt: its
 * entry may land on a page the pass has read already. */
TEST(test_alloc_inflight)
{
	const uint64_t segs = 16, units = segs * FB_CMP_SEG_UNITS;
	struct fb_cmp_alloc a;
	uint64_t s, mismatch = 0;

	CHECK_EQ(fb_cmp_alloc_init(&a, units), 0);
	for (uint64_t i = 0; i < units / 16; i++) {
		CHECK_EQ(fb_cmp_alloc_get(&a, 16, &s), 0);
		if (s != 0)
			fb_cmp_alloc_done(&a, s, 16); /* [0, 16) stays in flight */
	}
	CHECK_EQ(fb_cmp_alloc_trim(&a, 8), 0);
	/* From the last segment down: 6 get bitmaps, segments 9..0 strand. */
	for (uint64_t g = segs; g-- > 0;)
		fb_cmp_alloc_put(&a, g * FB_CMP_SEG_UNITS + 16, 16);
	CHECK_EQ(a.seg_bm[0], 0);
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, false), 2);
	CHECK_EQ(a.seg_bm[0], 0); /* segments 1 and 2, not 0 */
	CHECK(a.seg_bm[1] && a.seg_bm[2]);
	fb_cmp_alloc_reclaim_end(&a, true, &mismatch);
	/* Mapped: now it can be. */
	fb_cmp_alloc_done(&a, 0, 16);
	CHECK_EQ(fb_cmp_alloc_reclaim_pick(&a, false), 2);
	CHECK(a.seg_bm[0] != 0);
	fb_cmp_alloc_reclaim_end(&a, true, &mismatch);
	CHECK_EQ(mismatch, 0);
	fb_cmp_alloc_fini(&a);
}

/* ---- crash simulation of the commit protocol ---- */

#define SIM_PAGES 8
#define SIM_CHUNKS (SIM_PAGES * FB_CMP_ENTRIES_PER_PAGE)
#define SIM_UNITS 4000
#define RC_SEGS 32          /* the reclaim runs: 32 segments, 8 bitmaps */
#define RC_UNITS (RC_SEGS * FB_CMP_SEG_UNITS)
#define SIM_CACHE 6 /* fewer slots than pages: pages are evicted and read back */
#define SIM_DIRTY 2

struct sim {
	struct fb_cmp_header h;
	uint8_t (*disk)[2][FB_CMP_PAGE_SIZE]; /* map slots */
	/* Data region: who wrote each unit last (chunk * 2^32 + version). */
	uint64_t *owner;
	/* Per chunk: where its RAM entry points (reclaim checks). */
	uint64_t unit[SIM_CHUNKS], nunits[SIM_CHUNKS];
	/* A reclaim pass in flight: its window's images, read some ops ago. */
	uint8_t (*rc_img)[2][FB_CMP_PAGE_SIZE];
	int rc_phase;               /* 0 none, 1 started, 2 window read */
	uint64_t rc_passes, rc_made;
	/* Per chunk: version committed last, and the version in the commit in flight. */
	uint32_t committed[SIM_CHUNKS], inflight[SIM_CHUNKS], ram[SIM_CHUNKS];
	struct fb_cmp_map m;
	uint64_t loads, fails;
};

static struct fb_cmp_entry sim_entry(uint64_t unit, uint32_t len, uint32_t version)
{
	/* The crc field carries the version so the checker can tell contents apart. */
	return (struct fb_cmp_entry){.unit = unit,
				     .len_state = fb_cmp_len_state(FB_CMP_COMPRESSED, len),
				     .crc = version};
}

/* The entry of chunk c in a map image (both slots of every page), from
 * its page's best slot; false (and a zeroed entry) when neither slot
 * holds a valid page. */
static bool image_entry(const struct fb_cmp_header *h, uint8_t (*img)[2][FB_CMP_PAGE_SIZE], uint64_t c,
			struct fb_cmp_entry *e)
{
	uint64_t p = fb_cmp_map_page_of(c), gen;
	int best = fb_cmp_map_best_slot(h, p, img[p][0], img[p][1], &gen);

	*e = (struct fb_cmp_entry){0};
	if (best < 0)
		return false;
	memcpy(e, img[p][best] + sizeof(struct fb_cmp_page_hdr) + (c % FB_CMP_ENTRIES_PER_PAGE) * sizeof(*e),
	       sizeof(*e));
	return true;
}

/* The entry of chunk c as the base holds it. */
static struct fb_cmp_entry disk_entry(struct sim *s, uint64_t c)
{
	struct fb_cmp_entry e;

	(void)image_entry(&s->h, s->disk, c, &e);
	return e;
}

/* After a crash: the volume reopens with no repair, each chunk is at its
 * committed or its in-flight version, its units still hold that version's
 * data, and the rebuilt free space counts exactly the mapped units. */
static void sim_check(struct sim *s)
{
	struct fb_cmp_map r;
	uint64_t repairs = 0, units = 0;

	CHECK_EQ(fb_cmp_map_init(&r, &s->h, SIM_CACHE, SIM_DIRTY, 64), 0);
	for (uint64_t p = 0; p < s->h.map_pages; p++) {
		uint64_t n;

		CHECK_EQ(fb_cmp_map_scan_page(&r, p, s->disk[p][0], s->disk[p][1], NULL, NULL, &n), 0);
		repairs += n;
	}
	CHECK_EQ(repairs, 0);
	for (uint64_t c = 0; c < SIM_CHUNKS; c++) {
		struct fb_cmp_entry e = disk_entry(s, c);
		uint32_t v = fb_cmp_entry_state(&e) == FB_CMP_UNMAPPED ? 0 : e.crc;

		if (v != s->committed[c] && v != s->inflight[c])
			th_fail(__FILE__, __LINE__, "chunk %llu: version %u after crash, want %u or %u",
				(unsigned long long)c, v, s->committed[c], s->inflight[c]);
		if (v == 0)
			continue;
		units += fb_cmp_map_units(&r, fb_cmp_entry_len(&e));
		for (uint64_t u = e.unit; u < e.unit + fb_cmp_map_units(&r, fb_cmp_entry_len(&e)); u++)
			if (s->owner[u] != (c << 32 | v))
				th_fail(__FILE__, __LINE__, "chunk %llu v%u: unit %llu was reused",
					(unsigned long long)c, v, (unsigned long long)u);
	}
	CHECK_EQ(r.alloc.used, units);
	fb_cmp_map_fini(&r);
}

/* Runs a commit; crash_at >= 0 stops after that many page writes, tearing
 * the next one. Returns false when it crashed. */
static bool sim_commit(struct sim *s, int crash_at, uint64_t *seed)
{
	size_t n = fb_cmp_map_snapshot(&s->m);

	for (uint64_t c = 0; c < SIM_CHUNKS; c++)
		s->inflight[c] = s->ram[c];
	for (size_t i = 0; i < n; i++) {
		uint64_t p = s->m.stage_page[i];
		unsigned slot = fb_cmp_map_stage_slot(&s->m, i);

		if (crash_at >= 0 && (size_t)crash_at == i) {
			/* Torn: part of the new image lands. */
			memcpy(s->disk[p][slot], s->m.stage + i * FB_CMP_PAGE_SIZE,
			       rng(seed) % FB_CMP_PAGE_SIZE);
			return false;
		}
		memcpy(s->disk[p][slot], s->m.stage + i * FB_CMP_PAGE_SIZE, FB_CMP_PAGE_SIZE);
	}
	if (crash_at >= 0 && (size_t)crash_at >= n)
		return false; /* crashed before the final flush: all pages landed anyway */
	CHECK(fb_cmp_map_commit_done(&s->m, true) == NULL);
	memcpy(s->committed, s->ram, sizeof(s->committed));
	return true;
}

/* A commit that fails before any page lands (its first flush): the pages
 * are dirty again and its frees stay pending (or leak where the list is
 * full), while reclaim passes run. */
static void sim_commit_fail(struct sim *s)
{
	fb_cmp_map_snapshot(&s->m);
	CHECK(fb_cmp_map_commit_done(&s->m, false) == NULL);
	s->fails++;
}

/* Looks up chunk c (pinning its page), reading the page from the sim's
 * base on a miss and committing when dirty pages hold every slot. */
static struct fb_cmp_entry sim_get(struct sim *s, uint64_t c, uint64_t *seed)
{
	struct fb_cmp_map_waiter w;
	struct fb_cmp_entry e;

	for (int tries = 0; tries < 3; tries++) {
		int rc = fb_cmp_map_get(&s->m, c, &e, &w);
		uint64_t p = fb_cmp_map_page_of(c);
		bool lost;

		if (rc == 0) {
			/* What RAM holds is the last version set (the cache never
			 * loses a change), whatever the base holds. */
			CHECK_EQ(fb_cmp_entry_state(&e) == FB_CMP_UNMAPPED ? 0 : e.crc, s->ram[c]);
			return e;
		}
		if (rc == FB_CMP_MAP_LOAD) {
			s->loads++;
			CHECK(fb_cmp_map_load_done(&s->m, p, s->disk[p][0], s->disk[p][1], &lost) == NULL);
			CHECK(!lost);
		} else {
			CHECK_EQ(rc, -EAGAIN);
			CHECK(sim_commit(s, -1, seed));
		}
	}
	th_fail(__FILE__, __LINE__, "chunk %llu: lookup did not settle", (unsigned long long)c);
	return e;
}

/* The allocator's view against the sim's: no unit a RAM entry, a pending
 * free or the base's map holds is free in a bitmap, the stranded count adds up, and
 * no reclaim found a mismatch or an overlap. */
static void sim_check_alloc(struct sim *s)
{
	struct fb_cmp_alloc *a = &s->m.alloc;
	uint64_t stranded = 0;
	uint8_t *live = calloc(a->units, 1);

	CHECK(live);
	for (uint64_t c = 0; c < SIM_CHUNKS; c++)
		for (uint64_t u = 0; s->ram[c] && u < s->nunits[c]; u++)
			live[s->unit[c] + u] = 1;
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < s->m.pending[l].n; i++)
			for (uint64_t u = 0; u < s->m.pending[l].v[i].n; u++)
				live[s->m.pending[l].v[i].unit + u] = 1;
	/* And what the base's map references (rule 3), whatever RAM holds. */
	for (uint64_t c = 0; c < SIM_CHUNKS; c++) {
		struct fb_cmp_entry e = disk_entry(s, c);

		if (fb_cmp_entry_state(&e) != FB_CMP_UNMAPPED)
			for (uint64_t u = 0; u < fb_cmp_map_units(&s->m, fb_cmp_entry_len(&e)); u++)
				live[e.unit + u] = 1;
	}
	for (uint64_t g = 0; g < a->nsegs; g++) {
		uint64_t n = g + 1 < a->nsegs ? FB_CMP_SEG_UNITS : a->units - g * FB_CMP_SEG_UNITS;
		uint64_t used = a->seg_used[g];

		if (a->seg_bm[g] && a->pool_state[a->seg_bm[g] - 1] == FB_CMP_BM_TRACKED) {
			const uint64_t *bits = a->pool + (uint64_t)(a->seg_bm[g] - 1) * FB_CMP_SEG_WORDS;

			for (uint64_t b = 0; b < n; b++)
				if (live[g * FB_CMP_SEG_UNITS + b] && !((bits[b / 64] >> (b % 64)) & 1u))
					th_fail(__FILE__, __LINE__, "unit %llu is live but free in its bitmap",
						(unsigned long long)(g * FB_CMP_SEG_UNITS + b));
		} else if (used && used < n) {
			stranded += n - used;
		}
		if (used == 0)
			for (uint64_t b = 0; b < n; b++)
				CHECK(!live[g * FB_CMP_SEG_UNITS + b]);
	}
	if (!s->m.rc_running)
		CHECK_EQ(a->stranded, stranded);
	/* A pass drops a segment holding units a failed commit leaked. */
	if (!s->m.leaked_units)
		CHECK_EQ(s->m.reclaim_mismatches, 0);
	CHECK_EQ(s->m.reclaim_overlaps, 0);
	free(live);
}

/* A reclaim pass, a step at a time between the sim's ops: the window is
 * read from the sim's base now and applied some ops later, so pages change
 * and are evicted in between. */
static void sim_reclaim_step(struct sim *s, bool urgent, uint64_t *seed)
{
	struct fb_cmp_map *m = &s->m;

	if (s->rc_phase == 0) {
		if (!fb_cmp_map_reclaim_start(m, urgent))
			return;
		s->rc_passes++;
		s->rc_phase = 1;
		fb_cmp_map_reclaim_window(m, 0, 1 + (size_t)(rng(seed) % s->h.map_pages));
	}
	if (s->rc_phase == 1) {
		memcpy(s->rc_img, s->disk + m->rc_p0, m->rc_n * sizeof(*s->disk));
		s->rc_phase = 2;
		if (!urgent)
			return;
	}
	if (!urgent && rng(seed) % 4)
		return; /* the read takes a few more ops */
	if (!fb_cmp_map_reclaim_apply(m, &s->rc_img[0][0][0])) {
		s->rc_phase = 1; /* read again */
		if (urgent)
			sim_reclaim_step(s, urgent, seed);
		return;
	}
	if (m->rc_p0 + m->rc_n < s->h.map_pages) {
		uint64_t p0 = m->rc_p0 + m->rc_n, left = s->h.map_pages - p0;

		fb_cmp_map_reclaim_window(m, p0, 1 + (size_t)(rng(seed) % left));
		s->rc_phase = 1;
		if (urgent)
			sim_reclaim_step(s, urgent, seed);
		return;
	}
	s->rc_made += fb_cmp_map_reclaim_end(m, false);
	s->rc_phase = 0;
	sim_check_alloc(s);
}

/* rounds of random writes, unmaps and commits on a map with a small cache,
 * each ending in a crash; with a bitmap budget (0: none), reclaim passes
 * run between the ops, and urgently when a write finds no space. */
static void sim_run(int rounds, int max_ops, uint64_t units, uint32_t chunk, uint32_t max_len,
		    uint32_t budget, uint64_t *loads, uint64_t *passes, uint64_t *made, uint64_t *fails)
{
	uint64_t seed = 12345;

	for (int round = 0; round < rounds; round++) {
		struct sim *s = calloc(1, sizeof(*s));
		int ops = 1 + (int)(rng(&seed) % (uint64_t)max_ops);

		CHECK(s);
		s->h = make_header(FB_CMP_HEADER_REGION + 2 * SIM_PAGES * FB_CMP_PAGE_SIZE +
					   units * 512ull,
				   512, chunk, SIM_CHUNKS);
		CHECK_EQ(s->h.map_pages, SIM_PAGES);
		CHECK_EQ(s->h.data_units, units);
		s->disk = calloc(s->h.map_pages, sizeof(*s->disk));
		s->rc_img = calloc(s->h.map_pages, sizeof(*s->disk));
		s->owner = calloc(units, sizeof(*s->owner));
		CHECK(s->disk && s->rc_img && s->owner);
		CHECK_EQ(fb_cmp_map_init(&s->m, &s->h, SIM_CACHE, SIM_DIRTY, 64), 0);
		CHECK_EQ(s->m.nslots, SIM_CACHE);
		if (budget)
			CHECK_EQ(fb_cmp_alloc_trim(&s->m.alloc, budget), 0);
		for (int op = 0; op < ops; op++) {
			uint64_t c = rng(&seed) % SIM_CHUNKS, unit;
			uint32_t len = 1 + (uint32_t)(rng(&seed) % max_len), v = s->ram[c] + 1;
			struct fb_cmp_entry e;

			sim_get(s, c, &seed);
			if (!fb_cmp_map_can_set(&s->m, c)) {
				CHECK(sim_commit(s, -1, &seed));
				CHECK(fb_cmp_map_can_set(&s->m, c));
			}
			if (rng(&seed) % 8 == 0) {
				/* Unmap: frees the chunk's units. */
				e = (struct fb_cmp_entry){0};
				v = 0;
			} else {
				int rc = fb_cmp_map_alloc(&s->m, len, &unit);

				if (rc) {
					CHECK(sim_commit(s, -1, &seed)); /* frees pending space */
					rc = fb_cmp_map_alloc(&s->m, len, &unit);
				}
				if (rc && budget && s->m.alloc.stranded) {
					/* Stranded space: wait for a pass (finish the one
					 * in flight, then an urgent one). */
					if (s->rc_phase)
						sim_reclaim_step(s, true, &seed);
					sim_reclaim_step(s, true, &seed);
					rc = fb_cmp_map_alloc(&s->m, len, &unit);
				}
				if (rc) {
					CHECK(fb_cmp_map_unpin(&s->m, c) == NULL);
					continue; /* really full (fragmented) */
				}
				/* The data write (rule 2: before the entry changes). */
				for (uint64_t u = unit; u < unit + fb_cmp_map_units(&s->m, len); u++)
					s->owner[u] = c << 32 | v;
				e = sim_entry(unit, len, v);
				if (budget && rng(&seed) % 4 == 0) {
					/* While the data is written: a commit may free
					 * into its segment, and a pass may run. */
					if (rng(&seed) % 8 == 0)
						sim_commit_fail(s);
					else if (rng(&seed) % 2)
						CHECK(sim_commit(s, -1, &seed));
					sim_reclaim_step(s, rng(&seed) % 4 == 0, &seed);
				}
				s->unit[c] = unit;
				s->nunits[c] = fb_cmp_map_units(&s->m, len);
			}
			fb_cmp_map_set(&s->m, c, &e);
			s->ram[c] = v;
			CHECK(fb_cmp_map_unpin(&s->m, c) == NULL);
			if (budget && rng(&seed) % 64 == 0)
				sim_commit_fail(s);
			else if (rng(&seed) % 16 == 0)
				CHECK(sim_commit(s, -1, &seed));
			if (budget && (s->rc_phase || rng(&seed) % 32 == 0))
				sim_reclaim_step(s, false, &seed);
		}
		if (budget) {
			if (s->rc_phase)
				sim_reclaim_step(s, true, &seed);
			sim_check_alloc(s);
		}
		*loads += s->loads;
		*fails += s->fails;
		*passes += s->rc_passes;
		*made += s->rc_made;
		/* Crash: during a commit (torn page) or between commits. */
		if (rng(&seed) % 2)
			sim_commit(s, (int)(rng(&seed) % 9), &seed);
		else
			memcpy(s->inflight, s->committed, sizeof(s->inflight));
		sim_check(s);
		fb_cmp_map_fini(&s->m);
		free(s->disk);
		free(s->rc_img);
		free(s->owner);
		free(s);
	}
}

TEST(test_crash_simulation)
{
	uint64_t loads = 0, passes = 0, made = 0, fails = 0;

	sim_run(200, 3000, SIM_UNITS, 4096, 1536, 0, &loads, &passes, &made, &fails);
	CHECK(loads > 1000); /* the small cache did evict and read pages back */
}

/* The same with 8 bitmaps for 32 segments: frees strand space, reclaim
 * passes run while pages change, are committed and evicted, and the
 * space they give back is never live (checked after each pass and by the
 * crash check: no unit is reused while a map entry may point at it). */
TEST(test_reclaim_simulation)
{
	uint64_t loads = 0, passes = 0, made = 0, fails = 0;

	sim_run(40, 8000, RC_UNITS, 16384, 16383, 8, &loads, &passes, &made, &fails);
	fprintf(stderr, "    %llu passes, %llu units made allocatable, %llu loads, %llu failed commits\n",
		(unsigned long long)passes, (unsigned long long)made, (unsigned long long)loads,
		(unsigned long long)fails);
	CHECK(fails > 40);
	CHECK(passes > 40);
	CHECK(made > 40 * FB_CMP_SEG_UNITS);
}

static void count_repair(void *arg, uint64_t chunk, const char *why)
{
	(void)chunk;
	(void)why;
	(*(int *)arg)++;
}

/* Open repairs what cannot be right and says so: overlapping and
 * out-of-range extents are unmapped, their pages re-written; a page whose
 * both copies are damaged reads as unmapped and is re-written too. */
TEST(test_rebuild_repairs)
{
	struct fb_cmp_header h = make_header(FB_CMP_HEADER_REGION + 8 * FB_CMP_PAGE_SIZE + 6000 * 512ull,
					     512, 4096, 4 * FB_CMP_ENTRIES_PER_PAGE);
	static struct fb_cmp_entry ents[4][FB_CMP_ENTRIES_PER_PAGE];
	static uint8_t img[4][2][FB_CMP_PAGE_SIZE];
	const uint64_t E = FB_CMP_ENTRIES_PER_PAGE;
	struct fb_cmp_map_waiter w;
	struct fb_cmp_entry e;
	struct fb_cmp_map m;
	uint64_t n, total = 0;
	int reports = 0;

	ents[0][0] = sim_entry(0, 1000, 1);            /* units 0, 1 */
	ents[0][1] = sim_entry(1, 600, 1);             /* overlaps chunk 0 */
	ents[1][45] = sim_entry(5999, 1000, 1);        /* past the end */
	ents[1][46] = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_RAW, 100)};
	ents[1][47] = (struct fb_cmp_entry){.len_state = 7u << 28};
	ents[2][90] = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0)};
	for (int p = 0; p < 3; p++)
		fb_cmp_page_seal(&h, img[p][1], (uint64_t)p, 3, ents[p], E);
	/* Page 3: a page of ours in both slots, both damaged. */
	fb_cmp_page_seal(&h, img[3][0], 3, 1, ents[3], E);
	fb_cmp_page_seal(&h, img[3][1], 3, 2, ents[3], E);
	img[3][0][100] ^= 1;
	img[3][1][200] ^= 1;

	CHECK_EQ(fb_cmp_map_init(&m, &h, 16, 4, 64), 0);
	for (uint64_t p = 0; p < 4; p++) {
		CHECK_EQ(fb_cmp_map_scan_page(&m, p, img[p][0], img[p][1], count_repair, &reports, &n),
			 p == 3 ? 2 : 0);
		total += n;
	}
	CHECK_EQ(total, 4);
	CHECK_EQ(reports, 4);
	CHECK_EQ(m.alloc.used, 2);
	CHECK_EQ(m.chunks_compressed, 1);
	CHECK_EQ(m.chunks_zero, 1);
	CHECK_EQ(m.ndirty, 3); /* pages 0, 1 and 3 are written by the first commit */
	CHECK_EQ(fb_cmp_map_get(&m, 1, &e, &w), 0);
	CHECK_EQ(fb_cmp_entry_state(&e), FB_CMP_UNMAPPED);
	CHECK(fb_cmp_map_unpin(&m, 1) == NULL);
	CHECK_EQ(fb_cmp_map_get(&m, 0, &e, &w), 0);
	CHECK_EQ(fb_cmp_entry_state(&e), FB_CMP_COMPRESSED);
	CHECK(fb_cmp_map_unpin(&m, 0) == NULL);
	CHECK_EQ(fb_cmp_map_snapshot(&m), 3);
	/* The repaired pages go to the slot not holding their newest copy. */
	CHECK_EQ(m.stage_page[0], 0);
	CHECK_EQ(fb_cmp_map_stage_slot(&m, 0), 0);
	CHECK(fb_cmp_map_commit_done(&m, true) == NULL);
	/* Page 2 was fine and not read: a lookup must load it. */
	CHECK_EQ(fb_cmp_map_get(&m, 2 * E + 90, &e, &w), FB_CMP_MAP_LOAD);
	{
		bool lost;

		CHECK(fb_cmp_map_load_done(&m, 2, img[2][0], img[2][1], &lost) == NULL);
		CHECK(!lost);
	}
	CHECK_EQ(fb_cmp_map_get(&m, 2 * E + 90, &e, &w), 0);
	CHECK_EQ(fb_cmp_entry_state(&e), FB_CMP_ZERO);
	fb_cmp_map_fini(&m);
}

/* Open with a tiny open budget (alloc.h): pass 1 checks 8 segments and
 * counts the other 32, then window passes re-read the map, 6 segments
 * each. Planted: an overlap in a pass-1 segment; 300 chunks on one range
 * of a counted segment (their sum exceeds the segment: no overflow); a
 * duplicate in a late segment; and an extent that lies in two windows,
 * fine in the first and overlapping in the second, so the first window's
 * count must give it back. Each later claimant is unmapped and reported,
 * the rest map as written, and every segment's count (and bitmap) is what
 * the surviving entries hold. */
#define OW_SEGS 40
#define OW_CHUNKS 1103
static void ow_commit(struct fb_cmp_map *m, uint8_t (*img)[2][FB_CMP_PAGE_SIZE])
{
	size_t n = fb_cmp_map_snapshot(m);

	for (size_t i = 0; i < n; i++)
		memcpy(img[m->stage_page[i]][fb_cmp_map_stage_slot(m, i)], m->stage + i * FB_CMP_PAGE_SIZE,
		       FB_CMP_PAGE_SIZE);
	CHECK(fb_cmp_map_commit_done(m, true) == NULL);
}

/* Up to max urgent reclaim passes over a map whose pages are img, while
 * some space is stranded. */
static void reclaim_passes(struct fb_cmp_map *m, uint8_t (*img)[2][FB_CMP_PAGE_SIZE], uint64_t pages,
			   int max)
{
	for (int pass = 0; pass < max && m->alloc.stranded && fb_cmp_map_reclaim_start(m, true); pass++) {
		for (uint64_t p0 = 0; p0 < pages;) {
			uint64_t k = pages - p0 < FB_CMP_RECLAIM_PAGES ? pages - p0 : FB_CMP_RECLAIM_PAGES;

			fb_cmp_map_reclaim_window(m, p0, (size_t)k);
			if (fb_cmp_map_reclaim_apply(m, &img[p0][0][0]))
				p0 += k;
		}
		fb_cmp_map_reclaim_end(m, false);
	}
}

static void ow_report(void *arg, uint64_t chunk, const char *why)
{
	CHECK(strstr(why, "overlaps"));
	((uint8_t *)arg)[chunk]++;
}

/* Opens the map in img as the bdev does, with an open budget of budget
 * bitmaps: every page scanned (committing whenever the stage fills), then
 * scanned again for each window of segments a pass could only count,
 * keeping a quarter of the budget's bitmaps between passes; no pass holds
 * more bitmaps than the budget. Overlapping claimants are counted in
 * reported. Returns the entries repaired. */
static uint64_t ow_open(struct fb_cmp_map *m, uint8_t (*img)[2][FB_CMP_PAGE_SIZE], uint64_t pages,
			uint32_t budget, uint8_t *reported)
{
	uint64_t repaired = 0, n;

	CHECK_EQ(fb_cmp_alloc_open_budget(&m->alloc, budget), 0);
	do {
		for (uint64_t p = 0; p < pages; p++) {
			if (m->ndirty >= m->dirty_cap)
				ow_commit(m, img);
			CHECK_EQ(fb_cmp_map_scan_page(m, p, img[p][0], img[p][1], ow_report, reported, &n), 0);
			repaired += n;
		}
		ow_commit(m, img);
		CHECK(m->alloc.pool_top <= (budget > m->alloc.nsegs ? m->alloc.nsegs : budget));
	} while (fb_cmp_map_open_next(m, budget / 4));
	return repaired;
}

TEST(test_open_passes)
{
	const uint64_t E = FB_CMP_ENTRIES_PER_PAGE, S = FB_CMP_SEG_UNITS;
	const uint64_t pages = (OW_CHUNKS + E - 1) / E;
	struct fb_cmp_header h = make_header(FB_CMP_HEADER_REGION + 2 * pages * FB_CMP_PAGE_SIZE +
						     OW_SEGS * S * 512ull + (1 << 20),
					     512, 4096, pages * E);
	static struct fb_cmp_entry ents[OW_CHUNKS + 253];
	static uint8_t img[8][2][FB_CMP_PAGE_SIZE], reported[OW_CHUNKS + 253];
	static uint64_t want[OW_SEGS + 8];
	struct fb_cmp_alloc *a;
	struct fb_cmp_map m;
	uint64_t total, used = 0;

	CHECK(pages <= 8);
	/* Chunks 0..799: 20 extents of 2 units in each segment, in segment-
	 * interleaved order so every page touches every segment. */
	for (uint64_t c = 0; c < 800; c++)
		ents[c] = sim_entry((c % OW_SEGS) * S + (c / OW_SEGS) * 4, 1000, 1);
	for (uint64_t c = 800; c < 1100; c++)
		ents[c] = (struct fb_cmp_entry){.unit = 30 * S + 1000,
						.len_state = fb_cmp_len_state(FB_CMP_RAW, 4096)};
	ents[1100] = sim_entry(37 * S, 1000, 1);     /* chunk 37's units */
	ents[1101] = sim_entry(38 * S - 1, 1000, 1); /* segment 37's last unit, then chunk 38's first */
	ents[1102] = sim_entry(2 * S + 1, 1000, 1);  /* chunk 2's second unit (pass 1) */
	for (uint64_t p = 0; p < pages; p++)
		fb_cmp_page_seal(&h, img[p][1], p, 1, ents + p * E, E);

	CHECK_EQ(fb_cmp_map_init(&m, &h, 16, 4, 64), 0);
	a = &m.alloc;
	CHECK(a->nsegs >= OW_SEGS);
	total = ow_open(&m, img, pages, 8, reported);
	fprintf(stderr, "    %u passes, %llu repaired\n", a->open_passes, (unsigned long long)total);
	CHECK_EQ(a->open_passes, 7); /* 8 checked, then 32 in windows of 6 */
	CHECK_EQ(a->nunchecked, 0);
	CHECK_EQ(total, 299 + 3);
	for (uint64_t c = 0; c < OW_CHUNKS; c++)
		CHECK_EQ(reported[c], c > 800 ? 1 : 0);
	CHECK_EQ(fb_cmp_alloc_trim(a, 8), 0);
	CHECK(a->open_bitmaps <= 8);
	/* Every entry as on the base now: the claimants above unmapped, the rest as written. */
	for (uint64_t c = 0; c < OW_CHUNKS; c++) {
		struct fb_cmp_entry e;

		CHECK(image_entry(&h, img, c, &e));
		if (c > 800) {
			CHECK_EQ(fb_cmp_entry_state(&e), FB_CMP_UNMAPPED);
			continue;
		}
		CHECK(memcmp(&e, &ents[c], sizeof(e)) == 0);
		for (uint64_t u = e.unit; u < e.unit + fb_cmp_map_units(&m, fb_cmp_entry_len(&e)); u++)
			want[u / S]++;
	}
	for (uint64_t g = 0; g < a->nsegs; g++) {
		used += want[g];
		CHECK_EQ(a->seg_used[g], want[g]);
		if (a->seg_bm[g]) {
			const uint64_t *bits = a->pool + (uint64_t)(a->seg_bm[g] - 1) * FB_CMP_SEG_WORDS;
			uint64_t pop = 0;

			for (unsigned w = 0; w < FB_CMP_SEG_WORDS; w++)
				pop += (uint64_t)__builtin_popcountll(bits[w]);
			CHECK_EQ(pop, want[g]);
		}
	}
	CHECK_EQ(want[30], 48);
	CHECK_EQ(want[37], 40);
	CHECK_EQ(a->used, used);
	{
		uint64_t stranded = 0;

		for (uint64_t g = 0; g < a->nsegs; g++)
			if (!a->seg_bm[g] && want[g])
				stranded += FB_CMP_SEG_UNITS - want[g];
		CHECK_EQ(a->stranded, stranded);
		CHECK_EQ(fb_cmp_alloc_avail(a), a->units - used - stranded);
	}
	CHECK_EQ(m.chunks_compressed, 800);
	CHECK_EQ(m.chunks_raw, 1);
	/* Reclaim passes rebuild the untracked segments from the map: no
	 * count disagrees with it. */
	reclaim_passes(&m, img, pages, 12);
	CHECK(m.reclaim_passes > 0);
	CHECK_EQ(m.reclaim_mismatches, 0);
	CHECK_EQ(m.reclaim_overlaps, 0);
	fb_cmp_map_fini(&m);
}

/* Random maps (packed extents, some crossing segment boundaries, some
 * placed at random so they overlap, whole-segment raw chunks at 1 MiB)
 * opened with a small open budget, so most segments are checked by window
 * passes. After open: no two surviving entries share a unit, each
 * survivor is as written and each unmapped one was reported, every
 * segment's count and bitmap are exactly the survivors' units, and used,
 * stranded and the chunk counters add up; reclaim passes then find no
 * mismatch, and allocating everything allocatable never hands out a
 * survivor's unit. Returns the survivors. */
static uint64_t or_passes, or_repaired; /* open_random's totals */

static uint64_t open_random(uint64_t seed0, uint32_t chunk, uint64_t nchunks, uint64_t nsegs,
			    uint32_t budget)
{
	uint64_t seed = seed0;
	const uint64_t E = FB_CMP_ENTRIES_PER_PAGE, S = FB_CMP_SEG_UNITS;
	const uint64_t pages = (nchunks + E - 1) / E;
	struct fb_cmp_header h = make_header(FB_CMP_HEADER_REGION + 2 * pages * FB_CMP_PAGE_SIZE +
						     nsegs * S * 512ull - 3 * 512,
					     512, chunk, nchunks);
	struct fb_cmp_entry *ents = calloc(pages * E, sizeof(*ents));
	uint8_t (*img)[2][FB_CMP_PAGE_SIZE] = calloc(pages, sizeof(*img));
	uint8_t *reported = calloc(pages * E, 1), *owner;
	uint64_t *want, units, cursor = 0, survivors = 0, used = 0, stranded = 0, comp = 0, raw = 0;
	struct fb_cmp_alloc *a;
	struct fb_cmp_map m;

	CHECK(ents && img && reported);
	units = h.data_units;
	owner = calloc(units, 1);
	want = calloc(nsegs + 1, sizeof(*want));
	CHECK(owner && want);
	for (uint64_t c = 0; c < nchunks; c++) {
		uint64_t r = rng(&seed) % 100, k, at;
		uint32_t len = rng(&seed) % 4 == 0 ? chunk : 1 + (uint32_t)(rng(&seed) % (chunk - 1));

		if (r < 10)
			continue; /* unmapped */
		if (r < 15) {
			ents[c] = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0)};
			continue;
		}
		k = (len + 511) / 512;
		if (r < 20) {
			at = rng(&seed) % (units - k + 1); /* anywhere: may overlap */
		} else {
			if (rng(&seed) % 4 == 0)
				cursor += rng(&seed) % 64; /* a gap */
			if (cursor + k > units)
				continue;
			at = cursor;
			cursor += k;
		}
		ents[c] = len == chunk ? (struct fb_cmp_entry){.unit = at,
							       .len_state = fb_cmp_len_state(FB_CMP_RAW, len)}
				       : sim_entry(at, len, 1);
	}
	for (uint64_t p = 0; p < pages; p++)
		fb_cmp_page_seal(&h, img[p][rng(&seed) % 2], p, 1 + rng(&seed) % 5, ents + p * E, E);

	CHECK_EQ(fb_cmp_map_init(&m, &h, 16, 4, 64), 0);
	a = &m.alloc;
	CHECK_EQ(a->units, units);
	or_repaired += ow_open(&m, img, pages, budget, reported);
	or_passes += a->open_passes;
	CHECK_EQ(fb_cmp_alloc_trim(a, budget / 4), 0);

	for (uint64_t c = 0; c < nchunks; c++) {
		struct fb_cmp_entry e;
		enum fb_cmp_state st;

		CHECK(image_entry(&h, img, c, &e));
		st = fb_cmp_entry_state(&e);
		if (st != FB_CMP_COMPRESSED && st != FB_CMP_RAW) {
			bool had = fb_cmp_entry_state(&ents[c]) == FB_CMP_COMPRESSED ||
				   fb_cmp_entry_state(&ents[c]) == FB_CMP_RAW;

			CHECK_EQ(reported[c], had ? 1 : 0);
			continue;
		}
		CHECK(memcmp(&e, &ents[c], sizeof(e)) == 0);
		CHECK_EQ(reported[c], 0);
		survivors++;
		if (st == FB_CMP_COMPRESSED)
			comp++;
		else
			raw++;
		for (uint64_t u = e.unit; u < e.unit + fb_cmp_map_units(&m, fb_cmp_entry_len(&e)); u++) {
			if (owner[u])
				th_fail(__FILE__, __LINE__, "seed %llu: unit %llu mapped twice after open",
					(unsigned long long)seed0, (unsigned long long)u);
			owner[u] = 1;
			want[u / S]++;
		}
	}
	for (uint64_t g = 0; g < a->nsegs; g++) {
		uint64_t su = g + 1 < a->nsegs ? S : units - g * S;

		used += want[g];
		if (a->seg_used[g] != want[g])
			th_fail(__FILE__, __LINE__, "seed %llu: segment %llu counts %u units, the map holds %llu",
				(unsigned long long)seed0, (unsigned long long)g, a->seg_used[g],
				(unsigned long long)want[g]);
		if (a->seg_bm[g]) {
			const uint64_t *bits = a->pool + (uint64_t)(a->seg_bm[g] - 1) * FB_CMP_SEG_WORDS;

			for (uint64_t b = 0; b < su; b++)
				CHECK_EQ((bits[b / 64] >> (b % 64)) & 1u, owner[g * S + b]);
		} else if (want[g] && want[g] < su) {
			stranded += su - want[g];
		}
	}
	CHECK_EQ(a->used, used);
	CHECK_EQ(a->stranded, stranded);
	CHECK_EQ(m.chunks_compressed, comp);
	CHECK_EQ(m.chunks_raw, raw);
	reclaim_passes(&m, img, pages, 64);
	CHECK_EQ(m.reclaim_mismatches, 0);
	CHECK_EQ(m.reclaim_overlaps, 0);
	/* Everything allocatable, in pieces of a chunk's sizes: never a survivor's unit. */
	for (;;) {
		uint64_t k = 1 + rng(&seed) % ((chunk + 511) / 512), at;

		if (fb_cmp_alloc_get(a, k, &at) && fb_cmp_alloc_get(a, k = 1, &at))
			break;
		for (uint64_t u = at; u < at + k; u++) {
			if (owner[u])
				th_fail(__FILE__, __LINE__, "seed %llu: unit %llu handed out again",
					(unsigned long long)seed0, (unsigned long long)u);
			owner[u] = 2;
		}
		fb_cmp_alloc_done(a, at, k);
	}
	CHECK_EQ(a->used + a->stranded, units); /* all but what reclaim could not track */
	fb_cmp_map_fini(&m);
	free(ents);
	free(img);
	free(reported);
	free(owner);
	free(want);
	return survivors;
}

TEST(test_open_random)
{
	uint64_t small = 0, big = 0, one = 0;

	for (uint64_t seed = 1; seed <= 24; seed++) {
		small += open_random(seed * 7919, 16384, 2000, 24, 8 + (uint32_t)(seed % 3) * 4);
		big += open_random(seed * 104729, 1u << 20, 60, 40, 8);
	}
	fprintf(stderr, "    %llu open passes, %llu entries repaired\n", (unsigned long long)or_passes,
		(unsigned long long)or_repaired);
	CHECK(or_passes > 2 * 48 + 24); /* windowed opens took several passes each */
	CHECK(or_repaired > 48);   /* overlaps were planted and found */
	/* The same maps with bitmaps for every segment: one pass. */
	for (uint64_t seed = 1; seed <= 24; seed++)
		one += open_random(seed * 7919, 16384, 2000, 24, 4096);
	fprintf(stderr, "    survivors: %llu (16 KiB chunks, windows), %llu (one pass), %llu (1 MiB)\n",
		(unsigned long long)small, (unsigned long long)one, (unsigned long long)big);
}

/* A full cache: -EAGAIN while dirty pages hold the slots, -EBUSY (queued)
 * while pins do, and the waiter comes back when a pin is dropped. */
TEST(test_cache_full)
{
	struct fb_cmp_header h = make_header(FB_CMP_HEADER_REGION + 40 * FB_CMP_PAGE_SIZE + 6000 * 512ull,
					     512, 4096, 20 * FB_CMP_ENTRIES_PER_PAGE);
	const uint64_t E = FB_CMP_ENTRIES_PER_PAGE;
	struct fb_cmp_map_waiter w[8];
	struct fb_cmp_entry e = {.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0)}, got;
	struct fb_cmp_map m;

	CHECK_EQ(fb_cmp_map_init(&m, &h, 3, 1, 64), -EINVAL); /* below 2 x dirty + 2 */
	CHECK_EQ(fb_cmp_map_init(&m, &h, 4, 1, 64), 0);
	/* Never-written pages need no read. */
	for (uint64_t p = 0; p < 4; p++)
		CHECK_EQ(fb_cmp_map_get(&m, p * E, &got, &w[p]), 0);
	CHECK_EQ(fb_cmp_map_get(&m, 4 * E, &got, &w[4]), -EBUSY);
	/* Dropping a pin frees a slot: the waiter is handed back. */
	CHECK(fb_cmp_map_unpin(&m, 0) == &w[4]);
	CHECK_EQ(fb_cmp_map_get(&m, 4 * E, &got, &w[4]), 0);
	/* A dirty page is not evicted: with the others pinned, a commit is asked for. */
	CHECK(fb_cmp_map_can_set(&m, 4 * E));
	CHECK(fb_cmp_map_set(&m, 4 * E, &e));
	CHECK(fb_cmp_map_unpin(&m, 4 * E) == NULL);
	CHECK_EQ(fb_cmp_map_get(&m, 5 * E, &got, &w[5]), -EAGAIN);
	CHECK_EQ(fb_cmp_map_snapshot(&m), 1);
	CHECK_EQ(fb_cmp_map_get(&m, 5 * E, &got, &w[5]), -EAGAIN); /* staged: still held */
	CHECK(fb_cmp_map_commit_done(&m, true) == NULL);
	CHECK_EQ(fb_cmp_map_get(&m, 5 * E, &got, &w[5]), 0);
	/* The committed page was evicted: it is on disk now, so it is read back. */
	CHECK(fb_cmp_map_unpin(&m, 5 * E) == NULL);
	CHECK(fb_cmp_map_unpin(&m, 1 * E) == NULL);
	CHECK_EQ(fb_cmp_map_get(&m, 4 * E, &got, &w[4]), FB_CMP_MAP_LOAD);
	fb_cmp_map_fini(&m);
}

int main(void)
{
	RUN(test_geometry);
	RUN(test_header_damage);
	RUN(test_page_slots);
	RUN(test_alloc);
	RUN(test_alloc_segments);
	RUN(test_alloc_budget);
	RUN(test_alloc_inflight);
	RUN(test_crash_simulation);
	RUN(test_reclaim_simulation);
	RUN(test_rebuild_repairs);
	RUN(test_open_passes);
	RUN(test_open_random);
	RUN(test_cache_full);
	fprintf(stderr, "compress_map_test: ok\n");
	return 0;
}
