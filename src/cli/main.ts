// tsvmm's command line. commander parses it (well kept, typed, no dependencies).
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { registerRunCommand } from './run-command';
import { registerRaceCommand } from './race-command';
import { registerProbeCommand } from './probe-command';
import { registerSimCommand } from './sim-command';
import { packageVersion } from '../version';
import { LOG_FORMATS, report, setLogFormat, type LogFormat } from '../log';
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
    throw new InvalidArgumentError((e as Error).message);
  }
  return collect(v, prev);
}

export function buildProgram(): Command {
  const program = new Command('tsvmm')
    .description('a KVM virtual machine monitor in TypeScript')
    .version(`tsvmm ${packageVersion().text}`, '-V, --version', 'print the version and exit')
    .addOption(new Option('--log-format <format>', 'stderr as text, or one JSON object per line').choices(LOG_FORMATS).default('text'))
    .addOption(new Option('--trace <pattern>', "turn on trace events (QEMU's -trace): a name or glob such as 'kvm_*', '-NAME' turns one off; repeatable; 'help' lists them").argParser(traceOption))
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
  registerRunCommand(program);
  registerRaceCommand(program);
  registerSimCommand(program);
  registerProbeCommand(program);
  return program;
}

export function main(argv: string[]): void {
  // Before parsing, so that an error in the command line itself is already a JSON line.
  const i = argv.findIndex((a) => a === '--log-format' || a.startsWith('--log-format='));
  if (i >= 0 && (argv[i] === '--log-format=json' || (argv[i] === '--log-format' && argv[i + 1] === 'json'))) setLogFormat('json');
  const program = buildProgram();
  program.parseAsync(argv).catch((e: unknown) => {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    report('error', (e as Error).message);
    process.exitCode = 1;
  });
}
