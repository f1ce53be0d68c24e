/* Offload workers (thread.h fb_offload_submit): a task submitted while a
 * worker is free runs on a worker, not on a reactor; with no CPU left over
 * by the reactors there are no workers by default; under a flood from
 * every reactor at once, tasks run on workers or inline on the reactor
 * that submitted them, and done always runs afterwards, once, on the
 * submitting reactor. And the malloc
 * bdev's large copies, which go through it: data written and read back in
 * 1 MiB I/Os over several iovecs, many in flight at once, is exact. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NTASK 2000u

struct task {
	struct fb_offload off;         /* first member: the task is its own offload */
	struct fb_reactor *from;
	atomic_bool worked;
	struct fb_reactor *worked_on;  /* NULL: a worker thread */
	unsigned done_count;
};

static atomic_uint tasks_done;

static void task_work(struct fb_offload *o)
{
	struct task *t = (struct task *)o;

	t->worked_on = fb_reactor_current();
	atomic_store(&t->worked, true);
}

static void task_done(struct fb_offload *o)
{
	struct task *t = (struct task *)o;

	CHECK(fb_reactor_current() == t->from);
	CHECK(atomic_load(&t->worked));
	t->done_count++;
	atomic_fetch_add(&tasks_done, 1);
}

struct batch {
	struct task *t;
	unsigned n;
};

static void submit_batch(void *arg)
{
	struct batch *b = arg;

	for (unsigned i = 0; i < b->n; i++) {
		b->t[i].from = fb_reactor_current();
		b->t[i].off.work = task_work;
		b->t[i].off.done = task_done;
		fb_offload_submit(b->t[i].from, &b->t[i].off);
	}
}

static void wait_count(atomic_uint *c, unsigned want)
{
	for (int i = 0; i < 30000 && atomic_load(c) < want; i++)
		usleep(1000);
	CHECK_EQ(atomic_load(c), want); /* 30 s deadline */
}

/* An engine with `workers` offload workers (0: the default). */
static struct fb_engine *engine_with_workers(unsigned reactors, unsigned workers)
{
	struct fb_engine_opts o;
	struct fb_engine *e = NULL;
	struct fb_err err;

	fb_engine_opts_init(&o);
	o.reactors = reactors;
	o.offload_workers = workers;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	return e;
}

/* One task at a time: a worker is always free, so none runs inline. */
TEST(a_task_runs_on_a_worker_when_one_is_free)
{
	struct fb_engine *e = engine_with_workers(1, 2);
	struct task t[50];
	struct batch b = {NULL, 1};

	memset(t, 0, sizeof(t));
	atomic_store(&tasks_done, 0);
	for (unsigned i = 0; i < 50; i++) {
		b.t = &t[i];
		fb_reactor_send(fb_engine_get_reactor(e, 0), submit_batch, &b);
		wait_count(&tasks_done, i + 1);
		CHECK(t[i].worked_on == NULL);
		CHECK_EQ(t[i].done_count, 1);
	}
	fb_engine_destroy(e);
}

TEST(a_flood_from_every_reactor_completes_on_its_reactor)
{
	struct fb_engine *e = engine_with_workers(2, 2);
	struct task *t = calloc(NTASK, sizeof(*t));
	struct batch b0 = {t, NTASK / 2}, b1 = {t + NTASK / 2, NTASK / 2};

	CHECK(t);
	atomic_store(&tasks_done, 0);
	/* Messages, not run_sync: both reactors submit at the same time. */
	fb_reactor_send(fb_engine_get_reactor(e, 0), submit_batch, &b0);
	fb_reactor_send(fb_engine_get_reactor(e, 1), submit_batch, &b1);
	wait_count(&tasks_done, NTASK);
	unsigned on_workers = 0;

	for (unsigned i = 0; i < NTASK; i++) {
		CHECK(atomic_load(&t[i].worked));
		CHECK(t[i].worked_on == NULL || t[i].worked_on == t[i].from); /* inline: its own reactor */
		on_workers += t[i].worked_on == NULL;
		CHECK_EQ(t[i].done_count, 1);
	}
	CHECK(on_workers > 0);
	fb_engine_destroy(e); /* joins the workers */
	free(t);
}

/* By default workers only take CPUs the reactors leave free: with a
 * reactor on every CPU there are none, and every task runs on the reactor
 * that submitted it (done still on a later pass, once). */
TEST(no_spare_cpu_no_workers)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct fb_engine *e = engine_with_workers(cpus < 1 ? 1u : cpus > 256 ? 256u : (unsigned)cpus, 0);
	struct task t[50];
	struct batch b = {t, 50};

	memset(t, 0, sizeof(t));
	atomic_store(&tasks_done, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 0), submit_batch, &b);
	wait_count(&tasks_done, 50);
	for (unsigned i = 0; i < 50; i++) {
		CHECK(t[i].worked_on == fb_engine_get_reactor(e, 0));
		CHECK_EQ(t[i].done_count, 1);
	}
	fb_engine_destroy(e);
}

/* --------------------------------------------------- malloc large copies */

#define MIB (1u << 20)
#define NIO 16u

struct mio {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	struct iovec iov[3];
	uint64_t off;
	bool write;
	int status;
};

static atomic_uint ios_done;

static void mio_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct mio *m = arg;

	fb_bdev_free_io(io);
	m->status = status;
	atomic_fetch_add(&ios_done, 1);
}

struct mbatch {
	struct mio *m;
	unsigned n;
};

/* Submits every I/O of the batch at once (they are in flight together). */
static void submit_ios(void *arg)
{
	struct mbatch *b = arg;

	for (unsigned i = 0; i < b->n; i++) {
		struct mio *m = &b->m[i];
		int rc;

		m->ch = fb_bdev_get_io_channel(m->desc);
		CHECK(m->ch);
		m->status = 1;
		if (m->write)
			rc = fb_bdev_writev_blocks(m->desc, m->ch, m->iov, 3, m->off, MIB / 4096, 0, mio_done, m);
		else
			rc = fb_bdev_readv_blocks(m->desc, m->ch, m->iov, 3, m->off, MIB / 4096, mio_done, m);
		CHECK_EQ(rc, 0);
	}
}

static void put_channels(void *arg)
{
	struct mbatch *b = arg;

	for (unsigned i = 0; i < b->n; i++)
		fb_put_io_channel(b->m[i].ch);
}

static void run_ios(struct fb_engine *e, struct mbatch *b)
{
	atomic_store(&ios_done, 0);
	fb_reactor_run_sync(fb_engine_get_reactor(e, 0), submit_ios, b);
	wait_count(&ios_done, b->n);
	fb_reactor_run_sync(fb_engine_get_reactor(e, 0), put_channels, b);
	for (unsigned i = 0; i < b->n; i++)
		CHECK_EQ(b->m[i].status, 0);
}

TEST(malloc_large_copies_are_exact)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	struct fb_bdev_desc *desc;
	uint8_t *src = malloc((size_t)NIO * MIB), *dst = malloc((size_t)NIO * MIB);
	struct mio m[NIO];
	struct mbatch b = {m, NIO};
	uint64_t seed = 42;

	CHECK(src && dst);
	CHECK_OK(th_malloc(e, "M", (uint64_t)(NIO + 2) * MIB / 4096, 4096, &err));
	CHECK_OK(th_open(e, "M", true, &desc, &err));
	th_fill_random(src, (size_t)NIO * MIB, &seed);
	memset(dst, 0xee, (size_t)NIO * MIB);
	/* Three uneven iovecs per I/O, at shuffled offsets (I/O i at MiB 2 + (i * 5) % NIO). */
	for (unsigned i = 0; i < NIO; i++) {
		uint8_t *s = src + (size_t)i * MIB;

		m[i] = (struct mio){.desc = desc, .write = true, .off = (2 + (i * 5) % NIO) * (MIB / 4096)};
		m[i].iov[0] = (struct iovec){s, 4096};
		m[i].iov[1] = (struct iovec){s + 4096, 512 * 1024 - 4096 + 100};
		m[i].iov[2] = (struct iovec){s + 512 * 1024 + 100, 512 * 1024 - 100};
	}
	run_ios(e, &b);
	for (unsigned i = 0; i < NIO; i++) {
		uint8_t *d = dst + (size_t)i * MIB;

		m[i].write = false;
		m[i].iov[0] = (struct iovec){d, 300};
		m[i].iov[1] = (struct iovec){d + 300, 700 * 1024};
		m[i].iov[2] = (struct iovec){d + 300 + 700 * 1024, MIB - 300 - 700 * 1024};
	}
	run_ios(e, &b);
	CHECK(memcmp(src, dst, (size_t)NIO * MIB) == 0);
	/* Blocks 0..MiB 2 were never written: still zeros (no stray copy). */
	CHECK_EQ(th_read(e, 0, desc, dst, 0, 2 * MIB / 4096), 0);
	for (size_t i = 0; i < 2 * MIB; i++)
		if (dst[i])
			CHECK(!"unwritten block is not zero");
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	free(src);
	free(dst);
}

int main(void)
{
	RUN(a_task_runs_on_a_worker_when_one_is_free);
	RUN(a_flood_from_every_reactor_completes_on_its_reactor);
	RUN(no_spare_cpu_no_workers);
	RUN(malloc_large_copies_are_exact);
	fprintf(stderr, "offload_test: ok\n");
	return 0;
}
