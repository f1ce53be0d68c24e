/* bdev layer: registry, descriptors, claims, channels, I/O pools, stats. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FB_IO_SLAB 32
#define FB_NAME_MAX 255

static struct fb_bdev *bdev_find_locked(struct fb_engine *e, const char *name)
{
	for (struct fb_bdev *b = e->bdevs_head; b; b = b->next) {
		if (strcmp(b->name, name) == 0)
			return b;
	}
	return NULL;
}

static void bdev_async_ref(struct fb_bdev *b)
{
	atomic_fetch_add(&b->async_refs, 1);
}

static void bdev_async_unref(struct fb_bdev *b)
{
	struct fb_engine *e = b->e;

	pthread_mutex_lock(&e->lock);
	if (atomic_fetch_sub(&b->async_refs, 1) == 1)
		pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

int fb_bdev_register(struct fb_engine *e, const struct fb_bdev_desc_params *p,
		     struct fb_bdev **out, struct fb_err *err)
{
	struct fb_bdev *b = NULL;
	size_t nlen = p->name ? strlen(p->name) : 0;
	int rc = 0;

	if (nlen == 0 || nlen > FB_NAME_MAX) {
		fb_err_set(err, "name must be 1..%d characters", FB_NAME_MAX);
		rc = -EINVAL;
		goto out;
	}
	if (p->block_size == 0 || (p->block_size & (p->block_size - 1)) != 0) {
		fb_err_set(err, "block_size %u must be a power of two", p->block_size);
		rc = -EINVAL;
		goto out;
	}
	if (p->num_blocks == 0 || p->num_blocks > UINT64_MAX / p->block_size) {
		fb_err_set(err, "num_blocks must be at least 1 (and the size must fit 64 bits)");
		rc = -EINVAL;
		goto out;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		goto nomem;
	b->name = strdup(p->name);
	b->pc = aligned_alloc(FB_CACHELINE, sizeof(*b->pc) * e->nreactors);
	if (!b->name || !b->pc)
		goto nomem;
	memset(b->pc, 0, sizeof(*b->pc) * e->nreactors);
	b->e = e;
	b->block_size = p->block_size;
	b->num_blocks = p->num_blocks;
	b->module = p->module;
	b->fn = p->fn;
	b->module_ctx = p->module_ctx;
	atomic_init(&b->async_refs, 0);
	atomic_init(&b->open_atomic, 0);

	pthread_mutex_lock(&e->lock);
	if (e->destroying) {
		fb_err_set(err, "the engine is shutting down");
		rc = -ESHUTDOWN;
	} else if (bdev_find_locked(e, p->name)) {
		fb_err_set(err, "bdev '%s' already exists; choose another name or delete it first", p->name);
		rc = -EEXIST;
	} else {
		b->prev = e->bdevs_tail;
		if (e->bdevs_tail)
			e->bdevs_tail->next = b;
		else
			e->bdevs_head = b;
		e->bdevs_tail = b;
	}
	pthread_mutex_unlock(&e->lock);
	if (rc)
		goto out;
	if (out)
		*out = b;
	b = NULL;
	goto out;
nomem:
	fb_err_set(err, "out of memory registering bdev '%s'", p->name);
	rc = -ENOMEM;
out:
	if (b) {
		free(b->name);
		free(b->pc);
		free(b);
	}
	return rc;
}

void *fb_bdev_get_module_ctx(struct fb_bdev *bdev)
{
	return bdev->module_ctx;
}

const struct fb_bdev_module *fb_bdev_get_module(const struct fb_bdev *bdev)
{
	return bdev->module;
}

int fb_bdev_open_ext(struct fb_engine *e, const char *name, bool write, const char *holder,
		     struct fb_bdev_desc **out, struct fb_err *err)
{
	struct fb_bdev_desc *d = calloc(1, sizeof(*d));
	struct fb_bdev *b;
	int rc = 0;

	*out = NULL;
	if (!d) {
		fb_err_set(err, "out of memory opening bdev '%s'", name);
		return -ENOMEM;
	}
	snprintf(d->holder, sizeof(d->holder), "%s", holder ? holder : "a descriptor");
	d->write = write;
	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	if (!b) {
		fb_err_set(err, "bdev '%s' does not exist; create it first (bdev_get_bdevs lists bdevs)",
			   name ? name : "(null)");
		rc = -ENOENT;
		goto unlock;
	}
	if (write && b->claim) {
		fb_err_set(err, "bdev '%s' is claimed by %s; use that bdev instead", name,
			   b->claim->holder);
		rc = -EPERM;
		goto unlock;
	}
	d->bdev = b;
	d->next = b->descs;
	b->descs = d;
	b->open_count++;
	atomic_store(&b->open_atomic, b->open_count);
	*out = d;
	d = NULL;
unlock:
	pthread_mutex_unlock(&e->lock);
	free(d);
	return rc;
}

int fb_bdev_open(struct fb_engine *e, const char *name, bool write, struct fb_bdev_desc **out,
		 struct fb_err *err)
{
	return fb_bdev_open_ext(e, name, write, NULL, out, err);
}

void fb_bdev_desc_set_holder(struct fb_bdev_desc *desc, const char *holder)
{
	struct fb_engine *e = desc->bdev->e;

	pthread_mutex_lock(&e->lock);
	snprintf(desc->holder, sizeof(desc->holder), "%s", holder ? holder : "a descriptor");
	pthread_mutex_unlock(&e->lock);
}

static void channel_destroy_now(struct fb_io_channel *ch)
{
	struct fb_bdev *b = ch->bdev;
	void *slab = ch->slabs;

	if (b->fn->channel_destroy)
		b->fn->channel_destroy(b, ch->ctx);
	while (slab) {
		void *next = *(void **)slab;

		free(slab);
		slab = next;
	}
	b->pc[ch->r->index].ch = NULL;
	free(ch);
	bdev_async_unref(b);
}

static void channel_destroy(struct fb_io_channel *ch)
{
	/* I/O still held by a consumer: finish when the last one is freed. */
	if (ch->outstanding) {
		ch->destroy_pending = true;
		return;
	}
	channel_destroy_now(ch);
}

/* On each reactor: drop the cached channel if nobody holds it. */
static void channel_release_msg(void *arg)
{
	struct fb_bdev *b = arg;
	struct fb_reactor *r = fb_reactor_current();
	struct fb_io_channel *ch = b->pc[r->index].ch;

	if (ch && ch->refs == 0 && !ch->destroy_pending)
		channel_destroy(ch);
	bdev_async_unref(b);
}

/* Caller holds e->lock. Queues channel teardown on every reactor. */
static void bdev_release_channels_locked(struct fb_bdev *b)
{
	for (unsigned i = 0; i < b->e->nreactors; i++) {
		bdev_async_ref(b);
		fb_reactor_send(&b->e->reactors[i], channel_release_msg, b);
	}
}

void fb_bdev_close(struct fb_bdev_desc *desc)
{
	struct fb_bdev *b;
	struct fb_engine *e;

	if (!desc)
		return;
	b = desc->bdev;
	e = b->e;
	pthread_mutex_lock(&e->lock);
	for (struct fb_bdev_desc **pp = &b->descs; *pp; pp = &(*pp)->next) {
		if (*pp == desc) {
			*pp = desc->next;
			break;
		}
	}
	if (b->claim == desc)
		b->claim = NULL;
	b->open_count--;
	atomic_store(&b->open_atomic, b->open_count);
	if (b->open_count == 0)
		bdev_release_channels_locked(b);
	pthread_mutex_unlock(&e->lock);
	free(desc);
}

int fb_bdev_claim(struct fb_bdev_desc *desc, const struct fb_bdev_module *by, struct fb_err *err)
{
	struct fb_bdev *b = desc->bdev;
	struct fb_engine *e = b->e;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	if (b->claim && b->claim != desc) {
		fb_err_set(err, "bdev '%s' is already claimed by %s", b->name, b->claim->holder);
		rc = -EBUSY;
		goto out;
	}
	for (struct fb_bdev_desc *d = b->descs; d; d = d->next) {
		if (d != desc && d->write) {
			fb_err_set(err, "bdev '%s' is open for writing by %s; close that first",
				   b->name, d->holder);
			rc = -EBUSY;
			goto out;
		}
	}
	desc->write = true;
	desc->claim_by = by;
	b->claim = desc;
out:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

struct fb_bdev *fb_bdev_desc_get_bdev(struct fb_bdev_desc *desc)
{
	return desc->bdev;
}

const char *fb_bdev_get_name(const struct fb_bdev *bdev)
{
	return bdev->name;
}

uint32_t fb_bdev_get_block_size(const struct fb_bdev *bdev)
{
	return bdev->block_size;
}

uint64_t fb_bdev_get_num_blocks(const struct fb_bdev *bdev)
{
	return bdev->num_blocks;
}

bool fb_bdev_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	if ((unsigned)type >= FB_IO_TYPE_COUNT)
		return false;
	if (!bdev->fn->io_type_supported)
		return type == FB_IO_READ || type == FB_IO_WRITE;
	return bdev->fn->io_type_supported(bdev, type);
}

struct fb_io_channel *fb_bdev_get_io_channel(struct fb_bdev_desc *desc)
{
	struct fb_reactor *r = fb_reactor_current();
	struct fb_bdev *b = desc->bdev;
	struct fb_io_channel *ch;

	if (!r || r->e != b->e)
		return NULL;
	ch = b->pc[r->index].ch;
	if (!ch) {
		size_t ctx = b->module->channel_ctx_size;

		ch = calloc(1, sizeof(*ch) + ctx);
		if (!ch)
			return NULL;
		ch->bdev = b;
		ch->r = r;
		ch->io_size = (sizeof(struct fb_bdev_io) + b->module->io_ctx_size + 15) & ~(size_t)15;
		bdev_async_ref(b);
		if (b->fn->channel_create && b->fn->channel_create(b, ch->ctx) != 0) {
			free(ch);
			bdev_async_unref(b);
			return NULL;
		}
		b->pc[r->index].ch = ch;
	}
	ch->destroy_pending = false;
	ch->refs++;
	return ch;
}

void fb_put_io_channel(struct fb_io_channel *ch)
{
	if (!ch)
		return;
	if (--ch->refs == 0 && atomic_load(&ch->bdev->open_atomic) == 0)
		channel_destroy(ch);
}

void *fb_io_channel_get_ctx(struct fb_io_channel *ch)
{
	return ch->ctx;
}

struct fb_reactor *fb_io_channel_get_reactor(struct fb_io_channel *ch)
{
	return ch->r;
}

/* ------------------------------------------------------------------ I/O */

static struct fb_bdev_io *io_get(struct fb_io_channel *ch)
{
	struct fb_bdev_io *io = ch->free_ios;

	if (!io) {
		/* Grow by a slab; steady state reuses these forever. */
		size_t hdr = 16;
		char *slab = malloc(hdr + ch->io_size * FB_IO_SLAB);

		if (!slab)
			return NULL;
		*(void **)slab = ch->slabs;
		ch->slabs = slab;
		for (unsigned i = 0; i < FB_IO_SLAB; i++) {
			struct fb_bdev_io *n = (struct fb_bdev_io *)(void *)(slab + hdr + i * ch->io_size);

			n->next_free = ch->free_ios;
			ch->free_ios = n;
		}
		io = ch->free_ios;
	}
	ch->free_ios = io->next_free;
	ch->outstanding++;
	return io;
}

void fb_bdev_free_io(struct fb_bdev_io *io)
{
	struct fb_io_channel *ch;

	if (!io)
		return;
	ch = io->ch;
	io->next_free = ch->free_ios;
	ch->free_ios = io;
	if (--ch->outstanding == 0 && ch->destroy_pending)
		channel_destroy_now(ch);
}

static int io_submit(struct fb_bdev_desc *desc, struct fb_io_channel *ch, enum fb_io_type type,
		     struct iovec *iov, int iovcnt, uint64_t offset, uint64_t num, uint32_t flags,
		     fb_bdev_io_cb cb, void *cb_arg)
{
	struct fb_bdev *b = desc->bdev;
	struct fb_bdev_io *io;
	/* A populating zcopy only reads, so read-only descriptors may use it. */
	bool reads = type == FB_IO_READ || (type == FB_IO_ZCOPY && (flags & FB_IO_FLAG_POPULATE));

	if (!ch || ch->bdev != b || !cb)
		return -EINVAL;
	if (!reads && !desc->write)
		return -EBADF;
	if (num > b->num_blocks || offset > b->num_blocks - num)
		return -EINVAL;
	if (num == 0 && type != FB_IO_FLUSH)
		return -EINVAL;
	if (type == FB_IO_READ || type == FB_IO_WRITE) {
		uint64_t len = 0;

		if (!iov || iovcnt <= 0)
			return -EINVAL;
		for (int i = 0; i < iovcnt; i++)
			len += iov[i].iov_len;
		if (len != num * b->block_size)
			return -EINVAL;
	}
	if (!fb_bdev_io_type_supported(b, type))
		return -ENOTSUP;
	io = io_get(ch);
	if (!io)
		return -ENOMEM;
	io->bdev = b;
	io->ch = ch;
	io->type = type;
	io->flags = flags;
	io->offset_blocks = offset;
	io->num_blocks = num;
	io->iov = type == FB_IO_ZCOPY ? io->zc_iov : iov;
	io->iovcnt = type == FB_IO_ZCOPY ? 0 : iovcnt;
	io->status = 0;
	io->cb = cb;
	io->cb_arg = cb_arg;
	io->start_ns = fb_now_ns();
	b->fn->submit_request(ch, io);
	return 0;
}

int fb_bdev_readv_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch, struct iovec *iov,
			 int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb,
			 void *cb_arg)
{
	return io_submit(desc, ch, FB_IO_READ, iov, iovcnt, offset_blocks, num_blocks, 0, cb, cb_arg);
}

int fb_bdev_writev_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch, struct iovec *iov,
			  int iovcnt, uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags,
			  fb_bdev_io_cb cb, void *cb_arg)
{
	return io_submit(desc, ch, FB_IO_WRITE, iov, iovcnt, offset_blocks, num_blocks, flags, cb,
			 cb_arg);
}

int fb_bdev_flush_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
			 uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb, void *cb_arg)
{
	return io_submit(desc, ch, FB_IO_FLUSH, NULL, 0, offset_blocks, num_blocks, 0, cb, cb_arg);
}

int fb_bdev_unmap_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
			 uint64_t offset_blocks, uint64_t num_blocks, fb_bdev_io_cb cb, void *cb_arg)
{
	return io_submit(desc, ch, FB_IO_UNMAP, NULL, 0, offset_blocks, num_blocks, 0, cb, cb_arg);
}

int fb_bdev_write_zeroes_blocks(struct fb_bdev_desc *desc, struct fb_io_channel *ch,
				uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags,
				fb_bdev_io_cb cb, void *cb_arg)
{
	return io_submit(desc, ch, FB_IO_WRITE_ZEROES, NULL, 0, offset_blocks, num_blocks, flags,
			 cb, cb_arg);
}

bool fb_bdev_zcopy_supported(struct fb_bdev *bdev)
{
	return fb_bdev_io_type_supported(bdev, FB_IO_ZCOPY);
}

int fb_bdev_zcopy_start(struct fb_bdev_desc *desc, struct fb_io_channel *ch, uint64_t offset_blocks,
			uint64_t num_blocks, bool populate, fb_bdev_io_cb cb, void *cb_arg)
{
	/* Write zcopy needs a commit step (fb_bdev_zcopy_end) no module has yet. */
	if (!populate)
		return -ENOTSUP;
	return io_submit(desc, ch, FB_IO_ZCOPY, NULL, 0, offset_blocks, num_blocks,
			 FB_IO_FLAG_POPULATE, cb, cb_arg);
}

const struct iovec *fb_bdev_io_get_buf_iovs(struct fb_bdev_io *io, int *iovcnt)
{
	bool lent = io->type == FB_IO_ZCOPY && io->status == 0 && io->iovcnt > 0;

	if (iovcnt)
		*iovcnt = lent ? io->iovcnt : 0;
	return lent ? io->iov : NULL;
}

int fb_bdev_io_set_buf(struct fb_bdev_io *io, void *buf, size_t len)
{
	if (io->type != FB_IO_ZCOPY)
		return -EINVAL;
	if (io->iovcnt >= FB_ZCOPY_IOV_MAX)
		return -ENOSPC;
	io->zc_iov[io->iovcnt].iov_base = buf;
	io->zc_iov[io->iovcnt].iov_len = len;
	io->iovcnt++;
	return 0;
}

/* A zcopy that claims success must have lent exactly the requested bytes. */
static int zcopy_check(const struct fb_bdev_io *io, uint64_t bytes)
{
	uint64_t len = 0;

	for (int i = 0; i < io->iovcnt; i++)
		len += io->zc_iov[i].iov_len;
	return len == bytes ? 0 : -EIO;
}

struct fb_bdev *fb_bdev_io_get_bdev(struct fb_bdev_io *io) { return io->bdev; }
enum fb_io_type fb_bdev_io_get_type(const struct fb_bdev_io *io) { return io->type; }
uint64_t fb_bdev_io_get_offset_blocks(const struct fb_bdev_io *io) { return io->offset_blocks; }
uint64_t fb_bdev_io_get_num_blocks(const struct fb_bdev_io *io) { return io->num_blocks; }
uint32_t fb_bdev_io_get_flags(const struct fb_bdev_io *io) { return io->flags; }
void *fb_bdev_io_get_driver_ctx(struct fb_bdev_io *io) { return io->driver_ctx; }

struct iovec *fb_bdev_io_get_iovs(struct fb_bdev_io *io, int *iovcnt)
{
	if (iovcnt)
		*iovcnt = io->iovcnt;
	return io->iov;
}

/* Only the owning reactor writes its slot: a relaxed load + store is a plain
 * add on x86 and still race-free for the summing reader. */
static inline void stat_add(struct fb_bdev_percore *pc, unsigned idx, uint64_t v)
{
	atomic_store_explicit(&pc->stat[idx],
			      atomic_load_explicit(&pc->stat[idx], memory_order_relaxed) + v,
			      memory_order_relaxed);
}

void fb_bdev_io_complete(struct fb_bdev_io *io, int status)
{
	struct fb_bdev *b = io->bdev;
	struct fb_bdev_percore *pc = &b->pc[io->ch->r->index];
	uint64_t bytes = io->num_blocks * b->block_size;

	if (io->type == FB_IO_ZCOPY && status == 0)
		status = zcopy_check(io, bytes);
	if (status) {
		if (io->type == FB_IO_ZCOPY)
			io->iovcnt = 0;  /* nothing lent */
		stat_add(pc, FB_STAT_ERRORS, 1);
	} else {
		switch (io->type) {
		case FB_IO_READ:
			stat_add(pc, FB_STAT_READ_OPS, 1);
			stat_add(pc, FB_STAT_BYTES_READ, bytes);
			stat_add(pc, FB_STAT_READ_LAT, fb_now_ns() - io->start_ns);
			break;
		case FB_IO_WRITE:
			stat_add(pc, FB_STAT_WRITE_OPS, 1);
			stat_add(pc, FB_STAT_BYTES_WRITTEN, bytes);
			stat_add(pc, FB_STAT_WRITE_LAT, fb_now_ns() - io->start_ns);
			break;
		case FB_IO_FLUSH:
			stat_add(pc, FB_STAT_FLUSH_OPS, 1);
			break;
		case FB_IO_UNMAP:
			stat_add(pc, FB_STAT_UNMAP_OPS, 1);
			stat_add(pc, FB_STAT_BYTES_UNMAPPED, bytes);
			break;
		case FB_IO_WRITE_ZEROES:
			stat_add(pc, FB_STAT_WZ_OPS, 1);
			break;
		case FB_IO_ZCOPY:
			if (io->flags & FB_IO_FLAG_POPULATE) {
				/* A read whose data stays in place: counted as one. */
				stat_add(pc, FB_STAT_READ_OPS, 1);
				stat_add(pc, FB_STAT_BYTES_READ, bytes);
				stat_add(pc, FB_STAT_READ_LAT, fb_now_ns() - io->start_ns);
			}
			break;
		default:
			break;
		}
	}
	io->status = status;
	io->cb(io, status, io->cb_arg);
}

static void io_deferred_complete(struct fb_deferred *d)
{
	struct fb_bdev_io *io = (struct fb_bdev_io *)(void *)d; /* defer is the first member */

	fb_bdev_io_complete(io, io->status);
}

void fb_bdev_io_complete_deferred(struct fb_bdev_io *io, int status)
{
	io->status = status;
	io->defer.fn = io_deferred_complete;
	fb_reactor_defer(io->ch->r, &io->defer);
}

/* -------------------------------------------------------------- control */

static void bdev_holder_msg(struct fb_bdev *b, struct fb_err *err)
{
	if (b->claim) {
		fb_err_set(err, "bdev '%s' is claimed by %s; delete that first", b->name,
			   b->claim->holder);
	} else if (b->descs) {
		fb_err_set(err, "bdev '%s' is open by %s%s; close or remove it first", b->name,
			   b->descs->holder, b->open_count > 1 ? " and others" : "");
	}
}

int fb_bdev_delete(struct fb_engine *e, const char *name, struct fb_err *err)
{
	struct fb_bdev *b;
	int rc = 0;

	if (fb_reactor_current()) {
		/* It waits for every reactor to drop its channel. */
		fb_err_set(err, "fb_bdev_delete called on a reactor thread; call it from a control thread");
		return -EDEADLK;
	}
	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	if (!b) {
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)",
			   name ? name : "(null)");
		rc = -ENOENT;
		goto unlock;
	}
	if (b->open_count) {
		bdev_holder_msg(b, err);
		rc = -EBUSY;
		goto unlock;
	}
	/* Unlisted first: no new opens; then wait for every channel to go. */
	if (b->prev)
		b->prev->next = b->next;
	else
		e->bdevs_head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		e->bdevs_tail = b->prev;
	b->deleting = true;
	bdev_release_channels_locked(b);
	while (atomic_load(&b->async_refs) > 0)
		pthread_cond_wait(&e->cond, &e->lock);
unlock:
	pthread_mutex_unlock(&e->lock);
	if (rc == 0) {
		if (b->fn->destruct)
			b->fn->destruct(b);
		free(b->name);
		free(b->pc);
		free(b);
	}
	return rc;
}

void fb_bdev_delete_all(struct fb_engine *e)
{
	char **names = NULL;
	size_t n = 0, i = 0;

	pthread_mutex_lock(&e->lock);
	for (struct fb_bdev *b = e->bdevs_head; b; b = b->next)
		n++;
	names = calloc(n ? n : 1, sizeof(*names));
	/* Newest first: virtual bdevs go before the bases they claim. */
	for (struct fb_bdev *b = e->bdevs_tail; names && b; b = b->prev)
		names[i++] = strdup(b->name);
	pthread_mutex_unlock(&e->lock);
	for (i = 0; names && i < n; i++) {
		struct fb_err err;
		int rc;

		if (!names[i])
			continue;
		rc = fb_bdev_delete(e, names[i], &err);
		if (rc)
			fb_log(e, FB_LOG_WARN, "engine shutdown: %s (leaked)", err.msg);
		free(names[i]);
	}
	free(names);
}

int fb_bdev_foreach(struct fb_engine *e, const char *name, fb_bdev_info_fn fn, void *arg)
{
	int rc = 0;
	bool found = false;

	pthread_mutex_lock(&e->lock);
	for (struct fb_bdev *b = e->bdevs_head; b && !rc; b = b->next) {
		struct fb_strbuf cfg = {0}, drv = {0};
		struct fb_bdev_info info;
		uint64_t s[FB_STAT_COUNT] = {0};

		if (name && strcmp(name, b->name) != 0)
			continue;
		found = true;
		for (unsigned r = 0; r < e->nreactors; r++)
			for (unsigned k = 0; k < FB_STAT_COUNT; k++)
				s[k] += atomic_load_explicit(&b->pc[r].stat[k], memory_order_relaxed);
		memset(&info, 0, sizeof(info));
		info.name = b->name;
		info.module = b->module->name;
		info.create_method = b->module->create_method;
		info.block_size = b->block_size;
		info.num_blocks = b->num_blocks;
		if (b->claim) {
			info.claimed_by = b->claim->claim_by ? b->claim->claim_by->name : "unknown";
			info.claim_holder = b->claim->holder;
		}
		if (b->fn->dump_config_json && b->fn->dump_config_json(b, &cfg) == 0)
			info.config_json = cfg.buf;
		if (b->fn->dump_info_json && b->fn->dump_info_json(b, &drv) == 0)
			info.driver_json = drv.buf;
		info.stats.num_read_ops = s[FB_STAT_READ_OPS];
		info.stats.num_write_ops = s[FB_STAT_WRITE_OPS];
		info.stats.num_flush_ops = s[FB_STAT_FLUSH_OPS];
		info.stats.num_unmap_ops = s[FB_STAT_UNMAP_OPS];
		info.stats.num_write_zeroes_ops = s[FB_STAT_WZ_OPS];
		info.stats.bytes_read = s[FB_STAT_BYTES_READ];
		info.stats.bytes_written = s[FB_STAT_BYTES_WRITTEN];
		info.stats.bytes_unmapped = s[FB_STAT_BYTES_UNMAPPED];
		info.stats.read_latency_ns = s[FB_STAT_READ_LAT];
		info.stats.write_latency_ns = s[FB_STAT_WRITE_LAT];
		info.stats.io_errors = s[FB_STAT_ERRORS];
		/* fn runs under the registry lock: it must not call control functions. */
		rc = fn(&info, arg);
		fb_strbuf_free(&cfg);
		fb_strbuf_free(&drv);
	}
	pthread_mutex_unlock(&e->lock);
	if (name && !found)
		rc = -ENOENT;
	return rc;
}
