/* JSON-RPC methods of the compress module: bdev_compress_create (SPDK's
 * params plus chunk_size, engine and num_blocks), bdev_compress_delete,
 * bdev_compress_get_stats, bdev_compress_set_level (new writes, in place),
 * bdev_compress_set_options. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "compress_internal.h"

static void create_init(void *p)
{
	struct fb_cmp_create_params *c = p;

	c->comp_level = UINT32_MAX;
	c->chunk_size = 16384;
}

static const struct fb_json_field create_fields[] = {
	{.name = "base_bdev_name", .offset = offsetof(struct fb_cmp_create_params, base_bdev_name),
	 .type = FB_JSON_STRING, .hint = "the bdev to store the volume on, e.g. \"Malloc0\""},
	{.name = "name", .offset = offsetof(struct fb_cmp_create_params, name), .type = FB_JSON_STRING,
	 .optional = true, .min = 1, .max = 255, .hint = "a bdev name; default \"COMP_<base>\""},
	{.name = "comp_algo", .offset = offsetof(struct fb_cmp_create_params, comp_algo),
	 .type = FB_JSON_STRING, .optional = true,
	 .hint = "one of \"deflate\" (ISA-L, default), \"zlib\", \"lz4\", \"zstd\", \"none\" (stored raw)"},
	{.name = "comp_level", .offset = offsetof(struct fb_cmp_create_params, comp_level),
	 .type = FB_JSON_U32, .optional = true,
	 .hint = "a level of the algorithm (deflate 0-3, zlib 1-9, lz4 1-12, zstd 1-19)"},
	{.name = "lb_size", .offset = offsetof(struct fb_cmp_create_params, lb_size),
	 .type = FB_JSON_U32, .optional = true, .hint = "512 or 4096"},
	{.name = "chunk_size", .offset = offsetof(struct fb_cmp_create_params, chunk_size),
	 .type = FB_JSON_U32, .optional = true,
	 .hint = "bytes, a power of two from the block size to 1048576, e.g. 16384"},
	{.name = "engine", .offset = offsetof(struct fb_cmp_create_params, engine),
	 .type = FB_JSON_STRING, .optional = true, .hint = "\"auto\" or \"cpu\""},
	{.name = "pm_path", .offset = offsetof(struct fb_cmp_create_params, pm_path),
	 .type = FB_JSON_STRING, .optional = true,
	 .hint = "any path (SPDK's; unused: the volume needs no persistent memory)"},
	{.name = "num_blocks", .offset = offsetof(struct fb_cmp_create_params, num_blocks),
	 .type = FB_JSON_U64, .optional = true,
	 .hint = "the logical size in lb_size blocks, a whole number of chunks; default: the "
		 "base's capacity"},
};

static int rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		      struct fb_err *err)
{
	char *name = NULL;
	int rc = fb_cmp_create(e, params, &name, err);

	if (rc)
		return rc;
	fb_json_write_string(w, name);
	free(name);
	return 0;
}

struct name_params {
	char *name;
};

static const struct fb_json_field delete_fields[] = {
	{.name = "name", .offset = offsetof(struct name_params, name), .type = FB_JSON_STRING,
	 .hint = "the compress bdev's name, e.g. \"COMP_Malloc0\""},
};

/* The base of compress bdev `name` (malloc'd), or NULL if it is not one. */
static char *base_name_of(struct fb_engine *e, const char *name)
{
	struct fb_bdev_desc *d;
	struct fb_bdev *b;
	char *base = NULL;

	if (fb_bdev_open(e, name, NULL, &d, NULL) != 0)
		return NULL;
	b = fb_bdev_desc_get_bdev(d);
	if (fb_bdev_get_module(b) == &fb_cmp_module)
		base = strdup(((struct cmp_bdev *)fb_bdev_get_module_ctx(b))->base_name);
	fb_bdev_close(d);
	return base;
}

/* Zeroes the volume header so that nothing can reopen the deleted volume:
 * neither examine after a restart nor a later create on the same base, which
 * would otherwise hand the old data to the next owner of the base. */
static int wipe_header(struct fb_engine *e, const char *base, struct fb_err *err)
{
	struct fb_bdev_open_opts o = {.size = sizeof(o), .write = true, .holder = "bdev_compress_delete"};
	struct fb_bdev_desc *d;
	void *zero = NULL;
	uint32_t bs;
	int rc = fb_bdev_open(e, base, &o, &d, err);

	if (rc)
		return rc;
	bs = fb_bdev_get_block_size(fb_bdev_desc_get_bdev(d));
	zero = calloc(1, FB_CMP_HEADER_REGION > bs ? FB_CMP_HEADER_REGION : bs);
	if (!zero) {
		rc = -ENOMEM;
	} else {
		uint64_t blocks = (FB_CMP_HEADER_REGION + bs - 1) / bs;

		rc = fb_bdev_io_sync(d, FB_IO_WRITE, zero, 0, blocks, FB_IO_FLAG_FUA);
		if (rc == 0)
			rc = fb_bdev_io_sync(d, FB_IO_FLUSH, NULL, 0, 0, 0);
	}
	if (rc)
		fb_err_set(err, "compress bdev deleted, but wiping its header on '%s' failed (%s): "
			   "the volume may reopen on that base; delete the base to destroy its data",
			   base, strerror(-rc));
	free(zero);
	fb_bdev_close(d);
	return rc;
}

/* SPDK's bdev_compress_delete destroys the volume, not just the bdev: the
 * header is wiped after the bdev is gone (an engine shutdown, which is not
 * this RPC, keeps volumes for examine to reopen). */
static int rpc_delete(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		      struct fb_err *err)
{
	const struct name_params *p = params;
	char *base = base_name_of(e, p->name);
	int rc = fb_bdev_delete_own(e, p->name, &fb_cmp_module, err);

	if (rc == 0 && base)
		rc = wipe_header(e, base, err);
	free(base);
	if (rc)
		return rc;
	fb_json_write_bool(w, true);
	return 0;
}

static const struct fb_json_field stats_fields[] = {
	{.name = "name", .offset = offsetof(struct name_params, name), .type = FB_JSON_STRING,
	 .optional = true, .hint = "a compress bdev's name; omit for all"},
};

static int rpc_stats(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		     struct fb_err *err)
{
	const struct name_params *p = params;

	if (!p->name) {
		fb_cmp_write_all_stats(e, w);
		return 0;
	}
	fb_json_write_array_begin(w);
	{
		int rc = fb_cmp_write_stats(e, p->name, w, err);

		if (rc)
			return rc;
	}
	fb_json_write_array_end(w);
	return 0;
}

struct level_params {
	char *name;
	uint32_t comp_level;
};

static const struct fb_json_field level_fields[] = {
	{.name = "name", .offset = offsetof(struct level_params, name), .type = FB_JSON_STRING,
	 .hint = "the compress bdev's name, e.g. \"COMP_Malloc0\""},
	{.name = "comp_level", .offset = offsetof(struct level_params, comp_level),
	 .type = FB_JSON_U32, .hint = "a level of the bdev's algorithm"},
};

static int rpc_level(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		     struct fb_err *err)
{
	const struct level_params *p = params;
	int rc = fb_cmp_set_level(e, p->name, p->comp_level, err);

	if (rc)
		return rc;
	fb_json_write_bool(w, true);
	return 0;
}

struct options_params {
	uint32_t worker_threads;
	uint32_t map_cache_kib;
	uint32_t segs_per_bitmap;
};

static void options_init(void *p)
{
	struct options_params *o = p;

	o->worker_threads = UINT32_MAX;
	o->map_cache_kib = UINT32_MAX;
	o->segs_per_bitmap = UINT32_MAX;
}

static const struct fb_json_field options_fields[] = {
	{.name = "worker_threads", .offset = offsetof(struct options_params, worker_threads),
	 .type = FB_JSON_U32, .optional = true, .max = 64,
	 .hint = "codec threads, 0 to 64 (0 = compress on the reactors)"},
	{.name = "map_cache_kib", .offset = offsetof(struct options_params, map_cache_kib),
	 .type = FB_JSON_U32, .optional = true, .min = 64, .max = 64u << 20,
	 .hint = "KiB of chunk-map pages each volume keeps in RAM, 64 to 67108864 (default 8192: "
		 "the whole map of 8 GiB of 16 KiB chunks); applies to volumes opened from now on"},
	{.name = "alloc_segments_per_bitmap", .offset = offsetof(struct options_params, segs_per_bitmap),
	 .type = FB_JSON_U32, .optional = true, .min = 1, .max = 1u << 20,
	 .hint = "allocator segments per free-space bitmap a volume keeps in RAM, 1 to 1048576 "
		 "(default 16: 15 MB per TB of 512-byte units; at least 8 bitmaps); more saves RAM, "
		 "fewer means fewer map scans on a fragmented volume; applies to volumes opened "
		 "from now on"},
};

static int rpc_options(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		       struct fb_err *err)
{
	const struct options_params *p = params;
	int rc = 0;

	if (p->worker_threads != UINT32_MAX)
		rc = fb_cmp_set_worker_threads(e, p->worker_threads, err);
	if (rc == 0 && p->map_cache_kib != UINT32_MAX)
		rc = fb_cmp_set_map_cache(e, p->map_cache_kib, err);
	if (rc == 0 && p->segs_per_bitmap != UINT32_MAX)
		rc = fb_cmp_set_segs_per_bitmap(e, p->segs_per_bitmap, err);
	if (rc)
		return rc;
	fb_json_write_bool(w, true);
	return 0;
}

const struct fb_rpc_method fb_cmp_rpcs[FB_CMP_NRPCS] = {
	{.name = "bdev_compress_create", .params = create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(create_fields),
	 .params_size = sizeof(struct fb_cmp_create_params), .params_init = create_init,
	 .handler = rpc_create},
	{.name = "bdev_compress_delete", .params = delete_fields,
	 .nparams = FB_JSON_FIELD_COUNT(delete_fields), .params_size = sizeof(struct name_params),
	 .handler = rpc_delete},
	{.name = "bdev_compress_get_stats", .params = stats_fields,
	 .nparams = FB_JSON_FIELD_COUNT(stats_fields), .params_size = sizeof(struct name_params),
	 .handler = rpc_stats},
	{.name = "bdev_compress_set_level", .params = level_fields,
	 .nparams = FB_JSON_FIELD_COUNT(level_fields), .params_size = sizeof(struct level_params),
	 .handler = rpc_level},
	{.name = "bdev_compress_set_options", .params = options_fields,
	 .nparams = FB_JSON_FIELD_COUNT(options_fields),
	 .params_size = sizeof(struct options_params), .params_init = options_init,
	 .handler = rpc_options},
};
