// The one part of the native layer that needs V8's C++ API (N-API has no GC call): a memory-reducing
// full GC of the calling thread's own isolate. `Isolate::MemoryPressureNotification(kCritical)` on
// the isolate's thread runs it at once: a full GC that compacts, gives emptied pages back, and
// shrinks the young generation to its start size (what V8's memory reducer would do from the event
// loop, which a vCPU thread never reaches). The level goes back to none right after, so V8 does
// not stay in memory-saving mode. Called at a bounded rate by src/vmm/heap-upkeep.ts.
#include <node_api.h>
#include <v8.h>

extern "C" napi_value tsvmm_reduce_heap(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) {
    isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kCritical);
    isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kNone);
  }
  napi_get_boolean(env, isolate != nullptr, &out);
  return out;
}
