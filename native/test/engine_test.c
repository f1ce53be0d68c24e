/* Engine lifecycle, message passing, run_on_all, idle CPU. */
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

TEST(create_destroy_many)
{
	for (unsigned i = 0; i < 20; i++) {
		struct fb_engine *e = th_engine(1 + i % 4);

		CHECK_EQ(fb_engine_reactor_count(e), 1 + i % 4);
		fb_engine_destroy(e);
	}
}

TEST(bad_opts)
{
	struct fb_engine_opts o;
	struct fb_engine *e = NULL;
	struct fb_err err;

	fb_engine_opts_init(&o);
	o.size = 0;
	CHECK_EQ(fb_engine_create(&o, &e, &err), -EINVAL);
	CHECK(e == NULL);
	CHECK(strstr(err.msg, "opts.size") != NULL);
}

static atomic_uint counter;
static atomic_uint seen_mask;

static void count_msg(void *arg)
{
	(void)arg;
	atomic_fetch_add(&counter, 1);
	atomic_fetch_or(&seen_mask, 1u << fb_reactor_index(fb_reactor_current()));
}

struct chain {
	struct fb_engine *e;
	unsigned hops;
	atomic_int done;
};

/* Bounces between reactors: exercises reactor-to-reactor sends. */
static void chain_msg(void *arg)
{
	struct chain *c = arg;
	struct fb_reactor *r = fb_reactor_current();

	CHECK(r != NULL);
	if (--c->hops == 0) {
		atomic_store(&c->done, 1);
		return;
	}
	fb_reactor_send(fb_engine_get_reactor(c->e, (fb_reactor_index(r) + 1) % fb_engine_reactor_count(c->e)),
			chain_msg, c);
}

TEST(messages)
{
	struct fb_engine *e = th_engine(3);
	struct chain c = {.e = e, .hops = 10000};

	atomic_store(&counter, 0);
	atomic_store(&seen_mask, 0);
	fb_engine_run_on_all(e, count_msg, NULL);
	CHECK_EQ(atomic_load(&counter), 3);
	CHECK_EQ(atomic_load(&seen_mask), 7);
	fb_reactor_run_sync(fb_engine_get_reactor(e, 1), count_msg, NULL);
	CHECK_EQ(atomic_load(&counter), 4);
	for (int i = 0; i < 1000; i++)
		fb_reactor_send(fb_engine_get_reactor(e, (unsigned)i % 3), count_msg, NULL);
	fb_engine_run_on_all(e, count_msg, NULL); /* FIFO per reactor: a barrier */
	CHECK_EQ(atomic_load(&counter), 1007);
	fb_reactor_send(fb_engine_get_reactor(e, 0), chain_msg, &c);
	while (!atomic_load(&c.done))
		usleep(1000);
	CHECK(fb_reactor_current() == NULL);
	fb_engine_destroy(e);
}

static int poller_fn(void *arg)
{
	atomic_uint *n = arg;

	return atomic_fetch_add(n, 1) < 100; /* busy for 100 calls, then idle */
}

struct preg {
	struct fb_poller *p;
	atomic_uint n;
};

static void poller_add(void *arg)
{
	struct preg *pr = arg;

	pr->p = fb_poller_register(fb_reactor_current(), poller_fn, &pr->n);
}

static void poller_del(void *arg)
{
	struct preg *pr = arg;

	fb_poller_unregister(pr->p);
}

TEST(pollers)
{
	struct fb_engine *e = th_engine(1);
	struct preg pr = {0};

	fb_reactor_run_sync(fb_engine_get_reactor(e, 0), poller_add, &pr);
	while (atomic_load(&pr.n) < 100)
		usleep(1000);
	fb_reactor_run_sync(fb_engine_get_reactor(e, 0), poller_del, &pr);
	fb_engine_destroy(e);
}

TEST(idle_cpu)
{
	struct fb_engine *e = th_engine(2);
	uint64_t c0, c1;

	usleep(50000);
	c0 = fb_engine_reactor_cpu_us(e);
	usleep(1000000);
	c1 = fb_engine_reactor_cpu_us(e);
	fprintf(stderr, "    idle reactor CPU: %llu us over 1 s (2 reactors)\n",
		(unsigned long long)(c1 - c0));
	CHECK(c1 - c0 < 10000); /* < 1% of one core */
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(create_destroy_many);
	RUN(bad_opts);
	RUN(messages);
	RUN(pollers);
	RUN(idle_cpu);
	return 0;
}
