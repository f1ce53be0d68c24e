/* Reactors: the engine's threads. Internal API for modules and exports.
 *
 * Changes (2026-11-25, core): added fb_deferred + fb_reactor_defer (run work
 * later in the loop without allocating), fb_reactor_submit, and engine
 * subsystems (fb_engine_subsys_register/get: per-engine state of an export
 * module, torn down by fb_engine_destroy before bdevs are deleted).
 *
 * Each reactor is a pthread owning one io_uring and a message queue (MPSC,
 * woken by an eventfd that the ring polls). Everything a reactor owns —
 * connections, channels, rings — is touched only by that reactor, so the I/O
 * path takes no locks. An idle reactor polls for poll_us and then sleeps in
 * io_uring_wait_cqe.
 */
#ifndef FLEXBSO_REACTOR_H
#define FLEXBSO_REACTOR_H

#include <liburing.h>
#include <stdint.h>

#include "flexbso.h"

#ifdef __cplusplus
extern "C" {
#endif

struct fb_reactor;

/* A ring operation: put `&op` in sqe user_data; when the CQE arrives the
 * reactor calls op->cb(op, cqe->res, cqe->flags). Multishot ops get one call
 * per CQE (IORING_CQE_F_MORE set while more will come). Embed in your struct
 * and recover it with container_of-style arithmetic. */
struct fb_uring_op {
	void (*cb)(struct fb_uring_op *op, int res, uint32_t flags);
};

typedef void (*fb_msg_fn)(void *arg);

struct fb_reactor *fb_reactor_current(void);            /* NULL off reactor threads */
struct fb_reactor *fb_engine_get_reactor(struct fb_engine *e, unsigned index);
unsigned fb_reactor_index(const struct fb_reactor *r);
/* The options the engine was created with (defaults filled in). */
const struct fb_engine_opts *fb_engine_get_opts(const struct fb_engine *e);
struct fb_engine *fb_reactor_engine(const struct fb_reactor *r);

/* Runs fn(arg) on reactor r, soon (any thread; never fails: the queue grows). */
void fb_reactor_send(struct fb_reactor *r, fb_msg_fn fn, void *arg);
/* Runs fn(arg) on every reactor and returns when all have run it (control
 * threads only: never call from a reactor). */
void fb_engine_run_on_all(struct fb_engine *e, fb_msg_fn fn, void *arg);
/* Runs fn(arg) on reactor r and waits for it (control threads only). */
void fb_reactor_run_sync(struct fb_reactor *r, fb_msg_fn fn, void *arg);

/* A free SQE on the current reactor's ring (submits the queue to make room
 * when full; never NULL). Submission happens at the end of the reactor loop
 * iteration, batched. */
struct io_uring_sqe *fb_reactor_get_sqe(struct fb_reactor *r);

/* Called from the reactor loop each iteration, before it sleeps; return
 * non-zero when it did work (keeps the reactor polling). Register and
 * unregister on r's own thread (e.g. from a message); unregistering from
 * inside the poller itself is fine. */
typedef int (*fb_poller_fn)(void *arg);
struct fb_poller;
struct fb_poller *fb_poller_register(struct fb_reactor *r, fb_poller_fn fn, void *arg);
void fb_poller_unregister(struct fb_poller *p);

/* Deferred work: an intrusive node (embed it, no allocation) whose fn runs
 * on the reactor's next loop iteration. Used to complete I/O outside the
 * submit call so that resubmitting from a callback cannot recurse. Only on
 * r's own thread. */
struct fb_deferred {
	struct fb_deferred *next;
	void (*fn)(struct fb_deferred *d);
};
void fb_reactor_defer(struct fb_reactor *r, struct fb_deferred *d);

/* Submits the SQEs prepared so far now instead of at the end of the loop
 * iteration (rarely needed). Returns io_uring_submit's result. */
int fb_reactor_submit(struct fb_reactor *r);

/* Engine subsystems (e.g. "nbd"): per-engine state owned by a module.
 * fb_engine_destroy calls fini(e, ctx) for each, newest first, on the
 * destroying control thread, before it deletes bdevs; fini must close every
 * descriptor the subsystem holds. register returns -EEXIST if the name is
 * taken; get returns NULL if absent. Control threads only. */
typedef void (*fb_subsys_fini_fn)(struct fb_engine *e, void *ctx);
int fb_engine_subsys_register(struct fb_engine *e, const char *name, void *ctx,
			      fb_subsys_fini_fn fini);
void *fb_engine_subsys_get(struct fb_engine *e, const char *name);
/* Serializes get-then-register across control threads. */
void fb_engine_subsys_lock(struct fb_engine *e);
void fb_engine_subsys_unlock(struct fb_engine *e);

/* Monotonic clock in nanoseconds (cheap; used for latency stats). */
uint64_t fb_now_ns(void);

/* Log through the engine's log callback (printf-style). */
void fb_log(struct fb_engine *e, enum fb_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
