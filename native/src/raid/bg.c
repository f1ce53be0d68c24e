/* Background walks over every row: rebuild onto a replacement member, and
 * scrub (check every block's CRC32C and parity or copies; repair when
 * safe_read is repair). One walk per array at a time, on reactor 0 (where
 * the array keeps a channel of every member, r0ch): it takes each row's
 * lock like an array write (a waiter, no blocking), reads the row's strips,
 * writes what it rebuilt or repaired, then releases the row, so array
 * writes to that row wait and writes elsewhere go on. The rate limit in
 * KiB/s is a reactor timer between rows; progress is a notification every
 * 10%. A rebuild's end stores the member's CRC table (blocking I/O) on the
 * array's metadata thread. Control threads start a walk with a message and
 * wait for `done` to stop or join it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/raid.h>

#include "raid.h"

#define BG_REBUILD 1

static void walk_step(struct raid_bdev *r);
static void row_done(struct raid_bdev *r, int rc);

static size_t slen_of(const struct raid_bdev *r)
{
	return (size_t)r->strip_blocks * r->block_size;
}

static uint8_t *strip_buf(struct raid_bdev *r, unsigned i)
{
	return r->bg.w.buf + slen_of(r) * i;
}

/* The first block of member i's strip (in buf) that fails its CRC, or -1. */
static int64_t crc_bad_at(struct raid_bdev *r, unsigned i, uint64_t row, void *buf)
{
	struct iovec one = {buf, slen_of(r)};

	return raid_crc_check_iov(r, i, row * r->strip_blocks, r->strip_blocks, &one, 1);
}

static bool crc_ok(struct raid_bdev *r, unsigned i, uint64_t row, void *buf)
{
	return crc_bad_at(r, i, row, buf) < 0;
}

static void crc_set(struct raid_bdev *r, unsigned i, uint64_t row, void *buf)
{
	struct iovec one = {buf, slen_of(r)};

	raid_crc_update_iov(r, i, row * r->strip_blocks, r->strip_blocks, &one, 1);
}

/* A strip the scrub found wrong (and rewrote, if fixed): it names the first
 * bad block `bad` (strip offset; -1 when unknown: a RAID5 parity check that
 * fails, a copy that could not be read) as member_lba and the array lba it
 * holds, like a safe-read repair, and the strip as strip_member_lba + blocks. */
static void scrub_note(struct raid_bdev *r, unsigned i, uint64_t row, bool fixed, int64_t bad)
{
	uint64_t s0 = row * r->strip_blocks, lba = 0;
	char at[96] = "";

	atomic_fetch_add(&r->bg.found, 1);
	atomic_fetch_add(&r->m[i].corrupt_found, 1);
	if (fixed) {
		atomic_fetch_add(&r->bg.repaired, 1);
		atomic_fetch_add(&r->m[i].repaired, r->strip_blocks);
		atomic_fetch_add(&r->repairs, 1);
	}
	if (bad >= 0 && raid_array_lba(r, row, r->bg.w.group, i, (uint64_t)bad, &lba))
		snprintf(at, sizeof(at), "\"lba\":%llu,", (unsigned long long)lba);
	else if (bad >= 0)
		snprintf(at, sizeof(at), "\"parity\":true,");
	raid_notify(r, fixed ? "raid_safe_read_repair" : "raid_scrub_mismatch",
		    "\"member\":\"%s\",%s\"member_lba\":%llu,\"strip_member_lba\":%llu,\"blocks\":%u,"
		    "\"action\":\"%s\"",
		    r->m[i].name ? r->m[i].name : "", at,
		    (unsigned long long)(s0 + (bad >= 0 ? (uint64_t)bad : 0)), (unsigned long long)s0,
		    r->strip_blocks, fixed ? "rewritten_by_scrub" : "found_by_scrub");
}

/* ------------------------------------------------------ member I/O */

static void io_done(struct fb_bdev_io *bio, int status, void *arg);

static void io_submit(void *arg)
{
	struct raid_bg_io *io = arg;
	struct raid_bdev *r = io->r;
	struct fb_io_channel *ch = r->r0ch[io->member];
	struct fb_bdev_desc *desc = r->m[io->member].desc;
	uint64_t off = r->data_offset + r->bg.w.row * r->strip_blocks;
	int rc = -ENODEV;

	if (ch && desc)
		rc = io->type == FB_IO_READ
			     ? fb_bdev_readv_blocks(desc, ch, &io->iov, 1, off, r->strip_blocks, io_done, io)
			     : fb_bdev_writev_blocks(desc, ch, &io->iov, 1, off, r->strip_blocks,
						     FB_IO_FLAG_FUA, io_done, io);
	if (rc == -ENOMEM) {
		io->wait.cb = io_submit;
		io->wait.arg = io;
		fb_io_channel_queue_wait(ch, &io->wait);
		return;
	}
	if (rc)
		io_done(NULL, rc, io);
}

static void io_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct raid_bg_io *io = arg;
	struct raid_bdev *r = io->r;

	if (bio)
		fb_bdev_free_io(bio);
	atomic_fetch_sub(&r->m[io->member].inflight, 1);
	io->status = status;
	if (status)
		raid_member_fail(r, io->member, io->type == FB_IO_WRITE ? "write failed" : "read failed");
	if (--r->bg.w.outstanding == 0)
		r->bg.w.after(r);
}

static void io_add(struct raid_bdev *r, unsigned member, enum fb_io_type type, void *buf)
{
	struct raid_bg_io *io = &r->bg.w.io[r->bg.w.nio++];

	io->r = r;
	io->member = member;
	io->type = type;
	io->status = 1;
	io->note = false;
	io->bad = -1;
	io->iov.iov_base = buf;
	io->iov.iov_len = slen_of(r);
}

/* Sends every I/O added; after(r) runs when all have completed. */
static void io_run(struct raid_bdev *r, void (*after)(struct raid_bdev *r))
{
	struct raid_bg_walk *w = &r->bg.w;

	w->after = after;
	w->outstanding = w->nio + 1;  /* guard: none completes `after` early */
	for (unsigned k = 0; k < w->nio; k++) {
		atomic_fetch_add(&r->m[w->io[k].member].inflight, 1);
		io_submit(&w->io[k]);
	}
	if (--w->outstanding == 0)
		after(r);
}

/* Status of the read of member m in this step: 0 read, else not usable. */
static int read_status(struct raid_bdev *r, unsigned m)
{
	for (unsigned k = 0; k < r->bg.w.nio; k++)
		if (r->bg.w.io[k].member == m)
			return r->bg.w.io[k].status;
	return -ENODEV;
}

/* -------------------------------------------------------- RAID5 */

static void raid5_rebuild_written(struct raid_bdev *r)
{
	row_done(r, r->bg.w.io[0].status);
}

static void raid5_scrub_written(struct raid_bdev *r)
{
	struct raid_bg_io *io = &r->bg.w.io[0];

	scrub_note(r, io->member, r->bg.w.row, io->status == 0, io->bad);
	row_done(r, 0);
}

static void raid5_read(struct raid_bdev *r)
{
	struct raid_bg_walk *w = &r->bg.w;
	size_t slen = slen_of(r);
	void *v[RAID_MAX_MEMBERS + 1];
	unsigned lost = r->n, nlost = 0, nv = 0;
	bool repair = atomic_load(&r->safe_read) == SAFE_READ_REPAIR;

	for (unsigned i = 0; i < r->n; i++) {
		if (read_status(r, i)) {
			lost = i;
			nlost++;
		}
	}
	if (nlost > 1) {
		row_done(r, -EIO);
		return;
	}
	if (r->bg.kind == BG_REBUILD) {
		for (unsigned i = 0; i < r->n; i++)
			if (i != lost)
				v[nv++] = strip_buf(r, i);
		v[nv++] = strip_buf(r, lost);
		xor_gen((int)nv, (int)slen, v);
		crc_set(r, lost, w->row, strip_buf(r, lost));
		w->nio = 0;
		io_add(r, lost, FB_IO_WRITE, strip_buf(r, lost));
		io_run(r, raid5_rebuild_written);
		return;
	}
	if (nlost) {
		row_done(r, 0);  /* degraded: nothing to compare */
		return;
	}
	for (unsigned i = 0; i < r->n; i++) {
		int64_t bad = r->m[i].crc ? crc_bad_at(r, i, w->row, strip_buf(r, i)) : -1;

		if (bad >= 0) {
			nv = 0;
			for (unsigned k = 0; k < r->n; k++)
				if (k != i)
					v[nv++] = strip_buf(r, k);
			v[nv++] = strip_buf(r, i);
			xor_gen((int)nv, (int)slen, v);
			if (repair && crc_ok(r, i, w->row, strip_buf(r, i))) {
				w->nio = 0;
				io_add(r, i, FB_IO_WRITE, strip_buf(r, i));
				w->io[0].bad = bad;
				io_run(r, raid5_scrub_written);
				return;
			}
			scrub_note(r, i, w->row, false, bad);
			row_done(r, 0);
			return;
		}
	}
	for (unsigned i = 0; i < r->n; i++)
		v[i] = strip_buf(r, i);
	if (xor_check((int)r->n, (int)slen, v) != 0) {
		atomic_fetch_add(&r->verify_mismatches, 1);
		scrub_note(r, raid5_parity_member(r, w->row), w->row, false, -1);
	}
	row_done(r, 0);
}

/* ------------------------------------------------------- mirrors */

static unsigned group_first(const struct raid_bdev *r, unsigned g)
{
	return r->level == RAID_L1 ? 0 : g * r->ncopies;
}

static void mirror_written(struct raid_bdev *r)
{
	struct raid_bg_walk *w = &r->bg.w;
	int rc = 0;

	for (unsigned k = 0; k < w->nio; k++) {
		if (w->io[k].note)
			scrub_note(r, w->io[k].member, w->row, w->io[k].status == 0, w->io[k].bad);
		else if (w->io[k].status)
			rc = w->io[k].status;  /* the rebuild's write */
	}
	row_done(r, r->bg.kind == BG_REBUILD ? rc : 0);
}

/* The first of n blocks where two strips differ, or -1. */
static int64_t first_diff(const uint8_t *a, const uint8_t *b, uint32_t bs, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		if (memcmp(a + (size_t)k * bs, b + (size_t)k * bs, bs))
			return k;
	return -1;
}

static void mirror_read(struct raid_bdev *r)
{
	struct raid_bg_walk *w = &r->bg.w;
	size_t slen = slen_of(r);
	unsigned first = group_first(r, w->group), good = r->n, nread = w->nio;
	bool ok[RAID_MAX_MEMBERS] = {false};
	int64_t bad[RAID_MAX_MEMBERS];
	bool repair = atomic_load(&r->safe_read) == SAFE_READ_REPAIR;
	struct raid_bg_io reads[RAID_MAX_MEMBERS];
	int target = r->bg.member;

	memcpy(reads, w->io, sizeof(reads[0]) * nread);
	for (unsigned m = 0; m < r->n; m++)
		bad[m] = -1;  /* unread copies: no block to name */
	for (unsigned k = 0; k < nread; k++) {
		unsigned m = reads[k].member;

		if (reads[k].status)
			continue;
		bad[m] = r->m[m].crc ? crc_bad_at(r, m, w->row, strip_buf(r, m)) : -1;
		ok[m] = bad[m] < 0;
		if (ok[m] && (good == r->n || m < good))
			good = m;
	}
	if (good == r->n) {
		row_done(r, r->bg.kind == BG_REBUILD ? -EIO : 0);
		return;
	}
	w->nio = 0;
	if (r->bg.kind == BG_REBUILD) {
		crc_set(r, (unsigned)target, w->row, strip_buf(r, good));
		io_add(r, (unsigned)target, FB_IO_WRITE, strip_buf(r, good));
		io_run(r, mirror_written);
		return;
	}
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = first + k;

		if (m == good || !raid_member_usable(r, m, w->row) || !r->m[m].desc)
			continue;
		if (ok[m] && !memcmp(strip_buf(r, m), strip_buf(r, good), slen))
			continue;
		if (ok[m] && r->m[m].crc)
			continue;
		if (ok[m])
			bad[m] = first_diff(strip_buf(r, m), strip_buf(r, good), r->block_size, r->strip_blocks);
		if (repair && ok[good]) {
			io_add(r, m, FB_IO_WRITE, strip_buf(r, good));
			w->io[w->nio - 1].note = true;
			w->io[w->nio - 1].bad = bad[m];
		} else {
			scrub_note(r, m, w->row, false, bad[m]);
		}
	}
	io_run(r, mirror_written);
}

/* ------------------------------------------------------- the walk */

static uint64_t lock_key(struct raid_bdev *r)
{
	return r->level == RAID_L5 ? r->bg.w.row : r->bg.w.row * r->ngroups + r->bg.w.group;
}

/* Row (or mirror group) locked: read what it needs. */
static void walk_locked(struct raid_bdev *r)
{
	struct raid_bg_walk *w = &r->bg.w;
	int target = r->bg.kind == BG_REBUILD ? r->bg.member : -1;

	w->nio = 0;
	if (r->level == RAID_L5) {
		for (unsigned i = 0; i < r->n; i++)
			if ((int)i != target && raid_member_usable(r, i, w->row))
				io_add(r, i, FB_IO_READ, strip_buf(r, i));
		io_run(r, raid5_read);
		return;
	}
	unsigned first = group_first(r, w->group);

	/* A rebuild has nothing to do in a group without its target. */
	if (target >= 0 && (target < (int)first || target >= (int)(first + r->ncopies))) {
		row_done(r, 0);
		return;
	}
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = first + k;

		if ((int)m != target && raid_member_usable(r, m, w->row))
			io_add(r, m, FB_IO_READ, strip_buf(r, m));
	}
	io_run(r, mirror_read);
}

static void lock_granted(struct raid_lock_waiter *lw)
{
	walk_locked((struct raid_bdev *)((char *)lw - offsetof(struct raid_bdev, bg.w.lw)));
}

static void walk_end(struct raid_bdev *r, int rc)
{
	struct raid_bg *bg = &r->bg;

	bg->result = rc;
	if (bg->kind == BG_REBUILD && rc == 0 && r->md_started) {
		/* The CRC table store blocks: the metadata thread ends it. */
		pthread_mutex_lock(&r->md_mu);
		r->md_rebuilt = true;
		pthread_cond_signal(&r->md_cv);
		pthread_mutex_unlock(&r->md_mu);
		return;
	}
	if (bg->kind == BG_REBUILD) {
		raid_notify(r, "raid_rebuild_failed", "\"member\":\"%s\",\"error\":%d",
			    r->m[bg->member].name, rc ? rc : -ENOTSUP);
		raid_md_kick(r);
	} else {
		raid_notify(r, "raid_scrub_done", "\"mismatches_found\":%llu,\"repaired\":%llu,\"error\":%d",
			    (unsigned long long)atomic_load(&bg->found),
			    (unsigned long long)atomic_load(&bg->repaired), rc);
	}
	atomic_store(&bg->done, true);
}

/* Metadata thread: a rebuild walked every row. */
void raid_bg_rebuild_finish(struct raid_bdev *r)
{
	struct raid_bg *bg = &r->bg;
	int rc = raid_crc_store(r, (unsigned)bg->member);

	if (!rc) {
		atomic_store(&r->m[bg->member].state, MEMBER_ONLINE);
		fb_log(r->e, FB_LOG_INFO, "raid '%s': rebuild of '%s' done", r->name,
		       r->m[bg->member].name);
		raid_notify(r, "raid_rebuild_done", "\"member\":\"%s\"", r->m[bg->member].name);
	} else {
		raid_notify(r, "raid_rebuild_failed", "\"member\":\"%s\",\"error\":%d",
			    r->m[bg->member].name, rc);
	}
	bg->result = rc;
	raid_md_kick(r);
	atomic_store(&bg->done, true);
}

static void next_deferred(struct fb_deferred *d)
{
	walk_step((struct raid_bdev *)((char *)d - offsetof(struct raid_bdev, bg.w.next)));
}

static void pace_fired(struct fb_timer *t)
{
	walk_step((struct raid_bdev *)((char *)t - offsetof(struct raid_bdev, bg.w.pace)));
}

/* The locked row (or group) is finished with rc. */
static void row_done(struct raid_bdev *r, int rc)
{
	struct raid_bg *bg = &r->bg;
	struct raid_bg_walk *w = &bg->w;
	bool last_group = r->level == RAID_L5 || w->group + 1 == r->ngroups;

	/* Advance while the row is still locked: a write to it after the
	 * unlock must include the target. */
	if (bg->kind == BG_REBUILD && !rc &&
	    (r->level == RAID_L5 ||
	     w->group == (r->level == RAID_L1 ? 0u : (unsigned)bg->member / r->ncopies)))
		atomic_store(&r->m[bg->member].rebuild_row, w->row + 1);
	raid_lock_release(r, lock_key(r));
	if (rc) {
		walk_end(r, rc);
		return;
	}
	if (!last_group) {
		w->group++;
		fb_reactor_defer(fb_engine_get_reactor(r->e, 0), &w->next);
		return;
	}
	w->group = 0;
	w->row++;
	atomic_store(&bg->row, w->row);
	w->bytes += slen_of(r) * r->n;

	unsigned pct = (unsigned)(w->row * 100 / r->rows);

	if (pct / 10 != w->last_pct / 10) {
		w->last_pct = pct;
		raid_notify(r, bg->kind == BG_REBUILD ? "raid_rebuild_progress" : "raid_scrub_progress",
			    "\"member\":\"%s\",\"percent\":%u",
			    bg->kind == BG_REBUILD ? r->m[bg->member].name : "", pct);
	}
	if (bg->rate_kbps) {
		uint64_t due = w->start_ns + w->bytes * 1000000ull / (bg->rate_kbps * 1024) * 1000ull;
		uint64_t now = fb_now_ns();

		if (due > now) {
			fb_timer_arm(fb_engine_get_reactor(r->e, 0), &w->pace, due - now);
			return;
		}
	}
	fb_reactor_defer(fb_engine_get_reactor(r->e, 0), &w->next);
}

/* Reactor 0: the next row (or group), or the end. */
static void walk_step(struct raid_bdev *r)
{
	struct raid_bg_walk *w = &r->bg.w;

	if (atomic_load(&r->bg.stop)) {
		walk_end(r, -ECANCELED);
		return;
	}
	if (w->row >= r->rows) {
		walk_end(r, 0);
		return;
	}
	w->lw.key = lock_key(r);
	w->lw.r = fb_engine_get_reactor(r->e, 0);
	w->lw.granted = lock_granted;
	if (raid_lock_try(r, &w->lw))
		walk_locked(r);
}

static void walk_start(void *arg)
{
	struct raid_bdev *r = arg;

	r->bg.w.start_ns = fb_now_ns();
	walk_step(r);
}

/* Control thread: waits until the walk has ended (it always does: rows
 * are finite, and stop is checked between rows). */
static void wait_done(struct raid_bdev *r)
{
	while (!atomic_load(&r->bg.done))
		usleep(1000);
	free(r->bg.w.buf);
	r->bg.w.buf = NULL;
	r->bg_active = false;
}

/* ctl_mu held. */
int raid_bg_start(struct raid_bdev *r, int kind, int member, uint64_t rate_kbps,
		  struct fb_err *err)
{
	struct raid_bg_walk *w = &r->bg.w;

	if (r->bg_active && !atomic_load(&r->bg.done)) {
		fb_err_set(err, "raid '%s' is already running a %s; stop it first or wait",
			   r->name, r->bg.kind == BG_REBUILD ? "rebuild" : "scrub");
		return -EBUSY;
	}
	if (r->bg_active)
		wait_done(r);
	w->buf = aligned_alloc(4096, slen_of(r) * r->n);
	if (!w->buf) {
		fb_err_set(err, "out of memory for the %s of raid '%s'",
			   kind == BG_REBUILD ? "rebuild" : "scrub", r->name);
		return -ENOMEM;
	}
	pthread_mutex_lock(&r->info_mu);
	r->bg.kind = kind;
	r->bg.member = member;
	r->bg.rate_kbps = rate_kbps;
	pthread_mutex_unlock(&r->info_mu);
	atomic_store(&r->bg.stop, false);
	atomic_store(&r->bg.done, false);
	atomic_store(&r->bg.row, 0);
	atomic_store(&r->bg.found, 0);
	atomic_store(&r->bg.repaired, 0);
	w->row = 0;
	w->group = 0;
	w->bytes = 0;
	w->last_pct = 0;
	w->next.fn = next_deferred;
	fb_timer_init(&w->pace, pace_fired);
	r->bg_active = true;
	fb_reactor_send(fb_engine_get_reactor(r->e, 0), walk_start, r);
	return 0;
}

static void pace_cancel(void *arg)
{
	struct raid_bdev *r = arg;

	/* A walk waiting out its rate limit goes on at once, to see stop. */
	if (r->bg.w.pace.armed) {
		fb_timer_cancel(&r->bg.w.pace);
		walk_step(r);
	}
}

void raid_bg_stop(struct raid_bdev *r)
{
	if (!r->bg_active)
		return;
	atomic_store(&r->bg.stop, true);
	if (!atomic_load(&r->bg.done))
		fb_reactor_run_sync(fb_engine_get_reactor(r->e, 0), pace_cancel, r);
	wait_done(r);
}

/* Waits for a walk to finish on its own (control thread). */
void raid_bg_join(struct raid_bdev *r)
{
	if (!r->bg_active)
		return;
	wait_done(r);
}
