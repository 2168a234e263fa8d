/*
** tide's entry point: builds the runtime (loop, Lua state, scheduler, trace), hands the command
** line to stdlib/tide/cli.lua as the main task, runs the loop until every task is done, then
** shuts down in order: end the run, free the tasks, close every handle, close Lua, close the loop.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <luv/luv.h>
#include <uv.h>

#include "tide/proc.h"
#include "tide/secret.h"

#include "lerror.h"
#include "modules.h"
#include "runtime.h"
#include "task.h"

#ifndef CLOSE_RANGE_CLOEXEC
#  define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static tide_runtime runtime;

static const char *run_status(int code)
{
  return code == 0 ? "succeeded" : code == 124 ? "timeout" : code == 130 ? "cancelled" : "failed";
}

/* os.exit replacement: records the end of the run before the process goes. */
static int os_exit(lua_State *L)
{
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  tide_runtime_end_run(&runtime, run_status(code), code);
  tide_proc_kill_all(); /* no child outlives the exit */
  fflush(NULL);
  exit(code);
}

/* luv calls back into Lua on the main thread; an error there is reported, never fatal. */
static int luv_callback_pcall(lua_State *L, int nargs, int nresults, int flags)
{
  int base = lua_gettop(L) - nargs;
  int rc = lua_pcall(L, nargs, nresults, 0);
  if (rc != LUA_OK) {
    if (!(flags & LUVF_CALLBACK_NOERRMSG)) {
      size_t len;
      const char *msg = luaL_tolstring(L, -1, &len);
      fprintf(stderr, "tide: error in a tide.uv callback: %s\n", tide_push_masked(L, msg, len));
    }
    lua_settop(L, base - 1);
    runtime.exit_code = 1;
    return -rc;
  }
  return lua_gettop(L) - base + 1;
}

static void signal_cb(uv_signal_t *handle, int signum)
{
  static int count;
  if (++count > 1) {
    fprintf(stderr, "tide: interrupted again, exiting now\n");
    tide_proc_kill_all();
    tide_runtime_end_run(&runtime, "cancelled", 128 + signum);
    _exit(128 + signum);
  }
  fprintf(stderr, "tide: %s, cancelling every task (again to exit at once)\n",
          signum == SIGINT ? "interrupted" : "terminated");
  tide_sched_cancel_all(runtime.sched);
  /* Also the processes no task waits for (spawned and held, or released): each would keep the
  ** loop, and so tide, alive until it exits on its own. */
  tide_proc_terminate_all();
  /* A run whose main chunk was over by now still ends cancelled, as a cancelled chunk does. */
  runtime.exit_code = 130;
}

static void close_walk_cb(uv_handle_t *handle, void *arg)
{
  (void)arg;
  if (!uv_is_closing(handle))
    uv_close(handle, NULL);
}

static int push_main(lua_State *L, int argc, char **argv)
{
  lua_getglobal(L, "require");
  lua_pushstring(L, "tide.cli");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "tide: cannot load the command line module: %s\n", lua_tostring(L, -1));
    return -1;
  }
  lua_getfield(L, -1, "main");
  lua_remove(L, -2);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_insert(L, -2); /* args, main */
  return 0;
}

int main(int argc, char **argv)
{
  /* Descriptors inherited from whoever started tide must not leak into its children. */
  syscall(436 /* close_range */, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  /* A master key in the environment must reach no child, whatever runs before the store. */
  tide_err key_err;
  if (tide_secret_env_stash(&key_err) < 0) {
    fprintf(stderr, "tide: %s\n", key_err.msg);
    return 1;
  }

  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    fprintf(stderr, "tide: cannot create the event loop\n");
    return 1;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "tide: cannot create the Lua state: out of memory\n");
    return 1;
  }
  luaL_openlibs(L);
  runtime.L = L;
  runtime.loop = &loop;
  runtime.trace = tide_trace_new();
  tide_runtime_set(L, &runtime);
  luv_set_loop(L, &loop);
  luv_set_callback(L, luv_callback_pcall);
  runtime.sched = tide_sched_new(L, &loop);
  if (!runtime.trace || !runtime.sched) {
    fprintf(stderr, "tide: out of memory\n");
    return 1;
  }
  tide_modules_preload(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);

  uv_signal_t sigint, sigterm;
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, signal_cb, SIGINT);
  uv_signal_start(&sigterm, signal_cb, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);

  int code = 1;
  if (push_main(L, argc, argv) == 0) {
    code = tide_sched_run_main(L, 1, "main");
    if (code == 0 && runtime.exit_code != 0)
      code = runtime.exit_code;
  }
  tide_runtime_end_run(&runtime, run_status(code), code);

  tide_sched_free(runtime.sched);
  uv_walk(&loop, close_walk_cb, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  lua_close(L);
  /* lua_close may have closed more handles (luv's __gc); let their close callbacks run. */
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    fprintf(stderr, "tide: event loop still had open handles at exit\n");
  tide_store_close(runtime.store);
  tide_trace_free(runtime.trace);
  fflush(NULL);
  return code;
}
