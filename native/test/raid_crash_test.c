/* RAID5 crash consistency: a child process runs the engine on file bdevs
 * and makes partial-stripe writes (each followed by a flush), telling the
 * parent through a pipe when a write starts and when it is flushed. The
 * parent SIGKILLs it at a random moment, then reassembles the array from
 * its members (the write-intent bitmap names the regions to resync; a few
 * acknowledged, unflushed writes get their parity smashed first, the state
 * a crash leaves with a volatile write cache) and
 * checks that parity is consistent everywhere (every read in verify mode
 * succeeds) and that every flushed write is there: each block holds its
 * last flushed version, or the version of the one write in flight. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "flexbso/thread.h"

#define BS 4096u
#define NMEM 4
#define ITERATIONS 20

struct rec {
	char kind;        /* 'S' started, 'C' completed, 'D' flushed */
	uint64_t lba, num, ver;
};

static char paths[NMEM][64];

/* Block b at version v: (b, v) then bytes from a generator seeded by both;
 * version 0 is the zeroed block of a new array. */
static void pattern(uint8_t *p, uint64_t b, uint64_t v)
{
	uint64_t s = (b + 1) * 0x9e3779b97f4a7c15ull ^ v;

	if (v == 0) {
		memset(p, 0, BS);
		return;
	}
	memcpy(p, &b, 8);
	memcpy(p + 8, &v, 8);
	th_fill_random(p + 16, BS - 16, &s);
}

static void members_up(struct fb_engine *e)
{
	struct fb_err err;
	char name[16];

	for (unsigned i = 0; i < NMEM; i++) {
		snprintf(name, sizeof(name), "F%u", i);
		CHECK_OK(th_file(e, name, paths[i], BS, "", &err));
	}
}

static void quiet_log(enum fb_log_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level <= FB_LOG_WARN && !strstr(msg, "reassembled"))
		fprintf(stderr, "engine: %s\n", msg);
}

static struct fb_engine *engine(void)
{
	struct fb_engine_opts o;
	struct fb_engine *e;
	struct fb_err err;

	fb_engine_opts_init(&o);
	o.reactors = 2;
	o.log = quiet_log;
	CHECK_OK(fb_engine_create(&o, &e, &err));
	return e;
}

static void put_rec(int fd, char kind, uint64_t lba, uint64_t num, uint64_t ver)
{
	struct rec r = {.kind = kind, .lba = lba, .num = num, .ver = ver};

	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(3);
}

/* The child: on reactor 0, QD slots each write 1..3 blocks inside one
 * 12-block row (a partial stripe; no two in-flight writes share a row),
 * and a flush after every 8 completions; a write is reported flushed once
 * a flush issued after it completed has completed. Runs until killed. */
#define QD 16
#define MAXDONE 8192

struct slot {
	uint64_t lba, num, ver;
	uint8_t *buf;
	struct iovec iov;
};

static struct {
	int fd;
	struct fb_bdev_desc *d;
	struct fb_io_channel *ch;
	uint64_t nb, ver, seed, completions;
	bool *row_busy;
	struct slot slot[QD];
	struct rec done[MAXDONE], flushing[MAXDONE];
	unsigned ndone, nflushing;
	bool flush_busy;
} C;

static uint64_t crnd(void)
{
	C.seed = C.seed * 6364136223846793005ull + 1442695040888963407ull;
	return C.seed >> 16;
}

static void issue(struct slot *s);

static void flush_done(struct fb_bdev_io *io, int status, void *arg)
{
	(void)arg;
	fb_bdev_free_io(io);
	if (status)
		_exit(5);
	for (unsigned i = 0; i < C.nflushing; i++)
		put_rec(C.fd, 'D', C.flushing[i].lba, C.flushing[i].num, C.flushing[i].ver);
	C.nflushing = 0;
	C.flush_busy = false;
}

static void write_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct slot *s = arg;

	fb_bdev_free_io(io);
	if (status || C.ndone == MAXDONE)
		_exit(5);
	C.row_busy[s->lba / 12] = false;
	put_rec(C.fd, 'C', s->lba, s->num, s->ver);
	C.done[C.ndone++] = (struct rec){.kind = 'D', .lba = s->lba, .num = s->num, .ver = s->ver};
	if (++C.completions % 8 == 0 && !C.flush_busy) {
		memcpy(C.flushing, C.done, sizeof(C.done[0]) * C.ndone);
		C.nflushing = C.ndone;
		C.ndone = 0;
		C.flush_busy = true;
		if (fb_bdev_flush_blocks(C.d, C.ch, 0, C.nb, flush_done, NULL))
			_exit(5);
	}
	issue(s);
}

static void issue(struct slot *s)
{
	uint64_t row;

	do
		row = crnd() % (C.nb / 12);
	while (C.row_busy[row]);
	C.row_busy[row] = true;
	s->num = 1 + crnd() % 3;
	s->lba = row * 12 + crnd() % (12 - s->num + 1);
	s->ver = ++C.ver;
	for (uint64_t k = 0; k < s->num; k++)
		pattern(s->buf + k * BS, s->lba + k, s->ver);
	s->iov = (struct iovec){s->buf, s->num * BS};
	put_rec(C.fd, 'S', s->lba, s->num, s->ver);
	if (fb_bdev_writev_blocks(C.d, C.ch, &s->iov, 1, s->lba, s->num, 0, write_done, s))
		_exit(5);
}

static void child_start(void *arg)
{
	(void)arg;
	C.ch = fb_bdev_get_io_channel(C.d);
	for (unsigned i = 0; i < QD; i++)
		issue(&C.slot[i]);
}

static void child(int fd, uint64_t ver, uint64_t seed)
{
	struct fb_engine *e = engine();
	struct fb_err err;

	members_up(e);
	if (th_open(e, "R", true, &C.d, &err))
		_exit(4);
	C.fd = fd;
	C.ver = ver;
	C.seed = seed;
	C.nb = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(C.d));
	C.row_busy = calloc(C.nb / 12, sizeof(bool));
	for (unsigned i = 0; i < QD; i++)
		C.slot[i].buf = th_aligned(4096, 3 * BS);
	put_rec(fd, 'R', 0, 0, 0);
	fb_reactor_send(fb_engine_get_reactor(e, 0), child_start, NULL);
	for (;;)
		pause();
}

/* Parent's view: the last flushed version of each block, and versions
 * started after it (any of which may have landed). */
#define MAXCAND 32
/* Completed writes not yet reported flushed, this iteration. */
static struct rec unflushed[4096];
static unsigned nunflushed;
static uint64_t *acked;
static uint64_t (*cand)[MAXCAND];
static unsigned *cand_n;

static void track(const struct rec *r)
{
	if (r->kind == 'C') {
		CHECK(nunflushed < 4096);
		unflushed[nunflushed++] = *r;
		return;
	}
	if (r->kind == 'D') {
		for (unsigned i = 0; i < nunflushed; i++) {
			if (unflushed[i].ver == r->ver) {
				unflushed[i] = unflushed[--nunflushed];
				break;
			}
		}
	}
	for (uint64_t k = 0; k < r->num; k++) {
		uint64_t b = r->lba + k;

		if (r->kind == 'S') {
			CHECK(cand_n[b] < MAXCAND);
			cand[b][cand_n[b]++] = r->ver;
		} else if (r->ver > acked[b]) {
			unsigned w = 0;

			acked[b] = r->ver;
			for (unsigned i = 0; i < cand_n[b]; i++)
				if (cand[b][i] > r->ver)
					cand[b][w++] = cand[b][i];
			cand_n[b] = w;
		}
	}
}

/* Overwrites the parity of array block b's column on its parity member
 * (RAID5 x4, 4-block strips, left-symmetric; see src/raid/raid.h). */
static void smash_parity(uint64_t data_off, uint64_t b, uint64_t *seed)
{
	uint64_t row = b / 12;
	unsigned p = NMEM - 1 - (unsigned)(row % NMEM);
	uint8_t blk[BS];
	int fd = open(paths[p], O_WRONLY);

	CHECK(fd >= 0);
	th_fill_random(blk, BS, seed);
	CHECK(pwrite(fd, blk, BS, (off_t)((data_off + row * 4 + b % 4) * BS)) == (ssize_t)BS);
	close(fd);
}

static unsigned torn_total;

/* A write acknowledged but not flushed may have reached one member's
 * stable storage and not another's: the crash state of a volatile write
 * cache. Its bitmap bit went to disk (FUA) before it started. Make that
 * state certain for a few of them: parity lost, data kept. */
static void tear(uint64_t data_off, uint64_t *seed)
{
	unsigned torn = 0;

	for (unsigned i = nunflushed; i-- > 0 && torn < 4;) {
		for (uint64_t k = 0; k < unflushed[i].num; k++)
			smash_parity(data_off, unflushed[i].lba + k, seed);
		torn++;
	}
	torn_total += torn;
	nunflushed = 0;
}

struct count_arg {
	uint64_t n;
};

static int count_resync(const struct fb_notification *n, void *arg)
{
	struct count_arg *c = arg;

	if (!strcmp(n->type, "raid_resync"))
		c->n++;
	return 0;
}

TEST(sigkill_during_partial_stripe_writes)
{
	struct fb_engine *e;
	struct fb_bdev_desc *d;
	struct fb_err err;
	uint64_t nb, ver = 0, resyncs = 0, seed = 0xc0ffee, data_off = 0;

	uint8_t *buf = th_aligned(4096, 12 * BS), *want = th_aligned(4096, BS), *alt = th_aligned(4096, BS);

	for (unsigned i = 0; i < NMEM; i++) {
		int fd;

		snprintf(paths[i], sizeof(paths[i]), "/tmp/raid_crash_%d_%u.img", (int)getpid(), i);
		fd = open(paths[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, 2 << 20) == 0);
		close(fd);
	}
	e = engine();
	members_up(e);
	CHECK_OK(th_rpc(e, &err, "bdev_raid_create",
			"{\"name\":\"R\",\"raid_level\":\"raid5f\",\"base_bdevs\":[\"F0\",\"F1\",\"F2\",\"F3\"],"
			"\"strip_size_kb\":16,\"superblock\":true}"));
	CHECK_OK(th_open(e, "R", false, &d, &err));
	nb = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d));
	fb_bdev_close(d);
	{
		char *res = NULL;
		const char *at;

		CHECK_OK(fb_rpc_call(e, "bdev_raid_get_bdevs", NULL, &res, &err));
		at = strstr(res, "\"data_offset\":");
		CHECK(at);
		data_off = strtoull(at + 14, NULL, 10);
		free(res);
	}
	fb_engine_destroy(e);
	acked = calloc(nb, sizeof(*acked));
	cand = calloc(nb, sizeof(*cand));
	cand_n = calloc(nb, sizeof(*cand_n));
	CHECK(acked && cand && cand_n);

	for (int it = 0; it < ITERATIONS; it++) {
		int p[2];
		pid_t pid;
		struct rec r;
		bool ready = false;
		uint64_t t_end;

		CHECK(pipe(p) == 0);
		seed = seed * 6364136223846793005ull + 1;
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			child(p[1], ver + 1000000ull * (uint64_t)(it + 1), seed);
			_exit(0);
		}
		close(p[1]);
		/* Wait for the array, then let it write for 20..120 ms. */
		t_end = 0;
		for (;;) {
			ssize_t n = read(p[0], &r, sizeof(r));

			if (n != (ssize_t)sizeof(r))
				break;
			if (r.kind == 'R') {
				ready = true;
				t_end = fb_now_ns() + (20 + seed % 100) * 1000000ull;
			} else {
				track(&r);
			}
			if (ready && fb_now_ns() >= t_end) {
				kill(pid, SIGKILL);
				break;
			}
		}
		CHECK(ready);
		/* Records written before the kill are still in the pipe. */
		waitpid(pid, NULL, 0);
		while (read(p[0], &r, sizeof(r)) == (ssize_t)sizeof(r))
			track(&r);
		close(p[0]);

		/* Make the write hole certain rather than lucky: for a few writes
		 * the child started and never reported flushed (their region's
		 * bitmap bit was on disk before they began), put the new data on
		 * the data member and leave parity old, the state a crash
		 * between the two writes leaves. Only a resync of the dirty
		 * regions makes parity match again. */
		tear(data_off, &seed);

		/* Reassemble from the members; parity must hold everywhere. */
		e = engine();
		members_up(e);
		{
			struct count_arg c = {0};

			fb_notify_foreach(e, 0, 0, count_resync, &c);
			resyncs += c.n;
		}
		CHECK_OK(th_rpc(e, &err, "bdev_raid_set_safe_read",
				"{\"name\":\"R\",\"safe_read\":\"verify\"}"));
		CHECK_OK(th_open(e, "R", true, &d, &err));
		for (uint64_t b = 0; b < nb; b++) {
			uint8_t *got = buf + (b % 12) * BS;

			/* A row (12 blocks, one stripe) per read. */
			if (b % 12 == 0) {
				int rc = th_read(e, (unsigned)(b / 12 % 2), d, buf, b, 12);

				if (rc)
					th_fail(__FILE__, __LINE__, "iteration %d: row at block %llu read %d "
						"after reassembly (parity inconsistent?)", it,
						(unsigned long long)b, rc);
			}
			pattern(want, b, acked[b]);
			if (!memcmp(got, want, BS)) {
				cand_n[b] = 0;
				continue;
			}
			bool found = false;

			for (unsigned k = 0; k < cand_n[b] && !found; k++) {
				pattern(alt, b, cand[b][k]);
				if (!memcmp(got, alt, BS)) {
					/* It landed: later checks expect it. */
					acked[b] = cand[b][k];
					found = true;
				}
			}
			cand_n[b] = 0;
			if (!found)
				th_fail(__FILE__, __LINE__, "iteration %d: block %llu lost its flushed "
					"version %llu", it, (unsigned long long)b,
					(unsigned long long)acked[b]);
		}
		fb_bdev_close(d);
		fb_engine_destroy(e);
		ver += 1000000;
	}
	fprintf(stderr, "    %d kills, %u torn writes, %llu reassemblies resynced dirty regions\n",
		ITERATIONS, torn_total, (unsigned long long)resyncs);
	CHECK(torn_total >= ITERATIONS / 2);
	/* Killed while writing, most reassemblies find a dirty bitmap. */
	CHECK(resyncs >= 1);
	for (unsigned i = 0; i < NMEM; i++)
		unlink(paths[i]);
	free(acked);
	free(cand);
	free(cand_n);
	free(buf);
	free(want);
	free(alt);
}

int main(void)
{
	RUN(sigkill_during_partial_stripe_writes);
	fprintf(stderr, "raid_crash_test: ok\n");
	return 0;
}
