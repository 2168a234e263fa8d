/*
** Spans in memory: ids, the open-span list and observer notification. Persisting spans is the
** store's job (an observer); drawing them is the view's.
*/
#include "tide/trace.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "tide/err.h"
#include "tide/mask.h"

#define MAX_OBSERVERS 4

struct tide_trace {
  uint64_t next_id;
  tide_span *first, *last;
  struct {
    tide_trace_observer fn;
    void *ud;
  } observers[MAX_OBSERVERS];
  int nobservers;
  tide_mask *mask; /* a reference, or NULL */
};

int64_t tide_now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

tide_trace *tide_trace_new(void)
{
  tide_trace *tr = calloc(1, sizeof *tr);
  if (tr)
    tr->next_id = 1;
  return tr;
}

static void span_free(tide_span *span)
{
  free(span->name);
  free(span->attrs);
  free(span);
}

void tide_trace_free(tide_trace *tr)
{
  if (!tr)
    return;
  tide_span *span = tr->first;
  while (span) {
    tide_span *next = span->next;
    span_free(span);
    span = next;
  }
  tide_mask_unref(tr->mask);
  free(tr);
}

void tide_trace_set_mask(tide_trace *tr, tide_mask *m)
{
  tide_mask_ref(m);
  tide_mask_unref(tr->mask);
  tr->mask = m;
}

/* Replaces *field with its masked copy when it holds a registered value. */
static void mask_field(tide_mask *m, char **field)
{
  if (!*field)
    return;
  size_t n = strlen(*field), out_len;
  char *masked = tide_mask_string(m, *field, n, &out_len);
  if (!masked)
    return;
  if (out_len == n && memcmp(masked, *field, n) == 0) {
    free(masked);
    return;
  }
  free(*field);
  *field = masked;
}

int tide_trace_observe(tide_trace *tr, tide_trace_observer fn, void *ud)
{
  if (tr->nobservers == MAX_OBSERVERS)
    return TIDE_ELIMIT;
  tr->observers[tr->nobservers].fn = fn;
  tr->observers[tr->nobservers].ud = ud;
  tr->nobservers++;
  return 0;
}

static void notify(tide_trace *tr, tide_span *span)
{
  if (tr->mask && tide_mask_patterns(tr->mask)) {
    mask_field(tr->mask, &span->name);
    mask_field(tr->mask, &span->attrs);
  }
  for (int i = 0; i < tr->nobservers; i++)
    tr->observers[i].fn(tr->observers[i].ud, span);
}

static int depth_of(const tide_trace *tr, uint64_t parent)
{
  /* A parent is usually near the end (just opened) or near the start (the main task, with
  ** thousands of open children): scan from both ends at once. */
  const tide_span *a = tr->first, *b = tr->last;
  while (a && b) {
    if (a->id == parent)
      return a->depth + 1;
    if (b->id == parent)
      return b->depth + 1;
    if (a == b || a->next == b)
      break;
    a = a->next;
    b = b->prev;
  }
  return parent ? 1 : 0;
}

tide_span *tide_span_begin(tide_trace *tr, uint64_t parent, const char *kind, const char *name)
{
  tide_span *span = calloc(1, sizeof *span);
  if (!span)
    return NULL;
  span->name = strdup(name ? name : "");
  if (!span->name) {
    free(span);
    return NULL;
  }
  span->id = tr->next_id++;
  span->parent = parent;
  strncpy(span->kind, kind, sizeof span->kind - 1);
  span->start_us = tide_now_us();
  span->start_mono_ns = uv_hrtime();
  span->status = TIDE_SPAN_RUNNING;
  span->depth = depth_of(tr, parent);
  span->prev = tr->last;
  if (tr->last)
    tr->last->next = span;
  else
    tr->first = span;
  tr->last = span;
  notify(tr, span);
  return span;
}

void tide_span_set_attrs(tide_span *span, const char *json)
{
  free(span->attrs);
  span->attrs = json ? strdup(json) : NULL;
}

void tide_span_end(tide_trace *tr, tide_span *span, tide_span_status status)
{
  span->duration_ns = uv_hrtime() - span->start_mono_ns;
  span->end_us = span->start_us + (int64_t)(span->duration_ns / 1000);
  span->status = status == TIDE_SPAN_RUNNING ? TIDE_SPAN_OK : status;
  if (span->prev)
    span->prev->next = span->next;
  else
    tr->first = span->next;
  if (span->next)
    span->next->prev = span->prev;
  else
    tr->last = span->prev;
  span->prev = span->next = NULL;
  notify(tr, span);
  span_free(span);
}

const tide_span *tide_trace_open_spans(const tide_trace *tr)
{
  return tr->first;
}

const char *tide_span_status_name(tide_span_status status)
{
  static const char *const names[] = {"running",   "ok",      "error",
                                      "cancelled", "timeout", "interrupted"};
  return (unsigned)status < sizeof names / sizeof names[0] ? names[status] : "unknown";
}
