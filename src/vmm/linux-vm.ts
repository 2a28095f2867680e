// Builds the KVM side of a Linux guest's VM: the in-kernel irqchip and PIT (created before any
// vCPU, as KVM requires), the machine with the Linux legacy devices, the kernel in RAM, firmware-
// style PCI BAR assignment, and per-vCPU CPUID and MSRs. Vm.createLinux() wraps the result.
import fs from 'node:fs';
import {
  closeVcpus,
  createIrqchip,
  createKvmVcpu,
  createPit2,
  KvmSystem,
  type KvmVcpu,
  setVcpuCpuid,
  setVcpuMsrs,
  supportedCpuid,
  type KvmVm,
} from '../kvm/kvm';
import { type NativeHostMemory } from '../memory/host-memory';
import { GuestMemory } from '../memory/guest-memory';
import { ECAM_BASE, HIGH_RAM_BASE, LOW_RAM_END } from './physical-layout';
import { Machine } from './machine';
import { type MachineConfig } from './machine-config';
import { formatSize } from '../size';
import { loadLinux, planLinuxBoot, readLinuxImage, type LinuxBootFiles } from '../boot/linux/linux-boot';
import { bootMsrs, KVM_CAP_TSC_DEADLINE_TIMER, vcpuCpuid } from '../boot/linux/cpu-setup';
import type { MemoryLayout } from '../boot/linux/zero-page';

/** VMX's 3-page TSS region and 1-page EPT identity map: unused pages in the hole below 4 GiB. */
export const KVM_TSS_GPA = 0xfffb_d000;
export const KVM_IDENTITY_MAP_GPA = 0xfffb_c000n;

export interface LinuxVmParts {
  system: KvmSystem;
  kvmVm: KvmVm;
  machine: Machine;
  memory: GuestMemory;
  vcpus: KvmVcpu[];
  bars: Map<string, Map<number, bigint>>;
}

let warnedPvm = false;

/**
 * kvm_pvm (a KVM that runs guest ring 0 in an emulator) cannot usefully boot a stock kernel: it
 * never leaves the decompressor, or dies on cmpxchg16b/xrstor. Say so once, and go on.
 */
export function warnIfKvmPvm(log: (s: string) => void = (s) => process.stderr.write(s)): void {
  if (warnedPvm || !fs.existsSync('/sys/module/kvm_pvm')) return;
  warnedPvm = true;
  log(
    "tsvmm: warning: this host's KVM is kvm_pvm, which emulates guest ring-0 code: a stock Linux kernel will not boot usefully here (run it inside scripts/kvm-in-qemu.sh)\n",
  );
}

export function memoryLayout(ramBytes: bigint): MemoryLayout {
  return { ramBytes, lowRamEnd: LOW_RAM_END, highRamBase: HIGH_RAM_BASE, holeStart: ECAM_BASE, holeEnd: HIGH_RAM_BASE };
}

export interface LinuxVmOptions {
  machine: MachineConfig;
  files: LinuxBootFiles;
  kvmPath?: string;
  console: (b: Uint8Array) => void;
  host: NativeHostMemory;
  /** Each acquisition pushes its release here (Vm.createLinux() runs them if a later step throws). */
  undo: (() => void)[];
}

export function buildLinuxVm(opts: LinuxVmOptions): LinuxVmParts {
  const { machine: config, files, kvmPath, console, host, undo } = opts;
  // Bad input fails before KVM is touched.
  const image = readLinuxImage(files);
  const layout = memoryLayout(config.ramBytes);
  planLinuxBoot(image, layout, formatSize(config.ramBytes));
  warnIfKvmPvm();
  const system = KvmSystem.open(kvmPath);
  undo.push(() => system.close());
  const kvmVm = system.createVm();
  undo.push(() => kvmVm.close());
  kvmVm.setTssAddress(KVM_TSS_GPA);
  kvmVm.setIdentityMapAddress(KVM_IDENTITY_MAP_GPA);
  createIrqchip(kvmVm);
  createPit2(kvmVm);
  const machine = Machine.create({ config: { ...config, linux: true }, vm: kvmVm, hostMemory: host, console });
  undo.push(() => {
    for (const d of machine.passthrough) d.host.close?.();
  });
  const memory = new GuestMemory(machine.shared.ram);
  undo.push(() => memory.close());
  const plan = planLinuxBoot(image, layout, formatSize(config.ramBytes), BigInt(memory.low.byteLength));
  const boot = loadLinux(memory.low, image, plan, layout, config.vcpus);
  const bars = machine.assignBars();
  const cpuid = supportedCpuid(system);
  const tscDeadline = system.checkExtension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  const mmapSize = system.vcpuMmapSize();
  const vcpus: KvmVcpu[] = [];
  undo.push(() => closeVcpus(vcpus));
  for (let i = 0; i < config.vcpus; i++) {
    const v = createKvmVcpu(kvmVm, i, mmapSize);
    vcpus.push(v);
    setVcpuCpuid(v, vcpuCpuid(cpuid, i, config.vcpus, tscDeadline));
    setVcpuMsrs(v, bootMsrs());
    if (i === 0) {
      v.setSregs(boot.sregs);
      v.setRegs(boot.regs);
    }
  }
  return { system, kvmVm, machine, memory, vcpus, bars };
}
