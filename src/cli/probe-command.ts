// `tsvmm probe`: what this host's KVM does when a guest touches a revoked host mapping behind a
// memslot — the kernel half of the disabled-BAR race — from CPL3 and from CPL0, plus a one-line
// verdict a kernel developer can paste.
import type { Command } from 'commander';
import { Vm } from '../vmm/vm';
import { KvmSystem } from '../kvm/kvm';
import { KVM_CAP_MEMORY_FAULT_INFO, KVM_API_VERSION, Run } from '../kvm/constants';
import { revocableHost } from '../vmm/host-revocation';
import { VcpuRunner } from '../vmm/vcpu-runner';
import { runSteps } from '../steps';
import { describeErrnoName, EFAULT } from '../errno';
import { reportErrorAndExit } from './common';

export type ProbeAnswer = 'annotated' | 'unannotated' | 'emulated-mmio' | 'no-fault' | 'other';

export interface ProbeAccessResult {
  answer: ProbeAnswer;
  /** What KVM_RUN returned for the access, as seen by the VMM. */
  detail: string;
}

export interface ProbeReport {
  kvm: boolean;
  reason?: string;
  apiVersion?: number;
  memoryFaultInfoCap?: number;
  cpl3?: ProbeAccessResult;
  cpl0?: ProbeAccessResult;
  verdict: string;
}

const MAX_EXITS = 100_000;

/** Boots a probe guest whose first BAR access hits a revoked mapping, and classifies KVM's answer. */
function probeAccess(guest: 'probe-read' | 'probe-read-cpl0', kvmPath: string): ProbeAccessResult {
  // The guest reads BAR0 of a passthrough function whose host mapping the host has revoked while
  // memory decode stays on, so the memslot is still there: exactly the racing vCPU's situation.
  const vm = Vm.create({
    machine: { ramBytes: 16n << 20n, vcpus: 1, passthrough: [{ name: 'pt0', slot: 3, backend: 'shm' }], persona: 'tsvmm', barOrder: 'unmap-first' },
    guest: { image: guest, params: { probeGpa: 'bar0' } },
    kvmPath,
  });
  try {
    const bar0 = vm.bars.get('pt0')!.get(0)!;
    revocableHost(vm.machine).hostRevoke();
    const runner = new VcpuRunner(vm.vcpus[0]!, vm.machine);
    for (let i = 0; i < MAX_EXITS; i++) {
      const exit = runner.enter();
      const staleReason = vm.vcpus[0]!.runPage.getUint32(Run.exitReason, true);
      if (exit.kind === 'memory-fault') {
        const ok = exit.gpa === (bar0 & ~0xfffn);
        return {
          answer: ok ? 'annotated' : 'other',
          detail: `KVM_RUN -1 errno ${exit.errno} (${describeErrnoName(exit.errno)}), exit_reason 39 KVM_EXIT_MEMORY_FAULT gpa 0x${exit.gpa.toString(16)} size 0x${exit.size.toString(16)} flags 0x${exit.flags.toString(16)}`,
        };
      }
      if (exit.kind === 'run-error') {
        return {
          answer: exit.errno === EFAULT ? 'unannotated' : 'other',
          detail: `KVM_RUN -1 errno ${exit.errno} (${describeErrnoName(exit.errno)}), exit_reason ${staleReason} (not a memory-fault exit)`,
        };
      }
      if (exit.kind === 'mmio' && exit.gpa >= bar0 && exit.gpa < bar0 + 0x1000n) {
        const slot = vm.machine.memoryMap.slots().some((s) => exit.gpa >= s.gpa && exit.gpa < s.gpa + s.size);
        return {
          answer: 'emulated-mmio',
          detail: `KVM_EXIT_MMIO gpa 0x${exit.gpa.toString(16)} len ${exit.len} ${exit.isWrite ? 'write' : 'read'} with the memslot ${slot ? 'still present' : 'absent'}`,
        };
      }
      const h = runner.beginHandle(exit)!;
      try {
        runSteps(h.steps);
      } finally {
        runner.endHandle();
      }
      if (h.outcome.kind !== 'continue') return { answer: 'no-fault', detail: `the guest finished without faulting (${h.outcome.kind})` };
    }
    return { answer: 'other', detail: `no fault within ${MAX_EXITS} exits` };
  } finally {
    vm.close();
  }
}

export function probe(kvmPath: string): ProbeReport {
  const a = KvmSystem.availability(kvmPath);
  if (!a.available) return { kvm: false, reason: a.reason, verdict: `cannot probe: ${a.reason}` };
  const sys = KvmSystem.open(kvmPath);
  const apiVersion = sys.apiVersion();
  const cap = sys.checkExtension(KVM_CAP_MEMORY_FAULT_INFO);
  sys.close();
  const cpl3 = probeAccess('probe-read', kvmPath);
  const cpl0 = probeAccess('probe-read-cpl0', kvmPath);
  let verdict: string;
  if (cpl3.answer === 'annotated')
    verdict = `this kernel carries the kvm_handle_error_pfn() memory-fault annotation: a CPL3 access to a revoked mapping behind a memslot exits with KVM_EXIT_MEMORY_FAULT (KVM_CAP_MEMORY_FAULT_INFO=${cap})`;
  else if (cpl3.answer === 'unannotated')
    verdict = `this kernel does not carry the kvm_handle_error_pfn() memory-fault annotation: a CPL3 access to a revoked mapping behind a memslot fails KVM_RUN with EFAULT and no KVM_EXIT_MEMORY_FAULT${cap ? `, although KVM_CAP_MEMORY_FAULT_INFO=${cap}` : ` (KVM_CAP_MEMORY_FAULT_INFO=0)`}`;
  else verdict = `inconclusive: a CPL3 access to a revoked mapping behind a memslot gave ${cpl3.answer} (${cpl3.detail}); KVM_CAP_MEMORY_FAULT_INFO=${cap}`;
  return { kvm: true, apiVersion, memoryFaultInfoCap: cap, cpl3, cpl0, verdict };
}

export function registerProbeCommand(program: Command): void {
  program
    .command('probe')
    .description(`what this host's KVM does on a guest access to a revoked mapping behind a memslot (API ${KVM_API_VERSION})`)
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .option('--json', 'print the report as JSON')
    .action((o: { kvm: string; json?: boolean }) => {
      let r: ProbeReport;
      try {
        r = probe(o.kvm);
      } catch (e) {
        reportErrorAndExit(e);
      }
      if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        if (!r.kvm) process.stdout.write(`KVM: unavailable (${r.reason})\n`);
        else {
          process.stdout.write(`KVM API version: ${r.apiVersion}\nKVM_CAP_MEMORY_FAULT_INFO: ${r.memoryFaultInfoCap}\n`);
          process.stdout.write(`CPL3 access: ${r.cpl3!.answer} — ${r.cpl3!.detail}\nCPL0 access: ${r.cpl0!.answer} — ${r.cpl0!.detail}\n`);
        }
        process.stdout.write(`verdict: ${r.verdict}\n`);
      }
      process.exitCode = r.kvm ? 0 : 2;
    });
}
