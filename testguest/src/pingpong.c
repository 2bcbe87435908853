/* pingpong.c: n= MMIO and port-I/O round trips, for exit-latency benchmarks. */
#include "guest.h"

const char guest_name[] = "pingpong";

#define MMIO_ADDR 0xd0000000UL	/* in the 32-bit MMIO gap, no device */
#define PIO_PORT 0x0ee0		/* no device */

int main(void)
{
	u64 n = cmdline_u64("n", 1000);
	printf("pingpong: start n=%lu\n", n);

	/* MMIO at CPL3 exits to the vmm directly; unhandled reads are all-ones. */
	volatile u32 *mmio = (volatile u32 *)MMIO_ADDR;
	u64 bad = 0, last = 0, t0 = rdtsc();
	for (u64 i = 0; i < n; i++) {
		*mmio = (u32)i;
		u32 v = *mmio;
		if (v != 0xffffffff) {
			bad++;
			last = v;
		}
	}
	u64 t1 = rdtsc();
	printf("pingpong: mmio %lu round trips, %lu tsc each\n", n, n ? (t1 - t0) / n : 0);
	if (bad)
		fail("%lu of %lu MMIO reads were not all-ones (last 0x%lx)", bad, n, last);

	/* Port I/O needs CPL0: each access is a ud2 trap plus the exit. */
	t0 = rdtsc();
	for (u64 i = 0; i < n; i++) {
		outb(PIO_PORT, i);
		(void)inb(PIO_PORT);
	}
	t1 = rdtsc();
	printf("pingpong: pio %lu round trips, %lu tsc each\n", n, n ? (t1 - t0) / n : 0);
	print("pingpong: ok\n");
	return 0;
}
