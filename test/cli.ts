import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { RaceReport } from '../src/cli/race-command';

export const BIN = path.resolve(__dirname, '../../bin/tsvmm.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `onSpawn` can signal the child (Ctrl-C tests). */
export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; onSpawn?: (pid: number) => void; onStderr?: (soFar: string, pid: number) => void } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      opts.onStderr?.(stderr, child.pid!);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tsvmm ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 60000);
    child.on('spawn', () => opts.onSpawn?.(child.pid!));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** `tsvmm race --json ARGS`: the report from its last stdout line, with the exit status and stderr. */
export async function runRaceJson(args: string[]): Promise<{ report: RaceReport; code: number | null; stderr: string }> {
  const r = await runCli(['race', '--json', ...args], { timeoutMs: 300_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(line.startsWith('{'), `no report; stderr: ${r.stderr}`);
  return { report: JSON.parse(line) as RaceReport, code: r.code, stderr: r.stderr };
}
