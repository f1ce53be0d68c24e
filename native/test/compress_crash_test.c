/* compress bdev crash consistency: a forked child runs the engine with a
 * compress volume on a file and writes (some FUA) with flushes until the
 * parent SIGKILLs it at a random moment; 20 times. After each kill a new
 * engine reopens the volume from the file alone (examine) and every sector
 * must hold a version at least as new as the last one made durable (by a
 * completed flush or FUA write), every chunk must decode, and the open
 * must need no repair. The map cache is smaller than the map (16 of 33
 * pages), so pages are evicted and read back throughout. Then 8 more kills
 * at allocator reclaim passes (crash_reclaim). */
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
/* Reclaim rounds: 18 MiB logical stored raw (codec none) on a 20 MiB base
 * with 8 allocator bitmaps for its 19 segments, so overwrites strand their
 * frees and every few writes need a reclaim pass. */
#define RC_NSECT 36864u
#define RC_BASE_SECT 40000u
#define RC_ROUNDS 8
#define RC_OPTS "{\"map_cache_kib\":64,\"alloc_segments_per_bitmap\":1024}"

struct shared {
	_Atomic int ready;
	_Atomic uint64_t issued;   /* writes the child has started (reclaim rounds) */
	uint64_t child_passes;     /* reclaim passes the child's engine ran */
	bool verify_writes;        /* verify also writes (to run reclaim passes) */
	uint64_t verify_passes;    /* reclaim passes those writes ran */
	uint64_t kill_at;          /* from this write on, the child kills itself once a write started a pass */
	uint64_t kills_at_pass;    /* kills that landed so */
	uint64_t after_made;       /* else (> 0): kill this many writes after a pass made space */
	uint64_t kills_after_made; /* kills that landed so */
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

/* One write of 1..64 sectors in [0, nsect) at the next version (FUA one
 * time in 10), then a flush one time in 8; sh records what was written and
 * what is durable. False when an I/O failed. */
static bool write_one(struct fb_engine *e, struct fb_bdev_desc *desc, struct shared *sh, uint8_t *buf,
		      uint64_t *seed, uint64_t nsect, uint64_t i)
{
	uint64_t n = 1 + rng(seed) % 64, off = rng(seed) % (nsect - n);
	uint64_t v = ++sh->next_ver;
	bool fua = rng(seed) % 10 == 0;
	struct iovec iov = {buf, n * SECT};

	for (uint64_t k = 0; k < n; k++) {
		gen(buf + k * SECT, off + k, v);
		sh->last_ver[off + k] = v;
	}
	atomic_thread_fence(memory_order_seq_cst);
	if (th_io(e, (unsigned)(i % 2), desc, FB_IO_WRITE, &iov, 1, off, n, fua ? FB_IO_FLAG_FUA : 0))
		return false;
	if (fua)
		for (uint64_t k = 0; k < n; k++)
			sh->durable_ver[off + k] = v;
	if (rng(seed) % 8 == 0) {
		/* Writes are sequential here: everything written so far is
		 * durable once this flush completes. */
		if (th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, nsect, 0))
			return false;
		memcpy(sh->durable_ver, sh->last_ver, nsect * sizeof(sh->durable_ver[0]));
	}
	atomic_thread_fence(memory_order_seq_cst);
	return true;
}

/* A counter from the compress bdev's stats. */
static uint64_t stat_of(struct fb_engine *e, const char *key)
{
	return th_stat_u64(e, "bdev_compress_get_stats", "COMP_F0", key);
}

static void child(const char *path, struct shared *sh, uint64_t seed, uint64_t nsect,
		  const char *opts)
{
	struct fb_engine *e = th_engine(2);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	uint8_t *buf = th_aligned(4096, 64 * SECT);

	if (th_rpc(e, &err, "bdev_compress_set_options", "%s", opts) ||
	    th_file(e, "F0", path, 512, "", &err) || th_open(e, "COMP_F0", true, &desc, &err)) {
		fprintf(stderr, "child: %s\n", err.msg);
		_exit(1);
	}
	atomic_store(&sh->ready, 1);
	uint64_t made0 = 0, made_at = 0;

	for (uint64_t i = 0;; i++) {
		uint64_t passes, made;

		atomic_store(&sh->issued, i + 1);
		if (!write_one(e, desc, sh, buf, &seed, nsect, i)) {
			fprintf(stderr, "child: a write or flush failed\n");
			_exit(1);
		}
		if (!sh->kill_at)
			continue;
		passes = stat_of(e, "reclaim_passes");
		made = stat_of(e, "reclaimed_bytes");
		if (i + 1 >= sh->kill_at && !sh->after_made && passes > sh->child_passes) {
			/* A pass started by this write (a background one runs on
			 * while the next writes go): die inside it. */
			sh->child_passes = passes;
			sh->kills_at_pass++;
			raise(SIGKILL);
		}
		if (i + 1 >= sh->kill_at && sh->after_made && made > made0 && !made_at)
			made_at = i + 1;
		if (made_at && i + 1 == made_at + sh->after_made - 1) {
			/* Writes since then may use what the pass gave back, while
			 * frees it saw pending are not yet committed. */
			sh->child_passes = passes;
			sh->kills_after_made++;
			raise(SIGKILL);
		}
		sh->child_passes = passes;
		made0 = made;
	}
}

/* After the checks: writes (so the reopened volume runs reclaim passes
 * over what open rebuilt), a flush, and no pass may find a count that
 * disagrees with the map. */
static void verify_writes(struct fb_engine *e, struct fb_bdev_desc *desc, struct shared *sh, int round,
			  uint64_t nsect)
{
	uint8_t *buf = th_aligned(4096, 64 * SECT);
	uint64_t seed = (uint64_t)round * 6151 + 17;

	for (uint64_t i = 0; i < 150; i++)
		if (!write_one(e, desc, sh, buf, &seed, nsect, 0)) {
			char *res = NULL;
			struct fb_err err;

			CHECK_OK(fb_rpc_call(e, "bdev_compress_get_stats", "{\"name\":\"COMP_F0\"}", &res, &err));
			th_fail(__FILE__, __LINE__, "round %d: write %llu after reopen failed: %s", round,
				(unsigned long long)i, res);
		}
	CHECK_EQ(th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, nsect, 0), 0);
	memcpy(sh->durable_ver, sh->last_ver, nsect * sizeof(sh->durable_ver[0]));
	if (stat_of(e, "reclaim_mismatches") || stat_of(e, "reclaim_overlaps"))
		th_fail(__FILE__, __LINE__, "round %d: a reclaim pass after reopen found a count "
			"that disagrees with the map", round);
	sh->verify_passes += stat_of(e, "reclaim_passes");
	free(buf);
}

/* Reopens from the file and checks every sector; returns the versions
 * found as the next round's baseline. */
static void verify_opts(const char *path, struct shared *sh, int round, uint64_t nsect,
			const char *opts)
{
	struct fb_engine *e = th_engine(1);
	struct fb_bdev_desc *desc;
	struct fb_err err;
	const uint64_t step = 2048;
	uint8_t *buf = th_aligned(4096, step * SECT), want[SECT];
	char *res = NULL;

	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "%s", opts));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_open(e, "COMP_F0", sh->verify_writes, &desc, &err));
	CHECK_EQ(fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(desc)), nsect);
	for (uint64_t s0 = 0; s0 < nsect; s0 += step) {
		uint64_t cnt = nsect - s0 < step ? nsect - s0 : step;
		int rc = th_read(e, 0, desc, buf, s0, cnt);

		if (rc)
			th_fail(__FILE__, __LINE__, "round %d: reading sectors %llu+%llu failed: %d "
				"(a chunk does not decode)", round, (unsigned long long)s0,
				(unsigned long long)cnt, rc);
		for (uint64_t k = 0; k < cnt; k++) {
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
	if (sh->verify_writes)
		verify_writes(e, desc, sh, round, nsect);
	free(buf);
	fb_bdev_close(desc);
	fb_engine_destroy(e);
}

static void verify(const char *path, struct shared *sh, int round)
{
	verify_opts(path, sh, round, NSECT, "{\"map_cache_kib\":64}");
}

/* Waits (60 s at most) until the child is ready and has started issued writes. */
static void wait_child(pid_t pid, struct shared *sh, int round, uint64_t issued)
{
	struct timespec deadline, now;
	int status;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += 60;
	while (!atomic_load(&sh->ready) || atomic_load(&sh->issued) < issued) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec || waitpid(pid, &status, WNOHANG) == pid)
			th_fail(__FILE__, __LINE__, "round %d: the child did not start or stopped "
				"writing (%llu of %llu writes)", round,
				(unsigned long long)atomic_load(&sh->issued), (unsigned long long)issued);
		usleep(200);
	}
}

static void kill_child(pid_t pid, int round)
{
	int status;

	CHECK(kill(pid, SIGKILL) == 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!WIFSIGNALED(status))
		th_fail(__FILE__, __LINE__, "round %d: the child exited (status %d) before the kill",
			round, status);
}

/* Kills inside reclaim passes: the volume is filled, then each round's
 * child overwrites until it has started a write chosen by a counter (not
 * by time) and is killed there; each reopen must hold every flushed write,
 * decode every chunk and need no repair, and the reopened volume's own
 * writes run reclaim passes that find no count disagreeing with the map. */
static void crash_reclaim(struct shared *sh, uint64_t seed)
{
	char path[] = "/tmp/fb_compress_crash_rc_XXXXXX";
	int fd = mkstemp(path);
	struct fb_engine *e;
	struct fb_bdev_desc *desc;
	struct fb_err err;
	uint8_t *buf = th_aligned(4096, 64 * SECT);
	uint64_t child_passes = 0, writes = 0;

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)RC_BASE_SECT * SECT) == 0);
	close(fd);
	memset(sh, 0, sizeof(*sh));
	e = th_engine(1);
	CHECK_OK(th_rpc(e, &err, "bdev_compress_set_options", "%s", RC_OPTS));
	CHECK_OK(th_file(e, "F0", path, 512, "", &err));
	CHECK_OK(th_rpc(e, &err, "bdev_compress_create",
			"{\"base_bdev_name\":\"F0\",\"comp_algo\":\"none\",\"lb_size\":512,"
			"\"chunk_size\":4096,\"num_blocks\":%u}", RC_NSECT));
	CHECK_OK(th_open(e, "COMP_F0", true, &desc, &err));
	for (uint64_t s0 = 0; s0 < RC_NSECT; s0 += 64) {
		uint64_t v = ++sh->next_ver;

		for (uint64_t k = 0; k < 64; k++) {
			gen(buf + k * SECT, s0 + k, v);
			sh->last_ver[s0 + k] = v;
		}
		CHECK_OK(th_write(e, 0, desc, buf, s0, 64));
	}
	CHECK_OK(th_io(e, 0, desc, FB_IO_FLUSH, NULL, 0, 0, RC_NSECT, 0));
	memcpy(sh->durable_ver, sh->last_ver, sizeof(sh->durable_ver));
	fb_bdev_close(desc);
	fb_engine_destroy(e);
	sh->verify_writes = true;
	for (int round = 0; round < RC_ROUNDS; round++) {
		uint64_t before = sh->next_ver, target = 20 + rng(&seed) % 60;
		struct timespec deadline, now;
		int status;
		pid_t pid;

		atomic_store(&sh->ready, 0);
		atomic_store(&sh->issued, 0);
		sh->child_passes = 0;
		sh->kill_at = target;
		sh->after_made = round % 2 ? 1 + rng(&seed) % 4 : 0;
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			child(path, sh, seed + (uint64_t)round * 7919, RC_NSECT, RC_OPTS);
		/* It kills itself at a pass; failing that, 400 writes on. */
		wait_child(pid, sh, round, 0);
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += 60;
		while (waitpid(pid, &status, WNOHANG) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > deadline.tv_sec)
				th_fail(__FILE__, __LINE__, "round %d: the child stopped writing", round);
			if (atomic_load(&sh->issued) >= target + 400) {
				kill_child(pid, round);
				status = 0;
				break;
			}
			usleep(200);
		}
		if (status && !WIFSIGNALED(status))
			th_fail(__FILE__, __LINE__, "round %d: the child exited (status %d)", round, status);
		child_passes += sh->child_passes;
		writes += sh->next_ver - before;
		verify_opts(path, sh, round, RC_NSECT, RC_OPTS);
	}
	fprintf(stderr, "  reclaim: %d kills (%llu right after a write started a pass, %llu 1-4 writes "
		"after one made space), %llu writes, %llu passes before the kills, %llu after reopens\n",
		RC_ROUNDS, (unsigned long long)sh->kills_at_pass, (unsigned long long)sh->kills_after_made,
		(unsigned long long)writes,
		(unsigned long long)child_passes, (unsigned long long)sh->verify_passes);
	CHECK(sh->kills_at_pass + sh->kills_after_made >= RC_ROUNDS / 2); /* kills landed at passes */
	CHECK(sh->verify_passes >= RC_ROUNDS);
	unlink(path);
	free(buf);
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
		struct timespec nap;
		pid_t pid;

		atomic_store(&sh->ready, 0);
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			child(path, sh, seed + (uint64_t)round * 7919, NSECT, "{\"map_cache_kib\":64}");
		wait_child(pid, sh, round, 0);
		nap.tv_sec = 0;
		nap.tv_nsec = (long)(50 + rng(&seed) % 400) * 1000000L;
		nanosleep(&nap, NULL);
		kill_child(pid, round);
		total_writes += sh->next_ver - before;
		verify(path, sh, round);
	}
	fprintf(stderr, "  %d kills, %llu writes\n", ROUNDS, (unsigned long long)total_writes);
	CHECK(total_writes > ROUNDS); /* the kills landed during writing */
	unlink(path);
	crash_reclaim(sh, seed);
	munmap(sh, sizeof(*sh));
	fprintf(stderr, "compress_crash_test: ok\n");
	return 0;
}
