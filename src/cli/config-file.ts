// `tsvmm run --config vm.json`: a VM described in a file, validated with zod (a well-kept schema
// library with precise, typed issues) so that an error names the field, the bad value and what is
// allowed. Keys are the command line's long option names; command-line options win over the file;
// `--print-config` shows what the two add up to.
import fs from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { UserInputError } from '../user-input-error';

export class ConfigFileError extends UserInputError {
  override name = 'ConfigFileError';
}

const SIZE = /^\d+(?:\.\d+)?\s*[KMGTkmgt]?(?:i?B)?$/;

/** Every `run` option a file may set. */
export const RUN_CONFIG_SCHEMA = z
  .strictObject({
    guest: z.string().min(1),
    vcpus: z.int().min(1).max(64),
    mem: z.union([z.string().regex(SIZE, 'expected a size such as 64M or 1G'), z.int().positive()]),
    iterations: z
      .int()
      .min(0)
      .max(2 ** 31),
    kvm: z.string().min(1),
    qmp: z.string().min(1).max(107),
    name: z.string().min(1),
    paused: z.boolean(),
    action: z.enum(['reboot=reset', 'reboot=shutdown']),
    'metrics-listen': z.union([z.string().min(1), z.int().min(0).max(65535)]),
    'metrics-allow-remote': z.boolean(),
  })
  .partial();

export type RunConfig = z.infer<typeof RUN_CONFIG_SCHEMA>;

/** Reads and validates a config file. Throws ConfigFileError naming the file, field, value, rule. */
export function readRunConfig(file: string): RunConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigFileError(`--config ${file}: cannot read it: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigFileError(`--config ${file}: not JSON: ${(e as Error).message}`);
  }
  const r = RUN_CONFIG_SCHEMA.safeParse(data, { reportInput: true });
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys')
      return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `'${k}'`).join(', ')} (allowed: ${Object.keys(RUN_CONFIG_SCHEMA.shape).join(', ')})`;
    if (i.path.length === 0) return `${i.message}, got ${JSON.stringify(i.input)}`;
    return `field '${i.path.join('.')}': ${i.message}, got ${JSON.stringify(i.input)}`;
  });
  throw new ConfigFileError(`--config ${file}: ${problems.join('; ')}`);
}

/**
 * Fills the command's options from the file where the command line did not set them. Values are
 * passed as the command line would pass them (strings for valued options), so the same parsing and
 * range checks apply to both.
 */
export function applyRunConfig(cmd: Command, config: RunConfig): void {
  for (const [key, value] of Object.entries(config)) {
    const opt = cmd.options.find((o) => o.long === `--${key}`);
    if (!opt) throw new ConfigFileError(`config field '${key}' has no matching option`); // schema and options out of step
    const attr = opt.attributeName();
    if (cmd.getOptionValueSource(attr) === 'cli') continue;
    cmd.setOptionValueWithSource(attr, typeof value === 'boolean' ? value : String(value), 'config');
  }
}

/** The effective configuration, in the file's format (what --print-config prints). */
export function effectiveRunConfig(cmd: Command): RunConfig {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(RUN_CONFIG_SCHEMA.shape)) {
    const opt = cmd.options.find((o) => o.long === `--${key}`);
    const v = opt && cmd.getOptionValue(opt.attributeName());
    if (v === undefined) continue;
    const numeric = ['vcpus', 'iterations'].includes(key) && /^\d+$/.test(String(v));
    out[key] = numeric ? Number(v) : v;
  }
  return out as RunConfig;
}
