#!/usr/bin/env node
// Boot time to /init of the same kernel and initramfs under tsvmm and under QEMU's microvm machine,
// on this machine's KVM (run it inside scripts/kvm-in-qemu.sh where that is the only KVM):
//
//   scripts/kvm-in-qemu.sh node scripts/bench-linux-boot.js [runs]
//
// Each boot runs the initramfs with tsvmm.bootonly=1: /init prints its uptime and reboots at once
// (reboot=t: a triple fault ends both VMMs). Reported per VMM: the host wall time from spawning the
// VMM to the "/init reached" line on its serial console, the guest's own uptime at that line, and
// the wall time until the VMM exited. Same kernel command line for both, except what each machine
// needs (both without ACPI: CPUs from the MP table, tsvmm's or qboot's).
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const root = path.resolve(__dirname, '..');
const kernel = process.env.TSVMM_LINUX_KERNEL ?? path.join(root, '.cache/linux/vmlinuz');
const initrd = process.env.TSVMM_LINUX_INITRD ?? path.join(root, '.cache/linux/initramfs.cpio');
const runs = Number(process.argv[2] ?? 3);
const vcpus = process.env.VCPUS ?? '2';
const cmdline =
  'console=ttyS0 quiet acpi=off pci=noearly reboot=t panic=-1 tsc=reliable no_timer_check io_delay=none 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp tsvmm.bootonly=1';

function boot(cmd, args) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let initAt;
    let uptime;
    c.stdout.on('data', (d) => {
      out += d;
      const m = /\/init reached, uptime ([\d.]+) s/.exec(out);
      if (m && initAt === undefined) {
        initAt = Number(process.hrtime.bigint() - t0) / 1e9;
        uptime = Number(m[1]);
      }
    });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 180_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      resolve({
        initAt,
        uptime,
        exitAt: Number(process.hrtime.bigint() - t0) / 1e9,
        code,
        err: err.slice(-400),
        out: initAt === undefined ? out.slice(-800) : '',
      });
    });
  });
}

const median = (xs) => {
  const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : undefined;
};

async function main() {
  for (const f of [kernel, initrd]) if (!fs.existsSync(f)) throw new Error(`${f} missing: run node scripts/build-linux-guest.js`);
  const vmms = {
    tsvmm: () =>
      boot(process.execPath, [
        path.join(root, 'bin/tsvmm.js'),
        'run',
        '--kernel',
        kernel,
        '--initrd',
        initrd,
        '--vcpus',
        vcpus,
        '--mem',
        '512M',
        '--cmdline',
        cmdline,
      ]),
    'qemu -M microvm': () =>
      boot('qemu-system-x86_64', [
        '-M',
        'microvm,acpi=off',
        '-accel',
        'kvm',
        '-cpu',
        'host',
        '-smp',
        vcpus,
        '-m',
        '512M',
        '-kernel',
        kernel,
        '-initrd',
        initrd,
        '-append',
        cmdline,
        '-nodefaults',
        '-no-user-config',
        '-display',
        'none',
        '-serial',
        'stdio',
        '-no-reboot',
      ]),
  };
  const results = {};
  for (let i = 0; i < runs; i++) {
    for (const [name, run] of Object.entries(vmms)) {
      const r = await run();
      (results[name] ??= []).push(r);
      process.stderr.write(
        `${name} run ${i + 1}: /init after ${r.initAt?.toFixed(2) ?? 'never'} s (guest uptime ${r.uptime ?? '?'} s), exit ${r.code} after ${r.exitAt.toFixed(2)} s${r.initAt === undefined ? `\n${r.err}\n${r.out}` : ''}\n`,
      );
    }
  }
  const summary = Object.fromEntries(
    Object.entries(results).map(([name, rs]) => [
      name,
      {
        runs: rs.length,
        medianHostSecondsToInit: median(rs.map((r) => r.initAt)),
        medianGuestUptimeAtInit: median(rs.map((r) => r.uptime)),
        medianHostSecondsToExit: median(rs.map((r) => r.exitAt)),
      },
    ]),
  );
  process.stdout.write(`${JSON.stringify({ kernel, initrd, vcpus: Number(vcpus), cmdline, summary }, null, 1)}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench-linux-boot: ${e.message}\n`);
  process.exit(1);
});
