// Command-line pieces for Linux guests: --kernel/--initrd/--cmdline and --device, shared by `run`
// and `race --linux`.
import { InvalidArgumentError } from 'commander';
import type { PassthroughConfig } from '../vmm/machine';
import { parseBdf } from '../vfio/sysfs';

/** `shm` or `vfio,host=DDDD:BB:DD.F`; devices go to slots 3, 4, ... in order. */
export function parseDeviceOption(spec: string, index: number): PassthroughConfig {
  const [kind, ...props] = spec.split(',');
  const kv = new Map<string, string>();
  for (const p of props) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`--device ${spec}: '${p}' is not key=value`);
    kv.set(p.slice(0, eq), p.slice(eq + 1));
  }
  const name = `pt${index}`;
  const slot = 3 + index;
  if (kind === 'shm') {
    for (const k of kv.keys()) {
      if (k === 'bar-size') throw new InvalidArgumentError(`--device ${spec}: bar-size is not supported yet; the shm device has a 4 KiB BAR0 and a 64 KiB BAR2`);
      throw new InvalidArgumentError(`--device ${spec}: unknown property '${k}' for shm`);
    }
    return { name, slot, backend: 'shm' };
  }
  if (kind === 'vfio') {
    for (const k of kv.keys()) if (k !== 'host') throw new InvalidArgumentError(`--device ${spec}: unknown property '${k}' for vfio (it takes host=DDDD:BB:DD.F)`);
    const host = kv.get('host');
    if (!host) throw new InvalidArgumentError(`--device ${spec}: vfio needs host=DDDD:BB:DD.F`);
    return { name, slot, backend: 'vfio', host: parseBdf(host) };
  }
  throw new InvalidArgumentError(`--device ${spec}: unknown device '${kind}' (shm, vfio,host=DDDD:BB:DD.F)`);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
