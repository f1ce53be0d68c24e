/* Worker pool (see worker.h). */
#include <errno.h>
#include <stdlib.h>

#include "worker.h"

static void *worker_main(void *arg)
{
	struct fb_cmp_pool *p = arg;
	struct fb_cmp_codec_ctxs ctxs = {0};

	for (;;) {
		struct fb_cmp_job *j;

		pthread_mutex_lock(&p->mu);
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
		pthread_mutex_unlock(&p->mu);
		j->work(j, &ctxs);
		fb_reactor_send(j->reactor, j->done, j);
	}
	fb_cmp_codec_ctxs_free(&ctxs);
	return NULL;
}

int fb_cmp_pool_create(unsigned nthreads, unsigned nreactors, struct fb_cmp_pool **out)
{
	struct fb_cmp_pool *p = calloc(1, sizeof(*p) + nreactors * sizeof(p->inline_ctxs[0]));
	int rc = 0;

	if (!p)
		return -ENOMEM;
	p->nreactors = nreactors;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->threads = calloc(nthreads ? nthreads : 1, sizeof(*p->threads));
	if (!p->threads) {
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
	free(p->threads);
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
