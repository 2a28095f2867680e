// --log-format json (issue 13): every line on stderr is one JSON object with time, level and
// message, from the command line's own errors to a failing vCPU's diagnostics; text stays as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './cli';
import { kvmSkip } from './kvm-available';

function jsonLines(stderr: string): { time: string; level: string; message: string }[] {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.ok(lines.length > 0, 'nothing on stderr');
  return lines.map((l) => {
    const o = JSON.parse(l) as { time: string; level: string; message: string };
    assert.deepEqual(Object.keys(o), ['time', 'level', 'message'], l);
    assert.ok(!Number.isNaN(Date.parse(o.time)), o.time);
    return o;
  });
}

test('--log-format json: bad input and command-line errors are JSON lines; text is unchanged', async () => {
  const bad = await runCli(['run', '--guest', 'nosuch', '--log-format', 'json']);
  assert.equal(bad.code, 2);
  const [e] = jsonLines(bad.stderr);
  assert.equal(e!.level, 'error');
  assert.match(e!.message, /^unknown guest 'nosuch'/);
  // Before the subcommand too, and an error commander itself reports.
  const cli = await runCli(['--log-format=json', 'run', '--vcpus', '2']);
  assert.equal(cli.code, 2);
  assert.match(jsonLines(cli.stderr)[0]!.message, /required option '--guest <name\|file>' not specified/);
  const text = await runCli(['run', '--guest', 'nosuch']);
  assert.match(text.stderr, /^tsvmm: unknown guest 'nosuch'/);
  const wrong = await runCli(['--log-format', 'yaml', 'run', '--guest', 'hello']);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /Allowed choices are text, json/);
});

test("--log-format json: a guest failure's diagnostics from the vCPU thread are one JSON object", { skip: kvmSkip }, async () => {
  const r = await runCli(['run', '--guest', 'exception', '--log-format', 'json']);
  assert.equal(r.code, 1);
  const lines = jsonLines(r.stderr);
  const diag = lines.find((l) => /guest exception #UD/.test(l.message));
  assert.ok(diag, r.stderr);
  assert.equal(diag!.level, 'error');
  assert.match(diag!.message, /\nRIP=/, 'the register dump stays inside the one object');
  assert.match(lines.at(-1)!.message, /VM stopped, run state guest-panicked/);
});
