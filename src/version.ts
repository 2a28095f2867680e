// tsvmm's version, from package.json (one place: `tsvmm --version`, QMP's greeting and query-version).
import fs from 'node:fs';
import path from 'node:path';

export interface TsvmmVersion {
  major: number;
  minor: number;
  micro: number;
  /** What QMP reports as `package`, e.g. "tsvmm 0.1.0". */
  package: string;
  text: string;
}

export function packageVersion(): TsvmmVersion {
  // dist/src/ -> the package root
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  const [major = 0, minor = 0, micro = 0] = pkg.version.split('.').map((p) => Number.parseInt(p, 10) || 0);
  return { major, minor, micro, package: `tsvmm ${pkg.version}`, text: pkg.version };
}
