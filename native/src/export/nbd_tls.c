/* NBD over TLS (NBD_OPT_STARTTLS) with GnuTLS: PSK (a psk file of
 * `username:hexkey` lines, as qemu and nbdkit use) or an X.509 certificate
 * (optionally requiring client certificates signed by a CA).
 *
 * This kernel has no kTLS, so records go through GnuTLS in user space, but
 * the socket I/O stays on the reactor's io_uring: GnuTLS reads ciphertext
 * from c->tls_in (filled by the connection's usual recv) and writes it to
 * c->tls_out (sent by the usual send), through the transport callbacks
 * below, which never block. Plaintext comes out into c->rx, so the option
 * and request parsers are the same as on a plain connection, and a plain
 * connection never touches any of this (c->tls is NULL).
 *
 * Credentials belong to the listener and are loaded when it is created;
 * every connection's session references them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>

#include "flexbso/bdev_module.h"
#include "nbd_conn.h"
#include "nbd_tls.h"

struct fb_nbd_tls_creds {
	_Atomic unsigned refs;
	gnutls_psk_server_credentials_t psk;
	gnutls_certificate_credentials_t x509;
	bool verify_peer;            /* X.509 with a CA: clients must present a certificate */
};

/* PSK: TLS 1.3 and 1.2 (ECDHE-)PSK, which libnbd, qemu and nbdkit offer. */
#define PRIO_PSK "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"
#define PRIO_X509 "NORMAL"

int fb_nbd_tls_creds_load(const struct fb_nbd_tls_opts *o, struct fb_nbd_tls_creds **out,
			  struct fb_err *err)
{
	struct fb_nbd_tls_creds *cr;
	int rc;

	*out = NULL;
	if (!o->psk_file && !o->cert_file) {
		if (o->key_file || o->ca_file || o->required) {
			fb_err_set(err, "tls: give tls_psk_file, or tls_cert_file with tls_key_file");
			return -EINVAL;
		}
		return 0;  /* no TLS on this listener */
	}
	if (o->psk_file && (o->cert_file || o->key_file || o->ca_file)) {
		fb_err_set(err, "tls: tls_psk_file and X.509 files (tls_cert_file, tls_key_file, "
			   "tls_ca_file) exclude each other; pick one");
		return -EINVAL;
	}
	if (o->cert_file && !o->key_file) {
		fb_err_set(err, "tls: tls_cert_file needs tls_key_file (the certificate's private key, PEM)");
		return -EINVAL;
	}
	cr = calloc(1, sizeof(*cr));
	if (!cr) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	if (o->psk_file) {
		FILE *f = fopen(o->psk_file, "r");

		if (!f) {
			rc = -errno;
			fb_err_set(err, "tls_psk_file %.300s: %s", o->psk_file, strerror(errno));
			goto fail;
		}
		fclose(f);
		if (gnutls_psk_allocate_server_credentials(&cr->psk) < 0 ||
		    gnutls_psk_set_server_credentials_file(cr->psk, o->psk_file) < 0) {
			fb_err_set(err, "tls_psk_file %.300s: cannot load it (one `username:hexkey` "
				   "line per client)", o->psk_file);
			rc = -EINVAL;
			goto fail;
		}
	} else {
		if (gnutls_certificate_allocate_credentials(&cr->x509) < 0) {
			fb_err_set(err, "out of memory");
			rc = -ENOMEM;
			goto fail;
		}
		rc = gnutls_certificate_set_x509_key_file(cr->x509, o->cert_file, o->key_file,
							  GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			fb_err_set(err, "tls_cert_file %.200s / tls_key_file %.200s: %s (PEM certificate "
				   "and its private key)", o->cert_file, o->key_file, gnutls_strerror(rc));
			rc = -EINVAL;
			goto fail;
		}
		if (o->ca_file) {
			rc = gnutls_certificate_set_x509_trust_file(cr->x509, o->ca_file,
								    GNUTLS_X509_FMT_PEM);
			if (rc <= 0) {
				fb_err_set(err, "tls_ca_file %.300s: %s", o->ca_file,
					   rc < 0 ? gnutls_strerror(rc) : "no certificate in it");
				rc = -EINVAL;
				goto fail;
			}
			cr->verify_peer = true;
		}
	}
	atomic_init(&cr->refs, 1);
	*out = cr;
	return 0;
fail:
	atomic_init(&cr->refs, 1);
	fb_nbd_tls_creds_put(cr);
	return rc;
}

struct fb_nbd_tls_creds *fb_nbd_tls_creds_get(struct fb_nbd_tls_creds *cr)
{
	if (cr)
		atomic_fetch_add_explicit(&cr->refs, 1, memory_order_relaxed);
	return cr;
}

void fb_nbd_tls_creds_put(struct fb_nbd_tls_creds *cr)
{
	if (!cr || atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (cr->psk)
		gnutls_psk_free_server_credentials(cr->psk);
	if (cr->x509)
		gnutls_certificate_free_credentials(cr->x509);
	free(cr);
}

/* ------------------------------------------------------------ sessions */

struct fb_nbd_tls {
	gnutls_session_t s;
	bool up;                     /* handshake done */
	bool verify_peer;            /* the client's certificate chain must check out */
	uint8_t *in;                 /* ciphertext received, not yet given to GnuTLS */
	uint32_t in_head, in_tail;
	struct conn_buf out;         /* ciphertext to send */
};

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct fb_nbd_conn *c = ptr;
	struct fb_nbd_tls *t = c->tls;
	size_t n = t->in_tail - t->in_head;

	if (n == 0) {
		gnutls_transport_set_errno(t->s, EAGAIN);
		return -1;
	}
	if (n > len)
		n = len;
	memcpy(buf, t->in + t->in_head, n);
	t->in_head += (uint32_t)n;
	if (t->in_head == t->in_tail)
		t->in_head = t->in_tail = 0;
	return (ssize_t)n;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
	struct fb_nbd_conn *c = ptr;
	struct fb_nbd_tls *t = c->tls;

	if (fb_nbd_buf_reserve(&t->out, len)) {
		gnutls_transport_set_errno(t->s, ENOMEM);
		return -1;
	}
	memcpy(t->out.p + t->out.len, buf, len);
	t->out.len += len;
	return (ssize_t)len;
}

int fb_nbd_tls_start(struct fb_nbd_conn *c, const struct fb_nbd_tls_creds *cr)
{
	struct fb_nbd_tls *t = calloc(1, sizeof(*t));
	int rc;

	if (!t || !(t->in = malloc(FB_NBD_TLS_IN_CAP))) {
		free(t);
		return -ENOMEM;
	}
	c->tls = t;
	if (gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) {
		t->s = NULL;
		return -ENOMEM;
	}
	if (cr->psk) {
		rc = gnutls_priority_set_direct(t->s, PRIO_PSK, NULL);
		if (rc >= 0)
			rc = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cr->psk);
	} else {
		rc = gnutls_priority_set_direct(t->s, PRIO_X509, NULL);
		if (rc >= 0)
			rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cr->x509);
		if (rc >= 0 && cr->verify_peer) {
			t->verify_peer = true;
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
			/* No CA names in the request: a client sends whatever it has,
			 * and the chain check below decides (and says why). */
			gnutls_certificate_send_x509_rdn_sequence(t->s, 1);
		}
	}
	if (rc < 0)
		return -EINVAL;
	gnutls_transport_set_ptr(t->s, c);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_push_function(t->s, tls_push);
	/* Bytes the client sent after NBD_OPT_STARTTLS are its first records. */
	fb_nbd_tls_rx_put(c, c->rx + c->rx_head, c->rx_tail - c->rx_head);
	c->rx_head = c->rx_tail = 0;
	return 0;
}

void fb_nbd_tls_end(struct fb_nbd_conn *c)
{
	struct fb_nbd_tls *t = c->tls;

	if (t && t->s) {
		gnutls_deinit(t->s);
		t->s = NULL;
	}
}

void fb_nbd_tls_free(struct fb_nbd_conn *c)
{
	struct fb_nbd_tls *t = c->tls;

	if (!t)
		return;
	fb_nbd_tls_end(c);
	free(t->in);
	free(t->out.p);
	free(t);
	c->tls = NULL;
}

bool fb_nbd_tls_up(const struct fb_nbd_conn *c)
{
	return c->tls && c->tls->up;
}

void fb_nbd_tls_rx_space(struct fb_nbd_conn *c, uint8_t **dst, size_t *len)
{
	struct fb_nbd_tls *t = c->tls;

	if (t->in_head) {
		memmove(t->in, t->in + t->in_head, t->in_tail - t->in_head);
		t->in_tail -= t->in_head;
		t->in_head = 0;
	}
	*dst = t->in + t->in_tail;
	*len = FB_NBD_TLS_IN_CAP - t->in_tail;
}

void fb_nbd_tls_rx_put(struct fb_nbd_conn *c, const uint8_t *p, size_t n)
{
	struct fb_nbd_tls *t = c->tls;

	if (p && n)
		memcpy(t->in + t->in_tail, p, n);  /* n <= CONN_RX_CAP <= FB_NBD_TLS_IN_CAP */
	t->in_tail += (uint32_t)n;
}

bool fb_nbd_tls_rx_pending(const struct fb_nbd_conn *c)
{
	const struct fb_nbd_tls *t = c->tls;

	return t->s && t->up && (t->in_tail > t->in_head || gnutls_record_check_pending(t->s) > 0);
}

/* Peer check after the handshake: X.509 with a CA verifies the client's
 * chain; PSK needs nothing more (only a listed key completes a handshake). */
static int tls_check_peer(struct fb_nbd_conn *c)
{
	unsigned status = 0;

	if (!c->tls->verify_peer)
		return 0;
	if (gnutls_certificate_verify_peers2(c->tls->s, &status) < 0 || status != 0)
		return -EACCES;
	return 0;
}

int fb_nbd_tls_advance(struct fb_nbd_conn *c)
{
	struct fb_nbd_tls *t = c->tls;
	ssize_t r;
	int rc;

	if (!t->s)
		return -EPIPE;
	if (!t->up) {
		rc = gnutls_handshake(t->s);
		if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
			return 0;
		if (rc < 0) {
			fb_log(c->st->e, FB_LOG_WARN, "nbd: TLS handshake failed: %s; disconnecting",
			       gnutls_strerror(rc));
			return -EACCES;
		}
		if (tls_check_peer(c)) {
			fb_log(c->st->e, FB_LOG_WARN,
			       "nbd: TLS client certificate not signed by tls_ca_file; disconnecting");
			return -EACCES;
		}
		t->up = true;
		fb_log(c->st->e, FB_LOG_DEBUG, "nbd: connection %p: TLS up (%s%s%s)", (void *)c,
		       gnutls_protocol_get_name(gnutls_protocol_get_version(t->s)),
		       gnutls_psk_server_get_username(t->s) ? ", psk user " : "",
		       gnutls_psk_server_get_username(t->s) ? gnutls_psk_server_get_username(t->s) : "");
	}
	/* Plaintext into the parser's receive buffer, as much as fits. */
	if (c->rx_head) {
		memmove(c->rx, c->rx + c->rx_head, c->rx_tail - c->rx_head);
		c->rx_tail -= c->rx_head;
		c->rx_head = 0;
	}
	while (c->rx_tail < CONN_RX_CAP) {
		r = gnutls_record_recv(t->s, c->rx + c->rx_tail, CONN_RX_CAP - c->rx_tail);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			break;
		if (r == 0)
			return -EPIPE;  /* close_notify */
		if (r < 0)
			return gnutls_error_is_fatal((int)r) ? -EPROTO : 0;
		c->rx_tail += (uint32_t)r;
	}
	return 0;
}

int fb_nbd_tls_encrypt(struct fb_nbd_conn *c, const struct iovec *iov, unsigned n)
{
	struct fb_nbd_tls *t = c->tls;

	if (!t->s)
		return -EPIPE;
	gnutls_record_cork(t->s);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			ssize_t r = gnutls_record_send(t->s, p, left);

			if (r < 0 && r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
				return -EPROTO;
			if (r > 0) {
				p += r;
				left -= (size_t)r;
			}
		}
	}
	return gnutls_record_uncork(t->s, GNUTLS_RECORD_WAIT) < 0 ? -EPROTO : 0;
}

struct conn_buf *fb_nbd_tls_out(struct fb_nbd_conn *c)
{
	return &c->tls->out;
}
