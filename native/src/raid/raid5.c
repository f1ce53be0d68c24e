/* RAID5 I/O (rotating parity, left-symmetric). Each I/O lies in one row
 * (the core splits on the row's data size). Work on a row is done on its
 * "column": the strip offsets [lo, hi) the I/O touches, read into scratch
 * slots, one per member (slot i at i * len) plus one temporary slot.
 *
 * Writes (row locked, bitmap bit on disk first):
 *   - a full row: parity = XOR of the new data, no reads;
 *   - part of a row: read-modify-write (old data + old parity) or
 *     reconstruct-write (the untouched data), whichever reads fewer strips;
 *   - degraded, or a read that failed its CRC in repair mode: read every
 *     usable member, rebuild the lost one, lay the new data over, recompute
 *     parity, write what changed (and the rebuilt strip when it was bad).
 * Reads: off and repair read the data strips only (repair checks CRCs and
 * falls back to the slow path); verify, degraded and repair's slow path
 * read the whole column and check parity or CRCs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <isa-l/raid.h>

#include "raid.h"

static uint32_t S(const struct raid_bdev *r) { return r->strip_blocks; }

static size_t col_bytes(const struct raid_io *rio)
{
	return (size_t)(rio->col_hi - rio->col_lo) * rio->r->block_size;
}

static char *slot(struct raid_io *rio, unsigned i)
{
	return (char *)rio->buf + (size_t)i * col_bytes(rio);
}

/* Strip k of the row covers array offsets [k*S, (k+1)*S) within the row;
 * the part the I/O touches, as strip offsets. */
static bool strip_range(const struct raid_io *rio, unsigned k, uint64_t *a, uint64_t *b)
{
	uint64_t s0 = (uint64_t)k * S(rio->r), s1 = s0 + S(rio->r);
	uint64_t o0 = rio->off_in_row, o1 = rio->off_in_row + rio->num;

	if (o1 <= s0 || o0 >= s1)
		return false;
	*a = (o0 > s0 ? o0 : s0) - s0;
	*b = (o1 < s1 ? o1 : s1) - s0;
	return true;
}

static void set_column(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;

	rio->touched_lo = (unsigned)(rio->off_in_row / S(r));
	rio->touched_hi = (unsigned)((rio->off_in_row + rio->num - 1) / S(r));
	if (rio->touched_lo == rio->touched_hi) {
		rio->col_lo = rio->off_in_row % S(r);
		rio->col_hi = rio->col_lo + rio->num;
	} else {
		rio->col_lo = 0;
		rio->col_hi = S(r);
	}
}

static bool row_member_ok(struct raid_io *rio, unsigned i)
{
	return raid_member_usable(rio->r, i, rio->row);
}

static unsigned lost_count(struct raid_io *rio, unsigned *lost)
{
	unsigned cnt = 0;

	for (unsigned i = 0; i < rio->r->n; i++) {
		if (!row_member_ok(rio, i)) {
			*lost = i;
			cnt++;
		}
	}
	return cnt;
}

static void retry_cb(void *arg)
{
	struct raid_io *rio = arg;

	rio->after(rio);
}

static void park(struct raid_io *rio, void (*fn)(struct raid_io *))
{
	rio->after = fn;
	rio->wait.cb = retry_cb;
	rio->wait.arg = rio;
	fb_io_channel_queue_wait(rio->ch, &rio->wait);
}

static struct iovec *user_iov(struct raid_io *rio, int *iovcnt)
{
	return fb_bdev_io_get_iovs(rio->io, iovcnt);
}

/* Byte offset in the I/O's buffer of strip k's offset `so`. */
static size_t user_off(struct raid_io *rio, unsigned k, uint64_t so)
{
	return (size_t)((uint64_t)k * S(rio->r) + so - rio->off_in_row) * rio->r->block_size;
}

/* XOR of srcs into dst (ISA-L wants at least two sources). */
static void xor_into(void *dst, void **srcs, unsigned nsrc, size_t len)
{
	void *v[RAID_MAX_MEMBERS * 2 + 2];

	if (nsrc == 1) {
		memcpy(dst, srcs[0], len);
		return;
	}
	for (unsigned i = 0; i < nsrc; i++)
		v[i] = srcs[i];
	v[nsrc] = dst;
	xor_gen((int)nsrc + 1, (int)len, v);
}

/* Reads the column of every usable member (or of those in `want`, a
 * member bitmask) into the slots, then runs next. */
static void read_column(struct raid_io *rio, uint32_t want, void (*next)(struct raid_io *))
{
	struct raid_bdev *r = rio->r;
	size_t len = col_bytes(rio);

	/* The caller got scratch for n + 1 slots. */
	rio->nchild = rio->next_child = 0;
	for (unsigned i = 0; i < r->n; i++) {
		struct raid_child *c;

		if (!(want & (1u << i)) || !row_member_ok(rio, i))
			continue;
		c = raid_child_add(rio, i, FB_IO_READ, rio->row * S(r) + rio->col_lo,
				   rio->col_hi - rio->col_lo);
		c->iov[0].iov_base = slot(rio, i);
		c->iov[0].iov_len = len;
		c->iovcnt = 1;
	}
	rio->after = next;
	raid_children_run(rio);
}

/* Marks members whose column read failed; true if any did. */
static bool reap_read_errors(struct raid_io *rio)
{
	bool failed = false;

	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status) {
			raid_member_fail(rio->r, rio->c[k].member, "read failed");
			failed = true;
		}
	}
	return failed;
}

/* Repair mode: the first usable member whose column fails its CRC, or n;
 * *first (if given) gets its first bad block, as a column offset. */
static unsigned crc_bad_member(struct raid_io *rio, uint32_t members, uint64_t *first)
{
	struct raid_bdev *r = rio->r;

	if (atomic_load(&r->safe_read) != SAFE_READ_REPAIR)
		return r->n;
	for (unsigned i = 0; i < r->n; i++) {
		struct iovec one = {slot(rio, i), col_bytes(rio)};
		int64_t b;

		if (!(members & (1u << i)) || !row_member_ok(rio, i))
			continue;
		b = raid_crc_check_iov(r, i, rio->row * S(r) + rio->col_lo, rio->col_hi - rio->col_lo,
				       &one, 1);
		if (b >= 0) {
			if (first)
				*first = (uint64_t)b;
			return i;
		}
	}
	return r->n;
}

/* Rebuilds slot x from every other slot. */
static void reconstruct(struct raid_io *rio, unsigned x)
{
	void *src[RAID_MAX_MEMBERS];
	unsigned ns = 0;

	for (unsigned i = 0; i < rio->r->n; i++)
		if (i != x)
			src[ns++] = slot(rio, i);
	xor_into(slot(rio, x), src, ns, col_bytes(rio));
}

static void crc_update_slot(struct raid_io *rio, unsigned i)
{
	struct iovec one = {slot(rio, i), col_bytes(rio)};

	raid_crc_update_iov(rio->r, i, rio->row * S(rio->r) + rio->col_lo,
			    rio->col_hi - rio->col_lo, &one, 1);
}

/* Names the first bad block of member `bad` (column offset `first`): its
 * member block and, for a data strip, the array block it holds (parity
 * holds none: `parity: true`); read_lba/blocks are the I/O that found it. */
static void notify_repair(struct raid_io *rio, unsigned bad, uint64_t first, bool on_write)
{
	struct raid_bdev *r = rio->r;
	uint64_t so = rio->col_lo + first, mlba = rio->row * S(r) + so, lba = 0;
	bool data = raid_array_lba(r, rio->row, 0, bad, so, &lba);
	char at[48];

	if (data)
		snprintf(at, sizeof(at), "\"lba\":%llu", (unsigned long long)lba);
	else
		snprintf(at, sizeof(at), "\"parity\":true");
	atomic_fetch_add(&r->m[bad].corrupt_found, 1);
	atomic_fetch_add(&r->repairs, 1);
	if (!data)
		fb_log(r->e, FB_LOG_WARN, "raid '%s': member '%s' parity block %llu failed its CRC; "
		       "rebuilt from the data strips (found by a %s)", r->name, r->m[bad].name,
		       (unsigned long long)mlba, on_write ? "write" : "read");
	else
		fb_log(r->e, FB_LOG_WARN, "raid '%s': member '%s' block %llu (array lba %llu) failed "
		       "its CRC; rebuilt from parity (found by a %s)", r->name, r->m[bad].name,
		       (unsigned long long)mlba, (unsigned long long)lba, on_write ? "write" : "read");
	raid_notify(r, "raid_safe_read_repair",
		    "\"member\":\"%s\",%s,\"member_lba\":%llu,\"blocks\":%llu,\"read_lba\":%llu,"
		    "\"found_by\":\"%s\",\"action\":\"rewritten\"",
		    r->m[bad].name, at, (unsigned long long)mlba, (unsigned long long)rio->num,
		    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io), on_write ? "write" : "read");
}

/* ------------------------------------------------------------- writes */

static void write_phase_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned lost;
	bool any_ok = false;

	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status)
			raid_member_fail(r, rio->c[k].member, "write failed");
		else
			any_ok = true;
	}
	/* Data survives while at most one member is lost. */
	raid_io_finish(rio, any_ok && lost_count(rio, &lost) <= 1 ? 0 : -EIO);
}

static void add_write(struct raid_io *rio, unsigned i)
{
	struct raid_bdev *r = rio->r;
	struct raid_child *c;

	if (!raid_member_writable(r, i, rio->row))
		return;
	c = raid_child_add(rio, i, FB_IO_WRITE, rio->row * S(r) + rio->col_lo,
			   rio->col_hi - rio->col_lo);
	c->flags = fb_bdev_io_get_flags(rio->io);
	c->iov[0].iov_base = slot(rio, i);
	c->iov[0].iov_len = col_bytes(rio);
	c->iovcnt = 1;
}

/* Lays the new data over the touched data slots. */
static void overlay(struct raid_io *rio)
{
	int iovcnt;
	struct iovec *iov = user_iov(rio, &iovcnt);
	struct raid_bdev *r = rio->r;

	for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++) {
		uint64_t a = 0, b = 0;
		unsigned m = raid5_data_member(r, rio->row, k);

		if (!strip_range(rio, k, &a, &b))
			continue;
		fb_iov_to_buf(slot(rio, m) + (a - rio->col_lo) * r->block_size, iov, iovcnt,
			      user_off(rio, k, a), (size_t)(b - a) * r->block_size);
	}
}

/* Slots of the touched data and parity hold their new contents: write
 * them, and `also` (a rebuilt bad strip, or n), with their CRCs. */
static void write_touched(struct raid_io *rio, unsigned also)
{
	struct raid_bdev *r = rio->r;
	unsigned p = raid5_parity_member(r, rio->row);

	rio->nchild = rio->next_child = 0;
	for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++) {
		unsigned m = raid5_data_member(r, rio->row, k);

		crc_update_slot(rio, m);
		add_write(rio, m);
	}
	crc_update_slot(rio, p);
	add_write(rio, p);
	if (also < r->n && also != p) {
		bool touched = false;

		for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++)
			touched |= raid5_data_member(r, rio->row, k) == also;
		if (!touched)
			add_write(rio, also);
	}
	rio->after = write_phase_done;
	raid_children_run(rio);
}

/* Slots hold the complete new column: parity from the data, then write. */
static void write_column(struct raid_io *rio, unsigned also)
{
	struct raid_bdev *r = rio->r;
	void *src[RAID_MAX_MEMBERS];
	unsigned ns = 0;

	for (unsigned k = 0; k < r->n - 1; k++)
		src[ns++] = slot(rio, raid5_data_member(r, rio->row, k));
	xor_into(slot(rio, raid5_parity_member(r, rio->row)), src, ns, col_bytes(rio));
	write_touched(rio, also);
}

/* Scratch for every slot (self parks until there is), then the whole
 * column of every usable member, then next. */
static void read_whole_column(struct raid_io *rio, void (*self)(struct raid_io *),
			      void (*next)(struct raid_io *))
{
	if (!raid_scratch_get(rio, col_bytes(rio) * (rio->r->n + 1))) {
		park(rio, self);
		return;
	}
	read_column(rio, ~0u, next);
}

static void degraded_write(struct raid_io *rio);

static void degraded_write_read(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned lost = r->n, bad;
	uint64_t first = 0;

	reap_read_errors(rio);
	if (lost_count(rio, &lost) > 1) {
		raid_io_finish(rio, -EIO);
		return;
	}
	bad = crc_bad_member(rio, ~0u, &first);
	if (bad < r->n && lost_count(rio, &lost) == 1 && lost != bad) {
		raid_io_finish(rio, -EIO); /* two strips lost */
		return;
	}
	if (bad < r->n) {
		reconstruct(rio, bad);
		notify_repair(rio, bad, first, true);
		atomic_fetch_add(&r->m[bad].repaired, rio->col_hi - rio->col_lo);
		lost = bad;
	} else if (lost < r->n) {
		reconstruct(rio, lost);
	}
	overlay(rio);
	write_column(rio, bad);
}

static void degraded_write(struct raid_io *rio)
{
	read_whole_column(rio, degraded_write, degraded_write_read);
}

/* RMW: slots of touched data and parity hold old contents. */
static void rmw_read_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned p = raid5_parity_member(r, rio->row), lost;
	void *src[RAID_MAX_MEMBERS + 1];
	unsigned ns = 0;
	uint32_t mask = 1u << p;

	for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++)
		mask |= 1u << raid5_data_member(r, rio->row, k);
	if (reap_read_errors(rio) || lost_count(rio, &lost) || crc_bad_member(rio, mask, NULL) < r->n) {
		degraded_write(rio);
		return;
	}
	/* tmp = P ^ D_old...; overlay; P = tmp ^ D_new... */
	src[ns++] = slot(rio, p);
	for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++)
		src[ns++] = slot(rio, raid5_data_member(r, rio->row, k));
	xor_into(slot(rio, r->n), src, ns, col_bytes(rio));
	overlay(rio);
	src[0] = slot(rio, r->n);
	xor_into(slot(rio, p), src, ns, col_bytes(rio));
	write_touched(rio, r->n);
}

static void rcw_read_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned lost;
	uint32_t mask = 0;

	for (unsigned k = 0; k < rio->nchild; k++)
		mask |= 1u << rio->c[k].member;
	if (reap_read_errors(rio) || lost_count(rio, &lost) || crc_bad_member(rio, mask, NULL) < r->n) {
		degraded_write(rio);
		return;
	}
	overlay(rio);
	write_column(rio, r->n);
}

static bool aligned_contig(struct raid_io *rio, unsigned k, void **out)
{
	int iovcnt;
	struct iovec *iov = user_iov(rio, &iovcnt), one;
	size_t len = (size_t)S(rio->r) * rio->r->block_size;

	if (fb_iov_slice(iov, iovcnt, user_off(rio, k, 0), len, &one, 1) != 1)
		return false;
	if ((uintptr_t)one.iov_base & 31)
		return false;
	*out = one.iov_base;
	return true;
}

/* Preps of a full-row write, on the member's home reactor: a data strip's
 * CRCs; the parity strip (XOR of the data strips) and its CRCs. */
static void prep_crc(struct raid_child *c)
{
	raid_crc_update_iov(c->rio->r, c->member, c->off - c->rio->r->data_offset, c->num, c->iov,
			    c->iovcnt);
}

static void prep_parity(struct raid_child *c)
{
	xor_into(c->iov[0].iov_base, c->rio->xsrc, c->rio->r->n - 1, c->iov[0].iov_len);
	prep_crc(c);
}

/* Whole row: parity from the caller's buffers; no reads. The members'
 * writes, CRCs and parity run on their home reactors (raid_children_run). */
static void full_stripe_write(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned nd = r->n - 1, p = raid5_parity_member(r, rio->row);
	size_t slen = (size_t)S(r) * r->block_size;
	bool direct = true;

	for (unsigned k = 0; k < nd && direct; k++)
		direct = aligned_contig(rio, k, &rio->xsrc[k]);
	/* Direct: scratch holds parity only; else all data, then parity. */
	if (!raid_scratch_get(rio, direct ? slen : slen * (nd + 1))) {
		park(rio, full_stripe_write);
		return;
	}
	if (!direct) {
		int iovcnt;
		struct iovec *iov = user_iov(rio, &iovcnt);

		fb_iov_to_buf(rio->buf, iov, iovcnt, 0, slen * nd);
		for (unsigned k = 0; k < nd; k++)
			rio->xsrc[k] = (char *)rio->buf + slen * k;
	}
	rio->nchild = rio->next_child = 0;
	for (unsigned k = 0; k <= nd; k++) {
		unsigned m = k < nd ? raid5_data_member(r, rio->row, k) : p;
		struct raid_child one = {
			.rio = rio, .member = m, .off = r->data_offset + rio->row * S(r),
			.num = S(r), .iovcnt = 1,
			.prep = k < nd ? prep_crc : prep_parity,
		};
		struct raid_child *c;

		one.iov[0].iov_base = k < nd ? rio->xsrc[k] : (char *)rio->buf + (direct ? 0 : slen * nd);
		one.iov[0].iov_len = slen;
		/* A member that takes no write still needs its CRCs (and the
		 * parity's) to match what the row now holds. */
		if (!raid_member_writable(r, m, rio->row)) {
			one.prep(&one);
			continue;
		}
		c = raid_child_add(rio, m, FB_IO_WRITE, rio->row * S(r), S(r));
		c->flags = fb_bdev_io_get_flags(rio->io);
		c->iov[0] = one.iov[0];
		c->iovcnt = 1;
		c->prep = one.prep;
	}
	rio->after = write_phase_done;
	raid_children_run(rio);
}

static void partial_write(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned nd = r->n - 1, touched = rio->touched_hi - rio->touched_lo + 1;
	unsigned p = raid5_parity_member(r, rio->row), partial = 0;
	uint32_t rmw = 1u << p, rcw = 0;

	for (unsigned k = 0; k < nd; k++) {
		unsigned m = raid5_data_member(r, rio->row, k);
		uint64_t a = 0, b = 0;

		if (k >= rio->touched_lo && k <= rio->touched_hi) {
			rmw |= 1u << m;
			strip_range(rio, k, &a, &b);
			if (a > rio->col_lo || b < rio->col_hi) {
				rcw |= 1u << m;
				partial++;
			}
		} else {
			rcw |= 1u << m;
		}
	}
	if (!raid_scratch_get(rio, col_bytes(rio) * (r->n + 1))) {
		park(rio, partial_write);
		return;
	}
	if (touched + 1 <= (nd - touched) + partial)
		read_column(rio, rmw, rmw_read_done);
	else
		read_column(rio, rcw, rcw_read_done);
}

static void write_locked(struct raid_io *rio)
{
	unsigned lost;

	if (lost_count(rio, &lost)) {
		degraded_write(rio);
		return;
	}
	if (rio->off_in_row == 0 && rio->num == raid_row_blocks(rio->r))
		full_stripe_write(rio);
	else
		partial_write(rio);
}

static void write_bm(struct raid_io *rio)
{
	raid_bm_begin(rio, write_locked);
}

/* -------------------------------------------------------------- reads */

static void copy_out(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	int iovcnt;
	struct iovec *iov = user_iov(rio, &iovcnt);

	for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++) {
		uint64_t a = 0, b = 0;
		unsigned m = raid5_data_member(r, rio->row, k);

		if (!strip_range(rio, k, &a, &b))
			continue;
		fb_iov_from_buf(iov, iovcnt, user_off(rio, k, a),
				slot(rio, m) + (a - rio->col_lo) * r->block_size,
				(size_t)(b - a) * r->block_size);
	}
}

static void slow_read(struct raid_io *rio);

static void repair_write_done(struct raid_io *rio)
{
	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status)
			raid_member_fail(rio->r, rio->c[k].member, "repair write failed");
		else
			atomic_fetch_add(&rio->r->m[rio->c[k].member].repaired,
					 rio->col_hi - rio->col_lo);
	}
	raid_io_finish(rio, 0);
}

static void slow_read_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned lost = r->n, nlost, bad;
	uint64_t first = 0;
	int mode = atomic_load(&r->safe_read);

	reap_read_errors(rio);
	nlost = lost_count(rio, &lost);
	if (nlost > 1) {
		raid_io_finish(rio, -EIO);
		return;
	}
	bad = crc_bad_member(rio, ~0u, &first);
	if (bad < r->n) {
		if (nlost) {
			atomic_fetch_add(&r->verify_mismatches, 1);
			raid_notify(r, "raid_safe_read_unrecoverable",
				    "\"member\":\"%s\",\"lba\":%llu,\"action\":\"failed_read\"",
				    r->m[bad].name,
				    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io));
			raid_io_finish(rio, -EIO);
			return;
		}
		reconstruct(rio, bad);
		notify_repair(rio, bad, first, false);
		copy_out(rio);
		rio->nchild = rio->next_child = 0;
		add_write(rio, bad);
		rio->after = repair_write_done;
		raid_children_run(rio);
		return;
	}
	if (nlost) {
		reconstruct(rio, lost);
		atomic_fetch_add(&r->degraded_reads, 1);
	} else if (mode == SAFE_READ_VERIFY) {
		void *v[RAID_MAX_MEMBERS];

		for (unsigned i = 0; i < r->n; i++)
			v[i] = slot(rio, i);
		if (xor_check((int)r->n, (int)col_bytes(rio), v) != 0) {
			atomic_fetch_add(&r->verify_mismatches, 1);
			fb_log(r->e, FB_LOG_ERROR, "raid '%s': parity mismatch in row %llu "
			       "(lba %llu); read failed (safe_read verify)", r->name,
			       (unsigned long long)rio->row,
			       (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io));
			raid_notify(r, "raid_safe_read_mismatch",
				    "\"lba\":%llu,\"blocks\":%llu,\"row\":%llu,\"action\":\"failed_read\"",
				    (unsigned long long)fb_bdev_io_get_offset_blocks(rio->io),
				    (unsigned long long)rio->num, (unsigned long long)rio->row);
			raid_io_finish(rio, -EIO);
			return;
		}
	}
	copy_out(rio);
	raid_io_finish(rio, 0);
}

/* Whole column of every usable member, row locked. */
static void slow_read(struct raid_io *rio)
{
	read_whole_column(rio, slow_read, slow_read_done);
}


static void fast_read_done(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	int iovcnt;
	struct iovec *iov = user_iov(rio, &iovcnt);

	if (reap_read_errors(rio)) {
		raid_scratch_put(rio);
		raid_io_lock(rio, slow_read);
		return;
	}
	if (rio->buf)
		fb_iov_from_buf(iov, iovcnt, 0, rio->buf, (size_t)rio->num * r->block_size);
	if (atomic_load_explicit(&r->safe_read, memory_order_relaxed) == SAFE_READ_REPAIR) {
		for (unsigned k = 0; k < rio->nchild; k++) {
			struct raid_child *c = &rio->c[k];
			uint64_t rel = (c->off - r->data_offset) - rio->row * S(r);
			unsigned kk = (c->member + r->n - raid5_parity_member(r, rio->row) - 1) % r->n;
			size_t uo = user_off(rio, kk, rel);
			struct iovec sub[RAID_CHILD_IOV * 2];
			int ns = fb_iov_slice(iov, iovcnt, uo, (size_t)c->num * r->block_size, sub,
					      RAID_CHILD_IOV * 2);

			if (ns < 0 || raid_crc_check_iov(r, c->member, c->off - r->data_offset, c->num,
							  sub, ns) >= 0) {
				raid_scratch_put(rio);
				raid_io_lock(rio, slow_read);
				return;
			}
		}
	}
	raid_io_finish(rio, 0);
}

static void fast_read(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	int iovcnt;
	struct iovec *iov = user_iov(rio, &iovcnt);
	bool bounce = false;

	rio->nchild = rio->next_child = 0;
	for (unsigned pass = 0; pass < 2; pass++) {
		rio->nchild = 0;
		for (unsigned k = rio->touched_lo; k <= rio->touched_hi; k++) {
			uint64_t a = 0, b = 0;
			unsigned m = raid5_data_member(r, rio->row, k);
			struct raid_child *c;

			strip_range(rio, k, &a, &b);
			c = raid_child_add(rio, m, FB_IO_READ, rio->row * S(r) + a, b - a);
			if (bounce) {
				c->iov[0].iov_base = (char *)rio->buf + user_off(rio, k, a);
				c->iov[0].iov_len = (size_t)(b - a) * r->block_size;
				c->iovcnt = 1;
				continue;
			}
			c->iovcnt = fb_iov_slice(iov, iovcnt, user_off(rio, k, a),
						 (size_t)(b - a) * r->block_size, c->iov, RAID_CHILD_IOV);
			if (c->iovcnt < 0)
				break;
		}
		if (!bounce && rio->nchild && rio->c[rio->nchild - 1].iovcnt < 0) {
			if (!raid_scratch_get(rio, (size_t)rio->num * r->block_size)) {
				park(rio, fast_read);
				return;
			}
			bounce = true;
			continue;
		}
		break;
	}
	rio->after = fast_read_done;
	raid_children_run(rio);
}

void raid5_submit(struct raid_io *rio)
{
	struct raid_bdev *r = rio->r;
	unsigned lost;

	set_column(rio);
	if (fb_bdev_io_get_type(rio->io) == FB_IO_WRITE) {
		raid_io_lock(rio, write_bm);
		return;
	}
	if (lost_count(rio, &lost) > 1) {
		raid_io_finish(rio, -EIO);
		return;
	}
	if (lost_count(rio, &lost)) {
		raid_io_lock(rio, slow_read);
		return;
	}
	/* verify holds the row while it reads the column, so parity cannot be
	 * caught mid-update: any mismatch fails the read. */
	if (atomic_load_explicit(&r->safe_read, memory_order_relaxed) == SAFE_READ_VERIFY)
		raid_io_lock(rio, slow_read);
	else
		fast_read(rio);
}
