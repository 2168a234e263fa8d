/*
** Directory trees as manifests of blobs: see include/tide/blob.h for the manifest format.
**
** put: tide_fs_walk lists the tree (links never followed), then worker threads hash every file.
** A file whose (device, inode, size, mtime, ctime) matches the stat cache of the last put of the
** same directory, and whose blob is still there, is not read again. Small files are read into
** memory and written only when their blob is missing; new blobs go to tmp/ without an fsync each,
** then one syncfs makes them durable, they are renamed into place and a second syncfs makes the
** renames durable before the caller records the manifest. That replaces one fsync per file (which
** would cost more than the whole copy) with two flushes per tree.
**
** get: the tree is rebuilt in a temporary sibling of the destination (directories first, then
** files on worker threads, then links, then directory modes, deepest first) and renamed into place
** without replacing anything; an existing empty destination is filled from a temporary inside it.
** A version of several assets is composed into one tree first (tide_tree_add_asset).
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tide/blob.h"
#include "tide/fs.h"

#include "blob_internal.h"

#define SMALL_FILE (1u << 20)
#define DEFAULT_THREADS 4
#define MAX_THREADS 16

/* ---- a string set (open addressing) ---------------------------------------------------------- */

typedef struct strset {
  const char **v;
  size_t *val;
  size_t cap, n;
} strset;

static uint64_t fnv(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int strset_init(strset *s, size_t n)
{
  s->cap = 16;
  while (s->cap < n * 2 + 16)
    s->cap *= 2;
  s->n = 0;
  s->v = calloc(s->cap, sizeof *s->v);
  s->val = calloc(s->cap, sizeof *s->val);
  return s->v && s->val ? 0 : -ENOMEM;
}

static void strset_free(strset *s)
{
  free(s->v);
  free(s->val);
  s->v = NULL;
  s->val = NULL;
}

/* Returns the slot of key: occupied by key, or the empty slot where it would go. */
static size_t strset_slot(const strset *s, const char *key)
{
  size_t i = (size_t)fnv(key) & (s->cap - 1);
  while (s->v[i] && strcmp(s->v[i], key) != 0)
    i = (i + 1) & (s->cap - 1);
  return i;
}

/* Doubles the table and places every key again; 0 or -ENOMEM (the set is unchanged then). */
static int strset_grow(strset *s)
{
  strset bigger = {calloc(s->cap * 2, sizeof *s->v), calloc(s->cap * 2, sizeof *s->val), s->cap * 2,
                   0};
  if (!bigger.v || !bigger.val) {
    strset_free(&bigger);
    return -ENOMEM;
  }
  for (size_t i = 0; i < s->cap; i++) {
    if (s->v[i]) {
      size_t j = strset_slot(&bigger, s->v[i]);
      bigger.v[j] = s->v[i];
      bigger.val[j] = s->val[i];
      bigger.n++;
    }
  }
  strset_free(s);
  *s = bigger;
  return 0;
}

/*
** Adds key (borrowed) with val; returns 0, 1 when key was there already, or -ENOMEM. The table
** stays at most half full, growing as needed: the size given to strset_init is only a guess
** (a hostile manifest can hold far more entries than its length suggests).
*/
static int strset_add(strset *s, const char *key, size_t val)
{
  size_t i = strset_slot(s, key);
  if (s->v[i])
    return 1;
  if ((s->n + 1) * 2 > s->cap) {
    if (strset_grow(s) < 0)
      return -ENOMEM;
    i = strset_slot(s, key);
  }
  s->v[i] = key;
  s->val[i] = val;
  s->n++;
  return 0;
}

static int strset_get(const strset *s, const char *key, size_t *val)
{
  size_t i = strset_slot(s, key);
  if (!s->v[i])
    return 0;
  if (val)
    *val = s->val[i];
  return 1;
}

/* ---- manifest text --------------------------------------------------------------------------- */

void tide_tree_clear(tide_tree *tree)
{
  for (size_t i = 0; i < tree->n; i++) {
    free(tree->v[i].path);
    free(tree->v[i].target);
  }
  free(tree->v);
  tree->v = NULL;
  tree->n = tree->cap = 0;
}

static tide_tree_entry *tree_add(tide_tree *tree)
{
  if (tree->n == tree->cap) {
    size_t cap = tree->cap ? tree->cap * 2 : 64;
    tide_tree_entry *v = realloc(tree->v, cap * sizeof *v);
    if (!v)
      return NULL;
    tree->v = v;
    tree->cap = cap;
  }
  tide_tree_entry *e = &tree->v[tree->n++];
  memset(e, 0, sizeof *e);
  return e;
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s)
{
  sb_put(b, s, strlen(s));
}

static void sb_escaped(sbuf *b, const char *s)
{
  static const char digits[] = "0123456789ABCDEF";
  const char *run = s;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f || c == '%') {
      sb_put(b, run, (size_t)(s - run));
      char e[3] = {'%', digits[c >> 4], digits[c & 15]};
      sb_put(b, e, 3);
      run = s + 1;
    }
  }
  sb_put(b, run, (size_t)(s - run));
}

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Decodes the escaped field [s, end) into a new string; NULL on a bad escape or NUL byte. */
static char *unescape(const char *s, const char *end)
{
  char *out = malloc((size_t)(end - s) + 1), *o = out;
  if (!out)
    return NULL;
  while (s < end) {
    if (*s == '%') {
      if (end - s >= 3) {
        int hi = hexval(s[1]);
        int lo = hexval(s[2]);
        if (hi >= 0 && lo >= 0 && (hi || lo)) {
          *o++ = (char)(hi * 16 + lo);
          s += 3;
          continue;
        }
      }
      free(out);
      return NULL;
    }
    if ((unsigned char)*s < 0x20 || *s == 0x7f) {
      free(out);
      return NULL;
    }
    *o++ = *s++;
  }
  *o = 0;
  return out;
}

/* Checks a relative path: no empty, "." or ".." segment, not absolute. Returns a reason or NULL. */
static const char *path_problem(const char *p)
{
  if (!*p)
    return "empty path";
  if (*p == '/')
    return "absolute path";
  const char *seg = p;
  for (;;) {
    const char *slash = strchr(seg, '/');
    size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
    if (n == 0)
      return "empty path segment";
    if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
      return "'.' or '..' in path";
    if (n > 255)
      return "path segment longer than 255 bytes";
    if (!slash)
      return NULL;
    seg = slash + 1;
  }
}

static int parse_fail(tide_err *err, size_t line, const char *why)
{
  return tide_err_set(err, TIDE_EINPUT, "tree manifest line %zu: %s", line, why);
}

int tide_tree_parse(const char *text, size_t len, tide_tree *out, tide_err *err)
{
  memset(out, 0, sizeof *out);
  static const char magic[] = "tide-tree 1\n";
  if (len < sizeof magic - 1 || memcmp(text, magic, sizeof magic - 1) != 0)
    return parse_fail(err, 1, "not a tide tree manifest");
  const char *p = text + sizeof magic - 1, *end = text + len;
  strset dirs;
  if (strset_init(&dirs, len / 64) < 0)
    return tide_err_set(err, -ENOMEM, "out of memory");
  strset all;
  if (strset_init(&all, len / 32) < 0) {
    strset_free(&dirs);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  int rc = 0;
  size_t line = 1;
  while (p < end && rc == 0) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) {
      rc = parse_fail(err, line, "missing final newline");
      break;
    }
    const char *f[6];
    size_t nf = 0;
    const char *fe[6];
    const char *q = p;
    while (nf < 6) {
      const char *tab = memchr(q, '\t', (size_t)(nl - q));
      f[nf] = q;
      fe[nf] = tab ? tab : nl;
      nf++;
      if (!tab)
        break;
      q = tab + 1;
    }
    p = nl + 1;
    if (fe[nf - 1] != nl) {
      rc = parse_fail(err, line, "too many fields");
      break;
    }
    char kind = (fe[0] - f[0] == 1) ? f[0][0] : 0;
    size_t want = kind == 'd' ? 3 : kind == 'f' ? 5 : kind == 'l' ? 3 : 0;
    if (!want) {
      rc = parse_fail(err, line, "unknown entry kind");
      break;
    }
    if (nf != want) {
      rc = parse_fail(err, line, "wrong number of fields");
      break;
    }
    tide_tree_entry *e = tree_add(out);
    if (!e) {
      rc = tide_err_set(err, -ENOMEM, "out of memory");
      break;
    }
    e->kind = (tide_tree_kind)kind;
    size_t pathf = kind == 'd' ? 2 : kind == 'f' ? 4 : 1;
    if (kind != 'l') {
      char *mend;
      size_t ml = (size_t)(fe[1] - f[1]);
      unsigned long mode = ml && ml <= 5 ? strtoul(f[1], &mend, 8) : 0;
      if (!ml || ml > 5 || mend != fe[1] || mode > 07777 || f[1][0] == '-' || f[1][0] == '+') {
        rc = parse_fail(err, line, "bad mode");
        break;
      }
      e->mode = (unsigned)mode;
    }
    if (kind == 'f') {
      size_t sl = (size_t)(fe[2] - f[2]);
      char num[24];
      if (!sl || sl > 20 || f[2][0] < '0' || f[2][0] > '9') {
        rc = parse_fail(err, line, "bad size");
        break;
      }
      memcpy(num, f[2], sl);
      num[sl] = 0;
      char *send;
      errno = 0;
      unsigned long long size = strtoull(num, &send, 10);
      if (*send || errno) {
        rc = parse_fail(err, line, "bad size");
        break;
      }
      e->size = size;
      if (fe[3] - f[3] != TIDE_BLOB_HEX_LEN) {
        rc = parse_fail(err, line, "bad sha256");
        break;
      }
      memcpy(e->hex, f[3], TIDE_BLOB_HEX_LEN);
      e->hex[TIDE_BLOB_HEX_LEN] = 0;
      if (!tide_blob_hex_valid(e->hex)) {
        rc = parse_fail(err, line, "bad sha256");
        break;
      }
    }
    e->path = unescape(f[pathf], fe[pathf]);
    if (!e->path) {
      rc = parse_fail(err, line, "bad escape or control byte in path");
      break;
    }
    if (kind == 'l') {
      e->target = unescape(f[2], fe[2]);
      if (!e->target || !*e->target) {
        rc = parse_fail(err, line, "bad link target");
        break;
      }
    }
    const char *why = path_problem(e->path);
    if (why) {
      char msg[320];
      snprintf(msg, sizeof msg, "%s '%.200s'", why, e->path);
      rc = parse_fail(err, line, msg);
      break;
    }
    char *slash = strrchr(e->path, '/');
    if (slash) {
      *slash = 0;
      int parent_ok = strset_get(&dirs, e->path, NULL);
      *slash = '/';
      if (!parent_ok) {
        char msg[320];
        snprintf(msg, sizeof msg, "the parent of '%.200s' is not a directory listed before it",
                 e->path);
        rc = parse_fail(err, line, msg);
        break;
      }
    }
    int added = strset_add(&all, e->path, 0);
    if (added == 0 && kind == 'd')
      added = strset_add(&dirs, e->path, 0);
    if (added < 0) {
      rc = tide_err_set(err, -ENOMEM, "tree manifest: out of memory");
      break;
    }
    if (added) {
      char msg[320];
      snprintf(msg, sizeof msg, "duplicate path '%.200s'", e->path);
      rc = parse_fail(err, line, msg);
      break;
    }
    /* The sets borrow paths that a realloc of out->v does not move (they are separate blocks). */
  }
  strset_free(&dirs);
  strset_free(&all);
  if (rc < 0)
    tide_tree_clear(out);
  return rc;
}

/* ---- put --------------------------------------------------------------------------------------
 */

typedef struct stat_key {
  uint64_t dev, ino, size;
  int64_t mtime_ns, ctime_ns;
} stat_key;

typedef struct put_item {
  const char *path; /* full source path (owned by the walk list) */
  const char *rel;
  tide_fs_type type;
  stat_key key;
  unsigned mode;
  char hex[TIDE_BLOB_HEX_LEN + 1];
  char *tmp;      /* a new blob waiting in tmp/ */
  char *target;   /* links */
  int cacheable;  /* not modified within the racy window */
  int from_cache; /* hex came from the stat cache */
} put_item;

typedef struct cache_rec {
  stat_key key;
  char hex[TIDE_BLOB_HEX_LEN + 1];
  char *rel;
} cache_rec;

typedef struct put_job {
  const char *root;
  put_item **files;
  size_t nfiles;
  atomic_size_t next;
  strset *cache;
  cache_rec *recs;
  pthread_mutex_t mu;
  int rc;
  tide_err err;
  int64_t racy_ns; /* files changed after this are not cached (same-second writes) */
  char tmpdir[4096];
} put_job;

static int64_t ts_ns(struct timespec t)
{
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void job_fail(put_job *job, int rc, const tide_err *e)
{
  pthread_mutex_lock(&job->mu);
  if (job->rc == 0) {
    job->rc = rc;
    job->err = *e;
  }
  pthread_mutex_unlock(&job->mu);
}

/* The blob is there with the size it should have (a cheap check against damage). */
static int blob_present(const char *root, const char *hex, uint64_t size)
{
  char p[4096];
  struct stat st;
  return tide_blob_path(root, hex, p, sizeof p) == 0 && stat(p, &st) == 0 &&
         (uint64_t)st.st_size == size;
}

static int put_one(put_job *job, put_item *it, char *buf, tide_err *err)
{
  struct stat st;
  if (lstat(it->path, &st) < 0)
    return blob_fail(err, "stat", it->path, errno);
  it->mode = st.st_mode & 07777;
  if (S_ISDIR(st.st_mode)) {
    it->type = TIDE_FS_DIR;
    return 0;
  }
  if (S_ISLNK(st.st_mode)) {
    it->type = TIDE_FS_LINK;
    size_t cap = (size_t)st.st_size + 2;
    if (cap < 256)
      cap = 256;
    it->target = malloc(cap);
    ssize_t n = it->target ? readlink(it->path, it->target, cap - 1) : -1;
    if (n < 0 || (size_t)n >= cap - 1)
      return blob_fail(err, "readlink", it->path, n < 0 ? errno : ENAMETOOLONG);
    it->target[n] = 0;
    return 0;
  }
  if (!S_ISREG(st.st_mode))
    return tide_err_set(err, TIDE_EINPUT,
                        "'%s' is a %s: only files, directories and links can be stored", it->path,
                        tide_fs_type_name(it->type));
  it->type = TIDE_FS_FILE;
  it->key = (stat_key){(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
                       ts_ns(st.st_mtim), ts_ns(st.st_ctim)};
  it->cacheable = it->key.mtime_ns < job->racy_ns && it->key.ctime_ns < job->racy_ns;
  size_t ci;
  if (job->cache && strset_get(job->cache, it->rel, &ci)) {
    cache_rec *c = &job->recs[ci];
    if (!memcmp(&c->key, &it->key, sizeof c->key) &&
        blob_present(job->root, c->hex, it->key.size)) {
      memcpy(it->hex, c->hex, sizeof it->hex);
      it->from_cache = 1;
      return 0;
    }
  }
  int in = open(it->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0)
    return blob_fail(err, "open", it->path, errno);
  int rc = 0;
  if (it->key.size <= SMALL_FILE) {
    size_t got = 0;
    for (;;) {
      size_t want = SMALL_FILE + 1 - got;
      ssize_t r = read(in, buf + got, want);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0) {
        rc = blob_fail(err, "read", it->path, errno);
        break;
      }
      got += (size_t)r;
      /* A short read of a regular file is its end, which saves the read that would return 0;
      ** were it not, the size check below reports the file as changing. */
      if (r == 0 || (size_t)r < want || got > SMALL_FILE)
        break;
    }
    close(in);
    if (rc < 0)
      return rc;
    if (got > SMALL_FILE || got != it->key.size)
      return tide_err_set(err, TIDE_ECONFLICT, "'%s' changed while it was being stored", it->path);
    if ((rc = blob_hash_mem(buf, got, it->hex, err)) < 0)
      return rc;
    /* The content is in memory: comparing it with the stored blob costs one cached read, and a
    ** damaged blob is replaced by this verified copy. */
    if (blob_holds(job->root, it->hex, buf, got))
      return 0;
    char tmp[4096];
    int fd = blob_tmp_create(job->tmpdir, tmp, sizeof tmp, err);
    if (fd < 0)
      return fd;
    rc = tide_fs_write_all(fd, buf, got);
    if (rc < 0)
      blob_fail(err, "write", tmp, -rc);
    if (close(fd) < 0 && rc == 0)
      rc = blob_fail(err, "close", tmp, errno);
    if (rc == 0 && !(it->tmp = strdup(tmp)))
      rc = tide_err_set(err, -ENOMEM, "out of memory");
    if (rc < 0)
      unlink(tmp);
    return rc;
  }
  posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  char tmp[4096];
  int fd = blob_tmp_open(job->tmpdir, tmp, sizeof tmp, err);
  if (fd < 0) {
    close(in);
    return fd;
  }
  blob_hash *h = blob_hash_new();
  uint64_t size = 0;
  char which = 0;
  rc = h ? blob_copy_hash(in, fd, it->key.size, 1, h, NULL, &size, &which) : -ENOMEM;
  close(in);
  if (rc < 0)
    blob_fail(err, which == 'r' ? "read" : "write", which == 'r' ? it->path : tmp, -rc);
  if (close(fd) < 0 && rc == 0)
    rc = blob_fail(err, "close", tmp, errno);
  if (h) {
    blob_hash_final(h, it->hex);
    blob_hash_free(h);
  }
  if (rc == 0 && size != it->key.size)
    rc = tide_err_set(err, TIDE_ECONFLICT, "'%s' changed while it was being stored", it->path);
  if (rc == 0 && !(it->tmp = strdup(tmp)))
    rc = tide_err_set(err, -ENOMEM, "out of memory");
  if (rc < 0)
    unlink(tmp);
  return rc;
}

static void *put_worker(void *arg)
{
  put_job *job = arg;
  char *buf = malloc(SMALL_FILE + 1);
  tide_err err = {0};
  if (!buf) {
    tide_err_set(&err, -ENOMEM, "out of memory");
    job_fail(job, -ENOMEM, &err);
    return NULL;
  }
  for (;;) {
    size_t i = atomic_fetch_add(&job->next, 1);
    if (i >= job->nfiles || job->rc)
      break;
    int rc = put_one(job, job->files[i], buf, &err);
    if (rc < 0) {
      job_fail(job, rc, &err);
      break;
    }
  }
  free(buf);
  return NULL;
}

static void run_workers(int threads, size_t n, void *(*fn)(void *), void *job)
{
  if (threads <= 0)
    threads = DEFAULT_THREADS;
  if (threads > MAX_THREADS)
    threads = MAX_THREADS;
  if ((size_t)threads > n)
    threads = n ? (int)n : 1;
  pthread_t tids[MAX_THREADS];
  int started = 0;
  for (int i = 1; i < threads; i++) {
    if (pthread_create(&tids[started], NULL, fn, job) == 0)
      started++;
  }
  fn(job);
  for (int i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
}

/*
** The stat cache: "tidesc2\n", the length-prefixed real path of the source directory (so that gc
** can drop the caches of directories that are gone), then per record the key, the hex and the
** length-prefixed relative path.
*/
static int cache_path(const char *root, const char *src, char *out, size_t cap, tide_err *err)
{
  char real[4096], hex[TIDE_BLOB_HEX_LEN + 1];
  if (!realpath(src, real))
    snprintf(real, sizeof real, "%s", src);
  int rc = blob_hash_mem(real, strlen(real), hex, err);
  if (rc == 0)
    snprintf(out, cap, "%s/cache/%.32s", root, hex);
  return rc;
}

static void cache_load(const char *file, cache_rec **recs, size_t *n, strset *set)
{
  *recs = NULL;
  *n = 0;
  char *data = NULL;
  size_t len = 0;
  if (tide_fs_read(file, &data, &len, NULL) < 0)
    return;
  const size_t fixed = sizeof(stat_key) + TIDE_BLOB_HEX_LEN + 4;
  size_t cap = len / fixed + 1, count = 0;
  cache_rec *v = calloc(cap, sizeof *v);
  const char *p = data + 8, *end = data + len;
  int ok = v && len >= 12 && memcmp(data, "tidesc2\n", 8) == 0;
  if (ok) {
    uint32_t sl;
    memcpy(&sl, p, 4);
    ok = sl <= (size_t)(end - p - 4);
    p += ok ? 4 + sl : 0;
  }
  while (ok && p < end) {
    if ((size_t)(end - p) < fixed || count >= cap) {
      ok = 0;
      break;
    }
    cache_rec *c = &v[count];
    memcpy(&c->key, p, sizeof c->key);
    p += sizeof c->key;
    memcpy(c->hex, p, TIDE_BLOB_HEX_LEN);
    c->hex[TIDE_BLOB_HEX_LEN] = 0;
    p += TIDE_BLOB_HEX_LEN;
    uint32_t pl;
    memcpy(&pl, p, 4);
    p += 4;
    if (pl > (size_t)(end - p) || !tide_blob_hex_valid(c->hex) || !(c->rel = malloc(pl + 1))) {
      ok = 0;
      break;
    }
    memcpy(c->rel, p, pl);
    c->rel[pl] = 0;
    p += pl;
    count++;
  }
  free(data);
  if (ok && strset_init(set, count) == 0) {
    for (size_t i = 0; i < count; i++)
      strset_add(set, v[i].rel, i);
    *recs = v;
    *n = count;
    return;
  }
  for (size_t i = 0; v && i < count; i++)
    free(v[i].rel);
  free(v);
}

static void cache_save(const char *root, const char *file, const char *src, put_item *items,
                       size_t n)
{
  sbuf b = {0};
  sb_put(&b, "tidesc2\n", 8);
  char real[4096];
  if (!realpath(src, real))
    snprintf(real, sizeof real, "%s", src);
  uint32_t sl = (uint32_t)strlen(real);
  sb_put(&b, (const char *)&sl, 4);
  sb_put(&b, real, sl);
  for (size_t i = 0; i < n; i++) {
    put_item *it = &items[i];
    if (it->type != TIDE_FS_FILE || !it->cacheable)
      continue;
    uint32_t pl = (uint32_t)strlen(it->rel);
    sb_put(&b, (const char *)&it->key, sizeof it->key);
    sb_put(&b, it->hex, TIDE_BLOB_HEX_LEN);
    sb_put(&b, (const char *)&pl, 4);
    sb_put(&b, it->rel, pl);
  }
  /* A hint only: written atomically but not fsynced; a lost cache costs a re-hash. */
  char tmpdir[4096], tmp[4096];
  snprintf(tmpdir, sizeof tmpdir, "%s/tmp", root);
  int fd = b.oom ? -1 : blob_tmp_open(tmpdir, tmp, sizeof tmp, NULL);
  if (fd >= 0) {
    int rc = tide_fs_write_all(fd, b.p, b.n);
    if (close(fd) < 0 || rc < 0 || rename(tmp, file) < 0)
      unlink(tmp);
  }
  free(b.p);
}

static int sync_fs_of(const char *dir, tide_err *err)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return blob_fail(err, "open", dir, errno);
  int rc = syncfs(fd) < 0 ? blob_fail(err, "syncfs", dir, errno) : 0;
  close(fd);
  return rc;
}

int tide_tree_put(const char *root, const char *src, int threads, char **manifest, size_t *len,
                  tide_tree_stats *stats, tide_err *err)
{
  *manifest = NULL;
  *len = 0;
  memset(stats, 0, sizeof *stats);
  char base[4096];
  snprintf(base, sizeof base, "%s", src);
  size_t bl = strlen(base);
  while (bl > 1 && base[bl - 1] == '/')
    base[--bl] = 0;
  struct stat rst;
  if (stat(base, &rst) < 0)
    return blob_fail(err, "stat", base, errno);
  if (!S_ISDIR(rst.st_mode))
    return blob_fail(err, "open", base, ENOTDIR);
  /* Before the walk, which can take long, rather than from every worker after it. */
  int rc = blob_hash_ready(err);
  if (rc < 0)
    return rc;

  tide_fs_list list = {0};
  rc = tide_fs_walk(base, &list, err);
  if (rc < 0)
    return rc;
  put_item *items = calloc(list.n ? list.n : 1, sizeof *items);
  put_item **files = calloc(list.n ? list.n : 1, sizeof *files);
  put_job job = {.root = root};
  pthread_mutex_init(&job.mu, NULL);
  snprintf(job.tmpdir, sizeof job.tmpdir, "%s/tmp", root);
  strset cache = {0};
  size_t nrecs = 0;
  char cfile[4096];
  if (!items || !files) {
    rc = tide_err_set(err, -ENOMEM, "out of memory");
    goto done;
  }
  size_t skip = bl == 1 && base[0] == '/' ? 1 : bl + 1;
  for (size_t i = 0; i < list.n; i++) {
    items[i].path = list.v[i].path;
    items[i].rel = items[i].path + skip;
    items[i].type = list.v[i].type;
    files[i] = &items[i];
  }
  job.racy_ns = ((int64_t)time(NULL) - 2) * 1000000000;
  if ((rc = cache_path(root, base, cfile, sizeof cfile, err)) < 0)
    goto done;
  cache_load(cfile, &job.recs, &nrecs, &cache);
  job.cache = job.recs ? &cache : NULL;
  job.files = files;
  job.nfiles = list.n;
  run_workers(threads, job.nfiles, put_worker, &job);
  if (job.rc < 0) {
    rc = job.rc;
    if (err)
      *err = job.err;
    goto done;
  }
  for (size_t i = 0; i < list.n; i++) {
    put_item *it = &items[i];
    if (it->type == TIDE_FS_FILE) {
      stats->files++;
      stats->bytes += it->key.size;
    } else if (it->type == TIDE_FS_DIR) {
      stats->dirs++;
    } else {
      stats->links++;
    }
  }

  /* New blobs are complete in tmp/: make the data durable, publish, make the names durable. */
  int fresh = 0;
  for (size_t i = 0; i < list.n; i++)
    fresh |= items[i].tmp != NULL;
  if (fresh) {
    if ((rc = sync_fs_of(job.tmpdir, err)) < 0)
      goto done;
    strset seen;
    if (strset_init(&seen, list.n) < 0) {
      rc = tide_err_set(err, -ENOMEM, "out of memory");
      goto done;
    }
    for (size_t i = 0; i < list.n && rc == 0; i++) {
      put_item *it = &items[i];
      if (!it->tmp)
        continue;
      /* Two files of this tree with the same new content: publish one, drop the other. */
      int added = strset_add(&seen, it->hex, i);
      if (added < 0) {
        rc = tide_err_set(err, -ENOMEM, "put_dir: out of memory");
      } else if (added) {
        unlink(it->tmp);
      } else {
        rc = blob_rename(root, it->tmp, it->hex, err);
        stats->stored++;
      }
      free(it->tmp);
      it->tmp = NULL;
    }
    strset_free(&seen);
    if (rc == 0)
      rc = sync_fs_of(job.tmpdir, err);
    if (rc < 0)
      goto done;
  }

  sbuf b = {0};
  sb_str(&b, "tide-tree 1\n");
  for (size_t i = 0; i < list.n; i++) {
    put_item *it = &items[i];
    char num[64];
    if (it->type == TIDE_FS_DIR) {
      snprintf(num, sizeof num, "d\t%04o\t", it->mode);
      sb_str(&b, num);
    } else if (it->type == TIDE_FS_FILE) {
      snprintf(num, sizeof num, "f\t%04o\t%llu\t", it->mode, (unsigned long long)it->key.size);
      sb_str(&b, num);
      sb_str(&b, it->hex);
      sb_str(&b, "\t");
    } else {
      sb_str(&b, "l\t");
    }
    sb_escaped(&b, it->rel);
    if (it->type == TIDE_FS_LINK) {
      sb_str(&b, "\t");
      sb_escaped(&b, it->target);
    }
    sb_str(&b, "\n");
  }
  if (b.oom) {
    free(b.p);
    rc = tide_err_set(err, -ENOMEM, "out of memory");
    goto done;
  }
  *manifest = b.p;
  *len = b.n;
  cache_save(root, cfile, base, items, list.n);

done:
  for (size_t i = 0; items && i < list.n; i++) {
    if (items[i].tmp) {
      unlink(items[i].tmp);
      free(items[i].tmp);
    }
    free(items[i].target);
  }
  for (size_t i = 0; i < nrecs; i++)
    free(job.recs[i].rel);
  free(job.recs);
  strset_free(&cache);
  pthread_mutex_destroy(&job.mu);
  free(items);
  free(files);
  tide_fs_list_clear(&list);
  return rc;
}

/* ---- get ------------------------------------------------------------------------------------- */

typedef struct get_job {
  const char *root;
  const char *dir; /* the temporary directory being filled */
  const tide_tree *tree;
  atomic_size_t next;
  pthread_mutex_t mu;
  int rc;
  tide_err err;
} get_job;

static void *get_worker(void *arg)
{
  get_job *job = arg;
  tide_err err = {0};
  char p[8192];
  for (;;) {
    size_t i = atomic_fetch_add(&job->next, 1);
    if (i >= job->tree->n || job->rc)
      break;
    const tide_tree_entry *e = &job->tree->v[i];
    if (e->kind != TIDE_TREE_FILE)
      continue;
    int rc = 0;
    if (snprintf(p, sizeof p, "%s/%s", job->dir, e->path) >= (int)sizeof p) {
      rc = blob_fail(&err, "create", e->path, ENAMETOOLONG);
    } else {
      int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) {
        rc = blob_fail(&err, "create", p, errno);
      } else {
        rc = blob_copy_out(job->root, e->hex, e->xxh3[0] ? e->xxh3 : NULL, fd, p, &err);
        if (rc == 0 && fchmod(fd, e->mode) < 0)
          rc = blob_fail(&err, "chmod", p, errno);
        if (close(fd) < 0 && rc == 0)
          rc = blob_fail(&err, "close", p, errno);
      }
    }
    if (rc < 0) {
      pthread_mutex_lock(&job->mu);
      if (!job->rc) {
        job->rc = rc;
        job->err = err;
      }
      pthread_mutex_unlock(&job->mu);
      break;
    }
  }
  return NULL;
}

/* 1 when dir has no entries; -errno when it cannot be read. */
static int dir_empty(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return -errno;
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)))
    empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
  closedir(d);
  return empty;
}

/*
** Moves the top-level entries of the finished tmp into the existing empty directory d, or puts
** back those already moved when one fails, so that d ends complete or empty.
*/
static int move_into(const tide_tree *tree, const char *tmp, const char *d, tide_err *err)
{
  char from[8192], to[8192];
  int rc = 0;
  size_t i;
  for (i = 0; i < tree->n; i++) {
    const tide_tree_entry *e = &tree->v[i];
    if (strchr(e->path, '/'))
      continue;
    snprintf(from, sizeof from, "%s/%s", tmp, e->path);
    snprintf(to, sizeof to, "%s/%s", d, e->path);
    int r = blob_rename_noreplace(from, to);
    if (r < 0) {
      rc = blob_fail(err, "rename", to, -r);
      break;
    }
  }
  while (rc < 0 && i-- > 0) {
    const tide_tree_entry *e = &tree->v[i];
    if (strchr(e->path, '/'))
      continue;
    snprintf(from, sizeof from, "%s/%s", tmp, e->path);
    snprintf(to, sizeof to, "%s/%s", d, e->path);
    rename(to, from);
  }
  return rc;
}

int tide_tree_get(const char *root, const tide_tree *tree, const char *dst, int threads,
                  tide_tree_stats *stats, tide_err *err)
{
  memset(stats, 0, sizeof *stats);
  char d[4096], tmp[4400], p[8192], dir[4096], base[256];
  if (strlen(dst) >= sizeof d)
    return blob_fail(err, "create", dst, ENAMETOOLONG);
  snprintf(d, sizeof d, "%s", dst);
  size_t dl = strlen(d);
  while (dl > 1 && d[dl - 1] == '/')
    d[--dl] = 0;
  /*
  ** A new destination is built as a sibling and renamed into place. An existing empty directory
  ** (".", a mount point) cannot be replaced without pulling it from under whoever is in it: the
  ** tree is built inside it and its top-level entries moved up at the end.
  */
  struct stat st;
  int in_place = 0;
  if (lstat(d, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return tide_err_set(err, -EEXIST, "'%s' exists and is not an empty directory", d);
    blob_clean_stale(d, "");
    int empty = dir_empty(d);
    if (empty < 0)
      return blob_fail(err, "open", d, -empty);
    if (!empty)
      return tide_err_set(err, -EEXIST, "'%s' exists and is not an empty directory", d);
    in_place = 1;
  } else if (errno != ENOENT) {
    return blob_fail(err, "stat", d, errno);
  }
  int rc = in_place ? blob_sibling_tmp(d, "", 1, tmp, sizeof tmp, err) : 0;
  if (!in_place) {
    blob_split_path(d, dir, sizeof dir, base, sizeof base);
    rc = blob_sibling_tmp(dir, base, 1, tmp, sizeof tmp, err);
  }
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < tree->n && rc == 0; i++) {
    const tide_tree_entry *e = &tree->v[i];
    if (e->kind == TIDE_TREE_FILE) {
      stats->files++;
      stats->bytes += e->size;
    }
    if (e->kind != TIDE_TREE_DIR)
      continue;
    stats->dirs++;
    snprintf(p, sizeof p, "%s/%s", tmp, e->path);
    if (mkdir(p, 0700) < 0)
      rc = blob_fail(err, "mkdir", p, errno);
  }
  if (rc == 0) {
    get_job job = {.root = root, .dir = tmp, .tree = tree};
    pthread_mutex_init(&job.mu, NULL);
    run_workers(threads, tree->n, get_worker, &job);
    pthread_mutex_destroy(&job.mu);
    if (job.rc < 0) {
      rc = job.rc;
      if (err)
        *err = job.err;
    }
  }
  for (size_t i = 0; i < tree->n && rc == 0; i++) {
    const tide_tree_entry *e = &tree->v[i];
    if (e->kind != TIDE_TREE_LINK)
      continue;
    stats->links++;
    snprintf(p, sizeof p, "%s/%s", tmp, e->path);
    if (symlink(e->target, p) < 0)
      rc = blob_fail(err, "symlink", p, errno);
  }
  /* Deepest first, so a read-only directory is closed only after its contents are in. */
  for (size_t i = tree->n; i-- > 0 && rc == 0;) {
    const tide_tree_entry *e = &tree->v[i];
    if (e->kind != TIDE_TREE_DIR)
      continue;
    snprintf(p, sizeof p, "%s/%s", tmp, e->path);
    if (chmod(p, e->mode) < 0)
      rc = blob_fail(err, "chmod", p, errno);
  }
  if (rc == 0 && in_place) {
    rc = move_into(tree, tmp, d, err);
  } else if (rc == 0) {
    /* The temporary was made 0700. umask(2) cannot be read without changing it for every thread,
    ** so a new root gets 0755. */
    chmod(tmp, 0755);
    int r = blob_rename_noreplace(tmp, d);
    if (r == -EEXIST || r == -ENOTEMPTY)
      rc = tide_err_set(err, -EEXIST, "'%s' exists and is not an empty directory", d);
    else if (r < 0)
      rc = blob_fail(err, "rename", d, -r);
  }
  if (rc < 0 || in_place)
    tide_fs_rm_r(tmp, NULL);
  return rc;
}

static int add_fail(tide_tree *tree, size_t n0, tide_err *err, int rc, const char *why,
                    const char *name)
{
  while (tree->n > n0) {
    tree->n--;
    free(tree->v[tree->n].path);
    free(tree->v[tree->n].target);
  }
  if (rc == -ENOMEM)
    return tide_err_set(err, -ENOMEM, "out of memory");
  return tide_err_set(err, TIDE_EINPUT, "asset '%.200s': %s", name, why);
}

int tide_tree_add_asset(tide_tree *tree, const char *name, const tide_tree *sub, unsigned mode,
                        const char *hex, const char *xxh3, uint64_t size, tide_err *err)
{
  size_t n0 = tree->n;
  const char *why = path_problem(name);
  if (!why && strchr(name, '/'))
    why = "a '/' in the name";
  for (const char *c = name; !why && *c; c++) {
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      why = "a control character in the name";
  }
  for (size_t i = 0; !why && i < tree->n; i++) {
    if (!strchr(tree->v[i].path, '/') && !strcmp(tree->v[i].path, name))
      why = "a duplicate name";
  }
  if (!why && !sub && (!tide_blob_hex_valid(hex) || (xxh3 && !tide_blob_xxh_valid(xxh3))))
    why = "an invalid digest";
  if (why)
    return add_fail(tree, n0, err, TIDE_EINPUT, why, name);
  tide_tree_entry *e = tree_add(tree);
  if (!e || !(e->path = strdup(name)))
    return add_fail(tree, n0, err, -ENOMEM, NULL, name);
  e->mode = mode & 07777;
  if (!sub) {
    e->kind = TIDE_TREE_FILE;
    e->size = size;
    memcpy(e->hex, hex, sizeof e->hex);
    if (xxh3)
      memcpy(e->xxh3, xxh3, sizeof e->xxh3);
    return 0;
  }
  e->kind = TIDE_TREE_DIR;
  size_t nl = strlen(name);
  for (size_t i = 0; i < sub->n; i++) {
    const tide_tree_entry *s = &sub->v[i];
    tide_tree_entry *c = tree_add(tree);
    if (!c)
      return add_fail(tree, n0, err, -ENOMEM, NULL, name);
    *c = *s;
    c->path = malloc(nl + 1 + strlen(s->path) + 1);
    c->target = s->target ? strdup(s->target) : NULL;
    if (!c->path || (s->target && !c->target))
      return add_fail(tree, n0, err, -ENOMEM, NULL, name);
    sprintf(c->path, "%s/%s", name, s->path);
  }
  return 0;
}
