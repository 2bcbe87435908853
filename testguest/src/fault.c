/*
 * fault.c: fails on purpose. mode=triple (default): loads an IDT with limit 0
 * and executes ud2 at CPL3; #UD, then #GP, then #DF cannot be delivered, so
 * the CPU shuts down (triple fault) and the vmm exits 4. mode=pf: reads
 * 32 GiB, beyond the 4 GiB identity map; the #PF handler reports vector,
 * error code, RIP and CR2 and resets the machine (exit 3).
 */
#include "guest.h"

const char guest_name[] = "fault";

#define UNMAPPED 0x800000000UL	/* 32 GiB */

int main(void)
{
	char mode[16] = "triple";
	cmdline_get("mode", mode, sizeof(mode));
	printf("fault: start mode=%s\n", mode);
	if (!memcmp(mode, "pf", 3)) {
		printf("fault: reading 0x%lx\n", UNMAPPED);
		(void)*(volatile u64 *)UNMAPPED;
		fail("read of unmapped 0x%lx did not fault", UNMAPPED);
	}
	if (!memcmp(mode, "triple", 7)) {
		print("fault: loading an empty IDT\n");
		svc(SYS_DROP_IDT, 0, 0, 0);
		__asm__ volatile("ud2");
		fail("ud2 with an empty IDT did not triple-fault");
	}
	fail("unknown mode=%s (want triple or pf)", mode);
}
