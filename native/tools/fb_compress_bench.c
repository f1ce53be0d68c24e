/* fb_compress_bench: the compress bdev against its own codec, same chunks,
 * same run (bench/compress.ts drives it).
 *
 *   fb_compress_bench --algo deflate|zlib|lz4|zstd [--level N] [--corpus-mib 64]
 *                     [--chunk 16384] [--workers 1] [--qd 32] [--random-mib 64]
 *                     [--rounds 3] [--nbd]
 *
 * 1. Corpus: regular files under /usr/share and /usr/lib, concatenated, cut
 *    into chunks.
 * 2. Standalone: the codec compresses every chunk (early abort at 7/8, as
 *    the bdev does), then decompresses the compressed ones from where they
 *    were stored, on one thread: MB/s both ways and the sum of stored bytes.
 * 3. Through the bdev (malloc base, 1 reactor, --workers codec threads):
 *    the corpus written with chunk-sized writes at --qd, read back (and
 *    checked), MB/s both ways; physical bytes and metadata RAM from
 *    bdev_compress_get_stats.
 * 4. Incompressible: random data written through a compress bdev with the
 *    codec and through one with codec "none" (the same bdev, every chunk
 *    stored raw), each on its own malloc base; a plain malloc bdev too.
 * 5. With --nbd: 3 and 4 again through an NBD export of the bdev, with
 *    nbdcopy as the client (files in /dev/shm).
 * Steps 2-5 run --rounds times, interleaved, and each figure is the best
 * round: on a loaded machine that is the one least disturbed, for the codec
 * and the bdev alike. Prints one JSON object.
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
#include <sys/wait.h>
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

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* CPU seconds the last stream() took, every thread of the process (the
 * reactor, the codec workers): on a loaded machine a steadier measure than
 * wall time, for the bdev and the standalone codec (its thread's CPU) alike. */
static double last_cpu_s;

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
	last_cpu_s = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	fb_reactor_send(fb_engine_get_reactor(e, 0), stream_start, s);
	while (sem_wait(&s->done) != 0)
		;
	t = now_s() - t0;
	last_cpu_s = clock_s(CLOCK_PROCESS_CPUTIME_ID) - last_cpu_s;
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

/* Standalone codec over the corpus chunks: compress pass (fills z, zlen). */
static double standalone_compress(struct fb_cmp_codec_ctxs *ctxs, const struct fb_cmp_codec *codec,
				  int level, size_t nchunks, unsigned chunk, uint8_t *z, uint32_t *zlen)
{
	double t = 0, cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

	for (size_t i = 0; i < nchunks; i++) {
		const uint8_t *src = corpus + i * chunk;
		size_t n = 0;
		double t0;

		if (all_zero(src, chunk)) {
			zlen[i] = 0;
			continue;
		}
		t0 = now_s();
		zlen[i] = fb_cmp_compress(ctxs, codec, level, src, chunk, z + i * chunk, chunk - chunk / 8,
					  &n) == 0 ? (uint32_t)n : chunk;
		t += now_s() - t0;
	}
	last_cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	return t;
}

/* Decompress pass from the stored outputs (a raw chunk's read is a copy). */
static double standalone_decompress(struct fb_cmp_codec_ctxs *ctxs, const struct fb_cmp_codec *codec,
				    size_t nchunks, unsigned chunk, const uint8_t *z,
				    const uint32_t *zlen, uint8_t *out)
{
	double t = 0, cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

	for (size_t i = 0; i < nchunks; i++) {
		double t0;

		if (zlen[i] == 0)
			continue;
		t0 = now_s();
		if (zlen[i] == chunk) {
			memcpy(out + i * chunk, corpus + i * chunk, chunk);
		} else if (fb_cmp_decompress(ctxs, codec, z + i * chunk, zlen[i], out + i * chunk, chunk)) {
			fprintf(stderr, "standalone decompress failed\n");
			exit(1);
		}
		t += now_s() - t0;
	}
	last_cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	return t;
}

static double maxd(double a, double b)
{
	return a > b ? a : b;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, b, n) != (ssize_t)n) {
		fprintf(stderr, "writing %s failed\n", path);
		exit(1);
	}
	close(fd);
}

/* Seconds nbdcopy takes from src to dst (one connection, default requests). */
static double nbdcopy(const char *src, const char *dst)
{
	double t0 = now_s();
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		execlp("nbdcopy", "nbdcopy", "--connections=1", "--flush", src, dst, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "nbdcopy %s %s failed\n", src, dst);
		exit(1);
	}
	return now_s() - t0;
}

static void create_volume(struct fb_engine *e, const char *base, const char *name,
			  const char *algo, int level, unsigned chunk, size_t base_bytes)
{
	char params[512];

	snprintf(params, sizeof(params), "{\"name\":\"%s\",\"num_blocks\":%zu,\"block_size\":512}", base,
		 base_bytes / 512);
	rpc(e, "bdev_malloc_create", params, NULL);
	prefault(e, base);
	snprintf(params, sizeof(params), "{\"base_bdev_name\":\"%s\",\"name\":\"%s\",\"comp_algo\":\"%s\","
		 "\"comp_level\":%d,\"chunk_size\":%u,\"lb_size\":512}", base, name, algo, level, chunk);
	rpc(e, "bdev_compress_create", params, NULL);
}

int main(int argc, char **argv)
{
	const char *algo = "deflate";
	int level = -1;
	size_t corpus_mib = 64, random_mib = 64;
	unsigned chunk = 16384, workers = 1, qd = 32, rounds = 3;
	bool nbd = false;
	static const struct option opts[] = {
		{"algo", required_argument, NULL, 'a'},   {"level", required_argument, NULL, 'l'},
		{"corpus-mib", required_argument, NULL, 'c'}, {"chunk", required_argument, NULL, 'k'},
		{"workers", required_argument, NULL, 'w'}, {"qd", required_argument, NULL, 'q'},
		{"random-mib", required_argument, NULL, 'r'}, {"rounds", required_argument, NULL, 'R'},
		{"nbd", no_argument, NULL, 'n'}, {NULL, 0, NULL, 0},
	};
	const struct fb_cmp_codec *codec;
	struct fb_cmp_codec_ctxs ctxs = {0};
	struct fb_engine_opts eo;
	struct fb_engine *e;
	struct fb_err err;
	uint8_t *z, *out, *back, *rnd;
	uint32_t *zlen;
	size_t nchunks, stored = 0, nraw = 0, nzero = 0, rbytes, cbytes;
	double comp = 0, decomp = 0, bw = 0, br = 0, rw_cmp = 0, rw_none = 0, rw_plain = 0;
	double nw = 0, nr = 0, nrw_cmp = 0, nrw_none = 0, rr_none = 0, rr_plain = 0;
	/* The same per CPU-second (see last_cpu_s). */
	double comp_c = 0, decomp_c = 0, bw_c = 0, br_c = 0, rw_cmp_c = 0, rw_none_c = 0;
	char params[512], *stats, *stats1, sock[64], corpus_path[64], random_path[64], uri[160];
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
		case 'R': rounds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'n': nbd = true; break;
		default: fprintf(stderr, "usage: see the header of tools/fb_compress_bench.c\n"); return 2;
		}
	}
	codec = fb_cmp_codec_by_name(algo);
	if (!codec || rounds == 0) {
		fprintf(stderr, "unknown --algo %s (one of %s), or --rounds 0\n", algo, fb_cmp_codec_names());
		return 2;
	}
	if (level < 0)
		level = codec->default_level;
	corpus_cap = corpus_mib << 20;
	corpus = aligned_alloc(4096, corpus_cap);
	if (!corpus)
		return 1;
	nftw("/usr/share", add_file, 32, FTW_PHYS);
	nftw("/usr/lib", add_file, 32, FTW_PHYS);
	corpus_len = corpus_len / chunk * chunk;
	nchunks = corpus_len / chunk;
	cbytes = corpus_len;
	rbytes = random_mib << 20;
	z = aligned_alloc(4096, corpus_len);
	out = aligned_alloc(4096, corpus_len);
	back = aligned_alloc(4096, corpus_len);
	zlen = calloc(nchunks, sizeof(*zlen));
	rnd = aligned_alloc(4096, rbytes);
	if (!z || !out || !back || !zlen || !rnd)
		return 1;
	memset(z, 0, corpus_len); /* no page faults inside timed passes */
	memset(out, 0, corpus_len);
	memset(back, 1, corpus_len);
	fill_random(rnd, rbytes);

	fb_engine_opts_init(&eo);
	eo.reactors = 1;
	eo.poll_us = 20;
	if (fb_engine_create(&eo, &e, &err)) {
		fprintf(stderr, "engine: %s\n", err.msg);
		return 1;
	}
	snprintf(params, sizeof(params), "{\"worker_threads\":%u}", workers);
	rpc(e, "bdev_compress_set_options", params, NULL);
	/* Room for the corpus stored raw, and for a second copy of what a
	 * rewrite frees only at the next commit. */
	create_volume(e, "M0", "C0", codec->name, level, chunk, 2 * cbytes + (8 << 20));
	create_volume(e, "M1", "C1", codec->name, level, chunk, 2 * rbytes + (8 << 20));
	create_volume(e, "MN", "CN", "none", 0, chunk, 2 * rbytes + (8 << 20));
	snprintf(params, sizeof(params), "{\"name\":\"M2\",\"num_blocks\":%zu,\"block_size\":512}",
		 rbytes / 512);
	rpc(e, "bdev_malloc_create", params, NULL);
	prefault(e, "M2");
	if (nbd) {
		snprintf(sock, sizeof(sock), "/tmp/fbcb-%d.sock", (int)getpid());
		snprintf(corpus_path, sizeof(corpus_path), "/dev/shm/fbcb-%d-corpus", (int)getpid());
		snprintf(random_path, sizeof(random_path), "/dev/shm/fbcb-%d-random", (int)getpid());
		write_file(corpus_path, corpus, corpus_len);
		write_file(random_path, rnd, rbytes);
		snprintf(uri, sizeof(uri), "unix:%s", sock);
		if (fb_nbd_export_add(e, "c0", "C0", uri, false, &err) ||
		    fb_nbd_export_add(e, "c1", "C1", uri, false, &err) ||
		    fb_nbd_export_add(e, "cn", "CN", uri, false, &err)) {
			fprintf(stderr, "nbd export: %s\n", err.msg);
			return 1;
		}
	}

	for (unsigned round = 0; round < rounds; round++) {
		size_t rlen = rbytes < cbytes ? rbytes : cbytes; /* fits the read buffer */
		double t;

		t = standalone_compress(&ctxs, codec, level, nchunks, chunk, z, zlen);
		comp = maxd(comp, (double)cbytes / 1e6 / t);
		comp_c = maxd(comp_c, (double)cbytes / 1e6 / last_cpu_s);
		t = standalone_decompress(&ctxs, codec, nchunks, chunk, z, zlen, out);
		decomp = maxd(decomp, (double)cbytes / 1e6 / t);
		decomp_c = maxd(decomp_c, (double)cbytes / 1e6 / last_cpu_s);
		bw = maxd(bw, (double)cbytes / 1e6 / stream(e, "C0", corpus, cbytes, true, chunk, qd));
		bw_c = maxd(bw_c, (double)cbytes / 1e6 / last_cpu_s);
		br = maxd(br, (double)cbytes / 1e6 / stream(e, "C0", back, cbytes, false, chunk, qd));
		br_c = maxd(br_c, (double)cbytes / 1e6 / last_cpu_s);
		if (memcmp(back, corpus, cbytes) != 0) {
			fprintf(stderr, "read back differs from what was written\n");
			return 1;
		}
		/* Codec and none alternate, twice a round: load comes in bursts. */
		for (int k = 0; k < 2; k++) {
			rw_cmp = maxd(rw_cmp, (double)rbytes / 1e6 / stream(e, "C1", rnd, rbytes, true, chunk, qd));
			rw_cmp_c = maxd(rw_cmp_c, (double)rbytes / 1e6 / last_cpu_s);
			rw_none = maxd(rw_none, (double)rbytes / 1e6 / stream(e, "CN", rnd, rbytes, true, chunk, qd));
			rw_none_c = maxd(rw_none_c, (double)rbytes / 1e6 / last_cpu_s);
		}
		rw_plain = maxd(rw_plain, (double)rbytes / 1e6 / stream(e, "M2", rnd, rbytes, true, chunk, qd));
		/* Reads without a codec: what the bdev's path costs by itself. */
		rr_none = maxd(rr_none, (double)rlen / 1e6 / stream(e, "CN", out, rlen, false, chunk, qd));
		rr_plain = maxd(rr_plain, (double)rlen / 1e6 / stream(e, "M2", out, rlen, false, chunk, qd));
		if (nbd) {
			char dst[200];

			snprintf(dst, sizeof(dst), "nbd+unix:///c0?socket=%s", sock);
			nw = maxd(nw, (double)cbytes / 1e6 / nbdcopy(corpus_path, dst));
			nr = maxd(nr, (double)cbytes / 1e6 / nbdcopy(dst, "null:"));
			snprintf(dst, sizeof(dst), "nbd+unix:///c1?socket=%s", sock);
			nrw_cmp = maxd(nrw_cmp, (double)rbytes / 1e6 / nbdcopy(random_path, dst));
			snprintf(dst, sizeof(dst), "nbd+unix:///cn?socket=%s", sock);
			nrw_none = maxd(nrw_none, (double)rbytes / 1e6 / nbdcopy(random_path, dst));
		}
	}
	for (size_t i = 0; i < nchunks; i++) {
		stored += zlen[i];
		nraw += zlen[i] == chunk;
		nzero += zlen[i] == 0;
	}
	fb_cmp_codec_ctxs_free(&ctxs);
	rpc(e, "bdev_compress_get_stats", "{\"name\":\"C0\"}", &stats);
	rpc(e, "bdev_compress_get_stats", "{\"name\":\"C1\"}", &stats1);
	if (nbd) {
		unlink(corpus_path);
		unlink(random_path);
	}
	fb_engine_destroy(e);

	printf("{\"algo\":\"%s\",\"level\":%d,\"chunk\":%u,\"workers\":%u,\"qd\":%u,\"rounds\":%u,"
	       "\"corpus_bytes\":%zu,\"chunks\":%zu,\"chunks_raw\":%zu,\"chunks_zero\":%zu,"
	       "\"standalone_stored_bytes\":%zu,\"standalone_compress_mbps\":%.1f,"
	       "\"standalone_decompress_mbps\":%.1f,\"bdev_write_mbps\":%.1f,\"bdev_read_mbps\":%.1f,"
	       "\"bdev_physical_bytes\":%.0f,\"bdev_stored_bytes\":%.0f,\"bdev_logical_bytes\":%.0f,"
	       "\"probe_raw\":%.0f,\"random_probe_raw\":%.0f,\"random_early_aborts\":%.0f,"
	       "\"metadata_ram_bytes\":%.0f,\"metadata_ram_fixed_bytes\":%.0f,"
	       "\"metadata_ram_mb_per_tb_logical\":%.3f,\"metadata_ram_mb_per_tb_physical\":%.3f,"
	       "\"metadata_ram_mb_per_tb_physical_worst\":%.3f,\"metadata_ram_mb_1tb_physical\":%.3f,"
	       "\"random_bytes\":%zu,\"random_write_mbps_compress\":%.1f,"
	       "\"random_write_mbps_none\":%.1f,\"random_write_mbps_plain\":%.1f,"
	       "\"random_read_mbps_none\":%.1f,\"random_read_mbps_plain\":%.1f,"
	       "\"nbd_write_mbps\":%.1f,\"nbd_read_mbps\":%.1f,\"nbd_random_write_mbps_compress\":%.1f,"
	       "\"nbd_random_write_mbps_none\":%.1f,\"cpu_standalone_compress_mbps\":%.1f,"
	       "\"cpu_standalone_decompress_mbps\":%.1f,\"cpu_bdev_write_mbps\":%.1f,"
	       "\"cpu_bdev_read_mbps\":%.1f,\"cpu_random_write_mbps_compress\":%.1f,"
	       "\"cpu_random_write_mbps_none\":%.1f}\n",
	       codec->name, level, chunk, workers, qd, rounds, corpus_len, nchunks, nraw, nzero, stored,
	       comp, decomp, bw, br, stat_num(stats, "physical_bytes"), stat_num(stats, "stored_bytes"),
	       stat_num(stats, "logical_bytes"), stat_num(stats, "probe_raw"),
	       stat_num(stats1, "probe_raw"), stat_num(stats1, "early_aborts"),
	       stat_num(stats, "metadata_ram_bytes"), stat_num(stats, "metadata_ram_fixed_bytes"),
	       stat_num(stats, "metadata_ram_mb_per_tb_logical"),
	       stat_num(stats, "metadata_ram_mb_per_tb_physical"),
	       stat_num(stats, "metadata_ram_mb_per_tb_physical_worst"),
	       stat_num(stats, "metadata_ram_mb_1tb_physical"), rbytes, rw_cmp, rw_none, rw_plain,
	       rr_none, rr_plain, nw, nr, nrw_cmp, nrw_none, comp_c, decomp_c, bw_c, br_c, rw_cmp_c,
	       rw_none_c);
	free(stats);
	free(stats1);
	free(rnd);
	free(corpus);
	free(z);
	free(out);
	free(back);
	free(zlen);
	return 0;
}
