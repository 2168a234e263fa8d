#!/bin/sh
# Runs every test: the C tests, the busted specs, luacheck, clang-format, the examples, the same
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer, and each fuzz target for a
# short while. Installs what is missing first. Exit status 0 only when all of it passed.
set -u
cd "$(dirname "$0")/.."

sh scripts/deps.sh || exit 2

jobs=$(nproc 2>/dev/null || echo 2)
werror=OFF
[ "${CI:-}" = true ] && werror=ON
fuzz_seconds=${TIDE_FUZZ_SECONDS:-20}
failed=0
passed=0

step() {
  name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "== $name: FAILED" >&2
    failed=$((failed + 1))
    return 1
  fi
}

build() {
  dir=$1
  shift
  cmake -S . -B "$dir" -DTIDE_WERROR=$werror "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 ||
    { grep -v '^\[ *[0-9]*%\]' "$dir.build.log"; return 1; }
}

suite() {
  (cd "$1" && ctest -j "$jobs" --output-on-failure --timeout 300)
}

format_check() {
  clang-format --dry-run -Werror host/*.c lua/*.c include/tide/*.h lua/*.h spec/c/*.c fuzz/*.c \
    bench/*.c
}

fuzz() {
  build build-fuzz -DCMAKE_C_COMPILER=clang -DTIDE_FUZZ=ON -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo || return 1
  for target in build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$target")
    corpus=fuzz/corpus/${name#fuzz_}
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    # -timeout: an input that runs for 10 s is a finding (a hang), not a reason to wait forever.
    echo "-- $name for ${fuzz_seconds}s"
    "$target" -max_total_time="$fuzz_seconds" -timeout=10 -print_final_stats=0 "$work" \
      >"build-fuzz/$name.log" 2>&1 ||
      { tail -40 "build-fuzz/$name.log"; rm -rf "$work"; return 1; }
    rm -rf "$work"
  done
}

mkdir -p build build-asan build-fuzz
step "format" format_check
if step "build" build build; then
  step "tests" suite build
fi
if step "build (ASan+UBSan)" build build-asan -DTIDE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    step "tests (ASan+UBSan)" suite build-asan
fi
step "fuzz" fuzz

echo "tide test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
