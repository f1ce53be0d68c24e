/* fb_compress_bench: the compress bdev against its own codec, same chunks,
 * same run (bench/compress.ts drives it).
 *
 *   fb_compress_bench --algo deflate|zlib|lz4|zstd [--level N] [--corpus-mib 64]
 *                     [--chunk 16384] [--workers 1] [--qd 32] [--random-mib 64]
 *
 * 1. Corpus: regular files under /usr/share and /usr/lib, concatenated, cut
 *    into chunks.
 * 2. Standalone: the codec compresses every chunk (early abort at 7/8, as
 *    the bdev does) and decompresses the compressed ones, on one thread:
 *    MB/s both ways and the sum of stored bytes.
 * 3. Through the bdev (malloc base, 1 reactor, --workers codec threads):
 *    the corpus written with chunk-sized writes at --qd, read back (and
 *    checked), MB/s both ways; physical bytes from bdev_compress_get_stats.
 * 4. Incompressible: random data written through the compress bdev and
 *    straight to a malloc bdev (no compression), MB/s both.
 * Prints one JSON object.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../src/compress/codec.h"
#include "flexbso/flexbso.h"
#include "flexbso/thread.h"

static uint8_t *corpus;
static size_t corpus_len, corpus_cap;

static int add_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	int fd;
	ssize_t n;

	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0 || st->st_size > (4 << 20))
		return 0;
	if (corpus_len >= corpus_cap)
		return 1;
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	n = read(fd, corpus + corpus_len, corpus_cap - corpus_len);
	if (n > 0)
		corpus_len += (size_t)n;
	close(fd);
	return corpus_len >= corpus_cap;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- async stream of chunk-sized I/O on reactor 0 ---- */

struct stream {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	uint8_t *data;         /* what to write, or where to read */
	uint64_t bytes, io, next, done_bytes;
	uint32_t bs;
	bool write;
	unsigned qd, inflight;
	int rc;
	struct iovec iov[256];
	sem_t done;
};

static void stream_issue(struct stream *s, unsigned slot);

static void stream_done(struct fb_bdev_io *bio, int status, void *arg)
{
	struct stream *s = (struct stream *)((uintptr_t)arg & ~(uintptr_t)0xff);
	unsigned slot = (unsigned)((uintptr_t)arg & 0xff);

	fb_bdev_free_io(bio);
	s->inflight--;
	if (status && !s->rc)
		s->rc = status;
	if (s->next < s->bytes && !s->rc)
		stream_issue(s, slot);
	else if (s->inflight == 0) {
		fb_put_io_channel(s->ch);
		sem_post(&s->done);
	}
}

static void stream_issue(struct stream *s, unsigned slot)
{
	uint64_t off = s->next, len = s->bytes - off < s->io ? s->bytes - off : s->io;
	void *arg = (void *)((uintptr_t)s | slot);
	int rc;

	s->next += len;
	s->inflight++;
	s->iov[slot].iov_base = s->data + off;
	s->iov[slot].iov_len = len;
	if (s->write)
		rc = fb_bdev_writev_blocks(s->desc, s->ch, &s->iov[slot], 1, off / s->bs, len / s->bs, 0,
					   stream_done, arg);
	else
		rc = fb_bdev_readv_blocks(s->desc, s->ch, &s->iov[slot], 1, off / s->bs, len / s->bs,
					  stream_done, arg);
	if (rc) {
		s->rc = rc;
		s->inflight--;
		s->next = s->bytes;
		if (s->inflight == 0) {
			fb_put_io_channel(s->ch);
			sem_post(&s->done);
		}
	}
}

static void stream_start(void *arg)
{
	struct stream *s = arg;

	s->ch = fb_bdev_get_io_channel(s->desc);
	for (unsigned i = 0; i < s->qd && s->next < s->bytes; i++)
		stream_issue(s, i);
}

/* Seconds to write (or read) len bytes of data at offset 0 of bdev `name`. */
static double stream(struct fb_engine *e, const char *name, uint8_t *data, uint64_t len, bool write,
		     uint64_t io, unsigned qd)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = write, .holder = "fb_compress_bench"};
	/* 256-aligned: completions carry the slot in the pointer's low byte. */
	struct stream *s = aligned_alloc(256, (sizeof(struct stream) + 255) / 256 * 256);
	struct fb_err err;
	double t0, t;

	if (s)
		memset(s, 0, sizeof(*s));

	if (!s || fb_bdev_open(e, name, &oo, &s->desc, &err)) {
		fprintf(stderr, "open %s: %s\n", name, err.msg);
		exit(1);
	}
	s->data = data;
	s->bytes = len;
	s->io = io;
	s->bs = fb_bdev_get_block_size(fb_bdev_desc_get_bdev(s->desc));
	s->write = write;
	s->qd = qd > 255 ? 255 : qd;
	sem_init(&s->done, 0, 0);
	t0 = now_s();
	fb_reactor_send(fb_engine_get_reactor(e, 0), stream_start, s);
	while (sem_wait(&s->done) != 0)
		;
	t = now_s() - t0;
	if (s->rc) {
		fprintf(stderr, "%s %s failed: %d\n", write ? "write" : "read", name, s->rc);
		exit(1);
	}
	fb_bdev_close(s->desc);
	sem_destroy(&s->done);
	free(s);
	return t;
}

static void rpc(struct fb_engine *e, const char *method, const char *params, char **res)
{
	struct fb_err err;
	char *r = NULL;

	if (fb_rpc_call(e, method, params, &r, &err)) {
		fprintf(stderr, "%s %s: %s\n", method, params, err.msg);
		exit(1);
	}
	if (res)
		*res = r;
	else
		free(r);
}

static double stat_num(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* Writes a whole malloc bdev once (untimed): a RAM base faults its pages
 * in on first write, which would be measured as the bdev's cost. */
static void prefault(struct fb_engine *e, const char *name)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo)};
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t bytes;
	uint8_t *junk;

	if (fb_bdev_open(e, name, &oo, &d, &err)) {
		fprintf(stderr, "open %s: %s\n", name, err.msg);
		exit(1);
	}
	bytes = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d)) * fb_bdev_get_block_size(fb_bdev_desc_get_bdev(d));
	fb_bdev_close(d);
	junk = aligned_alloc(4096, bytes);
	if (!junk)
		exit(1);
	memset(junk, 0x5a, bytes);
	stream(e, name, junk, bytes, true, 1 << 20, 8);
	free(junk);
}

static void fill_random(uint8_t *b, size_t n)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
}

int main(int argc, char **argv)
{
	const char *algo = "deflate";
	int level = -1;
	size_t corpus_mib = 64, random_mib = 64;
	unsigned chunk = 16384, workers = 1, qd = 32;
	static const struct option opts[] = {
		{"algo", required_argument, NULL, 'a'},   {"level", required_argument, NULL, 'l'},
		{"corpus-mib", required_argument, NULL, 'c'}, {"chunk", required_argument, NULL, 'k'},
		{"workers", required_argument, NULL, 'w'}, {"qd", required_argument, NULL, 'q'},
		{"random-mib", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0},
	};
	const struct fb_cmp_codec *codec;
	struct fb_cmp_codec_ctxs ctxs = {0};
	struct fb_engine_opts eo;
	struct fb_engine *e;
	struct fb_err err;
	uint8_t *z, *back, *rnd;
	size_t nchunks, stored = 0, nraw = 0, nzero = 0;
	double t, comp_s = 0, decomp_s = 0, w_s, r_s, rw_cmp_s, rw_raw_s;
	char params[512], *stats;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a': algo = optarg; break;
		case 'l': level = atoi(optarg); break;
		case 'c': corpus_mib = strtoul(optarg, NULL, 0); break;
		case 'k': chunk = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'w': workers = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'q': qd = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': random_mib = strtoul(optarg, NULL, 0); break;
		default: fprintf(stderr, "usage: see the header of tools/fb_compress_bench.c\n"); return 2;
		}
	}
	codec = fb_cmp_codec_by_name(algo);
	if (!codec) {
		fprintf(stderr, "unknown --algo %s (one of %s)\n", algo, fb_cmp_codec_names());
		return 2;
	}
	if (level < 0)
		level = codec->default_level;
	corpus_cap = corpus_mib << 20;
	corpus = aligned_alloc(4096, corpus_cap);
	z = malloc(chunk);
	if (!corpus || !z)
		return 1;
	nftw("/usr/share", add_file, 32, FTW_PHYS);
	nftw("/usr/lib", add_file, 32, FTW_PHYS);
	corpus_len = corpus_len / chunk * chunk;
	nchunks = corpus_len / chunk;

	/* Standalone codec on the same chunks. */
	for (size_t i = 0; i < nchunks; i++) {
		const uint8_t *src = corpus + i * chunk;
		size_t n = 0;

		if (all_zero(src, chunk)) {
			nzero++;
			continue;
		}
		t = now_s();
		if (fb_cmp_compress(&ctxs, codec, level, src, chunk, z, chunk - chunk / 8, &n) == 0) {
			comp_s += now_s() - t;
			stored += n;
			{
				static uint8_t out[1 << 20];

				t = now_s();
				if (fb_cmp_decompress(&ctxs, codec, z, n, out, chunk) != 0) {
					fprintf(stderr, "standalone decompress failed\n");
					return 1;
				}
				decomp_s += now_s() - t;
			}
		} else {
			comp_s += now_s() - t;
			stored += chunk;
			nraw++;
			{
				static uint8_t out[1 << 20];

				t = now_s();
				memcpy(out, src, chunk); /* reading a raw chunk is a copy */
				decomp_s += now_s() - t;
			}
		}
	}
	fb_cmp_codec_ctxs_free(&ctxs);

	/* Through the bdev. */
	fb_engine_opts_init(&eo);
	eo.reactors = 1;
	eo.poll_us = 20;
	if (fb_engine_create(&eo, &e, &err)) {
		fprintf(stderr, "engine: %s\n", err.msg);
		return 1;
	}
	snprintf(params, sizeof(params), "{\"worker_threads\":%u}", workers);
	rpc(e, "bdev_compress_set_options", params, NULL);
	snprintf(params, sizeof(params), "{\"name\":\"M0\",\"num_blocks\":%zu,\"block_size\":512}",
		 (corpus_len + (corpus_len > random_mib << 20 ? corpus_len : random_mib << 20) / 8 +
		  (4 << 20)) / 512 + (random_mib << 20) / 512);
	rpc(e, "bdev_malloc_create", params, NULL);
	prefault(e, "M0");
	snprintf(params, sizeof(params), "{\"base_bdev_name\":\"M0\",\"name\":\"C0\",\"comp_algo\":\"%s\","
		 "\"comp_level\":%d,\"chunk_size\":%u,\"lb_size\":512}", codec->name, level, chunk);
	rpc(e, "bdev_compress_create", params, NULL);
	w_s = stream(e, "C0", corpus, corpus_len, true, chunk, qd);
	back = aligned_alloc(4096, corpus_len);
	if (!back)
		return 1;
	memset(back, 1, corpus_len); /* no page faults inside the timed read */
	r_s = stream(e, "C0", back, corpus_len, false, chunk, qd);
	if (memcmp(back, corpus, corpus_len) != 0) {
		fprintf(stderr, "read back differs from what was written\n");
		return 1;
	}
	free(back);
	rpc(e, "bdev_compress_get_stats", "{\"name\":\"C0\"}", &stats);

	/* Incompressible data: through compress vs straight to malloc. */
	rnd = aligned_alloc(4096, random_mib << 20);
	if (!rnd)
		return 1;
	fill_random(rnd, random_mib << 20);
	rpc(e, "bdev_compress_delete", "{\"name\":\"C0\"}", NULL);
	rpc(e, "bdev_malloc_delete", "{\"name\":\"M0\"}", NULL);
	snprintf(params, sizeof(params), "{\"name\":\"M1\",\"num_blocks\":%zu,\"block_size\":512}",
		 ((random_mib << 20) + (random_mib << 20) / 16 + (4 << 20)) / 512);
	rpc(e, "bdev_malloc_create", params, NULL);
	prefault(e, "M1");
	snprintf(params, sizeof(params), "{\"name\":\"M2\",\"num_blocks\":%zu,\"block_size\":512}",
		 (random_mib << 20) / 512);
	rpc(e, "bdev_malloc_create", params, NULL);
	snprintf(params, sizeof(params), "{\"base_bdev_name\":\"M1\",\"name\":\"C1\",\"comp_algo\":\"%s\","
		 "\"comp_level\":%d,\"chunk_size\":%u,\"lb_size\":512}", codec->name, level, chunk);
	rpc(e, "bdev_compress_create", params, NULL);
	/* Fill M2 first (untimed) so the timed write does not measure page faults. */
	stream(e, "M2", rnd, random_mib << 20, true, chunk, qd);
	rw_raw_s = stream(e, "M2", rnd, random_mib << 20, true, chunk, qd);
	rw_cmp_s = stream(e, "C1", rnd, random_mib << 20, true, chunk, qd);
	fb_engine_destroy(e);

	printf("{\"algo\":\"%s\",\"level\":%d,\"chunk\":%u,\"workers\":%u,\"qd\":%u,"
	       "\"corpus_bytes\":%zu,\"chunks\":%zu,\"chunks_raw\":%zu,\"chunks_zero\":%zu,"
	       "\"standalone_stored_bytes\":%zu,\"standalone_compress_mbps\":%.1f,"
	       "\"standalone_decompress_mbps\":%.1f,\"bdev_write_mbps\":%.1f,\"bdev_read_mbps\":%.1f,"
	       "\"bdev_physical_bytes\":%.0f,\"bdev_stored_bytes\":%.0f,\"bdev_logical_bytes\":%.0f,"
	       "\"metadata_ram_mb_per_tb_logical\":%.1f,\"metadata_ram_mb_per_tb_physical\":%.1f,"
	       "\"random_bytes\":%zu,\"random_write_mbps_compress\":%.1f,"
	       "\"random_write_mbps_plain\":%.1f}\n",
	       codec->name, level, chunk, workers, qd, corpus_len, nchunks, nraw, nzero, stored,
	       (double)(corpus_len - nzero * (size_t)chunk) / 1e6 / comp_s,
	       (double)(corpus_len - nzero * (size_t)chunk) / 1e6 / decomp_s,
	       (double)corpus_len / 1e6 / w_s, (double)corpus_len / 1e6 / r_s,
	       stat_num(stats, "physical_bytes"), stat_num(stats, "stored_bytes"),
	       stat_num(stats, "logical_bytes"), stat_num(stats, "metadata_ram_mb_per_tb_logical"),
	       stat_num(stats, "metadata_ram_mb_per_tb_physical"), random_mib << 20,
	       (double)(random_mib << 20) / 1e6 / rw_cmp_s, (double)(random_mib << 20) / 1e6 / rw_raw_s);
	free(stats);
	free(rnd);
	free(corpus);
	free(z);
	return 0;
}
