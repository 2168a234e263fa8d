/*
** "tide._db": SQL over the runtime's state store, for the Lua modules that keep tables of their own
** (artifacts, secrets, builds, pipelines). The stdlib wraps it as "tide.db", which raises.
**
** Statements run on the store's own connection, so they share its WAL, busy timeout and the
** batched span writes. Prepared statements are cached by SQL text; the cache lives in a userdata
** whose __gc finalizes them, and lua_close runs before the store is closed.
**
** A transaction (tx) calls its function with lua_pcall, which cannot yield: a function that tries
** to block raises instead of leaving a transaction open across the loop, where the store's flush
** timer would find it.
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "lerror.h"
#include "modules.h"
#include "runtime.h"

#define CACHE_SIZE 64
#define BLOB_MT "tide.db.blob"

typedef struct cached {
  char *sql;
  sqlite3_stmt *stmt;
} cached;

typedef struct stmt_cache {
  sqlite3 *db;
  unsigned next; /* round-robin eviction */
  cached slot[CACHE_SIZE];
} stmt_cache;

static void cache_clear(stmt_cache *c)
{
  for (unsigned i = 0; i < CACHE_SIZE; i++) {
    sqlite3_finalize(c->slot[i].stmt);
    free(c->slot[i].sql);
    c->slot[i].stmt = NULL;
    c->slot[i].sql = NULL;
  }
}

static int cache_gc(lua_State *L)
{
  cache_clear(luaL_checkudata(L, 1, "tide.db.cache"));
  return 0;
}

static sqlite3 *check_db(lua_State *L)
{
  tide_store *s = tide_runtime_get(L)->store;
  if (!s)
    luaL_error(L, "the store is not open (a script run opens it; the CLI calls open_store)");
  return tide_store_db(s);
}

static stmt_cache *get_cache(lua_State *L, sqlite3 *db)
{
  stmt_cache *c = lua_touserdata(L, lua_upvalueindex(1));
  if (c->db != db) {
    cache_clear(c);
    c->db = db;
  }
  return c;
}

static int sql_fail(lua_State *L, sqlite3 *db, int rc, const char *sql)
{
  int code = TIDE_ESQL;
  if ((rc & 0xff) == SQLITE_CONSTRAINT)
    code = TIDE_ECONFLICT;
  else if ((rc & 0xff) == SQLITE_READONLY)
    code = TIDE_EREADONLY;
  else if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
    code = TIDE_ECORRUPT;
  return tide_fail(L, code, "%s (in: %.80s)", sqlite3_errmsg(db), sql);
}

/* A cached, reset statement for sql, or NULL with the failure pushed (3 values). */
static sqlite3_stmt *prepare(lua_State *L, stmt_cache *c, const char *sql, size_t len)
{
  for (unsigned i = 0; i < CACHE_SIZE; i++) {
    if (c->slot[i].sql && strcmp(c->slot[i].sql, sql) == 0) {
      sqlite3_reset(c->slot[i].stmt);
      sqlite3_clear_bindings(c->slot[i].stmt);
      return c->slot[i].stmt;
    }
  }
  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(c->db, sql, (int)len + 1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) {
    sql_fail(L, c->db, rc, sql);
    return NULL;
  }
  if (!stmt || (tail && strspn(tail, " \t\r\n;") != strlen(tail))) {
    sqlite3_finalize(stmt);
    luaL_error(L, "one SQL statement expected with parameters: %s", sql);
  }
  cached *slot = &c->slot[c->next++ % CACHE_SIZE];
  sqlite3_finalize(slot->stmt);
  free(slot->sql);
  slot->sql = strdup(sql);
  slot->stmt = NULL;
  if (!slot->sql) {
    sqlite3_finalize(stmt);
    luaL_error(L, "out of memory");
  }
  slot->stmt = stmt;
  return stmt;
}

static void bind_args(lua_State *L, sqlite3_stmt *stmt, int first)
{
  int n = lua_gettop(L) - first + 1;
  if (n != sqlite3_bind_parameter_count(stmt))
    luaL_error(L, "%d SQL parameters given, %d expected", n, sqlite3_bind_parameter_count(stmt));
  for (int i = 0; i < n; i++) {
    int idx = first + i, rc;
    size_t len;
    switch (lua_type(L, idx)) {
      case LUA_TNIL:
        rc = sqlite3_bind_null(stmt, i + 1);
        break;
      case LUA_TBOOLEAN:
        rc = sqlite3_bind_int(stmt, i + 1, lua_toboolean(L, idx));
        break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
          rc = sqlite3_bind_int64(stmt, i + 1, lua_tointeger(L, idx));
        else
          rc = sqlite3_bind_double(stmt, i + 1, lua_tonumber(L, idx));
        break;
      case LUA_TSTRING: {
        const char *s = lua_tolstring(L, idx, &len);
        rc = sqlite3_bind_text64(stmt, i + 1, s, len, SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      case LUA_TUSERDATA: {
        luaL_checkudata(L, idx, BLOB_MT);
        lua_getiuservalue(L, idx, 1);
        const char *s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1); /* the userdata keeps the string alive */
        rc = sqlite3_bind_blob64(stmt, i + 1, s, len, SQLITE_STATIC);
        break;
      }
      default:
        luaL_argerror(L, idx, "nil, boolean, number, string or db.blob expected");
        return;
    }
    if (rc != SQLITE_OK)
      luaL_error(L, "cannot bind parameter %d: %s", i + 1, sqlite3_errstr(rc));
  }
}

static void push_column(lua_State *L, sqlite3_stmt *stmt, int col)
{
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      lua_pushinteger(L, sqlite3_column_int64(stmt, col));
      break;
    case SQLITE_FLOAT:
      lua_pushnumber(L, sqlite3_column_double(stmt, col));
      break;
    case SQLITE_TEXT:
      lua_pushlstring(L, (const char *)sqlite3_column_text(stmt, col),
                      (size_t)sqlite3_column_bytes(stmt, col));
      break;
    case SQLITE_BLOB: {
      const void *p = sqlite3_column_blob(stmt, col);
      lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(stmt, col));
      break;
    }
    default:
      lua_pushnil(L);
  }
}

/* Runs stmt to the end, collecting rows into a list (or only the first when first_only). */
static int run_query(lua_State *L, sqlite3 *db, sqlite3_stmt *stmt, const char *sql, int first_only)
{
  int ncol = sqlite3_column_count(stmt), rc, n = 0;
  if (!first_only)
    lua_newtable(L);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    lua_createtable(L, 0, ncol);
    for (int c = 0; c < ncol; c++) {
      push_column(L, stmt, c);
      lua_setfield(L, -2, sqlite3_column_name(stmt, c));
    }
    if (first_only) {
      sqlite3_reset(stmt);
      return 1;
    }
    lua_rawseti(L, -2, ++n);
  }
  if (rc != SQLITE_DONE) {
    int failed = sql_fail(L, db, rc, sql);
    sqlite3_reset(stmt);
    return failed;
  }
  sqlite3_reset(stmt);
  if (first_only)
    lua_pushnil(L);
  return 1;
}

/* rows(sql, ...) -> list of row tables | nil, msg, code */
static int l_rows(lua_State *L)
{
  size_t len;
  const char *sql = luaL_checklstring(L, 1, &len);
  sqlite3 *db = check_db(L);
  sqlite3_stmt *stmt = prepare(L, get_cache(L, db), sql, len);
  if (!stmt)
    return 3;
  bind_args(L, stmt, 2);
  return run_query(L, db, stmt, sql, 0);
}

/* row(sql, ...) -> the first row table or nil | nil, msg, code */
static int l_row(lua_State *L)
{
  size_t len;
  const char *sql = luaL_checklstring(L, 1, &len);
  sqlite3 *db = check_db(L);
  sqlite3_stmt *stmt = prepare(L, get_cache(L, db), sql, len);
  if (!stmt)
    return 3;
  bind_args(L, stmt, 2);
  return run_query(L, db, stmt, sql, 1);
}

/* Runs every statement of a parameterless script, uncached. */
static int exec_script(lua_State *L, sqlite3 *db, const char *sql)
{
  const char *next = sql;
  while (*next) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, next, -1, &stmt, &next);
    if (rc != SQLITE_OK)
      return sql_fail(L, db, rc, sql);
    if (!stmt)
      continue; /* whitespace or a comment */
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
      ;
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
      return sql_fail(L, db, rc, sql);
  }
  return 0;
}

/* exec(sql, ...) -> changes, last_insert_rowid | nil, msg, code */
static int l_exec(lua_State *L)
{
  size_t len;
  const char *sql = luaL_checklstring(L, 1, &len);
  sqlite3 *db = check_db(L);
  if (lua_gettop(L) == 1) {
    int failed = exec_script(L, db, sql);
    if (failed)
      return failed;
  } else {
    sqlite3_stmt *stmt = prepare(L, get_cache(L, db), sql, len);
    if (!stmt)
      return 3;
    bind_args(L, stmt, 2);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
      ;
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
      return sql_fail(L, db, rc, sql);
  }
  lua_pushinteger(L, sqlite3_changes64(db));
  lua_pushinteger(L, sqlite3_last_insert_rowid(db));
  return 2;
}

/*
** tx(fn, ...) -> fn's results. BEGIN IMMEDIATE (or a SAVEPOINT inside a transaction), fn(...),
** COMMIT; on an error ROLLBACK and re-raise it. A failure to begin or commit is returned as the
** fail triple.
*/
static int l_tx(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TFUNCTION);
  sqlite3 *db = check_db(L);
  int nested = !sqlite3_get_autocommit(db);
  int failed = exec_script(L, db, nested ? "SAVEPOINT tide_tx" : "BEGIN IMMEDIATE");
  if (failed)
    return failed;
  int base = 1;
  if (lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0) != LUA_OK) {
    exec_script(L, db, nested ? "ROLLBACK TO tide_tx; RELEASE tide_tx" : "ROLLBACK");
    lua_settop(L, base); /* the error object (exec_script pushed nothing on success) */
    return lua_error(L);
  }
  int nres = lua_gettop(L);
  failed = exec_script(L, db, nested ? "RELEASE tide_tx" : "COMMIT");
  if (failed) {
    exec_script(L, db, nested ? "ROLLBACK TO tide_tx; RELEASE tide_tx" : "ROLLBACK");
    return failed;
  }
  return nres;
}

/* blob(s) -> a value that binds as a BLOB instead of TEXT */
static int l_blob(lua_State *L)
{
  luaL_checkstring(L, 1);
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, BLOB_MT);
  return 1;
}

/* in_tx() -> whether a transaction is open on the store's connection */
static int l_in_tx(lua_State *L)
{
  lua_pushboolean(L, !sqlite3_get_autocommit(check_db(L)));
  return 1;
}

static const luaL_Reg functions[] = {
    {"exec", l_exec}, {"rows", l_rows},   {"row", l_row}, {"tx", l_tx},
    {"blob", l_blob}, {"in_tx", l_in_tx}, {NULL, NULL},
};

int luaopen_tide_db(lua_State *L)
{
  luaL_newmetatable(L, BLOB_MT);
  lua_pop(L, 1);
  luaL_newlibtable(L, functions);
  stmt_cache *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  if (luaL_newmetatable(L, "tide.db.cache")) {
    lua_pushcfunction(L, cache_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  luaL_setfuncs(L, functions, 1);
  return 1;
}
