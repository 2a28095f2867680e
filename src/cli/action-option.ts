// `--action reboot=reset|shutdown`: QEMU's `-action`, for the one action tsvmm lets an operator
// choose, what a guest-initiated reset does.
import { InvalidArgumentError } from 'commander';
import { REBOOT_ACTIONS, type RebootAction } from '../vmm/machine-config';

/** Parses `reboot=ACTION` (a comma-separated list as QEMU takes; only `reboot` is known). */
export function parseActionOption(spec: string): { reboot: RebootAction } {
  let reboot: RebootAction | undefined;
  for (const part of spec.split(',')) {
    const [key, value, ...rest] = part.split('=');
    if (key !== 'reboot') throw new InvalidArgumentError(`--action '${spec}': unknown action '${key}' (tsvmm knows reboot=${REBOOT_ACTIONS.join('|')})`);
    if (rest.length > 0 || !(REBOOT_ACTIONS as readonly string[]).includes(value ?? ''))
      throw new InvalidArgumentError(`--action '${spec}': reboot must be one of ${REBOOT_ACTIONS.join(', ')}, got '${value ?? ''}'`);
    reboot = value as RebootAction;
  }
  return { reboot: reboot! };
}
