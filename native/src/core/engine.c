/* Engine lifecycle, logging, subsystems. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define FB_DEFAULT_POLL_US 50
#define FB_DEFAULT_RING_ENTRIES 256

void fb_err_set(struct fb_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

void fb_engine_opts_init(struct fb_engine_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->reactors = 1;
	/* Idle vCPUs wake slowly here (~20 µs); a short spin before sleeping
	 * keeps QD1 latency low while costing nothing when truly idle. */
	opts->poll_us = FB_DEFAULT_POLL_US;
	opts->ring_entries = FB_DEFAULT_RING_ENTRIES;
}

uint64_t fb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *level_name(enum fb_log_level l)
{
	switch (l) {
	case FB_LOG_ERROR: return "error";
	case FB_LOG_WARN: return "warn";
	case FB_LOG_INFO: return "info";
	default: return "debug";
	}
}

void fb_log(struct fb_engine *e, enum fb_log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (e && e->opts.log) {
		e->opts.log(level, buf, e->opts.log_arg);
		return;
	}
	if (level <= FB_LOG_INFO)
		fprintf(stderr, "flexbso %s: %s\n", level_name(level), buf);
}

int fb_engine_create(const struct fb_engine_opts *opts, struct fb_engine **out, struct fb_err *err)
{
	struct fb_engine *e = NULL;
	int rc = 0;

	*out = NULL;
	if (!opts || opts->size == 0 || opts->size > sizeof(struct fb_engine_opts)) {
		fb_err_set(err, "opts.size must be sizeof(struct fb_engine_opts); call fb_engine_opts_init first");
		rc = -EINVAL;
		goto out;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		fb_err_set(err, "out of memory creating the engine");
		goto out;
	}
	fb_engine_opts_init(&e->opts);
	memcpy(&e->opts, opts, opts->size);
	e->opts.size = sizeof(e->opts);
	if (e->opts.reactors == 0)
		e->opts.reactors = 1;
	if (e->opts.reactors > 256) {
		fb_err_set(err, "reactors=%u is too many; use 1..256", e->opts.reactors);
		rc = -EINVAL;
		goto out;
	}
	if (e->opts.ring_entries == 0)
		e->opts.ring_entries = FB_DEFAULT_RING_ENTRIES;
	if (e->opts.ring_entries > 32768) {
		fb_err_set(err, "ring_entries=%u is too large; use up to 32768", e->opts.ring_entries);
		rc = -EINVAL;
		goto out;
	}
	if (e->opts.notify_ring_entries == 0)
		e->opts.notify_ring_entries = 4096;
	if (e->opts.bdev_buf_limit == 0) {
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
		uint64_t ram8 = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 8 : 1ull << 30;

		e->opts.bdev_buf_limit = ram8 < (1ull << 30) ? ram8 : (1ull << 30);
	}
	e->buf_limit = e->opts.bdev_buf_limit;
	atomic_init(&e->buf_used, 0);
	e->notify_next_id = 1;
	e->nreactors = e->opts.reactors;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	pthread_mutex_init(&e->notify_lock, NULL);
	pthread_mutex_init(&e->offload_lock, NULL);
	e->notify = calloc(e->opts.notify_ring_entries, sizeof(*e->notify));
	if (!e->notify || posix_memalign(&e->zero_buf, 4096, FB_ZERO_BUF_LEN) != 0) {
		e->zero_buf = NULL;
		rc = -ENOMEM;
		fb_err_set(err, "out of memory creating the engine");
		goto out;
	}
	memset(e->zero_buf, 0, FB_ZERO_BUF_LEN);
	rc = fb_reactor_init_all(e, err);
	if (rc)
		goto out;
	rc = fb_modules_init(e, err);
	if (rc)
		goto out;
	*out = e;
	e = NULL;
out:
	if (e) {
		if (e->modules)
			fb_modules_fini(e);
		if (e->reactors)
			fb_reactor_fini_all(e);
		if (e->nreactors) {
			pthread_mutex_destroy(&e->lock);
			pthread_cond_destroy(&e->cond);
			fb_notify_fini(e);
			pthread_mutex_destroy(&e->notify_lock);
			pthread_mutex_destroy(&e->offload_lock);
		}
		free(e->zero_buf);
		free(e);
	}
	return rc;
}

void fb_engine_destroy(struct fb_engine *e)
{
	struct fb_subsys *s, *next;

	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->destroying = true;
	s = e->subsys;
	e->subsys = NULL;
	pthread_mutex_unlock(&e->lock);
	/* Subsystems are pushed at the head, so this is newest first. */
	for (; s; s = next) {
		next = s->next;
		if (s->fini)
			s->fini(e, s->ctx);
		free(s);
	}
	fb_bdev_delete_all(e);
	fb_modules_fini(e);
	/* Workers first: one that just handed back its last task may still be
	 * writing to its reactor's eventfd, which fb_reactor_fini_all closes.
	 * No task is in flight: every bdev is deleted. */
	fb_offload_fini(e);
	fb_reactor_fini_all(e);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	fb_notify_fini(e);
	pthread_mutex_destroy(&e->notify_lock);
	pthread_mutex_destroy(&e->offload_lock);
	free(e->zero_buf);
	free(e);
}

unsigned fb_engine_reactor_count(const struct fb_engine *e)
{
	return e->nreactors;
}

uint64_t fb_engine_reactor_cpu_us(const struct fb_engine *e)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < e->nreactors; i++) {
		struct timespec ts;

		if (!e->reactors[i].thread_started)
			continue;
		if (clock_gettime(e->reactors[i].cpu_clock, &ts) == 0)
			sum += (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	}
	return sum;
}

int fb_engine_subsys_register(struct fb_engine *e, const char *name, void *ctx,
			      fb_subsys_fini_fn fini)
{
	struct fb_subsys *s;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	for (s = e->subsys; s; s = s->next) {
		if (strcmp(s->name, name) == 0) {
			rc = -EEXIST;
			goto out;
		}
	}
	if (strlen(name) >= sizeof(s->name)) {
		rc = -EINVAL;
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->ctx = ctx;
	s->fini = fini;
	s->next = e->subsys;
	e->subsys = s;
out:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

void *fb_engine_subsys_get(struct fb_engine *e, const char *name)
{
	void *ctx = NULL;

	pthread_mutex_lock(&e->lock);
	for (struct fb_subsys *s = e->subsys; s; s = s->next) {
		if (strcmp(s->name, name) == 0) {
			ctx = s->ctx;
			break;
		}
	}
	pthread_mutex_unlock(&e->lock);
	return ctx;
}

static pthread_mutex_t subsys_mutex = PTHREAD_MUTEX_INITIALIZER;

const struct fb_engine_opts *fb_engine_get_opts(const struct fb_engine *e)
{
	return &e->opts;
}

void fb_engine_subsys_lock(struct fb_engine *e)
{
	(void)e;
	pthread_mutex_lock(&subsys_mutex);
}

void fb_engine_subsys_unlock(struct fb_engine *e)
{
	(void)e;
	pthread_mutex_unlock(&subsys_mutex);
}
