// tsvmm's command line. commander parses it (well kept, typed, no dependencies).
import { Command, CommanderError, Option } from 'commander';
import { registerRunCommand } from './run-command';
import { registerRaceCommand } from './race-command';
import { registerProbeCommand } from './probe-command';
import { registerSimCommand } from './sim-command';
import { packageVersion } from '../version';
import { LOG_FORMATS, report, setLogFormat, type LogFormat } from '../log';

export function buildProgram(): Command {
  const program = new Command('tsvmm')
    .description('a KVM virtual machine monitor in TypeScript')
    .version(`tsvmm ${packageVersion().text}`, '-V, --version', 'print the version and exit')
    .addOption(new Option('--log-format <format>', 'stderr as text, or one JSON object per line').choices(LOG_FORMATS).default('text'))
    .showHelpAfterError()
    .exitOverride()
    .hook('preAction', (cmd) => setLogFormat(cmd.opts<{ logFormat: LogFormat }>().logFormat))
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
