/*
** host/mask.c: every derived form, splits at every offset, overlapping values, short values and
** lines, flush at end of stream.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "tide/mask.h"

typedef struct buf {
  char b[65536];
  size_t len;
} buf;

static void collect(void *ud, const char *d, size_t n)
{
  buf *o = ud;
  assert_true(o->len + n < sizeof o->b);
  memcpy(o->b + o->len, d, n);
  o->len += n;
  o->b[o->len] = '\0';
}

static tide_mask *mask_of(const char *const *values)
{
  tide_mask *m = tide_mask_new();
  assert_non_null(m);
  tide_err err;
  for (; *values; values++)
    assert_true(tide_mask_add(m, *values, strlen(*values), &err) >= 0);
  return m;
}

static char *masked(tide_mask *m, const char *s)
{
  size_t n;
  char *r = tide_mask_string(m, s, strlen(s), &n);
  assert_non_null(r);
  assert_int_equal(strlen(r), n);
  return r;
}

static void expect(tide_mask *m, const char *in, const char *want)
{
  char *r = masked(m, in);
  assert_string_equal(r, want);
  free(r);
}

static void test_raw_and_plain_text(void **state)
{
  tide_mask *m = mask_of((const char *[]){"hunter2hunter2", NULL});
  expect(m, "password=hunter2hunter2 ok", "password=*** ok");
  expect(m, "hunter2hunter2hunter2hunter2", "***"); /* overlapping occurrences merge */
  expect(m, "hunter2hunter2-hunter2hunter2", "***-***");
  expect(m, "nothing here", "nothing here");
  expect(m, "", "");
  expect(m, "hunter2hunter", "hunter2hunter");
  tide_mask_unref(m);
  /* No patterns: a plain copy. */
  expect(NULL, "abc", "abc");
}

static void test_too_short(void **state)
{
  tide_mask *m = tide_mask_new();
  tide_err err;
  assert_int_equal(tide_mask_add(m, "1234567", 7, &err), TIDE_EINPUT);
  assert_non_null(strstr(err.msg, "shorter than 8"));
  assert_int_equal(tide_mask_patterns(m), 0);
  expect(m, "x1234567x", "x1234567x");
  tide_mask_unref(m);
}

/* The value embedded at each byte offset of a blob, base64-encoded as a whole. */
static void test_base64_all_alignments(void **state)
{
  const char *secret = "s3cr3t-P@ss/word+";
  tide_mask *m = mask_of((const char *[]){secret, NULL});
  const int variants[2] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE};
  for (int v = 0; v < 2; v++)
    for (size_t pre = 0; pre < 7; pre++)
      for (size_t post = 0; post < 4; post++) {
        unsigned char raw[64];
        memset(raw, 0xA5, sizeof raw);
        memcpy(raw + pre, secret, strlen(secret));
        size_t n = pre + strlen(secret) + post;
        char b64[128];
        sodium_bin2base64(b64, sizeof b64, raw, n, variants[v]);
        char *r = masked(m, b64);
        assert_non_null(strstr(r, "***"));
        /* What is left must not decode back to the value. */
        assert_null(strstr(r, secret));
        free(r);
      }
  tide_mask_unref(m);
}

static void test_encodings(void **state)
{
  const char *secret = "p a\"s/s'w\nord+&=";
  tide_mask *m = mask_of((const char *[]){secret, NULL});
  char hex[64];
  sodium_bin2hex(hex, sizeof hex, (const unsigned char *)secret, strlen(secret));
  expect(m, hex, "***");
  for (char *c = hex; *c; c++)
    if (*c >= 'a' && *c <= 'f')
      *c = (char)(*c - 32);
  expect(m, hex, "***");
  expect(m, "q=p+a%22s%2Fs%27w%0Aord%2B%26%3D&x", "q=***&x");
  expect(m, "/p%20a%22s%2Fs%27w%0Aord%2B%26%3D/", "/***/");
  expect(m, "{\"k\":\"p a\\\"s/s'w\\nord+&=\"}", "{\"k\":\"***\"}");
  expect(m, "{\"k\":\"p a\\\"s\\/s'w\\nord+&=\"}", "{\"k\":\"***\"}");
  expect(m, "echo 'p a\"s/s'\\''w\nord+&='", "echo '***'");
  tide_mask_unref(m);
}

static void test_lines(void **state)
{
  const char *pem =
      "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEF\r\nshort\n-----END KEY-----\n";
  tide_mask *m = tide_mask_new();
  tide_err err;
  assert_int_equal(tide_mask_add(m, pem, strlen(pem), &err), 1); /* "short" */
  expect(m, "line: MIIBVwIBADANBgkqhkiG9w0BAQEF.", "line: ***.");
  expect(m, "-----END KEY-----", "***");
  tide_mask_unref(m);
}

static void test_split_at_every_offset(void **state)
{
  const char *secret = "correct-horse-battery";
  tide_mask *m = mask_of((const char *[]){secret, NULL});
  char text[128];
  snprintf(text, sizeof text, "before %s after", secret);
  size_t n = strlen(text);
  for (size_t cut = 1; cut < n; cut++)
    for (size_t cut2 = cut; cut2 < n; cut2 += 3) {
      buf o = {0};
      tide_mask_stream *s = tide_mask_stream_new(m);
      tide_mask_feed(s, text, cut, collect, &o);
      tide_mask_feed(s, text + cut, cut2 - cut, collect, &o);
      tide_mask_feed(s, text + cut2, n - cut2, collect, &o);
      tide_mask_flush(s, collect, &o);
      assert_string_equal(o.b, "before *** after");
      tide_mask_stream_free(s);
    }
  /* A value at the very end, without a newline: masked at flush. */
  buf o = {0};
  tide_mask_stream *s = tide_mask_stream_new(m);
  tide_mask_feed(s, "tail corr", 9, collect, &o);
  tide_mask_feed(s, "ect-horse-battery", 17, collect, &o);
  assert_null(strstr(o.b, "horse"));
  tide_mask_flush(s, collect, &o);
  assert_string_equal(o.b, "tail ***");
  tide_mask_stream_free(s);
  tide_mask_unref(m);
}

static void test_byte_at_a_time(void **state)
{
  tide_mask *m = mask_of((const char *[]){"abcdefgh", "abcdefghijklmnop", NULL});
  const char *in = "xxabcdefghijklmnopyy abcdefghij abcdefg";
  buf o = {0};
  tide_mask_stream *s = tide_mask_stream_new(m);
  for (const char *c = in; *c; c++)
    tide_mask_feed(s, c, 1, collect, &o);
  tide_mask_flush(s, collect, &o);
  assert_string_equal(o.b, "xx***yy ***ij abcdefg");
  tide_mask_stream_free(s);
  tide_mask_unref(m);
}

static void test_overlaps_longest_wins(void **state)
{
  tide_mask *m = mask_of((const char *[]){"password", "password123", "word1234567", NULL});
  expect(m, "[password123]", "[***]");
  expect(m, "[password1234567]", "[***]");
  expect(m, "[passwordX]", "[***X]");
  tide_mask_unref(m);
}

static void test_patterns_added_while_streaming(void **state)
{
  tide_mask *m = tide_mask_new();
  tide_mask_stream *s = tide_mask_stream_new(m);
  tide_mask_unref(m); /* the stream keeps it alive */
  buf o = {0};
  tide_mask_feed(s, "one secretvalue ", 16, collect, &o);
  tide_err err;
  assert_int_equal(tide_mask_add(m, "secretvalue", 11, &err), 0);
  size_t before = tide_mask_patterns(m);
  assert_int_equal(tide_mask_add(m, "secretvalue", 11, &err), 0);
  assert_int_equal(tide_mask_patterns(m), before);
  tide_mask_feed(s, "two secretvalue\n", 16, collect, &o);
  tide_mask_flush(s, collect, &o);
  assert_string_equal(o.b, "one secretvalue two ***\n");
  tide_mask_stream_free(s);
}

static void test_many_patterns_random(void **state)
{
  enum { N = 100 };
  char values[N][24];
  const char *list[N + 1];
  for (int i = 0; i < N; i++) {
    snprintf(values[i], sizeof values[i], "tok%08x%08x", randombytes_random(),
             randombytes_random());
    list[i] = values[i];
  }
  list[N] = NULL;
  tide_mask *m = mask_of(list);
  static char text[60000];
  size_t n = 0;
  for (int i = 0; n + 80 < sizeof text; i++) {
    n += (size_t)snprintf(text + n, sizeof text - n, "line %d %s ", i, values[i % N]);
  }
  for (size_t chunk = 1; chunk < 5000; chunk = chunk * 3 + 1) {
    static buf o;
    o.len = 0;
    tide_mask_stream *s = tide_mask_stream_new(m);
    for (size_t off = 0; off < n; off += chunk)
      tide_mask_feed(s, text + off, off + chunk < n ? chunk : n - off, collect, &o);
    tide_mask_flush(s, collect, &o);
    o.b[o.len] = '\0';
    for (int i = 0; i < N; i++)
      assert_null(strstr(o.b, values[i]));
    assert_non_null(strstr(o.b, "line 7 *** line 8 ***"));
    tide_mask_stream_free(s);
  }
  tide_mask_unref(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_raw_and_plain_text),
      cmocka_unit_test(test_too_short),
      cmocka_unit_test(test_base64_all_alignments),
      cmocka_unit_test(test_encodings),
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_split_at_every_offset),
      cmocka_unit_test(test_byte_at_a_time),
      cmocka_unit_test(test_overlaps_longest_wins),
      cmocka_unit_test(test_patterns_added_while_streaming),
      cmocka_unit_test(test_many_patterns_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
