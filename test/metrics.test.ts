// Prometheus metrics (issue 13): the values mirror the VM's shared counters, promtool (Debian's
// prometheus package) accepts the text, loopback is the default and the only address allowed
// without --metrics-allow-remote, a port in use is a clear error; on KVM, a scrape during a race
// shows the fault counters moving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { createRegistry, parseListenAddress, startMetricsServer, MetricsListenError, type MetricsSource } from '../src/metrics/metrics';
import { Stats } from '../src/vmm/stats';
import { kvmSkip } from './kvm-available';
import { runCli } from './cli';
import { connectQmp } from './qmp-client';

// On PATH, or where scripts/install-promtool.sh (run by .ci/run) puts it.
const promtool = ['promtool', path.resolve(__dirname, '../../.cache/promtool/usr/bin/promtool')].find((p) => spawnSync(p, ['--version']).status === 0);
const promtoolSkip = promtool ? false : 'needs promtool: run scripts/install-promtool.sh (Debian package prometheus)';
if (promtoolSkip) process.stderr.write(`\n*** tsvmm: PROMTOOL TESTS SKIPPED: ${promtoolSkip} ***\n\n`);

function source(): MetricsSource {
  const stats = new Stats();
  stats.add('exits.mmio', 7);
  stats.add('exits.io', 3);
  stats.add('fault.efaultRecovered', 5);
  stats.add('ur.reads', 2);
  stats.add('ur.droppedWrites', 4);
  return {
    stats,
    runState: () => 'paused',
    vcpus: 3,
    memslotOps: () => 11,
    latencyMicros: () => [1.5, 3, 40, 2000],
    vcpuStates: () => ['paused', 'paused', 'stopped'],
    deviceExits: () => [
      { device: 'serial-16550', access: 'pio', count: 12 },
      { device: 'pt0 BAR0 slow path', access: 'mmio', count: 9 },
    ],
  };
}

const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no ${series} in\n${text.slice(0, 2000)}`);
  return Number(line!.slice(line!.lastIndexOf(' ') + 1)); // label values may hold spaces
};

test('metrics mirror the VM counters, run state and latency samples', async () => {
  const text = await createRegistry(source).metrics();
  assert.equal(value(text, 'tsvmm_vcpu_exits_total{reason="mmio"}'), 7);
  assert.equal(value(text, 'tsvmm_vcpu_exits_total{reason="io"}'), 3);
  assert.equal(value(text, 'tsvmm_memory_faults_total{outcome="efault-recovered"}'), 5);
  assert.equal(value(text, 'tsvmm_unsupported_requests_total{access="read"}'), 2);
  assert.equal(value(text, 'tsvmm_unsupported_requests_total{access="dropped-write"}'), 4);
  assert.equal(value(text, 'tsvmm_memslot_operations_total'), 11);
  assert.equal(value(text, 'tsvmm_vm_run_state{state="paused"}'), 1);
  assert.equal(value(text, 'tsvmm_vm_run_state{state="running"}'), 0);
  assert.equal(value(text, 'tsvmm_vcpus'), 3);
  assert.equal(value(text, 'tsvmm_vcpu_state{vcpu="1",state="paused"}'), 1);
  assert.equal(value(text, 'tsvmm_vcpu_state{vcpu="2",state="stopped"}'), 1);
  assert.equal(value(text, 'tsvmm_vcpu_state{vcpu="2",state="running"}'), 0);
  assert.equal(value(text, 'tsvmm_fault_to_completion_seconds_count'), 4);
  assert.equal(value(text, 'tsvmm_device_exits_total{device="serial-16550",access="pio"}'), 12);
  assert.equal(value(text, 'tsvmm_device_exits_total{device="pt0 BAR0 slow path",access="mmio"}'), 9);
  assert.equal(value(text, 'tsvmm_fault_to_completion_seconds_bucket{le="0.000002"}'), 1);
  assert.equal(value(text, 'tsvmm_fault_to_completion_seconds_bucket{le="0.00005"}'), 3);
  // A second scrape reports the same, not double (values are copied, not accumulated).
  const again = await createRegistry(source).metrics();
  assert.equal(value(again, 'tsvmm_vcpu_exits_total{reason="mmio"}'), 7);
});

test("promtool check metrics accepts the endpoint's output", { skip: promtoolSkip }, async () => {
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0 });
  try {
    server.attach(source());
    const text = await (await fetch(server.url)).text();
    const r = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'promtool has no complaint (lint included)');
    assert.equal((await fetch(server.url.replace('/metrics', '/other'))).status, 404);
  } finally {
    await server.close();
  }
});

test('--metrics-listen: loopback by default, other addresses only with --metrics-allow-remote, bad values named', () => {
  assert.deepEqual(parseListenAddress('9100', false), { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(parseListenAddress('[::1]:9100', false), { host: '::1', port: 9100 });
  assert.deepEqual(parseListenAddress('0.0.0.0:9100', true), { host: '0.0.0.0', port: 9100 });
  assert.throws(
    () => parseListenAddress('0.0.0.0:9100', false),
    (e: Error) => e instanceof MetricsListenError && /0\.0\.0\.0 is not a loopback address; add --metrics-allow-remote/.test(e.message),
  );
  assert.throws(() => parseListenAddress('10.1.2.3:80', false), /not a loopback address/);
  assert.throws(() => parseListenAddress('host:port', false), /must be \[HOST:\]PORT, got 'host:port'/);
  assert.throws(() => parseListenAddress('70000', false), /port must be 0\.\.65535, got 70000/);
  assert.throws(() => parseListenAddress('example.com:80', true), /'example\.com' is not an IP address/);
});

test('CLI: a metrics port in use and a remote address are refused with exit 2 before the VM runs', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const r = await runCli(['run', '--guest', 'hello', '--metrics-listen', String(port)]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `tsvmm: --metrics-listen 127.0.0.1:${port}: the port is in use\n`);
    assert.equal(r.stdout, '', 'the guest ran anyway');
  } finally {
    busy.close();
  }
  const remote = await runCli(['race', '--metrics-listen', '0.0.0.0:0']);
  assert.equal(remote.code, 2, remote.stderr);
  assert.match(remote.stderr, /not a loopback address; add --metrics-allow-remote/);
});

test('race --metrics-listen: scrapes during the race show the fault counters moving', { skip: kvmSkip }, async (t) => {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-metrics-')), 'q.sock');
  let url: string | undefined;
  let pid = 0;
  // The QEMU BAR order leaves a window for faults behind a memslot: EFAULTs to recover.
  const done = runCli(['race', '--toggles', '10000000', '--bar-order', 'qemu', '--metrics-listen', '0', '--qmp', socket, '--json'], {
    timeoutMs: 180_000,
    onSpawn: (p) => (pid = p),
    onStderr: (s) => (url ??= /metrics on (\S+)/.exec(s)?.[1]),
  });
  t.after(() => {
    try {
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  const deadline = Date.now() + 60_000;
  while (!url || !fs.existsSync(socket)) {
    assert.ok(Date.now() < deadline, 'no metrics URL or QMP socket within 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const faults = async () => {
    const text = await (await fetch(url!)).text();
    const recovered = ['efault-recovered', 'memory-fault-exit-recovered', 'emulated-mmio-recovered'].map((o) =>
      value(text, `tsvmm_memory_faults_total{outcome="${o}"}`),
    );
    return {
      recovered: recovered.reduce((a, b) => a + b, 0),
      exits: value(text, 'tsvmm_vcpu_exits_total{reason="mmio"}'),
      running: value(text, 'tsvmm_vm_run_state{state="running"}'),
      vcpu1Running: value(text, 'tsvmm_vcpu_state{vcpu="1",state="running"}'),
      // The toggler reaches config space through CF8/CFC: exits counted for that device.
      configPorts: value(text, 'tsvmm_device_exits_total{device="pci-config-ports",access="pio"}'),
    };
  };
  const first = await faults();
  let later = first;
  for (let i = 0; i < 100 && later.recovered <= first.recovered; i++) {
    await new Promise((r) => setTimeout(r, 100));
    later = await faults();
  }
  process.stderr.write(`# race metrics: recovered faults ${first.recovered} -> ${later.recovered}, MMIO exits ${first.exits} -> ${later.exits}\n`);
  assert.equal(later.running, 1);
  assert.equal(later.vcpu1Running, 1, 'the accessor vCPU thread is running');
  assert.ok(later.recovered > first.recovered, `recovered faults did not move: ${JSON.stringify([first, later])}`);
  assert.ok(later.exits > first.exits);
  assert.ok(later.configPorts > first.configPorts, `config-port exits did not move: ${JSON.stringify([first, later])}`);
  if (promtool) {
    const text = await (await fetch(url!)).text();
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  }
  const q = await connectQmp(socket);
  await q.next();
  await q.command('qmp_capabilities');
  await q.command('quit');
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
});

test('per-device exit counts: each access is counted for the device that answered it, per thread, summed on read', async () => {
  const { Machine } = await import('../src/vmm/machine');
  const { FakeHostMemory, RecordingVm, fakeMachine } = await import('./fakes');
  const { CONTROL_BASE } = await import('../src/devices/control');
  const m = fakeMachine({ vcpus: 2 });
  // Another thread's view (vCPU 1's row) counts into the same totals.
  const other = Machine.attach({ shared: m.shared, vm: new RecordingVm(), hostMemory: new FakeHostMemory(), console: () => {}, statsRow: 2 });
  m.pioWrite(0x3f8, 1, 0x41, 0);
  other.pioWrite(0x3f8, 1, 0x42, 1);
  m.pioRead(0xcfc, 4, 0);
  m.mmioRead(CONTROL_BASE, 4, 0);
  m.pioRead(0x1234, 1, 0); // unclaimed: no device's count
  const counts = Object.fromEntries(m.deviceExitCounts().map((d) => [`${d.access} ${d.device}`, d.count]));
  assert.equal(counts['pio serial-16550'], 2);
  assert.equal(counts['pio pci-config-ports'], 1);
  assert.equal(counts['mmio tsvmm-control'], 1);
  assert.equal(counts['mmio pci-ecam'], 0);
  assert.equal(m.stats.get('pio.unclaimed'), 1);
});
