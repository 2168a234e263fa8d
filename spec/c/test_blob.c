/*
** host/blob.c and host/tree.c: blobs stored once and read back verified, a wrong expected sha256,
** corruption on disk caught by every read path, the threaded copy of large files, trees restored
** exactly (modes, links, empty directories), the stat cache of a second put, hostile manifests,
** gc with its grace period and the store lock, and a write limit (RLIMIT_FSIZE) leaving nothing
*behind.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tide/blob.h"
#include "tide/fs.h"

#include "scratch.h"

static char store[PATH_MAX + 16];

static char *slurp(const char *path)
{
  char *data;
  size_t len;
  if (tide_fs_read(path, &data, &len, NULL) < 0)
    return NULL;
  return data;
}

static size_t count_dir(const char *rel)
{
  tide_fs_list list = {0};
  if (tide_fs_walk(P(rel), &list, NULL) < 0)
    return 0;
  size_t n = 0;
  for (size_t i = 0; i < list.n; i++)
    n += list.v[i].type == TIDE_FS_FILE;
  tide_fs_list_clear(&list);
  return n;
}

static int setup(void **state)
{
  assert_int_equal(scratch_make("blob"), 0);
  snprintf(store, sizeof store, "%s/store", scratch_root);
  tide_err err;
  assert_int_equal(tide_blob_init(store, &err), 0);
  return 0;
}

static int teardown(void **state)
{
  assert_int_equal(scratch_remove(), 0);
  return 0;
}

/* sha256("hello\n") */
#define HELLO "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"

static void corrupt(const char *hex)
{
  char p[PATH_MAX * 2];
  assert_int_equal(tide_blob_path(store, hex, p, sizeof p), 0);
  chmod(p, 0644);
  int fd = open(p, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "X", 1, 0), 1);
  close(fd);
}

static void test_put_get(void **state)
{
  tide_err err;
  tide_blob_info a, b;
  put("src", "hello\n", 0644);
  assert_int_equal(tide_blob_put_file(store, P("src"), NULL, &a, &err), 0);
  assert_string_equal(a.hex, HELLO);
  assert_int_equal(a.size, 6);
  assert_int_equal(a.stored, 1);
  /* Stored once however often it is put. */
  assert_int_equal(tide_blob_put_mem(store, "hello\n", 6, &b, &err), 0);
  assert_string_equal(b.hex, HELLO);
  assert_int_equal(b.stored, 0);
  assert_int_equal(count_dir("store/blobs"), 1);
  assert_int_equal(count_dir("store/tmp"), 0);
  assert_int_equal(tide_blob_exists(store, HELLO, &err), 1);

  assert_string_equal(a.xxh3, b.xxh3);
  assert_true(tide_blob_xxh_valid(a.xxh3));
  /* XXH3-128 of nothing, from xxHash's own test vectors: the digest is its canonical form. */
  tide_blob_info e;
  assert_int_equal(tide_blob_put_mem(store, "", 0, &e, &err), 0);
  assert_string_equal(e.xxh3, "99aa06d3014798d86001c324468d497f");
  char bad[TIDE_BLOB_XXH_LEN + 1];
  memcpy(bad, e.xxh3, sizeof bad);
  assert_int_equal(tide_blob_get_file(store, HELLO, bad, P("out"), 0640, &err), TIDE_EINTEGRITY);
  assert_int_equal(tide_blob_get_file(store, HELLO, "nothex", P("out"), 0640, &err), TIDE_EINPUT);
  assert_int_equal(access(P("out"), F_OK), -1);
  assert_int_equal(tide_blob_get_file(store, HELLO, a.xxh3, P("out"), 0640, &err), 0);
  char *text = slurp(P("out"));
  assert_string_equal(text, "hello\n");
  free(text);
  struct stat st;
  assert_int_equal(stat(P("out"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);

  char *data;
  size_t len;
  assert_int_equal(tide_blob_read(store, HELLO, &data, &len, &err), 0);
  assert_int_equal(len, 6);
  free(data);
  uint64_t size;
  assert_int_equal(tide_blob_verify(store, HELLO, &size, &err), 0);
  assert_int_equal(size, 6);

  /* Streaming, in small pieces. */
  tide_blob_reader *r;
  assert_int_equal(tide_blob_open(store, HELLO, &r, &err), 0);
  char buf[4];
  long n, total = 0;
  while ((n = tide_blob_reader_read(r, buf, sizeof buf, &err)) > 0)
    total += n;
  assert_int_equal(n, 0);
  assert_int_equal(total, 6);
  tide_blob_reader_close(r);
}

static void test_expected_sha(void **state)
{
  tide_err err;
  tide_blob_info a;
  put("src", "hello\n", 0644);
  const char *wrong = "0000000000000000000000000000000000000000000000000000000000000000";
  assert_int_equal(tide_blob_put_file(store, P("src"), wrong, &a, &err), TIDE_EINTEGRITY);
  assert_non_null(strstr(err.msg, "not 0000"));
  assert_int_equal(count_dir("store/blobs"), 0);
  assert_int_equal(count_dir("store/tmp"), 0);
  assert_int_equal(tide_blob_put_file(store, P("src"), "xyz", &a, &err), TIDE_EINPUT);
  assert_int_equal(tide_blob_put_file(store, P("src"), HELLO, &a, &err), 0);
  assert_int_equal(tide_blob_put_file(store, P("missing"), NULL, &a, &err), -ENOENT);
}

static void test_corrupt(void **state)
{
  tide_err err;
  tide_blob_info a;
  assert_int_equal(tide_blob_put_mem(store, "hello\n", 6, &a, &err), 0);
  corrupt(HELLO);
  assert_int_equal(tide_blob_get_file(store, HELLO, NULL, P("out"), 0644, &err), TIDE_EINTEGRITY);
  assert_non_null(strstr(err.msg, "corrupt"));
  assert_int_equal(access(P("out"), F_OK), -1); /* nothing half-written */
  assert_int_equal(count_dir(""), 1);           /* only the blob itself */
  /* The fast read check catches it as well. */
  assert_int_equal(tide_blob_get_file(store, HELLO, a.xxh3, P("out"), 0644, &err), TIDE_EINTEGRITY);
  assert_non_null(strstr(err.msg, "XXH3-128"));
  assert_int_equal(access(P("out"), F_OK), -1);
  assert_int_equal(count_dir(""), 1);
  char *data;
  size_t len;
  assert_int_equal(tide_blob_read(store, HELLO, &data, &len, &err), TIDE_EINTEGRITY);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), TIDE_EINTEGRITY);
  tide_blob_reader *r;
  assert_int_equal(tide_blob_open(store, HELLO, &r, &err), 0);
  char buf[64];
  assert_int_equal(tide_blob_reader_read(r, buf, sizeof buf, &err), 6);
  assert_int_equal(tide_blob_reader_read(r, buf, sizeof buf, &err), TIDE_EINTEGRITY);
  tide_blob_reader_close(r);
  /* A missing blob is named. */
  char p[PATH_MAX * 2];
  tide_blob_path(store, HELLO, p, sizeof p);
  unlink(p);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), -ENOENT);
  assert_non_null(strstr(err.msg, HELLO));
}

static void test_large(void **state)
{
  /* Above the size where reading/hashing and writing run on two threads. */
  size_t n = (24u << 20) + 12345;
  char *data = malloc(n);
  assert_non_null(data);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)(i * 2654435761u >> 13);
  assert_int_equal(tide_fs_write(P("big"), data, n, NULL), 0);
  tide_err err;
  tide_blob_info a, b;
  assert_int_equal(tide_blob_put_file(store, P("big"), NULL, &a, &err), 0);
  assert_int_equal(a.size, n);
  assert_int_equal(tide_blob_put_mem(store, data, n, &b, &err), 0);
  assert_string_equal(a.hex, b.hex);
  assert_int_equal(b.stored, 0);
  /* The pipelined put computes the same XXH3-128 as the one-shot one. */
  assert_string_equal(a.xxh3, b.xxh3);
  char *back;
  size_t len;
  for (int fast = 0; fast < 2; fast++) {
    assert_int_equal(
        tide_blob_get_file(store, a.hex, fast ? a.xxh3 : NULL, P("big.out"), 0644, &err), 0);
    assert_int_equal(tide_fs_read(P("big.out"), &back, &len, NULL), 0);
    assert_int_equal(len, n);
    assert_memory_equal(back, data, n);
    free(back);
    unlink(P("big.out"));
  }
  /* One flipped byte deep inside, then a truncated blob: both reads refuse, nothing appears. */
  char p[PATH_MAX * 2];
  assert_int_equal(tide_blob_path(store, a.hex, p, sizeof p), 0);
  chmod(p, 0644);
  int fd = open(p, O_WRONLY);
  assert_true(fd >= 0);
  char c = (char)(data[n / 2 + 7] ^ 1);
  assert_int_equal(pwrite(fd, &c, 1, (off_t)(n / 2 + 7)), 1);
  for (int fast = 0; fast < 2; fast++) {
    assert_int_equal(
        tide_blob_get_file(store, a.hex, fast ? a.xxh3 : NULL, P("big.out"), 0644, &err),
        TIDE_EINTEGRITY);
    assert_int_equal(access(P("big.out"), F_OK), -1);
  }
  assert_int_equal(pwrite(fd, &data[n / 2 + 7], 1, (off_t)(n / 2 + 7)), 1);
  assert_int_equal(ftruncate(fd, (off_t)(n - 1)), 0);
  close(fd);
  assert_int_equal(tide_blob_get_file(store, a.hex, a.xxh3, P("big.out"), 0644, &err),
                   TIDE_EINTEGRITY);
  assert_int_equal(access(P("big.out"), F_OK), -1);
  assert_int_equal(tide_blob_verify(store, a.hex, NULL, &err), TIDE_EINTEGRITY);
  assert_int_equal(count_dir("store/tmp"), 0);
  free(data);
}

static void make_tree(void)
{
  assert_int_equal(tide_fs_mkdir_p(P("t/sub/empty"), 0755, NULL), 0);
  put("t/run.sh", "#!/bin/sh\necho hi\n", 0755);
  put("t/sub/data", "hello\n", 0600);
  put("t/sub/copy", "hello\n", 0644);
  put("t/odd\tname%\n", "x", 0644);
  assert_int_equal(symlink("../../outside/secret", P("t/sub/escape")), 0);
  assert_int_equal(symlink("run.sh", P("t/link")), 0);
  assert_int_equal(chmod(P("t/sub/empty"), 0750), 0);
}

static void test_tree_round_trip(void **state)
{
  make_tree();
  tide_err err;
  char *m1, *m2;
  size_t l1, l2;
  tide_tree_stats st;
  assert_int_equal(tide_tree_put(store, P("t"), 0, &m1, &l1, &st, &err), 0);
  assert_int_equal(st.files, 4);
  assert_int_equal(st.links, 2);
  assert_int_equal(st.dirs, 2);
  assert_int_equal(st.stored, 3); /* data and copy share a blob */
  assert_non_null(strstr(m1, "odd%09name%25%0A"));

  /* The second put reads nothing new (stat cache or not) and gives the same manifest. */
  assert_int_equal(tide_tree_put(store, P("t"), 2, &m2, &l2, &st, &err), 0);
  assert_int_equal(st.stored, 0);
  assert_int_equal(l1, l2);
  assert_memory_equal(m1, m2, l1);
  free(m2);

  tide_tree tree;
  assert_int_equal(tide_tree_parse(m1, l1, &tree, &err), 0);
  assert_int_equal(tree.n, 8);
  assert_int_equal(tide_tree_get(store, &tree, P("out"), 0, &st, &err), 0);
  struct stat s;
  assert_int_equal(lstat(P("out/run.sh"), &s), 0);
  assert_int_equal(s.st_mode & 07777, 0755);
  assert_int_equal(lstat(P("out/sub/data"), &s), 0);
  assert_int_equal(s.st_mode & 07777, 0600);
  assert_int_equal(lstat(P("out/sub/empty"), &s), 0);
  assert_true(S_ISDIR(s.st_mode));
  assert_int_equal(s.st_mode & 07777, 0750);
  char target[256];
  ssize_t n = readlink(P("out/sub/escape"), target, sizeof target);
  assert_int_equal(n, strlen("../../outside/secret"));
  assert_int_equal(lstat(P("out/odd\tname%\n"), &s), 0);

  /* A destination that is not empty is refused and left alone. */
  assert_int_equal(tide_tree_get(store, &tree, P("t"), 0, &st, &err), -EEXIST);
  assert_int_equal(lstat(P("t/run.sh"), &s), 0);

  /* A corrupt file blob fails the restore and leaves no destination. */
  corrupt(HELLO);
  assert_int_equal(tide_tree_get(store, &tree, P("out2"), 0, &st, &err), TIDE_EINTEGRITY);
  assert_int_equal(access(P("out2"), F_OK), -1);
  tide_tree_clear(&tree);
  free(m1);
}

static void test_tree_refuses_special(void **state)
{
  assert_int_equal(tide_fs_mkdir_p(P("t"), 0755, NULL), 0);
  assert_int_equal(mkfifo(P("t/fifo"), 0644), 0);
  tide_err err;
  char *m;
  size_t l;
  tide_tree_stats st;
  assert_int_equal(tide_tree_put(store, P("t"), 0, &m, &l, &st, &err), TIDE_EINPUT);
  assert_non_null(strstr(err.msg, "fifo"));
  assert_int_equal(tide_tree_put(store, P("nope"), 0, &m, &l, &st, &err), -ENOENT);
}

static void bad_manifest(const char *text, const char *why)
{
  tide_tree tree;
  tide_err err = {0};
  assert_int_equal(tide_tree_parse(text, strlen(text), &tree, &err), TIDE_EINPUT);
  if (!strstr(err.msg, why))
    fail_msg("'%s': expected '%s', got '%s'", text, why, err.msg);
}

#define F0 "\t0644\t1\t" HELLO "\t"

static void test_tree_hostile(void **state)
{
  bad_manifest("", "not a tide tree");
  bad_manifest("tide-tree 2\n", "not a tide tree");
  bad_manifest("tide-tree 1\nf" F0 "../x\n", "'..'");
  bad_manifest("tide-tree 1\nf" F0 "a/../../x\n", "line 2");
  bad_manifest("tide-tree 1\nf" F0 "/etc/passwd\n", "absolute");
  bad_manifest("tide-tree 1\nf" F0 "a//b\n", "empty path segment");
  bad_manifest("tide-tree 1\nf" F0 "./x\n", "'.'");
  bad_manifest("tide-tree 1\nf" F0 "a/x\n", "parent");
  /* A link cannot be a parent: nothing may be written through it. */
  bad_manifest("tide-tree 1\nl\tesc\t/etc\nf" F0 "esc/passwd\n", "parent");
  bad_manifest("tide-tree 1\nd\t0755\ta\nd\t0755\ta\n", "duplicate");
  bad_manifest("tide-tree 1\nf" F0 "x", "final newline");
  bad_manifest("tide-tree 1\nf\t0644\t1\tzz\tx\n", "sha256");
  bad_manifest("tide-tree 1\nf\t9999\t1\t" HELLO "\tx\n", "mode");
  bad_manifest("tide-tree 1\nf\t0644\t-1\t" HELLO "\tx\n", "size");
  bad_manifest("tide-tree 1\nf" F0 "a%2Fb%00\n", "escape");
  bad_manifest("tide-tree 1\nf" F0 "a%ZZ\n", "escape");
  bad_manifest("tide-tree 1\nx\tfoo\n", "kind");
  bad_manifest("tide-tree 1\nd\t0755\n", "fields");
  bad_manifest("tide-tree 1\nl\tx\t\n", "target");
  tide_tree tree;
  tide_err err;
  const char *ok = "tide-tree 1\nd\t0755\ta\nf" F0 "a/x\nl\ta/l\t../../..%25\n";
  assert_int_equal(tide_tree_parse(ok, strlen(ok), &tree, &err), 0);
  assert_string_equal(tree.v[2].target, "../../..%");
  tide_tree_clear(&tree);
}

static void age(const char *path, int seconds)
{
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= seconds;
  t[1] = t[0];
  assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void test_gc(void **state)
{
  tide_err err;
  tide_blob_info keep, old, young;
  assert_int_equal(tide_blob_put_mem(store, "keep", 4, &keep, &err), 0);
  assert_int_equal(tide_blob_put_mem(store, "old", 3, &old, &err), 0);
  assert_int_equal(tide_blob_put_mem(store, "young", 5, &young, &err), 0);
  char p[PATH_MAX * 2];
  tide_blob_path(store, keep.hex, p, sizeof p);
  age(p, 7200);
  tide_blob_path(store, old.hex, p, sizeof p);
  age(p, 7200);
  char tmp[PATH_MAX * 2];
  snprintf(tmp, sizeof tmp, "%s/tmp/.tide-left", store);
  assert_int_equal(tide_fs_write(tmp, "partial", 7, NULL), 0);
  age(tmp, 7200);

  tide_blob_names names = {0};
  assert_int_equal(tide_blob_names_add(&names, keep.hex), 0);
  assert_int_equal(tide_blob_names_add(&names, keep.hex), 0);
  tide_blob_names_sort(&names);
  assert_int_equal(names.n, 1);
  tide_blob_gc_stats st;
  assert_int_equal(tide_blob_gc(store, &names, 3600, 1, &st, &err), 0);
  assert_int_equal(st.removed, 1);
  assert_int_equal(tide_blob_exists(store, old.hex, &err), 1); /* dry run */
  assert_int_equal(tide_blob_gc(store, &names, 3600, 0, &st, &err), 0);
  assert_int_equal(st.removed, 1);
  assert_int_equal(st.bytes_removed, 3);
  assert_int_equal(st.tmp_removed, 1);
  assert_int_equal(st.kept, 2);
  assert_int_equal(tide_blob_exists(store, old.hex, &err), 0);
  assert_int_equal(tide_blob_exists(store, keep.hex, &err), 1);
  assert_int_equal(tide_blob_exists(store, young.hex, &err), 1);
  /* The store lock: shared holders coexist, exclusive waits for them (NOWAIT: fails). */
  int a = tide_blob_lock(store, 0, &err), b = tide_blob_lock(store, 0, &err);
  assert_true(a >= 0 && b >= 0);
  assert_int_equal(tide_blob_lock(store, TIDE_BLOB_LOCK_EXCLUSIVE | TIDE_BLOB_LOCK_NOWAIT, &err),
                   -EWOULDBLOCK);
  tide_blob_unlock(a);
  tide_blob_unlock(b);
  int x = tide_blob_lock(store, TIDE_BLOB_LOCK_EXCLUSIVE | TIDE_BLOB_LOCK_NOWAIT, &err);
  assert_true(x >= 0);
  assert_int_equal(tide_blob_lock(store, TIDE_BLOB_LOCK_NOWAIT, &err), -EWOULDBLOCK);
  tide_blob_unlock(x);
  tide_blob_names_clear(&names);
}

static void test_file_size_limit(void **state)
{
  size_t n = 12u << 20; /* large enough for the threaded copy: its writer fails mid-way */
  char *data = calloc(1, n);
  assert_non_null(data);
  assert_int_equal(tide_fs_write(P("big"), data, n, NULL), 0);
  free(data);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1u << 20, 1u << 20};
    setrlimit(RLIMIT_FSIZE, &rl);
    tide_err err;
    tide_blob_info a;
    int rc = tide_blob_put_file(store, P("big"), NULL, &a, &err);
    _exit(rc == -EFBIG && strstr(err.msg, "write") ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(count_dir("store/blobs"), 0);
  assert_int_equal(count_dir("store/tmp"), 0);
}

static void test_repair(void **state)
{
  tide_err err;
  tide_blob_info a;
  put("src", "hello\n", 0644);
  /* put_file and put_mem replace a damaged blob with their verified copy. */
  assert_int_equal(tide_blob_put_file(store, P("src"), NULL, &a, &err), 0);
  corrupt(HELLO);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), TIDE_EINTEGRITY);
  assert_int_equal(tide_blob_put_file(store, P("src"), NULL, &a, &err), 0);
  assert_int_equal(a.stored, 0);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), 0);
  corrupt(HELLO);
  assert_int_equal(tide_blob_put_mem(store, "hello\n", 6, &a, &err), 0);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), 0);
  /* A tree put reading the file (no stat cache for this directory) repairs it too. */
  corrupt(HELLO);
  assert_int_equal(tide_fs_mkdir_p(P("t2"), 0755, NULL), 0);
  put("t2/h", "hello\n", 0644);
  char *m;
  size_t l;
  tide_tree_stats st;
  assert_int_equal(tide_tree_put(store, P("t2"), 0, &m, &l, &st, &err), 0);
  free(m);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), 0);
  /* A stat-cache hit checks the size: a truncated blob is read again and replaced. */
  char p[PATH_MAX * 2];
  tide_blob_path(store, HELLO, p, sizeof p);
  assert_int_equal(truncate(p, 2), 0);
  assert_int_equal(tide_tree_put(store, P("t2"), 0, &m, &l, &st, &err), 0);
  free(m);
  assert_int_equal(tide_blob_verify(store, HELLO, NULL, &err), 0);
  assert_int_equal(count_dir("store/tmp"), 0);
}

static void test_restore_places(void **state)
{
  tide_err err;
  tide_blob_info a;
  assert_int_equal(tide_blob_put_mem(store, "hello\n", 6, &a, &err), 0);
  /* An existing file is never replaced. */
  put("exists", "mine", 0644);
  assert_int_equal(tide_blob_get_file(store, HELLO, NULL, P("exists"), 0644, &err), -EEXIST);
  char *text = slurp(P("exists"));
  assert_string_equal(text, "mine");
  free(text);
  /* Debris of a dead process is cleaned; a live one's is left. */
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  waitpid(pid, NULL, 0);
  char stale[PATH_MAX * 2], live[PATH_MAX * 2];
  snprintf(stale, sizeof stale, "%s/out.tide-tmp-%ld-0", scratch_root, (long)pid);
  snprintf(live, sizeof live, "%s/out.tide-tmp-%ld-0", scratch_root, (long)getppid());
  assert_int_equal(mkdir(stale, 0700), 0);
  assert_int_equal(mkdir(live, 0700), 0);
  assert_int_equal(tide_blob_get_file(store, HELLO, a.xxh3, P("out"), 0644, &err), 0);
  assert_int_equal(access(stale, F_OK), -1);
  assert_int_equal(access(live, F_OK), 0);
  rmdir(live);
  /* Several assets compose one tree; bad names are refused and leave the tree as it was. */
  tide_tree t = {0};
  assert_int_equal(tide_tree_add_asset(&t, "one", NULL, 0600, HELLO, a.xxh3, 6, &err), 0);
  static const char *const bad[] = {"", ".", "..", "a/b", "x\ny", "one"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(tide_tree_add_asset(&t, bad[i], NULL, 0600, HELLO, NULL, 6, &err),
                     TIDE_EINPUT);
  tide_tree sub = {0};
  const char *m = "tide-tree 1\nd\t0750\td\nf\t0644\t6\t" HELLO "\td/h\n";
  assert_int_equal(tide_tree_parse(m, strlen(m), &sub, &err), 0);
  assert_int_equal(tide_tree_add_asset(&t, "tree", &sub, 0755, NULL, NULL, 0, &err), 0);
  tide_tree_clear(&sub);
  assert_int_equal(t.n, 4);
  /* Into an existing empty directory: filled in place, its own mode kept. */
  assert_int_equal(mkdir(P("empty"), 0710), 0);
  tide_tree_stats st;
  assert_int_equal(tide_tree_get(store, &t, P("empty"), 0, &st, &err), 0);
  struct stat s;
  assert_int_equal(stat(P("empty/tree/d/h"), &s), 0);
  assert_int_equal(stat(P("empty/one"), &s), 0);
  assert_int_equal(s.st_mode & 07777, 0600);
  assert_int_equal(stat(P("empty"), &s), 0);
  assert_int_equal(s.st_mode & 07777, 0710);
  /* A damaged blob: nothing appears, and the empty directory stays empty. */
  corrupt(HELLO);
  assert_int_equal(tide_tree_get(store, &t, P("new"), 0, &st, &err), TIDE_EINTEGRITY);
  assert_int_equal(access(P("new"), F_OK), -1);
  assert_int_equal(mkdir(P("empty2"), 0755), 0);
  assert_int_equal(tide_tree_get(store, &t, P("empty2"), 0, &st, &err), TIDE_EINTEGRITY);
  assert_int_equal(count_dir("empty2"), 0);
  assert_int_equal(rmdir(P("empty2")), 0);
  tide_tree_clear(&t);
}

static void test_gc_caches(void **state)
{
  make_tree();
  tide_err err;
  char *m;
  size_t l;
  tide_tree_stats st;
  assert_int_equal(tide_tree_put(store, P("t"), 0, &m, &l, &st, &err), 0);
  free(m);
  assert_int_equal(count_dir("store/cache"), 1);
  tide_blob_names keep = {0};
  tide_blob_gc_stats gs;
  assert_int_equal(tide_blob_gc(store, &keep, 3600, 0, &gs, &err), 0);
  assert_int_equal(gs.cache_removed, 0);
  assert_int_equal(tide_fs_rm_r(P("t"), &err), 0);
  assert_int_equal(tide_blob_gc(store, &keep, 3600, 1, &gs, &err), 0);
  assert_int_equal(gs.cache_removed, 1);
  assert_int_equal(count_dir("store/cache"), 1); /* dry run */
  assert_int_equal(tide_blob_gc(store, &keep, 3600, 0, &gs, &err), 0);
  assert_int_equal(count_dir("store/cache"), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_expected_sha, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_refuses_special, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_hostile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_size_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_repair, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restore_places, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gc_caches, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
