#!/usr/bin/env node
// The Linux guest's parts, in the project cache (.cache/linux/):
//   vmlinuz          Debian's linux-image-amd64 kernel (the one scripts/kvm-in-qemu.sh boots):
//                    copied from /boot when the package is installed, else `apt-get download`ed and
//                    unpacked with dpkg-deb (no root needed);
//   bar-race         guests/linux/bar-race.c built with `gcc -static` (the field reproducer);
//   initramfs.cpio   busybox-static (Debian's busybox-static package) as init and shell, plus
//                    bar-race; written here as a newc archive, so device nodes need no root.
//
//   node scripts/build-linux-guest.js            kernel + initramfs (prints their paths)
//   node scripts/build-linux-guest.js --check    exit 0 if everything is there (nothing built)
// scripts/build.js calls buildLinuxGuest(root, {kernel: 'installed'}): bar-race and the initramfs,
// and the kernel when /boot has one (never a download), skipped where busybox-static or a static
// libc is missing.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const INITTAB = `::sysinit:/etc/rcS
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/reboot -f
`;

// tsvmm.race=1 runs the reproducer and reboots (reboot=t: a triple fault ends the VM, status 0);
// tsvmm.bootonly=1 reboots as soon as /init runs (boot-time measurements).
const RCS = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "tsvmm-linux: /init reached, uptime $(cut -d' ' -f1 /proc/uptime) s"
case " $(cat /proc/cmdline) " in
*" tsvmm.bootonly=1 "*)
  reboot -f ;;
*" tsvmm.race=1 "*)
  /bin/bar-race
  echo "tsvmm-linux: bar-race exited $?"
  reboot -f ;;
esac
`;

function findStaticBusybox() {
  for (const b of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!fs.existsSync(b)) continue;
    try {
      execFileSync('ldd', [b], { stdio: 'ignore' });
    } catch {
      return b; // ldd fails on a static binary: that is the one we want
    }
  }
  return undefined;
}

/** A newc ("070701") cpio archive writer. */
class Cpio {
  constructor() {
    this.parts = [];
    this.ino = 1;
  }
  add(name, mode, data = Buffer.alloc(0), rdev = [0, 0]) {
    const hex = (n) => n.toString(16).padStart(8, '0');
    const nameBuf = Buffer.from(`${name}\0`);
    const fields = [this.ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    const hdr = Buffer.from(`070701${fields.map(hex).join('')}`);
    const pad = (n) => Buffer.alloc((4 - (n % 4)) % 4);
    this.parts.push(hdr, nameBuf, pad(hdr.length + nameBuf.length), data, pad(data.length));
  }
  dir(name) {
    this.add(name, 0o040755);
  }
  file(name, data, perm = 0o644) {
    this.add(name, 0o100000 | perm, data);
  }
  symlink(name, target) {
    this.add(name, 0o120777, Buffer.from(target));
  }
  chr(name, major, minor) {
    this.add(name, 0o020600, Buffer.alloc(0), [major, minor]);
  }
  finish() {
    this.add('TRAILER!!!', 0);
    const out = Buffer.concat(this.parts);
    return Buffer.concat([out, Buffer.alloc((512 - (out.length % 512)) % 512)]);
  }
}

function newer(out, inputs) {
  if (!fs.existsSync(out)) return false;
  const t = fs.statSync(out).mtimeMs;
  return inputs.every((i) => fs.statSync(i).mtimeMs <= t);
}

function buildBarRace(root, cache) {
  const src = path.join(root, 'guests/linux/bar-race.c');
  const out = path.join(cache, 'bar-race');
  if (newer(out, [src])) return out;
  fs.mkdirSync(cache, { recursive: true });
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-pthread', '-o', out, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

function buildInitramfs(root, cache, busybox, barRace) {
  const out = path.join(cache, 'initramfs.cpio');
  const self = __filename;
  if (newer(out, [busybox, barRace, self])) return out;
  const c = new Cpio();
  for (const d of ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp', 'root', 'sbin']) c.dir(d);
  c.chr('dev/console', 5, 1);
  c.chr('dev/ttyS0', 4, 64);
  c.chr('dev/null', 1, 3);
  c.file('bin/busybox', fs.readFileSync(busybox), 0o755);
  c.symlink('bin/sh', 'busybox');
  c.symlink('init', 'bin/busybox'); // busybox runs its init applet as /init
  c.file('bin/bar-race', fs.readFileSync(barRace), 0o755);
  c.file('etc/inittab', Buffer.from(INITTAB));
  c.file('etc/rcS', Buffer.from(RCS), 0o755);
  fs.writeFileSync(`${out}.tmp`, c.finish());
  fs.renameSync(`${out}.tmp`, out);
  return out;
}

/** Debian's kernel into the cache: from /boot if linux-image-amd64 is installed, else downloaded. */
function fetchKernel(cache, installedOnly = false) {
  const out = path.join(cache, 'vmlinuz');
  const installed = (fs.existsSync('/boot') ? fs.readdirSync('/boot') : [])
    .filter((f) => /^vmlinuz-.*-amd64$/.test(f))
    .sort()
    .pop();
  let src;
  if (installed) src = path.join('/boot', installed);
  else if (installedOnly) return undefined;
  else {
    // linux-image-amd64 is a metapackage: its first dependency is the versioned kernel package.
    const dep = execFileSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' }).match(/Depends: (linux-image-[^\s]+)/)?.[1];
    if (!dep) throw new Error('build-linux-guest: cannot resolve linux-image-amd64 with apt-cache (run apt-get update?)');
    const dl = path.join(cache, 'deb');
    fs.mkdirSync(dl, { recursive: true });
    execFileSync('apt-get', ['download', dep], { cwd: dl, stdio: ['ignore', 'inherit', 'inherit'] });
    const deb = fs.readdirSync(dl).find((f) => f.startsWith(dep) && f.endsWith('.deb'));
    execFileSync('dpkg-deb', ['-x', path.join(dl, deb), path.join(dl, 'root')]);
    src = path.join(
      dl,
      'root/boot',
      fs.readdirSync(path.join(dl, 'root/boot')).find((f) => f.startsWith('vmlinuz-')),
    );
  }
  if (!newer(out, [src])) fs.copyFileSync(src, out);
  return out;
}

function buildLinuxGuest(root, opts = {}) {
  const cache = path.join(root, '.cache/linux');
  const busybox = findStaticBusybox();
  const libc = ['/usr/lib/x86_64-linux-gnu/libc.a', '/usr/lib64/libc.a'].some((p) => fs.existsSync(p));
  if (!busybox || !libc) {
    const why = !busybox ? 'no static busybox (apt-get install busybox-static)' : 'no static libc (apt-get install libc6-dev)';
    if (opts.required) throw new Error(`build-linux-guest: ${why}`);
    if (!opts.quiet) process.stderr.write(`build: skipping the Linux guest's initramfs: ${why}\n`);
    return undefined;
  }
  const barRace = buildBarRace(root, cache);
  const initramfs = buildInitramfs(root, cache, busybox, barRace);
  // opts.kernel: true = copy or download it; 'installed' = copy it from /boot only (the build's way).
  const kernel = opts.kernel ? fetchKernel(cache, opts.kernel === 'installed') : undefined;
  return { kernel, initramfs, barRace };
}

module.exports = { buildLinuxGuest, Cpio };

if (require.main === module) {
  const root = path.resolve(__dirname, '..');
  if (process.argv.includes('--check')) {
    const ok = ['vmlinuz', 'initramfs.cpio'].every((f) => fs.existsSync(path.join(root, '.cache/linux', f)));
    process.exit(ok ? 0 : 1);
  }
  const r = buildLinuxGuest(root, { required: true, kernel: true });
  process.stdout.write(`kernel    ${r.kernel}\ninitramfs ${r.initramfs}\n`);
}
