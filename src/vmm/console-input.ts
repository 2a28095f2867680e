// Keyboard input for a Linux guest's serial console: bytes from the host's stdin go into the 16550's
// receive FIFO (under the device lock, like any device access), which raises IRQ 4. On a terminal,
// stdin is put in raw mode so keys reach the guest as typed (Ctrl-C included); Ctrl-A then x stops
// the VM, as in QEMU's -nographic. A pipe is forwarded as is (tests drive the shell that way).
import type { Vm } from './vm';

const CTRL_A = 0x01;
const RETRY_MS = 5;

export function attachConsoleInput(vm: Vm, stdin: NodeJS.ReadStream, onQuit: () => void): { detach(): void } {
  const uart = vm.machine.linux?.uart;
  if (!uart) return { detach() {} };
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  let backlog: Uint8Array[] = [];
  let timer: NodeJS.Timeout | undefined;
  let escape = false;
  const flush = () => {
    timer = undefined;
    while (backlog.length > 0) {
      const chunk = backlog[0]!;
      const n = vm.machine.lock.with(() => uart.receive(chunk));
      if (n < chunk.length) {
        backlog[0] = chunk.subarray(n);
        timer = setTimeout(flush, RETRY_MS); // the FIFO is full: the guest has not read it yet
        return;
      }
      backlog.shift();
    }
  };
  const onData = (d: Buffer) => {
    let bytes: Uint8Array = d;
    if (tty) {
      const out: number[] = [];
      for (const b of d) {
        if (escape) {
          escape = false;
          if (b === 0x78 /* x */) return onQuit();
          if (b !== CTRL_A) out.push(CTRL_A);
          out.push(b);
        } else if (b === CTRL_A) escape = true;
        else out.push(b);
      }
      bytes = Uint8Array.from(out);
    }
    if (bytes.length === 0) return;
    backlog.push(bytes);
    if (!timer) flush();
  };
  stdin.on('data', onData);
  stdin.on('error', () => {});
  return {
    detach() {
      stdin.off('data', onData);
      if (timer) clearTimeout(timer);
      backlog = [];
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      stdin.unref?.();
    },
  };
}
