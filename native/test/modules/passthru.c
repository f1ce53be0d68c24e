/* Test-only passthru bdev (SPDK's passthru shape): forwards reads, writes
 * and flushes to its base and reports neither write-zeroes nor unmap, so
 * the core emulates them (the submit path asserts it never sees them). It
 * opens its base with an event callback: a REMOVE deletes the passthru,
 * whose consumers get their own REMOVE (hot-remove down the stack).
 *
 *   bdev_passthru_create {base_bdev_name, name}   bdev_passthru_delete {name}
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"

struct pt_bdev {
	struct fb_engine *e;
	char *name;
	struct fb_bdev_desc *base;
};

struct pt_channel {
	struct fb_io_channel *base_ch;
};

struct pt_io {
	struct fb_io_wait_entry wait;
	struct fb_bdev_io *io;
	struct fb_io_channel *ch;
};

static struct fb_bdev_module pt_module;

static void pt_base_done(struct fb_bdev_io *base_io, int status, void *arg)
{
	fb_bdev_free_io(base_io);
	fb_bdev_io_complete(arg, status);
}

static void pt_forward(void *arg)
{
	struct pt_io *pio = arg;
	struct fb_bdev_io *io = pio->io;
	struct pt_bdev *pt = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct pt_channel *pc = fb_io_channel_get_ctx(pio->ch);
	uint64_t off = fb_bdev_io_get_offset_blocks(io), n = fb_bdev_io_get_num_blocks(io);
	struct iovec *iov;
	int iovcnt, rc;

	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(pt->base, pc->base_ch, iov, iovcnt, off, n, pt_base_done, io);
		break;
	case FB_IO_WRITE:
		rc = fb_bdev_writev_blocks(pt->base, pc->base_ch, iov, iovcnt, off, n,
					   fb_bdev_io_get_flags(io), pt_base_done, io);
		break;
	case FB_IO_FLUSH:
		rc = fb_bdev_flush_blocks(pt->base, pc->base_ch, off, n, pt_base_done, io);
		break;
	default:
		/* The core emulates write-zeroes and unmap for this module. */
		th_fail(__FILE__, __LINE__, "passthru got io type %d", fb_bdev_io_get_type(io));
	}
	if (rc == -ENOMEM)
		fb_io_channel_queue_wait(pc->base_ch, &pio->wait);
	else if (rc)
		fb_bdev_io_complete_deferred(io, rc); /* e.g. -ENODEV once the base is removed */
}

static void pt_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct pt_io *pio = fb_bdev_io_get_driver_ctx(io);

	CHECK(fb_bdev_io_get_channel(io) == ch);
	pio->io = io;
	pio->ch = ch;
	pio->wait.cb = pt_forward;
	pio->wait.arg = pio;
	pt_forward(pio);
}

static bool pt_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_WRITE || type == FB_IO_FLUSH;
}

static int pt_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct pt_bdev *pt = fb_bdev_get_module_ctx(bdev);
	struct pt_channel *pc = ctx;

	pc->base_ch = fb_bdev_get_io_channel(pt->base);
	return pc->base_ch ? 0 : -ENOMEM;
}

static void pt_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct pt_channel *pc = ctx;

	(void)bdev;
	fb_put_io_channel(pc->base_ch);
}

static void pt_destruct(struct fb_bdev *bdev)
{
	struct pt_bdev *pt = fb_bdev_get_module_ctx(bdev);

	fb_bdev_close(pt->base);
	free(pt->name);
	free(pt);
}

static void pt_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct pt_bdev *pt = fb_bdev_get_module_ctx(bdev);

	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_passthru_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "base_bdev_name",
				   fb_bdev_get_name(fb_bdev_desc_get_bdev(pt->base)));
	fb_json_write_named_string(w, "name", fb_bdev_get_name(bdev));
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table pt_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = pt_destruct,
	.submit_request = pt_submit,
	.io_type_supported = pt_io_type_supported,
	.channel_create = pt_channel_create,
	.channel_destroy = pt_channel_destroy,
	.write_config_json = pt_write_config,
};

/* The base goes away: so does the passthru (its consumers are told in turn). */
static void pt_base_event(enum fb_bdev_event_type type, struct fb_bdev *base, void *ctx)
{
	struct pt_bdev *pt = ctx;
	struct fb_err err;

	(void)base;
	if (type == FB_BDEV_EVENT_REMOVE)
		CHECK_OK(fb_bdev_delete(pt->e, pt->name, &err));
}

struct pt_create_params {
	char *base_bdev_name, *name;
};

static const struct fb_json_field pt_create_fields[] = {
	{.name = "base_bdev_name", .offset = offsetof(struct pt_create_params, base_bdev_name),
	 .type = FB_JSON_STRING, .min = 1, .hint = "the base bdev's name"},
	{.name = "name", .offset = offsetof(struct pt_create_params, name), .type = FB_JSON_STRING,
	 .min = 1, .hint = "the passthru bdev's name"},
};

static int pt_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			 struct fb_err *err)
{
	const struct pt_create_params *p = params;
	struct pt_bdev *pt = calloc(1, sizeof(*pt));
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = true, .holder = "passthru",
				       .event_cb = pt_base_event, .event_ctx = pt};
	struct fb_bdev_register_opts ro = {.size = sizeof(ro)};
	struct fb_bdev *base;
	int rc;

	CHECK(pt != NULL);
	pt->e = e;
	pt->name = strdup(p->name);
	rc = fb_bdev_open(e, p->base_bdev_name, &oo, &pt->base, err);
	if (rc == 0)
		rc = fb_bdev_claim(pt->base, &pt_module, err);
	if (rc) {
		fb_bdev_close(pt->base);
		free(pt->name);
		free(pt);
		return rc;
	}
	base = fb_bdev_desc_get_bdev(pt->base);
	ro.name = p->name;
	ro.block_size = fb_bdev_get_block_size(base);
	ro.num_blocks = fb_bdev_get_num_blocks(base);
	ro.module = &pt_module;
	ro.fn = &pt_fn;
	ro.ctx = pt;
	rc = fb_bdev_register(e, &ro, NULL, err);
	if (rc) {
		fb_bdev_close(pt->base);
		free(pt->name);
		free(pt);
		return rc;
	}
	fb_json_write_string(w, p->name);
	return 0;
}

struct pt_name_params {
	char *name;
};

static const struct fb_json_field pt_name_fields[] = {
	{.name = "name", .offset = offsetof(struct pt_name_params, name), .type = FB_JSON_STRING,
	 .min = 1, .hint = "the passthru bdev's name"},
};

static int pt_rpc_delete(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			 struct fb_err *err)
{
	const struct pt_name_params *p = params;
	int rc = fb_bdev_delete_own(e, p->name, &pt_module, err);

	if (rc == 0)
		fb_json_write_bool(w, true);
	return rc;
}

static const struct fb_rpc_method pt_rpcs[] = {
	{.name = "bdev_passthru_create", .params = pt_create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(pt_create_fields),
	 .params_size = sizeof(struct pt_create_params), .handler = pt_rpc_create},
	{.name = "bdev_passthru_delete", .params = pt_name_fields,
	 .nparams = FB_JSON_FIELD_COUNT(pt_name_fields),
	 .params_size = sizeof(struct pt_name_params), .handler = pt_rpc_delete},
};

static struct fb_bdev_module pt_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "passthru",
	.product_name = "passthru",
	.io_ctx_size = sizeof(struct pt_io),
	.channel_ctx_size = sizeof(struct pt_channel),
	.rpcs = pt_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(pt_rpcs),
};
FB_BDEV_MODULE_REGISTER(pt_module)
