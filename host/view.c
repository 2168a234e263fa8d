/*
** The live view: draws the trace on a terminal, or prints it as plain lines.
**
** It reads the trace's open-span list to draw and hears about span ends through
** tide_view_observe(); it never writes the store and never runs Lua. Each frame is built in one
** buffer and written with one fwrite, so a redraw does not flicker. Roots (the run's span, the
** main task) are not reported one by one: the summary line stands for them.
*/
#include "tide/view.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define REDRAW_MS 100
#define MAX_BLOCK_LINES 20

#define ANSI_RESET "\033[0m"
#define ANSI_DIM "\033[2m"
#define ANSI_GREEN "\033[32m"
#define ANSI_RED "\033[31m"
#define ANSI_YELLOW "\033[33m"

typedef struct buf {
  char *data;
  size_t len, cap;
} buf;

struct tide_view {
  tide_view_mode mode;
  const tide_trace *trace; /* borrowed */
  FILE *out;               /* borrowed */
  uv_timer_t timer;        /* TTY mode only; its close callback frees the view */
  uint64_t start_ns;
  int block_lines; /* lines of the block now on screen, below the cursor's line */
  unsigned frame;  /* spinner position */
  int finished;
  int held; /* no more block: the main task has ended (TTY mode) */
  int has_timer;
  unsigned counts[TIDE_SPAN_INTERRUPTED + 1]; /* finished spans by status */
  buf b;                                      /* the frame being built */
};

static const char *const spinner[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};

/* ---------------------------------------------------------------------------------------------
** Output buffer. Out of memory only loses output, never the run.
*/

static void buf_add(buf *b, const char *s, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
      return;
    b->data = d, b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static void buf_puts(buf *b, const char *s)
{
  buf_add(b, s, strlen(s));
}

static void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(buf *b, const char *fmt, ...)
{
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/*
** Appends s on one line: control characters (a newline in a task name) become '?', and at most
** cols columns are used (counting code points, not bytes). Returns the columns used.
*/
static int buf_clip(buf *b, const char *s, int cols)
{
  int used = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int starts_char = (*p & 0xc0) != 0x80;
    if (starts_char && used == cols) {
      if (cols > 0) {
        /* Replace the last character with an ellipsis: back up over its bytes. */
        while (b->len > 0 && (b->data[b->len - 1] & 0xc0) == 0x80)
          b->len--;
        if (b->len > 0)
          b->len--;
        buf_puts(b, "…");
      }
      break;
    }
    char c = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
    buf_add(b, &c, 1);
    used += starts_char;
  }
  return used;
}

static void flush_buf(tide_view *v)
{
  if (v->b.len) {
    fwrite(v->b.data, 1, v->b.len, v->out);
    fflush(v->out);
    v->b.len = 0;
  }
}

/* ---------------------------------------------------------------------------------------------
** Formatting
*/

static void format_duration(char *out, size_t size, uint64_t ns)
{
  double s = (double)ns / 1e9;
  if (s < 60)
    snprintf(out, size, "%.2fs", s);
  else if (s < 3600)
    snprintf(out, size, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(out, size, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static int term_cols(FILE *out)
{
  struct winsize ws;
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static int term_rows(FILE *out)
{
  struct winsize ws;
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0)
    return ws.ws_row;
  return 24;
}

/* Spans reported one by one: not the run's span, not a root (the main task). */
static int reported(const tide_span *span)
{
  return span->parent != 0 && strcmp(span->kind, "run") != 0;
}

static int failed(tide_span_status st)
{
  return st == TIDE_SPAN_ERROR || st == TIDE_SPAN_TIMEOUT || st == TIDE_SPAN_INTERRUPTED;
}

/* ---------------------------------------------------------------------------------------------
** The TTY block
*/

static void erase_block(tide_view *v)
{
  if (v->block_lines > 0)
    buf_printf(&v->b, "\r\033[%dA\033[J", v->block_lines);
  v->block_lines = 0;
}

static void draw_block(tide_view *v)
{
  if (v->held)
    return;
  int cols = term_cols(v->out);
  int max = term_rows(v->out) / 2;
  if (max > MAX_BLOCK_LINES)
    max = MAX_BLOCK_LINES;
  if (max < 2)
    max = 2;
  int lines = 0, more = 0;
  uint64_t now = uv_hrtime();
  const char *spin = spinner[v->frame % (sizeof spinner / sizeof spinner[0])];
  for (const tide_span *s = tide_trace_open_spans(v->trace); s; s = s->next) {
    if (strcmp(s->kind, "run") == 0)
      continue;
    if (lines == max - 1 && s->next) {
      more++;
      continue;
    }
    char dur[32];
    format_duration(dur, sizeof dur, now - s->start_mono_ns);
    int indent = 2 * s->depth;
    if (indent > cols / 2)
      indent = cols / 2;
    buf_printf(&v->b, "%*s" ANSI_YELLOW "%s" ANSI_RESET " %-4s ", indent, "", spin, s->kind);
    int room = cols - indent - 7 - (int)strlen(dur) - 3;
    buf_clip(&v->b, s->name, room > 8 ? room : 8);
    buf_printf(&v->b, "  " ANSI_DIM "%s" ANSI_RESET "\033[K\n", dur);
    lines++;
  }
  if (more) {
    buf_printf(&v->b, ANSI_DIM "  ... and %d more" ANSI_RESET "\033[K\n", more);
    lines++;
  }
  v->block_lines = lines;
}

static void redraw(tide_view *v)
{
  erase_block(v);
  draw_block(v);
  flush_buf(v);
}

static void timer_cb(uv_timer_t *timer)
{
  tide_view *v = timer->data;
  v->frame++;
  redraw(v);
}

/* ---------------------------------------------------------------------------------------------
** Span ends
*/

static void tty_line(tide_view *v, const tide_span *span)
{
  const char *mark = span->status == TIDE_SPAN_OK          ? ANSI_GREEN "✓" ANSI_RESET
                     : span->status == TIDE_SPAN_CANCELLED ? ANSI_YELLOW "-" ANSI_RESET
                                                           : ANSI_RED "✗" ANSI_RESET;
  char dur[32];
  format_duration(dur, sizeof dur, span->duration_ns);
  erase_block(v);
  int indent = span->depth > 1 ? 2 * (span->depth - 1) : 0;
  buf_printf(&v->b, "%*s%s %-4s ", indent, "", mark, span->kind);
  buf_clip(&v->b, span->name, term_cols(v->out) - indent - 30);
  buf_printf(&v->b, "  " ANSI_DIM "%s" ANSI_RESET, dur);
  if (span->status != TIDE_SPAN_OK)
    buf_printf(&v->b, "  %s%s" ANSI_RESET, failed(span->status) ? ANSI_RED : ANSI_YELLOW,
               tide_span_status_name(span->status));
  buf_puts(&v->b, "\033[K\n");
  draw_block(v);
  flush_buf(v);
}

static void plain_line(tide_view *v, const tide_span *span)
{
  char word[16];
  const char *name = tide_span_status_name(span->status);
  size_t i;
  /* Failures shout: "ERROR", "TIMEOUT"; the rest stays lowercase. */
  for (i = 0; name[i] && i < sizeof word - 1; i++)
    word[i] = span->status == TIDE_SPAN_OK || span->status == TIDE_SPAN_CANCELLED
                  ? name[i]
                  : (char)(name[i] - 'a' + 'A');
  word[i] = '\0';
  char dur[32];
  format_duration(dur, sizeof dur, span->duration_ns);
  buf_printf(&v->b, "[+%.2fs] %-5s %-5s ", (double)(uv_hrtime() - v->start_ns) / 1e9, word,
             span->kind);
  buf_clip(&v->b, span->name, 200);
  buf_printf(&v->b, "  (%s)\n", dur);
  flush_buf(v);
}

void tide_view_observe(void *ud, const tide_span *span)
{
  tide_view *v = ud;
  if (v->finished || span->end_us == 0)
    return;
  if (span->parent == 0 && strcmp(span->kind, "task") == 0 && v->mode == TIDE_VIEW_TTY) {
    /*
    ** The main task is over: the script is done. Take the block down now, because what comes
    ** next (the main error's traceback, reports of failed tasks) is written straight to the
    ** terminal, and erasing the block later would erase the end of that text instead.
    */
    v->held = 1;
    erase_block(v);
    flush_buf(v);
    return;
  }
  if (!reported(span))
    return;
  if ((unsigned)span->status < sizeof v->counts / sizeof v->counts[0])
    v->counts[span->status]++;
  if (v->mode == TIDE_VIEW_TTY)
    tty_line(v, span);
  else
    plain_line(v, span);
}

/* ---------------------------------------------------------------------------------------------
** Life cycle
*/

tide_view_mode tide_view_pick(int fd, int plain)
{
  const char *env = getenv("TIDE_VIEW");
  if (env && strcmp(env, "none") == 0)
    return TIDE_VIEW_NONE;
  if (env && strcmp(env, "plain") == 0)
    return TIDE_VIEW_PLAIN;
  if (env && strcmp(env, "tty") == 0)
    return TIDE_VIEW_TTY;
  const char *term = getenv("TERM");
  if (plain || !isatty(fd) || !term || !*term || strcmp(term, "dumb") == 0)
    return TIDE_VIEW_PLAIN;
  return TIDE_VIEW_TTY;
}

int tide_view_new(tide_view **view, uv_loop_t *loop, const tide_trace *tr, tide_view_mode mode,
                  FILE *out, tide_err *err)
{
  *view = NULL;
  if (mode != TIDE_VIEW_PLAIN && mode != TIDE_VIEW_TTY)
    return tide_err_set(err, TIDE_EINPUT, "view: no such mode %d", (int)mode);
  tide_view *v = calloc(1, sizeof *v);
  if (!v)
    return tide_err_set(err, -ENOMEM, "view: out of memory");
  v->mode = mode;
  v->trace = tr;
  v->out = out;
  v->start_ns = uv_hrtime();
  if (mode == TIDE_VIEW_TTY) {
    int rc = uv_timer_init(loop, &v->timer);
    if (rc != 0) {
      free(v);
      return tide_err_set(err, rc, "view: cannot create a timer: %s", uv_strerror(rc));
    }
    v->has_timer = 1;
    v->timer.data = v;
    uv_timer_start(&v->timer, timer_cb, REDRAW_MS, REDRAW_MS);
    /* The view never keeps tide alive: the run ends when its tasks do. */
    uv_unref((uv_handle_t *)&v->timer);
  }
  *view = v;
  return 0;
}

tide_view_mode tide_view_get_mode(const tide_view *v)
{
  return v->mode;
}

void tide_view_write(tide_view *v, const char *data, size_t len)
{
  if (v->mode == TIDE_VIEW_TTY && !v->finished) {
    erase_block(v);
    buf_add(&v->b, data, len);
    if (len && data[len - 1] != '\n')
      buf_puts(&v->b, "\n");
    draw_block(v);
  } else {
    buf_add(&v->b, data, len);
  }
  flush_buf(v);
}

void tide_view_finish(tide_view *v, int64_t run_id, const char *status, int exit_code)
{
  if (!v || v->finished)
    return;
  v->finished = 1;
  if (v->has_timer)
    uv_timer_stop(&v->timer);
  int tty = v->mode == TIDE_VIEW_TTY;
  erase_block(v);
  char dur[32];
  format_duration(dur, sizeof dur, uv_hrtime() - v->start_ns);
  int bad = strcmp(status, "succeeded") != 0;
  buf_printf(&v->b, "run %lld %s%s%s", (long long)run_id, tty ? (bad ? ANSI_RED : ANSI_GREEN) : "",
             status, tty ? ANSI_RESET : "");
  if (exit_code != 0)
    buf_printf(&v->b, " (exit %d)", exit_code);
  buf_printf(&v->b, " in %s", dur);
  const char *sep = ": ";
  for (int st = TIDE_SPAN_OK; st <= TIDE_SPAN_INTERRUPTED; st++) {
    if (v->counts[st]) {
      buf_printf(&v->b, "%s%u %s", sep, v->counts[st], tide_span_status_name(st));
      sep = ", ";
    }
  }
  buf_puts(&v->b, "\n");
  flush_buf(v);
}

static void close_cb(uv_handle_t *handle)
{
  tide_view *v = handle->data;
  free(v->b.data);
  free(v);
}

void tide_view_free(tide_view *v)
{
  if (!v)
    return;
  if (!v->finished) {
    v->finished = 1;
    erase_block(v);
    flush_buf(v);
  }
  if (v->has_timer) {
    uv_close((uv_handle_t *)&v->timer, close_cb);
  } else {
    free(v->b.data);
    free(v);
  }
}
