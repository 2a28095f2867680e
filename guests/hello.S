# hello: vCPU 0 prints a line on the 16550 at CPL0, drops to CPL3, prints a line through the
# control CONSOLE register and exits the VM with status 0. Other vCPUs write VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER hello_start

	.text
	.globl	hello_start
hello_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	leaq	hello_serial_msg(%rip), %rsi
	call	rt_serial_puts
	ENTER_USER hello_user

	.globl	hello_user
hello_user:				# CPL3
	leaq	hello_ring3_msg(%rip), %rsi
	call	rt_console_puts
	xorl	%edi, %edi
	jmp	rt_exit

	.section .rodata
hello_serial_msg:
	.asciz	"Hello from a tsvmm guest!\n"
hello_ring3_msg:
	.asciz	"Hello from ring 3\n"
