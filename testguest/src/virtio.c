/*
 * virtio.c: virtio-mmio version 2 transport and split virtqueues, driven at
 * CPL3 by polling (virtio 1.2 §4.2 and §2.7). Register accesses exit to the
 * vmm; rings live in guest RAM the device process reads and writes directly.
 */
#include "virtio.h"

/* Compiler barrier: on x86 (TSO) this is all the ordering rings need
 * between plain stores, and between the used idx load and entry loads. */
#define barrier() __asm__ volatile("" ::: "memory")

static u32 rd(struct vdev *d, u32 off)
{
	return *(volatile u32 *)(d->base + off);
}

static void wr(struct vdev *d, u32 off, u32 v)
{
	*(volatile u32 *)(d->base + off) = v;
}

int virtio_find(struct vdev *d, u32 device_id, int nth, const char *name)
{
	for (int i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
		u64 base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE;
		/* Empty slots are unmapped: reads return all-ones. */
		if (*(volatile u32 *)(base + REG_MAGIC) != MMIO_MAGIC)
			continue;
		u32 id = *(volatile u32 *)(base + REG_DEVICE_ID);
		if (id != device_id || nth-- > 0)
			continue;
		u32 version = *(volatile u32 *)(base + REG_VERSION);
		if (version != 2)
			fail("%s: slot %d at 0x%lx is virtio-mmio version %u, want 2 (virtio 1.2 §4.2.2)",
			     name, i, base, version);
		d->base = base;
		d->slot = i;
		d->device_id = id;
		d->name = name;
		d->features = d->device_features = 0;
		return 1;
	}
	return 0;
}

void virtio_must_find(struct vdev *d, u32 device_id, const char *name)
{
	if (!virtio_find(d, device_id, 0, name))
		fail("no virtio %s device (id %u) in the %d slots at 0x%lx: was the vmm started with it?",
		     name, device_id, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_BASE);
}

u32 virtio_status(struct vdev *d)
{
	return rd(d, REG_STATUS);
}

void virtio_reset(struct vdev *d)
{
	wr(d, REG_STATUS, 0);
	/* §4.2.3.1: the driver waits for Status to read 0 after a reset. */
	u64 t0 = rdtsc();
	while (rd(d, REG_STATUS) != 0) {
		if (rdtsc() - t0 > WAIT_TICKS)
			fail("%s: device status still 0x%x after reset", d->name, rd(d, REG_STATUS));
		cpu_relax();
	}
}

u64 virtio_start(struct vdev *d, u64 wanted)
{
	virtio_reset(d);
	wr(d, REG_STATUS, STATUS_ACKNOWLEDGE);
	wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);

	wr(d, REG_DEVICE_FEATURES_SEL, 0);
	u64 f = rd(d, REG_DEVICE_FEATURES);
	wr(d, REG_DEVICE_FEATURES_SEL, 1);
	f |= (u64)rd(d, REG_DEVICE_FEATURES) << 32;
	d->device_features = f;
	if (!(f & VIRTIO_F_VERSION_1))
		fail("%s: device features 0x%lx lack VIRTIO_F_VERSION_1", d->name, f);

	u64 accept = f & (wanted | VIRTIO_F_VERSION_1);
	wr(d, REG_DRIVER_FEATURES_SEL, 0);
	wr(d, REG_DRIVER_FEATURES, (u32)accept);
	wr(d, REG_DRIVER_FEATURES_SEL, 1);
	wr(d, REG_DRIVER_FEATURES, (u32)(accept >> 32));

	wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
	/* §3.1.1 step 6: re-read; a device that rejects the subset clears it. */
	u32 st = rd(d, REG_STATUS);
	if (!(st & STATUS_FEATURES_OK))
		fail("%s: device refused features 0x%lx (offered 0x%lx, status 0x%x)", d->name, accept, f, st);
	d->features = accept;
	return accept;
}

/* Rings come from a static pool; guests set up a handful of queues once. */
static u8 ring_pool[32 * 4096] __attribute__((aligned(4096))) NOINIT;
static size_t ring_used;

static void *ring_alloc(size_t n)
{
	n = (n + 4095) & ~4095UL;	/* page-aligns every area: more than §2.7 asks */
	if (ring_used + n > sizeof(ring_pool))
		fail("virtio: ring pool exhausted (%lu of %lu bytes used)", ring_used, sizeof(ring_pool));
	void *p = ring_pool + ring_used;
	ring_used += n;
	memset(p, 0, n);
	return p;
}

void virtio_queue(struct vdev *d, struct vq *q, u16 index, u16 max)
{
	wr(d, REG_QUEUE_SEL, index);
	if (rd(d, REG_QUEUE_READY))
		fail("%s: queue %u is already ready after a reset", d->name, index);
	u32 num_max = rd(d, REG_QUEUE_NUM_MAX);
	if (num_max == 0)
		fail("%s: queue %u does not exist (QueueNumMax 0)", d->name, index);
	u32 size = max ? max : VQ_MAX_SIZE;
	if (size > VQ_MAX_SIZE)
		size = VQ_MAX_SIZE;
	if (size > num_max)
		size = num_max;
	while (size & (size - 1))	/* §2.7: a power of two */
		size &= size - 1;

	q->dev = d;
	q->index = index;
	q->size = size;
	q->desc = ring_alloc(16 * size);
	q->avail = ring_alloc(6 + 2 * size);
	q->used = ring_alloc(6 + 8 * size);
	for (u16 i = 0; i < size; i++)
		q->desc[i].next = i + 1;
	q->free_head = 0;
	q->num_free = size;
	q->avail_idx = q->last_used = 0;

	wr(d, REG_QUEUE_NUM, size);
	u64 desc = (u64)q->desc, avail = (u64)q->avail, used = (u64)q->used;
	wr(d, REG_QUEUE_DESC_LOW, (u32)desc);
	wr(d, REG_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	wr(d, REG_QUEUE_DRIVER_LOW, (u32)avail);
	wr(d, REG_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	wr(d, REG_QUEUE_DEVICE_LOW, (u32)used);
	wr(d, REG_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
	wr(d, REG_QUEUE_READY, 1);
	if (rd(d, REG_QUEUE_READY) != 1)
		fail("%s: queue %u did not become ready", d->name, index);
}

void virtio_ready(struct vdev *d)
{
	wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
	u32 st = rd(d, REG_STATUS);
	if (st & (STATUS_NEEDS_RESET | STATUS_FAILED) || !(st & STATUS_DRIVER_OK))
		fail("%s: device status 0x%x after DRIVER_OK (0x40 means the device process failed; see the vmm log)",
		     d->name, st);
}

u8 virtio_config8(struct vdev *d, u32 off)
{
	return *(volatile u8 *)(d->base + REG_CONFIG + off);
}

u16 virtio_config16(struct vdev *d, u32 off)
{
	return *(volatile u16 *)(d->base + REG_CONFIG + off);
}

u32 virtio_config32(struct vdev *d, u32 off)
{
	return *(volatile u32 *)(d->base + REG_CONFIG + off);
}

u64 virtio_config64(struct vdev *d, u32 off)
{
	for (int tries = 0; tries < 100; tries++) {
		u32 gen = rd(d, REG_CONFIG_GENERATION);
		u64 v = virtio_config32(d, off) | (u64)virtio_config32(d, off + 4) << 32;
		if (rd(d, REG_CONFIG_GENERATION) == gen)
			return v;
	}
	fail("%s: config generation keeps changing while reading offset %u", d->name, off);
}

u16 vq_free_count(struct vq *q)
{
	return q->num_free;
}

u16 vq_add(struct vq *q, const struct vbuf *bufs, int n)
{
	if (n <= 0 || n > q->num_free)
		fail("%s: queue %u: chain of %d descriptors, %u free", q->dev->name, q->index, n, q->num_free);
	u16 head = q->free_head, i = head;
	for (int k = 0; k < n; k++) {
		volatile struct virtq_desc *d = &q->desc[i];
		d->addr = (u64)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (bufs[k].write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		i = d->next;
	}
	q->free_head = i;
	q->num_free -= n;
	q->avail->ring[q->avail_idx % q->size] = head;
	barrier();	/* §2.7.13: ring entry before idx */
	q->avail->idx = ++q->avail_idx;
	return head;
}

void vq_kick(struct vq *q)
{
	/* The idx store is ordered before this MMIO store on x86; the fence
	 * keeps the compiler (and any WC mapping) honest all the same. */
	__asm__ volatile("mfence" ::: "memory");
	wr(q->dev, REG_QUEUE_NOTIFY, q->index);
}

int vq_poll(struct vq *q, u16 *id, u32 *len)
{
	u16 used_idx = q->used->idx;
	if (used_idx == q->last_used)
		return 0;
	if ((u16)(used_idx - q->last_used) > q->size)
		fail("%s: queue %u: used idx jumped from %u to %u (size %u)", q->dev->name, q->index,
		     q->last_used, used_idx, q->size);
	barrier();	/* entries after idx */
	volatile struct virtq_used_elem *e = &q->used->ring[q->last_used % q->size];
	u32 head = e->id, n = e->len;
	q->last_used++;
	if (head >= q->size)
		fail("%s: queue %u: device returned descriptor id %u (size %u)", q->dev->name, q->index, head, q->size);
	/* Return the chain to the free list: walk it to its tail. */
	u16 i = head, count = 1;
	while (q->desc[i].flags & VIRTQ_DESC_F_NEXT) {
		i = q->desc[i].next;
		if (++count > q->size)
			fail("%s: queue %u: descriptor chain loops", q->dev->name, q->index);
	}
	q->desc[i].next = q->free_head;
	q->free_head = head;
	q->num_free += count;
	*id = head;
	if (len)
		*len = n;
	return 1;
}

u16 vq_wait(struct vq *q, u32 *len, const char *what)
{
	u16 id;
	u64 t0 = rdtsc();
	while (!vq_poll(q, &id, len)) {
		if (rdtsc() - t0 > WAIT_TICKS)
			fail("%s: no used buffer on queue %u after ~10 s waiting for %s (avail idx %u, used idx %u, status 0x%x)",
			     q->dev->name, q->index, what, q->avail_idx, q->used->idx, virtio_status(q->dev));
		cpu_relax();
	}
	return id;
}
