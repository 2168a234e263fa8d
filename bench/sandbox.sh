#!/bin/sh
# 200 sequential proc.run{"/bin/true", sandbox = true} in one tide script against 200
# `bwrap --unshare-all --die-with-parent --ro-bind / / /bin/true` started by a C loop of
# posix_spawn + waitpid. Both include their own start-up. Target: ratio <= 1.0.
set -eu
. "$(dirname "$0")/lib.sh"
N=${N:-200}
[ -x "$BASELINE" ] || { echo "bench: $BASELINE is missing: build first" >&2; exit 2; }
BWRAP=$(command -v bwrap || true)
[ -n "$BWRAP" ] || { echo "sandbox: bwrap is not installed: skipped"; exit 0; }
"$BWRAP" --unshare-all --die-with-parent --ro-bind / / /bin/true 2>/dev/null || {
  echo "sandbox: bwrap cannot create namespaces here: skipped"
  exit 0
}
# The sandbox's working directory (writable by default) must be one the sandbox uid may use.
work="$BENCH_DIR/sandbox"
mkdir -p "$work"
script="$BENCH_DIR/sandbox.lua"
cat >"$script" <<LUA
local proc = require("tide.proc")
for _ = 1, $N do
  assert(proc.run({ "/bin/true", sandbox = true, cwd = "$work" }).code == 0)
end
LUA
# Alternate the two, best of 7 each, so a burst of load on the machine hits both alike.
base= tide=
i=0
while [ "$i" -lt 7 ]; do
  b=$(best_of 1 "$BASELINE" "$N" "$BWRAP" --unshare-all --die-with-parent --ro-bind / / /bin/true)
  t=$(best_of 1 "$TIDE" "$script")
  base=$(awk -v a="$b" -v m="${base:-$b}" 'BEGIN { print (a < m) ? a : m }')
  tide=$(awk -v a="$t" -v m="${tide:-$t}" 'BEGIN { print (a < m) ? a : m }')
  i=$((i + 1))
done
r=$(ratio "$tide" "$base")
echo "sandbox: tide ${N}x proc.run /bin/true sandboxed $tide s, bwrap loop $base s, ratio $r" \
  "(target <= 1.0: $(verdict "$r" "<=" 1.0))"
