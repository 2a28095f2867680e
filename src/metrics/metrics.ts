// Prometheus metrics (`--metrics-listen`), served with prom-client (the de-facto Node client: text
// format, escaping, histograms and process metrics done right). Every value is read from the VM's
// shared counters when scraped, so the vCPU exit path pays nothing for metrics.
import http from 'node:http';
import net from 'node:net';
import client from 'prom-client';
import type { Stats } from '../vmm/stats';
import { RunStates, type RunState } from '../vmm/run-state';
import { UserInputError } from '../user-input-error';

/** What the metrics read; a Vm provides it (metricsSourceOf). */
export interface MetricsSource {
  stats: Stats;
  runState(): RunState;
  vcpus: number;
  /** KVM_SET_USER_MEMORY_REGION calls issued so far. */
  memslotOps(): number;
  /** The fault-to-completion samples the VMM keeps, in microseconds. */
  latencyMicros(): number[];
  /** Each vCPU thread's state (VcpuStatus names, lower case). */
  vcpuStates?(): string[];
  /** PIO/MMIO accesses that exited to the VMM, per device that answered them. */
  deviceExits?(): { device: string; access: 'pio' | 'mmio'; count: number }[];
}

/** What a vCPU thread can be doing (src/vmm/vcpu-control.ts VcpuStatus). */
export const VCPU_STATES = ['starting', 'running', 'stopped', 'failed', 'paused'] as const;

/** A --metrics-listen value that cannot be served. */
export class MetricsListenError extends UserInputError {
  override name = 'MetricsListenError';
}

const LATENCY_BUCKETS_SECONDS = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2, 1e-1];

/** The registry for one VM; `source()` is read at each scrape (undefined: VM not built yet). */
export function createRegistry(source: () => MetricsSource | undefined): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  // prom-client names a few gauges *_total (nodejs_active_handles_total...), which promtool's lint
  // rejects (only counters may end in _total); the process metrics that matter stay.
  for (const m of registry.getMetricsAsArray()) {
    const { name, type } = m as unknown as { name: string; type: string };
    if (type !== 'counter' && name.endsWith('_total')) registry.removeSingleMetric(name);
  }
  /** A counter whose value is copied from the VM's shared counters at scrape time. */
  const mirrored = (name: string, help: string, labelName: string, values: (s: MetricsSource) => Record<string, number>) =>
    new client.Counter({
      name,
      help,
      labelNames: [labelName],
      registers: [registry],
      collect() {
        const s = source();
        this.reset();
        if (!s) return;
        for (const [label, v] of Object.entries(values(s))) this.inc({ [labelName]: label }, v);
      },
    });
  mirrored('tsvmm_vcpu_exits_total', 'KVM_RUN exits handled, by exit reason', 'reason', ({ stats }) => ({
    io: stats.get('exits.io'),
    mmio: stats.get('exits.mmio'),
    hlt: stats.get('exits.hlt'),
    interrupted: stats.get('exits.interrupted'),
    other: stats.get('exits.other'),
  }));
  mirrored('tsvmm_memory_faults_total', 'memory faults behind a memslot, by outcome', 'outcome', ({ stats }) => ({
    'efault-recovered': stats.get('fault.efaultRecovered'),
    'memory-fault-exit-recovered': stats.get('fault.memoryFaultRecovered'),
    'emulated-mmio-recovered': stats.get('fault.emulatedMmioRecovered'),
    fatal: stats.get('fault.fatal'),
  }));
  mirrored(
    'tsvmm_unsupported_requests_total',
    'guest accesses answered as a PCI Unsupported Request (reads: all ones; writes: dropped)',
    'access',
    ({ stats }) => ({
      read: stats.get('ur.reads'),
      'dropped-write': stats.get('ur.droppedWrites'),
    }),
  );
  new client.Counter({
    name: 'tsvmm_device_exits_total',
    help: 'PIO and MMIO accesses that exited to the VMM, by the device that answered (a string I/O exit counts each element; unclaimed ones are in tsvmm_device_accesses_total)',
    labelNames: ['device', 'access'],
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      for (const d of s?.deviceExits?.() ?? []) this.inc({ device: d.device, access: d.access }, d.count);
    },
  });
  mirrored('tsvmm_device_accesses_total', 'device accesses that reach the VMM, by path (per device: tsvmm_device_exits_total)', 'path', ({ stats }) => ({
    'passthrough-slow-path-read': stats.get('passthrough.slowPathReads'),
    'passthrough-slow-path-write': stats.get('passthrough.slowPathWrites'),
    'passthrough-slow-path-error': stats.get('passthrough.slowPathErrors'),
    'pio-unclaimed': stats.get('pio.unclaimed'),
    'mmio-unclaimed': stats.get('mmio.unclaimed'),
    'pci-config-write': stats.get('pci.configWrites'),
  }));
  new client.Counter({
    name: 'tsvmm_memslot_operations_total',
    help: 'KVM_SET_USER_MEMORY_REGION calls issued',
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      if (s) this.inc(s.memslotOps());
    },
  });
  new client.Gauge({
    name: 'tsvmm_vm_run_state',
    help: 'the VM run state (QMP query-status): 1 for the current state, 0 for the others',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      if (!s) return;
      const now = s.runState();
      for (const st of RunStates) this.set({ state: st }, st === now ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'tsvmm_vcpus',
    help: 'vCPUs of the VM',
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      if (s) this.set(s.vcpus);
    },
  });
  new client.Gauge({
    name: 'tsvmm_vcpu_state',
    help: "each vCPU thread's state: 1 for the current one, 0 for the others (paused: out of KVM_RUN for QMP stop)",
    labelNames: ['vcpu', 'state'],
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      const states = s?.vcpuStates?.() ?? [];
      states.forEach((now, i) => {
        for (const st of VCPU_STATES) this.set({ vcpu: String(i), state: st }, st === now ? 1 : 0);
      });
    },
  });
  new client.Histogram({
    name: 'tsvmm_fault_to_completion_seconds',
    help: 'time from a recovered memory fault to the MMIO exit that completes the retried access, over the samples the VMM keeps',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [registry],
    collect() {
      const s = source();
      this.reset();
      if (s) for (const us of s.latencyMicros()) this.observe(us / 1e6);
    },
  });
  return registry;
}

export interface ListenAddress {
  host: string;
  port: number;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));

/**
 * Parses `[HOST:]PORT` (IPv6 as `[::1]:PORT`). HOST defaults to 127.0.0.1; an address other than
 * loopback is refused unless `allowRemote`: metrics tell anyone who can read them what the VM does.
 */
export function parseListenAddress(value: string, allowRemote: boolean): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(value.trim());
  if (!m) throw new MetricsListenError(`--metrics-listen must be [HOST:]PORT, got '${value}'`);
  const host = m[1] ?? m[2] ?? '127.0.0.1';
  const port = Number(m[3]);
  if (port > 65535) throw new MetricsListenError(`--metrics-listen: port must be 0..65535, got ${port}`);
  if (host !== 'localhost' && !net.isIP(host)) throw new MetricsListenError(`--metrics-listen: '${host}' is not an IP address (or localhost)`);
  if (!isLoopback(host) && !allowRemote) {
    throw new MetricsListenError(`--metrics-listen ${value}: ${host} is not a loopback address; add --metrics-allow-remote to serve metrics beyond this host`);
  }
  return { host, port };
}

export interface MetricsServer {
  /** The address actually bound (port 0 picks one). */
  readonly url: string;
  attach(source: MetricsSource): void;
  close(): Promise<void>;
}

/** Serves GET /metrics. Listens before the VM exists, so a port in use fails before KVM is touched. */
export async function startMetricsServer(addr: ListenAddress): Promise<MetricsServer> {
  let source: MetricsSource | undefined;
  const registry = createRegistry(() => source);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('tsvmm serves /metrics only\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new MetricsListenError(`--metrics-listen ${addr.host}:${addr.port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message}`)),
    );
    server.listen(addr.port, addr.host, () => resolve());
  });
  // The VM keeps the process alive, not its metrics: an error path that forgets close() cannot hang.
  server.unref();
  const bound = server.address() as net.AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}/metrics`,
    attach: (s) => (source = s),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
