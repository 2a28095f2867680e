// The boot info page and the results area, and the guard that keeps guests/include/tsvmm.inc in
// step with the TypeScript constants.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  asmConstants,
  BOOT_INFO_GPA,
  BOOT_INFO_MAGIC,
  type BootInfo,
  BootInfoError,
  BootInfoOffsets,
  readBootInfo,
  readResults,
  RESULT_STRIDE,
  ResultOffsets,
  resultRecordGpa,
  RESULTS_GPA,
  writeBootInfo,
} from '../src/boot/boot-info';
import { GUEST_LOAD_GPA } from '../src/boot/layout';
import { CONTROL_BASE } from '../src/devices/control';

const ROOT = path.resolve(__dirname, '../..');

const INFO: BootInfo = {
  vcpus: 3,
  ramBytes: 256n << 20n,
  controlBase: CONTROL_BASE,
  ecamBase: 0xb000_0000n,
  pciWindowBase: 0xc000_0000n,
  pciWindowEnd: 0xfeb0_0000n,
  pciBdf: 3 << 3,
  bar0: 0xc000_1000n,
  iterations: 100000,
  toggles: 5000n,
  configAccess: 1,
  probeGpa: 0xc000_1000n,
};

function ram(): DataView {
  const bytes = new Uint8Array(2 << 20).fill(0xaa);
  return new DataView(bytes.buffer);
}

describe('boot info', () => {
  test('round trip, at the documented offsets', () => {
    const v = ram();
    writeBootInfo(v, INFO);
    const r = readBootInfo(v);
    assert.equal(r.magic, BOOT_INFO_MAGIC);
    assert.equal(Buffer.from(v.buffer, Number(BOOT_INFO_GPA), 8).toString('latin1'), 'TSVMBOOT');
    assert.equal(r.version, 1);
    assert.equal(r.vcpus, 3);
    assert.equal(r.ramBytes, 256n << 20n);
    assert.equal(r.iterations, 100000n);
    assert.equal(r.toggles, 5000n);
    assert.equal(r.pciBdf, 0x18);
    assert.equal(r.bar0, 0xc000_1000n);
    assert.equal(r.configAccess, 1);
    assert.equal(r.done, 0n);
    const base = Number(BOOT_INFO_GPA);
    assert.equal(v.getBigUint64(base + BootInfoOffsets.RESULTS_GPA, true), RESULTS_GPA);
    assert.equal(v.getBigUint64(base + BootInfoOffsets.CONTROL_BASE, true), 0xfeb0_0000n);
    assert.equal(v.getBigUint64(base + BootInfoOffsets.ECAM_BASE, true), 0xb000_0000n);
    assert.equal(BootInfoOffsets.DONE % 64, 0, 'the done flag starts its own cache line');
    // the rest of the page is cleared
    for (let off = 0x88; off < 0x1000; off += 8) assert.equal(v.getBigUint64(base + off, true), 0n);
  });

  test('the results area is zeroed and decodes per vCPU', () => {
    const v = ram();
    writeBootInfo(v, INFO);
    const rec1 = Number(resultRecordGpa(1));
    assert.equal(rec1, Number(RESULTS_GPA) + RESULT_STRIDE);
    v.setBigUint64(rec1 + ResultOffsets.STATE, 2n, true);
    v.setBigUint64(rec1 + ResultOffsets.FIRST_BAD_WIDTH, 4n, true);
    v.setBigUint64(rec1 + ResultOffsets.PROBE_VALUE, 0xffff_ffff_ffff_ffffn, true);
    const r = readResults(v, 3);
    assert.equal(r.length, 3);
    assert.equal(r[0]!.state, 0n);
    assert.equal(r[1]!.state, 2n);
    assert.equal(r[1]!.firstBadWidth, 4n);
    assert.equal(r[1]!.probeValue, 0xffff_ffff_ffff_ffffn);
    assert.equal(r[2]!.accesses, 0n);
    // every field lies inside a record, 8-byte aligned, distinct
    const offs = Object.values(ResultOffsets);
    assert.equal(new Set(offs).size, offs.length);
    for (const o of offs) assert.ok(o % 8 === 0 && o + 8 <= RESULT_STRIDE);
  });

  test('bad parameters are rejected with the field named', () => {
    assert.throws(() => writeBootInfo(ram(), { ...INFO, configAccess: 2 }), /configAccess 2/);
    assert.throws(() => writeBootInfo(ram(), { ...INFO, vcpus: 0 }), BootInfoError);
    assert.throws(() => writeBootInfo(ram(), { ...INFO, pciBdf: 0x10000 }), /pciBdf/);
    assert.throws(() => writeBootInfo(ram(), { ...INFO, iterations: -1 }), /iterations = -1/);
    assert.throws(() => writeBootInfo(ram(), { ...INFO, iterations: 1.5 }), /iterations/);
    assert.throws(() => writeBootInfo(new DataView(new ArrayBuffer(0x8000)), INFO), /boot area needs/);
  });
});

/** `.set NAME, VALUE` / `.equ NAME, VALUE` lines of an assembler include, VALUE a number. */
function parseAsmConstants(text: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^\.(?:set|equ)\s+([A-Za-z_][A-Za-z0-9_]*)\s*,\s*(.+)$/.exec(line);
    if (!m) continue;
    const value = m[2]!.trim();
    assert.match(value, /^(0x[0-9a-fA-F]+|[0-9]+)$/, `${m[1]}: tsvmm.inc values must be plain numbers (got '${value}')`);
    assert.ok(!out.has(m[1]!), `${m[1]} defined twice`);
    out.set(m[1]!, BigInt(value));
  }
  return out;
}

describe('guests/include/tsvmm.inc mirrors the TypeScript constants', () => {
  const inc = parseAsmConstants(fs.readFileSync(path.join(ROOT, 'guests/include/tsvmm.inc'), 'utf8'));
  const ts = asmConstants();

  test('every constant the guests need is there with the same value', () => {
    for (const [name, value] of Object.entries(ts)) {
      assert.ok(inc.has(name), `tsvmm.inc lacks .set ${name}, 0x${value.toString(16)}`);
      assert.equal(inc.get(name), value, `${name}: tsvmm.inc has 0x${inc.get(name)!.toString(16)}, TypeScript 0x${value.toString(16)}`);
    }
  });

  test('tsvmm.inc defines nothing TypeScript does not know', () => {
    for (const name of inc.keys()) assert.ok(name in ts, `tsvmm.inc defines ${name}, which asmConstants() does not list`);
  });

  test('the linker script loads images at GUEST_LOAD_GPA', () => {
    const ld = fs.readFileSync(path.join(ROOT, 'guests/guest.ld'), 'utf8');
    const m = /^\s*\.\s*=\s*(0x[0-9a-fA-F]+)\s*;/m.exec(ld);
    assert.ok(m, 'guest.ld sets the location counter');
    assert.equal(BigInt(m![1]!), GUEST_LOAD_GPA);
  });

  test('the parser itself: comments, .equ, and non-numeric values', () => {
    const m = parseAsmConstants('.set A, 0x10   # x\n\t.equ B,7\n# .set C, 1\n');
    assert.deepEqual([...m], [['A', 16n], ['B', 7n]]);
    assert.throws(() => parseAsmConstants('.set D, A + 1'), /plain numbers/);
  });
});
