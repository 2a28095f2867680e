// QMP commands added for management tools (issue 13): query-kvm, query-name, system_powerdown,
// and `tsvmm --version`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { QmpSession, type QmpMessage } from '../src/qmp/session';
import { RecordingTarget } from './qmp-target';
import { runCli } from './cli';

async function negotiated(target = new RecordingTarget()) {
  const out: QmpMessage[] = [];
  const s = new QmpSession(target, (m) => out.push(m));
  await s.handleLine('{"execute":"qmp_capabilities"}');
  return async (line: string) => {
    out.length = 0;
    await s.handleLine(line);
    assert.equal(out.length, 1);
    return out[0]!;
  };
}

test('query-kvm says KVM is present and in use; query-name gives the name only when there is one', async () => {
  let ask = await negotiated();
  assert.deepEqual(await ask('{"execute":"query-kvm"}'), { return: { enabled: true, present: true } });
  assert.deepEqual(await ask('{"execute":"query-name"}'), { return: {} });
  const named = new RecordingTarget();
  Object.assign(named, { name: 'web-1' });
  ask = await negotiated(named);
  assert.deepEqual(await ask('{"execute":"query-name","id":1}'), { return: { name: 'web-1' }, id: 1 });
  const names = ((await ask('{"execute":"query-commands"}')).return as { name: string }[]).map((c) => c.name);
  for (const n of ['query-kvm', 'query-name', 'system_powerdown']) assert.ok(names.includes(n), n);
});

test('system_powerdown is a clear GenericError, and nothing is asked of the VM', async () => {
  const target = new RecordingTarget();
  const ask = await negotiated(target);
  const r = await ask('{"execute":"system_powerdown","id":"p"}');
  assert.equal(r.id, 'p');
  assert.equal((r.error as { class: string }).class, 'GenericError');
  assert.match((r.error as { desc: string }).desc, /^system_powerdown is not supported: .*no ACPI power button/);
  assert.deepEqual(target.calls, []);
  assert.deepEqual(await ask('{"execute":"query-status"}'), { return: { status: 'running', running: true } });
});

test('tsvmm --version and -V print the package version and exit 0', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `tsvmm ${pkg.version}\n`);
  }
});

test('system_reset exists only for a target that can reset, and answers once the reset is done', async () => {
  let ask = await negotiated();
  assert.equal(((await ask('{"execute":"system_reset"}')).error as { class: string }).class, 'CommandNotFound');
  const target = new RecordingTarget();
  let resets = 0;
  Object.assign(target, { reset: async () => void resets++ });
  ask = await negotiated(target);
  assert.deepEqual(await ask('{"execute":"system_reset","id":9}'), { return: {}, id: 9 });
  assert.equal(resets, 1);
  const names = ((await ask('{"execute":"query-commands"}')).return as { name: string }[]).map((c) => c.name);
  assert.ok(names.includes('system_reset'));
});
