/* user.c: the CPL3 half of the runtime: service calls, output, boot parameters. */
#include "guest.h"

extern u64 boot_params_addr;

long svc(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("ud2" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return ret;
}

void sys_write(const char *buf, size_t len)
{
	svc(SYS_WRITE, (long)buf, len, 0);
}

void outb(u16 port, u8 value)
{
	svc(SYS_OUTB, port, value, 0);
}

u8 inb(u16 port)
{
	return svc(SYS_INB, port, 0, 0);
}

void apic_write(u32 reg, u32 value)
{
	svc(SYS_APIC_WRITE, reg, value, 0);
}

u32 apic_read(u32 reg)
{
	return svc(SYS_APIC_READ, reg, 0, 0);
}

void halt_forever(void)
{
	svc(SYS_HALT, 0, 0, 0);
	for (;;)
		cpu_relax();
}

void power_off(void)
{
	svc(SYS_POWEROFF, 0, 0, 0);
	for (;;)
		cpu_relax();
}

void reset(void)
{
	svc(SYS_RESET, 0, 0, 0);
	for (;;)
		cpu_relax();
}

void print(const char *s)
{
	sys_write(s, strlen(s));
}

void printf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sys_write(buf, n);
}

void fail(const char *fmt, ...)
{
	char buf[1024];
	int n = format(buf, sizeof(buf), "%s: FAIL: ", guest_name);
	va_list ap;
	va_start(ap, fmt);
	n += vformat(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	buf[n++] = '\n';
	sys_write(buf, n);
	reset();
}

const u8 *boot_params(void)
{
	return (const u8 *)boot_params_addr;
}

/* The command line pointer is the u32 at 0x228 (boot.rst, cmd_line_ptr). */
const char *cmdline(void)
{
	u32 p = *(const u32 *)(boot_params() + 0x228);
	return p ? (const char *)(u64)p : "";
}

int cmdline_get(const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	const char *s = cmdline();
	while (*s) {
		while (*s == ' ')
			s++;
		const char *tok = s;
		while (*s && *s != ' ')
			s++;
		if ((size_t)(s - tok) > klen && !memcmp(tok, key, klen) && tok[klen] == '=') {
			size_t n = 0;
			for (const char *v = tok + klen + 1; v < s && n + 1 < cap; v++)
				out[n++] = *v;
			if (cap)
				out[n] = 0;
			return 1;
		}
	}
	return 0;
}

/* cmdline_u64 parses key=<decimal or 0x hex>; anything else fails the guest. */
u64 cmdline_u64(const char *key, u64 def)
{
	char v[32];
	if (!cmdline_get(key, v, sizeof(v)))
		return def;
	const char *p = v;
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (!*p)
		fail("command line: %s=%s is not a number", key, v);
	u64 n = 0;
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			fail("command line: %s=%s is not a number", key, v);
		n = n * base + d;
	}
	return n;
}

/* user_main runs main at CPL3; returning 0 powers off, anything else fails. */
void user_main(void)
{
	int rc = main();
	if (rc == 0)
		power_off();
	fail("main returned %d", rc);
}

__attribute__((weak)) void ap_main(int cpu)
{
	(void)cpu;
}

void ap_user_main(u64 cpu)
{
	__atomic_store_n(&cpu_online[cpu], 1, __ATOMIC_SEQ_CST);
	ap_main(cpu);
}
