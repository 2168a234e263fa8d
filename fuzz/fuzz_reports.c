/*
** libFuzzer target for tide.reports: the first byte of an input picks one of the ten report
** formats, the rest is the report file. reports.parse_string must either return a result of the
** right kind or raise a TideError with code EINPUT or ELIMIT; any other error (a Lua runtime
** error in a parser, a crash in expat or cjson) is a finding.
**
** One Lua state is set up with the tide modules (as lua/main.c does, without the loop) and
** reused; the expat binding (lxp) is the system's lua-expat loaded from package.cpath.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "modules.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const formats[] = {
    "JUNITXML",     "NUNITXML",  "NUNIT3XML",    "TESTNGXML", "VISUALSTUDIOTRX",
    "CUCUMBERJSON", "CLOVERXML", "COBERTURAXML", "JACOCOXML", "SIMPLECOV",
};
#define NFORMATS (sizeof formats / sizeof formats[0])

static lua_State *L;

/* Checks the outcome in Lua, where the shape of results and errors is easiest to test. */
static const char checker[] =
    "local reports = require('tide.reports')\n"
    "local valid = {}\n"
    "for _, s in ipairs(reports.STATUSES) do valid[s] = true end\n"
    "return function(data, format)\n"
    "  local ok, r = pcall(reports.parse_string, data, format, 'fuzz')\n"
    "  if ok then\n"
    "    assert(type(r) == 'table' and type(r.summary) == 'table', 'no summary')\n"
    "    assert(r.kind == reports.kind(format), 'wrong kind')\n"
    "    for _, c in ipairs(r.cases or {}) do\n"
    "      assert(type(c.name) == 'string' and valid[c.status], 'bad case')\n"
    "      assert(#c.name <= reports.limits.name, 'name too long')\n"
    "      assert(not c.message or #c.message <= reports.limits.message, 'message too long')\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  if type(r) ~= 'table' or (r.code ~= 'EINPUT' and r.code ~= 'ELIMIT') then\n"
    "    error('unexpected error: ' .. tostring(r), 0)\n"
    "  end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L)
    abort();
  /* Not a task: the scheduler reads the task pointer from here (see tide_sched_new). */
  *(void **)lua_getextraspace(L) = NULL;
  luaL_openlibs(L);
  tide_modules_preload(L);
  if (luaL_loadbufferx(L, checker, sizeof checker - 1, "=fuzz_reports", "t") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_reports: setup failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz_reports.check");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_reports.check");
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushstring(L, formats[data[0] % NFORMATS]);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_reports: %s: %s\n", formats[data[0] % NFORMATS], lua_tostring(L, -1));
    abort();
  }
  /* A full collection now and then keeps the state's garbage from passing for growth. */
  static unsigned runs;
  if (++runs % 1024 == 0)
    lua_gc(L, LUA_GCCOLLECT);
  else
    lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
