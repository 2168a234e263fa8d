/*
** "tide._runtime": what the CLI needs to record a run: open the store, begin a run, and read
** where things are. Ending the run is main.c's job, because it happens after the main task.
*/
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "tide/view.h"

#include "lerror.h"
#include "modules.h"
#include "runtime.h"

/* open_store(home [, readonly]) -> true | nil, msg, code */
static int l_open_store(lua_State *L)
{
  const char *home = luaL_checkstring(L, 1);
  int flags = lua_toboolean(L, 2) ? TIDE_STORE_READONLY : 0;
  tide_err err;
  if (tide_runtime_open_store(tide_runtime_get(L), home, flags, &err) != 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* begin_run(name [, argv_json]) -> run id | nil, msg, code */
static int l_begin_run(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  const char *argv_json = luaL_optstring(L, 2, NULL);
  tide_runtime *rt = tide_runtime_get(L);
  tide_err err;
  if (rt->run_id)
    return luaL_error(L, "a run is already being recorded");
  if (tide_runtime_begin_run(rt, name, argv_json, &err) != 0)
    return tide_fail_err(L, &err);
  lua_pushinteger(L, rt->run_id);
  return 1;
}

/* run_id() -> the recorded run's id, or nil */
static int l_run_id(lua_State *L)
{
  tide_runtime *rt = tide_runtime_get(L);
  if (!rt->run_id)
    return 0;
  lua_pushinteger(L, rt->run_id);
  return 1;
}

/* home() -> the open store's home, or nil */
static int l_home(lua_State *L)
{
  tide_runtime *rt = tide_runtime_get(L);
  if (!rt->store)
    return 0;
  lua_pushstring(L, tide_store_home(rt->store));
  return 1;
}

/* flush(): writes queued store changes now */
static int l_flush(lua_State *L)
{
  tide_runtime *rt = tide_runtime_get(L);
  tide_err err;
  if (rt->store && tide_store_flush(rt->store, &err) != 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/*
** print(...) while the live view draws on the terminal that stdout also goes to: the line is
** written above the view's block instead of under it, where the next redraw would erase it.
*/
static int view_print(lua_State *L)
{
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  tide_runtime *rt = tide_runtime_get(L);
  fflush(stdout); /* whatever io.write left in stdout's buffer comes first */
  if (rt->view)
    tide_view_write(rt->view, text, len);
  else
    fwrite(text, 1, len, stdout);
  return 0;
}

/* Whether stdout and stderr are one terminal. */
static int same_terminal(void)
{
  struct stat out, err;
  return isatty(STDOUT_FILENO) && fstat(STDOUT_FILENO, &out) == 0 &&
         fstat(STDERR_FILENO, &err) == 0 && S_ISCHR(out.st_mode) && S_ISCHR(err.st_mode) &&
         out.st_rdev == err.st_rdev;
}

/* start_view([mode]) -> true | nil, msg, code; mode "auto" (default), "plain" or "none" */
static int l_start_view(lua_State *L)
{
  static const char *const modes[] = {"auto", "plain", "none", NULL};
  int mode = luaL_checkoption(L, 1, "auto", modes);
  tide_runtime *rt = tide_runtime_get(L);
  tide_err err;
  if (tide_runtime_start_view(rt, modes[mode], &err) != 0)
    return tide_fail_err(L, &err);
  if (rt->view && tide_view_get_mode(rt->view) == TIDE_VIEW_TTY && same_terminal()) {
    /* NOTE: io.write and io.stdout:write still go straight to the terminal. */
    lua_pushglobaltable(L);
    lua_pushcfunction(L, view_print);
    lua_setfield(L, -2, "print");
    lua_pop(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg functions[] = {
    {"begin_run", l_begin_run},
    {"flush", l_flush},
    {"home", l_home},
    {"open_store", l_open_store},
    {"run_id", l_run_id},
    {"start_view", l_start_view},
    {NULL, NULL},
};

int luaopen_tide_runtime(lua_State *L)
{
  luaL_newlib(L, functions);
  return 1;
}
