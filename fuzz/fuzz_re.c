/*
** libFuzzer target for host/re.c. The first input byte holds compile flags (one bit per
** TIDE_RE_* flag); the rest is the pattern, a NUL byte, then the subject. A pattern that compiles
** is matched over the whole subject with tide_re_next, as gmatch and gsub do, and every offset is
** checked against the subject's bounds. Compiling twice must hit the cache.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/err.h"
#include "tide/re.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > 4096)
    return 0;
  unsigned flags = data[0];
  const char *rest = (const char *)data + 1;
  size_t n = size - 1;
  const char *nul = memchr(rest, '\0', n);
  size_t plen = nul ? (size_t)(nul - rest) : n;
  const char *subject = nul ? nul + 1 : "";
  size_t slen = nul ? n - plen - 1 : 0;

  tide_re *re;
  tide_err err;
  if (tide_re_compile(rest, plen, flags, &re, &err) < 0) {
    if (err.code != TIDE_EREGEX || strncmp(err.msg, "re: bad pattern at offset ", 26) != 0)
      abort();
    return 0;
  }
  tide_re *again;
  if (tide_re_compile(rest, plen, flags, &again, &err) < 0 || again != re)
    abort();
  tide_re_release(again);

  tide_re_match *m = tide_re_match_new(re);
  if (!m)
    abort();
  int ngroups = tide_re_ngroups(re);
  size_t pos = 0;
  int last_empty = 0, checked = 0, rc;
  for (int i = 0; i < 1000 &&
                  (rc = tide_re_next(re, subject, slen, &pos, &last_empty, &checked, m, &err)) == 1;
       i++) {
    const size_t *ov = tide_re_ovector(m);
    if (ov[0] > ov[1] || ov[1] > slen)
      abort();
    for (int g = 1; g <= ngroups; g++) {
      if (ov[2 * g] == TIDE_RE_UNSET)
        continue;
      /* lookarounds may capture outside the match, never outside the subject */
      if (ov[2 * g] > ov[2 * g + 1] || ov[2 * g + 1] > slen)
        abort();
    }
  }
  for (int i = 0; i < tide_re_nnames(re); i++) {
    int g;
    const char *name = tide_re_name(re, i, &g);
    if (g < 1 || g > ngroups || !name[0])
      abort();
  }
  tide_re_match_free(m);
  tide_re_release(re);
  return 0;
}
