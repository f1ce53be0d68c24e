/* Offload workers (thread.h, fb_offload_submit): a FIFO of intrusive tasks
 * under one mutex, served by a few worker threads that sleep on a condition
 * variable when it is empty. A finished task is pushed onto its reactor's
 * lock-free `offload_done` list (the reactor drains it every loop pass, as
 * it drains messages) and the reactor is woken if it sleeps.
 *
 * When every worker is busy and a task already waits, the submitting
 * reactor runs the task itself (then done on its next loop pass).
 *
 * The pool starts on the first submit, so an engine that never offloads
 * has no extra threads (and by default it has none for CPUs the reactors
 * hold: fb_engine_opts.offload_workers); it stops before the reactors do (fb_engine_destroy
 * deletes every bdev first, so no task is in flight by then, and a worker
 * may still be waking its reactor for the last one).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct fb_offload_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fb_offload *head, *tail; /* queued, FIFO */
	unsigned idle;                  /* workers waiting on cond */
	bool stop;
	unsigned n;                     /* workers running; 0: run tasks inline */
	pthread_t th[FB_OFFLOAD_MAX_WORKERS];
};

/* Hands a finished task back to its reactor. */
static void offload_finish(struct fb_offload *o)
{
	struct fb_reactor *r = o->r;
	struct fb_offload *old = atomic_load_explicit(&r->offload_done, memory_order_relaxed);

	do {
		o->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&r->offload_done, &old, o, memory_order_seq_cst,
						       memory_order_relaxed));
	if (fb_reactor_current() != r)
		fb_reactor_wake(r);
}

static void *offload_worker(void *arg)
{
	struct fb_offload_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct fb_offload *o;

		while (!p->head && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (!p->head)
			break; /* stopping, and nothing left */
		o = p->head;
		p->head = o->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		o->work(o);
		offload_finish(o);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Starts the pool (under e->offload_lock). A pool whose threads could not
 * start has n == 0 and runs tasks inline. NULL only without memory. */
static struct fb_offload_pool *offload_start(struct fb_engine *e)
{
	struct fb_offload_pool *p = calloc(1, sizeof(*p));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), spare = cpus - (long)e->nreactors;
	unsigned want = e->opts.offload_workers;
	pthread_mutexattr_t ma;

	if (!p)
		return NULL;
	/* By default workers use the CPUs the reactors leave free. Where the
	 * reactors have them all, a worker only races its reactor for the same
	 * CPU (and for memory bandwidth): on 2 CPUs with 2 reactors, 1 MiB
	 * vhost reads and writes at QD8 took 25-40% less CPU per byte inline,
	 * with no less throughput on 1 or 2 queues (measured). */
	if (!want)
		want = spare > 0 ? (unsigned)spare : 0;
	if (want > FB_OFFLOAD_MAX_WORKERS)
		want = FB_OFFLOAD_MAX_WORKERS;
	/* Adaptive: the lock is held for a few instructions, so a contender
	 * (the reactor submitting while a worker dequeues) spins briefly
	 * instead of a futex sleep and wake per collision. */
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&p->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < want; i++) {
		int rc = pthread_create(&p->th[p->n], NULL, offload_worker, p);

		if (rc) {
			fb_log(e, FB_LOG_WARN, "offload worker %u did not start (%s); %u running%s", i,
			       strerror(rc), p->n, p->n ? "" : ": offloaded work runs on the reactors");
			break;
		}
		pthread_setname_np(p->th[p->n], "fb_offload");
		p->n++;
	}
	return p;
}

void fb_offload_submit(struct fb_reactor *r, struct fb_offload *o)
{
	struct fb_engine *e = fb_reactor_engine(r);
	struct fb_offload_pool *p = atomic_load_explicit(&e->offload, memory_order_acquire);
	bool wake;

	o->r = r;
	o->next = NULL;
	if (!p) {
		pthread_mutex_lock(&e->offload_lock);
		p = atomic_load_explicit(&e->offload, memory_order_relaxed);
		if (!p) {
			p = offload_start(e);
			atomic_store_explicit(&e->offload, p, memory_order_release);
		}
		pthread_mutex_unlock(&e->offload_lock);
	}
	if (!p || p->n == 0)
		goto inline_work;
	pthread_mutex_lock(&p->lock);
	/* Every worker busy and work already waiting: the reactor is the extra
	 * worker (no slower than before offload existed, and the queue cannot
	 * grow without bound while cores are scarce). */
	if (p->idle == 0 && p->head) {
		pthread_mutex_unlock(&p->lock);
		goto inline_work;
	}
	if (p->tail)
		p->tail->next = o;
	else
		p->head = o;
	p->tail = o;
	wake = p->idle > 0;
	pthread_mutex_unlock(&p->lock);
	/* Signalled after the unlock: a worker woken under it would block on
	 * the lock at once and cost a second futex wake at the unlock. */
	if (wake)
		pthread_cond_signal(&p->cond);
	return;
inline_work:
	o->work(o);
	offload_finish(o); /* done runs on the next loop pass, as promised */
}

unsigned fb_offload_drain(struct fb_reactor *r)
{
	struct fb_offload *o, *rev = NULL, *next;
	unsigned n = 0;

	if (!atomic_load_explicit(&r->offload_done, memory_order_relaxed))
		return 0;
	o = atomic_exchange(&r->offload_done, NULL);
	/* Workers push LIFO; reverse to complete in finishing order. */
	while (o) {
		next = o->next;
		o->next = rev;
		rev = o;
		o = next;
	}
	for (o = rev; o; o = next) {
		next = o->next;
		o->done(o);
		n++;
	}
	return n;
}

void fb_offload_fini(struct fb_engine *e)
{
	struct fb_offload_pool *p = atomic_load(&e->offload);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	atomic_store(&e->offload, NULL);
}
