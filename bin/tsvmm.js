#!/usr/bin/env node
'use strict';
// Signal handlers first: a SIGINT/SIGTERM/SIGHUP while the rest loads must not kill silently.
require('../dist/src/cli/host-signals.js').installHostSignalHandlers();
// Then, for a command that runs vCPUs, their first worker thread: its start (~20 ms: a V8 isolate
// and Node's bootstrap) overlaps reading the CLI and building the VM (issue 10 item 4).
const { subcommandOf, STARTS_VCPUS } = require('../dist/src/cli/command-name.js');
const command = subcommandOf(process.argv);
if (STARTS_VCPUS.includes(command)) require('../dist/src/vmm/vcpu-worker.js').prespawnVcpuWorker(require.resolve('./vcpu-thread.js'));
// glibc malloc settings (src/cli/process-memory.ts), made while that worker boots: loading the addon
// here costs ~2 ms, which must not delay the worker's start.
require('../dist/src/cli/process-memory.js').tuneProcessMemory();
// The CLI as one bundled file (scripts/build.js): it starts faster than its ~80 modules one by one.
require('./load-cached.js').loadCached(require.resolve('../dist/bundle/main.js')).main(process.argv);
