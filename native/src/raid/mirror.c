/* RAID0, RAID1 and RAID10 I/O. Each I/O lies in one strip (the core splits
 * on strip boundaries), so it maps to one mirror group: the copies at the
 * same member offset on each member of the group (one member for RAID0).
 *
 * Reads: off reads one copy (copy member_row % copies, so consecutive rows
 * spread over the copies), and on an I/O error the next. verify locks the
 * row, reads every copy and fails the read if they differ. repair reads one
 * copy and checks the CRC32C of each block; a mismatch is looked at again
 * with the row locked (a write in flight can make data and CRC differ for a
 * moment): every copy is read, and bad ones are rewritten from one whose
 * CRCs match. */
#include <errno.h>
#include <string.h>

#include "raid.h"

static unsigned group_first(const struct raid_bdev *r, unsigned g)
{
	return r->level == RAID_L1 ? 0 : g * r->ncopies;
}

static size_t io_bytes(const struct raid_io *rio)
{
	return (size_t)rio->num * rio->r->block_size;
}

/* Points a child at the array I/O's buffer; false when it needs more
 * iovecs than a child holds (the caller bounces through scratch). */
static bool child_user_iov(struct raid_io *rio, struct raid_child *c)
{
	int iovcnt, n;
	struct iovec *iov = fb_bdev_io_get_iovs(rio->io, &iovcnt);

	n = fb_iov_slice(iov, iovcnt, 0, io_bytes(rio), c->iov, RAID_CHILD_IOV);
	if (n < 0)
		return false;
	c->iovcnt = n;
	return true;
}

static void child_buf(struct raid_child *c, void *buf, size_t len)
{
	c->iov[0].iov_base = buf;
	c->iov[0].iov_len = len;
	c->iovcnt = 1;
}

static void mirror_map(struct raid_io *rio, unsigned *g, uint64_t *member_off)
{
	struct raid_bdev *r = rio->r;
	uint64_t s = rio->row;

	*g = (unsigned)(s % r->ngroups);
	*member_off = (s / r->ngroups) * r->strip_blocks + rio->off_in_row;
}

static void retry_cb(void *arg)
{
	struct raid_io *rio = arg;

	rio->after(rio);
}

/* No scratch memory now: run fn again when the channel frees some. */
static void park(struct raid_io *rio, void (*fn)(struct raid_io *))
{
	rio->after = fn;
	rio->wait.cb = retry_cb;
	rio->wait.arg = rio;
	fb_io_channel_queue_wait(rio->ch, &rio->wait);
}

/* ------------------------------------------------------------- writes */

static void write_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned ok = 0, g;
	uint64_t moff;
	int iovcnt, last = -EIO;
	struct iovec *iov = fb_bdev_io_get_iovs(rio->io, &iovcnt);

	mirror_map(rio, &g, &moff);
	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status == 0) {
			ok++;
		} else {
			last = rio->c[k].status;
			if (r->level != RAID_L0)
				raid_member_fail(r, rio->c[k].member, "write failed");
		}
	}
	if (ok && r->level != RAID_L0) {
		for (unsigned k = 0; k < r->ncopies; k++)
			raid_crc_update_iov(r, group_first(r, g) + k, moff, rio->num, iov, iovcnt);
	}
	if (r->level == RAID_L0)
		raid_io_finish(rio, ok == rio->nchild ? 0 : last);
	else
		raid_io_finish(rio, ok ? 0 : last);
}

static void write_start(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned g;
	uint64_t moff;
	void *bounce = NULL;

	mirror_map(rio, &g, &moff);
	rio->nchild = rio->next_child = 0;
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = group_first(r, g) + k;
		struct raid_child *c;

		if (r->level != RAID_L0 && !raid_member_writable(r, m, rio->row / r->ngroups))
			continue;
		c = raid_child_add(rio, m, FB_IO_WRITE, moff, rio->num);
		c->flags = fb_bdev_io_get_flags(rio->io);
		if (!child_user_iov(rio, c)) {
			if (!bounce) {
				int iovcnt;
				struct iovec *iov = fb_bdev_io_get_iovs(rio->io, &iovcnt);

				bounce = raid_scratch_get(rio, io_bytes(rio));
				if (!bounce) {
					park(rio, write_start);
					return;
				}
				fb_iov_to_buf(bounce, iov, iovcnt, 0, io_bytes(rio));
			}
			child_buf(c, bounce, io_bytes(rio));
		}
	}
	if (rio->nchild == 0) {
		raid_io_finish(rio, -EIO);
		return;
	}
	rio->after = write_done;
	raid_children_run(rio);
}

static void write_locked(struct raid_io *rio)
{
	raid_bm_begin(rio, write_start);
}

/* -------------------------------------------------------------- reads */

static void read_slow(struct raid_io *rio);
static void repair_done(struct raid_io *rio);

/* Fast path done: one copy read into the caller's buffer (or scratch). */
static void read_one_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	struct raid_child *c = &rio->c[0];
	unsigned g;
	uint64_t moff;
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(rio->io, &iovcnt);

	mirror_map(rio, &g, &moff);
	if (c->status) {
		if (r->level == RAID_L0) {
			raid_io_finish(rio, c->status);
			return;
		}
		raid_member_fail(r, c->member, "read failed");
		atomic_fetch_add(&r->degraded_reads, 1);
		rio->attempt++;
		raid_mirror_submit(rio);
		return;
	}
	if (rio->buf)
		fb_iov_from_buf(iov, iovcnt, 0, rio->buf, io_bytes(rio));
	if (atomic_load_explicit(&r->safe_read, memory_order_relaxed) == SAFE_READ_REPAIR &&
	    raid_crc_check_iov(r, c->member, moff, rio->num, iov, iovcnt) >= 0) {
		raid_scratch_put(rio);
		raid_io_lock(rio, read_slow);
		return;
	}
	raid_io_finish(rio, 0);
}

static void read_fast(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned g, pick = RAID_MAX_MEMBERS;
	uint64_t moff;
	struct raid_child *c;

	mirror_map(rio, &g, &moff);
	/* Spread reads over the copies by strip; skip copies that cannot serve. */
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = group_first(r, g) +
			     (unsigned)((rio->row / r->ngroups + rio->attempt + k) % r->ncopies);

		if (r->level == RAID_L0 || raid_member_usable(r, m, rio->row / r->ngroups)) {
			pick = m;
			break;
		}
	}
	if (pick == RAID_MAX_MEMBERS) {
		raid_io_finish(rio, -EIO);
		return;
	}
	rio->nchild = rio->next_child = 0;
	c = raid_child_add(rio, pick, FB_IO_READ, moff, rio->num);
	if (!child_user_iov(rio, c)) {
		void *b = raid_scratch_get(rio, io_bytes(rio));

		if (!b) {
			park(rio, read_fast);
			return;
		}
		child_buf(c, b, io_bytes(rio));
	}
	rio->after = read_one_done;
	raid_children_run(rio);
}

/* Every usable copy read into scratch (slot k at k * len): pick the answer. */
static void read_all_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	size_t len = io_bytes(rio);
	unsigned g, good = RAID_MAX_MEMBERS, nread = 0;
	uint64_t moff;
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(rio->io, &iovcnt);
	bool repair = atomic_load(&r->safe_read) == SAFE_READ_REPAIR;
	bool bad[RAID_MAX_MEMBERS] = {false};
	int64_t first_bad[RAID_MAX_MEMBERS] = {0}; /* repair: the first block whose CRC failed */

	mirror_map(rio, &g, &moff);
	for (unsigned k = 0; k < rio->nchild; k++) {
		struct raid_child *c = &rio->c[k];

		if (c->status) {
			raid_member_fail(r, c->member, "read failed");
			continue;
		}
		nread++;
		if (repair) {
			struct iovec one = {c->iov[0].iov_base, len};

			first_bad[k] = raid_crc_check_iov(r, c->member, moff, rio->num, &one, 1);
			bad[k] = first_bad[k] >= 0;
			if (!bad[k] && good == RAID_MAX_MEMBERS)
				good = k;
		} else if (good == RAID_MAX_MEMBERS) {
			good = k;
		} else if (memcmp(rio->c[good].iov[0].iov_base, c->iov[0].iov_base, len)) {
			bad[k] = true;
		}
	}
	if (nread == 0) {
		raid_io_finish(rio, -EIO);
		return;
	}
	if (!repair) {
		bool mismatch = false;

		for (unsigned k = 0; k < rio->nchild; k++)
			mismatch |= bad[k];
		if (mismatch) {
			atomic_fetch_add(&r->verify_mismatches, 1);
			fb_log(r->e, FB_LOG_ERROR, "raid '%s': copies differ at lba %llu (%llu blocks); "
			       "read failed (safe_read verify)", r->name,
			       (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io),
			       (unsigned long long)rio->num);
			raid_notify(r, "raid_safe_read_mismatch",
				    "\"member\":\"%s\",\"lba\":%llu,\"blocks\":%llu,\"action\":\"failed_read\"",
				    r->m[rio->c[good].member].name,
				    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io),
				    (unsigned long long)rio->num);
			raid_io_finish(rio, -EIO);
			return;
		}
		fb_iov_from_buf(iov, iovcnt, 0, rio->c[good].iov[0].iov_base, len);
		raid_io_finish(rio, 0);
		return;
	}
	if (good == RAID_MAX_MEMBERS) {
		atomic_fetch_add(&r->verify_mismatches, 1);
		raid_notify(r, "raid_safe_read_unrecoverable",
			    "\"lba\":%llu,\"blocks\":%llu,\"action\":\"failed_read\"",
			    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io),
			    (unsigned long long)rio->num);
		raid_io_finish(rio, -EIO);
		return;
	}
	fb_iov_from_buf(iov, iovcnt, 0, rio->c[good].iov[0].iov_base, len);
	/* Rewrite the bad copies from the good one, then complete. */
	{
		unsigned nrd = rio->nchild;
		struct raid_child rd[RAID_MAX_MEMBERS];

		memcpy(rd, rio->c, sizeof(rd[0]) * nrd);
		rio->nchild = rio->next_child = 0;
		for (unsigned k = 0; k < nrd; k++) {
			if (!bad[k])
				continue;
			struct raid_child *c = raid_child_add(rio, rd[k].member, FB_IO_WRITE, moff, rio->num);

			child_buf(c, rd[good].iov[0].iov_base, len);
			atomic_fetch_add(&r->m[rd[k].member].corrupt_found, 1);
			atomic_fetch_add(&r->repairs, 1);
			/* name the first bad block, not just the read's range */
			fb_log(r->e, FB_LOG_WARN, "raid '%s': member '%s' block %llu failed its CRC; "
			       "rewritten from member '%s'", r->name, r->m[rd[k].member].name,
			       (unsigned long long)(moff + (uint64_t)first_bad[k]), r->m[rd[good].member].name);
			raid_notify(r, "raid_safe_read_repair",
				    "\"member\":\"%s\",\"lba\":%llu,\"member_lba\":%llu,\"blocks\":%llu,"
				    "\"read_lba\":%llu,\"action\":\"rewritten\"",
				    r->m[rd[k].member].name,
				    (unsigned long long)(fb_bdev_io_get_offset_blocks(rio->io) + (uint64_t)first_bad[k]),
				    (unsigned long long)(moff + (uint64_t)first_bad[k]), (unsigned long long)rio->num,
				    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io));
		}
	}
	if (rio->nchild == 0) {
		raid_io_finish(rio, 0);
		return;
	}
	rio->after = repair_done;
	raid_children_run(rio);
}

static void repair_done(struct raid_io *rio)
{
	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status)
			raid_member_fail(rio->r, rio->c[k].member, "repair write failed");
		else
			atomic_fetch_add(&rio->r->m[rio->c[k].member].repaired, rio->num);
	}
	/* The read already has correct data: it succeeds either way. */
	raid_io_finish(rio, 0);
}

/* Read every usable copy into scratch. */
static void read_all(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	size_t len = io_bytes(rio);
	unsigned g;
	uint64_t moff;
	char *b;

	mirror_map(rio, &g, &moff);
	b = raid_scratch_get(rio, len * r->ncopies);
	if (!b) {
		park(rio, read_all);
		return;
	}
	rio->nchild = rio->next_child = 0;
	for (unsigned k = 0; k < r->ncopies; k++) {
		unsigned m = group_first(r, g) + k;

		if (!raid_member_usable(r, m, rio->row / r->ngroups))
			continue;
		child_buf(raid_child_add(rio, m, FB_IO_READ, moff, rio->num), b + (size_t)k * len, len);
	}
	rio->after = read_all_done;
	raid_children_run(rio);
}

static void read_slow(struct raid_io *rio)
{
	read_all(rio);
}

void raid_mirror_submit(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;

	if (fb_bdev_io_get_type(rio->io) == FB_IO_WRITE) {
		if (r->level == RAID_L0)
			write_start(rio);
		else
			raid_io_lock(rio, write_locked);
		return;
	}
	/* verify holds the row while it reads every copy, so a write in flight
	 * cannot make copies differ: any difference fails the read. */
	if (r->level != RAID_L0 && rio->attempt == 0 &&
	    atomic_load_explicit(&r->safe_read, memory_order_relaxed) == SAFE_READ_VERIFY) {
		raid_io_lock(rio, read_all);
		return;
	}
	if (rio->attempt >= r->ncopies) {
		raid_io_finish(rio, -EIO);
		return;
	}
	read_fast(rio);
}
