/* error bdev "EE_<base>": passes I/O to its base, except where an injection
 * matches: fail it (-EIO), corrupt the data a read returns (one flipped bit
 * per block), or drop a write (acknowledged, never stored).
 *
 * The injection table is immutable once published: control threads build a
 * new one, swap the pointer, wait for every reactor to pass a loop iteration
 * (fb_engine_run_on_all), then free the old one. Reactors read it only
 * inside submit, so the I/O path takes no lock. The table holds pointers:
 * an injection that survives a swap is the same object in the old and the
 * new table, so its count (a shared atomic, touched only by I/Os that match)
 * loses no unit taken through the old table during the swap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"

struct injection {
	uint32_t io_mask;
	enum fb_error_kind kind;
	uint64_t count;              /* 0 = unlimited */
	_Atomic uint64_t remaining;
	uint64_t offset_blocks, end_blocks;
};

struct inj_table {
	unsigned n;
	struct injection *inj[];
};

static void inj_table_free_all(struct inj_table *t)
{
	for (unsigned i = 0; t && i < t->n; i++)
		free(t->inj[i]);
	free(t);
}

struct error_bdev {
	struct fb_engine *e;
	char *base_name;
	struct fb_bdev_desc *base;
	_Atomic(struct inj_table *) table;
	pthread_mutex_t mu;            /* serializes table writers */
};

struct error_channel {
	struct fb_io_channel *base_ch;
};

struct error_io {
	struct fb_deferred retry;      /* first: recovered from the deferred node */
	struct fb_bdev_io *upper;
	struct fb_io_channel *ch;
	enum fb_error_kind action;
};

static const struct fb_bdev_module error_module = {
	.name = "error",
	.create_method = "bdev_error_create",
	.io_ctx_size = sizeof(struct error_io),
	.channel_ctx_size = sizeof(struct error_channel),
};

static const char *kind_name(enum fb_error_kind k)
{
	switch (k) {
	case FB_ERR_FAILURE: return "failure";
	case FB_ERR_CORRUPT_DATA: return "corrupt_data";
	case FB_ERR_DROP_WRITE: return "drop_write";
	default: return "none";
	}
}

static void error_destruct(struct fb_bdev *bdev)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);

	fb_bdev_close(eb->base);
	inj_table_free_all(atomic_load(&eb->table));
	pthread_mutex_destroy(&eb->mu);
	free(eb->base_name);
	free(eb);
}

static bool error_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);

	/* No zcopy: lent memory would bypass injection (corrupt data, failures). */
	if (type == FB_IO_ZCOPY)
		return false;
	return fb_bdev_io_type_supported(fb_bdev_desc_get_bdev(eb->base), type);
}

static int error_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);
	struct error_channel *ec = ctx;

	ec->base_ch = fb_bdev_get_io_channel(eb->base);
	return ec->base_ch ? 0 : -ENOMEM;
}

static void error_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct error_channel *ec = ctx;

	(void)bdev;
	fb_put_io_channel(ec->base_ch);
}

/* Claims one unit of an injection's count; false when it is used up. */
static bool injection_take(struct injection *inj)
{
	uint64_t r;

	if (inj->count == 0)
		return true;
	r = atomic_load_explicit(&inj->remaining, memory_order_relaxed);
	while (r > 0) {
		if (atomic_compare_exchange_weak_explicit(&inj->remaining, &r, r - 1,
							  memory_order_relaxed, memory_order_relaxed))
			return true;
	}
	return false;
}

static enum fb_error_kind injection_match(struct error_bdev *eb, struct fb_bdev_io *io)
{
	struct inj_table *t = atomic_load_explicit(&eb->table, memory_order_acquire);
	enum fb_io_type type = fb_bdev_io_get_type(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io);
	uint64_t end = off + (fb_bdev_io_get_num_blocks(io) ? fb_bdev_io_get_num_blocks(io) : 1);

	if (!t)
		return FB_ERR_NONE;
	for (unsigned i = 0; i < t->n; i++) {
		struct injection *inj = t->inj[i];

		if (!(inj->io_mask & (1u << type)))
			continue;
		if (end <= inj->offset_blocks || off >= inj->end_blocks)
			continue;
		/* An injection that cannot act on this type does not use a count. */
		if (inj->kind == FB_ERR_CORRUPT_DATA && type != FB_IO_READ)
			continue;
		if (inj->kind == FB_ERR_DROP_WRITE && type != FB_IO_WRITE &&
		    type != FB_IO_WRITE_ZEROES && type != FB_IO_UNMAP)
			continue;
		if (injection_take(inj))
			return inj->kind;
	}
	return FB_ERR_NONE;
}

static void corrupt_blocks(struct fb_bdev_io *io)
{
	uint64_t bs = fb_bdev_get_block_size(fb_bdev_io_get_bdev(io));
	uint64_t nblocks = fb_bdev_io_get_num_blocks(io), blk = 0, pos = 0;
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);

	/* Flip the lowest bit of the first byte of every block. */
	for (int i = 0; i < iovcnt && blk < nblocks; i++) {
		while (blk < nblocks && blk * bs < pos + iov[i].iov_len) {
			((unsigned char *)iov[i].iov_base)[blk * bs - pos] ^= 1u;
			blk++;
		}
		pos += iov[i].iov_len;
	}
}

static void error_base_done(struct fb_bdev_io *base_io, int status, void *arg)
{
	struct fb_bdev_io *io = arg;
	struct error_io *eio = fb_bdev_io_get_driver_ctx(io);

	fb_bdev_free_io(base_io);
	if (status == 0 && eio->action == FB_ERR_CORRUPT_DATA)
		corrupt_blocks(io);
	fb_bdev_io_complete(io, status);
}

/* Passes the I/O to the base; -ENOMEM is retried on a later loop iteration
 * instead of failing the I/O. */
static void error_pass(struct error_io *eio)
{
	struct fb_bdev_io *io = eio->upper;
	struct error_bdev *eb = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct error_channel *ec = fb_io_channel_get_ctx(eio->ch);
	uint64_t off = fb_bdev_io_get_offset_blocks(io), num = fb_bdev_io_get_num_blocks(io);
	uint32_t flags = fb_bdev_io_get_flags(io);
	struct iovec *iov;
	int iovcnt, rc;

	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
		rc = fb_bdev_readv_blocks(eb->base, ec->base_ch, iov, iovcnt, off, num, error_base_done, io);
		break;
	case FB_IO_WRITE:
		rc = fb_bdev_writev_blocks(eb->base, ec->base_ch, iov, iovcnt, off, num, flags,
					   error_base_done, io);
		break;
	case FB_IO_FLUSH:
		rc = fb_bdev_flush_blocks(eb->base, ec->base_ch, off, num, error_base_done, io);
		break;
	case FB_IO_UNMAP:
		rc = fb_bdev_unmap_blocks(eb->base, ec->base_ch, off, num, error_base_done, io);
		break;
	default:
		rc = fb_bdev_write_zeroes_blocks(eb->base, ec->base_ch, off, num, flags,
						 error_base_done, io);
		break;
	}
	if (rc == -ENOMEM)
		fb_reactor_defer(fb_io_channel_get_reactor(eio->ch), &eio->retry);
	else if (rc)
		fb_bdev_io_complete_deferred(io, rc);
}

static void error_retry(struct fb_deferred *d)
{
	error_pass((struct error_io *)(void *)d);
}

static void error_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct error_io *eio = fb_bdev_io_get_driver_ctx(io);

	eio->upper = io;
	eio->ch = ch;
	eio->retry.fn = error_retry;
	eio->action = injection_match(eb, io);
	if (eio->action == FB_ERR_FAILURE) {
		fb_bdev_io_complete_deferred(io, -EIO);
		return;
	}
	if (eio->action == FB_ERR_DROP_WRITE) {
		fb_bdev_io_complete_deferred(io, 0);
		return;
	}
	error_pass(eio);
}

static int error_dump_config(struct fb_bdev *bdev, struct fb_strbuf *sb)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);
	int rc = fb_strbuf_printf(sb, "{\"base_name\":");

	if (!rc)
		rc = fb_strbuf_json_str(sb, eb->base_name);
	if (!rc)
		rc = fb_strbuf_printf(sb, "}");
	return rc;
}

static int error_dump_info(struct fb_bdev *bdev, struct fb_strbuf *sb)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);
	struct inj_table *t;
	int rc = fb_strbuf_printf(sb, "{\"base_bdev\":");

	if (!rc)
		rc = fb_strbuf_json_str(sb, eb->base_name);
	if (!rc)
		rc = fb_strbuf_printf(sb, ",\"injections\":[");
	pthread_mutex_lock(&eb->mu);
	t = atomic_load(&eb->table);
	for (unsigned i = 0; !rc && t && i < t->n; i++) {
		struct injection *inj = t->inj[i];

		rc = fb_strbuf_printf(sb, "%s{\"io_mask\":%u,\"error_type\":\"%s\",\"num\":%llu,"
				      "\"remaining\":%llu,\"offset_blocks\":%llu,\"end_blocks\":%llu}",
				      i ? "," : "", inj->io_mask, kind_name(inj->kind),
				      (unsigned long long)inj->count,
				      (unsigned long long)atomic_load(&inj->remaining),
				      (unsigned long long)inj->offset_blocks,
				      (unsigned long long)inj->end_blocks);
	}
	pthread_mutex_unlock(&eb->mu);
	if (!rc)
		rc = fb_strbuf_printf(sb, "]}");
	return rc;
}

static const struct fb_bdev_fn_table error_fn = {
	.destruct = error_destruct,
	.submit_request = error_submit,
	.io_type_supported = error_io_type_supported,
	.channel_create = error_channel_create,
	.channel_destroy = error_channel_destroy,
	.dump_config_json = error_dump_config,
	.dump_info_json = error_dump_info,
};

int fb_bdev_error_create(struct fb_engine *e, const char *base_name, struct fb_err *err)
{
	struct error_bdev *eb = NULL;
	struct fb_bdev_desc_params p;
	struct fb_bdev *base;
	char name[300], holder[320];
	int rc = 0;

	if (!base_name || !*base_name || strlen(base_name) > 250) {
		fb_err_set(err, "base_name must name an existing bdev");
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "EE_%s", base_name);
	snprintf(holder, sizeof(holder), "error bdev '%s'", name);
	eb = calloc(1, sizeof(*eb));
	if (!eb) {
		fb_err_set(err, "out of memory creating error bdev '%s'", name);
		return -ENOMEM;
	}
	eb->e = e;
	pthread_mutex_init(&eb->mu, NULL);
	atomic_init(&eb->table, NULL);
	eb->base_name = strdup(base_name);
	if (!eb->base_name) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fb_bdev_open_ext(e, base_name, true, holder, &eb->base, err);
	if (rc)
		goto out;
	rc = fb_bdev_claim(eb->base, &error_module, err);
	if (rc)
		goto out;
	base = fb_bdev_desc_get_bdev(eb->base);
	memset(&p, 0, sizeof(p));
	p.name = name;
	p.block_size = fb_bdev_get_block_size(base);
	p.num_blocks = fb_bdev_get_num_blocks(base);
	p.module = &error_module;
	p.fn = &error_fn;
	p.module_ctx = eb;
	rc = fb_bdev_register(e, &p, NULL, err);
	if (rc == 0)
		eb = NULL;
out:
	if (eb) {
		fb_bdev_close(eb->base);
		pthread_mutex_destroy(&eb->mu);
		free(eb->base_name);
		free(eb);
	}
	return rc;
}

static void barrier_msg(void *arg)
{
	(void)arg;
}

int fb_bdev_error_inject(struct fb_engine *e, const char *name,
			 const struct fb_error_injection *inj, struct fb_err *err)
{
	struct fb_bdev_desc *desc = NULL;
	struct error_bdev *eb;
	struct inj_table *old, *nt = NULL;
	struct injection *added = NULL, **gone = NULL;
	struct fb_bdev *bdev;
	uint32_t mask;
	unsigned n = 0, ngone = 0;
	int rc;

	if (!inj || inj->size < sizeof(*inj)) {
		fb_err_set(err, "injection.size must be sizeof(struct fb_error_injection)");
		return -EINVAL;
	}
	if ((unsigned)inj->kind > FB_ERR_DROP_WRITE) {
		fb_err_set(err, "error_type %d is unknown; use failure, corrupt_data or drop_write",
			   (int)inj->kind);
		return -EINVAL;
	}
	mask = inj->io_mask ? inj->io_mask : (1u << FB_IO_TYPE_COUNT) - 1;
	if (mask & ~((1u << FB_IO_TYPE_COUNT) - 1)) {
		fb_err_set(err, "io_type mask 0x%x has unknown bits", inj->io_mask);
		return -EINVAL;
	}
	/* Accept the error bdev's name or its base's ("M0" -> "EE_M0"). */
	rc = fb_bdev_open_ext(e, name, false, "error injection", &desc, err);
	if (rc == 0 && fb_bdev_get_module(fb_bdev_desc_get_bdev(desc)) != &error_module) {
		struct fb_bdev_desc *ee = NULL;
		char ee_name[300];

		snprintf(ee_name, sizeof(ee_name), "EE_%s", name);
		if (fb_bdev_open_ext(e, ee_name, false, "error injection", &ee, NULL) == 0) {
			fb_bdev_close(desc);
			desc = ee;
		}
	}
	if (rc)
		return rc;
	bdev = fb_bdev_desc_get_bdev(desc);
	if (fb_bdev_get_module(bdev) != &error_module) {
		fb_err_set(err, "bdev '%s' is not an error bdev; create one with bdev_error_create "
			   "{base_name: \"%s\"} and inject into EE_%s", fb_bdev_get_name(bdev),
			   fb_bdev_get_name(bdev), fb_bdev_get_name(bdev));
		rc = -EINVAL;
		goto out;
	}
	if (inj->kind != FB_ERR_NONE && inj->offset_blocks >= fb_bdev_get_num_blocks(bdev)) {
		fb_err_set(err, "offset_blocks %llu is past the end of '%s' (%llu blocks)",
			   (unsigned long long)inj->offset_blocks, fb_bdev_get_name(bdev),
			   (unsigned long long)fb_bdev_get_num_blocks(bdev));
		rc = -EINVAL;
		goto out;
	}
	eb = fb_bdev_get_module_ctx(bdev);
	pthread_mutex_lock(&eb->mu);
	old = atomic_load(&eb->table);
	nt = malloc(sizeof(*nt) + sizeof(nt->inj[0]) * ((old ? old->n : 0) + 1));
	gone = malloc(sizeof(*gone) * ((old ? old->n : 0) + 1));
	if (inj->kind != FB_ERR_NONE)
		added = malloc(sizeof(*added));
	if (!nt || !gone || (inj->kind != FB_ERR_NONE && !added)) {
		pthread_mutex_unlock(&eb->mu);
		free(nt);
		free(gone);
		free(added);
		fb_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	/* Surviving injections are shared with the old table, not copied: a
	 * count taken through the old table until the swap stays taken. */
	for (unsigned i = 0; old && i < old->n; i++) {
		if (inj->kind == FB_ERR_NONE && (old->inj[i]->io_mask & mask))
			gone[ngone++] = old->inj[i]; /* cleared: freed after the barrier */
		else
			nt->inj[n++] = old->inj[i];
	}
	if (added) {
		uint64_t nb = fb_bdev_get_num_blocks(bdev);
		uint64_t end = inj->num_blocks == 0 || inj->num_blocks > nb - inj->offset_blocks ?
				       nb : inj->offset_blocks + inj->num_blocks;

		*added = (struct injection){.io_mask = mask, .kind = inj->kind, .count = inj->count,
					    .offset_blocks = inj->offset_blocks, .end_blocks = end};
		atomic_init(&added->remaining, inj->count);
		nt->inj[n++] = added;
	}
	nt->n = n;
	atomic_store_explicit(&eb->table, nt, memory_order_release);
	/* Unlock before waiting on reactors: a reactor may be waiting for the
	 * registry lock held by a dump that waits for mu. Dumps read the table
	 * under mu, so after the unlock only reactors can still see `old`, and
	 * after every reactor has finished an iteration none can (it is read
	 * only within submit). */
	pthread_mutex_unlock(&eb->mu);
	fb_engine_run_on_all(e, barrier_msg, NULL);
	/* Only old's array and the injections cleared here were unreachable
	 * from the new table (another injector may have replaced nt already,
	 * so nt is not ours to read any more). */
	for (unsigned i = 0; i < ngone; i++)
		free(gone[i]);
	free(gone);
	free(old);
out:
	fb_bdev_close(desc);
	return rc;
}
