/*
** YAML parsing and emitting on libyaml's event API.
**
** The parser turns events into tide_yaml_node trees allocated from one arena per stream, so a
** stream is freed in one sweep and an alias can simply point at its anchored node. It resolves
** scalar types here (not in the binding) so that C callers and the Lua module agree, and it
** enforces the limits documented in tide/yaml.h while reading, so nothing a hostile input asks
** for is ever expanded. It does not build Lua values and knows nothing of schemas.
**
** The emitter is a thin layer over yaml_emitter_t that writes into a growing buffer and adds one
** policy: a string is quoted whenever plain text would read back as something else.
*/
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE /* strtod_l, newlocale */
#endif
#include "tide/yaml.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "tide/err.h"

/* ---- Arena ------------------------------------------------------------------------------ */

#define CHUNK_SIZE (64 * 1024)
#define ALIGN 16

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  _Alignas(ALIGN) unsigned char data[];
} chunk;

typedef struct arena {
  chunk *head;
} arena;

static void arena_free(arena *a)
{
  if (!a)
    return;
  chunk *c = a->head;
  while (c) {
    chunk *next = c->next;
    free(c);
    c = next;
  }
  free(a);
}

/* Returns n zeroed bytes owned by the arena, or NULL when out of memory. */
static void *arena_alloc(arena *a, size_t n)
{
  if (n > SIZE_MAX - 2 * ALIGN - sizeof(chunk))
    return NULL;
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (n == 0)
    n = ALIGN;
  chunk *c = a->head;
  if (c && c->cap - c->used >= n) {
    void *p = c->data + c->used;
    c->used += n;
    return p;
  }
  /* Big blocks get a chunk of their own behind the head, so the head keeps its free space. */
  int own = n > CHUNK_SIZE / 4;
  size_t cap = own ? n : CHUNK_SIZE;
  chunk *nc = calloc(1, sizeof *nc + cap);
  if (!nc)
    return NULL;
  nc->cap = cap;
  nc->used = n;
  if (own && c) {
    nc->next = c->next;
    c->next = nc;
  } else {
    nc->next = c;
    a->head = nc;
  }
  return nc->data;
}

static char *arena_strndup(arena *a, const char *s, size_t n)
{
  char *p = n < SIZE_MAX ? arena_alloc(a, n + 1) : NULL;
  if (p) {
    if (n)
      memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* ---- Small helpers ---------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int bytes_eq(const char *s, size_t n, const char *lit)
{
  size_t m = strlen(lit);
  return m == n && memcmp(s, lit, n) == 0;
}

static int in_set(const char *s, size_t n, const char *const *set)
{
  for (; *set; set++)
    if (bytes_eq(s, n, *set))
      return 1;
  return 0;
}

/* Grows *vec (of elem-sized items, capacity *cap) to hold at least need items. */
static int grow(void *vec, size_t *cap, size_t need, size_t elem)
{
  if (need <= *cap)
    return 0;
  size_t ncap = *cap ? *cap : 16;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / elem)
      return -ENOMEM;
    ncap *= 2;
  }
  void *p = realloc(*(void **)vec, ncap * elem);
  if (!p)
    return -ENOMEM;
  *(void **)vec = p;
  *cap = ncap;
  return 0;
}

/* The "C" locale, so that numbers read and print the same whatever setlocale() said. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
  c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static locale_t get_c_locale(void)
{
  pthread_once(&c_locale_once, c_locale_init);
  return c_locale;
}

/* strtod on n bytes that already match a number syntax; copies because s may not end there. */
static double parse_double(const char *s, size_t n)
{
  char small[64];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf)
    return NAN; /* only for absurdly long numbers when out of memory */
  memcpy(buf, s, n);
  buf[n] = '\0';
  locale_t loc = get_c_locale();
  double d = loc ? strtod_l(buf, NULL, loc) : strtod(buf, NULL);
  if (buf != small)
    free(buf);
  return d;
}

/* ---- Scalar resolution ------------------------------------------------------------------ */

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", "yes", "Yes",
                                         "YES",  "on",   "On",   "ON",  NULL};
static const char *const false_words[] = {"false", "False", "FALSE", "no",  "No",
                                          "NO",    "off",   "Off",   "OFF", NULL};

static int digit_value(int c, int base)
{
  int v = c >= '0' && c <= '9'   ? c - '0'
          : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                 : 99;
  return v < base ? v : -1;
}

/*
** Integers: [-+]?digits in base 10 (leading zeros only when lax), 0x hex, 0o octal. Returns 1 and
** sets *out to INT, or to FLOAT when the value does not fit int64; 0 when the syntax does not
*match.
*/
static int parse_int(const char *s, size_t n, int lax, tide_yaml_type *type, tide_yaml_value *out)
{
  size_t i = 0;
  int base = 10, neg = 0;
  if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    i = 2;
  } else if (n > 0 && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == n)
    return 0;
  if (base == 10 && !lax && s[i] == '0' && n - i > 1)
    return 0;
  uint64_t u = 0;
  double d = 0;
  int overflow = 0;
  for (size_t j = i; j < n; j++) {
    int v = digit_value((unsigned char)s[j], base);
    if (v < 0)
      return 0;
    if (u > (UINT64_MAX - (uint64_t)v) / (uint64_t)base)
      overflow = 1;
    else
      u = u * (uint64_t)base + (uint64_t)v;
    d = d * base + v;
  }
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  if (overflow || u > limit) {
    *type = TIDE_YAML_FLOAT;
    out->f = base == 10 ? parse_double(s, n) : d;
    if (neg && base != 10)
      out->f = -out->f;
    return 1;
  }
  *type = TIDE_YAML_INT;
  out->i = neg ? (int64_t)(0 - u) : (int64_t)u;
  return 1;
}

/* Floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? with a '.' or an exponent. */
static int parse_float(const char *s, size_t n, tide_yaml_value *out)
{
  size_t i = 0;
  int sign = 1;
  if (n > 0 && (s[0] == '-' || s[0] == '+')) {
    sign = s[0] == '-' ? -1 : 1;
    i = 1;
  }
  if (bytes_eq(s + i, n - i, ".inf") || bytes_eq(s + i, n - i, ".Inf") ||
      bytes_eq(s + i, n - i, ".INF")) {
    out->f = sign * INFINITY;
    return 1;
  }
  if (bytes_eq(s, n, ".nan") || bytes_eq(s, n, ".NaN") || bytes_eq(s, n, ".NAN")) {
    out->f = NAN;
    return 1;
  }
  size_t intd = 0, fracd = 0;
  int dot = 0, exp = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9')
    i++, intd++;
  if (i < n && s[i] == '.') {
    dot = 1;
    i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++, fracd++;
  }
  if (intd == 0 && fracd == 0)
    return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    exp = 1;
    i++;
    if (i < n && (s[i] == '-' || s[i] == '+'))
      i++;
    size_t expd = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++, expd++;
    if (expd == 0)
      return 0;
  }
  if (i != n || (!dot && !exp))
    return 0;
  out->f = parse_double(s, n);
  return 1;
}

tide_yaml_type tide_yaml_resolve(const char *s, size_t len, tide_yaml_value *out)
{
  tide_yaml_value scratch;
  tide_yaml_type type;
  if (!out)
    out = &scratch;
  if (in_set(s, len, null_words))
    return TIDE_YAML_NULL;
  if (in_set(s, len, true_words) || in_set(s, len, false_words)) {
    out->b = in_set(s, len, true_words);
    return TIDE_YAML_BOOL;
  }
  /* Cheap exit for ordinary words: every number starts with a digit, a sign or a dot. */
  if (len == 0 || !(s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
    return TIDE_YAML_STR;
  if (parse_int(s, len, 0, &type, out))
    return type;
  if (parse_float(s, len, out))
    return TIDE_YAML_FLOAT;
  return TIDE_YAML_STR;
}

int tide_yaml_needs_quotes(const char *s, size_t len)
{
  if (tide_yaml_resolve(s, len, NULL) != TIDE_YAML_STR)
    return 1;
  /* YAML 1.1 readers (PyYAML, Go's yaml.v2) also see booleans, merge keys, octals, sexagesimals
     and timestamps here; quoting anything number-like keeps every reader on the string. */
  static const char *const other_words[] = {"y", "Y", "n", "N", "=", "<<", NULL};
  if (in_set(s, len, other_words))
    return 1;
  unsigned char c0 = (unsigned char)s[0], c1 = len > 1 ? (unsigned char)s[1] : 0;
  if (c0 >= '0' && c0 <= '9')
    return 1;
  return (c0 == '-' || c0 == '+' || c0 == '.') && ((c1 >= '0' && c1 <= '9') || c1 == '.');
}

size_t tide_yaml_format_float(double d, char buf[32])
{
  if (isnan(d))
    return (size_t)snprintf(buf, 32, ".nan");
  if (isinf(d))
    return (size_t)snprintf(buf, 32, d < 0 ? "-.inf" : ".inf");
  locale_t loc = get_c_locale();
  locale_t old = loc ? uselocale(loc) : (locale_t)0;
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, 32, "%.*g", prec, d);
    if ((loc ? strtod_l(buf, NULL, loc) : strtod(buf, NULL)) == d)
      break;
  }
  if (loc)
    uselocale(old);
  if (!strpbrk(buf, ".eEn") && n + 2 < 32) {
    memcpy(buf + n, ".0", 3);
    n += 2;
  }
  return (size_t)n;
}

/* ---- Parser ----------------------------------------------------------------------------- */

typedef struct frame {
  tide_yaml_node *node;
  size_t base; /* index in pending of the first child */
} frame;

/* A child of an open collection and where it occurs (an alias's own place, not its target's). */
typedef struct child {
  tide_yaml_node *node;
  unsigned line, col;
} child;

typedef struct anchor {
  const char *name; /* arena-owned */
  tide_yaml_node *node;
} anchor;

typedef struct builder {
  yaml_parser_t parser;
  const char *name;
  const char *text;
  size_t len;
  arena *a;
  tide_err *err;
  frame *frames; /* open collections, outermost first */
  size_t nframes, capframes;
  child *pending; /* children of open collections; key, value, key... for maps */
  size_t npending, cappending;
  anchor *anchors; /* open addressing by name; cleared at each document */
  size_t nanchors, capanchors;
  tide_yaml_node **docs;
  size_t ndocs, capdocs;
  size_t nodes;
  uint64_t visits;
  unsigned bomb_line, bomb_col; /* the alias that took visits past TIDE_YAML_MAX_EXPANSION */
} builder;

/* Keeps messages readable when the source name is a long path: "...tail/of/the/path". */
static const char *short_name(const char *name)
{
  size_t n = strlen(name);
  return n > 100 ? name + n - 97 : name;
}

static int fail_at(builder *b, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(builder *b, unsigned line, unsigned col, const char *fmt, ...)
{
  char msg[224];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *nm = short_name(b->name);
  return tide_err_set(b->err, TIDE_EYAML, "%s%s:%u:%u: %s", nm == b->name ? "" : "...", nm, line,
                      col, msg);
}

static int fail_nomem(builder *b)
{
  return tide_err_set(b->err, -ENOMEM, "%s: out of memory", short_name(b->name));
}

/* A short printable excerpt of s for messages: at most 40 bytes, controls shown as '?'. */
static const char *snippet(const char *s, size_t n, char buf[48])
{
  size_t m = n > 40 ? 40 : n;
  for (size_t i = 0; i < m; i++) {
    unsigned char c = (unsigned char)s[i];
    buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  strcpy(buf + m, n > m ? "..." : "");
  return buf;
}

static const char *std_tag(const char *tag)
{
  static const size_t plen = sizeof TIDE_YAML_TAG_PREFIX - 1;
  return tag && strncmp(tag, TIDE_YAML_TAG_PREFIX, plen) == 0 ? tag + plen : NULL;
}

static void mark_pos(const yaml_mark_t *m, unsigned *line, unsigned *col)
{
  *line = m->line >= UINT32_MAX ? UINT32_MAX : (unsigned)m->line + 1;
  *col = m->column >= UINT32_MAX ? UINT32_MAX : (unsigned)m->column + 1;
}

/* Reader errors carry a byte offset only; count lines and characters up to it. */
static void offset_pos(builder *b, size_t off, unsigned *line, unsigned *col)
{
  unsigned l = 1, c = 1;
  if (off > b->len)
    off = b->len;
  for (size_t i = 0; i < off; i++) {
    unsigned char ch = (unsigned char)b->text[i];
    if (ch == '\n') {
      l++;
      c = 1;
    } else if ((ch & 0xc0) != 0x80) {
      c++;
    }
  }
  *line = l;
  *col = c;
}

static int libyaml_error(builder *b)
{
  yaml_parser_t *p = &b->parser;
  unsigned line, col;
  switch (p->error) {
    case YAML_MEMORY_ERROR:
      return fail_nomem(b);
    case YAML_READER_ERROR:
      offset_pos(b, p->problem_offset, &line, &col);
      if (p->problem_value != -1)
        return fail_at(b, line, col, "%s 0x%02X", p->problem, (unsigned)p->problem_value);
      return fail_at(b, line, col, "%s", p->problem ? p->problem : "cannot read input");
    default:
      mark_pos(&p->problem_mark, &line, &col);
      if (p->context) {
        unsigned cl, cc;
        mark_pos(&p->context_mark, &cl, &cc);
        return fail_at(b, line, col, "%s (%s at %u:%u)", p->problem ? p->problem : "syntax error",
                       p->context, cl, cc);
      }
      return fail_at(b, line, col, "%s", p->problem ? p->problem : "syntax error");
  }
}

static anchor *anchor_slot(builder *b, const char *name)
{
  size_t mask = b->capanchors - 1;
  size_t i = (size_t)hash_bytes(name, strlen(name)) & mask;
  while (b->anchors[i].name && strcmp(b->anchors[i].name, name) != 0)
    i = (i + 1) & mask;
  return &b->anchors[i];
}

static tide_yaml_node *anchor_get(builder *b, const char *name)
{
  return b->nanchors ? anchor_slot(b, name)->node : NULL;
}

static int anchor_set(builder *b, const char *name, tide_yaml_node *node)
{
  if ((b->nanchors + 1) * 2 > b->capanchors) {
    size_t oldcap = b->capanchors, ncap = oldcap ? oldcap * 2 : 16;
    anchor *old = b->anchors;
    if (ncap > SIZE_MAX / sizeof *old || !(b->anchors = calloc(ncap, sizeof *old))) {
      b->anchors = old;
      return fail_nomem(b);
    }
    b->capanchors = ncap;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i].name)
        *anchor_slot(b, old[i].name) = old[i];
    free(old);
  }
  anchor *slot = anchor_slot(b, name);
  if (!slot->name)
    b->nanchors++;
  slot->name = name; /* a later anchor of the same name replaces the earlier one (YAML 1.2) */
  slot->node = node;
  return 0;
}

/*
** Drops the table rather than zeroing it: after one document with a million anchors, each of a
** million small documents would otherwise pay for clearing the big table.
*/
static void anchors_clear(builder *b)
{
  free(b->anchors);
  b->anchors = NULL;
  b->capanchors = b->nanchors = 0;
}

static tide_yaml_node *node_new(builder *b, tide_yaml_kind kind, const yaml_mark_t *m,
                                const yaml_char_t *tag, const yaml_char_t *anchor_name)
{
  tide_yaml_node *n = arena_alloc(b->a, sizeof *n);
  if (!n)
    return NULL;
  n->kind = kind;
  mark_pos(m, &n->line, &n->col);
  if (tag && !(n->tag = arena_strndup(b->a, (const char *)tag, strlen((const char *)tag))))
    return NULL;
  if (anchor_name && !(n->anchor = arena_strndup(b->a, (const char *)anchor_name,
                                                 strlen((const char *)anchor_name))))
    return NULL;
  b->nodes++;
  b->visits = sat_add(b->visits, 1);
  return n;
}

/* Applies the node's tag, or the plain-scalar rule, to a scalar. */
static int scalar_resolve(builder *b, tide_yaml_node *n)
{
  const char *std = std_tag(n->tag);
  tide_yaml_type type;
  if (!n->tag) {
    n->type =
        n->style == TIDE_YAML_PLAIN ? tide_yaml_resolve(n->value, n->len, &n->as) : TIDE_YAML_STR;
    return 0;
  }
  n->type = TIDE_YAML_STR; /* "!", "!Ref", unknown or unsupported standard tags */
  if (!std)
    return 0;
  char buf[48];
  if (strcmp(std, "null") == 0) {
    if (!in_set(n->value, n->len, null_words))
      goto bad;
    n->type = TIDE_YAML_NULL;
  } else if (strcmp(std, "bool") == 0) {
    if (in_set(n->value, n->len, true_words))
      n->as.b = 1;
    else if (in_set(n->value, n->len, false_words))
      n->as.b = 0;
    else
      goto bad;
    n->type = TIDE_YAML_BOOL;
  } else if (strcmp(std, "int") == 0) {
    if (!parse_int(n->value, n->len, 1, &type, &n->as))
      goto bad;
    if (type != TIDE_YAML_INT)
      return fail_at(b, n->line, n->col, "!!int value '%s' is out of range",
                     snippet(n->value, n->len, buf));
    n->type = TIDE_YAML_INT;
  } else if (strcmp(std, "float") == 0) {
    if (parse_int(n->value, n->len, 1, &type, &n->as)) {
      if (type == TIDE_YAML_INT)
        n->as.f = (double)n->as.i;
    } else if (!parse_float(n->value, n->len, &n->as)) {
      goto bad;
    }
    n->type = TIDE_YAML_FLOAT;
  } else if (strcmp(std, "map") == 0 || strcmp(std, "seq") == 0) {
    return fail_at(b, n->line, n->col, "tag '!!%s' cannot apply to a scalar", std);
  }
  return 0;
bad:
  return fail_at(b, n->line, n->col, "invalid !!%s value '%s'", std,
                 snippet(n->value, n->len, buf));
}

static int collection_tag_check(builder *b, tide_yaml_node *n)
{
  const char *std = std_tag(n->tag);
  if (!std)
    return 0;
  const char *other = n->kind == TIDE_YAML_MAPPING ? "seq" : "map";
  static const char *const scalar_tags[] = {"str", "null", "bool", "int", "float", NULL};
  if (strcmp(std, other) == 0 || in_set(std, strlen(std), scalar_tags))
    return fail_at(b, n->line, n->col, "tag '!!%s' cannot apply to a %s", std,
                   n->kind == TIDE_YAML_MAPPING ? "mapping" : "sequence");
  return 0;
}

/*
** Adds a finished node (or an alias target) to the open collection, or makes it a root. line and
** col are where it occurs: the node's own, or the alias's.
*/
static int add_child(builder *b, tide_yaml_node *n, unsigned line, unsigned col)
{
  if (b->nframes == 0) {
    if (grow(&b->docs, &b->capdocs, b->ndocs + 1, sizeof *b->docs))
      return fail_nomem(b);
    b->docs[b->ndocs++] = n;
    return 0;
  }
  frame *f = &b->frames[b->nframes - 1];
  if (f->node->kind == TIDE_YAML_MAPPING && (b->npending - f->base) % 2 == 0 &&
      n->kind != TIDE_YAML_SCALAR) {
    return fail_at(b, line, col, "mapping key must be a scalar, not a %s",
                   n->kind == TIDE_YAML_MAPPING ? "mapping" : "sequence");
  }
  if (grow(&b->pending, &b->cappending, b->npending + 1, sizeof *b->pending))
    return fail_nomem(b);
  b->pending[b->npending++] = (child){n, line, col};
  return 0;
}

static uint32_t *index_find(const tide_yaml_node *map, const char *key, size_t len, uint64_t h)
{
  size_t mask = map->index_cap_ - 1;
  size_t i = (size_t)h & mask;
  while (map->index_[i]) {
    const tide_yaml_node *k = map->pairs[map->index_[i] - 1].key;
    if (k->len == len && memcmp(k->value, key, len) == 0)
      break;
    i = (i + 1) & mask;
  }
  return &map->index_[i];
}

const tide_yaml_pair *tide_yaml_mapping_get(const tide_yaml_node *map, const char *key, size_t len)
{
  if (!map || map->kind != TIDE_YAML_MAPPING)
    return NULL;
  if (map->index_) {
    uint32_t slot = *index_find(map, key, len, hash_bytes(key, len));
    return slot ? &map->pairs[slot - 1] : NULL;
  }
  for (size_t i = 0; i < map->len; i++) {
    const tide_yaml_node *k = map->pairs[i].key;
    if (k->len == len && memcmp(k->value, key, len) == 0)
      return &map->pairs[i];
  }
  return NULL;
}

/*
** Mappings with more than a few keys get a hash index (in the arena) that serves both the
** duplicate check here and tide_yaml_mapping_get(); small ones are scanned.
*/
#define INDEX_MIN 8

static int mapping_finish(builder *b, tide_yaml_node *n, const child *kids)
{
  char buf[48];
  if (n->len > INDEX_MIN) {
    if (n->len > UINT32_MAX / 4)
      return fail_at(b, n->line, n->col, "mapping has too many keys");
    size_t cap = 16;
    while (cap < n->len * 2)
      cap *= 2;
    if (!(n->index_ = arena_alloc(b->a, cap * sizeof *n->index_)))
      return fail_nomem(b);
    n->index_cap_ = cap;
  }
  for (size_t i = 0; i < n->len; i++) {
    const tide_yaml_node *k = n->pairs[i].key;
    size_t first_i = SIZE_MAX;
    if (n->index_) {
      uint32_t *slot = index_find(n, k->value, k->len, hash_bytes(k->value, k->len));
      if (*slot)
        first_i = *slot - 1;
      else
        *slot = (uint32_t)i + 1;
    } else {
      for (size_t j = 0; j < i && first_i == SIZE_MAX; j++)
        if (n->pairs[j].key->len == k->len && memcmp(n->pairs[j].key->value, k->value, k->len) == 0)
          first_i = j;
    }
    if (first_i != SIZE_MAX) {
      /* Where the keys occur: an aliased key's node carries its anchor's position. */
      const child *later = &kids[2 * i], *earlier = &kids[2 * first_i];
      return fail_at(b, later->line, later->col, "duplicate key '%s' (first at %u:%u)",
                     snippet(k->value, k->len, buf), earlier->line, earlier->col);
    }
  }
  return 0;
}

static int collection_end(builder *b)
{
  frame f = b->frames[--b->nframes];
  tide_yaml_node *n = f.node;
  size_t count = b->npending - f.base;
  const child *kids = count ? b->pending + f.base : NULL; /* pending may still be NULL */
  uint64_t visits = 1;
  for (size_t i = 0; i < count; i++)
    visits = sat_add(visits, kids[i].node->visits);
  if (n->kind == TIDE_YAML_SEQUENCE) {
    n->len = count;
    if (count && !(n->items = arena_alloc(b->a, count * sizeof *n->items)))
      return fail_nomem(b);
    for (size_t i = 0; i < count; i++)
      n->items[i] = kids[i].node;
  } else {
    n->len = count / 2;
    if (n->len && !(n->pairs = arena_alloc(b->a, n->len * sizeof *n->pairs)))
      return fail_nomem(b);
    for (size_t i = 0; i < n->len; i++) {
      n->pairs[i].key = kids[2 * i].node;
      n->pairs[i].value = kids[2 * i + 1].node;
    }
    int rc = mapping_finish(b, n, kids);
    if (rc)
      return rc;
  }
  b->npending = f.base;
  n->visits = visits; /* non-zero from here on: the node is complete */
  return 0;
}

static int on_event(builder *b, yaml_event_t *ev)
{
  tide_yaml_node *n;
  int rc;
  switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
      anchors_clear(b);
      return 0;
    case YAML_SCALAR_EVENT: {
      n = node_new(b, TIDE_YAML_SCALAR, &ev->start_mark, ev->data.scalar.tag,
                   ev->data.scalar.anchor);
      if (!n || !(n->value = arena_strndup(b->a, (const char *)ev->data.scalar.value,
                                           ev->data.scalar.length)))
        return fail_nomem(b);
      n->len = ev->data.scalar.length;
      switch (ev->data.scalar.style) {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE:
          n->style = TIDE_YAML_SINGLE_QUOTED;
          break;
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
          n->style = TIDE_YAML_DOUBLE_QUOTED;
          break;
        case YAML_LITERAL_SCALAR_STYLE:
          n->style = TIDE_YAML_LITERAL;
          break;
        case YAML_FOLDED_SCALAR_STYLE:
          n->style = TIDE_YAML_FOLDED;
          break;
        default:
          n->style = TIDE_YAML_PLAIN;
          break;
      }
      if ((rc = scalar_resolve(b, n)))
        return rc;
      n->visits = 1;
      if (n->anchor && (rc = anchor_set(b, n->anchor, n)))
        return rc;
      return add_child(b, n, n->line, n->col);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      int map = ev->type == YAML_MAPPING_START_EVENT;
      if (b->nframes >= TIDE_YAML_MAX_DEPTH) {
        unsigned line, col;
        mark_pos(&ev->start_mark, &line, &col);
        return fail_at(b, line, col, "nesting deeper than %d levels", TIDE_YAML_MAX_DEPTH);
      }
      n = node_new(b, map ? TIDE_YAML_MAPPING : TIDE_YAML_SEQUENCE, &ev->start_mark,
                   map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag,
                   map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
      if (!n)
        return fail_nomem(b);
      if ((rc = collection_tag_check(b, n)))
        return rc;
      /* Registered before its children, so that an alias inside it is seen as recursion. */
      if (n->anchor && (rc = anchor_set(b, n->anchor, n)))
        return rc;
      if (grow(&b->frames, &b->capframes, b->nframes + 1, sizeof *b->frames))
        return fail_nomem(b);
      b->frames[b->nframes++] = (frame){n, b->npending};
      return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      n = b->frames[b->nframes - 1].node;
      if ((rc = collection_end(b)))
        return rc;
      return add_child(b, n, n->line, n->col);
    case YAML_ALIAS_EVENT: {
      const char *name = (const char *)ev->data.alias.anchor;
      char buf[48];
      unsigned line, col;
      mark_pos(&ev->start_mark, &line, &col);
      n = anchor_get(b, name);
      if (!n)
        return fail_at(b, line, col, "alias '*%s' refers to an undefined anchor",
                       snippet(name, strlen(name), buf));
      if (n->visits == 0)
        return fail_at(b, line, col, "alias '*%s' refers to a node that contains it",
                       snippet(name, strlen(name), buf));
      n->aliases++;
      uint64_t before = b->visits;
      b->visits = sat_add(b->visits, n->visits);
      if (before <= TIDE_YAML_MAX_EXPANSION && b->visits > TIDE_YAML_MAX_EXPANSION) {
        b->bomb_line = line;
        b->bomb_col = col;
      }
      return add_child(b, n, line, col);
    }
    default:
      return 0;
  }
}

static int expansion_check(builder *b)
{
  uint64_t allowed = TIDE_YAML_MAX_EXPANSION;
  if (b->nodes <= UINT64_MAX / TIDE_YAML_EXPANSION_RATIO &&
      b->nodes * TIDE_YAML_EXPANSION_RATIO > allowed)
    allowed = b->nodes * TIDE_YAML_EXPANSION_RATIO;
  if (b->visits <= allowed)
    return 0;
  return fail_at(b, b->bomb_line, b->bomb_col,
                 "aliases expand to more than %llu nodes (%zu parsed): refusing a possible alias "
                 "bomb",
                 (unsigned long long)allowed, b->nodes);
}

int tide_yaml_parse(const char *text, size_t len, const char *name, tide_yaml_stream **out,
                    tide_err *err)
{
  builder b = {.name = name ? name : "<string>", .text = text, .len = len, .err = err};
  tide_yaml_stream *s = NULL;
  int rc = 0, done = 0;
  *out = NULL;
  tide_err_clear(err);
  if (!(b.a = calloc(1, sizeof *b.a)) || !yaml_parser_initialize(&b.parser)) {
    free(b.a);
    return fail_nomem(&b);
  }
  yaml_parser_set_input_string(&b.parser, (const unsigned char *)(text ? text : ""), len);
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&b.parser, &ev)) {
      rc = libyaml_error(&b);
      break;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    rc = on_event(&b, &ev);
    yaml_event_delete(&ev);
    if (rc)
      break;
  }
  if (!rc)
    rc = expansion_check(&b);
  if (!rc) {
    s = arena_alloc(b.a, sizeof *s);
    if (!s || (b.ndocs && !(s->docs = arena_alloc(b.a, b.ndocs * sizeof *s->docs)))) {
      rc = fail_nomem(&b);
    } else {
      s->ndocs = b.ndocs;
      if (b.ndocs)
        memcpy(s->docs, b.docs, b.ndocs * sizeof *s->docs);
      s->nodes = b.nodes;
      s->visits = b.visits;
      s->arena_ = b.a;
      *out = s;
    }
  }
  yaml_parser_delete(&b.parser);
  free(b.frames);
  free(b.pending);
  free(b.anchors);
  free(b.docs);
  if (rc)
    arena_free(b.a);
  return rc;
}

void tide_yaml_free(tide_yaml_stream *stream)
{
  if (stream)
    arena_free(stream->arena_); /* the stream itself lives in its arena */
}

/* ---- Emitter ---------------------------------------------------------------------------- */

struct tide_yaml_emitter {
  yaml_emitter_t e;
  char *buf; /* output, NUL-terminated after finish */
  size_t len, cap;
  int oom;    /* the write handler could not grow buf */
  int failed; /* an event failed: accept nothing more */
};

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
  tide_yaml_emitter *em = data;
  if (size >= SIZE_MAX - em->len || grow(&em->buf, &em->cap, em->len + size + 1, 1)) {
    em->oom = 1;
    return 0;
  }
  memcpy(em->buf + em->len, buffer, size);
  em->len += size;
  em->buf[em->len] = '\0';
  return 1;
}

static int emit_fail(tide_yaml_emitter *em, tide_err *err, const char *what)
{
  em->failed = 1;
  if (em->oom || em->e.error == YAML_MEMORY_ERROR)
    return tide_err_set(err, -ENOMEM, "yaml encode: out of memory");
  return tide_err_set(err, TIDE_EYAML, "yaml encode: %s", em->e.problem ? em->e.problem : what);
}

/* Emits ev; the emitter owns it from here on, whatever the outcome. */
static int emit(tide_yaml_emitter *em, yaml_event_t *ev, tide_err *err)
{
  if (em->failed) {
    yaml_event_delete(ev);
    return tide_err_set(err, TIDE_EYAML, "yaml encode: emitter already failed");
  }
  if (!yaml_emitter_emit(&em->e, ev))
    return emit_fail(em, err, "event out of order");
  return 0;
}

int tide_yaml_emitter_new(tide_yaml_emitter **out, int indent, tide_err *err)
{
  *out = NULL;
  if (indent < 2 || indent > 9)
    return tide_err_set(err, TIDE_EINPUT, "yaml encode: indent must be 2 to 9, got %d", indent);
  tide_yaml_emitter *em = calloc(1, sizeof *em);
  if (!em || !yaml_emitter_initialize(&em->e)) {
    free(em);
    return tide_err_set(err, -ENOMEM, "yaml encode: out of memory");
  }
  yaml_emitter_set_output(&em->e, write_handler, em);
  yaml_emitter_set_unicode(&em->e, 1);
  yaml_emitter_set_indent(&em->e, indent);
  yaml_emitter_set_width(&em->e, -1); /* never fold long lines: commands stay on one line */
  yaml_emitter_set_break(&em->e, YAML_LN_BREAK);
  yaml_event_t ev;
  int rc;
  if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING))
    rc = tide_err_set(err, -ENOMEM, "yaml encode: out of memory");
  else
    rc = emit(em, &ev, err);
  if (rc) {
    tide_yaml_emitter_free(em);
    return rc;
  }
  *out = em;
  return 0;
}

void tide_yaml_emitter_free(tide_yaml_emitter *em)
{
  if (!em)
    return;
  yaml_emitter_delete(&em->e);
  free(em->buf);
  free(em);
}

/* Initialisers fail on out of memory, and on invalid UTF-8 in a scalar or tag. */
static int init_fail(tide_yaml_emitter *em, tide_err *err)
{
  em->failed = 1;
  return tide_err_set(err, TIDE_EYAML, "yaml encode: invalid UTF-8 in a string or tag");
}

int tide_yaml_emit_document_start(tide_yaml_emitter *em, int explicit_start, tide_err *err)
{
  yaml_event_t ev;
  if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, !explicit_start))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emit_document_end(tide_yaml_emitter *em, tide_err *err)
{
  yaml_event_t ev;
  if (!yaml_document_end_event_initialize(&ev, 1))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

/*
** libyaml writes a local tag (`!name`) as it is, and one under the YAML prefix as `!!` and the
** rest (`tag:yaml.org,2002:a,b` as `!!a,b`), so a flow indicator in either would come back as
** something else or not at all: such a tag is refused rather than written unreadable.
*/
static int tag_check(tide_yaml_emitter *em, const char *tag, tide_err *err)
{
  static const char yaml_prefix[] = "tag:yaml.org,2002:";
  const char *shorthand = NULL;
  if (tag && tag[0] == '!')
    shorthand = tag;
  else if (tag && strncmp(tag, yaml_prefix, sizeof yaml_prefix - 1) == 0)
    shorthand = tag + sizeof yaml_prefix - 1;
  if (shorthand && strpbrk(shorthand, ",[]{}")) {
    em->failed = 1;
    return tide_err_set(err, TIDE_EYAML, "yaml encode: tag '%.100s' cannot be written back", tag);
  }
  return 0;
}

int tide_yaml_emit_scalar(tide_yaml_emitter *em, const char *s, size_t len, tide_yaml_style style,
                          const char *tag, tide_err *err)
{
  if (tag_check(em, tag, err))
    return TIDE_EYAML;
  yaml_scalar_style_t ys;
  int implicit = tag == NULL;
  if (style == TIDE_YAML_ANY && !tag) {
    if (tide_yaml_needs_quotes(s, len))
      style = TIDE_YAML_SINGLE_QUOTED;
    else if (memchr(s, '\n', len))
      style = TIDE_YAML_LITERAL;
  }
  switch (style) {
    case TIDE_YAML_PLAIN:
      ys = YAML_PLAIN_SCALAR_STYLE;
      break;
    case TIDE_YAML_SINGLE_QUOTED:
      ys = YAML_SINGLE_QUOTED_SCALAR_STYLE;
      break;
    case TIDE_YAML_DOUBLE_QUOTED:
      ys = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
      break;
    case TIDE_YAML_LITERAL:
      ys = YAML_LITERAL_SCALAR_STYLE;
      break;
    case TIDE_YAML_FOLDED:
      ys = YAML_FOLDED_SCALAR_STYLE;
      break;
    default:
      ys = YAML_ANY_SCALAR_STYLE;
      break;
  }
  if (len > INT_MAX) {
    em->failed = 1;
    return tide_err_set(err, TIDE_EYAML, "yaml encode: string too long");
  }
  yaml_event_t ev;
  if (!yaml_scalar_event_initialize(&ev, NULL, (const yaml_char_t *)tag,
                                    (const yaml_char_t *)(s ? s : ""), (int)len, implicit, implicit,
                                    ys))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emit_sequence_start(tide_yaml_emitter *em, const char *tag, tide_err *err)
{
  if (tag_check(em, tag, err))
    return TIDE_EYAML;
  yaml_event_t ev;
  if (!yaml_sequence_start_event_initialize(&ev, NULL, (const yaml_char_t *)tag, tag == NULL,
                                            YAML_BLOCK_SEQUENCE_STYLE))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emit_sequence_end(tide_yaml_emitter *em, tide_err *err)
{
  yaml_event_t ev;
  if (!yaml_sequence_end_event_initialize(&ev))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emit_mapping_start(tide_yaml_emitter *em, const char *tag, tide_err *err)
{
  if (tag_check(em, tag, err))
    return TIDE_EYAML;
  yaml_event_t ev;
  if (!yaml_mapping_start_event_initialize(&ev, NULL, (const yaml_char_t *)tag, tag == NULL,
                                           YAML_BLOCK_MAPPING_STYLE))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emit_mapping_end(tide_yaml_emitter *em, tide_err *err)
{
  yaml_event_t ev;
  if (!yaml_mapping_end_event_initialize(&ev))
    return init_fail(em, err);
  return emit(em, &ev, err);
}

int tide_yaml_emitter_finish(tide_yaml_emitter *em, const char **text, size_t *len, tide_err *err)
{
  yaml_event_t ev;
  int rc;
  if (!yaml_stream_end_event_initialize(&ev))
    return init_fail(em, err);
  if ((rc = emit(em, &ev, err)))
    return rc;
  if (!yaml_emitter_flush(&em->e))
    return emit_fail(em, err, "cannot flush");
  if (!em->buf && grow(&em->buf, &em->cap, 1, 1)) {
    em->oom = 1;
    return emit_fail(em, err, "out of memory");
  }
  em->buf[em->len] = '\0';
  *text = em->buf;
  *len = em->len;
  return 0;
}
