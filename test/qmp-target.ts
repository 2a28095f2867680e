// A QMP target that records what it was asked, for tests of the session and the socket server.
import type { QmpTarget } from '../src/qmp/session';
import type { RunState } from '../src/vmm/run-state';

export class RecordingTarget implements QmpTarget {
  state: RunState = 'running';
  calls: string[] = [];
  readonly version = { major: 0, minor: 1, micro: 0, package: 'tsvmm 0.1.0' };
  status = () => this.state;
  stop = async () => {
    this.calls.push('stop');
    if (this.state === 'running') this.state = 'paused';
  };
  cont = async () => {
    this.calls.push('cont');
    if (this.state === 'paused') this.state = 'running';
  };
  quit = () => void this.calls.push('quit');
  vcpuThreads = () => [{ index: 0, threadId: 1 }];
}
