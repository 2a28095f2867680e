// Host memory operations that device backends need (shared-memory files, mappings handed to the
// hypervisor, revoking and restoring those mappings, and fd-based access). The real implementation
// goes to the native layer; the kernel model (src/sim/) implements the same interface, so the shm
// passthrough backend runs unchanged on both.
import { check, describeErrno, native, NativeError } from '../native';

export interface HostMemory {
  /** A shared-memory file of `size` bytes (memfd). Returns its fd. */
  createFile(name: string, size: number): number;
  /** Maps a file shared, read/write, for the hypervisor only (JS never dereferences it). */
  mapForGuest(fd: number, size: number): bigint;
  /**
   * Makes a mapping accessible or not. Revoking removes every page-table entry at once, so KVM's
   * MMU notifier zaps its shadow of it too and later host faults on it fail (KVM_RUN: EFAULT).
   */
  setAccessible(address: bigint, size: number, accessible: boolean): void;
  /** Reads/writes the file by offset (never through a mapping): 0..n bytes or -errno. */
  pread(fd: number, buf: Uint8Array, offset: number): number;
  pwrite(fd: number, buf: Uint8Array, offset: number): number;
}

/**
 * The real host. It remembers the files and mappings it made, so their owner (a Vm) can release
 * them all at once with releaseAll(), also after a failure half-way through building a machine.
 */
export class NativeHostMemory implements HostMemory {
  private readonly files = new Set<number>();
  private readonly mappings = new Map<bigint, number>();

  createFile(name: string, size: number): number {
    const n = native();
    const fd = check(n.memfdCreate(name, 0), `memfd_create(${name})`);
    const r = n.ftruncate(fd, size);
    if (r < 0) {
      n.close(fd);
      check(r, `ftruncate(${name}, ${size})`);
    }
    this.files.add(fd);
    return fd;
  }

  mapForGuest(fd: number, size: number): bigint {
    const n = native();
    const a = n.mmapAddress(fd, size, n.constants.PROT_READ | n.constants.PROT_WRITE, n.constants.MAP_SHARED, 0);
    if (typeof a === 'number') throw new NativeError(`mmap of fd ${fd} (${size} bytes): ${describeErrno(a)}`, -a);
    this.mappings.set(a, size);
    return a;
  }

  /** Unmaps every mapping and closes every file made here. Nothing may use them afterwards. */
  releaseAll(): void {
    const n = native();
    for (const [address, size] of this.mappings) n.munmap(address, size);
    this.mappings.clear();
    for (const fd of this.files) n.close(fd);
    this.files.clear();
  }

  setAccessible(address: bigint, size: number, accessible: boolean): void {
    const n = native();
    const prot = accessible ? n.constants.PROT_READ | n.constants.PROT_WRITE : n.constants.PROT_NONE;
    check(n.mprotect(address, size, prot), `mprotect(0x${address.toString(16)}, ${size}, ${accessible ? 'RW' : 'NONE'})`);
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    return native().pread(fd, buf, offset);
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    return native().pwrite(fd, buf, offset);
  }
}
