// Guest images: the built-in guests (guests/*.S, built by scripts/build-guests.js into
// build/guests/<name>.bin) or a user file in the same format. An image is loaded at GUEST_LOAD_GPA
// (1 MiB) as is; it starts with a header (little-endian):
//   0x00 u64    magic 'TSVMGST1'
//   0x08 u32    header version (1)
//   0x0c u32    entry count n (1..MAX_VCPUS)
//   0x10 u64[n] entry GPAs; vCPU i starts at entries[min(i, n-1)]
// Every entry must point inside the image, past the header. guests/include/tsvmm.inc.in has the
// GUEST_HEADER macro that emits it.
import fs from 'node:fs';
import path from 'node:path';
import { GUEST_LOAD_GPA, MAX_VCPUS } from './layout';
import { viewOf } from '../le-bytes';

export const GUEST_MAGIC = 0x3154_5347_4d56_5354n; // "TSVMGST1"
export const GUEST_HEADER_VERSION = 1;
export const GUEST_HEADER_FIXED_SIZE = 16;

export const BUILTIN_GUESTS = ['hello', 'pio-loop', 'mmio-loop', 'race', 'probe-read', 'probe-read-cpl0', 'triple-fault', 'exception', 'double-fault'] as const;
export type BuiltinGuest = (typeof BUILTIN_GUESTS)[number];

export class UnknownGuestError extends Error {
  constructor(readonly guest: string) {
    super(`unknown guest '${guest}': not a built-in guest (${BUILTIN_GUESTS.join(', ')}) and no such file`);
    this.name = 'UnknownGuestError';
  }
}

export class GuestImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestImageError';
  }
}

/** The project root (the directory with tsvmm's package.json), from src/boot or dist/src/boot. */
function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tsvmm') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new GuestImageError(`cannot find the tsvmm project directory above ${__dirname}`);
    dir = up;
  }
}

export function builtinGuestPath(name: BuiltinGuest): string {
  return path.join(projectRoot(), 'build', 'guests', `${name}.bin`);
}

function isBuiltin(name: string): name is BuiltinGuest {
  return (BUILTIN_GUESTS as readonly string[]).includes(name);
}

/**
 * A built-in guest name, or a path to an image file. Names that contain a path separator or end in
 * `.bin` are always paths; otherwise a built-in name wins over a file of the same name.
 */
export function resolveGuest(nameOrPath: string): { name: string; bytes: Uint8Array } {
  const looksLikePath = nameOrPath.includes('/') || nameOrPath.includes(path.sep) || nameOrPath.endsWith('.bin');
  if (!looksLikePath && isBuiltin(nameOrPath)) {
    const file = builtinGuestPath(nameOrPath);
    if (!fs.existsSync(file)) {
      throw new GuestImageError(`built-in guest '${nameOrPath}' is not built (${file} is missing): run \`npm run build\``);
    }
    return { name: nameOrPath, bytes: new Uint8Array(fs.readFileSync(file)) };
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(nameOrPath);
  } catch {
    st = undefined;
  }
  if (!st) throw new UnknownGuestError(nameOrPath);
  if (!st.isFile()) throw new GuestImageError(`guest image ${nameOrPath}: not a regular file`);
  return { name: path.basename(nameOrPath).replace(/\.bin$/, ''), bytes: new Uint8Array(fs.readFileSync(nameOrPath)) };
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/** Parses and checks an image header; `name` only labels error messages. */
export function parseGuestHeader(bytes: Uint8Array, name = 'guest image'): { version: number; entries: bigint[]; headerSize: number } {
  if (bytes.byteLength < GUEST_HEADER_FIXED_SIZE) {
    throw new GuestImageError(`${name}: ${bytes.byteLength} bytes is shorter than the ${GUEST_HEADER_FIXED_SIZE}-byte header`);
  }
  const v = viewOf(bytes);
  const magic = v.getBigUint64(0, true);
  if (magic !== GUEST_MAGIC) {
    const found = Array.from(bytes.subarray(0, 8), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
    throw new GuestImageError(`${name}: bad magic at offset 0: expected 'TSVMGST1', found '${found}'`);
  }
  const version = v.getUint32(8, true);
  if (version !== GUEST_HEADER_VERSION) {
    throw new GuestImageError(`${name}: unsupported header version ${version} at offset 0x8 (this tsvmm reads version ${GUEST_HEADER_VERSION})`);
  }
  const count = v.getUint32(12, true);
  if (count < 1 || count > MAX_VCPUS) {
    throw new GuestImageError(`${name}: entry count ${count} at offset 0xc must be 1..${MAX_VCPUS}`);
  }
  const headerSize = GUEST_HEADER_FIXED_SIZE + 8 * count;
  if (bytes.byteLength < headerSize) {
    throw new GuestImageError(`${name}: ${count} entries need a ${headerSize}-byte header but the image is ${bytes.byteLength} bytes`);
  }
  const lo = GUEST_LOAD_GPA + BigInt(headerSize);
  const hi = GUEST_LOAD_GPA + BigInt(bytes.byteLength);
  const entries: bigint[] = [];
  for (let i = 0; i < count; i++) {
    const off = GUEST_HEADER_FIXED_SIZE + 8 * i;
    const e = v.getBigUint64(off, true);
    if (e < lo || e >= hi) {
      throw new GuestImageError(`${name}: entry ${i} (offset ${hex(off)}) is ${hex(e)}, outside the image's code [${hex(lo)}, ${hex(hi)}) (images load at ${hex(GUEST_LOAD_GPA)})`);
    }
    entries.push(e);
  }
  return { version, entries, headerSize };
}

/** Copies an image into guest RAM (`ram` views RAM from GPA 0) at GUEST_LOAD_GPA. */
export function loadGuest(ram: Uint8Array, bytes: Uint8Array, name = 'guest image'): { entries: bigint[] } {
  const { entries } = parseGuestHeader(bytes, name);
  const start = Number(GUEST_LOAD_GPA);
  if (start + bytes.byteLength > ram.byteLength) {
    throw new GuestImageError(`${name}: ${bytes.byteLength} bytes at ${hex(start)} do not fit in ${ram.byteLength} bytes of low guest RAM`);
  }
  ram.set(bytes, start);
  return { entries };
}

/** The entry point of vCPU `index`. */
export function guestEntry(entries: readonly bigint[], index: number): bigint {
  const e = entries[Math.min(index, entries.length - 1)];
  if (e === undefined) throw new GuestImageError('guest image has no entry points');
  return e;
}
