/* smp.c: starts vCPU 1, shares a counter with it and sends it an IPI (--cpus 2). */
#include "guest.h"

const char guest_name[] = "smp";

#define ROUNDS 1000000

static volatile u64 shared, go, ap_done, ipi_seen;

static void bump(void)
{
	u64 one = 1;
	__asm__ volatile("lock xaddq %0, %1" : "+r"(one), "+m"(shared) : : "memory");
}

static void wait_for(volatile u64 *flag, const char *what)
{
	u64 end = rdtsc() + WAIT_TICKS;
	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
		if (rdtsc() > end)
			fail("timed out waiting for %s", what);
		else
			cpu_relax();
}

void ap_main(int cpu)
{
	(void)cpu;
	wait_for(&go, "the go signal");
	for (int i = 0; i < ROUNDS; i++)
		bump();
	__atomic_store_n(&ap_done, 1, __ATOMIC_RELEASE);
	/* Interrupts are on at CPL3: the IPI arrives through the IDT. */
	u64 end = rdtsc() + WAIT_TICKS;
	while (!irq_count[IPI_VECTOR] && rdtsc() < end)
		cpu_relax();
	if (irq_count[IPI_VECTOR])
		__atomic_store_n(&ipi_seen, 1, __ATOMIC_RELEASE);
}

int main(void)
{
	print("smp: start\n");
	if (start_cpu(1))
		fail("vCPU 1 did not start (is the vmm running with --cpus 2?)");
	print("smp: 2 cpus up\n");

	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < ROUNDS; i++)
		bump();
	wait_for(&ap_done, "vCPU 1 to finish counting");
	if (shared != 2 * ROUNDS)
		fail("shared counter is %lu, want %u", shared, 2 * ROUNDS);
	printf("smp: counter %lu\n", shared);

	apic_write(0x310, 1u << 24);
	apic_write(0x300, 0x4000 | IPI_VECTOR);	/* fixed, assert */
	wait_for(&ipi_seen, "vCPU 1 to receive the IPI");
	print("smp: ipi delivered\n");
	print("smp: ok\n");
	return 0;
}
