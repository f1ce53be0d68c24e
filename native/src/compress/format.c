/* Volume header and map page encoding, geometry, CRC32C. */
#include <errno.h>
#include <isa-l/crc.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "format.h"

uint32_t fb_cmp_crc32c(const void *buf, size_t len)
{
	uint32_t crc = 0xffffffffu;
	const unsigned char *p = buf;

	/* crc32_iscsi takes an int length and applies no final inversion. */
	while (len > 0) {
		int n = len > (1u << 30) ? 1 << 30 : (int)len;

		crc = crc32_iscsi((unsigned char *)p, n, crc);
		p += n;
		len -= (size_t)n;
	}
	return ~crc;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint32_t unit_for(uint32_t base_block_size)
{
	return base_block_size > 512 ? base_block_size : 512;
}

/* Lays out a volume of n chunks on a base; false when it does not fit. */
static bool layout(const struct fb_cmp_geometry_req *r, uint64_t n, struct fb_cmp_header *h)
{
	uint32_t unit = unit_for(r->base_block_size);
	uint64_t pages = (n + FB_CMP_ENTRIES_PER_PAGE - 1) / FB_CMP_ENTRIES_PER_PAGE;
	uint64_t align = unit > FB_CMP_PAGE_SIZE ? unit : FB_CMP_PAGE_SIZE;
	uint64_t data_off = align_up(FB_CMP_HEADER_REGION + pages * 2 * FB_CMP_PAGE_SIZE, align);

	if (n == 0 || data_off >= r->base_bytes)
		return false;
	memset(h, 0, sizeof(*h));
	h->chunk_size = r->chunk_size;
	h->lb_size = r->lb_size;
	h->unit_size = unit;
	h->entries_per_page = FB_CMP_ENTRIES_PER_PAGE;
	h->num_chunks = n;
	h->map_offset = FB_CMP_HEADER_REGION;
	h->map_pages = pages;
	h->data_offset = data_off;
	h->data_units = (r->base_bytes - data_off) / unit;
	h->base_bytes = r->base_bytes;
	/* At least one chunk must fit stored raw. */
	return h->data_units * unit >= r->chunk_size;
}

int fb_cmp_geometry(const struct fb_cmp_geometry_req *r, struct fb_cmp_header *out, char *msg,
		    size_t msglen)
{
	uint64_t n, min_bytes;

	if (r->lb_size != 512 && r->lb_size != 4096) {
		snprintf(msg, msglen, "Invalid parameter 'lb_size': must be 512 or 4096, got %u. "
			 "Fix: pass lb_size 512 or 4096", r->lb_size);
		return -EINVAL;
	}
	if (r->base_block_size == 0 || r->base_block_size % 512 || r->base_block_size > FB_CMP_PAGE_SIZE ||
	    FB_CMP_PAGE_SIZE % r->base_block_size) {
		snprintf(msg, msglen, "base block size %u is not supported: a compress base needs 512, "
			 "1024, 2048 or 4096-byte blocks", r->base_block_size);
		return -EINVAL;
	}
	if (!is_pow2(r->chunk_size) || r->chunk_size < r->lb_size ||
	    r->chunk_size < unit_for(r->base_block_size) || r->chunk_size > FB_CMP_MAX_CHUNK) {
		snprintf(msg, msglen, "Invalid parameter 'chunk_size': must be a power of two from %u "
			 "(the larger of lb_size and the base block size) to %u, got %u. Fix: pass "
			 "e.g. 16384", r->lb_size > unit_for(r->base_block_size) ? r->lb_size :
			 unit_for(r->base_block_size), FB_CMP_MAX_CHUNK, r->chunk_size);
		return -EINVAL;
	}
	if (r->num_chunks) {
		n = r->num_chunks;
	} else {
		/* 1:1: every chunk fits stored raw. Start from an estimate that
		 * counts the map's share per chunk, then step down. */
		n = r->base_bytes > FB_CMP_HEADER_REGION ?
			    (r->base_bytes - FB_CMP_HEADER_REGION) /
				    (r->chunk_size + 2 * FB_CMP_PAGE_SIZE / FB_CMP_ENTRIES_PER_PAGE + 1) :
			    0;
		while (n > 0 && !(layout(r, n, out) && out->data_units * out->unit_size >=
						     n * (uint64_t)r->chunk_size))
			n--;
	}
	if (!layout(r, n ? n : 1, out) || n == 0) {
		min_bytes = align_up(FB_CMP_HEADER_REGION + 2 * FB_CMP_PAGE_SIZE,
				     unit_for(r->base_block_size)) + r->chunk_size;
		snprintf(msg, msglen, "base_bdev_name: the base has %llu bytes, too small for a "
			 "compress volume with chunk_size %u: it needs at least %llu bytes (4 KiB "
			 "header, 8 KiB map, one chunk). Fix: use a larger base or a smaller chunk_size",
			 (unsigned long long)r->base_bytes, r->chunk_size,
			 (unsigned long long)min_bytes);
		return -ENOSPC;
	}
	return 0;
}

void fb_cmp_header_seal(struct fb_cmp_header *h)
{
	memcpy(h->magic, FB_CMP_MAGIC, sizeof(h->magic));
	h->version = FB_CMP_VERSION;
	h->header_size = sizeof(*h);
	h->crc = 0;
	h->crc = fb_cmp_crc32c(h, sizeof(*h));
}

int fb_cmp_header_check(const void *buf, uint64_t base_bytes, uint32_t base_block_size,
			struct fb_cmp_header *out, char *msg, size_t msglen)
{
	struct fb_cmp_header h;
	uint32_t stored, crc;
	uint64_t pages, need;
	size_t size;

	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, FB_CMP_MAGIC, sizeof(h.magic)) != 0)
		return -ENOENT;
	/* A damaged size field fails the CRC below like any other bit. */
	size = h.header_size == FB_CMP_HEADER_V1_SIZE ? FB_CMP_HEADER_V1_SIZE : sizeof(h);
	stored = h.crc;
	h.crc = 0;
	crc = fb_cmp_crc32c(&h, size);
	h.crc = stored;
	if (crc != stored) {
		snprintf(msg, msglen, "header CRC32C mismatch (stored 0x%08x, computed 0x%08x): the "
			 "compress header in the first 4 KiB is damaged", stored, crc);
		return -EINVAL;
	}
	if (size == FB_CMP_HEADER_V1_SIZE)
		memset(h.name, 0, sizeof(h.name)); /* version 1: opens as COMP_<base> */
	if (!((h.version == 1 && size == FB_CMP_HEADER_V1_SIZE) ||
	      (h.version == FB_CMP_VERSION && size == sizeof(h))) ||
	    memchr(h.name, 0, sizeof(h.name)) == NULL) {
		snprintf(msg, msglen, "header version %u (size %u) is not supported: this engine reads "
			 "version %u", h.version, h.header_size, FB_CMP_VERSION);
		return -EINVAL;
	}
	if (!fb_cmp_codec_get((enum fb_cmp_algo)h.algo)) {
		snprintf(msg, msglen, "header names unknown algorithm %u", h.algo);
		return -EINVAL;
	}
	if (!is_pow2(h.chunk_size) || h.chunk_size > FB_CMP_MAX_CHUNK ||
	    (h.lb_size != 512 && h.lb_size != 4096) || h.chunk_size < h.lb_size ||
	    h.unit_size != unit_for(base_block_size) || h.chunk_size < h.unit_size) {
		snprintf(msg, msglen, "header geometry is invalid on this base (chunk_size %u, lb_size "
			 "%u, unit_size %u, base block size %u)", h.chunk_size, h.lb_size,
			 h.unit_size, base_block_size);
		return -EINVAL;
	}
	pages = (h.num_chunks + FB_CMP_ENTRIES_PER_PAGE - 1) / FB_CMP_ENTRIES_PER_PAGE;
	if (h.entries_per_page != FB_CMP_ENTRIES_PER_PAGE || h.num_chunks == 0 ||
	    h.map_offset != FB_CMP_HEADER_REGION || h.map_pages != pages ||
	    h.data_offset < h.map_offset + pages * 2 * FB_CMP_PAGE_SIZE ||
	    h.data_offset % h.unit_size || h.data_units == 0 ||
	    h.data_units > (UINT64_MAX - h.data_offset) / h.unit_size) {
		snprintf(msg, msglen, "header map/data layout is inconsistent (num_chunks %llu, "
			 "map_pages %llu, data_offset %llu, data_units %llu)",
			 (unsigned long long)h.num_chunks, (unsigned long long)h.map_pages,
			 (unsigned long long)h.data_offset, (unsigned long long)h.data_units);
		return -EINVAL;
	}
	need = h.data_offset + h.data_units * h.unit_size;
	if (need > base_bytes) {
		snprintf(msg, msglen, "the base has %llu bytes but the volume needs %llu: the base "
			 "shrank or is not the one the volume was created on",
			 (unsigned long long)base_bytes, (unsigned long long)need);
		return -EINVAL;
	}
	*out = h;
	return 0;
}

uint64_t fb_cmp_page_offset(const struct fb_cmp_header *h, uint64_t page, unsigned slot)
{
	return h->map_offset + (2 * page + slot) * FB_CMP_PAGE_SIZE;
}

void fb_cmp_page_seal(const struct fb_cmp_header *h, void *page_buf, uint64_t page, uint64_t gen,
		      const struct fb_cmp_entry *entries, size_t n)
{
	struct fb_cmp_page_hdr ph = {.magic = FB_CMP_PAGE_MAGIC, .gen = gen, .page = page};
	uint8_t *b = page_buf;

	memcpy(ph.uuid, h->uuid, sizeof(ph.uuid));
	memset(b, 0, FB_CMP_PAGE_SIZE);
	memcpy(b, &ph, sizeof(ph));
	memcpy(b + sizeof(ph), entries, n * sizeof(*entries));
	ph.crc = fb_cmp_crc32c(b, FB_CMP_PAGE_SIZE);
	memcpy(b, &ph, sizeof(ph));
}

int fb_cmp_page_check(const struct fb_cmp_header *h, const void *page_buf, uint64_t page,
		      uint64_t *gen)
{
	struct fb_cmp_page_hdr ph;
	uint8_t copy[FB_CMP_PAGE_SIZE];
	uint32_t stored;

	memcpy(&ph, page_buf, sizeof(ph));
	if (ph.magic != FB_CMP_PAGE_MAGIC || ph.page != page || ph.gen == 0 ||
	    memcmp(ph.uuid, h->uuid, sizeof(ph.uuid)) != 0)
		return -1;
	memcpy(copy, page_buf, sizeof(copy));
	stored = ph.crc;
	ph.crc = 0;
	memcpy(copy, &ph, sizeof(ph));
	if (fb_cmp_crc32c(copy, sizeof(copy)) != stored)
		return -1;
	*gen = ph.gen;
	return 0;
}

bool fb_cmp_page_is_ours(const struct fb_cmp_header *h, const void *page_buf, uint64_t page)
{
	struct fb_cmp_page_hdr ph;

	memcpy(&ph, page_buf, sizeof(ph));
	return ph.magic == FB_CMP_PAGE_MAGIC && ph.page == page &&
	       memcmp(ph.uuid, h->uuid, sizeof(ph.uuid)) == 0;
}
