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
# A store of its own, fresh each time: builds keep records and logs that would otherwise pile up
# from one invocation to the next and be measured too. (Outside the sandbox's writable tree.)
export TIDE_HOME="$BENCH_DIR/build-home"
rm -rf "$TIDE_HOME"
set -- $("$TIDE" --plain bench/build.lua "$work" "${N:-20}" 2>"$BENCH_DIR/stderr")
r=$(ratio "$1" "$2")
echo "build: tide build 4x25 commands (shell: bash) $1 s, bash -e script $2 s ($3), ratio $r" \
  "(target <= 1.5: $(verdict "$r" "<=" 1.5))"
echo "build: the same buildspec without a shell key (/bin/sh, CodeBuild's default) $4 s," \
  "ratio $(ratio "$4" "$2")"
