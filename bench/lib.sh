# Shared by the bench/*.sh scripts (sourced, not run). They build nothing: they use $TIDE_BIN
# (default build/tide) and the spawn_baseline built next to it ($SPAWN_BASELINE, default
# bench/spawn_baseline in the binary's build directory), run from the repo root, and keep their
# scratch files under $BENCH_DIR (default build/bench/work, the disk of the tree).
cd "$(dirname "$0")/.." || exit 2
TIDE=${TIDE_BIN:-build/tide}
BASELINE=${SPAWN_BASELINE:-$(dirname "$TIDE")/bench/spawn_baseline}
BENCH_DIR=${BENCH_DIR:-build/bench/work}
for f in "$TIDE"; do
  [ -x "$f" ] || { echo "bench: $f is missing: build first (cmake --build build)" >&2; exit 2; }
done
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
# Every tide run records itself in a store; the benchmarks get their own.
export TIDE_HOME="$BENCH_DIR/home"
export TIDE_STDLIB_DIR=

# now_ns: monotonic-enough wall clock in nanoseconds.
now_ns() { date +%s%N; }

# best_of N CMD...: runs CMD N times, prints the fastest wall time in seconds. stderr (where a
# recorded run prints a line per finished span when it is not a terminal) goes to a file.
best_of() {
  n=$1
  shift
  best=
  i=0
  while [ "$i" -lt "$n" ]; do
    t0=$(now_ns)
    "$@" >/dev/null 2>"$BENCH_DIR/stderr" || {
      echo "bench: '$*' failed:" >&2
      tail -5 "$BENCH_DIR/stderr" >&2
      exit 1
    }
    t=$(( $(now_ns) - t0 ))
    if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
    i=$((i + 1))
  done
  awk -v t="$best" 'BEGIN { printf "%.3f", t / 1e9 }'
}

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# verdict VALUE OP LIMIT: "ok" or "MISSED".
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    ok = (op == "<=") ? v <= l : v >= l; print ok ? "ok" : "MISSED" }'
}
