# triple-fault: vCPU 0 loads an IDT with limit 0 and executes ud2: #UD cannot be delivered (gate
# beyond the limit) -> #GP -> #DF -> triple fault -> KVM_EXIT_SHUTDOWN. Other vCPUs write VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER tf_start

	.text
	.globl	tf_start
tf_start:
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	lidt	tf_empty_idtr(%rip)
	.globl	tf_ud2
tf_ud2:
	ud2
1:	jmp	1b

	.section .rodata
	.balign	16
tf_empty_idtr:
	.word	0				# limit 0: no gate is inside the IDT
	.quad	0
