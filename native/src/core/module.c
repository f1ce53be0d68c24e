/* Module registry, the generic RPC entry point, UUIDs and notifications. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"
#include "rpc_core.h"

/* ---------------------------------------------------------- registry */

/* Process-wide, filled by constructors before main and read by engines. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fb_module_ent *reg;
static unsigned reg_n, reg_cap;

void fb_bdev_module_list_add(const struct fb_bdev_module *m)
{
	struct fb_module_ent *ent;
	size_t sz;

	if (!m || !m->name)
		return;
	pthread_mutex_lock(&reg_lock);
	for (unsigned i = 0; i < reg_n; i++) {
		if (reg[i].m == m || strcmp(reg[i].c.name, m->name) == 0) {
			pthread_mutex_unlock(&reg_lock);
			return;
		}
	}
	if (reg_n == reg_cap) {
		unsigned cap = reg_cap ? reg_cap * 2 : 16;
		struct fb_module_ent *n = realloc(reg, cap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&reg_lock);
			fprintf(stderr, "flexbso error: out of memory registering module '%s'\n", m->name);
			return;
		}
		reg = n;
		reg_cap = cap;
	}
	ent = &reg[reg_n++];
	memset(ent, 0, sizeof(*ent));
	ent->m = m;
	/* A module built against an older, shorter struct: the rest stays zero. */
	sz = m->size && m->size < sizeof(ent->c) ? m->size : sizeof(ent->c);
	memcpy(&ent->c, m, sz);
	ent->c.size = sizeof(ent->c);
	pthread_mutex_unlock(&reg_lock);
}

int fb_modules_init(struct fb_engine *e, struct fb_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&reg_lock);
	e->nmodules = reg_n;
	e->modules = calloc(reg_n ? reg_n : 1, sizeof(*e->modules));
	e->module_ctx = calloc(reg_n ? reg_n : 1, sizeof(*e->module_ctx));
	if (e->modules)
		memcpy(e->modules, reg, reg_n * sizeof(*reg));
	pthread_mutex_unlock(&reg_lock);
	if (!e->modules || !e->module_ctx) {
		fb_err_set(err, "out of memory initializing bdev modules");
		e->nmodules = 0;
		return -ENOMEM;
	}
	for (unsigned i = 0; i < e->nmodules; i++) {
		const struct fb_bdev_module *c = &e->modules[i].c;

		if (!c->init)
			continue;
		rc = c->init(e, &e->module_ctx[i], err);
		if (rc) {
			char msg[sizeof(err->msg)];

			snprintf(msg, sizeof(msg), "%s", err ? err->msg : "");
			fb_err_set(err, "bdev module '%s' failed to initialize: %s", c->name, msg);
			/* Those initialized before it are finished by fb_modules_fini. */
			e->nmodules = i;
			return rc;
		}
	}
	return 0;
}

void fb_modules_fini(struct fb_engine *e)
{
	for (unsigned i = e->nmodules; i-- > 0;) {
		const struct fb_bdev_module *c = &e->modules[i].c;

		if (c->fini)
			c->fini(e, e->module_ctx[i]);
	}
	free(e->modules);
	free(e->module_ctx);
	e->modules = NULL;
	e->module_ctx = NULL;
	e->nmodules = 0;
}

void *fb_bdev_module_get_ctx(struct fb_engine *e, const struct fb_bdev_module *m)
{
	for (unsigned i = 0; i < e->nmodules; i++)
		if (e->modules[i].m == m)
			return e->module_ctx[i];
	return NULL;
}

const struct fb_module_ent *fb_module_find(struct fb_engine *e, const struct fb_bdev_module *m)
{
	for (unsigned i = 0; i < e->nmodules; i++)
		if (e->modules[i].m == m)
			return &e->modules[i];
	return NULL;
}

/* --------------------------------------------------------------- RPC */

/* Finds method in the core's table, then each registered module's. */
static const struct fb_rpc_method *rpc_find(struct fb_engine *e, const char *method)
{
	const struct fb_rpc_method *core = fb_rpc_core_methods();

	for (size_t i = 0; i < fb_rpc_core_nmethods(); i++)
		if (strcmp(core[i].name, method) == 0)
			return &core[i];
	for (unsigned i = 0; i < e->nmodules; i++) {
		const struct fb_bdev_module *c = &e->modules[i].c;

		for (size_t k = 0; c->rpcs && k < c->nrpcs; k++)
			if (c->rpcs[k].name && strcmp(c->rpcs[k].name, method) == 0)
				return &c->rpcs[k];
	}
	return NULL;
}

int fb_rpc_call(struct fb_engine *e, const char *method, const char *params_json, char **result,
		struct fb_err *err)
{
	const struct fb_rpc_method *m;
	struct fb_json_val *params = NULL;
	struct fb_json_writer *w = NULL;
	void *p = NULL;
	bool decoded = false;
	int rc;

	if (result)
		*result = NULL;
	if (err)
		err->msg[0] = '\0';
	m = method ? rpc_find(e, method) : NULL;
	if (!m) {
		fb_err_set(err, "Method not found: %s. Fix: call rpc_get_methods for the list.",
			   method ? method : "(null)");
		return FB_RPC_METHOD_NOT_FOUND;
	}
	if (params_json && *params_json) {
		params = fb_json_parse(params_json, strlen(params_json), err);
		if (!params)
			return FB_RPC_INVALID_PARAMS;
	}
	p = calloc(1, m->params_size ? m->params_size : 1);
	if (!p) {
		fb_err_set(err, "out of memory calling %s", method);
		rc = -ENOMEM;
		goto out;
	}
	if (m->params_init)
		m->params_init(p);
	rc = fb_json_decode_object(params, method, m->params, m->params ? m->nparams : 0, p, err);
	if (rc) {
		/* SPDK: params that do not decode are -32602; a decoded value the
		 * operation refuses is the create's -EINVAL. */
		rc = rc == -ENOMEM ? rc : rc == -ERANGE ? -EINVAL : FB_RPC_INVALID_PARAMS;
		goto out;
	}
	decoded = true;
	w = fb_json_writer_new();
	if (!w) {
		fb_err_set(err, "out of memory calling %s", method);
		rc = -ENOMEM;
		goto out;
	}
	rc = m->handler(e, p, w, err);
	if (rc) {
		if (err && !err->msg[0])
			fb_err_set(err, "%s failed: %s", method, strerror(rc < 0 ? -rc : rc));
		fb_json_writer_finish(w, NULL, NULL);
		w = NULL;
		goto out;
	}
	rc = fb_json_writer_finish(w, result, NULL);
	w = NULL;
	if (rc)
		fb_err_set(err, "%s wrote an invalid JSON result (a bug in its module)", method);
out:
	if (decoded && m->params)
		fb_json_decoded_free(m->params, m->nparams, p);
	free(p);
	fb_json_val_free(params);
	return rc;
}

int fb_rpc_foreach_method(fb_rpc_method_info_fn fn, void *arg)
{
	const struct fb_rpc_method *core = fb_rpc_core_methods();
	struct fb_module_ent *snap;
	unsigned n;
	int rc = 0;

	for (size_t i = 0; !rc && i < fb_rpc_core_nmethods(); i++)
		rc = fn(core[i].name, "core", arg);
	pthread_mutex_lock(&reg_lock);
	n = reg_n;
	snap = malloc((n ? n : 1) * sizeof(*snap));
	if (snap)
		memcpy(snap, reg, n * sizeof(*snap));
	pthread_mutex_unlock(&reg_lock);
	if (!snap)
		return -ENOMEM;
	for (unsigned i = 0; !rc && i < n; i++)
		for (size_t k = 0; !rc && snap[i].c.rpcs && k < snap[i].c.nrpcs; k++)
			rc = fn(snap[i].c.rpcs[k].name, snap[i].c.name, arg);
	free(snap);
	return rc;
}

/* -------------------------------------------------------------- uuid */

void fb_uuid_generate(struct fb_uuid *out)
{
	size_t got = 0;

	while (got < sizeof(out->b)) {
		ssize_t n = getrandom(out->b + got, sizeof(out->b) - got, 0);

		if (n > 0)
			got += (size_t)n;
		else if (n < 0 && errno != EINTR && errno != EAGAIN)
			abort(); /* no entropy source at all: nothing sane to hand out */
	}
	out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x40); /* version 4 */
	out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

void fb_uuid_fmt(const struct fb_uuid *u, char out[FB_UUID_STR_LEN])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (unsigned i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u->b[i] >> 4];
		out[o++] = hex[u->b[i] & 15];
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fb_uuid_parse(const char *s, struct fb_uuid *out)
{
	struct fb_uuid u;
	unsigned b = 0;

	if (!s || strlen(s) != 36)
		return -EINVAL;
	for (unsigned i = 0; i < 36;) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		hi = hexval(s[i]);
		lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		u.b[b++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	*out = u;
	return 0;
}

bool fb_uuid_is_null(const struct fb_uuid *u)
{
	for (unsigned i = 0; i < 16; i++)
		if (u->b[i])
			return false;
	return true;
}

/* ------------------------------------------------------ notifications */

void fb_notify(struct fb_engine *e, const char *type, const char *ctx_json)
{
	char *t = strdup(type ? type : "");
	char *c = strdup(ctx_json ? ctx_json : "{}");
	unsigned cap = e->opts.notify_ring_entries;
	struct fb_notify_ent *slot;

	pthread_mutex_lock(&e->notify_lock);
	if (!t || !c || !e->notify) {
		/* Out of memory: the notification is lost, and counted. */
		e->notify_next_id++;
		e->notify_dropped++;
		pthread_mutex_unlock(&e->notify_lock);
		free(t);
		free(c);
		return;
	}
	slot = &e->notify[(e->notify_next_id - 1) % cap];
	if (slot->id) {
		e->notify_dropped++; /* the ring is full: the oldest goes */
		free(slot->type);
		free(slot->ctx);
	}
	slot->id = e->notify_next_id++;
	slot->type = t;
	slot->ctx = c;
	pthread_mutex_unlock(&e->notify_lock);
}

uint64_t fb_notify_foreach(struct fb_engine *e, uint64_t since_id, size_t max,
			   fb_notification_fn fn, void *arg)
{
	unsigned cap = e->opts.notify_ring_entries;
	uint64_t dropped, first, id;
	size_t done = 0;

	pthread_mutex_lock(&e->notify_lock);
	dropped = e->notify_dropped;
	first = e->notify_next_id > cap ? e->notify_next_id - cap : 1;
	if (since_id + 1 > first)
		first = since_id + 1;
	for (id = first; e->notify && id < e->notify_next_id && (!max || done < max); id++) {
		struct fb_notify_ent *s = &e->notify[(id - 1) % cap];
		struct fb_notification n;

		if (s->id != id)
			continue; /* lost to memory */
		n.id = s->id;
		n.type = s->type;
		n.ctx_json = s->ctx;
		done++;
		if (fn(&n, arg))
			break;
	}
	pthread_mutex_unlock(&e->notify_lock);
	return dropped;
}

void fb_notify_fini(struct fb_engine *e)
{
	unsigned cap = e->opts.notify_ring_entries;

	for (unsigned i = 0; e->notify && i < cap; i++) {
		free(e->notify[i].type);
		free(e->notify[i].ctx);
	}
	free(e->notify);
	e->notify = NULL;
}
