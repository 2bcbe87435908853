/*
 * pingpong.c: n= MMIO and port-I/O round trips, for exit-latency benchmarks.
 * mode=mmio, pio or both (default) picks which loops run, so a benchmark can
 * time one kind of exit and subtract a run with n=0 to cancel the boot.
 */
#include "guest.h"

const char guest_name[] = "pingpong";

#define MMIO_ADDR 0xd0000000UL	/* in the 32-bit MMIO gap, no device */
#define PIO_PORT 0x0ee0		/* no device */

static void mmio_loop(u64 n)
{
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
}

static void pio_loop(u64 n)
{
	/* Port I/O needs CPL0: each access is a ud2 trap plus the exit. */
	u64 t0 = rdtsc();
	for (u64 i = 0; i < n; i++) {
		outb(PIO_PORT, i);
		(void)inb(PIO_PORT);
	}
	u64 t1 = rdtsc();
	printf("pingpong: pio %lu round trips, %lu tsc each\n", n, n ? (t1 - t0) / n : 0);
}

int main(void)
{
	u64 n = cmdline_u64("n", 1000);
	char mode[8] = "both";
	cmdline_get("mode", mode, sizeof(mode));
	printf("pingpong: start n=%lu\n", n);

	int mmio = !memcmp(mode, "mmio", 5), pio = !memcmp(mode, "pio", 4);
	if (!memcmp(mode, "both", 5))
		mmio = pio = 1;
	if (!mmio && !pio)
		fail("unknown mode=%s (want mmio, pio or both)", mode);
	if (mmio)
		mmio_loop(n);
	if (pio)
		pio_loop(n);
	print("pingpong: ok\n");
	return 0;
}
