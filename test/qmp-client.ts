// A line-oriented QMP client for tests: connect, then next() for each message, send() raw text.
import net from 'node:net';
import type { QmpMessage } from '../src/qmp/session';

/** A line-oriented client on a unix socket. */
export async function connectQmp(socketPath: string) {
  const sock = net.createConnection(socketPath);
  sock.setEncoding('utf8');
  const lines: QmpMessage[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  sock.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as QmpMessage);
      buf = buf.slice(nl + 1);
      waiters.splice(0).forEach((w) => w());
    }
  });
  await new Promise<void>((r, j) => sock.once('connect', () => r()).once('error', j));
  /** The next message; a test must fail, not hang, when the server never sends one. */
  const next = async (timeoutMs = 60_000): Promise<QmpMessage> => {
    const deadline = Date.now() + timeoutMs;
    while (lines.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no QMP message from ${socketPath} within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        waiters.push(() => (clearTimeout(t), r()));
      });
    }
    return lines.shift()!;
  };
  const events: QmpMessage[] = [];
  let nextId = 1;
  /** Sends a command and returns its reply; events that arrive first are kept in `events`. */
  const command = async (execute: string, args?: QmpMessage): Promise<QmpMessage> => {
    const id = nextId++;
    sock.write(`${JSON.stringify({ execute, ...(args ? { arguments: args } : {}), id })}\n`);
    for (;;) {
      const m = await next();
      if ('event' in m) events.push(m);
      else if (m.id === id) return m;
      else throw new Error(`unexpected QMP message ${JSON.stringify(m)}`);
    }
  };
  /** The next event with this name (from `events` first). */
  const event = async (name: string): Promise<QmpMessage> => {
    for (;;) {
      const i = events.findIndex((e) => e.event === name);
      if (i >= 0) return events.splice(i, 1)[0]!;
      const m = await next();
      if ('event' in m) events.push(m);
      else throw new Error(`unexpected QMP message ${JSON.stringify(m)} while waiting for ${name}`);
    }
  };
  return { sock, next, command, event, events, send: (raw: string) => sock.write(raw) };
}
