/* JSON for modules: a streaming writer (config and info dumps, RPC results)
 * and SPDK-shaped decoder tables for RPC params.
 *
 * The writer follows spdk_json_write_*: begin/end calls nest, names and
 * commas are placed by the writer, and the first failure (out of memory, a
 * value without a name inside an object) sticks and is returned by
 * fb_json_writer_finish.
 *
 * A decoder table is the params spec of one RPC method: field names,
 * types, limits and the hint that ends "Fix: pass ...". The RPC layer
 * rejects unknown params and reports the first bad one in the engine's
 * standard form, e.g.
 *   Invalid parameter 'strip_size_kb': must be a power of two, got 3.
 *   Fix: pass the strip size in KiB, a power of two from 4 to 1024, e.g. 64.
 * so a module never writes its own param validation messages for what the
 * table can express. Values are parsed by a real JSON parser (jansson)
 * behind this interface; modules see only decoded C values.
 */
#ifndef FLEXBSO_JSON_H
#define FLEXBSO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flexbso.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- writer */

struct fb_json_writer;

/* A writer into a growable buffer. */
struct fb_json_writer *fb_json_writer_new(void);
/* Returns 0 and hands out the NUL-terminated text (caller frees), or the
 * first error (-ENOMEM, -EINVAL for unbalanced or misplaced calls). The
 * writer is freed either way. */
int fb_json_writer_finish(struct fb_json_writer *w, char **out, size_t *len);

void fb_json_write_object_begin(struct fb_json_writer *w);
void fb_json_write_object_end(struct fb_json_writer *w);
void fb_json_write_array_begin(struct fb_json_writer *w);
void fb_json_write_array_end(struct fb_json_writer *w);
/* Inside an object: the next value's name. */
void fb_json_write_name(struct fb_json_writer *w, const char *name);
void fb_json_write_string(struct fb_json_writer *w, const char *s);   /* NULL writes null */
void fb_json_write_uint64(struct fb_json_writer *w, uint64_t v);
void fb_json_write_int64(struct fb_json_writer *w, int64_t v);
void fb_json_write_double(struct fb_json_writer *w, double v);
void fb_json_write_bool(struct fb_json_writer *w, bool v);
void fb_json_write_null(struct fb_json_writer *w);
/* A complete JSON value written verbatim (must be valid JSON). */
void fb_json_write_raw(struct fb_json_writer *w, const char *json);

/* name + value in one call. */
void fb_json_write_named_string(struct fb_json_writer *w, const char *name, const char *s);
void fb_json_write_named_uint64(struct fb_json_writer *w, const char *name, uint64_t v);
void fb_json_write_named_int64(struct fb_json_writer *w, const char *name, int64_t v);
void fb_json_write_named_double(struct fb_json_writer *w, const char *name, double v);
void fb_json_write_named_bool(struct fb_json_writer *w, const char *name, bool v);
void fb_json_write_named_object_begin(struct fb_json_writer *w, const char *name);
void fb_json_write_named_array_begin(struct fb_json_writer *w, const char *name);

/* -------------------------------------------------------------- decoder */

/* A parsed JSON value as handed to a custom decoder (opaque). */
struct fb_json_val;

enum fb_json_field_type {
	FB_JSON_STRING,       /* char * (malloc'd; freed by fb_json_decoded_free) */
	FB_JSON_BOOL,         /* bool */
	FB_JSON_U32,          /* uint32_t; min/max apply */
	FB_JSON_U64,          /* uint64_t; min/max apply */
	FB_JSON_STRING_ARRAY, /* struct fb_json_strings; min/max bound the count */
	FB_JSON_UUID,         /* struct fb_uuid; accepts the 36-character text form */
	FB_JSON_CUSTOM,       /* decode() fills the field */
};

/* A decoded array of strings. */
struct fb_json_strings {
	char **v;
	size_t n;
};

struct fb_json_field {
	const char *name;
	size_t offset;              /* offsetof(struct your_params, field) */
	enum fb_json_field_type type;
	/* absent or null: the field keeps what params_init put there (which
	 * sets no pointers: decoded strings and arrays are freed after the call) */
	bool optional;
	/* integers, array counts and string lengths; max 0 = the type's maximum */
	uint64_t min, max;
	bool power_of_two;          /* integers: 0 is refused too */
	const char *const *choices; /* strings: the allowed values, NULL-terminated; NULL = any */
	const char *hint;           /* ends "Fix: pass ...", e.g. "a bdev name, e.g. \"Malloc0\"" */
	/* FB_JSON_CUSTOM: decode v into out (the field); 0, or -EINVAL with err
	 * set to what is wrong ("must be ..., got ..."), or -ERANGE when v has
	 * the right type but a value this engine refuses. Also called for other
	 * types after the built-in decode, as an extra check, when non-NULL. */
	int (*decode)(const struct fb_json_val *v, void *out, struct fb_err *err);
	/* FB_JSON_CUSTOM: frees what decode allocated (NULL = nothing to free). */
	void (*release)(void *out);
};

/* Accessors for custom decoders. */
bool fb_json_val_is_null(const struct fb_json_val *v);
int fb_json_val_string(const struct fb_json_val *v, const char **out);     /* -EINVAL if not a string */
int fb_json_val_uint64(const struct fb_json_val *v, uint64_t *out);        /* -EINVAL if not a non-negative integer */
int fb_json_val_bool(const struct fb_json_val *v, bool *out);
size_t fb_json_val_array_size(const struct fb_json_val *v);                /* 0 if not an array */
const struct fb_json_val *fb_json_val_array_get(const struct fb_json_val *v, size_t i);
const struct fb_json_val *fb_json_val_object_get(const struct fb_json_val *v, const char *name);
/* The value as compact JSON text (malloc'd), e.g. for error messages. */
char *fb_json_val_dump(const struct fb_json_val *v);

/* Decodes the object `params` (NULL, JSON null and {} are the same) into
 * out using the table; unknown names are refused. On failure returns
 * -EINVAL with err holding the full message ("Unknown parameter ...",
 * "Missing required parameter ...", "Invalid parameter ...") and frees
 * whatever it decoded; -ERANGE instead when the params decode but a value
 * is outside its field's min/max/power-of-two/length or a custom check
 * said -ERANGE (fb_rpc_call answers that -EINVAL, as SPDK answers a value
 * its create refuses, and the rest -32602). `method` names the call in
 * messages. */
int fb_json_decode_object(const struct fb_json_val *params, const char *method,
			  const struct fb_json_field *fields, size_t nfields, void *out,
			  struct fb_err *err);
/* Frees the strings, arrays and custom fields a decode filled in. */
void fb_json_decoded_free(const struct fb_json_field *fields, size_t nfields, void *out);

/* Parses JSON text (control threads). NULL with err set ("JSON parse error
 * at line L column C: ...") on bad input. */
struct fb_json_val *fb_json_parse(const char *text, size_t len, struct fb_err *err);
void fb_json_val_free(struct fb_json_val *v);

#define FB_JSON_FIELD_COUNT(arr) (sizeof(arr) / sizeof((arr)[0]))

#ifdef __cplusplus
}
#endif
#endif
