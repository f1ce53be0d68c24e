/* fb_perf: a bdevperf-like load generator straight on the FlexBSO bdev stack.
 *
 *   fb_perf --bdev malloc:256M|null:1G|file:PATH [--block-size 512] [--error-over]
 *           [--raid LEVEL:MEMBERS[:STRIP_KB] [--safe-read off|verify|repair] [--superblock]]
 *           -w randread|randwrite|read|write|randrw [-M 70] -o 4096 -q 32 -t 5 -r 1 [-j 1]
 *           [--poll-us 50] [--verify] [--no-fill] [--json] [--idle SECONDS]
 *
 * --raid builds MEMBERS bdevs of the --bdev spec (malloc or null) and runs on
 * a bdev_raid_create array over them (strip 64 KiB unless given; the
 * superblock also turns on the write-intent bitmap).
 *
 * One job per reactor (or on the first -j reactors only: the others serve
 * work a bdev sends them, e.g. RAID members on their home reactors), each
 * with -q requests in flight, resubmitted from the
 * completion callback until -t seconds have passed. Prints IOPS, MB/s and
 * mean/p50/p99 latency from a log-linear histogram. --verify writes a
 * pattern over each job's share of the bdev, reads it back and checks it
 * (exit 1 on a mismatch). --idle measures reactor CPU of an idle engine.
 * malloc and file bdevs are first filled with non-zero data (untimed, skip
 * with --no-fill): reading never-written memory hits the shared zero page
 * and measures nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flexbso/flexbso.h"
#include "flexbso/json.h"
#include "tool_bdev.h"
#include "flexbso/reactor.h"


#define HIST_BUCKETS 1024

enum workload { W_RANDREAD, W_RANDWRITE, W_READ, W_WRITE, W_RANDRW };

struct perf;

struct task {
	struct job *job;
	unsigned char *buf;
	struct iovec iov;
	uint64_t offset;
	bool is_read;
	uint64_t start_ns;
};

struct job {
	struct perf *p;
	unsigned idx;
	struct fb_io_channel *ch;
	struct task *tasks;
	uint64_t first_blk, nunits;   /* the job's range in units of io size */
	uint64_t next_unit;           /* sequential / verify cursor */
	uint64_t rng;
	uint64_t end_ns, start_ns, last_ns;
	unsigned inflight;
	int phase;                    /* verify: 0 = write, 1 = read */
	uint64_t ios, bytes, errors, mismatches, lat_sum;
	uint64_t hist[HIST_BUCKETS];
};

struct perf {
	struct fb_engine *e;
	struct fb_bdev_desc *desc;
	enum workload w;
	unsigned mix, qd, seconds, reactors;
	unsigned njobs;               /* jobs on reactors 0..njobs-1 (default: all) */
	uint32_t io_size, bs;
	bool verify;
	bool filling;                 /* untimed pass that writes every block once */
	struct job *jobs;
	sem_t done;
};

static unsigned hist_bucket(uint64_t v)
{
	unsigned msb;

	if (v < 16)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return (msb - 3) * 16 + (unsigned)((v >> (msb - 4)) & 15);
}

static uint64_t hist_value(unsigned b)
{
	unsigned msb, sub;

	if (b < 16)
		return b;
	msb = b / 16 + 3;
	sub = b % 16;
	/* Midpoint of the bucket. */
	return ((16ull + sub) << (msb - 4)) + ((1ull << (msb - 4)) >> 1);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t pattern_word(uint64_t byte_off)
{
	uint64_t z = byte_off + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void pattern_fill(unsigned char *buf, size_t len, uint64_t byte_off)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w = pattern_word(byte_off + i);

		memcpy(buf + i, &w, 8);
	}
}

static uint64_t pattern_check(const unsigned char *buf, size_t len, uint64_t byte_off)
{
	uint64_t bad = 0;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w = pattern_word(byte_off + i), got;

		memcpy(&got, buf + i, 8);
		if (got != w)
			bad++;
	}
	return bad;
}

static void task_submit(struct task *t);

static void job_finish(struct job *j)
{
	fb_put_io_channel(j->ch);
	j->ch = NULL;
	j->last_ns = fb_now_ns();
	sem_post(&j->p->done);
}

/* Picks the next request; false when the job has nothing more to issue. */
static bool task_next(struct task *t)
{
	struct job *j = t->job;
	struct perf *p = j->p;
	uint64_t unit;

	if (p->verify || p->filling) {
		if (j->next_unit >= j->nunits)
			return false;
		unit = j->next_unit++;
		t->is_read = j->phase == 1;
	} else {
		if (fb_now_ns() >= j->end_ns)
			return false;
		switch (p->w) {
		case W_READ:
		case W_WRITE:
			unit = j->next_unit++ % j->nunits;
			break;
		default:
			unit = rng_next(&j->rng) % j->nunits;
			break;
		}
		t->is_read = p->w == W_READ || p->w == W_RANDREAD ||
			     (p->w == W_RANDRW && rng_next(&j->rng) % 100 < p->mix);
	}
	t->offset = j->first_blk + unit * (p->io_size / p->bs);
	if ((p->verify || p->filling) && !t->is_read)
		pattern_fill(t->buf, p->io_size, t->offset * p->bs);
	return true;
}

static void task_done(struct fb_bdev_io *io, int status, void *arg)
{
	struct task *t = arg;
	struct job *j = t->job;
	struct perf *p = j->p;
	uint64_t lat = fb_now_ns() - t->start_ns;

	fb_bdev_free_io(io);
	if (status) {
		j->errors++;
	} else {
		j->ios++;
		j->bytes += p->io_size;
		j->lat_sum += lat;
		j->hist[hist_bucket(lat)]++;
		if (p->verify && t->is_read)
			j->mismatches += pattern_check(t->buf, p->io_size, t->offset * p->bs) ? 1 : 0;
	}
	if (task_next(t)) {
		task_submit(t);
		return;
	}
	if (--j->inflight > 0)
		return;
	if (p->verify && j->phase == 0) {
		/* Everything written: read it all back. */
		j->phase = 1;
		j->next_unit = 0;
		for (unsigned i = 0; i < p->qd && task_next(&j->tasks[i]); i++) {
			j->inflight++;
			task_submit(&j->tasks[i]);
		}
		if (j->inflight)
			return;
	}
	job_finish(j);
}

static void task_submit(struct task *t)
{
	struct job *j = t->job;
	struct perf *p = j->p;
	uint64_t nblk = p->io_size / p->bs;
	int rc;

	t->iov.iov_base = t->buf;
	t->iov.iov_len = p->io_size;
	t->start_ns = fb_now_ns();
	if (t->is_read)
		rc = fb_bdev_readv_blocks(p->desc, j->ch, &t->iov, 1, t->offset, nblk, task_done, t);
	else
		rc = fb_bdev_writev_blocks(p->desc, j->ch, &t->iov, 1, t->offset, nblk, 0, task_done, t);
	if (rc) {
		fprintf(stderr, "fb_perf: submit failed: %s\n", strerror(-rc));
		j->errors++;
		if (--j->inflight == 0)
			job_finish(j);
	}
}

static void job_start(void *arg)
{
	struct job *j = arg;
	struct perf *p = j->p;

	j->ch = fb_bdev_get_io_channel(p->desc);
	if (!j->ch) {
		fprintf(stderr, "fb_perf: no I/O channel on reactor %u\n", j->idx);
		j->errors++;
		sem_post(&p->done);
		return;
	}
	j->start_ns = fb_now_ns();
	j->end_ns = j->start_ns + (uint64_t)p->seconds * 1000000000ull;
	for (unsigned i = 0; i < p->qd && task_next(&j->tasks[i]); i++) {
		j->inflight++;
		task_submit(&j->tasks[i]);
	}
	if (j->inflight == 0)
		job_finish(j);
}

static void jobs_run(struct perf *p)
{
	for (unsigned i = 0; i < p->njobs; i++)
		fb_reactor_send(fb_engine_get_reactor(p->e, i), job_start, &p->jobs[i]);
	for (unsigned i = 0; i < p->njobs; i++)
		while (sem_wait(&p->done) != 0)
			;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	case 't': case 'T': v <<= 40; end++; break;
	default: break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end || v == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fb_perf --bdev malloc:SIZE|null:SIZE|file:PATH [--block-size N] [--error-over]\n"
		"               [--raid LEVEL:MEMBERS[:STRIP_KB] [--safe-read MODE] [--superblock]]\n"
		"               -w randread|randwrite|read|write|randrw [-M READ%%] -o IO_SIZE -q QD\n"
		"               -t SECONDS -r REACTORS [-j JOBS] [--poll-us N] [--verify] [--no-fill] [--json]\n"
		"       fb_perf --idle SECONDS [-r REACTORS] [--poll-us N]\n");
}

static void report(struct perf *p, double secs, uint64_t cpu_us, bool json, const char *spec,
		   const char *wname)
{
	uint64_t ios = 0, bytes = 0, errors = 0, mism = 0, lat = 0, n = 0, p50 = 0, p99 = 0;
	static uint64_t hist[HIST_BUCKETS];
	uint64_t acc = 0;

	memset(hist, 0, sizeof(hist));
	for (unsigned i = 0; i < p->njobs; i++) {
		struct job *j = &p->jobs[i];

		ios += j->ios;
		bytes += j->bytes;
		errors += j->errors;
		mism += j->mismatches;
		lat += j->lat_sum;
		for (unsigned b = 0; b < HIST_BUCKETS; b++)
			hist[b] += j->hist[b];
	}
	n = ios;
	for (unsigned b = 0; b < HIST_BUCKETS && n; b++) {
		acc += hist[b];
		if (!p50 && acc * 2 >= n)
			p50 = hist_value(b);
		if (!p99 && acc * 100 >= n * 99) {
			p99 = hist_value(b);
			break;
		}
	}
	double iops = secs > 0 ? (double)ios / secs : 0;
	double mbs = secs > 0 ? (double)bytes / secs / 1e6 : 0;
	double mean = ios ? (double)lat / (double)ios / 1000.0 : 0;
	double cpu = secs > 0 ? (double)cpu_us / 1e6 / secs * 100.0 : 0;

	if (json) {
		printf("{\"bdev\":\"%s\",\"workload\":\"%s\",\"io_size\":%u,\"qd\":%u,\"reactors\":%u,"
		       "\"seconds\":%.3f,\"ios\":%llu,\"iops\":%.0f,\"mbps\":%.1f,\"lat_mean_us\":%.2f,"
		       "\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,\"errors\":%llu,\"mismatches\":%llu,"
		       "\"reactor_cpu_pct\":%.1f}\n",
		       spec, wname, p->io_size, p->qd, p->reactors, secs, (unsigned long long)ios, iops, mbs,
		       mean, (double)p50 / 1000.0, (double)p99 / 1000.0, (unsigned long long)errors,
		       (unsigned long long)mism, cpu);
		return;
	}
	printf("fb_perf: %s %s io=%u qd=%u reactors=%u time=%.2fs\n", spec, wname, p->io_size, p->qd,
	       p->reactors, secs);
	printf("%12s %10s %10s %10s %10s %8s %10s\n", "IOPS", "MB/s", "mean_us", "p50_us", "p99_us",
	       "errors", "cpu%");
	printf("%12.0f %10.1f %10.2f %10.2f %10.2f %8llu %10.1f\n", iops, mbs, mean, (double)p50 / 1000.0,
	       (double)p99 / 1000.0, (unsigned long long)errors, cpu);
	if (p->verify)
		printf("verify: %llu blocks checked, %llu mismatched I/Os\n",
		       (unsigned long long)(ios / 2 * (p->io_size / p->bs)), (unsigned long long)mism);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bdev", required_argument, NULL, 'b'}, {"block-size", required_argument, NULL, 'B'},
		{"error-over", no_argument, NULL, 'E'}, {"poll-us", required_argument, NULL, 'P'},
		{"verify", no_argument, NULL, 'V'},     {"json", no_argument, NULL, 'J'},
		{"idle", required_argument, NULL, 'I'}, {"help", no_argument, NULL, 'h'},
		{"no-fill", no_argument, NULL, 'F'},   {"raid", required_argument, NULL, 'R'},
		{"safe-read", required_argument, NULL, 'S'}, {"superblock", no_argument, NULL, 'U'},
		{NULL, 0, NULL, 0},
	};
	const char *spec = NULL, *wname = "randread";
	struct perf p = {.w = W_RANDREAD, .mix = 70, .qd = 1, .seconds = 5, .reactors = 1,
			 .io_size = 4096, .bs = 512};
	struct fb_engine_opts eo;
	struct fb_err err = {{0}};
	bool error_over = false, json = false, no_fill = false, superblock = false;
	const char *raid = NULL, *safe_read = "off";
	unsigned raid_n = 1;
	unsigned idle = 0, poll_us = 50;
	char name[64] = "perf0";
	uint64_t cpu0, t0, t1, cpu1, nblocks;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "w:M:o:q:t:r:j:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': spec = optarg; break;
		case 'B': p.bs = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'E': error_over = true; break;
		case 'P': poll_us = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'V': p.verify = true; break;
		case 'J': json = true; break;
		case 'F': no_fill = true; break;
		case 'R': raid = optarg; break;
		case 'S': safe_read = optarg; break;
		case 'U': superblock = true; break;
		case 'I': idle = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'w':
			wname = optarg;
			if (!strcmp(optarg, "randread")) p.w = W_RANDREAD;
			else if (!strcmp(optarg, "randwrite")) p.w = W_RANDWRITE;
			else if (!strcmp(optarg, "read")) p.w = W_READ;
			else if (!strcmp(optarg, "write")) p.w = W_WRITE;
			else if (!strcmp(optarg, "randrw")) p.w = W_RANDRW;
			else { usage(); return 2; }
			break;
		case 'M': p.mix = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'o': {
			uint64_t v;

			if (parse_size(optarg, &v) || v > (64u << 20)) { usage(); return 2; }
			p.io_size = (uint32_t)v;
			break;
		}
		case 'q': p.qd = (unsigned)strtoul(optarg, NULL, 0); break;
		case 't': p.seconds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': p.reactors = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'j': p.njobs = (unsigned)strtoul(optarg, NULL, 0); break;
		default: usage(); return c == 'h' ? 0 : 2;
		}
	}
	if (p.njobs == 0)
		p.njobs = p.reactors;
	if ((!spec && !idle) || p.qd == 0 || p.reactors == 0 || p.njobs > p.reactors ||
	    p.mix > 100 || p.bs == 0 ||
	    p.io_size % p.bs) {
		usage();
		return 2;
	}
	fb_engine_opts_init(&eo);
	eo.reactors = p.reactors;
	eo.poll_us = poll_us;
	if (fb_engine_create(&eo, &p.e, &err)) {
		fprintf(stderr, "fb_perf: %s\n", err.msg);
		return 1;
	}
	if (idle) {
		cpu0 = fb_engine_reactor_cpu_us(p.e);
		sleep(idle);
		cpu1 = fb_engine_reactor_cpu_us(p.e);
		printf("idle: %u reactors, %llu us CPU over %u s = %.3f%% of one core\n", p.reactors,
		       (unsigned long long)(cpu1 - cpu0), idle, (double)(cpu1 - cpu0) / 1e4 / idle);
		rc = 0;
		goto out;
	}
	if (raid) {
		char *colon = strchr(raid, ':');

		raid_n = colon ? (unsigned)strtoul(colon + 1, NULL, 0) : 0;
		if (!colon || raid_n < 1 || raid_n > 32 || error_over || !strncmp(spec, "file:", 5)) {
			usage();
			rc = 2;
			goto out;
		}
	}
	for (unsigned m = 0; m < raid_n; m++) {
		if (raid)
			snprintf(name, sizeof(name), "perf%u", m);
		if (!strncmp(spec, "malloc:", 7) || !strncmp(spec, "null:", 5)) {
			bool is_malloc = spec[0] == 'm';
			uint64_t size;

			if (parse_size(strchr(spec, ':') + 1, &size)) {
				usage();
				goto out;
			}
			rc = create_bdev(p.e, is_malloc ? "bdev_malloc_create" : "bdev_null_create", name,
					 NULL, size / p.bs, p.bs, &err);
		} else if (!strncmp(spec, "file:", 5)) {
			rc = create_bdev(p.e, "bdev_uring_create", name, spec + 5, 0, p.bs, &err);
		} else {
			usage();
			rc = 2;
			goto out;
		}
		if (rc)
			break;
	}
	if (!rc && raid) {
		/* LEVEL:MEMBERS[:STRIP_KB] over perf0..perfN-1, named "raid". */
		struct fb_json_writer *w = fb_json_writer_new();
		char level[16];
		const char *strip = strchr(strchr(raid, ':') + 1, ':');

		snprintf(level, sizeof(level), "%.*s", (int)(strchr(raid, ':') - raid), raid);
		fb_json_write_object_begin(w);
		fb_json_write_named_string(w, "name", "raid");
		fb_json_write_named_string(w, "raid_level", level);
		fb_json_write_named_array_begin(w, "base_bdevs");
		for (unsigned m = 0; m < raid_n; m++) {
			snprintf(name, sizeof(name), "perf%u", m);
			fb_json_write_string(w, name);
		}
		fb_json_write_array_end(w);
		fb_json_write_named_uint64(w, "strip_size_kb", strip ? strtoul(strip + 1, NULL, 0) : 64);
		fb_json_write_named_bool(w, "superblock", superblock);
		fb_json_write_named_string(w, "safe_read", safe_read);
		fb_json_write_object_end(w);
		rc = rpc_with(p.e, "bdev_raid_create", w, &err);
		snprintf(name, sizeof(name), "raid");
	}
	if (rc) {
		fprintf(stderr, "fb_perf: %s\n", err.msg);
		rc = 1;
		goto out;
	}
	if (error_over) {
		if (create_bdev(p.e, "bdev_error_create", name, NULL, 0, 0, &err)) {
			fprintf(stderr, "fb_perf: %s\n", err.msg);
			goto out;
		}
		snprintf(name, sizeof(name), "EE_perf0");
	}
	if (fb_bdev_open(p.e, name,
			 &(struct fb_bdev_open_opts){.size = sizeof(struct fb_bdev_open_opts),
						     .write = true, .holder = "fb_perf"},
			 &p.desc, &err)) {
		fprintf(stderr, "fb_perf: %s\n", err.msg);
		goto out;
	}
	nblocks = fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(p.desc));
	p.bs = fb_bdev_get_block_size(fb_bdev_desc_get_bdev(p.desc));
	if (p.io_size % p.bs || nblocks / p.njobs < p.io_size / p.bs) {
		fprintf(stderr, "fb_perf: io size %u does not fit the bdev's block size %u / size\n",
			p.io_size, p.bs);
		goto out;
	}
	p.jobs = calloc(p.njobs, sizeof(*p.jobs));
	sem_init(&p.done, 0, 0);
	for (unsigned i = 0; i < p.njobs; i++) {
		struct job *j = &p.jobs[i];
		uint64_t units = nblocks / (p.io_size / p.bs);

		j->p = &p;
		j->idx = i;
		j->rng = 0x1234567ull + i * 7919;
		/* Verify partitions the bdev so jobs never overwrite each other;
		 * plain workloads let every job roam the whole bdev. */
		if (p.verify) {
			j->nunits = units / p.njobs;
			j->first_blk = i * j->nunits * (p.io_size / p.bs);
		} else {
			j->nunits = units;
		}
		j->tasks = calloc(p.qd, sizeof(*j->tasks));
		for (unsigned k = 0; k < p.qd; k++) {
			j->tasks[k].job = j;
			if (posix_memalign((void **)&j->tasks[k].buf, 4096, p.io_size))
				goto out;
			memset(j->tasks[k].buf, (int)(k + 1), p.io_size);
		}
	}
	if (!no_fill && !p.verify && spec[0] != 'n') {
		/* Untimed: every job writes its own share once. */
		p.filling = true;
		for (unsigned i = 0; i < p.njobs; i++) {
			struct job *j = &p.jobs[i];
			uint64_t units = nblocks / (p.io_size / p.bs);

			j->nunits = units / p.njobs + (i == p.njobs - 1 ? units % p.njobs : 0);
			j->first_blk = i * (units / p.njobs) * (p.io_size / p.bs);
		}
		jobs_run(&p);
		for (unsigned i = 0; i < p.njobs; i++) {
			struct job *j = &p.jobs[i];
			struct task *tasks = j->tasks;

			if (j->errors) {
				fprintf(stderr, "fb_perf: fill failed\n");
				goto out;
			}
			memset(j, 0, sizeof(*j));
			j->p = &p;
			j->idx = i;
			j->rng = 0x1234567ull + i * 7919;
			j->nunits = nblocks / (p.io_size / p.bs);
			j->tasks = tasks;
		}
		p.filling = false;
	}
	cpu0 = fb_engine_reactor_cpu_us(p.e);
	t0 = fb_now_ns();
	jobs_run(&p);
	t1 = fb_now_ns();
	cpu1 = fb_engine_reactor_cpu_us(p.e);
	report(&p, (double)(t1 - t0) / 1e9, cpu1 - cpu0, json, spec, p.verify ? "verify" : wname);
	rc = 0;
	for (unsigned i = 0; i < p.njobs; i++)
		if (p.jobs[i].errors || p.jobs[i].mismatches)
			rc = 1;
out:
	if (p.desc)
		fb_bdev_close(p.desc);
	fb_engine_destroy(p.e);
	for (unsigned i = 0; p.jobs && i < p.njobs; i++) {
		for (unsigned k = 0; p.jobs[i].tasks && k < p.qd; k++)
			free(p.jobs[i].tasks[k].buf);
		free(p.jobs[i].tasks);
	}
	free(p.jobs);
	return rc;
}
