// --trace PATTERN (issue 13 item 3): QEMU-named trace events, globs as QEMU's -trace takes them,
// off by default, emitted from vCPU threads too, through the logger (text or JSON lines).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventsFor, TRACE_EVENTS, TracePatternError } from '../src/trace';
import { runCli } from './cli';
import { kvmSkip } from './kvm-available';

test('trace patterns: names, globs, a leading - turns events off, in order', () => {
  assert.deepEqual([...eventsFor(['kvm_run_exit'])], ['kvm_run_exit']);
  assert.deepEqual([...eventsFor(['kvm_*'])].sort(), ['kvm_memory_fault', 'kvm_run_exit', 'kvm_set_user_memory']);
  assert.deepEqual([...eventsFor(['pci_update_mappings_???'])].sort(), ['pci_update_mappings_add', 'pci_update_mappings_del']);
  assert.deepEqual([...eventsFor(['*', '-vfio_*', '-kvm_run_exit'])].sort(), [
    'kvm_memory_fault',
    'kvm_set_user_memory',
    'pci_update_mappings_add',
    'pci_update_mappings_del',
  ]);
  assert.equal(eventsFor(['*']).size, TRACE_EVENTS.length);
  assert.throws(
    () => eventsFor(['kvm_nosuch']),
    (e: Error) => e instanceof TracePatternError && /--trace 'kvm_nosuch': no trace event matches/.test(e.message),
  );
  assert.throws(() => eventsFor(['-']), TracePatternError);
});

test('--trace: an unknown pattern is exit 2 with the pattern named; help lists every event', async () => {
  const bad = await runCli(['run', '--guest', 'hello', '--trace', 'kvm_nosuch*']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--trace 'kvm_nosuch\*': no trace event matches \(`--trace help` lists them\)/);
  const help = await runCli(['--trace', 'help']);
  assert.equal(help.code, 0);
  for (const e of TRACE_EVENTS) assert.match(help.stdout, new RegExp(`^${e} `, 'm'));
});

test('--trace: vCPU threads emit kvm_run_exit, the main thread kvm_set_user_memory; nothing without --trace', { skip: kvmSkip }, async () => {
  const off = await runCli(['run', '--guest', 'hello']);
  assert.equal(off.code, 0, off.stderr);
  assert.doesNotMatch(off.stderr, /trace/);
  const on = await runCli(['run', '--guest', 'hello', '--trace', 'kvm_*', '--trace', '-kvm_memory_fault']);
  assert.equal(on.code, 0, on.stderr);
  assert.match(on.stderr, /^tsvmm trace: kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x4000000 ua=0x[0-9a-f]+ ret=0$/m);
  // hello prints through PIO (KVM_EXIT_IO = 2) from its vCPU thread.
  assert.match(on.stderr, /^tsvmm trace: kvm_run_exit cpu_index 0, reason 2$/m);
  assert.equal(on.stdout, off.stdout, 'the guest output is unchanged');
  const json = await runCli(['run', '--guest', 'hello', '--trace', 'kvm_run_exit', '--log-format', 'json']);
  assert.equal(json.code, 0, json.stderr);
  const lines = json.stderr
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { level: string; event: string; args: Record<string, unknown>; message: string });
  const exit = lines.find((l) => l.event === 'kvm_run_exit');
  assert.ok(exit, json.stderr);
  assert.equal(exit!.level, 'trace');
  assert.deepEqual(exit!.args, { cpu_index: 0, reason: 2 });
  assert.equal(exit!.message, 'kvm_run_exit cpu_index 0, reason 2');
});

test('--trace: a race traces BAR mappings, config writes and slow-path reads', { skip: kvmSkip }, async () => {
  const r = await runCli(['race', '--vcpus', '2', '--toggles', '5', '--trace', 'pci_*', '--trace', 'vfio_*', '--json']);
  assert.equal(r.code, 0, r.stderr);
  // The toggler clears and sets MEM (COMMAND at 0x4) five times: BAR0 leaves and comes back each time.
  assert.equal(r.stderr.match(/^tsvmm trace: vfio_pci_write_config \(pt0, @0x4, 0x4, len=0x2\)$/gm)?.length, 5, r.stderr);
  assert.equal(r.stderr.match(/^tsvmm trace: pci_update_mappings_del pt0 00:03\.0 0,0x[0-9a-f]+\+0x1000$/gm)?.length, 5, r.stderr);
  assert.ok((r.stderr.match(/^tsvmm trace: pci_update_mappings_add pt0 00:03\.0 0,0x[0-9a-f]+\+0x1000$/gm)?.length ?? 0) >= 5, r.stderr);
  // Slow-path reads happen only when an access meets the BAR trapped (timing): one line for each.
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { slowPathReads: number };
  assert.equal(
    r.stderr.match(/^tsvmm trace: vfio_region_read \(pt0:region0\+0x[0-9a-f]+, \d\) = (0x[0-9a-f]+|refused)$/gm)?.length ?? 0,
    report.slowPathReads,
    r.stderr,
  );
});

test('trace lines: QEMU argument order and formats, as text and as JSON', async () => {
  const { spawnSync } = await import('node:child_process');
  const mod = require.resolve('../src/trace');
  const calls =
    `const t = require(${JSON.stringify(mod)});` +
    't.traceKvmMemoryFault(0xc0000000n, 0x1000n, 0n);' +
    't.traceVfioRegionRead("pt0", 2, 0x100n, 4, undefined);' +
    't.traceVfioRegionRead("pt0", 0, 0x8n, 8, 0x1122n);' +
    't.traceVfioPciWriteConfig("pt0", 4, 6, 2);' +
    't.tracePciUpdateMappings("pci_update_mappings_del", "pt0", 3, 2, 0xc0010000n, 0x10000n);' +
    't.traceKvmSetUserMemory(5, 0, 0xc0000000n, 0n, 0x7f0000000000n, 0);';
  const text = spawnSync(process.execPath, ['-e', calls], { encoding: 'utf8' });
  assert.equal(text.status, 0, text.stderr);
  assert.equal(
    text.stderr,
    [
      'tsvmm trace: kvm_memory_fault start 0xc0000000 size 0x1000 flags 0x0',
      'tsvmm trace: vfio_region_read (pt0:region2+0x100, 4) = refused',
      'tsvmm trace: vfio_region_read (pt0:region0+0x8, 8) = 0x1122',
      'tsvmm trace: vfio_pci_write_config (pt0, @0x4, 0x6, len=0x2)',
      'tsvmm trace: pci_update_mappings_del pt0 00:03.0 2,0xc0010000+0x10000',
      'tsvmm trace: kvm_set_user_memory AddrSpace#0 Slot#5 flags=0x0 gpa=0xc0000000 size=0x0 ua=0x7f0000000000 ret=0',
      '',
    ].join('\n'),
  );
  const json = spawnSync(process.execPath, ['-e', calls], { encoding: 'utf8', env: { ...process.env, TSVMM_LOG_FORMAT: 'json' } });
  const lines = json.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { level: string; event: string; args: Record<string, unknown> });
  assert.deepEqual(
    lines.map((l) => l.event),
    ['kvm_memory_fault', 'vfio_region_read', 'vfio_region_read', 'vfio_pci_write_config', 'pci_update_mappings_del', 'kvm_set_user_memory'],
  );
  assert.deepEqual(lines[4]!.args, { dev: 'pt0', bus: 0, slot: 3, func: 0, bar: 2, addr: '0xc0010000', size: '0x10000' });
  assert.ok(lines.every((l) => l.level === 'trace'));
});
