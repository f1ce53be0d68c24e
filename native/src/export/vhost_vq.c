/* Split and packed virtqueues of the vhost-user-blk export, on their reactor.
 *
 * An idle queue sleeps in an io_uring poll on its kick eventfd. A kick
 * turns guest notifications off (VRING_USED_F_NO_NOTIFY, or by leaving
 * avail_event behind with EVENT_IDX) and switches the queue's poller on: it
 * takes new requests from the avail ring; once nothing new came for the
 * queue's poll window (adaptive, at most FB_VHOST_POLL_NS: vq_poll_adapt)
 * it turns notifications back on, re-checks the ring (the
 * guest may have published in between) and goes back to sleep on the kick.
 *
 * Completions write the used element at once and publish used->idx once per
 * reactor loop pass (a deferred flush; requests of 64 KiB and more at
 * once), then signal the call eventfd if the guest asked for it (used_event
 * with EVENT_IDX, else avail->flags).
 *
 * Packed rings (VIRTIO_F_RING_PACKED) take the same path: the avail check
 * reads the descriptor's flags against the avail wrap counter, a completion
 * writes its used descriptor (id, len, then flags) at once, and the flush
 * only decides whether to interrupt (the driver's event suppression
 * structure). Kicks are turned off and on with the device's structure
 * (DISABLE / ENABLE). With an inflight region (INFLIGHT_SHMFD) a packed
 * queue copies each chain it takes into the region (the spec's packed
 * layout): a used descriptor may overwrite a slot whose chain is still in
 * flight, so after a restart the region, not the ring, says what to
 * resubmit and where the avail and used positions are (pinfl_*).
 *
 * Everything read from guest memory is read once into a local and checked:
 * the guest can change it at any time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhost_blk.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* A store, then a load of another guest field, that must not be reordered
 * (the guest does the mirror image with a full barrier): both sequentially
 * consistent (on x86 the store is an xchg, a full barrier). Used instead of
 * a fence, which ThreadSanitizer cannot model. */
static inline void store16_sc(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

static inline uint16_t load16_sc(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void vq_check_stopped(struct vhost_vq *vq);
static int vq_poll(void *arg);

void vhost_vq_init(struct vhost_vq *vq, struct vhost_ctrlr *c, unsigned index)
{
	memset(vq, 0, sizeof(*vq));
	vq->c = c;
	vq->index = index;
	vq->kickfd = vq->callfd = vq->errfd = -1;
	pthread_mutex_init(&vq->stop_lock, NULL);
	pthread_cond_init(&vq->stop_cond, NULL);
}

void vhost_vq_reset(struct vhost_vq *vq)
{
	if (vq->kickfd >= 0)
		close(vq->kickfd);
	if (vq->callfd >= 0)
		close(vq->callfd);
	if (vq->errfd >= 0)
		close(vq->errfd);
	vq->kickfd = vq->callfd = vq->errfd = -1;
	vq->num = 0;
	vq->addr_set = vq->enabled = false;
	vq->base = 0;
	vq->infl = NULL;
	vq->pinfl = NULL;
}

/* ------------------------------------------------------- notifications */

static void vq_signal(struct vhost_vq *vq)
{
	uint64_t one = 1;
	ssize_t n;

	if (vq->callfd < 0)
		return;
	do {
		n = write(vq->callfd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
}

/* The device is unusable (the guest broke the ring): stop taking requests
 * and tell the front-end through the error eventfd (NEEDS_RESET). */
static void vq_break(struct vhost_vq *vq, const char *why)
{
	uint64_t one = 1;

	if (vq->broken)
		return;
	vq->broken = true;
	vq->c->bad_msgs++;
	fb_log(fb_reactor_engine(vq->reactor), FB_LOG_WARN, "vhost %s: queue %u: %s; queue stopped until reset",
	       vq->c->name, vq->index, why);
	if (vq->errfd >= 0 && write(vq->errfd, &one, sizeof(one)) < 0) {
		/* nothing more to tell */
	}
}

static uint16_t *vq_avail_event(struct vhost_vq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->num];
}

static uint16_t vq_used_event(struct vhost_vq *vq)
{
	return load16_sc(&vq->avail->ring[vq->num]);
}

/* Publishes the used ring and notifies the guest if it asked. */
/* Packed: used descriptors are visible as they are written; interrupt if
 * the driver's event suppression structure asks for it. */
static void vq_publish_packed(struct vhost_vq *vq)
{
	bool notify;
	uint16_t f;

	/* Our last flags store again, sequentially consistent, before we read
	 * the driver's structure (as the split ring's used->idx store). */
	if (vq->p_last_flags)
		store16_sc(vq->p_last_flags, *vq->p_last_flags);
	f = load16_sc(&vq->drv_event->flags);
	if (f == VRING_PACKED_EVENT_DISABLE)
		notify = false;
	else if (f == VRING_PACKED_EVENT_DESC && vq->event_idx && vq->signalled_valid)
		notify = vring_packed_need_event(load16_sc(&vq->drv_event->off_wrap), vq->num, vq->p_used,
						 vq->p_used_wrap, vq->p_sig, vq->p_sig_wrap);
	else
		notify = vq->p_used != vq->p_sig || vq->p_used_wrap != vq->p_sig_wrap || !vq->signalled_valid;
	vq->p_sig = vq->p_used;
	vq->p_sig_wrap = vq->p_used_wrap;
	vq->signalled_valid = true;
	if (notify)
		vq_signal(vq);
	vq->last_work_ns = fb_now_ns();
}

static void vq_publish(struct vhost_vq *vq)
{
	uint16_t old, now = vq->used_idx;
	bool notify;

	if (vq->packed) {
		vq_publish_packed(vq);
		return;
	}
	store16_sc(&vq->used->idx, now);
	if (vq->infl) {
		/* Published: these heads are no longer in flight. */
		for (uint16_t i = vq->infl->used_idx; i != now; i++) {
			uint32_t id = vq->used->ring[i % vq->num].id;

			if (id < vq->num)
				vq->infl->desc[id].inflight = 0;
		}
		__atomic_store_n(&vq->infl->used_idx, now, __ATOMIC_RELEASE);
	}
	/* Our used->idx store (seq_cst) comes before our seq_cst read of the
	 * guest's event or flags. */
	if (vq->event_idx) {
		old = vq->signalled_used;
		notify = !vq->signalled_valid || vring_need_event(vq_used_event(vq), now, old);
		vq->signalled_used = now;
		vq->signalled_valid = true;
	} else {
		notify = !(load16_sc(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (notify)
		vq_signal(vq);
	vq->last_work_ns = fb_now_ns();
}

static void vq_flush(struct fb_deferred *d)
{
	struct vhost_vq *vq = container_of(d, struct vhost_vq, flush);

	vq->flush_queued = false;
	vq_publish(vq);
	if (vq->stopping)
		vq_check_stopped(vq);
}

/* --------------------------------------------- packed inflight region */

#define PINFL_END 0xffffu /* end of the region's free list */

/* Moves a packed ring position n slots on (n <= num), flipping the wrap
 * counter when it passes the end. */
static void pos_add(uint16_t *pos, bool *wrap, unsigned n, unsigned num)
{
	unsigned p = *pos + n;

	if (p >= num) {
		p -= num;
		*wrap = !*wrap;
	}
	*pos = (uint16_t)p;
}

/* Every entry not marked in `busy` (NULL: all) goes on the free list. */
static void pinfl_free_list(struct vhost_vq *vq, const uint8_t *busy)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;
	uint16_t head = PINFL_END;
	unsigned n = 0;

	for (unsigned i = vq->num; i-- > 0;) {
		if (busy && busy[i])
			continue;
		q->desc[i].next = head;
		head = (uint16_t)i;
		n++;
	}
	q->free_head = q->old_free_head = head;
	vq->pinfl_free = n;
}

/* A fresh region for this ring, at the positions the base gave. */
static void pinfl_init(struct vhost_vq *vq)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;

	memset(q->desc, 0, sizeof(q->desc[0]) * vq->num);
	q->features = vq->c->features;
	q->version = 1;
	q->desc_num = (uint16_t)vq->num;
	q->used_idx = q->old_used_idx = vq->p_used;
	q->used_wrap_counter = q->old_used_wrap_counter = vq->p_used_wrap;
	pinfl_free_list(vq, NULL);
	vq->infl_counter = 0;
}

/* The buffer id of the chain whose head entry is h (the id is in the
 * chain's last descriptor); -1 if the entry's link is out of range. */
static int pinfl_chain_id(const struct vhost_vq *vq, unsigned h)
{
	uint16_t last = vq->pinfl->desc[h].last;

	return last < vq->num ? vq->pinfl->desc[last].id : -1;
}

/* The head entry still marked in flight whose buffer id the used slot at
 * pos names (the last back-end wrote it but died before recording it). */
static int pinfl_written(const struct vhost_vq *vq, uint16_t pos, bool wrap)
{
	const struct vring_packed_desc *d = &vq->pdesc[pos];

	if (!vring_packed_used(load16(&d->flags), wrap))
		return -1; /* not written in this lap, or the driver already reused the slot */
	for (unsigned h = 0; h < vq->num; h++)
		if (vq->pinfl->desc[h].inflight == 1 && pinfl_chain_id(vq, h) == load16(&d->id))
			return (int)h;
	return -1;
}

static uint64_t pinfl_counter(const struct vhost_vq *vq, uint16_t h)
{
	return vq->pinfl->desc[h].counter;
}

static uint64_t infl_counter(const struct vhost_vq *vq, uint16_t h)
{
	return vq->infl->desc[h].counter;
}

/* Oldest last in vq->resubmit (vq_process pops from the end). */
static void resubmit_sort(struct vhost_vq *vq, unsigned n, uint64_t (*counter)(const struct vhost_vq *, uint16_t))
{
	for (unsigned i = 1; i < n; i++) {
		uint16_t h = vq->resubmit[i];
		unsigned j = i;

		while (j > 0 && counter(vq, vq->resubmit[j - 1]) < counter(vq, h)) {
			vq->resubmit[j] = vq->resubmit[j - 1];
			j--;
		}
		vq->resubmit[j] = h;
	}
}

/* After a back-end restart: the chains marked in flight are resubmitted
 * from their copies, the used position is the last one committed, moved on
 * past used descriptors the last back-end wrote but did not record, and the
 * avail position is past every chain in flight. Returns how many requests
 * to resubmit, or -1 if the region holds no state for this ring (it is
 * set up fresh and the base's positions hold). */
static int pinfl_recover(struct vhost_vq *vq)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;
	unsigned num = vq->num, n = 0, slots = 0;
	uint16_t pos;
	bool wrap;
	uint8_t *busy;
	int h;

	if (q->version != 1 || q->desc_num != num || !(q->features & (1ull << VIRTIO_F_RING_PACKED)) ||
	    q->old_used_idx >= num || q->used_idx >= num) {
		pinfl_init(vq);
		return -1;
	}
	busy = calloc(num, 1);
	if (!busy)
		goto fresh;
	pos = q->old_used_idx;
	wrap = q->old_used_wrap_counter & 1;
	if (q->used_idx != pos || (q->used_wrap_counter & 1) != wrap) {
		/* A completion was being recorded: its used descriptor was
		 * written first, so its new position holds. */
		h = pinfl_written(vq, pos, wrap);
		if (h >= 0)
			q->desc[h].inflight = 0;
		pos = q->used_idx;
		wrap = q->used_wrap_counter & 1;
	}
	for (unsigned i = 0; i < num && (h = pinfl_written(vq, pos, wrap)) >= 0; i++) {
		if (q->desc[h].num == 0 || q->desc[h].num > num)
			goto bad;
		q->desc[h].inflight = 0;
		pos_add(&pos, &wrap, q->desc[h].num, num);
	}
	vq->infl_counter = 0;
	for (unsigned i = 0; i < num; i++) {
		unsigned k = q->desc[i].num, e = i;

		if (q->desc[i].inflight != 1)
			continue;
		if (k == 0 || slots + k > num)
			goto bad;
		for (unsigned j = 0; j < k; j++) {
			if (e >= num || busy[e])
				goto bad; /* a link out of range, or two chains sharing an entry */
			busy[e] = 1;
			if (j + 1 < k)
				e = q->desc[e].next;
		}
		if (e != q->desc[i].last)
			goto bad;
		slots += k;
		vq->resubmit[n++] = (uint16_t)i;
		if (q->desc[i].counter > vq->infl_counter)
			vq->infl_counter = q->desc[i].counter;
	}
	resubmit_sort(vq, n, pinfl_counter);
	vq->nresubmit = n;
	vq->p_used = vq->p_sig = pos;
	vq->p_used_wrap = vq->p_sig_wrap = wrap;
	pos_add(&pos, &wrap, slots, num);
	vq->p_avail = pos;
	vq->p_avail_wrap = wrap;
	q->used_idx = q->old_used_idx = vq->p_used;
	q->used_wrap_counter = q->old_used_wrap_counter = vq->p_used_wrap;
	pinfl_free_list(vq, busy);
	free(busy);
	return (int)n;
bad:
	fb_log(vq->c->e, FB_LOG_WARN,
	       "vhost %s: queue %u: the packed inflight region is inconsistent; starting from the ring base instead",
	       vq->c->name, vq->index);
fresh:
	free(busy);
	vq->nresubmit = 0;
	pinfl_init(vq);
	return -1;
}

/* A chain was taken (its descriptors copied into entries from the free
 * head on, `last` the final one): it is in flight once its head says so;
 * then the free list moves past it (the commit). */
static void pinfl_take(struct vhost_vq *vq, struct vhost_req *req, uint16_t last)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;
	uint16_t h = q->free_head;
	struct vhu_inflight_desc_packed *x = &q->desc[h];

	x->num = req->ndesc;
	x->last = last;
	x->counter = ++vq->infl_counter;
	req->infl_head = h;
	__atomic_store_n(&x->inflight, 1, __ATOMIC_RELEASE);
	q->free_head = q->desc[last].next;
	q->old_free_head = q->free_head;
	vq->pinfl_free -= req->ndesc;
}

/* After its used descriptor is written: the new used position, then the
 * entry, then its entries back on the free list and the commit. A restart
 * in between finds the used descriptor in the ring (pinfl_recover). */
static void pinfl_done(struct vhost_vq *vq, const struct vhost_req *req)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;
	uint16_t h = req->infl_head, last = q->desc[h].last;

	q->used_idx = vq->p_used;
	q->used_wrap_counter = vq->p_used_wrap;
	__atomic_store_n(&q->desc[h].inflight, 0, __ATOMIC_RELEASE);
	if (last < vq->num) { /* else the front-end scribbled on it: the entries stay lost */
		q->desc[last].next = q->free_head;
		q->free_head = h;
		vq->pinfl_free += req->ndesc;
	}
	q->old_free_head = q->free_head;
	q->old_used_idx = q->used_idx;
	q->old_used_wrap_counter = q->used_wrap_counter;
}

/* Requests this large are published at once: the guest can reuse their
 * buffers while we copy the next ones (small ones batch per loop pass). */
#define VQ_PUBLISH_NOW_BYTES (64u << 10)

/* Packed: the used descriptor goes where the next one is due; the driver
 * skips the rest of the chain's slots (it knows each buffer's length). */
static void vq_used_packed(struct vhost_vq *vq, const struct vhost_req *req)
{
	struct vring_packed_desc *d = &vq->pdesc[vq->p_used];

	d->id = req->head;
	d->len = req->used_len;
	store16(&d->flags, vq->p_used_wrap ? (uint16_t)(VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED) : 0);
	vq->p_last_flags = &d->flags;
	vq->p_used = (uint16_t)(vq->p_used + req->ndesc);
	if (vq->p_used >= vq->num) {
		vq->p_used = (uint16_t)(vq->p_used - vq->num);
		vq->p_used_wrap = !vq->p_used_wrap;
	}
}

void vhost_vq_complete(struct vhost_req *req)
{
	struct vhost_vq *vq = req->vq;

	if (req->status)
		__atomic_store_n(req->status, req->st, __ATOMIC_RELAXED);
	if (vq->packed) {
		vq_used_packed(vq, req);
		if (vq->pinfl)
			pinfl_done(vq, req);
	} else {
		struct vring_used_elem *e = &vq->used->ring[vq->used_idx % vq->num];

		e->id = req->head;
		e->len = req->used_len;
		vq->used_idx++;
	}
	atomic_fetch_add_explicit(&vq->ops_done, 1, memory_order_relaxed);
	req->next = vq->free_reqs;
	vq->free_reqs = req;
	vq->inflight--;
	if (req->bytes >= VQ_PUBLISH_NOW_BYTES) {
		vq_publish(vq);
		if (!vq->stopping)
			return;
	}
	if (!vq->flush_queued) {
		vq->flush_queued = true;
		fb_reactor_defer(vq->reactor, &vq->flush);
	}
}

/* -------------------------------------------------------------- chains */

static int vq_add_buf(struct vhost_vq *vq, struct vhost_req *req, uint64_t addr, uint32_t len)
{
	int n;

	if (len == 0)
		return 0;
	n = vhost_mem_gpa_iov(vq->mem, addr, len, req->iov + req->niov, (int)FB_VHOST_REQ_IOV - req->niov);
	if (n < 0)
		return -EINVAL;
	req->niov += n;
	return 0;
}

int vhost_vq_chain(struct vhost_vq *vq, uint16_t head, struct vhost_req *req, int *nout)
{
	const struct vring_desc *table = vq->desc;
	uint32_t max = vq->num, idx = head, seen = 0, total = 0;
	bool indirect = false, writable = false;

	req->niov = 0;
	*nout = 0;
	for (;;) {
		struct vring_desc d;

		if (idx >= max || ++seen > max || ++total > FB_VHOST_MAX_CHAIN)
			return -EINVAL; /* out of the table, or a loop */
		memcpy(&d, (const void *)&table[idx], sizeof(d));
		__atomic_signal_fence(__ATOMIC_SEQ_CST); /* one read of d */
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (indirect || !vq->indirect || (d.flags & VRING_DESC_F_NEXT) || d.len == 0 ||
			    d.len % sizeof(struct vring_desc) ||
			    d.len / sizeof(struct vring_desc) > FB_VHOST_MAX_CHAIN)
				return -EINVAL;
			table = vhost_mem_gpa_ptr(vq->mem, d.addr, d.len);
			if (!table || ((uintptr_t)table & 7))
				return -EINVAL;
			max = d.len / sizeof(struct vring_desc);
			indirect = true;
			idx = 0;
			seen = 0;
			continue;
		}
		if (d.flags & VRING_DESC_F_WRITE) {
			writable = true;
		} else if (writable) {
			return -EINVAL; /* readable after writable */
		}
		if (vq_add_buf(vq, req, d.addr, d.len))
			return -EINVAL;
		if (!writable)
			*nout = req->niov;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

/* One data descriptor of a packed chain or its indirect table: the same
 * rules as a split chain (readable ones first). */
static int vq_packed_buf(struct vhost_vq *vq, struct vhost_req *req, const struct vring_packed_desc *d,
			 bool *writable, int *nout)
{
	if (d->flags & VRING_DESC_F_WRITE)
		*writable = true;
	else if (*writable)
		return -EINVAL; /* readable after writable */
	if (vq_add_buf(vq, req, d->addr, d->len))
		return -EINVAL;
	if (!*writable)
		*nout = req->niov;
	return 0;
}

/* An indirect table of a packed ring: every entry is part of the chain
 * (NEXT means nothing there), none may be indirect again. */
static int vq_packed_indirect(struct vhost_vq *vq, struct vhost_req *req, const struct vring_packed_desc *d,
			      bool *writable, int *nout)
{
	const struct vring_packed_desc *t;
	uint32_t n;

	if (!vq->indirect || (d->flags & VRING_DESC_F_NEXT) || d->len == 0 ||
	    d->len % sizeof(struct vring_packed_desc) ||
	    d->len / sizeof(struct vring_packed_desc) > FB_VHOST_MAX_CHAIN)
		return -EINVAL;
	t = vhost_mem_gpa_ptr(vq->mem, d->addr, d->len);
	if (!t || ((uintptr_t)t & 7))
		return -EINVAL;
	n = d->len / sizeof(struct vring_packed_desc);
	for (uint32_t i = 0; i < n; i++) {
		struct vring_packed_desc e;

		memcpy(&e, (const void *)&t[i], sizeof(e));
		__atomic_signal_fence(__ATOMIC_SEQ_CST); /* one read of e */
		if ((e.flags & VRING_DESC_F_INDIRECT) || vq_packed_buf(vq, req, &e, writable, nout))
			return -EINVAL;
	}
	return 0;
}

/* The n-th descriptor of a packed chain (an indirect one only first);
 * after a bad one the rest of the chain is only walked past. */
static void vq_packed_one(struct vhost_vq *vq, struct vhost_req *req, const struct vring_packed_desc *d, unsigned n,
			  bool *writable, int *nout, bool *bad)
{
	if (*bad)
		return;
	if (d->flags & VRING_DESC_F_INDIRECT)
		*bad = n != 1 || vq_packed_indirect(vq, req, d, writable, nout) != 0;
	else
		*bad = vq_packed_buf(vq, req, d, writable, nout) != 0;
}

/* Walks the packed chain at the avail position into req (id, slots,
 * iovecs) and moves the avail position past it. -EINVAL: the chain is
 * whole but a buffer in it is bad (answer it); -EPROTO: the ring itself
 * is broken (a chain longer than the ring, or running into a slot that is
 * not available), nothing was consumed. */
static int vq_chain_packed(struct vhost_vq *vq, struct vhost_req *req, int *nout)
{
	struct vhu_inflight_queue_packed *q = vq->pinfl;
	uint16_t pos = vq->p_avail, e = q ? q->free_head : 0, last = 0;
	bool wrap = vq->p_avail_wrap, writable = false, bad = false;
	unsigned n = 0;

	req->niov = 0;
	*nout = 0;
	for (;;) {
		struct vring_packed_desc d;

		if (++n > vq->num)
			return -EPROTO;
		memcpy(&d, (const void *)&vq->pdesc[pos], sizeof(d));
		__atomic_signal_fence(__ATOMIC_SEQ_CST); /* one read of d */
		if (!vring_packed_avail(d.flags, wrap))
			return -EPROTO;
		if (q) {
			/* Its copy, in the next free entry (committed by pinfl_take). */
			if (n > vq->pinfl_free)
				return -EPROTO; /* more slots in flight than the ring has */
			if (e >= vq->num)
				return -EBADF;
			q->desc[e] = (struct vhu_inflight_desc_packed){
				.next = q->desc[e].next, .id = d.id, .flags = d.flags, .len = d.len, .addr = d.addr };
			last = e;
			e = q->desc[e].next;
		}
		if (++pos == vq->num) {
			pos = 0;
			wrap = !wrap;
		}
		vq_packed_one(vq, req, &d, n, &writable, nout, &bad);
		if (!(d.flags & VRING_DESC_F_NEXT)) {
			req->head = d.id; /* the buffer id is in the chain's last descriptor */
			break;
		}
	}
	req->ndesc = (uint16_t)n;
	vq->p_avail = pos;
	vq->p_avail_wrap = wrap;
	if (q)
		pinfl_take(vq, req, last);
	return bad ? -EINVAL : 0;
}

/* A chain the last back-end took, from its copies in the inflight region
 * (the ring slots may hold used descriptors by now). -EBADF: the region's
 * links are out of range. */
static int vq_chain_saved(struct vhost_vq *vq, uint16_t h, struct vhost_req *req, int *nout)
{
	const struct vhu_inflight_queue_packed *q = vq->pinfl;
	unsigned k = q->desc[h].num;
	bool writable = false, bad = false;
	uint16_t e = h;

	req->niov = 0;
	*nout = 0;
	if (k == 0 || k > vq->num)
		return -EBADF;
	for (unsigned i = 0; i < k; i++) {
		struct vring_packed_desc d;

		if (e >= vq->num)
			return -EBADF;
		d = (struct vring_packed_desc){ q->desc[e].addr, q->desc[e].len, q->desc[e].id, q->desc[e].flags };
		vq_packed_one(vq, req, &d, i + 1, &writable, nout, &bad);
		req->head = d.id;
		e = q->desc[e].next;
	}
	req->ndesc = (uint16_t)k;
	req->infl_head = h;
	return bad ? -EINVAL : 0;
}

/* ------------------------------------------------------------- process */

/* Takes one request: the split chain at head, the packed chain at the
 * avail position, or (saved) a packed chain from the inflight region's
 * head entry `head`. */
static void vq_take(struct vhost_vq *vq, uint16_t head, bool saved)
{
	struct vhost_req *req = vq->free_reqs;
	int nout, rc;

	req->head = head;
	req->ndesc = 1;
	req->status = NULL;
	req->used_len = 0;
	req->bytes = 0;
	req->st = VIRTIO_BLK_S_IOERR;
	if (saved)
		rc = vq_chain_saved(vq, head, req, &nout);
	else
		rc = vq->packed ? vq_chain_packed(vq, req, &nout) : vhost_vq_chain(vq, head, req, &nout);
	if (rc == -EPROTO) {
		vq_break(vq, "packed ring: a chain longer than the ring or running into a slot that is not available");
		return;
	}
	if (rc == -EBADF) {
		vq_break(vq, "packed inflight region: a link out of range (the front-end changed it)");
		return;
	}
	vq->free_reqs = req->next;
	vq->inflight++;
	if (rc < 0) {
		/* Still answer it (with no status byte we trust): the guest
		 * gets the head back instead of a hung request. */
		vq->c->bad_msgs++;
		req->niov = 0;
		nout = 0;
	}
	rc = vhost_blk_handle(req, nout);
	if (rc == -ENOMEM) {
		req->next = NULL;
		if (vq->retry_tail)
			vq->retry_tail->next = req;
		else
			vq->retry_head = req;
		vq->retry_tail = req;
	}
}

static unsigned vq_retry(struct vhost_vq *vq)
{
	unsigned n = 0;

	while (vq->retry_head) {
		struct vhost_req *req = vq->retry_head;

		if (vhost_blk_submit(req) == -ENOMEM)
			break;
		vq->retry_head = req->next;
		if (!vq->retry_head)
			vq->retry_tail = NULL;
		n++;
	}
	return n;
}

static void vq_mark_inflight(struct vhost_vq *vq, uint16_t head)
{
	if (!vq->infl)
		return;
	vq->infl->desc[head].counter = ++vq->infl_counter;
	__atomic_store_n(&vq->infl->desc[head].inflight, 1, __ATOMIC_RELEASE);
}

/* Takes what the avail ring holds; returns how many requests it started. */
static unsigned vq_process(struct vhost_vq *vq)
{
	unsigned n = vq_retry(vq);
	uint16_t avail_idx;

	if (vq->stopping || vq->broken || vq->retry_head)
		return n;
	while (vq->nresubmit && vq->free_reqs) {
		vq_take(vq, vq->resubmit[--vq->nresubmit], vq->packed);
		n++;
	}
	if (vq->packed) {
		while (vq->free_reqs && !vq->retry_head && !vq->broken &&
		       vring_packed_avail(load16(&vq->pdesc[vq->p_avail].flags), vq->p_avail_wrap)) {
			vq_take(vq, 0, false);
			n++;
		}
		return n;
	}
	avail_idx = load16(&vq->avail->idx);
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->num) {
		vq_break(vq, "avail index moved by more than the queue size");
		return n;
	}
	while (vq->last_avail != avail_idx && vq->free_reqs && !vq->retry_head) {
		uint16_t head = load16(&vq->avail->ring[vq->last_avail % vq->num]);

		if (head >= vq->num) {
			vq_break(vq, "avail ring names a descriptor head beyond the queue size");
			break;
		}
		vq->last_avail++;
		vq_mark_inflight(vq, head);
		vq_take(vq, head, false);
		n++;
	}
	return n;
}

static void vq_notify_enable(struct vhost_vq *vq, bool on)
{
	if (vq->packed) {
		store16_sc(&vq->dev_event->flags, on ? VRING_PACKED_EVENT_ENABLE : VRING_PACKED_EVENT_DISABLE);
	} else if (vq->event_idx) {
		if (on)
			store16_sc(vq_avail_event(vq), vq->last_avail);
	} else {
		uint16_t f = vq->used->flags;

		store16_sc(&vq->used->flags, on ? (uint16_t)(f & ~VRING_USED_F_NO_NOTIFY)
					     : (uint16_t)(f | VRING_USED_F_NO_NOTIFY));
	}
}

static void vq_kick_arm(struct vhost_vq *vq)
{
	struct io_uring_sqe *sqe = fb_reactor_get_sqe(vq->reactor);

	io_uring_prep_poll_add(sqe, vq->kickfd, POLLIN);
	io_uring_sqe_set_data(sqe, &vq->kick_op);
	vq->kick_armed = true;
	vq->ops++;
}

/* The queue's poller stays registered while it runs (no allocation per
 * wake-up) and idles at once unless `polling`. */
static void vq_poll_start(struct vhost_vq *vq)
{
	vq->last_work_ns = fb_now_ns();
	if (vq->polling)
		return;
	vq->polling = true;
	vq_notify_enable(vq, false);
}

/* Back to sleep: notifications on, then look once more, since the guest may
 * have published before it could see them on. Returns false if it did. */
static bool vq_poll_stop(struct vhost_vq *vq)
{
	vq_notify_enable(vq, true); /* seq_cst store, then a seq_cst load */
	if (!vq->broken && vq->free_reqs &&
	    (vq->packed ? vring_packed_avail(load16_sc(&vq->pdesc[vq->p_avail].flags), vq->p_avail_wrap)
			: load16_sc(&vq->avail->idx) != vq->last_avail)) {
		vq_notify_enable(vq, false);
		return false;
	}
	vq->polling = false;
	vq_kick_arm(vq);
	return true;
}

static int vq_poll(void *arg)
{
	struct vhost_vq *vq = arg;
	uint64_t now;

	if (!vq->polling)
		return 0;
	if (vq->stopping) {
		vq_retry(vq);
		if (!vq->retry_head) {
			vq->polling = false;
			vq_check_stopped(vq);
		}
		return 1;
	}
	if (vq_process(vq)) {
		vq->last_work_ns = fb_now_ns();
		return 1;
	}
	now = fb_now_ns();
	/* Keep polling while requests are parked for memory or the window is
	 * open, but let a runnable peer on this CPU (often the very front-end
	 * we wait for) go first: reactors share few cores. */
	if (vq->retry_head || now - vq->last_work_ns < vq->poll_ns) {
		sched_yield();
		return 1;
	}
	if (!vq_poll_stop(vq))
		vq->last_work_ns = now;
	else
		vq->slept_ns = now;
	return 1;
}

/* The poll window adapts as QEMU's does: a kick soon after polling stopped
 * (within the largest window) means a longer window would have caught it
 * without a sleep and a wake-up: grow. A kick long after means the spin
 * before the sleep bought nothing: shrink. A front-end that answers each
 * completion at once (QD1) keeps being caught by the poll and keeps the
 * full window; large requests whose next kick comes much later stop
 * paying for a spin per request. */
static void vq_poll_adapt(struct vhost_vq *vq)
{
	uint64_t gap;

	if (!vq->slept_ns)
		return;
	gap = fb_now_ns() - vq->slept_ns;
	vq->slept_ns = 0;
	if (gap <= FB_VHOST_POLL_NS)
		vq->poll_ns = vq->poll_ns < FB_VHOST_POLL_MIN_NS ? FB_VHOST_POLL_MIN_NS
			    : vq->poll_ns >= FB_VHOST_POLL_NS / 2 ? FB_VHOST_POLL_NS
								  : vq->poll_ns * 2;
	else
		vq->poll_ns = vq->poll_ns / 2 < FB_VHOST_POLL_MIN_NS / 2 ? 0 : vq->poll_ns / 2;
}

static void vq_kick_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct vhost_vq *vq = container_of(op, struct vhost_vq, kick_op);
	uint64_t v;

	(void)flags;
	vq->ops--;
	vq->kick_armed = false;
	if (vq->stopping) {
		vq_check_stopped(vq);
		return;
	}
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		fb_log(fb_reactor_engine(vq->reactor), FB_LOG_WARN, "vhost %s: queue %u: kick poll failed: %s",
		       vq->c->name, vq->index, strerror(-res));
		vq_break(vq, "kick eventfd unusable");
		return;
	}
	if (read(vq->kickfd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing to clear */
	}
	vq_poll_adapt(vq);
	vq_process(vq);
	vq_poll_start(vq);
}

static void vq_cancel_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct vhost_vq *vq = container_of(op, struct vhost_vq, cancel_op);

	(void)res;
	(void)flags;
	vq->ops--;
	vq_check_stopped(vq);
}

/* --------------------------------------------------------- start / stop */

static void vq_check_stopped(struct vhost_vq *vq)
{
	if (!vq->stopping || vq->inflight || vq->ops || vq->flush_queued || vq->polling || vq->stopped)
		return;
	if (vq->ch) {
		fb_put_io_channel(vq->ch);
		vq->ch = NULL;
	}
	/* Safe from inside the poller too: freed after the current pass. */
	fb_poller_unregister(vq->poller);
	vq->poller = NULL;
	pthread_mutex_lock(&vq->stop_lock);
	vq->stopped = true;
	pthread_cond_broadcast(&vq->stop_cond);
	pthread_mutex_unlock(&vq->stop_lock);
}

static void vq_start_msg(void *arg)
{
	struct vhost_vq *vq = arg;

	vq->ch = fb_bdev_get_io_channel(vq->c->desc);
	vq->poller = fb_poller_register(vq->reactor, vq_poll, vq);
	if (!vq->ch || !vq->poller)
		vq_break(vq, "no I/O channel or poller for the queue (out of memory)");
	vq->last_work_ns = fb_now_ns();
	vq->slept_ns = 0;
	vq->poll_ns = FB_VHOST_POLL_NS;
	/* Requests may have been published before the kick fd existed. */
	vq_process(vq);
	vq_poll_start(vq);
}

static void vq_stop_msg(void *arg)
{
	struct vhost_vq *vq = arg;
	struct io_uring_sqe *sqe;

	vq->stopping = true;
	if (vq->kick_armed) {
		sqe = fb_reactor_get_sqe(vq->reactor);
		io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)&vq->kick_op);
		io_uring_sqe_set_data(sqe, &vq->cancel_op);
		vq->ops++;
	}
	if (!vq->retry_head)
		vq->polling = false;
	else
		vq->polling = true; /* the poller drains the parked requests first */
	vq_check_stopped(vq);
}

/* Reconnect with an inflight region: heads still marked in flight were
 * taken by the previous back-end and never completed; the used ring says
 * which of the last batch were published after all. Returns how many
 * avail entries were consumed beyond used->idx (-1 if the region is not
 * usable and the base must be trusted instead). */
static int vq_infl_recover(struct vhost_vq *vq, uint16_t used_idx)
{
	struct vhu_inflight_queue *q = vq->infl;
	unsigned n = 0;

	if (q->version != 1 || q->desc_num != vq->num || (q->features & (1ull << VIRTIO_F_RING_PACKED))) {
		memset(q->desc, 0, sizeof(q->desc[0]) * vq->num);
		q->features = vq->c->features;
		q->version = 1;
		q->desc_num = (uint16_t)vq->num;
		q->used_idx = used_idx;
		q->last_batch_head = 0;
		vq->infl_counter = 0;
		return -1;
	}
	if ((uint16_t)(used_idx - q->used_idx) <= vq->num) {
		for (uint16_t i = q->used_idx; i != used_idx; i++) {
			uint32_t id = vq->used->ring[i % vq->num].id;

			if (id < vq->num)
				q->desc[id].inflight = 0;
		}
	}
	q->used_idx = used_idx;
	vq->infl_counter = 0;
	for (unsigned i = 0; i < vq->num; i++) {
		if (q->desc[i].inflight != 1)
			continue;
		vq->resubmit[n++] = (uint16_t)i;
		if (q->desc[i].counter > vq->infl_counter)
			vq->infl_counter = q->desc[i].counter;
	}
	resubmit_sort(vq, n, infl_counter);
	vq->nresubmit = n;
	return (int)n;
}

static int vq_alloc_reqs(struct vhost_vq *vq, char *err, size_t errlen)
{
	vq->reqs = calloc(vq->num, sizeof(*vq->reqs));
	vq->resubmit = calloc(vq->num, sizeof(*vq->resubmit));
	if (!vq->reqs || !vq->resubmit) {
		free(vq->reqs);
		free(vq->resubmit);
		vq->reqs = NULL;
		vq->resubmit = NULL;
		snprintf(err, errlen, "queue %u: out of memory for %u requests", vq->index, vq->num);
		return -ENOMEM;
	}
	vq->free_reqs = NULL;
	for (unsigned i = vq->num; i-- > 0;) {
		vq->reqs[i].vq = vq;
		vq->reqs[i].next = vq->free_reqs;
		vq->free_reqs = &vq->reqs[i];
	}
	vq->retry_head = vq->retry_tail = NULL;
	vq->nresubmit = 0;
	return 0;
}

/* Runtime state both ring kinds start from; marks the queue started. */
static void vq_start_common(struct vhost_vq *vq)
{
	struct vhost_ctrlr *c = vq->c;

	vq->signalled_valid = false;
	vq->event_idx = c->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = c->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	vq->stopping = vq->broken = vq->polling = vq->stopped = false;
	vq->flush_queued = false;
	vq->inflight = vq->ops = 0;
	vq->poller = NULL;
	vq->mem = &c->mem;
	vq->kick_op.cb = vq_kick_cb;
	vq->cancel_op.cb = vq_cancel_cb;
	vq->flush.fn = vq_flush;
	vq->reactor = c->qreactor[vq->index];
	vq->started = true;
}

/* Starts a set-up queue of either ring kind on its reactor; `consumed`
 * requests recovered from the inflight region are resubmitted there. */
static int vq_launch(struct vhost_vq *vq, int consumed)
{
	vq_start_common(vq);
	if (consumed > 0)
		fb_log(fb_reactor_engine(vq->reactor), FB_LOG_INFO,
		       "vhost %s: queue %u: resubmitting %d requests left in flight by the last back-end",
		       vq->c->name, vq->index, consumed);
	fb_reactor_run_sync(vq->reactor, vq_start_msg, vq);
	return 0;
}

/* A packed ring: the descriptor ring and the two event suppression
 * structures, positions and wrap counters from the base (a new ring is
 * position 0 with both counters 1). */
static int vq_start_packed(struct vhost_vq *vq, char *err, size_t errlen)
{
	struct vhost_ctrlr *c = vq->c;
	uint16_t av = (uint16_t)(vq->base & 0xffff), us = (uint16_t)(vq->base >> 16);
	int consumed = -1;

	if (!us)
		us = av; /* a front-end that sends only the avail half: nothing in flight */
	vq->pdesc = vhost_mem_uva_ptr(&c->mem, vq->desc_uva, 16ull * vq->num);
	vq->drv_event = vhost_mem_uva_ptr(&c->mem, vq->avail_uva, sizeof(struct vring_packed_event));
	vq->dev_event = vhost_mem_uva_ptr(&c->mem, vq->used_uva, sizeof(struct vring_packed_event));
	if (!vq->pdesc || !vq->drv_event || !vq->dev_event || ((uintptr_t)vq->pdesc & 15) ||
	    ((uintptr_t)vq->drv_event & 3) || ((uintptr_t)vq->dev_event & 3)) {
		snprintf(err, errlen, "queue %u: packed ring addresses are outside guest memory or misaligned",
			 vq->index);
		vq->pdesc = NULL;
		vq->drv_event = vq->dev_event = NULL;
		return -EFAULT;
	}
	if ((av & 0x7fff) >= vq->num || (us & 0x7fff) >= vq->num) {
		snprintf(err, errlen, "queue %u: packed ring base 0x%08x names a position beyond the queue size %u",
			 vq->index, vq->base, vq->num);
		vq->pdesc = NULL;
		vq->drv_event = vq->dev_event = NULL;
		return -EINVAL;
	}
	if (vq_alloc_reqs(vq, err, errlen))
		return -ENOMEM;
	vq->p_avail = av & 0x7fff;
	vq->p_avail_wrap = av >> VRING_PACKED_WRAP_BIT;
	vq->p_used = vq->p_sig = us & 0x7fff;
	vq->p_used_wrap = vq->p_sig_wrap = us >> VRING_PACKED_WRAP_BIT;
	vq->p_last_flags = NULL;
	/* The same region as a split ring's, in the packed layout. */
	vq->pinfl = vq->infl && vq->num <= c->infl_qsize ? (struct vhu_inflight_queue_packed *)(void *)vq->infl : NULL;
	if (vq->pinfl)
		consumed = pinfl_recover(vq);
	return vq_launch(vq, consumed);
}

int vhost_vq_start(struct vhost_vq *vq, char *err, size_t errlen)
{
	struct vhost_ctrlr *c = vq->c;
	uint16_t used_idx;
	int consumed = -1;

	if (vq->started)
		return 0;
	if (!vq->num || !vq->addr_set || vq->kickfd < 0 || !c->mem.n) {
		snprintf(err, errlen, "queue %u is not set up (num, addresses, kick fd and memory table are needed)",
			 vq->index);
		return -EINVAL;
	}
	vq->packed = c->features & (1ull << VIRTIO_F_RING_PACKED);
	if (vq->packed)
		return vq_start_packed(vq, err, errlen);
	vq->desc = vhost_mem_uva_ptr(&c->mem, vq->desc_uva, 16ull * vq->num);
	vq->avail = vhost_mem_uva_ptr(&c->mem, vq->avail_uva, vring_avail_size(vq->num));
	vq->used = vhost_mem_uva_ptr(&c->mem, vq->used_uva, vring_used_size(vq->num));
	if (!vq->desc || !vq->avail || !vq->used || ((uintptr_t)vq->desc & 15) ||
	    ((uintptr_t)vq->avail & 1) || ((uintptr_t)vq->used & 3)) {
		snprintf(err, errlen, "queue %u: ring addresses are outside guest memory or misaligned",
			 vq->index);
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		return -EFAULT;
	}
	if (vq_alloc_reqs(vq, err, errlen))
		return -ENOMEM;
	used_idx = load16(&vq->used->idx);
	if (vq->infl && vq->num > c->infl_qsize)
		vq->infl = NULL; /* laid out for smaller queues: unusable */
	if (vq->infl)
		consumed = vq_infl_recover(vq, used_idx);
	vq->last_avail = consumed >= 0 ? (uint16_t)(used_idx + consumed) : vq->base;
	vq->used_idx = used_idx;
	return vq_launch(vq, consumed);
}

void vhost_vq_stop(struct vhost_vq *vq)
{
	if (!vq->started)
		return;
	fb_reactor_run_sync(vq->reactor, vq_stop_msg, vq);
	pthread_mutex_lock(&vq->stop_lock);
	while (!vq->stopped)
		pthread_cond_wait(&vq->stop_cond, &vq->stop_lock);
	pthread_mutex_unlock(&vq->stop_lock);
	/* Requests parked for a resubmit stay marked in the inflight region,
	 * so the next start takes them again; count them as consumed. */
	if (vq->packed)
		vq->base = (uint32_t)(vq->p_avail | (unsigned)vq->p_avail_wrap << VRING_PACKED_WRAP_BIT) |
			   (uint32_t)(vq->p_used | (unsigned)vq->p_used_wrap << VRING_PACKED_WRAP_BIT) << 16;
	else
		vq->base = vq->last_avail;
	free(vq->reqs);
	free(vq->resubmit);
	vq->reqs = NULL;
	vq->resubmit = NULL;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->pdesc = NULL;
	vq->drv_event = vq->dev_event = NULL;
	vq->pinfl = NULL;
	vq->mem = NULL;
	vq->started = false;
}
