// The built-in guests, built from scratch into a temporary directory with scripts/build-guests.js,
// then inspected without running them: header entries, symbol placement, the exception stubs the
// runtime's IDT points at, and the instructions used (objdump). Needs GNU binutils (skipped, with
// the reason, where there are none).
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILTIN_GUESTS, parseGuestHeader } from '../src/boot/guest-image';
import { GUEST_LOAD_GPA } from '../src/boot/layout';

const ROOT = path.resolve(__dirname, '../..');
const guestBuild = require(path.join(ROOT, 'scripts/build-guests.js')) as {
  buildGuests(root: string): string[];
  guestNames(root: string): string[];
};

function have(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip: string | false = ['as', 'ld', 'objcopy', 'objdump', 'nm'].every(have) ? false : 'needs GNU binutils (as, ld, objcopy, objdump, nm)';

interface Sym {
  addr: bigint;
  type: string;
  name: string;
}

function symbols(elf: string): Sym[] {
  return execFileSync('nm', ['-n', elf], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /^([0-9a-f]+) (\w) (\S+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ addr: BigInt(`0x${m[1]}`), type: m[2]!, name: m[3]! }));
}

// Every mnemonic the guests may use. CPL0 code is run by KVM's instruction emulator on the target
// host, which lacks e.g. int3, cmpxchg16b, xrstor, fwait, ldmxcsr: keep new instructions out of
// the guests unless they are known to be emulated (or only run at CPL3).
const ALLOWED = new Set([
  'mov',
  'movabs',
  'movzbl',
  'movzwl',
  'lea',
  'push',
  'pop',
  'add',
  'sub',
  'and',
  'or',
  'xor',
  'shl',
  'shr',
  'inc',
  'dec',
  'cmp',
  'test',
  'jmp',
  'je',
  'jne',
  'jb',
  'jae',
  'call',
  'ret',
  'in',
  'out',
  'lidt',
  'hlt',
  'iretq',
  'pause',
  'ud2',
  'nop',
  'nopw',
  'nopl',
  'xchg',
]);
const PRIVILEGED = new Set(['in', 'out', 'lidt', 'hlt', 'iretq']);

interface Insn {
  addr: bigint;
  mnemonic: string;
  operands: string;
}

/** Disassembles .text of an ELF (AT&T syntax). */
function disassemble(elf: string): Insn[] {
  const out = execFileSync('objdump', ['-d', '-j', '.text', '--no-show-raw-insn', '-M', 'att', elf], { encoding: 'utf8' });
  const insns: Insn[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    let mnemonic = m[2]!;
    let operands = m[3]!.replace(/\s+#.*$/, '').trim();
    // prefixes objdump prints as separate words
    while (['cs', 'ds', 'data16', 'rep', 'repz', 'lock'].includes(mnemonic) && operands) {
      const sp = operands.split(/\s+/);
      mnemonic = sp[0]!;
      operands = sp.slice(1).join(' ');
    }
    // size suffixes objdump adds when the operands leave the size open (cmpq, incq, ...)
    if (!ALLOWED.has(mnemonic) && /[bwlq]$/.test(mnemonic) && ALLOWED.has(mnemonic.slice(0, -1))) mnemonic = mnemonic.slice(0, -1);
    insns.push({ addr: BigInt(`0x${m[1]}`), mnemonic, operands });
  }
  return insns;
}

/** Instructions in [start of `name`, next symbol). */
function functionBody(insns: Insn[], syms: Sym[], name: string): Insn[] {
  const text = syms.filter((s) => s.type === 'T' || s.type === 't').sort((a, b) => (a.addr < b.addr ? -1 : 1));
  const i = text.findIndex((s) => s.name === name);
  assert.ok(i >= 0, `symbol ${name}`);
  const start = text[i]!.addr;
  const end = text.slice(i + 1).find((s) => s.addr > start)?.addr ?? 1n << 64n;
  return insns.filter((x) => x.addr >= start && x.addr < end);
}

const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

describe('built-in guests', { skip }, () => {
  let tmp = '';
  let built: string[] = [];
  const elf = (n: string) => path.join(tmp, 'build/guests', `${n}.elf`);
  const bin = (n: string) => path.join(tmp, 'build/guests', `${n}.bin`);

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-guests-'));
    fs.cpSync(path.join(ROOT, 'guests'), path.join(tmp, 'guests'), { recursive: true });
    built = guestBuild.buildGuests(tmp);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('BUILTIN_GUESTS lists exactly guests/*.S, and all of them assemble and link', () => {
    assert.deepEqual([...BUILTIN_GUESTS].sort(), guestBuild.guestNames(ROOT));
    assert.deepEqual(built, guestBuild.guestNames(ROOT));
    for (const n of BUILTIN_GUESTS) assert.ok(fs.statSync(bin(n)).size > 0, n);
  });

  test('a second build is a no-op (outputs newer than inputs)', () => {
    assert.deepEqual(guestBuild.buildGuests(tmp), []);
  });

  test('headers parse and every entry is a global function of the image', () => {
    for (const n of BUILTIN_GUESTS) {
      const bytes = new Uint8Array(fs.readFileSync(bin(n)));
      const { entries } = parseGuestHeader(bytes, n);
      const syms = symbols(elf(n));
      assert.equal(syms.find((s) => s.name === '__image_start')?.addr, GUEST_LOAD_GPA, `${n}: image starts at 1 MiB`);
      const end = syms.find((s) => s.name === '__image_end')!.addr;
      assert.equal(BigInt(bytes.length), end - GUEST_LOAD_GPA, `${n}: the .bin is the whole image`);
      for (const e of entries) {
        assert.ok(
          syms.some((s) => s.addr === e && s.type === 'T'),
          `${n}: entry 0x${e.toString(16)} is a global text symbol`,
        );
      }
      assert.ok(bytes.length < 64 * 1024, `${n} stays small`);
    }
  });

  test('exception stubs: 512-aligned, 16 bytes each, push the vector (and 0 where the CPU pushes no error code)', () => {
    for (const n of BUILTIN_GUESTS) {
      const syms = symbols(elf(n));
      const stubs = syms.find((s) => s.name === 'rt_exception_stubs')!.addr;
      const common = syms.find((s) => s.name === 'rt_exception_common')!.addr;
      assert.equal(stubs % 512n, 0n);
      assert.equal(syms.find((s) => s.name === 'rt_exception_stubs_end')!.addr - stubs, 512n);
      const insns = disassemble(elf(n));
      for (let vec = 0; vec < 32; vec++) {
        const at = stubs + BigInt(16 * vec);
        const i = insns.findIndex((x) => x.addr === at);
        assert.ok(i >= 0, `${n}: an instruction starts at stub ${vec}`);
        const seq = insns.slice(i, i + 3);
        const expect = ERROR_CODE_VECTORS.has(vec) ? [`push $0x${vec.toString(16)}`] : ['push $0x0', `push $0x${vec.toString(16)}`];
        assert.deepEqual(
          seq.slice(0, expect.length).map((x) => `${x.mnemonic} ${x.operands}`),
          expect,
          `${n}: stub ${vec}`,
        );
        const jmp = seq[expect.length]!;
        assert.equal(jmp.mnemonic, 'jmp');
        assert.equal(BigInt(`0x${jmp.operands.split(/\s+/)[0]}`), common, `${n}: stub ${vec} jumps to the common handler`);
        assert.ok(jmp.addr < at + 16n);
      }
    }
  });

  test('rt_init builds interrupt gates (selector 0x10, type 0x8e) and rt_enter_user irets to 0x33/0x2b', () => {
    const syms = symbols(elf('hello'));
    const insns = disassemble(elf('hello'));
    const init = functionBody(insns, syms, 'rt_init');
    assert.ok(
      init.some((x) => x.mnemonic === 'movabs' && x.operands.startsWith('$0x8e0000100000,')),
      'gate attributes',
    );
    assert.ok(init.some((x) => x.mnemonic === 'lidt'));
    const enter = functionBody(insns, syms, 'rt_enter_user').map((x) => `${x.mnemonic} ${x.operands}`.trim());
    assert.deepEqual(enter, ['push $0x2b', 'push %rcx', 'push $0x2', 'push $0x33', 'push %rax', 'iretq']);
    // the IDT descriptor rt_init loads: limit 32*16-1, base IDT_GPA
    const idtr = syms.find((s) => s.name === 'rt_idtr')!.addr;
    const bytes = fs.readFileSync(bin('hello'));
    const off = Number(idtr - GUEST_LOAD_GPA);
    assert.equal(bytes.readUInt16LE(off), 511);
    assert.equal(bytes.readBigUInt64LE(off + 2), 0x8000n);
  });

  test('only instructions from the allowlist; none privileged in the code that runs at CPL3', () => {
    const cpl3 = ['hello_user', 'mmio_user', 'mmio_loop', 'probe_user', 'race_accessor', 'race_round', 'rt_console_puts', 'rt_user_vcpu_done', 'rt_exit'];
    for (const n of BUILTIN_GUESTS) {
      const insns = disassemble(elf(n));
      for (const x of insns) assert.ok(ALLOWED.has(x.mnemonic), `${n}: '${x.mnemonic} ${x.operands}' at 0x${x.addr.toString(16)} is not on the allowlist`);
      const syms = symbols(elf(n));
      for (const f of cpl3) {
        if (!syms.some((s) => s.name === f)) continue;
        for (const x of functionBody(insns, syms, f)) assert.ok(!PRIVILEGED.has(x.mnemonic), `${n}: ${f} runs at CPL3 but has '${x.mnemonic}'`);
      }
    }
  });

  test('control-page addresses are loaded as 64-bit immediates, never sign-extended 32-bit ones', () => {
    for (const n of BUILTIN_GUESTS) {
      for (const x of disassemble(elf(n))) {
        assert.ok(!/0xfffffffffeb0/.test(x.operands), `${n}: ${x.mnemonic} ${x.operands} sign-extends CONTROL_BASE`);
      }
    }
  });

  test('triple-fault and exception end in ud2 at a known symbol', () => {
    for (const [n, sym] of [
      ['triple-fault', 'tf_ud2'],
      ['exception', 'exception_ud2'],
    ] as const) {
      const syms = symbols(elf(n));
      const at = syms.find((s) => s.name === sym)!.addr;
      assert.equal(disassemble(elf(n)).find((x) => x.addr === at)?.mnemonic, 'ud2');
    }
  });
});
