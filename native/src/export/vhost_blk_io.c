/* virtio-blk requests of the vhost-user-blk export (virtio 1.2 §5.2.6).
 *
 * A request's chain, translated into iovecs over guest memory, is: a
 * 16-byte header (readable), data (readable for writes and discard/write-
 * zeroes segments, writable for reads and GET_ID) and a one-byte status
 * (the last writable byte). Any framing is accepted (VIRTIO_F_ANY_LAYOUT).
 * Data moves between the bdev and guest memory directly: the bdev's readv/
 * writev get iovecs that point into the guest's buffers.
 */
#include <errno.h>
#include <string.h>

#include "vhost_blk.h"

/* Drops the first `bytes` of iov[0..*cnt) (in place). */
static struct iovec *iov_skip(struct iovec *iov, int *cnt, size_t bytes)
{
	while (*cnt && bytes) {
		if (iov->iov_len > bytes) {
			iov->iov_base = (uint8_t *)iov->iov_base + bytes;
			iov->iov_len -= bytes;
			return iov;
		}
		bytes -= iov->iov_len;
		iov++;
		(*cnt)--;
	}
	return iov;
}

static size_t iov_len(const struct iovec *iov, int cnt)
{
	size_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Copies up to len bytes out of iov into buf; returns bytes copied. */
static size_t iov_copy_out(const struct iovec *iov, int cnt, void *buf, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < cnt && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy((uint8_t *)buf + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

static size_t iov_copy_in(const struct iovec *iov, int cnt, const void *buf, size_t len)
{
	size_t done = 0;

	for (int i = 0; i < cnt && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		memcpy(iov[i].iov_base, (const uint8_t *)buf + done, k);
		done += k;
	}
	return done;
}

static void finish(struct vhost_req *req, uint8_t st)
{
	req->st = st;
	vhost_vq_complete(req);
}

static void io_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct vhost_req *req = arg;

	fb_bdev_free_io(io);
	finish(req, status == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
}

int vhost_blk_submit(struct vhost_req *req)
{
	struct vhost_vq *vq = req->vq;
	struct fb_bdev_desc *desc = vq->c->desc;
	int rc;

	if (!vq->ch) {
		finish(req, VIRTIO_BLK_S_IOERR);
		return 0;
	}
	switch (req->op) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(desc, vq->ch, req->data, req->ndata, req->off_blocks,
					  req->nblocks, io_done, req);
		break;
	case FB_IO_WRITE:
		rc = fb_bdev_writev_blocks(desc, vq->ch, req->data, req->ndata, req->off_blocks,
					   req->nblocks, 0, io_done, req);
		break;
	case FB_IO_FLUSH:
		rc = fb_bdev_flush_blocks(desc, vq->ch, 0, vq->c->num_blocks, io_done, req);
		break;
	case FB_IO_UNMAP:
		rc = fb_bdev_unmap_blocks(desc, vq->ch, req->off_blocks, req->nblocks, io_done, req);
		break;
	case FB_IO_WRITE_ZEROES:
		rc = fb_bdev_write_zeroes_blocks(desc, vq->ch, req->off_blocks, req->nblocks,
						 req->io_flags, io_done, req);
		break;
	default:
		rc = -ENOTSUP;
		break;
	}
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		finish(req, rc == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
	return 0;
}

/* Largest data length of one request (its used length must fit 32 bits). */
#define MAX_REQ_BYTES (1u << 30)

/* Sector range to blocks; false if misaligned or past the end. */
static bool range_ok(const struct vhost_ctrlr *c, uint64_t sector, uint64_t bytes, struct vhost_req *req)
{
	uint64_t bs = c->block_size, off;

	if (sector > UINT64_MAX / VIRTIO_BLK_SECTOR || bytes > MAX_REQ_BYTES)
		return false;
	off = sector * VIRTIO_BLK_SECTOR;
	if (off % bs || bytes % bs)
		return false;
	req->off_blocks = off / bs;
	req->nblocks = bytes / bs;
	return req->off_blocks <= c->num_blocks && req->nblocks <= c->num_blocks - req->off_blocks;
}

/* A discard / write-zeroes request: one segment (max_*_seg is 1). */
static uint8_t parse_seg(struct vhost_req *req, const struct iovec *in, int nin, bool wz)
{
	const struct vhost_ctrlr *c = req->vq->c;
	struct virtio_blk_discard_wz seg;

	if (iov_len(in, nin) != sizeof(seg))
		return VIRTIO_BLK_S_UNSUPP;
	iov_copy_out(in, nin, &seg, sizeof(seg));
	if (wz ? (seg.flags & ~VIRTIO_BLK_WZ_F_UNMAP) : seg.flags)
		return VIRTIO_BLK_S_UNSUPP;
	if (seg.num_sectors == 0 ||
	    !range_ok(c, seg.sector, (uint64_t)seg.num_sectors * VIRTIO_BLK_SECTOR, req))
		return VIRTIO_BLK_S_IOERR;
	req->op = wz ? FB_IO_WRITE_ZEROES : FB_IO_UNMAP;
	req->io_flags = 0;
	return VIRTIO_BLK_S_OK;
}

int vhost_blk_handle(struct vhost_req *req, int nout)
{
	struct vhost_ctrlr *c = req->vq->c;
	struct virtio_blk_outhdr hdr;
	struct iovec *in = req->iov, *out;
	int nin = nout, nwr = req->niov - nout;
	struct iovec *last;
	uint8_t st;

	/* The status byte: the last writable byte. Without one the request
	 * cannot be answered beyond giving the head back. */
	if (nwr <= 0) {
		req->status = NULL;
		req->used_len = 0;
		finish(req, VIRTIO_BLK_S_IOERR);
		return 0;
	}
	out = req->iov + nout;
	last = &out[nwr - 1];
	req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	if (--last->iov_len == 0)
		nwr--;
	req->used_len = 1;
	req->bytes = 0;
	if (iov_copy_out(in, nin, &hdr, sizeof(hdr)) != sizeof(hdr)) {
		finish(req, VIRTIO_BLK_S_IOERR);
		return 0;
	}
	in = iov_skip(in, &nin, sizeof(hdr));
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN: {
		size_t len = iov_len(out, nwr);

		if (len == 0 || !range_ok(c, hdr.sector, len, req)) {
			finish(req, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		req->op = FB_IO_READ;
		req->data = out;
		req->ndata = nwr;
		req->used_len = (uint32_t)len + 1;
		req->bytes = (uint32_t)len;
		break;
	}
	case VIRTIO_BLK_T_OUT: {
		size_t len = iov_len(in, nin);

		if (c->readonly || len == 0 || !range_ok(c, hdr.sector, len, req)) {
			finish(req, VIRTIO_BLK_S_IOERR);
			return 0;
		}
		req->op = FB_IO_WRITE;
		req->data = in;
		req->ndata = nin;
		req->bytes = (uint32_t)len;
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (!c->has_flush) {
			finish(req, VIRTIO_BLK_S_OK); /* no volatile cache to flush */
			return 0;
		}
		req->op = FB_IO_FLUSH;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES];
		size_t n;

		memset(id, 0, sizeof(id));
		memcpy(id, c->bdev_name, strnlen(c->bdev_name, sizeof(id)));
		n = iov_copy_in(out, nwr, id, sizeof(id));
		req->used_len = (uint32_t)n + 1;
		finish(req, VIRTIO_BLK_S_OK);
		return 0;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool wz = hdr.type == VIRTIO_BLK_T_WRITE_ZEROES;

		if (c->readonly || (wz ? !c->has_write_zeroes : !c->has_unmap)) {
			finish(req, c->readonly ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP);
			return 0;
		}
		st = parse_seg(req, in, nin, wz);
		if (st != VIRTIO_BLK_S_OK) {
			finish(req, st);
			return 0;
		}
		break;
	}
	default:
		finish(req, VIRTIO_BLK_S_UNSUPP);
		return 0;
	}
	return vhost_blk_submit(req);
}
