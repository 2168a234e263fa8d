/*
** Tests for host/yaml.c: node positions and styles, the scalar resolution rule, tags, streams,
** anchors and aliases, every refusal the parser makes (with its exact message), hostile inputs
** from spec/fixtures/yaml, and the emitter, including parse -> emit -> parse round trips.
*/
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tide/err.h"
#include "tide/yaml.h"

/* ---- Helpers ---------------------------------------------------------------------------- */

static tide_yaml_stream *parse_ok(const char *text)
{
  tide_yaml_stream *s = NULL;
  tide_err err;
  int rc = tide_yaml_parse(text, strlen(text), "t.yml", &s, &err);
  if (rc != 0)
    fail_msg("unexpected parse failure: %s", err.msg);
  assert_non_null(s);
  return s;
}

static tide_yaml_node *root(tide_yaml_stream *s)
{
  assert_true(s->ndocs >= 1);
  return s->docs[0];
}

/* Parses text (len bytes) that must fail with TIDE_EYAML and exactly the message want. */
static void parse_fails_len(const char *text, size_t len, const char *want)
{
  tide_yaml_stream *s = (tide_yaml_stream *)1;
  tide_err err;
  int rc = tide_yaml_parse(text, len, "t.yml", &s, &err);
  assert_int_equal(rc, TIDE_EYAML);
  assert_int_equal(err.code, TIDE_EYAML);
  assert_null(s);
  assert_string_equal(err.msg, want);
}

/* For literals with NUL or invalid bytes: the length is the literal's, without its NUL. */
#define PARSE_FAILS_LIT(lit, want) parse_fails_len(lit, sizeof(lit) - 1, want)

static void parse_fails(const char *text, const char *want)
{
  parse_fails_len(text, strlen(text), want);
}

static const tide_yaml_node *get(const tide_yaml_node *map, const char *key)
{
  const tide_yaml_pair *p = tide_yaml_mapping_get(map, key, strlen(key));
  if (!p)
    fail_msg("no key '%s'", key);
  return p->value;
}

static void assert_pos(const tide_yaml_node *n, unsigned line, unsigned col)
{
  assert_int_equal(n->line, line);
  assert_int_equal(n->col, col);
}

static char *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* Emits n (and everything under it) with styles and tags that make it read back the same. */
static int emit_node(tide_yaml_emitter *em, const tide_yaml_node *n, tide_err *err)
{
  int rc;
  switch (n->kind) {
    case TIDE_YAML_SCALAR: {
      tide_yaml_style style = n->type == TIDE_YAML_STR && !n->tag ? TIDE_YAML_ANY : TIDE_YAML_PLAIN;
      if (n->tag && n->style != TIDE_YAML_PLAIN)
        style = TIDE_YAML_DOUBLE_QUOTED;
      return tide_yaml_emit_scalar(em, n->value, n->len, style, n->tag, err);
    }
    case TIDE_YAML_SEQUENCE:
      if ((rc = tide_yaml_emit_sequence_start(em, n->tag, err)))
        return rc;
      for (size_t i = 0; i < n->len; i++)
        if ((rc = emit_node(em, n->items[i], err)))
          return rc;
      return tide_yaml_emit_sequence_end(em, err);
    default:
      if ((rc = tide_yaml_emit_mapping_start(em, n->tag, err)))
        return rc;
      for (size_t i = 0; i < n->len; i++)
        if ((rc = emit_node(em, n->pairs[i].key, err)) ||
            (rc = emit_node(em, n->pairs[i].value, err)))
          return rc;
      return tide_yaml_emit_mapping_end(em, err);
  }
}

static void assert_same_tree(const tide_yaml_node *a, const tide_yaml_node *b)
{
  assert_int_equal(a->kind, b->kind);
  assert_int_equal(a->len, b->len);
  if (a->kind == TIDE_YAML_SCALAR) {
    assert_memory_equal(a->value, b->value, a->len);
    assert_int_equal(a->type, b->type);
  } else if (a->kind == TIDE_YAML_SEQUENCE) {
    for (size_t i = 0; i < a->len; i++)
      assert_same_tree(a->items[i], b->items[i]);
  } else {
    for (size_t i = 0; i < a->len; i++) {
      assert_same_tree(a->pairs[i].key, b->pairs[i].key);
      assert_same_tree(a->pairs[i].value, b->pairs[i].value);
    }
  }
}

/* Emits every document of s and returns the text (caller frees). */
static char *emit_stream(const tide_yaml_stream *s)
{
  tide_yaml_emitter *em;
  tide_err err;
  const char *text;
  size_t len = 0;
  assert_int_equal(tide_yaml_emitter_new(&em, 2, &err), 0);
  for (size_t d = 0; d < s->ndocs; d++) {
    assert_int_equal(tide_yaml_emit_document_start(em, 1, &err), 0);
    if (emit_node(em, s->docs[d], &err))
      fail_msg("emit: %s", err.msg);
    assert_int_equal(tide_yaml_emit_document_end(em, &err), 0);
  }
  assert_int_equal(tide_yaml_emitter_finish(em, &text, &len, &err), 0);
  char *copy = strdup(text);
  assert_int_equal(strlen(copy), len);
  tide_yaml_emitter_free(em);
  return copy;
}

static void round_trip(const char *text)
{
  tide_yaml_stream *a = parse_ok(text);
  char *out = emit_stream(a);
  tide_yaml_stream *b = NULL;
  tide_err err;
  if (tide_yaml_parse(out, strlen(out), "emitted", &b, &err))
    fail_msg("re-parse of emitted text failed: %s\n%s", err.msg, out);
  assert_int_equal(a->ndocs, b->ndocs);
  for (size_t d = 0; d < a->ndocs; d++)
    assert_same_tree(a->docs[d], b->docs[d]);
  free(out);
  tide_yaml_free(a);
  tide_yaml_free(b);
}

/* ---- Positions, styles, structure -------------------------------------------------------- */

static void test_positions(void **state)
{
  tide_yaml_stream *s = parse_ok(
      "a: 1\n"
      "b:\n"
      "  - x\n"
      "  - \"y\"\n"
      "c: {d: 'e'}\n"
      "lit: |\n"
      "  one\n"
      "  two\n"
      "fold: >-\n"
      "  one\n"
      "  two\n");
  tide_yaml_node *r = root(s);
  assert_int_equal(s->ndocs, 1);
  assert_int_equal(r->kind, TIDE_YAML_MAPPING);
  assert_pos(r, 1, 1);
  assert_int_equal(r->len, 5);
  assert_string_equal(r->pairs[0].key->value, "a");
  assert_pos(r->pairs[0].key, 1, 1);
  assert_pos(r->pairs[0].value, 1, 4);
  assert_string_equal(r->pairs[4].key->value, "fold"); /* document order */

  const tide_yaml_node *b = get(r, "b");
  assert_int_equal(b->kind, TIDE_YAML_SEQUENCE);
  assert_pos(b, 3, 3);
  assert_int_equal(b->len, 2);
  assert_pos(b->items[0], 3, 5);
  assert_int_equal(b->items[0]->style, TIDE_YAML_PLAIN);
  assert_pos(b->items[1], 4, 5);
  assert_int_equal(b->items[1]->style, TIDE_YAML_DOUBLE_QUOTED);
  assert_string_equal(b->items[1]->value, "y");

  const tide_yaml_node *c = get(r, "c");
  assert_int_equal(c->kind, TIDE_YAML_MAPPING);
  assert_pos(c, 5, 4);
  assert_pos(get(c, "d"), 5, 8);
  assert_int_equal(get(c, "d")->style, TIDE_YAML_SINGLE_QUOTED);

  const tide_yaml_node *lit = get(r, "lit");
  assert_int_equal(lit->style, TIDE_YAML_LITERAL);
  assert_string_equal(lit->value, "one\ntwo\n");
  assert_int_equal(lit->type, TIDE_YAML_STR);
  const tide_yaml_node *fold = get(r, "fold");
  assert_int_equal(fold->style, TIDE_YAML_FOLDED);
  assert_string_equal(fold->value, "one two");
  assert_null(tide_yaml_mapping_get(r, "nope", 4));
  assert_null(tide_yaml_mapping_get(b, "a", 1));
  assert_int_equal(s->nodes, 15);
  assert_int_equal(s->visits, 15);
  tide_yaml_free(s);
}

static void test_crlf_and_source_text(void **state)
{
  /* Plain scalars keep their text: version strings survive as written. */
  tide_yaml_stream *s = parse_ok("version: 0.2\r\npython: 3.10\r\ndotnet: 6.0\r\nnode: 22\r\n");
  tide_yaml_node *r = root(s);
  assert_string_equal(get(r, "version")->value, "0.2");
  assert_int_equal(get(r, "version")->type, TIDE_YAML_FLOAT);
  assert_string_equal(get(r, "python")->value, "3.10");
  assert_string_equal(get(r, "dotnet")->value, "6.0");
  assert_int_equal(get(r, "node")->type, TIDE_YAML_INT);
  assert_pos(get(r, "node"), 4, 7);
  tide_yaml_free(s);
}

static void test_big_mapping_index(void **state)
{
  /* Past INDEX_MIN keys the mapping gets a hash index: lookups must still find every key. */
  char text[4096] = "";
  for (int i = 0; i < 200; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "k%d: %d\n", i, i);
  tide_yaml_stream *s = parse_ok(text);
  for (int i = 0; i < 200; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", i);
    const tide_yaml_node *v = get(root(s), key);
    assert_int_equal(v->type, TIDE_YAML_INT);
    assert_int_equal(v->as.i, i);
  }
  assert_null(tide_yaml_mapping_get(root(s), "k200", 4));
  tide_yaml_free(s);
}

/* ---- Resolution ------------------------------------------------------------------------- */

static void test_resolution_rule(void **state)
{
  static const struct {
    const char *text;
    tide_yaml_type type;
    double value; /* bool 0/1, int or float */
  } cases[] = {
      {"", TIDE_YAML_NULL, 0},
      {"~", TIDE_YAML_NULL, 0},
      {"null", TIDE_YAML_NULL, 0},
      {"Null", TIDE_YAML_NULL, 0},
      {"NULL", TIDE_YAML_NULL, 0},
      {"nULL", TIDE_YAML_STR, 0},
      {"true", TIDE_YAML_BOOL, 1},
      {"True", TIDE_YAML_BOOL, 1},
      {"TRUE", TIDE_YAML_BOOL, 1},
      {"false", TIDE_YAML_BOOL, 0},
      {"False", TIDE_YAML_BOOL, 0},
      {"FALSE", TIDE_YAML_BOOL, 0},
      {"yes", TIDE_YAML_BOOL, 1},
      {"Yes", TIDE_YAML_BOOL, 1},
      {"YES", TIDE_YAML_BOOL, 1},
      {"no", TIDE_YAML_BOOL, 0},
      {"No", TIDE_YAML_BOOL, 0},
      {"NO", TIDE_YAML_BOOL, 0},
      {"on", TIDE_YAML_BOOL, 1},
      {"On", TIDE_YAML_BOOL, 1},
      {"ON", TIDE_YAML_BOOL, 1},
      {"off", TIDE_YAML_BOOL, 0},
      {"Off", TIDE_YAML_BOOL, 0},
      {"OFF", TIDE_YAML_BOOL, 0},
      {"y", TIDE_YAML_STR, 0},
      {"n", TIDE_YAML_STR, 0},
      {"Y", TIDE_YAML_STR, 0},
      {"tRUE", TIDE_YAML_STR, 0},
      {"0", TIDE_YAML_INT, 0},
      {"-0", TIDE_YAML_INT, 0},
      {"42", TIDE_YAML_INT, 42},
      {"+42", TIDE_YAML_INT, 42},
      {"-17", TIDE_YAML_INT, -17},
      {"0x1F", TIDE_YAML_INT, 31},
      {"0xff", TIDE_YAML_INT, 255},
      {"0o17", TIDE_YAML_INT, 15},
      {"0o8", TIDE_YAML_STR, 0},
      {"0x", TIDE_YAML_STR, 0},
      {"-0x10", TIDE_YAML_STR, 0},
      {"0755", TIDE_YAML_STR, 0},
      {"1_000", TIDE_YAML_STR, 0},
      {"1,000", TIDE_YAML_STR, 0},
      {"0.2", TIDE_YAML_FLOAT, 0.2},
      {"3.10", TIDE_YAML_FLOAT, 3.1},
      {"6.0", TIDE_YAML_FLOAT, 6.0},
      {".5", TIDE_YAML_FLOAT, 0.5},
      {"5.", TIDE_YAML_FLOAT, 5.0},
      {"-1.5e3", TIDE_YAML_FLOAT, -1500},
      {"1e3", TIDE_YAML_FLOAT, 1000},
      {"1E-2", TIDE_YAML_FLOAT, 0.01},
      {"1e", TIDE_YAML_STR, 0},
      {".", TIDE_YAML_STR, 0},
      {"1.2.3", TIDE_YAML_STR, 0},
      {"e3", TIDE_YAML_STR, 0},
      {"2024-01-01", TIDE_YAML_STR, 0},
      {"12:30", TIDE_YAML_STR, 0},
      {"hello", TIDE_YAML_STR, 0},
      {"0.2 beta", TIDE_YAML_STR, 0},
      {"9223372036854775807", TIDE_YAML_INT, 9223372036854775807.0},
      {"-9223372036854775808", TIDE_YAML_INT, -9223372036854775808.0},
      {"9223372036854775808", TIDE_YAML_FLOAT, 9223372036854775808.0},
      {"0xFFFFFFFFFFFFFFFFF", TIDE_YAML_FLOAT, 295147905179352825855.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tide_yaml_value v;
    const char *t = cases[i].text;
    tide_yaml_type type = tide_yaml_resolve(t, strlen(t), &v);
    if (type != cases[i].type)
      fail_msg("'%s' resolved to type %d, want %d", t, type, cases[i].type);
    if (type == TIDE_YAML_BOOL)
      assert_int_equal(v.b, (int)cases[i].value);
    else if (type == TIDE_YAML_INT)
      assert_true((double)v.i == cases[i].value);
    else if (type == TIDE_YAML_FLOAT && v.f != cases[i].value)
      fail_msg("'%s' resolved to %.17g", t, v.f);
  }
  tide_yaml_value v;
  assert_int_equal(tide_yaml_resolve("-9223372036854775808", 20, &v), TIDE_YAML_INT);
  assert_true(v.i == INT64_MIN);
  assert_int_equal(tide_yaml_resolve(".inf", 4, &v), TIDE_YAML_FLOAT);
  assert_true(isinf(v.f) && v.f > 0);
  assert_int_equal(tide_yaml_resolve("-.Inf", 5, &v), TIDE_YAML_FLOAT);
  assert_true(isinf(v.f) && v.f < 0);
  assert_int_equal(tide_yaml_resolve(".NaN", 4, &v), TIDE_YAML_FLOAT);
  assert_true(isnan(v.f));
  assert_int_equal(tide_yaml_resolve("-.nan", 5, &v), TIDE_YAML_STR);
  /* Not NUL-terminated: only len bytes count. */
  assert_int_equal(tide_yaml_resolve("12abc", 2, &v), TIDE_YAML_INT);
  assert_int_equal(v.i, 12);
  assert_int_equal(tide_yaml_resolve("1.5xyz", 3, &v), TIDE_YAML_FLOAT);
  assert_true(v.f == 1.5);
}

static void test_quoted_and_block_scalars_are_strings(void **state)
{
  tide_yaml_stream *s = parse_ok("a: '1'\nb: \"true\"\nc: |\n  null\nd: >\n  3\ne: ''\nf:\n");
  tide_yaml_node *r = root(s);
  const char *strs[] = {"a", "b", "c", "d", "e"};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(get(r, strs[i])->type, TIDE_YAML_STR);
  assert_int_equal(get(r, "f")->type, TIDE_YAML_NULL);
  assert_int_equal(get(r, "f")->style, TIDE_YAML_PLAIN);
  tide_yaml_free(s);
}

static void test_tags(void **state)
{
  tide_yaml_stream *s = parse_ok(
      "s: !!str 12\n"
      "i: !!int \"0012\"\n"
      "h: !!int 0x10\n"
      "f: !!float 1\n"
      "g: !!float .5\n"
      "b: !!bool yes\n"
      "n: !!null ''\n"
      "ref: !Ref MyBucket\n"
      "bang: ! 12\n"
      "sub: !Sub [a, b]\n"
      "m: !!map {a: 1}\n"
      "bin: !!binary aGk=\n");
  tide_yaml_node *r = root(s);
  assert_int_equal(get(r, "s")->type, TIDE_YAML_STR);
  assert_string_equal(get(r, "s")->tag, TIDE_YAML_TAG_PREFIX "str");
  assert_int_equal(get(r, "i")->type, TIDE_YAML_INT);
  assert_int_equal(get(r, "i")->as.i, 12);
  assert_int_equal(get(r, "h")->as.i, 16);
  assert_int_equal(get(r, "f")->type, TIDE_YAML_FLOAT);
  assert_true(get(r, "f")->as.f == 1.0);
  assert_true(get(r, "g")->as.f == 0.5);
  assert_int_equal(get(r, "b")->type, TIDE_YAML_BOOL);
  assert_int_equal(get(r, "b")->as.b, 1);
  assert_int_equal(get(r, "n")->type, TIDE_YAML_NULL);
  assert_int_equal(get(r, "ref")->type, TIDE_YAML_STR);
  assert_string_equal(get(r, "ref")->tag, "!Ref");
  assert_string_equal(get(r, "ref")->value, "MyBucket");
  assert_int_equal(get(r, "bang")->type, TIDE_YAML_STR);
  assert_string_equal(get(r, "bang")->tag, "!");
  assert_int_equal(get(r, "sub")->kind, TIDE_YAML_SEQUENCE);
  assert_string_equal(get(r, "sub")->tag, "!Sub");
  assert_int_equal(get(r, "m")->kind, TIDE_YAML_MAPPING);
  assert_int_equal(get(r, "bin")->type, TIDE_YAML_STR);
  tide_yaml_free(s);

  parse_fails("x: !!int abc\n", "t.yml:1:4: invalid !!int value 'abc'");
  parse_fails("x: !!int 99999999999999999999\n",
              "t.yml:1:4: !!int value '99999999999999999999' is out of range");
  parse_fails("x: !!float 1.2.3\n", "t.yml:1:4: invalid !!float value '1.2.3'");
  parse_fails("x: !!bool y\n", "t.yml:1:4: invalid !!bool value 'y'");
  parse_fails("x: !!null nil\n", "t.yml:1:4: invalid !!null value 'nil'");
  parse_fails("x: !!map [a]\n", "t.yml:1:4: tag '!!map' cannot apply to a sequence");
  parse_fails("x: !!str {a: 1}\n", "t.yml:1:4: tag '!!str' cannot apply to a mapping");
  parse_fails("x: !!seq a\n", "t.yml:1:4: tag '!!seq' cannot apply to a scalar");
}

/* ---- Streams ---------------------------------------------------------------------------- */

static void test_multi_document(void **state)
{
  tide_yaml_stream *s = parse_ok("a: 1\n---\n- b\n...\n--- plain\n---\n");
  assert_int_equal(s->ndocs, 4);
  assert_int_equal(s->docs[0]->kind, TIDE_YAML_MAPPING);
  assert_int_equal(s->docs[1]->kind, TIDE_YAML_SEQUENCE);
  assert_pos(s->docs[1], 3, 1);
  assert_string_equal(s->docs[2]->value, "plain");
  assert_int_equal(s->docs[3]->kind, TIDE_YAML_SCALAR);
  assert_int_equal(s->docs[3]->type, TIDE_YAML_NULL);
  tide_yaml_free(s);

  s = parse_ok("{}\n--- []\n");
  assert_int_equal(s->ndocs, 2);
  assert_int_equal(s->docs[0]->kind, TIDE_YAML_MAPPING);
  assert_int_equal(s->docs[0]->len, 0);
  assert_null(s->docs[0]->pairs);
  assert_int_equal(s->docs[1]->kind, TIDE_YAML_SEQUENCE);
  assert_int_equal(s->docs[1]->len, 0);
  tide_yaml_free(s);

  s = parse_ok("");
  assert_int_equal(s->ndocs, 0);
  tide_yaml_free(s);
  s = parse_ok("# only a comment\n\n");
  assert_int_equal(s->ndocs, 0);
  tide_yaml_free(s);

  /* An error in a later document fails the whole stream. */
  parse_fails("a: 1\n---\nb: [\n",
              "t.yml:4:1: did not find expected node content "
              "(while parsing a flow node at 4:1)");
}

static void test_anchors_and_aliases(void **state)
{
  tide_yaml_stream *s = parse_ok(
      "base: &b {x: 1, y: [1, 2]}\n"
      "use: *b\n"
      "again: *b\n"
      "name: &n hello\n"
      "copy: *n\n"
      "*n : key from alias\n");
  tide_yaml_node *r = root(s);
  const tide_yaml_node *base = get(r, "base");
  assert_ptr_equal(get(r, "use"), base); /* a reference, not a copy */
  assert_ptr_equal(get(r, "again"), base);
  assert_int_equal(base->aliases, 2);
  assert_string_equal(base->anchor, "b");
  assert_int_equal(base->visits, 7); /* the map, x, 1, y, the sequence, 1, 2 */
  assert_ptr_equal(get(r, "copy"), get(r, "name"));
  assert_string_equal(get(r, "hello")->value, "key from alias");
  tide_yaml_free(s);

  /* A later anchor of the same name wins; anchors do not cross documents. */
  s = parse_ok("a: &x 1\nb: &x 2\nc: *x\n");
  assert_int_equal(get(root(s), "c")->as.i, 2);
  tide_yaml_free(s);
  parse_fails("a: &x 1\n---\nb: *x\n", "t.yml:3:4: alias '*x' refers to an undefined anchor");
}

/* ---- Refusals --------------------------------------------------------------------------- */

static void test_duplicate_keys(void **state)
{
  parse_fails("a: 1\nb: 2\na: 3\n", "t.yml:3:1: duplicate key 'a' (first at 1:1)");
  parse_fails("a: 1\n'a': 2\n", "t.yml:2:1: duplicate key 'a' (first at 1:1)");
  parse_fails("{x: 1, \"x\": 2}\n", "t.yml:1:8: duplicate key 'x' (first at 1:2)");
  parse_fails("outer:\n  a: 1\n  a: 2\n", "t.yml:3:3: duplicate key 'a' (first at 2:3)");
  /* Big mappings use the hash index for the check. */
  char text[4096] = "";
  for (int i = 0; i < 100; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "k%d: %d\n", i, i);
  strcat(text, "k42: again\n");
  parse_fails(text, "t.yml:101:1: duplicate key 'k42' (first at 43:1)");
  /* Same text in different mappings, and keys that only look alike, are fine. */
  tide_yaml_stream *s = parse_ok("a: {k: 1}\nb: {k: 2}\n'1': x\n'01': y\n");
  tide_yaml_free(s);
  /* A key repeated through an alias is still a duplicate. */
  parse_fails("&k a: 1\n*k : 2\n", "t.yml:2:1: duplicate key 'a' (first at 1:1)");
}

static void test_non_scalar_keys(void **state)
{
  parse_fails("? [a, b]\n: c\n", "t.yml:1:3: mapping key must be a scalar, not a sequence");
  parse_fails("{{a: 1}: b}\n", "t.yml:1:2: mapping key must be a scalar, not a mapping");
  parse_fails("x: &m {a: 1}\n*m : 2\n", "t.yml:2:1: mapping key must be a scalar, not a mapping");
}

static void test_alias_errors(void **state)
{
  parse_fails("a: *nope\n", "t.yml:1:4: alias '*nope' refers to an undefined anchor");
  parse_fails("a: *later\nb: &later 1\n",
              "t.yml:1:4: alias '*later' refers to an undefined anchor");
  parse_fails("&a [*a]\n", "t.yml:1:5: alias '*a' refers to a node that contains it");
  parse_fails("&a {x: {y: *a}}\n", "t.yml:1:12: alias '*a' refers to a node that contains it");
  parse_fails("top: &t\n  - x\n  - *t\n",
              "t.yml:3:5: alias '*t' refers to a node that contains it");
}

static char *nested(int depth, int flow)
{
  size_t cap = (size_t)depth * (depth + 8) + 64;
  char *s = calloc(1, cap);
  assert_non_null(s);
  if (flow) {
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
  } else {
    for (int i = 0; i < depth; i++)
      snprintf(s + strlen(s), cap - strlen(s), "%*sk:\n", i, "");
    snprintf(s + strlen(s), cap - strlen(s), "%*sk: v\n", depth, "");
  }
  return s;
}

static void test_depth_limit(void **state)
{
  /* 256 levels pass, 257 do not, in flow and block style. */
  char *ok = nested(TIDE_YAML_MAX_DEPTH, 1);
  tide_yaml_stream *s = parse_ok(ok);
  tide_yaml_free(s);
  free(ok);
  char *bad = nested(TIDE_YAML_MAX_DEPTH + 1, 1);
  parse_fails(bad, "t.yml:1:257: nesting deeper than 256 levels");
  free(bad);
  /* Block: depth-1 mappings ("k:" lines), and the innermost mapping of "k: v". */
  ok = nested(TIDE_YAML_MAX_DEPTH - 1, 0);
  s = parse_ok(ok);
  tide_yaml_free(s);
  free(ok);
  bad = nested(TIDE_YAML_MAX_DEPTH, 0);
  parse_fails(bad, "t.yml:257:257: nesting deeper than 256 levels");
  free(bad);
  /* Far deeper than the limit: refused early, no stack or memory blow-up. */
  bad = nested(100000, 1);
  parse_fails(bad, "t.yml:1:257: nesting deeper than 256 levels");
  free(bad);
}

static void test_alias_bomb(void **state)
{
  /* Classic billion laughs: 10 levels of 10 aliases. */
  char text[8192] = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; i++) {
    snprintf(text + strlen(text), sizeof text - strlen(text), "a%d: &a%d [", i, i);
    for (int j = 0; j < 10; j++)
      snprintf(text + strlen(text), sizeof text - strlen(text), "%s*a%d", j ? ", " : "", i - 1);
    strcat(text, "]\n");
  }
  tide_yaml_stream *s = NULL;
  tide_err err;
  assert_int_equal(tide_yaml_parse(text, strlen(text), "t.yml", &s, &err), TIDE_EYAML);
  assert_null(s);
  assert_non_null(strstr(err.msg, "refusing a possible alias bomb"));
  assert_string_equal(err.msg,
                      "t.yml:6:45: aliases expand to more than 1000000 nodes (31 parsed): refusing "
                      "a possible alias bomb");

  /* Modest reuse passes: 5 levels of 10 expand to about 111,111 visits. */
  strcpy(text, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
  for (int i = 1; i < 5; i++) {
    snprintf(text + strlen(text), sizeof text - strlen(text), "a%d: &a%d [", i, i);
    for (int j = 0; j < 10; j++)
      snprintf(text + strlen(text), sizeof text - strlen(text), "%s*a%d", j ? ", " : "", i - 1);
    strcat(text, "]\n");
  }
  s = parse_ok(text);
  assert_true(s->visits > 100000 && s->visits < TIDE_YAML_MAX_EXPANSION);
  tide_yaml_free(s);
}

/* ---- Errors and hostile input ----------------------------------------------------------- */

static void test_syntax_error_messages(void **state)
{
  parse_fails("a: 1\n b: 2\n", "t.yml:2:3: mapping values are not allowed in this context");
  parse_fails("a:\n  - x\n  y: 1\n",
              "t.yml:3:3: did not find expected '-' indicator "
              "(while parsing a block collection at 2:3)");
  parse_fails("k: \"abc",
              "t.yml:1:8: found unexpected end of stream "
              "(while scanning a quoted scalar at 1:4)");
  /* The source name leads; a NULL name is "<string>"; long names keep their tail. */
  tide_yaml_stream *s;
  tide_err err;
  assert_int_equal(tide_yaml_parse("[", 1, NULL, &s, &err), TIDE_EYAML);
  /* libyaml puts the end of the stream on the line after the last one. */
  assert_string_equal(err.msg,
                      "<string>:2:1: did not find expected node content "
                      "(while parsing a flow node at 2:1)");
  char name[300];
  memset(name, 'd', sizeof name);
  strcpy(name + 280, "/buildspec.yml");
  assert_int_equal(tide_yaml_parse("[", 1, name, &s, &err), TIDE_EYAML);
  assert_true(strncmp(err.msg, "...ddd", 6) == 0);
  assert_non_null(strstr(err.msg, "/buildspec.yml:2:1: did not find expected node content"));
}

static void test_hostile_inputs(void **state)
{
  parse_fails("a:\n\tb: 1\n",
              "t.yml:2:1: found character that cannot start any token "
              "(while scanning for the next token at 2:1)");
  PARSE_FAILS_LIT("a: \xff\n", "t.yml:1:4: invalid leading UTF-8 octet 0xFF");
  PARSE_FAILS_LIT("a: \xc3\n", "t.yml:1:5: invalid trailing UTF-8 octet 0x0A");
  PARSE_FAILS_LIT("\xc3\xa9t\xc3\xa9: \xff", "t.yml:1:6: invalid leading UTF-8 octet 0xFF");
  PARSE_FAILS_LIT("a: b\0c\n", "t.yml:1:5: control characters are not allowed 0x00");
  parse_fails("- [a, b\n- c\n",
              "t.yml:3:1: did not find expected ',' or ']' "
              "(while parsing a flow sequence at 1:3)");
  parse_fails("&",
              "t.yml:1:2: did not find expected alphabetic or numeric character "
              "(while scanning an anchor at 1:1)");
  parse_fails("!<", "t.yml:1:3: did not find expected tag URI (while parsing a tag at 1:1)");
  parse_fails("%YAML 9.9\n---\na\n", "t.yml:1:1: found incompatible YAML document");

  /* A 16 MiB scalar is fine, and keeps every byte. */
  size_t big = 16u << 20;
  char *text = malloc(big + 8);
  assert_non_null(text);
  memcpy(text, "k: ", 3);
  memset(text + 3, 'x', big);
  strcpy(text + 3 + big, "\n");
  tide_yaml_stream *s = parse_ok(text);
  assert_int_equal(get(root(s), "k")->len, big);
  tide_yaml_free(s);
  free(text);

  /* Many anchors and aliases: the anchor table grows and stays linear. */
  size_t n = 20000, cap = n * 40;
  text = malloc(cap);
  assert_non_null(text);
  text[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < n; i++)
    used += (size_t)snprintf(text + used, cap - used, "- &a%zu v\n- *a%zu\n", i, i / 2);
  s = parse_ok(text);
  assert_int_equal(root(s)->len, 2 * n);
  assert_string_equal(root(s)->items[2 * n - 1]->value, "v");
  tide_yaml_free(s);
  free(text);
}

static void test_fixtures(void **state)
{
  const char *src = getenv("TIDE_SOURCE_DIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/spec/fixtures/yaml", src && *src ? src : ".");
  DIR *d = opendir(dir);
  if (!d)
    fail_msg("cannot open %s (run from the source tree or set TIDE_SOURCE_DIR)", dir);
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[8192];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *text = read_file(path, &len);
    assert_non_null(text);
    /* Each fixture starts with "# expect: <text the error message must contain>". */
    char want[256];
    const char *nl = strchr(text, '\n');
    assert_true(strncmp(text, "# expect: ", 10) == 0 && nl);
    snprintf(want, sizeof want, "%.*s", (int)(nl - text - 10), text + 10);
    tide_yaml_stream *s = NULL;
    tide_err err;
    int rc = tide_yaml_parse(text, len, e->d_name, &s, &err);
    if (rc != TIDE_EYAML)
      fail_msg("%s: expected TIDE_EYAML, got %d", e->d_name, rc);
    if (!strstr(err.msg, want))
      fail_msg("%s: message '%s' lacks '%s'", e->d_name, err.msg, want);
    if (strncmp(err.msg, e->d_name, strlen(e->d_name)) != 0)
      fail_msg("%s: message '%s' does not name the file", e->d_name, err.msg);
    free(text);
    count++;
  }
  closedir(d);
  assert_true(count >= 10);
}

/* ---- Emitter ---------------------------------------------------------------------------- */

static void test_emitter_output(void **state)
{
  tide_yaml_emitter *em;
  tide_err err;
  const char *text;
  size_t len = 0;
  assert_int_equal(tide_yaml_emitter_new(&em, 2, &err), 0);
  assert_int_equal(tide_yaml_emit_document_start(em, 0, &err), 0);
  assert_int_equal(tide_yaml_emit_mapping_start(em, NULL, &err), 0);
  const char *strings[][2] = {
      {"plain", "word"},     {"num", "42"},    {"ver", "0.2"},    {"bool", "yes"},
      {"null", ""},          {"tilde", "~"},   {"y", "y"},        {"semver", "1.2.3"},
      {"colon", "a: b"},     {"hash", "a #b"}, {"lead", " x"},    {"multi", "one\ntwo\n"},
      {"dash", "-"},         {"neg", "-5"},    {"octal", "0755"}, {"date", "2024-01-01"},
      {"utf8", "h\xc3\xa9"},
  };
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
    assert_int_equal(
        tide_yaml_emit_scalar(em, strings[i][0], strlen(strings[i][0]), TIDE_YAML_ANY, NULL, &err),
        0);
    assert_int_equal(
        tide_yaml_emit_scalar(em, strings[i][1], strlen(strings[i][1]), TIDE_YAML_ANY, NULL, &err),
        0);
  }
  assert_int_equal(tide_yaml_emit_scalar(em, "n", 1, TIDE_YAML_ANY, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "42", 2, TIDE_YAML_PLAIN, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "list", 4, TIDE_YAML_ANY, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_sequence_start(em, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "a", 1, TIDE_YAML_ANY, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_sequence_end(em, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "empty", 5, TIDE_YAML_ANY, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_mapping_start(em, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_mapping_end(em, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "ref", 3, TIDE_YAML_ANY, NULL, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "B", 1, TIDE_YAML_ANY, "!Ref", &err), 0);
  assert_int_equal(tide_yaml_emit_mapping_end(em, &err), 0);
  assert_int_equal(tide_yaml_emit_document_end(em, &err), 0);
  assert_int_equal(tide_yaml_emitter_finish(em, &text, &len, &err), 0);
  assert_string_equal(text,
                      "plain: word\n"
                      "num: '42'\n"
                      "ver: '0.2'\n"
                      "bool: 'yes'\n"
                      "'null': ''\n"
                      "tilde: '~'\n"
                      "'y': 'y'\n"
                      "semver: '1.2.3'\n"
                      "colon: 'a: b'\n"
                      "hash: 'a #b'\n"
                      "lead: ' x'\n"
                      "multi: |\n"
                      "  one\n"
                      "  two\n"
                      "dash: '-'\n"
                      "neg: '-5'\n"
                      "octal: '0755'\n"
                      "date: '2024-01-01'\n"
                      "utf8: h\xc3\xa9\n"
                      "'n': 42\n"
                      "list:\n"
                      "- a\n"
                      "empty: {}\n"
                      "ref: !Ref B\n");
  assert_int_equal(len, strlen(text));
  tide_yaml_emitter_free(em);
}

static void test_emitter_errors(void **state)
{
  tide_yaml_emitter *em;
  tide_err err;
  assert_int_equal(tide_yaml_emitter_new(&em, 1, &err), TIDE_EINPUT);
  assert_null(em);
  assert_string_equal(err.msg, "yaml encode: indent must be 2 to 9, got 1");

  assert_int_equal(tide_yaml_emitter_new(&em, 4, &err), 0);
  assert_int_equal(tide_yaml_emit_document_start(em, 0, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "a\xff", 2, TIDE_YAML_ANY, NULL, &err), TIDE_EYAML);
  assert_string_equal(err.msg, "yaml encode: invalid UTF-8 in a string or tag");
  /* After a failure, nothing more is accepted. */
  assert_int_equal(tide_yaml_emit_scalar(em, "a", 1, TIDE_YAML_ANY, NULL, &err), TIDE_EYAML);
  tide_yaml_emitter_free(em);

  /* Events out of order: a mapping end with no mapping open. */
  assert_int_equal(tide_yaml_emitter_new(&em, 2, &err), 0);
  assert_int_equal(tide_yaml_emit_document_start(em, 0, &err), 0);
  assert_int_equal(tide_yaml_emit_mapping_end(em, &err), TIDE_EYAML);
  assert_true(strncmp(err.msg, "yaml encode: ", 13) == 0);
  tide_yaml_emitter_free(em);
  tide_yaml_emitter_free(NULL);

  /* Tags libyaml would write as a shorthand holding a flow indicator, which no parser reads
  ** back as written: refused. A verbatim tag with a comma elsewhere is fine (the control). */
  static const char *const refused[] = {"!a,b", "tag:yaml.org,2002:tag:example.com,2024:x",
                                        "tag:yaml.org,2002:a[b"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    assert_int_equal(tide_yaml_emitter_new(&em, 2, &err), 0);
    assert_int_equal(tide_yaml_emit_document_start(em, 0, &err), 0);
    assert_int_equal(tide_yaml_emit_scalar(em, "v", 1, TIDE_YAML_ANY, refused[i], &err),
                     TIDE_EYAML);
    assert_non_null(strstr(err.msg, "cannot be written back"));
    tide_yaml_emitter_free(em);
  }
  assert_int_equal(tide_yaml_emitter_new(&em, 2, &err), 0);
  assert_int_equal(tide_yaml_emit_document_start(em, 0, &err), 0);
  assert_int_equal(tide_yaml_emit_scalar(em, "v", 1, TIDE_YAML_ANY, "tag:yaml.org,2002:str", &err),
                   0);
  tide_yaml_emitter_free(em);
}

static void test_format_float(void **state)
{
  static const struct {
    double d;
    const char *text;
  } cases[] = {
      {0.1, "0.1"},
      {3.0, "3.0"},
      {-0.0, "-0.0"},
      {1e20, "1e+20"},
      {1.5e-7, "1.5e-07"},
      {0.30000000000000004, "0.30000000000000004"},
      {123456789.0, "123456789.0"},
  };
  char buf[32];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = tide_yaml_format_float(cases[i].d, buf);
    assert_string_equal(buf, cases[i].text);
    assert_int_equal(n, strlen(buf));
    tide_yaml_value v;
    assert_int_equal(tide_yaml_resolve(buf, n, &v), TIDE_YAML_FLOAT);
    assert_true(v.f == cases[i].d);
  }
  tide_yaml_format_float(INFINITY, buf);
  assert_string_equal(buf, ".inf");
  tide_yaml_format_float(-INFINITY, buf);
  assert_string_equal(buf, "-.inf");
  tide_yaml_format_float(NAN, buf);
  assert_string_equal(buf, ".nan");
}

static void test_needs_quotes(void **state)
{
  const char *quoted[] = {"",  "true", "No", "null", "~",     "12",         "1.5", ".inf", "y",
                          "N", "<<",   "=",  "0755", "1_000", "2024-01-01", "-1",  ".5",   "1.2.3"};
  const char *plain[] = {"hello", "a b", "x1", "-", "-x", "+", ".", "+x1", "version", "yess"};
  for (size_t i = 0; i < sizeof quoted / sizeof quoted[0]; i++)
    if (!tide_yaml_needs_quotes(quoted[i], strlen(quoted[i])))
      fail_msg("'%s' should need quotes", quoted[i]);
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
    if (tide_yaml_needs_quotes(plain[i], strlen(plain[i])))
      fail_msg("'%s' should not need quotes", plain[i]);
}

static void test_round_trips(void **state)
{
  round_trip("a: 1\nb: [x, 'y', \"2\", ~, true, 'true', 1.5, '']\nc: {d: {e: f}}\n");
  round_trip("- |\n  line one\n  line two\n- >-\n  folded\n  text\n- \"tab\\there\"\n");
  round_trip("k: !Ref Bucket\nl: !GetAtt [A, B]\nm: !!str 12\nn: !!int '7'\n");
  round_trip("first: 1\n---\n- second\n--- third\n");
  round_trip("base: &b {x: 1}\nuse: *b\n");
  round_trip("\"key: with colon\": v\n? |\n  multi\n  line key\n: v\n' lead': \"\\0nul\"\n");
  round_trip("s: \"\\u00e9\\u4e2d\\U0001F600 \\x7f \\e\"\n");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_positions),
      cmocka_unit_test(test_crlf_and_source_text),
      cmocka_unit_test(test_big_mapping_index),
      cmocka_unit_test(test_resolution_rule),
      cmocka_unit_test(test_quoted_and_block_scalars_are_strings),
      cmocka_unit_test(test_tags),
      cmocka_unit_test(test_multi_document),
      cmocka_unit_test(test_anchors_and_aliases),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_non_scalar_keys),
      cmocka_unit_test(test_alias_errors),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_alias_bomb),
      cmocka_unit_test(test_syntax_error_messages),
      cmocka_unit_test(test_hostile_inputs),
      cmocka_unit_test(test_fixtures),
      cmocka_unit_test(test_emitter_output),
      cmocka_unit_test(test_emitter_errors),
      cmocka_unit_test(test_format_float),
      cmocka_unit_test(test_needs_quotes),
      cmocka_unit_test(test_round_trips),
  };
  return cmocka_run_group_tests_name("yaml", tests, NULL, NULL);
}
