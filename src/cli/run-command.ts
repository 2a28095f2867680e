// `tsvmm run`: boot a guest, serial/console on stdout, exit with the guest's status.
import { InvalidArgumentError, type Command } from 'commander';
import { Vm } from '../vmm/vm';
import { parseMemOption } from './size';
import { onHostSignal } from './host-signals';
import { parseIntOption, reportErrorAndExit } from './common';
import { QmpServer, checkSocketPath } from '../qmp/server';
import { vmQmpTarget, terminalEvents, type ShutdownCause } from '../qmp/vm-target';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('boot a guest; its serial and console output go to stdout; exit status = the guest\'s')
    .requiredOption('--guest <name|file>', 'a built-in guest (hello, pio-loop, mmio-loop, race, ...) or a guest image file')
    .option('--vcpus <n>', 'number of vCPUs', '1')
    .option('--mem <size>', 'guest RAM (e.g. 256M, 1G)', '64M')
    .option('--iterations <n>', 'loop count for the loop guests', '100000')
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .option('--qmp <path>', 'a QMP (QEMU Machine Protocol) server on this unix socket; a VM that stops in internal-error or guest-panicked then stays up for inspection until QMP quit')
    .option('--paused', 'start with the vCPUs stopped in prelaunch until QMP cont (QEMU\'s -S); needs --qmp')
    .action(async (o: { guest: string; vcpus: string; mem: string; iterations: string; kvm: string; qmp?: string; paused?: boolean }) => {
      let vm: Vm | undefined;
      let cause: ShutdownCause = 'guest-shutdown';
      let quit: () => void = () => {};
      const quitRequested = new Promise<void>((resolve) => (quit = resolve));
      // Before Vm.create: a signal that arrives while it runs is delivered after it (QEMU exits 0).
      let signalled = false;
      const releaseSignals = onHostSignal(() => {
        signalled = true;
        cause = 'host-signal';
        vm?.requestShutdown(0);
        quit();
      });
      try {
        if (o.paused && !o.qmp) throw new InvalidArgumentError('--paused needs --qmp: nothing else could start the vCPUs');
        if (o.qmp) checkSocketPath(o.qmp); // bad input fails before KVM is touched
        vm = Vm.create({
          machine: { ramBytes: parseMemOption(o.mem), vcpus: parseIntOption('--vcpus', o.vcpus, 1, 64), passthrough: [], policy: 'tsvmm', barOrder: 'unmap-first' },
          guest: o.guest,
          params: { iterations: parseIntOption('--iterations', o.iterations, 0, 2 ** 31) },
          kvmPath: o.kvm,
        });
      } catch (e) {
        reportErrorAndExit(e);
      }
      vm!.start({ paused: o.paused === true });
      if (signalled) vm!.requestShutdown(0);
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
          if (!signalled) {
            process.stderr.write(`tsvmm: VM stopped in ${r.state}; QMP stays up on ${qmp.path} until quit\n`);
            await quitRequested;
          }
          // A host signal ends the inspection as QEMU's does: with a SHUTDOWN event.
          if (signalled) for (const [name, data] of terminalEvents('shutdown', 'host-signal')) qmp.broadcast(name, data);
        }
        await qmp.close();
      }
      releaseSignals();
      const lost = vm!.consoleOutput.summary();
      if (lost) process.stderr.write(`tsvmm: ${lost}\n`);
      vm!.close();
      if (r.state === 'shutdown') process.exitCode = r.exitCode;
      if (r.state !== 'shutdown' || r.exitCode !== 0) {
        process.stderr.write(`tsvmm: VM stopped, run state ${r.state}, exit status ${r.state === 'shutdown' ? r.exitCode : 1}\n`);
        if (r.state !== 'shutdown') process.exitCode = 1;
      }
    });
}
