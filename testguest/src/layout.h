/* layout.h: constants shared by the runtime's assembly and C (preprocessor only). */
#ifndef LAYOUT_H
#define LAYOUT_H

#define MAX_CPUS	4
#define KSTACK_SIZE	16384	/* per-CPU CPL0 stack (traps, TSS.RSP0) */
#define DFSTACK_SIZE	4096	/* per-CPU #DF stack (TSS.IST1) */
#define USTACK_SIZE	65536	/* per-CPU CPL3 stack */

/* Our GDT (the vmm's boot GDT is replaced at start-up). */
#define KERNEL_CS	0x08
#define KERNEL_DS	0x10
#define USER_DS		0x1b	/* entry 3, RPL 3 */
#define USER_CS		0x23	/* entry 4, RPL 3 */
#define TSS_SEL(cpu)	(0x28 + 16 * (cpu))	/* 16-byte system descriptors */

#define TRAMP_BASE	0x10000	/* AP real-mode trampoline; SIPI vector 0x10 */

#define LAPIC_BASE	0xfee00000
#define SPURIOUS_VECTOR	0xff
#define IPI_VECTOR	0x40	/* fixed IPI vector the smp guest sends */

#endif
