#!/usr/bin/env node
// The project's one build step, run by `npm ci` (package.json "install") and before tests/bench.
// npm 11 does not run dependencies' install scripts, so everything native is built here:
//   1. the addons (native/ -> build/Release/tsvmm_native.node and tsvmm_kvm_run.node) with node-gyp,
//   2. TypeScript (src/, test/, bench/ -> dist/), and the CLI's start-time bundles (dist/bundle/),
//   3. the built-in guests (guests/*.S -> build/guests/*.bin) with GNU as/ld/objcopy,
//   4. the C baselines for the benchmark (bench/kvm-loop.c -> build/bench/kvm-loop, bench/kvm-fault.c -> build/bench/kvm-fault).
// Steps 1, 3 and 4 are skipped when their outputs are newer than their inputs.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const rel = (p) => path.join(root, p);

function newest(paths) {
  let t = 0;
  for (const p of paths) {
    if (!fs.existsSync(p)) continue;
    const st = fs.statSync(p);
    if (st.isDirectory()) t = Math.max(t, newest(fs.readdirSync(p).map((n) => path.join(p, n))));
    else t = Math.max(t, st.mtimeMs);
  }
  return t;
}
function stale(outputs, inputs) {
  if (outputs.some((o) => !fs.existsSync(o))) return true;
  const oldestOut = Math.min(...outputs.map((o) => fs.statSync(o).mtimeMs));
  return newest(inputs) > oldestOut;
}
function run(cmd, args, opts = {}) {
  execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
}
function bin(name) {
  const local = rel(`node_modules/.bin/${name}`);
  if (!fs.existsSync(local)) {
    throw new Error(`build: ${name} is not installed in node_modules; run \`npm ci\` first`);
  }
  return local;
}

// 1. native addons: tsvmm_native (N-API) and tsvmm_kvm_run (the per-exit KVM_RUN through the V8 API)
const addons = [rel('build/Release/tsvmm_native.node'), rel('build/Release/tsvmm_kvm_run.node')];
if (stale(addons, [rel('native'), rel('binding.gyp')])) {
  const args = ['rebuild'];
  // Build against the headers of the Node that runs us (an offline machine cannot download them).
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (fs.existsSync(path.join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
  run(bin('node-gyp'), args);
}

// 2. TypeScript, always: tsc is incremental (~2 s when nothing changed), and an mtime check on
// dist/.tsbuildinfo is fooled by `tsc --noEmit` (an editor's or a developer's type check), which
// rewrites that file without emitting, so dist/ would silently keep old code.
run(bin('tsc'), ['-p', 'tsconfig.json']);

// 2b. The start-time bundles (issue 10 item 4): bin/tsvmm.js loads dist/bundle/main.js, and each
// vCPU thread dist/bundle/vcpu-thread.js, each one file instead of ~50-80 modules (resolving,
// reading and compiling them is most of a thread's start). Built with esbuild from tsc's output;
// the bundles sit at the same depth as dist/src/<dir>/, so __dirname-relative paths (the addon,
// package.json, worker entries beside them) hold. zod and prom-client stay in node_modules: they
// load only with --config / --metrics-listen. Bundled on every build (~0.1 s).
bin('esbuild'); // fails with the `npm ci` hint when it is missing
const bundles = require(rel('node_modules/esbuild')).buildSync({
  write: false,
  entryPoints: ['cli/main', 'vmm/vcpu-thread', 'cli/host-revoker-thread'].map((e) => rel(`dist/src/${e}.js`)),
  outdir: rel('dist/bundle'),
  entryNames: '[name]',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['zod', 'prom-client', '*.node'],
  // Linked source maps chained through tsc's: coverage (c8) and stack traces point at src/*.ts.
  sourcemap: 'linked',
  logLevel: 'warning',
});
// A bundle is rewritten only when it changed: a rewrite invalidates its code cache, and a process
// starting meanwhile (a test, a bench run) could read a half-written file.
fs.mkdirSync(rel('dist/bundle'), { recursive: true });
for (const f of bundles.outputFiles) {
  if (fs.existsSync(f.path) && Buffer.compare(fs.readFileSync(f.path), Buffer.from(f.contents)) === 0) continue;
  const tmp = `${f.path}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, f.contents);
  fs.renameSync(tmp, f.path);
}

// 3. guests and 4. the C benchmark baseline
const guestBuild = rel('scripts/build-guests.js');
if (fs.existsSync(guestBuild)) require(guestBuild).buildGuests(root);
// (bench/kvm-fault.c -> build/bench/kvm-fault: the fault-latency floor, the same way)
for (const name of ['kvm-loop', 'kvm-fault']) {
  const benchSrc = rel(`bench/${name}.c`);
  const benchOut = rel(`build/bench/${name}`);
  if (fs.existsSync(benchSrc) && stale([benchOut], [benchSrc, rel('bench/boot-image.h')])) {
    fs.mkdirSync(path.dirname(benchOut), { recursive: true });
    run('cc', ['-O2', '-Wall', '-o', benchOut, benchSrc, '-lpthread']);
  }
}

// 5. the Linux guest's initramfs (guests/linux/bar-race.c with gcc -static, busybox-static) and, if
// /boot has Debian's kernel, its copy in .cache/linux (scripts/build-linux-guest.js; skipped with a
// note where busybox-static or a static libc is missing).
const linuxGuest = rel('scripts/build-linux-guest.js');
if (fs.existsSync(linuxGuest)) require(linuxGuest).buildLinuxGuest(root, { kernel: 'installed' });
