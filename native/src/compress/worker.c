/* Worker pool (see worker.h). */
#include <errno.h>
#include <stdlib.h>

#include "worker.h"

/* On reactor: runs the done callbacks of the jobs queued for it, in order. */
static void drain(void *arg)
{
	struct fb_cmp_doneq *q = arg;
	struct fb_cmp_job *j, *fifo = NULL;

	/* Cleared first: a job pushed from here on sends a new message. */
	atomic_store(&q->scheduled, false);
	j = atomic_exchange(&q->head, NULL);
	while (j) {
		struct fb_cmp_job *next = j->next;

		j->next = fifo;
		fifo = j;
		j = next;
	}
	while (fifo) {
		j = fifo;
		fifo = j->next;
		j->done(j);
	}
}

/* Queues j for its reactor's drain; sends no message (see announce). */
static void done_push(struct fb_cmp_pool *p, struct fb_cmp_job *j)
{
	struct fb_cmp_doneq *q = &p->dq[fb_reactor_index(j->reactor)];
	struct fb_cmp_job *old = atomic_load(&q->head);

	do {
		j->next = old;
	} while (!atomic_compare_exchange_weak(&q->head, &old, j));
}

/* Makes reactor i drain its done list: one message, unless one is on its
 * way already (that drain takes every job pushed before it runs). */
static void announce(struct fb_cmp_pool *p, unsigned i)
{
	struct fb_cmp_doneq *q = &p->dq[i];

	if (!atomic_exchange(&q->scheduled, true))
		fb_reactor_send(fb_engine_get_reactor(p->e, i), drain, q);
}

/* Announces reactor i's held completions if there are any and they are
 * due: `all` (the queue ran dry: nothing else would), enough of them, or
 * the first waited long enough. */
static void flush_held(struct fb_cmp_pool *p, struct fb_cmp_held *h, unsigned i, bool all,
		       uint64_t now)
{
	if (h[i].n && (all || h[i].n >= FB_CMP_DONE_BATCH || now - h[i].since >= FB_CMP_DONE_HOLD_NS)) {
		announce(p, i);
		h[i].n = 0;
	}
}

static void *worker_main(void *arg)
{
	struct fb_cmp_pool *p = arg;
	struct fb_cmp_codec_ctxs ctxs = {0};
	struct fb_cmp_held *held = &p->held[atomic_fetch_add(&p->started, 1) * p->nreactors];
	bool any_held = false;

	for (;;) {
		struct fb_cmp_job *j;
		bool more;
		unsigned r;
		uint64_t now;

		pthread_mutex_lock(&p->mu);
		if (!p->head && any_held) {
			/* About to wait: hand back everything first. */
			pthread_mutex_unlock(&p->mu);
			for (unsigned i = 0; i < p->nreactors; i++)
				flush_held(p, held, i, true, 0);
			any_held = false;
			continue;
		}
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		j = p->head;
		if (!j) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		more = p->head != NULL;
		pthread_mutex_unlock(&p->mu);
		j->work(j, &ctxs);
		r = fb_reactor_index(j->reactor);
		done_push(p, j);
		now = fb_now_ns();
		if (!held[r].n++)
			held[r].since = now;
		any_held = false;
		for (unsigned i = 0; i < p->nreactors; i++) {
			flush_held(p, held, i, !more, now);
			any_held |= held[i].n != 0;
		}
	}
	fb_cmp_codec_ctxs_free(&ctxs);
	return NULL;
}

int fb_cmp_pool_create(struct fb_engine *e, unsigned nthreads, struct fb_cmp_pool **out)
{
	unsigned nreactors = fb_engine_reactor_count(e);
	struct fb_cmp_pool *p = calloc(1, sizeof(*p) + nreactors * sizeof(p->inline_ctxs[0]));
	int rc = 0;

	if (!p)
		return -ENOMEM;
	p->e = e;
	p->nreactors = nreactors;
	p->dq = calloc(nreactors, sizeof(*p->dq));
	if (!p->dq) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threads = calloc(nthreads ? nthreads : 1, sizeof(*p->threads));
	p->held = calloc((nthreads ? nthreads : 1) * nreactors, sizeof(*p->held));
	if (!p->threads || !p->held) {
		rc = -ENOMEM;
		goto fail;
	}
	for (; p->nthreads < nthreads; p->nthreads++) {
		rc = -pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
		if (rc)
			goto fail;
		pthread_setname_np(p->threads[p->nthreads], "fb-compress");
	}
	*out = p;
	return 0;
fail:
	fb_cmp_pool_destroy(p);
	return rc;
}

static void noop(void *arg)
{
	(void)arg;
}

void fb_cmp_pool_destroy(struct fb_cmp_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* A drain message may still be queued (one sent for an empty list):
	 * reactors run messages in order, so after this none refers to dq. */
	if (p->nthreads)
		fb_engine_run_on_all(p->e, noop, NULL);
	free(p->dq);
	free(p->threads);
	free(p->held);
	for (unsigned i = 0; i < p->nreactors; i++)
		fb_cmp_codec_ctxs_free(&p->inline_ctxs[i]);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

void fb_cmp_pool_run_here(struct fb_cmp_pool *p, struct fb_cmp_job *job)
{
	job->work(job, &p->inline_ctxs[fb_reactor_index(job->reactor)]);
	job->done(job);
}

void fb_cmp_pool_submit(struct fb_cmp_pool *p, struct fb_cmp_job *job)
{
	if (p->nthreads == 0) {
		fb_cmp_pool_run_here(p, job);
		return;
	}
	job->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}
