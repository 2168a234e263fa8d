/*
** Regular expressions: PCRE2 compile with JIT, an LRU compile cache, and bounded matching.
**
** The cache is a chained hash table over (flags, pattern bytes) plus a most-recently-used list;
** one mutex guards both. Compiling happens outside the lock, so two threads that miss on the same
** pattern both compile it and the second insert keeps the first copy. Patterns are reference
** counted with atomics: the cache holds one reference while an entry is cached.
**
** This unit does not know about Lua: captures, replacement templates and the Lua semantics of
** init offsets live in lua/lre.c.
*/
#include "tide/re.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define NBUCKETS 512 /* power of two, about twice TIDE_RE_CACHE_SIZE */

struct tide_re {
  pcre2_code *code;
  char *pattern; /* owned copy, NUL-terminated for tide_re_pattern() callers */
  size_t len;
  unsigned flags;
  uint32_t hash;
  atomic_int refs; /* the cache's (while cached) plus every holder's */
  int ngroups;
  int nnames;
  int name_entry; /* bytes per name table entry */
  PCRE2_SPTR names;
  int utf, crlf;
  /* Cache links, guarded by cache.lock; meaningful only while cached. */
  tide_re *hnext;
  tide_re *newer, *older;
};

struct tide_re_match {
  pcre2_match_data *md;
};

static struct {
  uv_mutex_t lock;
  tide_re *buckets[NBUCKETS];
  tide_re *newest, *oldest; /* the LRU list */
  size_t entries;
  size_t compiles;
  pcre2_match_context *mctx; /* limits; shared read-only by every match */
  pcre2_compile_context *cctx;
} cache;

static uv_once_t cache_once = UV_ONCE_INIT;

/*
** Each thread gets its own JIT stack on first use, so that long subjects with repeated groups
** do not run out of the 32 KiB default. The memory is reserved, not committed, until used; it
** lives as long as the thread (the loop thread and the pool's threads live as long as tide).
*/
static _Thread_local pcre2_jit_stack *jit_stack;

static pcre2_jit_stack *get_jit_stack(void *data)
{
  (void)data;
  if (!jit_stack)
    jit_stack = pcre2_jit_stack_create(32 * 1024, TIDE_RE_JIT_STACK, NULL);
  return jit_stack; /* NULL makes PCRE2 use the small stack on the machine stack */
}

static void cache_init(void)
{
  if (uv_mutex_init(&cache.lock) != 0)
    abort(); /* only fails when the system is out of resources at start-up */
  cache.mctx = pcre2_match_context_create(NULL);
  cache.cctx = pcre2_compile_context_create(NULL);
  if (cache.mctx) {
    pcre2_set_match_limit(cache.mctx, TIDE_RE_MATCH_LIMIT);
    pcre2_set_depth_limit(cache.mctx, TIDE_RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(cache.mctx, TIDE_RE_HEAP_LIMIT);
    pcre2_jit_stack_assign(cache.mctx, get_jit_stack, NULL);
  }
}

int tide_re_flags(const char *s, size_t len, unsigned *flags, tide_err *err)
{
  unsigned f = 0;
  for (size_t i = 0; i < len; i++) {
    switch (s[i]) {
      case 'i':
        f |= TIDE_RE_CASELESS;
        break;
      case 'm':
        f |= TIDE_RE_MULTILINE;
        break;
      case 's':
        f |= TIDE_RE_DOTALL;
        break;
      case 'x':
        f |= TIDE_RE_EXTENDED;
        break;
      case 'u':
        f |= TIDE_RE_UTF;
        break;
      case 'n':
        f |= TIDE_RE_NOCAPTURE;
        break;
      case 'A':
        f |= TIDE_RE_ANCHORED;
        break;
      case 'U':
        f |= TIDE_RE_UNGREEDY;
        break;
      default:
        if ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f)
          return tide_err_set(err, TIDE_EINPUT, "re: unknown flag '%c'", s[i]);
        return tide_err_set(err, TIDE_EINPUT, "re: unknown flag '\\x%02x'", (unsigned char)s[i]);
    }
  }
  *flags = f;
  return 0;
}

static uint32_t hash_key(const char *p, size_t len, unsigned flags)
{
  /* FNV-1a over the flags and the bytes; the table is small and keys are short. */
  uint32_t h = 2166136261u ^ flags;
  h *= 16777619u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

static uint32_t compile_options(unsigned flags)
{
  /* \C can split a UTF-8 character and lets a match end inside one; nobody needs it here. */
  uint32_t o = PCRE2_NEVER_BACKSLASH_C;
  if (flags & TIDE_RE_CASELESS)
    o |= PCRE2_CASELESS;
  if (flags & TIDE_RE_MULTILINE)
    o |= PCRE2_MULTILINE;
  if (flags & TIDE_RE_DOTALL)
    o |= PCRE2_DOTALL;
  if (flags & TIDE_RE_EXTENDED)
    o |= PCRE2_EXTENDED;
  if (flags & TIDE_RE_UTF)
    o |= PCRE2_UTF | PCRE2_UCP;
  if (flags & TIDE_RE_NOCAPTURE)
    o |= PCRE2_NO_AUTO_CAPTURE;
  if (flags & TIDE_RE_ANCHORED)
    o |= PCRE2_ANCHORED;
  if (flags & TIDE_RE_UNGREEDY)
    o |= PCRE2_UNGREEDY;
  return o;
}

static void re_free(tide_re *re)
{
  pcre2_code_free(re->code);
  free(re->pattern);
  free(re);
}

tide_re *tide_re_retain(tide_re *re)
{
  atomic_fetch_add_explicit(&re->refs, 1, memory_order_relaxed);
  return re;
}

void tide_re_release(tide_re *re)
{
  if (re && atomic_fetch_sub_explicit(&re->refs, 1, memory_order_acq_rel) == 1)
    re_free(re);
}

/* Unlinks re from the LRU list. Caller holds the lock. */
static void lru_unlink(tide_re *re)
{
  if (re->newer)
    re->newer->older = re->older;
  else
    cache.newest = re->older;
  if (re->older)
    re->older->newer = re->newer;
  else
    cache.oldest = re->newer;
  re->newer = re->older = NULL;
}

static void lru_push(tide_re *re)
{
  re->older = cache.newest;
  re->newer = NULL;
  if (cache.newest)
    cache.newest->newer = re;
  cache.newest = re;
  if (!cache.oldest)
    cache.oldest = re;
}

/* Removes re from the table and the list; the caller then drops the cache's reference. */
static void cache_remove(tide_re *re)
{
  tide_re **pp = &cache.buckets[re->hash & (NBUCKETS - 1)];
  while (*pp != re)
    pp = &(*pp)->hnext;
  *pp = re->hnext;
  re->hnext = NULL;
  lru_unlink(re);
  cache.entries--;
}

/* Finds a cached entry and marks it most recently used. Caller holds the lock. */
static tide_re *cache_find(const char *p, size_t len, unsigned flags, uint32_t h)
{
  for (tide_re *re = cache.buckets[h & (NBUCKETS - 1)]; re; re = re->hnext) {
    if (re->hash == h && re->flags == flags && re->len == len && memcmp(re->pattern, p, len) == 0) {
      lru_unlink(re);
      lru_push(re);
      return re;
    }
  }
  return NULL;
}

static int re_build(const char *p, size_t len, unsigned flags, uint32_t h, tide_re **out,
                    tide_err *err)
{
  int errcode;
  PCRE2_SIZE erroff;
  pcre2_code *code =
      pcre2_compile((PCRE2_SPTR)p, len, compile_options(flags), &errcode, &erroff, cache.cctx);
  if (!code) {
    if (errcode == PCRE2_ERROR_HEAPLIMIT || errcode == PCRE2_ERROR_NOMEMORY)
      return tide_err_set(err, -ENOMEM, "re: out of memory compiling a pattern");
    PCRE2_UCHAR msg[160];
    if (pcre2_get_error_message(errcode, msg, sizeof msg) < 0)
      strcpy((char *)msg, "unknown error");
    return tide_err_set(err, TIDE_EREGEX, "re: bad pattern at offset %zu: %s", (size_t)erroff,
                        (char *)msg);
  }
  /* JIT is an optimisation: where it is missing or refuses a pattern, the interpreter runs it. */
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);

  tide_re *re = calloc(1, sizeof *re);
  char *copy = malloc(len + 1);
  if (!re || !copy) {
    free(re);
    free(copy);
    pcre2_code_free(code);
    return tide_err_set(err, -ENOMEM, "re: out of memory compiling a pattern");
  }
  memcpy(copy, p, len);
  copy[len] = '\0';
  re->code = code;
  re->pattern = copy;
  re->len = len;
  re->flags = flags;
  re->hash = h;
  atomic_init(&re->refs, 1);

  uint32_t n = 0, all = 0, nl = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &n);
  re->ngroups = (int)n;
  pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &n);
  re->nnames = (int)n;
  pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &n);
  re->name_entry = (int)n;
  pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &re->names);
  /* (*UTF) and (*CRLF) in the pattern itself count too, hence the compiled options. */
  pcre2_pattern_info(code, PCRE2_INFO_ALLOPTIONS, &all);
  re->utf = (all & PCRE2_UTF) != 0;
  pcre2_pattern_info(code, PCRE2_INFO_NEWLINE, &nl);
  re->crlf = nl == PCRE2_NEWLINE_ANY || nl == PCRE2_NEWLINE_CRLF || nl == PCRE2_NEWLINE_ANYCRLF;
  *out = re;
  return 0;
}

int tide_re_compile(const char *pattern, size_t len, unsigned flags, tide_re **out, tide_err *err)
{
  uv_once(&cache_once, cache_init);
  if (!cache.mctx || !cache.cctx)
    return tide_err_set(err, -ENOMEM, "re: out of memory");
  uint32_t h = hash_key(pattern, len, flags);

  uv_mutex_lock(&cache.lock);
  tide_re *hit = cache_find(pattern, len, flags, h);
  if (hit)
    tide_re_retain(hit);
  uv_mutex_unlock(&cache.lock);
  if (hit) {
    *out = hit;
    return 0;
  }

  tide_re *re = NULL;
  int rc = re_build(pattern, len, flags, h, &re, err);
  if (rc < 0)
    return rc;

  tide_re *evicted = NULL;
  uv_mutex_lock(&cache.lock);
  cache.compiles++;
  hit = cache_find(pattern, len, flags, h);
  if (hit) {
    /* Another thread compiled the same pattern meanwhile: share its copy. */
    tide_re_retain(hit);
  } else {
    if (cache.entries >= TIDE_RE_CACHE_SIZE) {
      evicted = cache.oldest;
      cache_remove(evicted);
    }
    tide_re_retain(re); /* the cache's reference */
    tide_re **b = &cache.buckets[h & (NBUCKETS - 1)];
    re->hnext = *b;
    *b = re;
    lru_push(re);
    cache.entries++;
  }
  uv_mutex_unlock(&cache.lock);

  tide_re_release(evicted);
  if (hit) {
    tide_re_release(re);
    re = hit;
  }
  *out = re;
  return 0;
}

void tide_re_cache_stats(size_t *entries, size_t *compiles)
{
  uv_once(&cache_once, cache_init);
  uv_mutex_lock(&cache.lock);
  if (entries)
    *entries = cache.entries;
  if (compiles)
    *compiles = cache.compiles;
  uv_mutex_unlock(&cache.lock);
}

void tide_re_cache_clear(void)
{
  uv_once(&cache_once, cache_init);
  for (;;) {
    uv_mutex_lock(&cache.lock);
    tide_re *re = cache.oldest;
    if (re)
      cache_remove(re);
    uv_mutex_unlock(&cache.lock);
    if (!re)
      break;
    tide_re_release(re);
  }
}

const char *tide_re_pattern(const tide_re *re, size_t *len)
{
  if (len)
    *len = re->len;
  return re->pattern;
}

unsigned tide_re_get_flags(const tide_re *re)
{
  return re->flags;
}

int tide_re_ngroups(const tide_re *re)
{
  return re->ngroups;
}

int tide_re_nnames(const tide_re *re)
{
  return re->nnames;
}

const char *tide_re_name(const tide_re *re, int i, int *group)
{
  /* Each entry: the group number in two big-endian bytes, then the NUL-terminated name. */
  PCRE2_SPTR e = re->names + (size_t)i * (size_t)re->name_entry;
  if (group)
    *group = (e[0] << 8) | e[1];
  return (const char *)e + 2;
}

int tide_re_group_number(const tide_re *re, const char *name)
{
  int n = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)name);
  return n > 0 ? n : -1;
}

int tide_re_is_utf(const tide_re *re)
{
  return re->utf;
}

int tide_re_crlf_is_newline(const tide_re *re)
{
  return re->crlf;
}

tide_re_match *tide_re_match_new(const tide_re *re)
{
  tide_re_match *m = malloc(sizeof *m);
  if (!m)
    return NULL;
  m->md = pcre2_match_data_create_from_pattern(re->code, NULL);
  if (!m->md) {
    free(m);
    return NULL;
  }
  return m;
}

void tide_re_match_free(tide_re_match *m)
{
  if (m) {
    pcre2_match_data_free(m->md);
    free(m);
  }
}

const size_t *tide_re_ovector(const tide_re_match *m)
{
  return pcre2_get_ovector_pointer(m->md);
}

static int exec_error(int rc, size_t start, tide_re_match *m, tide_err *err)
{
  PCRE2_UCHAR msg[160];
  if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
    strcpy((char *)msg, "unknown error");
  switch (rc) {
    case PCRE2_ERROR_MATCHLIMIT:
    case PCRE2_ERROR_DEPTHLIMIT:
    case PCRE2_ERROR_HEAPLIMIT:
    case PCRE2_ERROR_JIT_STACKLIMIT:
      return tide_err_set(err, TIDE_ELIMIT, "re: %s (the pattern backtracks too much)",
                          (char *)msg);
    case PCRE2_ERROR_NOMEMORY:
      return tide_err_set(err, -ENOMEM, "re: out of memory matching");
    case PCRE2_ERROR_BADUTFOFFSET:
      return tide_err_set(err, TIDE_EREGEX, "re: start offset %zu is inside a UTF-8 character",
                          start);
    default:
      break;
  }
  if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
    return tide_err_set(err, TIDE_EREGEX, "re: invalid UTF-8 in subject at offset %zu: %s",
                        (size_t)pcre2_get_startchar(m->md), (char *)msg);
  return tide_err_set(err, TIDE_EREGEX, "re: match failed: %s", (char *)msg);
}

int tide_re_exec(const tide_re *re, const char *subject, size_t len, size_t start, unsigned xflags,
                 tide_re_match *m, tide_err *err)
{
  if (start > len)
    return 0;
  uint32_t o = 0;
  if (xflags & TIDE_RE_NOTEMPTY_ATSTART)
    o |= PCRE2_NOTEMPTY_ATSTART;
  if (xflags & TIDE_RE_EXEC_ANCHORED)
    o |= PCRE2_ANCHORED;
  if (xflags & TIDE_RE_NO_UTF_CHECK)
    o |= PCRE2_NO_UTF_CHECK;
  /* An empty subject may come as NULL from callers; PCRE2 wants a pointer. */
  PCRE2_SPTR s = subject ? (PCRE2_SPTR)subject : (PCRE2_SPTR) "";
  int rc = pcre2_match(re->code, s, len, start, o, m->md, cache.mctx);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    /* The interpreter keeps its frames on the heap, bounded by the heap limit instead. */
    rc = pcre2_match(re->code, s, len, start, o | PCRE2_NO_JIT, m->md, cache.mctx);
  }
  if (rc == PCRE2_ERROR_NOMATCH)
    return 0;
  if (rc < 0)
    return exec_error(rc, start, m, err);
  const size_t *ov = pcre2_get_ovector_pointer(m->md);
  if (ov[0] > ov[1]) {
    /* Only \K inside a lookahead can do this; callers assume start <= end. */
    return tide_err_set(err, TIDE_EREGEX, "re: match at %zu ends before it starts (\\K)", ov[0]);
  }
  return 1;
}

int tide_re_next(const tide_re *re, const char *subject, size_t len, size_t *pos, int *last_empty,
                 int *checked, tide_re_match *m, tide_err *err)
{
  for (;;) {
    size_t p = *pos;
    if (p > len || (*last_empty && p == len))
      return 0;
    unsigned x = *checked ? TIDE_RE_NO_UTF_CHECK : 0;
    if (*last_empty)
      x |= TIDE_RE_NOTEMPTY_ATSTART | TIDE_RE_EXEC_ANCHORED;
    int rc = tide_re_exec(re, subject, len, p, x, m, err);
    if (rc < 0)
      return rc;
    *checked = 1;
    if (rc == 1) {
      const size_t *ov = tide_re_ovector(m);
      *pos = ov[1];
      *last_empty = ov[0] == ov[1];
      return 1;
    }
    if (!*last_empty) {
      *pos = len + 1;
      return 0;
    }
    /* No non-empty match at p after an empty one: move on one character and search again. */
    *last_empty = 0;
    p++;
    if (re->crlf && p < len && subject[p - 1] == '\r' && subject[p] == '\n')
      p++;
    else if (re->utf)
      while (p < len && ((unsigned char)subject[p] & 0xc0) == 0x80)
        p++;
    *pos = p;
  }
}
