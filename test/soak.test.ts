// `race --soak`: its duration parser and growth verdict (no KVM), and a short soak on the real
// /dev/kvm (skipped, loudly, without it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { judgedRssKiB, parseDuration, soakFailed, soakFindings, soakVerdict, summariseReadings, type SoakSample } from '../src/cli/soak';
import { kvmSkip } from './kvm-available';
import { runRaceJson } from './cli';

test('durations: 90, 90s, 10m, 1h, 1h30m; anything else is refused', () => {
  assert.equal(parseDuration('--soak', '90'), 90);
  assert.equal(parseDuration('--soak', '90s'), 90);
  assert.equal(parseDuration('--soak', '10m'), 600);
  assert.equal(parseDuration('--soak', '1h'), 3600);
  assert.equal(parseDuration('--soak', '1h30m'), 5400);
  for (const bad of ['', '0', '0s', '10x', '-5', 'm', '8d', '200h']) assert.throws(() => parseDuration('--soak', bad), /--soak must be a duration/, bad);
});

const s = (atSeconds: number, rssKiB: number, fds = 20, threads = 10): SoakSample => ({
  atSeconds,
  rssKiB,
  rssAnonKiB: rssKiB,
  rssFileKiB: 0,
  fds,
  threads,
  mappings: 100,
});

test('the findings keep each part apart, so CI can tell an RSS-only verdict from fd or thread growth', () => {
  const rssOnly = soakFindings([s(0, 50_000), s(60, 100_000), s(120, 105_000), s(180, 111_000)]);
  assert.deepEqual(Object.keys(rssOnly), ['rssHigh']);
  const fdsToo = soakFindings([s(0, 50_000), s(60, 100_000, 20), s(120, 111_000, 23), s(180, 100_000, 20)]);
  assert.deepEqual(Object.keys(fdsToo).sort(), ['fds', 'rssHigh']);
  assert.deepEqual(Object.keys(soakFindings([s(0, 1), s(60, 1)])), ['tooShort']);
  assert.deepEqual(soakFindings([s(0, 50_000), s(60, 100_000), s(120, 101_000), s(180, 99_000)]), {});
});

test('the verdict ignores start-up, allows ±10 % RSS and 2 more fds/threads, and names what moved', () => {
  assert.match(soakVerdict([s(0, 50_000), s(60, 100_000)]), /^too short/);
  // Start-up growth (0 -> 60 s) does not count; later noise within the slack passes.
  assert.equal(soakVerdict([s(0, 50_000), s(60, 100_000), s(120, 109_000, 22, 12), s(180, 101_000)]), 'flat');
  assert.equal(
    soakVerdict([s(0, 50_000), s(60, 100_000), s(120, 105_000), s(180, 111_000)]),
    'growing: RSS 100000 -> 111000 KiB at 180 s (more than 10 % over the baseline at 60 s)',
  );
  assert.equal(soakVerdict([s(0, 1), s(60, 1, 20), s(120, 1, 23), s(180, 1, 21)]), 'growing: fds 20 -> 23 at 120 s');
  // Flat means within ±10 %: a fall of more than 10 % below the baseline fails too (and says so).
  assert.equal(soakVerdict([s(0, 50_000), s(60, 100_000), s(120, 91_000), s(180, 95_000)]), 'flat');
  assert.equal(
    soakVerdict([s(0, 50_000), s(60, 100_000), s(120, 89_000), s(180, 95_000)]),
    'not flat: RSS 100000 -> 89000 KiB at 120 s (more than 10 % under the baseline at 60 s)',
  );
  assert.equal(soakFailed('not flat: x'), true);
  assert.equal(soakFailed('growing: x'), true);
  assert.equal(soakFailed('flat'), false);
  assert.equal(soakFailed('too short: 2 sample(s)'), false);
  assert.equal(soakVerdict([s(0, 1), s(60, 1, 20, 10), s(120, 1, 20, 13)]), 'growing: threads 10 -> 13 at 120 s');
  // With 30 s samples the baseline is the one at 60 s, not at 30 s.
  assert.equal(soakVerdict([s(0, 50_000), s(30, 80_000), s(60, 100_000), s(90, 109_000), s(120, 105_000)]), 'flat');
  assert.match(
    soakVerdict([s(0, 50_000), s(30, 80_000), s(60, 100_000), s(90, 111_000), s(120, 105_000)]),
    /^growing: RSS 100000 -> 111000 KiB at 90 s \(more than 10 % over the baseline at 60 s\)$/,
  );
});

test("RSS is judged by each interval's median reading, so one reading on a GC saw-tooth peak does not fail a flat soak", () => {
  assert.deepEqual(summariseReadings([5, 1, 4, 2, 3]), { median: 3, min: 1, max: 5 });
  assert.deepEqual(summariseReadings([4, 1, 3, 2]), { median: 2, min: 1, max: 4 });
  assert.deepEqual(summariseReadings([7]), { median: 7, min: 7, max: 7 });
  const m = (atSeconds: number, rssKiB: number, rssMedianKiB: number): SoakSample => ({ ...s(atSeconds, rssKiB), rssMedianKiB });
  assert.equal(judgedRssKiB(s(60, 100)), 100);
  assert.equal(judgedRssKiB(m(60, 100, 90)), 90);
  // The instant at 120 s is 12 % over the baseline, the interval's median only 2 %: flat.
  assert.equal(soakVerdict([m(0, 50_000, 50_000), m(60, 100_000, 100_000), m(120, 112_000, 102_000), m(180, 99_000, 101_000)]), 'flat');
  // A median that moves fails, whatever the instants say.
  assert.equal(
    soakVerdict([m(0, 50_000, 50_000), m(60, 100_000, 100_000), m(120, 100_000, 106_000), m(180, 100_000, 111_000)]),
    'growing: RSS 100000 -> 111000 KiB at 180 s (more than 10 % over the baseline at 60 s)',
  );
});

// The mechanism, not the memory behaviour: 8 s is all JIT and heap warm-up, whose RSS may well rise
// 10 % (it did on a loaded host). Whether RSS stays flat is what a real soak (`npm run soak`) decides.
test('race --soak on KVM: samples at the interval, a verdict, status 1 exactly when it says growing', { skip: kvmSkip, timeout: 120_000 }, async () => {
  const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsvmm-soak-')), 'samples.jsonl');
  const { report, code, stderr } = await runRaceJson(['--soak', '8s', '--soak-sample', '2s', '--host-revoke', '300', '--soak-log', log]);
  assert.ok(report.soak, stderr);
  assert.ok(report.soak.samples.length >= 4, JSON.stringify(report.soak));
  assert.equal(report.soak.sampleSeconds, 2);
  assert.ok(report.wallSeconds >= 7 && report.wallSeconds < 30, `ran ${report.wallSeconds} s`);
  assert.equal(report.interrupted, undefined);
  assert.equal(report.vmDeaths, 0);
  assert.match(report.soak.verdict, /^(flat|growing: .+|not flat: .+)$/, JSON.stringify(report.soak));
  assert.equal(code, report.soak.verdict === 'flat' ? 0 : 1, stderr);
  // Each sample carries every thread's heap (main, vCPU 0 and 1, the host revoker) and the RSS parts.
  const last = report.soak.samples.at(-1)!;
  assert.deepEqual(Object.keys(last.heaps ?? {}).sort(), ['hostRevoker', 'main', 'vcpu0', 'vcpu1'], JSON.stringify(last));
  assert.ok(last.heaps!.vcpu0!.heapTotal! > 0 && last.rssAnonKiB > 0 && last.rssFileKiB > 0 && last.mappings > 0, JSON.stringify(last));
  // Each interval's RSS readings (every 2 s / 6 here): the sample's own and at least a few more, their median between min and max.
  for (const x of report.soak.samples.slice(1)) {
    assert.ok(x.rssReadings! >= 3, JSON.stringify(x));
    assert.ok(x.rssMinKiB! <= x.rssMedianKiB! && x.rssMedianKiB! <= x.rssMaxKiB! && x.rssMinKiB! <= x.rssKiB && x.rssKiB <= x.rssMaxKiB!, JSON.stringify(x));
  }
  // --soak-log: one JSON line per sample, the same samples as the report.
  const logged = fs
    .readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as SoakSample);
  assert.deepEqual(
    logged.map((x) => x.atSeconds),
    report.soak.samples.map((x) => x.atSeconds),
  );
});
