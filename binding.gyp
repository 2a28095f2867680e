{
  "targets": [
    {
      "target_name": "tsvmm_native",
      "sources": ["native/tsvmm.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
