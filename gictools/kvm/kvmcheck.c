/*
 * kvmcheck: run a gictools op script on the host's real KVM vGICv3 + vGIC ITS.
 *
 * Part of gictools (docs/kvm-check.md). Raw ioctls only, no guest OS: each `vm` line
 * creates a VM (one memslot, N vCPUs, KVM_DEV_TYPE_ARM_VGIC_V3 initialised, one
 * KVM_DEV_TYPE_ARM_VGIC_ITS); every other line is one operation on that VM, and every
 * line (an op or a malformed line) prints exactly one answer line on stdout.
 * The format is defined once, in gictools/kvm/ops.py (this file follows it):
 *
 *   vm ID NVCPUS MEMBASE MEMSIZE DISTBASE REDISTBASE ITSBASE FLAGS -> "vm ID 0" | "vm ID !step -errno"
 *                            FLAGS: 1 no ITS device, 2 no KVM_DEV_ARM_VGIC_CTRL_INIT
 *   memw GPA HEXBYTES        -> 0 | -14              memr GPA LEN -> "-" | "off=qword ..." | -14
 *   its_w OFF VAL64          -> 0 | -errno           its_r OFF   -> "=VAL" | -errno
 *   rd_w CPU OFF VAL32       -> 0 | -errno           rd_r CPU OFF -> "=VAL" | -errno
 *   dist_w OFF VAL32         -> 0 | -errno           dist_r OFF  -> "=VAL" | -errno
 *   msi DEVID EVID           -> KVM_SIGNAL_MSI's return: 1 | 0 | -errno
 *   cmd HEX32BYTES           -> the command written at GITS_CBASER's address + GITS_CWRITER and
 *                               GITS_CWRITER advanced by 32 (KVM processes the queue):
 *                               "=CREADR" after | -14 (slot outside the memslot) | -errno
 *   save | restore | itsreset  (ITS GRP_CTRL)        savep (VGIC SAVE_PENDING_TABLES) -> 0 | -errno
 * Numbers are hex without 0x. memr lists the non-zero little-endian qwords of the range.
 * Malformed lines answer "!bad REASON"; an op before the first good `vm` answers "!novm",
 * an ITS op on a VM created without one "!noits".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_LINE (4u << 20)  /* bytes of one script line (memw of 2 MiB) */
#define MAX_VCPUS 64
#define MAX_MEM (8ull << 30) /* bytes of the memslot (reserved lazily) */
#define MAX_MEMR (1u << 20)  /* bytes of one memr */
#define MAX_ARGS 8
#define GITS_TRANSLATER 0x10040

static int kvm_fd = -1, vm_fd = -1, gic_fd = -1, its_fd = -1;
static int vcpu_fd[MAX_VCPUS];
static int nr_vcpus;
static uint8_t *mem;
static uint64_t mem_base, mem_size, its_base;
static uint64_t mpidr_attr[MAX_VCPUS]; /* KVM_DEV_ARM_VGIC_V3_MPIDR field of each vCPU */

static void teardown(void)
{
	for (int i = 0; i < nr_vcpus; i++)
		close(vcpu_fd[i]);
	nr_vcpus = 0;
	if (its_fd >= 0)
		close(its_fd);
	if (gic_fd >= 0)
		close(gic_fd);
	if (vm_fd >= 0)
		close(vm_fd);
	its_fd = gic_fd = vm_fd = -1;
	if (mem)
		munmap(mem, mem_size);
	mem = NULL;
}

static int attr(int fd, int set, uint32_t group, uint64_t a, void *val)
{
	struct kvm_device_attr da = { .group = group, .attr = a, .addr = (uint64_t)(uintptr_t)val };
	return ioctl(fd, set ? KVM_SET_DEVICE_ATTR : KVM_GET_DEVICE_ATTR, &da) < 0 ? -errno : 0;
}

/* The vCPU's MPIDR affinity in the attribute's Aff3.Aff2.Aff1.Aff0 layout. */
static uint64_t mpidr_of(int fd)
{
	uint64_t v = 0;
	/* MPIDR_EL1: op0 3, op1 0, CRn 0, CRm 0, op2 5 */
	struct kvm_one_reg r = { .id = ARM64_SYS_REG(3, 0, 0, 0, 5), .addr = (uint64_t)(uintptr_t)&v };
	if (ioctl(fd, KVM_GET_ONE_REG, &r) < 0)
		return 0;
	return (v & 0xffffff) | ((v >> 8) & 0xff000000);
}

/* Returns NULL and prints "vm ID 0", or the failed step's name (errno in *err). */
static const char *create_vm(int n, uint64_t base, uint64_t size, uint64_t dist, uint64_t redist,
			     uint64_t its, uint64_t flags, int *err)
{
	struct kvm_vcpu_init init;
	*err = 0;
	teardown();
	if (n < 1 || n > MAX_VCPUS)
		return *err = -EINVAL, "nvcpus";
	if (!size || size > MAX_MEM || (size | base) & 0xffff)
		return *err = -EINVAL, "memsize";
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		return *err = -errno, "create_vm";
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		mem = NULL;
		return *err = -errno, "mmap";
	}
	mem_base = base;
	mem_size = size;
	struct kvm_userspace_memory_region reg = {
		.slot = 0, .guest_phys_addr = base, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return *err = -errno, "memslot";
	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return *err = -errno, "preferred_target";
	for (int i = 0; i < n; i++) {
		vcpu_fd[i] = ioctl(vm_fd, KVM_CREATE_VCPU, i);
		if (vcpu_fd[i] < 0)
			return *err = -errno, "create_vcpu";
		nr_vcpus = i + 1;
	}
	gic_fd = -1;
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		return *err = -errno, "create_vgic";
	gic_fd = cd.fd;
	for (int i = 0; i < n; i++) {
		if (ioctl(vcpu_fd[i], KVM_ARM_VCPU_INIT, &init) < 0)
			return *err = -errno, "vcpu_init";
		mpidr_attr[i] = mpidr_of(vcpu_fd[i]);
	}
	if ((*err = attr(gic_fd, 1, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist)))
		return "dist_addr";
	if ((*err = attr(gic_fd, 1, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist)))
		return "redist_addr";
	if (!(flags & 2) &&
	    (*err = attr(gic_fd, 1, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL)))
		return "vgic_init";
	its_base = its;
	if (flags & 1)
		return NULL;
	cd = (struct kvm_create_device){ .type = KVM_DEV_TYPE_ARM_VGIC_ITS };
	if (ioctl(vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		return *err = -errno, "create_its";
	its_fd = cd.fd;
	if ((*err = attr(its_fd, 1, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_ITS_ADDR_TYPE, &its)))
		return "its_addr";
	if ((*err = attr(its_fd, 1, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL)))
		return "its_init";
	return NULL;
}

static int parse_hex(const char *s, uint64_t *v)
{
	char *end;
	if (!*s || strlen(s) > 16)
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 16);
	return (*end || errno) ? -1 : 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The host address of [gpa, gpa + len) inside the memslot, or NULL. */
static uint8_t *guest(uint64_t gpa, uint64_t len)
{
	if (!mem || gpa < mem_base || gpa - mem_base > mem_size || len > mem_size - (gpa - mem_base))
		return NULL;
	return mem + (gpa - mem_base);
}

/* Queue one command the way a guest does: at CBASER's address + CWRITER, then CWRITER += 32. */
static void do_cmd(const char *hex)
{
	uint64_t cbaser, cwriter, creadr;
	uint8_t raw[32];
	int r;
	if (strlen(hex) != 64) {
		printf("!bad a command is 32 bytes\n");
		return;
	}
	for (int i = 0; i < 64; i++)
		if (hexval(hex[i]) < 0) {
			printf("!bad command is not hex\n");
			return;
		}
	for (int i = 0; i < 32; i++)
		raw[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	if ((r = attr(its_fd, 0, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, 0x80, &cbaser)) ||
	    (r = attr(its_fd, 0, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, 0x88, &cwriter))) {
		printf("%d\n", r);
		return;
	}
	uint64_t size = ((cbaser & 0xff) + 1) * 4096;
	uint8_t *p = guest((cbaser & 0x000ffffffffff000ull) + cwriter, 32);
	if (!p) {
		printf("%d\n", -EFAULT);
		return;
	}
	memcpy(p, raw, 32);
	cwriter = (cwriter + 32) % size;
	if ((r = attr(its_fd, 1, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, 0x88, &cwriter)) ||
	    (r = attr(its_fd, 0, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, 0x90, &creadr))) {
		printf("%d\n", r);
		return;
	}
	printf("=%llx\n", (unsigned long long)creadr);
}

static int nargs_ok(const char *op, int n, int want)
{
	if (n != want) {
		printf("!bad %s takes %d arguments, got %d\n", op, want, n);
		return 0;
	}
	return 1;
}

static void do_line(char *line)
{
	char *argv[MAX_ARGS + 1], *save = NULL, *tok;
	uint64_t a[MAX_ARGS] = { 0 };
	int n = 0;
	char *op = strtok_r(line, " \t", &save);
	if (!op) {
		printf("!bad empty line\n");
		return;
	}
	while ((tok = strtok_r(NULL, " \t", &save))) {
		if (n == MAX_ARGS) {
			printf("!bad too many arguments\n");
			return;
		}
		argv[n++] = tok;
	}
	/* every argument is a hex number except memw's and cmd's data */
	for (int i = 0; i < n; i++) {
		if ((!strcmp(op, "memw") && i == 1) || !strcmp(op, "cmd"))
			continue;
		if (parse_hex(argv[i], &a[i])) {
			printf("!bad argument %d of %s is not a hex number\n", i + 1, op);
			return;
		}
	}
	if (!strcmp(op, "vm")) {
		if (!nargs_ok(op, n, 8))
			return;
		int err;
		const char *step = create_vm((int)a[1], a[2], a[3], a[4], a[5], a[6], a[7], &err);
		if (step) {
			teardown();
			printf("vm %s !%s %d\n", argv[0], step, err);
		} else {
			printf("vm %s 0\n", argv[0]);
		}
		return;
	}
	if (vm_fd < 0) {
		printf("!novm\n");
		return;
	}
	if (its_fd < 0 && (!strncmp(op, "its_", 4) || !strcmp(op, "cmd") || !strcmp(op, "save") ||
			   !strcmp(op, "restore") || !strcmp(op, "itsreset"))) {
		printf("!noits\n");
		return;
	}
	if (!strcmp(op, "memw")) {
		if (!nargs_ok(op, n, 2))
			return;
		size_t len = strlen(argv[1]);
		uint8_t *p = len & 1 ? NULL : guest(a[0], len / 2);
		if (len & 1) {
			printf("!bad odd number of hex digits\n");
			return;
		}
		for (size_t i = 0; i < len; i++)
			if (hexval(argv[1][i]) < 0) {
				printf("!bad data is not hex\n");
				return;
			}
		if (!p) {
			printf("%d\n", -EFAULT);
			return;
		}
		for (size_t i = 0; i < len / 2; i++)
			p[i] = (uint8_t)(hexval(argv[1][2 * i]) << 4 | hexval(argv[1][2 * i + 1]));
		printf("0\n");
	} else if (!strcmp(op, "memr")) {
		if (!nargs_ok(op, n, 2))
			return;
		if (a[1] > MAX_MEMR || a[1] & 7 || a[0] & 7) {
			printf("!bad memr needs 8-byte aligned GPA and LEN <= %#x\n", MAX_MEMR);
			return;
		}
		uint8_t *p = guest(a[0], a[1]);
		if (!p) {
			printf("%d\n", -EFAULT);
			return;
		}
		int any = 0;
		for (uint64_t off = 0; off < a[1]; off += 8) {
			uint64_t q;
			memcpy(&q, p + off, 8);
			if (q) {
				printf("%s%llx=%llx", any ? " " : "", (unsigned long long)off,
				       (unsigned long long)q);
				any = 1;
			}
		}
		printf("%s\n", any ? "" : "-");
	} else if (!strcmp(op, "its_w") || !strcmp(op, "its_r")) {
		int w = op[4] == 'w';
		if (!nargs_ok(op, n, w ? 2 : 1))
			return;
		uint64_t v = w ? a[1] : 0;
		int r = attr(its_fd, w, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, a[0], &v);
		if (r || w)
			printf("%d\n", r);
		else
			printf("=%llx\n", (unsigned long long)v);
	} else if (!strcmp(op, "rd_w") || !strcmp(op, "rd_r") || !strcmp(op, "dist_w") ||
		   !strcmp(op, "dist_r")) {
		int rd = op[0] == 'r', w = op[strlen(op) - 1] == 'w';
		if (!nargs_ok(op, n, rd + 1 + w))
			return;
		uint64_t off = a[rd], cpu = rd ? a[0] : 0, key;
		uint32_t v = w ? (uint32_t)a[rd + 1] : 0;
		if (rd && cpu >= (uint64_t)nr_vcpus) {
			printf("!bad no vCPU %llx\n", (unsigned long long)cpu);
			return;
		}
		if (off > 0xffffffffu || (w && a[rd + 1] > 0xffffffffu)) {
			printf("!bad offset or value beyond 32 bits\n");
			return;
		}
		key = off | (rd ? mpidr_attr[cpu] << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT : 0);
		int r = attr(gic_fd, w, rd ? KVM_DEV_ARM_VGIC_GRP_REDIST_REGS : KVM_DEV_ARM_VGIC_GRP_DIST_REGS,
			     key, &v);
		if (r || w)
			printf("%d\n", r);
		else
			printf("=%x\n", v);
	} else if (!strcmp(op, "msi")) {
		if (!nargs_ok(op, n, 2))
			return;
		if (a[0] > 0xffffffffu || a[1] > 0xffffffffu) {
			printf("!bad IDs are 32 bits\n");
			return;
		}
		uint64_t db = its_base + GITS_TRANSLATER;
		struct kvm_msi m = {
			.address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32),
			.data = (uint32_t)a[1], .flags = KVM_MSI_VALID_DEVID, .devid = (uint32_t)a[0],
		};
		int r = ioctl(vm_fd, KVM_SIGNAL_MSI, &m);
		printf("%d\n", r < 0 ? -errno : r);
	} else if (!strcmp(op, "cmd")) {
		if (!nargs_ok(op, n, 1))
			return;
		do_cmd(argv[0]);
	} else if (!strcmp(op, "save") || !strcmp(op, "restore") || !strcmp(op, "itsreset") ||
		   !strcmp(op, "savep")) {
		if (!nargs_ok(op, n, 0))
			return;
		uint64_t which = !strcmp(op, "save")	  ? KVM_DEV_ARM_ITS_SAVE_TABLES :
				 !strcmp(op, "restore") ? KVM_DEV_ARM_ITS_RESTORE_TABLES :
				 !strcmp(op, "itsreset") ? KVM_DEV_ARM_ITS_CTRL_RESET :
							    KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES;
		int fd = op[4] == 'p' ? gic_fd : its_fd;
		printf("%d\n", attr(fd, 1, KVM_DEV_ARM_VGIC_GRP_CTRL, which, NULL));
	} else {
		printf("!bad unknown op %.32s\n", op);
	}
}

int main(int argc, char **argv)
{
	FILE *in = stdin;
	if (argc > 2 || (argc == 2 && !strcmp(argv[1], "--help"))) {
		fprintf(stderr, "usage: kvmcheck [SCRIPT]   (op script on stdin by default)\n");
		return 2;
	}
	if (argc == 2 && !(in = fopen(argv[1], "r"))) {
		fprintf(stderr, "kvmcheck: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		fprintf(stderr, "kvmcheck: /dev/kvm: %s\n", strerror(errno));
		return 2;
	}
	char *line = malloc(MAX_LINE + 2);
	if (!line) {
		fprintf(stderr, "kvmcheck: out of memory\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	unsigned long lineno = 0;
	while (fgets(line, MAX_LINE + 2, in)) {
		size_t len = strlen(line);
		lineno++;
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		else if (len > MAX_LINE) {
			/* skip the rest of an over-long line; answer once */
			int c;
			while ((c = fgetc(in)) != EOF && c != '\n')
				;
			printf("!bad line %lu longer than %u bytes\n", lineno, MAX_LINE);
			continue;
		}
		if (len && line[len - 1] == '\r')
			line[--len] = 0;
		do_line(line);
	}
	teardown();
	fflush(stdout);
	return ferror(in) ? 2 : 0;
}
