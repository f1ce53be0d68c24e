/* Reactor threads: one io_uring + one MPSC message queue each. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define FB_CQE_BATCH 64

static _Thread_local struct fb_reactor *tls_reactor;

struct fb_reactor *fb_reactor_current(void)
{
	return tls_reactor;
}

struct fb_reactor *fb_engine_get_reactor(struct fb_engine *e, unsigned index)
{
	return index < e->nreactors ? &e->reactors[index] : NULL;
}

unsigned fb_reactor_index(const struct fb_reactor *r)
{
	return r->index;
}

struct fb_engine *fb_reactor_engine(const struct fb_reactor *r)
{
	return r->e;
}

int fb_reactor_submit(struct fb_reactor *r)
{
	int rc = 0;

	if (io_uring_sq_ready(&r->ring) > 0)
		rc = io_uring_submit(&r->ring);
	return rc;
}

struct io_uring_sqe *fb_reactor_get_sqe(struct fb_reactor *r)
{
	struct io_uring_sqe *sqe;

	for (;;) {
		sqe = io_uring_get_sqe(&r->ring);
		if (sqe)
			break;
		/* SQ full: push it to the kernel to make room. */
		if (io_uring_submit(&r->ring) < 0)
			sched_yield();
	}
	return sqe;
}

static void efd_arm(struct fb_reactor *r)
{
	struct io_uring_sqe *sqe = fb_reactor_get_sqe(r);

	io_uring_prep_read(sqe, r->efd, &r->efd_buf, sizeof(r->efd_buf), 0);
	io_uring_sqe_set_data(sqe, &r->efd_op);
}

static void efd_done(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_reactor *r = (struct fb_reactor *)((char *)op - offsetof(struct fb_reactor, efd_op));

	(void)flags;
	if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED)
		fb_log(r->e, FB_LOG_ERROR, "reactor %u: eventfd read failed: %s", r->index, strerror(-res));
	atomic_store(&r->wake_sent, 0);
	if (!r->stop)
		efd_arm(r);
}

static void msg_push(struct fb_reactor *r, struct fb_msg_node *m)
{
	struct fb_msg_node *old = atomic_load_explicit(&r->msgs, memory_order_relaxed);

	do {
		m->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&r->msgs, &old, m, memory_order_seq_cst,
						       memory_order_relaxed));
	if (tls_reactor == r)
		return;
	fb_reactor_wake(r);
}

void fb_reactor_wake(struct fb_reactor *r)
{
	/* Pairs with the reactor's store of `sleeping` before it re-checks its
	 * queues: one of the two sides always sees the other. */
	if (atomic_load(&r->sleeping) && atomic_exchange(&r->wake_sent, 1) == 0) {
		uint64_t one = 1;
		ssize_t n;

		do {
			n = write(r->efd, &one, sizeof(one));
		} while (n < 0 && errno == EINTR);
	}
}

void fb_reactor_send(struct fb_reactor *r, fb_msg_fn fn, void *arg)
{
	struct fb_msg_node *m;

	for (;;) {
		m = malloc(sizeof(*m));
		if (m)
			break;
		sched_yield(); /* "never fails": wait for memory rather than drop a message */
	}
	m->fn = fn;
	m->arg = arg;
	m->heap = true;
	msg_push(r, m);
}

void fb_reactor_send_node(struct fb_reactor *r, struct fb_msg_node *n, fb_msg_fn fn, void *arg)
{
	n->fn = fn;
	n->arg = arg;
	n->heap = false;
	msg_push(r, n);
}

static unsigned msgs_drain(struct fb_reactor *r)
{
	struct fb_msg_node *m = atomic_exchange(&r->msgs, NULL);
	struct fb_msg_node *rev = NULL, *next;
	unsigned n = 0;

	/* Producers push LIFO; reverse to run in send order. */
	while (m) {
		next = m->next;
		m->next = rev;
		rev = m;
		m = next;
	}
	for (m = rev; m; m = next) {
		bool heap = m->heap;

		/* A caller's node may be reused by fn: read it first. */
		next = m->next;
		m->fn(m->arg);
		if (heap)
			free(m);
		n++;
	}
	return n;
}

void fb_reactor_defer(struct fb_reactor *r, struct fb_deferred *d)
{
	d->next = NULL;
	if (r->defer_tail)
		r->defer_tail->next = d;
	else
		r->defer_head = d;
	r->defer_tail = d;
}

static unsigned deferred_run(struct fb_reactor *r)
{
	struct fb_deferred *d = r->defer_head, *next;
	unsigned n = 0;

	/* Only what was queued before this point: new deferrals wait a turn. */
	r->defer_head = r->defer_tail = NULL;
	for (; d; d = next) {
		next = d->next;
		d->fn(d);
		n++;
	}
	return n;
}

void fb_timer_init(struct fb_timer *t, void (*fn)(struct fb_timer *t))
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
}

/* A due timer stays armed until its fn runs, so a callback that cancels
 * another timer due in the same pass (say, one that frees the object both
 * timers live in) keeps it from running. */
static bool timer_unlink(struct fb_timer **head, struct fb_timer *t)
{
	for (struct fb_timer **pp = head; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			return true;
		}
	}
	return false;
}

void fb_timer_cancel(struct fb_timer *t)
{
	if (!t->armed)
		return;
	if (!timer_unlink(&t->r->timers, t))
		timer_unlink(&t->r->timers_due, t);
	t->next = NULL;
	t->armed = false;
}

void fb_timer_arm(struct fb_reactor *r, struct fb_timer *t, uint64_t delay_ns)
{
	struct fb_timer **pp;

	fb_timer_cancel(t);
	t->r = r;
	t->deadline_ns = fb_now_ns() + delay_ns;
	/* Sorted insert: few timers per reactor, and the head is what sleep needs. */
	for (pp = &r->timers; *pp && (*pp)->deadline_ns <= t->deadline_ns; pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

/* Runs the timers due at `now`; ones re-armed from a callback wait for the
 * next pass even when due at once, so a 0-delay re-arm cannot spin here. */
static unsigned timers_run(struct fb_reactor *r, uint64_t now)
{
	struct fb_timer **tail = &r->timers_due, *t;
	unsigned n = 0;

	while (r->timers && r->timers->deadline_ns <= now) {
		t = r->timers;
		r->timers = t->next;
		t->next = NULL;
		*tail = t;
		tail = &t->next;
	}
	while ((t = r->timers_due)) {
		r->timers_due = t->next;
		t->next = NULL;
		t->armed = false;
		t->fn(t);
		n++;
	}
	return n;
}

void fb_timers_run(struct fb_reactor *r, uint64_t now)
{
	timers_run(r, now);
}

static unsigned cqes_reap(struct fb_reactor *r)
{
	struct io_uring_cqe *cqes[FB_CQE_BATCH];
	struct {
		uint64_t data;
		int32_t res;
		uint32_t flags;
	} batch[FB_CQE_BATCH];
	unsigned total = 0, n;

	do {
		n = io_uring_peek_batch_cqe(&r->ring, cqes, FB_CQE_BATCH);
		/* Copy out and advance first: callbacks may re-enter the ring. */
		for (unsigned i = 0; i < n; i++) {
			batch[i].data = cqes[i]->user_data;
			batch[i].res = cqes[i]->res;
			batch[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&r->ring, n);
		for (unsigned i = 0; i < n; i++) {
			struct fb_uring_op *op = (struct fb_uring_op *)(uintptr_t)batch[i].data;

			if (op)
				op->cb(op, batch[i].res, batch[i].flags);
		}
		total += n;
	} while (n == FB_CQE_BATCH);
	return total;
}

struct fb_poller *fb_poller_register(struct fb_reactor *r, fb_poller_fn fn, void *arg)
{
	struct fb_poller *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->r = r;
	p->fn = fn;
	p->arg = arg;
	p->next = r->pollers;
	r->pollers = p;
	return p;
}

void fb_poller_unregister(struct fb_poller *p)
{
	if (!p)
		return;
	/* Freed after the current poller pass, which may be iterating over it. */
	p->dead = true;
	p->r->pollers_dead++;
}

static unsigned pollers_run(struct fb_reactor *r)
{
	unsigned did = 0;

	for (struct fb_poller *p = r->pollers; p; p = p->next) {
		if (!p->dead && p->fn(p->arg))
			did++;
	}
	if (r->pollers_dead) {
		struct fb_poller **pp = &r->pollers;

		while (*pp) {
			struct fb_poller *p = *pp;

			if (p->dead) {
				*pp = p->next;
				free(p);
			} else {
				pp = &p->next;
			}
		}
		r->pollers_dead = 0;
	}
	return did;
}

/* On the reactor's own thread: a ring created by another thread puts that
 * thread on the ring's task list, and when the ring is torn down the
 * kernel's exit work interrupts it with task work (a control thread blocked
 * in a call with a timeout, e.g. recv with SO_RCVTIMEO, gets EINTR). */
static int reactor_ring_init(struct fb_reactor *r)
{
	struct fb_engine *e = r->e;
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	/* COOP_TASKRUN: completions are processed when the reactor enters the
	 * kernel anyway, instead of an IPI interrupting it on every socket
	 * wakeup while it polls (measured: 4 KiB QD32 over NBD 117k -> ~200k
	 * IOPS). Kernels before 5.19 reject it: fall back to plain rings. */
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	p.cq_entries = e->opts.ring_entries * 4;
	rc = io_uring_queue_init_params(e->opts.ring_entries, &r->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = e->opts.ring_entries * 4;
		rc = io_uring_queue_init_params(e->opts.ring_entries, &r->ring, &p);
	}
	if (rc == 0)
		r->ring_ok = true;
	return rc;
}

static void *reactor_main(void *arg)
{
	struct fb_reactor *r = arg;
	const uint64_t poll_ns = (uint64_t)r->e->opts.poll_us * 1000u;
	uint64_t last_work;

	r->init_rc = reactor_ring_init(r);
	sem_post(&r->init_done);
	if (r->init_rc)
		return NULL;
	last_work = fb_now_ns();
	tls_reactor = r;
	efd_arm(r);
	while (!r->stop) {
		unsigned did = cqes_reap(r);

		did += msgs_drain(r);
		did += fb_offload_drain(r);
		did += deferred_run(r);
		did += pollers_run(r);
		if (r->timers)
			did += timers_run(r, fb_now_ns());
		if (r->stop)
			break;
		if (did || r->defer_head) {
			if (poll_ns)
				last_work = fb_now_ns();
			fb_reactor_submit(r);
			continue;
		}
		if (poll_ns && fb_now_ns() - last_work < poll_ns) {
			fb_reactor_submit(r);
			/* Keep the vCPU out of idle (slow to wake here) but let a
			 * runnable peer on this CPU, often the very client we
			 * wait for, run first: reactors share few cores. */
			sched_yield();
			continue;
		}
		atomic_store(&r->sleeping, 1);
		if (atomic_load(&r->msgs) || atomic_load(&r->offload_done)) {
			atomic_store(&r->sleeping, 0);
			continue;
		}
		/* Submit what is queued and sleep until a CQE (I/O or eventfd),
		 * or the nearest timer. */
		int rc;

		if (r->timers) {
			uint64_t now = fb_now_ns(), d = r->timers->deadline_ns;
			struct __kernel_timespec ts;
			struct io_uring_cqe *cqe;

			if (d <= now) {
				atomic_store(&r->sleeping, 0);
				continue;
			}
			ts.tv_sec = (long long)((d - now) / 1000000000u);
			ts.tv_nsec = (long long)((d - now) % 1000000000u);
			rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
			if (rc == -ETIME)
				rc = 0;
		} else {
			rc = io_uring_submit_and_wait(&r->ring, 1);
		}
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			fb_log(r->e, FB_LOG_ERROR, "reactor %u: io_uring_submit_and_wait: %s", r->index,
			       strerror(-rc));
		atomic_store(&r->sleeping, 0);
		last_work = fb_now_ns();
	}
	fb_reactor_submit(r);
	/* Torn down by its own thread too (see reactor_ring_init); what is
	 * still in flight is cancelled. */
	io_uring_queue_exit(&r->ring);
	r->ring_ok = false;
	tls_reactor = NULL;
	return NULL;
}

static void reactor_stop_msg(void *arg)
{
	struct fb_reactor *r = arg;

	r->stop = true;
}

int fb_reactor_init_all(struct fb_engine *e, struct fb_err *err)
{
	int rc = 0;

	e->reactors = calloc(e->nreactors, sizeof(*e->reactors));
	if (!e->reactors) {
		rc = -ENOMEM;
		fb_err_set(err, "out of memory allocating %u reactors", e->nreactors);
		goto out;
	}
	/* Before anything can fail: fb_reactor_fini_all closes every efd that
	 * is not -1, and calloc left 0 (someone else's stdin) in all of them. */
	for (unsigned i = 0; i < e->nreactors; i++)
		e->reactors[i].efd = -1;
	for (unsigned i = 0; i < e->nreactors; i++) {
		struct fb_reactor *r = &e->reactors[i];

		r->e = e;
		r->index = i;
		r->efd_op.cb = efd_done;
		atomic_init(&r->msgs, NULL);
		atomic_init(&r->offload_done, NULL);
		/* Blocking, so the ring's read waits (poll-armed) instead of -EAGAIN. */
		r->efd = eventfd(0, EFD_CLOEXEC);
		if (r->efd < 0) {
			rc = -errno;
			fb_err_set(err, "eventfd for reactor %u failed: %s", i, strerror(errno));
			goto out;
		}
	}
	for (unsigned i = 0; i < e->nreactors; i++) {
		struct fb_reactor *r = &e->reactors[i];
		char name[16];

		sem_init(&r->init_done, 0, 0);
		rc = -pthread_create(&r->thread, NULL, reactor_main, r);
		if (rc) {
			sem_destroy(&r->init_done);
			fb_err_set(err, "starting reactor thread %u failed: %s", i, strerror(-rc));
			goto out;
		}
		r->thread_started = true;
		while (sem_wait(&r->init_done) != 0)
			;
		sem_destroy(&r->init_done);
		rc = r->init_rc;
		if (rc < 0) {
			/* The thread has returned; fb_reactor_fini_all joins it. */
			fb_err_set(err, "io_uring_queue_init for reactor %u failed: %s; check "
				   "RLIMIT_MEMLOCK and that io_uring is enabled (kernel.io_uring_disabled)",
				   i, strerror(-rc));
			goto out;
		}
		snprintf(name, sizeof(name), "fb_reactor_%u", i & 0xffu);
		pthread_setname_np(r->thread, name);
		if (pthread_getcpuclockid(r->thread, &r->cpu_clock) != 0)
			r->cpu_clock = CLOCK_THREAD_CPUTIME_ID; /* unreachable on Linux */
	}
out:
	return rc;
}

void fb_reactor_fini_all(struct fb_engine *e)
{
	for (unsigned i = 0; i < e->nreactors; i++) {
		struct fb_reactor *r = &e->reactors[i];

		if (r->thread_started)
			fb_reactor_send(r, reactor_stop_msg, r);
	}
	for (unsigned i = 0; i < e->nreactors; i++) {
		struct fb_reactor *r = &e->reactors[i];
		struct fb_msg_node *m, *next;

		if (r->thread_started) {
			pthread_join(r->thread, NULL);
			r->thread_started = false;
		}
		/* Messages that arrived after stop are dropped (their senders
		 * are gone with the engine). */
		for (m = atomic_exchange(&r->msgs, NULL); m; m = next) {
			next = m->next;
			if (m->heap)
				free(m);
		}
		while (r->pollers) {
			struct fb_poller *p = r->pollers;

			r->pollers = p->next;
			free(p);
		}
		if (r->ring_ok)
			io_uring_queue_exit(&r->ring);
		if (r->efd >= 0)
			close(r->efd);
	}
	free(e->reactors);
	e->reactors = NULL;
}

struct sync_call {
	pthread_mutex_t m;
	pthread_cond_t c;
	unsigned left;
	fb_msg_fn fn;
	void *arg;
};

static void sync_call_msg(void *arg)
{
	struct sync_call *s = arg;

	s->fn(s->arg);
	pthread_mutex_lock(&s->m);
	if (--s->left == 0)
		pthread_cond_signal(&s->c);
	pthread_mutex_unlock(&s->m);
}

static void sync_call_run(struct fb_engine *e, struct fb_reactor *only, fb_msg_fn fn, void *arg)
{
	struct sync_call s = {.fn = fn, .arg = arg};

	if (tls_reactor) {
		fb_log(e, FB_LOG_ERROR, "fb_engine_run_on_all/fb_reactor_run_sync called on reactor %u "
		       "would deadlock; call it from a control thread", tls_reactor->index);
		abort();
	}
	pthread_mutex_init(&s.m, NULL);
	pthread_cond_init(&s.c, NULL);
	s.left = only ? 1 : e->nreactors;
	if (only) {
		fb_reactor_send(only, sync_call_msg, &s);
	} else {
		for (unsigned i = 0; i < e->nreactors; i++)
			fb_reactor_send(&e->reactors[i], sync_call_msg, &s);
	}
	pthread_mutex_lock(&s.m);
	while (s.left)
		pthread_cond_wait(&s.c, &s.m);
	pthread_mutex_unlock(&s.m);
	pthread_mutex_destroy(&s.m);
	pthread_cond_destroy(&s.c);
}

void fb_engine_run_on_all(struct fb_engine *e, fb_msg_fn fn, void *arg)
{
	sync_call_run(e, NULL, fn, arg);
}

void fb_reactor_run_sync(struct fb_reactor *r, fb_msg_fn fn, void *arg)
{
	sync_call_run(r->e, r, fn, arg);
}
