/* Writing a bdev module (malloc, file, error; later raid, compress).
 *
 * Changes (2026-11-25, core): added fb_bdev_io_complete_deferred (modules that
 * finish synchronously, like malloc, use it so callbacks never recurse into
 * submit), fb_bdev_claim's holder comes from the descriptor's holder string
 * (fb_bdev_open_ext / fb_bdev_desc_set_holder); fb_err_set for modules;
 * fb_bdev_get_module.
 *
 * Changes (2026-11-25, zcopy): FB_IO_ZCOPY I/Os (see fb_bdev_zcopy_start):
 * a module that reports the type lends its memory with fb_bdev_io_set_buf;
 * FB_IO_FLAG_POPULATE marks a read.
 *
 * Shaped like SPDK's bdev module interface so RAID and compression can later
 * be built as real SPDK modules through a thin adapter: a static function
 * table, a per-I/O context sized by the module up front, per-reactor channels
 * with create/destroy callbacks (the hot path never mallocs), and a config
 * dump that is the params of the create call that rebuilds the bdev.
 */
#ifndef FLEXBSO_BDEV_MODULE_H
#define FLEXBSO_BDEV_MODULE_H

#include "flexbso.h"
#include "reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills err->msg (printf-style); err may be NULL. */
void fb_err_set(struct fb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A growable string used for JSON dumps. */
struct fb_strbuf {
	char *buf;
	size_t len, cap;
};
int fb_strbuf_printf(struct fb_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fb_strbuf_json_str(struct fb_strbuf *sb, const char *s); /* quoted + escaped */
void fb_strbuf_free(struct fb_strbuf *sb);

struct fb_bdev_fn_table {
	/* Called on a control thread after every channel is destroyed: free ctx,
	 * close base descriptors. */
	void (*destruct)(struct fb_bdev *bdev);
	/* On a reactor. Must eventually call fb_bdev_io_complete(io, status). */
	void (*submit_request)(struct fb_io_channel *ch, struct fb_bdev_io *io);
	bool (*io_type_supported)(struct fb_bdev *bdev, enum fb_io_type type);
	/* On the reactor that will use it; ch_ctx is channel_ctx_size zeroed bytes. */
	int (*channel_create)(struct fb_bdev *bdev, void *ch_ctx);
	void (*channel_destroy)(struct fb_bdev *bdev, void *ch_ctx);
	/* Writes the create-RPC params object, e.g. {"name":"M0","num_blocks":8,"block_size":512}. */
	int (*dump_config_json)(struct fb_bdev *bdev, struct fb_strbuf *sb);
	/* Optional: module-specific object for bdev_get_bdevs' driver_specific. */
	int (*dump_info_json)(struct fb_bdev *bdev, struct fb_strbuf *sb);
};

struct fb_bdev_module {
	const char *name;          /* "malloc", "file", ... also the RPC-facing product_name */
	const char *create_method; /* RPC method for framework_get_config, e.g. "bdev_malloc_create" */
	size_t io_ctx_size;        /* bytes of per-I/O driver context */
	size_t channel_ctx_size;   /* bytes of per-channel context */
};

/* Filled by the module, then registered; the engine owns it afterwards
 * (fields below `module_ctx` are the engine's). */
struct fb_bdev_desc_params {
	const char *name;
	uint32_t block_size;
	uint64_t num_blocks;
	const struct fb_bdev_module *module;
	const struct fb_bdev_fn_table *fn;
	void *module_ctx;
};
int fb_bdev_register(struct fb_engine *e, const struct fb_bdev_desc_params *p,
		     struct fb_bdev **out, struct fb_err *err);
void *fb_bdev_get_module_ctx(struct fb_bdev *bdev);
const struct fb_bdev_module *fb_bdev_get_module(const struct fb_bdev *bdev);

/* Virtual bdevs claim their bases so nothing else opens them for writing. */
int fb_bdev_claim(struct fb_bdev_desc *desc, const struct fb_bdev_module *by, struct fb_err *err);

/* Inside submit_request / completion. */
struct fb_bdev *fb_bdev_io_get_bdev(struct fb_bdev_io *io);
enum fb_io_type fb_bdev_io_get_type(const struct fb_bdev_io *io);
uint64_t fb_bdev_io_get_offset_blocks(const struct fb_bdev_io *io);
uint64_t fb_bdev_io_get_num_blocks(const struct fb_bdev_io *io);
struct iovec *fb_bdev_io_get_iovs(struct fb_bdev_io *io, int *iovcnt);
uint32_t fb_bdev_io_get_flags(const struct fb_bdev_io *io);
void *fb_bdev_io_get_driver_ctx(struct fb_bdev_io *io);   /* io_ctx_size bytes */
void *fb_io_channel_get_ctx(struct fb_io_channel *ch);    /* channel_ctx_size bytes */
struct fb_reactor *fb_io_channel_get_reactor(struct fb_io_channel *ch);
/* FB_IO_ZCOPY: the I/O's flags carry FB_IO_FLAG_POPULATE when the buffer
 * must hold the blocks' data (a read; the only kind the core passes today).
 * Before completing it with status 0, the module lends memory covering
 * exactly num_blocks blocks, one fb_bdev_io_set_buf call per contiguous
 * piece (at most FB_ZCOPY_IOV_MAX); it must stay valid until the consumer
 * frees the io, which the bdev outlives. A zcopy completed with 0 but a
 * wrong length is failed with -EIO. Modules must not report FB_IO_ZCOPY
 * for a base they forward to (error bdev) unless they handle it. */
#define FB_IO_FLAG_POPULATE 0x100u
/* -ENOSPC past FB_ZCOPY_IOV_MAX pieces. */
int fb_bdev_io_set_buf(struct fb_bdev_io *io, void *buf, size_t len);
/* status: 0 or negative errno. On the io's reactor. */
void fb_bdev_io_complete(struct fb_bdev_io *io, int status);
/* Same, but the callback runs on the reactor's next loop iteration. */
void fb_bdev_io_complete_deferred(struct fb_bdev_io *io, int status);

#ifdef __cplusplus
}
#endif
#endif
