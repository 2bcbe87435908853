/* poweroff.c: writes 0x00 to the power port; the vmm exits 0. */
#include "guest.h"

const char guest_name[] = "poweroff";

int main(void)
{
	print("poweroff: start\n");
	print("poweroff: ok\n");
	outb(0x600, 0x00);
	/* Still here: make the failure visible as a reset (exit 3), not exit 0. */
	fail("still running after writing 0x00 to port 0x600");
}
