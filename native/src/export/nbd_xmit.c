/* NBD transmission phase: request parsing and validation, bdev I/O, replies
 * (simple, or structured when negotiated: one OFFSET_DATA chunk per read,
 * errors as ERROR chunks, base:allocation block status).
 *
 * Reads on a bdev with zcopy (malloc) take no buffer: the bdev lends its
 * memory and the reply's data iovecs point into it until the send completes.
 * NBD does not order overlapping requests in flight, so a concurrent write
 * showing through is allowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_conn.h"
#include "nbd_proto.h"

static void conn_req_submit(struct fb_nbd_conn *c, struct nbd_req *req);

/* The bdev is short of memory: keep the request (still counted in
 * io_inflight, so drains and frees wait for it) and submit it again at the
 * end of this loop pass. The I/O is never failed for -ENOMEM. */
static void conn_req_retry_later(struct fb_nbd_conn *c, struct nbd_req *req)
{
	req->next = NULL;
	if (c->retry_tail)
		c->retry_tail->next = req;
	else
		c->retry_head = req;
	c->retry_tail = req;
	fb_nbd_conn_schedule(c);
}

/* --------------------------------------------------------- transmission */

static uint32_t nbd_errno(int status)
{
	switch (-status) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

static void chunk_hdr(uint8_t *p, uint16_t type, uint64_t cookie, uint32_t len)
{
	nbd_put32(p, NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(p + 4, NBD_REPLY_FLAG_DONE);
	nbd_put16(p + 6, type);
	nbd_put64(p + 8, cookie);
	nbd_put32(p + 16, len);
}

/* Builds the reply for a finished request and queues it. */
static void conn_req_reply(struct fb_nbd_conn *c, struct nbd_req *req)
{
	uint8_t *h = req->hdr;
	bool sr = c->structured && (req->type == NBD_CMD_READ || req->type == NBD_CMD_BLOCK_STATUS);

	req->tx_iovcnt = 1;
	req->tx_iov[0].iov_base = h;
	if (sr && req->nbd_err) {
		chunk_hdr(h, NBD_REPLY_TYPE_ERROR, req->cookie, 6);
		nbd_put32(h + 20, req->nbd_err);
		nbd_put16(h + 24, 0);
		req->tx_iov[0].iov_len = 26;
	} else if (sr && req->type == NBD_CMD_BLOCK_STATUS) {
		/* We cannot see holes cheaply: the whole range is allocated data. */
		chunk_hdr(h, NBD_REPLY_TYPE_BLOCK_STATUS, req->cookie, 12);
		nbd_put32(h + 20, NBD_META_ID_BASE_ALLOCATION);
		nbd_put32(h + 24, req->len);
		nbd_put32(h + 28, 0);
		req->tx_iov[0].iov_len = 32;
	} else if (sr && req->len == 0) {
		chunk_hdr(h, NBD_REPLY_TYPE_NONE, req->cookie, 0);
		req->tx_iov[0].iov_len = NBD_CHUNK_HDR_LEN;
	} else if (sr) {
		/* Data is complete before we send, so the data chunk can be final. */
		chunk_hdr(h, NBD_REPLY_TYPE_OFFSET_DATA, req->cookie, 8 + req->len);
		nbd_put64(h + 20, req->offset);
		req->tx_iov[0].iov_len = 28;
	} else {
		nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
		nbd_put32(h + 4, req->nbd_err);
		nbd_put64(h + 8, req->cookie);
		req->tx_iov[0].iov_len = NBD_SIMPLE_REPLY_LEN;
	}
	if (req->type == NBD_CMD_READ && !req->nbd_err && req->len) {
		if (req->zio) {
			int n;
			const struct iovec *iov = fb_bdev_io_get_buf_iovs(req->zio, &n);

			/* Copied: partial sends advance tx_iov, the io's own stay put. */
			for (int i = 0; i < n; i++)
				req->tx_iov[1 + i] = iov[i];
			req->tx_iovcnt = 1 + n;
		} else {
			req->tx_iov[1].iov_base = req->buf;
			req->tx_iov[1].iov_len = req->len;
			req->tx_iovcnt = 2;
		}
	}
	fb_nbd_conn_txq_push(c, req);
}

static void conn_req_fail(struct fb_nbd_conn *c, struct nbd_req *req, uint32_t nbd_err)
{
	req->nbd_err = nbd_err;
	conn_req_reply(c, req);
}

/* A bdev I/O of req finished (its io already freed, or kept in req->zio). */
static void conn_io_done(struct fb_nbd_conn *c, struct nbd_req *req, int status)
{
	c->io_inflight--;
	if (c->closing) {
		fb_nbd_req_put(c, req);
		fb_nbd_conn_maybe_free(c);
		return;
	}
	if (status == 0 && req->step == RS_FLUSH_AFTER && c->exp->has_flush) {
		req->step = RS_FLUSHING;  /* FUA on a trim: make the hole durable */
		conn_req_submit(c, req);
		return;
	}
	req->nbd_err = nbd_errno(status);
	conn_req_reply(c, req);
	fb_nbd_conn_check_drained(c);
}

static void conn_io_cb(struct fb_bdev_io *io, int status, void *arg)
{
	struct nbd_req *req = arg;

	fb_bdev_free_io(io);
	conn_io_done(req->conn, req, status);
}

/* A zcopy read: the io is kept until its reply is sent (fb_nbd_req_put). */
static void conn_zcopy_cb(struct fb_bdev_io *io, int status, void *arg)
{
	struct nbd_req *req = arg;

	if (status == 0)
		req->zio = io;
	else
		fb_bdev_free_io(io);
	conn_io_done(req->conn, req, status);
}

/* Starts (or continues) the bdev work of a validated request. */
static void conn_req_submit(struct fb_nbd_conn *c, struct nbd_req *req)
{
	struct fb_bdev_desc *d = c->exp->desc;
	uint64_t lba = req->offset / c->block_size, nb = req->len / c->block_size;
	uint32_t fua = (req->flags & NBD_CMD_FLAG_FUA) ? FB_IO_FLAG_FUA : 0;
	int rc;

	c->io_inflight++;
	switch (req->step == RS_FLUSHING ? NBD_CMD_FLUSH : req->type) {
	case NBD_CMD_READ:
		if (c->exp->has_zcopy)
			rc = fb_bdev_zcopy_start(d, c->ch, lba, nb, true, conn_zcopy_cb, req);
		else
			rc = fb_bdev_readv_blocks(d, c->ch, &req->io_iov, 1, lba, nb, conn_io_cb, req);
		break;
	case NBD_CMD_WRITE:
		rc = fb_bdev_writev_blocks(d, c->ch, &req->io_iov, 1, lba, nb, fua, conn_io_cb, req);
		break;
	case NBD_CMD_FLUSH:
		rc = fb_bdev_flush_blocks(d, c->ch, 0, c->size / c->block_size, conn_io_cb, req);
		break;
	case NBD_CMD_TRIM:
		if (fua)
			req->step = RS_FLUSH_AFTER;
		rc = fb_bdev_unmap_blocks(d, c->ch, lba, nb, conn_io_cb, req);
		break;
	case NBD_CMD_WRITE_ZEROES:
		/* Zeros in place or emulated by the bdev core; NO_HOLE keeps the
		 * blocks allocated. */
		rc = fb_bdev_write_zeroes_blocks(d, c->ch, lba, nb,
						 fua | ((req->flags & NBD_CMD_FLAG_NO_HOLE) ?
							FB_IO_FLAG_NO_HOLE : 0),
						 conn_io_cb, req);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc == -ENOMEM) {
		conn_req_retry_later(c, req);
	} else if (rc) {
		c->io_inflight--;  /* nothing started: answer now */
		conn_req_fail(c, req, nbd_errno(rc));
	}
}

void fb_nbd_xmit_retry(struct fb_nbd_conn *c)
{
	struct nbd_req *req = c->retry_head, *next;

	c->retry_head = c->retry_tail = NULL;
	for (; req; req = next) {
		next = req->next;
		req->next = NULL;
		c->io_inflight--;
		if (c->closing)
			fb_nbd_req_put(c, req);
		else
			conn_req_submit(c, req);
	}
}

/* The error a request deserves before any I/O, or 0. */
static uint32_t conn_req_check(const struct fb_nbd_conn *c, const struct nbd_req *req)
{
	uint16_t allowed;
	bool write = false;

	switch (req->type) {
	case NBD_CMD_READ:
		allowed = NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		allowed = NBD_CMD_FLAG_FUA;
		write = true;
		break;
	case NBD_CMD_WRITE_ZEROES:
		allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
		write = true;
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_CACHE:
		allowed = NBD_CMD_FLAG_FUA;
		break;
	case NBD_CMD_BLOCK_STATUS:
		if (!c->meta)
			return NBD_EINVAL;  /* no metadata context selected */
		allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
		break;
	default:
		return NBD_EINVAL;
	}
	if (req->flags & ~allowed)
		return NBD_EINVAL;
	if (write && c->readonly)
		return NBD_EPERM;
	if (req->type == NBD_CMD_FLUSH)
		return 0;  /* offset and length are reserved */
	if (req->len > c->size || req->offset > c->size - req->len)
		return (req->type == NBD_CMD_WRITE || req->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC
											 : NBD_EINVAL;
	if ((req->offset | req->len) % c->block_size)
		return NBD_EINVAL;
	if (req->type == NBD_CMD_READ && req->len > FB_NBD_MAX_PAYLOAD)
		return NBD_EINVAL;
	if (req->type == NBD_CMD_BLOCK_STATUS && req->len == 0)
		return NBD_EINVAL;
	return 0;
}

/* Runs a validated request whose payload (if any) is complete. */
static void conn_req_start(struct fb_nbd_conn *c, struct nbd_req *req)
{
	switch (req->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		if (req->len == 0)
			break;
		if (req->type == NBD_CMD_TRIM && !c->exp->has_unmap)
			break;  /* trim is advisory */
		conn_req_submit(c, req);
		return;
	case NBD_CMD_FLUSH:
		if (!c->exp->has_flush)
			break;  /* nothing volatile to flush */
		conn_req_submit(c, req);
		return;
	default:
		break;  /* CACHE (a hint) and BLOCK_STATUS need no I/O */
	}
	conn_req_reply(c, req);
}

/* Takes the payload bytes already in the receive buffer for rx_req; the
 * request starts once the payload is complete. */
int fb_nbd_xmit_payload(struct fb_nbd_conn *c)
{
	struct nbd_req *req = c->rx_req;
	uint32_t avail = c->rx_tail - c->rx_head, need = req->len - req->got;
	uint32_t n = avail < need ? avail : need;

	if (n) {
		memcpy(req->buf + req->got, c->rx + c->rx_head, n);
		req->got += n;
		c->rx_head += n;
	}
	if (req->got < req->len)
		return STEP_NEED_DATA;
	c->rx_req = NULL;
	conn_req_start(c, req);
	return STEP_MORE;
}

int fb_nbd_xmit_parse(struct fb_nbd_conn *c)
{
	const uint8_t *p = c->rx + c->rx_head;
	struct nbd_req *req;
	uint32_t len, err;
	uint16_t type;
	bool payload;
	int rc;

	if (c->rx_tail - c->rx_head < NBD_REQUEST_LEN)
		return STEP_NEED_DATA;
	if (nbd_get32(p) != NBD_REQUEST_MAGIC)
		return STEP_ERROR;  /* cannot resynchronize a byte stream */
	type = nbd_get16(p + 6);
	len = nbd_get32(p + 24);
	payload = type == NBD_CMD_WRITE;
	if (payload && len > FB_NBD_MAX_PAYLOAD)
		return STEP_ERROR;  /* beyond 32 MiB the protocol lets us treat it as abuse */
	if (type == NBD_CMD_DISC) {
		c->rx_head += NBD_REQUEST_LEN;
		fb_nbd_conn_drain(c);
		return STEP_STOP;
	}
	if (!c->req_free)
		return STEP_BLOCKED;
	if ((type == NBD_CMD_READ || payload) && c->bytes_held && c->bytes_held + len > CONN_BUDGET)
		return STEP_BLOCKED;
	req = fb_nbd_req_get(c);
	req->flags = nbd_get16(p + 4);
	req->type = type;
	req->cookie = nbd_get64(p + 8);
	req->offset = nbd_get64(p + 16);
	req->len = len;
	err = conn_req_check(c, req);
	if (!err && type == NBD_CMD_READ && len && c->exp->has_zcopy)
		fb_nbd_req_charge(c, req);  /* data will come from the bdev's memory */
	else if (!err && (type == NBD_CMD_READ || payload) && len &&
		 (rc = fb_nbd_req_buf_get(c, req)) != 0) {
		if (rc == -EAGAIN || (rc == -ENOMEM && (c->bytes_held || c->io_inflight))) {
			fb_nbd_req_put(c, req);
			return STEP_BLOCKED;  /* retried when memory comes back */
		}
		err = NBD_ENOMEM;  /* malloc failed with nothing held, or larger than the budget */
	}
	c->rx_head += NBD_REQUEST_LEN;
	if (err) {
		if (payload)
			c->discard = len;  /* skip the payload of a refused write */
		conn_req_fail(c, req, err);
		return STEP_MORE;
	}
	if (payload) {
		c->rx_req = req;
		c->rx_seq++;
		return fb_nbd_xmit_payload(c);
	}
	conn_req_start(c, req);
	return STEP_MORE;
}

/* Consumes whatever the receive buffer holds, then re-arms the receive
 * unless we have to stop (blocked, draining, closing). */
