/*
** libFuzzer target for the glob matcher in host/fs.c. The first input byte holds the flags; the
** rest is a pattern, a NUL byte, then a path. Beyond not crashing, two properties must hold: a
** path always matches itself with every character escaped (".." segments kept as written, since
** only the literal ".." matches one), and without TIDE_FS_HIDDEN a match implies a match with it.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Escapes every byte of path except '/' and ".." segments. */
static char *escape_path(const char *path, size_t len)
{
  char *out = malloc(2 * len + 1), *o = out;
  if (!out)
    abort();
  for (size_t i = 0; i < len;) {
    size_t j = i;
    while (j < len && path[j] != '/')
      j++;
    int dots =
        (j - i == 2 && path[i] == '.' && path[i + 1] == '.') || (j - i == 1 && path[i] == '.');
    for (size_t k = i; k < j; k++) {
      if (!dots)
        *o++ = '\\';
      *o++ = path[k];
    }
    if (j < len)
      *o++ = '/';
    i = j + 1;
  }
  *o = '\0';
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > 2048)
    return 0;
  unsigned flags = data[0] & TIDE_FS_HIDDEN;
  const char *rest = (const char *)data + 1;
  size_t n = size - 1;
  char *pattern = malloc(n + 1), *path;
  if (!pattern)
    abort();
  memcpy(pattern, rest, n);
  pattern[n] = '\0';
  size_t plen = strlen(pattern);
  path = plen < n ? pattern + plen + 1 : pattern + n;

  int m = tide_fs_match(pattern, path, flags);
  if (m && !tide_fs_match(pattern, path, flags | TIDE_FS_HIDDEN))
    abort();

  char *self = escape_path(path, strlen(path));
  if (!tide_fs_match(self, path, TIDE_FS_HIDDEN))
    abort();
  free(self);
  free(pattern);
  return 0;
}
