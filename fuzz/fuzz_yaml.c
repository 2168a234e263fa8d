/*
** libFuzzer target for host/yaml.c. Each input is parsed; when it parses, every document is
** emitted again and the emitted text must parse back into the same tree (kinds, scalar bytes and
** resolved types). That round trip checks the emitter's quoting policy as well as the parser's
** limits and error paths. Inputs are capped at 64 KiB, which is plenty to reach every limit.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide/err.h"
#include "tide/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int emit_node(tide_yaml_emitter *em, const tide_yaml_node *n, int is_key, tide_err *err)
{
  int rc;
  if (n->kind == TIDE_YAML_SCALAR) {
    /* Untagged strings use the emitter's own quoting; everything else keeps its resolution by
       being written plain (numbers, booleans, null) or with its tag. */
    tide_yaml_style style = n->type == TIDE_YAML_STR && !n->tag ? TIDE_YAML_ANY : TIDE_YAML_PLAIN;
    if (n->tag && n->style != TIDE_YAML_PLAIN)
      style = TIDE_YAML_DOUBLE_QUOTED;
    /* An empty null cannot always be written plain (libyaml quotes it as a key); "~" can. */
    if (n->type == TIDE_YAML_NULL && !n->tag && n->len == 0 && !is_key)
      return tide_yaml_emit_scalar(em, "~", 1, TIDE_YAML_PLAIN, NULL, err);
    return tide_yaml_emit_scalar(em, n->value, n->len, style, n->tag, err);
  }
  if (n->kind == TIDE_YAML_SEQUENCE) {
    if ((rc = tide_yaml_emit_sequence_start(em, n->tag, err)))
      return rc;
    for (size_t i = 0; i < n->len; i++)
      if ((rc = emit_node(em, n->items[i], 0, err)))
        return rc;
    return tide_yaml_emit_sequence_end(em, err);
  }
  if ((rc = tide_yaml_emit_mapping_start(em, n->tag, err)))
    return rc;
  for (size_t i = 0; i < n->len; i++)
    if ((rc = emit_node(em, n->pairs[i].key, 1, err)) ||
        (rc = emit_node(em, n->pairs[i].value, 0, err)))
      return rc;
  return tide_yaml_emit_mapping_end(em, err);
}

/*
** Keys must keep their bytes (that is what they are in Lua); values must keep their meaning:
** strings their bytes, other scalars their type and value.
*/
static void same_tree(const tide_yaml_node *a, const tide_yaml_node *b, int is_key)
{
  if (a->kind != b->kind)
    abort();
  if (a->kind == TIDE_YAML_SCALAR) {
    if (is_key || a->type == TIDE_YAML_STR) {
      if (a->len != b->len || memcmp(a->value, b->value, a->len) != 0)
        abort();
      if (!is_key && b->type != TIDE_YAML_STR)
        abort();
    } else if (a->type != b->type || (a->type == TIDE_YAML_BOOL && a->as.b != b->as.b) ||
               (a->type == TIDE_YAML_INT && a->as.i != b->as.i) ||
               (a->type == TIDE_YAML_FLOAT && memcmp(&a->as.f, &b->as.f, sizeof a->as.f) != 0 &&
                !(a->as.f != a->as.f && b->as.f != b->as.f))) {
      abort();
    }
    return;
  }
  if (a->len != b->len)
    abort();
  for (size_t i = 0; i < a->len; i++) {
    if (a->kind == TIDE_YAML_SEQUENCE) {
      same_tree(a->items[i], b->items[i], 0);
    } else {
      same_tree(a->pairs[i].key, b->pairs[i].key, 1);
      same_tree(a->pairs[i].value, b->pairs[i].value, 0);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  tide_yaml_stream *s = NULL, *back = NULL;
  tide_yaml_emitter *em = NULL;
  tide_err err;
  const char *text;
  size_t len;
  if (size > 64 * 1024)
    return -1;
  int rc = tide_yaml_parse((const char *)data, size, "fuzz", &s, &err);
  if (rc) {
    if (s || (rc != TIDE_EYAML && rc != -12 /* ENOMEM */) || err.code != rc || !err.msg[0])
      abort();
    return 0;
  }
  /* Aliased DAGs are emitted expanded; skip the round trip when that would be large. */
  if (s->visits > 100000)
    goto done;
  if (tide_yaml_emitter_new(&em, 2, &err))
    abort();
  for (size_t d = 0; d < s->ndocs; d++) {
    if (tide_yaml_emit_document_start(em, 1, &err) || emit_node(em, s->docs[d], 0, &err) ||
        tide_yaml_emit_document_end(em, &err))
      goto done; /* e.g. a tag libyaml will not write back; not a parser bug */
  }
  if (tide_yaml_emitter_finish(em, &text, &len, &err))
    goto done;
  if (tide_yaml_parse(text, len, "emitted", &back, &err))
    abort(); /* we wrote something we cannot read */
  if (back->ndocs != s->ndocs)
    abort();
  for (size_t d = 0; d < s->ndocs; d++)
    same_tree(s->docs[d], back->docs[d], 0);
done:
  tide_yaml_free(back);
  tide_yaml_emitter_free(em);
  tide_yaml_free(s);
  return 0;
}
