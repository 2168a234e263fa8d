/*
** The runtime: the one libuv loop, the Lua main state, the trace and (once a run or a query asks
** for it) the store. One per process, created by main.c, reachable from any lua_State of it.
*/
#ifndef TIDE_LUA_RUNTIME_H
#define TIDE_LUA_RUNTIME_H

#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "tide/mask.h"
#include "tide/store.h"
#include "tide/trace.h"

typedef struct tide_sched tide_sched;
typedef struct tide_view tide_view;

typedef struct tide_runtime {
  lua_State *L;      /* main thread; never a task */
  uv_loop_t *loop;   /* the host's loop, shared with tide.uv */
  tide_sched *sched; /* tasks, see task.h */
  tide_trace *trace; /* live spans */
  tide_store *store; /* NULL until tide_runtime_open_store() */
  int64_t run_id;    /* 0 when this process records no run */
  tide_span *root;   /* the run's span while a run is recorded */
  uv_timer_t flush;  /* writes queued store changes every 200 ms */
  tide_view *view;   /* live view of tasks and processes, or NULL; see start_view */
  int view_hooked;   /* the trace observer that forwards to view is registered */
  int exit_code;     /* what main returns: 0, 1, 2, 124 or 130 (a signal) */
  tide_mask *mask;   /* the run-wide mask: every secret value read; see tide_runtime_mask */
} tide_runtime;

/* The runtime of L's process (any thread of it). */
tide_runtime *tide_runtime_get(lua_State *L);

/* Stores rt so that tide_runtime_get() finds it. Called once by main.c. */
void tide_runtime_set(lua_State *L, tide_runtime *rt);

/*
** Opens the store at home (once; later calls return the open one). Returns 0 or a negative code
** with err filled.
*/
int tide_runtime_open_store(tide_runtime *rt, const char *home, int flags, tide_err *err);

/*
** Starts recording a run named name: a run row, a root span, span persistence and the flush
** timer. The store must be open.
*/
int tide_runtime_begin_run(tide_runtime *rt, const char *name, const char *argv_json,
                           tide_err *err);

/*
** Starts the live view of the recorded run on stderr. mode is "auto" (a terminal gets the live
** block, anything else plain lines), "plain" (--plain) or "none"; the TIDE_VIEW environment
** variable overrides it (see tide/view.h). A second call is a no-op. Returns 0 or a negative code.
*/
int tide_runtime_start_view(tide_runtime *rt, const char *mode, tide_err *err);

/*
** Ends the recorded run (no-op when none) with a run status word and exit code: ends the root
** span, prints the view's summary and frees the view, flushes and records the end.
*/
void tide_runtime_end_run(tide_runtime *rt, const char *status, int exit_code);

/*
** The run-wide mask (made on first use): every secret value this process reads is registered
** in it, and every writer of run output (process output, logs, traces, error messages) passes
** its text through it. Borrowed; NULL only when out of memory. Released by
** tide_runtime_end_run (processes still running keep their own reference).
*/
tide_mask *tide_runtime_mask(tide_runtime *rt);

/* The id of the span new work should nest under: the current task's span, or the run's root. */
uint64_t tide_runtime_parent_span(lua_State *L);

#endif
