#!/usr/bin/env bash
# A small Procfile runner that, unlike honcho or ultraman, can stop and restart one process of a
# running cluster (the README's fault-tolerance walk-through needs that; goreman users can use
# `goreman run stop raftexample2` instead), and that says so when a node does not come up.
#
#   ./cluster.sh start [name...]       start every Procfile entry (or the named ones) in the
#                                      background; wait until each serves as a member, or
#                                      exits: then show the end of its log and exit non-zero
#   ./cluster.sh start name... --join  start the named ones with --join added, this time only
#                                      (a member back from a lost disk, removed and added back)
#   ./cluster.sh run name command...   start one more process under a name of its own (a node
#                                      that joins the cluster), waiting the same way; later
#                                      `start name` starts it again with the same command
#   ./cluster.sh stop [name...]        stop them (SIGTERM, by the PID recorded at start) and wait
#   ./cluster.sh status                which entries run, which were stopped, and which exited
#                                      on their own (a removed member, say), with their last
#                                      log line
#   ./cluster.sh forget name...        drop names given to `run` (their command and log)
#   ./cluster.sh logs [name]           follow the logs
#   ./cluster.sh -f file command...    the same with another Procfile, as goreman -f and
#                                      honcho -f take it: ./cluster.sh -f Procfile.tls start
#
# A node serves as a member once GET /-/status answers 200, lists it among the members and
# names a leader; one that has named none for three election timeouts is said to have started
# but named no leader (the others may be down). A node started with --join answers before the
# members have admitted it; one that the cluster removed, started again, answers but exits
# within seconds (if it was removed while stopped, it lists itself until then, but hears no
# leader, and may exit only after that settle). One that does not list itself within
# CLUSTER_START_TIMEOUT is left running (a node not yet added waits for its POST; one that
# hears a leader was admitted, and still catches up), and shown with its last answer and the
# end of its log.
# PIDs and logs live in .cluster/ next to this script. A node's REST address is read from its
# --port (9121 if absent) and --listen-host flags; a node with --cert-file speaks HTTPS, and is
# asked with curl, presenting its --cert-file and --key-file as the client certificate (one its
# --trusted-ca-file accepts, as Procfile.tls's do), without checking the node's certificate.
# These flags are read as bash reads the command, quotes and escapes included, but of its
# expansions only a leading ~ and $HOME are made: write them without any other $VAR or $(...).
# CLUSTER_START_TIMEOUT and CLUSTER_STOP_TIMEOUT (seconds, default 60 and 30) bound each wait
# (that for a leader too, counted from the nodes' start, whatever their --tick-ms).
# Needs bash, coreutils, grep, sed and awk (and curl for HTTPS nodes).
set -euo pipefail
# An option, not a variable in the environment: as with goreman and honcho, each command says
# which Procfile it reads, and an exported variable left over from the TLS walk-through would
# silently start the plain Procfile's nodes with the TLS commands, or the other way round.
procfile=Procfile
if [ "${1:-}" = -f ]; then
  [ $# -ge 2 ] || { echo "-f takes a Procfile: ./cluster.sh -f Procfile.tls start" >&2; exit 2; }
  [ -f "$2" ] || { echo "no such Procfile: $2" >&2; exit 2; }
  # Named from where the user stands; the nodes' commands run next to this script.
  case "$2" in /*) procfile=$2 ;; *) procfile=$PWD/$2 ;; esac
  shift 2
fi
self=$(basename "$0")
cd "$(dirname "$0")"
state=.cluster
mkdir -p "$state"
start_timeout=${CLUSTER_START_TIMEOUT:-60}
stop_timeout=${CLUSTER_STOP_TIMEOUT:-30}

# A Procfile of no entries, or none at all, is no error: grep's status 1 (or 2) would end a
# caller's pipeline under `set -e` and `pipefail` (`stop` then stopped nothing, the nodes of
# `run` included). `start` says when it finds nothing to start.
procfile_entries() {
  [ -e "$procfile" ] || return 0
  { grep -E '^[A-Za-z0-9_-]+:' "$procfile" || [ $? -eq 1 ]; } |
    sed -E 's/^([^:]+):[[:space:]]*(.*)$/\1\t\2/'
}

# awk reads to the end, where grep -q (and a grep that takes output to /dev/null as -q) quits at
# the first match: procfile_entries, still writing, then fails on SIGPIPE, and under pipefail
# so does the function (review 113 NIT-4).
is_procfile_entry() {
  procfile_entries | awk -F'\t' -v name="$1" '$1 "" == name "" { found = 1 } END { exit !found }'
}

# Names started with `run`: they have their command in .cluster/<name>.cmd.
run_names() {
  local f
  for f in "$state"/*.cmd; do
    if [ -e "$f" ]; then basename "$f" .cmd; fi
  done
}

# The named entries, or by default the Procfile's (and for stop/status also `run`'s, and any
# other with a PID record: a node another Procfile started, with -f, is stopped all the same).
names() {
  local with_run=$1 f
  shift
  if [ $# -gt 0 ]; then printf '%s\n' "$@"; return; fi
  {
    procfile_entries | cut -f1
    if [ "$with_run" = with-run ]; then
      run_names
      for f in "$state"/*.pid; do
        if [ -e "$f" ]; then basename "$f" .pid; fi
      done
    fi
  } | awk '!seen[$0]++'
}

# Exits 2, naming what is known, unless every name given is a Procfile entry or an earlier `run`
# (or, with $1 = recorded, has a PID record or a log: a node another Procfile started, which
# `status` lists): a typo must not pass for a node that was stopped, or stop nothing while it
# looks done. With $1 = command, only names with a command to start pass.
known_or_exit() {
  local how=$1 name known
  shift
  for name; do
    if command_of "$name" >/dev/null; then continue; fi
    if [ "$how" = recorded ]; then
      if [ -e "$state/$name.pid" ] || [ -e "$state/$name.log" ]; then continue; fi
      known=$(names with-run | paste -sd' ')
    else
      known=$( (procfile_entries | cut -f1; run_names) | paste -sd' ')
    fi
    echo "no Procfile entry (or earlier 'run') named $name; known: ${known:-none}" >&2
    exit 2
  done
}

command_of() {
  local line
  # Compared as strings (""): awk compares two numeric-looking fields as numbers, and the
  # entry 01 would have been named by 1.
  line=$(procfile_entries | awk -F'\t' -v n="$1" '$1 "" == n "" { print $2 }')
  if [ -z "$line" ] && [ -f "$state/$1.cmd" ]; then line=$(cat "$state/$1.cmd"); fi
  [ -n "$line" ] && printf '%s\n' "$line"
}

# "<state> <start time>" of a process, from /proc (Linux); fails if there is no such process.
proc_stat() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The command name, field 2, may hold spaces: read the fields after its closing parenthesis.
  read -r -a fields <<<"${stat##*) }"
  echo "${fields[0]} ${fields[19]}"
}

# Whether entry $1 runs: its recorded PID is alive, has not exited unreaped (a zombie, as under
# a container's init that never reaps), and is the process this script started, not a later one
# that reused the PID (so `stop` never signals a stranger).
running() {
  local pid started now
  [ -f "$state/$1.pid" ] || return 1
  read -r pid started <"$state/$1.pid" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r /proc/self/stat ]; then
    now=$(proc_stat "$pid") || return 1
    [ "${now%% *}" != Z ] && [ "${now#* }" = "${started:-}" ]
  fi
}

pid_of() { read -r pid _ <"$state/$1.pid" && echo "$pid"; }

# The words of command line $1 as bash reads them, each followed by a NUL, without their
# quotes and backslashes: a path with spaces is one word, whether a Procfile quotes it ("a b",
# 'a b', $'a b', $"a b") or `run` escaped it (a\ b; $'jos\303\251' or $'a\tb' under a C
# locale, for a byte outside ASCII or a control character). Of what bash expands when it runs
# the line, a ~ that begins a word and $HOME (${HOME}) are expanded here too (a certificate
# under ~/ is asked with the file the node reads); any other $VAR, $(...), glob or # comment
# is read as written.
words_of() {
  local line=$1 i c word='' quote='' in_word=''
  for ((i = 0; i < ${#line}; i++)); do
    c=${line:i:1}
    if [ "$quote" = "\$'" ]; then
      case "$c" in
        "'") quote='' ;;
        '\') ansi_c_escape ;;
        *) word+=$c ;;
      esac
      continue
    fi
    if [ -n "$quote" ]; then
      if [ "$c" = "$quote" ]; then
        quote=''
      elif [ "$quote$c" = '"\' ] && [[ ${line:i+1:1} == [\"\\\$\`] ]]; then
        # Within double quotes, a backslash escapes these only.
        i=$((i + 1))
        word+=${line:i:1}
      elif [ "$quote$c" = '"$' ] && home_here; then
        :
      else
        word+=$c
      fi
      continue
    fi
    case "$c" in
      ' ' | $'\t')
        if [ -n "$in_word" ]; then printf '%s\0' "$word"; fi
        word='' in_word=''
        continue ;;
      "'" | '"') quote=$c ;;
      '\')
        i=$((i + 1))
        word+=${line:i:1} ;;
      '$')
        if [ "${line:i+1:1}" = "'" ]; then
          quote="\$'" i=$((i + 1))
        elif [ "${line:i+1:1}" = '"' ]; then
          # $"...": bash translates it by the locale's messages, of which a Procfile has none.
          quote='"' i=$((i + 1))
        elif ! home_here; then
          word+=$c
        fi ;;
      '~')
        # ~ alone or before a /, at a word's start: bash's tilde expansion, which is not made
        # after --flag= (that is no assignment).
        if [ -z "$in_word" ] && [[ ${line:i+1:1} == [/\ $'\t'] || $((i + 1)) -eq ${#line} ]]
        then
          word+=${HOME:-}
        else
          word+=$c
        fi ;;
      *) word+=$c ;;
    esac
    in_word=1
  done
  if [ -n "$in_word" ]; then printf '%s\0' "$word"; fi
}

# For words_of: if $HOME or ${HOME} begins at ${line:i}, adds its value to word and moves i to
# its end; fails otherwise (another variable, which is read as written).
home_here() {
  local length
  if [[ ${line:i} == '${HOME}'* ]]; then
    length=7
  elif [[ ${line:i} =~ ^\$HOME([^A-Za-z0-9_]|$) ]]; then
    length=5
  else
    return 1
  fi
  word+=${HOME:-}
  i=$((i + length - 1))
}

# For words_of, within $'...': decodes the escape whose backslash is at ${line:i} onto word,
# and moves i to its end. Every escape printf %q writes, and bash's others but \cX; as in
# bash, an unknown one keeps its backslash.
ansi_c_escape() {
  local rest=${line:i+1} ch
  if [[ $rest =~ ^([0-7]{1,3}|x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[abeEfnrtv]) ]]
  then
    # printf's format takes the same escapes.
    printf -v ch "\\${BASH_REMATCH[1]}"
    word+=$ch
    i=$((i + ${#BASH_REMATCH[1]}))
    return
  fi
  case "${rest:0:1}" in
    \\ | \' | \" | \?) word+=${rest:0:1} ;;
    *) word+="\\${rest:0:1}" ;;
  esac
  i=$((i + 1))
}

# The value command line $1 gives flag $2 (--$2 or -$2, as Go's flag package takes it, the
# value after a space or an =): the last one's, or nothing if it has none.
flag_value() {
  local words prev='' arg value=''
  mapfile -d '' -t words < <(words_of "$1")
  for arg in "${words[@]}"; do
    case "$prev" in "--$2" | "-$2") value=$arg ;; esac
    case "$arg" in "--$2="* | "-$2="*) value=${arg#*=} ;; esac
    prev=$arg
  done
  printf '%s\n' "$value"
}

# The URL command line $1's REST API answers on: its --listen-host (loopback for a wildcard)
# and --port (9121 if absent), over HTTPS if it has a certificate (the binary's rule).
rest_url() {
  local host port scheme=http
  host=$(flag_value "$1" listen-host)
  port=$(flag_value "$1" port)
  case "$host" in '' | 0.0.0.0 | :: | '[::]') host=127.0.0.1 ;; esac
  case "$host" in *:*) host=${host#[} host="[${host%]}]" ;; esac
  if [ -n "$(flag_value "$1" cert-file)" ]; then scheme=https; fi
  echo "$scheme://$host:${port:-9121}"
}

# Whether command line $1 has its node join (the binary's forms: --join or -join, alone or with
# a value as Go's flag package takes one): "true", "false", or nothing if it does not say.
join_of() {
  local words i value=''
  mapfile -d '' -t words < <(words_of "$1")
  for ((i = 0; i < ${#words[@]}; i++)); do
    case "${words[i]}" in
      --join | -join)
        value=true
        case "${words[i + 1]:-}" in 0 | f | F | FALSE | false | False) value=false ;; esac ;;
      --join=* | -join=*)
        case "${words[i]#*=}" in
          1 | t | T | TRUE | true | True) value=true ;;
          *) value=false ;;
        esac ;;
    esac
  done
  echo "$value"
}

# GET path $2 of the REST API at $1 (from command line $3, whose TLS files HTTPS uses): prints
# the answer's status code on a line, then its body; or fails, printing why there was none.
get() {
  case "$1" in
    https://*) get_tls "$@" ;;
    *) get_plain "$@" ;;
  esac
}

# [get] over plain HTTP, through bash's own /dev/tcp.
get_plain() {
  local addr=${1#http://} host port
  port=${addr##*:} host=${addr%:*}
  host=${host#[} host=${host%]}
  (
    exec 3<>"/dev/tcp/$host/$port" || { echo "no connection to $host:$port"; exit 1; }
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' \
      "$2" "$host" "$port" >&3
    IFS= read -r -t 2 status_line <&3 || { echo "no answer within 2 s"; exit 1; }
    if ! [[ $status_line =~ ^HTTP/1\.[01]\ ([0-9][0-9][0-9]) ]]; then
      echo "not HTTP: ${status_line%$'\r'}"
      exit 1
    fi
    echo "${BASH_REMATCH[1]}"
    while IFS= read -r -t 2 line <&3 && [ -n "${line%$'\r'}" ]; do :; done
    while IFS= read -r -t 2 line <&3 || [ -n "$line" ]; do printf '%s\n' "${line%$'\r'}"; done
  ) 2>/dev/null
}

# [get] over HTTPS, with curl: presenting the node's own certificate, as --client-cert-auth
# requires of every client, and taking the node's on trust (--insecure): what is asked is
# whether the process started here serves, on the port its own command gave, not who it is.
# Checked against --trusted-ca-file (the clients' CA, not necessarily the node's) and the
# address asked (127.0.0.1 for a wildcard --listen-host), a node whose certificate names only
# a host name, or that another CA signed, never counted as serving, though it served.
get_tls() {
  local cert key out args=(-sS --max-time 2 -w '\n%{http_code}' --insecure)
  cert=$(flag_value "$3" cert-file)
  key=$(flag_value "$3" key-file)
  args+=(--cert "$cert")
  if [ -n "$key" ]; then args+=(--key "$key"); fi
  if ! out=$(curl "${args[@]}" "$1$2" 2>&1); then
    # curl's reason: its first line, which names it (the others advise).
    printf '%s\n' "$out" | sed -n '/^curl: /{p;q;}'
    return 1
  fi
  printf '%s\n%s\n' "${out##*$'\n'}" "${out%$'\n'*}"
}

# Whether answer $1 of [get] to GET /-/status says the node serves as a member: 200, and its
# own id (the JSON's first field) among its members. A joining node has none until the members
# admit it; one whose log removes it lists the others only, and exits within seconds (unless a
# leader says it was added back). The JSON is one line, where text in a value that looks like
# a field is escaped (\"id\":), so only the fields match.
serves_as_member() {
  local code=${1%%$'\n'*} body=${1#*$'\n'}
  [ "$code" = 200 ] && [[ $body =~ ^\{\"id\":([0-9]+), ]] &&
    [[ $body == *"{\"id\":${BASH_REMATCH[1]},\"url\":"* ]]
}

# The leader that answer $1 of [get] to GET /-/status names (its third field), if any: a
# joining node hears one only once the members admitted it (until then it refuses their
# messages), and lists itself only once it has applied its own addition, which comes after
# the whole log, or the leader's snapshot: for a large state, after the timeout.
leader_in() {
  local code=${1%%$'\n'*} body=${1#*$'\n'} fields='^\{"id":[0-9]+,"role":"[^"]*","leader":'
  [ "$code" = 200 ] && [[ $body =~ $fields([1-9][0-9]*), ]] && echo "${BASH_REMATCH[1]}"
}

# Answer $1 of [get] to GET /-/status, told in a line: the members, if it lists them.
told() {
  local code=${1%%$'\n'*} body=${1#*$'\n'} members
  if [ "$code" = 200 ] && [[ $body == *'"members":['* ]]; then
    members=${body#*\"members\":}
    # The array ends where the next field begins; a URL holds no `],"`.
    echo "200, members ${members%%],\"*}] (not itself)"
  else
    printf '%s' "$1" | tr '\n' ' ' | cut -c1-300
    echo
  fi
}

# The lines entry $1 logged since its log was $2 bytes long, indented.
log_since() {
  tail -c +"$(($2 + 1))" "$state/$1.log" | tail -n "${3:-15}" | sed 's/^/    /'
}

# Starts entry $1 in the background with command $2; records its PID and start time. Under
# nohup: the nodes stay in this script's process group, which a terminal that closes (an ssh
# session ending, `script`, a CI step's pty) sends SIGHUP, and they are meant to outlive it.
# The record stays after the process exits on its own, so that `status` can tell so; `stop`
# removes it.
spawn() {
  local name=$1 line=$2 pid
  touch "$state/$name.log"
  log_start[$name]=$(wc -c <"$state/$name.log")
  nohup bash -c "exec $line" >>"$state/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(proc_stat "$pid" 2>/dev/null | cut -d' ' -f2)" >"$state/$name.pid"
}

# Says that entry $1, PID $2, exited before $3: with its status and the end of its log.
say_exited() {
  local code=0
  wait "$2" 2>/dev/null || code=$?
  {
    echo "$1 exited (status $code) before $3; the end of $state/$1.log:"
    log_since "$1" "${log_start[$1]}"
  } >&2
}

# Waits until entry $1, started with command line $2, lists itself among its members (0); or
# until it exits (1) or has not by $SECONDS = $3, the start's deadline (2: it is left running,
# as a node not yet added must wait for its POST, and one admitted may still be catching up);
# says why but for 0, with the end of its log.
wait_listed() {
  local name=$1 line=$2 deadline=$3 pid url code answer='' before silent joins leader
  pid=$(pid_of "$name")
  url=$(rest_url "$line")
  joins=$(join_of "$line")
  before="it served as a member"
  silent="did not serve as a member"
  if [ "$joins" = true ]; then
    before="the members admitted it"
    silent="was not admitted by the members"
  fi
  while :; do
    if ! running "$name"; then
      say_exited "$name" "$pid" "$before"
      return 1
    fi
    if answer=$(get "$url" /-/status "$line") && serves_as_member "$answer"; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      if [ "$joins" = true ] && leader=$(leader_in "$answer"); then
        silent="has not applied its own addition within ${start_timeout} s, though the members"
        silent+=" admitted it (it hears leader $leader): it is still catching up"
      else
        silent+=" within ${start_timeout} s"
      fi
      {
        echo "$name (pid $pid) is running but $silent; it is left running" \
          "(./$self stop $name stops it)"
        echo "  its last answer to GET $url/-/status: $(told "$answer")"
        echo "  the end of $state/$name.log:"
        log_since "$name" "${log_start[$name]}"
      } >&2
      return 2
    fi
    sleep 0.1
  done
}

# How many ticks a node that lists itself among its members may go without hearing a leader
# before it counts as started all the same (the other members may be down), said so: three of
# its longest election timeouts (20 ticks each). A member removed while it was stopped lists
# itself as well (its log does not hold its removal) but hears no leader, as a leader sends to
# the members it counts only; it exits once a member answers its campaign 410 Gone: at its
# first campaign, or at its next when the whole cluster starts at once (a member answers so
# only once it follows a leader), or later still if the others' election needs a second round.
# Two timeouts left no margin for that; a third costs 2 s (at the default tick) only to a node
# started with no leader to hear, whose start is slow already.
settle_ticks=60

# Waits until entry $1 (command line $2), which lists itself among its members, hears a leader,
# or until second $3 (of $SECONDS) without one, then says it started (0): in the second case
# saying that it named no leader since second $4, its start, as a member removed while it was
# stopped may yet exit; or until it exits (1), and says so, with the end of its log. It is
# asked at least once, however late.
wait_counted() {
  local name=$1 line=$2 by=$3 since=$4 pid url answer started
  pid=$(pid_of "$name")
  url=$(rest_url "$line")
  started="started $name (pid $pid, $url, log $state/$name.log)"
  while :; do
    if ! running "$name"; then
      say_exited "$name" "$pid" "it served as a member"
      return 1
    fi
    if answer=$(get "$url" /-/status "$line") && leader_in "$answer" >/dev/null; then
      echo "$started"
      return 0
    fi
    if [ "$SECONDS" -ge "$by" ]; then break; fi
    sleep 0.1
  done
  echo "$started; it has named no leader in $((SECONDS - since)) s: the other members may" \
    "be down (./$self status shows whether it still runs)"
}

# The tick command line $1 gives (--tick-ms), in ms: 100 if absent. A sign clap takes (+100)
# and leading zeros are dropped; a value the node refuses (over 60000, not a number) reads as
# the default, as that node exits at its start.
tick_of() {
  local tick
  tick=$(flag_value "$1" tick-ms)
  tick=${tick#+}
  if [[ $tick =~ ^0*([0-9]{1,5})$ ]]; then echo $((10#${BASH_REMATCH[1]})); else echo 100; fi
}

# Command line $2 of entry $1 with --join: as it is if it joins already, or with --join added.
with_join() {
  case "$(join_of "$2")" in
    true) echo "$2" ;;
    false) echo "$1's command says --join=false: edit it rather than add --join" >&2; return 1 ;;
    *) echo "$2 --join" ;;
  esac
}

# Starts the given entries (all at once: a node cannot elect a leader alone), then waits for each
# to list itself, then for those to hear a leader, within one settle counted from when the last
# listed itself (not one each in turn: with no leader, each would add its own), and within
# CLUSTER_START_TIMEOUT of their start. With $1 = --join, each with --join added, this time only.
start_entries() {
  local join=$1 name line started=() listed=() exited=0 waiting=0 code spawned from by limit
  local -A lines
  shift
  known_or_exit command "$@"
  # Every command is settled before any starts: a refused --join leaves nothing running.
  for name; do
    line=$(command_of "$name")
    if running "$name"; then
      echo "$name is already running (pid $(pid_of "$name"))"
      continue
    fi
    if [ -n "$join" ]; then line=$(with_join "$name" "$line") || exit 2; fi
    if [[ $(rest_url "$line") == https://* ]] && ! command -v curl >/dev/null; then
      echo "$name speaks HTTPS (--cert-file): $self asks it with curl, which is not installed" >&2
      exit 2
    fi
    lines[$name]=$line
    started+=("$name")
  done
  spawned=$SECONDS
  # One deadline for all: each with a timeout of its own, N nodes that never list themselves
  # held start for N times the timeout.
  limit=$((spawned + start_timeout))
  for name in "${started[@]}"; do spawn "$name" "${lines[$name]}"; done
  for name in "${started[@]}"; do
    code=0
    wait_listed "$name" "${lines[$name]}" "$limit" || code=$?
    case "$code" in
      0) listed+=("$name") ;;
      1) exited=$((exited + 1)) ;;
      2) waiting=$((waiting + 1)) ;;
    esac
  done
  from=$SECONDS
  # A slow tick must not hold start past the timeout either (--tick-ms 2000: a settle of 121 s).
  for name in ${listed[@]+"${listed[@]}"}; do
    # Rounded up, and a second more: $SECONDS counts whole seconds.
    by=$((from + (settle_ticks * $(tick_of "${lines[$name]}") + 999) / 1000 + 1))
    if [ "$by" -gt "$limit" ]; then by=$limit; fi
    wait_counted "$name" "${lines[$name]}" "$by" "$spawned" || exited=$((exited + 1))
  done
  if [ "$exited" -gt 0 ]; then echo "$exited of ${#started[@]} did not start (exited)" >&2; fi
  if [ "$waiting" -gt 0 ]; then
    echo "$waiting of ${#started[@]} left running without serving as a member yet" >&2
  fi
  if [ $((exited + waiting)) -gt 0 ]; then
    echo "./$self status shows what runs" >&2
    exit 1
  fi
}

# SIGTERMs entry $1 if it runs (by its recorded PID); if not, says so when $2 is `named`, and
# fails. The record of one that exited on its own stays, for `status`.
signal_entry() {
  if running "$1"; then
    kill -TERM "$(pid_of "$1")"
  else
    if [ "${2:-}" = named ]; then echo "$1 is not running"; fi
    return 1
  fi
}

# Waits until a signalled entry $1 has exited (0), or says that it has not (1).
wait_stopped() {
  local name=$1 pid deadline
  pid=$(pid_of "$name")
  deadline=$((SECONDS + stop_timeout))
  while running "$name"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name (pid $pid) did not stop within ${stop_timeout} s of SIGTERM;" \
        "it is still running" >&2
      return 1
    fi
    sleep 0.05
  done
  rm -f "$state/$name.pid"
  echo "stopped $name"
}

# "; its log ends: <its last line>", for an entry that exited on its own (nothing without a log).
last_words() {
  local last
  last=$(tail -n 1 "$state/$1.log" 2>/dev/null) || return 0
  if [ -n "$last" ]; then echo "; its log ends: $last"; fi
}

declare -A log_start
cmd=${1:-}
shift || true
case "$cmd" in
  start)
    join='' named=()
    for arg; do
      case "$arg" in
        --join) join=--join ;;
        -f) echo "-f comes before the command: ./$self -f Procfile.tls start" >&2; exit 2 ;;
        -*) echo "unknown option $arg; usage: ./cluster.sh start [name...] [--join]" >&2; exit 2 ;;
        *) named+=("$arg") ;;
      esac
    done
    if [ -n "$join" ] && [ ${#named[@]} -eq 0 ]; then
      # The whole cluster joining: no member would be left to admit them.
      echo "--join starts named entries only: ./cluster.sh start name... --join" >&2
      exit 2
    fi
    # A typo, or nothing to start, is told before anything is built or started.
    known_or_exit command ${named[@]+"${named[@]}"}
    mapfile -t todo < <(names procfile-only ${named[@]+"${named[@]}"})
    if [ ${#todo[@]} -eq 0 ] && [ ! -e "$procfile" ]; then
      echo "there is no Procfile here (use -f FILE), so there is nothing to start" >&2
      exit 2
    fi
    if [ ${#todo[@]} -eq 0 ]; then
      echo "$procfile has no entries (name: command), so there is nothing to start" >&2
      exit 2
    fi
    [ -x ./target/release/raftexample ] || cargo build --release
    start_entries "$join" "${todo[@]}" ;;
  run)
    [ $# -ge 2 ] || { echo "usage: ./cluster.sh run name command..." >&2; exit 2; }
    name=$1; shift
    if ! [[ $name =~ ^[A-Za-z0-9_-]+$ ]]; then
      echo "a name is letters, digits, - and _: $name" >&2
      exit 2
    fi
    if is_procfile_entry "$name"; then
      echo "$name is a Procfile entry: ./cluster.sh start $name" >&2
      exit 2
    fi
    if running "$name"; then
      echo "$name is already running (pid $(pid_of "$name"))" >&2
      exit 1
    fi
    printf '%q ' "$@" >"$state/$name.cmd"
    start_entries '' "$name" ;;
  stop)
    # Signal them all first, then wait: the nodes stop side by side.
    known_or_exit recorded "$@"
    mapfile -t todo < <(names with-run "$@")
    if [ $# -gt 0 ]; then named=named; else named=; fi
    signalled=()
    for name in "${todo[@]}"; do
      if signal_entry "$name" "$named"; then signalled+=("$name"); fi
    done
    failed=0
    for name in ${signalled[@]+"${signalled[@]}"}; do wait_stopped "$name" || failed=1; done
    exit "$failed" ;;
  status)
    for name in $(names with-run); do
      if running "$name"; then
        echo "$name running (pid $(pid_of "$name"))"
      elif [ -f "$state/$name.pid" ]; then
        # Its record stays when it ends on its own: a removed member, a crash, a refused start.
        echo "$name exited on its own (not stopped by ./$self)$(last_words "$name")"
      else
        echo "$name stopped"
      fi
    done ;;
  forget)
    [ $# -gt 0 ] || { echo "usage: ./$self forget name..." >&2; exit 2; }
    known_or_exit recorded "$@"
    # Every name is checked before any is forgotten.
    for name; do
      if is_procfile_entry "$name"; then
        echo "$name is a Procfile entry: listed as long as the Procfile has it" >&2
        exit 2
      fi
      if running "$name"; then
        echo "$name is running (pid $(pid_of "$name")): ./$self stop $name first" >&2
        exit 1
      fi
    done
    for name; do
      rm -f "$state/$name.cmd" "$state/$name.pid" "$state/$name.log"
      echo "forgot $name"
    done ;;
  logs)
    known_or_exit recorded "$@"
    # A log exists once a node has started: for one that has not, say so, not tail's
    # "cannot open".
    if [ $# -gt 0 ]; then
      if [ ! -e "$state/$1.log" ]; then
        echo "$1 has not been started, so it has no log yet: ./cluster.sh start $1" >&2
        exit 1
      fi
      tail -f "$state/$1.log"
    else
      logs=("$state"/*.log)
      if [ ! -e "${logs[0]}" ]; then
        echo "no node has been started, so there is no log yet: ./cluster.sh start" >&2
        exit 1
      fi
      tail -f "${logs[@]}"
    fi ;;
  *)
    sed -n '2,/^[^#]/{/^#/p}' "$self"
    exit 2 ;;
esac
