// kvm-loop: the plain-C baseline of tsvmm's exit benchmark. It runs a guest from a boot image that
// tsvmm wrote (src/boot/boot-image.ts documents the format) with the same KVM_RUN round trips as
// tsvmm, and no JS: one memslot of guest RAM at GPA 0, the vCPU registers exactly as tsvmm set
// them (KVM_SET_SREGS, then KVM_SET_REGS), no CPUID and no in-kernel irqchip (as tsvmm), and one
// pthread per vCPU looping on KVM_RUN. It answers:
//   - PIO OUT of 4 bytes to port 0x520                 counted (a device hit)
//   - MMIO write to controlBase + 0x18 (BENCH)         counted (a device hit)
//   - MMIO write to controlBase + 0x08 (VCPU_DONE)     the vCPU's thread ends
//   - anything else                                    printed; the process exits with status 1
// When every thread has ended it prints one JSON line:
//   {"exits": N, "seconds": S, "exitsPerSecond": R, "deviceHits": H, "vcpus": V,
//    "steady": {"afterExits": W, "exits": N2, "seconds": S2, "exitsPerSecond": R2}}
// N counts every KVM_RUN that returned with an exit (device hits plus the VCPU_DONE exits); S runs
// from the first KVM_RUN of any vCPU to the end of the last one. The steady-state window (only with
// --steady-after W) is the one tsvmm's VcpuControl.steadySeconds() measures: it starts when a vCPU
// has handled its W-th exit (the earliest vCPU's) and ends with the last one; N2 = N - W * V.
//
//   kvm-loop [--steady-after W] IMAGE
//                           run it (needs /dev/kvm: exit status 2 when it cannot be opened)
//   kvm-loop --check IMAGE  only parse the image and print a JSON summary (no KVM needed)
//   kvm-loop --first-exit IMAGE
//                           the start-time baseline: at the first exit of any vCPU (whatever its
//                           reason) write "first exit\n" to stdout and exit 0; the bench's clock
//                           runs from its spawn to that byte
//
// Exit status: 0 success, 1 bad image or unexpected guest behaviour or KVM failure, 2 no /dev/kvm,
// 64 usage.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "kvm-loop"
#include "boot-image.h" /* die(), struct image, read_image() */

#define MAX_VCPUS IMAGE_MAX_VCPUS
#define BENCH_PORT 0x520 /* src/devices/control.ts BENCH_PORT */
#define CTL_VCPU_DONE 0x08
#define CTL_BENCH 0x18
/* Intel VMX needs a TSS region; the same address tsvmm's src/vmm/vm.ts uses. */
#define KVM_TSS_GPA 0xfffbd000ul

struct vcpu {
  int index;
  int fd;
  struct kvm_run *run;
  uint64_t control_base;
  uint64_t exits;
  uint64_t hits;
  struct timespec start, steady, end;
};

static pthread_barrier_t start_barrier;
static int first_exit_only;
static uint64_t steady_after; /* 0: no steady-state window */

static void print_check(const struct image *img) {
  printf("{\"vcpus\": %u, \"ramSize\": %" PRIu64 ", \"dataSize\": %" PRIu64 ", \"controlBase\": %" PRIu64 ", \"vcpuStates\": [", img->vcpus,
         img->ram_size, img->data_size, img->control_base);
  for (uint32_t i = 0; i < img->vcpus; i++) {
    const struct kvm_regs *r = &img->regs[i];
    const struct kvm_sregs *s = &img->sregs[i];
    printf("%s{\"rip\": %llu, \"rsp\": %llu, \"rdi\": %llu, \"rsi\": %llu, \"rdx\": %llu, \"rflags\": %llu, \"cs\": %u, \"csL\": %u, "
           "\"tr\": %u, \"trBase\": %llu, \"gdtBase\": %llu, \"gdtLimit\": %u, \"cr0\": %llu, \"cr3\": %llu, \"cr4\": %llu, "
           "\"efer\": %llu, \"apicBase\": %llu}",
           i ? ", " : "", r->rip, r->rsp, r->rdi, r->rsi, r->rdx, r->rflags, s->cs.selector, s->cs.l, s->tr.selector, s->tr.base,
           s->gdt.base, s->gdt.limit, s->cr0, s->cr3, s->cr4, s->efer, s->apic_base);
  }
  uint64_t nonzero = 0;
  for (uint64_t i = 0; i < img->data_size; i++) nonzero += img->data[i] != 0;
  printf("], \"nonZeroDataBytes\": %" PRIu64 "}\n", nonzero);
}

static double seconds(const struct timespec *t) { return (double)t->tv_sec + (double)t->tv_nsec / 1e9; }

static void unexpected(struct vcpu *v, const char *what) __attribute__((noreturn));
static void unexpected(struct vcpu *v, const char *what) {
  struct kvm_run *run = v->run;
  switch (run->exit_reason) {
  case KVM_EXIT_IO: {
    const uint8_t *d = (const uint8_t *)run + run->io.data_offset;
    uint64_t val = 0;
    memcpy(&val, d, run->io.size <= 8 ? run->io.size : 8);
    fprintf(stderr, "kvm-loop: vCPU %d: %s: port I/O %s port 0x%x size %u count %u data 0x%" PRIx64 "\n", v->index, what,
            run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port, run->io.size, run->io.count, val);
    break;
  }
  case KVM_EXIT_MMIO: {
    uint64_t val = 0;
    memcpy(&val, run->mmio.data, run->mmio.len <= 8 ? run->mmio.len : 8);
    fprintf(stderr, "kvm-loop: vCPU %d: %s: MMIO %s at 0x%llx len %u data 0x%" PRIx64 "\n", v->index, what, run->mmio.is_write ? "write" : "read",
            run->mmio.phys_addr, run->mmio.len, val);
    break;
  }
  case KVM_EXIT_INTERNAL_ERROR:
    fprintf(stderr, "kvm-loop: vCPU %d: %s: KVM internal error, suberror %u\n", v->index, what, run->internal.suberror);
    for (uint32_t i = 0; i < run->internal.ndata && i < 16; i++)
      fprintf(stderr, "kvm-loop:   data[%u] = 0x%llx\n", i, run->internal.data[i]);
    break;
  case KVM_EXIT_FAIL_ENTRY:
    fprintf(stderr, "kvm-loop: vCPU %d: %s: entry failed, hardware reason 0x%llx\n", v->index, what,
            (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    break;
  default:
    fprintf(stderr, "kvm-loop: vCPU %d: %s: exit reason %u\n", v->index, what, run->exit_reason);
  }
  struct kvm_regs regs;
  if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0) fprintf(stderr, "kvm-loop: vCPU %d: rip 0x%llx rsp 0x%llx\n", v->index, regs.rip, regs.rsp);
  exit(1);
}

static void *vcpu_thread(void *arg) {
  struct vcpu *v = arg;
  struct kvm_run *run = v->run;
  const uint64_t bench = v->control_base + CTL_BENCH;
  const uint64_t done = v->control_base + CTL_VCPU_DONE;
  pthread_barrier_wait(&start_barrier);
  clock_gettime(CLOCK_MONOTONIC, &v->start);
  for (;;) {
    if (ioctl(v->fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fprintf(stderr, "kvm-loop: vCPU %d: KVM_RUN failed: %s (exit_reason %u)\n", v->index, strerror(errno), run->exit_reason);
      exit(1);
    }
    v->exits++;
    if (first_exit_only) {
      static const char line[] = "first exit\n";
      if (write(1, line, sizeof line - 1) < 0) _exit(1);
      _exit(0);
    }
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
      if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == BENCH_PORT && run->io.size == 4) {
        v->hits += run->io.count;
        if (v->exits == steady_after) clock_gettime(CLOCK_MONOTONIC, &v->steady);
        continue;
      }
      unexpected(v, "unexpected port I/O");
    case KVM_EXIT_MMIO:
      if (run->mmio.is_write && run->mmio.phys_addr == bench) {
        v->hits++;
        if (v->exits == steady_after) clock_gettime(CLOCK_MONOTONIC, &v->steady);
        continue;
      }
      if (run->mmio.is_write && run->mmio.phys_addr == done) {
        clock_gettime(CLOCK_MONOTONIC, &v->end);
        return NULL;
      }
      unexpected(v, "unexpected MMIO");
    default:
      unexpected(v, "unexpected exit");
    }
  }
}

int main(int argc, char **argv) {
  int check = 0;
  const char *path = NULL;
  if (argc == 3 && strcmp(argv[1], "--check") == 0) {
    check = 1;
    path = argv[2];
  } else if (argc == 3 && strcmp(argv[1], "--first-exit") == 0) {
    first_exit_only = 1;
    path = argv[2];
  } else if (argc == 4 && strcmp(argv[1], "--steady-after") == 0 && argv[3][0] != '-') {
    char *end;
    errno = 0;
    unsigned long long w = strtoull(argv[2], &end, 10);
    if (errno || *end || argv[2][0] < '0' || argv[2][0] > '9' || w == 0) {
      fprintf(stderr, "kvm-loop: --steady-after needs a positive exit count, got '%s'\n", argv[2]);
      return 64;
    }
    steady_after = w;
    path = argv[3];
  } else if (argc == 2 && argv[1][0] != '-') {
    path = argv[1];
  } else {
    fprintf(stderr, "usage: kvm-loop [--check | --first-exit | --steady-after EXITS] BOOT_IMAGE\n");
    return 64;
  }
  static struct image img;
  read_image(path, &img);
  if (check) {
    print_check(&img);
    return 0;
  }

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    fprintf(stderr, "kvm-loop: cannot open /dev/kvm: %s (this machine has no usable KVM)\n", strerror(errno));
    return 2;
  }
  int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) die("KVM API version %d, expected %d", api, KVM_API_VERSION);
  int vm;
  do vm = ioctl(kvm, KVM_CREATE_VM, 0);
  while (vm < 0 && errno == EINTR);
  if (vm < 0) die("KVM_CREATE_VM: %s", strerror(errno));
  if (ioctl(vm, KVM_SET_TSS_ADDR, KVM_TSS_GPA) < 0) die("KVM_SET_TSS_ADDR: %s", strerror(errno));

  void *ram = mmap(NULL, img.ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) die("mmap of %" PRIu64 " bytes of guest RAM: %s", img.ram_size, strerror(errno));
  memcpy(ram, img.data, img.data_size);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = img.ram_size, .userspace_addr = (uint64_t)(uintptr_t)ram};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

  int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE: %s", mmap_size < 0 ? strerror(errno) : "too small");
  static struct vcpu vcpus[MAX_VCPUS];
  for (uint32_t i = 0; i < img.vcpus; i++) {
    struct vcpu *v = &vcpus[i];
    v->index = (int)i;
    v->control_base = img.control_base;
    v->fd = ioctl(vm, KVM_CREATE_VCPU, i);
    if (v->fd < 0) die("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
    v->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) die("mmap of vCPU %u's kvm_run: %s", i, strerror(errno));
    if (ioctl(v->fd, KVM_SET_SREGS, &img.sregs[i]) < 0) die("KVM_SET_SREGS vCPU %u: %s", i, strerror(errno));
    if (ioctl(v->fd, KVM_SET_REGS, &img.regs[i]) < 0) die("KVM_SET_REGS vCPU %u: %s", i, strerror(errno));
  }

  pthread_barrier_init(&start_barrier, NULL, img.vcpus);
  pthread_t threads[MAX_VCPUS];
  for (uint32_t i = 0; i < img.vcpus; i++) {
    int e = pthread_create(&threads[i], NULL, vcpu_thread, &vcpus[i]);
    if (e) die("pthread_create: %s", strerror(e));
  }
  uint64_t exits = 0, hits = 0;
  double t0 = 0, t1 = 0, ts = 0;
  for (uint32_t i = 0; i < img.vcpus; i++) {
    pthread_join(threads[i], NULL);
    exits += vcpus[i].exits;
    hits += vcpus[i].hits;
    double s = seconds(&vcpus[i].start), e = seconds(&vcpus[i].end), w = seconds(&vcpus[i].steady);
    if (i == 0 || s < t0) t0 = s;
    if (i == 0 || e > t1) t1 = e;
    if (steady_after && vcpus[i].exits <= steady_after) die("vCPU %u made %" PRIu64 " exits: none after --steady-after %" PRIu64, i, vcpus[i].exits, steady_after);
    if (i == 0 || w < ts) ts = w;
  }
  double secs = t1 - t0;
  printf("{\"exits\": %" PRIu64 ", \"seconds\": %.6f, \"exitsPerSecond\": %.1f, \"deviceHits\": %" PRIu64 ", \"vcpus\": %u", exits, secs,
         secs > 0 ? (double)exits / secs : 0.0, hits, img.vcpus);
  if (steady_after) {
    uint64_t n = exits - steady_after * img.vcpus;
    double ss = t1 - ts;
    printf(", \"steady\": {\"afterExits\": %" PRIu64 ", \"exits\": %" PRIu64 ", \"seconds\": %.6f, \"exitsPerSecond\": %.1f}", steady_after, n, ss,
           ss > 0 ? (double)n / ss : 0.0);
  }
  printf("}\n");
  return 0;
}
