/* file bdev: O_DIRECT (ext4 under /tmp) and buffered (/dev/shm, forced)
 * paths, unaligned iovecs through the bounce buffer, flush/FUA/unmap/
 * write-zeroes, and create errors. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define BS 4096u
#define NB 512u

static char *make_file(const char *dir, uint64_t size)
{
	char *path = malloc(256);
	int fd;

	snprintf(path, 256, "%s/fb_file_test_%d_XXXXXX", dir, (int)getpid());
	fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)size) == 0);
	close(fd);
	return path;
}

static int direct_of(const struct fb_bdev_info *info, void *arg)
{
	*(int *)arg = strstr(info->driver_json, "\"direct_io\":true") != NULL;
	return 0;
}

static void pread_all(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, len, 0), (long long)len);
	close(fd);
}

/* extra: the file bdev params beyond name, filename and block_size. */
static void file_paths(const char *dir, const char *extra, int want_direct)
{
	struct fb_engine *e = th_engine(2);
	char *path = make_file(dir, (uint64_t)NB * BS + 100); /* tail is ignored */
	struct fb_bdev_desc *d;
	struct fb_err err;
	unsigned char *ref = calloc(NB, BS), *buf = th_aligned(4096, 8 * BS);
	unsigned char *raw = malloc(8 * BS + 64), *disk = malloc((size_t)NB * BS);
	uint64_t seed = 99;
	int direct = -1;

	CHECK_OK(th_file(e, "F0", path, BS, extra, &err));
	CHECK_EQ(fb_bdev_foreach(e, "F0", direct_of, &direct), 0);
	CHECK_EQ(direct, want_direct);
	CHECK_OK(th_open(e, "F0", true, &d, &err));
	CHECK_EQ(fb_bdev_get_num_blocks(fb_bdev_desc_get_bdev(d)), NB);
	for (int i = 0; i < 200; i++) {
		uint64_t n = 1 + seed % 8, off = (seed >> 8) % (NB - n + 1);
		unsigned r = (unsigned)i % 2;

		if (i % 4 == 3) {
			CHECK_EQ(th_read(e, r, d, buf, off, n), 0);
			CHECK(memcmp(buf, ref + off * BS, n * BS) == 0);
		} else {
			th_fill_random(buf, n * BS, &seed);
			CHECK_EQ(th_write(e, r, d, buf, off, n), 0);
			memcpy(ref + off * BS, buf, n * BS);
		}
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
	}
	/* Unaligned, oddly split iovecs: bounce path under O_DIRECT. */
	{
		unsigned char *u = raw + 3;
		struct iovec iov[3] = {{u, 100}, {u + 100, 5000}, {u + 5100, 2 * BS - 5100}};

		th_fill_random(u, 2 * BS, &seed);
		CHECK_EQ(th_io(e, 1, d, FB_IO_WRITE, iov, 3, 10, 2, FB_IO_FLAG_FUA), 0);
		memcpy(ref + 10 * BS, u, 2 * BS);
		memset(u, 0, 2 * BS);
		CHECK_EQ(th_io(e, 0, d, FB_IO_READ, iov, 3, 10, 2, 0), 0);
		CHECK(memcmp(u, ref + 10 * BS, 2 * BS) == 0);
	}
	/* Flush, then the file itself holds the reference. */
	CHECK_EQ(th_io(e, 0, d, FB_IO_FLUSH, NULL, 0, 0, 0, 0), 0);
	pread_all(path, disk, (size_t)NB * BS);
	CHECK(memcmp(disk, ref, (size_t)NB * BS) == 0);
	/* Unmap and write-zeroes read back as zeros; neighbours intact. */
	CHECK_EQ(th_io(e, 1, d, FB_IO_UNMAP, NULL, 0, 20, 3, 0), 0);
	memset(ref + 20 * BS, 0, 3 * BS);
	CHECK_EQ(th_io(e, 0, d, FB_IO_WRITE_ZEROES, NULL, 0, 40, 300, FB_IO_FLAG_FUA), 0);
	memset(ref + 40 * BS, 0, 300 * BS);
	for (unsigned r = 0; r < 2; r++) {
		unsigned char *all = th_aligned(4096, (size_t)NB * BS);

		CHECK_EQ(th_read(e, r, d, all, 0, NB), 0);
		CHECK(memcmp(all, ref, (size_t)NB * BS) == 0);
		free(all);
	}
	fb_bdev_close(d);
	CHECK_OK(fb_bdev_delete(e, "F0", &err));
	fb_engine_destroy(e);
	unlink(path);
	free(path);
	free(ref);
	free(buf);
	free(raw);
	free(disk);
}

TEST(direct_on_tmp)
{
	file_paths("/tmp", "\"direct_io\":true", 1);
}

TEST(buffered_on_shm)
{
	file_paths("/dev/shm", "\"direct_io\":false", 0);
}

TEST(zero_writes_on_tmp)
{
	/* No fallocate: unmap and write-zeroes take the zero-writing path. */
	file_paths("/tmp", "\"fallocate\":false", 1);
}

TEST(auto_on_shm)
{
	/* tmpfs takes O_DIRECT on recent kernels; either way data must hold. */
	struct fb_engine *e = th_engine(1);
	char *path = make_file("/dev/shm", 64 * 512);
	struct fb_bdev_desc *d;
	struct fb_err err;
	unsigned char buf[512], back[512];
	uint64_t seed = 5;

	CHECK_OK(th_file(e, "F1", path, 0, "", &err)); /* 0 = 512 */
	CHECK_OK(th_open(e, "F1", true, &d, &err));
	CHECK_EQ(fb_bdev_get_block_size(fb_bdev_desc_get_bdev(d)), 512);
	th_fill_random(buf, sizeof(buf), &seed);
	CHECK_EQ(th_write(e, 0, d, buf, 63, 1), 0);
	CHECK_EQ(th_read(e, 0, d, back, 63, 1), 0);
	CHECK(memcmp(buf, back, sizeof(buf)) == 0);
	fb_bdev_close(d);
	fb_engine_destroy(e);
	unlink(path);
	free(path);
}

TEST(create_errors)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	char *small = make_file("/tmp", 100);

	CHECK_EQ(th_file(e, "F", "/nonexistent/x.img", 512, "", &err), -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent/x.img") != NULL);
	CHECK_EQ(th_file(e, "F", small, 512, "", &err), -EINVAL);
	CHECK(strstr(err.msg, "smaller than one block") != NULL);
	CHECK_EQ(th_file(e, "F", "/tmp", 512, "", &err), -EISDIR);
	CHECK_EQ(th_file(e, "F", small, 512, "\"direct_io\":1", &err), FB_RPC_INVALID_PARAMS);
	CHECK(strstr(err.msg, "Invalid parameter 'direct_io': must be a boolean") != NULL);
	CHECK_EQ(th_file(e, "F", small, 512, "\"nowait\":false", &err), FB_RPC_INVALID_PARAMS);
	CHECK(strstr(err.msg, "Unknown parameter 'nowait'. Fix: remove it; bdev_uring_create "
			 "accepts name, filename, block_size, uuid, direct_io, beneath, fallocate.") != NULL);
	fb_engine_destroy(e);
	unlink(small);
	free(small);
}

/* beneath: the file is opened inside the directory or not at all; a symlink
 * or ".." leading out is refused, whatever the caller checked before. */
TEST(confined_beneath)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	char root[] = "/tmp/fb_beneath_XXXXXX", data[300], p[400], beneath[320];
	char *victim;
	int fd;

	CHECK(mkdtemp(root) != NULL);
	snprintf(data, sizeof(data), "%s/data", root);
	CHECK_EQ(mkdir(data, 0700), 0);
	snprintf(beneath, sizeof(beneath), "\"beneath\":\"%s\"", data);
	victim = make_file(root, (uint64_t)NB * BS);
	snprintf(p, sizeof(p), "%s/link.img", data);
	CHECK_EQ(symlink(victim, p), 0);
	CHECK_EQ(th_file(e, "L", p, BS, beneath, &err), -EXDEV);
	CHECK(strstr(err.msg, "resolves outside") != NULL);
	CHECK(strstr(err.msg, "put the file itself in that directory") != NULL);
	snprintf(p, sizeof(p), "%s/../%s", data, strrchr(victim, '/') + 1);
	CHECK_EQ(th_file(e, "D", p, BS, beneath, &err), -EXDEV);
	CHECK_EQ(th_file(e, "O", victim, BS, beneath, &err), -EINVAL);
	CHECK(strstr(err.msg, "is not inside beneath") != NULL);
	/* a device node under the directory is not served through it */
	snprintf(p, sizeof(p), "%s/null", data);
	CHECK_EQ(symlink("/dev/null", p), 0);
	CHECK(th_file(e, "N", p, BS, beneath, &err) < 0);
	snprintf(p, sizeof(p), "%s/ok.img", data);
	fd = open(p, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)NB * BS), 0);
	close(fd);
	CHECK_OK(th_file(e, "OK", p, BS, beneath, &err));
	/* without beneath the engine opens what it is told (the agent always confines) */
	CHECK_OK(th_file(e, "V", victim, BS, "", &err));
	fb_engine_destroy(e);
	unlink(p);
	snprintf(p, sizeof(p), "%s/link.img", data);
	unlink(p);
	snprintf(p, sizeof(p), "%s/null", data);
	unlink(p);
	rmdir(data);
	unlink(victim);
	rmdir(root);
	free(victim);
}

/* One file backs one bdev, however it is named (here: a hard link). */
TEST(one_bdev_per_file)
{
	struct fb_engine *e = th_engine(1);
	struct fb_err err;
	char *path = make_file("/tmp", (uint64_t)NB * BS), lnk[300];

	snprintf(lnk, sizeof(lnk), "%s.link", path);
	CHECK_EQ(link(path, lnk), 0);
	CHECK_OK(th_file(e, "A", path, BS, "", &err));
	CHECK_EQ(th_file(e, "B", lnk, BS, "", &err), -EBUSY);
	CHECK(strstr(err.msg, "already backs bdev 'A'") != NULL);
	CHECK_OK(th_rpc(e, &err, "bdev_uring_delete", "{\"name\":\"A\"}"));
	CHECK_OK(th_file(e, "B", lnk, BS, "", &err));
	fb_engine_destroy(e);
	unlink(lnk);
	unlink(path);
	free(path);
}

int main(void)
{
	RUN(direct_on_tmp);
	RUN(buffered_on_shm);
	RUN(zero_writes_on_tmp);
	RUN(auto_on_shm);
	RUN(create_errors);
	RUN(confined_beneath);
	RUN(one_bdev_per_file);
	return 0;
}
