/*
** Spans: the record of what ran. The run has a root span; every task, process (and later stage,
** action, step) opens a child span. The host keeps the open spans in memory, in start order, for
** the live view, and tells each observer about every begin and end so that the store can persist
** them in batches.
**
** Single-threaded: call only from the loop thread.
*/
#ifndef TIDE_TRACE_H
#define TIDE_TRACE_H

#include <stdint.h>

typedef enum tide_span_status {
  TIDE_SPAN_RUNNING = 0,
  TIDE_SPAN_OK,
  TIDE_SPAN_ERROR,
  TIDE_SPAN_CANCELLED,
  TIDE_SPAN_TIMEOUT,
  TIDE_SPAN_INTERRUPTED,
} tide_span_status;

typedef struct tide_span tide_span;
struct tide_span {
  uint64_t id;            /* unique within the process, from 1 */
  uint64_t parent;        /* 0 for the root */
  char kind[16];          /* "run", "task", "proc", ... */
  char *name;             /* owned */
  char *attrs;            /* owned JSON object text, or NULL */
  int64_t start_us;       /* wall clock, microseconds since the epoch */
  int64_t end_us;         /* 0 while running */
  uint64_t start_mono_ns; /* uv_hrtime at begin, for durations */
  uint64_t duration_ns;   /* set at end */
  tide_span_status status;
  int depth;              /* 0 for the root */
  tide_span *prev, *next; /* the open-span list, in start order */
};

typedef struct tide_trace tide_trace;

/* Called after a span begins (end_us == 0) and after it ends, before an ended span is freed. */
typedef void (*tide_trace_observer)(void *ud, const tide_span *span);

/* Creates an empty trace; free with tide_trace_free(). Returns NULL when out of memory. */
tide_trace *tide_trace_new(void);

/* Frees the trace and every span still open, without notifying observers. */
void tide_trace_free(tide_trace *tr);

/*
** Masks every span's name and attributes with m (see tide/mask.h) before observers see them, so
** no secret value reaches the store or the view through a span. Takes a reference; NULL drops it.
*/
struct tide_mask;
void tide_trace_set_mask(tide_trace *tr, struct tide_mask *m);

/* Adds an observer (at most 4). Returns 0, or TIDE_ELIMIT. */
int tide_trace_observe(tide_trace *tr, tide_trace_observer fn, void *ud);

/*
** Opens a span under parent (0 for a root) and returns it, owned by the trace until
** tide_span_end(). name is copied. Returns NULL when out of memory.
*/
tide_span *tide_span_begin(tide_trace *tr, uint64_t parent, const char *kind, const char *name);

/* Replaces the span's attributes with a copy of json (a JSON object text, or NULL). */
void tide_span_set_attrs(tide_span *span, const char *json);

/* Ends the span with status, notifies observers and frees it: the pointer is dead afterwards. */
void tide_span_end(tide_trace *tr, tide_span *span, tide_span_status status);

/* The open spans in start order: first, then ->next until NULL. Borrowed. */
const tide_span *tide_trace_open_spans(const tide_trace *tr);

/* Lowercase status word: "running", "ok", "error", "cancelled", "timeout", "interrupted". */
const char *tide_span_status_name(tide_span_status status);

/* Wall clock in microseconds since the epoch. */
int64_t tide_now_us(void);

#endif
