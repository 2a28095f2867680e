// Which subcommand a command line names, read before anything else loads (bin/tsvmm.js uses it to
// spawn the first vCPU worker before the CLI itself is read). Free of imports: it must load fast.

/** The subcommands, in help order. */
export const COMMAND_NAMES = ['run', 'race', 'sim', 'probe'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** Commands that start vCPU threads. */
export const STARTS_VCPUS: readonly CommandName[] = ['run', 'race'];

/**
 * The subcommand argv names: the first word that is not an option or the value of --log-format or --trace; or
 * undefined (no command, an unknown one, or `help`: then every command is registered).
 */
export function subcommandOf(argv: readonly string[]): CommandName | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--log-format' || a === '--trace') {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return (COMMAND_NAMES as readonly string[]).includes(a) ? (a as CommandName) : undefined;
  }
  return undefined;
}
