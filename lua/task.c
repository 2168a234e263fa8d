/*
** The task scheduler. A task is a Lua coroutine anchored in the registry and described by a
** malloc'd tide_task. Blocking natives yield through tide_task_block(); libuv callbacks only queue
** tasks (tide_wait_wake); an idle handle drains the ready queue and resumes each task from the
** loop, never from inside another resume or a libuv callback.
**
** Structured concurrency: tasks form a tree. A task that fails or is cancelled cancels its
** children. A cancelled task raises ECANCELED from every blocking call, and a count hook keeps
** raising it in CPU-bound code, so pcall cannot swallow a cancellation.
**
** It does not know about processes, files or the store: those are operations with a tide_wait.
*/
#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lerror.h"
#include "runtime.h"

/* Lua 5.4.4 (Debian 12) has lua_resetthread; 5.4.6 renamed it lua_closethread(L, from). */
#if LUA_VERSION_RELEASE_NUM >= 50406
#  define tide_closethread(co, from) lua_closethread((co), (from))
#else
#  define tide_closethread(co, from) lua_resetthread(co)
#endif

#define CANCEL_HOOK_COUNT 10000

typedef enum task_state {
  TASK_NEW,      /* spawned, not resumed yet; the function and arguments sit on co */
  TASK_READY,    /* queued or running */
  TASK_WAITING,  /* blocked on a tide_wait */
  TASK_DONE,     /* returned; the results sit on co */
  TASK_FAILED,   /* raised; the error is in err_ref */
  TASK_CANCELLED /* cancelled before or while running */
} task_state;

typedef struct join_node join_node;

struct tide_task {
  lua_State *co; /* the coroutine; valid while co_ref holds it */
  int co_ref;    /* registry ref anchoring co against the GC */
  int err_ref;   /* registry ref to the error value of a failed task, or LUA_NOREF */
  tide_sched *sched;
  task_state state;
  int nargs;       /* arguments for the first resume */
  int nresults;    /* values a finished task left on co */
  char *name;      /* owned */
  char *traceback; /* owned; set when the task failed */
  tide_span *span; /* open while the task runs; owned by the trace */
  uint64_t span_id;
  tide_wait *wait;     /* what the task blocks on, while TASK_WAITING */
  tide_wait self_wait; /* the wait used for joins and sleeps */
  uv_timer_t *timer;   /* lazily made, for sleeps and wait timeouts; closed when freed */
  int timer_fired;
  join_node *joining;  /* nodes this task put on other tasks' joiner lists */
  join_node *joiners;  /* nodes of tasks waiting for this one */
  tide_task *parent;   /* NULL for the main task or once the parent is freed */
  tide_task *children; /* first child; siblings via next_sibling */
  tide_task *next_sibling, *prev_sibling;
  tide_task *next_ready;
  tide_task *next_all, *prev_all;
  unsigned queued : 1; /* on the ready queue */
  unsigned cancelled : 1;
  unsigned wait_cancelled : 1; /* the wait was cut short: the continuation must not read it */
  unsigned observed : 1;       /* someone retrieved the result or error */
  tide_task **box; /* the pointer inside its Lua handle (tide.Task), or NULL once collected */
  unsigned is_main : 1;
  unsigned reported : 1; /* its unretrieved error was printed */
};

struct join_node {
  tide_task *joiner, *target;
  join_node *next_in_target; /* target->joiners list */
  join_node *next_in_joiner; /* joiner->joining list */
};

struct tide_sched {
  lua_State *L; /* main thread */
  uv_loop_t *loop;
  uv_idle_t idle; /* active while tasks are ready: drains the queue */
  tide_task *ready_head, *ready_tail;
  tide_task *all;  /* every task not yet freed */
  tide_task *main; /* the first task */
  int live;        /* tasks not finished */
  int failed;      /* an error nobody retrieved was reported */
  int main_exit;   /* exit code decided by the main task's outcome */
  int stopping;
};

static char wake_token; /* its address is passed to resumed tasks: only the scheduler has it */
static char task_meta_key;

static void task_finish(tide_task *t, task_state state);
static void task_cancel(tide_task *t);
static void task_maybe_free(tide_task *t);
static void idle_cb(uv_idle_t *idle);

/* ---------------------------------------------------------------------------------------------
** Queue and waits
*/

static void enqueue(tide_task *t)
{
  tide_sched *s = t->sched;
  if (t->queued)
    return;
  t->queued = 1;
  t->next_ready = NULL;
  if (s->ready_tail)
    s->ready_tail->next_ready = t;
  else
    s->ready_head = t;
  s->ready_tail = t;
  if (!uv_is_active((uv_handle_t *)&s->idle))
    uv_idle_start(&s->idle, idle_cb);
}

void tide_wait_wake(tide_wait *wait)
{
  tide_task *t = wait->task;
  if (!t)
    return;
  wait->task = NULL;
  t->state = TASK_READY;
  enqueue(t);
}

tide_task *tide_task_current(lua_State *L)
{
  return *(tide_task **)lua_getextraspace(L);
}

uint64_t tide_task_span(lua_State *L)
{
  tide_task *t = tide_task_current(L);
  return t ? t->span_id : 0;
}

static int raise_cancelled(lua_State *L)
{
  return tide_error_raise(L, "ECANCELED", "task cancelled");
}

void tide_task_check_blocking(lua_State *L, const char *what)
{
  tide_task *t = tide_task_current(L);
  if (!t)
    luaL_error(L, "%s: blocking call outside a task (use tide.spawn, not coroutine.wrap)", what);
  if (t->cancelled)
    raise_cancelled(L);
  if (!lua_isyieldable(L))
    luaL_error(L,
               "%s: cannot block here: a C call is on the stack (table.sort, string.gsub, a "
               "metamethod or a module's top level); move the call out of it",
               what);
}

int tide_task_block(lua_State *L, tide_wait *wait, const char *what, lua_KFunction k,
                    lua_KContext ctx)
{
  tide_task_check_blocking(L, what);
  tide_task *t = tide_task_current(L);
  wait->task = t;
  t->wait = wait;
  t->state = TASK_WAITING;
  return lua_yieldk(L, 0, ctx, k);
}

void tide_task_resumed(lua_State *L, int status)
{
  tide_task *t = tide_task_current(L);
  if (status != LUA_YIELD || !t || lua_gettop(L) < 1 || lua_touserdata(L, -1) != &wake_token)
    luaL_error(L, "task resumed by something other than the scheduler");
  lua_pop(L, 1);
  t->wait = NULL;
  /* Only a wait that the cancel cut short raises here: an operation that completed before the
  ** cancel arrived hands over its results (and their memory), and the next blocking call or the
  ** count hook raises instead. */
  if (t->wait_cancelled) {
    t->wait_cancelled = 0;
    raise_cancelled(L);
  }
}

/* ---------------------------------------------------------------------------------------------
** The task timer, shared by sleeps and wait timeouts (a task waits on one thing at a time)
*/

static void timer_close_cb(uv_handle_t *h)
{
  free(h);
}

static void timer_cb(uv_timer_t *timer)
{
  tide_task *t = timer->data;
  t->timer_fired = 1;
  tide_wait_wake(&t->self_wait);
}

static int timer_start(tide_task *t, double seconds)
{
  if (!t->timer) {
    t->timer = malloc(sizeof *t->timer);
    if (!t->timer)
      return UV_ENOMEM;
    uv_timer_init(t->sched->loop, t->timer);
    t->timer->data = t;
  }
  t->timer_fired = 0;
  uint64_t ms = seconds <= 0 ? 0 : (uint64_t)(seconds * 1000.0 + 0.5);
  return uv_timer_start(t->timer, timer_cb, ms, 0);
}

static void timer_stop(tide_task *t)
{
  if (t->timer)
    uv_timer_stop(t->timer);
}

/* ---------------------------------------------------------------------------------------------
** Joins: a task waiting for any of a set of tasks
*/

static void join_release(tide_task *joiner)
{
  join_node *n = joiner->joining;
  while (n) {
    join_node *next = n->next_in_joiner;
    join_node **pp = &n->target->joiners;
    while (*pp && *pp != n)
      pp = &(*pp)->next_in_target;
    if (*pp)
      *pp = n->next_in_target;
    task_maybe_free(n->target);
    free(n);
    n = next;
  }
  joiner->joining = NULL;
}

static void self_wait_cancel(tide_wait *wait)
{
  tide_task *t = (tide_task *)((char *)wait - offsetof(tide_task, self_wait));
  timer_stop(t);
  join_release(t);
}

/* ---------------------------------------------------------------------------------------------
** Task objects and the Lua handle
*/

static int task_finished(const tide_task *t)
{
  return t->state == TASK_DONE || t->state == TASK_FAILED || t->state == TASK_CANCELLED;
}

static void report_unretrieved(tide_task *t)
{
  if (t->state != TASK_FAILED || t->observed || t->reported)
    return;
  t->reported = 1;
  t->sched->failed = 1;
  fprintf(stderr, "tide: task '%s' failed: %s\n", t->name,
          t->traceback ? t->traceback : "(no message)");
}

static void task_free(tide_task *t)
{
  tide_sched *s = t->sched;
  join_release(t);
  for (tide_task *c = t->children; c; c = c->next_sibling)
    c->parent = NULL;
  if (t->parent) {
    if (t->prev_sibling)
      t->prev_sibling->next_sibling = t->next_sibling;
    else
      t->parent->children = t->next_sibling;
    if (t->next_sibling)
      t->next_sibling->prev_sibling = t->prev_sibling;
  }
  if (t->prev_all)
    t->prev_all->next_all = t->next_all;
  else
    s->all = t->next_all;
  if (t->next_all)
    t->next_all->prev_all = t->prev_all;
  if (t->timer)
    uv_close((uv_handle_t *)t->timer, timer_close_cb);
  luaL_unref(s->L, LUA_REGISTRYINDEX, t->co_ref);
  luaL_unref(s->L, LUA_REGISTRYINDEX, t->err_ref);
  if (s->main == t)
    s->main = NULL;
  free(t->name);
  free(t->traceback);
  free(t);
}

/* Frees a finished task once nothing can observe it: no handle, no joiner. */
static void task_maybe_free(tide_task *t)
{
  if (task_finished(t) && !t->box && !t->joiners && !t->queued && !t->is_main) {
    report_unretrieved(t);
    task_free(t);
  }
}

static tide_task *check_task(lua_State *L, int idx)
{
  tide_task **box = luaL_checkudata(L, idx, "tide.Task");
  if (!*box)
    luaL_error(L, "attempt to use a released task");
  return *box;
}

static void push_handle(lua_State *L, tide_task *t)
{
  /* One handle per task, cached in a weak table keyed by the task pointer. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &task_meta_key);
  if (lua_rawgetp(L, -1, t) == LUA_TUSERDATA) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  tide_task **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = t;
  t->box = box;
  luaL_setmetatable(L, "tide.Task");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, t);
  lua_remove(L, -2);
}

static int task_gc(lua_State *L)
{
  tide_task **box = luaL_checkudata(L, 1, "tide.Task");
  tide_task *t = *box;
  if (t) {
    *box = NULL;
    /* The weak cache drops a handle before its __gc runs, so tide.current() may have made a
    ** newer handle for t meanwhile: only the task's own handle lets go of it. */
    if (t->box == box) {
      t->box = NULL;
      task_maybe_free(t);
    }
  }
  return 0;
}

static char *task_default_name(lua_State *L, int fn_idx)
{
  lua_Debug ar;
  char buf[256];
  lua_pushvalue(L, fn_idx);
  if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
    snprintf(buf, sizeof buf, "%s:%d", ar.short_src, ar.linedefined);
  else
    snprintf(buf, sizeof buf, "task");
  return strdup(buf);
}

/*
** Creates a task running the function at fn_idx with the nargs values above it, under the
** current task (or none). Pops the function and arguments. Returns the task, queued to start.
*/
static tide_task *task_new(lua_State *L, tide_sched *s, int nargs, const char *name, int is_main)
{
  int fn_idx = lua_gettop(L) - nargs;
  tide_task *t = calloc(1, sizeof *t);
  if (!t)
    luaL_error(L, "out of memory");
  t->name = name ? strdup(name) : task_default_name(L, fn_idx);
  if (!t->name) {
    free(t);
    luaL_error(L, "out of memory");
  }
  t->sched = s;
  t->err_ref = LUA_NOREF;
  t->state = TASK_NEW;
  t->nargs = nargs;
  t->self_wait.cancel = self_wait_cancel;
  t->co = lua_newthread(L);
  t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the thread */
  *(tide_task **)lua_getextraspace(t->co) = t;
  lua_xmove(L, t->co, nargs + 1);

  tide_task *parent = tide_task_current(L);
  if (parent) {
    t->cancelled = parent->cancelled;
    t->parent = parent;
    t->next_sibling = parent->children;
    if (parent->children)
      parent->children->prev_sibling = t;
    parent->children = t;
  }
  t->next_all = s->all;
  if (s->all)
    s->all->prev_all = t;
  s->all = t;
  s->live++;

  /* The main task has no span of its own: the run's root span stands for it. */
  t->is_main = is_main;
  if (!is_main) {
    t->span =
        tide_span_begin(tide_runtime_get(L)->trace, tide_runtime_parent_span(L), "task", t->name);
    t->span_id = t->span ? t->span->id : 0;
  }
  enqueue(t);
  return t;
}

/* ---------------------------------------------------------------------------------------------
** Cancellation
*/

static void cancel_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  tide_task *t = tide_task_current(L);
  if (t && t->cancelled)
    raise_cancelled(L);
}

static void task_cancel(tide_task *t)
{
  if (task_finished(t) || t->cancelled)
    return;
  t->cancelled = 1;
  for (tide_task *c = t->children; c; c = c->next_sibling)
    task_cancel(c);
  if (t->state == TASK_NEW) {
    enqueue(t); /* the first resume sees the flag and finishes the task without running it */
    return;
  }
  lua_sethook(t->co, cancel_hook, LUA_MASKCOUNT, CANCEL_HOOK_COUNT);
  if (t->state == TASK_WAITING && t->wait) {
    tide_wait *w = t->wait;
    if (w->task == t) {
      w->task = NULL;
      t->wait_cancelled = 1;
      if (w->cancel)
        w->cancel(w);
    }
    t->state = TASK_READY;
    enqueue(t);
  }
}

/* ---------------------------------------------------------------------------------------------
** Resuming
*/

static void task_fail(tide_task *t, lua_State *L, int status)
{
  /* stack of co: the error value on top. The frames stay until the thread is closed, so the
  ** traceback can still be taken after the value has moved to L. */
  lua_State *co = t->co;
  lua_xmove(co, L, 1);
  int type = lua_type(L, -1);
  if (type == LUA_TSTRING || type == LUA_TNUMBER)
    lua_pushstring(L, lua_tostring(L, -1));
  else if (luaL_getmetafield(L, -1, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    luaL_tolstring(L, -1, NULL);
  } else
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  luaL_traceback(L, co, lua_tostring(L, -1), 0);
  /* A plain string error may quote a secret value: the traceback is printed and kept. */
  size_t len;
  const char *tb = lua_tolstring(L, -1, &len);
  t->traceback = strdup(tide_push_masked(L, tb, len));
  lua_pop(L, 3);
  t->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (status == LUA_ERRMEM) {
    fprintf(stderr, "tide: out of memory in task '%s'\n", t->name);
    exit(70);
  }
  tide_closethread(co, L);
  task_finish(t, t->cancelled ? TASK_CANCELLED : TASK_FAILED);
}

static void task_resume(tide_task *t)
{
  tide_sched *s = t->sched;
  lua_State *L = s->L;
  int nargs, nres;
  if (t->state == TASK_NEW) {
    if (t->cancelled) {
      lua_settop(t->co, 0);
      task_finish(t, TASK_CANCELLED);
      return;
    }
    nargs = t->nargs;
  } else {
    lua_pushlightuserdata(t->co, &wake_token);
    nargs = 1;
  }
  t->state = TASK_READY;
  int status = lua_resume(t->co, L, nargs, &nres);
  if (status == LUA_YIELD) {
    if (t->state == TASK_WAITING)
      return;
    /* A coroutine.yield() at the task's own level: nothing will resume it. */
    lua_pop(t->co, nres);
    lua_pushstring(t->co,
                   "coroutine.yield called in a task outside a coroutine; "
                   "use tide.sleep(0) to let other tasks run");
    task_fail(t, L, LUA_ERRRUN);
  } else if (status == LUA_OK) {
    t->nresults = nres;
    task_finish(t, t->cancelled ? TASK_CANCELLED : TASK_DONE);
  } else {
    task_fail(t, L, status);
  }
}

static void idle_cb(uv_idle_t *idle)
{
  tide_sched *s = idle->data;
  /* Only the tasks queued when the drain starts, so a task that keeps waking itself cannot
  ** starve the loop's I/O. */
  tide_task *last = s->ready_tail;
  while (s->ready_head) {
    tide_task *t = s->ready_head;
    int is_last = t == last;
    s->ready_head = t->next_ready;
    if (!s->ready_head)
      s->ready_tail = NULL;
    t->queued = 0;
    t->next_ready = NULL;
    if (!task_finished(t))
      task_resume(t);
    else
      task_maybe_free(t);
    if (is_last)
      break;
  }
  if (!s->ready_head)
    uv_idle_stop(&s->idle);
}

static void task_finish(tide_task *t, task_state state)
{
  tide_sched *s = t->sched;
  t->state = state;
  s->live--;
  timer_stop(t);
  join_release(t);
  lua_sethook(t->co, NULL, 0, 0);
  if (state != TASK_DONE)
    for (tide_task *c = t->children; c; c = c->next_sibling)
      task_cancel(c);
  if (t->span) {
    tide_span_status st = state == TASK_DONE     ? TIDE_SPAN_OK
                          : state == TASK_FAILED ? TIDE_SPAN_ERROR
                                                 : TIDE_SPAN_CANCELLED;
    tide_span_end(tide_runtime_get(s->L)->trace, t->span, st);
    t->span = NULL;
  }
  for (join_node *n = t->joiners; n; n = n->next_in_target)
    if (n->joiner->wait == &n->joiner->self_wait)
      tide_wait_wake(&n->joiner->self_wait);
  if (t->is_main && state != TASK_DONE) {
    /* The main task's failure ends the run: every other task is cancelled. */
    for (tide_task *o = s->all; o; o = o->next_all)
      if (o != t)
        task_cancel(o);
  }
  task_maybe_free(t);
}

/* ---------------------------------------------------------------------------------------------
** The "tide" module's task functions
*/

static tide_sched *get_sched(lua_State *L)
{
  return tide_runtime_get(L)->sched;
}

/* tide.spawn([name,] fn, ...) -> task */
static int l_spawn(lua_State *L)
{
  const char *name = NULL;
  int first = 1;
  if (lua_type(L, 1) == LUA_TSTRING) {
    name = lua_tostring(L, 1);
    first = 2;
  }
  luaL_checktype(L, first, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - first;
  tide_task *t = task_new(L, get_sched(L), nargs, name, 0);
  lua_settop(L, 0);
  push_handle(L, t);
  return 1;
}

/* Pushes the results of a finished task, or raises its error. Marks it observed. */
static int push_outcome(lua_State *L, tide_task *t)
{
  t->observed = 1;
  if (t->state == TASK_DONE) {
    luaL_checkstack(L, t->nresults, "too many results");
    for (int i = 1; i <= t->nresults; i++)
      lua_pushvalue(t->co, i);
    lua_xmove(t->co, L, t->nresults);
    return t->nresults;
  }
  if (t->state == TASK_CANCELLED)
    return raise_cancelled(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->err_ref);
  return lua_error(L);
}

/*
** Waits until one of the tasks in the list at index 1 has finished, or timeout seconds pass.
** Returns the index of a finished task, or nil, "timeout", "ETIMEDOUT".
*/
static int wait_any_k(lua_State *L, int status, lua_KContext ctx);

static int wait_any_ready(lua_State *L)
{
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    tide_task *t = check_task(L, -1);
    lua_pop(L, 1);
    if (task_finished(t)) {
      lua_pushinteger(L, i);
      return 1;
    }
  }
  return 0;
}

static int l_wait_any(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  double timeout = luaL_optnumber(L, 2, -1);
  lua_settop(L, 2);
  if (wait_any_ready(L))
    return 1;
  tide_task_check_blocking(L, "tide.wait_any");
  tide_task *me = tide_task_current(L);
  lua_Integer n = luaL_len(L, 1);
  if (n == 0)
    return luaL_argerror(L, 1, "empty list of tasks");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    tide_task *t = check_task(L, -1);
    lua_pop(L, 1);
    if (t == me) {
      join_release(me);
      return luaL_error(L, "a task cannot wait for itself");
    }
    join_node *node = malloc(sizeof *node);
    if (!node) {
      join_release(me);
      return luaL_error(L, "out of memory");
    }
    node->joiner = me;
    node->target = t;
    node->next_in_target = t->joiners;
    t->joiners = node;
    node->next_in_joiner = me->joining;
    me->joining = node;
  }
  if (timeout >= 0 && timer_start(me, timeout) != 0) {
    join_release(me);
    return luaL_error(L, "out of memory");
  }
  return tide_task_block(L, &me->self_wait, "tide.wait_any", wait_any_k, 0);
}

static int wait_any_k(lua_State *L, int status, lua_KContext ctx)
{
  (void)ctx;
  tide_task *me = tide_task_current(L);
  timer_stop(me);
  join_release(me);
  tide_task_resumed(L, status);
  if (wait_any_ready(L))
    return 1;
  if (me->timer_fired)
    return tide_fail(L, TIDE_ETIMEDOUT, "timeout");
  return luaL_error(L, "tide.wait_any: woken with no finished task");
}

/* task:wait([timeout]) -> the task's results; raises its error; nil, "timeout" on timeout */
static int task_wait_k(lua_State *L, int status, lua_KContext ctx);

static int m_wait(lua_State *L)
{
  tide_task *t = check_task(L, 1);
  if (task_finished(t))
    return push_outcome(L, t);
  lua_settop(L, 2);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_replace(L, 1); /* stack: {task}, timeout; the handle stays alive in the list */
  lua_pushcfunction(L, l_wait_any);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_callk(L, 2, 3, 0, task_wait_k);
  return task_wait_k(L, LUA_OK, 0);
}

static int task_wait_k(lua_State *L, int status, lua_KContext ctx)
{
  (void)status;
  (void)ctx;
  if (lua_isnil(L, -3))
    return 3; /* nil, "timeout", "ETIMEDOUT" */
  lua_rawgeti(L, 1, 1);
  return push_outcome(L, check_task(L, -1));
}

static int m_cancel(lua_State *L)
{
  tide_task *t = check_task(L, 1);
  tide_task *me = tide_task_current(L);
  task_cancel(t);
  if (t == me)
    return raise_cancelled(L);
  return 0;
}

static int m_status(lua_State *L)
{
  static const char *const names[] = {"new", "ready", "waiting", "done", "failed", "cancelled"};
  tide_task *t = check_task(L, 1);
  lua_pushstring(L, names[t->state]);
  return 1;
}

static int m_name(lua_State *L)
{
  lua_pushstring(L, check_task(L, 1)->name);
  return 1;
}

static int m_error(lua_State *L)
{
  tide_task *t = check_task(L, 1);
  if (t->state != TASK_FAILED)
    return 0;
  t->observed = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->err_ref);
  lua_pushstring(L, t->traceback ? t->traceback : "");
  return 2;
}

static int m_tostring(lua_State *L)
{
  tide_task *t = check_task(L, 1);
  lua_pushfstring(L, "tide.Task (%s)", t->name);
  return 1;
}

/* tide.current() -> the running task, or nil on the main thread */
static int l_current(lua_State *L)
{
  tide_task *t = tide_task_current(L);
  if (!t)
    return 0;
  push_handle(L, t);
  return 1;
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx)
{
  (void)ctx;
  tide_task_resumed(L, status);
  return 0;
}

/* tide.sleep(seconds): blocks the calling task; 0 lets every other ready task run first */
static int l_sleep(lua_State *L)
{
  double seconds = luaL_checknumber(L, 1);
  luaL_argcheck(L, seconds >= 0, 1, "negative duration");
  tide_task_check_blocking(L, "tide.sleep");
  tide_task *me = tide_task_current(L);
  if (timer_start(me, seconds) != 0)
    return luaL_error(L, "out of memory");
  return tide_task_block(L, &me->self_wait, "tide.sleep", sleep_k, 0);
}

/* ---------------------------------------------------------------------------------------------
** Thread-pool work
*/

typedef struct pool_work {
  uv_work_t req;
  tide_wait wait;
  void (*work)(void *data);
  void (*abandon)(void *data);
  void *data;
  int detached; /* the task was cancelled: free data with abandon when the work is done */
} pool_work;

static void pool_work_cb(uv_work_t *req)
{
  pool_work *w = req->data;
  w->work(w->data);
}

static void pool_after_cb(uv_work_t *req, int status)
{
  (void)status;
  pool_work *w = req->data;
  if (w->detached) {
    if (w->abandon)
      w->abandon(w->data);
    free(w);
    return;
  }
  tide_wait_wake(&w->wait);
  /* The continuation reads data; w itself is done. */
  free(w);
}

static void pool_cancel(tide_wait *wait)
{
  pool_work *w = (pool_work *)((char *)wait - offsetof(pool_work, wait));
  w->detached = 1;
}

void *tide_task_work_box(lua_State *L, int status, lua_KContext ctx, const char *mt)
{
  tide_task_resumed(L, status);
  void **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = (void *)ctx;
  luaL_setmetatable(L, mt);
  return (void *)ctx;
}

int tide_task_work(lua_State *L, const char *what, void (*work)(void *data),
                   void (*abandon)(void *data), void *data, lua_KFunction k, lua_KContext ctx)
{
  tide_task_check_blocking(L, what);
  pool_work *w = calloc(1, sizeof *w);
  if (!w)
    return luaL_error(L, "out of memory");
  w->req.data = w;
  w->work = work;
  w->abandon = abandon;
  w->data = data;
  w->wait.cancel = pool_cancel;
  int rc = uv_queue_work(get_sched(L)->loop, &w->req, pool_work_cb, pool_after_cb);
  if (rc != 0) {
    free(w);
    return luaL_error(L, "%s: cannot queue work: %s", what, uv_strerror(rc));
  }
  return tide_task_block(L, &w->wait, what, k, ctx);
}

/* ---------------------------------------------------------------------------------------------
** Scheduler lifecycle
*/

static const luaL_Reg task_methods[] = {
    {"cancel", m_cancel}, {"error", m_error}, {"name", m_name},
    {"status", m_status}, {"wait", m_wait},   {NULL, NULL},
};

static const luaL_Reg task_functions[] = {
    {"current", l_current},   {"sleep", l_sleep}, {"spawn", l_spawn},
    {"wait_any", l_wait_any}, {NULL, NULL},
};

tide_sched *tide_sched_new(lua_State *L, uv_loop_t *loop)
{
  tide_sched *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->L = L;
  s->loop = loop;
  /* New threads copy the main thread's extra space: NULL there means "not a task". */
  *(tide_task **)lua_getextraspace(L) = NULL;
  uv_idle_init(loop, &s->idle);
  s->idle.data = s;

  luaL_newmetatable(L, "tide.Task");
  luaL_newlib(L, task_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, task_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_newtable(L); /* task pointer -> handle, weak values */
  lua_createtable(L, 0, 1);
  lua_pushstring(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &task_meta_key);
  return s;
}

/* Registers the task functions into the table on top of the stack. */
void tide__sched_register(lua_State *L);
void tide__sched_register(lua_State *L)
{
  luaL_setfuncs(L, task_functions, 0);
}

static int exit_code_for(lua_State *L, tide_task *t)
{
  if (t->state == TASK_DONE)
    return t->nresults > 0 && lua_isinteger(t->co, 1) ? (int)lua_tointeger(t->co, 1) : 0;
  if (t->state == TASK_CANCELLED)
    return 130;
  int code = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->err_ref);
  if (lua_istable(L, -1)) {
    if (lua_getfield(L, -1, "exit") == LUA_TNUMBER)
      code = (int)lua_tointeger(L, -1);
    else if (tide_error_code(L, -2)) {
      const char *c = lua_tostring(L, -1);
      if (strcmp(c, "EUSAGE") == 0 || strcmp(c, "EINPUT") == 0)
        code = 2;
      else if (strcmp(c, "ETIMEDOUT") == 0)
        code = 124;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return code;
}

static void print_main_error(lua_State *L, tide_task *t, int code)
{
  if (t->state != TASK_FAILED)
    return;
  /* Bad usage and bad input get their one line; anything else its traceback. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->err_ref);
  size_t len;
  const char *raw = luaL_tolstring(L, -1, &len);
  const char *msg = tide_push_masked(L, raw, len);
  if (code == 2 || code == 124)
    fprintf(stderr, "tide: %s\n", msg);
  else
    fprintf(stderr, "tide: %s\n", t->traceback ? t->traceback : msg);
  lua_pop(L, 3);
}

int tide_sched_run_main(lua_State *L, int nargs, const char *name)
{
  tide_sched *s = get_sched(L);
  /* stack: args..., fn -> fn, args... as task_new expects */
  lua_insert(L, -(nargs + 1));
  tide_task *t = task_new(L, s, nargs, name, 1);
  s->main = t;
  uv_run(s->loop, UV_RUN_DEFAULT);
  /* The loop ends when no handle is active; tasks still alive then wait on nothing that can
  ** ever wake them (a bug in a native); report rather than hang. */
  if (s->live > 0)
    fprintf(stderr, "tide: %d task(s) still blocked when the loop ran out of work\n", s->live);
  int code = task_finished(t) ? exit_code_for(L, t) : 1;
  print_main_error(L, t, code);
  if (task_finished(t)) {
    t->observed = 1;
    t->is_main = 0;
    task_maybe_free(t);
  }
  for (tide_task *o = s->all; o; o = o->next_all)
    report_unretrieved(o);
  if (code == 0 && s->failed)
    code = 1;
  return code;
}

void tide_sched_cancel_all(tide_sched *s)
{
  if (s->main)
    task_cancel(s->main);
  for (tide_task *t = s->all; t; t = t->next_all)
    task_cancel(t);
}

static void sched_close_cb(uv_handle_t *h)
{
  free(h->data);
}

void tide_sched_free(tide_sched *s)
{
  if (!s)
    return;
  for (tide_task *t = s->all; t; t = t->next_all) {
    /* Handles collected later (at lua_close) must not reach the freed task. */
    if (t->box)
      *t->box = NULL;
    t->box = NULL;
    t->is_main = 0;
  }
  while (s->all) {
    tide_task *t = s->all;
    t->observed = 1;
    t->joiners = NULL;
    task_free(t);
  }
  uv_close((uv_handle_t *)&s->idle, sched_close_cb);
}
