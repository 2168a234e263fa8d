/*
** Child processes: posix_spawn in a new session, exit through a pidfd, output through pipes read
** by the loop. Each tide_proc is one malloc'd record that owns a pidfd poll, a timer, two output
** pipes and maybe a stdin pipe; it counts its open handles and frees itself in the last close
** callback once its owner has released it.
**
** It does not know about Lua, tasks, spans or the store: the caller passes a log path and gets
** events through one callback. Nothing here blocks the loop except the log writes, which go to a
** local file through the page cache.
*/
#include "tide/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT (1024 * 1024)
#define DEFAULT_GRACE_MS 5000
#define READ_BUF_SIZE (256 * 1024) /* one read; shared by every process on the thread */
#define LINE_PIECE (256 * 1024)    /* longer lines are delivered in pieces of this size */
#define LINES_PAUSE (1024 * 1024)  /* stop reading while this much waits in the line queue */
#define KILL_LINGER_MS 100         /* after SIGKILL to the group: EOF is due at once */
/* A smaller stdout read starts a batch interval; a bigger one means output flows, and stdout is
** read on at once. */
#define BATCH_TRICKLE (16 * 1024)
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

extern char **environ;

typedef struct out_stream {
  uv_pipe_t pipe;
  int open;  /* pipe initialised and not yet closed */
  int eof;   /* EOF, a read error, or given up: no more data will come */
  char *cap; /* captured bytes, at most max_output */
  size_t cap_len, cap_size;
  char *partial; /* the unfinished last line, when splitting; < LINE_PIECE bytes */
  size_t partial_len, partial_size;
  tide_mask_stream *mask; /* made at the first byte when the process has a mask */
} out_stream;

typedef struct in_write {
  uv_write_t req;
  char data[];
} in_write;

struct tide_proc {
  uv_loop_t *loop;
  tide_proc_result r;
  tide_proc_event_fn on_event;
  void *ud;
  int pidfd;
  uv_poll_t poll; /* readable when the child has exited */
  int poll_open;
  uv_timer_t timer; /* timeout, then TERM->KILL grace, then the EOF linger after exit */
  int timer_open;
  out_stream out[3]; /* [TIDE_PROC_STDOUT], [TIDE_PROC_STDERR]; [0] unused */
  uv_pipe_t in;
  int in_open;    /* stdin pipe initialised and not yet closed */
  int in_closing; /* close once in_pending writes are done */
  int in_pending;
  tide_proc_stdin stdin_mode;
  int log_fd;     /* -1 until the first byte, when none, or after a write error */
  char *log_path; /* opened at the first byte, so silent processes leave no file */
  size_t max_output;
  int split_lines;
  uint64_t grace_ms;
  uint64_t batch_ms; /* stdout_batch_ms; 0 once the process has exited */
  uv_timer_t batch;  /* restarts stdout reading at the end of a batch interval */
  int batch_open;
  int batch_waiting; /* stdout reading stopped until the batch timer fires */
  char *q;           /* line queue: entries of [stream u8][len u32][bytes] */
  size_t q_len, q_off, q_size;
  int paused;    /* reading stopped because the queue is full */
  int term;      /* 0; 1 SIGTERM sent; 2 SIGKILL sent */
  int finishing; /* every handle is being closed; done follows the last close */
  int nhandles;  /* handles initialised and not yet through their close callback */
  int released;
  int dispatching; /* inside on_event: release must not free */
  tide_mask *mask; /* a reference, or NULL */
  int sandboxed;   /* sb holds the sandbox's status pipe and cgroups */
  tide_sandbox_child sb;
  char *exec_cwd; /* exec_later: the working directory, where a relative PATH entry starts */
  tide_proc *live_prev, *live_next; /* every process spawned and not yet freed (live) */
};

/* The processes of this program that are not freed yet, for tide_proc_terminate_all. */
static tide_proc *live;

static _Thread_local char *read_buf;
/* drain_stdout's: it runs while read_buf holds the stderr bytes it reads ahead of */
static _Thread_local char *drain_buf;
#define DRAIN_BUF_SIZE (64 * 1024)

static void maybe_finish(tide_proc *p);
static void finish(tide_proc *p);

/* ---------------------------------------------------------------------------------------------
** Signals
*/

static const struct {
  int num;
  const char *name;
} signals[] = {
    {SIGHUP, "HUP"},       {SIGINT, "INT"},   {SIGQUIT, "QUIT"},   {SIGILL, "ILL"},
    {SIGTRAP, "TRAP"},     {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},     {SIGFPE, "FPE"},
    {SIGKILL, "KILL"},     {SIGUSR1, "USR1"}, {SIGSEGV, "SEGV"},   {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"},     {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},   {SIGCHLD, "CHLD"},
    {SIGCONT, "CONT"},     {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"},   {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"},     {SIGURG, "URG"},   {SIGXCPU, "XCPU"},   {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGIO, "IO"},
    {SIGPWR, "PWR"},       {SIGSYS, "SYS"},
};

const char *tide_proc_signame(int sig)
{
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (signals[i].num == sig)
      return signals[i].name;
  return NULL;
}

int tide_proc_signum(const char *name)
{
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (strcmp(signals[i].name, name) == 0)
      return signals[i].num;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Lifetime
*/

static void proc_free(tide_proc *p)
{
  if (p->live_prev)
    p->live_prev->live_next = p->live_next;
  else if (live == p)
    live = p->live_next;
  if (p->live_next)
    p->live_next->live_prev = p->live_prev;
  for (int i = 1; i <= 2; i++) {
    free(p->out[i].cap);
    free(p->out[i].partial);
  }
  free(p->q);
  free(p->log_path);
  free(p->exec_cwd);
  for (int i = 1; i <= 2; i++)
    tide_mask_stream_free(p->out[i].mask);
  tide_mask_unref(p->mask);
  if (p->sandboxed)
    tide_sandbox_child_release(&p->sb);
  free(p);
}

static void emit(tide_proc *p, int events)
{
  if (!p->on_event)
    return;
  p->dispatching = 1;
  p->on_event(p, events, p->ud);
  p->dispatching = 0;
}

static void handle_closed(uv_handle_t *h)
{
  tide_proc *p = h->data;
  if (h == (uv_handle_t *)&p->poll && p->pidfd >= 0) {
    close(p->pidfd);
    p->pidfd = -1;
  }
  if (--p->nhandles > 0 || !p->finishing)
    return;
  p->r.done = 1;
  emit(p, TIDE_PROC_EV_DONE);
  if (p->released)
    proc_free(p);
}

static void close_handle(tide_proc *p, uv_handle_t *h, int *open)
{
  if (!*open)
    return;
  *open = 0;
  uv_close(h, handle_closed);
}

/* ---------------------------------------------------------------------------------------------
** Output: capture, log, lines
*/

static int grow(char **buf, size_t *size, size_t need)
{
  if (need <= *size)
    return 0;
  size_t n = *size ? *size : 4096;
  while (n < need)
    n *= 2;
  char *b = realloc(*buf, n);
  if (!b)
    return -1;
  *buf = b;
  *size = n;
  return 0;
}

static void queue_line(tide_proc *p, int si, const char *d, size_t n)
{
  uint32_t len = (uint32_t)n;
  size_t need = 1 + sizeof len + n;
  if (p->q_off > 0 && p->q_len + need > p->q_size) {
    /* Compact before growing: the taken entries at the front are dead. */
    memmove(p->q, p->q + p->q_off, p->q_len - p->q_off);
    p->q_len -= p->q_off;
    p->q_off = 0;
  }
  if (grow(&p->q, &p->q_size, p->q_len + need) != 0)
    return; /* out of memory: the line is lost, the capture and the log still have it */
  char *e = p->q + p->q_len;
  e[0] = (char)si;
  memcpy(e + 1, &len, sizeof len);
  memcpy(e + 1 + sizeof len, d, n);
  p->q_len += need;
}

/* Queues the stream's partial line followed by d[0..n) as one line. */
static void queue_joined(tide_proc *p, int si, const char *d, size_t n)
{
  out_stream *s = &p->out[si];
  if (s->partial_len == 0) {
    queue_line(p, si, d, n);
    return;
  }
  if (grow(&s->partial, &s->partial_size, s->partial_len + n) == 0) {
    memcpy(s->partial + s->partial_len, d, n);
    s->partial_len += n;
  }
  queue_line(p, si, s->partial, s->partial_len);
  s->partial_len = 0;
}

static void split_lines(tide_proc *p, int si, const char *d, size_t n)
{
  out_stream *s = &p->out[si];
  while (n > 0) {
    const char *nl = memchr(d, '\n', n);
    size_t seg = nl ? (size_t)(nl - d) : n;
    size_t room = LINE_PIECE - s->partial_len; /* > 0: partial stays below LINE_PIECE */
    if (seg > room || (!nl && seg == room)) {
      queue_joined(p, si, d, room);
      d += room;
      n -= room;
    } else if (nl) {
      queue_joined(p, si, d, seg);
      d += seg + 1;
      n -= seg + 1;
    } else {
      if (grow(&s->partial, &s->partial_size, s->partial_len + seg) == 0) {
        memcpy(s->partial + s->partial_len, d, seg);
        s->partial_len += seg;
      }
      n = 0;
    }
  }
}

static void log_write(tide_proc *p, const char *d, size_t n)
{
  if (p->log_fd < 0) {
    p->log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (p->log_fd < 0) {
      p->r.log_error = errno;
      free(p->log_path);
      p->log_path = NULL;
      return;
    }
    p->r.log_opened = 1;
  }
  while (n > 0 && p->log_fd >= 0) {
    ssize_t w = write(p->log_fd, d, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      /* A full disk must not stop the process: keep capturing, report the broken log. */
      p->r.log_error = errno;
      close(p->log_fd);
      p->log_fd = -1;
      free(p->log_path);
      p->log_path = NULL;
      return;
    }
    d += w;
    n -= (size_t)w;
  }
}

typedef struct sink {
  tide_proc *p;
  int si;
} sink;

/* Output after masking: the capture (its cap applies to masked bytes), the log, the lines. */
static void deliver(void *ud, const char *d, size_t n)
{
  tide_proc *p = ((sink *)ud)->p;
  int si = ((sink *)ud)->si;
  out_stream *s = &p->out[si];
  if (s->cap_len < p->max_output) {
    size_t take = p->max_output - s->cap_len;
    if (take > n)
      take = n;
    if (grow(&s->cap, &s->cap_size, s->cap_len + take) == 0) {
      memcpy(s->cap + s->cap_len, d, take);
      s->cap_len += take;
    }
    if (take < n)
      p->r.truncated[si] = 1;
  } else if (n > 0) {
    p->r.truncated[si] = 1;
  }
  if (p->log_path)
    log_write(p, d, n);
  if (p->split_lines)
    split_lines(p, si, d, n);
}

static void consume(tide_proc *p, int si, const char *d, size_t n)
{
  out_stream *s = &p->out[si];
  sink k = {p, si};
  p->r.bytes[si] += n;
  if (!p->mask) {
    deliver(&k, d, n);
    return;
  }
  if (!s->mask)
    s->mask = tide_mask_stream_new(p->mask);
  /* Without a stream (out of memory) the bytes are dropped: never delivered unmasked. */
  if (s->mask)
    tide_mask_feed(s->mask, d, n, deliver, &k);
}

static size_t queued(const tide_proc *p)
{
  return p->q_len - p->q_off;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)h;
  (void)suggested;
  /* Every read is consumed before the next alloc, so one buffer serves all streams. */
  if (!read_buf)
    read_buf = malloc(READ_BUF_SIZE);
  buf->base = read_buf;
  buf->len = read_buf ? READ_BUF_SIZE : 0;
}

static void pause_reading(tide_proc *p)
{
  p->paused = 1;
  for (int i = 1; i <= 2; i++)
    if (p->out[i].open)
      uv_read_stop((uv_stream_t *)&p->out[i].pipe);
}

static void resume_reading(tide_proc *p)
{
  if (!p->paused)
    return;
  p->paused = 0;
  for (int i = 1; i <= 2; i++)
    if (p->out[i].open)
      uv_read_start((uv_stream_t *)&p->out[i].pipe, alloc_cb, read_cb);
}

static void stream_eof(tide_proc *p, int si)
{
  out_stream *s = &p->out[si];
  s->eof = 1;
  if (s->mask) {
    sink k = {p, si};
    tide_mask_flush(s->mask, deliver, &k);
  }
  if (p->split_lines && s->partial_len > 0) {
    queue_line(p, si, s->partial, s->partial_len);
    s->partial_len = 0;
  }
  close_handle(p, (uv_handle_t *)&s->pipe, &s->open);
}

static void batch_cb(uv_timer_t *timer)
{
  tide_proc *p = timer->data;
  p->batch_waiting = 0;
  if (p->out[TIDE_PROC_STDOUT].open && !p->paused)
    uv_read_start((uv_stream_t *)&p->out[TIDE_PROC_STDOUT].pipe, alloc_cb, read_cb);
}

/* Ends the batch interval now: stdout is read again as data comes. */
static void batch_end(tide_proc *p)
{
  if (!p->batch_waiting)
    return;
  uv_timer_stop(&p->batch);
  batch_cb(&p->batch);
}

/*
** Consumes what stream si's pipe holds now, without blocking, through buf. Returns 1 at EOF, 0
** when the pipe is empty (EAGAIN), -1 on a read error or without a pipe or buffer.
*/
static int read_now(tide_proc *p, int si, char *buf, size_t cap)
{
  out_stream *s = &p->out[si];
  int fd = -1;
  if (!s->open || !buf || uv_fileno((uv_handle_t *)&s->pipe, &fd) != 0)
    return -1;
  for (;;) {
    ssize_t n = read(fd, buf, cap);
    if (n > 0)
      consume(p, si, buf, (size_t)n);
    else if (n == 0)
      return 1;
    else if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    else if (errno != EINTR)
      return -1;
  }
}

/* The buffer of reads outside libuv's read callback (NULL when out of memory: read_now then
** reads nothing). */
static char *drain_buffer(void)
{
  if (!drain_buf)
    drain_buf = malloc(DRAIN_BUF_SIZE);
  return drain_buf;
}

/* Takes everything stdout holds, ahead of the stderr bytes in read_buf. */
static void drain_stdout(tide_proc *p)
{
  if (read_now(p, TIDE_PROC_STDOUT, drain_buffer(), DRAIN_BUF_SIZE) == 1)
    stream_eof(p, TIDE_PROC_STDOUT); /* an error shows at libuv's next read */
}

int tide_proc_read_pending(tide_proc *p)
{
  /* An end of a pipe is left for libuv's next read of it, which sees it again. */
  read_now(p, TIDE_PROC_STDOUT, drain_buffer(), DRAIN_BUF_SIZE);
  read_now(p, TIDE_PROC_STDERR, drain_buffer(), DRAIN_BUF_SIZE);
  return queued(p) > 0;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  tide_proc *p = stream->data;
  int si =
      stream == (uv_stream_t *)&p->out[TIDE_PROC_STDOUT].pipe ? TIDE_PROC_STDOUT : TIDE_PROC_STDERR;
  size_t before = queued(p);
  if (p->batch_ms && si == TIDE_PROC_STDERR && nread > 0)
    drain_stdout(p);
  if (nread > 0)
    consume(p, si, buf->base, (size_t)nread);
  if (p->batch_ms && si == TIDE_PROC_STDOUT && nread > 0 && nread < BATCH_TRICKLE &&
      p->out[si].open) {
    uv_read_stop(stream);
    uv_timer_start(&p->batch, batch_cb, p->batch_ms, 0);
    p->batch_waiting = 1;
  } else if (nread < 0)
    stream_eof(p, si); /* UV_EOF, or a read error: either way nothing more comes */
  if (p->split_lines && queued(p) > LINES_PAUSE && !p->paused)
    pause_reading(p);
  if (queued(p) != before)
    emit(p, TIDE_PROC_EV_LINES);
  if (nread < 0)
    maybe_finish(p);
}

/* Reads what the pipe still holds without blocking, then closes it. */
static void give_up_stream(tide_proc *p, int si)
{
  if (!p->out[si].open)
    return;
  uv_buf_t buf;
  alloc_cb(NULL, 0, &buf);
  if (read_now(p, si, buf.len ? buf.base : NULL, buf.len) == 0)
    p->r.pipes_held = 1;
  stream_eof(p, si);
}

/* ---------------------------------------------------------------------------------------------
** Exit, timeout, termination
*/

static void finish(tide_proc *p)
{
  if (p->finishing)
    return;
  p->finishing = 1;
  if (p->log_fd >= 0) {
    close(p->log_fd);
    p->log_fd = -1;
  }
  close_handle(p, (uv_handle_t *)&p->timer, &p->timer_open);
  close_handle(p, (uv_handle_t *)&p->batch, &p->batch_open);
  close_handle(p, (uv_handle_t *)&p->poll, &p->poll_open);
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  for (int i = 1; i <= 2; i++)
    close_handle(p, (uv_handle_t *)&p->out[i].pipe, &p->out[i].open);
}

static void maybe_finish(tide_proc *p)
{
  if (p->r.exited && p->out[1].eof && p->out[2].eof)
    finish(p);
}

static void timer_cb(uv_timer_t *timer);

static void timer_arm(tide_proc *p, uint64_t ms)
{
  if (!p->timer_open)
    return;
  /* The loop's clock is cached per iteration; Lua may have run long since. */
  uv_update_time(p->loop);
  uv_timer_start(&p->timer, timer_cb, ms, 0);
}

static void group_kill(tide_proc *p, int sig)
{
  /* The group outlives its leader while a member lives; its id is not reused meanwhile. */
  if (kill(-p->r.pid, sig) != 0 && !p->r.exited)
    kill(p->r.pid, sig);
}

static void timer_cb(uv_timer_t *timer)
{
  tide_proc *p = timer->data;
  if (!p->r.exited) {
    if (p->term == 0) {
      p->r.timed_out = 1;
      p->term = 1;
      group_kill(p, SIGTERM);
      timer_arm(p, p->grace_ms);
    } else if (p->term == 1) {
      p->term = 2;
      group_kill(p, SIGKILL);
    }
    return;
  }
  /* Exited, and the pipes are still open after the linger. */
  if (p->paused && !p->term) {
    timer_arm(p, p->grace_ms); /* not held: we stopped reading; wait for the consumer */
    return;
  }
  if (p->term) {
    p->term = 2;
    group_kill(p, SIGKILL);
  }
  size_t before = queued(p);
  for (int i = 1; i <= 2; i++)
    give_up_stream(p, i);
  if (queued(p) != before)
    emit(p, TIDE_PROC_EV_LINES);
  finish(p);
}

static void reap(tide_proc *p)
{
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  pid_t rc;
  do
    rc = wait4(p->r.pid, &status, WNOHANG, &ru);
  while (rc < 0 && errno == EINTR);
  if (rc == 0)
    return; /* not yet: a spurious wakeup */
  if (rc > 0 && p->sandboxed)
    tide_sandbox_child_reaped(&p->sb, &status); /* the program's status, not its init's */
  p->r.exited = 1;
  p->r.wall_ns = uv_hrtime() - p->r.start_ns;
  if (rc < 0) {
    /* ECHILD: something else reaped it (a waitpid(-1) elsewhere in the process). */
    p->r.code = -1;
  } else if (WIFEXITED(status)) {
    p->r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    p->r.signal = WTERMSIG(status);
    p->r.code = 128 + p->r.signal;
  }
  if (p->r.timed_out)
    p->r.code = 124;
  p->r.cpu_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  p->r.cpu_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  p->r.max_rss = (uint64_t)ru.ru_maxrss * 1024;
  close_handle(p, (uv_handle_t *)&p->poll, &p->poll_open);
  /* Batches save wake-ups while it runs; after the exit, EOF is due and waited for at once. */
  p->batch_ms = 0;
  batch_end(p);
  if (p->out[1].eof && p->out[2].eof) {
    finish(p);
    return;
  }
  /* Wait for EOF: right after a SIGKILL to the group it is due at once; else a descendant may
  ** still be writing, and gets the grace period. */
  timer_arm(p, p->term == 2 ? KILL_LINGER_MS : p->grace_ms);
}

static void poll_cb(uv_poll_t *poll, int status, int events)
{
  (void)status;
  (void)events;
  reap(poll->data);
}

void tide_proc_terminate(tide_proc *p, int timed_out)
{
  if (p->finishing || p->term)
    return;
  /* A sandbox still waiting for its program exits as soon as it reads the end of that pipe. */
  if (p->sandboxed && p->sb.program_fd >= 0) {
    close(p->sb.program_fd);
    p->sb.program_fd = -1;
  }
  if (timed_out)
    p->r.timed_out = 1;
  else
    p->r.cancelled = 1;
  if (p->r.exited) {
    /* Lingering for EOF: whatever of the group holds the pipes goes now. */
    p->term = 2;
    group_kill(p, SIGKILL);
    timer_arm(p, KILL_LINGER_MS);
    return;
  }
  p->term = 1;
  group_kill(p, SIGTERM);
  timer_arm(p, p->grace_ms);
}

void tide_proc_terminate_all(void)
{
  for (tide_proc *p = live; p; p = p->live_next)
    tide_proc_terminate(p, 0);
}

void tide_proc_kill_all(void)
{
  /* Only groups whose leader has not been reaped: their id cannot have been reused. */
  for (tide_proc *p = live; p; p = p->live_next)
    if (!p->r.exited)
      group_kill(p, SIGKILL);
}

int tide_proc_kill(tide_proc *p, int sig)
{
  if (p->r.exited)
    return UV_ESRCH;
  if (kill(-p->r.pid, sig) != 0)
    return -errno;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** Stdin
*/

static void in_write_cb(uv_write_t *req, int status)
{
  (void)status; /* EPIPE when the child does not read it all: not an error of ours */
  tide_proc *p = req->data;
  free(req);
  p->in_pending--;
  if (p->in_closing && p->in_pending == 0)
    close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
}

static int in_queue(tide_proc *p, const char *data, size_t len)
{
  in_write *w = malloc(sizeof *w + len);
  if (!w)
    return UV_ENOMEM;
  memcpy(w->data, data, len);
  w->req.data = p;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&p->in, &buf, 1, in_write_cb);
  if (rc != 0) {
    free(w);
    return rc;
  }
  p->in_pending++;
  return 0;
}

int tide_proc_write(tide_proc *p, const char *data, size_t len)
{
  if (p->stdin_mode != TIDE_PROC_STDIN_PIPE)
    return UV_EINVAL;
  if (!p->in_open || p->in_closing)
    return UV_EPIPE;
  if (len == 0)
    return 0;
  return in_queue(p, data, len);
}

void tide_proc_close_stdin(tide_proc *p)
{
  if (!p->in_open || p->in_closing)
    return;
  p->in_closing = 1;
  if (p->in_pending == 0)
    close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
}

/* ---------------------------------------------------------------------------------------------
** Spawning
*/

static const char *env_get(char *const *envp, const char *name)
{
  size_t n = strlen(name);
  for (; *envp; envp++)
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
      return *envp + n + 1;
  return NULL;
}

static size_t key_len(const char *entry)
{
  const char *eq = strchr(entry, '=');
  return eq ? (size_t)(eq - entry) : strlen(entry);
}

/*
** Builds the child's environment for REPLACE and ADD, and for a sandboxed INHERIT (which inherits
** only sandbox_env_keep; otherwise INHERIT passes environ itself). The array is malloc'd, the
** strings borrowed. Returns NULL when out of memory.
*/
/* What a sandboxed program inherits from tide's environment; the rest (LD_PRELOAD, tokens,
** agent sockets) stays out. */
static const char *const sandbox_env_keep[] = {"PATH", "HOME", "LANG", "TZ", "CI", NULL};
static char sandbox_default_lang[] = "LANG=C.UTF-8";

static int env_inherited(int sandboxed, const char *entry)
{
  if (!sandboxed)
    return 1;
  size_t kl = key_len(entry);
  for (int i = 0; sandbox_env_keep[i]; i++)
    if (strlen(sandbox_env_keep[i]) == kl && strncmp(sandbox_env_keep[i], entry, kl) == 0)
      return 1;
  return 0;
}

static char **env_build(tide_proc_env mode, const char *const *env, int sandboxed)
{
  size_t nadd = 0, ninh = 0;
  for (const char *const *e = env; mode != TIDE_PROC_ENV_INHERIT && e && *e; e++)
    nadd++;
  if (mode != TIDE_PROC_ENV_REPLACE)
    for (char **e = environ; *e; e++)
      ninh++;
  char **envp = malloc((ninh + nadd + 2) * sizeof *envp);
  if (!envp)
    return NULL;
  size_t k = 0;
  int lang = 0;
  for (size_t i = 0; i < ninh; i++) {
    size_t kl = key_len(environ[i]);
    int overridden = !env_inherited(sandboxed, environ[i]);
    for (size_t j = 0; j < nadd && !overridden; j++)
      overridden = key_len(env[j]) == kl && strncmp(env[j], environ[i], kl) == 0;
    if (!overridden) {
      lang |= kl == 4 && strncmp(environ[i], "LANG", 4) == 0;
      envp[k++] = environ[i];
    }
  }
  for (size_t j = 0; j < nadd; j++)
    lang |= key_len(env[j]) == 4 && strncmp(env[j], "LANG", 4) == 0;
  if (sandboxed && mode != TIDE_PROC_ENV_REPLACE && !lang)
    envp[k++] = sandbox_default_lang;
  for (size_t j = 0; j < nadd; j++)
    if (strchr(env[j], '=')) /* a bare NAME only removes */
      envp[k++] = (char *)env[j];
  envp[k] = NULL;
  return envp;
}

/*
** Finds argv0 in PATH (the child environment's) like execvp. Returns 0 with the path in buf, or
** a negative errno: ENOENT, or EACCES when a match exists but cannot be executed.
*/
static int path_lookup(const char *argv0, char *const *envp, const char *cwd, char *buf,
                       size_t size)
{
  const char *path = env_get(envp, "PATH");
  if (!path)
    path = DEFAULT_PATH;
  int rc = UV_ENOENT;
  size_t alen = strlen(argv0);
  while (1) {
    const char *end = strchr(path, ':');
    size_t dlen = end ? (size_t)(end - path) : strlen(path);
    int n;
    if (dlen == 0)
      n = snprintf(buf, size, "%s", argv0); /* an empty entry is the current directory */
    else if (path[0] != '/' && cwd)
      n = snprintf(buf, size, "%s/%.*s/%s", cwd, (int)dlen, path, argv0);
    else
      n = snprintf(buf, size, "%.*s/%s", (int)dlen, path, argv0);
    if (n > 0 && (size_t)n < size && alen > 0) {
      struct stat st;
      if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(buf, X_OK) == 0)
          return 0;
        rc = UV_EACCES;
      }
    }
    if (!end)
      break;
    path = end + 1;
  }
  return rc;
}

void tide_proc_opts_init(tide_proc_opts *o)
{
  memset(o, 0, sizeof *o);
  o->max_output = DEFAULT_MAX_OUTPUT;
  o->grace_ms = DEFAULT_GRACE_MS;
}

static void close_fd(int *fd)
{
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

int tide_proc_spawn(uv_loop_t *loop, const tide_proc_opts *o, tide_proc **out, tide_err *err)
{
  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
  int in_fd = -1, pidfd = -1, rc;
  char **envp = NULL;
  char pathbuf[4096];
  const char *prog;
  tide_proc *p = NULL;
  pid_t pid = -1;
  *out = NULL;

  if (o->exec_later && !o->sandbox)
    return tide_err_set(err, UV_EINVAL, "spawn: only a sandbox can take its program later");
  if (!o->exec_later && (!o->argv || !o->argv[0] || !o->argv[0][0]))
    return tide_err_set(err, UV_EINVAL, "spawn: empty command");
  const char *argv0 = o->exec_later ? "" : o->argv[0];
  tide_proc_stdin in_mode = o->stdin_mode;
  if (in_mode == TIDE_PROC_STDIN_DATA && o->stdin_len == 0)
    in_mode = TIDE_PROC_STDIN_NULL;

  if (o->cwd) {
    struct stat st;
    if (stat(o->cwd, &st) != 0)
      return tide_err_set(err, -errno, "spawn: cannot change to directory '%s': %s", o->cwd,
                          strerror(errno));
    if (!S_ISDIR(st.st_mode))
      return tide_err_set(err, UV_ENOTDIR, "spawn: cannot change to directory '%s': %s", o->cwd,
                          strerror(ENOTDIR));
  }
  if (!o->exec_later && (o->env_mode != TIDE_PROC_ENV_INHERIT || o->sandbox)) {
    envp = env_build(o->env_mode, o->env, o->sandbox != NULL);
    if (!envp)
      return tide_err_set(err, UV_ENOMEM, "spawn: out of memory");
  }
  char *const *child_env = envp ? envp : environ;
  prog = argv0;
  if (!o->exec_later && !strchr(argv0, '/')) {
    rc = path_lookup(argv0, child_env, o->cwd, pathbuf, sizeof pathbuf);
    if (rc != 0) {
      tide_err_set(err, rc, "spawn: cannot execute '%s': %s", argv0,
                   rc == UV_ENOENT ? "not found in PATH" : strerror(-rc));
      goto fail;
    }
    prog = pathbuf;
  }

  p = calloc(1, sizeof *p);
  if (!p) {
    rc = tide_err_set(err, UV_ENOMEM, "spawn: out of memory");
    goto fail;
  }
  p->log_fd = -1;
  p->pidfd = -1;
  if (o->exec_later && o->cwd && !(p->exec_cwd = strdup(o->cwd))) {
    rc = tide_err_set(err, UV_ENOMEM, "spawn: out of memory");
    goto fail;
  }
  if (in_mode == TIDE_PROC_STDIN_FILE) {
    in_fd = open(o->stdin_path, O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
      rc = tide_err_set(err, -errno, "spawn: cannot open stdin file '%s': %s", o->stdin_path,
                        strerror(errno));
      goto fail;
    }
  }
  if (o->log_path && !(p->log_path = strdup(o->log_path))) {
    rc = tide_err_set(err, UV_ENOMEM, "spawn: out of memory");
    goto fail;
  }
  if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
      ((in_mode == TIDE_PROC_STDIN_DATA || in_mode == TIDE_PROC_STDIN_PIPE) &&
       pipe2(inp, O_CLOEXEC) != 0)) {
    rc = tide_err_set(err, -errno, "spawn: cannot create a pipe: %s", strerror(errno));
    goto fail;
  }

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (in_mode == TIDE_PROC_STDIN_NULL)
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  else
    posix_spawn_file_actions_adddup2(&fa, in_fd >= 0 ? in_fd : inp[0], 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  if (o->cwd)
    posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
  /* Our descriptors are close-on-exec already; this also covers any a library leaked. */
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  /* A new session makes the child lead its own process group, which timeouts signal as one.
  ** Default dispositions: tide ignores SIGPIPE, and an ignored signal would stay ignored. */
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  uint64_t start = uv_hrtime();
  if (o->sandbox) {
    int null_fd = -1;
    if (in_mode == TIDE_PROC_STDIN_NULL)
      null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fd0 = in_mode == TIDE_PROC_STDIN_NULL ? null_fd : in_fd >= 0 ? in_fd : inp[0];
    tide_sandbox_exec ex = {prog,      (char *const *)o->argv, child_env, o->cwd,
                            {0, 0, 0}, o->exec_later};
    ex.fd[0] = fd0;
    ex.fd[1] = outp[1];
    ex.fd[2] = errp[1];
    rc = fd0 < 0 ? tide_err_set(err, -errno, "spawn: cannot open /dev/null: %s", strerror(errno))
                 : tide_sandbox_spawn(o->sandbox, &ex, &p->sb, err);
    close_fd(&null_fd);
    if (rc == 0) {
      p->sandboxed = 1;
      pid = p->sb.pid;
      pidfd = p->sb.pidfd;
      p->sb.pidfd = -1; /* p->pidfd owns it from here */
      p->r.sandboxed = 1;
      p->r.sandbox_missing = p->sb.missing;
    }
  } else {
    rc = posix_spawn(&pid, prog, &fa, &attr, (char *const *)o->argv, child_env);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close_fd(&outp[1]);
  close_fd(&errp[1]);
  close_fd(&inp[0]);
  close_fd(&in_fd);
  free(envp);
  envp = NULL;
  if (rc != 0 && o->sandbox) {
    pid = -1;
    goto fail; /* err is set */
  }
  if (rc != 0) {
    pid = -1;
    rc = tide_err_set(err, -rc, "spawn: cannot execute '%s': %s", argv0, strerror(rc));
    goto fail;
  }

  if (pidfd < 0)
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    rc = tide_err_set(err, -errno, "spawn: pidfd_open: %s", strerror(errno));
    goto fail;
  }

  /* From here on nothing fails: every handle below is initialised and owned by p. */
  p->loop = loop;
  p->r.pid = pid;
  p->r.code = -1;
  p->r.start_ns = start;
  p->on_event = o->on_event;
  p->ud = o->ud;
  p->max_output = o->max_output;
  p->split_lines = o->split_lines;
  p->mask = tide_mask_ref(o->mask);
  p->grace_ms = o->grace_ms;
  p->batch_ms = o->stdout_batch_ms;
  p->stdin_mode = in_mode;
  p->pidfd = pidfd;

  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  p->timer_open = 1;
  p->nhandles++;
  uv_timer_init(loop, &p->batch);
  p->batch.data = p;
  p->batch_open = 1;
  p->nhandles++;
  uv_poll_init(loop, &p->poll, pidfd);
  p->poll.data = p;
  p->poll_open = 1;
  p->nhandles++;
  uv_poll_start(&p->poll, UV_READABLE, poll_cb);
  int fds[3] = {0, outp[0], errp[0]};
  for (int i = 1; i <= 2; i++) {
    out_stream *s = &p->out[i];
    uv_pipe_init(loop, &s->pipe, 0);
    s->pipe.data = p;
    s->open = 1;
    p->nhandles++;
    uv_pipe_open(&s->pipe, fds[i]);
    uv_read_start((uv_stream_t *)&s->pipe, alloc_cb, read_cb);
  }
  if (inp[1] >= 0) {
    uv_pipe_init(loop, &p->in, 0);
    p->in.data = p;
    p->in_open = 1;
    p->nhandles++;
    uv_pipe_open(&p->in, inp[1]);
    if (in_mode == TIDE_PROC_STDIN_DATA) {
      if (in_queue(p, o->stdin_data, o->stdin_len) != 0)
        p->r.log_error = ENOMEM; /* unreachable in practice; stdin then just ends */
      tide_proc_close_stdin(p);
    }
  }
  if (o->timeout_ms > 0)
    timer_arm(p, o->timeout_ms);
  p->live_next = live;
  if (live)
    live->live_prev = p;
  live = p;
  *out = p;
  return 0;

fail:
  if (pid > 0) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  close_fd(&pidfd);
  close_fd(&outp[0]);
  close_fd(&outp[1]);
  close_fd(&errp[0]);
  close_fd(&errp[1]);
  close_fd(&inp[0]);
  close_fd(&inp[1]);
  close_fd(&in_fd);
  free(envp);
  if (p && p->sandboxed)
    tide_sandbox_child_release(&p->sb);
  if (p) {
    free(p->log_path);
    free(p->exec_cwd);
  }
  free(p);
  return rc;
}

int tide_proc_exec(tide_proc *p, const char *const *argv, tide_proc_env env_mode,
                   const char *const *env, tide_err *err)
{
  if (!p->sandboxed || p->sb.program_fd < 0)
    return tide_err_set(err, UV_EINVAL, "spawn: the process is not waiting for its program");
  if (!argv || !argv[0] || !argv[0][0])
    return tide_err_set(err, UV_EINVAL, "spawn: empty command");
  char **envp = env_build(env_mode, env, 1);
  if (!envp)
    return tide_err_set(err, UV_ENOMEM, "spawn: out of memory");
  char pathbuf[4096];
  const char *prog = argv[0];
  int rc = 0;
  if (!strchr(prog, '/')) {
    rc = path_lookup(prog, envp, p->exec_cwd, pathbuf, sizeof pathbuf);
    if (rc != 0)
      tide_err_set(err, rc, "spawn: cannot execute '%s': %s", prog,
                   rc == UV_ENOENT ? "not found in PATH" : strerror(-rc));
    prog = pathbuf;
  }
  if (rc == 0) {
    rc = tide_sandbox_run(&p->sb, prog, (char *const *)argv, envp, err);
  } else {
    /* The sandbox reads the end of its program pipe and exits 127, having run nothing. */
    close(p->sb.program_fd);
    p->sb.program_fd = -1;
  }
  free(envp);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
** Accessors
*/

const tide_proc_result *tide_proc_result_get(const tide_proc *p)
{
  return &p->r;
}

const char *tide_proc_output(const tide_proc *p, tide_proc_stream stream, size_t *len)
{
  const out_stream *s = &p->out[stream == TIDE_PROC_STDERR ? 2 : 1];
  *len = s->cap_len;
  return s->cap ? s->cap : "";
}

int tide_proc_next_line(tide_proc *p, tide_proc_stream *stream, const char **line, size_t *len)
{
  if (p->q_off >= p->q_len) {
    p->q_off = p->q_len = 0;
    resume_reading(p);
    return 0;
  }
  char *e = p->q + p->q_off;
  uint32_t n;
  memcpy(&n, e + 1, sizeof n);
  *stream = (tide_proc_stream)e[0];
  *line = e + 1 + sizeof n;
  *len = n;
  p->q_off += 1 + sizeof n + n;
  return 1;
}

void tide_proc_set_callback(tide_proc *p, tide_proc_event_fn fn, void *ud)
{
  p->on_event = fn;
  p->ud = ud;
}

void tide_proc_stop_lines(tide_proc *p)
{
  p->split_lines = 0;
  p->q_off = p->q_len = 0;
  resume_reading(p);
}

void tide_proc_release(tide_proc *p)
{
  p->released = 1;
  p->on_event = NULL;
  tide_proc_stop_lines(p);
  if (p->r.done && !p->dispatching)
    proc_free(p);
}
