/*
 * virtio-hostile.c: a hostile driver for every virtio-mmio device the vmm
 * gives it (rng, blk, vsock, net). For each device and each attack it
 * breaks the rules of virtio 1.2 in one way (status out of order, features
 * never offered, queue sizes 0 and above the maximum, missing queues,
 * config and register accesses past the end and of odd sizes, rings on top
 * of each other and of the device's own registers, buffers outside RAM and
 * lengths near 4 GiB, descriptor loops, bad indirect tables, avail index
 * jumps, a reset with requests in flight, and per device malformed
 * requests: vsock headers, credit lies, floods and RSTs for unknown
 * streams; net frames too big, short and bogus vnet headers, GSO never
 * negotiated; blk sectors and types out of range), then resets it and does
 * one legitimate operation on every device, which must work.
 *
 * It prints "attack DEVICE NAME: survived" or "...: FAIL (why)" per attack
 * and "virtio-hostile: survived N/M" at the end, then ok only if N == M.
 * only=NAME runs the attacks whose name contains NAME.
 */
#include "virtio.h"

const char guest_name[] = "virtio-hostile";


#define RAM_END (64UL << 20)	/* the test runs the guest with --mem 64M */
#define QS 64			/* every queue this guest sets up */
#define MAXQ 3
#define MAXDEV 4
#define SHORT_WAIT (WAIT_TICKS / 2)

/* Rings: a fixed place per device and queue (descriptor table, avail and
 * used rings a page each), reused after every reset. */
static u8 ringmem[MAXDEV][MAXQ][3][4096] __attribute__((aligned(4096))) NOINIT;

struct ring {
	volatile struct virtq_desc *desc;
	volatile struct virtq_avail *avail;
	volatile struct virtq_used *used;
};

static struct ring ring_of(int dev, int q)
{
	return (struct ring){ (void *)ringmem[dev][q][0], (void *)ringmem[dev][q][1], (void *)ringmem[dev][q][2] };
}

static u8 scratch[8][4096] __attribute__((aligned(4096))) NOINIT;
static u8 bufs[MAXDEV][MAXQ][QS][256] NOINIT;
static u8 big[70000] NOINIT;

struct hdev {
	struct vdev d;
	const char *kind;
	int nq;
	int idx;
	u16 avail[MAXQ], used[MAXQ];
	u64 cid;		/* vsock */
	u32 port;		/* vsock: next local port */
	int broken;		/* set when a legitimate operation failed */
};

static struct hdev devs[MAXDEV];
static int ndev;

static volatile u32 *reg32(struct hdev *h, u32 off) { return (volatile u32 *)(h->d.base + off); }
static u32 rd(struct hdev *h, u32 off) { return *reg32(h, off); }
static void wr(struct hdev *h, u32 off, u32 v) { *reg32(h, off) = v; }

/* hreset writes 0 to Status and waits (boundedly) for it to read 0. */
static int hreset(struct hdev *h)
{
	wr(h, REG_STATUS, 0);
	for (u64 t0 = rdtsc(); rd(h, REG_STATUS) != 0;) {
		if (rdtsc() - t0 > SHORT_WAIT)
			return 0;
		cpu_relax();
	}
	return 1;
}

static void negotiate(struct hdev *h, u64 extra)
{
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
	wr(h, REG_DEVICE_FEATURES_SEL, 0);
	u64 f = rd(h, REG_DEVICE_FEATURES);
	wr(h, REG_DEVICE_FEATURES_SEL, 1);
	f |= (u64)rd(h, REG_DEVICE_FEATURES) << 32;
	h->d.device_features = f;
	u64 acc = f & (VIRTIO_F_VERSION_1 | extra);
	wr(h, REG_DRIVER_FEATURES_SEL, 0);
	wr(h, REG_DRIVER_FEATURES, (u32)acc);
	wr(h, REG_DRIVER_FEATURES_SEL, 1);
	wr(h, REG_DRIVER_FEATURES, (u32)(acc >> 32));
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
	h->d.features = acc;
}

static void set_addrs(struct hdev *h, u64 desc, u64 avail, u64 used)
{
	wr(h, REG_QUEUE_DESC_LOW, (u32)desc);
	wr(h, REG_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	wr(h, REG_QUEUE_DRIVER_LOW, (u32)avail);
	wr(h, REG_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	wr(h, REG_QUEUE_DEVICE_LOW, (u32)used);
	wr(h, REG_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
}

/* qsetup sets queue i up on its fixed rings, empty. */
static void qsetup(struct hdev *h, int i)
{
	struct ring r = ring_of(h->idx, i);
	memset(ringmem[h->idx][i], 0, sizeof(ringmem[h->idx][i]));
	h->avail[i] = h->used[i] = 0;
	wr(h, REG_QUEUE_SEL, i);
	u32 max = rd(h, REG_QUEUE_NUM_MAX);
	wr(h, REG_QUEUE_NUM, max < QS ? max : QS);
	set_addrs(h, (u64)r.desc, (u64)r.avail, (u64)r.used);
	wr(h, REG_QUEUE_READY, 1);
}

static void kick(struct hdev *h, int q)
{
	__asm__ volatile("mfence" ::: "memory");
	wr(h, REG_QUEUE_NOTIFY, q);
}

/* post publishes head on queue q (descriptors already written). */
static void post(struct hdev *h, int q, u16 head)
{
	struct ring r = ring_of(h->idx, q);
	r.avail->ring[h->avail[q] % QS] = head;
	__asm__ volatile("" ::: "memory");
	r.avail->idx = ++h->avail[q];
}

static void desc(struct hdev *h, int q, u16 i, u64 addr, u32 len, u16 flags, u16 next)
{
	volatile struct virtq_desc *d = &ring_of(h->idx, q).desc[i];
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

/* wait_used waits for the next used entry of q; 1 with its id and length. */
static int wait_used(struct hdev *h, int q, u32 *id, u32 *len)
{
	volatile struct virtq_used *u = ring_of(h->idx, q).used;
	for (u64 t0 = rdtsc(); u->idx == h->used[q];) {
		if (rdtsc() - t0 > SHORT_WAIT)
			return 0;
		cpu_relax();
	}
	volatile struct virtq_used_elem *e = &u->ring[h->used[q] % QS];
	if (id)
		*id = e->id;
	if (len)
		*len = e->len;
	h->used[q]++;
	return 1;
}

/* Device kinds: how to set one up for legitimate use, and its operation. */

struct vsock_hdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
#define VSOCK_HDR 44
enum { VSOCK_OP_REQUEST = 1, VSOCK_OP_RESPONSE = 2, VSOCK_OP_RST = 3, VSOCK_OP_SHUTDOWN = 4,
       VSOCK_OP_RW = 5, VSOCK_OP_CREDIT_UPDATE = 6, VSOCK_OP_CREDIT_REQUEST = 7 };
#define NET_HDR 12

static u8 *buf(struct hdev *h, int q, int i) { return bufs[h->idx][q][i]; }

/* vsock_rx_fill posts the rx queue's buffers (descriptors 0..QS/2). */
static void vsock_rx_fill(struct hdev *h)
{
	for (int i = 0; i < QS / 2; i++) {
		desc(h, 0, i, (u64)buf(h, 0, i), 256, VIRTQ_DESC_F_WRITE, 0);
		post(h, 0, i);
	}
	kick(h, 0);
}

/* setup resets h and makes it ready for its legitimate operation. */
static int setup(struct hdev *h, u64 extra)
{
	if (!hreset(h))
		return 0;
	negotiate(h, extra);
	if (!(rd(h, REG_STATUS) & STATUS_FEATURES_OK))
		return 0;
	for (int i = 0; i < h->nq; i++)
		qsetup(h, i);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
	if (h->d.device_id == VIRTIO_ID_VSOCK) {
		h->cid = *(volatile u32 *)(h->d.base + REG_CONFIG);
		vsock_rx_fill(h);
	}
	return (rd(h, REG_STATUS) & 0xc0) == 0;
}

static void vsock_send(struct hdev *h, u16 slot, const struct vsock_hdr *hd, u32 extra_len)
{
	u8 *b = buf(h, 1, slot);
	memcpy(b, hd, VSOCK_HDR);
	desc(h, 1, slot, (u64)b, VSOCK_HDR + extra_len, 0, 0);
	post(h, 1, slot);
}

/* legit does one operation that a working device answers. */
static int legit(struct hdev *h, char *why, size_t cap)
{
	u32 id, len;
	switch (h->d.device_id) {
	case VIRTIO_ID_RNG: {
		u8 *b = buf(h, 0, 0);
		memset(b, 0, 32);
		desc(h, 0, 0, (u64)b, 32, VIRTQ_DESC_F_WRITE, 0);
		post(h, 0, 0);
		kick(h, 0);
		if (!wait_used(h, 0, &id, &len) || id != 0 || len == 0 || len > 32) {
			format(why, cap, "no entropy (used id %u len %u)", id, len);
			return 0;
		}
		return 1;
	}
	case VIRTIO_ID_BLOCK: {
		u8 *hdr = buf(h, 0, 0), *data = buf(h, 0, 1), *data2 = buf(h, 0, 2), *st = buf(h, 0, 3);
		memset(hdr, 0, 16);	/* type IN, sector 0 */
		st[0] = 0xff;
		desc(h, 0, 0, (u64)hdr, 16, VIRTQ_DESC_F_NEXT, 1);
		desc(h, 0, 1, (u64)data, 256, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
		desc(h, 0, 2, (u64)data2, 256, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
		desc(h, 0, 3, (u64)st, 1, VIRTQ_DESC_F_WRITE, 0);
		post(h, 0, 0);
		kick(h, 0);
		if (!wait_used(h, 0, &id, &len) || id != 0 || st[0] != 0) {
			format(why, cap, "sector 0 not read (status 0x%x)", st[0]);
			return 0;
		}
		return 1;
	}
	case VIRTIO_ID_VSOCK: {
		/* A connection request to a host port nobody serves: the device
		 * answers it (RST), which is all this needs. */
		struct vsock_hdr hd = { .src_cid = h->cid, .dst_cid = 2, .src_port = h->port++, .dst_port = 9,
					.type = 1, .op = VSOCK_OP_REQUEST, .buf_alloc = 4096 };
		vsock_send(h, 0, &hd, 0);
		kick(h, 1);
		if (!wait_used(h, 1, &id, &len)) {
			format(why, cap, "tx not consumed");
			return 0;
		}
		for (;;) {
			if (!wait_used(h, 0, &id, &len) || id >= QS / 2) {
				format(why, cap, "no answer to a connection request (rx id %u)", id);
				return 0;
			}
			struct vsock_hdr *r = (struct vsock_hdr *)buf(h, 0, id);
			int mine = r->dst_port == hd.src_port && (r->op == VSOCK_OP_RST || r->op == VSOCK_OP_RESPONSE);
			post(h, 0, id);	/* the buffer goes back */
			kick(h, 0);
			if (mine)
				return 1;
		}
	}
	case VIRTIO_ID_NET: {
		u8 *b = buf(h, 1, 0);
		memset(b, 0, NET_HDR + 60);
		memset(b + NET_HDR, 0xff, 6);	/* broadcast */
		u8 src[6] = { 0x02, 0, 0, 0, 0, 0x42 };
		memcpy(b + NET_HDR + 6, src, 6);
		b[NET_HDR + 12] = 0x88;	/* local experimental ethertype */
		b[NET_HDR + 13] = 0xb5;
		desc(h, 1, 0, (u64)b, NET_HDR + 60, 0, 0);
		post(h, 1, 0);
		kick(h, 1);
		if (!wait_used(h, 1, &id, &len) || id != 0) {
			format(why, cap, "frame not sent");
			return 0;
		}
		return 1;
	}
	}
	return 0;
}

/*
 * The attacks. Each gets a device that is set up and working; what it
 * leaves behind is the device's problem.
 */

static u64 mmio_of(struct hdev *h) { return h->d.base; }

static void a_status_order(struct hdev *h)
{
	wr(h, REG_STATUS, 0);
	wr(h, REG_STATUS, STATUS_DRIVER_OK);			/* DRIVER_OK first */
	kick(h, 0);
	wr(h, REG_STATUS, STATUS_FEATURES_OK | STATUS_DRIVER_OK);	/* no ACK, no DRIVER */
	wr(h, REG_QUEUE_SEL, 0);
	wr(h, REG_QUEUE_READY, 1);
	kick(h, 0);
	wr(h, REG_STATUS, 0xff);				/* every bit */
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE);				/* and bits taken back */
	kick(h, 0);
}

static void a_features_unoffered(struct hdev *h)
{
	hreset(h);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
	for (u32 sel = 0; sel < 4; sel++) {
		wr(h, REG_DRIVER_FEATURES_SEL, sel);
		wr(h, REG_DRIVER_FEATURES, 0xffffffff);
	}
	wr(h, REG_DRIVER_FEATURES_SEL, 0xffffffff);
	wr(h, REG_DRIVER_FEATURES, 0xffffffff);
	wr(h, REG_DEVICE_FEATURES_SEL, 0xffffffff);
	(void)rd(h, REG_DEVICE_FEATURES);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
	for (int i = 0; i < h->nq; i++)
		qsetup(h, i);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
	desc(h, 0, 0, (u64)buf(h, 0, 0), 64, VIRTQ_DESC_F_WRITE, 0);
	post(h, 0, 0);
	kick(h, 0);
	/* Features changed after FEATURES_OK, and after DRIVER_OK. */
	wr(h, REG_DRIVER_FEATURES_SEL, 0);
	wr(h, REG_DRIVER_FEATURES, 0);
}

static void a_queue_sizes(struct hdev *h)
{
	static const u32 sizes[] = { 0, 3, QS * 1024, 0xffff, 0x10000, 0xffffffff };
	for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		hreset(h);
		negotiate(h, 0);
		struct ring r = ring_of(h->idx, 0);
		memset(ringmem[h->idx][0], 0, sizeof(ringmem[h->idx][0]));
		h->avail[0] = h->used[0] = 0;
		wr(h, REG_QUEUE_SEL, 0);
		wr(h, REG_QUEUE_NUM, sizes[k]);
		set_addrs(h, (u64)r.desc, (u64)r.avail, (u64)r.used);
		wr(h, REG_QUEUE_READY, 1);
		wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
		desc(h, 0, 0, (u64)buf(h, 0, 0), 64, VIRTQ_DESC_F_WRITE, 0);
		post(h, 0, 0);
		r.avail->idx = 0x8000;
		kick(h, 0);
		/* Size changed while the queue is live. */
		wr(h, REG_QUEUE_NUM, 1);
		kick(h, 0);
	}
}

static void a_missing_queues(struct hdev *h)
{
	static const u32 sels[] = { 3, 16, 1024, 0xffff, 0x10000, 0xffffffff };
	for (unsigned k = 0; k < sizeof(sels) / sizeof(sels[0]); k++) {
		wr(h, REG_QUEUE_SEL, sels[k]);
		(void)rd(h, REG_QUEUE_NUM_MAX);
		wr(h, REG_QUEUE_NUM, 8);
		set_addrs(h, (u64)scratch[0], (u64)scratch[1], (u64)scratch[2]);
		wr(h, REG_QUEUE_READY, 1);
		(void)rd(h, REG_QUEUE_READY);
		wr(h, REG_QUEUE_NOTIFY, sels[k]);
	}
	wr(h, REG_QUEUE_SEL, 0);
}

static void a_registers(struct hdev *h)
{
	volatile u8 *b8 = (volatile u8 *)h->d.base;
	/* Every offset, every size, reads and writes of read-only registers. */
	for (u32 off = 0; off < 0x100; off++) {
		(void)b8[off];
		if (off + 2 <= 0x1000)
			(void)*(volatile u16 *)(h->d.base + off);
		if ((off & 3) != 0)
			(void)*(volatile u32 *)(h->d.base + off);
	}
	for (u32 off = 0; off < 0x100; off += 4) {
		if (off == REG_STATUS || off == REG_QUEUE_NOTIFY || off == REG_QUEUE_READY)
			continue;	/* those do things; attacked elsewhere */
		b8[off + 1] = 0xa5;
		*(volatile u16 *)(h->d.base + off + 2) = 0x5a5a;
	}
	wr(h, REG_MAGIC, 0);
	wr(h, REG_VERSION, 1);
	wr(h, REG_DEVICE_ID, 0);
	wr(h, REG_QUEUE_NUM_MAX, 1);
	wr(h, REG_INTERRUPT_ACK, 0xffffffff);
	*(volatile u64 *)(h->d.base + REG_QUEUE_DESC_LOW) = 0x1234567812345678UL;	/* 8-byte access */
	(void)*(volatile u64 *)(h->d.base + REG_MAGIC);
	/* Config space: reads and writes of every size up to and past its end. */
	for (u32 off = REG_CONFIG; off < 0x1000; off += 7) {
		(void)b8[off];
		(void)*(volatile u32 *)(h->d.base + off);
		if (off + 8 <= 0x1000)
			(void)*(volatile u64 *)(h->d.base + off);
		if (off >= REG_CONFIG + 0x40) {	/* past every device's config */
			b8[off] = 0xff;
			*(volatile u32 *)(h->d.base + (off & ~3)) = 0xffffffff;
		}
	}
}

/* a_rings_overlap points the rings at each other and at the device's own
 * registers, then notifies. */
static void a_rings_overlap(struct hdev *h)
{
	u64 same = (u64)scratch[3];
	memset(scratch[3], 0, 4096);
	u64 layouts[][3] = {
		{ same, same, same },
		{ mmio_of(h), mmio_of(h), mmio_of(h) },
		{ same, same + 2, same + 4 },
		{ (u64)ringmem[h->idx][0][0], (u64)ringmem[h->idx][0][1], (u64)ringmem[h->idx][0][0] },
		{ RAM_END - 8, RAM_END - 4, RAM_END - 2 },
		{ 0xfffffffffffff000UL, 0xfffffffffffffff0UL, 0xfffffffffffffff8UL },
		{ same + 1, same + 3, same + 5 },	/* misaligned */
	};
	for (unsigned k = 0; k < sizeof(layouts) / sizeof(layouts[0]); k++) {
		hreset(h);
		negotiate(h, 0);
		wr(h, REG_QUEUE_SEL, 0);
		wr(h, REG_QUEUE_NUM, 8);
		set_addrs(h, layouts[k][0], layouts[k][1], layouts[k][2]);
		wr(h, REG_QUEUE_READY, 1);
		wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
		/* Something for the device to find in a shared page. */
		if (k == 0 || k == 2) {
			volatile u16 *w = (volatile u16 *)same;
			for (int i = 0; i < 64; i++)
				w[i] = 0x0101;
		}
		kick(h, 0);
	}
}

/* chain writes a request the device would accept, starting at descriptor 0
 * and ending with a last descriptor whose fields the attacks replace. */
static void bad_buffers_on(struct hdev *h, int q, u16 flags)
{
	static const struct { u64 addr; u32 len; } bad[] = {
		{ 0xfffffffffffff000UL, 16 },
		{ 0xffffffffffffff00UL, 0x200 },	/* addr + len wraps */
		{ 0xc0000000UL, 64 },			/* the MMIO window */
		{ RAM_END - 8, 16 },			/* straddles the end of RAM */
		{ RAM_END, 1 },
		{ 0, 0xffffffff },			/* length near 4 GiB */
		{ 0x1000, 0xfffffff0 },
		{ 0, 0 },				/* zero length */
	};
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		u16 i = k % QS;
		desc(h, q, i, bad[k].addr, bad[k].len, flags, 0);
		post(h, q, i);
	}
	/* A chain whose first buffers are fine and whose last is not. */
	desc(h, q, 10, (u64)buf(h, q, 10), 16, VIRTQ_DESC_F_NEXT | flags, 11);
	desc(h, q, 11, 0xfffffffffffff000UL, 0x2000, flags, 0);
	post(h, q, 10);
	kick(h, q);
}

static void a_bad_buffers(struct hdev *h)
{
	for (int q = 0; q < h->nq; q++) {
		bad_buffers_on(h, q, 0);
		bad_buffers_on(h, q, VIRTQ_DESC_F_WRITE);
	}
}

static void a_desc_loops(struct hdev *h)
{
	for (int q = 0; q < h->nq; q++) {
		desc(h, q, 0, (u64)buf(h, q, 0), 16, VIRTQ_DESC_F_NEXT, 0);	/* to itself */
		post(h, q, 0);
		desc(h, q, 1, (u64)buf(h, q, 1), 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
		desc(h, q, 2, (u64)buf(h, q, 2), 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
		post(h, q, 1);
		desc(h, q, 3, (u64)buf(h, q, 3), 16, VIRTQ_DESC_F_NEXT, 0xffff);	/* next past the table */
		post(h, q, 3);
		/* Every descriptor chained, the last back to the first: a chain
		 * longer than the queue. */
		for (u16 i = 4; i < QS; i++)
			desc(h, q, i, (u64)buf(h, q, i), 8, VIRTQ_DESC_F_NEXT, i + 1 < QS ? i + 1 : 4);
		post(h, q, 4);
		kick(h, q);
	}
}

static void a_indirect(struct hdev *h)
{
	hreset(h);
	negotiate(h, VIRTIO_F_INDIRECT_DESC);
	for (int i = 0; i < h->nq; i++)
		qsetup(h, i);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
	struct virtq_desc *t = (struct virtq_desc *)scratch[4];
	memset(t, 0, 4096);
	for (int i = 0; i < 256; i++) {	/* a table that loops, and nests */
		t[i].addr = (u64)scratch[5];
		t[i].len = 16;
		t[i].flags = VIRTQ_DESC_F_NEXT | (i == 7 ? VIRTQ_DESC_F_INDIRECT : 0);
		t[i].next = (i + 1) % 4;
	}
	static const struct { u64 addr; u32 len; } tables[] = {
		{ 0, 0 }, { 0, 17 }, { 0, 0xfffffff0 }, { 0, 4096 }, { 0, 16 * 200 },
		{ 0xc0000000UL, 64 }, { RAM_END - 16, 32 }, { 0xfffffffffffffff0UL, 32 },
	};
	for (int q = 0; q < h->nq; q++) {
		for (unsigned k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
			u64 a = tables[k].addr ? tables[k].addr : (u64)t;
			desc(h, q, k, a, tables[k].len, VIRTQ_DESC_F_INDIRECT | (k & 1 ? VIRTQ_DESC_F_NEXT : 0), k + 1);
			post(h, q, k);
		}
		/* INDIRECT and NEXT together on the table, and indirect with
		 * the feature not negotiated comes next (after setup). */
		kick(h, q);
	}
	hreset(h);
	negotiate(h, 0);
	for (int i = 0; i < h->nq; i++)
		qsetup(h, i);
	wr(h, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
	desc(h, 0, 0, (u64)t, 64, VIRTQ_DESC_F_INDIRECT, 0);
	post(h, 0, 0);
	kick(h, 0);
}

static void a_avail_jumps(struct hdev *h)
{
	for (int q = 0; q < h->nq; q++) {
		struct ring r = ring_of(h->idx, q);
		for (int i = 0; i <= QS; i++)
			r.avail->ring[i % QS] = 0xffff - i;	/* heads past the table */
		r.avail->idx = h->avail[q] + QS + 1;	/* more than the queue holds */
		kick(h, q);
		r.avail->idx = h->avail[q] + 0x8000;
		kick(h, q);
		r.avail->idx = h->avail[q] - 1;		/* backwards */
		kick(h, q);
		r.used->idx = 0x7777;			/* the driver scribbles on used */
		kick(h, q);
	}
}

static void a_reset_inflight(struct hdev *h)
{
	for (int round = 0; round < 8; round++) {
		for (int q = 0; q < h->nq; q++) {
			for (u16 i = 0; i < QS; i++) {
				desc(h, q, i, (u64)buf(h, q, i), 256, q == 1 && h->d.device_id != VIRTIO_ID_RNG ? 0 : VIRTQ_DESC_F_WRITE, 0);
				post(h, q, i);
			}
			kick(h, q);
		}
		wr(h, REG_STATUS, 0);	/* without waiting for anything */
		setup(h, 0);
	}
}

/* Device-specific malformed requests. */
static void a_device_requests(struct hdev *h)
{
	switch (h->d.device_id) {
	case VIRTIO_ID_VSOCK: {
		struct vsock_hdr base = { .src_cid = h->cid, .dst_cid = 2, .src_port = 7000, .dst_port = 9,
					  .type = 1, .op = VSOCK_OP_REQUEST, .buf_alloc = 4096 };
		struct vsock_hdr v[16];
		for (int i = 0; i < 16; i++)
			v[i] = base;
		v[0].len = 0xffffffff;			/* longer than the buffer */
		v[1].type = 99;				/* unknown type */
		v[2].op = 99;				/* unknown op */
		v[3].dst_cid = 0xffffffffffffffffUL;	/* nobody */
		v[4].src_cid = 77;			/* not our cid */
		v[5].op = VSOCK_OP_RST;			/* for a stream that never was */
		v[6].op = VSOCK_OP_RW, v[6].len = 200;	/* data on no stream */
		v[7].op = VSOCK_OP_CREDIT_UPDATE, v[7].buf_alloc = 0xffffffff, v[7].fwd_cnt = 0xfffffff0;
		v[8].op = VSOCK_OP_CREDIT_REQUEST;
		v[9].op = VSOCK_OP_SHUTDOWN, v[9].flags = 0xffffffff;
		v[10].op = VSOCK_OP_RESPONSE;		/* to nothing asked */
		v[11].buf_alloc = 0, v[11].fwd_cnt = 0xffffffff;	/* credit lies on a request */
		v[12].src_port = 0xffffffff, v[12].dst_port = 0xffffffff;
		v[13].dst_cid = h->cid;			/* to itself */
		v[14].type = 2;				/* seqpacket, never negotiated */
		v[15].len = 100;			/* a request with a payload */
		for (int i = 0; i < 16; i++)
			vsock_send(h, i, &v[i], v[i].op == VSOCK_OP_RW ? 200 : 0);
		/* A header cut short, and one split over two descriptors. */
		desc(h, 1, 16, (u64)buf(h, 1, 16), 10, 0, 0);
		post(h, 1, 16);
		memcpy(buf(h, 1, 17), &base, VSOCK_HDR);
		desc(h, 1, 17, (u64)buf(h, 1, 17), 1, VIRTQ_DESC_F_NEXT, 18);
		desc(h, 1, 18, (u64)buf(h, 1, 17) + 1, VSOCK_HDR - 1, 0, 0);
		post(h, 1, 17);
		kick(h, 1);
		/* A flood of connection requests, without reading the answers. */
		for (int round = 0; round < 8; round++) {
			for (int i = 20; i < QS; i++) {
				struct vsock_hdr f = base;
				f.src_port = 10000 + round * QS + i;
				f.dst_port = 1000 + i;
				vsock_send(h, i, &f, 0);
			}
			kick(h, 1);
		}
		break;
	}
	case VIRTIO_ID_NET: {
		/* A frame bigger than any MTU, over many descriptors. */
		memset(big, 0xab, sizeof(big));
		memset(big, 0, NET_HDR);
		for (int i = 0; i < 20; i++)
			desc(h, 1, i, (u64)big + i * 3500, 3500, i < 19 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
		post(h, 1, 0);
		/* A header shorter than a vnet header, and a header alone. */
		desc(h, 1, 20, (u64)buf(h, 1, 20), 6, 0, 0);
		post(h, 1, 20);
		desc(h, 1, 21, (u64)buf(h, 1, 21), NET_HDR, 0, 0);
		post(h, 1, 21);
		/* GSO and checksum offload never negotiated, with bogus offsets. */
		for (int i = 22; i < 30; i++) {
			u8 *b = buf(h, 1, i);
			memset(b, 0, 128);
			b[0] = 0xff;			/* flags: NEEDS_CSUM and more */
			b[1] = (u8)(i - 21);		/* gso_type TCPV4, UDP, TCPV6, ECN... */
			*(u16 *)(b + 2) = 0xffff;	/* hdr_len */
			*(u16 *)(b + 4) = i & 1 ? 0 : 0xffff;	/* gso_size */
			*(u16 *)(b + 6) = 0xfff0;	/* csum_start */
			*(u16 *)(b + 8) = 0xfff0;	/* csum_offset */
			*(u16 *)(b + 10) = 0xffff;	/* num_buffers */
			desc(h, 1, i, (u64)b, 128, 0, 0);
			post(h, 1, i);
		}
		kick(h, 1);
		/* Receive buffers too small for a header. */
		for (int i = 0; i < 8; i++) {
			desc(h, 0, i, (u64)buf(h, 0, i), i, VIRTQ_DESC_F_WRITE, 0);
			post(h, 0, i);
		}
		kick(h, 0);
		break;
	}
	case VIRTIO_ID_BLOCK: {
		static const struct { u32 type; u64 sector; u32 len; } reqs[] = {
			{ 0, 0xffffffffffffffffUL, 512 },	/* read far past the end */
			{ 1, 0x7fffffffffffffffUL, 512 },	/* write far past the end */
			{ 0, 0, 100 },				/* not a multiple of 512 */
			{ 99, 0, 512 },				/* unknown type */
			{ 8, 0, 512 },				/* GET_ID with a short buffer */
			{ 11, 0, 16 },				/* WRITE_ZEROES, never negotiated */
			{ 13, 0, 16 },				/* DISCARD likewise */
			{ 4, 0, 0 },				/* FLUSH */
		};
		for (unsigned k = 0; k < sizeof(reqs) / sizeof(reqs[0]); k++) {
			u16 d0 = k * 3;
			u8 *hd = buf(h, 0, d0), *data = buf(h, 0, d0 + 1), *st = buf(h, 0, d0 + 2);
			memset(hd, 0, 16);
			*(u32 *)hd = reqs[k].type;
			*(u64 *)(hd + 8) = reqs[k].sector;
			desc(h, 0, d0, (u64)hd, 16, VIRTQ_DESC_F_NEXT, d0 + 1);
			desc(h, 0, d0 + 1, (u64)data, reqs[k].len ? reqs[k].len : 1,
			     VIRTQ_DESC_F_NEXT | (reqs[k].type == 1 ? 0 : VIRTQ_DESC_F_WRITE), d0 + 2);
			desc(h, 0, d0 + 2, (u64)st, 1, VIRTQ_DESC_F_WRITE, 0);
			post(h, 0, d0);
		}
		/* A header that is writable, and a status that is read-only. */
		desc(h, 0, 40, (u64)buf(h, 0, 40), 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 41);
		desc(h, 0, 41, (u64)buf(h, 0, 41), 1, 0, 0);
		post(h, 0, 40);
		kick(h, 0);
		break;
	}
	case VIRTIO_ID_RNG:
		/* A buffer the device may only read, and zero-length ones. */
		desc(h, 0, 0, (u64)buf(h, 0, 0), 64, 0, 0);
		post(h, 0, 0);
		desc(h, 0, 1, (u64)buf(h, 0, 1), 0, VIRTQ_DESC_F_WRITE, 0);
		post(h, 0, 1);
		desc(h, 0, 2, (u64)big, sizeof(big), VIRTQ_DESC_F_WRITE, 0);	/* a big ask */
		post(h, 0, 2);
		kick(h, 0);
		break;
	}
}

static const struct {
	const char *name;
	void (*run)(struct hdev *);
} attacks[] = {
	{ "status-order", a_status_order },
	{ "features-unoffered", a_features_unoffered },
	{ "queue-sizes", a_queue_sizes },
	{ "missing-queues", a_missing_queues },
	{ "registers", a_registers },
	{ "rings-overlap", a_rings_overlap },
	{ "bad-buffers", a_bad_buffers },
	{ "descriptor-loops", a_desc_loops },
	{ "indirect", a_indirect },
	{ "avail-jumps", a_avail_jumps },
	{ "reset-inflight", a_reset_inflight },
	{ "device-requests", a_device_requests },
};

static int contains(const char *s, const char *sub)
{
	size_t n = strlen(sub);
	for (; *s; s++)
		if (!memcmp(s, sub, n))
			return 1;
	return n == 0;
}

static void add(u32 id, const char *kind, int nq)
{
	for (int nth = 0; ndev < MAXDEV; nth++) {
		struct hdev *h = &devs[ndev];
		if (!virtio_find(&h->d, id, nth, kind))
			return;
		h->kind = kind;
		h->nq = nq;
		h->idx = ndev;
		h->port = 50000;
		ndev++;
	}
}

int main(void)
{
	print("virtio-hostile: start\n");
	add(VIRTIO_ID_RNG, "rng", 1);
	add(VIRTIO_ID_BLOCK, "blk", 1);
	add(VIRTIO_ID_VSOCK, "vsock", 3);
	add(VIRTIO_ID_NET, "net", 2);
	if (ndev == 0)
		fail("no virtio device to attack: start the vmm with --rng, --disk, --vsock or --net");
	char only[32] = "";
	cmdline_get("only", only, sizeof(only));
	char why[96];
	for (int i = 0; i < ndev; i++) {
		if (!setup(&devs[i], 0) || !legit(&devs[i], why, sizeof(why)))
			fail("%s (slot %d) does not work before any attack: %s", devs[i].kind, devs[i].d.slot, why);
		printf("virtio-hostile: %s at slot %d works\n", devs[i].kind, devs[i].d.slot);
	}
	int total = 0, survived = 0;
	for (int i = 0; i < ndev; i++) {
		struct hdev *h = &devs[i];
		for (unsigned a = 0; a < sizeof(attacks) / sizeof(attacks[0]); a++) {
			if (!contains(attacks[a].name, only))
				continue;
			total++;
			attacks[a].run(h);
			/* The victim is reset and set up again; every device must
			 * then do its job. */
			why[0] = 0;
			int ok = setup(h, 0);
			if (!ok)
				format(why, sizeof(why), "%s did not reset (status 0x%x)", h->kind, rd(h, REG_STATUS));
			for (int j = 0; ok && j < ndev; j++) {
				char w[80];
				if (!legit(&devs[j], w, sizeof(w))) {
					ok = 0;
					format(why, sizeof(why), "%s afterwards: %s", devs[j].kind, w);
				}
			}
			if (ok) {
				survived++;
				printf("attack %s %s: survived\n", h->kind, attacks[a].name);
			} else {
				printf("attack %s %s: FAIL (%s)\n", h->kind, attacks[a].name, why);
				for (int j = 0; j < ndev; j++)	/* start the next attack clean */
					setup(&devs[j], 0);
			}
		}
	}
	printf("virtio-hostile: survived %d/%d\n", survived, total);
	if (survived != total)
		fail("%d of %d attacks left a device broken", total - survived, total);
	print("virtio-hostile: ok\n");
	return 0;
}
