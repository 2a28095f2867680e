// Guest image header parsing, loading and name resolution (no KVM, no assembler needed).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BUILTIN_GUESTS,
  GUEST_MAGIC,
  guestEntry,
  GuestImageError,
  loadGuest,
  parseGuestHeader,
  resolveGuest,
  UnknownGuestError,
} from '../src/boot/guest-image';
import { GUEST_LOAD_GPA } from '../src/boot/layout';

function image(opts: { magic?: bigint; version?: number; entries?: bigint[]; count?: number; codeBytes?: number } = {}): Uint8Array {
  const entries = opts.entries ?? [GUEST_LOAD_GPA + 0x20n];
  const header = 16 + 8 * entries.length;
  const bytes = new Uint8Array(header + (opts.codeBytes ?? 32));
  const v = new DataView(bytes.buffer);
  v.setBigUint64(0, opts.magic ?? GUEST_MAGIC, true);
  v.setUint32(8, opts.version ?? 1, true);
  v.setUint32(12, opts.count ?? entries.length, true);
  entries.forEach((e, i) => v.setBigUint64(16 + 8 * i, e, true));
  bytes.fill(0x90, header);
  return bytes;
}

describe('guest image header', () => {
  test("the magic is 'TSVMGST1' in file order", () => {
    assert.equal(Buffer.from(image().subarray(0, 8)).toString('latin1'), 'TSVMGST1');
  });

  test('a good header parses', () => {
    const img = image({ entries: [GUEST_LOAD_GPA + 0x20n, GUEST_LOAD_GPA + 0x28n] });
    assert.deepEqual(parseGuestHeader(img), { version: 1, entries: [0x10_0020n, 0x10_0028n], headerSize: 32 });
  });

  test('errors say what is wrong and where', () => {
    assert.throws(() => parseGuestHeader(new Uint8Array(10), 'g'), { name: 'GuestImageError', message: /g: 10 bytes is shorter than the 16-byte header/ });
    assert.throws(() => parseGuestHeader(image({ magic: 0x7f454c46n }), 'g'), {
      message: /g: bad magic at offset 0: expected 'TSVMGST1', found 'FLE\\x7f\\x00\\x00\\x00\\x00'/,
    });
    assert.throws(() => parseGuestHeader(image({ version: 2 })), /unsupported header version 2 at offset 0x8/);
    assert.throws(() => parseGuestHeader(image({ count: 0 })), /entry count 0 at offset 0xc must be 1\.\.64/);
    assert.throws(() => parseGuestHeader(image({ count: 65 })), /entry count 65/);
    assert.throws(() => parseGuestHeader(image({ count: 9, codeBytes: 0 })), /9 entries need a 88-byte header but the image is 24 bytes/);
    assert.throws(
      () => parseGuestHeader(image({ entries: [GUEST_LOAD_GPA + 0x20n, 0x1000n] })),
      /entry 1 \(offset 0x18\) is 0x1000, outside the image's code \[0x100020, 0x100040\)/,
    );
    assert.throws(() => parseGuestHeader(image({ entries: [GUEST_LOAD_GPA] })), /entry 0 .* is 0x100000, outside/, 'an entry inside the header');
    assert.throws(() => parseGuestHeader(image({ entries: [GUEST_LOAD_GPA + 0x38n] })), /outside/, 'an entry one past the end');
  });

  test('loadGuest copies the image to 1 MiB and returns its entries', () => {
    const ram = new Uint8Array(2 << 20);
    const img = image();
    assert.deepEqual(loadGuest(ram, img), { entries: [GUEST_LOAD_GPA + 0x20n] });
    assert.deepEqual(ram.subarray(0x10_0000, 0x10_0000 + img.length), img);
    assert.equal(ram[0x10_0000 + img.length], 0);
    assert.throws(() => loadGuest(new Uint8Array(0x10_0010), img, 'big'), /big: 56 bytes at 0x100000 do not fit in 1048592 bytes/);
    assert.throws(() => loadGuest(ram, image({ version: 9 })), GuestImageError);
  });

  test('vCPU i uses entries[min(i, n-1)]', () => {
    const e = [1n, 2n];
    assert.deepEqual(
      [0, 1, 2, 63].map((i) => guestEntry(e, i)),
      [1n, 2n, 2n, 2n],
    );
  });
});

describe('resolveGuest', () => {
  test('an unknown name lists the built-in guests', () => {
    assert.throws(
      () => resolveGuest('no-such-guest'),
      (e: unknown) => {
        assert.ok(e instanceof UnknownGuestError);
        assert.equal(e.guest, 'no-such-guest');
        assert.match(e.message, /^unknown guest 'no-such-guest': not a built-in guest \(hello, pio-loop, .*\) and no such file$/);
        for (const n of BUILTIN_GUESTS) assert.ok(e.message.includes(n), n);
        return true;
      },
    );
    assert.throws(() => resolveGuest('./missing.bin'), UnknownGuestError);
  });

  const helloBuilt = fs.existsSync(path.resolve(__dirname, '../../build/guests/hello.bin'));
  test('a built-in name resolves to build/guests/<name>.bin', { skip: helloBuilt ? false : 'guests not built (npm run build)' }, () => {
    const r = resolveGuest('hello');
    assert.equal(r.name, 'hello');
    assert.ok(parseGuestHeader(r.bytes, 'hello').entries.length >= 1);
  });

  test('a file path is read as an image; a directory is refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-guest-'));
    try {
      const file = path.join(dir, 'mine.bin');
      fs.writeFileSync(file, image());
      const r = resolveGuest(file);
      assert.equal(r.name, 'mine');
      assert.deepEqual(r.bytes, image());
      assert.throws(() => resolveGuest(dir), /not a regular file/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
