/* RAID superblock: one page at block 0 of every member, so an array
 * reassembles from its members alone (examine). Little-endian fields, a
 * CRC32C over the page, a generation bumped on every change: a member whose
 * superblock is older than its peers' is stale and refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raid.h"

#define SB_MAGIC "FBRAIDSB"
#define SB_VERSION 1
#define SB_STATE_CLEAN 0
#define SB_STATE_ACTIVE 1

struct sb_member {
	uint8_t uuid[16];
	uint32_t state;
	uint32_t pad;
};

struct sb {
	char magic[8];
	uint32_t version;
	uint32_t crc;
	uint8_t uuid[16];
	char name[128];
	uint32_t level, n, strip_blocks, block_size;
	uint64_t data_offset, member_blocks, generation;
	uint32_t state, safe_read;
	uint32_t index, pad;
	struct sb_member members[RAID_MAX_MEMBERS];
};
_Static_assert(sizeof(struct sb) <= RAID_META_PAGE, "superblock fits one page");

static uint64_t page_bytes(uint32_t bs)
{
	return ((RAID_META_PAGE + bs - 1) / bs) * bs;
}

uint64_t raid_meta_blocks(uint32_t bs, uint64_t total, uint32_t strip_blocks)
{
	uint64_t pb = page_bytes(bs) / bs;
	uint64_t crc_blocks = (total * 4 + bs - 1) / bs;
	uint64_t align = RAID_DATA_ALIGN / bs ? RAID_DATA_ALIGN / bs : 1;
	uint64_t m = 2 * pb + crc_blocks;

	m = (m + align - 1) / align * align;
	return (m + strip_blocks - 1) / strip_blocks * strip_blocks;
}

static uint32_t sb_crc(struct sb *s, size_t len)
{
	uint32_t saved = s->crc, c;

	s->crc = 0;
	c = raid_crc_block(s, (uint32_t)len);
	s->crc = saved;
	return c;
}

static int sb_persisted_state(int s)
{
	/* A rebuild in progress restarts after a restart: record it failed. */
	return s == MEMBER_ONLINE ? MEMBER_ONLINE : s == MEMBER_MISSING ? MEMBER_MISSING : MEMBER_FAILED;
}

/* Control thread, ctl_mu held by the caller (or the array not yet shared). */
int raid_sb_write_all(struct raid_bdev *r, struct fb_err *err)
{
	size_t len = page_bytes(r->block_size);
	uint8_t *page = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
	struct sb *s = (struct sb *)(void *)page;
	int rc = 0;

	if (!page)
		return -ENOMEM;
	pthread_mutex_lock(&r->info_mu);
	r->generation++;
	pthread_mutex_unlock(&r->info_mu);
	memset(page, 0, len);
	memcpy(s->magic, SB_MAGIC, 8);
	s->version = SB_VERSION;
	memcpy(s->uuid, r->uuid.b, 16);
	snprintf(s->name, sizeof(s->name), "%s", r->name);
	s->level = r->level;
	s->n = r->n;
	s->strip_blocks = r->strip_blocks;
	s->block_size = r->block_size;
	s->data_offset = r->data_offset;
	s->member_blocks = r->member_blocks;
	s->generation = r->generation;
	s->state = r->clean ? SB_STATE_CLEAN : SB_STATE_ACTIVE;
	s->safe_read = (uint32_t)atomic_load(&r->safe_read);
	for (unsigned i = 0; i < r->n; i++) {
		memcpy(s->members[i].uuid, r->m[i].uuid.b, 16);
		s->members[i].state = (uint32_t)sb_persisted_state(atomic_load(&r->m[i].state));
	}
	for (unsigned i = 0; i < r->n; i++) {
		int st = atomic_load(&r->m[i].state);
		int wrc;

		if (!r->m[i].desc || (st != MEMBER_ONLINE && st != MEMBER_REBUILDING))
			continue;
		s->index = i;
		s->crc = sb_crc(s, len);
		wrc = fb_bdev_io_sync(r->m[i].desc, FB_IO_WRITE, page, 0, len / r->block_size,
				      FB_IO_FLAG_FUA);
		if (wrc) {
			raid_member_fail(r, i, "superblock write failed");
			if (!rc) {
				fb_err_set(err, "writing the superblock of member '%s' of raid '%s' "
					   "failed: %s", r->m[i].name, r->name, strerror(-wrc));
				rc = wrc;
			}
		}
	}
	free(page);
	return rc;
}

static void refuse(struct fb_engine *e, const char *array, const char *member, const char *why)
{
	struct fb_json_writer *w = fb_json_writer_new();
	char *ctx = NULL;

	fb_log(e, FB_LOG_ERROR, "raid '%s': member '%s' refused: %s", array, member, why);
	/* Names here come from disks and bdevs: let the writer escape them. */
	fb_json_write_object_begin(w);
	fb_json_write_named_string(w, "array", array);
	fb_json_write_named_string(w, "member", member);
	fb_json_write_named_string(w, "reason", why);
	fb_json_write_object_end(w);
	if (fb_json_writer_finish(w, &ctx, NULL) == 0)
		fb_notify(e, "raid_member_refused", ctx);
	free(ctx);
}

/* All members the newest superblock calls online are here: assemble. */
static void try_assemble(struct raid_bdev *r)
{
	unsigned need = 0, have = 0;
	struct fb_err err;
	int rc;

	for (unsigned i = 0; i < r->n; i++) {
		if (r->m[i].sb_state == MEMBER_ONLINE) {
			need++;
			have += r->m[i].desc != NULL;
		}
	}
	if (have < need)
		return;
	for (unsigned i = 0; i < r->n; i++)
		atomic_store(&r->m[i].state, r->m[i].desc ? MEMBER_ONLINE :
			     r->m[i].sb_state == MEMBER_MISSING ? MEMBER_MISSING : MEMBER_FAILED);
	rc = raid_assemble_register(r, false, &err);
	if (rc) {
		fb_log(r->e, FB_LOG_ERROR, "raid '%s': assembly failed: %s", r->name, err.msg);
		raid_notify(r, "raid_assembly_failed", "\"error\":%d", rc);
		atomic_store(&r->state, RAID_OFFLINE);
		return;
	}
	fb_log(r->e, FB_LOG_INFO, "raid '%s' reassembled from %u members (generation %llu)",
	       r->name, have, (unsigned long long)r->generation);
	raid_notify(r, "raid_assembled", "\"members\":%u", have);
}

void raid_sb_examine(struct fb_engine *e, struct fb_bdev *bdev)
{
	const char *bname = fb_bdev_get_name(bdev);
	uint32_t bs = fb_bdev_get_block_size(bdev);
	size_t len = page_bytes(bs);
	struct fb_bdev_desc *desc = NULL;
	struct fb_uuid buuid;
	struct raid_bdev *r;
	struct fb_err err;
	uint8_t *page;
	struct sb *s;
	char why[300];

	const char *mod = fb_bdev_get_module(bdev) ? fb_bdev_get_module(bdev)->name : "";

	/* Only a bdev that can hold a member (metadata region + a strip) and
	 * can hold data from a previous life (not a new malloc or null bdev,
	 * which read zeroes) is read: examine costs every other bdev nothing. */
	if (fb_bdev_get_num_blocks(bdev) * bs < RAID_DATA_ALIGN + (uint64_t)bs || len > 65536 ||
	    !strcmp(mod, "malloc") || !strcmp(mod, "null"))
		return;
	page = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
	if (!page)
		return;
	s = (struct sb *)(void *)page;
	if (fb_bdev_open(e, bname, NULL, &desc, &err) ||
	    fb_bdev_io_sync(desc, FB_IO_READ, page, 0, len / bs, 0) ||
	    memcmp(s->magic, SB_MAGIC, 8)) {
		if (desc)
			fb_bdev_close(desc);
		free(page);
		return;
	}
	fb_bdev_close(desc);
	s->name[sizeof(s->name) - 1] = 0;
	if (s->crc != sb_crc(s, len)) {
		refuse(e, s->name, bname, "superblock checksum mismatch");
		goto out;
	}
	if (!raid_plain_name(s->name) || !raid_plain_name(bname)) {
		refuse(e, s->name, bname, "array or bdev name is not a plain name (1..100 characters, "
		       "no quotes, backslashes or control characters)");
		goto out;
	}
	if (s->version != SB_VERSION || s->n < 2 || s->n > RAID_MAX_MEMBERS || s->index >= s->n ||
	    s->block_size != bs) {
		refuse(e, s->name, bname, "superblock geometry is invalid for this bdev");
		goto out;
	}
	/* The slot comes from the superblock; a bdev recreated without its
	 * uuid (a file bdev gets a new one each time) is still that member. */
	fb_bdev_get_uuid(bdev, &buuid);
	raid_registry_lock(e);
	r = NULL;
	for (struct raid_bdev *x = raid_registry_first(e); x; x = x->next)
		if (!memcmp(x->uuid.b, s->uuid, 16))
			r = x;
	if (!r) {
		r = raid_alloc(e, s->name, (enum raid_level)s->level, s->n, s->strip_blocks, bs);
		if (!r) {
			raid_registry_unlock(e);
			goto out;
		}
		memcpy(r->uuid.b, s->uuid, 16);
		r->data_offset = s->data_offset;
		r->member_blocks = s->member_blocks;
		r->superblock = true;
		r->generation = s->generation;
		r->clean = s->state == SB_STATE_CLEAN;
		atomic_store(&r->safe_read, (int)s->safe_read);
		for (unsigned i = 0; i < s->n; i++) {
			memcpy(r->m[i].uuid.b, s->members[i].uuid, 16);
			r->m[i].sb_state = (int)s->members[i].state;
		}
		raid_registry_add(r);
	}
	if (atomic_load(&r->state) != RAID_CONFIGURING) {
		snprintf(why, sizeof(why), "array is already %s; add it back with "
			 "bdev_raid_add_base_bdev", atomic_load(&r->state) == RAID_ONLINE ?
			 "online" : "offline");
		raid_registry_unlock(e);
		refuse(e, s->name, bname, why);
		goto out;
	}
	if (s->level != (uint32_t)r->level || s->n != r->n || s->strip_blocks != r->strip_blocks ||
	    s->data_offset != r->data_offset || s->member_blocks != r->member_blocks) {
		raid_registry_unlock(e);
		refuse(e, s->name, bname, "superblock geometry differs from the other members'");
		goto out;
	}
	if (s->generation < r->generation) {
		snprintf(why, sizeof(why), "stale superblock (generation %llu, array at %llu)",
			 (unsigned long long)s->generation, (unsigned long long)r->generation);
		raid_registry_unlock(e);
		refuse(e, s->name, bname, why);
		goto out;
	}
	if (s->generation > r->generation) {
		/* Members found so far are stale: drop them. */
		for (unsigned i = 0; i < r->n; i++) {
			if (r->m[i].desc) {
				snprintf(why, sizeof(why), "stale superblock (generation %llu, member "
					 "'%s' has %llu)", (unsigned long long)r->generation, bname,
					 (unsigned long long)s->generation);
				refuse(e, r->name, r->m[i].name, why);
				raid_member_close(r, i);
			}
			memcpy(r->m[i].uuid.b, s->members[i].uuid, 16);
			r->m[i].sb_state = (int)s->members[i].state;
		}
		r->generation = s->generation;
		r->clean = s->state == SB_STATE_CLEAN;
	}
	if (r->m[s->index].sb_state != MEMBER_ONLINE) {
		snprintf(why, sizeof(why), "the array recorded this member as %s (generation %llu); "
			 "replace it with bdev_raid_add_base_bdev",
			 raid_member_state_name(r->m[s->index].sb_state),
			 (unsigned long long)r->generation);
		raid_registry_unlock(e);
		refuse(e, s->name, bname, why);
		goto out;
	}
	if (r->m[s->index].desc) {
		raid_registry_unlock(e);
		refuse(e, s->name, bname, "another bdev already holds this member slot");
		goto out;
	}
	free(r->m[s->index].name);
	r->m[s->index].name = strdup(bname);
	if (!r->m[s->index].name || raid_member_open(r, s->index, bname, &err)) {
		raid_registry_unlock(e);
		refuse(e, s->name, bname, "cannot open or claim the bdev");
		goto out;
	}
	r->m[s->index].uuid = buuid;
	r->clean = r->clean && s->state == SB_STATE_CLEAN;
	raid_registry_unlock(e);
	try_assemble(r);
out:
	free(page);
}
