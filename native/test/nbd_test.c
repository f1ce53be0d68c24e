/* NBD export: control API and protocol, driven by a small blocking client
 * on the test thread (the real-client tests live in test/nbd/). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "nbd_client.h"
#include "../src/export/nbd_proto.h"

static char g_dir[64];
static char g_sock[128];
/* Receive timeout: a server that stops answering fails a CHECK, not the run. */
static const struct cl_server g_srv = { g_sock, 5 };
/* Every connection here is a modern one: structured replies, block sizes asked for. */
#define NBDT_OPEN (CL_STRUCTURED | CL_BLOCK_SIZE)

/* Reads one whole reply (structured chunks until DONE, or a simple reply).
 * Returns the NBD error; read data lands in buf, block status length in *ext. */
static int cl_reply(int fd, uint64_t *cookie, void *buf, uint32_t *ext)
{
	uint8_t h[20], tmp[64];
	uint32_t err = 0;

	for (;;) {
		CHECK_EQ(cl_recv(fd, h, 4), 0);
		if (nbd_get32(h) == NBD_SIMPLE_REPLY_MAGIC) {
			CHECK_EQ(cl_recv(fd, h + 4, 12), 0);
			*cookie = nbd_get64(h + 8);
			return (int)nbd_get32(h + 4);
		}
		CHECK(nbd_get32(h) == NBD_STRUCTURED_REPLY_MAGIC);
		CHECK_EQ(cl_recv(fd, h + 4, 16), 0);
		uint16_t flags = nbd_get16(h + 4), type = nbd_get16(h + 6);
		uint32_t len = nbd_get32(h + 16);

		*cookie = nbd_get64(h + 8);
		if (type == NBD_REPLY_TYPE_OFFSET_DATA) {
			CHECK_EQ(cl_recv(fd, tmp, 8), 0);
			CHECK_EQ(cl_recv(fd, buf, len - 8), 0);
		} else {
			CHECK(len <= sizeof(tmp));
			CHECK_EQ(cl_recv(fd, tmp, len), 0);
			if (type == NBD_REPLY_TYPE_ERROR)
				err = nbd_get32(tmp);
			if (type == NBD_REPLY_TYPE_BLOCK_STATUS && ext)
				*ext = nbd_get32(tmp + 4);
		}
		if (flags & NBD_REPLY_FLAG_DONE)
			return (int)err;
	}
}

struct count_ctx {
	unsigned exports, conns;
};

static int count_exports(const struct fb_nbd_export_info *info, void *arg)
{
	struct count_ctx *c = arg;

	c->exports++;
	c->conns += info->connections;
	return 0;
}

static int get_stats(const struct fb_bdev_info *info, void *arg)
{
	*(struct fb_bdev_stats *)arg = info->stats;
	return 0;
}

static struct fb_engine *setup(unsigned reactors)
{
	struct fb_engine *e = th_engine(reactors);
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M0", 2048, 512, &err));
	return e;
}

TEST(test_control_errors)
{
	struct fb_engine *e = setup(1);
	struct fb_err err;
	char listen[160];

	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_EQ(fb_nbd_export_add(e, "x", "nope", listen, false, &err), -ENOENT);
	CHECK_EQ(fb_nbd_export_add(e, "", "M0", listen, false, &err), -EINVAL);
	CHECK_EQ(fb_nbd_export_add(e, "x", "M0", "udp:1.2.3.4:5", false, &err), -EINVAL);
	CHECK(strstr(err.msg, "listen") != NULL);
	/* A bdev block size NBD cannot advertise (not a power of two). */
	CHECK_OK(th_malloc(e, "M15", 16, 1536, &err));
	CHECK_EQ(fb_nbd_export_add(e, "x", "M15", listen, false, &err), -EINVAL);
	CHECK(strstr(err.msg, "power of two") != NULL);
	CHECK_OK(fb_bdev_delete(e, "M15", &err));
	CHECK_OK(fb_nbd_export_add(e, "x", "M0", listen, false, &err));
	CHECK_EQ(fb_nbd_export_add(e, "x", "M0", listen, false, &err), -EEXIST);
	CHECK_EQ(fb_bdev_delete(e, "M0", &err), -EBUSY);
	CHECK_EQ(fb_nbd_export_remove(e, "y", &err), -ENOENT);
	CHECK_OK(fb_nbd_export_remove(e, "x", &err));
	CHECK(access(g_sock, F_OK) != 0);  /* the last export took its socket along */
	CHECK_OK(fb_bdev_delete(e, "M0", &err));
	fb_engine_destroy(e);
}

TEST(test_io_roundtrip)
{
	struct fb_engine *e = setup(2);
	struct fb_err err;
	char listen[160];
	uint8_t *w = malloc(65536), *r = malloc(65536);
	uint64_t size = 0, cookie, seed = 7;
	uint16_t tflags = 0;
	uint32_t ext = 0;
	int fd, i;

	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, "rw", "M0", listen, false, &err));
	fd = cl_open(&g_srv, "rw", NBDT_OPEN | CL_META_ALLOC, &size, &tflags);
	CHECK_EQ(size, 2048 * 512);
	CHECK(tflags & NBD_FLAG_CAN_MULTI_CONN);
	CHECK(!(tflags & NBD_FLAG_READ_ONLY));
	th_fill_random(w, 65536, &seed);
	/* Pipelined: 8 writes, then a flush, then read everything back. */
	for (i = 0; i < 8; i++)
		cl_req(fd, NBD_CMD_WRITE, i & 1 ? NBD_CMD_FLAG_FUA : 0, (uint64_t)i, (uint64_t)i * 8192,
		       8192, w + i * 8192);
	for (i = 0; i < 8; i++)
		CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), 0);
	cl_req(fd, NBD_CMD_FLUSH, 0, 100, 0, 0, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), 0);
	CHECK_EQ(cookie, 100);
	cl_req(fd, NBD_CMD_READ, 0, 101, 0, 65536, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, r, NULL), 0);
	CHECK(memcmp(w, r, 65536) == 0);
	cl_req(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 102, 4096, 4096, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), 0);
	cl_req(fd, NBD_CMD_READ, 0, 103, 4096, 4096, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, r, NULL), 0);
	for (i = 0; i < 4096; i++)
		CHECK_EQ(r[i], 0);
	cl_req(fd, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 104, 0, 4096, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), 0);
	cl_req(fd, NBD_CMD_BLOCK_STATUS, 0, 105, 0, 1 << 20, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, &ext), 0);
	CHECK_EQ(ext, 1 << 20);
	/* Errors keep the connection usable. */
	cl_req(fd, NBD_CMD_READ, 0, 106, 1, 512, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), NBD_EINVAL);
	cl_req(fd, NBD_CMD_WRITE, 0, 107, size, 512, w);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), NBD_ENOSPC);
	cl_req(fd, 99, 0, 108, 0, 512, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), NBD_EINVAL);
	cl_req(fd, NBD_CMD_READ, 0, 109, 8192, 512, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, r, NULL), 0);
	CHECK(memcmp(w + 8192, r, 512) == 0);
	/* Reads on malloc go zero-copy and still count as reads. */
	{
		struct fb_bdev_stats s;

		CHECK_OK(fb_bdev_foreach(e, "M0", get_stats, &s));
		CHECK_EQ(s.num_read_ops, 3);
		CHECK_EQ(s.bytes_read, 65536 + 4096 + 512);
	}
	cl_req(fd, NBD_CMD_DISC, 0, 110, 0, 0, NULL);
	CHECK(cl_closed(fd));
	free(w);
	free(r);
	CHECK_OK(fb_nbd_export_remove(e, "rw", &err));
	fb_engine_destroy(e);
}

TEST(test_readonly_and_violation)
{
	struct fb_engine *e = setup(1);
	struct fb_err err;
	char listen[160];
	uint8_t buf[4096] = { 0 };
	uint64_t cookie;
	uint16_t tflags = 0;
	int fd;

	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, "ro", "M0", listen, true, &err));
	fd = cl_open(&g_srv, "ro", NBDT_OPEN, NULL, &tflags);
	CHECK(tflags & NBD_FLAG_READ_ONLY);
	cl_req(fd, NBD_CMD_WRITE, 0, 1, 0, 4096, buf);
	CHECK_EQ(cl_reply(fd, &cookie, NULL, NULL), NBD_EPERM);
	/* Garbage instead of a request header: the server hangs up. */
	cl_send(fd, "garbage garbage garbage garbage", 31);
	CHECK(cl_closed(fd));
	/* ... and keeps serving others. */
	fd = cl_open(&g_srv, "ro", NBDT_OPEN, NULL, NULL);
	cl_req(fd, NBD_CMD_READ, 0, 2, 0, 4096, NULL);
	CHECK_EQ(cl_reply(fd, &cookie, buf, NULL), 0);
	close(fd);
	CHECK_OK(fb_nbd_export_remove(e, "ro", &err));
	fb_engine_destroy(e);
}

TEST(test_remove_with_clients)
{
	struct fb_engine *e = setup(2);
	struct fb_err err;
	struct count_ctx cc = { 0, 0 };
	char listen[160];
	uint64_t cookie;
	uint8_t *buf = malloc(65536);
	int fd[4], i, j, got;

	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, "a", "M0", listen, false, &err));
	CHECK_OK(fb_nbd_export_add(e, "b", "M0", listen, false, &err));
	for (i = 0; i < 4; i++)
		fd[i] = cl_open(&g_srv, i < 2 ? "a" : "b", NBDT_OPEN, NULL, NULL);
	CHECK_OK(fb_nbd_export_foreach(e, count_exports, &cc));
	CHECK_EQ(cc.exports, 2);
	CHECK_EQ(cc.conns, 4);
	/* Requests in flight while "a" goes away: each is answered or the
	 * connection closes; then the server hangs up. */
	for (i = 0; i < 2; i++)
		for (j = 0; j < 16; j++)
			cl_req(fd[i], NBD_CMD_READ, 0, (uint64_t)j, 0, 65536, NULL);
	CHECK_OK(fb_nbd_export_remove(e, "a", &err));
	for (i = 0; i < 2; i++) {
		for (got = 0; got < 16; got++) {
			uint8_t h[4];

			if (recv(fd[i], h, 1, MSG_PEEK) <= 0)
				break;
			CHECK_EQ(cl_reply(fd[i], &cookie, buf, NULL), 0);
		}
		CHECK(cl_closed(fd[i]));
	}
	/* "b" still works. */
	cl_req(fd[2], NBD_CMD_READ, 0, 1, 0, 512, NULL);
	CHECK_EQ(cl_reply(fd[2], &cookie, buf, NULL), 0);
	/* Engine teardown with live clients and an export left. */
	fb_engine_destroy(e);
	CHECK(cl_closed(fd[2]));
	CHECK(cl_closed(fd[3]));
	free(buf);
}

TEST(test_remove_with_stuck_client)
{
	struct fb_engine *e = setup(1);
	struct fb_err err;
	char listen[160];
	uint64_t t0;
	int fd, i;

	/* A client that floods reads and never takes a reply: the server stops
	 * reading it (bounded memory) and removal still finishes, by the drain
	 * timeout. */
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, "s", "M0", listen, false, &err));
	fd = cl_open(&g_srv, "s", NBDT_OPEN, NULL, NULL);
	{
		struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 };
		uint8_t h[28];

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		for (i = 0; i < 100000; i++) {
			nbd_put32(h, NBD_REQUEST_MAGIC);
			nbd_put16(h + 4, 0);
			nbd_put16(h + 6, NBD_CMD_READ);
			nbd_put64(h + 8, (uint64_t)i);
			nbd_put64(h + 16, 0);
			nbd_put32(h + 24, 1 << 20);
			if (send(fd, h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h))
				break;
		}
	}
	CHECK(i < 100000);  /* the server stopped reading */
	t0 = fb_now_ns();
	CHECK_OK(fb_nbd_export_remove(e, "s", &err));
	CHECK(fb_now_ns() - t0 < 5000000000ull);
	CHECK(cl_closed(fd));
	fb_engine_destroy(e);
}

/* Connection caps: an export refuses binds past nbd_max_conns_per_export
 * with NBD_REP_ERR_POLICY (the connection may ask again), and a client past
 * nbd_max_conns_per_client is closed at accept, while another client (here:
 * another address on TCP) still gets in and does I/O. */
TEST(test_conn_caps)
{
	struct fb_engine_opts opts;
	struct fb_engine *e;
	struct fb_err err;
	char listen[160];
	uint8_t g[18], d[64], cflags[4], b;
	uint64_t cookie;
	int a1, a2, a3, extra, tcp_other;
	int port = 20400 + (int)(getpid() % 400);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 5 };

	fb_engine_opts_init(&opts);
	opts.nbd_max_conns_per_export = 2;
	opts.nbd_max_conns_per_client = 3;
	CHECK_OK(fb_engine_create(&opts, &e, &err));
	CHECK_OK(th_malloc(e, "M0", 2048, 512, &err));
	snprintf(listen, sizeof(listen), "unix:%s", g_sock);
	CHECK_OK(fb_nbd_export_add(e, "a", "M0", listen, false, &err));

	a1 = cl_open(&g_srv, "a", 0, NULL, NULL);
	a2 = cl_open(&g_srv, "a", 0, NULL, NULL);
	/* Third: the handshake works, GO is refused by policy, and the
	 * connection stays in option haggling. */
	a3 = cl_connect(&g_srv);
	CHECK_EQ(cl_recv(a3, g, sizeof(g)), 0);
	nbd_put32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	cl_send(a3, cflags, 4);
	nbd_put32(d, 1);
	d[4] = 'a';
	nbd_put16(d + 5, 0);
	cl_opt(a3, NBD_OPT_GO, d, 7);
	CHECK_EQ(cl_opt_reply(a3, NULL, NULL), NBD_REP_ERR_POLICY);
	cl_opt(a3, NBD_OPT_LIST, NULL, 0);
	CHECK_EQ(cl_opt_reply(a3, NULL, NULL), NBD_REP_SERVER);
	CHECK_EQ(cl_opt_reply(a3, NULL, NULL), NBD_REP_ACK);
	/* This uid now holds 3 connections: a fourth is closed at once. */
	extra = cl_connect(&g_srv);
	CHECK_EQ(recv(extra, &b, 1, 0), 0);
	close(extra);
	/* Capped connections still work. */
	cl_req(a1, NBD_CMD_READ, 0, 5, 0, 512, NULL);
	CHECK_EQ(cl_simple_reply(a1, &cookie), 0);
	CHECK_EQ(cookie, 5);
	CHECK_EQ(cl_recv(a1, d, 64), 0);
	/* A bound connection leaves: the refused one may now GO. */
	close(a2);
	for (int i = 0;; i++) {
		uint32_t t;

		CHECK(i < 500);
		nbd_put32(d, 1);
		d[4] = 'a';
		nbd_put16(d + 5, 0);
		cl_opt(a3, NBD_OPT_GO, d, 7);
		while ((t = cl_opt_reply(a3, NULL, NULL)) == NBD_REP_INFO)
			;
		if (t == NBD_REP_ACK)
			break;
		CHECK_EQ(t, NBD_REP_ERR_POLICY);
		usleep(10000);
	}
	close(a1);
	close(a3);
	for (int i = 0;; i++) {  /* the server sees them go */
		struct count_ctx cc = { 0, 0 };

		CHECK(i < 500);
		fb_nbd_export_foreach(e, count_exports, &cc);
		if (cc.conns == 0)
			break;
		usleep(10000);
	}

	/* Per client, not global: with this uid at its cap, a TCP client (an
	 * address of its own) gets in. */
	a1 = cl_open(&g_srv, "a", 0, NULL, NULL);
	a2 = cl_open(&g_srv, "a", 0, NULL, NULL);
	a3 = cl_connect(&g_srv);
	CHECK_EQ(cl_recv(a3, g, sizeof(g)), 0);
	snprintf(listen, sizeof(listen), "tcp:127.0.0.1:%d", port);
	CHECK_OK(fb_nbd_export_add(e, "t", "M0", listen, false, &err));
	tcp_other = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(tcp_other >= 0);
	inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
	CHECK_EQ(bind(tcp_other, (struct sockaddr *)&src, sizeof(src)), 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	CHECK_EQ(connect(tcp_other, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(tcp_other, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	CHECK_EQ(cl_recv(tcp_other, g, sizeof(g)), 0);
	CHECK(nbd_get64(g) == NBD_MAGIC_INIT);
	close(tcp_other);
	close(a1);
	close(a2);
	close(a3);
	CHECK_OK(fb_nbd_export_remove(e, "t", &err));
	CHECK_OK(fb_nbd_export_remove(e, "a", &err));
	fb_engine_destroy(e);
}

int main(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/fb-nbd-test.XXXXXX");
	CHECK(mkdtemp(g_dir) != NULL);
	snprintf(g_sock, sizeof(g_sock), "%s/s.sock", g_dir);
	RUN(test_control_errors);
	RUN(test_io_roundtrip);
	RUN(test_readonly_and_violation);
	RUN(test_remove_with_clients);
	RUN(test_remove_with_stuck_client);
	RUN(test_conn_caps);
	rmdir(g_dir);
	fprintf(stderr, "nbd_test: ok\n");
	return 0;
}
