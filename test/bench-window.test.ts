// The bench's steady-state window (bench/bench.ts): tsvmm's side (VcpuControl.steadySeconds(), marked
// by the vCPU loop) and the C side (bench/kvm-loop.c --steady-after) start their clocks at the same
// point, after each vCPU's first W exits, and count only the exits after it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VcpuControl } from '../src/vmm/vcpu-control';
import { Vm } from '../src/vmm/vm';
import { writeBootImage } from '../src/boot/boot-image';
import { kvmSkip } from './kvm-available';

const C_LOOP = path.resolve(__dirname, '../../build/bench/kvm-loop');

test('steadySeconds runs from the earliest steady-state mark to the last end, and is undefined until every vCPU is marked', () => {
  const c = VcpuControl.create(2);
  const clock = VcpuControl as unknown as { now(): number };
  const real = clock.now;
  let t = 1000;
  clock.now = () => t;
  try {
    c.markRunStart(0);
    t = 1100;
    c.markRunStart(1);
    t = 1500;
    c.markSteadyStart(1);
    assert.equal(c.steadySeconds(), undefined, 'vCPU 0 has no mark yet');
    t = 1600;
    c.markSteadyStart(0);
    t = 3000;
    c.markRunEnd(0);
    t = 3500;
    c.markRunEnd(1);
    assert.equal(c.runSeconds(), 2.5);
    assert.equal(c.steadySeconds(), 2);
  } finally {
    clock.now = real;
  }
});

test(
  'kvm-loop refuses a --steady-after that is not a positive count (usage error, exit 64)',
  { skip: fs.existsSync(C_LOOP) ? false : 'build/bench/kvm-loop is not built' },
  () => {
    for (const bad of ['0', 'x', '-3', '']) assert.equal(spawnSync(C_LOOP, ['--steady-after', bad, '/nonexistent']).status, 64, `--steady-after '${bad}'`);
  },
);

describe(
  'both sides measure the same window on the real KVM',
  { skip: kvmSkip || (fs.existsSync(C_LOOP) ? false : 'build/bench/kvm-loop is not built') },
  () => {
    const N = 3000;
    const W = 1000;
    test('tsvmm marks every vCPU after W exits; kvm-loop counts N - W exits per vCPU after its mark', async () => {
      const vm = Vm.create({
        machine: { ramBytes: 64n << 20n, vcpus: 2, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
        guest: { image: 'pio-loop', params: { iterations: N } },
      });
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-window-'));
      try {
        const image = path.join(dir, 'img');
        writeBootImage(image, {
          ram: vm.memory.low,
          vcpus: vm.vcpus.map((v) => ({ regs: v.getRegs(), sregs: v.getSregs() })),
          ramSize: vm.memory.low.byteLength,
        });
        vm.start({ steadyAfterExits: W });
        const r = await vm.wait();
        assert.deepEqual([r.state, r.exitCode], ['shutdown', 0]);
        const whole = vm.control.runSeconds()!;
        const steady = vm.control.steadySeconds()!;
        assert.ok(steady > 0 && steady < whole, `steady ${steady} s within the whole run ${whole} s`);
        const c = JSON.parse(execFileSync(C_LOOP, ['--steady-after', String(W), image], { encoding: 'utf8' }).trim()) as {
          exits: number;
          seconds: number;
          steady: { afterExits: number; exits: number; seconds: number };
        };
        // Each vCPU: N bench exits and one VCPU_DONE exit.
        assert.equal(c.exits, 2 * (N + 1));
        assert.deepEqual([c.steady.afterExits, c.steady.exits], [W, 2 * (N + 1 - W)]);
        assert.ok(c.steady.seconds > 0 && c.steady.seconds < c.seconds);
      } finally {
        vm.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
