// Command-line pieces for Linux guests: --kernel/--initrd/--cmdline and --device, shared by `run`
// and `race --linux`.
import { InvalidArgumentError } from 'commander';
import { PCI_WINDOW } from '../vmm/physical-layout';
import { type PassthroughConfig } from '../vmm/machine-config';
import { parseBdf } from '../vfio/sysfs';
import { parseSize, SizeError } from '../size';
import { shmBar0SizeProblem } from '../devices/pci/shm-backend';

/** `shm[,bar-size=SIZE]` or `vfio,host=DDDD:BB:DD.F`; devices go to slots 3, 4, ... in order. */
export function parseDeviceOption(spec: string, index: number): PassthroughConfig {
  const [kind, ...props] = spec.split(',');
  const kv = new Map<string, string>();
  for (const p of props) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`--device ${spec}: '${p}' is not key=value`);
    const key = p.slice(0, eq);
    if (kv.has(key)) throw new InvalidArgumentError(`--device ${spec}: ${key} is given twice`);
    kv.set(key, p.slice(eq + 1));
  }
  const name = `pt${index}`;
  const slot = 3 + index;
  if (kind === 'shm') {
    for (const k of kv.keys())
      if (k !== 'bar-size') throw new InvalidArgumentError(`--device ${spec}: unknown property '${k}' for shm (it takes bar-size=SIZE)`);
    const size = kv.get('bar-size');
    return { name, slot, backend: 'shm', ...(size !== undefined ? { barSize: parseBarSize(spec, size) } : {}) };
  }
  if (kind === 'vfio') {
    for (const k of kv.keys())
      if (k !== 'host') throw new InvalidArgumentError(`--device ${spec}: unknown property '${k}' for vfio (it takes host=DDDD:BB:DD.F)`);
    const host = kv.get('host');
    if (!host) throw new InvalidArgumentError(`--device ${spec}: vfio needs host=DDDD:BB:DD.F`);
    return { name, slot, backend: 'vfio', host: parseBdf(host) };
  }
  throw new InvalidArgumentError(`--device ${spec}: unknown device '${kind}' (shm, vfio,host=DDDD:BB:DD.F)`);
}

/**
 * `bar-size=SIZE` sizes BAR0: the BAR both race guests map (guests/linux/bar-race.c mmaps
 * resource0; guests/race.S uses BAR0), so a race runs on the size chosen. BAR2 stays 64 KiB.
 */
function parseBarSize(spec: string, text: string): bigint {
  let size: bigint;
  try {
    size = parseSize(text);
  } catch (e) {
    if (e instanceof SizeError) throw new InvalidArgumentError(`--device ${spec}: bar-size: ${e.message}`);
    throw e;
  }
  const problem = shmBar0SizeProblem(size, PCI_WINDOW);
  if (problem) throw new InvalidArgumentError(`--device ${spec}: ${problem}`);
  return size;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
