/*
** host/re.c: compile errors with offsets, the LRU cache, bounded matching, UTF-8 checks and the
** empty-match iteration rules.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tide/re.h"

static tide_re *compile_ok(const char *p, unsigned flags)
{
  tide_re *re = NULL;
  tide_err err;
  tide_err_clear(&err);
  int rc = tide_re_compile(p, strlen(p), flags, &re, &err);
  if (rc != 0)
    fail_msg("compile '%s': %s", p, err.msg);
  return re;
}

static void test_flags(void **state)
{
  unsigned f = 0;
  tide_err err;
  assert_int_equal(tide_re_flags("imsxunAU", 8, &f, &err), 0);
  assert_int_equal(f, TIDE_RE_CASELESS | TIDE_RE_MULTILINE | TIDE_RE_DOTALL | TIDE_RE_EXTENDED |
                          TIDE_RE_UTF | TIDE_RE_NOCAPTURE | TIDE_RE_ANCHORED | TIDE_RE_UNGREEDY);
  assert_int_equal(tide_re_flags("iq", 2, &f, &err), TIDE_EINPUT);
  assert_string_equal(err.msg, "re: unknown flag 'q'");
  assert_int_equal(tide_re_flags("i\0", 2, &f, &err), TIDE_EINPUT);
  assert_string_equal(err.msg, "re: unknown flag '\\x00'");
}

static void test_bad_pattern(void **state)
{
  tide_re *re = (tide_re *)1;
  tide_err err;
  assert_int_equal(tide_re_compile("abc(", 4, 0, &re, &err), TIDE_EREGEX);
  assert_int_equal(err.code, TIDE_EREGEX);
  assert_string_equal(err.msg, "re: bad pattern at offset 4: missing closing parenthesis");
  assert_int_equal(tide_re_compile("a)", 2, 0, &re, &err), TIDE_EREGEX);
  assert_string_equal(err.msg, "re: bad pattern at offset 1: unmatched closing parenthesis");
  /* Invalid UTF-8 in the pattern is a compile error under the u flag, fine without it. */
  assert_int_equal(tide_re_compile("a\xff", 2, TIDE_RE_UTF, &re, &err), TIDE_EREGEX);
  assert_non_null(strstr(err.msg, "re: bad pattern at offset 1: UTF-8 error"));
  /* \C is refused outright. */
  assert_int_equal(tide_re_compile("a\\C", 3, 0, &re, &err), TIDE_EREGEX);
  re = compile_ok("a\xff", 0);
  tide_re_release(re);
}

static void test_match_and_groups(void **state)
{
  tide_re *re = compile_ok("(?<key>\\w+)=(\\d+)?", 0);
  assert_int_equal(tide_re_ngroups(re), 2);
  assert_int_equal(tide_re_nnames(re), 1);
  int g = 0;
  assert_string_equal(tide_re_name(re, 0, &g), "key");
  assert_int_equal(g, 1);
  assert_int_equal(tide_re_group_number(re, "key"), 1);
  assert_true(tide_re_group_number(re, "nope") < 0);

  tide_re_match *m = tide_re_match_new(re);
  assert_non_null(m);
  tide_err err;
  const char *s = "  ab=12 cd=";
  assert_int_equal(tide_re_exec(re, s, strlen(s), 0, 0, m, &err), 1);
  const size_t *ov = tide_re_ovector(m);
  assert_int_equal(ov[0], 2);
  assert_int_equal(ov[1], 7);
  assert_int_equal(ov[4], 5);
  assert_int_equal(ov[5], 7);
  assert_int_equal(tide_re_exec(re, s, strlen(s), 7, 0, m, &err), 1);
  assert_int_equal(ov[0], 8);
  assert_int_equal(ov[4], TIDE_RE_UNSET); /* unset optional group */
  assert_int_equal(tide_re_exec(re, s, strlen(s), 11, 0, m, &err), 0);
  assert_int_equal(tide_re_exec(re, s, strlen(s), 12, 0, m, &err), 0); /* past the end */
  tide_re_match_free(m);
  tide_re_release(re);
}

static void test_nul_bytes(void **state)
{
  tide_re *re = NULL;
  tide_err err;
  assert_int_equal(tide_re_compile("b\0c", 3, 0, &re, &err), 0);
  tide_re_match *m = tide_re_match_new(re);
  assert_int_equal(tide_re_exec(re, "a\0b\0c", 5, 0, 0, m, &err), 1);
  assert_int_equal(tide_re_ovector(m)[0], 2);
  assert_int_equal(tide_re_ovector(m)[1], 5);
  tide_re_match_free(m);
  tide_re_release(re);
}

static void test_cache(void **state)
{
  tide_re_cache_clear();
  size_t entries, c0, c1;
  tide_re_cache_stats(&entries, &c0);
  assert_int_equal(entries, 0);
  tide_re *a = compile_ok("cache-me", 0);
  tide_re *b = compile_ok("cache-me", 0);
  assert_ptr_equal(a, b);
  tide_re *c = compile_ok("cache-me", TIDE_RE_CASELESS); /* flags are part of the key */
  assert_ptr_not_equal(a, c);
  tide_re_cache_stats(&entries, &c1);
  assert_int_equal(entries, 2);
  assert_int_equal(c1 - c0, 2);

  /* Fill the cache past its size: the oldest entry goes, but a held reference stays valid. */
  char buf[32];
  for (int i = 0; i < TIDE_RE_CACHE_SIZE + 10; i++) {
    snprintf(buf, sizeof buf, "p%d", i);
    tide_re_release(compile_ok(buf, 0));
  }
  tide_re_cache_stats(&entries, NULL);
  assert_int_equal(entries, TIDE_RE_CACHE_SIZE);
  size_t len;
  assert_string_equal(tide_re_pattern(a, &len), "cache-me");
  tide_re *d = compile_ok("cache-me", 0); /* evicted, so compiled again */
  assert_ptr_not_equal(a, d);

  /* Recently used entries survive: touch p20 then push 250 new patterns. */
  tide_re_cache_stats(NULL, &c0);
  tide_re_release(compile_ok("p20", 0));
  for (int i = 0; i < TIDE_RE_CACHE_SIZE - 6; i++) {
    snprintf(buf, sizeof buf, "q%d", i);
    tide_re_release(compile_ok(buf, 0));
  }
  tide_re_cache_stats(NULL, &c1);
  tide_re_release(compile_ok("p20", 0));
  size_t c2;
  tide_re_cache_stats(NULL, &c2);
  assert_int_equal(c2, c1); /* still cached */

  tide_re_release(a);
  tide_re_release(b);
  tide_re_release(c);
  tide_re_release(d);
  tide_re_cache_clear();
  tide_re_cache_stats(&entries, NULL);
  assert_int_equal(entries, 0);
}

static void test_backtracking_limit(void **state)
{
  tide_re *re = compile_ok("(a+)+$", 0);
  tide_re_match *m = tide_re_match_new(re);
  char s[64];
  memset(s, 'a', 40);
  s[40] = 'b';
  tide_err err;
  tide_err_clear(&err);
  assert_int_equal(tide_re_exec(re, s, 41, 0, 0, m, &err), TIDE_ELIMIT);
  assert_non_null(strstr(err.msg, "limit exceeded"));
  tide_re_match_free(m);
  tide_re_release(re);

  /* Deep recursion in the interpreter hits a limit too, never the C stack. */
  re = compile_ok("(?:(a)|b)*+c", TIDE_RE_UTF);
  m = tide_re_match_new(re);
  static char big[300000];
  memset(big, 'a', sizeof big);
  int rc = tide_re_exec(re, big, sizeof big, 0, 0, m, &err);
  assert_true(rc == 0 || rc == TIDE_ELIMIT);
  tide_re_match_free(m);
  tide_re_release(re);
}

static void test_utf(void **state)
{
  tide_re *re = compile_ok("\\w+", TIDE_RE_UTF);
  tide_re_match *m = tide_re_match_new(re);
  tide_err err;
  const char *s = "  h\xc3\xa9llo";
  assert_int_equal(tide_re_exec(re, s, strlen(s), 0, 0, m, &err), 1);
  assert_int_equal(tide_re_ovector(m)[0], 2);
  assert_int_equal(tide_re_ovector(m)[1], strlen(s)); /* \w covers é under u */
  /* the offset is the bad byte's, not left over from the match before (which started at 2) */
  assert_int_equal(tide_re_exec(re, "abc\xff", 4, 0, 0, m, &err), TIDE_EREGEX);
  assert_non_null(strstr(err.msg, "re: invalid UTF-8 in subject at offset 3"));
  assert_int_equal(tide_re_exec(re, s, strlen(s), 4, 0, m, &err), TIDE_EREGEX);
  assert_string_equal(err.msg, "re: start offset 4 is inside a UTF-8 character");
  tide_re_match_free(m);
  tide_re_release(re);

  /* Without u the same bytes are fine. */
  re = compile_ok("\\w+", 0);
  m = tide_re_match_new(re);
  assert_int_equal(tide_re_exec(re, "ab\xff", 3, 0, 0, m, &err), 1);
  tide_re_match_free(m);
  tide_re_release(re);
}

/* Collects "start-end" of every match of p in s through tide_re_next. */
static void all_matches(const char *p, unsigned flags, const char *s, char *out, size_t outsz)
{
  tide_re *re = compile_ok(p, flags);
  tide_re_match *m = tide_re_match_new(re);
  tide_err err;
  size_t pos = 0;
  int last_empty = 0, checked = 0;
  out[0] = '\0';
  int rc;
  while ((rc = tide_re_next(re, s, strlen(s), &pos, &last_empty, &checked, m, &err)) == 1) {
    const size_t *ov = tide_re_ovector(m);
    size_t n = strlen(out);
    snprintf(out + n, outsz - n, "%s%zu-%zu", n ? " " : "", ov[0], ov[1]);
  }
  assert_int_equal(rc, 0);
  tide_re_match_free(m);
  tide_re_release(re);
}

static void test_iteration(void **state)
{
  char out[256];
  all_matches("x*", 0, "axb", out, sizeof out);
  assert_string_equal(out, "0-0 1-2 2-2 3-3"); /* Perl: s/x*\/-/g on axb gives -a--b- */
  all_matches("\\w*", 0, "abc", out, sizeof out);
  assert_string_equal(out, "0-3 3-3");
  all_matches("", TIDE_RE_UTF, "\xc3\xa9t", out, sizeof out);
  assert_string_equal(out, "0-0 2-2 3-3"); /* steps over the whole é */
  all_matches("(*CRLF)$", TIDE_RE_MULTILINE, "a\r\nb", out, sizeof out);
  assert_string_equal(out, "1-1 4-4");
  all_matches("", 0, "", out, sizeof out);
  assert_string_equal(out, "0-0");
  all_matches("b", 0, "abab", out, sizeof out);
  assert_string_equal(out, "1-2 3-4");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags),
      cmocka_unit_test(test_bad_pattern),
      cmocka_unit_test(test_match_and_groups),
      cmocka_unit_test(test_nul_bytes),
      cmocka_unit_test(test_cache),
      cmocka_unit_test(test_backtracking_limit),
      cmocka_unit_test(test_utf),
      cmocka_unit_test(test_iteration),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
