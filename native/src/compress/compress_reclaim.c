/* Reclaim passes of the compress bdev: one at a time per volume, on the
 * reactor of the write that started it (a background pass when free space
 * runs low, an urgent one when a write found none while some is
 * stranded). A pass reads the map from the base FB_CMP_RECLAIM_PAGES pages
 * at a time, straight from the base rather than through the page cache,
 * so that it neither evicts the I/O path's pages nor waits for their
 * slots (map.c takes the cached pages' entries, and reads a window again
 * when a changed page left the cache while it was read). Writes waiting
 * for space resume when it ends. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress_internal.h"

#define RC_READS_MAX 8 /* reads of one window before the pass gives up */

static void rc_read(void *arg);

static void rc_end(struct cmp_bdev *cb, bool abort)
{
	struct cmp_io *w;
	uint64_t made, mism0, over0, mism, over, chunk;
	bool retry;

	if (cb->rc_ch)
		fb_put_io_channel(cb->rc_ch);
	cb->rc_ch = NULL;
	free(cb->rc_buf);
	cb->rc_buf = NULL;
	pthread_mutex_lock(&cb->mu);
	mism0 = cb->map.reclaim_mismatches;
	over0 = cb->map.reclaim_overlaps;
	made = fb_cmp_map_reclaim_end(&cb->map, abort);
	mism = cb->map.reclaim_mismatches - mism0;
	over = cb->map.reclaim_overlaps;
	chunk = cb->map.rc_overlap_chunk;
	w = cb->rwait_head;
	cb->rwait_head = NULL;
	/* Writes that waited for a background pass that found nothing look
	 * once more (and start an urgent pass); after an urgent one they fail. */
	retry = made || !cb->map.rc_urgent;
	pthread_mutex_unlock(&cb->mu);
	if (mism)
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': reclaim: %llu segment(s) hold more used "
		       "units than the map references (frees lost to a failed commit, or damage); "
		       "their units stay used until the next open rebuilds free space", cb->name,
		       (unsigned long long)mism);
	if (over > over0)
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': reclaim: two chunks claim the same units "
		       "(first: chunk %llu); those segments stay as they are and the next open "
		       "repairs the map", cb->name, (unsigned long long)chunk);
	while (w) {
		struct cmp_io *n = w->cnext;

		w->cnext = NULL;
		w->rc = retry ? 0 : -ENOSPC;
		fb_reactor_send(fb_cmp_io_reactor(w), fb_cmp_io_msg_after, w);
		w = n;
	}
}

static void rc_next_msg(void *arg)
{
	struct cmp_bdev *cb = arg;
	uint64_t p0;
	size_t n;

	pthread_mutex_lock(&cb->mu);
	p0 = cb->map.rc_p0 + cb->map.rc_n;
	n = cb->map.h.map_pages - p0 < FB_CMP_RECLAIM_PAGES ? (size_t)(cb->map.h.map_pages - p0)
							    : FB_CMP_RECLAIM_PAGES;
	if (n)
		fb_cmp_map_reclaim_window(&cb->map, p0, n);
	pthread_mutex_unlock(&cb->mu);
	cb->rc_tries = 0;
	if (n == 0)
		rc_end(cb, false);
	else
		rc_read(cb);
}

static void rc_read_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct cmp_bdev *cb = arg;
	bool done;

	fb_bdev_free_io(bio);
	if (status) {
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': reclaim: reading the chunk map failed "
		       "(%s); the pass is dropped", cb->name, strerror(-status));
		rc_end(cb, true);
		return;
	}
	pthread_mutex_lock(&cb->mu);
	done = fb_cmp_map_reclaim_apply(&cb->map, cb->rc_buf);
	pthread_mutex_unlock(&cb->mu);
	if (!done && ++cb->rc_tries >= RC_READS_MAX) {
		rc_end(cb, true); /* pages keep changing under it: try another time */
		return;
	}
	/* A message, not a call: a base that completes inline would recurse. */
	fb_reactor_send(cb->rc_reactor, done ? rc_next_msg : rc_read, cb);
}

static void rc_read(void *arg)
{
	struct cmp_bdev *cb = arg;
	int rc;

	if (atomic_load(&cb->rc_stop)) {
		rc_end(cb, true);
		return;
	}
	cb->rc_iov.iov_base = cb->rc_buf;
	cb->rc_iov.iov_len = cb->map.rc_n * 2 * FB_CMP_PAGE_SIZE;
	rc = fb_bdev_readv_blocks(cb->base, cb->rc_ch, &cb->rc_iov, 1,
				  fb_cmp_page_offset(&cb->map.h, cb->map.rc_p0, 0) / cb->base_bs,
				  cb->rc_iov.iov_len / cb->base_bs, rc_read_done, cb);
	if (rc == -ENOMEM) {
		cb->rc_wait.cb = rc_read;
		cb->rc_wait.arg = cb;
		fb_io_channel_queue_wait(cb->rc_ch, &cb->rc_wait);
	} else if (rc) {
		rc_end(cb, true);
	}
}

/* On the pass's reactor: its channel and buffer, then the first window. */
static void rc_begin(void *arg)
{
	struct cmp_bdev *cb = arg;

	cb->rc_ch = fb_bdev_get_io_channel(cb->base);
	cb->rc_buf = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_RECLAIM_PAGES * 2 * FB_CMP_PAGE_SIZE);
	if (!cb->rc_ch || !cb->rc_buf) {
		rc_end(cb, true);
		return;
	}
	pthread_mutex_lock(&cb->mu);
	cb->map.rc_p0 = 0;
	cb->map.rc_n = 0;
	pthread_mutex_unlock(&cb->mu);
	rc_next_msg(cb);
}

void fb_cmp_reclaim_kick(struct cmp_bdev *cb, struct fb_reactor *r)
{
	bool start;

	pthread_mutex_lock(&cb->mu);
	start = fb_cmp_map_reclaim_due(&cb->map) && !atomic_load(&cb->rc_stop) &&
		fb_cmp_map_reclaim_start(&cb->map, false);
	if (start)
		cb->rc_reactor = r;
	pthread_mutex_unlock(&cb->mu);
	if (start)
		fb_reactor_send(r, rc_begin, cb);
}

bool fb_cmp_reclaim_wait(struct cmp_io *c, void (*after)(struct cmp_io *))
{
	struct cmp_bdev *cb = c->cb;
	bool start = false, queued = false;

	pthread_mutex_lock(&cb->mu);
	if (!cb->map.rc_running && cb->map.alloc.stranded && !atomic_load(&cb->rc_stop))
		start = fb_cmp_map_reclaim_start(&cb->map, true) > 0;
	if (cb->map.rc_running) {
		c->after = after;
		c->cnext = cb->rwait_head;
		cb->rwait_head = c;
		queued = true;
	}
	if (start)
		cb->rc_reactor = fb_cmp_io_reactor(c);
	pthread_mutex_unlock(&cb->mu);
	if (start)
		fb_reactor_send(cb->rc_reactor, rc_begin, cb);
	return queued;
}

bool fb_cmp_reclaim_stop(struct cmp_bdev *cb)
{
	atomic_store(&cb->rc_stop, true);
	/* A pass ends at its next read: bounded by one base read. */
	for (int ms = 0; ms < 60000; ms++) {
		bool running;

		pthread_mutex_lock(&cb->mu);
		running = cb->map.rc_running;
		pthread_mutex_unlock(&cb->mu);
		if (!running)
			return true;
		usleep(1000);
	}
	fb_log(cb->e, FB_LOG_ERROR, "compress '%s': a reclaim pass did not end within 60 s of close "
	       "(its base read never completed): the volume's memory is left allocated", cb->name);
	return false;
}
