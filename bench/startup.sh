#!/bin/sh
# (d) Start-up: `tide version` against `lua5.4 -v`, with hyperfine. Target: ratio <= 3.
set -eu
. "$(dirname "$0")/lib.sh"
command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing" >&2; exit 2; }
csv="$BENCH_DIR/startup.csv"
hyperfine -N --warmup 20 --runs 300 --export-csv "$csv" "$TIDE version" "lua5.4 -v" \
  >/dev/null 2>"$BENCH_DIR/stderr" || { cat "$BENCH_DIR/stderr" >&2; exit 1; }
# csv: command,mean,stddev,median,user,system,min,max (seconds)
tide=$(awk -F, 'NR == 2 { print $2 }' "$csv")
lua=$(awk -F, 'NR == 3 { print $2 }' "$csv")
r=$(ratio "$tide" "$lua")
ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
echo "startup: tide version $(ms "$tide") ms, lua5.4 -v $(ms "$lua") ms, ratio $r" \
  "(target <= 3: $(verdict "$r" "<=" 3))"
