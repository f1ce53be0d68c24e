/* Writing a bdev module: the module ABI (version 2).
 *
 * Shaped after SPDK's bdev module interface (include/spdk/bdev_module.h) so
 * that RAID, compression and later modules can be built as real SPDK modules
 * through a thin adapter, and after nbdkit's plugin API in how it grows:
 * every struct a module fills carries its own size, and fields are only ever
 * appended, so a module built against an older header keeps working.
 *
 * A module is one C file (plus an optional *_rpc.c) that defines
 *   - a struct fb_bdev_module, registered with FB_BDEV_MODULE_REGISTER: its
 *     name, per-I/O and per-channel context sizes, init/fini, examine, and
 *     its RPC methods (params as decoder tables, see json.h);
 *   - a struct fb_bdev_fn_table for the bdevs it registers.
 * Nothing else in the tree changes to add one: the build picks up new files
 * under src/, the engine process lists the registered RPC methods at start
 * and routes them to fb_rpc_call, and bdev_get_bdevs / framework_get_config
 * ask the module for its product name, info and config.
 *
 * Rules of the road (SPDK's):
 *   - submit_request runs on a reactor and must never block; it completes
 *     every io exactly once with fb_bdev_io_complete (or _deferred).
 *   - The hot path never mallocs: per-I/O state lives in the io's driver
 *     context (io_ctx_size), per-thread state in the channel context, and
 *     scratch memory comes from fb_io_channel_get_buf.
 *   - -ENOMEM from a child submit (or NULL from fb_io_channel_get_buf) parks
 *     the io with fb_io_channel_queue_wait; it never fails the I/O and never
 *     busy-retries.
 *   - Control functions (create, delete, examine, RPC handlers, events) run
 *     on control threads and may block on reactors; never the reverse.
 *
 * ABI changes from version 1 (what and why):
 *   - fb_bdev_module gained size, product_name, init/fini, examine,
 *     config_json and an RPC table (SPDK: spdk_bdev_module + SPDK_RPC_REGISTER),
 *     and is registered once by macro instead of being passed at each
 *     register call (SPDK_BDEV_MODULE_REGISTER).
 *   - fb_bdev_fn_table gained size; dump_config_json became
 *     write_config_json, which writes whole {"method","params"} entries as
 *     SPDK's does, and info/config go through fb_json_writer instead of raw
 *     strbuf printf (no hand-escaped JSON in modules).
 *   - fb_bdev_desc_params became fb_bdev_register_opts (sized) with uuid,
 *     optimal_io_boundary + split, write_unit_size, required_alignment,
 *     max_io_blocks and physical_block_size (spdk_bdev fields of the same
 *     names); the core splits, bounces and checks, not each module.
 *   - Core services every stacked module needs: iovec helpers, channel
 *     buffers, io_wait, for-each-channel, control-path I/O, resize and
 *     hot-remove events, write-zeroes/unmap emulation (see below).
 */
#ifndef FLEXBSO_BDEV_MODULE_H
#define FLEXBSO_BDEV_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "flexbso.h"
#include "json.h"
#include "thread.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_BDEV_MODULE_ABI_VERSION 2

/* Fills err->msg (printf-style); err may be NULL. */
void fb_err_set(struct fb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------ RPC methods */

/* One JSON-RPC method a module serves (SPDK: SPDK_RPC_REGISTER). The RPC
 * layer decodes params with the table into a zeroed params_size struct
 * (after params_init, which sets defaults), calls handler on a control
 * thread, then frees what it decoded.
 *
 * handler writes exactly one JSON value as the result (true, a name, an
 * object, ...) and returns 0, or returns a negative errno with err set to a
 * sentence naming the param or object and the fix; the engine answers with
 * that errno as the JSON-RPC error code, as SPDK does (-22 EINVAL, -19
 * ENODEV, -17 EEXIST, -16 EBUSY). Param decode failures are answered -32602
 * by the RPC layer before the handler runs. */
struct fb_rpc_method {
	const char *name;                  /* "bdev_raid_create" */
	const struct fb_json_field *params; /* NULL = takes no params */
	size_t nparams;
	size_t params_size;
	void (*params_init)(void *params); /* optional */
	int (*handler)(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		       struct fb_err *err);
};

/* ----------------------------------------------------------------- module */

struct fb_bdev_module {
	size_t size;               /* sizeof(struct fb_bdev_module) as built */
	const char *name;          /* "raid": bdev_get_bdevs' module, claim holder names */
	const char *product_name;  /* "Raid Volume": bdev_get_bdevs' product_name default */
	size_t io_ctx_size;        /* bytes of per-I/O driver context */
	size_t channel_ctx_size;   /* bytes of per-channel context */
	/* Optional. Per-engine module state (fb_bdev_module_get_ctx); called by
	 * fb_engine_create in registration order; a failure fails the engine. */
	int (*init)(struct fb_engine *e, void **module_ctx, struct fb_err *err);
	/* Optional. Called by fb_engine_destroy after every bdev is deleted. */
	void (*fini)(struct fb_engine *e, void *module_ctx);
	/* Optional. Called on a control thread for each bdev registered (not
	 * its own) before fb_bdev_register returns, so the module can read its
	 * on-disk metadata (fb_bdev_io_sync) and claim the bdev (reassembly of
	 * RAID members, reopening a compress bdev). It must not hold the bdev
	 * open unless it claims it. Errors are logged/notified by the module,
	 * never returned: a bdev appears whatever examine finds. */
	void (*examine)(struct fb_engine *e, struct fb_bdev *bdev);
	/* Optional. Writes module-wide config entries ({"method","params"}
	 * objects, e.g. bdev_raid_set_options) for framework_get_config, before
	 * any bdev's entries. */
	void (*config_json)(struct fb_engine *e, struct fb_json_writer *w);
	const struct fb_rpc_method *rpcs;  /* this module's RPC methods */
	size_t nrpcs;
};

/* Adds a module to the process-wide list (normally via the macro, from a
 * constructor: modules are linked whole, see native/Makefile). Modules
 * registered after an engine exists take effect for later engines. */
void fb_bdev_module_list_add(const struct fb_bdev_module *m);
#define FB_BDEV_MODULE_REGISTER(mod)                                               \
	__attribute__((constructor)) static void fb_bdev_module_register_##mod(void) \
	{                                                                          \
		fb_bdev_module_list_add(&(mod));                                   \
	}

/* The module's per-engine state from init (NULL if it has none). */
void *fb_bdev_module_get_ctx(struct fb_engine *e, const struct fb_bdev_module *m);

/* ------------------------------------------------------------- fn table */

struct fb_bdev_fn_table {
	size_t size;  /* sizeof(struct fb_bdev_fn_table) as built */
	/* Control thread, after every channel is destroyed: free ctx, close base
	 * descriptors. */
	void (*destruct)(struct fb_bdev *bdev);
	/* On a reactor. Must eventually call fb_bdev_io_complete(io, status). */
	void (*submit_request)(struct fb_io_channel *ch, struct fb_bdev_io *io);
	/* NULL = read and write only. Asked once per type at register (the
	 * answer must not change). FB_IO_WRITE_ZEROES that the module does not
	 * support is emulated by the core (zeroes written from a shared zero
	 * buffer, in bounded pieces) and reported as supported; FB_IO_UNMAP it
	 * does not support stays unreported, and one submitted anyway completes
	 * as a no-op success (unmap is advisory). */
	bool (*io_type_supported)(struct fb_bdev *bdev, enum fb_io_type type);
	/* On the reactor that will use it; ch_ctx is channel_ctx_size zeroed bytes. */
	int (*channel_create)(struct fb_bdev *bdev, void *ch_ctx);
	void (*channel_destroy)(struct fb_bdev *bdev, void *ch_ctx);
	/* Optional. Writes the config entries that rebuild this bdev, normally
	 * one {"method": "bdev_x_create", "params": {...}} object; nothing for
	 * a bdev that reassembles from its own metadata (SPDK's raid with a
	 * superblock). framework_get_config output replays into a fresh engine. */
	void (*write_config_json)(struct fb_bdev *bdev, struct fb_json_writer *w);
	/* Optional. Writes named members into bdev_get_bdevs' driver_specific
	 * object, e.g. "raid": {...}. */
	void (*dump_info_json)(struct fb_bdev *bdev, struct fb_json_writer *w);
};

/* ------------------------------------------------------------- register */

struct fb_bdev_register_opts {
	size_t size;                  /* sizeof(struct fb_bdev_register_opts) */
	const char *name;
	struct fb_uuid uuid;          /* all zero = generate a random (v4) one */
	uint32_t block_size;          /* bytes: a multiple of 512 */
	uint64_t num_blocks;
	const struct fb_bdev_module *module;
	const struct fb_bdev_fn_table *fn;
	void *ctx;                    /* fb_bdev_get_module_ctx */
	const char *product_name;     /* NULL = the module's */
	uint32_t physical_block_size; /* bytes; 0 = block_size */
	/* Blocks. With split_on_optimal_io_boundary the core splits reads,
	 * writes, unmaps and write-zeroes so that no child crosses a multiple
	 * of it (SPDK: optimal_io_boundary + split_on_optimal_io_boundary). */
	uint32_t optimal_io_boundary;
	bool split_on_optimal_io_boundary;
	/* Blocks; writes must start and end on a multiple (others get -EINVAL
	 * at submit). 0 or 1 = any. */
	uint32_t write_unit_size;
	/* log2 of the buffer alignment (bytes) the module needs for read and
	 * write iovec addresses; the core bounces misaligned I/O. 0 = any;
	 * at most 12 (4 KiB). */
	uint32_t required_alignment;
	/* Blocks; the core splits larger reads and writes. 0 = no limit. */
	uint32_t max_io_blocks;
};

/* Registers a bdev: checks the opts (name 1..255 characters and unique
 * among names and aliases, block size, size fits 64 bits), adds the uuid as
 * an alias, then runs every other module's examine. Control threads. */
int fb_bdev_register(struct fb_engine *e, const struct fb_bdev_register_opts *opts,
		     struct fb_bdev **out, struct fb_err *err);
void *fb_bdev_get_module_ctx(struct fb_bdev *bdev);
const struct fb_bdev_module *fb_bdev_get_module(const struct fb_bdev *bdev);
void fb_bdev_get_uuid(const struct fb_bdev *bdev, struct fb_uuid *out);
struct fb_engine *fb_bdev_get_engine(const struct fb_bdev *bdev);

/* A module's delete RPC: deletes bdev `name` (or uuid) if `m` registered
 * it. -ENODEV when absent or another module's (err names that module's
 * delete method), else fb_bdev_delete's result. Control threads. */
int fb_bdev_delete_own(struct fb_engine *e, const char *name, const struct fb_bdev_module *m,
		       struct fb_err *err);

/* Virtual bdevs claim their bases so nothing else opens them for writing. */
int fb_bdev_claim(struct fb_bdev_desc *desc, const struct fb_bdev_module *by, struct fb_err *err);

/* A module's bdev changed size (control thread): consumers get
 * FB_BDEV_EVENT_RESIZE. Shrinking below an open consumer's use is the
 * module's business to refuse. */
int fb_bdev_notify_blockcnt_change(struct fb_bdev *bdev, uint64_t num_blocks);

/* ------------------------------------------------------ inside an I/O */

struct fb_bdev *fb_bdev_io_get_bdev(struct fb_bdev_io *io);
enum fb_io_type fb_bdev_io_get_type(const struct fb_bdev_io *io);
uint64_t fb_bdev_io_get_offset_blocks(const struct fb_bdev_io *io);
uint64_t fb_bdev_io_get_num_blocks(const struct fb_bdev_io *io);
struct iovec *fb_bdev_io_get_iovs(struct fb_bdev_io *io, int *iovcnt);
uint32_t fb_bdev_io_get_flags(const struct fb_bdev_io *io);
void *fb_bdev_io_get_driver_ctx(struct fb_bdev_io *io);   /* io_ctx_size bytes */
struct fb_io_channel *fb_bdev_io_get_channel(struct fb_bdev_io *io);
void *fb_io_channel_get_ctx(struct fb_io_channel *ch);    /* channel_ctx_size bytes */
struct fb_reactor *fb_io_channel_get_reactor(struct fb_io_channel *ch);
/* FB_IO_ZCOPY: the I/O's flags carry FB_IO_FLAG_POPULATE when the buffer
 * must hold the blocks' data (a read; the only kind the core passes today).
 * Before completing it with status 0, the module lends memory covering
 * exactly num_blocks blocks, one fb_bdev_io_set_buf call per contiguous
 * piece (at most FB_ZCOPY_IOV_MAX); it must stay valid until the consumer
 * frees the io, which the bdev outlives. A zcopy completed with 0 but a
 * wrong length is failed with -EIO. Modules must not report FB_IO_ZCOPY
 * for a base they forward to unless they handle it. */
#define FB_IO_FLAG_POPULATE 0x100u
/* -ENOSPC past FB_ZCOPY_IOV_MAX pieces. */
int fb_bdev_io_set_buf(struct fb_bdev_io *io, void *buf, size_t len);
/* status: 0 or negative errno. On the io's reactor. */
void fb_bdev_io_complete(struct fb_bdev_io *io, int status);
/* Same, but the callback runs on the reactor's next loop iteration. */
void fb_bdev_io_complete_deferred(struct fb_bdev_io *io, int status);

/* --------------------------------------------------------- core services */

/* iovec helpers. Offsets and lengths are bytes; copies stop at the shorter
 * list and return the bytes done. */
size_t fb_iov_length(const struct iovec *iov, int iovcnt);
size_t fb_iov_copy(const struct iovec *dst, int dstcnt, size_t dst_off,
		   const struct iovec *src, int srccnt, size_t src_off, size_t len);
size_t fb_iov_to_buf(void *buf, const struct iovec *iov, int iovcnt, size_t off, size_t len);
size_t fb_iov_from_buf(const struct iovec *iov, int iovcnt, size_t off, const void *buf,
		       size_t len);
void fb_iov_memset(const struct iovec *iov, int iovcnt, size_t off, int c, size_t len);
/* Describes bytes [off, off+len) of (iov, iovcnt) in at most max entries of
 * out: returns the count, or -ENOSPC when more are needed, -EINVAL when the
 * range is past the list's end. No data moves. */
int fb_iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
		 struct iovec *out, int max);

/* Scratch buffers (reactor only): len bytes aligned to 4 KiB from a
 * per-channel cache of power-of-two classes, bounded engine-wide by
 * fb_engine_opts.bdev_buf_limit. NULL when the budget is spent (park with
 * fb_io_channel_queue_wait on the same channel) or len exceeds 64 MiB. */
void *fb_io_channel_get_buf(struct fb_io_channel *ch, size_t len);
void fb_io_channel_put_buf(struct fb_io_channel *ch, void *buf, size_t len);

/* io_wait (SPDK: spdk_bdev_queue_io_wait): entry->cb(entry->arg) runs once,
 * on ch's reactor, after ch next frees an io or a scratch buffer. The entry
 * is the caller's (embed it in the driver context); reactor only. */
struct fb_io_wait_entry {
	struct fb_io_wait_entry *next;
	void (*cb)(void *arg);
	void *arg;
};
void fb_io_channel_queue_wait(struct fb_io_channel *ch, struct fb_io_wait_entry *entry);

/* For-each-channel (SPDK: spdk_for_each_channel). fn runs on each reactor
 * that holds a channel of bdev, one reactor after another, with that
 * channel's context.
 *   - From a control thread: blocks until all have run; returns 0.
 *   - From a reactor (async): done(arg, 0) runs on the calling reactor after
 *     the last fn; returns 0 and never calls done before returning. */
typedef void (*fb_channel_iter_fn)(struct fb_io_channel *ch, void *ch_ctx, void *arg);
typedef void (*fb_channel_iter_done_fn)(void *arg, int status);
int fb_bdev_for_each_channel(struct fb_bdev *bdev, fb_channel_iter_fn fn, void *arg,
			     fb_channel_iter_done_fn done);

/* Control-path I/O for metadata (superblocks, maps) during create, examine
 * and RPC handlers: control threads only; blocks until done. buf needs no
 * particular alignment (the core bounces). type is READ, WRITE, FLUSH,
 * UNMAP or WRITE_ZEROES (buf NULL for the last three); flags as for
 * writes (FB_IO_FLAG_FUA). Returns 0 or the I/O's negative errno. */
int fb_bdev_io_sync(struct fb_bdev_desc *desc, enum fb_io_type type, void *buf,
		    uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags);

#ifdef __cplusplus
}
#endif
#endif
