/* Write-intent bitmap (RAID1, 5, 10 with a superblock) and the persisted
 * per-block CRC table.
 *
 * A bit covers region_rows rows. Before a write touches a region its bit
 * must be on disk: writers whose bit is already set (bm_dirty) go straight
 * on; the others ask reactor 0, which owns the on-disk page: it sets the
 * bit in the wanted image and writes the page (FUA) to every usable
 * member, one write at a time, then lets the waiters go. After a crash only
 * regions with a bit set can have parity or copies out of step, so
 * assembly resyncs just those.
 *
 * Bits are cleared lazily by a timer on reactor 0: a region with no write
 * in flight for two ticks gets its CRC table pages written, every member
 * flushed (its data and parity stable), then its bit cleared on disk. The writer side increments the region's in-flight count
 * before testing the bit and the cleaner clears the bit before testing the
 * count (both sequentially consistent), so a writer either sees the bit
 * cleared (and asks for it again) or the cleaner sees the writer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/raid.h>

#include "raid.h"

#define BM_TICK_NS 1000000000ull
#define BM_CLEAN_MAX 64   /* regions cleared per tick */

struct raid_bm_owner {
	struct raid_bdev *r;
	struct fb_reactor *r0;
	uint8_t *want;                /* bits that must be on disk */
	uint8_t *idle;                /* ticks a dirty region has been idle */
	uint8_t *page;                /* write buffer (page_blocks blocks) */
	size_t page_len;
	struct raid_io *pending;      /* asked for, not yet in a write */
	struct raid_io *current;      /* covered by the write in flight */
	bool writing, stopping, started;
	int outstanding;
	int phase;                    /* 0 bitmap for waiters; cleaner: 1 CRC, 3 flush, 2 bitmap */
	struct fb_timer timer;
	uint8_t *crcbuf;
	size_t crcbuf_len;
	uint64_t clean_list[BM_CLEAN_MAX];
	unsigned nclean;
	struct bm_child {
		struct raid_bm_owner *o;
		unsigned member;
		struct iovec iov;     /* lives until the write completes */
	} ctx[RAID_MAX_MEMBERS];
};

static uint64_t page_blocks(const struct raid_bdev *r)
{
	return (RAID_META_PAGE + r->block_size - 1) / r->block_size;
}

uint64_t raid_crc_offset_blocks(const struct raid_bdev *r)
{
	return 2 * page_blocks(r);
}

static uint64_t member_row_of(const struct raid_io *rio)
{
	return rio->r->level == RAID_L5 ? rio->row : rio->row / rio->r->ngroups;
}

static bool bit_get(_Atomic uint8_t *bm, uint64_t b)
{
	return atomic_load(&bm[b / 8]) & (1u << (b % 8));
}

static void owner_phase_done(struct raid_bm_owner *o);

static void proceed_msg(void *arg)
{
	struct raid_io *rio = arg;

	rio->after(rio);
}

static void member_io_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct bm_child *c = arg;
	struct raid_bm_owner *o = c->o;

	fb_bdev_free_io(bio);
	atomic_fetch_sub(&o->r->m[c->member].inflight, 1);
	if (status) {
		fb_log(o->r->e, FB_LOG_ERROR, "raid '%s': metadata write to '%s' failed: %s",
		       o->r->name, o->r->m[c->member].name, strerror(-status));
		raid_member_fail(o->r, c->member, "metadata write failed");
	}
	if (--o->outstanding == 0)
		owner_phase_done(o);
}

/* Reactor 0: writes nblk blocks at blk to member i from buf. */
static void owner_write_one(struct raid_bm_owner *o, unsigned i, void *buf, uint64_t blk,
			    uint64_t nblk)
{
	struct raid_bdev *r = o->r;
	int s = atomic_load(&r->m[i].state);

	if ((s != MEMBER_ONLINE && s != MEMBER_REBUILDING) || !r->r0ch[i] || !r->m[i].desc)
		return;
	o->ctx[i].o = o;
	o->ctx[i].member = i;
	o->ctx[i].iov = (struct iovec){buf, nblk * r->block_size};
	atomic_fetch_add(&r->m[i].inflight, 1);
	o->outstanding++;
	int rc = fb_bdev_writev_blocks(r->m[i].desc, r->r0ch[i], &o->ctx[i].iov, 1, blk, nblk, FB_IO_FLAG_FUA,
				       member_io_done, &o->ctx[i]);

	if (rc) {
		fb_log(r->e, FB_LOG_ERROR, "raid '%s': metadata write to '%s' (blocks %llu+%llu) not "
		       "started: %s", r->name, r->m[i].name, (unsigned long long)blk,
		       (unsigned long long)nblk, strerror(-rc));
		atomic_fetch_sub(&r->m[i].inflight, 1);
		o->outstanding--;
		raid_member_fail(r, i, "metadata write failed");
	}
}

static void owner_flush_members(struct raid_bm_owner *o)
{
	struct raid_bdev *r = o->r;

	o->phase = 3;
	o->outstanding = 1;
	for (unsigned i = 0; i < r->n; i++) {
		int s = atomic_load(&r->m[i].state);

		if ((s != MEMBER_ONLINE && s != MEMBER_REBUILDING) || !r->r0ch[i] || !r->m[i].desc)
			continue;
		o->ctx[i].o = o;
		o->ctx[i].member = i;
		atomic_fetch_add(&r->m[i].inflight, 1);
		o->outstanding++;
		if (fb_bdev_flush_blocks(r->m[i].desc, r->r0ch[i], 0, 0, member_io_done, &o->ctx[i])) {
			atomic_fetch_sub(&r->m[i].inflight, 1);
			o->outstanding--;
		}
	}
	if (--o->outstanding == 0)
		owner_phase_done(o);
}

static void owner_write_bitmap(struct raid_bm_owner *o, int phase)
{
	memset(o->page, 0, o->page_len);
	memcpy(o->page, o->want, (o->r->nregions + 7) / 8);
	o->phase = phase;
	o->outstanding = 1;
	atomic_fetch_add(&o->r->bitmap_writes, 1);
	for (unsigned i = 0; i < o->r->n; i++)
		owner_write_one(o, i, o->page, page_blocks(o->r), page_blocks(o->r));
	if (--o->outstanding == 0)
		owner_phase_done(o);
}

static void owner_start_write(struct raid_bm_owner *o)
{
	o->writing = true;
	o->current = o->pending;
	o->pending = NULL;
	for (struct raid_io *rio = o->current; rio; rio = rio->bm_next)
		o->want[rio->region / 8] |= (uint8_t)(1u << (rio->region % 8));
	owner_write_bitmap(o, 0);
}

/* Fills buf with member i's CRC table blocks [t0, t1). */
static void crc_fill(struct raid_bdev *r, unsigned i, uint8_t *buf, uint64_t t0, uint64_t t1)
{
	uint64_t per = r->block_size / 4;
	uint32_t *v = (uint32_t *)(void *)buf;

	for (uint64_t k = 0; k < (t1 - t0) * per; k++) {
		uint64_t b = t0 * per + k;

		v[k] = b < r->member_blocks ? atomic_load_explicit(&r->m[i].crc[b], memory_order_relaxed)
					    : 0;
	}
}

/* Cleaner step 1: the CRC table pages of the regions being cleared. */
static void cleaner_write_crc(struct raid_bm_owner *o)
{
	struct raid_bdev *r = o->r;
	uint64_t per = r->block_size / 4, lo = UINT64_MAX, hi = 0, t0, t1;
	size_t len;

	for (unsigned k = 0; k < o->nclean; k++) {
		uint64_t b0 = o->clean_list[k] * r->region_rows * r->strip_blocks;
		uint64_t b1 = b0 + r->region_rows * r->strip_blocks;

		if (b1 > r->member_blocks)
			b1 = r->member_blocks;
		lo = b0 < lo ? b0 : lo;
		hi = b1 > hi ? b1 : hi;
	}
	t0 = lo / per;
	t1 = (hi + per - 1) / per;
	len = (size_t)((t1 - t0) * r->block_size);
	if (len * r->n > o->crcbuf_len) {
		free(o->crcbuf);
		o->crcbuf = aligned_alloc(4096, (len * r->n + 4095) & ~(size_t)4095);
		o->crcbuf_len = o->crcbuf ? len * r->n : 0;
	}
	o->phase = 1;
	o->outstanding = 1;
	if (!o->crcbuf) {
		/* Leave the bits set; the next tick tries again. */
		for (unsigned k = 0; k < o->nclean; k++) {
			uint64_t g = o->clean_list[k];

			o->want[g / 8] |= (uint8_t)(1u << (g % 8));
			atomic_fetch_or(&r->bm_dirty[g / 8], (uint8_t)(1u << (g % 8)));
		}
		o->nclean = 0;
	} else {
		for (unsigned i = 0; i < r->n; i++) {
			uint8_t *b = o->crcbuf + len * i;

			if (atomic_load(&r->m[i].state) != MEMBER_ONLINE || !r->m[i].crc)
				continue;
			crc_fill(r, i, b, t0, t1);
			owner_write_one(o, i, b, raid_crc_offset_blocks(r) + t0, t1 - t0);
		}
	}
	if (--o->outstanding == 0)
		owner_phase_done(o);
}

static void owner_phase_done(struct raid_bm_owner *o)
{
	struct raid_bdev *r = o->r;

	if (o->phase == 0) {
		struct raid_io *list = o->current;

		o->current = NULL;
		for (struct raid_io *rio = list, *next; rio; rio = next) {
			next = rio->bm_next;
			atomic_fetch_or(&r->bm_dirty[rio->region / 8],
					(uint8_t)(1u << (rio->region % 8)));
			fb_reactor_send(fb_io_channel_get_reactor(rio->ch), proceed_msg, rio);
		}
	} else if (o->phase == 1) {
		/* The regions' data and parity must be stable before their
		 * bits go: a flush of every member, then the bitmap. */
		if (o->nclean) {
			owner_flush_members(o);
			return;
		}
	} else if (o->phase == 3) {
		o->nclean = 0;
		owner_write_bitmap(o, 2);
		return;
	}
	o->writing = false;
	if (o->pending && !o->stopping)
		owner_start_write(o);
}

static void proceed_msg(void *arg);

static void request_msg(void *arg)
{
	struct raid_io *rio = arg;
	struct raid_bm_owner *o = rio->r->bm;

	if (bit_get(rio->r->bm_dirty, rio->region)) {
		fb_reactor_send(fb_io_channel_get_reactor(rio->ch), proceed_msg, rio);
		return;
	}
	rio->bm_next = o->pending;
	o->pending = rio;
	if (!o->writing)
		owner_start_write(o);
}

void raid_bm_begin(struct raid_io *rio, void (*next)(struct raid_io *rio))
{
	struct raid_bdev *r = rio->r;

	if (!r->bm) {
		next(rio);
		return;
	}
	rio->region = member_row_of(rio) / r->region_rows;
	atomic_fetch_add(&r->bm_inflight[rio->region], 1);
	rio->bm_held = true;
	if (bit_get(r->bm_dirty, rio->region)) {
		next(rio);
		return;
	}
	rio->after = next;
	fb_reactor_send(r->bm->r0, request_msg, rio);
}

void raid_bm_end(struct raid_io *rio)
{
	if (rio->bm_held) {
		rio->bm_held = false;
		atomic_fetch_sub(&rio->r->bm_inflight[rio->region], 1);
	}
}

static void cleaner_tick(struct fb_timer *t)
{
	struct raid_bm_owner *o = (struct raid_bm_owner *)((char *)t -
		offsetof(struct raid_bm_owner, timer));
	struct raid_bdev *r = o->r;

	if (o->stopping)
		return;
	fb_timer_arm(o->r0, &o->timer, BM_TICK_NS);
	if (o->writing)
		return;
	o->nclean = 0;
	for (uint64_t g = 0; g < r->nregions && o->nclean < BM_CLEAN_MAX; g++) {
		if (!(o->want[g / 8] & (1u << (g % 8))))
			continue;
		if (atomic_load(&r->bm_inflight[g])) {
			o->idle[g] = 0;
			continue;
		}
		if (++o->idle[g] < 2)
			continue;
		atomic_fetch_and(&r->bm_dirty[g / 8], (uint8_t)~(1u << (g % 8)));
		if (atomic_load(&r->bm_inflight[g])) {
			atomic_fetch_or(&r->bm_dirty[g / 8], (uint8_t)(1u << (g % 8)));
			continue;
		}
		o->want[g / 8] &= (uint8_t)~(1u << (g % 8));
		o->idle[g] = 0;
		o->clean_list[o->nclean++] = g;
	}
	if (o->nclean) {
		o->writing = true;
		cleaner_write_crc(o);
	}
}

static void owner_start(void *arg)
{
	struct raid_bm_owner *o = arg;

	fb_timer_init(&o->timer, cleaner_tick);
	fb_timer_arm(o->r0, &o->timer, BM_TICK_NS);
}

static void owner_stop(void *arg)
{
	struct raid_bm_owner *o = arg;

	o->stopping = true;
	fb_timer_cancel(&o->timer);
}

struct busy_arg {
	struct raid_bm_owner *o;
	bool busy;
};

static void owner_busy(void *arg)
{
	struct busy_arg *b = arg;

	b->busy = b->o->writing;
}

int raid_bm_init(struct raid_bdev *r)
{
	struct raid_bm_owner *o;
	uint64_t rows = r->rows;

	if (!r->superblock || r->level == RAID_L0)
		return 0;
	r->region_rows = (rows + RAID_BITMAP_BITS - 1) / RAID_BITMAP_BITS;
	if (r->region_rows == 0)
		r->region_rows = 1;
	r->nregions = (rows + r->region_rows - 1) / r->region_rows;
	o = calloc(1, sizeof(*o));
	r->bm_dirty = calloc((r->nregions + 7) / 8, 1);
	r->bm_inflight = calloc(r->nregions, sizeof(*r->bm_inflight));
	if (!o || !r->bm_dirty || !r->bm_inflight)
		goto nomem;
	o->r = r;
	o->r0 = fb_engine_get_reactor(r->e, 0);
	o->want = calloc((r->nregions + 7) / 8, 1);
	o->idle = calloc(r->nregions, 1);
	o->page_len = page_blocks(r) * r->block_size;
	o->page = aligned_alloc(4096, (o->page_len + 4095) & ~(size_t)4095);
	if (!o->want || !o->idle || !o->page)
		goto nomem;
	r->bm = o;
	return 0;
nomem:
	if (o) {
		free(o->want);
		free(o->idle);
		free(o->page);
		free(o);
	}
	free(r->bm_dirty);
	free(r->bm_inflight);
	r->bm_dirty = NULL;
	r->bm_inflight = NULL;
	return -ENOMEM;
}

/* Control thread: the cleaner starts; writes may ask for bits. */
void raid_bm_start(struct raid_bdev *r)
{
	if (!r->bm || r->bm->started)
		return;
	r->bm->started = true;
	fb_reactor_run_sync(r->bm->r0, owner_start, r->bm);
}

/* Control thread (no array I/O in flight): no more bitmap writes from
 * reactor 0. */
void raid_bm_stop(struct raid_bdev *r)
{
	struct busy_arg b = {.o = r->bm};
	uint64_t deadline = fb_now_ns() + 30ull * 1000000000ull;

	if (!r->bm || !r->bm->started)
		return;
	r->bm->started = false;
	fb_reactor_run_sync(r->bm->r0, owner_stop, r->bm);
	do {
		fb_reactor_run_sync(r->bm->r0, owner_busy, &b);
		if (b.busy)
			usleep(1000);
	} while (b.busy && fb_now_ns() < deadline);
}

void raid_bm_fini(struct raid_bdev *r)
{
	struct raid_bm_owner *o = r->bm;

	if (!o)
		return;
	raid_bm_stop(r);
	free(o->want);
	free(o->idle);
	free(o->page);
	free(o->crcbuf);
	free(o);
	r->bm = NULL;
	free(r->bm_dirty);
	free(r->bm_inflight);
	r->bm_dirty = NULL;
	r->bm_inflight = NULL;
}

/* ------------------------------------------------------ control paths */

int raid_bm_flush_all(struct raid_bdev *r, bool clear)
{
	uint64_t per = r->block_size / 4, tblocks = (r->member_blocks + per - 1) / per;
	size_t len = (size_t)(tblocks * r->block_size);
	uint8_t *buf;
	int rc = 0;

	if (!r->superblock || r->level == RAID_L0)
		return 0;
	raid_bm_stop(r);
	buf = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; i < r->n && !rc; i++) {
		if (atomic_load(&r->m[i].state) != MEMBER_ONLINE || !r->m[i].desc)
			continue;
		crc_fill(r, i, buf, 0, tblocks);
		rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_WRITE, buf, raid_crc_offset_blocks(r),
				     tblocks, FB_IO_FLAG_FUA);
		if (!rc && clear) {
			memset(buf, 0, page_blocks(r) * r->block_size);
			rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_WRITE, buf, page_blocks(r),
					     page_blocks(r), FB_IO_FLAG_FUA);
		}
	}
	free(buf);
	return rc;
}

/* Control thread: member i's whole CRC table to disk. */
int raid_crc_store(struct raid_bdev *r, unsigned i)
{
	uint64_t per = r->block_size / 4, tblocks = (r->member_blocks + per - 1) / per;
	size_t len = (size_t)(tblocks * r->block_size);
	uint8_t *buf;
	int rc;

	if (!r->superblock || !r->m[i].crc || !r->m[i].desc)
		return 0;
	buf = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
	if (!buf)
		return -ENOMEM;
	crc_fill(r, i, buf, 0, tblocks);
	rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_WRITE, buf, raid_crc_offset_blocks(r), tblocks,
			     FB_IO_FLAG_FUA);
	free(buf);
	return rc;
}

int raid_crc_load(struct raid_bdev *r, unsigned i)
{
	uint64_t per = r->block_size / 4, tblocks = (r->member_blocks + per - 1) / per;
	uint32_t *buf = aligned_alloc(4096, ((size_t)(tblocks * r->block_size) + 4095) & ~(size_t)4095);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_READ, buf, raid_crc_offset_blocks(r), tblocks, 0);
	for (uint64_t b = 0; !rc && b < r->member_blocks; b++)
		atomic_store_explicit(&r->m[i].crc[b], buf[b], memory_order_relaxed);
	free(buf);
	return rc;
}

/* Makes one dirty row consistent: parity from data (RAID5) or every copy
 * from the first usable one (mirrors); recomputes the CRCs. */
static int resync_row(struct raid_bdev *r, uint64_t row, uint8_t *buf)
{
	size_t slen = (size_t)r->strip_blocks * r->block_size;
	uint64_t moff = r->data_offset + row * r->strip_blocks;
	int rc = 0;

	for (unsigned i = 0; i < r->n && !rc; i++)
		if (atomic_load(&r->m[i].state) == MEMBER_ONLINE)
			rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_READ, buf + slen * i, moff,
					     r->strip_blocks, 0);
	if (rc)
		return rc;
	if (r->level == RAID_L5) {
		unsigned p = raid5_parity_member(r, row);
		void *v[RAID_MAX_MEMBERS + 1];
		unsigned nv = 0;

		for (unsigned i = 0; i < r->n; i++)
			if (atomic_load(&r->m[i].state) != MEMBER_ONLINE)
				return 0;   /* degraded: nothing to recompute from */
		for (unsigned k = 0; k < r->n - 1; k++)
			v[nv++] = buf + slen * raid5_data_member(r, row, k);
		v[nv++] = buf + slen * p;
		xor_gen((int)nv, (int)slen, v);
		rc = fb_bdev_io_sync(r->m[p].desc, FB_IO_WRITE, buf + slen * p, moff, r->strip_blocks,
				     FB_IO_FLAG_FUA);
	} else {
		for (unsigned g = 0; g < r->ngroups && !rc; g++) {
			unsigned first = r->level == RAID_L1 ? 0 : g * r->ncopies, src = r->n;

			for (unsigned k = 0; k < r->ncopies; k++)
				if (src == r->n && atomic_load(&r->m[first + k].state) == MEMBER_ONLINE)
					src = first + k;
			for (unsigned k = 0; k < r->ncopies && src < r->n && !rc; k++) {
				unsigned m = first + k;

				if (m == src || atomic_load(&r->m[m].state) != MEMBER_ONLINE)
					continue;
				memcpy(buf + slen * m, buf + slen * src, slen);
				rc = fb_bdev_io_sync(r->m[m].desc, FB_IO_WRITE, buf + slen * m, moff,
						     r->strip_blocks, FB_IO_FLAG_FUA);
			}
		}
	}
	for (unsigned i = 0; i < r->n && !rc; i++) {
		struct iovec one = {buf + slen * i, slen};

		if (atomic_load(&r->m[i].state) == MEMBER_ONLINE)
			raid_crc_update_iov(r, i, row * r->strip_blocks, r->strip_blocks, &one, 1);
	}
	return rc;
}

int raid_bm_resync(struct raid_bdev *r, uint64_t *regions, struct fb_err *err)
{
	size_t plen = page_blocks(r) * r->block_size;
	size_t slen = (size_t)r->strip_blocks * r->block_size;
	uint8_t *page = aligned_alloc(4096, (plen + 4095) & ~(size_t)4095);
	uint8_t *bits = calloc(1, plen);
	uint8_t *buf = aligned_alloc(4096, (slen * r->n + 4095) & ~(size_t)4095);
	int rc = 0;

	*regions = 0;
	if (!page || !bits || !buf) {
		rc = -ENOMEM;
		fb_err_set(err, "out of memory resyncing raid '%s'", r->name);
		goto out;
	}
	/* A bit set on any member counts. */
	for (unsigned i = 0; i < r->n && !rc; i++) {
		if (atomic_load(&r->m[i].state) != MEMBER_ONLINE)
			continue;
		rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_READ, page, page_blocks(r), page_blocks(r), 0);
		for (size_t k = 0; !rc && k < plen; k++)
			bits[k] |= page[k];
	}
	for (uint64_t g = 0; !rc && g < r->nregions; g++) {
		if (!(bits[g / 8] & (1u << (g % 8))))
			continue;
		(*regions)++;
		for (uint64_t row = g * r->region_rows; !rc && row < (g + 1) * r->region_rows &&
		     row < r->rows; row++)
			rc = resync_row(r, row, buf);
	}
	if (rc) {
		fb_err_set(err, "resync of raid '%s' failed: %s", r->name, strerror(-rc));
		goto out;
	}
	/* New CRCs and a clear bitmap on disk. */
	rc = raid_bm_flush_all(r, true);
	if (rc)
		fb_err_set(err, "writing the metadata of raid '%s' failed: %s", r->name, strerror(-rc));
out:
	free(page);
	free(bits);
	free(buf);
	return rc;
}
