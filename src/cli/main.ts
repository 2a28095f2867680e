// tsvmm's command line. commander parses it (well kept, typed, no dependencies).
import { Command, CommanderError } from 'commander';
import { registerRunCommand } from './run-command';
import { registerRaceCommand } from './race-command';
import { registerProbeCommand } from './probe-command';
import { registerSimCommand } from './sim-command';
import { packageVersion } from '../version';

export function buildProgram(): Command {
  const program = new Command('tsvmm')
    .description('a KVM virtual machine monitor in TypeScript')
    .version(`tsvmm ${packageVersion().text}`, '-V, --version', 'print the version and exit')
    .showHelpAfterError()
    .exitOverride();
  registerRunCommand(program);
  registerRaceCommand(program);
  registerSimCommand(program);
  registerProbeCommand(program);
  return program;
}

export function main(argv: string[]): void {
  const program = buildProgram();
  program.parseAsync(argv).catch((e: unknown) => {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`tsvmm: ${(e as Error).message}\n`);
    process.exitCode = 1;
  });
}
