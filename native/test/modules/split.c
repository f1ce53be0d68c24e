/* Test-only striping bdev: one base, virtual strip k stored in base strip
 * k ^ 1 (so a wrong split shows up in the base's bytes), after data_offset
 * base blocks. Either the module fans each I/O out into strip-sized
 * children itself (scratch iovec arrays from fb_io_channel_get_buf, io_wait
 * when short), or (core_split) the core splits on the strip boundary and
 * the module asserts it never sees an I/O that crosses one. It asserts the
 * required_alignment the core must honour, and max_io_blocks.
 *
 * examine: a bdev whose block 0 starts with "FBSPLIT1" + strip blocks
 * (u32 LE) is reassembled as "<name>_split" at creation (fb_bdev_io_sync).
 *
 *   test_split_create {name, base_bdev_name, strip_blocks, core_split?,
 *                      max_io_blocks?, required_alignment?, data_offset?}
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"

#define SP_PIECES 16 /* iovec pieces per child */

struct sp_bdev {
	struct fb_bdev_desc *base;
	uint32_t strip, bs;
	uint64_t data_offset;
	bool core_split;
	uint32_t max_io_blocks, align_log2;
};

struct sp_channel {
	struct fb_io_channel *base_ch;
};

struct sp_io {
	struct fb_io_wait_entry wait;
	struct fb_bdev_io *io;
	struct fb_io_channel *ch;
	struct iovec *iovs;      /* SP_PIECES per child, from the channel's buffers */
	size_t iovs_len;
	uint64_t nchild, next, inflight;
	int status;
	bool submitting, parked;
};

static struct fb_bdev_module sp_module;

static uint64_t sp_map(const struct sp_bdev *sp, uint64_t vblock)
{
	uint64_t strip = vblock / sp->strip;

	return sp->data_offset + (strip ^ 1u) * sp->strip + vblock % sp->strip;
}

static void sp_finish(struct sp_io *s)
{
	fb_io_channel_put_buf(s->ch, s->iovs, s->iovs_len);
	s->iovs = NULL;
	fb_bdev_io_complete(s->io, s->status);
}

static void sp_submit_children(void *arg);

static void sp_child_done(struct fb_bdev_io *child, int status, void *arg)
{
	struct sp_io *s = arg;

	fb_bdev_free_io(child);
	if (status && !s->status)
		s->status = status;
	s->inflight--;
	if (s->submitting || s->parked)
		return; /* the submit loop, or its resumption, carries on */
	if (s->next < s->nchild && !s->status)
		sp_submit_children(s);
	else if (s->inflight == 0)
		sp_finish(s);
}

static void sp_submit_children(void *arg)
{
	struct sp_io *s = arg;
	struct fb_bdev_io *io = s->io;
	struct sp_bdev *sp = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct sp_channel *sc = fb_io_channel_get_ctx(s->ch);
	enum fb_io_type type = fb_bdev_io_get_type(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io), end = off + fb_bdev_io_get_num_blocks(io);
	struct iovec *iov;
	int iovcnt;

	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	s->parked = false;
	s->submitting = true;
	while (s->next < s->nchild && !s->status) {
		uint64_t first = (off / sp->strip + s->next) * sp->strip;
		uint64_t from = first > off ? first : off;
		uint64_t to = first + sp->strip < end ? first + sp->strip : end;
		struct iovec *civ = s->iovs + s->next * SP_PIECES;
		int n = 0, rc;

		if (type == FB_IO_READ || type == FB_IO_WRITE) {
			n = fb_iov_slice(iov, iovcnt, (from - off) * sp->bs, (to - from) * sp->bs, civ,
					 SP_PIECES);
			CHECK(n > 0);
		}
		switch (type) {
		case FB_IO_READ:
			rc = fb_bdev_readv_blocks(sp->base, sc->base_ch, civ, n, sp_map(sp, from),
						  to - from, sp_child_done, s);
			break;
		case FB_IO_WRITE:
			rc = fb_bdev_writev_blocks(sp->base, sc->base_ch, civ, n, sp_map(sp, from),
						   to - from, fb_bdev_io_get_flags(io), sp_child_done, s);
			break;
		case FB_IO_UNMAP:
			rc = fb_bdev_unmap_blocks(sp->base, sc->base_ch, sp_map(sp, from), to - from,
						  sp_child_done, s);
			break;
		default:
			rc = fb_bdev_write_zeroes_blocks(sp->base, sc->base_ch, sp_map(sp, from),
							 to - from, fb_bdev_io_get_flags(io),
							 sp_child_done, s);
			break;
		}
		if (rc == -ENOMEM) {
			/* Resumes when the base channel frees an io. */
			s->wait.cb = sp_submit_children;
			s->wait.arg = s;
			s->parked = true;
			fb_io_channel_queue_wait(sc->base_ch, &s->wait);
			break;
		}
		if (rc) {
			s->status = rc;
			break;
		}
		s->inflight++;
		s->next++;
	}
	s->submitting = false;
	if (!s->parked && s->inflight == 0 && (s->next == s->nchild || s->status))
		sp_finish(s);
}

static void sp_start(void *arg);

static void sp_submit(struct fb_io_channel *ch, struct fb_bdev_io *io)
{
	struct sp_io *s = fb_bdev_io_get_driver_ctx(io);

	memset(s, 0, sizeof(*s));
	s->io = io;
	s->ch = ch;
	sp_start(s);
}

static void sp_start(void *arg)
{
	struct sp_io *s = arg;
	struct fb_bdev_io *io = s->io;
	struct sp_bdev *sp = fb_bdev_get_module_ctx(fb_bdev_io_get_bdev(io));
	struct sp_channel *sc = fb_io_channel_get_ctx(s->ch);
	enum fb_io_type type = fb_bdev_io_get_type(io);
	uint64_t off = fb_bdev_io_get_offset_blocks(io), num = fb_bdev_io_get_num_blocks(io);
	struct iovec *iov;
	int iovcnt;

	if (type == FB_IO_FLUSH) {
		int rc = fb_bdev_flush_blocks(sp->base, sc->base_ch, 0, 0, sp_child_done, s);

		CHECK_EQ(rc, 0);
		s->nchild = s->next = s->inflight = 1;
		return;
	}
	iov = fb_bdev_io_get_iovs(io, &iovcnt);
	if (type == FB_IO_READ || type == FB_IO_WRITE) {
		uintptr_t mask = ((uintptr_t)1 << sp->align_log2) - 1;

		for (int i = 0; sp->align_log2 && i < iovcnt; i++)
			CHECK(((uintptr_t)iov[i].iov_base & mask) == 0);
		if (sp->max_io_blocks)
			CHECK(num <= sp->max_io_blocks);
	}
	s->nchild = (off + num - 1) / sp->strip - off / sp->strip + 1;
	if (sp->core_split && type != FB_IO_FLUSH)
		if (s->nchild != 1)
			th_fail(__FILE__, __LINE__, "type %d %llu+%llu crosses a strip", type, (unsigned long long)off, (unsigned long long)num);
	s->iovs_len = (size_t)s->nchild * SP_PIECES * sizeof(struct iovec);
	s->iovs = fb_io_channel_get_buf(s->ch, s->iovs_len);
	if (!s->iovs) {
		/* Out of scratch memory: park until this channel frees some. */
		s->wait.cb = sp_start;
		s->wait.arg = s;
		fb_io_channel_queue_wait(s->ch, &s->wait);
		return;
	}
	sp_submit_children(s);
}

static bool sp_io_type_supported(struct fb_bdev *bdev, enum fb_io_type type)
{
	struct sp_bdev *sp = fb_bdev_get_module_ctx(bdev);

	if (type == FB_IO_ZCOPY)
		return false;
	return fb_bdev_io_type_supported(fb_bdev_desc_get_bdev(sp->base), type);
}

static int sp_channel_create(struct fb_bdev *bdev, void *ctx)
{
	struct sp_bdev *sp = fb_bdev_get_module_ctx(bdev);
	struct sp_channel *sc = ctx;

	sc->base_ch = fb_bdev_get_io_channel(sp->base);
	return sc->base_ch ? 0 : -ENOMEM;
}

static void sp_channel_destroy(struct fb_bdev *bdev, void *ctx)
{
	(void)bdev;
	fb_put_io_channel(((struct sp_channel *)ctx)->base_ch);
}

static void sp_destruct(struct fb_bdev *bdev)
{
	struct sp_bdev *sp = fb_bdev_get_module_ctx(bdev);

	fb_bdev_close(sp->base);
	free(sp);
}

static void sp_dump_info(struct fb_bdev *bdev, struct fb_json_writer *w)
{
	struct sp_bdev *sp = fb_bdev_get_module_ctx(bdev);

	fb_json_write_named_object_begin(w, "split");
	fb_json_write_named_uint64(w, "strip_blocks", sp->strip);
	fb_json_write_named_string(w, "base", fb_bdev_get_name(fb_bdev_desc_get_bdev(sp->base)));
	fb_json_write_object_end(w);
}

static const struct fb_bdev_fn_table sp_fn = {
	.size = sizeof(struct fb_bdev_fn_table),
	.destruct = sp_destruct,
	.submit_request = sp_submit,
	.io_type_supported = sp_io_type_supported,
	.channel_create = sp_channel_create,
	.channel_destroy = sp_channel_destroy,
	.dump_info_json = sp_dump_info,
};

struct sp_params {
	char *name, *base_bdev_name;
	uint32_t strip_blocks, max_io_blocks, required_alignment;
	uint64_t data_offset;
	bool core_split;
};

static int sp_create(struct fb_engine *e, const struct sp_params *p, struct fb_err *err)
{
	struct sp_bdev *sp = calloc(1, sizeof(*sp));
	struct fb_bdev_open_opts oo = {.size = sizeof(oo), .write = true, .holder = "split bdev"};
	struct fb_bdev_register_opts ro = {.size = sizeof(ro)};
	struct fb_bdev *base;
	uint64_t strips;
	int rc;

	CHECK(sp != NULL);
	rc = fb_bdev_open(e, p->base_bdev_name, &oo, &sp->base, err);
	if (rc == 0)
		rc = fb_bdev_claim(sp->base, &sp_module, err);
	if (rc)
		goto fail;
	base = fb_bdev_desc_get_bdev(sp->base);
	sp->strip = p->strip_blocks;
	sp->bs = fb_bdev_get_block_size(base);
	sp->data_offset = p->data_offset;
	sp->core_split = p->core_split;
	sp->max_io_blocks = p->max_io_blocks;
	sp->align_log2 = p->required_alignment;
	strips = (fb_bdev_get_num_blocks(base) - p->data_offset) / p->strip_blocks / 2 * 2;
	ro.name = p->name;
	ro.block_size = sp->bs;
	ro.num_blocks = strips * p->strip_blocks;
	ro.module = &sp_module;
	ro.fn = &sp_fn;
	ro.ctx = sp;
	ro.optimal_io_boundary = p->strip_blocks;
	ro.split_on_optimal_io_boundary = p->core_split;
	ro.max_io_blocks = p->max_io_blocks;
	ro.required_alignment = p->required_alignment;
	rc = fb_bdev_register(e, &ro, NULL, err);
	if (rc)
		goto fail;
	return 0;
fail:
	fb_bdev_close(sp->base);
	free(sp);
	return rc;
}

static const struct fb_json_field sp_fields[] = {
	{.name = "name", .offset = offsetof(struct sp_params, name), .type = FB_JSON_STRING, .min = 1,
	 .hint = "a name"},
	{.name = "base_bdev_name", .offset = offsetof(struct sp_params, base_bdev_name),
	 .type = FB_JSON_STRING, .min = 1, .hint = "the base bdev"},
	{.name = "strip_blocks", .offset = offsetof(struct sp_params, strip_blocks),
	 .type = FB_JSON_U32, .min = 1, .max = 1024, .power_of_two = true,
	 .hint = "the strip in blocks, a power of two, e.g. 8"},
	{.name = "core_split", .offset = offsetof(struct sp_params, core_split), .type = FB_JSON_BOOL,
	 .optional = true, .hint = "true to let the core split on strips"},
	{.name = "max_io_blocks", .offset = offsetof(struct sp_params, max_io_blocks),
	 .type = FB_JSON_U32, .optional = true, .hint = "the largest I/O in blocks"},
	{.name = "required_alignment", .offset = offsetof(struct sp_params, required_alignment),
	 .type = FB_JSON_U32, .optional = true, .max = 12, .hint = "log2 of the buffer alignment"},
	{.name = "data_offset", .offset = offsetof(struct sp_params, data_offset),
	 .type = FB_JSON_U64, .optional = true, .hint = "base blocks before the data"},
};

static int sp_rpc_create(struct fb_engine *e, const void *params, struct fb_json_writer *w,
			 struct fb_err *err)
{
	int rc = sp_create(e, params, err);

	if (rc == 0)
		fb_json_write_string(w, ((const struct sp_params *)params)->name);
	return rc;
}

static const struct fb_rpc_method sp_rpcs[] = {
	{.name = "test_split_create", .params = sp_fields, .nparams = FB_JSON_FIELD_COUNT(sp_fields),
	 .params_size = sizeof(struct sp_params), .handler = sp_rpc_create},
};

/* Reassembly from on-disk metadata, as RAID does with its superblocks. */
static void sp_examine(struct fb_engine *e, struct fb_bdev *bdev)
{
	struct fb_bdev_desc *d = NULL;
	struct fb_err err;
	unsigned char *blk;
	uint32_t bs = fb_bdev_get_block_size(bdev), strip;

	if (fb_bdev_open(e, fb_bdev_get_name(bdev), NULL, &d, &err) != 0)
		return;
	blk = malloc(bs + 1);
	CHECK(blk != NULL);
	/* An odd buffer address on purpose: fb_bdev_io_sync needs no alignment. */
	if (fb_bdev_io_sync(d, FB_IO_READ, blk + 1, 0, 1, 0) == 0 && memcmp(blk + 1, "FBSPLIT1", 8) == 0) {
		char name[300];
		struct sp_params p = {.name = name, .base_bdev_name = (char *)fb_bdev_get_name(bdev),
				      .core_split = true};

		memcpy(&strip, blk + 1 + 9, sizeof(strip));
		p.strip_blocks = strip;
		p.data_offset = 2ull * strip;
		snprintf(name, sizeof(name), "%s_split", fb_bdev_get_name(bdev));
		fb_bdev_close(d); /* before the claim: a read-only open does not block it anyway */
		d = NULL;
		if (sp_create(e, &p, &err) != 0)
			fb_log(e, FB_LOG_WARN, "split examine: %s", err.msg);
	}
	fb_bdev_close(d);
	free(blk);
}

static struct fb_bdev_module sp_module = {
	.size = sizeof(struct fb_bdev_module),
	.name = "split",
	.product_name = "Split Disk",
	.io_ctx_size = sizeof(struct sp_io),
	.channel_ctx_size = sizeof(struct sp_channel),
	.examine = sp_examine,
	.rpcs = sp_rpcs,
	.nrpcs = FB_JSON_FIELD_COUNT(sp_rpcs),
};
FB_BDEV_MODULE_REGISTER(sp_module)
