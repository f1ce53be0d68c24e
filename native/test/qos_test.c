/* QoS in the bdev core: bdev_set_qos_limit's params and answers, limits in
 * fb_bdev_foreach, I/O over the limit held back (never failed) and released
 * by the reactor's timer, and everything released when the limit goes. The
 * only time check is a lower bound a loaded host cannot break: N I/Os at R
 * per second cannot all finish much sooner than N/R seconds. */
#include <semaphore.h>
#include <time.h>

#include "harness.h"

#define N_IO 200u

struct burst {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	unsigned char buf[4096];
	struct iovec iov;
	unsigned done, failed;
	sem_t all;
};

static void burst_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct burst *b = arg;

	fb_bdev_free_io(io);
	b->failed += status != 0;
	if (++b->done == N_IO) {
		fb_put_io_channel(b->ch);
		sem_post(&b->all);
	}
}

/* N_IO reads submitted at once: none may fail, whatever QoS holds back. */
static void burst_msg(void *arg)
{
	struct burst *b = arg;

	b->ch = fb_bdev_get_io_channel(b->desc);
	CHECK(b->ch != NULL);
	b->iov.iov_base = b->buf;
	b->iov.iov_len = 512;
	for (unsigned i = 0; i < N_IO; i++)
		CHECK_EQ(fb_bdev_readv_blocks(b->desc, b->ch, &b->iov, 1, i % 64, 1, burst_done, b), 0);
}

static uint64_t burst(struct fb_engine *e, struct fb_bdev_desc *d, bool drop_limit_midway)
{
	struct burst *b = calloc(1, sizeof(*b));
	struct timespec ts;
	struct fb_err err;
	uint64_t t0 = fb_now_ns(), dt;

	b->desc = d;
	sem_init(&b->all, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 0), burst_msg, b);
	if (drop_limit_midway) {
		struct fb_qos_limits none = {.size = sizeof(none)};

		usleep(20000);
		CHECK_OK(fb_bdev_set_qos_limits(e, "M0", &none, &err));
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	CHECK(sem_timedwait(&b->all, &ts) == 0);
	dt = fb_now_ns() - t0;
	CHECK_EQ(b->failed, 0);
	sem_destroy(&b->all);
	free(b);
	return dt;
}

static int limits_of(const struct fb_bdev_info *info, void *arg)
{
	*(struct fb_qos_limits *)arg = info->qos;
	return 0;
}

TEST(limits_rpc)
{
	struct fb_engine *e = th_engine(1);
	struct fb_qos_limits l;
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M0", 64, 512, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"rw_ios_per_sec\":2000,"
			"\"r_mbytes_per_sec\":10}"));
	/* A limit left out keeps its value. */
	CHECK_OK(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"w_mbytes_per_sec\":20}"));
	CHECK_EQ(fb_bdev_foreach(e, "M0", limits_of, &l), 0);
	CHECK(l.rw_ios_per_sec == 2000 && l.rw_mbytes_per_sec == 0 && l.r_mbytes_per_sec == 10 &&
	      l.w_mbytes_per_sec == 20);
	CHECK_EQ(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\"}"), -EINVAL);
	CHECK(strstr(err.msg, "rw_ios_per_sec") != NULL);
	CHECK_EQ(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"nope\",\"rw_ios_per_sec\":1}"), -ENODEV);
	CHECK_EQ(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"rw_ios_per_sec\":-1}"),
		 FB_RPC_INVALID_PARAMS);
	/* 0 removes a limit. */
	CHECK_OK(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"rw_ios_per_sec\":0,"
			"\"r_mbytes_per_sec\":0,\"w_mbytes_per_sec\":0}"));
	CHECK_EQ(fb_bdev_foreach(e, "M0", limits_of, &l), 0);
	CHECK(l.rw_ios_per_sec == 0 && l.r_mbytes_per_sec == 0 && l.w_mbytes_per_sec == 0);
	fb_engine_destroy(e);
}

TEST(held_back_then_released)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t dt;

	CHECK_OK(th_malloc(e, "M0", 64, 512, &err));
	CHECK_OK(th_open(e, "M0", false, &d, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"rw_ios_per_sec\":1000}"));
	/* 200 at 1000/s: about 0.19 s after the 10 ms burst allowance. */
	dt = burst(e, d, false);
	CHECK(dt >= 150000000u || (fprintf(stderr, "200 I/Os at 1000/s took %llu ns\n",
					   (unsigned long long)dt), 0));
	/* At 1/s this would take minutes: removing the limit lets all go. */
	CHECK_OK(th_rpc(e, &err, "bdev_set_qos_limit", "{\"name\":\"M0\",\"rw_ios_per_sec\":1}"));
	burst(e, d, true);
	fb_bdev_close(d);
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(limits_rpc);
	RUN(held_back_then_released);
	fprintf(stderr, "qos_test: ok\n");
	return 0;
}
