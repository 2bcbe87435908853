/*
 * counter.c: a deterministic CPU-bound loop at CPL3 (n= iterations). With
 * touch=K it also writes K fresh 4 KiB pages from 16 MiB up just before
 * each progress line, so diff snapshot tests know what changed. With
 * idle=1 it halts after its checksum instead of powering off: an idle
 * sandbox for benchmarks that must not burn host CPU.
 */
#include "guest.h"

const char guest_name[] = "counter";

/*
 * Each step folds i into an FNV-1a style hash, so the checksum depends on
 * every iteration; tests recompute it. Output is identical on every run,
 * which snapshot/restore tests rely on.
 */
int main(void)
{
	u64 n = cmdline_u64("n", 50000000);
	u64 step = n / 10 ? n / 10 : 1;
	u64 touch = cmdline_u64("touch", 0);
	volatile u64 *pages = (volatile u64 *)0x1000000UL;
	u64 touched = 0;
	printf("counter: start n=%lu\n", n);
	u64 x = 0xcbf29ce484222325UL, next = step;
	for (u64 i = 1; i <= n; i++) {
		x = (x ^ i) * 0x100000001b3UL;
		if (i == next) {
			for (u64 k = 0; k < touch; k++, touched++)
				pages[touched * 512] = i;
			printf("counter: %lu\n", i);
			next += step;
		}
	}
	printf("counter: checksum 0x%016lx\n", x);
	if (cmdline_u64("idle", 0)) {
		print("counter: idle\n");
		halt_forever();
	}
	print("counter: ok\n");
	return 0;
}
