/* RPC methods of the raid module, with SPDK's names and params:
 *   bdev_raid_create {name, raid_level, base_bdevs, strip_size_kb, superblock,
 *                     uuid, safe_read: off|verify|repair}
 *   bdev_raid_delete {name}
 *   bdev_raid_get_bdevs {category: all|online|configuring|offline}
 *   bdev_raid_add_base_bdev {raid_bdev, base_bdev, rebuild_rate_kb}  (starts a rebuild)
 *   bdev_raid_remove_base_bdev {name}
 * and FlexBSO's own (SPDK has none):
 *   bdev_raid_set_safe_read {name, safe_read}
 *   bdev_raid_scrub_start {name, rate_kb_per_sec}  (0 = unlimited)
 *   bdev_raid_scrub_stop {name}
 * Checks the table cannot express (level spellings, member counts per
 * level, strip size, members) answer -22 (or -19 for a missing bdev) with a
 * sentence naming the param and the fix, as SPDK's raid RPCs do. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "raid.h"
#include "raid_rpc.h"

struct create_params {
	char *name;
	char *raid_level;
	struct fb_json_strings base_bdevs;
	uint32_t strip_size_kb;
	bool superblock;
	struct fb_uuid uuid;
	char *safe_read;
};

static const struct fb_json_field create_fields[] = {
	{.name = "name", .offset = offsetof(struct create_params, name), .type = FB_JSON_STRING,
	 .hint = "the new raid bdev's name, e.g. \"Raid0\""},
	{.name = "raid_level", .offset = offsetof(struct create_params, raid_level),
	 .type = FB_JSON_STRING, .hint = "one of raid0, raid1, raid5f, raid10 (or 0, 1, 5f, 5, 10)"},
	{.name = "base_bdevs", .offset = offsetof(struct create_params, base_bdevs),
	 .type = FB_JSON_STRING_ARRAY, .hint = "the member bdev names, e.g. [\"Malloc0\",\"Malloc1\"]"},
	{.name = "strip_size_kb", .offset = offsetof(struct create_params, strip_size_kb),
	 .type = FB_JSON_U32, .optional = true, .hint = "a power of two in KiB, e.g. 64"},
	{.name = "superblock", .offset = offsetof(struct create_params, superblock),
	 .type = FB_JSON_BOOL, .optional = true, .hint = "true to keep metadata on the members"},
	{.name = "uuid", .offset = offsetof(struct create_params, uuid), .type = FB_JSON_UUID,
	 .optional = true, .hint = "a UUID, e.g. \"5bd1c3a9-7e0f-4a43-9c35-1e8b1f0a6d21\""},
	{.name = "safe_read", .offset = offsetof(struct create_params, safe_read),
	 .type = FB_JSON_STRING, .optional = true, .hint = "off, verify or repair"},
};

static int parse_level(const char *s, enum raid_level *out)
{
	static const struct {
		const char *name;
		enum raid_level l;
	} t[] = {{"raid0", RAID_L0}, {"0", RAID_L0}, {"raid1", RAID_L1}, {"1", RAID_L1},
		 {"raid5f", RAID_L5}, {"5f", RAID_L5}, {"raid5", RAID_L5}, {"5", RAID_L5},
		 {"raid10", RAID_L10}, {"10", RAID_L10}};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (!strcasecmp(s, t[i].name)) {
			*out = t[i].l;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_safe_read(const char *s, enum raid_level level, int *out, struct fb_err *err)
{
	if (!s || !strcmp(s, "off"))
		*out = SAFE_READ_OFF;
	else if (!strcmp(s, "verify"))
		*out = SAFE_READ_VERIFY;
	else if (!strcmp(s, "repair"))
		*out = SAFE_READ_REPAIR;
	else {
		fb_err_set(err, "Invalid parameter 'safe_read': got \"%s\". Fix: pass off, verify or "
			   "repair", s);
		return -EINVAL;
	}
	if (*out != SAFE_READ_OFF && level == RAID_L0) {
		fb_err_set(err, "Invalid parameter 'safe_read': raid0 has no redundancy to verify or "
			   "repair from. Fix: pass \"off\", or use raid1, raid5f or raid10");
		return -EINVAL;
	}
	return 0;
}

static int rpc_create(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
		      struct fb_err *err)
{
	const struct create_params *p = pv;
	enum raid_level level;
	unsigned n = (unsigned)p->base_bdevs.n, min;
	uint32_t bs = 0;
	uint64_t total = UINT64_MAX;
	struct raid_bdev *r;
	int safe, rc;
	uint32_t strip_kb = p->strip_size_kb;

	if (!raid_plain_name(p->name)) {
		fb_err_set(err, "Invalid parameter 'name': must be 1..100 characters without quotes, "
			   "backslashes or control characters. Fix: pass e.g. \"Raid0\"");
		return -EINVAL;
	}
	if (parse_level(p->raid_level, &level)) {
		fb_err_set(err, "Invalid parameter 'raid_level': got \"%s\". Fix: pass raid0, raid1, "
			   "raid5f or raid10 (also 0, 1, 5f, 5, 10)", p->raid_level);
		return -EINVAL;
	}
	rc = parse_safe_read(p->safe_read, level, &safe, err);
	if (rc)
		return rc;
	min = level == RAID_L5 ? 3 : level == RAID_L10 ? 4 : 2;
	if (n < min || n > RAID_MAX_MEMBERS || (level == RAID_L10 && n % 2)) {
		fb_err_set(err, "Invalid parameter 'base_bdevs': %s takes %s%u to %u members, got %u. "
			   "Fix: pass %s", raid_level_name(level), level == RAID_L10 ? "an even " : "",
			   min, RAID_MAX_MEMBERS, n,
			   level == RAID_L10 ? "an even number of bdevs, at least 4" :
			   level == RAID_L5 ? "at least 3 bdevs" : "at least 2 bdevs");
		return -EINVAL;
	}
	if (strip_kb == 0) {
		if (level != RAID_L1) {
			fb_err_set(err, "Missing parameter 'strip_size_kb': %s needs a strip size. "
				   "Fix: pass a power of two in KiB, e.g. 64", raid_level_name(level));
			return -EINVAL;
		}
		strip_kb = 64;  /* RAID1: the lock and resync granularity only */
	}
	if (strip_kb & (strip_kb - 1) || strip_kb > 65536) {
		fb_err_set(err, "Invalid parameter 'strip_size_kb': must be a power of two up to "
			   "65536, got %u. Fix: pass e.g. 64", strip_kb);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!raid_plain_name(p->base_bdevs.v[i])) {
			fb_err_set(err, "Invalid parameter 'base_bdevs': member %u has an invalid name. "
				   "Fix: pass existing bdev names", i);
			return -EINVAL;
		}
		for (unsigned k = 0; k < i; k++) {
			if (!strcmp(p->base_bdevs.v[i], p->base_bdevs.v[k])) {
				fb_err_set(err, "Invalid parameter 'base_bdevs': '%s' is listed twice. "
					   "Fix: pass each member once", p->base_bdevs.v[i]);
				return -EINVAL;
			}
		}
	}
	raid_registry_lock(e);
	if (raid_find(e, p->name)) {
		raid_registry_unlock(e);
		fb_err_set(err, "raid bdev '%s' already exists. Fix: pass another name, or delete it "
			   "first with bdev_raid_delete", p->name);
		return -EEXIST;
	}
	raid_registry_unlock(e);
	r = raid_alloc(e, p->name, level, n, 0, 0);
	if (!r) {
		fb_err_set(err, "out of memory creating raid '%s'", p->name);
		return -ENOMEM;
	}
	atomic_store(&r->safe_read, safe);
	r->superblock = p->superblock;
	r->uuid = p->uuid;
	if (fb_uuid_is_null(&r->uuid))
		fb_uuid_generate(&r->uuid);
	for (unsigned i = 0; i < n; i++) {
		struct fb_bdev *b;
		struct fb_err oe;

		r->m[i].name = strdup(p->base_bdevs.v[i]);
		if (!r->m[i].name) {
			rc = -ENOMEM;
			fb_err_set(err, "out of memory");
			goto fail;
		}
		rc = raid_member_open(r, i, p->base_bdevs.v[i], &oe);
		if (rc) {
			if (rc == -ENODEV || rc == -ENOENT) {
				fb_err_set(err, "Invalid parameter 'base_bdevs': bdev '%s' does not exist. "
					   "Fix: create it first, or pass an existing bdev",
					   p->base_bdevs.v[i]);
				rc = -ENODEV;
			} else {
				fb_err_set(err, "Invalid parameter 'base_bdevs': bdev '%s' cannot be used: "
					   "%s. Fix: pass a bdev no other bdev has claimed",
					   p->base_bdevs.v[i], oe.msg);
				rc = -EINVAL;
			}
			goto fail;
		}
		b = fb_bdev_desc_get_bdev(r->m[i].desc);
		fb_bdev_get_uuid(b, &r->m[i].uuid);
		if (i == 0)
			bs = fb_bdev_get_block_size(b);
		if (fb_bdev_get_block_size(b) != bs) {
			fb_err_set(err, "Invalid parameter 'base_bdevs': '%s' has %u-byte blocks but '%s' "
				   "has %u. Fix: pass members with the same block size",
				   p->base_bdevs.v[i], fb_bdev_get_block_size(b), p->base_bdevs.v[0], bs);
			rc = -EINVAL;
			goto fail;
		}
		if (fb_bdev_get_num_blocks(b) < total)
			total = fb_bdev_get_num_blocks(b);
		atomic_store(&r->m[i].state, MEMBER_ONLINE);
	}
	if ((uint64_t)strip_kb * 1024 < bs) {
		fb_err_set(err, "Invalid parameter 'strip_size_kb': %u KiB is smaller than the %u-byte "
			   "block size. Fix: pass at least %u", strip_kb, bs, bs / 1024);
		rc = -EINVAL;
		goto fail;
	}
	r->block_size = bs;
	r->strip_blocks = (uint32_t)((uint64_t)strip_kb * 1024 / bs);
	r->data_offset = r->superblock ? raid_meta_blocks(bs, total, r->strip_blocks) : 0;
	if (total <= r->data_offset + r->strip_blocks) {
		fb_err_set(err, "Invalid parameter 'base_bdevs': members of %llu blocks are too small "
			   "for a %u KiB strip%s. Fix: pass bigger bdevs",
			   (unsigned long long)total, strip_kb,
			   r->superblock ? " after the superblock and metadata" : "");
		rc = -EINVAL;
		goto fail;
	}
	r->member_blocks = (total - r->data_offset) / r->strip_blocks * r->strip_blocks;
	r->clean = false;
	raid_registry_lock(e);
	if (raid_find(e, p->name)) {
		raid_registry_unlock(e);
		fb_err_set(err, "raid bdev '%s' already exists", p->name);
		rc = -EEXIST;
		goto fail;
	}
	raid_registry_add(r);
	raid_registry_unlock(e);
	rc = raid_assemble_register(r, true, err);
	if (rc) {
		raid_registry_lock(e);
		raid_registry_remove(r);
		raid_registry_unlock(e);
		goto fail;
	}
	fb_json_write_string(w, r->name);
	return 0;
fail:
	raid_free(r);
	return rc;
}

struct name_params {
	char *name;
};

static const struct fb_json_field name_fields[] = {
	{.name = "name", .offset = offsetof(struct name_params, name), .type = FB_JSON_STRING,
	 .hint = "a raid bdev name, e.g. \"Raid0\""},
};

static struct raid_bdev *find_or_err(struct fb_engine *e, const char *name, struct fb_err *err)
{
	struct raid_bdev *r = raid_find(e, name);

	if (!r)
		fb_err_set(err, "raid bdev '%s' does not exist. Fix: pass a name listed by "
			   "bdev_raid_get_bdevs", name);
	return r;
}

static int rpc_delete(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
		      struct fb_err *err)
{
	const struct name_params *p = pv;
	struct raid_bdev *r;
	int rc;

	raid_registry_lock(e);
	r = find_or_err(e, p->name, err);
	if (!r) {
		raid_registry_unlock(e);
		return -ENODEV;
	}
	if (!r->bdev) {
		/* Still configuring: never registered. */
		raid_registry_remove(r);
		raid_registry_unlock(e);
		raid_free(r);
		fb_json_write_bool(w, true);
		return 0;
	}
	raid_registry_unlock(e);
	rc = fb_bdev_delete(e, p->name, err);
	if (rc)
		return rc;
	fb_json_write_bool(w, true);
	return 0;
}

struct get_params {
	char *category;
};

static void get_init(void *pv)
{
	(void)pv;
}

static const struct fb_json_field get_fields[] = {
	{.name = "category", .offset = offsetof(struct get_params, category), .type = FB_JSON_STRING,
	 .optional = true, .hint = "all, online, configuring or offline"},
};

static int rpc_get(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
		   struct fb_err *err)
{
	const struct get_params *p = pv;
	const char *c = p->category ? p->category : "all";
	int want;

	if (!strcmp(c, "all"))
		want = -1;
	else if (!strcmp(c, "online"))
		want = RAID_ONLINE;
	else if (!strcmp(c, "configuring"))
		want = RAID_CONFIGURING;
	else if (!strcmp(c, "offline"))
		want = RAID_OFFLINE;
	else {
		fb_err_set(err, "Invalid parameter 'category': got \"%s\". Fix: pass all, online, "
			   "configuring or offline", c);
		return -EINVAL;
	}
	fb_json_write_array_begin(w);
	raid_registry_lock(e);
	for (struct raid_bdev *r = raid_registry_first(e); r; r = r->next) {
		if (want >= 0 && atomic_load(&r->state) != want)
			continue;
		fb_json_write_object_begin(w);
		raid_write_info(r, w);
		fb_json_write_object_end(w);
	}
	raid_registry_unlock(e);
	fb_json_write_array_end(w);
	return 0;
}

struct add_params {
	char *raid_bdev;
	char *base_bdev;
	uint64_t rebuild_rate_kb;
};

static const struct fb_json_field add_fields[] = {
	{.name = "raid_bdev", .offset = offsetof(struct add_params, raid_bdev),
	 .type = FB_JSON_STRING, .hint = "the raid bdev's name"},
	{.name = "base_bdev", .offset = offsetof(struct add_params, base_bdev),
	 .type = FB_JSON_STRING, .hint = "the replacement member's bdev name"},
	{.name = "rebuild_rate_kb", .offset = offsetof(struct add_params, rebuild_rate_kb),
	 .type = FB_JSON_U64, .optional = true, .hint = "KiB/s the rebuild may use; 0 = unlimited"},
};

static int rpc_add(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
		   struct fb_err *err)
{
	const struct add_params *p = pv;
	struct raid_bdev *r;
	struct fb_bdev *b;
	unsigned slot = RAID_MAX_MEMBERS;
	int rc;

	raid_registry_lock(e);
	r = find_or_err(e, p->raid_bdev, err);
	raid_registry_unlock(e);
	if (!r)
		return -ENODEV;
	if (r->level == RAID_L0 || !r->bdev) {
		fb_err_set(err, "raid '%s' cannot take a replacement member: %s", r->name,
			   r->level == RAID_L0 ? "raid0 has no redundancy to rebuild from" :
			   "it is not online");
		return -EINVAL;
	}
	pthread_mutex_lock(&r->ctl_mu);
	for (unsigned i = 0; i < r->n && slot == RAID_MAX_MEMBERS; i++) {
		int s = atomic_load(&r->m[i].state);

		if (s == MEMBER_FAILED || s == MEMBER_MISSING)
			slot = i;
	}
	if (slot == RAID_MAX_MEMBERS) {
		pthread_mutex_unlock(&r->ctl_mu);
		fb_err_set(err, "Invalid parameter 'raid_bdev': raid '%s' has no failed or removed "
			   "member to replace. Fix: remove one first with bdev_raid_remove_base_bdev",
			   r->name);
		return -EINVAL;
	}
	if (r->bg_active && !atomic_load(&r->bg.done)) {
		pthread_mutex_unlock(&r->ctl_mu);
		fb_err_set(err, "raid '%s' is busy with a %s. Fix: wait for it, or stop a scrub with "
			   "bdev_raid_scrub_stop", r->name, r->bg.kind == 1 ? "rebuild" : "scrub");
		return -EBUSY;
	}
	if (r->m[slot].desc)
		raid_member_detach(r, slot, MEMBER_MISSING);
	{
		char *nm = strdup(p->base_bdev), *old;

		pthread_mutex_lock(&r->info_mu);
		old = r->m[slot].name;
		r->m[slot].name = nm ? nm : old;
		pthread_mutex_unlock(&r->info_mu);
		if (nm)
			free(old);
		rc = nm ? raid_member_open(r, slot, p->base_bdev, err) : -ENOMEM;
	}
	if (rc) {
		pthread_mutex_unlock(&r->ctl_mu);
		if (rc == -ENODEV || rc == -ENOENT) {
			fb_err_set(err, "Invalid parameter 'base_bdev': bdev '%s' does not exist",
				   p->base_bdev);
			return -ENODEV;
		}
		return -EINVAL;
	}
	b = fb_bdev_desc_get_bdev(r->m[slot].desc);
	if (fb_bdev_get_block_size(b) != r->block_size ||
	    fb_bdev_get_num_blocks(b) < r->data_offset + r->member_blocks) {
		fb_err_set(err, "Invalid parameter 'base_bdev': '%s' needs %u-byte blocks and at least "
			   "%llu blocks (has %u-byte blocks, %llu). Fix: pass a matching bdev",
			   p->base_bdev, r->block_size,
			   (unsigned long long)(r->data_offset + r->member_blocks),
			   fb_bdev_get_block_size(b), (unsigned long long)fb_bdev_get_num_blocks(b));
		raid_member_close(r, slot);
		pthread_mutex_unlock(&r->ctl_mu);
		return -EINVAL;
	}
	pthread_mutex_lock(&r->info_mu);
	fb_bdev_get_uuid(b, &r->m[slot].uuid);
	pthread_mutex_unlock(&r->info_mu);
	atomic_store(&r->m[slot].rebuild_row, 0);
	atomic_store(&r->m[slot].state, MEMBER_REBUILDING);
	rc = raid_member_attach_channels(r, slot);
	if (!rc && r->superblock)
		rc = raid_sb_write_all(r, err);
	if (!rc)
		rc = raid_bg_start(r, 1, (int)slot, p->rebuild_rate_kb, err);
	pthread_mutex_unlock(&r->ctl_mu);
	if (rc)
		return rc;
	raid_notify(r, "raid_rebuild_started", "\"member\":\"%s\",\"slot\":%u", p->base_bdev, slot);
	fb_json_write_bool(w, true);
	return 0;
}

static int rpc_remove(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
		      struct fb_err *err)
{
	const struct name_params *p = pv;
	struct raid_bdev *hit = NULL;
	unsigned slot = 0;

	raid_registry_lock(e);
	for (struct raid_bdev *r = raid_registry_first(e); r && !hit; r = r->next) {
		for (unsigned i = 0; i < r->n; i++) {
			if (r->m[i].desc && r->m[i].name && !strcmp(r->m[i].name, p->name)) {
				hit = r;
				slot = i;
				break;
			}
		}
	}
	raid_registry_unlock(e);
	if (!hit) {
		fb_err_set(err, "Invalid parameter 'name': bdev '%s' is not a member of any raid. "
			   "Fix: pass a name from base_bdevs_list of bdev_raid_get_bdevs", p->name);
		return -ENODEV;
	}
	pthread_mutex_lock(&hit->ctl_mu);
	if (hit->bg_active && !atomic_load(&hit->bg.done) && hit->bg.kind == 1 &&
	    hit->bg.member == (int)slot)
		raid_bg_stop(hit);
	raid_member_detach(hit, slot, MEMBER_MISSING);
	if (hit->superblock)
		raid_sb_write_all(hit, err);
	pthread_mutex_unlock(&hit->ctl_mu);
	fb_json_write_bool(w, true);
	return 0;
}

struct safe_params {
	char *name;
	char *safe_read;
};

static const struct fb_json_field safe_fields[] = {
	{.name = "name", .offset = offsetof(struct safe_params, name), .type = FB_JSON_STRING,
	 .hint = "a raid bdev name"},
	{.name = "safe_read", .offset = offsetof(struct safe_params, safe_read),
	 .type = FB_JSON_STRING, .hint = "off, verify or repair"},
};

static int rpc_set_safe_read(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
			     struct fb_err *err)
{
	const struct safe_params *p = pv;
	struct raid_bdev *r;
	int mode, rc;

	raid_registry_lock(e);
	r = find_or_err(e, p->name, err);
	if (!r) {
		raid_registry_unlock(e);
		return -ENODEV;
	}
	rc = parse_safe_read(p->safe_read, r->level, &mode, err);
	if (!rc)
		atomic_store(&r->safe_read, mode);
	raid_registry_unlock(e);
	if (rc)
		return rc;
	if (r->superblock && r->md_started)
		raid_md_kick(r);
	fb_json_write_bool(w, true);
	return 0;
}

struct scrub_params {
	char *name;
	uint64_t rate_kb_per_sec;
};

static const struct fb_json_field scrub_fields[] = {
	{.name = "name", .offset = offsetof(struct scrub_params, name), .type = FB_JSON_STRING,
	 .hint = "a raid bdev name"},
	{.name = "rate_kb_per_sec", .offset = offsetof(struct scrub_params, rate_kb_per_sec),
	 .type = FB_JSON_U64, .optional = true, .hint = "KiB/s the scrub may read; 0 = unlimited"},
};

static int rpc_scrub_start(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
			   struct fb_err *err)
{
	const struct scrub_params *p = pv;
	struct raid_bdev *r;
	int rc;

	raid_registry_lock(e);
	r = find_or_err(e, p->name, err);
	raid_registry_unlock(e);
	if (!r)
		return -ENODEV;
	if (r->level == RAID_L0 || !r->bdev) {
		fb_err_set(err, "raid '%s' cannot be scrubbed: %s", r->name,
			   r->level == RAID_L0 ? "raid0 has no redundancy" : "it is not online");
		return -EINVAL;
	}
	pthread_mutex_lock(&r->ctl_mu);
	rc = raid_bg_start(r, 2, -1, p->rate_kb_per_sec, err);
	pthread_mutex_unlock(&r->ctl_mu);
	if (rc)
		return rc;
	fb_json_write_bool(w, true);
	return 0;
}

static int rpc_scrub_stop(struct fb_engine *e, const void *pv, struct fb_json_writer *w,
			  struct fb_err *err)
{
	const struct name_params *p = pv;
	struct raid_bdev *r;

	raid_registry_lock(e);
	r = find_or_err(e, p->name, err);
	raid_registry_unlock(e);
	if (!r)
		return -ENODEV;
	pthread_mutex_lock(&r->ctl_mu);
	if (r->bg_active && r->bg.kind == 2)
		raid_bg_stop(r);
	pthread_mutex_unlock(&r->ctl_mu);
	fb_json_write_bool(w, true);
	return 0;
}

#define M(n, f, ps, init, h) \
	{.name = n, .params = f, .nparams = FB_JSON_FIELD_COUNT(f), .params_size = sizeof(ps), \
	 .params_init = init, .handler = h}

const struct fb_rpc_method raid_rpc_methods[RAID_RPC_COUNT] = {
	M("bdev_raid_create", create_fields, struct create_params, NULL, rpc_create),
	M("bdev_raid_delete", name_fields, struct name_params, NULL, rpc_delete),
	M("bdev_raid_get_bdevs", get_fields, struct get_params, get_init, rpc_get),
	M("bdev_raid_add_base_bdev", add_fields, struct add_params, NULL, rpc_add),
	M("bdev_raid_remove_base_bdev", name_fields, struct name_params, NULL, rpc_remove),
	M("bdev_raid_set_safe_read", safe_fields, struct safe_params, NULL, rpc_set_safe_read),
	M("bdev_raid_scrub_start", scrub_fields, struct scrub_params, NULL, rpc_scrub_start),
	M("bdev_raid_scrub_stop", name_fields, struct name_params, NULL, rpc_scrub_stop),
};
