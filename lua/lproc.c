/*
** "tide._proc": processes for Lua. spawn(opts) validates the whole option table, then opens a
** "proc" span, picks the run's log file and starts a host process (host/proc.c); it never blocks.
** Process:wait() is the only blocking call: it yields the calling task until the result is
** complete, or, when spawned with lines = true, until output lines are queued, which it returns
** in batches ("lines", streams, texts) so that stdlib/tide/proc.lua can call the user's function
** inside the task. Lua never runs in a libuv callback: the host's event callback only ends the
** span and wakes the waiting task.
**
** Lifetimes: the Process userdata holds a pointer to a malloc'd lproc, which owns the host
** process. The lproc lives until the process is done AND the userdata is closed or collected; a
** cancelled or dropped process is terminated (TERM, grace, KILL) and still reaped meanwhile.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <sodium.h>
#include <uv.h>

#include "tide/proc.h"
#include "tide/store.h"
#include "tide/trace.h"

#include "lerror.h"
#include "lsandbox.h"
#include "lsecret.h"
#include "modules.h"
#include "runtime.h"
#include "task.h"

#define PROCESS_META "tide.Process"
#define SPAN_NAME_MAX 80

typedef struct lproc {
  tide_proc *proc; /* owned; released in lproc_free */
  tide_wait wait;  /* the task blocked in wait(), if any (one at a time) */
  uv_loop_t *loop;
  uv_timer_t *timer; /* for wait(timeout); lazily made, freed in its close callback */
  int timer_fired;
  tide_trace *trace; /* borrowed from the runtime, which outlives every process */
  tide_span *span;   /* open until done; owned by the trace */
  char *attrs;       /* JSON members fixed at spawn ("argv":[..],"cwd":".."); owned */
  char *log_path;    /* owned, or NULL when the run is not recorded */
  int lines;         /* spawned with lines = true */
  int done;          /* the host reported TIDE_PROC_EV_DONE */
  int gone;          /* the Lua handle was closed or collected */
} lproc;

/* ---------------------------------------------------------------------------------------------
** JSON for span attributes (built in C: the span ends in a libuv callback)
*/

typedef struct jbuf {
  char *b;
  size_t len, size;
  int oom;
} jbuf;

static void jput(jbuf *j, const char *s, size_t n)
{
  if (j->oom)
    return;
  if (j->len + n + 1 > j->size) {
    size_t size = j->size ? j->size * 2 : 256;
    while (size < j->len + n + 1)
      size *= 2;
    char *b = realloc(j->b, size);
    if (!b) {
      j->oom = 1;
      return;
    }
    j->b = b;
    j->size = size;
  }
  memcpy(j->b + j->len, s, n);
  j->len += n;
  j->b[j->len] = '\0';
}

static void jputs(jbuf *j, const char *s)
{
  jput(j, s, strlen(s));
}

static void jstr(jbuf *j, const char *s)
{
  jputs(j, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      jput(j, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      jputs(j, esc);
    } else {
      jput(j, (const char *)&c, 1);
    }
  }
  jputs(j, "\"");
}

/* Sets the span's attributes: the fixed members plus what is known now. */
static void span_attrs(lproc *lp)
{
  if (!lp->span)
    return;
  const tide_proc_result *r = lp->proc ? tide_proc_result_get(lp->proc) : NULL;
  jbuf j = {0};
  char num[64];
  jputs(&j, "{");
  jputs(&j, lp->attrs ? lp->attrs : "");
  if (r) {
    snprintf(num, sizeof num, ",\"pid\":%d", (int)r->pid);
    jputs(&j, num);
  }
  if (lp->log_path && (!r || !r->done || r->log_opened)) {
    jputs(&j, ",\"log\":");
    jstr(&j, lp->log_path);
  }
  if (r && r->done) {
    const char *sig = r->signal ? tide_proc_signame(r->signal) : NULL;
    snprintf(num, sizeof num, ",\"code\":%d,\"signal\":", r->code);
    jputs(&j, num);
    if (sig)
      jstr(&j, sig);
    else
      jputs(&j, "null");
    jputs(&j, r->timed_out ? ",\"timed_out\":true" : ",\"timed_out\":false");
  }
  if (r && r->sandboxed) {
    char names[64];
    tide_sandbox_names(r->sandbox_missing, names, sizeof names);
    jputs(&j, ",\"sandbox\":{\"missing\":[");
    for (char *n = names, *comma; *n; n = comma ? comma + 1 : n + strlen(n)) {
      comma = strchr(n, ',');
      if (comma)
        *comma = '\0';
      jputs(&j, n == names ? "" : ",");
      jstr(&j, n);
    }
    jputs(&j, "]}");
  }
  jputs(&j, "}");
  if (!j.oom)
    tide_span_set_attrs(lp->span, j.b);
  free(j.b);
}

/* ---------------------------------------------------------------------------------------------
** The lproc record
*/

static void timer_close_cb(uv_handle_t *h)
{
  free(h);
}

/* The wait timer is open only while a task waits, so no handle outlives the loop's last run. */
static void timer_close(lproc *lp)
{
  if (lp->timer) {
    uv_close((uv_handle_t *)lp->timer, timer_close_cb);
    lp->timer = NULL;
  }
}

static void lproc_free(lproc *lp)
{
  tide_proc_release(lp->proc);
  timer_close(lp);
  free(lp->attrs);
  free(lp->log_path);
  free(lp);
}

static void end_span(lproc *lp)
{
  if (!lp->span)
    return;
  const tide_proc_result *r = tide_proc_result_get(lp->proc);
  tide_span_status st = r->timed_out   ? TIDE_SPAN_TIMEOUT
                        : r->cancelled ? TIDE_SPAN_CANCELLED
                        : r->code == 0 ? TIDE_SPAN_OK
                                       : TIDE_SPAN_ERROR;
  span_attrs(lp);
  tide_span_end(lp->trace, lp->span, st);
  lp->span = NULL;
}

/* The host's event callback: runs from libuv callbacks, never runs Lua. */
static void on_event(tide_proc *p, int events, void *ud)
{
  (void)p;
  lproc *lp = ud;
  if (events & TIDE_PROC_EV_DONE) {
    lp->done = 1;
    end_span(lp);
  }
  tide_wait_wake(&lp->wait);
  if (lp->done && lp->gone)
    lproc_free(lp);
}

static void wait_timer_cb(uv_timer_t *timer)
{
  lproc *lp = timer->data;
  lp->timer_fired = 1;
  tide_wait_wake(&lp->wait);
}

/* The waiting task was cancelled: the process goes too (TERM, grace, KILL) and is reaped. */
static void wait_cancel(tide_wait *wait)
{
  lproc *lp = (lproc *)((char *)wait - offsetof(lproc, wait));
  timer_close(lp);
  if (!lp->done) {
    tide_proc_terminate(lp->proc, 0);
    /* The line handlers ran in the cancelled task: nobody will take lines any more. */
    tide_proc_stop_lines(lp->proc);
  }
}

/* ---------------------------------------------------------------------------------------------
** Options: validated in full before anything is acquired
*/

typedef struct spawn_args {
  const char **argv; /* in a GC-owned box on the stack; strings borrowed from the options */
  int argc;
  const char *cwd;
  const char *name;
  tide_proc_env env_mode;
  const char **env; /* in a GC-owned box, strings too */
  tide_proc_stdin stdin_mode;
  const char *stdin_data;
  size_t stdin_len;
  const char *stdin_path;
  size_t max_output;
  double timeout, grace, stdout_batch;
  int lines;
  int log;
  int sandboxed;
  int exec_later;
  tide_sandbox_policy sandbox; /* path lists in GC-owned boxes on the stack */
} spawn_args;

static const char *const known_keys[] = {
    "cwd",        "env",  "env_mode", "exec_later", "grace",        "lines",   "log",
    "max_output", "name", "sandbox",  "stdin",      "stdout_batch", "timeout", NULL,
};

static int opt_error(lua_State *L, const char *fmt, const char *a, const char *b)
{
  return luaL_error(L, fmt, a, b);
}

static const char *opt_string(lua_State *L, const char *key)
{
  /* stack: the value */
  if (lua_type(L, -1) != LUA_TSTRING)
    opt_error(L, "spawn: option '%s' must be a string, got %s", key, luaL_typename(L, -1));
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (strlen(s) != len)
    opt_error(L, "spawn: option '%s' %s", key, "contains a NUL byte");
  return s;
}

static double opt_number(lua_State *L, const char *key, double min, int strict)
{
  if (lua_type(L, -1) != LUA_TNUMBER)
    opt_error(L, "spawn: option '%s' must be a number, got %s", key, luaL_typename(L, -1));
  double v = lua_tonumber(L, -1);
  if (v != v || v < min || (strict && v == min) || v > 1e9)
    opt_error(L, "spawn: option '%s' is out of range%s", key, strict ? " (must be > 0)" : "");
  return v;
}

/* Builds env entries "NAME=value" (or "NAME" to remove) in one GC-owned block. */
/* Wipes an environment block that held a secret value before Lua frees it. */
static int env_block_gc(lua_State *L)
{
  size_t *block = lua_touserdata(L, 1);
  sodium_memzero(block + 1, block[0]);
  return 0;
}

static void parse_env(lua_State *L, int tidx, spawn_args *a)
{
  size_t count = 0, bytes = 0;
  lua_pushnil(L);
  while (lua_next(L, tidx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "spawn: env keys must be strings, got %s", luaL_typename(L, -2));
    size_t klen, vlen = 0;
    const char *k = lua_tolstring(L, -2, &klen);
    if (klen == 0 || strchr(k, '=') || strlen(k) != klen)
      luaL_error(L, "spawn: bad environment variable name '%s'", k);
    int t = lua_type(L, -1);
    const unsigned char *sv = tide_lsecret_bytes(L, -1, &vlen);
    if (sv) {
      if (memchr(sv, '\0', vlen))
        luaL_error(L, "spawn: env value of '%s' contains a NUL byte", k);
    } else if (t == LUA_TSTRING) {
      const char *v = lua_tolstring(L, -1, &vlen);
      if (strlen(v) != vlen)
        luaL_error(L, "spawn: env value of '%s' contains a NUL byte", k);
    } else if (t == LUA_TNUMBER) {
      char tmp[64];
      vlen = (size_t)snprintf(tmp, sizeof tmp, LUA_NUMBER_FMT, lua_tonumber(L, -1));
      if (lua_isinteger(L, -1))
        vlen = (size_t)snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, lua_tointeger(L, -1));
    } else if (!(t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
      luaL_error(L,
                 "spawn: env value of '%s' must be a string, a secret, a number or false, got %s",
                 k, luaL_typename(L, -1));
    }
    count++;
    bytes += klen + 1 + vlen + 1;
    lua_pop(L, 1);
  }
  /* [size_t size][pointers][strings]: the size lets __gc wipe what a secret left there. */
  size_t size = (count + 1) * sizeof(char *) + bytes;
  size_t *block = lua_newuserdatauv(L, sizeof(size_t) + size, 0);
  block[0] = size;
  if (luaL_newmetatable(L, "tide.EnvBlock")) {
    lua_pushcfunction(L, env_block_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  char **ptrs = (char **)(block + 1);
  char *out = (char *)(ptrs + count + 1);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, tidx)) {
    const char *k = lua_tostring(L, -2);
    ptrs[i++] = out;
    int t = lua_type(L, -1);
    size_t vlen;
    const unsigned char *sv = tide_lsecret_bytes(L, -1, &vlen);
    if (sv) {
      out += sprintf(out, "%s=", k);
      memcpy(out, sv, vlen); /* copied in C: the value never becomes a Lua string */
      out += vlen;
      *out++ = '\0';
    } else if (t == LUA_TSTRING)
      out += sprintf(out, "%s=%s", k, lua_tostring(L, -1)) + 1;
    else if (t == LUA_TNUMBER && lua_isinteger(L, -1))
      out += sprintf(out, "%s=" LUA_INTEGER_FMT, k, lua_tointeger(L, -1)) + 1;
    else if (t == LUA_TNUMBER)
      out += sprintf(out, "%s=" LUA_NUMBER_FMT, k, lua_tonumber(L, -1)) + 1;
    else
      out += sprintf(out, "%s", k) + 1; /* false: remove */
    lua_pop(L, 1);
  }
  ptrs[i] = NULL;
  a->env = (const char **)ptrs;
  /* stack: the block stays as an anchor */
}

/* An integer key of an option table (stack: key, value) must index argv[1..n], a string. */
static void check_argv_item(lua_State *L, const char *fn, lua_Integer n)
{
  lua_Integer i = lua_tointeger(L, -2);
  if (i < 1 || i > n)
    luaL_error(L, "%s: unexpected key %d (argv must be a sequence)", fn, (int)i);
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "%s: argv[%d] must be a string, got %s", fn, (int)i, luaL_typename(L, -1));
}

/* The environment of the table at t (env_mode: its string, or NULL) into a; leaves the env table
** and the block on the stack. Returns the env table's index, or 0 when there is none. */
static int take_env(lua_State *L, int t, const char *env_mode, spawn_args *a)
{
  int env_idx = 0;
  if (lua_getfield(L, t, "env") == LUA_TTABLE)
    env_idx = lua_gettop(L);
  if (env_mode) {
    if (strcmp(env_mode, "add") == 0)
      a->env_mode = TIDE_PROC_ENV_ADD;
    else if (strcmp(env_mode, "replace") == 0)
      a->env_mode = TIDE_PROC_ENV_REPLACE;
    else
      luaL_error(L, "spawn: option 'env_mode' must be 'add' or 'replace', got '%s'", env_mode);
    if (!env_idx)
      luaL_error(L, "spawn: option 'env_mode' needs 'env'");
  } else if (env_idx) {
    a->env_mode = TIDE_PROC_ENV_ADD;
  }
  if (env_idx)
    parse_env(L, env_idx, a);
  return env_idx;
}

/* argv from the n-element array part of the table at t (strings checked by the caller), in a
** GC-owned box left on the stack; the strings are anchored by that table. */
static void take_argv(lua_State *L, int t, lua_Integer n, spawn_args *a)
{
  a->argc = (int)n;
  a->argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof(char *), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
      luaL_error(L, "spawn: argv[%d] contains a NUL byte", (int)i);
    a->argv[i - 1] = s;
    lua_pop(L, 1);
  }
  a->argv[n] = NULL;
  if (n > 0 && a->argv[0][0] == '\0')
    luaL_error(L, "spawn: argv[1] is empty");
}

/* Parses the option table at index 1. Leaves GC-owned blocks on the stack. */
static void parse_opts(lua_State *L, spawn_args *a)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(a, 0, sizeof *a);
  a->max_output = 1024 * 1024;
  a->grace = 5;
  a->log = 1;
  a->env_mode = TIDE_PROC_ENV_INHERIT;
  const char *env_mode = NULL;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  lua_getfield(L, 1, "exec_later");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "spawn: option 'exec_later' must be a boolean, got %s", luaL_typename(L, -1));
  a->exec_later = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (a->exec_later && n > 0)
    luaL_error(L, "spawn: with 'exec_later' the command comes with p:exec, not here");
  if (n < 1 && !a->exec_later)
    luaL_error(L, "spawn: no command (the option table's array part is empty)");

  lua_pushnil(L);
  while (lua_next(L, 1)) {
    /* stack: key, value */
    if (lua_isinteger(L, -2)) {
      check_argv_item(L, "spawn", n);
      lua_pop(L, 1);
      continue;
    }
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "spawn: unexpected key of type %s", luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    int known = 0;
    for (int k = 0; known_keys[k] && !known; k++)
      known = strcmp(known_keys[k], key) == 0;
    if (!known)
      luaL_error(L, "spawn: unexpected key '%s'", key);
    if (strcmp(key, "cwd") == 0) {
      a->cwd = opt_string(L, key);
    } else if (strcmp(key, "name") == 0) {
      a->name = opt_string(L, key);
    } else if (strcmp(key, "env_mode") == 0) {
      env_mode = opt_string(L, key);
    } else if (strcmp(key, "env") == 0) {
      if (!lua_istable(L, -1))
        luaL_error(L, "spawn: option 'env' must be a table, got %s", luaL_typename(L, -1));
    } else if (strcmp(key, "stdin") == 0) {
      int t = lua_type(L, -1);
      if (t == LUA_TSTRING) {
        a->stdin_mode = TIDE_PROC_STDIN_DATA;
        a->stdin_data = lua_tolstring(L, -1, &a->stdin_len);
      } else if (t == LUA_TBOOLEAN) {
        a->stdin_mode = lua_toboolean(L, -1) ? TIDE_PROC_STDIN_PIPE : TIDE_PROC_STDIN_NULL;
      } else if (t == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "file") != 0)
            luaL_error(L, "spawn: unexpected key '%s' in option 'stdin'",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
          a->stdin_path = opt_string(L, "stdin.file");
          lua_pop(L, 1);
        }
        if (!a->stdin_path)
          luaL_error(L, "spawn: option 'stdin' as a table needs 'file'");
        a->stdin_mode = TIDE_PROC_STDIN_FILE;
      } else {
        luaL_error(L, "spawn: option 'stdin' must be a string, a boolean or {file = path}, got %s",
                   luaL_typename(L, -1));
      }
    } else if (strcmp(key, "max_output") == 0) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        luaL_error(L, "spawn: option 'max_output' must be a non-negative integer");
      a->max_output = (size_t)lua_tointeger(L, -1);
    } else if (strcmp(key, "timeout") == 0) {
      a->timeout = opt_number(L, key, 0, 1);
    } else if (strcmp(key, "grace") == 0) {
      a->grace = opt_number(L, key, 0, 0);
    } else if (strcmp(key, "stdout_batch") == 0) {
      a->stdout_batch = opt_number(L, key, 0, 0);
      if (a->stdout_batch > 1)
        luaL_error(L, "spawn: option 'stdout_batch' must be at most 1 (second), got %f",
                   a->stdout_batch);
    } else if (strcmp(key, "exec_later") == 0) {
      /* read above */
    } else if (strcmp(key, "lines") == 0 || strcmp(key, "log") == 0) {
      if (!lua_isboolean(L, -1))
        luaL_error(L, "spawn: option '%s' must be a boolean, got %s", key, luaL_typename(L, -1));
      if (strcmp(key, "lines") == 0)
        a->lines = lua_toboolean(L, -1);
      else
        a->log = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }

  int env_idx = take_env(L, 1, env_mode, a);
  if (lua_getfield(L, 1, "sandbox") != LUA_TNIL)
    a->sandboxed = tide_lsandbox_parse(L, -1, a->cwd, &a->sandbox);
  if (a->exec_later && !a->sandboxed)
    luaL_error(L, "spawn: option 'exec_later' needs 'sandbox'");
  if (a->exec_later && env_idx)
    luaL_error(L, "spawn: with 'exec_later' the environment comes with p:exec, not here");

  take_argv(L, 1, n, a);
}

/* "argv":[...] */
static void jargv(jbuf *j, int argc, const char *const *argv)
{
  jputs(j, "\"argv\":[");
  for (int i = 0; i < argc; i++) {
    if (i)
      jputs(j, ",");
    jstr(j, argv[i]);
  }
  jputs(j, "]");
}

/* "argv":[...],"cwd":"..." for the span; NULL when out of memory. */
static char *fixed_attrs(const spawn_args *a)
{
  jbuf j = {0};
  jargv(&j, a->argc, a->argv);
  jputs(&j, ",\"cwd\":");
  char cwd[4096];
  if (a->cwd)
    jstr(&j, a->cwd);
  else if (getcwd(cwd, sizeof cwd))
    jstr(&j, cwd);
  else
    jputs(&j, "null");
  if (j.oom) {
    free(j.b);
    return NULL;
  }
  return j.b;
}

static void span_name(const spawn_args *a, char *buf, size_t size)
{
  if (a->name) {
    snprintf(buf, size, "%s", a->name);
  } else {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->argc && len < size; i++)
      len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? " " : "", a->argv[i]);
  }
  if (strlen(buf) > SPAN_NAME_MAX)
    strcpy(buf + SPAN_NAME_MAX - 3, "...");
}

/* ---------------------------------------------------------------------------------------------
** spawn
*/

/* spawn(opts) -> Process | nil, message, code */
static int l_spawn(lua_State *L)
{
  spawn_args a;
  parse_opts(L, &a);

  lproc **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, PROCESS_META);
  int box_idx = lua_gettop(L);

  /* Acquire: no Lua error from here on until the box owns lp. */
  tide_runtime *rt = tide_runtime_get(L);
  lproc *lp = calloc(1, sizeof *lp);
  char *attrs = fixed_attrs(&a);
  if (!lp || !attrs) {
    free(lp);
    free(attrs);
    return luaL_error(L, "spawn: out of memory");
  }
  lp->attrs = attrs;
  lp->loop = rt->loop;
  lp->trace = rt->trace;
  lp->lines = a.lines;
  lp->wait.cancel = wait_cancel;
  char name[SPAN_NAME_MAX + 64];
  span_name(&a, name, sizeof name);
  lp->span =
      rt->trace ? tide_span_begin(rt->trace, tide_runtime_parent_span(L), "proc", name) : NULL;

  tide_err err;
  tide_err_clear(&err);
  int rc = 0;
  if (a.log && lp->span && rt->store && rt->run_id) {
    char path[4096];
    rc = tide_store_log_path(rt->store, rt->run_id, lp->span->id, path, sizeof path, &err);
    if (rc == 0 && !(lp->log_path = strdup(path)))
      rc = tide_err_set(&err, UV_ENOMEM, "spawn: out of memory");
  }
  if (rc == 0) {
    tide_proc_opts o;
    tide_proc_opts_init(&o);
    o.argv = a.argv;
    o.cwd = a.cwd;
    o.env_mode = a.env_mode;
    o.env = a.env;
    o.stdin_mode = a.stdin_mode;
    o.stdin_data = a.stdin_data;
    o.stdin_len = a.stdin_len;
    o.stdin_path = a.stdin_path;
    o.max_output = a.max_output;
    o.log_path = lp->log_path;
    o.split_lines = a.lines;
    o.timeout_ms = (uint64_t)(a.timeout * 1000.0 + 0.5);
    o.grace_ms = (uint64_t)(a.grace * 1000.0 + 0.5);
    /* A positive interval below a millisecond is one: libuv's timers count milliseconds. */
    o.stdout_batch_ms = a.stdout_batch > 0 ? (uint64_t)(a.stdout_batch * 1000.0 + 0.999) : 0;
    o.mask = tide_runtime_mask(rt);
    o.on_event = on_event;
    o.ud = lp;
    if (a.sandboxed && rt->store)
      a.sandbox.protect = tide_store_home(rt->store);
    o.sandbox = a.sandboxed ? &a.sandbox : NULL;
    o.exec_later = a.exec_later;
    rc = tide_proc_spawn(rt->loop, &o, &lp->proc, &err);
  }
  if (rc != 0) {
    if (lp->span) {
      jbuf j = {0};
      jputs(&j, "{");
      jputs(&j, lp->attrs);
      jputs(&j, ",\"error\":");
      jstr(&j, err.msg);
      jputs(&j, "}");
      if (!j.oom)
        tide_span_set_attrs(lp->span, j.b);
      free(j.b);
      tide_span_end(lp->trace, lp->span, TIDE_SPAN_ERROR);
    }
    free(lp->attrs);
    free(lp->log_path);
    free(lp);
    return tide_fail_err(L, &err);
  }
  span_attrs(lp);
  *box = lp;
  lua_settop(L, box_idx);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
** Process methods
*/

static lproc *check_open(lua_State *L, int idx)
{
  lproc **box = luaL_checkudata(L, idx, PROCESS_META);
  if (!*box)
    luaL_error(L, "attempt to use a closed process");
  return *box;
}

static int push_bytes_field(lua_State *L, const char *name, uint64_t v)
{
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
  return 0;
}

/* Pushes the result table of a done process. */
static void push_result(lua_State *L, lproc *lp)
{
  const tide_proc_result *r = tide_proc_result_get(lp->proc);
  static const char *const names[3] = {NULL, "stdout", "stderr"};
  lua_createtable(L, 0, 20);
  lua_pushboolean(L, r->code == 0 && !r->timed_out && !r->cancelled);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, r->code);
  lua_setfield(L, -2, "code");
  const char *sig = r->signal ? tide_proc_signame(r->signal) : NULL;
  if (sig)
    lua_pushstring(L, sig);
  else if (r->signal)
    lua_pushinteger(L, r->signal);
  else
    lua_pushnil(L);
  lua_setfield(L, -2, "signal");
  lua_pushboolean(L, r->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushboolean(L, r->cancelled);
  lua_setfield(L, -2, "cancelled");
  lua_pushboolean(L, r->pipes_held);
  lua_setfield(L, -2, "pipes_held");
  for (int s = 1; s <= 2; s++) {
    size_t len;
    const char *d = tide_proc_output(lp->proc, (tide_proc_stream)s, &len);
    char key[32];
    if (r->truncated[s]) {
      /* The capture keeps the head; the marker says what was dropped and where it is. */
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      luaL_addlstring(&b, d, len);
      lua_pushfstring(L, "\n[tide: output truncated: kept %I of %I bytes%s%s]\n", (lua_Integer)len,
                      (lua_Integer)r->bytes[s],
                      lp->log_path && r->log_opened ? "; full output in " : "",
                      lp->log_path && r->log_opened ? lp->log_path : "");
      luaL_addvalue(&b);
      luaL_pushresult(&b);
    } else {
      lua_pushlstring(L, d, len);
    }
    lua_setfield(L, -2, names[s]);
    snprintf(key, sizeof key, "%s_truncated", names[s]);
    lua_pushboolean(L, r->truncated[s]);
    lua_setfield(L, -2, key);
    snprintf(key, sizeof key, "%s_bytes", names[s]);
    push_bytes_field(L, key, r->bytes[s]);
  }
  lua_pushinteger(L, r->pid);
  lua_setfield(L, -2, "pid");
  lua_pushnumber(L, (lua_Number)r->wall_ns / 1e9);
  lua_setfield(L, -2, "wall");
  lua_pushnumber(L, r->cpu_user);
  lua_setfield(L, -2, "cpu_user");
  lua_pushnumber(L, r->cpu_sys);
  lua_setfield(L, -2, "cpu_sys");
  push_bytes_field(L, "max_rss", r->max_rss);
  if (lp->log_path && r->log_opened) {
    lua_pushstring(L, lp->log_path);
    lua_setfield(L, -2, "log");
  }
  if (r->log_error) {
    lua_pushfstring(L, "%s: %s", tide_err_name(-r->log_error), strerror(r->log_error));
    lua_setfield(L, -2, "log_error");
  }
  if (r->sandboxed) {
    /* sandbox = {missing = {"landlock", ...}}: protections this machine could not apply */
    lua_createtable(L, 0, 1);
    lua_newtable(L);
    for (int bit = 0, i = 0; bit < 8; bit++) {
      char name[32];
      if (r->sandbox_missing & (1u << bit)) {
        lua_pushstring(L, tide_sandbox_names(1u << bit, name, sizeof name));
        lua_rawseti(L, -2, ++i);
      }
    }
    lua_setfield(L, -2, "missing");
    lua_setfield(L, -2, "sandbox");
  }
}

/* Pushes "lines", streams, texts when lines are queued; returns 3, or 0 when none are. */
static int push_lines(lua_State *L, lproc *lp)
{
  tide_proc_stream s;
  const char *line;
  size_t len;
  if (!lp->lines || !tide_proc_next_line(lp->proc, &s, &line, &len))
    return 0;
  lua_pushliteral(L, "lines");
  lua_newtable(L); /* streams */
  lua_newtable(L); /* texts */
  lua_Integer i = 0;
  do {
    i++;
    lua_pushstring(L, s == TIDE_PROC_STDERR ? "stderr" : "stdout");
    lua_rawseti(L, -3, i);
    lua_pushlstring(L, line, len);
    lua_rawseti(L, -2, i);
  } while (tide_proc_next_line(lp->proc, &s, &line, &len));
  return 3;
}

static int wait_ready(lua_State *L, lproc *lp)
{
  int n = push_lines(L, lp);
  if (n)
    return n;
  if (lp->done) {
    push_result(L, lp);
    return 1;
  }
  return 0;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx)
{
  (void)ctx;
  tide_task_resumed(L, status); /* on cancel, wait_cancel has closed the timer */
  lproc *lp = *(lproc **)lua_touserdata(L, 1);
  if (!lp)
    return luaL_error(L, "proc.wait: the process was closed while waiting");
  int n = wait_ready(L, lp);
  if (n || lp->timer_fired)
    timer_close(lp);
  if (n)
    return n;
  if (lp->timer_fired)
    return tide_fail(L, TIDE_ETIMEDOUT, "proc.wait: timeout");
  return tide_task_block(L, &lp->wait, "proc.wait", wait_k, 0);
}

/*
** p:wait([timeout]) -> result table; or "lines", streams, texts (spawned with lines = true);
** or nil, "proc.wait: timeout", "ETIMEDOUT" when timeout seconds pass (the process keeps going).
*/
static int m_wait(lua_State *L)
{
  lproc *lp = check_open(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  lua_settop(L, 1);
  int n = wait_ready(L, lp);
  if (n)
    return n;
  if (lp->wait.task)
    return luaL_error(L, "proc.wait: another task is already waiting for this process");
  tide_task_check_blocking(L, "proc.wait");
  lp->timer_fired = 0;
  if (timeout >= 0) {
    if (!lp->timer) {
      lp->timer = malloc(sizeof *lp->timer);
      if (!lp->timer)
        return luaL_error(L, "proc.wait: out of memory");
      uv_timer_init(lp->loop, lp->timer);
      lp->timer->data = lp;
    }
    uv_update_time(lp->loop);
    uv_timer_start(lp->timer, wait_timer_cb, (uint64_t)(timeout * 1000.0 + 0.5), 0);
  }
  return tide_task_block(L, &lp->wait, "proc.wait", wait_k, 0);
}

static int parse_signal(lua_State *L, int idx)
{
  if (lua_isnoneornil(L, idx))
    return SIGTERM;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0 && n < 65, idx, "bad signal number");
    return (int)n;
  }
  const char *name = luaL_checkstring(L, idx);
  int sig = tide_proc_signum(name);
  if (!sig)
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
  return sig;
}

/* p:kill([signal]) -> true | nil, msg, code; signal is "TERM" (default), "KILL", ... or a number */
static int m_kill(lua_State *L)
{
  lproc *lp = check_open(L, 1);
  int sig = parse_signal(L, 2);
  int rc = tide_proc_kill(lp->proc, sig);
  if (rc != 0)
    return tide_fail(L, rc, "proc.kill: %s",
                     rc == UV_ESRCH ? "the process has exited" : uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

/* p:write(data) -> true | nil, msg, "EPIPE"; queues data for stdin (spawned with stdin = true) */
static int m_write(lua_State *L)
{
  lproc *lp = check_open(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int rc = tide_proc_write(lp->proc, data, len);
  if (rc == UV_EINVAL)
    return luaL_error(L, "proc.write: stdin is not a pipe (spawn with stdin = true)");
  if (rc != 0)
    return tide_fail(L, rc, "proc.write: %s", rc == UV_EPIPE ? "stdin is closed" : uv_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

/*
** p:exec{argv..., env = {...}, env_mode = ...} -> true | nil, message, code: the program of a
** process spawned with exec_later, with its environment as spawn takes it. Blocks until the
** sandbox has exec'd it. On failure the process ends (exit 127) and wait() reports it as usual.
*/
static int m_exec(lua_State *L)
{
  lproc *lp = check_open(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  spawn_args a;
  memset(&a, 0, sizeof a);
  a.env_mode = TIDE_PROC_ENV_INHERIT;
  const char *env_mode = NULL;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  if (n < 1)
    luaL_error(L, "exec: no command (the table's array part is empty)");
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_isinteger(L, -2)) {
      check_argv_item(L, "exec", n);
    } else if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "env_mode") == 0) {
      env_mode = opt_string(L, "env_mode");
    } else if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "env") == 0) {
      if (!lua_istable(L, -1))
        luaL_error(L, "exec: option 'env' must be a table, got %s", luaL_typename(L, -1));
    } else {
      luaL_error(L, "exec: unexpected key '%s'",
                 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
  take_env(L, 2, env_mode, &a);
  take_argv(L, 2, n, &a);
  tide_err err;
  tide_err_clear(&err);
  if (tide_proc_exec(lp->proc, a.argv, a.env_mode, a.env, &err) != 0)
    return tide_fail_err(L, &err);
  /* The span names the program now that there is one: "argv":[] becomes the real list. */
  const char *empty = "\"argv\":[]";
  if (lp->attrs && strncmp(lp->attrs, empty, strlen(empty)) == 0) {
    jbuf j = {0};
    jargv(&j, a.argc, a.argv);
    jputs(&j, lp->attrs + strlen(empty));
    if (!j.oom) {
      free(lp->attrs);
      lp->attrs = j.b;
      span_attrs(lp);
    } else {
      free(j.b);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:read_pending() -> boolean: reads what the pipes hold now; true when wait() would return at
** once (lines are queued, or the process is done). */
static int m_read_pending(lua_State *L)
{
  lproc *lp = check_open(L, 1);
  /* Done: wait() returns at once anyway, with the last lines or the result. */
  lua_pushboolean(L, lp->lines && (lp->done || tide_proc_read_pending(lp->proc)));
  return 1;
}

/* p:close_stdin(): the child sees EOF once queued writes are done */
static int m_close_stdin(lua_State *L)
{
  tide_proc_close_stdin(check_open(L, 1)->proc);
  return 0;
}

static int m_pid(lua_State *L)
{
  lua_pushinteger(L, tide_proc_result_get(check_open(L, 1)->proc)->pid);
  return 1;
}

/*
** p:close(), __close and __gc: terminates a process that is still running (TERM, grace, KILL)
** and lets go of the handle; never blocks. While another task waits on it, only terminates: the
** waiter still gets the result.
*/
static int m_close(lua_State *L)
{
  lproc **box = luaL_checkudata(L, 1, PROCESS_META);
  lproc *lp = *box;
  if (!lp)
    return 0;
  if (!lp->done)
    tide_proc_terminate(lp->proc, 0);
  if (lp->wait.task)
    return 0;
  *box = NULL;
  lp->gone = 1;
  if (lp->done)
    lproc_free(lp);
  else
    tide_proc_stop_lines(lp->proc);
  return 0;
}

static int m_tostring(lua_State *L)
{
  lproc **box = luaL_checkudata(L, 1, PROCESS_META);
  if (!*box)
    lua_pushliteral(L, "tide.Process (closed)");
  else
    lua_pushfstring(L, "tide.Process (pid %d, %s)", (int)tide_proc_result_get((*box)->proc)->pid,
                    (*box)->done ? "done" : "running");
  return 1;
}

/* signame(n) -> "TERM" | nil */
static int l_signame(lua_State *L)
{
  const char *name = tide_proc_signame((int)luaL_checkinteger(L, 1));
  if (!name)
    return 0;
  lua_pushstring(L, name);
  return 1;
}

static const luaL_Reg functions[] = {
    {"signame", l_signame},
    {"spawn", l_spawn},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"close", m_close}, {"close_stdin", m_close_stdin},   {"exec", m_exec}, {"kill", m_kill},
    {"pid", m_pid},     {"read_pending", m_read_pending}, {"wait", m_wait}, {"write", m_write},
    {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__close", m_close},       {"__gc", m_close}, {"__index", NULL},
    {"__tostring", m_tostring}, {NULL, NULL},
};

int luaopen_tide_proc(lua_State *L)
{
  if (luaL_newmetatable(L, PROCESS_META)) {
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
