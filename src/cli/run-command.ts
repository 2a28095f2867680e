// `tsvmm run`: boot a guest, serial/console on stdout, exit with the guest's status.
import { InvalidArgumentError, type Command } from 'commander';
import { Vm, type VmOptions } from '../vmm/vm';
import { parseMemOption } from './mem-option';
import { onHostSignal } from './host-signals';
import { parseIntOption, reportErrorAndExit, reportStderrDrops } from './common';
import { report } from '../log';
import type { QmpServer } from '../qmp/server';
import type { ShutdownCause } from '../qmp/vm-target';
import { parseActionOption } from './action-option';
import { VmReset } from '../qmp/vm-reset';
import { METRICS_LISTEN_OPTION, METRICS_ALLOW_REMOTE_OPTION, startMetrics, type MetricsOptions } from './metrics-options';
import type { MetricsServer } from '../metrics/metrics';

// Loaded only when an option needs them, so that a plain `run` starts without zod (--config), the
// QMP server (--qmp) or prom-client (--metrics-listen): issue 10 item 4.
const configFile = () => require('./config-file') as typeof import('./config-file');
const qmpServer = () => require('../qmp/server') as typeof import('../qmp/server');
const qmpTarget = () => require('../qmp/vm-target') as typeof import('../qmp/vm-target');
const metricsSourceOf = (vm: Vm) => (require('../metrics/vm-source') as typeof import('../metrics/vm-source')).metricsSourceOf(vm);
import { collect, parseDeviceOption } from './linux-options';
import { DEFAULT_CMDLINE } from '../boot/linux/linux-boot';
import { attachConsoleInput } from '../vmm/console-input';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description("boot a guest; its serial and console output go to stdout; exit status = the guest's")
    .option(
      '--guest <name|file>',
      'a built-in guest (hello, pio-loop, mmio-loop, race, ...) or a guest image file (required unless --kernel, here or in --config)',
    )
    .option('--kernel <bzImage>', "boot a Linux kernel (bzImage, e.g. Debian's vmlinuz) instead of --guest")
    .option('--initrd <file>', 'with --kernel: the initramfs')
    .option('--cmdline <string>', `with --kernel: the kernel command line (default: ${DEFAULT_CMDLINE})`)
    .option('--device <spec>', 'with --kernel: a passthrough PCI function, shm or vfio,host=DDDD:BB:DD.F (repeatable)', collect)
    .option('--vcpus <n>', 'number of vCPUs', '1')
    .option('--mem <size>', 'guest RAM (e.g. 256M, 1G; default 64M, with --kernel 512M)')
    .option('--iterations <n>', 'loop count for the loop guests', '100000')
    .option('--kvm <path>', 'the KVM device', process.env.TSVMM_KVM ?? '/dev/kvm')
    .option(
      '--qmp <path>',
      'a QMP (QEMU Machine Protocol) server on this unix socket; a VM that stops in internal-error or guest-panicked then stays up for inspection until QMP quit',
    )
    .option('--name <name>', "the VM's name, reported by QMP query-name (QEMU's -name)")
    .option(
      '--action <spec>',
      "what a guest-initiated reset does (QEMU's -action): reboot=shutdown (default: the VM ends, QMP SHUTDOWN reason guest-reset) or reboot=reset (a fresh VM, QMP RESET guest true)",
      'reboot=shutdown',
    )
    .option('--paused', "start with the vCPUs stopped in prelaunch until QMP cont (QEMU's -S); needs --qmp")
    .option(...METRICS_LISTEN_OPTION)
    .option(...METRICS_ALLOW_REMOTE_OPTION)
    .option('--config <file>', 'read options from a JSON file (keys: the long option names); command-line options win')
    .option('--print-config', 'print the options the command line and --config add up to, as a config file, and exit')
    .action(
      async (
        o: {
          guest?: string;
          kernel?: string;
          initrd?: string;
          cmdline?: string;
          device?: string[];
          vcpus: string;
          mem?: string;
          iterations: string;
          kvm: string;
          qmp?: string;
          paused?: boolean;
          name?: string;
          action: string;
          config?: string;
          printConfig?: boolean;
        } & MetricsOptions,
        cmd: Command,
      ) => {
        let vm: Vm | undefined;
        let vmOptions: VmOptions | undefined;
        let recreate: (() => Vm) | undefined;
        let metrics: MetricsServer | undefined;
        let cause: ShutdownCause = 'guest-shutdown';
        let reboot: 'reset' | 'shutdown' = 'shutdown';
        let quit: () => void = () => {};
        const quitRequested = new Promise<void>((resolve) => (quit = resolve));
        // Before Vm.create: a signal that arrives while it runs is delivered after it (QEMU exits 0).
        let signalled = false;
        const onSignal = () => {
          signalled = true;
          cause = 'host-signal';
          vm?.requestShutdown(0);
          quit();
        };
        const releaseSignals = onHostSignal(onSignal);
        try {
          if (o.config !== undefined) {
            configFile().applyRunConfig(cmd, configFile().readRunConfig(o.config));
            o = cmd.opts();
          }
          if (o.printConfig) {
            process.stdout.write(`${JSON.stringify(configFile().effectiveRunConfig(cmd), null, 2)}\n`);
            return;
          }
          if (o.guest === undefined && o.kernel === undefined)
            throw new InvalidArgumentError("required option '--guest <name|file>' not specified (on the command line or in --config), nor --kernel <bzImage>");
          if (o.guest !== undefined && o.kernel !== undefined) throw new InvalidArgumentError('--guest and --kernel are alternatives: give one');
          if (o.kernel === undefined && (o.initrd !== undefined || o.cmdline !== undefined || o.device !== undefined))
            throw new InvalidArgumentError('--initrd, --cmdline and --device need --kernel');
          if (o.paused && o.qmp === undefined) throw new InvalidArgumentError('--paused needs --qmp: nothing else could start the vCPUs');
          if (o.qmp !== undefined) await qmpServer().checkSocketPath(o.qmp); // bad input fails before KVM is touched
          const vcpus = parseIntOption('--vcpus', o.vcpus, 1, 64);
          reboot = parseActionOption(o.action).reboot;
          metrics = await startMetrics(o);
          if (o.kernel !== undefined) {
            const linuxOptions = {
              machine: {
                ramBytes: parseMemOption(o.mem ?? '512M'),
                vcpus,
                passthrough: (o.device ?? []).map(parseDeviceOption),
                persona: 'tsvmm' as const,
                barOrder: 'unmap-first' as const,
                reboot,
              },
              linux: { kernelPath: o.kernel, initrdPath: o.initrd, cmdline: o.cmdline ?? DEFAULT_CMDLINE },
              kvmPath: o.kvm,
            };
            recreate = () => Vm.createLinux(linuxOptions);
          } else {
            vmOptions = {
              machine: { ramBytes: parseMemOption(o.mem ?? '64M'), vcpus, passthrough: [], persona: 'tsvmm', barOrder: 'unmap-first', reboot },
              guest: { image: o.guest!, params: { iterations: parseIntOption('--iterations', o.iterations, 0, 2 ** 31) } },
              kvmPath: o.kvm,
            };
            recreate = () => Vm.create(vmOptions!);
          }
          vm = recreate();
        } catch (e) {
          reportErrorAndExit(e);
        }
        metrics?.attach(metricsSourceOf(vm!));
        vm!.start({ paused: o.paused === true });
        if (signalled) vm!.requestShutdown(0);
        const attachInput = (v: Vm) => (v.machine.linux ? attachConsoleInput(v, process.stdin, () => onSignal()) : undefined);
        let input = attachInput(vm!);
        let qmp: QmpServer | undefined;
        const reset = new VmReset();
        if (o.qmp !== undefined) {
          // Listen once the vCPU threads exist, so the first query-cpus-fast already has their ids.
          await vm!.threadsStarted();
          try {
            qmp = await qmpServer().QmpServer.listen(
              o.qmp,
              qmpTarget().vmQmpTarget(() => vm!, {
                name: o.name,
                emit: (name, data) => qmp?.broadcast(name, data),
                onQuit: () => {
                  cause = 'host-qmp-quit';
                  vm!.requestShutdown(0);
                  quit();
                },
                onReset: () => reset.request(vm!),
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
        // Until the VM ends for good: a QMP system_reset replaces it with a fresh one (vm-reset.ts).
        let waiting = vm!.wait();
        let r: Awaited<typeof waiting>;
        for (;;) {
          // (reset.requested first: after a stay-up the old VM's `waiting` has long resolved.)
          if (reset.requested || (await Promise.race([waiting.then(() => false), reset.signal.then(() => true)]))) {
            input?.detach();
            vm = await reset.perform(vm!, waiting, recreate!);
            input = attachInput(vm);
            metrics?.attach(metricsSourceOf(vm));
            waiting = vm.wait();
            continue;
          }
          r = await waiting;
          if (r.state === 'shutdown' && reboot === 'reset' && cause === 'guest-shutdown' && !signalled && vm!.machine.runState.guestReset) {
            // QEMU's -action reboot=reset: the guest reset the machine; it runs again from power-on
            // (the same rebuild as system_reset), and QMP clients get RESET with guest true.
            const old = vm!;
            input?.detach();
            try {
              vm = recreate!();
            } catch (e) {
              report('error', `the guest reset the VM and it could not be rebuilt: ${(e as Error).message}`);
              r = { ...r, exitCode: 1 };
              vm = old;
              if (qmp) await qmp.close();
              break;
            }
            old.close();
            vm.start({ paused: false });
            input = attachInput(vm);
            metrics?.attach(metricsSourceOf(vm));
            waiting = vm.wait();
            qmp?.broadcast(...qmpTarget().GUEST_RESET_EVENT);
            continue;
          }
          if (!qmp) break;
          for (const [name, data] of qmpTarget().terminalEvents(r.state, cause === 'guest-shutdown' ? qmpTarget().guestCause(vm!) : cause))
            qmp.broadcast(name, data);
          if (r.state !== 'shutdown') {
            // QEMU keeps a VM stopped in internal-error (or panicked) for management to inspect,
            // until quit or system_reset.
            if (!signalled) {
              report('warn', `VM stopped in ${r.state}; QMP stays up on ${qmp.path} until quit`);
              await Promise.race([quitRequested, reset.signal]);
              if (reset.requested) continue;
            }
            // A host signal ends the inspection as QEMU's does: with a SHUTDOWN event.
            if (signalled) for (const [name, data] of qmpTarget().terminalEvents('shutdown', 'host-signal')) qmp.broadcast(name, data);
          }
          await qmp.close();
          break;
        }
        releaseSignals();
        input?.detach();
        await metrics?.close();
        const lost = vm!.consoleOutput.summary();
        if (lost) report('warn', lost);
        reportStderrDrops(vm!.stats);
        vm!.close();
        if (r.state === 'shutdown') process.exitCode = r.exitCode;
        if (r.state !== 'shutdown' || r.exitCode !== 0) {
          report('error', `VM stopped, run state ${r.state}, exit status ${r.state === 'shutdown' ? r.exitCode : 1}`);
          if (r.state !== 'shutdown') process.exitCode = 1;
        }
      },
    );
}
