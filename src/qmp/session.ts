// One QMP client: the QEMU Machine Protocol's greeting, capabilities negotiation, command dispatch
// and event delivery, as a pure object fed one input line at a time (no sockets: test/qmp.test.ts
// drives it directly; src/qmp/server.ts puts it on a unix socket).
//
// Wire behaviour follows QEMU (docs/interop/qmp-spec.rst, monitor/qmp.c, qapi/qmp-dispatch.c):
// - the server speaks first: {"QMP": {"version": ..., "capabilities": []}};
// - until `qmp_capabilities`, every other command fails with CommandNotFound "Expecting
//   capabilities negotiation with 'qmp_capabilities'", and no events are sent;
// - each reply carries the request's "id" verbatim when it had one;
// - malformed input gets a GenericError and the connection stays usable; JSON is read as QEMU
//   reads it (src/qmp/json.ts: duplicate keys refused, 64-bit integer ids echoed exactly).
import type { RunState } from '../vmm/run-state';
import { parseQmpJson, QmpJsonError } from './json';
import { queryPciReply, type PciFunctionInfo } from './query-pci';

export type QmpMessage = Record<string, unknown>;

export type QmpErrorClass = 'GenericError' | 'CommandNotFound';

/** A command failure with QMP's error class; the session turns it into {"error": ...}. */
export class QmpCommandError extends Error {
  override name = 'QmpCommandError';
  constructor(
    readonly errorClass: QmpErrorClass,
    message: string,
  ) {
    super(message);
  }
}

/** What QMP commands act on (src/qmp/vm-target.ts adapts a Vm). */
export interface QmpTarget {
  status(): RunState;
  /** Pauses every vCPU; resolves once none is running guest code. */
  stop(): Promise<void>;
  /** Resumes a paused VM. */
  cont(): Promise<void>;
  /** Ends the process after the reply is sent. */
  quit(): void;
  /** One entry per vCPU: index and the host thread id running it (0 if not started). */
  vcpuThreads(): { index: number; threadId: number }[];
  readonly version: { major: number; minor: number; micro: number; package: string };
  /** The VM's name (QEMU's -name), if it was given one. */
  readonly name?: string;
  /** Bus 0's PCI functions (src/qmp/query-pci.ts); none when absent. */
  pciFunctions?(): PciFunctionInfo[];
  /** A real reset (system_reset); the command exists only when the target can do it. */
  reset?(): Promise<void>;
}

type Handler = (args: QmpMessage) => Promise<unknown> | unknown;

/** qmp_cont refuses these: the VM needs a reset, which tsvmm does not do (QEMU: runstate_needs_reset). */
const NEEDS_RESET: readonly RunState[] = ['shutdown', 'internal-error', 'guest-panicked'];

export class QmpSession {
  private negotiated = false;
  private readonly commands: Map<string, { handler: Handler; params: readonly string[] }>;

  constructor(
    private readonly target: QmpTarget,
    private readonly send: (msg: QmpMessage) => void,
  ) {
    this.commands = new Map<string, { handler: Handler; params: readonly string[] }>([
      ['qmp_capabilities', { handler: (a) => this.capabilities(a), params: ['enable'] }],
      ['query-status', { handler: () => this.queryStatus(), params: [] }],
      ['query-version', { handler: () => this.queryVersion(), params: [] }],
      ['query-commands', { handler: () => [...this.commands.keys()].map((name) => ({ name })), params: [] }],
      ['query-cpus-fast', { handler: () => this.queryCpus(), params: [] }],
      ['stop', { handler: () => this.target.stop().then(() => ({})), params: [] }],
      ['cont', { handler: () => this.cont(), params: [] }],
      ['quit', { handler: () => ({}), params: [] }],
      ...(target.reset ? [['system_reset', { handler: () => target.reset!().then(() => ({})), params: [] as string[] }] as const] : []),
      ['query-pci', { handler: () => queryPciReply(this.target.pciFunctions?.() ?? []), params: [] }],
      // tsvmm always runs its guests on KVM: there is no other accelerator to fall back to.
      ['query-kvm', { handler: () => ({ enabled: true, present: true }), params: [] }],
      ['query-name', { handler: () => (this.target.name === undefined ? {} : { name: this.target.name }), params: [] }],
      [
        'system_powerdown',
        {
          handler: () => {
            // QEMU presses the ACPI power button; tsvmm's machine has no ACPI, so there is no way to ask
            // the guest to shut down. Saying so beats an accepted command that does nothing.
            throw new QmpCommandError(
              'GenericError',
              'system_powerdown is not supported: this machine has no ACPI power button to ask the guest to shut down; use quit',
            );
          },
          params: [],
        },
      ],
    ]);
  }

  greeting(): QmpMessage {
    return { QMP: { version: this.queryVersion(), capabilities: [] } };
  }

  /**
   * An asynchronous event; only clients that finished negotiation receive events. An event without
   * data has no "data" member, as QEMU sends STOP, RESUME and RESET.
   */
  event(name: string, data: QmpMessage = {}, nowMs = Date.now()): void {
    if (!this.negotiated) return;
    const micros = Math.round(nowMs * 1000);
    const timestamp = { seconds: Math.floor(micros / 1e6), microseconds: micros % 1e6 };
    this.send(Object.keys(data).length === 0 ? { event: name, timestamp } : { event: name, data, timestamp });
  }

  /**
   * Handles one message (src/qmp/framing.ts cuts them from the stream); the reply (or error) is
   * sent before the promise resolves, and the promise never rejects.
   */
  async handleLine(line: string): Promise<void> {
    if (line.trim() === '') return;
    let input: unknown;
    try {
      input = parseQmpJson(line);
    } catch (e) {
      if (!(e instanceof QmpJsonError)) throw e;
      this.send(errorReply('GenericError', e.message));
      return;
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      this.send(errorReply('GenericError', 'QMP input must be a JSON object'));
      return;
    }
    const req = input as QmpMessage;
    const id = 'id' in req ? { id: req.id } : {};
    const reply = (r: QmpMessage) => this.send({ ...r, ...id });
    try {
      const { name, args } = parseRequest(req);
      const cmd = this.commands.get(name);
      if (!this.negotiated && name !== 'qmp_capabilities') {
        throw new QmpCommandError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
      }
      if (!cmd) throw new QmpCommandError('CommandNotFound', `The command ${name} has not been found`);
      for (const key of Object.keys(args)) {
        if (!cmd.params.includes(key)) throw new QmpCommandError('GenericError', `Parameter '${key}' is unexpected`);
      }
      const result = await cmd.handler(args);
      reply({ return: result ?? {} });
      if (name === 'quit') this.target.quit();
    } catch (e) {
      // Anything else is a tsvmm bug: the client still gets an answer to its id, and the VMM goes on.
      if (e instanceof QmpCommandError) reply(errorReply(e.errorClass, e.message));
      else reply(errorReply('GenericError', `internal error: ${(e as Error)?.message ?? String(e)}`));
    }
  }

  private capabilities(args: QmpMessage): unknown {
    if (this.negotiated) throw new QmpCommandError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
    const enable = 'enable' in args ? args.enable : [];
    if (!Array.isArray(enable)) throw new QmpCommandError('GenericError', "Invalid parameter type for 'enable', expected: array");
    enable.forEach((cap: unknown, i) => {
      if (typeof cap !== 'string') throw new QmpCommandError('GenericError', `Invalid parameter type for 'enable[${i}]', expected: string`);
    });
    for (const [i, cap] of (enable as string[]).entries()) {
      // QEMU offers "oob"; tsvmm offers no capability, so "oob" is known but cannot be granted.
      // (QEMU 7.2 names the unknown-value parameter 'null'; tsvmm names it.)
      if (cap === 'oob') throw new QmpCommandError('GenericError', "Capability 'oob' not available");
      throw new QmpCommandError('GenericError', `Parameter 'enable[${i}]' does not accept value '${cap}'`);
    }
    this.negotiated = true;
    return {};
  }

  private queryStatus(): unknown {
    const status = this.target.status();
    return { status, running: status === 'running' };
  }

  private queryVersion(): QmpMessage {
    const v = this.target.version;
    return { qemu: { major: v.major, minor: v.minor, micro: v.micro }, package: v.package };
  }

  private queryCpus(): unknown {
    return this.target.vcpuThreads().map(({ index, threadId }) => ({
      'cpu-index': index,
      'qom-path': `/machine/unattached/device[${index}]`,
      'thread-id': threadId,
      target: 'x86_64',
    }));
  }

  private async cont(): Promise<unknown> {
    const s = this.target.status();
    if (NEEDS_RESET.includes(s)) throw new QmpCommandError('GenericError', 'Resetting the Virtual Machine is required');
    if (s === 'running') return {};
    await this.target.cont();
    return {};
  }
}

function errorReply(errorClass: QmpErrorClass, desc: string): QmpMessage {
  return { error: { class: errorClass, desc } };
}

/** The request's shape checks, in QEMU's order and words (qapi/qmp-dispatch.c). */
function parseRequest(req: QmpMessage): { name: string; args: QmpMessage } {
  for (const key of Object.keys(req)) {
    if (key !== 'execute' && key !== 'arguments' && key !== 'id') throw new QmpCommandError('GenericError', `QMP input member '${key}' is unexpected`);
  }
  if (!('execute' in req)) throw new QmpCommandError('GenericError', "QMP input lacks member 'execute'");
  if (typeof req.execute !== 'string') throw new QmpCommandError('GenericError', "QMP input member 'execute' must be a string");
  // `"arguments": null` is refused as QEMU does: only an absent member means "no arguments".
  const args = 'arguments' in req ? req.arguments : {};
  if (typeof args !== 'object' || args === null || Array.isArray(args))
    throw new QmpCommandError('GenericError', "QMP input member 'arguments' must be an object");
  return { name: req.execute, args: args as QmpMessage };
}
