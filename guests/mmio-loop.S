# mmio-loop: every vCPU drops to CPL3 and does BI_ITERATIONS 64-bit writes to the control BENCH
# register in a tight loop (one KVM_EXIT_MMIO each), records the count, then writes VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER mmio_start

	.text
	.globl	mmio_start
mmio_start:
	call	rt_init
	ENTER_USER mmio_user

	.globl	mmio_user
mmio_user:				# CPL3; %rdi = vCPU index, %rdx = boot info
	RESULT_RECORD %rbx
	movq	$STATE_RUNNING, R_STATE(%rbx)
	movq	BI_ITERATIONS(%rdx), %rcx
	movq	%rcx, %r8
	movabsq	$CONTROL_BASE, %rsi
	movq	%rdi, %rax			# the value written: the vCPU index
	testq	%rcx, %rcx
	jz	2f
	.globl	mmio_loop
mmio_loop:
1:	movq	%rax, CTL_BENCH(%rsi)
	decq	%rcx
	jnz	1b
2:	movq	%r8, R_ROUNDS(%rbx)
	movq	$STATE_FINISHED, R_STATE(%rbx)
	jmp	rt_user_vcpu_done
