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
import { hex } from '../hex';
import { UserInputError } from '../user-input-error';

export const GUEST_MAGIC = 0x3154_5347_4d56_5354n; // "TSVMGST1"
export const GUEST_HEADER_VERSION = 1;
export const GUEST_HEADER_FIXED_SIZE = 16;

export const BUILTIN_GUESTS = [
  'hello',
  'pio-loop',
  'mmio-loop',
  'race',
  'probe-read',
  'probe-read-cpl0',
  'triple-fault',
  'exception',
  'double-fault',
  'print-loop',
] as const;
export type BuiltinGuest = (typeof BUILTIN_GUESTS)[number];

export class UnknownGuestError extends UserInputError {
  constructor(readonly guest: string) {
    super(`unknown guest '${guest}': not a built-in guest (${BUILTIN_GUESTS.join(', ')}) and no such file`);
    this.name = 'UnknownGuestError';
  }
}

export class GuestImageError extends UserInputError {
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

/** Images are read whole into memory, and Node reads at most 2 GiB - 1 bytes at once. */
export const MAX_GUEST_IMAGE_BYTES = 2 ** 31 - 1;
/** statfs f_type of the pseudo-filesystems whose "regular files" are not images (linux/magic.h). */
const PSEUDO_FS = new Map<number, string>([
  [0x9fa0, '/proc'],
  [0x6265_6572, '/sys'],
]);

export interface ResolvedGuest {
  name: string;
  /** The file read (labels error messages). */
  file: string;
  bytes: Uint8Array;
  entries: bigint[];
}

/**
 * A built-in guest name, or a path to an image file. Names that contain a path separator or end in
 * `.bin` are always paths; otherwise a built-in name wins over a file of the same name. The file
 * is checked (type, size against `maxBytes` and MAX_GUEST_IMAGE_BYTES) before it is read, and its
 * header right after, so a bad image fails before KVM or guest RAM is set up.
 */
export function resolveGuest(nameOrPath: string, maxBytes = MAX_GUEST_IMAGE_BYTES): ResolvedGuest {
  const looksLikePath = nameOrPath.includes('/') || nameOrPath.includes(path.sep) || nameOrPath.endsWith('.bin');
  if (!looksLikePath && isBuiltin(nameOrPath)) {
    const file = builtinGuestPath(nameOrPath);
    if (!fs.existsSync(file)) {
      throw new GuestImageError(`built-in guest '${nameOrPath}' is not built (${file} is missing): run \`npm run build\``);
    }
    return readImage(nameOrPath, file, maxBytes);
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(nameOrPath);
  } catch {
    st = undefined;
  }
  if (!st) throw new UnknownGuestError(nameOrPath);
  return readImage(path.basename(nameOrPath).replace(/\.bin$/, ''), nameOrPath, maxBytes);
}

function readImage(name: string, file: string, maxBytes: number): ResolvedGuest {
  const limit = Math.min(maxBytes, MAX_GUEST_IMAGE_BYTES);
  const refuse = (why: string) => new GuestImageError(`guest image ${file}: ${why}`);
  // stat before open: opening a FIFO would block until someone writes to it.
  const pre = fs.statSync(file);
  if (!pre.isFile()) throw refuse('not a regular file');
  try {
    const pseudo = PSEUDO_FS.get(Number(fs.statfsSync(file).type));
    if (pseudo) throw refuse(`a ${pseudo} pseudo-file, not an image`);
  } catch (e) {
    if (e instanceof GuestImageError) throw e; // statfs itself failing is no reason to refuse
  }
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw refuse(`cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw refuse('not a regular file');
    if (st.size > limit) {
      throw refuse(
        limit < MAX_GUEST_IMAGE_BYTES
          ? `${st.size} bytes do not fit in guest RAM (at most ${limit} bytes can be loaded at ${hex(GUEST_LOAD_GPA)})`
          : `${st.size} bytes is too big (images must be smaller than 2 GiB)`,
      );
    }
    const bytes = new Uint8Array(st.size);
    let off = 0;
    while (off < bytes.length) {
      let n: number;
      try {
        n = fs.readSync(fd, bytes, off, bytes.length - off, off);
      } catch (e) {
        throw refuse(`read failed at offset ${off}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      if (n === 0) throw refuse(`the file shrank to ${off} bytes while it was read`);
      off += n;
    }
    const { entries } = parseGuestHeader(bytes, `guest image ${file}`);
    return { name, file, bytes, entries };
  } finally {
    fs.closeSync(fd);
  }
}

/** The most image bytes that fit in `ramBytes` of guest RAM (loaded at GUEST_LOAD_GPA, below LOW_RAM_END). */
export function maxImageBytes(ramBytes: bigint, lowRamEnd: bigint): number {
  const low = ramBytes < lowRamEnd ? ramBytes : lowRamEnd;
  const room = low - GUEST_LOAD_GPA;
  return room <= 0n ? 0 : Number(room < BigInt(MAX_GUEST_IMAGE_BYTES) ? room : BigInt(MAX_GUEST_IMAGE_BYTES));
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
      throw new GuestImageError(
        `${name}: entry ${i} (offset ${hex(off)}) is ${hex(e)}, outside the image's code [${hex(lo)}, ${hex(hi)}) (images load at ${hex(GUEST_LOAD_GPA)})`,
      );
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
