#!/bin/sh
# Runs every benchmark and prints one line per figure. Builds nothing: build first, e.g.
#   cmake -S . -B build && cmake --build build && sh bench/run.sh
# Set TIDE_BIN to measure another binary. A benchmark is not a test: the exit status is 0 even
# when a target is missed (the lines say "MISSED").
cd "$(dirname "$0")/.." || exit 2
status=0
for b in spawn tasks output startup sandbox artifact pipeline git secrets build; do
  sh "bench/$b.sh" || status=1
done
exit $status
