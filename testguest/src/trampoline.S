/* trampoline.S: AP start-up code, copied to TRAMP_BASE: real mode -> long mode. */
#include "layout.h"

#define T(x) (TRAMP_BASE + (x) - tramp_start)

/*
 * Data, not code, in this image: start_cpu copies it below 1 MiB (a SIPI
 * starts the AP in real mode at vector << 12) and fills in the tramp_* slots.
 * The path is the classic one (SDM Vol. 3A §10.8.5): protected mode, then PAE
 * + EFER.LME + paging, then a far jump to a 64-bit code segment.
 */
	.section .rodata.tramp, "a"
	.globl tramp_start, tramp_end
	.globl tramp_cr3, tramp_efer, tramp_stack, tramp_entry, tramp_cpu
	.code16
tramp_start:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	tramp_gdtr - tramp_start
	mov	%cr0, %eax
	and	$~0x60000000, %eax	/* caches on: clear CD, NW */
	or	$1, %eax		/* PE */
	mov	%eax, %cr0
	ljmpl	$0x08, $T(pm32)

	.code32
pm32:
	mov	$0x10, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%cr4, %eax
	or	$0x20, %eax		/* PAE */
	mov	%eax, %cr4
	mov	T(tramp_cr3), %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx	/* EFER: the BSP's, with LME and without LMA */
	mov	T(tramp_efer), %eax
	mov	T(tramp_efer) + 4, %edx
	wrmsr
	mov	%cr0, %eax
	or	$0x80000000, %eax	/* PG */
	mov	%eax, %cr0
	ljmpl	$0x18, $T(lm64)

	.code64
lm64:
	mov	$0x10, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	T(tramp_stack), %rsp
	mov	T(tramp_cpu), %edi
	mov	T(tramp_entry), %rax
	jmp	*%rax

	.balign 8
tramp_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: data */
	.quad	0x00af9a000000ffff	/* 0x18: 64-bit code */
tramp_gdtr:
	.word	4 * 8 - 1
	.long	T(tramp_gdt)
	.balign 8
tramp_cr3:	.quad 0
tramp_efer:	.quad 0
tramp_stack:	.quad 0
tramp_entry:	.quad 0
tramp_cpu:	.quad 0
tramp_end:

	.section .note.GNU-stack, "", @progbits
