#!/usr/bin/env node
// Checks that imports in src/ point one way: a module may import from its own layer or a lower one,
// never a higher one (issue 12 item 2). `npm test` runs it before the test suites.
//
// LAYERS below is the one definition; README.md ("Layout") shows it as the lines renderLayers()
// prints, and this script fails when the two differ. Imports are read with TypeScript's own
// pre-processor (ts.preProcessFile: import/export-from, `import type`, require(), import()), so no
// hand-written parser can miss a form.
//
// KNOWN_DEBT lists upward imports that are tolerated for now, each with the issue item that removes
// it (none today: issue 12 item 2 removed the last). The script fails on any upward import not
// listed, and on a listed one that no longer exists, so the list can only shrink.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** Lowest first. A path ending in '/' is a directory (with its subdirectories); otherwise a file glob `*.ts` in that directory. */
const LAYERS = [
  { name: 'ground', paths: ['src/*.ts'], holds: 'little-endian bytes, log, steps, the futex mutex, the native addon' },
  { name: 'hypervisor', paths: ['src/hypervisor/'], holds: 'the hypervisor interface, vCPU register types' },
  { name: 'host', paths: ['src/kvm/', 'src/vfio/'], holds: 'KVM and VFIO: UAPI tables, exit decoding, ioctls' },
  { name: 'memory', paths: ['src/memory/'], holds: 'guest RAM, host mappings, the memory map (the only memslot writer)' },
  { name: 'devices', paths: ['src/devices/'], holds: 'serial, control device, PCI (host bridge, passthrough)' },
  { name: 'boot', paths: ['src/boot/'], holds: 'guest images, boot info page, long mode set-up' },
  { name: 'vmm', paths: ['src/vmm/'], holds: 'machine, dispatch, vCPU threads, VM' },
  { name: 'services', paths: ['src/metrics/', 'src/qmp/', 'src/sim/'], holds: 'metrics, QMP, the model checker' },
  { name: 'cli', paths: ['src/cli/'], holds: 'the command line' },
];

/** Upward imports tolerated today (importer -> imported, both from the repository root): none. */
const KNOWN_DEBT = [];

/** The README lines that state the layers, lowest first (checked verbatim). */
function renderLayers(layers = LAYERS) {
  const w = Math.max(...layers.map((l) => l.paths.join(' ').length));
  return layers.map((l, i) => `${i} ${l.name.padEnd(10)} ${l.paths.join(' ').padEnd(w)}  ${l.holds}`).join('\n');
}

function toPosix(p) {
  return p.split(path.sep).join('/');
}

/** Index of the layer holding `rel` (a repository-relative posix path), or -1. */
function layerOf(rel, layers) {
  let best = -1;
  let bestLen = -1;
  layers.forEach((l, i) => {
    for (const p of l.paths) {
      const hit = p.endsWith('/') ? rel.startsWith(p) : path.posix.dirname(rel) === path.posix.dirname(p) && rel.endsWith('.ts');
      if (hit && p.length > bestLen) {
        best = i;
        bestLen = p.length;
      }
    }
  });
  return best;
}

function listTs(dir) {
  const out = [];
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** The repository file a relative specifier names (x -> x.ts, x/index.ts), or null for a package. */
function resolveImport(fromFile, spec) {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const c of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  }
  return `${base}.ts`; // unresolved: reported under the name it would have
}

/**
 * Returns { errors: string[], edges: number } for the tree at `root`. Options (for tests):
 * layers, knownDebt, readme (path of a README to check for renderLayers(), or null to skip).
 */
function checkLayers(root, opts = {}) {
  const ts = require('typescript');
  const layers = opts.layers ?? LAYERS;
  const debt = opts.knownDebt ?? KNOWN_DEBT;
  const readme = opts.readme === undefined ? path.join(root, 'README.md') : opts.readme;
  const errors = [];
  const seenDebt = new Set();
  const debtKey = (from, to) => `${from} -> ${to}`;
  const debtByKey = new Map(debt.map((d) => [debtKey(d.from, d.to), d]));
  let edges = 0;

  for (const file of listTs(path.join(root, 'src'))) {
    const rel = toPosix(path.relative(root, file));
    const from = layerOf(rel, layers);
    if (from < 0) {
      errors.push(`${rel} is in no layer: add its directory to LAYERS in scripts/check-layers.js (and README.md)`);
      continue;
    }
    const imports = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true).importedFiles;
    for (const imp of imports) {
      const target = resolveImport(file, imp.fileName);
      if (target === null) continue;
      const trel = toPosix(path.relative(root, target));
      if (trel.startsWith('..') || !trel.startsWith('src/')) continue; // outside src/: not layered
      edges++;
      const to = layerOf(trel, layers);
      if (to < 0 || to <= from) continue; // same or lower layer (an unlayered target is reported as a file)
      const key = debtKey(rel, trel);
      if (debtByKey.has(key)) {
        seenDebt.add(key);
        continue;
      }
      errors.push(
        `${rel} (layer ${layers[from].name}) imports '${imp.fileName}' = ${trel} (layer ${layers[to].name}), a higher layer: ` +
          `move the shared part down instead (layers: scripts/check-layers.js)`,
      );
    }
  }
  for (const [key, d] of debtByKey) {
    if (!seenDebt.has(key)) {
      errors.push(`known upward import ${key} (${d.item}) no longer exists: remove it from KNOWN_DEBT in scripts/check-layers.js`);
    }
  }
  if (readme !== null) {
    const line = renderLayers(layers);
    if (!fs.existsSync(readme) || !fs.readFileSync(readme, 'utf8').includes(line)) {
      errors.push(
        `${toPosix(path.relative(root, readme))} does not state the layers as scripts/check-layers.js defines them; its Layout section needs the lines:\n${line}`,
      );
    }
  }
  return { errors, edges };
}

module.exports = { LAYERS, KNOWN_DEBT, checkLayers, renderLayers, layerOf };

if (require.main === module) {
  const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
  const { errors, edges } = checkLayers(root);
  if (errors.length > 0) {
    process.stderr.write(`check-layers: ${errors.length} problem(s):\n${errors.map((e) => `  ${e}`).join('\n')}\n`);
    process.exit(1);
  }
  const debt = KNOWN_DEBT.length === 0 ? '' : ` except the ${KNOWN_DEBT.length} listed as known debt`;
  process.stdout.write(`check-layers: ${edges} imports within src/ checked; none runs upward${debt}\n`);
}
