// `tsvmm run`: boot a guest, serial/console on stdout, exit with the guest's status.
import type { Command } from 'commander';
import { Vm } from '../vmm/vm';
import { parseSize } from './size';
import { parseIntOption, reportErrorAndExit } from './common';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('boot a guest; its serial and console output go to stdout; exit status = the guest\'s')
    .requiredOption('--guest <name|file>', 'a built-in guest (hello, pio-loop, mmio-loop, race, ...) or a guest image file')
    .option('--vcpus <n>', 'number of vCPUs', '1')
    .option('--mem <size>', 'guest RAM (e.g. 256M, 1G)', '64M')
    .option('--iterations <n>', 'loop count for the loop guests', '100000')
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .action(async (o: { guest: string; vcpus: string; mem: string; iterations: string; kvm: string }) => {
      let vm: Vm | undefined;
      try {
        vm = Vm.create({
          machine: { ramBytes: parseSize(o.mem), vcpus: parseIntOption('--vcpus', o.vcpus, 1, 64), passthrough: [], policy: 'tsvmm', barOrder: 'unmap-first' },
          guest: o.guest,
          params: { iterations: parseIntOption('--iterations', o.iterations, 0, 2 ** 31) },
          kvmPath: o.kvm,
        });
      } catch (e) {
        reportErrorAndExit(e);
      }
      const onSignal = () => {
        process.stderr.write('tsvmm: terminating on signal SIGINT\n');
        vm!.requestShutdown(130);
      };
      process.once('SIGINT', onSignal);
      vm!.start();
      const r = await vm!.wait();
      process.off('SIGINT', onSignal);
      vm!.close();
      if (r.state === 'shutdown') process.exitCode = r.exitCode;
      if (r.state !== 'shutdown' || r.exitCode !== 0) {
        process.stderr.write(`tsvmm: VM stopped, run state ${r.state}, exit status ${r.state === 'shutdown' ? r.exitCode : 1}\n`);
        if (r.state !== 'shutdown') process.exitCode = 1;
      }
    });
}
