#!/usr/bin/env node
// One line summing up a `tsvmm race --soak ... --json` report (for CI's summary and for people):
// the verdict, RSS at the baseline and its range after it, fds and threads, the race's counts.
// Usage: node scripts/soak-summary.js REPORT.json   (prints the line; status 1 if the report is unreadable)
'use strict';
const fs = require('node:fs');
const path = require('node:path');
// The built soak rules (scripts/soak.sh and .ci/run build first).
const { judgedRssKiB, soakBaselineIndex } = require(path.join(__dirname, '../dist/src/cli/soak.js'));

const file = process.argv[2];
let r;
try {
  r = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (e) {
  console.log(`tsvmm soak: no report (${file}: ${e.message})`);
  process.exit(1);
}
const s = r.soak;
if (!s || s.samples.length === 0) {
  console.log(`tsvmm soak: the report has no soak samples (status ${r.exitStatus}, run state ${r.runState})`);
  process.exit(0);
}
// The verdict's baseline and the RSS it judges (each interval's median reading), as the soak decides them.
const base = s.samples[soakBaselineIndex(s.samples)];
const after = s.samples.filter((x) => x.atSeconds >= base.atSeconds);
const judged = judgedRssKiB;
const baseRss = judged(base);
const mib = (k) => (k / 1024).toFixed(1);
const pct = (k) => `${k >= baseRss ? '+' : ''}${(((k - baseRss) / baseRss) * 100).toFixed(1)} %`;
const rss = after.map(judged);
const peak = Math.max(...after.map((x) => x.rssMaxKiB ?? x.rssKiB));
const range = (f) => `${Math.min(...after.map(f))}..${Math.max(...after.map(f))}`;
const last = s.samples[s.samples.length - 1];
console.log(
  `tsvmm soak ${last.atSeconds >= 120 ? `${Math.round(last.atSeconds / 60)} min` : `${last.atSeconds} s`}: ${s.verdict}; RSS (median of each interval) ${mib(baseRss)} MiB at ${base.atSeconds} s, then ${mib(Math.min(...rss))}..${mib(Math.max(...rss))} MiB (${pct(Math.min(...rss))}..${pct(Math.max(...rss))}), ${mib(judged(last))} MiB at the end, highest reading ${mib(peak)} MiB; ` +
    `fds ${range((x) => x.fds)}, threads ${range((x) => x.threads)}; ${r.toggles} toggles, ${r.hostRevocations} host revocations, ${r.vmDeaths} VM deaths, ${r.badValues} bad values` +
    (s.workerFullGcs && s.workerFullGcs.count > 0
      ? `; ${s.workerFullGcs.count} worker full GCs, ${(s.workerFullGcs.totalPauseMs / s.workerFullGcs.count).toFixed(1)} ms each on average`
      : ''),
);
