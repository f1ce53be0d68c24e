/* malloc bdev: a RAM disk (anonymous mapping, zero-filled). Supports zcopy
 * reads: the consumer reads straight from the mapping. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flexbso/bdev_module.h"

#include "spdk_params.h"

struct malloc_mod;

struct malloc_bdev {
	unsigned char *mem;
	size_t size;
	struct malloc_mod *mm;
};

/* Per engine: the next "MallocN" to try, and the bytes malloc bdevs may
 * commit. The mapping is MAP_NORESERVE (RAM is only used when written), so
 * without this check a 1 TiB bdev is accepted and the engine is OOM-killed
 * once tenants fill it: every malloc bdev is charged its full size. */
struct malloc_mod {
	pthread_mutex_t lock;
	unsigned next;
	size_t limit;              /* fb_engine_opts.malloc_mem_limit or the default */
	_Atomic size_t reserved;   /* sum of the sizes of live malloc bdevs */
};

/* Physical RAM minus a reserve for the rest of the system (1/8 of RAM, at
 * least 512 MiB). */
static size_t malloc_default_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	size_t ram, keep;

	if (pages <= 0 || psz <= 0)
		return SIZE_MAX;
	ram = (size_t)pages * (size_t)psz;
	keep = ram / 8 > ((size_t)512 << 20) ? ram / 8 : (size_t)512 << 20;
	return ram > keep ? ram - keep : 0;
}

static struct fb_bdev_module malloc_module;
static void malloc_destruct(struct fb_bdev *bdev)
{
	struct malloc_bdev *m = fb_bdev_get_module_ctx(bdev);

	munmap(m->mem, m->size);
	atomic_fetch_sub_explicit(&m->mm->reserved, m->size, memory_order_relaxed);
	free(m);
}

static void iov_copy_out(struct iovec *iov, int iovcnt, const unsigned char *src)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

static void iov_copy_in(unsigned char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Zeroes [p, p + len) by giving whole pages back to the kernel (they read
 * as zeros and no longer use RAM) and memset only the partial pages at the
 * ends: a memset of a large range would commit RAM instead of freeing it,
 * and keep the reactor busy for as long. */
static void malloc_zero(unsigned char *p, size_t len)
{
	static size_t pg;
	uintptr_t a = (uintptr_t)p, lo, hi;

	if (!pg)
		pg = (size_t)sysconf(_SC_PAGESIZE);
	lo = (a + pg - 1) & ~(uintptr_t)(pg - 1);
	hi = (a + len) & ~(uintptr_t)(pg - 1);
	if (hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
		memset(p, 0, len);
		return;
	}
	memset(p, 0, lo - a);
	memset((void *)hi, 0, a + len - hi);
}

/* Copies this large go to the engine's offload workers (fb_offload), so a
 * busy queue's large I/O is not limited to its reactor's core; smaller ones
 * stay inline, where a thread hand-off would cost more than the copy. */
#define MALLOC_OFFLOAD_BYTES (128u << 10)

/* TRIM and WRITE_ZEROES give memory back ZERO_SLICE bytes per reactor turn
 * (address-aligned slices, so whole pages go to madvise): a 4 GiB NBD trim
 * of written memory would otherwise hold the reactor, and every other
 * export on it, for as long as the kernel takes to free it all. */
#define ZERO_SLICE ((size_t)4 << 20)

/* Per-I/O context (io_ctx_size): a large copy on the offload workers, or a
 * sliced zeroing continued on the reactor's next turns. */
struct malloc_io {
	struct fb_deferred next;   /* zeroing: the next slice (first: cast from it) */
	struct fb_offload off;     /* copy: the worker's task */
	struct fb_bdev_io *io;
	unsigned char *p;
	struct iovec *iov;   /* captured at submit: the worker makes no engine calls */
	int iovcnt;
	bool read;
	size_t left;         /* zeroing: bytes still to give back */
};

#define MALLOC_IO(o) ((struct malloc_io *)(void *)((char *)(o) - offsetof(struct malloc_io, off)))

static void malloc_copy_work(struct fb_offload *o)
{
	struct malloc_io *mio = MALLOC_IO(o);

	if (mio->read)
		iov_copy_out(mio->iov, mio->iovcnt, mio->p);
	else
		iov_copy_in(mio->p, mio->iov, mio->iovcnt);
}

static void malloc_copy_done(struct fb_offload *o)
{
	fb_bdev_io_complete(MALLOC_IO(o)->io, 0);
}

static void malloc_zero_step(struct fb_deferred *d)
{
	struct malloc_io *mio = (struct malloc_io *)(void *)d;
	size_t n = ZERO_SLICE - ((uintptr_t)mio->p & (ZERO_SLICE - 1));

	if (n > mio->left)
		n = mio->left;
	malloc_zero(mio->p, n);
	mio->p += n;
	mio->left -= n;
	if (mio->left)
		fb_reactor_defer(fb_reactor_current(), &mio->next);
	else
		fb_bdev_io_complete(mio->io, 0);  /* a deferred turn: no recursion into submit */
}

static void malloc_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct fb_bdev *bdev = fb_bdev_io_get_bdev(io);
	struct malloc_bdev *m = fb_bdev_get_module_ctx(bdev);
	uint64_t bs = fb_bdev_get_block_size(bdev);
	unsigned char *p = m->mem + fb_bdev_io_get_offset_blocks(io) * bs;
	size_t len = fb_bdev_io_get_num_blocks(io) * bs;
	struct iovec *iov;
	int iovcnt;

	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	if (len >= MALLOC_OFFLOAD_BYTES &&
	    (fb_bdev_io_get_type(io) == FB_IO_READ || fb_bdev_io_get_type(io) == FB_IO_WRITE)) {
		struct malloc_io *mio = fb_bdev_io_get_driver_ctx(io);

		mio->io = io;
		mio->p = p;
		mio->iov = iov;
		mio->iovcnt = iovcnt;
		mio->read = fb_bdev_io_get_type(io) == FB_IO_READ;
		mio->off.work = malloc_copy_work;
		mio->off.done = malloc_copy_done;
		fb_offload_submit(fb_io_channel_get_reactor(ch), &mio->off);
		return;
	}
	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
		iov_copy_out(iov, iovcnt, p);
		break;
	case FB_IO_WRITE:
		iov_copy_in(p, iov, iovcnt);
		break;
	case FB_IO_UNMAP:
	case FB_IO_WRITE_ZEROES:
		if (len > ZERO_SLICE) {
			struct malloc_io *mio = fb_bdev_io_get_driver_ctx(io);

			mio->next.fn = malloc_zero_step;
			mio->io = io;
			mio->p = p;
			mio->left = len;
			fb_reactor_defer(fb_reactor_current(), &mio->next);
			return;
		}
		malloc_zero(p, len);
		break;
	case FB_IO_ZCOPY:
		/* Lend the RAM disk itself: it lives until the bdev is destructed,
		 * which waits for every io to be freed. One piece, so this cannot fail. */
		(void)fb_bdev_io_set_buf(io, p, len);
		break;
	default: /* flush: RAM is as durable as it gets */
		break;
	}
	/* Deferred so a callback that resubmits cannot recurse. */
	fb_bdev_io_complete_deferred(io, 0);
}

static bool malloc_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type < FB_IO_TYPE_COUNT;
}

static void malloc_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct fb_uuid u;
	char us[FB_UUID_STR_LEN];

	fb_bdev_get_uuid(bdev, &u);
	fb_uuid_fmt(&u, us);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_malloc_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "name", fb_bdev_get_name(bdev));
	fb_json_write_named_uint64(w, "num_blocks", fb_bdev_get_num_blocks(bdev));
	fb_json_write_named_uint64(w, "block_size", fb_bdev_get_block_size(bdev));
	fb_json_write_named_string(w, "uuid", us);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table malloc_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = malloc_destruct,
	.submit_request = malloc_submit,
	.io_type_supported = malloc_io_type_supported,
	.write_config_json = malloc_write_config,
};

static int malloc_create(struct fb_engine *e, const char *name, uint64_t num_blocks,
			 uint32_t block_size, const struct fb_bdev_register_opts *extra,
			 struct fb_err *err)
{
	struct malloc_mod *mm = fb_bdev_module_get_ctx(e, &malloc_module);
	struct malloc_bdev *m = NULL;
	struct fb_bdev_register_opts o = *extra;
	size_t size, used;
	int rc = 0;

	if (num_blocks == 0 || num_blocks > (UINT64_MAX >> 17)) {
		fb_err_set(err, "num_blocks must be at least 1");
		return -EINVAL;
	}
	if (num_blocks > SIZE_MAX / block_size) {
		fb_err_set(err, "malloc bdev '%s': num_blocks * block_size overflows; use a smaller num_blocks",
			   name);
		return -EINVAL;
	}
	size = (size_t)num_blocks * block_size;
	used = atomic_load_explicit(&mm->reserved, memory_order_relaxed);
	do {
		if (size > mm->limit || used > mm->limit - size) {
			fb_err_set(err, "malloc bdev '%s' needs %zu bytes (%zu MiB), but malloc bdevs may hold "
				   "%zu bytes (%zu MiB: physical RAM minus a reserve, or the engine's "
				   "malloc_mem_limit) and %zu are taken by other malloc bdevs; use a smaller "
				   "num_blocks, delete another malloc bdev, or raise malloc_mem_limit",
				   name, size, size >> 20, mm->limit, mm->limit >> 20, used);
			return -ENOMEM;
		}
	} while (!atomic_compare_exchange_weak_explicit(&mm->reserved, &used, used + size,
							memory_order_relaxed, memory_order_relaxed));
	m = calloc(1, sizeof(*m));
	if (!m) {
		atomic_fetch_sub_explicit(&mm->reserved, size, memory_order_relaxed);
		fb_err_set(err, "out of memory creating malloc bdev '%s'", name);
		return -ENOMEM;
	}
	m->mm = mm;
	m->size = size;
	/* Anonymous memory is zero-filled and only costs RAM when written. */
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (m->mem == MAP_FAILED) {
		atomic_fetch_sub_explicit(&mm->reserved, size, memory_order_relaxed);
		free(m);
		fb_err_set(err, "cannot allocate %llu bytes for malloc bdev '%s'; "
			   "use a smaller num_blocks", (unsigned long long)num_blocks * block_size, name);
		return -ENOMEM;
	}
	o.size = sizeof(o);
	o.name = name;
	o.block_size = block_size;
	o.num_blocks = num_blocks;
	o.module = &malloc_module;
	o.fn = &malloc_fn;
	o.ctx = m;
	rc = fb_bdev_register(e, &o, NULL, err);
	if (rc) {
		munmap(m->mem, m->size);
		atomic_fetch_sub_explicit(&mm->reserved, size, memory_order_relaxed);
		free(m);
	}
	return rc;
}

/* ------------------------------------------------------------------ RPC */

struct malloc_create_params {
	char *name;
	uint64_t num_blocks;
	uint32_t block_size;
	uint32_t physical_block_size;
	struct fb_uuid uuid;
	uint32_t optimal_io_boundary;
	struct spdk_ignored ign;
};

static const struct fb_json_field malloc_create_fields[] = {
	{.name = "name", .offset = offsetof(struct malloc_create_params, name), .type = FB_JSON_STRING,
	 .optional = true, .min = 1, .max = 255, .hint = SPDK_NAME_HINT},
	{.name = "num_blocks", .offset = offsetof(struct malloc_create_params, num_blocks),
	 .type = FB_JSON_U64, .min = 1, .max = 9007199254740991ull, .hint = SPDK_NUM_BLOCKS_HINT},
	{.name = "block_size", .offset = offsetof(struct malloc_create_params, block_size),
	 .type = FB_JSON_U32, .hint = SPDK_BLOCK_SIZE_HINT},
	{.name = "physical_block_size",
	 .offset = offsetof(struct malloc_create_params, physical_block_size), .type = FB_JSON_U32,
	 .optional = true, .hint = "the physical block size in bytes, a multiple of block_size, e.g. 4096"},
	{.name = "uuid", .offset = offsetof(struct malloc_create_params, uuid), .type = FB_JSON_UUID,
	 .optional = true, .hint = SPDK_UUID_HINT},
	{.name = "optimal_io_boundary",
	 .offset = offsetof(struct malloc_create_params, optimal_io_boundary), .type = FB_JSON_U32,
	 .optional = true, .hint = "the I/O boundary in blocks that I/O is split on, or 0 for none"},
	SPDK_MD_FIELDS(struct malloc_create_params),
	SPDK_NUMA_FIELD(struct malloc_create_params),
};

static int malloc_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			     struct fb_err *err)
{
	const struct malloc_create_params *p = params;
	struct malloc_mod *mm = fb_bdev_module_get_ctx(e, &malloc_module);
	struct fb_bdev_register_opts o;
	char auto_name[32];
	const char *name = p->name;
	int rc;

	rc = spdk_block_size_check(p->block_size, err);
	if (rc)
		return rc;
	if (p->physical_block_size &&
	    (p->physical_block_size % p->block_size || p->physical_block_size > 65536)) {
		fb_err_set(err, "Invalid parameter 'physical_block_size': must be a multiple of "
			   "block_size (%u) up to 65536, got %u. Fix: pass a multiple of block_size, "
			   "e.g. 4096.", p->block_size, p->physical_block_size);
		return -EINVAL;
	}
	memset(&o, 0, sizeof(o));
	o.uuid = p->uuid;
	o.physical_block_size = p->physical_block_size;
	o.optimal_io_boundary = p->optimal_io_boundary;
	o.split_on_optimal_io_boundary = p->optimal_io_boundary != 0;
	if (name) {
		rc = malloc_create(e, name, p->num_blocks, p->block_size, &o, err);
	} else {
		/* SPDK's "MallocN": the first free number from the last one given. */
		pthread_mutex_lock(&mm->lock);
		do {
			snprintf(auto_name, sizeof(auto_name), "Malloc%u", mm->next++);
			rc = malloc_create(e, auto_name, p->num_blocks, p->block_size, &o, err);
		} while (rc == -EEXIST);
		pthread_mutex_unlock(&mm->lock);
		name = auto_name;
	}
	if (rc == 0)
		fb_json_write_string(w, name);
	return rc;
}

FB_SPDK_DELETE_RPC(malloc_rpc_delete, malloc_module)

static const struct fb_rpc_method malloc_rpcs[] = {
	{.name = "bdev_malloc_create", .params = malloc_create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(malloc_create_fields),
	 .params_size = sizeof(struct malloc_create_params), .handler = malloc_rpc_create},
	FB_SPDK_DELETE_METHOD("bdev_malloc_delete", malloc_rpc_delete),
};

static int malloc_init(struct fb_engine *e, void **ctx, struct fb_err *err)
{
	struct malloc_mod *mm = calloc(1, sizeof(*mm));

	if (!mm) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&mm->lock, NULL);
	mm->limit = fb_engine_get_opts(e)->malloc_mem_limit;
	if (!mm->limit)
		mm->limit = malloc_default_limit();
	*ctx = mm;
	return 0;
}

static void malloc_fini(struct fb_engine *e, void *ctx)
{
	struct malloc_mod *mm = ctx;

	(void)e;
	pthread_mutex_destroy(&mm->lock);
	free(mm);
}

static struct fb_bdev_module malloc_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "malloc",
	.product_name = "Malloc disk",
	.io_ctx_size = sizeof(struct malloc_io),
	.init = malloc_init,
	.fini = malloc_fini,
	.rpcs = malloc_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(malloc_rpcs),
};
FB_BDEV_MODULE_REGISTER(malloc_module)
