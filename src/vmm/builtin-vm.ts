// Builds the KVM side of a built-in guest's VM: the machine, the guest image in RAM in long mode,
// firmware-style PCI BAR assignment, the boot info page with the guest's parameters, and the
// vCPUs at their entry points. Vm.create() wraps the result.
import { closeVcpus, createKvmVcpu, KvmSystem, type KvmVcpu, type KvmVm } from '../kvm/kvm';
import type { NativeHostMemory } from '../memory/host-memory';
import { GuestMemory } from '../memory/guest-memory';
import { CONTROL_BASE } from '../devices/control';
import { loadGuest, type ResolvedGuest } from '../boot/guest-image';
import { setupLongMode, vcpuBootState } from '../boot/long-mode';
import { writeBootInfo } from '../boot/boot-info';
import { guestParamWords, type GuestParams } from '../boot/guest-params';
import { Machine } from './machine';
import type { MachineConfig } from './machine-config';
import { ECAM_BASE, PCI_MMIO_BASE, PCI_MMIO_END } from './physical-layout';

/** Intel VMX needs a TSS region KVM can use; any 3 unused pages below 4 GiB (as QEMU picks). */
const KVM_TSS_GPA = 0xfffb_d000;

/** What a VM builder hands Vm (the Linux builder's LinuxVmParts has the same shape). */
export interface VmParts {
  system: KvmSystem;
  kvmVm: KvmVm;
  machine: Machine;
  memory: GuestMemory;
  vcpus: KvmVcpu[];
  bars: Map<string, Map<number, bigint>>;
}

export interface BuiltinVmOptions {
  machine: MachineConfig;
  image: ResolvedGuest;
  params?: GuestParams;
  kvmPath?: string;
  console: (bytes: Uint8Array) => void;
  host: NativeHostMemory;
  /** Each acquisition pushes its release here (undoOnFailure() runs them if a later step throws). */
  undo: (() => void)[];
}

export function buildBuiltinVm(opts: BuiltinVmOptions): VmParts {
  const { image, undo, host } = opts;
  const system = KvmSystem.open(opts.kvmPath);
  undo.push(() => system.close());
  const kvmVm = system.createVm();
  undo.push(() => kvmVm.close());
  kvmVm.setTssAddress(KVM_TSS_GPA);
  const machine = Machine.create({ config: opts.machine, vm: kvmVm, hostMemory: host, console: opts.console });
  undo.push(() => {
    for (const d of machine.passthrough) d.host.close?.();
  });
  const memory = new GuestMemory(machine.shared.ram);
  undo.push(() => memory.close());
  const vcpuCount = opts.machine.vcpus;
  setupLongMode(memory.low, vcpuCount);
  const { entries } = loadGuest(memory.low, image.bytes, `guest image ${image.file}`);
  const bars = machine.assignBars();
  const firstDevice = opts.machine.passthrough[0];
  writeBootInfo(new DataView(memory.low.buffer, memory.low.byteOffset, memory.low.byteLength), {
    vcpus: vcpuCount,
    ramBytes: opts.machine.ramBytes,
    controlBase: CONTROL_BASE,
    ecamBase: ECAM_BASE,
    pciWindowBase: PCI_MMIO_BASE,
    pciWindowEnd: PCI_MMIO_END,
    ...guestParamWords(opts.params, firstDevice && { slot: firstDevice.slot, bars: bars.get(firstDevice.name) }),
  });
  const mmapSize = system.vcpuMmapSize();
  const vcpus: KvmVcpu[] = [];
  undo.push(() => closeVcpus(vcpus));
  for (let i = 0; i < vcpuCount; i++) {
    const v = createKvmVcpu(kvmVm, i, mmapSize);
    vcpus.push(v);
    const entry = entries[Math.min(i, entries.length - 1)]!;
    const { regs, sregs } = vcpuBootState(i, entry, vcpuCount);
    v.setSregs(sregs);
    v.setRegs(regs);
  }
  return { system, kvmVm, machine, memory, vcpus, bars };
}
