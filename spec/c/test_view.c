/*
** host/view.c: plain lines per finished task or process, the TTY block and its permanent lines,
** the summary, mode picking from the environment, and a clean loop after freeing.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "tide/view.h"

typedef struct fixture {
  uv_loop_t loop;
  tide_trace *trace;
  tide_view *view;
  FILE *out;
  char *text;
  size_t len;
} fixture;

static void make(fixture *f, tide_view_mode mode)
{
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->trace = tide_trace_new();
  assert_non_null(f->trace);
  f->out = open_memstream(&f->text, &f->len);
  tide_err err;
  assert_int_equal(tide_view_new(&f->view, &f->loop, f->trace, mode, f->out, &err), 0);
  assert_int_equal(tide_trace_observe(f->trace, tide_view_observe, f->view), 0);
}

/* Frees the view, checks the loop closes with nothing left, and returns what was written. */
static char *done(fixture *f)
{
  tide_view_free(f->view);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tide_trace_free(f->trace);
  fclose(f->out);
  return f->text;
}

static void test_plain(void **state)
{
  fixture f;
  make(&f, TIDE_VIEW_PLAIN);
  tide_span *run = tide_span_begin(f.trace, 0, "run", "build.lua");
  tide_span *main = tide_span_begin(f.trace, 0, "task", "main");
  tide_span *a = tide_span_begin(f.trace, main->id, "proc", "make test");
  tide_span *b = tide_span_begin(f.trace, main->id, "task", "lint\nme");
  tide_span *c = tide_span_begin(f.trace, main->id, "task", "slow");
  fflush(f.out);
  assert_int_equal(f.len, 0); /* nothing for what begins */
  tide_span_end(f.trace, a, TIDE_SPAN_OK);
  tide_span_end(f.trace, b, TIDE_SPAN_ERROR);
  tide_span_end(f.trace, c, TIDE_SPAN_CANCELLED);
  tide_span_end(f.trace, main, TIDE_SPAN_OK);
  tide_span_end(f.trace, run, TIDE_SPAN_OK);
  tide_view_finish(f.view, 7, "failed", 1);
  tide_span *late = tide_span_begin(f.trace, 1, "task", "late");
  tide_span_end(f.trace, late, TIDE_SPAN_OK); /* after finish: ignored */
  char *text = done(&f);

  char *lines[8] = {0};
  int n = 0;
  for (char *l = strtok(text, "\n"); l && n < 8; l = strtok(NULL, "\n"))
    lines[n++] = l;
  assert_int_equal(n, 4);
  double at;
  assert_int_equal(sscanf(lines[0], "[+%lfs] ", &at), 1);
  assert_true(at >= 0 && at < 5);
  assert_true(strncmp(lines[0] + strlen(lines[0]) - 9, "  (0.00s)", 9) == 0);
  assert_non_null(strstr(lines[0], "s] ok    proc  make test  ("));
  assert_non_null(strstr(lines[1], "] ERROR task  lint?me  ("));
  assert_non_null(strstr(lines[2], "] cancelled task  slow  ("));
  assert_true(strncmp(lines[3], "run 7 failed (exit 1) in ", 25) == 0);
  assert_non_null(strstr(lines[3], "s: 1 ok, 1 error, 1 cancelled"));
  free(text);
}

static int count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void stop_cb(uv_timer_t *t)
{
  uv_close((uv_handle_t *)t, NULL);
}

static void test_tty(void **state)
{
  fixture f;
  make(&f, TIDE_VIEW_TTY);
  tide_span *run = tide_span_begin(f.trace, 0, "run", "deploy.lua");
  tide_span *main = tide_span_begin(f.trace, 0, "task", "main");
  tide_span *a = tide_span_begin(f.trace, main->id, "proc", "rsync");
  tide_span *b = tide_span_begin(f.trace, main->id, "task", "wait");

  /* The redraw timer is unref'd: keep the loop alive with a ref'd one for 250 ms. */
  uv_timer_t keep;
  uv_timer_init(&f.loop, &keep);
  uv_timer_start(&keep, stop_cb, 250, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  fflush(f.out);
  /* About two redraws: each erases the previous three-line block (main, rsync, wait). */
  assert_true(count(f.text, "\033[3A\033[J") >= 1);
  assert_non_null(strstr(f.text, "task main"));
  assert_non_null(strstr(f.text, "  \033[33m"));  /* children indented, spinner drawn */
  assert_null(strstr(f.text, "run  deploy.lua")); /* the run itself is not in the block */

  tide_span_end(f.trace, a, TIDE_SPAN_OK);
  tide_span_end(f.trace, b, TIDE_SPAN_TIMEOUT);
  fflush(f.out);
  assert_non_null(strstr(f.text, "✓\033[0m proc rsync"));
  assert_non_null(strstr(f.text, "✗\033[0m task wait"));
  assert_non_null(strstr(f.text, "timeout"));
  tide_span_end(f.trace, main, TIDE_SPAN_OK);
  tide_span_end(f.trace, run, TIDE_SPAN_OK);
  tide_view_finish(f.view, 3, "succeeded", 0);
  char *text = done(&f);
  const char *summary = strstr(text, "run 3 \033[32msucceeded\033[0m in ");
  assert_non_null(summary);
  assert_non_null(strstr(summary, ": 1 ok, 1 timeout\n"));
  /* After the summary nothing is drawn again. */
  assert_null(strchr(strchr(summary, '\n') + 1, '\033'));
  free(text);
}

static void test_pick(void **state)
{
  setenv("TIDE_VIEW", "none", 1);
  assert_int_equal(tide_view_pick(2, 0), TIDE_VIEW_NONE);
  setenv("TIDE_VIEW", "tty", 1);
  assert_int_equal(tide_view_pick(2, 1), TIDE_VIEW_TTY);
  setenv("TIDE_VIEW", "plain", 1);
  assert_int_equal(tide_view_pick(2, 0), TIDE_VIEW_PLAIN);
  unsetenv("TIDE_VIEW");
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(tide_view_pick(fds[1], 0), TIDE_VIEW_PLAIN); /* a pipe */
  close(fds[0]);
  close(fds[1]);
  tide_view *v;
  tide_err err;
  assert_int_equal(tide_view_new(&v, NULL, NULL, TIDE_VIEW_NONE, stderr, &err), TIDE_EINPUT);
  assert_null(v);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain),
      cmocka_unit_test(test_tty),
      cmocka_unit_test(test_pick),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
