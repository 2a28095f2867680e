// What the metrics read from a Vm (kept apart from metrics.ts so that module needs no KVM).
import type { Vm } from '../vmm/vm';
import { type VCPU_STATES, type MetricsSource } from './metrics';
import { VcpuStatus } from '../vmm/vcpu-control';

const STATE_NAME: Record<VcpuStatus, (typeof VCPU_STATES)[number]> = {
  [VcpuStatus.Starting]: 'starting',
  [VcpuStatus.Running]: 'running',
  [VcpuStatus.Stopped]: 'stopped',
  [VcpuStatus.Failed]: 'failed',
  [VcpuStatus.Paused]: 'paused',
};

export function metricsSourceOf(vm: Vm): MetricsSource {
  return {
    stats: vm.stats,
    runState: () => vm.machine.runState.state,
    vcpus: vm.vcpus.length,
    memslotOps: () => vm.machine.memoryMap.memslotOps,
    latencyMicros: () => vm.latency.values(),
    vcpuStates: () => vm.vcpus.map((v) => STATE_NAME[vm.control.status(v.index)]),
    deviceExits: () => vm.machine.deviceExitCounts(),
  };
}
