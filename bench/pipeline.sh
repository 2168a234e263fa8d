#!/bin/sh
# Pipeline engine overhead: a pipeline of 5 stages with 20 parallel actions each, every action
# running /bin/true, against a plain tide script making the same 100 proc.run calls in the same
# 5 waves of 20. Target: ratio <= 1.5 (best of 9 whole-command wall times each, interleaved).
set -eu
. "$(dirname "$0")/lib.sh"
cat >"$BENCH_DIR/pipeline_decl.lua" <<'LUA'
local proc = require("tide.proc")
local function tru() proc.run({ "/bin/true", check = true }) end
local stages = {}
for s = 1, 5 do
  local actions = {}
  for a = 1, 20 do
    actions[a] = { name = "A" .. a, run = tru }
  end
  stages[s] = { name = "S" .. s, actions = actions }
end
return { name = "bench", stages = stages }
LUA
cat >"$BENCH_DIR/pipeline_plain.lua" <<'LUA'
local tide = require("tide")
local proc = require("tide.proc")
local function tru() proc.run({ "/bin/true", check = true }) end
for _ = 1, 5 do
  local wave = {}
  for a = 1, 20 do
    wave[a] = tide.spawn("A" .. a, tru)
  end
  tide.all(wave)
end
LUA
# The two commands alternate, best of 9 each: a burst of load on a busy machine then hits both
# alike instead of one whole series (best_of runs one series after the other).
plain= engine=
i=0
while [ "$i" -lt 9 ]; do
  p=$(best_of 1 "$TIDE" --plain "$BENCH_DIR/pipeline_plain.lua")
  e=$(best_of 1 "$TIDE" --plain run "$BENCH_DIR/pipeline_decl.lua" --new)
  plain=$(awk -v a="$p" -v b="$plain" 'BEGIN { print (b == "" || a < b) ? a : b }')
  engine=$(awk -v a="$e" -v b="$engine" 'BEGIN { print (b == "" || a < b) ? a : b }')
  i=$((i + 1))
done
r=$(ratio "$engine" "$plain")
echo "pipeline: 5 stages x 20 parallel /bin/true $engine s vs plain script $plain s:" \
  "ratio $r (target <= 1.5: $(verdict "$r" "<=" 1.5))"
