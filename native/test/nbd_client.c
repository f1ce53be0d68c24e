#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "nbd_client.h"
#include "../src/export/nbd_proto.h"

int cl_connect(const struct cl_server *srv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = srv->recv_timeout_s };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	CHECK(strlen(srv->path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, srv->path, strlen(srv->path) + 1);
	CHECK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int cl_recv(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = recv(fd, p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;  /* seen after engines were torn down on this thread */
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void cl_send(int fd, const void *buf, size_t n)
{
	CHECK_EQ(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

void cl_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	nbd_put64(h, NBD_MAGIC_OPTS);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	cl_send(fd, h, sizeof(h));
	if (len)
		cl_send(fd, data, len);
}

uint32_t cl_opt_reply(int fd, uint64_t *size, uint16_t *tflags)
{
	uint8_t h[20], d[4096];
	uint32_t type, len;

	CHECK_EQ(cl_recv(fd, h, sizeof(h)), 0);
	CHECK(nbd_get64(h) == NBD_MAGIC_OPT_REPLY);
	type = nbd_get32(h + 12);
	len = nbd_get32(h + 16);
	CHECK(len <= sizeof(d));
	CHECK_EQ(cl_recv(fd, d, len), 0);
	if (type == NBD_REP_INFO && len >= 12 && nbd_get16(d) == NBD_INFO_EXPORT) {
		if (size)
			*size = nbd_get64(d + 2);
		if (tflags)
			*tflags = nbd_get16(d + 10);
	}
	return type;
}

int cl_open(const struct cl_server *srv, const char *name, unsigned flags, uint64_t *size,
	    uint16_t *tflags)
{
	uint8_t g[18], d[512], cflags[4];
	uint32_t n = (uint32_t)strlen(name), t;
	uint16_t ninfo = (flags & CL_BLOCK_SIZE) ? 1 : 0;
	int fd = cl_connect(srv);

	CHECK_EQ(cl_recv(fd, g, sizeof(g)), 0);
	CHECK(nbd_get64(g) == NBD_MAGIC_INIT && nbd_get64(g + 8) == NBD_MAGIC_OPTS);
	nbd_put32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	cl_send(fd, cflags, 4);
	if (flags & CL_STRUCTURED) {
		cl_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		CHECK_EQ(cl_opt_reply(fd, NULL, NULL), NBD_REP_ACK);
	}
	if (flags & CL_META_ALLOC) {
		nbd_put32(d, n);
		memcpy(d + 4, name, n);
		nbd_put32(d + 4 + n, 1);
		nbd_put32(d + 8 + n, 15);
		memcpy(d + 12 + n, "base:allocation", 15);
		cl_opt(fd, NBD_OPT_SET_META_CONTEXT, d, 27 + n);
		CHECK_EQ(cl_opt_reply(fd, NULL, NULL), NBD_REP_META_CONTEXT);
		CHECK_EQ(cl_opt_reply(fd, NULL, NULL), NBD_REP_ACK);
	}
	nbd_put32(d, n);
	memcpy(d + 4, name, n);
	nbd_put16(d + 4 + n, ninfo);
	if (ninfo)
		nbd_put16(d + 6 + n, NBD_INFO_BLOCK_SIZE);
	cl_opt(fd, NBD_OPT_GO, d, 6u + n + 2u * ninfo);
	while ((t = cl_opt_reply(fd, size, tflags)) == NBD_REP_INFO)
		;
	CHECK_EQ(t, NBD_REP_ACK);
	return fd;
}

void cl_req(int fd, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off, uint32_t len,
	    const void *payload)
{
	uint8_t h[28];

	nbd_put32(h, NBD_REQUEST_MAGIC);
	nbd_put16(h + 4, flags);
	nbd_put16(h + 6, type);
	nbd_put64(h + 8, cookie);
	nbd_put64(h + 16, off);
	nbd_put32(h + 24, len);
	cl_send(fd, h, sizeof(h));
	if (payload && len)
		cl_send(fd, payload, len);
}

int cl_simple_reply(int fd, uint64_t *cookie)
{
	uint8_t h[16];

	if (cl_recv(fd, h, sizeof(h)))
		return -1;
	CHECK(nbd_get32(h) == NBD_SIMPLE_REPLY_MAGIC);
	*cookie = nbd_get64(h + 8);
	return (int)nbd_get32(h + 4);
}

bool cl_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b[256];

	while (poll(&p, 1, 5000) == 1) {
		ssize_t r = recv(fd, b, sizeof(b), 0);

		if (r <= 0) {
			close(fd);
			return true;
		}
	}
	close(fd);
	return false;
}
