/* FlexBSO storage engine — public C API.
 *
 * The engine is a C11 library with no Node dependency: reactors (one pthread
 * each, each owning an io_uring), bdevs (block devices stacked through a
 * module function table, see bdev_module.h) and exports (NBD; vhost-user-blk
 * later). The Node addon, the perf tool and the C tests all use this header.
 *
 * Conventions: functions return 0 or a negative errno. Control functions
 * (create/delete/export/inject) are thread-safe, are called from a non-reactor
 * thread, block until the change is visible on every reactor, and on failure
 * fill `err->msg` with a sentence naming the parameter and the fix.
 *
 * Module authors: bdev_module.h (the module ABI), thread.h and json.h.
 */
#ifndef FLEXBSO_H
#define FLEXBSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fb_engine;
struct fb_bdev;
struct fb_bdev_desc;
struct fb_io_channel;
struct fb_bdev_io;

/* A human-readable error, filled by control functions on failure. */
struct fb_err {
	char msg[512];
};

/* ---------------------------------------------------------------- engine */

enum fb_log_level { FB_LOG_ERROR = 0, FB_LOG_WARN = 1, FB_LOG_INFO = 2, FB_LOG_DEBUG = 3 };
/* Called from any thread (reactors included): must be thread-safe and quick. */
typedef void (*fb_log_fn)(enum fb_log_level level, const char *msg, void *arg);

/* Options carry their own size (nbdkit style) so fields can be appended. */
struct fb_engine_opts {
	size_t size;            /* sizeof(struct fb_engine_opts) */
	unsigned reactors;      /* reactor threads; 0 = 1 */
	unsigned poll_us;       /* busy-poll window before an idle reactor sleeps; 0 = never poll */
	unsigned ring_entries;  /* io_uring SQ size per reactor; 0 = 256 */
	fb_log_fn log;          /* NULL = stderr */
	void *log_arg;
	/* Engine-wide cap on NBD export buffer memory (request buffers in use
	 * plus per-connection caches), bytes; 0 = min(1 GiB, physical RAM / 4).
	 * Never exceeded: a request whose buffer does not fit waits (its
	 * connection stops reading) until memory is freed; buffers of 1 MiB and
	 * up may fill only 3/4 of it, and a request larger than that share is
	 * failed with ENOMEM. Anything holding the budget lets go within
	 * nbd_payload_timeout_ms or about 2 * nbd_stall_timeout_ms (under
	 * pressure), or when the bdev completes. */
	size_t nbd_mem_limit;
	/* A connection whose pending replies have had no byte taken by its
	 * socket for this long while the NBD buffer budget is under pressure (a
	 * connection waits for memory, or more than nbd_mem_limit is in use),
	 * or for 3 times this long otherwise, is disconnected (it never reads
	 * its replies, and pins their buffers). Idle connections and
	 * connections that read, however slowly, are never disconnected.
	 * Milliseconds; 0 = 10000. */
	unsigned nbd_stall_timeout_ms;
	/* Engine-wide cap on bdev scratch buffers (fb_io_channel_get_buf) and
	 * core bounce buffers, bytes; 0 = min(1 GiB, physical RAM / 8). */
	size_t bdev_buf_limit;
	/* Notifications kept for fb_notify_foreach (a ring; the oldest are
	 * dropped first); 0 = 4096. */
	unsigned notify_ring_entries;
	/* An NBD write whose payload has not fully arrived this long after its
	 * header was read closes its connection (the payload's buffer is
	 * charged to nbd_mem_limit before it is read, so a client that sends
	 * half a payload must not pin it forever). Milliseconds; 0 = 30000. */
	unsigned nbd_payload_timeout_ms;
	/* Bytes all malloc bdevs together may hold (each is charged its full
	 * size at creation; creation beyond it fails with a message naming the
	 * size and the limit); 0 = physical RAM minus max(RAM / 8, 512 MiB). */
	size_t malloc_mem_limit;
	/* NBD connections one export may have bound at once; a client asking
	 * for more is refused with NBD_REP_ERR_POLICY. 0 = 1024. */
	unsigned nbd_max_conns_per_export;
	/* NBD connections one client may hold at once (handshaking or bound,
	 * over all exports): a client is a uid on unix sockets (SO_PEERCRED)
	 * and an IP address on TCP. More are closed at accept. Also never more
	 * than a quarter of the descriptors RLIMIT_NOFILE leaves after the
	 * engine's reserve, so one client cannot use up the descriptors every
	 * other client needs. 0 = 256. */
	unsigned nbd_max_conns_per_client;
	/* Offload worker threads for large copies (fb_offload_submit), at most
	 * FB_OFFLOAD_MAX_WORKERS; 0 = one per online CPU the reactors leave
	 * free, so none where the reactors have every CPU (there a hand-off
	 * only adds a wake-up each way, and the task runs on its reactor). */
	unsigned offload_workers;
};

void fb_engine_opts_init(struct fb_engine_opts *opts);
int fb_engine_create(const struct fb_engine_opts *opts, struct fb_engine **out, struct fb_err *err);
/* Stops exports (clients are disconnected), deletes bdevs top-down, joins reactors. */
void fb_engine_destroy(struct fb_engine *e);
unsigned fb_engine_reactor_count(const struct fb_engine *e);
/* CPU time (user+sys, microseconds) consumed by reactor threads so far. */
uint64_t fb_engine_reactor_cpu_us(const struct fb_engine *e);

/* ------------------------------------------------------------------ uuid */

struct fb_uuid {
	uint8_t b[16];
};
#define FB_UUID_STR_LEN 37 /* 36 characters + NUL */
void fb_uuid_generate(struct fb_uuid *out);               /* random, version 4 */
void fb_uuid_fmt(const struct fb_uuid *u, char out[FB_UUID_STR_LEN]); /* lower case */
int fb_uuid_parse(const char *s, struct fb_uuid *out);    /* -EINVAL unless 8-4-4-4-12 hex */
bool fb_uuid_is_null(const struct fb_uuid *u);

/* ------------------------------------------------------------ JSON-RPC */

/* Every module RPC method (bdev_malloc_create, bdev_raid_create, ...) and
 * the core's own (bdev_set_qos_limit, ...) go through one entry point, so
 * the addon and the engine process need no edit for a new module.
 * params_json is the JSON-RPC params value (an object, or NULL / "null").
 * On success *result is the result value as JSON text (caller frees).
 * Errors: FB_RPC_METHOD_NOT_FOUND, FB_RPC_INVALID_PARAMS (params that do
 * not decode: err names the param and the fix), or the handler's negative
 * errno (err names what and the fix). Control threads. */
#define FB_RPC_METHOD_NOT_FOUND (-32601)
#define FB_RPC_INVALID_PARAMS (-32602)
int fb_rpc_call(struct fb_engine *e, const char *method, const char *params_json, char **result,
		struct fb_err *err);
/* Lists the RPC methods fb_rpc_call serves, with the owning module's name
 * ("core" for the engine's own). A non-zero return stops the walk. */
typedef int (*fb_rpc_method_info_fn)(const char *method, const char *module, void *arg);
int fb_rpc_foreach_method(fb_rpc_method_info_fn fn, void *arg);

/* ------------------------------------------------------- notifications */

/* SPDK's notify_get_notifications: events from modules (safe-read repair,
 * degraded member, rebuild progress, ...). ids start at 1 and increase by
 * one per notification. */
struct fb_notification {
	uint64_t id;
	const char *type;       /* e.g. "raid_safe_read_repair" */
	const char *ctx_json;   /* a JSON value (see fb_notify) */
};
typedef int (*fb_notification_fn)(const struct fb_notification *n, void *arg);
/* Calls fn for kept notifications with id > since_id, oldest first, at
 * most max (0 = all); strings are valid during the call only. Returns the
 * number dropped from the ring since the engine started. */
uint64_t fb_notify_foreach(struct fb_engine *e, uint64_t since_id, size_t max,
			   fb_notification_fn fn, void *arg);

/* ------------------------------------------------------- bdev control */

/* Bdevs are created by their module's RPC method through fb_rpc_call, e.g.
 *   fb_rpc_call(e, "bdev_malloc_create",
 *               "{\"name\":\"M0\",\"num_blocks\":2048,\"block_size\":4096}", &res, &err)
 * so this header has no per-module functions: a new module adds none. */

enum fb_io_type {
	FB_IO_READ = 0,
	FB_IO_WRITE,
	FB_IO_FLUSH,
	FB_IO_UNMAP,
	FB_IO_WRITE_ZEROES,
	FB_IO_ZCOPY,      /* zero-copy buffer access (fb_bdev_zcopy_start) */
	FB_IO_TYPE_COUNT
};

/* Deletes a bdev by name or uuid. Descriptors opened with an event
 * callback (virtual bdevs over it, exports) get FB_BDEV_EVENT_REMOVE and
 * must close; the delete waits for that (SPDK's hot-remove). -EBUSY, with
 * a message naming the holder, while a descriptor without a callback holds
 * it open. */
int fb_bdev_delete(struct fb_engine *e, const char *name, struct fb_err *err);

struct fb_bdev_stats {
	uint64_t num_read_ops, num_write_ops, num_flush_ops, num_unmap_ops, num_write_zeroes_ops;
	uint64_t bytes_read, bytes_written, bytes_unmapped;
	uint64_t read_latency_ns, write_latency_ns; /* sums, for means */
	uint64_t io_errors;
	uint64_t read_latency_max_ns, read_latency_min_ns;   /* min 0 = none yet */
	uint64_t write_latency_max_ns, write_latency_min_ns;
};

/* QoS (SPDK's bdev_set_qos_limit), enforced in the bdev core for every
 * consumer of the bdev: per-reactor token buckets fed from one shared
 * per-bdev budget each timeslice, no lock on the I/O path; I/O over the
 * limit is queued, never failed. 0 = unlimited. */
struct fb_qos_limits {
	size_t size;              /* sizeof(struct fb_qos_limits) */
	uint64_t rw_ios_per_sec;
	uint64_t rw_mbytes_per_sec;
	uint64_t r_mbytes_per_sec;
	uint64_t w_mbytes_per_sec;
};
int fb_bdev_set_qos_limits(struct fb_engine *e, const char *name,
			   const struct fb_qos_limits *limits, struct fb_err *err);

struct fb_bdev_info {
	const char *name;
	const char *module;       /* "malloc", "null", "file", "error", later "raid", "compress" */
	uint32_t block_size;
	uint64_t num_blocks;
	const char *claimed_by;   /* module name of the claiming bdev, or NULL */
	/* framework_get_config: a JSON array of the {"method","params"} entries
	 * that rebuild it (the module's write_config_json), or NULL. */
	const char *config_json;
	/* bdev_get_bdevs' driver_specific: a JSON object of the module's named
	 * members (dump_info_json), e.g. {"uring":{...}}, or NULL. */
	const char *driver_json;
	struct fb_bdev_stats stats;
	const char *create_method; /* unused since ABI v2 (always NULL): see config_json */
	const char *claim_holder;  /* e.g. "error bdev 'EE_M0'", or NULL */
	char uuid[FB_UUID_STR_LEN];
	const char *product_name;
	uint32_t physical_block_size;
	uint32_t optimal_io_boundary;
	bool split_on_optimal_io_boundary;
	uint32_t write_unit_size;
	uint32_t required_alignment;
	uint32_t max_io_blocks;
	struct fb_qos_limits qos;
};
/* Calls fn for each bdev in creation order (bases before the bdevs built on
 * them); strings are valid only during the call. A non-zero return stops the
 * walk and is returned. name != NULL visits one bdev (-ENOENT if absent).
 * fn runs under the engine's registry lock: it must not call control
 * functions (create/delete/open/close/inject) or wait on reactors. */
typedef int (*fb_bdev_info_fn)(const struct fb_bdev_info *info, void *arg);
int fb_bdev_foreach(struct fb_engine *e, const char *name, fb_bdev_info_fn fn, void *arg);
/* Per-reactor stats of one bdev (bdev_get_iostat -c): fn(reactor index,
 * stats, arg) for each reactor, in order. -ENOENT if absent. */
typedef int (*fb_bdev_channel_stats_fn)(unsigned reactor, const struct fb_bdev_stats *s, void *arg);
int fb_bdev_stats_per_reactor(struct fb_engine *e, const char *name, fb_bdev_channel_stats_fn fn,
			      void *arg);
/* bdev_reset_iostat: zeroes the counters of one bdev (name) or all (NULL);
 * maxmin_only resets just the latency max/min. */
int fb_bdev_stats_reset(struct fb_engine *e, const char *name, bool maxmin_only);

/* Latency histograms (SPDK's bdev_enable_histogram / bdev_get_histogram):
 * SPDK's bucket layout with a shift of FB_HISTOGRAM_SHIFT: range 0 holds
 * one value per bucket (0..2^shift-1), range r >= 1 holds values with their
 * top bit at shift + r - 1, 2^(r-1) values per bucket. Values are read and
 * write latencies in ns. Each reactor counts into its own buckets with no
 * lock; a read merges them. Enabling a disabled histogram starts it at zero. */
#define FB_HISTOGRAM_SHIFT 7
#define FB_HISTOGRAM_BUCKETS ((64 - FB_HISTOGRAM_SHIFT + 1) << FB_HISTOGRAM_SHIFT)
int fb_bdev_histogram_enable(struct fb_engine *e, const char *name, bool enable);
/* Merged counts into buckets[FB_HISTOGRAM_BUCKETS]. -ENOENT: no such bdev;
 * -ENODATA: its histogram is not enabled. */
int fb_bdev_histogram_get(struct fb_engine *e, const char *name, uint64_t *buckets);
/* Index of the bucket that counts value v. */
unsigned fb_histogram_bucket(uint64_t v);
/* Smallest value counted by bucket i (i < FB_HISTOGRAM_BUCKETS). */
uint64_t fb_histogram_bucket_start(unsigned i);

/* ----------------------------------------------------------- NBD export */

/* listen: "unix:/path/to.sock" or "tcp:127.0.0.1:10809" (loopback or any
 * address the caller chooses). Exports with the same listen string share one
 * listener, created with the first export and closed with the last. */
int fb_nbd_export_add(struct fb_engine *e, const char *export_name, const char *bdev_name,
		      const char *listen, bool readonly, struct fb_err *err);
/* fb_nbd_export_create's options; they carry their own size. */
struct fb_nbd_export_opts {
	size_t size;               /* sizeof(struct fb_nbd_export_opts) */
	bool readonly;
	/* TLS (NBD_OPT_STARTTLS, GnuTLS) on the export's listener, which the
	 * listener's first export sets: later exports on the same listen
	 * string must give the same TLS options. Either a PSK file
	 * (`username:hexkey` lines, the format of qemu's and nbdkit's psk
	 * files; one tenant's keys per listener) or an X.509 certificate and
	 * key (PEM), optionally with a CA whose signature every client
	 * certificate must carry. NULL = none. */
	const char *tls_psk_file;
	const char *tls_cert_file, *tls_key_file, *tls_ca_file;
	/* With TLS: nothing is listed, described or opened before STARTTLS
	 * (NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME disconnects). */
	bool tls_required;
};
void fb_nbd_export_opts_init(struct fb_nbd_export_opts *opts);
int fb_nbd_export_create(struct fb_engine *e, const char *export_name, const char *bdev_name,
			 const char *listen, const struct fb_nbd_export_opts *opts,
			 struct fb_err *err);
/* Removes the export; connected clients get their in-flight I/O completed
 * and are then disconnected. */
int fb_nbd_export_remove(struct fb_engine *e, const char *export_name, struct fb_err *err);

struct fb_nbd_export_info {
	const char *export_name, *bdev_name, *listen;
	bool readonly;
	unsigned connections;
	/* The listener's TLS options (NULL / false: none). */
	const char *tls_psk_file, *tls_cert_file, *tls_key_file, *tls_ca_file;
	bool tls_required;
};
typedef int (*fb_nbd_export_info_fn)(const struct fb_nbd_export_info *info, void *arg);
int fb_nbd_export_foreach(struct fb_engine *e, fb_nbd_export_info_fn fn, void *arg);

/* NBD buffer memory, engine-wide. used <= limit + one request buffer (its
 * power-of-two size class, at most 32 MiB) per connection that holds no
 * other buffer; see nbd_conn.c. All zero before the first export. */
struct fb_nbd_mem_stats {
	uint64_t used;         /* bytes allocated: in use and cached */
	uint64_t limit;
	unsigned paused;       /* connections waiting for memory now */
};
void fb_nbd_mem_stats(struct fb_engine *e, struct fb_nbd_mem_stats *out);

/* ------------------------------------------------ bdev I/O (consumer side)
 *
 * Used by exports, virtual bdevs, the perf tool and tests. Open/close may be
 * called from any thread; channels and I/O only on a reactor thread. A channel
 * is per (descriptor's bdev, reactor) and cached: get it once per connection.
 * Completion callbacks run on the submitting reactor, possibly before the
 * submit call returns. Submission returns 0, or -EINVAL for out-of-range or
 * misaligned requests (nothing was started, the callback will not run).
 */
enum fb_bdev_event_type {
	FB_BDEV_EVENT_REMOVE, /* the bdev is being deleted: finish or fail in-flight I/O, then close */
	FB_BDEV_EVENT_RESIZE, /* fb_bdev_get_num_blocks changed */
};
/* Runs on the control thread that deletes or resizes the bdev, with no
 * engine lock held: it may call fb_bdev_close, fb_bdev_for_each_channel
 * and fb_bdev_delete (of its own bdev). */
typedef void (*fb_bdev_event_cb)(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx);

struct fb_bdev_open_opts {
	size_t size;               /* sizeof(struct fb_bdev_open_opts) */
	bool write;
	/* Describes the opener in -EBUSY messages, e.g. "NBD export 'x'"
	 * (copied; NULL = "a descriptor"). */
	const char *holder;
	fb_bdev_event_cb event_cb; /* NULL: the bdev cannot be deleted while open */
	void *event_ctx;
};
/* Opens a bdev by name or uuid; opts NULL = read-only, no events. After a
 * REMOVE event, new I/O on the descriptor fails with -ENODEV. */
int fb_bdev_open(struct fb_engine *e, const char *name, const struct fb_bdev_open_opts *opts,
		 struct fb_bdev_desc **out, struct fb_err *err);
void fb_bdev_desc_set_holder(struct fb_bdev_desc *desc, const char *holder);
void fb_bdev_close(struct fb_bdev_desc *desc);
struct fb_bdev *fb_bdev_desc_get_bdev(struct fb_bdev_desc *desc);
const char *fb_bdev_get_name(const struct fb_bdev *bdev);
uint32_t fb_bdev_get_block_size(const struct fb_bdev *bdev);
uint64_t fb_bdev_get_num_blocks(const struct fb_bdev *bdev);
bool fb_bdev_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type);

struct fb_io_channel *fb_bdev_get_io_channel(struct fb_bdev_desc *desc);
void fb_put_io_channel(struct fb_io_channel *ch);

/* status: 0 or negative errno */
typedef void (*fb_bdev_io_cb)(struct fb_bdev_io *io, int status, void *cb_arg);

#define FB_IO_FLAG_FUA 0x1u
/* Write-zeroes: the blocks must stay allocated (NBD's NO_HOLE): the module
 * may zero them in place but must not punch a hole. */
#define FB_IO_FLAG_NO_HOLE 0x2u

int fb_bdev_readv_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch, struct iovec *iov,
			 int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb,
			 void *cb_arg);
int fb_bdev_writev_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch, struct iovec *iov,
			  int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags,
			  fb_bdev_io_cb cb, void *cb_arg);
int fb_bdev_flush_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
			 uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb, void *cb_arg);
int fb_bdev_unmap_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
			 uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb, void *cb_arg);
int fb_bdev_write_zeroes_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
				uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags,
				fb_bdev_io_cb cb, void *cb_arg);
/* Every completed io must be freed by its consumer (in or after the callback). */
void fb_bdev_free_io(struct fb_bdev_io *io);

/* Zero-copy reads (SPDK's zcopy shape). Instead of copying into the caller's
 * buffer, the bdev lends its own memory: on successful completion,
 * fb_bdev_io_get_buf_iovs gives iovecs covering exactly num_blocks blocks,
 * readable until the io is freed with fb_bdev_free_io (the io pins its
 * channel, so the bdev and its memory outlive it). The memory is the bdev's
 * live data: writes that overlap while the caller holds the io may show
 * through, as with any unordered concurrent read and write. The caller must
 * not write to it.
 *
 * populate must be true today (a read); false (a buffer to fill and commit,
 * which will come with fb_bdev_zcopy_end) returns -ENOTSUP. Bdevs without
 * zcopy (file, error, null) return -ENOTSUP: check fb_bdev_zcopy_supported
 * once and fall back to fb_bdev_readv_blocks. Stats count a zcopy read as
 * a read (ops, bytes, latency up to the buffer being ready). */
#define FB_ZCOPY_IOV_MAX 4 /* most iovecs a zcopy io hands out */
bool fb_bdev_zcopy_supported(struct fb_bdev *bdev);
int fb_bdev_zcopy_start(struct fb_bdev_desc *desc, struct fb_io_channel *ch, uint64_t offset_blocks,
			uint64_t num_blocks, bool populate, fb_bdev_io_cb cb, void *cb_arg);
/* A completed zcopy io's buffer (*iovcnt 1..FB_ZCOPY_IOV_MAX); NULL with
 * *iovcnt 0 for any other io, or a failed one. */
const struct iovec *fb_bdev_io_get_buf_iovs(struct fb_bdev_io *io, int *iovcnt);

/* --------------------------------------------------- vhost-user-blk export
 *
 * A controller serves one bdev as a virtio-blk device to one vhost-user
 * front-end (QEMU's vhost-user-blk-pci, qemu-storage-daemon's peers, or
 * tools/fb_vhost) on the unix socket <socket_dir>/<ctrlr>. The guest's
 * virtqueues live in memory it shares through the socket; each queue runs
 * on one reactor (queue i on the i-th reactor of cpumask, round robin),
 * sleeps on its kick eventfd when idle and polls for 32 µs after work.
 * A front-end that reconnects (QEMU's reconnect=) resumes: requests left
 * in flight by a previous engine are taken again from the inflight region
 * (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD).
 */
struct fb_vhost_blk_opts {
	size_t size;           /* sizeof(struct fb_vhost_blk_opts) */
	/* Reactors the queues run on: SPDK's cpumask, hex ("0x3") or a list
	 * ("[0,2-3]") of reactor indexes; NULL = every reactor. */
	const char *cpumask;
	bool readonly;
	unsigned num_queues;   /* queues offered (1-16); 0 = 16 */
	unsigned socket_mode;  /* permission bits of the socket; 0 = 0600 */
};
void fb_vhost_blk_opts_init(struct fb_vhost_blk_opts *opts);
/* ctrlr: 1-200 bytes of [A-Za-z0-9._-] (it names the socket file).
 * socket_dir must exist. -EEXIST if the name is taken; -ENOENT (bdev) or
 * -EBUSY (claimed) from opening the bdev. */
int fb_vhost_blk_controller_create(struct fb_engine *e, const char *ctrlr, const char *bdev_name,
				   const char *socket_dir, const struct fb_vhost_blk_opts *opts,
				   struct fb_err *err);
/* Disconnects the front-end (in-flight requests complete first), removes
 * the socket, closes the bdev. -ENOENT if no such controller. */
int fb_vhost_blk_controller_delete(struct fb_engine *e, const char *ctrlr, struct fb_err *err);

struct fb_vhost_controller_info {
	const char *ctrlr, *bdev_name, *socket_path, *cpumask;
	bool readonly;
	bool connected;        /* a front-end is connected */
	unsigned num_queues;   /* offered */
	unsigned active_queues;/* started by the front-end */
	uint64_t requests;     /* completed since creation */
	uint64_t bad_messages; /* refused messages and malformed requests */
	uint64_t features;     /* negotiated virtio features (0 when disconnected) */
};
typedef int (*fb_vhost_controller_info_fn)(const struct fb_vhost_controller_info *info, void *arg);
/* name != NULL visits one controller (-ENOENT if absent). */
int fb_vhost_blk_controller_foreach(struct fb_engine *e, const char *name,
				    fb_vhost_controller_info_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
