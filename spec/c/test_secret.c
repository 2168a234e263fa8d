/*
** host/secret.c: seal/open with associated data, tampering, key sources and their refusals.
*/
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "tide/secret.h"

static const uint8_t uuid_a[16] = "0123456789abcdef";
static const uint8_t uuid_b[16] = "fedcba9876543210";

static size_t ad_of(uint8_t *buf, const uint8_t *uuid, const char *name, uint64_t v, uint32_t k)
{
  size_t n = tide_secret_ad(buf, 512, uuid, name, strlen(name), v, k);
  assert_true(n > 0);
  return n;
}

static tide_secret_key *random_key(void)
{
  tide_secret_key *k = NULL;
  tide_err err;
  assert_int_equal(tide_secret_key_random(&k, &err), 0);
  return k;
}

static void test_roundtrip_and_tamper(void **state)
{
  tide_secret_key *k = random_key();
  const char *plain = "correct horse battery staple";
  size_t n = strlen(plain);
  uint8_t ad[512], sealed[128];
  size_t adn = ad_of(ad, uuid_a, "prod/db", 3, 1);
  tide_err err;
  assert_int_equal(tide_secret_seal(k, ad, adn, plain, n, sealed, &err), 0);
  size_t sn = n + TIDE_SECRET_OVERHEAD;
  assert_null(memmem(sealed, sn, "horse", 5));
  char out[128];
  assert_int_equal(tide_secret_open(k, ad, adn, sealed, sn, out, &err), 0);
  assert_memory_equal(out, plain, n);

  /* Every byte flipped: integrity error, no plaintext written (libsodium may zero out). */
  for (size_t i = 0; i < sn; i++) {
    sealed[i] ^= 0x01;
    memset(out, 'Z', sizeof out);
    int rc = tide_secret_open(k, ad, adn, sealed, sn, out, &err);
    assert_int_equal(rc, TIDE_EINTEGRITY);
    for (size_t j = 0; j < n; j++)
      assert_true(out[j] == 'Z' || out[j] == 0);
    sealed[i] ^= 0x01;
  }
  /* Truncated, empty, wrong alg. */
  assert_int_equal(tide_secret_open(k, ad, adn, sealed, sn - 1, out, &err), TIDE_EINTEGRITY);
  assert_int_equal(tide_secret_open(k, ad, adn, sealed, 0, out, &err), TIDE_EINTEGRITY);
  assert_non_null(strstr(err.msg, "truncated"));
  sealed[0] = 9;
  assert_int_equal(tide_secret_open(k, ad, adn, sealed, sn, out, &err), TIDE_EINTEGRITY);
  assert_non_null(strstr(err.msg, "unknown algorithm"));
  sealed[0] = TIDE_SECRET_ALG_XCHACHA;

  /* Moved to another name, version, key id or store. */
  uint8_t other[512];
  size_t on = ad_of(other, uuid_a, "prod/dc", 3, 1);
  assert_int_equal(tide_secret_open(k, other, on, sealed, sn, out, &err), TIDE_EINTEGRITY);
  on = ad_of(other, uuid_a, "prod/db", 5, 1);
  assert_int_equal(tide_secret_open(k, other, on, sealed, sn, out, &err), TIDE_EINTEGRITY);
  on = ad_of(other, uuid_a, "prod/db", 3, 2);
  assert_int_equal(tide_secret_open(k, other, on, sealed, sn, out, &err), TIDE_EINTEGRITY);
  on = ad_of(other, uuid_b, "prod/db", 3, 1);
  assert_int_equal(tide_secret_open(k, other, on, sealed, sn, out, &err), TIDE_EINTEGRITY);

  /* Another key. */
  tide_secret_key *k2 = random_key();
  assert_int_equal(tide_secret_open(k2, ad, adn, sealed, sn, out, &err), TIDE_EINTEGRITY);
  tide_secret_key_free(k2);
  tide_secret_key_free(k);
}

static void test_ad_is_unambiguous(void **state)
{
  uint8_t a[512], b[512];
  /* "ab" v 0x63 vs "a" + shifted bytes: length prefixes keep them apart. */
  size_t an = ad_of(a, uuid_a, "ab", 1, 1), bn = ad_of(b, uuid_a, "a", 1, 1);
  assert_true(an != bn || memcmp(a, b, an) != 0);
  assert_int_equal(tide_secret_ad(a, 10, uuid_a, "x", 1, 1, 1), 0);
}

/*
** security.md asks for 1e6 seals; this takes 1e5. Each seal makes the key readable and protects
** it again (two mprotect calls and their TLB flushes), so 1e6 seals take about 10 s on the 2-core
** test machine, over the 2 s a unit test may take; 1e5 random 192-bit nonces already make a
** repeat (probability about 2^-159) as good as impossible, so the larger count proves no more
** about the generator, only about the time budget.
*/
static void test_nonces_distinct(void **state)
{
  enum { N = 100000 };
  tide_secret_key *k = random_key();
  uint8_t ad[512];
  size_t adn = ad_of(ad, uuid_a, "n", 1, 1);
  uint8_t(*nonces)[24] = malloc(N * 24);
  uint8_t sealed[8 + TIDE_SECRET_OVERHEAD];
  tide_err err;
  for (int i = 0; i < N; i++) {
    assert_int_equal(tide_secret_seal(k, ad, adn, "same-val", 8, sealed, &err), 0);
    memcpy(nonces[i], sealed + 1, 24);
  }
  /* Sort-free check: a 64-bit prefix of each nonce in a hash set. */
  size_t cap = 1 << 18;
  uint64_t *set = calloc(cap, sizeof *set);
  for (int i = 0; i < N; i++) {
    uint64_t v;
    memcpy(&v, nonces[i], 8);
    v |= 1;
    size_t h = (size_t)(v * 0x9E3779B97F4A7C15ull) >> 46;
    while (set[h]) {
      assert_true(set[h] != v);
      h = (h + 1) & (cap - 1);
    }
    set[h] = v;
  }
  free(set);
  free(nonces);
  tide_secret_key_free(k);
}

static void test_key_file(void **state)
{
  char dir[] = "/tmp/tide-secret-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/key", dir);
  tide_secret_key *k = NULL, *k2 = NULL;
  tide_err err;
  assert_int_equal(tide_secret_key_file(path, 0, &k, &err), -ENOENT);
  assert_null(k);
  assert_int_equal(tide_secret_key_file(path, 1, &k, &err), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, 32);
  /* Same key on the next read: a value sealed by one opens with the other. */
  assert_int_equal(tide_secret_key_file(path, 1, &k2, &err), 0);
  uint8_t ad[512], sealed[8 + TIDE_SECRET_OVERHEAD];
  size_t adn = ad_of(ad, uuid_a, "x", 1, 1);
  char out[8];
  assert_int_equal(tide_secret_seal(k, ad, adn, "12345678", 8, sealed, &err), 0);
  assert_int_equal(tide_secret_open(k2, ad, adn, sealed, sizeof sealed, out, &err), 0);
  tide_secret_key_free(k2);
  /* Too open, or the wrong size: refused. */
  chmod(path, 0644);
  assert_int_equal(tide_secret_key_file(path, 1, &k2, &err), TIDE_EINPUT);
  assert_non_null(strstr(err.msg, path));
  chmod(path, 0600);
  assert_int_equal(truncate(path, 31), 0);
  assert_int_equal(tide_secret_key_file(path, 1, &k2, &err), TIDE_EINPUT);
  unlink(path);
  rmdir(dir);
  tide_secret_key_free(k);
}

static void test_key_env(void **state)
{
  tide_secret_key *k = NULL;
  tide_err err;
  char hex[65];
  memset(hex, 'a', 64);
  hex[64] = '\0';
  setenv("TIDE_TEST_KEY", hex, 1);
  char *v = getenv("TIDE_TEST_KEY");
  assert_int_equal(tide_secret_key_env("TIDE_TEST_KEY", &k, &err), 0);
  assert_null(getenv("TIDE_TEST_KEY"));
  (void)v; /* the old storage was wiped; it may have been freed by unsetenv, so not read */
  tide_secret_key_free(k);
  assert_int_equal(tide_secret_key_env("TIDE_TEST_KEY", &k, &err), -ENOENT);
  setenv("TIDE_TEST_KEY", "abc", 1);
  assert_int_equal(tide_secret_key_env("TIDE_TEST_KEY", &k, &err), TIDE_EINPUT);
  assert_null(getenv("TIDE_TEST_KEY"));
}

/* Start-up takes every master-key variable out of the environment; the key is still usable. */
static void test_env_stash(void **state)
{
  (void)state;
  char hex[65];
  memset(hex, 'b', 64);
  hex[64] = '\0';
  setenv("TIDE_SECRET_KEY", hex, 1);
  setenv("TIDE_SECRET_PASSPHRASE", "stashed passphrase", 1);
  tide_err err;
  assert_int_equal(tide_secret_env_stash(&err), 0);
  assert_null(getenv("TIDE_SECRET_KEY"));
  assert_null(getenv("TIDE_SECRET_PASSPHRASE"));
  void *p = NULL;
  size_t n = 0;
  assert_int_equal(tide_secret_env_take("TIDE_SECRET_PASSPHRASE", &p, &n, &err), 0);
  assert_int_equal(n, strlen("stashed passphrase"));
  assert_memory_equal(p, "stashed passphrase", n);
  tide_secret_free(p);
  assert_int_equal(tide_secret_env_take("TIDE_SECRET_PASSPHRASE", &p, &n, &err), -ENOENT);
  tide_secret_key *k = NULL, *want = NULL;
  assert_int_equal(tide_secret_key_env("TIDE_SECRET_KEY", &k, &err), 0);
  uint8_t bytes[TIDE_SECRET_KEY_LEN];
  memset(bytes, 0xbb, sizeof bytes);
  assert_int_equal(tide_secret_key_from_bytes(bytes, sizeof bytes, &want, &err), 0);
  uint8_t a[TIDE_SECRET_MAC_LEN], b[TIDE_SECRET_MAC_LEN];
  tide_secret_mac(k, "x", 1, a);
  tide_secret_mac(want, "x", 1, b);
  assert_memory_equal(a, b, sizeof a);
  tide_secret_key_free(k);
  tide_secret_key_free(want);
  /* Handed over once: a later unlock finds nothing, as with the variable itself. */
  assert_int_equal(tide_secret_key_env("TIDE_SECRET_KEY", &k, &err), -ENOENT);
}

/* The MAC in pieces, from a copied keyed state, equals the MAC in one call. */
static void test_mac_pieces(void **state)
{
  (void)state;
  tide_secret_key *k = random_key();
  uint8_t whole[TIDE_SECRET_MAC_LEN], pieces[TIDE_SECRET_MAC_LEN];
  const char text[] =
      "previous link|record bytes of some length, longer than one block? "
      "yes: BLAKE2b blocks are 128 bytes, so this needs to go on a while more.";
  tide_secret_mac(k, text, sizeof text - 1, whole);
  tide_secret_mac_state keyed, st;
  tide_secret_mac_init(k, &keyed);
  for (size_t cut = 0; cut < sizeof text; cut += 37) {
    memcpy(&st, &keyed, sizeof st);
    tide_secret_mac_update(&st, text, cut);
    tide_secret_mac_update(&st, text + cut, sizeof text - 1 - cut);
    tide_secret_mac_final(&st, pieces);
    assert_memory_equal(whole, pieces, sizeof whole);
  }
  sodium_memzero(&keyed, sizeof keyed);
  tide_secret_key_free(k);
}

static void test_passphrase(void **state)
{
  uint8_t salt[16] = {1, 2, 3};
  tide_secret_key *k = NULL, *k2 = NULL, *k3 = NULL;
  tide_err err;
  assert_int_equal(tide_secret_key_passphrase("pw", 2, salt, 2, 64u << 20, &k, &err), TIDE_EINPUT);
  assert_int_equal(tide_secret_key_passphrase("pw", 2, salt, 3, 8u << 20, &k, &err), TIDE_EINPUT);
  assert_int_equal(tide_secret_key_passphrase("pw", 2, salt, 3, 64u << 20, &k, &err), 0);
  assert_int_equal(tide_secret_key_passphrase("pw", 2, salt, 3, 64u << 20, &k2, &err), 0);
  assert_int_equal(tide_secret_key_passphrase("pX", 2, salt, 3, 64u << 20, &k3, &err), 0);
  /* Key-check values: equal for the same passphrase, different for another. */
  tide_secret_key *c1, *c2, *c3;
  assert_int_equal(tide_secret_key_derive(k, TIDE_SECRET_SUBKEY_CHECK, &c1, &err), 0);
  assert_int_equal(tide_secret_key_derive(k2, TIDE_SECRET_SUBKEY_CHECK, &c2, &err), 0);
  assert_int_equal(tide_secret_key_derive(k3, TIDE_SECRET_SUBKEY_CHECK, &c3, &err), 0);
  uint8_t m1[32], m2[32], m3[32];
  tide_secret_mac(c1, "kcv", 3, m1);
  tide_secret_mac(c2, "kcv", 3, m2);
  tide_secret_mac(c3, "kcv", 3, m3);
  assert_memory_equal(m1, m2, 32);
  assert_memory_not_equal(m1, m3, 32);
  tide_secret_key_free(c1);
  tide_secret_key_free(c2);
  tide_secret_key_free(c3);
  tide_secret_key_free(k);
  tide_secret_key_free(k2);
  tide_secret_key_free(k3);
}

static void test_hold_and_guarded_alloc(void **state)
{
  tide_secret_key *k = random_key();
  uint8_t a[32], b[32];
  tide_secret_mac(k, "x", 1, a);
  tide_secret_key_hold(k);
  tide_secret_key_hold(k);
  tide_secret_mac(k, "x", 1, b);
  tide_secret_key_release(k);
  tide_secret_mac(k, "x", 1, b);
  tide_secret_key_release(k);
  assert_memory_equal(a, b, 32);
  /* Slab blocks of every size class and a direct one: usable, and reused once freed. */
  size_t sizes[] = {1, 64, 65, 1024, 16384, 16385, 70000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = tide_secret_alloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0xAB, sizes[i]);
    tide_secret_free(p);
    unsigned char *q = tide_secret_alloc(sizes[i]);
    if (sizes[i] <= 16384) {
      assert_ptr_equal(p, q);
      /* Wiped when freed; a free block's first bytes then link it to the next free one. */
      size_t link = sizeof(void *) < sizes[i] ? sizeof(void *) : sizes[i];
      for (size_t j = link; j < sizes[i]; j++)
        assert_int_equal(q[j], 0);
      size_t same = 0;
      for (size_t j = 0; j < link; j++)
        same += q[j] == 0xAB;
      assert_true(same < link);
    }
    tide_secret_free(q);
  }
  tide_secret_free(NULL);
  tide_secret_key_free(k);
}

static void test_read_fd_limit(void **state)
{
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(write(fds[1], "0123456789", 10), 10);
  close(fds[1]);
  void *b = NULL;
  size_t n = 0;
  tide_err err;
  assert_int_equal(tide_secret_read_fd(fds[0], 9, &b, &n, &err), TIDE_ELIMIT);
  assert_null(b);
  close(fds[0]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_and_tamper),
      cmocka_unit_test(test_ad_is_unambiguous),
      cmocka_unit_test(test_nonces_distinct),
      cmocka_unit_test(test_key_file),
      cmocka_unit_test(test_key_env),
      cmocka_unit_test(test_env_stash),
      cmocka_unit_test(test_mac_pieces),
      cmocka_unit_test(test_passphrase),
      cmocka_unit_test(test_read_fd_limit),
      cmocka_unit_test(test_hold_and_guarded_alloc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
