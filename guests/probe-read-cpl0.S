# probe-read-cpl0: as probe-read, but vCPU 0 reads BI_PROBE_GPA at CPL0 (emulated on the target
# host, so the kernel answers the access differently).
	.include "tsvmm.inc"
	GUEST_HEADER probe_start

	.text
	.globl	probe_start
probe_start:
	call	rt_init
	testq	%rdi, %rdi
	jnz	rt_vcpu_done
	RESULT_RECORD %rbx
	movq	$STATE_RUNNING, R_STATE(%rbx)
	movq	BI_PROBE_GPA(%rdx), %rsi
	.globl	probe_load
probe_load:
	movq	(%rsi), %rax
	movq	%rax, R_PROBE_VALUE(%rbx)
	movq	$STATE_FINISHED, R_STATE(%rbx)
	jmp	rt_vcpu_done
