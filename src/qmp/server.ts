// QMP on a unix socket: one QmpSession per client, newline-delimited JSON both ways, commands of
// one client handled in arrival order, events broadcast to every negotiated client.
import net from 'node:net';
import fs from 'node:fs';
import nodePath from 'node:path';
import { QmpSession, type QmpMessage, type QmpTarget } from './session';

/** A line longer than this is refused (and dropped) instead of growing the buffer without bound. */
export const MAX_LINE_BYTES = 1 << 20;

/** How long close() lets clients read what is left before it cuts them off. */
export const CLOSE_GRACE_MS = 500;

export class QmpSocketError extends Error {
  override name = 'QmpSocketError';
}

/**
 * Checks a --qmp path before anything is built: its directory must exist and the path must be free
 * or hold a socket (a previous run's, replaced as QEMU does). Throws QmpSocketError otherwise.
 */
export function checkSocketPath(path: string): 'free' | 'stale' {
  const dir = nodePath.dirname(path);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new QmpSocketError(`--qmp ${path}: directory ${dir} does not exist`);
  const existing = fs.lstatSync(path, { throwIfNoEntry: false });
  if (existing && !existing.isSocket()) throw new QmpSocketError(`--qmp ${path}: the path exists and is not a socket`);
  return existing ? 'stale' : 'free';
}

export class QmpServer {
  private readonly sessions = new Set<QmpSession>();
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  /** Listens on `path`. A stale socket there is replaced (as QEMU does); any other file is an error. */
  static async listen(path: string, target: QmpTarget): Promise<QmpServer> {
    if (checkSocketPath(path) === 'stale') fs.unlinkSync(path);
    const server = net.createServer();
    const qmp = new QmpServer(server, path);
    server.on('connection', (s) => qmp.accept(s, target));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new QmpSocketError(`--qmp ${path}: cannot listen: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    return qmp;
  }

  /** Sends an event to every client that finished capabilities negotiation. */
  broadcast(name: string, data: QmpMessage = {}): void {
    for (const s of this.sessions) s.event(name, data);
  }

  /**
   * Stops listening, removes the socket file and ends every connection after its pending output
   * (the `quit` reply, the SHUTDOWN event). A client that does not close its end within
   * CLOSE_GRACE_MS is cut off: server.close() waits for every connection, and a quit must not hang.
   */
  async close(): Promise<void> {
    for (const s of this.sockets) s.end();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const grace = setTimeout(() => this.sockets.forEach((s) => s.destroy()), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(grace);
    fs.rmSync(this.path, { force: true });
  }

  private accept(socket: net.Socket, target: QmpTarget): void {
    const send = (msg: QmpMessage) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(msg)}\r\n`);
    };
    const session = new QmpSession(target, send);
    this.sessions.add(session);
    this.sockets.add(socket);
    send(session.greeting());
    let buffered = '';
    let queue = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // A failure that is not a QMP error is a tsvmm bug: report it on this line, keep serving.
        queue = queue.then(() => session.handleLine(line)).catch((e: Error) => send({ error: { class: 'GenericError', desc: `internal error: ${e.message}` } }));
      }
      if (buffered.length > MAX_LINE_BYTES) {
        buffered = '';
        send({ error: { class: 'GenericError', desc: `QMP input line longer than ${MAX_LINE_BYTES} bytes, discarded` } });
      }
    });
    const drop = () => {
      this.sessions.delete(session);
      this.sockets.delete(socket);
    };
    socket.on('close', drop);
    // A client that vanishes mid-write must not take the VMM down.
    socket.on('error', drop);
  }
}
