{
  "targets": [
    {
      "target_name": "tsvmm_native",
      "sources": ["native/tsvmm.c", "native/v8-heap.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tsvmm_kvm_run",
      "sources": ["native/kvm-run.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-cast-function-type"]
    }
  ]
}
