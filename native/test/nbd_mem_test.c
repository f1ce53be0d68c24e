/* Engine-wide NBD buffer budget: many hostile connections (large writes,
 * large reads whose replies they never read) against a small
 * fb_engine_opts.nbd_mem_limit. The accounted memory must stay within the
 * bound nbd_conn.c guarantees (the limit itself: nothing is forced past it),
 * a good client must still complete its I/O, and once the hostile clients
 * leave the counter must go back to (about) zero. */
#include <fcntl.h>
#include <poll.h>
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

/* Resets the peaks and starts the sampler thread. */
static void sampler_start(pthread_t *th)
{
	atomic_store(&g_stop, false);
	atomic_store(&g_max_used, 0);
	atomic_store(&g_max_paused, 0);
	CHECK_EQ(pthread_create(th, NULL, sampler, NULL), 0);
}

/* Stops the sampler, then the engine (in that order: the sampler reads it). */
static void engine_stop(pthread_t th)
{
	atomic_store(&g_stop, true);
	pthread_join(th, NULL);
	fb_engine_destroy(g_e);
	g_e = NULL;
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
		CHECK_EQ(cl_simple_reply(fd, &cookie), 0);
		CHECK_EQ(cookie, 1000 + i);
		cl_req(fd, NBD_CMD_READ, 0, 2000 + i, off, len, NULL);
		CHECK_EQ(cl_simple_reply(fd, &cookie), 0);
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

/* Waits (40 s at most) for the counter to reach <= v. */
static bool wait_used_le(uint64_t v)
{
	for (int i = 0; i < 4000; i++) {
		if (used_now() <= v) {
			if (i > 500)
				fprintf(stderr, "    (counter reached %llu after %d ms)\n", (unsigned long long)v, i * 10);
			return true;
		}
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
	/* Writers cut off mid-payload by their client's close are reclaimed by
	 * the payload deadline at the latest. */
	opts.nbd_payload_timeout_ms = 1000;
	CHECK_OK(fb_engine_create(&opts, &g_e, &err));
	CHECK_OK(th_null(g_e, "N0", (1ull << 30) / 4096, 4096, &err));
	CHECK_OK(th_malloc(g_e, "M0", (8ull << 20) / 4096, 4096, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(g_e, "n", "N0", listen, false, &err));
	CHECK_OK(fb_nbd_export_add(g_e, "m", "M0", listen, false, &err));
	fb_nbd_mem_stats(g_e, &ms);
	CHECK_EQ(ms.limit, LIMIT);
	CHECK_EQ(ms.used, 0);

	sampler_start(&th);
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

	/* The guarantee: the limit, with no per-connection overshoot. */
	bound = LIMIT;
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

	engine_stop(th);
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
	CHECK_OK(th_null(g_e, "N0", (1ull << 30) / 4096, 4096, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(g_e, "n", "N0", listen, false, &err));
	fd = cl_open(&g_srv, "n", 0, NULL, NULL);
	for (unsigned i = 0; i < 16; i++)
		cl_req(fd, NBD_CMD_READ, 0, i, (uint64_t)i * REQ, REQ, NULL);
	for (unsigned i = 0; i < 16; i++) {
		CHECK_EQ(cl_simple_reply(fd, &cookie), 0);
		CHECK_EQ(cl_recv(fd, buf, REQ), 0);
	}
	CHECK(wait_used_le(IDLE_FLOOR));
	close(fd);
	CHECK(wait_used_le(0));
	fb_engine_destroy(g_e);
	g_e = NULL;
	free(buf);
}

/* ------------------------------------------------------ stalled readers */

/* Large buffers may take 3/4 of it (30 MiB): one STALL_REQ buffer fits, a
 * second one waits, so the engine is under pressure while one is held. */
#define STALL_LIMIT (40u << 20)
#define STALL_MS 300
/* Larger than what the socket takes (the server asks SO_SNDBUF 4 MiB,
 * which the kernel doubles): the reply stays stuck. */
#define STALL_REQ (16u << 20)
#define NSTALL 6

static atomic_uint g_stall_warns;

static void stall_log(enum fb_log_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level > FB_LOG_WARN)
		return;
	if (strstr(msg, "took no reply bytes") && strstr(msg, "export f:"))
		atomic_fetch_add(&g_stall_warns, 1);
	fprintf(stderr, "    [log] %s\n", msg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The server hung up on fd (checked without reading from it). */
static bool hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

/* Reads everything left until EOF (or an error): true on EOF. */
static bool drain_to_eof(int fd)
{
	static uint8_t sink[1 << 16];

	for (;;) {
		ssize_t r = recv(fd, sink, sizeof(sink), 0);

		if (r == 0)
			return true;
		if (r < 0)
			return errno == ECONNRESET;
	}
}

/* The stall tests' engine: a 64 MiB file bdev F0 exported as "f", a
 * STALL_LIMIT budget and STALL_MS stall timeout (payload_ms: 0 = default),
 * the warning count reset and the sampler started. */
static void stall_engine_start(char *path, size_t plen, unsigned payload_ms, pthread_t *th)
{
	struct fb_engine_opts opts;
	struct fb_err err = { { 0 } };
	char listen[160];
	int f;

	snprintf(path, plen, "%s/f.img", g_dir);
	f = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	CHECK(f >= 0);
	CHECK_EQ(ftruncate(f, 64ll << 20), 0);
	close(f);
	fb_engine_opts_init(&opts);
	opts.reactors = 2;
	opts.nbd_mem_limit = STALL_LIMIT;
	opts.nbd_stall_timeout_ms = STALL_MS;
	if (payload_ms)
		opts.nbd_payload_timeout_ms = payload_ms;
	opts.log = stall_log;
	atomic_store(&g_stall_warns, 0);
	CHECK_OK(fb_engine_create(&opts, &g_e, &err));
	CHECK_OK(th_file(g_e, "F0", path, 4096, "", &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(g_e, "f", "F0", listen, false, &err));
	sampler_start(th);
}

/* Clients that ask for large reads on a file bdev (no zcopy: each reply
 * holds a malloc'd buffer) and never read the replies are disconnected once
 * they have taken nothing for the stall timeout while memory is short; a
 * good client keeps working meanwhile, and a client that reads its replies
 * slowly (pauses well under the timeout) is never disconnected. */
TEST(stalled_readers_evicted)
{
	struct fb_nbd_mem_stats ms;
	char path[128];
	int hfd[NSTALL], good, slow;
	bool gone[NSTALL] = { false };
	unsigned ngone = 0, rounds = 0;
	uint64_t seed = 7, t0, t_all = 0, cookie;
	uint8_t *buf;
	pthread_t th;

	stall_engine_start(path, sizeof(path), 0, &th);

	good = cl_open(&g_srv, "f", 0, NULL, NULL);
	good_io(good, 2, &seed);

	/* Hostile: one 16 MiB read each, never read. */
	for (int i = 0; i < NSTALL; i++) {
		hfd[i] = cl_open(&g_srv, "f", 0, NULL, NULL);
		cl_req(hfd[i], NBD_CMD_READ, 0, 1, (uint64_t)i * (8u << 20), STALL_REQ, NULL);
	}
	/* One of their buffers is admitted, the others wait: pressure. */
	for (int i = 0; i < 200; i++) {
		fb_nbd_mem_stats(g_e, &ms);
		if (ms.paused > 0 && ms.used >= STALL_REQ)
			break;
		usleep(5000);
	}
	CHECK(ms.paused > 0 && ms.used >= STALL_REQ && ms.used <= STALL_LIMIT);
	t0 = now_ms();
	/* They are admitted and evicted one at a time: about NSTALL * 2 timeouts. */
	while (ngone < NSTALL && now_ms() - t0 < 20000) {
		good_io(good, 1, &seed);  /* the good client keeps getting through */
		rounds++;
		for (int i = 0; i < NSTALL; i++)
			if (!gone[i] && hung_up(hfd[i])) {
				gone[i] = true;
				ngone++;
			}
	}
	t_all = now_ms() - t0;
	fprintf(stderr, "    %u/%u stalled clients disconnected after %llu ms (timeout %u ms); "
		"good client: %u rounds; max used %llu\n", ngone, NSTALL, (unsigned long long)t_all,
		STALL_MS, rounds, (unsigned long long)atomic_load(&g_max_used));
	CHECK_EQ(ngone, NSTALL);
	CHECK(t_all >= STALL_MS);  /* not before the timeout */
	CHECK(atomic_load(&g_max_used) <= STALL_LIMIT);
	CHECK(rounds >= 2);
	for (int i = 0; i < NSTALL; i++) {
		CHECK(drain_to_eof(hfd[i]));
		close(hfd[i]);
	}
	CHECK(wait_used_le(IDLE_FLOOR));  /* only the good client's idle cache */
	fb_nbd_mem_stats(g_e, &ms);
	CHECK_EQ(ms.paused, 0);
	CHECK(atomic_load(&g_stall_warns) == NSTALL);
	good_io(good, 2, &seed);

	/* Slow reader: two pipelined 16 MiB reads (the second waits for memory
	 * while the first is held: pressure throughout),
	 * each reply read in 1 MiB pieces with 60 ms pauses, so a reply takes
	 * several timeouts to read. It must not be disconnected. */
	atomic_store(&g_max_paused, 0);
	buf = malloc(STALL_REQ);
	CHECK(buf != NULL);
	slow = cl_open(&g_srv, "f", 0, NULL, NULL);
	for (unsigned i = 0; i < 2; i++)
		cl_req(slow, NBD_CMD_READ, 0, 100 + i, (uint64_t)i * STALL_REQ, STALL_REQ, NULL);
	t0 = now_ms();
	for (unsigned i = 0; i < 2; i++) {
		uint8_t h[16];

		usleep(60000);
		CHECK_EQ(cl_recv(slow, h, sizeof(h)), 0);
		CHECK(nbd_get32(h) == NBD_SIMPLE_REPLY_MAGIC);
		CHECK_EQ(nbd_get32(h + 4), 0);
		CHECK_EQ(nbd_get64(h + 8), 100 + i);
		for (uint32_t off = 0; off < STALL_REQ; off += 1u << 20) {
			usleep(60000);
			CHECK_EQ(cl_recv(slow, buf + off, 1u << 20), 0);
		}
	}
	fprintf(stderr, "    slow reader: 2 x 16 MiB in %llu ms, max paused %u\n",
		(unsigned long long)(now_ms() - t0), atomic_load(&g_max_paused));
	CHECK(atomic_load(&g_max_paused) > 0);  /* it did run under pressure */
	CHECK(!hung_up(slow));
	cl_req(slow, NBD_CMD_READ, 0, 200, 0, 4096, NULL);
	CHECK_EQ(cl_simple_reply(slow, &cookie), 0);
	CHECK_EQ(cookie, 200);
	CHECK_EQ(cl_recv(slow, buf, 4096), 0);
	CHECK(atomic_load(&g_stall_warns) == NSTALL);
	close(slow);
	free(buf);

	/* An idle connection under pressure is not disconnected either. */
	CHECK(!hung_up(good));
	close(good);
	CHECK(wait_used_le(0));

	engine_stop(th);
	unlink(path);
}

/* A client that stops reading once its socket holds replies, and whose next
 * request waits for memory, has nothing pending in the engine: the stall
 * clock must still see it (its unread bytes do not go down) and close it
 * within the stall timeout, long before the holder's payload deadline frees
 * the budget. A client paused the same way that has read everything only
 * waits for memory and stays connected, and its request completes once the
 * memory is back. */
TEST(paused_reader_evicted)
{
	struct fb_nbd_mem_stats ms;
	char path[128];
	int holder, hog, patient, one = 4096;
	uint64_t t0, cookie;
	uint8_t hdr[NBD_REQUEST_LEN], *buf = malloc(STALL_REQ);
	pthread_t th;

	CHECK(buf != NULL);
	stall_engine_start(path, sizeof(path), 120000, &th);  /* the holder outlives the test */

	/* The holder: a 16 MiB write whose payload never comes holds its
	 * buffer, so a second 16 MiB buffer cannot be admitted. */
	holder = cl_open(&g_srv, "f", 0, NULL, NULL);
	nbd_put32(hdr, NBD_REQUEST_MAGIC);
	nbd_put16(hdr + 4, 0);
	nbd_put16(hdr + 6, NBD_CMD_WRITE);
	nbd_put64(hdr + 8, 1);
	nbd_put64(hdr + 16, 0);
	nbd_put32(hdr + 24, STALL_REQ);
	cl_send(holder, hdr, sizeof(hdr));
	for (int i = 0; i < 400 && used_now() < STALL_REQ; i++)
		usleep(5000);
	CHECK(used_now() >= STALL_REQ);

	/* The patient client reads its small replies, then waits for memory. */
	patient = cl_open(&g_srv, "f", 0, NULL, NULL);
	for (unsigned i = 0; i < 4; i++) {
		cl_req(patient, NBD_CMD_READ, 0, 10 + i, (uint64_t)i << 16, 1u << 16, NULL);
		CHECK_EQ(cl_simple_reply(patient, &cookie), 0);
		CHECK_EQ(cl_recv(patient, buf, 1u << 16), 0);
	}
	cl_req(patient, NBD_CMD_READ, 0, 99, 0, STALL_REQ, NULL);

	/* The hog leaves 1 MiB of replies unread in its socket, then waits. */
	hog = cl_open(&g_srv, "f", 0, NULL, NULL);
	CHECK_EQ(setsockopt(hog, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)), 0);
	for (unsigned i = 0; i < 16; i++)
		cl_req(hog, NBD_CMD_READ, 0, 20 + i, (uint64_t)i << 16, 1u << 16, NULL);
	cl_req(hog, NBD_CMD_READ, 0, 98, STALL_REQ, STALL_REQ, NULL);
	for (int i = 0; i < 400; i++) {
		fb_nbd_mem_stats(g_e, &ms);
		if (ms.paused >= 2)
			break;
		usleep(5000);
	}
	CHECK_EQ(ms.paused, 2);

	t0 = now_ms();
	while (!hung_up(hog) && now_ms() - t0 < 20000)
		usleep(10000);
	fprintf(stderr, "    paused hog disconnected after %llu ms (timeout %u ms)\n",
		(unsigned long long)(now_ms() - t0), STALL_MS);
	CHECK(hung_up(hog));
	CHECK_EQ(atomic_load(&g_stall_warns), 1);
	close(hog);
	/* Four more timeouts under pressure: the patient one is still there. */
	usleep(4 * STALL_MS * 1000);
	CHECK(!hung_up(patient));
	fb_nbd_mem_stats(g_e, &ms);
	CHECK_EQ(ms.paused, 1);

	/* The holder goes: the patient request gets its memory and completes. */
	close(holder);
	CHECK_EQ(cl_simple_reply(patient, &cookie), 0);
	CHECK_EQ(cookie, 99);
	CHECK_EQ(cl_recv(patient, buf, STALL_REQ), 0);
	CHECK_EQ(atomic_load(&g_stall_warns), 1);
	close(patient);
	CHECK(wait_used_le(0));
	CHECK(atomic_load(&g_max_used) <= STALL_LIMIT);
	engine_stop(th);
	unlink(path);
	free(buf);
}

/* A client that sends reads, never reads the replies and stops sending
 * leaves them in its socket with nothing pending in the engine and no
 * memory pressure: the stall clock must still see it (its unread bytes do
 * not go down) and close it within the calm limit (3 x the timeout). A
 * good client keeps its verified I/O meanwhile; a client that reads its
 * replies slowly, sending nothing, and an idle one that has read
 * everything stay connected. */
TEST(idle_unread_evicted)
{
	char path[128];
	int good, hog, slow, idle;
	uint64_t seed = 11, t0, t_hog = 0, cookie;
	unsigned rounds = 0, seen = 0;
	uint8_t *buf = malloc(1u << 16);
	pthread_t th;

	CHECK(buf != NULL);
	stall_engine_start(path, sizeof(path), 0, &th);

	good = cl_open(&g_srv, "f", 0, NULL, NULL);
	good_io(good, 1, &seed);
	idle = cl_open(&g_srv, "f", 0, NULL, NULL);
	cl_req(idle, NBD_CMD_READ, 0, 5, 0, 4096, NULL);
	CHECK_EQ(cl_simple_reply(idle, &cookie), 0);
	CHECK_EQ(cl_recv(idle, buf, 4096), 0);
	/* 1 MiB of replies each: the socket takes it all, so the engine has
	 * nothing left to send. */
	hog = cl_open(&g_srv, "f", 0, NULL, NULL);
	slow = cl_open(&g_srv, "f", 0, NULL, NULL);
	for (unsigned i = 0; i < 16; i++) {
		cl_req(hog, NBD_CMD_READ, 0, 20 + i, (uint64_t)i << 16, 1u << 16, NULL);
		cl_req(slow, NBD_CMD_READ, 0, 40 + i, (uint64_t)i << 16, 1u << 16, NULL);
	}
	/* The slow one takes a reply every half timeout: 16 of them span
	 * several calm limits, with bytes taken all along. */
	t0 = now_ms();
	for (unsigned i = 0; i < 16; i++) {
		usleep(STALL_MS / 2 * 1000);
		CHECK_EQ(cl_simple_reply(slow, &cookie), 0);
		CHECK(cookie >= 40 && cookie < 56 && !(seen & (1u << (cookie - 40))));  /* any order */
		seen |= 1u << (cookie - 40);
		CHECK_EQ(cl_recv(slow, buf, 1u << 16), 0);
		good_io(good, 1, &seed);
		rounds++;
		if (!t_hog && hung_up(hog))
			t_hog = now_ms() - t0;
	}
	while (!hung_up(hog) && now_ms() - t0 < 20000) {
		good_io(good, 1, &seed);  /* the good client keeps getting through */
		rounds++;
	}
	if (!t_hog)
		t_hog = now_ms() - t0;
	fprintf(stderr, "    idle hog with unread replies disconnected after about %llu ms (calm limit %u ms); "
		"good client: %u rounds\n", (unsigned long long)t_hog, 3 * STALL_MS, rounds);
	CHECK(hung_up(hog));
	CHECK_EQ(atomic_load(&g_stall_warns), 1);
	CHECK(drain_to_eof(hog));
	close(hog);
	CHECK(!hung_up(slow));
	CHECK(!hung_up(idle));
	cl_req(slow, NBD_CMD_READ, 0, 60, 0, 4096, NULL);
	CHECK_EQ(cl_simple_reply(slow, &cookie), 0);
	CHECK_EQ(cookie, 60);
	CHECK_EQ(cl_recv(slow, buf, 4096), 0);
	good_io(good, 1, &seed);
	CHECK_EQ(atomic_load(&g_stall_warns), 1);
	close(slow);
	close(idle);
	close(good);
	CHECK(wait_used_le(0));
	engine_stop(th);
	unlink(path);
	free(buf);
}

int main(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/fb_nbdmem_XXXXXX");
	CHECK(mkdtemp(g_dir) != NULL);
	snprintf(g_sock, sizeof(g_sock), "%s/s.sock", g_dir);
	RUN(idle_cache_trimmed);
	RUN(global_budget_holds);
	RUN(stalled_readers_evicted);
	RUN(paused_reader_evicted);
	RUN(idle_unread_evicted);
	unlink(g_sock);
	rmdir(g_dir);
	fprintf(stderr, "nbd_mem_test: ok\n");
	return 0;
}
