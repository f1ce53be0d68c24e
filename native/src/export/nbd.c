/* NBD export registry and listeners: fb_nbd_export_add/remove/foreach.
 *
 * One fb_nbd_state per engine holds the exports and the listening sockets.
 * Exports with the same listen string share a listener; the listener accepts
 * on reactor 0 through io_uring and hands each connection to a reactor in
 * round-robin order (nbd_conn.c runs the protocol there).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "flexbso/bdev_module.h"
#include "nbd.h"
#include "nbd_proto.h"
#include "nbd_tls.h"
#include "unix_sock.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void nbd_subsys_fini(struct fb_engine *e, void *ctx);

/* fb_engine_opts.nbd_mem_limit, or min(1 GiB, physical RAM / 4). A request
 * whose buffer class exceeds the limit is failed with ENOMEM (it could never
 * be admitted); no buffer is ever charged past the limit. */
static size_t nbd_default_mem_limit(struct fb_engine *e)
{
	size_t lim = fb_engine_get_opts(e)->nbd_mem_limit;
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	if (lim)
		return lim;
	lim = (size_t)1 << 30;
	if (pages > 0 && psz > 0 && (size_t)pages / 4 * (size_t)psz < lim)
		lim = (size_t)pages / 4 * (size_t)psz;
	return lim;
}


/* The engine's NBD state (an engine subsystem); created on first use when
 * `create`. */
static struct fb_nbd_state *nbd_state_get(struct fb_engine *e, bool create)
{
	struct fb_nbd_state *st;

	fb_engine_subsys_lock(e);
	st = fb_engine_subsys_get(e, "nbd");
	if (!st && create) {
		st = calloc(1, sizeof(*st));
		if (st) {
			st->e = e;
			st->nreactors = fb_engine_reactor_count(e);
			st->per_reactor = calloc(st->nreactors ? st->nreactors : 1,
						 sizeof(*st->per_reactor));
		}
		if (st && st->per_reactor &&
		    fb_engine_subsys_register(e, "nbd", st, nbd_subsys_fini) == 0) {
			pthread_mutex_init(&st->ctrl, NULL);
			pthread_mutex_init(&st->lock, NULL);
			pthread_cond_init(&st->cond, NULL);
			st->next_listener_id = 1;
			st->mem_limit = nbd_default_mem_limit(e);
			st->stall_ms = fb_engine_get_opts(e)->nbd_stall_timeout_ms;
			if (!st->stall_ms)
				st->stall_ms = 10000;
			st->payload_ms = fb_engine_get_opts(e)->nbd_payload_timeout_ms;
			if (!st->payload_ms)
				st->payload_ms = 30000;
			st->max_per_export = fb_engine_get_opts(e)->nbd_max_conns_per_export;
			if (!st->max_per_export)
				st->max_per_export = 1024;
			st->max_per_client = fb_engine_get_opts(e)->nbd_max_conns_per_client;
			if (!st->max_per_client)
				st->max_per_client = 256;
		} else if (st) {
			free(st->per_reactor);
			free(st);
			st = NULL;
		}
	}
	fb_engine_subsys_unlock(e);
	return st;
}

void fb_nbd_mem_stats(struct fb_engine *e, struct fb_nbd_mem_stats *out)
{
	struct fb_nbd_state *st = e ? nbd_state_get(e, false) : NULL;

	memset(out, 0, sizeof(*out));
	if (!st)
		return;
	out->used = atomic_load_explicit(&st->mem_used, memory_order_relaxed);
	out->limit = st->mem_limit;
	out->paused = atomic_load_explicit(&st->mem_paused, memory_order_relaxed);
}

static struct fb_nbd_export *export_find(struct fb_nbd_state *st, const char *name, size_t len)
{
	struct fb_nbd_export *exp;

	for (exp = st->exports; exp; exp = exp->next)
		if (exp->name_len == len && memcmp(exp->name, name, len) == 0)
			return exp;
	return NULL;
}

/* An empty name asks for the listener's default export: its first one. */
static struct fb_nbd_export *export_find_on(struct fb_nbd_state *st, uint64_t listener_id,
					    const char *name, uint32_t len)
{
	struct fb_nbd_export *exp;

	for (exp = st->exports; exp; exp = exp->next) {
		if (exp->listener->id != listener_id || exp->removing)
			continue;
		if (len == 0 || (exp->name_len == len && memcmp(exp->name, name, len) == 0))
			return exp;
	}
	return NULL;
}

int fb_nbd_export_lookup(struct fb_nbd_state *st, uint64_t listener_id, const char *name,
			 uint32_t name_len, struct fb_nbd_export_view *view)
{
	struct fb_nbd_export *exp;
	int rc = -ENOENT;

	pthread_mutex_lock(&st->lock);
	exp = export_find_on(st, listener_id, name, name_len);
	if (exp) {
		view->size = exp->size;
		view->block_size = exp->block_size;
		view->readonly = exp->readonly;
		snprintf(view->bdev_name, sizeof(view->bdev_name), "%s", exp->bdev_name);
		rc = 0;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int fb_nbd_export_bind(struct fb_nbd_state *st, uint64_t listener_id, const char *name,
		       uint32_t name_len, struct fb_nbd_export **out)
{
	struct fb_nbd_export *exp;
	int rc = -ENOENT;

	pthread_mutex_lock(&st->lock);
	exp = st->stopping ? NULL : export_find_on(st, listener_id, name, name_len);
	if (exp && exp->nconns >= st->max_per_export) {
		if (!exp->cap_warned)
			fb_log(st->e, FB_LOG_WARN,
			       "nbd: export %s has %u connections (nbd_max_conns_per_export): further "
			       "ones are refused (logged once); close some or raise the limit",
			       exp->name, exp->nconns);
		exp->cap_warned = true;
		rc = -EBUSY;
	} else if (exp) {
		exp->nconns++;
		*out = exp;
		rc = 0;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int fb_nbd_export_list(struct fb_nbd_state *st, uint64_t listener_id,
		       int (*fn)(const struct fb_nbd_export *exp, void *arg), void *arg)
{
	struct fb_nbd_export *exp;
	int rc = 0;

	pthread_mutex_lock(&st->lock);
	for (exp = st->exports; exp && rc == 0; exp = exp->next)
		if (exp->listener->id == listener_id && !exp->removing)
			rc = fn(exp, arg);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ------------------------------------------------------------ listeners */

static void listener_op_done(struct fb_nbd_listener *l)
{
	struct fb_nbd_state *st = l->st;

	l->ops--;
	if (l->closing && l->ops == 0) {
		pthread_mutex_lock(&st->lock);
		l->closed = true;
		pthread_cond_broadcast(&st->cond);
		pthread_mutex_unlock(&st->lock);
	}
}

static void listener_arm(struct fb_nbd_listener *l)
{
	struct io_uring_sqe *sqe = fb_reactor_get_sqe(l->reactor);

	io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &l->accept_op);
	l->ops++;
	l->accept_armed = true;
}

/* Descriptors kept free for everything but NBD connections: the engine
 * process's RPC socket and its clients, bdev files, vhost sockets. An
 * accepted descriptor at or above RLIMIT_NOFILE - FD_RESERVE means fewer
 * than FD_RESERVE remain (descriptors are allocated lowest first), so the
 * connection is refused. The limit is read at each accept: it can change
 * (prlimit) while the engine runs. */
#define FD_RESERVE 128

static bool fd_reserve_hit(int fd)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return false;
	return (rlim_t)fd + FD_RESERVE >= rl.rlim_cur;
}

/* ------------------------------------------------------- per-client caps
 *
 * Every connection counts against its client from accept to free, in a
 * small table under st->lock (touched once per accept and once per close,
 * never on the I/O path). */

static void client_key(const struct fb_nbd_listener *l, int fd, struct fb_nbd_client_key *k)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(k, 0, sizeof(*k));
	if (!l->tcp) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
			k->family = AF_UNIX;
			memcpy(k->addr, &cr.uid, sizeof(cr.uid));
		}
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		k->family = AF_INET;
		memcpy(k->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		k->family = AF_INET6;
		memcpy(k->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	}
}

static void client_name(const struct fb_nbd_client_key *k, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	uint32_t uid;

	if (k->family == AF_UNIX) {
		memcpy(&uid, k->addr, sizeof(uid));
		snprintf(buf, len, "uid %u", uid);
		return;
	}
	inet_ntop(k->family, k->addr, a, sizeof(a));
	snprintf(buf, len, "%s", a);
}

/* The cap in force now: also at most a quarter of the descriptors left to
 * NBD under RLIMIT_NOFILE (it can change while the engine runs). */
static unsigned client_cap(const struct fb_nbd_state *st)
{
	struct rlimit rl;
	unsigned cap = st->max_per_client;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		rlim_t share = rl.rlim_cur > 4 * FD_RESERVE ? (rl.rlim_cur - FD_RESERVE) / 4 : FD_RESERVE / 4;

		if (share < cap)
			cap = (unsigned)share;
	}
	return cap;
}

static struct fb_nbd_client *client_find(struct fb_nbd_state *st, const struct fb_nbd_client_key *k)
{
	for (unsigned i = 0; i < st->nclients; i++)
		if (memcmp(&st->clients[i].key, k, sizeof(*k)) == 0)
			return &st->clients[i];
	return NULL;
}

/* Counts a connection of client k unless it is at its cap (under st->lock):
 * 0, -EBUSY at the cap, -ENOMEM. */
static int client_count(struct fb_nbd_state *st, const struct fb_nbd_client_key *k, unsigned cap)
{
	struct fb_nbd_client *c;

	if (!k->family)
		return 0;
	c = client_find(st, k);
	if (!c) {
		if (st->nclients == st->clients_cap) {
			unsigned n = st->clients_cap ? 2 * st->clients_cap : 16;
			struct fb_nbd_client *p = realloc(st->clients, n * sizeof(*p));

			if (!p)
				return -ENOMEM;
			st->clients = p;
			st->clients_cap = n;
		}
		c = &st->clients[st->nclients++];
		c->key = *k;
		c->nconns = 0;
	}
	if (c->nconns >= cap)
		return -EBUSY;
	c->nconns++;
	return 0;
}

void fb_nbd_conn_uncount(struct fb_nbd_state *st, struct fb_nbd_export *exp,
			 const struct fb_nbd_client_key *client)
{
	struct fb_nbd_client *c;

	pthread_mutex_lock(&st->lock);
	if (exp)
		exp->nconns--;
	st->nconns--;
	c = client->family ? client_find(st, client) : NULL;
	if (c && --c->nconns == 0)
		*c = st->clients[--st->nclients];
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

static void listener_accept_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_listener *l = container_of(op, struct fb_nbd_listener, accept_op);
	struct fb_nbd_state *st = l->st;
	struct io_uring_sqe *sqe;
	struct fb_nbd_client_key client;
	bool full;
	int one = 1, sndbuf = 4 << 20, crc = 0;
	unsigned cap;
	char who[INET6_ADDRSTRLEN + 8];

	(void)flags;
	l->accept_armed = false;
	if (res >= 0) {
		if (l->closing) {
			close(res);
		} else {
			client_key(l, res, &client);
			cap = client_cap(st);
			pthread_mutex_lock(&st->lock);
			full = st->nconns >= FB_NBD_MAX_CONNS || st->stopping;
			if (!full) {
				crc = client_count(st, &client, cap);
				full = crc != 0;
			}
			if (!full)
				st->nconns++;
			pthread_mutex_unlock(&st->lock);
			if (crc == -EBUSY && !l->client_warned) {
				client_name(&client, who, sizeof(who));
				fb_log(st->e, FB_LOG_WARN,
				       "nbd: %s: connection from %s refused: it holds %u connections "
				       "(nbd_max_conns_per_client, or a quarter of the descriptors left "
				       "under RLIMIT_NOFILE); logged once per listener",
				       l->listen, who, cap);
				l->client_warned = true;
			}
			if (!full && fd_reserve_hit(res)) {
				if (!l->fd_warned)
					fb_log(st->e, FB_LOG_WARN,
					       "nbd: %s: connection refused: fewer than %d file descriptors "
					       "left under RLIMIT_NOFILE (kept for the RPC socket and existing "
					       "clients); raise the limit (ulimit -n) or close connections",
					       l->listen, FD_RESERVE);
				l->fd_warned = true;
				fb_nbd_conn_uncount(st, NULL, &client);
				close(res);
			} else if (full) {
				close(res);
			} else {
				if (l->tcp)
					setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				/* Room for a few 1 MiB replies: fewer send wakeups per
				 * large read (the kernel caps it at wmem_max). */
				setsockopt(res, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
				fb_nbd_conn_accept(st, l, res, &client);
			}
		}
	}
	if (!l->closing) {
		if (res >= 0 || res == -EINTR || res == -EAGAIN || res == -ECONNABORTED) {
			listener_arm(l);
		} else {
			/* Out of descriptors or memory: retry in a while instead of spinning. */
			fb_log(st->e, FB_LOG_WARN, "nbd: accept on %s failed: %s; retrying", l->listen,
			       strerror(-res));
			l->retry_ts.tv_sec = 0;
			l->retry_ts.tv_nsec = 50 * 1000 * 1000;
			sqe = fb_reactor_get_sqe(l->reactor);
			io_uring_prep_timeout(sqe, &l->retry_ts, 0, 0);
			io_uring_sqe_set_data(sqe, &l->retry_op);
			l->ops++;
			l->retry_armed = true;
		}
	}
	listener_op_done(l);
}

static void listener_retry_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_listener *l = container_of(op, struct fb_nbd_listener, retry_op);

	(void)res;
	(void)flags;
	l->retry_armed = false;
	if (!l->closing)
		listener_arm(l);
	listener_op_done(l);
}

static void listener_cancel_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_listener *l = container_of(op, struct fb_nbd_listener, cancel_op);

	(void)res;
	(void)flags;
	listener_op_done(l);
}

static void listener_retry_rm_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct fb_nbd_listener *l = container_of(op, struct fb_nbd_listener, retry_rm_op);

	(void)res;
	(void)flags;
	listener_op_done(l);
}

static void listener_start(void *arg)
{
	listener_arm(arg);
}

static void listener_stop(void *arg)
{
	struct fb_nbd_listener *l = arg;
	struct io_uring_sqe *sqe;

	l->closing = true;
	/* Counted like an op so that `closed` is set exactly once, at the end. */
	l->ops++;
	if (l->accept_armed) {
		sqe = fb_reactor_get_sqe(l->reactor);
		io_uring_prep_cancel64(sqe, (__u64)(uintptr_t)&l->accept_op, 0);
		io_uring_sqe_set_data(sqe, &l->cancel_op);
		l->ops++;
	}
	if (l->retry_armed) {
		sqe = fb_reactor_get_sqe(l->reactor);
		io_uring_prep_timeout_remove(sqe, (__u64)(uintptr_t)&l->retry_op, 0);
		io_uring_sqe_set_data(sqe, &l->retry_rm_op);
		l->ops++;
	}
	listener_op_done(l);
}

static void listener_free(struct fb_nbd_listener *l)
{
	fb_nbd_tls_creds_put(l->tls);
	free(l->tls_psk_file);
	free(l->tls_cert_file);
	free(l->tls_key_file);
	free(l->tls_ca_file);
	if (l->fd >= 0)
		close(l->fd);
	if (l->unix_path)
		unlink(l->unix_path);
	free(l->unix_path);
	free(l->listen);
	free(l);
}

bool fb_unix_path_stale(const struct sockaddr_un *sun)
{
	struct stat sb;
	int fd, rc;

	if (lstat(sun->sun_path, &sb) || !S_ISSOCK(sb.st_mode))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	return rc < 0 && errno == ECONNREFUSED;
}

static int listener_open_unix(struct fb_nbd_listener *l, const char *path, struct fb_err *err)
{
	struct sockaddr_un sun;
	int fd = -1, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sun.sun_path)) {
		fb_err_set(err, "listen: unix socket path must be 1-%zu bytes",
			sizeof(sun.sun_path) - 1);
		return -EINVAL;
	}
	memcpy(sun.sun_path, path, strlen(path));
	l->unix_path = strdup(path);
	if (!l->unix_path)
		return -ENOMEM;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		fb_err_set(err, "listen: socket(): %s", strerror(errno));
		goto out;
	}
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (rc < 0 && errno == EADDRINUSE && fb_unix_path_stale(&sun)) {
		unlink(path);
		rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	}
	if (rc < 0 || listen(fd, 1024) < 0) {
		rc = -errno;
		fb_err_set(err, "listen: cannot listen on unix socket %s: %s (pick a free path)", path,
			strerror(errno));
		goto out;
	}
	l->fd = fd;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc) {
		/* Never unlink a path we did not bind. */
		free(l->unix_path);
		l->unix_path = NULL;
	}
	return rc;
}

static int listener_open_tcp(struct fb_nbd_listener *l, const char *hostport, struct fb_err *err)
{
	struct addrinfo hints, *ai = NULL;
	char host[256];
	const char *colon = strrchr(hostport, ':');
	size_t hlen;
	int fd = -1, rc, one = 1;

	if (!colon || colon == hostport || !colon[1]) {
		fb_err_set(err, "listen: expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:10809");
		return -EINVAL;
	}
	hlen = (size_t)(colon - hostport);
	if (hostport[0] == '[' && hlen >= 2 && hostport[hlen - 1] == ']') {
		hostport++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		fb_err_set(err, "listen: host name too long");
		return -EINVAL;
	}
	memcpy(host, hostport, hlen);
	host[hlen] = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		fb_err_set(err, "listen: cannot resolve %s port %s: %s", host, colon + 1, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		fb_err_set(err, "listen: socket(): %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		rc = -errno;
		fb_err_set(err, "listen: cannot listen on tcp %s:%s: %s (pick a free port)", host,
			colon + 1, strerror(errno));
		goto out;
	}
	l->tcp = true;
	l->fd = fd;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* The export's TLS options are the listener's. */
static bool listener_tls_same(const struct fb_nbd_listener *l, const struct fb_nbd_export_opts *o)
{
	return str_same(l->tls_psk_file, o->tls_psk_file) &&
	       str_same(l->tls_cert_file, o->tls_cert_file) &&
	       str_same(l->tls_key_file, o->tls_key_file) &&
	       str_same(l->tls_ca_file, o->tls_ca_file) && l->tls_required == o->tls_required;
}

static int str_dup_opt(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

/* Creates and starts a listener (control thread, under st->ctrl). */
static int listener_create(struct fb_nbd_state *st, const char *listen,
			   const struct fb_nbd_export_opts *o, struct fb_nbd_listener **out,
			   struct fb_err *err)
{
	struct fb_nbd_listener *l = calloc(1, sizeof(*l));
	struct fb_nbd_tls_opts to = { .psk_file = o->tls_psk_file, .cert_file = o->tls_cert_file,
				      .key_file = o->tls_key_file, .ca_file = o->tls_ca_file,
				      .required = o->tls_required };
	int rc;

	if (!l || !(l->listen = strdup(listen))) {
		free(l);
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	l->fd = -1;
	if (str_dup_opt(&l->tls_psk_file, o->tls_psk_file) ||
	    str_dup_opt(&l->tls_cert_file, o->tls_cert_file) ||
	    str_dup_opt(&l->tls_key_file, o->tls_key_file) ||
	    str_dup_opt(&l->tls_ca_file, o->tls_ca_file)) {
		listener_free(l);
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	rc = fb_nbd_tls_creds_load(&to, &l->tls, err);
	if (rc) {
		listener_free(l);
		return rc;
	}
	l->tls_required = o->tls_required;
	l->st = st;
	l->fd = -1;
	l->reactor = fb_engine_get_reactor(st->e, 0);
	l->accept_op.cb = listener_accept_cb;
	l->retry_op.cb = listener_retry_cb;
	l->cancel_op.cb = listener_cancel_cb;
	l->retry_rm_op.cb = listener_retry_rm_cb;
	if (strncmp(listen, "unix:", 5) == 0) {
		rc = listener_open_unix(l, listen + 5, err);
	} else if (strncmp(listen, "tcp:", 4) == 0) {
		rc = listener_open_tcp(l, listen + 4, err);
	} else {
		fb_err_set(err, "listen must be \"unix:PATH\" or \"tcp:HOST:PORT\", got \"%.200s\"", listen);
		rc = -EINVAL;
	}
	if (rc) {
		listener_free(l);
		return rc;
	}
	pthread_mutex_lock(&st->lock);
	l->id = st->next_listener_id++;
	l->next = st->listeners;
	st->listeners = l;
	pthread_mutex_unlock(&st->lock);
	fb_reactor_run_sync(l->reactor, listener_start, l);
	*out = l;
	return 0;
}

/* Stops accepting, closes handshaking connections, frees the listener
 * (control thread, under st->ctrl). */
static void listener_destroy(struct fb_nbd_state *st, struct fb_nbd_listener *l)
{
	struct fb_nbd_listener **pp;
	struct fb_nbd_kick kick = { .st = st, .listener_id = l->id };

	fb_reactor_run_sync(l->reactor, listener_stop, l);
	pthread_mutex_lock(&st->lock);
	while (!l->closed)
		pthread_cond_wait(&st->cond, &st->lock);
	for (pp = &st->listeners; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	fb_engine_run_on_all(st->e, fb_nbd_conn_kick, &kick);
	listener_free(l);
}

/* --------------------------------------------------------------- exports */

static void export_free(struct fb_nbd_export *exp)
{
	if (exp->desc)
		fb_bdev_close(exp->desc);
	free(exp->name);
	free(exp->bdev_name);
	free(exp);
}

void fb_nbd_export_opts_init(struct fb_nbd_export_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
}

int fb_nbd_export_add(struct fb_engine *e, const char *export_name, const char *bdev_name,
		      const char *listen, bool readonly, struct fb_err *err)
{
	struct fb_nbd_export_opts o;

	fb_nbd_export_opts_init(&o);
	o.readonly = readonly;
	return fb_nbd_export_create(e, export_name, bdev_name, listen, &o, err);
}

int fb_nbd_export_create(struct fb_engine *e, const char *export_name, const char *bdev_name,
			 const char *listen, const struct fb_nbd_export_opts *opts_in,
			 struct fb_err *err)
{
	struct fb_nbd_export_opts opts;
	bool readonly;
	struct fb_nbd_state *st;
	struct fb_nbd_export *exp = NULL, **pp;
	struct fb_nbd_listener *l;
	struct fb_bdev *bdev;
	char holder[256];
	size_t nlen;
	int rc;

	if (!e || !export_name || !bdev_name || !listen || !opts_in) {
		fb_err_set(err, "export_name, bdev_name, listen and opts are required");
		return -EINVAL;
	}
	if (opts_in->size == 0 || opts_in->size > sizeof(opts)) {
		fb_err_set(err, "opts.size must be sizeof(struct fb_nbd_export_opts); call fb_nbd_export_opts_init first");
		return -EINVAL;
	}
	fb_nbd_export_opts_init(&opts);
	memcpy(&opts, opts_in, opts_in->size);
	readonly = opts.readonly;
	if (opts.tls_required && !opts.tls_psk_file && !opts.tls_cert_file) {
		fb_err_set(err, "tls_required needs tls_psk_file, or tls_cert_file with tls_key_file");
		return -EINVAL;
	}
	nlen = strlen(export_name);
	if (nlen == 0 || nlen > NBD_MAX_STRING) {
		fb_err_set(err, "export_name must be 1-%u bytes long", NBD_MAX_STRING);
		return -EINVAL;
	}
	st = nbd_state_get(e, true);
	if (!st) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&st->ctrl);
	if (export_find(st, export_name, nlen)) {
		fb_err_set(err, "export_name \"%.200s\" is already exported; remove it first or pick another name",
			export_name);
		rc = -EEXIST;
		goto out;
	}
	exp = calloc(1, sizeof(*exp));
	if (!exp || !(exp->name = strdup(export_name)) || !(exp->bdev_name = strdup(bdev_name))) {
		fb_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	exp->name_len = (uint32_t)nlen;
	exp->readonly = readonly;
	snprintf(holder, sizeof(holder), "NBD export '%.200s'", export_name);
	/* No event callback: deleting an exported bdev is -EBUSY naming the
	 * export (remove the export first). */
	rc = fb_bdev_open(e, bdev_name,
			  &(struct fb_bdev_open_opts){.size = sizeof(struct fb_bdev_open_opts),
						      .write = !readonly, .holder = holder},
			  &exp->desc, err);
	if (rc)
		goto out;
	bdev = fb_bdev_desc_get_bdev(exp->desc);
	exp->block_size = fb_bdev_get_block_size(bdev);
	if (exp->block_size & (exp->block_size - 1)) {
		/* NBD's minimum block size must be a power of two. */
		fb_err_set(err, "bdev '%.200s' has block size %u, which NBD cannot advertise (it must "
			"be a power of two); export a bdev with a power-of-two block size", bdev_name,
			exp->block_size);
		rc = -EINVAL;
		goto out;
	}
	exp->size = fb_bdev_get_num_blocks(bdev) * exp->block_size;
	exp->has_flush = fb_bdev_io_type_supported(bdev, FB_IO_FLUSH);
	exp->has_unmap = fb_bdev_io_type_supported(bdev, FB_IO_UNMAP);
	exp->has_zcopy = fb_bdev_zcopy_supported(bdev);
	for (l = st->listeners; l; l = l->next)
		if (strcmp(l->listen, listen) == 0)
			break;
	if (!l) {
		rc = listener_create(st, listen, &opts, &l, err);
		if (rc)
			goto out;
	} else if (!listener_tls_same(l, &opts)) {
		fb_err_set(err, "listen %.200s is already used with other TLS options (tls_*): exports "
			   "sharing a socket share its TLS; give the same ones or another socket", listen);
		rc = -EINVAL;
		goto out;
	}
	exp->listener = l;
	l->nexports++;
	/* Appended: NBD_OPT_LIST shows creation order and the default export
	 * (empty name) is the listener's first. */
	pthread_mutex_lock(&st->lock);
	for (pp = &st->exports; *pp; pp = &(*pp)->next)
		;
	*pp = exp;
	pthread_mutex_unlock(&st->lock);
	fb_log(e, FB_LOG_INFO, "nbd: export %s (bdev %s%s) on %s", export_name, bdev_name,
	       readonly ? ", read-only" : "", listen);
	exp = NULL;
	rc = 0;
out:
	pthread_mutex_unlock(&st->ctrl);
	if (exp)
		export_free(exp);
	return rc;
}

/* Unlinks exp, drains its connections, closes it (under st->ctrl). */
static void export_destroy(struct fb_nbd_state *st, struct fb_nbd_export *exp)
{
	struct fb_nbd_export **pp;
	struct fb_nbd_kick kick = { .st = st, .exp = exp };
	struct fb_nbd_listener *l = exp->listener;

	pthread_mutex_lock(&st->lock);
	exp->removing = true;
	for (pp = &st->exports; *pp; pp = &(*pp)->next) {
		if (*pp == exp) {
			*pp = exp->next;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	/* After removing is set no connection binds; the kick drains the bound
	 * ones (in-flight I/O completes, replies go out, then they close). */
	fb_engine_run_on_all(st->e, fb_nbd_conn_kick, &kick);
	pthread_mutex_lock(&st->lock);
	while (exp->nconns)
		pthread_cond_wait(&st->cond, &st->lock);
	pthread_mutex_unlock(&st->lock);
	fb_log(st->e, FB_LOG_INFO, "nbd: export %s removed", exp->name);
	export_free(exp);
	if (--l->nexports == 0)
		listener_destroy(st, l);
}

int fb_nbd_export_remove(struct fb_engine *e, const char *export_name, struct fb_err *err)
{
	struct fb_nbd_state *st;
	struct fb_nbd_export *exp;
	int rc = 0;

	if (!e || !export_name) {
		fb_err_set(err, "export_name is required");
		return -EINVAL;
	}
	st = nbd_state_get(e, false);
	if (!st) {
		fb_err_set(err, "export_name \"%.200s\" is not exported (see flexbso_nbd_get_exports)",
			export_name);
		return -ENOENT;
	}
	pthread_mutex_lock(&st->ctrl);
	exp = export_find(st, export_name, strlen(export_name));
	if (exp) {
		export_destroy(st, exp);
	} else {
		fb_err_set(err, "export_name \"%.200s\" is not exported (see flexbso_nbd_get_exports)",
			export_name);
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&st->ctrl);
	return rc;
}

int fb_nbd_export_foreach(struct fb_engine *e, fb_nbd_export_info_fn fn, void *arg)
{
	struct fb_nbd_state *st = e ? nbd_state_get(e, false) : NULL;
	struct fb_nbd_export *exp;
	struct fb_nbd_export_info info;
	int rc = 0;

	if (!st)
		return 0;
	/* ctrl keeps the list stable while fn runs without the reactor lock. */
	pthread_mutex_lock(&st->ctrl);
	for (exp = st->exports; exp && rc == 0; exp = exp->next) {
		pthread_mutex_lock(&st->lock);
		info.connections = exp->nconns;
		pthread_mutex_unlock(&st->lock);
		info.export_name = exp->name;
		info.bdev_name = exp->bdev_name;
		info.listen = exp->listener->listen;
		info.readonly = exp->readonly;
		info.tls_psk_file = exp->listener->tls_psk_file;
		info.tls_cert_file = exp->listener->tls_cert_file;
		info.tls_key_file = exp->listener->tls_key_file;
		info.tls_ca_file = exp->listener->tls_ca_file;
		info.tls_required = exp->listener->tls_required;
		rc = fn(&info, arg);
	}
	pthread_mutex_unlock(&st->ctrl);
	return rc;
}

/* fb_engine_destroy, before bdevs are deleted: remove every export, close
 * listeners, disconnect every client, free the state. */
static void nbd_subsys_fini(struct fb_engine *e, void *ctx)
{
	struct fb_nbd_state *st = ctx;
	struct fb_nbd_kick kick;

	pthread_mutex_lock(&st->ctrl);
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_mutex_unlock(&st->lock);
	while (st->exports)
		export_destroy(st, st->exports);
	/* Connections still negotiating, or accepted and on their way to a
	 * reactor, see `stopping` or get this kick. */
	memset(&kick, 0, sizeof(kick));
	kick.st = st;
	kick.all = true;
	fb_engine_run_on_all(e, fb_nbd_conn_kick, &kick);
	pthread_mutex_lock(&st->lock);
	while (st->nconns)
		pthread_cond_wait(&st->cond, &st->lock);
	pthread_mutex_unlock(&st->lock);
	fb_engine_run_on_all(e, fb_nbd_conn_reactor_fini, st);
	pthread_mutex_unlock(&st->ctrl);
	free(st->per_reactor);
	free(st->clients);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->ctrl);
	free(st);
}
