# pio-loop: every vCPU does BI_ITERATIONS 32-bit outs to BENCH_PORT at CPL0 in a tight loop
# (one KVM_EXIT_IO each), records the count, then writes VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER pio_start

	.text
	.globl	pio_start
pio_start:
	call	rt_init
	RESULT_RECORD %rbx
	movq	$STATE_RUNNING, R_STATE(%rbx)
	movq	BI_ITERATIONS(%rdx), %rcx
	movq	%rcx, %r8
	movl	$BENCH_PORT, %edx
	movl	%edi, %eax			# the value written: the vCPU index
	testq	%rcx, %rcx
	jz	2f
	.globl	pio_loop
pio_loop:
1:	outl	%eax, %dx
	decq	%rcx
	jnz	1b
2:	movq	%r8, R_ROUNDS(%rbx)
	movq	$STATE_FINISHED, R_STATE(%rbx)
	jmp	rt_vcpu_done
