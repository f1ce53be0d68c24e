/* NBD export: internal interface between the export registry (nbd.c) and the
 * connection state machine (nbd_conn.c). The registry is the engine
 * subsystem "nbd"; fb_engine_destroy tears it down before deleting bdevs.
 *
 * Threading: the registry (exports, listeners, counters) lives in a
 * struct fb_nbd_state per engine. Control threads change it under `ctrl`
 * (serializes add/remove) and `lock`; reactors take `lock` briefly during
 * the handshake (export lookup, bind) and when a connection is freed. Each
 * connection belongs to one reactor and is touched only there; the I/O path
 * takes no lock.
 */
#ifndef FLEXBSO_NBD_H
#define FLEXBSO_NBD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "flexbso/flexbso.h"
#include "flexbso/reactor.h"

#define FB_NBD_MIN_PREFERRED_BLOCK 4096u
#define FB_NBD_MAX_PAYLOAD (32u << 20)
#define FB_NBD_MAX_CONNS 4096u

struct fb_nbd_conn;

/* Who a connection comes from, for the per-client cap: a uid on unix
 * sockets, an IP address on TCP. */
struct fb_nbd_client_key {
	uint8_t family;            /* AF_UNIX, AF_INET, AF_INET6 or 0 (unknown: not capped) */
	uint8_t addr[16];          /* uid (4 bytes) or the address */
};

struct fb_nbd_client {
	struct fb_nbd_client_key key;
	unsigned nconns;
};

struct fb_nbd_listener {
	struct fb_nbd_state *st;
	char *listen;              /* as given to fb_nbd_export_add */
	char *unix_path;           /* unlinked on close; NULL for TCP */
	bool tcp;
	int fd;
	uint64_t id;               /* connections refer to their listener by id */
	unsigned nexports;         /* under st->ctrl */
	struct fb_reactor *reactor;
	struct fb_uring_op accept_op, retry_op, cancel_op, retry_rm_op;
	struct __kernel_timespec retry_ts;
	unsigned ops;              /* ring ops in flight (listener's reactor only) */
	bool accept_armed, retry_armed, closing;
	bool fd_warned;                  /* the fd-reserve refusal was logged (once) */
	bool client_warned;        /* a per-client refusal was logged (once) */
	struct fb_nbd_tls_creds *tls;    /* NULL: no TLS on this listener */
	bool tls_required;
	char *tls_psk_file, *tls_cert_file, *tls_key_file, *tls_ca_file;  /* as given */
	bool closed;               /* under st->lock: no op in flight any more */
	struct fb_nbd_listener *next;
};

struct fb_nbd_export {
	char *name, *bdev_name;
	uint32_t name_len;
	bool readonly;
	struct fb_nbd_listener *listener;
	struct fb_bdev_desc *desc;
	uint64_t size;             /* bytes */
	uint32_t block_size;
	bool has_flush, has_unmap;
	bool has_zcopy;            /* reads are sent straight from the bdev's memory */
	unsigned nconns;           /* bound connections, under st->lock */
	bool removing;             /* under st->lock: no new binds */
	bool cap_warned;           /* a per-export refusal was logged (once) */
	struct fb_nbd_export *next;
};

/* Connections of one reactor; touched only by that reactor. */
struct fb_nbd_conn_list {
	struct fb_nbd_conn *head;
	struct fb_nbd_conn *flush_head;  /* connections with replies to send */
	struct fb_poller *poller;        /* sends them at the end of each loop pass */
	struct fb_nbd_conn *paused_head, *paused_tail;  /* waiting for engine memory */
};

struct fb_nbd_state {
	struct fb_engine *e;
	pthread_mutex_t ctrl;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* with lock: nconns / listener->closed changes */
	struct fb_nbd_export *exports;
	struct fb_nbd_listener *listeners;
	unsigned nconns;           /* every live connection, under lock */
	struct fb_nbd_client *clients;   /* clients with connections, under lock */
	unsigned nclients, clients_cap;
	unsigned max_per_export, max_per_client;  /* set once at creation */
	bool stopping;             /* engine shutdown: refuse new connections */
	uint64_t next_listener_id;
	unsigned nreactors;
	unsigned rr;               /* round-robin reactor choice (listener reactor only) */
	struct fb_nbd_conn_list *per_reactor;
	/* Engine-wide NBD buffer memory (nbd_conn.c): bytes allocated for
	 * request buffers, in use or cached; relaxed atomics, no lock. */
	_Atomic size_t mem_used;
	size_t mem_limit;                /* set once at creation */
	_Atomic unsigned mem_paused;     /* connections paused on mem_limit */
	unsigned stall_ms;               /* nbd_stall_timeout_ms (set once at creation) */
	unsigned payload_ms;             /* nbd_payload_timeout_ms (set once at creation) */
};

/* What a handshake needs to know about an export, copied under the lock. */
struct fb_nbd_export_view {
	uint64_t size;
	uint32_t block_size;
	bool readonly;
	char bdev_name[256];
};

/* A connection is gone: uncounts it (engine-wide, for its client and for
 * its export, when bound) and wakes whoever waits on the counts. Takes
 * st->lock; the last touch of st and exp by the connection. */
void fb_nbd_conn_uncount(struct fb_nbd_state *st, struct fb_nbd_export *exp,
			 const struct fb_nbd_client_key *client);

/* Registry calls used by connections (reactor side). fb_nbd_export_bind:
 * -ENOENT no such export, -EBUSY the export is at nbd_max_conns_per_export. */
int fb_nbd_export_lookup(struct fb_nbd_state *st, uint64_t listener_id, const char *name,
			 uint32_t name_len, struct fb_nbd_export_view *view);
int fb_nbd_export_bind(struct fb_nbd_state *st, uint64_t listener_id, const char *name,
		       uint32_t name_len, struct fb_nbd_export **out);
/* Calls fn for each export of the listener (under the lock; fn must be quick). */
int fb_nbd_export_list(struct fb_nbd_state *st, uint64_t listener_id,
		       int (*fn)(const struct fb_nbd_export *exp, void *arg), void *arg);

/* Connection side, called by the registry. */
/* On the listener's reactor: takes ownership of an accepted socket. */
void fb_nbd_conn_accept(struct fb_nbd_state *st, struct fb_nbd_listener *l, int fd,
			const struct fb_nbd_client_key *client);

struct fb_nbd_kick {
	struct fb_nbd_state *st;
	struct fb_nbd_export *exp; /* drain connections bound to exp */
	uint64_t listener_id;      /* close handshaking connections of this listener */
	bool all;                  /* drain every connection */
};
/* fb_msg_fn: runs on each reactor via fb_engine_run_on_all. */
void fb_nbd_conn_kick(void *kick);
/* fb_msg_fn (arg: the state), on each reactor once every connection is
 * gone: unregisters the reactor's flush poller. */
void fb_nbd_conn_reactor_fini(void *st);

#endif
