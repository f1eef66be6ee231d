#!/usr/bin/env bash
# The scaling table of BENCHMARKS.md (issue 16), a row at a time or all of it.
#
#   bench/scale.sh ROW...      rows: clients-1 clients-16 clients-64 clients-256
#                                    value-100 value-4k value-64k
#                                    nodes-3 nodes-5
#                                    state-10k state-1m state-10m
#                                    catchup-256m catchup-1g wiped-1g
#   bench/scale.sh all         every row, in that order
#
# Throughput rows run bench/compare.sh (ours and etcd side by side, same run); the state rows
# run bench/measure/scaling.rs (ours only: etcd has no equivalent of writing a snapshot straight to
# disk). DURATION (default 10 s here) applies to every measured run. See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
export DURATION=${DURATION:-10}
export WARMUP=${WARMUP:-2}
SYSTEMS=${SYSTEMS:-"ours etcd"}
ALL="clients-1 clients-16 clients-64 clients-256 value-100 value-4k value-64k nodes-3 nodes-5 state-10k state-1m state-10m catchup-256m catchup-1g wiped-1g"

log() { echo "[scale $(date +%H:%M:%S)] $*" >&2; }

built=0
build() {
  ((built)) && return 0
  log "cargo build --release (the binary and bench/measure/scaling.rs)"
  (cd "$REPO" && cargo build --release --bin raftexample --example scaling) >&2
  built=1
}

compare() { # LABEL VAR=VALUE...
  local label=$1
  shift
  build
  echo "### $label"
  env BUILD=0 SYSTEMS="$SYSTEMS" "$@" "$BENCH_DIR/compare.sh"
}

scaling() { # ARGS...
  build
  echo "### scaling $*"
  "$REPO/target/release/examples/scaling" "$@"
}

row() {
  case $1 in
    # clients: PUT and linearizable GET; the single-client run of compare.sh is part of every run
    clients-1) compare "$1" CONNECTIONS=1 ;;
    clients-16 | clients-64 | clients-256) compare "$1" CONNECTIONS="${1#clients-}" ;;
    # value sizes, 64 clients; fewer keys for big values (wrk builds every request up front)
    value-100) compare "$1" VALUE_SIZE=100 ;;
    value-4k) compare "$1" VALUE_SIZE=4096 KEYS=2000 ;;
    value-64k) compare "$1" VALUE_SIZE=65536 KEYS=200 ;;
    nodes-3 | nodes-5) compare "$1" NODES="${1#nodes-}" ;;
    state-10k) scaling state 10000 ;;
    state-1m) scaling state 1000000 ;;
    state-10m) DURATION=$((DURATION * 2)) scaling state 10000000 ;;
    # 4,096 and 16,384 values of 64 KiB: 256 MiB and 1 GiB of state
    catchup-256m) scaling catchup 4096 65536 ;;
    catchup-1g) scaling catchup 16384 65536 ;;
    wiped-1g) scaling wiped 16384 65536 ;;
    *) echo "unknown row '$1'; rows: $ALL" >&2; return 2 ;;
  esac
}

(($# > 0)) || { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
rows=("$@")
[[ $1 == all ]] && read -r -a rows <<<"$ALL"
for r in "${rows[@]}"; do
  started=$SECONDS
  row "$r"
  log "$r took $((SECONDS - started)) s"
done
