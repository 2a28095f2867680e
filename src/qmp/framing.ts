// Splits a QMP client's byte stream into messages, the way QEMU's json-streamer does: a message
// that starts with '{' or '[' ends at its matching bracket (it may span lines; a trailing CR, LF or
// nothing at all is fine), and anything else (a scalar, junk) ends at the next CR or LF.
//
// Bounds, so that no input can grow memory or stack without limit:
// - a message longer than MAX_MESSAGE_BYTES, or nested deeper than MAX_JSON_NESTING, gets ONE
//   error and everything up to the next CR or LF is discarded unread. QEMU instead re-synchronises
//   at the next '{' after its limits; tsvmm does not, so that junk can never carry a command inside
//   it (`<1 MiB of junk>{"execute":"stop"}` runs nothing);
// - junk before a '{' on the same line makes the whole line one parse error, for the same reason
//   (QEMU would report the junk and then run the object).
import { MAX_JSON_NESTING } from './json';

/** The longest message tsvmm reads (QEMU's own limit, MAX_TOKEN_SIZE, is 64 MiB). */
export const MAX_MESSAGE_BYTES = 1 << 20;

export type FramedInput = { kind: 'message'; text: string } | { kind: 'error'; desc: string };

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

export class QmpInputFramer {
  private parts: Buffer[] = [];
  private size = 0;
  private mode: 'idle' | 'structured' | 'scalar' | 'discard' = 'idle';
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly maxBytes = MAX_MESSAGE_BYTES) {}

  /** Bytes held for an unfinished message (bounded by maxBytes). */
  get pendingBytes(): number {
    return this.size;
  }

  /** Feeds bytes; returns the messages and framing errors they complete, in order. */
  push(chunk: Buffer): FramedInput[] {
    const out: FramedInput[] = [];
    let start = 0; // where the current message's bytes begin in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      switch (this.mode) {
        case 'discard':
          if (b === LF || b === CR) this.mode = 'idle';
          continue;
        case 'idle':
          if (b === 0x20 || b === 0x09 || b === LF || b === CR) continue;
          start = i;
          this.mode = b === 0x7b || b === 0x5b ? 'structured' : 'scalar';
          this.depth = 0;
          this.inString = false;
          this.escaped = false;
          break;
        default:
          break;
      }
      if (this.mode === 'scalar') {
        if (b === LF || b === CR) {
          this.emit(out, chunk, start, i);
          this.mode = 'idle';
          continue;
        }
      } else if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === BACKSLASH) this.escaped = true;
        else if (b === QUOTE) this.inString = false;
        else if (b === LF || b === CR) {
          // A raw line end cannot be inside a JSON string: the line was bad; resynchronise here.
          this.emit(out, chunk, start, i);
          this.mode = 'idle';
          continue;
        }
      } else if (b === QUOTE) {
        this.inString = true;
      } else if (b === 0x7b || b === 0x5b) {
        if (++this.depth > MAX_JSON_NESTING) {
          this.refuse(out, 'JSON nesting depth limit exceeded', b);
          continue;
        }
      } else if (b === 0x7d || b === 0x5d) {
        if (--this.depth === 0 && this.size + (i + 1 - start) <= this.maxBytes) {
          this.emit(out, chunk, start, i + 1);
          this.mode = 'idle';
          continue;
        }
      }
      if (this.size + (i + 1 - start) > this.maxBytes) {
        this.refuse(out, `JSON token size limit exceeded: QMP input over ${this.maxBytes} bytes, discarded up to the next line end`, b);
      }
    }
    if (this.mode === 'structured' || this.mode === 'scalar') this.keep(chunk.subarray(start));
    return out;
  }

  private keep(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // A copy: the socket's chunk buffer must not be pinned by a few bytes of it.
    this.parts.push(Buffer.from(bytes));
    this.size += bytes.length;
  }

  private emit(out: FramedInput[], chunk: Buffer, start: number, end: number): void {
    this.keep(chunk.subarray(start, end));
    const bytes = Buffer.concat(this.parts);
    try {
      out.push({ kind: 'message', text: UTF8.decode(bytes) });
    } catch {
      // QEMU refuses invalid UTF-8 too (its lexer reports a stray byte), rather than read U+FFFD.
      out.push({ kind: 'error', desc: 'JSON parse error, invalid UTF-8 sequence' });
    }
    this.parts = [];
    this.size = 0;
  }

  /** One error for the message, whose rest (up to a line end) is then skipped unread. */
  private refuse(out: FramedInput[], desc: string, at: number): void {
    out.push({ kind: 'error', desc });
    this.parts = [];
    this.size = 0;
    // The byte that crossed the limit may itself end the line (a structured message spans lines).
    this.mode = at === LF || at === CR ? 'idle' : 'discard';
  }
}
