# exception: the runtime IDT is installed, then vCPU 0 executes ud2 at CPL0; the #UD handler
# reports vector 6, error 0 and the address of the ud2 (symbol exception_ud2) through the control
# PANIC registers, which stops the VM. Other vCPUs write VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER ex_start

	.text
	.globl	ex_start
ex_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	.globl	exception_ud2
exception_ud2:
	ud2
1:	jmp	1b
