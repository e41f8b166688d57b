#!/usr/bin/env bash
# Herald's benchmarks: ingest (wrk against /hooks/flow, durable commit) next to a bare actix-web
# ceiling, end to end (N events delivered to a local webhook sink), and idle (start-up time and
# RSS). Every figure is the median of several runs, and each is set against a baseline
# measured in the same run. Writes bench/results/latest.md (the table) and latest.jsonl (every
# run's raw figures).
#
#   bash bench/run.sh
#
# Knobs (environment): BENCH_RUNS (5), BENCH_DURATION (10, seconds of wrk per measurement),
# BENCH_WARMUP (2), BENCH_CONNECTIONS (64), BENCH_WRK_THREADS (2), BENCH_E2E_EVENTS (20000),
# BENCH_E2E_CONCURRENCY (64), BENCH_IDLE_SECONDS (3), BENCH_TIME_LIMIT (900, seconds for the
# measurements; the build is not counted), BENCH_SKIP_BUILD (unset), BENCH_HERALD (another
# herald binary to measure), BENCH_BUILT_FROM (what to call it), BENCH_RESULTS (where to write).
#
# Everything runs on 127.0.0.1 on ports picked here; every process started here is stopped on
# exit, and every step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${BENCH_RUNS:-5}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
E2E_EVENTS=${BENCH_E2E_EVENTS:-20000}
E2E_CONC=${BENCH_E2E_CONCURRENCY:-64}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-3}
TIME_LIMIT=${BENCH_TIME_LIMIT:-900}
export BENCH_BODY=$ROOT/tests/fixtures/inbound/flow-task-fail.json
CONFIG=$ROOT/bench/herald.toml
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HERALD=${BENCH_HERALD:-$TARGET/release/herald}
CEILING=$TARGET/release/examples/bench_ceiling
SINK=$TARGET/release/examples/bench_sink
POST=$TARGET/release/examples/bench_post

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools and build

if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v wrk >/dev/null || die "wrk is not installed"

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  log "building (cargo build --release --examples --bins)"
  cargo build --release --examples --bins
fi
for b in "$HERALD" "$CEILING" "$SINK" "$POST"; do
  [ -x "$b" ] || die "$b is missing: run cargo build --release --examples --bins"
done
BUILT_FROM=${BENCH_BUILT_FROM:-"$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src/')"}

# ---------------------------------------------------------------- processes

mkdir -p "$TARGET" "$RESULTS"
WORK=$(mktemp -d "$TARGET/bench.XXXXXX")
PIDS=()

# Every run uses these copies, so a rebuild during the benchmark changes nothing.
mkdir "$WORK/bin"
cp "$HERALD" "$WORK/bin/herald"   # BENCH_HERALD may have any name
cp "$CEILING" "$SINK" "$POST" "$WORK/bin/"
HERALD=$WORK/bin/herald CEILING=$WORK/bin/bench_ceiling SINK=$WORK/bin/bench_sink POST=$WORK/bin/bench_post

cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ "$status" = 0 ]; then
    rm -rf "$WORK"
  else
    # Keep the servers' logs of a failed run; drop the stores.
    rm -rf "$WORK"/data-*
    log "the servers' logs are kept in ${WORK#"$ROOT"/}"
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

START_SECONDS=$SECONDS
check_time() {
  if (( SECONDS - START_SECONDS > TIME_LIMIT )); then
    die "over the time limit of ${TIME_LIMIT}s (BENCH_TIME_LIMIT)"
  fi
}

# A port nothing listens on (checked by connecting to it), below the kernel's range of ports for
# outgoing connections, so no client socket can be holding it.
read -r EPHEMERAL_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LO=10000 PORT_HI=$(( EPHEMERAL_LO > 12000 ? EPHEMERAL_LO : 60000 ))
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$(( PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO) ))
    [[ $USED_PORTS == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# spawn NAME CMD...: starts CMD in the background, logging to $WORK/NAME.log; sets SPAWNED_PID
# and SPAWNED_US (microseconds since the epoch, just before the start).
spawn() {
  local name=$1
  shift
  SPAWNED_US=$(date +%s%6N)
  "$@" >"$WORK/$name.log" 2>&1 &
  SPAWNED_PID=$!
  PIDS+=("$SPAWNED_PID")
}

# stop PID: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid=$1 keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# launch NAME PATH CMD...: starts a server on a free port (CMD's arguments say @PORT@ where the
# port goes; BENCH_HERALD_PORT carries it too) and waits until GET PATH answers 200. Sets
# LAUNCHED_PID, LAUNCHED_PORT and LAUNCHED_MS (milliseconds from spawn to that first answer).
# A server that exits before answering (its port was taken after all) is tried on another port.
launch() {
  local name=$1 path=$2 attempt port a args
  shift 2
  for attempt in 1 2 3; do
    port=$(free_port)
    args=()
    for a in "$@"; do args+=("${a//@PORT@/$port}"); done
    BENCH_HERALD_PORT=$port spawn "$name" "${args[@]}"
    if LAUNCHED_MS=$(timeout 40 "$POST" ready --url "http://127.0.0.1:$port$path" --since-us "$SPAWNED_US" \
      --pid "$SPAWNED_PID" --timeout 30 2>>"$WORK/$name.ready"); then
      LAUNCHED_PID=$SPAWNED_PID
      LAUNCHED_PORT=$port
      return 0
    fi
    log "  $name did not start on port $port (attempt $attempt): $(tail -1 "$WORK/$name.ready")"
    stop "$SPAWNED_PID"
  done
  tail -20 "$WORK/$name.log" >&2
  die "$name did not start"
}

# alive PID: true while the process runs (and is not a zombie).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ sub(/^.*\) /, ""); exit $1 !~ /^[ZX]/ }' "/proc/$1/stat"; }

# status_kb PID FIELD: VmRSS or VmHWM of a process, in kB.
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# thread_ticks PID: the CPU time (clock ticks) of a process's threads, grouped as
# "accept store delivery other" (actix's workers, Herald's store writer, its delivery worker,
# everything else), on one line.
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s\t' "$(cat "$t/comm" 2>/dev/null)"
    sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }'
  done | awk -F'\t' '$2 != "" {
      g = $1 ~ /^actix-server/ ? 1 : $1 == "herald-store" ? 2 : $1 == "herald-delivery" ? 3 : 4
      c[g] += $2
    } END { printf "%d %d %d %d\n", c[1], c[2], c[3], c[4] }'
}

# machine_ticks: the machine's "idle+iowait total" CPU time (clock ticks, all cores) from /proc/stat.
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $5 + $6, t; exit }' /proc/stat; }

# children_ticks VAR: sets VAR to the CPU time (clock ticks) of this shell's finished children.
# (Not in a command substitution: that would read a new subshell, which has none.)
children_ticks() {
  local stat f
  read -r stat <"/proc/$BASHPID/stat"
  read -ra f <<<"${stat##*) }"
  printf -v "$1" '%d' "$(( f[13] + f[14] ))"
}

# json_num JSON KEY: a top-level number from a one-line JSON object.
json_num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
calc() { awk "BEGIN { printf \"$1\\n\", $2 }"; }

RAW=$WORK/raw.jsonl
: >"$RAW"
record() { echo "$1" >>"$RAW"; }

start_sink() {
  launch "sink-$1" /stats "$SINK" "127.0.0.1:@PORT@" 1
  SINK_PID=$LAUNCHED_PID SINK_PORT=$LAUNCHED_PORT
}

# start_herald TAG [CONFIG]: a fresh Herald (empty store) sending to $SINK_PORT; sets
# HERALD_PID, HERALD_PORT and HERALD_START_MS.
start_herald() {
  rm -rf "$WORK/data-$1"
  mkdir -p "$WORK/data-$1"
  # What the last server wrote and deleted reaches the disk now, not during this measurement.
  sync
  BENCH_SINK_PORT=$SINK_PORT BENCH_DATA_DIR=$WORK/data-$1 \
    launch "herald-$1" /healthz "$HERALD" serve --config "${2:-$CONFIG}"
  HERALD_PID=$LAUNCHED_PID HERALD_PORT=$LAUNCHED_PORT HERALD_START_MS=$LAUNCHED_MS
}

start_ceiling() {
  launch "ceiling-$1" /healthz "$CEILING" "127.0.0.1:@PORT@"
  CEILING_PID=$LAUNCHED_PID CEILING_PORT=$LAUNCHED_PORT CEILING_START_MS=$LAUNCHED_MS
}

# sink_count: how many requests the sink at $SINK_PORT has received.
sink_count() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT"
  printf 'GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  reply=$(timeout 5 cat <&3 || true)
  exec 3>&-
  json_num "$(tail -1 <<<"$reply")" count
}

# probe PORT PATH: one POST of the payload; prints the answer (for error messages).
probe() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n' \
    "$2" "$(wc -c <"$BENCH_BODY")" >&3
  cat "$BENCH_BODY" >&3
  reply=$(timeout 5 cat <&3 || true)
  exec 3>&-
  printf '%s\n' "$reply" | sed -n '1p;$p'
}

# wrk_run URL SECONDS: one wrk measurement; prints its one-line JSON, with wrk's own CPU time
# in clock ticks added as "wrk_ticks".
wrk_run() {
  local out before after
  children_ticks before
  out=$(timeout $(( $2 + 30 )) wrk -t"$WRK_THREADS" -c"$CONNS" -d"$2s" --timeout 5s \
    -s "$ROOT/bench/post.lua" "$1") || die "wrk failed: $out"
  children_ticks after
  out=$(sed -n 's/^WRK_JSON //p' <<<"$out")
  printf '{"wrk_ticks":%d,%s\n' "$(( after - before ))" "${out#\{}"
}

# measure WHAT FUNC ARGS...: runs one measurement. The machine is shared and its PIDs wrap
# quickly, so a server can be stopped by a signal meant for someone else: a measurement sets
# INTERRUPTED=1 when a server it started is gone, and is then made again (3 tries in all).
measure() {
  local what=$1 attempt pid
  shift
  for attempt in 1 2 3; do
    INTERRUPTED=0
    "$@"
    [ "$INTERRUPTED" = 0 ] && return 0
    log "  $what: a server exited during the measurement (try $attempt): $LAST_WORDS"
    for pid in "${PIDS[@]}"; do stop "$pid"; done
  done
  die "$what: the servers kept exiting during the measurement"
}

# gone PID NAME: true (and INTERRUPTED=1) when the server has exited.
gone() {
  alive "$1" && return 1
  INTERRUPTED=1
  LAST_WORDS=$( (grep -h -m1 -E 'SIG[A-Z]+ received|panicked|error' "$WORK/$2.log" || tail -1 "$WORK/$2.log") \
    2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200)
  return 0
}

# ingest_one NAME LOG PID URL RUN [sink]: warm up, then measure; appends the figures to the raw
# results. With "sink", also how many of the accepted events (warm-up included) had reached the
# sink when the measurement ended.
ingest_one() {
  local name=$1 log=$2 pid=$3 url=$4 run=$5 warm before after json cpu extra="" n
  local threads0 threads1 sink0=0 sink1=0 split=() machine0 machine1 m=()
  warm=$(wrk_run "$url" "$WARMUP")
  gone "$pid" "$log" && return 0
  before=$(cpu_ticks "$pid")
  threads0=$(thread_ticks "$pid")
  [ "${6:-}" = "" ] || sink0=$(cpu_ticks "$SINK_PID")
  machine0=$(machine_ticks)
  json=$(wrk_run "$url" "$DURATION")
  machine1=$(machine_ticks)
  gone "$pid" "$log" && return 0
  after=$(cpu_ticks "$pid")
  threads1=$(thread_ticks "$pid")
  [ "${6:-}" = "" ] || sink1=$(cpu_ticks "$SINK_PID")
  [ -n "$json" ] || die "no figures from wrk against $name"
  if [ "$(json_num "$json" non2xx)" != 0 ]; then
    local port=${url#http://127.0.0.1:}
    die "$name answered non-2xx: $json; one request now gets: $(probe "${port%%/*}" "/${port#*/}")"
  fi
  if [ "${6:-}" = sink ]; then
    extra="\"accepted_total\":$(( $(json_num "$warm" requests) + $(json_num "$json" requests) )),\"delivered_by_end\":$(sink_count),"
  fi
  n=$(json_num "$json" requests)
  per_req() { calc '%.1f' "($1) / $TICKS * 1000000 / $n"; }
  cpu=$(per_req "$after - $before")
  # Where the CPU went, per request: Herald's threads, the sink (when one is running) and wrk.
  read -ra split <<<"$threads0 $threads1"
  extra+="\"accept_us\":$(per_req "${split[4]} - ${split[0]}"),\"store_us\":$(per_req "${split[5]} - ${split[1]}"),"
  extra+="\"delivery_us\":$(per_req "${split[6]} - ${split[2]}"),\"other_us\":$(per_req "${split[7]} - ${split[3]}"),"
  extra+="\"sink_us\":$(per_req "$sink1 - $sink0"),\"wrk_us\":$(per_req "$(json_num "$json" wrk_ticks)"),"
  # The share of the machine's CPU time that was idle (or waiting for the disk) meanwhile.
  read -ra m <<<"$machine0 $machine1"
  extra+="\"idle_pct\":$(calc '%.1f' "100 * (${m[2]} - ${m[0]}) / (${m[3]} - ${m[1]})"),"
  json="{\"bench\":\"ingest\",\"server\":\"$name\",\"run\":$run,\"cpu_us_per_req\":$cpu,\"rss_kb\":$(status_kb "$pid" VmRSS),\"hwm_kb\":$(status_kb "$pid" VmHWM),$extra${json#\{}"
  record "$json"
  log "  ingest $name: $(calc '%.0f' "$(json_num "$json" rps)") req/s, p99 $(json_num "$json" p99_ms) ms, ${cpu} µs CPU/req"
}

# ingest_unit SERVER RUN: one server, started fresh, measured, stopped.
ingest_unit() {
  local server=$1 run=$2
  case $server in
    ceiling)
      start_ceiling "ingest-$run"
      ingest_one ceiling "ceiling-ingest-$run" "$CEILING_PID" "http://127.0.0.1:$CEILING_PORT/hooks/flow" "$run"
      stop "$CEILING_PID"
      ;;
    herald)
      start_sink "ingest-$run"
      start_herald "ingest-$run"
      ingest_one herald "herald-ingest-$run" "$HERALD_PID" "http://127.0.0.1:$HERALD_PORT/hooks/flow" "$run" sink
      stop "$HERALD_PID"
      stop "$SINK_PID"
      ;;
    paced)
      start_sink "paced-$run"
      start_herald "paced-$run" "$ROOT/bench/herald-paced.toml"
      ingest_one paced "herald-paced-$run" "$HERALD_PID" "http://127.0.0.1:$HERALD_PORT/hooks/flow" "$run" paced
      stop "$HERALD_PID"
      stop "$SINK_PID"
      ;;
    store-only)
      SINK_PORT=$(free_port)
      start_herald "store-only-$run" "$ROOT/bench/herald-store-only.toml"
      ingest_one store-only "herald-store-only-$run" "$HERALD_PID" "http://127.0.0.1:$HERALD_PORT/hooks/flow" "$run"
      stop "$HERALD_PID"
      ;;
  esac
  rm -rf "$WORK/data-ingest-$run" "$WORK/data-store-only-$run" "$WORK/data-paced-$run"
}

# e2e_unit MODE RUN: posts E2E_EVENTS, through Herald ("herald") or straight to the sink
# ("direct", the baseline), and waits for them at the sink.
e2e_unit() {
  local mode=$1 run=$2 url pid log json
  start_sink "e2e-$mode-$run"
  if [ "$mode" = direct ]; then
    url="http://127.0.0.1:$SINK_PORT/deliver" pid=$SINK_PID log="sink-e2e-$mode-$run"
  else
    start_herald "e2e-$run"
    url="http://127.0.0.1:$HERALD_PORT/hooks/flow" pid=$HERALD_PID log="herald-e2e-$run"
  fi
  json=$(timeout 200 "$POST" post --url "$url" --body "$BENCH_BODY" -n "$E2E_EVENTS" -c "$E2E_CONC" \
    --sink "http://127.0.0.1:$SINK_PORT/stats" --timeout 180 2>"$WORK/post.err") || json=""
  if gone "$pid" "$log" || gone "$SINK_PID" "sink-e2e-$mode-$run"; then
    return 0
  fi
  [ -n "$json" ] || die "bench_post failed against $mode: $(tail -3 "$WORK/post.err")"
  if [ "$(json_num "$json" accepted)" != "$E2E_EVENTS" ]; then
    local port=${url#http://127.0.0.1:}
    die "$mode did not accept every event: $json; one request now gets: $(probe "${port%%/*}" "/${port#*/}")"
  fi
  [ "$(json_num "$json" delivered)" -ge "$E2E_EVENTS" ] || die "not every event reached the sink: $json"
  json="{\"bench\":\"e2e\",\"server\":\"$mode\",\"run\":$run,\"hwm_kb\":$(status_kb "$pid" VmHWM),\"rss_kb\":$(status_kb "$pid" VmRSS),${json#\{}"
  [ "$mode" = direct ] || stop "$HERALD_PID"
  stop "$SINK_PID"
  rm -rf "$WORK/data-e2e-$run"
  record "$json"
  log "  e2e $mode: $(calc '%.0f' "$(json_num "$json" e2e_eps)") events/s (ingest $(calc '%.0f' "$(json_num "$json" ingest_rps)") req/s), peak RSS $(( $(json_num "$json" hwm_kb) / 1024 )) MB"
}

# idle_unit SERVER RUN: start-up time, then RSS after IDLE_SECONDS with nothing to do.
idle_unit() {
  local server=$1 run=$2 pid ms rss
  if [ "$server" = ceiling ]; then
    start_ceiling "idle-$run"
    pid=$CEILING_PID ms=$CEILING_START_MS
  else
    # Herald's webhook channel points at a port nothing listens on; nothing is sent at idle.
    SINK_PORT=$(free_port)
    start_herald "idle-$run"
    pid=$HERALD_PID ms=$HERALD_START_MS
  fi
  sleep "$IDLE_SECONDS"
  gone "$pid" "$server-idle-$run" && return 0
  rss=$(status_kb "$pid" VmRSS)
  record "{\"bench\":\"idle\",\"server\":\"$server\",\"run\":$run,\"start_ms\":$ms,\"rss_kb\":$rss}"
  stop "$pid"
  rm -rf "$WORK/data-idle-$run"
  log "  idle $server: $ms ms to the first answer, RSS $(calc '%.1f' "$rss / 1024") MB"
}

# ---------------------------------------------------------------- ingest

log "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
log "ingest: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, $RUNS runs (after ${WARMUP}s of warm-up each)"
SERVERS=(ceiling herald store-only paced)
for run in $(seq "$RUNS"); do
  check_time
  # Rotate which server goes first, so a drift in the machine's load favours none of them.
  for i in "${!SERVERS[@]}"; do
    server=${SERVERS[$(( (run - 1 + i) % ${#SERVERS[@]} ))]}
    measure "ingest $server" ingest_unit "$server" "$run"
  done
done

# ---------------------------------------------------------------- end to end

log "end to end: $E2E_EVENTS events, $E2E_CONC in flight, to a webhook channel at a local sink, $RUNS runs"
for run in $(seq "$RUNS"); do
  check_time
  order="direct herald"
  (( run % 2 == 0 )) && order="herald direct"
  for mode in $order; do
    measure "e2e $mode" e2e_unit "$mode" "$run"
  done
done

# ---------------------------------------------------------------- idle

log "idle: start-up time (spawn → first 200 from /healthz) and RSS after ${IDLE_SECONDS}s idle, $RUNS runs"
for run in $(seq "$RUNS"); do
  check_time
  order="ceiling herald"
  (( run % 2 == 0 )) && order="herald ceiling"
  for server in $order; do
    measure "idle $server" idle_unit "$server" "$run"
  done
done

# ---------------------------------------------------------------- report

# values BENCH SERVER KEY: that figure from every run.
values() { grep "\"bench\":\"$1\",\"server\":\"$2\"" "$RAW" | while read -r l; do json_num "$l" "$3"; done; }
med() { values "$@" | median; }
# runs BENCH SERVER KEY [FORMAT]: that figure from every run, in order, on one line.
runs() { values "$1" "$2" "$3" | while read -r v; do calc "${4:-%.1f}" "$v"; done | tr '\n' ' ' | sed 's/ $//'; }
mb() { calc '%.1f' "$1 / 1024"; }
yes_no() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**missed**"; fi; }

ing_h_rps=$(med ingest herald rps);   ing_c_rps=$(med ingest ceiling rps); ing_s_rps=$(med ingest store-only rps)
ing_h_p99=$(med ingest herald p99_ms); ing_c_p99=$(med ingest ceiling p99_ms); ing_s_p99=$(med ingest store-only p99_ms)
ing_h_p50=$(med ingest herald p50_ms); ing_c_p50=$(med ingest ceiling p50_ms); ing_s_p50=$(med ingest store-only p50_ms)
ing_h_cpu=$(med ingest herald cpu_us_per_req); ing_c_cpu=$(med ingest ceiling cpu_us_per_req)
ing_s_cpu=$(med ingest store-only cpu_us_per_req)
ing_p_rps=$(med ingest paced rps); ing_p_p50=$(med ingest paced p50_ms); ing_p_p99=$(med ingest paced p99_ms)
ing_p_cpu=$(med ingest paced cpu_us_per_req)
ing_h_hwm=$(med ingest herald hwm_kb); ing_c_hwm=$(med ingest ceiling hwm_kb)
ing_kept=$(grep '"bench":"ingest","server":"herald"' "$RAW" | while read -r l; do
  calc '%.3f' "$(json_num "$l" delivered_by_end) / $(json_num "$l" accepted_total)"; done | median)
e2e_h=$(med e2e herald e2e_eps);      e2e_d=$(med e2e direct e2e_eps)
e2e_h_in=$(med e2e herald ingest_rps)
e2e_h_hwm=$(med e2e herald hwm_kb);   e2e_d_hwm=$(med e2e direct hwm_kb)
idle_h_rss=$(med idle herald rss_kb); idle_c_rss=$(med idle ceiling rss_kb)
idle_h_ms=$(med idle herald start_ms); idle_c_ms=$(med idle ceiling start_ms)

for v in ing_h_p99 ing_c_p99 ing_s_p99 ing_h_p50 ing_c_p50 ing_s_p50 ing_h_cpu ing_c_cpu ing_s_cpu \
  ing_p_p50 ing_p_p99 ing_p_cpu idle_h_ms idle_c_ms; do
  printf -v "$v" '%s' "$(calc '%.1f' "${!v}")"
done
rps_ratio=$(calc '%.2f' "$ing_h_rps / $ing_c_rps")

# cpu_row LABEL SERVER: one row of the CPU split, medians of each part over the runs.
cpu_row() {
  local k v total=0 cells=""
  for k in accept_us store_us delivery_us other_us sink_us wrk_us; do
    v=$(med ingest "$2" "$k")
    total=$(calc '%.1f' "$total + $v")
    cells+=" $(calc '%.1f' "$v") |"
  done
  echo "| $1 | $(calc '%.0f' "$(med ingest "$2" rps)") |$cells $total | $(calc '%.2f' "$total * $(med ingest "$2" rps) / 1000000") | $(calc '%.1f' "$(med ingest "$2" idle_pct)") % |"
}
# The CPU one request may cost, everything on the machine included, at half the ceiling's rate.
budget=$(calc '%.1f' "$(nproc) * 1000000 / (0.5 * $ing_c_rps)")
budget_herald=$(calc '%.1f' "$budget - $(med ingest herald wrk_us) - $(med ingest herald sink_us)")
e2e_ratio=$(calc '%.2f' "$e2e_h / $e2e_d")
FS=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')

REPORT=$RESULTS/latest.md
{
  echo "# Benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo));" \
    "built from commit $BUILT_FROM;" \
    "store on $FS; medians of $RUNS runs. Rerun: \`bash bench/run.sh\`."
  echo
  echo "| measure | Herald | baseline (same run) | ratio | target | |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| ingest: requests/s (wrk -c$CONNS, ${DURATION}s) | $(calc '%.0f' "$ing_h_rps") | $(calc '%.0f' "$ing_c_rps") ceiling | $rps_ratio | ≥ 0.50 × ceiling | $(yes_no "$rps_ratio >= 0.5") |"
  echo "| ingest: p99 latency | $ing_h_p99 ms | $ing_c_p99 ms ceiling | $(calc '%.1f' "$ing_h_p99 / $ing_c_p99") | ≤ 20 ms | $(yes_no "$ing_h_p99 <= 20") |"
  echo "| ingest: p50 latency | $ing_h_p50 ms | $ing_c_p50 ms ceiling | $(calc '%.1f' "$ing_h_p50 / $ing_c_p50") | — | |"
  echo "| ingest: Herald's CPU per request | $ing_h_cpu µs | $ing_c_cpu µs ceiling | $(calc '%.1f' "$ing_h_cpu / $ing_c_cpu") | — | |"
  echo "| ingest: deliveries made by the end of the run / events accepted | $ing_kept | | | — | |"
  echo "| ingest: peak RSS | $(mb "$ing_h_hwm") MB | $(mb "$ing_c_hwm") MB ceiling | $(calc '%.1f' "$ing_h_hwm / $ing_c_hwm") | — | |"
  echo "| ingest, store only (no rule matches; diagnostic): requests/s | $(calc '%.0f' "$ing_s_rps") | $(calc '%.0f' "$ing_c_rps") ceiling | $(calc '%.2f' "$ing_s_rps / $ing_c_rps") | — | |"
  echo "| ingest, store only: p50 / p99 latency | $ing_s_p50 / $ing_s_p99 ms | $ing_c_p50 / $ing_c_p99 ms ceiling | | — | |"
  echo "| ingest, store only: CPU per request | $ing_s_cpu µs | $ing_c_cpu µs ceiling | $(calc '%.1f' "$ing_s_cpu / $ing_c_cpu") | — | |"
  echo "| ingest, to a robot limited to 20/min (deliveries stored and summarised at its pace; diagnostic): requests/s | $(calc '%.0f' "$ing_p_rps") | $(calc '%.0f' "$ing_c_rps") ceiling | $(calc '%.2f' "$ing_p_rps / $ing_c_rps") | — | |"
  echo "| ingest, to a limited robot: p50 / p99 latency | $ing_p_p50 / $ing_p_p99 ms | $ing_c_p50 / $ing_c_p99 ms ceiling | | — | |"
  echo "| ingest, to a limited robot: CPU per request | $ing_p_cpu µs | $ing_c_cpu µs ceiling | $(calc '%.1f' "$ing_p_cpu / $ing_c_cpu") | — | |"
  echo "| end to end: events/s, first post → last delivery ($E2E_EVENTS events) | $(calc '%.0f' "$e2e_h") | $(calc '%.0f' "$e2e_d") poster → sink direct | $e2e_ratio | ≥ 15000 events/s | $(yes_no "$e2e_h >= 15000") |"
  echo "| end to end: Herald's ingest phase, requests/s | $(calc '%.0f' "$e2e_h_in") | | | — | |"
  echo "| end to end: peak RSS (VmHWM) | $(mb "$e2e_h_hwm") MB | $(mb "$e2e_d_hwm") MB sink | $(calc '%.1f' "$e2e_h_hwm / $e2e_d_hwm") | ≤ 80 MB | $(yes_no "$e2e_h_hwm <= 80 * 1024") |"
  echo "| idle: RSS after ${IDLE_SECONDS}s | $(mb "$idle_h_rss") MB | $(mb "$idle_c_rss") MB ceiling | $(calc '%.1f' "$idle_h_rss / $idle_c_rss") | — | |"
  echo "| idle: spawn → first answer | $idle_h_ms ms | $idle_c_ms ms ceiling | $(calc '%.1f' "$idle_h_ms / $idle_c_ms") | — | |"
  echo
  echo "Where the CPU goes, in µs per request, from each process's own CPU time (medians; \"cores\""
  echo "is the total times requests/s; \"idle\" is the machine's idle and I/O-wait share of its CPU"
  echo "time meanwhile, from /proc/stat: part of the kernel's network work is charged to no process,"
  echo "so \"cores\" can fall short of $(nproc) with nothing idle):"
  echo
  echo "| server | requests/s | accept | store | delivery | other | sink | wrk | total | cores | idle |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  cpu_row "ceiling" ceiling
  cpu_row "Herald, to the sink (target row)" herald
  cpu_row "Herald, to a limited robot" paced
  cpu_row "Herald, store only" store-only
  echo
  echo "At half the ceiling's rate, $(calc '%.0f' "$ing_c_rps / 2") requests/s, the $(nproc) cores give ${budget} µs of CPU" \
    "per request; less what wrk and the sink took per request in the target row, that leaves" \
    "**${budget_herald} µs for Herald**, which took $ing_h_cpu µs (store only: $ing_s_cpu µs)."
  echo
  echo "Every run, in order (Herald | baseline):"
  echo
  echo "- ingest requests/s: $(runs ingest herald rps %.0f) | $(runs ingest ceiling rps %.0f); store only: $(runs ingest store-only rps %.0f); limited robot: $(runs ingest paced rps %.0f)"
  echo "- ingest p99 ms: $(runs ingest herald p99_ms) | $(runs ingest ceiling p99_ms); store only: $(runs ingest store-only p99_ms); limited robot: $(runs ingest paced p99_ms)"
  echo "- end to end events/s: $(runs e2e herald e2e_eps %.0f) | $(runs e2e direct e2e_eps %.0f)"
  echo "- end to end peak RSS kB: $(runs e2e herald hwm_kb %.0f) | $(runs e2e direct hwm_kb %.0f)"
  echo "- idle RSS kB: $(runs idle herald rss_kb %.0f) | $(runs idle ceiling rss_kb %.0f)"
  echo "- start-up ms: $(runs idle herald start_ms) | $(runs idle ceiling start_ms)"
} >"$REPORT"
cp "$RAW" "$RESULTS/latest.jsonl"

echo
cat "$REPORT"
echo
log "written: $REPORT and $RESULTS/latest.jsonl ($(( SECONDS - START_SECONDS ))s)"
