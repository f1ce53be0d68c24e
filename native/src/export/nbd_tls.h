/* NBD over TLS (nbd_tls.c): listener credentials and per-connection
 * sessions that move records through the connection's own buffers. */
#ifndef FLEXBSO_NBD_TLS_H
#define FLEXBSO_NBD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "flexbso/flexbso.h"

#define FB_NBD_TLS_IN_CAP (80u << 10)  /* ciphertext buffer: > CONN_RX_CAP, room for a record */

struct fb_nbd_conn;
struct conn_buf;
struct fb_nbd_tls_creds;

struct fb_nbd_tls_opts {
	const char *psk_file;              /* `username:hexkey` lines */
	const char *cert_file, *key_file;  /* X.509 server certificate and key, PEM */
	const char *ca_file;               /* X.509: clients must present a certificate it signed */
	bool required;                     /* nothing is listed or opened before STARTTLS */
};

/* Loads credentials (control thread); *out stays NULL when o names none. */
int fb_nbd_tls_creds_load(const struct fb_nbd_tls_opts *o, struct fb_nbd_tls_creds **out,
			  struct fb_err *err);
/* Reference counted: the listener holds one, each connection one. */
struct fb_nbd_tls_creds *fb_nbd_tls_creds_get(struct fb_nbd_tls_creds *cr);
void fb_nbd_tls_creds_put(struct fb_nbd_tls_creds *cr);

/* Connection side (its reactor). start: after the STARTTLS ACK is sent;
 * bytes left in c->rx become the first ciphertext. */
int fb_nbd_tls_start(struct fb_nbd_conn *c, const struct fb_nbd_tls_creds *cr);
void fb_nbd_tls_end(struct fb_nbd_conn *c);   /* the session goes; buffers stay */
void fb_nbd_tls_free(struct fb_nbd_conn *c);  /* once no send or recv is in flight */
bool fb_nbd_tls_up(const struct fb_nbd_conn *c);
/* Where the next recv of ciphertext goes; then rx_put(c, NULL, n). */
void fb_nbd_tls_rx_space(struct fb_nbd_conn *c, uint8_t **dst, size_t *len);
void fb_nbd_tls_rx_put(struct fb_nbd_conn *c, const uint8_t *p, size_t n);
/* Ciphertext or plaintext waits inside: decrypt before receiving more. */
bool fb_nbd_tls_rx_pending(const struct fb_nbd_conn *c);
/* Runs the handshake, then decrypts into c->rx as much as fits: 0 or a
 * negative errno (the connection must close). */
int fb_nbd_tls_advance(struct fb_nbd_conn *c);
/* Encrypts the plaintext iovecs into the ciphertext buffer (all of it). */
int fb_nbd_tls_encrypt(struct fb_nbd_conn *c, const struct iovec *iov, unsigned n);
struct conn_buf *fb_nbd_tls_out(struct fb_nbd_conn *c);

#endif
