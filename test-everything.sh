#!/usr/bin/env bash
# The README's test command: installs what the test suite needs and a fresh machine lacks, then
# runs the whole suite. .ci/run calls this script, so CI and a newcomer run the same thing.
#
#   ./test-everything.sh                  cargo nextest run --no-fail-fast (everything)
#   ./test-everything.sh --test faults    extra arguments go to `cargo nextest run`
#
# Installed only when missing:
#   cargo-nextest   with `cargo install cargo-nextest --locked` (into $CARGO_HOME/bin)
#   iproute2        `ip`: the fault tests and the README walk-through test make private
#                   network namespaces
#   iptables        the fault tests cut and thin the traffic between nodes with it
#   curl            the README walk-through test runs the README's curl commands
#   chromium, chromium-driver
#                   the live page's browser test drives headless Chromium through chromedriver
# The packages come from apt-get (Debian, Ubuntu), after an `apt-get update`; that needs root
# (or sudo). Without them the suite still runs, and the tests that need them fail saying why,
# as do the namespace tests when not run as root.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'test-everything: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "needs a Rust toolchain (cargo); see https://rustup.rs"
  exit 1
fi

# Where the tests look for system tools: the PATH, then the sbin folders, which a non-login
# root shell may lack on its PATH (tests/faults/netns.rs `tool` looks in the same places).
have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local dir
  for dir in /usr/sbin /sbin /usr/bin /bin; do
    [ -x "$dir/$1" ] && return 0
  done
  return 1
}

packages=()
have ip || packages+=(iproute2)
have iptables || packages+=(iptables)
have curl || packages+=(curl ca-certificates)
# The browser apart: on Ubuntu these names stand for snaps, which a machine without snapd (a
# container) cannot install; that must not keep the others, or the suite, from running.
browser=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || browser+=(chromium)
[ -x "${CHROMEDRIVER:-/usr/bin/chromedriver}" ] || browser+=(chromium-driver)
if [ $((${#packages[@]} + ${#browser[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    as_root=(none)
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "${as_root[*]}" = none ]; then
    say "missing ${packages[*]} ${browser[*]}, and cannot install them here (needs apt-get and"
    say "root); the tests that need them will fail. Install them with your package manager."
  else
    say "installing ${packages[*]} ${browser[*]} (apt-get update first)"
    "${as_root[@]}" apt-get update
    if [ ${#packages[@]} -gt 0 ]; then
      "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${packages[@]}"
    fi
    if [ ${#browser[@]} -gt 0 ] && ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${browser[@]}"; then
      say "could not install ${browser[*]}: the live page's browser test will fail saying why."
      say "Install Chromium and chromedriver yourself (on Ubuntu they are snaps) and set"
      say "CHROMIUM and CHROMEDRIVER to their paths if they are not in /usr/bin."
    fi
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install cargo-nextest --locked: it compiles, 5 to 20 minutes on two cores)"
  cargo install cargo-nextest --locked
fi

exec cargo nextest run --no-fail-fast "$@"
