// Start-up memory settings (issue 10, RSS with 2 vCPUs): glibc's malloc arenas capped through the
// addon, and the vCPU worker's young generation capped (README "Memory").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../src/native';
import { MALLOC_ARENA_MAX, MALLOC_THRESHOLD_BYTES, tuneProcessMemory } from '../src/cli/process-memory';
import { prespawnVcpuWorker, startVcpuWorker, VCPU_HEAP_LIMITS } from '../src/vmm/vcpu-worker';
import type { VcpuThreadData } from '../src/vmm/vcpu-thread';

test('tuneAllocator: glibc takes the settings; nonsense is refused with a RangeError', () => {
  assert.equal(native().tuneAllocator(MALLOC_ARENA_MAX, MALLOC_THRESHOLD_BYTES), 0);
  assert.throws(() => native().tuneAllocator(0, MALLOC_THRESHOLD_BYTES), RangeError);
  assert.throws(() => native().tuneAllocator(2, 100), RangeError);
  assert.throws(() => (native().tuneAllocator as (...a: unknown[]) => number)('2'), RangeError);
  tuneProcessMemory();
});

test("a vCPU worker's young generation stays within its cap while it allocates", async () => {
  // A stand-in thread script (the real one needs a VM): it churns short-lived objects, as the exit
  // loop does, then reports its new space.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-heap-'));
  const entry = path.join(dir, 'thread.js');
  fs.writeFileSync(
    entry,
    `const { parentPort } = require('node:worker_threads');
const v8 = require('node:v8');
parentPort.once('message', () => {
  let keep = [];
  for (let i = 0; i < 2e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 20000) keep = []; }
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
  parentPort.postMessage(s.space_size);
});`,
  );
  try {
    prespawnVcpuWorker(entry);
    const w = startVcpuWorker({} as VcpuThreadData);
    assert.equal(w.resourceLimits?.maxYoungGenerationSizeMb, VCPU_HEAP_LIMITS.maxYoungGenerationSizeMb);
    const [newSpaceBytes] = (await once(w, 'message')) as [number];
    assert.ok(newSpaceBytes <= VCPU_HEAP_LIMITS.maxYoungGenerationSizeMb * 2 ** 20, `new space ${newSpaceBytes} bytes`);
    await w.terminate();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
