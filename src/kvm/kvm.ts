// Typed wrappers over the KVM system, VM and vCPU file descriptors (one class per fd, as in
// rust-vmm's kvm-ioctls). Every ioctl and mmap goes through the native layer.
import { c, check, describeErrno, native, NativeError } from '../native';
import type { HypervisorVcpu, HypervisorVm, MemslotSpec } from '../hypervisor/hypervisor';
import { MemslotError } from '../hypervisor/hypervisor';
import {
  CoalescedMmioZone as Z,
  Ioeventfd as E,
  KVM_API_VERSION,
  KVM_CAP_NR_MEMSLOTS,
  KVM_MEM_READONLY,
  Run,
  SIZEOF_KVM_REGS,
  SIZEOF_KVM_SREGS,
  SIZEOF_KVM_USERSPACE_MEMORY_REGION,
  UserspaceMemoryRegion as R,
} from './constants';
import { traceKvmSetUserMemory, traceOn } from '../trace';
import { decodeRegs, decodeSregs, encodeRegs, encodeSregs, type Regs, type Sregs } from './regs';

export const DEFAULT_KVM_PATH = '/dev/kvm';

export class KvmUnavailableError extends Error {
  constructor(
    readonly path: string,
    readonly errno: number,
  ) {
    super(KvmUnavailableError.explain(path, errno));
    this.name = 'KvmUnavailableError';
  }
  static explain(path: string, errno: number): string {
    const n = native().constants;
    if (errno === n.ENOENT)
      return `${path} does not exist: this host has no KVM (load kvm_intel/kvm_amd, or enable nested virtualisation; scripts/kvm-in-qemu.sh runs tsvmm against a KVM inside QEMU)`;
    if (errno === n.EACCES || errno === n.EPERM)
      return `permission denied opening ${path}: add this user to the group that owns it (usually \`kvm\`) or run as root`;
    if (errno === n.ENODEV || errno === n.ENXIO)
      return `${path} exists but no KVM driver is bound to it (${describeErrno(errno)}); on a host that is itself a KVM guest, nested virtualisation may be off`;
    return `cannot open ${path}: ${describeErrno(errno)}`;
  }
}

export class KvmApiVersionError extends Error {
  constructor(readonly version: number) {
    super(`KVM API version ${version} is not supported (tsvmm needs ${KVM_API_VERSION})`);
    this.name = 'KvmApiVersionError';
  }
}

export class KvmSystem {
  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  static open(path = DEFAULT_KVM_PATH): KvmSystem {
    const n = native();
    const fd = n.open(path, n.constants.O_RDWR);
    if (fd < 0) throw new KvmUnavailableError(path, -fd);
    const sys = new KvmSystem(fd, path);
    let version: number;
    try {
      version = sys.apiVersion(); // fails on a file that is not KVM (e.g. --kvm /dev/null)
    } catch (e) {
      n.close(fd);
      throw e;
    }
    if (version !== KVM_API_VERSION) {
      n.close(fd);
      throw new KvmApiVersionError(version);
    }
    return sys;
  }

  /** Whether KVM can be opened here, with the reason when it cannot (for test skips and `probe`). */
  static availability(path = DEFAULT_KVM_PATH): { available: true } | { available: false; reason: string } {
    try {
      KvmSystem.open(path).close();
      return { available: true };
    } catch (e) {
      return { available: false, reason: (e as Error).message };
    }
  }

  apiVersion(): number {
    return check(native().ioctl(this.fd, c('KVM_GET_API_VERSION'), 0), 'KVM_GET_API_VERSION');
  }

  checkExtension(cap: number): number {
    const r = native().ioctl(this.fd, c('KVM_CHECK_EXTENSION'), cap);
    return r < 0 ? 0 : r;
  }

  vcpuMmapSize(): number {
    return check(native().ioctl(this.fd, c('KVM_GET_VCPU_MMAP_SIZE'), 0), 'KVM_GET_VCPU_MMAP_SIZE');
  }

  createVm(): KvmVm {
    // KVM_CREATE_VM can fail transiently with EINTR; retry like QEMU does.
    let r: number;
    do r = native().ioctl(this.fd, c('KVM_CREATE_VM'), 0);
    while (r === -native().constants.EINTR);
    check(r, 'KVM_CREATE_VM');
    // KVM_X86_QUIRK_SLOT_ZAP_ALL stays on (KVM's default): see its comment in constants.ts.
    return new KvmVm(r, this.checkExtension(KVM_CAP_NR_MEMSLOTS) || 32);
  }

  close(): void {
    native().close(this.fd);
  }
}

export class KvmVm implements HypervisorVm {
  readonly kind = 'kvm' as const;
  private readonly regionBuf = new Uint8Array(SIZEOF_KVM_USERSPACE_MEMORY_REGION);

  /** Wraps a VM fd (also in vCPU threads, which receive the fd number: fds are process-wide). */
  constructor(
    readonly fd: number,
    readonly maxMemslots: number,
  ) {}

  /** KVM_CHECK_EXTENSION on the VM fd (per-VM answers; 0 when unsupported). */
  checkExtension(cap: number): number {
    const r = native().ioctl(this.fd, c('KVM_CHECK_EXTENSION'), cap);
    return r < 0 ? 0 : r;
  }

  /** Intel VMX needs a 3-page TSS region below 4 GiB that the guest never uses. */
  setTssAddress(gpa: number): void {
    check(native().ioctl(this.fd, c('KVM_SET_TSS_ADDR'), gpa), 'KVM_SET_TSS_ADDR');
  }

  setIdentityMapAddress(gpa: bigint): void {
    const buf = new BigUint64Array([gpa]);
    check(native().ioctlBuffer(this.fd, c('KVM_SET_IDENTITY_MAP_ADDR'), buf), 'KVM_SET_IDENTITY_MAP_ADDR');
  }

  private setRegion(spec: MemslotSpec, size: bigint): void {
    const v = new DataView(this.regionBuf.buffer);
    v.setUint32(R.slot, spec.slot, true);
    v.setUint32(R.flags, spec.readOnly ? KVM_MEM_READONLY : 0, true);
    v.setBigUint64(R.guestPhysAddr, spec.gpa, true);
    v.setBigUint64(R.memorySize, size, true);
    v.setBigUint64(R.userspaceAddr, spec.hostAddress, true);
    const r = native().ioctlBuffer(this.fd, c('KVM_SET_USER_MEMORY_REGION'), this.regionBuf);
    if (traceOn.kvm_set_user_memory) traceKvmSetUserMemory(spec.slot, spec.readOnly ? KVM_MEM_READONLY : 0, spec.gpa, size, spec.hostAddress, r);
    if (r < 0) throw new MemslotError({ ...spec, size }, -r, describeErrno(r));
  }

  setMemslot(spec: MemslotSpec): void {
    this.setRegion(spec, spec.size);
  }

  deleteMemslot(spec: MemslotSpec): void {
    this.setRegion(spec, 0n);
  }

  createVcpu(index: number): number {
    return check(native().ioctl(this.fd, c('KVM_CREATE_VCPU'), index), `KVM_CREATE_VCPU ${index}`);
  }

  /**
   * KVM_IOEVENTFD: from now on a guest write of `len` bytes to `addr` (a port with `pio`, else a
   * guest-physical address) adds 1 to the eventfd `fd` inside KVM, with no exit to user space (with
   * `datamatch`, only writes of that value). The device learns of the writes by reading the eventfd.
   */
  assignIoeventfd(z: { addr: bigint; len: 1 | 2 | 4 | 8; fd: number; pio: boolean; datamatch?: bigint }): void {
    const buf = new Uint8Array(E.size);
    const v = new DataView(buf.buffer);
    v.setBigUint64(E.datamatch, z.datamatch ?? 0n, true);
    v.setBigUint64(E.addr, z.addr, true);
    v.setUint32(E.len, z.len, true);
    v.setInt32(E.fd, z.fd, true);
    v.setUint32(E.flags, (z.pio ? c('KVM_IOEVENTFD_FLAG_PIO') : 0) | (z.datamatch !== undefined ? c('KVM_IOEVENTFD_FLAG_DATAMATCH') : 0), true);
    check(native().ioctlBuffer(this.fd, c('KVM_IOEVENTFD'), buf), `KVM_IOEVENTFD ${z.pio ? 'port' : 'gpa'} 0x${z.addr.toString(16)}`);
  }

  /**
   * KVM_REGISTER_COALESCED_MMIO: guest writes into [addr, addr + size) (ports with `pio`) are queued
   * in the VM's coalesced ring (coalesced-ring.ts) instead of exiting, until the ring is full; the
   * VMM replays them, in order, before it handles the next exit. Only for registers whose writes have
   * no effect the guest could observe before then.
   */
  registerCoalescedZone(z: { addr: bigint; size: number; pio: boolean }): void {
    const buf = new Uint8Array(Z.sizeofZone);
    const v = new DataView(buf.buffer);
    v.setBigUint64(Z.addr, z.addr, true);
    v.setUint32(Z.size, z.size, true);
    v.setUint32(Z.pio, z.pio ? 1 : 0, true);
    check(
      native().ioctlBuffer(this.fd, c('KVM_REGISTER_COALESCED_MMIO'), buf),
      `KVM_REGISTER_COALESCED_MMIO ${z.pio ? 'ports' : 'gpa'} 0x${z.addr.toString(16)}+${z.size}`,
    );
  }

  close(): void {
    native().close(this.fd);
  }
}

/**
 * A vCPU fd plus this thread's mapping of its kvm_run page. Each thread that touches a vCPU maps the
 * page itself (the main thread to set immediate_exit when kicking, the vCPU thread to run it):
 * external ArrayBuffers cannot be shared between threads, the page itself is.
 */
export class KvmVcpu implements HypervisorVcpu {
  readonly runPage: DataView;
  private readonly runBytes: Uint8Array;
  private readonly runAddress: bigint;
  private readonly regsBuf = new Uint8Array(SIZEOF_KVM_REGS);
  private readonly sregsBuf = new Uint8Array(SIZEOF_KVM_SREGS);
  private readonly nativeCalls = native();

  constructor(
    readonly fd: number,
    readonly index: number,
    readonly mmapSize: number,
  ) {
    const n = native();
    const m = n.mmapBuffer(fd, mmapSize, n.constants.PROT_READ | n.constants.PROT_WRITE, n.constants.MAP_SHARED, 0);
    if (typeof m === 'number') throw new NativeError(`mmap of vCPU ${index}'s kvm_run page: ${describeErrno(m)}`, -m);
    this.runAddress = m[0];
    this.runPage = new DataView(m[1], 0, Math.max(Run.size, mmapSize));
    this.runBytes = new Uint8Array(m[1]);
  }

  run(): number {
    return this.nativeCalls.kvmRun(this.fd);
  }

  /** Makes the next (or current, with a signal) KVM_RUN return -EINTR at once. */
  setImmediateExit(on: boolean): void {
    this.runBytes[Run.immediateExit] = on ? 1 : 0;
  }

  getRegs(): Regs {
    check(native().ioctlBuffer(this.fd, c('KVM_GET_REGS'), this.regsBuf), `KVM_GET_REGS vCPU ${this.index}`);
    return decodeRegs(this.regsBuf);
  }

  setRegs(regs: Regs): void {
    check(native().ioctlBuffer(this.fd, c('KVM_SET_REGS'), encodeRegs(regs)), `KVM_SET_REGS vCPU ${this.index}`);
  }

  getSregs(): Sregs {
    check(native().ioctlBuffer(this.fd, c('KVM_GET_SREGS'), this.sregsBuf), `KVM_GET_SREGS vCPU ${this.index}`);
    return decodeSregs(this.sregsBuf);
  }

  setSregs(sregs: Sregs): void {
    check(native().ioctlBuffer(this.fd, c('KVM_SET_SREGS'), encodeSregs(sregs)), `KVM_SET_SREGS vCPU ${this.index}`);
  }

  /** Unmaps this thread's view of kvm_run. The views must not be used afterwards. */
  unmap(): void {
    native().munmap(this.runAddress, this.mmapSize);
  }
}

// ---- Linux direct boot: the machine a stock kernel needs (in-kernel irqchip, PIT, CPUID, MSRs) ----
// Free functions over the fds rather than new members, so the classes above stay as they are.

/** One CPUID leaf as struct kvm_cpuid_entry2 holds it. */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

const CPUID_ENTRY_SIZE = 40;
const E2BIG = 7;

export function decodeCpuid2(buf: Uint8Array): CpuidEntry[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    out.push({
      function: v.getUint32(o, true),
      index: v.getUint32(o + 4, true),
      flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true),
      ebx: v.getUint32(o + 16, true),
      ecx: v.getUint32(o + 20, true),
      edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

export function encodeCpuid2(entries: readonly CpuidEntry[]): Uint8Array {
  const buf = new Uint8Array(8 + entries.length * CPUID_ENTRY_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    v.setUint32(o, e.function >>> 0, true);
    v.setUint32(o + 4, e.index >>> 0, true);
    v.setUint32(o + 8, e.flags >>> 0, true);
    v.setUint32(o + 12, e.eax >>> 0, true);
    v.setUint32(o + 16, e.ebx >>> 0, true);
    v.setUint32(o + 20, e.ecx >>> 0, true);
    v.setUint32(o + 24, e.edx >>> 0, true);
  });
  return buf;
}

/** KVM_GET_SUPPORTED_CPUID on the system fd, growing the buffer while KVM answers E2BIG. */
export function supportedCpuid(system: KvmSystem): CpuidEntry[] {
  for (let n = 64; n <= 4096; n *= 2) {
    const buf = new Uint8Array(8 + n * CPUID_ENTRY_SIZE);
    new DataView(buf.buffer).setUint32(0, n, true);
    const r = native().ioctlBuffer(system.fd, c('KVM_GET_SUPPORTED_CPUID'), buf);
    if (r === -E2BIG) continue;
    check(r, 'KVM_GET_SUPPORTED_CPUID');
    return decodeCpuid2(buf);
  }
  throw new NativeError('KVM_GET_SUPPORTED_CPUID: more than 4096 entries', E2BIG);
}

export function setVcpuCpuid(vcpu: KvmVcpu, entries: readonly CpuidEntry[]): void {
  check(native().ioctlBuffer(vcpu.fd, c('KVM_SET_CPUID2'), encodeCpuid2(entries)), `KVM_SET_CPUID2 vCPU ${vcpu.index}`);
}

/** KVM_SET_MSRS; KVM returns how many it set, and stops at the first it refuses. */
export function setVcpuMsrs(vcpu: KvmVcpu, msrs: readonly { index: number; value: bigint }[]): void {
  const buf = new Uint8Array(8 + msrs.length * 16);
  const v = new DataView(buf.buffer);
  v.setUint32(0, msrs.length, true);
  msrs.forEach((m, i) => {
    v.setUint32(8 + i * 16, m.index >>> 0, true);
    v.setBigUint64(8 + i * 16 + 8, m.value, true);
  });
  const r = check(native().ioctlBuffer(vcpu.fd, c('KVM_SET_MSRS'), buf), `KVM_SET_MSRS vCPU ${vcpu.index}`);
  if (r !== msrs.length) {
    const bad = msrs[r]!;
    throw new NativeError(`KVM_SET_MSRS vCPU ${vcpu.index}: KVM refused MSR 0x${bad.index.toString(16)} = 0x${bad.value.toString(16)}`, 0);
  }
}

/** KVM_CREATE_IRQCHIP: PIC, IOAPIC and a local APIC per vCPU in the kernel. Before any vCPU exists. */
export function createIrqchip(vm: KvmVm): void {
  check(native().ioctl(vm.fd, c('KVM_CREATE_IRQCHIP'), 0), 'KVM_CREATE_IRQCHIP');
}

/** KVM_CREATE_PIT2 (after the irqchip), with the speaker port 0x61 handled in the kernel too. */
export function createPit2(vm: KvmVm): void {
  const cfg = new Uint8Array(64);
  new DataView(cfg.buffer).setUint32(0, c('KVM_PIT_SPEAKER_DUMMY'), true);
  check(native().ioctlBuffer(vm.fd, c('KVM_CREATE_PIT2'), cfg), 'KVM_CREATE_PIT2');
}

/** KVM_IRQ_LINE: sets a GSI's level on the in-kernel PIC/IOAPIC (any thread may call it). */
export function setIrqLine(vmFd: number, irq: number, level: boolean): void {
  const buf = new Uint32Array([irq, level ? 1 : 0]);
  check(native().ioctlBuffer(vmFd, c('KVM_IRQ_LINE'), buf), `KVM_IRQ_LINE ${irq}=${level ? 1 : 0}`);
}

/** Unmaps each vCPU's kvm_run page and closes its fd; empties the list (safe to call twice). */
export function closeVcpus(vcpus: KvmVcpu[]): void {
  for (const v of vcpus.splice(0)) {
    v.unmap();
    native().close(v.fd);
  }
}

/** Creates vCPU `index` and maps its kvm_run page; if the mapping fails, the new fd is closed. */
export function createKvmVcpu(vm: KvmVm, index: number, mmapSize: number): KvmVcpu {
  const fd = vm.createVcpu(index);
  try {
    return new KvmVcpu(fd, index, mmapSize);
  } catch (e) {
    native().close(fd);
    throw e;
  }
}
