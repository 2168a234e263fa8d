/*
** Streaming masker. Every pattern is at least TIDE_MASK_MIN_LEN (8) bytes long, so every
** occurrence covers a text position that is a multiple of STEP (5) together with the 4 bytes
** after it, and those 4 bytes are the pattern's bytes at an offset 0..STEP-1. The scan therefore
** looks at one 4-byte gram every STEP bytes, tests it against a bitmap of the grams of every
** pattern at offsets 0..STEP-1, and only on a hit looks up the candidates and compares. That keeps
** the cost per byte far below a byte-at-a-time automaton for the few hundred patterns a run has.
*/
#include "tide/mask.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define GRAM 4
#define STEP (TIDE_MASK_MIN_LEN - GRAM + 1)
#define FILTER_BITS 18 /* 32 KiB bitmap: stays in L1/L2 while scanning */
#define BUCKET_BITS 12

typedef struct pattern {
  size_t off, len; /* in the arena */
} pattern;

typedef struct gram_entry {
  uint32_t gram;
  uint32_t pat;   /* index into patterns */
  uint32_t shift; /* offset of the gram in the pattern, 0..STEP-1 */
} gram_entry;

struct tide_mask {
  int refs;
  unsigned char *arena; /* sodium_malloc'd pattern bytes */
  size_t arena_len, arena_size;
  pattern *pats;
  size_t npats, pats_size;
  size_t max_len;
  /* The index, rebuilt after every add (adds are rare, scans are hot). */
  uint64_t filter[(1u << FILTER_BITS) / 64];
  uint32_t bucket_start[(1u << BUCKET_BITS) + 1];
  gram_entry *entries;
  uint64_t first_bytes[4];      /* bitmap of the first byte of every pattern */
  uint32_t by_first_start[257]; /* patterns by first byte: by_first[start[c]..start[c+1]) */
  uint32_t *by_first;
  uint64_t *values; /* short digests of the values registered, to skip them the next time */
  size_t nvalues, values_size;
};

struct tide_mask_stream {
  tide_mask *m;
  char *carry; /* withheld tail: may be the start of an occurrence */
  size_t carry_len, carry_size;
  char *work; /* carry + chunk */
  size_t work_size;
  char *out; /* masked output of one feed */
  size_t out_size;
  size_t *ivals; /* match intervals, pairs of [start, end) */
  size_t nivals, ivals_size;
};

static uint32_t load32(const unsigned char *p)
{
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static uint32_t hash_gram(uint32_t g)
{
  return (g * 0x9E3779B1u) >> (32 - FILTER_BITS);
}

tide_mask *tide_mask_new(void)
{
  if (sodium_init() < 0)
    return NULL;
  tide_mask *m = calloc(1, sizeof *m);
  if (m)
    m->refs = 1;
  return m;
}

tide_mask *tide_mask_ref(tide_mask *m)
{
  if (m)
    m->refs++;
  return m;
}

void tide_mask_unref(tide_mask *m)
{
  if (!m || --m->refs > 0)
    return;
  if (m->arena)
    sodium_free(m->arena);
  free(m->pats);
  free(m->entries);
  free(m->by_first);
  free(m->values);
  free(m);
}

size_t tide_mask_patterns(const tide_mask *m)
{
  return m->npats;
}

static const unsigned char *pat_bytes(const tide_mask *m, size_t i)
{
  return m->arena + m->pats[i].off;
}

static int rebuild_index(tide_mask *m)
{
  size_t n = m->npats * STEP;
  gram_entry *e = malloc((n ? n : 1) * sizeof *e);
  uint32_t *by_first = malloc((m->npats ? m->npats : 1) * sizeof *by_first);
  if (!e || !by_first) {
    free(e);
    free(by_first);
    return -ENOMEM;
  }
  memset(m->by_first_start, 0, sizeof m->by_first_start);
  memset(m->filter, 0, sizeof m->filter);
  memset(m->bucket_start, 0, sizeof m->bucket_start);
  memset(m->first_bytes, 0, sizeof m->first_bytes);
  for (size_t i = 0; i < m->npats; i++) {
    const unsigned char *p = pat_bytes(m, i);
    m->first_bytes[p[0] >> 6] |= 1ull << (p[0] & 63);
    m->by_first_start[p[0] + 1]++;
    for (uint32_t j = 0; j < STEP; j++) {
      uint32_t h = hash_gram(load32(p + j));
      m->filter[h >> 6] |= 1ull << (h & 63);
      m->bucket_start[(h >> (FILTER_BITS - BUCKET_BITS)) + 1]++;
    }
  }
  for (size_t b = 1; b <= (1u << BUCKET_BITS); b++)
    m->bucket_start[b] += m->bucket_start[b - 1];
  for (size_t c = 1; c <= 256; c++)
    m->by_first_start[c] += m->by_first_start[c - 1];
  uint32_t fill[1u << BUCKET_BITS], fill_first[256];
  memcpy(fill, m->bucket_start, sizeof fill);
  memcpy(fill_first, m->by_first_start, sizeof fill_first);
  for (size_t i = 0; i < m->npats; i++) {
    const unsigned char *p = pat_bytes(m, i);
    by_first[fill_first[p[0]]++] = (uint32_t)i;
    for (uint32_t j = 0; j < STEP; j++) {
      uint32_t g = load32(p + j);
      uint32_t b = hash_gram(g) >> (FILTER_BITS - BUCKET_BITS);
      e[fill[b]++] = (gram_entry){g, (uint32_t)i, j};
    }
  }
  free(m->entries);
  m->entries = e;
  free(m->by_first);
  m->by_first = by_first;
  return 0;
}

/* Adds one pattern unless it is too short or already there. 1 added, 0 skipped, or -ENOMEM. */
static int add_pattern(tide_mask *m, const unsigned char *d, size_t n)
{
  if (n < TIDE_MASK_MIN_LEN)
    return 0;
  for (size_t i = 0; i < m->npats; i++)
    if (m->pats[i].len == n && memcmp(pat_bytes(m, i), d, n) == 0)
      return 0;
  if (m->arena_len + n > m->arena_size) {
    size_t size = m->arena_size ? m->arena_size : 4096;
    while (size < m->arena_len + n)
      size *= 2;
    unsigned char *a = sodium_malloc(size);
    if (!a)
      return -ENOMEM;
    if (m->arena) {
      memcpy(a, m->arena, m->arena_len);
      sodium_free(m->arena);
    }
    m->arena = a;
    m->arena_size = size;
  }
  if (m->npats == m->pats_size) {
    size_t size = m->pats_size ? m->pats_size * 2 : 16;
    pattern *p = realloc(m->pats, size * sizeof *p);
    if (!p)
      return -ENOMEM;
    m->pats = p;
    m->pats_size = size;
  }
  memcpy(m->arena + m->arena_len, d, n);
  m->pats[m->npats++] = (pattern){m->arena_len, n};
  m->arena_len += n;
  if (n > m->max_len)
    m->max_len = n;
  return 1;
}

static int grow_values(tide_mask *m)
{
  if (m->nvalues < m->values_size)
    return 0;
  size_t size = m->values_size ? m->values_size * 2 : 16;
  uint64_t *v = realloc(m->values, size * sizeof *v);
  if (!v)
    return -ENOMEM;
  m->values = v;
  m->values_size = size;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Derived forms. Each is built in a guarded scratch buffer, registered, and wiped.
*/

typedef struct scratch {
  unsigned char *b;
  size_t len, size;
} scratch;

static void put(scratch *s, const char *d, size_t n)
{
  memcpy(s->b + s->len, d, n);
  s->len += n;
}

static int add_base64(tide_mask *m, scratch *s, const unsigned char *v, size_t n)
{
  static const int variants[2] = {sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING};
  for (int k = 0; k < 2; k++)
    for (size_t shift = 0; shift < 3 && shift < n; shift++) {
      size_t rest = n - shift;
      sodium_bin2base64((char *)s->b, s->size, v + shift, rest, variants[k]);
      size_t len = strlen((char *)s->b);
      /* The last character also depends on the bytes after the value, unless it ends a group. */
      if (rest % 3 != 0)
        len--;
      int rc = add_pattern(m, s->b, len);
      if (rc < 0)
        return rc;
    }
  return 0;
}

static int add_hex(tide_mask *m, scratch *s, const unsigned char *v, size_t n)
{
  sodium_bin2hex((char *)s->b, s->size, v, n);
  int rc = add_pattern(m, s->b, 2 * n);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < 2 * n; i++)
    if (s->b[i] >= 'a' && s->b[i] <= 'f')
      s->b[i] = (unsigned char)(s->b[i] - 'a' + 'A');
  return add_pattern(m, s->b, 2 * n);
}

static int add_urlencoded(tide_mask *m, scratch *s, const unsigned char *v, size_t n)
{
  static const char hex[] = "0123456789ABCDEF";
  for (int query = 0; query < 2; query++) {
    s->len = 0;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = v[i];
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.' || c == '~') {
        put(s, (const char *)&c, 1);
      } else if (c == ' ' && query) {
        put(s, "+", 1);
      } else {
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        put(s, e, 3);
      }
    }
    int rc = s->len != n ? add_pattern(m, s->b, s->len) : 0;
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int add_json(tide_mask *m, scratch *s, const unsigned char *v, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  /* Both the plain form and lua-cjson's, which also escapes '/'. */
  for (int slash = 0; slash < 2; slash++) {
    s->len = 0;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = v[i];
      switch (c) {
        case '"':
          put(s, "\\\"", 2);
          break;
        case '\\':
          put(s, "\\\\", 2);
          break;
        case '\n':
          put(s, "\\n", 2);
          break;
        case '\r':
          put(s, "\\r", 2);
          break;
        case '\t':
          put(s, "\\t", 2);
          break;
        case '\b':
          put(s, "\\b", 2);
          break;
        case '\f':
          put(s, "\\f", 2);
          break;
        case '/':
          if (slash)
            put(s, "\\/", 2);
          else
            put(s, "/", 1);
          break;
        default:
          if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(s, e, 6);
          } else {
            put(s, (const char *)&c, 1);
          }
      }
    }
    int rc = s->len != n ? add_pattern(m, s->b, s->len) : 0;
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int add_shell_quoted(tide_mask *m, scratch *s, const unsigned char *v, size_t n)
{
  s->len = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] == '\'')
      put(s, "'\\''", 4);
    else
      put(s, (const char *)v + i, 1);
  }
  return s->len != n ? add_pattern(m, s->b, s->len) : 0;
}

/* Each line (without "\r\n" or "\n") of a value that has more than one. */
static int add_lines(tide_mask *m, const unsigned char *v, size_t n, int *short_lines)
{
  if (!memchr(v, '\n', n))
    return 0;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && v[i] != '\n')
      continue;
    size_t end = i;
    if (end > start && v[end - 1] == '\r')
      end--;
    if (end - start >= TIDE_MASK_MIN_LEN) {
      int rc = add_pattern(m, v + start, end - start);
      if (rc < 0)
        return rc;
    } else if (end > start) {
      (*short_lines)++;
    }
    start = i + 1;
  }
  return 0;
}

int tide_mask_add(tide_mask *m, const void *value, size_t len, tide_err *err)
{
  const unsigned char *v = value;
  if (len < TIDE_MASK_MIN_LEN)
    return tide_err_set(err, TIDE_EINPUT, "a value shorter than %d bytes cannot be masked",
                        TIDE_MASK_MIN_LEN);
  /* Values are read again and again: a value registered before has all its forms already. */
  uint64_t digest;
  crypto_generichash((unsigned char *)&digest, sizeof digest, v, len, NULL, 0);
  for (size_t i = 0; i < m->nvalues; i++)
    if (m->values[i] == digest)
      return 0;
  if (grow_values(m) < 0)
    return tide_err_set(err, -ENOMEM, "cannot register a value for masking: out of memory");
  scratch s = {0};
  /* The longest form is \u00XX JSON escaping: 6 bytes per byte. */
  s.size = len * 6 + 8;
  s.b = sodium_malloc(s.size);
  if (!s.b)
    return tide_err_set(err, -ENOMEM, "cannot register a value for masking: out of memory");
  int short_lines = 0;
  size_t before = m->npats;
  int rc = add_pattern(m, v, len);
  if (rc >= 0)
    rc = add_lines(m, v, len, &short_lines);
  if (rc >= 0)
    rc = add_base64(m, &s, v, len);
  if (rc >= 0)
    rc = add_hex(m, &s, v, len);
  if (rc >= 0)
    rc = add_urlencoded(m, &s, v, len);
  if (rc >= 0)
    rc = add_json(m, &s, v, len);
  if (rc >= 0)
    rc = add_shell_quoted(m, &s, v, len);
  sodium_free(s.b);
  if (rc >= 0 && m->npats != before)
    rc = rebuild_index(m);
  if (rc < 0)
    return tide_err_set(err, -ENOMEM, "cannot register a value for masking: out of memory");
  m->values[m->nvalues++] = digest;
  return short_lines;
}

/* ---------------------------------------------------------------------------------------------
** Matching
*/

static int grow(void *pbuf, size_t *size, size_t need, size_t elem)
{
  void **buf = pbuf;
  if (need <= *size)
    return 0;
  size_t n = *size ? *size : 64;
  while (n < need)
    n *= 2;
  void *b = realloc(*buf, n * elem);
  if (!b)
    return -ENOMEM;
  *buf = b;
  *size = n;
  return 0;
}

/* Collects [start, end) of every complete occurrence in w[0..n), in scan order. */
static void find_all(tide_mask_stream *s, const unsigned char *w, size_t n)
{
  const tide_mask *m = s->m;
  s->nivals = 0;
  if (m->npats == 0 || n < TIDE_MASK_MIN_LEN)
    return;
  for (size_t t = 0; t + GRAM <= n; t += STEP) {
    uint32_t g = load32(w + t);
    uint32_t h = hash_gram(g);
    if (!(m->filter[h >> 6] & (1ull << (h & 63))))
      continue;
    uint32_t b = h >> (FILTER_BITS - BUCKET_BITS);
    for (uint32_t k = m->bucket_start[b]; k < m->bucket_start[b + 1]; k++) {
      const gram_entry *e = &m->entries[k];
      if (e->gram != g || e->shift > t)
        continue;
      size_t start = t - e->shift, len = m->pats[e->pat].len;
      if (start + len > n || memcmp(w + start, pat_bytes(m, e->pat), len) != 0)
        continue;
      if (grow(&s->ivals, &s->ivals_size, 2 * s->nivals + 2, sizeof *s->ivals) < 0)
        return; /* out of memory: fewer intervals are found, so the caller masks everything */
      s->ivals[2 * s->nivals] = start;
      s->ivals[2 * s->nivals + 1] = start + len;
      s->nivals++;
    }
  }
}

static int cmp_ival(const void *a, const void *b)
{
  const size_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts and merges overlapping intervals. */
static void merge(tide_mask_stream *s)
{
  if (s->nivals < 2)
    return;
  qsort(s->ivals, s->nivals, 2 * sizeof *s->ivals, cmp_ival);
  size_t k = 0;
  for (size_t i = 1; i < s->nivals; i++) {
    if (s->ivals[2 * i] < s->ivals[2 * k + 1]) {
      if (s->ivals[2 * i + 1] > s->ivals[2 * k + 1])
        s->ivals[2 * k + 1] = s->ivals[2 * i + 1];
    } else {
      k++;
      s->ivals[2 * k] = s->ivals[2 * i];
      s->ivals[2 * k + 1] = s->ivals[2 * i + 1];
    }
  }
  s->nivals = k + 1;
}

/* The length of the longest suffix of w[0..n) that is a proper prefix of some pattern. */
static size_t held_suffix(const tide_mask *m, const unsigned char *w, size_t n)
{
  if (m->npats == 0)
    return 0;
  size_t from = n > m->max_len - 1 ? n - (m->max_len - 1) : 0;
  for (size_t j = from; j < n; j++) {
    if (!(m->first_bytes[w[j] >> 6] & (1ull << (w[j] & 63))))
      continue;
    size_t k = n - j;
    for (uint32_t x = m->by_first_start[w[j]]; x < m->by_first_start[w[j] + 1]; x++) {
      uint32_t i = m->by_first[x];
      if (m->pats[i].len > k && memcmp(pat_bytes(m, i), w + j, k) == 0)
        return k;
    }
  }
  return 0;
}

tide_mask_stream *tide_mask_stream_new(tide_mask *m)
{
  tide_mask_stream *s = calloc(1, sizeof *s);
  if (s)
    s->m = tide_mask_ref(m);
  return s;
}

void tide_mask_stream_free(tide_mask_stream *s)
{
  if (!s)
    return;
  if (s->carry)
    sodium_memzero(s->carry, s->carry_size);
  if (s->work)
    sodium_memzero(s->work, s->work_size);
  free(s->carry);
  free(s->work);
  free(s->out);
  free(s->ivals);
  tide_mask_unref(s->m);
  free(s);
}

/*
** Emits w[0..n) masked, except a tail withheld in carry when at_end is 0. Returns the number of
** bytes withheld.
*/
static void process(tide_mask_stream *s, const char *w, size_t n, int at_end, tide_mask_out_fn out,
                    void *ud)
{
  const unsigned char *u = (const unsigned char *)w;
  find_all(s, u, n);
  size_t emit_end = at_end ? n : n - held_suffix(s->m, u, n);
  merge(s);
  size_t nout = 0, pos = 0;
  int masked = 0;
  for (size_t i = 0; i < s->nivals; i++) {
    size_t a = s->ivals[2 * i], b = s->ivals[2 * i + 1];
    if (a >= emit_end)
      break; /* seen again with the bytes that follow */
    if (b > emit_end)
      emit_end = b;
    if (grow(&s->out, &s->out_size, nout + (a - pos) + 3, 1) < 0) {
      /* Out of memory: emit nothing of this chunk rather than something unmasked. */
      s->carry_len = 0;
      return;
    }
    memcpy(s->out + nout, w + pos, a - pos);
    nout += a - pos;
    memcpy(s->out + nout, TIDE_MASK_REPLACEMENT, 3);
    nout += 3;
    pos = b;
    masked = 1;
  }
  if (masked) {
    if (grow(&s->out, &s->out_size, nout + (emit_end - pos), 1) < 0) {
      s->carry_len = 0;
      return;
    }
    memcpy(s->out + nout, w + pos, emit_end - pos);
    nout += emit_end - pos;
    if (nout)
      out(ud, s->out, nout);
  } else if (emit_end > 0) {
    out(ud, w, emit_end);
  }
  size_t keep = n - emit_end;
  if (grow(&s->carry, &s->carry_size, keep, 1) < 0) {
    s->carry_len = 0;
    return;
  }
  if (keep)
    memmove(s->carry, w + emit_end, keep);
  s->carry_len = keep;
}

void tide_mask_feed(tide_mask_stream *s, const char *d, size_t n, tide_mask_out_fn out, void *ud)
{
  if (n == 0)
    return;
  if (s->m->npats == 0 && s->carry_len == 0) {
    out(ud, d, n);
    return;
  }
  if (s->carry_len == 0) {
    process(s, d, n, 0, out, ud);
    return;
  }
  if (grow(&s->work, &s->work_size, s->carry_len + n, 1) < 0) {
    s->carry_len = 0; /* drop rather than leak: the withheld bytes may be part of a value */
    return;
  }
  memcpy(s->work, s->carry, s->carry_len);
  memcpy(s->work + s->carry_len, d, n);
  process(s, s->work, s->carry_len + n, 0, out, ud);
}

void tide_mask_flush(tide_mask_stream *s, tide_mask_out_fn out, void *ud)
{
  if (s->carry_len == 0)
    return;
  if (grow(&s->work, &s->work_size, s->carry_len, 1) < 0) {
    s->carry_len = 0;
    return;
  }
  memcpy(s->work, s->carry, s->carry_len);
  size_t n = s->carry_len;
  s->carry_len = 0;
  process(s, s->work, n, 1, out, ud);
}

typedef struct strbuf {
  char *b;
  size_t len, size;
  int oom;
} strbuf;

static void append(void *ud, const char *d, size_t n)
{
  strbuf *sb = ud;
  if (sb->oom || grow(&sb->b, &sb->size, sb->len + n + 1, 1) < 0) {
    sb->oom = 1;
    return;
  }
  memcpy(sb->b + sb->len, d, n);
  sb->len += n;
}

char *tide_mask_string(tide_mask *m, const char *d, size_t n, size_t *out_len)
{
  strbuf sb = {0};
  if (m && m->npats > 0) {
    tide_mask_stream *s = tide_mask_stream_new(m);
    if (!s)
      return NULL;
    tide_mask_feed(s, d, n, append, &sb);
    tide_mask_flush(s, append, &sb);
    tide_mask_stream_free(s);
  } else {
    append(&sb, d, n);
  }
  if (sb.oom || grow(&sb.b, &sb.size, sb.len + 1, 1) < 0) {
    free(sb.b);
    return NULL;
  }
  sb.b[sb.len] = '\0';
  if (out_len)
    *out_len = sb.len;
  return sb.b;
}
