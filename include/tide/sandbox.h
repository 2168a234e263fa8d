/*
** The rootless process sandbox, without Lua.
**
** tide_sandbox_spawn() starts a program inside fresh user, mount, pid, ipc, uts and cgroup
** namespaces (and a network namespace with only loopback unless the policy shares the host's
** network). The program sees the host read-only (every mount, recursively), the policy's
** writable directories, a fresh sized tmpfs on /tmp, a fresh /proc for its pid namespace and a
** minimal /dev. It runs as an unprivileged uid (1000 inside by default), mapped to the caller's
** uid when tide runs unprivileged and to TIDE_SANDBOX_ROOT_UID when tide runs as root: never to
** uid 0 outside. As root, each writable path not owned by TIDE_SANDBOX_ROOT_UID is an idmapped
** mount mapping tide's own uid/gid to TIDE_SANDBOX_ROOT_UID, so tide's files there are the
** program's and what it creates there is tide's; the seccomp filter then refuses setuid/setgid
** modes. Of tide's environment the program inherits only PATH, HOME, LANG, TZ and CI (host/proc.c).
*Before exec: rlimits, every inherited descriptor closed, the capability
** bounding set dropped, no_new_privs, Landlock (writes only below the writable paths, /tmp,
** /dev and /proc) and a seccomp filter.
**
** Process tree: the first process is pid 1 of the new pid namespace, a small init (our own code
** in the cloned child, never a re-exec of tide) that forks the program, reaps orphans and exits
** with the program's status; when it exits the kernel kills whatever is left in the namespace.
** The init leads its own session and process group (outside pid == pgid), so signals to the
** group reach the program, and SIGKILL to the init ends the whole tree.
**
** Protections that a machine may lack are reported, never skipped silently: Landlock (kernel
** without it), cgroup limits (no writable cgroup hierarchy, e.g. unprivileged) and idmapped
** writable paths (a filesystem without idmapped mounts). Their names
** are in TIDE_SANDBOX_* bits; tide_sandbox_spawn() fails with TIDE_ESANDBOX when a missing one is
** in policy->require, else sets it in child->missing. Namespaces, mounts, seccomp, no_new_privs
** and rlimits are never optional: failing one fails the spawn with TIDE_ESANDBOX.
**
** Single-threaded use per call; the call blocks until the program has been exec'd (or failed),
** like posix_spawn.
*/
#ifndef TIDE_SANDBOX_H
#define TIDE_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tide/err.h"

/* The outer uid and gid of sandboxed programs when tide runs as root. */
#define TIDE_SANDBOX_ROOT_UID 100000
#define TIDE_SANDBOX_DEFAULT_TMP (512ull << 20)

/* Optional protections, as bits of tide_sandbox_policy.require and tide_sandbox_child.missing. */
enum {
  TIDE_SANDBOX_LANDLOCK = 1 << 0, /* Landlock file-write restriction (and scopes at ABI >= 6) */
  TIDE_SANDBOX_CGROUP = 1 << 1,   /* cgroup memory and pids limits (only when memory or pids set) */
  /* As root: writable paths idmapped so that tide's user's files are the program's (only for
     paths not owned by TIDE_SANDBOX_ROOT_UID); without it the program writes as that uid. */
  TIDE_SANDBOX_IDMAP = 1 << 2,
};

/* tide_sandbox_policy.network */
enum {
  TIDE_SANDBOX_NET_LOOPBACK = 0, /* own network namespace with its own loopback up */
  TIDE_SANDBOX_NET_HOST = 1,     /* the host's network */
  /* own network namespace, loopback down, and (Landlock ABI >= 4) every TCP bind and connect
     refused */
  TIDE_SANDBOX_NET_OFF = 2,
};

typedef struct tide_sandbox_policy {
  /* TIDE_SANDBOX_NET_*. Unless HOST, the host's pathname unix sockets (those its network
     namespace lists in /proc/net/unix) are covered by /dev/null, so they refuse connections. */
  int network;
  const char *const *writable;  /* absolute paths bound read-write, NULL-terminated; borrowed */
  const char *const *read_only; /* bound read-only over a writable area (e.g. src/.git) */
  const char *const *hide;      /* directories covered by an empty read-only tmpfs */
  uint64_t tmp_size;            /* bytes of the /tmp tmpfs; 0: TIDE_SANDBOX_DEFAULT_TMP */
  uint64_t memory;              /* bytes; 0: none. cgroup when possible, else RLIMIT_AS */
  uint64_t pids;                /* processes; 0: none. RLIMIT_NPROC and cgroup pids.max */
  uint64_t cpu_seconds;         /* RLIMIT_CPU per process; 0: none */
  uint64_t nofile;              /* RLIMIT_NOFILE; 0: inherited */
  uint64_t fsize;               /* RLIMIT_FSIZE bytes; 0: none */
  uint32_t uid, gid;            /* inside; both default to 1000 when 0 is not asked (see below) */
  int uid_set;          /* uid/gid were given (uid 0 inside is allowed: still unprivileged) */
  const char *hostname; /* NULL: "tide" */
  unsigned require;     /* TIDE_SANDBOX_* bits that must apply */
  /* NULL, or a directory (tide's home) the program must not reach: no writable path may lie in
     it, and when it lies below a writable path it is covered by an empty read-only directory */
  const char *protect;
} tide_sandbox_policy;

/* What tide_sandbox_spawn() runs. */
typedef struct tide_sandbox_exec {
  const char *path;  /* resolved program path */
  char *const *argv; /* borrowed */
  char *const *envp; /* borrowed */
  const char *cwd;   /* absolute or NULL (the caller's cwd) */
  /* Become 0, 1 and 2; borrowed, the caller closes them. When tide runs as root, pipes among
     them are given to the sandbox's uid (/dev/stdout reopens fd 1). */
  int fd[3];
  /* The program comes later: path, argv and envp are ignored, and the sandbox, once set up,
     waits for tide_sandbox_run() (or its end: then it exits 127). Lets the caller work out the
     program and its environment while the sandbox is being made. */
  int later;
} tide_sandbox_exec;

/* The most a program sent to tide_sandbox_run() may take: its strings, and their number. */
#define TIDE_SANDBOX_PROGRAM_BYTES (1024 * 1024)
#define TIDE_SANDBOX_PROGRAM_STRINGS 16384

typedef struct tide_sandbox_child {
  pid_t pid;          /* outer pid of the init; also its process group id */
  int pidfd;          /* owned until tide_sandbox_child_release() unless taken (set to -1) */
  int status_fd;      /* the init reports the program's wait status here */
  unsigned missing;   /* TIDE_SANDBOX_* bits that could not be applied */
  char cgroup[2][96]; /* per-sandbox cgroup v1 directories to remove, or "" */
  /* Started with `later` until tide_sandbox_run(): where the program goes, where the setup's
     failure (or nothing, at the exec) comes back, and the working directory for its message.
     -1 and NULL otherwise; owned. */
  int program_fd, report_fd;
  char *cwd;
} tide_sandbox_child;

/* Zeroes p: network off, nothing writable, default /tmp, no limits, uid/gid 1000. */
void tide_sandbox_policy_init(tide_sandbox_policy *p);

/*
** Checks a policy without starting anything: paths absolute, normalised, existing and free of
** symlinks, no duplicates, no writable path inside p->protect. Returns 0 or TIDE_EINPUT with
** err naming the key and path.
*/
int tide_sandbox_check(const tide_sandbox_policy *p, tide_err *err);

/*
** Starts ex under p. On success returns 0 and fills *child (release it with
** tide_sandbox_child_release after reaping). On failure returns TIDE_EINPUT (bad policy),
** TIDE_ESANDBOX (a protection could not be applied: err says which), or a negative errno from
** exec ("sandbox: cannot execute 'x': ..."); nothing is left running.
*/
int tide_sandbox_spawn(const tide_sandbox_policy *p, const tide_sandbox_exec *ex,
                       tide_sandbox_child *child, tide_err *err);

/*
** Runs the program in a sandbox started with `later` (path resolved, argv and envp
** NULL-terminated; all borrowed). Returns 0 once it is exec'd, or the error of the setup or of
** the exec as tide_sandbox_spawn() would have; then the sandbox is ending (exit 127) and the
** caller reaps it as usual. A second call, or one for a sandbox not started with `later`,
** returns TIDE_EINPUT. Closing child->program_fd instead makes the sandbox exit 127. The caller
** must ignore SIGPIPE, as tide does: a sandbox whose setup failed has closed its end.
*/
int tide_sandbox_run(tide_sandbox_child *c, const char *path, char *const argv[],
                     char *const envp[], tide_err *err);

/*
** Call once the init has been reaped with raw wait status *status: replaces it with the
** program's own status (so a program killed by a signal reads as killed) and removes the
** per-sandbox cgroups.
*/
void tide_sandbox_child_reaped(tide_sandbox_child *c, int *status);

/* Closes the descriptors and removes leftovers; idempotent. */
void tide_sandbox_child_release(tide_sandbox_child *c);

/* Comma-separated names of the bits in mask ("landlock,cgroup"), into buf. */
const char *tide_sandbox_names(unsigned mask, char *buf, size_t size);

/* The bit for a name ("landlock", "cgroup"), or 0. */
unsigned tide_sandbox_bit(const char *name);

/* Parses "512M", "2G", "100k" or plain bytes. Returns 0 or -1. */
int tide_sandbox_parse_size(const char *s, uint64_t *out);

/* The Landlock ABI of the running kernel, 0 when unavailable. */
int tide_sandbox_landlock_abi(void);

#endif
