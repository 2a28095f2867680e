# probe-read: vCPU 0 drops to CPL3, reads 8 bytes at BI_PROBE_GPA, stores them in its results
# record (R_PROBE_VALUE) and writes VCPU_DONE. Other vCPUs write VCPU_DONE at once.
	.include "tsvmm.inc"
	GUEST_HEADER probe_start

	.text
	.globl	probe_start
probe_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	ENTER_USER probe_user

	.globl	probe_user
probe_user:				# CPL3
	RESULT_RECORD %rbx
	movq	$STATE_RUNNING, R_STATE(%rbx)
	movq	BI_PROBE_GPA(%rdx), %rsi
	.globl	probe_load
probe_load:
	movq	(%rsi), %rax
	movq	%rax, R_PROBE_VALUE(%rbx)
	movq	$STATE_FINISHED, R_STATE(%rbx)
	jmp	rt_user_vcpu_done
