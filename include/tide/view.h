/*
** The live view of a run on the terminal: what is running now, what has finished, and a summary.
**
** TTY mode keeps a block of the open spans (tasks and processes, indented by depth, with elapsed
** time and a spinner) at the bottom of the terminal, redrawn every 100 ms, and prints a permanent
** line above it for each span that ends. PLAIN mode (a pipe, --plain) prints one line per finished
** task or process. Both end with a one-line summary. Everything goes to one FILE, normally stderr.
**
** NOTE: in TTY mode the block is erased by moving the cursor up over it. Output that reaches the
** same terminal between two redraws without going through tide_view_write() can be overwritten
** in part; route such output through tide_view_write() (the runtime does so for Lua's print).
** When a root task (the main task) ends, the block is taken down for good, so that whatever is
** written after the script (an error's traceback) is not erased.
**
** The view does not register itself with the trace, because a trace cannot drop an observer: the
** owner forwards trace events to tide_view_observe() for as long as the view lives.
** Single-threaded: loop thread only.
*/
#ifndef TIDE_VIEW_H
#define TIDE_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "tide/err.h"
#include "tide/trace.h"

typedef struct tide_view tide_view;

typedef enum tide_view_mode {
  TIDE_VIEW_NONE = 0,
  TIDE_VIEW_PLAIN,
  TIDE_VIEW_TTY,
} tide_view_mode;

/*
** Picks a mode for a view on fd. The environment variable TIDE_VIEW ("none", "plain", "tty")
** wins; otherwise PLAIN when plain is set, fd is not a terminal, or TERM is unset or "dumb";
** otherwise TTY.
*/
tide_view_mode tide_view_pick(int fd, int plain);

/*
** Creates a view of trace tr (borrowed; it must outlive the view) that writes to out (borrowed).
** TTY mode starts an unref'd 100 ms timer on loop. mode must not be TIDE_VIEW_NONE. Free with
** tide_view_free().
*/
int tide_view_new(tide_view **view, uv_loop_t *loop, const tide_trace *tr, tide_view_mode mode,
                  FILE *out, tide_err *err);

/* The view's mode: TIDE_VIEW_PLAIN or TIDE_VIEW_TTY. */
tide_view_mode tide_view_get_mode(const tide_view *view);

/* A tide_trace_observer: ud is the view. Ignored once the view has finished. */
void tide_view_observe(void *ud, const tide_span *span);

/* Writes len bytes of output above the block (erasing and redrawing it in TTY mode). */
void tide_view_write(tide_view *view, const char *buf, size_t len);

/*
** Erases the block and prints the summary line of run run_id: its status word, exit code, the
** counts of finished tasks and processes by status, and the wall time since the view began.
** Stops the timer; later observations are ignored.
*/
void tide_view_finish(tide_view *view, int64_t run_id, const char *status, int exit_code);

/*
** Finishes the view without a summary if tide_view_finish() was not called, closes the timer and
** frees the view in its close callback (so run the loop afterwards). NULL is allowed.
*/
void tide_view_free(tide_view *view);

#endif
