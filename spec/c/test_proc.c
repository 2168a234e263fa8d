/*
** host/proc.c in a bare libuv loop: exit codes and signals, spawn failures, stdin modes,
** environment modes, capture caps and the full log, line splitting, timeouts and termination of
** the whole group, pipes held by a background descendant, descriptor hygiene, and a released
** process still being reaped. Each test ends by closing its loop, which fails if a handle leaked.
*/
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "tide/proc.h"

typedef struct events {
  int lines, done;
} events;

static void on_event(tide_proc *p, int ev, void *ud)
{
  (void)p;
  events *e = ud;
  if (ev & TIDE_PROC_EV_LINES)
    e->lines++;
  if (ev & TIDE_PROC_EV_DONE)
    e->done++;
}

static tide_proc *spawn_ok(uv_loop_t *loop, tide_proc_opts *o)
{
  tide_proc *p = NULL;
  tide_err err;
  tide_err_clear(&err);
  if (tide_proc_spawn(loop, o, &p, &err) != 0)
    fail_msg("spawn '%s': %s", o->argv[0], err.msg);
  return p;
}

/* Runs the loop until the process is done (every handle closed) and returns its result. */
static const tide_proc_result *run_done(uv_loop_t *loop, tide_proc *p)
{
  uv_run(loop, UV_RUN_DEFAULT);
  const tide_proc_result *r = tide_proc_result_get(p);
  assert_true(r->done);
  return r;
}

static void loop_close(uv_loop_t *loop)
{
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static char *output(tide_proc *p, tide_proc_stream s)
{
  size_t n;
  const char *d = tide_proc_output(p, s, &n);
  char *c = malloc(n + 1);
  memcpy(c, d, n);
  c[n] = '\0';
  return c;
}

static const tide_proc_result *run_sh(uv_loop_t *loop, const char *script, tide_proc **out)
{
  const char *argv[] = {"sh", "-c", script, NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  *out = spawn_ok(loop, &o);
  return run_done(loop, *out);
}

static int group_alive(pid_t pgid)
{
  return kill(-pgid, 0) == 0;
}

/* Killed descendants are reparented and reaped by init a moment later. */
static int group_gone(pid_t pgid)
{
  for (int i = 0; i < 200 && group_alive(pgid); i++)
    usleep(10000);
  return !group_alive(pgid);
}

static void test_exit_and_output(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  tide_proc *p;
  const tide_proc_result *r = run_sh(&loop, "echo out; echo err >&2; exit 3", &p);
  assert_int_equal(r->code, 3);
  assert_int_equal(r->signal, 0);
  assert_false(r->timed_out);
  assert_true(r->pid > 0);
  assert_true(r->exited);
  char *out = output(p, TIDE_PROC_STDOUT), *err = output(p, TIDE_PROC_STDERR);
  assert_string_equal(out, "out\n");
  assert_string_equal(err, "err\n");
  assert_int_equal(r->bytes[TIDE_PROC_STDOUT], 4);
  assert_int_equal(r->bytes[TIDE_PROC_STDERR], 4);
  assert_false(r->truncated[TIDE_PROC_STDOUT]);
  assert_true(r->wall_ns > 0);
  free(out);
  free(err);
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_signal(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  tide_proc *p;
  const tide_proc_result *r = run_sh(&loop, "kill -TERM $$", &p);
  assert_int_equal(r->signal, SIGTERM);
  assert_int_equal(r->code, 128 + SIGTERM);
  assert_string_equal(tide_proc_signame(r->signal), "TERM");
  assert_int_equal(tide_proc_signum("SIGKILL"), SIGKILL);
  assert_int_equal(tide_proc_signum("NOPE"), 0);
  tide_proc_release(p);
  /* SIGPIPE is back to its default in the child although this process ignores it. */
  r = run_sh(&loop, "kill -PIPE $$", &p);
  assert_int_equal(r->signal, SIGPIPE);
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_spawn_failures(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  tide_proc *p = (tide_proc *)1;
  tide_err err;
  tide_proc_opts o;
  tide_proc_opts_init(&o);

  const char *nosuch[] = {"tide-no-such-program", NULL};
  o.argv = nosuch;
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOENT);
  assert_null(p);
  assert_string_equal(err.msg, "spawn: cannot execute 'tide-no-such-program': not found in PATH");

  const char *abs[] = {"/nonexistent/prog", NULL};
  o.argv = abs;
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOENT);
  assert_string_equal(err.msg,
                      "spawn: cannot execute '/nonexistent/prog': No such file or directory");

  const char *dir[] = {"/", NULL};
  o.argv = dir;
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_EACCES);

  const char *t[] = {"true", NULL};
  o.argv = t;
  o.cwd = "/nonexistent-dir";
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOENT);
  assert_string_equal(err.msg,
                      "spawn: cannot change to directory '/nonexistent-dir': No such file or "
                      "directory");
  o.cwd = "/etc/passwd";
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOTDIR);
  o.cwd = NULL;
  o.stdin_mode = TIDE_PROC_STDIN_FILE;
  o.stdin_path = "/nonexistent-file";
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOENT);
  assert_string_equal(err.msg,
                      "spawn: cannot open stdin file '/nonexistent-file': No such file or "
                      "directory");
  const char *empty[] = {NULL};
  o.argv = empty;
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_EINVAL);
  /* Nothing was left on the loop. */
  loop_close(&loop);
}

static void test_stdin_modes(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *cat[] = {"cat", NULL};
  tide_proc_opts o;
  tide_proc *p;

  /* A string larger than a pipe buffer: written asynchronously while cat echoes it. */
  size_t n = 3 * 1024 * 1024 + 7;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)('a' + i % 26);
  tide_proc_opts_init(&o);
  o.argv = cat;
  o.stdin_mode = TIDE_PROC_STDIN_DATA;
  o.stdin_data = big;
  o.stdin_len = n;
  o.max_output = n;
  p = spawn_ok(&loop, &o);
  const tide_proc_result *r = run_done(&loop, p);
  size_t len;
  const char *d = tide_proc_output(p, TIDE_PROC_STDOUT, &len);
  assert_int_equal(r->code, 0);
  assert_int_equal(len, n);
  assert_memory_equal(d, big, n);
  tide_proc_release(p);
  free(big);

  /* A file. */
  char path[] = "/tmp/tide-test-proc-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "from file\n", 10), 10);
  close(fd);
  tide_proc_opts_init(&o);
  o.argv = cat;
  o.stdin_mode = TIDE_PROC_STDIN_FILE;
  o.stdin_path = path;
  p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  char *out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "from file\n");
  free(out);
  tide_proc_release(p);
  unlink(path);

  /* /dev/null: cat ends at once. */
  tide_proc_opts_init(&o);
  o.argv = cat;
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  assert_int_equal(r->bytes[TIDE_PROC_STDOUT], 0);
  tide_proc_release(p);

  /* An open pipe. */
  tide_proc_opts_init(&o);
  o.argv = cat;
  o.stdin_mode = TIDE_PROC_STDIN_PIPE;
  p = spawn_ok(&loop, &o);
  assert_int_equal(tide_proc_write(p, "hello ", 6), 0);
  assert_int_equal(tide_proc_write(p, "world", 5), 0);
  tide_proc_close_stdin(p);
  assert_int_equal(tide_proc_write(p, "late", 4), UV_EPIPE);
  run_done(&loop, p);
  out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "hello world");
  free(out);
  tide_proc_release(p);

  /* Writing without a pipe is misuse. */
  tide_proc_opts_init(&o);
  o.argv = cat;
  p = spawn_ok(&loop, &o);
  assert_int_equal(tide_proc_write(p, "x", 1), UV_EINVAL);
  run_done(&loop, p);
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_env_and_cwd(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  setenv("TIDE_TEST_INHERITED", "yes", 1);
  setenv("TIDE_TEST_DROP", "gone", 1);
  const char *argv[] = {
      "sh", "-c", "echo \"$TIDE_TEST_INHERITED|$TIDE_TEST_DROP|$TIDE_TEST_NEW|$(pwd)\"", NULL};
  const char *add[] = {"TIDE_TEST_NEW=new", "TIDE_TEST_DROP", NULL};
  tide_proc_opts o;
  tide_proc *p;
  char *out;

  tide_proc_opts_init(&o);
  o.argv = argv;
  o.cwd = "/tmp";
  p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "yes|gone||/tmp\n");
  free(out);
  tide_proc_release(p);

  o.cwd = NULL;
  o.env_mode = TIDE_PROC_ENV_ADD;
  o.env = add;
  p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  out = output(p, TIDE_PROC_STDOUT);
  char expect[4200];
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  snprintf(expect, sizeof expect, "yes||new|%s\n", cwd);
  assert_string_equal(out, expect);
  free(out);
  tide_proc_release(p);

  /* Replace: only what is given. PATH is gone too, so the program needs a full path. */
  const char *only[] = {"TIDE_TEST_NEW=only", NULL};
  const char *argv2[] = {"/bin/sh", "-c", "echo \"$TIDE_TEST_INHERITED|$TIDE_TEST_NEW\"; env",
                         NULL};
  o.argv = argv2;
  o.env_mode = TIDE_PROC_ENV_REPLACE;
  o.env = only;
  p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  out = output(p, TIDE_PROC_STDOUT);
  assert_non_null(strstr(out, "|only\n"));
  assert_null(strstr(out, "TIDE_TEST_INHERITED"));
  free(out);
  tide_proc_release(p);

  /* PATH lookup uses the child's PATH. */
  const char *path_env[] = {"PATH=/nonexistent", NULL};
  const char *sh[] = {"sh", "-c", "true", NULL};
  o.argv = sh;
  o.env = path_env;
  tide_err err;
  assert_int_equal(tide_proc_spawn(&loop, &o, &p, &err), UV_ENOENT);
  loop_close(&loop);
}

static void test_cap_and_log(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  char log[] = "/tmp/tide-test-log-XXXXXX";
  int fd = mkstemp(log);
  close(fd);
  unlink(log);
  const char *argv[] = {"sh", "-c", "head -c 300000 /dev/zero; echo tail; echo e >&2", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.max_output = 1000;
  o.log_path = log;
  tide_proc *p = spawn_ok(&loop, &o);
  const tide_proc_result *r = run_done(&loop, p);
  size_t n;
  tide_proc_output(p, TIDE_PROC_STDOUT, &n);
  assert_int_equal(n, 1000);
  assert_true(r->truncated[TIDE_PROC_STDOUT]);
  assert_false(r->truncated[TIDE_PROC_STDERR]);
  assert_int_equal(r->bytes[TIDE_PROC_STDOUT], 300005);
  assert_int_equal(r->log_error, 0);
  assert_true(r->log_opened);
  struct stat st;
  assert_int_equal(stat(log, &st), 0);
  assert_int_equal(st.st_size, 300005 + 2);
  assert_int_equal(st.st_mode & 0777, 0600);
  tide_proc_release(p);

  /* Nothing captured at all with a cap of 0; the log still has everything (appended). */
  o.max_output = 0;
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  tide_proc_output(p, TIDE_PROC_STDOUT, &n);
  assert_int_equal(n, 0);
  assert_true(r->truncated[TIDE_PROC_STDOUT]);
  assert_int_equal(stat(log, &st), 0);
  assert_int_equal(st.st_size, 2 * (300005 + 2));
  tide_proc_release(p);
  unlink(log);

  /* A log that cannot be created does not stop the process; the result says so. */
  o.log_path = "/nonexistent/dir/x.log";
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  assert_int_equal(r->code, 0);
  assert_int_equal(r->log_error, ENOENT);
  assert_false(r->log_opened);
  tide_proc_release(p);

  /* A silent process leaves no log file. */
  const char *t[] = {"true", NULL};
  o.argv = t;
  o.log_path = log;
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  assert_false(r->log_opened);
  assert_int_equal(stat(log, &st), -1);
  tide_proc_release(p);
  loop_close(&loop);
}

typedef struct line_rec {
  int stream;
  char text[64];
  size_t len;
} line_rec;

static int take_lines(tide_proc *p, line_rec *recs, int max)
{
  int n = 0;
  tide_proc_stream s;
  const char *l;
  size_t len;
  while (tide_proc_next_line(p, &s, &l, &len)) {
    if (n < max) {
      recs[n].stream = s;
      recs[n].len = len;
      snprintf(recs[n].text, sizeof recs[n].text, "%.*s", (int)(len < 63 ? len : 63), l);
    }
    n++;
  }
  return n;
}

static void test_lines(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *argv[] = {"sh", "-c", "printf 'one\\n\\ntwo\\n'; printf 'err\\n' >&2; printf 'last'",
                        NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.split_lines = 1;
  events ev = {0, 0};
  o.on_event = on_event;
  o.ud = &ev;
  tide_proc *p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  assert_true(ev.lines >= 1);
  assert_int_equal(ev.done, 1);
  line_rec recs[16];
  int n = take_lines(p, recs, 16);
  assert_int_equal(n, 5);
  int outs = 0;
  const char *expect[] = {"one", "", "two", "last"};
  for (int i = 0; i < n; i++) {
    if (recs[i].stream == TIDE_PROC_STDERR) {
      assert_string_equal(recs[i].text, "err");
    } else {
      assert_string_equal(recs[i].text, expect[outs]);
      outs++;
    }
  }
  assert_int_equal(outs, 4);
  tide_proc_release(p);

  /* A line longer than the piece size arrives in pieces; no bytes are lost. */
  const char *longl[] = {"sh", "-c", "head -c 600000 /dev/zero | tr '\\0' x; echo; echo end", NULL};
  o.argv = longl;
  o.max_output = 0;
  p = spawn_ok(&loop, &o);
  run_done(&loop, p);
  tide_proc_stream s;
  const char *l;
  size_t len, total = 0;
  int count = 0;
  while (tide_proc_next_line(p, &s, &l, &len)) {
    count++;
    if (len > 0 && l[0] == 'x')
      total += len;
    else
      assert_true(len == 3 && memcmp(l, "end", 3) == 0);
  }
  assert_int_equal(total, 600000);
  assert_int_equal(count, 4); /* 256 KiB + 256 KiB + rest, then "end" */
  tide_proc_release(p);
  loop_close(&loop);
}

/* The consumer takes lines only when told; reading pauses past 1 MiB queued, and resumes. */
typedef struct slow {
  tide_proc *p;
  size_t got;
  int done;
} slow;

static void slow_event(tide_proc *p, int ev, void *ud)
{
  slow *sl = ud;
  if (ev & TIDE_PROC_EV_DONE)
    sl->done = 1;
}

static void idle_take(uv_idle_t *idle)
{
  slow *sl = idle->data;
  tide_proc_stream s;
  const char *l;
  size_t len;
  /* Take a few lines per turn; the queue must stay bounded meanwhile. */
  for (int i = 0; i < 100 && tide_proc_next_line(sl->p, &s, &l, &len); i++)
    sl->got++;
  if (sl->done && !tide_proc_next_line(sl->p, &s, &l, &len))
    uv_idle_stop(idle);
  else if (sl->done)
    sl->got++;
}

static void test_lines_backpressure(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *argv[] = {"sh", "-c", "seq 1 300000", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.split_lines = 1;
  o.max_output = 0;
  slow sl = {NULL, 0, 0};
  o.on_event = slow_event;
  o.ud = &sl;
  sl.p = spawn_ok(&loop, &o);
  uv_idle_t idle;
  uv_idle_init(&loop, &idle);
  idle.data = &sl;
  uv_idle_start(&idle, idle_take);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(sl.done);
  assert_int_equal(sl.got, 300000);
  assert_int_equal(tide_proc_result_get(sl.p)->bytes[TIDE_PROC_STDOUT], 1988895);
  tide_proc_release(sl.p);
  uv_close((uv_handle_t *)&idle, NULL);
  loop_close(&loop);
}

static void noop_timer(uv_timer_t *t)
{
  (void)t;
}

/* Runs the loop for about ms milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, noop_timer, ms, 0);
  while (uv_is_active((uv_handle_t *)&t))
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

/* Nobody takes the lines: reading pauses, and the child blocks on a full pipe. */
static void test_lines_unconsumed(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *argv[] = {"seq", "1", "1000000", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.split_lines = 1;
  o.max_output = 0;
  o.grace_ms = 200;
  tide_proc *p = spawn_ok(&loop, &o);
  run_for(&loop, 300);
  const tide_proc_result *r = tide_proc_result_get(p);
  assert_false(r->exited);
  assert_true(r->bytes[TIDE_PROC_STDOUT] < 6888896);
  /* The listener goes away: reading resumes and the child finishes normally. */
  tide_proc_stop_lines(p);
  r = run_done(&loop, p);
  assert_int_equal(r->code, 0);
  assert_int_equal(r->bytes[TIDE_PROC_STDOUT], 6888896);
  tide_proc_stream s;
  const char *l;
  size_t len;
  assert_int_equal(tide_proc_next_line(p, &s, &l, &len), 0);
  tide_proc_release(p);

  /* Terminated while paused with nobody consuming: it still completes. */
  p = spawn_ok(&loop, &o);
  run_for(&loop, 300);
  tide_proc_terminate(p, 0);
  r = run_done(&loop, p);
  assert_true(r->cancelled);
  assert_int_equal(r->signal, SIGTERM);
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_timeout_kills_group(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* A shell with a grandchild in the background: both must go. */
  const char *argv[] = {"sh", "-c", "sleep 30 & sleep 30; echo never", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.timeout_ms = 200;
  o.grace_ms = 2000;
  uint64_t t0 = uv_hrtime();
  tide_proc *p = spawn_ok(&loop, &o);
  const tide_proc_result *r = run_done(&loop, p);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(r->timed_out);
  assert_int_equal(r->code, 124);
  assert_int_equal(r->signal, SIGTERM);
  assert_false(r->cancelled);
  assert_true(group_gone(r->pid));
  assert_true(ms < 1500); /* TERM was enough: no grace wait */
  char *out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "");
  free(out);
  tide_proc_release(p);

  /* TERM ignored by everyone: KILL after the grace period. */
  const char *stubborn[] = {"sh", "-c", "trap '' TERM; sleep 30 & sleep 30", NULL};
  o.argv = stubborn;
  o.timeout_ms = 100;
  o.grace_ms = 300;
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  assert_true(r->timed_out);
  assert_int_equal(r->code, 124);
  assert_int_equal(r->signal, SIGKILL);
  assert_true(group_gone(r->pid));
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_terminate(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *argv[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  tide_proc *p = spawn_ok(&loop, &o);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(tide_proc_kill(p, 0), 0);
  tide_proc_terminate(p, 0);
  tide_proc_terminate(p, 0); /* idempotent */
  const tide_proc_result *r = run_done(&loop, p);
  assert_true(r->cancelled);
  assert_false(r->timed_out);
  assert_int_equal(r->signal, SIGTERM);
  assert_int_equal(r->code, 128 + SIGTERM);
  assert_true(group_gone(r->pid));
  assert_int_equal(tide_proc_kill(p, SIGTERM), UV_ESRCH);
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_pipes_held(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* The shell exits at once; its background sleep keeps stdout open. */
  const char *argv[] = {"sh", "-c", "echo hi; sleep 30 &", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.grace_ms = 200;
  tide_proc *p = spawn_ok(&loop, &o);
  const tide_proc_result *r = run_done(&loop, p);
  assert_int_equal(r->code, 0);
  assert_true(r->pipes_held);
  char *out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "hi\n");
  free(out);
  /* Documented: a normal exit does not kill the descendant. Clean up here. */
  assert_true(group_alive(r->pid));
  kill(-r->pid, SIGKILL);
  tide_proc_release(p);

  /* The same while terminating: the group is killed. */
  o.timeout_ms = 100;
  const char *argv2[] = {"sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait", NULL};
  o.argv = argv2;
  p = spawn_ok(&loop, &o);
  r = run_done(&loop, p);
  assert_true(r->timed_out);
  assert_int_equal(r->code, 124);
  assert_true(group_gone(r->pid));
  tide_proc_release(p);
  loop_close(&loop);
}

static void test_no_fd_leak(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* An inheritable descriptor in the parent must not reach the child. */
  int fd = open("/dev/null", O_RDONLY);
  assert_true(fd >= 3);
  const char *argv[] = {"ls", "/proc/self/fd", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.stdin_mode = TIDE_PROC_STDIN_PIPE;
  tide_proc *p = spawn_ok(&loop, &o);
  tide_proc_close_stdin(p);
  run_done(&loop, p);
  char *out = output(p, TIDE_PROC_STDOUT);
  assert_string_equal(out, "0\n1\n2\n3\n"); /* 3 is ls's own directory stream */
  free(out);
  tide_proc_release(p);
  close(fd);
  loop_close(&loop);
}

static void test_release_running(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *argv[] = {"sh", "-c", "sleep 0.2; echo x", NULL};
  tide_proc_opts o;
  tide_proc_opts_init(&o);
  o.argv = argv;
  o.split_lines = 1;
  events ev = {0, 0};
  o.on_event = on_event;
  o.ud = &ev;
  tide_proc *p = spawn_ok(&loop, &o);
  pid_t pid = tide_proc_result_get(p)->pid;
  tide_proc_release(p); /* no more events; still reaped and freed (ASan checks the free) */
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(ev.done, 0);
  assert_int_equal(kill(pid, 0), -1);
  assert_int_equal(errno, ESRCH); /* reaped: not even a zombie */

  /* Terminate then release: the detached process is still killed and reaped. */
  const char *sl[] = {"sleep", "30", NULL};
  tide_proc_opts_init(&o);
  o.argv = sl;
  p = spawn_ok(&loop, &o);
  pid = tide_proc_result_get(p)->pid;
  tide_proc_terminate(p, 0);
  tide_proc_release(p);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(kill(pid, 0), -1);
  loop_close(&loop);
}

static void test_resources(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  tide_proc *p;
  /* Burn a little CPU and touch 20 MB. */
  const tide_proc_result *r =
      run_sh(&loop, "head -c 20000000 /dev/zero | tr '\\0' a | wc -c >/dev/null", &p);
  assert_int_equal(r->code, 0);
  assert_true(r->cpu_user + r->cpu_sys > 0.0);
  assert_true(r->max_rss > 100 * 1024);
  tide_proc_release(p);
  loop_close(&loop);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN); /* as tide does: see proc.h */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exit_and_output),
      cmocka_unit_test(test_signal),
      cmocka_unit_test(test_spawn_failures),
      cmocka_unit_test(test_stdin_modes),
      cmocka_unit_test(test_env_and_cwd),
      cmocka_unit_test(test_cap_and_log),
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_lines_backpressure),
      cmocka_unit_test(test_lines_unconsumed),
      cmocka_unit_test(test_timeout_kills_group),
      cmocka_unit_test(test_terminate),
      cmocka_unit_test(test_pipes_held),
      cmocka_unit_test(test_no_fd_leak),
      cmocka_unit_test(test_release_running),
      cmocka_unit_test(test_resources),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
