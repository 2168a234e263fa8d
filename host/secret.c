/*
** libsodium keys, seal and open with associated data, guarded memory. See tide/secret.h.
*/
#include "tide/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define KDF_CONTEXT "tidesec1"
#define AD_MAGIC "tide/sec/v1"

struct tide_secret_key {
  unsigned char *k; /* sodium_malloc'd, PROT_NONE while idle */
  int holds;        /* readable while > 0 (tide_secret_key_hold) */
};

int tide_secret_init(tide_err *err)
{
  if (sodium_init() < 0)
    return tide_err_set(err, TIDE_ECRYPTO, "cannot initialise libsodium");
  return 0;
}

int tide_secret_harden_process(int no_ptrace, tide_err *err)
{
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    return tide_err_set(err, -errno, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
  if (no_ptrace && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return tide_err_set(err, -errno, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
  return 0;
}

static int key_alloc(tide_secret_key **out, tide_err *err)
{
  *out = NULL;
  if (tide_secret_init(err) < 0)
    return TIDE_ECRYPTO;
  tide_secret_key *key = calloc(1, sizeof *key);
  if (key)
    key->k = sodium_malloc(TIDE_SECRET_KEY_LEN);
  if (!key || !key->k) {
    free(key);
    return tide_err_set(err, -ENOMEM, "cannot allocate a key: out of memory");
  }
  *out = key;
  return 0;
}

/* Keys are readable only while in use; const callers flip the protection of the guarded page. */
static const unsigned char *key_open(const tide_secret_key *key)
{
  if (key->holds == 0)
    sodium_mprotect_readonly(key->k);
  return key->k;
}

static void key_close(const tide_secret_key *key)
{
  if (key->holds == 0)
    sodium_mprotect_noaccess(key->k);
}

void tide_secret_key_hold(tide_secret_key *key)
{
  if (key->holds++ == 0)
    sodium_mprotect_readonly(key->k);
}

void tide_secret_key_release(tide_secret_key *key)
{
  if (--key->holds == 0)
    sodium_mprotect_noaccess(key->k);
}

void tide_secret_key_free(tide_secret_key *key)
{
  if (!key)
    return;
  sodium_free(key->k); /* wipes; also works on a PROT_NONE region */
  free(key);
}

int tide_secret_key_random(tide_secret_key **out, tide_err *err)
{
  int rc = key_alloc(out, err);
  if (rc < 0)
    return rc;
  randombytes_buf((*out)->k, TIDE_SECRET_KEY_LEN);
  key_close(*out);
  return 0;
}

int tide_secret_key_from_bytes(const void *bytes, size_t len, tide_secret_key **out, tide_err *err)
{
  *out = NULL;
  if (len != TIDE_SECRET_KEY_LEN)
    return tide_err_set(err, TIDE_EINPUT, "a key must be %d bytes, not %zu", TIDE_SECRET_KEY_LEN,
                        len);
  int rc = key_alloc(out, err);
  if (rc < 0)
    return rc;
  memcpy((*out)->k, bytes, len);
  key_close(*out);
  return 0;
}

static int write_new_key(const char *path, tide_err *err)
{
  unsigned char *k = sodium_malloc(TIDE_SECRET_KEY_LEN);
  if (!k)
    return tide_err_set(err, -ENOMEM, "out of memory");
  randombytes_buf(k, TIDE_SECRET_KEY_LEN);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  int rc = 0;
  if (fd < 0) {
    rc = errno == EEXIST
             ? 0
             : tide_err_set(err, -errno, "cannot create key file '%s': %s", path, strerror(errno));
  } else {
    if (write(fd, k, TIDE_SECRET_KEY_LEN) != TIDE_SECRET_KEY_LEN || fsync(fd) != 0) {
      rc = tide_err_set(err, -errno, "cannot write key file '%s': %s", path, strerror(errno));
      unlink(path);
    }
    close(fd);
  }
  sodium_free(k);
  return rc;
}

int tide_secret_key_file(const char *path, int create, tide_secret_key **out, tide_err *err)
{
  *out = NULL;
  int rc = tide_secret_init(err);
  if (rc < 0)
    return rc;
  if (create && access(path, F_OK) != 0 && (rc = write_new_key(path, err)) < 0)
    return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return tide_err_set(err, -errno, "cannot open key file '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
      st.st_size != TIDE_SECRET_KEY_LEN) {
    close(fd);
    return tide_err_set(err, TIDE_EINPUT,
                        "key file '%s' must be a regular file of %d bytes with mode 0600 or 0400",
                        path, TIDE_SECRET_KEY_LEN);
  }
  void *bytes = NULL;
  size_t len = 0;
  rc = tide_secret_read_fd(fd, TIDE_SECRET_KEY_LEN, &bytes, &len, err);
  close(fd);
  if (rc == 0)
    rc = tide_secret_key_from_bytes(bytes, len, out, err);
  tide_secret_free(bytes);
  return rc;
}

/* Values taken out of the environment at start-up, until a caller takes them. */
static const char *const stash_vars[] = {
    "TIDE_SECRET_KEY",
    "TIDE_SECRET_PASSPHRASE",
    "TIDE_SECRET_NEW_KEY",
    "TIDE_SECRET_NEW_PASSPHRASE",
};
#define NSTASH (sizeof stash_vars / sizeof stash_vars[0])
static struct {
  unsigned char *p; /* tide_secret_alloc'd, or NULL */
  size_t len;
} stash[NSTASH];

/* Copies var's value into guarded memory, wipes it in place and unsets it. 1 taken, 0 unset. */
static int take_live(const char *var, void **out, size_t *len)
{
  char *v = getenv(var);
  *out = NULL;
  *len = 0;
  if (!v)
    return 0;
  size_t n = strlen(v);
  unsigned char *p = tide_secret_alloc(n ? n : 1);
  if (p) {
    memcpy(p, v, n);
    *out = p;
    *len = n;
  }
  sodium_memzero(v, n);
  unsetenv(var);
  return p ? 1 : -ENOMEM;
}

int tide_secret_env_stash(tide_err *err)
{
  int rc = 0;
  for (size_t i = 0; i < NSTASH; i++) {
    if (stash[i].p)
      continue;
    void *p;
    size_t n;
    if (take_live(stash_vars[i], &p, &n) < 0)
      rc = tide_err_set(err, -ENOMEM, "cannot keep %s: out of memory", stash_vars[i]);
    stash[i].p = p;
    stash[i].len = n;
  }
  return rc;
}

int tide_secret_env_take(const char *var, void **out, size_t *len, tide_err *err)
{
  for (size_t i = 0; i < NSTASH; i++) {
    if (stash[i].p && strcmp(var, stash_vars[i]) == 0) {
      *out = stash[i].p;
      *len = stash[i].len;
      stash[i].p = NULL;
      stash[i].len = 0;
      return 0;
    }
  }
  int rc = take_live(var, out, len);
  if (rc < 0)
    return tide_err_set(err, -ENOMEM, "cannot read %s: out of memory", var);
  if (rc == 0)
    return tide_err_set(err, -ENOENT, "%s is not set", var);
  return 0;
}

int tide_secret_key_env(const char *var, tide_secret_key **out, tide_err *err)
{
  *out = NULL;
  void *v;
  size_t n;
  int rc = tide_secret_env_take(var, &v, &n, err);
  if (rc < 0)
    return rc;
  unsigned char *k = sodium_malloc(TIDE_SECRET_KEY_LEN);
  if (!k) {
    tide_secret_free(v);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  size_t klen = 0;
  const char *end = NULL;
  int bad = sodium_hex2bin(k, TIDE_SECRET_KEY_LEN, v, n, NULL, &klen, &end) != 0 ||
            klen != TIDE_SECRET_KEY_LEN || end != (const char *)v + n;
  tide_secret_free(v);
  rc = bad ? tide_err_set(err, TIDE_EINPUT, "%s must hold 64 hex digits", var)
           : tide_secret_key_from_bytes(k, klen, out, err);
  sodium_free(k);
  return rc;
}

int tide_secret_key_passphrase(const char *pw, size_t len, const uint8_t *salt, uint64_t ops,
                               size_t mem, tide_secret_key **out, tide_err *err)
{
  *out = NULL;
  if (ops < TIDE_SECRET_KDF_MIN_OPS || mem < TIDE_SECRET_KDF_MIN_MEM)
    return tide_err_set(err, TIDE_EINPUT,
                        "passphrase parameters below the minimum (ops %d, memory %u MiB)",
                        TIDE_SECRET_KDF_MIN_OPS, TIDE_SECRET_KDF_MIN_MEM >> 20);
  if (len == 0)
    return tide_err_set(err, TIDE_EINPUT, "the passphrase is empty");
  int rc = key_alloc(out, err);
  if (rc < 0)
    return rc;
  if (crypto_pwhash((*out)->k, TIDE_SECRET_KEY_LEN, pw, len, salt, ops, mem,
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    tide_secret_key_free(*out);
    *out = NULL;
    return tide_err_set(err, -ENOMEM, "Argon2id needs %zu MiB of memory", mem >> 20);
  }
  key_close(*out);
  return 0;
}

int tide_secret_key_derive(const tide_secret_key *key, uint64_t id, tide_secret_key **out,
                           tide_err *err)
{
  int rc = key_alloc(out, err);
  if (rc < 0)
    return rc;
  crypto_kdf_derive_from_key((*out)->k, TIDE_SECRET_KEY_LEN, id, KDF_CONTEXT, key_open(key));
  key_close(key);
  key_close(*out);
  return 0;
}

void tide_secret_mac(const tide_secret_key *key, const void *data, size_t len,
                     uint8_t out[TIDE_SECRET_MAC_LEN])
{
  crypto_generichash(out, TIDE_SECRET_MAC_LEN, data, len, key_open(key), TIDE_SECRET_KEY_LEN);
  key_close(key);
}

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(tide_secret_mac_state),
               "tide_secret_mac_state is too small for crypto_generichash_state");

void tide_secret_mac_init(const tide_secret_key *key, tide_secret_mac_state *st)
{
  crypto_generichash_init((crypto_generichash_state *)st->opaque, key_open(key),
                          TIDE_SECRET_KEY_LEN, TIDE_SECRET_MAC_LEN);
  key_close(key);
}

void tide_secret_mac_update(tide_secret_mac_state *st, const void *data, size_t len)
{
  crypto_generichash_update((crypto_generichash_state *)st->opaque, data, len);
}

void tide_secret_mac_final(tide_secret_mac_state *st, uint8_t out[TIDE_SECRET_MAC_LEN])
{
  crypto_generichash_final((crypto_generichash_state *)st->opaque, out, TIDE_SECRET_MAC_LEN);
  sodium_memzero(st, sizeof *st);
}

size_t tide_secret_ad(uint8_t *buf, size_t size, const uint8_t uuid[TIDE_SECRET_UUID_LEN],
                      const char *name, size_t name_len, uint64_t version, uint32_t key_id)
{
  size_t magic = sizeof AD_MAGIC - 1;
  size_t need = magic + TIDE_SECRET_UUID_LEN + 2 + name_len + 8 + 4 + 1;
  if (name_len > 0xFFFF || need > size)
    return 0;
  uint8_t *p = buf;
  memcpy(p, AD_MAGIC, magic);
  p += magic;
  memcpy(p, uuid, TIDE_SECRET_UUID_LEN);
  p += TIDE_SECRET_UUID_LEN;
  *p++ = (uint8_t)(name_len >> 8);
  *p++ = (uint8_t)name_len;
  memcpy(p, name, name_len);
  p += name_len;
  for (int i = 7; i >= 0; i--)
    *p++ = (uint8_t)(version >> (8 * i));
  for (int i = 3; i >= 0; i--)
    *p++ = (uint8_t)(key_id >> (8 * i));
  *p++ = TIDE_SECRET_ALG_XCHACHA;
  return need;
}

int tide_secret_seal(const tide_secret_key *key, const uint8_t *ad, size_t ad_len,
                     const void *plain, size_t n, uint8_t *out, tide_err *err)
{
  out[0] = TIDE_SECRET_ALG_XCHACHA;
  uint8_t *nonce = out + 1;
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long clen = 0;
  int rc = crypto_aead_xchacha20poly1305_ietf_encrypt(
      out + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, plain, n, ad, ad_len, NULL,
      nonce, key_open(key));
  key_close(key);
  if (rc != 0)
    return tide_err_set(err, TIDE_ECRYPTO, "cannot encrypt");
  return 0;
}

int tide_secret_open(const tide_secret_key *key, const uint8_t *ad, size_t ad_len,
                     const uint8_t *sealed, size_t n, void *out, tide_err *err)
{
  if (n < TIDE_SECRET_OVERHEAD)
    return tide_err_set(err, TIDE_EINTEGRITY, "sealed value is truncated (%zu bytes)", n);
  if (sealed[0] != TIDE_SECRET_ALG_XCHACHA)
    return tide_err_set(err, TIDE_EINTEGRITY, "unknown algorithm %u", sealed[0]);
  const uint8_t *nonce = sealed + 1;
  const uint8_t *c = nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  unsigned long long mlen = 0;
  /* libsodium checks the tag before writing any plaintext. */
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, c, n - 25, ad, ad_len,
                                                      nonce, key_open(key));
  key_close(key);
  if (rc != 0)
    return tide_err_set(err, TIDE_EINTEGRITY,
                        "integrity check failed: the value was altered, moved or sealed by "
                        "another key");
  return 0;
}

/*
** Plaintexts are small and short-lived, and a sodium_malloc costs an mmap, an mlock and two
** mprotects (about 45 us): a read of a secret would spend most of its time there. So small
** blocks come from slabs: 256 KiB sodium_malloc chunks (locked, guarded at both ends, never in a
** core dump), cut into slots of a few size classes, wiped when freed and kept for reuse. Larger
** blocks get a sodium_malloc of their own. A 16-byte header before each block says which.
*/
#define SLAB_CHUNK (256 * 1024)
#define HDR 16
#define DIRECT 0xFFFFFFFFu

static const size_t slab_class[] = {64, 256, 1024, 4096, 16384};
#define NCLASSES (sizeof slab_class / sizeof slab_class[0])

static struct {
  unsigned char *free; /* freed slots, linked through their first bytes */
  unsigned char *cur;  /* the uncut rest of the newest chunk */
  size_t left;
} slabs[NCLASSES];
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;

static void *slab_take(uint32_t c)
{
  size_t slot = HDR + slab_class[c];
  unsigned char *p = NULL;
  pthread_mutex_lock(&slab_lock);
  if (slabs[c].free) {
    p = slabs[c].free;
    memcpy(&slabs[c].free, p + HDR, sizeof(unsigned char *));
  } else {
    if (slabs[c].left < slot) {
      slabs[c].cur = sodium_malloc(SLAB_CHUNK);
      slabs[c].left = slabs[c].cur ? SLAB_CHUNK : 0;
    }
    if (slabs[c].left >= slot) {
      p = slabs[c].cur;
      slabs[c].cur += slot;
      slabs[c].left -= slot;
    }
  }
  pthread_mutex_unlock(&slab_lock);
  if (p)
    memcpy(p, &c, sizeof c);
  return p ? p + HDR : NULL;
}

void *tide_secret_alloc(size_t n)
{
  if (sodium_init() < 0)
    return NULL;
  for (uint32_t c = 0; c < NCLASSES; c++)
    if (n <= slab_class[c])
      return slab_take(c);
  unsigned char *p = sodium_malloc(HDR + n);
  if (!p)
    return NULL;
  uint32_t direct = DIRECT;
  memcpy(p, &direct, sizeof direct);
  return p + HDR;
}

void tide_secret_free(void *ptr)
{
  if (!ptr)
    return;
  unsigned char *p = (unsigned char *)ptr - HDR;
  uint32_t c;
  memcpy(&c, p, sizeof c);
  if (c == DIRECT) {
    sodium_free(p); /* wipes */
    return;
  }
  sodium_memzero(ptr, slab_class[c]);
  pthread_mutex_lock(&slab_lock);
  memcpy(p + HDR, &slabs[c].free, sizeof(unsigned char *));
  slabs[c].free = p;
  pthread_mutex_unlock(&slab_lock);
}

int tide_secret_read_fd(int fd, size_t max, void **out, size_t *len, tide_err *err)
{
  *out = NULL;
  *len = 0;
  unsigned char *b = tide_secret_alloc(max + 1);
  if (!b)
    return tide_err_set(err, -ENOMEM, "out of memory");
  size_t n = 0;
  while (n <= max) {
    ssize_t r = read(fd, b + n, max + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      tide_secret_free(b);
      return tide_err_set(err, -e, "read: %s", strerror(e));
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > max) {
    tide_secret_free(b);
    return tide_err_set(err, TIDE_ELIMIT, "the value is larger than %zu bytes", max);
  }
  *out = b;
  *len = n;
  return 0;
}
