/* compress bdev crash consistency: a forked child runs the engine with a
 * compress volume on a file and writes (some FUA) with flushes until the
 * parent SIGKILLs it at a random moment; 20 times. After each kill a new
 * engine reopens the volume from the file alone (examine) and every sector
 * must hold a version at least as new as the last one made durable (by a
 * completed flush or FUA write), every chunk must decode, and the open
 * must need no repair. The map cache is smaller than the map (16 of 33
 * pages), so pages are evicted and read back throughout. */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define SECT 512u
#define NSECT 65536u /* 32 MiB logical: 8192 chunks of 4 KiB, 33 map pages */
#define ROUNDS 20

struct shared {
	_Atomic int ready;
	uint64_t next_ver;
	uint64_t last_ver[NSECT];    /* newest version written or in flight */
	uint64_t durable_ver[NSECT]; /* newest version known durable */
};

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The content of sector s at version v (v 0 = never written: zeros). A
 * third of the versions are incompressible, the rest text-like. */
static void gen(uint8_t *b, uint64_t s, uint64_t v)
{
	uint64_t seed = s * 1000003 + v * 7 + 1;

	if (v == 0) {
		memset(b, 0, SECT);
		return;
	}
	memcpy(b, &s, 8);
	memcpy(b + 8, &v, 8);
	for (unsigned i = 16; i < SECT; i++)
		b[i] = v % 3 ? (uint8_t)("abc def "[(i + v) % 8]) : (uint8_t)rng(&seed);
}

static void child(const char *path, struct shared *sh, uint64_t seed)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	uint8_t *buf = th_aligned(4096, 64 * SECT);

	if (th_rpc(e, &err, "bdev_compress_set_options", "{\"map_cache_kib\":64}") ||
	    th_file(e, "F0", path, 512, "", &err) || th_open(e, "COMP_F0", true, &desc, &err)) {
		fprintf(stderr, "child: %s\n", err.msg);
		_exit(1);
	}
	atomic_store(&sh->ready, 1);
	for (uint64_t i = 0;; i++) {
		uint64_t n = 1 + rng(&seed) % 64, off = rng(&seed) % (NSECT - n);
		uint64_t v = ++sh->next_ver;
		bool fua = rng(&seed) % 10 == 0;
		struct iovec iov = {buf, n * SECT};

		for (uint64_t k = 0; k < n; k++) {
			gen(buf + k * SECT, off + k, v);
			sh->last_ver[off + k] = v;
		}
		atomic_thread_fence(memory_order_seq_cst);
		if (th_io(e, (unsigned)(i % 2), desc, FB_IO_WRITE, &iov, 1, off, n,
			  fua ? FB_IO_FLAG_FUA : 0)) {
			fprintf(stderr, "child: write failed\n");
			_exit(1);
		}
		if (fua)
			for (uint64_t k = 0; k < n; k++)
				sh->durable_ver[off + k] = v;
		if (rng(&seed) % 8 == 0) {
			/* Writes are sequential here: everything written so far is
			 * durable once this flush completes. */
			if (th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, NSECT, 0)) {
				fprintf(stderr, "child: flush failed\n");
				_exit(1);
			}
			memcpy(sh->durable_ver, sh->last_ver, sizeof(sh->durable_ver));
		}
		atomic_thread_fence(memory_order_seq_cst);
	}
}

/* Reopens from the file and checks every sector; returns the versions
 * found as the next round's baseline. */
static void verify(const char *path, struct shared *sh, int round)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	const uint64_t step = 2048;
	uint8_t *buf = th_aligned(4096, step * SECT), want[SECT];
	char *res = NULL;

	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "{\"map_cache_kib\":64}"));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_open(e, "COMP_F0", false, &desc, &err));
	CHECK_EQ(fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(desc)), NSECT);
	for (uint64_t s0 = 0; s0 < NSECT; s0 += step) {
		int rc = th_read(e, 0, desc, buf, s0, step);

		if (rc)
			th_fail(__FILE__, __LINE__, "round %d: reading sectors %llu+%llu failed: %d "
				"(a chunk does not decode)", round, (unsigned long long)s0,
				(unsigned long long)step, rc);
		for (uint64_t k = 0; k < step; k++) {
			uint64_t s = s0 + k, v = 0;
			uint8_t *got = buf + k * SECT;

			memcpy(&v, got + 8, 8);
			if (got[0] == 0 && v == 0 && !memcmp(got, got + 1, SECT - 1))
				v = 0; /* zeros */
			gen(want, s, v);
			if (memcmp(want, got, SECT) != 0)
				th_fail(__FILE__, __LINE__, "round %d: sector %llu holds garbage", round,
					(unsigned long long)s);
			if (v < sh->durable_ver[s] || v > sh->last_ver[s])
				th_fail(__FILE__, __LINE__, "round %d: sector %llu at version %llu, durable "
					"was %llu (newest written %llu)", round, (unsigned long long)s,
					(unsigned long long)v, (unsigned long long)sh->durable_ver[s],
					(unsigned long long)sh->last_ver[s]);
			sh->durable_ver[s] = sh->last_ver[s] = v;
		}
	}
	CHECK_OK(fb_rpc_call(e, "bdev_compress_get_stats", "{\"name\":\"COMP_F0\"}", &res, &err));
	if (!strstr(res, "\"repaired_at_open\":0") || !strstr(res, "\"map_pages_lost_at_open\":0") ||
	    !strstr(res, "\"crc_errors\":0"))
		th_fail(__FILE__, __LINE__, "round %d: open needed repairs: %s", round, res);
	free(res);
	free(buf);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
}

int main(void)
{
	char path[] = "/tmp/fb_compress_crash_XXXXXX";
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				 -1, 0);
	uint64_t seed = (uint64_t)time(NULL) | 1;
	struct fb_engine *e;
	struct fb_err err;
	int fd = mkstemp(path);
	uint64_t total_writes = 0;

	CHECK(sh != MAP_FAILED && fd >= 0);
	CHECK(ftruncate(fd, 48 << 20) == 0);
	close(fd);
	fprintf(stderr, "  seed %llu\n", (unsigned long long)seed);
	e = th_engine(1);
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"lz4\",\"lb_size\":512,"
			"\"chunk_size\":4096,\"num_blocks\":%u}", NSECT));
	fb_engine_destroy(e);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t before = sh->next_ver;
		struct timespec deadline, now, nap;
		int status;
		pid_t pid;

		atomic_store(&sh->ready, 0);
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			child(path, sh, seed + (uint64_t)round * 7919);
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += 60;
		while (!atomic_load(&sh->ready)) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > deadline.tv_sec || waitpid(pid, &status, WNOHANG) == pid)
				th_fail(__FILE__, __LINE__, "round %d: the child did not start", round);
			usleep(1000);
		}
		nap.tv_sec = 0;
		nap.tv_nsec = (long)(50 + rng(&seed) % 400) * 1000000L;
		nanosleep(&nap, NULL);
		CHECK(kill(pid, SIGKILL) == 0);
		CHECK(waitpid(pid, &status, 0) == pid);
		if (!WIFSIGNALED(status))
			th_fail(__FILE__, __LINE__, "round %d: the child exited (status %d) before the kill",
				round, status);
		total_writes += sh->next_ver - before;
		verify(path, sh, round);
	}
	fprintf(stderr, "  %d kills, %llu writes\n", ROUNDS, (unsigned long long)total_writes);
	CHECK(total_writes > ROUNDS); /* the kills landed during writing */
	unlink(path);
	munmap(sh, sizeof(*sh));
	fprintf(stderr, "compress_crash_test: ok\n");
	return 0;
}
