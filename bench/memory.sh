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
syncs_ok() {
    curl -s "http://127.0.0.1:$CONSOLE_PORT/metrics" |
        awk '/registry_syncs_total\{result="ok"\}/ { print $2 }'
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
