/* The compress module's worker pool: codec work off the reactors.
 *
 * A job is embedded in the caller's per-I/O context (no allocation per
 * job). A worker runs job->work with its own codec contexts, then sends
 * job->done to the job's reactor (fb_reactor_send), so completions run on
 * the reactor that owns the I/O. A pool of 0 threads runs work inline on
 * the submitting reactor (for small machines and comparisons). */
#ifndef FB_COMPRESS_WORKER_H
#define FB_COMPRESS_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "codec.h"
#include "flexbso/thread.h"

struct fb_cmp_job {
	struct fb_cmp_job *next;
	void (*work)(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs);
	fb_msg_fn done;              /* done(job) on reactor */
	struct fb_reactor *reactor;
};

struct fb_cmp_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fb_cmp_job *head, *tail;
	bool stop;
	unsigned nthreads, nreactors;
	pthread_t *threads;
	struct fb_cmp_codec_ctxs inline_ctxs[]; /* one per reactor, for 0 threads */
};

/* 0 or -errno. nreactors sizes the inline contexts. */
int fb_cmp_pool_create(unsigned nthreads, unsigned nreactors, struct fb_cmp_pool **out);
/* Joins the threads (every job must be done). */
void fb_cmp_pool_destroy(struct fb_cmp_pool *p);
/* On a reactor: runs the job on a worker, or inline when the pool has no
 * threads (done then runs before this returns). */
void fb_cmp_pool_submit(struct fb_cmp_pool *p, struct fb_cmp_job *job);

/* On a reactor: runs the job right here with the reactor's own codec
 * contexts, for work short enough not to stall the reactor (decoding one
 * chunk). done runs before this returns. */
void fb_cmp_pool_run_here(struct fb_cmp_pool *p, struct fb_cmp_job *job);

#endif
