/*
** "tide._store": read-only queries over the runtime's open store, for the CLI (runs, show, logs).
** Rows come from host/store.c as plain records and become Lua tables here; times become seconds
** (floats since the epoch) and durations seconds. It writes nothing and opens nothing: the
** caller opens the store first (tide.cli.open_store).
*/
#include <limits.h>
#include <string.h>

#include <lauxlib.h>

#include "lerror.h"
#include "modules.h"
#include "runtime.h"

static tide_store *check_store(lua_State *L)
{
  tide_store *s = tide_runtime_get(L)->store;
  if (!s)
    luaL_error(L, "the store is not open (call tide.cli.open_store first)");
  return s;
}

static void set_time(lua_State *L, const char *key, int64_t us)
{
  if (us) {
    lua_pushnumber(L, (lua_Number)us / 1e6);
    lua_setfield(L, -2, key);
  }
}

static void set_string(lua_State *L, const char *key, const char *value)
{
  if (value) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
  }
}

static void set_integer(lua_State *L, const char *key, lua_Integer value)
{
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

typedef struct query {
  lua_State *L;
  tide_store *s;
} query;

/*
** Pushes a run table: {id, name, argv, status, exit_code, pid, host, started, ended, duration}
** plus, while its status is "running", alive: whether its tide still holds the run's lock.
*/
static void push_run(const query *q, const tide_run_rec *r)
{
  lua_State *L = q->L;
  lua_createtable(L, 0, 11);
  set_integer(L, "id", r->id);
  set_string(L, "name", r->name);
  set_string(L, "argv", r->argv_json);
  set_string(L, "status", r->status);
  if (r->has_exit_code)
    set_integer(L, "exit_code", r->exit_code);
  if (r->pid)
    set_integer(L, "pid", r->pid);
  set_string(L, "host", r->host);
  set_time(L, "started", r->started_us);
  set_time(L, "ended", r->ended_us);
  if (r->ended_us) {
    lua_pushnumber(L, (lua_Number)(r->ended_us - r->started_us) / 1e6);
    lua_setfield(L, -2, "duration");
  }
  if (r->status && strcmp(r->status, "running") == 0) {
    lua_pushboolean(L, tide_store_run_alive(q->s, r->id));
    lua_setfield(L, -2, "alive");
  }
}

/*
** The callbacks only push onto a stack made big enough beforehand and build small tables, so the
** only error they can raise is out-of-memory.
*/
static int run_into_list(void *ud, const tide_run_rec *r)
{
  const query *q = ud;
  /* stack: list */
  push_run(q, r);
  lua_rawseti(q->L, -2, (lua_Integer)lua_rawlen(q->L, -2) + 1);
  return 0;
}

static int run_onto_stack(void *ud, const tide_run_rec *r)
{
  push_run(ud, r);
  return 1;
}

static int span_into_list(void *ud, const tide_span_rec *sp)
{
  lua_State *L = ud;
  /* stack: list */
  lua_createtable(L, 0, 11);
  set_integer(L, "id", (lua_Integer)sp->id);
  set_integer(L, "parent", (lua_Integer)sp->parent);
  set_string(L, "kind", sp->kind);
  set_string(L, "name", sp->name);
  set_string(L, "status", sp->status);
  set_time(L, "start", sp->start_us);
  set_time(L, "end", sp->end_us);
  if (sp->end_us) {
    lua_pushnumber(L, (lua_Number)(sp->end_us - sp->start_us) / 1e6);
    lua_setfield(L, -2, "duration");
  }
  set_string(L, "attrs", sp->attrs);
  set_string(L, "log", sp->log);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* runs([limit]) -> list of run tables, newest first | nil, msg, code */
static int store_runs(lua_State *L)
{
  lua_Integer limit = luaL_optinteger(L, 1, 0);
  query q = {L, check_store(L)};
  tide_err err;
  lua_newtable(L);
  luaL_checkstack(L, 4, NULL);
  if (tide_store_runs(q.s, limit, run_into_list, &q, &err) != 0)
    return tide_fail_err(L, &err);
  return 1;
}

/* run(id) -> run table | nil, msg, "ENOENT" when there is no such run | nil, msg, code */
static int store_run(lua_State *L)
{
  lua_Integer id = luaL_checkinteger(L, 1);
  query q = {L, check_store(L)};
  tide_err err;
  luaL_checkstack(L, 4, NULL);
  if (tide_store_run(q.s, id, run_onto_stack, &q, &err) != 0)
    return tide_fail_err(L, &err);
  return 1;
}

/* spans(run_id) -> list of span tables in start order (empty for an unknown run) */
static int store_spans(lua_State *L)
{
  lua_Integer id = luaL_checkinteger(L, 1);
  tide_store *s = check_store(L);
  tide_err err;
  lua_newtable(L);
  luaL_checkstack(L, 4, NULL);
  if (tide_store_spans(s, id, span_into_list, L, &err) != 0)
    return tide_fail_err(L, &err);
  return 1;
}

/* log_path(run_id, span_id) -> "HOME/logs/RUN/SPAN.log" */
static int store_log_path(lua_State *L)
{
  lua_Integer run = luaL_checkinteger(L, 1);
  lua_Integer span = luaL_checkinteger(L, 2);
  luaL_argcheck(L, span > 0, 2, "span ids start at 1");
  tide_store *s = check_store(L);
  char path[PATH_MAX];
  tide_err err;
  if (tide_store_log_path(s, run, (uint64_t)span, path, sizeof path, &err) != 0)
    return tide_fail_err(L, &err);
  lua_pushstring(L, path);
  return 1;
}

/* alive(run_id) -> whether a tide process holds the run's lock now */
static int store_alive(lua_State *L)
{
  lua_Integer id = luaL_checkinteger(L, 1);
  lua_pushboolean(L, tide_store_run_alive(check_store(L), id));
  return 1;
}

/* home() -> the open store's home directory */
static int store_home(lua_State *L)
{
  lua_pushstring(L, tide_store_home(check_store(L)));
  return 1;
}

static const luaL_Reg functions[] = {
    {"alive", store_alive}, {"home", store_home}, {"log_path", store_log_path},
    {"run", store_run},     {"runs", store_runs}, {"spans", store_spans},
    {NULL, NULL},
};

int luaopen_tide_store(lua_State *L)
{
  luaL_newlib(L, functions);
  return 1;
}
