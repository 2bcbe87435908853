/* kernel.c: the CPL0 half of the runtime: descriptor tables, traps, services. */
#include "guest.h"

/*
 * Everything here runs at CPL0, which our hosts emulate at about a
 * microsecond per instruction: keep it short and do work at CPL3.
 */

struct tss {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

struct idt_entry {
	u16 offset0;
	u16 selector;
	u8 ist;
	u8 attr;
	u16 offset1;
	u32 offset2;
	u32 reserved;
} __attribute__((packed));

/* Pushed by the stubs in crt0.S and the CPU (SDM Vol. 3A §6.14.2). */
struct frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

struct dtr {
	u16 limit;
	u64 base;
} __attribute__((packed));

/* Null, kernel code64, kernel data, user data, user code64, then one TSS per CPU. */
static u64 gdt[5 + 2 * MAX_CPUS] __attribute__((aligned(16))) = {
	0,
	0x00af9a000000ffff,
	0x00cf92000000ffff,
	0x00cff2000000ffff,
	0x00affa000000ffff,
};
static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct tss tss[MAX_CPUS] __attribute__((aligned(16)));

/* Stacks are not zeroed at start-up (crt0 zeroes .bss only): .bss.stack. */
u8 kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(16), section(".bss.stack")));
u8 ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(16), section(".bss.stack")));
static u8 dfstacks[MAX_CPUS][DFSTACK_SIZE] __attribute__((aligned(16), section(".bss.stack")));

u64 boot_params_addr;
u64 boot_cr3, boot_efer;	/* read by start_cpu for the trampoline */
volatile u64 irq_count[256];

extern char trap_stubs[];

static inline void kout8(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 kin8(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void apic_set(u32 reg, u32 v)
{
	*(volatile u32 *)(u64)(LAPIC_BASE + reg) = v;
}

static inline u32 apic_get(u32 reg)
{
	return *(volatile u32 *)(u64)(LAPIC_BASE + reg);
}

u64 ustack_top(u64 cpu)
{
	return (u64)&ustacks[cpu][USTACK_SIZE];
}

static void fill_idt(void)
{
	for (int v = 0; v < 256; v++) {
		u64 a = (u64)trap_stubs + 16 * v;
		idt[v].offset0 = a;
		idt[v].selector = KERNEL_CS;
		idt[v].ist = v == 8 ? 1 : 0;	/* #DF on its own stack */
		idt[v].attr = 0x8e;	/* present, DPL0, 64-bit interrupt gate */
		idt[v].offset1 = a >> 16;
		idt[v].offset2 = a >> 32;
	}
}

/* kinit sets up one CPU's descriptor tables; called on each CPU's CPL0 stack. */
void kinit(u64 cpu)
{
	if (cpu == 0) {
		fill_idt();
		__asm__ volatile("mov %%cr3, %0" : "=r"(boot_cr3));
		u32 lo, hi;
		__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000080));
		boot_efer = ((u64)hi << 32) | lo;
		/* Mask both 8259s: only the local APIC delivers interrupts here. */
		kout8(0x21, 0xff);
		kout8(0xa1, 0xff);
	}

	struct tss *t = &tss[cpu];
	t->rsp[0] = (u64)&kstacks[cpu][KSTACK_SIZE];
	t->ist[0] = (u64)&dfstacks[cpu][DFSTACK_SIZE];
	t->iomap_base = sizeof(struct tss);	/* no I/O bitmap */
	u64 base = (u64)t, limit = sizeof(struct tss) - 1;
	gdt[5 + 2 * cpu] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
		(0x89UL << 40) | (((limit >> 16) & 0xf) << 48) |
		(((base >> 24) & 0xff) << 56);
	gdt[6 + 2 * cpu] = base >> 32;

	struct dtr g = { sizeof(gdt) - 1, (u64)gdt };
	struct dtr i = { sizeof(idt) - 1, (u64)idt };
	__asm__ volatile(
		"lgdt %0\n\t"
		"pushq %2\n\t"
		"leaq 1f(%%rip), %%rax\n\t"
		"pushq %%rax\n\t"
		"lretq\n"
		"1:\n\t"
		"mov %3, %%eax\n\t"
		"mov %%eax, %%ds\n\t"
		"mov %%eax, %%es\n\t"
		"mov %%eax, %%ss\n\t"
		"lidt %1\n\t"
		"ltr %w4"
		: : "m"(g), "m"(i), "i"(KERNEL_CS), "i"(KERNEL_DS), "r"((u32)TSS_SEL(cpu))
		: "rax", "memory");

	/* Software-enable the local APIC so fixed IPIs are accepted. */
	apic_set(0xf0, 0x100 | SPURIOUS_VECTOR);
}

static void uart_write(const char *s, u64 n)
{
	if (n > 4096)
		n = 4096;
	for (u64 i = 0; i < n; i++) {
		/* Wait for THRE (LSR bit 5), bounded so a silent UART cannot hang us. */
		for (int tries = 0; tries < 1000 && !(kin8(0x3fd) & 0x20); tries++)
			;
		kout8(0x3f8, s[i]);
	}
}

static __attribute__((noreturn)) void halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static __attribute__((noreturn)) void power(u8 value)
{
	kout8(0x600, value);
	halt();
}

static void service(struct frame *f)
{
	switch (f->rax) {
	case SYS_WRITE:
		uart_write((const char *)f->rdi, f->rsi);
		f->rax = 0;
		break;
	case SYS_OUTB:
		kout8(f->rdi, f->rsi);
		f->rax = 0;
		break;
	case SYS_INB:
		f->rax = kin8(f->rdi);
		break;
	case SYS_POWEROFF:
		power(0x00);
	case SYS_RESET:
		power(0x01);
	case SYS_HALT:
		halt();
	case SYS_APIC_WRITE:
		if (f->rdi >= 0x400 || (f->rdi & 15)) {
			f->rax = -1;
			break;
		}
		apic_set(f->rdi, f->rsi);
		f->rax = 0;
		break;
	case SYS_APIC_READ:
		f->rax = f->rdi < 0x400 && !(f->rdi & 15) ? (u64)apic_get(f->rdi) : (u64)-1;
		break;
	case SYS_DROP_IDT: {
		struct dtr none = { 0, 0 };
		__asm__ volatile("lidt %0" : : "m"(none));
		f->rax = 0;
		break;
	}
	default:
		f->rax = -1;
	}
}

static const char *const names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

/* report prints the unexpected exception in one write, then resets (exit 3). */
static __attribute__((noreturn)) void report(struct frame *f)
{
	static char buf[256];
	u64 cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	const char *name = names[f->vector] ? names[f->vector] : "exception";
	int n = format(buf, sizeof(buf),
		"%s: FAIL: %s (vector %lu) at CPL%lu: error 0x%lx rip 0x%lx rsp 0x%lx cr2 0x%lx\n",
		guest_name, name, f->vector, f->cs & 3, f->error, f->rip, f->rsp, cr2);
	uart_write(buf, n);
	power(0x01);
}

/* trap is called by trap_common for every vector. */
void trap(struct frame *f)
{
	if (f->vector == 6 && (f->cs & 3) == 3 && *(volatile u16 *)f->rip == 0x0b0f) {
		service(f);
		f->rip += 2;
		return;
	}
	if (f->vector >= 32) {
		__atomic_add_fetch(&irq_count[f->vector], 1, __ATOMIC_RELAXED);
		if (f->vector != SPURIOUS_VECTOR)
			apic_set(0xb0, 0);	/* EOI */
		return;
	}
	report(f);
}
