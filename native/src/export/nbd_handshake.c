/* NBD option haggling (fixed newstyle only): NBD_OPT_EXPORT_NAME, ABORT,
 * LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation);
 * anything else gets NBD_REP_ERR_UNSUP. Replies go to c->hs_out.
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

/* ----------------------------------------------------------- handshake */

static int hs_reply(struct fb_nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
		    uint32_t len)
{
	uint8_t *p;

	if (fb_nbd_buf_reserve(&c->hs_out, NBD_OPT_REPLY_HDR_LEN + (size_t)len))
		return -ENOMEM;
	p = c->hs_out.p + c->hs_out.len;
	nbd_put64(p, NBD_MAGIC_OPT_REPLY);
	nbd_put32(p + 8, opt);
	nbd_put32(p + 12, type);
	nbd_put32(p + 16, len);
	if (len)
		memcpy(p + 20, data, len);
	c->hs_out.len += NBD_OPT_REPLY_HDR_LEN + (size_t)len;
	return 0;
}

static int hs_error(struct fb_nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return hs_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint16_t conn_tflags(const struct fb_nbd_conn *c, bool readonly)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
		     NBD_FLAG_SEND_CACHE;

	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

static uint32_t conn_min_block(uint32_t block_size)
{
	/* The protocol caps the minimum block size at 64 KiB. */
	return block_size > 65536 ? 65536 : block_size;
}

struct list_ctx {
	struct fb_nbd_conn *c;
	int rc;
};

static int hs_list_one(const struct fb_nbd_export *exp, void *arg)
{
	struct list_ctx *lc = arg;
	struct fb_nbd_conn *c = lc->c;
	uint8_t *p;
	size_t dlen = strlen(exp->bdev_name) + 5;
	uint32_t len = 4 + exp->name_len + (uint32_t)dlen;

	if (fb_nbd_buf_reserve(&c->hs_out, NBD_OPT_REPLY_HDR_LEN + (size_t)len)) {
		lc->rc = -ENOMEM;
		return lc->rc;
	}
	p = c->hs_out.p + c->hs_out.len;
	nbd_put64(p, NBD_MAGIC_OPT_REPLY);
	nbd_put32(p + 8, NBD_OPT_LIST);
	nbd_put32(p + 12, NBD_REP_SERVER);
	nbd_put32(p + 16, len);
	nbd_put32(p + 20, exp->name_len);
	memcpy(p + 24, exp->name, exp->name_len);
	/* The rest of NBD_REP_SERVER is a human-readable description. */
	memcpy(p + 24 + exp->name_len, "bdev ", 5);
	memcpy(p + 29 + exp->name_len, exp->bdev_name, dlen - 5);
	c->hs_out.len += NBD_OPT_REPLY_HDR_LEN + (size_t)len;
	return 0;
}

static int hs_opt_list(struct fb_nbd_conn *c, uint32_t len)
{
	struct list_ctx lc = { .c = c, .rc = 0 };

	if (len)
		return hs_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
	fb_nbd_export_list(c->st, c->listener_id, hs_list_one, &lc);
	if (lc.rc)
		return lc.rc;
	return hs_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int hs_info_export(struct fb_nbd_conn *c, uint32_t opt, uint64_t size, uint16_t tflags)
{
	uint8_t d[12];

	nbd_put16(d, NBD_INFO_EXPORT);
	nbd_put64(d + 2, size);
	nbd_put16(d + 10, tflags);
	return hs_reply(c, opt, NBD_REP_INFO, d, sizeof(d));
}

static int hs_info_block_size(struct fb_nbd_conn *c, uint32_t opt, uint32_t block_size)
{
	uint8_t d[14];
	uint32_t min = conn_min_block(block_size);
	uint32_t pref = min > FB_NBD_MIN_PREFERRED_BLOCK ? min : FB_NBD_MIN_PREFERRED_BLOCK;

	nbd_put16(d, NBD_INFO_BLOCK_SIZE);
	nbd_put32(d + 2, min);
	nbd_put32(d + 6, pref);
	nbd_put32(d + 10, FB_NBD_MAX_PAYLOAD);
	return hs_reply(c, opt, NBD_REP_INFO, d, sizeof(d));
}

static int hs_info_string(struct fb_nbd_conn *c, uint32_t opt, uint16_t type, const char *s,
			  uint32_t n)
{
	uint8_t d[2 + NBD_MAX_STRING];

	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	nbd_put16(d, type);
	memcpy(d + 2, s, n);
	return hs_reply(c, opt, NBD_REP_INFO, d, 2 + n);
}

/* Same text as the description part of NBD_REP_SERVER. */
static int hs_info_description(struct fb_nbd_conn *c, uint32_t opt, const char *bdev_name)
{
	char d[300];
	int n = snprintf(d, sizeof(d), "bdev %s", bdev_name);

	return hs_info_string(c, opt, NBD_INFO_DESCRIPTION, d,
			      (uint32_t)(n < (int)sizeof(d) ? n : (int)sizeof(d) - 1));
}

/* Sets up the transmission phase for a bound export, on this reactor. */
static int conn_enter_transmission(struct fb_nbd_conn *c, struct fb_nbd_export *exp)
{
	unsigned i;

	c->ch = fb_bdev_get_io_channel(exp->desc);
	if (!c->ch)
		return -ENOMEM;
	c->reqs = calloc(CONN_QD, sizeof(*c->reqs));
	if (!c->reqs)
		return -ENOMEM;
	for (i = 0; i < CONN_QD; i++) {
		c->reqs[i].conn = c;
		c->reqs[i].next = i + 1 < CONN_QD ? &c->reqs[i + 1] : NULL;
	}
	c->req_free = &c->reqs[0];
	c->exp = exp;
	c->size = exp->size;
	c->block_size = exp->block_size;
	c->readonly = exp->readonly;
	c->phase = PH_TRANSMISSION;
	return 0;
}

/* Binds the export; on failure the caller answers the client. */
static int conn_bind(struct fb_nbd_conn *c, const char *name, uint32_t name_len)
{
	struct fb_nbd_export *exp;
	int rc;

	rc = fb_nbd_export_bind(c->st, c->listener_id, name, name_len, &exp);
	if (rc)
		return rc;
	/* The connection now counts in exp->nconns: conn_free unbinds it. */
	c->exp = exp;
	rc = conn_enter_transmission(c, exp);
	if (rc == 0)
		fb_log(c->st->e, FB_LOG_DEBUG, "nbd: connection %p bound to export %s", (void *)c,
		       exp->name);
	return rc;
}

static int hs_opt_export_name(struct fb_nbd_conn *c, const uint8_t *data, uint32_t len)
{
	uint8_t d[8 + 2 + 124];
	size_t n = c->no_zeroes ? 10 : sizeof(d);
	int rc;

	if (len > NBD_MAX_STRING || memchr(data, 0, len))
		return -EINVAL;
	rc = conn_bind(c, (const char *)data, len);
	if (rc)
		return rc;  /* no error reply exists for this option: hard disconnect */
	memset(d, 0, sizeof(d));
	nbd_put64(d, c->size);
	nbd_put16(d + 8, conn_tflags(c, c->readonly));
	if (fb_nbd_buf_reserve(&c->hs_out, n))
		return -ENOMEM;
	memcpy(c->hs_out.p + c->hs_out.len, d, n);
	c->hs_out.len += n;
	return 0;
}

static int hs_opt_info_go(struct fb_nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	struct fb_nbd_export_view v;
	uint32_t name_len, nreq, i;
	const char *name;
	bool want_name = false, want_desc = false;
	char msg[96];
	int rc;

	if (len < 6)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "option data too short");
	name_len = nbd_get32(data);
	if (name_len > len - 6)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "export name length exceeds option length");
	nreq = nbd_get16(data + 4 + name_len);
	if ((uint64_t)len != 6ull + name_len + 2ull * nreq)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "information request count does not match option length");
	name = (const char *)data + 4;
	if (name_len > NBD_MAX_STRING || memchr(name, 0, name_len))
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "export name is not a valid string");
	for (i = 0; i < nreq; i++) {
		uint16_t t = nbd_get16(data + 6 + name_len + 2 * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	rc = fb_nbd_export_lookup(c->st, c->listener_id, name, name_len, &v);
	if (rc) {
		snprintf(msg, sizeof(msg), "no export named '%.*s' on this socket",
			 (int)(name_len > 48 ? 48 : name_len), name);
		return hs_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
	}
	if (opt == NBD_OPT_GO) {
		rc = conn_bind(c, name, name_len);
		if (rc == -ENOENT)
			return hs_error(c, opt, NBD_REP_ERR_UNKNOWN, "export is being removed");
		if (rc == -EBUSY)
			return hs_error(c, opt, NBD_REP_ERR_POLICY,
					"the export is at its connection limit (nbd_max_conns_per_export)");
		if (rc) {
			c->close_after_tx = true;  /* half-bound: end the session */
			return hs_error(c, opt, NBD_REP_ERR_SHUTDOWN, "cannot attach to the export now");
		}
		c->meta = c->meta_name && c->meta_name_len == name_len &&
			  memcmp(c->meta_name, name, name_len) == 0;
		v.size = c->size;
		v.block_size = c->block_size;
		v.readonly = c->readonly;
	}
	rc = hs_info_export(c, opt, v.size, conn_tflags(c, v.readonly));
	if (rc == 0)
		rc = hs_info_block_size(c, opt, v.block_size);
	if (rc == 0 && want_name)
		rc = hs_info_string(c, opt, NBD_INFO_NAME, name, name_len);
	if (rc == 0 && want_desc)
		rc = hs_info_description(c, opt, v.bdev_name);
	if (rc == 0)
		rc = hs_reply(c, opt, NBD_REP_ACK, NULL, 0);
	return rc;
}

static int hs_meta_reply(struct fb_nbd_conn *c, uint32_t opt, uint32_t id)
{
	static const char ctx[] = "base:allocation";
	uint8_t d[4 + sizeof(ctx) - 1];

	nbd_put32(d, id);
	memcpy(d + 4, ctx, sizeof(ctx) - 1);
	return hs_reply(c, opt, NBD_REP_META_CONTEXT, d, sizeof(d));
}

static int hs_opt_meta(struct fb_nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	struct fb_nbd_export_view v;
	uint32_t name_len, nq, i, pos, qlen;
	bool set = opt == NBD_OPT_SET_META_CONTEXT, match = false;
	const char *q;

	if (set) {
		/* A SET replaces the selection even when it fails. */
		free(c->meta_name);
		c->meta_name = NULL;
		c->meta_name_len = 0;
	}
	if (!c->structured)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "negotiate structured replies first");
	if (len < 8)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "option data too short");
	name_len = nbd_get32(data);
	if (name_len > len - 8 || name_len > NBD_MAX_STRING)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "export name length exceeds option length");
	nq = nbd_get32(data + 4 + name_len);
	pos = 8 + name_len;
	/* Validate every query before answering anything. */
	for (i = 0; i < nq; i++) {
		if (len - pos < 4)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "query count exceeds option length");
		qlen = nbd_get32(data + pos);
		if (qlen > len - pos - 4)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "query length exceeds option length");
		q = (const char *)data + pos + 4;
		if (set ? (qlen == 15 && memcmp(q, "base:allocation", 15) == 0)
			: (qlen == 5 && memcmp(q, "base:", 5) == 0) ||
				  (qlen == 15 && memcmp(q, "base:allocation", 15) == 0))
			match = true;
		pos += 4 + qlen;
	}
	if (pos != len)
		return hs_error(c, opt, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
	if (fb_nbd_export_lookup(c->st, c->listener_id, (const char *)data + 4, name_len, &v))
		return hs_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export on this socket");
	if (!set && nq == 0)
		match = true;  /* no query lists everything */
	if (match) {
		if (set) {
			c->meta_name = malloc(name_len ? name_len : 1);
			if (!c->meta_name)
				return -ENOMEM;
			memcpy(c->meta_name, data + 4, name_len);
			c->meta_name_len = name_len;
		}
		if (hs_meta_reply(c, opt, set ? NBD_META_ID_BASE_ALLOCATION : 0))
			return -ENOMEM;
	}
	return hs_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static int conn_handle_option(struct fb_nbd_conn *c, uint32_t opt, const uint8_t *data,
			      uint32_t len)
{
	/* TLS required: nothing is listed, described or opened in the clear. */
	if (c->tls_required && !fb_nbd_tls_up(c) && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
		if (opt == NBD_OPT_EXPORT_NAME)
			return -EACCES;  /* no error reply exists for it: hard disconnect */
		return hs_error(c, opt, NBD_REP_ERR_TLS_REQD,
				"TLS is required on this socket: send NBD_OPT_STARTTLS first");
	}
	switch (opt) {
	case NBD_OPT_STARTTLS:
		if (len)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
		if (!c->tls_creds)
			return hs_error(c, opt, NBD_REP_ERR_POLICY, "TLS is not configured on this socket");
		if (c->tls || c->tls_starting)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "TLS is already started");
		if (hs_reply(c, opt, NBD_REP_ACK, NULL, 0))
			return -ENOMEM;
		fb_nbd_conn_starttls(c);
		return 0;
	case NBD_OPT_EXPORT_NAME:
		return hs_opt_export_name(c, data, len);
	case NBD_OPT_ABORT:
		c->close_after_tx = true;
		return hs_reply(c, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST:
		return hs_opt_list(c, len);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return hs_opt_info_go(c, opt, data, len);
	case NBD_OPT_STRUCTURED_REPLY:
		if (len)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
		if (c->structured)
			return hs_error(c, opt, NBD_REP_ERR_INVALID, "structured replies already negotiated");
		c->structured = true;
		return hs_reply(c, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return hs_opt_meta(c, opt, data, len);
	default:
		return hs_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
	}
}

int fb_nbd_hs_parse(struct fb_nbd_conn *c)
{
	uint32_t avail = c->rx_tail - c->rx_head, opt, len;
	const uint8_t *p = c->rx + c->rx_head;

	if (c->close_after_tx)
		return STEP_STOP;
	if (c->tls_starting)
		return STEP_BLOCKED;  /* what follows STARTTLS is the TLS handshake */
	/* hs_out may move when it grows, so options wait while a send of it is
	 * in flight (clients wait for each reply anyway); they also wait while
	 * replies are piling up unsent, or a client that pipelines cheap
	 * options (NBD_OPT_LIST: 16 bytes in, KiBs out) and reads nothing
	 * would make us buffer without bound. The parse ends by sending, and
	 * the send's completion parses again. */
	if (c->phase == PH_OPTIONS &&
	    (c->tx_busy || c->hs_out.len - c->hs_out.off > CONN_OPT_MAX))
		return STEP_BLOCKED;
	if (c->phase == PH_CLIENT_FLAGS) {
		uint32_t flags;

		if (avail < 4)
			return STEP_NEED_DATA;
		flags = nbd_get32(p);
		c->rx_head += 4;
		if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
			return STEP_ERROR;  /* unknown client flags: the protocol says drop */
		c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
		c->phase = PH_OPTIONS;
		return STEP_MORE;
	}
	if (avail < NBD_OPT_HDR_LEN)
		return STEP_NEED_DATA;
	if (nbd_get64(p) != NBD_MAGIC_OPTS)
		return STEP_ERROR;
	opt = nbd_get32(p + 8);
	len = nbd_get32(p + 12);
	if (len > CONN_OPT_MAX) {
		if (opt == NBD_OPT_EXPORT_NAME)
			return STEP_ERROR;
		c->rx_head += NBD_OPT_HDR_LEN;
		c->discard = len;
		return hs_error(c, opt, NBD_REP_ERR_TOO_BIG, "option data too long") ? STEP_ERROR
										 : STEP_MORE;
	}
	if (avail < NBD_OPT_HDR_LEN + len)
		return STEP_NEED_DATA;
	c->rx_head += NBD_OPT_HDR_LEN + len;
	if (conn_handle_option(c, opt, p + NBD_OPT_HDR_LEN, len))
		return STEP_ERROR;
	return STEP_MORE;
}

