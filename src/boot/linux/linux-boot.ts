// Direct kernel boot, the way Firecracker and cloud-hypervisor do it: no firmware. The VMM puts the
// bzImage's protected-mode kernel, the initrd, the command line, the zero page and an MP table in
// RAM, and starts vCPU 0 at the kernel's 64-bit entry in the long mode src/boot/long-mode.ts sets
// up (boot.rst's 64-bit protocol: paging on with the kernel, zero page and command line identity
// mapped; a flat __BOOT_CS 0x10 / __BOOT_DS 0x18; interrupts off; RSI = the zero page). The other
// vCPUs wait for the kernel's INIT/SIPI in the in-kernel local APIC.
//
// Low memory used (all inside the first MiB, which Linux keeps reserved):
//   0x1000..0x6fff page tables, 0x7000 zero page, 0x9000 GDT/TSS (long-mode.ts),
//   0x30000 command line, 0x9fc00 MP table (in the reserved EBDA KB, where Linux scans).
import fs from 'node:fs';
import { setupLongMode, vcpuBootState } from '../long-mode';
import type { Regs, Sregs } from '../../kvm/regs';
import { BootPlanError, parseBzImage, planBoot, type BootPlan, type SetupHeader } from './bzimage';
import { buildZeroPage, e820Map, EBDA_START, type MemoryLayout } from './zero-page';
import { buildMpTable } from './mptable';
import { UserInputError } from '../../user-input-error';

export const ZERO_PAGE_GPA = 0x7000n;
export const CMDLINE_GPA = 0x3_0000n;
export const MP_TABLE_GPA = Number(EBDA_START);

/**
 * The default command line: serial console, no ACPI (CPUs from the MP table, PCI through CF8/CFC),
 * no early PCI scan (two ~16k-exit bus scans), reset by triple fault, reboot at once on a panic,
 * no port-0x80 delays, and one legacy UART probed instead of four.
 */
export const DEFAULT_CMDLINE =
  'console=ttyS0 quiet acpi=off pci=noearly reboot=t panic=-1 tsc=reliable no_timer_check io_delay=none 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp';

export class LinuxBootInputError extends UserInputError {
  constructor(message: string) {
    super(message);
    this.name = 'LinuxBootInputError';
  }
}

export interface LinuxBootFiles {
  kernelPath: string;
  initrdPath?: string;
  cmdline: string;
}

export interface LinuxImage {
  header: SetupHeader;
  initrd?: Uint8Array;
  files: LinuxBootFiles;
}

function readInput(what: string, file: string): Uint8Array {
  try {
    if (!fs.statSync(file).isFile()) throw new LinuxBootInputError(`${what} ${file} is not a regular file`);
    return fs.readFileSync(file);
  } catch (e) {
    if (e instanceof LinuxBootInputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LinuxBootInputError(`${what} ${file} does not exist`);
    if (code === 'EACCES') throw new LinuxBootInputError(`${what} ${file} is not readable (permission denied)`);
    throw new LinuxBootInputError(`${what} ${file}: ${(e as Error).message}`);
  }
}

/** Reads and validates the kernel and initrd (before anything touches KVM). */
export function readLinuxImage(files: LinuxBootFiles): LinuxImage {
  const kernel = readInput('--kernel', files.kernelPath);
  const header = parseBzImage(kernel, files.kernelPath);
  const initrd = files.initrdPath === undefined ? undefined : readInput('--initrd', files.initrdPath);
  return { header, initrd, files };
}

/** Checks that the image fits the machine (below `loadLimit` if given) (a BootPlanError otherwise) and returns where it goes. */
export function planLinuxBoot(image: LinuxImage, mem: MemoryLayout, memLabel: string, loadLimit?: bigint): BootPlan {
  let low = mem.ramBytes < mem.lowRamEnd ? mem.ramBytes : mem.lowRamEnd;
  if (loadLimit !== undefined && loadLimit < low) low = loadLimit; // what the loader's view of RAM reaches
  return planBoot({
    header: image.header,
    lowRamBytes: low,
    initrdSize: BigInt(image.initrd?.byteLength ?? 0),
    cmdline: image.files.cmdline,
    cmdlineGpa: CMDLINE_GPA,
    memLabel,
  });
}

/**
 * Writes everything into RAM (`ram` views RAM from GPA 0) and returns vCPU 0's registers. Only
 * vCPU 0 gets a register state: the others start in the in-kernel APIC's wait-for-SIPI state.
 */
export function loadLinux(ram: Uint8Array, image: LinuxImage, plan: BootPlan, mem: MemoryLayout, vcpus: number): { regs: Regs; sregs: Sregs } {
  const need = Number(plan.kernelGpa) + image.header.kernel.byteLength;
  if (ram.byteLength < need) throw new BootPlanError(`guest RAM view is ${ram.byteLength} bytes; the kernel needs ${need}`);
  setupLongMode(ram, 1); // page tables identity-mapping [0, 4 GiB), vCPU 0's GDT and TSS
  ram.set(image.header.kernel, Number(plan.kernelGpa));
  if (image.initrd) ram.set(image.initrd, Number(plan.initrdGpa));
  ram.set(plan.cmdline, Number(plan.cmdlineGpa));
  ram.set(buildZeroPage(image.header, plan, e820Map(mem)), Number(ZERO_PAGE_GPA));
  ram.set(buildMpTable({ gpa: MP_TABLE_GPA, cpus: vcpus }), MP_TABLE_GPA);
  const state = vcpuBootState(0, plan.entryGpa, 1);
  state.regs.rsi = ZERO_PAGE_GPA;
  state.regs.rdi = 0n;
  state.regs.rdx = 0n;
  return state;
}
