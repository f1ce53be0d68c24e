/* The compress module's worker pool: codec work off the reactors.
 *
 * A job is embedded in the caller's per-I/O context (no allocation per
 * job). A worker runs job->work with its own codec contexts, then queues
 * the job on its reactor's done list (intrusive, lock-free) and sends that
 * reactor one message per batch, not per job, so completions run on the
 * reactor that owns the I/O. A worker holds that message back while it has
 * more queued work, until FB_CMP_DONE_BATCH jobs are done or the first has
 * waited FB_CMP_DONE_HOLD_NS: a reactor woken (or kept polling) for every
 * chunk takes the CPU the worker needs where they share few cores. A pool
 * of 0 threads runs work inline on the submitting reactor (for small
 * machines and comparisons). */
#ifndef FB_COMPRESS_WORKER_H
#define FB_COMPRESS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "codec.h"
#include "flexbso/thread.h"

#define FB_CMP_DONE_BATCH 16
#define FB_CMP_DONE_HOLD_NS 100000

struct fb_cmp_job {
	struct fb_cmp_job *next;
	void (*work)(struct fb_cmp_job *job, struct fb_cmp_codec_ctxs *ctxs);
	fb_msg_fn done;              /* done(job) on reactor */
	struct fb_reactor *reactor;
};

/* Jobs done for one reactor, waiting for its drain message. */
struct fb_cmp_doneq {
	_Atomic(struct fb_cmp_job *) head; /* LIFO */
	atomic_bool scheduled;             /* a drain message is on its way */
};

/* A worker's completions for one reactor not yet announced. */
struct fb_cmp_held {
	unsigned n;
	uint64_t since;                    /* fb_now_ns of the first */
};

struct fb_cmp_pool {
	struct fb_engine *e;
	struct fb_cmp_doneq *dq;           /* one per reactor */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fb_cmp_job *head, *tail;
	bool stop;
	unsigned nthreads, nreactors;
	pthread_t *threads;
	struct fb_cmp_held *held;          /* nreactors per thread */
	atomic_uint started;               /* threads that took their row of held */
	struct fb_cmp_codec_ctxs inline_ctxs[]; /* one per reactor, for 0 threads */
};

/* 0 or -errno. */
int fb_cmp_pool_create(struct fb_engine *e, unsigned nthreads, struct fb_cmp_pool **out);
/* Control thread: joins the threads (every job must be done) and lets each
 * reactor pass its queued messages before freeing. */
void fb_cmp_pool_destroy(struct fb_cmp_pool *p);
/* On a reactor: runs the job on a worker, or inline when the pool has no
 * threads (done then runs before this returns). */
void fb_cmp_pool_submit(struct fb_cmp_pool *p, struct fb_cmp_job *job);

/* On a reactor: runs the job right here with the reactor's own codec
 * contexts, for work short enough not to stall the reactor (decoding one
 * chunk). done runs before this returns. */
void fb_cmp_pool_run_here(struct fb_cmp_pool *p, struct fb_cmp_job *job);

#endif
