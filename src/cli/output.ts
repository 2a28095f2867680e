// Writing a command's report where the user sent it, without Node's "Unhandled 'error' event"
// trace when that fails: a reader that closed the pipe (`| head -1`: EPIPE), a full disk
// (`> /dev/full`: ENOSPC). The failure becomes one line on stderr and exit status 1.
import type { Writable } from 'node:stream';

const REASONS: Record<string, string> = {
  EPIPE: 'the reader closed the pipe',
  ENOSPC: 'no space left on the device',
  EAGAIN: 'the output would block',
  EIO: 'input/output error',
};

export async function writeOutput(stream: Writable, name: string, text: string, what: string): Promise<boolean> {
  let error: NodeJS.ErrnoException | undefined;
  const onError = (e: NodeJS.ErrnoException) => (error ??= e);
  stream.on('error', onError);
  await new Promise<void>((resolve) => {
    try {
      stream.write(text, (e) => {
        if (e) onError(e);
        resolve();
      });
    } catch (e) {
      // A file stdout (SyncWriteStream) throws from write() itself.
      onError(e as NodeJS.ErrnoException);
      resolve();
    }
  });
  // A later 'error' from the same failure must not become an uncaught exception: keep a listener.
  stream.off('error', onError);
  stream.on('error', () => {});
  if (!error) return true;
  const code = error.code ?? 'error';
  process.stderr.write(`tsvmm: cannot write ${what} to ${name}: ${code}${REASONS[code] ? ` (${REASONS[code]})` : ` (${error.message})`}\n`);
  process.exitCode = 1;
  return false;
}
