#!/bin/sh
# (a) 1,000 sequential proc.run{"/bin/true"} in one tide script against a C loop of posix_spawn +
# waitpid of the same program. Both include their own start-up. Target: ratio <= 1.3.
set -eu
. "$(dirname "$0")/lib.sh"
N=${N:-1000}
[ -x "$BASELINE" ] || { echo "bench: $BASELINE is missing: build first" >&2; exit 2; }
script="$BENCH_DIR/spawn.lua"
cat >"$script" <<LUA
local proc = require("tide.proc")
for _ = 1, $N do
  assert(proc.run({ "/bin/true" }).code == 0)
end
LUA
base=$(best_of 5 "$BASELINE" "$N" /bin/true)
tide=$(best_of 5 "$TIDE" "$script")
r=$(ratio "$tide" "$base")
echo "spawn: tide ${N}x proc.run /bin/true $tide s, posix_spawn loop $base s, ratio $r" \
  "(target <= 1.3: $(verdict "$r" "<=" 1.3))"
