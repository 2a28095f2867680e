// Progress on a terminal and the summary table at the end, for race, sim and bench.
//
// cli-progress draws the bar: a small, long-maintained library (one dependency) that redraws in
// place, throttles itself and clears its line on stop, which is all a counter of toggles or
// schedules needs; listr2 is built for lists of named tasks, which these commands do not have.
// cli-table3 draws the summary table (column widths, wrapping, box characters).
//
// The bar goes to stderr, so stdout carries only the report. It is drawn only when stdout is a
// terminal too: a report piped or redirected gets nothing extra, on either stream.
import { SingleBar, Presets } from 'cli-progress';
import Table from 'cli-table3';

export interface Progress {
  update(done: number): void;
  stop(): void;
}

const NONE: Progress = { update: () => {}, stop: () => {} };

/**
 * Whether progress is drawn: stdout and stderr both terminals, and stderr not promised to anything
 * else (--log-format json: one JSON object per line; --trace: one line per event). TSVMM_PROGRESS=0
 * turns it off.
 */
export function progressWanted(): boolean {
  const stderrFree = process.env.TSVMM_LOG_FORMAT !== 'json' && !process.env.TSVMM_TRACE;
  return process.stdout.isTTY === true && process.stderr.isTTY === true && stderrFree && process.env.TSVMM_PROGRESS !== '0';
}

/**
 * A progress bar for `total` units named `unit` (`total` undefined: a counter without a bar, for
 * work whose size is not known up front). Does nothing unless progressWanted().
 */
export function startProgress(label: string, unit: string, total: number | undefined): Progress {
  if (!progressWanted()) return NONE;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format:
        total === undefined
          ? `${label} {value} ${unit} | {duration_formatted}`
          : `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {duration_formatted}, ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      // Synchronous work (sim's explorer) gets no timer ticks: redraw from update() itself.
      synchronousUpdate: true,
    },
    Presets.shades_classic,
  );
  bar.start(total ?? 0, 0);
  return {
    update: (done) => bar.update(done),
    stop: () => bar.stop(),
  };
}

/** A two-column table of a report's figures (objects as compact JSON), for text output. */
export function summaryTable(title: string, rows: [string, unknown][]): string {
  const t = new Table({ head: [title, ''], style: { head: [], border: [], compact: true }, wordWrap: true, wrapOnWordBoundary: false, colWidths: [null, 72] });
  for (const [k, v] of rows) t.push([k, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)]);
  return `${t.toString()}\n`;
}
