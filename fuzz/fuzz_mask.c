/*
** libFuzzer target for the streaming masker in host/mask.c. The input is split into a secret
** value (first byte: its length) and a text, which is fed in chunks whose sizes come from the
** text's own bytes. Beyond not crashing, the value must never appear in the output, streamed or
** whole (unless it contains '*', which the replacement itself could rebuild).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct buf {
  char *b;
  size_t len, size;
} buf;

static void collect(void *ud, const char *d, size_t n)
{
  buf *o = ud;
  if (o->len + n > o->size) {
    o->size = (o->len + n) * 2;
    o->b = realloc(o->b, o->size);
    if (!o->b)
      abort();
  }
  memcpy(o->b + o->len, d, n);
  o->len += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  size_t vlen = data[0] % 48;
  if (size < 1 + vlen)
    return 0;
  const char *value = (const char *)data + 1;
  const char *text = value + vlen;
  size_t tlen = size - 1 - vlen;
  tide_mask *m = tide_mask_new();
  if (!m)
    abort();
  int rc = tide_mask_add(m, value, vlen, NULL);
  if (vlen < TIDE_MASK_MIN_LEN && rc >= 0)
    abort();
  size_t whole_len;
  char *whole = tide_mask_string(m, text, tlen, &whole_len);
  if (!whole)
    abort();
  buf o = {0};
  tide_mask_stream *s = tide_mask_stream_new(m);
  size_t off = 0;
  while (off < tlen) {
    size_t chunk = 1 + (unsigned char)text[off] % 17;
    if (chunk > tlen - off)
      chunk = tlen - off;
    tide_mask_feed(s, text + off, chunk, collect, &o);
    off += chunk;
  }
  tide_mask_flush(s, collect, &o);
  tide_mask_stream_free(s);
  if (rc >= 0 && !memchr(value, '*', vlen) &&
      (memmem(o.b ? o.b : "", o.len, value, vlen) || memmem(whole, whole_len, value, vlen)))
    abort();
  free(o.b);
  free(whole);
  tide_mask_unref(m);
  return 0;
}
