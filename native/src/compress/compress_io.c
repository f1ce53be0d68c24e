/* The compress bdev's I/O path.
 *
 * The core splits requests at chunk boundaries (optimal_io_boundary), so
 * each one touches one chunk. It takes that chunk's lock (reads too: a
 * read must not see the units of a chunk being rewritten reused), looks
 * up the chunk's entry in the map cache (reading its map page on a miss)
 * and pins that page until it ends, then:
 *   read    map entry -> base read of the stored units (a zcopy where the
 *           base lends its memory: no copy) -> CRC32C check + decode (on
 *           the reactor: short and bounded) into the caller's buffer
 *   write   (partial: read and decode the old chunk) -> merge -> worker:
 *           all-zero check, compress (early abort to raw when it does not
 *           shrink by 1/8), CRC32C -> allocate units -> base write -> map
 *           entry (map.c's rules) -> with FUA, wait for a commit
 *   unmap / write-zeroes: whole chunks become data-less entries; partial
 *           ones are writes of zeros (FB_IO_FLAG_NO_HOLE changes nothing:
 *           a zero chunk is a map flag however it was written)
 *   flush   a commit (compress_commit.c).
 * Compression runs on the module's worker pool and returns to the I/O's
 * reactor with fb_reactor_send. Per-I/O state lives in the driver context,
 * chunk buffers come from the channel (fb_io_channel_get_buf): the hot path
 * allocates nothing itself. Map, allocator, chunk locks and the commit
 * state share one mutex, held for short bookkeeping only, never across I/O
 * or codec work.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "compress_internal.h"

static void cio_finish(struct cmp_io *c, int status);
static void cio_start(struct cmp_io *c);

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

struct fb_reactor *fb_cmp_io_reactor(struct cmp_io *c)
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

void fb_cmp_io_msg_after(void *arg)
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
		fb_reactor_send(fb_cmp_io_reactor(n), lock_granted, n);
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
	c->job.reactor = fb_cmp_io_reactor(c);
	if (here)
		fb_cmp_pool_run_here(c->cb->mod->pool, &c->job);
	else
		fb_cmp_pool_submit(c->cb->mod->pool, &c->job);
}

static void add_codec_stats(struct fb_cmp_codec_stats *s, bool comp, uint64_t in, uint64_t out,
			    uint64_t ns)
{
	if (comp) {
		atomic_fetch_add_explicit(&s->comp_in, in, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->comp_out, out, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->comp_ns, ns, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->comp_calls, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->decomp_in, in, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->decomp_out, out, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->decomp_ns, ns, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->decomp_calls, 1, memory_order_relaxed);
	}
}

/* Checks the stored bytes (storep) and points plainp at the chunk's plain
 * bytes: storep itself for a raw chunk, else the decoded copy in the
 * caller's buffer (a whole-chunk read) or buf[0] (on the reactor, see
 * old_read). */
static void decode_work(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs)
{
	struct cmp_io *c = (struct cmp_io *)(void *)job;
	struct cmp_bdev *cb = c->cb;
	uint32_t len = fb_cmp_entry_len(&c->old);
	uint64_t t0;

	if (fb_cmp_crc32c(c->storep, len) != c->old.crc) {
		c->rc = -EIO;
		return;
	}
	c->rc = 0;
	if (fb_cmp_entry_state(&c->old) == FB_CMP_RAW) {
		c->plainp = c->storep;
		return;
	}
	c->plainp = c->user ? c->user : c->buf[0];
	t0 = fb_now_ns();
	c->rc = fb_cmp_decompress(ctxs, cb->codec, c->storep, len, c->plainp, cb->chunk);
	add_codec_stats(&cb->st, false, len, cb->chunk, fb_now_ns() - t0);
}

/* Worker: zero check, incompressibility probe, compress plainp (the
 * caller's buffer for a whole-chunk write, else a chunk buffer) into the
 * chunk buffer not holding it (early abort: must save 1/8), CRC32C of what
 * will be stored; storep points at it. */
static void encode_work(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs)
{
	struct cmp_io *c = (struct cmp_io *)(void *)job;
	struct cmp_bdev *cb = c->cb;
	uint8_t *src = c->plainp, *dst = src == c->buf[1] ? c->buf[0] : c->buf[1];
	size_t n = 0;
	uint64_t t0;
	int rc;

	c->rc = 0;
	if (all_zero(src, cb->chunk)) {
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_ZERO, 0)};
		return;
	}
	if (c->raw_hint) {
		rc = -ENOSPC;
		atomic_fetch_add_explicit(&cb->probe_raw, 1, memory_order_relaxed);
	} else {
		t0 = fb_now_ns();
		rc = fb_cmp_compress(ctxs, cb->codec, atomic_load_explicit(&cb->level, memory_order_relaxed),
				     src, cb->chunk, dst, cb->chunk - cb->chunk / 8, &n);
		t0 = fb_now_ns() - t0;
		add_codec_stats(&cb->st, true, cb->chunk, rc ? cb->chunk : n, t0);
		/* Racing updates lose a sample at worst: it is a hint. */
		uint64_t r = atomic_load_explicit(&cb->comp_recent_ns, memory_order_relaxed);

		atomic_store_explicit(&cb->comp_recent_ns, fb_cmp_recent_ns(r, t0), memory_order_relaxed);
		if (rc == -ENOSPC)
			atomic_fetch_add_explicit(&cb->early_aborts, 1, memory_order_relaxed);
		if (c->unsure) {
			unsigned f = atomic_load_explicit(&cb->unsure_fails, memory_order_relaxed);

			atomic_store_explicit(&cb->unsure_fails, rc == -ENOSPC ? (f < 8 ? f + 1 : 8) : 0,
					      memory_order_relaxed);
		}
	}
	if (rc == 0) {
		/* Zero the tail of the last unit: no stale buffer bytes on disk. */
		memset(dst + n, 0, fb_cmp_map_units(&cb->map, (uint32_t)n) * cb->unit - n);
		c->storep = dst;
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_COMPRESSED, (uint32_t)n),
					       .crc = fb_cmp_crc32c(dst, n)};
	} else if (rc == -ENOSPC) {
		c->storep = src; /* raw, from where it is: no copy */
		c->neu = (struct fb_cmp_entry){.len_state = fb_cmp_len_state(FB_CMP_RAW, cb->chunk),
					       .crc = c->plain_crc_ok ? c->plain_crc
								      : fb_cmp_crc32c(src, cb->chunk)};
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

/* Ends the request (the core hands over one chunk per request: the bdev
 * registers optimal_io_boundary = one chunk, split on). */
static void cio_finish(struct cmp_io *c, int status)
{
	if (c->locked)
		lock_release(c);
	if (c->pinned) {
		struct fb_cmp_map_waiter *w;

		pthread_mutex_lock(&c->cb->mu);
		w = fb_cmp_map_unpin(&c->cb->map, c->chunk);
		pthread_mutex_unlock(&c->cb->mu);
		c->pinned = false;
		fb_cmp_io_wake(w);
	}
	if (c->zc) {
		fb_bdev_free_io(c->zc); /* gives the lent memory back */
		c->zc = NULL;
	}
	put_bufs(c);
	fb_bdev_io_complete(c->io, status);
}

/* The chunk buffers in need (bit i: buf[i]); false when parked (resume
 * runs once memory frees up). */
static bool cio_get_bufs_or(struct cmp_io *c, unsigned need, void (*resume)(struct cmp_io *))
{
	for (int i = 0; i < 2; i++) {
		if (!(need & (1u << i)))
			continue;
		if (!c->buf[i])
			c->buf[i] = fb_io_channel_get_buf(c->ch, c->cb->chunk);
		if (!c->buf[i]) {
			cio_park(c, c->ch, resume);
			return false;
		}
	}
	return true;
}

static bool cio_get_bufs(struct cmp_io *c, unsigned need)
{
	return cio_get_bufs_or(c, need, cio_start);
}

static void set_entry(struct cmp_io *c);

static void fua_done(struct cmp_io *c)
{
	cio_finish(c, c->rc);
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
		fb_cmp_commit_wait(c, set_entry_retry);
		return;
	}
	fb_cmp_map_set(&cb->map, c->chunk, &c->neu);
	pthread_mutex_unlock(&cb->mu);
	c->neu_allocated = false;
	if (fb_bdev_io_get_flags(c->io) & FB_IO_FLAG_FUA) {
		/* Durable before the ack; the chunk need not stay locked for it. */
		lock_release(c);
		fb_cmp_commit_wait(c, fua_done);
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

	c->biov.iov_base = c->storep;
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
	bool wait, reclaim;
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
	/* Out of space: a commit releases pending frees, if there are any (the
	 * lists include the commit in flight's; a commit without frees would
	 * give nothing, and waiting for one would loop while others commit). */
	wait = rc && (cb->map.pending[0].n || cb->map.pending[1].n);
	reclaim = !rc && fb_cmp_map_reclaim_due(&cb->map);
	pthread_mutex_unlock(&cb->mu);
	if (rc) {
		/* Then a reclaim pass, if some space is stranded (alloc.h). */
		if (wait)
			fb_cmp_commit_wait(c, encoded_retry);
		else if (!fb_cmp_reclaim_wait(c, encoded_retry))
			cio_finish(c, -ENOSPC);
		return;
	}
	if (reclaim)
		fb_cmp_reclaim_kick(cb, fb_cmp_io_reactor(c));
	c->neu_allocated = true;
	write_data(c);
}

/* Stored raw, a chunk is its CRC32C (right here, no hop to a worker and
 * back), as is a chunk of a fast codec (CMP_INLINE_NS); else the codec
 * runs on a worker. Its output goes to the chunk buffer not holding
 * plainp, taken only now: a whole-chunk write stored raw takes none. */
static void encode(struct cmp_io *c)
{
	uint64_t recent = atomic_load_explicit(&c->cb->comp_recent_ns, memory_order_relaxed);

	if (!c->raw_hint && !cio_get_bufs_or(c, 2, encode))
		return;
	run_job(c, encode_work, encoded, c->raw_hint || (recent && recent < CMP_INLINE_NS));
}

/* plainp holds the old chunk (or is the caller's whole chunk): merge the
 * request into it and encode. */
static void merge(struct cmp_io *c)
{
	uint8_t *p = c->plainp;
	struct cmp_channel *cc = fb_io_channel_get_ctx(c->ch);
	enum fb_cmp_probe probe;

	if (c->rc) {
		cio_finish(c, c->rc);
		return;
	}
	if (p == c->user) {
		/* Nothing to merge: the request is the chunk. */
	} else if (c->type == FB_IO_WRITE) {
		int iovcnt;
		struct iovec *iov = fb_bdev_io_get_iovs(c->io, &iovcnt);

		fb_iov_to_buf(p + c->off, iov, iovcnt, 0, c->len);
	} else {
		memset(p + c->off, 0, c->len);
	}
	/* Incompressible data (already compressed files, encrypted blocks)
	 * would cost a full codec attempt to learn it does not shrink: the
	 * probe spots it for well under a microsecond, and it is stored raw
	 * from the buffer it is in. "none" stores everything raw.
	 * The caller's buffer is not in cache yet, and the probe's windows
	 * lie in four pages: read first, their misses cost ~300 ns of the
	 * ~1.8 us a raw chunk takes in all. So after a chunk that went raw,
	 * the CRC32C a raw chunk needs is taken first, streaming the chunk
	 * in, and the probe reads it from cache. A wrong guess costs that CRC
	 * on a chunk the codec then shrinks (~0.5 us of lz4's ~30 us). Long
	 * random runs are judged at a glance (fb_cmp_probe_next's bound). */
	c->plain_crc_ok = false;
	if (c->cb->codec->algo == FB_CMP_NONE) {
		probe = FB_CMP_PROBE_RAW;
	} else {
		if (cc->last_raw && p == c->user) {
			c->plain_crc = fb_cmp_crc32c(p, c->cb->chunk);
			c->plain_crc_ok = true;
		}
		probe = fb_cmp_probe_next(&cc->probe, p, c->cb->chunk);
	}
	/* Chunks the probe is unsure of (slightly uneven bytes: fio's
	 * buffers, media with headers) go raw while the last four such tries
	 * did not shrink, except every 16th, which tries again so that a
	 * change in the data is noticed. */
	if (probe == FB_CMP_PROBE_UNSURE &&
	    atomic_load_explicit(&c->cb->unsure_fails, memory_order_relaxed) >= 4 &&
	    atomic_fetch_add_explicit(&c->cb->unsure_seen, 1, memory_order_relaxed) % 16 != 0)
		probe = FB_CMP_PROBE_RAW;
	c->raw_hint = probe == FB_CMP_PROBE_RAW;
	c->unsure = probe == FB_CMP_PROBE_UNSURE;
	cc->last_raw = c->raw_hint;
	encode(c);
}

static void decoded_for_read(struct cmp_io *c)
{
	int iovcnt;
	struct iovec *iov;

	if (c->rc) {
		cio_finish(c, c->rc);
		return;
	}
	if (c->plainp != c->user) {
		iov = fb_bdev_io_get_iovs(c->io, &iovcnt);
		fb_iov_from_buf(iov, iovcnt, 0, c->plainp + c->off, c->len);
	}
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

/* storep holds the chunk's stored bytes: check and decode them. */
static void stored_ready(struct cmp_io *c)
{
	/* Decoding one chunk is short and bounded (tens of microseconds for
	 * every decoder at 16 KiB): it runs on the reactor, saving two thread
	 * hops per read. Compression, up to milliseconds at high levels, goes
	 * to the workers. */
	run_job(c, decode_work, old_decoded, true);
}

static void old_read(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_io *c = arg;

	iov_done_free(bio);
	if (status) {
		cio_finish(c, status);
		return;
	}
	stored_ready(c);
}

/* Stored bytes lent in pieces: gathered into buf[1] for the decoder. */
static void zread_gather(struct cmp_io *c)
{
	int n;
	const struct iovec *iov = fb_bdev_io_get_buf_iovs(c->zc, &n);

	if (!cio_get_bufs_or(c, 2, zread_gather))
		return;
	c->storep = c->buf[1];
	fb_iov_to_buf(c->storep, iov, n, 0, c->biov.iov_len);
	iov_done_free(c->zc);
	c->zc = NULL;
	stored_ready(c);
}

/* A zcopy read of the stored units: decode from the base's own memory (the
 * chunk lock keeps its units from being rewritten meanwhile), held until
 * the request ends. */
static void old_zread(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_io *c = arg;
	int n = 0;
	const struct iovec *iov = status ? NULL : fb_bdev_io_get_buf_iovs(bio, &n);

	if (status) {
		iov_done_free(bio);
		cio_finish(c, status);
		return;
	}
	c->zc = bio;
	if (n != 1) {
		zread_gather(c);
		return;
	}
	c->storep = iov[0].iov_base;
	stored_ready(c);
}

/* Reads the chunk's stored units into storep. */
static void read_old(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	uint64_t units = fb_cmp_map_units(&cb->map, fb_cmp_entry_len(&c->old));
	int rc;

	c->biov.iov_base = c->storep;
	c->biov.iov_len = units * cb->unit;
	/* Reads borrow the base's memory instead where the base lends it (a
	 * RAM base): no copy before the decode (storep is NULL: cio_go took no
	 * buffer for it). Not read-modify-write: a raw old chunk is merged
	 * into in place. */
	if (!c->storep)
		rc = fb_bdev_zcopy_start(cb->base, base_ch(c),
					 (cb->data_off + c->old.unit * cb->unit) / cb->base_bs,
					 units * cb->unit / cb->base_bs, true, old_zread, c);
	else
		rc = fb_bdev_readv_blocks(cb->base, base_ch(c), &c->biov, 1,
					  (cb->data_off + c->old.unit * cb->unit) / cb->base_bs,
					  units * cb->unit / cb->base_bs, old_read, c);
	if (rc == -ENOMEM)
		cio_park(c, base_ch(c), read_old);
	else if (rc)
		cio_finish(c, rc);
}

/* The caller's buffer when the request is the whole chunk in one piece:
 * reads decode into it and writes compress (or store raw) from it, with
 * no copy through a chunk buffer. */
static uint8_t *whole_chunk_buf(struct cmp_io *c)
{
	int iovcnt;
	struct iovec *iov;

	if (c->off != 0 || c->len != c->cb->chunk ||
	    (c->type != FB_IO_READ && c->type != FB_IO_WRITE))
		return NULL;
	iov = fb_bdev_io_get_iovs(c->io, &iovcnt);
	return iovcnt == 1 && iov[0].iov_len == c->len ? iov[0].iov_base : NULL;
}

/* Holding the chunk lock and a pin on its map page: c->old is its entry. */
static void cio_go(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	bool full = c->off == 0 && c->len == cb->chunk;
	bool raw = fb_cmp_entry_state(&c->old) == FB_CMP_RAW;

	c->rc = 0;
	c->user = whole_chunk_buf(c);
	if (c->type == FB_IO_READ) {
		if (!entry_has_data(&c->old)) {
			int iovcnt;
			struct iovec *iov = fb_bdev_io_get_iovs(c->io, &iovcnt);

			fb_iov_memset(iov, iovcnt, 0, 0, c->len);
			cio_finish(c, 0);
			return;
		}
		/* A raw chunk read whole lands in the caller's buffer; otherwise
		 * the stored bytes are the base's lent memory (zcopy) or go to
		 * buf[1], decoded into the caller's buffer or buf[0]. */
		bool lend = cb->base_zcopy && !(raw && c->user);
		unsigned need = (raw || c->user ? 0 : 1) | (raw && c->user ? 0 : lend ? 0 : 2);

		if (!cio_get_bufs(c, need))
			return;
		c->storep = raw && c->user ? c->user : lend ? NULL : c->buf[1];
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
	if (c->user) {
		c->plainp = c->user; /* encode takes a buffer if it compresses */
		merge(c);
		return;
	}
	if (!cio_get_bufs(c, 3))
		return;
	if (!full && entry_has_data(&c->old)) {
		atomic_fetch_add_explicit(&cb->rmw, 1, memory_order_relaxed);
		c->storep = c->buf[1];
		read_old(c);
		return;
	}
	c->plainp = c->buf[0];
	if (!full)
		memset(c->buf[0], 0, cb->chunk);
	merge(c);
}

/* ------------------------------------------------------- map lookups */

static void lookup(struct cmp_io *c);

static void lookup_msg(void *arg)
{
	lookup(arg);
}

void fb_cmp_io_wake(struct fb_cmp_map_waiter *w)
{
	while (w) {
		struct fb_cmp_map_waiter *next = w->next;
		struct cmp_io *c = (struct cmp_io *)(void *)((char *)w - offsetof(struct cmp_io, mw));

		fb_reactor_send(fb_cmp_io_reactor(c), lookup_msg, c);
		w = next;
	}
}

static void page_read(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_io *c = arg;
	struct cmp_bdev *cb = c->cb;
	uint64_t page = fb_cmp_map_page_of(c->chunk);
	struct fb_cmp_map_waiter *w;
	bool lost;

	if (bio)
		iov_done_free(bio);
	pthread_mutex_lock(&cb->mu);
	w = fb_cmp_map_load_done(&cb->map, page, status ? NULL : c->pagebuf,
				 c->pagebuf + FB_CMP_PAGE_SIZE, &lost);
	pthread_mutex_unlock(&cb->mu);
	fb_io_channel_put_buf(c->ch, c->pagebuf, 2 * FB_CMP_PAGE_SIZE);
	c->pagebuf = NULL;
	fb_cmp_io_wake(w);
	if (lost)
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': map page %llu: both copies damaged since "
		       "open: its chunks read as zeros until rewritten (the next open repairs it)",
		       cb->name, (unsigned long long)page);
	if (status)
		cio_finish(c, status);
	else
		lookup(c);
}

/* c owns the load of its chunk's map page: read both copies. */
static void page_load(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	int rc;

	if (!c->pagebuf)
		c->pagebuf = fb_io_channel_get_buf(c->ch, 2 * FB_CMP_PAGE_SIZE);
	if (!c->pagebuf) {
		cio_park(c, c->ch, page_load);
		return;
	}
	c->biov.iov_base = c->pagebuf;
	c->biov.iov_len = 2 * FB_CMP_PAGE_SIZE;
	rc = fb_bdev_readv_blocks(cb->base, base_ch(c), &c->biov, 1,
				  fb_cmp_page_offset(&cb->map.h, fb_cmp_map_page_of(c->chunk), 0) / cb->base_bs,
				  2 * FB_CMP_PAGE_SIZE / cb->base_bs, page_read, c);
	if (rc == -ENOMEM)
		cio_park(c, base_ch(c), page_load);
	else if (rc)
		page_read(NULL, rc, c);
}

static void lookup_after_commit(struct cmp_io *c)
{
	if (c->rc)
		cio_finish(c, c->rc);
	else
		lookup(c);
}

/* Holding the chunk lock: the chunk's entry, pinned. */
static void lookup(struct cmp_io *c)
{
	struct cmp_bdev *cb = c->cb;
	int rc;

	pthread_mutex_lock(&cb->mu);
	rc = fb_cmp_map_get(&cb->map, c->chunk, &c->old, &c->mw);
	pthread_mutex_unlock(&cb->mu);
	switch (rc) {
	case 0:
		c->pinned = true;
		cio_go(c);
		break;
	case FB_CMP_MAP_LOAD:
		page_load(c);
		break;
	case -EAGAIN:
		/* Every slot that could be freed holds a dirty page. */
		fb_cmp_commit_wait(c, lookup_after_commit);
		break;
	default:
		break; /* queued: fb_cmp_io_wake brings it back */
	}
}

/* Holding the chunk lock (again after a wait for buffers). */
static void cio_start(struct cmp_io *c)
{
	if (c->pinned)
		cio_go(c);
	else
		lookup(c);
}

static void flush_done(struct cmp_io *c)
{
	fb_bdev_io_complete(c->io, c->rc);
}

void fb_cmp_io_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
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
		fb_cmp_commit_wait(c, flush_done);
		return;
	}
	if (c->type != FB_IO_READ && c->type != FB_IO_WRITE && c->type != FB_IO_UNMAP &&
	    c->type != FB_IO_WRITE_ZEROES) {
		fb_bdev_io_complete_deferred(io, -ENOTSUP);
		return;
	}
	c->chunk = off / cb->chunk;
	c->off = (uint32_t)(off % cb->chunk);
	c->len = (uint32_t)len;
	if (len == 0 || c->off + len > cb->chunk) {
		fb_bdev_io_complete_deferred(io, -EINVAL); /* the core splits at chunks */
		return;
	}
	if (lock_acquire(c))
		cio_start(c);
}

