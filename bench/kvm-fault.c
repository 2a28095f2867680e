// kvm-fault: the plain-C floor of tsvmm's fault-to-completion latency (`tsvmm race --bar-order qemu`,
// README "Commands"). It runs the race guest (guests/race.S) from a boot image tsvmm wrote
// (src/boot/boot-image.ts; the same VM shape as the race: 2 vCPUs, no irqchip, no CPUID) and plays
// the VMM and the host side of one shm passthrough function with no JS:
//   - guest RAM: one memslot at GPA 0, as bench/kvm-loop.c;
//   - the function's memory BARs (--bar GPA:SIZE, the first one is the guest's BAR0): each a memfd
//     mapped shared and read/write, its memslot present while memory decode is on; BAR0 holds the
//     shm device's ID value at offset 0 (src/devices/pci/shm-backend.ts, SHM_DEVICE_ID_VALUE);
//   - its COMMAND register through 0xcf8/0xcfc (the toggler's read-modify-writes; the image must
//     use CF8 config access), every other config read all ones;
//   - MEM 1->0 (the host side, as the shm backend and vfio-pci): under the device's own lock, decode
//     off and every BAR mapping mprotect(PROT_NONE), then the VMM's part as --deleter says;
//   - MEM 0->1: decode on and the mappings read/write again under the device lock, then under the
//     map lock every deleted BAR memslot added back;
//   - an MMIO exit in a BAR (its memslot is gone): under the device lock, through the memfd
//     (pread/pwrite, never the mapping) while decode is on, else an Unsupported Request (a read
//     completes as all ones of its size, a write is dropped), as tsvmm's BAR slow path;
//   - KVM_RUN failing with EFAULT on the accessor: the recovery this program measures (below);
//   - the control device's VCPU_DONE write ends a vCPU's thread; anything else is fatal.
//
// The recovery: the accessor's KVM_RUN fails with EFAULT; under the map lock the BAR's memslot is
// deleted (by --deleter's choice of thread), and the accessor re-enters. Who deletes:
//   faulter  (default) the faulting accessor deletes its BAR's memslot itself; the toggler deletes the other BAR
//            memslots (tsvmm's lock-free retry: `race --bar-order qemu` reports nearly every fault
//            recovered without the lock, the faulting vCPU trapping its BAR while the toggler's
//            config write then deletes the rest);
//   other    the toggler takes the map lock before it revokes and deletes every BAR memslot before it
//            releases it; a faulting accessor waits for the lock and only re-enters;
//   race     the toggler deletes every BAR memslot still there after revoking; a faulting accessor
//            deletes its BAR's memslot if it comes first.
// --toggler-waits (faulter, race): after revoking, the toggler stays out of KVM_RUN, in user space,
// until the accessor got its EFAULT (fault) or until that access completed (completion), at most
// 5 ms, before it deletes its memslots and returns to the guest; none (default): it goes on at once.
// --delete-in helper: the faulting vCPU's own delete is issued by a helper thread (woken through a
// condition variable) while the vCPU's thread waits for it; vcpu (default): by the vCPU's thread.
// `faulter --toggler-waits fault` is tsvmm's usual sequence: its toggler is still inside the config
// write (user space) when the accessor faults, and deletes the other BAR's memslot once the
// accessor's delete is done, while the accessor re-enters.
// Clocks (CLOCK_MONOTONIC) run from KVM_RUN's return with EFAULT to the return of the accessor's
// next MMIO exit (the retried access completing as UR: the same interval tsvmm's
// faultToCompletionMicros measures; several faults before that exit are one interval). Its parts:
// lockWait (the map lock), delete (the accessor's own KVM_SET_USER_MEMORY_REGION, 0 when none),
// reentry (the rest: the next KVM_RUN up to its MMIO exit). Deletes the toggler issues are timed
// apart. At the end it prints one JSON line:
//   {"deleter": D, "togglerWaits": W, "deleteIn": H, "toggles": T, "faults": F, "intervals": N,
//    "faultToCompletionMicros": {"median", "p99", "min", "max", "medianParts": {lockWait, delete, reentry},
//                                "p99Parts": {...}},
//    "faulterDeleteMicros": {"samples", "median", "p99"}, "togglerDeleteMicros": {"samples", "median", "p99"},
//    "togglerFirstDeleteMicros": {...} (the first memslot the toggler deleted in each toggle),
//    "revocationMicros": {...} (the toggler's mprotect(PROT_NONE) of every BAR), "faulterDeletesDuringRevocation": K
//    (accessor deletes begun while those mprotect calls were still running),
//    "guest": {"accesses", "urReads", "badValues", "scratchStale"}}
//
//   kvm-fault [--deleter race|faulter|other] [--toggler-waits none|fault|completion] [--delete-in vcpu|helper] --bar GPA:SIZE [--bar GPA:SIZE]... IMAGE
//
// Exit status: 0 success, 1 bad image, unexpected guest behaviour, a bad value the guest saw or KVM
// failure, 2 no /dev/kvm, 64 usage.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "kvm-fault"
#include "boot-image.h" /* die(), struct image, read_image() */

#define VCPUS 2u /* the race's shape: vCPU 0 toggles, vCPU 1 accesses BAR0 */
#define MAX_BARS 6u
#define CTL_VCPU_DONE 0x08
#define KVM_TSS_GPA 0xfffbd000ul /* src/vmm/builtin-vm.ts */
/* The boot info page (src/boot/boot-info.ts). */
#define BOOT_INFO_GPA 0x7000u
#define BI_PCI_BDF 0x40
#define BI_BAR0 0x48
#define BI_CONFIG_ACCESS 0x58
#define BI_RESULTS_GPA 0x68
#define RESULT_STRIDE 0x80
#define R_ACCESSES 0x10
#define R_UR_READS 0x20
#define R_SCRATCH_STALE 0x38
#define R_BAD_VALUES 0x48
#define R_TOGGLES 0x70
#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define SHM_DEVICE_ID_VALUE 0x3154504d4d565354ull /* "TSVMMPT1", src/devices/pci/shm-backend.ts */
#define BAR_SLOT0 1u                             /* BAR i's memslot: BAR_SLOT0 + i (RAM is slot 0) */
#define MAX_SAMPLES 65536u
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum deleter { DELETER_RACE, DELETER_FAULTER, DELETER_OTHER };
static const char *const deleter_names[] = {"race", "faulter", "other"};

struct bar {
  uint64_t gpa, size;
  int fd;
  uint8_t *host;
  int slot_present; /* under map_lock */
};

struct vcpu {
  int index;
  int fd;
  struct kvm_run *run;
};

/* Microsecond samples with their count (kept up to MAX_SAMPLES). */
struct samples {
  double *v;
  uint32_t n;
};

static int vm_fd;
static uint64_t control_base;
static uint8_t *ram;
static struct bar bars[MAX_BARS];
static unsigned nbars;
static enum deleter deleter = DELETER_FAULTER;
enum wait { WAIT_NONE, WAIT_FAULT, WAIT_COMPLETION };
static const char *const wait_names[] = {"none", "fault", "completion"};
static enum wait toggler_waits = WAIT_NONE;
/* --delete-in helper: the faulting vCPU's memslot delete is issued by a helper thread it waits for. */
static int delete_in_helper;
static const char *const delete_in_names[] = {"vcpu", "helper"};
static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cv = PTHREAD_COND_INITIALIZER;
static int helper_request = -1, helper_done;
static double helper_micros;
static uint32_t config_address; /* the toggler's last 0xcf8 write (toggler thread only) */
static uint16_t command = PCI_COMMAND_MEMORY;
static uint32_t bdf;
/* The device's own lock (vfio-pci's memory_lock, the shm backend's): decode state and mappings. */
static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;
static int memory_enabled = 1; /* under device_lock */
/* The VMM's memory-map lock: memslot changes. */
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t faults_seen;      /* EFAULTs the accessor got (counted before it takes the map lock) */
static atomic_uint_fast64_t faults_completed; /* fault intervals ended by the MMIO exit */
static uint64_t efaults;                     /* accessor thread only */
static atomic_int revoking;                  /* the toggler is inside its mprotect(PROT_NONE) calls */
static uint64_t deletes_during_revocation;   /* accessor thread only */
static pthread_barrier_t start_barrier;

static struct samples total, lock_wait, faulter_delete, reentry, faulter_deletes, toggler_deletes, toggler_first_deletes, revocations;

/* read_image(), and the race's shape: its 2 vCPUs, and RAM that holds the boot info page. */
static void read_race_image(const char *path, struct image *img) {
  read_image(path, img);
  if (img->vcpus != VCPUS) die("%s: %u vCPUs at offset 0xc; the race shape this measures has %u", path, img->vcpus, VCPUS);
  if (img->ram_size < BOOT_INFO_GPA + 0x1000)
    die("%s: RAM size 0x%" PRIx64 " must be a multiple of 4096 from 0x%x up to 0x%llx", path, img->ram_size, BOOT_INFO_GPA + 0x1000, MAX_RAM);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void add_sample(struct samples *s, double us) {
  if (!s->v) {
    s->v = calloc(MAX_SAMPLES, sizeof(double));
    if (!s->v) die("out of memory for samples");
  }
  if (s->n < MAX_SAMPLES) s->v[s->n] = us;
  s->n++;
}

static void set_slot(unsigned i, int present) {
  struct bar *b = &bars[i];
  struct kvm_userspace_memory_region r = {
      .slot = BAR_SLOT0 + i, .flags = 0, .guest_phys_addr = b->gpa, .memory_size = present ? b->size : 0, .userspace_addr = (uint64_t)(uintptr_t)b->host};
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
    die("KVM_SET_USER_MEMORY_REGION %s BAR at 0x%" PRIx64 ": %s", present ? "add" : "delete", b->gpa, strerror(errno));
  b->slot_present = present;
}

/* Deletes BAR i's memslot; returns the ioctl's time in us. Call with map_lock held. */
static double delete_slot(unsigned i) {
  double t0 = now_us();
  set_slot(i, 0);
  return now_us() - t0;
}

static void *helper_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&helper_mu);
  for (;;) {
    while (helper_request < 0) pthread_cond_wait(&helper_cv, &helper_mu);
    int i = helper_request;
    helper_request = -1;
    pthread_mutex_unlock(&helper_mu);
    double d = delete_slot((unsigned)i);
    pthread_mutex_lock(&helper_mu);
    helper_micros = d;
    helper_done = 1;
    pthread_cond_broadcast(&helper_cv);
  }
  return NULL;
}

/* delete_slot() issued by the helper thread; the caller (holding map_lock) waits for it. */
static double delete_slot_in_helper(unsigned i) {
  pthread_mutex_lock(&helper_mu);
  helper_request = (int)i;
  helper_done = 0;
  pthread_cond_broadcast(&helper_cv);
  while (!helper_done) pthread_cond_wait(&helper_cv, &helper_mu);
  pthread_mutex_unlock(&helper_mu);
  return helper_micros;
}

static void set_mappings(int prot) {
  for (unsigned i = 0; i < nbars; i++)
    if (mprotect(bars[i].host, bars[i].size, prot) < 0) die("mprotect BAR at 0x%" PRIx64 ": %s", bars[i].gpa, strerror(errno));
}

/* Waits (in user space, out of KVM_RUN) until *counter moves from `before`, at most 5 ms. */
static void wait_for(atomic_uint_fast64_t *counter, uint64_t before) {
  double until = now_us() + 5000;
  while (atomic_load(counter) == before && now_us() < until) sched_yield();
}

/* The toggler's COMMAND write: the host side, then the VMM's memslots (the file comment). */
static void write_command(uint16_t value) {
  int was = (command & PCI_COMMAND_MEMORY) != 0, now = (value & PCI_COMMAND_MEMORY) != 0;
  command = value;
  if (was == now) return;
  if (!now) {
    if (deleter == DELETER_OTHER) pthread_mutex_lock(&map_lock);
    uint64_t seen = atomic_load(&faults_seen), completed = atomic_load(&faults_completed);
    pthread_mutex_lock(&device_lock);
    memory_enabled = 0;
    double t0 = now_us();
    atomic_store(&revoking, 1);
    set_mappings(PROT_NONE);
    atomic_store(&revoking, 0);
    add_sample(&revocations, now_us() - t0);
    pthread_mutex_unlock(&device_lock);
    if (toggler_waits == WAIT_FAULT) wait_for(&faults_seen, seen);
    if (toggler_waits == WAIT_COMPLETION) wait_for(&faults_completed, completed);
    if (deleter != DELETER_OTHER) pthread_mutex_lock(&map_lock);
    /* faulter: BAR0's memslot is the faulting vCPU's to delete; the others are still the toggler's. */
    int first = 1;
    for (unsigned i = deleter == DELETER_FAULTER ? 1 : 0; i < nbars; i++) {
      if (!bars[i].slot_present) continue;
      double d = delete_slot(i);
      add_sample(&toggler_deletes, d);
      if (first) add_sample(&toggler_first_deletes, d);
      first = 0;
    }
    pthread_mutex_unlock(&map_lock);
    return;
  }
  pthread_mutex_lock(&device_lock);
  memory_enabled = 1;
  set_mappings(PROT_READ | PROT_WRITE);
  pthread_mutex_unlock(&device_lock);
  pthread_mutex_lock(&map_lock);
  for (unsigned i = 0; i < nbars; i++)
    if (!bars[i].slot_present) set_slot(i, 1);
  pthread_mutex_unlock(&map_lock);
}

static void unexpected(struct vcpu *v, const char *what) __attribute__((noreturn));
static void unexpected(struct vcpu *v, const char *what) {
  struct kvm_run *run = v->run;
  if (run->exit_reason == KVM_EXIT_IO)
    fprintf(stderr, "kvm-fault: vCPU %d: %s: port I/O %s port 0x%x size %u\n", v->index, what, run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
            run->io.port, run->io.size);
  else if (run->exit_reason == KVM_EXIT_MMIO)
    fprintf(stderr, "kvm-fault: vCPU %d: %s: MMIO %s at 0x%llx len %u\n", v->index, what, run->mmio.is_write ? "write" : "read", run->mmio.phys_addr,
            run->mmio.len);
  else
    fprintf(stderr, "kvm-fault: vCPU %d: %s: exit reason %u\n", v->index, what, run->exit_reason);
  struct kvm_regs regs;
  if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0) fprintf(stderr, "kvm-fault: vCPU %d: rip 0x%llx\n", v->index, regs.rip);
  exit(1);
}

static void toggler_io(struct vcpu *v) {
  struct kvm_run *run = v->run;
  uint8_t *data = (uint8_t *)run + run->io.data_offset;
  if (run->io.count != 1) unexpected(v, "string port I/O");
  if (run->io.port == PCI_CONFIG_ADDRESS && run->io.size == 4 && run->io.direction == KVM_EXIT_IO_OUT) {
    config_address = rd32(data);
    return;
  }
  uint32_t command_address = 0x80000000u | bdf << 8 | PCI_COMMAND;
  if (run->io.port == PCI_CONFIG_DATA && run->io.size == 2 && config_address == command_address) {
    if (run->io.direction == KVM_EXIT_IO_IN) {
      memcpy(data, &command, 2);
    } else {
      uint16_t value;
      memcpy(&value, data, 2);
      write_command(value);
    }
    return;
  }
  if (run->io.direction == KVM_EXIT_IO_IN) {
    memset(data, 0xff, run->io.size);
    return;
  }
  unexpected(v, "config write other than COMMAND");
}

/* An MMIO exit in a BAR: the slow path (the memfd) while decode is on, else an Unsupported Request. */
static int bar_mmio(struct kvm_run *run) {
  uint64_t a = run->mmio.phys_addr;
  for (unsigned i = 0; i < nbars; i++) {
    struct bar *b = &bars[i];
    if (a < b->gpa || a + run->mmio.len > b->gpa + b->size) continue;
    pthread_mutex_lock(&device_lock);
    if (memory_enabled) {
      ssize_t r = run->mmio.is_write ? pwrite(b->fd, run->mmio.data, run->mmio.len, (off_t)(a - b->gpa))
                                     : pread(b->fd, run->mmio.data, run->mmio.len, (off_t)(a - b->gpa));
      if (r != (ssize_t)run->mmio.len) die("slow-path access to BAR at 0x%" PRIx64 ": %s", b->gpa, r < 0 ? strerror(errno) : "short");
    } else if (!run->mmio.is_write) {
      memset(run->mmio.data, 0xff, run->mmio.len);
    }
    pthread_mutex_unlock(&device_lock);
    return 1;
  }
  return 0;
}

static void *vcpu_thread(void *arg) {
  struct vcpu *v = arg;
  struct kvm_run *run = v->run;
  const uint64_t done = control_base + CTL_VCPU_DONE;
  /* The fault interval in progress (accessor): its start and parts so far, in us. */
  int pending = 0;
  double start = 0, waited = 0, deleted = 0;
  pthread_barrier_wait(&start_barrier);
  for (;;) {
    int ret = ioctl(v->fd, KVM_RUN, 0);
    double t_ret = pending || ret < 0 ? now_us() : 0;
    if (ret < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno != EFAULT || v->index == 0) die("vCPU %d: KVM_RUN failed: %s", v->index, strerror(errno));
      /* The recovery: the map lock, the BAR's memslot deleted if still there, then re-entry. */
      efaults++;
      atomic_fetch_add(&faults_seen, 1);
      if (!pending) {
        pending = 1;
        start = t_ret;
        waited = deleted = 0;
      }
      pthread_mutex_lock(&map_lock);
      double t_locked = now_us();
      waited += t_locked - t_ret;
      if (deleter != DELETER_OTHER && bars[0].slot_present) {
        deletes_during_revocation += atomic_load(&revoking) != 0;
        double t0 = now_us();
        (void)(delete_in_helper ? delete_slot_in_helper(0) : delete_slot(0));
        double d = now_us() - t0;
        deleted += d;
        add_sample(&faulter_deletes, d);
      }
      pthread_mutex_unlock(&map_lock);
      continue;
    }
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
      if (v->index != 0) unexpected(v, "port I/O from the accessor");
      toggler_io(v);
      continue;
    case KVM_EXIT_MMIO:
      if (pending) {
        double t = t_ret - start;
        add_sample(&total, t);
        add_sample(&lock_wait, waited);
        add_sample(&faulter_delete, deleted);
        add_sample(&reentry, t - waited - deleted);
        pending = 0;
        atomic_fetch_add(&faults_completed, 1);
      }
      if (run->mmio.is_write && run->mmio.phys_addr == done) return NULL;
      if (bar_mmio(run)) continue;
      unexpected(v, "unexpected MMIO");
    default:
      unexpected(v, "unexpected exit");
    }
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Percentile p by nearest rank over the kept samples (sorts them). */
static double pct(struct samples *s, double p) {
  uint32_t n = s->n < MAX_SAMPLES ? s->n : MAX_SAMPLES;
  if (n == 0) return 0;
  qsort(s->v, n, sizeof(double), cmp_double);
  double r = p / 100.0 * n;
  uint32_t k = (uint32_t)r;
  if ((double)k < r) k++;
  return s->v[k == 0 ? 0 : k - 1];
}

static void parse_bar(const char *arg) {
  if (nbars == MAX_BARS) die("at most %u --bar options", MAX_BARS);
  char *end;
  errno = 0;
  uint64_t gpa = strtoull(arg, &end, 0);
  if (errno || *end != ':') die("--bar wants GPA:SIZE, got '%s'", arg);
  uint64_t size = strtoull(end + 1, &end, 0);
  if (errno || *end || size == 0 || size % 4096 || gpa % 4096) die("--bar wants a page-aligned GPA:SIZE, got '%s'", arg);
  bars[nbars].gpa = gpa;
  bars[nbars].size = size;
  nbars++;
}

/* The index of `value` in names[0..n-1] (an option's choices); anything else is a usage error (64). */
static int parse_choice(const char *flag, const char *value, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(value, names[i]) == 0) return i;
  fprintf(stderr, "kvm-fault: %s must be ", flag);
  for (int i = 0; i < n; i++) fprintf(stderr, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
  fprintf(stderr, ", got '%s'\n", value);
  exit(64);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--deleter") == 0 && i + 1 < argc) {
      deleter = (enum deleter)parse_choice("--deleter", argv[++i], deleter_names, COUNT(deleter_names));
    } else if (strcmp(argv[i], "--toggler-waits") == 0 && i + 1 < argc) {
      toggler_waits = (enum wait)parse_choice("--toggler-waits", argv[++i], wait_names, COUNT(wait_names));
    } else if (strcmp(argv[i], "--delete-in") == 0 && i + 1 < argc) {
      delete_in_helper = parse_choice("--delete-in", argv[++i], delete_in_names, COUNT(delete_in_names));
    } else if (strcmp(argv[i], "--bar") == 0 && i + 1 < argc) {
      parse_bar(argv[++i]);
    } else if (argv[i][0] != '-' && !path) {
      path = argv[i];
    } else {
      path = NULL;
      break;
    }
  }
  if (!path || nbars == 0) {
    fprintf(stderr, "usage: kvm-fault [--deleter race|faulter|other] [--toggler-waits none|fault|completion] [--delete-in vcpu|helper] --bar GPA:SIZE [--bar GPA:SIZE]... BOOT_IMAGE\n");
    return 64;
  }
  if (toggler_waits != WAIT_NONE && deleter == DELETER_OTHER) {
    fprintf(stderr, "kvm-fault: --toggler-waits needs a --deleter that lets the faulting vCPU delete (race or faulter)\n");
    return 64;
  }
  static struct image img;
  read_race_image(path, &img);
  control_base = img.control_base;

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    fprintf(stderr, "kvm-fault: cannot open /dev/kvm: %s (this machine has no usable KVM)\n", strerror(errno));
    return 2;
  }
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("unexpected KVM API version");
  do vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
  while (vm_fd < 0 && errno == EINTR);
  if (vm_fd < 0) die("KVM_CREATE_VM: %s", strerror(errno));
  if (ioctl(vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_GPA) < 0) die("KVM_SET_TSS_ADDR: %s", strerror(errno));

  ram = mmap(NULL, img.ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) die("mmap of %" PRIu64 " bytes of guest RAM: %s", img.ram_size, strerror(errno));
  memcpy(ram, img.data, img.data_size);
  struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = img.ram_size, .userspace_addr = (uint64_t)(uintptr_t)ram};
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION (RAM): %s", strerror(errno));

  const uint8_t *bi = ram + BOOT_INFO_GPA;
  if (rd64(bi + BI_CONFIG_ACCESS) != 0) die("the image's race toggles through ECAM; this program answers 0xcf8/0xcfc only");
  if (rd64(bi + BI_BAR0) != bars[0].gpa) die("the first --bar is at 0x%" PRIx64 "; the guest's BAR0 is at 0x%" PRIx64, bars[0].gpa, rd64(bi + BI_BAR0));
  bdf = (uint32_t)rd64(bi + BI_PCI_BDF);
  uint64_t results = rd64(bi + BI_RESULTS_GPA);
  if (results + VCPUS * RESULT_STRIDE > img.ram_size) die("results area at 0x%" PRIx64 " is outside RAM", results);
  for (unsigned i = 0; i < nbars; i++) {
    struct bar *b = &bars[i];
    b->fd = memfd_create("kvm-fault-bar", MFD_CLOEXEC);
    if (b->fd < 0 || ftruncate(b->fd, (off_t)b->size) < 0) die("memfd for BAR at 0x%" PRIx64 ": %s", b->gpa, strerror(errno));
    b->host = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
    if (b->host == MAP_FAILED) die("mmap of BAR at 0x%" PRIx64 ": %s", b->gpa, strerror(errno));
    set_slot(i, 1);
  }
  uint64_t id = SHM_DEVICE_ID_VALUE;
  if (pwrite(bars[0].fd, &id, 8, 0) != 8) die("writing the ID register: %s", strerror(errno));

  int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE: %s", mmap_size < 0 ? strerror(errno) : "too small");
  static struct vcpu vcpus[VCPUS];
  for (uint32_t i = 0; i < VCPUS; i++) {
    struct vcpu *v = &vcpus[i];
    v->index = (int)i;
    v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, i);
    if (v->fd < 0) die("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
    v->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) die("mmap of vCPU %u's kvm_run: %s", i, strerror(errno));
    if (ioctl(v->fd, KVM_SET_SREGS, &img.sregs[i]) < 0) die("KVM_SET_SREGS vCPU %u: %s", i, strerror(errno));
    if (ioctl(v->fd, KVM_SET_REGS, &img.regs[i]) < 0) die("KVM_SET_REGS vCPU %u: %s", i, strerror(errno));
  }
  if (delete_in_helper) {
    pthread_t helper;
    int e = pthread_create(&helper, NULL, helper_thread, NULL);
    if (e) die("pthread_create: %s", strerror(e));
  }
  pthread_barrier_init(&start_barrier, NULL, VCPUS);
  pthread_t threads[VCPUS];
  for (uint32_t i = 0; i < VCPUS; i++) {
    int e = pthread_create(&threads[i], NULL, vcpu_thread, &vcpus[i]);
    if (e) die("pthread_create: %s", strerror(e));
  }
  for (uint32_t i = 0; i < VCPUS; i++) pthread_join(threads[i], NULL);

  const uint8_t *acc = ram + results + RESULT_STRIDE;
  uint64_t bad = rd64(acc + R_BAD_VALUES);
  printf("{\"deleter\": \"%s\", \"togglerWaits\": \"%s\", \"deleteIn\": \"%s\", \"toggles\": %" PRIu64 ", \"faults\": %" PRIu64 ", \"intervals\": %u", deleter_names[deleter],
         wait_names[toggler_waits], delete_in_names[delete_in_helper], rd64(ram + results + R_TOGGLES), efaults, total.n);
  printf(", \"faultToCompletionMicros\": {\"median\": %.3f, \"p99\": %.3f, \"min\": %.3f, \"max\": %.3f", pct(&total, 50), pct(&total, 99), pct(&total, 0),
         pct(&total, 100));
  printf(", \"medianParts\": {\"lockWait\": %.3f, \"delete\": %.3f, \"reentry\": %.3f}", pct(&lock_wait, 50), pct(&faulter_delete, 50), pct(&reentry, 50));
  printf(", \"p99Parts\": {\"lockWait\": %.3f, \"delete\": %.3f, \"reentry\": %.3f}}", pct(&lock_wait, 99), pct(&faulter_delete, 99), pct(&reentry, 99));
  printf(", \"faulterDeleteMicros\": {\"samples\": %u, \"median\": %.3f, \"p99\": %.3f}", faulter_deletes.n, pct(&faulter_deletes, 50),
         pct(&faulter_deletes, 99));
  printf(", \"togglerDeleteMicros\": {\"samples\": %u, \"median\": %.3f, \"p99\": %.3f}", toggler_deletes.n, pct(&toggler_deletes, 50),
         pct(&toggler_deletes, 99));
  printf(", \"togglerFirstDeleteMicros\": {\"samples\": %u, \"median\": %.3f, \"p99\": %.3f}", toggler_first_deletes.n, pct(&toggler_first_deletes, 50),
         pct(&toggler_first_deletes, 99));
  printf(", \"revocationMicros\": {\"samples\": %u, \"median\": %.3f, \"p99\": %.3f}, \"faulterDeletesDuringRevocation\": %" PRIu64, revocations.n,
         pct(&revocations, 50), pct(&revocations, 99), deletes_during_revocation);
  printf(", \"guest\": {\"accesses\": %" PRIu64 ", \"urReads\": %" PRIu64 ", \"scratchStale\": %" PRIu64 ", \"badValues\": %" PRIu64 "}}\n",
         rd64(acc + R_ACCESSES), rd64(acc + R_UR_READS), rd64(acc + R_SCRATCH_STALE), bad);
  if (bad) {
    fprintf(stderr, "kvm-fault: the accessor saw %" PRIu64 " bad values\n", bad);
    return 1;
  }
  return 0;
}
