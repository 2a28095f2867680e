// tsvmm native layer: the only code in the project that issues ioctl, mmap and mprotect, and the
// vCPU kick signal (its handler, mask and tgkill). Node itself still makes the file, socket and
// futex system calls the TypeScript code asks for, and handles host signals (process.on, and
// process.kill to re-raise one: src/cli/host-signals.ts).
//
// Conventions (every function below):
// - Failures are returned as a negative errno number, never thrown: the TypeScript side decides
//   what an errno means (EINTR from KVM_RUN is routine, EFAULT may be a recoverable memory fault).
// - Host addresses cross the boundary as BigInt; file offsets and lengths as Number (< 2^53).
// - Buffer arguments are TypedArrays/Buffers; the kernel reads/writes exactly their byte length
//   (ioctlBuffer passes the pointer only: the caller sizes the view to the ioctl's struct, and the
//   TypeScript constants module checks those sizes against the values exported from here).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <malloc.h>
#include <node_api.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      napi_throw_error(env, NULL, "tsvmm native: N-API call failed: " #call);      \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static napi_value make_i64(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static napi_value ret_or_errno(napi_env env, long r) { return make_i64(env, r < 0 ? -errno : r); }

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < want) {
    napi_throw_type_error(env, NULL, "tsvmm native: too few arguments");
    return -1;
  }
  return 0;
}

static int64_t arg_i64(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_int64(env, v, &out, &lossless);
  } else {
    napi_get_value_int64(env, v, &out);
  }
  return out;
}

static uint64_t arg_u64(napi_env env, napi_value v) {
  uint64_t out = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_uint64(env, v, &out, &lossless);
  } else {
    int64_t s = 0;
    napi_get_value_int64(env, v, &s);
    out = (uint64_t)s;
  }
  return out;
}

// Resolves a TypedArray, DataView or Buffer to (pointer, byte length).
static int arg_bytes(napi_env env, napi_value v, void** data, size_t* len) {
  bool is_ta = false, is_dv = false;
  napi_is_typedarray(env, v, &is_ta);
  if (is_ta) {
    napi_typedarray_type type;
    size_t length, offset;
    napi_value ab;
    void* base;
    if (napi_get_typedarray_info(env, v, &type, &length, &base, &ab, &offset) != napi_ok) return -1;
    size_t elem = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: elem = 1;
    }
    *data = base;  // already points at the view's first element
    *len = length * elem;
    return 0;
  }
  napi_is_dataview(env, v, &is_dv);
  if (is_dv) {
    napi_value ab;
    size_t offset;
    return napi_get_dataview_info(env, v, len, data, &ab, &offset) == napi_ok ? 0 : -1;
  }
  napi_throw_type_error(env, NULL, "tsvmm native: expected a TypedArray, Buffer or DataView");
  return -1;
}

static char* arg_string(napi_env env, napi_value v, char* buf, size_t cap) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, cap, &n) != napi_ok) return NULL;
  return buf;
}

// open(path, flags) -> fd | -errno. O_CLOEXEC is always added: fds must not leak into children.
static napi_value n_open(napi_env env, napi_callback_info info) {
  napi_value a[2];
  char path[4096];
  if (get_args(env, info, 2, a)) return NULL;
  if (!arg_string(env, a[0], path, sizeof path)) return NULL;
  return ret_or_errno(env, open(path, (int)arg_i64(env, a[1]) | O_CLOEXEC));
}

static napi_value n_close(napi_env env, napi_callback_info info) {
  napi_value a[1];
  if (get_args(env, info, 1, a)) return NULL;
  return ret_or_errno(env, close((int)arg_i64(env, a[0])));
}

// ioctl(fd, request, integerArg) -> ret | -errno. Used for KVM_RUN, KVM_CREATE_VCPU, CHECK_EXTENSION.
static napi_value n_ioctl(napi_env env, napi_callback_info info) {
  napi_value a[3];
  if (get_args(env, info, 3, a)) return NULL;
  int fd = (int)arg_i64(env, a[0]);
  unsigned long req = (unsigned long)arg_u64(env, a[1]);
  unsigned long arg = (unsigned long)arg_u64(env, a[2]);
  return ret_or_errno(env, ioctl(fd, req, arg));
}

// ioctlBuffer(fd, request, view) -> ret | -errno. The kernel reads/writes through the view's memory;
// the caller guarantees the view is at least the size encoded in `request` (checked in TS).
static napi_value n_ioctl_buffer(napi_env env, napi_callback_info info) {
  napi_value a[3];
  void* data;
  size_t len;
  if (get_args(env, info, 3, a)) return NULL;
  if (arg_bytes(env, a[2], &data, &len)) return NULL;
  unsigned long req = (unsigned long)arg_u64(env, a[1]);
  size_t need = _IOC_SIZE(req);
  if (len < need) {
    napi_throw_range_error(env, NULL, "tsvmm native: ioctl buffer smaller than the request's size");
    return NULL;
  }
  return ret_or_errno(env, ioctl((int)arg_i64(env, a[0]), req, data));
}

static void no_finalize(napi_env env, void* data, void* hint) { (void)env; (void)data; (void)hint; }

// mmapBuffer(fd, length, prot, flags, offset) -> [address bigint, ArrayBuffer] | -errno.
// The ArrayBuffer is external and is NOT unmapped by GC: the owner calls munmap explicitly and must
// drop every view first (an access after munmap is a use-after-free in the host process).
static napi_value n_mmap_buffer(napi_env env, napi_callback_info info) {
  napi_value a[5];
  if (get_args(env, info, 5, a)) return NULL;
  size_t len = (size_t)arg_u64(env, a[1]);
  void* p = mmap(NULL, len, (int)arg_i64(env, a[2]), (int)arg_i64(env, a[3]), (int)arg_i64(env, a[0]),
                 (off_t)arg_i64(env, a[4]));
  if (p == MAP_FAILED) return make_i64(env, -errno);
  napi_value ab, addr, arr;
  CHECK(napi_create_external_arraybuffer(env, p, len, no_finalize, NULL, &ab));
  CHECK(napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &addr));
  CHECK(napi_create_array_with_length(env, 2, &arr));
  CHECK(napi_set_element(env, arr, 0, addr));
  CHECK(napi_set_element(env, arr, 1, ab));
  return arr;
}

// mmapAddress(fd, length, prot, flags, offset) -> address bigint | -errno (as a Number).
// For mappings JavaScript must never touch (a passthrough BAR's host mapping: when it is revoked, a
// JS load would kill the process with SIGBUS). Only KVM and the kernel use the address.
static napi_value n_mmap_address(napi_env env, napi_callback_info info) {
  napi_value a[5];
  if (get_args(env, info, 5, a)) return NULL;
  void* p = mmap(NULL, (size_t)arg_u64(env, a[1]), (int)arg_i64(env, a[2]), (int)arg_i64(env, a[3]),
                 (int)arg_i64(env, a[0]), (off_t)arg_i64(env, a[4]));
  if (p == MAP_FAILED) return make_i64(env, -errno);
  napi_value addr;
  CHECK(napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &addr));
  return addr;
}

static napi_value n_munmap(napi_env env, napi_callback_info info) {
  napi_value a[2];
  if (get_args(env, info, 2, a)) return NULL;
  return ret_or_errno(env, munmap((void*)(uintptr_t)arg_u64(env, a[0]), (size_t)arg_u64(env, a[1])));
}

static napi_value n_mprotect(napi_env env, napi_callback_info info) {
  napi_value a[3];
  if (get_args(env, info, 3, a)) return NULL;
  return ret_or_errno(env, mprotect((void*)(uintptr_t)arg_u64(env, a[0]), (size_t)arg_u64(env, a[1]),
                                    (int)arg_i64(env, a[2])));
}

static napi_value n_memfd_create(napi_env env, napi_callback_info info) {
  napi_value a[2];
  char name[256];
  if (get_args(env, info, 2, a)) return NULL;
  if (!arg_string(env, a[0], name, sizeof name)) return NULL;
  return ret_or_errno(env, syscall(SYS_memfd_create, name, (unsigned)arg_i64(env, a[1]) | MFD_CLOEXEC));
}

static napi_value n_ftruncate(napi_env env, napi_callback_info info) {
  napi_value a[2];
  if (get_args(env, info, 2, a)) return NULL;
  return ret_or_errno(env, ftruncate((int)arg_i64(env, a[0]), (off_t)arg_i64(env, a[1])));
}

// pread(fd, view, offset) / pwrite(fd, view, offset) -> bytes | -errno, whole view.
static napi_value n_pread(napi_env env, napi_callback_info info) {
  napi_value a[3];
  void* data;
  size_t len;
  if (get_args(env, info, 3, a)) return NULL;
  if (arg_bytes(env, a[1], &data, &len)) return NULL;
  return ret_or_errno(env, pread((int)arg_i64(env, a[0]), data, len, (off_t)arg_i64(env, a[2])));
}

static napi_value n_pwrite(napi_env env, napi_callback_info info) {
  napi_value a[3];
  void* data;
  size_t len;
  if (get_args(env, info, 3, a)) return NULL;
  if (arg_bytes(env, a[1], &data, &len)) return NULL;
  return ret_or_errno(env, pwrite((int)arg_i64(env, a[0]), data, len, (off_t)arg_i64(env, a[2])));
}

static napi_value n_eventfd(napi_env env, napi_callback_info info) {
  napi_value a[2];
  if (get_args(env, info, 2, a)) return NULL;
  return ret_or_errno(env, eventfd((unsigned)arg_i64(env, a[0]), (int)arg_i64(env, a[1]) | EFD_CLOEXEC));
}

static napi_value n_gettid(napi_env env, napi_callback_info info) {
  (void)info;
  return make_i64(env, syscall(SYS_gettid));
}

// malloc_trim(0): gives the free pages of every glibc malloc arena back to the kernel (the heap
// upkeep calls it at a bounded rate: worker threads free array buffer stores into their own
// arenas, which glibc otherwise keeps). Returns 1 if memory was released, else 0.
static napi_value n_malloc_trim(napi_env env, napi_callback_info info) {
  (void)info;
  return make_i64(env, malloc_trim(0));
}

// native/v8-heap.cc: a memory-reducing full GC of the calling thread's isolate.
napi_value tsvmm_reduce_heap(napi_env env, napi_callback_info info);

static napi_value n_getpid(napi_env env, napi_callback_info info) {
  (void)info;
  return make_i64(env, getpid());
}

static napi_value n_tgkill(napi_env env, napi_callback_info info) {
  napi_value a[3];
  if (get_args(env, info, 3, a)) return NULL;
  return ret_or_errno(env, syscall(SYS_tgkill, (pid_t)arg_i64(env, a[0]), (pid_t)arg_i64(env, a[1]),
                                   (int)arg_i64(env, a[2])));
}

// The vCPU kick signal does nothing in user space: its only purpose is to make a blocking KVM_RUN
// return -EINTR. SA_RESTART is deliberately absent (KVM_RUN is never restarted anyway, but other
// blocking calls in the thread should see EINTR too).
static void kick_handler(int sig) { (void)sig; }

static napi_value n_install_kick_handler(napi_env env, napi_callback_info info) {
  napi_value a[1];
  if (get_args(env, info, 1, a)) return NULL;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = kick_handler;
  sigemptyset(&sa.sa_mask);
  return ret_or_errno(env, sigaction((int)arg_i64(env, a[0]), &sa, NULL));
}

// unblockSignal(sig): in the calling thread only. Node may start threads with signals blocked.
static napi_value n_unblock_signal(napi_env env, napi_callback_info info) {
  napi_value a[1];
  if (get_args(env, info, 1, a)) return NULL;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, (int)arg_i64(env, a[0]));
  int r = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  return make_i64(env, r == 0 ? 0 : -r);
}

static napi_value n_strerror(napi_env env, napi_callback_info info) {
  napi_value a[1], out;
  if (get_args(env, info, 1, a)) return NULL;
  int e = (int)arg_i64(env, a[0]);
  CHECK(napi_create_string_utf8(env, strerror(e < 0 ? -e : e), NAPI_AUTO_LENGTH, &out));
  return out;
}

static void set_num(napi_env env, napi_value obj, const char* name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

// Constants taken from this machine's headers, so TypeScript never hand-computes an ABI value it
// could get wrong. The TS constants module cross-checks its own table against these in a test.
static napi_value make_constants(napi_env env) {
  napi_value c;
  napi_create_object(env, &c);
#define C(name) set_num(env, c, #name, (double)(name))
  C(O_RDWR); C(O_RDONLY); C(O_CLOEXEC);
  C(PROT_NONE); C(PROT_READ); C(PROT_WRITE); C(PROT_EXEC);
  C(MAP_SHARED); C(MAP_PRIVATE); C(MAP_ANONYMOUS); C(MAP_NORESERVE);
  C(EINTR); C(EAGAIN); C(EFAULT); C(EHWPOISON); C(ENOENT); C(EACCES); C(EIO); C(EINVAL);
  C(ENODEV); C(EEXIST); C(ENOSYS); C(EBADF); C(EPERM); C(ENXIO); C(EBUSY);
  C(SIGUSR2);
  C(KVM_API_VERSION);
  C(KVM_GET_API_VERSION); C(KVM_CREATE_VM); C(KVM_CHECK_EXTENSION); C(KVM_GET_VCPU_MMAP_SIZE);
  C(KVM_CREATE_VCPU); C(KVM_SET_USER_MEMORY_REGION); C(KVM_SET_TSS_ADDR);
  C(KVM_SET_IDENTITY_MAP_ADDR); C(KVM_RUN); C(KVM_GET_REGS); C(KVM_SET_REGS); C(KVM_GET_SREGS);
  C(KVM_SET_SREGS); C(KVM_GET_SUPPORTED_CPUID); C(KVM_SET_CPUID2); C(KVM_ENABLE_CAP);
  C(KVM_CAP_USER_MEMORY); C(KVM_CAP_SYNC_REGS); C(KVM_CAP_IMMEDIATE_EXIT); C(KVM_CAP_NR_MEMSLOTS);
  C(KVM_CAP_MAX_VCPUS);
  // KVM's own ways to take a write without a user-space exit (src/kvm/kvm.ts, coalesced-ring.ts).
  C(KVM_IOEVENTFD); C(KVM_REGISTER_COALESCED_MMIO); C(KVM_UNREGISTER_COALESCED_MMIO);
  C(KVM_IOEVENTFD_FLAG_PIO); C(KVM_IOEVENTFD_FLAG_DATAMATCH); C(KVM_IOEVENTFD_FLAG_DEASSIGN);
  C(KVM_CAP_IOEVENTFD); C(KVM_CAP_COALESCED_MMIO); C(KVM_CAP_COALESCED_PIO);
  C(EFD_NONBLOCK);
  C(KVM_EXIT_UNKNOWN); C(KVM_EXIT_IO); C(KVM_EXIT_HLT); C(KVM_EXIT_MMIO); C(KVM_EXIT_SHUTDOWN);
  C(KVM_EXIT_FAIL_ENTRY); C(KVM_EXIT_INTR); C(KVM_EXIT_INTERNAL_ERROR); C(KVM_EXIT_SYSTEM_EVENT);
  C(KVM_EXIT_IRQ_WINDOW_OPEN); C(KVM_EXIT_DEBUG); C(KVM_EXIT_EXCEPTION);
  // struct layouts (x86_64)
  set_num(env, c, "sizeof_kvm_run", sizeof(struct kvm_run));
  set_num(env, c, "sizeof_kvm_regs", sizeof(struct kvm_regs));
  set_num(env, c, "sizeof_kvm_sregs", sizeof(struct kvm_sregs));
  set_num(env, c, "sizeof_kvm_userspace_memory_region", sizeof(struct kvm_userspace_memory_region));
  set_num(env, c, "kvm_run_immediate_exit", offsetof(struct kvm_run, immediate_exit));
  set_num(env, c, "kvm_run_exit_reason", offsetof(struct kvm_run, exit_reason));
  set_num(env, c, "kvm_run_io", offsetof(struct kvm_run, io));
  set_num(env, c, "kvm_run_io_data_offset", offsetof(struct kvm_run, io.data_offset));
  set_num(env, c, "kvm_run_mmio_len", offsetof(struct kvm_run, mmio.len));
  set_num(env, c, "kvm_run_mmio_is_write", offsetof(struct kvm_run, mmio.is_write));
  set_num(env, c, "kvm_run_internal_ndata", offsetof(struct kvm_run, internal.ndata));
  set_num(env, c, "kvm_run_system_event_ndata", offsetof(struct kvm_run, system_event.ndata));
  set_num(env, c, "kvm_run_fail_entry_cpu", offsetof(struct kvm_run, fail_entry.cpu));
  set_num(env, c, "kvm_regs_rip", offsetof(struct kvm_regs, rip));
  set_num(env, c, "kvm_regs_rflags", offsetof(struct kvm_regs, rflags));
  set_num(env, c, "kvm_sregs_cr0", offsetof(struct kvm_sregs, cr0));
  set_num(env, c, "kvm_sregs_efer", offsetof(struct kvm_sregs, efer));
  set_num(env, c, "kvm_sregs_apic_base", offsetof(struct kvm_sregs, apic_base));
  set_num(env, c, "kvm_sregs_gdt", offsetof(struct kvm_sregs, gdt));
  set_num(env, c, "kvm_sregs_tr", offsetof(struct kvm_sregs, tr));
  // Linux direct boot (src/boot/linux, src/kvm/kvm.ts): in-kernel irqchip, PIT, IRQ lines, CPUID, MSRs.
  C(KVM_CREATE_IRQCHIP); C(KVM_CREATE_PIT2); C(KVM_IRQ_LINE); C(KVM_SET_MSRS);
  C(KVM_CAP_IRQCHIP); C(KVM_CAP_PIT2); C(KVM_PIT_SPEAKER_DUMMY);
  set_num(env, c, "sizeof_kvm_cpuid2", sizeof(struct kvm_cpuid2));
  set_num(env, c, "sizeof_kvm_cpuid_entry2", sizeof(struct kvm_cpuid_entry2));
  set_num(env, c, "sizeof_kvm_msrs", sizeof(struct kvm_msrs));
  set_num(env, c, "sizeof_kvm_msr_entry", sizeof(struct kvm_msr_entry));
  set_num(env, c, "sizeof_kvm_pit_config", sizeof(struct kvm_pit_config));
  set_num(env, c, "sizeof_kvm_irq_level", sizeof(struct kvm_irq_level));
  // VFIO (linux/vfio.h): every request is _IO(';', ...) with a caller-sized, argsz-led struct.
  C(VFIO_API_VERSION); C(VFIO_TYPE1_IOMMU); C(VFIO_TYPE1v2_IOMMU);
  C(VFIO_GET_API_VERSION); C(VFIO_CHECK_EXTENSION); C(VFIO_SET_IOMMU); C(VFIO_GROUP_GET_STATUS);
  C(VFIO_GROUP_SET_CONTAINER); C(VFIO_GROUP_UNSET_CONTAINER); C(VFIO_GROUP_GET_DEVICE_FD);
  C(VFIO_DEVICE_GET_INFO); C(VFIO_DEVICE_GET_REGION_INFO); C(VFIO_DEVICE_RESET);
  C(VFIO_IOMMU_MAP_DMA); C(VFIO_IOMMU_UNMAP_DMA);
  C(VFIO_GROUP_FLAGS_VIABLE); C(VFIO_GROUP_FLAGS_CONTAINER_SET);
  C(VFIO_DEVICE_FLAGS_RESET); C(VFIO_DEVICE_FLAGS_PCI);
  C(VFIO_REGION_INFO_FLAG_READ); C(VFIO_REGION_INFO_FLAG_WRITE); C(VFIO_REGION_INFO_FLAG_MMAP);
  C(VFIO_REGION_INFO_FLAG_CAPS); C(VFIO_REGION_INFO_CAP_SPARSE_MMAP);
  C(VFIO_DMA_MAP_FLAG_READ); C(VFIO_DMA_MAP_FLAG_WRITE);
  C(VFIO_PCI_BAR0_REGION_INDEX); C(VFIO_PCI_ROM_REGION_INDEX); C(VFIO_PCI_CONFIG_REGION_INDEX);
  set_num(env, c, "sizeof_vfio_group_status", sizeof(struct vfio_group_status));
  set_num(env, c, "sizeof_vfio_device_info", sizeof(struct vfio_device_info));
  set_num(env, c, "vfio_device_info_num_regions", offsetof(struct vfio_device_info, num_regions));
  set_num(env, c, "vfio_device_info_num_irqs", offsetof(struct vfio_device_info, num_irqs));
  set_num(env, c, "sizeof_vfio_region_info", sizeof(struct vfio_region_info));
  set_num(env, c, "vfio_region_info_index", offsetof(struct vfio_region_info, index));
  set_num(env, c, "vfio_region_info_cap_offset", offsetof(struct vfio_region_info, cap_offset));
  set_num(env, c, "vfio_region_info_size", offsetof(struct vfio_region_info, size));
  set_num(env, c, "vfio_region_info_offset", offsetof(struct vfio_region_info, offset));
  set_num(env, c, "sizeof_vfio_info_cap_header", sizeof(struct vfio_info_cap_header));
  set_num(env, c, "vfio_info_cap_header_next", offsetof(struct vfio_info_cap_header, next));
  set_num(env, c, "vfio_sparse_mmap_nr_areas", offsetof(struct vfio_region_info_cap_sparse_mmap, nr_areas));
  set_num(env, c, "vfio_sparse_mmap_areas", offsetof(struct vfio_region_info_cap_sparse_mmap, areas));
  set_num(env, c, "sizeof_vfio_region_sparse_mmap_area", sizeof(struct vfio_region_sparse_mmap_area));
  set_num(env, c, "sizeof_vfio_iommu_type1_dma_map", sizeof(struct vfio_iommu_type1_dma_map));
  set_num(env, c, "vfio_dma_map_vaddr", offsetof(struct vfio_iommu_type1_dma_map, vaddr));
  set_num(env, c, "vfio_dma_map_iova", offsetof(struct vfio_iommu_type1_dma_map, iova));
  set_num(env, c, "vfio_dma_map_size", offsetof(struct vfio_iommu_type1_dma_map, size));
  set_num(env, c, "sizeof_vfio_iommu_type1_dma_unmap", sizeof(struct vfio_iommu_type1_dma_unmap));
#undef C
  return c;
}

// Defined after the module init (kvmAbi, the generated KVM ABI table).
static napi_value register_kvm_abi(napi_env env, napi_value exports);

// kvmRun(fd) -> 0 | -errno: KVM_RUN, the one call made on every exit. One int32 argument and an
// int32 result: ioctl()'s three type-checked 64-bit arguments and int64 result cost ~0.2 us per
// exit (issue 10's profile), as much as the rest of tsvmm's exit handling.
static napi_value n_kvm_run(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, &a, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, a, &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "tsvmm native: kvmRun(fd) needs a vCPU fd");
    return NULL;
  }
  int r = ioctl(fd, KVM_RUN, 0);
  napi_value out;
  napi_create_int32(env, r < 0 ? -errno : r, &out);
  return out;
}

// tuneAllocator(arenaMax, threshold) -> 0 | -1: glibc malloc settings for a long-running VMM
// process, made once at start (bin/tsvmm.js). glibc gives each thread that contends for malloc an
// arena of its own (up to 8 per core): Node's V8 platform threads (TurboFan compiles), the main
// thread and each vCPU thread, each holding freed memory it never returns. arenaMax caps them;
// `threshold` sets M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (fixing the latter also stops glibc from
// raising it after each large free): larger blocks come from mmap and go back when freed, and a
// free top of an arena above it is returned. Measured: README "Memory".
static napi_value n_tune_allocator(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  int32_t arena_max, threshold;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int32(env, a[0], &arena_max) != napi_ok || napi_get_value_int32(env, a[1], &threshold) != napi_ok || arena_max < 1 ||
      threshold < 4096) {
    napi_throw_range_error(env, NULL, "tsvmm native: tuneAllocator(arenaMax >= 1, threshold >= 4096)");
    return NULL;
  }
  // mallopt returns 1 on success, 0 on error (no errno).
  int ok = mallopt(M_ARENA_MAX, arena_max) && mallopt(M_TRIM_THRESHOLD, threshold) && mallopt(M_MMAP_THRESHOLD, threshold);
  napi_value out;
  napi_create_int32(env, ok ? 0 : -1, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
#define F(js, fn) {js, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
      F("open", n_open),
      F("close", n_close),
      F("ioctl", n_ioctl),
      F("ioctlBuffer", n_ioctl_buffer),
      F("kvmRun", n_kvm_run),
      F("mmapBuffer", n_mmap_buffer),
      F("mmapAddress", n_mmap_address),
      F("munmap", n_munmap),
      F("mprotect", n_mprotect),
      F("memfdCreate", n_memfd_create),
      F("ftruncate", n_ftruncate),
      F("pread", n_pread),
      F("pwrite", n_pwrite),
      F("eventfd", n_eventfd),
      F("gettid", n_gettid),
      F("getpid", n_getpid),
      F("mallocTrim", n_malloc_trim),
      F("reduceHeap", tsvmm_reduce_heap),
      F("tgkill", n_tgkill),
      F("installKickHandler", n_install_kick_handler),
      F("unblockSignal", n_unblock_signal),
      F("strerror", n_strerror),
      F("tuneAllocator", n_tune_allocator),
#undef F
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  napi_value consts = make_constants(env);
  napi_set_named_property(env, exports, "constants", consts);
  if (!register_kvm_abi(env, exports)) return NULL;
  return exports;
}

// kvmAbi(): the KVM UAPI that src/kvm/constants.ts spells out as literals, computed by the C
// compiler from <linux/kvm.h> (Linux's asm-offsets pattern). Keys are the TypeScript names, grouped
// as the TypeScript tables are, so test/kvm-constants.test.ts can compare every entry in both
// directions. A value these headers lack (added after 6.1, e.g. KVM_EXIT_MEMORY_FAULT) is left out,
// and the test lists it as "not in these headers" by name.
static void set_group(napi_env env, napi_value obj, const char* name, napi_value group) {
  napi_set_named_property(env, obj, name, group);
}

static napi_value n_kvm_abi(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value abi, run, exits, sys_events, caps, ioctls, flags, sizes, misc;
  CHECK(napi_create_object(env, &abi));
  CHECK(napi_create_object(env, &run));
  CHECK(napi_create_object(env, &exits));
  CHECK(napi_create_object(env, &sys_events));
  CHECK(napi_create_object(env, &caps));
  CHECK(napi_create_object(env, &ioctls));
  CHECK(napi_create_object(env, &flags));
  CHECK(napi_create_object(env, &sizes));
  CHECK(napi_create_object(env, &misc));
#define RUN(ts, field) set_num(env, run, ts, (double)offsetof(struct kvm_run, field))
  RUN("requestInterruptWindow", request_interrupt_window);
  RUN("immediateExit", immediate_exit);
  RUN("exitReason", exit_reason);
  RUN("readyForInterruptInjection", ready_for_interrupt_injection);
  RUN("ifFlag", if_flag);
  RUN("flags", flags);
  RUN("cr8", cr8);
  RUN("apicBase", apic_base);
  RUN("union", io);
  RUN("ioDirection", io.direction);
  RUN("ioSize", io.size);
  RUN("ioPort", io.port);
  RUN("ioCount", io.count);
  RUN("ioDataOffset", io.data_offset);
  RUN("mmioPhysAddr", mmio.phys_addr);
  RUN("mmioData", mmio.data);
  RUN("mmioLen", mmio.len);
  RUN("mmioIsWrite", mmio.is_write);
  RUN("failEntryHardwareReason", fail_entry.hardware_entry_failure_reason);
  RUN("failEntryCpu", fail_entry.cpu);
  RUN("hwHardwareReason", hw.hardware_exit_reason);
  RUN("internalSuberror", internal.suberror);
  RUN("internalNdata", internal.ndata);
  RUN("internalData", internal.data);
  RUN("systemEventType", system_event.type);
  RUN("systemEventNdata", system_event.ndata);
  RUN("systemEventData", system_event.data);
#ifdef KVM_EXIT_MEMORY_FAULT
  RUN("memoryFaultFlags", memory_fault.flags);
  RUN("memoryFaultGpa", memory_fault.gpa);
  RUN("memoryFaultSize", memory_fault.size);
#endif
  set_num(env, run, "size", (double)sizeof(struct kvm_run));
#undef RUN
#define NUM(obj, ts, name) set_num(env, obj, ts, (double)(name))
  NUM(exits, "UNKNOWN", KVM_EXIT_UNKNOWN);
  NUM(exits, "EXCEPTION", KVM_EXIT_EXCEPTION);
  NUM(exits, "IO", KVM_EXIT_IO);
  NUM(exits, "HYPERCALL", KVM_EXIT_HYPERCALL);
  NUM(exits, "DEBUG", KVM_EXIT_DEBUG);
  NUM(exits, "HLT", KVM_EXIT_HLT);
  NUM(exits, "MMIO", KVM_EXIT_MMIO);
  NUM(exits, "IRQ_WINDOW_OPEN", KVM_EXIT_IRQ_WINDOW_OPEN);
  NUM(exits, "SHUTDOWN", KVM_EXIT_SHUTDOWN);
  NUM(exits, "FAIL_ENTRY", KVM_EXIT_FAIL_ENTRY);
  NUM(exits, "INTR", KVM_EXIT_INTR);
  NUM(exits, "INTERNAL_ERROR", KVM_EXIT_INTERNAL_ERROR);
  NUM(exits, "SYSTEM_EVENT", KVM_EXIT_SYSTEM_EVENT);
  NUM(exits, "DIRTY_RING_FULL", KVM_EXIT_DIRTY_RING_FULL);
#ifdef KVM_EXIT_MEMORY_FAULT
  NUM(exits, "MEMORY_FAULT", KVM_EXIT_MEMORY_FAULT);
#endif
  NUM(sys_events, "SHUTDOWN", KVM_SYSTEM_EVENT_SHUTDOWN);
  NUM(sys_events, "RESET", KVM_SYSTEM_EVENT_RESET);
  NUM(sys_events, "CRASH", KVM_SYSTEM_EVENT_CRASH);
  NUM(sys_events, "WAKEUP", KVM_SYSTEM_EVENT_WAKEUP);
  NUM(sys_events, "SUSPEND", KVM_SYSTEM_EVENT_SUSPEND);
  NUM(sys_events, "SEV_TERM", KVM_SYSTEM_EVENT_SEV_TERM);
  NUM(caps, "KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY);
  NUM(caps, "KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT);
  NUM(caps, "KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS);
  NUM(caps, "KVM_CAP_IOEVENTFD", KVM_CAP_IOEVENTFD);
  NUM(caps, "KVM_CAP_COALESCED_MMIO", KVM_CAP_COALESCED_MMIO);
  NUM(caps, "KVM_CAP_COALESCED_PIO", KVM_CAP_COALESCED_PIO);
#ifdef KVM_CAP_MEMORY_FAULT_INFO
  NUM(caps, "KVM_CAP_MEMORY_FAULT_INFO", KVM_CAP_MEMORY_FAULT_INFO);
#endif
  NUM(caps, "KVM_CAP_DISABLE_QUIRKS2", KVM_CAP_DISABLE_QUIRKS2);
  // Every request src/kvm/kvm.ts issues (it reads them through native.ts c(), from `constants`).
  NUM(ioctls, "KVM_GET_API_VERSION", KVM_GET_API_VERSION);
  NUM(ioctls, "KVM_CREATE_VM", KVM_CREATE_VM);
  NUM(ioctls, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION);
  NUM(ioctls, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE);
  NUM(ioctls, "KVM_CREATE_VCPU", KVM_CREATE_VCPU);
  NUM(ioctls, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION);
  NUM(ioctls, "KVM_ENABLE_CAP", KVM_ENABLE_CAP);
  NUM(ioctls, "KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR);
  NUM(ioctls, "KVM_SET_IDENTITY_MAP_ADDR", KVM_SET_IDENTITY_MAP_ADDR);
  NUM(ioctls, "KVM_RUN", KVM_RUN);
  NUM(ioctls, "KVM_GET_REGS", KVM_GET_REGS);
  NUM(ioctls, "KVM_SET_REGS", KVM_SET_REGS);
  NUM(ioctls, "KVM_GET_SREGS", KVM_GET_SREGS);
  NUM(ioctls, "KVM_SET_SREGS", KVM_SET_SREGS);
  // The Linux guest's machine (src/kvm/kvm.ts: irqchip, PIT, CPUID, MSRs, IRQ lines).
  NUM(ioctls, "KVM_CREATE_IRQCHIP", KVM_CREATE_IRQCHIP);
  NUM(ioctls, "KVM_CREATE_PIT2", KVM_CREATE_PIT2);
  NUM(ioctls, "KVM_IRQ_LINE", KVM_IRQ_LINE);
  NUM(ioctls, "KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID);
  NUM(ioctls, "KVM_SET_CPUID2", KVM_SET_CPUID2);
  NUM(ioctls, "KVM_SET_MSRS", KVM_SET_MSRS);
  // Writes KVM completes without a user-space exit: an eventfd signal, or an entry in the coalesced ring.
  NUM(ioctls, "KVM_IOEVENTFD", KVM_IOEVENTFD);
  NUM(ioctls, "KVM_REGISTER_COALESCED_MMIO", KVM_REGISTER_COALESCED_MMIO);
  NUM(ioctls, "KVM_UNREGISTER_COALESCED_MMIO", KVM_UNREGISTER_COALESCED_MMIO);
  // Flag values src/ passes by name through c() that are not requests.
  NUM(flags, "KVM_PIT_SPEAKER_DUMMY", KVM_PIT_SPEAKER_DUMMY);
  NUM(flags, "KVM_IOEVENTFD_FLAG_PIO", KVM_IOEVENTFD_FLAG_PIO);
  NUM(flags, "KVM_IOEVENTFD_FLAG_DATAMATCH", KVM_IOEVENTFD_FLAG_DATAMATCH);
  NUM(flags, "KVM_IOEVENTFD_FLAG_DEASSIGN", KVM_IOEVENTFD_FLAG_DEASSIGN);
  set_num(env, sizes, "SIZEOF_KVM_REGS", (double)sizeof(struct kvm_regs));
  set_num(env, sizes, "SIZEOF_KVM_SREGS", (double)sizeof(struct kvm_sregs));
  set_num(env, sizes, "SIZEOF_KVM_USERSPACE_MEMORY_REGION", (double)sizeof(struct kvm_userspace_memory_region));
  set_num(env, sizes, "SIZEOF_KVM_ENABLE_CAP", (double)sizeof(struct kvm_enable_cap));
  NUM(misc, "KVM_API_VERSION", KVM_API_VERSION);
  NUM(misc, "KVM_EXIT_IO_IN", KVM_EXIT_IO_IN);
  NUM(misc, "KVM_EXIT_IO_OUT", KVM_EXIT_IO_OUT);
  NUM(misc, "KVM_INTERNAL_ERROR_EMULATION", KVM_INTERNAL_ERROR_EMULATION);
  NUM(misc, "KVM_COALESCED_MMIO_PAGE_OFFSET", KVM_COALESCED_MMIO_PAGE_OFFSET);
#ifdef KVM_MEMORY_EXIT_FLAG_PRIVATE
  NUM(misc, "KVM_MEMORY_EXIT_FLAG_PRIVATE", KVM_MEMORY_EXIT_FLAG_PRIVATE);
#endif
#ifdef KVM_X86_QUIRK_SLOT_ZAP_ALL
  NUM(misc, "KVM_X86_QUIRK_SLOT_ZAP_ALL", KVM_X86_QUIRK_SLOT_ZAP_ALL);
#endif
#undef NUM
  // Field layouts src/kvm/regs.ts and src/kvm/kvm.ts encode positionally.
  napi_value regs, sregs, segment, dtable, region;
  CHECK(napi_create_object(env, &regs));
  CHECK(napi_create_object(env, &sregs));
  CHECK(napi_create_object(env, &segment));
  CHECK(napi_create_object(env, &dtable));
  CHECK(napi_create_object(env, &region));
#define OFF(obj, ts, type, field) set_num(env, obj, ts, (double)offsetof(struct type, field))
  OFF(regs, "rax", kvm_regs, rax); OFF(regs, "rbx", kvm_regs, rbx); OFF(regs, "rcx", kvm_regs, rcx);
  OFF(regs, "rdx", kvm_regs, rdx); OFF(regs, "rsi", kvm_regs, rsi); OFF(regs, "rdi", kvm_regs, rdi);
  OFF(regs, "rsp", kvm_regs, rsp); OFF(regs, "rbp", kvm_regs, rbp); OFF(regs, "r8", kvm_regs, r8);
  OFF(regs, "r9", kvm_regs, r9); OFF(regs, "r10", kvm_regs, r10); OFF(regs, "r11", kvm_regs, r11);
  OFF(regs, "r12", kvm_regs, r12); OFF(regs, "r13", kvm_regs, r13); OFF(regs, "r14", kvm_regs, r14);
  OFF(regs, "r15", kvm_regs, r15); OFF(regs, "rip", kvm_regs, rip); OFF(regs, "rflags", kvm_regs, rflags);
  OFF(sregs, "cs", kvm_sregs, cs); OFF(sregs, "ds", kvm_sregs, ds); OFF(sregs, "es", kvm_sregs, es);
  OFF(sregs, "fs", kvm_sregs, fs); OFF(sregs, "gs", kvm_sregs, gs); OFF(sregs, "ss", kvm_sregs, ss);
  OFF(sregs, "tr", kvm_sregs, tr); OFF(sregs, "ldt", kvm_sregs, ldt); OFF(sregs, "gdt", kvm_sregs, gdt);
  OFF(sregs, "idt", kvm_sregs, idt); OFF(sregs, "cr0", kvm_sregs, cr0); OFF(sregs, "cr2", kvm_sregs, cr2);
  OFF(sregs, "cr3", kvm_sregs, cr3); OFF(sregs, "cr4", kvm_sregs, cr4); OFF(sregs, "cr8", kvm_sregs, cr8);
  OFF(sregs, "efer", kvm_sregs, efer); OFF(sregs, "apicBase", kvm_sregs, apic_base);
  OFF(sregs, "interruptBitmap", kvm_sregs, interrupt_bitmap);
  OFF(segment, "base", kvm_segment, base); OFF(segment, "limit", kvm_segment, limit);
  OFF(segment, "selector", kvm_segment, selector); OFF(segment, "type", kvm_segment, type);
  OFF(segment, "present", kvm_segment, present); OFF(segment, "dpl", kvm_segment, dpl);
  OFF(segment, "db", kvm_segment, db); OFF(segment, "s", kvm_segment, s); OFF(segment, "l", kvm_segment, l);
  OFF(segment, "g", kvm_segment, g); OFF(segment, "avl", kvm_segment, avl);
  OFF(segment, "unusable", kvm_segment, unusable);
  set_num(env, segment, "size", (double)sizeof(struct kvm_segment));
  OFF(dtable, "base", kvm_dtable, base); OFF(dtable, "limit", kvm_dtable, limit);
  set_num(env, dtable, "size", (double)sizeof(struct kvm_dtable));
  OFF(region, "slot", kvm_userspace_memory_region, slot);
  OFF(region, "flags", kvm_userspace_memory_region, flags);
  OFF(region, "guestPhysAddr", kvm_userspace_memory_region, guest_phys_addr);
  OFF(region, "memorySize", kvm_userspace_memory_region, memory_size);
  OFF(region, "userspaceAddr", kvm_userspace_memory_region, userspace_addr);
  set_num(env, region, "size", (double)sizeof(struct kvm_userspace_memory_region));
  set_num(env, misc, "KVM_MEM_READONLY", (double)KVM_MEM_READONLY);
  napi_value ioeventfd, zone, ring, entry;
  CHECK(napi_create_object(env, &ioeventfd));
  CHECK(napi_create_object(env, &zone));
  CHECK(napi_create_object(env, &ring));
  CHECK(napi_create_object(env, &entry));
  OFF(ioeventfd, "datamatch", kvm_ioeventfd, datamatch);
  OFF(ioeventfd, "addr", kvm_ioeventfd, addr);
  OFF(ioeventfd, "len", kvm_ioeventfd, len);
  OFF(ioeventfd, "fd", kvm_ioeventfd, fd);
  OFF(ioeventfd, "flags", kvm_ioeventfd, flags);
  set_num(env, ioeventfd, "size", (double)sizeof(struct kvm_ioeventfd));
  OFF(zone, "addr", kvm_coalesced_mmio_zone, addr);
  OFF(zone, "size", kvm_coalesced_mmio_zone, size);
  OFF(zone, "pio", kvm_coalesced_mmio_zone, pio);
  set_num(env, zone, "sizeofZone", (double)sizeof(struct kvm_coalesced_mmio_zone));
  OFF(ring, "first", kvm_coalesced_mmio_ring, first);
  OFF(ring, "last", kvm_coalesced_mmio_ring, last);
  OFF(ring, "entries", kvm_coalesced_mmio_ring, coalesced_mmio);
  // KVM_COALESCED_MMIO_MAX with the x86 page size (the header spells it with the kernel-only PAGE_SIZE).
  set_num(env, ring, "maxEntries", (double)((4096 - sizeof(struct kvm_coalesced_mmio_ring)) / sizeof(struct kvm_coalesced_mmio)));
  OFF(entry, "physAddr", kvm_coalesced_mmio, phys_addr);
  OFF(entry, "len", kvm_coalesced_mmio, len);
  OFF(entry, "pio", kvm_coalesced_mmio, pio);
  OFF(entry, "data", kvm_coalesced_mmio, data);
  set_num(env, entry, "size", (double)sizeof(struct kvm_coalesced_mmio));
#undef OFF
  set_group(env, abi, "ioeventfd", ioeventfd);
  set_group(env, abi, "coalescedMmioZone", zone);
  set_group(env, abi, "coalescedMmioRing", ring);
  set_group(env, abi, "coalescedMmio", entry);
  set_group(env, abi, "regs", regs);
  set_group(env, abi, "sregs", sregs);
  set_group(env, abi, "segment", segment);
  set_group(env, abi, "dtable", dtable);
  set_group(env, abi, "userspaceMemoryRegion", region);
  set_group(env, abi, "run", run);
  set_group(env, abi, "exitReason", exits);
  set_group(env, abi, "systemEventType", sys_events);
  set_group(env, abi, "caps", caps);
  set_group(env, abi, "ioctls", ioctls);
  set_group(env, abi, "sizes", sizes);
  set_group(env, abi, "misc", misc);
  set_group(env, abi, "flags", flags);
  return abi;
}

// vfioAbi(): every struct layout src/vfio/uapi.ts spells out, keyed "<TS table>.<TS field>"
// (test/vfio-uapi.test.ts compares every table entry with these, both ways).
static napi_value n_vfio_abi(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o;
  CHECK(napi_create_object(env, &o));
#define OFF(ts, type, field) set_num(env, o, ts, (double)offsetof(struct type, field))
#define SIZE(ts, type) set_num(env, o, ts, (double)sizeof(struct type))
  SIZE("DeviceInfo.size", vfio_device_info);
  OFF("DeviceInfo.flags", vfio_device_info, flags);
  OFF("DeviceInfo.numRegions", vfio_device_info, num_regions);
  OFF("DeviceInfo.numIrqs", vfio_device_info, num_irqs);
  SIZE("RegionInfo.size", vfio_region_info);
  OFF("RegionInfo.flags", vfio_region_info, flags);
  OFF("RegionInfo.index", vfio_region_info, index);
  OFF("RegionInfo.capOffset", vfio_region_info, cap_offset);
  OFF("RegionInfo.regionSize", vfio_region_info, size);
  OFF("RegionInfo.offset", vfio_region_info, offset);
  SIZE("CapHeader.size", vfio_info_cap_header);
  OFF("CapHeader.id", vfio_info_cap_header, id);
  OFF("CapHeader.version", vfio_info_cap_header, version);
  OFF("CapHeader.next", vfio_info_cap_header, next);
  OFF("SparseMmap.nrAreas", vfio_region_info_cap_sparse_mmap, nr_areas);
  OFF("SparseMmap.areas", vfio_region_info_cap_sparse_mmap, areas);
  SIZE("SparseMmap.areaSize", vfio_region_sparse_mmap_area);
  SIZE("DmaMap.size", vfio_iommu_type1_dma_map);
  OFF("DmaMap.flags", vfio_iommu_type1_dma_map, flags);
  OFF("DmaMap.vaddr", vfio_iommu_type1_dma_map, vaddr);
  OFF("DmaMap.iova", vfio_iommu_type1_dma_map, iova);
  OFF("DmaMap.mapSize", vfio_iommu_type1_dma_map, size);
  SIZE("DmaUnmap.size", vfio_iommu_type1_dma_unmap);
  OFF("DmaUnmap.flags", vfio_iommu_type1_dma_unmap, flags);
  OFF("DmaUnmap.iova", vfio_iommu_type1_dma_unmap, iova);
  OFF("DmaUnmap.unmapSize", vfio_iommu_type1_dma_unmap, size);
  SIZE("GroupStatus.size", vfio_group_status);
#undef OFF
#undef SIZE
  return o;
}

// Registered apart from the function table above so that table can grow without touching this.
static napi_value register_kvm_abi(napi_env env, napi_value exports) {
  napi_value fn, vfn;
  if (napi_create_function(env, "kvmAbi", NAPI_AUTO_LENGTH, n_kvm_abi, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "kvmAbi", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "vfioAbi", NAPI_AUTO_LENGTH, n_vfio_abi, NULL, &vfn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "vfioAbi", vfn) != napi_ok) return NULL;
  return exports;
}
