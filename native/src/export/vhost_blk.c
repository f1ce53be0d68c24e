/* vhost-user-blk controllers: registry, listening sockets, the control
 * thread, and the public API (fb_vhost_blk_*).
 *
 * The engine subsystem "vhost" owns one control thread that poll()s every
 * controller's listening socket and its connected front-end, and handles
 * vhost-user messages (vhost_msg.c). Control API calls and the thread
 * serialize on st->lock; the thread drops it only while it sleeps in
 * poll(), and a generation counter tells it when the fd set it polled has
 * changed underneath (a controller was created or deleted).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flexbso/bdev_module.h"
#include "unix_sock.h"
#include "vhost_blk.h"

struct vhost_state {
	struct fb_engine *e;
	pthread_mutex_t lock;
	struct vhost_ctrlr *ctrlrs;
	uint64_t gen;
	int wake_fd;
	bool stop;
	pthread_t thread;
};

void fb_vhost_blk_opts_init(struct fb_vhost_blk_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
}

static void wake(struct vhost_state *st)
{
	uint64_t one = 1;

	if (write(st->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is non-zero already */
	}
}

/* ------------------------------------------------------ control thread */

static void accept_conn(struct vhost_ctrlr *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (c->conn.fd >= 0) {
		/* vhost-user has one front-end per device. */
		fb_log(c->e, FB_LOG_WARN, "vhost %s: a second front-end connected; refused", c->name);
		close(fd);
		return;
	}
	c->conn.fd = fd;
	c->conn.have = 0;
	c->conn.nfds = 0;
	fb_log(c->e, FB_LOG_INFO, "vhost %s: front-end connected", c->name);
}

static void *vhost_thread(void *arg)
{
	struct vhost_state *st = arg;
	struct pollfd *pfd = NULL;
	struct vhost_ctrlr **who = NULL;
	size_t cap = 0;

	pthread_mutex_lock(&st->lock);
	while (!st->stop) {
		size_t n = 1, need = 1;
		uint64_t gen = st->gen;

		for (struct vhost_ctrlr *c = st->ctrlrs; c; c = c->next)
			need += 2;
		if (need > cap) {
			struct pollfd *np = realloc(pfd, need * sizeof(*pfd));
			struct vhost_ctrlr **nw = np ? realloc(who, need * sizeof(*who)) : NULL;

			if (np)
				pfd = np;
			if (nw)
				who = nw;
			if (!np || !nw) {
				pthread_mutex_unlock(&st->lock);
				usleep(10000);
				pthread_mutex_lock(&st->lock);
				continue;
			}
			cap = need;
		}
		pfd[0] = (struct pollfd){ .fd = st->wake_fd, .events = POLLIN };
		who[0] = NULL;
		for (struct vhost_ctrlr *c = st->ctrlrs; c; c = c->next) {
			pfd[n] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
			who[n++] = c;
			if (c->conn.fd >= 0) {
				pfd[n] = (struct pollfd){ .fd = c->conn.fd, .events = POLLIN };
				who[n++] = c;
			}
		}
		pthread_mutex_unlock(&st->lock);
		if (poll(pfd, n, -1) < 0 && errno != EINTR)
			usleep(1000);
		pthread_mutex_lock(&st->lock);
		if (pfd[0].revents) {
			uint64_t v;

			if (read(st->wake_fd, &v, sizeof(v)) < 0) {
				/* nothing pending */
			}
		}
		if (st->gen != gen)
			continue; /* the fds polled may belong to deleted controllers */
		/* Connections before listeners: a front-end that hung up and
		 * reconnected at once is seen gone before its new connection. */
		for (size_t i = 1; i < n; i++) {
			struct vhost_ctrlr *c = who[i];

			if (pfd[i].revents && pfd[i].fd == c->conn.fd && pfd[i].fd != c->listen_fd &&
			    !vhost_conn_readable(c)) {
				vhost_conn_close(c);
				fb_log(c->e, FB_LOG_INFO, "vhost %s: front-end disconnected", c->name);
			}
		}
		for (size_t i = 1; i < n; i++) {
			struct vhost_ctrlr *c = who[i];

			if (pfd[i].revents && pfd[i].fd == c->listen_fd)
				accept_conn(c);
		}
	}
	pthread_mutex_unlock(&st->lock);
	free(pfd);
	free(who);
	return NULL;
}

/* ------------------------------------------------------------ registry */

static void ctrlr_free(struct vhost_ctrlr *c)
{
	if (c->conn.fd >= 0)
		vhost_conn_close(c);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		unlink(c->socket_path);
	}
	if (c->desc)
		fb_bdev_close(c->desc);
	for (unsigned i = 0; i < FB_VHOST_MAX_QUEUES; i++) {
		pthread_mutex_destroy(&c->vq[i].stop_lock);
		pthread_cond_destroy(&c->vq[i].stop_cond);
	}
	free(c->name);
	free(c->bdev_name);
	free(c->socket_path);
	free(c->cpumask);
	free(c);
}

static void vhost_subsys_fini(struct fb_engine *e, void *ctx)
{
	struct vhost_state *st = ctx;

	(void)e;
	pthread_mutex_lock(&st->lock);
	st->stop = true;
	wake(st);
	pthread_mutex_unlock(&st->lock);
	pthread_join(st->thread, NULL);
	while (st->ctrlrs) {
		struct vhost_ctrlr *c = st->ctrlrs;

		st->ctrlrs = c->next;
		ctrlr_free(c);
	}
	close(st->wake_fd);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

static struct vhost_state *state_get(struct fb_engine *e, bool create, struct fb_err *err)
{
	struct vhost_state *st;
	int rc;

	fb_engine_subsys_lock(e);
	st = fb_engine_subsys_get(e, "vhost");
	if (!st && create) {
		st = calloc(1, sizeof(*st));
		if (!st) {
			fb_err_set(err, "out of memory");
			goto out;
		}
		st->e = e;
		pthread_mutex_init(&st->lock, NULL);
		st->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rc = st->wake_fd < 0 ? -errno : -pthread_create(&st->thread, NULL, vhost_thread, st);
		if (rc) {
			fb_err_set(err, "starting the vhost control thread failed: %s", strerror(-rc));
			if (st->wake_fd >= 0)
				close(st->wake_fd);
			pthread_mutex_destroy(&st->lock);
			free(st);
			st = NULL;
			goto out;
		}
		pthread_setname_np(st->thread, "fb_vhost");
		if (fb_engine_subsys_register(e, "vhost", st, vhost_subsys_fini)) {
			vhost_subsys_fini(e, st);
			fb_err_set(err, "registering the vhost subsystem failed");
			st = NULL;
		}
	}
out:
	fb_engine_subsys_unlock(e);
	return st;
}

static struct vhost_ctrlr *ctrlr_find(struct vhost_state *st, const char *name)
{
	for (struct vhost_ctrlr *c = st->ctrlrs; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* cpumask: "0x3" / "3" (hex) or "[0,2-3]"; bits are reactor indexes. */
static int parse_cpumask(const char *s, unsigned nreactors, bool *use, struct fb_err *err)
{
	unsigned count = 0;

	memset(use, 0, sizeof(bool) * nreactors);
	if (!s || !*s) {
		for (unsigned i = 0; i < nreactors; i++)
			use[i] = true;
		return 0;
	}
	if (s[0] == '[') {
		const char *p = s + 1;

		while (*p && *p != ']') {
			char *end;
			unsigned long a = strtoul(p, &end, 10), b = a;

			if (end == p)
				goto bad;
			p = end;
			if (*p == '-') {
				b = strtoul(p + 1, &end, 10);
				if (end == p + 1 || b < a)
					goto bad;
				p = end;
			}
			for (unsigned long i = a; i <= b; i++) {
				if (i >= nreactors)
					goto range;
				use[i] = true;
			}
			if (*p == ',')
				p++;
			else if (*p != ']')
				goto bad;
		}
		if (*p != ']' || p[1])
			goto bad;
	} else {
		const char *p = s;
		size_t len;

		if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
			p += 2;
		len = strlen(p);
		if (!len)
			goto bad;
		for (size_t i = 0; i < len; i++) {
			char ch = p[len - 1 - i];
			unsigned v;

			if (ch >= '0' && ch <= '9')
				v = (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v = (unsigned)(ch - 'a' + 10);
			else if (ch >= 'A' && ch <= 'F')
				v = (unsigned)(ch - 'A' + 10);
			else
				goto bad;
			for (unsigned b = 0; b < 4; b++) {
				if (!(v & (1u << b)))
					continue;
				if (i * 4 + b >= nreactors)
					goto range;
				use[i * 4 + b] = true;
			}
		}
	}
	for (unsigned i = 0; i < nreactors; i++)
		count += use[i];
	if (count)
		return 0;
bad:
	fb_err_set(err, "cpumask \"%.100s\" is not a non-empty mask: use hex (\"0x3\") or a list (\"[0,2-3]\")", s);
	return -EINVAL;
range:
	fb_err_set(err, "cpumask \"%.100s\" names a reactor beyond the engine's %u (indexes 0-%u)", s,
		nreactors, nreactors - 1);
	return -EINVAL;
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 200 || strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = n[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static int listen_unix(struct vhost_ctrlr *c, unsigned mode, struct fb_err *err)
{
	struct sockaddr_un sun;
	int fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(c->socket_path) >= sizeof(sun.sun_path)) {
		fb_err_set(err, "socket path %.200s is longer than %zu bytes; use a shorter socket directory",
			c->socket_path, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, c->socket_path, strlen(c->socket_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		fb_err_set(err, "socket(): %s", strerror(errno));
		return rc;
	}
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (rc < 0 && errno == EADDRINUSE && fb_unix_path_stale(&sun)) {
		unlink(c->socket_path);
		rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	}
	if (rc < 0) {
		rc = -errno;
		fb_err_set(err, "cannot bind %s: %s (is another engine serving it? pick another ctrlr name "
			"or socket directory)", c->socket_path, strerror(errno));
		close(fd);
		return rc;
	}
	/* Before listen(): nobody can connect until the mode is right. */
	if (chmod(c->socket_path, mode) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		fb_err_set(err, "cannot set up %s: %s", c->socket_path, strerror(errno));
		close(fd);
		unlink(c->socket_path);
		return rc;
	}
	c->listen_fd = fd;
	return 0;
}

int fb_vhost_blk_controller_create(struct fb_engine *e, const char *ctrlr, const char *bdev_name,
				   const char *socket_dir, const struct fb_vhost_blk_opts *opts,
				   struct fb_err *err)
{
	struct fb_vhost_blk_opts o;
	struct vhost_state *st;
	struct vhost_ctrlr *c = NULL;
	unsigned nreactors, nuse = 0, idx[256];
	bool use[256];
	struct fb_bdev *bdev;
	struct stat sb;
	char holder[256];
	int rc;

	fb_vhost_blk_opts_init(&o);
	if (opts)
		memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
	if (!e || !ctrlr || !bdev_name || !socket_dir) {
		fb_err_set(err, "ctrlr, dev_name and the socket directory are required");
		return -EINVAL;
	}
	if (!name_ok(ctrlr)) {
		fb_err_set(err, "ctrlr \"%.200s\" must be 1-200 characters of A-Z a-z 0-9 . _ - (it names the socket file)",
			ctrlr);
		return -EINVAL;
	}
	if (stat(socket_dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		fb_err_set(err, "socket directory %.300s does not exist or is not a directory; create it or pass another",
			socket_dir);
		return -ENOENT;
	}
	if (o.num_queues > FB_VHOST_MAX_QUEUES) {
		fb_err_set(err, "num_queues %u is more than %u", o.num_queues, FB_VHOST_MAX_QUEUES);
		return -EINVAL;
	}
	if (o.socket_mode & ~0777u) {
		fb_err_set(err, "socket_mode 0%o has bits beyond 0777", o.socket_mode);
		return -EINVAL;
	}
	nreactors = fb_engine_reactor_count(e);
	if (nreactors > 256)
		nreactors = 256;
	rc = parse_cpumask(o.cpumask, nreactors, use, err);
	if (rc)
		return rc;
	for (unsigned i = 0; i < nreactors; i++)
		if (use[i])
			idx[nuse++] = i;
	st = state_get(e, true, err);
	if (!st)
		return -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->name = strdup(ctrlr)) || !(c->bdev_name = strdup(bdev_name)) ||
	    asprintf(&c->socket_path, "%s/%s", socket_dir, ctrlr) < 0 ||
	    (o.cpumask && !(c->cpumask = strdup(o.cpumask)))) {
		if (c)
			c->socket_path = NULL;
		fb_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	c->st = st;
	c->e = e;
	c->listen_fd = -1;
	c->conn.fd = -1;
	c->infl_fd = -1;
	c->readonly = o.readonly;
	c->num_queues = o.num_queues ? o.num_queues : FB_VHOST_MAX_QUEUES;
	for (unsigned i = 0; i < FB_VHOST_MAX_QUEUES; i++) {
		vhost_vq_init(&c->vq[i], c, i);
		c->qreactor[i] = fb_engine_get_reactor(e, idx[i % nuse]);
	}
	snprintf(holder, sizeof(holder), "vhost controller '%.200s'", ctrlr);
	/* No event callback: deleting a served bdev is -EBUSY naming the
	 * controller (delete the controller first). */
	rc = fb_bdev_open(e, bdev_name,
			  &(struct fb_bdev_open_opts){ .size = sizeof(struct fb_bdev_open_opts),
						       .write = !o.readonly, .holder = holder },
			  &c->desc, err);
	if (rc)
		goto fail;
	bdev = fb_bdev_desc_get_bdev(c->desc);
	c->block_size = fb_bdev_get_block_size(bdev);
	c->num_blocks = fb_bdev_get_num_blocks(bdev);
	c->has_flush = fb_bdev_io_type_supported(bdev, FB_IO_FLUSH);
	c->has_unmap = fb_bdev_io_type_supported(bdev, FB_IO_UNMAP);
	c->has_write_zeroes = fb_bdev_io_type_supported(bdev, FB_IO_WRITE_ZEROES);
	if (c->block_size < VIRTIO_BLK_SECTOR || c->block_size % VIRTIO_BLK_SECTOR) {
		fb_err_set(err, "bdev %.200s has %u-byte blocks; virtio-blk needs a multiple of 512", bdev_name,
			c->block_size);
		rc = -EINVAL;
		goto fail;
	}
	pthread_mutex_lock(&st->lock);
	if (ctrlr_find(st, ctrlr)) {
		pthread_mutex_unlock(&st->lock);
		fb_err_set(err, "ctrlr \"%.200s\" already exists; delete it first or pick another name", ctrlr);
		rc = -EEXIST;
		goto fail;
	}
	rc = listen_unix(c, o.socket_mode ? o.socket_mode : 0600, err);
	if (rc) {
		pthread_mutex_unlock(&st->lock);
		goto fail;
	}
	c->next = st->ctrlrs;
	st->ctrlrs = c;
	st->gen++;
	wake(st);
	pthread_mutex_unlock(&st->lock);
	fb_log(e, FB_LOG_INFO, "vhost: controller %s (bdev %s%s, %u queues) on %s", ctrlr, bdev_name,
	       o.readonly ? ", read-only" : "", c->num_queues, c->socket_path);
	return 0;
fail:
	if (c)
		ctrlr_free(c);
	return rc;
}

int fb_vhost_blk_controller_delete(struct fb_engine *e, const char *ctrlr, struct fb_err *err)
{
	struct vhost_state *st = e ? state_get(e, false, err) : NULL;
	struct vhost_ctrlr *c = NULL, **pp;

	if (!ctrlr) {
		fb_err_set(err, "ctrlr is required");
		return -EINVAL;
	}
	if (st) {
		pthread_mutex_lock(&st->lock);
		for (pp = &st->ctrlrs; *pp; pp = &(*pp)->next) {
			if (strcmp((*pp)->name, ctrlr) == 0) {
				c = *pp;
				*pp = c->next;
				st->gen++;
				wake(st);
				break;
			}
		}
		/* Under the lock: the control thread must not be reading it. */
		if (c)
			ctrlr_free(c);
		pthread_mutex_unlock(&st->lock);
	}
	if (!c) {
		fb_err_set(err, "ctrlr \"%.200s\" does not exist (see vhost_get_controllers)", ctrlr);
		return -ENOENT;
	}
	fb_log(e, FB_LOG_INFO, "vhost: controller %s deleted", ctrlr);
	return 0;
}

int fb_vhost_blk_controller_foreach(struct fb_engine *e, const char *name,
				    fb_vhost_controller_info_fn fn, void *arg)
{
	struct vhost_state *st = e ? state_get(e, false, NULL) : NULL;
	bool found = false;
	int rc = 0;

	if (!st)
		return name ? -ENOENT : 0;
	pthread_mutex_lock(&st->lock);
	for (struct vhost_ctrlr *c = st->ctrlrs; c && rc == 0; c = c->next) {
		struct fb_vhost_controller_info info;

		if (name && strcmp(name, c->name) != 0)
			continue;
		found = true;
		memset(&info, 0, sizeof(info));
		info.ctrlr = c->name;
		info.bdev_name = c->bdev_name;
		info.socket_path = c->socket_path;
		info.cpumask = c->cpumask;
		info.readonly = c->readonly;
		info.connected = c->conn.fd >= 0;
		info.num_queues = c->num_queues;
		info.bad_messages = c->bad_msgs;
		info.features = c->features;
		for (unsigned i = 0; i < c->num_queues; i++) {
			info.active_queues += c->vq[i].started;
			info.requests += atomic_load_explicit(&c->vq[i].ops_done, memory_order_relaxed);
		}
		rc = fn(&info, arg);
	}
	pthread_mutex_unlock(&st->lock);
	if (name && !found)
		return -ENOENT;
	return rc;
}
