// src/errno.ts is the one place errno numbers and messages are written down: each must be what the
// C library says on this host (the native addon compiles against <errno.h> and strerror()).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as errno from '../src/errno';
import { native } from '../src/native';

const NUMBERS = Object.entries(errno as Record<string, unknown>).filter((e): e is [string, number] => /^E[A-Z]+$/.test(e[0]) && typeof e[1] === 'number');

test("every errno number is <errno.h>'s (native addon constants)", () => {
  const c = native().constants as Record<string, number | undefined>;
  assert.ok(NUMBERS.length >= 10, `${NUMBERS.length} numbers exported`);
  for (const [name, value] of NUMBERS) {
    assert.notEqual(c[name], undefined, `${name}: the addon exports it, so it is checked`);
    assert.equal(value, c[name], name);
  }
});

test("every errno message is the C library's strerror()", () => {
  for (const [name, value] of NUMBERS) assert.equal(errno.describeErrnoName(value), native().strerror(value), name);
  assert.equal(errno.describeErrnoName(-14), native().strerror(14), 'a negative return is described by its magnitude');
  assert.equal(errno.describeErrnoName(4095), 'errno 4095');
});
