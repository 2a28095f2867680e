// The main thread's side of the guest console: the one writer. It drains the ConsoleRing that the
// devices of every thread fill, and hands the bytes to a sink function (VmOptions.console) or to a
// stream (default: process.stdout) one chunk at a time, waiting for each write to complete. That
// wait is the backpressure: while the stream is slow the ring fills and the vCPUs that print wait
// (ConsoleRing.write). A failed stream (EPIPE from `| true`, ENOSPC from `> /dev/full`) or a sink
// that throws never fails the VM: the bytes are dropped, counted, and summarised once at the end.
import type { Writable } from 'node:stream';
import { CONSOLE_STALL_MS, type ConsoleRing } from './console-ring';

export type ConsoleSink = (bytes: Uint8Array) => void;

const CHUNK_BYTES = 16 * 1024;
/** The reader re-checks the ring this often even without a notification (belt and braces). */
const POLL_MS = 200;

export class ConsoleOutput {
  private pump: Promise<void> | undefined;
  private stopping = false;
  private failure: string | undefined;
  private readonly onStreamError = (e: NodeJS.ErrnoException) => this.fail(e);

  constructor(
    readonly ring: ConsoleRing,
    private readonly target: { sink: ConsoleSink } | { stream: Writable; name: string },
  ) {}

  /** Starts draining. */
  start(): void {
    if (this.pump) return;
    if ('stream' in this.target) this.target.stream.on('error', this.onStreamError);
    this.pump = this.run();
  }

  /**
   * Writes what is still in the ring (waiting at most `deadlineMs` for a stream that does not take
   * it), then closes the ring: later bytes are dropped and counted. Idempotent.
   */
  async stop(deadlineMs = CONSOLE_STALL_MS): Promise<void> {
    if (!this.pump) {
      this.ring.close();
      return;
    }
    this.stopping = true;
    this.ring.wakeReader();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deadlineMs)));
    const r = await Promise.race([this.pump, late]);
    clearTimeout(timer);
    this.ring.close();
    if (r === 'late') {
      this.failure ??= `${this.targetName()} took no output for ${deadlineMs} ms`;
      const rest = this.ring.used;
      this.ring.read(); // discard
      if (rest > 0) this.ring.addDropped(rest);
    }
    if ('stream' in this.target) {
      // A write still pending may fail later: its 'error' must not become an uncaught exception.
      if (r === 'late' && this.target.stream.listenerCount('error') === 1) this.target.stream.on('error', () => {});
      this.target.stream.off('error', this.onStreamError);
    }
  }

  /** Bytes of guest output that were dropped (0 when everything was written). */
  get dropped(): number {
    return this.ring.dropped;
  }

  /** One line for stderr when output was lost, else undefined. */
  summary(): string | undefined {
    const d = this.dropped;
    if (d === 0 && !this.failure) return undefined;
    return `guest console: ${d} byte(s) of output dropped${this.failure ? ` (${this.failure})` : ' (the reader was too slow)'}`;
  }

  private targetName(): string {
    return 'stream' in this.target ? this.target.name : 'console sink';
  }

  private fail(e: NodeJS.ErrnoException): void {
    this.failure ??= `${this.targetName()}: ${e.code ?? e.message}`;
  }

  private async run(): Promise<void> {
    for (;;) {
      const chunk = this.ring.read(CHUNK_BYTES);
      if (chunk) {
        await this.write(chunk);
        continue;
      }
      if (this.stopping) return;
      await this.ring.waitForData(POLL_MS);
    }
  }

  private async write(chunk: Uint8Array): Promise<void> {
    if (this.failure) {
      this.ring.addDropped(chunk.length);
      return;
    }
    if ('sink' in this.target) {
      try {
        this.target.sink(chunk);
      } catch (e) {
        this.fail(e as Error);
        this.ring.addDropped(chunk.length);
      }
      return;
    }
    const stream = this.target.stream;
    const err = await new Promise<Error | null | undefined>((resolve) => {
      try {
        stream.write(chunk, resolve);
      } catch (e) {
        resolve(e as Error);
      }
    });
    if (err) {
      this.fail(err);
      this.ring.addDropped(chunk.length);
    }
  }
}
