/*
** The sandbox option: true (the build default) or a policy table; see docs/sandbox.md.
*/
#include "lsandbox.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

static const char *const sandbox_keys[] = {
    "cpu_seconds", "fsize",     "gid",     "hide",     "hostname", "memory",   "network", "nofile",
    "pids",        "read_only", "require", "tmp_size", "uid",      "writable", NULL,
};

/* A NULL-terminated array of the strings of the list at the top, in a GC-owned box. */
static const char *const *sandbox_paths(lua_State *L, const char *key)
{
  if (!lua_istable(L, -1))
    luaL_error(L, "spawn: option 'sandbox.%s' must be a list of paths, got %s", key,
               luaL_typename(L, -1));
  int t = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n)
      luaL_error(L, "spawn: option 'sandbox.%s' must be a list (sequence) of paths", key);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "spawn: option 'sandbox.%s' item %d must be a string, got %s", key,
                 (int)lua_tointeger(L, -2), luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  const char **box = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *box, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    size_t len;
    box[i - 1] = lua_tolstring(L, -1, &len); /* anchored by the policy table */
    if (strlen(box[i - 1]) != len)
      luaL_error(L, "spawn: option 'sandbox.%s' item %d contains a NUL byte", key, (int)i);
    lua_pop(L, 1);
  }
  box[n] = NULL;
  lua_replace(L, t); /* the box stays on the stack in place of the list */
  return box;
}

static uint64_t sandbox_size(lua_State *L, const char *key)
{
  uint64_t v = 0;
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)
    return (uint64_t)lua_tointeger(L, -1);
  if (lua_type(L, -1) == LUA_TSTRING && tide_sandbox_parse_size(lua_tostring(L, -1), &v) == 0 &&
      v > 0)
    return v;
  luaL_error(L, "spawn: option 'sandbox.%s' must be a positive size (bytes or \"512M\", \"2G\")",
             key);
  return 0;
}

static uint64_t sandbox_count(lua_State *L, const char *key, lua_Integer min)
{
  if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < min || lua_tointeger(L, -1) > 0xffffffffLL)
    luaL_error(L, "spawn: option 'sandbox.%s' must be an integer >= %d, got %s", key, (int)min,
               lua_isinteger(L, -1) ? "one out of range" : luaL_typename(L, -1));
  return (uint64_t)lua_tointeger(L, -1);
}

static void parse_table(lua_State *L, int idx, tide_sandbox_policy *p)
{
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "spawn: option 'sandbox' has a key of type %s", luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    int known = 0;
    for (int k = 0; sandbox_keys[k] && !known; k++)
      known = strcmp(sandbox_keys[k], key) == 0;
    if (!known)
      luaL_error(L, "spawn: option 'sandbox' has an unexpected key '%s'", key);
    lua_pop(L, 1);
  }
  static const char *const lists[] = {"writable", "read_only", "hide"};
  const char *const **list_out[] = {&p->writable, &p->read_only, &p->hide};
  for (int i = 0; i < 3; i++) {
    if (lua_getfield(L, idx, lists[i]) == LUA_TNIL)
      lua_pop(L, 1);
    else
      *list_out[i] = sandbox_paths(L, lists[i]); /* the box stays on the stack */
  }
  int nt = lua_getfield(L, idx, "network");
  if (nt == LUA_TBOOLEAN) {
    p->network = lua_toboolean(L, -1) ? TIDE_SANDBOX_NET_HOST : TIDE_SANDBOX_NET_LOOPBACK;
  } else if (nt == LUA_TSTRING) {
    const char *v = lua_tostring(L, -1);
    if (strcmp(v, "loopback") == 0)
      p->network = TIDE_SANDBOX_NET_LOOPBACK;
    else if (strcmp(v, "host") == 0)
      p->network = TIDE_SANDBOX_NET_HOST;
    else if (strcmp(v, "off") == 0)
      p->network = TIDE_SANDBOX_NET_OFF;
    else
      luaL_error(L,
                 "spawn: option 'sandbox.network' must be a boolean, \"loopback\", \"host\" or "
                 "\"off\", got '%s'",
                 v);
  } else if (nt != LUA_TNIL) {
    luaL_error(L,
               "spawn: option 'sandbox.network' must be a boolean, \"loopback\", \"host\" or "
               "\"off\", got %s",
               luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "hostname") != LUA_TNIL) {
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "spawn: option 'sandbox.hostname' must be a string, got %s",
                 luaL_typename(L, -1));
    p->hostname = lua_tolstring(L, -1, &len); /* anchored by the policy table */
    if (strlen(p->hostname) != len)
      luaL_error(L, "spawn: option 'sandbox.hostname' contains a NUL byte");
  }
  lua_pop(L, 1);
  static const char *const sizes[] = {"tmp_size", "memory", "fsize"};
  uint64_t *size_out[] = {&p->tmp_size, &p->memory, &p->fsize};
  for (int i = 0; i < 3; i++) {
    if (lua_getfield(L, idx, sizes[i]) != LUA_TNIL)
      *size_out[i] = sandbox_size(L, sizes[i]);
    lua_pop(L, 1);
  }
  static const char *const counts[] = {"pids", "cpu_seconds", "nofile"};
  uint64_t *count_out[] = {&p->pids, &p->cpu_seconds, &p->nofile};
  for (int i = 0; i < 3; i++) {
    if (lua_getfield(L, idx, counts[i]) != LUA_TNIL)
      *count_out[i] = sandbox_count(L, counts[i], 1);
    lua_pop(L, 1);
  }
  p->uid = p->gid = 1000;
  if (lua_getfield(L, idx, "uid") != LUA_TNIL) {
    p->uid = p->gid = (uint32_t)sandbox_count(L, "uid", 0);
    p->uid_set = 1;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "gid") != LUA_TNIL) {
    p->gid = (uint32_t)sandbox_count(L, "gid", 0);
    p->uid_set = 1;
  }
  lua_pop(L, 1);
  int rt = lua_getfield(L, idx, "require");
  if (rt == LUA_TBOOLEAN) {
    p->require =
        lua_toboolean(L, -1) ? TIDE_SANDBOX_LANDLOCK | TIDE_SANDBOX_CGROUP | TIDE_SANDBOX_IDMAP : 0;
  } else if (rt == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      unsigned bit = lua_type(L, -1) == LUA_TSTRING ? tide_sandbox_bit(lua_tostring(L, -1)) : 0;
      if (!bit)
        luaL_error(L,
                   "spawn: option 'sandbox.require' item %d must be \"landlock\", "
                   "\"cgroup\" or \"idmap\"",
                   (int)i);
      p->require |= bit;
      lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the nil */
  } else if (rt != LUA_TNIL) {
    luaL_error(L, "spawn: option 'sandbox.require' must be a list of names or a boolean, got %s",
               luaL_typename(L, -1));
  }
  lua_pop(L, 1);
}

int tide_lsandbox_parse(lua_State *L, int idx, const char *cwd, tide_sandbox_policy *p)
{
  idx = lua_absindex(L, idx);
  tide_sandbox_policy_init(p);
  int t = lua_type(L, idx);
  if (t == LUA_TBOOLEAN && !lua_toboolean(L, idx))
    return 0;
  if (t == LUA_TTABLE)
    parse_table(L, idx, p);
  else if (t != LUA_TBOOLEAN)
    luaL_error(L, "spawn: option 'sandbox' must be true or a table, got %s", luaL_typename(L, idx));
  if (!p->writable) {
    /* The build default: the working directory is writable. */
    const char **box = lua_newuserdatauv(L, 2 * sizeof *box, 0);
    if (cwd) {
      box[0] = cwd;
    } else {
      char buf[4096];
      if (!getcwd(buf, sizeof buf))
        luaL_error(L, "spawn: option 'sandbox': cannot read the working directory");
      box[0] = lua_pushstring(L, buf); /* stays on the stack as an anchor */
    }
    box[1] = NULL;
    p->writable = box;
  }
  return 1;
}
