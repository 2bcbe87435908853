/*
 * silent.c: prints nothing and halts at CPL0 for good, as a guest kernel
 * that never speaks looks from the host: the vmm's quiet-console hint is
 * tested with it. The VM runs until the host stops it.
 */
#include "guest.h"

const char guest_name[] = "silent";

int main(void)
{
	halt_forever();
}
