/*
** The state store on sqlite: $TIDE_HOME/state.db in WAL mode, plus logs/ and locks/.
**
** Opening validates the home (a directory, writable unless READONLY), reads the schema version
** before anything writes (so a file that is not a database is reported and left untouched),
** migrates under BEGIN IMMEDIATE, and marks the runs of dead tide processes "interrupted". Every
** write is a transaction that takes the write lock up front (BEGIN IMMEDIATE), so a crash leaves
** either all of a batch or none of it. Span changes are copied into a queue and written by
** tide_store_flush() in one transaction.
**
** All SQL lives here, behind the functions of tide/store.h, so that another backend can replace
** this file. It does not draw, schedule or know about Lua.
*/
#include "tide/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tide/version.h"

#define BUSY_TIMEOUT_MS 5000

/* A queued change: a span upsert, or the recording of a span's log path. */
typedef struct change {
  enum { CHANGE_SPAN, CHANGE_LOG } what;
  int64_t run_id;
  uint64_t id, parent;
  char kind[16];
  tide_span_status status;
  int64_t start_us, end_us;
  char *name;  /* owned; NULL for CHANGE_LOG */
  char *attrs; /* owned, or NULL */
  char *log;   /* owned, CHANGE_LOG only: the path relative to home */
} change;

/* A lock held on locks/RUN.lock while this process runs RUN. */
typedef struct run_lock {
  int64_t run_id;
  int fd;
} run_lock;

struct tide_store {
  sqlite3 *db;
  int flags;
  char *home;    /* owned, as given */
  char *dbpath;  /* owned: home/state.db */
  change *queue; /* pending changes in put order; owned with their strings */
  size_t nqueue, cqueue;
  run_lock *locks; /* runs begun and not yet ended by this store */
  size_t nlocks, clocks;
  sqlite3_stmt *put_span; /* prepared on first flush, finalized by close */
  sqlite3_stmt *put_log;
  int64_t log_dir_run; /* the run whose logs/RUN directory this store last made, or 0 */
};

/*
** Migrations, in order; entry i takes the schema from version i to i + 1. Never edit one that has
** shipped: append a new one. Each runs in the same transaction as its user_version bump.
*/
static const char *const migrations[] = {
    /* 1: runs, spans and a key-value table for facts about the store itself. */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused: lock files are named by id */
    "  name TEXT NOT NULL,"
    "  argv TEXT,"
    "  status TEXT NOT NULL,"
    "  exit_code INTEGER,"
    "  pid INTEGER,"
    "  host TEXT,"
    "  started_us INTEGER NOT NULL,"
    "  ended_us INTEGER);"
    "CREATE INDEX runs_running ON runs (status) WHERE status = 'running';"
    "CREATE TABLE spans ("
    "  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  id INTEGER NOT NULL,"
    "  parent INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  start_us INTEGER NOT NULL,"
    "  end_us INTEGER,"
    "  attrs TEXT,"
    "  log TEXT," /* relative to home, so a home can be moved */
    "  PRIMARY KEY (run_id, id)) WITHOUT ROWID;"
    "CREATE INDEX spans_parent ON spans (run_id, parent);"
    "INSERT INTO meta (key, value) VALUES ('created_by', 'tide " TIDE_VERSION_STRING "');",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == TIDE_STORE_SCHEMA,
               "TIDE_STORE_SCHEMA must count the migrations");

/* ---------------------------------------------------------------------------------------------
** Errors
*/

/* Maps a failed sqlite call to a tide code and a one-line message naming the database. */
static int sql_fail(tide_store *s, int rc, const char *what, tide_err *err)
{
  const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return tide_err_set(err, TIDE_ECORRUPT, "state database '%s' is corrupt: %s", s->dbpath, msg);
    case SQLITE_READONLY:
      return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': read-only database (%s)",
                          s->dbpath, msg);
    case SQLITE_FULL:
      return tide_err_set(err, -ENOSPC, "%s '%s': %s", what, s->dbpath, msg);
    case SQLITE_CANTOPEN: {
      int e = s->db ? sqlite3_system_errno(s->db) : 0;
      return tide_err_set(err, e ? -e : TIDE_ESQL, "cannot open '%s': %s%s%s", s->dbpath, msg,
                          e ? ": " : "", e ? strerror(e) : "");
    }
    default:
      return tide_err_set(err, TIDE_ESQL, "%s '%s': %s", what, s->dbpath, msg);
  }
}

static int sys_fail(int e, tide_err *err, const char *what, const char *path)
{
  return tide_err_set(err, -e, "%s '%s': %s", what, path, strerror(e));
}

/* ---------------------------------------------------------------------------------------------
** Small helpers
*/

static int exec_sql(tide_store *s, const char *sql, const char *what, tide_err *err)
{
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : sql_fail(s, rc, what, err);
}

/* Rolls back the open transaction, if any; keeps the error that caused it. */
static void rollback(tide_store *s)
{
  if (!sqlite3_get_autocommit(s->db))
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int prepare(tide_store *s, const char *sql, sqlite3_stmt **stmt, tide_err *err)
{
  int rc = sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL);
  return rc == SQLITE_OK ? 0 : sql_fail(s, rc, "query", err);
}

static int read_int(tide_store *s, const char *sql, int64_t *out, tide_err *err)
{
  sqlite3_stmt *st;
  int rc = prepare(s, sql, &st, err);
  if (rc != 0)
    return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    *out = 0;
    rc = SQLITE_OK;
  }
  int ret = rc == SQLITE_OK ? 0 : sql_fail(s, rc, "read", err);
  sqlite3_finalize(st);
  return ret;
}

static int join(char *buf, size_t size, tide_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Formats a path into buf; a path too long for it is an error, never silently cut. */
static int join(char *buf, size_t size, tide_err *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= size)
    return tide_err_set(err, TIDE_ELIMIT, "path too long: '%.64s...'", buf);
  return 0;
}

/* mkdir -p with mode for every directory it creates. */
static int make_dirs(const char *path, mode_t mode, tide_err *err)
{
  char buf[PATH_MAX];
  int rc = join(buf, sizeof buf, err, "%s", path);
  if (rc != 0)
    return rc;
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
      return sys_fail(errno, err, "cannot create", buf);
    *p = c;
    if (c == '\0')
      break;
  }
  return 0;
}

static int ensure_subdir(tide_store *s, const char *name, tide_err *err)
{
  char path[PATH_MAX];
  int rc = join(path, sizeof path, err, "%s/%s", s->home, name);
  if (rc != 0)
    return rc;
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return sys_fail(errno, err, "cannot create", path);
  return 0;
}

static int lock_path(tide_store *s, int64_t run_id, char *buf, size_t size, tide_err *err)
{
  return join(buf, size, err, "%s/locks/%lld.lock", s->home, (long long)run_id);
}

/*
** Opens and locks locks/RUN.lock without waiting. Returns the fd, -EWOULDBLOCK when a live
** process holds it, or another negative errno.
*/
static int lock_run(tide_store *s, int64_t run_id, tide_err *err)
{
  char path[PATH_MAX];
  int rc = lock_path(s, run_id, path, sizeof path, err);
  if (rc != 0)
    return rc;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return sys_fail(errno, err, "cannot open lock", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    return sys_fail(e, err, "cannot lock", path);
  }
  return fd;
}

/*
** Unlinks then closes a run's lock. Safe because a lock is only ever taken for a run whose row
** says "running", under the write lock, and run ids are never reused.
*/
static void unlock_run(tide_store *s, int64_t run_id, int fd)
{
  char path[PATH_MAX];
  if (lock_path(s, run_id, path, sizeof path, NULL) == 0)
    unlink(path);
  close(fd);
}

/* ---------------------------------------------------------------------------------------------
** Opening
*/

static int check_home(const char *home, int flags, tide_err *err)
{
  struct stat st;
  if (stat(home, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return tide_err_set(err, -ENOTDIR, "'%s' is not a directory", home);
    return 0;
  }
  if (errno != ENOENT)
    return sys_fail(errno, err, "cannot use", home);
  if (flags & TIDE_STORE_READONLY)
    return tide_err_set(err, -ENOENT, "no state in '%s': nothing has run there yet", home);
  return make_dirs(home, 0700, err);
}

/*
** A store that cannot be written is reported before sqlite sees it: sqlite would otherwise open a
** read-only file read-only without a word, or fail later with a less useful message.
*/
static int check_writable(tide_store *s, tide_err *err)
{
  if (access(s->home, W_OK) != 0) {
    if (errno == EROFS)
      return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': read-only file system",
                          s->dbpath);
    if (errno == EACCES)
      return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': read-only directory '%s'",
                          s->dbpath, s->home);
    return sys_fail(errno, err, "cannot use", s->home);
  }
  if (access(s->dbpath, W_OK) != 0 && errno != ENOENT) {
    if (errno == EROFS || errno == EACCES)
      return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': read-only file", s->dbpath);
    return sys_fail(errno, err, "cannot use", s->dbpath);
  }
  return 0;
}

static int migrate(tide_store *s, tide_err *err)
{
  int rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot migrate", err);
  if (rc != 0)
    return rc;
  /* Read again under the write lock: another tide may have migrated meanwhile. */
  int64_t version;
  rc = read_int(s, "PRAGMA user_version", &version, err);
  for (int64_t v = version; rc == 0 && v < TIDE_STORE_SCHEMA; v++) {
    rc = exec_sql(s, migrations[v], "cannot migrate", err);
    if (rc == 0) {
      char sql[64];
      snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)v + 1);
      rc = exec_sql(s, sql, "cannot migrate", err);
    }
  }
  if (rc == 0)
    rc = exec_sql(s, "COMMIT", "cannot migrate", err);
  if (rc != 0)
    rollback(s);
  return rc;
}

/*
** Marks the runs whose tide died as interrupted. A run's process holds its lock until it has
** written the run's end, so a lock we can take means nobody will ever end that run. This runs
** under BEGIN IMMEDIATE: no run can end or begin between reading "running" and marking.
*/
static int mark_interrupted(tide_store *s, tide_err *err)
{
  int64_t any;
  int rc = read_int(s, "SELECT count(*) FROM runs WHERE status = 'running'", &any, err);
  if (rc != 0 || any == 0)
    return rc; /* the common case: no write lock taken */

  rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot recover", err);
  if (rc != 0)
    return rc;
  sqlite3_stmt *sel = NULL, *spans = NULL, *run = NULL;
  run_lock *taken = NULL;
  size_t ntaken = 0, ctaken = 0;
  rc = prepare(s, "SELECT id FROM runs WHERE status = 'running'", &sel, err);
  if (rc == 0)
    rc = prepare(s,
                 "UPDATE spans SET status = 'interrupted', end_us = ?2 "
                 "WHERE run_id = ?1 AND status = 'running'",
                 &spans, err);
  if (rc == 0)
    rc = prepare(s, "UPDATE runs SET status = 'interrupted', ended_us = ?2 WHERE id = ?1", &run,
                 err);
  int step = SQLITE_DONE;
  while (rc == 0 && (step = sqlite3_step(sel)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(sel, 0);
    int fd = lock_run(s, id, NULL);
    if (fd < 0)
      continue; /* alive (EWOULDBLOCK), or a lock we cannot judge: leave it */
    if (ntaken == ctaken) {
      size_t c = ctaken ? ctaken * 2 : 8;
      run_lock *t = realloc(taken, c * sizeof *t);
      if (!t) {
        close(fd);
        rc = tide_err_set(err, -ENOMEM, "recover runs: out of memory");
        break;
      }
      taken = t, ctaken = c;
    }
    taken[ntaken++] = (run_lock){id, fd};
  }
  if (rc == 0 && step != SQLITE_DONE)
    rc = sql_fail(s, step, "cannot recover", err);
  for (size_t i = 0; rc == 0 && i < ntaken; i++) {
    /* The last moment the run is known to have been alive. */
    char sql[256];
    int64_t last;
    snprintf(sql, sizeof sql,
             "SELECT max(r.started_us, coalesce((SELECT max(max(start_us, coalesce(end_us, 0))) "
             "FROM spans WHERE run_id = r.id), 0)) FROM runs r WHERE r.id = %lld",
             (long long)taken[i].run_id);
    rc = read_int(s, sql, &last, err);
    for (sqlite3_stmt *st = spans; rc == 0 && st; st = st == spans ? run : NULL) {
      sqlite3_bind_int64(st, 1, taken[i].run_id);
      sqlite3_bind_int64(st, 2, last);
      step = sqlite3_step(st);
      sqlite3_reset(st);
      if (step != SQLITE_DONE)
        rc = sql_fail(s, step, "cannot recover", err);
    }
  }
  sqlite3_finalize(sel);
  sqlite3_finalize(spans);
  sqlite3_finalize(run);
  if (rc == 0)
    rc = exec_sql(s, "COMMIT", "cannot recover", err);
  if (rc != 0)
    rollback(s);
  /* Unlink only once the marks are committed; on failure the next open tries again. */
  for (size_t i = 0; i < ntaken; i++) {
    if (rc == 0)
      unlock_run(s, taken[i].run_id, taken[i].fd);
    else
      close(taken[i].fd);
  }
  free(taken);
  return rc;
}

/*
** Reopens a READONLY store as immutable: a WAL database needs its -shm file, which a read-only
** directory cannot get. Only for homes nobody can write, where nothing changes under us.
*/
static int reopen_immutable(tide_store *s)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s->dbpath);
  char *uri = malloc(3 * n + sizeof "file:?immutable=1");
  if (!uri)
    return SQLITE_NOMEM;
  char *p = uri + sprintf(uri, "file:");
  for (const unsigned char *c = (const unsigned char *)s->dbpath; *c; c++) {
    if (*c == '?' || *c == '#' || *c == '%' || *c < 0x21 || *c > 0x7e) {
      *p++ = '%';
      *p++ = hex[*c >> 4];
      *p++ = hex[*c & 15];
    } else {
      *p++ = (char)*c;
    }
  }
  strcpy(p, "?immutable=1");
  sqlite3_close_v2(s->db);
  s->db = NULL;
  int rc = sqlite3_open_v2(
      uri, &s->db,
      SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
  free(uri);
  return rc;
}

static int open_db(tide_store *s, tide_err *err)
{
  int ro = s->flags & TIDE_STORE_READONLY;
  if (ro && access(s->dbpath, F_OK) != 0)
    return tide_err_set(err, -ENOENT, "no state in '%s': nothing has run there yet", s->home);
  int oflags = (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
               SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  int rc = sqlite3_open_v2(s->dbpath, &s->db, oflags, NULL);
  if (rc != SQLITE_OK)
    return sql_fail(s, rc, "cannot open", err);
  sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
  if (!ro && sqlite3_db_readonly(s->db, "main") == 1)
    return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': read-only file", s->dbpath);

  /*
  ** The first read checks the header: a file that is not a database fails here, before the
  ** journal mode or a migration could write anything.
  */
  int64_t version;
  rc = read_int(s, "PRAGMA user_version", &version, err);
  if (rc != 0 && ro && (sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_CANTOPEN &&
      access(s->home, W_OK) != 0) {
    rc = reopen_immutable(s);
    if (rc != SQLITE_OK)
      return sql_fail(s, rc, "cannot open", err);
    tide_err_clear(err);
    rc = read_int(s, "PRAGMA user_version", &version, err);
  }
  if (rc == 0)
    rc = read_int(s, "SELECT count(*) FROM sqlite_schema", &(int64_t){0}, err);
  if (rc != 0)
    return rc;
  if (version > TIDE_STORE_SCHEMA)
    return tide_err_set(err, TIDE_EINPUT,
                        "state database '%s' has schema version %lld, newer than this tide "
                        "(%d): use a newer tide",
                        s->dbpath, (long long)version, TIDE_STORE_SCHEMA);
  if (ro) {
    if (version == 0)
      return tide_err_set(err, -ENOENT, "no state in '%s': nothing has run there yet", s->home);
    if (version < TIDE_STORE_SCHEMA)
      return tide_err_set(err, TIDE_EINPUT,
                          "state database '%s' has schema version %lld, older than this tide "
                          "(%d): run a script once to migrate it",
                          s->dbpath, (long long)version, TIDE_STORE_SCHEMA);
    return exec_sql(s, "PRAGMA query_only = ON", "cannot open", err);
  }
  rc = exec_sql(s, "PRAGMA journal_mode = WAL", "cannot open", err);
  if (rc == 0)
    rc = exec_sql(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", "cannot open", err);
  if (rc == 0 && version < TIDE_STORE_SCHEMA)
    rc = migrate(s, err);
  return rc;
}

int tide_store_open(tide_store **out, const char *home, int flags, tide_err *err)
{
  *out = NULL;
  tide_err_clear(err);
  int rc = check_home(home, flags, err);
  if (rc != 0)
    return rc;
  tide_store *s = calloc(1, sizeof *s);
  if (!s)
    return tide_err_set(err, -ENOMEM, "open store: out of memory");
  s->flags = flags;
  s->home = strdup(home);
  size_t n = strlen(home) + sizeof "/state.db";
  s->dbpath = malloc(n);
  if (!s->home || !s->dbpath) {
    tide_store_close(s);
    return tide_err_set(err, -ENOMEM, "open store: out of memory");
  }
  snprintf(s->dbpath, n, "%s/state.db", home);

  if (!(flags & TIDE_STORE_READONLY))
    rc = check_writable(s, err);
  if (rc == 0)
    rc = open_db(s, err);
  if (rc == 0 && !(flags & TIDE_STORE_READONLY)) {
    rc = ensure_subdir(s, "logs", err);
    if (rc == 0)
      rc = ensure_subdir(s, "locks", err);
    if (rc == 0)
      rc = mark_interrupted(s, err);
  }
  if (rc != 0) {
    tide_store_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** The queue
*/

static void change_clear(change *c)
{
  free(c->name);
  free(c->attrs);
  free(c->log);
}

static change *queue_push(tide_store *s, tide_err *err)
{
  if (s->nqueue == s->cqueue) {
    size_t c = s->cqueue ? s->cqueue * 2 : 64;
    change *q = realloc(s->queue, c * sizeof *q);
    if (!q) {
      tide_err_set(err, -ENOMEM, "queue span: out of memory");
      return NULL;
    }
    s->queue = q, s->cqueue = c;
  }
  change *c = &s->queue[s->nqueue];
  memset(c, 0, sizeof *c);
  return c;
}

static int check_write(tide_store *s, tide_err *err)
{
  if (s->flags & TIDE_STORE_READONLY)
    return tide_err_set(err, TIDE_EREADONLY, "cannot write '%s': opened read-only", s->dbpath);
  return 0;
}

int tide_store_span_put(tide_store *s, int64_t run_id, const tide_span *span, tide_err *err)
{
  int rc = check_write(s, err);
  if (rc != 0)
    return rc;
  change *c = queue_push(s, err);
  if (!c)
    return -ENOMEM;
  c->what = CHANGE_SPAN;
  c->run_id = run_id;
  c->id = span->id;
  c->parent = span->parent;
  memcpy(c->kind, span->kind, sizeof c->kind);
  c->kind[sizeof c->kind - 1] = '\0';
  c->status = span->status;
  c->start_us = span->start_us;
  c->end_us = span->end_us;
  c->name = strdup(span->name ? span->name : "");
  c->attrs = span->attrs ? strdup(span->attrs) : NULL;
  if (!c->name || (span->attrs && !c->attrs)) {
    change_clear(c);
    return tide_err_set(err, -ENOMEM, "queue span: out of memory");
  }
  s->nqueue++;
  return 0;
}

size_t tide_store_pending(const tide_store *s)
{
  return s ? s->nqueue : 0;
}

static int write_change(tide_store *s, const change *c, tide_err *err)
{
  sqlite3_stmt *st;
  if (c->what == CHANGE_SPAN) {
    st = s->put_span;
    sqlite3_bind_int64(st, 1, c->run_id);
    sqlite3_bind_int64(st, 2, (int64_t)c->id);
    sqlite3_bind_int64(st, 3, (int64_t)c->parent);
    sqlite3_bind_text(st, 4, c->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, tide_span_status_name(c->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, c->start_us);
    if (c->end_us)
      sqlite3_bind_int64(st, 8, c->end_us);
    else
      sqlite3_bind_null(st, 8);
    if (c->attrs)
      sqlite3_bind_text(st, 9, c->attrs, -1, SQLITE_STATIC);
    else
      sqlite3_bind_null(st, 9);
  } else {
    st = s->put_log;
    sqlite3_bind_int64(st, 1, c->run_id);
    sqlite3_bind_int64(st, 2, (int64_t)c->id);
    sqlite3_bind_text(st, 3, c->log, -1, SQLITE_STATIC);
  }
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, rc, "cannot record spans in", err);
}

int tide_store_flush(tide_store *s, tide_err *err)
{
  if (!s || s->nqueue == 0)
    return 0;
  int rc = 0;
  if (!s->put_span)
    rc = prepare(s,
                 "INSERT INTO spans (run_id, id, parent, kind, name, status, start_us, end_us, "
                 "attrs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                 "ON CONFLICT (run_id, id) DO UPDATE SET parent = excluded.parent, "
                 "kind = excluded.kind, name = excluded.name, status = excluded.status, "
                 "start_us = excluded.start_us, end_us = excluded.end_us, attrs = excluded.attrs",
                 &s->put_span, err);
  if (rc == 0 && !s->put_log)
    rc = prepare(s, "UPDATE spans SET log = ?3 WHERE run_id = ?1 AND id = ?2", &s->put_log, err);
  if (rc == 0)
    rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot record spans in", err);
  if (rc != 0)
    return rc;
  for (size_t i = 0; rc == 0 && i < s->nqueue; i++)
    rc = write_change(s, &s->queue[i], err);
  if (rc == 0)
    rc = exec_sql(s, "COMMIT", "cannot record spans in", err);
  if (rc != 0) {
    /* Nothing was written; the queue stays for the next attempt. */
    rollback(s);
    return rc;
  }
  for (size_t i = 0; i < s->nqueue; i++)
    change_clear(&s->queue[i]);
  s->nqueue = 0;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Runs
*/

int tide_store_run_begin(tide_store *s, const char *name, const char *argv_json, int64_t *run_id,
                         tide_err *err)
{
  int rc = check_write(s, err);
  if (rc != 0)
    return rc;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  sqlite3_stmt *st;
  rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot record a run in", err);
  if (rc != 0)
    return rc;
  rc = prepare(s,
               "INSERT INTO runs (name, argv, status, pid, host, started_us) "
               "VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
               &st, err);
  if (rc == 0) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (argv_json)
      sqlite3_bind_text(st, 2, argv_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, getpid());
    sqlite3_bind_text(st, 4, host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, tide_now_us());
    int step = sqlite3_step(st);
    if (step != SQLITE_DONE)
      rc = sql_fail(s, step, "cannot record a run in", err);
    sqlite3_finalize(st);
  }
  int64_t id = sqlite3_last_insert_rowid(s->db);
  int fd = -1;
  if (rc == 0 && s->nlocks == s->clocks) {
    size_t c = s->clocks ? s->clocks * 2 : 4;
    run_lock *l = realloc(s->locks, c * sizeof *l);
    if (l)
      s->locks = l, s->clocks = c;
    else
      rc = tide_err_set(err, -ENOMEM, "begin run: out of memory");
  }
  /* Lock before commit: once the row is visible as "running", its lock is already held. */
  if (rc == 0 && (fd = lock_run(s, id, err)) < 0)
    rc = fd;
  if (rc == 0)
    rc = exec_sql(s, "COMMIT", "cannot record a run in", err);
  if (rc != 0) {
    rollback(s);
    if (fd >= 0)
      unlock_run(s, id, fd);
    return rc;
  }
  s->locks[s->nlocks++] = (run_lock){id, fd};
  *run_id = id;
  return 0;
}

int tide_store_run_end(tide_store *s, int64_t run_id, const char *status, int exit_code,
                       tide_err *err)
{
  int rc = check_write(s, err);
  if (rc != 0)
    return rc;
  /* Spans first, so that the run's end is the last thing written about it. */
  tide_err flush_err;
  int flushed = tide_store_flush(s, &flush_err);
  int64_t now = tide_now_us();
  sqlite3_stmt *run = NULL, *spans = NULL;
  rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot record the end of a run in", err);
  if (rc != 0)
    return rc;
  rc = prepare(s, "UPDATE runs SET status = ?2, exit_code = ?3, ended_us = ?4 WHERE id = ?1", &run,
               err);
  if (rc == 0)
    rc = prepare(s,
                 "UPDATE spans SET status = 'cancelled', end_us = ?2 "
                 "WHERE run_id = ?1 AND status = 'running'",
                 &spans, err);
  if (rc == 0) {
    sqlite3_bind_int64(run, 1, run_id);
    sqlite3_bind_text(run, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int(run, 3, exit_code);
    sqlite3_bind_int64(run, 4, now);
    int step = sqlite3_step(run);
    if (step == SQLITE_DONE) {
      sqlite3_bind_int64(spans, 1, run_id);
      sqlite3_bind_int64(spans, 2, now);
      step = sqlite3_step(spans);
    }
    if (step != SQLITE_DONE)
      rc = sql_fail(s, step, "cannot record the end of a run in", err);
  }
  sqlite3_finalize(run);
  sqlite3_finalize(spans);
  if (rc == 0)
    rc = exec_sql(s, "COMMIT", "cannot record the end of a run in", err);
  if (rc != 0) {
    rollback(s);
    return rc;
  }
  for (size_t i = 0; i < s->nlocks; i++) {
    if (s->locks[i].run_id == run_id) {
      unlock_run(s, run_id, s->locks[i].fd);
      s->locks[i] = s->locks[--s->nlocks];
      break;
    }
  }
  if (flushed != 0) {
    if (err)
      *err = flush_err;
    return flushed;
  }
  return 0;
}

int tide_store_run_alive(tide_store *s, int64_t run_id)
{
  char path[PATH_MAX];
  if (lock_path(s, run_id, path, sizeof path, NULL) != 0)
    return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0; /* never locked, or already recovered */
  int alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd); /* drops the shared lock if we got it */
  return alive;
}

/* ---------------------------------------------------------------------------------------------
** Logs
*/

int tide_store_log_path(tide_store *s, int64_t run_id, uint64_t span_id, char *buf, size_t size,
                        tide_err *err)
{
  char rel[64];
  snprintf(rel, sizeof rel, "logs/%lld/%llu.log", (long long)run_id, (unsigned long long)span_id);
  int rc = join(buf, size, err, "%s/%s", s->home, rel);
  if (rc != 0 || (s->flags & TIDE_STORE_READONLY))
    return rc;
  if (s->log_dir_run != run_id) {
    char dir[PATH_MAX];
    rc = join(dir, sizeof dir, err, "%s/logs/%lld", s->home, (long long)run_id);
    if (rc != 0)
      return rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      return sys_fail(errno, err, "cannot create", dir);
    s->log_dir_run = run_id;
  }
  change *c = queue_push(s, err);
  if (!c)
    return -ENOMEM;
  c->what = CHANGE_LOG;
  c->run_id = run_id;
  c->id = span_id;
  c->log = strdup(rel);
  if (!c->log)
    return tide_err_set(err, -ENOMEM, "log path: out of memory");
  s->nqueue++;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Queries
*/

static const char *text(sqlite3_stmt *st, int col)
{
  return (const char *)sqlite3_column_text(st, col);
}

#define RUN_COLUMNS "id, name, argv, status, exit_code, pid, host, started_us, ended_us"

static int query_runs(tide_store *s, sqlite3_stmt *st, tide_store_run_cb cb, void *ud, int *nrows,
                      tide_err *err)
{
  int step;
  *nrows = 0;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    tide_run_rec r = {
        .id = sqlite3_column_int64(st, 0),
        .name = text(st, 1),
        .argv_json = text(st, 2),
        .status = text(st, 3),
        .exit_code = sqlite3_column_int(st, 4),
        .has_exit_code = sqlite3_column_type(st, 4) != SQLITE_NULL,
        .pid = sqlite3_column_int64(st, 5),
        .host = text(st, 6),
        .started_us = sqlite3_column_int64(st, 7),
        .ended_us = sqlite3_column_int64(st, 8),
    };
    (*nrows)++;
    if (cb(ud, &r) != 0)
      break;
  }
  int rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_fail(s, step, "cannot read", err);
  sqlite3_finalize(st);
  return rc;
}

int tide_store_runs(tide_store *s, int64_t limit, tide_store_run_cb cb, void *ud, tide_err *err)
{
  sqlite3_stmt *st;
  int rc = prepare(s, "SELECT " RUN_COLUMNS " FROM runs ORDER BY id DESC LIMIT ?1", &st, err);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, limit > 0 ? limit : -1);
  int n;
  return query_runs(s, st, cb, ud, &n, err);
}

int tide_store_run(tide_store *s, int64_t run_id, tide_store_run_cb cb, void *ud, tide_err *err)
{
  sqlite3_stmt *st;
  int rc = prepare(s, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1", &st, err);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, run_id);
  int n;
  rc = query_runs(s, st, cb, ud, &n, err);
  if (rc == 0 && n == 0)
    rc = tide_err_set(err, -ENOENT, "no run %lld in '%s'", (long long)run_id, s->home);
  return rc;
}

int tide_store_spans(tide_store *s, int64_t run_id, tide_store_span_cb cb, void *ud, tide_err *err)
{
  sqlite3_stmt *st;
  int rc = prepare(s,
                   "SELECT run_id, id, parent, kind, name, status, start_us, end_us, attrs, log "
                   "FROM spans WHERE run_id = ?1 ORDER BY start_us, id",
                   &st, err);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, run_id);
  char path[PATH_MAX];
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *log = text(st, 9);
    if (log && join(path, sizeof path, NULL, "%s/%s", s->home, log) == 0)
      log = path;
    tide_span_rec r = {
        .run_id = sqlite3_column_int64(st, 0),
        .id = (uint64_t)sqlite3_column_int64(st, 1),
        .parent = (uint64_t)sqlite3_column_int64(st, 2),
        .kind = text(st, 3),
        .name = text(st, 4),
        .status = text(st, 5),
        .start_us = sqlite3_column_int64(st, 6),
        .end_us = sqlite3_column_int64(st, 7),
        .attrs = text(st, 8),
        .log = log,
    };
    if (cb(ud, &r) != 0)
      break;
  }
  rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_fail(s, step, "cannot read", err);
  sqlite3_finalize(st);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
** The rest
*/

const char *tide_store_home(const tide_store *s)
{
  return s->home;
}

struct sqlite3 *tide_store_db(tide_store *s)
{
  return s->db;
}

void tide_store_close(tide_store *s)
{
  if (!s)
    return;
  if (s->db && !(s->flags & TIDE_STORE_READONLY))
    tide_store_flush(s, NULL);
  for (size_t i = 0; i < s->nqueue; i++)
    change_clear(&s->queue[i]);
  free(s->queue);
  /*
  ** Runs begun and not ended stay "running" in the database; dropping their locks (closing the
  ** fds, without unlinking) lets the next open mark them interrupted.
  */
  for (size_t i = 0; i < s->nlocks; i++)
    close(s->locks[i].fd);
  free(s->locks);
  sqlite3_finalize(s->put_span);
  sqlite3_finalize(s->put_log);
  sqlite3_close_v2(s->db);
  free(s->home);
  free(s->dbpath);
  free(s);
}
