/*
** The `sandbox` option of proc.run/proc.spawn, read into a tide_sandbox_policy
** (include/tide/sandbox.h). Used by lua/lproc.c.
*/
#ifndef TIDE_LSANDBOX_H
#define TIDE_LSANDBOX_H

#include <lua.h>

#include "tide/sandbox.h"

/*
** Reads the value at idx: true (the build default) or a policy table; false means no sandbox
** and returns 0, else returns 1 with *p filled. Raises "spawn: option 'sandbox...' ..." for a bad
** key, type or value. Path lists live in GC-owned blocks left on the stack, their strings
** anchored by the policy table; cwd (may be NULL: the current directory) is the default
** writable path and must stay valid as long as *p is used.
*/
int tide_lsandbox_parse(lua_State *L, int idx, const char *cwd, tide_sandbox_policy *p);

#endif
