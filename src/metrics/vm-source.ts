// What the metrics read from a Vm (kept apart from metrics.ts so that module needs no KVM).
import type { Vm } from '../vmm/vm';
import type { MetricsSource } from './metrics';

export function metricsSourceOf(vm: Vm): MetricsSource {
  return {
    stats: vm.stats,
    runState: () => vm.machine.runState.state,
    vcpus: vm.vcpus.length,
    memslotOps: () => vm.machine.memoryMap.memslotOps,
    latencyMicros: () => vm.latency.values(),
  };
}
