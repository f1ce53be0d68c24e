/* Core services of the module ABI that need no bdev stack: the JSON writer,
 * decoder tables and their messages (the engine's RPC wording), the generic
 * RPC entry point, uuids, the notification ring, reactor timers, and the
 * channel buffer budget with io_wait. */
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

static char *finish(struct fb_json_writer *w, int want_rc)
{
	char *out = NULL;

	CHECK_EQ(fb_json_writer_finish(w, &out, NULL), want_rc);
	return out;
}

TEST(writer)
{
	struct fb_json_writer *w = fb_json_writer_new();
	char *s;

	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "s", "q\"\\\n\t\x01\xc3\xa9");
	fb_json_write_named_uint64(w, "u", UINT64_MAX);
	fb_json_write_named_int64(w, "i", INT64_MIN);
	fb_json_write_named_double(w, "d", 0.5);
	fb_json_write_named_bool(w, "b", false);
	fb_json_write_name(w, "n");
	fb_json_write_null(w);
	fb_json_write_named_array_begin(w, "a");
	fb_json_write_uint64(w, 1);
	fb_json_write_string(w, NULL);
	fb_json_write_raw(w, "{\"x\":[]}");
	fb_json_write_object_begin(w);
	fb_json_write_object_end(w);
	fb_json_write_array_end(w);
	fb_json_write_object_end(w);
	s = finish(w, 0);
	CHECK(strcmp(s, "{\"s\":\"q\\\"\\\\\\n\\t\\u0001\xc3\xa9\",\"u\":18446744073709551615,"
		     "\"i\":-9223372036854775808,\"d\":0.5,\"b\":false,\"n\":null,"
		     "\"a\":[1,null,{\"x\":[]},{}]}") == 0 || (fprintf(stderr, "%s\n", s), 0));
	free(s);
	/* Misuse sticks and is reported at the end. */
	w = fb_json_writer_new();
	fb_json_write_object_begin(w);
	fb_json_write_uint64(w, 1); /* no name */
	fb_json_write_object_end(w);
	CHECK(finish(w, -EINVAL) == NULL);
	w = fb_json_writer_new();
	fb_json_write_array_begin(w);
	CHECK(finish(w, -EINVAL) == NULL); /* unbalanced */
	w = fb_json_writer_new();
	fb_json_write_bool(w, true);
	fb_json_write_bool(w, true);
	CHECK(finish(w, -EINVAL) == NULL); /* two top-level values */
	w = fb_json_writer_new();
	fb_json_write_array_begin(w);
	fb_json_write_object_end(w);
	CHECK(finish(w, -EINVAL) == NULL); /* mismatched end */
}

struct params {
	char *name;
	bool on;
	uint32_t u32;
	uint64_t u64;
	uint32_t pow2;
	char *kind;
	struct fb_json_strings names;
	struct fb_uuid uuid;
	int odd; /* custom */
};

static int odd_decode(const struct fb_json_val *v, void *out, struct fb_err *err)
{
	uint64_t x;

	if (fb_json_val_uint64(v, &x) || x % 2 == 0) {
		char *d = fb_json_val_dump(v);

		fb_err_set(err, "must be an odd number, got %s", d);
		free(d);
		return -EINVAL;
	}
	*(int *)out = (int)x;
	return 0;
}

static const char *const kinds[] = {"a", "b", NULL};

static const struct fb_json_field fields[] = {
	{.name = "name", .offset = offsetof(struct params, name), .type = FB_JSON_STRING, .min = 1,
	 .max = 8, .hint = "a short name"},
	{.name = "on", .offset = offsetof(struct params, on), .type = FB_JSON_BOOL, .optional = true,
	 .hint = "true or false"},
	{.name = "u32", .offset = offsetof(struct params, u32), .type = FB_JSON_U32, .optional = true,
	 .min = 1, .max = 10, .hint = "1 to 10"},
	{.name = "u64", .offset = offsetof(struct params, u64), .type = FB_JSON_U64, .optional = true,
	 .hint = "a count"},
	{.name = "pow2", .offset = offsetof(struct params, pow2), .type = FB_JSON_U32, .optional = true,
	 .power_of_two = true, .hint = "a power of two"},
	{.name = "kind", .offset = offsetof(struct params, kind), .type = FB_JSON_STRING,
	 .optional = true, .choices = kinds, .hint = "a or b"},
	{.name = "names", .offset = offsetof(struct params, names), .type = FB_JSON_STRING_ARRAY,
	 .optional = true, .max = 2, .hint = "up to two names"},
	{.name = "uuid", .offset = offsetof(struct params, uuid), .type = FB_JSON_UUID,
	 .optional = true, .hint = "a uuid"},
	{.name = "odd", .offset = offsetof(struct params, odd), .type = FB_JSON_CUSTOM,
	 .optional = true, .decode = odd_decode, .hint = "an odd number"},
};

/* Decodes text; returns rc, with the message in err. */
static int decode(const char *text, struct params *p, struct fb_err *err)
{
	struct fb_json_val *v = fb_json_parse(text, strlen(text), err);
	int rc;

	if (!v)
		th_fail(__FILE__, __LINE__, "%s: %s", text, err->msg);
	memset(p, 0, sizeof(*p));
	rc = fb_json_decode_object(v, "test_method", fields, FB_JSON_FIELD_COUNT(fields), p, err);
	fb_json_val_free(v);
	return rc;
}

static void failing(const char *text, int want, const char *msg)
{
	struct params p;
	struct fb_err err = {{0}};

	CHECK_EQ(decode(text, &p, &err), want);
	if (strcmp(err.msg, msg) != 0)
		th_fail(__FILE__, __LINE__, "%s:\n got  %s\n want %s", text, err.msg, msg);
}

/* Params that do not decode: -EINVAL (fb_rpc_call answers -32602). */
static void bad(const char *text, const char *msg)
{
	failing(text, -EINVAL, msg);
}

/* A decoded value outside its field's range: -ERANGE (fb_rpc_call answers -EINVAL, SPDK's -22). */
static void refused(const char *text, const char *msg)
{
	failing(text, -ERANGE, msg);
}

TEST(decoder)
{
	struct params p;
	struct fb_err err;
	char us[FB_UUID_STR_LEN];

	CHECK_OK(decode("{\"name\":\"n1\",\"on\":true,\"u32\":10,\"u64\":9223372036854775807,"
			"\"pow2\":64,\"kind\":\"b\",\"names\":[\"x\",\"y\"],"
			"\"uuid\":\"0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0\",\"odd\":7}",
			&p, &err));
	CHECK(strcmp(p.name, "n1") == 0 && p.on && p.u32 == 10 && p.pow2 == 64);
	CHECK(strcmp(p.kind, "b") == 0 && p.names.n == 2 && strcmp(p.names.v[1], "y") == 0);
	CHECK(p.odd == 7);
	fb_uuid_fmt(&p.uuid, us);
	CHECK(strcmp(us, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0") == 0);
	fb_json_decoded_free(fields, FB_JSON_FIELD_COUNT(fields), &p);
	CHECK(p.name == NULL && p.names.v == NULL);

	bad("{}", "Missing required parameter 'name'. Fix: add \"name\": a short name.");
	bad("null", "Missing required parameter 'name'. Fix: add \"name\": a short name.");
	bad("{\"name\":\"n\",\"zz\":1}", "Unknown parameter 'zz'. Fix: remove it; test_method accepts "
	    "name, on, u32, u64, pow2, kind, names, uuid, odd.");
	bad("[1]", "test_method takes named params: send \"params\" as an object with name, on, u32, "
	    "u64, pow2, kind, names, uuid, odd, not an array");
	bad("{\"name\":42}", "Invalid parameter 'name': must be a string, got the number 42. Fix: pass a short name.");
	refused("{\"name\":\"\"}", "Invalid parameter 'name': must NOT have fewer than 1 characters, got \"\". "
	    "Fix: pass a short name.");
	bad("{\"name\":\"n\",\"on\":1}", "Invalid parameter 'on': must be a boolean, got the number 1. Fix: pass true or false.");
	bad("{\"name\":\"n\",\"u32\":1.5}", "Invalid parameter 'u32': must be an integer, got the non-integer 1.5. Fix: pass 1 to 10.");
	refused("{\"name\":\"n\",\"u32\":0}", "Invalid parameter 'u32': must be >= 1, got 0. Fix: pass 1 to 10.");
	refused("{\"name\":\"n\",\"u32\":11}", "Invalid parameter 'u32': must be <= 10, got 11. Fix: pass 1 to 10.");
	bad("{\"name\":\"n\",\"u32\":-3}", "Invalid parameter 'u32': must be >= 1, got -3. Fix: pass 1 to 10.");
	bad("{\"name\":\"n\",\"u32\":\"3\"}", "Invalid parameter 'u32': must be an integer, got the string \"3\". Fix: pass 1 to 10.");
	refused("{\"name\":\"n\",\"pow2\":3}", "Invalid parameter 'pow2': must be a power of two, got 3. Fix: pass a power of two.");
	bad("{\"name\":\"n\",\"kind\":\"c\"}", "Invalid parameter 'kind': must be one of \"a\", \"b\", got \"c\". Fix: pass a or b.");
	bad("{\"name\":\"n\",\"names\":[\"x\",3]}", "Invalid parameter 'names[1]': must be a string, got the number 3. Fix: pass up to two names.");
	refused("{\"name\":\"n\",\"names\":[\"x\",\"y\",\"z\"]}", "Invalid parameter 'names': must NOT have more than 2 items, got 3. Fix: pass up to two names.");
	bad("{\"name\":\"n\",\"uuid\":\"x\"}", "Invalid parameter 'uuid': must be a UUID (8-4-4-4-12 hex digits), got \"x\". Fix: pass a uuid.");
	bad("{\"name\":\"n\",\"odd\":4}", "Invalid parameter 'odd': must be an odd number, got 4. Fix: pass an odd number.");
	/* A parse error names where. */
	CHECK(fb_json_parse("{\"a\":", 5, &err) == NULL);
	CHECK(strncmp(err.msg, "JSON parse error at line 1 column", 33) == 0);
}

struct seen {
	bool malloc_create, core_any;
};

static int method_seen(const char *method, const char *module, void *arg)
{
	struct seen *s = arg;

	if (strcmp(method, "bdev_malloc_create") == 0 && strcmp(module, "malloc") == 0)
		s->malloc_create = true;
	if (strcmp(module, "core") == 0)
		s->core_any = true;
	return 0;
}

TEST(rpc_call)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	struct seen seen = {0};
	char *res = NULL;

	CHECK_EQ(fb_rpc_call(e, "no_such_method", NULL, &res, &err), FB_RPC_METHOD_NOT_FOUND);
	CHECK(strstr(err.msg, "no_such_method") != NULL && res == NULL);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"num_blocks\":", &res, &err), FB_RPC_INVALID_PARAMS);
	CHECK(strstr(err.msg, "JSON parse error") != NULL);
	/* SPDK's codes: params that do not decode are -32602, a decoded value refused is -EINVAL. */
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"num_blocks\":\"8\",\"block_size\":512}", &res, &err),
		 FB_RPC_INVALID_PARAMS);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"num_blocks\":0,\"block_size\":512}", &res, &err), -EINVAL);
	CHECK(strstr(err.msg, "Invalid parameter 'num_blocks': must be >= 1") != NULL && res == NULL);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"num_blocks\":8,\"block_size\":512}", &res, &err), 0);
	CHECK(strcmp(res, "\"Malloc0\"") == 0);
	free(res);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"num_blocks\":8,\"block_size\":512}", &res, &err), 0);
	CHECK(strcmp(res, "\"Malloc1\"") == 0);
	free(res);
	/* The handler's errno comes back as it is, with its message. */
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_create", "{\"name\":\"Malloc0\",\"num_blocks\":8,\"block_size\":512}",
			     &res, &err), -EEXIST);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_delete", "{\"name\":\"nope\"}", &res, &err), -ENODEV);
	CHECK_EQ(fb_rpc_call(e, "bdev_malloc_delete", "{\"name\":\"Malloc1\"}", &res, &err), 0);
	CHECK(strcmp(res, "true") == 0);
	free(res);
	CHECK_EQ(fb_rpc_foreach_method(method_seen, &seen), 0);
	CHECK(seen.malloc_create && seen.core_any);
	fb_engine_destroy(e);
}

TEST(uuids)
{
	struct fb_uuid a, b;
	char s[FB_UUID_STR_LEN];

	fb_uuid_generate(&a);
	fb_uuid_generate(&b);
	CHECK(memcmp(&a, &b, sizeof(a)) != 0 && !fb_uuid_is_null(&a));
	fb_uuid_fmt(&a, s);
	CHECK(s[14] == '4' && strchr("89ab", s[19]) != NULL);
	CHECK_EQ(fb_uuid_parse(s, &b), 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK_EQ(fb_uuid_parse("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f", &b), -EINVAL);
	CHECK_EQ(fb_uuid_parse("0f1e2d3c+4b5a-4978-8695-a4b3c2d1e0f0", &b), -EINVAL);
	CHECK_EQ(fb_uuid_parse("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fg", &b), -EINVAL);
}

struct notes {
	uint64_t ids[16];
	unsigned n;
};

static int note_cb(const struct fb_notification *n, void *arg)
{
	struct notes *ns = arg;

	CHECK(strcmp(n->type, "test_event") == 0);
	ns->ids[ns->n++] = n->id;
	return 0;
}

TEST(notify_ring)
{
	struct fb_engine_opts o;
	struct fb_engine *e;
	struct fb_err err;
	struct notes ns = {.n = 0};
	char ctx[32];

	fb_engine_opts_init(&o);
	o.notify_ring_entries = 4;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	for (int i = 1; i <= 10; i++) {
		snprintf(ctx, sizeof(ctx), "{\"n\":%d}", i);
		fb_notify(e, "test_event", ctx);
	}
	/* The ring keeps the newest 4; the 6 older ones are counted as dropped. */
	CHECK_EQ(fb_notify_foreach(e, 0, 0, note_cb, &ns), 6);
	CHECK_EQ(ns.n, 4);
	CHECK(ns.ids[0] == 7 && ns.ids[3] == 10);
	ns.n = 0;
	fb_notify_foreach(e, 8, 1, note_cb, &ns);
	CHECK(ns.n == 1 && ns.ids[0] == 9);
	fb_engine_destroy(e);
}

struct timers {
	struct fb_timer t[4];
	int order[4];
	atomic_int fired;
	sem_t done;
	uint64_t armed_ns;
};

static struct timers g_t;

static void timer_fn(struct fb_timer *t)
{
	int i = (int)(t - g_t.t);

	CHECK(!t->armed);
	g_t.order[atomic_fetch_add(&g_t.fired, 1)] = i;
	if (atomic_load(&g_t.fired) == 3)
		sem_post(&g_t.done);
}

static void timers_msg(void *arg)
{
	struct fb_reactor *r = fb_reactor_current();
	static const uint64_t ms[4] = {30, 10, 20, 5};

	(void)arg;
	g_t.armed_ns = fb_now_ns();
	for (int i = 0; i < 4; i++) {
		fb_timer_init(&g_t.t[i], timer_fn);
		fb_timer_arm(r, &g_t.t[i], ms[i] * 1000000u);
	}
	fb_timer_cancel(&g_t.t[3]);   /* cancelled: never fires */
	fb_timer_cancel(&g_t.t[3]);   /* and again: harmless */
	fb_timer_arm(r, &g_t.t[0], 40 * 1000000u); /* re-armed later */
}

TEST(timers)
{
	/* No polling: the reactor sleeps, and only its timers wake it. */
	struct fb_engine_opts o;
	struct fb_engine *e;
	struct fb_err err;
	struct timespec ts;

	fb_engine_opts_init(&o);
	o.poll_us = 0;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	sem_init(&g_t.done, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 0), timers_msg, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	CHECK(sem_timedwait(&g_t.done, &ts) == 0);
	CHECK(fb_now_ns() - g_t.armed_ns >= 40 * 1000000u);
	CHECK(g_t.order[0] == 1 && g_t.order[1] == 2 && g_t.order[2] == 0);
	usleep(20000);
	CHECK_EQ(atomic_load(&g_t.fired), 3);
	sem_destroy(&g_t.done);
	fb_engine_destroy(e);
}

struct bufs {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	void *b[3];
	struct fb_io_wait_entry w;
	atomic_int woken;
	sem_t done;
};

static void bufs_woken(void *arg)
{
	struct bufs *b = arg;

	atomic_fetch_add(&b->woken, 1);
	b->b[2] = fb_io_channel_get_buf(b->ch, 32768);
	CHECK(b->b[2] != NULL);
	CHECK(((uintptr_t)b->b[2] & 4095) == 0);
	fb_io_channel_put_buf(b->ch, b->b[1], 32768);
	fb_io_channel_put_buf(b->ch, b->b[2], 32768);
	fb_put_io_channel(b->ch);
	sem_post(&b->done);
}

static void bufs_msg(void *arg)
{
	struct bufs *b = arg;

	b->ch = fb_bdev_get_io_channel(b->desc);
	CHECK(b->ch != NULL);
	b->b[0] = fb_io_channel_get_buf(b->ch, 20000);  /* a 32 KiB class */
	b->b[1] = fb_io_channel_get_buf(b->ch, 32768);
	CHECK(b->b[0] && b->b[1]);
	CHECK(fb_io_channel_get_buf(b->ch, 4096) == NULL);              /* budget spent */
	CHECK(fb_io_channel_get_buf(b->ch, (64u << 20) + 1) == NULL);    /* too large */
	b->w.cb = bufs_woken;
	b->w.arg = b;
	fb_io_channel_queue_wait(b->ch, &b->w);
	/* Freeing one wakes the waiter, on a later loop iteration. */
	fb_io_channel_put_buf(b->ch, b->b[0], 20000);
	CHECK_EQ(atomic_load(&b->woken), 0);
}

TEST(channel_buffers)
{
	struct fb_engine_opts o;
	struct fb_engine *e;
	struct fb_err err;
	struct bufs b = {0};
	struct timespec ts;

	fb_engine_opts_init(&o);
	o.bdev_buf_limit = 65536;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	CHECK_OK(th_malloc(e, "M0", 8, 512, &err));
	CHECK_OK(th_open(e, "M0", false, &b.desc, &err));
	sem_init(&b.done, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 0), bufs_msg, &b);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	CHECK(sem_timedwait(&b.done, &ts) == 0);
	CHECK_EQ(atomic_load(&b.woken), 1);
	sem_destroy(&b.done);
	fb_bdev_close(b.desc);
	fb_engine_destroy(e);
}

int main(void)
{
	RUN(writer);
	RUN(decoder);
	RUN(rpc_call);
	RUN(uuids);
	RUN(notify_ring);
	RUN(timers);
	RUN(channel_buffers);
	fprintf(stderr, "json_test: ok\n");
	return 0;
}
