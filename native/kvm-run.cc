// kvmRun(fd) -> 0 | -errno: KVM_RUN, the one native call made on every exit, through the V8 API
// instead of N-API. N-API wraps each call (its callback-info and value calls, the env's
// call-into-module bookkeeping, the result's creation): measured on the kvm_pvm host with rdtsc
// around the ioctl, a bare JS loop over this function spends ~420-480 cycles in user space per
// MMIO exit against ~860-930 through the N-API kvmRun of tsvmm.c, because after an exit the
// kernel's emulator has left the caches cold and every extra line of code counts. The V8 API has
// no stable ABI, so this addon is built against the running Node's headers by `npm ci`
// (scripts/build.js) and src/native.ts falls back to tsvmm.c's N-API kvmRun if it does not load
// (a Node with another module version). Everything else stays in tsvmm.c.
#include <node.h>
#include <v8.h>

#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

namespace {

void KvmRun(const v8::FunctionCallbackInfo<v8::Value>& info) {
  if (info.Length() < 1 || !info[0]->IsInt32()) {
    v8::Isolate* isolate = info.GetIsolate();
    isolate->ThrowException(v8::Exception::TypeError(v8::String::NewFromUtf8Literal(isolate, "tsvmm native: kvmRun(fd) needs a vCPU fd")));
    return;
  }
  int r = ioctl(info[0].As<v8::Int32>()->Value(), KVM_RUN, 0);
  info.GetReturnValue().Set(static_cast<int32_t>(r < 0 ? -errno : r));
}

}  // namespace

// Context-aware: every vCPU worker thread loads its own instance.
NODE_MODULE_INIT() {
  NODE_SET_METHOD(exports, "kvmRun", KvmRun);
}
