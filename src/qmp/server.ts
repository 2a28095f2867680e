// QMP on a unix socket: one QmpSession per client, JSON messages both ways (QmpInputFramer cuts the
// input), commands of one client handled in arrival order, events broadcast to every negotiated
// client. Several clients may be connected at once.
//
// Memory per client is bounded whatever the client does:
// - input: at most one unfinished message (MAX_MESSAGE_BYTES) plus one socket read;
// - output: commands are handled only while the client's unsent output is under OUTPUT_HIGH_WATER
//   (like QEMU's monitor, which stops reading a client whose replies pile up), and reading stops
//   while its commands wait, so a client that never reads just finds its socket full. Events are
//   not held back; a client whose unsent output still passes OUTPUT_LIMIT is disconnected with a
//   logged reason.
import net from 'node:net';
import fs from 'node:fs';
import nodePath from 'node:path';
import { QmpSession, type QmpMessage, type QmpTarget } from './session';
import { QmpInputFramer, MAX_MESSAGE_BYTES, type FramedInput } from './framing';
import { stringifyQmpJson } from './json';
import { log } from '../log';
import { UserInputError } from '../user-input-error';

export { MAX_MESSAGE_BYTES as MAX_LINE_BYTES };

/** Unsent output above which a client's next command waits until the client reads. */
export const OUTPUT_HIGH_WATER = 1 << 20;
/** Unsent output (events included) above which a client is disconnected. */
export const OUTPUT_LIMIT = 16 << 20;
/** Commands handled in one go before other clients get a turn. */
const BATCH = 32;

/** How long close() lets clients read what is left before it cuts them off. */
export const CLOSE_GRACE_MS = 500;

/** sun_path is 108 bytes on Linux, one of them the terminating NUL (unix(7)). */
export const MAX_SOCKET_PATH_BYTES = 107;

export class QmpSocketError extends UserInputError {
  override name = 'QmpSocketError';
}

/**
 * Checks a --qmp path before anything is built: not empty, short enough for a unix socket, in a
 * directory that exists, and free or holding a stale socket (a previous run's, replaced as QEMU
 * does). A socket that a live server answers on is refused: taking it over would cut that VM's
 * management off. Throws QmpSocketError.
 */
export async function checkSocketPath(path: string): Promise<'free' | 'stale'> {
  if (path === '') throw new QmpSocketError('--qmp needs a socket path, got an empty string');
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES)
    throw new QmpSocketError(`--qmp ${path}: the path is ${bytes} bytes, a unix socket path can have at most ${MAX_SOCKET_PATH_BYTES}`);
  const dir = nodePath.dirname(path);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new QmpSocketError(`--qmp ${path}: directory ${dir} does not exist`);
  const existing = fs.lstatSync(path, { throwIfNoEntry: false });
  if (!existing) return 'free';
  if (!existing.isSocket()) throw new QmpSocketError(`--qmp ${path}: the path exists and is not a socket`);
  if (await answers(path)) throw new QmpSocketError(`--qmp ${path}: another server is listening on this socket`);
  return 'stale';
}

/** Whether something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    // ECONNREFUSED: a socket file nobody listens on. Anything else (EACCES...) is not a live
    // server we could name either; the bind that follows reports it.
    s.once('error', () => resolve(false));
  });
}

let bindCount = 0;

/**
 * Where to bind before the socket is renamed into place (see listen); short, same directory. When
 * even that name would not fit in sun_path (a path within a few bytes of the limit, in a directory
 * whose own name is long), the server binds `path` itself and libuv's unlink-on-close is back.
 */
function bindPath(path: string): string {
  const tmp = nodePath.join(nodePath.dirname(path), `.tsvmm-${process.pid}-${bindCount++}.qmp`);
  return Buffer.byteLength(tmp) <= MAX_SOCKET_PATH_BYTES ? tmp : path;
}

export class QmpServer {
  private readonly clients = new Set<QmpClient>();
  private nextClientId = 1;

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
    private readonly inode: { dev: number; ino: number },
  ) {}

  /**
   * Listens on `path`. A stale socket there is replaced (as QEMU does); a live one or any other
   * file is an error.
   */
  static async listen(path: string, target: QmpTarget): Promise<QmpServer> {
    const state = await checkSocketPath(path);
    // allowHalfOpen: a client that sends its commands and then shuts down its writing side still
    // gets every reply before the connection ends.
    const server = net.createServer({ allowHalfOpen: true });
    // libuv unlinks the path it bound when the server closes, whoever's socket is there by then. So
    // bind a private name and rename it into place: the close then unlinks nothing of anyone else's,
    // and close() removes `path` only while it is still this server's socket (same inode).
    const bound = bindPath(path);
    const fsStep = (what: string, f: () => void) => {
      try {
        f();
      } catch (e) {
        server.close();
        throw new QmpSocketError(`--qmp ${path}: cannot ${what}: ${(e as Error).message}`);
      }
    };
    if (bound !== path) fsStep('prepare the socket', () => fs.rmSync(bound, { force: true }));
    else if (state === 'stale') fsStep('remove the stale socket', () => fs.unlinkSync(path));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new QmpSocketError(`--qmp ${path}: cannot listen: ${e.message}`)));
      server.listen(bound, () => resolve());
    });
    if (bound !== path) fsStep('put the socket in place', () => fs.renameSync(bound, path));
    const st = fs.statSync(path);
    const qmp = new QmpServer(server, path, { dev: st.dev, ino: st.ino });
    server.on('connection', (s) => qmp.accept(s, target));
    return qmp;
  }

  /** Sends an event to every client that finished capabilities negotiation. */
  broadcast(name: string, data: QmpMessage = {}): void {
    for (const c of this.clients) c.session.event(name, data);
  }

  /** Unsent output held for all clients, in bytes (each bounded by OUTPUT_LIMIT). */
  bufferedOutputBytes(): number {
    let n = 0;
    for (const c of this.clients) n += c.socket.writableLength;
    return n;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /**
   * Stops listening, removes the socket file (if it is still this server's) and ends every
   * connection after its pending output (the `quit` reply, the SHUTDOWN event). A client that does
   * not close its end within CLOSE_GRACE_MS is cut off: server.close() waits for every connection,
   * and a quit must not hang.
   */
  async close(): Promise<void> {
    for (const c of this.clients) c.socket.end();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const grace = setTimeout(() => this.clients.forEach((c) => c.socket.destroy()), CLOSE_GRACE_MS);
    this.removeSocketFile();
    await closed;
    clearTimeout(grace);
  }

  private removeSocketFile(): void {
    const st = fs.lstatSync(this.path, { throwIfNoEntry: false });
    if (st && st.dev === this.inode.dev && st.ino === this.inode.ino) fs.rmSync(this.path, { force: true });
  }

  private accept(socket: net.Socket, target: QmpTarget): void {
    const client = new QmpClient({ id: this.nextClientId++, socket, target, onGone: () => this.clients.delete(client) });
    this.clients.add(client);
  }
}

/** One connection: its framer, its queue of unhandled input, its session. */
class QmpClient {
  readonly session: QmpSession;
  private readonly framer = new QmpInputFramer();
  private readonly queue: FramedInput[] = [];
  private pumping = false;
  private inputEnded = false;

  private readonly id: number;
  readonly socket: net.Socket;
  private readonly onGone: () => void;

  /** `onGone`: the connection closed or failed (the server forgets the client). */
  constructor(o: { id: number; socket: net.Socket; target: QmpTarget; onGone: () => void }) {
    ({ id: this.id, socket: this.socket, onGone: this.onGone } = o);
    const { socket, target, onGone } = o;
    this.session = new QmpSession(target, (m) => this.send(m));
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.framer.push(chunk)) this.queue.push(item); // a 64 KiB read can hold 32K messages: no spread
      if (this.queue.length > 0) socket.pause(); // resumed once the queue is handled
      void this.pump();
    });
    socket.on('end', () => {
      this.inputEnded = true;
      void this.pump();
    });
    socket.on('close', onGone);
    // A client that vanishes mid-write must not take the VMM down.
    socket.on('error', () => onGone());
    this.send(this.session.greeting());
  }

  private send(msg: QmpMessage): void {
    const s = this.socket;
    if (s.destroyed || !s.writable) return;
    if (s.writableLength > OUTPUT_LIMIT) {
      log('warn', `QMP client ${this.id} disconnected: ${s.writableLength} bytes of output unread (limit ${OUTPUT_LIMIT})`);
      s.destroy();
      this.onGone();
      return;
    }
    s.write(`${stringifyQmpJson(msg)}\r\n`);
  }

  /** Handles queued input in order; waits while the client's output is backed up. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let handled = 0;
      while (this.queue.length > 0 && !this.socket.destroyed) {
        if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
          await this.drained();
          continue;
        }
        const item = this.queue.shift()!;
        if (item.kind === 'error') this.send({ error: { class: 'GenericError', desc: item.desc } });
        else await this.session.handleLine(item.text);
        if (++handled % BATCH === 0) await new Promise((r) => setImmediate(r));
      }
      if (this.socket.destroyed) return;
      if (this.inputEnded) this.socket.end();
      else this.socket.resume();
    } finally {
      this.pumping = false;
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done).off('close', done);
        resolve();
      };
      this.socket.once('drain', done).once('close', done);
    });
  }
}
