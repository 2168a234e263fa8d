/*
** "tide._artifact": the blob and tree layer of host/blob.c for stdlib/tide/artifact.lua.
**
** Every call that touches file contents (hashing, copying, fsync, tree walks, gc) runs on the
** libuv thread pool through tide_task_work and blocks only the calling task. Arguments are copied
** into a C op before the work starts (validate, then acquire); when the task resumes, the op moves
** into a GC-owned box so that a raise while pushing results frees it.
**
** Expected failures return nil, message, CODE (EINTEGRITY for a corrupt blob or a sha256 that
** does not match, ENOENT for a missing blob, EINPUT for a bad manifest or an unstorable file).
*/
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "tide/blob.h"
#include "tide/fs.h"

#include "lerror.h"
#include "modules.h"
#include "task.h"

#define OP_MT "tide.artifact.Op"
#define READER_MT "tide.artifact.Reader"
#define LOCK_MT "tide.artifact.Lock"
#define MAX_READ (16u << 20)

typedef enum op_kind {
  OP_INIT,
  OP_PUT_FILE,
  OP_PUT_MEM,
  OP_PUT_TREE,
  OP_GET_FILE,
  OP_GET_TREE,
  OP_READ,
  OP_VERIFY,
  OP_VERIFY_TREE,
  OP_TREE,
  OP_GC,
  OP_OPEN,
  OP_READ_CHUNK,
  OP_LOCK,
  OP_GET_ASSETS,
} op_kind;

typedef struct op_asset {
  char *name;
  int is_tree;
  char hex[TIDE_BLOB_HEX_LEN + 1];
  char xxh3[TIDE_BLOB_XXH_LEN + 1];
  unsigned mode;
  uint64_t size;
} op_asset;

typedef struct gc_problem {
  char hex[TIDE_BLOB_HEX_LEN + 1];
  char msg[256];
} gc_problem;

typedef struct shared_reader shared_reader;

typedef struct art_op {
  op_kind kind;
  int rc;
  tide_err err;
  char *root, *a, *b; /* store root; source or sha256; destination or expected sha256 */
  char *c;            /* get_file: the XXH3-128 to check instead of the sha256 */
  char *data;         /* put_mem input; read output */
  size_t len;
  unsigned mode;
  int threads, dry_run;
  int64_t grace;
  tide_blob_info info;
  tide_tree_stats stats;
  tide_tree tree;
  tide_blob_names keep, trees;
  tide_blob_gc_stats gc;
  uint64_t size;
  size_t checked;
  tide_blob_reader *reader; /* OP_OPEN result, or the reader of OP_READ_CHUNK (borrowed) */
  shared_reader *shared;    /* OP_READ_CHUNK: its reference to the reader */
  op_asset *assets;         /* OP_GET_ASSETS */
  size_t nassets;
  gc_problem *problems; /* OP_GC: manifests that could not be read */
  size_t nproblems;
} art_op;

/*
** A reader shared by its Lua box and the read in flight, so that a box collected while a
** cancelled read still runs on the pool does not close the reader under the worker. Both owners
** live on the loop thread, so the count needs no atomics.
*/
struct shared_reader {
  tide_blob_reader *r;
  int refs;
};

typedef struct reader_box {
  shared_reader *s; /* NULL once closed */
  int busy;         /* a read is in flight */
  int ended;
} reader_box;

static void shared_release(shared_reader *s)
{
  if (s && --s->refs == 0) {
    tide_blob_reader_close(s->r);
    free(s);
  }
}

static void op_free(void *data)
{
  art_op *op = data;
  if (!op)
    return;
  free(op->root);
  free(op->a);
  free(op->b);
  free(op->c);
  free(op->data);
  tide_tree_clear(&op->tree);
  tide_blob_names_clear(&op->keep);
  tide_blob_names_clear(&op->trees);
  for (size_t i = 0; i < op->nassets; i++)
    free(op->assets[i].name);
  free(op->assets);
  free(op->problems);
  if (op->kind == OP_OPEN)
    tide_blob_reader_close(op->reader);
  if (op->kind == OP_LOCK && op->rc >= 0)
    tide_blob_unlock(op->rc); /* taken for a task that was cancelled meanwhile */
  free(op);
}

static int op_gc(lua_State *L)
{
  art_op **box = luaL_checkudata(L, 1, OP_MT);
  op_free(*box);
  *box = NULL;
  return 0;
}

/* In a continuation: checks the resume, then hands op to a box on the stack; returns op. */
static art_op *op_resumed(lua_State *L, int status, lua_KContext ctx)
{
  return tide_task_work_box(L, status, ctx, OP_MT);
}

/* A new op, boxed on the stack until it is handed to the pool (so a raise frees it). */
static art_op *op_new(lua_State *L, op_kind kind, art_op ***boxp)
{
  art_op **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, OP_MT);
  art_op *op = calloc(1, sizeof *op);
  if (!op)
    luaL_error(L, "out of memory");
  *box = op;
  op->kind = kind;
  *boxp = box;
  return op;
}

static char *dup_arg(lua_State *L, int idx)
{
  char *s = strdup(luaL_checkstring(L, idx));
  if (!s)
    luaL_error(L, "out of memory");
  return s;
}

static void check_hex(lua_State *L, int idx)
{
  luaL_argcheck(L, tide_blob_hex_valid(luaL_checkstring(L, idx)), idx, "sha256 expected");
}

/*
** What a damaged manifest still says: every sha256 in it. gc keeps them all rather than lose the
** files of a tree that verify will report.
*/
static int salvage_names(const char *root, const char *hex, tide_blob_names *keep)
{
  char p[4096];
  char *text;
  size_t len;
  if (tide_blob_path(root, hex, p, sizeof p) < 0 || tide_fs_read(p, &text, &len, NULL) < 0)
    return 0;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i + TIDE_BLOB_HEX_LEN <= len;) {
    size_t j = i;
    while (j < len && ((text[j] >= '0' && text[j] <= '9') || (text[j] >= 'a' && text[j] <= 'f')))
      j++;
    if (j - i == TIDE_BLOB_HEX_LEN) {
      char h[TIDE_BLOB_HEX_LEN + 1];
      memcpy(h, text + i, TIDE_BLOB_HEX_LEN);
      h[TIDE_BLOB_HEX_LEN] = 0;
      rc = tide_blob_names_add(keep, h);
    }
    i = j + 1;
  }
  free(text);
  return rc;
}

static void gc_work(art_op *op)
{
  tide_err *err = &op->err;
  /* The files of every referenced tree are referenced too. */
  for (size_t i = 0; op->rc == 0 && i < op->trees.n; i++) {
    char *text;
    size_t len;
    tide_tree tree;
    tide_err e;
    int rc = tide_blob_read(op->root, op->trees.v[i], &text, &len, &e);
    if (rc == 0) {
      rc = tide_tree_parse(text, len, &tree, &e);
      free(text);
    }
    if (rc == -ENOMEM) {
      op->rc = tide_err_set(err, rc, "out of memory");
      break;
    }
    if (rc < 0) {
      /* Reported with the versions it belongs to; what it still names is kept, gc goes on. */
      gc_problem *v = realloc(op->problems, (op->nproblems + 1) * sizeof *v);
      if (!v || salvage_names(op->root, op->trees.v[i], &op->keep) < 0) {
        if (v)
          op->problems = v;
        op->rc = tide_err_set(err, -ENOMEM, "out of memory");
        break;
      }
      op->problems = v;
      memcpy(v[op->nproblems].hex, op->trees.v[i], sizeof v->hex);
      snprintf(v[op->nproblems].msg, sizeof v->msg, "%s", e.msg);
      op->nproblems++;
      continue;
    }
    for (size_t j = 0; op->rc == 0 && j < tree.n; j++) {
      if (tree.v[j].kind == TIDE_TREE_FILE && tide_blob_names_add(&op->keep, tree.v[j].hex))
        op->rc = tide_err_set(err, -ENOMEM, "out of memory");
    }
    tide_tree_clear(&tree);
  }
  if (op->rc == 0) {
    tide_blob_names_sort(&op->keep);
    op->rc = tide_blob_gc(op->root, &op->keep, op->grace, op->dry_run, &op->gc, err);
  }
}

/* The assets of a version composed into one tree, restored as one: all of it or nothing. */
static void get_assets_work(art_op *op)
{
  tide_err *err = &op->err;
  for (size_t i = 0; op->rc == 0 && i < op->nassets; i++) {
    op_asset *a = &op->assets[i];
    if (!a->is_tree) {
      op->rc = tide_tree_add_asset(&op->tree, a->name, NULL, a->mode, a->hex,
                                   a->xxh3[0] ? a->xxh3 : NULL, a->size, err);
      continue;
    }
    char *text;
    size_t len;
    tide_tree sub;
    op->rc = tide_blob_read(op->root, a->hex, &text, &len, err);
    if (op->rc < 0)
      break;
    op->rc = tide_tree_parse(text, len, &sub, err);
    free(text);
    if (op->rc == 0)
      op->rc = tide_tree_add_asset(&op->tree, a->name, &sub, a->mode, NULL, NULL, 0, err);
    tide_tree_clear(&sub);
  }
  if (op->rc == 0)
    op->rc = tide_tree_get(op->root, &op->tree, op->b, op->threads, &op->stats, err);
}

static void work(void *data)
{
  art_op *op = data;
  tide_err *err = &op->err;
  switch (op->kind) {
    case OP_INIT:
      op->rc = tide_blob_init(op->root, err);
      break;
    case OP_PUT_FILE:
      op->rc = tide_blob_put_file(op->root, op->a, op->b, &op->info, err);
      break;
    case OP_PUT_MEM:
      op->rc = tide_blob_put_mem(op->root, op->data, op->len, &op->info, err);
      break;
    case OP_PUT_TREE: {
      char *manifest;
      size_t len;
      op->rc = tide_tree_put(op->root, op->a, op->threads, &manifest, &len, &op->stats, err);
      if (op->rc == 0) {
        op->rc = tide_blob_put_mem(op->root, manifest, len, &op->info, err);
        free(manifest);
      }
      break;
    }
    case OP_GET_FILE:
      op->rc = tide_blob_get_file(op->root, op->a, op->c, op->b, op->mode, err);
      break;
    case OP_GET_TREE:
    case OP_TREE:
    case OP_VERIFY_TREE:
      op->rc = tide_blob_read(op->root, op->a, &op->data, &op->len, err);
      if (op->rc == 0)
        op->rc = tide_tree_parse(op->data, op->len, &op->tree, err);
      if (op->rc == 0 && op->kind == OP_GET_TREE)
        op->rc = tide_tree_get(op->root, &op->tree, op->b, op->threads, &op->stats, err);
      for (size_t i = 0; op->rc == 0 && op->kind == OP_VERIFY_TREE && i < op->tree.n; i++) {
        if (op->tree.v[i].kind != TIDE_TREE_FILE)
          continue;
        op->rc = tide_blob_verify(op->root, op->tree.v[i].hex, NULL, err);
        op->checked++;
      }
      break;
    case OP_READ:
      op->rc = tide_blob_read(op->root, op->a, &op->data, &op->len, err);
      break;
    case OP_VERIFY:
      op->rc = tide_blob_verify(op->root, op->a, &op->size, err);
      break;
    case OP_GC:
      gc_work(op);
      break;
    case OP_GET_ASSETS:
      get_assets_work(op);
      break;
    case OP_OPEN:
      op->rc = tide_blob_open(op->root, op->a, &op->reader, err);
      break;
    case OP_LOCK:
      op->rc = tide_blob_lock(op->root, op->mode, err);
      break;
    case OP_READ_CHUNK: {
      long n = tide_blob_reader_read(op->reader, op->data, op->len, err);
      op->rc = n < 0 ? (int)n : 0;
      op->len = n < 0 ? 0 : (size_t)n;
      break;
    }
  }
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void push_info(lua_State *L, const tide_blob_info *info)
{
  lua_createtable(L, 0, 4);
  lua_pushstring(L, info->hex);
  lua_setfield(L, -2, "sha256");
  lua_pushstring(L, info->xxh3);
  lua_setfield(L, -2, "xxh3");
  set_int(L, "size", (lua_Integer)info->size);
  lua_pushboolean(L, info->stored);
  lua_setfield(L, -2, "stored");
}

static void push_stats(lua_State *L, const tide_tree_stats *st)
{
  set_int(L, "files", (lua_Integer)st->files);
  set_int(L, "dirs", (lua_Integer)st->dirs);
  set_int(L, "links", (lua_Integer)st->links);
  set_int(L, "bytes", (lua_Integer)st->bytes);
  set_int(L, "stored", (lua_Integer)st->stored);
}

static int done_k(lua_State *L, int status, lua_KContext ctx)
{
  art_op *op = op_resumed(L, status, ctx);
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  switch (op->kind) {
    case OP_PUT_FILE:
    case OP_PUT_MEM:
      push_info(L, &op->info);
      return 1;
    case OP_PUT_TREE:
      /* The manifest's own sha256 and size, plus the tree's counts. */
      push_info(L, &op->info);
      lua_pushinteger(L, (lua_Integer)op->info.size);
      lua_setfield(L, -2, "manifest_size");
      push_stats(L, &op->stats);
      lua_pushinteger(L, (lua_Integer)op->stats.bytes);
      lua_setfield(L, -2, "size");
      return 1;
    case OP_GET_TREE:
    case OP_GET_ASSETS:
      lua_createtable(L, 0, 5);
      push_stats(L, &op->stats);
      return 1;
    case OP_READ:
      lua_pushlstring(L, op->data, op->len);
      return 1;
    case OP_VERIFY:
      lua_pushinteger(L, (lua_Integer)op->size);
      return 1;
    case OP_VERIFY_TREE:
      lua_pushinteger(L, (lua_Integer)op->checked);
      return 1;
    case OP_TREE: {
      lua_createtable(L, (int)(op->tree.n < 1u << 30 ? op->tree.n : 0), 0);
      for (size_t i = 0; i < op->tree.n; i++) {
        const tide_tree_entry *e = &op->tree.v[i];
        lua_createtable(L, 0, 6);
        lua_pushstring(L, e->kind == TIDE_TREE_DIR    ? "directory"
                          : e->kind == TIDE_TREE_FILE ? "file"
                                                      : "link");
        lua_setfield(L, -2, "type");
        lua_pushstring(L, e->path);
        lua_setfield(L, -2, "path");
        if (e->kind == TIDE_TREE_LINK) {
          lua_pushstring(L, e->target);
          lua_setfield(L, -2, "target");
        } else {
          set_int(L, "mode", e->mode);
        }
        if (e->kind == TIDE_TREE_FILE) {
          set_int(L, "size", (lua_Integer)e->size);
          lua_pushstring(L, e->hex);
          lua_setfield(L, -2, "sha256");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    }
    case OP_LOCK: {
      int *fd = lua_newuserdatauv(L, sizeof *fd, 0);
      *fd = -1;
      luaL_setmetatable(L, LOCK_MT);
      *fd = op->rc;
      op->rc = -1;
      return 1;
    }
    case OP_GC:
      lua_createtable(L, 0, 4);
      set_int(L, "kept", (lua_Integer)op->gc.kept);
      set_int(L, "removed", (lua_Integer)op->gc.removed);
      set_int(L, "bytes", (lua_Integer)op->gc.bytes_removed);
      set_int(L, "tmp_removed", (lua_Integer)op->gc.tmp_removed);
      set_int(L, "cache_removed", (lua_Integer)op->gc.cache_removed);
      lua_createtable(L, (int)op->nproblems, 0);
      for (size_t i = 0; i < op->nproblems; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, op->problems[i].hex);
        lua_setfield(L, -2, "sha256");
        lua_pushstring(L, op->problems[i].msg);
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      lua_setfield(L, -2, "problems");
      return 1;
    default:
      lua_pushboolean(L, 1);
      return 1;
  }
}

static int start(lua_State *L, art_op **box, const char *what)
{
  art_op *op = *box;
  *box = NULL; /* from here the pool work owns it */
  return tide_task_work(L, what, work, op_free, op, done_k, (lua_KContext)op);
}

/* init(root) -> true */
static int a_init(lua_State *L)
{
  tide_task_check_blocking(L, "artifact.init");
  lua_settop(L, 1); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_INIT, &box);
  op->root = dup_arg(L, 1);
  return start(L, box, "artifact.init");
}

/* put_file(root, path [, expected_sha256]) -> {sha256, xxh3, size, stored} */
static int a_put_file(lua_State *L)
{
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3))
    check_hex(L, 3);
  tide_task_check_blocking(L, "artifact.put_file");
  lua_settop(L, 3); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_PUT_FILE, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  if (!lua_isnoneornil(L, 3))
    op->b = dup_arg(L, 3);
  return start(L, box, "artifact.put_file");
}

/* put_data(root, data) -> {sha256, xxh3, size, stored} */
static int a_put_data(lua_State *L)
{
  luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  tide_task_check_blocking(L, "artifact.put_data");
  lua_settop(L, 2); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_PUT_MEM, &box);
  op->root = dup_arg(L, 1);
  if (!(op->data = malloc(len ? len : 1)))
    return luaL_error(L, "out of memory");
  memcpy(op->data, data, len);
  op->len = len;
  return start(L, box, "artifact.put_data");
}

/* put_tree(root, dir [, threads]) -> {sha256 (manifest), size, files, dirs, links, stored} */
static int a_put_tree(lua_State *L)
{
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  int threads = (int)luaL_optinteger(L, 3, 0);
  tide_task_check_blocking(L, "artifact.put_tree");
  lua_settop(L, 3); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_PUT_TREE, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  op->threads = threads;
  return start(L, box, "artifact.put_tree");
}

/* get_file(root, sha256, dst [, mode [, xxh3]]) -> true; checked by xxh3 when given */
static int a_get_file(lua_State *L)
{
  luaL_checkstring(L, 1);
  check_hex(L, 2);
  luaL_checkstring(L, 3);
  lua_Integer mode = luaL_optinteger(L, 4, 0644);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 4, "mode out of range");
  if (!lua_isnoneornil(L, 5))
    luaL_argcheck(L, tide_blob_xxh_valid(luaL_checkstring(L, 5)), 5, "XXH3-128 expected");
  tide_task_check_blocking(L, "artifact.get_file");
  lua_settop(L, 5); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_GET_FILE, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  op->b = dup_arg(L, 3);
  if (!lua_isnoneornil(L, 5))
    op->c = dup_arg(L, 5);
  op->mode = (unsigned)mode;
  return start(L, box, "artifact.get_file");
}

/* get_tree(root, manifest_sha256, dst [, threads]) -> {files, dirs, links, bytes} */
static int a_get_tree(lua_State *L)
{
  luaL_checkstring(L, 1);
  check_hex(L, 2);
  luaL_checkstring(L, 3);
  int threads = (int)luaL_optinteger(L, 4, 0);
  tide_task_check_blocking(L, "artifact.get_tree");
  lua_settop(L, 4); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_GET_TREE, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  op->b = dup_arg(L, 3);
  op->threads = threads;
  return start(L, box, "artifact.get_tree");
}

/*
** get_assets(root, assets, dst [, threads]) -> {files, dirs, links, bytes}: assets is a list of
** {name, kind = "file"|"tree", sha256, xxh3, mode, size}, restored together as the directory dst.
*/
static int a_get_assets(lua_State *L)
{
  luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkstring(L, 3);
  int threads = (int)luaL_optinteger(L, 4, 0);
  tide_task_check_blocking(L, "artifact.get_assets");
  lua_settop(L, 4); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_GET_ASSETS, &box);
  size_t n = (size_t)lua_rawlen(L, 2);
  if (!(op->assets = calloc(n ? n : 1, sizeof *op->assets)))
    return luaL_error(L, "out of memory");
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    luaL_argcheck(L, lua_istable(L, -1), 2, "list of assets expected");
    op_asset *a = &op->assets[i];
    op->nassets = i + 1;
    lua_getfield(L, -1, "name");
    a->name = strdup(luaL_checkstring(L, -1));
    lua_getfield(L, -2, "kind");
    a->is_tree = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "tree");
    lua_getfield(L, -3, "sha256");
    const char *hex = lua_tostring(L, -1);
    luaL_argcheck(L, hex && tide_blob_hex_valid(hex), 2, "asset sha256 expected");
    memcpy(a->hex, hex, sizeof a->hex);
    lua_getfield(L, -4, "xxh3");
    const char *x = lua_tostring(L, -1);
    if (x && tide_blob_xxh_valid(x))
      memcpy(a->xxh3, x, sizeof a->xxh3);
    lua_getfield(L, -5, "mode");
    a->mode = (unsigned)luaL_optinteger(L, -1, a->is_tree ? 0755 : 0644) & 07777;
    lua_getfield(L, -6, "size");
    a->size = (uint64_t)luaL_optinteger(L, -1, 0);
    lua_pop(L, 7);
    if (!a->name)
      return luaL_error(L, "out of memory");
  }
  op->root = dup_arg(L, 1);
  op->b = dup_arg(L, 3);
  op->threads = threads;
  return start(L, box, "artifact.get_assets");
}

/* One-sha256 calls: read (-> string), verify (-> size), verify_tree (-> files checked),
** tree (-> entries). */
static int one_hex(lua_State *L, op_kind kind, const char *what)
{
  luaL_checkstring(L, 1);
  check_hex(L, 2);
  tide_task_check_blocking(L, what);
  lua_settop(L, 2); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, kind, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  return start(L, box, what);
}

static int a_read(lua_State *L)
{
  return one_hex(L, OP_READ, "artifact.read");
}

static int a_verify(lua_State *L)
{
  return one_hex(L, OP_VERIFY, "artifact.verify");
}

static int a_verify_tree(lua_State *L)
{
  return one_hex(L, OP_VERIFY_TREE, "artifact.verify_tree");
}

static int a_tree(lua_State *L)
{
  return one_hex(L, OP_TREE, "artifact.tree");
}

static void read_names(lua_State *L, int idx, tide_blob_names *names)
{
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    const char *s = lua_tostring(L, -1);
    if (!s || !tide_blob_hex_valid(s))
      luaL_argerror(L, idx, "list of sha256 expected");
    if (tide_blob_names_add(names, s) < 0)
      luaL_error(L, "out of memory");
    lua_pop(L, 1);
  }
}

/* gc(root, blobs, trees, grace_seconds, dry_run) -> {kept, removed, bytes, tmp_removed} */
static int a_gc(lua_State *L)
{
  luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer grace = luaL_checkinteger(L, 4);
  int dry = lua_toboolean(L, 5);
  tide_task_check_blocking(L, "artifact.gc");
  lua_settop(L, 5); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_GC, &box);
  op->root = dup_arg(L, 1);
  read_names(L, 2, &op->keep);
  read_names(L, 3, &op->trees);
  for (size_t i = 0; i < op->trees.n; i++) {
    if (tide_blob_names_add(&op->keep, op->trees.v[i]) < 0)
      return luaL_error(L, "out of memory");
  }
  op->grace = grace;
  op->dry_run = dry;
  return start(L, box, "artifact.gc");
}

/* exists(root, sha256) -> boolean (a stat: quick enough for the loop thread) */
static int a_exists(lua_State *L)
{
  const char *root = luaL_checkstring(L, 1);
  check_hex(L, 2);
  tide_err err;
  int rc = tide_blob_exists(root, lua_tostring(L, 2), &err);
  if (rc < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, rc);
  return 1;
}

/* lock(root, exclusive) -> lock (lock:unlock(), also on <close> and collection) */
static int a_lock(lua_State *L)
{
  luaL_checkstring(L, 1);
  int exclusive = lua_toboolean(L, 2);
  tide_task_check_blocking(L, "artifact.lock");
  lua_settop(L, 2); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_LOCK, &box);
  op->root = dup_arg(L, 1);
  op->mode = exclusive ? TIDE_BLOB_LOCK_EXCLUSIVE : 0;
  return start(L, box, "artifact.lock");
}

static int lock_release(lua_State *L)
{
  int *fd = luaL_checkudata(L, 1, LOCK_MT);
  tide_blob_unlock(*fd);
  *fd = -1;
  return 0;
}

/* ---- streams --------------------------------------------------------------------------------- */

static int open_k(lua_State *L, int status, lua_KContext ctx)
{
  art_op *op = op_resumed(L, status, ctx);
  if (op->rc < 0)
    return tide_fail_err(L, &op->err);
  reader_box *rb = lua_newuserdatauv(L, sizeof *rb, 0);
  memset(rb, 0, sizeof *rb);
  luaL_setmetatable(L, READER_MT);
  if (!(rb->s = malloc(sizeof *rb->s)))
    return luaL_error(L, "out of memory");
  rb->s->r = op->reader;
  rb->s->refs = 1;
  op->reader = NULL;
  return 1;
}

/* open(root, sha256) -> reader */
static int a_open(lua_State *L)
{
  luaL_checkstring(L, 1);
  check_hex(L, 2);
  tide_task_check_blocking(L, "artifact.open");
  lua_settop(L, 2); /* the op box goes above the arguments */
  art_op **box;
  art_op *op = op_new(L, OP_OPEN, &box);
  op->root = dup_arg(L, 1);
  op->a = dup_arg(L, 2);
  *box = NULL;
  return tide_task_work(L, "artifact.open", work, op_free, op, open_k, (lua_KContext)op);
}

/* Frees a chunk op and drops its reference to the reader. */
static void chunk_abandon(void *data)
{
  art_op *op = data;
  shared_release(op->shared);
  free(op->data);
  free(op);
}

static int chunk_k(lua_State *L, int status, lua_KContext ctx)
{
  /* On a cancel this raises and the op stays with the pool until chunk_abandon frees it. */
  tide_task_resumed(L, status);
  art_op *op = (art_op *)ctx;
  reader_box *rb = luaL_checkudata(L, 1, READER_MT);
  rb->busy = 0;
  int rc = op->rc;
  tide_err err = op->err;
  char *data = op->data;
  size_t len = op->len;
  op->data = NULL;
  chunk_abandon(op);
  if (rc < 0 || len == 0) {
    free(data);
    rb->ended = 1;
    if (rc < 0)
      return tide_fail_err(L, &err);
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, data, len); /* NOTE: should this run out of memory, data leaks. */
  free(data);
  return 1;
}

/* reader:read([n]) -> string, or nil at the end (once the content is verified) */
static int r_read(lua_State *L)
{
  reader_box *rb = luaL_checkudata(L, 1, READER_MT);
  lua_Integer n = luaL_optinteger(L, 2, 1 << 20);
  luaL_argcheck(L, n > 0 && (lua_Unsigned)n <= MAX_READ, 2, "size out of range");
  if (!rb->s)
    return luaL_error(L, "reader is closed");
  if (rb->busy)
    return luaL_error(L, "reader is busy in another task");
  if (rb->ended) {
    lua_pushnil(L);
    return 1;
  }
  lua_settop(L, 1);
  tide_task_check_blocking(L, "artifact reader:read");
  art_op *op = calloc(1, sizeof *op);
  if (!op || !(op->data = malloc((size_t)n))) {
    free(op);
    return luaL_error(L, "out of memory");
  }
  op->kind = OP_READ_CHUNK;
  op->reader = rb->s->r;
  op->shared = rb->s;
  rb->s->refs++;
  op->len = (size_t)n;
  rb->busy = 1;
  return tide_task_work(L, "artifact reader:read", work, chunk_abandon, op, chunk_k,
                        (lua_KContext)op);
}

static int r_close(lua_State *L)
{
  reader_box *rb = luaL_checkudata(L, 1, READER_MT);
  shared_release(rb->s);
  rb->s = NULL;
  return 0;
}

static int r_size(lua_State *L)
{
  reader_box *rb = luaL_checkudata(L, 1, READER_MT);
  if (!rb->s)
    return luaL_error(L, "reader is closed");
  lua_pushinteger(L, (lua_Integer)tide_blob_reader_size(rb->s->r));
  return 1;
}

static const luaL_Reg reader_methods[] = {
    {"read", r_read},
    {"close", r_close},
    {"size", r_size},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"exists", a_exists},
    {"lock", a_lock},
    {"gc", a_gc},
    {"get_assets", a_get_assets},
    {"get_file", a_get_file},
    {"get_tree", a_get_tree},
    {"init", a_init},
    {"open", a_open},
    {"put_data", a_put_data},
    {"put_file", a_put_file},
    {"put_tree", a_put_tree},
    {"read", a_read},
    {"tree", a_tree},
    {"verify", a_verify},
    {"verify_tree", a_verify_tree},
    {NULL, NULL},
};

int luaopen_tide_artifact(lua_State *L)
{
  /* A write past RLIMIT_FSIZE must fail with EFBIG rather than kill the process. */
  signal(SIGXFSZ, SIG_IGN);
  tide_error_init(L);
  if (luaL_newmetatable(L, OP_MT)) {
    lua_pushcfunction(L, op_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LOCK_MT)) {
    lua_pushcfunction(L, lock_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, lock_release);
    lua_setfield(L, -2, "__close");
    lua_newtable(L);
    lua_pushcfunction(L, lock_release);
    lua_setfield(L, -2, "unlock");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, READER_MT)) {
    luaL_newlib(L, reader_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, r_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, r_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
