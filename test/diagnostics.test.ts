// The QEMU-style register dump and the note for a triple fault whose state KVM has already reset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSregs, emptyRegs } from '../src/kvm/regs';
import { SIZEOF_KVM_SREGS } from '../src/kvm/constants';
import { formatCpuState, lostShutdownStateNote } from '../src/vmm/diagnostics';

function initState() {
  const regs = emptyRegs();
  regs.rip = 0xfff0n;
  regs.rflags = 2n;
  const sregs = decodeSregs(new Uint8Array(SIZEOF_KVM_SREGS));
  sregs.cs = { ...sregs.cs, selector: 0xf000, base: 0xffff0000n, limit: 0xffff, type: 0xa, s: 1, present: 1 };
  sregs.cr0 = 0x10n;
  return { regs, sregs };
}

test('the dump prints RIP, CPL, segments and the code bytes with the one at RIP marked', () => {
  const { regs, sregs } = initState();
  const code = Uint8Array.from([0x90, 0x0f, 0x0b, 0xf4]);
  const out = formatCpuState(regs, sregs, code, 1).split('\n');
  assert.equal(out[4], 'RIP=000000000000fff0 RFL=00000002 [-------] CPL=0');
  assert.equal(
    out.find((l) => l.startsWith('CS ')),
    'CS =f000 00000000ffff0000 0000ffff 00009a00',
  );
  assert.equal(out.at(-1), 'Code=90 <0f> 0b f4');
  assert.equal(formatCpuState(regs, sregs, undefined, 0).split('\n').at(-1), 'Code=??');
});

test('a triple fault whose registers are the INIT state says the real state was lost (AMD resets on shutdown)', () => {
  const { regs, sregs } = initState();
  assert.match(lostShutdownStateNote(regs, sregs) ?? '', /INIT state .* not the state at the triple fault: .*shutdown_interception/);
});

test('a triple fault anywhere else gets no note', () => {
  const longMode = initState();
  longMode.regs.rip = 0x100340n;
  longMode.sregs.cs = { ...longMode.sregs.cs, selector: 0x08, base: 0n, l: 1 };
  longMode.sregs.cr0 = 0x80000011n;
  assert.equal(lostShutdownStateNote(longMode.regs, longMode.sregs), undefined);
  // The reset vector itself, but with protection on: not the INIT state.
  const protectedMode = initState();
  protectedMode.sregs.cr0 = 0x11n;
  assert.equal(lostShutdownStateNote(protectedMode.regs, protectedMode.sregs), undefined);
});
