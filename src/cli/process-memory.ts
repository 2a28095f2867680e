// Process-wide memory settings, made once by bin/tsvmm.js before anything else starts a thread
// (issue 10: RSS with 2 vCPUs). Each one was measured on `run --guest mmio-loop --vcpus 2`
// (README "Memory"); the vCPU worker's own heap limit is in vmm/vcpu-worker.ts.
import { native } from '../native';

/** At most this many glibc malloc arenas (glibc's default is 8 per core: one per thread here). */
export const MALLOC_ARENA_MAX = 2;
/** M_TRIM_THRESHOLD and M_MMAP_THRESHOLD: blocks this large come from mmap and go back when freed. */
export const MALLOC_THRESHOLD_BYTES = 128 << 10;

/** Caps and trims glibc's malloc arenas (through the addon, the only code that tunes the C runtime). */
export function tuneProcessMemory(): void {
  try {
    // A refusal costs memory, not correctness: nothing to report.
    native().tuneAllocator(MALLOC_ARENA_MAX, MALLOC_THRESHOLD_BYTES);
  } catch {
    // No addon (not built): commands that need it say so with their own error; the others
    // (--version, --help, a bad option) must not fail here.
  }
}
