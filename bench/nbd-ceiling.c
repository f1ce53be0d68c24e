/* The ceiling of NBD over a unix socket on this machine: how many bytes per
 * second unix stream sockets carry with 1 MiB writes (and 1 MiB reads), from
 * one process to another, over `streams` connections in parallel.
 *
 *   nbd-ceiling SECONDS STREAMS   → prints {"bytes":N,"seconds":S,"mb_per_s":X}
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

/* Reader: drains the socket with 1 MiB reads and reports the byte count on `out`. */
static int reader(int fd, int out)
{
	char *buf = malloc(CHUNK);
	uint64_t total = 0;
	ssize_t n;

	if (!buf)
		return 1;
	while ((n = read(fd, buf, CHUNK)) > 0)
		total += (uint64_t)n;
	if (n < 0) {
		perror("read");
		return 1;
	}
	if (write(out, &total, sizeof(total)) != sizeof(total))
		return 1;
	return 0;
}

/* Writer: 1 MiB writes until the deadline. */
static int writer(int fd, double seconds)
{
	char *buf = malloc(CHUNK);
	double end = now() + seconds;

	if (!buf)
		return 1;
	memset(buf, 0xa5, CHUNK);
	while (now() < end) {
		size_t off = 0;
		while (off < CHUNK) {
			ssize_t n = write(fd, buf + off, CHUNK - off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				perror("write");
				return 1;
			}
			off += (size_t)n;
		}
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int streams = argc > 2 ? atoi(argv[2]) : 1;
	int results[2];
	uint64_t total = 0;
	double t0, t1;

	if (seconds <= 0 || streams < 1 || streams > 64 || pipe(results) != 0) {
		fprintf(stderr, "usage: nbd-ceiling SECONDS STREAMS\n");
		return 2;
	}
	t0 = now();
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
		uint64_t n;
		if (read(results[0], &n, sizeof(n)) != sizeof(n)) {
			fprintf(stderr, "a reader failed\n");
			return 1;
		}
		total += n;
	}
	t1 = now();
	while (wait(NULL) > 0)
		;
	printf("{\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f}\n", (unsigned long long)total, t1 - t0,
	       total / (t1 - t0) / 1e6);
	return 0;
}
