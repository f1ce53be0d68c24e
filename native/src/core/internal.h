/* Engine internals shared by src/core (not a public header). */
#ifndef FLEXBSO_CORE_INTERNAL_H
#define FLEXBSO_CORE_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "flexbso/bdev_module.h"
#include "flexbso/reactor.h"

#define FB_CACHELINE 64

/* A queued cross-thread message (heap node: control path only). */
struct fb_msg {
	struct fb_msg *next;
	fb_msg_fn fn;
	void *arg;
};

struct fb_poller {
	struct fb_poller *next;
	struct fb_reactor *r;
	fb_poller_fn fn;
	void *arg;
	bool dead;
};

struct fb_reactor {
	struct fb_engine *e;
	unsigned index;
	pthread_t thread;
	bool thread_started;
	clockid_t cpu_clock;
	struct io_uring ring;
	bool ring_ok;                   /* the ring exists (created and torn down by the thread) */
	int init_rc;                    /* the thread's ring setup result */
	sem_t init_done;                /* posted once init_rc is set */
	int efd;                        /* eventfd that wakes the reactor */
	uint64_t efd_buf;               /* target of the pending eventfd read */
	struct fb_uring_op efd_op;
	_Atomic(struct fb_msg *) msgs;  /* LIFO pushed by producers, reversed by the reactor */
	atomic_int sleeping;            /* reactor is (about to be) blocked in the kernel */
	atomic_int wake_sent;           /* an eventfd write is pending */
	bool stop;
	struct fb_poller *pollers;
	unsigned pollers_dead;
	struct fb_deferred *defer_head, *defer_tail;
	unsigned sqes_pending;          /* SQEs prepared since the last submit */
};

struct fb_subsys {
	struct fb_subsys *next;
	char name[32];
	void *ctx;
	fb_subsys_fini_fn fini;
};

struct fb_engine {
	struct fb_engine_opts opts;
	unsigned nreactors;
	struct fb_reactor *reactors;
	pthread_mutex_t lock;           /* control plane: registry, descriptors, subsystems */
	pthread_cond_t cond;            /* broadcast when a bdev's async refs drop */
	struct fb_bdev *bdevs_head, *bdevs_tail;
	struct fb_subsys *subsys;
	bool destroying;
};

/* Stat counters; each reactor writes only its own slot (relaxed atomics, no
 * locked instructions), the control thread sums all slots. */
enum {
	FB_STAT_READ_OPS, FB_STAT_WRITE_OPS, FB_STAT_FLUSH_OPS, FB_STAT_UNMAP_OPS,
	FB_STAT_WZ_OPS, FB_STAT_BYTES_READ, FB_STAT_BYTES_WRITTEN, FB_STAT_BYTES_UNMAPPED,
	FB_STAT_READ_LAT, FB_STAT_WRITE_LAT, FB_STAT_ERRORS, FB_STAT_COUNT
};

struct fb_bdev_percore {
	struct fb_io_channel *ch;       /* touched only by reactor `index` */
	_Atomic uint64_t stat[FB_STAT_COUNT];
} __attribute__((aligned(FB_CACHELINE)));

struct fb_bdev_desc {
	struct fb_bdev *bdev;
	struct fb_bdev_desc *next;
	bool write;
	const struct fb_bdev_module *claim_by; /* set when this descriptor holds the claim */
	char holder[128];
};

struct fb_bdev {
	struct fb_engine *e;
	struct fb_bdev *next, *prev;    /* registry, creation order */
	char *name;
	uint32_t block_size;
	uint64_t num_blocks;
	const struct fb_bdev_module *module;
	const struct fb_bdev_fn_table *fn;
	void *module_ctx;
	struct fb_bdev_desc *descs;
	unsigned open_count;
	atomic_uint open_atomic;        /* mirror of open_count readable on reactors */
	struct fb_bdev_desc *claim;     /* descriptor holding the claim */
	bool deleting;
	atomic_int async_refs;          /* live channels + pending channel messages */
	struct fb_bdev_percore *pc;     /* one per reactor */
};

struct fb_io_channel {
	struct fb_bdev *bdev;
	struct fb_reactor *r;
	unsigned refs;
	unsigned outstanding;           /* ios taken from the pool, not yet freed */
	bool destroy_pending;
	struct fb_bdev_io *free_ios;
	void *slabs;                    /* singly linked via the first word */
	size_t io_size;
	_Alignas(16) unsigned char ctx[];
};

struct fb_bdev_io {
	struct fb_deferred defer;       /* deferred completion */
	struct fb_bdev *bdev;
	struct fb_io_channel *ch;
	struct fb_bdev_io *next_free;
	enum fb_io_type type;
	uint32_t flags;
	uint64_t offset_blocks, num_blocks;
	struct iovec *iov;              /* the consumer's, or zc_iov for FB_IO_ZCOPY */
	int iovcnt;
	int status;
	fb_bdev_io_cb cb;
	void *cb_arg;
	uint64_t start_ns;
	struct iovec zc_iov[FB_ZCOPY_IOV_MAX]; /* memory lent by the module (zcopy) */
	_Alignas(16) unsigned char driver_ctx[];
};

void fb_reactor_fini_all(struct fb_engine *e);
int fb_reactor_init_all(struct fb_engine *e, struct fb_err *err);
void fb_bdev_delete_all(struct fb_engine *e);

#endif
