/* crt0.S: entry from the vmm, trap entry stubs, and the drops to CPL3. */
#include "layout.h"

	.section .text.entry, "ax"
	.code64

/*
 * The vmm enters here at CPL0 in long mode with interrupts off and RSI =
 * boot_params (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
 */
	.globl _start
_start:
	cli
	cld
	mov	%rsi, %r12
	/* .bss holds the GDT's TSSs and the IDT; stacks live outside it. */
	lea	__bss_start(%rip), %rdi
	lea	__bss_end(%rip), %rcx
	sub	%rdi, %rcx
	shr	$3, %rcx
	xor	%eax, %eax
	rep stosq
	mov	%r12, boot_params_addr(%rip)
	lea	kstacks+KSTACK_SIZE(%rip), %rsp
	xor	%edi, %edi
	call	kinit
	lea	user_start(%rip), %rdi
	lea	ustacks+USTACK_SIZE(%rip), %rsi
	xor	%edx, %edx
	jmp	enter_user

/*
 * An application processor arrives here from the trampoline in long mode,
 * with RSP = its CPL0 stack and EDI = its CPU index.
 */
	.globl ap_entry
ap_entry:
	cld
	mov	%rdi, %r12
	call	kinit
	mov	%r12, %rdi
	call	ustack_top
	mov	%rax, %rsi
	lea	ap_user_start(%rip), %rdi
	mov	%r12, %rdx
	jmp	enter_user

/* enter_user(rip, rsp, arg): iretq to CPL3 with interrupts on, RDI = arg. */
enter_user:
	pushq	$USER_DS
	pushq	%rsi
	pushq	$0x202
	pushq	$USER_CS
	pushq	%rdi
	mov	%rdx, %rdi
	xor	%eax, %eax
	xor	%ebx, %ebx
	xor	%ecx, %ecx
	xor	%edx, %edx
	xor	%esi, %esi
	xor	%ebp, %ebp
	iretq

/* CPL3 entry points. */
user_start:
	call	user_main
1:	jmp	1b

ap_user_start:
	call	ap_user_main
1:	pause
	jmp	1b

/*
 * Trap entry: one 16-byte stub per vector pushes a zero error code where the
 * CPU pushes none (SDM Vol. 3A §6.3.1 lists the vectors with one), then the
 * vector, and joins trap_common.
 */
	.text
	.balign 16
	.globl trap_stubs
trap_stubs:
vec = 0
	.rept 256
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	pushq	$vec
	.else
	pushq	$0
	pushq	$vec
	.endif
	jmp	trap_common
vec = vec + 1
	.endr

/* The frame layout matches struct frame in kernel.c. */
trap_common:
	push	%rax
	push	%rbx
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%rbp
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	mov	%rsp, %rdi
	cld
	call	trap
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rbp
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rbx
	pop	%rax
	add	$16, %rsp
	iretq

	.section .note.GNU-stack, "", @progbits
