/*
** The process sandbox: clone3 into new namespaces, a mount tree built with the new mount API,
** then Landlock, seccomp and a tiny init. See include/tide/sandbox.h for the contract and
** docs/ARCHITECTURE.md ("Sandbox") for the design.
**
** The child is made with a raw clone3 while the parent may have other threads (libuv's pool), so
** between clone3 and exec the child must not take a lock another thread could hold: no malloc,
** no stdio. Everything it needs (paths, the compiled seccomp program) is prepared by the parent
** in a plan, copied into a mapping of the child's own (child_plan): the child does not get
** tide's heap, so it must read nothing else the parent allocated. It only makes system calls.
*/
#include "tide/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <seccomp.h>

#include "tide/fs.h"

#ifndef CLONE_NEWTIME
#  define CLONE_NEWTIME 0x00000080
#endif

/* Landlock constants newer than the Debian 12 kernel headers. */
#define LL_TRUNCATE (1ULL << 14)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)

#define MAX_BINDS 64
#define DEFAULT_UID 1000
#define CGROUP_V1 "/sys/fs/cgroup"

/* The seven device nodes bound from the host into the sandbox's /dev. */
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

/* ---------------------------------------------------------------------------------------------
** Small helpers
*/

void tide_sandbox_policy_init(tide_sandbox_policy *p)
{
  memset(p, 0, sizeof *p);
}

static const char *const bit_names[] = {"landlock", "cgroup", "idmap", NULL};

const char *tide_sandbox_names(unsigned mask, char *buf, size_t size)
{
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; bit_names[i]; i++)
    if (mask & (1u << i))
      len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s%s", len ? "," : "",
                              bit_names[i]);
  return buf;
}

unsigned tide_sandbox_bit(const char *name)
{
  for (int i = 0; bit_names[i]; i++)
    if (strcmp(bit_names[i], name) == 0)
      return 1u << i;
  return 0;
}

int tide_sandbox_parse_size(const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  if (!s || !*s || *s == '-')
    return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -1;
  unsigned shift = 0;
  switch (*end) {
    case '\0':
      break;
    case 'k':
    case 'K':
      shift = 10;
      end++;
      break;
    case 'm':
    case 'M':
      shift = 20;
      end++;
      break;
    case 'g':
    case 'G':
      shift = 30;
      end++;
      break;
    case 't':
    case 'T':
      shift = 40;
      end++;
      break;
    default:
      return -1;
  }
  if (*end == 'B' || *end == 'b')
    end++;
  if (*end || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

int tide_sandbox_landlock_abi(void)
{
  static int abi = -1;
  if (abi < 0) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    abi = v > 0 ? (int)v : 0;
  }
  return abi;
}

static int cap_last(void)
{
  static int last = -1;
  if (last < 0) {
    char buf[16] = "";
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
      close(fd);
    last = n > 0 ? atoi(buf) : 63;
    if (last <= 0 || last > 63)
      last = 63;
  }
  return last;
}

static int write_file(const char *path, const char *text)
{
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t n = strlen(text);
  ssize_t w = write(fd, text, n);
  int e = w == (ssize_t)n ? 0 : (w < 0 ? -errno : -EIO);
  close(fd);
  return e;
}

static int write_at(int dirfd, const char *name, const char *text)
{
  int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t n = strlen(text);
  ssize_t w = write(fd, text, n);
  int e = w == (ssize_t)n ? 0 : (w < 0 ? -errno : -EIO);
  close(fd);
  return e;
}

/* ---------------------------------------------------------------------------------------------
** Policy check
*/

static int check_list(const char *key, const char *const *list, const char **seen, int *nseen,
                      tide_err *err)
{
  for (; list && *list; list++) {
    const char *path = *list;
    if (path[0] != '/')
      return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: path '%s' is not absolute", key, path);
    if (strcmp(path, "/") == 0)
      return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: '/' is not allowed", key);
    if (strstr(path, "/../") || strstr(path, "/./") || strstr(path, "//") ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0) ||
        (strlen(path) >= 2 && strcmp(path + strlen(path) - 2, "/.") == 0) ||
        path[strlen(path) - 1] == '/')
      return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: path '%s' is not normalised", key, path);
    if (strlen(path) >= PATH_MAX / 2)
      return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: path '%s' is too long", key, path);
    char real[PATH_MAX];
    if (!realpath(path, real))
      return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: path '%s': %s", key, path,
                          strerror(errno));
    if (strcmp(real, path) != 0)
      return tide_err_set(err, TIDE_EINPUT,
                          "sandbox: %s: path '%s' goes through a symlink (to '%s')", key, path,
                          real);
    for (int i = 0; i < *nseen; i++)
      if (strcmp(seen[i], path) == 0)
        return tide_err_set(err, TIDE_EINPUT, "sandbox: %s: path '%s' is listed twice", key, path);
    if (*nseen >= MAX_BINDS)
      return tide_err_set(err, TIDE_EINPUT, "sandbox: more than %d paths", MAX_BINDS);
    seen[(*nseen)++] = path;
  }
  return 0;
}

int tide_sandbox_check(const tide_sandbox_policy *p, tide_err *err)
{
  const char *seen[MAX_BINDS];
  int nseen = 0, rc;
  if ((rc = check_list("writable", p->writable, seen, &nseen, err)) != 0 ||
      (rc = check_list("read_only", p->read_only, seen, &nseen, err)) != 0 ||
      (rc = check_list("hide", p->hide, seen, &nseen, err)) != 0)
    return rc;
  char home[PATH_MAX];
  if (p->protect && realpath(p->protect, home)) {
    /* A writable path below the home could reach tide's state; a home below a writable path
    ** (./.tide in the source of `tide build`) is hidden instead (see protected_home). */
    size_t hl = strlen(home);
    for (const char *const *w = p->writable; w && *w; w++) {
      if (strncmp(*w, home, hl) == 0 && ((*w)[hl] == '/' || (*w)[hl] == '\0'))
        return tide_err_set(err, TIDE_EINPUT,
                            "sandbox: writable: '%s' lies in tide's state directory '%s'", *w,
                            home);
    }
  }
  for (const char *const *h = p->hide; h && *h; h++) {
    struct stat st;
    if (stat(*h, &st) == 0 && !S_ISDIR(st.st_mode))
      return tide_err_set(err, TIDE_EINPUT, "sandbox: hide: '%s' is not a directory", *h);
  }
  if (p->hostname && (strlen(p->hostname) == 0 || strlen(p->hostname) > 63))
    return tide_err_set(err, TIDE_EINPUT, "sandbox: hostname: must have 1 to 63 characters");
  if (p->tmp_size && p->tmp_size < 4096)
    return tide_err_set(err, TIDE_EINPUT, "sandbox: tmp_size: at least 4k");
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Seccomp: compiled once per process, applied by the child as a raw BPF program
*/

static struct sock_fprog seccomp_prog;

static int seccomp_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                        const struct scmp_arg_cmp *cmp)
{
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return 0; /* not on this architecture */
  return seccomp_rule_add_array(ctx, action, nr, n, cmp);
}

/*
** A deny list on top of the namespaces: every call that changes mounts, namespaces, keys, other
** processes' memory, the kernel or the clock returns EPERM; clone3 returns ENOSYS so that libc
** falls back to clone, whose flags the filter can read; foreign architectures kill.
*/
static int seccomp_build(tide_err *err)
{
  if (seccomp_prog.filter)
    return 0;
  static const char *const deny[] = {"mount",
                                     "umount",
                                     "umount2",
                                     "pivot_root",
                                     "chroot",
                                     "fsopen",
                                     "fsconfig",
                                     "fsmount",
                                     "fspick",
                                     "open_tree",
                                     "move_mount",
                                     "mount_setattr",
                                     "unshare",
                                     "setns",
                                     "ptrace",
                                     "process_vm_readv",
                                     "process_vm_writev",
                                     "process_madvise",
                                     "bpf",
                                     "perf_event_open",
                                     "userfaultfd",
                                     "keyctl",
                                     "add_key",
                                     "request_key",
                                     "io_uring_setup",
                                     "io_uring_enter",
                                     "io_uring_register",
                                     "kexec_load",
                                     "kexec_file_load",
                                     "init_module",
                                     "finit_module",
                                     "delete_module",
                                     "acct",
                                     "swapon",
                                     "swapoff",
                                     "reboot",
                                     "syslog",
                                     "open_by_handle_at",
                                     "name_to_handle_at",
                                     "iopl",
                                     "ioperm",
                                     "quotactl",
                                     "quotactl_fd",
                                     "lookup_dcookie",
                                     "clock_settime",
                                     "clock_adjtime",
                                     "settimeofday",
                                     "adjtimex",
                                     "stime",
                                     "vhangup",
                                     "nfsservctl",
                                     "uselib",
                                     "_sysctl",
                                     "pidfd_getfd",
                                     "fanotify_init",
                                     "kcmp",
                                     "landlock_create_ruleset",
                                     NULL};
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx)
    return tide_err_set(err, TIDE_ESANDBOX, "sandbox: seccomp: cannot initialise libseccomp");
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc == 0)
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  /* A binary tree: longer, but the kernel loads it in about half the time of the linear list. */
  if (rc == 0)
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (int i = 0; deny[i] && rc == 0; i++)
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), deny[i], 0, NULL);
  if (rc == 0)
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
  static const uint64_t ns_flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
                                      CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME};
  for (size_t i = 0; i < sizeof ns_flags / sizeof *ns_flags && rc == 0; i++) {
    struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &c);
  }
  /* Device nodes, not fifos or sockets (mkfifo must keep working). */
  static const uint64_t dev_types[] = {S_IFCHR, S_IFBLK};
  for (size_t i = 0; i < 2 && rc == 0; i++) {
    struct scmp_arg_cmp m1 = SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]);
    struct scmp_arg_cmp m2 = SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]);
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), "mknod", 1, &m1);
    if (rc == 0)
      rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), "mknodat", 1, &m2);
  }
  /* No setuid or setgid file: as root, what the program creates in a writable path is owned by
  ** tide's user outside (idmapped), and a set-id bit would hand that user to whoever runs the
  ** file later. Every call that sets a mode is checked; openat2 hides its mode in a struct the
  ** filter cannot read, so it returns ENOSYS and libc's open falls back to openat. */
  static const struct {
    const char *name;
    unsigned arg;
  } mode_calls[] = {{"chmod", 1},  {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2}, {"open", 2},
                    {"openat", 3}, {"creat", 1},  {"mknod", 1},    {"mknodat", 2}};
  static const uint64_t setid[] = {S_ISUID, S_ISGID};
  for (size_t i = 0; i < sizeof mode_calls / sizeof *mode_calls && rc == 0; i++)
    for (size_t j = 0; j < 2 && rc == 0; j++) {
      struct scmp_arg_cmp c = {mode_calls[i].arg, SCMP_CMP_MASKED_EQ, setid[j], setid[j]};
      rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), mode_calls[i].name, 1, &c);
    }
  if (rc == 0)
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "openat2", 0, NULL);
  /* The kernel reads only 32 bits of the request: compare under the same mask. */
  static const uint64_t ioctls[] = {TIOCSTI, TIOCLINUX};
  for (size_t i = 0; i < 2 && rc == 0; i++) {
    struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls[i]);
    rc = seccomp_rule(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &c);
  }
  int fd = -1;
  if (rc == 0) {
    fd = memfd_create("tide-seccomp", MFD_CLOEXEC);
    rc = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);
  }
  seccomp_release(ctx);
  if (rc == 0) {
    off_t size = lseek(fd, 0, SEEK_END);
    struct sock_filter *f = size > 0 ? malloc((size_t)size) : NULL;
    if (f && pread(fd, f, (size_t)size, 0) == size) {
      seccomp_prog.len = (unsigned short)((size_t)size / sizeof *f);
      seccomp_prog.filter = f;
    } else {
      free(f);
      rc = -EIO;
    }
  }
  if (fd >= 0)
    close(fd);
  if (rc != 0)
    return tide_err_set(err, TIDE_ESANDBOX, "sandbox: seccomp: cannot build the filter: %s",
                        strerror(-rc));
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** The plan: everything the child needs, prepared by the parent
*/

enum { BIND_RW, BIND_RO, BIND_HIDE };

typedef struct mbind {
  const char *src; /* host path; src + 1 is the path relative to the new root */
  int kind;
  int is_dir;
  int fd;      /* open_tree clone: made by the parent when idmapped, else in the child */
  int premade; /* fd is an idmapped clone made by the parent, attributes set */
} mbind;

typedef struct plan {
  const tide_sandbox_policy *pol;
  const tide_sandbox_exec *ex;
  mbind binds[2 * MAX_BINDS + 1]; /* the policy's, closed ancestors, tide's home */
  int nbinds;
  int dev_fd[8];
  char tmp_opts[64];
  char cwd[PATH_MAX];
  uint32_t uid, gid;
  int as_root;
  int landlock_abi;
  int sync_fd, err_fd, status_fd;
  int cg_tasks[2]; /* the sandbox's memory and pids cgroups' `tasks` files, or -1 */
  /* The program: the caller's (ex), or, with ex->later, read from program_fd into msg and
  ** msg_ptrs, which are mapped for the child (child_plan) so that it never allocates. */
  const char *prog_path;
  char *const *prog_argv, *const *prog_envp;
  int program_fd;
  char *msg;
  char **msg_ptrs;
  struct sock_fprog filter; /* the child's copy of seccomp_prog */
  struct rlimit rl_nproc, rl_as;
  int set_as;
  int cap_last; /* highest capability number the kernel knows */
  /* tide's home when it lies below a writable path: covered like a `hide` entry. */
  char hidden_home[PATH_MAX];
  /* As root: directories on the way to a bind that the program may not search (malloc'd). */
  char *closed[MAX_BINDS];
  int nclosed;
  /* The host's pathname unix sockets to cover (network not shared): pointers into sock_text. */
  char *sock_text;
  const char **socks;
  size_t nsocks;
} plan;

/* A failure report from the child: which step, and errno. */
typedef struct child_report {
  int err;
  int exec; /* 0: a sandbox step failed; 1: exec of the program; 2: chdir to its cwd */
  char step[96];
} child_report;

static int cmp_bind(const void *a, const void *b)
{
  const mbind *x = a, *y = b;
  size_t lx = strlen(x->src), ly = strlen(y->src);
  return lx < ly ? -1 : lx > ly;
}

static void add_binds(plan *pl, const char *const *list, int kind)
{
  for (; list && *list; list++) {
    mbind *b = &pl->binds[pl->nbinds++];
    b->src = *list;
    b->kind = kind;
    struct stat st;
    b->is_dir = stat(*list, &st) != 0 || S_ISDIR(st.st_mode);
    b->fd = -1;
  }
}

/*
** As root, the program runs as an unprivileged uid, which cannot search a directory such as
** /root (0700) on the way to a bind below it, so absolute paths into the source would fail. Each
** such closed ancestor is replaced by an empty directory holding only the mount points of the
** binds below it (a `hide` entry), as bubblewrap builds its root from binds alone. What else the
** directory holds stays out of reach, as it was.
*/
static void open_closed_ancestors(plan *pl)
{
  int n = pl->nbinds;
  for (int i = 0; i < n && pl->nclosed < MAX_BINDS; i++) {
    if (pl->binds[i].kind == BIND_HIDE)
      continue;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", pl->binds[i].src);
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
      *slash = '\0';
      int bound = 0; /* a bind itself is the program's to search (idmapped when writable) */
      for (int k = 0; k < n && !bound; k++)
        bound = pl->binds[k].kind != BIND_HIDE && strcmp(pl->binds[k].src, path) == 0;
      if (bound)
        break;
      struct stat st;
      int closed = stat(path, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH);
      if (closed) {
        int known = 0;
        for (int k = 0; k < pl->nclosed && !known; k++)
          known = strcmp(pl->closed[k], path) == 0;
        char *copy = known ? NULL : strdup(path);
        if (copy) {
          pl->closed[pl->nclosed++] = copy;
          const char *list[] = {copy, NULL};
          add_binds(pl, list, BIND_HIDE);
        }
        break; /* everything below it is hidden with it */
      }
      *slash = '/';
    }
  }
}

/*
** tide's home below a writable path (the default ./.tide inside the source of `tide build`) is
** covered by an empty read-only directory, as a `hide` entry, so the program can neither read
** nor change tide's state. tide_sandbox_check() has refused a writable path inside the home.
*/
static void protect_home(plan *pl, const tide_sandbox_policy *pol)
{
  if (!pol->protect || !realpath(pol->protect, pl->hidden_home))
    return;
  size_t hl = strlen(pl->hidden_home);
  for (const char *const *w = pol->writable; w && *w; w++) {
    size_t wl = strlen(*w);
    if (wl < hl && strncmp(pl->hidden_home, *w, wl) == 0 &&
        (pl->hidden_home[wl] == '/' || wl == 1)) {
      const char *list[] = {pl->hidden_home, NULL};
      add_binds(pl, list, BIND_HIDE);
      return;
    }
  }
}

/* ---------------------------------------------------------------------------------------------
** The child. Only system calls from here to exec; a failed step is reported and ends the child.
*/

static _Noreturn void child_fail(plan *pl, const char *step, int e, int exec)
{
  child_report r;
  memset(&r, 0, sizeof r);
  r.err = e;
  r.exec = exec;
  size_t n = strlen(step);
  if (n >= sizeof r.step)
    n = sizeof r.step - 1;
  memcpy(r.step, step, n);
  ssize_t w = write(pl->err_fd, &r, sizeof r);
  (void)w;
  _exit(127);
}

#define CHECK(pl, call, step)         \
  do {                                \
    if ((call) < 0)                   \
      child_fail(pl, step, errno, 0); \
  } while (0)

/* mkdir -p of a path relative to the current directory; existing parts are fine. */
static void mkdirs(char *path)
{
  for (char *s = path; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    mkdir(path, 0755);
    *s = '/';
  }
  mkdir(path, 0755);
}

/* Creates the mount point at dst (relative to the new root) where it is missing. */
static void make_mountpoint(const mbind *b, char *dst)
{
  if (b->is_dir) {
    mkdirs(dst);
    return;
  }
  char *slash = strrchr(dst, '/');
  if (slash) {
    *slash = '\0';
    mkdirs(dst);
    *slash = '/';
  }
  int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0)
    close(fd);
}

static int set_attr(int fd, uint64_t attr)
{
  struct mount_attr a;
  memset(&a, 0, sizeof a);
  a.attr_set = attr;
  return mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a);
}

static void build_root(plan *pl)
{
  const tide_sandbox_policy *pol = pl->pol;
  /* Nothing we mount may propagate back to the host. */
  CHECK(pl, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / private");
  /* Take every source before anything is mounted over the host's paths. */
  for (int i = 0; i < pl->nbinds; i++) {
    mbind *b = &pl->binds[i];
    if (b->kind == BIND_HIDE || b->premade)
      continue;
    /* No symlink anywhere in the path, so a component swapped for a link since the policy was
    ** checked cannot redirect the bind. */
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int pfd = (int)syscall(SYS_openat2, AT_FDCWD, b->src, &how, sizeof how);
    CHECK(pl, pfd, "open a policy path without following symlinks");
    b->fd = open_tree(pfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    CHECK(pl, b->fd, b->kind == BIND_RW ? "clone a writable path" : "clone a read-only path");
    close(pfd);
    CHECK(pl,
          set_attr(b->fd, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                              (b->kind == BIND_RO ? MOUNT_ATTR_RDONLY : 0)),
          "set bind attributes");
  }
  for (int i = 0; dev_nodes[i]; i++) {
    char path[32] = "/dev/";
    strcat(path, dev_nodes[i]);
    pl->dev_fd[i] = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    CHECK(pl, pl->dev_fd[i], "clone a /dev node");
  }
  /* Recursive: every submount is read-only too, unlike MS_REMOUNT of the top one. */
  struct mount_attr ro;
  memset(&ro, 0, sizeof ro);
  ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  CHECK(pl, mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro),
        "make the host tree read-only");
  CHECK(pl, chdir("/"), "enter /");

  CHECK(pl, mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, pl->tmp_opts), "mount /tmp");
  CHECK(pl, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount /proc");
  CHECK(pl, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64m"),
        "mount /dev");
  for (int i = 0; dev_nodes[i]; i++) {
    char path[32] = "dev/";
    strcat(path, dev_nodes[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    CHECK(pl, fd, "create a /dev node");
    close(fd);
    CHECK(pl, move_mount(pl->dev_fd[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH),
          "bind a /dev node");
    close(pl->dev_fd[i]);
  }
  CHECK(pl, mkdir("dev/pts", 0755), "create /dev/pts");
  CHECK(pl, mkdir("dev/shm", 0755), "create /dev/shm"); /* the sandbox uid owns it */
  CHECK(pl,
        mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620"),
        "mount /dev/pts");
  static const char *const links[][2] = {{"pts/ptmx", "dev/ptmx"},
                                         {"/proc/self/fd", "dev/fd"},
                                         {"/proc/self/fd/0", "dev/stdin"},
                                         {"/proc/self/fd/1", "dev/stdout"},
                                         {"/proc/self/fd/2", "dev/stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof *links; i++)
    CHECK(pl, symlink(links[i][0], links[i][1]), "create a /dev link");

  /* Parents before children (sorted by length), so a bind below another lands on top. */
  for (int i = 0; i < pl->nbinds; i++) {
    mbind *b = &pl->binds[i];
    char dst[PATH_MAX / 2]; /* checked: every policy path is shorter */
    memcpy(dst, b->src + 1, strlen(b->src));
    make_mountpoint(b, dst);
    if (b->kind == BIND_HIDE) {
      /* Writable until the binds below it have their mount points; read-only after. */
      CHECK(pl,
            mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755"),
            "hide a path");
      continue;
    }
    CHECK(pl, move_mount(b->fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH), "bind a path");
    close(b->fd);
  }
  for (int i = 0; i < pl->nbinds; i++) {
    if (pl->binds[i].kind != BIND_HIDE)
      continue;
    CHECK(pl,
          mount(NULL, pl->binds[i].src + 1, NULL,
                MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
          "make a hidden path read-only");
  }

  (void)pol;
}

static void loopback_up(plan *pl)
{
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(pl, s, "open a socket for lo");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  CHECK(pl, ioctl(s, SIOCSIFFLAGS, &ifr), "bring lo up");
  close(s);
}

static void set_limit(plan *pl, int res, uint64_t v, const char *step)
{
  struct rlimit rl = {(rlim_t)v, (rlim_t)v};
  CHECK(pl, setrlimit(res, &rl), step);
}

static int landlock_rule(int ruleset, const char *path, uint64_t access)
{
  struct landlock_path_beneath_attr pb;
  memset(&pb, 0, sizeof pb);
  pb.allowed_access = access;
  pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
  if (pb.parent_fd < 0)
    return -1;
  int rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
  int e = errno;
  close(pb.parent_fd);
  errno = e;
  return rc;
}

/* Writes only below the writable paths, /tmp, /dev and /proc; abstract sockets and signals
** scoped. */
static void apply_landlock(plan *pl)
{
  int abi = pl->landlock_abi;
  if (abi <= 0)
    return;
  struct {
    uint64_t fs, net, scoped;
  } attr = {0, 0, 0};
  attr.fs = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
            LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
            LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
            LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
            LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2)
    attr.fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3)
    attr.fs |= LL_TRUNCATE;
  size_t size = sizeof attr.fs;
  /* Network off: no TCP at all, a second layer under the empty network namespace. */
  if (abi >= 4 && pl->pol->network == TIDE_SANDBOX_NET_OFF) {
    attr.net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
    size = 2 * sizeof attr.fs;
  }
  if (abi >= 6) {
    attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
    size = sizeof attr;
  }
  int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  CHECK(pl, rs, "landlock: create the ruleset");
  CHECK(pl, landlock_rule(rs, "/tmp", attr.fs), "landlock: allow /tmp");
  CHECK(pl, landlock_rule(rs, "/dev", attr.fs), "landlock: allow /dev");
  /* The sandbox's own procfs: its files check their own permissions (oom_score_adj, comm). */
  CHECK(pl, landlock_rule(rs, "/proc", attr.fs), "landlock: allow /proc");
  for (int i = 0; i < pl->nbinds; i++)
    if (pl->binds[i].kind == BIND_RW)
      CHECK(pl, landlock_rule(rs, pl->binds[i].src, attr.fs), "landlock: allow a writable path");
  CHECK(pl, syscall(SYS_landlock_restrict_self, rs, 0), "landlock: restrict");
  close(rs);
}

/*
** Covers each host pathname socket with /dev/null, so a connect finds no socket (ECONNREFUSED):
** on the read-only host tree a socket still accepts connections, since neither the mount flags
** nor Landlock (up to ABI 7) govern connect(2). Paths gone or no longer sockets (under the fresh
** /tmp, hidden, removed since) are skipped.
*/
static void mask_host_sockets(plan *pl)
{
  for (size_t i = 0; i < pl->nsocks; i++) {
    struct stat st;
    if (lstat(pl->socks[i], &st) != 0 || !S_ISSOCK(st.st_mode))
      continue;
    if (mount("/dev/null", pl->socks[i], NULL, MS_BIND, NULL) != 0 && errno != ENOENT)
      child_fail(pl, "cover a host unix socket", errno, 0);
  }
}

/* Closes every descriptor from `from` on but the n in keep, which it sorts. */
static void close_all_but(int from, int *keep, int n)
{
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  for (int i = 0; i < n; i++) {
    if (keep[i] < from)
      continue;
    if (keep[i] > from)
      syscall(SYS_close_range, from, keep[i] - 1, 0);
    from = keep[i] + 1;
  }
  syscall(SYS_close_range, from, ~0U, 0);
}

/*
** With ex->later: waits for the program (see tide_sandbox_run): a header of three uint32 (the
** strings' bytes, argc, envc), then the NUL-terminated strings: path, argv, envp. An end before
** the header means tide let the sandbox go: exit without a report.
*/
static void receive_program(plan *pl)
{
  /* Nothing else stays open while it waits: not its copy of the pipe's write end, nor those of
  ** other sandboxes tide has started meanwhile, whose end would never come while it waits. */
  int keep[3] = {pl->err_fd, pl->status_fd, pl->program_fd};
  close_all_but(3, keep, 3);
  uint32_t h[3];
  if (tide_fs_read_full(pl->program_fd, h, sizeof h) != (ssize_t)sizeof h)
    _exit(127);
  uint32_t bytes = h[0], argc = h[1], envc = h[2];
  if (bytes > TIDE_SANDBOX_PROGRAM_BYTES || argc < 1 ||
      (uint64_t)argc + envc + 2 > TIDE_SANDBOX_PROGRAM_STRINGS)
    child_fail(pl, "receive the program", EINVAL, 0);
  if (tide_fs_read_full(pl->program_fd, pl->msg, bytes) != (ssize_t)bytes)
    child_fail(pl, "receive the program", EIO, 0);
  close(pl->program_fd);
  char *s = pl->msg, *end = pl->msg + bytes;
  char **ptrs = pl->msg_ptrs;
  for (uint32_t i = 0; i < 1 + argc + envc; i++) {
    char *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (!z)
      child_fail(pl, "receive the program", EINVAL, 0);
    /* path, then argv at 0..argc-1 and envp at argc+1..: each list ends with a NULL */
    if (i == 0)
      pl->prog_path = s;
    else
      ptrs[i <= argc ? i - 1 : i] = s;
    s = z + 1;
  }
  if (s != end)
    child_fail(pl, "receive the program", EINVAL, 0);
  ptrs[argc] = NULL;
  ptrs[argc + 1 + envc] = NULL;
  pl->prog_argv = ptrs;
  pl->prog_envp = ptrs + argc + 1;
}

static _Noreturn void run_program(plan *pl)
{
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Only the program's tree: the init keeps its own address space unlimited. */
  if (pl->set_as)
    set_limit(pl, RLIMIT_AS, pl->pol->memory, "rlimit as");
  execve(pl->prog_path, pl->prog_argv, pl->prog_envp);
  child_fail(pl, "exec", errno, 1);
}

/*
** pid 1: reaps everything, exits with the program's status (and reports the raw status, since
** pid 1 cannot die of its own signal). Its exit makes the kernel kill what is left.
*/
static _Noreturn void init_loop(plan *pl, pid_t prog)
{
  for (;;) {
    int st;
    pid_t w = waitpid(-1, &st, 0);
    if (w == prog) {
      ssize_t n = write(pl->status_fd, &st, sizeof st);
      (void)n;
      _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    if (w < 0 && errno == ECHILD)
      _exit(127);
  }
}

static int child_main(plan *pl)
{
  const tide_sandbox_policy *pol = pl->pol;
  /* Default dispositions (tide ignores SIGPIPE); the program also gets an empty mask. */
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL); /* blocked by the parent until here */
  CHECK(pl, setsid(), "setsid");
  CHECK(pl, prctl(PR_SET_PDEATHSIG, SIGKILL), "set the parent-death signal");
  /* Our own pipes above 2, where placing the streams cannot hit them (tide may run with 0-2
  ** closed, and then a pipe can get one of those numbers). */
  if (pl->err_fd < 3)
    CHECK(pl, pl->err_fd = fcntl(pl->err_fd, F_DUPFD_CLOEXEC, 3), "move the error pipe");
  if (pl->status_fd < 3)
    CHECK(pl, pl->status_fd = fcntl(pl->status_fd, F_DUPFD_CLOEXEC, 3), "move the status pipe");
  if (pl->program_fd >= 0 && pl->program_fd < 3)
    CHECK(pl, pl->program_fd = fcntl(pl->program_fd, F_DUPFD_CLOEXEC, 3), "move the program pipe");
  char go;
  if (read(pl->sync_fd, &go, 1) != 1)
    _exit(127); /* the parent gave up */
  close(pl->sync_fd);
  int joined = 0;
  for (int i = 0; i < 2; i++) {
    if (pl->cg_tasks[i] >= 0) {
      CHECK(pl, write(pl->cg_tasks[i], "0", 1), "join the sandbox's cgroup");
      close(pl->cg_tasks[i]);
      joined = 1;
    }
  }
  /* Cloned without one (see tide_sandbox_spawn): rooted here, the namespace shows the
  ** sandbox's own cgroups as "/", not the way from tide's to them. */
  if (joined)
    CHECK(pl, unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace");
  /* Nobody attaches to the setup while it holds capabilities (the maps are written by now). */
  CHECK(pl, prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the setup non-dumpable");

  if (pl->as_root)
    CHECK(pl, setgroups(0, NULL), "clear supplementary groups");
  CHECK(pl, setresgid(pl->gid, pl->gid, pl->gid), "setresgid");
  CHECK(pl, setresuid(pl->uid, pl->uid, pl->uid), "setresuid");

  build_root(pl);
  mask_host_sockets(pl);
  if (pol->network == TIDE_SANDBOX_NET_LOOPBACK)
    loopback_up(pl);
  const char *host = pol->hostname ? pol->hostname : "tide";
  CHECK(pl, sethostname(host, strlen(host)), "sethostname");

  set_limit(pl, RLIMIT_CORE, 0, "rlimit core");
  if (pol->pids)
    set_limit(pl, RLIMIT_NPROC, pol->pids, "rlimit nproc");
  if (pol->cpu_seconds) {
    /* SIGXCPU at the limit (a program may catch it and stop), SIGKILL a second later. */
    struct rlimit cpu = {(rlim_t)pol->cpu_seconds, (rlim_t)pol->cpu_seconds + 1};
    CHECK(pl, setrlimit(RLIMIT_CPU, &cpu), "rlimit cpu");
  }
  if (pol->nofile)
    set_limit(pl, RLIMIT_NOFILE, pol->nofile, "rlimit nofile");
  if (pol->fsize)
    set_limit(pl, RLIMIT_FSIZE, pol->fsize, "rlimit fsize");

  if (chdir(pl->cwd) != 0)
    child_fail(pl, "chdir", errno, 2);

  /* Descriptors: the three streams, then nothing else survives exec. Each goes through a copy
  ** above 2 first, so that placing one cannot overwrite another still to be placed. */
  int high[3];
  for (int i = 0; i < 3; i++)
    CHECK(pl, high[i] = fcntl(pl->ex->fd[i], F_DUPFD_CLOEXEC, 3), "copy a stream");
  for (int i = 0; i < 3; i++)
    CHECK(pl, dup2(high[i], i), "set up a stream");
  CHECK(pl, syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC), "close_range");

  for (int cap = 0; cap <= pl->cap_last; cap++)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      child_fail(pl, "drop the bounding set", errno, 0);
  CHECK(pl, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
  apply_landlock(pl);
  CHECK(pl, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &pl->filter), "seccomp");
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  CHECK(pl, syscall(SYS_capset, &hdr, data), "drop capabilities");

  if (pl->ex->later)
    receive_program(pl);
  /* vfork: the init's memory is not copied; the program's side only execs or reports. */
  pid_t prog = vfork();
  CHECK(pl, prog, "fork the program");
  if (prog == 0)
    run_program(pl);
  /* The init keeps only the status pipe; the error pipe closes when the program execs. */
  close(pl->err_fd);
  close_all_but(0, &pl->status_fd, 1);
  init_loop(pl, prog);
}

/* ---------------------------------------------------------------------------------------------
** The parent
*/

/*
** Once per process: removes the cgroups a tide killed before its reap left under tide/. Only
** empty ones older than a minute: a live sandbox's cgroup holds at least its init, and one
** made by a running tide is empty for the microseconds before its child joins it.
*/
static void cgroup_sweep(const char *ctl)
{
  char dir[96], p[400];
  snprintf(dir, sizeof dir, CGROUP_V1 "/%s/tide", ctl);
  DIR *d = opendir(dir);
  if (!d)
    return;
  time_t cutoff = time(NULL) - 60;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "sb-", 3) != 0 && strncmp(e->d_name, "new-", 4) != 0)
      continue;
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && st.st_mtime < cutoff)
      rmdir(p); /* EBUSY while anything is inside */
  }
  closedir(d);
}

/* The cgroup v1 controllers a sandbox's limits use: [0] memory, [1] pids. */
static const char *const cgroup_ctl[2] = {"memory", "pids"};

/*
** Before the clone: the sandbox's cgroups with their limits, under a name of this tide's
** (renamed sb-PID once the init's pid is known), and their `tasks` files open for the child.
** The child moves itself in by writing "0" there (see child_main): a thread moving itself
** through `tasks` skips the cgroup-wide lock that writing a pid to cgroup.procs takes, whose
** first use after a quiet moment waits for an RCU grace period (5 to 20 ms on an idle machine).
*/
static int cgroup_prepare(plan *pl, tide_sandbox_child *c)
{
  static _Atomic unsigned seq;
  static _Atomic int swept;
  unsigned n = seq++;
  if (!swept++)
    for (int i = 0; i < 2; i++)
      cgroup_sweep(cgroup_ctl[i]);
  const tide_sandbox_policy *pol = pl->pol;
  for (int i = 0; i < 2; i++) {
    uint64_t v = i == 0 ? pol->memory : pol->pids;
    if (!v)
      continue;
    char dir[96], file[160], num[32];
    snprintf(dir, sizeof dir, CGROUP_V1 "/%s/tide", cgroup_ctl[i]);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      return -1;
    snprintf(dir, sizeof dir, CGROUP_V1 "/%s/tide/new-%d-%u", cgroup_ctl[i], (int)getpid(), n);
    if (mkdir(dir, 0755) != 0)
      return -1;
    snprintf(c->cgroup[i], sizeof c->cgroup[i], "%s", dir);
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    snprintf(file, sizeof file, "%s/%s", dir, i == 0 ? "memory.limit_in_bytes" : "pids.max");
    if (write_file(file, num) != 0)
      return -1;
    if (i == 0) {
      /* Swap counts too where accounted; absent without swap accounting. */
      snprintf(file, sizeof file, "%s/memory.memsw.limit_in_bytes", dir);
      write_file(file, num);
    }
    snprintf(file, sizeof file, "%s/tasks", dir);
    if ((pl->cg_tasks[i] = open(file, O_WRONLY | O_CLOEXEC)) < 0)
      return -1;
  }
  return 0;
}

/* After the clone: the cgroups take the init's pid as their name (kept as made if taken). */
static void cgroup_name(tide_sandbox_child *c)
{
  for (int i = 0; i < 2; i++) {
    if (!c->cgroup[i][0])
      continue;
    char dir[96];
    snprintf(dir, sizeof dir, CGROUP_V1 "/%s/tide/sb-%d", cgroup_ctl[i], (int)c->pid);
    if (rename(c->cgroup[i], dir) == 0)
      snprintf(c->cgroup[i], sizeof c->cgroup[i], "%s", dir);
  }
}

static void cgroup_remove(tide_sandbox_child *c)
{
  for (int i = 0; i < 2; i++) {
    if (c->cgroup[i][0]) {
      rmdir(c->cgroup[i]);
      c->cgroup[i][0] = '\0';
    }
  }
}

/* Writes the id maps through a /proc directory verified to be the pidfd's process. */
static int write_maps(plan *pl, pid_t pid, int pidfd, uid_t outer_uid, gid_t outer_gid)
{
  char path[64], map[64];
  snprintf(path, sizeof path, "/proc/%d", (int)pid);
  int dir = open(path, O_DIRECTORY | O_PATH | O_CLOEXEC);
  if (dir < 0)
    return -errno;
  int rc = 0;
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0)
    rc = -errno;
  if (rc == 0 && !pl->as_root)
    rc = write_at(dir, "setgroups", "deny");
  /*
  ** As root, host root is mapped too, to the overflow id 65534 that its files showed as anyway:
  ** only so that the setup, which holds capabilities in the namespace until exec, may search
  ** root-only directories such as /root on the way to a writable path (capabilities reach only
  ** files whose owner is mapped). Not to inside 0: the setup's own switch to pl->uid would then
  ** count as leaving root and drop its capabilities. The program runs as pl->uid with no
  ** capabilities, no_new_privs and nosuid everywhere, so it cannot become that id.
  */
  unsigned root_in = pl->uid == 65534 ? 65533 : 65534, groot_in = pl->gid == 65534 ? 65533 : 65534;
  if (rc == 0) {
    if (pl->as_root && outer_uid != 0)
      snprintf(map, sizeof map, "%u 0 1\n%u %u 1\n", root_in, pl->uid, (unsigned)outer_uid);
    else
      snprintf(map, sizeof map, "%u %u 1\n", pl->uid, (unsigned)outer_uid);
    rc = write_at(dir, "uid_map", map);
  }
  if (rc == 0) {
    if (pl->as_root && outer_gid != 0)
      snprintf(map, sizeof map, "%u 0 1\n%u %u 1\n", groot_in, pl->gid, (unsigned)outer_gid);
    else
      snprintf(map, sizeof map, "%u %u 1\n", pl->gid, (unsigned)outer_gid);
    rc = write_at(dir, "gid_map", map);
  }
  close(dir);
  return rc;
}

static void close_fd(int *fd)
{
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static void warn_missing(unsigned missing, const char *idmap_path)
{
  static unsigned warned;
  if (!(missing & ~warned))
    return;
  warned |= missing;
  char names[64], why[PATH_MAX + 256];
  size_t n = 0;
  why[0] = '\0';
  if (missing & TIDE_SANDBOX_LANDLOCK)
    n += (size_t)snprintf(why + n, sizeof why - n, "no Landlock in this kernel");
  if ((missing & TIDE_SANDBOX_CGROUP) && n < sizeof why)
    n += (size_t)snprintf(why + n, sizeof why - n,
                          "%sno writable cgroup v1 memory and pids "
                          "hierarchies: memory is per process",
                          n ? "; " : "");
  if ((missing & TIDE_SANDBOX_IDMAP) && n < sizeof why)
    snprintf(why + n, sizeof why - n,
             "%sno idmapped mount for writable path '%s': the program writes there only as "
             "uid %d",
             n ? "; " : "", idmap_path ? idmap_path : "?", TIDE_SANDBOX_ROOT_UID);
  fprintf(stderr, "tide: warning: sandbox: running without %s (%s)\n",
          tide_sandbox_names(missing, names, sizeof names), why);
}

/* ---------------------------------------------------------------------------------------------
** Idmapped writable paths, when tide runs as root
*/

/*
** The idmapping of the writable binds: a user namespace whose only mapping is tide's own uid and
** gid -> the sandbox's outer ids. Made once per process (a short-lived child holds it while its
** maps are written) and kept open; returns the descriptor or -errno.
*/
static int idmap_userns(void)
{
  static int ns = -1;
  if (ns >= 0)
    return ns;
  int hold[2];
  if (pipe2(hold, O_CLOEXEC) != 0)
    return -errno;
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_NEWUSER;
  ca.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid == 0) {
    /* Only system calls: other threads may hold locks. Waits for the parent's EOF. */
    char c;
    close(hold[1]);
    ssize_t n = read(hold[0], &c, 1);
    (void)n;
    _exit(0);
  }
  int rc = pid < 0 ? -errno : 0;
  close(hold[0]);
  if (rc == 0) {
    char path[64], map[64];
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)geteuid(), (unsigned)TIDE_SANDBOX_ROOT_UID);
    snprintf(path, sizeof path, "/proc/%ld/uid_map", pid);
    rc = write_file(path, map);
    if (rc == 0) {
      snprintf(map, sizeof map, "%u %u 1\n", (unsigned)getegid(), (unsigned)TIDE_SANDBOX_ROOT_UID);
      snprintf(path, sizeof path, "/proc/%ld/gid_map", pid);
      rc = write_file(path, map);
    }
    if (rc == 0) {
      snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        rc = -errno;
      else
        ns = fd;
    }
  }
  close(hold[1]);
  if (pid > 0)
    while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR) {
    }
  return rc < 0 ? rc : ns;
}

/*
** As root, each writable path owned by tide's own user becomes an idmapped clone (made here:
** idmapping a host filesystem takes CAP_SYS_ADMIN over it, which the child's namespace lacks),
** so that the program writes there as tide's user and nowhere else. A path already owned by the
** sandbox's outer uid is bound as it is. A filesystem without idmapped mounts is reported in
** *missing and its path in idmap_path; any other failure fails the spawn.
*/
static int idmap_binds(plan *pl, int assume_missing, unsigned *missing, const char **idmap_path,
                       tide_err *err)
{
  for (int i = 0; i < pl->nbinds; i++) {
    mbind *b = &pl->binds[i];
    struct stat st;
    if (b->kind != BIND_RW || stat(b->src, &st) != 0 || st.st_uid == TIDE_SANDBOX_ROOT_UID)
      continue;
    if (assume_missing) {
      *missing |= TIDE_SANDBOX_IDMAP;
      *idmap_path = b->src;
      continue;
    }
    int ns = idmap_userns();
    if (ns < 0)
      return tide_err_set(err, TIDE_ESANDBOX,
                          "sandbox: cannot create the user namespace of idmapped mounts: %s",
                          strerror(-ns));
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int pfd = (int)syscall(SYS_openat2, AT_FDCWD, b->src, &how, sizeof how);
    if (pfd < 0)
      return tide_err_set(err, TIDE_ESANDBOX, "sandbox: writable: cannot open '%s': %s", b->src,
                          strerror(errno));
    int fd = open_tree(pfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    int e = errno;
    close(pfd);
    if (fd < 0)
      return tide_err_set(err, TIDE_ESANDBOX, "sandbox: writable: cannot clone '%s': %s", b->src,
                          strerror(e));
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    a.userns_fd = (uint64_t)ns;
    if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) != 0) {
      e = errno;
      close(fd);
      /* EINVAL: this filesystem (or one mounted below the path) has no idmapped mounts. */
      if (e != EINVAL)
        return tide_err_set(err, TIDE_ESANDBOX, "sandbox: writable: cannot idmap '%s': %s", b->src,
                            strerror(e));
      *missing |= TIDE_SANDBOX_IDMAP;
      *idmap_path = b->src;
      continue;
    }
    b->fd = fd;
    b->premade = 1;
  }
  return 0;
}

/*
** The pathname sockets of tide's network namespace, from /proc/net/unix ("Num RefCount Protocol
** Flags Type St Inode Path"; abstract names start with '@'). Sockets bound in other network
** namespaces are not listed: see docs/sandbox.md.
*/
static int collect_sockets(plan *pl)
{
  int fd = open("/proc/net/unix", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t cap = 16384, len = 0;
  char *text = malloc(cap);
  int rc = text ? 0 : -ENOMEM;
  while (rc == 0) {
    if (len + 1 >= cap) {
      char *t = realloc(text, cap * 2);
      if (!t) {
        rc = -ENOMEM;
        break;
      }
      text = t;
      cap *= 2;
    }
    ssize_t n = read(fd, text + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = -errno;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  if (rc != 0) {
    free(text);
    return rc;
  }
  text[len] = '\0';
  size_t lines = 0;
  for (size_t i = 0; i < len; i++)
    lines += text[i] == '\n';
  pl->socks = malloc((lines + 1) * sizeof *pl->socks);
  if (!pl->socks) {
    free(text);
    return -ENOMEM;
  }
  pl->sock_text = text;
  for (char *line = text, *next; *line; line = next) {
    char *nl = strchr(line, '\n');
    next = nl ? nl + 1 : line + strlen(line);
    if (nl)
      *nl = '\0';
    char *f = line;
    for (int field = 0; field < 7 && f; field++) {
      f = strchr(f, ' ');
      while (f && *f == ' ')
        f++;
    }
    if (f && f[0] == '/' && strlen(f) < PATH_MAX)
      pl->socks[pl->nsocks++] = f;
  }
  return 0;
}

static void free_plan(plan *pl)
{
  if (!pl)
    return;
  free(pl->socks);
  free(pl->sock_text);
  for (int i = 0; i < pl->nclosed; i++)
    free(pl->closed[i]);
  free(pl);
}

static void close_premade(plan *pl)
{
  for (int i = 0; i < pl->nbinds; i++)
    if (pl->binds[i].premade)
      close_fd(&pl->binds[i].fd);
  close_fd(&pl->cg_tasks[0]);
  close_fd(&pl->cg_tasks[1]);
}

/*
** The child's memory. The child is not made with CLONE_VM (it builds its mounts while tide goes
** on), so it is a copy of tide, and a copy shares every page until one side writes it: each
** page tide wrote while a sandbox lived took a fault of its own, some 300 per build. So the
** child does not get tide's heap at all (MADV_DONTFORK for the clone), and everything it reads
** is first copied into one mapping of its own. The copy is made twice over the same code: once
** to measure (no base: nothing is written), once into the mapping.
*/
typedef struct child_mem {
  char *base; /* NULL while measuring */
  size_t used;
} child_mem;

static void *mem_take(child_mem *m, size_t n)
{
  void *p = m->base ? m->base + m->used : NULL;
  m->used += (n + 15) & ~(size_t)15;
  return p;
}

static char *mem_str(child_mem *m, const char *s)
{
  size_t n = strlen(s) + 1;
  char *p = mem_take(m, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

static char **mem_strv(child_mem *m, const char *const *v)
{
  size_t n = 0;
  while (v[n])
    n++;
  char **out = mem_take(m, (n + 1) * sizeof *out);
  for (size_t i = 0; i < n; i++) {
    char *s = mem_str(m, v[i]);
    if (out)
      out[i] = s;
  }
  if (out)
    out[n] = NULL;
  return out;
}

/* pl with every pointer the child follows into m (see child_mem); NULL while measuring. The
** policy's lists are the parent's business (the binds hold their paths). */
static plan *copy_plan(child_mem *m, const plan *pl)
{
  plan *cp = mem_take(m, sizeof *cp);
  tide_sandbox_policy *pol = mem_take(m, sizeof *pol);
  tide_sandbox_exec *ex = mem_take(m, sizeof *ex);
  if (cp) {
    *cp = *pl;
    *pol = *pl->pol;
    *ex = *pl->ex;
    pol->writable = pol->read_only = pol->hide = NULL;
    pol->protect = NULL;
    ex->path = ex->cwd = NULL;
    ex->argv = ex->envp = NULL;
    cp->pol = pol;
    cp->ex = ex;
    cp->nclosed = 0;
    cp->sock_text = NULL;
  }
  const char *host = pl->pol->hostname ? mem_str(m, pl->pol->hostname) : NULL;
  if (cp)
    pol->hostname = host;
  for (int i = 0; i < pl->nbinds; i++) {
    const char *src = mem_str(m, pl->binds[i].src);
    if (cp)
      cp->binds[i].src = src;
  }
  const char **socks = mem_take(m, pl->nsocks * sizeof *socks);
  for (size_t i = 0; i < pl->nsocks; i++) {
    const char *sock = mem_str(m, pl->socks[i]);
    if (cp)
      socks[i] = sock;
  }
  struct sock_filter *f = mem_take(m, seccomp_prog.len * sizeof *f);
  if (cp) {
    cp->socks = socks;
    memcpy(f, seccomp_prog.filter, seccomp_prog.len * sizeof *f);
    cp->filter.len = seccomp_prog.len;
    cp->filter.filter = f;
  }
  if (pl->ex->later) {
    /* Written by the child only: in the parent these pages are never touched. */
    char *msg = mem_take(m, TIDE_SANDBOX_PROGRAM_BYTES);
    char **ptrs = mem_take(m, TIDE_SANDBOX_PROGRAM_STRINGS * sizeof *ptrs);
    if (cp) {
      cp->msg = msg;
      cp->msg_ptrs = ptrs;
    }
  } else {
    const char *path = mem_str(m, pl->prog_path);
    char **argv = mem_strv(m, (const char *const *)pl->prog_argv);
    char **envp = mem_strv(m, (const char *const *)pl->prog_envp);
    if (cp) {
      cp->prog_path = path;
      cp->prog_argv = argv;
      cp->prog_envp = envp;
    }
  }
  return cp;
}

/* Maps a copy of pl for the child; NULL with errno set. Unmap *size bytes at the result. */
static plan *child_plan(const plan *pl, size_t *size)
{
  child_mem m = {NULL, 0};
  copy_plan(&m, pl);
  *size = m.used;
  m.base = mmap(NULL, m.used, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m.base == MAP_FAILED)
    return NULL;
  m.used = 0;
  return copy_plan(&m, pl);
}

/* Where malloc's heap starts ([heap] in /proc/self/maps), found once; 0 when there is none. */
static uintptr_t heap_start(void)
{
  static uintptr_t start = UINTPTR_MAX;
  if (start != UINTPTR_MAX)
    return start;
  start = 0;
  FILE *f = fopen("/proc/self/maps", "re");
  char line[512];
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo;
    if (strstr(line, "[heap]") && sscanf(line, "%lx-", &lo) == 1) {
      start = (uintptr_t)lo;
      break;
    }
  }
  if (f)
    fclose(f);
  return start;
}

/* MADV_DONTFORK or MADV_DOFORK over the heap up to its current end. Only an optimisation (see
** child_mem): a part that fails stays shared, as before. */
static void heap_advise(int advice)
{
  uintptr_t lo = heap_start(), hi = (uintptr_t)sbrk(0);
  if (lo && hi > lo)
    (void)madvise((void *)lo, hi - lo, advice);
}

/* Waits for the child's exec: an end of the pipe means it happened, a report that a step
** failed. Returns 0 or the error. */
static int read_report(int fd, const char *cwd, const char *argv0, tide_err *err)
{
  child_report r;
  ssize_t n;
  do
    n = read(fd, &r, sizeof r);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof r)
    return 0;
  if (r.exec == 2)
    return tide_err_set(err, -r.err, "sandbox: cannot change to directory '%s': %s", cwd,
                        strerror(r.err));
  if (r.exec)
    return tide_err_set(err, -r.err, "sandbox: cannot execute '%s': %s", argv0, strerror(r.err));
  return tide_err_set(err, TIDE_ESANDBOX, "sandbox: %s: %s", r.step, strerror(r.err));
}

int tide_sandbox_spawn(const tide_sandbox_policy *pol, const tide_sandbox_exec *ex,
                       tide_sandbox_child *c, tide_err *err)
{
  memset(c, 0, sizeof *c);
  c->pid = -1;
  c->pidfd = -1;
  c->status_fd = -1;
  c->program_fd = -1;
  c->report_fd = -1;
  int rc = tide_sandbox_check(pol, err);
  if (rc != 0)
    return rc;
  if ((rc = seccomp_build(err)) != 0)
    return rc;

  plan *pl = calloc(1, sizeof *pl);
  if (!pl)
    return tide_err_set(err, -ENOMEM, "sandbox: out of memory");
  pl->pol = pol;
  pl->ex = ex;
  pl->cg_tasks[0] = pl->cg_tasks[1] = -1;
  pl->program_fd = -1;
  pl->prog_path = ex->path;
  pl->prog_argv = ex->argv;
  pl->prog_envp = ex->envp;
  pl->as_root = geteuid() == 0;
  pl->uid = pol->uid_set ? pol->uid : DEFAULT_UID;
  pl->gid = pol->uid_set ? pol->gid : DEFAULT_UID;
  pl->landlock_abi = tide_sandbox_landlock_abi();
  pl->cap_last = cap_last();
  /* Tests and diagnostics: behave as a machine without these protections would (reported). */
  const char *assume = getenv("TIDE_SANDBOX_ASSUME_MISSING");
  int assume_cgroup = assume && strstr(assume, "cgroup");
  if (assume && strstr(assume, "landlock"))
    pl->landlock_abi = 0;
  if (!pl->landlock_abi)
    c->missing |= TIDE_SANDBOX_LANDLOCK;
  snprintf(pl->tmp_opts, sizeof pl->tmp_opts, "size=%llu,mode=1777",
           (unsigned long long)(pol->tmp_size ? pol->tmp_size : TIDE_SANDBOX_DEFAULT_TMP));
  if (ex->cwd)
    snprintf(pl->cwd, sizeof pl->cwd, "%s", ex->cwd);
  else if (!getcwd(pl->cwd, sizeof pl->cwd))
    strcpy(pl->cwd, "/");
  add_binds(pl, pol->writable, BIND_RW);
  add_binds(pl, pol->read_only, BIND_RO);
  add_binds(pl, pol->hide, BIND_HIDE);
  protect_home(pl, pol);
  if (pl->as_root)
    open_closed_ancestors(pl);
  qsort(pl->binds, (size_t)pl->nbinds, sizeof *pl->binds, cmp_bind);
  /* Without a cgroup (decided below, before the child runs) memory falls back to RLIMIT_AS. */
  if (pol->network != TIDE_SANDBOX_NET_HOST && (rc = collect_sockets(pl)) != 0) {
    free_plan(pl);
    return tide_err_set(err, TIDE_ESANDBOX, "sandbox: cannot list the host's unix sockets: %s",
                        strerror(-rc));
  }
  const char *idmap_path = NULL;
  if (pl->as_root && (rc = idmap_binds(pl, assume && strstr(assume, "idmap"), &c->missing,
                                       &idmap_path, err)) != 0) {
    close_premade(pl);
    free_plan(pl);
    return rc;
  }
  int want_cgroup = pol->memory || pol->pids;
  int cg_ok = want_cgroup && !assume_cgroup && pl->as_root &&
              access(CGROUP_V1 "/memory", W_OK) == 0 && access(CGROUP_V1 "/pids", W_OK) == 0;
  if (cg_ok && cgroup_prepare(pl, c) != 0) {
    close_fd(&pl->cg_tasks[0]);
    close_fd(&pl->cg_tasks[1]);
    cgroup_remove(c);
    cg_ok = 0;
  }
  if (want_cgroup && !cg_ok)
    c->missing |= TIDE_SANDBOX_CGROUP;
  pl->set_as = pol->memory && !cg_ok;
  if (c->missing & pol->require) {
    char names[64];
    unsigned lack = c->missing & pol->require;
    close_premade(pl);
    cgroup_remove(c);
    free_plan(pl);
    if (lack == TIDE_SANDBOX_IDMAP)
      return tide_err_set(err, TIDE_ESANDBOX,
                          "sandbox: required protection unavailable: idmap (writable path '%s')",
                          idmap_path);
    return tide_err_set(err, TIDE_ESANDBOX, "sandbox: required protection unavailable: %s",
                        tide_sandbox_names(lack, names, sizeof names));
  }

  int syncp[2] = {-1, -1}, errp[2] = {-1, -1}, statp[2] = {-1, -1}, progp[2] = {-1, -1};
  /* The status pipe is read at reap, when it holds the status or nothing: never wait there. */
  if (pipe2(syncp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 || pipe2(statp, O_CLOEXEC) != 0 ||
      fcntl(statp[0], F_SETFL, O_NONBLOCK) != 0 || (ex->later && pipe2(progp, O_CLOEXEC) != 0)) {
    rc = tide_err_set(err, -errno, "sandbox: cannot create a pipe: %s", strerror(errno));
    goto fail;
  }
  pl->sync_fd = syncp[0];
  pl->err_fd = errp[1];
  pl->status_fd = statp[1];
  pl->program_fd = progp[0];

  uint64_t flags =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
  /* A child that joins its cgroups makes its cgroup namespace after that (child_main). */
  if (pl->cg_tasks[0] < 0 && pl->cg_tasks[1] < 0)
    flags |= CLONE_NEWCGROUP;
  if (pol->network != TIDE_SANDBOX_NET_HOST)
    flags |= CLONE_NEWNET;
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = flags;
  ca.pidfd = (uint64_t)(uintptr_t)&c->pidfd;
  ca.exit_signal = SIGCHLD;
  uid_t outer_uid = pl->as_root ? TIDE_SANDBOX_ROOT_UID : geteuid();
  gid_t outer_gid = pl->as_root ? TIDE_SANDBOX_ROOT_UID : getegid();
  /* Our pipes are root's, mode 0600: give them to the sandbox uid, or it cannot reopen them
  ** by name (/dev/stdout is /proc/self/fd/1). Other descriptors (files, /dev/null) keep their
  ** owner. */
  for (int i = 0; i < 3 && pl->as_root; i++) {
    struct stat st;
    if (fstat(ex->fd[i], &st) == 0 && S_ISFIFO(st.st_mode))
      fchown(ex->fd[i], outer_uid, outer_gid);
  }
  /* Until the child has reset its dispositions, a signal sent to it (a sandbox let go at once)
  ** would run tide's handlers there, and libuv's write to tide's own signal pipe: tide would
  ** take the signal for its own. The child starts with every signal blocked. */
  size_t cp_size;
  plan *cp = child_plan(pl, &cp_size);
  if (!cp) {
    rc = tide_err_set(err, -errno, "sandbox: cannot map the child's plan: %s", strerror(errno));
    goto fail;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  heap_advise(MADV_DONTFORK);
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid == 0)
    _exit(child_main(cp));
  int clone_errno = errno;
  heap_advise(MADV_DOFORK);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  munmap(cp, cp_size); /* the child has its copy */
  if (pid < 0) {
    rc = tide_err_set(err, TIDE_ESANDBOX, "sandbox: cannot create the namespaces: %s",
                      strerror(clone_errno));
    goto fail;
  }
  c->pid = (pid_t)pid;
  close_premade(pl); /* the child has its copies */
  close_fd(&syncp[0]);
  close_fd(&errp[1]);
  close_fd(&statp[1]);
  close_fd(&progp[0]);

  int e = write_maps(pl, c->pid, c->pidfd, outer_uid, outer_gid);
  if (e != 0) {
    rc = tide_err_set(err, TIDE_ESANDBOX, "sandbox: cannot write the uid/gid maps: %s",
                      strerror(-e));
    goto fail;
  }
  cgroup_name(c);
  if (write(syncp[1], "g", 1) != 1) {
    rc = tide_err_set(err, TIDE_ESANDBOX, "sandbox: cannot start the child: %s", strerror(errno));
    goto fail;
  }
  close_fd(&syncp[1]);

  if (ex->later) {
    /* The setup goes on while the caller works out the program: see tide_sandbox_run. */
    if (!(c->cwd = strdup(pl->cwd))) {
      rc = tide_err_set(err, -ENOMEM, "sandbox: out of memory");
      goto fail;
    }
    c->program_fd = progp[1];
    c->report_fd = errp[0];
    progp[1] = errp[0] = -1;
  } else {
    if ((rc = read_report(errp[0], pl->cwd, ex->argv[0], err)) != 0)
      goto fail;
    close_fd(&errp[0]);
  }
  c->status_fd = statp[0];
  free_plan(pl);
  if (c->missing)
    warn_missing(c->missing, idmap_path);
  return 0;

fail:
  if (c->pid > 0) {
    syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
    waitpid(c->pid, NULL, 0);
  }
  cgroup_remove(c);
  close_premade(pl);
  close_fd(&c->pidfd);
  close_fd(&syncp[0]);
  close_fd(&syncp[1]);
  close_fd(&errp[0]);
  close_fd(&errp[1]);
  close_fd(&statp[0]);
  close_fd(&statp[1]);
  close_fd(&progp[0]);
  close_fd(&progp[1]);
  free(c->cwd);
  c->cwd = NULL;
  c->pid = -1;
  free_plan(pl);
  return rc;
}

int tide_sandbox_run(tide_sandbox_child *c, const char *path, char *const argv[],
                     char *const envp[], tide_err *err)
{
  if (c->program_fd < 0)
    return tide_err_set(err, TIDE_EINPUT, "sandbox: not waiting for a program");
  size_t bytes = strlen(path) + 1;
  uint32_t argc = 0, envc = 0;
  for (; argv[argc]; argc++)
    bytes += strlen(argv[argc]) + 1;
  for (; envp && envp[envc]; envc++)
    bytes += strlen(envp[envc]) + 1;
  int rc = 0;
  char *msg = NULL;
  if (argc < 1 || bytes > TIDE_SANDBOX_PROGRAM_BYTES ||
      (uint64_t)argc + envc + 2 > TIDE_SANDBOX_PROGRAM_STRINGS)
    rc = tide_err_set(err, TIDE_EINPUT,
                      "sandbox: a program needs arguments, and at most %d bytes and %d strings "
                      "of them and its environment (got %zu bytes, %u strings)",
                      TIDE_SANDBOX_PROGRAM_BYTES, TIDE_SANDBOX_PROGRAM_STRINGS, bytes,
                      argc + envc + 1);
  else if (!(msg = malloc(3 * sizeof(uint32_t) + bytes)))
    rc = tide_err_set(err, -ENOMEM, "sandbox: out of memory");
  if (rc != 0) {
    /* The sandbox reads an end and exits. */
    close_fd(&c->program_fd);
    close_fd(&c->report_fd);
    return rc;
  }
  uint32_t h[3] = {(uint32_t)bytes, argc, envc};
  memcpy(msg, h, sizeof h);
  char *o = msg + sizeof h;
  o = stpcpy(o, path) + 1;
  for (uint32_t i = 0; i < argc; i++)
    o = stpcpy(o, argv[i]) + 1;
  for (uint32_t i = 0; i < envc; i++)
    o = stpcpy(o, envp[i]) + 1;
  /* A write that fails means the setup failed first: its report says why. */
  int sent = tide_fs_write_all(c->program_fd, msg, sizeof h + bytes);
  /* The environment may hold secrets. */
  explicit_bzero(msg, sizeof h + bytes);
  free(msg);
  close_fd(&c->program_fd);
  rc = read_report(c->report_fd, c->cwd, argv[0], err);
  if (rc == 0 && sent != 0)
    rc = tide_err_set(err, TIDE_ESANDBOX, "sandbox: the program could not be handed over");
  close_fd(&c->report_fd);
  free(c->cwd);
  c->cwd = NULL;
  return rc;
}

void tide_sandbox_child_reaped(tide_sandbox_child *c, int *status)
{
  int st;
  if (c->status_fd >= 0 && read(c->status_fd, &st, sizeof st) == (ssize_t)sizeof st)
    *status = st;
  cgroup_remove(c);
}

void tide_sandbox_child_release(tide_sandbox_child *c)
{
  close_fd(&c->program_fd);
  close_fd(&c->report_fd);
  free(c->cwd);
  c->cwd = NULL;
  close_fd(&c->status_fd);
  close_fd(&c->pidfd);
  cgroup_remove(c);
}
