/* Regression tests from the data-plane correctness review: engine creation
 * failing half-way, NBD drains with slow bdev I/O in flight, error
 * injection counts across concurrent table swaps, and file bdev short
 * transfers. */
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "nbd_client.h"
#include "../src/export/nbd_proto.h"

static char g_dir[64];
static char g_sock[128];
/* Longer receive timeout than nbd_test: replies here wait on the slow bdev. */
static const struct cl_server g_srv = { g_sock, 8 };

/* ------------------------------------- a slow bdev: every I/O takes 1.6 s */

#define SLOW_NS 1600000000ll

struct slow_io {
	struct fb_uring_op op; /* first */
	struct __kernel_timespec ts;
	struct fb_bdev_io *io;
};

static struct fb_bdev_module slow_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "slow",
	.io_ctx_size = sizeof(struct slow_io),
	.channel_ctx_size = 0,
};
FB_BDEV_MODULE_REGISTER(slow_module)

static void slow_done(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct slow_io *s = (struct slow_io *)(void *)op;
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(s->io, &iovcnt);

	(void)res;
	(void)flags;
	if (fb_bdev_io_get_type(s->io) == FB_IO_READ)
		for (int i = 0; i < iovcnt; i++)
			memset(iov[i].iov_base, 0, iov[i].iov_len);
	fb_bdev_io_complete(s->io, 0);
}

static void slow_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct slow_io *s = fb_bdev_io_get_driver_ctx(io);
	struct io_uring_sqe *sqe = fb_reactor_get_sqe(fb_io_channel_get_reactor(ch));

	s->op.cb = slow_done;
	s->io = io;
	s->ts.tv_sec = SLOW_NS / 1000000000ll;
	s->ts.tv_nsec = SLOW_NS % 1000000000ll;
	io_uring_prep_timeout(sqe, &s->ts, 0, 0);
	io_uring_sqe_set_data(sqe, &s->op);
}

static bool slow_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_WRITE || type == FB_IO_FLUSH;
}

static const struct fb_bdev_fn_table slow_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.submit_request = slow_submit,
	.io_type_supported = slow_supported,
};

static void slow_create(struct fb_engine *e, const char *name)
{
	struct fb_bdev_register_opts p;
	struct fb_err err;

	memset(&p, 0, sizeof(p));
	p.size = sizeof(p);
	p.name = name;
	p.block_size = 512;
	p.num_blocks = 2048;
	p.module = &slow_module;
	p.fn = &slow_fn;
	CHECK_OK(fb_bdev_register(e, &p, NULL, &err));
}


/* ------------------------------------------ error injection count accounting */

#define HAMMER_QD 8

struct hammer;
struct hammer_slot {
	struct hammer *h;
	unsigned i;
	struct iovec iov;
	uint8_t buf[512];
};

struct hammer {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	struct hammer_slot slot[HAMMER_QD];
	atomic_bool stop;
	unsigned live;                  /* reactor only */
	atomic_ullong failed, ok;
	sem_t done;
};

static void hammer_submit(struct hammer_slot *s);

static void hammer_cb(struct fb_bdev_io *io, int status, void *arg)
{
	struct hammer_slot *s = arg;
	struct hammer *h = s->h;

	fb_bdev_free_io(io);
	if (status == -EIO)
		atomic_fetch_add(&h->failed, 1);
	else if (status == 0)
		atomic_fetch_add(&h->ok, 1);
	if (atomic_load(&h->stop)) {
		if (--h->live == 0) {
			fb_put_io_channel(h->ch);
			sem_post(&h->done);
		}
		return;
	}
	hammer_submit(s);
}

static void hammer_submit(struct hammer_slot *s)
{
	s->iov.iov_base = s->buf;
	s->iov.iov_len = sizeof(s->buf);
	CHECK_EQ(fb_bdev_writev_blocks(s->h->desc, s->h->ch, &s->iov, 1, s->i, 1, 0, hammer_cb, s), 0);
}

static void hammer_start(void *arg)
{
	struct hammer *h = arg;

	h->ch = fb_bdev_get_io_channel(h->desc);
	CHECK(h->ch != NULL);
	h->live = HAMMER_QD;
	for (unsigned i = 0; i < HAMMER_QD; i++) {
		h->slot[i].h = h;
		h->slot[i].i = i;
		hammer_submit(&h->slot[i]);
	}
}

static int remaining_of(const struct fb_bdev_info *info, void *arg)
{
	const char *p = strstr(info->driver_json, "\"error_type\":\"failure\"");

	CHECK(p != NULL);
	p = strstr(p, "\"remaining\":");
	CHECK(p != NULL);
	*(unsigned long long *)arg = strtoull(p + 12, NULL, 10);
	return 0;
}

/* Every I/O that an injection with a count affects uses exactly one unit of
 * that count, even while other injections are added and cleared. */
TEST(error_count_exact_across_injects)
{
	struct fb_engine *e = th_engine(2);
	struct hammer *h = calloc(1, sizeof(*h));
	struct fb_err err;
	const unsigned long long count = 1000000000ull;
	unsigned long long remaining = 0;

	CHECK_OK(th_malloc(e, "M0", 1024, 512, &err));
	CHECK_OK(th_error_create(e, "M0", &err));
	CHECK_OK(th_open(e, "EE_M0", true, &h->desc, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error", "{\"name\":\"EE_M0\",\"io_type\":\"write\","
			"\"error_type\":\"failure\",\"num\":%llu}", count));
	sem_init(&h->done, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 1), hammer_start, h);
	/* Swap the table many times under the writes: add and clear an
	 * injection that does not touch writes. */
	for (int i = 0; i < 3000; i++) {
		/* num 0 clears the read injection, 1 adds one. */
		CHECK_OK(th_rpc(e, &err, "bdev_error_inject_error", "{\"name\":\"EE_M0\","
				"\"io_type\":\"read\",\"error_type\":\"corrupt_data\",\"corrupt_value\":1,"
				"\"num\":%d}",
				(i & 1) ? 0 : 1));
	}
	atomic_store(&h->stop, true);
	sem_wait(&h->done);
	CHECK_EQ(fb_bdev_foreach(e, "EE_M0", remaining_of, &remaining), 0);
	CHECK(atomic_load(&h->failed) > 0);
	CHECK_EQ(atomic_load(&h->ok), 0);
	CHECK_EQ(atomic_load(&h->failed) + remaining, count);
	fb_bdev_close(h->desc);
	fb_engine_destroy(e);
	sem_destroy(&h->done);
	free(h);
}


static long rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	CHECK(f != NULL);
	CHECK(fscanf(f, "%ld %ld", &pages, &rss) == 2);
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A client that pipelines option requests and never reads the replies must
 * not make the server buffer an unbounded amount of replies: NBD_OPT_LIST
 * costs 16 bytes to send and its reply can be tens of KiB. */
TEST(pipelined_options_bounded)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	char listen[160], name[4001];
	uint8_t g[18], flags[4], *opts = malloc(4096 * 16);
	long before, after;
	int fd;

	CHECK_OK(th_malloc(e, "M0", 2048, 512, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	memset(name, 'n', 4000);
	name[4000] = 0;
	for (int i = 0; i < 16; i++) {
		name[0] = (char)('a' + i);
		CHECK_OK(fb_nbd_export_add(e, name, "M0", listen, true, &err));
	}
	fd = cl_connect(&g_srv);
	CHECK_EQ(cl_recv(fd, g, sizeof(g)), 0);
	nbd_put32(flags, NBD_FLAG_C_FIXED_NEWSTYLE);
	cl_send(fd, flags, 4);
	before = rss_kib();
	for (int i = 0; i < 4096; i++) {
		nbd_put64(opts + 16 * i, NBD_MAGIC_OPTS);
		nbd_put32(opts + 16 * i + 8, NBD_OPT_LIST);
		nbd_put32(opts + 16 * i + 12, 0);
	}
	{
		struct timeval tv = { .tv_sec = 1 };
		size_t off = 0;

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		while (off < 4096 * 16) {
			ssize_t n = send(fd, opts + off, 4096 * 16 - off, MSG_NOSIGNAL);

			if (n <= 0)
				break;  /* the server stopped reading: fine */
			off += (size_t)n;
		}
	}
	usleep(500000);
	after = rss_kib();
	if (after - before > 32 * 1024)
		th_fail(__FILE__, __LINE__, "server buffered %ld KiB of option replies", after - before);
	close(fd);
	fb_engine_destroy(e);
	free(opts);
}


/* Tearing an engine down must not interrupt the control thread later: a
 * ring created on the control thread puts that thread on the ring's task
 * list, and the kernel's ring exit work then sends it a signal-like task
 * work, so a blocking call with a timeout there fails with EINTR. */
TEST(destroy_does_not_interrupt_control_thread)
{
	int sv[2];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 700000 };
	char b;
	ssize_t r;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	for (int i = 0; i < 3; i++) {
		struct fb_engine *e = th_engine(2);
		struct fb_bdev_desc *d;
		struct fb_err err;
		uint8_t buf[512] = { 0 };

		CHECK_OK(th_malloc(e, "M0", 8, 512, &err));
		CHECK_OK(th_open(e, "M0", true, &d, &err));
		CHECK_EQ(th_write(e, 0, d, buf, 0, 1), 0);
		CHECK_EQ(th_read(e, 1, d, buf, 0, 1), 0);
		fb_bdev_close(d);
		fb_engine_destroy(e);
	}
	r = recv(sv[0], &b, 1, 0);
	if (r < 0 && errno == EINTR)
		th_fail(__FILE__, __LINE__, "a blocking recv on the control thread got EINTR after "
			"fb_engine_destroy");
	CHECK(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
	close(sv[0]);
	close(sv[1]);
}

/* ------------------------------------------------------------------ tests */

/* A reactor that fails to start (here: out of descriptors) must not make
 * the cleanup close descriptors it never opened, such as fd 0. */
TEST(engine_create_failure_keeps_foreign_fds)
{
	struct rlimit old, rl;
	int failures = 0, highest = 0;

	int fillers[1024], nfill = 0;

	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			highest = fd;
	/* Fill the holes below the highest descriptor, so that a limit of
	 * highest + 1 + extra leaves exactly `extra` descriptors to open. */
	for (;;) {
		int fd = open("/dev/null", O_RDONLY);

		CHECK(fd >= 0 && nfill < 1024);
		if (fd > highest) {
			close(fd);
			break;
		}
		fillers[nfill++] = fd;
	}
	for (int extra = 0; extra < 12; extra++) {
		struct fb_engine_opts o;
		struct fb_engine *e = NULL;
		struct fb_err err;
		int z = open("/dev/null", O_RDONLY);
		int rc;

		CHECK(z >= 0);
		if (z != 0) {
			CHECK(dup2(z, 0) == 0);
			close(z);
		}
		rl = old;
		rl.rlim_cur = (rlim_t)(highest + 1 + extra);
		CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
		fb_engine_opts_init(&o);
		o.reactors = 4;
		rc = fb_engine_create(&o, &e, &err);
		CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
		if (rc == 0) {
			fb_engine_destroy(e);
			continue;
		}
		failures++;
		if (fcntl(0, F_GETFD) == -1)
			th_fail(__FILE__, __LINE__, "fb_engine_create failure (rlimit %d) closed fd 0",
				highest + 1 + extra);
	}
	while (nfill)
		close(fillers[--nfill]);
	CHECK(failures > 0);
}

static int export_slow(struct fb_engine *e, const char *name)
{
	struct fb_err err;
	char listen[160];

	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, name, "SLOW", listen, false, &err));
	return cl_open(&g_srv, name, 0, NULL, NULL);  /* simple replies only */
}

/* NBD_CMD_DISC: "the server MUST handle all outstanding requests" — a
 * write still in the bdev when the disconnect arrives gets its reply. */
TEST(disc_waits_for_slow_io)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	uint8_t buf[512] = { 1 };
	uint64_t cookie = 0;
	int fd;

	slow_create(e, "SLOW");
	fd = export_slow(e, "x");
	cl_req(fd, NBD_CMD_WRITE, 0, 77, 0, sizeof(buf), buf);
	cl_req(fd, NBD_CMD_DISC, 0, 78, 0, 0, NULL);
	CHECK_EQ(cl_simple_reply(fd, &cookie), 0);
	CHECK_EQ(cookie, 77);
	CHECK(cl_closed(fd));
	CHECK_OK(fb_nbd_export_remove(e, "x", &err));
	fb_engine_destroy(e);
}

/* Export removal: "connected clients get their in-flight I/O completed and
 * are then disconnected" — a flush slower than the drain timeout is still
 * answered. */
TEST(remove_waits_for_slow_flush)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	uint64_t cookie = 0;
	int fd;

	slow_create(e, "SLOW");
	fd = export_slow(e, "y");
	cl_req(fd, NBD_CMD_FLUSH, 0, 99, 0, 0, NULL);
	usleep(100000); /* the flush is in the bdev */
	CHECK_OK(fb_nbd_export_remove(e, "y", &err));
	CHECK_EQ(cl_simple_reply(fd, &cookie), 0);
	CHECK_EQ(cookie, 99);
	CHECK(cl_closed(fd));
	fb_engine_destroy(e);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(g_dir, sizeof(g_dir), "/tmp/fb-robust-test.XXXXXX");
	CHECK(mkdtemp(g_dir) != NULL);
	snprintf(g_sock, sizeof(g_sock), "%s/s.sock", g_dir);
	RUN(destroy_does_not_interrupt_control_thread);
	RUN(engine_create_failure_keeps_foreign_fds);
	RUN(disc_waits_for_slow_io);
	RUN(remove_waits_for_slow_flush);
	RUN(error_count_exact_across_injects);
	RUN(pipelined_options_bounded);
	rmdir(g_dir);
	fprintf(stderr, "robustness_test: ok\n");
	return 0;
}
