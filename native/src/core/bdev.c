/* bdev layer: registry, descriptors, claims, channels, I/O pools, stats. */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rpc_core.h"

#define FB_IO_SLAB 32
#define FB_NAME_MAX 255
/* Children in flight per split parent: bounds what one big I/O holds. */
#define CORE_MAX_CHILDREN 32u

static uint64_t nblocks(const struct fb_bdev *b)
{
	return atomic_load_explicit(&((struct fb_bdev *)(uintptr_t)b)->num_blocks, memory_order_relaxed);
}

/* By name, or by uuid (any case), the alias every bdev has. */
static struct fb_bdev *bdev_find_locked(struct fb_engine *e, const char *name)
{
	struct fb_uuid u;
	bool is_uuid = fb_uuid_parse(name, &u) == 0;

	for (struct fb_bdev *b = e->bdevs_head; b; b = b->next) {
		if (strcmp(b->name, name) == 0)
			return b;
		if (is_uuid && memcmp(&b->uuid, &u, sizeof(u)) == 0)
			return b;
	}
	return NULL;
}

static void channel_wait_timer(struct fb_timer *t);
static void qos_timer_fn(struct fb_timer *t);

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

/* SPDK's bdev events: the ctx is the bdev's name (a JSON string). */
static void bdev_notify(struct fb_engine *e, const char *type, const char *name)
{
	struct fb_json_writer *w = fb_json_writer_new();
	char *ctx = NULL;

	fb_json_write_string(w, name);
	if (fb_json_writer_finish(w, &ctx, NULL) == 0)
		fb_notify(e, type, ctx);
	free(ctx);
}

static void bdev_free(struct fb_bdev *b)
{
	if (!b)
		return;
	free(b->name);
	free(b->product_name);
	free(atomic_load(&b->qos));
	free(b->pc);
	free(b->hist);
	free(b);
}

int fb_bdev_register(struct fb_engine *e, const struct fb_bdev_register_opts *opts_in,
		     struct fb_bdev **out, struct fb_err *err)
{
	struct fb_bdev_register_opts o;
	const struct fb_module_ent *mod;
	struct fb_bdev *b = NULL, *clash;
	size_t nlen;
	int rc = 0;

	if (out)
		*out = NULL;
	if (!opts_in || opts_in->size == 0 || opts_in->size > sizeof(o)) {
		fb_err_set(err, "opts.size must be sizeof(struct fb_bdev_register_opts)");
		return -EINVAL;
	}
	memset(&o, 0, sizeof(o));
	memcpy(&o, opts_in, opts_in->size);
	nlen = o.name ? strlen(o.name) : 0;
	if (nlen == 0 || nlen > FB_NAME_MAX) {
		fb_err_set(err, "name must be 1..%d characters", FB_NAME_MAX);
		return -EINVAL;
	}
	if (o.block_size == 0 || o.block_size % 512 != 0 || o.block_size > FB_ZERO_BUF_LEN) {
		fb_err_set(err, "block_size %u must be a multiple of 512 up to %u", o.block_size,
			   FB_ZERO_BUF_LEN);
		return -EINVAL;
	}
	if (o.num_blocks == 0 || o.num_blocks > UINT64_MAX / o.block_size) {
		fb_err_set(err, "num_blocks must be at least 1 (and the size must fit 64 bits)");
		return -EINVAL;
	}
	if (o.physical_block_size && o.physical_block_size % o.block_size != 0) {
		fb_err_set(err, "physical_block_size %u must be a multiple of block_size %u",
			   o.physical_block_size, o.block_size);
		return -EINVAL;
	}
	if (o.required_alignment > 12) {
		fb_err_set(err, "required_alignment %u is log2 bytes; use at most 12 (4 KiB, the "
			   "alignment of the core's bounce buffers)", o.required_alignment);
		return -EINVAL;
	}
	mod = o.module ? fb_module_find(e, o.module) : NULL;
	if (!mod) {
		fb_err_set(err, "bdev '%s': its module %s%s%s is not registered with this engine "
			   "(FB_BDEV_MODULE_REGISTER)", o.name, o.module ? "'" : "",
			   o.module && o.module->name ? o.module->name : "(none)", o.module ? "'" : "");
		return -EINVAL;
	}
	if (!o.fn || !o.fn->submit_request || o.fn->size == 0 || o.fn->size > sizeof(b->fn_copy)) {
		fb_err_set(err, "bdev '%s': fn must be a fb_bdev_fn_table with size and submit_request",
			   o.name);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		goto nomem;
	b->name = strdup(o.name);
	b->product_name = strdup(o.product_name ? o.product_name :
				 mod->c.product_name ? mod->c.product_name : mod->c.name);
	b->pc = aligned_alloc(FB_CACHELINE, sizeof(*b->pc) * e->nreactors);
	if (!b->name || !b->product_name || !b->pc)
		goto nomem;
	memset(b->pc, 0, sizeof(*b->pc) * e->nreactors);
	b->e = e;
	b->block_size = o.block_size;
	atomic_init(&b->num_blocks, o.num_blocks);
	b->physical_block_size = o.physical_block_size ? o.physical_block_size : o.block_size;
	b->optimal_io_boundary = o.optimal_io_boundary;
	b->split_on_optimal_io_boundary = o.split_on_optimal_io_boundary && o.optimal_io_boundary;
	b->write_unit_size = o.write_unit_size > 1 ? o.write_unit_size : 1;
	b->required_alignment = o.required_alignment;
	b->max_io_blocks = o.max_io_blocks;
	b->module = o.module;
	b->mod = mod;
	memcpy(&b->fn_copy, o.fn, o.fn->size);
	b->fn_copy.size = sizeof(b->fn_copy);
	b->fn = &b->fn_copy;
	b->module_ctx = o.ctx;
	for (unsigned t = 0; t < FB_IO_TYPE_COUNT; t++) {
		bool ok = b->fn->io_type_supported ? b->fn->io_type_supported(b, (enum fb_io_type)t) :
						      t == FB_IO_READ || t == FB_IO_WRITE;

		b->io_types |= ok ? 1u << t : 0;
	}
	if (b->split_on_optimal_io_boundary || b->max_io_blocks)
		b->core_flags |= CORE_SPLIT;
	if (b->required_alignment)
		b->core_flags |= CORE_ALIGN;
	/* Write-zeroes becomes zero writes, unmap a no-op, where the module has
	 * neither (SPDK's emulation). */
	if (!(b->io_types & (1u << FB_IO_WRITE_ZEROES)) && (b->io_types & (1u << FB_IO_WRITE)))
		b->core_flags |= CORE_EMU_WZ;
	if (!(b->io_types & (1u << FB_IO_UNMAP)))
		b->core_flags |= CORE_EMU_UNMAP;
	b->uuid = o.uuid;
	if (fb_uuid_is_null(&b->uuid))
		fb_uuid_generate(&b->uuid);
	fb_uuid_fmt(&b->uuid, b->uuid_str);
	atomic_init(&b->async_refs, 0);
	atomic_init(&b->open_atomic, 0);

	pthread_mutex_lock(&e->lock);
	if (e->destroying) {
		fb_err_set(err, "the engine is shutting down");
		rc = -ESHUTDOWN;
	} else if ((clash = bdev_find_locked(e, o.name)) != NULL) {
		if (strcmp(clash->name, o.name) == 0)
			fb_err_set(err, "bdev '%s' already exists; choose another name or delete it first",
				   o.name);
		else
			fb_err_set(err, "bdev name '%s' is the uuid of bdev '%s'; choose another name",
				   o.name, clash->name);
		rc = -EEXIST;
	} else if ((clash = bdev_find_locked(e, b->uuid_str)) != NULL) {
		fb_err_set(err, "uuid %s is already used by bdev '%s'; pass another uuid or none",
			   b->uuid_str, clash->name);
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
	if (rc) {
		bdev_free(b);
		return rc;
	}
	if (out)
		*out = b;
	bdev_notify(e, "bdev_register", b->name);
	/* Every other module looks at the new bdev (on-disk metadata), here on
	 * the registering thread with no lock held. */
	for (unsigned i = 0; i < e->nmodules; i++) {
		const struct fb_bdev_module *c = &e->modules[i].c;

		if (e->modules[i].m != b->module && c->examine)
			c->examine(e, b);
	}
	return 0;
nomem:
	fb_err_set(err, "out of memory registering bdev '%s'", o.name);
	bdev_free(b);
	return -ENOMEM;
}

void fb_bdev_get_uuid(const struct fb_bdev *bdev, struct fb_uuid *out)
{
	*out = bdev->uuid;
}

struct fb_engine *fb_bdev_get_engine(const struct fb_bdev *bdev)
{
	return bdev->e;
}

void *fb_bdev_get_module_ctx(struct fb_bdev *bdev)
{
	return bdev->module_ctx;
}

const struct fb_bdev_module *fb_bdev_get_module(const struct fb_bdev *bdev)
{
	return bdev->module;
}

int fb_bdev_open(struct fb_engine *e, const char *name, const struct fb_bdev_open_opts *opts_in,
		 struct fb_bdev_desc **out, struct fb_err *err)
{
	struct fb_bdev_open_opts o;
	struct fb_bdev_desc *d;
	struct fb_bdev *b;
	int rc = 0;

	*out = NULL;
	memset(&o, 0, sizeof(o));
	if (opts_in) {
		if (opts_in->size == 0 || opts_in->size > sizeof(o)) {
			fb_err_set(err, "opts.size must be sizeof(struct fb_bdev_open_opts)");
			return -EINVAL;
		}
		memcpy(&o, opts_in, opts_in->size);
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fb_err_set(err, "out of memory opening bdev '%s'", name ? name : "(null)");
		return -ENOMEM;
	}
	snprintf(d->holder, sizeof(d->holder), "%s", o.holder ? o.holder : "a descriptor");
	d->write = o.write;
	d->event_cb = o.event_cb;
	d->event_ctx = o.event_ctx;
	atomic_init(&d->removed, false);
	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	if (!b) {
		fb_err_set(err, "bdev '%s' does not exist; create it first (bdev_get_bdevs lists bdevs)",
			   name ? name : "(null)");
		rc = -ENOENT;
		goto unlock;
	}
	if (b->deleting) {
		fb_err_set(err, "bdev '%s' is being deleted", b->name);
		rc = -ENODEV;
		goto unlock;
	}
	if (o.write && b->claim) {
		fb_err_set(err, "bdev '%s' is claimed by %s; use that bdev instead", b->name,
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

void fb_bdev_desc_set_holder(struct fb_bdev_desc *desc, const char *holder)
{
	struct fb_engine *e = desc->bdev->e;

	pthread_mutex_lock(&e->lock);
	snprintf(desc->holder, sizeof(desc->holder), "%s", holder ? holder : "a descriptor");
	pthread_mutex_unlock(&e->lock);
}

static void channel_bufs_free(struct fb_io_channel *ch);

static void channel_destroy_now(struct fb_io_channel *ch)
{
	struct fb_bdev *b = ch->bdev;
	void *slab = ch->slabs;

	if (b->fn->channel_destroy)
		b->fn->channel_destroy(b, ch->ctx);
	fb_timer_cancel(&ch->wait_timer);
	fb_timer_cancel(&ch->qos_timer);
	channel_bufs_free(ch);
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
	bool keep;

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
	if (b->open_count == 0) {
		bdev_release_channels_locked(b);
		pthread_cond_broadcast(&e->cond); /* a delete may wait for this */
	}
	/* An event call for it is still in progress: its sender frees it. */
	keep = desc->event_refs > 0;
	desc->closed = true;
	pthread_mutex_unlock(&e->lock);
	if (!keep)
		free(desc);
}

/* Calls every descriptor's event callback (control thread, no lock held
 * during the calls). A descriptor closed meanwhile is skipped; one closed by
 * its own callback is freed here. Returns how many callbacks ran. */
static unsigned bdev_send_event(struct fb_bdev *b, enum fb_bdev_event_type type)
{
	struct fb_engine *e = b->e;
	struct fb_bdev_desc **snap = NULL;
	unsigned n = 0, ran = 0;

	pthread_mutex_lock(&e->lock);
	for (struct fb_bdev_desc *d = b->descs; d; d = d->next)
		n += d->event_cb != NULL;
	if (n)
		snap = calloc(n, sizeof(*snap));
	n = 0;
	for (struct fb_bdev_desc *d = b->descs; snap && d; d = d->next) {
		if (!d->event_cb)
			continue;
		if (type == FB_BDEV_EVENT_REMOVE)
			atomic_store(&d->removed, true);
		d->event_refs++;
		snap[n++] = d;
	}
	pthread_mutex_unlock(&e->lock);
	for (unsigned i = 0; i < n; i++) {
		struct fb_bdev_desc *d = snap[i];
		bool closed, last;

		pthread_mutex_lock(&e->lock);
		closed = d->closed;
		pthread_mutex_unlock(&e->lock);
		if (!closed) {
			d->event_cb(type, b, d->event_ctx);
			ran++;
		}
		pthread_mutex_lock(&e->lock);
		last = --d->event_refs == 0 && d->closed;
		pthread_mutex_unlock(&e->lock);
		if (last)
			free(d);
	}
	free(snap);
	return ran;
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
	return nblocks(bdev);
}

int fb_bdev_notify_blockcnt_change(struct fb_bdev *bdev, uint64_t num_blocks)
{
	if (num_blocks == 0 || num_blocks > UINT64_MAX / bdev->block_size)
		return -EINVAL;
	if (fb_reactor_current())
		return -EDEADLK;
	atomic_store(&bdev->num_blocks, num_blocks);
	bdev_send_event(bdev, FB_BDEV_EVENT_RESIZE);
	return 0;
}

bool fb_bdev_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	if ((unsigned)type >= FB_IO_TYPE_COUNT)
		return false;
	/* Write-zeroes is emulated with writes; unmap is not reported unless the
	 * module has it (the core makes it a no-op success, which is no promise
	 * of zeros). */
	if (type == FB_IO_WRITE_ZEROES && (bdev->core_flags & CORE_EMU_WZ))
		return true;
	return (bdev->io_types >> type) & 1u;
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
		size_t ctx = b->mod->c.channel_ctx_size;

		ch = calloc(1, sizeof(*ch) + ctx);
		if (!ch)
			return NULL;
		ch->bdev = b;
		ch->r = r;
		ch->io_size = (sizeof(struct fb_bdev_io) + b->mod->c.io_ctx_size + 15) & ~(size_t)15;
		fb_timer_init(&ch->wait_timer, channel_wait_timer);
		fb_timer_init(&ch->qos_timer, qos_timer_fn);
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

/* -------------------------------------------------------- io_wait, buffers */

static void channel_wait_run(struct fb_deferred *d)
{
	struct fb_io_channel *ch = (struct fb_io_channel *)(void *)((char *)d -
		offsetof(struct fb_io_channel, wait_defer));
	struct fb_io_wait_entry *w = ch->wait_head;

	/* Only the entries queued so far: one that requeues itself waits for
	 * the next free. */
	ch->wait_head = ch->wait_tail = NULL;
	ch->wait_scheduled = false;
	while (w) {
		struct fb_io_wait_entry *next = w->next;

		w->next = NULL;
		w->cb(w->arg);
		w = next;
	}
	if (!ch->wait_head)
		fb_timer_cancel(&ch->wait_timer);
	/* The pass held the channel like an io does (see channel_wait_kick). */
	if (--ch->outstanding == 0 && ch->destroy_pending)
		channel_destroy_now(ch);
}

/* Wakes the waiters on the next loop iteration (never from inside the free
 * that triggered it, so a waiter's resubmit cannot recurse). */
static void channel_wait_kick(struct fb_io_channel *ch)
{
	if (ch->wait_scheduled)
		return;
	ch->wait_scheduled = true;
	ch->outstanding++; /* keeps the channel until the pass ran */
	ch->wait_defer.fn = channel_wait_run;
	fb_reactor_defer(ch->r, &ch->wait_defer);
}

/* Waiters for scratch memory that another channel holds are woken by this
 * timer if nothing on their own channel frees first. */
static void channel_wait_timer(struct fb_timer *t)
{
	struct fb_io_channel *ch = (struct fb_io_channel *)(void *)((char *)t -
		offsetof(struct fb_io_channel, wait_timer));

	if (ch->wait_head)
		channel_wait_kick(ch);
}

void fb_io_channel_queue_wait(struct fb_io_channel *ch, struct fb_io_wait_entry *entry)
{
	entry->next = NULL;
	if (ch->wait_tail)
		ch->wait_tail->next = entry;
	else
		ch->wait_head = entry;
	ch->wait_tail = entry;
	if (!ch->wait_timer.armed)
		fb_timer_arm(ch->r, &ch->wait_timer, 1000000u);
}

static unsigned buf_class(size_t len)
{
	unsigned shift = FB_BUF_MIN_SHIFT;

	while (((size_t)1 << shift) < len)
		shift++;
	return shift - FB_BUF_MIN_SHIFT;
}

void *fb_io_channel_get_buf(struct fb_io_channel *ch, size_t len)
{
	struct fb_engine *e = ch->bdev->e;
	unsigned c;
	size_t sz;
	void *buf;

	if (len == 0 || len > ((size_t)1 << FB_BUF_MAX_SHIFT))
		return NULL;
	c = buf_class(len);
	if (ch->buf_cache[c]) {
		struct fb_buf_free *f = ch->buf_cache[c];

		ch->buf_cache[c] = f->next;
		ch->buf_ncache[c]--;
		return f;
	}
	sz = (size_t)1 << (c + FB_BUF_MIN_SHIFT);
	/* Only a cache miss touches the engine-wide budget. */
	if (atomic_fetch_add_explicit(&e->buf_used, sz, memory_order_relaxed) + sz > e->buf_limit) {
		atomic_fetch_sub_explicit(&e->buf_used, sz, memory_order_relaxed);
		return NULL;
	}
	buf = aligned_alloc(4096, sz);
	if (!buf)
		atomic_fetch_sub_explicit(&e->buf_used, sz, memory_order_relaxed);
	return buf;
}

void fb_io_channel_put_buf(struct fb_io_channel *ch, void *buf, size_t len)
{
	unsigned c;

	if (!buf)
		return;
	c = buf_class(len);
	if (ch->buf_ncache[c] < FB_BUF_CACHE_PER_CLASS ||
	    ((size_t)ch->buf_ncache[c] + 1) << (c + FB_BUF_MIN_SHIFT) <= FB_BUF_CACHE_BYTES) {
		struct fb_buf_free *f = buf;

		f->next = ch->buf_cache[c];
		ch->buf_cache[c] = f;
		ch->buf_ncache[c]++;
	} else {
		free(buf);
		atomic_fetch_sub_explicit(&ch->bdev->e->buf_used,
					  (size_t)1 << (c + FB_BUF_MIN_SHIFT), memory_order_relaxed);
	}
	if (ch->wait_head)
		channel_wait_kick(ch);
}

static void channel_bufs_free(struct fb_io_channel *ch)
{
	for (unsigned c = 0; c < FB_BUF_CLASSES; c++) {
		while (ch->buf_cache[c]) {
			struct fb_buf_free *f = ch->buf_cache[c];

			ch->buf_cache[c] = f->next;
			free(f);
			atomic_fetch_sub_explicit(&ch->bdev->e->buf_used,
						  (size_t)1 << (c + FB_BUF_MIN_SHIFT),
						  memory_order_relaxed);
		}
		ch->buf_ncache[c] = 0;
	}
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
	if (ch->wait_head)
		channel_wait_kick(ch);
	if (--ch->outstanding == 0 && ch->destroy_pending)
		channel_destroy_now(ch);
}

/* ------------------------------------------------ core split / bounce / emulation
 *
 * A parent io the core must split (optimal_io_boundary, max_io_blocks),
 * bounce (required_alignment, or more pieces than a child holds) or emulate
 * (write-zeroes as zero writes, unmap as a no-op) is served by children from
 * the same channel's io pool, at most CORE_MAX_CHILDREN in flight. The parent
 * completes when all have (the first error wins); -ENOMEM-like shortages park
 * it on the channel's io_wait queue. Bdevs without any of these never come
 * here: one predictable branch on the submit path. */

static bool core_path(const struct fb_bdev *b, enum fb_io_type type)
{
	switch (type) {
	case FB_IO_READ:
	case FB_IO_WRITE:
		return b->core_flags & (CORE_SPLIT | CORE_ALIGN);
	case FB_IO_UNMAP:
		return b->core_flags & (CORE_SPLIT | CORE_EMU_UNMAP);
	case FB_IO_WRITE_ZEROES:
		return b->core_flags & (CORE_SPLIT | CORE_EMU_WZ);
	default:
		return false;
	}
}

static void core_issue(struct fb_bdev_io *p);

static void core_parent_done(struct fb_bdev_io *p)
{
	if (p->split_parked || p->split_issuing || p->split_inflight)
		return;
	if (p->split_status || p->split_next == p->num_blocks)
		fb_bdev_io_complete(p, p->split_status);
}

static void core_child_done(struct fb_bdev_io *c, int status, void *arg)
{
	struct fb_bdev_io *p = arg;
	struct fb_io_channel *ch = c->ch;

	if (c->bounce) {
		if (status == 0 && c->type == FB_IO_READ)
			fb_iov_from_buf(p->iov, p->iovcnt,
					(c->offset_blocks - p->offset_blocks) * p->bdev->block_size,
					c->bounce, c->bounce_len);
		fb_io_channel_put_buf(ch, c->bounce, c->bounce_len);
		c->bounce = NULL;
	}
	fb_bdev_free_io(c);
	if (status && !p->split_status)
		p->split_status = status;
	p->split_inflight--;
	if (p->split_issuing)
		return; /* the issuing loop sees it */
	if (!p->split_parked && !p->split_status && p->split_next < p->num_blocks)
		core_issue(p);
	else
		core_parent_done(p);
}

static void core_resume(void *arg)
{
	struct fb_bdev_io *p = arg;

	p->split_parked = false;
	core_issue(p);
}

/* Blocks of the next child of p, at most rem. */
static uint64_t core_child_blocks(const struct fb_bdev_io *p, bool data)
{
	const struct fb_bdev *b = p->bdev;
	uint64_t pos = p->offset_blocks + p->split_next, n = p->num_blocks - p->split_next;

	if (b->split_on_optimal_io_boundary) {
		uint64_t to = b->optimal_io_boundary - pos % b->optimal_io_boundary;

		n = n < to ? n : to;
	}
	if (data && b->max_io_blocks && n > b->max_io_blocks)
		n = b->max_io_blocks;
	return n;
}

/* SPDK's rule: buffer addresses are aligned (lengths are the module's). */
static bool iov_aligned(const struct iovec *iov, int n, uint32_t align_log2)
{
	uintptr_t mask = ((uintptr_t)1 << align_log2) - 1;

	for (int i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base & mask)
			return false;
	return true;
}

static void core_issue(struct fb_bdev_io *p)
{
	struct fb_bdev *b = p->bdev;
	struct fb_io_channel *ch = p->ch;
	bool emu_wz = p->type == FB_IO_WRITE_ZEROES && (b->core_flags & CORE_EMU_WZ);
	bool data = p->type == FB_IO_READ || p->type == FB_IO_WRITE || emu_wz;

	p->split_issuing = true;
	while (!p->split_status && p->split_next < p->num_blocks &&
	       p->split_inflight < CORE_MAX_CHILDREN) {
		uint64_t n = core_child_blocks(p, data);
		struct fb_bdev_io *c = io_get(ch);
		int cnt = 0;

		if (!c)
			goto park;
		*c = (struct fb_bdev_io){.bdev = b, .ch = ch, .desc = p->desc, .type = p->type,
					 .flags = p->flags, .offset_blocks = p->offset_blocks + p->split_next,
					 .cb = core_child_done, .cb_arg = p, .parent = p,
					 .start_ns = p->start_ns};
		if (emu_wz) {
			uint64_t max = FB_ZERO_BUF_LEN / b->block_size;

			n = n < max ? n : max;
			c->type = FB_IO_WRITE;
			c->zc_iov[0].iov_base = b->e->zero_buf;
			c->zc_iov[0].iov_len = n * b->block_size;
			c->iov = c->zc_iov;
			c->iovcnt = 1;
		} else if (data) {
			size_t off = p->split_next * b->block_size;

			cnt = fb_iov_slice(p->iov, p->iovcnt, off, n * b->block_size, c->zc_iov,
					   FB_ZCOPY_IOV_MAX);
			if (cnt < 0 || (b->required_alignment &&
					!iov_aligned(c->zc_iov, cnt, b->required_alignment))) {
				uint64_t max = ((size_t)1 << FB_BUF_MAX_SHIFT) / b->block_size;

				n = n < max ? n : max;
				c->bounce_len = n * b->block_size;
				c->bounce = fb_io_channel_get_buf(ch, c->bounce_len);
				if (!c->bounce) {
					c->parent = NULL;
					fb_bdev_free_io(c);
					goto park;
				}
				if (p->type == FB_IO_WRITE)
					fb_iov_to_buf(c->bounce, p->iov, p->iovcnt, off, c->bounce_len);
				c->zc_iov[0].iov_base = c->bounce;
				c->zc_iov[0].iov_len = c->bounce_len;
				cnt = 1;
			}
			c->iov = c->zc_iov;
			c->iovcnt = cnt;
		}
		c->num_blocks = n;
		p->split_next += n;
		p->split_inflight++;
		b->fn->submit_request(ch, c);
	}
	p->split_issuing = false;
	core_parent_done(p);
	return;
park:
	/* Resumes when this channel frees an io or a buffer. */
	p->split_issuing = false;
	p->split_parked = true;
	p->wait.cb = core_resume;
	p->wait.arg = p;
	fb_io_channel_queue_wait(ch, &p->wait);
}

static void core_submit(struct fb_bdev_io *p)
{
	struct fb_bdev *b = p->bdev;

	if (p->type == FB_IO_UNMAP && (b->core_flags & CORE_EMU_UNMAP)) {
		/* Advisory, and not reported as supported: nothing to do. */
		fb_bdev_io_complete_deferred(p, 0);
		return;
	}
	p->split_next = 0;
	/* One piece that needs no bounce goes to the module as it is. */
	if (!(p->type == FB_IO_WRITE_ZEROES && (b->core_flags & CORE_EMU_WZ)) &&
	    core_child_blocks(p, p->type == FB_IO_READ || p->type == FB_IO_WRITE) == p->num_blocks &&
	    (!(b->core_flags & CORE_ALIGN) || p->type == FB_IO_UNMAP ||
	     p->type == FB_IO_WRITE_ZEROES ||
	     iov_aligned(p->iov, p->iovcnt, b->required_alignment))) {
		b->fn->submit_request(p->ch, p);
		return;
	}
	p->split_inflight = 0;
	p->split_status = 0;
	p->split_issuing = false;
	p->split_parked = false;
	core_issue(p);
}

/* ------------------------------------------------------------------ QoS */

#define QOS_SLICE_NS 1000000ull /* refill granularity and the release timer's period */
/* Tokens an idle bdev banks: enough that a late timer (a busy host wakes
 * reactors tens of ms late) loses nothing; a burst after idle is at most
 * this much of a second's budget. */
#define QOS_BURST_NS 100000000ull

static bool qos_counts(const struct fb_bdev_io *io)
{
	return io->type == FB_IO_READ || io->type == FB_IO_WRITE ||
	       (io->type == FB_IO_ZCOPY && (io->flags & FB_IO_FLAG_POPULATE));
}

/* Adds the tokens earned since last_ns; the CAS makes one reactor do it. */
static void qos_refill(struct fb_qos_bucket *k, uint64_t now)
{
	uint64_t last = atomic_load_explicit(&k->last_ns, memory_order_relaxed);
	unsigned __int128 earned;
	uint64_t used_ns;
	int64_t add, cur;

	if (now < last + QOS_SLICE_NS)
		return;
	earned = (unsigned __int128)k->rate * (now - last) / 1000000000u;
	if (earned == 0)
		return;
	/* Time is consumed only for whole tokens, so slow rates still refill. */
	used_ns = (uint64_t)(earned * 1000000000u / k->rate);
	if (!atomic_compare_exchange_strong(&k->last_ns, &last, last + used_ns))
		return; /* another reactor did it */
	add = earned > (unsigned __int128)k->cap ? k->cap : (int64_t)earned;
	cur = atomic_fetch_add(&k->avail, add) + add;
	if (cur > k->cap)
		atomic_fetch_sub(&k->avail, cur - k->cap); /* an idle bdev banks QOS_BURST_NS at most */
}

/* Takes the io's tokens from its channel's (this reactor's) buckets, which
 * draw batches from the bdev's shared buckets when they run dry: one atomic
 * per batch, not per I/O. Admitted while every limiting bucket has tokens
 * left; a large I/O borrows the rest (the debt is paid by later batches). */
static bool qos_take(struct fb_qos *q, struct fb_io_channel *ch, const struct fb_bdev_io *io,
		     uint64_t now)
{
	uint64_t bytes = io->num_blocks * io->bdev->block_size;
	int64_t need[QOS_N] = {1, (int64_t)bytes, io->type == FB_IO_WRITE ? 0 : (int64_t)bytes,
			       io->type == FB_IO_WRITE ? (int64_t)bytes : 0};
	bool ok = true;

	if (ch->qos_gen != q->gen) {
		/* New limits: tokens drawn under the old ones do not carry over. */
		memset(ch->qos_local, 0, sizeof(ch->qos_local));
		ch->qos_gen = q->gen;
	}
	for (unsigned k = 0; k < QOS_N; k++) {
		struct fb_qos_bucket *b = &q->b[k];

		if (!b->rate || !need[k] || ch->qos_local[k] > 0)
			continue;
		qos_refill(b, now);
		if (atomic_load_explicit(&b->avail, memory_order_relaxed) <= 0) {
			ok = false;
			continue;
		}
		/* A batch, or what this I/O lacks if it is bigger. */
		int64_t grab = need[k] - ch->qos_local[k] > b->batch ? need[k] - ch->qos_local[k] : b->batch;

		atomic_fetch_sub_explicit(&b->avail, grab, memory_order_relaxed);
		ch->qos_local[k] += grab;
	}
	if (!ok)
		return false;
	for (unsigned k = 0; k < QOS_N; k++)
		if (q->b[k].rate)
			ch->qos_local[k] -= need[k];
	return true;
}

static void io_dispatch(struct fb_bdev_io *io)
{
	struct fb_bdev *b = io->bdev;

	if (__builtin_expect(b->core_flags != 0, 0) && core_path(b, io->type)) {
		core_submit(io);
		return;
	}
	b->fn->submit_request(io->ch, io);
}

/* True when QoS holds io back (queued on its channel, FIFO). */
static bool qos_hold(struct fb_bdev_io *io)
{
	struct fb_io_channel *ch = io->ch;
	struct fb_qos *q = atomic_load_explicit(&io->bdev->qos, memory_order_acquire);

	if (!q || !qos_counts(io))
		return false;
	if (!ch->qos_head && qos_take(q, ch, io, fb_now_ns()))
		return false;
	io->next_free = NULL;
	if (ch->qos_tail)
		ch->qos_tail->next_free = io;
	else
		ch->qos_head = io;
	ch->qos_tail = io;
	if (!ch->qos_timer.armed)
		fb_timer_arm(ch->r, &ch->qos_timer, QOS_SLICE_NS);
	return true;
}

/* Releases what the budget allows now, in order; re-arms while any waits. */
static void qos_timer_fn(struct fb_timer *t)
{
	struct fb_io_channel *ch = (struct fb_io_channel *)(void *)((char *)t -
		offsetof(struct fb_io_channel, qos_timer));
	struct fb_qos *q = atomic_load_explicit(&ch->bdev->qos, memory_order_acquire);
	uint64_t now = fb_now_ns();

	while (ch->qos_head) {
		struct fb_bdev_io *io = ch->qos_head;

		/* Limits removed: everything goes. */
		if (q && !qos_take(q, ch, io, now))
			break;
		ch->qos_head = io->next_free;
		if (!ch->qos_head)
			ch->qos_tail = NULL;
		io_dispatch(io);
	}
	if (ch->qos_head)
		fb_timer_arm(ch->r, &ch->qos_timer, QOS_SLICE_NS);
}

static void qos_barrier_msg(void *arg)
{
	(void)arg;
}

int fb_bdev_set_qos_limits(struct fb_engine *e, const char *name,
			   const struct fb_qos_limits *limits_in, struct fb_err *err)
{
	struct fb_qos_limits l;
	struct fb_qos *q = NULL, *old;
	struct fb_bdev *b;
	uint64_t rates[QOS_N];

	if (!limits_in || limits_in->size == 0 || limits_in->size > sizeof(l)) {
		fb_err_set(err, "limits.size must be sizeof(struct fb_qos_limits)");
		return -EINVAL;
	}
	if (fb_reactor_current()) {
		fb_err_set(err, "fb_bdev_set_qos_limits called on a reactor; call it from a control thread");
		return -EDEADLK;
	}
	memset(&l, 0, sizeof(l));
	memcpy(&l, limits_in, limits_in->size);
	l.size = sizeof(l);
	rates[QOS_IOS] = l.rw_ios_per_sec;
	rates[QOS_RW_BYTES] = l.rw_mbytes_per_sec << 20;
	rates[QOS_R_BYTES] = l.r_mbytes_per_sec << 20;
	rates[QOS_W_BYTES] = l.w_mbytes_per_sec << 20;
	if (l.rw_mbytes_per_sec >> 40 || l.r_mbytes_per_sec >> 40 || l.w_mbytes_per_sec >> 40) {
		fb_err_set(err, "a MB/s limit is too large; pass at most 1099511627775 or 0 for none");
		return -EINVAL;
	}
	if (l.rw_ios_per_sec || l.rw_mbytes_per_sec || l.r_mbytes_per_sec || l.w_mbytes_per_sec) {
		uint64_t now = fb_now_ns();

		q = calloc(1, sizeof(*q));
		if (!q) {
			fb_err_set(err, "out of memory");
			return -ENOMEM;
		}
		static _Atomic uint64_t qos_gens;

		q->limits = l;
		q->gen = atomic_fetch_add(&qos_gens, 1) + 1;
		for (unsigned k = 0; k < QOS_N; k++) {
			int64_t cap = (int64_t)((unsigned __int128)rates[k] * QOS_BURST_NS / 1000000000u);

			q->b[k].rate = rates[k];
			q->b[k].cap = cap > 0 ? cap : 1;
			/* One timeslice's worth shared by the reactors: small
			 * enough that none strands much, large enough that the
			 * shared atomics are touched once per several I/Os. */
			q->b[k].batch = (int64_t)((unsigned __int128)rates[k] * QOS_SLICE_NS /
						  1000000000u / e->nreactors);
			if (q->b[k].batch < 1)
				q->b[k].batch = 1;
			/* New limits start with one timeslice, not a burst. */
			atomic_init(&q->b[k].avail, q->b[k].batch * (int64_t)e->nreactors > 0 ?
						    q->b[k].batch * (int64_t)e->nreactors : 1);
			atomic_init(&q->b[k].last_ns, now);
		}
	}
	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	if (!b) {
		pthread_mutex_unlock(&e->lock);
		free(q);
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)",
			   name ? name : "(null)");
		return -ENODEV;
	}
	old = atomic_exchange_explicit(&b->qos, q, memory_order_acq_rel);
	pthread_mutex_unlock(&e->lock);
	if (old) {
		/* Reactors read it only inside submit and the release timer: once
		 * each has run a message, none holds the old one. */
		fb_engine_run_on_all(e, qos_barrier_msg, NULL);
		free(old);
	}
	return 0;
}

/* bdev_set_qos_limit {name, rw_ios_per_sec?, rw_mbytes_per_sec?,
 * r_mbytes_per_sec?, w_mbytes_per_sec?}: SPDK's; a limit left out keeps its
 * value, 0 removes it. */
struct qos_params {
	char *name;
	uint64_t v[4]; /* UINT64_MAX: left out */
};

#define QOS_FIELD(i, n)                                                                          \
	{.name = n, .offset = offsetof(struct qos_params, v) + (i) * sizeof(uint64_t),           \
	 .type = FB_JSON_U64, .optional = true, .max = 1099511627775ull,                         \
	 .hint = "the limit per second, or 0 for none (limits left out keep their value)"}

static const struct fb_json_field qos_fields[] = {
	{.name = "name", .offset = offsetof(struct qos_params, name), .type = FB_JSON_STRING,
	 .min = 1, .max = 255,
	 .hint = "a bdev name: 1 to 255 characters, no control characters, e.g. \"Malloc0\""},
	QOS_FIELD(0, "rw_ios_per_sec"),
	QOS_FIELD(1, "rw_mbytes_per_sec"),
	QOS_FIELD(2, "r_mbytes_per_sec"),
	QOS_FIELD(3, "w_mbytes_per_sec"),
};

static void qos_params_init(void *params)
{
	struct qos_params *p = params;

	/* A value no one can pass marks "left out". */
	for (int i = 0; i < 4; i++)
		p->v[i] = UINT64_MAX;
}

static int qos_rpc_set(struct fb_engine *e, const void *params, struct fb_json_writer *w,
		       struct fb_err *err)
{
	const struct qos_params *p = params;
	struct fb_qos_limits l = {.size = sizeof(l)};
	uint64_t *dst[4] = {&l.rw_ios_per_sec, &l.rw_mbytes_per_sec, &l.r_mbytes_per_sec,
			    &l.w_mbytes_per_sec};
	struct fb_qos *cur;
	struct fb_bdev *b;
	bool any = false;
	int rc;

	pthread_mutex_lock(&e->lock);
	b = bdev_find_locked(e, p->name);
	cur = b ? atomic_load(&b->qos) : NULL;
	if (cur)
		l = cur->limits;
	pthread_mutex_unlock(&e->lock);
	if (!b) {
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)", p->name);
		return -ENODEV;
	}
	for (int i = 0; i < 4; i++) {
		if (p->v[i] != UINT64_MAX) {
			*dst[i] = p->v[i];
			any = true;
		}
	}
	if (!any) {
		fb_err_set(err, "Invalid parameters: pass at least one of rw_ios_per_sec, "
			   "rw_mbytes_per_sec, r_mbytes_per_sec, w_mbytes_per_sec. Fix: e.g. "
			   "{\"name\": \"%s\", \"rw_ios_per_sec\": 5000}.", p->name);
		return -EINVAL;
	}
	rc = fb_bdev_set_qos_limits(e, p->name, &l, err);
	if (rc == 0)
		fb_json_write_bool(w, true);
	return rc;
}

/* bdev_enable_histogram {name, enable} and bdev_get_histogram {name} ->
 * {histogram, bucket_shift, tsc_rate}: SPDK's. The histogram is the merged
 * buckets (uint64, host order, FB_HISTOGRAM_BUCKETS of them) in base64, as
 * SPDK's scripts/histogram.py reads it; ticks are ns (tsc_rate 1e9). */
struct hist_params {
	char *name;
	bool enable;
};

static const struct fb_json_field hist_enable_fields[] = {
	{.name = "name", .offset = offsetof(struct hist_params, name), .type = FB_JSON_STRING,
	 .min = 1, .max = 255,
	 .hint = "a bdev name: 1 to 255 characters, no control characters, e.g. \"Malloc0\""},
	{.name = "enable", .offset = offsetof(struct hist_params, enable), .type = FB_JSON_BOOL,
	 .hint = "true to start counting latencies (from zero), false to stop"},
};

static int hist_rpc_enable(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			   struct fb_err *err)
{
	const struct hist_params *p = params;
	int rc = fb_bdev_histogram_enable(e, p->name, p->enable);

	if (rc == -ENOENT) {
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)", p->name);
		return -ENODEV;
	}
	if (rc)
		fb_err_set(err, "cannot %s the histogram of bdev '%s': %s", p->enable ? "enable" : "disable",
			   p->name, strerror(-rc));
	else
		fb_json_write_bool(w, true);
	return rc;
}

static char *base64(const unsigned char *in, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	for (size_t i = 0; out && i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);

		*o++ = a[v >> 18 & 63];
		*o++ = a[v >> 12 & 63];
		*o++ = i + 1 < n ? a[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? a[v & 63] : '=';
	}
	if (out)
		*o = '\0';
	return out;
}

static int hist_rpc_get(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			struct fb_err *err)
{
	const struct hist_params *p = params;
	uint64_t *buckets = malloc(sizeof(uint64_t) * FB_HISTOGRAM_BUCKETS);
	char *text = NULL;
	int rc = buckets ? fb_bdev_histogram_get(e, p->name, buckets) : -ENOMEM;

	if (rc == 0 && !(text = base64((const unsigned char *)buckets, sizeof(uint64_t) * FB_HISTOGRAM_BUCKETS)))
		rc = -ENOMEM;
	if (rc == -ENOENT) {
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)", p->name);
		rc = -ENODEV;
	} else if (rc == -ENODATA) {
		fb_err_set(err, "bdev '%s' has no histogram enabled. Fix: call bdev_enable_histogram "
			   "{\"name\": \"%s\", \"enable\": true} first", p->name, p->name);
		rc = -EFAULT; /* SPDK's answer for a histogram that is off */
	} else if (rc) {
		fb_err_set(err, "cannot read the histogram of bdev '%s': %s", p->name, strerror(-rc));
	} else {
		fb_json_write_object_begin(w);
		fb_json_write_named_string(w, "histogram", text);
		fb_json_write_named_uint64(w, "bucket_shift", FB_HISTOGRAM_SHIFT);
		fb_json_write_named_uint64(w, "tsc_rate", 1000000000u);
		fb_json_write_object_end(w);
	}
	free(text);
	free(buckets);
	return rc;
}

/* flexbso_bdev_get_module_config: every module's module-wide config entries
 * (config_json), in registration order; framework_get_config puts them
 * before the bdevs' entries. */
static int module_config_rpc(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			     struct fb_err *err)
{
	(void)params;
	(void)err;
	fb_json_write_array_begin(w);
	for (unsigned i = 0; i < e->nmodules; i++)
		if (e->modules[i].c.config_json)
			e->modules[i].c.config_json(e, w);
	fb_json_write_array_end(w);
	return 0;
}

static const struct fb_rpc_method core_rpcs[] = {
	{.name = "flexbso_bdev_get_module_config", .handler = module_config_rpc},
	{.name = "bdev_set_qos_limit", .params = qos_fields,
	 .nparams = FB_JSON_FIELD_COUNT(qos_fields), .params_size = sizeof(struct qos_params),
	 .params_init = qos_params_init, .handler = qos_rpc_set},
	{.name = "bdev_enable_histogram", .params = hist_enable_fields,
	 .nparams = FB_JSON_FIELD_COUNT(hist_enable_fields), .params_size = sizeof(struct hist_params),
	 .handler = hist_rpc_enable},
	{.name = "bdev_get_histogram", .params = hist_enable_fields, .nparams = 1,
	 .params_size = sizeof(struct hist_params), .handler = hist_rpc_get},
};

const struct fb_rpc_method *fb_rpc_core_methods(void)
{
	return core_rpcs;
}

size_t fb_rpc_core_nmethods(void)
{
	return FB_JSON_FIELD_COUNT(core_rpcs);
}

static int io_submit(struct fb_bdev_desc *desc, struct fb_io_channel *ch, enum fb_io_type type,
		     struct iovec *iov, int iovcnt, uint64_t offset, uint64_t num, uint32_t flags,
		     fb_bdev_io_cb cb, void *cb_arg)
{
	struct fb_bdev *b = desc->bdev;
	struct fb_bdev_io *io;
	/* A populating zcopy only reads, so read-only descriptors may use it. */
	bool reads = type == FB_IO_READ || (type == FB_IO_ZCOPY && (flags & FB_IO_FLAG_POPULATE));

	uint64_t nb = nblocks(b);

	if (!ch || ch->bdev != b || !cb)
		return -EINVAL;
	if (atomic_load_explicit(&desc->removed, memory_order_relaxed))
		return -ENODEV;
	if (!reads && !desc->write)
		return -EBADF;
	if (num > nb || offset > nb - num)
		return -EINVAL;
	if (type == FB_IO_WRITE && b->write_unit_size > 1 &&
	    (offset % b->write_unit_size || num % b->write_unit_size))
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
	if (!((b->io_types >> type) & 1u) &&
	    !(type == FB_IO_WRITE_ZEROES && (b->core_flags & CORE_EMU_WZ)) &&
	    !(type == FB_IO_UNMAP && (b->core_flags & CORE_EMU_UNMAP)))
		return -ENOTSUP;
	io = io_get(ch);
	if (!io)
		return -ENOMEM;
	io->bdev = b;
	io->ch = ch;
	io->desc = desc;
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
	io->parent = NULL;
	if (__builtin_expect(atomic_load_explicit(&b->qos, memory_order_acquire) != NULL, 0) &&
	    qos_hold(io))
		return 0;
	io_dispatch(io);
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
struct fb_io_channel *fb_bdev_io_get_channel(struct fb_bdev_io *io) { return io->ch; }

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

static inline void stat_lat(struct fb_bdev_percore *pc, unsigned sum, unsigned max, unsigned min,
			    uint64_t v)
{
	uint64_t lo = atomic_load_explicit(&pc->stat[min], memory_order_relaxed);

	_Atomic uint64_t *h = atomic_load_explicit(&pc->hist, memory_order_acquire);

	stat_add(pc, sum, v);
	if (h) {
		unsigned k = fb_histogram_bucket(v);

		atomic_store_explicit(&h[k], atomic_load_explicit(&h[k], memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
	if (v > atomic_load_explicit(&pc->stat[max], memory_order_relaxed))
		atomic_store_explicit(&pc->stat[max], v, memory_order_relaxed);
	if (lo == 0 || v < lo)
		atomic_store_explicit(&pc->stat[min], v ? v : 1, memory_order_relaxed);
}

void fb_bdev_io_complete(struct fb_bdev_io *io, int status)
{
	struct fb_bdev *b = io->bdev;
	struct fb_bdev_percore *pc = &b->pc[io->ch->r->index];
	uint64_t bytes = io->num_blocks * b->block_size;

	if (io->type == FB_IO_ZCOPY && status == 0)
		status = zcopy_check(io, bytes);
	if (__builtin_expect(io->parent != NULL, 0)) {
		/* A core child: its parent is what the consumer sees and counts. */
		io->status = status;
		io->cb(io, status, io->cb_arg);
		return;
	}
	if (status) {
		if (io->type == FB_IO_ZCOPY)
			io->iovcnt = 0;  /* nothing lent */
		stat_add(pc, FB_STAT_ERRORS, 1);
	} else {
		switch (io->type) {
		case FB_IO_READ:
			stat_add(pc, FB_STAT_READ_OPS, 1);
			stat_add(pc, FB_STAT_BYTES_READ, bytes);
			stat_lat(pc, FB_STAT_READ_LAT, FB_STAT_READ_LAT_MAX, FB_STAT_READ_LAT_MIN,
				 fb_now_ns() - io->start_ns);
			break;
		case FB_IO_WRITE:
			stat_add(pc, FB_STAT_WRITE_OPS, 1);
			stat_add(pc, FB_STAT_BYTES_WRITTEN, bytes);
			stat_lat(pc, FB_STAT_WRITE_LAT, FB_STAT_WRITE_LAT_MAX, FB_STAT_WRITE_LAT_MIN,
				 fb_now_ns() - io->start_ns);
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
				stat_lat(pc, FB_STAT_READ_LAT, FB_STAT_READ_LAT_MAX,
					 FB_STAT_READ_LAT_MIN, fb_now_ns() - io->start_ns);
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

/* Names the descriptors that block a delete: those without an event
 * callback (claims first). */
static void bdev_holder_msg(struct fb_bdev *b, struct fb_err *err)
{
	struct fb_bdev_desc *first = NULL;
	unsigned n = 0;

	if (b->claim && !b->claim->event_cb) {
		fb_err_set(err, "bdev '%s' is claimed by %s; delete that first", b->name,
			   b->claim->holder);
		return;
	}
	for (struct fb_bdev_desc *d = b->descs; d; d = d->next) {
		if (!d->event_cb) {
			first = first ? first : d;
			n++;
		}
	}
	if (first)
		fb_err_set(err, "bdev '%s' is open by %s%s; close or remove it first", b->name,
			   first->holder, n > 1 ? " and others" : "");
}

int fb_bdev_delete(struct fb_engine *e, const char *name, struct fb_err *err)
{
	struct fb_bdev *b;
	bool blocked = false;
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
	if (b->deleting) {
		fb_err_set(err, "bdev '%s' is already being deleted", b->name);
		rc = -ENODEV;
		goto unlock;
	}
	for (struct fb_bdev_desc *d = b->descs; d; d = d->next)
		blocked = blocked || !d->event_cb;
	if (blocked) {
		bdev_holder_msg(b, err);
		rc = -EBUSY;
		goto unlock;
	}
	/* No new opens from here; openers with callbacks are told to go. */
	b->deleting = true;
	pthread_mutex_unlock(&e->lock);
	bdev_send_event(b, FB_BDEV_EVENT_REMOVE);
	pthread_mutex_lock(&e->lock);
	while (b->open_count)
		pthread_cond_wait(&e->cond, &e->lock);
	/* Unlisted, then wait for every channel to go. */
	if (b->prev)
		b->prev->next = b->next;
	else
		e->bdevs_head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		e->bdevs_tail = b->prev;
	bdev_release_channels_locked(b);
	while (atomic_load(&b->async_refs) > 0)
		pthread_cond_wait(&e->cond, &e->lock);
unlock:
	pthread_mutex_unlock(&e->lock);
	if (rc == 0) {
		if (b->fn->destruct)
			b->fn->destruct(b);
		bdev_notify(e, "bdev_unregister", b->name);
		bdev_free(b);
	}
	return rc;
}

/* The first "*_delete" method of a module, for messages. */
static const char *module_delete_method(const struct fb_bdev_module *c)
{
	for (size_t i = 0; c->rpcs && i < c->nrpcs; i++) {
		size_t n = c->rpcs[i].name ? strlen(c->rpcs[i].name) : 0;

		if (n > 7 && strcmp(c->rpcs[i].name + n - 7, "_delete") == 0)
			return c->rpcs[i].name;
	}
	return NULL;
}

int fb_bdev_delete_own(struct fb_engine *e, const char *name, const struct fb_bdev_module *m,
		       struct fb_err *err)
{
	struct fb_bdev *b;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	if (!b) {
		fb_err_set(err, "bdev '%s' does not exist (bdev_get_bdevs lists bdevs)",
			   name ? name : "(null)");
		rc = -ENODEV;
	} else if (b->module != m) {
		const char *del = module_delete_method(&b->mod->c);

		fb_err_set(err, "bdev '%s' is a %s bdev, not %s; delete it with %s%s", b->name,
			   b->mod->c.name, m->name, del ? del : "its module's delete method", "");
		rc = -ENODEV;
	}
	pthread_mutex_unlock(&e->lock);
	if (rc)
		return rc;
	rc = fb_bdev_delete(e, name, err);
	return rc == -ENOENT ? -ENODEV : rc;
}

/* Names of the bdevs to delete next, newest first: those nothing claims
 * (the tops of the stacks), or every bdev when claimed_ok. Caller frees. */
static char **bdev_names_locked(struct fb_engine *e, bool claimed_ok, size_t *n)
{
	size_t cap = 0, i = 0;
	char **names;

	for (struct fb_bdev *b = e->bdevs_head; b; b = b->next)
		cap++;
	names = calloc(cap ? cap : 1, sizeof(*names));
	for (struct fb_bdev *b = e->bdevs_tail; names && b; b = b->prev) {
		if (claimed_ok || !b->claim)
			names[i++] = strdup(b->name);
	}
	*n = i;
	return names;
}

/* Shutdown deletes the tops of the stacks first, as SPDK does: a bdev that
 * something claims (a RAID member, a compress base) goes only after its
 * claimer, whatever the creation order (a spare added to an array after the
 * array exists must not be hot-removed, and recorded as failed, first). */
void fb_bdev_delete_all(struct fb_engine *e)
{
	bool progress = true, last_pass = false;

	while (progress || !last_pass) {
		char **names;
		size_t n = 0;

		last_pass = !progress;
		progress = false;
		pthread_mutex_lock(&e->lock);
		names = bdev_names_locked(e, last_pass, &n);
		pthread_mutex_unlock(&e->lock);
		if (!names)
			return;
		for (size_t i = 0; i < n; i++) {
			struct fb_err err;
			int rc;

			if (!names[i])
				continue;
			rc = fb_bdev_delete(e, names[i], &err);
			if (rc == 0)
				progress = true;
			/* -ENOENT: gone already, with the bdev it was built on. */
			else if (rc != -ENOENT && last_pass)
				fb_log(e, FB_LOG_WARN, "engine shutdown: %s (leaked)", err.msg);
			free(names[i]);
		}
		free(names);
		if (n == 0)
			return;
	}
}

static void stats_fill(const uint64_t *s, struct fb_bdev_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->num_read_ops = s[FB_STAT_READ_OPS];
	st->num_write_ops = s[FB_STAT_WRITE_OPS];
	st->num_flush_ops = s[FB_STAT_FLUSH_OPS];
	st->num_unmap_ops = s[FB_STAT_UNMAP_OPS];
	st->num_write_zeroes_ops = s[FB_STAT_WZ_OPS];
	st->bytes_read = s[FB_STAT_BYTES_READ];
	st->bytes_written = s[FB_STAT_BYTES_WRITTEN];
	st->bytes_unmapped = s[FB_STAT_BYTES_UNMAPPED];
	st->read_latency_ns = s[FB_STAT_READ_LAT];
	st->write_latency_ns = s[FB_STAT_WRITE_LAT];
	st->io_errors = s[FB_STAT_ERRORS];
	st->read_latency_max_ns = s[FB_STAT_READ_LAT_MAX];
	st->read_latency_min_ns = s[FB_STAT_READ_LAT_MIN];
	st->write_latency_max_ns = s[FB_STAT_WRITE_LAT_MAX];
	st->write_latency_min_ns = s[FB_STAT_WRITE_LAT_MIN];
}

/* Sums (max and min combined) the per-reactor slots of b. */
static void stats_sum(struct fb_bdev *b, uint64_t *s)
{
	memset(s, 0, sizeof(uint64_t) * FB_STAT_COUNT);
	for (unsigned r = 0; r < b->e->nreactors; r++) {
		for (unsigned k = 0; k < FB_STAT_COUNT; k++) {
			uint64_t v = atomic_load_explicit(&b->pc[r].stat[k], memory_order_relaxed);

			if (k == FB_STAT_READ_LAT_MAX || k == FB_STAT_WRITE_LAT_MAX)
				s[k] = v > s[k] ? v : s[k];
			else if (k == FB_STAT_READ_LAT_MIN || k == FB_STAT_WRITE_LAT_MIN)
				s[k] = v && (!s[k] || v < s[k]) ? v : s[k];
			else
				s[k] += v;
		}
	}
}

/* Text of what fn writes (NULL when it writes nothing or fails). */
static char *bdev_json(struct fb_bdev *b, void (*fn)(struct fb_bdev *, struct fb_json_writer *),
		       bool array)
{
	struct fb_json_writer *w = fb_json_writer_new();
	char *out = NULL;
	size_t len = 0;

	if (!w)
		return NULL;
	if (array)
		fb_json_write_array_begin(w);
	else
		fb_json_write_object_begin(w);
	fn(b, w);
	if (array)
		fb_json_write_array_end(w);
	else
		fb_json_write_object_end(w);
	if (fb_json_writer_finish(w, &out, &len) != 0) {
		fb_log(b->e, FB_LOG_ERROR, "bdev '%s' (module %s) wrote invalid JSON", b->name,
		       b->mod->c.name);
		return NULL;
	}
	return out;
}

int fb_bdev_foreach(struct fb_engine *e, const char *name, fb_bdev_info_fn fn, void *arg)
{
	int rc = 0;
	bool found = false;

	pthread_mutex_lock(&e->lock);
	for (struct fb_bdev *b = e->bdevs_head; b && !rc; b = b->next) {
		struct fb_bdev_info info;
		uint64_t s[FB_STAT_COUNT];
		char *cfg = NULL, *drv = NULL;

		if (name && strcmp(name, b->name) != 0 && strcmp(name, b->uuid_str) != 0)
			continue;
		found = true;
		stats_sum(b, s);
		memset(&info, 0, sizeof(info));
		info.name = b->name;
		info.module = b->mod->c.name;
		info.block_size = b->block_size;
		info.num_blocks = nblocks(b);
		if (b->claim) {
			info.claimed_by = b->claim->claim_by ? b->claim->claim_by->name : "unknown";
			info.claim_holder = b->claim->holder;
		}
		if (b->fn->write_config_json)
			cfg = bdev_json(b, b->fn->write_config_json, true);
		if (b->fn->dump_info_json)
			drv = bdev_json(b, b->fn->dump_info_json, false);
		info.config_json = cfg;
		info.driver_json = drv;
		stats_fill(s, &info.stats);
		memcpy(info.uuid, b->uuid_str, sizeof(info.uuid));
		info.product_name = b->product_name;
		info.physical_block_size = b->physical_block_size;
		info.optimal_io_boundary = b->optimal_io_boundary;
		info.split_on_optimal_io_boundary = b->split_on_optimal_io_boundary;
		info.write_unit_size = b->write_unit_size;
		info.required_alignment = b->required_alignment;
		info.max_io_blocks = b->max_io_blocks;
		info.qos.size = sizeof(info.qos);
		if (atomic_load(&b->qos))
			info.qos = atomic_load(&b->qos)->limits;
		/* fn runs under the registry lock: it must not call control functions. */
		rc = fn(&info, arg);
		free(cfg);
		free(drv);
	}
	pthread_mutex_unlock(&e->lock);
	if (name && !found)
		rc = -ENOENT;
	return rc;
}

int fb_bdev_stats_per_reactor(struct fb_engine *e, const char *name, fb_bdev_channel_stats_fn fn,
			      void *arg)
{
	struct fb_bdev *b;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	b = name ? bdev_find_locked(e, name) : NULL;
	for (unsigned r = 0; b && !rc && r < e->nreactors; r++) {
		uint64_t s[FB_STAT_COUNT];
		struct fb_bdev_stats st;

		for (unsigned k = 0; k < FB_STAT_COUNT; k++)
			s[k] = atomic_load_explicit(&b->pc[r].stat[k], memory_order_relaxed);
		stats_fill(s, &st);
		rc = fn(r, &st, arg);
	}
	pthread_mutex_unlock(&e->lock);
	return b ? rc : -ENOENT;
}

struct stats_reset {
	struct fb_engine *e;
	const char *name;
	bool maxmin_only;
};

/* On each reactor: only the owner writes its slot, so it resets it too. */
static void stats_reset_msg(void *arg)
{
	struct stats_reset *sr = arg;
	unsigned r = fb_reactor_current()->index;

	pthread_mutex_lock(&sr->e->lock);
	for (struct fb_bdev *b = sr->e->bdevs_head; b; b = b->next) {
		if (sr->name && strcmp(sr->name, b->name) != 0 && strcmp(sr->name, b->uuid_str) != 0)
			continue;
		for (unsigned k = 0; k < FB_STAT_COUNT; k++) {
			bool mm = k == FB_STAT_READ_LAT_MAX || k == FB_STAT_READ_LAT_MIN ||
				  k == FB_STAT_WRITE_LAT_MAX || k == FB_STAT_WRITE_LAT_MIN;

			if (mm || !sr->maxmin_only)
				atomic_store_explicit(&b->pc[r].stat[k], 0, memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&sr->e->lock);
}

int fb_bdev_stats_reset(struct fb_engine *e, const char *name, bool maxmin_only)
{
	struct stats_reset sr = {.e = e, .name = name, .maxmin_only = maxmin_only};

	if (name) {
		bool found;

		pthread_mutex_lock(&e->lock);
		found = bdev_find_locked(e, name) != NULL;
		pthread_mutex_unlock(&e->lock);
		if (!found)
			return -ENOENT;
	}
	fb_engine_run_on_all(e, stats_reset_msg, &sr);
	return 0;
}

/* ------------------------------------------------------ latency histograms */

#define HIST_PER_RANGE (1u << FB_HISTOGRAM_SHIFT)

unsigned fb_histogram_bucket(uint64_t v)
{
	unsigned top;

	if (v < HIST_PER_RANGE)
		return (unsigned)v;
	top = 63u - (unsigned)__builtin_clzll(v); /* >= FB_HISTOGRAM_SHIFT */
	return (top - FB_HISTOGRAM_SHIFT + 1) * HIST_PER_RANGE +
	       (unsigned)((v >> (top - FB_HISTOGRAM_SHIFT)) & (HIST_PER_RANGE - 1));
}

uint64_t fb_histogram_bucket_start(unsigned i)
{
	unsigned range = i / HIST_PER_RANGE, j = i % HIST_PER_RANGE;

	return range == 0 ? j : (uint64_t)(HIST_PER_RANGE + j) << (range - 1);
}

/* Serializes enable/disable: a disable waits until no reactor still counts
 * into the buckets, so a following enable may zero them. */
static pthread_mutex_t hist_ctl = PTHREAD_MUTEX_INITIALIZER;

static void hist_barrier_msg(void *arg)
{
	(void)arg; /* running at all means the reactor left any completion in progress */
}

int fb_bdev_histogram_enable(struct fb_engine *e, const char *name, bool enable)
{
	struct fb_bdev *b;
	int rc = 0;

	pthread_mutex_lock(&hist_ctl);
	pthread_mutex_lock(&e->lock);
	b = bdev_find_locked(e, name);
	if (!b) {
		rc = -ENOENT;
	} else if (enable && !b->hist_on) {
		size_t n = (size_t)e->nreactors * FB_HISTOGRAM_BUCKETS;

		if (!b->hist)
			b->hist = calloc(n, sizeof(*b->hist));
		if (!b->hist) {
			rc = -ENOMEM;
		} else {
			/* No reactor counts now (off, after the barrier of the disable). */
			for (size_t k = 0; k < n; k++)
				atomic_store_explicit(&b->hist[k], 0, memory_order_relaxed);
			for (unsigned r = 0; r < e->nreactors; r++)
				atomic_store_explicit(&b->pc[r].hist, b->hist + (size_t)r * FB_HISTOGRAM_BUCKETS,
						      memory_order_release);
			b->hist_on = true;
		}
	} else if (!enable && b->hist_on) {
		for (unsigned r = 0; r < e->nreactors; r++)
			atomic_store_explicit(&b->pc[r].hist, NULL, memory_order_release);
		b->hist_on = false;
	}
	pthread_mutex_unlock(&e->lock);
	if (rc == 0 && !enable)
		fb_engine_run_on_all(e, hist_barrier_msg, NULL);
	pthread_mutex_unlock(&hist_ctl);
	return rc;
}

int fb_bdev_histogram_get(struct fb_engine *e, const char *name, uint64_t *buckets)
{
	struct fb_bdev *b;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	b = bdev_find_locked(e, name);
	if (!b) {
		rc = -ENOENT;
	} else if (!b->hist_on) {
		rc = -ENODATA;
	} else {
		memset(buckets, 0, sizeof(uint64_t) * FB_HISTOGRAM_BUCKETS);
		for (unsigned r = 0; r < e->nreactors; r++) {
			const _Atomic uint64_t *h = b->hist + (size_t)r * FB_HISTOGRAM_BUCKETS;

			for (unsigned k = 0; k < FB_HISTOGRAM_BUCKETS; k++)
				buckets[k] += atomic_load_explicit(&h[k], memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* ------------------------------------------------------ for each channel */

struct chan_iter {
	struct fb_bdev *b;
	fb_channel_iter_fn fn;
	void *arg;
	fb_channel_iter_done_fn done;
	struct fb_reactor *origin;
	unsigned i;
};

static void chan_iter_one(struct chan_iter *it)
{
	struct fb_io_channel *ch = it->b->pc[fb_reactor_current()->index].ch;

	if (ch)
		it->fn(ch, ch->ctx, it->arg);
}

static void chan_iter_sync_msg(void *arg)
{
	chan_iter_one(arg);
}

static void chan_iter_done_msg(void *arg)
{
	struct chan_iter *it = arg;
	struct fb_bdev *b = it->b;

	if (it->done)
		it->done(it->arg, 0);
	free(it);
	bdev_async_unref(b);
}

static void chan_iter_step_msg(void *arg)
{
	struct chan_iter *it = arg;
	struct fb_engine *e = it->b->e;

	chan_iter_one(it);
	if (++it->i < e->nreactors)
		fb_reactor_send(&e->reactors[it->i], chan_iter_step_msg, it);
	else
		fb_reactor_send(it->origin, chan_iter_done_msg, it);
}

int fb_bdev_for_each_channel(struct fb_bdev *bdev, fb_channel_iter_fn fn, void *arg,
			     fb_channel_iter_done_fn done)
{
	struct fb_reactor *cur = fb_reactor_current();
	struct chan_iter *it;

	if (!cur) {
		struct chan_iter sync = {.b = bdev, .fn = fn, .arg = arg};

		for (unsigned i = 0; i < bdev->e->nreactors; i++)
			fb_reactor_run_sync(&bdev->e->reactors[i], chan_iter_sync_msg, &sync);
		if (done)
			done(arg, 0);
		return 0;
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	*it = (struct chan_iter){.b = bdev, .fn = fn, .arg = arg, .done = done, .origin = cur};
	bdev_async_ref(bdev); /* the bdev outlives the walk */
	fb_reactor_send(&bdev->e->reactors[0], chan_iter_step_msg, it);
	return 0;
}

/* ------------------------------------------------------- control-path I/O */

struct io_sync {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	enum fb_io_type type;
	struct iovec iov;
	uint64_t off, num;
	uint32_t flags;
	int rc;
	sem_t done;
	struct fb_io_wait_entry wait;
};

static void io_sync_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct io_sync *s = arg;

	fb_bdev_free_io(io);
	fb_put_io_channel(s->ch);
	s->rc = status;
	sem_post(&s->done);
}

static void io_sync_submit(void *arg)
{
	struct io_sync *s = arg;
	int rc;

	switch (s->type) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(s->desc, s->ch, &s->iov, 1, s->off, s->num, io_sync_done, s);
		break;
	case FB_IO_WRITE:
		rc = fb_bdev_writev_blocks(s->desc, s->ch, &s->iov, 1, s->off, s->num, s->flags,
					   io_sync_done, s);
		break;
	case FB_IO_FLUSH:
		rc = fb_bdev_flush_blocks(s->desc, s->ch, s->off, s->num, io_sync_done, s);
		break;
	case FB_IO_UNMAP:
		rc = fb_bdev_unmap_blocks(s->desc, s->ch, s->off, s->num, io_sync_done, s);
		break;
	case FB_IO_WRITE_ZEROES:
		rc = fb_bdev_write_zeroes_blocks(s->desc, s->ch, s->off, s->num, s->flags,
						 io_sync_done, s);
		break;
	default:
		rc = -EINVAL;
	}
	if (rc == -ENOMEM) {
		s->wait.cb = io_sync_submit;
		s->wait.arg = s;
		fb_io_channel_queue_wait(s->ch, &s->wait);
	} else if (rc) {
		fb_put_io_channel(s->ch);
		s->rc = rc;
		sem_post(&s->done);
	}
}

static void io_sync_msg(void *arg)
{
	struct io_sync *s = arg;

	s->ch = fb_bdev_get_io_channel(s->desc);
	if (!s->ch) {
		s->rc = -ENOMEM;
		sem_post(&s->done);
		return;
	}
	io_sync_submit(s);
}

int fb_bdev_io_sync(struct fb_bdev_desc *desc, enum fb_io_type type, void *buf,
		    uint64_t offset_blocks, uint64_t num_blocks, uint32_t flags)
{
	struct fb_bdev *b = desc->bdev;
	struct io_sync s;
	void *bounce = NULL;
	size_t len = 0;

	if (fb_reactor_current())
		return -EDEADLK;
	memset(&s, 0, sizeof(s));
	if (type == FB_IO_READ || type == FB_IO_WRITE) {
		if (!buf || num_blocks == 0 || num_blocks > SIZE_MAX / b->block_size)
			return -EINVAL;
		len = num_blocks * b->block_size;
		/* Any alignment the caller has is fine: the I/O uses an aligned copy. */
		if (posix_memalign(&bounce, 4096, len) != 0)
			return -ENOMEM;
		if (type == FB_IO_WRITE)
			memcpy(bounce, buf, len);
		s.iov.iov_base = bounce;
		s.iov.iov_len = len;
	} else if (type != FB_IO_FLUSH && type != FB_IO_UNMAP && type != FB_IO_WRITE_ZEROES) {
		return -EINVAL;
	}
	s.desc = desc;
	s.type = type;
	s.off = offset_blocks;
	s.num = num_blocks;
	s.flags = flags;
	sem_init(&s.done, 0, 0);
	/* The reactor the caller's thread maps to would do as well; the first
	 * one keeps metadata I/O in one place. */
	fb_reactor_send(&b->e->reactors[0], io_sync_msg, &s);
	while (sem_wait(&s.done) != 0)
		;
	sem_destroy(&s.done);
	if (s.rc == 0 && type == FB_IO_READ)
		memcpy(buf, bounce, len);
	free(bounce);
	return s.rc;
}

/* ------------------------------------------------------------ iovec helpers */

size_t fb_iov_length(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Finds the entry holding byte `off`: index and offset inside it. */
static int iov_seek(const struct iovec *iov, int iovcnt, size_t off, size_t *in)
{
	int i = 0;

	while (i < iovcnt && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	*in = off;
	return i;
}

size_t fb_iov_copy(const struct iovec *dst, int dstcnt, size_t dst_off,
		   const struct iovec *src, int srccnt, size_t src_off, size_t len)
{
	size_t din, sin, done = 0;
	int di = iov_seek(dst, dstcnt, dst_off, &din);
	int si = iov_seek(src, srccnt, src_off, &sin);

	while (done < len && di < dstcnt && si < srccnt) {
		size_t n = len - done;

		if (n > dst[di].iov_len - din)
			n = dst[di].iov_len - din;
		if (n > src[si].iov_len - sin)
			n = src[si].iov_len - sin;
		if (n)
			memmove((char *)dst[di].iov_base + din, (const char *)src[si].iov_base + sin, n);
		done += n;
		din += n;
		sin += n;
		if (din == dst[di].iov_len) {
			di++;
			din = 0;
		}
		if (sin == src[si].iov_len) {
			si++;
			sin = 0;
		}
	}
	return done;
}

size_t fb_iov_to_buf(void *buf, const struct iovec *iov, int iovcnt, size_t off, size_t len)
{
	struct iovec d = {.iov_base = buf, .iov_len = len};

	return fb_iov_copy(&d, 1, 0, iov, iovcnt, off, len);
}

size_t fb_iov_from_buf(const struct iovec *iov, int iovcnt, size_t off, const void *buf,
		       size_t len)
{
	struct iovec s = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};

	return fb_iov_copy(iov, iovcnt, off, &s, 1, 0, len);
}

void fb_iov_memset(const struct iovec *iov, int iovcnt, size_t off, int c, size_t len)
{
	size_t in;
	int i = iov_seek(iov, iovcnt, off, &in);

	for (; len && i < iovcnt; i++, in = 0) {
		size_t n = iov[i].iov_len - in < len ? iov[i].iov_len - in : len;

		memset((char *)iov[i].iov_base + in, c, n);
		len -= n;
	}
}

int fb_iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
		 struct iovec *out, int max)
{
	size_t in;
	int i, n = 0;

	if (off > fb_iov_length(iov, iovcnt) || len > fb_iov_length(iov, iovcnt) - off)
		return -EINVAL;
	i = iov_seek(iov, iovcnt, off, &in);
	while (len) {
		size_t take = iov[i].iov_len - in < len ? iov[i].iov_len - in : len;

		if (take) {
			if (n == max)
				return -ENOSPC;
			out[n].iov_base = (char *)iov[i].iov_base + in;
			out[n].iov_len = take;
			n++;
		}
		len -= take;
		i++;
		in = 0;
	}
	return n;
}
