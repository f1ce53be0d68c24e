/* error bdev "EE_<base>": passes I/O to its base, except where an injection
 * matches (SPDK's kinds and then some):
 *   failure       complete it with -EIO;
 *   corrupt_data  XOR corrupt_value into one byte: of the data a read
 *                 returns, or of the data a write stores (SPDK's: it is the
 *                 caller's buffer). The byte is corrupt_offset bytes into
 *                 the I/O's data, counted (our LBA-range extension) from
 *                 the first block of the injected range the I/O covers, so
 *                 a range of one block names that block; with no range
 *                 this is SPDK's "from the start of the I/O";
 *   pending       hold it, never completed, until its injection is cleared
 *                 or the error bdev is deleted: then it fails with
 *                 -ECANCELED (SPDK holds it until a reset aborts it);
 *   nomem         the I/O meets a resource shortage: it waits on the
 *                 channel's -ENOMEM queue and is submitted again (each
 *                 retry matches again), as SPDK's bdev layer retries a
 *                 NOMEM completion: the caller sees no error;
 *   drop_write    acknowledge a write, store nothing.
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
#include "spdk_params.h"

enum fb_error_kind {
	FB_ERR_NONE = 0,     /* clear injections matching io_mask */
	FB_ERR_FAILURE,      /* complete the I/O with -EIO */
	FB_ERR_CORRUPT_DATA, /* reads and writes: corrupt_value XORed in at corrupt_offset */
	FB_ERR_DROP_WRITE,   /* writes: acknowledge success, store nothing */
	FB_ERR_PENDING,      /* held until cleared or deleted, then -ECANCELED */
	FB_ERR_NOMEM,        /* waits on the -ENOMEM queue, then submitted again */
};

struct fb_error_injection {
	uint32_t io_mask;        /* bit (1u << enum fb_io_type); 0 = all types */
	enum fb_error_kind kind;
	uint64_t count;          /* number of I/Os to affect; 0 = unlimited */
	uint64_t offset_blocks;  /* affected LBA range (intersecting I/Os match) */
	uint64_t num_blocks;     /* 0 = to the end of the bdev */
	uint64_t corrupt_offset; /* byte from the first covered block of the range */
	uint8_t corrupt_value;   /* XORed in; nonzero for corrupt_data */
};

struct injection {
	uint32_t io_mask;
	enum fb_error_kind kind;
	uint64_t corrupt_offset;
	uint8_t corrupt_value;
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
	_Atomic uint64_t held;         /* pending I/Os held on every channel */
};

struct error_io;

struct error_channel {
	struct fb_io_channel *base_ch;
	struct error_io *held;         /* pending: held I/Os of this channel */
};

struct error_io {
	struct fb_io_wait_entry wait;  /* retry after -ENOMEM (the base's or nomem's) */
	struct fb_bdev_io *upper;
	struct fb_io_channel *ch;
	struct error_io *held_next;
	enum fb_error_kind action;
	uint32_t held_mask;            /* io type bit of a held I/O */
	uint64_t corrupt_at;           /* byte of the I/O's data */
	uint8_t corrupt_value;
};

static struct fb_bdev_module error_module;

static const char *kind_name(enum fb_error_kind k)
{
	switch (k) {
	case FB_ERR_FAILURE: return "failure";
	case FB_ERR_CORRUPT_DATA: return "corrupt_data";
	case FB_ERR_DROP_WRITE: return "drop_write";
	case FB_ERR_PENDING: return "pending";
	case FB_ERR_NOMEM: return "nomem";
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

static const struct injection *injection_match(struct error_bdev *eb, struct fb_bdev_io *io)
{
	struct inj_table *t = atomic_load_explicit(&eb->table, memory_order_acquire);
	enum fb_io_type type = fb_bdev_io_get_type(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io);
	uint64_t end = off + (fb_bdev_io_get_num_blocks(io) ? fb_bdev_io_get_num_blocks(io) : 1);

	if (!t)
		return NULL;
	for (unsigned i = 0; i < t->n; i++) {
		struct injection *inj = t->inj[i];

		if (!(inj->io_mask & (1u << type)))
			continue;
		if (end <= inj->offset_blocks || off >= inj->end_blocks)
			continue;
		/* An injection that cannot act on this type does not use a count. */
		if (inj->kind == FB_ERR_CORRUPT_DATA && type != FB_IO_READ && type != FB_IO_WRITE)
			continue;
		if (inj->kind == FB_ERR_DROP_WRITE && type != FB_IO_WRITE &&
		    type != FB_IO_WRITE_ZEROES && type != FB_IO_UNMAP)
			continue;
		if (injection_take(inj))
			return inj;
	}
	return NULL;
}

static void corrupt_byte(struct fb_bdev_io *io, const struct error_io *eio)
{
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);
	unsigned char b;

	/* Past the end of the I/O's data: nothing to corrupt (SPDK's too). */
	if (fb_iov_to_buf(&b, iov, iovcnt, eio->corrupt_at, 1) == 1) {
		b ^= eio->corrupt_value;
		fb_iov_from_buf(iov, iovcnt, eio->corrupt_at, &b, 1);
	}
}

static void error_base_done(struct fb_bdev_io *base_io, int status, void *arg)
{
	struct fb_bdev_io *io = arg;
	struct error_io *eio = fb_bdev_io_get_driver_ctx(io);

	fb_bdev_free_io(base_io);
	if (status == 0 && eio->action == FB_ERR_CORRUPT_DATA &&
	    fb_bdev_io_get_type(io) == FB_IO_READ)
		corrupt_byte(io, eio);
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
		fb_io_channel_queue_wait(ec->base_ch, &eio->wait); /* resumes when the base frees an io */
	else if (rc)
		fb_bdev_io_complete_deferred(io, rc);
}

static void error_retry(void *arg)
{
	error_pass(arg);
}

static void error_submit(struct fb_io_channel *ch, struct fb_bdev_io *io);

static void error_resubmit(void *arg)
{
	struct error_io *eio = arg;

	error_submit(eio->ch, eio->upper);
}

static void error_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct error_channel *ec = fb_io_channel_get_ctx(ch);
	struct error_io *eio = fb_bdev_io_get_driver_ctx(io);
	const struct injection *inj = injection_match(eb, io);

	eio->upper = io;
	eio->ch = ch;
	eio->wait.cb = error_retry;
	eio->wait.arg = eio;
	eio->action = inj ? inj->kind : FB_ERR_NONE;
	switch (eio->action) {
	case FB_ERR_FAILURE:
		fb_bdev_io_complete_deferred(io, -EIO);
		return;
	case FB_ERR_DROP_WRITE:
		fb_bdev_io_complete_deferred(io, 0);
		return;
	case FB_ERR_PENDING:
		eio->held_mask = 1u << fb_bdev_io_get_type(io);
		eio->held_next = ec->held;
		ec->held = eio;
		atomic_fetch_add(&eb->held, 1);
		return;
	case FB_ERR_NOMEM:
		eio->wait.cb = error_resubmit;
		fb_io_channel_queue_wait(ch, &eio->wait);
		return;
	case FB_ERR_CORRUPT_DATA: {
		uint64_t off = fb_bdev_io_get_offset_blocks(io);
		uint64_t first = off > inj->offset_blocks ? off : inj->offset_blocks;

		eio->corrupt_at = (first - off) * fb_bdev_get_block_size(fb_bdev_io_get_bdev(io)) +
				  inj->corrupt_offset;
		eio->corrupt_value = inj->corrupt_value;
		if (fb_bdev_io_get_type(io) == FB_IO_WRITE)
			corrupt_byte(io, eio);
		break;
	}
	default:
		break;
	}
	error_pass(eio);
}

/* Fails the held I/Os of the io types in *mask on one channel. */
static void release_held(struct fb_io_channel *ch, void *ch_ctx, void *arg)
{
	struct error_channel *ec = ch_ctx;
	uint32_t mask = *(const uint32_t *)arg;
	struct error_io **pp = &ec->held;

	(void)ch;
	while (*pp) {
		struct error_io *eio = *pp;
		struct error_bdev *eb = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(eio->upper));

		if (!(eio->held_mask & mask)) {
			pp = &eio->held_next;
			continue;
		}
		*pp = eio->held_next;
		atomic_fetch_sub(&eb->held, 1);
		fb_bdev_io_complete_deferred(eio->upper, -ECANCELED);
	}
}

static void error_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);
	struct fb_uuid u;
	char us[FB_UUID_STR_LEN];

	fb_bdev_get_uuid(bdev, &u);
	fb_uuid_fmt(&u, us);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_error_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "base_name", eb->base_name);
	fb_json_write_named_string(w, "uuid", us);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

static void error_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct error_bdev *eb = fb_bdev_get_module_ctx(bdev);
	struct inj_table *t;

	fb_json_write_named_object_begin(w, "error_disk");
	fb_json_write_named_string(w, "base_bdev", eb->base_name);
	fb_json_write_named_uint64(w, "pending_ios", atomic_load(&eb->held));
	fb_json_write_named_array_begin(w, "injections");
	pthread_mutex_lock(&eb->mu);
	t = atomic_load(&eb->table);
	for (unsigned i = 0; t && i < t->n; i++) {
		struct injection *inj = t->inj[i];

		fb_json_write_object_begin(w);
		fb_json_write_named_uint64(w, "io_mask", inj->io_mask);
		fb_json_write_named_string(w, "error_type", kind_name(inj->kind));
		fb_json_write_named_uint64(w, "num", inj->count);
		fb_json_write_named_uint64(w, "remaining", atomic_load(&inj->remaining));
		fb_json_write_named_uint64(w, "offset_blocks", inj->offset_blocks);
		fb_json_write_named_uint64(w, "end_blocks", inj->end_blocks);
		if (inj->kind == FB_ERR_CORRUPT_DATA) {
			fb_json_write_named_uint64(w, "corrupt_offset", inj->corrupt_offset);
			fb_json_write_named_uint64(w, "corrupt_value", inj->corrupt_value);
		}
		fb_json_write_object_end(w);
	}
	pthread_mutex_unlock(&eb->mu);
	fb_json_write_array_end(w);
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table error_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = error_destruct,
	.submit_request = error_submit,
	.io_type_supported = error_io_type_supported,
	.channel_create = error_channel_create,
	.channel_destroy = error_channel_destroy,
	.write_config_json = error_write_config,
	.dump_info_json = error_dump_info,
};

static int error_create(struct fb_engine *e, const char *base_name, const struct fb_uuid *uuid,
			struct fb_err *err)
{
	struct error_bdev *eb = NULL;
	struct fb_bdev_register_opts p;
	struct fb_bdev_open_opts oo;
	struct fb_bdev_desc *probe = NULL;
	struct fb_bdev *base;
	char name[300], holder[320];
	int rc = 0;

	if (!base_name || !*base_name || strlen(base_name) > 250) {
		fb_err_set(err, "base_name must name an existing bdev");
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "EE_%s", base_name);
	snprintf(holder, sizeof(holder), "error bdev '%s'", name);
	/* A second create over the same base is SPDK's -17, before the claim
	 * would say -EPERM. */
	if (fb_bdev_open(e, name, NULL, &probe, NULL) == 0) {
		fb_bdev_close(probe);
		fb_err_set(err, "bdev '%s' already exists; delete it first (bdev_error_delete)", name);
		return -EEXIST;
	}
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
	memset(&oo, 0, sizeof(oo));
	oo.size = sizeof(oo);
	oo.write = true;
	oo.holder = holder;
	rc = fb_bdev_open(e, base_name, &oo, &eb->base, err);
	if (rc == -ENOENT)
		rc = -ENODEV; /* SPDK's answer for a missing base */
	if (rc)
		goto out;
	rc = fb_bdev_claim(eb->base, &error_module, err);
	if (rc)
		goto out;
	base = fb_bdev_desc_get_bdev(eb->base);
	memset(&p, 0, sizeof(p));
	p.size = sizeof(p);
	p.name = name;
	p.uuid = *uuid;
	p.block_size = fb_bdev_get_block_size(base);
	p.num_blocks = fb_bdev_get_num_blocks(base);
	p.module = &error_module;
	p.fn = &error_fn;
	p.ctx = eb;
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

static int error_inject(struct fb_engine *e, const char *name,
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

	if ((unsigned)inj->kind > FB_ERR_NOMEM) {
		fb_err_set(err, "error_type %d is unknown; use failure, corrupt_data, drop_write, "
			   "pending or nomem", (int)inj->kind);
		return -EINVAL;
	}
	if (inj->kind == FB_ERR_CORRUPT_DATA && inj->corrupt_value == 0) {
		/* XOR with 0 changes nothing (SPDK refuses it too). */
		fb_err_set(err, "Invalid parameter 'corrupt_value': corrupt_data needs a nonzero "
			   "corrupt_value, the byte XORed in at corrupt_offset. Fix: pass e.g. "
			   "\"corrupt_value\": 1 (flips the lowest bit)");
		return -EINVAL;
	}
	mask = inj->io_mask ? inj->io_mask : (1u << FB_IO_TYPE_COUNT) - 1;
	if (mask & ~((1u << FB_IO_TYPE_COUNT) - 1)) {
		fb_err_set(err, "io_type mask 0x%x has unknown bits", inj->io_mask);
		return -EINVAL;
	}
	/* Accept the error bdev's name or its base's ("M0" -> "EE_M0"). */
	rc = fb_bdev_open(e, name, NULL, &desc, err);
	if (rc == 0 && fb_bdev_get_module(fb_bdev_desc_get_bdev(desc)) != &error_module) {
		struct fb_bdev_desc *ee = NULL;
		char ee_name[300];

		snprintf(ee_name, sizeof(ee_name), "EE_%s", name);
		if (fb_bdev_open(e, ee_name, NULL, &ee, NULL) == 0) {
			fb_bdev_close(desc);
			desc = ee;
		}
	}
	if (rc)
		return rc == -ENOENT ? -ENODEV : rc;
	bdev = fb_bdev_desc_get_bdev(desc);
	if (fb_bdev_get_module(bdev) != &error_module) {
		fb_err_set(err, "Invalid parameter 'name': bdev '%s' is a %s bdev, not an error bdev. "
			   "Fix: create one with bdev_error_create {\"base_name\": \"%s\"} and inject "
			   "into \"EE_%s\".", fb_bdev_get_name(bdev),
			   fb_bdev_get_module(bdev)->name, fb_bdev_get_name(bdev),
			   fb_bdev_get_name(bdev));
		rc = -ENODEV; /* SPDK: no error-injection bdev by that name */
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
					    .offset_blocks = inj->offset_blocks, .end_blocks = end,
					    .corrupt_offset = inj->corrupt_offset,
					    .corrupt_value = inj->corrupt_value};
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
	/* Clearing ends what held I/Os were waiting for. */
	if (inj->kind == FB_ERR_NONE && atomic_load(&eb->held))
		fb_bdev_for_each_channel(bdev, release_held, &mask, NULL);
out:
	fb_bdev_close(desc);
	return rc;
}

/* ------------------------------------------------------------------ RPC */

struct create_params {
	char *base_name;
	struct fb_uuid uuid;
};

static const struct fb_json_field create_fields[] = {
	{.name = "base_name", .offset = offsetof(struct create_params, base_name),
	 .type = FB_JSON_STRING, .min = 1, .max = 255, .hint = SPDK_NAME_HINT},
	{.name = "uuid", .offset = offsetof(struct create_params, uuid), .type = FB_JSON_UUID,
	 .optional = true, .hint = SPDK_UUID_HINT},
};

/* Creates over bases that do not exist yet (SPDK's): kept per engine and
 * made by examine when the base appears. */
struct pending {
	struct pending *next;
	char *base_name;
	struct fb_uuid uuid;
};

struct error_mod {
	pthread_mutex_t mu;
	struct pending *pending;
};

static int error_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			    struct fb_err *err)
{
	const struct create_params *p = params;
	struct error_mod *m = fb_bdev_module_get_ctx(e, &error_module);
	struct pending *pd;
	int rc = error_create(e, p->base_name, &p->uuid, err);

	if (rc == -ENODEV) {
		pthread_mutex_lock(&m->mu);
		for (pd = m->pending; pd; pd = pd->next) {
			if (strcmp(pd->base_name, p->base_name) == 0) {
				pthread_mutex_unlock(&m->mu);
				fb_err_set(err, "bdev 'EE_%s' is already waiting for its base '%s'; "
					   "create the base, or pick another", p->base_name, p->base_name);
				return -EEXIST;
			}
		}
		pd = calloc(1, sizeof(*pd));
		if (pd && (pd->base_name = strdup(p->base_name)) != NULL) {
			pd->uuid = p->uuid;
			pd->next = m->pending;
			m->pending = pd;
			rc = 0;
		} else {
			free(pd);
			fb_err_set(err, "out of memory");
			rc = -ENOMEM;
		}
		pthread_mutex_unlock(&m->mu);
	}
	if (rc == 0)
		fb_json_write_bool(w, true);
	return rc;
}

static void error_examine(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct error_mod *m = fb_bdev_module_get_ctx(e, &error_module);
	struct pending *pd = NULL, **pp;
	struct fb_err err;

	pthread_mutex_lock(&m->mu);
	for (pp = &m->pending; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->base_name, fb_bdev_get_name(bdev)) == 0) {
			pd = *pp;
			*pp = pd->next;
			break;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (!pd)
		return;
	if (error_create(e, pd->base_name, &pd->uuid, &err) != 0)
		fb_log(e, FB_LOG_ERROR, "error bdev over '%s' (created when it appeared): %s",
		       pd->base_name, err.msg);
	free(pd->base_name);
	free(pd);
}

/* Creates still waiting for their base replay as they were asked. */
static void error_config_json(struct fb_engine *e, struct fb_json_writer *w)
{
	struct error_mod *m = fb_bdev_module_get_ctx(e, &error_module);

	pthread_mutex_lock(&m->mu);
	for (struct pending *pd = m->pending; pd; pd = pd->next) {
		fb_json_write_object_begin(w);
		fb_json_write_named_string(w, "method", "bdev_error_create");
		fb_json_write_named_object_begin(w, "params");
		fb_json_write_named_string(w, "base_name", pd->base_name);
		if (!fb_uuid_is_null(&pd->uuid)) {
			char us[FB_UUID_STR_LEN];

			fb_uuid_fmt(&pd->uuid, us);
			fb_json_write_named_string(w, "uuid", us);
		}
		fb_json_write_object_end(w);
		fb_json_write_object_end(w);
	}
	pthread_mutex_unlock(&m->mu);
}

static int error_init(struct fb_engine *e, void **ctx, struct fb_err *err)
{
	struct error_mod *m = calloc(1, sizeof(*m));

	(void)e;
	if (!m) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->mu, NULL);
	*ctx = m;
	return 0;
}

static void error_fini(struct fb_engine *e, void *ctx)
{
	struct error_mod *m = ctx;

	(void)e;
	while (m->pending) {
		struct pending *pd = m->pending;

		m->pending = pd->next;
		free(pd->base_name);
		free(pd);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

struct name_params {
	char *name;
};

static const struct fb_json_field name_fields[] = {
	{.name = "name", .offset = offsetof(struct name_params, name), .type = FB_JSON_STRING,
	 .min = 1, .max = 255, .hint = SPDK_NAME_HINT},
};

static int error_rpc_delete(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			    struct fb_err *err)
{
	const struct name_params *p = params;
	struct fb_bdev_desc *desc = NULL;
	int rc;

	/* Held I/Os end with their bdev (their consumers may wait for them
	 * before they let go of it). */
	if (fb_bdev_open(e, p->name, NULL, &desc, NULL) == 0) {
		struct fb_bdev *bdev = fb_bdev_desc_get_bdev(desc);
		uint32_t all = (1u << FB_IO_TYPE_COUNT) - 1;

		if (fb_bdev_get_module(bdev) == &error_module)
			fb_bdev_for_each_channel(bdev, release_held, &all, NULL);
		fb_bdev_close(desc);
	}
	rc = fb_bdev_delete_own(e, p->name, &error_module, err);
	if (rc == 0)
		fb_json_write_bool(w, true);
	return rc;
}

static const char *const io_type_names[] = {"read", "write", "flush", "unmap", "write_zeroes",
					    "all", "clear", NULL};
static const char *const error_type_names[] = {"failure", "corrupt_data", "drop_write",
					       "pending", "nomem", NULL};

struct inject_params {
	char *name, *io_type, *error_type;
	uint32_t num;
	uint64_t offset_blocks, num_blocks, corrupt_offset;
	uint32_t corrupt_value;
	bool num_set;
};

static void inject_params_init(void *params)
{
	((struct inject_params *)params)->num = 1; /* SPDK's default */
}

static const struct fb_json_field inject_fields[] = {
	{.name = "name", .offset = offsetof(struct inject_params, name), .type = FB_JSON_STRING,
	 .min = 1, .max = 255, .hint = "the error bdev's name, e.g. \"EE_Malloc0\""},
	{.name = "io_type", .offset = offsetof(struct inject_params, io_type), .type = FB_JSON_STRING,
	 .choices = io_type_names,
	 .hint = "one of read, write, flush, unmap, write_zeroes, all, clear"},
	{.name = "error_type", .offset = offsetof(struct inject_params, error_type),
	 .type = FB_JSON_STRING, .choices = error_type_names,
	 .hint = "one of failure, corrupt_data, drop_write, pending, nomem"},
	{.name = "num", .offset = offsetof(struct inject_params, num), .type = FB_JSON_U32,
	 .optional = true,
	 .hint = "how many I/Os to affect (default 1; 0 disables the injection of this io_type)"},
	{.name = "corrupt_offset", .offset = offsetof(struct inject_params, corrupt_offset),
	 .type = FB_JSON_U64, .optional = true,
	 .hint = "the byte that corrupt_data changes, from the I/O's start (or from the first "
		 "block of offset_blocks it covers), e.g. 0"},
	{.name = "corrupt_value", .offset = offsetof(struct inject_params, corrupt_value),
	 .type = FB_JSON_U32, .optional = true, .max = 255,
	 .hint = "the value XORed into that byte, 1 to 255 (required by corrupt_data)"},
	{.name = "offset_blocks", .offset = offsetof(struct inject_params, offset_blocks),
	 .type = FB_JSON_U64, .optional = true, .max = 9007199254740991ull,
	 .hint = "the first affected block (default 0)"},
	{.name = "num_blocks", .offset = offsetof(struct inject_params, num_blocks),
	 .type = FB_JSON_U64, .optional = true, .max = 9007199254740991ull,
	 .hint = "how many blocks from offset_blocks are affected (default 0: to the end)"},
};

static int error_rpc_inject(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			    struct fb_err *err)
{
	const struct inject_params *p = params;
	struct fb_error_injection inj;
	int rc;

	memset(&inj, 0, sizeof(inj));
	if (strcmp(p->io_type, "all") != 0 && strcmp(p->io_type, "clear") != 0) {
		for (unsigned t = 0; t < FB_IO_TYPE_COUNT; t++)
			if (strcmp(io_type_names[t], p->io_type) == 0)
				inj.io_mask = 1u << t;
	}
	/* SPDK: num 0 disables the injection; "clear" removes all of them. */
	if (strcmp(p->io_type, "clear") == 0 || p->num == 0)
		inj.kind = FB_ERR_NONE;
	else if (strcmp(p->error_type, "failure") == 0)
		inj.kind = FB_ERR_FAILURE;
	else if (strcmp(p->error_type, "corrupt_data") == 0)
		inj.kind = FB_ERR_CORRUPT_DATA;
	else if (strcmp(p->error_type, "pending") == 0)
		inj.kind = FB_ERR_PENDING;
	else if (strcmp(p->error_type, "nomem") == 0)
		inj.kind = FB_ERR_NOMEM;
	else
		inj.kind = FB_ERR_DROP_WRITE;
	inj.count = p->num;
	inj.offset_blocks = p->offset_blocks;
	inj.num_blocks = p->num_blocks;
	inj.corrupt_offset = p->corrupt_offset;
	inj.corrupt_value = (uint8_t)p->corrupt_value;
	rc = error_inject(e, p->name, &inj, err);
	if (rc == 0)
		fb_json_write_bool(w, true);
	return rc;
}

static const struct fb_rpc_method error_rpcs[] = {
	{.name = "bdev_error_create", .params = create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(create_fields), .params_size = sizeof(struct create_params),
	 .handler = error_rpc_create},
	{.name = "bdev_error_delete", .params = name_fields, .nparams = FB_JSON_FIELD_COUNT(name_fields),
	 .params_size = sizeof(struct name_params), .handler = error_rpc_delete},
	{.name = "bdev_error_inject_error", .params = inject_fields,
	 .nparams = FB_JSON_FIELD_COUNT(inject_fields), .params_size = sizeof(struct inject_params),
	 .params_init = inject_params_init, .handler = error_rpc_inject},
};

static struct fb_bdev_module error_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "error",
	.product_name = "Error Injection Disk",
	.io_ctx_size = sizeof(struct error_io),
	.channel_ctx_size = sizeof(struct error_channel),
	.init = error_init,
	.fini = error_fini,
	.examine = error_examine,
	.config_json = error_config_json,
	.rpcs = error_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(error_rpcs),
};
FB_BDEV_MODULE_REGISTER(error_module)
