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
	_Atomic(struct fb_msg_node *) msgs;  /* LIFO pushed by producers, reversed by the reactor */
	atomic_int sleeping;            /* reactor is (about to be) blocked in the kernel */
	atomic_int wake_sent;           /* an eventfd write is pending */
	bool stop;
	struct fb_poller *pollers;
	unsigned pollers_dead;
	struct fb_deferred *defer_head, *defer_tail;
	unsigned sqes_pending;          /* SQEs prepared since the last submit */
	struct fb_timer *timers;        /* armed, sorted by deadline */
	_Atomic(struct fb_offload *) offload_done; /* LIFO pushed by offload workers */
	struct fb_timer *timers_due;    /* taken off `timers` by this pass, not run yet */
};

struct fb_subsys {
	struct fb_subsys *next;
	char name[32];
	void *ctx;
	fb_subsys_fini_fn fini;
};

/* A registered module as the engine sees it: the module's own struct (its
 * identity) and a full-size copy (fields a smaller, older struct lacks are
 * zero). */
struct fb_module_ent {
	const struct fb_bdev_module *m;
	struct fb_bdev_module c;
};

struct fb_notify_ent {
	uint64_t id;
	char *type, *ctx;
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
	/* Modules registered when the engine was created, and their state. */
	struct fb_module_ent *modules;
	void **module_ctx;
	unsigned nmodules;
	/* Notifications: a ring of notify_ring_entries. */
	pthread_mutex_t notify_lock;
	struct fb_notify_ent *notify;
	uint64_t notify_next_id;        /* id of the next notification (from 1) */
	uint64_t notify_dropped;
	/* Scratch and bounce buffers, engine-wide (fb_io_channel_get_buf). */
	_Atomic uint64_t buf_used;
	uint64_t buf_limit;
	void *zero_buf;                 /* FB_ZERO_BUF_LEN zeros (write-zeroes emulation) */
	_Atomic(struct fb_offload_pool *) offload; /* worker pool (offload.c), started on first use */
	pthread_mutex_t offload_lock;   /* guards starting it */
};

#define FB_ZERO_BUF_LEN (1u << 20)

/* struct fb_bdev.core_flags */
#define CORE_SPLIT 0x1u       /* split on optimal_io_boundary / max_io_blocks */
#define CORE_ALIGN 0x2u       /* bounce iovecs below required_alignment */
#define CORE_EMU_WZ 0x4u      /* write-zeroes as zero writes */
#define CORE_EMU_UNMAP 0x8u   /* unmap as a no-op success */

/* Stat counters; each reactor writes only its own slot (relaxed atomics, no
 * locked instructions), the control thread sums all slots. */
enum {
	FB_STAT_READ_OPS, FB_STAT_WRITE_OPS, FB_STAT_FLUSH_OPS, FB_STAT_UNMAP_OPS,
	FB_STAT_WZ_OPS, FB_STAT_BYTES_READ, FB_STAT_BYTES_WRITTEN, FB_STAT_BYTES_UNMAPPED,
	FB_STAT_READ_LAT, FB_STAT_WRITE_LAT, FB_STAT_ERRORS,
	FB_STAT_READ_LAT_MAX, FB_STAT_READ_LAT_MIN, FB_STAT_WRITE_LAT_MAX, FB_STAT_WRITE_LAT_MIN,
	FB_STAT_COUNT
};

struct fb_bdev_percore {
	struct fb_io_channel *ch;       /* touched only by reactor `index` */
	_Atomic uint64_t stat[FB_STAT_COUNT];
	/* This reactor's latency histogram (FB_HISTOGRAM_BUCKETS), written only
	 * by it; NULL while histograms are off (the I/O path pays one load). */
	_Atomic(_Atomic uint64_t *) hist;
} __attribute__((aligned(FB_CACHELINE)));

struct fb_bdev_desc {
	struct fb_bdev *bdev;
	struct fb_bdev_desc *next;
	bool write;
	const struct fb_bdev_module *claim_by; /* set when this descriptor holds the claim */
	char holder[128];
	fb_bdev_event_cb event_cb;
	void *event_ctx;
	atomic_bool removed;            /* REMOVE sent: new I/O fails -ENODEV */
	bool closed;                    /* closed while an event call was pending */
	unsigned event_refs;            /* event calls in progress (under e->lock) */
};

/* QoS (fb_bdev_set_qos_limits): per limit, one shared token bucket per bdev,
 * refilled from the clock by whichever reactor finds it due (a CAS on
 * last_ns), and a local bucket per channel (reactor) that draws batches from
 * it; no lock. Immutable limits; replaced whole and freed after a reactor
 * barrier. */
enum { QOS_IOS, QOS_RW_BYTES, QOS_R_BYTES, QOS_W_BYTES, QOS_N };

struct fb_qos_bucket {
	uint64_t rate;                  /* per second; 0 = unlimited */
	int64_t cap;                    /* most tokens kept (QOS_BURST_NS worth, at least 1) */
	int64_t batch;                  /* what a channel draws at once */
	_Atomic int64_t avail;          /* may go negative: a big I/O borrows */
	_Atomic uint64_t last_ns;       /* time the tokens are accounted up to */
};

struct fb_qos {
	struct fb_qos_limits limits;
	uint64_t gen;                   /* unique per limits set (channels compare it) */
	struct fb_qos_bucket b[QOS_N];
};

struct fb_bdev {
	struct fb_engine *e;
	struct fb_bdev *next, *prev;    /* registry, creation order */
	char *name;
	char *product_name;
	struct fb_uuid uuid;
	char uuid_str[FB_UUID_STR_LEN];
	uint32_t block_size;
	_Atomic uint64_t num_blocks;    /* changes on resize */
	uint32_t physical_block_size;
	uint32_t optimal_io_boundary;
	bool split_on_optimal_io_boundary;
	uint32_t write_unit_size;
	uint32_t required_alignment;    /* log2 bytes */
	uint32_t max_io_blocks;
	uint8_t core_flags;             /* CORE_*: I/O the core splits, bounces or emulates */
	_Atomic(struct fb_qos *) qos;   /* NULL: no limits (the I/O path pays one load) */
	uint32_t io_types;              /* bit per type the module supports (asked at register) */
	const struct fb_bdev_module *module;
	const struct fb_module_ent *mod; /* the engine's full-size copy */
	const struct fb_bdev_fn_table *fn; /* points at fn_copy */
	struct fb_bdev_fn_table fn_copy;
	void *module_ctx;
	struct fb_bdev_desc *descs;
	unsigned open_count;
	atomic_uint open_atomic;        /* mirror of open_count readable on reactors */
	struct fb_bdev_desc *claim;     /* descriptor holding the claim */
	bool deleting;
	atomic_int async_refs;          /* live channels + pending channel messages */
	struct fb_bdev_percore *pc;     /* one per reactor */
	_Atomic uint64_t *hist;         /* nreactors histograms, allocated on first enable */
	bool hist_on;                   /* under e->lock */
};

#define FB_BUF_MIN_SHIFT 12
#define FB_BUF_MAX_SHIFT 26         /* 64 MiB */
#define FB_BUF_CLASSES (FB_BUF_MAX_SHIFT - FB_BUF_MIN_SHIFT + 1)
/* A channel keeps freed buffers of a class while it holds fewer than 8 of
 * them or they total under FB_BUF_CACHE_BYTES: a queue of small buffers
 * (QD 32 of 16 KiB chunks) reuses its own instead of churning through
 * malloc and free, the page faults of a trimmed heap and madvise's TLB
 * shootdowns on every request. */
#define FB_BUF_CACHE_PER_CLASS 8
#define FB_BUF_CACHE_BYTES ((size_t)1 << 20)

struct fb_buf_free {
	struct fb_buf_free *next;
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
	/* io_wait: entries run from a deferred pass after an io or buffer is freed. */
	struct fb_io_wait_entry *wait_head, *wait_tail;
	struct fb_deferred wait_defer;
	bool wait_scheduled;
	struct fb_timer wait_timer;     /* safety net: waiters on budget freed elsewhere */
	/* I/O held back by QoS, FIFO (linked through next_free), and the timer
	 * that releases it. */
	struct fb_bdev_io *qos_head, *qos_tail;
	struct fb_timer qos_timer;
	uint64_t qos_gen;               /* fb_qos.gen qos_local was drawn under */
	int64_t qos_local[QOS_N];       /* this reactor's tokens (may be negative: borrowed) */
	/* Scratch buffer cache: per power-of-two class. */
	struct fb_buf_free *buf_cache[FB_BUF_CLASSES];
	unsigned buf_ncache[FB_BUF_CLASSES];
	_Alignas(16) unsigned char ctx[];
};

struct fb_bdev_io {
	struct fb_deferred defer;       /* deferred completion */
	struct fb_bdev *bdev;
	struct fb_io_channel *ch;
	struct fb_bdev_io *next_free;
	struct fb_bdev_desc *desc;
	enum fb_io_type type;
	uint32_t flags;
	uint64_t offset_blocks, num_blocks;
	struct iovec *iov;              /* the consumer's, or zc_iov for FB_IO_ZCOPY */
	int iovcnt;
	int status;
	fb_bdev_io_cb cb;
	void *cb_arg;
	uint64_t start_ns;
	/* Memory lent by the module (zcopy), or a core child's slice of its
	 * parent's iovecs (children are never zcopy). */
	struct iovec zc_iov[FB_ZCOPY_IOV_MAX];
	/* Core splitting, bouncing and emulation (see core_issue in bdev.c). */
	struct fb_bdev_io *parent;      /* set on children the core made */
	uint64_t split_next;            /* parent: blocks handed to children so far */
	uint32_t split_inflight;        /* parent: children in flight */
	int split_status;               /* parent: the first child error */
	bool split_issuing, split_parked;
	void *bounce;                   /* child: aligned copy from the channel's buffers */
	size_t bounce_len;
	struct fb_io_wait_entry wait;   /* parent: parked for an io or a buffer */
	_Alignas(16) unsigned char driver_ctx[];
};

void fb_reactor_fini_all(struct fb_engine *e);
int fb_modules_init(struct fb_engine *e, struct fb_err *err);
const struct fb_module_ent *fb_module_find(struct fb_engine *e, const struct fb_bdev_module *m);
void fb_modules_fini(struct fb_engine *e);
void fb_notify_fini(struct fb_engine *e);
void fb_timers_run(struct fb_reactor *r, uint64_t now);
int fb_reactor_init_all(struct fb_engine *e, struct fb_err *err);
void fb_bdev_delete_all(struct fb_engine *e);
/* Offload (offload.c): the reactor runs done of finished tasks; the engine
 * joins the workers before it stops the reactors. */
unsigned fb_offload_drain(struct fb_reactor *r);
void fb_offload_fini(struct fb_engine *e);
/* Wakes reactor r if it sleeps (reactor.c; any thread). */
void fb_reactor_wake(struct fb_reactor *r);

#endif
