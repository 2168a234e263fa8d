/*
** The state store: $TIDE_HOME/state.db (sqlite, WAL) plus $TIDE_HOME/logs/.
**
** One interface for every caller, so that a second backend can stand behind it later. It records
** runs and their spans and indexes the per-span output logs. Span writes are queued in memory and
** written in one transaction per batch (tide_store_flush), so the store never slows a busy run.
**
** A run that is running holds an exclusive flock on $TIDE_HOME/locks/RUN.lock. Opening the store
** marks every "running" run whose lock can be taken (its tide process died, even by SIGKILL) as
** "interrupted", with its open spans.
**
** Single-threaded: one tide_store per thread. Several tide processes may share one home.
*/
#ifndef TIDE_STORE_H
#define TIDE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tide/err.h"
#include "tide/trace.h"

typedef struct tide_store tide_store;

enum {
  TIDE_STORE_READONLY = 1 << 0, /* open for queries only: never creates, migrates or repairs */
};

/*
** Opens (creating when needed, unless READONLY) home, state.db and logs/, applies migrations and
** marks interrupted runs. On failure returns a negative code, *out is NULL and err names the path
** and the cause: home is a file, state.db is not a database, or is read-only, a newer schema.
*/
int tide_store_open(tide_store **out, const char *home, int flags, tide_err *err);

/*
** Flushes queued writes, ends nothing, closes and frees. NULL is allowed. Runs begun here and not
** ended keep their "running" row; their locks drop, so the next open marks them interrupted.
*/
void tide_store_close(tide_store *s);

/* The home directory, borrowed for the store's lifetime. */
const char *tide_store_home(const tide_store *s);

/*
** Records a new run (status "running") and takes its lock. name is the script or pipeline,
** argv_json a JSON array of the arguments (may be NULL). *run_id receives the new id.
*/
int tide_store_run_begin(tide_store *s, const char *name, const char *argv_json, int64_t *run_id,
                         tide_err *err);

/*
** Ends the run: status is "succeeded", "failed", "cancelled" or "timeout". Flushes first; spans of
** the run still "running" then (os.exit inside a task) become "cancelled". Releases the lock, but
** only once the end is written: a run whose end could not be recorded is found interrupted later.
*/
int tide_store_run_end(tide_store *s, int64_t run_id, const char *status, int exit_code,
                       tide_err *err);

/*
** Queues an insert or update of span for run_id (the last put of a span wins). Copies what it
** needs; nothing is written before tide_store_flush(). TIDE_EREADONLY on a READONLY store.
*/
int tide_store_span_put(tide_store *s, int64_t run_id, const tide_span *span, tide_err *err);

/*
** Writes every queued change in one transaction: all of them or, on failure, none (the queue is
** kept for the next attempt).
*/
int tide_store_flush(tide_store *s, tide_err *err);

/* Number of queued changes (the caller flushes past a threshold or on a timer). */
size_t tide_store_pending(const tide_store *s);

/*
** Writes the path of the output log of span_id in run_id into buf ("HOME/logs/RUN/SPAN.log") and
** creates its directory. Returns 0, or a negative code (buffer too small: TIDE_ELIMIT).
** It also queues the recording of that path on the span (flushed with the span puts, so put the
** span first), which is how `tide logs` finds it. The file itself is the caller's to create.
** On a READONLY store it only computes the path.
*/
int tide_store_log_path(tide_store *s, int64_t run_id, uint64_t span_id, char *buf, size_t size,
                        tide_err *err);

/* The sqlite handle, for read-only queries by the binding layer (runs, spans). Borrowed. */
struct sqlite3 *tide_store_db(tide_store *s);

/*
** Queries. They see what has been flushed, by this process or any other sharing the home. Results
** go to a callback, row by row; the strings in a record are borrowed and valid only during the
** call. A callback returns 0 to go on, non-zero to stop. It must not longjmp (raise a Lua error):
** the query's statement would stay open.
*/

/* The schema version this tide writes (PRAGMA user_version after migrating). */
#define TIDE_STORE_SCHEMA 1

typedef struct tide_run_rec {
  int64_t id;
  const char *name;      /* the script or pipeline */
  const char *argv_json; /* JSON array text, or NULL */
  const char *status; /* "running", "succeeded", "failed", "cancelled", "timeout", "interrupted" */
  int exit_code;      /* valid when has_exit_code */
  int has_exit_code;
  int64_t pid;        /* of the tide process that ran it */
  const char *host;   /* its host name, or NULL */
  int64_t started_us; /* wall clock, microseconds since the epoch */
  int64_t ended_us;   /* 0 while running */
} tide_run_rec;

typedef struct tide_span_rec {
  int64_t run_id;
  uint64_t id, parent; /* parent 0: a root */
  const char *kind;    /* "run", "task", "proc", ... */
  const char *name;
  const char *status; /* tide_span_status_name() words */
  int64_t start_us;
  int64_t end_us;    /* 0 while running */
  const char *attrs; /* JSON object text, or NULL */
  const char *log;   /* absolute path of the output log, or NULL when the span has none */
} tide_span_rec;

typedef int (*tide_store_run_cb)(void *ud, const tide_run_rec *run);
typedef int (*tide_store_span_cb)(void *ud, const tide_span_rec *span);

/* The limit most recent runs (all when limit <= 0), newest first. */
int tide_store_runs(tide_store *s, int64_t limit, tide_store_run_cb cb, void *ud, tide_err *err);

/* Run run_id: calls cb once and returns 0, or returns -ENOENT (err filled) when there is none. */
int tide_store_run(tide_store *s, int64_t run_id, tide_store_run_cb cb, void *ud, tide_err *err);

/*
** Whether a process holds run_id's lock now: 1 yes, 0 no. A run whose row says "running" and
** that nobody holds has lost its tide; the next writable open marks it interrupted. (This takes
** a shared lock for an instant; a writable open recovering at that very moment leaves the run
** for the next one.)
*/
int tide_store_run_alive(tide_store *s, int64_t run_id);

/* The spans of run_id in start order (ties by id). No spans, or no such run, is not an error. */
int tide_store_spans(tide_store *s, int64_t run_id, tide_store_span_cb cb, void *ud, tide_err *err);

#endif
