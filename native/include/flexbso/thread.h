/* Threads, messages, deferred work, timers and notifications: the portable
 * services a bdev module or export uses from the engine's reactors.
 *
 * Nothing here exposes io_uring or the reactor's internals, so a module
 * written against thread.h + bdev_module.h can be built against SPDK through
 * a thin adapter (fb_reactor -> spdk_thread, fb_reactor_send ->
 * spdk_thread_send_msg, fb_timer -> spdk_poller with a period,
 * fb_notify -> spdk_notify_send). io_uring users (the file bdev, exports)
 * include reactor.h as well.
 *
 * Thread roles: reactors run I/O and never block; control threads (the
 * engine process's RPC thread, C tests, tools) run create/delete/RPC calls
 * and may block waiting for reactors.
 */
#ifndef FLEXBSO_THREAD_H
#define FLEXBSO_THREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "flexbso.h"

#ifdef __cplusplus
extern "C" {
#endif

struct fb_reactor;

typedef void (*fb_msg_fn)(void *arg);

struct fb_reactor *fb_reactor_current(void);            /* NULL off reactor threads */
struct fb_reactor *fb_engine_get_reactor(struct fb_engine *e, unsigned index);
unsigned fb_reactor_index(const struct fb_reactor *r);
struct fb_engine *fb_reactor_engine(const struct fb_reactor *r);
/* The options the engine was created with (defaults filled in). */
const struct fb_engine_opts *fb_engine_get_opts(const struct fb_engine *e);

/* Runs fn(arg) on reactor r, soon (any thread; never fails: the queue grows). */
void fb_reactor_send(struct fb_reactor *r, fb_msg_fn fn, void *arg);
/* The same with a node the caller owns (embed it: no allocation, for I/O
 * paths). The node stays the caller's; it must stay valid until fn starts,
 * and fn may send it again. */
struct fb_msg_node {
	struct fb_msg_node *next;       /* engine-owned from here down */
	fb_msg_fn fn;
	void *arg;
	bool heap;
};
void fb_reactor_send_node(struct fb_reactor *r, struct fb_msg_node *n, fb_msg_fn fn, void *arg);
/* Runs fn(arg) on every reactor and returns when all have run it (control
 * threads only: never call from a reactor). */
void fb_engine_run_on_all(struct fb_engine *e, fb_msg_fn fn, void *arg);
/* Runs fn(arg) on reactor r and waits for it (control threads only). */
void fb_reactor_run_sync(struct fb_reactor *r, fb_msg_fn fn, void *arg);

/* Deferred work: an intrusive node (embed it, no allocation) whose fn runs
 * on the reactor's next loop iteration. Used to complete I/O outside the
 * submit call so that resubmitting from a callback cannot recurse. Only on
 * r's own thread. */
struct fb_deferred {
	struct fb_deferred *next;
	void (*fn)(struct fb_deferred *d);
};
void fb_reactor_defer(struct fb_reactor *r, struct fb_deferred *d);

/* Timers: intrusive one-shot timers on a reactor (a periodic timer re-arms
 * itself from fn). A sleeping reactor wakes for its nearest timer; timers
 * never make an idle reactor poll. Arm, re-arm and cancel only on the
 * timer's reactor; fn runs there. Resolution is the reactor's wake-up
 * latency (tens of microseconds). */
struct fb_timer {
	struct fb_timer *next;          /* engine-owned from here down */
	struct fb_reactor *r;
	uint64_t deadline_ns;
	bool armed;
	void (*fn)(struct fb_timer *t);
};
void fb_timer_init(struct fb_timer *t, void (*fn)(struct fb_timer *t));
/* (Re)arms t to fire delay_ns from now on reactor r (the current one). */
void fb_timer_arm(struct fb_reactor *r, struct fb_timer *t, uint64_t delay_ns);
/* Safe on a timer that is not armed. */
void fb_timer_cancel(struct fb_timer *t);

/* Offload (SPDK's accel framework, software path): CPU-heavy work, such as
 * the memory copy of a large read or write, runs on a small pool of engine
 * worker threads, so one busy queue is not limited to its reactor's core;
 * done then runs back on the reactor that submitted it. Intrusive: embed
 * the task in the I/O context (no allocation per task). work runs on a
 * worker thread and may touch only memory the task owns (no engine calls,
 * no reactor state). Workers sleep when there is nothing to do; they are
 * started on first use, one per online CPU the reactors leave free, or
 * fb_engine_opts.offload_workers (at most FB_OFFLOAD_MAX_WORKERS); with
 * none, work runs inline on the submitting reactor.
 * Worth it only for work of tens of microseconds or more: a hand-off costs
 * a thread wake-up, so small work stays inline. */
#define FB_OFFLOAD_MAX_WORKERS 8u
struct fb_offload {
	void (*work)(struct fb_offload *o);  /* on a worker thread */
	void (*done)(struct fb_offload *o);  /* on the submitting reactor, after work */
	struct fb_offload *next;             /* engine-owned from here down */
	struct fb_reactor *r;
};
/* Queues o from reactor r (the current one). When every worker is busy and
 * work already waits (or no worker could be started), work runs inline on
 * r instead; done always runs on r's next loop iteration or later: it
 * never fails. */
void fb_offload_submit(struct fb_reactor *r, struct fb_offload *o);

/* Monotonic clock in nanoseconds (cheap; used for latency stats). */
uint64_t fb_now_ns(void);

/* Log through the engine's log callback (printf-style; any thread). */
void fb_log(struct fb_engine *e, enum fb_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Notifications (SPDK's notify library): an event the control plane reads,
 * e.g. type "raid_safe_read_repair" with ctx
 * {"array":"r0","member":"EE_M1","lba":4096,"action":"rewritten"}.
 * ctx_json is a JSON value (copied): an object, or the bdev name string of
 * the core's bdev_register / bdev_unregister, as SPDK's. Any thread,
 * reactors included: it never fails the I/O that raised it (when the ring
 * is full the oldest notification is dropped and counted) and only takes a
 * short internal lock. Read with fb_notify_foreach. */
void fb_notify(struct fb_engine *e, const char *type, const char *ctx_json);

#ifdef __cplusplus
}
#endif
#endif
