'use strict';
// A vCPU worker thread's script when tsvmm runs from bin/tsvmm.js: the bundled thread
// (dist/bundle/vcpu-thread.js) through V8's code cache (load-cached.js).
require('./load-cached.js').loadCached(require.resolve('../dist/bundle/vcpu-thread.js'));
