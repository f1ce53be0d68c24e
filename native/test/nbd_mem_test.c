/* Engine-wide NBD buffer budget: many hostile connections (large writes,
 * large reads whose replies they never read) against a small
 * fb_engine_opts.nbd_mem_limit. The accounted memory must stay within the
 * bound nbd_conn.c guarantees (limit + one request buffer per connection),
 * a good client must still complete its I/O, and once the hostile clients
 * leave the counter must go back to (about) zero. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "nbd_client.h"
#include "../src/export/nbd_proto.h"

#define LIMIT (16u << 20)
#define REQ (1u << 20)          /* every hostile request: 1 MiB (its own size class) */
#define NHOSTILE 48
#define PER_CONN 24             /* requests each hostile client pipelines */
#define IDLE_FLOOR (1u << 20)   /* CONN_POOL_IDLE */

static char g_dir[64];
static char g_sock[128];
static const struct cl_server g_srv = { g_sock, 10 };

static struct fb_engine *g_e;
static atomic_bool g_stop;
static atomic_ullong g_max_used;
static atomic_uint g_max_paused;

static void *sampler(void *arg)
{
	(void)arg;
	while (!atomic_load(&g_stop)) {
		struct fb_nbd_mem_stats ms;

		fb_nbd_mem_stats(g_e, &ms);
		if (ms.used > atomic_load(&g_max_used))
			atomic_store(&g_max_used, ms.used);
		if (ms.paused > atomic_load(&g_max_paused))
			atomic_store(&g_max_paused, ms.paused);
		usleep(200);
	}
	return NULL;
}

/* Sends what the socket takes without blocking; returns bytes sent. */
static size_t send_some(int fd, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = send(fd, p + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r <= 0)
			break;
		done += (size_t)r;
	}
	return done;
}

struct hostile {
	int fd;
	uint8_t *stream;  /* every request (and write payload) back to back */
	size_t len, off;
};

static void hostile_build(struct hostile *h, bool writes, uint64_t base)
{
	size_t per = NBD_REQUEST_LEN + (writes ? REQ : 0);

	h->len = per * PER_CONN;
	h->stream = calloc(1, h->len);
	CHECK(h->stream != NULL);
	for (unsigned i = 0; i < PER_CONN; i++) {
		uint8_t *q = h->stream + per * i;

		nbd_put32(q, NBD_REQUEST_MAGIC);
		nbd_put16(q + 4, 0);
		nbd_put16(q + 6, writes ? NBD_CMD_WRITE : NBD_CMD_READ);
		nbd_put64(q + 8, i);
		nbd_put64(q + 16, base + (uint64_t)i * REQ);
		nbd_put32(q + 24, REQ);
	}
}

static int simple_reply(int fd, uint64_t *cookie)
{
	uint8_t h[16];

	if (cl_recv(fd, h, sizeof(h)))
		return -1;
	CHECK(nbd_get32(h) == NBD_SIMPLE_REPLY_MAGIC);
	*cookie = nbd_get64(h + 8);
	return (int)nbd_get32(h + 4);
}

/* QD1 write + read-back on the malloc export: must go through while the
 * hostile clients hold the budget. */
static void good_io(int fd, unsigned rounds, uint64_t *seed)
{
	const uint32_t len = 256u << 10;
	uint8_t *w = malloc(len), *r = malloc(len);
	uint64_t cookie;

	CHECK(w && r);
	for (unsigned i = 0; i < rounds; i++) {
		uint64_t off = (uint64_t)(i % 16) * len;

		th_fill_random(w, len, seed);
		cl_req(fd, NBD_CMD_WRITE, 0, 1000 + i, off, len, w);
		CHECK_EQ(simple_reply(fd, &cookie), 0);
		CHECK_EQ(cookie, 1000 + i);
		cl_req(fd, NBD_CMD_READ, 0, 2000 + i, off, len, NULL);
		CHECK_EQ(simple_reply(fd, &cookie), 0);
		CHECK_EQ(cookie, 2000 + i);
		CHECK_EQ(cl_recv(fd, r, len), 0);
		CHECK(memcmp(w, r, len) == 0);
	}
	free(w);
	free(r);
}

static uint64_t used_now(void)
{
	struct fb_nbd_mem_stats ms;

	fb_nbd_mem_stats(g_e, &ms);
	return ms.used;
}

/* Waits (5 s at most) for the counter to reach <= v. */
static bool wait_used_le(uint64_t v)
{
	for (int i = 0; i < 500; i++) {
		if (used_now() <= v)
			return true;
		usleep(10000);
	}
	{
		struct fb_nbd_mem_stats ms;

		fb_nbd_mem_stats(g_e, &ms);
		fprintf(stderr, "    used %llu > %llu, paused %u\n", (unsigned long long)ms.used,
			(unsigned long long)v, ms.paused);
	}
	return false;
}

TEST(global_budget_holds)
{
	struct fb_engine_opts opts;
	struct fb_err err = { { 0 } };
	struct fb_nbd_mem_stats ms;
	struct hostile h[NHOSTILE];
	char listen[160];
	pthread_t th;
	uint64_t seed = 42, bound;
	int good;

	fb_engine_opts_init(&opts);
	opts.reactors = 2;
	opts.nbd_mem_limit = LIMIT;
	CHECK_OK(fb_engine_create(&opts, &g_e, &err));
	CHECK_OK(fb_bdev_null_create(g_e, "N0", (1ull << 30) / 4096, 4096, &err));
	CHECK_OK(fb_bdev_malloc_create(g_e, "M0", (8ull << 20) / 4096, 4096, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(g_e, "n", "N0", listen, false, &err));
	CHECK_OK(fb_nbd_export_add(g_e, "m", "M0", listen, false, &err));
	fb_nbd_mem_stats(g_e, &ms);
	CHECK_EQ(ms.limit, LIMIT);
	CHECK_EQ(ms.used, 0);

	CHECK_EQ(pthread_create(&th, NULL, sampler, NULL), 0);
	good = cl_open(&g_srv, "m", 0, NULL, NULL);
	good_io(good, 4, &seed);

	/* Hostile: even ones stream 1 MiB writes, odd ones ask for 1 MiB reads
	 * and never read a reply. Keep pushing while the server takes bytes. */
	for (int i = 0; i < NHOSTILE; i++) {
		h[i].fd = cl_open(&g_srv, "n", 0, NULL, NULL);
		h[i].off = 0;
		hostile_build(&h[i], i % 2 == 0, (uint64_t)(i % 16) * PER_CONN * REQ);
	}
	for (int round = 0; round < 200; round++) {
		size_t moved = 0;

		for (int i = 0; i < NHOSTILE; i++) {
			size_t n = send_some(h[i].fd, h[i].stream + h[i].off, h[i].len - h[i].off);

			h[i].off += n;
			moved += n;
			if (h[i].off == h[i].len && i % 2 == 0)
				h[i].off = 0;  /* writers: start over, forever */
		}
		if (round % 20 == 10)
			good_io(good, 2, &seed);  /* the good client still gets through */
		if (!moved)
			usleep(2000);
	}
	good_io(good, 8, &seed);

	/* The guarantee: limit + one request buffer per connection. */
	bound = LIMIT + (uint64_t)(NHOSTILE + 1) * REQ;
	fprintf(stderr, "    max used %llu (limit %u, bound %llu), max paused %u\n",
		(unsigned long long)atomic_load(&g_max_used), LIMIT, (unsigned long long)bound,
		atomic_load(&g_max_paused));
	CHECK(atomic_load(&g_max_used) <= bound);
	CHECK(atomic_load(&g_max_used) >= LIMIT / 2);  /* the hostile load did press */
	CHECK(atomic_load(&g_max_paused) > 0);         /* and the pause path ran */

	for (int i = 0; i < NHOSTILE; i++) {
		close(h[i].fd);
		free(h[i].stream);
	}
	/* Only the good client is left, idle: its cache is trimmed to the floor. */
	CHECK(wait_used_le(IDLE_FLOOR));
	good_io(good, 2, &seed);
	CHECK(wait_used_le(IDLE_FLOOR));
	fb_nbd_mem_stats(g_e, &ms);
	CHECK_EQ(ms.paused, 0);
	close(good);
	CHECK(wait_used_le(0));

	atomic_store(&g_stop, true);
	pthread_join(th, NULL);
	fb_engine_destroy(g_e);
	g_e = NULL;
}

/* One connection, deep pipelined large reads it does take: once idle, it
 * keeps at most the idle floor cached. */
TEST(idle_cache_trimmed)
{
	struct fb_engine_opts opts;
	struct fb_err err = { { 0 } };
	char listen[160];
	uint8_t *buf = malloc(REQ);
	uint64_t cookie;
	int fd;

	CHECK(buf != NULL);
	fb_engine_opts_init(&opts);
	opts.reactors = 1;
	CHECK_OK(fb_engine_create(&opts, &g_e, &err));
	CHECK_OK(fb_bdev_null_create(g_e, "N0", (1ull << 30) / 4096, 4096, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(g_e, "n", "N0", listen, false, &err));
	fd = cl_open(&g_srv, "n", 0, NULL, NULL);
	for (unsigned i = 0; i < 16; i++)
		cl_req(fd, NBD_CMD_READ, 0, i, (uint64_t)i * REQ, REQ, NULL);
	for (unsigned i = 0; i < 16; i++) {
		CHECK_EQ(simple_reply(fd, &cookie), 0);
		CHECK_EQ(cl_recv(fd, buf, REQ), 0);
	}
	CHECK(wait_used_le(IDLE_FLOOR));
	close(fd);
	CHECK(wait_used_le(0));
	fb_engine_destroy(g_e);
	g_e = NULL;
	free(buf);
}

int main(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/fb_nbdmem_XXXXXX");
	CHECK(mkdtemp(g_dir) != NULL);
	snprintf(g_sock, sizeof(g_sock), "%s/s.sock", g_dir);
	RUN(idle_cache_trimmed);
	RUN(global_budget_holds);
	unlink(g_sock);
	rmdir(g_dir);
	fprintf(stderr, "nbd_mem_test: ok\n");
	return 0;
}
