#!/usr/bin/env bash
# Soak test: xipgate under steady mixed traffic for a long time while the registry keeps
# changing. Passes (exit 0) only with ZERO client errors and resident memory (VmRSS)
# growth below 10 % from just after the warm-up to the end of the run (medians of the
# first and the last minute). Not part of `cargo test`.
#
#   bench/soak.sh                     # 10 minutes; builds target/release/xipgate if needed
#   SOAK_SECONDS=120 bench/soak.sh
#
# Options (environment):
#   SOAK_SECONDS  seconds of load (default 600), warm-up included
#   WARMUP        seconds before the start memory sample (default 60, at most a third of
#                 SOAK_SECONDS); must outlast RETENTION
#   CONNS         wrk connections (default 32); THREADS wrk threads (default 2)
#   TICK          seconds between registry changes (default 2)
#   RETENTION     seconds a change stays in the stand-in's /apps/delta (default 30; real
#                 Eureka keeps 180). Each delta xipgate fetches grows until this window
#                 is full, and VmRSS with it, so the warm-up must outlast it.
#   LAME          1 (default): now and then one UP churn instance per service has no
#                 backend (refused connects, retried by xipgate); 0: never
#   MAX_GROWTH    allowed VmRSS growth in percent (default 10)
#   XIPGATE_BIN   binary to test (default target/release/xipgate, built when missing or
#                 older than the sources)
#   KEEP          set: keep the work directory (configs, logs, RSS samples)
#
# What runs, all on 127.0.0.1:
#   - backends: one nginx (worker_processes 1) listening on 8 "core" ports and 4 "churn"
#     ports, answering 200 with the port it was reached on; keepalive_timeout 15 s and
#     keepalive_requests 1000, so idle and long-used upstream connections get closed by
#     the backend, as real ones do;
#   - bench/soak_eureka.py: a stand-in Eureka whose registry changes every TICK seconds
#     (churn instances added, removed, flipped UP/DOWN/STARTING/OUT_OF_SERVICE, a whole
#     service appearing and going, at most one "lame" UP instance per service whose port
#     refuses connections; real /apps/delta answers): see its docstring;
#   - xipgate: registry interval 1 s with delta sync, access log off, RUST_LOG=warn;
#   - wrk with bench/soak_wrk.lua: 95 % GET, 5 % POST over the 4 service hosts
#     and the 8 core instance hosts (instances that are always UP and never move).
# Every request therefore has a live answer, whatever the churn does (a lame instance
# costs a retry on another instance, which is live): any non-200 answer or socket error
# is xipgate's fault. VmRSS is sampled from /proc every 5 s.
# Prints a summary (requests, errors, latency, memory, registry churn) to stdout.
#
# Needs: nginx, wrk, python3, curl (Debian packages of the same names).
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/soak.sh
. bench/lib.sh

SOAK_SECONDS=${SOAK_SECONDS:-600}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
TICK=${TICK:-2}
RETENTION=${RETENTION:-30}
LAME=${LAME:-1}
MAX_GROWTH=${MAX_GROWTH:-10}
XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
DOMAIN=127-0-0-1.sslip.io
WARMUP=${WARMUP:-60}
if [ $((WARMUP * 3)) -gt "$SOAK_SECONDS" ]; then WARMUP=$((SOAK_SECONDS / 3)); fi
if [ "$SOAK_SECONDS" -lt 20 ]; then echo "bench/soak.sh: SOAK_SECONDS must be at least 20" >&2; exit 2; fi

for tool in nginx wrk python3 curl; do need "$tool" "$tool"; done
needs_met
NGINX=$(sbin_tool nginx)

if [ "$XIPGATE_BIN" = target/release/xipgate ]; then
    # cargo decides whether anything changed; a no-op when the binary is up to date.
    echo "bench/soak.sh: cargo build --release --bin xipgate" >&2
    cargo build --release --bin xipgate >&2
elif [ ! -x "$XIPGATE_BIN" ]; then
    echo "bench/soak.sh: $XIPGATE_BIN is not an executable" >&2
    exit 2
fi

bench_workdir soak

# 16 free loopback ports: 8 core, 4 churn, one dead (bound now, released, never listened
# on), Eureka, xipgate proxy and console.
read -r -a PORTS < <(free_ports 16)
CORE_PORTS=("${PORTS[@]:0:8}")
CHURN_PORTS=("${PORTS[@]:8:4}")
DEAD_PORT=${PORTS[12]}
EUREKA_PORT=${PORTS[13]}
XIP_PORT=${PORTS[14]}
CONSOLE_PORT=${PORTS[15]}
join() { local IFS=,; echo "$*"; }


# Backends.
{
    echo "daemon off; worker_processes 1; $( [ "$(id -u)" = 0 ] && echo 'user root;' )"
    echo "pid $WORK/backend.pid;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "    access_log off;"
    echo "    keepalive_timeout 15s;"
    echo "    keepalive_requests 1000;"
    echo "    server {"
    for p in "${CORE_PORTS[@]}" "${CHURN_PORTS[@]}"; do echo "        listen 127.0.0.1:$p;"; done
    echo "        location / { default_type text/plain; return 200 \"backend \$server_port\\n\"; }"
    echo "    }"
    echo "}"
} > "$WORK/backend.conf"
"$NGINX" -p "$WORK" -e "$WORK/backend-error.log" -c "$WORK/backend.conf" > "$WORK/backend.out" 2>&1 &
PIDS+=("$!")
for p in "${CORE_PORTS[@]}" "${CHURN_PORTS[@]}"; do
    wait_http "http://127.0.0.1:$p/" "${PIDS[-1]}" "nginx backend" "$WORK/backend-error.log"
done

# Stand-in Eureka.
python3 bench/soak_eureka.py --port "$EUREKA_PORT" --core "$(join "${CORE_PORTS[@]}")" \
    --churn "$(join "${CHURN_PORTS[@]}")" --dead "$DEAD_PORT" --tick "$TICK" --retention "$RETENTION" \
    $( [ "$LAME" = 0 ] && echo --no-lame ) > "$WORK/eureka.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$EUREKA_PORT/eureka/apps" "${PIDS[-1]}" "stand-in Eureka" "$WORK/eureka.log"

# xipgate.
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
      interval: 1s
      timeout: 2s
      delta: true
    startup_wait: 10s
  upstream:
    allow: ["127.0.0.0/8"]
    connect_timeout: 1s
    read_timeout: 10s
  console:
    listen: 127.0.0.1:$CONSOLE_PORT
  log:
    access: false
EOF
RUST_LOG=${RUST_LOG:-warn} "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" > "$WORK/xipgate.log" 2>&1 &
XIP_PID=$!
PIDS+=("$XIP_PID")
wait_http "http://127.0.0.1:$CONSOLE_PORT/readyz" "$XIP_PID" xipgate "$WORK/xipgate.log"

HOSTS=()
for svc in order-service pay-service user-service catalog-service; do
    HOSTS+=("$svc.$DOMAIN" "$svc-core-1.$DOMAIN" "$svc-core-2.$DOMAIN")
done
for h in "${HOSTS[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h" "http://127.0.0.1:$XIP_PORT/")
    [ "$code" = 200 ] || { echo "bench/soak.sh: $h answered $code before the soak" >&2; cat "$WORK/xipgate.log" >&2; exit 1; }
done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$XIP_PID/status"; }

echo "bench/soak.sh: ${SOAK_SECONDS}s of load (wrk -t$THREADS -c$CONNS), warm-up ${WARMUP}s, registry change every ${TICK}s (delta retention ${RETENTION}s), ${#HOSTS[@]} hosts" >&2
SOAK_HOSTS="${HOSTS[*]}" wrk -t"$THREADS" -c"$CONNS" -d"${SOAK_SECONDS}s" --timeout 5s -s bench/soak_wrk.lua \
    "http://127.0.0.1:$XIP_PORT/" > "$WORK/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")

# VmRSS every 5 s while wrk runs. A single sample swings by several MiB with allocator
# and connection-buffer churn, so the verdict compares medians: the first minute after
# the warm-up (at most a fifth of the measured time) against the last minute under load.
START_AT=$(date +%s)
: > "$WORK/rss.csv"
while kill -0 "$WRK_PID" 2>/dev/null; do
    kb=$(rss_kb) || { echo "bench/soak.sh: xipgate died" >&2; cat "$WORK/xipgate.log" >&2; exit 1; }
    echo "$(( $(date +%s) - START_AT )),$kb" >> "$WORK/rss.csv"
    sleep 5
done
wait "$WRK_PID" || true
kill -0 "$XIP_PID" 2>/dev/null || { echo "bench/soak.sh: xipgate died" >&2; cat "$WORK/xipgate.log" >&2; exit 1; }

line=$(grep '^SOAK ' "$WORK/wrk.out" || true)
if [ -z "$line" ]; then echo "bench/soak.sh: no result from wrk:" >&2; cat "$WORK/wrk.out" >&2; exit 1; fi
curl -s "http://127.0.0.1:$EUREKA_PORT/soak/stats" > "$WORK/eureka-stats.json"
curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/registry" > "$WORK/registry.json"
retries=$(curl -s "http://127.0.0.1:$CONSOLE_PORT/metrics" | awk '/^xipgate_retries_total/ {s += $2} END {print s + 0}')
# Pingora logs every failed try ("Fail to proxy: ..., retry: true" when retried).
fail_lines=$(grep -c 'Fail to proxy' "$WORK/xipgate.log" || true)
grep '^SOAK_STATUS' "$WORK/wrk.out" >&2 || true

status=0
python3 - "$WORK" "$SOAK_SECONDS" "$WARMUP" "$MAX_GROWTH" "$retries" "$fail_lines" "$line" <<'PY' || status=$?
import datetime, json, os, statistics, sys
work, secs, warmup, max_growth, retries, fails, line = sys.argv[1:]
secs, warmup, max_growth = int(secs), int(warmup), float(max_growth)
f = dict(kv.split("=", 1) for kv in line.split()[1:])
requests = int(f["requests"])
errors = sum(int(f[k]) for k in ("connect", "read", "write", "timeout", "non200"))
samples = [tuple(map(int, l.split(","))) for l in open(os.path.join(work, "rss.csv")) if l.strip()]
measured = [(t, kb) for t, kb in samples if warmup <= t < secs - 1]
window = min(60, max(10, (secs - warmup) // 5))
first = [kb for t, kb in measured if t < warmup + window]
last = [kb for t, kb in measured if t >= secs - 1 - window]
if not first or not last:
    print("bench/soak.sh: too few RSS samples", file=sys.stderr)
    sys.exit(1)
start, end = statistics.median(first), statistics.median(last)
peak = max(kb for _, kb in measured)
growth = (end - start) * 100.0 / start
stats = json.load(open(os.path.join(work, "eureka-stats.json")))
registry = json.load(open(os.path.join(work, "registry.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"xipgate soak, {datetime.date.today()}, {os.cpu_count()} cores ({cpu}), {secs} s")
print(f"- requests: {requests:,} ({requests / secs:,.0f}/s), p50 {int(f['p50_us']) / 1000:.2f} ms, "
      f"p99 {int(f['p99_us']) / 1000:.2f} ms; errors: {errors} "
      f"(connect {f['connect']}, read {f['read']}, write {f['write']}, timeout {f['timeout']}, non-200 {f['non200']})")
print(f"- VmRSS (medians of {window} s windows): {start / 1024:.1f} MiB after the {warmup} s warm-up, "
      f"{end / 1024:.1f} MiB at the end ({growth:+.1f} %, limit +{max_growth:g} %); "
      f"samples {measured[0][1] / 1024:.1f} .. {measured[-1][1] / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
print(f"- registry: {stats['ticks']} changes ({stats['adds']} added, {stats['removes']} removed, "
      f"{stats['flips']} status flips, {stats['lame']} lame UP instances); xipgate synced {registry.get('syncs_ok')} times "
      f"({registry.get('delta_fetches')} deltas, {registry.get('full_fetches')} full), "
      f"{registry.get('syncs_failed')} failed")
print(f"- xipgate retries (xipgate_retries_total): {retries}; failed tries logged: {fails}")
bad = []
if errors > 0:
    bad.append(f"{errors} errors")
if growth >= max_growth:
    bad.append(f"VmRSS grew {growth:.1f} %")
if bad:
    print("bench/soak.sh: FAIL: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
if [ "$status" != 0 ]; then
    KEEP=1
    grep -m 20 'Fail to proxy.*retry: false' "$WORK/xipgate.log" >&2 || true
    exit 1
fi
echo "bench/soak.sh: PASS" >&2
