/*
 * virtio-rng.c: fills two 64-byte buffers from the entropy device (virtio
 * 1.2 §5.4) and checks that they differ and are not all zero; rounds=N
 * repeats that N times (a long-running guest for snapshot tests).
 */
#include "virtio.h"

const char guest_name[] = "virtio-rng";

static struct vdev dev;
static struct vq vq;

/* fill asks until buf is full: the device may return fewer bytes (§5.4.6). */
static void fill(u8 *buf, u32 n)
{
	u32 got = 0;
	for (int tries = 0; got < n; tries++) {
		if (tries == 64)
			fail("device returned only %u of %u bytes in 64 requests", got, n);
		struct vbuf b = { buf + got, n - got, 1 };
		vq_add(&vq, &b, 1);
		vq_kick(&vq);
		u32 len;
		vq_wait(&vq, &len, "entropy");
		if (len > n - got)
			fail("device claims %u bytes written into a %u-byte buffer", len, n - got);
		got += len;
	}
}

int main(void)
{
	print("virtio-rng: start\n");
	virtio_must_find(&dev, VIRTIO_ID_RNG, "virtio-rng");
	virtio_start(&dev, 0);
	virtio_queue(&dev, &vq, 0, 0);
	virtio_ready(&dev);
	printf("virtio-rng: slot %d, queue size %u\n", dev.slot, vq.size);

	u64 rounds = cmdline_u64("rounds", 1);
	u8 a[64], b[64], zero[64];
	memset(zero, 0, sizeof(zero));
	for (u64 r = 0; r < rounds; r++) {
		memset(a, 0, sizeof(a));
		memset(b, 0, sizeof(b));
		fill(a, sizeof(a));
		fill(b, sizeof(b));
		if (!memcmp(a, zero, sizeof(a)) || !memcmp(b, zero, sizeof(b)))
			fail("the device returned 64 zero bytes");
		if (!memcmp(a, b, sizeof(a)))
			fail("two 64-byte requests returned the same bytes");
	}
	printf("virtio-rng: %lu x 2 x 64 bytes, last first 8: %016lx %016lx\n", rounds, *(u64 *)a, *(u64 *)b);
	print("virtio-rng: ok\n");
	return 0;
}
