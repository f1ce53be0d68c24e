/* Commits of the chunk map: one at a time per bdev, run on the reactor of
 * the I/O that asked for it (a flush, a FUA write, or a write waiting for
 * space or for a free map slot); waiters that arrive during a commit wait
 * for the next one, which starts as soon as this one ends. A commit flushes
 * the base (data first), writes the dirty map pages into their other slots,
 * and flushes again; only then are the frees it carries released (map.c).
 */
#include <errno.h>
#include <string.h>

#include "compress_internal.h"

static void commit_start(struct cmp_bdev *cb);

void fb_cmp_commit_wait(struct cmp_io *c, void (*after)(struct cmp_io *))
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
	struct fb_cmp_map_waiter *mw;
	bool again;

	if (cb->commit_ch)
		fb_put_io_channel(cb->commit_ch);
	cb->commit_ch = NULL;
	atomic_fetch_add(&cb->commits, 1);
	pthread_mutex_lock(&cb->mu);
	mw = fb_cmp_map_commit_done(&cb->map, rc == 0);
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
	fb_cmp_io_wake(mw);
	while (woken) {
		struct cmp_io *w = woken;

		woken = w->cnext;
		w->rc = rc;
		fb_reactor_send(fb_cmp_io_reactor(w), fb_cmp_io_msg_after, w);
	}
	if (again)
		commit_start(cb);
}

static void commit_flushed_last(struct fb_bdev_io *bio, int status, void *arg)
{
	fb_bdev_free_io(bio);
	commit_end(arg, status);
}

static void commit_final_flush(void *arg)
{
	struct cmp_bdev *cb = arg;
	int rc = fb_bdev_flush_blocks(cb->base, cb->commit_ch, 0, fb_cmp_base_blocks(cb), commit_flushed_last,
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
	int rc = fb_bdev_flush_blocks(cb->base, cb->commit_ch, 0, fb_cmp_base_blocks(cb),
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


int fb_cmp_commit_sync(struct cmp_bdev *cb)
{
	uint32_t nb = FB_CMP_PAGE_SIZE / cb->base_bs;
	int rc = 0;

	pthread_mutex_lock(&cb->mu);
	while (rc == 0 && fb_cmp_map_has_work(&cb->map)) {
		size_t n = fb_cmp_map_snapshot(&cb->map);

		rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, fb_cmp_base_blocks(cb), 0);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = fb_bdev_io_sync(cb->base, FB_IO_WRITE, cb->map.stage + i * FB_CMP_PAGE_SIZE,
					     fb_cmp_page_offset(&cb->map.h, cb->map.stage_page[i],
								fb_cmp_map_stage_slot(&cb->map, i)) /
						     cb->base_bs,
					     nb, 0);
		if (rc == 0 && n)
			rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, fb_cmp_base_blocks(cb), 0);
		/* Control thread: open and close, with no I/O that could wait. */
		(void)fb_cmp_map_commit_done(&cb->map, rc == 0);
	}
	pthread_mutex_unlock(&cb->mu);
	return rc;
}
