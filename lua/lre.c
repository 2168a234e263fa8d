/*
** "tide.re": PCRE2 regular expressions for Lua, on host/re.c.
**
** The module functions (re.match(s, pattern, ...)) and the methods of a compiled regex
** (rx:match(s, ...)) share one implementation: the functions compile through the host's cache
** and hold the pattern in a GC-owned userdata, so a Lua error anywhere (a bad replacement value,
** a raising gsub callback) frees everything. Match buffers are GC-owned for the same reason.
**
** Everything here runs inline on the calling thread; matches are bounded by the host's limits.
** Captures that did not take part in a match are false. Offsets are 1-based and inclusive, as in
** string.find.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide/re.h"

#include "lerror.h"
#include "modules.h"

#define REGEX_MT "tide.re.Regex"
#define MATCH_MT "tide.re.Match"

typedef struct lregex {
  tide_re *re; /* one reference; released by __gc */
} lregex;

/* A match buffer plus the iteration state of gmatch. */
typedef struct lmatch {
  tide_re_match *m; /* owned; freed by __gc */
  size_t pos;       /* tide_re_next state */
  int last_empty, checked;
} lmatch;

static int regex_gc(lua_State *L)
{
  lregex *ud = luaL_checkudata(L, 1, REGEX_MT);
  tide_re_release(ud->re);
  ud->re = NULL;
  return 0;
}

static lmatch *push_match(lua_State *L, tide_re *re)
{
  lmatch *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  memset(ud, 0, sizeof *ud);
  luaL_setmetatable(L, MATCH_MT);
  ud->m = tide_re_match_new(re);
  if (!ud->m)
    luaL_error(L, "re: out of memory");
  return ud;
}

static int match_gc(lua_State *L)
{
  lmatch *ud = luaL_checkudata(L, 1, MATCH_MT);
  tide_re_match_free(ud->m);
  ud->m = NULL;
  return 0;
}

static unsigned check_flags(lua_State *L, int idx)
{
  unsigned flags = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  tide_err err;
  if (tide_re_flags(s, len, &flags, &err) < 0)
    luaL_argerror(L, idx, err.msg);
  return flags;
}

/*
** The pattern of a module function: a compiled regex at pidx, or a pattern string compiled with
** the flags at fidx. A string pattern is compiled and pushed as a regex userdata, which keeps it
** alive until the stack unwinds. A bad pattern raises an EREGEX TideError.
*/
static tide_re *check_pattern(lua_State *L, int pidx, int fidx)
{
  lregex *ud = luaL_testudata(L, pidx, REGEX_MT);
  if (ud) {
    if (!lua_isnoneornil(L, fidx))
      luaL_argerror(L, fidx, "flags cannot be given with a compiled regex");
    if (!ud->re)
      luaL_argerror(L, pidx, "regex is closed");
    return ud->re;
  }
  if (lua_type(L, pidx) != LUA_TSTRING)
    luaL_typeerror(L, pidx, "string or regex");
  unsigned flags = check_flags(L, fidx);
  size_t len;
  const char *p = lua_tolstring(L, pidx, &len);
  tide_re *re;
  tide_err err;
  lregex *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->re = NULL;
  luaL_setmetatable(L, REGEX_MT);
  if (tide_re_compile(p, len, flags, &re, &err) < 0)
    tide_error_raise_err(L, &err);
  box->re = re;
  return re;
}

static tide_re *check_self(lua_State *L)
{
  lregex *ud = luaL_checkudata(L, 1, REGEX_MT);
  if (!ud->re)
    luaL_argerror(L, 1, "regex is closed");
  return ud->re;
}

/* string.find's rule for init: 1-based, negative counts from the end. Returns 0 past the end. */
static int get_init(lua_State *L, int idx, size_t len, size_t *start)
{
  lua_Integer init = luaL_optinteger(L, idx, 1);
  if (init > 0) {
    if ((lua_Unsigned)init - 1 > len)
      return 0;
    *start = (size_t)init - 1;
  } else if (init == 0) {
    *start = 0;
  } else if ((lua_Unsigned)-init > len) {
    *start = 0;
  } else {
    *start = len - (size_t)-init;
  }
  return 1;
}

/* Pushes capture i (0 is the whole match), or false when the group did not take part. */
static void push_capture(lua_State *L, const char *s, const size_t *ov, int i)
{
  size_t a = ov[2 * i], b = ov[2 * i + 1];
  if (a == TIDE_RE_UNSET)
    lua_pushboolean(L, 0);
  else
    lua_pushlstring(L, s + a, b - a);
}

/* Pushes the captures, or the whole match when the pattern has none; returns how many. */
static int push_captures(lua_State *L, const tide_re *re, const char *s, const size_t *ov,
                         int whole_if_none)
{
  int n = tide_re_ngroups(re);
  if (n == 0) {
    if (!whole_if_none)
      return 0;
    push_capture(L, s, ov, 0);
    return 1;
  }
  luaL_checkstack(L, n, "too many captures");
  for (int i = 1; i <= n; i++)
    push_capture(L, s, ov, i);
  return n;
}

static int exec_once(lua_State *L, tide_re *re, const char *s, size_t len, size_t start, lmatch *m)
{
  tide_err err;
  int rc = tide_re_exec(re, s, len, start, 0, m->m, &err);
  if (rc < 0)
    tide_error_raise_err(L, &err);
  return rc;
}

/*
** Runs re once on the subject at sidx from the init at argument 3. Returns the match's ovector,
** or NULL with nil pushed when there is no match. *s and *len receive the subject.
*/
static const size_t *match_once(lua_State *L, tide_re *re, int sidx, const char **s, size_t *len)
{
  size_t start;
  *s = luaL_checklstring(L, sidx, len);
  if (!get_init(L, 3, *len, &start)) {
    lua_pushnil(L);
    return NULL;
  }
  lmatch *m = push_match(L, re);
  if (!exec_once(L, re, *s, *len, start, m)) {
    lua_pushnil(L);
    return NULL;
  }
  return tide_re_ovector(m->m);
}

/* match(s [, init]) and find(s [, init]): sidx is the subject, init is argument 3. */
static int do_find(lua_State *L, tide_re *re, int sidx, int find)
{
  const char *s;
  size_t len;
  const size_t *ov = match_once(L, re, sidx, &s, &len);
  if (!ov)
    return 1;
  if (!find)
    return push_captures(L, re, s, ov, 1);
  lua_pushinteger(L, (lua_Integer)ov[0] + 1);
  lua_pushinteger(L, (lua_Integer)ov[1]);
  return 2 + push_captures(L, re, s, ov, 0);
}

/* exec(s [, init]) -> {[0]=whole, [1]=..., name=..., start=, stop=} or nil */
static int do_exec(lua_State *L, tide_re *re, int sidx)
{
  const char *s;
  size_t len;
  const size_t *ov = match_once(L, re, sidx, &s, &len);
  if (!ov)
    return 1;
  int n = tide_re_ngroups(re);
  int nn = tide_re_nnames(re);
  lua_createtable(L, n, nn + 2);
  for (int i = 0; i <= n; i++) {
    push_capture(L, s, ov, i);
    lua_rawseti(L, -2, i);
  }
  for (int i = 0; i < nn; i++) {
    int g;
    const char *name = tide_re_name(re, i, &g);
    /* With duplicate names (?J) the first group that matched wins. */
    lua_getfield(L, -1, name);
    int have = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!have) {
      push_capture(L, s, ov, g);
      lua_setfield(L, -2, name);
    }
  }
  lua_pushinteger(L, (lua_Integer)ov[0] + 1);
  lua_setfield(L, -2, "start");
  lua_pushinteger(L, (lua_Integer)ov[1]);
  lua_setfield(L, -2, "stop");
  return 1;
}

static int gmatch_next(lua_State *L)
{
  /* upvalues: subject, regex, match state */
  size_t len;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &len);
  tide_re *re = ((lregex *)lua_touserdata(L, lua_upvalueindex(2)))->re;
  lmatch *m = lua_touserdata(L, lua_upvalueindex(3));
  tide_err err;
  int rc = tide_re_next(re, s, len, &m->pos, &m->last_empty, &m->checked, m->m, &err);
  if (rc < 0)
    tide_error_raise_err(L, &err);
  if (rc == 0)
    return 0;
  return push_captures(L, re, s, tide_re_ovector(m->m), 1);
}

/* gmatch(s [, init]): the regex userdata sits at ridx. */
static int do_gmatch(lua_State *L, tide_re *re, int ridx, int sidx)
{
  size_t len, start;
  luaL_checklstring(L, sidx, &len);
  int ok = get_init(L, 3, len, &start);
  lua_pushvalue(L, sidx);
  lua_pushvalue(L, ridx);
  lmatch *m = push_match(L, re);
  m->pos = ok ? start : len + 1;
  lua_pushcclosure(L, gmatch_next, 3);
  return 1;
}

/*
** Checks a replacement template: $$, $N (digits, greedy), ${N} and ${name}. Raises on anything
** else, so that the expansion below never fails.
*/
static void check_template(lua_State *L, int idx, const tide_re *re)
{
  size_t len;
  const char *t = lua_tolstring(L, idx, &len);
  int n = tide_re_ngroups(re);
  for (size_t i = 0; i < len; i++) {
    if (t[i] != '$')
      continue;
    i++;
    if (i < len && t[i] == '$')
      continue;
    if (i < len && t[i] >= '0' && t[i] <= '9') {
      long g = 0;
      while (i < len && t[i] >= '0' && t[i] <= '9' && g <= n)
        g = g * 10 + (t[i++] - '0');
      i--;
      if (g > n)
        luaL_argerror(L, idx,
                      lua_pushfstring(L, "replacement refers to group %d of %d", (int)g, n));
      continue;
    }
    if (i < len && t[i] == '{') {
      size_t a = i + 1, b = a;
      while (b < len && t[b] != '}')
        b++;
      if (b == len || b == a)
        luaL_argerror(L, idx, "unterminated or empty ${...} in replacement");
      lua_pushlstring(L, t + a, b - a);
      const char *name = lua_tostring(L, -1);
      char *end;
      long g = strtol(name, &end, 10);
      int numeric = *end == '\0' && name[0] >= '0' && name[0] <= '9';
      if ((numeric && g > n) || (!numeric && tide_re_group_number(re, name) < 0))
        luaL_argerror(L, idx, lua_pushfstring(L, "replacement refers to unknown group '%s'", name));
      lua_pop(L, 1);
      i = b;
      continue;
    }
    luaL_argerror(L, idx, "invalid use of '$' in replacement (write $$ for a dollar)");
  }
}

static void add_group(luaL_Buffer *b, const char *s, const size_t *ov, int g)
{
  if (ov[2 * g] != TIDE_RE_UNSET)
    luaL_addlstring(b, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
}

static void expand_template(luaL_Buffer *b, const char *t, size_t len, const tide_re *re,
                            const char *s, const size_t *ov)
{
  for (size_t i = 0; i < len; i++) {
    if (t[i] != '$') {
      luaL_addchar(b, t[i]);
      continue;
    }
    i++;
    if (t[i] == '$') {
      luaL_addchar(b, '$');
    } else if (t[i] == '{') {
      size_t a = i + 1, e = a;
      while (t[e] != '}')
        e++;
      char name[256];
      size_t nl = e - a < sizeof name - 1 ? e - a : sizeof name - 1;
      memcpy(name, t + a, nl);
      name[nl] = '\0';
      int g = name[0] >= '0' && name[0] <= '9' ? (int)strtol(name, NULL, 10)
                                               : tide_re_group_number(re, name);
      if (g >= 0)
        add_group(b, s, ov, g);
      i = e;
    } else {
      int g = 0;
      while (i < len && t[i] >= '0' && t[i] <= '9')
        g = g * 10 + (t[i++] - '0');
      i--;
      add_group(b, s, ov, g);
    }
  }
}

/*
** Appends the replacement for one match. A table or function result of false or nil keeps the
** matched text; a string or number replaces it; anything else raises.
*/
static void add_value(lua_State *L, luaL_Buffer *b, int ridx, const tide_re *re, const char *s,
                      const size_t *ov)
{
  int t = lua_type(L, ridx);
  if (t == LUA_TFUNCTION) {
    lua_pushvalue(L, ridx);
    int n = push_captures(L, re, s, ov, 1);
    lua_call(L, n, 1);
  } else {
    /* a table: keyed by the first capture, or the whole match when there is none */
    push_capture(L, s, ov, tide_re_ngroups(re) > 0 ? 1 : 0);
    lua_gettable(L, ridx);
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s + ov[0], ov[1] - ov[0]);
    return;
  }
  if (!lua_isstring(L, -1))
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
}

/* gsub(s, repl [, n]) -> string, count */
static int do_gsub(lua_State *L, tide_re *re, int sidx)
{
  size_t len;
  const char *s = luaL_checklstring(L, sidx, &len);
  int ridx = 3;
  int rt = lua_type(L, ridx);
  luaL_argexpected(
      L, rt == LUA_TNUMBER || rt == LUA_TSTRING || rt == LUA_TFUNCTION || rt == LUA_TTABLE, ridx,
      "string/function/table");
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)len + 1);
  size_t tlen = 0;
  const char *tmpl = NULL;
  if (rt == LUA_TNUMBER || rt == LUA_TSTRING) {
    tmpl = lua_tolstring(L, ridx, &tlen);
    check_template(L, ridx, re);
  }
  lmatch *m = push_match(L, re);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t pos = 0, copied = 0;
  int last_empty = 0, checked = 0;
  lua_Integer count = 0;
  tide_err err;
  while (count < max) {
    int rc = tide_re_next(re, s, len, &pos, &last_empty, &checked, m->m, &err);
    if (rc < 0)
      tide_error_raise_err(L, &err);
    if (rc == 0)
      break;
    const size_t *ov = tide_re_ovector(m->m);
    luaL_addlstring(&b, s + copied, ov[0] - copied);
    if (tmpl)
      expand_template(&b, tmpl, tlen, re, s, ov);
    else
      add_value(L, &b, ridx, re, s, ov);
    copied = ov[1];
    count++;
  }
  luaL_addlstring(&b, s + copied, len - copied);
  luaL_pushresult(&b);
  lua_pushinteger(L, count);
  return 2;
}

/*
** split(s [, max]) -> {pieces}. Captures are not included. An empty match never splits at the
** start or end of the subject or right after another separator, so it never makes an empty piece.
*/
static int do_split(lua_State *L, tide_re *re, int sidx)
{
  size_t len;
  const char *s = luaL_checklstring(L, sidx, &len);
  lua_Integer max = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, lua_isnoneornil(L, 3) || max >= 1, 3, "must be at least 1");
  lmatch *m = push_match(L, re);
  lua_newtable(L);
  size_t pos = 0, piece = 0;
  int last_empty = 0, checked = 0;
  lua_Integer n = 0;
  tide_err err;
  while (max == 0 || n < max - 1) {
    int rc = tide_re_next(re, s, len, &pos, &last_empty, &checked, m->m, &err);
    if (rc < 0)
      tide_error_raise_err(L, &err);
    if (rc == 0)
      break;
    const size_t *ov = tide_re_ovector(m->m);
    if (ov[0] == ov[1] && (ov[0] == piece || ov[0] == len))
      continue;
    lua_pushlstring(L, s + piece, ov[0] - piece);
    lua_rawseti(L, -2, ++n);
    piece = ov[1];
  }
  lua_pushlstring(L, s + piece, len - piece);
  lua_rawseti(L, -2, ++n);
  return 1;
}

/* ---- module functions: (subject, pattern, ...) ------------------------------------------- */

/*
** Module functions take (subject, pattern, a, b, flags) and methods take (self, subject, a, b):
** either way the arguments after the pattern start at index 3, which the do_* functions rely
** on. Each function first fixes the stack size so that the regex check_pattern may push sits
** above every argument, then checks the subject so that a bad one raises before any compiling.
*/

static tide_re *fn_args(lua_State *L, int nargs, int fidx)
{
  lua_settop(L, nargs);
  luaL_checklstring(L, 1, NULL);
  return check_pattern(L, 2, fidx);
}

static int re_match(lua_State *L)
{
  return do_find(L, fn_args(L, 4, 4), 1, 0);
}

static int re_find(lua_State *L)
{
  return do_find(L, fn_args(L, 4, 4), 1, 1);
}

static int re_exec(lua_State *L)
{
  return do_exec(L, fn_args(L, 4, 4), 1);
}

static int re_gmatch(lua_State *L)
{
  tide_re *re = fn_args(L, 4, 4);
  return do_gmatch(L, re, lua_gettop(L) > 4 ? lua_gettop(L) : 2, 1);
}

static int re_gsub(lua_State *L)
{
  return do_gsub(L, fn_args(L, 5, 5), 1);
}

static int re_split(lua_State *L)
{
  return do_split(L, fn_args(L, 4, 4), 1);
}

/* compile(pattern [, flags]) -> regex, or nil, msg, "EREGEX" for a bad pattern */
static int re_compile(lua_State *L)
{
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  unsigned flags = check_flags(L, 2);
  tide_re *re;
  tide_err err;
  lregex *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->re = NULL;
  luaL_setmetatable(L, REGEX_MT);
  if (tide_re_compile(p, len, flags, &re, &err) < 0)
    return tide_fail_err(L, &err);
  box->re = re;
  return 1;
}

/* escape(s) -> s with every ASCII character except letters, digits and _ backslash-escaped */
static int re_escape(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c >= 0x80;
    if (!word)
      luaL_addchar(&b, '\\');
    luaL_addchar(&b, (char)c);
  }
  luaL_pushresult(&b);
  return 1;
}

/* ---- methods: rx:fn(subject, ...) --------------------------------------------------------- */

static int m_match(lua_State *L)
{
  return do_find(L, check_self(L), 2, 0);
}

static int m_find(lua_State *L)
{
  return do_find(L, check_self(L), 2, 1);
}

static int m_exec(lua_State *L)
{
  return do_exec(L, check_self(L), 2);
}

static int m_gmatch(lua_State *L)
{
  return do_gmatch(L, check_self(L), 1, 2);
}

static int m_gsub(lua_State *L)
{
  return do_gsub(L, check_self(L), 2);
}

static int m_split(lua_State *L)
{
  return do_split(L, check_self(L), 2);
}

/* rx:pattern() -> pattern, flags */
static int m_pattern(lua_State *L)
{
  tide_re *re = check_self(L);
  size_t len;
  const char *p = tide_re_pattern(re, &len);
  lua_pushlstring(L, p, len);
  static const char letters[] = "imsxunAU";
  char f[sizeof letters];
  size_t n = 0;
  unsigned bits = tide_re_get_flags(re);
  for (size_t i = 0; i < sizeof letters - 1; i++)
    if (bits & (1u << i))
      f[n++] = letters[i];
  lua_pushlstring(L, f, n);
  return 2;
}

/* rx:groups() -> number of capture groups, {name = number} */
static int m_groups(lua_State *L)
{
  tide_re *re = check_self(L);
  lua_pushinteger(L, tide_re_ngroups(re));
  int nn = tide_re_nnames(re);
  lua_createtable(L, 0, nn);
  for (int i = 0; i < nn; i++) {
    int g;
    const char *name = tide_re_name(re, i, &g);
    lua_getfield(L, -1, name);
    int have = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!have) {
      lua_pushinteger(L, g);
      lua_setfield(L, -2, name);
    }
  }
  return 2;
}

static int m_tostring(lua_State *L)
{
  lregex *ud = luaL_checkudata(L, 1, REGEX_MT);
  if (!ud->re) {
    lua_pushliteral(L, "tide.re.Regex (closed)");
    return 1;
  }
  size_t len;
  const char *p = tide_re_pattern(ud->re, &len);
  lua_pushfstring(L, "tide.re.Regex (%s)", p); /* NUL in a pattern ends the text: display only */
  return 1;
}

static const luaL_Reg functions[] = {
    {"compile", re_compile}, {"escape", re_escape}, {"exec", re_exec},
    {"find", re_find},       {"gmatch", re_gmatch}, {"gsub", re_gsub},
    {"match", re_match},     {"split", re_split},   {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"exec", m_exec},       {"find", m_find},   {"gmatch", m_gmatch},
    {"groups", m_groups},   {"gsub", m_gsub},   {"match", m_match},
    {"pattern", m_pattern}, {"split", m_split}, {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", regex_gc},
    {"__tostring", m_tostring},
    {NULL, NULL},
};

static void createmeta(lua_State *L)
{
  luaL_newmetatable(L, REGEX_MT);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, MATCH_MT);
  lua_pushcfunction(L, match_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int luaopen_tide_re(lua_State *L)
{
  tide_error_init(L); /* raised errors are TideErrors even before "tide" is loaded */
  createmeta(L);
  luaL_newlib(L, functions);
  return 1;
}
