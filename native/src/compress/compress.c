/* compress bdev "COMP_<base>": logical chunks (default 16 KiB) stored
 * compressed, densely packed on the base through a persistent chunk map.
 * This file: the module (worker pool, options, examine), opening and
 * creating volumes, the fn table and stats. The I/O path is compress_io.c,
 * map commits compress_commit.c, the layout format.c and map.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress_internal.h"

#define MAP_READ_PAGES 128     /* map pages read per I/O at open */

/* ------------------------------------------------------------ fn table */

static bool cmp_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	(void)bdev;
	return type == FB_IO_READ || type == FB_IO_WRITE || type == FB_IO_FLUSH ||
	       type == FB_IO_UNMAP || type == FB_IO_WRITE_ZEROES;
}

static int cmp_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct cmp_bdev *cb = fb_bdev_get_module_ctx(bdev);
	struct cmp_channel *cc = ctx;

	cc->base_ch = fb_bdev_get_io_channel(cb->base);
	return cc->base_ch ? 0 : -ENOMEM;
}

static void cmp_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	struct cmp_channel *cc = ctx;

	(void)bdev;
	fb_put_io_channel(cc->base_ch);
}


static void cmp_free(struct cmp_bdev *cb)
{
	if (cb->base)
		fb_bdev_close(cb->base);
	fb_cmp_map_fini(&cb->map);
	pthread_mutex_destroy(&cb->mu);
	free(cb->commit_iov);
	free(cb->name);
	free(cb->base_name);
	free(cb);
}

static void mod_unlink(struct cmp_bdev *cb);
static void write_stats(struct cmp_bdev *cb, struct fb_json_writer *w);

static void cmp_destruct(struct fb_bdev *bdev)
{
	struct cmp_bdev *cb = fb_bdev_get_module_ctx(bdev);
	int rc;

	if (!fb_cmp_reclaim_stop(cb)) {
		mod_unlink(cb);
		return; /* leaked rather than freed under the pass */
	}
	rc = fb_cmp_commit_sync(cb);

	if (rc)
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': writing the chunk map at close failed "
		       "(%s): writes since the last flush are lost; the volume reopens consistent",
		       cb->name, strerror(-rc));
	mod_unlink(cb);
	cmp_free(cb);
}

static const char *engine_name(void)
{
	return "cpu";
}

static void cmp_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	fb_json_write_name(w, "compress");
	write_stats(fb_bdev_get_module_ctx(bdev), w);
}

static const struct fb_bdev_fn_table cmp_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = cmp_destruct,
	.submit_request = fb_cmp_io_submit,
	.io_type_supported = cmp_io_type_supported,
	.channel_create = cmp_channel_create,
	.channel_destroy = cmp_channel_destroy,
	/* No write_config_json: the volume reassembles from its header when
	 * its base appears (examine), as a RAID with a superblock does. */
	.dump_info_json = cmp_dump_info,
};

/* --------------------------------------------------------------- stats */

/* Map pages new writes may dirty per commit: a quarter of the cache at
 * most, so dirty and staged pages never hold every slot. */
static size_t dirty_cap_for(size_t cache_pages)
{
	return cache_pages / 4 < DIRTY_CAP ? cache_pages / 4 : DIRTY_CAP;
}

/* Allocator bitmaps a volume keeps (alloc.h): one per segs_per_bitmap
 * segments, at least FB_CMP_ALLOC_MIN_BUDGET. */
static uint32_t bitmap_budget(const struct cmp_bdev *cb)
{
	uint64_t n = cb->map.alloc.nsegs / cb->segs_per_bitmap;

	return n < FB_CMP_ALLOC_MIN_BUDGET ? FB_CMP_ALLOC_MIN_BUDGET : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static double mbps(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / 1e6 / ((double)ns / 1e9) : 0;
}

static void write_codec_stats(struct fb_json_writer *w, struct fb_cmp_codec_stats *s)
{
	uint64_t ci = atomic_load(&s->comp_in), cn = atomic_load(&s->comp_ns);
	uint64_t di = atomic_load(&s->decomp_out), dn = atomic_load(&s->decomp_ns);

	fb_json_write_named_uint64(w, "compress_calls", atomic_load(&s->comp_calls));
	fb_json_write_named_uint64(w, "compress_bytes_in", ci);
	fb_json_write_named_uint64(w, "compress_bytes_out", atomic_load(&s->comp_out));
	fb_json_write_named_double(w, "compress_mbps", mbps(ci, cn));
	fb_json_write_named_uint64(w, "decompress_calls", atomic_load(&s->decomp_calls));
	fb_json_write_named_uint64(w, "decompress_bytes_out", di);
	fb_json_write_named_double(w, "decompress_mbps", mbps(di, dn));
}

static void write_stats(struct cmp_bdev *cb, struct fb_json_writer *w)
{
	const double tb = 1e12;
	char uuid[FB_UUID_STR_LEN];
	struct fb_uuid u;
	uint64_t logical, physical, stored, ram, ram_fixed, chunks_data, zero, raw, comp, used_units;
	uint64_t hits, misses, evictions, bitmaps, cache_pages, bm_touched, budget, stranded, passes;
	uint64_t reclaimed, mismatches, overlaps, bm_evictions, open_bitmaps, open_passes, quarantined;

	pthread_mutex_lock(&cb->mu);
	comp = cb->map.chunks_compressed;
	raw = cb->map.chunks_raw;
	zero = cb->map.chunks_zero;
	stored = cb->map.stored_bytes;
	physical = cb->map.stored_units * cb->unit;
	used_units = cb->map.alloc.used;
	ram = fb_cmp_map_ram(&cb->map, &ram_fixed);
	hits = cb->map.hits;
	misses = cb->map.misses;
	evictions = cb->map.evictions;
	bitmaps = cb->map.alloc.bitmaps;
	bm_touched = cb->map.alloc.pool_top;
	budget = cb->map.alloc.pool_cap;
	stranded = cb->map.alloc.stranded;
	bm_evictions = cb->map.alloc.evictions;
	open_bitmaps = cb->map.alloc.open_bitmaps;
	open_passes = cb->map.alloc.open_passes;
	passes = cb->map.reclaim_passes;
	reclaimed = cb->map.reclaimed_units;
	mismatches = cb->map.reclaim_mismatches;
	overlaps = cb->map.reclaim_overlaps;
	quarantined = cb->map.alloc.nquarantined;
	cache_pages = cb->map.nslots;
	pthread_mutex_unlock(&cb->mu);
	chunks_data = comp + raw;
	logical = (chunks_data + zero) * cb->chunk;
	memcpy(u.b, cb->map.h.uuid, sizeof(u.b));
	fb_uuid_fmt(&u, uuid);
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "name", cb->name);
	fb_json_write_named_string(w, "base_bdev_name", cb->base_name);
	fb_json_write_named_string(w, "uuid", uuid);
	fb_json_write_named_string(w, "comp_algo", cb->codec->name);
	fb_json_write_named_int64(w, "comp_level", atomic_load(&cb->level));
	fb_json_write_named_string(w, "engine", engine_name());
	fb_json_write_named_uint64(w, "chunk_size", cb->chunk);
	fb_json_write_named_uint64(w, "lb_size", cb->lb);
	fb_json_write_named_uint64(w, "unit_size", cb->unit);
	fb_json_write_named_uint64(w, "logical_capacity_bytes", cb->map.h.num_chunks * cb->chunk);
	fb_json_write_named_uint64(w, "physical_capacity_bytes", cb->map.h.data_units * cb->unit);
	/* Logical: chunks that hold data (zero chunks included); physical:
	 * units their stored bytes take; stored: the codec's output. */
	fb_json_write_named_uint64(w, "logical_bytes", logical);
	fb_json_write_named_uint64(w, "physical_bytes", physical);
	fb_json_write_named_uint64(w, "stored_bytes", stored);
	fb_json_write_named_uint64(w, "allocated_bytes", used_units * cb->unit);
	fb_json_write_named_double(w, "ratio", physical ? (double)logical / (double)physical : 0);
	fb_json_write_named_object_begin(w, "chunks");
	fb_json_write_named_uint64(w, "compressed", comp);
	fb_json_write_named_uint64(w, "raw", raw);
	fb_json_write_named_uint64(w, "zero", zero);
	fb_json_write_named_uint64(w, "unmapped", cb->map.h.num_chunks - comp - raw - zero);
	fb_json_write_object_end(w);
	fb_json_write_named_object_begin(w, "codec");
	write_codec_stats(w, &cb->st);
	fb_json_write_named_uint64(w, "early_aborts", atomic_load(&cb->early_aborts));
	/* Stored raw without running the codec: the probe found them random. */
	fb_json_write_named_uint64(w, "probe_raw", atomic_load(&cb->probe_raw));
	fb_json_write_object_end(w);
	fb_json_write_named_uint64(w, "read_modify_writes", atomic_load(&cb->rmw));
	fb_json_write_named_uint64(w, "commits", atomic_load(&cb->commits));
	fb_json_write_named_uint64(w, "crc_errors", atomic_load(&cb->crc_errors));
	fb_json_write_named_uint64(w, "repaired_at_open", cb->repaired_at_open);
	fb_json_write_named_uint64(w, "map_pages_lost_at_open", cb->pages_lost_at_open);
	fb_json_write_named_object_begin(w, "map_cache");
	fb_json_write_named_uint64(w, "pages", cache_pages);
	fb_json_write_named_uint64(w, "hits", hits);
	fb_json_write_named_uint64(w, "misses", misses);
	fb_json_write_named_uint64(w, "evictions", evictions);
	fb_json_write_object_end(w);
	/* Free-space allocator (alloc.h): bitmaps of partly used segments,
	 * within a budget; stranded: free units waiting for a reclaim pass. */
	fb_json_write_named_object_begin(w, "alloc");
	fb_json_write_named_uint64(w, "bitmaps", bitmaps);
	fb_json_write_named_uint64(w, "bitmap_budget", budget);
	fb_json_write_named_uint64(w, "segments_per_bitmap", cb->segs_per_bitmap);
	fb_json_write_named_uint64(w, "open_bitmaps", open_bitmaps);
	fb_json_write_named_uint64(w, "open_map_passes", open_passes);
	fb_json_write_named_uint64(w, "stranded_bytes", stranded * cb->unit);
	fb_json_write_named_uint64(w, "bitmap_evictions", bm_evictions);
	fb_json_write_named_uint64(w, "reclaim_passes", passes);
	fb_json_write_named_uint64(w, "reclaimed_bytes", reclaimed * cb->unit);
	fb_json_write_named_uint64(w, "reclaim_mismatches", mismatches);
	fb_json_write_named_uint64(w, "reclaim_overlaps", overlaps);
	/* Segments that did not add up, left out of passes until reopen. */
	fb_json_write_named_uint64(w, "quarantined_segments", quarantined);
	fb_json_write_object_end(w);
	/* Metadata RAM, accounted bytes (what the map and the allocator hold,
	 * not RSS). Fixed: the map cache, commit stage and pending-free lists,
	 * whatever the volume's size. Per TB: what grows with capacity, i.e. a
	 * bit per map page (logical) and the allocator's segment table plus
	 * its bitmaps (physical): now; bounded, the budget full (steady state,
	 * however fragmented); and open's transient peak, 4x the budget plus a
	 * bit per segment (freed before the volume serves I/O): bounded, and as
	 * this volume's last open held it. */
	{
		double lcap = (double)(cb->map.h.num_chunks * cb->chunk);
		double pcap = (double)(cb->map.h.data_units * cb->unit);
		double segs_tb = tb / cb->unit / FB_CMP_SEG_UNITS;
		double map_tb = tb / ((double)cb->chunk * FB_CMP_ENTRIES_PER_PAGE * 8) / 1e6;
		double table_tb = tb / cb->unit * fb_cmp_alloc_table_bytes_per_unit() / 1e6;
		double slot = (double)fb_cmp_alloc_slot_bytes();
		double bm_tb = (double)bm_touched * slot / pcap * tb / 1e6;
		double map_phys_tb = map_tb * lcap / pcap;
		double per_tb = table_tb + bm_tb + map_phys_tb;

		fb_json_write_named_uint64(w, "metadata_ram_bytes", ram);
		fb_json_write_named_uint64(w, "metadata_ram_fixed_bytes", ram_fixed);
		fb_json_write_named_uint64(w, "alloc_bitmaps", bitmaps);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_logical", map_tb);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_physical", per_tb);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_physical_worst",
					   table_tb + segs_tb / cb->segs_per_bitmap * slot / 1e6 + map_phys_tb);
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_physical_open_worst",
					   table_tb + 4 * segs_tb / cb->segs_per_bitmap * slot / 1e6 +
						   segs_tb / 8 / 1e6 + map_phys_tb);
		/* This volume's last open: the bitmaps its passes held. */
		fb_json_write_named_double(w, "metadata_ram_mb_per_tb_physical_open",
					   table_tb + (double)open_bitmaps * slot / pcap * tb / 1e6 +
						   segs_tb / 8 / 1e6 + map_phys_tb);
		/* A 1 TB volume: its map outgrows the cache, which is then full size. */
		size_t cfg = (size_t)cb->mod->map_cache_kib * 1024 / FB_CMP_PAGE_SIZE;

		fb_json_write_named_double(w, "metadata_ram_mb_1tb_physical",
					   per_tb + (double)fb_cmp_map_fixed_ram(cfg, dirty_cap_for(cfg), PENDING_CAP) / 1e6);
	}
	fb_json_write_object_end(w);
}

/* -------------------------------------------------------------- module */

static struct cmp_bdev *mod_bdevs; /* guarded by mod_list_mu; bdevs of every engine */
static pthread_mutex_t mod_list_mu = PTHREAD_MUTEX_INITIALIZER;

static void mod_link(struct cmp_bdev *cb)
{
	pthread_mutex_lock(&mod_list_mu);
	cb->next = mod_bdevs;
	mod_bdevs = cb;
	pthread_mutex_unlock(&mod_list_mu);
}

static void mod_unlink(struct cmp_bdev *cb)
{
	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev **p = &mod_bdevs; *p; p = &(*p)->next) {
		if (*p == cb) {
			*p = cb->next;
			break;
		}
	}
	pthread_mutex_unlock(&mod_list_mu);
}

int fb_cmp_write_stats(struct fb_engine *e, const char *name, struct fb_json_writer *w,
		       struct fb_err *err)
{
	int rc = -ENODEV;

	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev *cb = mod_bdevs; cb; cb = cb->next) {
		if (cb->e == e && cb->bdev && strcmp(cb->name, name) == 0) {
			write_stats(cb, w);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&mod_list_mu);
	if (rc)
		fb_err_set(err, "no compress bdev named '%s'. Fix: pass the name bdev_compress_create "
			   "returned, e.g. \"COMP_Malloc0\"", name);
	return rc;
}

void fb_cmp_write_all_stats(struct fb_engine *e, struct fb_json_writer *w)
{
	fb_json_write_array_begin(w);
	pthread_mutex_lock(&mod_list_mu);
	for (struct cmp_bdev *cb = mod_bdevs; cb; cb = cb->next)
		if (cb->e == e && cb->bdev)
			write_stats(cb, w);
	pthread_mutex_unlock(&mod_list_mu);
	fb_json_write_array_end(w);
}

/* Rewrites a volume's header (its level or name changed): the header sits
 * in the first sector, so a crash leaves the old or the new one. */
static int header_write(struct fb_bdev_desc *base, struct fb_cmp_header *h)
{
	uint8_t *buf = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_PAGE_SIZE);
	int rc;

	if (!buf)
		return -ENOMEM;
	memset(buf, 0, FB_CMP_PAGE_SIZE);
	fb_cmp_header_seal(h);
	memcpy(buf, h, sizeof(*h));
	rc = fb_bdev_io_sync(base, FB_IO_WRITE, buf, 0, 1, FB_IO_FLAG_FUA);
	if (rc == 0)
		rc = fb_bdev_io_sync(base, FB_IO_FLUSH, NULL, 0, 0, 0);
	free(buf);
	return rc;
}
_Static_assert(sizeof(struct fb_cmp_header) <= 512, "the header fits the smallest sector");

/* Whether level is in the codec's range; err says the range when not. */
static bool level_ok(const struct fb_cmp_codec *c, uint32_t level, struct fb_err *err)
{
	if (level <= (uint32_t)c->max_level && (int)level >= c->min_level)
		return true;
	fb_err_set(err, "Invalid parameter 'comp_level': %s takes levels %d to %d, got %u. Fix: pass "
		   "e.g. %d (the default)", c->name, c->min_level, c->max_level, level,
		   c->default_level);
	return false;
}

int fb_cmp_set_level(struct fb_engine *e, const char *name, uint32_t level, struct fb_err *err)
{
	struct fb_bdev_desc *d = NULL;
	struct fb_cmp_header h;
	struct cmp_bdev *cb;
	int rc;

	/* The descriptor keeps the bdev alive while its header is written. */
	if (fb_bdev_open(e, name, NULL, &d, NULL) != 0 ||
	    fb_bdev_get_module(fb_bdev_desc_get_bdev(d)) != &fb_cmp_module) {
		if (d)
			fb_bdev_close(d);
		fb_err_set(err, "no compress bdev named '%s'. Fix: pass the name bdev_compress_create "
			   "returned, e.g. \"COMP_Malloc0\"", name);
		return -ENODEV;
	}
	cb = fb_bdev_get_module_ctx(fb_bdev_desc_get_bdev(d));
	if (!level_ok(cb->codec, level, err)) {
		fb_bdev_close(d);
		return -EINVAL;
	}
	/* Kept in the header first, so a restart keeps what was acknowledged. */
	pthread_mutex_lock(&cb->mu);
	h = cb->map.h;
	pthread_mutex_unlock(&cb->mu);
	h.level = (int32_t)level;
	rc = header_write(cb->base, &h);
	if (rc == 0) {
		pthread_mutex_lock(&cb->mu);
		cb->map.h.level = h.level;
		cb->map.h.crc = h.crc;
		pthread_mutex_unlock(&cb->mu);
		atomic_store(&cb->level, (int)level);
	} else {
		fb_err_set(err, "writing the level into the header of '%s' failed: %s; the level is "
			   "unchanged", name, strerror(-rc));
	}
	fb_bdev_close(d);
	return rc;
}

static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	/* Half the CPUs, at most 4: reactors keep the rest. */
	return n >= 8 ? 4 : n >= 2 ? (unsigned)(n / 2) : 1;
}

static int mod_init(struct fb_engine *e, void **ctx, struct fb_err *err)
{
	struct fb_cmp_mod *mod = calloc(1, sizeof(*mod));

	if (!mod) {
		fb_err_set(err, "out of memory initializing the compress module");
		return -ENOMEM;
	}
	mod->e = e;
	pthread_mutex_init(&mod->mu, NULL);
	mod->worker_threads = default_workers();
	mod->map_cache_kib = FB_CMP_MAP_CACHE_KIB_DEFAULT;
	mod->segs_per_bitmap = FB_CMP_SEGS_PER_BITMAP_DEFAULT;
	*ctx = mod;
	return 0;
}

static void mod_fini(struct fb_engine *e, void *ctx)
{
	struct fb_cmp_mod *mod = ctx;

	(void)e;
	fb_cmp_pool_destroy(mod->pool);
	pthread_mutex_destroy(&mod->mu);
	free(mod);
}

static int mod_pool(struct fb_cmp_mod *mod, struct fb_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&mod->mu);
	if (!mod->pool)
		rc = fb_cmp_pool_create(mod->e, mod->worker_threads, &mod->pool);
	pthread_mutex_unlock(&mod->mu);
	if (rc)
		fb_err_set(err, "starting %u compress worker threads failed: %s", mod->worker_threads,
			   strerror(-rc));
	return rc;
}

int fb_cmp_set_worker_threads(struct fb_engine *e, unsigned n, struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);
	int rc = 0;

	pthread_mutex_lock(&mod->mu);
	if (mod->pool && mod->pool->nthreads != n) {
		fb_err_set(err, "worker_threads can only change before the first bdev_compress_create "
			   "(the pool runs %u threads now). Fix: set it first, or restart the engine",
			   mod->pool->nthreads);
		rc = -EBUSY;
	} else {
		mod->worker_threads = n;
		mod->worker_threads_set = true;
	}
	pthread_mutex_unlock(&mod->mu);
	return rc;
}

/* An option of volumes opened from now on (the RPC's limits check the
 * range): *field = v, and *set so that the config dump replays it. */
static int set_open_option(struct fb_engine *e, uint32_t *field, bool *set, uint32_t v)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);

	pthread_mutex_lock(&mod->mu);
	*field = v;
	*set = true;
	pthread_mutex_unlock(&mod->mu);
	return 0;
}

int fb_cmp_set_map_cache(struct fb_engine *e, uint32_t kib, struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);

	(void)err;
	return set_open_option(e, &mod->map_cache_kib, &mod->map_cache_set, kib);
}

int fb_cmp_set_segs_per_bitmap(struct fb_engine *e, uint32_t n, struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);

	(void)err;
	return set_open_option(e, &mod->segs_per_bitmap, &mod->segs_per_bitmap_set, n);
}

static void mod_config_json(struct fb_engine *e, struct fb_json_writer *w)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);

	if (!mod || (!mod->worker_threads_set && !mod->map_cache_set && !mod->segs_per_bitmap_set))
		return;
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "method", "bdev_compress_set_options");
	fb_json_write_named_object_begin(w, "params");
	if (mod->worker_threads_set)
		fb_json_write_named_uint64(w, "worker_threads", mod->worker_threads);
	if (mod->map_cache_set)
		fb_json_write_named_uint64(w, "map_cache_kib", mod->map_cache_kib);
	if (mod->segs_per_bitmap_set)
		fb_json_write_named_uint64(w, "alloc_segments_per_bitmap", mod->segs_per_bitmap);
	fb_json_write_object_end(w);
	fb_json_write_object_end(w);
}

/* ---------------------------------------------------------- open/create */

struct open_args {
	const char *base_name, *name;
	bool create;                      /* false: examine (open an existing volume only) */
	const struct fb_cmp_codec *codec; /* create */
	int level;                        /* create; -1 = codec default */
	uint32_t lb_size, chunk_size;     /* create; lb 0 = from the base */
	uint64_t num_blocks;
};

static void base_event(enum fb_bdev_event_type type, struct fb_bdev *bdev, void *ctx)
{
	struct cmp_bdev *cb = ctx;
	struct fb_err err;

	(void)bdev;
	/* Losing the base loses the volume: delete it (it reopens when the
	 * base comes back, from its header). */
	if (type == FB_BDEV_EVENT_REMOVE && fb_bdev_delete(cb->e, cb->name, &err))
		fb_log(cb->e, FB_LOG_ERROR, "compress '%s': base '%s' removed, deleting failed: %s",
		       cb->name, cb->base_name, err.msg);
}

struct repair_log {
	struct cmp_bdev *cb;
	uint64_t n;
};

static void repair_report(void *arg, uint64_t chunk, const char *why)
{
	struct repair_log *l = arg;

	if (++l->n <= 20)
		fb_log(l->cb->e, FB_LOG_WARN, "compress '%s': repaired at open: chunk %llu: %s; "
		       "unmapped (reads zeros)", l->cb->name, (unsigned long long)chunk, why);
}

/* Bitmaps open's scan may hold: 4x the volume's budget (alloc.h). */
static uint32_t open_budget(const struct cmp_bdev *cb)
{
	uint64_t n = 4ull * bitmap_budget(cb);

	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* One pass over the map: validates entries and rebuilds free space (the
 * first pass), or checks a window of segments (later ones); pages needing
 * repair go through the cache and are written as the dirty list fills. */
static int scan_map(struct cmp_bdev *cb, uint8_t *buf, struct repair_log *log, struct fb_err *err)
{
	const struct fb_cmp_header *h = &cb->map.h;
	int rc = 0;

	for (uint64_t p0 = 0; p0 < h->map_pages && rc == 0; p0 += MAP_READ_PAGES) {
		uint64_t np = h->map_pages - p0 < MAP_READ_PAGES ? h->map_pages - p0 : MAP_READ_PAGES;

		rc = fb_bdev_io_sync(cb->base, FB_IO_READ, buf, fb_cmp_page_offset(h, p0, 0) / cb->base_bs,
				     np * 2 * FB_CMP_PAGE_SIZE / cb->base_bs, 0);
		if (rc) {
			fb_err_set(err, "reading the chunk map of '%s' from '%s' failed: %s", cb->name,
				   cb->base_name, strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < np && rc == 0; i++) {
			uint8_t *s0 = buf + 2 * i * FB_CMP_PAGE_SIZE;
			uint64_t repaired;

			if (cb->map.ndirty >= cb->map.dirty_cap && (rc = fb_cmp_commit_sync(cb)) != 0) {
				fb_err_set(err, "writing the repaired chunk map of '%s' failed: %s",
					   cb->name, strerror(-rc));
				break;
			}
			if (fb_cmp_map_scan_page(&cb->map, p0 + i, s0, s0 + FB_CMP_PAGE_SIZE, repair_report,
						 log, &repaired) == 2) {
				uint64_t first = (p0 + i) * FB_CMP_ENTRIES_PER_PAGE;

				cb->pages_lost_at_open++;
				fb_log(cb->e, FB_LOG_ERROR, "compress '%s': map page %llu: both copies "
				       "damaged: chunks %llu..%llu lost (read as zeros); the page is "
				       "rewritten", cb->name, (unsigned long long)(p0 + i),
				       (unsigned long long)first,
				       (unsigned long long)(first + FB_CMP_ENTRIES_PER_PAGE - 1));
			}
			cb->repaired_at_open += repaired;
		}
	}
	/* Later passes read the base: it must hold this pass's repairs. */
	if (rc == 0 && (rc = fb_cmp_commit_sync(cb)) != 0)
		fb_err_set(err, "writing the repaired chunk map of '%s' failed: %s", cb->name,
			   strerror(-rc));
	return rc;
}

/* Streams the map, validating every entry and rebuilding free space, with
 * at most open_budget bitmaps: once more for each window of segments the
 * first pass could only count (alloc.h). */
static int load_map(struct cmp_bdev *cb, struct fb_err *err)
{
	uint8_t *buf = aligned_alloc(FB_CMP_PAGE_SIZE, MAP_READ_PAGES * 2 * FB_CMP_PAGE_SIZE);
	struct repair_log log = {.cb = cb};
	int rc;

	if (!buf || fb_cmp_alloc_open_budget(&cb->map.alloc, open_budget(cb))) {
		free(buf);
		fb_err_set(err, "out of memory reading the chunk map of '%s'", cb->name);
		return -ENOMEM;
	}
	rc = scan_map(cb, buf, &log, err);
	while (rc == 0 && fb_cmp_map_open_next(&cb->map, bitmap_budget(cb)))
		rc = scan_map(cb, buf, &log, err);
	free(buf);
	if (rc)
		return rc;
	if (cb->repaired_at_open || cb->pages_lost_at_open) {
		char ctx[256];

		fb_log(cb->e, FB_LOG_WARN, "compress '%s': open repaired %llu chunk entries and %llu "
		       "map pages; the volume is writable", cb->name,
		       (unsigned long long)cb->repaired_at_open,
		       (unsigned long long)cb->pages_lost_at_open);
		snprintf(ctx, sizeof(ctx), "{\"bdev\":\"%s\",\"entries\":%llu,\"pages\":%llu}", cb->name,
			 (unsigned long long)cb->repaired_at_open,
			 (unsigned long long)cb->pages_lost_at_open);
		fb_notify(cb->e, "compress_repaired", ctx);
	}
	return 0;
}

static int cmp_open(struct fb_engine *e, const struct open_args *a, char **out_name,
		    struct fb_err *err)
{
	struct fb_cmp_mod *mod = fb_bdev_module_get_ctx(e, &fb_cmp_module);
	struct cmp_bdev *cb = calloc(1, sizeof(*cb));
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = true};
	struct fb_bdev_register_opts ro;
	struct fb_cmp_header h;
	struct fb_bdev *base;
	uint8_t *hdr = NULL;
	char holder[320], msg[512];
	uint64_t base_bytes;
	bool rewrite = false;
	int rc;

	if (!cb) {
		fb_err_set(err, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&cb->mu, NULL);
	cb->e = e;
	cb->mod = mod;
	pthread_mutex_lock(&mod->mu);
	cb->segs_per_bitmap = mod->segs_per_bitmap;
	pthread_mutex_unlock(&mod->mu);
	cb->base_name = strdup(a->base_name);
	if (a->name)
		cb->name = strdup(a->name);
	else if (asprintf(&cb->name, "COMP_%s", a->base_name) < 0)
		cb->name = NULL;
	if (!cb->base_name || !cb->name) {
		fb_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	{
		struct fb_bdev_desc *taken;
		struct fb_err ignore;

		if (fb_bdev_open(e, cb->name, NULL, &taken, &ignore) == 0) {
			fb_bdev_close(taken);
			fb_err_set(err, "a bdev named '%s' exists already. Fix: pass another name",
				   cb->name);
			rc = -EEXIST;
			goto fail;
		}
	}
	snprintf(holder, sizeof(holder), "compress bdev '%s'", cb->name);
	oo.holder = holder;
	oo.event_cb = base_event;
	oo.event_ctx = cb;
	rc = fb_bdev_open(e, a->base_name, &oo, &cb->base, err);
	if (rc == -ENOENT)
		rc = -ENODEV; /* SPDK's code for a missing base */
	if (rc)
		goto fail;
	base = fb_bdev_desc_get_bdev(cb->base);
	if (!fb_bdev_io_type_supported(base, FB_IO_FLUSH)) {
		fb_err_set(err, "base_bdev_name: '%s' does not support flush, so a compress volume on "
			   "it could not make its writes durable. Fix: use a base that flushes",
			   a->base_name);
		rc = -EINVAL;
		goto fail;
	}
	cb->base_bs = fb_bdev_get_block_size(base);
	cb->base_zcopy = fb_bdev_zcopy_supported(base);
	base_bytes = (uint64_t)cb->base_bs * fb_bdev_get_num_blocks(base);
	if (cb->base_bs > FB_CMP_HEADER_REGION || FB_CMP_HEADER_REGION % cb->base_bs ||
	    base_bytes < FB_CMP_HEADER_REGION) {
		if (a->create)
			fb_err_set(err, "base_bdev_name: '%s' (%u-byte blocks, %llu bytes) cannot hold a "
				   "compress volume: it needs 512..4096-byte blocks and at least 28 KiB",
				   a->base_name, cb->base_bs, (unsigned long long)base_bytes);
		rc = -EINVAL;
		goto fail;
	}
	hdr = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_HEADER_REGION);
	if (!hdr) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = fb_bdev_io_sync(cb->base, FB_IO_READ, hdr, 0, FB_CMP_HEADER_REGION / cb->base_bs, 0);
	if (rc) {
		fb_err_set(err, "reading the header of '%s' failed: %s", a->base_name, strerror(-rc));
		goto fail;
	}
	rc = fb_cmp_header_check(hdr, base_bytes, cb->base_bs, &h, msg, sizeof(msg));
	if (rc == -EINVAL) {
		fb_err_set(err, "base '%s' holds a damaged compress volume: %s. Nothing was written "
			   "to it. Fix: restore the base, or wipe its first 4 KiB to create a new "
			   "volume there", a->base_name, msg);
		goto fail;
	}
	if (rc == -ENOENT && !a->create)
		goto fail; /* examine: not a compress volume */
	if (rc == -ENOENT) {
		struct fb_cmp_geometry_req gr = {.base_bytes = base_bytes, .base_block_size = cb->base_bs,
						 .chunk_size = a->chunk_size, .lb_size = a->lb_size};
		struct fb_uuid u;

		if (!gr.lb_size)
			gr.lb_size = cb->base_bs == 512 || cb->base_bs == 4096 ? cb->base_bs : 4096;
		if (a->num_blocks) {
			if (a->num_blocks * gr.lb_size % a->chunk_size) {
				fb_err_set(err, "Invalid parameter 'num_blocks': %llu blocks of %u bytes "
					   "is not a whole number of %u-byte chunks. Fix: pass a "
					   "multiple of %u", (unsigned long long)a->num_blocks,
					   gr.lb_size, a->chunk_size, a->chunk_size / gr.lb_size);
				rc = -EINVAL;
				goto fail;
			}
			gr.num_chunks = a->num_blocks * gr.lb_size / a->chunk_size;
		}
		rc = fb_cmp_geometry(&gr, &h, msg, sizeof(msg));
		if (rc) {
			fb_err_set(err, "%s", msg);
			rc = -EINVAL;
			goto fail;
		}
		fb_uuid_generate(&u);
		memcpy(h.uuid, u.b, sizeof(h.uuid));
		h.algo = a->codec->algo;
		h.level = a->level;
		snprintf(h.name, sizeof(h.name), "%s", cb->name);
		fb_cmp_header_seal(&h);
	} else if (a->create && (h.algo != (uint32_t)a->codec->algo || h.chunk_size != a->chunk_size ||
				 (a->lb_size && h.lb_size != a->lb_size))) {
		fb_err_set(err, "base '%s' already holds a compress volume (comp_algo %s, chunk_size %u, "
			   "lb_size %u) that does not match the request (comp_algo %s, chunk_size %u, "
			   "lb_size %u); nothing was written. Fix: pass the volume's parameters to "
			   "open it, or wipe the base's first 4 KiB for a new volume", a->base_name,
			   fb_cmp_codec_get((enum fb_cmp_algo)h.algo)->name, h.chunk_size, h.lb_size,
			   a->codec->name, a->chunk_size, a->lb_size);
		rc = -EINVAL;
		goto fail;
	}
	if (rc == 0 && !a->create && h.name[0] && strcmp(h.name, cb->name) != 0) {
		/* Examine: the volume keeps the name it was created (or last
		 * opened) with. */
		char *n = strdup(h.name);
		struct fb_bdev_desc *taken;
		struct fb_err ignore;

		if (!n) {
			rc = -ENOMEM;
			goto fail;
		}
		free(cb->name);
		cb->name = n;
		if (fb_bdev_open(e, cb->name, NULL, &taken, &ignore) == 0) {
			fb_bdev_close(taken);
			fb_err_set(err, "the volume's name '%s' is taken by another bdev. Fix: delete or "
				   "rename that bdev, then re-examine the base", cb->name);
			rc = -EEXIST;
			goto fail;
		}
	} else if (rc == 0 && a->create && (h.level != a->level || strcmp(h.name, cb->name) != 0)) {
		/* Opened by create with another level or name: they are kept. */
		h.level = a->level;
		snprintf(h.name, sizeof(h.name), "%s", cb->name);
		rewrite = true;
	}
	rc = fb_bdev_claim(cb->base, &fb_cmp_module, err);
	if (rc)
		goto fail;
	cb->codec = a->create ? a->codec : fb_cmp_codec_get((enum fb_cmp_algo)h.algo);
	atomic_init(&cb->level, h.level);
	cb->chunk = h.chunk_size;
	cb->lb = h.lb_size;
	cb->unit = h.unit_size;
	cb->data_off = h.data_offset;
	{
		size_t pages = (size_t)mod->map_cache_kib * 1024 / FB_CMP_PAGE_SIZE;

		/* Small volumes need no more pending slots than they have chunks. */
		rc = fb_cmp_map_init(&cb->map, &h, pages, dirty_cap_for(pages),
				     h.num_chunks < PENDING_CAP ? (h.num_chunks > 64 ? h.num_chunks : 64) :
								  PENDING_CAP);
	}
	cb->commit_iov = calloc(2 * DIRTY_CAP, sizeof(*cb->commit_iov));
	if (rc || !cb->commit_iov) {
		fb_err_set(err, "out of memory for the chunk map of '%s' (%llu chunks)", cb->name,
			   (unsigned long long)h.num_chunks);
		rc = -ENOMEM;
		goto fail;
	}
	if (rc == 0 && (rc = mod_pool(mod, err)) != 0)
		goto fail;
	if (memcmp(hdr, FB_CMP_MAGIC, 8) != 0) {
		/* New volume: the header is the only write; map pages of any
		 * earlier volume carry another uuid and read as never written. */
		memset(hdr, 0, FB_CMP_HEADER_REGION);
		memcpy(hdr, &h, sizeof(h));
		rc = fb_bdev_io_sync(cb->base, FB_IO_WRITE, hdr, 0, FB_CMP_HEADER_REGION / cb->base_bs,
				     FB_IO_FLAG_FUA);
		if (rc == 0)
			rc = fb_bdev_io_sync(cb->base, FB_IO_FLUSH, NULL, 0, fb_cmp_base_blocks(cb), 0);
		if (rc) {
			fb_err_set(err, "writing the compress header to '%s' failed: %s", a->base_name,
				   strerror(-rc));
			goto fail;
		}
	} else if ((rc = load_map(cb, err)) != 0) {
		goto fail;
	} else if (rewrite && (rc = header_write(cb->base, &cb->map.h)) != 0) {
		fb_err_set(err, "writing the compress header to '%s' failed: %s", a->base_name,
			   strerror(-rc));
		goto fail;
	}
	/* Open's scan held a bitmap per partly used segment: keep the budget's
	 * worth before the volume serves I/O (alloc.h). */
	rc = fb_cmp_alloc_trim(&cb->map.alloc, bitmap_budget(cb));
	if (rc) {
		fb_err_set(err, "out of memory for the allocator of '%s'", cb->name);
		goto fail;
	}
	memset(&ro, 0, sizeof(ro));
	ro.size = sizeof(ro);
	ro.name = cb->name;
	memcpy(ro.uuid.b, h.uuid, sizeof(ro.uuid.b));
	ro.block_size = cb->lb;
	ro.num_blocks = h.num_chunks * cb->chunk / cb->lb;
	ro.module = &fb_cmp_module;
	ro.fn = &cmp_fn;
	ro.ctx = cb;
	ro.optimal_io_boundary = cb->chunk / cb->lb;
	ro.split_on_optimal_io_boundary = true;
	mod_link(cb);
	rc = fb_bdev_register(e, &ro, &cb->bdev, err);
	if (rc) {
		mod_unlink(cb);
		goto fail;
	}
	free(hdr);
	if (out_name)
		*out_name = strdup(cb->name);
	return 0;
fail:
	free(hdr);
	cmp_free(cb);
	return rc;
}

/* Whether a bdev starts with a compress header (valid or damaged), read
 * through a read-only descriptor so that bdevs others hold stay quiet.
 * Bdevs that cannot hold a volume are not read at all: RAM and null bdevs
 * start empty, and a base without flush cannot keep one durable. */
static bool has_magic(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .holder = "compress examine"};
	const char *kind = fb_bdev_get_module(bdev)->name;
	uint32_t bs = fb_bdev_get_block_size(bdev);
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint8_t *buf;
	bool ours = false;

	if (strcmp(kind, "malloc") == 0 || strcmp(kind, "null") == 0 ||
	    !fb_bdev_io_type_supported(bdev, FB_IO_FLUSH))
		return false;
	if (bs > FB_CMP_HEADER_REGION || FB_CMP_HEADER_REGION % bs ||
	    fb_bdev_get_num_blocks(bdev) < FB_CMP_HEADER_REGION / bs)
		return false;
	if (fb_bdev_open(e, fb_bdev_get_name(bdev), &oo, &d, &err))
		return false;
	buf = aligned_alloc(FB_CMP_PAGE_SIZE, FB_CMP_HEADER_REGION);
	if (buf && fb_bdev_io_sync(d, FB_IO_READ, buf, 0, FB_CMP_HEADER_REGION / bs, 0) == 0)
		ours = memcmp(buf, FB_CMP_MAGIC, 8) == 0;
	free(buf);
	fb_bdev_close(d);
	return ours;
}

static void mod_examine(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct open_args a = {.base_name = fb_bdev_get_name(bdev)};
	struct fb_err err;
	char *name = NULL;

	if (fb_bdev_get_module(bdev) == &fb_cmp_module || !has_magic(e, bdev))
		return;
	if (cmp_open(e, &a, &name, &err) == 0)
		fb_log(e, FB_LOG_INFO, "compress: opened the volume on '%s' as '%s'", a.base_name,
		       name ? name : "?");
	else
		fb_log(e, FB_LOG_ERROR, "compress: not opening the volume on '%s': %s", a.base_name,
		       err.msg);
	free(name);
}

int fb_cmp_create(struct fb_engine *e, const struct fb_cmp_create_params *p, char **name,
		  struct fb_err *err)
{
	struct open_args a = {.base_name = p->base_bdev_name, .name = p->name, .create = true,
			      .lb_size = p->lb_size, .chunk_size = p->chunk_size,
			      .num_blocks = p->num_blocks};
	const char *eng = p->engine ? p->engine : "auto";
	const char *algo = p->comp_algo ? p->comp_algo : "deflate";

	if (strcmp(eng, "doca") == 0) {
		fb_err_set(err, "Invalid parameter 'engine': \"doca\" needs a BlueField DPU with DOCA "
			   "compress, which this engine was not built for (BlueField-3 can only "
			   "decompress in hardware; the slot is in src/compress/codec.h). Fix: pass "
			   "engine \"cpu\" or \"auto\"");
		return -EINVAL;
	}
	if (strcmp(eng, "gpu") == 0) {
		fb_err_set(err, "Invalid parameter 'engine': \"gpu\" offload is not implemented yet. "
			   "Fix: pass engine \"cpu\" or \"auto\"");
		return -EINVAL;
	}
	if (strcmp(eng, "auto") != 0 && strcmp(eng, "cpu") != 0) {
		fb_err_set(err, "Invalid parameter 'engine': unknown engine \"%s\". Fix: pass \"auto\" "
			   "or \"cpu\" (\"doca\" and \"gpu\" are not available here)", eng);
		return -EINVAL;
	}
	a.codec = fb_cmp_codec_by_name(algo);
	if (!a.codec) {
		fb_err_set(err, "Invalid parameter 'comp_algo': unknown algorithm \"%s\". Fix: pass "
			   "one of %s", algo, fb_cmp_codec_names());
		return -EINVAL;
	}
	a.level = p->comp_level == UINT32_MAX ? a.codec->default_level : (int)p->comp_level;
	if (p->comp_level != UINT32_MAX && !level_ok(a.codec, p->comp_level, err))
		return -EINVAL;
	if (p->lb_size && p->lb_size != 512 && p->lb_size != 4096) {
		fb_err_set(err, "Invalid parameter 'lb_size': must be 512 or 4096, got %u. Fix: pass "
			   "512 or 4096", p->lb_size);
		return -EINVAL;
	}
	return cmp_open(e, &a, name, err);
}

const struct fb_bdev_module fb_cmp_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "compress",
	.product_name = "compress",
	.io_ctx_size = sizeof(struct cmp_io),
	.channel_ctx_size = sizeof(struct cmp_channel),
	.init = mod_init,
	.fini = mod_fini,
	.examine = mod_examine,
	.config_json = mod_config_json,
	.rpcs = fb_cmp_rpcs,
	.nrpcs = FB_CMP_NRPCS,
};
FB_BDEV_MODULE_REGISTER(fb_cmp_module)

