#!/bin/sh
# Installs the Debian 12 packages tide builds, tests and benchmarks with.
# Idempotent: asks apt only for what is missing, and does nothing when all is there.
set -eu

packages="
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 libuv1-dev lua-luv-dev lua-cjson lua-expat
  libyaml-dev libgit2-dev libsqlite3-dev libpcre2-dev
  libseccomp-dev libsodium-dev libssl-dev libxxhash-dev
  lua-busted lua-check libcmocka-dev
  sqlite3 git hyperfine bubblewrap openssh-client openssh-server
  clang libclang-rt-14-dev
"

missing=""
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "deps: missing packages:$missing (run this script as root)" >&2
    exit 2
  fi
else
  SUDO=
fi

echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
