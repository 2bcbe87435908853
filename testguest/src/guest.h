/* guest.h: what the test-guest runtime offers guest programs running at CPL3. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef unsigned long size_t;

/*
 * Services: CPL3 code executes ud2 with RAX = service number and
 * RDI/RSI/RDX = arguments; the #UD handler does the work at CPL0 and returns
 * the result in RAX. (At CPL3 on our hosts `int n` faults and in/out raise
 * #GP, so this is the cheapest way into CPL0.)
 */
enum {
	SYS_WRITE = 1,	/* (buf, len): to the UART; one trap per call */
	SYS_OUTB,	/* (port, value) */
	SYS_INB,	/* (port) -> value */
	SYS_POWEROFF,	/* writes 0x00 to the power port: vmm exits 0 */
	SYS_RESET,	/* writes 0x01 to the power port: vmm exits 3 */
	SYS_APIC_WRITE,	/* (register offset, value): local APIC (xAPIC MMIO) */
	SYS_APIC_READ,	/* (register offset) -> value */
	SYS_DROP_IDT,	/* loads an IDT with limit 0: the next exception triple-faults */
	SYS_HALT,	/* cli; hlt for good: the vCPU sleeps in KVM, costing no host CPU */
};

/* Every guest program defines its name (prefix of its output lines) and main. */
extern const char guest_name[];
int main(void);
/* Optional: code an application processor runs at CPL3 once started. */
void ap_main(int cpu);

long svc(long n, long a, long b, long c);
void sys_write(const char *buf, size_t len);
void outb(u16 port, u8 value);
u8 inb(u16 port);
void apic_write(u32 reg, u32 value);
u32 apic_read(u32 reg);
__attribute__((noreturn)) void power_off(void);
__attribute__((noreturn)) void reset(void);
__attribute__((noreturn)) void halt_forever(void);

/* Output: formatting happens at CPL3, then one write trap per call. */
int vformat(char *buf, size_t cap, const char *fmt, va_list ap);
int format(char *buf, size_t cap, const char *fmt, ...);
void print(const char *s);
__attribute__((format(printf, 1, 2))) void printf(const char *fmt, ...);
/* fail prints "<name>: FAIL: <message>" and resets the machine (vmm exit 3). */
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);

/* Boot parameters (Linux zero page, Documentation/arch/x86/zero-page.rst). */
const u8 *boot_params(void);
const char *cmdline(void);
/* cmdline_get copies the value of key=value into out; returns 1 if present. */
int cmdline_get(const char *key, char *out, size_t cap);
u64 cmdline_u64(const char *key, u64 def);

/* Application processors. */
int start_cpu(int cpu);	/* INIT-SIPI-SIPI; returns 0 once the CPU runs at CPL3 */
extern volatile u64 cpu_online[MAX_CPUS];
extern volatile u64 irq_count[256];	/* interrupts taken, per vector */

size_t strlen(const char *s);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Bounded waits are measured in TSC ticks; 3e10 is 10 s at 3 GHz. */
#define WAIT_TICKS 30000000000UL

#endif
