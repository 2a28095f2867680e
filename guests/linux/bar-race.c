// The field failure, reproduced inside a Linux guest: a "driver" on CPU 0 clears and sets
// PCI_COMMAND.MEM of the passthrough function through its sysfs config file (so the write goes
// through the guest kernel's PCI core and its config-space lock, then CF8/CFC), while accessor
// threads pinned to CPUs 1..N-1 read and write its BAR through an mmap of sysfs resourceN.
//
// Every value is checked: an ID read must return the device's ID or all ones (decode off: a PCI
// Unsupported Request); a scratch write must read back as written, or as all ones, or as a value
// in [last confirmed, just written): an earlier write of this thread that landed while this one was
// dropped with decode off (each thread writes increasing values). Anything else is a bad value.
// Around each access the toggler's sequence number is read: if it was even and unchanged, decode was
// on the whole time, so an all-ones answer is counted as urWhileDecodeOn and a stale read-back as a
// lost write. Neither can happen while only the guest changes decode; a host that takes the device
// away on its own (tsvmm race --host-revoke) makes both legitimate. The summary is one JSON line on
// stdout, prefixed "TSVMM-RACE-RESULT ".
//
// Usage: bar-race [--toggles N] [--vendor 0xVVVV --device 0xDDDD] [--bar N] [--id 0xVALUE]
// Defaults: tsvmm's shm device (5453:0001, BAR0, ID "TSVMMPT1"); any option can also come from the
// kernel command line as tsvmm.race.<option>=<value>.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ACCESSORS 63
#define ID_OFFSET 0x00
#define SCRATCH_OFFSET 0x100
#define ALL_ONES UINT64_MAX
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x02

static unsigned long toggles = 2000;
static unsigned vendor = 0x5453, device = 0x0001, bar = 0;
static uint64_t id_value = 0x3154504d4d565354ull; /* "TSVMMPT1" */

/* Even: decode on (the last MEM=1 write completed). Odd: a MEM=0 write is about to happen or did. */
static _Atomic uint64_t decode_seq;
static atomic_int done;
static volatile uint8_t *bar_map;

struct counters {
  uint64_t accesses, true_reads, ur_reads, scratch_writes, scratch_confirmed, scratch_stale, scratch_ur;
  uint64_t bad_values, lost_writes, ur_while_on, first_bad_value, first_bad_expected, first_bad_offset;
  int first_bad_kind; /* 0 none, 1 ID read, 2 scratch read-back, 3 lost write */
  int cpu;
};
static struct counters acc[MAX_ACCESSORS];

static void bad(struct counters *c, int kind, uint64_t value, uint64_t expected, uint64_t offset) {
  if (kind == 3) c->lost_writes++;
  else c->bad_values++;
  if (!c->first_bad_kind) {
    c->first_bad_kind = kind;
    c->first_bad_value = value;
    c->first_bad_expected = expected;
    c->first_bad_offset = offset;
  }
}

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  if (sched_setaffinity(0, sizeof s, &s) != 0) {
    fprintf(stderr, "bar-race: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
    exit(1);
  }
}

static void *accessor(void *arg) {
  struct counters *c = arg;
  pin(c->cpu);
  unsigned k = (unsigned)(c - acc);
  volatile uint64_t *id = (volatile uint64_t *)(bar_map + ID_OFFSET);
  volatile uint64_t *scratch = (volatile uint64_t *)(bar_map + SCRATCH_OFFSET + 8 * k);
  /* The scratch registers start at 0 (the shm device's reset value; the VMM zeroes a vfio BAR's).
   * Not read here: with decode off at this moment the read would be all ones. */
  uint64_t confirmed = 0, next = ((uint64_t)(k + 1) << 48);
  while (!atomic_load_explicit(&done, memory_order_relaxed)) {
    uint64_t s0 = atomic_load(&decode_seq);
    uint64_t v = *id;
    uint64_t s1 = atomic_load(&decode_seq);
    c->accesses++;
    if (v == id_value) c->true_reads++;
    else if (v == ALL_ONES) {
      c->ur_reads++;
      if (s0 == s1 && !(s0 & 1)) c->ur_while_on++;
    } else bad(c, 1, v, id_value, ID_OFFSET);

    s1 = atomic_load(&decode_seq);
    uint64_t w = ++next;
    *scratch = w;
    uint64_t back = *scratch;
    uint64_t s2 = atomic_load(&decode_seq);
    c->accesses += 2;
    c->scratch_writes++;
    if (back == w) {
      c->scratch_confirmed++;
      confirmed = w;
    } else if (back == ALL_ONES) {
      c->scratch_ur++;
      if (s1 == s2 && !(s1 & 1)) c->ur_while_on++;
    } else if (back >= confirmed && back < w) {
      c->scratch_stale++;
      if (s1 == s2 && !(s1 & 1)) bad(c, 3, back, w, SCRATCH_OFFSET + 8 * k);
    } else {
      bad(c, 2, back, w, SCRATCH_OFFSET + 8 * k);
    }
  }
  return NULL;
}

static int find_device(char *path, size_t cap) {
  DIR *d = opendir("/sys/bus/pci/devices");
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[512], buf[32];
    unsigned v = 0, dv = 0;
    snprintf(p, sizeof p, "/sys/bus/pci/devices/%s/vendor", e->d_name);
    FILE *f = fopen(p, "r");
    if (!f) continue;
    if (fgets(buf, sizeof buf, f)) v = strtoul(buf, NULL, 0);
    fclose(f);
    snprintf(p, sizeof p, "/sys/bus/pci/devices/%s/device", e->d_name);
    f = fopen(p, "r");
    if (!f) continue;
    if (fgets(buf, sizeof buf, f)) dv = strtoul(buf, NULL, 0);
    fclose(f);
    if (v == vendor && dv == device) {
      snprintf(path, cap, "/sys/bus/pci/devices/%s", e->d_name);
      closedir(d);
      return 0;
    }
  }
  closedir(d);
  return -1;
}

static void option(const char *name, const char *value) {
  if (!strcmp(name, "toggles")) toggles = strtoul(value, NULL, 0);
  else if (!strcmp(name, "vendor")) vendor = strtoul(value, NULL, 0);
  else if (!strcmp(name, "device")) device = strtoul(value, NULL, 0);
  else if (!strcmp(name, "bar")) bar = strtoul(value, NULL, 0);
  else if (!strcmp(name, "id")) id_value = strtoull(value, NULL, 0);
  else {
    fprintf(stderr, "bar-race: unknown option %s\n", name);
    exit(2);
  }
}

static void cmdline_options(void) {
  static char buf[4096];
  FILE *f = fopen("/proc/cmdline", "r");
  if (!f) return;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
    if (strncmp(tok, "tsvmm.race.", 11)) continue;
    char *eq = strchr(tok, '=');
    if (!eq) continue;
    *eq = 0;
    option(tok + 11, eq + 1);
  }
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  cmdline_options();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strncmp(argv[i], "--", 2)) {
      fprintf(stderr, "bar-race: bad argument %s\n", argv[i]);
      return 2;
    }
    option(argv[i] + 2, argv[i + 1]);
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 2) {
    fprintf(stderr, "bar-race: needs at least 2 CPUs online, have %ld\n", cpus);
    return 1;
  }
  if (cpus - 1 > MAX_ACCESSORS) cpus = MAX_ACCESSORS + 1;
  char dev[300], p[400];
  if (find_device(dev, sizeof dev)) {
    fprintf(stderr, "bar-race: no PCI function %04x:%04x in /sys/bus/pci/devices\n", vendor, device);
    return 1;
  }
  snprintf(p, sizeof p, "%s/resource%u", dev, bar);
  int rfd = open(p, O_RDWR | O_SYNC);
  struct stat st;
  if (rfd < 0 || fstat(rfd, &st) != 0 || st.st_size < SCRATCH_OFFSET + 8 * (cpus - 1)) {
    fprintf(stderr, "bar-race: cannot use %s: %s (size %lld)\n", p, strerror(errno), rfd < 0 ? 0LL : (long long)st.st_size);
    return 1;
  }
  bar_map = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
  if (bar_map == MAP_FAILED) {
    fprintf(stderr, "bar-race: mmap %s: %s\n", p, strerror(errno));
    return 1;
  }
  snprintf(p, sizeof p, "%s/config", dev);
  int cfd = open(p, O_RDWR);
  uint16_t cmd;
  if (cfd < 0 || pread(cfd, &cmd, 2, PCI_COMMAND) != 2) {
    fprintf(stderr, "bar-race: cannot read %s: %s\n", p, strerror(errno));
    return 1;
  }
  if (!(cmd & PCI_COMMAND_MEMORY)) {
    cmd |= PCI_COMMAND_MEMORY;
    if (pwrite(cfd, &cmd, 2, PCI_COMMAND) != 2) return 1;
  }
  pin(0);
  pthread_t th[MAX_ACCESSORS];
  for (long i = 0; i < cpus - 1; i++) {
    acc[i].cpu = (int)i + 1;
    pthread_create(&th[i], NULL, accessor, &acc[i]);
  }
  double t0 = now();
  unsigned long t;
  uint16_t off = cmd & ~PCI_COMMAND_MEMORY, on = cmd | PCI_COMMAND_MEMORY;
  int failed = 0;
  for (t = 0; t < toggles; t++) {
    atomic_fetch_add(&decode_seq, 1); /* odd: decode may be off from here */
    if (pwrite(cfd, &off, 2, PCI_COMMAND) != 2 || pwrite(cfd, &on, 2, PCI_COMMAND) != 2) {
      failed = errno;
      break;
    }
    atomic_fetch_add(&decode_seq, 1); /* even: the MEM=1 write completed */
  }
  double secs = now() - t0;
  atomic_store(&done, 1);
  struct counters sum = {0};
  for (long i = 0; i < cpus - 1; i++) {
    pthread_join(th[i], NULL);
    struct counters *c = &acc[i];
    sum.accesses += c->accesses;
    sum.true_reads += c->true_reads;
    sum.ur_reads += c->ur_reads;
    sum.scratch_writes += c->scratch_writes;
    sum.scratch_confirmed += c->scratch_confirmed;
    sum.scratch_stale += c->scratch_stale;
    sum.scratch_ur += c->scratch_ur;
    sum.bad_values += c->bad_values;
    sum.lost_writes += c->lost_writes;
    sum.ur_while_on += c->ur_while_on;
    if (!sum.first_bad_kind && c->first_bad_kind) {
      sum.first_bad_kind = c->first_bad_kind;
      sum.first_bad_value = c->first_bad_value;
      sum.first_bad_expected = c->first_bad_expected;
      sum.first_bad_offset = c->first_bad_offset;
      sum.cpu = c->cpu;
    }
  }
  printf("TSVMM-RACE-RESULT {\"device\":\"%s\",\"bar\":%u,\"barBytes\":%lld,\"cpus\":%ld,\"accessors\":%ld,\"toggles\":%lu,\"toggleError\":%d,"
         "\"seconds\":%.3f,\"accesses\":%" PRIu64 ",\"trueReads\":%" PRIu64 ",\"urReads\":%" PRIu64 ",\"scratchWrites\":%" PRIu64
         ",\"scratchConfirmed\":%" PRIu64 ",\"scratchStale\":%" PRIu64 ",\"scratchUr\":%" PRIu64 ",\"badValues\":%" PRIu64
         ",\"lostWrites\":%" PRIu64 ",\"urWhileDecodeOn\":%" PRIu64,
         strrchr(dev, '/') + 1, bar, (long long)st.st_size, cpus, cpus - 1, t, failed, secs, sum.accesses, sum.true_reads, sum.ur_reads, sum.scratch_writes,
         sum.scratch_confirmed, sum.scratch_stale, sum.scratch_ur, sum.bad_values, sum.lost_writes, sum.ur_while_on);
  if (sum.first_bad_kind)
    printf(",\"firstBad\":{\"cpu\":%d,\"kind\":\"%s\",\"value\":\"0x%" PRIx64 "\",\"expected\":\"0x%" PRIx64 "\",\"offset\":%" PRIu64 "}",
           sum.cpu, sum.first_bad_kind == 1 ? "id-read" : sum.first_bad_kind == 2 ? "scratch-read" : "lost-write", sum.first_bad_value,
           sum.first_bad_expected, sum.first_bad_offset);
  printf("}\n");
  fflush(stdout);
  return failed || sum.bad_values ? 1 : 0;
}
