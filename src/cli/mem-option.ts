// `--mem` for run and race: a size within the machine's documented bounds.
import { MAX_RAM_BYTES } from '../vmm/machine-config';
import { formatSize, parseSize, SizeError } from '../size';

/** `--mem`: a size from 2 MiB to the documented maximum (MAX_RAM_BYTES), checked before anything is allocated. */
export function parseMemOption(input: string): bigint {
  const bytes = parseSize(input);
  if (bytes > MAX_RAM_BYTES) throw new SizeError(input, `--mem is at most ${formatSize(MAX_RAM_BYTES)} (${formatSize(bytes)} asked)`);
  if (bytes < 2n << 20n) throw new SizeError(input, '--mem is at least 2M');
  return bytes;
}
