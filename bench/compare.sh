#!/usr/bin/env bash
# Compare our raftexample with etcd 3.4 and with etcd's original contrib/raftexample,
# NODES (3) nodes each on loopback, one system after the other, driven by wrk.
# See bench/README.md for what it measures and the knobs.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

# ---- knobs -------------------------------------------------------------------------------
DURATION=${DURATION:-10}                 # seconds per measured wrk run ("10" or "10s")
CONNECTIONS=${CONNECTIONS:-64}           # concurrent clients of the many-client runs
THREADS=${THREADS:-2}                    # wrk threads (capped at the connection count)
KEYS=${KEYS:-10000}                      # key space; all keys are written before the GET runs
VALUE_SIZE=${VALUE_SIZE:-100}            # bytes per value
WARMUP=${WARMUP:-3}                      # seconds of PUT load before measuring (after the prefill)
SYSTEMS=${SYSTEMS:-"ours etcd orig"}     # which systems to run, in this order
STALE_QUERY=${STALE_QUERY-"?stale"}      # appended to our GET path for the local (stale) read
TARGET=${TARGET:-leader}                 # node the load goes to: leader (detected) or 1, 2, 3
BUILD=${BUILD:-1}                        # 1: cargo build --release before running ours
OURS_BIN=${OURS_BIN:-$REPO/target/release/raftexample}
OURS_ARGS=${OURS_ARGS-auto}              # extra flags for ours; auto: --listen-host 127.0.0.1 if --help lists it
BENCH_CACHE=${BENCH_CACHE:-/tmp/raftexample-bench-cache}   # where the original is built
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}   # parent of the run's data dirs: must be a real disk
READY_TIMEOUT=${READY_TIMEOUT:-60}       # seconds for a cluster to start answering
PREFILL_TIMEOUT=${PREFILL_TIMEOUT:-120}  # upper bound of the prefill run
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}           # wrk's per-request timeout
INSTALL=${INSTALL:-1}                    # 1: apt-get install what is missing
KEEP_TMP=${KEEP_TMP:-0}                  # 1: keep the data dirs and logs (path printed)
TLS=${TLS:-0}                            # 1: after ours, run ours again with TLS on both ports (ours-tls)
NODES=${NODES:-3}                        # cluster size, 1 to 5

DUR=${DURATION%s}
WARM=${WARMUP%s}
[[ $DUR =~ ^[0-9]+$ && $DUR -gt 0 ]] || { echo "DURATION must be whole seconds, got '$DURATION'" >&2; exit 2; }
[[ $WARM =~ ^[0-9]+$ ]] || { echo "WARMUP must be whole seconds, got '$WARMUP'" >&2; exit 2; }
[[ $CONNECTIONS =~ ^[0-9]+$ && $CONNECTIONS -gt 0 ]] || { echo "bad CONNECTIONS" >&2; exit 2; }
[[ $NODES =~ ^[1-5]$ ]] || { echo "NODES must be 1 to 5, got '$NODES'" >&2; exit 2; }
NODE_IDS=$(seq 1 "$NODES")

CLUSTER=$(for n in $NODE_IDS; do printf 'http://127.0.0.1:%s2379\n' "$n"; done | paste -sd,)
TLS_CLUSTER=${CLUSTER//http:/https:}
[[ $TLS == 1 && " $SYSTEMS " == *" ours "* && " $SYSTEMS " != *" ours-tls "* ]] && SYSTEMS=${SYSTEMS/ours/ours ours-tls}
CURL_TLS=()                              # curl's flags for ours-tls (set once its certificates exist)
ETCD_CLIENT_PORTS=(0 14379 24379 34379 44379 54379)  # index = node number
ETCD_PEER_PORTS=(0 14380 24380 34380 44380 54380)
LUA="$BENCH_DIR/kv.lua"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---- processes and temp dirs: everything started is recorded and stopped by PID ----------
TMP=""
ALL_PIDS=()
CLUSTER_PIDS=()
WRK_PID=""

stop_pids() { # PID...: SIGTERM, wait up to 15 s (an etcd leader waits ~7 s to hand over), then SIGKILL
  local p left deadline=$((SECONDS + 15))
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  while :; do
    left=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
    ((left == 0)) && break
    if ((SECONDS >= deadline)); then
      for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
      break
    fi
    sleep 0.1
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $WRK_PID ]] && stop_pids "$WRK_PID"
  ((${#ALL_PIDS[@]})) && stop_pids "${ALL_PIDS[@]}"
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- installation (idempotent; apt-get update only if something is missing) -------------
want_systems() { [[ " $SYSTEMS " == *" $1 "* ]]; }

install_missing() {
  local pkgs=()
  command -v curl >/dev/null || pkgs+=(curl)
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v timeout >/dev/null || pkgs+=(coreutils)
  if want_systems etcd; then command -v etcd >/dev/null || pkgs+=(etcd-server); fi
  if want_systems orig && [[ ! -x $BENCH_CACHE/raftexample-orig ]]; then
    command -v go >/dev/null || pkgs+=(golang-go)
    [[ -d /usr/share/gocode/src/go.etcd.io/etcd/contrib/raftexample ]] || pkgs+=(golang-etcd-server-dev)
  fi
  ((${#pkgs[@]} == 0)) && return 0
  if [[ $INSTALL != 1 ]]; then echo "missing packages: ${pkgs[*]} (INSTALL=0)" >&2; exit 1; fi
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  log "installing ${pkgs[*]}"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" >&2
}

# The original, built offline from Debian's source package in GOPATH mode. One change:
# its REST listener binds ":PORT" (every interface); the copy built here binds
# 127.0.0.1:PORT so that nothing of the benchmark listens beyond loopback.
build_orig() {
  local bin=$BENCH_CACHE/raftexample-orig
  [[ -x $bin ]] && return 0
  local src=/usr/share/gocode/src/go.etcd.io/etcd/contrib/raftexample
  local dst=$BENCH_CACHE/gopath/src/go.etcd.io/etcd/contrib/raftexample
  log "building the original raftexample into $BENCH_CACHE"
  mkdir -p "$dst"
  cp "$src"/*.go "$dst"/
  rm -f "$dst"/*_test.go
  sed -i 's|Addr: ":" + strconv.Itoa(port)|Addr: "127.0.0.1:" + strconv.Itoa(port)|' "$dst/httpapi.go"
  grep -q 'Addr: "127.0.0.1:"' "$dst/httpapi.go" || { echo "could not patch the original's bind address" >&2; return 1; }
  (cd "$BENCH_CACHE" && GO111MODULE=off GOFLAGS='' GOPATH="$BENCH_CACHE/gopath:/usr/share/gocode" \
    GOCACHE="$BENCH_CACHE/gocache" go build -o "$bin.tmp" go.etcd.io/etcd/contrib/raftexample) >&2
  mv "$bin.tmp" "$bin"
}

build_ours() {
  [[ $BUILD == 1 ]] || return 0
  log "cargo build --release in $REPO"
  (cd "$REPO" && cargo build --release) >&2 || log "cargo build failed: ours will be n/a"
}

# ---- HTTP helpers --------------------------------------------------------------------------
node_url() { # SYS N
  case $1 in
    etcd) echo "http://127.0.0.1:${ETCD_CLIENT_PORTS[$2]}" ;;
    ours-tls) echo "https://127.0.0.1:${2}2380" ;;
    *) echo "http://127.0.0.1:${2}2380" ;;
  esac
}

kind() { [[ $1 == ours-tls ]] && echo ours || echo "$1"; } # ours-tls is ours, driven the same way

# ours-tls: a CA and node certificates from `raftexample certs`, TLS on both ports. The REST
# port asks for no client certificate (wrk cannot present one); peers check each other's.
tls_flags() { # N -> flags of node N
  local c=$TMP/certs
  echo "--cert-file $c/node$1.crt --key-file $c/node$1.key --peer-cert-file $c/node$1.crt" \
    "--peer-key-file $c/node$1.key --peer-trusted-ca-file $c/ca.crt"
}

b64() { printf '%s' "$1" | base64 -w0; }

kv_put() { # SYS N KEY VALUE -> 0 if acknowledged
  local url; url=$(node_url "$1" "$2")
  if [[ $1 == etcd ]]; then
    curl -fsS -o /dev/null --max-time 3 -X POST -H 'Content-Type: application/json' \
      -d "{\"key\":\"$(b64 "$3")\",\"value\":\"$(b64 "$4")\"}" "$url/v3/kv/put" 2>/dev/null
  else
    curl -fsS -o /dev/null --max-time 3 "${CURL_TLS[@]+"${CURL_TLS[@]}"}" -X PUT --data-binary "$4" "$url/$3" 2>/dev/null
  fi
}

kv_get_local() { # SYS N KEY -> value on stdout (etcd: serializable; ours, orig: plain GET)
  local url; url=$(node_url "$1" "$2")
  if [[ $1 == etcd ]]; then
    curl -fsS --max-time 3 -X POST -H 'Content-Type: application/json' \
      -d "{\"key\":\"$(b64 "$3")\",\"serializable\":true}" "$url/v3/kv/range" 2>/dev/null |
      python3 -c 'import sys,json,base64; k=json.load(sys.stdin).get("kvs") or []; print(base64.b64decode(k[0]["value"]).decode() if k else "")'
  else
    curl -fsS --max-time 3 "${CURL_TLS[@]+"${CURL_TLS[@]}"}" "$url/$3" 2>/dev/null
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Write a fresh value through the target and wait (deadline) until every node returns it.
# Used for readiness and to let a run's writes settle before reading /proc/PID/io.
sync_cluster() { # SYS TARGET TIMEOUT_S
  local sys=$1 tgt=$2 deadline=$((SECONDS + $3)) token="t$RANDOM$RANDOM" n ok
  local acked=0
  while ((SECONDS < deadline)); do
    for n in "${CLUSTER_PIDS[@]}"; do kill -0 "$n" 2>/dev/null || { log "$sys: a node exited"; return 1; }; done
    # the original acknowledges before commit and may drop a proposal: re-send it
    if ((acked == 0)) || [[ $sys == orig ]]; then kv_put "$sys" "$tgt" __bench_sync "$token" && acked=1; fi
    if ((acked)); then
      ok=1
      for n in $NODE_IDS; do
        [[ $(kv_get_local "$sys" "$n" __bench_sync || true) == "$token" ]] || { ok=0; break; }
      done
      ((ok)) && return 0
    fi
    sleep 0.2
  done
  return 1
}

find_leader() { # SYS -> node number, or empty
  local sys=$1 n
  if [[ $sys == etcd ]]; then
    for n in $NODE_IDS; do
      curl -fsS --max-time 3 -X POST -d '{}' "$(node_url etcd "$n")/v3/maintenance/status" 2>/dev/null |
        python3 -c 'import sys,json; d=json.load(sys.stdin); sys.exit(0 if d["header"]["member_id"]==d["leader"] else 1)' 2>/dev/null &&
        { echo "$n"; return 0; }
    done
    return 0
  fi
  if [[ $(kind "$sys") == ours ]]; then
    # Ours says who leads in /-/status (its raft log lines are off by default).
    for n in $NODE_IDS; do
      curl -fsS --max-time 3 "${CURL_TLS[@]+"${CURL_TLS[@]}"}" "$(node_url "$sys" "$n")/-/status" 2>/dev/null |
        python3 -c 'import sys,json; d=json.load(sys.stdin); l=d["leader"]; print(l) if l else sys.exit(1)' 2>/dev/null &&
        return 0
    done
    return 0
  fi
  # raft logs "… N became leader at term T" (etcd raft)
  local best_term=-1 best="" line term id
  for n in $NODE_IDS; do
    while IFS= read -r line; do
      term=$(sed -nE 's/.*became leader at term ([0-9]+).*/\1/p' <<<"$line")
      id=$(sed -nE 's/.*raft_id[=: "]+([0-9]+).*/\1/p' <<<"$line")
      [[ -z $id ]] && id=$(sed -nE 's/.* ([0-9]+) became leader at term.*/\1/p' <<<"$line")
      [[ -z $id ]] && id=$n
      if [[ -n $term ]] && ((term > best_term)); then best_term=$term; best=$id; fi
    done < <(grep -h "became leader at term" "$TMP/$sys/n$n/log" 2>/dev/null || true)
  done
  echo "$best"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
write_bytes_sum() { # PID... -> sum of write_bytes
  local p s=0 w
  for p in "$@"; do
    w=$(awk '/^write_bytes:/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)
    s=$((s + ${w:-0}))
  done
  echo "$s"
}

# ---- wrk -----------------------------------------------------------------------------------
# run_wrk SYS OP CONNS SECONDS NODE -> WRKRESULT line in $RESULT, or "" (no command
# substitution: wrk's PID must stay visible to the EXIT trap)
RESULT=""
run_wrk() {
  local sys=$1 op=$2 c=$3 d=$4 node=$5 t=$THREADS sq="-" out rc=0
  ((t > c)) && t=$c
  [[ $(kind "$sys") == ours && $op == getlocal ]] && sq=${STALE_QUERY:--}
  out="$TMP/wrk.$sys.$op.c$c.out"
  log "$sys: wrk $op c=$c t=$t ${d}s -> node $node"
  timeout -k 5 $((d + 30)) wrk -t"$t" -c"$c" -d"${d}s" --timeout "$WRK_TIMEOUT" -s "$LUA" \
    "$(node_url "$sys" "$node")" -- "$(kind "$sys")" "$op" "$KEYS" "$VALUE_SIZE" "$sq" "$TMP" "$t" $((c / t)) \
    >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  ((rc == 0)) || log "$sys: wrk exited with $rc (output in $out)"
  RESULT=$(grep '^WRKRESULT' "$out" | tail -n1 || true)
  log "$sys: ${RESULT:-no result}"
}

# Write every key once. wrk runs until its -d ends even when all its threads have stopped,
# so each thread leaves a marker when done and wrk is then ended with SIGINT (it prints
# its summary on SIGINT).
prefill() { # SYS NODE
  local sys=$1 node=$2 t=$THREADS c=$CONNECTIONS out rc=0 deadline
  ((t > c)) && t=$c
  rm -f "$TMP"/prefill.*
  out="$TMP/wrk.$sys.prefill.out"
  log "$sys: prefill $KEYS keys (c=$c)"
  timeout -k 5 $((PREFILL_TIMEOUT + 10)) wrk -t"$t" -c"$c" -d"${PREFILL_TIMEOUT}s" --timeout "$WRK_TIMEOUT" \
    -s "$LUA" "$(node_url "$sys" "$node")" -- "$(kind "$sys")" prefill "$KEYS" "$VALUE_SIZE" - "$TMP" "$t" $((c / t)) \
    >"$out" 2>&1 &
  WRK_PID=$!
  deadline=$((SECONDS + PREFILL_TIMEOUT + 5))
  while kill -0 "$WRK_PID" 2>/dev/null && ((SECONDS < deadline)); do
    [[ $(find "$TMP" -maxdepth 1 -name 'prefill.*' | wc -l) -ge $t ]] && { kill -INT "$WRK_PID" 2>/dev/null || true; break; }
    sleep 0.1
  done
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  local res; res=$(grep '^WRKRESULT' "$out" | tail -n1 || true)
  log "$sys: prefill: ${res:-no result (rc=$rc)}"
  [[ $res == *" err_status=0 err_timeout=0"* && $res == *"err_connect=0 err_read=0 err_write=0"* ]] ||
    log "$sys: WARNING: prefill had errors; GETs may miss"
}

field() { sed -nE "s/.*[ ]$2=([^ ]+).*/\1/p" <<<"$1"; }

# ---- clusters ------------------------------------------------------------------------------
start_cluster() { # SYS -> fills CLUSTER_PIDS
  local sys=$1 n dir p
  CLUSTER_PIDS=()
  mkdir -p "$TMP/$sys"
  for n in $NODE_IDS; do
    for p in $([[ $sys == etcd ]] && echo "${ETCD_CLIENT_PORTS[$n]} ${ETCD_PEER_PORTS[$n]}" || echo "${n}2379 ${n}2380"); do
      if port_busy "$p"; then log "$sys: port $p is already in use"; return 1; fi
    done
  done
  for n in $NODE_IDS; do
    dir="$TMP/$sys/n$n"
    mkdir -p "$dir"
    case $sys in
      ours | ours-tls | orig)
        local bin=$OURS_BIN cluster=$CLUSTER
        [[ $sys == orig ]] && bin=$BENCH_CACHE/raftexample-orig
        local extra=()
        [[ $sys != orig ]] && read -r -a extra <<<"$OURS_ARGS"
        if [[ $sys == ours-tls ]]; then
          cluster=$TLS_CLUSTER
          local tls=()
          read -r -a tls <<<"$(tls_flags "$n")"
          extra+=("${tls[@]}")
        fi
        (cd "$dir" && exec "$bin" --id "$n" --cluster "$cluster" --port "${n}2380" "${extra[@]+"${extra[@]}"}") >"$dir/log" 2>&1 &
        ;;
      etcd)
        local ic; ic=$(for m in $NODE_IDS; do printf 'n%s=http://127.0.0.1:%s\n' "$m" "${ETCD_PEER_PORTS[$m]}"; done | paste -sd,)
        (cd "$dir" && exec etcd --name "n$n" --data-dir "$dir/data" \
          --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$n]}" \
          --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$n]}" \
          --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$n]}" \
          --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$n]}" \
          --initial-cluster "$ic" --initial-cluster-state new \
          --initial-cluster-token "bench-$$") >"$dir/log" 2>&1 &
        ;;
    esac
    CLUSTER_PIDS+=($!)
    ALL_PIDS+=($!)
  done
}

stop_cluster() {
  ((${#CLUSTER_PIDS[@]})) && stop_pids "${CLUSTER_PIDS[@]}"
  local p keep=()
  for p in "${ALL_PIDS[@]}"; do [[ " ${CLUSTER_PIDS[*]} " == *" $p "* ]] || keep+=("$p"); done
  ALL_PIDS=("${keep[@]+"${keep[@]}"}")
  CLUSTER_PIDS=()
}

declare -A RES=()   # RES[sys:row] = WRKRESULT line
declare -A INFO=()  # INFO[sys:what]

bench_system() { # SYS
  local sys=$1 tgt leader before after r
  if [[ $(kind "$sys") == ours && ! -x $OURS_BIN ]]; then log "$sys: no binary at $OURS_BIN: n/a"; return 0; fi
  if [[ $sys == ours-tls ]]; then
    if [[ ! -f $TMP/certs/ca.crt ]] && ! "$OURS_BIN" certs --out "$TMP/certs" >&2; then
      log "ours-tls: raftexample certs failed: n/a"; return 0
    fi
    CURL_TLS=(--cacert "$TMP/certs/ca.crt")
  else
    CURL_TLS=()
  fi
  if [[ $(kind "$sys") == ours && $OURS_ARGS == auto ]]; then
    OURS_ARGS=""
    local help; help=$(timeout 10 "$OURS_BIN" --help 2>&1 || true)
    [[ $help == *--listen-host* ]] && OURS_ARGS="--listen-host 127.0.0.1"
    log "ours: extra flags: ${OURS_ARGS:-none}"
  fi
  if [[ $sys == orig && ! -x $BENCH_CACHE/raftexample-orig ]]; then log "orig: not built: n/a"; return 0; fi
  log "=== $sys ==="
  start_cluster "$sys" || { stop_cluster; return 0; }
  if ! sync_cluster "$sys" 1 "$READY_TIMEOUT"; then
    log "$sys: cluster not ready (within ${READY_TIMEOUT}s): n/a; log tails:"
    for r in $NODE_IDS; do tail -n 5 "$TMP/$sys/n$r/log" >&2 || true; done
    stop_cluster
    return 0
  fi
  leader=$(find_leader "$sys")
  INFO[$sys:leader]=${leader:-?}
  if [[ $TARGET == leader ]]; then tgt=${leader:-1}; else tgt=$TARGET; fi
  INFO[$sys:target]=$tgt
  log "$sys: ready; leader ${leader:-unknown}, load goes to node $tgt"
  INFO[$sys:rss_idle]=$(rss_kib "${CLUSTER_PIDS[0]}")

  prefill "$sys" "$tgt"
  sync_cluster "$sys" "$tgt" 60 || log "$sys: WARNING: cluster did not settle after the prefill"
  if [[ $sys == etcd ]]; then # etcd's range answers 200 for a missing key too: count the keys
    local cnt
    cnt=$(curl -fsS --max-time 5 -X POST -d "{\"key\":\"$(b64 bench-)\",\"range_end\":\"$(b64 bench.)\",\"count_only\":true}" \
      "$(node_url etcd "$tgt")/v3/kv/range" 2>/dev/null | python3 -c 'import sys,json; print(json.load(sys.stdin).get("count","0"))' || echo "?")
    [[ $cnt == "$KEYS" ]] && log "etcd: $cnt keys present" || log "etcd: WARNING: $cnt of $KEYS keys present after the prefill"
  fi
  if ((WARM > 0)); then run_wrk "$sys" put "$CONNECTIONS" "$WARM" "$tgt"; fi

  sync_cluster "$sys" "$tgt" 60 || true
  before=$(write_bytes_sum "${CLUSTER_PIDS[@]}")
  run_wrk "$sys" put "$CONNECTIONS" "$DUR" "$tgt"; r=$RESULT; RES[$sys:put]=$r
  sync_cluster "$sys" "$tgt" 60 || log "$sys: WARNING: cluster did not settle after the PUT run"
  [[ $sys == etcd ]] && sleep 0.5 # etcd's backend commits in 100 ms batches: let the last one land
  after=$(write_bytes_sum "${CLUSTER_PIDS[@]}")
  local nreq; nreq=$(field "$r" requests)
  if [[ -n $nreq && $nreq -gt 0 ]]; then INFO[$sys:bpp]=$(((after - before) / nreq)); fi

  # The single-client floor, measured right before and right after this system's
  # single-client run (the mean of the two): the fsync and wake-up costs of a VM drift within
  # minutes, so the start-of-run figure alone can be far from what this run saw.
  local f1 f2
  f1=$(measure_floor "$TMP")
  run_wrk "$sys" put 1 "$DUR" "$tgt"; RES[$sys:put1]=$RESULT
  f2=$(measure_floor "$TMP")
  INFO[$sys:floor]=$(printf '%s\n%s\n' "$f1" "$f2" |
    awk '{ s += 2 * $1 + 2 * $4 / 1000; t = t sprintf(" %.3f", 2 * $1 + 2 * $4 / 1000) } END { printf "%.3f (before, after:%s)", s / NR, t }')
  if [[ $sys != orig ]]; then run_wrk "$sys" get "$CONNECTIONS" "$DUR" "$tgt"; RES[$sys:get]=$RESULT; fi
  run_wrk "$sys" getlocal "$CONNECTIONS" "$DUR" "$tgt"; RES[$sys:getlocal]=$RESULT

  sync_cluster "$sys" "$tgt" 30 || true
  INFO[$sys:rss_loaded]=$(rss_kib "${CLUSTER_PIDS[0]}")
  for r in $NODE_IDS; do kill -0 "${CLUSTER_PIDS[$((r - 1))]}" 2>/dev/null || log "$sys: WARNING: node $r is no longer running"; done
  stop_cluster
}

# ---- disk and loopback floor ---------------------------------------------------------------
measure_floor() { # DIR -> "fsync_p50 fsync_p99 overwrite_p50 rtt_p50_us fsync_p10" (ms, ms, ms, us, ms)
  python3 - "$1" <<'EOF'
import os, sys, time, socket, statistics
d = sys.argv[1]
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
# append 4 KiB + fdatasync (a WAL append into a growing file)
p = os.path.join(d, "fsync-probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
buf = b"x" * 4096
app = []
for _ in range(200):
    t = time.perf_counter(); os.write(fd, buf); os.fdatasync(fd); app.append(time.perf_counter() - t)
# overwrite in place + fdatasync (a WAL append into a preallocated, already written file)
ow = []
for i in range(200):
    t = time.perf_counter(); os.pwrite(fd, buf, (i % 200) * 4096); os.fdatasync(fd); ow.append(time.perf_counter() - t)
os.close(fd); os.unlink(p)
# loopback TCP round trip, 1 byte each way, echo in a child process
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
port = ls.getsockname()[1]
pid = os.fork()
if pid == 0:
    c, _ = ls.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b: os._exit(0)
        c.sendall(b)
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtt = []
for _ in range(2000):
    t = time.perf_counter(); s.sendall(b"x"); s.recv(1); rtt.append(time.perf_counter() - t)
s.close(); os.waitpid(pid, 0)
print("%.3f %.3f %.3f %.1f %.3f" % (q(app, .5) * 1e3, q(app, .99) * 1e3, q(ow, .5) * 1e3, q(rtt, .5) * 1e6, q(app, .1) * 1e3))
EOF
}

# ---- main ----------------------------------------------------------------------------------
install_missing
want_systems orig && { build_orig || log "original build failed: orig will be n/a"; }
{ want_systems ours || want_systems ours-tls; } && build_ours

mkdir -p "$BENCH_TMPDIR"
TMP=$(mktemp -d "$BENCH_TMPDIR/raftbench.XXXXXX")
fstype=$(df --output=fstype "$TMP" 2>/dev/null | tail -n1 || stat -f -c %T "$TMP")
[[ $fstype == tmpfs || $fstype == ramfs ]] && log "WARNING: $TMP is on $fstype: fsync costs nothing there; set BENCH_TMPDIR to a disk"

log "measuring fsync and loopback round trip in $TMP"
read -r FS_P50 FS_P99 FS_OW RTT_US FS_P10 <<<"$(measure_floor "$TMP")"

for s in $SYSTEMS; do
  case $s in ours | ours-tls | etcd | orig) bench_system "$s" ;; *) log "unknown system '$s' (ours, ours-tls, etcd, orig)";; esac
done

# once more at the end: a disk shared with other work drifts, and the two show by how much
log "measuring fsync and loopback round trip again"
read -r FS2_P50 FS2_P99 FS2_OW RTT2_US FS2_P10 <<<"$(measure_floor "$TMP")"

# ---- report --------------------------------------------------------------------------------
cell() { # RESULT -> "rps p50 p99"
  if [[ -z $1 ]]; then printf '%9s %7s %7s' n/a - -; return; fi
  local e mark=""
  for e in err_connect err_read err_write err_status err_timeout; do [[ $(field "$1" "$e") == 0 ]] || mark="*"; done
  printf '%9s %7s %7s' "$(printf '%.0f' "$(field "$1" rps)")$mark" "$(field "$1" p50_ms)" "$(field "$1" p99_ms)"
}
ratio() { # A B -> A.rps / B.rps
  if [[ -z $1 || -z $2 ]]; then printf '%9s' -; return; fi
  printf '%9s' "$(awk -v a="$(field "$1" rps)" -v b="$(field "$2" rps)" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
}
ver_etcd=$(etcd --version 2>/dev/null | head -n1 | sed 's/etcd Version: //' || true)
ver_wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $2}' || true)
ver_ours=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && ver_ours+="+dirty"

echo
echo "raftexample comparison  $(date -u +%Y-%m-%dT%H:%MZ)  $(nproc) cores  $(uname -r)  data on $fstype"
echo "ours: $ver_ours   etcd: ${ver_etcd:-?}   orig: etcd ${ver_etcd:-?} contrib/raftexample (Debian golang-etcd-server-dev, bound to 127.0.0.1)   wrk: ${ver_wrk:-?}"
[[ $OURS_ARGS != auto && -n $OURS_ARGS ]] && echo "ours started with: --id N --cluster $CLUSTER --port N2380 $OURS_ARGS"
echo "runs: $NODES nodes, ${DUR}s each, $KEYS keys, ${VALUE_SIZE}-byte values, wrk $THREADS threads; load to the leader (TARGET=$TARGET)"
echo
printf '%-18s %7s | %9s %7s %7s | %9s %7s %7s | %9s %7s %7s | %9s %9s\n' \
  operation clients "ours r/s" p50ms p99ms "etcd r/s" p50ms p99ms "orig r/s" p50ms p99ms ours/etcd ours/orig
printf '%s\n' "$(printf '%.0s-' {1..140})"
row() { # LABEL CLIENTS KEY [orig-key]
  local o=${RES[ours:$3]-} e=${RES[etcd:$3]-} g=""
  [[ -n ${4-} ]] && g=${RES[orig:$4]-}
  printf '%-18s %7s | %s | %s | ' "$1" "$2" "$(cell "$o")" "$(cell "$e")"
  if [[ -n ${4-} ]]; then printf '%s | ' "$(cell "$g")"; else printf '%9s %7s %7s | ' none - -; fi
  printf '%s %s\n' "$(ratio "$o" "$e")" "$(ratio "$o" "$g")"
}
row "PUT" "$CONNECTIONS" put put
row "PUT" 1 put1 put1
row "GET linearizable" "$CONNECTIONS" get
row "GET local/stale" "$CONNECTIONS" getlocal getlocal
echo
echo "GET local/stale: ours GET /key${STALE_QUERY}, etcd range with serializable=true, orig its only GET (local, never linearizable)."
echo "orig PUT answers 204 before commit (fire-and-forget). '*' = the run had errors (non-2xx/3xx >399, timeouts, socket errors); see below."
echo
for when in before after; do
  if [[ $when == before ]]; then set -- "$FS_P50" "$FS_P99" "$FS_OW" "$RTT_US" "$FS_P10"; else set -- "$FS2_P50" "$FS2_P99" "$FS2_OW" "$RTT2_US" "$FS2_P10"; fi
  printf 'disk (%-6s): append+fdatasync 4 KiB p10 %s p50 %s p99 %s ms; overwrite+fdatasync p50 %s ms; loopback RTT p50 %s us; 1-client PUT floor (2 fsync p50 + 2 RTT) %s ms\n' \
    "$when" "$5" "$1" "$2" "$3" "$4" "$(awk -v f="$1" -v r="$4" 'BEGIN { printf "%.3f", 2 * f + 2 * r / 1000 }')"
done
if want_systems ours-tls; then
  echo
  echo "TLS on both ports against plain HTTP, same binary, same run (ours-tls: REST over HTTPS without client"
  echo "certificates, which wrk cannot present; peers over mutual TLS; rustls with ring):"
  printf '%-18s %7s | %9s %7s %7s | %9s %7s %7s | %9s\n' operation clients "plain r/s" p50ms p99ms "TLS r/s" p50ms p99ms TLS/plain
  printf '%s\n' "$(printf '%.0s-' {1..86})"
  for k in "PUT:$CONNECTIONS:put" "PUT:1:put1" "GET linearizable:$CONNECTIONS:get" "GET local/stale:$CONNECTIONS:getlocal"; do
    IFS=: read -r label clients key <<<"$k"
    printf '%-18s %7s | %s | %s | %s\n' "$label" "$clients" "$(cell "${RES[ours:$key]-}")" \
      "$(cell "${RES[ours-tls:$key]-}")" "$(ratio "${RES[ours-tls:$key]-}" "${RES[ours:$key]-}")"
  done
fi
for s in ours ours-tls etcd orig; do
  want_systems "$s" || continue
  fl=${INFO[$s:floor]-}
  p50=$(field "${RES[$s:put1]-}" p50_ms)
  [[ -n $fl && -n $p50 ]] || continue
  printf '1-client PUT, %-4s: p50 %s ms; floor around it (2 fsync p50 + 2 RTT) %s ms; p50/floor %s\n' \
    "$s" "$p50" "$fl" "$(awk -v a="$p50" -v b="${fl%% *}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
echo
printf '%-6s %8s %14s %18s %20s\n' system leader "idle RSS MiB" "RSS after, MiB" "disk bytes/PUT ($NODES nodes)"
for s in ours ours-tls etcd orig; do
  want_systems "$s" || continue
  mib() { [[ -n ${1-} ]] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo n/a; }
  printf '%-6s %8s %14s %18s %20s\n' "$s" "${INFO[$s:leader]-n/a}" "$(mib "${INFO[$s:rss_idle]-}")" \
    "$(mib "${INFO[$s:rss_loaded]-}")" "${INFO[$s:bpp]-n/a}"
done
echo "(RSS of node 1: idle = just started, empty; after = after all runs with $KEYS keys. bytes/PUT = write_bytes of /proc/PID/io summed over the $NODES nodes during the ${CONNECTIONS}-client PUT run / its PUTs.)"
errs=""
for k in "${!RES[@]}"; do
  r=${RES[$k]}
  [[ -z $r ]] && continue
  for e in err_connect err_read err_write err_status err_timeout; do
    [[ $(field "$r" "$e") == 0 ]] || errs+="  $k: $(grep -oE 'requests=[0-9]+ .*' <<<"$r")"$'\n'
  done
done
if [[ -n $errs ]]; then echo; echo "runs with errors:"; printf '%s' "$errs" | sort -u; fi
