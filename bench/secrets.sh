#!/bin/sh
# Secrets: two figures, each against a baseline measured in the same invocation.
# (a) reads: 10,000 params.get of a 1 KiB SecureString (decrypt, audit record, masking
#     registration) against 10,000 plain selects of a 1 KiB row of the same database through
#     tide.db, best of three rounds each. Ratio tide time / baseline time; target <= 3.
# (b) masking: 1 GiB of text output from a child into the run log with 100 registered secret
#     values, against the same run with none. Throughput ratio masked / unmasked; target >= 0.5.
set -eu
. "$(dirname "$0")/lib.sh"
SIZE=${SIZE:-1073741824}
N=${N:-10000}
export TIDE_SECRET_KEY_FILE="$BENCH_DIR/secret.key"

reads="$BENCH_DIR/secrets_reads.lua"
cat >"$reads" <<LUA
local tide = require("tide")
local db = require("tide.db")
local params = require("tide.params")
local value = string.rep("k", 1024)
db.exec("CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, v BLOB)")
db.exec("INSERT OR REPLACE INTO bench_rows (id, v) VALUES (1, ?)", db.blob(value))
params.put("/bench/secure", value, { type = "SecureString", overwrite = true })
-- Best of three rounds of each, like best_of for whole commands.
local base, gets = math.huge, math.huge
for _ = 1, 3 do
  local t0 = tide.monotime()
  for _ = 1, $N do
    assert(#db.row("SELECT v FROM bench_rows WHERE id = ?", 1).v == 1024)
  end
  local t1 = tide.monotime()
  for _ = 1, $N do
    local v = params.get("/bench/secure", { with_decryption = true }).value
    assert(#v == 1024)
    v:close()
  end
  local t2 = tide.monotime()
  base, gets = math.min(base, t1 - t0), math.min(gets, t2 - t1)
end
io.stdout:write(string.format("%.4f %.4f\n", base, gets))
LUA
set -- $("$TIDE" "$reads" 2>"$BENCH_DIR/stderr")
base=$1
tide=$2
r=$(ratio "$tide" "$base")
echo "secrets: $N gets of a 1 KiB SecureString $tide s, $N plain 1 KiB selects $base s," \
  "ratio $r (target <= 3: $(verdict "$r" "<=" 3))"

# A text line of 1000 base64 characters, repeated to SIZE bytes: every byte is a possible start
# of a pattern, which is the expensive case for a masker.
line=$(head -c 3000 /dev/urandom | base64 -w 0 | head -c 1000)
for masked in 0 1; do
  cat >"$BENCH_DIR/secrets_mask$masked.lua" <<LUA
local native = require("tide._secret")
local proc = require("tide.proc")
if $masked == 1 then
  for i = 1, 100 do
    assert(native.mask(string.format("bench-secret-%03d-%s", i, native.random(6):gsub(".",
      function(c) return string.format("%02x", c:byte()) end))))
  end
end
local r = proc.run({ "sh", "-c", "yes '$line' | head -c $SIZE", max_output = 0 })
assert(r.code == 0 and r.stdout_bytes == $SIZE, "short output")
os.remove(r.log)
LUA
done
plain=$(best_of 3 "$TIDE" "$BENCH_DIR/secrets_mask0.lua")
masked=$(best_of 3 "$TIDE" "$BENCH_DIR/secrets_mask1.lua")
r=$(ratio "$plain" "$masked")
mib=$(awk -v s="$SIZE" -v t="$masked" 'BEGIN { printf "%.0f", s / 1048576 / t }')
echo "masking: 1 GiB of output with 100 secret values $masked s ($mib MiB/s), unmasked" \
  "$plain s, throughput ratio $r (target >= 0.5: $(verdict "$r" ">=" 0.5))"
