#!/bin/sh
# (c) A child writes 1 GiB to stdout; tide keeps all of it in the run's log file (capture off,
# max_output = 0) against `head -c 1G /dev/zero | cat > file` on the same disk. Throughput ratio
# baseline time / tide time; target >= 0.5.
set -eu
. "$(dirname "$0")/lib.sh"
SIZE=${SIZE:-1073741824}
script="$BENCH_DIR/output.lua"
cat >"$script" <<LUA
local proc = require("tide.proc")
local r = proc.run({ "head", "-c", "$SIZE", "/dev/zero", max_output = 0 })
assert(r.code == 0 and r.stdout_bytes == $SIZE, "short output")
local f = assert(io.open(r.log, "rb"))
assert(f:seek("end") == $SIZE, "the log does not hold every byte")
f:close()
os.remove(r.log)
LUA
out="$BENCH_DIR/baseline.out"
base_cmd() { head -c "$SIZE" /dev/zero | cat >"$out"; rm -f "$out"; }
base=$(best_of 3 base_cmd)
tide=$(best_of 3 "$TIDE" "$script")
r=$(ratio "$base" "$tide")
mib=$(awk -v s="$SIZE" -v t="$tide" 'BEGIN { printf "%.0f", s / 1048576 / t }')
bmib=$(awk -v s="$SIZE" -v t="$base" 'BEGIN { printf "%.0f", s / 1048576 / t }')
echo "output: 1 GiB stdout into the run log: tide $tide s ($mib MiB/s), head | cat > file" \
  "$base s ($bmib MiB/s), throughput ratio $r (target >= 0.5: $(verdict "$r" ">=" 0.5))"
