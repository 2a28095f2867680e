# race: the disabled-BAR reproducer.
#
# vCPU 0, the toggler (CPL0): waits until every accessor runs, then BI_TOGGLES times clears and
# sets PCI_COMMAND.MEM of the passthrough function BI_PCI_BDF, each by a read-modify-write of the
# 16-bit COMMAND register (config offset 4) through 0xcf8/0xcfc (BI_CONFIG_ACCESS 0) or ECAM
# (BI_CONFIG_ACCESS 1). Then it sets BI_DONE and writes VCPU_DONE.
#
# vCPU k >= 1, accessor k-1 (CPL3, native on the target host): until BI_DONE is set, reads BAR0's
# ID register at widths 1, 2, 4 and 8 and classifies each value as the true value of that width
# (the low bytes of RACE_ID_VALUE), all ones of that width (an Unsupported Request answer), or
# bad; then writes a unique increasing value v to its scratch register BAR0 + 0x100 + 8*(k-1) and
# reads it back: v (confirmed), all ones (UR), or a value in [last confirmed, v) (the write was
# dropped) are valid, anything else is bad. Counters go to the vCPU's results record
# (src/boot/boot-info.ts documents them), then VCPU_DONE.
	.include "tsvmm.inc"
	GUEST_HEADER race_start

	.text
	.globl	race_start
race_start:
	call	rt_init
	movq	%rdx, %rbp			# %rbp = boot info, for life
	RESULT_RECORD %r15			# %r15 = this vCPU's results record, for life
	testq	%rdi, %rdi
	jnz	race_accessor_start

# ---------------------------------------------------------------- toggler (vCPU 0, CPL0)
race_toggler:
	movq	$STATE_RUNNING, R_STATE(%r15)
	# Wait for accessors 1..n-1 to report RUNNING, so that the toggles overlap their accesses.
	movl	BI_VCPUS(%rbp), %r8d
	movl	$1, %ecx
1:	cmpl	%r8d, %ecx
	jae	3f
	movq	%rcx, %rax
	shlq	$RESULT_STRIDE_SHIFT, %rax
	addq	$RESULTS_GPA, %rax
2:	cmpq	$0, R_STATE(%rax)
	je	2b
	incl	%ecx
	jmp	1b
3:	movq	BI_TOGGLES(%rbp), %r12		# %r12 = toggles left
	movq	BI_CONFIG_ACCESS(%rbp), %r14	# %r14 = method
	movq	BI_PCI_BDF(%rbp), %rbx
	cmpq	$CONFIG_ACCESS_ECAM, %r14
	je	4f
	# %rbx = CONFIG_ADDRESS value: enable | bus<<16 | dev<<11 | fn<<8 | register (= bdf<<8 | reg)
	shlq	$8, %rbx
	orl	$(0x80000000 | PCI_COMMAND), %ebx	# 32-bit op: no sign extension into %rbx
	jmp	race_toggle_loop
	# %rbx = ECAM address: base + (bus<<20 | dev<<15 | fn<<12 = bdf<<12) + register
4:	shlq	$12, %rbx
	addq	BI_ECAM_BASE(%rbp), %rbx
	addq	$PCI_COMMAND, %rbx

	.globl	race_toggle_loop
race_toggle_loop:
	testq	%r12, %r12
	jz	race_toggles_done
	call	race_cfg_read_command
	andl	$~PCI_COMMAND_MEMORY, %eax
	call	race_cfg_write_command
	call	race_cfg_read_command
	orl	$PCI_COMMAND_MEMORY, %eax
	call	race_cfg_write_command
	incq	R_TOGGLES(%r15)
	decq	%r12
	jmp	race_toggle_loop
race_toggles_done:
	movq	$1, BI_DONE(%rbp)
	movq	$STATE_FINISHED, R_STATE(%r15)
	jmp	rt_vcpu_done

# %eax = COMMAND (zero-extended). Uses %rbx (address), %r14 (method); clobbers %edx.
race_cfg_read_command:
	cmpq	$CONFIG_ACCESS_ECAM, %r14
	je	1f
	movl	%ebx, %eax
	movl	$PCI_CONFIG_ADDRESS, %edx
	outl	%eax, %dx
	movl	$PCI_CONFIG_DATA, %edx		# + (PCI_COMMAND & 3) = + 0
	inw	%dx, %ax
	movzwl	%ax, %eax
	ret
1:	movzwl	(%rbx), %eax
	ret

# Writes %ax to COMMAND (16 bits: STATUS at offset 6 is not touched). Clobbers %edx.
race_cfg_write_command:
	cmpq	$CONFIG_ACCESS_ECAM, %r14
	je	1f
	pushq	%rax
	movl	%ebx, %eax
	movl	$PCI_CONFIG_ADDRESS, %edx
	outl	%eax, %dx
	popq	%rax
	movl	$PCI_CONFIG_DATA, %edx
	outw	%ax, %dx
	ret
1:	movw	%ax, (%rbx)
	ret

# ---------------------------------------------------------------- accessors (vCPU >= 1, CPL3)
race_accessor_start:
	ENTER_USER race_accessor

# ID_READ width, load, dst, true, ones: one read of the ID register, classified and counted.
# The load zero-extends into %rax. Clobbers %rax, %rcx, %rdx, %r8.
.macro ID_READ width, load, dst, truev, onesv
	\load	RACE_ID_OFFSET(%r14), \dst
	incq	R_ACCESSES(%r15)
	movabsq	$\truev, %rcx
	cmpq	%rcx, %rax
	je	1f
	movabsq	$\onesv, %rcx
	cmpq	%rcx, %rax
	je	2f
	movabsq	$\truev, %r8
	movl	$\width, %ecx
	movl	$RACE_ID_OFFSET, %edx
	call	race_bad
	jmp	3f
1:	incq	R_TRUE_READS(%r15)
	jmp	3f
2:	incq	R_UR_READS(%r15)
3:
.endm

	.globl	race_accessor
race_accessor:				# CPL3; %rdi = vCPU index, %rbp = boot info, %r15 = record
	movq	BI_BAR0(%rbp), %r14		# %r14 = BAR0
	leaq	-1(%rdi), %r13
	shlq	$3, %r13
	leaq	RACE_SCRATCH_OFFSET(%r14,%r13), %r13	# %r13 = this accessor's scratch register
	movl	$1, %r12d			# %r12 = next value to write
	xorl	%r11d, %r11d			# %r11 = last confirmed value
	leaq	BI_DONE(%rbp), %r10		# %r10 = &done
	movq	$STATE_RUNNING, R_STATE(%r15)

	.globl	race_round
race_round:
	cmpq	$0, (%r10)
	jne	race_finish
	incq	R_ROUNDS(%r15)
	ID_READ	1, movzbl, %eax, (RACE_ID_VALUE & 0xff), 0xff
	ID_READ	2, movzwl, %eax, (RACE_ID_VALUE & 0xffff), 0xffff
	ID_READ	4, movl, %eax, (RACE_ID_VALUE & 0xffffffff), 0xffffffff
	ID_READ	8, movq, %rax, RACE_ID_VALUE, -1
	# scratch: write v, read it back
	movq	%r12, (%r13)
	incq	R_SCRATCH_WRITES(%r15)
	movq	(%r13), %rax
	addq	$2, R_ACCESSES(%r15)
	cmpq	%r12, %rax
	jne	1f
	incq	R_SCRATCH_CONFIRMED(%r15)
	movq	%r12, %r11
	jmp	4f
1:	cmpq	$-1, %rax
	jne	2f
	incq	R_SCRATCH_UR(%r15)
	incq	R_UR_READS(%r15)
	jmp	4f
2:	cmpq	%r11, %rax
	jb	3f				# older than the last confirmed value: bad
	cmpq	%r12, %rax
	jae	3f				# newer than anything written: bad
	incq	R_SCRATCH_STALE(%r15)		# a dropped write left an older value
	jmp	4f
3:	movl	$8, %ecx
	movq	%r13, %rdx
	subq	%r14, %rdx			# offset in BAR0
	movq	%r12, %r8			# expected: the value just written
	call	race_bad
4:	incq	%r12
	jmp	race_round

race_finish:
	movq	$STATE_FINISHED, R_STATE(%r15)
	jmp	rt_user_vcpu_done

# race_bad: counts a bad value and keeps the first. In: %rax value, %rcx width, %rdx BAR0 offset,
# %r8 expected value.
race_bad:
	incq	R_BAD_VALUES(%r15)
	cmpq	$0, R_FIRST_BAD_WIDTH(%r15)
	jne	1f
	movq	%rax, R_FIRST_BAD_VALUE(%r15)
	movq	%rcx, R_FIRST_BAD_WIDTH(%r15)
	movq	%rdx, R_FIRST_BAD_OFFSET(%r15)
	movq	%r8, R_FIRST_BAD_EXPECTED(%r15)
1:	ret
