# runtime.S: the common runtime linked into every built-in guest (GNU as, AT&T syntax).
#
#   rt_init            CPL0: fill the shared IDT's exception gates 0..31 and load it
#   rt_enter_user      CPL0 -> CPL3 with iretq (%rax = RIP, %rcx = RSP); see ENTER_USER
#   rt_serial_puts     CPL0: NUL-terminated string at %rsi to the 16550 at COM1_BASE
#   rt_console_puts    any CPL: NUL-terminated string at %rsi to the control CONSOLE register
#   rt_vcpu_done       CPL0: write VCPU_DONE, then halt
#   rt_user_vcpu_done  CPL3: write VCPU_DONE, then spin (CPL3 cannot hlt)
#   rt_exit            any CPL: write EXIT with status %edi
#
# Exceptions (vectors 0..31, from CPL0 or CPL3) are reported through the control device:
# PANIC_VEC = vector, PANIC_ERR = error code (0 when the CPU pushes none), PANIC_RIP = faulting
# RIP, then PANIC_GO, which stops the VM. A CPL3 fault switches to TSS.RSP0 (the vCPU's kernel
# stack, set up by the VMM) first.
#
# Everything here avoids instructions KVM's emulator lacks (CPL0 code is emulated on the target
# host): only mov/movzx/lea/push/pop/add/sub/and/or/shl/shr/inc/dec/cmp/test/jcc/jmp/call/ret,
# in/out, lidt, hlt and iretq.

	.include "tsvmm.inc"

	.set	IDT_EXCEPTION_GATES, 32
	.set	STUB_SIZE, 16
	.set	DF_IST, 1
	.set	USER_RFLAGS, 0x2		# IF=0, IOPL=0 (this host shows CPL3 0x202 anyway)
	.set	COM1_THR, COM1_BASE + 0
	.set	COM1_LSR, COM1_BASE + 5
	.set	LSR_THRE, 0x20

	.text
	.code64

# rt_init: fills IDT_GPA[0..31] with 64-bit interrupt gates (selector KERNEL_CS, DPL0) to the stubs
# below and loads the IDT. Every gate but #DF's uses the current stack (IST0); #DF's uses IST1, the
# vCPU's own double-fault stack (TSS.IST1, set by the VMM), so a fault while the CPU pushes an
# exception frame (a bad kernel stack) still reaches a handler and is reported as vector 8
# instead of ending in a triple fault. All vCPUs call it; they write identical bytes, so the order
# does not matter. Clobbers %rax, %rcx, %r8 and flags; preserves everything else.
	.globl	rt_init
	.type	rt_init, @function
rt_init:
	# Gate low quadword: offset[15:0] | selector<<16 | (P|DPL0|type 0xE)<<40 | offset[31:16]<<48.
	# The high quadword (offset[63:32]) is 0: the image is below 4 GiB. The stubs are 512-aligned,
	# so adding 16 per vector only changes offset[15:0] and never carries.
	leaq	rt_exception_stubs(%rip), %rax
	movq	%rax, %rcx
	andl	$0xffff, %eax			# zero-extends: %rax = offset[15:0]
	shrq	$16, %rcx
	shlq	$48, %rcx			# offset[31:16] -> bits 63:48
	orq	%rcx, %rax
	movabsq	$((0x8e << 40) | (KERNEL_CS << 16)), %rcx
	orq	%rcx, %rax
	movl	$IDT_GPA, %ecx
	movl	$IDT_EXCEPTION_GATES, %r8d
1:	movq	%rax, (%rcx)
	movq	$0, 8(%rcx)
	addq	$STUB_SIZE, %rax
	addq	$16, %rcx
	decl	%r8d
	jnz	1b
	orb	$DF_IST, IDT_GPA + 16 * 8 + 4	# gate byte 4, bits 2:0 = IST index
	lidt	rt_idtr(%rip)
	ret
	.size	rt_init, . - rt_init

# rt_enter_user: iretq to CPL3 at %rax with RSP = %rcx, CS = USER_CS, SS = USER_DS.
	.globl	rt_enter_user
	.type	rt_enter_user, @function
rt_enter_user:
	pushq	$USER_DS
	pushq	%rcx
	pushq	$USER_RFLAGS
	pushq	$USER_CS
	pushq	%rax
	iretq
	.size	rt_enter_user, . - rt_enter_user

# rt_serial_puts: CPL0. Polls LSR.THRE before each byte. Preserves all registers but flags.
	.globl	rt_serial_puts
	.type	rt_serial_puts, @function
rt_serial_puts:
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
1:	movzbl	(%rsi), %ecx
	testl	%ecx, %ecx
	jz	3f
	movl	$COM1_LSR, %edx
2:	inb	%dx, %al
	testb	$LSR_THRE, %al
	jz	2b
	movl	$COM1_THR, %edx
	movl	%ecx, %eax
	outb	%al, %dx
	incq	%rsi
	jmp	1b
3:	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	ret
	.size	rt_serial_puts, . - rt_serial_puts

# rt_console_puts: any CPL (MMIO). One 64-bit CONSOLE write per byte. Preserves all but flags.
	.globl	rt_console_puts
	.type	rt_console_puts, @function
rt_console_puts:
	pushq	%rax
	pushq	%rbx
	pushq	%rsi
	movabsq	$CONTROL_BASE, %rbx
1:	movzbl	(%rsi), %eax
	testl	%eax, %eax
	jz	2f
	movq	%rax, CTL_CONSOLE(%rbx)
	incq	%rsi
	jmp	1b
2:	popq	%rsi
	popq	%rbx
	popq	%rax
	ret
	.size	rt_console_puts, . - rt_console_puts

# rt_vcpu_done: CPL0. The VMM stops running this vCPU at the write; the hlt loop is a backstop.
	.globl	rt_vcpu_done
	.type	rt_vcpu_done, @function
rt_vcpu_done:
	movabsq	$CONTROL_BASE, %rax
	movq	$0, CTL_VCPU_DONE(%rax)
1:	hlt
	jmp	1b
	.size	rt_vcpu_done, . - rt_vcpu_done

# rt_user_vcpu_done: CPL3 version (hlt would #GP).
	.globl	rt_user_vcpu_done
	.type	rt_user_vcpu_done, @function
rt_user_vcpu_done:
	movabsq	$CONTROL_BASE, %rax
	movq	$0, CTL_VCPU_DONE(%rax)
1:	pause
	jmp	1b
	.size	rt_user_vcpu_done, . - rt_user_vcpu_done

# rt_exit: any CPL. The VM exits with status %dil.
	.globl	rt_exit
	.type	rt_exit, @function
rt_exit:
	movabsq	$CONTROL_BASE, %rax
	movzbl	%dil, %ecx
	movq	%rcx, CTL_EXIT(%rax)
1:	jmp	1b
	.size	rt_exit, . - rt_exit

# Exception stubs: stub v sits at rt_exception_stubs + 16*v. Vectors whose exceptions carry an
# error code (8, 10-14, 17, 21, 29, 30) have it pushed by the CPU; the others push 0.
	.balign	512
	.globl	rt_exception_stubs
rt_exception_stubs:
	.irp	vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign	STUB_SIZE
	.if	(\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	pushq	$\vec
	.else
	pushq	$0
	pushq	$\vec
	.endif
	jmp	rt_exception_common
	.endr
	.balign	STUB_SIZE
rt_exception_stubs_end:

# Stack on entry: vector, error code, RIP, CS, RFLAGS, RSP, SS. Never returns.
	.globl	rt_exception_common
rt_exception_common:
	movabsq	$CONTROL_BASE, %rbx
	movq	0(%rsp), %rax
	movq	%rax, CTL_PANIC_VEC(%rbx)
	movq	8(%rsp), %rax
	movq	%rax, CTL_PANIC_ERR(%rbx)
	movq	16(%rsp), %rax
	movq	%rax, CTL_PANIC_RIP(%rbx)
	movq	$1, CTL_PANIC_GO(%rbx)
1:	hlt
	jmp	1b

	.section .rodata
	.balign	16
rt_idtr:
	.word	IDT_EXCEPTION_GATES * 16 - 1
	.quad	IDT_GPA
