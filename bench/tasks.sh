#!/bin/sh
# (b) 10,000 tasks each tide.sleep(1): wall < 2 s and peak RSS <= 100 MiB; and 200 concurrent
# `sleep 1` processes: wall < 2 s. Wall times are measured inside tide, from the first spawn to
# the last result; peak RSS is the process's VmHWM at the end.
set -eu
. "$(dirname "$0")/lib.sh"
set -- $("$TIDE" bench/tasks.lua sleep 10000 1 2>"$BENCH_DIR/stderr")
wall=$2 rss=$4
echo "tasks: 10000 tasks x tide.sleep(1) wall $wall s (target < 2: $(verdict "$wall" "<=" 2))," \
  "peak RSS $rss MiB (target <= 100: $(verdict "$rss" "<=" 100))"
set -- $("$TIDE" bench/tasks.lua procs 200 1 2>"$BENCH_DIR/stderr")
wall=$2 rss=$4
echo "tasks: 200 concurrent proc.run sleep 1 wall $wall s (target < 2: $(verdict "$wall" "<=" 2))," \
  "peak RSS $rss MiB"
