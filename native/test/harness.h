/* Tiny C test harness: CHECK macros with file:line, plus synchronous bdev
 * I/O helpers that run one request on a chosen reactor and wait for it. */
#ifndef FB_TEST_HARNESS_H
#define FB_TEST_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"
#include "flexbso/flexbso.h"
#include "flexbso/reactor.h"

void th_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			th_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);          \
	} while (0)
#define CHECK_EQ(a, b)                                                                   \
	do {                                                                             \
		long long _a = (long long)(a), _b = (long long)(b);                      \
		if (_a != _b)                                                            \
			th_fail(__FILE__, __LINE__, "%s == %s failed: %lld != %lld", #a, #b, \
				_a, _b);                                                 \
	} while (0)
/* For control calls that fill a struct fb_err named `err`. */
#define CHECK_OK(expr)                                                                   \
	do {                                                                             \
		int _rc = (expr);                                                        \
		if (_rc)                                                                 \
			th_fail(__FILE__, __LINE__, "%s returned %d (%s): %s", #expr, _rc, \
				strerror(-_rc), err.msg);                                \
	} while (0)

#define TEST(name) static void name(void)
#define RUN(name)                                                                        \
	do {                                                                             \
		fprintf(stderr, "  %s ...\n", #name);                                    \
		name();                                                                  \
	} while (0)

struct fb_engine *th_engine(unsigned reactors);
/* fb_rpc_call with printf-style params text; the result is dropped.
 * Returns fb_rpc_call's code, err filled on failure. */
int th_rpc(struct fb_engine *e, struct fb_err *err, const char *method, const char *params_fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The first uint64 member named key in what method answers for {"name":
 * name} (a bdev's stats); fails the test when the call fails or the
 * answer has no such member. */
uint64_t th_stat_u64(struct fb_engine *e, const char *method, const char *name, const char *key);
/* Bdevs through their modules' create RPCs. `extra` is more JSON members
 * for the file bdev, e.g. "\"direct_io\":true" (or ""). */
int th_malloc(struct fb_engine *e, const char *name, uint64_t num_blocks, uint32_t block_size,
	      struct fb_err *err);
int th_null(struct fb_engine *e, const char *name, uint64_t num_blocks, uint32_t block_size,
	    struct fb_err *err);
int th_file(struct fb_engine *e, const char *name, const char *path, uint32_t block_size,
	    const char *extra, struct fb_err *err);
int th_error_create(struct fb_engine *e, const char *base_name, struct fb_err *err);
/* fb_bdev_open for writing (or not) with no event callback. */
int th_open(struct fb_engine *e, const char *name, bool write, struct fb_bdev_desc **out,
	    struct fb_err *err);
/* Runs one I/O on reactor `reactor` and returns the submit error or the
 * completion status. */
int th_io(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, enum fb_io_type type,
	  struct iovec *iov, int iovcnt, uint64_t off, uint64_t num, uint32_t flags);
int th_read(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, void *buf,
	    uint64_t off, uint64_t num);
int th_write(struct fb_engine *e, unsigned reactor, struct fb_bdev_desc *desc, const void *buf,
	     uint64_t off, uint64_t num);
void th_fill_random(void *buf, size_t len, uint64_t *seed);
void *th_aligned(size_t align, size_t len);

#endif
