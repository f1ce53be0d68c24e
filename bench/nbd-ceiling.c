/* The ceiling of NBD over a unix socket on this machine: how many bytes per
 * second unix stream sockets carry with 1 MiB writes (and 1 MiB reads), from
 * one process to another, over `streams` connections in parallel.
 *
 *   nbd-ceiling SECONDS STREAMS [WORKSET_MIB]
 *       → prints {"bytes":N,"seconds":S,"mb_per_s":X}
 *
 * WORKSET_MIB (default 1): the writer sends 1 MiB chunks taken in turn from a
 * buffer of that size and the reader reads into one of that size. At 1 MiB
 * both ends stay in the CPU cache (the socket's own cost); at the image size
 * they touch as much memory as an NBD server and fio do.
 *
 * bench/nbd.ts compiles and runs it in the same run as the NBD servers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t g_workset = CHUNK;

/* What one reader measured: bytes between its first and its last read. */
struct stream_result {
	uint64_t bytes;
	double seconds;
};

/* Reader: drains the socket with 1 MiB reads and reports on `out`. */
static int reader(int fd, int out)
{
	char *buf = malloc(g_workset);
	struct stream_result r = {0, 0};
	double first = 0;
	size_t off = 0;
	ssize_t n;

	if (!buf)
		return 1;
	memset(buf, 0, g_workset);
	while ((n = read(fd, buf + off, CHUNK)) > 0) {
		if (r.bytes == 0)
			first = now();
		r.bytes += (uint64_t)n;
		off = (off + CHUNK) % g_workset;
	}
	if (n < 0) {
		perror("read");
		return 1;
	}
	r.seconds = now() - first;
	if (write(out, &r, sizeof(r)) != sizeof(r))
		return 1;
	return 0;
}

/* Writer: 1 MiB writes until the deadline. */
static int writer(int fd, double seconds)
{
	char *buf = malloc(g_workset);
	double end;
	size_t base = 0;

	if (!buf)
		return 1;
	for (size_t i = 0; i < g_workset; i++)
		buf[i] = (char)(i * 131u);
	end = now() + seconds; /* timing starts once the buffer is in memory */
	while (now() < end) {
		size_t off = 0;
		while (off < CHUNK) {
			ssize_t n = write(fd, buf + base + off, CHUNK - off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				perror("write");
				return 1;
			}
			off += (size_t)n;
		}
		base = (base + CHUNK) % g_workset;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int streams = argc > 2 ? atoi(argv[2]) : 1;
	long workset_mib = argc > 3 ? atol(argv[3]) : 1;
	int results[2];
	uint64_t total = 0;
	double rate = 0, longest = 0;

	if (seconds <= 0 || streams < 1 || streams > 64 || workset_mib < 1 || workset_mib > 65536 ||
	    pipe(results) != 0) {
		fprintf(stderr, "usage: nbd-ceiling SECONDS STREAMS [WORKSET_MIB]\n");
		return 2;
	}
	g_workset = (size_t)workset_mib * CHUNK;
	for (int s = 0; s < streams; s++) {
		int sv[2];
		int sz = 4 << 20;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
			perror("socketpair");
			return 1;
		}
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		if (fork() == 0) {
			close(sv[0]);
			_exit(reader(sv[1], results[1]));
		}
		if (fork() == 0) {
			close(sv[1]);
			_exit(writer(sv[0], seconds));
		}
		close(sv[0]);
		close(sv[1]);
	}
	close(results[1]);
	for (int s = 0; s < streams; s++) {
		struct stream_result r;
		if (read(results[0], &r, sizeof(r)) != sizeof(r) || r.seconds <= 0) {
			fprintf(stderr, "a reader failed\n");
			return 1;
		}
		total += r.bytes;
		rate += r.bytes / r.seconds;
		if (r.seconds > longest)
			longest = r.seconds;
	}
	while (wait(NULL) > 0)
		;
	printf("{\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f}\n", (unsigned long long)total, longest,
	       rate / 1e6);
	return 0;
}
