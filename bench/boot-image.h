// The parts of the two C baselines (kvm-loop.c, kvm-fault.c) that are the same: their error exit
// and the reader of the boot image tsvmm writes (src/boot/boot-image.ts documents the format).
// Header-only: each program is one `cc` of one .c file (scripts/build.js). Before including it, a
// program defines BENCH_NAME (the prefix of its error messages).
#ifndef TSVMM_BENCH_BOOT_IMAGE_H
#define TSVMM_BENCH_BOOT_IMAGE_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMAGE_MAGIC "TSVMBIMG"
#define IMAGE_VERSION 1u
#define IMAGE_HEADER_SIZE 0x30u
#define IMAGE_MAX_VCPUS 64u
#define MAX_RAM 0xb0000000ull

struct image {
  uint32_t vcpus;
  uint64_t ram_size;
  uint64_t data_size;
  uint64_t control_base;
  struct kvm_regs regs[IMAGE_MAX_VCPUS];
  struct kvm_sregs sregs[IMAGE_MAX_VCPUS];
  const uint8_t *data;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(BENCH_NAME ": ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Reads and checks a whole boot image (1..IMAGE_MAX_VCPUS vCPUs, RAM a positive multiple of 4096 up
 * to MAX_RAM); dies with the file name and the offending field otherwise. */
static void read_image(const char *path, struct image *img) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("cannot open boot image %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0) die("cannot stat %s: %s", path, strerror(errno));
  size_t len = (size_t)st.st_size;
  if (len < IMAGE_HEADER_SIZE) die("%s: %zu bytes is shorter than the %u-byte header", path, len, IMAGE_HEADER_SIZE);
  uint8_t *buf = malloc(len);
  if (!buf) die("out of memory reading %s", path);
  size_t got = 0;
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("reading %s: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
    got += (size_t)r;
  }
  close(fd);

  if (memcmp(buf, IMAGE_MAGIC, 8) != 0) die("%s: bad magic at offset 0 (expected '%s')", path, IMAGE_MAGIC);
  uint32_t version = rd32(buf + 0x08);
  if (version != IMAGE_VERSION) die("%s: unsupported version %u at offset 0x8 (expected %u)", path, version, IMAGE_VERSION);
  img->vcpus = rd32(buf + 0x0c);
  if (img->vcpus < 1 || img->vcpus > IMAGE_MAX_VCPUS) die("%s: vCPU count %u at offset 0xc must be 1..%u", path, img->vcpus, IMAGE_MAX_VCPUS);
  img->ram_size = rd64(buf + 0x10);
  img->data_size = rd64(buf + 0x18);
  img->control_base = rd64(buf + 0x20);
  uint32_t sz_regs = rd32(buf + 0x28), sz_sregs = rd32(buf + 0x2c);
  if (sz_regs != sizeof(struct kvm_regs) || sz_sregs != sizeof(struct kvm_sregs))
    die("%s: struct sizes %u/%u at offset 0x28 differ from this build's kvm_regs/kvm_sregs (%zu/%zu)", path, sz_regs, sz_sregs,
        sizeof(struct kvm_regs), sizeof(struct kvm_sregs));
  if (img->ram_size == 0 || img->ram_size % 4096 != 0 || img->ram_size > MAX_RAM)
    die("%s: RAM size 0x%" PRIx64 " must be a positive multiple of 4096 up to 0x%llx", path, img->ram_size, MAX_RAM);
  if (img->data_size > img->ram_size) die("%s: %" PRIu64 " bytes of RAM contents exceed the RAM size %" PRIu64, path, img->data_size, img->ram_size);
  size_t states = (size_t)img->vcpus * (sizeof(struct kvm_regs) + sizeof(struct kvm_sregs));
  if (len != IMAGE_HEADER_SIZE + states + img->data_size)
    die("%s: file is %zu bytes; the header says %zu", path, len, (size_t)(IMAGE_HEADER_SIZE + states + img->data_size));
  const uint8_t *p = buf + IMAGE_HEADER_SIZE;
  for (uint32_t i = 0; i < img->vcpus; i++) {
    memcpy(&img->regs[i], p, sizeof(struct kvm_regs));
    p += sizeof(struct kvm_regs);
    memcpy(&img->sregs[i], p, sizeof(struct kvm_sregs));
    p += sizeof(struct kvm_sregs);
  }
  img->data = p;
}

#endif
