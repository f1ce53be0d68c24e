/* RAID bdev module: registration, the array's lifecycle, its channels, I/O
 * dispatch and the child-I/O fan-out every level uses. Geometry is in
 * raid.h; the levels are mirror.c (0, 1, 10) and raid5.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "raid.h"
#include "raid_rpc.h"

struct raid_module {
	pthread_mutex_t mu;
	struct raid_bdev *head;
};

static int raid_module_init(struct fb_engine *e, void **ctx, struct fb_err *err)
{
	struct raid_module *m = calloc(1, sizeof(*m));

	(void)e;
	if (!m) {
		fb_err_set(err, "out of memory initializing the raid module");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->mu, NULL);
	*ctx = m;
	return 0;
}

static void raid_module_fini(struct fb_engine *e, void *ctx)
{
	struct raid_module *m = ctx;
	struct raid_bdev *r, *next;

	(void)e;
	/* Arrays still configuring (members missing) were never registered. */
	for (r = m->head; r; r = next) {
		next = r->next;
		raid_free(r);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

const struct fb_bdev_module raid_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "raid",
	.product_name = "Raid Volume",
	.io_ctx_size = sizeof(struct raid_io),
	.channel_ctx_size = sizeof(struct raid_channel),
	.init = raid_module_init,
	.fini = raid_module_fini,
	.examine = raid_sb_examine,
	.rpcs = raid_rpc_methods,
	.nrpcs = RAID_RPC_COUNT,
};
FB_BDEV_MODULE_REGISTER(raid_module)

static struct raid_module *module_of(struct fb_engine *e)
{
	return fb_bdev_module_get_ctx(e, &raid_module);
}

void raid_registry_lock(struct fb_engine *e)
{
	pthread_mutex_lock(&module_of(e)->mu);
}

void raid_registry_unlock(struct fb_engine *e)
{
	pthread_mutex_unlock(&module_of(e)->mu);
}

struct raid_bdev *raid_registry_first(struct fb_engine *e)
{
	return module_of(e)->head;
}

void raid_registry_add(struct raid_bdev *r)
{
	struct raid_module *m = module_of(r->e);

	r->next = m->head;
	m->head = r;
}

void raid_registry_remove(struct raid_bdev *r)
{
	struct raid_module *m = module_of(r->e);

	for (struct raid_bdev **p = &m->head; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			return;
		}
	}
}

/* Caller holds the registry lock. */
struct raid_bdev *raid_find(struct fb_engine *e, const char *name)
{
	for (struct raid_bdev *r = module_of(e)->head; r; r = r->next) {
		char u[FB_UUID_STR_LEN];

		fb_uuid_fmt(&r->uuid, u);
		if (!strcmp(r->name, name) || !strcmp(u, name))
			return r;
	}
	return NULL;
}

const char *raid_level_name(enum raid_level l)
{
	switch (l) {
	case RAID_L0: return "raid0";
	case RAID_L1: return "raid1";
	case RAID_L5: return "raid5f";
	default: return "raid10";
	}
}

const char *raid_member_state_name(int s)
{
	switch (s) {
	case MEMBER_ONLINE: return "online";
	case MEMBER_FAILED: return "failed";
	case MEMBER_REBUILDING: return "rebuilding";
	default: return "missing";
	}
}

static const char *state_name(int s)
{
	return s == RAID_ONLINE ? "online" : s == RAID_CONFIGURING ? "configuring" : "offline";
}

/* ------------------------------------------------------------ metadata */

static void *md_main(void *arg)
{
	struct raid_bdev *r = arg;

	pthread_mutex_lock(&r->md_mu);
	for (;;) {
		while (!r->md_sb_dirty && !r->md_stop && !r->md_rebuilt)
			pthread_cond_wait(&r->md_cv, &r->md_mu);
		if (r->md_stop)
			break;
		if (r->md_rebuilt) {
			/* Without ctl_mu: control paths hold it while they wait for
			 * the walk to be done, which this ends. */
			r->md_rebuilt = false;
			pthread_mutex_unlock(&r->md_mu);
			raid_bg_rebuild_finish(r);
			pthread_mutex_lock(&r->md_mu);
			continue;
		}
		r->md_sb_dirty = false;
		pthread_mutex_unlock(&r->md_mu);
		pthread_mutex_lock(&r->ctl_mu);
		if (r->superblock) {
			struct fb_err err;

			if (raid_sb_write_all(r, &err))
				fb_log(r->e, FB_LOG_ERROR, "raid '%s': superblock update failed: %s",
				       r->name, err.msg);
		}
		pthread_mutex_unlock(&r->ctl_mu);
		pthread_mutex_lock(&r->md_mu);
	}
	pthread_mutex_unlock(&r->md_mu);
	return NULL;
}

void raid_md_kick(struct raid_bdev *r)
{
	pthread_mutex_lock(&r->md_mu);
	r->md_sb_dirty = true;
	pthread_cond_signal(&r->md_cv);
	pthread_mutex_unlock(&r->md_mu);
}

bool raid_plain_name(const char *s)
{
	if (!s || !*s || strlen(s) > 100)
		return false;
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return false;
	return true;
}

void raid_notify(struct raid_bdev *r, const char *type, const char *fmt, ...)
{
	char ctx[768];
	int len;
	va_list ap;

	/* Array and member names are checked at create to need no escaping. */
	len = snprintf(ctx, sizeof(ctx), "{\"array\":\"%s\"", r->name);
	if (len < 0 || (size_t)len >= sizeof(ctx) - 2)
		return;
	if (fmt && *fmt) {
		ctx[len++] = ',';
		va_start(ap, fmt);
		vsnprintf(ctx + len, sizeof(ctx) - (size_t)len - 1, fmt, ap);
		va_end(ap);
		len = (int)strlen(ctx);
	}
	if ((size_t)len + 1 >= sizeof(ctx))
		return;
	ctx[len++] = '}';
	ctx[len] = 0;
	fb_notify(r->e, type, ctx);
}

/* Whether the array still has every block after its failures. */
bool raid_data_available(struct raid_bdev *r)
{
	unsigned lost = 0;

	for (unsigned i = 0; i < r->n; i++)
		lost += atomic_load(&r->m[i].state) != MEMBER_ONLINE;
	if (r->level == RAID_L0)
		return lost == 0;
	if (r->level == RAID_L5)
		return lost <= 1;
	for (unsigned g = 0; g < (r->level == RAID_L1 ? 1u : r->ngroups); g++) {
		unsigned first = r->level == RAID_L1 ? 0 : g * r->ncopies, ok = 0;

		for (unsigned k = 0; k < r->ncopies; k++)
			ok += atomic_load(&r->m[first + k].state) == MEMBER_ONLINE;
		if (!ok)
			return false;
	}
	return true;
}

/* Any thread. The first failure of a member notifies and rewrites the
 * superblocks of the others (on the metadata thread). */
void raid_member_fail(struct raid_bdev *r, unsigned i, const char *why)
{
	int s = atomic_load(&r->m[i].state);

	while (s == MEMBER_ONLINE || s == MEMBER_REBUILDING) {
		if (atomic_compare_exchange_weak(&r->m[i].state, &s, MEMBER_FAILED)) {
			unsigned failed = 0;

			for (unsigned k = 0; k < r->n; k++)
				failed += atomic_load(&r->m[k].state) != MEMBER_ONLINE;
			fb_log(r->e, FB_LOG_ERROR, "raid '%s': member %u '%s' failed (%s); %s",
			       r->name, i, r->m[i].name ? r->m[i].name : "?", why,
			       r->level == RAID_L0 ? "array offline" : "array degraded");
			raid_notify(r, "raid_member_failed",
				    "\"member\":\"%s\",\"slot\":%u,\"reason\":\"%s\",\"failed_members\":%u",
				    r->m[i].name ? r->m[i].name : "", i, why, failed);
			if (!raid_data_available(r)) {
				int st = RAID_ONLINE;

				if (atomic_compare_exchange_strong(&r->state, &st, RAID_OFFLINE)) {
					fb_log(r->e, FB_LOG_ERROR, "raid '%s' is offline: too many members "
					       "lost", r->name);
					raid_notify(r, "raid_offline", "\"member\":\"%s\"",
						    r->m[i].name ? r->m[i].name : "");
				}
			}
			if (r->md_started)
				raid_md_kick(r);
			return;
		}
	}
}

/* ------------------------------------------------------------ CRC */

uint32_t raid_crc_block(const void *buf, uint32_t len)
{
	return crc32_iscsi((unsigned char *)buf, (int)len, 0xffffffffu);
}

/* Walks the blocks of an iovec list (blocks may straddle entries). */
static uint32_t crc_of_block(const struct iovec *iov, int iovcnt, size_t off, uint32_t bs)
{
	uint32_t crc = 0xffffffffu;
	size_t left = bs;

	for (int i = 0; i < iovcnt && left; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - off < left ? iov[i].iov_len - off : left;

		crc = crc32_iscsi((unsigned char *)iov[i].iov_base + off, (int)take, crc);
		left -= take;
		off = 0;
	}
	return crc;
}

void raid_crc_update_iov(struct raid_bdev *r, unsigned member, uint64_t member_data_off,
			 uint64_t num, const struct iovec *iov, int iovcnt)
{
	_Atomic uint32_t *crc = r->m[member].crc;

	if (!crc)
		return;
	for (uint64_t b = 0; b < num; b++)
		atomic_store_explicit(&crc[member_data_off + b],
				      crc_of_block(iov, iovcnt, b * r->block_size, r->block_size),
				      memory_order_relaxed);
}

int64_t raid_crc_check_iov(struct raid_bdev *r, unsigned member, uint64_t member_data_off,
			   uint64_t num, const struct iovec *iov, int iovcnt)
{
	_Atomic uint32_t *crc = r->m[member].crc;

	if (!crc)
		return -1;
	for (uint64_t b = 0; b < num; b++) {
		uint32_t want = atomic_load_explicit(&crc[member_data_off + b], memory_order_relaxed);

		if (crc_of_block(iov, iovcnt, b * r->block_size, r->block_size) != want)
			return (int64_t)b;
	}
	return -1;
}

/* ------------------------------------------------------------ child I/O */

struct raid_child *raid_child_add(struct raid_io *rio, unsigned member, enum fb_io_type type,
				  uint64_t member_data_off, uint64_t num)
{
	struct raid_child *c = &rio->c[rio->nchild++];

	c->rio = rio;
	c->member = member;
	c->type = type;
	c->off = rio->r->data_offset + member_data_off;
	c->num = num;
	c->flags = 0;
	c->iovcnt = 0;
	c->status = 1;  /* not done */
	c->prep = NULL;
	return c;
}

static void child_done(struct fb_bdev_io *bio, int status, void *arg);
static void remote_done(struct fb_bdev_io *bio, int status, void *arg);

static void children_check_done(struct raid_io *rio)
{
	if (rio->outstanding == 0 && rio->next_child == rio->nchild) {
		void (*after)(struct raid_io *) = rio->after;

		after(rio);
	}
}

static void children_resume(void *arg)
{
	raid_children_run(arg);
}

static int child_submit(struct raid_child *c, struct fb_io_channel *bch, fb_bdev_io_cb cb)
{
	struct fb_bdev_desc *desc = c->rio->r->m[c->member].desc;

	if (c->prep) {
		c->prep(c);
		c->prep = NULL;
	}
	switch (c->type) {
	case FB_IO_READ:
		return fb_bdev_readv_blocks(desc, bch, c->iov, c->iovcnt, c->off, c->num, cb, c);
	case FB_IO_WRITE:
		return fb_bdev_writev_blocks(desc, bch, c->iov, c->iovcnt, c->off, c->num, c->flags,
					     cb, c);
	default:
		return fb_bdev_flush_blocks(desc, bch, c->off, c->num, cb, c);
	}
}

/* On the array I/O's reactor: a child has completed (here or at home). */
static void child_finish(struct raid_child *c, int status)
{
	struct raid_io *rio = c->rio;

	atomic_fetch_sub(&rio->r->m[c->member].inflight, 1);
	c->status = status;
	if (status && status != -ENOMEM)
		atomic_fetch_add(&rio->r->m[c->member].io_errors, 1);
	rio->outstanding--;
	children_check_done(rio);
}

static void remote_back(void *arg)
{
	struct raid_child *c = arg;

	child_finish(c, c->status);
}

/* On the member's home reactor. The member's home channel stays until
 * detach has seen inflight reach 0, which includes this child. */
static void remote_start(void *arg)
{
	struct raid_child *c = arg;
	struct raid_bdev *r = c->rio->r;
	struct fb_io_channel *bch = r->hch[c->member];
	int rc = -ENODEV;

	if (bch && r->m[c->member].desc)
		rc = child_submit(c, bch, remote_done);
	if (rc == -ENOMEM) {
		c->wait.cb = remote_start;
		c->wait.arg = c;
		fb_io_channel_queue_wait(bch, &c->wait);
		return;
	}
	if (rc) {
		c->status = rc;
		fb_reactor_send_node(c->origin, &c->msg, remote_back, c);
	}
}

static void remote_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct raid_child *c = arg;

	fb_bdev_free_io(bio);
	c->status = status;
	fb_reactor_send_node(c->origin, &c->msg, remote_back, c);
}

/* Whether child c goes to its member's home reactor: large enough that
 * the member's copy is worth a round trip of messages. */
static struct fb_reactor *child_home(struct raid_io *rio, struct raid_child *c,
				     struct fb_reactor *here)
{
	struct raid_bdev *r = rio->r;
	struct fb_reactor *h = r->home[c->member];

	if (!h || h == here || c->type == FB_IO_FLUSH ||
	    c->num * r->block_size < RAID_SPREAD_MIN_BYTES)
		return NULL;
	return h;
}

void raid_children_run(struct raid_io *rio)
{
	struct raid_channel *rch = fb_io_channel_get_ctx(rio->ch);
	struct raid_bdev *r = rio->r;
	struct fb_reactor *here = fb_io_channel_get_reactor(rio->ch);

	/* Guard so a child that completes inline does not run `after` before
	 * the loop has started every child. */
	rio->outstanding++;
	while (rio->next_child < rio->nchild) {
		struct raid_child *c = &rio->c[rio->next_child];
		struct fb_io_channel *bch = rch->ch[c->member];
		struct fb_reactor *home;
		int rc;

		/* No channel here: the member is being detached (or failed). */
		if (!r->m[c->member].desc || !bch) {
			c->status = -ENODEV;
			rio->next_child++;
			continue;
		}
		rio->outstanding++;
		atomic_fetch_add(&r->m[c->member].inflight, 1);
		home = child_home(rio, c, here);
		if (home) {
			c->origin = here;
			rio->next_child++;
			fb_reactor_send_node(home, &c->msg, remote_start, c);
			continue;
		}
		rc = child_submit(c, bch, child_done);
		if (rc)
			atomic_fetch_sub(&r->m[c->member].inflight, 1);
		if (rc == -ENOMEM) {
			rio->outstanding--;
			rio->wait.cb = children_resume;
			rio->wait.arg = rio;
			fb_io_channel_queue_wait(bch, &rio->wait);
			/* Drop the guard without finishing: the wait resumes us. */
			rio->outstanding--;
			return;
		}
		rio->next_child++;
		if (rc) {
			rio->outstanding--;
			c->status = rc;
		}
	}
	rio->outstanding--;
	children_check_done(rio);
}

static void child_done(struct fb_bdev_io *bio, int status, void *arg)
{
	fb_bdev_free_io(bio);
	child_finish(arg, status);
}

/* ------------------------------------------------------------ per-I/O */

void *raid_scratch_get(struct raid_io *rio, size_t len)
{
	if (rio->buf && rio->buf_len >= len)
		return rio->buf;
	raid_scratch_put(rio);
	rio->buf = fb_io_channel_get_buf(rio->ch, len);
	rio->buf_len = rio->buf ? len : 0;
	return rio->buf;
}

void raid_scratch_put(struct raid_io *rio)
{
	if (rio->buf)
		fb_io_channel_put_buf(rio->ch, rio->buf, rio->buf_len);
	rio->buf = NULL;
	rio->buf_len = 0;
}

static void lock_granted(struct raid_lock_waiter *w)
{
	struct raid_io *rio = (struct raid_io *)((char *)w - offsetof(struct raid_io, lw));
	void (*next)(struct raid_io *) = rio->after;

	rio->locked = true;
	next(rio);
}

void raid_io_lock(struct raid_io *rio, void (*next)(struct raid_io *rio))
{
	if (rio->locked) {
		next(rio);
		return;
	}
	rio->lw.key = rio->row;
	rio->lw.r = fb_io_channel_get_reactor(rio->ch);
	rio->lw.granted = lock_granted;
	rio->after = next;
	if (raid_lock_try(rio->r, &rio->lw)) {
		rio->locked = true;
		next(rio);
	}
}

void raid_io_unlock(struct raid_io *rio)
{
	if (rio->locked) {
		rio->locked = false;
		raid_lock_release(rio->r, rio->row);
	}
}

void raid_io_finish(struct raid_io *rio, int status)
{
	raid_scratch_put(rio);
	raid_bm_end(rio);
	raid_io_unlock(rio);
	fb_bdev_io_complete(rio->io, status);
}

static void flush_done(struct raid_io *rio)
{
	unsigned ok = 0;

	for (unsigned k = 0; k < rio->nchild; k++) {
		if (rio->c[k].status)
			raid_member_fail(rio->r, rio->c[k].member, "flush failed");
		else
			ok++;
	}
	/* A member that fails its flush is failed; the flush succeeds when
	 * the data is still whole on the members that did flush. */
	raid_io_finish(rio, ok && atomic_load(&rio->r->state) == RAID_ONLINE ? 0 : -EIO);
}

static void raid_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct raid_io *rio = fb_bdev_io_get_driver_ctx(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io);
	uint64_t rb = raid_io_boundary(r);

	memset(rio, 0, offsetof(struct raid_io, c));
	rio->io = io;
	rio->ch = ch;
	rio->r = r;
	rio->row = off / rb;
	rio->off_in_row = off % rb;
	rio->num = fb_bdev_io_get_num_blocks(io);
	if (atomic_load_explicit(&r->state, memory_order_acquire) != RAID_ONLINE) {
		fb_bdev_io_complete(io, -EIO);
		return;
	}
	switch (fb_bdev_io_get_type(io)) {
	case FB_IO_READ:
	case FB_IO_WRITE:
		/* The core splits on optimal_io_boundary (the row or strip). */
		if (rio->off_in_row + rio->num > rb) {
			fb_bdev_io_complete(io, -EINVAL);
			return;
		}
		if (r->level == RAID_L5)
			raid5_submit(rio);
		else
			raid_mirror_submit(rio);
		return;
	case FB_IO_FLUSH:
		for (unsigned i = 0; i < r->n; i++) {
			if (atomic_load(&r->m[i].state) == MEMBER_ONLINE ||
			    atomic_load(&r->m[i].state) == MEMBER_REBUILDING) {
				struct raid_child *c = raid_child_add(rio, i, FB_IO_FLUSH, 0, 0);

				c->off = 0;
				c->num = 0;
			}
		}
		rio->after = flush_done;
		raid_children_run(rio);
		return;
	default:
		fb_bdev_io_complete(io, -ENOTSUP);
		return;
	}
}

static bool raid_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_WRITE || type == FB_IO_FLUSH;
}

static int raid_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(bdev);
	struct raid_channel *rch = ctx;

	/* No ctl_mu here: control paths hold it while waiting on reactors. */
	for (unsigned i = 0; i < r->n; i++) {
		if (r->m[i].desc && atomic_load(&r->m[i].state) != MEMBER_MISSING) {
			rch->ch[i] = fb_bdev_get_io_channel(r->m[i].desc);
			if (!rch->ch[i]) {
				for (unsigned k = 0; k < i; k++)
					if (rch->ch[k])
						fb_put_io_channel(rch->ch[k]);
				return -ENOMEM;
			}
		}
	}
	return 0;
}

static void raid_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(bdev);
	struct raid_channel *rch = ctx;

	for (unsigned i = 0; i < r->n; i++)
		if (rch->ch[i])
			fb_put_io_channel(rch->ch[i]);
}

/* ------------------------------------------------------------ info */

void raid_write_info(struct raid_bdev *r, struct fb_json_writer *w)
{
	char u[FB_UUID_STR_LEN];
	unsigned discovered = 0, operational = 0;

	pthread_mutex_lock(&r->info_mu);
	for (unsigned i = 0; i < r->n; i++) {
		int s = atomic_load(&r->m[i].state);

		discovered += s == MEMBER_ONLINE || s == MEMBER_REBUILDING;
		operational += s == MEMBER_ONLINE;
	}
	fb_uuid_fmt(&r->uuid, u);
	fb_json_write_named_string(w, "name", r->name);
	fb_json_write_named_string(w, "uuid", u);
	fb_json_write_named_uint64(w, "strip_size_kb",
				   (uint64_t)r->strip_blocks * r->block_size / 1024);
	fb_json_write_named_string(w, "state", state_name(atomic_load(&r->state)));
	fb_json_write_named_string(w, "raid_level", raid_level_name(r->level));
	fb_json_write_named_bool(w, "superblock", r->superblock);
	fb_json_write_named_uint64(w, "num_base_bdevs", r->n);
	fb_json_write_named_uint64(w, "num_base_bdevs_discovered", discovered);
	fb_json_write_named_uint64(w, "num_base_bdevs_operational", operational);
	fb_json_write_named_string(w, "safe_read",
				   atomic_load(&r->safe_read) == SAFE_READ_REPAIR ? "repair" :
				   atomic_load(&r->safe_read) == SAFE_READ_VERIFY ? "verify" : "off");
	fb_json_write_named_uint64(w, "generation", r->generation);
	fb_json_write_named_array_begin(w, "base_bdevs_list");
	for (unsigned i = 0; i < r->n; i++) {
		struct raid_member *m = &r->m[i];

		fb_json_write_object_begin(w);
		fb_json_write_named_string(w, "name", m->name);
		fb_uuid_fmt(&m->uuid, u);
		fb_json_write_named_string(w, "uuid", fb_uuid_is_null(&m->uuid) ? NULL : u);
		fb_json_write_named_bool(w, "is_configured",
					 atomic_load(&m->state) == MEMBER_ONLINE ||
					 atomic_load(&m->state) == MEMBER_REBUILDING);
		fb_json_write_named_uint64(w, "data_offset", r->data_offset);
		fb_json_write_named_uint64(w, "data_size", r->member_blocks);
		fb_json_write_named_string(w, "state", raid_member_state_name(atomic_load(&m->state)));
		fb_json_write_named_uint64(w, "io_errors", atomic_load(&m->io_errors));
		fb_json_write_named_uint64(w, "corrupt_blocks_found", atomic_load(&m->corrupt_found));
		fb_json_write_named_uint64(w, "blocks_repaired", atomic_load(&m->repaired));
		fb_json_write_object_end(w);
	}
	fb_json_write_array_end(w);
	fb_json_write_named_object_begin(w, "safe_read_stats");
	fb_json_write_named_uint64(w, "verify_mismatches", atomic_load(&r->verify_mismatches));
	fb_json_write_named_uint64(w, "repairs", atomic_load(&r->repairs));
	fb_json_write_named_uint64(w, "degraded_reads", atomic_load(&r->degraded_reads));
	fb_json_write_named_uint64(w, "bitmap_writes", atomic_load(&r->bitmap_writes));
	fb_json_write_object_end(w);
	if (r->bg.kind) {
		uint64_t row = atomic_load(&r->bg.row);

		fb_json_write_named_object_begin(w, "process");
		fb_json_write_named_string(w, "type", r->bg.kind == 1 ? "rebuild" : "scrub");
		if (r->bg.kind == 1)
			fb_json_write_named_string(w, "target", r->m[r->bg.member].name);
		fb_json_write_named_string(w, "status", atomic_load(&r->bg.done) ? "done" : "running");
		fb_json_write_named_object_begin(w, "progress");
		fb_json_write_named_uint64(w, "blocks", row * raid_row_blocks(r));
		fb_json_write_named_uint64(w, "percent", r->rows ? row * 100 / r->rows : 100);
		fb_json_write_object_end(w);
		fb_json_write_named_uint64(w, "rate_kb_per_sec", r->bg.rate_kbps);
		fb_json_write_named_uint64(w, "mismatches_found", atomic_load(&r->bg.found));
		fb_json_write_named_uint64(w, "repaired", atomic_load(&r->bg.repaired));
		fb_json_write_object_end(w);
	}
	pthread_mutex_unlock(&r->info_mu);
}

static void raid_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(bdev);

	fb_json_write_named_object_begin(w, "raid");
	raid_write_info(r, w);
	fb_json_write_object_end(w);
}

static void raid_write_config(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(bdev);
	char u[FB_UUID_STR_LEN];

	/* A superblock array reassembles from its members (SPDK's shape). */
	if (r->superblock)
		return;
	fb_uuid_fmt(&r->uuid, u);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_raid_create");
	fb_json_write_named_object_begin(w, "params");
	fb_json_write_named_string(w, "name", r->name);
	fb_json_write_named_string(w, "raid_level", raid_level_name(r->level));
	fb_json_write_named_uint64(w, "strip_size_kb", (uint64_t)r->strip_blocks * r->block_size / 1024);
	fb_json_write_named_string(w, "uuid", u);
	fb_json_write_named_bool(w, "superblock", false);
	fb_json_write_named_string(w, "safe_read",
				   atomic_load(&r->safe_read) == SAFE_READ_REPAIR ? "repair" :
				   atomic_load(&r->safe_read) == SAFE_READ_VERIFY ? "verify" : "off");
	fb_json_write_named_array_begin(w, "base_bdevs");
	for (unsigned i = 0; i < r->n; i++)
		fb_json_write_string(w, r->m[i].name);
	fb_json_write_array_end(w);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

/* ------------------------------------------------------------ lifecycle */

static void member_event(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx);

struct raid_bdev *raid_alloc(struct fb_engine *e, const char *name, enum raid_level level,
			     unsigned n, uint32_t strip_blocks, uint32_t block_size)
{
	struct raid_bdev *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->name = strdup(name);
	if (!r->name) {
		free(r);
		return NULL;
	}
	r->e = e;
	r->level = level;
	r->n = n;
	r->ncopies = level == RAID_L1 ? n : level == RAID_L10 ? 2 : 1;
	r->ngroups = level == RAID_L1 ? 1 : level == RAID_L10 ? n / 2 : level == RAID_L0 ? n : 1;
	r->strip_blocks = strip_blocks;
	r->block_size = block_size;
	atomic_init(&r->state, RAID_CONFIGURING);
	for (unsigned i = 0; i < RAID_MAX_MEMBERS; i++)
		atomic_init(&r->m[i].state, MEMBER_MISSING);
	raid_locks_init(r);
	pthread_mutex_init(&r->md_mu, NULL);
	pthread_cond_init(&r->md_cv, NULL);
	pthread_mutex_init(&r->ctl_mu, NULL);
	pthread_mutex_init(&r->info_mu, NULL);
	return r;
}

void raid_free(struct raid_bdev *r)
{
	if (r->md_started) {
		pthread_mutex_lock(&r->md_mu);
		r->md_stop = true;
		pthread_cond_signal(&r->md_cv);
		pthread_mutex_unlock(&r->md_mu);
		pthread_join(r->md_thread, NULL);
		r->md_started = false;
	}
	raid_bm_fini(r);
	for (unsigned i = 0; i < r->n; i++) {
		raid_member_close(r, i);
		free(r->m[i].name);
		free(r->m[i].crc);
	}
	raid_locks_fini(r);
	pthread_mutex_destroy(&r->md_mu);
	pthread_cond_destroy(&r->md_cv);
	pthread_mutex_destroy(&r->ctl_mu);
	pthread_mutex_destroy(&r->info_mu);
	free(r->name);
	free(r);
}

int raid_member_open(struct raid_bdev *r, unsigned i, const char *bdev_name, struct fb_err *err)
{
	struct fb_bdev_open_opts o = {.size = sizeof(o), .write = true, .event_cb = member_event};
	char holder[300];
	int rc;

	snprintf(holder, sizeof(holder), "raid bdev '%s'", r->name);
	o.holder = holder;
	o.event_ctx = r;
	rc = fb_bdev_open(r->e, bdev_name, &o, &r->m[i].desc, err);
	if (rc)
		return rc;
	rc = fb_bdev_claim(r->m[i].desc, &raid_module, err);
	if (rc) {
		fb_bdev_close(r->m[i].desc);
		r->m[i].desc = NULL;
		return rc;
	}
	return 0;
}

void raid_member_close(struct raid_bdev *r, unsigned i)
{
	if (r->m[i].desc) {
		fb_bdev_close(r->m[i].desc);
		r->m[i].desc = NULL;
	}
}

static void put_member_ch(struct fb_io_channel *ch, void *ch_ctx, void *arg)
{
	struct raid_channel *rch = ch_ctx;
	unsigned i = (unsigned)(uintptr_t)arg;

	(void)ch;
	if (rch->ch[i]) {
		fb_put_io_channel(rch->ch[i]);
		rch->ch[i] = NULL;
	}
}

struct member_arg {
	struct raid_bdev *r;
	unsigned i;
	int rc;
};

static void get_member_ch(struct fb_io_channel *ch, void *ch_ctx, void *arg)
{
	struct raid_channel *rch = ch_ctx;
	struct member_arg *a = arg;

	(void)ch;
	if (!rch->ch[a->i])
		rch->ch[a->i] = fb_bdev_get_io_channel(a->r->m[a->i].desc);
	if (!rch->ch[a->i])
		a->rc = -ENOMEM;
}

static void r0_put(void *arg)
{
	struct member_arg *a = arg;

	if (a->r->r0ch[a->i]) {
		fb_put_io_channel(a->r->r0ch[a->i]);
		a->r->r0ch[a->i] = NULL;
	}
}

static void r0_get(void *arg)
{
	struct member_arg *a = arg;

	if (!a->r->r0ch[a->i] && a->r->m[a->i].desc)
		a->r->r0ch[a->i] = fb_bdev_get_io_channel(a->r->m[a->i].desc);
	if (a->r->m[a->i].desc && !a->r->r0ch[a->i])
		a->rc = -ENOMEM;
}

static void home_put(void *arg)
{
	struct member_arg *a = arg;

	if (a->r->hch[a->i]) {
		fb_put_io_channel(a->r->hch[a->i]);
		a->r->hch[a->i] = NULL;
	}
}

static void home_get(void *arg)
{
	struct member_arg *a = arg;

	if (!a->r->hch[a->i] && a->r->m[a->i].desc)
		a->r->hch[a->i] = fb_bdev_get_io_channel(a->r->m[a->i].desc);
	if (a->r->m[a->i].desc && !a->r->hch[a->i])
		a->rc = -ENOMEM;
}

/* Control thread: member i's channels on reactor 0 and on its home
 * reactor: members spread over the reactors after reactor 0 (which also
 * runs the bitmap and the walks), or over both when there are two. */
static int fixed_ch_get(struct raid_bdev *r, unsigned i)
{
	unsigned nr = fb_engine_reactor_count(r->e);
	struct member_arg a = {.r = r, .i = i};

	fb_reactor_run_sync(fb_engine_get_reactor(r->e, 0), r0_get, &a);
	if (a.rc)
		return a.rc;
	r->home[i] = fb_engine_get_reactor(r->e, nr > 2 ? 1 + i % (nr - 1) : i % nr);
	fb_reactor_run_sync(r->home[i], home_get, &a);
	return a.rc;
}

static void fixed_ch_put(struct raid_bdev *r, unsigned i)
{
	struct member_arg a = {.r = r, .i = i};

	fb_reactor_run_sync(fb_engine_get_reactor(r->e, 0), r0_put, &a);
	if (r->home[i])
		fb_reactor_run_sync(r->home[i], home_put, &a);
}

/* Control thread: channels for member i on every reactor (after its desc
 * is open), so I/O can start going to it. */
int raid_member_attach_channels(struct raid_bdev *r, unsigned i)
{
	struct member_arg a = {.r = r, .i = i};

	/* Home channel first: a reactor that sees the member's channel may
	 * send a child home at once. */
	a.rc = fixed_ch_get(r, i);
	if (r->bdev)
		fb_bdev_for_each_channel(r->bdev, get_member_ch, &a, NULL);
	return a.rc;
}

/* Control thread: stop using member i on every reactor and close it. */
void raid_member_detach(struct raid_bdev *r, unsigned i, int new_state)
{
	uint64_t deadline = fb_now_ns() + 30ull * 1000000000ull;

	raid_member_fail(r, i, "removed");
	/* After one pass over every reactor no submit can still be choosing
	 * this member; wait for the children already sent to it. */
	if (r->bdev)
		fb_bdev_for_each_channel(r->bdev, put_member_ch, (void *)(uintptr_t)i, NULL);
	while (atomic_load(&r->m[i].inflight) && fb_now_ns() < deadline)
		usleep(1000);
	fixed_ch_put(r, i);
	raid_member_close(r, i);
	atomic_store(&r->m[i].state, new_state);
}

static void member_event(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx)
{
	struct raid_bdev *r = ctx;

	if (type != FB_BDEV_EVENT_REMOVE)
		return;
	pthread_mutex_lock(&r->ctl_mu);
	for (unsigned i = 0; i < r->n; i++) {
		if (r->m[i].desc && fb_bdev_desc_get_bdev(r->m[i].desc) == bdev) {
			fb_log(r->e, FB_LOG_WARN, "raid '%s': member '%s' hot-removed", r->name,
			       r->m[i].name);
			raid_member_detach(r, i, MEMBER_FAILED);
		}
	}
	pthread_mutex_unlock(&r->ctl_mu);
	if (r->md_started)
		raid_md_kick(r);
}

static void raid_destruct(struct fb_bdev *bdev)
{
	struct raid_bdev *r = fb_bdev_get_module_ctx(bdev);
	struct fb_err err;

	raid_bg_stop(r);
	raid_registry_lock(r->e);
	raid_registry_remove(r);
	raid_registry_unlock(r->e);
	pthread_mutex_lock(&r->ctl_mu);
	if (r->superblock && atomic_load(&r->state) == RAID_ONLINE) {
		/* Clean shutdown: CRCs and a clear bitmap on disk, state clean. */
		if (raid_bm_flush_all(r, true) == 0)
			r->clean = true;
		if (raid_sb_write_all(r, &err))
			fb_log(r->e, FB_LOG_ERROR, "raid '%s': final superblock write failed: %s",
			       r->name, err.msg);
	}
	for (unsigned i = 0; i < r->n; i++)
		fixed_ch_put(r, i);
	pthread_mutex_unlock(&r->ctl_mu);
	r->bdev = NULL;
	raid_free(r);
}

static const struct fb_bdev_fn_table raid_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = raid_destruct,
	.submit_request = raid_submit,
	.io_type_supported = raid_io_type_supported,
	.channel_create = raid_channel_create,
	.channel_destroy = raid_channel_destroy,
	.write_config_json = raid_write_config,
	.dump_info_json = raid_dump_info,
};

/* Zeroes the data area of every member of a new array, so parity, copies
 * and the CRC table agree from the start. */
static int zero_members(struct raid_bdev *r, struct fb_err *err)
{
	const uint64_t chunk = (64ull << 20) / r->block_size;

	for (unsigned i = 0; i < r->n; i++) {
		for (uint64_t b = 0; b < r->member_blocks; b += chunk) {
			uint64_t num = r->member_blocks - b < chunk ? r->member_blocks - b : chunk;
			int rc = fb_bdev_io_sync(r->m[i].desc, FB_IO_WRITE_ZEROES, NULL,
						 r->data_offset + b, num, 0);

			if (rc) {
				fb_err_set(err, "zeroing member '%s' of raid '%s' failed: %s",
					   r->m[i].name, r->name, strerror(-rc));
				return rc;
			}
		}
	}
	return 0;
}

/* Control thread, ctl_mu not held. Geometry (data_offset, member_blocks,
 * strip_blocks) is set. fresh: a new array (members zeroed, CRCs of zero);
 * otherwise reassembled (CRCs loaded, dirty regions resynced). Registers
 * the bdev; on failure the caller frees r. */
int raid_assemble_register(struct raid_bdev *r, bool fresh, struct fb_err *err)
{
	void *zero;
	int rc;

	r->rows = r->member_blocks / r->strip_blocks;
	r->num_blocks = r->rows * raid_row_blocks(r);
	if (r->rows == 0) {
		fb_err_set(err, "base_bdevs of raid '%s' are too small: each needs at least one "
			   "%u-block strip after %llu metadata blocks",
			   r->name, r->strip_blocks, (unsigned long long)r->data_offset);
		return -EINVAL;
	}
	zero = calloc(1, r->block_size);
	if (!zero)
		return -ENOMEM;
	r->zero_crc = raid_crc_block(zero, r->block_size);
	free(zero);
	if (r->level != RAID_L0) {
		for (unsigned i = 0; i < r->n; i++) {
			r->m[i].crc = malloc(sizeof(*r->m[i].crc) * r->member_blocks);
			if (!r->m[i].crc) {
				fb_err_set(err, "out of memory for the CRC table of raid '%s'", r->name);
				return -ENOMEM;
			}
			for (uint64_t b = 0; b < r->member_blocks; b++)
				atomic_init(&r->m[i].crc[b], r->zero_crc);
		}
	}
	if (fresh && r->level != RAID_L0) {
		rc = zero_members(r, err);
		if (rc)
			return rc;
	} else if (fresh) {
		/* RAID0: nothing to keep consistent. */
	} else if (r->superblock && r->level != RAID_L0) {
		for (unsigned i = 0; i < r->n; i++) {
			if (atomic_load(&r->m[i].state) != MEMBER_ONLINE)
				continue;
			rc = raid_crc_load(r, i);
			if (rc) {
				fb_err_set(err, "reading the CRC table of member '%s' failed: %s",
					   r->m[i].name, strerror(-rc));
				return rc;
			}
		}
	}
	rc = raid_bm_init(r);
	if (rc) {
		fb_err_set(err, "out of memory for the bitmap of raid '%s'", r->name);
		return rc;
	}
	if (fresh && r->superblock && r->level != RAID_L0) {
		/* CRCs of the zeroed data and a clear bitmap on disk. */
		rc = raid_bm_flush_all(r, true);
		if (rc) {
			fb_err_set(err, "writing the metadata of raid '%s' failed: %s", r->name,
				   strerror(-rc));
			return rc;
		}
	}
	if (!fresh && r->superblock && !r->clean && r->level != RAID_L0) {
		uint64_t nres = 0;

		rc = raid_bm_resync(r, &nres, err);
		if (rc)
			return rc;
		if (nres)
			raid_notify(r, "raid_resync", "\"regions\":%llu,\"reason\":\"unclean shutdown\"",
				    (unsigned long long)nres);
	}
	for (unsigned i = 0; i < r->n; i++) {
		if (r->m[i].desc) {
			rc = fixed_ch_get(r, i);
			if (rc)
				return rc;
		}
	}
	raid_bm_start(r);
	pthread_mutex_lock(&r->info_mu);
	r->generation++;
	pthread_mutex_unlock(&r->info_mu);
	r->clean = false;
	if (r->superblock) {
		rc = raid_sb_write_all(r, err);
		if (rc)
			return rc;
	}
	if (pthread_create(&r->md_thread, NULL, md_main, r) == 0)
		r->md_started = true;
	atomic_store(&r->state, RAID_ONLINE);

	struct fb_bdev_register_opts o = {
		.size = sizeof(o),
		.name = r->name,
		.uuid = r->uuid,
		.block_size = r->block_size,
		.num_blocks = r->num_blocks,
		.module = &raid_module,
		.fn = &raid_fn,
		.ctx = r,
		.optimal_io_boundary = (uint32_t)raid_io_boundary(r),
		.split_on_optimal_io_boundary = true,
	};
	rc = fb_bdev_register(r->e, &o, &r->bdev, err);
	if (rc) {
		atomic_store(&r->state, RAID_CONFIGURING);
		for (unsigned i = 0; i < r->n; i++)
			fixed_ch_put(r, i);
		return rc;
	}
	fb_bdev_get_uuid(r->bdev, &r->uuid);
	return 0;
}
