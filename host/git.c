/*
** Git through libgit2. See include/tide/git.h for the contract.
**
** Each call opens its repository and releases every libgit2 object before returning, so nothing
** is shared between threads but libgit2's global state, which it guards itself. libgit2's error
** is thread-local: it is read right after the failing call and copied, scrubbed of secrets, into
** the caller's tide_err.
**
** libgit2 is loaded by the first git operation, not linked (see git_api.h for why), and every call
** into it goes through the table lib. Whether it loaded is settled once for the process: when it
** could not be loaded, every git operation fails with the same TIDE_EGIT naming the library and
** the loader's reason, and it is not looked for again (a library installed meanwhile needs a new
** tide), so a missing library costs one failed search, not one per call.
*/
#include "tide/git.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tide/dl.h"

#include "git_api.h"

/* The soname of the libgit2 the headers describe: its ABI is the one every call below assumes. */
#define LIBGIT2_SONAME "libgit2.so." LIBGIT2_SOVERSION

/* Written by load() only, under init_once, which orders those writes before every later read. */
static struct {
  TIDE_GIT_API(TIDE_DL_SLOT, _)
} lib;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char load_error[256]; /* empty once libgit2 is usable */

static void load(void)
{
  static const tide_dl_sym syms[] = {TIDE_GIT_API(TIDE_DL_SYM, lib)};
  void *h =
      tide_dl_load(LIBGIT2_SONAME, syms, sizeof syms / sizeof *syms, load_error, sizeof load_error);
  if (!h)
    return;
  if (lib.git_libgit2_init() < 0) {
    const git_error *e = lib.git_error_last();
    snprintf(load_error, sizeof load_error, "cannot initialise %s: %s", LIBGIT2_SONAME,
             e && e->message ? e->message : "unknown error");
    goto fail;
  }
  /* Objects are hashed when they arrive (the indexer checks every one); hashing them again on
     every read, as libgit2 does by default, costs a clone's checkout time for nothing. git does
     not re-hash on read either. */
  lib.git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
  return;
fail:
  memset(&lib, 0, sizeof lib);
  dlclose(h);
}

/* 0 when libgit2 is usable, else TIDE_EGIT: "op 'subject': cannot load ...". */
static int lib_init(const char *op, const char *subject, tide_err *err)
{
  pthread_once(&init_once, load);
  if (load_error[0])
    return tide_err_set(err, TIDE_EGIT, "%s '%s': %s", op, subject, load_error);
  return 0;
}

/* ---- lists ---------------------------------------------------------------------------------- */

/* Makes room for one more element in a {v, n, cap} list; 0 or -ENOMEM. */
#define LIST_GROW(list) \
  ((list)->n < (list)->cap ? 0 : grow((void **)&(list)->v, &(list)->cap, sizeof *(list)->v))

static int grow(void **v, size_t *cap, size_t size)
{
  size_t ncap = *cap ? *cap * 2 : 16;
  void *nv = realloc(*v, ncap * size);
  if (!nv)
    return -ENOMEM;
  *v = nv;
  *cap = ncap;
  return 0;
}

void tide_git_commit_clear(tide_git_commit *c)
{
  free(c->message);
  free(c->summary);
  free(c->author.name);
  free(c->author.email);
  free(c->committer.name);
  free(c->committer.email);
  free(c->parents);
  memset(c, 0, sizeof *c);
}

void tide_git_commits_clear(tide_git_commits *list)
{
  for (size_t i = 0; i < list->n; i++)
    tide_git_commit_clear(&list->v[i]);
  free(list->v);
  memset(list, 0, sizeof *list);
}

void tide_git_strs_clear(tide_git_strs *list)
{
  for (size_t i = 0; i < list->n; i++)
    free(list->v[i]);
  free(list->v);
  memset(list, 0, sizeof *list);
}

void tide_git_refs_clear(tide_git_refs *list)
{
  for (size_t i = 0; i < list->n; i++)
    free(list->v[i].name);
  free(list->v);
  memset(list, 0, sizeof *list);
}

void tide_git_statuses_clear(tide_git_statuses *list)
{
  for (size_t i = 0; i < list->n; i++)
    free(list->v[i].path);
  free(list->v);
  memset(list, 0, sizeof *list);
}

void tide_git_head_clear(tide_git_head *head)
{
  free(head->branch);
  memset(head, 0, sizeof *head);
}

void tide_git_repo_info_clear(tide_git_repo_info *info)
{
  free(info->path);
  memset(info, 0, sizeof *info);
}

static int oom(tide_err *err, const char *op)
{
  return tide_err_set(err, -ENOMEM, "%s: out of memory", op);
}

static int refs_push(tide_git_refs *list, const char *name, const git_oid *id)
{
  if (LIST_GROW(list) < 0)
    return -ENOMEM;
  char *copy = strdup(name);
  if (!copy)
    return -ENOMEM;
  tide_git_ref *r = &list->v[list->n++];
  r->name = copy;
  if (id)
    lib.git_oid_tostr(r->id, sizeof r->id, id);
  else
    r->id[0] = '\0';
  return 0;
}

static int ref_cmp(const void *a, const void *b)
{
  return strcmp(((const tide_git_ref *)a)->name, ((const tide_git_ref *)b)->name);
}

static int str_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- messages ------------------------------------------------------------------------------- */

char *tide_git_redact_url(const char *url, char *out, size_t n)
{
  if (n == 0)
    return out;
  const char *scheme = strstr(url, "://");
  const char *auth = scheme ? scheme + 3 : NULL;
  const char *end = auth ? auth + strcspn(auth, "/?#") : NULL;
  const char *at = NULL;
  for (const char *p = auth; p && p < end; p++)
    if (*p == '@')
      at = p; /* the last '@' ends the user part; passwords may contain '@' */
  const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
  if (!colon) {
    snprintf(out, n, "%s", url);
    return out;
  }
  snprintf(out, n, "%.*s***%s", (int)(colon + 1 - url), url, at);
  return out;
}

/* Replaces every occurrence of secret in msg by "***" (msg has room for cap bytes). */
static void scrub(char *msg, size_t cap, const char *secret)
{
  size_t slen = secret ? strlen(secret) : 0;
  if (slen == 0)
    return;
  char *p;
  while ((p = strstr(msg, secret)) != NULL) {
    size_t tail = strlen(p + slen);
    if (slen >= 3) {
      memcpy(p, "***", 3);
      memmove(p + 3, p + slen, tail + 1);
    } else if (p + 3 + tail < msg + cap) {
      memmove(p + 3, p + slen, tail + 1);
      memcpy(p, "***", 3);
    } else {
      memset(p, '*', slen);
    }
  }
}

/* Secrets that a message must never carry: the creds' and a URL's password. */
static void scrub_all(tide_err *err, const tide_git_creds *c, const char *url)
{
  if (!err)
    return;
  if (c) {
    scrub(err->msg, sizeof err->msg, c->token);
    scrub(err->msg, sizeof err->msg, c->password);
    scrub(err->msg, sizeof err->msg, c->ssh_key_passphrase);
  }
  const char *scheme = url ? strstr(url, "://") : NULL;
  if (scheme) {
    const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
      if (*p == '@')
        at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon && at > colon + 1) {
      char pw[256];
      snprintf(pw, sizeof pw, "%.*s", (int)(at - colon - 1), colon + 1);
      scrub(err->msg, sizeof err->msg, pw);
      explicit_bzero(pw, sizeof pw);
    }
  }
}

static const char *last_message(void)
{
  const git_error *e = lib.git_error_last();
  return e && e->message ? e->message : "unknown error";
}

/* Fills err from libgit2's last error: "op 'subject': message". */
static int git_fail(tide_err *err, int rc, const char *op, const char *subject)
{
  int code = rc == GIT_EUSER ? TIDE_ECANCELED : TIDE_EGIT;
  if (rc == GIT_EUSER)
    return tide_err_set(err, code, "%s '%s': canceled", op, subject);
  return tide_err_set(err, code, "%s '%s': %s", op, subject, last_message());
}

/* ---- repositories and revisions ------------------------------------------------------------- */

static int repo_open(const char *path, const char *op, git_repository **repo, tide_err *err)
{
  int rc = lib_init(op, path, err);
  if (rc < 0)
    return rc;
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    return tide_err_set(err, -e, "%s '%s': %s", op, path, tide_strerror(-e));
  }
  rc = lib.git_repository_open_ext(repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
  if (rc == GIT_ENOTFOUND)
    return tide_err_set(err, TIDE_EGIT, "%s '%s': not a git repository", op, path);
  if (rc < 0)
    return git_fail(err, rc, op, path);
  return 0;
}

static int fill_info(git_repository *repo, tide_git_repo_info *info, const char *op,
                     const char *path, tide_err *err)
{
  const char *dir = lib.git_repository_workdir(repo);
  info->bare = lib.git_repository_is_bare(repo);
  if (!dir)
    dir = lib.git_repository_path(repo);
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/')
    len--;
  info->path = strndup(dir, len);
  return info->path ? 0 : oom(err, op);
}

int tide_git_init(const char *path, int bare, tide_git_repo_info *info, tide_err *err)
{
  int rc = lib_init("git.init", path, err);
  if (rc < 0)
    return rc;
  git_repository *repo = NULL;
  rc = lib.git_repository_init(&repo, path, bare ? 1 : 0);
  if (rc < 0)
    return git_fail(err, rc, "git.init", path);
  rc = info ? fill_info(repo, info, "git.init", path, err) : 0;
  lib.git_repository_free(repo);
  return rc;
}

int tide_git_open(const char *path, tide_git_repo_info *info, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.open", &repo, err);
  if (rc < 0)
    return rc;
  rc = info ? fill_info(repo, info, "git.open", path, err) : 0;
  lib.git_repository_free(repo);
  return rc;
}

/*
** The object rev names, peeled to type. A name that only exists as a branch of origin resolves
** to that branch, so a fresh clone resolves every branch of its remote by its plain name.
*/
static int lookup(git_repository *repo, const char *rev, git_object_t type, git_object **out,
                  const char *path, tide_err *err)
{
  git_object *obj = NULL;
  int rc = lib.git_revparse_single(&obj, repo, rev);
  if (rc < 0 && rc != GIT_EAMBIGUOUS && strlen(rev) < 200) {
    /* Only a plain name, never an expression: "HEAD~5" must not become origin/HEAD~5. */
    char name[256];
    git_reference *ref = NULL;
    snprintf(name, sizeof name, "refs/remotes/origin/%s", rev);
    if (lib.git_reference_lookup(&ref, repo, name) == 0 &&
        lib.git_reference_peel(&obj, ref, GIT_OBJECT_ANY) == 0)
      rc = 0;
    lib.git_reference_free(ref);
  }
  if (rc == 0) {
    rc = lib.git_object_peel(out, obj, type);
    lib.git_object_free(obj);
  }
  if (rc < 0)
    return tide_err_set(err, TIDE_EGIT, "revision '%s' does not resolve in %s", rev, path);
  return 0;
}

static int lookup_commit(git_repository *repo, const char *rev, git_commit **out, const char *path,
                         tide_err *err)
{
  return lookup(repo, rev, GIT_OBJECT_COMMIT, (git_object **)out, path, err);
}

int tide_git_resolve(const char *path, const char *rev, char id[TIDE_GIT_OID_HEX], tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.resolve", &repo, err);
  if (rc < 0)
    return rc;
  git_commit *c;
  rc = lookup_commit(repo, rev, &c, path, err);
  if (rc == 0) {
    lib.git_oid_tostr(id, TIDE_GIT_OID_HEX, lib.git_commit_id(c));
    lib.git_commit_free(c);
  }
  lib.git_repository_free(repo);
  return rc;
}

static int fill_sig(tide_git_sig *s, const git_signature *g)
{
  s->name = strdup(g->name ? g->name : "");
  s->email = strdup(g->email ? g->email : "");
  s->time = (int64_t)g->when.time;
  s->offset = g->when.offset;
  return s->name && s->email ? 0 : -ENOMEM;
}

static int fill_commit(tide_git_commit *out, git_commit *c)
{
  lib.git_oid_tostr(out->id, sizeof out->id, lib.git_commit_id(c));
  const char *msg = lib.git_commit_message(c), *summary = lib.git_commit_summary(c);
  out->message = strdup(msg ? msg : "");
  out->summary = strdup(summary ? summary : "");
  if (!out->message || !out->summary || fill_sig(&out->author, lib.git_commit_author(c)) < 0 ||
      fill_sig(&out->committer, lib.git_commit_committer(c)) < 0)
    return -ENOMEM;
  unsigned n = lib.git_commit_parentcount(c);
  if (n) {
    out->parents = calloc(n, sizeof *out->parents);
    if (!out->parents)
      return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
      lib.git_oid_tostr(out->parents[i], TIDE_GIT_OID_HEX, lib.git_commit_parent_id(c, i));
  }
  out->nparents = n;
  return 0;
}

int tide_git_commit_info(const char *path, const char *rev, tide_git_commit *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.commit_info", &repo, err);
  if (rc < 0)
    return rc;
  git_commit *c;
  rc = lookup_commit(repo, rev, &c, path, err);
  if (rc == 0) {
    if (fill_commit(out, c) < 0)
      rc = oom(err, "git.commit_info");
    lib.git_commit_free(c);
  }
  lib.git_repository_free(repo);
  return rc;
}

/* ---- history and diffs ---------------------------------------------------------------------- */

/* 1 when commit c changes a path matched by o's pathspecs against its first parent, else 0. */
static int touches(git_repository *repo, git_commit *c, const tide_git_log_opts *o, int *hit)
{
  git_tree *tree = NULL, *ptree = NULL;
  git_commit *parent = NULL;
  git_diff *diff = NULL;
  git_diff_options dopts;
  lib.git_diff_options_init(&dopts, GIT_DIFF_OPTIONS_VERSION);
  dopts.pathspec.strings = (char **)o->paths;
  dopts.pathspec.count = o->npaths;
  dopts.flags |= GIT_DIFF_SKIP_BINARY_CHECK;
  int rc = lib.git_commit_tree(&tree, c);
  if (rc == 0 && lib.git_commit_parentcount(c) > 0) {
    rc = lib.git_commit_parent(&parent, c, 0);
    if (rc == 0)
      rc = lib.git_commit_tree(&ptree, parent);
  }
  if (rc == 0)
    rc = lib.git_diff_tree_to_tree(&diff, repo, ptree, tree, &dopts);
  if (rc == 0)
    *hit = lib.git_diff_num_deltas(diff) > 0;
  lib.git_diff_free(diff);
  lib.git_tree_free(tree);
  lib.git_tree_free(ptree);
  lib.git_commit_free(parent);
  return rc;
}

int tide_git_log(const char *path, const tide_git_log_opts *o, tide_git_commits *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.log", &repo, err);
  if (rc < 0)
    return rc;
  git_revwalk *walk = NULL;
  git_commit *from = NULL, *to = NULL;
  const char *from_rev = o->from ? o->from : "HEAD";
  rc = lookup_commit(repo, from_rev, &from, path, err);
  if (rc == 0 && o->to)
    rc = lookup_commit(repo, o->to, &to, path, err);
  if (rc == 0) {
    int g = lib.git_revwalk_new(&walk, repo);
    if (g == 0) {
      lib.git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_TIME);
      g = lib.git_revwalk_push(walk, lib.git_commit_id(from));
    }
    if (g == 0 && to)
      g = lib.git_revwalk_hide(walk, lib.git_commit_id(to));
    if (g < 0)
      rc = git_fail(err, g, "git.log", path);
  }
  git_oid id;
  while (rc == 0 && (!o->limit || out->n < o->limit)) {
    int next = lib.git_revwalk_next(&id, walk);
    if (next == GIT_ITEROVER)
      break;
    git_commit *c = NULL;
    if (next < 0 || (next = lib.git_commit_lookup(&c, repo, &id)) < 0) {
      rc = git_fail(err, next, "git.log", path);
      break;
    }
    int hit = 1;
    if (o->npaths && (next = touches(repo, c, o, &hit)) < 0) {
      rc = git_fail(err, next, "git.log", path);
    } else if (hit) {
      if (LIST_GROW(out) < 0) {
        rc = oom(err, "git.log");
      } else {
        tide_git_commit *dst = &out->v[out->n++];
        memset(dst, 0, sizeof *dst);
        if (fill_commit(dst, c) < 0)
          rc = oom(err, "git.log");
      }
    }
    lib.git_commit_free(c);
  }
  lib.git_revwalk_free(walk);
  lib.git_commit_free(from);
  lib.git_commit_free(to);
  lib.git_repository_free(repo);
  return rc;
}

static int strs_add(tide_git_strs *list, const char *s)
{
  if (!s)
    return 0;
  if (LIST_GROW(list) < 0)
    return -ENOMEM;
  if (!(list->v[list->n] = strdup(s)))
    return -ENOMEM;
  list->n++;
  return 0;
}

static int collect_delta(const git_diff_delta *d, float progress, void *payload)
{
  (void)progress;
  tide_git_strs *list = payload;
  if (strs_add(list, d->old_file.path) < 0)
    return -1;
  if (d->new_file.path && d->old_file.path && strcmp(d->new_file.path, d->old_file.path) == 0)
    return 0;
  return strs_add(list, d->new_file.path) < 0 ? -1 : 0;
}

int tide_git_changed_paths(const char *path, const char *from, const char *to, tide_git_strs *out,
                           tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.changed_paths", &repo, err);
  if (rc < 0)
    return rc;
  git_commit *a = NULL, *b = NULL;
  git_tree *ta = NULL, *tb = NULL;
  git_diff *diff = NULL;
  rc = lookup_commit(repo, from, &a, path, err);
  if (rc == 0)
    rc = lookup_commit(repo, to, &b, path, err);
  if (rc == 0) {
    git_diff_options dopts;
    lib.git_diff_options_init(&dopts, GIT_DIFF_OPTIONS_VERSION);
    dopts.flags |= GIT_DIFF_SKIP_BINARY_CHECK;
    int g = lib.git_commit_tree(&ta, a);
    if (g == 0)
      g = lib.git_commit_tree(&tb, b);
    if (g == 0)
      g = lib.git_diff_tree_to_tree(&diff, repo, ta, tb, &dopts);
    if (g == 0) {
      g = lib.git_diff_foreach(diff, collect_delta, NULL, NULL, NULL, out);
      if (g == GIT_EUSER)
        rc = oom(err, "git.changed_paths");
    }
    if (g < 0 && rc == 0)
      rc = git_fail(err, g, "git.changed_paths", path);
  }
  if (rc == 0 && out->n > 1) {
    qsort(out->v, out->n, sizeof *out->v, str_cmp);
    size_t w = 1;
    for (size_t r = 1; r < out->n; r++) {
      if (strcmp(out->v[r], out->v[w - 1]) == 0)
        free(out->v[r]);
      else
        out->v[w++] = out->v[r];
    }
    out->n = w;
  }
  lib.git_diff_free(diff);
  lib.git_tree_free(ta);
  lib.git_tree_free(tb);
  lib.git_commit_free(a);
  lib.git_commit_free(b);
  lib.git_repository_free(repo);
  return rc;
}

/* ---- refs ----------------------------------------------------------------------------------- */

int tide_git_tags(const char *path, tide_git_refs *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.tags", &repo, err);
  if (rc < 0)
    return rc;
  git_reference_iterator *it = NULL;
  int g = lib.git_reference_iterator_glob_new(&it, repo, "refs/tags/*");
  git_reference *ref;
  while (g == 0 && (g = lib.git_reference_next(&ref, it)) == 0) {
    git_object *target = NULL;
    if (lib.git_reference_peel(&target, ref, GIT_OBJECT_ANY) == 0) {
      if (refs_push(out, lib.git_reference_shorthand(ref), lib.git_object_id(target)) < 0)
        rc = g = oom(err, "git.tags");
      lib.git_object_free(target);
    }
    lib.git_reference_free(ref);
  }
  if (g < 0 && g != GIT_ITEROVER && rc == 0)
    rc = git_fail(err, g, "git.tags", path);
  lib.git_reference_iterator_free(it);
  lib.git_repository_free(repo);
  if (rc == 0 && out->n > 1)
    qsort(out->v, out->n, sizeof *out->v, ref_cmp);
  return rc;
}

int tide_git_branches(const char *path, int remote, tide_git_refs *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.branches", &repo, err);
  if (rc < 0)
    return rc;
  git_branch_iterator *it = NULL;
  int g = lib.git_branch_iterator_new(&it, repo, remote ? GIT_BRANCH_REMOTE : GIT_BRANCH_LOCAL);
  git_reference *ref;
  git_branch_t type;
  while (g == 0 && (g = lib.git_branch_next(&ref, &type, it)) == 0) {
    const char *name = NULL;
    /* Symbolic ones (origin/HEAD) are aliases, not branches. */
    if (lib.git_reference_type(ref) == GIT_REFERENCE_DIRECT &&
        lib.git_branch_name(&name, ref) == 0 &&
        refs_push(out, name, lib.git_reference_target(ref)) < 0)
      rc = g = oom(err, "git.branches");
    lib.git_reference_free(ref);
  }
  if (g < 0 && g != GIT_ITEROVER && rc == 0)
    rc = git_fail(err, g, "git.branches", path);
  lib.git_branch_iterator_free(it);
  lib.git_repository_free(repo);
  if (rc == 0 && out->n > 1)
    qsort(out->v, out->n, sizeof *out->v, ref_cmp);
  return rc;
}

int tide_git_head_get(const char *path, tide_git_head *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.head", &repo, err);
  if (rc < 0)
    return rc;
  git_reference *head = NULL;
  int g = lib.git_reference_lookup(&head, repo, "HEAD");
  if (g == 0 && lib.git_reference_type(head) == GIT_REFERENCE_SYMBOLIC) {
    const char *target = lib.git_reference_symbolic_target(head);
    if (strncmp(target, "refs/heads/", 11) == 0)
      target += 11;
    if (!(out->branch = strdup(target)))
      rc = oom(err, "git.head");
  }
  git_oid id;
  if (g == 0 && rc == 0) {
    int r = lib.git_reference_name_to_id(&id, repo, "HEAD");
    if (r == 0)
      lib.git_oid_tostr(out->id, sizeof out->id, &id);
    else if (r != GIT_ENOTFOUND && r != GIT_EUNBORNBRANCH)
      g = r;
  }
  if (g < 0 && rc == 0)
    rc = git_fail(err, g, "git.head", path);
  lib.git_reference_free(head);
  lib.git_repository_free(repo);
  return rc;
}

/* ---- work tree, index and commits ----------------------------------------------------------- */

static const char *index_word(unsigned s)
{
  if (s & GIT_STATUS_INDEX_NEW)
    return "new";
  if (s & GIT_STATUS_INDEX_MODIFIED)
    return "modified";
  if (s & GIT_STATUS_INDEX_DELETED)
    return "deleted";
  if (s & GIT_STATUS_INDEX_RENAMED)
    return "renamed";
  if (s & GIT_STATUS_INDEX_TYPECHANGE)
    return "typechange";
  return NULL;
}

static const char *worktree_word(unsigned s)
{
  if (s & GIT_STATUS_WT_NEW)
    return "untracked";
  if (s & GIT_STATUS_WT_MODIFIED)
    return "modified";
  if (s & GIT_STATUS_WT_DELETED)
    return "deleted";
  if (s & GIT_STATUS_WT_RENAMED)
    return "renamed";
  if (s & GIT_STATUS_WT_TYPECHANGE)
    return "typechange";
  return NULL;
}

int tide_git_status(const char *path, tide_git_statuses *out, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.status", &repo, err);
  if (rc < 0)
    return rc;
  git_status_options so;
  lib.git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
  so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
             GIT_STATUS_OPT_SORT_CASE_SENSITIVELY | GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
  git_status_list *list = NULL;
  int g = lib.git_status_list_new(&list, repo, &so);
  if (g < 0)
    rc = git_fail(err, g, "git.status", path);
  size_t n = list ? lib.git_status_list_entrycount(list) : 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const git_status_entry *e = lib.git_status_byindex(list, i);
    if (e->status == GIT_STATUS_CURRENT || (e->status & GIT_STATUS_IGNORED))
      continue;
    const git_diff_delta *d = e->index_to_workdir ? e->index_to_workdir : e->head_to_index;
    const char *p = d->new_file.path ? d->new_file.path : d->old_file.path;
    if (LIST_GROW(out) < 0) {
      rc = oom(err, "git.status");
      break;
    }
    tide_git_status_entry *dst = &out->v[out->n];
    if (!(dst->path = strdup(p))) {
      rc = oom(err, "git.status");
      break;
    }
    out->n++;
    int conflicted = (e->status & GIT_STATUS_CONFLICTED) != 0;
    dst->index = conflicted ? "conflicted" : index_word(e->status);
    dst->worktree = conflicted ? "conflicted" : worktree_word(e->status);
  }
  lib.git_status_list_free(list);
  lib.git_repository_free(repo);
  return rc;
}

int tide_git_add(const char *path, const char *const *paths, size_t n, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.add", &repo, err);
  if (rc < 0)
    return rc;
  int all = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(paths[i], ".") == 0)
      all = 1;
  if (n == 0) {
    lib.git_repository_free(repo);
    return 0;
  }
  git_strarray spec = {(char **)paths, all ? 0 : n};
  git_index *index = NULL;
  int g = lib.git_repository_index(&index, repo);
  if (g == 0)
    g = lib.git_index_add_all(index, &spec, GIT_INDEX_ADD_DEFAULT, NULL, NULL);
  if (g == 0) /* deletions: add_all only sees files that exist */
    g = lib.git_index_update_all(index, &spec, NULL, NULL);
  if (g == 0)
    g = lib.git_index_write(index);
  if (g < 0)
    rc = git_fail(err, g, "git.add", path);
  lib.git_index_free(index);
  lib.git_repository_free(repo);
  return rc;
}

int tide_git_commit_create(const char *path, const char *message, const char *name,
                           const char *email, char id[TIDE_GIT_OID_HEX], tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.commit", &repo, err);
  if (rc < 0)
    return rc;
  git_signature *sig = NULL;
  git_index *index = NULL;
  git_tree *tree = NULL;
  git_commit *parent = NULL;
  git_oid tree_id, commit_id;
  int g = name ? lib.git_signature_now(&sig, name, email ? email : "")
               : lib.git_signature_default(&sig, repo);
  if (g < 0) {
    rc = name ? git_fail(err, g, "git.commit", path)
              : tide_err_set(err, TIDE_EGIT,
                             "git.commit '%s': no author given and user.name is not configured",
                             path);
    goto done;
  }
  if ((g = lib.git_repository_index(&index, repo)) < 0 ||
      (g = lib.git_index_write_tree(&tree_id, index)) < 0 ||
      (g = lib.git_tree_lookup(&tree, repo, &tree_id)) < 0)
    goto fail;
  git_oid head;
  int h = lib.git_reference_name_to_id(&head, repo, "HEAD");
  if (h == 0) {
    if ((g = lib.git_commit_lookup(&parent, repo, &head)) < 0)
      goto fail;
  } else if (h != GIT_ENOTFOUND && h != GIT_EUNBORNBRANCH) {
    g = h;
    goto fail;
  }
  const git_commit *parents[1] = {parent};
  g = lib.git_commit_create(&commit_id, repo, "HEAD", sig, sig, NULL, message, tree, parent ? 1 : 0,
                            parents);
  if (g < 0)
    goto fail;
  lib.git_oid_tostr(id, TIDE_GIT_OID_HEX, &commit_id);
  goto done;
fail:
  rc = git_fail(err, g, "git.commit", path);
done:
  lib.git_commit_free(parent);
  lib.git_tree_free(tree);
  lib.git_index_free(index);
  lib.git_signature_free(sig);
  lib.git_repository_free(repo);
  return rc;
}

/* ---- remotes -------------------------------------------------------------------------------- */

typedef struct remote_state {
  const tide_git_remote_opts *ro;
  int tried_username, tried_userpass, tried_key, tried_agent;
  int auth_failed, host_key_failed;
  const char *url;
  tide_git_progress progress;
} remote_state;

static int credentials_cb(git_credential **out, const char *url, const char *url_user,
                          unsigned int allowed, void *payload)
{
  (void)url;
  remote_state *st = payload;
  const tide_git_creds *c = st->ro ? st->ro->creds : NULL;
  const char *user = c && c->username ? c->username : url_user ? url_user : "git";
  if ((allowed & GIT_CREDENTIAL_USERNAME) && !st->tried_username) {
    st->tried_username = 1;
    return lib.git_credential_username_new(out, user);
  }
  if (allowed & GIT_CREDENTIAL_SSH_KEY) {
    if (c && c->ssh_key && !st->tried_key) {
      st->tried_key = 1;
      if (strncmp(c->ssh_key, "-----BEGIN", 10) == 0)
        return lib.git_credential_ssh_key_memory_new(out, user, NULL, c->ssh_key,
                                                     c->ssh_key_passphrase);
      return lib.git_credential_ssh_key_new(out, user, NULL, c->ssh_key, c->ssh_key_passphrase);
    }
    if (!(c && c->ssh_key) && !st->tried_agent && getenv("SSH_AUTH_SOCK")) {
      st->tried_agent = 1;
      return lib.git_credential_ssh_key_from_agent(out, user);
    }
  }
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && c && (c->token || c->password) &&
      !st->tried_userpass) {
    st->tried_userpass = 1;
    return lib.git_credential_userpass_plaintext_new(out, user, c->token ? c->token : c->password);
  }
  st->auth_failed = 1;
  lib.git_error_set_str(GIT_ERROR_NET, "authentication failed");
  return GIT_EAUTH;
}

/* The port of an ssh:// URL, 22 for scp-like ones and URLs without one. */
static int ssh_port(const char *url)
{
  const char *p = url ? strstr(url, "://") : NULL;
  if (!p)
    return 22;
  p += 3;
  const char *end = p + strcspn(p, "/");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at)
    p = at + 1;
  if (*p == '[') /* an IPv6 literal */
    p = memchr(p, ']', (size_t)(end - p)) ? (const char *)memchr(p, ']', (size_t)(end - p)) : end;
  const char *colon = memchr(p, ':', (size_t)(end - p));
  int port = colon ? atoi(colon + 1) : 22;
  return port > 0 ? port : 22;
}

static int b64_value(int c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes len base64 characters of in into out (room for n bytes); returns the length or -1. */
static long b64_decode(const char *in, size_t len, unsigned char *out, size_t n)
{
  unsigned bits = 0, acc = 0;
  size_t o = 0;
  for (size_t i = 0; i < len && in[i] != '='; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0)
      return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o >= n)
        return -1;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return (long)o;
}

/* 1 when the comma-separated known_hosts host field (len bytes) names host on port. */
static int hosts_match(const char *field, size_t len, const char *host, int port)
{
  char want[300];
  int n = port == 22 ? snprintf(want, sizeof want, "%s", host)
                     : snprintf(want, sizeof want, "[%s]:%d", host, port);
  if (n < 0 || (size_t)n >= sizeof want)
    return 0;
  size_t wlen = (size_t)n;
  const char *p = field, *end = field + len;
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma ? comma : end;
    if ((size_t)(stop - p) == wlen && strncasecmp(p, want, wlen) == 0)
      return 1;
    p = stop + 1;
  }
  return 0;
}

static int blank(char c)
{
  return c == ' ' || c == '\t' || c == '\r';
}

/* The next whitespace-separated field of [*p, end): its start and length; *p moves past it. */
static size_t next_field(const char **p, const char *end, const char **start)
{
  const char *q = *p;
  while (q < end && blank(*q))
    q++;
  *start = q;
  while (q < end && !blank(*q))
    q++;
  *p = q;
  return (size_t)(q - *start);
}

int tide_git_known_host(const char *known_hosts, const char *host, int port, const void *key,
                        size_t len)
{
  unsigned char blob[4096];
  if (!known_hosts || !host || !key || len == 0)
    return -1;
  const char *line = known_hosts;
  while (*line) {
    const char *end = line + strcspn(line, "\n"), *p = line;
    const char *hosts, *type, *b64;
    size_t hlen = next_field(&p, end, &hosts);
    size_t tlen = next_field(&p, end, &type);
    size_t blen = next_field(&p, end, &b64);
    if (hlen && tlen && blen && hosts[0] != '#' && hosts[0] != '@' && hosts[0] != '|' &&
        hosts_match(hosts, hlen, host, port)) {
      long n = b64_decode(b64, blen, blob, sizeof blob);
      if (n >= 0 && (size_t)n == len && memcmp(blob, key, len) == 0)
        return 0;
    }
    line = *end ? end + 1 : end;
  }
  return -1;
}

static int certificate_cb(git_cert *cert, int valid, const char *host, void *payload)
{
  remote_state *st = payload;
  const tide_git_creds *c = st->ro ? st->ro->creds : NULL;
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2 || !c || !c->known_hosts)
    return valid ? 0 : GIT_PASSTHROUGH;
  const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;
  if ((hk->type & GIT_CERT_SSH_RAW) && tide_git_known_host(c->known_hosts, host, ssh_port(st->url),
                                                           hk->hostkey, hk->hostkey_len) == 0)
    return 0;
  st->host_key_failed = 1;
  lib.git_error_set_str(GIT_ERROR_SSH, "host key not in known_hosts");
  return GIT_ECERTIFICATE;
}

static int transfer_cb(const git_indexer_progress *s, void *payload)
{
  remote_state *st = payload;
  if (!st->ro || !st->ro->progress)
    return 0;
  tide_git_progress *p = &st->progress;
  p->phase = s->received_objects < s->total_objects ? "receiving" : "resolving";
  p->total_objects = s->total_objects;
  p->received_objects = s->received_objects;
  p->indexed_objects = s->indexed_objects;
  p->total_deltas = s->total_deltas;
  p->indexed_deltas = s->indexed_deltas;
  p->received_bytes = s->received_bytes;
  return st->ro->progress(st->ro->progress_ctx, p) ? GIT_EUSER : 0;
}

static void checkout_cb(const char *path, size_t done, size_t total, void *payload)
{
  (void)path;
  remote_state *st = payload;
  if (!st->ro || !st->ro->progress)
    return;
  st->progress.phase = "checkout";
  st->progress.checkout_done = done;
  st->progress.checkout_total = total;
  st->ro->progress(st->ro->progress_ctx, &st->progress);
}

static void set_callbacks(git_remote_callbacks *cb, remote_state *st)
{
  cb->credentials = credentials_cb;
  cb->certificate_check = certificate_cb;
  cb->transfer_progress = transfer_cb;
  cb->payload = st;
}

/* The error of a remote operation on url, the URL's password redacted and secrets scrubbed. */
static int remote_fail(tide_err *err, int rc, const remote_state *st, const char *op,
                       const char *url)
{
  char shown[512];
  tide_git_redact_url(url, shown, sizeof shown);
  if (st->host_key_failed)
    tide_err_set(err, TIDE_EGIT, "%s '%s': the server's host key is not in known_hosts", op, shown);
  else if (st->auth_failed || rc == GIT_EAUTH)
    tide_err_set(err, TIDE_EGIT, "%s '%s': authentication failed", op, shown);
  else
    git_fail(err, rc, op, shown);
  scrub_all(err, st->ro ? st->ro->creds : NULL, url);
  return err ? err->code : (rc == GIT_EUSER ? TIDE_ECANCELED : TIDE_EGIT);
}

/* A local path (not a URL, not scp-like) that does not exist: -ENOENT, else 0. */
static int missing_local(const char *url, const char *op, tide_err *err)
{
  const char *p = url;
  if (strncmp(url, "file://", 7) == 0)
    p = url + 7;
  else if (strstr(url, "://"))
    return 0;
  else if (url[0] != '/' && url[0] != '.' && strchr(url, ':') &&
           strchr(url, ':') < (strchr(url, '/') ? strchr(url, '/') : url + strlen(url)))
    return 0; /* user@host:path */
  struct stat st;
  if (stat(p, &st) == 0)
    return 0;
  int e = errno;
  return tide_err_set(err, -e, "%s '%s': %s", op, url, tide_strerror(-e));
}

/*
** Remotes are made with GIT_REMOTE_CREATE_SKIP_INSTEADOF and read from the configuration by
** hand rather than with git_remote_lookup: libgit2 1.5.1 leaks a PCRE2 match block for every
** configuration entry its url.*.insteadOf scan does not match, and url.insteadOf rewriting has
** no place in a build host anyway (the URL given is the URL used).
*/
static int clone_remote_cb(git_remote **out, git_repository *repo, const char *name,
                           const char *url, void *payload)
{
  (void)payload;
  git_remote_create_options ro;
  lib.git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
  ro.repository = repo;
  ro.name = name;
  ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
  return lib.git_remote_create_with_opts(out, url, &ro);
}

/* An in-memory remote for url, tied to repo (NULL allowed) for its object database. */
static int anonymous_remote(git_remote **out, git_repository *repo, const char *url)
{
  git_remote_create_options ro;
  lib.git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
  ro.repository = repo;
  ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  return lib.git_remote_create_with_opts(out, url, &ro);
}

/* remote.<name>.url of repo into *url (caller frees), or GIT_ENOTFOUND. */
static int remote_url(git_repository *repo, const char *name, char **url)
{
  git_config *cfg = NULL;
  git_buf buf = {0};
  char key[300];
  if (strlen(name) > 200)
    return GIT_ENOTFOUND;
  snprintf(key, sizeof key, "remote.%s.url", name);
  int rc = lib.git_repository_config_snapshot(&cfg, repo);
  if (rc == 0)
    rc = lib.git_config_get_string_buf(&buf, cfg, key);
  if (rc == 0 && !(*url = strdup(buf.ptr)))
    rc = -1;
  lib.git_buf_dispose(&buf);
  lib.git_config_free(cfg);
  return rc;
}

static int collect_refspec(const git_config_entry *entry, void *payload)
{
  return strs_add(payload, entry->value) < 0 ? -1 : 0;
}

int tide_git_clone(const tide_git_clone_opts *o, tide_err *err)
{
  char shown[512];
  int rc = lib_init("git.clone", tide_git_redact_url(o->url, shown, sizeof shown), err);
  if (rc < 0 || (rc = missing_local(o->url, "git.clone", err)) < 0)
    return rc;
  remote_state st = {.ro = &o->remote, .url = o->url};
  git_clone_options co;
  lib.git_clone_options_init(&co, GIT_CLONE_OPTIONS_VERSION);
  co.bare = o->bare ? 1 : 0;
  co.checkout_branch = o->branch;
  /* Copy the objects of a local source rather than hard-link them: a workspace must not share
     inodes with the repository it came from, and links fail across file systems. */
  co.local = GIT_CLONE_LOCAL_NO_LINKS;
  set_callbacks(&co.fetch_opts.callbacks, &st);
  co.remote_cb = clone_remote_cb;
  co.checkout_opts.progress_cb = checkout_cb;
  co.checkout_opts.progress_payload = &st;
  git_repository *repo = NULL;
  int g = lib.git_clone(&repo, o->url, o->dir, &co);
  lib.git_repository_free(repo);
  if (g < 0)
    return remote_fail(err, g, &st, "git.clone", o->url);
  return 0;
}

int tide_git_fetch(const char *path, const char *remote, const char *const *refspecs, size_t n,
                   const tide_git_remote_opts *ro, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.fetch", &repo, err);
  if (rc < 0)
    return rc;
  const char *name = remote ? remote : "origin";
  git_remote *r = NULL;
  char *url = NULL;
  tide_git_strs specs = {0};
  remote_state st = {.ro = ro};
  int g = remote_url(repo, name, &url);
  if (g < 0) {
    rc = g == GIT_ENOTFOUND
             ? tide_err_set(err, TIDE_EGIT, "git.fetch '%s': no remote named '%s'", path, name)
             : git_fail(err, g, "git.fetch", path);
    goto done;
  }
  if (n == 0) {
    git_config *cfg = NULL;
    char key[300];
    snprintf(key, sizeof key, "remote.%s.fetch", name);
    g = lib.git_repository_config_snapshot(&cfg, repo);
    if (g == 0)
      g = lib.git_config_get_multivar_foreach(cfg, key, NULL, collect_refspec, &specs);
    lib.git_config_free(cfg);
    if (g == GIT_ENOTFOUND)
      g = 0;
    if (g < 0) {
      rc = git_fail(err, g, "git.fetch", path);
      goto done;
    }
    refspecs = (const char *const *)specs.v;
    n = specs.n;
  }
  st.url = url;
  git_fetch_options fo;
  lib.git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
  set_callbacks(&fo.callbacks, &st);
  fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_AUTO;
  git_strarray arr = {(char **)refspecs, n};
  g = anonymous_remote(&r, repo, url);
  if (g == 0)
    g = lib.git_remote_fetch(r, &arr, &fo, NULL);
  if (g < 0)
    rc = remote_fail(err, g, &st, "git.fetch", url);
done:
  tide_git_strs_clear(&specs);
  free(url);
  lib.git_remote_free(r);
  lib.git_repository_free(repo);
  return rc;
}

int tide_git_ls_remote(const char *path, const char *url, const tide_git_remote_opts *ro,
                       tide_git_refs *out, tide_err *err)
{
  git_repository *repo = NULL;
  char shown[512];
  int rc =
      lib_init("git.ls_remote", path ? path : tide_git_redact_url(url, shown, sizeof shown), err);
  if (rc < 0 || (path && (rc = repo_open(path, "git.ls_remote", &repo, err)) < 0))
    return rc;
  git_remote *r = NULL;
  char *named = NULL;
  remote_state st = {.ro = ro};
  if (repo && remote_url(repo, url, &named) == 0)
    url = named;
  st.url = url;
  if ((rc = missing_local(url, "git.ls_remote", err)) < 0)
    goto done;
  git_remote_callbacks cb;
  lib.git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
  set_callbacks(&cb, &st);
  int g = anonymous_remote(&r, NULL, url);
  if (g == 0)
    g = lib.git_remote_connect(r, GIT_DIRECTION_FETCH, &cb, NULL, NULL);
  const git_remote_head **heads = NULL;
  size_t n = 0;
  if (g == 0)
    g = lib.git_remote_ls(&heads, &n, r);
  if (g < 0) {
    rc = remote_fail(err, g, &st, "git.ls_remote", url);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (refs_push(out, heads[i]->name, &heads[i]->oid) < 0) {
      rc = oom(err, "git.ls_remote");
      break;
    }
  }
done:
  if (r)
    lib.git_remote_disconnect(r);
  lib.git_remote_free(r);
  free(named);
  lib.git_repository_free(repo);
  return rc;
}

/* ---- checkout ------------------------------------------------------------------------------- */

/* Makes branch track origin's branch of the same name, as git checkout does (see clone). */
static int track_origin(git_repository *repo, const char *branch)
{
  git_config *cfg = NULL;
  char key[300], merge[300];
  int rc = lib.git_repository_config(&cfg, repo);
  if (rc == 0) {
    snprintf(key, sizeof key, "branch.%s.remote", branch);
    rc = lib.git_config_set_string(cfg, key, "origin");
  }
  if (rc == 0) {
    snprintf(key, sizeof key, "branch.%s.merge", branch);
    snprintf(merge, sizeof merge, "refs/heads/%s", branch);
    rc = lib.git_config_set_string(cfg, key, merge);
  }
  lib.git_config_free(cfg);
  return rc;
}

int tide_git_checkout(const char *path, const char *rev, int force, tide_err *err)
{
  git_repository *repo;
  int rc = repo_open(path, "git.checkout", &repo, err);
  if (rc < 0)
    return rc;
  git_reference *branch = NULL, *created = NULL;
  git_commit *commit = NULL;
  char name[512];
  int g = 0;
  if (strlen(rev) > 200) {
    rc = tide_err_set(err, TIDE_EGIT, "revision '%.200s...' does not resolve in %s", rev, path);
    goto done;
  }
  /* A branch wins over a tag or commit of the same name, as with git checkout. */
  snprintf(name, sizeof name, "refs/heads/%s", rev);
  if (lib.git_reference_lookup(&branch, repo, name) != 0) {
    git_reference *tracking = NULL;
    snprintf(name, sizeof name, "refs/remotes/origin/%s", rev);
    git_object *probe = NULL;
    int local = lib.git_revparse_single(&probe, repo, rev) == 0;
    lib.git_object_free(probe);
    if (!local && lib.git_reference_lookup(&tracking, repo, name) == 0) {
      git_commit *tip = NULL;
      g = lib.git_commit_lookup(&tip, repo, lib.git_reference_target(tracking));
      if (g == 0)
        g = lib.git_branch_create(&created, repo, rev, tip, 0);
      if (g == 0)
        g = track_origin(repo, rev);
      lib.git_commit_free(tip);
      lib.git_reference_free(tracking);
      if (g < 0) {
        rc = git_fail(err, g, "git.checkout", path);
        goto done;
      }
      branch = created;
      created = NULL;
    }
  }
  if ((rc = lookup_commit(repo, branch ? lib.git_reference_name(branch) : rev, &commit, path,
                          err)) < 0)
    goto done;
  git_checkout_options co;
  lib.git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
  co.checkout_strategy = force ? GIT_CHECKOUT_FORCE : GIT_CHECKOUT_SAFE;
  g = lib.git_checkout_tree(repo, (git_object *)commit, &co);
  if (g == 0)
    g = branch ? lib.git_repository_set_head(repo, lib.git_reference_name(branch))
               : lib.git_repository_set_head_detached(repo, lib.git_commit_id(commit));
  if (g < 0)
    rc = git_fail(err, g, "git.checkout", path);
done:
  lib.git_commit_free(commit);
  lib.git_reference_free(branch);
  lib.git_reference_free(created);
  lib.git_repository_free(repo);
  return rc;
}
