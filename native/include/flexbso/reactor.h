/* Reactors: the engine's threads, io_uring side. For modules and exports
 * that drive the ring themselves (the file bdev, NBD, vhost-user-blk);
 * everything portable (messages, deferred work, timers, notifications) is
 * in thread.h, which this includes.
 *
 * Each reactor is a pthread owning one io_uring and a message queue (MPSC,
 * woken by an eventfd that the ring polls). Everything a reactor owns —
 * connections, channels, rings — is touched only by that reactor, so the I/O
 * path takes no locks. An idle reactor polls for poll_us and then sleeps in
 * io_uring_wait_cqe (bounded by its nearest timer).
 */
#ifndef FLEXBSO_REACTOR_H
#define FLEXBSO_REACTOR_H

#include <liburing.h>
#include <stdint.h>

#include "flexbso.h"
#include "thread.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A ring operation: put `&op` in sqe user_data; when the CQE arrives the
 * reactor calls op->cb(op, cqe->res, cqe->flags). Multishot ops get one call
 * per CQE (IORING_CQE_F_MORE set while more will come). Embed in your struct
 * and recover it with container_of-style arithmetic. */
struct fb_uring_op {
	void (*cb)(struct fb_uring_op *op, int res, uint32_t flags);
};

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

#ifdef __cplusplus
}
#endif
#endif
