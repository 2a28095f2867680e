'use strict';
// Loads a CommonJS file the way require() does, but compiled through V8's code cache kept beside it
// (<file>.cache): Node 20 has no compile cache of its own (module.enableCompileCache came in 22), and
// compiling the CLI bundle is a large part of tsvmm's start (issue 10 item 4). When the cache is
// missing or V8 rejects it (another V8, another build of the file), the file is compiled as usual and
// the cache is (re)written when the thread exits, with the functions this run compiled. Any failure
// to write it is ignored: the cache only saves time.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');
const { threadId } = require('node:worker_threads');

function loadCached(file) {
  const cacheFile = `${file}.cache`;
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
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
        fs.writeFileSync(tmp, script.createCachedData());
        fs.renameSync(tmp, cacheFile);
      } catch {
        // a read-only tree or a full disk: the next start compiles again
      }
    });
  }
  return m.exports;
}

module.exports = { loadCached };
