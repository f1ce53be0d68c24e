/* Decoder pieces shared by the base bdev modules' RPC tables: SPDK params
 * this engine does not implement, accepted only at SPDK's default (what
 * scripts/rpc.py sends), and the common name/size fields. */
#ifndef FLEXBSO_BDEV_SPDK_PARAMS_H
#define FLEXBSO_BDEV_SPDK_PARAMS_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"

static inline int spdk_default_check(const struct fb_json_val *v, const char *want, struct fb_err *err)
{
	char *got = fb_json_val_dump(v);
	int rc = 0;

	if (!got)
		return -ENOMEM;
	if (strcmp(got, want) != 0) {
		fb_err_set(err, "this engine supports only %s (SPDK's default), got %s", want, got);
		rc = -ERANGE; /* well-formed, refused: SPDK's -EINVAL */
	}
	free(got);
	return rc;
}

static inline int spdk_zero_only(const struct fb_json_val *v, void *out, struct fb_err *err)
{
	(void)out;
	return spdk_default_check(v, "0", err);
}

static inline int spdk_false_only(const struct fb_json_val *v, void *out, struct fb_err *err)
{
	(void)out;
	return spdk_default_check(v, "false", err);
}

static inline int spdk_minus_one_only(const struct fb_json_val *v, void *out, struct fb_err *err)
{
	(void)out;
	return spdk_default_check(v, "-1", err);
}

/* A params struct member that only absorbs an SPDK default. */
struct spdk_ignored {
	uint32_t md_size, dif_type, dif_pi_format;
	bool md_interleave, dif_is_head_of_md;
	int numa_id; /* CUSTOM: never written */
};

#define SPDK_NAME_HINT "a bdev name: 1 to 255 characters, no control characters, e.g. \"Malloc0\""
#define SPDK_NUM_BLOCKS_HINT \
	"the number of blocks as a positive integer, e.g. 262144 (1 GiB at block_size 4096)"
#define SPDK_BLOCK_SIZE_HINT "the block size in bytes, a multiple of 512 up to 65536, e.g. 4096"
#define SPDK_UUID_HINT "a UUID such as \"6f1c2b9e-8a40-4d8e-9a52-1f0e0c7d3b21\", or leave it out for a random one"

#define SPDK_MD_FIELDS(T)                                                                      \
	{.name = "md_size", .offset = offsetof(T, ign.md_size), .type = FB_JSON_U32,           \
	 .optional = true, .decode = spdk_zero_only,                                              \
	 .hint = "0 or leave it out (separate or interleaved metadata is not supported by this engine)"}, \
	{.name = "md_interleave", .offset = offsetof(T, ign.md_interleave), .type = FB_JSON_BOOL, \
	 .optional = true, .decode = spdk_false_only,                                             \
	 .hint = "false or leave it out (interleaved metadata is not supported by this engine)"},  \
	{.name = "dif_type", .offset = offsetof(T, ign.dif_type), .type = FB_JSON_U32,         \
	 .optional = true, .decode = spdk_zero_only,                                              \
	 .hint = "0 or leave it out (T10 DIF protection is not supported by this engine)"},        \
	{.name = "dif_is_head_of_md", .offset = offsetof(T, ign.dif_is_head_of_md),            \
	 .type = FB_JSON_BOOL, .optional = true, .decode = spdk_false_only,                       \
	 .hint = "false or leave it out (T10 DIF protection is not supported by this engine)"},    \
	{.name = "dif_pi_format", .offset = offsetof(T, ign.dif_pi_format), .type = FB_JSON_U32, \
	 .optional = true, .decode = spdk_zero_only,                                              \
	 .hint = "0 or leave it out (T10 DIF protection is not supported by this engine)"}

#define SPDK_NUMA_FIELD(T)                                                                     \
	{.name = "numa_id", .offset = offsetof(T, ign.numa_id), .type = FB_JSON_CUSTOM,        \
	 .optional = true, .decode = spdk_minus_one_only,                                         \
	 .hint = "-1 or leave it out (NUMA placement is not supported by this engine)"}

/* SPDK's by-name delete, bdev_<kind>_delete {"name"}: FB_SPDK_DELETE_RPC(fn,
 * module) defines the handler fn (deletes a bdev of that module only) and
 * its decoder table; FB_SPDK_DELETE_METHOD("bdev_x_delete", fn) is the
 * entry for the module's RPC table. */
struct spdk_name_params {
	char *name;
};

#define FB_SPDK_DELETE_RPC(fn, module)                                                         \
	static const struct fb_json_field fn##_fields[] = {                                      \
		{.name = "name", .offset = offsetof(struct spdk_name_params, name),             \
		 .type = FB_JSON_STRING, .min = 1, .max = 255, .hint = SPDK_NAME_HINT},          \
	};                                                                                       \
	static int fn(struct fb_engine *e, const void *params, struct fb_json_writer *w,        \
		      struct fb_err *err)                                                        \
	{                                                                                        \
		const struct spdk_name_params *p = params;                                      \
		int rc = fb_bdev_delete_own(e, p->name, &(module), err);                         \
                                                                                                 \
		if (rc == 0)                                                                     \
			fb_json_write_bool(w, true);                                             \
		return rc;                                                                       \
	}

#define FB_SPDK_DELETE_METHOD(method, fn)                                                      \
	{.name = (method), .params = fn##_fields, .nparams = FB_JSON_FIELD_COUNT(fn##_fields),  \
	 .params_size = sizeof(struct spdk_name_params), .handler = fn}

/* block_size: any multiple of 512 up to 64 KiB; SPDK answers -22 for others. */
static inline int spdk_block_size_check(uint32_t bs, struct fb_err *err)
{
	if (bs < 512 || bs > 65536 || bs % 512) {
		fb_err_set(err, "Invalid parameter 'block_size': must be a multiple of 512 from 512 to "
			   "65536, got %u. Fix: pass " SPDK_BLOCK_SIZE_HINT ".", bs);
		return -EINVAL;
	}
	return 0;
}

#endif
