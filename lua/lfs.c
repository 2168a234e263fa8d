/*
** "tide.fs": the file system helpers of host/fs.c for Lua (what luv does not already give).
**
** glob, walk, rm_r, copy_tree and write_atomic can take long (big trees, fsync), so they run on
** the libuv thread pool through tide_task_work and block only the calling task. Their arguments
** are copied into a C op first (validate, then acquire); when the task resumes, the op moves into
** a GC-owned box, so a raise while pushing results frees it. match, mkdir_p, read, write and
** exists are quick and run inline.
**
** Expected failures return nil, "op 'path': strerror", "ENOENT"-style code; wrong argument types
** and unknown option keys raise.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide/fs.h"

#include "lerror.h"
#include "modules.h"
#include "task.h"

#define OP_MT "tide.fs.Op"

typedef struct fs_op {
  int rc;
  tide_err err;
  char *a, *b; /* paths: the pattern or source, and the destination */
  char *data;  /* write_atomic's bytes */
  size_t len;
  int mode;       /* write_atomic: -1 keeps the old mode */
  char *cwd;      /* glob */
  char **exclude; /* glob */
  size_t nexclude;
  unsigned flags;
  tide_fs_list list; /* glob and walk results */
  size_t next;       /* walk: the next entry to hand out */
} fs_op;

static void op_free(void *data)
{
  fs_op *op = data;
  if (!op)
    return;
  free(op->a);
  free(op->b);
  free(op->data);
  free(op->cwd);
  for (size_t i = 0; i < op->nexclude; i++)
    free(op->exclude[i]);
  free(op->exclude);
  tide_fs_list_clear(&op->list);
  free(op);
}

static int op_gc(lua_State *L)
{
  fs_op **box = luaL_checkudata(L, 1, OP_MT);
  op_free(*box);
  *box = NULL;
  return 0;
}

static fs_op *op_new(lua_State *L)
{
  fs_op *op = calloc(1, sizeof *op);
  if (!op)
    luaL_error(L, "out of memory");
  return op;
}

static char *dup_or_null(const char *s, int *oom)
{
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *oom = 1;
  return d;
}

/* In a continuation: checks the resume, then hands op to a box on the stack; returns op. */
static fs_op *op_resumed(lua_State *L, int status, lua_KContext ctx)
{
  return tide_task_work_box(L, status, ctx, OP_MT);
}

static int run_op(lua_State *L, const char *what, void (*work)(void *), fs_op *op, lua_KFunction k)
{
  return tide_task_work(L, what, work, op_free, op, k, (lua_KContext)op);
}

/* A mode: an integer, or an octal string such as "755", "0755" or "0o755". */
static int check_mode(lua_State *L, int idx, int dflt)
{
  if (lua_isnoneornil(L, idx))
    return dflt;
  lua_Integer m;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx), *p = s;
    if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
      p += 2;
    char *end;
    m = *p ? (lua_Integer)strtol(p, &end, 8) : -1;
    if (!*p || *end)
      luaL_argerror(L, idx, "invalid octal mode");
  } else {
    m = luaL_checkinteger(L, idx);
  }
  luaL_argcheck(L, m >= 0 && m <= 07777, idx, "mode out of range");
  return (int)m;
}

static int push_ok(lua_State *L, fs_op *op)
{
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- glob and match ----------------------------------------------------------------------- */

static void glob_work(void *data)
{
  fs_op *op = data;
  tide_fs_glob_opts o = {
      .cwd = op->cwd,
      .exclude = (const char *const *)op->exclude,
      .nexclude = op->nexclude,
      .flags = op->flags,
  };
  op->rc = tide_fs_glob(op->a, &o, &op->list, &op->err);
}

static int glob_k(lua_State *L, int status, lua_KContext ctx)
{
  fs_op *op = op_resumed(L, status, ctx);
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  lua_createtable(L, (int)(op->list.n < 1 << 30 ? op->list.n : 0), 0);
  for (size_t i = 0; i < op->list.n; i++) {
    lua_pushstring(L, op->list.v[i].path);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Reads glob's options into op: {cwd = string, exclude = string or {strings}, hidden = bool}. */
static void glob_options(lua_State *L, int idx, fs_op *op, int *oom)
{
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "cwd") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, idx, "'cwd' must be a string");
      op->cwd = dup_or_null(lua_tostring(L, -1), oom);
    } else if (strcmp(k, "hidden") == 0) {
      if (!lua_isboolean(L, -1))
        luaL_argerror(L, idx, "'hidden' must be a boolean");
      if (lua_toboolean(L, -1))
        op->flags |= TIDE_FS_HIDDEN;
    } else if (strcmp(k, "exclude") == 0) {
      if (lua_type(L, -1) == LUA_TSTRING) {
        op->exclude = calloc(1, sizeof *op->exclude);
        if (op->exclude && (op->exclude[0] = dup_or_null(lua_tostring(L, -1), oom)))
          op->nexclude = 1;
        else
          *oom = 1;
      } else if (lua_istable(L, -1)) {
        size_t n = lua_rawlen(L, -1);
        op->exclude = calloc(n ? n : 1, sizeof *op->exclude);
        if (!op->exclude)
          *oom = 1;
        for (size_t i = 0; i < n && op->exclude; i++) {
          if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_argerror(L, idx, "'exclude' must be a list of strings");
          op->exclude[i] = dup_or_null(lua_tostring(L, -1), oom);
          op->nexclude = i + 1;
          lua_pop(L, 1);
        }
      } else {
        luaL_argerror(L, idx, "'exclude' must be a string or a list of strings");
      }
    } else {
      lua_pushvalue(L, -2);
      luaL_argerror(L, idx, lua_pushfstring(L, "unexpected key '%s'", luaL_tolstring(L, -1, NULL)));
    }
    lua_pop(L, 1);
  }
}

/* glob(pattern [, opts]) -> {paths} */
static int fs_glob(lua_State *L)
{
  const char *pattern = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  tide_task_check_blocking(L, "fs.glob");
  /* The op is boxed while options are read, so a raise in glob_options frees it. */
  fs_op **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, OP_MT);
  fs_op *op = *box = op_new(L);
  int oom = 0;
  op->a = dup_or_null(pattern, &oom);
  glob_options(L, 2, op, &oom);
  if (oom)
    return luaL_error(L, "out of memory");
  *box = NULL; /* from here the pool work owns it */
  return run_op(L, "fs.glob", glob_work, op, glob_k);
}

/* match(pattern, path [, {hidden = bool}]) -> boolean */
static int fs_match(lua_State *L)
{
  const char *pattern = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  unsigned flags = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (strcmp(k, "hidden") != 0) {
        lua_pushvalue(L, -2);
        luaL_argerror(L, 3, lua_pushfstring(L, "unexpected key '%s'", luaL_tolstring(L, -1, NULL)));
      }
      if (!lua_isboolean(L, -1))
        luaL_argerror(L, 3, "'hidden' must be a boolean");
      if (lua_toboolean(L, -1))
        flags |= TIDE_FS_HIDDEN;
      lua_pop(L, 1);
    }
  }
  lua_pushboolean(L, tide_fs_match(pattern, path, flags));
  return 1;
}

/* ---- walk --------------------------------------------------------------------------------- */

static void walk_work(void *data)
{
  fs_op *op = data;
  op->rc = tide_fs_walk(op->a, &op->list, &op->err);
}

static int walk_iter(lua_State *L)
{
  fs_op *op = *(fs_op **)lua_touserdata(L, lua_upvalueindex(1));
  if (!op || op->next >= op->list.n)
    return 0;
  tide_fs_entry *e = &op->list.v[op->next++];
  lua_pushstring(L, e->path);
  lua_pushstring(L, tide_fs_type_name(e->type));
  return 2;
}

static int walk_loop(lua_State *L, int boxidx);

static int walk_cont(lua_State *L, int status, lua_KContext ctx)
{
  /* fn returned false: stop early */
  int stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stop) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return walk_loop(L, (int)ctx);
}

/* Calls fn (argument 2) for each entry; lua_callk lets fn block or yield. */
static int walk_loop(lua_State *L, int boxidx)
{
  fs_op *op = *(fs_op **)lua_touserdata(L, boxidx);
  while (op->next < op->list.n) {
    tide_fs_entry *e = &op->list.v[op->next++];
    lua_pushvalue(L, 2);
    lua_pushstring(L, e->path);
    lua_pushstring(L, tide_fs_type_name(e->type));
    lua_callk(L, 2, 1, boxidx, walk_cont);
    int stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (stop)
      break;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int walk_k(lua_State *L, int status, lua_KContext ctx)
{
  fs_op *op = op_resumed(L, status, ctx);
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  if (lua_isfunction(L, 2))
    return walk_loop(L, lua_gettop(L));
  lua_pushcclosure(L, walk_iter, 1);
  return 1;
}

/* walk(dir [, fn]) -> true (fn(path, type) per entry, false stops), or an iterator */
static int fs_walk(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  tide_task_check_blocking(L, "fs.walk");
  fs_op *op = op_new(L);
  if (!(op->a = strdup(dir))) {
    op_free(op);
    return luaL_error(L, "out of memory");
  }
  return run_op(L, "fs.walk", walk_work, op, walk_k);
}

/* ---- rm_r, copy_tree, write_atomic -------------------------------------------------------- */

static void rm_work(void *data)
{
  fs_op *op = data;
  op->rc = tide_fs_rm_r(op->a, &op->err);
}

static void copy_work(void *data)
{
  fs_op *op = data;
  op->rc = tide_fs_copy_tree(op->a, op->b, &op->err);
}

static void write_atomic_work(void *data)
{
  fs_op *op = data;
  op->rc = tide_fs_write_atomic(op->a, op->data, op->len, op->mode, &op->err);
}

static int ok_k(lua_State *L, int status, lua_KContext ctx)
{
  return push_ok(L, op_resumed(L, status, ctx));
}

/* rm_r(path) -> true */
static int fs_rm_r(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  tide_task_check_blocking(L, "fs.rm_r");
  fs_op *op = op_new(L);
  if (!(op->a = strdup(path))) {
    op_free(op);
    return luaL_error(L, "out of memory");
  }
  return run_op(L, "fs.rm_r", rm_work, op, ok_k);
}

/* copy_tree(src, dst) -> true */
static int fs_copy_tree(lua_State *L)
{
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  tide_task_check_blocking(L, "fs.copy_tree");
  fs_op *op = op_new(L);
  op->a = strdup(src);
  op->b = strdup(dst);
  if (!op->a || !op->b) {
    op_free(op);
    return luaL_error(L, "out of memory");
  }
  return run_op(L, "fs.copy_tree", copy_work, op, ok_k);
}

/* write_atomic(path, data [, mode]) -> true */
static int fs_write_atomic(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int mode = check_mode(L, 3, -1);
  tide_task_check_blocking(L, "fs.write_atomic");
  fs_op *op = op_new(L);
  /* The task's strings are not ours to keep while the pool writes: copy them. */
  op->a = strdup(path);
  op->data = malloc(len ? len : 1);
  if (!op->a || !op->data) {
    op_free(op);
    return luaL_error(L, "out of memory");
  }
  memcpy(op->data, data, len);
  op->len = len;
  op->mode = mode;
  return run_op(L, "fs.write_atomic", write_atomic_work, op, ok_k);
}

/* ---- inline ------------------------------------------------------------------------------- */

/* mkdir_p(path [, mode]) -> true */
static int fs_mkdir_p(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int mode = check_mode(L, 2, 0777);
  tide_err err;
  if (tide_fs_mkdir_p(path, (unsigned)mode, &err) < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* read(path) -> string */
static int fs_read(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  char *data;
  size_t len;
  tide_err err;
  if (tide_fs_read(path, &data, &len, &err) < 0)
    return tide_fail_err(L, &err);
  /* NOTE: should lua_pushlstring run out of memory, this one buffer leaks. */
  lua_pushlstring(L, data, len);
  free(data);
  return 1;
}

/* write(path, data) -> true */
static int fs_write(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  tide_err err;
  if (tide_fs_write(path, data, len, &err) < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* exists(path) -> boolean */
static int fs_exists(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  tide_err err;
  int rc = tide_fs_exists(path, &err);
  if (rc < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, rc);
  return 1;
}

static const luaL_Reg functions[] = {
    {"copy_tree", fs_copy_tree},
    {"exists", fs_exists},
    {"glob", fs_glob},
    {"match", fs_match},
    {"mkdir_p", fs_mkdir_p},
    {"read", fs_read},
    {"rm_r", fs_rm_r},
    {"walk", fs_walk},
    {"write", fs_write},
    {"write_atomic", fs_write_atomic},
    {NULL, NULL},
};

int luaopen_tide_fs(lua_State *L)
{
  tide_error_init(L);
  if (luaL_newmetatable(L, OP_MT)) {
    lua_pushcfunction(L, op_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
