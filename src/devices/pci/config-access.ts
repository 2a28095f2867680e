// The two ways a guest reaches PCI configuration space, both answered by the one host bridge:
// configuration mechanism #1 (ports 0xcf8..0xcff) and the ECAM (MMCONFIG) window.
import { stepsEffect, type DeviceEffect, type MmioHandler, type PioHandler } from '../device';
import type { PciHostBridge } from './host-bridge';

/** Ports 0xcf8..0xcff: configuration mechanism #1. */
export class ConfigPorts implements PioHandler {
  readonly name = 'pci-config-ports';
  constructor(private readonly bridge: PciHostBridge) {}
  pioRead(port: number, size: 1 | 2 | 4): number {
    return this.bridge.pioRead(port, size);
  }
  pioWrite(port: number, size: 1 | 2 | 4, value: number): DeviceEffect | undefined {
    return stepsEffect(this.bridge.pioWrite(port, size, value));
  }
}

/** The ECAM window: accesses are config accesses (1/2/4 bytes; 8-byte ones split in two). */
export class EcamHandler implements MmioHandler {
  readonly name = 'pci-ecam';
  constructor(private readonly bridge: PciHostBridge) {}
  mmioRead(offset: bigint, len: number): bigint {
    if (len === 8) return BigInt(this.bridge.ecamRead(Number(offset), 4)) | (BigInt(this.bridge.ecamRead(Number(offset) + 4, 4)) << 32n);
    return BigInt(this.bridge.ecamRead(Number(offset), len as 1 | 2 | 4));
  }
  mmioWrite(offset: bigint, len: number, value: bigint): DeviceEffect | undefined {
    if (len === 8) {
      const low = this.bridge.ecamWrite(Number(offset), 4, Number(value & 0xffff_ffffn));
      const high = this.bridge.ecamWrite(Number(offset) + 4, 4, Number(value >> 32n));
      return stepsEffect(high.length === 0 ? low : [...low, ...high]);
    }
    return stepsEffect(this.bridge.ecamWrite(Number(offset), len as 1 | 2 | 4, Number(value)));
  }
}
