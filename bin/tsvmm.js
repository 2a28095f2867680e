#!/usr/bin/env node
'use strict';
// Signal handlers first: a SIGINT/SIGTERM/SIGHUP while the rest loads must not kill silently.
require('../dist/src/cli/host-signals.js').installHostSignalHandlers();
require('../dist/src/cli/main.js').main(process.argv);
