/* cpus.c: starting application processors from CPL3 with INIT-SIPI-SIPI. */
#include "guest.h"

extern const char tramp_start[], tramp_end[];
extern const char tramp_cr3[], tramp_efer[], tramp_stack[], tramp_entry[], tramp_cpu[];
extern u64 boot_cr3, boot_efer;
extern u8 kstacks[MAX_CPUS][KSTACK_SIZE];
extern char ap_entry[];

volatile u64 cpu_online[MAX_CPUS];

#define ICR_LO 0x300
#define ICR_HI 0x310

static void set_slot(const char *slot, u64 v)
{
	*(volatile u64 *)(TRAMP_BASE + (slot - tramp_start)) = v;
}

static void delay(u64 ticks)
{
	u64 end = rdtsc() + ticks;
	while (rdtsc() < end)
		cpu_relax();
}

static void ipi(int apic_id, u32 icr)
{
	apic_write(ICR_HI, (u32)apic_id << 24);
	apic_write(ICR_LO, icr);
}

/*
 * start_cpu starts the CPU whose APIC ID is cpu (our vmm numbers them like
 * that) as on a PC: INIT, then two start-up IPIs (SDM Vol. 3A §8.4.4.1).
 * Memory below 1 MiB is identity-mapped and user-accessible, so the
 * trampoline is copied from CPL3.
 */
int start_cpu(int cpu)
{
	if (cpu <= 0 || cpu >= MAX_CPUS)
		fail("start_cpu: cpu %d out of range 1..%d", cpu, MAX_CPUS - 1);
	memcpy((void *)TRAMP_BASE, tramp_start, tramp_end - tramp_start);
	set_slot(tramp_cr3, boot_cr3);
	set_slot(tramp_efer, (boot_efer & ~0x400UL) | 0x100);	/* LME, not LMA */
	set_slot(tramp_stack, (u64)&kstacks[cpu][KSTACK_SIZE]);
	set_slot(tramp_entry, (u64)ap_entry);
	set_slot(tramp_cpu, cpu);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	ipi(cpu, 0x4500);	/* INIT, level assert */
	delay(1000000);
	for (int i = 0; i < 2; i++) {
		ipi(cpu, 0x4600 | (TRAMP_BASE >> 12));	/* STARTUP */
		delay(1000000);
		if (cpu_online[cpu])
			return 0;
	}
	u64 end = rdtsc() + WAIT_TICKS;
	while (!cpu_online[cpu])
		if (rdtsc() > end)
			return -1;
		else
			cpu_relax();
	return 0;
}
