/*
** The native modules compiled into tide. Each lua/l<mod>.c exports one luaopen_* function;
** modules.c lists them in package.preload. A native that a stdlib module wraps is registered as
** "tide._<mod>" (stdlib/tide/<mod>.lua then requires it); one without a Lua part is "tide.<mod>".
*/
#ifndef TIDE_LUA_MODULES_H
#define TIDE_LUA_MODULES_H

#include <lua.h>

int luaopen_tide_core(lua_State *L);     /* ltide.c: "tide._core", tasks, errors, version */
int luaopen_tide_runtime(lua_State *L);  /* lruntime.c: "tide._runtime", store and run records */
int luaopen_tide_uv(lua_State *L);       /* luv on the host loop */
int luaopen_tide_json(lua_State *L);     /* ljson.c: lua-cjson */
int luaopen_tide_re(lua_State *L);       /* lre.c: PCRE2 */
int luaopen_tide_yaml(lua_State *L);     /* lyaml.c: libyaml */
int luaopen_tide_fs(lua_State *L);       /* lfs.c: "tide.fs" */
int luaopen_tide_artifact(lua_State *L); /* lartifact.c: "tide._artifact", blobs and trees */
int luaopen_tide_proc(lua_State *L);     /* lproc.c: "tide._proc" */
int luaopen_tide_secret(lua_State *L);   /* lsecret.c: "tide._secret", keys and secret values */
int luaopen_tide_store(lua_State *L);    /* lstore.c: "tide._store", queries for the CLI */
int luaopen_tide_git(lua_State *L);      /* lgit.c: "tide._git", libgit2 on the thread pool */
int luaopen_tide_db(lua_State *L);       /* ldb.c: "tide._db", SQL for stdlib modules */

/* Puts every native module and the embedded (or TIDE_STDLIB_DIR) stdlib in package.preload. */
void tide_modules_preload(lua_State *L);

#endif
