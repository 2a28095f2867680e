// Whether the real /dev/kvm can be used here. Tests that need it are skipped with this reason
// printed, never faked: `node --test` shows "# SKIP <reason>" for each, and the banner below makes
// the skip impossible to miss in CI logs.
import { KvmSystem } from '../src/kvm/kvm';

const a = KvmSystem.availability(process.env.TSVMM_KVM ?? '/dev/kvm');
export const kvmSkip: string | false = a.available ? false : `needs KVM: ${a.reason}`;
if (kvmSkip) process.stderr.write(`\n*** tsvmm: KVM TESTS SKIPPED: ${kvmSkip} ***\n\n`);
