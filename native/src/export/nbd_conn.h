/* NBD connection internals shared by nbd_conn.c (lifecycle, socket I/O,
 * buffers), nbd_handshake.c (option haggling) and nbd_xmit.c (transmission
 * phase). A connection is touched only by its reactor. */
#ifndef FLEXBSO_NBD_CONN_H
#define FLEXBSO_NBD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "nbd.h"
#include "nbd_tls.h"

#define CONN_QD 128u                  /* requests in flight per connection */
#define CONN_RX_CAP (64u << 10)       /* receive buffer */
#define CONN_OPT_MAX (16u << 10)      /* longest option we parse (strings are <= 4 KiB) */
#define CONN_DIRECT_MIN (16u << 10)   /* payload remainder received straight into the I/O buffer */
#define CONN_BUDGET (64u << 20)       /* bytes of request buffers in flight */
#define CONN_POOL_CAP (32u << 20)     /* bytes of free buffers kept for reuse */
#define CONN_POOL_IDLE (1u << 20)     /* ... once no request holds a buffer */
#define CONN_IDLE_TRIM_MS 200        /* an idle connection's cache is trimmed after this */
#define CONN_MEM_RETRY_MS 5           /* a connection paused on the engine budget re-checks */
#define CONN_TX_IOV 256u
#define REQ_TX_IOV (1 + FB_ZCOPY_IOV_MAX) /* reply header + data */
/* Bytes after which a sendmsg takes no more replies: small replies still
 * batch, but each large one goes alone, so its completion frees its slot and
 * the next send starts while the socket buffer still holds data (rough
 * runs here: 1 MiB reads at QD32 went faster than with unbounded batches). */
#define CONN_TX_BATCH (1u << 20)
#define CONN_DRAIN_SEC 1              /* how long a drain waits for a client to read replies */
#define CONN_HANDSHAKE_SEC 30         /* a client must reach transmission within this */
#define POOL_MIN_SHIFT 12u
#define POOL_CLASSES 14u              /* 4 KiB .. 32 MiB */

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum conn_phase { PH_CLIENT_FLAGS, PH_OPTIONS, PH_TRANSMISSION };

/* Results of one parse step. */
enum { STEP_MORE = 1, STEP_NEED_DATA = 0, STEP_BLOCKED = -1, STEP_STOP = -2, STEP_ERROR = -3 };

/* Multi-step requests: each bdev completion advances one of these. */
enum req_step { RS_SINGLE, RS_FLUSH_AFTER, RS_FLUSHING };

struct nbd_req {
	struct fb_nbd_conn *conn;
	struct nbd_req *next;         /* free list or send queue */
	uint64_t cookie, offset;
	uint32_t len;
	uint16_t type, flags;
	uint8_t *buf;
	unsigned buf_class;
	size_t held;                  /* bytes charged to the connection's budget */
	struct fb_bdev_io *zio;       /* zcopy read: holds the bdev memory sent as data */
	uint32_t got;                 /* write payload bytes received */
	enum req_step step;
	uint32_t nbd_err;             /* 0 or an NBD_E* value for the reply */
	struct iovec io_iov;          /* the bdev I/O's buffer */
	uint8_t hdr[32];              /* reply header */
	struct iovec tx_iov[REQ_TX_IOV];
	int tx_iovcnt;
};

struct conn_buf {
	uint8_t *p;
	size_t len, off, cap;         /* off: bytes already sent */
};

struct fb_nbd_conn {
	struct fb_nbd_state *st;
	struct fb_reactor *reactor;
	struct fb_nbd_conn *prev, *next;  /* per-reactor list */
	int fd;
	uint64_t listener_id;
	struct fb_nbd_client_key client;  /* counted in st->clients */
	/* TLS (nbd_tls.c): the listener's credentials (a reference), whether
	 * it requires TLS, and the session once STARTTLS is acknowledged. */
	struct fb_nbd_tls_creds *tls_creds;
	bool tls_required;
	bool tls_starting;                /* ACK queued: the session starts once it is sent */
	bool tls_defer_queued;
	bool rx_to_tls;                   /* the recv in flight fills the TLS buffer */
	struct fb_nbd_tls *tls;
	struct fb_deferred tls_defer;     /* decrypts buffered records on the next turn */
	enum conn_phase phase;
	bool no_zeroes, structured, meta;
	char *meta_name;                  /* export whose base:allocation was selected */
	uint32_t meta_name_len;

	struct fb_nbd_export *exp;        /* bound export (transmission phase) */
	struct fb_io_channel *ch;
	uint64_t size;
	uint32_t block_size;
	bool readonly;

	/* receive */
	uint8_t *rx;
	uint32_t rx_head, rx_tail;
	bool rx_busy, rx_direct;
	bool rx_ready;                    /* the socket may hold data (last poll event) */
	bool rx_wait;                     /* the parser waits for the next poll event */
	bool rxpoll_armed;
	uint32_t rxpoll_seq, rx_sub_seq;  /* poll events seen; at the last recv's submit */
	size_t rx_len;                    /* bytes the last recv asked for */
	struct fb_uring_op rxpoll_op;
	struct nbd_req *rx_req;           /* write whose payload is being received */
	uint64_t discard;                 /* payload bytes to drop */
	struct fb_uring_op rx_op;

	/* send */
	struct conn_buf hs_out;           /* handshake replies */
	struct nbd_req *txq_head, *txq_tail;
	bool tx_busy, flush_queued;
	struct fb_nbd_conn *flush_next;   /* on the reactor's flush list */
	struct nbd_req *retry_head, *retry_tail;  /* submits refused with -ENOMEM */
	struct iovec tx_iov[CONN_TX_IOV];
	struct msghdr tx_msg;
	struct fb_uring_op tx_op;
	/* Stall watchdog (see "stalled readers" in nbd_conn.c). */
	bool tx_moved;                    /* a send took bytes since the last tick */
	bool tx_probe;                    /* the send in flight is being cancelled to read its progress */
	uint64_t tx_moved_ns;             /* tick time at which progress was last seen */
	int outq;                         /* unread reply bytes in the socket at the last tick */
	struct fb_timer stall_timer;
	struct fb_uring_op tx_cancel_op;

	/* Payload deadline (see "payload deadline" in nbd_conn.c). */
	uint64_t rx_seq;                  /* bumped each time rx_req is set */
	uint64_t pl_seq, pl_start_ns;     /* the payload being timed, and when it began */
	struct fb_timer pl_timer;

	/* requests */
	struct nbd_req *reqs, *req_free;
	unsigned io_inflight;             /* bdev I/Os not yet completed */
	size_t bytes_held;                /* request buffers in use */
	uint8_t *pool[POOL_CLASSES];
	size_t pool_bytes;
	bool mem_paused;                  /* blocked on st->mem_limit, on the reactor's paused list */
	struct fb_nbd_conn *mp_prev, *mp_next;
	struct fb_timer mem_timer, idle_timer;

	/* lifecycle */
	bool in_parse, blocked, draining, closing, close_after_tx;
	unsigned ops;                     /* ring ops in flight */
	bool drain_timer_used;            /* the drain timeout was started (once) */
	struct fb_timer drain_timer, hs_timer;
	struct fb_uring_op cancel_op, cancel_rx_op;
};

/* nbd_conn.c */
/* NBD_OPT_STARTTLS was acknowledged (hs_out holds the ACK). */
void fb_nbd_conn_starttls(struct fb_nbd_conn *c);
int fb_nbd_buf_reserve(struct conn_buf *b, size_t more);
struct nbd_req *fb_nbd_req_get(struct fb_nbd_conn *c);
void fb_nbd_req_put(struct fb_nbd_conn *c, struct nbd_req *req);
/* Gets req's I/O buffer: -ENOMEM when malloc fails, -EAGAIN when the
 * engine's NBD memory budget is spent (the connection is then paused: the
 * parser must return STEP_BLOCKED; it resumes when memory is freed). */
int fb_nbd_req_buf_get(struct fb_nbd_conn *c, struct nbd_req *req);
/* A zcopy read has no buffer but is charged as if it had one, so the budget
 * (and the backpressure it gives) is the same as on the copy path. */
void fb_nbd_req_charge(struct fb_nbd_conn *c, struct nbd_req *req);
/* Queues a finished request's reply (sent at the end of the loop pass). */
void fb_nbd_conn_txq_push(struct fb_nbd_conn *c, struct nbd_req *req);
/* Runs the connection's sends and retries at the end of this loop pass. */
void fb_nbd_conn_schedule(struct fb_nbd_conn *c);
void fb_nbd_conn_drain(struct fb_nbd_conn *c);
/* May free c: the caller must not touch it afterwards. */
void fb_nbd_conn_check_drained(struct fb_nbd_conn *c);
void fb_nbd_conn_maybe_free(struct fb_nbd_conn *c);

/* nbd_handshake.c: one parse step of option haggling (STEP_*). */
int fb_nbd_hs_parse(struct fb_nbd_conn *c);

/* nbd_xmit.c: one parse step of the transmission phase (STEP_*), and the
 * payload step of a write whose data is still arriving. */
int fb_nbd_xmit_parse(struct fb_nbd_conn *c);
int fb_nbd_xmit_payload(struct fb_nbd_conn *c);
/* Resubmits requests the bdev refused with -ENOMEM (or drops them when the
 * connection is closing). */
void fb_nbd_xmit_retry(struct fb_nbd_conn *c);

#endif
