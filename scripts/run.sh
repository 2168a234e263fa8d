#!/bin/sh
# Installs what is missing, builds tide, and runs the shipped example (examples/hello.lua, or the
# script given as arguments): several tasks in parallel, each running real processes, with a
# live view on a terminal and a summary at the end.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target tide -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
if [ $# -eq 0 ]; then
  set -- examples/hello.lua
fi
exec build/tide --home "${TIDE_HOME:-.tide}" "$@"
