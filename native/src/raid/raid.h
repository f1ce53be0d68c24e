/* RAID bdev module internals (levels 0, 1, 5, 10) shared by src/raid. Not a
 * public header: the module's only interface is its RPC methods.
 *
 * Geometry. Every member has the same layout: a metadata region (superblock,
 * write-intent bitmap, per-block CRC32C table) then member_blocks data
 * blocks, cut in strips of strip_blocks. A "row" is one strip on every
 * member; every array I/O touches one row (the core splits on the row's
 * data size, optimal_io_boundary), so each I/O has one stripe lock key.
 *   RAID0: data strips of a row over all members.
 *   RAID1: every member holds the row (a mirror group of all members).
 *   RAID10: members pair up (0,1) (2,3)...; strips rotate over the pairs.
 *   RAID5: n-1 data strips and one parity strip per row; parity rotates
 *   left-symmetric (md's default, SPDK raid5f's): row r has parity on member
 *   n-1 - r%n and its data strips start on the member after the parity.
 *
 * Stripe serialization: an array-wide lock table (stripe_lock.c) keyed by
 * row. A write, a degraded or verifying read, a rebuild or scrub step each
 * hold their row for their whole read-compute-write; waiters are woken by a
 * message to their own reactor, so I/O never leaves the reactor it was
 * submitted on and no reactor blocks. Routing each row to one owner reactor
 * would need channels and completions to cross threads for every I/O; the
 * lock table costs one uncontended lock per write.
 */
#ifndef FB_RAID_H
#define FB_RAID_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "flexbso/bdev_module.h"

#define RAID_MAX_MEMBERS 32
#define RAID_CHILD_IOV 8          /* iovecs per child I/O before bouncing */
#define RAID_LOCK_SLOTS 1024
#define RAID_META_PAGE 4096       /* superblock and bitmap unit (bytes) */
#define RAID_BITMAP_BITS (RAID_META_PAGE * 8)
#define RAID_DATA_ALIGN (1024 * 1024) /* data starts on a 1 MiB boundary */
/* Children at least this large go to their member's home reactor. */
#define RAID_SPREAD_MIN_BYTES (32 * 1024)

enum raid_level { RAID_L0 = 0, RAID_L1 = 1, RAID_L5 = 5, RAID_L10 = 10 };
enum raid_safe_read { SAFE_READ_OFF = 0, SAFE_READ_VERIFY, SAFE_READ_REPAIR };
enum member_state {
	MEMBER_ONLINE = 0,
	MEMBER_FAILED,      /* I/O error or hot-removed: no I/O goes to it */
	MEMBER_MISSING,     /* slot empty (removed, or not found at assembly) */
	MEMBER_REBUILDING,  /* replacement: rows below rebuild_row are in sync */
};
enum raid_state { RAID_ONLINE = 0, RAID_CONFIGURING, RAID_OFFLINE };

struct raid_bdev;

/* One lock waiter (embedded in the per-I/O context or a background job). */
struct raid_lock_waiter {
	struct raid_lock_waiter *next;
	struct fb_reactor *r;
	uint64_t key;
	void (*granted)(struct raid_lock_waiter *w);
	struct fb_deferred d;  /* runs granted on r */
};

struct raid_lock_slot {
	pthread_spinlock_t mu;  /* held for a few instructions only */
	bool held;
	uint64_t key;           /* valid while held */
	struct raid_lock_waiter *head, *tail;
};

struct raid_member {
	char *name;
	struct fb_uuid uuid;
	struct fb_bdev_desc *desc;          /* NULL when missing */
	_Atomic int state;                  /* enum member_state */
	_Atomic uint64_t rebuild_row;       /* REBUILDING: rows below are in sync */
	_Atomic uint32_t *crc;              /* CRC32C per member data block */
	_Atomic uint64_t io_errors, corrupt_found, repaired, mismatches;
	_Atomic uint32_t inflight;          /* children sent and not completed */
	int sb_state;                       /* state the newest superblock records */
};

/* Background walk over all rows (bg.c): rebuild or scrub. */
struct raid_bg_io {
	struct raid_bdev *r;
	unsigned member;
	int status;                     /* 1 while in flight */
	bool note;                      /* scrub repair write: note it when done */
	int64_t bad;                    /* with note: first bad block in the strip, or -1 */
	enum fb_io_type type;
	struct iovec iov;
	struct fb_io_wait_entry wait;   /* -ENOMEM from the member */
};

/* Walk state; touched on reactor 0 only while the walk runs (bg.c). */
struct raid_bg_walk {
	uint8_t *buf;                   /* one strip per member */
	uint64_t row;
	unsigned group;                 /* mirror group within the row */
	unsigned outstanding;
	void (*after)(struct raid_bdev *r);  /* when outstanding reaches 0 */
	struct raid_bg_io io[RAID_MAX_MEMBERS];
	unsigned nio;
	struct raid_lock_waiter lw;
	struct fb_timer pace;           /* rate limit */
	struct fb_deferred next;        /* next row without recursion */
	uint64_t start_ns, bytes;
	unsigned last_pct;
	unsigned rb_lost;               /* RAID5 rebuild: the strip rebuilt */
};

struct raid_bg {
	int kind;                       /* 0 none, 1 rebuild, 2 scrub */
	_Atomic bool stop;
	_Atomic uint64_t row;           /* next row */
	uint64_t rate_kbps;             /* 0 = unlimited */
	int member;                     /* rebuild target */
	_Atomic uint64_t found, repaired;
	_Atomic bool done;
	int result;
	struct raid_bg_walk w;
};

struct raid_bdev {
	struct fb_engine *e;
	char *name;
	struct fb_uuid uuid;
	enum raid_level level;
	unsigned n;                     /* member slots */
	unsigned ncopies;               /* mirror copies per strip: 1, n or 2 */
	unsigned ngroups;               /* mirror groups per row (RAID0: n, RAID10: n/2) */
	uint32_t strip_blocks;          /* array blocks per strip */
	uint32_t block_size;
	uint64_t data_offset;           /* member blocks before data */
	uint64_t member_blocks;         /* data blocks per member (whole strips) */
	uint64_t rows;
	uint64_t num_blocks;
	bool superblock;
	_Atomic int safe_read;          /* enum raid_safe_read */
	_Atomic int state;              /* enum raid_state */
	uint64_t generation;
	bool clean;                     /* superblock said clean at assembly */
	struct raid_member m[RAID_MAX_MEMBERS];
	struct fb_bdev *bdev;           /* registered array (NULL while configuring) */
	/* Member channels on reactor 0, for the bitmap owner and background
	 * walks (touched only on reactor 0, set up by control threads). */
	struct fb_io_channel *r0ch[RAID_MAX_MEMBERS];
	/* Member channels on each member's home reactor. RAM (and fast)
	 * members are CPU bound: one reactor copying for every member caps a
	 * row at one core, so large children (with their CRC and parity
	 * work) run on the member's home reactor, members in parallel. Set
	 * and cleared with r0ch, on the home reactor. */
	struct fb_reactor *home[RAID_MAX_MEMBERS];
	struct fb_io_channel *hch[RAID_MAX_MEMBERS];
	struct raid_lock_slot locks[RAID_LOCK_SLOTS];
	uint32_t zero_crc;              /* CRC32C of a zeroed block */

	/* Write-intent bitmap: bit per region of region_rows rows. */
	uint64_t region_rows;
	uint64_t nregions;
	_Atomic uint8_t *bm_dirty;      /* bit set in memory and on disk */
	_Atomic uint32_t *bm_inflight;  /* writes in flight per region */
	struct raid_bm_owner *bm;       /* reactor 0 side (bitmap.c) */

	/* Counters for bdev_raid_get_bdevs. */
	_Atomic uint64_t verify_mismatches, repairs, degraded_reads, bitmap_writes;

	/* Metadata thread: superblock updates requested from reactors. */
	pthread_t md_thread;
	bool md_started;
	pthread_mutex_t md_mu;
	pthread_cond_t md_cv;
	bool md_sb_dirty, md_stop;
	bool md_rebuilt;                /* a rebuild's walk ended: store its CRCs, finish */

	pthread_mutex_t ctl_mu;         /* control-path changes (members, bg) */
	/* Guards what bdev_raid_get_bdevs / driver_specific read and control
	 * paths change (generation, member names and uuids, the walk's kind
	 * and target); held for a few stores, never across a call out, so
	 * info dumps under any engine lock cannot deadlock with ctl_mu. */
	pthread_mutex_t info_mu;
	struct raid_bg bg;
	bool bg_active;                 /* a walk started and not yet waited for */
	struct raid_bdev *next;         /* module registry */
};

/* Per-channel context: the channel of every member on this reactor. */
struct raid_channel {
	struct fb_io_channel *ch[RAID_MAX_MEMBERS];
};

/* ---------------------------------------------------------- geometry */

/* Where one array block range inside a row lives. */
struct raid_loc {
	uint64_t row;
	unsigned group;                 /* mirror group (RAID0/1/10) */
	uint64_t member_off;            /* member data block of the range start */
};

static inline unsigned raid_ndata(const struct raid_bdev *r)
{
	return r->level == RAID_L5 ? r->n - 1 : r->ngroups;
}
/* Array blocks per row (the split boundary). */
static inline uint64_t raid_row_blocks(const struct raid_bdev *r)
{
	return (uint64_t)r->strip_blocks * raid_ndata(r);
}
/* Array blocks one I/O may span (the core splits on it): a RAID5 row's
 * data, or one strip for the mirror levels (one mirror group per I/O). The
 * I/O's lock key is its index in these units. */
static inline uint64_t raid_io_boundary(const struct raid_bdev *r)
{
	return r->level == RAID_L5 ? raid_row_blocks(r) : r->strip_blocks;
}
static inline unsigned raid5_parity_member(const struct raid_bdev *r, uint64_t row)
{
	return r->n - 1 - (unsigned)(row % r->n);
}
/* RAID5: the member holding data strip k (0..n-2) of row. */
static inline unsigned raid5_data_member(const struct raid_bdev *r, uint64_t row, unsigned k)
{
	return (raid5_parity_member(r, row) + 1 + k) % r->n;
}

/* The array block that block `so` of member i's strip in row (mirror
 * group `group`) holds; false for a RAID5 parity strip, which holds none. */
static inline bool raid_array_lba(const struct raid_bdev *r, uint64_t row, unsigned group, unsigned i,
				  uint64_t so, uint64_t *lba)
{
	uint64_t s = r->strip_blocks;

	if (r->level != RAID_L5) {
		*lba = (row * r->ngroups + group) * s + so;
		return true;
	}
	if (i == raid5_parity_member(r, row))
		return false;
	*lba = row * (r->n - 1) * s + (uint64_t)((i + r->n - raid5_parity_member(r, row) - 1) % r->n) * s + so;
	return true;
}

/* A member slot can take I/O for row. */
static inline bool raid_member_usable(struct raid_bdev *r, unsigned i, uint64_t row)
{
	int s = atomic_load_explicit(&r->m[i].state, memory_order_acquire);

	if (s == MEMBER_ONLINE)
		return true;
	return s == MEMBER_REBUILDING &&
	       row < atomic_load_explicit(&r->m[i].rebuild_row, memory_order_acquire);
}
/* A member slot must be written for row (online, or rebuilding and the
 * rebuild has passed or holds it). */
static inline bool raid_member_writable(struct raid_bdev *r, unsigned i, uint64_t row)
{
	return raid_member_usable(r, i, row);
}

/* ---------------------------------------------------------- per-I/O */

struct raid_child {
	struct raid_io *rio;
	unsigned member;
	enum fb_io_type type;
	uint64_t off;                   /* member block (absolute, data_offset added) */
	uint64_t num;
	uint32_t flags;
	struct iovec iov[RAID_CHILD_IOV];
	int iovcnt;
	int status;
	/* Work on the child's data that may run on the member's home reactor
	 * just before it is sent (CRCs, parity); NULL for none. */
	void (*prep)(struct raid_child *c);
	struct fb_reactor *origin;      /* reactor of the array I/O */
	struct fb_msg_node msg;         /* to the home reactor and back */
	struct fb_io_wait_entry wait;   /* -ENOMEM on the home reactor */
};

struct raid_io {
	struct fb_bdev_io *io;          /* the array I/O */
	struct fb_io_channel *ch;       /* array channel */
	struct raid_bdev *r;
	struct raid_lock_waiter lw;
	struct fb_io_wait_entry wait;
	uint64_t row;
	uint64_t off_in_row;            /* array blocks from the row start */
	uint64_t num;
	unsigned nchild, next_child, outstanding;
	unsigned attempt;               /* mirror reads: copies tried */
	bool locked, bm_held;
	uint64_t region;
	void (*after)(struct raid_io *rio); /* runs when every child has completed */
	void *buf;                      /* scratch */
	size_t buf_len;
	uint64_t col_lo, col_hi;        /* RAID5: strip offset range worked on */
	unsigned touched_lo, touched_hi;/* RAID5: data strips written [lo, hi] */
	struct raid_io *bm_next;        /* bitmap owner's waiting list */
	void *xsrc[RAID_MAX_MEMBERS];   /* RAID5 full row: data strips, for the parity prep */
	struct raid_child c[RAID_MAX_MEMBERS * 2];
};

/* raid.c */
struct raid_module;
void raid_member_fail(struct raid_bdev *r, unsigned i, const char *why);
/* Array and member names go into notification JSON as they are: 1..100
 * characters, no quotes, backslashes or control characters. */
bool raid_plain_name(const char *s);
/* Every block still readable after the members lost so far. */
bool raid_data_available(struct raid_bdev *r);
void raid_notify(struct raid_bdev *r, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void raid_io_finish(struct raid_io *rio, int status);
/* Adds a child and returns it (fields after member are the caller's). */
struct raid_child *raid_child_add(struct raid_io *rio, unsigned member, enum fb_io_type type,
				  uint64_t member_data_off, uint64_t num);
/* Starts every child not yet started; rio->after runs when all are done. */
void raid_children_run(struct raid_io *rio);
void *raid_scratch_get(struct raid_io *rio, size_t len);
void raid_scratch_put(struct raid_io *rio);
/* Lock the row of rio, then run next. */
void raid_io_lock(struct raid_io *rio, void (*next)(struct raid_io *rio));
void raid_io_unlock(struct raid_io *rio);
uint32_t raid_crc_block(const void *buf, uint32_t len);
/* CRC bookkeeping for a member range whose new content is in iov. */
void raid_crc_update_iov(struct raid_bdev *r, unsigned member, uint64_t member_data_off,
			 uint64_t num, const struct iovec *iov, int iovcnt);
/* Index of the first block in [off, off+num) of member whose data in iov
 * does not match its CRC, or -1. */
int64_t raid_crc_check_iov(struct raid_bdev *r, unsigned member, uint64_t member_data_off,
			   uint64_t num, const struct iovec *iov, int iovcnt);

/* stripe_lock.c */
void raid_locks_init(struct raid_bdev *r);
void raid_locks_fini(struct raid_bdev *r);
/* Grants at once (returns true, granted not called) or queues w. */
bool raid_lock_try(struct raid_bdev *r, struct raid_lock_waiter *w);
void raid_lock_release(struct raid_bdev *r, uint64_t key);

/* mirror.c (RAID0, 1, 10) and raid5.c */
void raid_mirror_submit(struct raid_io *rio);
void raid5_submit(struct raid_io *rio);

/* superblock.c */
struct raid_sb_member {
	struct fb_uuid uuid;
	uint32_t state;
};
int raid_sb_write_all(struct raid_bdev *r, struct fb_err *err);
void raid_sb_examine(struct fb_engine *e, struct fb_bdev *bdev);
uint64_t raid_meta_blocks(uint32_t block_size, uint64_t member_total_blocks,
			  uint32_t strip_blocks);
uint64_t raid_crc_offset_blocks(const struct raid_bdev *r);

/* bitmap.c: write-intent (RAID1, 5, 10 with a superblock). */
int raid_bm_init(struct raid_bdev *r);
void raid_bm_fini(struct raid_bdev *r);
/* Marks rio's region dirty (on disk) and then runs next; no-op when the
 * array has no bitmap. raid_bm_end when the write is done. */
void raid_bm_begin(struct raid_io *rio, void (*next)(struct raid_io *rio));
void raid_bm_end(struct raid_io *rio);
void raid_bm_start(struct raid_bdev *r);
void raid_bm_stop(struct raid_bdev *r);
/* Control thread: writes the CRC table and the bitmap (all clear) of every
 * online member: a clean shutdown. */
int raid_bm_flush_all(struct raid_bdev *r, bool clear);
/* Control thread at assembly: resync the dirty regions (parity or copies
 * from the first usable member), recompute their CRCs. */
int raid_bm_resync(struct raid_bdev *r, uint64_t *regions, struct fb_err *err);
int raid_crc_load(struct raid_bdev *r, unsigned i);
int raid_crc_store(struct raid_bdev *r, unsigned i);

/* bg.c: walks run on reactor 0 (lock waits, member I/O, a timer for the
 * rate limit); a rebuild's end (CRC table store) on the metadata thread. */
void raid_bg_rebuild_finish(struct raid_bdev *r);
int raid_bg_start(struct raid_bdev *r, int kind, int member, uint64_t rate_kbps,
		  struct fb_err *err);
void raid_bg_stop(struct raid_bdev *r);
void raid_bg_join(struct raid_bdev *r);

/* registry (raid.c) */
struct raid_bdev *raid_find(struct fb_engine *e, const char *name);
int raid_assemble_register(struct raid_bdev *r, bool fresh, struct fb_err *err);
struct raid_bdev *raid_alloc(struct fb_engine *e, const char *name, enum raid_level level,
			     unsigned n, uint32_t strip_blocks, uint32_t block_size);
void raid_free(struct raid_bdev *r);
void raid_registry_add(struct raid_bdev *r);
void raid_registry_remove(struct raid_bdev *r);
void raid_registry_lock(struct fb_engine *e);
void raid_registry_unlock(struct fb_engine *e);
struct raid_bdev *raid_registry_first(struct fb_engine *e);
int raid_member_open(struct raid_bdev *r, unsigned i, const char *bdev_name, struct fb_err *err);
void raid_member_close(struct raid_bdev *r, unsigned i);
extern const struct fb_bdev_module raid_module;
const char *raid_level_name(enum raid_level l);
const char *raid_member_state_name(int s);
int raid_member_attach_channels(struct raid_bdev *r, unsigned i);
void raid_member_detach(struct raid_bdev *r, unsigned i, int new_state);
void raid_write_info(struct raid_bdev *r, struct fb_json_writer *w);
void raid_md_kick(struct raid_bdev *r);

#endif
