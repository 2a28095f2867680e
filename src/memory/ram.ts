// Guest RAM: shared-memory files mapped for the hypervisor, split in chunks. The main thread
// allocates them once (allocateRam); every thread maps the same files (GuestMemory) and the memory
// map gives each chunk a memslot.
import type { HostMemory } from './host-memory';

/** One RAM file and its hypervisor mapping: plain data, so it can cross threads. */
export interface RamChunk {
  gpa: bigint;
  size: bigint;
  fd: number;
  hostAddress: bigint;
}

/** RAM chunks are at most this big, so each thread's view of one stays under V8's 4 GiB limit. */
export const RAM_CHUNK_MAX = 0x8000_0000n;

/** Where RAM goes around the hole below 4 GiB: [0, lowRamEnd), then the rest from highRamBase. */
export interface RamSplit {
  lowRamEnd: bigint;
  highRamBase: bigint;
}

/** Allocates `ramBytes` of guest RAM in chunks of at most RAM_CHUNK_MAX, lowest GPA first. */
export function allocateRam(hostMemory: HostMemory, ramBytes: bigint, split: RamSplit): RamChunk[] {
  const ram: RamChunk[] = [];
  const addRam = (gpa: bigint, size: bigint) => {
    for (let off = 0n; off < size; off += RAM_CHUNK_MAX) {
      const len = size - off < RAM_CHUNK_MAX ? size - off : RAM_CHUNK_MAX;
      const fd = hostMemory.createFile(`tsvmm-ram@${(gpa + off).toString(16)}`, Number(len));
      ram.push({ gpa: gpa + off, size: len, fd, hostAddress: hostMemory.mapForGuest(fd, Number(len)) });
    }
  };
  const low = ramBytes < split.lowRamEnd ? ramBytes : split.lowRamEnd;
  addRam(0n, low);
  if (ramBytes > low) addRam(split.highRamBase, ramBytes - low);
  return ram;
}
