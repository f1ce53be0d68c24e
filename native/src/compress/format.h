/* On-disk layout of a compress volume (all integers little endian):
 *
 *   [0, 4 KiB)            header: magic, version, uuid, geometry, codec, level,
 *                         name, CRC32C (in its first 512 bytes: one sector)
 *   [4 KiB, data_offset)  chunk map: map_pages pages, each with two 4 KiB slots
 *                         (page p slot s at map_offset + (2p + s) * 4 KiB)
 *   [data_offset, end)    data: data_units allocation units of unit_size bytes
 *
 * A map page holds FB_CMP_ENTRIES_PER_PAGE entries, one per logical chunk;
 * its header carries a CRC32C, the volume's uuid (so pages left by an older
 * volume on the same base read as never written) and a generation: the slot
 * with the valid copy of the highest generation is the page (map.c).
 *
 * Allocation unit: the base's block size, at least 512 bytes. A compressed
 * chunk takes ceil(len / unit) whole units, so it is never written into a
 * base block that holds another live chunk: a base block write is the unit
 * of atomicity, and packing two chunks into one block would need a
 * read-modify-write of a block holding live data of another chunk, which a
 * torn or reordered write could destroy (old or new, never garbage, would
 * no longer hold) and which would serialize unrelated writers. On a 512-byte
 * base the rounding costs 256 bytes per chunk on average (1.6% of a 16 KiB
 * chunk; ~5% of a chunk that compresses 3:1); on a 4 KiB base it is 4 KiB
 * granularity, stated in the bdev's stats.
 */
#ifndef FB_COMPRESS_FORMAT_H
#define FB_COMPRESS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the compress volume layout is written as little-endian structs"
#endif

#define FB_CMP_MAGIC "FBSOCMPv"
#define FB_CMP_VERSION 2u          /* 2 added name; 1 (160 bytes, no name) still opens */
#define FB_CMP_HEADER_V1_SIZE 160u
#define FB_CMP_NAME_MAX 256u
#define FB_CMP_HEADER_REGION 4096u
#define FB_CMP_PAGE_SIZE 4096u
#define FB_CMP_PAGE_MAGIC 0x50414d43u /* "CMAP" */
#define FB_CMP_MIN_CHUNK 4096u
#define FB_CMP_MAX_CHUNK (1024u * 1024u)

struct fb_cmp_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;     /* bytes covered by crc: sizeof(struct fb_cmp_header) */
	uint8_t uuid[16];
	uint32_t chunk_size;      /* bytes, power of two */
	uint32_t lb_size;         /* logical block size exposed, bytes */
	uint32_t unit_size;       /* allocation unit, bytes */
	uint32_t algo;            /* enum fb_cmp_algo */
	int32_t level;            /* for new writes; bdev_compress_set_level rewrites it */
	uint32_t entries_per_page;
	uint64_t num_chunks;      /* logical size in chunks */
	uint64_t map_offset;      /* bytes */
	uint64_t map_pages;
	uint64_t data_offset;     /* bytes */
	uint64_t data_units;
	uint64_t base_bytes;      /* the base's size at create: the volume needs data_offset + data_units * unit */
	uint8_t reserved[48];
	uint32_t pad;
	uint32_t crc;             /* CRC32C of header_size bytes with this field zero */
	/* Version 2. */
	char name[FB_CMP_NAME_MAX]; /* the bdev's name, NUL-terminated; examine opens it so */
};
_Static_assert(sizeof(struct fb_cmp_header) == 416, "header layout");
_Static_assert(offsetof(struct fb_cmp_header, name) == FB_CMP_HEADER_V1_SIZE, "v1 prefix");

enum fb_cmp_state {
	FB_CMP_UNMAPPED = 0,   /* never written, or unmapped: reads zeros, no data */
	FB_CMP_ZERO = 1,       /* written with zeros: no data */
	FB_CMP_COMPRESSED = 2, /* len bytes of codec output at unit */
	FB_CMP_RAW = 3,        /* chunk_size bytes stored as is (early abort) */
};

struct fb_cmp_entry {
	uint64_t unit;       /* first allocation unit in the data region */
	uint32_t len_state;  /* bits 0..23 stored length in bytes, 28..31 enum fb_cmp_state */
	uint32_t crc;        /* CRC32C of the len stored bytes */
};
_Static_assert(sizeof(struct fb_cmp_entry) == 16, "entry layout");

static inline enum fb_cmp_state fb_cmp_entry_state(const struct fb_cmp_entry *e)
{
	return (enum fb_cmp_state)(e->len_state >> 28);
}
static inline uint32_t fb_cmp_entry_len(const struct fb_cmp_entry *e)
{
	return e->len_state & 0xffffffu;
}
static inline uint32_t fb_cmp_len_state(enum fb_cmp_state s, uint32_t len)
{
	return ((uint32_t)s << 28) | (len & 0xffffffu);
}

struct fb_cmp_page_hdr {
	uint32_t magic;
	uint32_t crc;        /* CRC32C of the whole 4 KiB page with this field zero */
	uint64_t gen;        /* 1 for the first write; slot = gen & 1 */
	uint64_t page;       /* its own index */
	uint8_t uuid[16];    /* the volume's */
	uint64_t reserved;
};
#define FB_CMP_ENTRIES_PER_PAGE \
	((FB_CMP_PAGE_SIZE - sizeof(struct fb_cmp_page_hdr)) / sizeof(struct fb_cmp_entry))
_Static_assert(sizeof(struct fb_cmp_page_hdr) + FB_CMP_ENTRIES_PER_PAGE * sizeof(struct fb_cmp_entry) ==
	       FB_CMP_PAGE_SIZE, "page layout");

/* CRC32C (Castagnoli), the standard one (check value 0xe3069283). */
uint32_t fb_cmp_crc32c(const void *buf, size_t len);

/* Geometry for a new volume. num_chunks 0 = as many chunks as fit stored
 * raw (1:1). Returns 0, or -EINVAL/-ENOSPC with msg naming the param and
 * the fix. */
struct fb_cmp_geometry_req {
	uint64_t base_bytes;
	uint32_t base_block_size;
	uint32_t chunk_size;
	uint32_t lb_size;
	uint64_t num_chunks;
};
int fb_cmp_geometry(const struct fb_cmp_geometry_req *req, struct fb_cmp_header *out, char *msg,
		    size_t msglen);

/* Seals a header (sets header_size, magic, version, crc). */
void fb_cmp_header_seal(struct fb_cmp_header *h);
/* Checks the first FB_CMP_HEADER_REGION bytes of a base:
 *   -ENOENT  no compress volume here (no magic);
 *   -EINVAL  ours but damaged or unusable on this base: msg names the damage;
 *   0        valid; *out filled. */
int fb_cmp_header_check(const void *buf, uint64_t base_bytes, uint32_t base_block_size,
			struct fb_cmp_header *out, char *msg, size_t msglen);

/* Map page slot codec. */
uint64_t fb_cmp_page_offset(const struct fb_cmp_header *h, uint64_t page, unsigned slot);
void fb_cmp_page_seal(const struct fb_cmp_header *h, void *page_buf, uint64_t page, uint64_t gen,
		      const struct fb_cmp_entry *entries, size_t n);
/* 0 and the generation when buf holds a valid copy of page `page` of this
 * volume; -1 otherwise (torn, another volume's, never written). */
int fb_cmp_page_check(const struct fb_cmp_header *h, const void *page_buf, uint64_t page,
		      uint64_t *gen);
/* Whether buf starts with this volume's header for page `page` (valid or not). */
bool fb_cmp_page_is_ours(const struct fb_cmp_header *h, const void *page_buf, uint64_t page);

#endif
