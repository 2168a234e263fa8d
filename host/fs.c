/*
** File system helpers: the glob matcher and expander, tree walk, mkdir -p, rm -r, copy tree,
** atomic write and small whole-file reads and writes.
**
** Tree operations work relative to directory descriptors (openat, fstatat, unlinkat with
** O_NOFOLLOW), so a directory swapped for a symbolic link mid-way is never followed; they hold
** one descriptor per level of depth. Each directory is read completely and sorted before it is
** processed, which keeps the output deterministic and the number of open DIR streams at one.
**
** Glob matching is fnmatch(3) per segment plus a dynamic programme over segments for "**", so
** any number of "**" costs at most (pattern segments x path segments) fnmatch calls.
** Nothing here knows about Lua or the loop; see lua/lfs.c for that.
*/
#include "tide/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(tide_err *err, const char *op, const char *path, int e)
{
  return tide_err_set(err, -e, "%s '%s': %s", op, path, tide_strerror(-e));
}

const char *tide_fs_type_name(tide_fs_type type)
{
  static const char *const names[] = {"unknown", "file",   "directory", "link",
                                      "fifo",    "socket", "char",      "block"};
  return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

static tide_fs_type mode_type(mode_t m)
{
  if (S_ISREG(m))
    return TIDE_FS_FILE;
  if (S_ISDIR(m))
    return TIDE_FS_DIR;
  if (S_ISLNK(m))
    return TIDE_FS_LINK;
  if (S_ISFIFO(m))
    return TIDE_FS_FIFO;
  if (S_ISSOCK(m))
    return TIDE_FS_SOCKET;
  if (S_ISCHR(m))
    return TIDE_FS_CHAR;
  if (S_ISBLK(m))
    return TIDE_FS_BLOCK;
  return TIDE_FS_UNKNOWN;
}

void tide_fs_list_clear(tide_fs_list *list)
{
  for (size_t i = 0; i < list->n; i++)
    free(list->v[i].path);
  free(list->v);
  list->v = NULL;
  list->n = list->cap = 0;
}

static int list_add(tide_fs_list *list, const char *path, tide_fs_type type)
{
  if (list->n == list->cap) {
    size_t cap = list->cap ? list->cap * 2 : 32;
    tide_fs_entry *v = realloc(list->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    list->v = v;
    list->cap = cap;
  }
  char *p = strdup(path);
  if (!p)
    return -ENOMEM;
  list->v[list->n].path = p;
  list->v[list->n].type = type;
  list->n++;
  return 0;
}

static int entry_cmp(const void *a, const void *b)
{
  return strcmp(((const tide_fs_entry *)a)->path, ((const tide_fs_entry *)b)->path);
}

/* ---- path buffers ------------------------------------------------------------------------ */

typedef struct pbuf {
  char *p;
  size_t n, cap;
} pbuf;

/* Appends "/name" (no slash when empty or ending in one); returns the old length or -ENOMEM. */
static long pb_push(pbuf *b, const char *name)
{
  size_t old = b->n, nl = strlen(name);
  int slash = b->n > 0 && b->p[b->n - 1] != '/';
  size_t need = b->n + slash + nl + 1;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return -ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (slash)
    b->p[b->n++] = '/';
  memcpy(b->p + b->n, name, nl + 1);
  b->n += nl;
  return (long)old;
}

static void pb_pop(pbuf *b, long old)
{
  b->n = (size_t)old;
  b->p[b->n] = '\0';
}

static int pb_set(pbuf *b, const char *s)
{
  b->n = 0;
  if (!b->p) {
    b->p = malloc(256);
    if (!b->p)
      return -ENOMEM;
    b->cap = 256;
  }
  b->p[0] = '\0';
  return *s ? (pb_push(b, s) < 0 ? -ENOMEM : 0) : 0;
}

/* ---- reading a directory ----------------------------------------------------------------- */

typedef struct dent {
  char *name;
  unsigned char dtype;
} dent;

static int dent_cmp(const void *a, const void *b)
{
  return strcmp(((const dent *)a)->name, ((const dent *)b)->name);
}

static void dents_free(dent *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i].name);
  free(v);
}

/* Reads every name in the directory open at fd (except . and ..), sorted. fd stays open. */
static int read_names(int fd, dent **out, size_t *nout)
{
  int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0)
    return -errno;
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return -e;
  }
  rewinddir(d); /* the duplicate shares its offset with fd, which may have been read before */
  dent *v = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      rc = -errno;
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      dent *nv = realloc(v, cap * sizeof *v);
      if (!nv) {
        rc = -ENOMEM;
        break;
      }
      v = nv;
    }
    v[n].name = strdup(de->d_name);
    if (!v[n].name) {
      rc = -ENOMEM;
      break;
    }
    v[n].dtype = de->d_type;
    n++;
  }
  closedir(d);
  if (rc < 0) {
    dents_free(v, n);
    return rc;
  }
  if (n > 1)
    qsort(v, n, sizeof *v, dent_cmp);
  *out = v;
  *nout = n;
  return 0;
}

static tide_fs_type dent_type(int dirfd, const dent *d)
{
  switch (d->dtype) {
    case DT_REG:
      return TIDE_FS_FILE;
    case DT_DIR:
      return TIDE_FS_DIR;
    case DT_LNK:
      return TIDE_FS_LINK;
    case DT_FIFO:
      return TIDE_FS_FIFO;
    case DT_SOCK:
      return TIDE_FS_SOCKET;
    case DT_CHR:
      return TIDE_FS_CHAR;
    case DT_BLK:
      return TIDE_FS_BLOCK;
    default:
      break;
  }
  /* Some file systems do not fill d_type. */
  struct stat st;
  if (fstatat(dirfd, d->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return TIDE_FS_UNKNOWN;
  return mode_type(st.st_mode);
}

static int open_subdir(int dirfd, const char *name)
{
  return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* ---- glob matching ------------------------------------------------------------------------ */

typedef struct segs {
  char **v;
  size_t n;
  int abs;
  char *buf;
} segs;

static void segs_free(segs *s)
{
  free(s->v);
  free(s->buf);
  s->v = NULL;
  s->buf = NULL;
}

/* Splits at '/', dropping empty and "." segments. */
static int split(const char *s, segs *out)
{
  size_t len = strlen(s), max = 1;
  for (size_t i = 0; i < len; i++)
    max += s[i] == '/';
  out->abs = s[0] == '/';
  out->n = 0;
  out->buf = malloc(len + 1);
  out->v = malloc(max * sizeof *out->v);
  if (!out->buf || !out->v) {
    segs_free(out);
    return -ENOMEM;
  }
  memcpy(out->buf, s, len + 1);
  char *save = NULL;
  for (char *t = strtok_r(out->buf, "/", &save); t; t = strtok_r(NULL, "/", &save))
    if (strcmp(t, ".") != 0)
      out->v[out->n++] = t;
  return 0;
}

static int is_dots(const char *s)
{
  return s[0] == '.' && (s[1] == '\0' || (s[1] == '.' && s[2] == '\0'));
}

static int seg_match(const char *p, const char *s, unsigned flags)
{
  if (is_dots(s))
    return strcmp(p, s) == 0;
  return fnmatch(p, s, (flags & TIDE_FS_HIDDEN) ? 0 : FNM_PERIOD) == 0;
}

/* May "**" swallow segment s? */
static int star_takes(const char *s, unsigned flags)
{
  if (is_dots(s))
    return 0;
  return (flags & TIDE_FS_HIDDEN) || s[0] != '.';
}

static int is_globstar(const char *p)
{
  return p[0] == '*' && p[1] == '*' && p[2] == '\0';
}

/*
** Does P match S? In prefix mode: could P match some path below the directory S? Row i of the
** table says whether P[i..] matches S[j..] for every j; rows are computed from the end, so two
** rows suffice. Returns 1, 0 or -ENOMEM.
*/
static int match_segs(char *const *P, size_t np, char *const *S, size_t ns, unsigned flags,
                      int prefix)
{
  unsigned char small[2][64];
  unsigned char *next = small[0], *cur = small[1], *heap = NULL;
  if (ns + 1 > sizeof small[0]) {
    heap = malloc(2 * (ns + 1));
    if (!heap)
      return -ENOMEM;
    next = heap;
    cur = heap + ns + 1;
  }
  for (size_t j = 0; j <= ns; j++)
    next[j] = j == ns ? !prefix : 0;
  for (size_t i = np; i-- > 0;) {
    int star = is_globstar(P[i]);
    cur[ns] = prefix ? 1 : (star && next[ns]);
    for (size_t j = ns; j-- > 0;) {
      if (star)
        cur[j] = next[j] || (cur[j + 1] && star_takes(S[j], flags));
      else
        cur[j] = next[j + 1] && seg_match(P[i], S[j], flags);
    }
    unsigned char *t = next;
    next = cur;
    cur = t;
  }
  int r = next[0];
  free(heap);
  return r;
}

int tide_fs_match(const char *pattern, const char *path, unsigned flags)
{
  segs P, S;
  if (split(pattern, &P) < 0)
    return 0;
  if (split(path, &S) < 0) {
    segs_free(&P);
    return 0;
  }
  int r = P.abs == S.abs && match_segs(P.v, P.n, S.v, S.n, flags, 0) == 1;
  segs_free(&P);
  segs_free(&S);
  return r;
}

/* ---- glob expansion ----------------------------------------------------------------------- */

typedef struct globber {
  const tide_fs_glob_opts *opts;
  segs *excl; /* split exclude patterns */
  size_t nexcl;
  char **rest; /* the pattern after its literal prefix */
  size_t nrest;
  int abs; /* the pattern (and so every result) is absolute */
  int dirs_only;
  char **stack; /* the segments of the current path: literal prefix, then names */
  size_t depth, cap;
  size_t k; /* length of the literal prefix */
  pbuf out; /* the current path as returned */
  tide_fs_list *list;
} globber;

static int is_literal(const char *s)
{
  return strpbrk(s, "*?[\\") == NULL;
}

static int push_seg(globber *g, char *s)
{
  if (g->depth == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 32;
    char **v = realloc(g->stack, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    g->stack = v;
    g->cap = cap;
  }
  g->stack[g->depth++] = s;
  return 0;
}

static int excluded(globber *g)
{
  for (size_t i = 0; i < g->nexcl; i++) {
    segs *x = &g->excl[i];
    if (x->abs == g->abs && match_segs(x->v, x->n, g->stack, g->depth, g->opts->flags, 0) == 1)
      return 1;
  }
  return 0;
}

static int glob_dir(globber *g, int fd)
{
  dent *v;
  size_t n;
  if (read_names(fd, &v, &n) < 0)
    return 0; /* unreadable: skipped, as a shell does */
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    long old = pb_push(&g->out, v[i].name);
    if (old < 0 || push_seg(g, v[i].name) < 0) {
      rc = -ENOMEM;
      break;
    }
    tide_fs_type type = dent_type(fd, &v[i]);
    if (!excluded(g)) {
      char **S = g->stack + g->k;
      size_t ns = g->depth - g->k;
      int m = match_segs(g->rest, g->nrest, S, ns, g->opts->flags, 0);
      if (m == 1 && (!g->dirs_only || type == TIDE_FS_DIR))
        m = list_add(g->list, g->out.p, type);
      if (m < 0)
        rc = m;
      if (rc == 0 && type == TIDE_FS_DIR &&
          (m = match_segs(g->rest, g->nrest, S, ns, g->opts->flags, 1)) != 0) {
        if (m < 0) {
          rc = m;
        } else {
          int cfd = open_subdir(fd, v[i].name);
          if (cfd >= 0) {
            rc = glob_dir(g, cfd);
            close(cfd);
          }
        }
      }
    }
    g->depth--;
    pb_pop(&g->out, old);
  }
  dents_free(v, n);
  return rc;
}

int tide_fs_glob(const char *pattern, const tide_fs_glob_opts *opts, tide_fs_list *out,
                 tide_err *err)
{
  static const tide_fs_glob_opts none = {0};
  globber g = {.opts = opts ? opts : &none, .list = out};
  segs P = {0};
  pbuf fsbase = {0};
  size_t first = out->n;
  int rc = split(pattern, &P);
  if (rc < 0)
    goto done;
  size_t plen = strlen(pattern);
  g.dirs_only = plen > 1 && pattern[plen - 1] == '/';
  g.abs = P.abs;
  if (g.opts->nexclude) {
    g.excl = calloc(g.opts->nexclude, sizeof *g.excl);
    if (!g.excl) {
      rc = -ENOMEM;
      goto done;
    }
    for (; g.nexcl < g.opts->nexclude; g.nexcl++)
      if ((rc = split(g.opts->exclude[g.nexcl], &g.excl[g.nexcl])) < 0)
        goto done;
  }

  /* The literal prefix names a directory to start from, as written: "../x", "/etc", "src". */
  while (g.k < P.n && is_literal(P.v[g.k]))
    g.k++;
  if ((rc = pb_set(&g.out, P.abs ? "/" : "")) < 0)
    goto done;
  for (size_t i = 0; i < g.k; i++)
    if ((rc = push_seg(&g, P.v[i])) < 0 || (rc = (int)pb_push(&g.out, P.v[i])) < 0)
      goto done;
  rc = pb_set(&fsbase, P.abs || !g.opts->cwd ? "" : g.opts->cwd);
  if (rc == 0 && g.out.n)
    rc = pb_push(&fsbase, g.out.p) < 0 ? -ENOMEM : 0;
  if (rc < 0)
    goto done;
  const char *base = fsbase.n ? fsbase.p : ".";

  if (g.k == P.n) {
    /* No wildcard at all: the pattern names at most one thing. */
    struct stat st;
    if (g.out.n && lstat(base, &st) == 0) {
      int isdir = S_ISDIR(st.st_mode) ||
                  (S_ISLNK(st.st_mode) && stat(base, &st) == 0 && S_ISDIR(st.st_mode));
      if ((!g.dirs_only || isdir) && !excluded(&g))
        rc = list_add(out, g.out.p, mode_type(st.st_mode));
    }
    goto done;
  }
  g.rest = P.v + g.k;
  g.nrest = P.n - g.k;
  int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    goto done; /* nothing there: no matches */
  rc = glob_dir(&g, fd);
  close(fd);

done:
  if (rc == 0 && out->n - first > 1)
    qsort(out->v + first, out->n - first, sizeof *out->v, entry_cmp);
  else
    tide_err_set(err, rc, "glob '%s': %s", pattern, tide_strerror(rc));
  segs_free(&P);
  for (size_t i = 0; i < g.nexcl; i++)
    segs_free(&g.excl[i]);
  free(g.excl);
  free(g.stack);
  free(g.out.p);
  free(fsbase.p);
  return rc;
}

/* ---- walk --------------------------------------------------------------------------------- */

static int walk_dir(int fd, pbuf *path, tide_fs_list *out)
{
  dent *v;
  size_t n;
  if (read_names(fd, &v, &n) < 0)
    return 0; /* an unreadable subdirectory is listed by the caller but not entered */
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    long old = pb_push(path, v[i].name);
    if (old < 0) {
      rc = -ENOMEM;
      break;
    }
    tide_fs_type type = dent_type(fd, &v[i]);
    rc = list_add(out, path->p, type);
    if (rc == 0 && type == TIDE_FS_DIR) {
      int cfd = open_subdir(fd, v[i].name);
      if (cfd >= 0) {
        rc = walk_dir(cfd, path, out);
        close(cfd);
      }
    }
    pb_pop(path, old);
  }
  dents_free(v, n);
  return rc;
}

int tide_fs_walk(const char *dir, tide_fs_list *out, tide_err *err)
{
  int fd = open(*dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, "walk", dir, errno);
  pbuf path = {0};
  int rc = pb_set(&path, dir);
  if (rc == 0) {
    /* "dir/" and "dir" give the same paths; "/" stays "/". */
    while (path.n > 1 && path.p[path.n - 1] == '/')
      path.p[--path.n] = '\0';
    rc = walk_dir(fd, &path, out);
  }
  close(fd);
  free(path.p);
  if (rc < 0)
    return fail(err, "walk", dir, -rc);
  return 0;
}

/* ---- mkdir_p ------------------------------------------------------------------------------ */

int tide_fs_mkdir_p(const char *path, unsigned mode, tide_err *err)
{
  size_t len = strlen(path);
  if (len == 0)
    return fail(err, "mkdir_p", path, ENOENT);
  char *p = malloc(len + 1);
  if (!p)
    return fail(err, "mkdir_p", path, ENOMEM);
  memcpy(p, path, len + 1);
  int rc = 0;
  for (size_t i = 1; i <= len && rc == 0; i++) {
    if (i < len && p[i] != '/')
      continue;
    if (i < len && p[i - 1] == '/')
      continue; /* "a//b" */
    char save = p[i];
    p[i] = '\0';
    if (mkdir(p, mode) != 0) {
      int e = errno;
      struct stat st;
      if (e == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* already there */
      } else if (e == EEXIST && i < len) {
        /* a file in the middle: the next mkdir fails with ENOTDIR and names the path */
      } else {
        rc = fail(err, "mkdir_p", p, e);
      }
    }
    p[i] = save;
  }
  free(p);
  return rc;
}

/* ---- rm_r --------------------------------------------------------------------------------- */

/* Removes everything inside the directory open at fd; path is for messages. */
static int rm_contents(int fd, pbuf *path, tide_err *err)
{
  dent *v;
  size_t n;
  int rc = read_names(fd, &v, &n);
  if (rc < 0)
    return fail(err, "rm_r", path->p, -rc);
  int made_writable = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    long old = pb_push(path, v[i].name);
    if (old < 0) {
      rc = fail(err, "rm_r", path->p, ENOMEM);
      break;
    }
    tide_fs_type type = dent_type(fd, &v[i]);
    for (;;) {
      if (type == TIDE_FS_DIR) {
        int cfd = open_subdir(fd, v[i].name);
        if (cfd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
          type = TIDE_FS_LINK; /* replaced by a non-directory meanwhile: remove that instead */
          continue;
        }
        if (cfd < 0) {
          rc = fail(err, "rm_r", path->p, errno);
          break;
        }
        rc = rm_contents(cfd, path, err);
        close(cfd);
        if (rc < 0)
          break;
      }
      if (unlinkat(fd, v[i].name, type == TIDE_FS_DIR ? AT_REMOVEDIR : 0) == 0)
        break;
      int e = errno;
      if (e == EISDIR && type != TIDE_FS_DIR) {
        type = TIDE_FS_DIR;
        continue;
      }
      if (e == EACCES && !made_writable) {
        /* A read-only directory (a Go module cache, say): make it writable if it is ours. */
        made_writable = 1;
        struct stat st;
        if (fstat(fd, &st) == 0 && fchmod(fd, (st.st_mode & 07777) | S_IRWXU) == 0)
          continue;
      }
      rc = fail(err, "rm_r", path->p, e);
      break;
    }
    pb_pop(path, old);
  }
  dents_free(v, n);
  return rc;
}

int tide_fs_rm_r(const char *path, tide_err *err)
{
  size_t len = strlen(path);
  if (len == 0)
    return tide_err_set(err, -EINVAL, "rm_r '': refusing to remove an empty path");
  segs S;
  if (split(path, &S) < 0)
    return fail(err, "rm_r", path, ENOMEM);
  /* "/", "//", "/.", "/.." and the like all name the root. */
  int root = S.abs;
  for (size_t i = 0; i < S.n && root; i++)
    root = strcmp(S.v[i], "..") == 0;
  int dots = S.n == 0 || is_dots(S.v[S.n - 1]);
  segs_free(&S);
  if (root)
    return tide_err_set(err, -EINVAL, "rm_r '%s': refusing to remove the root directory", path);
  /* split() drops ".", so "a/." ends in "a": look at the text for a final "." too. */
  char *p = strdup(path);
  if (!p)
    return fail(err, "rm_r", path, ENOMEM);
  while (len > 1 && p[len - 1] == '/')
    p[--len] = '\0';
  char *slash = strrchr(p, '/');
  const char *base = slash ? slash + 1 : p;
  if (dots || is_dots(base)) {
    free(p);
    return tide_err_set(err, -EINVAL, "rm_r '%s': refusing to remove '.' or '..'", path);
  }
  int pfd;
  if (slash == p) {
    pfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else if (slash) {
    *slash = '\0';
    pfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *slash = '/';
  } else {
    pfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  int rc = 0;
  if (pfd < 0) {
    rc = fail(err, "rm_r", path, errno);
    goto out;
  }
  struct stat st;
  if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    rc = fail(err, "rm_r", path, errno);
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = open_subdir(pfd, base);
    if (fd < 0) {
      rc = fail(err, "rm_r", path, errno);
      goto out;
    }
    pbuf pb = {0};
    rc = pb_set(&pb, p);
    if (rc < 0)
      rc = fail(err, "rm_r", path, ENOMEM);
    else
      rc = rm_contents(fd, &pb, err);
    free(pb.p);
    close(fd);
    if (rc == 0 && unlinkat(pfd, base, AT_REMOVEDIR) != 0)
      rc = fail(err, "rm_r", path, errno);
  } else if (unlinkat(pfd, base, 0) != 0) {
    rc = fail(err, "rm_r", path, errno);
  }
out:
  if (pfd >= 0)
    close(pfd);
  free(p);
  return rc;
}

/* ---- copy_tree ---------------------------------------------------------------------------- */

typedef struct copier {
  pbuf src, dst; /* for messages */
  dev_t skip_dev;
  ino_t skip_ino; /* dst's root, so that copying into oneself stops */
  tide_err *err;
} copier;

int tide_fs_write_all(int fd, const void *buf, size_t n)
{
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (w == 0)
      return -EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

ssize_t tide_fs_read_full(int fd, void *buf, size_t n)
{
  char *p = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Copies the contents of in to out: copy_file_range (reflinks where the file system can). */
static int copy_data(int in, int out)
{
  int use_cfr = 1;
  for (;;) {
    if (use_cfr) {
      ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
      if (n > 0)
        continue;
      if (n == 0)
        return 0;
      if (errno == EINTR)
        continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP &&
          errno != EPERM && errno != EBADF)
        return -errno;
      use_cfr = 0; /* not here: plain reads and writes from where it stopped */
    }
    char buf[65536];
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      return 0;
    int rc = tide_fs_write_all(out, buf, (size_t)n);
    if (rc < 0)
      return rc;
  }
}

static int copy_times(int fd, const struct stat *st)
{
  struct timespec ts[2] = {st->st_atim, st->st_mtim};
  return futimens(fd, ts) == 0 ? 0 : -errno;
}

static int copy_entry(copier *c, int sfd, const char *sname, int dfd, const char *dname,
                      const struct stat *st);

static int copy_dir(copier *c, int sfd, int dfd)
{
  dent *v;
  size_t n;
  int rc = read_names(sfd, &v, &n);
  if (rc < 0)
    return fail(c->err, "copy_tree", c->src.p, -rc);
  for (size_t i = 0; i < n && rc == 0; i++) {
    long so = pb_push(&c->src, v[i].name), d0 = pb_push(&c->dst, v[i].name);
    if (so < 0 || d0 < 0) {
      rc = fail(c->err, "copy_tree", v[i].name, ENOMEM);
      break;
    }
    struct stat st;
    if (fstatat(sfd, v[i].name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      rc = fail(c->err, "copy_tree", c->src.p, errno);
    else if (!(st.st_dev == c->skip_dev && st.st_ino == c->skip_ino))
      rc = copy_entry(c, sfd, v[i].name, dfd, v[i].name, &st);
    pb_pop(&c->src, so);
    pb_pop(&c->dst, d0);
  }
  dents_free(v, n);
  return rc;
}

/* Copies sfd/sname (described by st) to dfd/dname. */
static int copy_entry(copier *c, int sfd, const char *sname, int dfd, const char *dname,
                      const struct stat *st)
{
  int rc = 0;
  if (S_ISDIR(st->st_mode)) {
    /* Owner-writable while filling it; the real mode and times come after the contents. */
    if (mkdirat(dfd, dname, 0700) != 0)
      return fail(c->err, "copy_tree", c->dst.p, errno);
    int in = open_subdir(sfd, sname);
    if (in < 0)
      return fail(c->err, "copy_tree", c->src.p, errno);
    int out = open_subdir(dfd, dname);
    if (out < 0) {
      rc = fail(c->err, "copy_tree", c->dst.p, errno);
      close(in);
      return rc;
    }
    rc = copy_dir(c, in, out);
    if (rc == 0 && (fchmod(out, st->st_mode & 07777) != 0 || copy_times(out, st) < 0))
      rc = fail(c->err, "copy_tree", c->dst.p, errno);
    close(in);
    close(out);
    return rc;
  }
  if (S_ISREG(st->st_mode)) {
    int in = openat(sfd, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
      return fail(c->err, "copy_tree", c->src.p, errno);
    int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
      rc = fail(c->err, "copy_tree", c->dst.p, errno);
      close(in);
      return rc;
    }
    rc = copy_data(in, out);
    if (rc < 0)
      rc = fail(c->err, "copy_tree", c->dst.p, -rc);
    else if (fchmod(out, st->st_mode & 07777) != 0 || copy_times(out, st) < 0)
      rc = fail(c->err, "copy_tree", c->dst.p, errno);
    close(in);
    if (close(out) != 0 && rc == 0)
      rc = fail(c->err, "copy_tree", c->dst.p, errno);
    return rc;
  }
  if (S_ISLNK(st->st_mode)) {
    size_t cap = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;
    for (;;) {
      char *target = malloc(cap);
      if (!target)
        return fail(c->err, "copy_tree", c->src.p, ENOMEM);
      ssize_t n = readlinkat(sfd, sname, target, cap);
      if (n < 0) {
        rc = fail(c->err, "copy_tree", c->src.p, errno);
      } else if ((size_t)n == cap) {
        free(target); /* the link grew since fstatat: try again with more room */
        cap *= 2;
        continue;
      } else {
        target[n] = '\0';
        if (symlinkat(target, dfd, dname) != 0)
          rc = fail(c->err, "copy_tree", c->dst.p, errno);
      }
      free(target);
      return rc;
    }
  }
  if (S_ISFIFO(st->st_mode)) {
    if (mkfifoat(dfd, dname, st->st_mode & 07777) != 0)
      return fail(c->err, "copy_tree", c->dst.p, errno);
    return 0;
  }
  return 0; /* sockets and devices: skipped */
}

int tide_fs_copy_tree(const char *src, const char *dst, tide_err *err)
{
  copier c = {.err = err};
  struct stat st, dst_st;
  if (lstat(src, &st) != 0)
    return fail(err, "copy_tree", src, errno);
  if (lstat(dst, &dst_st) == 0)
    return fail(err, "copy_tree", dst, EEXIST);
  if (pb_set(&c.src, src) < 0 || pb_set(&c.dst, dst) < 0) {
    free(c.src.p);
    free(c.dst.p);
    return fail(err, "copy_tree", src, ENOMEM);
  }
  /* The entry points are plain paths; everything below goes through the two directory fds. */
  char *dcopy = strdup(dst), *scopy = strdup(src);
  int rc = 0;
  int sp = -1, dp = -1;
  if (!dcopy || !scopy) {
    rc = fail(err, "copy_tree", src, ENOMEM);
    goto out;
  }
  char *ds = strrchr(dcopy, '/'), *ss = strrchr(scopy, '/');
  while (ds && ds[1] == '\0' && ds != dcopy) {
    *ds = '\0';
    ds = strrchr(dcopy, '/');
  }
  while (ss && ss[1] == '\0' && ss != scopy) {
    *ss = '\0';
    ss = strrchr(scopy, '/');
  }
  const char *dname = ds ? ds + 1 : dcopy, *sname = ss ? ss + 1 : scopy;
  if (ds == dcopy)
    dp = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else if (ds)
    *ds = '\0', dp = open(dcopy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else
    dp = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dp < 0) {
    rc = fail(err, "copy_tree", dst, errno);
    goto out;
  }
  if (ss == scopy)
    sp = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else if (ss)
    *ss = '\0', sp = open(scopy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else
    sp = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sp < 0) {
    rc = fail(err, "copy_tree", src, errno);
    goto out;
  }
  if (!*dname || !*sname || is_dots(dname) || is_dots(sname)) {
    rc = tide_err_set(err, -EINVAL, "copy_tree '%s': needs a named source and destination", src);
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    /* Create dst first so that its identity is known if it lies inside src. */
    if (mkdirat(dp, dname, 0700) != 0) {
      rc = fail(err, "copy_tree", dst, errno);
      goto out;
    }
    struct stat made;
    if (fstatat(dp, dname, &made, AT_SYMLINK_NOFOLLOW) == 0) {
      c.skip_dev = made.st_dev;
      c.skip_ino = made.st_ino;
    }
    int in = open_subdir(sp, sname);
    int e = errno;
    int outfd = in >= 0 ? open_subdir(dp, dname) : -1;
    if (in < 0 || outfd < 0) {
      rc = fail(err, "copy_tree", in < 0 ? src : dst, in < 0 ? e : errno);
    } else {
      rc = copy_dir(&c, in, outfd);
      if (rc == 0 && (fchmod(outfd, st.st_mode & 07777) != 0 || copy_times(outfd, &st) < 0))
        rc = fail(err, "copy_tree", dst, errno);
    }
    if (in >= 0)
      close(in);
    if (outfd >= 0)
      close(outfd);
  } else {
    rc = copy_entry(&c, sp, sname, dp, dname, &st);
  }
out:
  if (sp >= 0)
    close(sp);
  if (dp >= 0)
    close(dp);
  free(dcopy);
  free(scopy);
  free(c.src.p);
  free(c.dst.p);
  return rc;
}

/* ---- whole files -------------------------------------------------------------------------- */

int tide_fs_write_atomic(const char *path, const void *data, size_t len, int mode, tide_err *err)
{
  size_t plen = strlen(path);
  if (plen == 0 || path[plen - 1] == '/')
    return fail(err, "write_atomic", path, plen ? EISDIR : ENOENT);
  const char *slash = strrchr(path, '/');
  size_t dlen = slash ? (size_t)(slash - path) : 0;
  const char *base = slash ? slash + 1 : path;
  /* dir + "/." + up to 200 bytes of the name + ".tmp-" + 16 hex digits */
  char *tmp = malloc(dlen + 240);
  char *dir = malloc(dlen + 2);
  if (!tmp || !dir) {
    free(tmp);
    free(dir);
    return fail(err, "write_atomic", path, ENOMEM);
  }
  if (slash == path)
    strcpy(dir, "/");
  else if (slash)
    memcpy(dir, path, dlen), dir[dlen] = '\0';
  else
    strcpy(dir, ".");

  int fd = -1, rc = 0;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    uint64_t r;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
      r = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&r ^ (uint64_t)attempt;
    snprintf(tmp, dlen + 240, "%s%s.%.200s.tmp-%016llx", slash ? dir : "",
             slash && slash != path ? "/" : "", base, (unsigned long long)r);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) {
      rc = fail(err, "write_atomic", path, errno);
      goto out;
    }
  }
  if (fd < 0) {
    rc = fail(err, "write_atomic", path, EEXIST);
    goto out;
  }
  struct stat st;
  if (mode >= 0)
    rc = fchmod(fd, (mode_t)mode & 07777) == 0 ? 0 : -errno;
  else if (stat(path, &st) == 0)
    rc = fchmod(fd, st.st_mode & 07777) == 0 ? 0 : -errno;
  if (rc == 0)
    rc = tide_fs_write_all(fd, data, len);
  if (rc == 0 && fsync(fd) != 0)
    rc = -errno;
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc < 0) {
    unlink(tmp);
    rc = fail(err, "write_atomic", path, -rc);
    goto out;
  }
  /* The rename is durable only once the directory is on disk too. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS)
      rc = fail(err, "write_atomic", dir, errno);
    close(dfd);
  }
out:
  free(tmp);
  free(dir);
  return rc;
}

int tide_fs_read(const char *path, char **data, size_t *len, tide_err *err)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, "read", path, errno);
  struct stat st;
  size_t cap = 4096, n = 0;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    cap = (size_t)st.st_size + 1; /* files in /proc say 0: those grow below */
  char *buf = malloc(cap);
  int rc = 0;
  for (;;) {
    if (!buf) {
      rc = fail(err, "read", path, ENOMEM);
      break;
    }
    if (n + 1 >= cap) {
      char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
      if (!nb) {
        rc = fail(err, "read", path, ENOMEM);
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rc = fail(err, "read", path, errno);
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  if (rc < 0) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return 0;
}

int tide_fs_write(const char *path, const void *data, size_t len, tide_err *err)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    return fail(err, "write", path, errno);
  int rc = tide_fs_write_all(fd, data, len);
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  return rc < 0 ? fail(err, "write", path, -rc) : 0;
}

int tide_fs_exists(const char *path, tide_err *err)
{
  struct stat st;
  if (stat(path, &st) == 0)
    return 1;
  if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
    return 0;
  return fail(err, "exists", path, errno);
}
