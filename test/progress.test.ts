// Progress and summaries (issue 13 item 5): race and sim draw progress only when stdout is a
// terminal, end text output with a summary table, and leave --json output as it was. A terminal is
// given by util-linux's `script` (a pseudo-terminal), run where it exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BIN, runCli } from './cli';
import { kvmSkip } from './kvm-available';

const scriptSkip = spawnSync('script', ['--version']).status === 0 ? false : 'needs util-linux script(1) for a pseudo-terminal';

/** Runs tsvmm on a pseudo-terminal (stdout and stderr both a TTY); returns what the terminal showed. */
function onTerminal(args: string[]): { status: number | null; screen: string } {
  const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync('script', ['-q', '-e', '-c', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, TERM: 'xterm' } });
  return { status: r.status, screen: r.stdout };
}

test('sim, not on a terminal: no progress on either stream; the text report ends with the summary table; --json unchanged', async () => {
  const text = await runCli(['sim', '--random', '--seeds', '2000', '--toggles', '1']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, '', 'nothing on stderr');
  assert.doesNotMatch(text.stdout, /\x1b/, 'no terminal control sequences');
  assert.match(text.stdout, /^violations: 0$/m, 'the text report is still there');
  assert.match(text.stdout, /│ tsvmm sim summary +│/);
  assert.match(text.stdout, /│ schedules +│ 2000 \(2000 distinct\) +│/);
  assert.match(text.stdout, /└─+┴─+┘\n$/, 'the table ends the output');
  const json = await runCli(['sim', '--random', '--seeds', '200', '--toggles', '1', '--json']);
  assert.equal(json.stderr, '');
  assert.equal(JSON.parse(json.stdout).schedules, 200, 'stdout is exactly the JSON report');
});

test('sim on a terminal: a progress bar on the terminal, then the report', { skip: scriptSkip }, () => {
  const r = onTerminal(['sim', '--random', '--seeds', '3000', '--toggles', '1']);
  assert.equal(r.status, 0, r.screen);
  assert.match(r.screen, /sim \[[░█]+\] \d+% \| \d+\/3000 schedules/);
  assert.match(r.screen, /tsvmm sim summary/);
  // stderr carries JSON lines under --log-format json: no bar then.
  const json = onTerminal(['--log-format', 'json', 'sim', '--random', '--seeds', '3000', '--toggles', '1']);
  assert.equal(json.status, 0, json.screen);
  assert.doesNotMatch(json.screen, /sim \[/);
  assert.match(json.screen, /tsvmm sim summary/);
});

test('race, not on a terminal: no progress; the text report is a table; --json is one JSON line', { skip: kvmSkip }, async () => {
  const text = await runCli(['race', '--toggles', '50']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, '');
  assert.doesNotMatch(text.stdout, /\x1b/);
  assert.match(text.stdout, /^┌─+┬─+┐\n│ tsvmm race +│ +│\n/);
  assert.match(text.stdout, /│ toggles +│ 50 +│/);
  assert.match(text.stdout, /│ vmDeaths +│ 0 +│/);
  const json = await runCli(['race', '--toggles', '50', '--json']);
  assert.equal(json.stderr, '');
  const lines = json.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]!).toggles, 50);
});

test('race on a terminal: a progress bar counting toggles', { skip: kvmSkip || scriptSkip }, () => {
  const r = onTerminal(['race', '--toggles', '3000']);
  assert.equal(r.status, 0, r.screen);
  assert.match(r.screen, /race \[[░█]+\] \d+% \| \d+\/3000 toggles/);
  assert.match(r.screen, /│ toggles +│ 3000 +│/);
});
