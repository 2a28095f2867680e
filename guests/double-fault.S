# double-fault: vCPU 0 points RSP at a non-canonical address and executes ud2 at CPL0. Delivering
# #UD cannot push its frame (#SS), nor can delivering that #SS, so the CPU raises #DF; the runtime
# gives #DF its own stack (TSS.IST1), so the handler runs and reports vector 8 through the control
# device instead of the VM ending in a triple fault. Other vCPUs write VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER df_start

	.text
	.globl	df_start
df_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	movabsq	$0x8000000000000000, %rsp	# non-canonical: every push faults
	ud2
1:	jmp	1b
