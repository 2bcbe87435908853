/* reset.c: pulses the reset line through the i8042 (0xfe to port 0x64); the vmm exits 3. */
#include "guest.h"

const char guest_name[] = "reset";

int main(void)
{
	print("reset: start\n");
	print("reset: ok\n");
	outb(0x64, 0xfe);
	/* Still here: power off, so the test sees exit 0 instead of the expected 3. */
	print("reset: FAIL: still running after writing 0xfe to port 0x64\n");
	power_off();
}
