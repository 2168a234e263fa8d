/*
** "tide.uv": luv on the host's own loop. The host owns the loop, so the luv functions that would
** run, stop or close it are replaced by ones that refuse.
*/
#include <lauxlib.h>
#include <luv/luv.h>

#include "modules.h"

static int refuse(lua_State *L)
{
  return luaL_error(L, "tide.uv: %s is not available: tide runs the loop itself",
                    lua_tostring(L, lua_upvalueindex(1)));
}

int luaopen_tide_uv(lua_State *L)
{
  static const char *const owned[] = {"run", "stop", "loop_close", "loop_configure", NULL};
  luaopen_luv(L);
  for (const char *const *name = owned; *name; name++) {
    lua_pushstring(L, *name);
    lua_pushcclosure(L, refuse, 1);
    lua_setfield(L, -2, *name);
  }
  return 1;
}
