/* NBD connection: fixed newstyle handshake and transmission phase.
 *
 * A connection lives on one reactor. All socket I/O goes through that
 * reactor's io_uring with at most one receive and one send in flight:
 * - receive: into a per-connection buffer (many pipelined request headers
 *   per recv); a write payload still missing after the header is received
 *   straight into the request's I/O buffer when it is large;
 * - send: replies queue in completion order and leave in one sendmsg per
 *   batch (header and data as separate iovecs, no copy of read data; on a
 *   zcopy bdev the data iovecs are the bdev's own memory, so a read is
 *   never copied in user space).
 * Requests use preallocated slots and buffers from a per-connection pool, so
 * the steady state does no malloc. When every slot is busy, or the bytes
 * held by unsent replies reach a budget, the connection stops reading the
 * socket: a client that never reads its replies cannot make us buffer
 * without bound.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbd_conn.h"
#include "nbd_proto.h"

static void conn_parse(struct fb_nbd_conn *c);
static void conn_tx_kick(struct fb_nbd_conn *c);
static void conn_close(struct fb_nbd_conn *c);

/* ------------------------------------------------------------ buffers */

static unsigned pool_class(size_t len)
{
	unsigned k = 0;

	while (((size_t)1 << (POOL_MIN_SHIFT + k)) < len)
		k++;
	return k;
}

/* ------------------------------------------------ engine memory budget
 *
 * Every request buffer the export mallocs is charged to st->mem_used, and
 * uncharged when freed, whether it is in use or sits in a connection's
 * cache: one relaxed atomic per malloc/free; a cache hit touches no shared
 * state. (Fixed per-connection memory, the 64 KiB receive buffer and the
 * request slots, is bounded by FB_NBD_MAX_CONNS and not counted.)
 *
 * Admission: a new buffer is charged only while mem_used + size <= limit (a
 * CAS loop, so the counter never overshoots; 3/4 of limit for buffers of
 * MEM_LARGE and up). There is no forced charge:
 * a request whose buffer does not fit waits (the connection pauses, below)
 * until memory is freed, and one whose buffer class alone exceeds the limit
 * is failed with NBD_ENOMEM (a write's payload is skipped, never stored).
 * A write's buffer is charged when its header is parsed, before any of its
 * payload is read, so payload bytes are never held uncharged.
 *
 * Guaranteed bound: mem_used <= limit at all times (buffers in use plus
 * cached ones). What can hold the budget, and for how long:
 * - a write whose payload is incomplete: at most nbd_payload_timeout_ms
 *   (+ one timer tick), then its connection is closed ("payload deadline");
 * - replies the client does not read: under pressure, at most about
 *   2 * nbd_stall_timeout_ms ("stalled readers");
 * - requests at the bdev: until the bdev completes them;
 * - caches: released at once while some connection is paused.
 * So a waiting request gets memory within about max(payload deadline,
 * 2 * stall timeout) plus the bdev's latency, however many connections the
 * holders open.
 *
 * Wake-up: a connection refused a buffer is paused: it stops parsing
 * (STEP_BLOCKED, exactly like the per-connection budget: nothing accepted
 * is failed or dropped), joins its reactor's paused list and arms a
 * CONN_MEM_RETRY_MS timeout of its own (counted in c->ops, so it never
 * outlives the connection). A buffer freed on the same reactor wakes the
 * oldest paused connection at the end of the loop pass; memory freed on
 * another reactor is seen by the timeout at the latest. A connection that
 * still finds no memory pauses again and re-arms, so none is stranded, and
 * the timeouts exist only while a connection is paused.
 *
 * The per-connection buffer is what a client that never reads its replies
 * could pin forever (thousands of connections, up to 32 MiB each): under
 * pressure such connections are disconnected, see "stalled readers" below.
 */

/* Large buffers (1 MiB and up) may fill only 3/4 of the budget: the last
 * quarter stays for small requests, so clients of small I/O keep moving
 * while large requests (the cheap way to hold a lot) wait their turn. */
#define MEM_LARGE ((size_t)1 << 20)

/* Request buffers from BUF_MMAP_MIN up are mapped and unmapped directly:
 * through malloc, freed 32 MiB blocks stay in the arenas (glibc raises its
 * mmap threshold after such a free), so the process's RSS would not follow
 * mem_used and the budget would not bound real memory. */
#define BUF_MMAP_MIN ((size_t)256 << 10)

static uint8_t *buf_alloc(size_t sz)
{
	void *p;

	if (sz >= BUF_MMAP_MIN) {
		p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	/* 4 KiB alignment keeps O_DIRECT file bdevs on their fast path. */
	return posix_memalign(&p, 4096, sz) ? NULL : p;
}

static void buf_release(uint8_t *p, size_t sz)
{
	if (sz >= BUF_MMAP_MIN)
		munmap(p, sz);
	else
		free(p);
}

static bool mem_charge(struct fb_nbd_state *st, size_t sz)
{
	size_t used, lim = sz >= MEM_LARGE ? st->mem_limit - st->mem_limit / 4 : st->mem_limit;

	used = atomic_load_explicit(&st->mem_used, memory_order_relaxed);
	do {
		if (used + sz > lim)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&st->mem_used, &used, used + sz,
							memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Frees a charged buffer and wakes a paused connection of this reactor. */
static void mem_free(struct fb_nbd_conn *c, uint8_t *p, size_t sz)
{
	struct fb_nbd_conn_list *list;

	buf_release(p, sz);
	atomic_fetch_sub_explicit(&c->st->mem_used, sz, memory_order_relaxed);
	if (!c->reactor)
		return;
	list = &c->st->per_reactor[fb_reactor_index(c->reactor)];
	if (list->paused_head)
		fb_nbd_conn_schedule(list->paused_head);
}

static void conn_stall_watch(struct fb_nbd_conn *c);

static void conn_mem_pause(struct fb_nbd_conn *c)
{
	struct fb_nbd_conn_list *list = &c->st->per_reactor[fb_reactor_index(c->reactor)];

	if (!c->mem_paused) {
		c->mem_paused = true;
		c->mp_next = NULL;
		c->mp_prev = list->paused_tail;
		if (list->paused_tail)
			list->paused_tail->mp_next = c;
		else
			list->paused_head = c;
		list->paused_tail = c;
		atomic_fetch_add_explicit(&c->st->mem_paused, 1, memory_order_relaxed);
	}
	if (!c->mem_timer.armed)
		fb_timer_arm(c->reactor, &c->mem_timer, CONN_MEM_RETRY_MS * 1000000ull);
	conn_stall_watch(c);
}

static void conn_mem_unpause(struct fb_nbd_conn *c)
{
	struct fb_nbd_conn_list *list;

	if (!c->mem_paused)
		return;
	list = &c->st->per_reactor[fb_reactor_index(c->reactor)];
	if (c->mp_prev)
		c->mp_prev->mp_next = c->mp_next;
	else
		list->paused_head = c->mp_next;
	if (c->mp_next)
		c->mp_next->mp_prev = c->mp_prev;
	else
		list->paused_tail = c->mp_prev;
	c->mp_prev = c->mp_next = NULL;
	c->mem_paused = false;
	atomic_fetch_sub_explicit(&c->st->mem_paused, 1, memory_order_relaxed);
}

/* A paused connection tries its request again (may free c). */
static void conn_mem_retry(struct fb_nbd_conn *c)
{
	if (!c->mem_paused || c->closing || c->draining || c->in_parse)
		return;
	c->blocked = false;
	conn_parse(c);  /* unpauses; pauses again if memory is still short */
}

static void conn_mem_timer_fn(struct fb_timer *t)
{
	conn_mem_retry(container_of(t, struct fb_nbd_conn, mem_timer));
}

static void conn_buf_put(struct fb_nbd_conn *c, uint8_t *p, unsigned k)
{
	size_t sz = (size_t)1 << (POOL_MIN_SHIFT + k);
	struct fb_nbd_state *st = c->st;

	if (c->closing || c->pool_bytes + sz > CONN_POOL_CAP ||
	    atomic_load_explicit(&st->mem_paused, memory_order_relaxed) ||
	    atomic_load_explicit(&st->mem_used, memory_order_relaxed) > st->mem_limit) {
		mem_free(c, p, sz);
		return;
	}
	memcpy(p, &c->pool[k], sizeof(p));
	c->pool[k] = p;
	c->pool_bytes += sz;
}

/* Frees cached buffers, largest first, until at most `keep` bytes remain. */
static void conn_pool_trim(struct fb_nbd_conn *c, size_t keep)
{
	unsigned k = POOL_CLASSES;

	while (k-- > 0 && c->pool_bytes > keep) {
		size_t sz = (size_t)1 << (POOL_MIN_SHIFT + k);

		while (c->pool[k] && c->pool_bytes > keep) {
			uint8_t *p = c->pool[k];

			memcpy(&c->pool[k], p, sizeof(p));
			c->pool_bytes -= sz;
			mem_free(c, p, sz);
		}
	}
}

int fb_nbd_buf_reserve(struct conn_buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Idle connections do not pin a full cache: a connection that holds no
 * buffer gives back all but CONN_POOL_IDLE bytes of its cache, at once
 * when some connection waits for memory, else when it is still idle
 * CONN_IDLE_TRIM_MS later (trimming at every idle moment would make a QD1
 * client of large requests malloc and fault in a fresh buffer each time;
 * the timer costs at most one ring op per CONN_IDLE_TRIM_MS). */
static void conn_idle_timer_fn(struct fb_timer *t)
{
	struct fb_nbd_conn *c = container_of(t, struct fb_nbd_conn, idle_timer);

	if (c->bytes_held == 0)
		conn_pool_trim(c, CONN_POOL_IDLE);
}

static void conn_idle_check(struct fb_nbd_conn *c)
{
	if (atomic_load_explicit(&c->st->mem_paused, memory_order_relaxed)) {
		conn_pool_trim(c, CONN_POOL_IDLE);
		return;
	}
	if (!c->idle_timer.armed)
		fb_timer_arm(c->reactor, &c->idle_timer, CONN_IDLE_TRIM_MS * 1000000ull);
}

/* -------------------------------------------------------- request slots */

struct nbd_req *fb_nbd_req_get(struct fb_nbd_conn *c)
{
	struct nbd_req *req = c->req_free;

	if (req) {
		c->req_free = req->next;
		req->next = NULL;
		req->buf = NULL;
		req->held = 0;
		req->zio = NULL;
		req->got = 0;
		req->step = RS_SINGLE;
		req->nbd_err = 0;
	}
	return req;
}

void fb_nbd_req_put(struct fb_nbd_conn *c, struct nbd_req *req)
{
	if (req->zio) {
		fb_bdev_free_io(req->zio);  /* the reply is sent: the bdev memory is free */
		req->zio = NULL;
	}
	if (req->buf) {
		conn_buf_put(c, req->buf, req->buf_class);
		req->buf = NULL;
	}
	c->bytes_held -= req->held;
	req->held = 0;
	req->next = c->req_free;
	c->req_free = req;
	if (c->bytes_held == 0 && c->pool_bytes > CONN_POOL_IDLE && !c->closing)
		conn_idle_check(c);
}

int fb_nbd_req_buf_get(struct fb_nbd_conn *c, struct nbd_req *req)
{
	unsigned k = pool_class(req->len);
	size_t sz = (size_t)1 << (POOL_MIN_SHIFT + k);
	uint8_t *p = c->pool[k];

	if (p) {
		memcpy(&c->pool[k], p, sizeof(p));  /* free buffers link through their first bytes */
		c->pool_bytes -= sz;
	} else {
		if (sz > (sz >= MEM_LARGE ? c->st->mem_limit - c->st->mem_limit / 4 : c->st->mem_limit))
			return -E2BIG;  /* can never fit: the caller fails the request */
		if (!mem_charge(c->st, sz)) {
			conn_mem_pause(c);
			return -EAGAIN;
		}
		if (!(p = buf_alloc(sz))) {
			atomic_fetch_sub_explicit(&c->st->mem_used, sz, memory_order_relaxed);
			return -ENOMEM;
		}
	}
	req->buf = p;
	req->buf_class = k;
	req->held = sz;
	c->bytes_held += req->held;
	req->io_iov.iov_base = req->buf;
	req->io_iov.iov_len = req->len;
	return 0;
}

void fb_nbd_req_charge(struct fb_nbd_conn *c, struct nbd_req *req)
{
	req->held = (size_t)1 << (POOL_MIN_SHIFT + pool_class(req->len));
	c->bytes_held += req->held;
}

/* ---------------------------------------------------------- lifecycle */

/* Timers run on the connection's reactor, so cancelling is immediate. */
static void conn_timers_cancel(struct fb_nbd_conn *c)
{
	fb_timer_cancel(&c->hs_timer);
	fb_timer_cancel(&c->drain_timer);
	fb_timer_cancel(&c->mem_timer);
	fb_timer_cancel(&c->idle_timer);
	fb_timer_cancel(&c->stall_timer);
	fb_timer_cancel(&c->pl_timer);
}

static void conn_free(struct fb_nbd_conn *c)
{
	struct fb_nbd_state *st = c->st;
	struct fb_nbd_export *exp = c->exp;
	struct fb_nbd_client_key client = c->client;
	unsigned i;

	conn_timers_cancel(c);
	if (c->reqs) {
		for (i = 0; i < CONN_QD; i++) {
			if (c->reqs[i].buf)  /* a request that never finished (unsent reply, partial payload) */
				mem_free(c, c->reqs[i].buf,
					 (size_t)1 << (POOL_MIN_SHIFT + c->reqs[i].buf_class));
			/* Replies never sent: give the bdev memory back before the channel. */
			fb_bdev_free_io(c->reqs[i].zio);
		}
		free(c->reqs);
	}
	conn_pool_trim(c, 0);
	if (c->ch)
		fb_put_io_channel(c->ch);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else if (c->reactor)
		st->per_reactor[fb_reactor_index(c->reactor)].head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->rx);
	free(c->hs_out.p);
	free(c->meta_name);
	fb_nbd_tls_free(c);
	fb_nbd_tls_creds_put(c->tls_creds);
	fb_log(st->e, FB_LOG_DEBUG, "nbd: connection %p closed", (void *)c);
	free(c);
	/* Last touch of shared state: after the broadcast the export (and, at
	 * engine shutdown, the state) may be freed by the control thread. */
	fb_nbd_conn_uncount(st, exp, &client);
}

/* Frees a closed connection once nothing refers to it. Never inside
 * conn_parse: the parser frees at its end instead. */
void fb_nbd_conn_maybe_free(struct fb_nbd_conn *c)
{
	if (c->closing && !c->in_parse && c->ops == 0 && c->io_inflight == 0)
		conn_free(c);
}

static void conn_op_done(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, cancel_op);

	(void)res;
	(void)flags;
	c->ops--;
	fb_nbd_conn_maybe_free(c);
}

static void conn_cancel_rx_done(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, cancel_rx_op);

	(void)res;
	(void)flags;
	c->ops--;
	fb_nbd_conn_maybe_free(c);
}

/* Hard close: stop all socket I/O now; the connection is freed once its
 * ring ops and bdev I/Os have come back. The caller must not touch c after. */
static void conn_close(struct fb_nbd_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	c->closing = true;
	fb_nbd_tls_end(c);
	conn_mem_unpause(c);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	if (c->rx_busy || c->tx_busy || c->rxpoll_armed) {
		sqe = fb_reactor_get_sqe(c->reactor);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data(sqe, &c->cancel_op);
		c->ops++;
	}
	conn_timers_cancel(c);
	fb_nbd_conn_maybe_free(c);
}

/* A connection that has not finished its handshake in time is dropped, so
 * idle sockets cannot hold connection slots forever. Once in transmission
 * the expiry is ignored. */
static void conn_hs_timer_fn(struct fb_timer *t)
{
	struct fb_nbd_conn *c = container_of(t, struct fb_nbd_conn, hs_timer);

	if (c->phase != PH_TRANSMISSION)
		conn_close(c);
}

static void conn_drain_timer_fn(struct fb_timer *t)
{
	struct fb_nbd_conn *c = container_of(t, struct fb_nbd_conn, drain_timer);

	if (c->draining)
		conn_close(c);  /* the client did not take its replies in time */
}

/* While draining: close once every request has been answered. The drain
 * timeout only starts when the bdev has finished the last request: it
 * bounds how long a client may take to read its replies, not how long the
 * bdev takes (a flush may take seconds, and its reply must still go out). */
void fb_nbd_conn_check_drained(struct fb_nbd_conn *c)
{
	if (!c->draining || c->closing || c->io_inflight)
		return;
	if (!c->txq_head && !c->tx_busy && c->hs_out.off == c->hs_out.len) {
		conn_close(c);
		return;
	}
	if (c->drain_timer_used)
		return;
	c->drain_timer_used = true;
	fb_timer_arm(c->reactor, &c->drain_timer, CONN_DRAIN_SEC * 1000000000ull);
}

/* Graceful end (NBD_CMD_DISC, export removal): read nothing more, let
 * in-flight requests complete and their replies go out, then close. */
void fb_nbd_conn_drain(struct fb_nbd_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing || c->draining)
		return;
	if (c->phase != PH_TRANSMISSION) {
		conn_close(c);
		return;
	}
	c->draining = true;
	conn_mem_unpause(c);  /* reads no more requests */
	if (c->rx_busy) {
		sqe = fb_reactor_get_sqe(c->reactor);
		io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)&c->rx_op, 0);
		io_uring_sqe_set_data(sqe, &c->cancel_rx_op);
		c->ops++;
	}
	fb_nbd_conn_check_drained(c);
}

/* ------------------------------------------------------ stalled readers
 *
 * Rule: a connection whose replies have had no byte taken for st->stall_ms
 * while the engine budget is under pressure (some connection is paused on
 * it, or mem_used > mem_limit), or for STALL_CALM_MULT * st->stall_ms
 * otherwise, is closed (hard close: its buffers are freed and uncharged)
 * with a warning. "Its replies" are the sends the engine has pending and,
 * once it has none, the reply bytes its socket still holds unread
 * (SIOCOUTQ): a client that stops reading (and sending) once its replies
 * sit in the socket, whether idle or paused with its next request waiting
 * for memory, has nothing pending in the engine for the clock to see, yet
 * pins the socket's buffers. Without the calm clause, a few clients that
 * never read could pin up to CONN_BUDGET each for as long as nobody else
 * needs the memory. A connection with nothing to send and nothing unread
 * (idle, waiting for the bdev, or paused with its client caught up) is
 * never closed, and any byte taken restarts the clock, so a client that
 * reads its replies, however slowly, is never cut.
 *
 * Mechanism: one fb_timer per connection (the watchdog), every
 * stall_ms / 4, armed by the send path or a pause only when none is armed
 * and dropped by the first tick that finds nothing to watch: a busy
 * connection costs one timer per tick period, an idle one none, and the
 * send path itself only sets c->tx_moved. A tick stamps c->tx_moved_ns when
 * bytes moved since the previous tick (or the watchdog was just armed).
 * Sends use MSG_WAITALL, so a send in flight tells nothing of partial
 * progress: once one has shown no progress for stall_ms under pressure, the
 * tick cancels it (a probe): the kernel completes it with the bytes it took
 * (the rest is sent again), or -ECANCELED when it took none. A -ECANCELED
 * probe closes the connection: with a warning when it made no progress
 * since the last stamp under pressure (the eviction), and also when it did,
 * since older kernels may report -ECANCELED for a partly sent message. A
 * connection with no send (idle or paused) has none to probe: the tick
 * compares the unread bytes with the previous tick's and evicts it
 * directly; that ioctl is per tick, never per I/O, and the watchdog stops
 * at the first tick that finds the socket empty. A reader is thus
 * cut no earlier than stall_ms after its last byte taken (at most about
 * 2 * stall_ms + a tick when a send took bytes early and then stalled). */

#define STALL_CALM_MULT 3u

static bool mem_pressure(struct fb_nbd_state *st)
{
	return atomic_load_explicit(&st->mem_paused, memory_order_relaxed) ||
	       atomic_load_explicit(&st->mem_used, memory_order_relaxed) > st->mem_limit;
}

static void conn_stall_arm(struct fb_nbd_conn *c)
{
	unsigned ms = c->st->stall_ms / 4 ? c->st->stall_ms / 4 : 1;

	fb_timer_arm(c->reactor, &c->stall_timer, (uint64_t)ms * 1000000ull);
}

/* Starts the watchdog unless it runs (send path, pause). */
static void conn_stall_watch(struct fb_nbd_conn *c)
{
	if (c->stall_timer.armed)
		return;
	c->tx_moved = true;  /* the clock starts at the first tick */
	c->outq = INT_MAX;
	conn_stall_arm(c);
}

/* Reply bytes the socket holds that the client has not taken. */
static int conn_outq(struct fb_nbd_conn *c)
{
	int n = 0;

	return ioctl(c->fd, SIOCOUTQ, &n) == 0 && n > 0 ? n : 0;
}

static bool conn_stalled(struct fb_nbd_conn *c, uint64_t now)
{
	uint64_t ms = mem_pressure(c->st) ? c->st->stall_ms : (uint64_t)c->st->stall_ms * STALL_CALM_MULT;

	return !c->draining && !c->tx_moved && now - c->tx_moved_ns >= ms * 1000000ull;
}

static void conn_peer_name(struct fb_nbd_conn *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char a[INET6_ADDRSTRLEN];

	memset(&ss, 0, sizeof(ss));
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0) {
		snprintf(buf, len, "(unknown peer)");
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(buf, len, "tcp:%s:%u", a, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "tcp:[%s]:%u", a, ntohs(sin6->sin6_port));
	} else if (ss.ss_family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		if (sl > offsetof(struct sockaddr_un, sun_path) && sun->sun_path[0])
			snprintf(buf, len, "unix:%.*s",
				 (int)(sl - offsetof(struct sockaddr_un, sun_path)), sun->sun_path);
		else
			snprintf(buf, len, "unix socket fd %d", c->fd);
	} else {
		snprintf(buf, len, "fd %d", c->fd);
	}
}

static void conn_stall_evict(struct fb_nbd_conn *c)
{
	char peer[160];

	conn_peer_name(c, peer, sizeof(peer));
	fb_log(c->st->e, FB_LOG_WARN,
	       "nbd: export %s: client %s took no reply bytes for %u ms or more "
	       "(nbd_stall_timeout_ms%s; %zu bytes of NBD buffer memory in use, limit %zu); disconnecting it",
	       c->exp ? c->exp->name : "?", peer,
	       mem_pressure(c->st) ? c->st->stall_ms : c->st->stall_ms * STALL_CALM_MULT,
	       mem_pressure(c->st) ? ", memory short" : " x 3, memory not short",
	       (size_t)atomic_load_explicit(&c->st->mem_used, memory_order_relaxed),
	       c->st->mem_limit);
	conn_close(c);
}

static void conn_stall_timer_fn(struct fb_timer *t)
{
	struct fb_nbd_conn *c = container_of(t, struct fb_nbd_conn, stall_timer);
	struct io_uring_sqe *sqe;
	bool sending = c->tx_busy || c->txq_head;
	int outq = 0;
	uint64_t now;

	if (!sending) {
		if (c->draining)
			return;
		outq = conn_outq(c);
		if (outq < c->outq)
			c->tx_moved = true;
		c->outq = outq;
		if (outq == 0)
			return;  /* the client took everything: the next send or pause re-arms */
	} else {
		c->outq = INT_MAX;
	}
	now = fb_now_ns();
	if (c->tx_moved) {
		c->tx_moved = false;
		c->tx_moved_ns = now;
	}
	if (!sending) {
		if (conn_stalled(c, now))
			conn_stall_evict(c);
		else
			conn_stall_arm(c);
		return;
	}
	conn_stall_arm(c);
	if (c->tx_busy && !c->tx_probe && conn_stalled(c, now)) {
		sqe = fb_reactor_get_sqe(c->reactor);
		io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)&c->tx_op, 0);
		io_uring_sqe_set_data(sqe, &c->tx_cancel_op);
		c->ops++;
		c->tx_probe = true;
	}
}

static void conn_tx_cancel_done(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, tx_cancel_op);

	(void)res;
	(void)flags;
	c->ops--;
	fb_nbd_conn_maybe_free(c);
}

/* ------------------------------------------------------------- sending */

/* n plaintext bytes of hs_out and the reply queue have left (sent, or
 * encrypted into the TLS buffer): finished replies free their requests. */
static void conn_tx_consume(struct fb_nbd_conn *c, size_t n)
{
	if (c->hs_out.off < c->hs_out.len) {
		size_t k = c->hs_out.len - c->hs_out.off;

		k = k < n ? k : n;
		c->hs_out.off += k;
		n -= k;
		if (c->hs_out.off == c->hs_out.len)
			c->hs_out.off = c->hs_out.len = 0;
	}
	while (n && c->txq_head) {
		struct nbd_req *req = c->txq_head;
		int i;

		for (i = 0; i < req->tx_iovcnt && n; i++) {
			size_t k = req->tx_iov[i].iov_len < n ? req->tx_iov[i].iov_len : n;

			req->tx_iov[i].iov_base = (uint8_t *)req->tx_iov[i].iov_base + k;
			req->tx_iov[i].iov_len -= k;
			n -= k;
		}
		if (req->tx_iov[req->tx_iovcnt - 1].iov_len)
			break;  /* partly sent: the rest goes with the next sendmsg */
		c->txq_head = req->next;
		if (!c->txq_head)
			c->txq_tail = NULL;
		fb_nbd_req_put(c, req);
	}
}

/* Nothing left to send, plaintext or ciphertext. */
static bool conn_tx_empty(struct fb_nbd_conn *c)
{
	struct conn_buf *o = c->tls ? fb_nbd_tls_out(c) : NULL;

	return c->hs_out.len == 0 && !c->txq_head && (!o || o->off == o->len);
}

static void conn_tls_begin(struct fb_nbd_conn *c);

static void conn_tx_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, tx_op);

	(void)flags;
	c->ops--;
	c->tx_busy = false;
	if (c->tx_probe) {
		/* A stall probe: cancelled with no byte taken, or completed. */
		c->tx_probe = false;
		if (res == -ECANCELED) {
			if (!c->closing && conn_stalled(c, fb_now_ns())) {
				conn_stall_evict(c);
				return;
			}
			/* Bytes moved while the cancel was on its way. Kernels
			 * that predate partial results on cancelled sends say
			 * -ECANCELED even when some bytes went out, and resending
			 * would then corrupt the reply stream: closing is the
			 * only answer safe on every kernel (rare: it needs a
			 * stall of stall_ms ended in the cancel's window). */
			conn_close(c);
			return;
		}
	}
	if (res < 0 && res != -EAGAIN && res != -EINTR) {
		conn_close(c);
		return;
	}
	if (res > 0)
		c->tx_moved = true;
	if (c->tls)
		fb_nbd_tls_out(c)->off += res > 0 ? (size_t)res : 0;  /* plaintext went at encryption */
	else
		conn_tx_consume(c, res > 0 ? (size_t)res : 0);
	if (c->closing) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	if (c->close_after_tx && conn_tx_empty(c)) {
		conn_close(c);
		return;
	}
	if (c->tls_starting && c->hs_out.len == 0) {
		conn_tls_begin(c);  /* the ACK is out: the client's handshake follows */
		return;
	}
	conn_tx_kick(c);
	if (c->blocked && !c->draining) {
		c->blocked = false;
		conn_parse(c);  /* may free c */
		return;
	}
	fb_nbd_conn_check_drained(c);
}

/* Sends what is queued (up to CONN_TX_BATCH bytes) in one sendmsg, unless a
 * send is in flight (its completion sends the rest). On TLS the batch is
 * encrypted first and the ciphertext goes out instead. */
static void conn_tx_kick(struct fb_nbd_conn *c)
{
	struct io_uring_sqe *sqe;
	struct nbd_req *req;
	unsigned n = 0;
	size_t bytes = 0;
	struct conn_buf *o = NULL;

	if (c->tx_busy || c->closing || c->in_parse)
		return;
	if (c->tls) {
		o = fb_nbd_tls_out(c);
		if (o->off < o->len)
			goto send;  /* ciphertext first */
		o->off = o->len = 0;
		if (!fb_nbd_tls_up(c))
			return;
	}
	if (c->hs_out.off < c->hs_out.len) {
		c->tx_iov[n].iov_base = c->hs_out.p + c->hs_out.off;
		c->tx_iov[n].iov_len = c->hs_out.len - c->hs_out.off;
		bytes += c->tx_iov[n].iov_len;
		n++;
	}
	for (req = c->txq_head; req && n + req->tx_iovcnt <= CONN_TX_IOV && bytes < CONN_TX_BATCH;
	     req = req->next) {
		int i;

		for (i = 0; i < req->tx_iovcnt; i++)
			if (req->tx_iov[i].iov_len) {
				bytes += req->tx_iov[i].iov_len;
				c->tx_iov[n++] = req->tx_iov[i];
			}
	}
	if (!n)
		return;
	if (o) {
		if (fb_nbd_tls_encrypt(c, c->tx_iov, n)) {
			conn_close(c);
			return;
		}
		conn_tx_consume(c, bytes);
	send:
		c->tx_iov[0].iov_base = o->p + o->off;
		c->tx_iov[0].iov_len = o->len - o->off;
		n = 1;
	}
	memset(&c->tx_msg, 0, sizeof(c->tx_msg));
	c->tx_msg.msg_iov = c->tx_iov;
	c->tx_msg.msg_iovlen = n;
	sqe = fb_reactor_get_sqe(c->reactor);
	io_uring_prep_sendmsg(sqe, c->fd, &c->tx_msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data(sqe, &c->tx_op);
	c->ops++;
	c->tx_busy = true;
	conn_stall_watch(c);
}

/* The reactor's poller, run once per loop pass after completions: sends
 * what each connection queued during the pass, so a burst of completions
 * leaves in one sendmsg and that SQE goes out with the pass's other SQEs. */
static int conn_flush_poller(void *arg)
{
	struct fb_nbd_conn_list *list = arg;
	struct fb_nbd_conn *c, *next;
	int n = 0;

	/* Detached first: what gets scheduled now runs in the next pass. */
	c = list->flush_head;
	list->flush_head = NULL;
	for (; c; c = next) {
		next = c->flush_next;
		c->flush_queued = false;
		c->ops--;
		n++;
		if (c->retry_head)
			fb_nbd_xmit_retry(c);
		if (c->closing) {
			fb_nbd_conn_maybe_free(c);
		} else {
			conn_tx_kick(c);
			if (c->mem_paused)
				conn_mem_retry(c);  /* memory was freed on this reactor; may free c */
		}
	}
	return n;
}

void fb_nbd_conn_schedule(struct fb_nbd_conn *c)
{
	struct fb_nbd_conn_list *list;

	if (c->flush_queued)
		return;
	list = &c->st->per_reactor[fb_reactor_index(c->reactor)];
	c->flush_queued = true;
	c->ops++;
	c->flush_next = list->flush_head;
	list->flush_head = c;
}

void fb_nbd_conn_txq_push(struct fb_nbd_conn *c, struct nbd_req *req)
{
	req->next = NULL;
	if (c->txq_tail)
		c->txq_tail->next = req;
	else
		c->txq_head = req;
	c->txq_tail = req;
	/* Inside conn_parse the parser sends at its end; during a send its
	 * completion sends the rest. */
	if (!c->tx_busy && !c->in_parse)
		fb_nbd_conn_schedule(c);
}

/* ---------------------------------------------------- payload deadline
 *
 * A write's buffer is charged before its payload is read, so a client that
 * sends a header and half a payload would pin up to 32 MiB for as long as
 * it likes. Rule: the whole payload must arrive within st->payload_ms of
 * the moment the parser first waited for it (right after the header);
 * otherwise the connection is closed with a warning. Cost: the clock is
 * read only when a payload did not arrive with its header, and one timer
 * per connection is armed only while such a payload is pending (re-armed
 * for the remainder when a later payload is the pending one). A stalled
 * payload is cut between payload_ms and payload_ms + one re-arm's slack. */
static void conn_pl_arm(struct fb_nbd_conn *c, uint64_t ms)
{
	fb_timer_arm(c->reactor, &c->pl_timer, ms * 1000000ull);
}

/* The parser waits for payload bytes of rx_req. */
static void conn_pl_wait(struct fb_nbd_conn *c)
{
	if (c->pl_seq != c->rx_seq) {
		c->pl_seq = c->rx_seq;
		c->pl_start_ns = fb_now_ns();
	}
	if (!c->pl_timer.armed)
		conn_pl_arm(c, c->st->payload_ms);
}

static void conn_pl_timer_fn(struct fb_timer *t)
{
	struct fb_nbd_conn *c = container_of(t, struct fb_nbd_conn, pl_timer);
	uint64_t lim = (uint64_t)c->st->payload_ms * 1000000ull, age;
	char peer[160];

	if (c->draining || !c->rx_req)
		return;
	if (c->pl_seq != c->rx_seq) {  /* not yet timed: starts now */
		c->pl_seq = c->rx_seq;
		c->pl_start_ns = fb_now_ns();
	}
	age = fb_now_ns() - c->pl_start_ns;
	if (age < lim) {
		conn_pl_arm(c, (lim - age) / 1000000ull + 1);
		return;
	}
	conn_peer_name(c, peer, sizeof(peer));
	fb_log(c->st->e, FB_LOG_WARN,
	       "nbd: export %s: client %s sent %u of a %u-byte write payload in %u ms "
	       "(nbd_payload_timeout_ms): disconnected",
	       c->exp ? c->exp->name : "?", peer, c->rx_req->got, c->rx_req->len, c->st->payload_ms);
	conn_close(c);
}

/* ----------------------------------------------------------- receiving */

static void conn_rx_arm(struct fb_nbd_conn *c);

/* ----------------------------------------------------------------- TLS */

/* Handshake, then decrypt what arrived and parse it. */
static void conn_tls_step(struct fb_nbd_conn *c)
{
	if (fb_nbd_tls_advance(c)) {
		conn_close(c);
		return;
	}
	conn_tx_kick(c);  /* handshake messages, or replies waiting for the handshake */
	if (!fb_nbd_tls_up(c)) {
		conn_rx_arm(c);
		return;
	}
	conn_parse(c);  /* may free c */
}

static void conn_tls_deferred(struct fb_deferred *d)
{
	struct fb_nbd_conn *c = container_of(d, struct fb_nbd_conn, tls_defer);

	c->tls_defer_queued = false;
	c->ops--;
	if (c->closing || c->draining) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	conn_tls_step(c);
}

static void conn_tls_defer(struct fb_nbd_conn *c)
{
	if (c->tls_defer_queued)
		return;
	c->tls_defer_queued = true;
	c->ops++;
	c->tls_defer.fn = conn_tls_deferred;
	fb_reactor_defer(c->reactor, &c->tls_defer);
}

void fb_nbd_conn_starttls(struct fb_nbd_conn *c)
{
	/* The NBD spec: nothing negotiated in the clear survives STARTTLS. */
	c->tls_starting = true;
	c->structured = false;
	free(c->meta_name);
	c->meta_name = NULL;
	c->meta_name_len = 0;
}

static void conn_tls_begin(struct fb_nbd_conn *c)
{
	c->tls_starting = false;
	c->blocked = false;
	if (fb_nbd_tls_start(c, c->tls_creds)) {
		conn_close(c);
		return;
	}
	conn_tls_step(c);
}

/* Receiving: a multishot poll stays armed on the socket for the
 * connection's life, and every recv is MSG_DONTWAIT, so io_uring never arms
 * and tears down a poll per recv when the socket is empty (perf showed that
 * arming as the reactor's top cost at 4 KiB QD32; rough runs here: ~10%
 * more IOPS, less CPU per I/O). A recv that finds nothing, or drains the
 * socket, waits for the next poll event. */
static void conn_rxpoll_arm(struct fb_nbd_conn *c)
{
	struct io_uring_sqe *sqe = fb_reactor_get_sqe(c->reactor);

	io_uring_prep_poll_multishot(sqe, c->fd, POLLIN);
	io_uring_sqe_set_data(sqe, &c->rxpoll_op);
	c->ops++;
	c->rxpoll_armed = true;
}

static void conn_rxpoll_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, rxpoll_op);

	if (!(flags & IORING_CQE_F_MORE)) {
		c->ops--;
		c->rxpoll_armed = false;
	}
	if (c->closing) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	if (!c->rxpoll_armed) {
		if (res < 0) {
			conn_close(c);
			return;
		}
		conn_rxpoll_arm(c);  /* the kernel ended the multishot: re-arm */
	}
	c->rxpoll_seq++;
	c->rx_ready = true;
	if (c->rx_wait && !c->draining) {
		c->rx_wait = false;
		conn_rx_arm(c);
	}
}

static void conn_rx_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_conn *c = container_of(op, struct fb_nbd_conn, rx_op);

	(void)flags;
	c->ops--;
	c->rx_busy = false;
	if (c->closing || c->draining) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		/* Empty: wait for the next poll event, unless one came since this
		 * recv was submitted. */
		c->rx_ready = c->rxpoll_seq != c->rx_sub_seq;
		conn_rx_arm(c);
		return;
	}
	if (res <= 0) {
		/* EOF or error: a client that leaves without NBD_CMD_DISC gets
		 * no more replies (hard disconnect). */
		conn_close(c);
		return;
	}
	/* A short read drained the socket: the next recv waits for a poll
	 * event instead of finding nothing. */
	if ((size_t)res < c->rx_len)
		c->rx_ready = c->rxpoll_seq != c->rx_sub_seq;
	if (c->tls) {
		/* Ciphertext; a recv armed before TLS started put it in c->rx. */
		fb_nbd_tls_rx_put(c, c->rx_to_tls ? NULL : c->rx + c->rx_tail, (size_t)res);
		conn_tls_step(c);
		return;
	}
	if (c->rx_direct)
		c->rx_req->got += (uint32_t)res;
	else
		c->rx_tail += (uint32_t)res;
	conn_parse(c);
}

static void conn_rx_arm(struct fb_nbd_conn *c)
{
	struct io_uring_sqe *sqe;
	struct nbd_req *req = c->rx_req;
	void *dst;
	size_t len;

	if (c->rx_busy || c->closing)
		return;
	if (c->tls && fb_nbd_tls_rx_pending(c)) {
		conn_tls_defer(c);  /* records already here: decrypt them first */
		return;
	}
	if (!c->rx_ready) {
		c->rx_wait = true;
		return;
	}
	c->rx_to_tls = c->tls != NULL;
	if (c->tls) {
		uint8_t *cipher;

		c->rx_direct = false;
		fb_nbd_tls_rx_space(c, &cipher, &len);
		dst = cipher;
		if (!len) {
			conn_close(c);  /* a handshake message larger than we take */
			return;
		}
	} else if (req && req->len - req->got > CONN_DIRECT_MIN) {
		c->rx_direct = true;
		dst = req->buf + req->got;
		len = req->len - req->got;
	} else {
		c->rx_direct = false;
		if (c->rx_head) {
			memmove(c->rx, c->rx + c->rx_head, c->rx_tail - c->rx_head);
			c->rx_tail -= c->rx_head;
			c->rx_head = 0;
		}
		dst = c->rx + c->rx_tail;
		len = CONN_RX_CAP - c->rx_tail;
	}
	sqe = fb_reactor_get_sqe(c->reactor);
	io_uring_prep_recv(sqe, c->fd, dst, len, MSG_DONTWAIT);
	io_uring_sqe_set_data(sqe, &c->rx_op);
	c->ops++;
	c->rx_busy = true;
	c->rx_len = len;
	c->rx_sub_seq = c->rxpoll_seq;
}

static void conn_parse(struct fb_nbd_conn *c)
{
	int step = STEP_MORE;

	if (c->in_parse)
		return;
	conn_mem_unpause(c);  /* the parser pauses again if memory is still short */
	c->in_parse = true;
	while (!c->closing && !c->draining) {
		if (c->discard) {
			uint32_t avail = c->rx_tail - c->rx_head;
			uint32_t n = avail < c->discard ? avail : (uint32_t)c->discard;

			c->rx_head += n;
			c->discard -= n;
			if (c->discard) {
				step = STEP_NEED_DATA;
				break;
			}
		}
		if (c->rx_req)
			step = fb_nbd_xmit_payload(c);
		else if (c->phase == PH_TRANSMISSION)
			step = fb_nbd_xmit_parse(c);
		else
			step = fb_nbd_hs_parse(c);
		if (step != STEP_MORE)
			break;
	}
	c->in_parse = false;
	if (step == STEP_ERROR) {
		fb_log(c->st->e, FB_LOG_DEBUG, "nbd: connection %p: protocol violation, closing",
		       (void *)c);
		conn_close(c);
		return;
	}
	if (c->closing) {
		fb_nbd_conn_maybe_free(c);
		return;
	}
	if (step == STEP_NEED_DATA && !c->draining) {
		if (c->rx_req)
			conn_pl_wait(c);
		conn_rx_arm(c);
	}
	if (step == STEP_BLOCKED)
		c->blocked = true;
	conn_tx_kick(c);
	fb_nbd_conn_check_drained(c);
}

/* ----------------------------------------------------------- entry points */

static void conn_start(void *arg)
{
	struct fb_nbd_conn *c = arg;
	struct fb_nbd_conn_list *list;
	bool stopping;
	uint8_t *p;

	c->reactor = fb_reactor_current();
	list = &c->st->per_reactor[fb_reactor_index(c->reactor)];
	if (!list->poller)
		list->poller = fb_poller_register(c->reactor, conn_flush_poller, list);
	c->next = list->head;
	if (c->next)
		c->next->prev = c;
	list->head = c;
	pthread_mutex_lock(&c->st->lock);
	stopping = c->st->stopping;
	pthread_mutex_unlock(&c->st->lock);
	if (stopping || !list->poller || fb_nbd_buf_reserve(&c->hs_out, NBD_GREETING_LEN)) {
		conn_close(c);
		return;
	}
	fb_timer_arm(c->reactor, &c->hs_timer, CONN_HANDSHAKE_SEC * 1000000000ull);
	p = c->hs_out.p;
	nbd_put64(p, NBD_MAGIC_INIT);
	nbd_put64(p + 8, NBD_MAGIC_OPTS);
	nbd_put16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	c->hs_out.len = NBD_GREETING_LEN;
	conn_rxpoll_arm(c);
	conn_parse(c);
}

void fb_nbd_conn_accept(struct fb_nbd_state *st, struct fb_nbd_listener *l, int fd,
			const struct fb_nbd_client_key *client)
{
	struct fb_nbd_conn *c = calloc(1, sizeof(*c));
	struct fb_reactor *r;

	if (c)
		c->rx = malloc(CONN_RX_CAP);
	if (!c || !c->rx) {
		if (c)
			free(c);
		close(fd);
		fb_nbd_conn_uncount(st, NULL, client);
		return;
	}
	c->st = st;
	c->fd = fd;
	c->client = *client;
	c->tls_creds = fb_nbd_tls_creds_get(l->tls);
	c->tls_required = l->tls_required;
	c->listener_id = l->id;
	c->phase = PH_CLIENT_FLAGS;
	c->rx_op.cb = conn_rx_cb;
	c->rxpoll_op.cb = conn_rxpoll_cb;
	c->rx_ready = true;
	c->tx_op.cb = conn_tx_cb;
	c->cancel_op.cb = conn_op_done;
	c->cancel_rx_op.cb = conn_cancel_rx_done;
	c->tx_cancel_op.cb = conn_tx_cancel_done;
	fb_timer_init(&c->hs_timer, conn_hs_timer_fn);
	fb_timer_init(&c->drain_timer, conn_drain_timer_fn);
	fb_timer_init(&c->mem_timer, conn_mem_timer_fn);
	fb_timer_init(&c->idle_timer, conn_idle_timer_fn);
	fb_timer_init(&c->stall_timer, conn_stall_timer_fn);
	fb_timer_init(&c->pl_timer, conn_pl_timer_fn);
	r = fb_engine_get_reactor(st->e, st->rr++ % st->nreactors);
	fb_log(st->e, FB_LOG_DEBUG, "nbd: connection %p on reactor %u", (void *)c,
	       fb_reactor_index(r));
	fb_reactor_send(r, conn_start, c);
}

void fb_nbd_conn_reactor_fini(void *arg)
{
	struct fb_nbd_state *st = arg;
	struct fb_nbd_conn_list *list = &st->per_reactor[fb_reactor_index(fb_reactor_current())];

	if (list->poller)
		fb_poller_unregister(list->poller);
	list->poller = NULL;
}

void fb_nbd_conn_kick(void *arg)
{
	struct fb_nbd_kick *k = arg;
	struct fb_nbd_conn *c, *next;
	unsigned idx = fb_reactor_index(fb_reactor_current());

	for (c = k->st->per_reactor[idx].head; c; c = next) {
		next = c->next;
		if (k->all || (k->exp && c->exp == k->exp))
			fb_nbd_conn_drain(c);
		else if (k->listener_id && !c->exp && c->listener_id == k->listener_id)
			conn_close(c);
	}
}
