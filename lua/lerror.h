/*
** Errors at the Lua boundary, one convention per layer:
** - natives return the fail triple `nil, message, CODE` for expected failures (tide_fail*) and
**   raise only for misuse (luaL_argerror, luaL_error);
** - the stdlib raises TideError tables {code=, message=} (tide_error_*), whose metatable
**   "tide.Error" gives __tostring; Lua code builds them with require("tide").error(code, msg).
*/
#ifndef TIDE_LUA_ERROR_H
#define TIDE_LUA_ERROR_H

#include <lua.h>

#include "tide/err.h"

/* Pushes a TideError with code (an uppercase word: "ECANCELED", "EINPUT") and a message. */
void tide_error_push(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raises a TideError; never returns. */
int tide_error_raise(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raises err as a TideError (code name from tide_err_name); never returns. */
int tide_error_raise_err(lua_State *L, const tide_err *err);

/* Pushes nil, message, code name; returns 3. code is negative (errno or TIDE_E*). */
int tide_fail(lua_State *L, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Pushes nil, err->msg, tide_err_name(err->code); returns 3. */
int tide_fail_err(lua_State *L, const tide_err *err);

/* True when the value at idx is a TideError; then pushes its code (a string) and returns 1. */
int tide_error_code(lua_State *L, int idx);

/*
** Pushes s with every value of the run-wide mask replaced by "***" (docs/secrets.md) and returns
** the pushed string. For text that leaves tide other than through processes, spans and errors:
** tracebacks, messages printed by the host.
*/
const char *tide_push_masked(lua_State *L, const char *s, size_t len);

/* Creates the "tide.Error" metatable; called once by the "tide" module. */
void tide_error_init(lua_State *L);

#endif
