/*
** "tide.json": JSON for Lua. Decoding is lua-cjson's (a private instance of the module, so the
** settings made here do not leak into a script's own require "cjson"); encoding is done here,
** because the lua-cjson of Debian 12 (2.1.0) can neither sort keys, indent, nor write an empty
** array.
**
** Empty arrays survive a round trip: before cjson sees the text, every "[ ]" outside a string
** becomes a one-element array holding a per-process random marker string, and the walk after
** decoding turns each such table back into an empty table carrying the json.array metatable.
** The same walk turns integral floats (cjson decodes every number as a float) into integers.
**
** Both directions refuse nesting deeper than MAX_DEPTH, so hostile input cannot exhaust the C
** stack; encoding also uses that limit to stop on reference cycles.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "tide/err.h"

#include "lerror.h"
#include "modules.h"

/* lua-cjson ships no header. */
int luaopen_cjson(lua_State *L);

#define MAX_DEPTH 1000 /* cjson's own default for decoding; used for encoding too */
#define BUFFER_MT "tide.json.Buffer"

static const char array_key = 'a'; /* registry: the json.array metatable */

/* The marker that stands for an empty array while cjson decodes; "\0" plus random hex. */
static char marker[40];
static size_t marker_len;
static char marker_json[64]; /* the same as a JSON string literal, quotes included */

/* ---- decode ----------------------------------------------------------------------------- */

static int is_ws(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
** Copies text into b with every empty array outside strings replaced by [marker]. Returns how
** many were replaced. Invalid JSON is copied faithfully enough: "[ ]" and "[marker]" are both
** whole values, so the rewrite never turns invalid text into valid text or back.
*/
static size_t mark_empty_arrays(luaL_Buffer *b, const char *s, size_t len)
{
  size_t n = 0, copied = 0;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = 0;
      continue;
    }
    if (c == '"') {
      in_string = 1;
    } else if (c == '[') {
      size_t j = i + 1;
      while (j < len && is_ws(s[j]))
        j++;
      if (j < len && s[j] == ']') {
        if (b) {
          luaL_addlstring(b, s + copied, i + 1 - copied);
          luaL_addstring(b, marker_json);
          copied = j;
        }
        n++;
        i = j - 1;
      }
    }
  }
  if (b)
    luaL_addlstring(b, s + copied, len - copied);
  return n;
}

/* True when the table at idx is [marker], what an empty array decodes to here. */
static int is_marker_array(lua_State *L, int idx)
{
  if (lua_rawlen(L, idx) != 1)
    return 0;
  size_t len = 0;
  const char *s = lua_rawgeti(L, idx, 1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  int is = s && len == marker_len && memcmp(s, marker, len) == 0;
  lua_pop(L, 1);
  return is;
}

/*
** Walks a decoded value at idx: integral floats become integers, marker arrays become empty
** json.array tables. Depth is bounded by cjson's decode limit.
*/
static void fix_decoded(lua_State *L, int idx)
{
  luaL_checkstack(L, 4, "json: nesting too deep");
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* stack: key, value */
    int t = lua_type(L, -1);
    if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number x = lua_tonumber(L, -1);
      /* Only where every integer is exact as a double, so no value changes. */
      if (x == floor(x) && fabs(x) <= 9007199254740992.0) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)x);
        lua_rawset(L, idx);
      }
    } else if (t == LUA_TTABLE) {
      if (is_marker_array(L, -1)) {
        lua_pushnil(L);
        lua_rawseti(L, -2, 1);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
        lua_setmetatable(L, -2);
      } else {
        fix_decoded(L, -1);
      }
    }
    lua_pop(L, 1);
  }
}

/* Fixes a top-level decoded value in place at the top of the stack. */
static void fix_root(lua_State *L)
{
  if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
    lua_Number x = lua_tonumber(L, -1);
    if (x == floor(x) && fabs(x) <= 9007199254740992.0) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)x);
    }
  } else if (lua_type(L, -1) == LUA_TTABLE) {
    /* Wrap it so the root table gets the same treatment as nested ones. */
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    fix_decoded(L, -1);
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
}

/* Runs cjson.decode (upvalue 1) on the string at the top; 0 and the value, or 1 and a message. */
static int cjson_decode(lua_State *L)
{
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, -2);
  int rc = lua_pcall(L, 1, 1, 0);
  if (rc != LUA_OK && rc != LUA_ERRRUN)
    lua_error(L); /* out of memory: not a property of the text */
  return rc != LUA_OK;
}

/* decode(text) -> value, or nil, "json: message", "EJSON" */
static int json_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  size_t marks = mark_empty_arrays(NULL, s, len);
  if (marks > 0) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    mark_empty_arrays(&b, s, len);
    luaL_pushresult(&b);
  } else {
    lua_pushvalue(L, 1);
  }
  if (cjson_decode(L)) {
    if (marks > 0) {
      /* Report positions in the caller's text, not in the rewritten one. */
      lua_pop(L, 1);
      lua_pushvalue(L, 1);
      if (!cjson_decode(L))
        lua_pushliteral(L, "invalid JSON"); /* cannot happen: see mark_empty_arrays */
    }
    const char *msg = lua_tostring(L, -1);
    return tide_fail(L, TIDE_EJSON, "json: %s", msg ? msg : "invalid JSON");
  }
  fix_root(L);
  return 1;
}

/* ---- encode ----------------------------------------------------------------------------- */

/* A growable byte buffer owned by a userdata, so a raise in the middle frees it. */
typedef struct jbuf {
  char *p;
  size_t n, cap;
} jbuf;

static int jbuf_gc(lua_State *L)
{
  jbuf *b = luaL_checkudata(L, 1, BUFFER_MT);
  free(b->p);
  b->p = NULL;
  return 0;
}

typedef struct enc {
  lua_State *L;
  jbuf *b;
  int pretty, sort;
} enc;

static void put(enc *e, const char *s, size_t n)
{
  jbuf *b = e->b;
  if (b->cap - b->n < n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < n) {
      if (cap > SIZE_MAX / 2)
        luaL_error(e->L, "json: output too large");
      cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
      luaL_error(e->L, "json: out of memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void putc_(enc *e, char c)
{
  put(e, &c, 1);
}

static void newline(enc *e, int depth)
{
  if (!e->pretty)
    return;
  putc_(e, '\n');
  for (int i = 0; i < depth; i++)
    put(e, "  ", 2);
}

static void put_string(enc *e, const char *s, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  putc_(e, '"');
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20) {
      memcpy(u, "\\u00", 4);
      u[4] = hex[c >> 4];
      u[5] = hex[c & 15];
      u[6] = '\0';
      esc = u;
    }
    if (esc) {
      put(e, s + run, i - run);
      put(e, esc, strlen(esc));
      run = i + 1;
    }
  }
  put(e, s + run, len - run);
  putc_(e, '"');
}

/* Formats a float with the fewest digits that read back as the same double. */
static int format_float(char *buf, size_t size, lua_Number x)
{
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, size, "%.*g", prec, (double)x);
    if (strtod(buf, NULL) == (double)x)
      break;
  }
  return n;
}

static void put_number(enc *e, int idx)
{
  char buf[64];
  int n;
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    lua_Number x = lua_tonumber(e->L, idx);
    if (isnan(x) || isinf(x))
      luaL_error(e->L, "json: cannot encode %s", isnan(x) ? "NaN" : "infinity");
    n = format_float(buf, sizeof buf, x);
  }
  put(e, buf, (size_t)n);
}

static void encode_value(enc *e, int idx, int depth);

static void encode_array(enc *e, int idx, lua_Integer n, int depth)
{
  lua_State *L = e->L;
  if (n == 0) {
    put(e, "[]", 2);
    return;
  }
  putc_(e, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1)
      putc_(e, ',');
    newline(e, depth + 1);
    lua_rawgeti(L, idx, i);
    encode_value(e, -1, depth + 1);
    lua_pop(L, 1);
  }
  newline(e, depth);
  putc_(e, ']');
}

/* Pushes the key at idx as a string; numbers become their JSON text, other types raise. */
static void push_key_string(enc *e, int idx)
{
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING) {
    lua_pushvalue(L, idx);
  } else if (t == LUA_TNUMBER) {
    char buf[64];
    if (lua_isinteger(L, idx)) {
      snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
    } else {
      lua_Number x = lua_tonumber(L, idx);
      if (isnan(x) || isinf(x))
        luaL_error(L, "json: cannot encode a NaN or infinite key");
      format_float(buf, sizeof buf, x);
    }
    lua_pushstring(L, buf);
  } else {
    luaL_error(L, "json: cannot encode a table key of type %s", lua_typename(L, t));
  }
}

typedef struct skey {
  const char *s;
  size_t len;
  lua_Integer i; /* index in the keys table */
} skey;

static int skey_cmp(const void *a, const void *b)
{
  const skey *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->s, y->s, n);
  if (c)
    return c;
  return (x->len > y->len) - (x->len < y->len);
}

static void encode_member(enc *e, int idx, int kidx, int first, int depth)
{
  /* kidx: the key as a string; the value is looked up with the original key at kidx + 1 */
  if (!first)
    putc_(e, ',');
  newline(e, depth + 1);
  size_t kl;
  const char *ks = lua_tolstring(e->L, kidx, &kl);
  put_string(e, ks, kl);
  putc_(e, ':');
  if (e->pretty)
    putc_(e, ' ');
}

static void encode_object(enc *e, int idx, lua_Integer count, int depth)
{
  lua_State *L = e->L;
  if (count == 0) {
    put(e, "{}", 2);
    return;
  }
  putc_(e, '{');
  if (!e->sort) {
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      /* stack: key, value */
      push_key_string(e, -2);
      encode_member(e, idx, -1, first, depth);
      lua_pop(L, 1);
      encode_value(e, -1, depth + 1);
      lua_pop(L, 1);
      first = 0;
    }
  } else {
    /* keys: the original keys at 2i-1 and their strings at 2i, all anchored in one table */
    lua_createtable(L, (int)(count < INT32_MAX / 2 ? count * 2 : 0), 0);
    int kt = lua_gettop(L);
    skey *v = lua_newuserdatauv(L, (size_t)count * sizeof *v, 0);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_rawseti(L, kt, 2 * n + 1);
      push_key_string(e, -1);
      v[n].s = lua_tolstring(L, -1, &v[n].len);
      v[n].i = n + 1;
      lua_rawseti(L, kt, 2 * n + 2); /* anchors the string v[n].s points into */
      n++;
    }
    qsort(v, (size_t)n, sizeof *v, skey_cmp);
    for (lua_Integer i = 0; i < n; i++) {
      lua_rawgeti(L, kt, 2 * v[i].i);
      encode_member(e, idx, -1, i == 0, depth);
      lua_pop(L, 1);
      lua_rawgeti(L, kt, 2 * v[i].i - 1);
      lua_rawget(L, idx);
      encode_value(e, -1, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  newline(e, depth);
  putc_(e, '}');
}

static void encode_table(enc *e, int idx, int depth)
{
  lua_State *L = e->L;
  if (depth >= MAX_DEPTH)
    luaL_error(L, "json: cannot encode, nesting deeper than %d (a cycle?)", MAX_DEPTH);
  luaL_checkstack(L, 8, "json: nesting too deep");
  if (lua_getmetatable(L, idx)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    int is_array = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (is_array) {
      encode_array(e, idx, (lua_Integer)lua_rawlen(L, idx), depth);
      return;
    }
  }
  /* A table whose keys are all positive integers is an array, holes becoming null. */
  lua_Integer count = 0, max = 0;
  int array = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (array && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
      lua_Integer k = lua_tointeger(L, -1);
      if (k > max)
        max = k;
    } else {
      array = 0;
    }
  }
  if (count > 0 && array) {
    /* cjson's rule: refuse arrays that are mostly holes rather than write a huge list of null */
    if (max > 10 && max / 2 > count)
      luaL_error(L, "json: cannot encode an excessively sparse array");
    encode_array(e, idx, max, depth);
    return;
  }
  encode_object(e, idx, count, depth);
}

static void encode_value(enc *e, int idx, int depth)
{
  lua_State *L = e->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      put(e, "null", 4);
      break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx))
        put(e, "true", 4);
      else
        put(e, "false", 5);
      break;
    case LUA_TNUMBER:
      put_number(e, idx);
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      put_string(e, s, len);
      break;
    }
    case LUA_TTABLE:
      encode_table(e, idx, depth);
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        put(e, "null", 4);
        break;
      }
      /* fall through */
    default:
      luaL_error(L, "json: cannot encode a value of type %s", luaL_typename(L, idx));
  }
}

/* Reads {pretty = bool, sort_keys = bool}; any other key is a mistake. */
static void check_options(lua_State *L, int idx, enc *e)
{
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  int sort_set = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k && strcmp(k, "pretty") == 0) {
      luaL_argexpected(L, lua_isboolean(L, -1), idx, "boolean for 'pretty'");
      e->pretty = lua_toboolean(L, -1);
    } else if (k && strcmp(k, "sort_keys") == 0) {
      luaL_argexpected(L, lua_isboolean(L, -1), idx, "boolean for 'sort_keys'");
      e->sort = lua_toboolean(L, -1);
      sort_set = 1;
    } else {
      lua_pushvalue(L, -2);
      luaL_argerror(L, idx, lua_pushfstring(L, "unexpected key '%s'", luaL_tolstring(L, -1, NULL)));
    }
    lua_pop(L, 1);
  }
  if (!sort_set)
    e->sort = e->pretty;
}

/* encode(value [, {pretty=, sort_keys=}]) -> text; raises on values JSON cannot hold */
static int json_encode(lua_State *L)
{
  luaL_checkany(L, 1);
  enc e = {L, NULL, 0, 0};
  check_options(L, 2, &e);
  lua_settop(L, 2);
  e.b = lua_newuserdatauv(L, sizeof *e.b, 0);
  memset(e.b, 0, sizeof *e.b);
  luaL_setmetatable(L, BUFFER_MT);
  encode_value(&e, 1, 0);
  lua_pushlstring(L, e.b->p ? e.b->p : "", e.b->n);
  return 1;
}

/* array([t]) -> t marked as a JSON array, so that an empty one encodes as [] */
static int json_array(lua_State *L)
{
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getmetatable(L, 1)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    if (!lua_rawequal(L, -1, -2))
      luaL_argerror(L, 1, "table already has a metatable");
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
  lua_setmetatable(L, 1);
  return 1;
}

/* is_array(v) -> true when v carries the json.array mark */
static int json_is_array(lua_State *L)
{
  int is = 0;
  if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    is = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, is);
  return 1;
}

static void init_marker(void)
{
  unsigned char r[12];
  if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) {
    /* No entropy source: fall back to the clock, which only a deliberate forger could guess. */
    uint64_t t = uv_hrtime();
    memcpy(r, &t, sizeof t);
    memset(r + sizeof t, 0x5a, sizeof r - sizeof t);
  }
  static const char hex[] = "0123456789abcdef";
  char h[2 * sizeof r + 1];
  for (size_t i = 0; i < sizeof r; i++) {
    h[2 * i] = hex[r[i] >> 4];
    h[2 * i + 1] = hex[r[i] & 15];
  }
  h[2 * sizeof r] = '\0';
  marker_len = (size_t)snprintf(marker + 1, sizeof marker - 1, "tide:[]:%s", h) + 1;
  marker[0] = '\0';
  snprintf(marker_json, sizeof marker_json, "\"\\u0000tide:[]:%s\"", h);
}

/* decode is added separately: it is a closure over cjson.decode. */
static const luaL_Reg functions[] = {
    {"array", json_array},
    {"encode", json_encode},
    {"is_array", json_is_array},
    {NULL, NULL},
};

int luaopen_tide_json(lua_State *L)
{
  static uv_once_t once = UV_ONCE_INIT;
  uv_once(&once, init_marker);

  if (luaL_newmetatable(L, BUFFER_MT)) {
    lua_pushcfunction(L, jbuf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
  }
  int mt = lua_gettop(L);

  /* A private cjson: strict numbers (no NaN, Infinity or hex), the default depth limit. */
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  int cj = lua_gettop(L);
  lua_getfield(L, cj, "decode_invalid_numbers");
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
  lua_getfield(L, cj, "decode_max_depth");
  lua_pushinteger(L, MAX_DEPTH);
  lua_call(L, 1, 0);

  luaL_newlibtable(L, functions);
  luaL_setfuncs(L, functions, 0);
  lua_getfield(L, cj, "decode");
  lua_pushcclosure(L, json_decode, 1);
  lua_setfield(L, -2, "decode");
  lua_getfield(L, cj, "null");
  lua_setfield(L, -2, "null");
  lua_pushvalue(L, mt);
  lua_setfield(L, -2, "array_mt");
  return 1;
}
