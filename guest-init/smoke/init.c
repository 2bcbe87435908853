// Smoke-test /init: proves the guest kernel reaches userspace, then powers off.
//
// Build (static, no libc; see build.sh next to this file):
//   gcc -static -nostdlib -ffreestanding -fno-pie -no-pie
//       -fno-stack-protector -O2 -Wl,--build-id=none -o init init.c
//
// It makes as few system calls as it can (each costs ~0.5 ms on hosts whose
// guest CPL0 is emulated): print the marker, mount /proc, print /proc/uptime
// (the kernel's own clock at that moment), then reboot(POWER_OFF). The kernel
// opened /dev/console as fds 0-2 before running us.

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_reboot 169
#define SYS_exit 60
#define SYS_pause 34

// include/uapi/linux/reboot.h
#define LINUX_REBOOT_MAGIC1 0xfee1deadUL
#define LINUX_REBOOT_MAGIC2 672274793UL
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321FEDCUL

static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static long sys5(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static void say(const char *s, long n)
{
	sys3(SYS_write, 1, (long)s, n);
}

#define SAY(lit) say(lit, sizeof(lit) - 1)

void smoke_main(void)
{
	static char buf[64];
	long fd, n;

	SAY("sietch-smoke: init reached\n");

	// /proc may be missing from the archive; EEXIST is fine.
	sys3(SYS_mkdir, (long)"/proc", 0555, 0);
	if (sys5(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0) == 0) {
		fd = sys3(SYS_open, (long)"/proc/uptime", 0, 0);
		if (fd >= 0) {
			n = sys3(SYS_read, fd, (long)buf, sizeof(buf));
			if (n > 0) {
				SAY("sietch-smoke: uptime ");
				say(buf, n);
			}
		}
	}

	SAY("sietch-smoke: powering off\n");
	sys5(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
	     LINUX_REBOOT_CMD_POWER_OFF, 0, 0);

	// Only reached if reboot failed: PID 1 must not exit (that panics).
	SAY("sietch-smoke: power off failed\n");
	for (;;)
		sys3(SYS_pause, 0, 0, 0);
}

// The ELF entry point: align the stack as the ABI expects at a call, then run.
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	and $-16, %rsp\n"
	"	call smoke_main\n"
	"	ud2\n");
