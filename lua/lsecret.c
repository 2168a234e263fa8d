/*
** "tide._secret": keys, sealing and secret values for stdlib/tide/secrets.lua and params.lua.
**
** A decrypted value never becomes a Lua string by default: it is a "tide.Secret" userdata
** holding sodium guarded memory (locked, no core dump, wiped on free). tostring gives "***",
** concatenation and JSON encoding raise, and reveal() returns the plain string for the rare
** caller that must have it (that string is ordinary Lua memory: it is not wiped).
** Every value opened here is registered in the run-wide mask before it is returned.
**
** Keys ("tide.SecretKey") wrap host/secret.c keys. Argon2id runs on the thread pool.
** The vault ("tide.SecretVault") is the unlocked store's native half: the audit queue and the
** one-call parameter read (see its section below).
*/
#include "lsecret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <sodium.h>
#include <sqlite3.h>

#include "tide/mask.h"
#include "tide/secret.h"
#include "tide/store.h"
#include "tide/trace.h"

#include "lerror.h"
#include "modules.h"
#include "runtime.h"
#include "task.h"

#define KEY_META "tide.SecretKey"
#define VALUE_MAX (64 * 1024 + 1024) /* a SecretString or SecretBinary, plus a little JSON */
#define AD_MAX (64 + 65536)

typedef struct lsecret {
  unsigned char *p; /* sodium_malloc'd, or NULL once freed */
  size_t len;
} lsecret;

typedef struct lkey {
  tide_secret_key *k;
} lkey;

/* ---------------------------------------------------------------------------------------------
** Secret values
*/

const unsigned char *tide_lsecret_bytes(lua_State *L, int idx, size_t *len)
{
  lsecret *s = luaL_testudata(L, idx, TIDE_SECRET_META);
  if (!s || !s->p)
    return NULL;
  *len = s->len;
  return s->p;
}

static lsecret *check_secret(lua_State *L, int idx)
{
  lsecret *s = luaL_checkudata(L, idx, TIDE_SECRET_META);
  if (!s->p)
    luaL_error(L, "secret value used after close");
  return s;
}

/* Pushes a new secret that owns p (guarded memory of len bytes). */
static lsecret *push_owned(lua_State *L, unsigned char *p, size_t len)
{
  lsecret *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->p = p;
  s->len = len;
  luaL_setmetatable(L, TIDE_SECRET_META);
  return s;
}

static unsigned char *guarded(lua_State *L, size_t n)
{
  unsigned char *p = tide_secret_alloc(n);
  if (!p)
    luaL_error(L, "out of memory");
  return p;
}

/* Bytes of a string or a secret argument. */
static const unsigned char *value_arg(lua_State *L, int idx, size_t *len)
{
  const unsigned char *b = tide_lsecret_bytes(L, idx, len);
  if (b)
    return b;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_typeerror(L, idx, "string or secret");
  return (const unsigned char *)lua_tolstring(L, idx, len);
}

/* new(string): a secret holding a copy of string (the string itself stays in Lua). */
static int l_new(lua_State *L)
{
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  unsigned char *p = guarded(L, n);
  memcpy(p, v, n);
  push_owned(L, p, n);
  return 1;
}

static int secret_gc(lua_State *L)
{
  lsecret *s = luaL_checkudata(L, 1, TIDE_SECRET_META);
  tide_secret_free(s->p);
  s->p = NULL;
  s->len = 0;
  return 0;
}

static int secret_tostring(lua_State *L)
{
  lua_pushliteral(L, TIDE_MASK_REPLACEMENT);
  return 1;
}

static int secret_concat(lua_State *L)
{
  return luaL_error(L, "a secret value cannot be concatenated (use :reveal() if you must)");
}

static int secret_len(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)check_secret(L, 1)->len);
  return 1;
}

static int secret_reveal(lua_State *L)
{
  lsecret *s = check_secret(L, 1);
  lua_pushlstring(L, (const char *)s->p, s->len);
  return 1;
}

/* equals(other): constant-time comparison with a string or another secret. */
static int secret_equals(lua_State *L)
{
  lsecret *s = check_secret(L, 1);
  size_t n;
  const unsigned char *o = value_arg(L, 2, &n);
  lua_pushboolean(L, n == s->len && sodium_memcmp(s->p, o, n) == 0);
  return 1;
}

/*
** write_file(path): writes the value into a new file of mode 0600 (refuses an existing one), for
** handing it to a process by file; returns true or the fail triple.
*/
static int secret_write_file(lua_State *L)
{
  lsecret *s = check_secret(L, 1);
  const char *path = luaL_checkstring(L, 2);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return tide_fail(L, -errno, "cannot create '%s': %s", path, strerror(errno));
  size_t off = 0;
  while (off < s->len) {
    ssize_t w = write(fd, s->p + off, s->len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      int e = errno;
      close(fd);
      unlink(path);
      return tide_fail(L, -e, "cannot write '%s': %s", path, strerror(e));
    }
    off += (size_t)w;
  }
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
** Masking
*/

/* mask(value): registers a string or secret in the run-wide mask; returns the count of short lines.
 */
static int l_mask(lua_State *L)
{
  size_t n;
  const unsigned char *v = value_arg(L, 1, &n);
  tide_mask *m = tide_runtime_mask(tide_runtime_get(L));
  if (!m)
    return luaL_error(L, "out of memory");
  tide_err err;
  int rc = tide_mask_add(m, v, n, &err);
  if (rc < 0)
    return tide_fail_err(L, &err);
  lua_pushinteger(L, rc);
  return 1;
}

/* mask_text(string): the string with every registered value replaced by "***". */
static int l_mask_text(lua_State *L)
{
  size_t n, out_len;
  const char *s = luaL_checklstring(L, 1, &n);
  tide_mask *m = tide_runtime_get(L)->mask;
  if (!m || tide_mask_patterns(m) == 0) {
    lua_settop(L, 1);
    return 1;
  }
  char *r = tide_mask_string(m, s, n, &out_len);
  if (!r)
    return luaL_error(L, "out of memory");
  lua_pushlstring(L, r, out_len);
  free(r);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
** Keys
*/

static int push_key(lua_State *L, tide_secret_key *k)
{
  lkey *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->k = k;
  luaL_setmetatable(L, KEY_META);
  return 1;
}

static tide_secret_key *check_key(lua_State *L, int idx)
{
  lkey *box = luaL_checkudata(L, idx, KEY_META);
  if (!box->k)
    luaL_error(L, "key used after close");
  return box->k;
}

static int key_gc(lua_State *L)
{
  lkey *box = luaL_checkudata(L, 1, KEY_META);
  tide_secret_key_free(box->k);
  box->k = NULL;
  return 0;
}

static int key_result(lua_State *L, int rc, tide_secret_key *k, const tide_err *err)
{
  if (rc < 0)
    return tide_fail_err(L, err);
  return push_key(L, k);
}

static int l_key_random(lua_State *L)
{
  tide_secret_key *k;
  tide_err err;
  int rc = tide_secret_key_random(&k, &err);
  return key_result(L, rc, k, &err);
}

/* key_file(path, create) */
static int l_key_file(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  tide_secret_key *k;
  tide_err err;
  int rc = tide_secret_key_file(path, lua_toboolean(L, 2), &k, &err);
  return key_result(L, rc, k, &err);
}

/* key_env(var): the variable is wiped and unset. */
static int l_key_env(lua_State *L)
{
  tide_secret_key *k;
  tide_err err;
  int rc = tide_secret_key_env(luaL_checkstring(L, 1), &k, &err);
  return key_result(L, rc, k, &err);
}

typedef struct kdf_op {
  unsigned char *pw; /* guarded */
  size_t pw_len;
  uint8_t salt[TIDE_SECRET_SALT_LEN];
  uint64_t ops;
  size_t mem;
  tide_secret_key *key;
  tide_err err;
  int rc;
} kdf_op;

static void kdf_free(void *data)
{
  kdf_op *op = data;
  tide_secret_free(op->pw);
  tide_secret_key_free(op->key);
  free(op);
}

static void kdf_work(void *data)
{
  kdf_op *op = data;
  op->rc = tide_secret_key_passphrase((const char *)op->pw, op->pw_len, op->salt, op->ops, op->mem,
                                      &op->key, &op->err);
}

static int kdf_done(lua_State *L, int status, lua_KContext ctx)
{
  tide_task_resumed(L, status);
  kdf_op *op = (kdf_op *)ctx;
  int n;
  if (op->rc < 0) {
    n = tide_fail_err(L, &op->err);
  } else {
    n = push_key(L, op->key);
    op->key = NULL;
  }
  kdf_free(op);
  return n;
}

/* key_passphrase(pw, salt16, ops, mem): Argon2id on the thread pool; blocks the task. */
static int l_key_passphrase(lua_State *L)
{
  size_t pw_len, salt_len;
  const unsigned char *pw = value_arg(L, 1, &pw_len);
  const char *salt = luaL_checklstring(L, 2, &salt_len);
  luaL_argcheck(L, salt_len == TIDE_SECRET_SALT_LEN, 2, "salt must be 16 bytes");
  lua_Integer ops = luaL_checkinteger(L, 3), mem = luaL_checkinteger(L, 4);
  luaL_argcheck(L, ops > 0 && mem > 0, 3, "positive parameters expected");
  tide_task_check_blocking(L, "secret key_passphrase");
  kdf_op *op = calloc(1, sizeof *op);
  if (op)
    op->pw = tide_secret_alloc(pw_len);
  if (!op || !op->pw) {
    free(op);
    return luaL_error(L, "out of memory");
  }
  memcpy(op->pw, pw, pw_len);
  op->pw_len = pw_len;
  memcpy(op->salt, salt, sizeof op->salt);
  op->ops = (uint64_t)ops;
  op->mem = (size_t)mem;
  return tide_task_work(L, "secret key_passphrase", kdf_work, kdf_free, op, kdf_done,
                        (lua_KContext)op);
}

/* key:derive(id) */
static int key_derive(lua_State *L)
{
  tide_secret_key *k = check_key(L, 1), *sub;
  tide_err err;
  int rc = tide_secret_key_derive(k, (uint64_t)luaL_checkinteger(L, 2), &sub, &err);
  return key_result(L, rc, sub, &err);
}

/* key:mac(value): 32 binary bytes over a string or secret. */
static int key_mac(lua_State *L)
{
  tide_secret_key *k = check_key(L, 1);
  size_t n;
  const unsigned char *v = value_arg(L, 2, &n);
  uint8_t mac[TIDE_SECRET_MAC_LEN];
  tide_secret_mac(k, v, n, mac);
  lua_pushlstring(L, (const char *)mac, sizeof mac);
  return 1;
}

/*
** key:chain(prev, records) -> list of MACs: c[i] = mac(c[i-1] .. records[i]) with c[0] = prev.
** Appending a batch of audit records makes the key readable once, not once per record.
*/
static int key_chain(lua_State *L)
{
  tide_secret_key *k = check_key(L, 1);
  size_t prev_len;
  const char *prev = luaL_checklstring(L, 2, &prev_len);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer count = luaL_len(L, 3);
  uint8_t link[TIDE_SECRET_MAC_LEN];
  lua_createtable(L, count > 0 && count < 1 << 20 ? (int)count : 0, 0);
  tide_secret_key_hold(k);
  for (lua_Integer i = 1; i <= count; i++) {
    size_t rec_len;
    lua_geti(L, 3, i);
    const char *rec = lua_tolstring(L, -1, &rec_len);
    if (!rec) {
      tide_secret_key_release(k);
      return luaL_error(L, "chain: record %d is not a string", (int)i);
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, i == 1 ? prev : (const char *)link, i == 1 ? prev_len : sizeof link);
    luaL_addlstring(&b, rec, rec_len);
    luaL_pushresult(&b);
    size_t len;
    const char *data = lua_tolstring(L, -1, &len);
    tide_secret_mac(k, data, len, link);
    lua_pop(L, 2);
    lua_pushlstring(L, (const char *)link, sizeof link);
    lua_seti(L, -2, i);
  }
  tide_secret_key_release(k);
  return 1;
}

/* The associated data from (uuid, name, version, key_id) at idx..idx+3, into buf. */
static size_t ad_args(lua_State *L, int idx, uint8_t *buf, size_t size)
{
  size_t uuid_len, name_len;
  const char *uuid = luaL_checklstring(L, idx, &uuid_len);
  const char *name = luaL_checklstring(L, idx + 1, &name_len);
  lua_Integer version = luaL_checkinteger(L, idx + 2), key_id = luaL_checkinteger(L, idx + 3);
  luaL_argcheck(L, uuid_len == TIDE_SECRET_UUID_LEN, idx, "store id must be 16 bytes");
  luaL_argcheck(L, version >= 0, idx + 2, "version must not be negative");
  luaL_argcheck(L, key_id >= 0 && key_id <= 0xFFFFFFFF, idx + 3, "key id out of range");
  size_t n = tide_secret_ad(buf, size, (const uint8_t *)uuid, name, name_len, (uint64_t)version,
                            (uint32_t)key_id);
  if (n == 0)
    luaL_argerror(L, idx + 1, "name too long");
  return n;
}

/* key:seal(value, uuid, name, version, key_id) -> sealed bytes (a string: ciphertext only) */
static int key_seal(lua_State *L)
{
  tide_secret_key *k = check_key(L, 1);
  size_t n;
  const unsigned char *v = value_arg(L, 2, &n);
  uint8_t *ad = malloc(AD_MAX);
  if (!ad)
    return luaL_error(L, "out of memory");
  size_t adn = ad_args(L, 3, ad, AD_MAX);
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, n + TIDE_SECRET_OVERHEAD);
  tide_err err;
  int rc = tide_secret_seal(k, ad, adn, v, n, out, &err);
  free(ad);
  if (rc < 0)
    return tide_fail_err(L, &err);
  luaL_pushresultsize(&b, n + TIDE_SECRET_OVERHEAD);
  return 1;
}

/* Opens into guarded memory; returns it or NULL with the fail triple pushed. */
static unsigned char *open_sealed(lua_State *L, tide_secret_key *k, size_t *len)
{
  size_t n;
  const uint8_t *sealed = (const uint8_t *)luaL_checklstring(L, 2, &n);
  uint8_t *ad = malloc(AD_MAX);
  if (!ad)
    luaL_error(L, "out of memory");
  size_t adn = ad_args(L, 3, ad, AD_MAX);
  size_t plen = n > TIDE_SECRET_OVERHEAD ? n - TIDE_SECRET_OVERHEAD : 0;
  unsigned char *p = tide_secret_alloc(plen);
  if (!p) {
    free(ad);
    luaL_error(L, "out of memory");
  }
  tide_err err;
  int rc = tide_secret_open(k, ad, adn, sealed, n, p, &err);
  free(ad);
  if (rc < 0) {
    tide_secret_free(p);
    tide_fail_err(L, &err);
    return NULL;
  }
  *len = plen;
  return p;
}

/*
** key:open(sealed, uuid, name, version, key_id [, mask]) -> secret, registered in the run-wide
** mask unless mask is false (a value shorter than the masking minimum is returned unmasked).
*/
static int key_open(lua_State *L)
{
  tide_secret_key *k = check_key(L, 1);
  size_t len;
  unsigned char *p = open_sealed(L, k, &len);
  if (!p)
    return 3;
  push_owned(L, p, len);
  if (lua_isnone(L, 7) || lua_toboolean(L, 7)) {
    tide_mask *m = tide_runtime_mask(tide_runtime_get(L));
    if (m)
      tide_mask_add(m, p, len, NULL);
  }
  return 1;
}

static const luaL_Reg key_methods[] = {
    {"derive", key_derive}, {"mac", key_mac},  {"chain", key_chain}, {"seal", key_seal},
    {"open", key_open},     {"close", key_gc}, {NULL, NULL},
};

/*
** new_data_key(wrap_key, uuid, name, version, key_id) -> key, sealed: a random data key and its
** bytes sealed under wrap_key; open_data_key(wrap_key, sealed, uuid, name, version, key_id) ->
** key. The plain key bytes exist only in guarded memory.
*/
static int l_new_data_key(lua_State *L)
{
  tide_secret_key *wrap = check_key(L, 1);
  uint8_t *ad = malloc(AD_MAX);
  if (!ad)
    return luaL_error(L, "out of memory");
  size_t adn = ad_args(L, 2, ad, AD_MAX);
  unsigned char *raw = guarded(L, TIDE_SECRET_KEY_LEN);
  randombytes_buf(raw, TIDE_SECRET_KEY_LEN);
  tide_secret_key *dek = NULL;
  tide_err err;
  uint8_t sealed[TIDE_SECRET_KEY_LEN + TIDE_SECRET_OVERHEAD];
  int rc = tide_secret_key_from_bytes(raw, TIDE_SECRET_KEY_LEN, &dek, &err);
  if (rc == 0)
    rc = tide_secret_seal(wrap, ad, adn, raw, TIDE_SECRET_KEY_LEN, sealed, &err);
  tide_secret_free(raw);
  free(ad);
  if (rc < 0) {
    tide_secret_key_free(dek);
    return tide_fail_err(L, &err);
  }
  push_key(L, dek);
  lua_pushlstring(L, (const char *)sealed, sizeof sealed);
  return 2;
}

static int l_open_data_key(lua_State *L)
{
  tide_secret_key *wrap = check_key(L, 1);
  size_t len;
  unsigned char *p = open_sealed(L, wrap, &len);
  if (!p)
    return 3;
  tide_secret_key *dek = NULL;
  tide_err err;
  int rc = tide_secret_key_from_bytes(p, len, &dek, &err);
  tide_secret_free(p);
  if (rc < 0)
    return tide_fail(L, TIDE_EINTEGRITY, "a data key has the wrong size");
  return push_key(L, dek);
}

/* ---------------------------------------------------------------------------------------------
** The unlocked store ("tide.SecretVault"): parameter reads and the audit queue
**
** A build reads the same parameters thousands of times, so params.get of a latest version is
** one native call: one prepared query returns the head and the latest version in one row, the
** head MAC is checked, the value opened into guarded memory and registered for masking, and its
** audit record appended to the journal before the value is returned, with no intermediate Lua
** tables. A read's record goes to the journal (one write(2), durable against the death of the
** process); other records are queued and written at once by flush, after the journal's records,
** chained under the audit key. flush also runs on vault.lua's timer, at unlock and at close.
**
** The keys used here stay readable (tide_secret_key_hold) until the next flush or tick and
** never longer than HOLD_NS across reads: a pair of mprotects per batch of reads instead of two
** per read. The vault holds references to its keys (user values), so a held key is never freed
** under it; a key closed explicitly is skipped on release (its box is emptied).
**
** Two caches skip work whose result cannot differ: a head whose bytes and stored MAC equal one
** already verified under this vault's audit key verifies again, and a value whose
** nonce and tag equal one already opened (under a key and associated data that checked) is the
** same plaintext, already registered in the same (referenced) mask.
*/
#define VAULT_META "tide.SecretVault"
#define HOLD_NS 200000000ull /* keys readable at most this long across reads */
#define MAX_HELD 8
#define AUDIT_GENESIS "tide audit genesis"
#define INSERT_ROWS 16 /* records per INSERT statement */
#define HEAD_SLOTS 64
#define SEEN_SLOTS 256
#define SEEN_LEN (24 + 16) /* nonce and tag */

enum { F_STEP, F_OP, F_KIND, F_NAME, F_VERSION, F_OUTCOME, NFIELDS };
enum { S_GET, S_LAST, S_INSERT, S_INSERT_MANY, S_HEAD, S_MARK_GET, S_MARK_SET, NSTMTS };

static const char *const vault_sql[NSTMTS] = {
    /* Columns 11 to 14 complete the head as vault.lua's PARAM_HEAD_SQL reads it; the last two
    ** aggregate every label and version, so they are computed only when ?2 asks (CASE
    ** evaluates its branch lazily): when the head cache cannot vouch for the row. */
    "SELECT p.version, p.tier, p.policies IS NOT NULL, p.head_mac, v.type, v.key_id, v.ct, "
    "v.value_mac, v.description, v.modified_us, (SELECT group_concat(label) FROM param_labels l "
    "WHERE l.name = p.name AND l.version = p.version), p.type, p.policies, "
    "CASE WHEN ?2 THEN (SELECT group_concat(x, ',') FROM (SELECT l.label || '=' || l.version "
    "AS x FROM param_labels l WHERE l.name = p.name ORDER BY l.label)) END, "
    "CASE WHEN ?2 THEN (SELECT group_concat(x, ',') FROM (SELECT w.version || '=' || w.type "
    "AS x FROM param_versions w WHERE w.name = p.name ORDER BY w.version)) END "
    "FROM params p JOIN param_versions v "
    "ON v.name = p.name AND v.version = p.version WHERE p.name = ?1",
    "SELECT seq, chain FROM secret_audit ORDER BY seq DESC LIMIT 1",
    NULL, /* built by insert_sql */
    NULL,
    "INSERT INTO secret_meta (k, v) VALUES ('audit_head', ?) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    "SELECT v FROM secret_meta WHERE k = 'journal_mark'",
    "INSERT INTO secret_meta (k, v) VALUES ('journal_mark', ?) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
};

typedef struct head_slot {
  char *name; /* malloc'd, or NULL */
  size_t name_len;
  int64_t version;
  uint32_t data_version; /* of the database when the head was verified */
  uint8_t mac[TIDE_SECRET_MAC_LEN];
} head_slot;

typedef struct vault {
  uint8_t uuid[TIDE_SECRET_UUID_LEN];
  lkey *audit; /* user value 1 keeps it alive; user value 2 is id -> data key */
  sqlite3 *db;
  sqlite3_stmt *stmt[NSTMTS];
  /* Queued records, each as record_bytes() in vault.lua lays it out from ts_us on (the seq is
  ** given when written): i8 ts_us, i8 run_id, s2 step, op, kind, name, version, outcome,
  ** s1 value_mac. */
  unsigned char *q;
  size_t q_len, q_size, nqueue, last_off;
  int armed; /* the caller was asked to call tick() */
  lkey *held[MAX_HELD];
  int nheld;
  uint64_t held_since_ns;
  unsigned char *buf; /* scratch for heads and associated data */
  size_t buf_size;
  head_slot heads[HEAD_SLOTS];
  tide_mask *mask;     /* referenced: the mask the seen values are registered in */
  char *journal_path;  /* malloc'd, or NULL: no journal, reads are refused */
  int jfd;             /* -1 until the first append or ingest opens it */
  int journal_dirty;   /* appended since the last ingest */
  int jshared;         /* holds the appender's lease: flock(LOCK_SH) on jfd */
  uint8_t jnonce[8];   /* random per vault; with jcount, makes every journal frame unique */
  unsigned char *jkey; /* guarded memory: the frames' MAC key, derived on first use */
  uint64_t jcount;
  uint8_t seen[SEEN_SLOTS][SEEN_LEN];
  uint8_t seen_used[SEEN_SLOTS];
  int closed;
} vault;

static uint64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static vault *check_vault(lua_State *L)
{
  vault *v = luaL_checkudata(L, 1, VAULT_META);
  if (v->closed)
    luaL_error(L, "secret vault used after close");
  return v;
}

static int grow_buf(unsigned char **b, size_t *size, size_t n)
{
  if (n <= *size)
    return 0;
  size_t s = *size ? *size : 1024;
  while (s < n)
    s *= 2;
  unsigned char *p = realloc(*b, s);
  if (!p)
    return -ENOMEM;
  *b = p;
  *size = s;
  return 0;
}

static unsigned char *vault_buf(vault *v, size_t n)
{
  return grow_buf(&v->buf, &v->buf_size, n) < 0 ? NULL : v->buf;
}

static void release_keys(vault *v)
{
  for (int i = 0; i < v->nheld; i++)
    if (v->held[i]->k)
      tide_secret_key_release(v->held[i]->k);
  v->nheld = 0;
}

/* Makes box's key readable until the next release_keys. */
static void hold_key(vault *v, lkey *box)
{
  for (int i = 0; i < v->nheld; i++)
    if (v->held[i] == box)
      return;
  if (v->nheld == MAX_HELD)
    release_keys(v);
  if (v->nheld == 0)
    v->held_since_ns = mono_ns();
  tide_secret_key_hold(box->k);
  v->held[v->nheld++] = box;
}

static char *insert_sql(int rows)
{
  static const char head[] =
      "INSERT INTO secret_audit (seq, ts_us, run_id, step, op, kind, name, "
      "version, outcome, value_mac, chain) VALUES ";
  static const char row[] = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
  char *sql = malloc(sizeof head + (size_t)rows * sizeof row);
  if (!sql)
    return NULL;
  char *p = sql;
  memcpy(p, head, sizeof head - 1);
  p += sizeof head - 1;
  for (int i = 0; i < rows; i++) {
    if (i > 0)
      *p++ = ',';
    memcpy(p, row, sizeof row - 1);
    p += sizeof row - 1;
  }
  *p = '\0';
  return sql;
}

/* The store's connection, with the vault's statement prepared for it; NULL with err set. */
static sqlite3_stmt *vault_stmt(lua_State *L, vault *v, int which, tide_err *err)
{
  tide_store *store = tide_runtime_get(L)->store;
  sqlite3 *db = store ? tide_store_db(store) : NULL;
  if (!db) {
    tide_err_set(err, TIDE_ESQL, "the store is not open");
    return NULL;
  }
  if (db != v->db) {
    for (int i = 0; i < NSTMTS; i++) {
      sqlite3_finalize(v->stmt[i]);
      v->stmt[i] = NULL;
    }
    v->db = db;
  }
  if (!v->stmt[which]) {
    char *built = NULL;
    if (which == S_INSERT || which == S_INSERT_MANY) {
      built = insert_sql(which == S_INSERT ? 1 : INSERT_ROWS);
      if (!built) {
        tide_err_set(err, -ENOMEM, "out of memory");
        return NULL;
      }
    }
    int rc = sqlite3_prepare_v3(db, built ? built : vault_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                &v->stmt[which], NULL);
    free(built);
    if (rc != SQLITE_OK) {
      tide_err_set(err, TIDE_ESQL, "%s", sqlite3_errmsg(db));
      return NULL;
    }
  }
  return v->stmt[which];
}

static int sql_err(sqlite3 *db, tide_err *err)
{
  int rc = sqlite3_extended_errcode(db) & 0xff;
  return tide_err_set(err, rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? TIDE_ECORRUPT : TIDE_ESQL,
                      "%s", sqlite3_errmsg(db));
}

static void put_u64(unsigned char *p, uint64_t x)
{
  for (int i = 7; i >= 0; i--)
    *p++ = (unsigned char)(x >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
  uint64_t x = 0;
  for (int i = 0; i < 8; i++)
    x = x << 8 | p[i];
  return x;
}

/* A queued record, parsed back for its INSERT. */
typedef struct rec_view {
  int64_t ts_us, run_id;
  const unsigned char *f[NFIELDS];
  size_t n[NFIELDS];
  const unsigned char *mac;
  size_t mac_len;
  size_t len; /* of its bytes in the queue */
} rec_view;

static void parse_rec(const unsigned char *start, rec_view *r)
{
  const unsigned char *p = start;
  r->ts_us = (int64_t)get_u64(p);
  r->run_id = (int64_t)get_u64(p + 8);
  p += 16;
  for (int i = 0; i < NFIELDS; i++) {
    r->n[i] = (size_t)p[0] << 8 | p[1];
    r->f[i] = p + 2;
    p += 2 + r->n[i];
  }
  r->mac_len = *p;
  r->mac = p + 1;
  p += 1 + r->mac_len;
  r->len = (size_t)(p - start);
}

static int bind_rec(sqlite3_stmt *ins, int first, int64_t seq, const rec_view *r,
                    const uint8_t *chain)
{
  int rc = sqlite3_bind_int64(ins, first, seq);
  rc |= sqlite3_bind_int64(ins, first + 1, r->ts_us);
  rc |= sqlite3_bind_int64(ins, first + 2, r->run_id);
  for (int i = 0; i < NFIELDS; i++)
    rc |= sqlite3_bind_text(ins, first + 3 + i, (const char *)r->f[i], (int)r->n[i], SQLITE_STATIC);
  rc |= sqlite3_bind_blob(ins, first + 9, r->mac, (int)r->mac_len, SQLITE_STATIC);
  rc |= sqlite3_bind_blob(ins, first + 10, chain, TIDE_SECRET_MAC_LEN, SQLITE_STATIC);
  return rc;
}

/*
** The audit journal: a read's record is appended to $TIDE_HOME/audit.journal with one write(2)
** before its value is released, and ingested into secret_audit later (write_queue). A frame is
** "TAJ1", u32 record length, a 16-byte nonce (random per vault, then a counter: every frame is
** unique), the record as queued, and a 128-bit MAC (journal_mac) over everything after the
** magic, under a key derived from the audit key, the domain text and the store id.
**
** A read costs one write(2) and no lock call: an appender takes flock(LOCK_SH) once, as a lease
** kept until its next flush. An ingest (under the database write lock, so one at a time) reads
** every complete frame; it truncates the file after its commit only when it got
** flock(LOCK_EX | LOCK_NB), that is when no appender holds a lease, so no append can be lost.
** The ingested prefix is remembered in secret_meta (journal_mark: its end offset and last MAC)
** in the ingesting transaction, so a file not truncated (leases held, a crash, or an ingest
** inside a caller's transaction) never has a record ingested twice. A frame cut short at the end
** is an append in flight or one that died with its process; anything else that does not check
** stops the ingest with EINTEGRITY.
*/
#define JOURNAL_MAGIC "TAJ1"
#define JOURNAL_DOMAIN "tide audit journal v1"
#define JOURNAL_HEAD 24
#define JOURNAL_MAX_REC 0x100000u
#define JOURNAL_MAC_LEN crypto_shorthash_siphashx24_BYTES

static void put_u32(unsigned char *p, uint32_t x)
{
  for (int i = 3; i >= 0; i--)
    *p++ = (unsigned char)(x >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
** The frame MAC: SipHash-2-4 with a 128-bit tag (a PRF, so a MAC) under a key derived from the
** audit key, the domain and the store id. BLAKE2b under the audit key itself cost 0.65 us a
** read, a tenth of it; this costs a fifth of that. The derived key lives in guarded memory
** (locked, wiped) from the first append to the vault's close; 0 or -ENOMEM.
*/
static int journal_mac(vault *v, const unsigned char *frame, size_t rec_len,
                       uint8_t out[JOURNAL_MAC_LEN])
{
  if (!v->jkey) {
    unsigned char *k = tide_secret_alloc(crypto_shorthash_siphashx24_KEYBYTES);
    if (!k)
      return -ENOMEM;
    unsigned char in[sizeof JOURNAL_DOMAIN - 1 + TIDE_SECRET_UUID_LEN];
    uint8_t full[TIDE_SECRET_MAC_LEN];
    memcpy(in, JOURNAL_DOMAIN, sizeof JOURNAL_DOMAIN - 1);
    memcpy(in + sizeof JOURNAL_DOMAIN - 1, v->uuid, TIDE_SECRET_UUID_LEN);
    hold_key(v, v->audit);
    tide_secret_mac(v->audit->k, in, sizeof in, full);
    memcpy(k, full, crypto_shorthash_siphashx24_KEYBYTES);
    sodium_memzero(full, sizeof full);
    v->jkey = k;
  }
  crypto_shorthash_siphashx24(out, frame + 4, 4 + 16 + rec_len, v->jkey);
  return 0;
}

static int journal_open(vault *v, tide_err *err)
{
  if (v->jfd >= 0)
    return 0;
  if (!v->journal_path)
    return tide_err_set(err, TIDE_EINPUT, "the secret vault has no audit journal");
  int fd = open(v->journal_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  struct stat sb;
  if (fd >= 0 && (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))) {
    close(fd);
    fd = -1;
    errno = EISDIR;
  }
  if (fd < 0)
    return tide_err_set(err, -errno, "cannot open the audit journal %s: %s", v->journal_path,
                        strerror(errno));
  v->jfd = fd;
  return 0;
}

static int journal_lock(vault *v, int op)
{
  while (flock(v->jfd, op) < 0)
    if (errno != EINTR)
      return -errno;
  return 0;
}

/* Appends one record (len bytes as queued) to the journal: 0, or a negative code with err set;
** then nothing of it stays in the file. */
static int journal_append(vault *v, const unsigned char *rec, size_t len, tide_err *err)
{
  if (journal_open(v, err) < 0)
    return err->code;
  if (len > JOURNAL_MAX_REC)
    return tide_err_set(err, TIDE_EINPUT, "audit record too long");
  size_t n = JOURNAL_HEAD + len + JOURNAL_MAC_LEN;
  unsigned char *f = vault_buf(v, n);
  if (!f)
    return tide_err_set(err, -ENOMEM, "out of memory");
  memcpy(f, JOURNAL_MAGIC, 4);
  put_u32(f + 4, (uint32_t)len);
  memcpy(f + 8, v->jnonce, sizeof v->jnonce);
  put_u64(f + 16, ++v->jcount);
  memcpy(f + JOURNAL_HEAD, rec, len);
  if (journal_mac(v, f, len, f + JOURNAL_HEAD + len) < 0)
    return tide_err_set(err, -ENOMEM, "out of memory");
  if (!v->jshared) {
    int rc = journal_lock(v, LOCK_SH);
    if (rc < 0)
      return tide_err_set(err, rc, "cannot lock the audit journal %s: %s", v->journal_path,
                          strerror(-rc));
    v->jshared = 1;
  }
  ssize_t w;
  do
    w = write(v->jfd, f, n);
  while (w < 0 && errno == EINTR);
  int e = w < 0 ? errno : EIO;
  if (w > 0 && (size_t)w < n) {
    /* Cut the piece off again when no other appender holds a lease and it is still the end;
    ** else it stays, and stops the ingests until the journal is repaired (docs/secrets.md). */
    v->jshared = 0; /* a conversion gives the lease up first, even when it fails */
    if (flock(v->jfd, LOCK_EX | LOCK_NB) == 0) {
      off_t end = lseek(v->jfd, 0, SEEK_END);
      unsigned char tail[256];
      size_t k = (size_t)w < sizeof tail ? (size_t)w : sizeof tail;
      if (end >= w && pread(v->jfd, tail, k, end - w) == (ssize_t)k && memcmp(tail, f, k) == 0 &&
          ftruncate(v->jfd, end - w) < 0)
        e = errno;
      journal_lock(v, LOCK_UN);
    }
  }
  if (w != (ssize_t)n)
    return tide_err_set(err, -e, "cannot append to the audit journal %s: %s", v->journal_path,
                        w < 0 ? strerror(e) : "short write");
  v->journal_dirty = 1;
  return 0;
}

/* true when the journal file holds something (this process's appends, or another's) */
static int journal_pending(vault *v)
{
  struct stat sb;
  if (v->jfd >= 0)
    return fstat(v->jfd, &sb) == 0 && sb.st_size > 0;
  return v->journal_path && stat(v->journal_path, &sb) == 0 && S_ISREG(sb.st_mode) &&
         sb.st_size > 0;
}

/*
** Reads the journal (locked by the caller) past the ingested mark: *out (malloc'd) holds the
** records as queued, *count of them; *end and mark give the new mark (end offset, last MAC).
** EINTEGRITY for a frame that does not check; a frame cut short at the end (a write that died
** with its process) is left out.
*/
static int journal_read(vault *v, sqlite3_stmt *mark_get, unsigned char **out, size_t *out_len,
                        size_t *count, uint64_t *end, uint8_t mark[JOURNAL_MAC_LEN], tide_err *err)
{
  *out = NULL;
  *out_len = *count = 0;
  *end = 0;
  struct stat sb;
  if (fstat(v->jfd, &sb) < 0)
    return tide_err_set(err, -errno, "audit journal %s: %s", v->journal_path, strerror(errno));
  if (sb.st_size == 0)
    return 0;
  size_t size = (size_t)sb.st_size;
  unsigned char *file = malloc(size);
  if (!file)
    return tide_err_set(err, -ENOMEM, "out of memory");
  size_t got = 0;
  while (got < size) {
    ssize_t r = pread(v->jfd, file + got, size - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  size = got;
  uint64_t mark_end = 0;
  uint8_t mark_mac[JOURNAL_MAC_LEN] = {0};
  sqlite3_reset(mark_get);
  if (sqlite3_step(mark_get) == SQLITE_ROW &&
      sqlite3_column_bytes(mark_get, 0) == 8 + JOURNAL_MAC_LEN) {
    const unsigned char *m = sqlite3_column_blob(mark_get, 0);
    mark_end = get_u64(m);
    memcpy(mark_mac, m + 8, sizeof mark_mac);
  }
  sqlite3_reset(mark_get);
  unsigned char *recs = malloc(size);
  if (!recs) {
    free(file);
    return tide_err_set(err, -ENOMEM, "out of memory");
  }
  size_t off = 0, rlen = 0, n = 0;
  int rc = 0;
  while (off + JOURNAL_HEAD <= size) {
    const unsigned char *f = file + off;
    uint32_t len = get_u32(f + 4);
    if (memcmp(f, JOURNAL_MAGIC, 4) != 0 || len > JOURNAL_MAX_REC || len < 16 + NFIELDS * 2 + 1) {
      rc = tide_err_set(err, TIDE_EINTEGRITY,
                        "audit journal %s: the record at byte %zu is not a journal record",
                        v->journal_path, off);
      break;
    }
    size_t flen = JOURNAL_HEAD + len + JOURNAL_MAC_LEN;
    if (off + flen > size)
      break; /* cut short: never released */
    uint8_t mac[JOURNAL_MAC_LEN];
    if (journal_mac(v, f, len, mac) < 0) {
      rc = tide_err_set(err, -ENOMEM, "out of memory");
      break;
    }
    if (sodium_memcmp(mac, f + JOURNAL_HEAD + len, sizeof mac) != 0) {
      rc =
          tide_err_set(err, TIDE_EINTEGRITY, "audit journal %s: the record at byte %zu was altered",
                       v->journal_path, off);
      break;
    }
    /* The record must parse as the queue lays it out, within its length. */
    rec_view r;
    const unsigned char *rec = f + JOURNAL_HEAD;
    size_t need = 16;
    int ok = 1;
    for (int i = 0; ok && i < NFIELDS; i++) {
      if (need + 2 > len) {
        ok = 0;
        break;
      }
      need += 2 + ((size_t)rec[need] << 8 | rec[need + 1]);
    }
    if (ok && (need + 1 > len || need + 1 + rec[need] != len || rec[need] > TIDE_SECRET_MAC_LEN))
      ok = 0;
    if (!ok) {
      rc = tide_err_set(err, TIDE_EINTEGRITY,
                        "audit journal %s: the record at byte %zu is malformed", v->journal_path,
                        off);
      break;
    }
    parse_rec(rec, &r);
    memcpy(recs + rlen, rec, len);
    rlen += len;
    n++;
    off += flen;
    memcpy(mark, mac, JOURNAL_MAC_LEN);
    if (off == mark_end && sodium_memcmp(mac, mark_mac, sizeof mac) == 0) {
      rlen = 0; /* everything so far was ingested before */
      n = 0;
    }
  }
  free(file);
  if (rc < 0) {
    free(recs);
    return rc;
  }
  *out = recs;
  *out_len = rlen;
  *count = n;
  *end = off;
  return 0;
}

/* Writes the journal's records not yet ingested, then the queued records, chained, and the
** pinned head, in one transaction (a savepoint inside the caller's); the journal is truncated
** after a commit of its own. On failure nothing is written and the queue is kept. */
static int write_queue(lua_State *L, vault *v, tide_err *err)
{
  sqlite3_stmt *last = vault_stmt(L, v, S_LAST, err), *one = NULL, *many = NULL, *head = NULL;
  if (last)
    one = vault_stmt(L, v, S_INSERT, err);
  if (one)
    many = vault_stmt(L, v, S_INSERT_MANY, err);
  if (many)
    head = vault_stmt(L, v, S_HEAD, err);
  sqlite3_stmt *mark_get = head ? vault_stmt(L, v, S_MARK_GET, err) : NULL;
  sqlite3_stmt *mark_set = mark_get ? vault_stmt(L, v, S_MARK_SET, err) : NULL;
  if (!mark_set)
    return err->code;
  if (!v->audit->k)
    return tide_err_set(err, TIDE_ECRYPTO, "the audit key was closed");
  sqlite3 *db = v->db;
  int nested = !sqlite3_get_autocommit(db);
  if (sqlite3_exec(db, nested ? "SAVEPOINT tide_audit" : "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
      SQLITE_OK)
    return sql_err(db, err);
  int rc = 0;
  /* Under the write lock: the journal's records first, in their order, then the queue. A journal
  ** that cannot be opened holds nothing (its reads were refused). */
  tide_err ignored;
  int jopen = journal_open(v, &ignored) == 0, jexcl = 0;
  if (jopen && !nested) {
    v->jshared = 0; /* a conversion gives the lease up first, even when it fails */
    jexcl = flock(v->jfd, LOCK_EX | LOCK_NB) == 0;
  }
  unsigned char *jrecs = NULL, *all = v->q;
  size_t jlen = 0, jcount = 0;
  uint64_t jend = 0;
  uint8_t jmark[JOURNAL_MAC_LEN];
  if (jopen)
    rc = journal_read(v, mark_get, &jrecs, &jlen, &jcount, &jend, jmark, err);
  if (rc == 0 && jcount > 0) {
    all = realloc(jrecs, jlen + v->q_len);
    if (!all) {
      all = v->q;
      rc = tide_err_set(err, -ENOMEM, "out of memory");
    } else {
      jrecs = all;
      if (v->q_len)
        memcpy(all + jlen, v->q, v->q_len);
    }
  }
  size_t total = rc == 0 ? jcount + v->nqueue : 0;
  /* chains[k] for the k-th record of the current INSERT; bound SQLITE_STATIC until its step. */
  uint8_t chains[INSERT_ROWS][TIDE_SECRET_MAC_LEN], chain[TIDE_SECRET_MAC_LEN];
  int64_t seq = 0;
  sqlite3_reset(last);
  int step = sqlite3_step(last);
  if (step == SQLITE_ROW) {
    seq = sqlite3_column_int64(last, 0);
    const void *c = sqlite3_column_blob(last, 1);
    if (!c || sqlite3_column_bytes(last, 1) != TIDE_SECRET_MAC_LEN)
      rc = tide_err_set(err, TIDE_EINTEGRITY, "audit log: record %lld has no valid chain",
                        (long long)seq);
    else
      memcpy(chain, c, sizeof chain);
  } else if (step != SQLITE_DONE) {
    rc = sql_err(db, err);
  }
  int genesis = step == SQLITE_DONE;
  sqlite3_reset(last);
  tide_secret_mac_state keyed, st;
  hold_key(v, v->audit);
  tide_secret_mac_init(v->audit->k, &keyed);
  size_t off = 0;
  for (size_t i = 0; rc == 0 && i < total;) {
    size_t rows = total - i >= INSERT_ROWS ? INSERT_ROWS : 1;
    sqlite3_stmt *ins = rows == INSERT_ROWS ? many : one;
    sqlite3_reset(ins);
    for (size_t k = 0; k < rows; k++, i++) {
      rec_view r;
      parse_rec(all + off, &r);
      seq++;
      unsigned char seq_be[8];
      put_u64(seq_be, (uint64_t)seq);
      memcpy(&st, &keyed, sizeof st);
      if (genesis)
        tide_secret_mac_update(&st, AUDIT_GENESIS, sizeof AUDIT_GENESIS - 1);
      else
        tide_secret_mac_update(&st, chain, sizeof chain);
      genesis = 0;
      tide_secret_mac_update(&st, seq_be, sizeof seq_be);
      tide_secret_mac_update(&st, all + off, r.len);
      tide_secret_mac_final(&st, chain);
      memcpy(chains[k], chain, sizeof chain);
      if (bind_rec(ins, 1 + (int)k * 11, seq, &r, chains[k]) != SQLITE_OK)
        rc = sql_err(db, err);
      off += r.len;
    }
    if (rc == 0 && sqlite3_step(ins) != SQLITE_DONE)
      rc = sql_err(db, err);
    sqlite3_reset(ins);
    sqlite3_clear_bindings(ins);
  }
  sodium_memzero(&keyed, sizeof keyed);
  sodium_memzero(&st, sizeof st);
  if (rc == 0 && jcount > 0) {
    uint8_t m[8 + JOURNAL_MAC_LEN];
    put_u64(m, jend);
    memcpy(m + 8, jmark, sizeof jmark);
    sqlite3_reset(mark_set);
    if (sqlite3_bind_blob(mark_set, 1, m, sizeof m, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_step(mark_set) != SQLITE_DONE)
      rc = sql_err(db, err);
    sqlite3_reset(mark_set);
  }
  if (rc == 0 && total > 0) {
    uint8_t pin[8 + TIDE_SECRET_MAC_LEN], mac[TIDE_SECRET_MAC_LEN];
    put_u64(pin, (uint64_t)seq);
    memcpy(pin + 8, chain, sizeof chain);
    tide_secret_mac(v->audit->k, pin, sizeof pin, mac);
    sqlite3_reset(head);
    if (sqlite3_bind_blob(head, 1, mac, sizeof mac, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(head) != SQLITE_DONE)
      rc = sql_err(db, err);
    sqlite3_reset(head);
  }
  if (rc == 0 &&
      sqlite3_exec(db, nested ? "RELEASE tide_audit" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = sql_err(db, err);
  if (rc < 0)
    sqlite3_exec(db, nested ? "ROLLBACK TO tide_audit; RELEASE tide_audit" : "ROLLBACK", NULL, NULL,
                 NULL);
  /* Committed for good (not inside a caller's transaction that may still roll back): the
  ** journal's records are in the log, and no append happened since (no lease, the lock). */
  if (rc == 0 && !nested)
    v->journal_dirty = 0; /* this process's appends were complete, so they are in */
  if (rc == 0 && jexcl)
    (void)!ftruncate(v->jfd, 0); /* on failure the mark still keeps them from a second ingest */
  if (jexcl)
    journal_lock(v, LOCK_UN);
  free(jrecs);
  return rc;
}

/* Flushes the queue; afterwards the keys are protected again. 0 or a negative code. */
static int vault_flush(lua_State *L, vault *v, tide_err *err)
{
  int rc = 0;
  if (v->nqueue > 0 || v->journal_dirty || journal_pending(v)) {
    rc = write_queue(L, v, err);
    if (rc == 0) {
      v->q_len = 0;
      v->nqueue = 0;
    }
  }
  release_keys(v);
  return rc;
}

/*
** Queues a record of the fields step, op, kind, name, version, outcome and a value MAC, from the
** calling task's run. 0, or -ENOMEM (also for a field too long for the record format).
*/
static int queue_rec(lua_State *L, vault *v, const char *const f[NFIELDS], const size_t n[NFIELDS],
                     const void *mac, size_t mac_len)
{
  size_t len = 16 + 1 + mac_len;
  for (int i = 0; i < NFIELDS; i++) {
    if (n[i] > 0xFFFF)
      return -ENOMEM;
    len += 2 + n[i];
  }
  if (mac_len > TIDE_SECRET_MAC_LEN || grow_buf(&v->q, &v->q_size, v->q_len + len) < 0)
    return -ENOMEM;
  unsigned char *p = v->q + v->q_len;
  put_u64(p, (uint64_t)tide_now_us());
  put_u64(p + 8, (uint64_t)tide_runtime_get(L)->run_id);
  p += 16;
  for (int i = 0; i < NFIELDS; i++) {
    *p++ = (unsigned char)(n[i] >> 8);
    *p++ = (unsigned char)n[i];
    memcpy(p, f[i], n[i]);
    p += n[i];
  }
  *p++ = (unsigned char)mac_len;
  memcpy(p, mac, mac_len);
  v->last_off = v->q_len;
  v->q_len += len;
  v->nqueue++;
  return 0;
}

/* The step an audit record names: the span of the calling task, as text ("" outside one). */
static size_t step_text(lua_State *L, char *buf, size_t size)
{
  uint64_t span = tide_task_span(L);
  if (span == 0)
    return 0;
  int n = snprintf(buf, size, "%llu", (unsigned long long)span);
  return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/*
** After a record other than a read's was queued: writes it at once, with the journal's records
** before it. On failure the record is dropped (what is denied was not released).
*/
static int settle(lua_State *L, vault *v, tide_err *err)
{
  int rc = vault_flush(L, v, err);
  if (rc < 0) {
    v->q_len = v->last_off;
    v->nqueue--;
  }
  return rc;
}

/*
** A read's record, just queued: appended to the journal (durable once write(2) returned) and
** taken off the queue. On failure err says why and the read must be refused.
*/
static int journal_read_rec(vault *v, tide_err *err)
{
  int rc = journal_append(v, v->q + v->last_off, v->q_len - v->last_off, err);
  v->q_len = v->last_off;
  v->nqueue--;
  return rc;
}

/* true when the caller must arrange a tick() within the flush interval */
static int need_tick(vault *v)
{
  if (v->armed || (v->nqueue == 0 && v->nheld == 0 && !v->journal_dirty))
    return 0;
  v->armed = 1;
  return 1;
}

/* vault(uuid16, audit_key [, journal_path]): without a journal, reads are refused. */
static int l_vault(lua_State *L)
{
  size_t uuid_len;
  const char *uuid = luaL_checklstring(L, 1, &uuid_len);
  luaL_argcheck(L, uuid_len == TIDE_SECRET_UUID_LEN, 1, "store id must be 16 bytes");
  check_key(L, 2);
  const char *journal = luaL_optstring(L, 3, NULL);
  char *journal_copy = journal ? strdup(journal) : NULL;
  if (journal && !journal_copy)
    return luaL_error(L, "out of memory");
  vault *v = lua_newuserdatauv(L, sizeof *v, 2);
  memset(v, 0, sizeof *v);
  v->jfd = -1;
  v->journal_path = journal_copy;
  randombytes_buf(v->jnonce, sizeof v->jnonce);
  memcpy(v->uuid, uuid, TIDE_SECRET_UUID_LEN);
  v->audit = lua_touserdata(L, 2);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 2);
  luaL_setmetatable(L, VAULT_META);
  return 1;
}

/* v:add_key(id, key): the data key id, for param_get. */
static int vault_add_key(lua_State *L)
{
  check_vault(L);
  lua_Integer id = luaL_checkinteger(L, 2);
  check_key(L, 3);
  lua_getiuservalue(L, 1, 2);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, id);
  return 0;
}

/* Splits a group_concat of labels into a sorted list at the top of the stack. */
static void push_labels(lua_State *L, const char *s, size_t n)
{
  lua_newtable(L);
  const char *parts[16];
  size_t lens[16];
  int count = 0;
  for (size_t i = 0, start = 0; s && i <= n; i++) {
    if (i == n || s[i] == ',') {
      if (i > start && count < 16) {
        parts[count] = s + start;
        lens[count++] = i - start;
      }
      start = i + 1;
    }
  }
  for (int i = 1; i < count; i++) { /* at most ten labels: insertion sort */
    for (int j = i; j > 0; j--) {
      size_t m = lens[j] < lens[j - 1] ? lens[j] : lens[j - 1];
      int c = memcmp(parts[j - 1], parts[j], m);
      if (c < 0 || (c == 0 && lens[j - 1] <= lens[j]))
        break;
      const char *tp = parts[j];
      size_t tl = lens[j];
      parts[j] = parts[j - 1];
      lens[j] = lens[j - 1];
      parts[j - 1] = tp;
      lens[j - 1] = tl;
    }
  }
  for (int i = 0; i < count; i++) {
    lua_pushlstring(L, parts[i], lens[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void set_text(lua_State *L, sqlite3_stmt *st, int col, const char *field)
{
  const char *t = (const char *)sqlite3_column_text(st, col);
  if (t) {
    lua_pushlstring(L, t, (size_t)sqlite3_column_bytes(st, col));
    lua_setfield(L, -2, field);
  }
}

static unsigned char *put_s4(unsigned char *p, const void *data, size_t n)
{
  for (int i = 3; i >= 0; i--)
    *p++ = (unsigned char)(n >> (8 * i));
  if (n)
    memcpy(p, data, n);
  return p + n;
}

/* sqlite's data version of the main database: it changes with every commit, by this
** connection or another one (seen from the read transaction the caller's statement holds). */
static uint32_t data_version(sqlite3 *db)
{
  unsigned int dv = 0;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &dv) != SQLITE_OK)
    return 0;
  return dv;
}

/*
** Checks the head MAC of the row st holds: ">s2s2s4" of "head", "param:NAME" and the head, as
** vault.lua's head_mac and param_head build them (the head: s4 each of the version text, type,
** tier, policies, every label=version and every version=type). Without full (st computed no
** aggregates) it returns 0 only when the cache vouches for the row: the same name, version and
** stored MAC verified while the database has not changed since; else 1: query with full.
*/
static int check_param_head(vault *v, sqlite3_stmt *st, int full, const char *name, size_t name_len,
                            int64_t version, const char *vtext, size_t vlen, tide_err *err)
{
  const void *stored = sqlite3_column_blob(st, 3);
  size_t stored_len = (size_t)sqlite3_column_bytes(st, 3);
  uint64_t h = 1469598103934665603ull; /* FNV-1a: the slot only, never the verdict */
  for (size_t i = 0; i < name_len; i++)
    h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
  head_slot *slot = &v->heads[h % HEAD_SLOTS];
  uint32_t dv = data_version(v->db);
  if (stored && stored_len == TIDE_SECRET_MAC_LEN && slot->name && dv != 0 &&
      slot->data_version == dv && slot->version == version && slot->name_len == name_len &&
      memcmp(slot->name, name, name_len) == 0 &&
      memcmp(slot->mac, stored, TIDE_SECRET_MAC_LEN) == 0)
    return 0;
  if (!full)
    return 1;
  static const int cols[] = {11, 1, 12, 13, 14}; /* type, tier, policies, labels, types */
  const unsigned char *text[5];
  size_t tlen[5], head_len = 4 + vlen;
  for (int i = 0; i < 5; i++) {
    text[i] = sqlite3_column_text(st, cols[i]);
    tlen[i] = text[i] ? (size_t)sqlite3_column_bytes(st, cols[i]) : 0;
    head_len += 4 + tlen[i];
  }
  size_t kind_len = sizeof "param:" - 1;
  size_t n = 2 + 4 + 2 + kind_len + name_len + 4 + head_len;
  unsigned char *p = vault_buf(v, n);
  if (!p)
    return tide_err_set(err, -ENOMEM, "out of memory");
  unsigned char *b = p;
  *p++ = 0;
  *p++ = 4;
  memcpy(p, "head", 4);
  p += 4;
  *p++ = (unsigned char)((kind_len + name_len) >> 8);
  *p++ = (unsigned char)(kind_len + name_len);
  memcpy(p, "param:", kind_len);
  memcpy(p + kind_len, name, name_len);
  p += kind_len + name_len;
  put_u32(p, (uint32_t)head_len);
  p += 4;
  p = put_s4(p, vtext, vlen);
  for (int i = 0; i < 5; i++)
    p = put_s4(p, text[i], tlen[i]);
  uint8_t mac[TIDE_SECRET_MAC_LEN];
  hold_key(v, v->audit);
  tide_secret_mac(v->audit->k, b, n, mac);
  if (!stored || stored_len != sizeof mac || sodium_memcmp(mac, stored, sizeof mac) != 0)
    return tide_err_set(err, TIDE_EINTEGRITY,
                        "param '%s': its head record was altered or rolled back", name);
  char *copy = slot->name_len >= name_len && slot->name ? slot->name : malloc(name_len + 1);
  if (copy) {
    if (copy != slot->name)
      free(slot->name);
    memcpy(copy, name, name_len);
    slot->name = copy;
    slot->name_len = name_len;
    slot->version = version;
    slot->data_version = dv;
    memcpy(slot->mac, mac, sizeof mac);
  }
  return 0;
}

/* Registers a value just opened from sealed (ct_len bytes) in the run-wide mask, unless the
** same sealed bytes (nonce and tag) were opened and registered in that mask before. */
static void mask_value(lua_State *L, vault *v, const uint8_t *sealed, size_t sealed_len,
                       const unsigned char *plain, size_t plain_len)
{
  tide_mask *m = tide_runtime_mask(tide_runtime_get(L));
  if (!m)
    return;
  if (m != v->mask) {
    tide_mask_unref(v->mask);
    v->mask = tide_mask_ref(m);
    memset(v->seen_used, 0, sizeof v->seen_used);
  }
  uint8_t id[SEEN_LEN];
  memcpy(id, sealed + 1, 24);
  memcpy(id + 24, sealed + sealed_len - 16, 16);
  size_t slot = id[0];
  if (v->seen_used[slot] && memcmp(v->seen[slot], id, SEEN_LEN) == 0)
    return;
  if (tide_mask_add(m, plain, plain_len, NULL) == -ENOMEM)
    return; /* a short value stays unmasked, as put said; that is settled as well */
  memcpy(v->seen[slot], id, SEEN_LEN);
  v->seen_used[slot] = 1;
}

/* Opens a parameter's sealed value into guarded memory (*out, *out_len). */
static int open_param(vault *v, lkey *dek, const char *name, size_t name_len, int64_t version,
                      int64_t key_id, const uint8_t *ct, size_t ct_len, unsigned char **out,
                      size_t *out_len, tide_err *err)
{
  size_t kind_len = sizeof "param:" - 1;
  size_t ad_size = 64 + kind_len + name_len;
  unsigned char *b = vault_buf(v, ad_size + kind_len + name_len);
  if (!b)
    return tide_err_set(err, -ENOMEM, "out of memory");
  char *full = (char *)b + ad_size;
  memcpy(full, "param:", kind_len);
  memcpy(full + kind_len, name, name_len);
  size_t adn = tide_secret_ad(b, ad_size, v->uuid, full, kind_len + name_len, (uint64_t)version,
                              (uint32_t)key_id);
  size_t n = ct_len > TIDE_SECRET_OVERHEAD ? ct_len - TIDE_SECRET_OVERHEAD : 0;
  unsigned char *plain = tide_secret_alloc(n);
  if (!plain)
    return tide_err_set(err, -ENOMEM, "out of memory");
  if (adn == 0) {
    tide_secret_free(plain);
    return tide_err_set(err, TIDE_EINPUT, "param '%s': name too long", name);
  }
  hold_key(v, dek);
  tide_err why;
  if (tide_secret_open(dek->k, b, adn, ct ? ct : (const uint8_t *)"", ct_len, plain, &why) < 0) {
    tide_secret_free(plain);
    return tide_err_set(err, TIDE_EINTEGRITY, "param '%s' version %lld: %s", name,
                        (long long)version, why.msg);
  }
  *out = plain;
  *out_len = n;
  return 0;
}

/*
** v:param_get(name, decrypt) -> result, tick_needed: the latest version of a parameter as
** params.get gives it (name is canonical). Returns nothing when the parameter is missing or has
** policies (the Lua path handles those), the key id when its data key is not loaded yet (add_key
** it and call again), or the fail triple: EINTEGRITY for a head or a value that does not check,
** or for a read whose audit record cannot be written.
*/
static int vault_param_get(lua_State *L)
{
  vault *v = check_vault(L);
  size_t name_len;
  const char *name = luaL_checklstring(L, 2, &name_len);
  int decrypt = lua_toboolean(L, 3);
  if (!v->audit->k)
    return luaL_error(L, "secret vault used after its keys were closed");
  if (name_len > 0xFFFF - 64)
    return luaL_argerror(L, 2, "name too long");
  if (v->nheld && mono_ns() - v->held_since_ns >= HOLD_NS)
    release_keys(v);
  tide_err err, why;
  sqlite3_stmt *st = vault_stmt(L, v, S_GET, &err);
  if (!st)
    return tide_fail_err(L, &err);
  int full = 0;
again:
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, name, (int)name_len, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, full);
  int step = sqlite3_step(st);
  if (step != SQLITE_ROW || sqlite3_column_int(st, 2) /* policies: the Lua path */) {
    int rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_err(v->db, &err);
    sqlite3_reset(st);
    return rc < 0 ? tide_fail_err(L, &err) : 0;
  }
  int64_t version = sqlite3_column_int64(st, 0);
  int64_t key_id = sqlite3_column_int64(st, 5);
  const char *type = (const char *)sqlite3_column_text(st, 4);
  int secure = type && strcmp(type, "SecureString") == 0;
  int want_value = !secure || decrypt;
  char vtext[24];
  size_t vlen = (size_t)snprintf(vtext, sizeof vtext, "%lld", (long long)version);
  lkey *dek = NULL;
  if (want_value) {
    lua_getiuservalue(L, 1, 2);
    if (lua_rawgeti(L, -1, key_id) == LUA_TUSERDATA)
      dek = luaL_testudata(L, -1, KEY_META); /* anchored in the table */
    lua_pop(L, 2);
    if (!dek || !dek->k || key_id < 0 || key_id > 0xFFFFFFFF) {
      sqlite3_reset(st);
      lua_pushinteger(L, key_id);
      return 1;
    }
  }
  unsigned char *plain = NULL;
  size_t plain_len = 0;
  int rc = check_param_head(v, st, full, name, name_len, version, vtext, vlen, &err);
  if (rc == 1) {
    full = 1;
    goto again;
  }
  if (rc == 0 && want_value)
    rc = open_param(v, dek, name, name_len, version, key_id, sqlite3_column_blob(st, 6),
                    (size_t)sqlite3_column_bytes(st, 6), &plain, &plain_len, &err);
  if (rc == 0 && want_value) {
    if (secure)
      mask_value(L, v, sqlite3_column_blob(st, 6), (size_t)sqlite3_column_bytes(st, 6), plain,
                 plain_len);
    char step_buf[24];
    const char *f[NFIELDS] = {step_buf, "read", "param", name, vtext, "ok"};
    size_t fn[NFIELDS] = {step_text(L, step_buf, sizeof step_buf), 4, 5, name_len, vlen, 2};
    const void *vmac = sqlite3_column_blob(st, 7);
    if (queue_rec(L, v, f, fn, vmac ? vmac : "", (size_t)sqlite3_column_bytes(st, 7)) < 0)
      rc = tide_err_set(&err, -ENOMEM, "cannot queue an audit record: out of memory");
    else if (journal_read_rec(v, &why) < 0)
      rc = tide_err_set(&err, TIDE_EINTEGRITY,
                        "the audit log cannot be written, so nothing is released: %s", why.msg);
  }
  if (rc < 0) {
    sqlite3_reset(st);
    tide_secret_free(plain);
    return tide_fail_err(L, &err);
  }
  lua_createtable(L, 0, 10);
  lua_pushlstring(L, name, name_len);
  lua_setfield(L, -2, "name");
  set_text(L, st, 4, "type");
  lua_pushinteger(L, version);
  lua_setfield(L, -2, "version");
  set_text(L, st, 1, "tier");
  set_text(L, st, 8, "description");
  lua_pushnumber(L, (lua_Number)sqlite3_column_int64(st, 9) / 1e6);
  lua_setfield(L, -2, "last_modified");
  push_labels(L, (const char *)sqlite3_column_text(st, 10), (size_t)sqlite3_column_bytes(st, 10));
  lua_setfield(L, -2, "labels");
  sqlite3_reset(st);
  if (plain && secure) {
    push_owned(L, plain, plain_len);
    lua_setfield(L, -2, "value");
  } else if (plain) {
    lua_pushlstring(L, (const char *)plain, plain_len);
    tide_secret_free(plain);
    lua_setfield(L, -2, "value");
  }
  lua_pushboolean(L, need_tick(v));
  return 2;
}

/* v:audit(op, kind, name, version, outcome [, value_mac]) -> true, tick_needed, or the fail
** triple when the record (a write's, or a read's that is due) cannot be written. */
static int vault_audit(lua_State *L)
{
  vault *v = check_vault(L);
  char step_buf[24];
  const char *f[NFIELDS];
  size_t n[NFIELDS];
  f[F_STEP] = step_buf;
  n[F_STEP] = step_text(L, step_buf, sizeof step_buf);
  for (int i = F_OP; i < NFIELDS; i++)
    f[i] = luaL_checklstring(L, 1 + i, &n[i]);
  size_t mac_len;
  const char *mac = luaL_optlstring(L, 7, "", &mac_len);
  luaL_argcheck(L, mac_len <= TIDE_SECRET_MAC_LEN, 7, "a MAC of at most 32 bytes expected");
  if (queue_rec(L, v, f, n, mac, mac_len) < 0)
    return luaL_error(L, "cannot queue an audit record (out of memory, or a field too long)");
  tide_err err;
  if (strcmp(f[F_OP], "read") == 0 ? journal_read_rec(v, &err) < 0 : settle(L, v, &err) < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, need_tick(v));
  return 2;
}

/* v:flush() -> true or the fail triple: writes the queued records now. */
static int vault_flush_l(lua_State *L)
{
  vault *v = check_vault(L);
  tide_err err;
  if (vault_flush(L, v, &err) < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* v:tick(): what the caller's timer calls after tick_needed: flush, keys protected again. */
static int vault_tick(lua_State *L)
{
  check_vault(L)->armed = 0;
  return vault_flush_l(L);
}

/* v:pending() -> number of queued records */
static int vault_pending(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)check_vault(L)->nqueue);
  return 1;
}

/* v:held() -> number of keys the vault keeps readable now */
static int vault_held(lua_State *L)
{
  lua_pushinteger(L, check_vault(L)->nheld);
  return 1;
}

/* v:close() (also __gc): writes what is queued (best effort), protects the keys, frees. */
static int vault_close(lua_State *L)
{
  vault *v = luaL_checkudata(L, 1, VAULT_META);
  if (v->closed)
    return 0;
  tide_err err;
  if ((v->nqueue > 0 || v->journal_dirty) && v->audit->k && tide_runtime_get(L)->store)
    vault_flush(L, v, &err);
  release_keys(v);
  for (int i = 0; i < NSTMTS; i++)
    sqlite3_finalize(v->stmt[i]);
  for (int i = 0; i < HEAD_SLOTS; i++)
    free(v->heads[i].name);
  tide_mask_unref(v->mask);
  free(v->q);
  free(v->buf);
  free(v->journal_path);
  tide_secret_free(v->jkey);
  if (v->jfd >= 0)
    close(v->jfd);
  memset(v, 0, sizeof *v);
  v->jfd = -1;
  v->closed = 1;
  return 0;
}

static const luaL_Reg vault_methods[] = {
    {"param_get", vault_param_get}, {"audit", vault_audit},     {"flush", vault_flush_l},
    {"tick", vault_tick},           {"pending", vault_pending}, {"add_key", vault_add_key},
    {"held", vault_held},           {"close", vault_close},     {NULL, NULL},
};

/* ---------------------------------------------------------------------------------------------
** Reading values without a Lua string
*/

/*
** read_file(path [, max [, chomp]]) -> secret; "-" reads standard input. chomp drops one final
** "\n" (or "\r\n"), as `echo` and editors leave it.
*/
static int l_read_file(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  size_t max = (size_t)luaL_optinteger(L, 2, VALUE_MAX);
  int chomp = lua_toboolean(L, 3);
  int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return tide_fail(L, -errno, "cannot open '%s': %s", path, strerror(errno));
  void *b;
  size_t n;
  tide_err err;
  int rc = tide_secret_read_fd(fd, max, &b, &n, &err);
  if (fd != 0)
    close(fd);
  if (rc < 0)
    return tide_fail(L, rc, "%s: %s", path, err.msg);
  unsigned char *u = b;
  if (chomp && n > 0 && u[n - 1] == '\n')
    n -= (n > 1 && u[n - 2] == '\r') ? 2 : 1;
  push_owned(L, b, n);
  return 1;
}

/*
** take_env(var) -> secret, or nothing when unset: the value main() moved out of the environment
** at start-up (tide_secret_env_stash), or the variable's, wiped in place and unset.
*/
static int l_take_env(lua_State *L)
{
  const char *var = luaL_checkstring(L, 1);
  void *p;
  size_t n;
  tide_err err;
  int rc = tide_secret_env_take(var, &p, &n, &err);
  if (rc == -ENOENT)
    return 0;
  if (rc < 0)
    return luaL_error(L, "%s", err.msg);
  push_owned(L, p, n);
  return 1;
}

static int l_random(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n > 0 && n <= 4096, 1, "1..4096 bytes");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)n);
  randombytes_buf(p, (size_t)n);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* equal(a, b): constant-time comparison of two strings (MACs). */
static int l_equal(lua_State *L)
{
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an), *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, an == bn && sodium_memcmp(a, b, an) == 0);
  return 1;
}

/* span() -> the span id of the calling task (the step an audit record names), or 0. */
static int l_span(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)tide_task_span(L));
  return 1;
}

/* harden([no_ptrace]): no core files; with no_ptrace also not dumpable (see tide/secret.h). */
static int l_harden(lua_State *L)
{
  tide_err err;
  if (tide_secret_harden_process(lua_toboolean(L, 1), &err) < 0)
    return tide_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg secret_methods[] = {
    {"reveal", secret_reveal},
    {"equals", secret_equals},
    {"write_file", secret_write_file},
    {"close", secret_gc},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"mask", l_mask},
    {"mask_text", l_mask_text},
    {"key_random", l_key_random},
    {"key_file", l_key_file},
    {"key_env", l_key_env},
    {"key_passphrase", l_key_passphrase},
    {"new_data_key", l_new_data_key},
    {"open_data_key", l_open_data_key},
    {"read_file", l_read_file},
    {"take_env", l_take_env},
    {"random", l_random},
    {"equal", l_equal},
    {"harden", l_harden},
    {"span", l_span},
    {"vault", l_vault},
    {NULL, NULL},
};

int luaopen_tide_secret(lua_State *L)
{
  tide_err err;
  if (tide_secret_init(&err) < 0)
    return luaL_error(L, "%s", err.msg);
  if (luaL_newmetatable(L, TIDE_SECRET_META)) {
    luaL_newlib(L, secret_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, secret_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, secret_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, secret_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, secret_concat);
    lua_setfield(L, -2, "__concat");
    lua_pushcfunction(L, secret_len);
    lua_setfield(L, -2, "__len");
    lua_pushliteral(L, "tide.Secret");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, KEY_META)) {
    luaL_newlib(L, key_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, key_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, secret_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, VAULT_META)) {
    luaL_newlib(L, vault_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, vault_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushinteger(L, TIDE_MASK_MIN_LEN);
  lua_setfield(L, -2, "MASK_MIN_LEN");
  lua_pushinteger(L, TIDE_SECRET_KDF_MIN_OPS);
  lua_setfield(L, -2, "KDF_MIN_OPS");
  lua_pushinteger(L, TIDE_SECRET_KDF_MIN_MEM);
  lua_setfield(L, -2, "KDF_MIN_MEM");
  return 1;
}
