/* fb_vhost: a userspace vhost-user-blk initiator — a virtio-blk driver in a
 * process. Guest memory is a memfd shared with the back-end through
 * SET_MEM_TABLE; each queue is a split virtqueue (or a packed one with
 * --packed) with its own kick and call eventfds and its own thread. It drives any vhost-user-blk socket (ours,
 * qemu-storage-daemon's), so both are measured the same way.
 *
 *   fb_vhost --socket PATH perf   [--rw randread|randwrite|randrw|read|write]
 *            [--mix PCT_READS] [--bs SIZE] [--qd N] [--queues N] [--seconds S]
 *            [--poll] [--no-event-idx] [--packed] [--json]
 *   fb_vhost --socket PATH verify [--bs SIZE] [--qd N] [--queues N] [--ops N] [--packed] [--json]
 *   fb_vhost --socket PATH fuzz   [--packed] [--json]
 *   fb_vhost --socket PATH info
 *   fb_vhost --socket PATH hold   [--queues N] [--seconds S]
 *   fb_vhost memcpy [--bs SIZE] [--seconds S] [--json]
 *
 * perf: IOPS, MB/s and latency (mean, p50, p99, p99.9) over --seconds,
 * after --ramp seconds that are not counted.
 * hold: sets the queues up, prints "ready" and leaves them idle for --seconds
 * (a back-end's idle CPU with a live front-end). memcpy: this core's memcpy bandwidth
 * with --bs copies through 256 MiB (the limit of one copy per byte).
 * verify: writes patterns (block address, generation, random bytes) with
 * random writes and reads over a private region per queue, checks every
 * read, then flush, discard/write-zeroes (reads back zeros) and GET_ID.
 * With --reconnect (one queue, split or packed) it shares an inflight
 * region with the back-end and, when the back-end dies, connects again and
 * sets the same rings up from their used index (packed: the used position
 * it has seen), as QEMU's reconnect= does: nothing may be lost or fail.
 * fuzz: malformed messages and descriptor chains (with --packed: malformed
 * packed-ring chains: loops, wrap counters, out-of-range buffers and
 * indirect tables); after each the back-end
 * must still answer a fresh connection, and each case's expected answer
 * (an error status, a refused message, a stopped queue) is checked. Exit
 * status 0 only if every check passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../src/export/vhost_proto.h"

#define MAXQ 16
#define TIMEOUT_MS 5000

static const char *g_socket;
static bool g_packed; /* --packed: negotiate VIRTIO_F_RING_PACKED */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fb_vhost: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---------------------------------------------------------- connection */

static int sock_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = TIMEOUT_MS / 1000 };

	if (fd < 0)
		return -errno;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	/* Every reply has a deadline. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Sends a raw message: header fields as given (the fuzzer lies in them). */
static int send_raw(int sock, uint32_t req, uint32_t flags, uint32_t size, const void *payload,
		    size_t plen, const int *fds, int nfds)
{
	struct vhu_hdr h = { .request = req, .flags = flags, .size = size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, plen } };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = plen ? 2 : 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)(sizeof(h) + plen) ? 0 : -EIO;
}

/* Receives one reply (payload up to cap); returns payload size or -errno.
 * *fd gets an attached fd (or -1). */
static int recv_reply(int sock, uint32_t req, void *payload, size_t cap, int *fd)
{
	struct vhu_hdr h;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(sock, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);

	if (fd)
		*fd = -1;
	if (n != (ssize_t)sizeof(h))
		return n == 0 ? -ECONNRESET : -EIO;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_type == SCM_RIGHTS) {
			int f;

			memcpy(&f, CMSG_DATA(cm), sizeof(int));
			if (fd)
				*fd = f;
			else
				close(f);
		}
	}
	if (h.request != req || !(h.flags & VHU_FLAG_REPLY) || h.size > cap)
		return -EPROTO;
	if (h.size && recv(sock, payload, h.size, MSG_WAITALL) != (ssize_t)h.size)
		return -EIO;
	return (int)h.size;
}

struct dev {
	int sock;
	uint64_t features, pfeatures;
	struct virtio_blk_config cfg;
	unsigned max_queues;
	int memfd;
	uint8_t *mem;
	size_t memsz;
	uint64_t gpa_base;           /* guest physical address of mem[0] */
	/* --reconnect: the inflight region the back-end gave us, kept across
	 * back-end restarts as QEMU keeps it. */
	bool reconnect;
	int infl_fd;
	struct vhu_inflight infl;
	struct vq *qs;
	unsigned nq;
	uint64_t reconnects;
};

static bool reply_ack(const struct dev *d)
{
	return d->pfeatures & (1ull << VHU_PF_REPLY_ACK);
}

/* A request without its own reply; waits for the ack when REPLY_ACK is on. */
static int msg(struct dev *d, uint32_t req, const void *p, size_t len, const int *fds, int nfds)
{
	uint64_t ack;
	int rc;

	rc = send_raw(d->sock, req, VHU_VERSION | (reply_ack(d) ? VHU_FLAG_NEED_REPLY : 0),
		      (uint32_t)len, p, len, fds, nfds);
	if (rc || !reply_ack(d))
		return rc;
	rc = recv_reply(d->sock, req, &ack, sizeof(ack), NULL);
	if (rc != 8)
		return rc < 0 ? rc : -EPROTO;
	return ack ? -EINVAL : 0;
}

static int get_u64(struct dev *d, uint32_t req, uint64_t *v)
{
	int rc = send_raw(d->sock, req, VHU_VERSION, 0, NULL, 0, NULL, 0);

	if (rc)
		return rc;
	rc = recv_reply(d->sock, req, v, sizeof(*v), NULL);
	return rc == 8 ? 0 : (rc < 0 ? rc : -EPROTO);
}

static int set_u64(struct dev *d, uint32_t req, uint64_t v)
{
	return msg(d, req, &v, sizeof(v), NULL, 0);
}

static void dev_init(struct dev *d)
{
	memset(d, 0, sizeof(*d));
	d->sock = d->memfd = d->infl_fd = -1;
}

/* Feature negotiation and config: everything before memory and rings. */
static int dev_open(struct dev *d, const char *path, bool event_idx)
{
	struct vhu_config cfg;
	uint64_t f, want;
	int rc;

	d->sock = sock_connect(path);
	if (d->sock < 0)
		return d->sock;
	if ((rc = get_u64(d, VHU_GET_FEATURES, &f)))
		return rc;
	if (!(f & (1ull << VHU_F_PROTOCOL_FEATURES)) || !(f & (1ull << VIRTIO_F_VERSION_1)))
		return -ENOTSUP;
	if ((rc = send_raw(d->sock, VHU_SET_OWNER, VHU_VERSION, 0, NULL, 0, NULL, 0)))
		return rc;
	if ((rc = get_u64(d, VHU_GET_PROTOCOL_FEATURES, &d->pfeatures)))
		return rc;
	d->pfeatures &= (1ull << VHU_PF_MQ) | (1ull << VHU_PF_REPLY_ACK) | (1ull << VHU_PF_CONFIG) |
			 (d->reconnect ? 1ull << VHU_PF_INFLIGHT_SHMFD : 0);
	if (!(d->pfeatures & (1ull << VHU_PF_CONFIG)))
		return -ENOTSUP;
	if (d->reconnect && !(d->pfeatures & (1ull << VHU_PF_INFLIGHT_SHMFD)))
		return -ENOTSUP;
	/* Not acked yet: REPLY_ACK applies from the next message on. */
	rc = send_raw(d->sock, VHU_SET_PROTOCOL_FEATURES, VHU_VERSION, 8, &d->pfeatures, 8, NULL, 0);
	if (rc)
		return rc;
	d->max_queues = 1;
	if (d->pfeatures & (1ull << VHU_PF_MQ)) {
		uint64_t q;

		if ((rc = get_u64(d, VHU_GET_QUEUE_NUM, &q)))
			return rc;
		d->max_queues = q > MAXQ ? MAXQ : (unsigned)q;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = sizeof(struct virtio_blk_config);
	rc = send_raw(d->sock, VHU_GET_CONFIG, VHU_VERSION, VHU_CONFIG_HDR_SIZE + cfg.size, &cfg,
		      VHU_CONFIG_HDR_SIZE + cfg.size, NULL, 0);
	if (rc)
		return rc;
	rc = recv_reply(d->sock, VHU_GET_CONFIG, &cfg, sizeof(cfg), NULL);
	if (rc != (int)(VHU_CONFIG_HDR_SIZE + sizeof(struct virtio_blk_config)))
		return rc < 0 ? rc : -EPROTO;
	memcpy(&d->cfg, cfg.payload, sizeof(d->cfg));
	if (!(f & (1ull << VIRTIO_BLK_F_BLK_SIZE)) || d->cfg.blk_size == 0)
		d->cfg.blk_size = 512;
	if (!(f & (1ull << VIRTIO_BLK_F_MQ)))
		d->max_queues = 1;
	else if (d->cfg.num_queues && d->cfg.num_queues < d->max_queues)
		d->max_queues = d->cfg.num_queues;
	want = (1ull << VIRTIO_F_VERSION_1) | (1ull << VHU_F_PROTOCOL_FEATURES) |
	       (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
	       (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |
	       (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES) |
	       (1ull << VIRTIO_BLK_F_RO);
	if (event_idx)
		want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
	if (g_packed) {
		if (!(f & (1ull << VIRTIO_F_RING_PACKED))) {
			fprintf(stderr, "fb_vhost: --packed: the back-end does not offer VIRTIO_F_RING_PACKED\n");
			return -ENOTSUP;
		}
		want |= 1ull << VIRTIO_F_RING_PACKED;
	}
	d->features = f & want;
	return set_u64(d, VHU_SET_FEATURES, d->features);
}

/* Guest memory: one memfd region at a fixed guest physical address. */
static int dev_mem(struct dev *d, size_t size)
{
	struct vhu_mem_table t;

	d->memsz = (size + 0x1fffff) & ~(size_t)0x1fffff;
	d->memfd = memfd_create("fb_vhost-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (d->memfd < 0 || ftruncate(d->memfd, (off_t)d->memsz) < 0)
		return -errno;
	d->mem = mmap(NULL, d->memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, d->memfd, 0);
	if (d->mem == MAP_FAILED)
		return -errno;
	d->gpa_base = 0x100000000ull; /* not 0: catches back-ends that confuse GPA and offsets */
	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	t.regions[0].guest_phys_addr = d->gpa_base;
	t.regions[0].memory_size = d->memsz;
	t.regions[0].userspace_addr = (uint64_t)(uintptr_t)d->mem;
	t.regions[0].mmap_offset = 0;
	return msg(d, VHU_SET_MEM_TABLE, &t, 8 + sizeof(t.regions[0]), &d->memfd, 1);
}

static uint64_t gpa(const struct dev *d, const void *p)
{
	return d->gpa_base + (uint64_t)((const uint8_t *)p - d->mem);
}

static void dev_close(struct dev *d)
{
	if (d->infl_fd >= 0)
		close(d->infl_fd);
	d->infl_fd = -1;
	if (d->sock >= 0)
		close(d->sock);
	if (d->mem && d->mem != MAP_FAILED)
		munmap(d->mem, d->memsz);
	if (d->memfd >= 0)
		close(d->memfd);
	d->sock = d->memfd = -1;
	d->mem = NULL;
}

/* --------------------------------------------------------------- queues */

struct slot {
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
	uint8_t *data;
	uint64_t t0;
	uint64_t blk;        /* first block of the I/O (verify) */
	bool busy, write;
	uint16_t ndesc;      /* packed: ring slots of the chain in flight */
};

struct vq {
	struct dev *d;
	unsigned index, num, qd;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, last_used;
	int kick, call, err;
	bool event_idx, poll;
	/* packed ring: the driver's next avail and used positions and wrap counters */
	bool packed;
	struct vring_packed_desc *pdesc;
	struct vring_packed_event *drv_event, *dev_event;
	uint16_t p_next, p_used;
	bool p_wrap, p_used_wrap;
	struct slot *slots;
	size_t bs;
	uint64_t kicks, waits;
};

static size_t ring_bytes(unsigned num)
{
	size_t desc = 16u * num, avail = vring_avail_size(num);

	if (g_packed) /* descriptor ring, then a page for both event structures */
		return ((desc + 4095) & ~(size_t)4095) + 4096;

	return ((desc + avail + 4095) & ~(size_t)4095) + ((vring_used_size(num) + 4095) & ~(size_t)4095);
}

/* Header and status, then the data buffer page-aligned. */
static size_t slot_bytes(size_t bs)
{
	return 4096 + ((bs + 4095) & ~(size_t)4095);
}

static size_t vq_bytes(unsigned num, unsigned qd, size_t bs)
{
	return ring_bytes(num) + qd * slot_bytes(bs) + 4096;
}

/* The ring messages for a laid-out queue, base = where the back-end starts
 * in the avail ring (0 for a new ring; the used index after a back-end
 * restart, as QEMU does when it could not ask the dead one). */
static int vq_send_setup(struct vq *q, uint32_t base)
{
	struct dev *d = q->d;
	struct vhu_vring_state st = { .index = q->index, .num = q->num };
	struct vhu_vring_addr a;
	uint64_t v = q->index;
	int rc, fd;

	if ((rc = msg(d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0)))
		return rc;
	st.num = base;
	if ((rc = msg(d, VHU_SET_VRING_BASE, &st, sizeof(st), NULL, 0)))
		return rc;
	memset(&a, 0, sizeof(a));
	a.index = q->index;
	a.desc_uaddr = (uint64_t)(uintptr_t)(q->packed ? (void *)q->pdesc : (void *)q->desc);
	a.avail_uaddr = (uint64_t)(uintptr_t)(q->packed ? (void *)q->drv_event : (void *)q->avail);
	a.used_uaddr = (uint64_t)(uintptr_t)(q->packed ? (void *)q->dev_event : (void *)q->used);
	if ((rc = msg(d, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0)))
		return rc;
	fd = q->call;
	if ((rc = msg(d, VHU_SET_VRING_CALL, &v, 8, &fd, 1)))
		return rc;
	fd = q->err;
	if ((rc = msg(d, VHU_SET_VRING_ERR, &v, 8, &fd, 1)))
		return rc;
	fd = q->kick;
	if ((rc = msg(d, VHU_SET_VRING_KICK, &v, 8, &fd, 1)))
		return rc;
	st.index = q->index;
	st.num = 1;
	return msg(d, VHU_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0);
}

/* A packed ring's base: avail and used halves at one position (position
 * 0 with wrap counters 1 for a new ring). */
static uint32_t vq_packed_base(uint16_t pos, bool wrap)
{
	uint32_t half = pos | (uint32_t)wrap << VRING_PACKED_WRAP_BIT;

	return half | half << 16;
}

/* Lays out queue i at mem + off, then sets it up on the back-end. */
static int vq_setup(struct vq *q, struct dev *d, unsigned index, unsigned num, unsigned qd, size_t bs,
		    size_t off, bool poll)
{
	uint8_t *base = d->mem + off, *p;

	memset(q, 0, sizeof(*q));
	q->d = d;
	q->index = index;
	q->num = num;
	q->qd = qd;
	q->bs = bs;
	q->poll = poll;
	q->event_idx = d->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	q->packed = d->features & (1ull << VIRTIO_F_RING_PACKED);
	if (q->packed) {
		q->pdesc = (struct vring_packed_desc *)(void *)base;
		q->drv_event = (struct vring_packed_event *)(void *)(base + ((16u * num + 4095) & ~(size_t)4095));
		q->dev_event = q->drv_event + 1;
		q->p_wrap = q->p_used_wrap = true;
	} else {
		q->desc = (struct vring_desc *)(void *)base;
		q->avail = (struct vring_avail *)(void *)(base + 16u * num);
		q->used = (struct vring_used *)(void *)(base + ((16u * num + vring_avail_size(num) + 4095) & ~(size_t)4095));
	}
	q->slots = calloc(qd, sizeof(*q->slots));
	if (!q->slots)
		return -ENOMEM;
	p = base + ring_bytes(num);
	for (unsigned i = 0; i < qd; i++) {
		q->slots[i].hdr = (struct virtio_blk_outhdr *)(void *)p;
		q->slots[i].status = p + 32;
		q->slots[i].data = (uint8_t *)(((uintptr_t)(p + 64) + 4095) & ~(uintptr_t)4095);
		p += slot_bytes(bs);
	}
	q->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->kick < 0 || q->call < 0 || q->err < 0)
		return -errno;
	return vq_send_setup(q, q->packed ? vq_packed_base(0, true) : 0);
}

static void vq_free(struct vq *q)
{
	free(q->slots);
	if (q->kick > 0)
		close(q->kick);
	if (q->call > 0)
		close(q->call);
	if (q->err > 0)
		close(q->err);
	q->slots = NULL;
	q->kick = q->call = q->err = -1;
}

static void vq_kick(struct vq *q, uint16_t old)
{
	uint64_t one = 1;
	bool k;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->packed) /* DESC mode is not tracked here: kick unless disabled */
		k = __atomic_load_n(&q->dev_event->flags, __ATOMIC_ACQUIRE) != VRING_PACKED_EVENT_DISABLE;
	else if (q->event_idx)
		k = vring_need_event(__atomic_load_n((uint16_t *)&q->used->ring[q->num], __ATOMIC_ACQUIRE),
				     q->avail_idx, old);
	else
		k = !(__atomic_load_n(&q->used->flags, __ATOMIC_ACQUIRE) & VRING_USED_F_NO_NOTIFY);
	if (k) {
		q->kicks++;
		if (write(q->kick, &one, sizeof(one)) < 0) {
			/* a kick pending already */
		}
	}
}

/* Publishes head (a chain the caller wrote) in the avail ring. */
static void vq_publish(struct vq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx % q->num] = head;
	q->avail_idx++;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

/* Packed: writes a chain of n descriptors at the next avail position, the
 * first one's flags last (that makes the whole chain available). */
static void vq_put_packed(struct vq *q, const struct vring_packed_desc *d, unsigned n)
{
	uint16_t pos = q->p_next, first_flags = 0;
	bool wrap = q->p_wrap;

	for (unsigned i = 0; i < n; i++) {
		struct vring_packed_desc *r = &q->pdesc[pos];
		uint16_t f = (uint16_t)(d[i].flags | (wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED));

		r->addr = d[i].addr;
		r->len = d[i].len;
		r->id = d[i].id;
		if (i == 0)
			first_flags = f;
		else
			r->flags = f;
		if (++pos == q->num) {
			pos = 0;
			wrap = !wrap;
		}
	}
	__atomic_store_n(&q->pdesc[q->p_next].flags, first_flags, __ATOMIC_RELEASE);
	q->p_next = pos;
	q->p_wrap = wrap;
	q->avail_idx++;
}

/* Builds slot s's request as a 3-descriptor chain (heads 3s..3s+2; on a
 * packed ring buffer id 3s at the next avail position). */
static void vq_submit(struct vq *q, unsigned s, uint32_t type, uint64_t sector, uint32_t len, bool write)
{
	struct slot *sl = &q->slots[s];
	struct vring_desc local[3], *d = q->packed ? local : &q->desc[3 * s];
	uint16_t head = (uint16_t)(3 * s);
	unsigned n = 0;

	sl->hdr->type = type;
	sl->hdr->ioprio = 0;
	sl->hdr->sector = sector;
	*sl->status = 0xff;
	d[n] = (struct vring_desc){ gpa(q->d, sl->hdr), 16, VRING_DESC_F_NEXT, (uint16_t)(head + n + 1) };
	n++;
	if (len) {
		d[n] = (struct vring_desc){ gpa(q->d, sl->data), len,
					    (uint16_t)(VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE)),
					    (uint16_t)(head + n + 1) };
		n++;
	}
	d[n] = (struct vring_desc){ gpa(q->d, sl->status), 1, VRING_DESC_F_WRITE, 0 };
	sl->busy = true;
	sl->write = write;
	sl->t0 = now_ns();
	if (q->packed) {
		struct vring_packed_desc p[3];

		for (unsigned i = 0; i <= n; i++)
			p[i] = (struct vring_packed_desc){ d[i].addr, d[i].len, head, d[i].flags };
		sl->ndesc = (uint16_t)(n + 1);
		vq_put_packed(q, p, n + 1);
		return;
	}
	vq_publish(q, head);
}

static int dev_reconnect(struct dev *d);

/* A completion is waiting. */
static bool vq_has_used(struct vq *q)
{
	if (q->packed)
		return vring_packed_used(__atomic_load_n(&q->pdesc[q->p_used].flags, __ATOMIC_ACQUIRE),
					 q->p_used_wrap);
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used;
}

/* Packed: takes the used descriptor at the used position (id, len) and
 * skips the slots of its chain; false if it names no buffer in flight. */
static bool vq_take_packed(struct vq *q, uint16_t *id, uint32_t *len)
{
	struct vring_packed_desc e = q->pdesc[q->p_used];
	unsigned n;

	*id = e.id;
	*len = e.len;
	if (e.id % 3 || e.id / 3 >= q->qd || !q->slots[e.id / 3].busy)
		return false;
	n = q->slots[e.id / 3].ndesc;
	q->p_used = (uint16_t)(q->p_used + n);
	if (q->p_used >= q->num) {
		q->p_used = (uint16_t)(q->p_used - q->num);
		q->p_used_wrap = !q->p_used_wrap;
	}
	q->last_used++;
	return true;
}

/* Interrupts on (and where the next one is wanted, with EVENT_IDX). */
static void vq_irq_on(struct vq *q)
{
	if (q->packed) {
		if (q->event_idx)
			__atomic_store_n(&q->drv_event->off_wrap,
					 (uint16_t)(q->p_used | (unsigned)q->p_used_wrap << VRING_PACKED_WRAP_BIT),
					 __ATOMIC_RELEASE);
		__atomic_store_n(&q->drv_event->flags,
				 q->event_idx ? VRING_PACKED_EVENT_DESC : VRING_PACKED_EVENT_ENABLE, __ATOMIC_RELEASE);
	} else if (q->event_idx) {
		__atomic_store_n(&q->avail->ring[q->num], q->last_used, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&q->avail->flags, 0, __ATOMIC_RELEASE);
	}
}

/* Next completion: *slot and its used len; -ETIMEDOUT after TIMEOUT_MS. */
static int vq_reap(struct vq *q, unsigned *slot, uint32_t *len, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		if (q->packed && vq_has_used(q)) {
			uint16_t id;

			if (!vq_take_packed(q, &id, len))
				return -EPROTO;
			*slot = id / 3u;
			return 0;
		}
		if (!q->packed && vq_has_used(q)) {
			struct vring_used_elem e = q->used->ring[q->last_used % q->num];

			q->last_used++;
			if (e.id >= q->num || e.id % 3 || e.id / 3 >= q->qd)
				return -EPROTO;
			*slot = e.id / 3;
			*len = e.len;
			return 0;
		}
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		if (q->poll)
			continue;
		/* Interrupts on, look again, then sleep on the call fd. */
		vq_irq_on(q);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (vq_has_used(q))
			continue;
		{
			struct pollfd p[2] = { { .fd = q->call, .events = POLLIN }, { .fd = q->d->sock, .events = POLLIN } };
			uint64_t v;

			q->waits++;
			/* With --reconnect the control socket is watched too: EOF
			 * means the back-end is gone (nothing else arrives on it). */
			if (poll(p, q->d->reconnect ? 2 : 1, 100) > 0) {
				if (p[0].revents && read(q->call, &v, sizeof(v)) < 0) {
					/* raced with another read */
				}
				if (q->d->reconnect && p[1].revents) {
					int rc = dev_reconnect(q->d);

					if (rc)
						return rc;
					deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
				}
			}
		}
	}
}

/* One synchronous request on slot 0 (verify, fuzz). Returns the status. */
static int vq_sync(struct vq *q, uint32_t type, uint64_t sector, uint32_t len, bool write)
{
	unsigned s;
	uint32_t ulen;
	uint16_t old = q->avail_idx;
	int rc;

	vq_submit(q, 0, type, sector, len, write);
	vq_kick(q, old);
	rc = vq_reap(q, &s, &ulen, TIMEOUT_MS);
	q->slots[0].busy = false;
	return rc < 0 ? rc : *q->slots[0].status;
}

/* Connects, negotiates and sets up nq queues of depth qd for bs-byte I/O. */
static int dev_setup(struct dev *d, struct vq *qs, unsigned nq, unsigned qd, size_t bs, bool poll,
		     bool event_idx)
{
	unsigned num = 128;
	size_t total = 0, off = 0;
	int rc;

	while (num < 3 * qd)
		num *= 2;
	if (num > 1024)
		return -E2BIG;
	if ((rc = dev_open(d, g_socket, event_idx)))
		return rc;
	if (nq > d->max_queues) {
		fprintf(stderr, "fb_vhost: the device has %u queues; asked for %u\n", d->max_queues, nq);
		return -EINVAL;
	}
	for (unsigned i = 0; i < nq; i++)
		total += vq_bytes(num, qd, bs);
	if (d->reconnect) {
		/* QEMU's order: get the region once, hand it back on every start. */
		d->infl = (struct vhu_inflight){ .num_queues = (uint16_t)nq, .queue_size = (uint16_t)num };
		rc = send_raw(d->sock, VHU_GET_INFLIGHT_FD, VHU_VERSION, sizeof(d->infl), &d->infl, sizeof(d->infl),
			      NULL, 0);
		if (rc || (rc = recv_reply(d->sock, VHU_GET_INFLIGHT_FD, &d->infl, sizeof(d->infl), &d->infl_fd)) < 0)
			return rc < 0 ? rc : -EIO;
		if (d->infl_fd < 0)
			return -EPROTO;
		if ((rc = msg(d, VHU_SET_INFLIGHT_FD, &d->infl, sizeof(d->infl), &d->infl_fd, 1)))
			return rc;
	}
	d->qs = qs;
	d->nq = nq;
	if ((rc = dev_mem(d, total)))
		return rc;
	for (unsigned i = 0; i < nq; i++) {
		if ((rc = vq_setup(&qs[i], d, i, num, qd, bs, off, poll)))
			return rc;
		off += vq_bytes(num, qd, bs);
	}
	return 0;
}

/* The back-end went away (--reconnect): connect again within 30 s and set
 * the same memory, inflight region and rings up again, each ring from its
 * used index, as QEMU does with reconnect=. Requests in flight stay in the
 * rings; the new back-end finds them in the inflight region. */
static int dev_reconnect(struct dev *d)
{
	uint64_t deadline = now_ns() + 30000000000ull;
	struct vhu_mem_table t;
	int rc = -ECONNREFUSED;

	close(d->sock);
	d->sock = -1;
	while (now_ns() < deadline) {
		rc = dev_open(d, g_socket, d->features & (1ull << VIRTIO_RING_F_EVENT_IDX));
		if (rc == 0)
			break;
		if (d->sock >= 0)
			close(d->sock);
		d->sock = -1;
		usleep(100000);
	}
	if (rc)
		return rc;
	if ((rc = msg(d, VHU_SET_INFLIGHT_FD, &d->infl, sizeof(d->infl), &d->infl_fd, 1)))
		return rc;
	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	t.regions[0] = (struct vhu_mem_region){ d->gpa_base, d->memsz, (uint64_t)(uintptr_t)d->mem, 0 };
	if ((rc = msg(d, VHU_SET_MEM_TABLE, &t, 8 + sizeof(t.regions[0]), &d->memfd, 1)))
		return rc;
	for (unsigned i = 0; i < d->nq; i++) {
		struct vq *q = &d->qs[i];

		/* Packed: what the driver has seen used; the back-end finds
		 * the rest in the inflight region. */
		if ((rc = vq_send_setup(q, q->packed ? vq_packed_base(q->p_used, q->p_used_wrap)
						      : __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE))))
			return rc;
	}
	d->reconnects++;
	return 0;
}

/* ----------------------------------------------------------------- perf */

/* Latency histogram: 64 sub-buckets per power of two (≤1.6% error). */
#define HBUCKETS (64 * 64)
struct hist {
	uint64_t n, sum;
	uint64_t b[HBUCKETS];
};

static unsigned hbucket(uint64_t v)
{
	unsigned msb;

	if (v < 64)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return (msb - 5) * 64 + (unsigned)((v >> (msb - 6)) & 63);
}

static uint64_t hvalue(unsigned b)
{
	unsigned msb;

	if (b < 64)
		return b;
	msb = b / 64 + 5;
	return ((uint64_t)(64 + b % 64) << (msb - 6));
}

static void hadd(struct hist *h, uint64_t v)
{
	unsigned b = hbucket(v);

	h->b[b < HBUCKETS ? b : HBUCKETS - 1]++;
	h->n++;
	h->sum += v;
}

static uint64_t hpct(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)(p * (double)h->n), acc = 0;

	for (unsigned i = 0; i < HBUCKETS; i++) {
		acc += h->b[i];
		if (acc > want)
			return hvalue(i);
	}
	return 0;
}

struct perf_opts {
	int rw;              /* 0 read, 1 write, 2 mix */
	bool random;
	unsigned mix;        /* % reads for mix */
	size_t bs;
	unsigned qd, queues;
	double seconds, ramp;
	bool poll, json, event_idx;
	bool reconnect;      /* verify: ride out back-end restarts (QEMU's reconnect=) */
	uint64_t ops;        /* verify: random ops per queue */
};

struct worker {
	struct vq *q;
	const struct perf_opts *o;
	uint64_t first_blk, nblk;  /* region, in bs units */
	struct hist *h;
	uint64_t ops, bytes, errors;
	uint64_t seed;
	uint64_t t0;         /* when counting started */
	int rc;
	pthread_t t;
};

static void *perf_thread(void *arg)
{
	struct worker *w = arg;
	struct vq *q = w->q;
	const struct perf_opts *o = w->o;
	uint64_t t_ramp = now_ns() + (uint64_t)(o->ramp * 1e9);
	uint64_t end = t_ramp + (uint64_t)(o->seconds * 1e9), seq = 0;
	bool counting = o->ramp <= 0;

	w->t0 = now_ns();
	unsigned inflight = 0;
	uint32_t secs = (uint32_t)(o->bs / VIRTIO_BLK_SECTOR);

	for (;;) {
		bool stop = now_ns() >= end;
		uint16_t old = q->avail_idx;
		unsigned s, slot;
		uint32_t len;

		for (s = 0; !stop && s < q->qd; s++) {
			uint64_t blk;
			bool wr;

			if (q->slots[s].busy)
				continue;
			blk = o->random ? rng(&w->seed) % w->nblk : seq++ % w->nblk;
			wr = o->rw == 1 || (o->rw == 2 && rng(&w->seed) % 100 >= o->mix);
			vq_submit(q, s, wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
				  (w->first_blk + blk) * secs, (uint32_t)o->bs, wr);
			inflight++;
		}
		if (q->avail_idx != old)
			vq_kick(q, old);
		if (!inflight)
			break;
		if (vq_reap(q, &slot, &len, TIMEOUT_MS)) {
			w->rc = -ETIMEDOUT;
			break;
		}
		if (!counting && now_ns() >= t_ramp) {
			counting = true;
			w->t0 = now_ns();
		}
		do {
			struct slot *sl = &q->slots[slot];

			if (counting && sl->t0 >= w->t0) {
				hadd(w->h, now_ns() - sl->t0);
				w->ops++;
				w->bytes += o->bs;
			}
			if (*sl->status != VIRTIO_BLK_S_OK)
				w->errors++;
			sl->busy = false;
			inflight--;
		} while (vq_has_used(q) && vq_reap(q, &slot, &len, TIMEOUT_MS) == 0);
	}
	return NULL;
}

static int run_perf(const struct perf_opts *o)
{
	struct dev d;
	struct vq qs[MAXQ];
	struct worker w[MAXQ];
	struct hist *h = calloc(1, sizeof(*h));
	uint64_t t0, t1, ops = 0, bytes = 0, errors = 0, nblk;
	double secs;
	int rc;

	if (!h)
		die("out of memory");
	dev_init(&d);
	rc = dev_setup(&d, qs, o->queues, o->qd, o->bs, o->poll, o->event_idx);
	if (rc)
		die("setting up %s: %s", g_socket, strerror(-rc));
	nblk = d.cfg.capacity * VIRTIO_BLK_SECTOR / o->bs;
	if (!nblk)
		die("device smaller than one block");
	t0 = now_ns() + (uint64_t)(o->ramp * 1e9);
	for (unsigned i = 0; i < o->queues; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].q = &qs[i];
		w[i].o = o;
		w[i].nblk = nblk;
		w[i].seed = 12345 + i;
		w[i].h = calloc(1, sizeof(struct hist));
		if (!w[i].h)
			die("out of memory");
		pthread_create(&w[i].t, NULL, perf_thread, &w[i]);
	}
	for (unsigned i = 0; i < o->queues; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].rc)
			die("queue %u: no completion within %d ms", i, TIMEOUT_MS);
		ops += w[i].ops;
		bytes += w[i].bytes;
		errors += w[i].errors;
		h->n += w[i].h->n;
		h->sum += w[i].h->sum;
		for (unsigned b = 0; b < HBUCKETS; b++)
			h->b[b] += w[i].h->b[b];
		free(w[i].h);
	}
	t1 = now_ns();
	secs = (double)(t1 - t0) / 1e9;
	if (o->json) {
		printf("{\"mode\":\"perf\",\"socket\":\"%s\",\"bs\":%zu,\"qd\":%u,\"queues\":%u,"
		       "\"seconds\":%.3f,\"ops\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"iops\":%.0f,"
		       "\"mbps\":%.1f,\"lat_mean_us\":%.2f,\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,"
		       "\"lat_p999_us\":%.2f}\n",
		       g_socket, o->bs, o->qd, o->queues, secs, ops, errors, (double)ops / secs,
		       (double)bytes / secs / 1e6, h->n ? (double)h->sum / (double)h->n / 1e3 : 0,
		       (double)hpct(h, 0.5) / 1e3, (double)hpct(h, 0.99) / 1e3, (double)hpct(h, 0.999) / 1e3);
	} else {
		printf("%s: bs %zu qd %u queues %u: %.0f IOPS, %.1f MB/s, latency mean %.1f us, p50 %.1f, "
		       "p99 %.1f, p99.9 %.1f; %" PRIu64 " errors\n",
		       g_socket, o->bs, o->qd, o->queues, (double)ops / secs, (double)bytes / secs / 1e6,
		       h->n ? (double)h->sum / (double)h->n / 1e3 : 0, (double)hpct(h, 0.5) / 1e3,
		       (double)hpct(h, 0.99) / 1e3, (double)hpct(h, 0.999) / 1e3, errors);
	}
	for (unsigned i = 0; i < o->queues; i++)
		vq_free(&qs[i]);
	dev_close(&d);
	free(h);
	return errors ? 1 : 0;
}

/* --------------------------------------------------------------- verify */

/* Block contents: every 512-byte sector starts with (block, generation,
 * sector) and continues with bytes derived from them. */
static void pattern(uint8_t *buf, size_t bs, uint64_t blk, uint64_t gen)
{
	for (size_t off = 0; off < bs; off += VIRTIO_BLK_SECTOR) {
		uint64_t s = blk * 0x100000001b3ull ^ gen * 0x9e3779b97f4a7c15ull ^ off;
		uint64_t hdr[3] = { blk, gen, off };

		memcpy(buf + off, hdr, sizeof(hdr));
		for (size_t i = sizeof(hdr); i < VIRTIO_BLK_SECTOR; i += 8) {
			uint64_t v = rng(&s);

			memcpy(buf + off + i, &v, 8);
		}
	}
}

struct vworker {
	struct vq *q;
	const struct perf_opts *o;
	uint64_t first, n;     /* region in bs blocks */
	uint64_t *gen;         /* expected generation per block (0 = zeros) */
	uint8_t *expect;
	uint64_t ops, mismatches, errors;
	uint64_t seed;
	char first_error[200];
	pthread_t t;
};

static void vfail(struct vworker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vfail(struct vworker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
	va_end(ap);
}

static void *verify_thread(void *arg)
{
	struct vworker *w = arg;
	struct vq *q = w->q;
	size_t bs = w->o->bs;
	uint32_t secs = (uint32_t)(bs / VIRTIO_BLK_SECTOR);
	uint64_t done = 0, issued = 0, total = w->n + w->o->ops; /* fill, then random ops */
	unsigned inflight = 0;
	bool *busy = calloc(w->n, sizeof(bool));

	if (!busy || !w->expect) {
		vfail(w, "out of memory");
		free(busy);
		return NULL;
	}
	while (done < total) {
		uint16_t old = q->avail_idx;
		unsigned slot;
		uint32_t len;

		for (unsigned s = 0; s < q->qd && issued < total; s++) {
			struct slot *sl = &q->slots[s];
			uint64_t blk;
			bool wr;

			if (sl->busy)
				continue;
			if (issued < w->n) {
				blk = issued;
				wr = true;
			} else {
				blk = rng(&w->seed) % w->n;
				if (busy[blk])
					continue; /* one I/O per block at a time: order is defined */
				wr = rng(&w->seed) % 2;
			}
			busy[blk] = true;
			sl->blk = blk;
			if (wr) {
				w->gen[blk]++;
				pattern(sl->data, bs, w->first + blk, w->gen[blk]);
			} else {
				memset(sl->data, 0xee, bs);
			}
			vq_submit(q, s, wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, (w->first + blk) * secs,
				  (uint32_t)bs, wr);
			issued++;
			inflight++;
		}
		if (q->avail_idx != old)
			vq_kick(q, old);
		if (vq_reap(q, &slot, &len, TIMEOUT_MS)) {
			vfail(w, "queue %u: no completion within %d ms", q->index, TIMEOUT_MS);
			break;
		}
		{
			struct slot *sl = &q->slots[slot];

			if (*sl->status != VIRTIO_BLK_S_OK) {
				w->errors++;
				vfail(w, "queue %u: block %" PRIu64 ": status %u", q->index, w->first + sl->blk,
				      *sl->status);
			} else if (!sl->write) {
				pattern(w->expect, bs, w->first + sl->blk, w->gen[sl->blk]);
				if (len != bs + 1)
					vfail(w, "queue %u: read used len %u, expected %zu", q->index, len, bs + 1);
				if (memcmp(w->expect, sl->data, bs) != 0) {
					w->mismatches++;
					vfail(w, "queue %u: block %" PRIu64 " (gen %" PRIu64 ") read back different data",
					      q->index, w->first + sl->blk, w->gen[sl->blk]);
				}
			}
			busy[sl->blk] = false;
			sl->busy = false;
			inflight--;
			done++;
			w->ops++;
		}
	}
	free(busy);
	return NULL;
}

static int run_verify(const struct perf_opts *o)
{
	struct dev d;
	struct vq qs[MAXQ];
	struct vworker w[MAXQ];
	uint64_t nblk, per, ops = 0, mism = 0, errs = 0;
	const char *first = NULL;
	char extra[300] = "";
	int rc, bad = 0;

	dev_init(&d);
	d.reconnect = o->reconnect;
	rc = dev_setup(&d, qs, o->queues, o->qd, o->bs, o->poll, o->event_idx);
	if (rc)
		die("setting up %s: %s", g_socket, strerror(-rc));
	if (o->reconnect && o->queues != 1)
		die("--reconnect drives one queue (one thread owns the connection)");
	nblk = d.cfg.capacity * VIRTIO_BLK_SECTOR / o->bs;
	per = nblk / o->queues;
	if (per > 4096)
		per = 4096; /* bounded run time: up to 4096 blocks per queue */
	if (per < 1)
		die("device too small for %u queues of %zu-byte blocks", o->queues, o->bs);
	for (unsigned i = 0; i < o->queues; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].q = &qs[i];
		w[i].o = o;
		w[i].first = i * (nblk / o->queues);
		w[i].n = per;
		w[i].gen = calloc(per, sizeof(uint64_t));
		w[i].expect = malloc(o->bs);
		w[i].seed = 777 + i;
		if (!w[i].gen)
			die("out of memory");
		pthread_create(&w[i].t, NULL, verify_thread, &w[i]);
	}
	for (unsigned i = 0; i < o->queues; i++) {
		pthread_join(w[i].t, NULL);
		ops += w[i].ops;
		mism += w[i].mismatches;
		errs += w[i].errors;
		if (w[i].first_error[0] && !first)
			first = w[i].first_error;
		if (w[i].first_error[0])
			bad = 1;
	}
	/* Flush, GET_ID, write-zeroes / discard on queue 0, block 0. */
	if (!bad) {
		struct vq *q = &qs[0];
		int st = vq_sync(q, VIRTIO_BLK_T_FLUSH, 0, 0, false);

		if (st != VIRTIO_BLK_S_OK && (d.features & (1ull << VIRTIO_BLK_F_FLUSH))) {
			snprintf(extra, sizeof(extra), "flush: status %d", st);
			bad = 1;
		}
		memset(q->slots[0].data, 0, 20);
		st = vq_sync(q, VIRTIO_BLK_T_GET_ID, 0, 20, false);
		if (st != VIRTIO_BLK_S_OK) {
			snprintf(extra, sizeof(extra), "GET_ID: status %d", st);
			bad = 1;
		}
		if (!bad && (d.features & (1ull << VIRTIO_BLK_F_WRITE_ZEROES)) && !(d.features & (1ull << VIRTIO_BLK_F_RO))) {
			struct virtio_blk_discard_wz *seg = (void *)q->slots[0].data;

			seg->sector = w[0].first * (o->bs / VIRTIO_BLK_SECTOR);
			seg->num_sectors = (uint32_t)(o->bs / VIRTIO_BLK_SECTOR);
			seg->flags = VIRTIO_BLK_WZ_F_UNMAP;
			st = vq_sync(q, VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*seg), true);
			if (st == VIRTIO_BLK_S_OK) {
				uint64_t sector = seg->sector;

				memset(q->slots[0].data, 0xee, o->bs);
				st = vq_sync(q, VIRTIO_BLK_T_IN, sector, (uint32_t)o->bs, false);
				for (size_t i = 0; st == VIRTIO_BLK_S_OK && i < o->bs; i++)
					if (q->slots[0].data[i]) {
						st = -1000;
						break;
					}
			}
			if (st != VIRTIO_BLK_S_OK) {
				snprintf(extra, sizeof(extra), "write-zeroes then read: %s (%d)",
					 st == -1000 ? "data is not zero" : "bad status", st);
				bad = 1;
			}
		}
	}
	if (o->json)
		printf("{\"mode\":\"verify\",\"socket\":\"%s\",\"bs\":%zu,\"queues\":%u,\"ops\":%" PRIu64
		       ",\"mismatches\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"ok\":%s}\n",
		       g_socket, o->bs, o->queues, ops, mism, errs, d.reconnects, bad ? "false" : "true");
	else
		printf("verify %s: %" PRIu64 " ops on %u queues, %" PRIu64 " mismatches, %" PRIu64 " errors, %" PRIu64
		       " reconnects: %s\n",
		       g_socket, ops, o->queues, mism, errs, d.reconnects, bad ? "FAILED" : "ok");
	if (first)
		fprintf(stderr, "fb_vhost: verify: %s\n", first);
	if (extra[0])
		fprintf(stderr, "fb_vhost: verify: %s\n", extra);
	for (unsigned i = 0; i < o->queues; i++) {
		free(w[i].gen);
		free(w[i].expect);
		vq_free(&qs[i]);
	}
	dev_close(&d);
	return bad;
}

#include "fb_vhost_fuzz.h"

static int run_hold(const struct perf_opts *o)
{
	struct dev d;
	struct vq qs[MAXQ];
	int rc;

	dev_init(&d);
	rc = dev_setup(&d, qs, o->queues, 1, 4096, false, o->event_idx);

	if (rc)
		die("setting up %s: %s", g_socket, strerror(-rc));
	/* One request per queue so every queue has run, then nothing. */
	for (unsigned i = 0; i < o->queues; i++)
		if (vq_sync(&qs[i], VIRTIO_BLK_T_IN, 0, 4096, false) != VIRTIO_BLK_S_OK)
			die("queue %u: first read failed", i);
	/* The idle window starts here: a measuring caller waits for this line. */
	printf("ready\n");
	fflush(stdout);
	usleep((useconds_t)(o->seconds * 1e6));
	for (unsigned i = 0; i < o->queues; i++)
		vq_free(&qs[i]);
	dev_close(&d);
	return 0;
}

static int run_memcpy(const struct perf_opts *o)
{
	size_t set = 256u << 20, n = set / o->bs;
	uint8_t *src = malloc(set), *dst = malloc(set);
	uint64_t t0, bytes = 0, i = 0, end;

	if (!src || !dst)
		die("out of memory");
	memset(src, 0x5a, set); /* touched before timing */
	memset(dst, 0xa5, set);
	t0 = now_ns();
	end = t0 + (uint64_t)(o->seconds * 1e9);
	while (now_ns() < end) {
		for (unsigned k = 0; k < 16; k++, i++)
			memcpy(dst + (i % n) * o->bs, src + ((i * 7) % n) * o->bs, o->bs);
		bytes += 16 * o->bs;
	}
	if (o->json)
		printf("{\"mode\":\"memcpy\",\"bs\":%zu,\"mbps\":%.1f}\n", o->bs,
		       (double)bytes / ((double)(now_ns() - t0) / 1e9) / 1e6);
	else
		printf("memcpy %zu-byte copies through 256 MiB: %.1f MB/s\n", o->bs,
		       (double)bytes / ((double)(now_ns() - t0) / 1e9) / 1e6);
	free(src);
	free(dst);
	return 0;
}

/* ----------------------------------------------------------------- main */

static int parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return -1;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (*end)
		return -1;
	*out = (size_t)v;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fb_vhost --socket PATH perf|verify|fuzz|info|hold [--rw randread|randwrite|randrw|read|write]\n"
		"         [--mix PCT_READS] [--bs SIZE] [--qd N] [--queues N] [--seconds S] [--ramp S] [--ops N]\n"
		"         [--poll] [--no-event-idx] [--packed] [--reconnect] [--json]\n"
		"       fb_vhost memcpy [--bs SIZE] [--seconds S] [--json]\n");
}

int main(int argc, char **argv)
{
	struct perf_opts o = { .rw = 0, .random = true, .mix = 50, .bs = 4096, .qd = 32, .queues = 1,
			       .seconds = 5, .event_idx = true, .ops = 20000 };
	const char *mode = NULL;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--socket") == 0 && v) {
			g_socket = v;
			i++;
		} else if (strcmp(a, "--rw") == 0 && v) {
			i++;
			o.random = strncmp(v, "rand", 4) == 0;
			v += o.random ? 4 : 0;
			if (strcmp(v, "read") == 0)
				o.rw = 0;
			else if (strcmp(v, "write") == 0)
				o.rw = 1;
			else if (strcmp(v, "rw") == 0)
				o.rw = 2;
			else
				die("--rw: randread, randwrite, randrw, read or write");
		} else if (strcmp(a, "--mix") == 0 && v) {
			o.mix = (unsigned)atoi(argv[++i]);
		} else if (strcmp(a, "--bs") == 0 && v) {
			if (parse_size(argv[++i], &o.bs) || !o.bs || o.bs % 512 || o.bs > (4u << 20))
				die("--bs: a multiple of 512 up to 4M");
		} else if (strcmp(a, "--qd") == 0 && v) {
			o.qd = (unsigned)atoi(argv[++i]);
			if (o.qd < 1 || o.qd > 256)
				die("--qd: 1-256");
		} else if (strcmp(a, "--queues") == 0 && v) {
			o.queues = (unsigned)atoi(argv[++i]);
			if (o.queues < 1 || o.queues > MAXQ)
				die("--queues: 1-%d", MAXQ);
		} else if (strcmp(a, "--seconds") == 0 && v) {
			o.seconds = atof(argv[++i]);
		} else if (strcmp(a, "--ramp") == 0 && v) {
			o.ramp = atof(argv[++i]);
		} else if (strcmp(a, "--ops") == 0 && v) {
			o.ops = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(a, "--reconnect") == 0) {
			o.reconnect = true;
		} else if (strcmp(a, "--poll") == 0) {
			o.poll = true;
		} else if (strcmp(a, "--packed") == 0) {
			g_packed = true;
		} else if (strcmp(a, "--no-event-idx") == 0) {
			o.event_idx = false;
		} else if (strcmp(a, "--json") == 0) {
			o.json = true;
		} else if (a[0] != '-' && !mode) {
			mode = a;
		} else {
			usage();
			return 2;
		}
	}
	if (mode && strcmp(mode, "memcpy") == 0)
		return run_memcpy(&o);
	if (!g_socket || !mode) {
		usage();
		return 2;
	}
	if (strcmp(mode, "hold") == 0)
		return run_hold(&o);
	if (strcmp(mode, "perf") == 0)
		return run_perf(&o);
	if (strcmp(mode, "verify") == 0)
		return run_verify(&o);
	if (strcmp(mode, "fuzz") == 0)
		return run_fuzz(&o);
	if (strcmp(mode, "info") == 0) {
		struct dev d;
		int rc;

		dev_init(&d);
		rc = dev_open(&d, g_socket, true);
		if (rc)
			die("%s: %s", g_socket, strerror(-rc));
		printf("{\"capacity_sectors\":%" PRIu64 ",\"blk_size\":%u,\"seg_max\":%u,\"num_queues\":%u,"
		       "\"features\":\"0x%" PRIx64 "\",\"protocol_features\":\"0x%" PRIx64 "\"}\n",
		       d.cfg.capacity, d.cfg.blk_size, d.cfg.seg_max, d.max_queues, d.features, d.pfeatures);
		dev_close(&d);
		return 0;
	}
	usage();
	return 2;
}
