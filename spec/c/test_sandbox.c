/*
** host/sandbox.c without Lua: sizes and names, policy checks, and real sandboxed children started
** with tide_sandbox_spawn(): exit status through the init, a program killed by a signal, an
** exec failure that leaves nothing behind, and the descriptors the program gets; a sandbox that
** takes its program later, and what it does with a program message it cannot read; tide's heap
** kept out of the child.
*/
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tide/sandbox.h"

static int usable;

static void test_parse_size(void **state)
{
  (void)state;
  uint64_t v = 0;
  assert_int_equal(tide_sandbox_parse_size("512M", &v), 0);
  assert_true(v == 512ull << 20);
  assert_int_equal(tide_sandbox_parse_size("2G", &v), 0);
  assert_true(v == 2ull << 30);
  assert_int_equal(tide_sandbox_parse_size("100kB", &v), 0);
  assert_true(v == 100ull << 10);
  assert_int_equal(tide_sandbox_parse_size("4096", &v), 0);
  assert_true(v == 4096);
  const char *bad[] = {"", "-1", "M", "1X", "1MM", "99999999999999999999", "17179869184G", NULL};
  for (int i = 0; bad[i]; i++)
    assert_int_equal(tide_sandbox_parse_size(bad[i], &v), -1);
}

static void test_names(void **state)
{
  (void)state;
  char buf[64];
  assert_string_equal(tide_sandbox_names(0, buf, sizeof buf), "");
  assert_string_equal(
      tide_sandbox_names(TIDE_SANDBOX_LANDLOCK | TIDE_SANDBOX_CGROUP, buf, sizeof buf),
      "landlock,cgroup");
  assert_int_equal(tide_sandbox_bit("cgroup"), TIDE_SANDBOX_CGROUP);
  assert_int_equal(tide_sandbox_bit("idmap"), TIDE_SANDBOX_IDMAP);
  assert_string_equal(
      tide_sandbox_names(TIDE_SANDBOX_IDMAP | TIDE_SANDBOX_LANDLOCK, buf, sizeof buf),
      "landlock,idmap");
  assert_int_equal(tide_sandbox_bit("seccomp"), 0);
}

static void check_policy(const char *const *writable, const char *needle)
{
  tide_sandbox_policy p;
  tide_sandbox_policy_init(&p);
  p.writable = writable;
  tide_err err;
  tide_err_clear(&err);
  int rc = tide_sandbox_check(&p, &err);
  if (!needle) {
    assert_int_equal(rc, 0);
    return;
  }
  assert_int_equal(rc, TIDE_EINPUT);
  if (!strstr(err.msg, needle))
    fail_msg("'%s' lacks '%s'", err.msg, needle);
}

static void test_check(void **state)
{
  (void)state;
  char dir[] = "/tmp/tide-sbtest-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char link[64], dotdot[64], missing[64];
  snprintf(link, sizeof link, "%s-link", dir);
  assert_int_equal(symlink(dir, link), 0);
  snprintf(dotdot, sizeof dotdot, "%s/../x", dir);
  snprintf(missing, sizeof missing, "%s/missing", dir);
  check_policy((const char *[]){dir, NULL}, NULL);
  check_policy((const char *[]){"rel", NULL}, "not absolute");
  check_policy((const char *[]){"/", NULL}, "'/' is not allowed");
  check_policy((const char *[]){dotdot, NULL}, "not normalised");
  check_policy((const char *[]){link, NULL}, "symlink");
  check_policy((const char *[]){missing, NULL}, "No such file");
  check_policy((const char *[]){dir, dir, NULL}, "listed twice");
  unlink(link);
  rmdir(dir);
}

/* Starts a sandbox with stdout into a pipe (*out_fd): argv now, or with later none yet (it
** waits for tide_sandbox_run). Returns what tide_sandbox_spawn does. */
static int start(char *const *argv, int later, tide_sandbox_child *c, int *out_fd)
{
  tide_sandbox_policy p;
  tide_sandbox_policy_init(&p);
  const char *const none[] = {NULL};
  p.writable = none;
  int fds[2];
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  char *envp[] = {"PATH=/usr/bin:/bin", NULL};
  tide_sandbox_exec ex = {later ? NULL : argv[0],     later ? NULL : argv,
                          later ? NULL : envp,        "/",
                          {null_fd, fds[1], null_fd}, later};
  tide_err err;
  tide_err_clear(&err);
  int rc = tide_sandbox_spawn(&p, &ex, c, &err);
  close(fds[1]);
  close(null_fd);
  *out_fd = fds[0];
  if (rc != 0) {
    close(fds[0]);
    *out_fd = -1;
  }
  return rc;
}

/* Reads the output, reaps and releases; returns the program's wait status. */
static int finish(tide_sandbox_child *c, int out_fd, char *out, size_t size)
{
  size_t len = 0;
  ssize_t n;
  while (len + 1 < size && (n = read(out_fd, out + len, size - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = '\0';
  close(out_fd);
  int status = 0;
  assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
  tide_sandbox_child_reaped(c, &status);
  tide_sandbox_child_release(c);
  return status;
}

/* Runs argv sandboxed with stdout into a pipe; returns the program's wait status. */
static int run(char *const *argv, char *out, size_t size, int *rc_out)
{
  tide_sandbox_child c;
  int fd;
  *rc_out = start(argv, 0, &c, &fd);
  if (*rc_out != 0)
    return -1;
  return finish(&c, fd, out, size);
}

static void test_exit_status(void **state)
{
  (void)state;
  if (!usable)
    skip();
  char out[256];
  int rc;
  int st = run((char *[]){"/bin/sh", "-c", "echo $$; exit 3", NULL}, out, sizeof out, &rc);
  assert_int_equal(rc, 0);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 3);
  assert_string_equal(out, "2\n"); /* pid 2: the init is pid 1 */
  st = run((char *[]){"/bin/sh", "-c", "kill -TERM $$", NULL}, out, sizeof out, &rc);
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGTERM);
}

static void test_exec_failure(void **state)
{
  (void)state;
  if (!usable)
    skip();
  char out[64];
  int rc;
  run((char *[]){"/nonexistent/prog", NULL}, out, sizeof out, &rc);
  assert_int_equal(rc, -ENOENT);
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* nothing left to reap */
  assert_int_equal(errno, ECHILD);
}

static void test_descriptors(void **state)
{
  (void)state;
  if (!usable)
    skip();
  int leak = open("/dev/null", O_RDONLY); /* not close-on-exec */
  char out[256];
  int rc;
  run((char *[]){"/bin/sh", "-c", "ls /proc/self/fd | tr '\\n' ' '", NULL}, out, sizeof out, &rc);
  close(leak);
  assert_int_equal(rc, 0);
  /* 0 1 2, and 3 is ls's own directory handle */
  assert_string_equal(out, "0 1 2 3 ");
}

/* A sandbox that waits for its program. */
static void start_later(tide_sandbox_child *c, int *out_fd)
{
  assert_int_equal(start(NULL, 1, c, out_fd), 0);
  assert_true(c->program_fd >= 0);
}

static void test_later(void **state)
{
  (void)state;
  if (!usable)
    skip();
  tide_sandbox_child c;
  int fd;
  char out[256];
  tide_err err;
  /* The program and its environment, sent once the sandbox is made */
  start_later(&c, &fd);
  char *argv[] = {"sh", "-c", "echo \"$X\" $$; exit 4", NULL};
  char *envp[] = {"X=sent later", NULL};
  assert_int_equal(tide_sandbox_run(&c, "/bin/sh", argv, envp, &err), 0);
  assert_int_equal(c.program_fd, -1);
  assert_int_equal(tide_sandbox_run(&c, "/bin/sh", argv, envp, &err), TIDE_EINPUT);
  int st = finish(&c, fd, out, sizeof out);
  assert_string_equal(out, "sent later 2\n");
  assert_int_equal(WEXITSTATUS(st), 4);
  /* Let go without a program: it exits 127, having run nothing */
  start_later(&c, &fd);
  close(c.program_fd);
  c.program_fd = -1;
  st = finish(&c, fd, out, sizeof out);
  assert_int_equal(WEXITSTATUS(st), 127);
  assert_string_equal(out, "");
  /* An exec that fails is reported as tide_sandbox_spawn would */
  start_later(&c, &fd);
  char *missing[] = {"/nonexistent/prog", NULL};
  assert_int_equal(tide_sandbox_run(&c, missing[0], missing, NULL, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "cannot execute '/nonexistent/prog'"));
  st = finish(&c, fd, out, sizeof out);
  assert_int_equal(WEXITSTATUS(st), 127);
  /* Too large: refused here, and the sandbox goes */
  start_later(&c, &fd);
  char *big = malloc(TIDE_SANDBOX_PROGRAM_BYTES + 8);
  memset(big, 'x', TIDE_SANDBOX_PROGRAM_BYTES + 7);
  memcpy(big, "BIG=", 4);
  big[TIDE_SANDBOX_PROGRAM_BYTES + 7] = '\0';
  char *bigenv[] = {big, NULL};
  assert_int_equal(tide_sandbox_run(&c, "/bin/true", (char *[]){"true", NULL}, bigenv, &err),
                   TIDE_EINPUT);
  free(big);
  st = finish(&c, fd, out, sizeof out);
  assert_int_equal(WEXITSTATUS(st), 127);
}

/* Messages the sandbox must refuse: it reports and exits, and runs nothing. */
static void test_later_bad_message(void **state)
{
  (void)state;
  if (!usable)
    skip();
  static const struct {
    uint32_t h[3];
    const char *body;
    size_t len;
  } bad[] = {
      {{5, 1, 0}, "ab\0cd", 5},                              /* the last string has no NUL */
      {{6, 1, 0}, "ab\0cd\0", 6},                            /* fine: the control */
      {{9, 1, 0}, "ab\0cd\0ef\0", 9},                        /* a string more than announced */
      {{3, 0, 0}, "ab\0", 3},                                /* no argv */
      {{TIDE_SANDBOX_PROGRAM_BYTES + 1, 1, 0}, "", 0},       /* too long */
      {{6, 1, TIDE_SANDBOX_PROGRAM_STRINGS}, "ab\0cd\0", 6}, /* too many strings */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tide_sandbox_child c;
    int fd;
    char out[64];
    tide_err err;
    tide_err_clear(&err);
    start_later(&c, &fd);
    assert_int_equal(write(c.program_fd, bad[i].h, sizeof bad[i].h), (ssize_t)sizeof bad[i].h);
    if (bad[i].len)
      assert_int_equal(write(c.program_fd, bad[i].body, bad[i].len), (ssize_t)bad[i].len);
    /* What follows is never read as a program: the first message is the only one. */
    int rc = tide_sandbox_run(&c, "/bin/sh", (char *[]){"sh", "-c", "echo ran", NULL}, NULL, &err);
    int st = finish(&c, fd, out, sizeof out);
    if (i == 1) {
      /* "ab" is no program: the exec fails, nothing ran */
      assert_int_equal(rc, -ENOENT);
    } else {
      assert_int_equal(rc, TIDE_ESANDBOX);
      assert_non_null(strstr(err.msg, "receive the program"));
    }
    assert_int_equal(WEXITSTATUS(st), 127);
    assert_string_equal(out, "");
  }
}

/* Whether p lies in malloc's heap ([heap] in /proc/self/maps). */
static int in_heap(const void *p)
{
  FILE *f = fopen("/proc/self/maps", "re");
  char line[512];
  int in = 0;
  while (f && !in && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    in = strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo &&
         (uintptr_t)p < hi;
  }
  if (f)
    fclose(f);
  return in;
}

/* While a sandbox lives, heap pages tide writes take no fault: the child never got them, so
** they are not shared copy-on-write (each would fault once per sandbox otherwise). */
static void test_heap_not_shared(void **state)
{
  (void)state;
  enum { PAGES = 16, PAGE = 4096 };
  char *buf = malloc(PAGES * PAGE); /* below malloc's mmap threshold */
  assert_non_null(buf);
  memset(buf, 1, PAGES * PAGE);
  if (!usable || !in_heap(buf) || !in_heap(buf + PAGES * PAGE - 1)) {
    free(buf); /* e.g. AddressSanitizer's allocator, which keeps no [heap] */
    skip();
  }
  tide_sandbox_child c;
  int fd;
  char out[64];
  start_later(&c, &fd);
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  for (int i = 0; i < PAGES; i++)
    buf[i * PAGE] = 2;
  getrusage(RUSAGE_SELF, &after);
  close(c.program_fd);
  c.program_fd = -1;
  assert_int_equal(WEXITSTATUS(finish(&c, fd, out, sizeof out)), 127);
  free(buf);
  assert_true(after.ru_minflt - before.ru_minflt < PAGES / 2);
}

int main(void)
{
  /* As tide does (include/tide/proc.h): a program pipe whose reader is gone fails with EPIPE. */
  signal(SIGPIPE, SIG_IGN);
  usable = access("/proc/self/ns/user", F_OK) == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_size),      cmocka_unit_test(test_names),
      cmocka_unit_test(test_check),           cmocka_unit_test(test_exit_status),
      cmocka_unit_test(test_exec_failure),    cmocka_unit_test(test_descriptors),
      cmocka_unit_test(test_later),           cmocka_unit_test(test_later_bad_message),
      cmocka_unit_test(test_heap_not_shared),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
