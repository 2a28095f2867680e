// What tsvmm adds to each exit in JavaScript, measured without KVM: a vCPU whose "KVM_RUN" returns
// at once with a prepared kvm_run page (a PIO out to the bench port, or an MMIO write to the
// control device's BENCH register), run through the real VcpuRunner (decode, device lock,
// dispatch to the device, counters). The real exit costs come on top: ~7.5 us (PIO) and ~8 us
// (MMIO) per round trip on the target host (shared/design/host-notes.md), so this cost predicts
// the tsvmm/C ratio there as exit / (exit + cost).
import type { HypervisorVcpu } from '../src/hypervisor/hypervisor';
import { ExitReason, KVM_EXIT_IO_OUT, Run } from '../src/kvm/constants';
import { emptyRegs, type Regs, type Sregs } from '../src/kvm/regs';
import { Machine } from '../src/vmm/machine';
import { VcpuRunner } from '../src/vmm/vcpu-runner';
import { SimHostMemory } from '../src/sim/host-memory';
import { SimVm } from '../src/sim/kernel';
import { BENCH_PORT, CONTROL_BASE } from '../src/devices/control';

class ReplayVcpu implements HypervisorVcpu {
  // The size of KVM's vCPU mapping (kvm_run, the PIO page, the coalesced ring): the runner checks the
  // empty ring on every exit, as it does on KVM.
  readonly runPage = new DataView(new ArrayBuffer(3 * 4096));
  constructor(readonly index: number) {}
  run(): number {
    return 0;
  }
  getRegs(): Regs {
    return emptyRegs();
  }
  setRegs(): void {}
  getSregs(): Sregs {
    throw new Error('not used');
  }
  setSregs(): void {}
}

function measure(kind: 'pio' | 'mmio', n: number): number {
  const host = new SimHostMemory();
  const machine = Machine.create({
    config: { ramBytes: 2n << 20n, vcpus: 1, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first' },
    vm: new SimVm({ host, variant: 'unpatched' }),
    hostMemory: host,
    console: () => {},
  });
  const vcpu = new ReplayVcpu(0);
  const p = vcpu.runPage;
  if (kind === 'pio') {
    p.setUint32(Run.exitReason, ExitReason.IO, true);
    p.setUint8(Run.ioDirection, KVM_EXIT_IO_OUT);
    p.setUint8(Run.ioSize, 4);
    p.setUint16(Run.ioPort, BENCH_PORT, true);
    p.setUint32(Run.ioCount, 1, true);
    p.setBigUint64(Run.ioDataOffset, 1024n, true);
  } else {
    p.setUint32(Run.exitReason, ExitReason.MMIO, true);
    p.setBigUint64(Run.mmioPhysAddr, CONTROL_BASE + 0x18n, true);
    p.setUint32(Run.mmioLen, 8, true);
    p.setUint8(Run.mmioIsWrite, 1);
  }
  const runner = new VcpuRunner(vcpu, machine);
  for (let i = 0; i < 20_000; i++) runner.run(); // warm up the JIT
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) runner.run();
  const ns = Number(process.hrtime.bigint() - t) / n;
  if (machine.stats.get('bench.deviceHits') !== n + 20_000) throw new Error('exits did not reach the bench device');
  return ns;
}

export function measureExitHandlingCost(n = 300_000): { pioNs: number; mmioNs: number } {
  return { pioNs: measure('pio', n), mmioNs: measure('mmio', n) };
}
