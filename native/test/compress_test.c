/* compress bdev end to end in the engine: random mixed workloads (reads,
 * writes, write-zeroes, unmaps, flushes, FUA) of all sizes, unaligned to
 * chunks, from two reactors at once onto shared chunks, checked against a
 * reference image, on data of varied compressibility, for every codec;
 * reopen from the base alone after a clean shutdown; space accounting;
 * bad input refused with the param or the damage named and nothing
 * written to the base. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <semaphore.h>
#include <time.h>
#include <unistd.h>

#include "../src/compress/codec.h"
#include "../src/compress/compress_internal.h"
#include "../src/compress/map.h"
#include "harness.h"

#define SECT 512u
#define GROUP 24u /* sectors per ownership group: 12 KiB, straddles 16 KiB chunks */
#define QD 12

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Data of varied compressibility. */
static void fill_data(uint8_t *b, size_t n, uint64_t *seed)
{
	static const char *const words[] = {"chunk ", "map ", "the ", "reactor ", "flush\n",
					    "compress ", "of ", "block ", "write "};
	size_t i = 0;

	switch (rng(seed) % 5) {
	case 0:
		memset(b, 0, n);
		break;
	case 1:
		th_fill_random(b, n, seed);
		break;
	case 2:
		memset(b, (int)(rng(seed) & 0xff), n);
		break;
	default:
		while (i < n) {
			const char *w = words[rng(seed) % 9];

			for (; *w && i < n; w++)
				b[i++] = (uint8_t)*w;
		}
		if (rng(seed) % 2) /* ends in zero bytes */
			memset(b + n / 2, 0, n - n / 2);
		break;
	}
}

struct drv;

struct drv_op {
	struct drv *d;
	enum fb_io_type type;
	uint64_t off, num; /* sectors */
	uint32_t flags;
	uint8_t *buf;
	struct iovec iov;
};

struct drv {
	struct fb_engine *e;
	unsigned reactor, id, ndrv;
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	uint8_t *ref;
	uint64_t nsect;
	uint8_t *busy;
	struct drv_op ops[QD];
	int remaining, inflight;
	uint64_t seed;
	char fail[256];
	sem_t done;
};

static void drv_issue(struct drv_op *op);

static void drv_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct drv_op *op = arg;
	struct drv *d = op->d;
	size_t off = op->off * SECT, len = op->num * SECT;

	fb_bdev_free_io(io);
	d->inflight--;
	if (status && !d->fail[0])
		snprintf(d->fail, sizeof(d->fail), "io type %d at sector %llu+%llu failed: %d",
			 op->type, (unsigned long long)op->off, (unsigned long long)op->num, status);
	if (!status) {
		switch (op->type) {
		case FB_IO_WRITE:
			memcpy(d->ref + off, op->buf, len);
			break;
		case FB_IO_UNMAP:
		case FB_IO_WRITE_ZEROES:
			memset(d->ref + off, 0, len);
			break;
		case FB_IO_READ:
			if (memcmp(d->ref + off, op->buf, len) != 0 && !d->fail[0]) {
				size_t i = 0;

				while (d->ref[off + i] == op->buf[i])
					i++;
				snprintf(d->fail, sizeof(d->fail), "read at sector %llu+%llu differs from "
					 "the reference at byte %zu (got 0x%02x, want 0x%02x)",
					 (unsigned long long)op->off, (unsigned long long)op->num, i,
					 op->buf[i], d->ref[off + i]);
			}
			break;
		default:
			break;
		}
	}
	if (op->type != FB_IO_FLUSH)
		memset(d->busy + op->off, 0, op->num);
	if (d->remaining > 0 && !d->fail[0]) {
		drv_issue(op);
	} else if (d->inflight == 0) {
		fb_put_io_channel(d->ch);
		sem_post(&d->done);
	}
}

/* Picks a free range in one of this driver's groups and submits an op. */
static void drv_issue(struct drv_op *op)
{
	struct drv *d = op->d;
	uint64_t ngroups = d->nsect / GROUP, r = rng(&d->seed) % 100;
	int rc;

	d->remaining--;
	d->inflight++;
	op->flags = 0;
	op->type = r < 35 ? FB_IO_READ : r < 80 ? FB_IO_WRITE : r < 87 ? FB_IO_WRITE_ZEROES :
		   r < 94 ? FB_IO_UNMAP : FB_IO_FLUSH;
	if (op->type != FB_IO_FLUSH) {
		for (int tries = 0;; tries++) {
			uint64_t g = (rng(&d->seed) % (ngroups / d->ndrv)) * d->ndrv + d->id;
			uint64_t s = rng(&d->seed) % GROUP, n = 1 + rng(&d->seed) % (GROUP - s);
			bool free_range = true;

			for (uint64_t i = 0; i < n; i++)
				free_range = free_range && !d->busy[g * GROUP + s + i];
			if (free_range) {
				op->off = g * GROUP + s;
				op->num = n;
				break;
			}
			if (tries > 1000) {
				op->type = FB_IO_FLUSH;
				break;
			}
		}
	}
	if (op->type == FB_IO_FLUSH) {
		op->off = 0;
		op->num = d->nsect;
	} else {
		memset(d->busy + op->off, 1, op->num);
	}
	op->iov.iov_base = op->buf;
	op->iov.iov_len = op->num * SECT;
	switch (op->type) {
	case FB_IO_READ:
		memset(op->buf, 0xee, op->num * SECT);
		rc = fb_bdev_readv_blocks(d->desc, d->ch, &op->iov, 1, op->off, op->num, drv_done, op);
		break;
	case FB_IO_WRITE:
		fill_data(op->buf, op->num * SECT, &d->seed);
		if (rng(&d->seed) % 8 == 0)
			op->flags = FB_IO_FLAG_FUA;
		rc = fb_bdev_writev_blocks(d->desc, d->ch, &op->iov, 1, op->off, op->num, op->flags,
					   drv_done, op);
		break;
	case FB_IO_WRITE_ZEROES:
		rc = fb_bdev_write_zeroes_blocks(d->desc, d->ch, op->off, op->num, 0, drv_done, op);
		break;
	case FB_IO_UNMAP:
		rc = fb_bdev_unmap_blocks(d->desc, d->ch, op->off, op->num, drv_done, op);
		break;
	default:
		rc = fb_bdev_flush_blocks(d->desc, d->ch, 0, d->nsect, drv_done, op);
		break;
	}
	if (rc) {
		snprintf(d->fail, sizeof(d->fail), "submit type %d failed: %d", op->type, rc);
		d->inflight--;
		d->remaining = 0;
		if (op->type != FB_IO_FLUSH)
			memset(d->busy + op->off, 0, op->num);
		if (d->inflight == 0) {
			fb_put_io_channel(d->ch);
			sem_post(&d->done);
		}
	}
}

static void drv_start(void *arg)
{
	struct drv *d = arg;

	d->ch = fb_bdev_get_io_channel(d->desc);
	if (!d->ch) {
		snprintf(d->fail, sizeof(d->fail), "no channel");
		sem_post(&d->done);
		return;
	}
	for (int i = 0; i < QD && d->remaining > 0; i++)
		drv_issue(&d->ops[i]);
}

static void wait_deadline(sem_t *s, int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	while (sem_timedwait(s, &ts) != 0) {
		if (errno == ETIMEDOUT)
			th_fail(__FILE__, __LINE__, "workload did not finish in %d s", seconds);
	}
}

/* Random mixed workload from `ndrv` reactors onto a lb-512 compress bdev,
 * then a full read-back and large unaligned I/O checked against ref. */
static void workload(struct fb_engine *e, const char *name, uint8_t *ref, int ops, unsigned ndrv,
		     uint64_t seed)
{
	struct fb_bdev_desc *desc;
	struct fb_err err;
	struct drv d[2];
	uint64_t nsect;
	uint8_t *busy, *big;
	const size_t bigmax = 300 * 1024;

	CHECK_OK(th_open(e, name, true, &desc, &err));
	CHECK_EQ(fb_bdev_get_block_size(fb_bdev_desc_get_bdev(desc)), SECT);
	nsect = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(desc));
	busy = calloc(nsect, 1);
	CHECK(busy);
	for (unsigned i = 0; i < ndrv; i++) {
		d[i] = (struct drv){.e = e, .reactor = i, .id = i, .ndrv = ndrv, .desc = desc,
				    .ref = ref, .nsect = nsect, .busy = busy, .remaining = ops,
				    .seed = seed * 7919 + i + 1};
		for (int q = 0; q < QD; q++) {
			d[i].ops[q].d = &d[i];
			d[i].ops[q].buf = th_aligned(4096, GROUP * SECT);
		}
		sem_init(&d[i].done, 0, 0);
	}
	for (unsigned i = 0; i < ndrv; i++)
		fb_reactor_send(fb_engine_get_reactor(e, i), drv_start, &d[i]);
	for (unsigned i = 0; i < ndrv; i++) {
		wait_deadline(&d[i].done, 300);
		if (d[i].fail[0])
			th_fail(__FILE__, __LINE__, "%s: driver %u: %s", name, i, d[i].fail);
		for (int q = 0; q < QD; q++)
			free(d[i].ops[q].buf);
		sem_destroy(&d[i].done);
	}
	free(busy);
	/* Large I/O across many chunks, unaligned at both ends. */
	big = th_aligned(4096, bigmax);
	for (int i = 0; i < 40; i++) {
		uint64_t n = 1 + rng(&seed) % (bigmax / SECT), off = rng(&seed) % (nsect - n);

		fill_data(big, n * SECT, &seed);
		CHECK_EQ(th_write(e, i % ndrv, desc, big, off, n), 0);
		memcpy(ref + off * SECT, big, n * SECT);
		memset(big, 0xcd, n * SECT);
		CHECK_EQ(th_read(e, (i + 1) % ndrv, desc, big, off, n), 0);
		CHECK(memcmp(big, ref + off * SECT, n * SECT) == 0);
	}
	free(big);
	fb_bdev_close(desc);
}

/* Reads the whole bdev and compares it with ref. */
static void verify_all(struct fb_engine *e, const char *name, const uint8_t *ref)
{
	struct fb_bdev_desc *desc;
	struct fb_err err;
	const uint64_t step = 2048; /* sectors: 1 MiB, many chunks per read */
	uint8_t *buf = th_aligned(4096, step * SECT);
	uint64_t nsect;

	CHECK_OK(th_open(e, name, false, &desc, &err));
	nsect = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(desc));
	for (uint64_t s = 0; s < nsect; s += step) {
		uint64_t n = nsect - s < step ? nsect - s : step;

		CHECK_EQ(th_read(e, 0, desc, buf, s, n), 0);
		if (memcmp(buf, ref + s * SECT, n * SECT) != 0)
			th_fail(__FILE__, __LINE__, "%s: sectors %llu+%llu differ from the reference",
				name, (unsigned long long)s, (unsigned long long)n);
	}
	free(buf);
	fb_bdev_close(desc);
}

/* A uint64 member of the bdev's bdev_compress_get_stats entry. */
static uint64_t stat_u64(struct fb_engine *e, const char *name, const char *key)
{
	return th_stat_u64(e, "bdev_compress_get_stats", name, key);
}

static char *tmpfile_of(uint64_t bytes);

TEST(test_workload_every_codec)
{
	static const char *const algos[] = {"deflate", "zlib", "lz4", "zstd", "none"};

	for (unsigned a = 0; a < 5; a++) {
		struct fb_engine *e = th_engine(2);
		struct fb_err err;
		uint8_t *ref = calloc(16 << 20, 1);
		uint64_t logical, physical;

		CHECK(ref);
		CHECK_OK(th_malloc(e, "M0", 40000, 512, &err));
		CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
				"{\"base_bdev_name\":\"M0\",\"comp_algo\":\"%s\",\"lb_size\":512,"
				"\"num_blocks\":32768}", algos[a]));
		workload(e, "COMP_M0", ref, 1500, 2, a + 1);
		verify_all(e, "COMP_M0", ref);
		/* Space: mixed data compresses, and physical counts whole units only. */
		logical = stat_u64(e, "COMP_M0", "logical_bytes");
		physical = stat_u64(e, "COMP_M0", "physical_bytes");
		CHECK(logical > 0 && physical > 0);
		CHECK(physical < logical);
		CHECK_EQ(physical % 512, 0);
		CHECK(stat_u64(e, "COMP_M0", "crc_errors") == 0);
		CHECK(stat_u64(e, "COMP_M0", "read_modify_writes") > 0);
		/* Random data stored raw, found by the probe without running the codec. */
		CHECK(stat_u64(e, "COMP_M0", "probe_raw") > 0);
		CHECK_OK(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"COMP_M0\"}"));
		fb_engine_destroy(e);
		free(ref);
	}
}

/* A bitmap budget of 8 for 19 segments: writes, overwrites and unmaps
 * strand free space, reclaim passes give it back while they run (and
 * urgently when a write finds none: a write failing with ENOSPC fails the
 * workload), every read matches the reference, and a reopen trims open's
 * bitmaps to the budget with nothing lost. */
static void reclaim_workload(const char *algo)
{
	char *path = tmpfile_of(40000 * 512);
	uint8_t *ref = calloc(18 << 20, 1);
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	uint64_t passes;

	CHECK(ref);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"alloc_segments_per_bitmap\":1024}"));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"%s\",\"lb_size\":512,"
			"\"num_blocks\":36864}", algo));
	CHECK_EQ(stat_u64(e, "COMP_F0", "bitmap_budget"), 8);
	for (int round = 0; round < 4; round++) {
		workload(e, "COMP_F0", ref, 1500, 2, 100 + (uint64_t)round);
		verify_all(e, "COMP_F0", ref);
	}
	passes = stat_u64(e, "COMP_F0", "reclaim_passes");
	fprintf(stderr, "    %s: %llu reclaim passes, %llu bytes made allocatable, %llu stranded, "
		"%llu allocated of %llu\n", algo, (unsigned long long)passes,
		(unsigned long long)stat_u64(e, "COMP_F0", "reclaimed_bytes"),
		(unsigned long long)stat_u64(e, "COMP_F0", "stranded_bytes"),
		(unsigned long long)stat_u64(e, "COMP_F0", "allocated_bytes"),
		(unsigned long long)stat_u64(e, "COMP_F0", "physical_capacity_bytes"));
	CHECK(passes >= 3);
	CHECK_EQ(stat_u64(e, "COMP_F0", "reclaim_mismatches"), 0);
	CHECK_EQ(stat_u64(e, "COMP_F0", "reclaim_overlaps"), 0);
	CHECK(stat_u64(e, "COMP_F0", "bitmaps") <= 8);
	CHECK_EQ(stat_u64(e, "COMP_F0", "crc_errors"), 0);
	fb_engine_destroy(e);

	/* Reopen (examine): the scan holds a bitmap per partly used segment
	 * (fewer than its open budget, 32: one pass), the volume keeps 8. */
	e = th_engine(2);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"alloc_segments_per_bitmap\":1024}"));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	verify_all(e, "COMP_F0", ref);
	fprintf(stderr, "    reopened: %llu bitmaps at open, %llu kept\n",
		(unsigned long long)stat_u64(e, "COMP_F0", "open_bitmaps"),
		(unsigned long long)stat_u64(e, "COMP_F0", "bitmaps"));
	CHECK(stat_u64(e, "COMP_F0", "open_bitmaps") > 8);
	CHECK_EQ(stat_u64(e, "COMP_F0", "open_map_passes"), 1); /* fewer partly used than 4x the budget */
	CHECK(stat_u64(e, "COMP_F0", "bitmaps") <= 8);
	workload(e, "COMP_F0", ref, 1500, 2, 200);
	verify_all(e, "COMP_F0", ref);
	CHECK_EQ(stat_u64(e, "COMP_F0", "reclaim_mismatches"), 0);
	fb_engine_destroy(e);
	unlink(path);
	free(path);
	free(ref);
}

TEST(test_reclaim_workload)
{
	reclaim_workload("none"); /* raw chunks: the volume runs nearly full */
}

/* Files from /usr/share (text, binaries, compressed files), for test_space. */
static uint8_t *space_corpus;
static size_t space_len, space_cap;

static int space_add(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	int fd;
	ssize_t n;

	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode) || st->st_size > (1 << 20))
		return 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	n = read(fd, space_corpus + space_len, space_cap - space_len);
	space_len += n > 0 ? (size_t)n : 0;
	close(fd);
	return space_len >= space_cap;
}

/* Space: a real mixed corpus through the bdev takes physical space within
 * 10% of the sum of the codec's own output for the same chunks (raw where
 * it does not save 1/8, nothing for zero chunks). */
TEST(test_space)
{
	static const char *const algos[] = {"deflate", "zlib", "lz4", "zstd"};
	const size_t chunk = 16384;
	struct fb_cmp_codec_ctxs ctxs = {0};
	uint8_t *z = malloc(chunk);

	space_cap = 4 << 20;
	space_corpus = th_aligned(4096, space_cap);
	CHECK(z && space_corpus);
	nftw("/usr/share", space_add, 32, FTW_PHYS);
	space_len = space_len / chunk * chunk;
	CHECK(space_len >= 1 << 20);
	for (unsigned a = 0; a < 4; a++) {
		const struct fb_cmp_codec *codec = fb_cmp_codec_by_name(algos[a]);
		struct fb_engine *e = th_engine(1);
		struct fb_bdev_desc *desc;
		struct fb_err err;
		uint64_t alone = 0, physical;

		for (size_t off = 0; off < space_len; off += chunk) {
			size_t n = 0;
			bool zero = true;

			for (size_t i = 0; i < chunk && zero; i++)
				zero = space_corpus[off + i] == 0;
			if (zero)
				continue;
			alone += fb_cmp_compress(&ctxs, codec, codec->default_level, space_corpus + off, chunk,
						 z, chunk - chunk / 8, &n) == 0 ? n : chunk;
		}
		CHECK_OK(th_malloc(e, "M0", 2 * space_len / SECT + 8192, 512, &err));
		CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
				"{\"base_bdev_name\":\"M0\",\"comp_algo\":\"%s\",\"lb_size\":512}", algos[a]));
		CHECK_OK(th_open(e, "COMP_M0", true, &desc, &err));
		for (size_t off = 0; off < space_len; off += chunk)
			CHECK_EQ(th_write(e, 0, desc, space_corpus + off, off / SECT, chunk / SECT), 0);
		fb_bdev_close(desc);
		physical = stat_u64(e, "COMP_M0", "physical_bytes");
		fprintf(stderr, "    %s: %zu B of files in %llu B physical, codec alone %llu B (%+.1f%%)\n",
			algos[a], space_len, (unsigned long long)physical, (unsigned long long)alone,
			100.0 * ((double)physical / (double)alone - 1));
		CHECK(alone < space_len);
		CHECK(physical * 10 <= alone * 11);
		CHECK_OK(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"COMP_M0\"}"));
		fb_engine_destroy(e);
	}
	fb_cmp_codec_ctxs_free(&ctxs);
	free(space_corpus);
	free(z);
}

/* Creates COMP_M0 with codec algo (16 KiB chunks, nchunks of them) on a
 * malloc base with room for them all stored raw twice, and writes ref's
 * chunks to it whole, one after another, from reactor 0. */
static void write_chunks(struct fb_engine *e, const char *algo, const uint8_t *ref, size_t nchunks)
{
	const size_t chunk = 16384;
	struct fb_bdev_desc *desc;
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M0", 2 * nchunks * chunk / SECT + 8192, 512, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"M0\",\"comp_algo\":\"%s\",\"lb_size\":512,"
			"\"num_blocks\":%zu}", algo, nchunks * chunk / SECT));
	CHECK_OK(th_open(e, "COMP_M0", true, &desc, &err));
	for (size_t i = 0; i < nchunks; i++)
		CHECK_EQ(th_write(e, 0, desc, ref + i * chunk, i * chunk / SECT, chunk / SECT), 0);
	fb_bdev_close(desc);
}

/* Chunks of slightly uneven random bytes (1 in 20 zero: ~2% to gain, not
 * the 1/8 the early abort asks) leave the probe unsure; after a few codec
 * tries that do not shrink, the bdev stores such chunks raw without a try
 * (but every 16th), and every chunk still reads back. */
TEST(test_unsure_learns)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	const size_t chunk = 16384, nchunks = 512;
	uint8_t *ref = th_aligned(4096, nchunks * chunk);
	uint64_t seed = 7, tries;

	for (size_t i = 0; i < nchunks * chunk; i++) {
		uint64_t r = rng(&seed);

		ref[i] = r % 20 == 0 ? 0 : (uint8_t)(r >> 32);
	}
	write_chunks(e, "zlib", ref, nchunks);
	tries = stat_u64(e, "COMP_M0", "early_aborts");
	fprintf(stderr, "    %zu chunks: %llu codec tries that did not shrink, %llu stored raw by the probe\n",
		nchunks, (unsigned long long)tries, (unsigned long long)stat_u64(e, "COMP_M0", "probe_raw"));
	CHECK_EQ(stat_u64(e, "COMP_M0", "physical_bytes"), nchunks * chunk);
	CHECK(tries < nchunks / 16);
	verify_all(e, "COMP_M0", ref);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"COMP_M0\"}"));
	fb_engine_destroy(e);
	free(ref);
}

/* Whole-chunk writes that switch between random data and data a codec
 * shrinks, through one reactor: after random chunks the bdev takes the
 * chunk's CRC32C before the probe, and glances at long random runs. Every
 * chunk reads back (a CRC32C taken for raw but the chunk compressed fails
 * the read), text after random is compressed at once, and chunks that
 * can fool a glance (random first quarter, zeros after) go raw for at most
 * FB_CMP_RUN_FULL - 1 chunks after a random run, and for a few at most in
 * practice: a glance looks at a window drawn among eight, 3 in 4 of them
 * in the zeros (5 fooled in a row: ~1 run in 1000). */
TEST(test_probe_runs)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	/* Chunks [0, 24) random, [24, 48) text but every 3rd random, [48, 73)
	 * random, [73, 96) fooling. */
	const size_t chunk = 16384, nchunks = 96, text = 24, random2 = 48, fool = 73;
	const size_t nraw = text + (random2 - text) / 3 + fool - random2;
	uint8_t *ref = th_aligned(4096, nchunks * chunk);
	uint64_t seed = 5, physical, raw;

	th_fill_random(ref, nchunks * chunk, &seed);
	for (size_t i = text; i < random2; i++)
		if (i % 3)
			for (size_t j = 0; j < chunk; j++)
				ref[i * chunk + j] = (uint8_t)"chunk map of the flush\n"[(j + i) % 23];
	for (size_t i = fool; i < nchunks; i++)
		memset(ref + i * chunk + chunk / 4, 0, chunk - chunk / 4);
	write_chunks(e, "lz4", ref, nchunks);
	physical = stat_u64(e, "COMP_M0", "physical_bytes");
	raw = stat_u64(e, "COMP_M0", "probe_raw");
	fprintf(stderr, "    %zu chunks: %llu B physical, %llu stored raw by the probe (%zu random)\n",
		nchunks, (unsigned long long)physical, (unsigned long long)raw, nraw);
	/* Raw: the random chunks and at most 4 fooling ones; the rest
	 * compress (text to under 1/8, fooling to under 1/2). */
	CHECK(raw >= nraw && raw <= nraw + 4);
	CHECK(physical <= (nraw + 4) * chunk + (random2 - text) * chunk / 8 +
			      (nchunks - fool) * chunk / 2);
	verify_all(e, "COMP_M0", ref);
	CHECK_EQ(stat_u64(e, "COMP_M0", "crc_errors"), 0);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"COMP_M0\"}"));
	fb_engine_destroy(e);
	free(ref);
}

/* A map cache smaller than the map: pages are evicted and read back under
 * a mixed workload from two reactors, and the volume reopens intact. */
TEST(test_small_map_cache)
{
	const uint64_t fbytes = 48 << 20;
	char *path = tmpfile_of(fbytes);
	uint8_t *ref = calloc(32 << 20, 1);
	struct fb_engine *e = th_engine(2);
	struct fb_err err;

	CHECK(ref);
	/* 64 KiB: 16 cached pages for a map of 33 (8192 chunks of 4 KiB). */
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"map_cache_kib\":64}"));
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_set_options", "{\"map_cache_kib\":63}"), -EINVAL);
	CHECK(strstr(err.msg, "'map_cache_kib'"));
	CHECK_OK(th_file(e, "F2", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F2\",\"name\":\"VOL2\",\"comp_algo\":\"lz4\","
			"\"lb_size\":512,\"chunk_size\":4096,\"num_blocks\":65536}"));
	CHECK_EQ(stat_u64(e, "VOL2", "pages"), 16);
	workload(e, "VOL2", ref, 1500, 2, 21);
	/* A level set live is kept in the header. */
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_level", "{\"name\":\"VOL2\",\"comp_level\":9}"));
	workload(e, "VOL2", ref, 300, 2, 22);
	verify_all(e, "VOL2", ref);
	CHECK(stat_u64(e, "VOL2", "evictions") > 0);
	fb_engine_destroy(e);

	/* Examine reopens it with its name and level, from the base alone. */
	e = th_engine(2);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"map_cache_kib\":64}"));
	CHECK_OK(th_file(e, "F2", path, 512, "", &err));
	verify_all(e, "VOL2", ref);
	CHECK_EQ(stat_u64(e, "VOL2", "comp_level"), 9);
	CHECK_EQ(stat_u64(e, "VOL2", "repaired_at_open"), 0);
	CHECK(stat_u64(e, "VOL2", "misses") > 16); /* read from the base on demand */
	CHECK_EQ(stat_u64(e, "VOL2", "allocated_bytes"), stat_u64(e, "VOL2", "physical_bytes"));
	fb_engine_destroy(e);
	unlink(path);
	free(path);
	free(ref);
}

/* Codec work inline on the reactors (worker_threads 0), 4 KiB blocks and
 * the smallest chunks. */
TEST(test_inline_4k_blocks)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	struct fb_bdev_desc *desc;
	uint8_t *buf = th_aligned(4096, 64 * 1024), *back = th_aligned(4096, 64 * 1024);
	uint64_t seed = 5;

	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"worker_threads\":0}"));
	CHECK_OK(th_malloc(e, "M1", 4096, 4096, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"M1\",\"comp_algo\":\"lz4\",\"chunk_size\":4096,"
			"\"lb_size\":4096,\"name\":\"C1\"}"));
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_set_options", "{\"worker_threads\":2}"), -EBUSY);
	CHECK_OK(th_open(e, "C1", true, &desc, &err));
	for (int i = 0; i < 200; i++) {
		uint64_t n = 1 + rng(&seed) % 16, off = rng(&seed) % (fb_bdev_get_num_blocks(
								   fb_bdev_desc_get_bdev(desc)) - n);

		fill_data(buf, n * 4096, &seed);
		CHECK_EQ(th_write(e, i % 2, desc, buf, off, n), 0);
		CHECK_EQ(th_read(e, (i + 1) % 2, desc, back, off, n), 0);
		CHECK(memcmp(buf, back, n * 4096) == 0);
	}
	/* The level changes in place: new writes use it, old chunks still read. */
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_level", "{\"name\":\"C1\",\"comp_level\":9}"));
	CHECK_EQ(stat_u64(e, "C1", "comp_level"), 9);
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_set_level", "{\"name\":\"C1\",\"comp_level\":13}"),
		 -EINVAL);
	CHECK(strstr(err.msg, "'comp_level'") && strstr(err.msg, "1 to 12"));
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_set_level", "{\"name\":\"M1\",\"comp_level\":1}"),
		 -ENODEV);
	fill_data(buf, 16 * 4096, &seed);
	CHECK_EQ(th_write(e, 0, desc, buf, 0, 16), 0);
	CHECK_EQ(th_read(e, 1, desc, back, 0, 16), 0);
	CHECK(memcmp(buf, back, 16 * 4096) == 0);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	free(buf);
	free(back);
}

static char *tmpfile_of(uint64_t bytes)
{
	char *path = strdup("/tmp/fb_compress_XXXXXX");
	int fd;

	CHECK(path);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)bytes) == 0);
	close(fd);
	return path;
}

static uint8_t *read_file(const char *path, size_t len)
{
	uint8_t *b = malloc(len);
	int fd = open(path, O_RDONLY);

	CHECK(b && fd >= 0);
	CHECK(pread(fd, b, len, 0) == (ssize_t)len);
	close(fd);
	return b;
}

/* A clean shutdown, then a new engine finds the volume from the base alone
 * (examine) with every byte intact and free space rebuilt. */
TEST(test_reopen_from_base)
{
	const uint64_t fbytes = 24 << 20;
	char *path = tmpfile_of(fbytes);
	uint8_t *ref = calloc(16 << 20, 1);
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	uint64_t physical, used;

	CHECK(ref);
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"zstd\",\"comp_level\":5,"
			"\"lb_size\":512,\"num_blocks\":32768}"));
	workload(e, "COMP_F0", ref, 800, 2, 77);
	physical = stat_u64(e, "COMP_F0", "physical_bytes");
	fb_engine_destroy(e);

	e = th_engine(2);
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	/* No create call: examine opened it. */
	verify_all(e, "COMP_F0", ref);
	CHECK_EQ(stat_u64(e, "COMP_F0", "physical_bytes"), physical);
	used = stat_u64(e, "COMP_F0", "allocated_bytes");
	CHECK_EQ(used, physical); /* free space rebuilt from the map: nothing pending, nothing leaked */
	CHECK_EQ(stat_u64(e, "COMP_F0", "repaired_at_open"), 0);
	CHECK_EQ(stat_u64(e, "COMP_F0", "open_map_passes"), 1);
	/* And it keeps working after the reopen. */
	workload(e, "COMP_F0", ref, 300, 2, 78);
	verify_all(e, "COMP_F0", ref);
	/* bdev_compress_delete destroys the volume (SPDK's semantics): a create
	 * with the same parameters on the same base starts empty, so the next
	 * owner of the base never reads the old data. */
	CHECK_OK(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"COMP_F0\"}"));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"zstd\",\"lb_size\":512,"
			"\"num_blocks\":32768}"));
	memset(ref, 0, 16 << 20);
	verify_all(e, "COMP_F0", ref);
	CHECK_EQ(stat_u64(e, "COMP_F0", "physical_bytes"), 0);
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_delete", "{\"name\":\"F0\"}"), -ENODEV);
	fb_engine_destroy(e);
	unlink(path);
	free(path);
	free(ref);
}

/* Writes chunk b's entry on the base as a copy of chunk a's (the two
 * then claim the same units), in the slot in force, sealed again. */
static void plant_overlap(const char *path, uint64_t a, uint64_t b)
{
	static uint8_t slot[2][FB_CMP_PAGE_SIZE];
	struct fb_cmp_entry ents[FB_CMP_ENTRIES_PER_PAGE], ea;
	struct fb_cmp_header h;
	uint64_t pa = fb_cmp_map_page_of(a), pb = fb_cmp_map_page_of(b), gen;
	int fd = open(path, O_RDWR), best;

	CHECK(fd >= 0);
	CHECK(pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h));
	for (int pass = 0; pass < 2; pass++) {
		uint64_t p = pass ? pb : pa;

		for (unsigned k = 0; k < 2; k++)
			CHECK(pread(fd, slot[k], FB_CMP_PAGE_SIZE, (off_t)fb_cmp_page_offset(&h, p, k)) ==
			      FB_CMP_PAGE_SIZE);
		best = fb_cmp_map_best_slot(&h, p, slot[0], slot[1], &gen);
		CHECK(best >= 0);
		memcpy(ents, slot[best] + sizeof(struct fb_cmp_page_hdr), sizeof(ents));
		if (pass == 0) {
			ea = ents[a % FB_CMP_ENTRIES_PER_PAGE];
			continue;
		}
		ents[b % FB_CMP_ENTRIES_PER_PAGE] = ea;
		fb_cmp_page_seal(&h, slot[best], p, gen, ents, FB_CMP_ENTRIES_PER_PAGE);
		CHECK(pwrite(fd, slot[best], FB_CMP_PAGE_SIZE, (off_t)fb_cmp_page_offset(&h, p, (unsigned)best)) ==
		      FB_CMP_PAGE_SIZE);
	}
	close(fd);
}

/* A volume with every segment half used reopens with a budget of 8
 * bitmaps: open may hold 32, so it reads the map in several passes. An
 * overlap planted in a late segment (a later chunk claims an earlier
 * one's units) is found by a later pass: that chunk is unmapped and
 * reported, every other reads back, the allocator agrees with the map,
 * and reclaim passes that rebuild segments from it find no mismatch. */
TEST(test_open_passes)
{
	const uint64_t chunk = 16384, nchunks = 4096, a = 3800, b = 3802;
	char *path = tmpfile_of(72ull << 20);
	uint8_t *ref = malloc(nchunks * chunk);
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	uint64_t seed = 5;

	CHECK(ref);
	th_fill_random(ref, nchunks * chunk, &seed);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"alloc_segments_per_bitmap\":1024}"));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"lz4\",\"lb_size\":512,"
			"\"num_blocks\":%llu}", (unsigned long long)(nchunks * chunk / SECT)));
	CHECK_OK(th_open(e, "COMP_F0", true, &desc, &err));
	for (uint64_t i = 0; i < nchunks; i++)
		CHECK_EQ(th_write(e, 0, desc, ref + i * chunk, i * chunk / SECT, chunk / SECT), 0);
	for (uint64_t i = 1; i < nchunks; i += 2) {
		CHECK_EQ(th_io(e, 0, desc, FB_IO_UNMAP, NULL, 0, i * chunk / SECT, chunk / SECT, 0), 0);
		memset(ref + i * chunk, 0, chunk);
	}
	for (int i = 0; i < 3; i++) /* the frees land a commit after the unmaps are durable */
		CHECK_EQ(th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	plant_overlap(path, a, b);
	memset(ref + b * chunk, 0, chunk);

	e = th_engine(1);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"alloc_segments_per_bitmap\":1024}"));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	fprintf(stderr, "    %llu map passes, %llu bitmaps at open, %llu repaired\n",
		(unsigned long long)stat_u64(e, "COMP_F0", "open_map_passes"),
		(unsigned long long)stat_u64(e, "COMP_F0", "open_bitmaps"),
		(unsigned long long)stat_u64(e, "COMP_F0", "repaired_at_open"));
	CHECK(stat_u64(e, "COMP_F0", "open_map_passes") >= 3);
	CHECK(stat_u64(e, "COMP_F0", "open_bitmaps") <= 32);
	CHECK_EQ(stat_u64(e, "COMP_F0", "repaired_at_open"), 1);
	CHECK_EQ(stat_u64(e, "COMP_F0", "allocated_bytes"), stat_u64(e, "COMP_F0", "physical_bytes"));
	verify_all(e, "COMP_F0", ref);
	/* Rewrite 1024 of the unmapped chunks: more than the empty and tracked
	 * space, so reclaim passes rebuild segments from the map. */
	CHECK_OK(th_open(e, "COMP_F0", true, &desc, &err));
	for (uint64_t i = 1; i < 2048; i += 2)
		CHECK_EQ(th_write(e, 0, desc, ref + (i - 1) * chunk, i * chunk / SECT, chunk / SECT), 0);
	for (uint64_t i = 1; i < 2048; i += 2)
		memcpy(ref + i * chunk, ref + (i - 1) * chunk, chunk);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0);
	fb_bdev_close(desc);
	verify_all(e, "COMP_F0", ref);
	CHECK(stat_u64(e, "COMP_F0", "reclaim_passes") > 0);
	CHECK_EQ(stat_u64(e, "COMP_F0", "reclaim_mismatches"), 0);
	CHECK_EQ(stat_u64(e, "COMP_F0", "reclaim_overlaps"), 0);
	fb_engine_destroy(e);
	unlink(path);
	free(path);
	free(ref);
}

/* Each bad create is refused with the param named, and the base keeps
 * every byte. */
TEST(test_bad_input)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *base;
	struct fb_err err;
	uint8_t *before = th_aligned(4096, 64 << 10), *after = th_aligned(4096, 64 << 10);
	uint64_t seed = 3;
	static const struct {
		const char *params, *want;
	} cases[] = {
		{"{\"base_bdev_name\":\"M2\",\"comp_algo\":\"snappy\"}", "'comp_algo'"},
		{"{\"base_bdev_name\":\"M2\",\"chunk_size\":12288}", "'chunk_size'"},
		{"{\"base_bdev_name\":\"M2\",\"chunk_size\":2048,\"lb_size\":4096}", "'chunk_size'"},
		{"{\"base_bdev_name\":\"M2\",\"lb_size\":1024}", "'lb_size'"},
		{"{\"base_bdev_name\":\"M2\",\"comp_algo\":\"lz4\",\"comp_level\":40}", "'comp_level'"},
		{"{\"base_bdev_name\":\"M2\",\"engine\":\"doca\"}", "decompress"},
		{"{\"base_bdev_name\":\"M2\",\"engine\":\"gpu\"}", "'engine'"},
		{"{\"base_bdev_name\":\"M2\",\"engine\":\"fpga\"}", "'engine'"},
		{"{\"base_bdev_name\":\"M2\",\"num_blocks\":1000,\"lb_size\":512}", "'num_blocks'"},
		{"{\"base_bdev_name\":\"TINY\"}", "too small"},
	};

	CHECK_OK(th_malloc(e, "M2", 128, 512, &err));
	CHECK_OK(th_malloc(e, "TINY", 40, 512, &err)); /* 20 KiB < 28 KiB */
	CHECK_OK(th_open(e, "M2", true, &base, &err));
	th_fill_random(before, 64 << 10, &seed);
	CHECK_EQ(th_write(e, 0, base, before, 0, 128), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = th_rpc(e, &err, "bdev_compress_create", "%s", cases[i].params);

		if (rc != -EINVAL || !strstr(err.msg, cases[i].want))
			th_fail(__FILE__, __LINE__, "%s: rc %d, message \"%s\" (want -22 naming %s)",
				cases[i].params, rc, err.msg, cases[i].want);
		CHECK_EQ(th_read(e, 0, base, after, 0, 128), 0);
		CHECK(memcmp(before, after, 64 << 10) == 0);
	}
	/* A base that does not exist; a name that is taken. */
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_create", "{\"base_bdev_name\":\"NOPE\"}"), -ENODEV);
	CHECK_EQ(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"M2\",\"name\":\"TINY\",\"chunk_size\":4096}"), -EEXIST);
	CHECK(strstr(err.msg, "'TINY'"));
	CHECK_EQ(th_read(e, 0, base, after, 0, 128), 0);
	CHECK(memcmp(before, after, 64 << 10) == 0);
	fb_bdev_close(base);
	fb_engine_destroy(e);
	free(before);
	free(after);
}

/* A damaged header: the volume is not opened (examine logs the damage),
 * create refuses naming it, and not one byte of the base changes. */
TEST(test_damaged_header)
{
	const uint64_t fbytes = 4 << 20;
	char *path = tmpfile_of(fbytes);
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	uint8_t *buf = th_aligned(4096, 65536), *img, *img2;
	uint64_t seed = 11;
	int fd, rc;

	CHECK_OK(th_file(e, "F1", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create", "{\"base_bdev_name\":\"F1\",\"lb_size\":512}"));
	CHECK_OK(th_open(e, "COMP_F1", true, &desc, &err));
	fill_data(buf, 65536, &seed);
	CHECK_EQ(th_write(e, 0, desc, buf, 0, 128), 0);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	/* Flip one bit of the chunk size field. */
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	{
		uint8_t b;

		CHECK(pread(fd, &b, 1, 33) == 1);
		b ^= 0x40;
		CHECK(pwrite(fd, &b, 1, 33) == 1);
	}
	close(fd);
	img = read_file(path, fbytes);
	e = th_engine(1);
	CHECK_OK(th_file(e, "F1", path, 512, "", &err));
	CHECK(th_open(e, "COMP_F1", false, &desc, &err) != 0); /* examine did not open it */
	rc = th_rpc(e, &err, "bdev_compress_create", "{\"base_bdev_name\":\"F1\",\"lb_size\":512}");
	CHECK_EQ(rc, -EINVAL);
	CHECK(strstr(err.msg, "CRC32C mismatch") && strstr(err.msg, "Nothing was written"));
	fb_engine_destroy(e);
	img2 = read_file(path, fbytes);
	CHECK(memcmp(img, img2, fbytes) == 0);
	unlink(path);
	free(path);
	free(img);
	free(img2);
	free(buf);
}

/* Deleting the base hot-removes the compress bdev on it. */
TEST(test_base_removed)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;

	CHECK_OK(th_malloc(e, "M3", 4096, 512, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create", "{\"base_bdev_name\":\"M3\",\"lb_size\":512}"));
	CHECK_EQ(th_rpc(e, &err, "bdev_malloc_delete", "{\"name\":\"M3\"}"), 0);
	CHECK(th_open(e, "COMP_M3", false, &desc, &err) != 0);
	fb_engine_destroy(e);
}

/* Repetitive data compresses in a few microseconds a chunk: such writes
 * run the codec on the reactor (CMP_INLINE_NS) once the first ones have
 * timed it. Whole and partial chunk writes, read back from two reactors. */
static void test_fast_codec_writes(void)
{
	struct fb_engine *e = th_engine(2);
	struct fb_err err;
	struct fb_bdev_desc *desc;
	size_t len = 64 * 16384;
	uint8_t *buf = th_aligned(4096, len), *back = th_aligned(4096, len);
	uint64_t seed = 11;

	CHECK_OK(th_malloc(e, "M5", 32768, 512, &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"M5\",\"comp_algo\":\"lz4\",\"lb_size\":512,"
			"\"name\":\"C5\"}"));
	CHECK_OK(th_open(e, "C5", true, &desc, &err));
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < len; i += 64) { /* a 64-byte line, changed per chunk and round */
			char line[65];

			snprintf(line, sizeof(line), "%-63zu\n", i / 16384 * 7 + (size_t)round);
			memcpy(buf + i, line, 64);
		}
		CHECK_EQ(th_write(e, round % 2, desc, buf, 0, len / 512), 0);
		/* Partial: read-modify-write of chunks written whole just now. */
		uint64_t off = rng(&seed) % (len / 512 - 40);

		memset(buf + off * 512, 'x' + round, 40 * 512);
		CHECK_EQ(th_write(e, (round + 1) % 2, desc, buf + off * 512, off, 40), 0);
		CHECK_EQ(th_read(e, (round + 1) % 2, desc, back, 0, len / 512), 0);
		CHECK(memcmp(buf, back, len) == 0);
	}
	CHECK(stat_u64(e, "C5", "physical_bytes") < len / 4);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	free(buf);
	free(back);
}

/* The average that sends writes to the reactor or the workers: one
 * preempted sample (milliseconds) does not send a fast codec to the
 * workers; a codec slower than CMP_INLINE_NS gets there within a few
 * chunks, and back once it is fast again. */
static void test_inline_average(void)
{
	uint64_t avg = 0;
	int n;

	for (int i = 0; i < 32; i++)
		avg = fb_cmp_recent_ns(avg, 4000);
	CHECK(avg < CMP_INLINE_NS);
	avg = fb_cmp_recent_ns(avg, 5000000);
	CHECK(avg < CMP_INLINE_NS);
	for (n = 0; avg < CMP_INLINE_NS && n < 100; n++)
		avg = fb_cmp_recent_ns(avg, 30000);
	CHECK(n <= 8);
	for (n = 0; avg >= CMP_INLINE_NS && n < 100; n++)
		avg = fb_cmp_recent_ns(avg, 4000);
	CHECK(n <= 16);
}

int main(void)
{
	RUN(test_bad_input);
	RUN(test_damaged_header);
	RUN(test_base_removed);
	RUN(test_inline_4k_blocks);
	RUN(test_small_map_cache);
	RUN(test_workload_every_codec);
	RUN(test_reclaim_workload);
	RUN(test_space);
	RUN(test_unsure_learns);
	RUN(test_probe_runs);
	RUN(test_reopen_from_base);
	RUN(test_open_passes);
	RUN(test_fast_codec_writes);
	RUN(test_inline_average);
	fprintf(stderr, "compress_test: ok\n");
	return 0;
}
