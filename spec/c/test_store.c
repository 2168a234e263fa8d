/*
** host/store.c: migrations, reopening, batching (nothing before flush, one transaction), run
** locks and interrupted runs (a child killed with SIGKILL), and the one-line errors for a corrupt
** file, a read-only file or directory, a home that is a file and a newer schema.
**
** Read-only cases: root ignores permission bits, so as root they use a read-only bind mount in a
** private mount namespace of this test process; otherwise chmod.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "tide/store.h"

/* Test paths are short; GCC cannot know that about PATH_MAX buffers. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char base[PATH_MAX];
static int seq;

/* A fresh path under a per-process temporary directory (not created). */
static const char *fresh(char *buf, const char *what)
{
  snprintf(buf, PATH_MAX, "%s/%s-%d", base, what, ++seq);
  return buf;
}

static tide_store *open_ok(const char *home, int flags)
{
  tide_store *s = NULL;
  tide_err err;
  int rc = tide_store_open(&s, home, flags, &err);
  if (rc != 0)
    fail_msg("open '%s': %s (%d)", home, err.msg, rc);
  return s;
}

static tide_span *make_span(uint64_t id, uint64_t parent, const char *kind, const char *name)
{
  tide_span *sp = calloc(1, sizeof *sp);
  sp->id = id;
  sp->parent = parent;
  strcpy(sp->kind, kind);
  sp->name = strdup(name);
  sp->start_us = tide_now_us();
  return sp;
}

static void free_span(tide_span *sp)
{
  free(sp->name);
  free(sp->attrs);
  free(sp);
}

/* Opens state.db with plain sqlite, bypassing the store, to look at what is really on disk. */
static sqlite3 *raw_open(const char *home)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/state.db", home);
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("prepare '%s': %s", sql, sqlite3_errmsg(db));
  int64_t v = -1;
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static char *raw_text(sqlite3 *db, const char *sql)
{
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("prepare '%s': %s", sql, sqlite3_errmsg(db));
  char *v = NULL;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return v;
}

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *data = malloc(1 << 16);
  *len = fread(data, 1, 1 << 16, f);
  fclose(f);
  return data;
}

static void write_file(const char *path, const char *data, size_t len)
{
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static int exists(const char *home, const char *name)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", home, name);
  return access(path, F_OK) == 0;
}

/* Collects runs for assertions. */
typedef struct {
  int n;
  int64_t ids[16];
  char status[16][16];
  int64_t ended[16];
  int exit_code[16], has_exit_code[16];
} runs_seen;

static int collect_run(void *ud, const tide_run_rec *r)
{
  runs_seen *rs = ud;
  if (rs->n < 16) {
    rs->ids[rs->n] = r->id;
    snprintf(rs->status[rs->n], 16, "%s", r->status);
    rs->ended[rs->n] = r->ended_us;
    rs->exit_code[rs->n] = r->exit_code;
    rs->has_exit_code[rs->n] = r->has_exit_code;
  }
  rs->n++;
  return 0;
}

typedef struct {
  int n;
  uint64_t ids[16], parents[16];
  char status[16][16];
  char name[16][32];
  char log[16][PATH_MAX];
  int64_t end[16];
} spans_seen;

static int collect_span(void *ud, const tide_span_rec *r)
{
  spans_seen *ss = ud;
  if (ss->n < 16) {
    ss->ids[ss->n] = r->id;
    ss->parents[ss->n] = r->parent;
    snprintf(ss->status[ss->n], 16, "%s", r->status);
    snprintf(ss->name[ss->n], 32, "%s", r->name);
    snprintf(ss->log[ss->n], PATH_MAX, "%s", r->log ? r->log : "");
    ss->end[ss->n] = r->end_us;
  }
  ss->n++;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Tests
*/

static void test_migrate_from_empty(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "new");
  strcat(home, "/nested/home"); /* missing parents are created too */
  tide_store *s = open_ok(home, 0);
  struct stat st;
  assert_int_equal(stat(home, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_true(exists(home, "logs"));
  assert_true(exists(home, "locks"));
  assert_string_equal(tide_store_home(s), home);
  tide_store_close(s);

  sqlite3 *db = raw_open(home);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), TIDE_STORE_SCHEMA);
  char *mode = raw_text(db, "PRAGMA journal_mode");
  assert_string_equal(mode, "wal");
  free(mode);
  assert_int_equal(raw_int(db,
                           "SELECT count(*) FROM sqlite_schema WHERE name IN "
                           "('runs', 'spans', 'meta', 'spans_parent', 'runs_running')"),
                   5);
  char *by = raw_text(db, "SELECT value FROM meta WHERE key = 'created_by'");
  assert_non_null(by);
  assert_non_null(strstr(by, "tide "));
  free(by);
  sqlite3_close(db);
  snprintf(path, sizeof path, "%s/state.db", home);
  assert_int_equal(access(path, F_OK), 0);
}

static void test_reopen_keeps_runs(void **state)
{
  char home[PATH_MAX];
  fresh(home, "reopen");
  tide_err err;
  int64_t id1, id2;
  tide_store *s = open_ok(home, 0);
  assert_int_equal(tide_store_run_begin(s, "a.lua", "[\"a.lua\"]", &id1, &err), 0);
  tide_span *sp = make_span(1, 0, "run", "a.lua");
  assert_int_equal(tide_store_span_put(s, id1, sp, &err), 0);
  assert_int_equal(tide_store_run_end(s, id1, "succeeded", 0, &err), 0);
  tide_store_close(s);

  s = open_ok(home, 0);
  assert_int_equal(tide_store_run_begin(s, "b.lua", NULL, &id2, &err), 0);
  assert_true(id2 > id1);
  assert_int_equal(tide_store_run_end(s, id2, "failed", 1, &err), 0);
  tide_store_close(s);

  s = open_ok(home, TIDE_STORE_READONLY);
  runs_seen rs = {0};
  assert_int_equal(tide_store_runs(s, 0, collect_run, &rs, &err), 0);
  assert_int_equal(rs.n, 2);
  assert_int_equal(rs.ids[0], id2); /* newest first */
  assert_string_equal(rs.status[0], "failed");
  assert_int_equal(rs.exit_code[0], 1);
  assert_string_equal(rs.status[1], "succeeded");
  assert_true(rs.ended[1] > 0);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(tide_store_runs(s, 1, collect_run, &rs, &err), 0);
  assert_int_equal(rs.n, 1);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(tide_store_run(s, id1, collect_run, &rs, &err), 0);
  assert_int_equal(rs.n, 1);
  assert_int_equal(tide_store_run(s, 999, collect_run, &rs, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "no run 999 in '"));
  spans_seen ss = {0};
  assert_int_equal(tide_store_spans(s, id1, collect_span, &ss, &err), 0);
  assert_int_equal(ss.n, 1);
  assert_string_equal(ss.name[0], "a.lua");
  /* A read-only store writes nothing. */
  assert_int_equal(tide_store_span_put(s, id1, sp, &err), TIDE_EREADONLY);
  assert_int_equal(tide_store_run_begin(s, "x", NULL, &id2, &err), TIDE_EREADONLY);
  free_span(sp);
  tide_store_close(s);

  sqlite3 *db = raw_open(home);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), TIDE_STORE_SCHEMA);
  sqlite3_close(db);
}

static int count_commit(void *ud)
{
  (*(int *)ud)++;
  return 0;
}

static void test_batching(void **state)
{
  char home[PATH_MAX];
  fresh(home, "batch");
  tide_err err;
  int64_t run;
  tide_store *s = open_ok(home, 0);
  assert_int_equal(tide_store_run_begin(s, "batch.lua", NULL, &run, &err), 0);
  sqlite3 *db = raw_open(home);

  tide_span *spans[10];
  for (int i = 0; i < 10; i++) {
    spans[i] = make_span((uint64_t)i + 1, i ? 1 : 0, i ? "task" : "run", "t");
    assert_int_equal(tide_store_span_put(s, run, spans[i], &err), 0);
  }
  /* The span's own memory may go right away: the store copied it. */
  spans[3]->name[0] = 'X';
  spans[3]->status = TIDE_SPAN_ERROR;
  spans[3]->end_us = spans[3]->start_us + 5;
  assert_int_equal(tide_store_span_put(s, run, spans[3], &err), 0);
  assert_int_equal(tide_store_pending(s), 11);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans"), 0);

  int commits = 0;
  sqlite3_commit_hook(tide_store_db(s), count_commit, &commits);
  assert_int_equal(tide_store_flush(s, &err), 0);
  assert_int_equal(commits, 1);
  assert_int_equal(tide_store_pending(s), 0);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans"), 10);
  /* The last put of a span wins. */
  assert_int_equal(raw_int(db,
                           "SELECT count(*) FROM spans WHERE id = 4 AND status = 'error' "
                           "AND name = 'X' AND end_us IS NOT NULL"),
                   1);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans WHERE end_us IS NULL"), 9);
  /* Flushing nothing writes nothing. */
  assert_int_equal(tide_store_flush(s, &err), 0);
  assert_int_equal(commits, 1);

  /* A failing batch writes none of its changes and stays queued. */
  for (int i = 4; i < 6; i++) {
    spans[i]->status = TIDE_SPAN_OK;
    spans[i]->end_us = spans[i]->start_us + 1;
    assert_int_equal(tide_store_span_put(s, run, spans[i], &err), 0);
  }
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_busy_timeout(tide_store_db(s), 10);
  assert_int_not_equal(tide_store_flush(s, &err), 0);
  assert_non_null(strstr(err.msg, "state.db"));
  assert_int_equal(tide_store_pending(s), 2);
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans WHERE end_us IS NULL"), 9);
  assert_int_equal(tide_store_flush(s, &err), 0);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans WHERE end_us IS NULL"), 7);

  /* Ending the run flushes, and spans still running then become cancelled. */
  spans[6]->status = TIDE_SPAN_OK;
  spans[6]->end_us = spans[6]->start_us + 1;
  assert_int_equal(tide_store_span_put(s, run, spans[6], &err), 0);
  assert_int_equal(tide_store_run_end(s, run, "succeeded", 0, &err), 0);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM spans WHERE status = 'ok'"), 3);
  assert_int_equal(raw_int(db,
                           "SELECT count(*) FROM spans WHERE status = 'cancelled' AND "
                           "end_us IS NOT NULL"),
                   6);
  char lock[PATH_MAX];
  snprintf(lock, sizeof lock, "%s/locks/%lld.lock", home, (long long)run);
  assert_int_equal(access(lock, F_OK), -1);
  for (int i = 0; i < 10; i++)
    free_span(spans[i]);
  sqlite3_close(db);
  tide_store_close(s);
}

static void test_log_path(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "logs");
  tide_err err;
  int64_t run;
  tide_store *s = open_ok(home, 0);
  assert_int_equal(tide_store_run_begin(s, "l.lua", NULL, &run, &err), 0);
  tide_span *sp = make_span(7, 1, "proc", "make");
  assert_int_equal(tide_store_span_put(s, run, sp, &err), 0);
  assert_int_equal(tide_store_log_path(s, run, 7, path, sizeof path, &err), 0);
  char want[PATH_MAX];
  snprintf(want, sizeof want, "%s/logs/%lld/7.log", home, (long long)run);
  assert_string_equal(path, want);
  snprintf(want, sizeof want, "%s/logs/%lld", home, (long long)run);
  struct stat st;
  assert_int_equal(stat(want, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(tide_store_log_path(s, run, 7, path, 10, &err), TIDE_ELIMIT);
  assert_int_equal(tide_store_flush(s, &err), 0);

  spans_seen ss = {0};
  assert_int_equal(tide_store_spans(s, run, collect_span, &ss, &err), 0);
  assert_int_equal(ss.n, 1);
  snprintf(want, sizeof want, "%s/logs/%lld/7.log", home, (long long)run);
  assert_string_equal(ss.log[0], want);
  free_span(sp);
  tide_store_close(s);
}

/*
** A child records a run and a running span, then waits. While it lives, opening the store leaves
** its run alone; once it is killed with SIGKILL, the next open marks run and span interrupted.
*/
static void test_interrupted(void **state)
{
  char home[PATH_MAX];
  fresh(home, "killed");
  tide_store_close(open_ok(home, 0));
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    tide_store *s;
    tide_err err;
    int64_t run;
    if (tide_store_open(&s, home, 0, &err) != 0 ||
        tide_store_run_begin(s, "child.lua", NULL, &run, &err) != 0)
      _exit(1);
    tide_span *root = make_span(1, 0, "run", "child.lua");
    tide_span *done = make_span(2, 1, "task", "done");
    tide_span *open = make_span(3, 1, "task", "open");
    done->status = TIDE_SPAN_OK;
    done->end_us = done->start_us + 1000;
    open->start_us = done->start_us + 2000; /* the latest moment known */
    tide_store_span_put(s, run, root, &err);
    tide_store_span_put(s, run, done, &err);
    tide_store_span_put(s, run, open, &err);
    if (tide_store_flush(s, &err) != 0)
      _exit(1);
    if (write(fds[1], &run, sizeof run) != sizeof run)
      _exit(1);
    for (;;)
      pause();
  }
  close(fds[1]);
  int64_t run = 0;
  assert_int_equal(read(fds[0], &run, sizeof run), sizeof run);
  close(fds[0]);

  tide_err err;
  runs_seen rs = {0};
  tide_store *s = open_ok(home, 0);
  assert_int_equal(tide_store_run(s, run, collect_run, &rs, &err), 0);
  assert_string_equal(rs.status[0], "running"); /* alive: its lock is held */
  tide_store_close(s);

  kill(pid, SIGKILL);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));

  /* A read-only open repairs nothing. */
  s = open_ok(home, TIDE_STORE_READONLY);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(tide_store_run(s, run, collect_run, &rs, &err), 0);
  assert_string_equal(rs.status[0], "running");
  tide_store_close(s);

  s = open_ok(home, 0);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(tide_store_run(s, run, collect_run, &rs, &err), 0);
  assert_string_equal(rs.status[0], "interrupted");
  assert_false(rs.has_exit_code[0]);
  spans_seen ss = {0};
  assert_int_equal(tide_store_spans(s, run, collect_span, &ss, &err), 0);
  assert_int_equal(ss.n, 3);
  assert_string_equal(ss.status[0], "interrupted");
  assert_string_equal(ss.status[1], "ok");
  assert_string_equal(ss.status[2], "interrupted");
  /* ended = the last time the run was known alive: the open span's start. */
  assert_int_equal(rs.ended[0], ss.end[2]);
  assert_int_equal(ss.end[0], ss.end[2]);
  assert_true(ss.end[2] > ss.end[1]);
  char lock[PATH_MAX];
  snprintf(lock, sizeof lock, "%s/locks/%lld.lock", home, (long long)run);
  assert_int_equal(access(lock, F_OK), -1);
  tide_store_close(s);
}

static void test_corrupt(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "corrupt");
  assert_int_equal(mkdir(home, 0700), 0);
  snprintf(path, sizeof path, "%s/state.db", home);
  char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (char)(i * 7 + 3);
  memcpy(junk, "not a database, really", 22);
  write_file(path, junk, sizeof junk);

  for (int ro = 0; ro < 2; ro++) {
    tide_store *s = (tide_store *)1;
    tide_err err;
    int rc = tide_store_open(&s, home, ro ? TIDE_STORE_READONLY : 0, &err);
    assert_int_equal(rc, TIDE_ECORRUPT);
    assert_int_equal(err.code, TIDE_ECORRUPT);
    assert_null(s);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "state database '%s' is corrupt: file is not a database", path);
    assert_string_equal(err.msg, want);
    size_t len;
    char *now = read_file(path, &len);
    assert_int_equal(len, sizeof junk);
    assert_memory_equal(now, junk, sizeof junk);
    free(now);
    assert_false(exists(home, "state.db-wal"));
    assert_false(exists(home, "logs"));
  }
}

/* A valid header over garbage pages: sqlite reports it when it reads the schema. */
static void test_corrupt_schema(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "corrupt2");
  tide_store_close(open_ok(home, 0));
  snprintf(path, sizeof path, "%s/state.db", home);
  size_t len;
  char *data = read_file(path, &len);
  assert_true(len >= 4096);
  memset(data + 100, 0x5a, len - 100); /* keep the 100-byte header, ruin page 1's b-tree */
  write_file(path, data, len);
  tide_store *s;
  tide_err err;
  assert_int_equal(tide_store_open(&s, home, 0, &err), TIDE_ECORRUPT);
  assert_non_null(strstr(err.msg, "is corrupt"));
  size_t len2;
  char *after = read_file(path, &len2);
  assert_int_equal(len2, len);
  assert_memory_equal(after, data, len);
  free(after);
  free(data);
}

static void test_home_is_file(void **state)
{
  char home[PATH_MAX];
  fresh(home, "file");
  write_file(home, "x", 1);
  for (int ro = 0; ro < 2; ro++) {
    tide_store *s;
    tide_err err;
    assert_int_equal(tide_store_open(&s, home, ro ? TIDE_STORE_READONLY : 0, &err), -ENOTDIR);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "'%s' is not a directory", home);
    assert_string_equal(err.msg, want);
  }
}

static void test_readonly_missing_home(void **state)
{
  char home[PATH_MAX];
  fresh(home, "absent");
  tide_store *s;
  tide_err err;
  assert_int_equal(tide_store_open(&s, home, TIDE_STORE_READONLY, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "nothing has run there yet"));
  assert_int_equal(access(home, F_OK), -1); /* READONLY never creates */
}

static void test_newer_schema(void **state)
{
  char home[PATH_MAX];
  fresh(home, "newer");
  tide_store_close(open_ok(home, 0));
  sqlite3 *db = raw_open(home);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  tide_store *s;
  tide_err err;
  assert_int_equal(tide_store_open(&s, home, 0, &err), TIDE_EINPUT);
  assert_non_null(strstr(err.msg, "has schema version 99, newer than this tide"));
  db = raw_open(home);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), 99);
  sqlite3_close(db);
}

/*
** Makes path read-only. As root, permission bits do not stop writes, so the path is bind-mounted
** onto itself read-only inside a private mount namespace (this test process only). Returns 0, or
** -1 when this machine allows neither.
*/
static int make_readonly(const char *path, int is_dir)
{
  if (geteuid() != 0)
    return chmod(path, is_dir ? 0555 : 0444);
  static int unshared;
  if (!unshared) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
      return -1;
    unshared = 1;
  }
  if (mount(path, path, NULL, MS_BIND, NULL) != 0)
    return -1;
  return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
}

static void undo_readonly(const char *path, int is_dir)
{
  if (geteuid() != 0)
    chmod(path, is_dir ? 0700 : 0644);
  else
    umount(path);
}

static void test_readonly_file(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "rofile");
  tide_store_close(open_ok(home, 0));
  snprintf(path, sizeof path, "%s/state.db", home);
  if (make_readonly(path, 0) != 0)
    skip();
  /* Proof that the setup bites: a plain write fails. */
  assert_int_equal(open(path, O_WRONLY), -1);
  tide_store *s;
  tide_err err;
  int rc = tide_store_open(&s, home, 0, &err);
  undo_readonly(path, 0);
  assert_int_equal(rc, TIDE_EREADONLY);
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "cannot write '%s': read-only file", path);
  assert_string_equal(err.msg, want);
}

static void test_readonly_dir(void **state)
{
  char home[PATH_MAX], path[PATH_MAX];
  fresh(home, "rodir");
  tide_store *s = open_ok(home, 0);
  tide_err err;
  int64_t run;
  assert_int_equal(tide_store_run_begin(s, "ro.lua", NULL, &run, &err), 0);
  assert_int_equal(tide_store_run_end(s, run, "succeeded", 0, &err), 0);
  tide_store_close(s);
  snprintf(path, sizeof path, "%s/probe", home);
  if (make_readonly(home, 1) != 0)
    skip();
  assert_int_equal(open(path, O_WRONLY | O_CREAT, 0600), -1);
  int rc = tide_store_open(&s, home, 0, &err);
  char msg[sizeof err.msg];
  strcpy(msg, err.msg);
  /* Queries still work on a read-only home. */
  tide_store *ro = NULL;
  int rorc = tide_store_open(&ro, home, TIDE_STORE_READONLY, &err);
  runs_seen rs = {0};
  int qrc = ro ? tide_store_runs(ro, 0, collect_run, &rs, &err) : -1;
  tide_store_close(ro);
  undo_readonly(home, 1);
  assert_int_equal(rc, TIDE_EREADONLY);
  snprintf(path, sizeof path, "cannot write '%s/state.db': read-only ", home);
  assert_non_null(strstr(msg, path));
  if (rorc != 0)
    fail_msg("read-only open of a read-only home: %s", err.msg);
  assert_int_equal(qrc, 0);
  assert_int_equal(rs.n, 1);
}

static int setup(void **state)
{
  const char *tmp = getenv("TMPDIR");
  snprintf(base, sizeof base, "%s/tide-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migrate_from_empty),
      cmocka_unit_test(test_reopen_keeps_runs),
      cmocka_unit_test(test_batching),
      cmocka_unit_test(test_log_path),
      cmocka_unit_test(test_interrupted),
      cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_corrupt_schema),
      cmocka_unit_test(test_home_is_file),
      cmocka_unit_test(test_readonly_missing_home),
      cmocka_unit_test(test_newer_schema),
      cmocka_unit_test(test_readonly_file),
      cmocka_unit_test(test_readonly_dir),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
