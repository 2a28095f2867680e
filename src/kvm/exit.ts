// Decoding of the kvm_run page into a typed exit union. Pure: it reads only the bytes it is given and
// the KVM_RUN return value, so tests feed it synthetic pages without KVM.
import { ExitReason, KVM_EXIT_IO_OUT, Run } from './constants';
import { readLe, writeLe } from '../le-bytes';
import { EAGAIN, EFAULT, EHWPOISON, EINTR, EIO } from '../errno';
// No re-exports in this module: TypeScript compiles one into a getter defined over a data property,
// which puts the CommonJS exports object in V8's dictionary mode, and every decodeExit() call from
// another module then went through a generic property load (a builtin call per exit; issue 10).

export type VcpuExit =
  | { kind: 'io'; direction: 'in' | 'out'; size: 1 | 2 | 4; port: number; count: number; dataOffset: number }
  | { kind: 'mmio'; gpa: bigint; len: number; isWrite: boolean; data: bigint }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'fail-entry'; hardwareReason: bigint; cpu: number }
  | { kind: 'internal-error'; suberror: number; data: bigint[] }
  | { kind: 'system-event'; type: number; data: bigint[] }
  | { kind: 'memory-fault'; errno: number; flags: bigint; gpa: bigint; size: bigint }
  | { kind: 'intr' }
  | { kind: 'irq-window-open' }
  | { kind: 'unknown'; hardwareReason: bigint }
  /** KVM_RUN returned -EINTR/-EAGAIN: a kick or signal; nothing to handle. */
  | { kind: 'interrupted'; errno: number }
  /**
   * KVM_RUN returned -1/EIO: KVM has declared the VM bugged or dead (KVM_BUG_ON() ->
   * kvm_vm_bugged() -> kvm->vm_dead; kvm_vcpu_ioctl() and kvm_vm_ioctl() then fail every call with
   * EIO, and vcpu_enter_guest() returns -EIO on KVM_REQ_VM_DEAD). Not a fault: nothing to retry.
   */
  | { kind: 'vm-bugged'; errno: number }
  /** KVM_RUN returned -1 with an errno that carries no exit (exit_reason is stale and was not read). */
  | { kind: 'run-error'; errno: number }
  /** An exit reason tsvmm does not handle (the catch-all). */
  | { kind: 'unsupported'; reason: number };

export type ExitKind = VcpuExit['kind'];
export type IoExit = Extract<VcpuExit, { kind: 'io' }>;
export type MmioExit = Extract<VcpuExit, { kind: 'mmio' }>;

/**
 * One vCPU's reusable exit objects: decodeExit() fills these for the frequent exits (port I/O,
 * MMIO) instead of allocating. An exit decoded into them is valid until that vCPU's next decode.
 *
 * An MMIO exit's address and data are bigints, and V8 allocates a bigint for every 64-bit load, so
 * the scratch also keeps the last address and written value with their raw 32-bit halves: an exit
 * whose halves are the same (a guest hitting one register with one value, as a doorbell or the
 * bench does) reuses the bigint it made before and allocates nothing. (Measured: an MMIO exit
 * allocated ~80 bytes, a young-generation GC every ~13k exits per vCPU, which also wakes V8's
 * parallel-scavenge threads; issue 10.)
 */
export class ExitScratch {
  readonly io: IoExit = { kind: 'io', direction: 'out', size: 1, port: 0, count: 0, dataOffset: 0 };
  readonly mmio: MmioExit = { kind: 'mmio', gpa: 0n, len: 0, isWrite: false, data: 0n };
  private page: DataView | undefined;
  private pageWords: BigUint64Array | undefined;
  private pageHalves: Uint32Array | undefined;
  /** The last decoded address: its halves (-1: none yet) and its bigint. */
  private gpaLo = -1;
  private gpaHi = -1;
  private gpa = 0n;
  /** The last decoded written value: its length, its halves (masked to the length) and its bigint. */
  private dataLen = -1;
  private dataLo = 0;
  private dataHi = 0;
  private data = 0n;

  /**
   * The kvm_run page as 64-bit words, for the MMIO exit's address and data (both 8-byte aligned):
   * a typed-array load compiles inline, while DataView.getBigUint64 is a builtin call (~20 ns each,
   * hot; more on the cold caches a real exit leaves). Undefined where the words would not read as
   * the little-endian UAPI fields (a big-endian host, an unaligned view): decode uses the DataView.
   */
  words(run: DataView): BigUint64Array | undefined {
    if (run !== this.page) {
      this.page = run;
      const aligned = LITTLE_ENDIAN_HOST && run.byteOffset % 8 === 0 && Run.mmioPhysAddr % 8 === 0 && Run.mmioData % 8 === 0;
      this.pageWords = aligned ? new BigUint64Array(run.buffer, run.byteOffset, run.byteLength >>> 3) : undefined;
      this.pageHalves = aligned ? new Uint32Array(run.buffer, run.byteOffset, run.byteLength >>> 2) : undefined;
      this.gpaLo = -1;
      this.dataLen = -1;
    }
    return this.pageWords;
  }

  /** The MMIO exit's address (words(run) was called first and returned `w`). */
  mmioGpa(run: DataView, w: BigUint64Array | undefined): bigint {
    const h = this.pageHalves;
    if (w === undefined || h === undefined) return run.getBigUint64(Run.mmioPhysAddr, true);
    const lo = h[Run.mmioPhysAddr >>> 2]!;
    const hi = h[(Run.mmioPhysAddr >>> 2) + 1]!;
    if (lo !== this.gpaLo || hi !== this.gpaHi) {
      this.gpa = w[Run.mmioPhysAddr >>> 3]!;
      this.gpaLo = lo;
      this.gpaHi = hi;
    }
    return this.gpa;
  }

  /** The MMIO write's value, `len` bytes of it (at most 8; words(run) was called first and returned `w`). */
  mmioData(run: DataView, w: BigUint64Array | undefined, len: number): bigint {
    const h = this.pageHalves;
    const n = Math.min(len, 8);
    if (w === undefined || h === undefined) return readLe(run, Run.mmioData, n);
    // The halves masked to the access's bytes: what readLe() would read.
    let lo = h[Run.mmioData >>> 2]!;
    let hi = h[(Run.mmioData >>> 2) + 1]!;
    if (n < 8) hi = n <= 4 ? 0 : hi & (2 ** (8 * (n - 4)) - 1);
    if (n < 4) lo = lo & (2 ** (8 * n) - 1);
    if (n !== this.dataLen || lo !== this.dataLo || hi !== this.dataHi) {
      this.data = n === 8 ? w[Run.mmioData >>> 3]! : readLe(run, Run.mmioData, n);
      this.dataLen = n;
      this.dataLo = lo;
      this.dataHi = hi;
    }
    return this.data;
  }
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function dataArray(view: DataView, ndataOffset: number, dataOffset: number, max: number): bigint[] {
  const n = Math.min(view.getUint32(ndataOffset, true), max);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push(view.getBigUint64(dataOffset + 8 * i, true));
  return out;
}

/**
 * Decodes one KVM_RUN result. `ret` is the ioctl's return value as the native layer gives it
 * (0 or -errno). KVM's rule (Documentation/virt/kvm/api.rst): exit_reason is meaningful after a -1
 * return only for EFAULT/EHWPOISON with KVM_EXIT_MEMORY_FAULT; for every other errno it is stale.
 */
export function decodeExit(run: DataView, ret: number, into?: ExitScratch): VcpuExit {
  if (ret < 0) {
    const errno = -ret;
    if (errno === EINTR || errno === EAGAIN) return { kind: 'interrupted', errno };
    if (errno === EIO) return { kind: 'vm-bugged', errno };
    if ((errno === EFAULT || errno === EHWPOISON) && run.getUint32(Run.exitReason, true) === ExitReason.MEMORY_FAULT) {
      return {
        kind: 'memory-fault',
        errno,
        flags: run.getBigUint64(Run.memoryFaultFlags, true),
        gpa: run.getBigUint64(Run.memoryFaultGpa, true),
        size: run.getBigUint64(Run.memoryFaultSize, true),
      };
    }
    return { kind: 'run-error', errno };
  }
  const reason = run.getUint32(Run.exitReason, true);
  switch (reason) {
    case ExitReason.IO:
      if (into) {
        const e = into.io;
        e.direction = run.getUint8(Run.ioDirection) === KVM_EXIT_IO_OUT ? 'out' : 'in';
        e.size = run.getUint8(Run.ioSize) as 1 | 2 | 4;
        e.port = run.getUint16(Run.ioPort, true);
        e.count = run.getUint32(Run.ioCount, true);
        // data_offset is a u64 offset into the kvm_run mapping, always within its few pages.
        e.dataOffset = run.getUint32(Run.ioDataOffset, true) + run.getUint32(Run.ioDataOffset + 4, true) * 2 ** 32;
        return e;
      }
      return {
        kind: 'io',
        direction: run.getUint8(Run.ioDirection) === KVM_EXIT_IO_OUT ? 'out' : 'in',
        size: run.getUint8(Run.ioSize) as 1 | 2 | 4,
        port: run.getUint16(Run.ioPort, true),
        count: run.getUint32(Run.ioCount, true),
        dataOffset: Number(run.getBigUint64(Run.ioDataOffset, true)),
      };
    case ExitReason.MMIO: {
      const len = run.getUint32(Run.mmioLen, true);
      const isWrite = run.getUint8(Run.mmioIsWrite) !== 0;
      if (into) {
        const e = into.mmio;
        const w = into.words(run);
        e.gpa = into.mmioGpa(run, w);
        e.len = len;
        e.isWrite = isWrite;
        e.data = isWrite ? into.mmioData(run, w, len) : 0n;
        return e;
      }
      return {
        kind: 'mmio',
        gpa: run.getBigUint64(Run.mmioPhysAddr, true),
        len,
        isWrite,
        data: isWrite ? readLe(run, Run.mmioData, Math.min(len, 8)) : 0n,
      };
    }
    case ExitReason.HLT:
      return { kind: 'hlt' };
    case ExitReason.SHUTDOWN:
      return { kind: 'shutdown' };
    case ExitReason.FAIL_ENTRY:
      return {
        kind: 'fail-entry',
        hardwareReason: run.getBigUint64(Run.failEntryHardwareReason, true),
        cpu: run.getUint32(Run.failEntryCpu, true),
      };
    case ExitReason.INTERNAL_ERROR:
      // data[] is u64[16] in the UAPI
      return { kind: 'internal-error', suberror: run.getUint32(Run.internalSuberror, true), data: dataArray(run, Run.internalNdata, Run.internalData, 16) };
    case ExitReason.SYSTEM_EVENT:
      return { kind: 'system-event', type: run.getUint32(Run.systemEventType, true), data: dataArray(run, Run.systemEventNdata, Run.systemEventData, 16) };
    case ExitReason.INTR:
      return { kind: 'intr' };
    case ExitReason.IRQ_WINDOW_OPEN:
      return { kind: 'irq-window-open' };
    case ExitReason.UNKNOWN:
      return { kind: 'unknown', hardwareReason: run.getBigUint64(Run.hwHardwareReason, true) };
    default:
      return { kind: 'unsupported', reason };
  }
}

/** Completes an MMIO read: KVM copies run->mmio.data into the guest register on the next KVM_RUN. */
export function completeMmioRead(run: DataView, len: number, value: bigint): void {
  writeLe(run, Run.mmioData, Math.min(len, 8), value);
}
