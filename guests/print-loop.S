# print-loop: vCPU 0 prints BI_ITERATIONS 63-byte lines through the control CONSOLE register at
# CPL3 (one MMIO exit per byte), then exits the VM with status 0; other vCPUs write VCPU_DONE.
# Used to test that slow or closed console readers never harm the VM.
	.include "tsvmm.inc"
	GUEST_HEADER print_start

	.text
	.globl	print_start
print_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	movq	BI_ITERATIONS(%rdx), %r12	# survives the drop to CPL3 (iretq keeps GPRs)
	ENTER_USER print_user

	.globl	print_user
print_user:				# CPL3
	leaq	print_line(%rip), %rsi
1:	testq	%r12, %r12
	jz	2f
	call	rt_console_puts
	decq	%r12
	jmp	1b
2:	xorl	%edi, %edi
	jmp	rt_exit

	.section .rodata
print_line:
	.asciz	"tsvmm print-loop: 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n"
