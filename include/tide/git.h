/*
** Git through libgit2: clone, fetch, checkout, revision lookup, history, tree diffs, refs, status,
** staging and commits, and listing the refs of a remote.
**
** Every function is synchronous (disk and network) and meant for the libuv thread pool. There is
** no shared state besides libgit2's own process-wide initialisation (done once, thread-safe): each
** call opens the repository it is given by path and closes it before returning, so calls on the
** same repository from different threads never share a libgit2 object.
**
** Repositories are named by path (a work tree or a bare repository, never searched upwards).
** Remote URLs may be local paths, file://, git://, http(s)://, ssh:// or scp-like user@host:path.
**
** Errors: 0 or a negative code with err filled. A path that does not exist is -ENOENT; a
** revision that does not resolve, a directory that is not a repository, a refused connection, an
** authentication failure and every other libgit2 failure are TIDE_EGIT. Messages name the
** operation and the repository path or the URL; a URL's password is replaced by "***" and no
** secret from tide_git_creds ever appears in a message.
**
** Ownership: every string argument is borrowed for the duration of the call. Result structures
** are caller-owned, zero-initialised before the call and released with their _clear function
** (also after a failure, which may leave them partly filled).
*/
#ifndef TIDE_GIT_H
#define TIDE_GIT_H

#include <stddef.h>
#include <stdint.h>

#include "tide/err.h"

/* 40 hex digits and a NUL. */
#define TIDE_GIT_OID_HEX 41

/*
** Credentials for a remote, all optional and borrowed. The first that fits what the server asks
** for is offered once; a second request for the same kind is an authentication failure:
** - HTTPS: token (as the password, with username or the URL's user or "git" as the user), else
**   username and password;
** - SSH: ssh_key (a private key: its PEM text, or the path of a key file) with its optional
**   passphrase and username (default: the URL's user, else "git"); without a key, the SSH agent.
** SSH host keys: known_hosts (the text of an OpenSSH known_hosts file: "host key-type base64"
** lines, hosts as "name" for port 22 or "[name]:port", comma-separated; hashed names are not
** supported) lists the keys to accept. Without it, libgit2 checks ~/.ssh/known_hosts. An unknown
** or different key fails the connection.
** The caller wipes its copies after the call.
*/
typedef struct tide_git_creds {
  const char *token;
  const char *username;
  const char *password;
  const char *ssh_key;
  const char *ssh_key_passphrase;
  const char *known_hosts;
} tide_git_creds;

/* What a transfer or a checkout has done so far. */
typedef struct tide_git_progress {
  const char *phase; /* "receiving", "resolving" or "checkout"; static */
  unsigned total_objects, received_objects, indexed_objects;
  unsigned total_deltas, indexed_deltas;
  uint64_t received_bytes;
  uint64_t checkout_total, checkout_done; /* files */
} tide_git_progress;

/*
** Called on the thread running the operation, often. Return 0 to go on, non-zero to abort the
** operation (it then fails with TIDE_ECANCELED).
*/
typedef int (*tide_git_progress_fn)(void *ctx, const tide_git_progress *progress);

typedef struct tide_git_remote_opts {
  const tide_git_creds *creds;   /* NULL: no credentials (the SSH agent is still tried) */
  tide_git_progress_fn progress; /* NULL allowed */
  void *progress_ctx;
} tide_git_remote_opts;

typedef struct tide_git_clone_opts {
  const char *url;
  const char *dir;    /* must not exist or be empty; removed again when the clone fails */
  const char *branch; /* NULL: the remote's default branch */
  int bare;
  tide_git_remote_opts remote;
} tide_git_clone_opts;

typedef struct tide_git_sig {
  char *name, *email;
  int64_t time; /* seconds since the epoch */
  int offset;   /* minutes east of UTC */
} tide_git_sig;

typedef struct tide_git_commit {
  char id[TIDE_GIT_OID_HEX];
  char *message; /* full, as stored */
  char *summary; /* the first paragraph on one line */
  tide_git_sig author, committer;
  char (*parents)[TIDE_GIT_OID_HEX];
  size_t nparents;
} tide_git_commit;

typedef struct tide_git_commits {
  tide_git_commit *v;
  size_t n, cap;
} tide_git_commits;

typedef struct tide_git_strs {
  char **v;
  size_t n, cap;
} tide_git_strs;

typedef struct tide_git_ref {
  char *name;
  char id[TIDE_GIT_OID_HEX]; /* a tag's commit, peeled; a symbolic remote ref's target */
} tide_git_ref;

typedef struct tide_git_refs {
  tide_git_ref *v;
  size_t n, cap;
} tide_git_refs;

typedef struct tide_git_status_entry {
  char *path;
  /* static words or NULL: "new", "modified", "deleted", "renamed", "typechange", "untracked"
     (worktree only), "conflicted" */
  const char *index, *worktree;
} tide_git_status_entry;

typedef struct tide_git_statuses {
  tide_git_status_entry *v;
  size_t n, cap;
} tide_git_statuses;

typedef struct tide_git_head {
  char *branch;              /* short name; NULL when detached */
  char id[TIDE_GIT_OID_HEX]; /* "" when the branch has no commit yet */
} tide_git_head;

typedef struct tide_git_log_opts {
  const char *from; /* newest revision; NULL: HEAD */
  const char *to;   /* commits reachable from it are left out (git log to..from); NULL: none */
  size_t limit;     /* 0: no limit */
  const char *const *paths; /* only commits that change one of these (pathspecs), NULL/0: all */
  size_t npaths;
} tide_git_log_opts;

typedef struct tide_git_repo_info {
  char *path; /* the work tree, or the git directory of a bare repository; absolute */
  int bare;
} tide_git_repo_info;

void tide_git_commit_clear(tide_git_commit *c);
void tide_git_commits_clear(tide_git_commits *list);
void tide_git_strs_clear(tide_git_strs *list);
void tide_git_refs_clear(tide_git_refs *list);
void tide_git_statuses_clear(tide_git_statuses *list);
void tide_git_head_clear(tide_git_head *head);
void tide_git_repo_info_clear(tide_git_repo_info *info);

/* Writes url into out (size n) with any password replaced by "***"; returns out. */
char *tide_git_redact_url(const char *url, char *out, size_t n);

/*
** 0 when the known_hosts text lists key (the raw public key blob, len bytes) for host on port,
** else -1. Lines that do not parse, comments, markers (@cert-authority, @revoked) and hashed host
** names never match.
*/
int tide_git_known_host(const char *known_hosts, const char *host, int port, const void *key,
                        size_t len);

/* Creates a repository at path (directories included); an existing one is reopened. */
int tide_git_init(const char *path, int bare, tide_git_repo_info *info, tide_err *err);

/* Checks that path is a repository (work tree or bare) and describes it. */
int tide_git_open(const char *path, tide_git_repo_info *info, tide_err *err);

/* Clones o->url into o->dir and checks out the branch (work tree clones). */
int tide_git_clone(const tide_git_clone_opts *o, tide_err *err);

/*
** Fetches from the remote named remote (NULL: "origin") with its configured refspecs, or with
** refspecs (n of them) when n > 0. Tags pointing into the fetched history come along.
*/
int tide_git_fetch(const char *repo, const char *remote, const char *const *refspecs, size_t n,
                   const tide_git_remote_opts *ro, tide_err *err);

/*
** Checks rev out into the work tree. A local branch is checked out and HEAD attached to it; a
** name that only exists as origin/<name> gets a local branch that tracks it, as git does; any
** other revision (tag, commit id, expression) detaches HEAD at its commit. Without force, local
** changes that the checkout would overwrite make it fail (nothing is changed); with force they
** are overwritten and files unknown to git are left alone.
*/
int tide_git_checkout(const char *repo, const char *rev, int force, tide_err *err);

/* The commit that rev (any git revision expression) names, as 40 hex digits in id. */
int tide_git_resolve(const char *repo, const char *rev, char id[TIDE_GIT_OID_HEX], tide_err *err);

int tide_git_commit_info(const char *repo, const char *rev, tide_git_commit *out, tide_err *err);

/* Commits newest first (by commit time, parents after children). */
int tide_git_log(const char *repo, const tide_git_log_opts *o, tide_git_commits *out,
                 tide_err *err);

/*
** The paths that differ between the trees of two commits, sorted bytewise, each once. No rename
** detection: a renamed file appears under its old and its new path.
*/
int tide_git_changed_paths(const char *repo, const char *from, const char *to, tide_git_strs *out,
                           tide_err *err);

/* Tags by short name, each with the commit it points to (annotated tags peeled); sorted. */
int tide_git_tags(const char *repo, tide_git_refs *out, tide_err *err);

/* Local branches (short names), or with remote non-zero remote-tracking ones ("origin/main"). */
int tide_git_branches(const char *repo, int remote, tide_git_refs *out, tide_err *err);

/* Changed, staged, untracked and conflicted paths (ignored files are left out); sorted. */
int tide_git_status(const char *repo, tide_git_statuses *out, tide_err *err);

/*
** Stages paths (pathspecs; n of them) as `git add` does, deletions included; "." stages
** everything. Ignored files are skipped.
*/
int tide_git_add(const char *repo, const char *const *paths, size_t n, tide_err *err);

/*
** Commits the index on the current branch (or detached HEAD). Author and committer are
** name/email, or the repository's user.name/user.email when name is NULL.
*/
int tide_git_commit_create(const char *repo, const char *message, const char *name,
                           const char *email, char id[TIDE_GIT_OID_HEX], tide_err *err);

/* The current branch (NULL when detached) and its commit. */
int tide_git_head_get(const char *repo, tide_git_head *out, tide_err *err);

/*
** The refs a remote advertises (name -> id, HEAD included) without fetching anything. url is a
** URL; with repo non-NULL it may also name a remote of that repository ("origin").
*/
int tide_git_ls_remote(const char *repo, const char *url, const tide_git_remote_opts *ro,
                       tide_git_refs *out, tide_err *err);

#endif
