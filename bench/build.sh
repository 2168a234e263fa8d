#!/bin/sh
# tide build of a buildspec with 4 phases x 25 `true` commands against one `bash -e` script of
# the same 100 commands, both run from one tide process in the same sandbox (bench/build.lua).
# Target: ratio <= 1.5, with the buildspec's shell bash like the baseline's. The same buildspec
# without `env.shell` (so /bin/sh) is measured too, for information.
set -eu
. "$(dirname "$0")/lib.sh"
work="$BENCH_DIR/build"
rm -rf "$work"
mkdir -p "$work"
# As root the sandbox runs commands as an unprivileged uid, which must be able to write here.
chmod 777 "$work"
# A store of its own (outside the sandbox's writable tree), kept from one invocation to the next
# as a server's store is. Removing the last invocation's store (some 700 files) right before the
# runs measured that removal instead: for about 30 s ext4 scans past recently deleted inodes at
# every file created near them, and each build creates eight (its log directory, a log per
# phase, the shell's output), which took the builds from about 1.35 to 2 times the baseline. It
# is removed after the runs once it holds more than 2000 builds.
export TIDE_HOME="$BENCH_DIR/build-home"
# BLOCKS blocks of ROUNDS runs of each (see bench/build.lua); the ratio is the blocks' median.
set -- $("$TIDE" --plain bench/build.lua "$work" "${BLOCKS:-5}" "${ROUNDS:-8}" \
  2>"$BENCH_DIR/stderr")
r=$(awk -v r="$1" 'BEGIN { printf "%.2f", r }')
echo "build: tide build 4x25 commands (shell: bash) $4 s, bash -e script $5 s ($6), best of each;" \
  "ratio $r, median of ${BLOCKS:-5} blocks ($2 to $3) (target <= 1.5: $(verdict "$r" "<=" 1.5))"
echo "build: the same buildspec without a shell key (/bin/sh, CodeBuild's default) $8 s," \
  "ratio $(awk -v r="$7" 'BEGIN { printf "%.2f", r }')"
if [ -d "$TIDE_HOME/builds" ] && [ "$(ls "$TIDE_HOME/builds" | wc -l)" -gt 2000 ]; then
  rm -rf "$TIDE_HOME"
fi
