/* vhost-user-blk export: internal interface between its files.
 *
 *   vhost_blk.c      registry, listeners, the control thread, public API
 *   vhost_msg.c      vhost-user messages of one connection (control thread)
 *   vhost_mem.c      guest memory table: mmap, bounds-checked translation
 *   vhost_vq.c       split and packed virtqueues on a reactor: kick, poll, pop, push
 *   vhost_blk_io.c   virtio-blk requests: parse, bdev I/O, status
 *
 * Threading. One control thread per engine ("vhost" subsystem) accepts and
 * reads every controller's socket (poll(), non-blocking, per-connection
 * receive buffer: a stalled front-end holds only itself). Each started
 * queue belongs to one reactor and is touched only there while it runs; the
 * control thread starts and stops it with fb_reactor_run_sync and waits for
 * its in-flight requests to drain before it touches memory or ring state.
 */
#ifndef FLEXBSO_VHOST_BLK_H
#define FLEXBSO_VHOST_BLK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "flexbso/flexbso.h"
#include "flexbso/reactor.h"
#include "vhost_proto.h"

#define FB_VHOST_MAX_QUEUES 16u
#define FB_VHOST_MAX_QUEUE_SIZE 1024u
#define FB_VHOST_SEG_MAX 126u          /* data segments a request may have */
#define FB_VHOST_REQ_IOV 256u          /* iovecs per request after translation */
#define FB_VHOST_MAX_CHAIN 1024u        /* descriptors per chain, indirect included */
#define FB_VHOST_POLL_NS 32000u        /* adaptive busy-poll window, at most (QEMU's 32 µs) */
#define FB_VHOST_POLL_MIN_NS 4000u     /* a window that grows from 0 starts here */

/* ---------------------------------------------------------------- memory */

struct vhost_region {
	uint64_t gpa, size, uva;
	uint8_t *host;        /* mapping of the region's first byte */
	void *map;            /* mmap base (page aligned, includes mmap_offset) */
	size_t map_len;
};

struct vhost_mem {
	unsigned n;
	struct vhost_region r[VHU_MAX_MEM_REGIONS];
};

/* Guest physical [gpa, gpa+len) as up to max iovecs (regions may be
 * adjacent): returns the count, or -EFAULT when any byte lies outside the
 * table, -E2BIG when more than max iovecs would be needed. len 0 gives 0. */
int vhost_mem_gpa_iov(const struct vhost_mem *m, uint64_t gpa, uint64_t len, struct iovec *iov,
		      int max);
/* A contiguous host pointer for [gpa, gpa+len) in one region, or NULL. */
void *vhost_mem_gpa_ptr(const struct vhost_mem *m, uint64_t gpa, uint64_t len);
/* The same for a front-end virtual address (vring addresses). */
void *vhost_mem_uva_ptr(const struct vhost_mem *m, uint64_t uva, uint64_t len);
/* Maps the table's regions from their fds (validated: sizes, overflow,
 * overlap, fd size). On failure nothing stays mapped and err names why. */
int vhost_mem_map(struct vhost_mem *m, const struct vhu_mem_table *t, const int *fds, int nfds,
		  char *err, size_t errlen);
void vhost_mem_unmap(struct vhost_mem *m);

/* ------------------------------------------------------------- queues */

struct vhost_ctrlr;
struct vhost_vq;

struct vhost_req {
	struct vhost_vq *vq;
	uint16_t head;                /* split: descriptor head; packed: buffer id */
	uint16_t ndesc;               /* packed: ring slots the chain took */
	uint16_t infl_head;           /* packed: its head entry in the inflight region */
	uint8_t *status;              /* guest byte for the status */
	uint32_t used_len;            /* bytes written into guest buffers */
	uint32_t bytes;               /* data moved (reads and writes) */
	int niov;
	struct vhost_req *next;       /* free list / retry list */
	uint8_t st;                   /* status value to write */
	/* parsed request, kept so that a -ENOMEM retry resubmits as is */
	uint8_t op;                   /* enum fb_io_type */
	uint32_t io_flags;
	struct iovec *data;
	int ndata;
	uint64_t off_blocks, nblocks;
	struct iovec iov[FB_VHOST_REQ_IOV];
};

/* One virtqueue. Setup fields are written by the control thread while the
 * queue is stopped; runtime fields only by its reactor while started. */
struct vhost_vq {
	struct vhost_ctrlr *c;
	unsigned index;
	/* setup (control thread) */
	unsigned num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set, enabled;
	int kickfd, callfd, errfd;
	/* SET_VRING_BASE / last stop's position. Split: last_avail. Packed:
	 * bits 0-14 avail position, 15 its wrap counter; 16-30 used
	 * position, 31 its wrap counter (0 in 16-31: the same as avail). */
	uint32_t base;
	struct vhu_inflight_queue *infl; /* inflight region of this queue, or NULL */
	struct vhu_inflight_queue_packed *pinfl; /* the same region, laid out for a packed ring */
	unsigned pinfl_free;          /* packed: entries on the region's free list */
	struct fb_reactor *reactor;
	bool started;

	/* runtime (reactor) */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail, used_idx, signalled_used;
	bool signalled_valid;
	bool event_idx, indirect;
	/* packed ring (VIRTIO_F_RING_PACKED): positions 0..num-1 and wrap counters */
	bool packed;
	struct vring_packed_desc *pdesc;
	struct vring_packed_event *drv_event, *dev_event;
	uint16_t p_avail, p_used, p_sig;
	bool p_avail_wrap, p_used_wrap, p_sig_wrap;
	uint16_t *p_last_flags;       /* flags of the last used descriptor written */
	bool stopping, broken;
	bool polling;                 /* notifications off, poller registered */
	bool flush_queued;
	uint64_t last_work_ns;
	uint64_t slept_ns;            /* when polling last stopped (0: not since a kick) */
	uint32_t poll_ns;             /* this queue's poll window, 0..FB_VHOST_POLL_NS */
	uint64_t infl_counter;
	unsigned inflight;            /* requests taken and not completed */
	unsigned ops;                 /* ring ops in flight (kick poll, cancel) */
	bool kick_armed;
	struct fb_uring_op kick_op, cancel_op;
	struct fb_poller *poller;
	struct fb_deferred flush;
	struct fb_io_channel *ch;
	struct vhost_req *reqs;       /* num of them, preallocated at start */
	struct vhost_req *free_reqs, *retry_head, *retry_tail;
	uint16_t *resubmit;           /* heads (packed: head entries) to resubmit after a reconnect */
	unsigned nresubmit;
	struct vhost_mem *mem;        /* the connection's table while started */
	/* stop handshake (control thread waits, reactor signals) */
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stopped;
	/* stats (relaxed, read by control threads) */
	_Atomic uint64_t ops_done;
};

/* Control thread. start: translates and validates the rings, allocates the
 * request pool, takes a channel on the reactor and arms the kick. Returns
 * 0, or -errno with err filled (the queue stays stopped). */
int vhost_vq_start(struct vhost_vq *vq, char *err, size_t errlen);
/* Stops a started queue: no new requests, waits for in-flight ones to
 * complete into the used ring; vq->base = last_avail afterwards. */
void vhost_vq_stop(struct vhost_vq *vq);
void vhost_vq_init(struct vhost_vq *vq, struct vhost_ctrlr *c, unsigned index);
/* Closes fds and forgets the setup (connection gone or RESET_OWNER). */
void vhost_vq_reset(struct vhost_vq *vq);

/* Reactor side, used by vhost_blk_io.c. */
void vhost_vq_complete(struct vhost_req *req);
/* Walks the descriptor chain at head into req->iov (readable iovecs first,
 * then writable; *nout of them readable). -EINVAL for a malformed chain. */
int vhost_vq_chain(struct vhost_vq *vq, uint16_t head, struct vhost_req *req, int *nout);

/* virtio-blk (vhost_blk_io.c): parses one popped request and submits it;
 * it always ends in vhost_vq_complete (maybe later), except that -ENOMEM
 * means the bdev asked to retry: the caller queues the request and calls
 * vhost_blk_submit again later. */
int vhost_blk_handle(struct vhost_req *req, int nout);
int vhost_blk_submit(struct vhost_req *req);

/* --------------------------------------------------------- controller */

struct vhost_conn {
	int fd;
	uint8_t buf[sizeof(struct vhu_hdr) + VHU_MAX_PAYLOAD];
	size_t have;
	int fds[VHU_MAX_FDS];
	int nfds;
};

struct vhost_state;

struct vhost_ctrlr {
	struct vhost_state *st;
	struct fb_engine *e;
	char *name, *bdev_name, *socket_path, *cpumask;
	bool readonly;
	struct fb_bdev_desc *desc;
	uint32_t block_size;
	uint64_t num_blocks;
	bool has_flush, has_unmap, has_write_zeroes;
	unsigned num_queues;
	struct fb_reactor *qreactor[FB_VHOST_MAX_QUEUES];
	int listen_fd;
	struct vhost_conn conn;       /* fd -1: no front-end connected */
	/* negotiated */
	uint64_t features, protocol_features;
	bool owner;
	struct vhost_mem mem;
	void *infl_map;               /* inflight region (mmap base) */
	size_t infl_len;
	int infl_fd;
	unsigned infl_qsize;          /* queue size the region was laid out for */
	struct vhost_vq vq[FB_VHOST_MAX_QUEUES];
	_Atomic uint64_t bad_msgs;     /* control thread and reactors */
	struct vhost_ctrlr *next;
};

/* Message side (vhost_msg.c, control thread). */
/* Reads what the socket has; handles complete messages. Returns false when
 * the connection must be closed (EOF, protocol error). */
bool vhost_conn_readable(struct vhost_ctrlr *c);
/* Stops queues, unmaps memory, closes fds: the front-end is gone. */
void vhost_conn_close(struct vhost_ctrlr *c);
uint64_t vhost_blk_features(const struct vhost_ctrlr *c);
void vhost_blk_config(const struct vhost_ctrlr *c, struct virtio_blk_config *cfg);

#endif
