/*
** require "tide.yaml": decode YAML into plain Lua tables, encode Lua values as YAML.
**
** Parsing, limits and the scalar resolution rule live in host/yaml.c; this file only turns the
** node tree into Lua values and back. Each decode returns, beside the value, a "where" object
** that keeps the node tree alive and maps every decoded table (through a weak-keyed table) to
** its node, so schema code can ask for positions, tags and scalar text as written long after
** decoding, without the document tables carrying any metadata.
**
** Aliased collections decode to one shared Lua table, as PyYAML shares objects; nothing is
** copied, so an alias can never multiply memory.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide/yaml.h"

#include "lerror.h"
#include "modules.h"

#define WHERE_MT "tide.yaml.Where"
#define EMITTER_MT "tide.yaml.Emitter"

/* The where object: owns the stream; uservalue 1 is the weak table {decoded table = node}. */
typedef struct where {
  tide_yaml_stream *stream; /* NULL only before the parse succeeds */
} where;

typedef struct emitter_box {
  tide_yaml_emitter *em; /* owned; freed by __gc */
} emitter_box;

/* Reads an options table at idx whose keys must all be in allowed; raises on anything else. */
static void check_option_keys(lua_State *L, int idx, const char *const *allowed)
{
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *const *a = allowed;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (; *a && strcmp(*a, lua_tostring(L, -1)) != 0; a++)
        ;
    if (lua_type(L, -1) != LUA_TSTRING || !*a)
      luaL_argerror(L, idx, lua_pushfstring(L, "unexpected key '%s'", luaL_tolstring(L, -1, NULL)));
  }
}

/* ---- decode ----------------------------------------------------------------------------- */

typedef struct convert {
  lua_State *L;
  int map;  /* stack index of the where's weak table */
  int memo; /* stack index of {node lightuserdata = table} for aliased collections */
} convert;

/* Pushes the Lua value of n. Raises only for memory errors, when w already owns everything. */
static void push_node(convert *c, const tide_yaml_node *n)
{
  lua_State *L = c->L;
  luaL_checkstack(L, 4, "yaml.decode: nesting too deep");
  if (n->kind == TIDE_YAML_SCALAR) {
    switch (n->type) {
      case TIDE_YAML_NULL:
        lua_pushlightuserdata(L, NULL);
        break;
      case TIDE_YAML_BOOL:
        lua_pushboolean(L, n->as.b);
        break;
      case TIDE_YAML_INT:
        lua_pushinteger(L, (lua_Integer)n->as.i);
        break;
      case TIDE_YAML_FLOAT:
        lua_pushnumber(L, (lua_Number)n->as.f);
        break;
      default:
        lua_pushlstring(L, n->value, n->len);
        break;
    }
    return;
  }
  if (n->aliases) {
    if (lua_rawgetp(L, c->memo, n) != LUA_TNIL)
      return;
    lua_pop(L, 1);
  }
  int seq = n->kind == TIDE_YAML_SEQUENCE;
  int narr = n->len > INT32_MAX ? INT32_MAX : (int)n->len;
  lua_createtable(L, seq ? narr : 0, seq ? 0 : narr); /* t */
  lua_pushvalue(L, -1);
  lua_pushlightuserdata(L, (void *)n);
  lua_rawset(L, c->map); /* map[t] = node */
  if (n->aliases) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, c->memo, n);
  }
  for (size_t i = 0; i < n->len; i++) {
    if (seq) {
      push_node(c, n->items[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    } else {
      lua_pushlstring(L, n->pairs[i].key->value, n->pairs[i].key->len);
      push_node(c, n->pairs[i].value);
      lua_rawset(L, -3);
    }
  }
}

static int decode_common(lua_State *L, int all)
{
  static const char *const keys[] = {"name", NULL};
  size_t len;
  const char *name = "<string>";
  luaL_checktype(L, 1, LUA_TSTRING);
  const char *text = lua_tolstring(L, 1, &len);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    check_option_keys(L, 2, keys);
    if (lua_getfield(L, 2, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 2, "'name' must be a string");
      name = lua_tostring(L, -1); /* stays on the stack, so stays alive */
    }
  }
  /* Validated; now the owner first, then the resource. */
  where *w = lua_newuserdatauv(L, sizeof *w, 1); /* ... w */
  w->stream = NULL;
  luaL_setmetatable(L, WHERE_MT);
  lua_newtable(L); /* ... w map */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, 1);
  tide_err err;
  if (tide_yaml_parse(text, len, name, &w->stream, &err) != 0)
    return tide_fail_err(L, &err);
  lua_newtable(L); /* ... w map memo */
  convert c = {L, lua_absindex(L, -2), lua_absindex(L, -1)};
  if (all) {
    lua_createtable(L, w->stream->ndocs > INT32_MAX ? INT32_MAX : (int)w->stream->ndocs, 0);
    for (size_t i = 0; i < w->stream->ndocs; i++) {
      push_node(&c, w->stream->docs[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  } else if (w->stream->ndocs) {
    push_node(&c, w->stream->docs[0]);
  } else {
    lua_pushlightuserdata(L, NULL); /* an empty stream reads as null, like an empty document */
  }
  lua_pushvalue(L, c.map - 1); /* ... w map memo value w */
  return 2;
}

static int yaml_decode(lua_State *L)
{
  return decode_common(L, 0);
}

static int yaml_decode_all(lua_State *L)
{
  return decode_common(L, 1);
}

/* ---- where ------------------------------------------------------------------------------ */

/* The node decoded into the table at idx, or NULL when this where did not decode it. */
static const tide_yaml_node *where_node(lua_State *L, int idx)
{
  luaL_checkudata(L, 1, WHERE_MT);
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  const tide_yaml_node *n = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return n;
}

/*
** Finds the entry of n named by the Lua key at idx: a string for a mapping, an integer index for
** a sequence. Sets *key (the key node; the item itself for sequences) and returns the value node,
** or NULL when there is no such entry.
*/
static const tide_yaml_node *child(lua_State *L, const tide_yaml_node *n, int idx,
                                   const tide_yaml_node **key)
{
  luaL_checkany(L, idx);
  if (!n)
    return NULL;
  if (n->kind == TIDE_YAML_MAPPING && lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const tide_yaml_pair *p = tide_yaml_mapping_get(n, s, len);
    if (p)
      *key = p->key;
    return p ? p->value : NULL;
  }
  int isint = 0;
  lua_Integer i = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
  if (n->kind == TIDE_YAML_SEQUENCE && isint) {
    if (i >= 1 && (lua_Unsigned)i <= n->len)
      return *key = n->items[i - 1];
  }
  return NULL;
}

static int push_pos(lua_State *L, const tide_yaml_node *n)
{
  if (!n) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, n->line);
  lua_pushinteger(L, n->col);
  return 2;
}

/* where:at(tbl [, key]) -> line, col of tbl, or of the value tbl[key]; nil when unknown. */
static int where_at(lua_State *L)
{
  const tide_yaml_node *n = where_node(L, 2), *key;
  if (lua_isnone(L, 3))
    return push_pos(L, n);
  return push_pos(L, child(L, n, 3, &key));
}

/* where:key_at(tbl, key) -> line, col of the key itself (of the item, in a sequence). */
static int where_key_at(lua_State *L)
{
  const tide_yaml_node *n = where_node(L, 2), *key = NULL;
  return push_pos(L, child(L, n, 3, &key) ? key : NULL);
}

/* where:raw(tbl, key) -> the scalar text at tbl[key] as written, or nil for a collection. */
static int where_raw(lua_State *L)
{
  const tide_yaml_node *n = where_node(L, 2), *key;
  const tide_yaml_node *v = child(L, n, 3, &key);
  if (v && v->kind == TIDE_YAML_SCALAR)
    lua_pushlstring(L, v->value, v->len);
  else
    lua_pushnil(L);
  return 1;
}

/* where:tag(tbl [, key]) -> "!Ref", "!!str", ... or nil when untagged. */
static int where_tag(lua_State *L)
{
  const tide_yaml_node *n = where_node(L, 2), *key;
  if (!lua_isnone(L, 3))
    n = child(L, n, 3, &key);
  if (!n || !n->tag) {
    lua_pushnil(L);
    return 1;
  }
  size_t plen = sizeof TIDE_YAML_TAG_PREFIX - 1;
  if (strncmp(n->tag, TIDE_YAML_TAG_PREFIX, plen) == 0)
    lua_pushfstring(L, "!!%s", n->tag + plen);
  else
    lua_pushstring(L, n->tag);
  return 1;
}

/* where:keys(tbl) -> keys in document order (1..n for a sequence), or nil when unknown. */
static int where_keys(lua_State *L)
{
  const tide_yaml_node *n = where_node(L, 2);
  if (!n) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, n->len > INT32_MAX ? INT32_MAX : (int)n->len, 0);
  for (size_t i = 0; i < n->len; i++) {
    if (n->kind == TIDE_YAML_MAPPING)
      lua_pushlstring(L, n->pairs[i].key->value, n->pairs[i].key->len);
    else
      lua_pushinteger(L, (lua_Integer)i + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int where_gc(lua_State *L)
{
  where *w = luaL_checkudata(L, 1, WHERE_MT);
  tide_yaml_free(w->stream);
  w->stream = NULL;
  return 0;
}

static int where_tostring(lua_State *L)
{
  where *w = luaL_checkudata(L, 1, WHERE_MT);
  lua_pushfstring(L, "tide.yaml.Where (%d documents)", w->stream ? (int)w->stream->ndocs : 0);
  return 1;
}

/* ---- encode ----------------------------------------------------------------------------- */

typedef struct encoder {
  lua_State *L;
  tide_yaml_emitter *em;
  int seen; /* stack index of {table = true} for the tables on the current path */
  tide_err err;
} encoder;

typedef struct sort_key {
  const char *s;
  size_t len;
  int orig; /* index in the originals table */
} sort_key;

static int key_cmp(const void *a, const void *b)
{
  const sort_key *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->s, y->s, n);
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int encode_value(encoder *e, int idx, int depth);

static int emit_number(encoder *e, int idx)
{
  char buf[32];
  size_t n;
  if (lua_isinteger(e->L, idx))
    n = (size_t)snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  else
    n = tide_yaml_format_float((double)lua_tonumber(e->L, idx), buf);
  return tide_yaml_emit_scalar(e->em, buf, n, TIDE_YAML_PLAIN, NULL, &e->err);
}

/* Pushes the mapping key at idx as the string it is written as; raises for other key types. */
static void push_key_string(encoder *e, int idx)
{
  lua_State *L = e->L;
  char buf[32];
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      lua_pushvalue(L, idx);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
      else
        lua_pushlstring(L, buf, tide_yaml_format_float((double)lua_tonumber(L, idx), buf));
      break;
    default:
      luaL_error(L, "yaml.encode: cannot encode a %s key", luaL_typename(L, idx));
  }
}

static int encode_mapping(encoder *e, int t, int depth)
{
  lua_State *L = e->L;
  int rc, n = 0;
  lua_newtable(L); /* originals: the keys as they are in t */
  int origs = lua_gettop(L);
  lua_newtable(L); /* strings: the keys as written */
  int strs = origs + 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (n == INT32_MAX)
      luaL_error(L, "yaml.encode: table too large");
    n++;
    lua_pushvalue(L, -1);
    lua_rawseti(L, origs, n);
    push_key_string(e, lua_gettop(L));
    lua_rawseti(L, strs, n);
  }
  /* Scratch for sorting lives in a userdata, so a raise cannot leak it. */
  sort_key *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys + 1, 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, strs, i + 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].len); /* anchored in strs */
    keys[i].orig = i + 1;
    lua_pop(L, 1);
  }
  qsort(keys, (size_t)n, sizeof *keys, key_cmp);
  for (int i = 1; i < n; i++)
    if (key_cmp(&keys[i - 1], &keys[i]) == 0)
      luaL_error(L, "yaml.encode: two keys are both written '%s'", keys[i].s);
  if ((rc = tide_yaml_emit_mapping_start(e->em, NULL, &e->err)))
    return rc;
  for (int i = 0; i < n; i++) {
    if ((rc = tide_yaml_emit_scalar(e->em, keys[i].s, keys[i].len, TIDE_YAML_ANY, NULL, &e->err)))
      return rc;
    lua_rawgeti(L, origs, keys[i].orig);
    lua_rawget(L, t);
    rc = encode_value(e, lua_gettop(L), depth);
    lua_pop(L, 1);
    if (rc)
      return rc;
  }
  lua_pop(L, 3);
  return tide_yaml_emit_mapping_end(e->em, &e->err);
}

/* True when the table at t has exactly the keys 1..n for some n >= 1. */
static int is_sequence(lua_State *L, int t, lua_Integer *np)
{
  lua_Integer n = (lua_Integer)lua_rawlen(L, t), count = 0;
  if (n == 0)
    return 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n ||
        ++count > n) {
      lua_pop(L, 1);
      return 0;
    }
  }
  *np = n;
  return count == n;
}

static int encode_table(encoder *e, int t, int depth)
{
  lua_State *L = e->L;
  int rc;
  lua_Integer n;
  if (depth >= TIDE_YAML_MAX_DEPTH)
    return luaL_error(L, "yaml.encode: nesting deeper than %d levels", TIDE_YAML_MAX_DEPTH);
  luaL_checkstack(L, 8, "yaml.encode: nesting too deep");
  if (lua_rawgetp(L, e->seen, lua_topointer(L, t)) != LUA_TNIL)
    return luaL_error(L, "yaml.encode: cannot encode a table that contains itself");
  lua_pop(L, 1);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, e->seen, lua_topointer(L, t));
  if (is_sequence(L, t, &n)) {
    if ((rc = tide_yaml_emit_sequence_start(e->em, NULL, &e->err)))
      return rc;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, t, i);
      rc = encode_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc)
        return rc;
    }
    rc = tide_yaml_emit_sequence_end(e->em, &e->err);
  } else {
    rc = encode_mapping(e, t, depth + 1);
  }
  /* Off the path again: the same table may appear twice side by side (not a cycle). */
  lua_pushnil(L);
  lua_rawsetp(L, e->seen, lua_topointer(L, t));
  return rc;
}

static int encode_value(encoder *e, int idx, int depth)
{
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return tide_yaml_emit_scalar(e->em, "null", 4, TIDE_YAML_PLAIN, NULL, &e->err);
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx)
                 ? tide_yaml_emit_scalar(e->em, "true", 4, TIDE_YAML_PLAIN, NULL, &e->err)
                 : tide_yaml_emit_scalar(e->em, "false", 5, TIDE_YAML_PLAIN, NULL, &e->err);
    case LUA_TNUMBER:
      return emit_number(e, idx);
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return tide_yaml_emit_scalar(e->em, s, len, TIDE_YAML_ANY, NULL, &e->err);
    }
    case LUA_TTABLE:
      return encode_table(e, idx, depth);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL)
        return tide_yaml_emit_scalar(e->em, "null", 4, TIDE_YAML_PLAIN, NULL, &e->err);
      /* fallthrough */
    default:
      return luaL_error(L, "yaml.encode: cannot encode a %s", luaL_typename(L, idx));
  }
}

static int yaml_encode(lua_State *L)
{
  static const char *const keys[] = {"indent", NULL};
  int indent = 2;
  luaL_checkany(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    check_option_keys(L, 2, keys);
    if (lua_getfield(L, 2, "indent") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 2 || lua_tointeger(L, -1) > 9)
        luaL_argerror(L, 2, "'indent' must be an integer from 2 to 9");
      indent = (int)lua_tointeger(L, -1);
    }
  }
  lua_settop(L, 2);
  emitter_box *box = lua_newuserdatauv(L, sizeof *box, 0); /* 3 */
  box->em = NULL;
  luaL_setmetatable(L, EMITTER_MT);
  lua_newtable(L); /* 4: tables on the current path */
  encoder e = {.L = L, .seen = 4};
  const char *text;
  size_t len;
  if (tide_yaml_emitter_new(&box->em, indent, &e.err))
    return tide_fail_err(L, &e.err);
  e.em = box->em;
  if (tide_yaml_emit_document_start(e.em, 0, &e.err) || encode_value(&e, 1, 0) ||
      tide_yaml_emit_document_end(e.em, &e.err) ||
      tide_yaml_emitter_finish(e.em, &text, &len, &e.err))
    return tide_fail_err(L, &e.err);
  lua_pushlstring(L, text, len);
  tide_yaml_emitter_free(box->em);
  box->em = NULL;
  return 1;
}

static int emitter_gc(lua_State *L)
{
  emitter_box *box = luaL_checkudata(L, 1, EMITTER_MT);
  tide_yaml_emitter_free(box->em);
  box->em = NULL;
  return 0;
}

/* ---- module ----------------------------------------------------------------------------- */

static const luaL_Reg yaml_functions[] = {
    {"decode", yaml_decode},
    {"decode_all", yaml_decode_all},
    {"encode", yaml_encode},
    {NULL, NULL},
};

static const luaL_Reg where_methods[] = {
    {"at", where_at},   {"key_at", where_key_at}, {"keys", where_keys},
    {"raw", where_raw}, {"tag", where_tag},       {NULL, NULL},
};

static const luaL_Reg where_meta[] = {
    {"__gc", where_gc},
    {"__index", NULL},
    {"__tostring", where_tostring},
    {NULL, NULL},
};

static void createmeta(lua_State *L)
{
  luaL_newmetatable(L, WHERE_MT);
  luaL_setfuncs(L, where_meta, 0);
  luaL_newlibtable(L, where_methods);
  luaL_setfuncs(L, where_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, EMITTER_MT);
  lua_pushcfunction(L, emitter_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int luaopen_tide_yaml(lua_State *L)
{
  createmeta(L);
  luaL_newlib(L, yaml_functions);
  lua_pushlightuserdata(L, NULL); /* the same value as lua-cjson's json.null */
  lua_setfield(L, -2, "null");
  return 1;
}
