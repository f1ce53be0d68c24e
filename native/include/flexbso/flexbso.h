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
 * Changes (2026-11-25, core): fb_engine_opts_init sets poll_us = 50;
 * added fb_bdev_file_create_ext (flags: FB_FILE_NO_DIRECT, FB_FILE_DIRECT,
 * FB_FILE_NO_FALLOCATE),
 * fb_bdev_open_ext (holder description used in -EBUSY messages) and
 * fb_bdev_desc_set_holder; fb_bdev_info gained create_method and
 * claim_holder; submit functions may also return -EBADF (write on a
 * read-only descriptor), -ENOTSUP (type not supported) and -ENOMEM.
 *
 * Changes (2026-11-25, zcopy): FB_IO_ZCOPY, fb_bdev_zcopy_supported,
 * fb_bdev_zcopy_start and fb_bdev_io_get_buf_iovs: reads that hand out the
 * bdev's own memory instead of copying into the caller's buffer.
 *
 * Changes (2026-11-25, nbd memory): fb_engine_opts.nbd_mem_limit (appended)
 * and fb_nbd_mem_stats: an engine-wide budget for NBD buffer memory.
 *
 * Changes (2026-11-25, nbd stall): fb_engine_opts.nbd_stall_timeout_ms
 * (appended): under memory pressure, connections that take no reply bytes
 * for this long are disconnected.
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
	 * Connections over it stop reading new requests until memory is freed. */
	size_t nbd_mem_limit;
	/* While the NBD buffer budget is under pressure (a connection waits for
	 * memory, or more than nbd_mem_limit is in use), a connection whose
	 * pending replies have had no byte taken by its socket for this long is
	 * disconnected (it never reads its replies, and pins their buffers).
	 * Idle connections and connections that read, however slowly, are never
	 * disconnected. Milliseconds; 0 = 10000. */
	unsigned nbd_stall_timeout_ms;
};

void fb_engine_opts_init(struct fb_engine_opts *opts);
int fb_engine_create(const struct fb_engine_opts *opts, struct fb_engine **out, struct fb_err *err);
/* Stops exports (clients are disconnected), deletes bdevs top-down, joins reactors. */
void fb_engine_destroy(struct fb_engine *e);
unsigned fb_engine_reactor_count(const struct fb_engine *e);
/* CPU time (user+sys, microseconds) consumed by reactor threads so far. */
uint64_t fb_engine_reactor_cpu_us(const struct fb_engine *e);

/* ------------------------------------------------------- bdev control */

int fb_bdev_malloc_create(struct fb_engine *e, const char *name, uint64_t num_blocks,
			  uint32_t block_size, struct fb_err *err);
int fb_bdev_null_create(struct fb_engine *e, const char *name, uint64_t num_blocks,
			uint32_t block_size, struct fb_err *err);
/* A file or block device through io_uring; O_DIRECT where the filesystem
 * allows it, buffered + fdatasync on flush where it does not. The size is the
 * file's size rounded down to block_size (0 = 512, or the device's logical
 * block size). */
int fb_bdev_file_create(struct fb_engine *e, const char *name, const char *path,
			uint32_t block_size, struct fb_err *err);
#define FB_FILE_NO_DIRECT 0x1u /* never use O_DIRECT (buffered + fdatasync on flush) */
#define FB_FILE_DIRECT    0x2u /* require O_DIRECT: fail if the filesystem refuses it */
#define FB_FILE_NO_FALLOCATE 0x4u /* unmap/write-zeroes write zeros (thick image, no holes) */
int fb_bdev_file_create_ext(struct fb_engine *e, const char *name, const char *path,
			    uint32_t block_size, uint32_t flags, struct fb_err *err);
/* Error-injection bdev "EE_<base_name>" over any bdev (claims the base). */
int fb_bdev_error_create(struct fb_engine *e, const char *base_name, struct fb_err *err);

enum fb_io_type {
	FB_IO_READ = 0,
	FB_IO_WRITE,
	FB_IO_FLUSH,
	FB_IO_UNMAP,
	FB_IO_WRITE_ZEROES,
	FB_IO_ZCOPY,      /* zero-copy buffer access (fb_bdev_zcopy_start) */
	FB_IO_TYPE_COUNT
};

enum fb_error_kind {
	FB_ERR_NONE = 0,     /* clear injections matching io_mask */
	FB_ERR_FAILURE,      /* complete the I/O with -EIO */
	FB_ERR_CORRUPT_DATA, /* reads: flip one bit per block of returned data */
	FB_ERR_DROP_WRITE,   /* writes: acknowledge success, store nothing */
};

struct fb_error_injection {
	size_t size;             /* sizeof(struct fb_error_injection) */
	uint32_t io_mask;        /* bit (1u << enum fb_io_type); 0 = all types */
	enum fb_error_kind kind;
	uint64_t count;          /* number of I/Os to affect; 0 = unlimited */
	uint64_t offset_blocks;  /* affected LBA range (intersecting I/Os match) */
	uint64_t num_blocks;     /* 0 = to the end of the bdev */
};
int fb_bdev_error_inject(struct fb_engine *e, const char *name,
			 const struct fb_error_injection *inj, struct fb_err *err);

/* Deletes a bdev by name. -EBUSY (with a message naming the holder) while it
 * is open by an export or claimed by a virtual bdev. */
int fb_bdev_delete(struct fb_engine *e, const char *name, struct fb_err *err);

struct fb_bdev_stats {
	uint64_t num_read_ops, num_write_ops, num_flush_ops, num_unmap_ops, num_write_zeroes_ops;
	uint64_t bytes_read, bytes_written, bytes_unmapped;
	uint64_t read_latency_ns, write_latency_ns; /* sums, for means */
	uint64_t io_errors;
};

struct fb_bdev_info {
	const char *name;
	const char *module;       /* "malloc", "null", "file", "error", later "raid", "compress" */
	uint32_t block_size;
	uint64_t num_blocks;
	const char *claimed_by;   /* module name of the claiming bdev, or NULL */
	const char *config_json;  /* params of the create RPC that rebuilds it (SPDK framework_get_config) */
	const char *driver_json;  /* module-specific info object for bdev_get_bdevs */
	struct fb_bdev_stats stats;
	const char *create_method; /* e.g. "bdev_malloc_create" (framework_get_config) */
	const char *claim_holder;  /* e.g. "error bdev 'EE_M0'", or NULL */
};
/* Calls fn for each bdev in creation order (bases before the bdevs built on
 * them); strings are valid only during the call. A non-zero return stops the
 * walk and is returned. name != NULL visits one bdev (-ENOENT if absent).
 * fn runs under the engine's registry lock: it must not call control
 * functions (create/delete/open/close/inject) or wait on reactors. */
typedef int (*fb_bdev_info_fn)(const struct fb_bdev_info *info, void *arg);
int fb_bdev_foreach(struct fb_engine *e, const char *name, fb_bdev_info_fn fn, void *arg);

/* ----------------------------------------------------------- NBD export */

/* listen: "unix:/path/to.sock" or "tcp:127.0.0.1:10809" (loopback or any
 * address the caller chooses). Exports with the same listen string share one
 * listener, created with the first export and closed with the last. */
int fb_nbd_export_add(struct fb_engine *e, const char *export_name, const char *bdev_name,
		      const char *listen, bool readonly, struct fb_err *err);
/* Removes the export; connected clients get their in-flight I/O completed
 * and are then disconnected. */
int fb_nbd_export_remove(struct fb_engine *e, const char *export_name, struct fb_err *err);

struct fb_nbd_export_info {
	const char *export_name, *bdev_name, *listen;
	bool readonly;
	unsigned connections;
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
int fb_bdev_open(struct fb_engine *e, const char *name, bool write, struct fb_bdev_desc **out,
		 struct fb_err *err);
/* holder describes the opener for -EBUSY messages, e.g. "NBD export 'x'"
 * (copied; NULL = "a descriptor"). */
int fb_bdev_open_ext(struct fb_engine *e, const char *name, bool write, const char *holder,
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
