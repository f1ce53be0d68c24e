/* fb_vhost fuzz mode (included by fb_vhost.c: it shares its driver).
 *
 * Each case sends one kind of malformed input and checks the answer it
 * must get: a refused message (a nack with REPLY_ACK, or a hang-up), a
 * request answered without success (an error status, or the head given
 * back with no status), or a queue stopped with the error eventfd raised.
 * After every case a fresh connection must negotiate: the back-end lives.
 */

enum expect {
	EXP_REFUSED,      /* nack or disconnect */
	EXP_ALIVE,        /* anything, as long as the back-end lives */
	EXP_NOT_OK,       /* the request completes without VIRTIO_BLK_S_OK */
	EXP_STATUS,       /* the request completes with exactly `status` */
	EXP_BROKEN,       /* no completion; the queue's error eventfd fires */
	EXP_OK,           /* the request completes with VIRTIO_BLK_S_OK */
};

struct fz {
	struct dev d;
	struct vq q;
	bool up;
};

/* Descriptors the fuzzer writes itself, clear of the slots' 3 per slot. */
#define FZ_BASE 64u

static int fz_setup(struct fz *f)
{
	int rc;

	dev_init(&f->d);
	rc = dev_setup(&f->d, &f->q, 1, 4, 4096, false, true);

	f->up = rc == 0;
	return rc;
}

static void fz_down(struct fz *f)
{
	if (f->q.slots)
		vq_free(&f->q);
	dev_close(&f->d);
	f->up = false;
}

/* Waits for one used element (any head) up to ms. */
static int fz_reap(struct vq *q, struct vring_used_elem *e, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000ull;

	while (now_ns() < deadline) {
		if (__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used) {
			*e = q->used->ring[q->last_used % q->num];
			q->last_used++;
			return 0;
		}
		usleep(200);
	}
	return -ETIMEDOUT;
}

static bool fz_err_fired(struct vq *q, int ms)
{
	struct pollfd p = { .fd = q->err, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* Publishes `head`, kicks and classifies the outcome against `exp`. */
static bool fz_run_chain(struct fz *f, uint16_t head, enum expect exp, uint8_t status, uint8_t *st_byte,
			 char *why, size_t wl)
{
	struct vq *q = &f->q;
	struct vring_used_elem e;
	uint16_t old = q->avail_idx;
	int rc;

	if (st_byte)
		*st_byte = 0xff;
	vq_publish(q, head);
	vq_kick(q, old);
	rc = fz_reap(q, &e, exp == EXP_BROKEN ? 500 : 2000);
	if (exp == EXP_BROKEN) {
		if (rc == 0) {
			snprintf(why, wl, "completed (head %u) instead of stopping the queue", e.id);
			return false;
		}
		if (!fz_err_fired(q, 2000)) {
			snprintf(why, wl, "queue neither completed nor signalled its error eventfd");
			return false;
		}
		return true;
	}
	if (rc) {
		snprintf(why, wl, "no completion within 2 s");
		return false;
	}
	if (e.id != head) {
		snprintf(why, wl, "completed head %u, expected %u", e.id, head);
		return false;
	}
	if (exp == EXP_NOT_OK && st_byte && *st_byte == VIRTIO_BLK_S_OK) {
		snprintf(why, wl, "malformed request succeeded");
		return false;
	}
	if ((exp == EXP_STATUS || exp == EXP_OK) && (!st_byte || *st_byte != (exp == EXP_OK ? 0 : status))) {
		snprintf(why, wl, "status %d, expected %u", st_byte ? *st_byte : -1, exp == EXP_OK ? 0 : status);
		return false;
	}
	return true;
}

/* Shorthands for building chains in the fuzz area. */
static struct vring_desc *fz_desc(struct fz *f, unsigned i)
{
	return &f->q.desc[FZ_BASE + i];
}

static uint8_t *fz_buf(struct fz *f, unsigned slot)
{
	return f->q.slots[slot].data;
}

/* A well-formed request in the fuzz area: header (slot 1), data, status
 * (slot 2's status byte). Callers then break one thing. */
static void fz_request(struct fz *f, uint32_t type, uint64_t sector, uint32_t len, bool write)
{
	struct slot *h = &f->q.slots[1], *s = &f->q.slots[2];

	h->hdr->type = type;
	h->hdr->ioprio = 0;
	h->hdr->sector = sector;
	*fz_desc(f, 0) = (struct vring_desc){ gpa(&f->d, h->hdr), 16, VRING_DESC_F_NEXT, FZ_BASE + 1 };
	*fz_desc(f, 1) = (struct vring_desc){ gpa(&f->d, h->data), len,
					      (uint16_t)(VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE)),
					      FZ_BASE + 2 };
	*fz_desc(f, 2) = (struct vring_desc){ gpa(&f->d, s->status), 1, VRING_DESC_F_WRITE, 0 };
}

struct fz_case {
	const char *name;
	enum expect exp;
	bool datapath;  /* needs a set-up device */
	/* Message cases: returns 1 refused (nack or hang-up), 0 accepted,
	 * <0 could not run. Data-path cases: builds the chain, returns its head
	 * (or -1 when the case publishes on its own). */
	int (*fn)(struct fz *f, uint8_t *status);
	uint8_t status;
};

/* 1 if the back-end refused: a nack, or it closed the connection. */
static int fz_refused(int rc)
{
	return rc == -EINVAL || rc == -ECONNRESET || rc == -EIO || rc == -EPROTO || rc == -EPIPE;
}

static int fz_raw_then_eof(struct fz *f, uint32_t req, uint32_t flags, uint32_t size, const void *p,
			   size_t plen)
{
	uint64_t v;
	int rc;

	if (send_raw(f->d.sock, req, flags, size, p, plen, NULL, 0))
		return 1;
	/* A well-behaved back-end hangs up; GET_FEATURES must then fail. */
	rc = send_raw(f->d.sock, VHU_GET_FEATURES, VHU_VERSION, 0, NULL, 0, NULL, 0);
	if (rc)
		return 1;
	rc = recv_reply(f->d.sock, VHU_GET_FEATURES, &v, sizeof(v), NULL);
	return rc < 0 ? 1 : 0;
}

static int m_bad_version(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_raw_then_eof(f, VHU_GET_FEATURES, 0x2, 0, NULL, 0);
}

static int m_huge_size(struct fz *f, uint8_t *s)
{
	static uint8_t junk[64];

	(void)s;
	return fz_raw_then_eof(f, VHU_SET_FEATURES, VHU_VERSION, 0x7fffffff, junk, sizeof(junk));
}

static int m_request_zero(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_raw_then_eof(f, 0, VHU_VERSION, 0, NULL, 0);
}

static int m_request_high(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_raw_then_eof(f, 0x7fffffff, VHU_VERSION, 0, NULL, 0);
}

static int m_unsupported(struct fz *f, uint8_t *s)
{
	uint64_t v = 0;

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_LOG_BASE, &v, 8, NULL, 0));
}

static int m_truncated(struct fz *f, uint8_t *s)
{
	static uint8_t part[10];

	(void)s;
	send_raw(f->d.sock, VHU_SET_VRING_ADDR, VHU_VERSION, 40, part, sizeof(part), NULL, 0);
	return 0; /* then the connection closes mid-message */
}

static int m_features_size(struct fz *f, uint8_t *s)
{
	uint32_t v = 0;

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_FEATURES, &v, 4, NULL, 0));
}

static int m_features_bits(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_refused(set_u64(&f->d, VHU_SET_FEATURES, f->d.features | (1ull << 63)));
}

static int m_mem_zero(struct fz *f, uint8_t *s)
{
	struct vhu_mem_table t = { .nregions = 0 };

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_MEM_TABLE, &t, 8, NULL, 0));
}

static int m_mem_nine(struct fz *f, uint8_t *s)
{
	uint8_t buf[8 + 9 * 32];
	uint32_t n = 9;

	(void)s;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &n, 4);
	return fz_refused(msg(&f->d, VHU_SET_MEM_TABLE, buf, sizeof(buf), NULL, 0));
}

static int fz_memfd(size_t size)
{
	int fd = memfd_create("fb_vhost-fuzz", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int fz_mem_table(struct fz *f, const struct vhu_mem_region *r, unsigned n, int nfds)
{
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS], rc;

	memset(&t, 0, sizeof(t));
	t.nregions = n;
	memcpy(t.regions, r, n * sizeof(*r));
	for (int i = 0; i < nfds; i++)
		fds[i] = fz_memfd(1 << 20);
	rc = msg(&f->d, VHU_SET_MEM_TABLE, &t, 8 + n * sizeof(*r), fds, nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return fz_refused(rc);
}

static int m_mem_fd_count(struct fz *f, uint8_t *s)
{
	struct vhu_mem_region r[2] = { { 0, 4096, 0x10000000, 0 }, { 0x100000, 4096, 0x20000000, 0 } };

	(void)s;
	return fz_mem_table(f, r, 2, 1);
}

static int m_mem_past_fd(struct fz *f, uint8_t *s)
{
	struct vhu_mem_region r = { 0, 64 << 20, 0x10000000, 0 }; /* fd is 1 MiB */

	(void)s;
	return fz_mem_table(f, &r, 1, 1);
}

static int m_mem_overlap(struct fz *f, uint8_t *s)
{
	struct vhu_mem_region r[2] = { { 0, 1 << 20, 0x10000000, 0 }, { 4096, 4096, 0x20000000, 0 } };

	(void)s;
	return fz_mem_table(f, r, 2, 2);
}

static int m_mem_wrap(struct fz *f, uint8_t *s)
{
	struct vhu_mem_region r = { UINT64_MAX - 4095, 1 << 20, 0x10000000, 0 };

	(void)s;
	return fz_mem_table(f, &r, 1, 1);
}

static int m_mem_offset_wrap(struct fz *f, uint8_t *s)
{
	struct vhu_mem_region r = { 0, 4096, 0x10000000, UINT64_MAX - 100 };

	(void)s;
	return fz_mem_table(f, &r, 1, 1);
}

static int m_vring_num_bad(struct fz *f, uint8_t *s)
{
	struct vhu_vring_state st = { 0, 3 };
	int a, b, c;

	(void)s;
	a = fz_refused(msg(&f->d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0));
	st.num = 0;
	b = fz_refused(msg(&f->d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0));
	st.num = 65536;
	c = fz_refused(msg(&f->d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0));
	return a && b && c;
}

static int m_queue_index(struct fz *f, uint8_t *s)
{
	struct vhu_vring_state st = { 200, 128 };

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0));
}

static int m_kick_index(struct fz *f, uint8_t *s)
{
	uint64_t v = 0xff;
	int fd = eventfd(0, EFD_CLOEXEC), rc;

	(void)s;
	rc = msg(&f->d, VHU_SET_VRING_KICK, &v, 8, &fd, 1);
	close(fd);
	return fz_refused(rc);
}

static int m_kick_no_fd(struct fz *f, uint8_t *s)
{
	uint64_t v = 0; /* says an fd comes, none does */

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_VRING_KICK, &v, 8, NULL, 0));
}

static int m_base_big(struct fz *f, uint8_t *s)
{
	struct vhu_vring_state st = { 0, 70000 };

	(void)s;
	return fz_refused(msg(&f->d, VHU_SET_VRING_BASE, &st, sizeof(st), NULL, 0));
}

static int m_config_range(struct fz *f, uint8_t *s)
{
	struct vhu_config c = { .offset = 250, .size = 60 };

	(void)s;
	return fz_raw_then_eof(f, VHU_GET_CONFIG, VHU_VERSION, VHU_CONFIG_HDR_SIZE + 60, &c,
			       VHU_CONFIG_HDR_SIZE + 60);
}

static int m_inflight_small(struct fz *f, uint8_t *s)
{
	struct vhu_inflight in = { .mmap_size = 64, .num_queues = 1, .queue_size = 128 };
	int fd = fz_memfd(4096), rc;

	(void)s;
	rc = msg(&f->d, VHU_SET_INFLIGHT_FD, &in, sizeof(in), &fd, 1);
	close(fd);
	return fz_refused(rc);
}

static int m_inflight_get_zero(struct fz *f, uint8_t *s)
{
	struct vhu_inflight in = { .num_queues = 0, .queue_size = 128 };

	(void)s;
	if (send_raw(f->d.sock, VHU_GET_INFLIGHT_FD, VHU_VERSION, sizeof(in), &in, sizeof(in), NULL, 0))
		return 1;
	return recv_reply(f->d.sock, VHU_GET_INFLIGHT_FD, &in, sizeof(in), NULL) < 0;
}

static int m_many_fds(struct fz *f, uint8_t *s)
{
	int fds[12];
	uint64_t v;
	int rc;

	(void)s;
	for (int i = 0; i < 12; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	rc = send_raw(f->d.sock, VHU_GET_FEATURES, VHU_VERSION, 0, NULL, 0, fds, 12);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	if (rc == 0)
		recv_reply(f->d.sock, VHU_GET_FEATURES, &v, sizeof(v), NULL);
	return 0;
}

static int m_flood(struct fz *f, uint8_t *s)
{
	(void)s;
	/* Requests whose replies we never read: the back-end must not block. */
	for (int i = 0; i < 20000; i++)
		if (send_raw(f->d.sock, VHU_GET_QUEUE_NUM, VHU_VERSION, 0, NULL, 0, NULL, 0))
			break;
	return 0;
}

static int m_kick_before_setup(struct fz *f, uint8_t *s)
{
	uint64_t v = 0, one = 1;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), rc;
	struct vhu_vring_state st = { 0, 1 };

	(void)s;
	rc = msg(&f->d, VHU_SET_VRING_KICK, &v, 8, &fd, 1);
	msg(&f->d, VHU_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0);
	if (write(fd, &one, 8) < 0) {
		/* counted */
	}
	usleep(20000);
	close(fd);
	return fz_refused(rc);
}

static int m_rings_outside(struct fz *f, uint8_t *s)
{
	struct vhu_vring_state st = { 0, 128 };
	struct vhu_vring_addr a = { .index = 0, .desc_uaddr = 0xdead0000000ull,
				    .avail_uaddr = 0xdead0010000ull, .used_uaddr = 0xdead0020000ull };
	uint64_t v = 0;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	(void)s;
	if (dev_mem(&f->d, 1 << 20) == 0) {
		msg(&f->d, VHU_SET_VRING_NUM, &st, sizeof(st), NULL, 0);
		msg(&f->d, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
		msg(&f->d, VHU_SET_VRING_KICK, &v, 8, &fd, 1);
		st.num = 1;
		msg(&f->d, VHU_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0);
	}
	close(fd);
	return 0;
}

/* ---- data path: return the head to publish */

static int d_loop(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 2)->flags |= VRING_DESC_F_NEXT;
	fz_desc(f, 2)->next = FZ_BASE; /* back to the head */
	return FZ_BASE;
}

static int d_next_out(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 1)->next = 5000;
	return FZ_BASE;
}

static int d_addr_out(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 1)->addr = f->d.gpa_base + f->d.memsz + 4096;
	return FZ_BASE;
}

static int d_addr_straddle(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 1)->addr = f->d.gpa_base + f->d.memsz - 512; /* runs off the end */
	return FZ_BASE;
}

static int d_addr_below(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_OUT, 0, 4096, true);
	fz_desc(f, 1)->addr = 0; /* below the only region */
	return FZ_BASE;
}

static int d_huge_len(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 1)->len = 0xffffffffu;
	return FZ_BASE;
}

static int d_wrap_addr(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 1)->addr = UINT64_MAX - 100;
	return FZ_BASE;
}

static int d_no_status(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_OUT, 0, 4096, true);
	fz_desc(f, 2)->flags = 0; /* nothing writable */
	return FZ_BASE;
}

static int d_short_header(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	fz_desc(f, 0)->len = 8;
	return FZ_BASE;
}

static int d_past_end(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, f->d.cfg.capacity, 4096, false);
	return FZ_BASE;
}

static int d_sector_overflow(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_OUT, UINT64_MAX / 256, 4096, true);
	return FZ_BASE;
}

static int d_read_after_write(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	/* status (writable) then one more readable descriptor */
	fz_desc(f, 2)->flags |= VRING_DESC_F_NEXT;
	fz_desc(f, 2)->next = FZ_BASE + 3;
	*fz_desc(f, 3) = (struct vring_desc){ gpa(&f->d, fz_buf(f, 3)), 16, 0, 0 };
	return FZ_BASE;
}

static int d_bad_type(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, 99, 0, 4096, false);
	return FZ_BASE;
}

static int d_misaligned(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 100, false);
	return FZ_BASE;
}

static int d_discard_flags(struct fz *f, uint8_t *s)
{
	struct virtio_blk_discard_wz *seg = (void *)fz_buf(f, 1);

	(void)s;
	fz_request(f, VIRTIO_BLK_T_DISCARD, 0, sizeof(*seg), true);
	seg->sector = 0;
	seg->num_sectors = 8;
	seg->flags = 0x80;
	return FZ_BASE;
}

static int d_discard_many(struct fz *f, uint8_t *s)
{
	struct virtio_blk_discard_wz *seg = (void *)fz_buf(f, 1);

	(void)s;
	fz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, 3 * sizeof(*seg), true);
	memset(seg, 0, 3 * sizeof(*seg));
	return FZ_BASE;
}

/* Indirect table in slot 3's data page. */
static struct vring_desc *fz_ind(struct fz *f)
{
	return (struct vring_desc *)(void *)fz_buf(f, 3);
}

static int fz_indirect_head(struct fz *f, uint32_t len, uint64_t addr)
{
	*fz_desc(f, 8) = (struct vring_desc){ addr, len, VRING_DESC_F_INDIRECT, 0 };
	return FZ_BASE + 8;
}

static int d_ind_loop(struct fz *f, uint8_t *s)
{
	struct vring_desc *t = fz_ind(f);

	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	memcpy(t, fz_desc(f, 0), 3 * sizeof(*t));
	t[0].next = 1;
	t[1].next = 2;
	t[2].flags |= VRING_DESC_F_NEXT;
	t[2].next = 0;
	return fz_indirect_head(f, 3 * 16, gpa(&f->d, t));
}

static int d_ind_nested(struct fz *f, uint8_t *s)
{
	struct vring_desc *t = fz_ind(f);

	(void)s;
	t[0] = (struct vring_desc){ gpa(&f->d, t), 16, VRING_DESC_F_INDIRECT, 0 };
	return fz_indirect_head(f, 16, gpa(&f->d, t));
}

static int d_ind_len(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_indirect_head(f, 17, gpa(&f->d, fz_ind(f)));
}

static int d_ind_out(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_indirect_head(f, 4096, f->d.gpa_base + f->d.memsz - 16);
}

static int d_ind_huge(struct fz *f, uint8_t *s)
{
	(void)s;
	return fz_indirect_head(f, 0xfffffff0u, gpa(&f->d, fz_ind(f)));
}

static int d_ind_next_out(struct fz *f, uint8_t *s)
{
	struct vring_desc *t = fz_ind(f);

	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	memcpy(t, fz_desc(f, 0), 3 * sizeof(*t));
	t[0].next = 1;
	t[1].next = 7; /* beyond the 3-entry table */
	t[2].next = 0;
	return fz_indirect_head(f, 3 * 16, gpa(&f->d, t));
}

static int d_ind_good(struct fz *f, uint8_t *s)
{
	struct vring_desc *t = fz_ind(f);

	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	memcpy(t, fz_desc(f, 0), 3 * sizeof(*t));
	t[0].next = 1;
	t[1].next = 2;
	return fz_indirect_head(f, 3 * 16, gpa(&f->d, t));
}

static int d_good(struct fz *f, uint8_t *s)
{
	(void)s;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	return FZ_BASE;
}

static int d_head_out(struct fz *f, uint8_t *s)
{
	(void)f;
	(void)s;
	return 5000; /* a head beyond the queue */
}

static int d_avail_jump(struct fz *f, uint8_t *s)
{
	struct vq *q = &f->q;
	uint64_t one = 1;

	(void)s;
	q->avail_idx += 1000;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
	if (write(q->kick, &one, 8) < 0) {
		/* counted */
	}
	return -1;
}

static int d_disconnect_inflight(struct fz *f, uint8_t *s)
{
	struct vq *q = &f->q;
	uint16_t old = q->avail_idx;

	(void)s;
	for (unsigned i = 0; i < q->qd; i++)
		vq_submit(q, i, VIRTIO_BLK_T_IN, i * 8, 4096, false);
	vq_kick(q, old);
	close(f->d.sock); /* gone with requests in flight */
	f->d.sock = -1;
	return -1;
}

static int d_remap_running(struct fz *f, uint8_t *s)
{
	struct vhu_mem_table t;
	int rc;

	(void)s;
	/* The same memory again while the queue runs: the back-end drains,
	 * remaps and resumes; the next request must succeed. */
	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	t.regions[0] = (struct vhu_mem_region){ f->d.gpa_base, f->d.memsz, (uint64_t)(uintptr_t)f->d.mem, 0 };
	rc = msg(&f->d, VHU_SET_MEM_TABLE, &t, 8 + 32, &f->d.memfd, 1);
	if (rc)
		return -2;
	fz_request(f, VIRTIO_BLK_T_IN, 0, 4096, false);
	return FZ_BASE;
}

static const struct fz_case CASES[] = {
	{ "header with a bad version", EXP_REFUSED, false, m_bad_version, 0 },
	{ "payload size beyond any message", EXP_REFUSED, false, m_huge_size, 0 },
	{ "request type 0", EXP_REFUSED, false, m_request_zero, 0 },
	{ "request type 0x7fffffff", EXP_REFUSED, false, m_request_high, 0 },
	{ "unsupported request (SET_LOG_BASE)", EXP_REFUSED, false, m_unsupported, 0 },
	{ "message cut short, then EOF", EXP_ALIVE, false, m_truncated, 0 },
	{ "SET_FEATURES with a 4-byte payload", EXP_REFUSED, false, m_features_size, 0 },
	{ "SET_FEATURES with bits not offered", EXP_REFUSED, false, m_features_bits, 0 },
	{ "SET_MEM_TABLE with 0 regions", EXP_REFUSED, false, m_mem_zero, 0 },
	{ "SET_MEM_TABLE with 9 regions", EXP_REFUSED, false, m_mem_nine, 0 },
	{ "SET_MEM_TABLE with fewer fds than regions", EXP_REFUSED, false, m_mem_fd_count, 0 },
	{ "SET_MEM_TABLE region past the end of its fd", EXP_REFUSED, false, m_mem_past_fd, 0 },
	{ "SET_MEM_TABLE overlapping regions", EXP_REFUSED, false, m_mem_overlap, 0 },
	{ "SET_MEM_TABLE guest address wraps", EXP_REFUSED, false, m_mem_wrap, 0 },
	{ "SET_MEM_TABLE mmap offset wraps", EXP_REFUSED, false, m_mem_offset_wrap, 0 },
	{ "SET_VRING_NUM 3, 0 and 65536", EXP_REFUSED, false, m_vring_num_bad, 0 },
	{ "SET_VRING_NUM on queue 200", EXP_REFUSED, false, m_queue_index, 0 },
	{ "SET_VRING_KICK on queue 255", EXP_REFUSED, false, m_kick_index, 0 },
	{ "SET_VRING_KICK without its fd", EXP_REFUSED, false, m_kick_no_fd, 0 },
	{ "SET_VRING_BASE 70000", EXP_REFUSED, false, m_base_big, 0 },
	{ "GET_CONFIG beyond the config space", EXP_REFUSED, false, m_config_range, 0 },
	{ "SET_INFLIGHT_FD region too small", EXP_REFUSED, false, m_inflight_small, 0 },
	{ "GET_INFLIGHT_FD for 0 queues", EXP_REFUSED, false, m_inflight_get_zero, 0 },
	{ "12 fds on one message", EXP_ALIVE, false, m_many_fds, 0 },
	{ "20000 requests, replies never read", EXP_ALIVE, false, m_flood, 0 },
	{ "kick and enable before any setup", EXP_ALIVE, false, m_kick_before_setup, 0 },
	{ "rings outside guest memory", EXP_ALIVE, false, m_rings_outside, 0 },
	{ "well-formed read (control)", EXP_OK, true, d_good, 0 },
	{ "descriptor loop", EXP_NOT_OK, true, d_loop, 0 },
	{ "next index beyond the table", EXP_NOT_OK, true, d_next_out, 0 },
	{ "buffer outside guest memory", EXP_NOT_OK, true, d_addr_out, 0 },
	{ "buffer running off guest memory", EXP_NOT_OK, true, d_addr_straddle, 0 },
	{ "buffer below guest memory", EXP_NOT_OK, true, d_addr_below, 0 },
	{ "length 0xffffffff", EXP_NOT_OK, true, d_huge_len, 0 },
	{ "address that wraps", EXP_NOT_OK, true, d_wrap_addr, 0 },
	{ "no writable status byte", EXP_NOT_OK, true, d_no_status, 0 },
	{ "8-byte request header", EXP_STATUS, true, d_short_header, VIRTIO_BLK_S_IOERR },
	{ "read at the capacity", EXP_STATUS, true, d_past_end, VIRTIO_BLK_S_IOERR },
	{ "sector that overflows bytes", EXP_STATUS, true, d_sector_overflow, VIRTIO_BLK_S_IOERR },
	{ "readable after writable", EXP_NOT_OK, true, d_read_after_write, 0 },
	{ "request type 99", EXP_STATUS, true, d_bad_type, VIRTIO_BLK_S_UNSUPP },
	{ "100-byte read", EXP_STATUS, true, d_misaligned, VIRTIO_BLK_S_IOERR },
	{ "discard with unknown flags", EXP_STATUS, true, d_discard_flags, VIRTIO_BLK_S_UNSUPP },
	{ "write-zeroes with 3 segments", EXP_STATUS, true, d_discard_many, VIRTIO_BLK_S_UNSUPP },
	{ "indirect table loop", EXP_NOT_OK, true, d_ind_loop, 0 },
	{ "nested indirect table", EXP_NOT_OK, true, d_ind_nested, 0 },
	{ "indirect table of 17 bytes", EXP_NOT_OK, true, d_ind_len, 0 },
	{ "indirect table outside memory", EXP_NOT_OK, true, d_ind_out, 0 },
	{ "indirect table of 4 GiB", EXP_NOT_OK, true, d_ind_huge, 0 },
	{ "indirect next beyond its table", EXP_NOT_OK, true, d_ind_next_out, 0 },
	{ "well-formed indirect read (control)", EXP_OK, true, d_ind_good, 0 },
	{ "memory table replaced while running", EXP_OK, true, d_remap_running, 0 },
	{ "avail head beyond the queue", EXP_BROKEN, true, d_head_out, 0 },
	{ "avail index jumps by 1000", EXP_BROKEN, true, d_avail_jump, 0 },
	{ "disconnect with requests in flight", EXP_ALIVE, true, d_disconnect_inflight, 0 },
};

/* ---- packed rings (fuzz --packed): chains written at the driver's next
 * avail position with buffer id FZP_ID; the case returns that id, -1 when
 * it published on its own, -3 when it checked its own outcome (passed),
 * -4 when that check failed (g_fzp_why says why). */
#define FZP_ID 61u
static char g_fzp_why[200];
static unsigned g_fzp_n; /* slots of the chain just put */

static void fzp_put(struct fz *f, const struct vring_packed_desc *d, unsigned n)
{
	vq_put_packed(&f->q, d, n);
	g_fzp_n = n;
}

/* header (slot 1), data (slot 1's page), status (slot 2's status byte) */
static void fzp_request(struct fz *f, struct vring_packed_desc d[3], uint32_t type, uint64_t sector, uint32_t len,
			bool write)
{
	struct slot *h = &f->q.slots[1], *st = &f->q.slots[2];

	h->hdr->type = type;
	h->hdr->ioprio = 0;
	h->hdr->sector = sector;
	d[0] = (struct vring_packed_desc){ gpa(&f->d, h->hdr), 16, FZP_ID, VRING_DESC_F_NEXT };
	d[1] = (struct vring_packed_desc){ gpa(&f->d, h->data), len, FZP_ID,
					   (uint16_t)(VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE)) };
	d[2] = (struct vring_packed_desc){ gpa(&f->d, st->status), 1, FZP_ID, VRING_DESC_F_WRITE };
}

static int p_good(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc d[3];

	(void)s;
	fzp_request(f, d, VIRTIO_BLK_T_IN, 0, 4096, false);
	fzp_put(f, d, 3);
	return FZP_ID;
}

/* One descriptor changed from a good read. */
static int fzp_bad(struct fz *f, unsigned which, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct vring_packed_desc d[3];

	fzp_request(f, d, VIRTIO_BLK_T_IN, 0, 4096, false);
	d[which].addr = addr;
	d[which].len = len;
	d[which].flags = flags;
	fzp_put(f, d, 3);
	return FZP_ID;
}

static int p_addr_out(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_bad(f, 1, f->d.gpa_base + f->d.memsz + 4096, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
}

static int p_huge_len(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_bad(f, 1, gpa(&f->d, f->q.slots[1].data), 0xffffffffu, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
}

static int p_wrap_addr(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_bad(f, 1, UINT64_MAX - 100, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
}

static int p_no_status(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_bad(f, 2, gpa(&f->d, f->q.slots[2].status), 1, 0); /* nothing writable */
}

static int p_read_after_write(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc d[4];

	(void)s;
	fzp_request(f, d, VIRTIO_BLK_T_IN, 0, 4096, false);
	d[2].flags |= VRING_DESC_F_NEXT;
	d[3] = (struct vring_packed_desc){ gpa(&f->d, f->q.slots[3].data), 512, FZP_ID, 0 }; /* readable, last */
	fzp_put(f, d, 4);
	return FZP_ID;
}

/* A chain as long as the ring: every descriptor says NEXT. */
static int p_chain_loop(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc *d = calloc(f->q.num, sizeof(*d));

	(void)s;
	if (!d)
		return -2;
	for (unsigned i = 0; i < f->q.num; i++)
		d[i] = (struct vring_packed_desc){ gpa(&f->d, f->q.slots[1].data), 16, FZP_ID, VRING_DESC_F_NEXT };
	fzp_put(f, d, f->q.num);
	free(d);
	return FZP_ID;
}

/* The chain's second descriptor is not available (AVAIL and USED both set). */
static int p_chain_unavail(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_bad(f, 1, gpa(&f->d, f->q.slots[1].data), 4096,
		       VRING_DESC_F_NEXT | VRING_DESC_F_WRITE | VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED);
}

/* A first descriptor whose flags belong to no available lap (`bits` as
 * written): the device must not take it. Then made available: it must. */
static int fzp_wrong_lap(struct fz *f, uint16_t bits)
{
	struct vq *q = &f->q;
	struct vring_packed_desc d[3];
	uint16_t pos = q->p_next;
	bool wrap = q->p_wrap;
	uint64_t one = 1;

	fzp_request(f, d, VIRTIO_BLK_T_IN, 0, 4096, false);
	fzp_put(f, d, 3);
	__atomic_store_n(&q->pdesc[pos].flags, (uint16_t)(VRING_DESC_F_NEXT | bits), __ATOMIC_RELEASE);
	if (write(q->kick, &one, 8) < 0) {
		/* a kick is pending already */
	}
	usleep(300000);
	if (vq_has_used(q)) {
		snprintf(g_fzp_why, sizeof(g_fzp_why), "took a descriptor that was not available (flags 0x%x)",
			 VRING_DESC_F_NEXT | bits);
		return -4;
	}
	/* Now the right lap: the device takes the whole chain. */
	__atomic_store_n(&q->pdesc[pos].flags,
			 (uint16_t)(VRING_DESC_F_NEXT | (wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED)),
			 __ATOMIC_RELEASE);
	return FZP_ID;
}

static int p_flags_used(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_wrong_lap(f, VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED);
}

static int p_flags_prev_lap(struct fz *f, uint8_t *s)
{
	/* AVAIL != the device's wrap counter, USED == it: the previous lap's. */
	(void)s;
	return fzp_wrong_lap(f, f->q.p_wrap ? VRING_PACKED_DESC_F_USED : VRING_PACKED_DESC_F_AVAIL);
}

/* Indirect table in slot 3's data page. */
static struct vring_packed_desc *fzp_ind(struct fz *f)
{
	return (struct vring_packed_desc *)(void *)fz_buf(f, 3);
}

static int fzp_indirect(struct fz *f, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct vring_packed_desc d = { addr, len, FZP_ID, (uint16_t)(VRING_DESC_F_INDIRECT | flags) };

	fzp_put(f, &d, 1);
	return FZP_ID;
}

static int p_ind_good(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc *t = fzp_ind(f);

	(void)s;
	fzp_request(f, t, VIRTIO_BLK_T_IN, 0, 4096, false);
	t[0].flags = t[1].flags = 0; /* NEXT means nothing in a packed indirect table */
	t[1].flags = VRING_DESC_F_WRITE;
	return fzp_indirect(f, gpa(&f->d, t), 3 * 16, 0);
}

static int p_ind_next(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc *t = fzp_ind(f), d[2];

	(void)s;
	fzp_request(f, t, VIRTIO_BLK_T_IN, 0, 4096, false);
	d[0] = (struct vring_packed_desc){ gpa(&f->d, t), 3 * 16, FZP_ID, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT };
	d[1] = (struct vring_packed_desc){ gpa(&f->d, f->q.slots[2].status), 1, FZP_ID, VRING_DESC_F_WRITE };
	fzp_put(f, d, 2);
	return FZP_ID;
}

/* A well-formed read whose status entry also says INDIRECT: a device that
 * took it as a plain buffer would answer OK. */
static int p_ind_nested(struct fz *f, uint8_t *s)
{
	struct vring_packed_desc *t = fzp_ind(f);

	(void)s;
	fzp_request(f, t, VIRTIO_BLK_T_IN, 0, 4096, false);
	t[0].flags = 0;
	t[1].flags = VRING_DESC_F_WRITE;
	t[2].flags = VRING_DESC_F_WRITE | VRING_DESC_F_INDIRECT;
	return fzp_indirect(f, gpa(&f->d, t), 3 * 16, 0);
}

static int p_ind_len(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_indirect(f, gpa(&f->d, fzp_ind(f)), 17, 0);
}

static int p_ind_out(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_indirect(f, f->d.gpa_base + f->d.memsz - 16, 4096, 0);
}

static int p_ind_huge(struct fz *f, uint8_t *s)
{
	(void)s;
	return fzp_indirect(f, gpa(&f->d, fzp_ind(f)), 0xfffffff0u, 0);
}

/* 300 verified-status reads: the ring wraps (both wrap counters flip) several times. */
static int p_laps(struct fz *f, uint8_t *s)
{
	(void)s;
	for (unsigned i = 0; i < 300; i++) {
		int st = vq_sync(&f->q, VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, false);

		if (st != VIRTIO_BLK_S_OK) {
			snprintf(g_fzp_why, sizeof(g_fzp_why), "read %u of 300: status %d", i, st);
			return -4;
		}
	}
	return -3;
}

static const struct fz_case PCASES[] = {
	{ "packed: well-formed read (control)", EXP_OK, true, p_good, 0 },
	{ "packed: 300 reads, the ring wraps", EXP_OK, true, p_laps, 0 },
	{ "packed: buffer outside guest memory", EXP_NOT_OK, true, p_addr_out, 0 },
	{ "packed: length 0xffffffff", EXP_NOT_OK, true, p_huge_len, 0 },
	{ "packed: address that wraps", EXP_NOT_OK, true, p_wrap_addr, 0 },
	{ "packed: no writable status byte", EXP_NOT_OK, true, p_no_status, 0 },
	{ "packed: readable after writable", EXP_NOT_OK, true, p_read_after_write, 0 },
	{ "packed: flags AVAIL == USED, then fixed", EXP_OK, true, p_flags_used, 0 },
	{ "packed: flags of the previous lap, then fixed", EXP_OK, true, p_flags_prev_lap, 0 },
	{ "packed: indirect with NEXT", EXP_NOT_OK, true, p_ind_next, 0 },
	{ "packed: nested indirect table", EXP_NOT_OK, true, p_ind_nested, 0 },
	{ "packed: indirect table of 17 bytes", EXP_NOT_OK, true, p_ind_len, 0 },
	{ "packed: indirect table outside memory", EXP_NOT_OK, true, p_ind_out, 0 },
	{ "packed: indirect table of 4 GiB", EXP_NOT_OK, true, p_ind_huge, 0 },
	{ "packed: well-formed indirect read (control)", EXP_OK, true, p_ind_good, 0 },
	{ "packed: chain as long as the ring", EXP_BROKEN, true, p_chain_loop, 0 },
	{ "packed: chain runs into an unavailable slot", EXP_BROKEN, true, p_chain_unavail, 0 },
};

/* Kicks and classifies a packed chain with buffer id `id` against `exp`. */
static bool fzp_run_chain(struct fz *f, uint16_t id, enum expect exp, uint8_t status, uint8_t *st_byte, char *why,
			  size_t wl)
{
	struct vq *q = &f->q;
	uint64_t one = 1, deadline = now_ns() + (exp == EXP_BROKEN ? 500 : 2000) * 1000000ull;
	struct vring_packed_desc e;

	if (write(q->kick, &one, 8) < 0) {
		/* a kick is pending already */
	}
	while (!vq_has_used(q) && now_ns() < deadline)
		usleep(200);
	if (exp == EXP_BROKEN) {
		if (vq_has_used(q)) {
			snprintf(why, wl, "completed instead of stopping the queue");
			return false;
		}
		if (!fz_err_fired(q, 2000)) {
			snprintf(why, wl, "queue neither completed nor signalled its error eventfd");
			return false;
		}
		return true;
	}
	if (!vq_has_used(q)) {
		snprintf(why, wl, "no completion within 2 s");
		return false;
	}
	e = q->pdesc[q->p_used];
	q->p_used = (uint16_t)(q->p_used + g_fzp_n);
	if (q->p_used >= q->num) {
		q->p_used = (uint16_t)(q->p_used - q->num);
		q->p_used_wrap = !q->p_used_wrap;
	}
	if (e.id != id) {
		snprintf(why, wl, "completed buffer id %u, expected %u", e.id, id);
		return false;
	}
	if (exp == EXP_NOT_OK && *st_byte == VIRTIO_BLK_S_OK) {
		snprintf(why, wl, "malformed request succeeded");
		return false;
	}
	if ((exp == EXP_STATUS || exp == EXP_OK) && *st_byte != (exp == EXP_OK ? 0 : status)) {
		snprintf(why, wl, "status %d, expected %u", *st_byte, exp == EXP_OK ? 0 : status);
		return false;
	}
	return true;
}

/* A fresh connection negotiates (retries briefly: the back-end may still
 * be tearing down the previous one). */
static bool fz_alive(void)
{
	for (int i = 0; i < 50; i++) {
		struct dev d;
		int rc;

		dev_init(&d);
		rc = dev_open(&d, g_socket, true);
		dev_close(&d);
		if (rc == 0)
			return true;
		usleep(20000);
	}
	return false;
}

static int run_fuzz(const struct perf_opts *o)
{
	unsigned pass = 0, fail = 0, nsplit = sizeof(CASES) / sizeof(CASES[0]);
	unsigned np = sizeof(PCASES) / sizeof(PCASES[0]), ntot = g_packed ? nsplit + np : nsplit, n = ntot;
	struct fz f;

	memset(&f, 0, sizeof(f));
	dev_init(&f.d);
	for (unsigned i = 0; i < ntot; i++) {
		const struct fz_case *c = i < nsplit ? &CASES[i] : &PCASES[i - nsplit];

		/* With --packed, the split rings' data-path cases give way to the packed ones. */
		if (g_packed && i < nsplit && c->datapath) {
			n--;
			continue;
		}
		char why[200] = "";
		bool ok = true;
		int rc;

		if (c->datapath) {
			if (!f.up && (rc = fz_setup(&f))) {
				snprintf(why, sizeof(why), "device setup failed: %s", strerror(-rc));
				ok = false;
				goto report;
			}
			if (g_packed)
				*f.q.slots[2].status = 0xff;
			rc = c->fn(&f, NULL);
			if (rc == -2) {
				snprintf(why, sizeof(why), "the back-end refused a valid message");
				ok = false;
			} else if (rc == -4) {
				snprintf(why, sizeof(why), "%s", g_fzp_why);
				ok = false;
			} else if (rc == -3) {
				/* the case checked its own outcome */
			} else if (rc >= 0 && g_packed) {
				ok = fzp_run_chain(&f, (uint16_t)rc, c->exp, c->status, f.q.slots[2].status, why,
						   sizeof(why));
			} else if (rc >= 0) {
				ok = fz_run_chain(&f, (uint16_t)rc, c->exp, c->status, f.q.slots[2].status, why,
						  sizeof(why));
			} else if (c->exp == EXP_BROKEN && !fz_err_fired(&f.q, 2000)) {
				snprintf(why, sizeof(why), "error eventfd never fired");
				ok = false;
			}
			/* A broken queue or a closed socket needs a new device. */
			if (c->exp == EXP_BROKEN || rc == -1)
				fz_down(&f);
		} else {
			if (f.up)
				fz_down(&f);
			dev_init(&f.d);
			rc = dev_open(&f.d, g_socket, true);
			if (rc) {
				snprintf(why, sizeof(why), "negotiation failed: %s", strerror(-rc));
				ok = false;
			} else {
				rc = c->fn(&f, NULL);
				if (c->exp == EXP_REFUSED && rc != 1) {
					snprintf(why, sizeof(why), "accepted");
					ok = false;
				}
			}
			dev_close(&f.d);
		}
		/* With a device up the next case shows it lives; a second
		 * front-end would be refused while it is connected. */
		if (!f.up && !fz_alive()) {
			snprintf(why, sizeof(why), "the back-end no longer answers a new connection");
			ok = false;
			fail++;
			fprintf(stderr, "fuzz %2u %-45s FAIL: %s\n", i + 1, c->name, why);
			break;
		}
report:
		if (ok)
			pass++;
		else
			fail++;
		if (!o->json || !ok)
			fprintf(stderr, "fuzz %2u %-45s %s%s%s\n", i + 1, c->name, ok ? "ok" : "FAIL", why[0] ? ": " : "",
				why);
	}
	if (f.up)
		fz_down(&f);
	if (!fz_alive()) {
		fprintf(stderr, "fuzz: the back-end no longer answers a new connection\n");
		fail++;
	}
	if (o->json)
		printf("{\"mode\":\"fuzz\",\"socket\":\"%s\",\"cases\":%u,\"passed\":%u,\"failed\":%u}\n", g_socket,
		       n, pass, fail);
	else
		printf("fuzz %s: %u cases, %u passed, %u failed\n", g_socket, n, pass, fail);
	return fail ? 1 : 0;
}
