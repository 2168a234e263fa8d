/*
** "tide._git": host/git.c for Lua; stdlib/tide/git.lua wraps it into the friendly "tide.git".
**
** Every function touches the disk or the network, so each one copies its arguments into a C op
** (validate, then acquire), runs the host call on the libuv thread pool through tide_task_work
** and blocks only the calling task. When the task resumes, the op moves into a GC-owned box, so
** a raise while pushing results frees it.
**
** Credentials are copied into the op and wiped (explicit_bzero) on the worker right after the
** host call, and again when the op is freed; they never reach an error message (host/git.c
** scrubs them).
**
** Progress and abort: a Control (control()) is shared by the task and the worker, refcounted.
** The worker's progress callback stores the latest snapshot under a mutex and reads the abort
** flag; the task polls the snapshot (Control:poll) and sets the flag (Control:abort, or __close),
** so no Lua ever runs on a worker and no libuv handle is needed.
**
** Expected failures return nil, message, CODE (EGIT, ENOENT, ECANCELED...); wrong argument
** types raise.
*/
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide/git.h"

#include "lerror.h"
#include "lsecret.h"
#include "modules.h"
#include "task.h"

#define OP_MT "tide.git.Op"
#define CTL_MT "tide.git.Control"

/* ---- control: progress snapshots and abort, shared with a worker ----------------------------- */

typedef struct git_ctl {
  atomic_int refs;
  atomic_int abort;
  pthread_mutex_t mu;
  tide_git_progress last;
  unsigned seq, seen;
} git_ctl;

static void ctl_release(git_ctl *c)
{
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
    pthread_mutex_destroy(&c->mu);
    free(c);
  }
}

static int ctl_progress(void *ctx, const tide_git_progress *p)
{
  git_ctl *c = ctx;
  pthread_mutex_lock(&c->mu);
  c->last = *p;
  c->seq++;
  pthread_mutex_unlock(&c->mu);
  return atomic_load(&c->abort);
}

static git_ctl **ctl_check(lua_State *L, int idx)
{
  return luaL_checkudata(L, idx, CTL_MT);
}

/* control() -> Control */
static int git_control(lua_State *L)
{
  git_ctl **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, CTL_MT);
  git_ctl *c = calloc(1, sizeof *c);
  if (!c)
    return luaL_error(L, "out of memory");
  atomic_init(&c->refs, 1);
  atomic_init(&c->abort, 0);
  pthread_mutex_init(&c->mu, NULL);
  *box = c;
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* Control:poll() -> the latest progress table, or nil when nothing changed since the last poll */
static int ctl_poll(lua_State *L)
{
  git_ctl *c = *ctl_check(L, 1);
  if (!c)
    return 0;
  pthread_mutex_lock(&c->mu);
  tide_git_progress p = c->last;
  int fresh = c->seq != c->seen;
  c->seen = c->seq;
  pthread_mutex_unlock(&c->mu);
  if (!fresh || !p.phase)
    return 0;
  lua_createtable(L, 0, 9);
  lua_pushstring(L, p.phase);
  lua_setfield(L, -2, "phase");
  set_int(L, "total_objects", p.total_objects);
  set_int(L, "received_objects", p.received_objects);
  set_int(L, "indexed_objects", p.indexed_objects);
  set_int(L, "total_deltas", p.total_deltas);
  set_int(L, "indexed_deltas", p.indexed_deltas);
  set_int(L, "received_bytes", (lua_Integer)p.received_bytes);
  set_int(L, "checkout_total", (lua_Integer)p.checkout_total);
  set_int(L, "checkout_done", (lua_Integer)p.checkout_done);
  return 1;
}

/* Control:abort(): the operation stops at its next progress report and fails with ECANCELED */
static int ctl_abort(lua_State *L)
{
  git_ctl *c = *ctl_check(L, 1);
  if (c)
    atomic_store(&c->abort, 1);
  return 0;
}

static int ctl_gc(lua_State *L)
{
  git_ctl **box = ctl_check(L, 1);
  ctl_release(*box);
  *box = NULL;
  return 0;
}

/* ---- ops ------------------------------------------------------------------------------------ */

#define NCREDS 6

typedef struct git_op {
  int rc;
  tide_err err;
  char *repo;
  char *s[4]; /* the call's other strings, in argument order */
  int flag;   /* bare, force, remote: each call's one boolean */
  size_t limit;
  char **list; /* paths or refspecs */
  size_t nlist;
  char *cred[NCREDS]; /* in cred_keys order */
  int has_creds;
  git_ctl *ctl;
  /* results */
  char id[TIDE_GIT_OID_HEX];
  tide_git_repo_info info;
  tide_git_commit commit;
  tide_git_commits commits;
  tide_git_strs strs;
  tide_git_refs refs;
  tide_git_statuses statuses;
  tide_git_head head;
} git_op;

static const char *const cred_keys[NCREDS + 1] = {
    "token", "username", "password", "ssh_key", "ssh_key_passphrase", "known_hosts", NULL,
};

static void wipe_creds(git_op *op)
{
  for (int i = 0; i < NCREDS; i++) {
    if (op->cred[i]) {
      explicit_bzero(op->cred[i], strlen(op->cred[i]));
      free(op->cred[i]);
      op->cred[i] = NULL;
    }
  }
}

static void op_free(void *data)
{
  git_op *op = data;
  if (!op)
    return;
  wipe_creds(op);
  free(op->repo);
  for (int i = 0; i < 4; i++)
    free(op->s[i]);
  for (size_t i = 0; i < op->nlist; i++)
    free(op->list[i]);
  free(op->list);
  ctl_release(op->ctl);
  tide_git_repo_info_clear(&op->info);
  tide_git_commit_clear(&op->commit);
  tide_git_commits_clear(&op->commits);
  tide_git_strs_clear(&op->strs);
  tide_git_refs_clear(&op->refs);
  tide_git_statuses_clear(&op->statuses);
  tide_git_head_clear(&op->head);
  free(op);
}

static int op_gc(lua_State *L)
{
  git_op **box = luaL_checkudata(L, 1, OP_MT);
  op_free(*box);
  *box = NULL;
  return 0;
}

/* A new op, boxed on the stack so a raise while its arguments are read frees it. */
static git_op *op_new(lua_State *L)
{
  git_op **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, OP_MT);
  git_op *op = calloc(1, sizeof *op);
  if (!op)
    luaL_error(L, "out of memory");
  *box = op;
  return op;
}

static char *dup_arg(lua_State *L, const char *s)
{
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    luaL_error(L, "out of memory");
  return d;
}

static char *opt_string(lua_State *L, int idx)
{
  return dup_arg(L, luaL_optstring(L, idx, NULL));
}

/* A list of strings at idx (nil allowed) into op->list. */
static void read_list(lua_State *L, int idx, git_op *op)
{
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = lua_rawlen(L, idx);
  op->list = calloc(n ? n : 1, sizeof *op->list);
  if (!op->list)
    luaL_error(L, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_argerror(L, idx, "expected a list of strings");
    op->list[i] = dup_arg(L, lua_tostring(L, -1));
    op->nlist = i + 1;
    lua_pop(L, 1);
  }
}

/* Credentials table at idx (nil allowed): strings or secrets under cred_keys only. */
static void read_creds(lua_State *L, int idx, git_op *op)
{
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    int i = 0;
    while (cred_keys[i] && strcmp(cred_keys[i], k) != 0)
      i++;
    if (!cred_keys[i]) {
      lua_pushvalue(L, -2);
      luaL_argerror(L, idx, lua_pushfstring(L, "unexpected key '%s'", luaL_tolstring(L, -1, NULL)));
    }
    size_t len;
    const unsigned char *secret = tide_lsecret_bytes(L, -1, &len);
    free(op->cred[i]);
    op->cred[i] = NULL;
    if (secret) {
      /* A value from the secret store goes from guarded memory to the op, never through Lua. */
      if (memchr(secret, '\0', len))
        luaL_argerror(L, idx, lua_pushfstring(L, "'%s' holds a NUL byte", k));
      op->cred[i] = malloc(len + 1);
      if (!op->cred[i])
        luaL_error(L, "out of memory");
      memcpy(op->cred[i], secret, len);
      op->cred[i][len] = '\0';
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      op->cred[i] = dup_arg(L, lua_tostring(L, -1));
    } else {
      luaL_argerror(L, idx, lua_pushfstring(L, "'%s' must be a string or a secret", k));
    }
    op->has_creds = 1;
    lua_pop(L, 1);
  }
}

static void read_ctl(lua_State *L, int idx, git_op *op)
{
  if (lua_isnoneornil(L, idx))
    return;
  git_ctl *c = *ctl_check(L, idx);
  if (c) {
    atomic_fetch_add(&c->refs, 1);
    op->ctl = c;
  }
}

/* The remote options of op; creds points into storage the caller provides. */
static tide_git_remote_opts remote_opts(git_op *op, tide_git_creds *creds)
{
  *creds = (tide_git_creds){op->cred[0], op->cred[1], op->cred[2],
                            op->cred[3], op->cred[4], op->cred[5]};
  tide_git_remote_opts ro = {
      .creds = op->has_creds ? creds : NULL,
      .progress = op->ctl ? ctl_progress : NULL,
      .progress_ctx = op->ctl,
  };
  return ro;
}

/* In a continuation: checks the resume, then hands op to a box on the stack; returns op. */
static git_op *op_resumed(lua_State *L, int status, lua_KContext ctx)
{
  return tide_task_work_box(L, status, ctx, OP_MT);
}

/* Starts work on op, whose box is at the top of the stack; from here the pool owns op. */
static int run_op(lua_State *L, const char *what, void (*work)(void *), git_op *op, lua_KFunction k)
{
  git_op **box = luaL_checkudata(L, -1, OP_MT);
  *box = NULL;
  return tide_task_work(L, what, work, op_free, op, k, (lua_KContext)op);
}

/* ---- results -------------------------------------------------------------------------------- */

static void push_sig(lua_State *L, const tide_git_sig *s)
{
  lua_createtable(L, 0, 4);
  lua_pushstring(L, s->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, s->email);
  lua_setfield(L, -2, "email");
  set_int(L, "time", s->time);
  set_int(L, "offset", s->offset);
}

static void push_commit(lua_State *L, const tide_git_commit *c)
{
  lua_createtable(L, 0, 7);
  lua_pushstring(L, c->id);
  lua_setfield(L, -2, "id");
  lua_pushlstring(L, c->id, 7);
  lua_setfield(L, -2, "short_id");
  lua_pushstring(L, c->message);
  lua_setfield(L, -2, "message");
  lua_pushstring(L, c->summary);
  lua_setfield(L, -2, "summary");
  push_sig(L, &c->author);
  lua_setfield(L, -2, "author");
  push_sig(L, &c->committer);
  lua_setfield(L, -2, "committer");
  lua_createtable(L, (int)c->nparents, 0);
  for (size_t i = 0; i < c->nparents; i++) {
    lua_pushstring(L, c->parents[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "parents");
}

static void push_info(lua_State *L, const tide_git_repo_info *info)
{
  lua_createtable(L, 0, 2);
  lua_pushstring(L, info->path);
  lua_setfield(L, -2, "path");
  lua_pushboolean(L, info->bare);
  lua_setfield(L, -2, "bare");
}

/* {name, id} pairs as a list of {name=, id=}. */
static void push_refs_list(lua_State *L, const tide_git_refs *refs)
{
  lua_createtable(L, (int)refs->n, 0);
  for (size_t i = 0; i < refs->n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, refs->v[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, refs->v[i].id);
    lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* Every continuation: resume, then the failure triple or what push leaves on the stack. */
typedef void (*push_fn)(lua_State *L, git_op *op);

static int finish(lua_State *L, int status, lua_KContext ctx, push_fn push)
{
  git_op *op = op_resumed(L, status, ctx);
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  push(L, op);
  return 1;
}

#define CONTINUATION(name, ...)                                   \
  static void name##_push(lua_State *L, git_op *op)               \
  {                                                               \
    __VA_ARGS__;                                                  \
  }                                                               \
  static int name##_k(lua_State *L, int status, lua_KContext ctx) \
  {                                                               \
    return finish(L, status, ctx, name##_push);                   \
  }

/* ---- operations ----------------------------------------------------------------------------- */

static void init_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_init(op->repo, op->flag, &op->info, &op->err);
}
static void open_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_open(op->repo, &op->info, &op->err);
}
CONTINUATION(info, push_info(L, &op->info))

/* init(path, bare) -> {path=, bare=} */
static int git_init(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int bare = lua_toboolean(L, 2);
  tide_task_check_blocking(L, "git.init");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, path);
  op->flag = bare;
  return run_op(L, "git.init", init_work, op, info_k);
}

/* open(path) -> {path=, bare=} */
static int git_open(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  tide_task_check_blocking(L, "git.open");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, path);
  return run_op(L, "git.open", open_work, op, info_k);
}

static void clone_work(void *data)
{
  git_op *op = data;
  tide_git_creds creds;
  tide_git_clone_opts o = {
      .url = op->s[0],
      .dir = op->s[1],
      .branch = op->s[2],
      .bare = op->flag,
      .remote = remote_opts(op, &creds),
  };
  op->rc = tide_git_clone(&o, &op->err);
  explicit_bzero(&creds, sizeof creds);
  wipe_creds(op);
}
CONTINUATION(ok, (void)op; lua_pushboolean(L, 1))

/* clone(url, dir, branch|nil, bare, creds|nil, control|nil) -> true */
static int git_clone(lua_State *L)
{
  const char *url = luaL_checkstring(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  luaL_optstring(L, 3, NULL);
  lua_settop(L, 6);
  tide_task_check_blocking(L, "git.clone");
  git_op *op = op_new(L);
  op->s[0] = dup_arg(L, url);
  op->s[1] = dup_arg(L, dir);
  op->s[2] = opt_string(L, 3);
  op->flag = lua_toboolean(L, 4);
  read_creds(L, 5, op);
  read_ctl(L, 6, op);
  return run_op(L, "git.clone", clone_work, op, ok_k);
}

static void fetch_work(void *data)
{
  git_op *op = data;
  tide_git_creds creds;
  tide_git_remote_opts ro = remote_opts(op, &creds);
  op->rc =
      tide_git_fetch(op->repo, op->s[0], (const char *const *)op->list, op->nlist, &ro, &op->err);
  explicit_bzero(&creds, sizeof creds);
  wipe_creds(op);
}

/* fetch(repo, remote|nil, refspecs|nil, creds|nil, control|nil) -> true */
static int git_fetch(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  luaL_optstring(L, 2, NULL);
  lua_settop(L, 5);
  tide_task_check_blocking(L, "git.fetch");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = opt_string(L, 2);
  read_list(L, 3, op);
  read_creds(L, 4, op);
  read_ctl(L, 5, op);
  return run_op(L, "git.fetch", fetch_work, op, ok_k);
}

static void ls_remote_work(void *data)
{
  git_op *op = data;
  tide_git_creds creds;
  tide_git_remote_opts ro = remote_opts(op, &creds);
  op->rc = tide_git_ls_remote(op->repo, op->s[0], &ro, &op->refs, &op->err);
  explicit_bzero(&creds, sizeof creds);
  wipe_creds(op);
}
CONTINUATION(ref_map, {
  lua_createtable(L, 0, (int)op->refs.n);
  for (size_t i = 0; i < op->refs.n; i++) {
    lua_pushstring(L, op->refs.v[i].id);
    lua_setfield(L, -2, op->refs.v[i].name);
  }
})

/* ls_remote(repo|nil, url, creds|nil, control|nil) -> {ref = id} */
static int git_ls_remote(lua_State *L)
{
  luaL_optstring(L, 1, NULL);
  const char *url = luaL_checkstring(L, 2);
  lua_settop(L, 4);
  tide_task_check_blocking(L, "git.ls_remote");
  git_op *op = op_new(L);
  op->repo = opt_string(L, 1);
  op->s[0] = dup_arg(L, url);
  read_creds(L, 3, op);
  read_ctl(L, 4, op);
  return run_op(L, "git.ls_remote", ls_remote_work, op, ref_map_k);
}

static void checkout_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_checkout(op->repo, op->s[0], op->flag, &op->err);
}

/* checkout(repo, rev, force) -> true */
static int git_checkout(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  const char *rev = luaL_checkstring(L, 2);
  int force = lua_toboolean(L, 3);
  tide_task_check_blocking(L, "git.checkout");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = dup_arg(L, rev);
  op->flag = force;
  return run_op(L, "git.checkout", checkout_work, op, ok_k);
}

static void resolve_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_resolve(op->repo, op->s[0], op->id, &op->err);
}
CONTINUATION(id, lua_pushstring(L, op->id))

/* A call on (repo, rev): resolve and commit_info. */
static int repo_rev_call(lua_State *L, const char *what, void (*work)(void *), lua_KFunction k)
{
  const char *repo = luaL_checkstring(L, 1);
  const char *rev = luaL_checkstring(L, 2);
  tide_task_check_blocking(L, what);
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = dup_arg(L, rev);
  return run_op(L, what, work, op, k);
}

/* resolve(repo, rev) -> id */
static int git_resolve(lua_State *L)
{
  return repo_rev_call(L, "git.resolve", resolve_work, id_k);
}

static void commit_info_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_commit_info(op->repo, op->s[0], &op->commit, &op->err);
}
CONTINUATION(commit, push_commit(L, &op->commit))

/* commit_info(repo, rev) -> {id=, short_id=, message=, summary=, author=, committer=, parents=} */
static int git_commit_info(lua_State *L)
{
  return repo_rev_call(L, "git.commit_info", commit_info_work, commit_k);
}

static void log_work(void *data)
{
  git_op *op = data;
  tide_git_log_opts o = {
      .from = op->s[0],
      .to = op->s[1],
      .limit = op->limit,
      .paths = (const char *const *)op->list,
      .npaths = op->nlist,
  };
  op->rc = tide_git_log(op->repo, &o, &op->commits, &op->err);
}
CONTINUATION(commits, {
  lua_createtable(L, (int)op->commits.n, 0);
  for (size_t i = 0; i < op->commits.n; i++) {
    push_commit(L, &op->commits.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
})

/* log(repo, from|nil, to|nil, limit (0: none), paths|nil) -> {commit infos} */
static int git_log(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  luaL_optstring(L, 2, NULL);
  luaL_optstring(L, 3, NULL);
  lua_Integer limit = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, limit >= 0, 4, "negative limit");
  lua_settop(L, 5);
  tide_task_check_blocking(L, "git.log");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = opt_string(L, 2);
  op->s[1] = opt_string(L, 3);
  op->limit = (size_t)limit;
  read_list(L, 5, op);
  return run_op(L, "git.log", log_work, op, commits_k);
}

static void changed_paths_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_changed_paths(op->repo, op->s[0], op->s[1], &op->strs, &op->err);
}
CONTINUATION(strs, {
  lua_createtable(L, (int)op->strs.n, 0);
  for (size_t i = 0; i < op->strs.n; i++) {
    lua_pushstring(L, op->strs.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
})

/* changed_paths(repo, from, to) -> {paths} */
static int git_changed_paths(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  const char *from = luaL_checkstring(L, 2);
  const char *to = luaL_checkstring(L, 3);
  tide_task_check_blocking(L, "git.changed_paths");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = dup_arg(L, from);
  op->s[1] = dup_arg(L, to);
  return run_op(L, "git.changed_paths", changed_paths_work, op, strs_k);
}

static void tags_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_tags(op->repo, &op->refs, &op->err);
}
static void branches_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_branches(op->repo, op->flag, &op->refs, &op->err);
}
CONTINUATION(refs, push_refs_list(L, &op->refs))

/* A call on repo alone (plus one boolean at 2). */
static int repo_call(lua_State *L, const char *what, void (*work)(void *), lua_KFunction k)
{
  const char *repo = luaL_checkstring(L, 1);
  int flag = lua_toboolean(L, 2);
  tide_task_check_blocking(L, what);
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->flag = flag;
  return run_op(L, what, work, op, k);
}

/* tags(repo) -> {{name=, id=}} sorted */
static int git_tags(lua_State *L)
{
  return repo_call(L, "git.tags", tags_work, refs_k);
}

/* branches(repo, remote) -> {{name=, id=}} sorted */
static int git_branches(lua_State *L)
{
  return repo_call(L, "git.branches", branches_work, refs_k);
}

static void status_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_status(op->repo, &op->statuses, &op->err);
}
CONTINUATION(statuses, {
  lua_createtable(L, (int)op->statuses.n, 0);
  for (size_t i = 0; i < op->statuses.n; i++) {
    const tide_git_status_entry *e = &op->statuses.v[i];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, e->index); /* NULL pushes nil */
    lua_setfield(L, -2, "index");
    lua_pushstring(L, e->worktree);
    lua_setfield(L, -2, "worktree");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
})

/* status(repo) -> {{path=, index=, worktree=}} */
static int git_status(lua_State *L)
{
  return repo_call(L, "git.status", status_work, statuses_k);
}

static void head_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_head_get(op->repo, &op->head, &op->err);
}
CONTINUATION(head, {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, op->head.branch);
  lua_setfield(L, -2, "branch");
  if (op->head.id[0]) {
    lua_pushstring(L, op->head.id);
    lua_setfield(L, -2, "id");
  }
})

/* head(repo) -> {branch=, id=} */
static int git_head(lua_State *L)
{
  return repo_call(L, "git.head", head_work, head_k);
}

static void add_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_add(op->repo, (const char *const *)op->list, op->nlist, &op->err);
}

/* add(repo, {paths}) -> true */
static int git_add(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  tide_task_check_blocking(L, "git.add");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  read_list(L, 2, op);
  return run_op(L, "git.add", add_work, op, ok_k);
}

static void commit_work(void *data)
{
  git_op *op = data;
  op->rc = tide_git_commit_create(op->repo, op->s[0], op->s[1], op->s[2], op->id, &op->err);
}

/* commit(repo, message, name|nil, email|nil) -> id */
static int git_commit(lua_State *L)
{
  const char *repo = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  luaL_optstring(L, 3, NULL);
  luaL_optstring(L, 4, NULL);
  lua_settop(L, 4);
  tide_task_check_blocking(L, "git.commit");
  git_op *op = op_new(L);
  op->repo = dup_arg(L, repo);
  op->s[0] = dup_arg(L, message);
  op->s[1] = opt_string(L, 3);
  op->s[2] = opt_string(L, 4);
  return run_op(L, "git.commit", commit_work, op, id_k);
}

/* redact_url(url) -> the URL with its password replaced by "***" */
static int git_redact_url(lua_State *L)
{
  const char *url = luaL_checkstring(L, 1);
  char out[1024];
  lua_pushstring(L, tide_git_redact_url(url, out, sizeof out));
  return 1;
}

static const luaL_Reg functions[] = {
    {"add", git_add},
    {"branches", git_branches},
    {"changed_paths", git_changed_paths},
    {"checkout", git_checkout},
    {"clone", git_clone},
    {"commit", git_commit},
    {"commit_info", git_commit_info},
    {"control", git_control},
    {"fetch", git_fetch},
    {"head", git_head},
    {"init", git_init},
    {"log", git_log},
    {"ls_remote", git_ls_remote},
    {"open", git_open},
    {"redact_url", git_redact_url},
    {"resolve", git_resolve},
    {"status", git_status},
    {"tags", git_tags},
    {NULL, NULL},
};

static const luaL_Reg ctl_methods[] = {
    {"poll", ctl_poll},
    {"abort", ctl_abort},
    {NULL, NULL},
};

int luaopen_tide_git(lua_State *L)
{
  tide_error_init(L);
  if (luaL_newmetatable(L, OP_MT)) {
    lua_pushcfunction(L, op_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, CTL_MT)) {
    luaL_newlib(L, ctl_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ctl_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ctl_abort);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
