/*
** Keys and authenticated encryption for the secret store (libsodium), without Lua and without
** SQL: the store's tables live in Lua (stdlib/tide/secrets.lua); this module only turns bytes
** into sealed bytes and back.
**
** Key hierarchy: a 32-byte master key (from a key file, an environment variable or a passphrase
** through Argon2id) derives, with crypto_kdf (BLAKE2b, context "tidesec1"), a wrapping key (id 1),
** an audit MAC key (id 2) and a key-check value (id 3) that is stored so that a wrong key is
** reported as such. Data keys are random, sealed under the wrapping key.
**
** Sealed format: alg (1 byte, TIDE_SECRET_ALG_XCHACHA) | nonce (24) | ciphertext | tag (16);
** XChaCha20-Poly1305-IETF with a fresh random nonce per seal. The associated data built by
** tide_secret_ad() binds a value to its store, name, version and key, so a row moved to another
** name, version, key or store does not open.
**
** Key material and plaintexts live in sodium_malloc memory (guard pages, locked, excluded from
** core dumps) and are wiped when freed. Keys are kept PROT_NONE while idle.
** Functions are thread-safe on distinct keys (the thread pool may seal and open).
*/
#ifndef TIDE_SECRET_H
#define TIDE_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "tide/err.h"

#define TIDE_SECRET_KEY_LEN 32
#define TIDE_SECRET_ALG_XCHACHA 1
#define TIDE_SECRET_OVERHEAD (1 + 24 + 16)
#define TIDE_SECRET_SALT_LEN 16
#define TIDE_SECRET_UUID_LEN 16
#define TIDE_SECRET_MAC_LEN 32
/* Argon2id floor: a passphrase key is never derived with less (RFC 9106's second option). */
#define TIDE_SECRET_KDF_MIN_OPS 3
#define TIDE_SECRET_KDF_MIN_MEM (64u << 20)

enum {
  TIDE_SECRET_SUBKEY_WRAP = 1,
  TIDE_SECRET_SUBKEY_AUDIT = 2,
  TIDE_SECRET_SUBKEY_CHECK = 3,
};

typedef struct tide_secret_key tide_secret_key;

/* Initialises libsodium (idempotent). Returns 0 or TIDE_ECRYPTO. */
int tide_secret_init(tide_err *err);

/*
** Makes this process harder to read from outside: no core files and, with no_ptrace, not
** dumpable (no same-uid ptrace or /proc/PID/mem). Not dumpable is inherited by clone children
** until they exec and makes their /proc files root's, which stops an unprivileged parent from
** writing a sandbox child's uid_map: only ask for it when the sandbox child restores
** PR_SET_DUMPABLE itself. Returns 0 or a negated errno.
*/
int tide_secret_harden_process(int no_ptrace, tide_err *err);

/* A random key. */
int tide_secret_key_random(tide_secret_key **out, tide_err *err);

/* A key from exactly TIDE_SECRET_KEY_LEN bytes (copied). */
int tide_secret_key_from_bytes(const void *bytes, size_t len, tide_secret_key **out, tide_err *err);

/*
** Reads a key file of exactly 32 bytes. When it does not exist and create is set, writes a new
** random key there first (mode 0600, created exclusively, fsync'd). A file readable by group or
** others, or of the wrong size, is refused (TIDE_EINPUT) with the path in the message.
*/
int tide_secret_key_file(const char *path, int create, tide_secret_key **out, tide_err *err);

/*
** Moves the master-key variables (TIDE_SECRET_KEY, TIDE_SECRET_PASSPHRASE and the NEW_ pair of
** a rekey) out of the environment: each value is copied into guarded memory, wiped in place
** (which also clears it in /proc/PID/environ) and unset, so no process started afterwards
** inherits it. main() calls it first thing, before any script or command can spawn a process.
** The variables are unset even when a copy fails (then -ENOMEM: the caller must stop).
** Main thread, before any other thread reads the environment.
*/
int tide_secret_env_stash(tide_err *err);

/*
** Takes the value of var: the copy tide_secret_env_stash() made (handed over once), else the
** live variable, wiped and unset. *out is tide_secret_alloc'd memory of *len bytes, freed by the
** caller with tide_secret_free. -ENOENT when there is none, -ENOMEM.
*/
int tide_secret_env_take(const char *var, void **out, size_t *len, tide_err *err);

/*
** A key from the environment variable var (through tide_secret_env_take): 64 hex digits.
** TIDE_EINPUT when malformed, -ENOENT when unset.
*/
int tide_secret_key_env(const char *var, tide_secret_key **out, tide_err *err);

/*
** A key from a passphrase through Argon2id with salt, ops and mem (bytes). Parameters below
** TIDE_SECRET_KDF_MIN_* are refused (TIDE_EINPUT): a weakened record cannot lower the cost.
*/
int tide_secret_key_passphrase(const char *pw, size_t len, const uint8_t *salt, uint64_t ops,
                               size_t mem, tide_secret_key **out, tide_err *err);

/* Derives subkey id (TIDE_SECRET_SUBKEY_*) of key. */
int tide_secret_key_derive(const tide_secret_key *key, uint64_t id, tide_secret_key **out,
                           tide_err *err);

/* Frees and wipes; NULL is allowed. */
void tide_secret_key_free(tide_secret_key *key);

/*
** Keeps key readable between hold and release (nested holds count), so a batch of operations
** changes the page protection twice instead of twice per operation. Not for sharing a key
** between threads.
*/
void tide_secret_key_hold(tide_secret_key *key);
void tide_secret_key_release(tide_secret_key *key);

/* Keyed BLAKE2b-256 of data under key: the key-check value, audit MACs, head MACs. */
void tide_secret_mac(const tide_secret_key *key, const void *data, size_t len,
                     uint8_t out[TIDE_SECRET_MAC_LEN]);

/*
** The same MAC in pieces: init absorbs the key, update the data, final writes the MAC of the
** concatenation (equal to tide_secret_mac) and wipes the state. A state copied after init
** serves many short inputs without absorbing the key again (the audit chain). The state holds
** key material: keep it on the stack of one function and wipe a copy that is not finalised
** (sodium_memzero).
*/
typedef struct tide_secret_mac_state {
  _Alignas(64) unsigned char opaque[384];
} tide_secret_mac_state;

void tide_secret_mac_init(const tide_secret_key *key, tide_secret_mac_state *st);
void tide_secret_mac_update(tide_secret_mac_state *st, const void *data, size_t len);
void tide_secret_mac_final(tide_secret_mac_state *st, uint8_t out[TIDE_SECRET_MAC_LEN]);

/*
** Associated data "tide/sec/v1" | uuid(16) | u16 name length | name | u64 version | u32 key_id |
** u8 alg, big-endian, into buf. Returns its length, or 0 when buf is too small or name is longer
** than 65535 bytes.
*/
size_t tide_secret_ad(uint8_t *buf, size_t size, const uint8_t uuid[TIDE_SECRET_UUID_LEN],
                      const char *name, size_t name_len, uint64_t version, uint32_t key_id);

/* Seals n bytes into out (n + TIDE_SECRET_OVERHEAD bytes). Returns 0 or TIDE_ECRYPTO. */
int tide_secret_seal(const tide_secret_key *key, const uint8_t *ad, size_t ad_len,
                     const void *plain, size_t n, uint8_t *out, tide_err *err);

/*
** Opens a sealed value of n bytes into out (n - TIDE_SECRET_OVERHEAD bytes, sodium_malloc'd
** memory advised). A short input, an unknown alg byte or a failed tag check gives
** TIDE_EINTEGRITY and writes no plaintext into out.
*/
int tide_secret_open(const tide_secret_key *key, const uint8_t *ad, size_t ad_len,
                     const uint8_t *sealed, size_t n, void *out, tide_err *err);

/*
** Guarded memory for plaintexts: locked, excluded from core dumps, wiped when freed. Small blocks
** share guarded slabs (see secret.c); larger ones get their own sodium_malloc. Thread-safe.
*/
void *tide_secret_alloc(size_t n);
void tide_secret_free(void *p);

/* Reads up to max bytes from fd into guarded memory; TIDE_ELIMIT past max. */
int tide_secret_read_fd(int fd, size_t max, void **out, size_t *len, tide_err *err);

#endif
