/*
** Child processes on a libuv loop, without Lua.
**
** tide_proc_spawn() starts a program with posix_spawn in its own session and process group, with
** stdin from /dev/null, a file, a string or an open pipe, and stdout and stderr read through pipes
** by the loop. Every byte read is captured up to a per-stream cap, appended to a log file when one
** is given (the log keeps everything, also past the cap), and optionally split into lines that
** the caller takes in batches. Exit is noticed through a pidfd; the child is reaped with wait4,
** which also gives its CPU time and peak RSS.
**
** A result is complete only after the child has exited AND every output pipe has reached EOF.
** When a descendant keeps the pipes open after the child has exited (a daemon started in the
** background), tide waits up to the grace period for EOF, then reads what is buffered, stops
** reading and reports pipes_held; it does not kill that descendant, unless the process was being
** terminated (timeout or cancel), in which case the whole group gets SIGKILL first.
**
** Termination (timeout, cancel, tide_proc_terminate): SIGTERM to the whole group, then SIGKILL to
** the group after the grace period. A timeout reports timed_out and exit code 124.
**
** Ownership: the tide_proc is malloc'd and owns its handles, descriptors and buffers. It lives
** until it is complete (every handle closed) AND the caller has called tide_proc_release(), so it
** can outlive its caller: a released process still runs to completion, is reaped and then freed.
** Single-threaded: call only on the loop's thread. The caller must ignore SIGPIPE (tide does):
** writing stdin to a child that has closed it must fail with EPIPE, not kill the caller.
*/
#ifndef TIDE_PROC_H
#define TIDE_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "tide/err.h"
#include "tide/mask.h"
#include "tide/sandbox.h"

typedef struct tide_proc tide_proc;

typedef enum tide_proc_stdin {
  TIDE_PROC_STDIN_NULL = 0, /* /dev/null */
  TIDE_PROC_STDIN_DATA,     /* stdin_data, written through a pipe, then closed */
  TIDE_PROC_STDIN_FILE,     /* stdin_path, opened read-only by the parent */
  TIDE_PROC_STDIN_PIPE,     /* a pipe left open for tide_proc_write() / tide_proc_close_stdin() */
} tide_proc_stdin;

typedef enum tide_proc_env {
  TIDE_PROC_ENV_INHERIT = 0, /* the parent's environment; env is ignored */
  TIDE_PROC_ENV_REPLACE,     /* exactly env */
  TIDE_PROC_ENV_ADD,         /* the parent's environment with env's entries set or, for a bare
                                "NAME" entry without '=', removed */
} tide_proc_env;

typedef enum tide_proc_stream {
  TIDE_PROC_STDOUT = 1,
  TIDE_PROC_STDERR = 2,
} tide_proc_stream;

/* Events passed to on_event. */
enum {
  TIDE_PROC_EV_LINES = 1 << 0, /* lines were queued (only with split_lines) */
  TIDE_PROC_EV_DONE = 1 << 1,  /* the result is complete and every handle is closed */
};

typedef void (*tide_proc_event_fn)(tide_proc *p, int events, void *ud);

typedef struct tide_proc_opts {
  const char *const *argv; /* program and arguments, NULL-terminated; argv[0] without '/' is
                              looked up in the child environment's PATH. Borrowed for the call */
  const char *cwd;         /* working directory, or NULL to inherit; borrowed for the call */
  tide_proc_env env_mode;
  const char *const *env; /* "NAME=value" entries, NULL-terminated, or NULL; borrowed */
  tide_proc_stdin stdin_mode;
  const char *stdin_data; /* DATA: copied */
  size_t stdin_len;
  const char *stdin_path; /* FILE: borrowed for the call */
  size_t max_output;      /* capture cap per stream in bytes; 0 captures nothing */
  const char *log_path;   /* both streams are appended here in full (created 0600 at the
                             first byte, so a silent process leaves no file); NULL for none;
                             copied */
  int split_lines;        /* queue output lines for tide_proc_next_line() */
  /* 0, or stdout is read at most once per this many ms while the process runs: a program that
     writes a line at a time then costs a wake-up per batch, not per line. Data on stderr first
     takes everything stdout holds, so nothing on stderr overtakes stdout written before it */
  uint64_t stdout_batch_ms;
  uint64_t timeout_ms; /* 0: no timeout */
  uint64_t grace_ms;   /* TERM -> KILL delay, and how long to wait for EOF after exit */
  /* NULL, or every byte of output passes through this mask before it reaches the capture, the
     lines and the log; the process takes a reference */
  tide_mask *mask;
  tide_proc_event_fn on_event; /* may be NULL; runs from libuv callbacks: must not run Lua */
  void *ud;
  /* NULL: posix_spawn; else the program starts inside this sandbox (include/tide/sandbox.h),
     and what it inherits of tide's environment (INHERIT, ADD) is only PATH, HOME, LANG (set to
     C.UTF-8 when neither tide nor env has one), TZ and CI */
  const tide_sandbox_policy *sandbox; /* borrowed for the call */
  /* With sandbox: argv, env_mode and env are ignored here; the sandbox is made now and waits
     for its program, given by tide_proc_exec(). The process is running (it can be waited for,
     terminated, released) from this call on. */
  int exec_later;
} tide_proc_opts;

/* What a process produced. Fields other than pid and start are valid once done is set. */
typedef struct tide_proc_result {
  pid_t pid;
  int done;   /* complete: exited, pipes at EOF (or given up), every handle closed */
  int exited; /* reaped */
  int code;   /* exit status; 128 + signal when killed; 124 when timed out */
  int signal; /* the signal that ended it, or 0 */
  int timed_out;
  int cancelled;            /* tide_proc_terminate() ended it */
  int pipes_held;           /* EOF never came: a descendant held the pipes past the grace period */
  uint64_t start_ns;        /* uv_hrtime at spawn */
  uint64_t wall_ns;         /* spawn to exit */
  double cpu_user, cpu_sys; /* seconds */
  uint64_t max_rss;         /* bytes */
  uint64_t bytes[3];        /* total bytes read, by stream (index 1 and 2) */
  int truncated[3];         /* the capture of that stream hit max_output */
  int log_opened;           /* the log file was created (the process wrote something) */
  int log_error; /* errno of the failed log open or write, or 0 (the log was abandoned) */
  int sandboxed; /* started inside the sandbox */
  /* TIDE_SANDBOX_* protections that could not be applied */
  unsigned sandbox_missing;
} tide_proc_result;

/* Fills o with the defaults: inherit env, /dev/null stdin, 1 MiB cap, no timeout, 5 s grace. */
void tide_proc_opts_init(tide_proc_opts *o);

/*
** Starts a process. On success returns 0 and *out, owned by the caller until
** tide_proc_release(). On failure returns a negative errno and err names the cause:
** "spawn: cannot execute 'make': no such file or directory" (ENOENT, EACCES, ENOEXEC),
** "spawn: cannot change to directory 'x': ..." or "spawn: cannot open stdin file 'x': ...".
** Nothing is left behind on failure.
*/
int tide_proc_spawn(uv_loop_t *loop, const tide_proc_opts *o, tide_proc **out, tide_err *err);

/*
** The program of a process spawned with exec_later (argv NULL-terminated, looked up in the PATH
** of the environment built from env_mode and env as tide_proc_spawn() would; borrowed). Blocks
** until the sandbox has exec'd it. On failure returns the error tide_proc_spawn() would have
** returned for it, and the process ends (exit 127) and completes as any other. Only once.
*/
int tide_proc_exec(tide_proc *p, const char *const *argv, tide_proc_env env_mode,
                   const char *const *env, tide_err *err);

/*
** Reads what stdout, then stderr, hold now, without waiting for the loop; returns whether lines
** are queued (with split_lines). Two pipes keep no order between them: what a program wrote to
** stderr before a line on stdout may still be unread when that line is taken, and this takes it.
*/
int tide_proc_read_pending(tide_proc *p);

/* The result so far; borrowed, valid until tide_proc_release(). */
const tide_proc_result *tide_proc_result_get(const tide_proc *p);

/*
** The captured output of stream (at most max_output bytes; see result->truncated); borrowed,
** valid until tide_proc_release().
*/
const char *tide_proc_output(const tide_proc *p, tide_proc_stream stream, size_t *len);

/*
** Takes the next queued line (without its "\n"). Returns 1 with *stream, *line and *len set, or 0
** when the queue is empty. The line is borrowed until the next call on p. Lines longer than
** 256 KiB are delivered in pieces; the partial last line of a stream is queued at its EOF.
** Reading pauses while more than 1 MiB of lines wait, so a slow consumer slows the child down
** instead of growing memory.
*/
int tide_proc_next_line(tide_proc *p, tide_proc_stream *stream, const char **line, size_t *len);

/*
** Stops splitting lines and drops the queued ones, so reading never waits for a consumer again;
** for a listener that will take no more lines (its task was cancelled). Idempotent.
*/
void tide_proc_stop_lines(tide_proc *p);

/* Sends sig to the process group. Returns 0, or UV_ESRCH once the child has been reaped. */
int tide_proc_kill(tide_proc *p, int sig);

/*
** Terminates the group: SIGTERM now, SIGKILL after the grace period; marks the result cancelled
** (timed_out when timed_out is non-zero). Never blocks; no-op once done or already terminating.
*/
void tide_proc_terminate(tide_proc *p, int timed_out);

/*
** tide_proc_terminate() for every process spawned and not yet freed, released ones included:
** what a signal to tide ends, so that no child keeps tide waiting or outlives it.
*/
void tide_proc_terminate_all(void);

/*
** SIGKILL now to the group of every live process whose child has not exited: for a tide that
** exits at once (a second signal, os.exit) and cannot wait out a grace period.
*/
void tide_proc_kill_all(void);

/*
** Queues len bytes (copied) for the child's stdin; only with TIDE_PROC_STDIN_PIPE. Returns 0, or
** UV_EPIPE when stdin is closed (or the child is gone), UV_EINVAL when stdin is not a pipe.
*/
int tide_proc_write(tide_proc *p, const char *data, size_t len);

/* Closes the child's stdin once queued writes are done. Idempotent. */
void tide_proc_close_stdin(tide_proc *p);

/*
** Replaces the event callback (NULL to stop events). Useful before tide_proc_release() when the
** listener goes away.
*/
void tide_proc_set_callback(tide_proc *p, tide_proc_event_fn fn, void *ud);

/*
** Drops the caller's ownership. A process that is still running keeps running and is reaped,
** then freed; it is not killed (call tide_proc_terminate() first for that). Queued lines are
** discarded and reading resumes. p must not be used afterwards. Safe inside on_event.
*/
void tide_proc_release(tide_proc *p);

/* "TERM" for SIGTERM; NULL for an unknown number. */
const char *tide_proc_signame(int sig);

/* SIGTERM for "TERM" or "SIGTERM"; 0 when unknown. */
int tide_proc_signum(const char *name);

#endif
