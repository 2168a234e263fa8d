/*
** The secret value userdata ("tide.Secret") of lua/lsecret.c, for other bindings that accept a
** secret where they would take a string (process environment values).
*/
#ifndef TIDE_LUA_SECRET_H
#define TIDE_LUA_SECRET_H

#include <stddef.h>

#include <lua.h>

#define TIDE_SECRET_META "tide.Secret"

/*
** The bytes of the secret at idx, or NULL when the value there is not a secret (or was freed).
** Borrowed: valid while the userdata is alive and not closed. Never NUL-terminated.
*/
const unsigned char *tide_lsecret_bytes(lua_State *L, int idx, size_t *len);

#endif
