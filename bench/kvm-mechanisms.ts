// The bench's rows for KVM's own ways to take a guest write without a user-space exit (issue 10
// item 3), each against the same write as an ordinary exit handled by tsvmm, on the same guests:
//   - ioeventfd: pio-loop's 32-bit OUTs to the bench port, with KVM_IOEVENTFD on that port: KVM adds
//     each write to an eventfd; the count read back from it must equal the loop's iterations.
//   - coalesced MMIO: mmio-loop's ring-3 writes to the control device's BENCH register, in a zone
//     registered with KVM_REGISTER_COALESCED_MMIO: KVM queues them in the coalesced ring, tsvmm's
//     vCPU runner replays them into the device model before its next exit (vcpu-runner.ts), so the
//     device's hit count must equal the loop's iterations.
// A figure is microseconds per guest write: the vCPU threads' run time (first KVM_RUN to the last
// thread's end, VcpuControl.runSeconds()) over the writes. The like-for-like tsvmm/C exit ratio is
// not affected: those rows run without either mechanism.
import fs from 'node:fs';
import { native, c } from '../src/native';
import type { Vm } from '../src/vmm/vm';
import { BENCH_PORT, CONTROL_BASE, ControlRegs } from '../src/devices/control';

export type Mechanism = 'exit' | 'ioeventfd' | 'coalesced';

export interface MechanismRun {
  writes: number;
  usPerWrite: number;
}

/** Runs `vm` (pio-loop for exit/ioeventfd on PIO, mmio-loop for MMIO) with `mechanism`; closes it. */
export async function runWithMechanism(vm: Vm, iterations: number, mechanism: Mechanism): Promise<MechanismRun> {
  let efd = -1;
  if (mechanism === 'ioeventfd') {
    efd = native().eventfd(0, c('EFD_NONBLOCK'));
    if (efd < 0) throw new Error(`eventfd: errno ${-efd}`);
    vm.kvmVm.assignIoeventfd({ addr: BigInt(BENCH_PORT), len: 4, fd: efd, pio: true });
  } else if (mechanism === 'coalesced') {
    vm.kvmVm.registerCoalescedZone({ addr: CONTROL_BASE + BigInt(ControlRegs.BENCH), size: 8, pio: false });
  }
  try {
    vm.start();
    const r = await vm.wait();
    if (r.state !== 'shutdown' || r.exitCode !== 0) throw new Error(`bench VM (${mechanism}) ended in ${r.state} (status ${r.exitCode})`);
    const seconds = vm.control.runSeconds() ?? r.wallSeconds;
    let writes: number;
    if (mechanism === 'ioeventfd') {
      const b = Buffer.alloc(8);
      writes = fs.readSync(efd, b, 0, 8, null) === 8 ? Number(b.readBigUInt64LE(0)) : 0;
    } else {
      writes = vm.stats.get('bench.deviceHits');
    }
    if (writes !== iterations * vm.vcpus.length) throw new Error(`${mechanism}: ${writes} writes arrived, the guest made ${iterations * vm.vcpus.length}`);
    return { writes, usPerWrite: (seconds * 1e6) / iterations };
  } finally {
    vm.close();
    if (efd >= 0) native().close(efd);
  }
}
