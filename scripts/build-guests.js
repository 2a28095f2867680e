// Builds the built-in guests: guests/<name>.S -> build/guests/<name>.bin (plus <name>.elf, kept for
// symbols and disassembly). First it generates build/guests/include/tsvmm.inc from the template
// guests/include/tsvmm.inc.in and asmConstants() (src/boot/boot-info.ts, compiled to dist/ by the
// tsc step that runs before this one), so the guests' constants are the TypeScript ones by
// construction. Each guest is assembled with GNU as (-I build/guests/include -I guests/include), linked with
// the common runtime (guests/include/runtime.S) by guests/guest.ld at 1 MiB, and flattened with
// objcopy -O binary. A guest is rebuilt only when its outputs are older than its source, the
// include directory, the linker script or this script. Called by scripts/build.js; also runnable
// alone: `node scripts/build-guests.js`.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const TOOLS = ['as', 'ld', 'objcopy'];

function mtime(p) {
  return fs.existsSync(p) ? fs.statSync(p).mtimeMs : 0;
}

function newestIn(dir) {
  let t = 0;
  if (!fs.existsSync(dir)) return t;
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    const st = fs.statSync(p);
    t = Math.max(t, st.isDirectory() ? newestIn(p) : st.mtimeMs);
  }
  return t;
}

function stale(outputs, newestInput) {
  return outputs.some((o) => !fs.existsSync(o) || mtime(o) < newestInput);
}

function checkTools() {
  const missing = [];
  for (const t of TOOLS) {
    try {
      execFileSync(t, ['--version'], { stdio: 'ignore' });
    } catch (e) {
      if (e && e.code === 'ENOENT') missing.push(t);
      else throw e;
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `build-guests: ${missing.join(', ')} not found on PATH; the built-in guests need GNU binutils ` +
        `(as, ld, objcopy for x86-64), e.g. \`apt-get install binutils\``,
    );
  }
}

function run(cmd, args, cwd) {
  try {
    execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    if (e && e.code === 'ENOENT') checkTools();
    throw new Error(`build-guests: \`${cmd} ${args.join(' ')}\` failed${e && e.status != null ? ` (exit ${e.status})` : ''}`);
  }
}

const INCLUDE_TEMPLATE = 'tsvmm.inc.in';
const CONSTANTS_MARKER = '@CONSTANTS@';

class IncludeTemplateError extends Error {}

/**
 * The text of tsvmm.inc: the template with its CONSTANTS_MARKER line replaced by one `.set` per
 * constant, in hex. The template may define no value itself, so every number a guest sees comes
 * from TypeScript.
 */
function renderInclude(template, constants) {
  const lines = template.split('\n');
  const marks = lines.filter((l) => l.trim() === CONSTANTS_MARKER).length;
  if (marks !== 1) throw new IncludeTemplateError(`build-guests: ${INCLUDE_TEMPLATE} must have exactly one ${CONSTANTS_MARKER} line (has ${marks})`);
  lines.forEach((l, i) => {
    if (/^\s*\.(set|equ|equiv|eqv)\b/.test(l.replace(/#.*/, ''))) {
      throw new IncludeTemplateError(
        `build-guests: ${INCLUDE_TEMPLATE}:${i + 1} defines a value by hand (${l.trim()}); add it to asmConstants() in src/boot/boot-info.ts instead`,
      );
    }
  });
  const names = Object.keys(constants);
  const width = Math.max(0, ...names.map((n) => n.length)) + 1;
  const sets = names.map((name) => {
    const v = constants[name];
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new IncludeTemplateError(`build-guests: constant name '${name}' is not an assembler symbol`);
    if (typeof v !== 'bigint' || v < 0n || v >= 1n << 64n) throw new IncludeTemplateError(`build-guests: ${name} = ${String(v)} is not a u64 bigint`);
    return `.set ${`${name},`.padEnd(width + 1)} 0x${v.toString(16)}`;
  });
  return lines.map((l) => (l.trim() === CONSTANTS_MARKER ? sets.join('\n') : l)).join('\n');
}

/** asmConstants() from the compiled TypeScript next to this script (dist/ of this checkout). */
function loadAsmConstants() {
  const file = path.resolve(__dirname, '../dist/src/boot/boot-info.js');
  if (!fs.existsSync(file)) throw new Error(`build-guests: ${file} is missing; run \`npm run build\` (tsc runs before the guests are built)`);
  return require(file).asmConstants();
}

/** Writes <root>/build/guests/include/tsvmm.inc when its text changes (so an unchanged one keeps its mtime and no guest rebuilds). */
function generateInclude(root, constants) {
  const template = path.join(root, 'guests', 'include', INCLUDE_TEMPLATE);
  const out = path.join(root, 'build', 'guests', 'include', 'tsvmm.inc');
  const text = renderInclude(fs.readFileSync(template, 'utf8'), constants);
  if (!fs.existsSync(out) || fs.readFileSync(out, 'utf8') !== text) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, text);
  }
  return out;
}

/** Names of the guests under guests/ (one per guests/<name>.S). */
function guestNames(root) {
  const dir = path.join(root, 'guests');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.S'))
    .map((f) => f.slice(0, -2))
    .sort();
}

/**
 * Builds every stale guest; returns the names it (re)built. `constants` defaults to this checkout's
 * asmConstants() (a test building a copy of guests/ elsewhere still uses this checkout's values).
 */
function buildGuests(root, constants) {
  const names = guestNames(root);
  if (names.length === 0) return [];
  const guestsDir = path.join(root, 'guests');
  const incDir = path.join(guestsDir, 'include');
  const generated = generateInclude(root, constants ?? loadAsmConstants());
  const linkerScript = path.join(guestsDir, 'guest.ld');
  const outDir = path.join(root, 'build', 'guests');
  const objDir = path.join(outDir, 'obj');
  const sharedNewest = Math.max(newestIn(incDir), mtime(generated), mtime(linkerScript), mtime(__filename));

  const work = names.filter((n) => {
    const src = path.join(guestsDir, `${n}.S`);
    return stale([path.join(outDir, `${n}.bin`), path.join(outDir, `${n}.elf`)], Math.max(sharedNewest, mtime(src)));
  });
  if (work.length === 0) return [];
  checkTools();
  fs.mkdirSync(objDir, { recursive: true });

  const asArgs = ['--64', '--fatal-warnings', '-I', path.dirname(generated), '-I', incDir];
  const runtimeSrc = path.join(incDir, 'runtime.S');
  const runtimeObj = path.join(objDir, 'runtime.o');
  if (stale([runtimeObj], sharedNewest)) run('as', [...asArgs, '-o', runtimeObj, runtimeSrc], root);

  for (const n of work) {
    const src = path.join(guestsDir, `${n}.S`);
    const obj = path.join(objDir, `${n}.o`);
    const elf = path.join(outDir, `${n}.elf`);
    const bin = path.join(outDir, `${n}.bin`);
    run('as', [...asArgs, '-o', obj, src], root);
    run('ld', ['-m', 'elf_x86_64', '-T', linkerScript, '--no-relax', '-nostdlib', '-static', '-o', elf, obj, runtimeObj], root);
    run('objcopy', ['-O', 'binary', elf, bin], root);
  }
  return work;
}

module.exports = { buildGuests, guestNames, renderInclude, generateInclude, IncludeTemplateError, CONSTANTS_MARKER };

if (require.main === module) {
  const built = buildGuests(path.resolve(__dirname, '..'));
  process.stdout.write(built.length ? `built guests: ${built.join(', ')}\n` : 'guests are up to date\n');
}
