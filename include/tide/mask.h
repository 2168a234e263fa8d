/*
** Masking of secret values in output: a set of patterns (tide_mask) and streaming matchers over
** it (tide_mask_stream), one per output stream.
**
** tide_mask_add() registers a value with its derived forms: each line of a multi-line value, the
** base64 (standard and URL-safe) "stable core" at the three byte alignments, hex in both cases,
** URL encoding (query and path style), JSON string escaping and shell single-quote escaping. Every
** pattern must be at least TIDE_MASK_MIN_LEN bytes: shorter values are not masked (a short value
** would turn common words into "***" and offers little to hide), and a line of a multi-line value
** that is shorter is skipped and counted in the result.
**
** A stream replaces every occurrence of a pattern by "***": the longest pattern at a position wins
** and overlapping occurrences merge into one "***". It withholds only the trailing bytes that may
** still begin an occurrence, so a value split across chunks at any offset is masked; flush emits
** the rest at end of stream.
**
** Pattern bytes live in sodium guarded memory (locked, never in a core dump, wiped when freed).
** Patterns can be added while streams are running: a stream sees them from its next feed.
** Ownership: a tide_mask is reference-counted; each stream holds a reference, so the mask lives
** until its last stream is freed. Single-threaded: one thread uses a mask and its streams.
*/
#ifndef TIDE_MASK_H
#define TIDE_MASK_H

#include <stddef.h>

#include "tide/err.h"

#define TIDE_MASK_MIN_LEN 8
#define TIDE_MASK_REPLACEMENT "***"

typedef struct tide_mask tide_mask;
typedef struct tide_mask_stream tide_mask_stream;

/* Receives masked output. d is borrowed for the call. */
typedef void (*tide_mask_out_fn)(void *ud, const char *d, size_t n);

/* A new empty mask with one reference, or NULL when out of memory. */
tide_mask *tide_mask_new(void);

/* Adds / drops a reference. unref of the last reference frees the mask; NULL is allowed. */
tide_mask *tide_mask_ref(tide_mask *m);
void tide_mask_unref(tide_mask *m);

/*
** Registers value (copied) and its derived forms. Returns the number of lines of a multi-line
** value that were too short to mask (0 normally), or a negative code: TIDE_EINPUT when the value
** itself is shorter than TIDE_MASK_MIN_LEN (nothing registered), -ENOMEM. Registering the same
** value twice is harmless.
*/
int tide_mask_add(tide_mask *m, const void *value, size_t len, tide_err *err);

/* Number of distinct patterns registered. */
size_t tide_mask_patterns(const tide_mask *m);

/* A new stream over m (takes a reference), or NULL when out of memory. */
tide_mask_stream *tide_mask_stream_new(tide_mask *m);

/* Frees the stream without emitting what it withholds (that is wiped). NULL is allowed. */
void tide_mask_stream_free(tide_mask_stream *s);

/* Feeds n bytes; masked output goes to out (zero or more calls). */
void tide_mask_feed(tide_mask_stream *s, const char *d, size_t n, tide_mask_out_fn out, void *ud);

/* Emits what the stream still withholds, masked; the stream can be fed again afterwards. */
void tide_mask_flush(tide_mask_stream *s, tide_mask_out_fn out, void *ud);

/*
** Masks a whole string: returns a malloc'd NUL-terminated copy with every occurrence replaced and
** its length in *out_len, or NULL when out of memory. m may be NULL (a plain copy).
*/
char *tide_mask_string(tide_mask *m, const char *d, size_t n, size_t *out_len);

#endif
