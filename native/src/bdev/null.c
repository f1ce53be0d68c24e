/* null bdev: reads return zeros, writes are discarded (a benchmark sink). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"
#include "spdk_params.h"

static struct fb_bdev_module null_module;

static void null_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	(void)ch;
	if (fb_bdev_io_get_type(io) == FB_IO_READ) {
		int iovcnt;
		struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);

		for (int i = 0; i < iovcnt; i++)
			memset(iov[i].iov_base, 0, iov[i].iov_len);
	}
	fb_bdev_io_complete_deferred(io, 0);
}

static bool null_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	/* No zcopy: a shared zero page would do, but nothing needs it yet. */
	return type < FB_IO_TYPE_COUNT && type != FB_IO_ZCOPY;
}

static void null_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct fb_uuid u;
	char us[FB_UUID_STR_LEN];

	fb_bdev_get_uuid(bdev, &u);
	fb_uuid_fmt(&u, us);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_null_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "name", fb_bdev_get_name(bdev));
	fb_json_write_named_uint64(w, "num_blocks", fb_bdev_get_num_blocks(bdev));
	fb_json_write_named_uint64(w, "block_size", fb_bdev_get_block_size(bdev));
	fb_json_write_named_string(w, "uuid", us);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table null_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.submit_request = null_submit,
	.io_type_supported = null_io_type_supported,
	.write_config_json = null_write_config,
};

struct null_create_params {
	char *name;
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t physical_block_size;
	struct fb_uuid uuid;
	struct spdk_ignored ign;
};

static const struct fb_json_field null_create_fields[] = {
	{.name = "name", .offset = offsetof(struct null_create_params, name), .type = FB_JSON_STRING,
	 .min = 1, .max = 255, .hint = SPDK_NAME_HINT},
	{.name = "num_blocks", .offset = offsetof(struct null_create_params, num_blocks),
	 .type = FB_JSON_U64, .min = 1, .max = 9007199254740991ull, .hint = SPDK_NUM_BLOCKS_HINT},
	{.name = "block_size", .offset = offsetof(struct null_create_params, block_size),
	 .type = FB_JSON_U32, .hint = SPDK_BLOCK_SIZE_HINT},
	{.name = "physical_block_size",
	 .offset = offsetof(struct null_create_params, physical_block_size), .type = FB_JSON_U32,
	 .optional = true, .hint = "the physical block size in bytes, a multiple of block_size, e.g. 4096"},
	{.name = "uuid", .offset = offsetof(struct null_create_params, uuid), .type = FB_JSON_UUID,
	 .optional = true, .hint = SPDK_UUID_HINT},
	SPDK_MD_FIELDS(struct null_create_params),
	SPDK_NUMA_FIELD(struct null_create_params),
};

static int null_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			   struct fb_err *err)
{
	const struct null_create_params *p = params;
	struct fb_bdev_register_opts o;
	int rc = spdk_block_size_check(p->block_size, err);

	if (rc)
		return rc;
	if (p->physical_block_size &&
	    (p->physical_block_size % p->block_size || p->physical_block_size > 65536)) {
		fb_err_set(err, "Invalid parameter 'physical_block_size': must be a multiple of "
			   "block_size (%u) up to 65536, got %u. Fix: pass a multiple of block_size, "
			   "e.g. 4096.", p->block_size, p->physical_block_size);
		return -EINVAL;
	}
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.name = p->name;
	o.uuid = p->uuid;
	o.block_size = p->block_size;
	o.physical_block_size = p->physical_block_size;
	o.num_blocks = p->num_blocks;
	o.module = &null_module;
	o.fn = &null_fn;
	rc = fb_bdev_register(e, &o, NULL, err);
	if (rc == 0)
		fb_json_write_string(w, p->name);
	return rc;
}

FB_SPDK_DELETE_RPC(null_rpc_delete, null_module)

static const struct fb_rpc_method null_rpcs[] = {
	{.name = "bdev_null_create", .params = null_create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(null_create_fields),
	 .params_size = sizeof(struct null_create_params), .handler = null_rpc_create},
	FB_SPDK_DELETE_METHOD("bdev_null_delete", null_rpc_delete),
};

static struct fb_bdev_module null_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "null",
	.product_name = "Null disk",
	.rpcs = null_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(null_rpcs),
};
FB_BDEV_MODULE_REGISTER(null_module)
