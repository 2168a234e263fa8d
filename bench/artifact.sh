#!/bin/sh
# (d) The artifact store against plain copies on the same disk, measured in this invocation:
#   put of a 1 GiB file (hash, copy, fsync, index) against `cp`: ratio tide/cp, target <= 1.3,
#   and against `cp` followed by `sync` of the copy (the same durability as a put);
#   get of it with verification against `cp`: target <= 1.3;
#   put_dir of 50,000 small files against `cp -r`: target <= 1.5, and against `cp -r` followed
#   by a sync of the file system (the same durability as a put_dir);
#   put_dir of the same tree again (everything stored): target <= 0.5.
# The big-file figures are the best of BEST rounds (default 5), each round running cp, cp + sync,
# put and get one after the other, so that a slow moment of the disk hits all of them alike. Every
# put starts from an empty store except the second put_dir; deleting what the last run made and
# flushing the disk between runs are not timed. SIZE and FILES shrink the inputs for a quick run.
#
# A put computes SHA-256 (the blob's name) over every byte, at about 1.7 GB/s with the CPU's SHA
# extensions, while `cp` copies in the kernel without reading the data: where SHA-256 of the file
# takes longer than 1.3 times `cp`, that floor, not the copy, bounds the put against plain cp.
set -eu
. "$(dirname "$0")/lib.sh"
SIZE=${SIZE:-1073741824}
FILES=${FILES:-50000}
BEST=${BEST:-5}
work="$BENCH_DIR/artifact"
rm -rf "$work"
mkdir -p "$work"
export TIDE_HOME="$work/home"

# Inputs: one big random file, and a tree of FILES small files (100 B to 8 KiB, all different)
# in 100 directories, as a build output might look.
head -c "$SIZE" /dev/urandom >"$work/big"
cat >"$work/gen.lua" <<LUA
local root, n = "$work/tree", $FILES
os.execute("mkdir -p " .. root)
local seed = 1
for d = 1, 100 do
  os.execute(("mkdir -p %s/d%03d"):format(root, d))
end
for i = 1, n do
  local f = assert(io.open(("%s/d%03d/f%06d.txt"):format(root, i % 100 + 1, i), "wb"))
  seed = (seed * 1103515245 + 12345) % 2147483648
  local len = 100 + seed % 8092
  f:write(("%08d"):format(i), string.rep(string.char(65 + i % 26), len - 8))
  f:close()
end
LUA
"$TIDE" "$work/gen.lua" >/dev/null 2>&1
sync

# best_with N SETUP CMD...: like best_of, but runs SETUP (untimed) before each run.
best_with() {
  n=$1 setup=$2
  shift 2
  best=
  i=0
  while [ "$i" -lt "$n" ]; do
    $setup
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

fresh() { rm -rf "$TIDE_HOME" "$work/out" "$work/copy"; sync; }
no_out() { rm -rf "$work/out" "$work/copy"; sync; }
nothing() { :; }
cp_sync() { cp "$1" "$2" && sync "$2"; }
cp_r_sync() { cp -r "$1" "$2" && sync -f "$2"; }
art() { "$TIDE" artifact "$@"; }

# timed CMD...: runs CMD, prints its wall time in nanoseconds.
timed() {
  t0=$(now_ns)
  "$@" >/dev/null 2>"$BENCH_DIR/stderr" || {
    echo "bench: '$*' failed:" >&2
    tail -5 "$BENCH_DIR/stderr" >&2
    exit 1
  }
  echo $(($(now_ns) - t0))
}
min() { if [ -z "$1" ] || [ "$2" -lt "$1" ]; then echo "$2"; else echo "$1"; fi; }
secs() { awk -v t="$1" 'BEGIN { printf "%.3f", t / 1e9 }'; }

cp_b= sync_b= put_b= get_b=
i=0
while [ "$i" -lt "$BEST" ]; do
  no_out
  cp_b=$(min "$cp_b" "$(timed cp "$work/big" "$work/copy")")
  no_out
  sync_b=$(min "$sync_b" "$(timed cp_sync "$work/big" "$work/copy")")
  fresh
  put_b=$(min "$put_b" "$(timed art push "$work/big" --package big --version 1)")
  no_out
  get_b=$(min "$get_b" "$(timed art pull big@1 "$work/out")")
  i=$((i + 1))
done
base=$(secs "$cp_b") durable=$(secs "$sync_b") put=$(secs "$put_b") get=$(secs "$get_b")
r=$(ratio "$put" "$base")
echo "artifact: put of a $((SIZE >> 20)) MiB file (durable): tide $put s, cp $base s," \
  "ratio $r (target <= 1.3: $(verdict "$r" "<=" 1.3))"
echo "artifact: put of a $((SIZE >> 20)) MiB file against cp + sync of the copy $durable s:" \
  "ratio $(ratio "$put" "$durable")"
r=$(ratio "$get" "$base")
echo "artifact: get (verified) of a $((SIZE >> 20)) MiB file: tide $get s, cp $base s," \
  "ratio $r (target <= 1.3: $(verdict "$r" "<=" 1.3))"
rm -f "$work/big" "$work/copy"
rm -rf "$work/out"

base=$(best_with "$BEST" no_out cp -r "$work/tree" "$work/copy")
durable=$(best_with "$BEST" no_out cp_r_sync "$work/tree" "$work/copy")
tide=$(best_with "$BEST" fresh art push "$work/tree" --package tree --version 1)
r=$(ratio "$tide" "$base")
echo "artifact: put_dir of $FILES small files (durable): tide $tide s, cp -r $base s," \
  "ratio $r (target <= 1.5: $(verdict "$r" "<=" 1.5))"
echo "artifact: put_dir of $FILES small files against cp -r + sync of the copy $durable s:" \
  "ratio $(ratio "$tide" "$durable")"
tide=$(best_with "$BEST" nothing art push "$work/tree" --package tree --version 2)
r=$(ratio "$tide" "$base")
echo "artifact: put_dir of the same tree again: tide $tide s, cp -r $base s," \
  "ratio $r (target <= 0.5: $(verdict "$r" "<=" 0.5))"
rm -rf "$work"
