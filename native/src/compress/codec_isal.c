/* Raw deflate through ISA-L igzip (stateless calls: one chunk, one stream). */
#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <string.h>

#include "codec.h"

/* Big enough for every level's suggested history/hash buffer. */
#define LEVEL_BUF_SIZE                                                                   \
	(ISAL_DEF_LVL3_DEFAULT > ISAL_DEF_LVL2_DEFAULT ? ISAL_DEF_LVL3_DEFAULT          \
						       : ISAL_DEF_LVL2_DEFAULT)

struct isal_ctx {
	struct isal_zstream zs;
	struct inflate_state in;
	uint8_t level_buf[LEVEL_BUF_SIZE];
};

static int isal_compress(void *ctx, int level, const void *src, size_t len, void *dst, size_t cap,
			 size_t *out)
{
	struct isal_ctx *c = ctx;
	int rc;

	isal_deflate_stateless_init(&c->zs);
	c->zs.next_in = (uint8_t *)src;
	c->zs.avail_in = (uint32_t)len;
	c->zs.next_out = dst;
	c->zs.avail_out = (uint32_t)cap;
	c->zs.end_of_stream = 1;
	c->zs.flush = NO_FLUSH;
	c->zs.level = (uint32_t)level;
	if (level > 0) {
		c->zs.level_buf = c->level_buf;
		c->zs.level_buf_size = sizeof(c->level_buf);
	}
	rc = isal_deflate_stateless(&c->zs);
	if (rc == STATELESS_OVERFLOW)
		return -ENOSPC;
	if (rc != COMP_OK)
		return -EINVAL;
	*out = c->zs.total_out;
	return 0;
}

static int isal_decompress(void *ctx, const void *src, size_t src_len, void *dst, size_t dst_len)
{
	struct isal_ctx *c = ctx;
	int rc;

	isal_inflate_init(&c->in);
	c->in.next_in = (uint8_t *)src;
	c->in.avail_in = (uint32_t)src_len;
	c->in.next_out = dst;
	c->in.avail_out = (uint32_t)dst_len;
	c->in.crc_flag = ISAL_DEFLATE;
	rc = isal_inflate_stateless(&c->in);
	if (rc != ISAL_DECOMP_OK || c->in.total_out != dst_len ||
	    c->in.block_state != ISAL_BLOCK_FINISH)
		return -EBADMSG;
	return 0;
}

const struct fb_cmp_codec fb_cmp_codec_isal = {
	.algo = FB_CMP_DEFLATE,
	.name = "deflate",
	.format = FB_CMP_DEFLATE,
	.min_level = 0,
	.max_level = ISAL_DEF_MAX_LEVEL,
	.default_level = 1,
	.ctx_size = sizeof(struct isal_ctx),
	.compress = isal_compress,
	.decompress = isal_decompress,
};
