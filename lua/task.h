/*
** Tasks: C-owned coroutines and the scheduler that resumes them.
**
** Every script runs inside a task; the main chunk is the first one. A blocking native starts a
** libuv operation, links it to the calling task with a tide_wait and yields through
** tide_task_block(). libuv callbacks never run Lua: they call tide_wait_wake(), which queues the
** task; the scheduler resumes queued tasks from an idle handle on the loop. The continuation the
** native passed runs inside the task and first calls tide_task_resumed(), which raises the
** cancellation error when the task was cancelled.
**
** Lifetimes: a task's coroutine is anchored in the registry from spawn until the task has finished
** and its Lua handle is collected. An operation may outlive the task that waited on it: on cancel,
** the scheduler calls wait->cancel, after which the operation must not touch the wait again.
*/
#ifndef TIDE_LUA_TASK_H
#define TIDE_LUA_TASK_H

#include <lua.h>
#include <uv.h>

typedef struct tide_task tide_task;
typedef struct tide_wait tide_wait;
typedef struct tide_sched tide_sched;

struct tide_wait {
  tide_task *task; /* the waiting task; NULL when nobody waits (set and cleared by the scheduler) */
  /*
  ** Called when the waiting task is cancelled. It stops or detaches the operation (kill a
  ** process, stop a timer) and must not call tide_wait_wake for this wait afterwards. The
  ** scheduler wakes the task itself. May be NULL when there is nothing to stop.
  */
  void (*cancel)(tide_wait *wait);
};

/* The task running on L, or NULL on the main thread and in plain coroutines. */
tide_task *tide_task_current(lua_State *L);

/*
** Blocks the calling task on wait until tide_wait_wake(wait) or a cancel, then runs k in the task.
** Raises (never returns) when L is not a task, cannot yield here (a C call on the stack such as
** table.sort or a metamethod), or the task is already cancelled. what names the call in those
** errors ("proc.run"). Use as: return tide_task_block(L, &op->wait, "proc.run", k, ctx);
*/
int tide_task_block(lua_State *L, tide_wait *wait, const char *what, lua_KFunction k,
                    lua_KContext ctx);

/*
** Called first in every continuation passed to tide_task_block. Checks that the scheduler resumed
** the task, unlinks the wait, and raises the ECANCELED error when a cancel cut the wait short.
** An operation that completed before the cancel arrived returns normally (its results and memory
** are handed over); the task's next blocking call raises ECANCELED instead.
*/
void tide_task_resumed(lua_State *L, int status);

/* Wakes the task waiting on wait, if any. Callable from libuv callbacks; runs no Lua. */
void tide_wait_wake(tide_wait *wait);

/* Fails unless L is a task that may block now; for natives that check before acquiring. */
void tide_task_check_blocking(lua_State *L, const char *what);

/*
** Runs work(data) on the libuv thread pool and blocks the calling task until it is done; then k
** runs in the task with ctx, reads the results from data and frees it. work must not touch any
** lua_State. If the task is cancelled while work runs, k raises ECANCELED at tide_task_resumed()
** and must not touch data: once work has finished, abandon(data) runs on the loop thread to free
** it.
*/
int tide_task_work(lua_State *L, const char *what, void (*work)(void *data),
                   void (*abandon)(void *data), void *data, lua_KFunction k, lua_KContext ctx);

/*
** For a continuation of tide_task_work: checks the resume (tide_task_resumed), then puts ctx, the
** work's data, in a box on the stack whose metatable mt has a __gc that frees what the box holds,
** so that an error raised while the results are pushed still frees the data. Returns ctx.
*/
void *tide_task_work_box(lua_State *L, int status, lua_KContext ctx, const char *mt);

/* The span id of the task running on L, or 0. */
uint64_t tide_task_span(lua_State *L);

/* Creates the scheduler for the runtime's loop; registers the "tide" module's task functions. */
tide_sched *tide_sched_new(lua_State *L, uv_loop_t *loop);

/*
** Runs fn (at the top of L's stack, popped) with nargs arguments below it as the first task and
** runs the loop until every task has finished. Returns the exit code: 0, or 1 when the main task
** or any task whose error nobody retrieved failed (the errors are printed to stderr).
*/
int tide_sched_run_main(lua_State *L, int nargs, const char *name);

/* Cancels the main task and every other one (Ctrl-C, SIGTERM). */
void tide_sched_cancel_all(tide_sched *sched);

/*
** Frees every task and closes the scheduler's handle, which frees the scheduler in its close
** callback: run the loop once more afterwards.
*/
void tide_sched_free(tide_sched *sched);

#endif
