// Machine remembers the offset of its last MMIO access (an exit to the same register as the one
// before makes no new bigint for it): the remembered offset must follow the memory map, so an access
// at the same address after a map change gets its new region's offset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HANDLER_FIRST_BAR } from '../src/vmm/fixed-devices';
import type { MmioHandler } from '../src/devices/device';
import { fakeMachine } from './fakes';

test('an MMIO access at the same address after a map change sees its new region and offset', () => {
  const m = fakeMachine({ barOrder: 'qemu' });
  const seen: [string, bigint][] = [];
  const handler = (name: string): MmioHandler => ({
    name,
    mmioRead: (offset) => (seen.push([name, offset]), 0n),
    mmioWrite: (offset) => void seen.push([name, offset]),
  });
  m.mmio.register(HANDLER_FIRST_BAR, handler('a'));
  m.mmio.register(HANDLER_FIRST_BAR + 1, handler('b'));
  const region = (name: string, gpa: bigint, priority: number, h: number) =>
    m.memoryMap.addRegion({ name, kind: 'mmio', gpa, size: 0x1000n, priority, hostAddress: 0n, readOnly: false, handler: h });
  region('a', 0xd000_0000n, 0, HANDLER_FIRST_BAR);
  const gpa = 0xd000_0010n;
  m.mmioWrite(gpa, 4, 1n, 0);
  m.mmioWrite(gpa, 4, 1n, 0);
  m.mmioRead(0xd000_0020n, 4, 0);
  // b covers a's first half from 0x800 bytes below: the same address is b's offset 0x810 now.
  const b = region('b', 0xcfff_f800n, 1, HANDLER_FIRST_BAR + 1);
  m.mmioWrite(gpa, 4, 1n, 0);
  m.mmioRead(gpa, 4, 0);
  m.memoryMap.removeRegion(b);
  m.mmioWrite(gpa, 4, 1n, 0);
  assert.deepEqual(seen, [
    ['a', 0x10n],
    ['a', 0x10n],
    ['a', 0x20n],
    ['b', 0x810n],
    ['b', 0x810n],
    ['a', 0x10n],
  ]);
});
