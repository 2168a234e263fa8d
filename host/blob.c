/*
** Content-addressed blobs: see include/tide/blob.h for the layout and the contracts.
**
** Copies of large files run as a pipeline (see "The large-copy pipeline" below): SHA-256 on the
** calling thread, reads, XXH3-128 and writes on a second one, writeback started as the copy goes.
*Large reads go out as a kernel copy while the other core checks the same pages.
*/
#include "tide/blob.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "tide/dl.h"
#include "tide/fs.h"

#include "blob_internal.h"

#define CHUNK (1u << 20) /* large for few calls, small enough to stay in cache while hashed */
#define NBUF 8
#define PIPELINE_MIN (8u << 20) /* below this a single thread copies faster */
#define WRITEBACK_MIN (8u << 20)

/*
** libcrypto is opened with dlopen by the first SHA-256, not linked: loading it costs every start
** of tide about a millisecond, and most runs never hash. Each function below is typed from
** OpenSSL's own declaration; calling one without going through crypto fails to link. Its soname
** is the one of the headers compiled against (OPENSSL_SHLIB_VERSION: 3 for all of OpenSSL 3.x).
*/
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define LIBCRYPTO_SONAME "libcrypto.so." STRINGIFY(OPENSSL_SHLIB_VERSION)
#define TIDE_CRYPTO_API(X, t) \
  X(t, EVP_Digest)            \
  X(t, EVP_DigestFinal_ex)    \
  X(t, EVP_DigestInit_ex)     \
  X(t, EVP_DigestUpdate)      \
  X(t, EVP_MD_CTX_free)       \
  X(t, EVP_MD_CTX_new)        \
  X(t, EVP_MD_fetch)          \
  X(t, EVP_sha256)

/* Written by md_init only, under md_once, which orders those writes before every later read. */
static struct {
  TIDE_CRYPTO_API(TIDE_DL_SLOT, _)
} crypto;
static const EVP_MD *sha256_md;
static char md_error[256]; /* why SHA-256 is not usable; empty when it is */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

/* Runs once: a library missing at the first hash is not looked for again in this process. */
static void md_init(void)
{
  static const tide_dl_sym syms[] = {TIDE_CRYPTO_API(TIDE_DL_SYM, crypto)};
  void *h =
      tide_dl_load(LIBCRYPTO_SONAME, syms, sizeof syms / sizeof *syms, md_error, sizeof md_error);
  if (!h)
    return;
  sha256_md = crypto.EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!sha256_md)
    sha256_md = crypto.EVP_sha256();
  if (sha256_md)
    return;
  snprintf(md_error, sizeof md_error, "%s has no SHA-256", LIBCRYPTO_SONAME);
  memset(&crypto, 0, sizeof crypto);
  dlclose(h);
}

int blob_hash_ready(tide_err *err)
{
  pthread_once(&md_once, md_init);
  return md_error[0] ? tide_err_set(err, TIDE_ECRYPTO, "sha256: %s", md_error) : 0;
}

blob_hash *blob_hash_new(void)
{
  if (blob_hash_ready(NULL) < 0)
    return NULL;
  EVP_MD_CTX *ctx = crypto.EVP_MD_CTX_new();
  if (ctx && !crypto.EVP_DigestInit_ex(ctx, sha256_md, NULL)) {
    crypto.EVP_MD_CTX_free(ctx);
    ctx = NULL;
  }
  return (blob_hash *)ctx;
}

void blob_hash_update(blob_hash *h, const void *p, size_t n)
{
  crypto.EVP_DigestUpdate((EVP_MD_CTX *)h, p, n);
}

void blob_hash_final(blob_hash *h, char hex[TIDE_BLOB_HEX_LEN + 1])
{
  unsigned char md[32];
  unsigned mdlen = 0;
  crypto.EVP_DigestFinal_ex((EVP_MD_CTX *)h, md, &mdlen);
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[TIDE_BLOB_HEX_LEN] = 0;
}

void blob_hash_free(blob_hash *h)
{
  if (h) /* without libcrypto there is no EVP_MD_CTX_free to take NULL */
    crypto.EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

int blob_hash_mem(const void *p, size_t n, char hex[TIDE_BLOB_HEX_LEN + 1], tide_err *err)
{
  int rc = blob_hash_ready(err);
  if (rc < 0)
    return rc;
  unsigned char md[32];
  unsigned mdlen = 0;
  crypto.EVP_Digest(p, n, md, &mdlen, sha256_md, NULL);
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[TIDE_BLOB_HEX_LEN] = 0;
  return 0;
}

static void to_hex(const unsigned char *b, size_t n, char *hex)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[b[i] >> 4];
    hex[2 * i + 1] = digits[b[i] & 15];
  }
  hex[2 * n] = 0;
}

blob_xxh *blob_xxh_new(void)
{
  XXH3_state_t *x = XXH3_createState();
  if (x && XXH3_128bits_reset(x) != XXH_OK) {
    XXH3_freeState(x);
    x = NULL;
  }
  return x;
}

void blob_xxh_update(blob_xxh *x, const void *p, size_t n)
{
  XXH3_128bits_update(x, p, n);
}

static void xxh_hex(XXH128_hash_t v, char hex[TIDE_BLOB_XXH_LEN + 1])
{
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, v);
  to_hex(c.digest, sizeof c.digest, hex);
}

void blob_xxh_final(blob_xxh *x, char hex[TIDE_BLOB_XXH_LEN + 1])
{
  xxh_hex(XXH3_128bits_digest(x), hex);
}

void blob_xxh_free(blob_xxh *x)
{
  XXH3_freeState(x);
}

void blob_xxh_mem(const void *p, size_t n, char hex[TIDE_BLOB_XXH_LEN + 1])
{
  xxh_hex(XXH3_128bits(p, n), hex);
}

int blob_fail(tide_err *err, const char *op, const char *path, int e)
{
  return tide_err_set(err, -e, "%s '%s': %s", op, path, tide_strerror(-e));
}

int tide_blob_hex_valid(const char *s)
{
  if (!s)
    return 0;
  for (int i = 0; i < TIDE_BLOB_HEX_LEN; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return 0;
  }
  return s[TIDE_BLOB_HEX_LEN] == 0;
}

int tide_blob_xxh_valid(const char *s)
{
  if (!s)
    return 0;
  for (int i = 0; i < TIDE_BLOB_XXH_LEN; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return 0;
  }
  return s[TIDE_BLOB_XXH_LEN] == 0;
}

static int mkdir_one(const char *path, tide_err *err)
{
  if (mkdir(path, 0755) < 0 && errno != EEXIST)
    return blob_fail(err, "mkdir", path, errno);
  return 0;
}

int tide_blob_init(const char *root, tide_err *err)
{
  char p[4096];
  static const char *const subs[] = {"", "/blobs", "/tmp", "/cache"};
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
    if (snprintf(p, sizeof p, "%s%s", root, subs[i]) >= (int)sizeof p)
      return blob_fail(err, "mkdir", root, ENAMETOOLONG);
    int rc = mkdir_one(p, err);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int tide_blob_path(const char *root, const char *hex, char *buf, size_t cap)
{
  int n = snprintf(buf, cap, "%s/blobs/%.2s/%s", root, hex, hex);
  return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int blob_path_checked(const char *root, const char *hex, char *buf, size_t cap,
                             tide_err *err)
{
  if (!tide_blob_hex_valid(hex))
    return tide_err_set(err, TIDE_EINPUT, "invalid sha256 '%.80s'", hex ? hex : "");
  if (tide_blob_path(root, hex, buf, cap) < 0)
    return blob_fail(err, "open", root, ENAMETOOLONG);
  return 0;
}

int tide_blob_exists(const char *root, const char *hex, tide_err *err)
{
  char p[4096];
  int rc = blob_path_checked(root, hex, p, sizeof p, err);
  if (rc < 0)
    return rc;
  struct stat st;
  if (stat(p, &st) == 0)
    return 1;
  if (errno == ENOENT)
    return 0;
  return blob_fail(err, "stat", p, errno);
}

/* ---- writing --------------------------------------------------------------------------------- */

/*
** The large-copy pipeline. An I/O thread reads each chunk into a private buffer, feeds it to
** XXH3-128 and writes it out; the calling thread feeds the same buffer to SHA-256, so what is
** hashed is exactly what is written even if the source changes meanwhile. The split follows the
** costs, measured per thread on 1 GiB: SHA-256 about 0.62 s of one core, the kernel's two
** page-cache copies about 0.5 s and XXH3 under 0.1 s of the other. When the copy ends in an
** fsync, a third, mostly sleeping thread starts writeback of what is written (sync_file_range),
** so the final fdatasync only waits for the tail.
*/
typedef struct pipeline {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *buf[NBUF];
  size_t len[NBUF];
  int full[NBUF]; /* set by the I/O thread, cleared by the hasher once hashed */
  int done;       /* the I/O thread publishes no more chunks */
  int rc;         /* the I/O thread's failure (negated errno) */
  char which;
  int in, out, writeback;
  blob_xxh *x;
  uint64_t size, written;
} pipeline;

static void *io_main(void *arg)
{
  pipeline *pl = arg;
  uint64_t off = 0;
  int rc = 0;
  char which = 0;
  for (size_t i = 0;; i = (i + 1) % NBUF) {
    pthread_mutex_lock(&pl->mu);
    while (pl->full[i])
      pthread_cond_wait(&pl->cv, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
    ssize_t r = tide_fs_read_full(pl->in, pl->buf[i], CHUNK);
    if (r <= 0) {
      rc = (int)r;
      which = 'r';
      break;
    }
    pthread_mutex_lock(&pl->mu);
    pl->len[i] = (size_t)r;
    pl->full[i] = 1;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    /* The hasher reads this buffer now too; neither writes it until both are done. */
    if (pl->x)
      blob_xxh_update(pl->x, pl->buf[i], (size_t)r);
    if ((rc = tide_fs_write_all(pl->out, pl->buf[i], (size_t)r)) < 0) {
      which = 'w';
      break;
    }
    off += (uint64_t)r;
    if (pl->writeback) {
      pthread_mutex_lock(&pl->mu);
      pl->written = off;
      pthread_cond_broadcast(&pl->cv);
      pthread_mutex_unlock(&pl->mu);
    }
    if ((size_t)r < CHUNK)
      break;
  }
  pthread_mutex_lock(&pl->mu);
  pl->size = off;
  pl->rc = rc;
  pl->which = which;
  pl->done = 1;
  pthread_cond_broadcast(&pl->cv);
  pthread_mutex_unlock(&pl->mu);
  return NULL;
}

/*
** Starts writeback of what the I/O thread has written, WRITEBACK_MIN bytes or more at a time, so
** that the final fdatasync finds little left to write. It runs on its own thread because
** sync_file_range blocks while the device queue is full, which must not stall the copy.
*/
static void *flusher_main(void *arg)
{
  pipeline *pl = arg;
  uint64_t flushed = 0;
  pthread_mutex_lock(&pl->mu);
  for (;;) {
    while (pl->written - flushed < WRITEBACK_MIN && !pl->done)
      pthread_cond_wait(&pl->cv, &pl->mu);
    uint64_t upto = pl->written;
    int done = pl->done;
    pthread_mutex_unlock(&pl->mu);
    if (upto > flushed)
      sync_file_range(pl->out, (off_t)flushed, (off_t)(upto - flushed), SYNC_FILE_RANGE_WRITE);
    flushed = upto;
    pthread_mutex_lock(&pl->mu);
    if (done && pl->written == flushed)
      break;
  }
  pthread_mutex_unlock(&pl->mu);
  return NULL;
}

/* The one-thread copy: small files, hash-only passes, and XXH3-only copies. */
static int copy_hash_serial(int in, int out, uint64_t size_hint, blob_hash *h, blob_xxh *x,
                            uint64_t *size, char *which)
{
  size_t cap = size_hint < CHUNK ? (size_t)size_hint + 1 : CHUNK;
  if (cap < 65536)
    cap = 65536;
  char *buf = malloc(cap);
  if (!buf)
    return -ENOMEM;
  int rc = 0;
  for (;;) {
    ssize_t r = tide_fs_read_full(in, buf, cap);
    if (r < 0) {
      *which = 'r';
      rc = (int)r;
      break;
    }
    if (r == 0)
      break;
    if (h)
      blob_hash_update(h, buf, (size_t)r);
    if (x)
      blob_xxh_update(x, buf, (size_t)r);
    *size += (uint64_t)r;
    if (out >= 0 && (rc = tide_fs_write_all(out, buf, (size_t)r)) < 0) {
      *which = 'w';
      break;
    }
    if ((size_t)r < cap)
      break;
  }
  free(buf);
  return rc;
}

int blob_copy_hash(int in, int out, uint64_t size_hint, int writeback, blob_hash *h, blob_xxh *x,
                   uint64_t *size, char *which)
{
  *size = 0;
  if (out < 0 || !h || size_hint < PIPELINE_MIN)
    return copy_hash_serial(in, out, size_hint, h, x, size, which);

  pipeline pl = {.in = in, .out = out, .writeback = writeback, .x = x};
  int rc = 0;
  pthread_mutex_init(&pl.mu, NULL);
  pthread_cond_init(&pl.cv, NULL);
  for (int i = 0; i < NBUF; i++) {
    if (!(pl.buf[i] = malloc(CHUNK)))
      rc = -ENOMEM;
  }
  pthread_t io, flusher;
  if (rc == 0 && pthread_create(&io, NULL, io_main, &pl) != 0)
    rc = -EAGAIN;
  int flushing = rc == 0 && writeback && pthread_create(&flusher, NULL, flusher_main, &pl) == 0;
  if (rc < 0) {
    for (int i = 0; i < NBUF; i++)
      free(pl.buf[i]);
    pthread_mutex_destroy(&pl.mu);
    pthread_cond_destroy(&pl.cv);
    return rc;
  }
  for (size_t i = 0;; i = (i + 1) % NBUF) {
    pthread_mutex_lock(&pl.mu);
    while (!pl.full[i] && !pl.done)
      pthread_cond_wait(&pl.cv, &pl.mu);
    int have = pl.full[i];
    size_t n = pl.len[i];
    pthread_mutex_unlock(&pl.mu);
    if (!have)
      break; /* done, and every published chunk is hashed */
    blob_hash_update(h, pl.buf[i], n);
    pthread_mutex_lock(&pl.mu);
    pl.full[i] = 0;
    pthread_cond_broadcast(&pl.cv);
    pthread_mutex_unlock(&pl.mu);
  }
  pthread_join(io, NULL);
  if (flushing)
    pthread_join(flusher, NULL);
  *size = pl.size;
  if (pl.rc < 0) {
    *which = pl.which;
    rc = pl.rc;
  }
  for (int i = 0; i < NBUF; i++)
    free(pl.buf[i]);
  pthread_mutex_destroy(&pl.mu);
  pthread_cond_destroy(&pl.cv);
  return rc;
}

/* Opens a new temporary file in dir; its path goes to path (cap bytes). */
int blob_tmp_open(const char *dir, char *path, size_t cap, tide_err *err)
{
  if (snprintf(path, cap, "%s/.tide-XXXXXX", dir) >= (int)cap)
    return blob_fail(err, "create", dir, ENAMETOOLONG);
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0)
    return blob_fail(err, "create", path, errno);
  /* Blobs are immutable: read-only from the start (the descriptor stays writable). */
  fchmod(fd, 0444);
  return fd;
}

int blob_tmp_create(const char *dir, char *path, size_t cap, tide_err *err)
{
  static _Atomic unsigned long counter;
  static _Atomic pid_t pid; /* else a system call per file of a tree */
  if (!pid)
    pid = getpid();
  for (int tries = 0; tries < 100; tries++) {
    unsigned long n = atomic_fetch_add(&counter, 1);
    if (snprintf(path, cap, "%s/.tide-%ld-%lu", dir, (long)pid, n) >= (int)cap)
      return blob_fail(err, "create", dir, ENAMETOOLONG);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd >= 0)
      return fd;
    if (errno != EEXIST)
      return blob_fail(err, "create", path, errno);
  }
  return blob_fail(err, "create", path, EEXIST);
}

/* "<prefix><pid>-<n>": the name of a restore's temporary, owned by process pid. */
#define SIBLING_TAG ".tide-tmp-"

void blob_clean_stale(const char *dir, const char *base)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  char prefix[512];
  if (snprintf(prefix, sizeof prefix, "%s" SIBLING_TAG, base) >= (int)sizeof prefix) {
    closedir(d);
    return;
  }
  size_t pl = strlen(prefix);
  struct dirent *e;
  char p[8192];
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, prefix, pl) != 0)
      continue;
    char *end;
    long pid = strtol(e->d_name + pl, &end, 10);
    /* Only the debris of a process that is gone: a live owner may still be writing. */
    if (pid <= 0 || *end != '-' || pid == (long)getpid() ||
        !(kill((pid_t)pid, 0) < 0 && errno == ESRCH))
      continue;
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
      tide_fs_rm_r(p, NULL);
  }
  closedir(d);
}

int blob_sibling_tmp(const char *dir, const char *base, int is_dir, char *path, size_t cap,
                     tide_err *err)
{
  static _Atomic unsigned long counter;
  blob_clean_stale(dir, base);
  for (int tries = 0; tries < 100; tries++) {
    unsigned long n = atomic_fetch_add(&counter, 1);
    if (snprintf(path, cap, "%s/%s" SIBLING_TAG "%ld-%lu", dir, base, (long)getpid(), n) >=
        (int)cap)
      return blob_fail(err, "create", base, ENAMETOOLONG);
    int fd = is_dir ? mkdir(path, 0700) : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
      return fd;
    if (errno != EEXIST)
      return blob_fail(err, is_dir ? "mkdir" : "create", path, errno);
  }
  return blob_fail(err, "create", path, EEXIST);
}

void blob_split_path(const char *path, char *dir, size_t dcap, char *base, size_t bcap)
{
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  size_t n = strlen(buf);
  while (n > 1 && buf[n - 1] == '/')
    buf[--n] = 0;
  char *slash = strrchr(buf, '/');
  if (!slash) {
    snprintf(dir, dcap, ".");
    snprintf(base, bcap, "%s", buf);
  } else {
    snprintf(base, bcap, "%s", slash + 1);
    if (slash == buf)
      slash[1] = 0;
    else
      *slash = 0;
    snprintf(dir, dcap, "%s", buf);
  }
}

int blob_rename_noreplace(const char *from, const char *to)
{
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -errno;
  /* A file system without RENAME_NOREPLACE: a hard link fails on an existing name too. */
  struct stat st;
  if (lstat(from, &st) == 0 && !S_ISDIR(st.st_mode)) {
    if (link(from, to) < 0)
      return -errno;
    unlink(from);
    return 0;
  }
  if (lstat(to, &st) == 0)
    return -EEXIST;
  return rename(from, to) < 0 ? -errno : 0;
}

int blob_rename(const char *root, const char *tmp, const char *hex, tide_err *err)
{
  char p[4096];
  if (tide_blob_path(root, hex, p, sizeof p) < 0)
    return blob_fail(err, "rename", tmp, ENAMETOOLONG);
  /* An identical blob that appeared meanwhile is replaced by the same content: harmless. */
  if (rename(tmp, p) == 0)
    return 0;
  if (errno != ENOENT)
    return blob_fail(err, "rename", p, errno);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blobs/%.2s", root, hex);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return blob_fail(err, "mkdir", dir, errno);
  if (rename(tmp, p) < 0)
    return blob_fail(err, "rename", p, errno);
  return 0;
}

static int fsync_dir_of(const char *path)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash)
    return 0;
  *slash = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/*
** Moves the complete temporary file tmp to the blob hex. A blob already there is replaced: tmp
** was verified as it was written, the one in place may have rotted since, and a rename costs no
** more than dropping tmp. durable: fsync the fan-out directory after the rename.
*/
int blob_publish(const char *root, const char *tmp, const char *hex, int durable, int *stored,
                 tide_err *err)
{
  char p[4096];
  if (tide_blob_path(root, hex, p, sizeof p) < 0)
    return blob_fail(err, "rename", tmp, ENAMETOOLONG);
  struct stat st;
  *stored = stat(p, &st) != 0;
  int rc = blob_rename(root, tmp, hex, err);
  if (rc < 0)
    return rc;
  if (durable) {
    rc = fsync_dir_of(p);
    if (rc < 0)
      return blob_fail(err, "fsync", p, -rc);
  }
  return 0;
}

int tide_blob_put_file(const char *root, const char *src, const char *expect, tide_blob_info *out,
                       tide_err *err)
{
  if (expect && !tide_blob_hex_valid(expect))
    return tide_err_set(err, TIDE_EINPUT, "invalid sha256 '%.80s'", expect);
  int rc = blob_hash_ready(err);
  if (rc < 0)
    return rc;
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return blob_fail(err, "open", src, errno);
  struct stat st;
  if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
    int e = errno;
    close(in);
    if (S_ISDIR(st.st_mode))
      return blob_fail(err, "read", src, EISDIR);
    return e ? blob_fail(err, "stat", src, e)
             : tide_err_set(err, TIDE_EINPUT, "'%s' is not a regular file", src);
  }
  posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  char tmpdir[4096], tmp[4096];
  snprintf(tmpdir, sizeof tmpdir, "%s/tmp", root);
  int outfd = blob_tmp_open(tmpdir, tmp, sizeof tmp, err);
  if (outfd < 0) {
    close(in);
    return outfd;
  }
  blob_hash *h = blob_hash_new();
  blob_xxh *x = blob_xxh_new();
  if (!h || !x) {
    blob_hash_free(h);
    blob_xxh_free(x);
    close(in);
    close(outfd);
    unlink(tmp);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  uint64_t size = 0;
  char which = 0;
  rc = blob_copy_hash(in, outfd, (uint64_t)st.st_size, 1, h, x, &size, &which);
  close(in);
  /* The data's writeback started during the copy: only the tail and the size are left. */
  if (rc < 0) {
    blob_fail(err, which == 'r' ? "read" : "write", which == 'r' ? src : tmp, -rc);
  } else if (fdatasync(outfd) < 0) {
    rc = blob_fail(err, "fsync", tmp, errno);
  }
  if (close(outfd) < 0 && rc == 0)
    rc = blob_fail(err, "close", tmp, errno);
  blob_hash_final(h, out->hex);
  blob_hash_free(h);
  blob_xxh_final(x, out->xxh3);
  blob_xxh_free(x);
  out->size = size;
  out->stored = 0;
  if (rc == 0 && expect && strcmp(expect, out->hex) != 0)
    rc = tide_err_set(err, TIDE_EINTEGRITY, "sha256 of '%s' is %s, not %s", src, out->hex, expect);
  if (rc == 0)
    rc = blob_publish(root, tmp, out->hex, 1, &out->stored, err);
  if (rc < 0)
    unlink(tmp);
  return rc;
}

int blob_holds(const char *root, const char *hex, const void *data, size_t len)
{
  char p[4096];
  if (tide_blob_path(root, hex, p, sizeof p) < 0)
    return 0;
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return 0;
  struct stat st;
  int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len;
  char buf[65536];
  for (size_t off = 0; same && off < len;) {
    size_t want = len - off < sizeof buf ? len - off : sizeof buf;
    ssize_t r = tide_fs_read_full(fd, buf, want);
    same = r == (ssize_t)want && memcmp(buf, (const char *)data + off, want) == 0;
    off += want;
  }
  close(fd);
  return same;
}

int tide_blob_put_mem(const char *root, const void *data, size_t len, tide_blob_info *out,
                      tide_err *err)
{
  int rc = blob_hash_mem(data, len, out->hex, err);
  if (rc < 0)
    return rc;
  blob_xxh_mem(data, len, out->xxh3);
  out->size = len;
  out->stored = 0;
  if (blob_holds(root, out->hex, data, len))
    return 0;
  char tmpdir[4096], tmp[4096];
  snprintf(tmpdir, sizeof tmpdir, "%s/tmp", root);
  int fd = blob_tmp_open(tmpdir, tmp, sizeof tmp, err);
  if (fd < 0)
    return fd;
  rc = tide_fs_write_all(fd, data, len);
  if (rc < 0)
    blob_fail(err, "write", tmp, -rc);
  else if (fsync(fd) < 0)
    rc = blob_fail(err, "fsync", tmp, errno);
  if (close(fd) < 0 && rc == 0)
    rc = blob_fail(err, "close", tmp, errno);
  if (rc == 0)
    rc = blob_publish(root, tmp, out->hex, 1, &out->stored, err);
  if (rc < 0)
    unlink(tmp);
  return rc;
}

/* ---- reading --------------------------------------------------------------------------------- */

int blob_open_read(const char *root, const char *hex, struct stat *st, tide_err *err)
{
  char p[4096];
  int rc = blob_path_checked(root, hex, p, sizeof p, err);
  if (rc < 0)
    return rc;
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return tide_err_set(err, -ENOENT, "blob %s is missing from the store", hex);
    return blob_fail(err, "open", p, errno);
  }
  if (fstat(fd, st) < 0) {
    rc = blob_fail(err, "stat", p, errno);
    close(fd);
    return rc;
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

int blob_corrupt(tide_err *err, const char *hex, const char *kind, const char *got)
{
  return tide_err_set(err, TIDE_EINTEGRITY, "blob %s is corrupt (its %s %.12s...)", hex, kind, got);
}

typedef struct kcopy {
  int in, out;
  uint64_t size;
  int rc; /* 0, or a negated errno */
} kcopy;

static void *kcopy_main(void *arg)
{
  kcopy *k = arg;
  loff_t off_in = 0, off_out = 0;
  while ((uint64_t)off_in < k->size) {
    size_t n = k->size - (uint64_t)off_in > (1u << 30) ? 1u << 30 : k->size - (uint64_t)off_in;
    ssize_t r = copy_file_range(k->in, &off_in, k->out, &off_out, n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      k->rc = r < 0 ? -errno : -EIO;
      return NULL;
    }
  }
  return NULL;
}

/*
** A large blob goes out as a kernel copy (copy_file_range) on one thread while this one checks the
** same page-cache pages through a mapping: nothing is copied through user space, and the two
** halves of the work run on two cores. Both read the same cached pages of an immutable file, so
** what is checked is what was copied. Checks with XXH3-128 when want_xxh, else SHA-256; got
** receives the digest. Returns 1 when the file system cannot do it (the caller falls back), else
** 0 or a negated errno.
*/
static int copy_out_kernel(int in, int out, uint64_t size, int want_xxh,
                           char got[TIDE_BLOB_HEX_LEN + 1])
{
  void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, in, 0);
  if (map == MAP_FAILED)
    return 1;
  madvise(map, size, MADV_SEQUENTIAL);
  kcopy k = {.in = in, .out = out, .size = size};
  pthread_t t;
  if (pthread_create(&t, NULL, kcopy_main, &k) != 0) {
    munmap(map, size);
    return 1;
  }
  int rc = 0;
  if (want_xxh) {
    blob_xxh_mem(map, size, got);
  } else {
    blob_hash *h = blob_hash_new();
    for (uint64_t off = 0; h && off < size; off += CHUNK)
      blob_hash_update(h, (char *)map + off, size - off < CHUNK ? size - off : CHUNK);
    if (h) {
      blob_hash_final(h, got);
      blob_hash_free(h);
    } else {
      rc = -ENOMEM;
    }
  }
  pthread_join(t, NULL);
  munmap(map, size);
  if (rc < 0)
    return rc;
  if (k.rc == -EXDEV || k.rc == -EINVAL || k.rc == -EOPNOTSUPP || k.rc == -ENOSYS)
    return 1;
  return k.rc;
}

int blob_copy_out(const char *root, const char *hex, const char *xxh3, int outfd,
                  const char *outname, tide_err *err)
{
  const char *want = xxh3 ? xxh3 : hex;
  const char *kind = xxh3 ? "XXH3-128 is" : "content hashes to";
  int rc = xxh3 ? 0 : blob_hash_ready(err);
  if (rc < 0)
    return rc;
  struct stat st;
  int in = blob_open_read(root, hex, &st, err);
  if (in < 0)
    return in;
  char got[TIDE_BLOB_HEX_LEN + 1];
  if ((uint64_t)st.st_size >= PIPELINE_MIN) {
    rc = copy_out_kernel(in, outfd, (uint64_t)st.st_size, xxh3 != NULL, got);
    if (rc <= 0) {
      close(in);
      if (rc < 0)
        return blob_fail(err, "write", outname, -rc);
      return strcmp(got, want) != 0 ? blob_corrupt(err, hex, kind, got) : 0;
    }
    /* Not supported here: start again with plain reads and writes. */
    if (ftruncate(outfd, 0) < 0 || lseek(outfd, 0, SEEK_SET) < 0) {
      close(in);
      return blob_fail(err, "write", outname, errno);
    }
  }
  blob_hash *h = xxh3 ? NULL : blob_hash_new();
  blob_xxh *x = xxh3 ? blob_xxh_new() : NULL;
  if (!h && !x) {
    close(in);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  uint64_t size;
  char which = 0;
  rc = blob_copy_hash(in, outfd, (uint64_t)st.st_size, 0, h, x, &size, &which);
  close(in);
  if (h) {
    blob_hash_final(h, got);
    blob_hash_free(h);
  } else {
    blob_xxh_final(x, got);
    blob_xxh_free(x);
  }
  if (rc < 0)
    return which == 'r' ? tide_err_set(err, rc, "read blob %s: %s", hex, tide_strerror(rc))
                        : blob_fail(err, "write", outname, -rc);
  if (strcmp(got, want) != 0)
    return blob_corrupt(err, hex, kind, got);
  return 0;
}

int tide_blob_get_file(const char *root, const char *hex, const char *xxh3, const char *dst,
                       unsigned mode, tide_err *err)
{
  if (!tide_blob_hex_valid(hex))
    return tide_err_set(err, TIDE_EINPUT, "invalid sha256 '%.80s'", hex);
  if (xxh3 && !tide_blob_xxh_valid(xxh3))
    return tide_err_set(err, TIDE_EINPUT, "invalid XXH3-128 '%.80s'", xxh3);
  char dir[4096], base[256], tmp[4400];
  if (strlen(dst) >= sizeof dir)
    return blob_fail(err, "create", dst, ENAMETOOLONG);
  blob_split_path(dst, dir, sizeof dir, base, sizeof base);
  struct stat st;
  if (lstat(dst, &st) == 0)
    return tide_err_set(err, -EEXIST, "'%s' exists: pull into a new path", dst);
  int fd = blob_sibling_tmp(dir, base, 0, tmp, sizeof tmp, err);
  if (fd < 0)
    return fd;
  int rc = blob_copy_out(root, hex, xxh3, fd, dst, err);
  if (rc == 0 && fchmod(fd, mode & 07777) < 0)
    rc = blob_fail(err, "chmod", dst, errno);
  if (close(fd) < 0 && rc == 0)
    rc = blob_fail(err, "close", dst, errno);
  if (rc == 0 && (rc = blob_rename_noreplace(tmp, dst)) < 0)
    rc = rc == -EEXIST ? tide_err_set(err, -EEXIST, "'%s' exists: pull into a new path", dst)
                       : blob_fail(err, "rename", dst, -rc);
  if (rc < 0)
    unlink(tmp);
  return rc;
}

int tide_blob_read(const char *root, const char *hex, char **data, size_t *len, tide_err *err)
{
  struct stat st;
  *data = NULL;
  *len = 0;
  int fd = blob_open_read(root, hex, &st, err);
  if (fd < 0)
    return fd;
  size_t n = (size_t)st.st_size;
  char *buf = malloc(n + 1);
  if (!buf) {
    close(fd);
    return tide_err_set(err, -ENOMEM, "out of memory reading blob %s", hex);
  }
  ssize_t r = tide_fs_read_full(fd, buf, n);
  close(fd);
  if (r < 0) {
    free(buf);
    return tide_err_set(err, (int)r, "read blob %s: %s", hex, tide_strerror((int)r));
  }
  buf[r] = 0;
  char got[TIDE_BLOB_HEX_LEN + 1];
  int rc = blob_hash_mem(buf, (size_t)r, got, err);
  if (rc < 0 || strcmp(got, hex) != 0) {
    free(buf);
    return rc < 0 ? rc : blob_corrupt(err, hex, "content hashes to", got);
  }
  *data = buf;
  *len = (size_t)r;
  return 0;
}

int tide_blob_verify(const char *root, const char *hex, uint64_t *size, tide_err *err)
{
  int rc = blob_hash_ready(err);
  if (rc < 0)
    return rc;
  struct stat st;
  int fd = blob_open_read(root, hex, &st, err);
  if (fd < 0)
    return fd;
  blob_hash *h = blob_hash_new();
  if (!h) {
    close(fd);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  uint64_t n;
  char which, got[TIDE_BLOB_HEX_LEN + 1];
  rc = blob_copy_hash(fd, -1, (uint64_t)st.st_size, 0, h, NULL, &n, &which);
  close(fd);
  blob_hash_final(h, got);
  blob_hash_free(h);
  if (size)
    *size = n;
  if (rc < 0)
    return tide_err_set(err, rc, "read blob %s: %s", hex, tide_strerror(rc));
  if (strcmp(got, hex) != 0)
    return blob_corrupt(err, hex, "content hashes to", got);
  return 0;
}

struct tide_blob_reader {
  int fd;
  uint64_t size;
  blob_hash *h;
  char hex[TIDE_BLOB_HEX_LEN + 1];
  int ended;
};

int tide_blob_open(const char *root, const char *hex, tide_blob_reader **out, tide_err *err)
{
  *out = NULL;
  int rc = blob_hash_ready(err);
  if (rc < 0)
    return rc;
  struct stat st;
  int fd = blob_open_read(root, hex, &st, err);
  if (fd < 0)
    return fd;
  tide_blob_reader *r = calloc(1, sizeof *r);
  if (!r || !(r->h = blob_hash_new())) {
    free(r);
    close(fd);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  r->fd = fd;
  r->size = (uint64_t)st.st_size;
  memcpy(r->hex, hex, sizeof r->hex);
  *out = r;
  return 0;
}

long tide_blob_reader_read(tide_blob_reader *r, void *buf, size_t cap, tide_err *err)
{
  if (r->ended)
    return 0;
  ssize_t n = tide_fs_read_full(r->fd, buf, cap);
  if (n < 0)
    return tide_err_set(err, (int)n, "read blob %s: %s", r->hex, tide_strerror((int)n));
  if (n > 0) {
    blob_hash_update(r->h, buf, (size_t)n);
    return (long)n;
  }
  r->ended = 1;
  char got[TIDE_BLOB_HEX_LEN + 1];
  blob_hash_final(r->h, got);
  if (strcmp(got, r->hex) != 0)
    return blob_corrupt(err, r->hex, "content hashes to", got);
  return 0;
}

uint64_t tide_blob_reader_size(const tide_blob_reader *r)
{
  return r->size;
}

void tide_blob_reader_close(tide_blob_reader *r)
{
  if (!r)
    return;
  close(r->fd);
  blob_hash_free(r->h);
  free(r);
}

/* ---- names and gc ---------------------------------------------------------------------------- */

int tide_blob_names_add(tide_blob_names *names, const char *hex)
{
  if (names->n == names->cap) {
    size_t cap = names->cap ? names->cap * 2 : 64;
    void *v = realloc(names->v, cap * sizeof *names->v);
    if (!v)
      return -ENOMEM;
    names->v = v;
    names->cap = cap;
  }
  snprintf(names->v[names->n++], TIDE_BLOB_HEX_LEN + 1, "%s", hex);
  return 0;
}

void tide_blob_names_clear(tide_blob_names *names)
{
  free(names->v);
  names->v = NULL;
  names->n = names->cap = 0;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(a, b);
}

void tide_blob_names_sort(tide_blob_names *names)
{
  if (!names->n)
    return;
  qsort(names->v, names->n, sizeof *names->v, name_cmp);
  size_t w = 1;
  for (size_t i = 1; i < names->n; i++) {
    if (strcmp(names->v[i], names->v[w - 1]) != 0)
      memcpy(names->v[w++], names->v[i], sizeof *names->v);
  }
  names->n = w;
}

int tide_blob_names_has(const tide_blob_names *sorted, const char *hex)
{
  return sorted->n && bsearch(hex, sorted->v, sorted->n, sizeof *sorted->v, name_cmp) != NULL;
}

int tide_blob_lock(const char *root, unsigned flags, tide_err *err)
{
  char p[4096];
  if (snprintf(p, sizeof p, "%s/lock", root) >= (int)sizeof p)
    return blob_fail(err, "open", root, ENAMETOOLONG);
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return blob_fail(err, "open", p, errno);
  int op = (flags & TIDE_BLOB_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH) |
           (flags & TIDE_BLOB_LOCK_NOWAIT ? LOCK_NB : 0);
  while (flock(fd, op) < 0) {
    if (errno == EINTR)
      continue;
    int rc = errno == EWOULDBLOCK ? tide_err_set(err, -EWOULDBLOCK, "the artifact store is busy")
                                  : blob_fail(err, "lock", p, errno);
    close(fd);
    return rc;
  }
  return fd;
}

void tide_blob_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* closing the only descriptor releases the flock */
}

static int gc_dir(const char *dir, const tide_blob_names *keep, time_t cutoff, int dry_run, int tmp,
                  tide_blob_gc_stats *stats, tide_err *err)
{
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT)
      return 0;
    return blob_fail(err, "opendir", dir, errno);
  }
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && !tmp)
      continue;
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
      continue;
    int keepit = !tmp && tide_blob_hex_valid(e->d_name) && tide_blob_names_has(keep, e->d_name);
    if (keepit || st.st_mtime > cutoff) {
      if (!tmp)
        stats->kept++;
      continue;
    }
    if (!dry_run && unlink(p) < 0 && errno != ENOENT) {
      int rc = blob_fail(err, "unlink", p, errno);
      closedir(d);
      return rc;
    }
    if (tmp) {
      stats->tmp_removed++;
    } else {
      stats->removed++;
      stats->bytes_removed += (uint64_t)st.st_size;
    }
  }
  closedir(d);
  return 0;
}

/* A stat cache still of use: recently written, and its source directory still there. */
static int cache_live(const char *file, const struct stat *st, time_t cutoff)
{
  if (st->st_mtime <= cutoff)
    return 0;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return 0;
  char head[12 + 4096];
  ssize_t n = tide_fs_read_full(fd, head, sizeof head - 1);
  close(fd);
  uint32_t sl;
  if (n < 12 || memcmp(head, "tidesc2\n", 8) != 0)
    return 0;
  memcpy(&sl, head + 8, 4);
  if (sl == 0 || sl > (size_t)n - 12)
    return 0;
  head[12 + sl] = 0;
  struct stat src;
  return stat(head + 12, &src) == 0 && S_ISDIR(src.st_mode);
}

static void gc_cache(const char *dir, time_t cutoff, int dry_run, tide_blob_gc_stats *stats)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
      continue;
    struct stat st;
    if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || cache_live(p, &st, cutoff))
      continue;
    if (dry_run || unlink(p) == 0)
      stats->cache_removed++;
  }
  closedir(d);
}

int tide_blob_gc(const char *root, const tide_blob_names *keep, int64_t grace, int dry_run,
                 tide_blob_gc_stats *stats, tide_err *err)
{
  memset(stats, 0, sizeof *stats);
  time_t cutoff = time(NULL) - (time_t)grace;
  char p[4096];
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 256; i++) {
    snprintf(p, sizeof p, "%s/blobs/%c%c", root, digits[i >> 4], digits[i & 15]);
    int rc = gc_dir(p, keep, cutoff, dry_run, 0, stats, err);
    if (rc < 0)
      return rc;
  }
  snprintf(p, sizeof p, "%s/tmp", root);
  int rc = gc_dir(p, keep, cutoff, dry_run, 1, stats, err);
  if (rc == 0) {
    snprintf(p, sizeof p, "%s/cache", root);
    gc_cache(p, cutoff, dry_run, stats);
  }
  return rc;
}
