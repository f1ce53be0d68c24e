/* The limit of a 1 MiB NBD read over a unix socket on this machine: every
 * byte is copied twice, bdev memory -> socket buffer (the server's
 * sendmsg) and socket buffer -> client buffer (the client's recv); unix
 * sockets have no zero-copy path. This program does exactly those two
 * copies and nothing else (no syscalls, no protocol), over the benchmark's
 * memory footprint, on as many threads as can run at once:
 *
 *   nbd-ceiling SECONDS THREADS IMAGE_MIB QUEUE_DEPTH SOCKBUF_MIB
 *       -> prints {"bytes":N,"seconds":S,"mb_per_s":X,"threads":T}
 *
 * - IMAGE_MIB: the image, split between the threads as fio's jobs split it
 *   (--offset_increment); each thread reads its part sequentially, 1 MiB at
 *   a time, and wraps around.
 * - QUEUE_DEPTH: each thread's client buffers, QUEUE_DEPTH x 1 MiB used in
 *   turn, like fio's iodepth buffers of one job.
 * - SOCKBUF_MIB: each thread's socket buffer, a ring the first copy writes
 *   and the second reads (the engine sets SO_SNDBUF to 4 MiB).
 * - THREADS: the copies that can run in parallel: one server thread and one
 *   client thread per job, at most one per CPU (bench/nbd.ts passes
 *   min(CPUs, 2 x jobs)). Each thread does both copies of its part, so the
 *   rate is the machine's, not a pipeline's.
 *
 * A real NBD server and client add syscalls, protocol and scheduling to
 * this, so nothing should exceed it: flexbso's 1 MiB rows are reported
 * against it (bench/nbd.ts). A 1 MiB write does the same two copies the
 * other way, so the same limit holds for it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK ((size_t)1 << 20)

struct worker {
	pthread_t thread;
	const unsigned char *src; /* this thread's part of the image */
	size_t src_len;
	unsigned char *sockbuf;
	size_t sockbuf_len;
	unsigned char *client;
	size_t client_len;
	uint64_t bytes;
};

static atomic_int g_go, g_stop;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Anonymous memory, faulted in by the kernel and written once, so neither
 * page faults nor the zero page distort the copies. */
static unsigned char *touched(size_t len, unsigned seed)
{
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
				-1, 0);

	if (p == MAP_FAILED)
		return NULL;
	for (size_t i = 0; i < len; i += 4096)
		memset(p + i, (int)((i / 4096 + seed) * 131u), 4096);
	return p;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	size_t src_off = 0, sock_off = 0, cli_off = 0;

	while (!atomic_load(&g_go))
		;
	while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		/* copy 1: bdev memory -> socket buffer; copy 2: socket buffer -> client buffer */
		memcpy(w->sockbuf + sock_off, w->src + src_off, CHUNK);
		memcpy(w->client + cli_off, w->sockbuf + sock_off, CHUNK);
		w->bytes += CHUNK;
		src_off = (src_off + CHUNK) % w->src_len;
		sock_off = (sock_off + CHUNK) % w->sockbuf_len;
		cli_off = (cli_off + CHUNK) % w->client_len;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	long threads = argc > 2 ? atol(argv[2]) : 2;
	long image_mib = argc > 3 ? atol(argv[3]) : 1024;
	long qd = argc > 4 ? atol(argv[4]) : 32;
	long sockbuf_mib = argc > 5 ? atol(argv[5]) : 4;
	struct worker *w;
	unsigned char *image;
	uint64_t total = 0;
	double t0, t1;

	if (argc != 6 || seconds <= 0 || threads < 1 || threads > 256 || image_mib < threads || qd < 1 ||
	    qd > 1024 || sockbuf_mib < 1 || sockbuf_mib > 1024) {
		fprintf(stderr, "usage: nbd-ceiling SECONDS THREADS IMAGE_MIB QUEUE_DEPTH SOCKBUF_MIB\n");
		return 2;
	}
	image = touched((size_t)image_mib * CHUNK, 1);
	w = calloc((size_t)threads, sizeof(*w));
	if (image == NULL || w == NULL) {
		perror("allocating the image");
		return 1;
	}
	for (long t = 0; t < threads; t++) {
		size_t part = (size_t)(image_mib / threads) * CHUNK;

		w[t].src = image + (size_t)t * part;
		w[t].src_len = part;
		w[t].sockbuf_len = (size_t)sockbuf_mib * CHUNK;
		w[t].client_len = (size_t)qd * CHUNK;
		w[t].sockbuf = touched(w[t].sockbuf_len, 2 + (unsigned)t);
		w[t].client = touched(w[t].client_len, 3 + (unsigned)t);
		if (w[t].sockbuf == NULL || w[t].client == NULL) {
			perror("allocating buffers");
			return 1;
		}
	}
	/* Threads start once every buffer is in memory: they spin until g_go. */
	for (long t = 0; t < threads; t++) {
		if (pthread_create(&w[t].thread, NULL, run, &w[t]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	t0 = now();
	atomic_store(&g_go, 1);
	while (now() - t0 < seconds)
		usleep(10000);
	atomic_store(&g_stop, 1);
	for (long t = 0; t < threads; t++) {
		pthread_join(w[t].thread, NULL);
		total += w[t].bytes;
	}
	t1 = now(); /* after the last chunk counted */
	printf("{\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f,\"threads\":%ld}\n", (unsigned long long)total,
	       t1 - t0, (double)total / (t1 - t0) / 1e6, threads);
	return 0;
}
