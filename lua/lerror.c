/*
** TideError values and the fail triple. A TideError is a plain table {code=, message=} with the
** "tide.Error" metatable, so Lua code can read and build them like any table.
*/
#include "lerror.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "tide/mask.h"

#include "runtime.h"

const char *tide_push_masked(lua_State *L, const char *s, size_t len)
{
  tide_runtime *rt = tide_runtime_get(L);
  tide_mask *m = rt ? rt->mask : NULL;
  size_t n;
  char *masked = m && tide_mask_patterns(m) ? tide_mask_string(m, s, len, &n) : NULL;
  if (masked) {
    lua_pushlstring(L, masked, n);
    free(masked);
  } else {
    lua_pushlstring(L, s, len);
  }
  return lua_tostring(L, -1);
}

__attribute__((format(printf, 2, 0))) static void push_vmessage(lua_State *L, const char *fmt,
                                                                va_list ap)
{
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  /* A message may quote a secret value (a failed command line, a bad line of input). */
  tide_push_masked(L, buf, strlen(buf));
}

static void push_error(lua_State *L, const char *code)
{
  /* stack: message */
  lua_createtable(L, 0, 2);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_insert(L, -2);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, "tide.Error");
}

void tide_error_push(lua_State *L, const char *code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  push_vmessage(L, fmt, ap);
  va_end(ap);
  push_error(L, code);
}

int tide_error_raise(lua_State *L, const char *code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  push_vmessage(L, fmt, ap);
  va_end(ap);
  push_error(L, code);
  return lua_error(L);
}

int tide_error_raise_err(lua_State *L, const tide_err *err)
{
  return tide_error_raise(L, tide_err_name(err->code), "%s", err->msg);
}

int tide_fail(lua_State *L, int code, const char *fmt, ...)
{
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  push_vmessage(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, tide_err_name(code));
  return 3;
}

int tide_fail_err(lua_State *L, const tide_err *err)
{
  return tide_fail(L, err->code, "%s", err->msg);
}

int tide_error_code(lua_State *L, int idx)
{
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, "tide.Error");
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same)
    return 0;
  lua_getfield(L, idx, "code");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int error_tostring(lua_State *L)
{
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) {
    lua_getfield(L, 1, "code");
    lua_pushfstring(L, "error %s", lua_tostring(L, -1));
  }
  return 1;
}

void tide_error_init(lua_State *L)
{
  if (luaL_newmetatable(L, "tide.Error")) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
