// bench/kvm-fault.c, the C floor of the fault-to-completion latency, on the real /dev/kvm: it runs the
// race guest from tsvmm's own boot image, recovers every EFAULT the way its --deleter says, and the
// guest sees only true values or Unsupported Requests. Functional checks only (no timing asserted).
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kvmSkip } from './kvm-available';
import { C_FAULT, raceBootImage, runCFault } from '../bench/fault-latency';

const TOGGLES = 300;

describe('bench/kvm-fault.c on real KVM', { skip: kvmSkip }, () => {
  let tmp = '';
  let image = '';
  let bars: { gpa: bigint; size: bigint }[] = [];
  before(() => {
    assert.ok(fs.existsSync(C_FAULT), `${C_FAULT} is built by npm run build`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-kvm-fault-'));
    image = path.join(tmp, 'race.img');
    bars = raceBootImage(image, TOGGLES);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('the race image gives kvm-fault BAR0 first, then BAR2, as the shm function has them', () => {
    assert.equal(bars.length, 2);
    assert.deepEqual(
      bars.map((b) => b.size),
      [0x1000n, 0x10000n],
    );
  });

  test('faulter: the faulting vCPU deletes its BAR memslot, the toggler the other BAR; the guest sees no bad value', () => {
    const r = runCFault(image, bars, 'faulter', 'fault');
    assert.equal(r.toggles, TOGGLES);
    assert.equal(r.guest.badValues, 0);
    assert.ok(r.intervals > 0, 'with the toggler waiting, the accessor faults after revocations');
    assert.equal(r.togglerDeleteMicros.samples, TOGGLES, 'BAR2, every toggle');
    assert.ok(r.faulterDeleteMicros.samples > 0 && r.faulterDeleteMicros.samples <= TOGGLES);
    assert.equal(r.revocationMicros.samples, TOGGLES);
    assert.ok(r.guest.urReads > 0, 'the retried accesses complete as Unsupported Requests (all ones)');
    const p = r.faultToCompletionMicros;
    assert.ok(p.min > 0 && p.min <= p.median && p.median <= p.p99 && p.p99 <= p.max, JSON.stringify(p));
  });

  test('other: the toggler deletes every BAR memslot, the faulting vCPU none', () => {
    const r = runCFault(image, bars, 'other');
    assert.equal(r.toggles, TOGGLES);
    assert.equal(r.guest.badValues, 0);
    assert.equal(r.faulterDeleteMicros.samples, 0);
    assert.equal(r.togglerDeleteMicros.samples, 2 * TOGGLES, 'both BARs, every toggle');
  });

  test('race (tsvmm --bar-order qemu): each memslot is deleted once per toggle, by whoever comes first', () => {
    const r = runCFault(image, bars, 'race');
    assert.equal(r.toggles, TOGGLES);
    assert.equal(r.guest.badValues, 0);
    assert.equal(r.faulterDeleteMicros.samples + r.togglerDeleteMicros.samples, 2 * TOGGLES);
  });
});

describe('bench/kvm-fault.c usage', () => {
  test('bad options exit 64 with the usage line', () => {
    for (const args of [
      [],
      ['--deleter', 'nobody', '--bar', '0x1000:0x1000', 'x'],
      ['--toggler-waits', 'forever', '--bar', '0x1000:0x1000', 'x'],
      ['--deleter', 'other', '--toggler-waits', 'fault', '--bar', '0x1000:0x1000', 'x'],
    ]) {
      const r = spawnSync(C_FAULT, args, { encoding: 'utf8' });
      assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('a --bar that is not page aligned is refused by name', () => {
    const r = spawnSync(C_FAULT, ['--bar', '0x1001:0x1000', 'x'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--bar wants a page-aligned GPA:SIZE, got '0x1001:0x1000'/);
  });
});
