/* hello.c: prints its command line and the e820 map from the zero page. */
#include "guest.h"

const char guest_name[] = "hello";

int main(void)
{
	print("hello: start\n");
	print("hello from sietch test guest\n");
	printf("hello: cmdline \"%s\"\n", cmdline());

	/* zero-page.rst: e820_entries (u8) at 0x1e8, e820_table at 0x2d0, 20 bytes each. */
	const u8 *bp = boot_params();
	unsigned count = bp[0x1e8];
	if (count > 128)
		fail("e820: %u entries, the zero page holds at most 128", count);
	printf("hello: e820 %u entries\n", count);
	u64 ram = 0;
	for (unsigned i = 0; i < count; i++) {
		const u8 *e = bp + 0x2d0 + 20 * i;
		u64 addr = *(const u64 *)e, size = *(const u64 *)(e + 8);
		u32 type = *(const u32 *)(e + 16);
		printf("hello: e820 [mem 0x%016lx-0x%016lx] type %u\n", addr, addr + size - 1, type);
		if (type == 1)
			ram += size;
	}
	printf("hello: e820 ram %lu KiB\n", ram >> 10);
	print("hello: ok\n");
	return 0;
}
