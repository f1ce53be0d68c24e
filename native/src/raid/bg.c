/* Background walks over every row: rebuild onto a replacement member, and
 * scrub (check every block's CRC32C and parity or copies; repair when
 * safe_read is repair). One walk per array at a time, on its own control
 * thread with blocking metadata I/O, holding each row's lock while it
 * works on it, so array writes to that row wait and writes elsewhere go on.
 * A rate limit in KiB/s paces it by sleeping between rows. */
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <isa-l/raid.h>

#include "raid.h"

struct ctl_wait {
	struct raid_lock_waiter w;
	sem_t sem;
};

static void ctl_granted(struct raid_lock_waiter *w)
{
	sem_post(&((struct ctl_wait *)(void *)w)->sem);
}

static void row_lock(struct raid_bdev *r, struct ctl_wait *cw, uint64_t key)
{
	cw->w.key = key;
	cw->w.r = fb_engine_get_reactor(r->e, 0);
	cw->w.granted = ctl_granted;
	if (!raid_lock_try(r, &cw->w))
		sem_wait(&cw->sem);
}

static int mio(struct raid_bdev *r, unsigned i, enum fb_io_type t, void *buf, uint64_t row)
{
	int rc;

	atomic_fetch_add(&r->m[i].inflight, 1);
	rc = r->m[i].desc ? fb_bdev_io_sync(r->m[i].desc, t, buf, r->data_offset + row * r->strip_blocks,
					    r->strip_blocks, t == FB_IO_WRITE ? FB_IO_FLAG_FUA : 0)
			  : -ENODEV;
	atomic_fetch_sub(&r->m[i].inflight, 1);
	if (rc)
		raid_member_fail(r, i, t == FB_IO_WRITE ? "write failed" : "read failed");
	return rc;
}

static bool crc_ok(struct raid_bdev *r, unsigned i, uint64_t row, void *buf)
{
	struct iovec one = {buf, (size_t)r->strip_blocks * r->block_size};

	return raid_crc_check_iov(r, i, row * r->strip_blocks, r->strip_blocks, &one, 1) < 0;
}

static void crc_set(struct raid_bdev *r, unsigned i, uint64_t row, void *buf)
{
	struct iovec one = {buf, (size_t)r->strip_blocks * r->block_size};

	raid_crc_update_iov(r, i, row * r->strip_blocks, r->strip_blocks, &one, 1);
}

static void scrub_note(struct raid_bdev *r, unsigned i, uint64_t row, bool fixed)
{
	atomic_fetch_add(&r->bg.found, 1);
	atomic_fetch_add(&r->m[i].corrupt_found, 1);
	if (fixed) {
		atomic_fetch_add(&r->bg.repaired, 1);
		atomic_fetch_add(&r->m[i].repaired, r->strip_blocks);
		atomic_fetch_add(&r->repairs, 1);
	}
	raid_notify(r, fixed ? "raid_safe_read_repair" : "raid_scrub_mismatch",
		    "\"member\":\"%s\",\"member_lba\":%llu,\"blocks\":%u,\"action\":\"%s\"",
		    r->m[i].name ? r->m[i].name : "", (unsigned long long)(row * r->strip_blocks),
		    r->strip_blocks, fixed ? "rewritten_by_scrub" : "found_by_scrub");
}

/* One RAID5 row, locked: rebuild `target`, or scrub. */
static int walk_raid5(struct raid_bdev *r, uint64_t row, int kind, int target, uint8_t *buf)
{
	size_t slen = (size_t)r->strip_blocks * r->block_size;
	void *v[RAID_MAX_MEMBERS + 1];
	unsigned lost = r->n, nlost = 0, nv = 0;
	bool repair = atomic_load(&r->safe_read) == SAFE_READ_REPAIR;

	for (unsigned i = 0; i < r->n; i++) {
		if ((int)i == target || !raid_member_usable(r, i, row) ||
		    mio(r, i, FB_IO_READ, buf + slen * i, row)) {
			lost = i;
			nlost++;
		}
	}
	if (nlost > 1)
		return -EIO;
	if (kind == 1) {
		for (unsigned i = 0; i < r->n; i++)
			if (i != lost)
				v[nv++] = buf + slen * i;
		v[nv++] = buf + slen * lost;
		xor_gen((int)nv, (int)slen, v);
		crc_set(r, lost, row, buf + slen * lost);
		return mio(r, lost, FB_IO_WRITE, buf + slen * lost, row);
	}
	if (nlost)
		return 0;  /* degraded: nothing to compare */
	for (unsigned i = 0; i < r->n; i++) {
		if (r->m[i].crc && !crc_ok(r, i, row, buf + slen * i)) {
			nv = 0;
			for (unsigned k = 0; k < r->n; k++)
				if (k != i)
					v[nv++] = buf + slen * k;
			v[nv++] = buf + slen * i;
			xor_gen((int)nv, (int)slen, v);
			if (repair && crc_ok(r, i, row, buf + slen * i)) {
				scrub_note(r, i, row, mio(r, i, FB_IO_WRITE, buf + slen * i, row) == 0);
			} else {
				scrub_note(r, i, row, false);
			}
			return 0;
		}
	}
	for (unsigned i = 0; i < r->n; i++)
		v[i] = buf + slen * i;
	if (xor_check((int)r->n, (int)slen, v) != 0) {
		unsigned p = raid5_parity_member(r, row);

		atomic_fetch_add(&r->verify_mismatches, 1);
		scrub_note(r, p, row, false);
	}
	return 0;
}

/* One mirror row of group g, locked. */
static int walk_mirror(struct raid_bdev *r, uint64_t row, unsigned g, int kind, int target,
		       uint8_t *buf)
{
	size_t slen = (size_t)r->strip_blocks * r->block_size;
	unsigned first = r->level == RAID_L1 ? 0 : g * r->ncopies, good = r->n;
	bool ok[RAID_MAX_MEMBERS] = {false};
	bool repair = atomic_load(&r->safe_read) == SAFE_READ_REPAIR;

	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = first + k;

		if ((int)m == target || !raid_member_usable(r, m, row))
			continue;
		if (mio(r, m, FB_IO_READ, buf + slen * m, row))
			continue;
		ok[m] = !r->m[m].crc || crc_ok(r, m, row, buf + slen * m);
		if (ok[m] && good == r->n)
			good = m;
	}
	if (good == r->n)
		return kind == 1 ? -EIO : 0;
	if (kind == 1) {
		if (target < (int)first || target >= (int)(first + r->ncopies))
			return 0;
		crc_set(r, (unsigned)target, row, buf + slen * good);
		return mio(r, (unsigned)target, FB_IO_WRITE, buf + slen * good, row);
	}
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = first + k;

		if (m == good || !raid_member_usable(r, m, row) || !r->m[m].desc)
			continue;
		if (ok[m] && !memcmp(buf + slen * m, buf + slen * good, slen))
			continue;
		if (!ok[m] || !r->m[m].crc) {
			scrub_note(r, m, row, repair && ok[good] &&
				   mio(r, m, FB_IO_WRITE, buf + slen * good, row) == 0);
		}
	}
	return 0;
}

static void *bg_main(void *arg)
{
	struct raid_bdev *r = arg;
	struct raid_bg *bg = &r->bg;
	size_t slen = (size_t)r->strip_blocks * r->block_size;
	uint8_t *buf = aligned_alloc(4096, slen * r->n);
	struct ctl_wait cw;
	uint64_t start = fb_now_ns(), bytes = 0;
	unsigned last_pct = 0;
	int rc = 0;

	sem_init(&cw.sem, 0, 0);
	if (!buf)
		rc = -ENOMEM;
	for (uint64_t row = atomic_load(&bg->row); !rc && row < r->rows; row++) {
		if (atomic_load(&bg->stop)) {
			rc = -ECANCELED;
			break;
		}
		if (r->level == RAID_L5) {
			row_lock(r, &cw, row);
			rc = walk_raid5(r, row, bg->kind, bg->member, buf);
			if (bg->kind == 1 && !rc)
				atomic_store(&r->m[bg->member].rebuild_row, row + 1);
			raid_lock_release(r, row);
		} else {
			for (unsigned g = 0; g < r->ngroups && !rc; g++) {
				row_lock(r, &cw, row * r->ngroups + g);
				rc = walk_mirror(r, row, g, bg->kind, bg->member, buf);
				/* Advance while the target's group is still locked: a
				 * write to it after the unlock must include the target. */
				if (bg->kind == 1 && !rc &&
				    g == (r->level == RAID_L1 ? 0u : (unsigned)bg->member / r->ncopies))
					atomic_store(&r->m[bg->member].rebuild_row, row + 1);
				raid_lock_release(r, row * r->ngroups + g);
			}
		}
		atomic_store(&bg->row, row + 1);
		bytes += slen * r->n;
		if (bg->rate_kbps) {
			uint64_t due = start + bytes * 1000000ull / (bg->rate_kbps * 1024) * 1000ull;
			uint64_t now = fb_now_ns();

			if (due > now) {
				struct timespec ts = {(time_t)((due - now) / 1000000000ull),
						      (long)((due - now) % 1000000000ull)};

				nanosleep(&ts, NULL);
			}
		}
		unsigned pct = (unsigned)((row + 1) * 100 / r->rows);

		if (pct / 10 != last_pct / 10) {
			last_pct = pct;
			raid_notify(r, bg->kind == 1 ? "raid_rebuild_progress" : "raid_scrub_progress",
				    "\"member\":\"%s\",\"percent\":%u",
				    bg->kind == 1 ? r->m[bg->member].name : "", pct);
		}
	}
	free(buf);
	sem_destroy(&cw.sem);
	bg->result = rc;
	if (bg->kind == 1) {
		if (!rc)
			rc = raid_crc_store(r, (unsigned)bg->member);
		if (!rc) {
			atomic_store(&r->m[bg->member].state, MEMBER_ONLINE);
			fb_log(r->e, FB_LOG_INFO, "raid '%s': rebuild of '%s' done", r->name,
			       r->m[bg->member].name);
			raid_notify(r, "raid_rebuild_done", "\"member\":\"%s\"", r->m[bg->member].name);
		} else {
			raid_notify(r, "raid_rebuild_failed", "\"member\":\"%s\",\"error\":%d",
				    r->m[bg->member].name, rc);
		}
		raid_md_kick(r);
	} else {
		raid_notify(r, "raid_scrub_done", "\"mismatches_found\":%llu,\"repaired\":%llu,\"error\":%d",
			    (unsigned long long)atomic_load(&bg->found),
			    (unsigned long long)atomic_load(&bg->repaired), rc);
	}
	atomic_store(&bg->done, true);
	return NULL;
}

/* ctl_mu held. */
int raid_bg_start(struct raid_bdev *r, int kind, int member, uint64_t rate_kbps,
		  struct fb_err *err)
{
	if (r->bg_active && !atomic_load(&r->bg.done)) {
		fb_err_set(err, "raid '%s' is already running a %s; stop it first or wait",
			   r->name, r->bg.kind == 1 ? "rebuild" : "scrub");
		return -EBUSY;
	}
	if (r->bg_active) {
		pthread_join(r->bg_thread, NULL);
		r->bg_active = false;
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
	if (pthread_create(&r->bg_thread, NULL, bg_main, r)) {
		fb_err_set(err, "cannot start a thread for the %s of raid '%s'",
			   kind == 1 ? "rebuild" : "scrub", r->name);
		return -ENOMEM;
	}
	r->bg_active = true;
	return 0;
}

void raid_bg_stop(struct raid_bdev *r)
{
	if (!r->bg_active)
		return;
	atomic_store(&r->bg.stop, true);
	pthread_join(r->bg_thread, NULL);
	r->bg_active = false;
}

/* Waits for a walk to finish on its own (control thread). */
void raid_bg_join(struct raid_bdev *r)
{
	if (!r->bg_active)
		return;
	pthread_join(r->bg_thread, NULL);
	r->bg_active = false;
}
