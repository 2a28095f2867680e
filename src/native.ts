// Typed view of the N-API addon (native/tsvmm.c), the only code in tsvmm that issues ioctl, mmap and
// mprotect, and the vCPU kick signal (its handler, mask and tgkill), and of native/kvm-run.cc, its
// per-exit KVM_RUN through the V8 API. fs, sockets, Atomics.wait and host signals (process.on,
// process.kill: src/cli/host-signals.ts) go through Node.
// Every function returns a negative errno on failure instead of throwing; `check()` turns that into
// a NativeError where the caller has no better answer.
import path from 'node:path';

export interface NativeConstants {
  readonly [name: string]: number;
}

export interface Native {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: number, arg: number | bigint): number;
  /** The view must be at least _IOC_SIZE(request) bytes (the addon refuses smaller ones). */
  ioctlBuffer(fd: number, request: number, view: ArrayBufferView): number;
  /** KVM_RUN on a vCPU fd: 0 or -errno (the per-exit call, with the cheapest argument handling). */
  kvmRun(vcpuFd: number): number;
  /** [host address, external ArrayBuffer] or -errno. Never GC-unmapped: call munmap explicitly. */
  mmapBuffer(fd: number, length: number, prot: number, flags: number, offset: number): [bigint, ArrayBuffer] | number;
  /** A mapping JS must never touch (only the kernel/KVM use it). bigint address or -errno. */
  mmapAddress(fd: number, length: number, prot: number, flags: number, offset: number): bigint | number;
  munmap(address: bigint, length: number): number;
  mprotect(address: bigint, length: number, prot: number): number;
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, length: number): number;
  pread(fd: number, view: ArrayBufferView, offset: number): number;
  pwrite(fd: number, view: ArrayBufferView, offset: number): number;
  eventfd(initval: number, flags: number): number;
  gettid(): number;
  getpid(): number;
  /** malloc_trim(0): free pages of every glibc arena back to the kernel; 1 if any were released. */
  mallocTrim(): number;
  /** A memory-reducing full GC of the calling thread's V8 isolate (native/v8-heap.cc); true if it ran. */
  reduceHeap(): boolean;
  tgkill(tgid: number, tid: number, signal: number): number;
  installKickHandler(signal: number): number;
  unblockSignal(signal: number): number;
  strerror(errno: number): string;
  /** glibc mallopt: at most `arenaMax` malloc arenas; M_TRIM_THRESHOLD and M_MMAP_THRESHOLD = `threshold` bytes. 0, or -1 if glibc refused. */
  tuneAllocator(arenaMax: number, threshold: number): number;
  readonly constants: NativeConstants;
  /** The KVM UAPI as the C compiler sees <linux/kvm.h>, keyed by the names src/kvm/constants.ts uses. */
  kvmAbi(): KvmAbi;
  /** VFIO struct layouts from <linux/vfio.h>, keyed "<table>.<field>" as src/vfio/uapi.ts names them. */
  vfioAbi(): NativeConstants;
}

/** Groups of kvmAbi(); a value the build's headers lack is absent (see test/kvm-constants.test.ts). */
export interface KvmAbi {
  readonly run: NativeConstants;
  readonly exitReason: NativeConstants;
  readonly systemEventType: NativeConstants;
  readonly caps: NativeConstants;
  readonly ioctls: NativeConstants;
  readonly sizes: NativeConstants;
  readonly misc: NativeConstants;
  /** Flag values src/ passes by name through c() that are not ioctl requests. */
  readonly flags: NativeConstants;
  readonly regs: NativeConstants;
  readonly sregs: NativeConstants;
  readonly segment: NativeConstants;
  readonly dtable: NativeConstants;
  readonly userspaceMemoryRegion: NativeConstants;
  readonly ioeventfd: NativeConstants;
  readonly coalescedMmioZone: NativeConstants;
  readonly coalescedMmioRing: NativeConstants;
  readonly coalescedMmio: NativeConstants;
}

let loaded: Native | undefined;
let kvmRunVia: 'v8' | 'n-api' = 'n-api';

/**
 * Loads the addon once per thread (N-API addons are context-aware, so workers load their own), with
 * kvmRun taken from native/kvm-run.cc (the V8 API: half the user-space cycles per exit) when that
 * addon loads; it is built for the Node that ran the build, so another Node keeps the N-API one.
 */
export function native(): Native {
  if (!loaded) {
    const file = path.resolve(__dirname, '../../build/Release/tsvmm_native.node');
    let addon: Native;
    try {
      addon = require(file) as Native;
    } catch (e) {
      throw new NativeError(`cannot load the native addon ${file}: ${(e as Error).message}; run \`npm ci\` (or \`npm run build\`)`, 0);
    }
    let fast: Pick<Native, 'kvmRun'> | undefined;
    try {
      fast = require(path.resolve(__dirname, '../../build/Release/tsvmm_kvm_run.node')) as Pick<Native, 'kvmRun'>;
    } catch {
      fast = undefined; // built for another Node (module version): the N-API kvmRun does the same
    }
    kvmRunVia = fast ? 'v8' : 'n-api';
    // The addon's properties are read-only: kvmRun is shadowed on an object that inherits the rest.
    loaded = fast ? (Object.create(addon, { kvmRun: { value: fast.kvmRun, enumerable: true } }) as Native) : addon;
  }
  return loaded;
}

/** Which addon's kvmRun native() gives this thread (the bench prints it). */
export function kvmRunBinding(): 'v8' | 'n-api' {
  native();
  return kvmRunVia;
}

export class NativeError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}

/** Formats a -errno return as "<what>: <strerror> (errno N)". */
export function describeErrno(errno: number): string {
  const e = Math.abs(errno);
  return `${native().strerror(e)} (errno ${e})`;
}

/** Returns `ret` when it is not a negative errno, else throws NativeError naming `what`. */
export function check(ret: number, what: string): number {
  if (ret < 0) throw new NativeError(`${what}: ${describeErrno(ret)}`, -ret);
  return ret;
}

export function c(name: string): number {
  const v = native().constants[name];
  if (v === undefined) throw new NativeError(`native constant ${name} is not exported by the addon`, 0);
  return v;
}
