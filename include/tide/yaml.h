/*
** YAML on libyaml: a parser that builds a node tree with positions, and an emitter.
**
** The parser reads a whole stream (any number of documents) into one tide_yaml_stream. Every node
** records where it starts (1-based line and column), its tag, how a scalar was written, and the
** type a plain scalar resolves to (the rule is in docs/lua-api/yaml.md and tide_yaml_resolve()).
** An alias is not copied: the parent points at the anchored node itself, so the tree is a DAG.
**
** The parser refuses, with TIDE_EYAML and "NAME:LINE:COL: message":
** - syntax errors (libyaml's problem and context text);
** - collections nested deeper than TIDE_YAML_MAX_DEPTH;
** - duplicate keys in one mapping (compared as bytes), and keys that are not scalars;
** - aliases to undefined anchors, and aliases inside the node they name (recursion);
** - alias bombs: a stream whose full walk, aliases expanded, visits more than
**   TIDE_YAML_MAX_EXPANSION nodes and more than TIDE_YAML_EXPANSION_RATIO times the number of
**   nodes actually parsed. Documents without aliases always pass;
** - scalars whose explicit tag (!!int, !!float, !!bool, !!null) does not fit their text, and
**   standard tags on the wrong kind of node (!!map on a sequence, !!str on a mapping).
**
** Everything here is reentrant and touches no global state, so workers may call it.
*/
#ifndef TIDE_YAML_H
#define TIDE_YAML_H

#include <stddef.h>
#include <stdint.h>

#include "tide/err.h"

#define TIDE_YAML_MAX_DEPTH 256         /* nested collections; the root collection is level 1 */
#define TIDE_YAML_MAX_EXPANSION 1000000 /* node visits always allowed, aliases expanded */
#define TIDE_YAML_EXPANSION_RATIO 100   /* ... or this many times the parsed node count */

#define TIDE_YAML_TAG_PREFIX "tag:yaml.org,2002:" /* what "!!" expands to */

typedef enum tide_yaml_kind {
  TIDE_YAML_SCALAR = 1,
  TIDE_YAML_SEQUENCE,
  TIDE_YAML_MAPPING,
} tide_yaml_kind;

/* How a scalar was (or should be) written. TIDE_YAML_ANY is only for the emitter. */
typedef enum tide_yaml_style {
  TIDE_YAML_ANY = 0,
  TIDE_YAML_PLAIN,
  TIDE_YAML_SINGLE_QUOTED,
  TIDE_YAML_DOUBLE_QUOTED,
  TIDE_YAML_LITERAL,
  TIDE_YAML_FOLDED,
} tide_yaml_style;

/* What a scalar means, after the resolution rule and any explicit standard tag. */
typedef enum tide_yaml_type {
  TIDE_YAML_STR = 0,
  TIDE_YAML_NULL,
  TIDE_YAML_BOOL,
  TIDE_YAML_INT,
  TIDE_YAML_FLOAT,
} tide_yaml_type;

/* The value of a resolved boolean, integer or float scalar. */
typedef union tide_yaml_value {
  int b;     /* TIDE_YAML_BOOL: 0 or 1 */
  int64_t i; /* TIDE_YAML_INT */
  double f;  /* TIDE_YAML_FLOAT */
} tide_yaml_value;

typedef struct tide_yaml_node tide_yaml_node;

typedef struct tide_yaml_pair {
  tide_yaml_node *key; /* always a scalar */
  tide_yaml_node *value;
} tide_yaml_pair;

/*
** A node. All memory belongs to the stream; every pointer here is valid until tide_yaml_free().
** A node reached through an alias is the anchored node itself (same pointer), so its line and
** column are those of the anchor, and a walker that follows every edge sees it more than once.
*/
struct tide_yaml_node {
  tide_yaml_kind kind;
  tide_yaml_style style;  /* scalars: how the value was written; collections: 0 */
  tide_yaml_type type;    /* scalars: resolved type; collections: TIDE_YAML_STR */
  unsigned line, col;     /* 1-based start of the node (the quote or indicator, if any) */
  const char *tag;        /* NULL when untagged; else as libyaml expands it: "!!str" becomes
                             TIDE_YAML_TAG_PREFIX "str", "!Ref" stays "!Ref" */
  const char *anchor;     /* NULL, or the anchor name without '&' */
  size_t len;             /* scalars: bytes in value; collections: items or pairs */
  const char *value;      /* scalars: the text after unescaping and folding, NUL-terminated
                             (it may also contain NUL bytes); collections: NULL */
  tide_yaml_node **items; /* sequences: len nodes, in order */
  tide_yaml_pair *pairs;  /* mappings: len pairs, in document order, keys unique */
  tide_yaml_value as;     /* scalars of type BOOL, INT or FLOAT */
  unsigned aliases;       /* how many aliases refer to this node */
  uint64_t visits;        /* nodes a full walk from here visits, aliases expanded (saturates) */
  uint32_t *index_;       /* private: hash index of pairs, for tide_yaml_mapping_get() */
  size_t index_cap_;      /* private */
};

/* A parsed stream. Free with tide_yaml_free(). */
typedef struct tide_yaml_stream {
  size_t ndocs;          /* 0 for an empty stream (only comments or whitespace) */
  tide_yaml_node **docs; /* the root of each document; an empty document is a null scalar */
  size_t nodes;          /* nodes parsed (aliases not counted) */
  uint64_t visits;       /* nodes a full walk of every document visits, aliases expanded */
  void *arena_;          /* private */
} tide_yaml_stream;

/*
** Parses len bytes of text (UTF-8, or UTF-16 with a BOM). name is used in messages (NULL means
** "<string>"); text and name are only borrowed for the call. On success stores a new stream in
** *out and returns 0. On failure stores NULL, returns TIDE_EYAML (bad input) or -ENOMEM
*(UV_ENOMEM), and
** fills err with "NAME:LINE:COL: message".
*/
int tide_yaml_parse(const char *text, size_t len, const char *name, tide_yaml_stream **out,
                    tide_err *err);

/* Frees the stream and every node in it. NULL is allowed. */
void tide_yaml_free(tide_yaml_stream *stream);

/* The pair of map whose key is the len bytes at key, or NULL (also when map is not a mapping). */
const tide_yaml_pair *tide_yaml_mapping_get(const tide_yaml_node *map, const char *key, size_t len);

/*
** The resolution rule for an untagged plain scalar: returns its type and, for booleans, integers
** and floats, stores the value in *out (may be NULL). s need not be NUL-terminated.
**   null   ""  ~  null Null NULL
**   bool   true True TRUE false False FALSE yes Yes YES no No NO on On ON off Off OFF
**   int    [-+]?(0|[1-9][0-9]*)  0x[0-9a-fA-F]+  0o[0-7]+   (outside int64: a float)
**   float  [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? with a '.' or an exponent,
**          [-+]?(.inf|.Inf|.INF)  .nan .NaN .NAN
**   str    anything else (so "0755", "1_000", "y" and "2024-01-01" stay strings)
*/
tide_yaml_type tide_yaml_resolve(const char *s, size_t len, tide_yaml_value *out);

/*
** Formats d so that it resolves back to the same float: shortest round-trip digits, always with
** a '.' or an exponent, ".inf", "-.inf" or ".nan"; independent of the C locale. Returns the length.
*/
size_t tide_yaml_format_float(double d, char buf[32]);

/* ---- Emitter ---------------------------------------------------------------------------- */

typedef struct tide_yaml_emitter tide_yaml_emitter;

/*
** Creates an emitter that writes block style with indent spaces (2 to 9) into a memory buffer,
** and starts the stream. Stores it in *out (free with tide_yaml_emitter_free()) and returns 0, or
** returns -ENOMEM or TIDE_EINPUT (bad indent) with err filled.
**
** Events then follow the YAML grammar: document_start, one node, document_end, any number of
** times, then finish. A node is a scalar, or a sequence_start, nodes, sequence_end, or a
** mapping_start, key and value nodes in turn, mapping_end. Out-of-order events fail with
** TIDE_EYAML, and after any failure the emitter accepts nothing but free.
*/
int tide_yaml_emitter_new(tide_yaml_emitter **out, int indent, tide_err *err);

/* Begins (with an explicit "---" when explicit_start is non-zero) and ends a document. */
int tide_yaml_emit_document_start(tide_yaml_emitter *em, int explicit_start, tide_err *err);
int tide_yaml_emit_document_end(tide_yaml_emitter *em, tide_err *err);

/*
** Emits a scalar of len bytes (borrowed; must be valid UTF-8, else TIDE_EYAML). tag may be NULL.
** With tag NULL and style TIDE_YAML_ANY the scalar is a string: it is written plain only when
** it reads back as the same string (by tide_yaml_resolve() and common YAML 1.1 readers), as a
** literal block when it has line breaks, quoted otherwise. TIDE_YAML_PLAIN writes it plain when
** libyaml allows it (use it for numbers, booleans and null). Other styles are requests that
** libyaml may override when the text cannot be written that way.
*/
int tide_yaml_emit_scalar(tide_yaml_emitter *em, const char *s, size_t len, tide_yaml_style style,
                          const char *tag, tide_err *err);

/* Collections, block style (an empty one is written "[]" or "{}"). tag may be NULL. */
int tide_yaml_emit_sequence_start(tide_yaml_emitter *em, const char *tag, tide_err *err);
int tide_yaml_emit_sequence_end(tide_yaml_emitter *em, tide_err *err);
int tide_yaml_emit_mapping_start(tide_yaml_emitter *em, const char *tag, tide_err *err);
int tide_yaml_emit_mapping_end(tide_yaml_emitter *em, tide_err *err);

/*
** Ends the stream and flushes. On success stores the text (NUL-terminated, borrowed: valid until
** tide_yaml_emitter_free()) in *text and its length in *len.
*/
int tide_yaml_emitter_finish(tide_yaml_emitter *em, const char **text, size_t *len, tide_err *err);

/* Frees the emitter and its output. NULL is allowed. */
void tide_yaml_emitter_free(tide_yaml_emitter *em);

/* True when a string of len bytes, written plain, would not read back as that same string. */
int tide_yaml_needs_quotes(const char *s, size_t len);

#endif
