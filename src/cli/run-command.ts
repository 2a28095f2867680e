// `tsvmm run`: boot a guest, serial/console on stdout, exit with the guest's status.
import { InvalidArgumentError, type Command } from 'commander';
import { Vm } from '../vmm/vm';
import { parseSize } from './size';
import { parseIntOption, reportErrorAndExit } from './common';
import { QmpServer, checkSocketPath } from '../qmp/server';
import { vmQmpTarget, terminalEvents, type ShutdownCause } from '../qmp/vm-target';
import { collect, parseDeviceOption } from './linux-options';
import { DEFAULT_CMDLINE } from '../boot/linux/linux-boot';
import { attachConsoleInput } from '../vmm/console-input';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('boot a guest; its serial and console output go to stdout; exit status = the guest\'s')
    .option('--guest <name|file>', 'a built-in guest (hello, pio-loop, mmio-loop, race, ...) or a guest image file')
    .option('--kernel <bzImage>', 'boot a Linux kernel (bzImage, e.g. Debian\'s vmlinuz) instead of --guest')
    .option('--initrd <file>', 'with --kernel: the initramfs')
    .option('--cmdline <string>', `with --kernel: the kernel command line (default: ${DEFAULT_CMDLINE})`)
    .option('--device <spec>', 'with --kernel: a passthrough PCI function, shm or vfio,host=DDDD:BB:DD.F (repeatable)', collect)
    .option('--vcpus <n>', 'number of vCPUs', '1')
    .option('--mem <size>', 'guest RAM (e.g. 256M, 1G; default 64M, with --kernel 512M)')
    .option('--iterations <n>', 'loop count for the loop guests', '100000')
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .option('--qmp <path>', 'a QMP (QEMU Machine Protocol) server on this unix socket; a VM that stops in internal-error or guest-panicked then stays up for inspection until QMP quit')
    .option('--paused', 'start with the vCPUs stopped in prelaunch until QMP cont (QEMU\'s -S); needs --qmp')
    .action(async (o: { guest?: string; kernel?: string; initrd?: string; cmdline?: string; device?: string[]; vcpus: string; mem?: string; iterations: string; kvm: string; qmp?: string; paused?: boolean }) => {
      let vm: Vm | undefined;
      try {
        if (o.paused && !o.qmp) throw new InvalidArgumentError('--paused needs --qmp: nothing else could start the vCPUs');
        if (o.guest === undefined && o.kernel === undefined) throw new InvalidArgumentError('give --guest <name|file> or --kernel <bzImage>');
        if (o.guest !== undefined && o.kernel !== undefined) throw new InvalidArgumentError('--guest and --kernel are alternatives: give one');
        if (o.kernel === undefined && (o.initrd !== undefined || o.cmdline !== undefined || o.device !== undefined)) throw new InvalidArgumentError('--initrd, --cmdline and --device need --kernel');
        if (o.qmp) checkSocketPath(o.qmp); // bad input fails before KVM is touched
        const vcpus = parseIntOption('--vcpus', o.vcpus, 1, 64);
        if (o.kernel !== undefined) {
          vm = Vm.createLinux({
            machine: { ramBytes: parseSize(o.mem ?? '512M'), vcpus, passthrough: (o.device ?? []).map(parseDeviceOption), policy: 'tsvmm', barOrder: 'unmap-first' },
            linux: { kernelPath: o.kernel, initrdPath: o.initrd, cmdline: o.cmdline ?? DEFAULT_CMDLINE },
            kvmPath: o.kvm,
          });
        } else {
          vm = Vm.create({
            machine: { ramBytes: parseSize(o.mem ?? '64M'), vcpus, passthrough: [], policy: 'tsvmm', barOrder: 'unmap-first' },
            guest: o.guest!,
            params: { iterations: parseIntOption('--iterations', o.iterations, 0, 2 ** 31) },
            kvmPath: o.kvm,
          });
        }
      } catch (e) {
        reportErrorAndExit(e);
      }
      let cause: ShutdownCause = 'guest-shutdown';
      let quit: () => void = () => {};
      const quitRequested = new Promise<void>((resolve) => (quit = resolve));
      const onSignal = () => {
        process.stderr.write('tsvmm: terminating on signal SIGINT\n');
        cause = 'host-signal';
        vm!.requestShutdown(130);
        quit();
      };
      process.once('SIGINT', onSignal);
      vm!.start({ paused: o.paused === true });
      const input = vm!.machine.linux ? attachConsoleInput(vm!, process.stdin, () => onSignal()) : undefined;
      let qmp: QmpServer | undefined;
      if (o.qmp) {
        // Listen once the vCPU threads exist, so the first query-cpus-fast already has their ids.
        await vm!.threadsStarted();
        try {
          qmp = await QmpServer.listen(
            o.qmp,
            vmQmpTarget(vm!, {
              emit: (name, data) => qmp?.broadcast(name, data),
              onQuit: () => {
                cause = 'host-qmp-quit';
                vm!.requestShutdown(0);
                quit();
              },
            }),
          );
        } catch (e) {
          // The path was checked before the VM was built; this is a race with another process.
          vm!.requestShutdown(1);
          await vm!.wait();
          vm!.close();
          reportErrorAndExit(e);
        }
      }
      const r = await vm!.wait();
      if (qmp) {
        for (const [name, data] of terminalEvents(r.state, cause)) qmp.broadcast(name, data);
        if (r.state !== 'shutdown') {
          // QEMU keeps a VM stopped in internal-error (or panicked) for management to inspect.
          process.stderr.write(`tsvmm: VM stopped in ${r.state}; QMP stays up on ${qmp.path} until quit\n`);
          await quitRequested;
        }
        await qmp.close();
      }
      process.off('SIGINT', onSignal);
      input?.detach();
      vm!.close();
      if (r.state === 'shutdown') process.exitCode = r.exitCode;
      if (r.state !== 'shutdown' || r.exitCode !== 0) {
        process.stderr.write(`tsvmm: VM stopped, run state ${r.state}, exit status ${r.state === 'shutdown' ? r.exitCode : 1}\n`);
        if (r.state !== 'shutdown') process.exitCode = 1;
      }
    });
}
