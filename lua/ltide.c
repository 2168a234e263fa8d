/*
** "tide._core": the task functions of the scheduler (task.c), TideError construction and the
** clock and version. stdlib/tide/init.lua builds the public "tide" module on it.
*/
#include <time.h>

#include <lauxlib.h>
#include <uv.h>

#include "tide/version.h"

#include "lerror.h"
#include "modules.h"
#include "runtime.h"
#include "task.h"

void tide__sched_register(lua_State *L);

/* error(code, message [, fields]) -> a TideError table; fields are copied into it */
static int l_error(lua_State *L)
{
  const char *code = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  tide_error_push(L, code, "%s", message);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  return 1;
}

/* is_error(v) -> true when v is a TideError */
static int l_is_error(lua_State *L)
{
  int is = tide_error_code(L, 1);
  if (is)
    lua_pop(L, 1);
  lua_pushboolean(L, is);
  return 1;
}

/* now() -> wall clock seconds since the epoch, with microseconds */
static int l_now(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)tide_now_us() / 1e6);
  return 1;
}

/* monotime() -> seconds from an arbitrary point, for durations */
static int l_monotime(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

static const luaL_Reg functions[] = {
    {"error", l_error}, {"is_error", l_is_error}, {"monotime", l_monotime}, {"now", l_now},
    {NULL, NULL},
};

int luaopen_tide_core(lua_State *L)
{
  tide_error_init(L);
  luaL_newlib(L, functions);
  tide__sched_register(L);
  lua_pushstring(L, TIDE_VERSION_STRING);
  lua_setfield(L, -2, "version");
  return 1;
}
