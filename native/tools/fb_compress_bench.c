/* fb_compress_bench: the compress bdev against its own codec, same chunks,
 * same run (bench/compress.ts drives it).
 *
 *   fb_compress_bench --algo deflate|zlib|lz4|zstd [--level N] [--corpus-mib 64]
 *                     [--chunk 16384] [--workers 1] [--qd 32] [--random-mib 64]
 *                     [--samples 6] [--random-samples 24] [--sample-s 0.25] [--only ROW]
 *                     [--corpus-file F] [--dump-corpus F]
 *
 * 1. Corpus: regular files under /usr/share and /usr/lib, concatenated, cut
 *    into chunks (--corpus-file: that file, repeated; --dump-corpus: write
 *    the corpus to F and exit).
 * 2. Standalone: the codec compresses every chunk (early abort at 7/8, as
 *    the bdev does), then decompresses the compressed ones from where they
 *    were stored, on one thread: MB/s both ways and the sum of stored bytes.
 * 3. Through the bdev (malloc base, 1 reactor, --workers codec threads):
 *    the corpus written with chunk-sized writes at --qd, read back (checked
 *    once), MB/s both ways; physical bytes and metadata RAM from
 *    bdev_compress_get_stats.
 * 4. Incompressible: random data written through a compress bdev with the
 *    codec and through one with codec "none" (the same bdev, every chunk
 *    stored raw), each on its own malloc base; a plain malloc bdev too.
 * 5. Worst-case allocator RAM: a volume of 256 segments or more filled
 *    with raw chunks, then every other chunk unmapped, so that every
 *    segment is partly used, then rewritten whole while fragmented
 *    (reclaim passes run); its RAM, bounded by the bitmap budget, and the
 *    two writes' MB/s; then every other chunk unmapped again and the
 *    volume reopened from its base: open's peak RAM (bounded by 4x the
 *    budget) and the passes over the map it took.
 * Every row is --samples samples (default 6), the random write rows
 * --random-samples (default 24: new volumes for each, see random_volumes());
 * a sample alternates passes of the rows compared with each other (groups
 * of 2 or 3) until each has had --sample-s seconds, so load hits them
 * alike, in an order balanced over 6 samples (see sample()). Prints one
 * JSON object:
 * per row min/median/max MB/s and median MB per CPU-second, and the
 * medians of the per-sample ratios. --only ROW samples only the groups of
 * rows whose name contains ROW (for perf; the others print 0).
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

enum op { OP_WRITE, OP_READ, OP_UNMAP, OP_FLUSH };

struct stream {
	struct fb_bdev_desc *desc;
	struct fb_io_channel *ch;
	uint8_t *data;         /* what to write, or where to read */
	uint64_t bytes, io, next, done_bytes;
	uint32_t bs;
	enum op op;
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

	s->next += s->op == OP_UNMAP ? 2 * len : len;
	s->inflight++;
	s->iov[slot].iov_base = s->data + off;
	s->iov[slot].iov_len = len;
	switch (s->op) {
	case OP_WRITE:
		rc = fb_bdev_writev_blocks(s->desc, s->ch, &s->iov[slot], 1, off / s->bs, len / s->bs, 0,
					   stream_done, arg);
		break;
	case OP_READ:
		rc = fb_bdev_readv_blocks(s->desc, s->ch, &s->iov[slot], 1, off / s->bs, len / s->bs,
					  stream_done, arg);
		break;
	case OP_UNMAP:
		rc = fb_bdev_unmap_blocks(s->desc, s->ch, off / s->bs, len / s->bs, stream_done, arg);
		break;
	default:
		rc = fb_bdev_flush_blocks(s->desc, s->ch, 0, 1, stream_done, arg);
		break;
	}
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

/* Seconds to do op over len bytes of bdev `name` from offset 0, in io-byte
 * requests (unmap: every other one, from the first; flush: one request). */
static double stream_op(struct fb_engine *e, const char *name, uint8_t *data, uint64_t len, enum op op,
			uint64_t io, unsigned qd)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = op != OP_READ,
				       .holder = "fb_compress_bench"};
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
	s->bytes = op == OP_FLUSH ? 1 : len;
	s->io = op == OP_FLUSH ? 1 : io;
	s->bs = fb_bdev_get_block_size(fb_bdev_desc_get_bdev(s->desc));
	s->op = op;
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
		fprintf(stderr, "op %d on %s failed: %d\n", (int)op, name, s->rc);
		exit(1);
	}
	fb_bdev_close(s->desc);
	sem_destroy(&s->done);
	free(s);
	return t;
}

static double stream(struct fb_engine *e, const char *name, uint8_t *data, uint64_t len, bool write,
		     uint64_t io, unsigned qd)
{
	return stream_op(e, name, data, len, write ? OP_WRITE : OP_READ, io, qd);
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

/* ---- timed samples ---- */

/* One measured quantity: MB/s (and MB per CPU-second) of each sample. */
enum { R_COMP, R_DECOMP, R_BW, R_BR, R_RW_CMP, R_RW_NONE, R_RW_PLAIN, R_RR_NONE, R_RR_PLAIN, NROWS };
static const char *const row_names[NROWS] = {
	"standalone_compress", "standalone_decompress", "bdev_write", "bdev_read",
	"random_write_compress", "random_write_none", "random_write_plain", "random_read_none",
	"random_read_plain",
};
#define MAX_SAMPLES 64
static double row_mbps[NROWS][MAX_SAMPLES], row_cpu[NROWS][MAX_SAMPLES];
static unsigned row_n[NROWS]; /* samples taken of each row */
static double min_s = 0.25;

struct bench {
	struct fb_engine *e;
	struct fb_cmp_codec_ctxs ctxs;
	const struct fb_cmp_codec *codec;
	int level;
	unsigned chunk, qd;
	size_t nchunks, cbytes, rbytes, rlen;
	uint8_t *z, *out, *back, *rnd;
	uint32_t *zlen;
};

/* One pass of row r: seconds (wall) it took, last_cpu_s its CPU; bytes moved. */
static double pass(struct bench *b, int r, uint64_t *bytes)
{
	switch (r) {
	case R_COMP:
		*bytes = b->cbytes;
		return standalone_compress(&b->ctxs, b->codec, b->level, b->nchunks, b->chunk, b->z, b->zlen);
	case R_DECOMP:
		*bytes = b->cbytes;
		return standalone_decompress(&b->ctxs, b->codec, b->nchunks, b->chunk, b->z, b->zlen, b->out);
	case R_BW:
		*bytes = b->cbytes;
		return stream(b->e, "C0", corpus, b->cbytes, true, b->chunk, b->qd);
	case R_BR:
		*bytes = b->cbytes;
		return stream(b->e, "C0", b->back, b->cbytes, false, b->chunk, b->qd);
	case R_RW_CMP:
		*bytes = b->rbytes;
		return stream(b->e, "C1", b->rnd, b->rbytes, true, b->chunk, b->qd);
	case R_RW_NONE:
		*bytes = b->rbytes;
		return stream(b->e, "CN", b->rnd, b->rbytes, true, b->chunk, b->qd);
	case R_RW_PLAIN:
		*bytes = b->rbytes;
		return stream(b->e, "M2", b->rnd, b->rbytes, true, b->chunk, b->qd);
	case R_RR_NONE:
		*bytes = b->rlen;
		return stream(b->e, "CN", b->out, b->rlen, false, b->chunk, b->qd);
	default:
		*bytes = b->rlen;
		return stream(b->e, "M2", b->out, b->rlen, false, b->chunk, b->qd);
	}
}

/* A sample of a group of rows compared with each other: their passes
 * alternate, one of each in turn, until every row has had min_s seconds,
 * so that load hits them alike and a fast row is not one 10 ms pass lost
 * in scheduler noise. The order is balanced over each 2n samples: every
 * row starts a sample as often as the others, and follows each other row
 * as often (the turn runs forward, then backward). A row is faster by ~1%
 * after some rows than after others, and the row that runs first by 1-3%:
 * codec none against itself read 1.013 (24 samples, 6 runs) with a fixed
 * cyclic order, 0.996 with this one. */
static void sample(struct bench *b, const int *rows, int n)
{
	double t[NROWS] = {0}, cpu[NROWS] = {0};
	uint64_t bytes[NROWS] = {0}, got;
	unsigned s = row_n[rows[0]];
	bool more = true, backward = (s / (unsigned)n) % 2;

	while (more) {
		more = false;
		for (int k = 0; k < n; k++) {
			int i = ((int)s % n + (backward ? n - k : k)) % n;

			t[i] += pass(b, rows[i], &got);
			cpu[i] += last_cpu_s;
			bytes[i] += got;
			more |= t[i] < min_s;
		}
	}
	for (int i = 0; i < n; i++) {
		row_mbps[rows[i]][s] = (double)bytes[i] / 1e6 / t[i];
		row_cpu[rows[i]][s] = (double)bytes[i] / 1e6 / cpu[i];
		row_n[rows[i]] = s + 1;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[MAX_SAMPLES];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double min_of(const double *v, unsigned n)
{
	double m = v[0];

	for (unsigned i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static double max_of(const double *v, unsigned n)
{
	double m = v[0];

	for (unsigned i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* The random rows' volumes, C1 (the codec) and CN (codec none), on bases
 * M1 and MN, created in turn (CN first if none_first), each written once
 * (untimed) so that a timed pass overwrites; with again, the old ones are
 * deleted first. Each sample of the random rows gets new ones, created in
 * the other order than the last: which base memory a volume gets moved its
 * row by 1-2% against the other's for the whole run: codec none against
 * itself read 0.976-0.993 over 5 runs with the volumes made once, in
 * whichever direction the run's memory fell; 0.983-1.025 over 3 runs with
 * new ones for each of 24 samples, which turns that bias into noise. */
static void random_volumes(struct bench *b, bool again, bool none_first)
{
	static const char *const names[2][2] = {{"M1", "C1"}, {"MN", "CN"}};

	for (int k = 0; again && k < 2; k++) {
		char params[64];

		snprintf(params, sizeof(params), "{\"name\":\"%s\"}", names[k][1]);
		rpc(b->e, "bdev_compress_delete", params, NULL);
		snprintf(params, sizeof(params), "{\"name\":\"%s\"}", names[k][0]);
		rpc(b->e, "bdev_malloc_delete", params, NULL);
	}
	for (int k = 0; k < 2; k++) {
		int v = none_first ? 1 - k : k;
		uint64_t n;

		create_volume(b->e, names[v][0], names[v][1], v ? "none" : b->codec->name, v ? 0 : b->level,
			      b->chunk, 2 * b->rbytes + (8 << 20));
		pass(b, v ? R_RW_NONE : R_RW_CMP, &n);
	}
}

/* Median over samples of a / b, each sample's pair measured back to back:
 * load that hits one hits the other alike. */
static double paired_of(double (*rows)[MAX_SAMPLES], int a, int b)
{
	double v[MAX_SAMPLES];

	for (unsigned i = 0; i < row_n[a]; i++)
		v[i] = rows[b][i] > 0 ? rows[a][i] / rows[b][i] : 0;
	return row_n[a] ? median(v, row_n[a]) : 0;
}

/* Worst case of the allocator: a volume of FRAG_SEGS_MIN segments or more
 * (so that its bitmap budget is its share, not the floor) filled with raw
 * chunks, then every other chunk unmapped and committed, so every segment
 * is partly used; then rewritten whole while it is fragmented, which runs
 * reclaim passes. *fill_s and *rewrite_s time the two writes. */
#define FRAG_SEGS_MIN 256
static void fragment(struct fb_engine *e, unsigned chunk, uint8_t *rnd, size_t rbytes, char **stats,
		     char **open_stats, double *fill_s, double *rewrite_s, uint64_t *bytes)
{
	struct fb_bdev_open_opts oo = {.size = sizeof(oo)};
	size_t fbytes = (size_t)FRAG_SEGS_MIN << 20;
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint8_t *data;
	uint64_t len;

	if (fbytes < rbytes)
		fbytes = rbytes;
	fbytes = fbytes / rbytes * rbytes;
	data = malloc(fbytes);
	if (!data) {
		fprintf(stderr, "out of memory for the fragmented volume's data\n");
		exit(1);
	}
	for (size_t off = 0; off < fbytes; off += rbytes)
		memcpy(data + off, rnd, rbytes); /* random chunks: stored raw */
	create_volume(e, "MF", "CF", "lz4", 1, chunk, fbytes + (1 << 20));
	if (fb_bdev_open(e, "CF", &oo, &d, &err)) {
		fprintf(stderr, "open CF: %s\n", err.msg);
		exit(1);
	}
	len = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d)) * fb_bdev_get_block_size(fb_bdev_desc_get_bdev(d));
	fb_bdev_close(d);
	len = (len < fbytes ? len : fbytes) / chunk * chunk;
	*bytes = len;
	*fill_s = stream_op(e, "CF", data, len, OP_WRITE, chunk, 32);
	stream_op(e, "CF", NULL, len, OP_UNMAP, chunk, 32);
	/* Frees land in the allocator at the commit after the one that made
	 * the unmaps durable. */
	for (int i = 0; i < 3; i++)
		stream_op(e, "CF", NULL, 0, OP_FLUSH, 0, 1);
	*rewrite_s = stream_op(e, "CF", data, len, OP_WRITE, chunk, 32);
	for (int i = 0; i < 3; i++)
		stream_op(e, "CF", NULL, 0, OP_FLUSH, 0, 1);
	rpc(e, "bdev_compress_get_stats", "{\"name\":\"CF\"}", stats);
	/* Open's worst case: every segment half used again, then the bdev is
	 * closed (not destroyed) and the volume opened from its base. */
	stream_op(e, "CF", NULL, len, OP_UNMAP, chunk, 32);
	for (int i = 0; i < 3; i++)
		stream_op(e, "CF", NULL, 0, OP_FLUSH, 0, 1);
	if (fb_bdev_delete(e, "CF", &err)) {
		fprintf(stderr, "closing CF: %s\n", err.msg);
		exit(1);
	}
	{
		char params[256];

		snprintf(params, sizeof(params), "{\"base_bdev_name\":\"MF\",\"name\":\"CF\","
			 "\"comp_algo\":\"lz4\",\"comp_level\":1,\"chunk_size\":%u,\"lb_size\":512}", chunk);
		rpc(e, "bdev_compress_create", params, NULL);
	}
	rpc(e, "bdev_compress_get_stats", "{\"name\":\"CF\"}", open_stats);
	free(data);
}

int main(int argc, char **argv)
{
	const char *algo = "deflate", *only = NULL, *corpus_file = NULL, *dump = NULL;
	int level = -1;
	size_t corpus_mib = 64, random_mib = 64;
	unsigned chunk = 16384, workers = 1, qd = 32, samples = 6, random_samples = 24;
	static const struct option opts[] = {
		{"algo", required_argument, NULL, 'a'},   {"level", required_argument, NULL, 'l'},
		{"corpus-mib", required_argument, NULL, 'c'}, {"chunk", required_argument, NULL, 'k'},
		{"workers", required_argument, NULL, 'w'}, {"qd", required_argument, NULL, 'q'},
		{"random-mib", required_argument, NULL, 'r'}, {"samples", required_argument, NULL, 'S'},
		{"random-samples", required_argument, NULL, 'R'},
		{"sample-s", required_argument, NULL, 's'}, {"only", required_argument, NULL, 'o'},
		{"corpus-file", required_argument, NULL, 'f'}, {"dump-corpus", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	struct bench b = {0};
	struct fb_engine_opts eo;
	struct fb_err err;
	size_t stored = 0, nraw = 0, nzero = 0;
	char params[512], *stats, *stats1, *statsf, *statso;
	double fpcap, fram, ffixed, ffill_s, frewrite_s;
	uint64_t fbytes;
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
		case 'S': samples = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'R': random_samples = (unsigned)strtoul(optarg, NULL, 0); break;
		case 's': min_s = strtod(optarg, NULL); break;
		case 'o': only = optarg; break;
		case 'f': corpus_file = optarg; break;
		case 'd': dump = optarg; break;
		default: fprintf(stderr, "usage: see the header of tools/fb_compress_bench.c\n"); return 2;
		}
	}
	b.codec = fb_cmp_codec_by_name(algo);
	if (!b.codec) {
		fprintf(stderr, "unknown --algo %s: one of %s\n", algo, fb_cmp_codec_names());
		return 2;
	}
	if (samples == 0 || samples > MAX_SAMPLES || random_samples == 0 || random_samples > MAX_SAMPLES) {
		fprintf(stderr, "--samples %u / --random-samples %u: each must be 1..%d\n", samples, random_samples,
			MAX_SAMPLES);
		return 2;
	}
	if (!(min_s >= 0)) {
		fprintf(stderr, "--sample-s %g: must be 0 or more seconds\n", min_s);
		return 2;
	}
	b.level = level < 0 ? b.codec->default_level : level;
	b.chunk = chunk;
	b.qd = qd;
	corpus_cap = corpus_mib << 20;
	corpus = aligned_alloc(4096, corpus_cap);
	if (!corpus)
		return 1;
	if (corpus_file) {
		/* Repeated up to --corpus-mib: a short file stands for a stream. */
		int fd = open(corpus_file, O_RDONLY);
		ssize_t n = 1;

		while (fd >= 0 && corpus_len < corpus_cap && n > 0) {
			n = pread(fd, corpus + corpus_len, corpus_cap - corpus_len, 0);
			corpus_len += n > 0 ? (size_t)n : 0;
		}
		if (fd < 0 || corpus_len < chunk) {
			fprintf(stderr, "--corpus-file %s: not readable, or shorter than a chunk\n", corpus_file);
			return 2;
		}
		close(fd);
	} else {
		nftw("/usr/share", add_file, 32, FTW_PHYS);
		nftw("/usr/lib", add_file, 32, FTW_PHYS);
	}
	corpus_len = corpus_len / chunk * chunk;
	if (dump) {
		int fd = open(dump, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || write(fd, corpus, corpus_len) != (ssize_t)corpus_len) {
			fprintf(stderr, "--dump-corpus %s: %s\n", dump, strerror(errno));
			return 1;
		}
		close(fd);
		return 0;
	}
	b.nchunks = corpus_len / chunk;
	b.cbytes = corpus_len;
	b.rbytes = random_mib << 20;
	b.rlen = b.rbytes < b.cbytes ? b.rbytes : b.cbytes; /* fits the read buffer */
	b.z = aligned_alloc(4096, corpus_len);
	b.out = aligned_alloc(4096, corpus_len);
	b.back = aligned_alloc(4096, corpus_len);
	b.zlen = calloc(b.nchunks, sizeof(*b.zlen));
	b.rnd = aligned_alloc(4096, b.rbytes);
	if (!b.z || !b.out || !b.back || !b.zlen || !b.rnd)
		return 1;
	memset(b.z, 0, corpus_len); /* no page faults inside timed passes */
	memset(b.out, 0, corpus_len);
	memset(b.back, 1, corpus_len);
	fill_random(b.rnd, b.rbytes);

	fb_engine_opts_init(&eo);
	eo.reactors = 1;
	eo.poll_us = 20;
	if (fb_engine_create(&eo, &b.e, &err)) {
		fprintf(stderr, "engine: %s\n", err.msg);
		return 1;
	}
	snprintf(params, sizeof(params), "{\"worker_threads\":%u}", workers);
	rpc(b.e, "bdev_compress_set_options", params, NULL);
	/* Room for the corpus stored raw, and for a second copy of what a
	 * rewrite frees only at the next commit. */
	create_volume(b.e, "M0", "C0", b.codec->name, b.level, chunk, 2 * b.cbytes + (8 << 20));
	random_volumes(&b, false, false);
	snprintf(params, sizeof(params), "{\"name\":\"M2\",\"num_blocks\":%zu,\"block_size\":512}",
		 b.rbytes / 512);
	rpc(b.e, "bdev_malloc_create", params, NULL);
	prefault(b.e, "M2");
	/* Untimed first passes: the read rows read what these wrote, and the
	 * read-back check runs once. */
	stream(b.e, "C0", corpus, b.cbytes, true, chunk, qd);
	stream(b.e, "C0", b.back, b.cbytes, false, chunk, qd);
	if (memcmp(b.back, corpus, b.cbytes) != 0) {
		fprintf(stderr, "read back differs from what was written\n");
		return 1;
	}
	{
		uint64_t n;

		pass(&b, R_RW_PLAIN, &n);
	}
	standalone_compress(&b.ctxs, b.codec, b.level, b.nchunks, chunk, b.z, b.zlen);

	/* Each round runs every group once, and the random rows' group as
	 * often as it takes to reach --random-samples by the last round; the
	 * rows of a group are the ones compared (codec alone / bdev; codec /
	 * none / plain malloc). */
	for (unsigned round = 0; round < samples; round++) {
		static const int groups[][4] = {{R_COMP, R_BW, -1}, {R_DECOMP, R_BR, -1},
						{R_RW_CMP, R_RW_NONE, R_RW_PLAIN, -1},
						{R_RR_NONE, R_RR_PLAIN, -1}};

		for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
			int n = 0;

			while (n < 4 && groups[g][n] >= 0)
				n++;
			if (only && !strstr(row_names[groups[g][0]], only) && !strstr(row_names[groups[g][1]], only))
				continue;
			if (groups[g][0] != R_RW_CMP) {
				sample(&b, groups[g], n);
				continue;
			}
			while (row_n[R_RW_CMP] < random_samples * (round + 1) / samples) {
				if (row_n[R_RW_CMP] > 0)
					random_volumes(&b, true, row_n[R_RW_CMP] % 2);
				sample(&b, groups[g], n);
			}
		}
	}
	for (size_t i = 0; i < b.nchunks; i++) {
		stored += b.zlen[i];
		nraw += b.zlen[i] == chunk;
		nzero += b.zlen[i] == 0;
	}
	fb_cmp_codec_ctxs_free(&b.ctxs);
	rpc(b.e, "bdev_compress_get_stats", "{\"name\":\"C0\"}", &stats);
	rpc(b.e, "bdev_compress_get_stats", "{\"name\":\"C1\"}", &stats1);
	fragment(b.e, chunk, b.rnd, b.rbytes, &statsf, &statso, &ffill_s, &frewrite_s, &fbytes);
	fb_engine_destroy(b.e);
	fpcap = stat_num(statsf, "physical_capacity_bytes");
	fram = stat_num(statsf, "metadata_ram_bytes");
	ffixed = stat_num(statsf, "metadata_ram_fixed_bytes");

	printf("{\"algo\":\"%s\",\"level\":%d,\"chunk\":%u,\"workers\":%u,\"qd\":%u,\"samples\":%u,"
	       "\"random_samples\":%u,"
	       "\"sample_s\":%.3f,\"corpus_bytes\":%zu,\"chunks\":%zu,\"chunks_raw\":%zu,\"chunks_zero\":%zu,"
	       "\"standalone_stored_bytes\":%zu,"
	       "\"bdev_physical_bytes\":%.0f,\"bdev_stored_bytes\":%.0f,\"bdev_logical_bytes\":%.0f,"
	       "\"probe_raw\":%.0f,\"random_probe_raw\":%.0f,\"random_early_aborts\":%.0f,"
	       "\"metadata_ram_bytes\":%.0f,\"metadata_ram_fixed_bytes\":%.0f,"
	       "\"metadata_ram_mb_per_tb_logical\":%.3f,\"metadata_ram_mb_per_tb_physical\":%.3f,"
	       "\"metadata_ram_mb_per_tb_physical_worst\":%.3f,\"metadata_ram_mb_1tb_physical\":%.3f,"
	       "\"fragmented_alloc_bitmaps\":%.0f,\"fragmented_physical_capacity_bytes\":%.0f,"
	       "\"fragmented_metadata_ram_mb_per_tb_physical\":%.3f,\"random_bytes\":%zu,"
	       "\"metadata_ram_mb_per_tb_physical_open_worst\":%.3f,\"fragmented_bitmap_budget\":%.0f,"
	       "\"fragmented_open_worst_mb_per_tb_physical\":%.3f,\"fragmented_open_mb_per_tb_physical\":%.3f,"
	       "\"fragmented_open_map_passes\":%.0f,\"fragmented_open_bitmaps\":%.0f,"
	       "\"fragmented_reclaim_passes\":%.0f,\"fragmented_reclaimed_bytes\":%.0f,"
	       "\"fragmented_stranded_bytes\":%.0f,\"fragmented_reclaim_mismatches\":%.0f,"
	       "\"fragmented_fill_mbps\":%.1f,\"fragmented_rewrite_mbps\":%.1f,",
	       b.codec->name, b.level, chunk, workers, qd, samples, random_samples, min_s, corpus_len,
	       b.nchunks, nraw, nzero, stored, stat_num(stats, "physical_bytes"), stat_num(stats, "stored_bytes"),
	       stat_num(stats, "logical_bytes"), stat_num(stats, "probe_raw"),
	       stat_num(stats1, "probe_raw"), stat_num(stats1, "early_aborts"),
	       stat_num(stats, "metadata_ram_bytes"), stat_num(stats, "metadata_ram_fixed_bytes"),
	       stat_num(stats, "metadata_ram_mb_per_tb_logical"),
	       stat_num(stats, "metadata_ram_mb_per_tb_physical"),
	       stat_num(stats, "metadata_ram_mb_per_tb_physical_worst"),
	       stat_num(stats, "metadata_ram_mb_1tb_physical"), stat_num(statsf, "alloc_bitmaps"), fpcap,
	       (fram - ffixed) / fpcap * 1e6, b.rbytes,
	       stat_num(stats, "metadata_ram_mb_per_tb_physical_open_worst"),
	       stat_num(statsf, "bitmap_budget"),
	       stat_num(statsf, "metadata_ram_mb_per_tb_physical_open_worst"),
	       stat_num(statso, "metadata_ram_mb_per_tb_physical_open"), stat_num(statso, "open_map_passes"),
	       stat_num(statso, "open_bitmaps"),
	       stat_num(statsf, "reclaim_passes"), stat_num(statsf, "reclaimed_bytes"),
	       stat_num(statsf, "stranded_bytes"), stat_num(statsf, "reclaim_mismatches"),
	       (double)fbytes / 1e6 / ffill_s, (double)fbytes / 1e6 / frewrite_s);
	/* Per row: median, min and max MB/s over the samples, median MB per CPU-second. */
	printf("\"rows\":{");
	for (int r = 0; r < NROWS; r++)
		printf("%s\"%s\":{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f,\"cpu_median\":%.1f}", r ? "," : "",
		       row_names[r], row_n[r] ? median(row_mbps[r], row_n[r]) : 0,
		       row_n[r] ? min_of(row_mbps[r], row_n[r]) : 0, row_n[r] ? max_of(row_mbps[r], row_n[r]) : 0,
		       row_n[r] ? median(row_cpu[r], row_n[r]) : 0);
	for (int cpu = 0; cpu < 2; cpu++) {
		double (*v)[MAX_SAMPLES] = cpu ? row_cpu : row_mbps;

		printf("},\"%s\":{\"write\":%.3f,\"read\":%.3f,\"random_write\":%.3f,"
		       "\"plain_vs_none_write\":%.3f,\"plain_vs_none_read\":%.3f", cpu ? "paired_cpu" : "paired",
		       paired_of(v, R_BW, R_COMP), paired_of(v, R_BR, R_DECOMP), paired_of(v, R_RW_CMP, R_RW_NONE),
		       paired_of(v, R_RW_PLAIN, R_RW_NONE), paired_of(v, R_RR_PLAIN, R_RR_NONE));
	}
	printf("}}\n");
	free(stats);
	free(stats1);
	free(statsf);
	free(statso);
	free(b.rnd);
	free(corpus);
	free(b.z);
	free(b.out);
	free(b.back);
	free(b.zlen);
	return 0;
}
