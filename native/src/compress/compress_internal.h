/* Shared by the compress bdev (compress.c) and its RPC methods (compress_rpc.c). */
#ifndef FB_COMPRESS_INTERNAL_H
#define FB_COMPRESS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "codec.h"
#include "flexbso/bdev_module.h"
#include "map.h"
#include "worker.h"

#define FB_CMP_NRPCS 5
extern const struct fb_rpc_method fb_cmp_rpcs[FB_CMP_NRPCS];
extern const struct fb_bdev_module fb_cmp_module;

/* Codec time and bytes (atomics: workers add, RPCs read). */
struct fb_cmp_codec_stats {
	_Atomic uint64_t comp_in, comp_out, comp_ns, comp_calls;
	_Atomic uint64_t decomp_in, decomp_out, decomp_ns, decomp_calls;
};

/* Per-engine module state. */
struct fb_cmp_mod {
	struct fb_engine *e;
	pthread_mutex_t mu;          /* pool creation, options */
	unsigned worker_threads;     /* bdev_compress_set_options */
	bool worker_threads_set;
	uint32_t map_cache_kib;      /* per volume opened from now on */
	bool map_cache_set;
	uint32_t segs_per_bitmap;    /* allocator bitmap budget of volumes opened from now on */
	bool segs_per_bitmap_set;
	struct fb_cmp_pool *pool;    /* started with the first bdev */
};

struct fb_cmp_create_params {
	char *base_bdev_name;
	char *name;
	char *comp_algo;
	uint32_t comp_level;   /* UINT32_MAX = the codec's default */
	uint32_t lb_size;      /* 0 = the base's block size (512 or 4096), else 4096 */
	uint32_t chunk_size;
	char *engine;
	char *pm_path;         /* SPDK's; accepted and unused (no persistent memory needed) */
	uint64_t num_blocks;   /* logical size in lb_size blocks; 0 = the base's capacity stored raw */
};

int fb_cmp_create(struct fb_engine *e, const struct fb_cmp_create_params *p, char **name,
		  struct fb_err *err);
/* Writes the stats object of one compress bdev; -ENODEV if name is not one. */
int fb_cmp_write_stats(struct fb_engine *e, const char *name, struct fb_json_writer *w,
		       struct fb_err *err);
/* Writes every compress bdev's stats object (bdev_compress_get_stats without a name). */
void fb_cmp_write_all_stats(struct fb_engine *e, struct fb_json_writer *w);
int fb_cmp_set_worker_threads(struct fb_engine *e, unsigned n, struct fb_err *err);
/* The chunk-map cache of volumes opened (created or examined) from now on. */
#define FB_CMP_MAP_CACHE_KIB_DEFAULT 8192
int fb_cmp_set_map_cache(struct fb_engine *e, uint32_t kib, struct fb_err *err);
/* The allocator's bitmap budget of volumes opened from now on: one bitmap
 * (256 bytes) per this many 1 MiB-or-more segments, at least
 * FB_CMP_ALLOC_MIN_BUDGET (alloc.h). */
#define FB_CMP_SEGS_PER_BITMAP_DEFAULT 16
int fb_cmp_set_segs_per_bitmap(struct fb_engine *e, uint32_t n, struct fb_err *err);
/* The level new writes use (in place: stored chunks keep theirs, any level
 * decodes). Kept in the volume header before it takes effect, so a
 * reopened volume keeps it. */
int fb_cmp_set_level(struct fb_engine *e, const char *name, uint32_t level, struct fb_err *err);

/* ------------------------------------------------- the bdev's internals */

#define LOCK_BUCKETS 256
#define DIRTY_CAP 128          /* map pages new writes may dirty per commit (the stage holds 2x: 1 MiB) */
#define PENDING_CAP 16384      /* frees awaiting a commit */
/* A codec this fast on a chunk (lz4 or zstd on repetitive data, a codec
 * that gives up early on data the probe could not judge) runs on the
 * reactor: the hop to a worker and back would cost about as much, and
 * holds a chunk buffer longer. The corpus's lz4 (~30 us) stays on workers. */
#define CMP_INLINE_NS 8000

/* One compress time (ns) into the moving average (1/8 steps) that picks
 * reactor or worker. A sample counts as at most 2 * CMP_INLINE_NS: a
 * thread preempted mid-chunk (reactors share few cores with their
 * clients) reads milliseconds, and one such sample must not send a fast
 * codec's writes to the workers, where each chunk costs a hop and a cold
 * cache. A codec slower than CMP_INLINE_NS still moves the average past it. */
static inline uint64_t fb_cmp_recent_ns(uint64_t avg, uint64_t sample)
{
	if (sample > 2 * CMP_INLINE_NS)
		sample = 2 * CMP_INLINE_NS;
	return avg ? avg - avg / 8 + sample / 8 : sample;
}

struct cmp_io;

struct cmp_bdev {
	struct fb_engine *e;
	struct fb_cmp_mod *mod;
	struct cmp_bdev *next;        /* mod's list */
	struct fb_bdev *bdev;
	char *name, *base_name;
	struct fb_bdev_desc *base;
	uint32_t base_bs;
	bool base_zcopy;              /* reads borrow the base's memory (fb_bdev_zcopy_start) */
	const struct fb_cmp_codec *codec;
	atomic_int level;             /* for new writes; bdev_compress_set_level */
	uint32_t chunk, lb, unit;
	uint64_t data_off;            /* bytes */

	pthread_mutex_t mu;
	struct fb_cmp_map map;
	struct cmp_io *locks[LOCK_BUCKETS];
	/* Commits: one at a time; a waiter needs commit number cneed. */
	bool committing;
	uint64_t commits_started, commits_done;
	struct cmp_io *cwait_head, *cwait_tail;
	/* The commit in flight (touched only by the reactor running it). */
	struct fb_io_channel *commit_ch;
	struct iovec *commit_iov;
	size_t commit_n, commit_next, commit_left;
	int commit_rc;
	struct fb_io_wait_entry commit_wait;

	/* The reclaim pass in flight (compress_reclaim.c; map.rc_running). */
	struct cmp_io *rwait_head;    /* I/Os waiting for it (cnext links) */
	struct fb_reactor *rc_reactor;
	struct fb_io_channel *rc_ch;
	uint8_t *rc_buf;
	struct iovec rc_iov;
	struct fb_io_wait_entry rc_wait;
	unsigned rc_tries;
	atomic_bool rc_stop;          /* close: end the pass at its next read */

	struct fb_cmp_codec_stats st;
	_Atomic uint64_t early_aborts, probe_raw, crc_errors, rmw, commits;
	/* Codec tries on chunks the probe was unsure of that did not shrink,
	 * in a row (capped), and unsure chunks seen since (see merge). */
	atomic_uint unsure_fails, unsure_seen;
	/* Recent compress time of one chunk (ns, a moving average of 1/8
	 * steps): under CMP_INLINE_NS, writes compress on their reactor. */
	_Atomic uint64_t comp_recent_ns;
	uint64_t repaired_at_open, pages_lost_at_open;
	uint32_t segs_per_bitmap;     /* the module's option when opened */
};

struct cmp_channel {
	struct fb_io_channel *base_ch;
	/* Touched only on the channel's reactor (merge). */
	struct fb_cmp_probe_run probe;
	bool last_raw;                /* the last chunk probed went raw */
};

struct cmp_io {
	struct fb_cmp_job job;        /* first: recovered from the job */
	struct fb_cmp_map_waiter mw;  /* waiting for a map page */
	bool pinned;                  /* holds a pin on its chunk's map page */
	uint8_t *pagebuf;             /* both copies of a map page being loaded */
	struct fb_io_wait_entry wait;
	void (*resume)(struct cmp_io *c);      /* after a wait for memory */
	void (*after)(struct cmp_io *c);       /* after a job or a commit */
	struct cmp_io *lock_next, *waiters, *waiters_tail, *wnext;
	struct cmp_io *cnext;
	uint64_t cneed;
	struct fb_bdev_io *io;
	struct fb_io_channel *ch;
	struct cmp_bdev *cb;
	uint64_t chunk;
	uint32_t off, len;            /* bytes within the chunk */
	enum fb_io_type type;
	bool locked;
	bool raw_hint;                /* the probe found the chunk incompressible */
	bool unsure;                  /* the probe could not tell: the codec's result teaches it */
	bool plain_crc_ok;            /* plain_crc is plainp's CRC32C, taken before the probe */
	uint32_t plain_crc;
	uint8_t *buf[2];              /* chunk buffers from the channel (NULL: not taken) */
	uint8_t *user;                /* the caller's buffer when it is the whole chunk */
	uint8_t *plainp;              /* the chunk's plain bytes (user or a chunk buffer) */
	uint8_t *storep;              /* the chunk's stored bytes (what is read or written) */
	struct iovec biov;            /* the base I/O's buffer */
	struct fb_bdev_io *zc;        /* a zcopy read lending storep, freed at the end */
	struct fb_cmp_entry old, neu;
	bool neu_allocated;
	int rc;                       /* a job's or a commit's result */
};


static inline uint64_t fb_cmp_base_blocks(struct cmp_bdev *cb)
{
	return fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(cb->base));
}

/* compress_io.c: the I/O path. */
void fb_cmp_io_submit(struct fb_io_channel *ch, struct fb_bdev_io *io);
struct fb_reactor *fb_cmp_io_reactor(struct cmp_io *c);
/* fb_reactor_send target: runs c->after(c). */
void fb_cmp_io_msg_after(void *arg);
/* Sends each I/O waiting for a map page back to its lookup (outside mu). */
void fb_cmp_io_wake(struct fb_cmp_map_waiter *w);

/* compress_commit.c: making the map durable (map.c's rules). */
/* Runs after(c) on c's reactor once a commit that starts after this call
 * has completed; c->rc is its status. */
void fb_cmp_commit_wait(struct cmp_io *c, void (*after)(struct cmp_io *));
/* Control thread: writes every dirty map page (flush, pages, flush). */
int fb_cmp_commit_sync(struct cmp_bdev *cb);

/* compress_reclaim.c: passes that rebuild allocator bitmaps (map.h). */
/* c found no space while some is stranded: runs after(c) on c's reactor
 * once a pass ends, c->rc 0 (look again) or -ENOSPC (the pass found
 * nothing). False (c untouched) when no pass can help. */
bool fb_cmp_reclaim_wait(struct cmp_io *c, void (*after)(struct cmp_io *));
/* Starts a background pass on r when one is due (fb_cmp_map_reclaim_due). */
void fb_cmp_reclaim_kick(struct cmp_bdev *cb, struct fb_reactor *r);
/* Control thread, at close: ends a pass in flight and waits for it (60 s
 * at most: false then, and the pass may still use cb). */
bool fb_cmp_reclaim_stop(struct cmp_bdev *cb);

#endif
