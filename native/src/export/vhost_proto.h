/* vhost-user and virtio-blk wire formats (QEMU docs/interop/vhost-user.rst,
 * virtio 1.2 §2.7 split and §2.8 packed virtqueues, §5.2 block device). Shared by the
 * export (vhost_blk*.c) and the userspace initiator (tools/fb_vhost.c).
 * Everything here is little-endian on the wire; we only build for
 * little-endian hosts (checked below), so fields are used as they are.
 */
#ifndef FLEXBSO_VHOST_PROTO_H
#define FLEXBSO_VHOST_PROTO_H

#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vhost-user-blk export assumes a little-endian host"
#endif

/* ------------------------------------------------------ vhost-user */

enum vhu_request {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_LOG_BASE = 6,
	VHU_SET_LOG_FD = 7,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_SEND_RARP = 19,
	VHU_NET_SET_MTU = 20,
	VHU_SET_BACKEND_REQ_FD = 21,
	VHU_IOTLB_MSG = 22,
	VHU_SET_VRING_ENDIAN = 23,
	VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25,
	VHU_GET_INFLIGHT_FD = 31,
	VHU_SET_INFLIGHT_FD = 32,
	VHU_RESET_DEVICE = 34,
	VHU_GET_MAX_MEM_SLOTS = 36,
	VHU_SET_STATUS = 39,
	VHU_GET_STATUS = 40,
	VHU_REQUEST_MAX = 64,
};

#define VHU_VERSION 0x1u
#define VHU_FLAG_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY (1u << 2)
#define VHU_FLAG_NEED_REPLY (1u << 3)

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
#define VHU_PF_MQ 0
#define VHU_PF_REPLY_ACK 3
#define VHU_PF_CONFIG 9
#define VHU_PF_INFLIGHT_SHMFD 12
#define VHU_PF_RESET_DEVICE 13
#define VHU_PF_STATUS 16

/* Feature bit 30: protocol features exist (and rings start disabled). */
#define VHU_F_PROTOCOL_FEATURES 30

#define VHU_MAX_FDS 8
#define VHU_MAX_MEM_REGIONS 8
#define VHU_MAX_PAYLOAD 4096u /* our cap; every message we accept is far smaller */
#define VHU_VRING_IDX_MASK 0xffu
#define VHU_VRING_NOFD (1u << 8)
#define VHU_CONFIG_MAX 256u

struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_uaddr, used_uaddr, avail_uaddr, log_gaddr;
};

struct vhu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_MEM_REGIONS];
};

struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHU_CONFIG_MAX];
};
#define VHU_CONFIG_HDR_SIZE 12u

struct vhu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding;
};

/* Inflight tracking region of one split queue (vhost-user "inflight I/O
 * tracking"): one entry per descriptor head, `inflight` set while the
 * request is between avail and a published used index. */
struct vhu_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct vhu_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vhu_inflight_desc desc[];
};

/* Inflight tracking region of one packed queue (the vhost-user spec's
 * packed layout). Each entry is a copy of one descriptor the device took;
 * a chain's entries are linked by `next` from its head entry, which holds
 * `inflight`, `counter`, `num` (entries, i.e. ring slots) and `last`.
 * Entries not in a chain form the free list from free_head. The old_*
 * fields are the last committed values (see vhost_vq.c). */
struct vhu_inflight_desc_packed {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;
	uint16_t last;
	uint16_t num;
	uint64_t counter;
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};

struct vhu_inflight_queue_packed {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[10]; /* the spec's 7, and the alignment of desc[] */
	struct vhu_inflight_desc_packed desc[];
};

/* ---------------------------------------------------- virtio (common) */

#define VIRTIO_F_NOTIFY_ON_EMPTY 24
#define VIRTIO_F_ANY_LAYOUT 27
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_USED_F_NO_NOTIFY 1u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* num entries, then used_event */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[]; /* num entries, then avail_event */
};

/* Packed virtqueues (§2.8): one descriptor ring the driver fills and the
 * device writes back; a descriptor is available when its AVAIL bit equals
 * the reader's wrap counter and its USED bit does not, used when both
 * equal the wrap counter. Event suppression structures replace the avail
 * and used rings' flags: the driver's (driver area, "avail" address in
 * SET_VRING_ADDR) says when to interrupt, the device's (device area,
 * "used" address) when to kick. */
#define VRING_PACKED_DESC_F_AVAIL (1u << 7)
#define VRING_PACKED_DESC_F_USED (1u << 15)
#define VRING_PACKED_EVENT_ENABLE 0u
#define VRING_PACKED_EVENT_DISABLE 1u
#define VRING_PACKED_EVENT_DESC 2u
#define VRING_PACKED_WRAP_BIT 15

struct vring_packed_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};

struct vring_packed_event {
	uint16_t off_wrap;  /* bits 0-14 ring offset, bit 15 wrap counter */
	uint16_t flags;     /* VRING_PACKED_EVENT_* */
};

/* Available to a reader whose wrap counter is `wrap`. */
static inline int vring_packed_avail(uint16_t flags, int wrap)
{
	return !!(flags & VRING_PACKED_DESC_F_AVAIL) == wrap && !!(flags & VRING_PACKED_DESC_F_USED) != wrap;
}

/* Written back by the device in the lap whose wrap counter is `wrap`. */
static inline int vring_packed_used(uint16_t flags, int wrap)
{
	return !!(flags & VRING_PACKED_DESC_F_AVAIL) == wrap && !!(flags & VRING_PACKED_DESC_F_USED) == wrap;
}

/* Event suppression with EVENT_IDX on a packed ring: does moving the
 * writer from (old, old_wrap) to (new, wrap) pass the other side's event
 * offset? Positions of the previous lap count num lower. */
static inline int vring_packed_need_event(uint16_t off_wrap, unsigned num, uint16_t new_pos, int wrap,
					  uint16_t old_pos, int old_wrap)
{
	int ev = off_wrap & 0x7fff, oldl = old_pos;

	if (((off_wrap >> VRING_PACKED_WRAP_BIT) & 1) != wrap)
		ev -= (int)num;
	if (old_wrap != wrap)
		oldl -= (int)num;
	return (uint16_t)(new_pos - ev - 1) < (uint16_t)(new_pos - oldl);
}

static inline uint64_t vring_avail_size(unsigned num)
{
	return 4u + 2u * (uint64_t)num + 2u;
}

static inline uint64_t vring_used_size(unsigned num)
{
	return 4u + 8u * (uint64_t)num + 2u;
}

/* virtio 1.2 §2.7.10: notify when the index passed `event` in this batch. */
static inline int vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* ---------------------------------------------------------- virtio-blk */

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_T_DISCARD 11u
#define VIRTIO_BLK_T_WRITE_ZEROES 13u

#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u

#define VIRTIO_BLK_ID_BYTES 20u
#define VIRTIO_BLK_WZ_F_UNMAP 1u
#define VIRTIO_BLK_SECTOR 512u

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct virtio_blk_discard_wz {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct virtio_blk_config {
	uint64_t capacity;          /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp, alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

_Static_assert(sizeof(struct vhu_hdr) == 12, "vhost-user header");
_Static_assert(sizeof(struct vhu_vring_addr) == 40, "vring addr");
_Static_assert(sizeof(struct vhu_mem_table) == 8 + 8 * 32, "mem table");
_Static_assert(sizeof(struct vhu_inflight) == 24, "inflight");
_Static_assert(sizeof(struct vhu_inflight_desc) == 16, "inflight desc");
_Static_assert(sizeof(struct vhu_inflight_queue) == 16, "inflight queue");
_Static_assert(sizeof(struct vhu_inflight_desc_packed) == 32, "packed inflight desc");
_Static_assert(sizeof(struct vhu_inflight_queue_packed) == 32, "packed inflight queue");
_Static_assert(sizeof(struct vring_desc) == 16, "vring desc");
_Static_assert(sizeof(struct vring_packed_desc) == 16, "packed desc");
_Static_assert(sizeof(struct vring_packed_event) == 4, "packed event");
_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "blk outhdr");
_Static_assert(sizeof(struct virtio_blk_config) == 60, "blk config");

#endif
