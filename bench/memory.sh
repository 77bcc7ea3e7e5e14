#!/usr/bin/env bash
# Memory and start-up time of a release xipgate at a large Eureka registry.
#
#     bash bench/memory.sh                  # N=100000 instances, 10 per service, 3 runs
#     N=10000 RUNS=1 bash bench/memory.sh
#
# A stub Eureka (nginx serving bench/gen_registry.py's registry, gzipped as Eureka does when
# asked: GZIP=0 serves it plain) feeds a release xipgate that does a full fetch every
# INTERVAL (default 5s; `delta: false`, so every sync is a full /apps refresh). Per run it
# prints:
#   routed_s      seconds from starting xipgate to the first 200 through an instance host
#   cpu_s         xipgate's CPU time (user + system) by then: steadier than routed_s on a
#                 busy machine
#   peak_start    VmHWM (peak resident set) when routed, MiB
#   rss_routed    VmRSS when routed, MiB
#   rss_refresh   VmRSS after one more full refresh (the steady state of a full refresh), MiB
#   peak_refresh  VmHWM after that refresh, MiB
#   peak_B/inst   the higher peak in bytes per instance
# from /proc/PID/status. Each run starts a new xipgate (the registry is generated once).
#
# COUNT=1 adds one more run that counts, rather than times, one full refresh (fetch, gunzip,
# parse, compare with the copy, table swap): the user-space instructions (valgrind's
# callgrind) and the system calls (strace -c -f) from the end of one sync to the end of the
# next, minus what the console scrapes that watched for the end cost (the same number of
# scrapes counted again on their own). Slow: xipgate starts under valgrind (minutes).
# PROFILE=dir keeps the callgrind dumps there (callgrind_annotate --inclusive=yes FILE).
set -euo pipefail
SELF=bench/memory.sh
cd "$(dirname "$0")/.."
. bench/lib.sh

N=${N:-100000}
PER=${PER:-10}
RUNS=${RUNS:-3}
GZIP=${GZIP:-1}
INTERVAL=${INTERVAL:-5s}
DOMAIN=127-0-0-1.sslip.io
need nginx nginx
need curl curl
need python3 python3
needs_met
NGINX=$(sbin_tool nginx)
XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
[ -x "$XIPGATE_BIN" ] || cargo build --release --locked
bench_workdir memory

read -r BACKEND_PORT EUREKA_PORT XIP_PORT CONSOLE_PORT < <(free_ports 4)
python3 bench/gen_registry.py "$N" "$BACKEND_PORT" "$WORK/eureka" "$PER"
read -r INSTANCE_LABEL < "$WORK/eureka/labels"

cat > "$WORK/nginx.conf" <<EOF
daemon off; worker_processes 1; $( [ "$(id -u)" = 0 ] && echo 'user root;' )
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    gzip_static $( [ "$GZIP" = 1 ] && echo on || echo off );
    server {
        listen 127.0.0.1:$EUREKA_PORT;
        location = /eureka/apps { alias $WORK/eureka/apps.json; }
        location = /eureka/apps/delta { alias $WORK/eureka/delta.json; }
    }
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { return 200 "hello from backend\n"; }
    }
}
EOF
"$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" > "$WORK/nginx.out" 2>&1 &
PIDS+=("$!")

cat > "$WORK/xipgate.yaml" <<EOF
version: 1
threads: 2
pid_file: $WORK/xipgate.pid
upgrade_sock: $WORK/xipgate_upgrade.sock
xipgate:
  listen: ["127.0.0.1:$XIP_PORT"]
  domains: ["$DOMAIN"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:$EUREKA_PORT/eureka"]
      interval: $INTERVAL
      delta: false
      timeout: 30s
      max_body: 1GiB
    startup_wait: 120s
  upstream:
    allow: ["127.0.0.0/8"]
  console:
    listen: 127.0.0.1:$CONSOLE_PORT
  log:
    access: false
EOF
wait_port_open() { # until nginx listens
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$EUREKA_PORT/eureka/apps/delta" && return 0
        sleep 0.05
    done
    echo "$SELF: the stub Eureka did not start" >&2; cat "$WORK/nginx-error.log" >&2; exit 1
}
wait_port_open
WIRE=$(curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$EUREKA_PORT/eureka/apps")
BODY=$(stat -c %s "$WORK/eureka/apps.json")
echo "N=$N instances, $PER per service; /apps: $BODY bytes of JSON, $WIRE on the wire (GZIP=$GZIP)"
echo "binary: $XIPGATE_BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"

kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$2/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# Syncs that succeeded: counted once the table is applied (every sync is a full fetch here).
# From /api/v1/registry, not /metrics: at 100,000 instances a /metrics scrape is ~90 million
# instructions, which would swamp the refresh COUNT=1 counts.
syncs_ok() {
    curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/registry" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["syncs_ok"])'
}

printf '| run | routed_s | cpu_s | peak_start MiB | rss_routed MiB | rss_refresh MiB | peak_refresh MiB | peak B/inst |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for run in $(seq 1 "$RUNS"); do
    start=$(date +%s.%N)
    RUST_LOG=warn "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" > "$WORK/xipgate-$run.log" 2>&1 &
    XIP_PID=$!
    PIDS+=("$XIP_PID")
    deadline=$((SECONDS + 120))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $INSTANCE_LABEL.$DOMAIN" "http://127.0.0.1:$XIP_PORT/")" = 200 ]; do
        kill -0 "$XIP_PID" 2>/dev/null || { echo "$SELF: xipgate exited:" >&2; cat "$WORK/xipgate-$run.log" >&2; exit 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "$SELF: not routed in 120 s" >&2; cat "$WORK/xipgate-$run.log" >&2; exit 1; }
        sleep 0.02
    done
    routed=$(date +%s.%N)
    ticks=$(awk '{ print $14 + $15 }' "/proc/$XIP_PID/stat")
    peak_start=$(kib VmHWM "$XIP_PID")
    rss_routed=$(kib VmRSS "$XIP_PID")
    # One more full refresh: the sync counter moves past its value now.
    s0=$(syncs_ok)
    until [ "$(syncs_ok)" -gt "$s0" ]; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "$SELF: no refresh in 120 s" >&2; exit 1; }
        sleep 0.2
    done
    rss_refresh=$(kib VmRSS "$XIP_PID")
    peak_refresh=$(kib VmHWM "$XIP_PID")
    kill -INT "$XIP_PID"
    wait "$XIP_PID" 2>/dev/null || true
    peak=$(( peak_refresh > peak_start ? peak_refresh : peak_start ))
    printf '| %s | %.2f | %.2f | %s | %s | %s | %s | %d |\n' "$run" \
        "$(awk -v a="$start" -v b="$routed" 'BEGIN { print b - a }')" \
        "$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')" \
        "$(mib "$peak_start")" "$(mib "$rss_routed")" "$(mib "$rss_refresh")" \
        "$(mib "$peak_refresh")" "$((peak * 1024 / N))"
done

[ "${COUNT:-0}" = 1 ] || exit 0

# --- One full refresh, counted --------------------------------------------------------
need valgrind valgrind
need strace strace
needs_met
# count_config INTERVAL: the configuration with syncs INTERVAL apart. The window runs from
# the end of one sync to the end of the next, so it holds the interval's idle time too:
# 10 s natively (about 30 system calls at idle), 5 minutes under valgrind, where a sync at
# 100,000 instances takes about two. The interval must be longer than a sync: syncs start
# on a fixed tick, so a longer sync is followed at once by the next, and the 5 s polling
# would then count part of a third.
count_config() {
    sed "s/interval: $INTERVAL/interval: $1/" "$WORK/xipgate.yaml" > "$WORK/xipgate-count.yaml"
}
# until_next_sync: polls every 5 s until the sync counter passes its value now; counts its
# scrapes in SCRAPES.
SCRAPES=0
until_next_sync() {
    local s0 s deadline=$((SECONDS + 900))
    s0=$(syncs_ok)
    SCRAPES=$((SCRAPES + 1))
    while :; do
        s=$(syncs_ok)
        SCRAPES=$((SCRAPES + 1))
        [ "$s" -gt "$s0" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || { echo "$SELF: no sync in 900 s" >&2; exit 1; }
        sleep 5
    done
}
scrapes_only() { local _; for _ in $(seq 1 "$1"); do syncs_ok > /dev/null; done; }
# counted CMD...: runs CMD between zeroing and dumping callgrind's counters; sets COUNTED to
# the instructions counted.
counted() {
    callgrind_control -z > /dev/null
    "$@"
    callgrind_control -d > /dev/null
    local dump
    dump=$(find "$WORK" -name 'callgrind.out.*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
    COUNTED=$(awk '/^(totals|summary):/ {print $2; exit}' "$dump")
    if [ -n "${PROFILE:-}" ]; then
        mkdir -p "$PROFILE"
        mv "$dump" "$PROFILE/callgrind.refresh-$N-$COUNTED"
    else
        rm -f "$dump"
    fi
}
# traced PID CMD...: runs CMD while strace counts PID's system calls (every thread); sets
# TRACED to their number.
traced() {
    local pid=$1 out="$WORK/strace.out"
    shift
    # Every thread of it: -p on the process alone attaches to its main thread only.
    local tids=()
    mapfile -t tids < <(ls "/proc/$pid/task")
    strace -c -f "${tids[@]/#/-p}" -o "$out" 2> /dev/null &
    local tracer=$!
    sleep 1   # attached (strace has no readiness signal)
    "$@"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    TRACED=$(awk '$NF == "total" { print $4 }' "$out")   # calls: % time, seconds, usecs/call, calls
}

# start_counted WRAP...: xipgate with xipgate-count.yaml (under WRAP, if any), once it is ready;
# sets XIP_PID to the process that runs xipgate's code.
start_counted() {
    RUST_LOG=warn "$@" "$XIPGATE_BIN" -c "$WORK/xipgate-count.yaml" > "$WORK/xipgate-count.log" 2>&1 &
    XIP_PID=$!
    PIDS+=("$XIP_PID")
    local deadline=$((SECONDS + 1800))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CONSOLE_PORT/readyz")" = 200 ]; do
        kill -0 "$XIP_PID" 2>/dev/null || { echo "$SELF: xipgate exited:" >&2; cat "$WORK/xipgate-count.log" >&2; exit 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "$SELF: not ready in 30 min" >&2; exit 1; }
        sleep 1
    done
    # Debian's valgrind is a shell wrapper that may leave valgrind.bin as its child.
    local child
    child=$(pgrep -P "$XIP_PID" | head -1 || true)
    [ -z "$child" ] || { XIP_PID=$child; PIDS+=("$XIP_PID"); }
}

# System calls natively (under valgrind they would be valgrind's as well).
count_config 10s
start_counted
until_next_sync                                 # a sync ends: the window starts
SCRAPES=0
traced "$XIP_PID" until_next_sync               # to the end of the next one
calls=$TRACED n_calls=$SCRAPES
traced "$XIP_PID" scrapes_only "$n_calls"
calls_scrapes=$TRACED
bench_stop "$XIP_PID" 10

# Instructions under callgrind, instrumented only once it is ready (a start is minutes
# even so).
count_config 300s
start_counted valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out.%p"
callgrind_control -i on > /dev/null
until_next_sync
SCRAPES=0
counted until_next_sync
ir=$COUNTED n=$SCRAPES
counted scrapes_only "$n"
ir_scrapes=$COUNTED
bench_stop "$XIP_PID" 30

echo
echo "one full refresh at N=$N, counted (the console scrapes that watched for its end subtracted):"
printf '| what | one refresh | with the scrapes | scrapes |\n|---|---:|---:|---:|\n'
printf '| user-space instructions | %s | %s | %s |\n' "$(python3 -c "print(f'{$ir - $ir_scrapes:,}')")" "$ir" "$n"
printf '| system calls | %s | %s | %s |\n' "$((calls - calls_scrapes))" "$calls" "$n_calls"
printf '| instructions per instance | %s | | |\n' "$(python3 -c "print(round(($ir - $ir_scrapes) / $N))")"
