// The errno values tsvmm names (Linux x86-64), and errno -> the C library's message without the
// native layer (the simulator and unit tests run without it). Only the values a VMM reports;
// others fall back to "errno N". The one place these numbers are written down.

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const EFAULT = 14;
export const EEXIST = 17;
export const EINVAL = 22;
export const EHWPOISON = 133;

const MESSAGES: Record<number, string> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  4: 'Interrupted system call',
  5: 'Input/output error',
  6: 'No such device or address',
  9: 'Bad file descriptor',
  11: 'Resource temporarily unavailable',
  12: 'Cannot allocate memory',
  13: 'Permission denied',
  14: 'Bad address',
  16: 'Device or resource busy',
  17: 'File exists',
  19: 'No such device',
  22: 'Invalid argument',
  25: 'Inappropriate ioctl for device',
  38: 'Function not implemented',
  133: 'Memory page has hardware error',
};

export function describeErrnoName(errno: number): string {
  const e = Math.abs(errno);
  return MESSAGES[e] ?? `errno ${e}`;
}
