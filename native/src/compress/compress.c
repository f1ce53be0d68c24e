/* compress bdev "COMP_<base>": logical chunks (default 16 KiB) stored
 * compressed, densely packed on the base through a persistent chunk map.
 *
 * The core splits every I/O at chunk boundaries (optimal_io_boundary), so
 * each request touches one chunk. A request takes that chunk's lock (reads
 * too: a read must not see the units of a chunk being rewritten reused),
 * then:
 *   read    map entry -> base read of the stored units -> worker: CRC32C
 *           check + decompress -> copy out
 *   write   (partial: read and decode the old chunk) -> merge -> worker:
 *           all-zero check, compress (early abort to raw when it does not
 *           shrink by 1/8), CRC32C -> allocate units -> base write -> map
 *           entry (map.c's rules) -> with FUA, wait for a commit
 *   unmap / write-zeroes: whole chunks become data-less entries; partial
 *           ones are writes of zeros
 *   flush   a commit: flush base, write dirty map pages, flush base.
 * Codec work runs on the module's worker pool and returns to the I/O's
 * reactor with fb_reactor_send. Per-I/O state lives in the driver context,
 * chunk buffers come from the channel (fb_io_channel_get_buf): the hot path
 * allocates nothing itself. Map, allocator, chunk locks and the commit
 * state share one mutex, held for short bookkeeping only, never across I/O
 * or codec work.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress_internal.h"

#define LOCK_BUCKETS 256
#define DIRTY_CAP 256          /* map pages per commit (1 MiB staged) */
#define PENDING_CAP 16384      /* frees awaiting a commit */
#define MAP_READ_PAGES 128     /* map pages read per I/O at open */

struct cmp_io;

struct cmp_bdev {
	struct fb_engine *e;
	struct fb_cmp_mod *mod;
	struct cmp_bdev *next;        /* mod's list */
	struct fb_bdev *bdev;
	char *name, *base_name;
	struct fb_bdev_desc *base;
	uint32_t base_bs;
	const struct fb_cmp_codec *codec;
	int level;
	uint32_t chunk, lb, unit;
	uint64_t data_off;            /* bytes */

	pthread_mutex_t mu;
	struct fb_cmp_map map;
	struct cmp_io *locks[LOCK_BUCKETS];
	/* Commits: one at a time; a waiter needs commit number cneed. */
	bool committing;
	uint64_t commits_started, commits_done;
	struct cmp_io *cwait_head, *cwait_tail;
	/* The commit in flight (touched only by the reactor running it). */
	struct fb_io_channel *commit_ch;
	struct iovec *commit_iov;
	size_t commit_n, commit_next, commit_left;
	int commit_rc;
	struct fb_io_wait_entry commit_wait;

	struct fb_cmp_codec_stats st;
	_Atomic uint64_t early_aborts, crc_errors, rmw, commits;
	uint64_t repaired_at_open, pages_lost_at_open;
};

struct cmp_channel {
	struct fb_io_channel *base_ch;
};

struct cmp_io {
	struct fb_cmp_job job;        /* first: recovered from the job */
	struct fb_io_wait_entry wait;
	void (*resume)(struct cmp_io *c);      /* after a wait for memory */
	void (*after)(struct cmp_io *c);       /* after a job or a commit */
	struct cmp_io *lock_next, *waiters, *waiters_tail, *wnext;
	struct cmp_io *cnext;
	uint64_t cneed;
	struct fb_bdev_io *io;
	struct fb_io_channel *ch;
	struct cmp_bdev *cb;
	uint64_t io_off, io_len;      /* the request, bytes */
	uint64_t done;                /* bytes of it finished (segments before this one) */
	bool in_run, again;           /* segment loop without recursion */
	uint64_t chunk;               /* this segment: */
	uint32_t off, len;            /* bytes within the chunk */
	enum fb_io_type type;
	bool locked;
	uint8_t *buf[2];
	unsigned plain;               /* buf[plain] holds the chunk's plain bytes */
	struct iovec biov;            /* the base I/O's buffer */
	struct fb_cmp_entry old, neu;
	bool neu_allocated;
	int rc;                       /* a job's or a commit's result */
};

static void cio_finish(struct cmp_io *c, int status);
static void cio_start(struct cmp_io *c);
static void commit_start(struct cmp_bdev *cb);

/* ----------------------------------------------------------- utilities */

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)(const void *)p; /* channel buffers are 4 KiB aligned */

	for (size_t i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	return true;
}

static bool entry_has_data(const struct fb_cmp_entry *e)
{
	enum fb_cmp_state s = fb_cmp_entry_state(e);

	return s == FB_CMP_COMPRESSED || s == FB_CMP_RAW;
}

static struct fb_io_channel *base_ch(struct cmp_io *c)
{
	return ((struct cmp_channel *)fb_io_channel_get_ctx(c->ch))->base_ch;
}

static struct fb_reactor *cio_reactor(struct cmp_io *c)
{
	return fb_io_channel_get_reactor(c->ch);
}

static void wait_cb(void *arg)
{
	struct cmp_io *c = arg;

	c->resume(c);
}

/* Parks c until its channel frees memory, then runs resume. */
static void cio_park(struct cmp_io *c, struct fb_io_channel *ch, void (*resume)(struct cmp_io *))
{
	c->resume = resume;
	c->wait.cb = wait_cb;
	c->wait.arg = c;
	fb_io_channel_queue_wait(ch, &c->wait);
}

static void msg_after(void *arg)
{
	struct cmp_io *c = arg;

	c->after(c);
}

/* ---------------------------------------------------------- chunk locks */

static bool lock_acquire(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	struct cmp_io **b = &cb->locks[c->chunk % LOCK_BUCKETS];
	bool got = true;

	pthread_mutex_lock(&cb->mu);
	for (struct cmp_io *h = *b; h; h = h->lock_next) {
		if (h->chunk != c->chunk)
			continue;
		c->wnext = NULL;
		if (h->waiters_tail)
			h->waiters_tail->wnext = c;
		else
			h->waiters = c;
		h->waiters_tail = c;
		got = false;
		break;
	}
	if (got) {
		c->waiters = c->waiters_tail = NULL;
		c->lock_next = *b;
		*b = c;
		c->locked = true;
	}
	pthread_mutex_unlock(&cb->mu);
	return got;
}

static void lock_granted(void *arg)
{
	cio_start(arg);
}

static void lock_release(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	struct cmp_io **b = &cb->locks[c->chunk % LOCK_BUCKETS], *n;

	pthread_mutex_lock(&cb->mu);
	while (*b != c)
		b = &(*b)->lock_next;
	*b = c->lock_next;
	n = c->waiters;
	if (n) {
		/* The first waiter holds the lock now, with the rest behind it. */
		n->waiters = n->wnext;
		n->waiters_tail = n->waiters ? c->waiters_tail : NULL;
		n->lock_next = cb->locks[n->chunk % LOCK_BUCKETS];
		cb->locks[n->chunk % LOCK_BUCKETS] = n;
		n->locked = true;
	}
	c->locked = false;
	pthread_mutex_unlock(&cb->mu);
	if (n)
		fb_reactor_send(cio_reactor(n), lock_granted, n);
}

/* -------------------------------------------------------------- commits */

/* Runs after(c) on c's reactor once a commit that starts after this call
 * has completed; c->rc is its status. */
static void commit_wait(struct cmp_io *c, void (*after)(struct cmp_io *))
{
	struct cmp_bdev *cb = c->cb;
	bool start;

	c->after = after;
	c->cnext = NULL;
	pthread_mutex_lock(&cb->mu);
	c->cneed = cb->commits_started + 1;
	if (cb->cwait_tail)
		cb->cwait_tail->cnext = c;
	else
		cb->cwait_head = c;
	cb->cwait_tail = c;
	start = !cb->committing;
	if (start) {
		cb->committing = true;
		cb->commits_started++;
	}
	pthread_mutex_unlock(&cb->mu);
	if (start)
		commit_start(cb);
}

static void commit_end(struct cmp_bdev *cb, int rc)
{
	struct cmp_io *woken = NULL, **tail = &woken, **pp;
	bool again;

	if (cb->commit_ch)
		fb_put_io_channel(cb->commit_ch);
	cb->commit_ch = NULL;
	atomic_fetch_add(&cb->commits, 1);
	pthread_mutex_lock(&cb->mu);
	fb_cmp_map_commit_done(&cb->map, rc == 0);
	cb->commits_done = cb->commits_started;
	pp = &cb->cwait_head;
	cb->cwait_tail = NULL;
	while (*pp) {
		struct cmp_io *w = *pp;

		if (w->cneed <= cb->commits_done) {
			*pp = w->cnext;
			w->cnext = NULL;
			*tail = w;
			tail = &w->cnext;
		} else {
			cb->cwait_tail = w;
			pp = &w->cnext;
		}
	}
	again = cb->cwait_head != NULL;
	if (again)
		cb->commits_started++;
	else
		cb->committing = false;
	pthread_mutex_unlock(&cb->mu);
	while (woken) {
		struct cmp_io *w = woken;

		woken = w->cnext;
		w->rc = rc;
		fb_reactor_send(cio_reactor(w), msg_after, w);
	}
	if (again)
		commit_start(cb);
}

static void commit_flushed_last(struct fb_bdev_io *bio, int status, void *arg)
{
	fb_bdev_free_io(bio);
	commit_end(arg, status);
}

static uint64_t base_blocks(struct cmp_bdev *cb)
{
	return fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(cb->base));
}

static void commit_final_flush(void *arg)
{
	struct cmp_bdev *cb = arg;
	int rc = fb_bdev_flush_blocks(cb->base, cb->commit_ch, 0, base_blocks(cb), commit_flushed_last,
				      cb);

	if (rc == -ENOMEM) {
		cb->commit_wait.cb = commit_final_flush;
		cb->commit_wait.arg = cb;
		fb_io_channel_queue_wait(cb->commit_ch, &cb->commit_wait);
	} else if (rc) {
		commit_end(cb, rc);
	}
}

static void commit_page_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_bdev *cb = arg;

	fb_bdev_free_io(bio);
	if (status && !cb->commit_rc)
		cb->commit_rc = status;
	if (--cb->commit_left || cb->commit_next < cb->commit_n)
		return;
	if (cb->commit_rc)
		commit_end(cb, cb->commit_rc);
	else
		commit_final_flush(cb);
}

/* Writes staged pages from commit_next on; parks on -ENOMEM. */
static void commit_write_pages(void *arg)
{
	struct cmp_bdev *cb = arg;
	uint32_t nb = FB_CMP_PAGE_SIZE / cb->base_bs;

	while (cb->commit_next < cb->commit_n) {
		size_t i = cb->commit_next;
		uint64_t off = fb_cmp_page_offset(&cb->map.h, cb->map.stage_page[i],
						  fb_cmp_map_stage_slot(&cb->map, i));
		int rc;

		cb->commit_iov[i].iov_base = cb->map.stage + i * FB_CMP_PAGE_SIZE;
		cb->commit_iov[i].iov_len = FB_CMP_PAGE_SIZE;
		cb->commit_left++;
		rc = fb_bdev_writev_blocks(cb->base, cb->commit_ch, &cb->commit_iov[i], 1,
					   off / cb->base_bs, nb, 0, commit_page_done, cb);
		if (rc == -ENOMEM) {
			cb->commit_left--;
			cb->commit_wait.cb = commit_write_pages;
			cb->commit_wait.arg = cb;
			fb_io_channel_queue_wait(cb->commit_ch, &cb->commit_wait);
			return;
		}
		cb->commit_next++;
		if (rc) {
			cb->commit_left--;
			cb->commit_rc = rc;
			cb->commit_n = cb->commit_next; /* stop submitting */
			if (cb->commit_left == 0)
				commit_end(cb, rc);
			return;
		}
	}
}

static void commit_flushed_first(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_bdev *cb = arg;

	fb_bdev_free_io(bio);
	if (status) {
		commit_end(cb, status);
		return;
	}
	if (cb->commit_n == 0) {
		commit_end(cb, 0); /* nothing to write: the flush was the commit */
		return;
	}
	commit_write_pages(cb);
}

static void commit_first_flush(void *arg)
{
	struct cmp_bdev *cb = arg;
	int rc = fb_bdev_flush_blocks(cb->base, cb->commit_ch, 0, base_blocks(cb),
				      commit_flushed_first, cb);

	if (rc == -ENOMEM) {
		cb->commit_wait.cb = commit_first_flush;
		cb->commit_wait.arg = cb;
		fb_io_channel_queue_wait(cb->commit_ch, &cb->commit_wait);
	} else if (rc) {
		commit_end(cb, rc);
	}
}

/* On a reactor: snapshot the dirty pages, then flush (rule 2: the data the
 * entries point at is durable first), write the pages, flush again. */
static void commit_start(struct cmp_bdev *cb)
{
	cb->commit_ch = fb_bdev_get_io_channel(cb->base);
	cb->commit_rc = 0;
	cb->commit_next = 0;
	cb->commit_left = 0;
	pthread_mutex_lock(&cb->mu);
	cb->commit_n = fb_cmp_map_snapshot(&cb->map);
	pthread_mutex_unlock(&cb->mu);
	if (!cb->commit_ch) {
		commit_end(cb, -ENOMEM);
		return;
	}
	commit_first_flush(cb);
}

/* ---------------------------------------------------------- codec jobs */

static void job_done(void *arg)
{
	struct cmp_io *c = arg;

	c->after(c);
}

static void run_job(struct cmp_io *c, void (*work)(struct fb_cmp_job *, struct fb_cmp_codec_ctxs *),
		    void (*after)(struct cmp_io *), bool here)
{
	c->after = after;
	c->job.work = work;
	c->job.done = job_done;
	c->job.reactor = cio_reactor(c);
	if (here)
		fb_cmp_pool_run_here(c->cb->mod->pool, &c->job);
	else
		fb_cmp_pool_submit(c->cb->mod->pool, &c->job);
}

static void add_codec_stats(struct fb_cmp_codec_stats *a, struct fb_cmp_codec_stats *b, bool comp,
			    uint64_t in, uint64_t out, uint64_t ns)
{
	struct fb_cmp_codec_stats *s[2] = {a, b};

	for (int i = 0; i < 2; i++) {
		if (comp) {
			atomic_fetch_add_explicit(&s[i]->comp_in, in, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->comp_out, out, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->comp_ns, ns, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->comp_calls, 1, memory_order_relaxed);
		} else {
			atomic_fetch_add_explicit(&s[i]->decomp_in, in, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->decomp_out, out, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->decomp_ns, ns, memory_order_relaxed);
			atomic_fetch_add_explicit(&s[i]->decomp_calls, 1, memory_order_relaxed);
		}
	}
}

/* Worker: checks the stored bytes (buf[1]) and decodes them into buf[0]. */
static void decode_work(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs)
{
	struct cmp_io *c = (struct cmp_io *)(void *)job;
	struct cmp_bdev *cb = c->cb;
	uint32_t len = fb_cmp_entry_len(&c->old);
	uint64_t t0;

	if (fb_cmp_crc32c(c->buf[1], len) != c->old.crc) {
		c->rc = -EIO;
		return;
	}
	if (fb_cmp_entry_state(&c->old) == FB_CMP_RAW) {
		c->plain = 1;
		c->rc = 0;
		return;
	}
	t0 = fb_now_ns();
	c->rc = fb_cmp_decompress(ctxs, cb->codec, c->buf[1], len, c->buf[0], cb->chunk);
	add_codec_stats(&cb->st, &cb->mod->codec[cb->codec->algo], false, len, cb->chunk,
			fb_now_ns() - t0);
	c->plain = 0;
}

/* Worker: zero check, compress buf[plain] into the other buffer (early
 * abort: must save 1/8), CRC32C of what will be stored. */
static void encode_work(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs)
{
	struct cmp_io *c = (struct cmp_io *)(void *)job;
	struct cmp_bdev *cb = c->cb;
	uint8_t *src = c->buf[c->plain], *dst = c->buf[1 - c->plain];
	size_t n = 0;
	uint64_t t0;
	int rc;

	c->rc = 0;
	if (all_zero(src, cb->chunk)) {
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0)};
		return;
	}
	t0 = fb_now_ns();
	/* Incompressible data (already compressed files, encrypted blocks)
	 * costs the slower codecs a full attempt: when fast LZ4 cannot take
	 * even 1/256 off, the chunk is stored raw without one. Borderline
	 * chunks still get the real codec. */
	if (cb->codec->algo != FB_CMP_LZ4 &&
	    fb_cmp_compress(ctxs, &fb_cmp_codec_lz4, 1, src, cb->chunk, dst, cb->chunk - cb->chunk / 256,
			    &n) == -ENOSPC)
		rc = -ENOSPC;
	else
		rc = fb_cmp_compress(ctxs, cb->codec, cb->level, src, cb->chunk, dst,
				     cb->chunk - cb->chunk / 8, &n);
	add_codec_stats(&cb->st, &cb->mod->codec[cb->codec->algo], true, cb->chunk,
			rc ? cb->chunk : n, fb_now_ns() - t0);
	if (rc == 0) {
		/* Zero the tail of the last unit: no stale buffer bytes on disk. */
		memset(dst + n, 0, fb_cmp_map_units(&cb->map, (uint32_t)n) * cb->unit - n);
		c->plain = 1 - c->plain; /* buf[plain] is now what gets stored */
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_COMPRESSED, (uint32_t)n),
					       .crc = fb_cmp_crc32c(dst, n)};
	} else if (rc == -ENOSPC) {
		atomic_fetch_add_explicit(&cb->early_aborts, 1, memory_order_relaxed);
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_RAW, cb->chunk),
					       .crc = fb_cmp_crc32c(src, cb->chunk)};
	} else {
		c->rc = rc;
	}
}

/* ------------------------------------------------------------ I/O path */

static void iov_done_free(struct fb_bdev_io *bio)
{
	fb_bdev_free_io(bio);
}

static void put_bufs(struct cmp_io *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->buf[i])
			fb_io_channel_put_buf(c->ch, c->buf[i], c->cb->chunk);
		c->buf[i] = NULL;
	}
}

static void run_segments(struct cmp_io *c);

/* Sets up the segment of the request that starts at c->done. */
static void segment_setup(struct cmp_io *c)
{
	uint64_t pos = c->io_off + c->done;
	uint64_t left = c->io_len - c->done;

	c->chunk = pos / c->cb->chunk;
	c->off = (uint32_t)(pos % c->cb->chunk);
	c->len = (uint32_t)(left < c->cb->chunk - c->off ? left : c->cb->chunk - c->off);
}

static bool last_segment(const struct cmp_io *c)
{
	return c->done + c->len == c->io_len;
}

static void complete_io(struct cmp_io *c, int status)
{
	put_bufs(c);
	/* Inside run_segments' loop c must outlive the loop's next look at it. */
	if (c->in_run)
		fb_bdev_io_complete_deferred(c->io, status);
	else
		fb_bdev_io_complete(c->io, status);
}

/* Ends the current segment: the next one starts, or the request completes.
 * (The core splits at chunk boundaries when it supports
 * optimal_io_boundary, making every request one segment; this loop keeps
 * requests that span chunks correct either way.) */
static void cio_finish(struct cmp_io *c, int status)
{
	if (c->locked)
		lock_release(c);
	if (status || last_segment(c)) {
		complete_io(c, status);
		return;
	}
	c->done += c->len;
	segment_setup(c);
	if (c->in_run)
		c->again = true;
	else
		run_segments(c);
}

static void run_segments(struct cmp_io *c)
{
	c->in_run = true;
	do {
		c->again = false;
		if (lock_acquire(c))
			cio_start(c);
	} while (c->again);
	c->in_run = false;
}

static bool cio_get_bufs(struct cmp_io *c)
{
	for (int i = 0; i < 2; i++) {
		if (!c->buf[i])
			c->buf[i] = fb_io_channel_get_buf(c->ch, c->cb->chunk);
		if (!c->buf[i]) {
			cio_park(c, c->ch, cio_start);
			return false;
		}
	}
	return true;
}

static void set_entry(struct cmp_io *c);

static void fua_done(struct cmp_io *c)
{
	complete_io(c, c->rc);
}

static void set_entry_retry(struct cmp_io *c)
{
	if (c->rc) {
		if (c->neu_allocated) {
			pthread_mutex_lock(&c->cb->mu);
			fb_cmp_map_unalloc(&c->cb->map, c->neu.unit, fb_cmp_entry_len(&c->neu));
			pthread_mutex_unlock(&c->cb->mu);
		}
		cio_finish(c, c->rc);
		return;
	}
	set_entry(c);
}

/* The data is written: point the chunk at it (rule 2). */
static void set_entry(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;

	pthread_mutex_lock(&cb->mu);
	if (!fb_cmp_map_can_set(&cb->map, c->chunk)) {
		pthread_mutex_unlock(&cb->mu);
		commit_wait(c, set_entry_retry);
		return;
	}
	fb_cmp_map_set(&cb->map, c->chunk, &c->neu);
	pthread_mutex_unlock(&cb->mu);
	c->neu_allocated = false;
	if ((fb_bdev_io_get_flags(c->io) & FB_IO_FLAG_FUA) && last_segment(c)) {
		/* Durable before the ack: one commit covers every segment. */
		lock_release(c);
		commit_wait(c, fua_done);
	} else {
		cio_finish(c, 0);
	}
}

static void data_written(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_io *c = arg;

	iov_done_free(bio);
	c->rc = status;
	set_entry_retry(c);
}

static void write_data(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	uint64_t units = fb_cmp_map_units(&cb->map, fb_cmp_entry_len(&c->neu));
	int rc;

	c->biov.iov_base = c->buf[c->plain];
	c->biov.iov_len = units * cb->unit;
	rc = fb_bdev_writev_blocks(cb->base, base_ch(c), &c->biov, 1,
				   (cb->data_off + c->neu.unit * cb->unit) / cb->base_bs,
				   units * cb->unit / cb->base_bs, 0, data_written, c);
	if (rc == -ENOMEM) {
		cio_park(c, base_ch(c), write_data);
	} else if (rc) {
		c->rc = rc;
		set_entry_retry(c);
	}
}

static void encoded(struct cmp_io *c);

static void encoded_retry(struct cmp_io *c)
{
	if (c->rc)
		cio_finish(c, c->rc);
	else
		encoded(c);
}

static void encoded(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	bool wait;
	int rc;

	if (c->rc) {
		cio_finish(c, c->rc);
		return;
	}
	if (!entry_has_data(&c->neu)) {
		set_entry(c);
		return;
	}
	pthread_mutex_lock(&cb->mu);
	rc = fb_cmp_map_alloc(&cb->map, fb_cmp_entry_len(&c->neu), &c->neu.unit);
	/* Out of space: a commit releases pending frees, if there are any. */
	wait = rc && (cb->map.pending[0].n || cb->map.pending[1].n || cb->committing);
	pthread_mutex_unlock(&cb->mu);
	if (rc) {
		if (wait)
			commit_wait(c, encoded_retry);
		else
			cio_finish(c, -ENOSPC);
		return;
	}
	c->neu_allocated = true;
	write_data(c);
}

/* buf[plain] holds the old chunk: merge the request into it and encode. */
static void merge(struct cmp_io *c)
{
	uint8_t *p = c->buf[c->plain];

	if (c->rc) {
		cio_finish(c, c->rc);
		return;
	}
	if (c->type == FB_IO_WRITE) {
		int iovcnt;
		struct iovec *iov = fb_bdev_io_get_iovs(c->io, &iovcnt);

		fb_iov_to_buf(p + c->off, iov, iovcnt, c->done, c->len);
	} else {
		memset(p + c->off, 0, c->len);
	}
	run_job(c, encode_work, encoded, false);
}

static void decoded_for_read(struct cmp_io *c)
{
	int iovcnt;
	struct iovec *iov;

	if (c->rc) {
		cio_finish(c, c->rc);
		return;
	}
	iov = fb_bdev_io_get_iovs(c->io, &iovcnt);
	fb_iov_from_buf(iov, iovcnt, c->done, c->buf[c->plain] + c->off, c->len);
	cio_finish(c, 0);
}

static void report_bad_chunk(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	char ctx[256];

	atomic_fetch_add(&cb->crc_errors, 1);
	fb_log(cb->e, FB_LOG_ERROR, "compress '%s': chunk %llu: stored bytes fail their CRC32C or "
	       "do not decode (units %llu+%llu): read fails with -EIO", cb->name,
	       (unsigned long long)c->chunk, (unsigned long long)c->old.unit,
	       (unsigned long long)fb_cmp_map_units(&cb->map, fb_cmp_entry_len(&c->old)));
	snprintf(ctx, sizeof(ctx), "{\"bdev\":\"%s\",\"chunk\":%llu,\"error\":\"crc\"}", cb->name,
		 (unsigned long long)c->chunk);
	fb_notify(cb->e, "compress_chunk_damaged", ctx);
}

static void old_decoded(struct cmp_io *c)
{
	if (c->rc) {
		report_bad_chunk(c);
		c->rc = -EIO;
	}
	if (c->type == FB_IO_READ)
		decoded_for_read(c);
	else
		merge(c);
}

static void old_read(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_io *c = arg;

	iov_done_free(bio);
	if (status) {
		cio_finish(c, status);
		return;
	}
	/* Decoding one chunk is short and bounded (tens of microseconds for
	 * every decoder at 16 KiB): it runs on the reactor, saving two thread
	 * hops per read. Compression, up to milliseconds at high levels, goes
	 * to the workers. */
	run_job(c, decode_work, old_decoded, true);
}

/* Reads the chunk's stored units into buf[1]. */
static void read_old(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	uint64_t units = fb_cmp_map_units(&cb->map, fb_cmp_entry_len(&c->old));
	int rc;

	c->biov.iov_base = c->buf[1];
	c->biov.iov_len = units * cb->unit;
	rc = fb_bdev_readv_blocks(cb->base, base_ch(c), &c->biov, 1,
				  (cb->data_off + c->old.unit * cb->unit) / cb->base_bs,
				  units * cb->unit / cb->base_bs, old_read, c);
	if (rc == -ENOMEM)
		cio_park(c, base_ch(c), read_old);
	else if (rc)
		cio_finish(c, rc);
}

/* Holding the chunk lock. */
static void cio_start(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	bool full = c->off == 0 && c->len == cb->chunk;

	pthread_mutex_lock(&cb->mu);
	c->old = cb->map.ent[c->chunk];
	pthread_mutex_unlock(&cb->mu);
	c->rc = 0;
	if (c->type == FB_IO_READ) {
		if (!entry_has_data(&c->old)) {
			int iovcnt;
			struct iovec *iov = fb_bdev_io_get_iovs(c->io, &iovcnt);

			fb_iov_memset(iov, iovcnt, c->done, 0, c->len);
			cio_finish(c, 0);
			return;
		}
		if (cio_get_bufs(c))
			read_old(c);
		return;
	}
	if (full && c->type != FB_IO_WRITE) {
		c->neu = (struct fb_cmp_entry){0};
		if (c->type == FB_IO_WRITE_ZEROES)
			c->neu.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0);
		set_entry(c);
		return;
	}
	if (!cio_get_bufs(c))
		return;
	c->plain = 0;
	if (!full && entry_has_data(&c->old)) {
		atomic_fetch_add_explicit(&cb->rmw, 1, memory_order_relaxed);
		read_old(c);
		return;
	}
	if (!full)
		memset(c->buf[0], 0, cb->chunk);
	merge(c);
}

static void flush_done(struct cmp_io *c)
{
	fb_bdev_io_complete(c->io, c->rc);
}

static void cmp_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct cmp_bdev *cb = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct cmp_io *c = fb_bdev_io_get_driver_ctx(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io) * cb->lb;
	uint64_t len = fb_bdev_io_get_num_blocks(io) * cb->lb;

	memset(c, 0, sizeof(*c));
	c->io = io;
	c->ch = ch;
	c->cb = cb;
	c->type = fb_bdev_io_get_type(io);
	if (c->type == FB_IO_FLUSH) {
		commit_wait(c, flush_done);
		return;
	}
	if (c->type != FB_IO_READ && c->type != FB_IO_WRITE && c->type != FB_IO_UNMAP &&
	    c->type != FB_IO_WRITE_ZEROES) {
		fb_bdev_io_complete_deferred(io, -ENOTSUP);
		return;
	}
	c->io_off = off;
	c->io_len = len;
	if (len == 0) {
		fb_bdev_io_complete_deferred(io, 0);
		return;
	}
	segment_setup(c);
	run_segments(c);
}

/* ------------------------------------------------------------ fn table */

static bool cmp_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_WRITE || type == FB_IO_FLUSH ||
	       type == FB_IO_UNMAP || type == FB_IO_WRITE_ZEROES;
}

static int cmp_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct cmp_bdev *cb = fb_bdev_get_module_ctx(bdev);
	struct cmp_channel *cc = ctx;

	cc->base_ch = fb_bdev_get_io_channel(cb->base);
	return cc->base_ch ? 0 : -ENOMEM;
}

static void cmp_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct cmp_channel *cc = ctx;

	(void)bdev;
	fb_put_io_channel(cc->base_ch);
}

/* Control thread: writes every dirty map page (flush, pages, flush). */
static int commit_sync(struct cmp_bdev *cb)
{
	uint32_t nb = FB_CMP_PAGE_SIZE / cb->base_bs;
	int rc = 0;

	pthread_mutex_lock(&cb->mu);
	while (rc == 0 && fb_cmp_map_has_work(&cb->map)) {
		size_t n = fb_cmp_map_snapshot(&cb->map);

		rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, base_blocks(cb), 0);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = fb_bdev_io_sync(cb->base, FB_IO_WRITE, cb->map.stage + i * FB_CMP_PAGE_SIZE,
					     fb_cmp_page_offset(&cb->map.h, cb->map.stage_page[i],
								fb_cmp_map_stage_slot(&cb->map, i)) /
						     cb->base_bs,
					     nb, 0);
		if (rc == 0 && n)
			rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, base_blocks(cb), 0);
		fb_cmp_map_commit_done(&cb->map, rc == 0);
	}
	pthread_mutex_unlock(&cb->mu);
	return rc;
}

static void cmp_free(struct cmp_bdev *cb)
{
	if (cb->base)
		fb_bdev_close(cb->base);
	fb_cmp_map_fini(&cb->map);
	pthread_mutex_destroy(&cb->mu);
	free(cb->commit_iov);
	free(cb->name);
	free(cb->base_name);
	free(cb);
}

static void mod_unlink(struct cmp_bdev *cb);
static void write_stats(struct cmp_bdev *cb, struct fb_json_writer *w);

static void cmp_destruct(struct fb_bdev *bdev)
{
	struct cmp_bdev *cb = fb_bdev_get_module_ctx(bdev);
	int rc = commit_sync(cb);

	if (rc)
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': writing the chunk map at close failed "
		       "(%s): writes since the last flush are lost; the volume reopens consistent",
		       cb->name, strerror(-rc));
	mod_unlink(cb);
	cmp_free(cb);
}

static const char *engine_name(void)
{
	return "cpu";
}

static void cmp_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	fb_json_write_name(w, "compress");
	write_stats(fb_bdev_get_module_ctx(bdev), w);
}

static const struct fb_bdev_fn_table cmp_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = cmp_destruct,
	.submit_request = cmp_submit,
	.io_type_supported = cmp_io_type_supported,
	.channel_create = cmp_channel_create,
	.channel_destroy = cmp_channel_destroy,
	/* No write_config_json: the volume reassembles from its header when
	 * its base appears (examine), as a RAID with a superblock does. */
	.dump_info_json = cmp_dump_info,
};

/* --------------------------------------------------------------- stats */

static double mbps(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / 1e6 / ((double)ns / 1e9) : 0;
}

static void write_codec_stats(struct fb_json_writer *w, struct fb_cmp_codec_stats *s)
{
	uint64_t ci = atomic_load(&s->comp_in), cn = atomic_load(&s->comp_ns);
	uint64_t di = atomic_load(&s->decomp_out), dn = atomic_load(&s->decomp_ns);

	fb_json_write_named_uint64(w, "compress_calls", atomic_load(&s->comp_calls));
	fb_json_write_named_uint64(w, "compress_bytes_in", ci);
	fb_json_write_named_uint64(w, "compress_bytes_out", atomic_load(&s->comp_out));
	fb_json_write_named_double(w, "compress_mbps", mbps(ci, cn));
	fb_json_write_named_uint64(w, "decompress_calls", atomic_load(&s->decomp_calls));
	fb_json_write_named_uint64(w, "decompress_bytes_out", di);
	fb_json_write_named_double(w, "decompress_mbps", mbps(di, dn));
}

static void write_stats(struct cmp_bdev *cb, struct fb_json_writer *w)
{
	const double tb = 1e12;
	char uuid[FB_UUID_STR_LEN];
	struct fb_uuid u;
	uint64_t logical, physical, stored, ram, chunks_data, zero, raw, comp, used_units;

	pthread_mutex_lock(&cb->mu);
	comp = cb->map.chunks_compressed;
	raw = cb->map.chunks_raw;
	zero = cb->map.chunks_zero;
	stored = cb->map.stored_bytes;
	physical = cb->map.stored_units * cb->unit;
	used_units = cb->map.alloc.used;
	ram = fb_cmp_map_ram(&cb->map);
	pthread_mutex_unlock(&cb->mu);
	chunks_data = comp + raw;
	logical = (chunks_data + zero) * cb->chunk;
	memcpy(u.b, cb->map.h.uuid, sizeof(u.b));
	fb_uuid_fmt(&u, uuid);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "name", cb->name);
	fb_json_write_named_string(w, "base_bdev_name", cb->base_name);
	fb_json_write_named_string(w, "uuid", uuid);
	fb_json_write_named_string(w, "comp_algo", cb->codec->name);
	fb_json_write_named_int64(w, "comp_level", cb->level);
	fb_json_write_named_string(w, "engine", engine_name());
	fb_json_write_named_uint64(w, "chunk_size", cb->chunk);
	fb_json_write_named_uint64(w, "lb_size", cb->lb);
	fb_json_write_named_uint64(w, "unit_size", cb->unit);
	fb_json_write_named_uint64(w, "logical_capacity_bytes", cb->map.h.num_chunks * cb->chunk);
	fb_json_write_named_uint64(w, "physical_capacity_bytes", cb->map.h.data_units * cb->unit);
	/* Logical: chunks that hold data (zero chunks included); physical:
	 * units their stored bytes take; stored: the codec's output. */
	fb_json_write_named_uint64(w, "logical_bytes", logical);
	fb_json_write_named_uint64(w, "physical_bytes", physical);
	fb_json_write_named_uint64(w, "stored_bytes", stored);
	fb_json_write_named_uint64(w, "allocated_bytes", used_units * cb->unit);
	fb_json_write_named_double(w, "ratio", physical ? (double)logical / (double)physical : 0);
	fb_json_write_named_object_begin(w, "chunks");
	fb_json_write_named_uint64(w, "compressed", comp);
	fb_json_write_named_uint64(w, "raw", raw);
	fb_json_write_named_uint64(w, "zero", zero);
	fb_json_write_named_uint64(w, "unmapped", cb->map.h.num_chunks - comp - raw - zero);
	fb_json_write_object_end(w);
	fb_json_write_named_object_begin(w, "codec");
	write_codec_stats(w, &cb->st);
	fb_json_write_named_uint64(w, "early_aborts", atomic_load(&cb->early_aborts));
	fb_json_write_object_end(w);
	fb_json_write_named_uint64(w, "read_modify_writes", atomic_load(&cb->rmw));
	fb_json_write_named_uint64(w, "commits", atomic_load(&cb->commits));
	fb_json_write_named_uint64(w, "crc_errors", atomic_load(&cb->crc_errors));
	fb_json_write_named_uint64(w, "repaired_at_open", cb->repaired_at_open);
	fb_json_write_named_uint64(w, "map_pages_lost_at_open", cb->pages_lost_at_open);
	/* RAM that grows with the volume, per TB: the map (an entry per chunk,
	 * a generation and a dirty bit per page) scales with logical capacity,
	 * the allocator (a bit per unit) with physical. Fixed costs (commit
	 * staging, pending-free lists) are in metadata_ram_bytes only. */
	{
		double map_tb = tb / cb->chunk *
				(sizeof(struct fb_cmp_entry) + (8.0 + 1.0 / 8) / FB_CMP_ENTRIES_PER_PAGE) / 1e6;
		double alloc_tb = tb / cb->unit / 8 / 1e6;
		double lcap = (double)(cb->map.h.num_chunks * cb->chunk);
		double pcap = (double)(cb->map.h.data_units * cb->unit);

		fb_json_write_named_uint64(w, "metadata_ram_bytes", ram);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_logical", map_tb);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_physical",
					   alloc_tb + map_tb * lcap / pcap);
	}
	fb_json_write_object_end(w);
}

/* -------------------------------------------------------------- module */

static struct cmp_bdev *mod_bdevs; /* guarded by mod_list_mu; bdevs of every engine */
static pthread_mutex_t mod_list_mu = PTHREAD_MUTEX_INITIALIZER;

static void mod_link(struct cmp_bdev *cb)
{
	pthread_mutex_lock(&mod_list_mu);
	cb->next = mod_bdevs;
	mod_bdevs = cb;
	pthread_mutex_unlock(&mod_list_mu);
}

static void mod_unlink(struct cmp_bdev *cb)
{
	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev **p = &mod_bdevs; *p; p = &(*p)->next) {
		if (*p == cb) {
			*p = cb->next;
			break;
		}
	}
	pthread_mutex_unlock(&mod_list_mu);
}

int fb_cmp_write_stats(struct fb_engine *e, const char *name, struct fb_json_writer *w,
		       struct fb_err *err)
{
	int rc = -ENODEV;

	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev *cb = mod_bdevs; cb; cb = cb->next) {
		if (cb->e == e && cb->bdev && strcmp(cb->name, name) == 0) {
			write_stats(cb, w);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&mod_list_mu);
	if (rc)
		fb_err_set(err, "no compress bdev named '%s'. Fix: pass the name bdev_compress_create "
			   "returned, e.g. \"COMP_Malloc0\"", name);
	return rc;
}

void fb_cmp_write_all_stats(struct fb_engine *e, struct fb_json_writer *w)
{
	fb_json_write_array_begin(w);
	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev *cb = mod_bdevs; cb; cb = cb->next)
		if (cb->e == e && cb->bdev)
			write_stats(cb, w);
	pthread_mutex_unlock(&mod_list_mu);
	fb_json_write_array_end(w);
}

static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	/* Half the CPUs, at most 4: reactors keep the rest. */
	return n >= 8 ? 4 : n >= 2 ? (unsigned)(n / 2) : 1;
}

static int mod_init(struct fb_engine *e, void **ctx, struct fb_err *err)
{
	struct fb_cmp_mod *mod = calloc(1, sizeof(*mod));

	if (!mod) {
		fb_err_set(err, "out of memory initializing the compress module");
		return -ENOMEM;
	}
	mod->e = e;
	pthread_mutex_init(&mod->mu, NULL);
	mod->worker_threads = default_workers();
	*ctx = mod;
	return 0;
}

static void mod_fini(struct fb_engine *e, void *ctx)
{
	struct fb_cmp_mod *mod = ctx;

	(void)e;
	fb_cmp_pool_destroy(mod->pool);
	pthread_mutex_destroy(&mod->mu);
	free(mod);
}

static int mod_pool(struct fb_cmp_mod *mod, struct fb_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&mod->mu);
	if (!mod->pool)
		rc = fb_cmp_pool_create(mod->worker_threads, fb_engine_reactor_count(mod->e), &mod->pool);
	pthread_mutex_unlock(&mod->mu);
	if (rc)
		fb_err_set(err, "starting %u compress worker threads failed: %s", mod->worker_threads,
			   strerror(-rc));
	return rc;
}

int fb_cmp_set_worker_threads(struct fb_engine *e, unsigned n, struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);
	int rc = 0;

	pthread_mutex_lock(&mod->mu);
	if (mod->pool && mod->pool->nthreads != n) {
		fb_err_set(err, "worker_threads can only change before the first bdev_compress_create "
			   "(the pool runs %u threads now). Fix: set it first, or restart the engine",
			   mod->pool->nthreads);
		rc = -EBUSY;
	} else {
		mod->worker_threads = n;
		mod->worker_threads_set = true;
	}
	pthread_mutex_unlock(&mod->mu);
	return rc;
}

static void mod_config_json(struct fb_engine *e, struct fb_json_writer *w)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);

	if (!mod || !mod->worker_threads_set)
		return;
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_compress_set_options");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_uint64(w, "worker_threads", mod->worker_threads);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

/* ---------------------------------------------------------- open/create */

struct open_args {
	const char *base_name, *name;
	bool create;                      /* false: examine (open an existing volume only) */
	const struct fb_cmp_codec *codec; /* create */
	int level;                        /* create; -1 = codec default */
	uint32_t lb_size, chunk_size;     /* create; lb 0 = from the base */
	uint64_t num_blocks;
};

static void base_event(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx)
{
	struct cmp_bdev *cb = ctx;
	struct fb_err err;

	(void)bdev;
	/* Losing the base loses the volume: delete it (it reopens when the
	 * base comes back, from its header). */
	if (type == FB_BDEV_EVENT_REMOVE && fb_bdev_delete(cb->e, cb->name, &err))
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': base '%s' removed, deleting failed: %s",
		       cb->name, cb->base_name, err.msg);
}

struct repair_log {
	struct cmp_bdev *cb;
	uint64_t n;
};

static void repair_report(void *arg, uint64_t chunk, const char *why)
{
	struct repair_log *l = arg;

	if (++l->n <= 20)
		fb_log(l->cb->e, FB_LOG_WARN, "compress '%s': repaired at open: chunk %llu: %s; "
		       "unmapped (reads zeros)", l->cb->name, (unsigned long long)chunk, why);
}

/* Reads the map and rebuilds free space; repairs are written at once. */
static int load_map(struct cmp_bdev *cb, struct fb_err *err)
{
	const struct fb_cmp_header *h = &cb->map.h;
	size_t per = MAP_READ_PAGES * 2 * FB_CMP_PAGE_SIZE;
	uint8_t *buf = aligned_alloc(FB_CMP_PAGE_SIZE, per);
	struct repair_log log = {.cb = cb};
	int rc = 0;

	if (!buf) {
		fb_err_set(err, "out of memory reading the chunk map of '%s'", cb->name);
		return -ENOMEM;
	}
	for (uint64_t p0 = 0; p0 < h->map_pages && rc == 0; p0 += MAP_READ_PAGES) {
		uint64_t np = h->map_pages - p0 < MAP_READ_PAGES ? h->map_pages - p0 : MAP_READ_PAGES;

		rc = fb_bdev_io_sync(cb->base, FB_IO_READ, buf, fb_cmp_page_offset(h, p0, 0) / cb->base_bs,
				     np * 2 * FB_CMP_PAGE_SIZE / cb->base_bs, 0);
		if (rc) {
			fb_err_set(err, "reading the chunk map of '%s' from '%s' failed: %s", cb->name,
				   cb->base_name, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < np; i++) {
			uint8_t *s0 = buf + 2 * i * FB_CMP_PAGE_SIZE;

			if (fb_cmp_map_load_page(&cb->map, p0 + i, s0, s0 + FB_CMP_PAGE_SIZE) == 2) {
				uint64_t first = (p0 + i) * FB_CMP_ENTRIES_PER_PAGE;

				cb->pages_lost_at_open++;
				fb_log(cb->e, FB_LOG_ERROR, "compress '%s': map page %llu: both copies "
				       "damaged: chunks %llu..%llu lost (read as zeros); the page is "
				       "rewritten", cb->name, (unsigned long long)(p0 + i),
				       (unsigned long long)first,
				       (unsigned long long)(first + FB_CMP_ENTRIES_PER_PAGE - 1));
			}
		}
	}
	free(buf);
	if (rc)
		return rc;
	cb->repaired_at_open = fb_cmp_map_rebuild(&cb->map, repair_report, &log);
	if (cb->repaired_at_open || cb->pages_lost_at_open) {
		char ctx[256];

		fb_log(cb->e, FB_LOG_WARN, "compress '%s': open repaired %llu chunk entries and %llu "
		       "map pages; the volume is writable", cb->name,
		       (unsigned long long)cb->repaired_at_open,
		       (unsigned long long)cb->pages_lost_at_open);
		snprintf(ctx, sizeof(ctx), "{\"bdev\":\"%s\",\"entries\":%llu,\"pages\":%llu}", cb->name,
			 (unsigned long long)cb->repaired_at_open,
			 (unsigned long long)cb->pages_lost_at_open);
		fb_notify(cb->e, "compress_repaired", ctx);
		rc = commit_sync(cb);
		if (rc)
			fb_err_set(err, "writing the repaired chunk map of '%s' failed: %s", cb->name,
				   strerror(-rc));
	}
	return rc;
}

static int cmp_open(struct fb_engine *e, const struct open_args *a, char **out_name,
		    struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);
	struct cmp_bdev *cb = calloc(1, sizeof(*cb));
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = true};
	struct fb_bdev_register_opts ro;
	struct fb_cmp_header h;
	struct fb_bdev *base;
	uint8_t *hdr = NULL;
	char holder[320], msg[512];
	uint64_t base_bytes;
	int rc;

	if (!cb) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&cb->mu, NULL);
	cb->e = e;
	cb->mod = mod;
	cb->base_name = strdup(a->base_name);
	if (a->name)
		cb->name = strdup(a->name);
	else if (asprintf(&cb->name, "COMP_%s", a->base_name) < 0)
		cb->name = NULL;
	if (!cb->base_name || !cb->name) {
		fb_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	{
		struct fb_bdev_desc *taken;
		struct fb_err ignore;

		if (fb_bdev_open(e, cb->name, NULL, &taken, &ignore) == 0) {
			fb_bdev_close(taken);
			fb_err_set(err, "a bdev named '%s' exists already. Fix: pass another name",
				   cb->name);
			rc = -EEXIST;
			goto fail;
		}
	}
	snprintf(holder, sizeof(holder), "compress bdev '%s'", cb->name);
	oo.holder = holder;
	oo.event_cb = base_event;
	oo.event_ctx = cb;
	rc = fb_bdev_open(e, a->base_name, &oo, &cb->base, err);
	if (rc == -ENOENT)
		rc = -ENODEV; /* SPDK's code for a missing base */
	if (rc)
		goto fail;
	base = fb_bdev_desc_get_bdev(cb->base);
	cb->base_bs = fb_bdev_get_block_size(base);
	base_bytes = (uint64_t)cb->base_bs * fb_bdev_get_num_blocks(base);
	if (cb->base_bs > FB_CMP_HEADER_REGION || FB_CMP_HEADER_REGION % cb->base_bs ||
	    base_bytes < FB_CMP_HEADER_REGION) {
		if (a->create)
			fb_err_set(err, "base_bdev_name: '%s' (%u-byte blocks, %llu bytes) cannot hold a "
				   "compress volume: it needs 512..4096-byte blocks and at least 28 KiB",
				   a->base_name, cb->base_bs, (unsigned long long)base_bytes);
		rc = -EINVAL;
		goto fail;
	}
	hdr = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_HEADER_REGION);
	if (!hdr) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = fb_bdev_io_sync(cb->base, FB_IO_READ, hdr, 0, FB_CMP_HEADER_REGION / cb->base_bs, 0);
	if (rc) {
		fb_err_set(err, "reading the header of '%s' failed: %s", a->base_name, strerror(-rc));
		goto fail;
	}
	rc = fb_cmp_header_check(hdr, base_bytes, cb->base_bs, &h, msg, sizeof(msg));
	if (rc == -EINVAL) {
		fb_err_set(err, "base '%s' holds a damaged compress volume: %s. Nothing was written "
			   "to it. Fix: restore the base, or wipe its first 4 KiB to create a new "
			   "volume there", a->base_name, msg);
		goto fail;
	}
	if (rc == -ENOENT && !a->create)
		goto fail; /* examine: not a compress volume */
	if (rc == -ENOENT) {
		struct fb_cmp_geometry_req gr = {.base_bytes = base_bytes, .base_block_size = cb->base_bs,
						 .chunk_size = a->chunk_size, .lb_size = a->lb_size};
		struct fb_uuid u;

		if (!gr.lb_size)
			gr.lb_size = cb->base_bs == 512 || cb->base_bs == 4096 ? cb->base_bs : 4096;
		if (a->num_blocks) {
			if (a->num_blocks * gr.lb_size % a->chunk_size) {
				fb_err_set(err, "Invalid parameter 'num_blocks': %llu blocks of %u bytes "
					   "is not a whole number of %u-byte chunks. Fix: pass a "
					   "multiple of %u", (unsigned long long)a->num_blocks,
					   gr.lb_size, a->chunk_size, a->chunk_size / gr.lb_size);
				rc = -EINVAL;
				goto fail;
			}
			gr.num_chunks = a->num_blocks * gr.lb_size / a->chunk_size;
		}
		rc = fb_cmp_geometry(&gr, &h, msg, sizeof(msg));
		if (rc) {
			fb_err_set(err, "%s", msg);
			rc = -EINVAL;
			goto fail;
		}
		fb_uuid_generate(&u);
		memcpy(h.uuid, u.b, sizeof(h.uuid));
		h.algo = a->codec->algo;
		h.level = a->level;
		fb_cmp_header_seal(&h);
	} else if (a->create && (h.algo != (uint32_t)a->codec->algo || h.chunk_size != a->chunk_size ||
				 (a->lb_size && h.lb_size != a->lb_size))) {
		fb_err_set(err, "base '%s' already holds a compress volume (comp_algo %s, chunk_size %u, "
			   "lb_size %u) that does not match the request (comp_algo %s, chunk_size %u, "
			   "lb_size %u); nothing was written. Fix: pass the volume's parameters to "
			   "open it, or wipe the base's first 4 KiB for a new volume", a->base_name,
			   fb_cmp_codec_get((enum fb_cmp_algo)h.algo)->name, h.chunk_size, h.lb_size,
			   a->codec->name, a->chunk_size, a->lb_size);
		rc = -EINVAL;
		goto fail;
	}
	rc = fb_bdev_claim(cb->base, &fb_cmp_module, err);
	if (rc)
		goto fail;
	cb->codec = a->create ? a->codec : fb_cmp_codec_get((enum fb_cmp_algo)h.algo);
	cb->level = a->create ? a->level : h.level;
	cb->chunk = h.chunk_size;
	cb->lb = h.lb_size;
	cb->unit = h.unit_size;
	cb->data_off = h.data_offset;
	/* Small volumes need no more pending slots than they have chunks. */
	rc = fb_cmp_map_init(&cb->map, &h, DIRTY_CAP,
			     h.num_chunks < PENDING_CAP ? (h.num_chunks > 64 ? h.num_chunks : 64) :
							  PENDING_CAP);
	cb->commit_iov = calloc(DIRTY_CAP, sizeof(*cb->commit_iov));
	if (rc || !cb->commit_iov) {
		fb_err_set(err, "out of memory for the chunk map of '%s' (%llu chunks)", cb->name,
			   (unsigned long long)h.num_chunks);
		rc = -ENOMEM;
		goto fail;
	}
	if (rc == 0 && (rc = mod_pool(mod, err)) != 0)
		goto fail;
	if (memcmp(hdr, FB_CMP_MAGIC, 8) != 0) {
		/* New volume: the header is the only write; map pages of any
		 * earlier volume carry another uuid and read as never written. */
		memset(hdr, 0, FB_CMP_HEADER_REGION);
		memcpy(hdr, &h, sizeof(h));
		rc = fb_bdev_io_sync(cb->base, FB_IO_WRITE, hdr, 0, FB_CMP_HEADER_REGION / cb->base_bs,
				     FB_IO_FLAG_FUA);
		if (rc == 0)
			rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, base_blocks(cb), 0);
		if (rc) {
			fb_err_set(err, "writing the compress header to '%s' failed: %s", a->base_name,
				   strerror(-rc));
			goto fail;
		}
	} else if ((rc = load_map(cb, err)) != 0) {
		goto fail;
	}
	memset(&ro, 0, sizeof(ro));
	ro.size = sizeof(ro);
	ro.name = cb->name;
	memcpy(ro.uuid.b, h.uuid, sizeof(ro.uuid.b));
	ro.block_size = cb->lb;
	ro.num_blocks = h.num_chunks * cb->chunk / cb->lb;
	ro.module = &fb_cmp_module;
	ro.fn = &cmp_fn;
	ro.ctx = cb;
	ro.optimal_io_boundary = cb->chunk / cb->lb;
	ro.split_on_optimal_io_boundary = true;
	mod_link(cb);
	rc = fb_bdev_register(e, &ro, &cb->bdev, err);
	if (rc) {
		mod_unlink(cb);
		goto fail;
	}
	free(hdr);
	if (out_name)
		*out_name = strdup(cb->name);
	return 0;
fail:
	free(hdr);
	cmp_free(cb);
	return rc;
}

/* Whether a bdev starts with a compress header (valid or damaged), read
 * through a read-only descriptor so that bdevs others hold stay quiet. */
static bool has_magic(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .holder = "compress examine"};
	uint32_t bs = fb_bdev_get_block_size(bdev);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint8_t *buf;
	bool ours = false;

	if (bs > FB_CMP_HEADER_REGION || FB_CMP_HEADER_REGION % bs ||
	    fb_bdev_get_num_blocks(bdev) < FB_CMP_HEADER_REGION / bs)
		return false;
	if (fb_bdev_open(e, fb_bdev_get_name(bdev), &oo, &d, &err))
		return false;
	buf = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_HEADER_REGION);
	if (buf && fb_bdev_io_sync(d, FB_IO_READ, buf, 0, FB_CMP_HEADER_REGION / bs, 0) == 0)
		ours = memcmp(buf, FB_CMP_MAGIC, 8) == 0;
	free(buf);
	fb_bdev_close(d);
	return ours;
}

static void mod_examine(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct open_args a = {.base_name = fb_bdev_get_name(bdev)};
	struct fb_err err;

	if (fb_bdev_get_module(bdev) == &fb_cmp_module || !has_magic(e, bdev))
		return;
	if (cmp_open(e, &a, NULL, &err) == 0)
		fb_log(e, FB_LOG_INFO, "compress: opened the volume on '%s' as 'COMP_%s'",
		       a.base_name, a.base_name);
	else
		fb_log(e, FB_LOG_ERROR, "compress: not opening the volume on '%s': %s", a.base_name,
		       err.msg);
}

int fb_cmp_create(struct fb_engine *e, const struct fb_cmp_create_params *p, char **name,
		  struct fb_err *err)
{
	struct open_args a = {.base_name = p->base_bdev_name, .name = p->name, .create = true,
			      .lb_size = p->lb_size, .chunk_size = p->chunk_size,
			      .num_blocks = p->num_blocks};
	const char *eng = p->engine ? p->engine : "auto";
	const char *algo = p->comp_algo ? p->comp_algo : "deflate";

	if (strcmp(eng, "doca") == 0) {
		fb_err_set(err, "Invalid parameter 'engine': \"doca\" needs a BlueField DPU with DOCA "
			   "compress, which this engine was not built for (BlueField-3 can only "
			   "decompress in hardware; the slot is in src/compress/codec.h). Fix: pass "
			   "engine \"cpu\" or \"auto\"");
		return -EINVAL;
	}
	if (strcmp(eng, "gpu") == 0) {
		fb_err_set(err, "Invalid parameter 'engine': \"gpu\" offload is not implemented yet. "
			   "Fix: pass engine \"cpu\" or \"auto\"");
		return -EINVAL;
	}
	if (strcmp(eng, "auto") != 0 && strcmp(eng, "cpu") != 0) {
		fb_err_set(err, "Invalid parameter 'engine': unknown engine \"%s\". Fix: pass \"auto\" "
			   "or \"cpu\" (\"doca\" and \"gpu\" are not available here)", eng);
		return -EINVAL;
	}
	a.codec = fb_cmp_codec_by_name(algo);
	if (!a.codec) {
		fb_err_set(err, "Invalid parameter 'comp_algo': unknown algorithm \"%s\". Fix: pass "
			   "one of %s", algo, fb_cmp_codec_names());
		return -EINVAL;
	}
	a.level = p->comp_level == UINT32_MAX ? a.codec->default_level : (int)p->comp_level;
	if (p->comp_level != UINT32_MAX &&
	    (p->comp_level > (uint32_t)a.codec->max_level || (int)p->comp_level < a.codec->min_level)) {
		fb_err_set(err, "Invalid parameter 'comp_level': %s takes levels %d to %d, got %u. "
			   "Fix: pass e.g. %d (the default)", a.codec->name, a.codec->min_level,
			   a.codec->max_level, p->comp_level, a.codec->default_level);
		return -EINVAL;
	}
	if (p->lb_size && p->lb_size != 512 && p->lb_size != 4096) {
		fb_err_set(err, "Invalid parameter 'lb_size': must be 512 or 4096, got %u. Fix: pass "
			   "512 or 4096", p->lb_size);
		return -EINVAL;
	}
	return cmp_open(e, &a, name, err);
}

const struct fb_bdev_module fb_cmp_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "compress",
	.product_name = "compress",
	.io_ctx_size = sizeof(struct cmp_io),
	.channel_ctx_size = sizeof(struct cmp_channel),
	.init = mod_init,
	.fini = mod_fini,
	.examine = mod_examine,
	.config_json = mod_config_json,
	.rpcs = fb_cmp_rpcs,
	.nrpcs = FB_CMP_NRPCS,
};
FB_BDEV_MODULE_REGISTER(fb_cmp_module)
