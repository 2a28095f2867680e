// A real Linux guest on real KVM: Debian's kernel and the project's initramfs
// (scripts/build-linux-guest.js). Boot to the serial shell, SMP, PCI enumeration of the passthrough
// function, poweroff, `reboot -f` through the i8042 (reboot=k), --device shm,bar-size=, a panic,
// and the field race inside the guest (survived with the tsvmm policy, fatal with QEMU's).
//
// Skipped loudly where Linux cannot boot: no /dev/kvm, a kvm_pvm host (its KVM emulates guest ring 0
// and a stock kernel never gets far), or no kernel/initramfs in .cache/linux. On such hosts CI runs
// this file inside scripts/kvm-in-qemu.sh (scripts/test-linux-in-qemu.sh).
//
// Each boot costs ~30 s under QEMU's TCG: tests share a boot where they can (the reboot=k test also
// checks --device shm,bar-size=; the host-revoke race runs on a non-default BAR0).
//
// Environment: TSVMM_LINUX_KERNEL / TSVMM_LINUX_INITRD override the cached files;
// TSVMM_LINUX_TOGGLES (default 200) sizes the races (each toggle costs ~0.2 s under QEMU's TCG).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { kvmSkip } from './kvm-available';
import { BIN, runCli, runRaceJson } from './cli';
import { PCI_MMIO_BASE, PCI_MMIO_END } from '../src/vmm/physical-layout';
import type { LinuxRaceReport } from '../src/cli/linux-race';
import { fakeBzImage } from './linux-fixtures';
import { DEFAULT_CMDLINE } from '../src/boot/linux/linux-boot';

const root = path.resolve(__dirname, '../..');
const kernel = process.env.TSVMM_LINUX_KERNEL ?? path.join(root, '.cache/linux/vmlinuz');
const initrd = process.env.TSVMM_LINUX_INITRD ?? path.join(root, '.cache/linux/initramfs.cpio');
const toggles = process.env.TSVMM_LINUX_TOGGLES ?? '200';

function linuxSkip(): string | false {
  if (kvmSkip) return kvmSkip;
  if (fs.existsSync('/sys/module/kvm_pvm'))
    return "this host's KVM is kvm_pvm (guest ring 0 is emulated): a stock Linux kernel cannot boot; run scripts/test-linux-in-qemu.sh";
  for (const f of [kernel, initrd]) if (!fs.existsSync(f)) return `${f} is missing: run \`node scripts/build-linux-guest.js\``;
  return false;
}
const skip = linuxSkip();
if (skip) process.stderr.write(`\n*** tsvmm: LINUX KVM TESTS SKIPPED: ${skip} ***\n\n`);

/**
 * Runs `tsvmm run --kernel`, sends `commands` once the shell prompt appears, resolves at exit.
 * Without commands, stdout goes to a file: a panic's burst of console output must not depend on how
 * fast this (emulated, slow) process drains a pipe.
 */
function bootAndRun(
  args: string[],
  commands: string | undefined,
  timeoutMs = 240_000,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (commands === undefined) return bootToFile(args, timeoutMs);
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, 'run', '--kernel', kernel, '--initrd', initrd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    let sent = false;
    c.stdout.on('data', (d) => {
      stdout += d;
      if (commands !== undefined && !sent && /\/ # /.test(stdout)) {
        sent = true;
        c.stdin.write(commands);
      }
    });
    c.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`tsvmm run --kernel did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    c.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function bootToFile(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-linux-')), 'console.txt');
  const fd = fs.openSync(file, 'w');
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, 'run', '--kernel', kernel, '--initrd', initrd, ...args], { stdio: ['ignore', fd, 'pipe'] });
    fs.closeSync(fd);
    let stderr = '';
    c.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`tsvmm run --kernel did not finish in ${timeoutMs} ms\nstdout: ${fs.readFileSync(file, 'utf8')}\nstderr: ${stderr}`));
    }, timeoutMs);
    c.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: fs.readFileSync(file, 'utf8'), stderr });
    });
  });
}

test('Linux boots to the initramfs shell: 2 CPUs, the passthrough function with its BAR in the PCI hole; poweroff exits 0', { skip }, async () => {
  const r = await bootAndRun(
    ['--vcpus', '2', '--device', 'shm'],
    'echo CPUS=$(grep -c ^processor /proc/cpuinfo); echo PT $(cat /sys/bus/pci/devices/0000:00:03.0/vendor /sys/bus/pci/devices/0000:00:03.0/device) $(head -1 /sys/bus/pci/devices/0000:00:03.0/resource); poweroff\n',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /tsvmm-linux: \/init reached/);
  assert.match(r.stdout, /^CPUS=2\r?$/m);
  const pt = /^PT 0x5453 0x0001 (0x[0-9a-f]+) (0x[0-9a-f]+) /m.exec(r.stdout);
  assert.ok(pt, `no passthrough function in the guest's sysfs:\n${r.stdout}`);
  const [start, end] = [BigInt(pt[1]!), BigInt(pt[2]!)];
  assert.ok(start >= PCI_MMIO_BASE && end < PCI_MMIO_END, `BAR0 [0x${start.toString(16)}, 0x${end.toString(16)}] is outside the PCI hole`);
  assert.match(r.stdout, /reboot: (System halted|Power down)/);
});

test(
  'reboot=k: `reboot -f` resets through the i8042 and ends the VM with status 0; the guest sees --device shm,bar-size=1M as a 1 MiB BAR0, aligned',
  { skip },
  async () => {
    // One boot for both: the keyboard controller's reset line instead of reboot=t's triple fault, and
    // a non-default BAR0 as the guest's PCI core found it (sysfs resource: start end flags, per BAR).
    const cmdline = DEFAULT_CMDLINE.replace(/\breboot=t\b/, 'reboot=k');
    assert.match(cmdline, /reboot=k/);
    const r = await bootAndRun(
      ['--vcpus', '1', '--device', 'shm,bar-size=1M', '--cmdline', cmdline],
      'echo BAR0 $(head -1 /sys/bus/pci/devices/0000:00:03.0/resource); reboot -f\n',
      240_000,
      { TSVMM_LOG: 'info' },
    );
    assert.equal(r.code, 0, r.stderr);
    const bar = /^BAR0 (0x[0-9a-f]+) (0x[0-9a-f]+) /m.exec(r.stdout);
    assert.ok(bar, `no BAR0 line from the guest's sysfs:\n${r.stdout}`);
    const [start, end] = [BigInt(bar[1]!), BigInt(bar[2]!)];
    assert.equal(end - start + 1n, 1n << 20n, `BAR0 [0x${start.toString(16)}, 0x${end.toString(16)}] is not 1 MiB`);
    assert.equal(start % (1n << 20n), 0n, 'BAR0 is aligned to its size');
    assert.ok(start >= PCI_MMIO_BASE && end < PCI_MMIO_END, 'BAR0 is in the PCI hole');
    assert.match(r.stdout, /reboot: Restarting system/);
    assert.match(r.stderr, /the guest reset the machine through the i8042 keyboard controller \(reboot=k\)/);
    assert.doesNotMatch(r.stderr, /triple fault/);
  },
);

test('a guest kernel panic stops the VM as guest-panicked with the panic text and a non-zero status', { skip }, async () => {
  // No /init to run and no root device: the kernel panics right after unpacking the initramfs.
  const r = await bootAndRun(
    ['--vcpus', '1', '--cmdline', 'console=ttyS0 quiet acpi=off pci=noearly reboot=t panic=-1 rdinit=/no-such-init root=/dev/nonexistent'],
    undefined,
  );
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /tsvmm: the guest kernel panicked: Kernel panic - not syncing: /);
  assert.match(r.stderr, /run state guest-panicked/);
});

/** `run`: the CLI's exit status and stderr, shown when the guest printed no summary (which says nothing on its own). */
function checkSurvived(rep: LinuxRaceReport, hostRevokes: boolean, run: { code: number | null; stderr: string }): void {
  assert.ok(
    rep.guest,
    `the guest printed no summary; runState ${rep.runState}, vmDeaths ${rep.vmDeaths}, exit ${run.code}; stderr (last 4000 bytes):\n${run.stderr.slice(-4000)}`,
  );
  assert.equal(rep.vmDeaths, 0);
  assert.equal(rep.runState, 'shutdown');
  assert.equal(rep.guest!.toggles, Number(toggles));
  assert.equal(rep.badValues, 0, JSON.stringify(rep.firstBad));
  if (!hostRevokes) {
    // Only the guest changes decode: while it is on, nothing may be dropped or answered as UR.
    assert.equal(rep.lostWrites, 0, JSON.stringify(rep.firstBad));
    assert.equal(rep.urWhileDecodeOn, 0);
  }
  assert.ok(rep.guest!.trueReads > 0 && rep.guest!.urReads + rep.guest!.scratchUr > 0, 'the accessors never saw both decode states');
}

test("race --linux, QEMU's BAR order: the guest survives, 0 bad values, 0 lost writes, EFAULTs recovered", { skip }, async () => {
  const { report, code, stderr } = await runRaceJson(['--linux', kernel, '--initrd', initrd, '--vcpus', '3', '--toggles', toggles, '--bar-order', 'qemu']);
  const rep = report as LinuxRaceReport;
  checkSurvived(rep, false, { code, stderr });
  assert.ok(rep.efaultsRecovered > 0, "QEMU's order (host revokes before the memslot goes) must produce EFAULTs");
  assert.equal(code, 0, stderr);
});

test('race --linux with host revocations, on a 64 KiB BAR0 (--device shm,bar-size=64K): 0 deaths, 0 bad values', { skip }, async () => {
  const { report, code, stderr } = await runRaceJson([
    '--linux',
    kernel,
    '--initrd',
    initrd,
    '--vcpus',
    '3',
    '--toggles',
    toggles,
    '--bar-order',
    'qemu',
    '--host-revoke',
    '300',
    '--device',
    'shm,bar-size=64K',
  ]);
  const rep = report as LinuxRaceReport;
  checkSurvived(rep, true, { code, stderr });
  assert.equal(rep.device, 'shm,bar-size=64K');
  assert.equal(rep.guest!.bar, 0);
  assert.equal(rep.guest!.barBytes, 64 << 10, 'the guest mapped a 64 KiB resource0');
  assert.ok(rep.hostRevocations > 0);
});

test('race --linux --policy qemu: the VM stops in internal-error with QEMU\'s "kvm run failed Bad address"', { skip }, async () => {
  const { report, code, stderr } = await runRaceJson(['--linux', kernel, '--initrd', initrd, '--vcpus', '3', '--toggles', toggles, '--policy', 'qemu']);
  assert.equal(report.runState, 'internal-error');
  assert.equal(report.vmDeaths, 1);
  assert.equal(code, 1);
  assert.match(stderr, /error: kvm run failed Bad address/);
});

test('race --linux bad input: a missing initramfs and --config-access ecam are refused with status 2', async () => {
  // No KVM is touched, but inside scripts/kvm-in-qemu.sh each Node start is emulated: on a loaded
  // host (load ~20 on 2 cores) one did not finish in runCli()'s default 60 s.
  const cli = (args: string[]) => runCli(args, { timeoutMs: 240_000 });
  const a = await cli(['race', '--linux', kernel, '--initrd', '/nonexistent/initrd', '--kvm', '/nonexistent/kvm']);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /--initrd \/nonexistent\/initrd does not exist|\/nonexistent\/initrd/);
  const b = await cli(['race', '--linux', kernel, '--config-access', 'ecam']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--config-access: with --linux the guest kernel decides/);
  const c = await cli(['race', '--linux', kernel, '--qmp', '/tmp/tsvmm-linux-race.sock']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /--qmp and --metrics-listen are not supported with --linux yet/);
});

// A real vfio-pci function (scripts/kvm-in-qemu.sh with KVMQ_VFIO=1 exports TSVMM_VFIO_DEVICE: an
// ivshmem function whose BAR2 is memory): the same kernel boots with it, and the race runs on it.
const vfioDevice = process.env.TSVMM_VFIO_DEVICE;
const vfioSkip = skip || (!vfioDevice && 'no vfio-pci function (TSVMM_VFIO_DEVICE; scripts/kvm-in-qemu.sh sets it with KVMQ_VFIO=1)');

test("race --linux --vfio: the guest races on a real vfio-pci function's BAR2 and survives", { skip: vfioSkip }, async () => {
  const { report, code, stderr } = await runRaceJson([
    '--linux',
    kernel,
    '--initrd',
    initrd,
    '--vcpus',
    '3',
    '--toggles',
    toggles,
    '--vfio',
    vfioDevice!,
    '--vfio-bar',
    '2',
  ]);
  const rep = report as LinuxRaceReport;
  checkSurvived(rep, false, { code, stderr });
  assert.equal(rep.guest!.bar, 2);
  assert.equal(code, 0, stderr);
});

test('a "kernel" that triple-faults at its entry without announcing a restart is a failure (status 1), not a reboot', { skip: kvmSkip }, async () => {
  // The fake bzImage's protected-mode kernel is int3 everywhere, and no IDT is loaded yet.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-linux-'));
  const fake = path.join(dir, 'bzImage');
  fs.writeFileSync(fake, fakeBzImage());
  const r = await runCli(['run', '--kernel', fake, '--mem', '64M'], { timeoutMs: 120_000 });
  assert.equal(r.code, 1, r.stderr);
  // kvm_pvm's ring-0 emulator gives up on it instead (an emulation failure): a failure all the same.
  assert.match(r.stderr, fs.existsSync('/sys/module/kvm_pvm') ? /triple fault \(KVM_EXIT_SHUTDOWN\)|KVM internal error/ : /triple fault \(KVM_EXIT_SHUTDOWN\)/);
  const warnings = r.stderr.split('\n').filter((l) => /kvm_pvm/.test(l)).length;
  assert.equal(warnings, fs.existsSync('/sys/module/kvm_pvm') ? 1 : 0); // warned once where it applies
});
