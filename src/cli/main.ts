// tsvmm's command line. commander parses it (well kept, typed, no dependencies).
// Each subcommand's module is loaded only when that subcommand runs (or for help): `run` must not
// pay for the simulator, the race or their dependencies at start (issue 10 item 4).
import type { Command } from 'commander';
import type { registerRunCommand } from './run-command';
import { packageVersion } from '../version';
import { LOG_FORMATS, report, setLogFormat, type LogFormat } from '../log';
import { prespawnVcpuWorker } from '../vmm/vcpu-worker';
import { COMMAND_NAMES, STARTS_VCPUS, subcommandOf, type CommandName } from './command-name';
import { eventsFor, setTracePatterns, traceHelp } from '../trace';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `--trace PATTERN`: checked as it is parsed, so a bad pattern is a command-line error (exit 2). */
function traceOption(v: string, prev: string[] = []): string[] {
  if (v === 'help') {
    process.stdout.write(`${traceHelp()}\n`);
    process.exit(0);
  }
  try {
    eventsFor([v]);
  } catch (e) {
    throw new (require('commander') as typeof import('commander')).InvalidArgumentError((e as Error).message);
  }
  return collect(v, prev);
}

type Register = typeof registerRunCommand;

/** Subcommand name -> how to load its registration (in help order). */
const COMMANDS: Record<CommandName, () => Register> = {
  run: () => (require('./run-command') as typeof import('./run-command')).registerRunCommand,
  race: () => (require('./race-command') as typeof import('./race-command')).registerRaceCommand,
  sim: () => (require('./sim-command') as typeof import('./sim-command')).registerSimCommand,
  probe: () => (require('./probe-command') as typeof import('./probe-command')).registerProbeCommand,
};

/** The program with `only` registered, or every subcommand when `only` is undefined. */
export function buildProgram(only?: CommandName): Command {
  // commander after the worker's spawn (main() below): it is the largest module the CLI loads.
  const { Command, Option } = require('commander') as typeof import('commander');
  const program = new Command('tsvmm')
    .description('a KVM virtual machine monitor in TypeScript')
    .version(`tsvmm ${packageVersion().text}`, '-V, --version', 'print the version and exit')
    .addOption(new Option('--log-format <format>', 'stderr as text, or one JSON object per line').choices(LOG_FORMATS).default('text'))
    .addOption(
      new Option(
        '--trace <pattern>',
        "turn on trace events (QEMU's -trace): a name or glob such as 'kvm_*', '-NAME' turns one off; repeatable; 'help' lists them",
      ).argParser(traceOption),
    )
    .showHelpAfterError()
    .exitOverride()
    .hook('preAction', (cmd) => {
      const o = cmd.opts<{ logFormat: LogFormat; trace?: string[] }>();
      setLogFormat(o.logFormat);
      setTracePatterns(o.trace ?? []);
    })
    // Command-line errors too are one JSON line each under --log-format json.
    .configureOutput({
      writeErr: (s) => {
        if (process.env.TSVMM_LOG_FORMAT !== 'json') process.stderr.write(s);
        else if (s.trim() !== '') report('error', s.trim());
      },
    });
  for (const name of COMMAND_NAMES) if (only === undefined || only === name) COMMANDS[name]()(program);
  return program;
}

export function main(argv: string[]): void {
  const command = subcommandOf(argv);
  // First: the worker's start (a new isolate, its modules) overlaps everything below. (bin/tsvmm.js
  // has usually spawned it already, before it read this file; then this does nothing.)
  if (command !== undefined && STARTS_VCPUS.includes(command)) prespawnVcpuWorker();
  // Before parsing, so that an error in the command line itself is already a JSON line.
  const i = argv.findIndex((a) => a === '--log-format' || a.startsWith('--log-format='));
  if (i >= 0 && (argv[i] === '--log-format=json' || (argv[i] === '--log-format' && argv[i + 1] === 'json'))) setLogFormat('json');
  const program = buildProgram(command);
  program.parseAsync(argv).catch((e: unknown) => {
    if (e instanceof (require('commander') as typeof import('commander')).CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    report('error', (e as Error).message);
    process.exitCode = 1;
  });
}
