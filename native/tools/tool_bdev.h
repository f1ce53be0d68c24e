/* Creating bdevs from the tools' command lines through the engine's
 * generic RPC path (fb_rpc_call), shared by fb_perf and fb_nbd_serve. */
#ifndef FB_TOOL_BDEV_H
#define FB_TOOL_BDEV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/flexbso.h"
#include "flexbso/json.h"

/* Calls a module's create RPC with the params object w holds (consumed). */
static inline int rpc_with(struct fb_engine *e, const char *method, struct fb_json_writer *w,
			   struct fb_err *err)
{
	char *params = NULL, *result = NULL;
	int rc = fb_json_writer_finish(w, &params, NULL);

	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return rc;
	}
	rc = fb_rpc_call(e, method, params, &result, err);
	free(params);
	free(result);
	return rc;
}

/* {"name": name, "num_blocks"/"filename"/"base_name": ...} for the base bdevs. */
static inline int create_bdev(struct fb_engine *e, const char *method, const char *name, const char *path,
		       uint64_t num_blocks, uint32_t block_size, struct fb_err *err)
{
	struct fb_json_writer *w = fb_json_writer_new();

	fb_json_write_object_begin(w);
	if (strcmp(method, "bdev_error_create") == 0) {
		fb_json_write_named_string(w, "base_name", name);
	} else {
		fb_json_write_named_string(w, "name", name);
		if (path)
			fb_json_write_named_string(w, "filename", path);
		else
			fb_json_write_named_uint64(w, "num_blocks", num_blocks);
		if (block_size)
			fb_json_write_named_uint64(w, "block_size", block_size);
	}
	fb_json_write_object_end(w);
	return rpc_with(e, method, w, err);
}

#endif
