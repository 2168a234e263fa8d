#!/bin/sh
# (g) Git: a repository of 10,000 commits (made with git fast-import) served by git daemon on
# 127.0.0.1. tide's clone of the git:// URL against `git clone` of it (target ratio <= 1.2); of
# the local path against `git clone --no-hardlinks` (<= 1.2); changed_paths between two commits
# 1,000 apart against `git diff --no-renames --name-only` (<= 1.5). Clones are whole processes,
# best of 7, run alternately; changed_paths is one call inside tide against one git process,
# best of 20 each.
set -eu
. "$(dirname "$0")/lib.sh"
work="$BENCH_DIR/git"
rm -rf "$work"
mkdir -p "$work"
repo="$work/repo.git"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

# 10,000 commits; each rewrites 3 of 600 files spread over 30 directories.
git init -q --bare -b main "$repo"
awk 'BEGIN {
  for (i = 1; i <= 10000; i++) {
    printf "commit refs/heads/main\ncommitter Bench <b@example.com> %d +0000\n", 1e9 + i
    printf "data 12\ncommit %05d\n", i
    for (j = 0; j < 3; j++) {
      f = (i * 7 + j * 211) % 600
      s = sprintf("file %d changed in commit %d\n", f, i)
      printf "M 644 inline d%d/f%d.txt\ndata %d\n%s\n", f % 30, f, length(s), s
    }
  }
}' | git -C "$repo" fast-import --quiet
git -C "$repo" gc -q

port=$("$TIDE" bench/git.lua port 2>/dev/null)
git daemon --reuseaddr --export-all --listen=127.0.0.1 --port="$port" --base-path="$work" \
  "$work" 2>"$work/daemon.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true' EXIT
url="git://127.0.0.1:$port/repo.git"
i=0
until git ls-remote "$url" >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "bench: git daemon did not start" >&2; exit 1; }
  sleep 0.05
done

# clone_pair N DIR A B: runs the clone commands A and B (strings, run by sh) N times each,
# alternately, DIR removed before each run and not timed; prints the best time of each. The
# machine's load drifts: alternating gives both the same conditions.
clone_pair() {
  n=$1 dst=$2 a=$3 b=$4
  best_a= best_b=
  k=0
  while [ "$k" -lt "$n" ]; do
    for which in a b; do
      rm -rf "$dst"
      if [ "$which" = a ]; then cmd=$a; else cmd=$b; fi
      t0=$(now_ns)
      sh -c "$cmd" >/dev/null 2>"$BENCH_DIR/stderr" || {
        echo "bench: '$cmd' failed:" >&2
        tail -5 "$BENCH_DIR/stderr" >&2
        exit 1
      }
      t=$(($(now_ns) - t0))
      if [ "$which" = a ]; then
        if [ -z "$best_a" ] || [ "$t" -lt "$best_a" ]; then best_a=$t; fi
      else
        if [ -z "$best_b" ] || [ "$t" -lt "$best_b" ]; then best_b=$t; fi
      fi
    done
    k=$((k + 1))
  done
  rm -rf "$dst"
  awk -v a="$best_a" -v b="$best_b" 'BEGIN { printf "%.3f %.3f", a / 1e9, b / 1e9 }'
}

dst="$work/clone"
set -- $(clone_pair 7 "$dst" "'$TIDE' bench/git.lua clone '$url' '$dst'" \
  "git clone -q '$url' '$dst'")
r=$(ratio "$1" "$2")
echo "git: clone git:// 10000 commits tide $1 s, git $2 s, ratio $r" \
  "(target <= 1.2: $(verdict "$r" "<=" 1.2))"

set -- $(clone_pair 7 "$dst" "'$TIDE' bench/git.lua clone '$repo' '$dst'" \
  "git clone -q --no-hardlinks '$repo' '$dst'")
r=$(ratio "$1" "$2")
echo "git: clone local path tide $1 s, git --no-hardlinks $2 s, ratio $r" \
  "(target <= 1.2: $(verdict "$r" "<=" 1.2))"

from=$(git -C "$repo" rev-parse main~1000)
to=$(git -C "$repo" rev-parse main)
"$TIDE" bench/git.lua changed "$repo" "$from" "$to" >"$work/tide.txt" 2>/dev/null
git -C "$repo" diff --no-renames --name-only "$from" "$to" | LC_ALL=C sort >"$work/git.txt"
cmp -s "$work/tide.txt" "$work/git.txt" || { echo "bench: changed_paths differs from git diff" >&2
  exit 1; }
# One call inside a running tide (what the pipeline engine pays per call: open, diff, the hop to
# the thread pool) against one `git diff` process (what shelling out to git costs).
t_tide=$("$TIDE" bench/git.lua changed_time "$repo" "$from" "$to" 20 2>/dev/null)
k=0 best=
while [ "$k" -lt 20 ]; do
  t0=$(now_ns)
  git -C "$repo" diff --no-renames --name-only "$from" "$to" >/dev/null
  t=$(($(now_ns) - t0))
  if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
  k=$((k + 1))
done
t_git=$(awk -v t="$best" 'BEGIN { printf "%.4f", t / 1e9 }')
r=$(ratio "$t_tide" "$t_git")
echo "git: changed_paths over 1000 commits ($(wc -l <"$work/git.txt") paths) tide $t_tide s," \
  "git diff $t_git s, ratio $r (target <= 1.5: $(verdict "$r" "<=" 1.5))"
