/* Shared by the compress bdev (compress.c) and its RPC methods (compress_rpc.c). */
#ifndef FB_COMPRESS_INTERNAL_H
#define FB_COMPRESS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "codec.h"
#include "flexbso/bdev_module.h"
#include "map.h"
#include "worker.h"

#define FB_CMP_NRPCS 4
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
	struct fb_cmp_pool *pool;    /* started with the first bdev */
	struct fb_cmp_codec_stats codec[FB_CMP_ALGO_MAX + 1]; /* all bdevs, per codec */
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

#endif
