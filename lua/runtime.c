/*
** The runtime: where the loop, the scheduler, the trace and the store meet. It records a run in
** the store (a run row, a root span, every span change) and flushes queued store writes on a
** timer, so no span write ever waits for the disk inside a task.
*/
#include "runtime.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "tide/view.h"

#include "task.h"

#define FLUSH_INTERVAL_MS 200
#define FLUSH_THRESHOLD 1024

static char runtime_key;

tide_runtime *tide_runtime_get(lua_State *L)
{
  lua_rawgetp(L, LUA_REGISTRYINDEX, &runtime_key);
  tide_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

void tide_runtime_set(lua_State *L, tide_runtime *rt)
{
  lua_pushlightuserdata(L, rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &runtime_key);
}

int tide_runtime_open_store(tide_runtime *rt, const char *home, int flags, tide_err *err)
{
  if (rt->store)
    return 0;
  return tide_store_open(&rt->store, home, flags, err);
}

static void flush_now(tide_runtime *rt)
{
  tide_err err;
  if (rt->store && tide_store_pending(rt->store) > 0 && tide_store_flush(rt->store, &err) != 0)
    fprintf(stderr, "tide: cannot record the run: %s\n", err.msg);
}

static void flush_cb(uv_timer_t *timer)
{
  flush_now(timer->data);
}

static void span_changed(void *ud, const tide_span *span)
{
  tide_runtime *rt = ud;
  tide_err err;
  if (!rt->run_id)
    return;
  if (tide_store_span_put(rt->store, rt->run_id, span, &err) != 0)
    fprintf(stderr, "tide: cannot record span '%s': %s\n", span->name, err.msg);
  else if (tide_store_pending(rt->store) >= FLUSH_THRESHOLD)
    flush_now(rt);
}

int tide_runtime_begin_run(tide_runtime *rt, const char *name, const char *argv_json, tide_err *err)
{
  if (!rt->store)
    return tide_err_set(err, TIDE_EINPUT, "no store is open");
  int rc = tide_store_run_begin(rt->store, name, argv_json, &rt->run_id, err);
  if (rc != 0)
    return rc;
  tide_trace_observe(rt->trace, span_changed, rt);
  rt->root = tide_span_begin(rt->trace, 0, "run", name);
  uv_timer_init(rt->loop, &rt->flush);
  rt->flush.data = rt;
  uv_timer_start(&rt->flush, flush_cb, FLUSH_INTERVAL_MS, FLUSH_INTERVAL_MS);
  uv_unref((uv_handle_t *)&rt->flush);
  return 0;
}

tide_mask *tide_runtime_mask(tide_runtime *rt)
{
  if (!rt->mask) {
    rt->mask = tide_mask_new();
    if (rt->mask && rt->trace)
      tide_trace_set_mask(rt->trace, rt->mask);
  }
  return rt->mask;
}

void tide_runtime_end_run(tide_runtime *rt, const char *status, int exit_code)
{
  tide_mask_unref(rt->mask);
  rt->mask = NULL;
  if (!rt->run_id)
    return;
  if (rt->root) {
    tide_span_end(rt->trace, rt->root, exit_code == 0 ? TIDE_SPAN_OK : TIDE_SPAN_ERROR);
    rt->root = NULL;
  }
  if (rt->view) {
    tide_view_finish(rt->view, rt->run_id, status, exit_code);
    tide_view_free(rt->view);
    rt->view = NULL;
  }
  flush_now(rt);
  tide_err err;
  if (tide_store_run_end(rt->store, rt->run_id, status, exit_code, &err) != 0)
    fprintf(stderr, "tide: cannot record the end of run %lld: %s\n", (long long)rt->run_id,
            err.msg);
  rt->run_id = 0;
  uv_timer_stop(&rt->flush);
  uv_close((uv_handle_t *)&rt->flush, NULL);
}

static void view_changed(void *ud, const tide_span *span)
{
  tide_runtime *rt = ud;
  if (rt->view)
    tide_view_observe(rt->view, span);
}

int tide_runtime_start_view(tide_runtime *rt, const char *mode, tide_err *err)
{
  if (rt->view || !rt->run_id)
    return 0;
  tide_view_mode m = strcmp(mode, "none") == 0
                         ? TIDE_VIEW_NONE
                         : tide_view_pick(STDERR_FILENO, strcmp(mode, "plain") == 0);
  if (m == TIDE_VIEW_NONE)
    return 0;
  if (!rt->view_hooked) {
    int rc = tide_trace_observe(rt->trace, view_changed, rt);
    if (rc != 0)
      return tide_err_set(err, rc, "view: cannot observe the trace");
    rt->view_hooked = 1;
  }
  return tide_view_new(&rt->view, rt->loop, rt->trace, m, stderr, err);
}

uint64_t tide_runtime_parent_span(lua_State *L)
{
  uint64_t id = tide_task_span(L);
  if (id)
    return id;
  tide_runtime *rt = tide_runtime_get(L);
  return rt->root ? rt->root->id : 0;
}
