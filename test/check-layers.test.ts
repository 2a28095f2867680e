// scripts/check-layers.js: on this repository (clean apart from its listed debt) and on fixture
// trees that break each rule: an upward import, a listed debt that is gone, a file in no layer,
// a README that does not state the layers, and the exit status of the command itself.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Layer {
  name: string;
  paths: string[];
  holds: string;
}
interface Debt {
  from: string;
  to: string;
  item: string;
}
const ROOT = path.resolve(__dirname, '../..');
const SCRIPT = path.join(ROOT, 'scripts/check-layers.js');
const layersMod = require(SCRIPT) as {
  LAYERS: Layer[];
  KNOWN_DEBT: Debt[];
  checkLayers(root: string, opts?: { layers?: Layer[]; knownDebt?: Debt[]; readme?: string | null }): { errors: string[]; edges: number };
  renderLayers(layers?: Layer[]): string;
};

const LAYERS: Layer[] = [
  { name: 'ground', paths: ['src/*.ts'], holds: 'helpers' },
  { name: 'low', paths: ['src/low/'], holds: 'low' },
  { name: 'high', paths: ['src/high/'], holds: 'high' },
];

let tmp = '';
function tree(files: Record<string, string>): string {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-layers-'));
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
    fs.writeFileSync(path.join(tmp, rel), text);
  }
  return tmp;
}
afterEach(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = '';
});

const CLEAN = {
  'src/util.ts': "import fs from 'node:fs';\nexport const u = fs;\n",
  'src/low/a.ts': "import { u } from '../util';\nexport const a = u;\n",
  'src/low/deep/b.ts': "export { a } from '../a';\n",
  'src/high/c.ts': "import type { a } from '../low/a';\nimport { u } from '../util';\nexport const c = u;\n",
};

describe('check-layers', () => {
  test('this repository: no upward import beyond the listed debt, every listed one still present, README states the layers', () => {
    const { errors, edges } = layersMod.checkLayers(ROOT);
    assert.deepEqual(errors, []);
    assert.ok(edges > 100, `found ${edges} imports in src/ (the scan works)`);
    for (const d of layersMod.KNOWN_DEBT) assert.match(d.item, /^issue 12 item \d/, `${d.from} -> ${d.to} names the item that removes it`);
  });

  test('imports down and sideways pass', () => {
    assert.deepEqual(layersMod.checkLayers(tree(CLEAN), { layers: LAYERS, knownDebt: [], readme: null }).errors, []);
  });

  test('an upward import fails, in every import form, with both files and layers named', () => {
    const forms = [
      "import { c } from '../high/c';",
      "import type { c } from '../high/c';",
      "export { c } from '../high/c';",
      "const m = require('../high/c');",
      "async function f() { return import('../high/c'); }",
    ];
    for (const form of forms) {
      const root = tree({ ...CLEAN, 'src/low/a.ts': `${form}\nexport const a = 1;\n` });
      const { errors } = layersMod.checkLayers(root, { layers: LAYERS, knownDebt: [], readme: null });
      assert.equal(errors.length, 1, `${form}: ${errors.join('; ')}`);
      assert.match(errors[0]!, /^src\/low\/a\.ts \(layer low\) imports '\.\.\/high\/c' = src\/high\/c\.ts \(layer high\), a higher layer/);
      fs.rmSync(root, { recursive: true, force: true });
    }
    // From the ground floor too (a file glob, not a directory).
    const root = tree({ ...CLEAN, 'src/util.ts': "import { a } from './low/a';\nexport const u = a;\n", 'src/low/a.ts': 'export const a = 1;\n' });
    assert.match(layersMod.checkLayers(root, { layers: LAYERS, knownDebt: [], readme: null }).errors.join('\n'), /src\/util\.ts \(layer ground\) imports/);
  });

  test('a listed upward import passes; once it is gone the list must shrink', () => {
    const debt = [{ from: 'src/low/a.ts', to: 'src/high/c.ts', item: 'issue 0 item 0' }];
    const upward = tree({ ...CLEAN, 'src/low/a.ts': "import type { c } from '../high/c';\nexport const a = 1;\n" });
    assert.deepEqual(layersMod.checkLayers(upward, { layers: LAYERS, knownDebt: debt, readme: null }).errors, []);
    fs.rmSync(upward, { recursive: true, force: true });
    const fixed = tree(CLEAN);
    const { errors } = layersMod.checkLayers(fixed, { layers: LAYERS, knownDebt: debt, readme: null });
    assert.deepEqual(errors, [
      'known upward import src/low/a.ts -> src/high/c.ts (issue 0 item 0) no longer exists: remove it from KNOWN_DEBT in scripts/check-layers.js',
    ]);
  });

  test('a file in no layer fails', () => {
    const root = tree({ ...CLEAN, 'src/stray/x.ts': 'export const x = 1;\n' });
    assert.match(layersMod.checkLayers(root, { layers: LAYERS, knownDebt: [], readme: null }).errors.join('\n'), /src\/stray\/x\.ts is in no layer/);
  });

  test('a README that does not state the layers fails', () => {
    const root = tree({ ...CLEAN, 'README.md': `# x\n\n${layersMod.renderLayers(LAYERS).replace('high', 'top')}\n` });
    assert.match(layersMod.checkLayers(root, { layers: LAYERS, knownDebt: [] }).errors.join('\n'), /README\.md does not state the layers/);
    fs.writeFileSync(path.join(root, 'README.md'), `# x\n\n${layersMod.renderLayers(LAYERS)}\n`);
    assert.deepEqual(layersMod.checkLayers(root, { layers: LAYERS, knownDebt: [] }).errors, []);
  });

  test('the command exits 1 naming the upward import, 0 on this repository', () => {
    const root = tree({ 'README.md': layersMod.renderLayers(), 'src/memory/m.ts': "import { x } from '../cli/x';\n", 'src/cli/x.ts': 'export const x = 1;\n' });
    const bad = spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' });
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /src\/memory\/m\.ts \(layer memory\) imports '\.\.\/cli\/x' = src\/cli\/x\.ts \(layer cli\)/);
    const good = spawnSync(process.execPath, [SCRIPT, ROOT], { encoding: 'utf8' });
    assert.equal(good.status, 0, good.stderr);
  });
});
