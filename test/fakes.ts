// Test doubles for the host side: a recording hypervisor VM and an in-memory HostMemory. They keep
// the real VMM code (memory map, machine, devices, policy) under test without KVM.
import type { HypervisorVm, MemslotSpec } from '../src/hypervisor/hypervisor';
import type { HostMemory } from '../src/memory/host-memory';
import type { HypervisorVcpu } from '../src/hypervisor/hypervisor';
import { emptyRegs, decodeSregs } from '../src/kvm/regs';
import { SIZEOF_KVM_SREGS } from '../src/kvm/constants';
import { Machine } from '../src/vmm/machine';
import type { MachineConfig } from '../src/vmm/machine-config';
import type { MachineCreateOptions } from '../src/vmm/machine-shared';
import type { VcpuDispatchState } from '../src/vmm/dispatch';
import { RefaultGuard } from '../src/vmm/memory-fault-policy';

export class RecordingVm implements HypervisorVm {
  readonly kind = 'sim' as const;
  readonly maxMemslots = 32;
  readonly slots = new Map<number, MemslotSpec>();
  readonly log: string[] = [];
  setMemslot(spec: MemslotSpec): void {
    for (const s of this.slots.values()) {
      if (s.slot !== spec.slot && spec.gpa < s.gpa + s.size && s.gpa < spec.gpa + spec.size) throw new Error(`overlapping memslots ${s.slot} and ${spec.slot}`);
    }
    this.slots.set(spec.slot, spec);
    this.log.push(`add ${spec.slot} 0x${spec.gpa.toString(16)}+0x${spec.size.toString(16)}`);
  }
  deleteMemslot(spec: MemslotSpec): void {
    this.slots.delete(spec.slot);
    this.log.push(`del ${spec.slot} 0x${spec.gpa.toString(16)}`);
  }
  slotAt(gpa: bigint): MemslotSpec | undefined {
    for (const s of this.slots.values()) if (gpa >= s.gpa && gpa < s.gpa + s.size) return s;
    return undefined;
  }
}

export class FakeHostMemory implements HostMemory {
  readonly files: Uint8Array[] = [];
  readonly mappings = new Map<bigint, { fd: number; size: number; accessible: boolean }>();
  private nextAddress = 0x7f00_0000_0000n;
  createFile(_name: string, size: number): number {
    this.files.push(new Uint8Array(size));
    return this.files.length - 1 + 100;
  }
  mapForGuest(fd: number, size: number): bigint {
    const a = this.nextAddress;
    this.nextAddress += BigInt(Math.ceil(size / 4096) * 4096) + 0x1000n;
    this.mappings.set(a, { fd, size, accessible: true });
    return a;
  }
  setAccessible(address: bigint, _size: number, accessible: boolean): void {
    this.mappings.get(address)!.accessible = accessible;
  }
  pread(fd: number, buf: Uint8Array, offset: number): number {
    const f = this.files[fd - 100]!;
    buf.set(f.subarray(offset, offset + buf.length));
    return buf.length;
  }
  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    this.files[fd - 100]!.set(buf, offset);
    return buf.length;
  }
  accessibleAt(hostAddress: bigint): boolean {
    for (const [a, m] of this.mappings) if (hostAddress >= a && hostAddress < a + BigInt(m.size)) return m.accessible;
    return false;
  }
}

/** A vCPU whose KVM_RUN returns what the test scripts (0 or -errno), the run page as the test left it. */
export class ScriptedVcpu implements HypervisorVcpu {
  readonly runPage = new DataView(new ArrayBuffer(3 * 4096));
  readonly script: number[] = [];
  entries = 0;
  regsError: Error | undefined;
  constructor(readonly index = 0) {}
  run(): number {
    this.entries++;
    const r = this.script.shift();
    if (r === undefined) throw new Error('ScriptedVcpu: KVM_RUN with nothing scripted');
    return r;
  }
  getRegs() {
    if (this.regsError) throw this.regsError;
    return emptyRegs();
  }
  setRegs(): void {}
  getSregs() {
    if (this.regsError) throw this.regsError;
    return decodeSregs(new Uint8Array(SIZEOF_KVM_SREGS));
  }
  setSregs(): void {}
}

/**
 * A Machine on the recording VM and in-memory host memory (no KVM). The config defaults to 4 MiB of
 * RAM, 1 vCPU, no passthrough function, the tsvmm persona and the unmap-first BAR order; `parts`
 * replaces the VM, the host memory or the console (default: discarded).
 */
export function fakeMachine(config: Partial<MachineConfig> = {}, parts: Partial<Omit<MachineCreateOptions, 'config'>> = {}): Machine {
  return Machine.create({
    config: { ramBytes: 4n << 20n, vcpus: 1, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first', ...config },
    vm: parts.vm ?? new RecordingVm(),
    hostMemory: parts.hostMemory ?? new FakeHostMemory(),
    console: parts.console ?? (() => {}),
  });
}

/** A vCPU's dispatch state before any fault: generations 0, nothing revoked at entry. */
export function freshDispatchState(vcpu = 0): VcpuDispatchState {
  return {
    vcpu,
    runPage: new DataView(new ArrayBuffer(4096)),
    guard: new RefaultGuard(),
    revocationGenerationAtEntry: 0,
    memoryMapGenerationAtEntry: 0,
    barRevokedAtEntry: () => false,
  };
}
