// The vCPU loop's chores schedule (src/vmm/loop-chores.ts): every CHORE_INTERVAL exits, and the
// bench's steady-state mark at exactly its exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHORE_INTERVAL, nextChoresAt } from '../src/vmm/loop-chores';

/** The iterations at which a loop that starts at 0 does its chores, up to `end`. */
function schedule(mark: number, end: number): number[] {
  const at: number[] = [];
  for (let n = nextChoresAt(0, mark); n <= end; n = nextChoresAt(n, mark)) at.push(n);
  return at;
}

test('chores come every CHORE_INTERVAL exits, and at the mark when there is one', () => {
  assert.equal(CHORE_INTERVAL, 1024);
  assert.deepEqual(schedule(-1, 4096), [1024, 2048, 3072, 4096]);
  assert.deepEqual(schedule(2500, 4096), [1024, 2048, 2500, 3072, 4096]);
  assert.deepEqual(schedule(2048, 4096), [1024, 2048, 3072, 4096], 'a mark on an interval is one stop');
  assert.deepEqual(schedule(1, 2048), [1, 1024, 2048]);
  for (let mark = 1; mark < 5000; mark += 37) assert.ok(schedule(mark, 5000).includes(mark), `mark ${mark} is reached`);
});

test('after an iteration that is not on the schedule (a loop resumed elsewhere), the next chores are still ahead', () => {
  for (const n of [0, 5, 1023, 1024, 1025, 99_999]) {
    const next = nextChoresAt(n, -1);
    assert.ok(next > n && next - n <= CHORE_INTERVAL && next % CHORE_INTERVAL === 0, `after ${n}: ${next}`);
  }
  assert.equal(nextChoresAt(10, 5), 1024, 'a mark already passed is not scheduled');
});
