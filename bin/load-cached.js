'use strict';
// Loads a CommonJS file the way require() does, but compiled through V8's code cache kept beside it
// (<file>.cache): Node 20 has no compile cache of its own (module.enableCompileCache came in 22), and
// compiling the CLI bundle is a large part of tsvmm's start (issue 10 item 4). When the cache is
// missing, belongs to another version of the file, or V8 rejects it (another V8 or flags), the file
// is compiled as usual and the cache is (re)written when the thread exits, holding the functions this
// run compiled. Any failure to write it is ignored: the cache only saves time.
//
// The cache starts with the file's size, mtime and inode: V8 checks only the source's length, so a
// same-length edit would otherwise run stale code. (scripts/build.js rewrites a bundle only when its
// content changed.)
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');
const { threadId } = require('node:worker_threads');

function loadCached(file) {
  const cacheFile = `${file}.cache`;
  const st = fs.statSync(file);
  const key = Buffer.from(`${st.size}:${st.mtimeMs}:${st.ino}\n`);
  let cachedData;
  try {
    const c = fs.readFileSync(cacheFile);
    if (c.length > key.length && c.subarray(0, key.length).equals(key)) cachedData = c.subarray(key.length);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  Module._cache[file] = m;
  const req = (id) => m.require(id);
  req.resolve = (request, options) => Module._resolveFilename(request, m, false, options);
  req.cache = Module._cache;
  req.main = require.main;
  script.runInThisContext().call(m.exports, m.exports, req, m, file, path.dirname(file));
  m.loaded = true;
  if (cachedData === undefined || script.cachedDataRejected) {
    process.once('exit', () => {
      try {
        const tmp = `${cacheFile}.${process.pid}-${threadId}`;
        fs.writeFileSync(tmp, Buffer.concat([key, script.createCachedData()]));
        fs.renameSync(tmp, cacheFile);
      } catch {
        // a read-only tree or a full disk: the next start compiles again
      }
    });
  }
  return m.exports;
}

module.exports = { loadCached };
