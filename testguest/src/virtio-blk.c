/*
 * virtio-blk.c: writes a seeded pattern to sectors 0..sectors-1 (sectors=,
 * default 256; seed=, default 1), flushes, reads it back and compares; then
 * checks that a read past the end is IOERR, an unknown request UNSUPP, and
 * prints the device's GET_ID string. On a read-only disk it checks that
 * every write is IOERR and prints the checksum of what it reads instead.
 * With bench=1 it runs throughput phases instead (see bench()).
 * Requests and statuses: virtio 1.2 §5.2.6.
 */
#include "virtio.h"

const char guest_name[] = "virtio-blk";

#define BLK_F_SIZE_MAX	(1UL << 1)
#define BLK_F_SEG_MAX	(1UL << 2)
#define BLK_F_RO	(1UL << 5)
#define BLK_F_FLUSH	(1UL << 9)

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_UNKNOWN = 0xff };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2, S_UNSET = 0xee };

#define SECTOR 512
#define MAX_SECTORS 2048	/* 1 MiB each way */
#define PER_REQ 8		/* sectors per data request: 4 KiB */
#define MAX_REQS (MAX_SECTORS / PER_REQ)

struct req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

/* One request: its header and status live here, the data elsewhere. */
struct breq {
	struct req_hdr hdr;
	u8 status;
	void *data;
	u32 len;
	u32 used_len;
};

static u8 wbuf[MAX_SECTORS * SECTOR] __attribute__((aligned(4096))) NOINIT;
static u8 rbuf[MAX_SECTORS * SECTOR] __attribute__((aligned(4096))) NOINIT;
static struct breq reqs[MAX_REQS];

static struct vdev dev;
static struct vq vq;

static const char *status_name(u8 s)
{
	switch (s) {
	case S_OK: return "OK";
	case S_IOERR: return "IOERR";
	case S_UNSUPP: return "UNSUPP";
	case S_UNSET: return "unset (device did not write it)";
	default: return "invalid";
	}
}

/* run submits reqs[0..n) (as many at once as the queue holds) and waits for all. */
static void run(struct breq *r, int n, const char *what)
{
	struct breq *by_head[VQ_MAX_SIZE];
	int next = 0, done = 0;
	while (done < n) {
		int added = 0;
		while (next < n && vq_free_count(&vq) >= (r[next].len ? 3 : 2)) {
			struct breq *b = &r[next++];
			b->status = S_UNSET;
			/* Header (device-readable), data, status (device-writable). */
			struct vbuf bufs[3] = { { &b->hdr, sizeof(b->hdr), 0 } };
			int k = 1;
			if (b->len)
				bufs[k++] = (struct vbuf){ b->data, b->len, b->hdr.type != T_OUT };
			bufs[k++] = (struct vbuf){ &b->status, 1, 1 };
			by_head[vq_add(&vq, bufs, k)] = b;
			added++;
		}
		if (added)
			vq_kick(&vq);
		u32 len;
		u16 id = vq_wait(&vq, &len, what);
		by_head[id]->used_len = len;
		done++;
	}
}

static void expect(struct breq *r, int n, u8 want, const char *what)
{
	for (int i = 0; i < n; i++)
		if (r[i].status != want)
			fail("%s (request %d, sector %lu): status %u %s, want %s", what, i, r[i].hdr.sector,
			     r[i].status, status_name(r[i].status), status_name(want));
}

/* data builds n requests of type over sectors [0, sectors) of buf. */
static int data_reqs(u32 type, u8 *buf, u64 sectors)
{
	int n = 0;
	for (u64 s = 0; s < sectors; s += PER_REQ, n++) {
		u64 k = sectors - s < PER_REQ ? sectors - s : PER_REQ;
		reqs[n] = (struct breq){ .hdr = { type, 0, s }, .data = buf + s * SECTOR, .len = k * SECTOR };
	}
	return n;
}

static u8 one(u32 type, u64 sector, void *data, u32 len, const char *what)
{
	reqs[0] = (struct breq){ .hdr = { type, 0, sector }, .data = data, .len = len };
	run(reqs, 1, what);
	return reqs[0].status;
}

/*
 * Benchmark mode (bench=1): four timed phases over the first bench_mib=
 * (default 64) MiB of the disk, each keeping up to qd= (default 16)
 * requests in flight: sequential 1 MiB writes then reads, then ops=
 * (default 8192) 4 KiB writes and reads at xorshift-random 4 KiB-aligned
 * offsets. Each phase prints a "bench NAME begin" line and a "bench NAME
 * end: R requests, B bytes, T ticks" line; the host times the lines too.
 * Buffer contents are not checked: in-flight requests share wbuf/rbuf.
 */
#define BENCH_MAX_SEGS 64

struct bphase {
	const char *name;
	u32 type;
	u32 req_bytes;
	int random;
};

static u32 seg_bytes = 1 << 20;	/* data descriptor length limit (SIZE_MAX) */
static u32 max_segs = BENCH_MAX_SEGS;	/* data descriptors per request (SEG_MAX) */

static void bench_phase(const struct bphase *ph, u64 region, u64 count, u64 qd, u64 *rnd)
{
	static struct breq slot[VQ_MAX_SIZE];	/* by head id */
	u32 segs = (ph->req_bytes + seg_bytes - 1) / seg_bytes;
	if (segs > max_segs)
		fail("bench %s: %u-byte requests need %u segments, the device takes %u", ph->name, ph->req_bytes, segs, max_segs);
	u64 slots = region / ph->req_bytes, sent = 0, done = 0, inflight = 0;
	u8 *buf = ph->type == T_OUT ? wbuf : rbuf;
	printf("virtio-blk: bench %s begin\n", ph->name);
	u64 t0 = rdtsc();
	while (done < count) {
		int added = 0;
		while (sent < count && inflight < qd && vq_free_count(&vq) >= segs + 2) {
			u64 idx = ph->random ? xorshift64(rnd) % slots : sent % slots;
			struct vbuf bufs[BENCH_MAX_SEGS + 2];
			struct breq b = { .hdr = { ph->type, 0, idx * ph->req_bytes / SECTOR }, .status = S_UNSET };
			bufs[0] = (struct vbuf){ 0, sizeof(b.hdr), 0 };
			for (u32 i = 0; i < segs; i++) {
				u32 n = ph->req_bytes - i * seg_bytes < seg_bytes ? ph->req_bytes - i * seg_bytes : seg_bytes;
				bufs[1 + i] = (struct vbuf){ buf + i * seg_bytes, n, ph->type != T_OUT };
			}
			bufs[segs + 1] = (struct vbuf){ 0, 1, 1 };
			/* The header and status must stay put while in flight: they
			 * live in the slot of the chain's head, known only after
			 * vq_add, so peek at the head vq_add will use. */
			struct breq *r = &slot[vq.free_head];
			*r = b;
			bufs[0].addr = &r->hdr;
			bufs[segs + 1].addr = &r->status;
			vq_add(&vq, bufs, segs + 2);
			sent++, inflight++, added++;
		}
		if (added)
			vq_kick(&vq);
		u32 len;
		u16 id = vq_wait(&vq, &len, ph->name);
		if (slot[id].status != S_OK)
			fail("bench %s: request at sector %lu: status %u %s", ph->name, slot[id].hdr.sector, slot[id].status,
			     status_name(slot[id].status));
		done++, inflight--;
	}
	u64 ticks = rdtsc() - t0;
	printf("virtio-blk: bench %s end: %lu requests, %lu bytes, %lu ticks\n", ph->name, count, count * ph->req_bytes, ticks);
}

static void bench(u64 f, u64 capacity)
{
	u64 mib = cmdline_u64("bench_mib", 64), qd = cmdline_u64("qd", 16), ops = cmdline_u64("ops", 8192);
	u64 region = mib << 20;
	if (mib == 0 || region / SECTOR > capacity)
		fail("bench_mib=%lu: want 1..%lu (the disk's size)", mib, capacity * SECTOR >> 20);
	if (qd == 0 || qd > VQ_MAX_SIZE)
		fail("qd=%lu: want 1..%d", qd, VQ_MAX_SIZE);
	if (f & BLK_F_SIZE_MAX) {
		u32 m = virtio_config32(&dev, 8) & ~4095u;
		if (m && m < seg_bytes)
			seg_bytes = m;
	}
	if (f & BLK_F_SEG_MAX) {
		u32 m = virtio_config32(&dev, 12);
		if (m && m < max_segs)
			max_segs = m;
	}
	if (f & BLK_F_RO)
		fail("bench needs a writable disk");
	printf("virtio-blk: bench region %lu MiB, qd %lu, segment %u bytes, up to %u segments\n", mib, qd, seg_bytes, max_segs);
	static const struct bphase phases[] = {
		{ "seqwrite", T_OUT, 1 << 20, 0 },
		{ "seqread", T_IN, 1 << 20, 0 },
		{ "randwrite", T_OUT, 4096, 1 },
		{ "randread", T_IN, 4096, 1 },
	};
	u64 rnd = 0x9e3779b97f4a7c15UL;
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
		bench_phase(&phases[i], region, phases[i].random ? ops : mib, qd, &rnd);
	print("virtio-blk: ok\n");
}

int main(void)
{
	u64 sectors = cmdline_u64("sectors", 256), seed = cmdline_u64("seed", 1);
	int bench_mode = cmdline_u64("bench", 0) != 0;
	printf("virtio-blk: start sectors=%lu seed=%lu%s\n", sectors, seed, bench_mode ? " bench" : "");
	if (sectors == 0 || sectors > MAX_SECTORS)
		fail("sectors=%lu: want 1..%d", sectors, MAX_SECTORS);
	if (seed == 0)
		fail("seed=0: xorshift needs a non-zero seed");

	virtio_must_find(&dev, VIRTIO_ID_BLOCK, "virtio-blk");
	u64 f = virtio_start(&dev, BLK_F_RO | BLK_F_FLUSH | (bench_mode ? BLK_F_SIZE_MAX | BLK_F_SEG_MAX : 0));
	virtio_queue(&dev, &vq, 0, 0);
	virtio_ready(&dev);
	u64 capacity = virtio_config64(&dev, 0);
	int ro = !!(f & BLK_F_RO);
	printf("virtio-blk: slot %d, features 0x%lx, capacity %lu sectors, queue size %u%s\n", dev.slot,
	       dev.device_features, capacity, vq.size, ro ? ", read-only" : "");
	if (bench_mode) {
		bench(f, capacity);
		return 0;
	}
	if (sectors > capacity)
		fail("sectors=%lu exceeds the disk's %lu sectors", sectors, capacity);

	u64 s = seed;
	for (u64 i = 0; i < sectors * SECTOR / 8; i++)
		((u64 *)wbuf)[i] = xorshift64(&s);
	u64 sum = fnv1a(FNV_OFFSET, wbuf, sectors * SECTOR);

	int n = data_reqs(T_OUT, wbuf, sectors);
	run(reqs, n, "writes");
	expect(reqs, n, ro ? S_IOERR : S_OK, ro ? "write to a read-only disk" : "write");
	if (ro)
		printf("virtio-blk: %d writes refused with IOERR\n", n);

	if (f & BLK_F_FLUSH) {
		u8 st = one(T_FLUSH, 0, 0, 0, "flush");
		if (st != S_OK)
			fail("flush: status %u %s, want OK", st, status_name(st));
		print("virtio-blk: flushed\n");
	}

	memset(rbuf, 0x5a, sectors * SECTOR);
	n = data_reqs(T_IN, rbuf, sectors);
	run(reqs, n, "reads");
	expect(reqs, n, S_OK, "read");
	for (int i = 0; i < n; i++)
		if (reqs[i].used_len != reqs[i].len + 1)
			fail("read at sector %lu: device wrote %u bytes, want %u (data + status)",
			     reqs[i].hdr.sector, reqs[i].used_len, reqs[i].len + 1);
	if (ro) {
		printf("virtio-blk: read checksum 0x%016lx\n", fnv1a(FNV_OFFSET, rbuf, sectors * SECTOR));
	} else {
		for (u64 i = 0; i < sectors; i++)
			if (memcmp(wbuf + i * SECTOR, rbuf + i * SECTOR, SECTOR))
				fail("sector %lu reads back different from what was written", i);
		printf("virtio-blk: checksum 0x%016lx\n", sum);
	}

	u8 st = one(T_IN, capacity, rbuf, SECTOR, "read past the end");
	if (st != S_IOERR)
		fail("read at sector %lu (the capacity): status %u %s, want IOERR", capacity, st, status_name(st));
	print("virtio-blk: read past the end: IOERR\n");

	st = one(T_UNKNOWN, 0, 0, 0, "unknown request type");
	if (st != S_UNSUPP)
		fail("request type %u: status %u %s, want UNSUPP", T_UNKNOWN, st, status_name(st));
	print("virtio-blk: unknown request: UNSUPP\n");

	/* §5.2.6: the id is up to 20 bytes, NUL-terminated only if shorter. */
	char id[21];
	memset(id, 0, sizeof(id));
	st = one(T_GET_ID, 0, id, 20, "get id");
	if (st == S_OK)
		printf("virtio-blk: id \"%s\"\n", id);
	else
		printf("virtio-blk: get id: status %s\n", status_name(st));

	print("virtio-blk: ok\n");
	return 0;
}
