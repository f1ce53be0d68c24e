/* JSON for modules: a streaming writer (ours, small) and decoder tables over
 * jansson. Messages follow the engine's RPC format (lib/engine/rpc/params.ts):
 *   Invalid parameter 'x': must be ..., got .... Fix: pass <hint>.
 *   Missing required parameter 'x'. Fix: add "x": <hint>.
 *   Unknown parameter 'x'. Fix: remove it; METHOD accepts a, b, c.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"
#include "flexbso/json.h"

/* ---------------------------------------------------------------- writer */

#define JW_DEPTH 64

struct fb_json_writer {
	char *buf;
	size_t len, cap;
	int err;
	unsigned depth;
	/* Per level: 'o' object or 'a' array; whether a value was written. */
	char kind[JW_DEPTH];
	bool any[JW_DEPTH];
	bool named;     /* a name was written and awaits its value */
	bool done;      /* a complete top-level value exists */
};

struct fb_json_writer *fb_json_writer_new(void)
{
	return calloc(1, sizeof(struct fb_json_writer));
}

static void jw_put(struct fb_json_writer *w, const char *s, size_t n)
{
	if (w->err)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		char *nb;

		while (cap < w->len + n + 1)
			cap *= 2;
		nb = realloc(w->buf, cap);
		if (!nb) {
			w->err = -ENOMEM;
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void jw_puts(struct fb_json_writer *w, const char *s)
{
	jw_put(w, s, strlen(s));
}

/* Before any value: commas inside arrays, a pending name inside objects. */
static bool jw_value_start(struct fb_json_writer *w)
{
	if (!w || w->err)
		return false;
	if (w->depth == 0) {
		if (w->done) {
			w->err = -EINVAL; /* a second top-level value */
			return false;
		}
		return true;
	}
	if (w->kind[w->depth - 1] == 'o') {
		if (!w->named) {
			w->err = -EINVAL; /* a value without a name inside an object */
			return false;
		}
		w->named = false;
		return true;
	}
	if (w->any[w->depth - 1])
		jw_put(w, ",", 1);
	w->any[w->depth - 1] = true;
	return true;
}

static void jw_value_end(struct fb_json_writer *w)
{
	if (w->depth == 0)
		w->done = true;
}

static void jw_str(struct fb_json_writer *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *run = p;

	jw_put(w, "\"", 1);
	for (; *p; p++) {
		char esc[7];
		const char *e = NULL;

		switch (*p) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		default:
			if (*p < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 15];
				esc[6] = '\0';
				e = esc;
			}
		}
		if (e) {
			jw_put(w, (const char *)run, (size_t)(p - run));
			jw_puts(w, e);
			run = p + 1;
		}
	}
	jw_put(w, (const char *)run, (size_t)(p - run));
	jw_put(w, "\"", 1);
}

int fb_json_writer_finish(struct fb_json_writer *w, char **out, size_t *len)
{
	int rc;

	if (!w)
		return -ENOMEM;
	rc = w->err;
	if (!rc && (w->depth || w->named || !w->done))
		rc = -EINVAL;
	if (!rc && out) {
		*out = w->buf;
		if (len)
			*len = w->len;
		w->buf = NULL;
	}
	free(w->buf);
	free(w);
	return rc;
}

static void jw_open(struct fb_json_writer *w, char kind)
{
	if (!jw_value_start(w))
		return;
	if (w->depth == JW_DEPTH) {
		w->err = -EINVAL;
		return;
	}
	jw_put(w, kind == 'o' ? "{" : "[", 1);
	w->kind[w->depth] = kind;
	w->any[w->depth] = false;
	w->depth++;
}

static void jw_close(struct fb_json_writer *w, char kind)
{
	if (!w || w->err)
		return;
	if (w->depth == 0 || w->kind[w->depth - 1] != kind || w->named) {
		w->err = -EINVAL;
		return;
	}
	w->depth--;
	jw_put(w, kind == 'o' ? "}" : "]", 1);
	jw_value_end(w);
}

void fb_json_write_object_begin(struct fb_json_writer *w) { jw_open(w, 'o'); }
void fb_json_write_object_end(struct fb_json_writer *w) { jw_close(w, 'o'); }
void fb_json_write_array_begin(struct fb_json_writer *w) { jw_open(w, 'a'); }
void fb_json_write_array_end(struct fb_json_writer *w) { jw_close(w, 'a'); }

void fb_json_write_name(struct fb_json_writer *w, const char *name)
{
	if (!w || w->err)
		return;
	if (w->depth == 0 || w->kind[w->depth - 1] != 'o' || w->named || !name) {
		w->err = -EINVAL;
		return;
	}
	if (w->any[w->depth - 1])
		jw_put(w, ",", 1);
	w->any[w->depth - 1] = true;
	jw_str(w, name);
	jw_put(w, ":", 1);
	w->named = true;
}

void fb_json_write_string(struct fb_json_writer *w, const char *s)
{
	if (!jw_value_start(w))
		return;
	if (s)
		jw_str(w, s);
	else
		jw_puts(w, "null");
	jw_value_end(w);
}

static void jw_printf(struct fb_json_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_printf(struct fb_json_writer *w, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	int n;

	if (!jw_value_start(w))
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	jw_put(w, buf, n > 0 ? (size_t)n : 0);
	jw_value_end(w);
}

void fb_json_write_uint64(struct fb_json_writer *w, uint64_t v) { jw_printf(w, "%" PRIu64, v); }
void fb_json_write_int64(struct fb_json_writer *w, int64_t v) { jw_printf(w, "%" PRId64, v); }
void fb_json_write_bool(struct fb_json_writer *w, bool v) { jw_printf(w, "%s", v ? "true" : "false"); }
void fb_json_write_null(struct fb_json_writer *w) { jw_printf(w, "null"); }

void fb_json_write_double(struct fb_json_writer *w, double v)
{
	if (!isfinite(v))
		jw_printf(w, "null"); /* JSON has no inf or nan */
	else if (v == floor(v) && fabs(v) < 1e15)
		jw_printf(w, "%.0f", v);
	else
		jw_printf(w, "%.17g", v);
}

void fb_json_write_raw(struct fb_json_writer *w, const char *json)
{
	if (!jw_value_start(w))
		return;
	if (!json) {
		w->err = -EINVAL;
		return;
	}
	jw_puts(w, json);
	jw_value_end(w);
}

void fb_json_write_named_string(struct fb_json_writer *w, const char *name, const char *s)
{
	fb_json_write_name(w, name);
	fb_json_write_string(w, s);
}

void fb_json_write_named_uint64(struct fb_json_writer *w, const char *name, uint64_t v)
{
	fb_json_write_name(w, name);
	fb_json_write_uint64(w, v);
}

void fb_json_write_named_int64(struct fb_json_writer *w, const char *name, int64_t v)
{
	fb_json_write_name(w, name);
	fb_json_write_int64(w, v);
}

void fb_json_write_named_double(struct fb_json_writer *w, const char *name, double v)
{
	fb_json_write_name(w, name);
	fb_json_write_double(w, v);
}

void fb_json_write_named_bool(struct fb_json_writer *w, const char *name, bool v)
{
	fb_json_write_name(w, name);
	fb_json_write_bool(w, v);
}

void fb_json_write_named_object_begin(struct fb_json_writer *w, const char *name)
{
	fb_json_write_name(w, name);
	fb_json_write_object_begin(w);
}

void fb_json_write_named_array_begin(struct fb_json_writer *w, const char *name)
{
	fb_json_write_name(w, name);
	fb_json_write_array_begin(w);
}

/* --------------------------------------------------------------- values */

/* A struct fb_json_val is a json_t: the type is opaque to modules. */
static const json_t *J(const struct fb_json_val *v)
{
	return (const json_t *)(const void *)v;
}

static const struct fb_json_val *V(const json_t *j)
{
	return (const struct fb_json_val *)(const void *)j;
}

struct fb_json_val *fb_json_parse(const char *text, size_t len, struct fb_err *err)
{
	json_error_t je;
	json_t *j;

	if (!text) {
		fb_err_set(err, "JSON parse error at line 1 column 0: no text");
		return NULL;
	}
	j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		fb_err_set(err, "JSON parse error at line %d column %d: %s", je.line, je.column, je.text);
		return NULL;
	}
	return (struct fb_json_val *)(void *)j;
}

void fb_json_val_free(struct fb_json_val *v)
{
	json_decref((json_t *)(void *)v);
}

bool fb_json_val_is_null(const struct fb_json_val *v)
{
	return !v || json_is_null(J(v));
}

int fb_json_val_string(const struct fb_json_val *v, const char **out)
{
	if (!v || !json_is_string(J(v)))
		return -EINVAL;
	*out = json_string_value(J(v));
	return 0;
}

int fb_json_val_uint64(const struct fb_json_val *v, uint64_t *out)
{
	if (!v || !json_is_integer(J(v)) || json_integer_value(J(v)) < 0)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(J(v));
	return 0;
}

int fb_json_val_bool(const struct fb_json_val *v, bool *out)
{
	if (!v || !json_is_boolean(J(v)))
		return -EINVAL;
	*out = json_is_true(J(v));
	return 0;
}

size_t fb_json_val_array_size(const struct fb_json_val *v)
{
	return v && json_is_array(J(v)) ? json_array_size(J(v)) : 0;
}

const struct fb_json_val *fb_json_val_array_get(const struct fb_json_val *v, size_t i)
{
	if (!v || !json_is_array(J(v)))
		return NULL;
	return V(json_array_get(J(v), i));
}

const struct fb_json_val *fb_json_val_object_get(const struct fb_json_val *v, const char *name)
{
	if (!v || !json_is_object(J(v)))
		return NULL;
	return V(json_object_get(J(v), name));
}

char *fb_json_val_dump(const struct fb_json_val *v)
{
	if (!v)
		return strdup("null");
	return json_dumps(J(v), JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
}

/* -------------------------------------------------------------- decoder */

/* How a value is described after "got": the engine's TS wording. */
static void describe(const json_t *j, char *out, size_t n)
{
	char *dump;

	switch (json_typeof(j)) {
	case JSON_NULL: snprintf(out, n, "null"); return;
	case JSON_ARRAY: snprintf(out, n, "an array"); return;
	case JSON_OBJECT: snprintf(out, n, "object"); return;
	case JSON_TRUE:
	case JSON_FALSE: snprintf(out, n, "boolean"); return;
	case JSON_INTEGER:
		snprintf(out, n, "the number %" JSON_INTEGER_FORMAT, json_integer_value(j));
		return;
	case JSON_REAL:
		snprintf(out, n, "the non-integer %.15g", json_real_value(j));
		return;
	case JSON_STRING:
		dump = json_dumps(j, JSON_ENCODE_ANY);
		snprintf(out, n, "the string %.200s", dump ? dump : "\"\"");
		free(dump);
		return;
	}
	snprintf(out, n, "a value");
}

/* Compact JSON of j (as JSON.stringify would show it), bounded. */
static void show(const json_t *j, char *out, size_t n)
{
	char *dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));

	snprintf(out, n, "%.200s", dump ? dump : "?");
	free(dump);
}

static const char *hint_of(const struct fb_json_field *f)
{
	return f->hint ? f->hint : "a valid value";
}

static int invalid(const struct fb_json_field *f, const char *where, struct fb_err *err,
		   const char *what)
{
	fb_err_set(err, "Invalid parameter '%s': %s. Fix: pass %s.", where, what, hint_of(f));
	return -EINVAL;
}

/* A value of the right type outside the field's range: -ERANGE, so the
 * caller can answer as SPDK does for a value its create refuses (-EINVAL),
 * not as for params that do not decode (-32602). */
static int out_of_range(const struct fb_json_field *f, const char *where, struct fb_err *err,
			const char *what)
{
	invalid(f, where, err, what);
	return -ERANGE;
}

static int decode_uint(const struct fb_json_field *f, const json_t *j, uint64_t tmax, uint64_t *out,
		       struct fb_err *err)
{
	char got[256], what[400];
	uint64_t v, max = f->max ? f->max : tmax;

	if (!json_is_integer(j)) {
		describe(j, got, sizeof(got));
		snprintf(what, sizeof(what), "must be an integer, got %s", got);
		return invalid(f, f->name, err, what);
	}
	if (json_integer_value(j) < 0 || (uint64_t)json_integer_value(j) < f->min) {
		show(j, got, sizeof(got));
		snprintf(what, sizeof(what), "must be >= %" PRIu64 ", got %s", f->min, got);
		/* A negative number does not decode into an unsigned field (SPDK's
		 * decoders refuse it); a small one decodes and is refused. */
		return json_integer_value(j) < 0 ? invalid(f, f->name, err, what)
						 : out_of_range(f, f->name, err, what);
	}
	v = (uint64_t)json_integer_value(j);
	if (v > max) {
		snprintf(what, sizeof(what), "must be <= %" PRIu64 ", got %" PRIu64, max, v);
		return out_of_range(f, f->name, err, what);
	}
	if (f->power_of_two && (v == 0 || (v & (v - 1)))) {
		snprintf(what, sizeof(what), "must be a power of two, got %" PRIu64, v);
		return out_of_range(f, f->name, err, what);
	}
	*out = v;
	return 0;
}

static int decode_string(const struct fb_json_field *f, const json_t *j, const char *where,
			 char **out, struct fb_err *err)
{
	char got[256], what[1200];
	const char *s;
	size_t len;

	if (!json_is_string(j)) {
		describe(j, got, sizeof(got));
		snprintf(what, sizeof(what), "must be a string, got %s", got);
		return invalid(f, where, err, what);
	}
	s = json_string_value(j);
	len = json_string_length(j);
	if (strlen(s) != len) {
		snprintf(what, sizeof(what), "must not contain NUL characters");
		return invalid(f, where, err, what);
	}
	if (f->choices) {
		bool ok = false;
		size_t off;

		for (const char *const *c = f->choices; *c; c++)
			ok = ok || strcmp(*c, s) == 0;
		if (!ok) {
			off = (size_t)snprintf(what, sizeof(what), "must be one of ");
			for (const char *const *c = f->choices; *c && off < sizeof(what); c++)
				off += (size_t)snprintf(what + off, sizeof(what) - off, "%s\"%s\"",
							c == f->choices ? "" : ", ", *c);
			show(j, got, sizeof(got));
			if (off < sizeof(what))
				snprintf(what + off, sizeof(what) - off, ", got %s", got);
			return invalid(f, where, err, what);
		}
	} else if (f->type == FB_JSON_STRING) {
		/* min/max bound a string's length. */
		if (len < f->min) {
			snprintf(what, sizeof(what), "must NOT have fewer than %" PRIu64 " characters, got %s",
				 f->min, (show(j, got, sizeof(got)), got));
			return out_of_range(f, where, err, what);
		}
		if (f->max && len > f->max) {
			snprintf(what, sizeof(what), "must NOT have more than %" PRIu64 " characters, got %zu",
				 f->max, len);
			return out_of_range(f, where, err, what);
		}
	}
	*out = strdup(s);
	if (!*out) {
		fb_err_set(err, "out of memory decoding parameter '%s'", where);
		return -ENOMEM;
	}
	return 0;
}

static void field_free(const struct fb_json_field *f, void *out)
{
	char *p = (char *)out + f->offset;

	switch (f->type) {
	case FB_JSON_STRING:
		free(*(char **)(void *)p);
		*(char **)(void *)p = NULL;
		break;
	case FB_JSON_STRING_ARRAY: {
		struct fb_json_strings *a = (struct fb_json_strings *)(void *)p;

		for (size_t i = 0; a->v && i < a->n; i++)
			free(a->v[i]);
		free(a->v);
		a->v = NULL;
		a->n = 0;
		break;
	}
	case FB_JSON_CUSTOM:
		if (f->release)
			f->release(p);
		break;
	default:
		break;
	}
}

static int decode_field(const struct fb_json_field *f, const json_t *j, void *out,
			struct fb_err *err)
{
	char *p = (char *)out + f->offset;
	char got[256], what[400];
	struct fb_err sub;
	uint64_t v;
	int rc = 0;

	switch (f->type) {
	case FB_JSON_STRING: {
		char *s = NULL;

		rc = decode_string(f, j, f->name, &s, err);
		if (rc)
			return rc;
		/* params_init never sets pointers (they are freed after the call). */
		*(char **)(void *)p = s;
		break;
	}
	case FB_JSON_BOOL:
		if (!json_is_boolean(j)) {
			describe(j, got, sizeof(got));
			snprintf(what, sizeof(what), "must be a boolean, got %s", got);
			return invalid(f, f->name, err, what);
		}
		*(bool *)(void *)p = json_is_true(j);
		break;
	case FB_JSON_U32:
		rc = decode_uint(f, j, UINT32_MAX, &v, err);
		if (rc)
			return rc;
		*(uint32_t *)(void *)p = (uint32_t)v;
		break;
	case FB_JSON_U64:
		rc = decode_uint(f, j, UINT64_MAX, &v, err);
		if (rc)
			return rc;
		*(uint64_t *)(void *)p = v;
		break;
	case FB_JSON_STRING_ARRAY: {
		struct fb_json_strings a = {0};
		size_t n;

		if (!json_is_array(j)) {
			describe(j, got, sizeof(got));
			snprintf(what, sizeof(what), "must be an array, got %s", got);
			return invalid(f, f->name, err, what);
		}
		n = json_array_size(j);
		if (n < f->min) {
			snprintf(what, sizeof(what), "must NOT have fewer than %" PRIu64 " items, got %zu",
				 f->min, n);
			return out_of_range(f, f->name, err, what);
		}
		if (f->max && n > f->max) {
			snprintf(what, sizeof(what), "must NOT have more than %" PRIu64 " items, got %zu",
				 f->max, n);
			return out_of_range(f, f->name, err, what);
		}
		a.v = calloc(n ? n : 1, sizeof(*a.v));
		if (!a.v) {
			fb_err_set(err, "out of memory decoding parameter '%s'", f->name);
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			char where[300];
			struct fb_json_field item = *f;

			item.min = 1; /* items are non-empty strings */
			item.max = 0;
			item.type = FB_JSON_STRING;
			snprintf(where, sizeof(where), "%s[%zu]", f->name, i);
			rc = decode_string(&item, json_array_get(j, i), where, &a.v[i], err);
			if (rc)
				break;
			a.n = i + 1;
		}
		if (rc) {
			for (size_t i = 0; i < a.n; i++)
				free(a.v[i]);
			free(a.v);
			return rc;
		}
		*(struct fb_json_strings *)(void *)p = a;
		break;
	}
	case FB_JSON_UUID: {
		struct fb_uuid u;

		if (!json_is_string(j) || fb_uuid_parse(json_string_value(j), &u) != 0) {
			if (json_is_string(j))
				show(j, got, sizeof(got));
			else
				describe(j, got, sizeof(got));
			snprintf(what, sizeof(what), "must be a UUID (8-4-4-4-12 hex digits), got %s", got);
			return invalid(f, f->name, err, what);
		}
		*(struct fb_uuid *)(void *)p = u;
		break;
	}
	case FB_JSON_CUSTOM:
		break;
	}
	if (f->decode) {
		memset(&sub, 0, sizeof(sub));
		rc = f->decode(V(j), p, &sub);
		if (rc) {
			if (f->type != FB_JSON_CUSTOM)
				field_free(f, out);
			if (rc == -ENOMEM) {
				fb_err_set(err, "out of memory decoding parameter '%s'", f->name);
				return rc;
			}
			if (rc == -ERANGE)
				return out_of_range(f, f->name, err, sub.msg[0] ? sub.msg : "is out of range");
			return invalid(f, f->name, err, sub.msg[0] ? sub.msg : "is invalid");
		}
	}
	return 0;
}

static void accepted_list(const struct fb_json_field *fields, size_t n, char *out, size_t cap)
{
	size_t off = 0;

	out[0] = '\0';
	if (n == 0) {
		snprintf(out, cap, "no params");
		return;
	}
	for (size_t i = 0; i < n && off < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? ", " : "", fields[i].name);
}

int fb_json_decode_object(const struct fb_json_val *params, const char *method,
			  const struct fb_json_field *fields, size_t nfields, void *out,
			  struct fb_err *err)
{
	const json_t *obj = params ? J(params) : NULL;
	const char *key;
	json_t *val;
	char names[400];
	int rc = 0;

	method = method ? method : "this method";
	if (obj && json_is_null(obj))
		obj = NULL;
	if (obj && !json_is_object(obj)) {
		accepted_list(fields, nfields, names, sizeof(names));
		fb_err_set(err, "%s takes named params: send \"params\" as an object%s%s, not %s", method,
			   nfields ? " with " : " (this method takes none)", nfields ? names : "",
			   json_is_array(obj) ? "an array" :
			   json_is_string(obj) ? "string" :
			   json_is_boolean(obj) ? "boolean" : "number");
		return -EINVAL;
	}
	/* Missing, then unknown, then each value: the order the TS layer (ajv)
	 * reports them in. */
	for (size_t i = 0; i < nfields; i++) {
		const json_t *j = obj ? json_object_get(obj, fields[i].name) : NULL;

		if (!fields[i].optional && (!j || json_is_null(j))) {
			fb_err_set(err, "Missing required parameter '%s'. Fix: add \"%s\": %s.",
				   fields[i].name, fields[i].name, hint_of(&fields[i]));
			return -EINVAL;
		}
	}
	if (obj) {
		json_object_foreach((json_t *)(uintptr_t)obj, key, val) {
			bool known = false;

			for (size_t i = 0; i < nfields && !known; i++)
				known = strcmp(fields[i].name, key) == 0;
			if (!known) {
				accepted_list(fields, nfields, names, sizeof(names));
				fb_err_set(err, "Unknown parameter '%.100s'. Fix: remove it; %s accepts %s.",
					   key, method, names);
				return -EINVAL;
			}
		}
	}
	for (size_t i = 0; i < nfields; i++) {
		const json_t *j = obj ? json_object_get(obj, fields[i].name) : NULL;

		if (!j || json_is_null(j))
			continue;
		rc = decode_field(&fields[i], j, out, err);
		if (rc)
			break;
	}
	if (rc)
		fb_json_decoded_free(fields, nfields, out);
	return rc;
}

void fb_json_decoded_free(const struct fb_json_field *fields, size_t nfields, void *out)
{
	for (size_t i = 0; i < nfields; i++)
		field_free(&fields[i], out);
}
