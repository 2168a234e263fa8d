/*
** libFuzzer target for the parsers of outside text in host/git.c: tide_git_known_host over a
** known_hosts text (the input up to its first NUL; the rest, if any, is the key) and
** tide_git_redact_url over the same text. Beyond not crashing: a URL's password comes out as
** "***" and nothing else changes, and a key matches itself when written as a known_hosts line.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/git.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void encode(const uint8_t *in, size_t n, char *out)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= in[i + 2];
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  size_t tlen = strlen(text);
  const uint8_t *key = data + tlen + (tlen < size);
  size_t klen = size - tlen - (tlen < size);

  tide_git_known_host(text, "host", 22, key, klen);
  tide_git_known_host(text, "h", 2222, key, klen);

  char out[512];
  tide_git_redact_url(text, out, sizeof out);
  /* "scheme://user:PASSWORD@host..." comes out as "scheme://user:***@host...". */
  const char *scheme = strstr(text, "://");
  if (scheme && tlen + 4 < sizeof out) {
    const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
      if (*p == '@')
        at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
      char want[sizeof out];
      size_t keep = (size_t)(colon + 1 - text);
      memcpy(want, text, keep);
      strcpy(want + keep, "***");
      strcat(want, at);
      if (strcmp(out, want) != 0)
        abort();
    }
  }

  if (klen > 0 && klen <= 1024) {
    char *line = malloc(klen * 2 + 64);
    if (line) {
      strcpy(line, "[h]:2222 ssh-ed25519 ");
      encode(key, klen, line + strlen(line));
      if (tide_git_known_host(line, "h", 2222, key, klen) != 0)
        abort();
      free(line);
    }
  }
  free(text);
  return 0;
}
