/*
** host/fs.c: the glob matcher's rules, glob expansion over a real tree (hidden files, excludes,
** links, .. and absolute patterns), walk, mkdir_p, rm_r's refusals and link handling, copy_tree
** and the whole-file helpers. Every test works in its own directory under TMPDIR.
*/
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tide/fs.h"

#include "scratch.h"

static void dir(const char *rel)
{
  assert_int_equal(mkdir(P(rel), 0755), 0);
}

static int setup(void **state)
{
  assert_int_equal(scratch_make("fs"), 0);
  return 0;
}

static int teardown(void **state)
{
  /* rm_r cleans up after every test, which also exercises it on what the test left. */
  scratch_remove();
  return 0;
}

/* Joins a list into "a b c" for compact assertions. */
static const char *joined(const tide_fs_list *l, size_t strip)
{
  static char buf[4096];
  buf[0] = '\0';
  for (size_t i = 0; i < l->n; i++) {
    size_t n = strlen(buf);
    snprintf(buf + n, sizeof buf - n, "%s%s", i ? " " : "", l->v[i].path + strip);
  }
  return buf;
}

static void test_match(void **state)
{
  static const struct {
    const char *pat, *path;
    unsigned flags;
    int want;
  } cases[] = {
      {"*.c", "a.c", 0, 1},
      {"*.c", "dir/a.c", 0, 0},
      {"**/*.c", "a.c", 0, 1},
      {"**/*.c", "x/y/z/a.c", 0, 1},
      {"src/**", "src", 0, 1},
      {"src/**", "src/a/b", 0, 1},
      {"src/**/x", "src/x", 0, 1},
      {"src/**/x", "src/a/b/x", 0, 1},
      {"src/**/x", "srcx", 0, 0},
      {"a/**/**/b", "a/b", 0, 1},
      {"**/b/**/c", "x/b/y/b/z/c", 0, 1},
      {"*", ".hidden", 0, 0},
      {"*", ".hidden", TIDE_FS_HIDDEN, 1},
      {".*", ".hidden", 0, 1},
      {"**/*.c", ".git/a.c", 0, 0},
      {"**/*.c", ".git/a.c", TIDE_FS_HIDDEN, 1},
      {"**/.git/*", "x/.git/config", 0, 1},
      {"?", ".", TIDE_FS_HIDDEN, 0},
      {"*", "..", TIDE_FS_HIDDEN, 0},
      {"**/x", "../x", TIDE_FS_HIDDEN, 0},
      {"../*", "../x", 0, 1},
      {"a/../b", "b", 0, 0}, /* lexical */
      {"a/../b", "a/../b", 0, 1},
      {"/etc/*", "/etc/passwd", 0, 1},
      {"/etc/*", "etc/passwd", 0, 0},
      {"etc/*", "/etc/passwd", 0, 0},
      {"./a//b/", "a/b", 0, 1},
      {"[ab]?\\*", "bz*", 0, 1},
      {"[ab]?\\*", "bzz", 0, 0},
      {"", "", 0, 1},
      {"", "a", 0, 0},
      {"[", "[", 0, 1}, /* fnmatch takes an unclosed bracket literally */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = tide_fs_match(cases[i].pat, cases[i].path, cases[i].flags);
    if (got != cases[i].want)
      fail_msg("match('%s', '%s', %u) = %d", cases[i].pat, cases[i].path, cases[i].flags, got);
  }
}

static void test_match_many_stars(void **state)
{
  /* 60 "**" against 200 segments that never match: bounded by the table, not exponential. */
  char pat[1024] = "", path[1024] = "";
  for (int i = 0; i < 60; i++)
    strcat(pat, "**/");
  strcat(pat, "z");
  for (int i = 0; i < 200; i++)
    strcat(path, "a/");
  strcat(path, "b");
  assert_int_equal(tide_fs_match(pat, path, 0), 0);
  path[strlen(path) - 1] = 'z';
  assert_int_equal(tide_fs_match(pat, path, 0), 1);
}

static void make_tree(void)
{
  dir("t");
  dir("t/src");
  dir("t/src/sub");
  dir("t/src/.cache");
  dir("t/empty");
  put("t/src/a.c", "a", 0644);
  put("t/src/b.h", "b", 0644);
  put("t/src/sub/c.c", "c", 0644);
  put("t/src/.cache/d.c", "d", 0644);
  put("t/.top.c", "e", 0644);
  assert_int_equal(symlink("src", P("t/srclink")), 0);
  assert_int_equal(symlink(".", P("t/src/loop")), 0);
}

static void glob_ok(const char *pattern, const tide_fs_glob_opts *o, tide_fs_list *l)
{
  tide_err err;
  tide_fs_list_clear(l);
  if (tide_fs_glob(pattern, o, l, &err) != 0)
    fail_msg("glob '%s': %s", pattern, err.msg);
}

static void test_glob(void **state)
{
  make_tree();
  tide_fs_list l = {0};
  tide_fs_glob_opts o = {.cwd = P("t")};

  glob_ok("**/*.c", &o, &l);
  assert_string_equal(joined(&l, 0), "src/a.c src/sub/c.c");
  glob_ok("src/*", &o, &l);
  assert_string_equal(joined(&l, 0), "src/a.c src/b.h src/loop src/sub");
  assert_int_equal(l.v[2].type, TIDE_FS_LINK);
  glob_ok("*/", &o, &l);
  assert_string_equal(joined(&l, 0), "empty src");
  glob_ok("**", &o, &l);
  assert_string_equal(joined(&l, 0),
                      "empty src src/a.c src/b.h src/loop src/sub src/sub/c.c srclink");

  o.flags = TIDE_FS_HIDDEN;
  glob_ok("**/*.c", &o, &l);
  assert_string_equal(joined(&l, 0), ".top.c src/.cache/d.c src/a.c src/sub/c.c");
  o.flags = 0;
  glob_ok("src/.cache/*", &o, &l); /* a literal hidden segment is always fine */
  assert_string_equal(joined(&l, 0), "src/.cache/d.c");

  const char *ex[] = {"src/sub", "**/*.h"};
  o.exclude = ex;
  o.nexclude = 2;
  glob_ok("**", &o, &l);
  assert_string_equal(joined(&l, 0), "empty src src/a.c src/loop srclink");
  o.exclude = NULL;
  o.nexclude = 0;

  /* literal patterns, missing ones, .. and absolute patterns */
  glob_ok("src/a.c", &o, &l);
  assert_string_equal(joined(&l, 0), "src/a.c");
  glob_ok("src/nope.c", &o, &l);
  assert_int_equal(l.n, 0);
  glob_ok("nope/*", &o, &l);
  assert_int_equal(l.n, 0);
  o.cwd = P("t/src/sub");
  glob_ok("../*.c", &o, &l);
  assert_string_equal(joined(&l, 0), "../a.c");
  glob_ok("../../**/*.h", &o, &l);
  assert_string_equal(joined(&l, 0), "../../src/b.h");
  glob_ok(P("t/src/*.c"), &o, &l); /* absolute: cwd ignored, results absolute */
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].path, P("t/src/a.c"));
  tide_fs_list_clear(&l);
}

static void test_walk(void **state)
{
  make_tree();
  tide_fs_list l = {0};
  tide_err err;
  assert_int_equal(tide_fs_walk(P("t/src/"), &l, &err), 0);
  size_t strip = strlen(P("t/src/"));
  assert_string_equal(joined(&l, strip), ".cache .cache/d.c a.c b.h loop sub sub/c.c");
  assert_int_equal(l.v[0].type, TIDE_FS_DIR);
  assert_int_equal(l.v[4].type, TIDE_FS_LINK); /* the loop is listed, never entered */
  assert_string_equal(tide_fs_type_name(l.v[4].type), "link");
  tide_fs_list_clear(&l);

  assert_int_equal(tide_fs_walk(P("nope"), &l, &err), -ENOENT);
  assert_int_equal(err.code, -ENOENT);
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "walk '%s': no such file or directory", P("nope"));
  assert_string_equal(err.msg, want);
  assert_int_equal(tide_fs_walk(P("t/src/a.c"), &l, &err), -ENOTDIR);
}

static void test_mkdir_p(void **state)
{
  tide_err err;
  struct stat st;
  assert_int_equal(tide_fs_mkdir_p(P("m/a//b/c/"), 0755, &err), 0);
  assert_int_equal(stat(P("m/a/b/c"), &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(tide_fs_mkdir_p(P("m/a/b"), 0755, &err), 0); /* exists: fine */
  put("m/f", "x", 0644);
  assert_int_equal(tide_fs_mkdir_p(P("m/f"), 0755, &err), -EEXIST);
  assert_int_equal(tide_fs_mkdir_p(P("m/f/g/h"), 0755, &err), -ENOTDIR);
  assert_non_null(strstr(err.msg, "m/f/g': not a directory"));
  assert_int_equal(tide_fs_mkdir_p("", 0755, &err), -ENOENT);
}

static void test_rm_r_refuses(void **state)
{
  tide_err err;
  static const char *bad[] = {"",  "/",  "//", "/.",   "/..", "/../..",
                              ".", "..", "./", "a/..", "a/.", "a/./"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tide_err_clear(&err);
    if (tide_fs_rm_r(bad[i], &err) != -EINVAL)
      fail_msg("rm_r('%s') was not refused: %s", bad[i], err.msg);
  }
  assert_string_equal(err.msg, "rm_r 'a/./': refusing to remove '.' or '..'");
  tide_fs_rm_r("//", &err);
  assert_string_equal(err.msg, "rm_r '//': refusing to remove the root directory");
  assert_int_equal(tide_fs_rm_r(P("missing"), &err), -ENOENT);
}

static void test_rm_r_links(void **state)
{
  tide_err err;
  struct stat st;
  dir("target");
  put("target/keep", "k", 0644);
  dir("victim");
  assert_int_equal(symlink(P("target"), P("victim/link")), 0);
  assert_int_equal(symlink(P("target"), P("toplink")), 0);

  /* a link given directly, even with a trailing slash, goes; its target stays */
  assert_int_equal(tide_fs_rm_r(P("toplink/"), &err), 0);
  assert_int_equal(lstat(P("toplink"), &st), -1);
  assert_int_equal(stat(P("target/keep"), &st), 0);

  /* a link inside a removed tree: same */
  assert_int_equal(tide_fs_rm_r(P("victim"), &err), 0);
  assert_int_equal(lstat(P("victim"), &st), -1);
  assert_int_equal(stat(P("target/keep"), &st), 0);
}

static void rm_r_readonly_checks(void)
{
  tide_err err;
  struct stat st;
  dir("ro");
  dir("ro/sub");
  put("ro/sub/f", "x", 0444);
  assert_int_equal(chmod(P("ro/sub"), 0555), 0);
  assert_int_equal(chmod(P("ro"), 0555), 0);
  /* sub is emptied (made writable for that), but ro itself is outside the tree: left alone */
  assert_int_equal(tide_fs_rm_r(P("ro/sub"), &err), -EACCES);
  assert_int_equal(lstat(P("ro/sub/f"), &st), -1);
  assert_int_equal(stat(P("ro"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0555);
  assert_int_equal(chmod(P("ro"), 0755), 0);
  assert_int_equal(chmod(P("ro/sub"), 0555), 0);
  put("ro/sub2", "y", 0644);
  assert_int_equal(tide_fs_rm_r(P("ro"), &err), 0);
  assert_int_equal(lstat(P("ro"), &st), -1);
}

static void test_rm_r_readonly(void **state)
{
  if (geteuid() != 0) {
    rm_r_readonly_checks();
    return;
  }
  /* root ignores permissions, so run the checks as nobody in a child, in a directory nobody
  ** can reach (TMPDIR may lie below a directory only root may search). */
  assert_int_equal(rmdir(scratch_root), 0);
  snprintf(scratch_root, sizeof scratch_root, "/var/tmp/tide-fs-XXXXXX");
  assert_non_null(mkdtemp(scratch_root));
  assert_int_equal(chown(scratch_root, 65534, 65534), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0)
      _exit(2);
    rm_r_readonly_checks();
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_copy_tree(void **state)
{
  tide_err err;
  struct stat st;
  dir("c");
  dir("c/empty");
  dir("c/sub");
  put("c/sub/run.sh", "#!/bin/sh\n", 0750);
  put("c/plain", "plain text", 0600);
  assert_int_equal(symlink("sub/run.sh", P("c/rel")), 0);
  assert_int_equal(symlink("..", P("c/sub/up")), 0); /* a loop if it were followed */
  assert_int_equal(mkfifo(P("c/fifo"), 0640), 0);
  assert_int_equal(chmod(P("c/sub"), 0710), 0);

  assert_int_equal(tide_fs_copy_tree(P("c"), P("d"), &err), 0);
  assert_int_equal(stat(P("d/empty"), &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(stat(P("d/sub"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0710);
  assert_int_equal(stat(P("d/sub/run.sh"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0750);
  struct stat orig;
  assert_int_equal(stat(P("c/sub/run.sh"), &orig), 0);
  assert_int_equal(st.st_mtim.tv_sec, orig.st_mtim.tv_sec);
  assert_int_equal(lstat(P("d/rel"), &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  char target[64] = "";
  assert_int_equal(readlink(P("d/rel"), target, sizeof target - 1), 10);
  assert_string_equal(target, "sub/run.sh");
  assert_int_equal(lstat(P("d/sub/up"), &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(lstat(P("d/fifo"), &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  char *data;
  size_t len;
  assert_int_equal(tide_fs_read(P("d/plain"), &data, &len, &err), 0);
  assert_string_equal(data, "plain text");
  free(data);

  /* dst must not exist; src must */
  assert_int_equal(tide_fs_copy_tree(P("c"), P("d"), &err), -EEXIST);
  assert_int_equal(tide_fs_copy_tree(P("none"), P("e"), &err), -ENOENT);

  /* a single file, and a copy into itself that stops at itself */
  assert_int_equal(tide_fs_copy_tree(P("c/plain"), P("plain2"), &err), 0);
  assert_int_equal(stat(P("plain2"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(tide_fs_copy_tree(P("c"), P("c/inner"), &err), 0);
  assert_int_equal(stat(P("c/inner/sub/run.sh"), &st), 0);
  assert_int_equal(lstat(P("c/inner/inner"), &st), -1);
}

static void test_files(void **state)
{
  tide_err err;
  struct stat st;
  char *data;
  size_t len;
  assert_int_equal(tide_fs_write_atomic(P("w"), "one\0two", 7, 0640, &err), 0);
  assert_int_equal(stat(P("w"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(tide_fs_read(P("w"), &data, &len, &err), 0);
  assert_int_equal(len, 7);
  assert_memory_equal(data, "one\0two", 7);
  free(data);
  /* replacing keeps the old mode when none is given; no temporary file is left behind */
  assert_int_equal(tide_fs_write_atomic(P("w"), "new", 3, -1, &err), 0);
  assert_int_equal(stat(P("w"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  tide_fs_list l = {0};
  assert_int_equal(tide_fs_walk(scratch_root, &l, &err), 0);
  assert_int_equal(l.n, 1);
  tide_fs_list_clear(&l);
  /* failure leaves nothing: the directory does not exist */
  assert_int_equal(tide_fs_write_atomic(P("no/w"), "x", 1, -1, &err), -ENOENT);
  assert_int_equal(tide_fs_write_atomic(P("w/"), "x", 1, -1, &err), -EISDIR);

  assert_int_equal(tide_fs_write(P("plain"), "abc", 3, &err), 0);
  assert_int_equal(tide_fs_read(P("plain"), &data, &len, &err), 0);
  assert_string_equal(data, "abc");
  free(data);
  assert_int_equal(tide_fs_read(scratch_root, &data, &len, &err), -EISDIR);
  assert_int_equal(tide_fs_read(P("nope"), &data, &len, &err), -ENOENT);
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "read '%s': no such file or directory", P("nope"));
  assert_string_equal(err.msg, want);

  assert_int_equal(tide_fs_exists(P("plain"), &err), 1);
  assert_int_equal(tide_fs_exists(P("nope"), &err), 0);
  assert_int_equal(tide_fs_exists(P("plain/x"), &err), 0);
  assert_int_equal(symlink("nowhere", P("dangling")), 0);
  assert_int_equal(tide_fs_exists(P("dangling"), &err), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match),
      cmocka_unit_test(test_match_many_stars),
      cmocka_unit_test_setup_teardown(test_glob, setup, teardown),
      cmocka_unit_test_setup_teardown(test_walk, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mkdir_p, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rm_r_refuses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rm_r_links, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rm_r_readonly, setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_tree, setup, teardown),
      cmocka_unit_test_setup_teardown(test_files, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
