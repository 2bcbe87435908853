/* virtio.h: a polling virtio-mmio (version 2) driver library for CPL3 test guests. */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "guest.h"

/* Where the vmm puts virtio-mmio transports: slot i at BASE + i*STRIDE. */
#define VIRTIO_MMIO_BASE	0xc0000000UL
#define VIRTIO_MMIO_STRIDE	0x1000UL
#define VIRTIO_MMIO_SLOTS	19

/* Register offsets (virtio 1.2 §4.2.2). */
enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_CONFIG_GENERATION = 0x0fc,
	REG_CONFIG = 0x100,
};

#define MMIO_MAGIC 0x74726976	/* "virt" */

/* Device status bits (virtio 1.2 §2.1). */
enum {
	STATUS_ACKNOWLEDGE = 1,
	STATUS_DRIVER = 2,
	STATUS_DRIVER_OK = 4,
	STATUS_FEATURES_OK = 8,
	STATUS_NEEDS_RESET = 0x40,
	STATUS_FAILED = 0x80,
};

/* Device IDs (virtio 1.2 §5). */
enum {
	VIRTIO_ID_NET = 1,
	VIRTIO_ID_BLOCK = 2,
	VIRTIO_ID_RNG = 4,
	VIRTIO_ID_VSOCK = 19,
};

/* Feature bits every device type shares (virtio 1.2 §6). */
#define VIRTIO_F_INDIRECT_DESC	(1UL << 28)
#define VIRTIO_F_EVENT_IDX	(1UL << 29)
#define VIRTIO_F_VERSION_1	(1UL << 32)

/* Split virtqueue descriptor flags (virtio 1.2 §2.7.5). */
#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4

/* The largest queue this library sets up; smaller if the device says so. */
#define VQ_MAX_SIZE	256

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[];
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[];
};

struct vdev {
	u64 base;		/* guest-physical = virtual address of the registers */
	int slot;
	u32 device_id;
	u64 device_features;	/* as offered */
	u64 features;		/* as negotiated */
	const char *name;	/* for failure messages */
};

struct vq {
	struct vdev *dev;
	u16 index, size;
	volatile struct virtq_desc *desc;
	volatile struct virtq_avail *avail;
	volatile struct virtq_used *used;
	u16 free_head, num_free;
	u16 avail_idx;		/* next avail->idx we publish */
	u16 last_used;		/* next used entry we consume */
};

/* One element of a chain: a buffer the device reads (write = 0) or writes. */
struct vbuf {
	void *addr;
	u32 len;
	int write;
};

/*
 * virtio_find returns 1 and fills d for the nth device (from 0) of type
 * device_id among the slots, 0 if there is none.
 */
int virtio_find(struct vdev *d, u32 device_id, int nth, const char *name);
/* virtio_must_find is virtio_find that fails the guest when nothing is there. */
void virtio_must_find(struct vdev *d, u32 device_id, const char *name);

/*
 * virtio_start resets the device, sets ACKNOWLEDGE|DRIVER and negotiates
 * VERSION_1 plus the subset of wanted that the device offers (§3.1.1). It
 * fails the guest if FEATURES_OK does not stick. Returns the negotiated set.
 */
u64 virtio_start(struct vdev *d, u64 wanted);
/* virtio_queue sets up queue index with up to max entries (0: VQ_MAX_SIZE). */
void virtio_queue(struct vdev *d, struct vq *q, u16 index, u16 max);
/* virtio_ready sets DRIVER_OK and checks the device did not flag a failure. */
void virtio_ready(struct vdev *d);
/* virtio_reset writes 0 to Status and waits for it to read back 0. */
void virtio_reset(struct vdev *d);
u32 virtio_status(struct vdev *d);

u8 virtio_config8(struct vdev *d, u32 off);
u16 virtio_config16(struct vdev *d, u32 off);
u32 virtio_config32(struct vdev *d, u32 off);
/* virtio_config64 reads twice under ConfigGeneration (§4.2.2.2). */
u64 virtio_config64(struct vdev *d, u32 off);

/* vq_add makes bufs[0..n) one chain, publishes it and returns its head id;
 * it fails the guest when the queue has too few free descriptors. */
u16 vq_add(struct vq *q, const struct vbuf *bufs, int n);
/* vq_free_count is how many descriptors are free for vq_add. */
u16 vq_free_count(struct vq *q);
/* vq_kick notifies the device (a QueueNotify write: an ioeventfd). */
void vq_kick(struct vq *q);
/* vq_poll returns 1 and the head id and written length of the next used
 * chain (its descriptors freed), 0 when there is none yet. */
int vq_poll(struct vq *q, u16 *id, u32 *len);
/* vq_wait polls until a chain is used or WAIT_TICKS pass, then fails the
 * guest naming what it waited for. */
u16 vq_wait(struct vq *q, u32 *len, const char *what);

/* Small helpers guests share. */
static inline u64 xorshift64(u64 *s)
{
	u64 x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#define FNV_OFFSET 0xcbf29ce484222325UL

static inline u64 fnv1a(u64 h, const void *p, size_t n)
{
	const u8 *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3UL;
	return h;
}

/* Big buffers go here: not part of .bss, so crt0 (emulated CPL0) does not
 * spend time zeroing them; guest RAM starts zeroed anyway. */
#define NOINIT __attribute__((section(".bss.stack")))

#endif
