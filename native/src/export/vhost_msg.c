/* vhost-user messages of one front-end connection (control thread).
 *
 * The socket is non-blocking: bytes (and the fds that come with them)
 * accumulate in the connection's buffer until a whole message is there,
 * so a front-end that sends half a message stalls only itself. A message
 * whose framing or size is wrong closes the connection; a well-formed
 * request that cannot be honoured fails (REPLY_ACK) and is logged.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost_blk.h"

#define INFL_ALIGN 64u

struct msg_ctx {
	struct vhost_ctrlr *c;
	const struct vhu_hdr *hdr;
	const uint8_t *p;         /* payload */
	int *fds;                 /* taken fds are set to -1 */
	int nfds;
	char err[256];
};

uint64_t vhost_blk_features(const struct vhost_ctrlr *c)
{
	uint64_t f = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
		     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VHU_F_PROTOCOL_FEATURES) |
		     (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_F_RING_PACKED);

	if (c->has_flush)
		f |= 1ull << VIRTIO_BLK_F_FLUSH;
	if (c->readonly)
		f |= 1ull << VIRTIO_BLK_F_RO;
	if (c->has_unmap && !c->readonly)
		f |= 1ull << VIRTIO_BLK_F_DISCARD;
	if (c->has_write_zeroes && !c->readonly)
		f |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

static const uint64_t PROTOCOL_FEATURES =
	(1ull << VHU_PF_MQ) | (1ull << VHU_PF_REPLY_ACK) | (1ull << VHU_PF_CONFIG) |
	(1ull << VHU_PF_INFLIGHT_SHMFD) | (1ull << VHU_PF_RESET_DEVICE);

/* Largest discard / write-zeroes request, sectors (4 GiB - 512 at most). */
#define MAX_DISCARD_SECTORS 0x7fffffu

void vhost_blk_config(const struct vhost_ctrlr *c, struct virtio_blk_config *cfg)
{
	uint64_t sectors = c->num_blocks * c->block_size / VIRTIO_BLK_SECTOR;
	uint32_t align = c->block_size / VIRTIO_BLK_SECTOR;
	uint32_t maxd = MAX_DISCARD_SECTORS / align * align;

	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = sectors;
	cfg->seg_max = FB_VHOST_SEG_MAX;
	cfg->blk_size = c->block_size;
	cfg->num_queues = (uint16_t)c->num_queues;
	cfg->min_io_size = 1;
	if (c->has_unmap) {
		cfg->max_discard_sectors = maxd;
		cfg->max_discard_seg = 1;
		cfg->discard_sector_alignment = align;
	}
	if (c->has_write_zeroes) {
		cfg->max_write_zeroes_sectors = maxd;
		cfg->max_write_zeroes_seg = 1;
		cfg->write_zeroes_may_unmap = 1;
	}
}

/* ------------------------------------------------------------- replies */

static bool send_reply(struct vhost_ctrlr *c, uint32_t request, const void *payload, uint32_t size,
		       int fd)
{
	struct vhu_hdr h = { .request = request, .flags = VHU_VERSION | VHU_FLAG_REPLY, .size = size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do {
		n = sendmsg(c->conn.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	/* A front-end that does not read its replies is dropped, not waited for. */
	return n == (ssize_t)(sizeof(h) + size);
}

static bool send_u64(struct vhost_ctrlr *c, uint32_t request, uint64_t v)
{
	return send_reply(c, request, &v, sizeof(v), -1);
}

/* -------------------------------------------------------------- queues */

static void stop_all(struct vhost_ctrlr *c, bool *was)
{
	for (unsigned i = 0; i < c->num_queues; i++) {
		if (was)
			was[i] = c->vq[i].started;
		vhost_vq_stop(&c->vq[i]);
	}
}

/* Starts queue i if the front-end has finished setting it up. */
static void try_start(struct vhost_ctrlr *c, unsigned i)
{
	struct vhost_vq *vq = &c->vq[i];
	bool pf = c->features & (1ull << VHU_F_PROTOCOL_FEATURES);
	char err[256];

	if (vq->started || vq->kickfd < 0 || !vq->num || !vq->addr_set || !c->mem.n)
		return;
	if (pf && !vq->enabled)
		return;
	if (vhost_vq_start(vq, err, sizeof(err)))
		fb_log(c->e, FB_LOG_WARN, "vhost %s: %s", c->name, err);
}

static void infl_unmap(struct vhost_ctrlr *c)
{
	if (c->infl_map)
		munmap(c->infl_map, c->infl_len);
	if (c->infl_fd >= 0)
		close(c->infl_fd);
	c->infl_map = NULL;
	c->infl_len = 0;
	c->infl_fd = -1;
	c->infl_qsize = 0;
	for (unsigned i = 0; i < FB_VHOST_MAX_QUEUES; i++)
		c->vq[i].infl = NULL;
}

/* Room for either layout: the ring kind is negotiated (SET_FEATURES) after
 * QEMU asks for the region, so the queue picks its layout when it starts. */
static size_t infl_stride(unsigned qsize)
{
	size_t split = sizeof(struct vhu_inflight_queue) + (size_t)qsize * sizeof(struct vhu_inflight_desc);
	size_t packed = sizeof(struct vhu_inflight_queue_packed) +
			(size_t)qsize * sizeof(struct vhu_inflight_desc_packed);
	size_t n = split > packed ? split : packed;

	return (n + INFL_ALIGN - 1) / INFL_ALIGN * INFL_ALIGN;
}

static void infl_assign(struct vhost_ctrlr *c, uint8_t *base, unsigned nq, unsigned qsize)
{
	c->infl_qsize = qsize;
	for (unsigned i = 0; i < nq && i < c->num_queues; i++)
		c->vq[i].infl = (struct vhu_inflight_queue *)(void *)(base + i * infl_stride(qsize));
}

/* ------------------------------------------------------------ handlers */

/* Each returns 0 (done), or -errno with m->err set (request refused). A
 * positive return means "already replied". */

static int need_size(struct msg_ctx *m, uint32_t size)
{
	if (m->hdr->size != size) {
		snprintf(m->err, sizeof(m->err), "request %u: payload is %u bytes, expected %u",
			 m->hdr->request, m->hdr->size, size);
		return -EPROTO;
	}
	return 0;
}

static int queue_index(struct msg_ctx *m, uint32_t idx)
{
	if (idx >= m->c->num_queues) {
		snprintf(m->err, sizeof(m->err), "request %u: queue %u does not exist (the device has %u)",
			 m->hdr->request, idx, m->c->num_queues);
		return -EINVAL;
	}
	return 0;
}

static int take_fd(struct msg_ctx *m)
{
	for (int i = 0; i < m->nfds; i++) {
		if (m->fds[i] >= 0) {
			int fd = m->fds[i];

			m->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

static int h_set_mem_table(struct msg_ctx *m)
{
	struct vhost_ctrlr *c = m->c;
	struct vhu_mem_table t;
	bool was[FB_VHOST_MAX_QUEUES];
	int rc;

	memset(&t, 0, sizeof(t));
	if (m->hdr->size < 8 || m->hdr->size > sizeof(t))
		return need_size(m, sizeof(t));
	memcpy(&t, m->p, m->hdr->size);
	if (t.nregions > VHU_MAX_MEM_REGIONS || m->hdr->size != 8 + t.nregions * sizeof(t.regions[0]))
		return need_size(m, 8 + (t.nregions <= VHU_MAX_MEM_REGIONS ? t.nregions : 0) * 32);
	/* In-flight requests point into the old mappings: drain them first. */
	stop_all(c, was);
	vhost_mem_unmap(&c->mem);
	rc = vhost_mem_map(&c->mem, &t, m->fds, m->nfds, m->err, sizeof(m->err));
	if (rc == 0)
		for (unsigned i = 0; i < c->num_queues; i++)
			if (was[i])
				try_start(c, i);
	return rc;
}

enum vring_fd_kind { FD_KICK, FD_CALL, FD_ERR };

static int h_vring_fd(struct msg_ctx *m, enum vring_fd_kind kind)
{
	struct vhost_ctrlr *c = m->c;
	struct vhost_vq *vq;
	uint64_t v;
	int *slot;
	bool was;
	int rc, fd = -1;

	if ((rc = need_size(m, 8)))
		return rc;
	memcpy(&v, m->p, 8);
	if ((rc = queue_index(m, v & VHU_VRING_IDX_MASK)))
		return rc;
	vq = &c->vq[v & VHU_VRING_IDX_MASK];
	if (!(v & VHU_VRING_NOFD)) {
		fd = take_fd(m);
		if (fd < 0) {
			snprintf(m->err, sizeof(m->err), "request %u: no fd attached", m->hdr->request);
			return -EINVAL;
		}
	}
	slot = kind == FD_KICK ? &vq->kickfd : kind == FD_CALL ? &vq->callfd : &vq->errfd;
	/* The reactor reads these fds while the queue runs: swap them stopped. */
	was = vq->started;
	vhost_vq_stop(vq);
	if (*slot >= 0)
		close(*slot);
	*slot = fd;
	if (kind == FD_KICK && fd >= 0) {
		int fl = fcntl(fd, F_GETFL);

		/* We read it after a poll says it is readable; never block. */
		if (fl >= 0)
			(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	}
	if (was || kind == FD_KICK)
		try_start(c, vq->index);
	return 0;
}

static int h_get_config(struct msg_ctx *m)
{
	struct vhost_ctrlr *c = m->c;
	struct vhu_config req, rep;
	struct virtio_blk_config cfg;
	uint8_t all[VHU_CONFIG_MAX];

	if (m->hdr->size < VHU_CONFIG_HDR_SIZE || m->hdr->size > sizeof(req))
		return need_size(m, VHU_CONFIG_HDR_SIZE);
	memset(&req, 0, sizeof(req));
	memcpy(&req, m->p, m->hdr->size);
	if (req.size > VHU_CONFIG_MAX || req.offset > VHU_CONFIG_MAX - req.size ||
	    m->hdr->size != VHU_CONFIG_HDR_SIZE + req.size) {
		snprintf(m->err, sizeof(m->err), "GET_CONFIG: offset %u size %u outside the %u-byte space",
			 req.offset, req.size, VHU_CONFIG_MAX);
		return -EPROTO;
	}
	vhost_blk_config(c, &cfg);
	memset(all, 0, sizeof(all));
	memcpy(all, &cfg, sizeof(cfg));
	rep = req;
	memcpy(rep.payload, all + req.offset, req.size);
	return send_reply(c, VHU_GET_CONFIG, &rep, VHU_CONFIG_HDR_SIZE + req.size, -1) ? 1 : -EPIPE;
}

static int h_get_inflight(struct msg_ctx *m)
{
	struct vhost_ctrlr *c = m->c;
	struct vhu_inflight in;
	size_t len;
	void *p;
	int fd, rc;

	if ((rc = need_size(m, sizeof(in))))
		return rc;
	memcpy(&in, m->p, sizeof(in));
	if (in.num_queues == 0 || in.num_queues > c->num_queues || in.queue_size == 0 ||
	    in.queue_size > FB_VHOST_MAX_QUEUE_SIZE) {
		snprintf(m->err, sizeof(m->err), "GET_INFLIGHT_FD: %u queues of %u entries: want 1-%u queues of 1-%u",
			 in.num_queues, in.queue_size, c->num_queues, FB_VHOST_MAX_QUEUE_SIZE);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->num_queues; i++)
		if (c->vq[i].started) {
			snprintf(m->err, sizeof(m->err), "GET_INFLIGHT_FD while queue %u runs", i);
			return -EBUSY;
		}
	len = infl_stride(in.queue_size) * in.num_queues;
	fd = memfd_create("flexbso-vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		snprintf(m->err, sizeof(m->err), "GET_INFLIGHT_FD: memfd: %s", strerror(-rc));
		return rc;
	}
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		close(fd);
		snprintf(m->err, sizeof(m->err), "GET_INFLIGHT_FD: mmap: %s", strerror(-rc));
		return rc;
	}
	infl_unmap(c);
	c->infl_map = p;
	c->infl_len = len;
	c->infl_fd = fd;
	infl_assign(c, p, in.num_queues, in.queue_size);
	in.mmap_size = len;
	in.mmap_offset = 0;
	return send_reply(c, VHU_GET_INFLIGHT_FD, &in, sizeof(in), fd) ? 1 : -EPIPE;
}

static int h_set_inflight(struct msg_ctx *m)
{
	struct vhost_ctrlr *c = m->c;
	struct vhu_inflight in;
	void *p;
	int fd, rc;

	if ((rc = need_size(m, sizeof(in))))
		return rc;
	memcpy(&in, m->p, sizeof(in));
	fd = take_fd(m);
	if (fd < 0) {
		snprintf(m->err, sizeof(m->err), "SET_INFLIGHT_FD: no fd attached");
		return -EINVAL;
	}
	if (in.num_queues == 0 || in.num_queues > c->num_queues || in.queue_size == 0 ||
	    in.queue_size > FB_VHOST_MAX_QUEUE_SIZE ||
	    in.mmap_size < infl_stride(in.queue_size) * in.num_queues ||
	    in.mmap_offset + in.mmap_size < in.mmap_offset || in.mmap_size > (64u << 20)) {
		close(fd);
		snprintf(m->err, sizeof(m->err), "SET_INFLIGHT_FD: region of %llu bytes cannot hold %u queues of %u",
			 (unsigned long long)in.mmap_size, in.num_queues, in.queue_size);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->num_queues; i++)
		if (c->vq[i].started) {
			close(fd);
			snprintf(m->err, sizeof(m->err), "SET_INFLIGHT_FD while queue %u runs", i);
			return -EBUSY;
		}
	{
		struct vhost_mem probe;
		struct vhu_mem_table t = { .nregions = 1 };

		/* Same fd checks as guest memory (size within the file). */
		t.regions[0].memory_size = in.mmap_size;
		t.regions[0].mmap_offset = in.mmap_offset;
		rc = vhost_mem_map(&probe, &t, &fd, 1, m->err, sizeof(m->err));
		if (rc) {
			close(fd);
			return rc;
		}
		p = probe.r[0].host;
		infl_unmap(c);
		c->infl_map = probe.r[0].map;
		c->infl_len = probe.r[0].map_len;
		c->infl_fd = fd;
		infl_assign(c, p, in.num_queues, in.queue_size);
	}
	return 0;
}

static void reset_device(struct vhost_ctrlr *c)
{
	stop_all(c, NULL);
	for (unsigned i = 0; i < FB_VHOST_MAX_QUEUES; i++) {
		struct vhu_inflight_queue *infl = c->vq[i].infl;

		vhost_vq_reset(&c->vq[i]);
		c->vq[i].infl = infl; /* the inflight region outlives a reset */
	}
	c->features = 0;
}

static int dispatch(struct msg_ctx *m)
{
	struct vhost_ctrlr *c = m->c;
	const struct vhu_hdr *h = m->hdr;
	struct vhu_vring_state vs;
	struct vhu_vring_addr va;
	uint64_t v;
	int rc;

	switch (h->request) {
	case VHU_GET_FEATURES:
		return send_u64(c, h->request, vhost_blk_features(c)) ? 1 : -EPIPE;
	case VHU_SET_FEATURES:
		if ((rc = need_size(m, 8)))
			return rc;
		memcpy(&v, m->p, 8);
		if (v & ~vhost_blk_features(c)) {
			snprintf(m->err, sizeof(m->err), "SET_FEATURES: bits 0x%llx were not offered",
				 (unsigned long long)(v & ~vhost_blk_features(c)));
			return -EINVAL;
		}
		c->features = v;
		return 0;
	case VHU_GET_PROTOCOL_FEATURES:
		return send_u64(c, h->request, PROTOCOL_FEATURES) ? 1 : -EPIPE;
	case VHU_SET_PROTOCOL_FEATURES:
		if ((rc = need_size(m, 8)))
			return rc;
		memcpy(&v, m->p, 8);
		if (v & ~PROTOCOL_FEATURES) {
			snprintf(m->err, sizeof(m->err), "SET_PROTOCOL_FEATURES: bits 0x%llx were not offered",
				 (unsigned long long)(v & ~PROTOCOL_FEATURES));
			return -EINVAL;
		}
		c->protocol_features = v;
		return 0;
	case VHU_SET_OWNER:
		c->owner = true;
		return 0;
	case VHU_RESET_OWNER:
	case VHU_RESET_DEVICE:
		reset_device(c);
		return 0;
	case VHU_GET_QUEUE_NUM:
		return send_u64(c, h->request, c->num_queues) ? 1 : -EPIPE;
	case VHU_SET_MEM_TABLE:
		return h_set_mem_table(m);
	case VHU_SET_VRING_NUM:
	case VHU_SET_VRING_BASE:
	case VHU_GET_VRING_BASE:
	case VHU_SET_VRING_ENABLE:
		if ((rc = need_size(m, sizeof(vs))))
			return rc;
		memcpy(&vs, m->p, sizeof(vs));
		if ((rc = queue_index(m, vs.index)))
			return rc;
		if (h->request == VHU_GET_VRING_BASE) {
			struct vhost_vq *vq = &c->vq[vs.index];

			/* Stops the ring: in-flight requests complete first, so
			 * the base names exactly what was consumed. */
			vhost_vq_stop(vq);
			if (vq->kickfd >= 0)
				close(vq->kickfd);
			vq->kickfd = -1;
			vs.num = vq->base;
			return send_reply(c, h->request, &vs, sizeof(vs), -1) ? 1 : -EPIPE;
		}
		if (h->request == VHU_SET_VRING_ENABLE) {
			c->vq[vs.index].enabled = vs.num != 0;
			if (vs.num)
				try_start(c, vs.index);
			else
				vhost_vq_stop(&c->vq[vs.index]);
			return 0;
		}
		if (c->vq[vs.index].started) {
			snprintf(m->err, sizeof(m->err), "request %u: queue %u is running (stop it with GET_VRING_BASE first)",
				 h->request, vs.index);
			return -EBUSY;
		}
		if (h->request == VHU_SET_VRING_NUM) {
			if (vs.num == 0 || vs.num > FB_VHOST_MAX_QUEUE_SIZE || (vs.num & (vs.num - 1))) {
				snprintf(m->err, sizeof(m->err), "SET_VRING_NUM: %u is not a power of two in 1-%u",
					 vs.num, FB_VHOST_MAX_QUEUE_SIZE);
				return -EINVAL;
			}
			c->vq[vs.index].num = vs.num;
		} else {
			/* Packed rings carry the used position in bits 16-31 too. */
			if (vs.num > 0xffff && !(c->features & (1ull << VIRTIO_F_RING_PACKED))) {
				snprintf(m->err, sizeof(m->err), "SET_VRING_BASE: %u does not fit 16 bits", vs.num);
				return -EINVAL;
			}
			if ((c->features & (1ull << VIRTIO_F_RING_PACKED)) &&
			    ((vs.num & 0x7fff) >= c->vq[vs.index].num ||
			     ((vs.num >> 16) & 0x7fff) >= c->vq[vs.index].num)) {
				snprintf(m->err, sizeof(m->err), "SET_VRING_BASE: packed ring base 0x%08x names a "
					 "position beyond the queue size %u (send SET_VRING_NUM first)",
					 vs.num, c->vq[vs.index].num);
				return -EINVAL;
			}
			c->vq[vs.index].base = vs.num;
		}
		return 0;
	case VHU_SET_VRING_ADDR:
		if ((rc = need_size(m, sizeof(va))))
			return rc;
		memcpy(&va, m->p, sizeof(va));
		if ((rc = queue_index(m, va.index)))
			return rc;
		if (c->vq[va.index].started) {
			snprintf(m->err, sizeof(m->err), "SET_VRING_ADDR: queue %u is running", va.index);
			return -EBUSY;
		}
		c->vq[va.index].desc_uva = va.desc_uaddr;
		c->vq[va.index].avail_uva = va.avail_uaddr;
		c->vq[va.index].used_uva = va.used_uaddr;
		c->vq[va.index].addr_set = true;
		return 0;
	case VHU_SET_VRING_KICK:
		return h_vring_fd(m, FD_KICK);
	case VHU_SET_VRING_CALL:
		return h_vring_fd(m, FD_CALL);
	case VHU_SET_VRING_ERR:
		return h_vring_fd(m, FD_ERR);
	case VHU_GET_CONFIG:
		return h_get_config(m);
	case VHU_SET_CONFIG:
		/* Nothing in our config space is writable (no writeback toggle). */
		return 0;
	case VHU_GET_INFLIGHT_FD:
		return h_get_inflight(m);
	case VHU_SET_INFLIGHT_FD:
		return h_set_inflight(m);
	default:
		snprintf(m->err, sizeof(m->err), "request %u is not supported", h->request);
		return -ENOTSUP;
	}
}

/* Requests that always carry a reply of their own. */
static bool has_reply(uint32_t req)
{
	return req == VHU_GET_FEATURES || req == VHU_GET_PROTOCOL_FEATURES || req == VHU_GET_QUEUE_NUM ||
	       req == VHU_GET_VRING_BASE || req == VHU_GET_CONFIG || req == VHU_GET_INFLIGHT_FD;
}

/* One whole message in c->conn.buf. Returns false to close the connection. */
static bool handle(struct vhost_ctrlr *c)
{
	struct vhost_conn *k = &c->conn;
	struct vhu_hdr hdr;
	struct msg_ctx m;
	int rc;

	memcpy(&hdr, k->buf, sizeof(hdr));
	memset(&m, 0, sizeof(m));
	m.c = c;
	m.hdr = &hdr;
	m.p = k->buf + sizeof(hdr);
	m.fds = k->fds;
	m.nfds = k->nfds;
	rc = dispatch(&m);
	if (rc < 0) {
		c->bad_msgs++;
		fb_log(c->e, FB_LOG_WARN, "vhost %s: %s", c->name, m.err[0] ? m.err : strerror(-rc));
		if (rc == -EPROTO || rc == -EPIPE)
			return false;
	}
	if (rc <= 0 && (hdr.flags & VHU_FLAG_NEED_REPLY) &&
	    (c->protocol_features & (1ull << VHU_PF_REPLY_ACK)) && !has_reply(hdr.request))
		return send_u64(c, hdr.request, rc == 0 ? 0 : 1);
	if (rc < 0 && has_reply(hdr.request)) {
		/* The front-end waits for a reply we cannot give: hang up. */
		return false;
	}
	return true;
}

static void drop_fds(struct vhost_conn *k)
{
	for (int i = 0; i < k->nfds; i++)
		if (k->fds[i] >= 0)
			close(k->fds[i]);
	k->nfds = 0;
}

bool vhost_conn_readable(struct vhost_ctrlr *c)
{
	struct vhost_conn *k = &c->conn;

	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct iovec iov;
		struct msghdr mh;
		size_t want;
		ssize_t n;

		if (k->have < sizeof(struct vhu_hdr)) {
			want = sizeof(struct vhu_hdr) - k->have;
		} else {
			struct vhu_hdr h;

			memcpy(&h, k->buf, sizeof(h));
			want = sizeof(h) + h.size - k->have;
		}
		iov.iov_base = k->buf + k->have;
		iov.iov_len = want;
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		n = recvmsg(k->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t off = 0; off + sizeof(int) <= cm->cmsg_len - CMSG_LEN(0); off += sizeof(int)) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + off, sizeof(int));
				if (k->nfds < VHU_MAX_FDS)
					k->fds[k->nfds++] = fd;
				else
					close(fd);
			}
		}
		if (mh.msg_flags & MSG_CTRUNC) {
			c->bad_msgs++;
			return false;
		}
		if (n == 0)
			return false;
		k->have += (size_t)n;
		if (k->have == sizeof(struct vhu_hdr)) {
			struct vhu_hdr h;

			/* Checked before any payload is read: the size is trusted below. */
			memcpy(&h, k->buf, sizeof(h));
			if ((h.flags & VHU_FLAG_VERSION_MASK) != VHU_VERSION || h.size > VHU_MAX_PAYLOAD ||
			    h.request == 0 || h.request >= VHU_REQUEST_MAX) {
				fb_log(c->e, FB_LOG_WARN, "vhost %s: malformed message header (request %u, flags 0x%x, size %u); disconnecting",
				       c->name, h.request, h.flags, h.size);
				c->bad_msgs++;
				return false;
			}
		}
		if (k->have >= sizeof(struct vhu_hdr)) {
			struct vhu_hdr h;
			bool ok;

			memcpy(&h, k->buf, sizeof(h));
			if (k->have == sizeof(h) + h.size) {
				ok = handle(c);
				k->have = 0;
				drop_fds(k);
				if (!ok)
					return false;
			}
		}
	}
}

void vhost_conn_close(struct vhost_ctrlr *c)
{
	struct vhost_conn *k = &c->conn;

	stop_all(c, NULL);
	for (unsigned i = 0; i < FB_VHOST_MAX_QUEUES; i++)
		vhost_vq_reset(&c->vq[i]);
	vhost_mem_unmap(&c->mem);
	infl_unmap(c);
	drop_fds(k);
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	k->have = 0;
	c->features = c->protocol_features = 0;
	c->owner = false;
}
