#!/usr/bin/env bash
# A tiny Procfile runner that, unlike honcho or ultraman, can stop and restart one process of a
# running cluster (the README's fault-tolerance walk-through needs that; goreman users can use
# `goreman run stop raftexample2` instead).
#
#   ./cluster.sh start [name...]   start every Procfile entry (or the named ones) in the background
#   ./cluster.sh stop [name...]    stop them (SIGTERM, by the PID this script recorded)
#   ./cluster.sh status            which entries are running
#   ./cluster.sh logs [name]       follow the logs
#
# PIDs and logs live in .cluster/ next to the Procfile.
set -euo pipefail
cd "$(dirname "$0")"
state=.cluster
mkdir -p "$state"

entries() { grep -E '^[A-Za-z0-9_-]+:' Procfile | sed -E 's/^([^:]+):[[:space:]]*(.*)$/\1\t\2/'; }
names() { if [ $# -gt 0 ]; then printf '%s\n' "$@"; else entries | cut -f1; fi; }
running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

cmd=${1:-}; shift || true
case "$cmd" in
  start)
    [ -x ./target/release/raftexample ] || cargo build --release
    for name in $(names "$@"); do
      line=$(entries | awk -F'\t' -v n="$name" '$1 == n { print $2 }')
      [ -n "$line" ] || { echo "no Procfile entry named $name" >&2; exit 1; }
      if running "$name"; then echo "$name is already running"; continue; fi
      bash -c "exec $line" >>"$state/$name.log" 2>&1 &
      echo $! >"$state/$name.pid"
      echo "started $name (pid $!, log $state/$name.log)"
    done ;;
  stop)
    for name in $(names "$@"); do
      if running "$name"; then
        pid=$(cat "$state/$name.pid"); kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped $name"
      fi
      rm -f "$state/$name.pid"
    done ;;
  status)
    for name in $(names); do
      if running "$name"; then echo "$name running (pid $(cat "$state/$name.pid"))"; else echo "$name stopped"; fi
    done ;;
  logs)
    if [ $# -gt 0 ]; then tail -f "$state/$1.log"; else tail -f "$state"/*.log; fi ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
