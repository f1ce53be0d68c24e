/* file bdev: a file or block device driven through the reactor's io_uring.
 *
 * O_DIRECT when the filesystem accepts an aligned probe read, else buffered
 * I/O with fdatasync on flush. FUA writes carry RWF_DSYNC. Unmap punches a
 * hole, write-zeroes uses FALLOC_FL_ZERO_RANGE; both fall back (punch hole,
 * then writing zeros) where the filesystem lacks them. All of it runs on the
 * ring, so a reactor never blocks in a syscall. Unaligned iovecs on an
 * O_DIRECT file go through an aligned bounce buffer cached per channel.
 *
 * Confinement happens here, where the file is opened, so no check can be
 * raced between a caller's look and the open: with `beneath`, the filename is
 * resolved by openat2(RESOLVE_BENEATH) inside that directory (no symlink or
 * ".." leads out) and must be a regular file. A block device is claimed with
 * O_EXCL, so one that is mounted, part of another device or already served is
 * refused. One file backs at most one file bdev of an engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "flexbso/bdev_module.h"
#include "flexbso/reactor.h"
#include "spdk_params.h"

#define FILE_NO_DIRECT 0x1u    /* never use O_DIRECT (buffered + fdatasync on flush) */
#define FILE_DIRECT 0x2u       /* require O_DIRECT: fail if the filesystem refuses it */
#define FILE_NO_FALLOCATE 0x4u /* unmap/write-zeroes write zeros (thick image, no holes) */

#define ZERO_BUF_LEN (1u << 20)
#define BOUNCE_CACHE_MAX 16

struct file_bdev {
	struct file_bdev *next;        /* in open_files */
	struct fb_engine *engine;
	dev_t dev;                     /* identity of the backing file or device */
	ino_t ino;
	char *name;
	char *path;
	char *beneath;                 /* confinement directory as created, or NULL */
	bool aio;                      /* made by bdev_aio_create (SPDK names differ) */
	uint32_t flags;                /* FILE_* as created */
	int fd;
	bool direct;
	uint32_t mem_align, len_align; /* O_DIRECT buffer address / length alignment */
	void *zero_buf;                /* ZERO_BUF_LEN aligned zeros, shared read-only */
	atomic_bool no_zero_range;     /* learned at run time from EOPNOTSUPP */
	atomic_bool no_punch;
	/* First failed sync (fdatasync or an RWF_DSYNC write), 0 if none. The
	 * kernel reports a write-back error to one syncer only and may then drop
	 * the dirty pages, so a later sync can "succeed" over lost data: once one
	 * fails, every later durability promise fails too. */
	atomic_int sync_err;
};

struct bounce {
	struct bounce *next;
	size_t cap;
	void *buf;
};

struct file_channel {
	struct bounce *cache;
	unsigned ncache;
};

enum file_stage { ST_RW, ST_ZERO_RANGE, ST_PUNCH, ST_ZERO_WRITE, ST_FSYNC };

struct file_io {
	struct fb_uring_op op;         /* first: recovered from the CQE's user_data */
	struct fb_deferred retry;      /* bounce allocation retry after -ENOMEM */
	struct fb_bdev_io *io;
	struct fb_io_channel *ch;
	struct file_channel *fch;
	struct bounce *bounce;
	struct iovec *iov_rest;        /* continuation after a short transfer (rare) */
	int iovcnt_rest;
	size_t adv_pending;            /* short transfer whose iov_advance met -ENOMEM */
	enum file_stage stage;
	uint64_t pos;                  /* byte offset of the next transfer */
	uint64_t left;                 /* bytes still to transfer */
};

static struct fb_bdev_module file_module;

/* Every open file bdev, so one file never backs two (their writes would
 * interleave on one disk). Control path only. */
static pthread_mutex_t open_files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct file_bdev *open_files;

static void file_io_cb(struct fb_uring_op *op, int res, uint32_t flags);

static struct bounce *bounce_get(struct file_channel *fch, size_t len, size_t align)
{
	struct bounce **pp, *b;
	size_t cap = 4096;

	for (pp = &fch->cache; *pp; pp = &(*pp)->next) {
		if ((*pp)->cap >= len) {
			b = *pp;
			*pp = b->next;
			fch->ncache--;
			return b;
		}
	}
	while (cap < len)
		cap *= 2;
	b = malloc(sizeof(*b));
	if (!b)
		return NULL;
	b->cap = cap;
	if (posix_memalign(&b->buf, align < 4096 ? 4096 : align, cap) != 0) {
		free(b);
		return NULL;
	}
	return b;
}

static void bounce_put(struct file_channel *fch, struct bounce *b)
{
	if (!b)
		return;
	if (fch->ncache >= BOUNCE_CACHE_MAX) {
		free(b->buf);
		free(b);
		return;
	}
	b->next = fch->cache;
	fch->cache = b;
	fch->ncache++;
}

static int file_channel_create(struct fb_bdev *bdev, void *ctx)
{
	(void)bdev;
	(void)ctx; /* zeroed by the engine */
	return 0;
}

static void file_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct file_channel *fch = ctx;

	(void)bdev;
	while (fch->cache) {
		struct bounce *b = fch->cache;

		fch->cache = b->next;
		free(b->buf);
		free(b);
	}
}

static void file_destruct(struct fb_bdev *bdev)
{
	struct file_bdev *f = fb_bdev_get_module_ctx(bdev);

	pthread_mutex_lock(&open_files_lock);
	for (struct file_bdev **pp = &open_files; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	pthread_mutex_unlock(&open_files_lock);
	close(f->fd);
	free(f->zero_buf);
	free(f->name);
	free(f->beneath);
	free(f->path);
	free(f);
}

static bool file_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	/* No zcopy: the data is not in memory we own. */
	return type < FB_IO_TYPE_COUNT && type != FB_IO_ZCOPY;
}

/* Status of a durability point (flush, FUA): sticky after the first failure. */
static int file_sync_status(struct file_bdev *f, int res)
{
	int none = 0;

	if (res < 0) {
		atomic_compare_exchange_strong(&f->sync_err, &none, res);
		return res;
	}
	return atomic_load(&f->sync_err);
}

static void file_io_finish(struct file_io *fio, int status)
{
	struct fb_bdev_io *io = fio->io;

	bounce_put(fio->fch, fio->bounce);
	fio->bounce = NULL;
	free(fio->iov_rest);
	fio->iov_rest = NULL;
	fb_bdev_io_complete(io, status);
}

static struct io_uring_sqe *file_sqe(struct fb_io_channel *ch, struct file_io *fio)
{
	(void)fio;
	return fb_reactor_get_sqe(fb_io_channel_get_reactor(ch));
}

static void sqe_bind(struct io_uring_sqe *sqe, struct file_io *fio)
{
	io_uring_sqe_set_data(sqe, &fio->op);
}

static bool iov_needs_bounce(const struct file_bdev *f, const struct iovec *iov, int iovcnt)
{
	if (iovcnt > IOV_MAX)
		return true;
	if (!f->direct)
		return false;
	for (int i = 0; i < iovcnt; i++) {
		if (((uintptr_t)iov[i].iov_base & (f->mem_align - 1)) ||
		    (iov[i].iov_len & (f->len_align - 1)))
			return true;
	}
	return false;
}

static void issue_fsync(struct fb_io_channel *ch, struct file_io *fio, struct file_bdev *f)
{
	struct io_uring_sqe *sqe = file_sqe(ch, fio);

	fio->stage = ST_FSYNC;
	io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
	sqe_bind(sqe, fio);
}

static void issue_zero_write(struct fb_io_channel *ch, struct file_io *fio, struct file_bdev *f)
{
	struct io_uring_sqe *sqe = file_sqe(ch, fio);
	unsigned n = fio->left < ZERO_BUF_LEN ? (unsigned)fio->left : ZERO_BUF_LEN;

	fio->stage = ST_ZERO_WRITE;
	io_uring_prep_write(sqe, f->fd, f->zero_buf, n, fio->pos);
	sqe_bind(sqe, fio);
}

static void issue_zeroes(struct fb_io_channel *ch, struct file_io *fio, struct file_bdev *f)
{
	struct io_uring_sqe *sqe;

	if (!atomic_load_explicit(&f->no_zero_range, memory_order_relaxed)) {
		sqe = file_sqe(ch, fio);
		fio->stage = ST_ZERO_RANGE;
		io_uring_prep_fallocate(sqe, f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					(off_t)fio->pos, (off_t)fio->left);
		sqe_bind(sqe, fio);
	} else if (!atomic_load_explicit(&f->no_punch, memory_order_relaxed) &&
		   !(fb_bdev_io_get_flags(fio->io) & FB_IO_FLAG_NO_HOLE)) {
		/* A punched hole reads back as zeros too (not for NO_HOLE). */
		sqe = file_sqe(ch, fio);
		fio->stage = ST_PUNCH;
		io_uring_prep_fallocate(sqe, f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)fio->pos, (off_t)fio->left);
		sqe_bind(sqe, fio);
	} else {
		issue_zero_write(ch, fio, f);
	}
}

/* Issues the read/write for the remaining bytes: bounce, continuation or the
 * caller's iovecs. */
static void issue_rw(struct fb_io_channel *ch, struct file_io *fio, struct file_bdev *f)
{
	struct fb_bdev_io *io = fio->io;
	bool is_read = fb_bdev_io_get_type(io) == FB_IO_READ;
	struct io_uring_sqe *sqe = file_sqe(ch, fio);
	uint64_t done_before = fb_bdev_io_get_num_blocks(io) * fb_bdev_get_block_size(fb_bdev_io_get_bdev(io)) - fio->left;
	int rwf = (!is_read && (fb_bdev_io_get_flags(io) & FB_IO_FLAG_FUA)) ? RWF_DSYNC : 0;

	fio->stage = ST_RW;
	if (fio->bounce) {
		char *p = (char *)fio->bounce->buf + done_before;
		/* One SQE carries at most 1 GiB here; the rest follows as a short transfer. */
		unsigned n = fio->left > (1u << 30) ? (1u << 30) : (unsigned)fio->left;

		if (is_read)
			io_uring_prep_read(sqe, f->fd, p, n, fio->pos);
		else
			io_uring_prep_write(sqe, f->fd, p, n, fio->pos);
	} else {
		struct iovec *iov = fio->iov_rest;
		int iovcnt = fio->iovcnt_rest;

		if (!iov)
			iov = fb_bdev_io_get_iovs(io, &iovcnt);
		if (is_read)
			io_uring_prep_readv(sqe, f->fd, iov, (unsigned)iovcnt, fio->pos);
		else
			io_uring_prep_writev(sqe, f->fd, iov, (unsigned)iovcnt, fio->pos);
	}
	sqe->rw_flags = rwf;
	sqe_bind(sqe, fio);
}

/* After a short transfer of `n` bytes: keep a private, advanced copy of the
 * iovecs (the caller's stay untouched). Returns 0 or -ENOMEM. */
static int iov_advance(struct file_io *fio, size_t n)
{
	struct iovec *src = fio->iov_rest;
	int cnt = fio->iovcnt_rest;
	struct iovec *copy;
	int i = 0;

	if (!src)
		src = fb_bdev_io_get_iovs(fio->io, &cnt);
	while (i < cnt && n >= src[i].iov_len) {
		n -= src[i].iov_len;
		i++;
	}
	copy = malloc(sizeof(*copy) * (size_t)(cnt - i));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, src + i, sizeof(*copy) * (size_t)(cnt - i));
	copy[0].iov_base = (char *)copy[0].iov_base + n;
	copy[0].iov_len -= n;
	free(fio->iov_rest);
	fio->iov_rest = copy;
	fio->iovcnt_rest = cnt - i;
	return 0;
}

static void copy_to_iovs(struct fb_bdev_io *io, const char *src)
{
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);

	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

static void copy_from_iovs(struct fb_bdev_io *io, char *dst)
{
	int iovcnt;
	struct iovec *iov = fb_bdev_io_get_iovs(io, &iovcnt);

	for (int i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* iov_advance failed for memory: try again on the next loop iteration
 * instead of failing the I/O. */
static void file_advance_retry(struct fb_deferred *d)
{
	struct file_io *fio = (struct file_io *)(void *)((char *)d - offsetof(struct file_io, retry));
	struct file_bdev *f = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(fio->io));

	if (iov_advance(fio, fio->adv_pending) != 0) {
		fb_reactor_defer(fb_io_channel_get_reactor(fio->ch), &fio->retry);
		return;
	}
	issue_rw(fio->ch, fio, f);
}

static void file_io_cb(struct fb_uring_op *op, int res, uint32_t flags)
{
	struct file_io *fio = (struct file_io *)(void *)op; /* op is the first member */
	struct fb_bdev_io *io = fio->io;
	struct fb_bdev *bdev = fb_bdev_io_get_bdev(io);
	struct file_bdev *f = fb_bdev_get_module_ctx(bdev);
	bool fua = (fb_bdev_io_get_flags(io) & FB_IO_FLAG_FUA) && fb_bdev_io_get_type(io) != FB_IO_READ;

	(void)flags;
	switch (fio->stage) {
	case ST_RW:
		if (res < 0) {
			if (fua)
				file_sync_status(f, res);
			goto fail;
		}
		if (res == 0) {
			res = -EIO; /* the file shrank under us */
			goto fail;
		}
		fio->pos += (uint64_t)res;
		fio->left -= (uint64_t)res;
		if (fio->left) {
			if (!fio->bounce && iov_advance(fio, (size_t)res) != 0) {
				fio->adv_pending = (size_t)res;
				fio->retry.fn = file_advance_retry;
				fb_reactor_defer(fb_io_channel_get_reactor(fio->ch), &fio->retry);
				return;
			}
			issue_rw(fio->ch, fio, f);
			return;
		}
		if (fio->bounce && fb_bdev_io_get_type(io) == FB_IO_READ)
			copy_to_iovs(io, fio->bounce->buf);
		file_io_finish(fio, fua ? file_sync_status(f, 0) : 0);
		return;
	case ST_ZERO_RANGE:
		if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOSYS) {
			atomic_store(&f->no_zero_range, true);
			issue_zeroes(fio->ch, fio, f);
			return;
		}
		break;
	case ST_PUNCH:
		if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOSYS) {
			atomic_store(&f->no_punch, true);
			issue_zeroes(fio->ch, fio, f);
			return;
		}
		break;
	case ST_ZERO_WRITE:
		if (res <= 0) {
			res = res ? res : -EIO;
			goto fail;
		}
		fio->pos += (uint64_t)res;
		fio->left -= (uint64_t)res;
		if (fio->left) {
			issue_zero_write(fio->ch, fio, f);
			return;
		}
		res = 0;
		break;
	case ST_FSYNC:
		file_io_finish(fio, file_sync_status(f, res < 0 ? res : 0));
		return;
	}
	if (res < 0)
		goto fail;
	/* fallocate or zero writes done: FUA needs them on stable storage. */
	if (fua) {
		issue_fsync(fio->ch, fio, f);
		return;
	}
	file_io_finish(fio, 0);
	return;
fail:
	file_io_finish(fio, res);
}

static void file_start(struct file_io *fio);

static void file_retry(struct fb_deferred *d)
{
	file_start((struct file_io *)(void *)((char *)d - offsetof(struct file_io, retry)));
}

static void file_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct fb_bdev *bdev = fb_bdev_io_get_bdev(io);
	struct file_io *fio = fb_bdev_io_get_driver_ctx(io);
	uint64_t bs = fb_bdev_get_block_size(bdev);

	memset(fio, 0, sizeof(*fio));
	fio->op.cb = file_io_cb;
	fio->io = io;
	fio->ch = ch;
	fio->fch = fb_io_channel_get_ctx(ch);
	fio->pos = fb_bdev_io_get_offset_blocks(io) * bs;
	fio->left = fb_bdev_io_get_num_blocks(io) * bs;
	fio->retry.fn = file_retry;
	file_start(fio);
}

static void file_start(struct file_io *fio)
{
	struct fb_bdev_io *io = fio->io;
	struct fb_io_channel *ch = fio->ch;
	struct file_bdev *f = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	int iovcnt;

	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
	case FB_IO_WRITE:
		iov = fb_bdev_io_get_iovs(io, &iovcnt);
		if (iov_needs_bounce(f, iov, iovcnt)) {
			fio->bounce = bounce_get(fio->fch, fio->left, f->mem_align);
			if (!fio->bounce) {
				/* Never fail an I/O for memory: try again next iteration. */
				fb_reactor_defer(fb_io_channel_get_reactor(ch), &fio->retry);
				return;
			}
			if (fb_bdev_io_get_type(io) == FB_IO_WRITE)
				copy_from_iovs(io, fio->bounce->buf);
		}
		issue_rw(ch, fio, f);
		break;
	case FB_IO_FLUSH:
		issue_fsync(ch, fio, f);
		break;
	case FB_IO_UNMAP:
		if (!atomic_load_explicit(&f->no_punch, memory_order_relaxed)) {
			sqe = file_sqe(ch, fio);
			fio->stage = ST_PUNCH;
			io_uring_prep_fallocate(sqe, f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						(off_t)fio->pos, (off_t)fio->left);
			sqe_bind(sqe, fio);
		} else {
			issue_zeroes(ch, fio, f);
		}
		break;
	default:
		issue_zeroes(ch, fio, f);
		break;
	}
}

static void file_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct file_bdev *f = fb_bdev_get_module_ctx(bdev);
	struct fb_uuid u;
	char us[FB_UUID_STR_LEN];

	fb_bdev_get_uuid(bdev, &u);
	fb_uuid_fmt(&u, us);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", f->aio ? "bdev_aio_create" : "bdev_uring_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "name", fb_bdev_get_name(bdev));
	fb_json_write_named_string(w, "filename", f->path);
	fb_json_write_named_uint64(w, "block_size", fb_bdev_get_block_size(bdev));
	fb_json_write_named_string(w, "uuid", us);
	if (f->beneath)
		fb_json_write_named_string(w, "beneath", f->beneath);
	/* Extensions only when they differ from the default, so SPDK can
	 * replay the usual case. */
	if (f->flags & (FILE_DIRECT | FILE_NO_DIRECT))
		fb_json_write_named_bool(w, "direct_io", (f->flags & FILE_DIRECT) != 0);
	if (!f->aio && (f->flags & FILE_NO_FALLOCATE))
		fb_json_write_named_bool(w, "fallocate", false);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

static void file_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct file_bdev *f = fb_bdev_get_module_ctx(bdev);

	fb_json_write_named_object_begin(w, f->aio ? "aio" : "uring");
	fb_json_write_named_string(w, "filename", f->path);
	fb_json_write_named_bool(w, "direct_io", f->direct);
	if (f->beneath)
		fb_json_write_named_string(w, "beneath", f->beneath);
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table file_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = file_destruct,
	.submit_request = file_submit,
	.io_type_supported = file_io_type_supported,
	.channel_create = file_channel_create,
	.channel_destroy = file_channel_destroy,
	.write_config_json = file_write_config,
	.dump_info_json = file_dump_info,
};

/* Can this fd do O_DIRECT with block_size-aligned I/O? Fills the alignments. */
static bool direct_probe(int fd, uint32_t block_size, uint32_t *mem_align, uint32_t *len_align)
{
	struct statx stx;
	void *buf = NULL;
	bool ok = false;
	ssize_t n;

	*mem_align = 512;
	*len_align = 512;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
		if (stx.stx_dio_offset_align == 0)
			goto out; /* the filesystem says: no O_DIRECT */
		*mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 512;
		*len_align = stx.stx_dio_offset_align;
	}
	if (block_size % *len_align != 0)
		goto out;
	if (posix_memalign(&buf, 4096, block_size) != 0)
		goto out;
	n = pread(fd, buf, block_size, 0);
	ok = n >= 0;
out:
	free(buf);
	return ok;
}

/* Open path for read-write, inside beneath when given: resolved by
 * openat2(RESOLVE_BENEATH) relative to that directory, so neither ".." nor a
 * symlink (absolute or relative) leads out of it. */
static int file_open(const char *path, const char *beneath, struct fb_err *err)
{
	struct open_how how = {.flags = O_RDWR | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	size_t blen;
	int dfd, fd, saved;

	if (!beneath) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			fb_err_set(err, "cannot open filename '%s': %s; create the file first (e.g. truncate -s 1G)",
				   path, strerror(errno));
		return fd < 0 ? -errno : fd;
	}
	blen = strlen(beneath);
	while (blen > 1 && beneath[blen - 1] == '/')
		blen--;
	if (beneath[0] != '/' || strncmp(path, beneath, blen) != 0 || path[blen] != '/' || !path[blen + 1]) {
		fb_err_set(err, "filename '%s' is not inside beneath '%s'; pass a path below that directory",
			   path, beneath);
		return -EINVAL;
	}
	dfd = open(beneath, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		saved = errno;
		fb_err_set(err, "cannot open beneath directory '%s': %s", beneath, strerror(saved));
		return -saved;
	}
	fd = (int)syscall(SYS_openat2, dfd, path + blen + 1, &how, sizeof(how));
	saved = errno;
	close(dfd);
	if (fd >= 0)
		return fd;
	if (saved == EXDEV || saved == ELOOP)
		fb_err_set(err, "filename '%s' resolves outside '%s' (a symlink or \"..\" leads out of it); "
			   "refusing to open it: put the file itself in that directory instead of a link to it",
			   path, beneath);
	else if (saved == ENOSYS)
		fb_err_set(err, "this kernel has no openat2 (Linux 5.6+), so filename '%s' cannot be confined to '%s'",
			   path, beneath);
	else
		fb_err_set(err, "cannot open filename '%s': %s; create the file first (e.g. truncate -s 1G)",
			   path, strerror(saved));
	return -saved;
}

/* Claim a block device exclusively (O_EXCL): the kernel refuses while a
 * filesystem is mounted on it, another device (dm, md, loop) holds it or
 * another opener claimed it, and keeps the others out while we serve it.
 * Replaces *fd with the claiming one; the node must still be the device. */
static int file_claim_blockdev(const char *path, int *fd, const struct stat *st, struct fb_err *err)
{
	struct stat st2;
	int xfd = open(path, O_RDWR | O_CLOEXEC | O_EXCL), saved;

	if (xfd < 0) {
		saved = errno;
		if (saved == EBUSY)
			fb_err_set(err, "block device '%s' is in use (mounted, held by another device such as "
				   "dm/md/loop, or served already); unmount or release it, or pick another device",
				   path);
		else
			fb_err_set(err, "cannot open block device '%s' exclusively: %s", path, strerror(saved));
		return -saved;
	}
	if (fstat(xfd, &st2) != 0 || !S_ISBLK(st2.st_mode) || st2.st_rdev != st->st_rdev) {
		close(xfd);
		fb_err_set(err, "block device '%s' changed while it was opened; try again", path);
		return -EAGAIN;
	}
	close(*fd);
	*fd = xfd;
	return 0;
}

/* The file bdev already on this file (same engine), or NULL. */
static const struct file_bdev *file_find_open(struct fb_engine *e, const struct stat *st)
{
	for (const struct file_bdev *o = open_files; o; o = o->next)
		if (o->engine == e && o->dev == st->st_dev && o->ino == st->st_ino)
			return o;
	return NULL;
}

static int file_create(struct fb_engine *e, const char *name, const char *path, const char *beneath,
		       uint32_t block_size, uint32_t flags, bool aio, const struct fb_uuid *uuid,
		       struct fb_err *err)
{
	struct file_bdev *f = NULL;
	struct fb_bdev_register_opts p;
	struct stat st;
	uint64_t size = 0;
	int fd = -1, rc = 0;
	bool listed = false;

	if (!path || !*path) {
		fb_err_set(err, "filename is required");
		rc = -EINVAL;
		goto out;
	}
	if (flags & ~(FILE_NO_DIRECT | FILE_DIRECT | FILE_NO_FALLOCATE)) {
		fb_err_set(err, "flags 0x%x has unknown bits", flags);
		rc = -EINVAL;
		goto out;
	}
	if ((flags & FILE_NO_DIRECT) && (flags & FILE_DIRECT)) {
		fb_err_set(err, "flags FILE_NO_DIRECT and FILE_DIRECT exclude each other");
		rc = -EINVAL;
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		goto nomem;
	f->fd = -1;
	fd = file_open(path, beneath, err);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		fb_err_set(err, "cannot stat '%s': %s", path, strerror(errno));
		goto out;
	}
	if (beneath && !S_ISREG(st.st_mode)) {
		fb_err_set(err, "filename '%s' under beneath '%s' is not a regular file; only regular files "
			   "are served from that directory (name block devices by their /dev path)", path, beneath);
		rc = -EINVAL;
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		int lbs = 512;

		rc = file_claim_blockdev(path, &fd, &st, err);
		if (rc)
			goto out;
		if (ioctl(fd, BLKGETSIZE64, &size) != 0 || ioctl(fd, BLKSSZGET, &lbs) != 0) {
			rc = -errno;
			fb_err_set(err, "cannot query block device '%s': %s", path, strerror(errno));
			goto out;
		}
		if (block_size == 0)
			block_size = (uint32_t)lbs;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		fb_err_set(err, "filename '%s' is neither a regular file nor a block device", path);
		rc = -EINVAL;
		goto out;
	}
	if (block_size == 0)
		block_size = 512;
	rc = spdk_block_size_check(block_size, err);
	if (rc)
		goto out;
	if (size / block_size == 0) {
		fb_err_set(err, "filename '%s' is smaller than one block (%u bytes); size it first "
			   "(e.g. truncate -s 1G)", path, block_size);
		rc = -EINVAL;
		goto out;
	}
	if (!(flags & FILE_NO_DIRECT)) {
		/* O_DIRECT on the same open file (F_SETFL), so confinement and the
		 * device claim hold for the fd we keep. */
		int fl = fcntl(fd, F_GETFL);

		if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
			if (direct_probe(fd, block_size, &f->mem_align, &f->len_align))
				f->direct = true;
			else
				(void)fcntl(fd, F_SETFL, fl);
		}
		if (!f->direct && (flags & FILE_DIRECT)) {
			fb_err_set(err, "filename '%s' does not support O_DIRECT with block_size %u; "
				   "drop the direct-I/O requirement or use another filesystem", path, block_size);
			rc = -EINVAL;
			goto out;
		}
	}
	if (!f->direct) {
		f->mem_align = 1;
		f->len_align = 1;
	}
	if (posix_memalign(&f->zero_buf, 4096, ZERO_BUF_LEN) != 0) {
		f->zero_buf = NULL;
		goto nomem;
	}
	memset(f->zero_buf, 0, ZERO_BUF_LEN);
	f->path = strdup(path);
	f->name = strdup(name ? name : "");
	if (!f->path || !f->name || (beneath && !(f->beneath = strdup(beneath))))
		goto nomem;
	f->engine = e;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->fd = fd;
	fd = -1;
	atomic_init(&f->no_zero_range, (flags & FILE_NO_FALLOCATE) != 0);
	atomic_init(&f->no_punch, (flags & FILE_NO_FALLOCATE) != 0);
	f->aio = aio;
	f->flags = flags;
	/* Listed before registering, so two creates racing on one file cannot both pass. */
	pthread_mutex_lock(&open_files_lock);
	{
		const struct file_bdev *o = S_ISREG(st.st_mode) ? file_find_open(e, &st) : NULL;

		if (o) {
			fb_err_set(err, "filename '%s' already backs bdev '%s' (as '%s'); one file backs one bdev: "
				   "use another file", path, o->name, o->path);
			rc = -EBUSY;
		} else {
			f->next = open_files;
			open_files = f;
			listed = true;
		}
	}
	pthread_mutex_unlock(&open_files_lock);
	if (rc)
		goto out;
	memset(&p, 0, sizeof(p));
	p.size = sizeof(p);
	p.name = name;
	p.uuid = *uuid;
	p.block_size = block_size;
	p.num_blocks = size / block_size;
	p.module = &file_module;
	p.fn = &file_fn;
	p.ctx = f;
	p.product_name = aio ? "AIO disk" : "URING bdev";
	rc = fb_bdev_register(e, &p, NULL, err);
	if (rc == 0)
		f = NULL;
	goto out;
nomem:
	fb_err_set(err, "out of memory creating file bdev '%s'", name ? name : "");
	rc = -ENOMEM;
out:
	if (fd >= 0)
		close(fd);
	if (f) {
		if (listed) {
			pthread_mutex_lock(&open_files_lock);
			for (struct file_bdev **pp = &open_files; *pp; pp = &(*pp)->next) {
				if (*pp == f) {
					*pp = f->next;
					break;
				}
			}
			pthread_mutex_unlock(&open_files_lock);
		}
		if (f->fd >= 0)
			close(f->fd);
		free(f->zero_buf);
		free(f->name);
		free(f->beneath);
		free(f->path);
		free(f);
	}
	return rc;
}

/* ------------------------------------------------------------------ RPC */

struct file_create_params {
	char *name;
	char *filename;
	uint32_t block_size;
	struct fb_uuid uuid;
	int direct_io; /* -1 absent, 0 never, 1 required */
	bool fallocate;
	bool readonly, nowait; /* aio: SPDK's defaults only */
	char *beneath;
};

/* A bool decoded into a tri-state, so "absent" stays distinguishable. */
static int file_decode_direct(const struct fb_json_val *v, void *out, struct fb_err *err)
{
	bool b;

	if (fb_json_val_bool(v, &b) != 0) {
		char *got = fb_json_val_dump(v);

		fb_err_set(err, "must be a boolean, got %s", got ? got : "another type");
		free(got);
		return -EINVAL;
	}
	*(int *)out = b;
	return 0;
}

#define FILE_COMMON_FIELDS                                                                        \
	{.name = "name", .offset = offsetof(struct file_create_params, name),                     \
	 .type = FB_JSON_STRING, .min = 1, .max = 255, .hint = SPDK_NAME_HINT},                   \
	{.name = "filename", .offset = offsetof(struct file_create_params, filename),             \
	 .type = FB_JSON_STRING, .min = 1,                                                        \
	 .hint = "the path of an existing file or block device, e.g. \"/var/lib/flexbso/disk0.img\""}, \
	{.name = "block_size", .offset = offsetof(struct file_create_params, block_size),         \
	 .type = FB_JSON_U32, .optional = true,                                                   \
	 .hint = SPDK_BLOCK_SIZE_HINT "; omit it to use the file's or device's own"},             \
	{.name = "uuid", .offset = offsetof(struct file_create_params, uuid), .type = FB_JSON_UUID, \
	 .optional = true, .hint = SPDK_UUID_HINT},                                               \
	{.name = "direct_io", .offset = offsetof(struct file_create_params, direct_io),           \
	 .type = FB_JSON_CUSTOM, .optional = true, .decode = file_decode_direct,                  \
	 .hint = "true to require O_DIRECT, false to never use it; omit it for O_DIRECT where "   \
		 "the filesystem allows it (a FlexBSO extension)"},                                      \
	{.name = "beneath", .offset = offsetof(struct file_create_params, beneath),               \
	 .type = FB_JSON_STRING, .optional = true, .min = 1,                                      \
	 .hint = "an absolute directory the filename must resolve inside, with no symlink or "    \
		 "\"..\" leading out, e.g. \"/var/lib/flexbso/files\" (a FlexBSO extension)"}

static const struct fb_json_field uring_create_fields[] = {
	FILE_COMMON_FIELDS,
	{.name = "fallocate", .offset = offsetof(struct file_create_params, fallocate),
	 .type = FB_JSON_BOOL, .optional = true,
	 .hint = "false to write zeros instead of using fallocate for unmap and write-zeroes "
		 "(a thick image), or leave it out (a FlexBSO extension)"},
};

static const struct fb_json_field aio_create_fields[] = {
	FILE_COMMON_FIELDS,
	{.name = "readonly", .offset = offsetof(struct file_create_params, readonly),
	 .type = FB_JSON_BOOL, .optional = true, .decode = spdk_false_only,
	 .hint = "false or leave it out (a read-only file bdev is not supported by this engine; "
		 "export it with readonly: true instead)"},
	{.name = "fallocate", .offset = offsetof(struct file_create_params, fallocate),
	 .type = FB_JSON_BOOL, .optional = true, .decode = spdk_false_only,
	 .hint = "false or leave it out (the fallocate switch is not supported by this engine: "
		 "unmap and write-zeroes are always on)"},
	{.name = "nowait", .offset = offsetof(struct file_create_params, nowait),
	 .type = FB_JSON_BOOL, .optional = true, .decode = spdk_false_only,
	 .hint = "false or leave it out (RWF_NOWAIT is not supported by this engine)"},
};

static void file_params_init(void *params)
{
	struct file_create_params *p = params;

	p->fallocate = true;
	p->direct_io = -1;
}

static int file_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			   struct fb_err *err, bool aio)
{
	const struct file_create_params *p = params;
	uint32_t flags = 0;
	int rc;

	if (p->direct_io >= 0)
		flags |= p->direct_io ? FILE_DIRECT : FILE_NO_DIRECT;
	if (!aio && !p->fallocate)
		flags |= FILE_NO_FALLOCATE;
	rc = file_create(e, p->name, p->filename, p->beneath, p->block_size, flags, aio, &p->uuid, err);
	if (rc == 0)
		fb_json_write_string(w, p->name);
	return rc;
}

static int uring_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			    struct fb_err *err)
{
	return file_rpc_create(e, params, w, err, false);
}

static int aio_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			  struct fb_err *err)
{
	return file_rpc_create(e, params, w, err, true);
}

FB_SPDK_DELETE_RPC(file_rpc_delete, file_module)

static const struct fb_rpc_method file_rpcs[] = {
	{.name = "bdev_uring_create", .params = uring_create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(uring_create_fields),
	 .params_size = sizeof(struct file_create_params), .params_init = file_params_init,
	 .handler = uring_rpc_create},
	FB_SPDK_DELETE_METHOD("bdev_uring_delete", file_rpc_delete),
	{.name = "bdev_aio_create", .params = aio_create_fields,
	 .nparams = FB_JSON_FIELD_COUNT(aio_create_fields),
	 .params_size = sizeof(struct file_create_params), .params_init = file_params_init,
	 .handler = aio_rpc_create},
	FB_SPDK_DELETE_METHOD("bdev_aio_delete", file_rpc_delete),
};

static struct fb_bdev_module file_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "file",
	.product_name = "URING bdev",
	.io_ctx_size = sizeof(struct file_io),
	.channel_ctx_size = sizeof(struct file_channel),
	.rpcs = file_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(file_rpcs),
};
FB_BDEV_MODULE_REGISTER(file_module)
