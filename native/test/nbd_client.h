/* A tiny blocking NBD client for the C tests (nbd_test, robustness_test):
 * handshake, requests, and the reply readers both of them need. Failures
 * end the test through CHECK, like the rest of the harness. */
#ifndef FB_TEST_NBD_CLIENT_H
#define FB_TEST_NBD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the export listens, and how long a blocking read may wait: the
 * receive timeout turns a server that never answers into a failed CHECK
 * instead of a hung test. */
struct cl_server {
	const char *path;      /* unix socket */
	int recv_timeout_s;
};

/* cl_open flags. Without any, the handshake asks for nothing and the
 * connection gets simple replies only. */
#define CL_STRUCTURED (1u << 0)  /* NBD_OPT_STRUCTURED_REPLY */
#define CL_META_ALLOC (1u << 1)  /* base:allocation context; needs CL_STRUCTURED */
#define CL_BLOCK_SIZE (1u << 2)  /* GO asks for NBD_INFO_BLOCK_SIZE */

int cl_connect(const struct cl_server *srv);
/* Reads exactly n bytes; returns 0, or -1 on EOF/error. */
int cl_recv(int fd, void *buf, size_t n);
void cl_send(int fd, const void *buf, size_t n);
void cl_opt(int fd, uint32_t opt, const void *data, uint32_t len);
/* Reads one option reply and returns its type; an NBD_INFO_EXPORT in it
 * fills *size and *tflags (either may be NULL). */
uint32_t cl_opt_reply(int fd, uint64_t *size, uint16_t *tflags);
/* Connects, negotiates as `flags` says and ends with GO on `name`; returns
 * the socket, in transmission. *size and *tflags as for cl_opt_reply. */
int cl_open(const struct cl_server *srv, const char *name, unsigned flags, uint64_t *size,
	    uint16_t *tflags);
void cl_req(int fd, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t off, uint32_t len,
	    const void *payload);
/* One simple reply (no structured replies negotiated): returns its NBD
 * error and fills *cookie, or -1 when the server hung up. */
int cl_simple_reply(int fd, uint64_t *cookie);
/* Waits (5 s at most) for the server to hang up, draining what it sends;
 * closes fd either way and says whether it did. */
bool cl_closed(int fd);

#endif
