#!/usr/bin/env bash
# Kubernetes source at scale: PODS pods in SERVICES Services written to a real kube-apiserver
# (with Debian's etcd), read by xipgate's Kubernetes registry source with a service-account
# token bound to exactly the Role in k8s/registry-rbac/roles.yaml. Not part of `cargo test`.
#
#   bench/kubernetes.sh                       # needs root; builds target/release/xipgate if missing
#   PODS=2000 SERVICES=200 ROUNDS=2 bench/kubernetes.sh
#
# Measures:
#   start → routed   from starting xipgate until all PODS pods are UP in its table
#                    (xipgate_instances{status="UP"} on /metrics), and until its /readyz is 200
#   events/s         CHANGES EndpointSlices (PODS/SERVICES pods each) patched to not-ready and
#                    back, one merge patch each: "live", from the first write until xipgate's
#                    table shows every change (bounded by how fast the API server takes the
#                    writes, reported beside it); "backlog", xipgate stopped (SIGSTOP) while
#                    the changes are written, then continued: the time until it has applied
#                    them all (the watch's events read, decoded and published)
#   RSS              VmRSS of xipgate (/proc) after loading, and after the changes
#   API load at rest requests per minute over REST seconds with nothing changing, counted
#                    by the API server (apiserver_request_total for endpointslices and
#                    services, by verb; nothing else reads them here)
#   per request      CPU µs per request (user+sys of the xipgate process / requests, wrk
#                    -t1 -c$CONNS, $ROUNDS interleaved rounds of $DURATION s) of a pod host
#                    from the Kubernetes source and of an instance host from a stub Eureka
#                    (bench/gen_registry.py, PODS instances), both in one xipgate process that
#                    reads both sources (threads: 1, access log off), same nginx backend
#
# Everything runs inside a network namespace of the script's own (it re-executes itself
# under `unshare --net`), with lo up and 10.244.0.0/16 local on it: EndpointSlice
# validation refuses loopback addresses, so the pods are 10.244.x.y, and one nginx backend
# on 0.0.0.0:8080 answers for all of them. Nothing leaves the machine.
#
# Options (environment): PODS (10000), SERVICES (1000), NS (shop), CHANGES (1000 slices),
# REST (600 s: the source's watches are re-opened every 290 s, so a shorter window may see none), DURATION (8 s), WARMUP (2 s), ROUNDS (4), CONNS (64), PIN (1: xipgate on
# CPU $PROXY_CPU=1, everything else on $LOAD_CPU=0), XIPGATE_BIN (target/release/xipgate),
# KUBE_APISERVER (~/.cache/xipgate/kube/v1.37.2/kube-apiserver, built by it/kube/build.sh),
# ETCD (/usr/bin/etcd), KEEP (keep the work directory).
#
# Needs: root, etcd (etcd-server), kube-apiserver (it/kube/build.sh), openssl, curl, nginx,
# wrk, python3 with yaml (python3-yaml), taskset (util-linux), ip (iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/kubernetes.sh

if [ -z "${XIPGATE_BENCH_NETNS:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "$SELF: needs root (a network namespace of its own)" >&2; exit 2; }
    exec unshare --net env XIPGATE_BENCH_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
ip addr add 10.244.0.1/16 dev lo

. bench/lib.sh

PODS=${PODS:-10000}
SERVICES=${SERVICES:-1000}
NS=${NS:-shop}
CHANGES=${CHANGES:-1000}
REST=${REST:-600}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-4}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
KUBE_APISERVER=${KUBE_APISERVER:-$HOME/.cache/xipgate/kube/v1.37.2/kube-apiserver}
ETCD=${ETCD:-/usr/bin/etcd}
DOMAIN=127-0-0-1.sslip.io
POD_PORT=8080

need openssl openssl
need curl curl
need nginx nginx
need wrk wrk
need python3 python3
need taskset util-linux
[ -x "$ETCD" ] || { echo "$SELF: $ETCD not found: apt-get install etcd-server" >&2; NEEDS_MISSING=1; }
[ -x "$KUBE_APISERVER" ] || { echo "$SELF: $KUBE_APISERVER not found: it/kube/build.sh" >&2; NEEDS_MISSING=1; }
python3 -c 'import yaml' 2>/dev/null || { echo "$SELF: python3 yaml not found: apt-get install python3-yaml" >&2; NEEDS_MISSING=1; }
needs_met
NGINX=$(sbin_tool nginx)
if [ ! -x "$XIPGATE_BIN" ]; then
    [ "$XIPGATE_BIN" = target/release/xipgate ] || { echo "$SELF: $XIPGATE_BIN is not an executable" >&2; exit 2; }
    echo "$SELF: building $XIPGATE_BIN (cargo build --release)" >&2
    cargo build --release --bin xipgate >&2
fi
ON_PROXY_CPU=() ON_LOAD_CPU=()
if [ "$PIN" != 0 ]; then ON_PROXY_CPU=(taskset -c "$PROXY_CPU") ON_LOAD_CPU=(taskset -c "$LOAD_CPU"); fi

bench_workdir kube
read -r ETCD_PORT ETCD_PEER API_PORT EUREKA_PORT XIP_PORT CONSOLE_PORT < <(free_ports 6)
API=https://127.0.0.1:$API_PORT
CONSOLE=http://127.0.0.1:$CONSOLE_PORT
RESULTS=$WORK/results.txt
: > "$RESULTS"
result() { echo "$*" | tee -a "$RESULTS" >&2; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

# --- the API server: a CA, its serving certificate, a service-account key, an admin token.
(
    cd "$WORK"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=xipgate bench kube CA" -out ca.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apiserver.key
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > san.ext
    openssl x509 -req -in apiserver.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -sha256 -extfile san.ext -out apiserver.crt
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    echo 'xipgate-bench-admin,admin,admin-uid,"system:masters"' > tokens.csv
    echo xipgate-bench-admin > admin.token
) 2> "$WORK/openssl.log" || { cat "$WORK/openssl.log" >&2; exit 1; }

"${ON_LOAD_CPU[@]}" "$ETCD" --name=bench --data-dir="$WORK/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster="bench=http://127.0.0.1:$ETCD_PEER" --logger=zap --log-level=warn \
    --quota-backend-bytes=4294967296 > "$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
wait_http "http://127.0.0.1:$ETCD_PORT/health" "$ETCD_PID" etcd "$WORK/etcd.log" 60

"${ON_LOAD_CPU[@]}" "$KUBE_APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none --cert-dir="$WORK/certs" \
    --tls-cert-file="$WORK/apiserver.crt" --tls-private-key-file="$WORK/apiserver.key" \
    --token-auth-file="$WORK/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$WORK/sa.pub" --service-account-signing-key-file="$WORK/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 --profiling=false > "$WORK/apiserver.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
for _ in $(seq 1 600); do
    kill -0 "$API_PID" 2>/dev/null || { echo "$SELF: kube-apiserver exited:" >&2; tail -30 "$WORK/apiserver.log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.pem" -H "Authorization: Bearer xipgate-bench-admin" "$API/readyz")" = 200 ] && break
    sleep 0.1
done
echo "$SELF: kube-apiserver $(basename "$(dirname "$KUBE_APISERVER")") ready on $API" >&2

gen() { "${ON_LOAD_CPU[@]}" python3 bench/gen_kube.py "$API" "$WORK/ca.pem" "$WORK/admin.token" "$@"; }
gen rbac "$NS" k8s/registry-rbac/roles.yaml "$WORK/xipgate.token"
echo "$SELF: writing $PODS pods in $SERVICES Services" >&2
gen create "$NS" "$SERVICES" "$PODS" "$POD_PORT" "$WORK"
{ read -r POD_LABEL; read -r SERVICE_LABEL; } < "$WORK/labels"

# --- the backend: one nginx worker on every pod address (0.0.0.0:8080 in the namespace).
NGINX_COMMON="daemon off; worker_processes 1; user root;"
cat > "$WORK/backend.conf" <<EOF
$NGINX_COMMON
pid $WORK/backend.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen $POD_PORT reuseport backlog=4096; location / { return 200 "backend says hello\n"; } }
}
EOF
"${ON_LOAD_CPU[@]}" "$NGINX" -p "$WORK" -e "$WORK/backend-error.log" -c "$WORK/backend.conf" > "$WORK/backend.out" 2>&1 &
PIDS+=("$!")

# --- xipgate
XIP_PID=
xipgate_start() { # xipgate_start EUREKA(0|1) [KUBERNETES(1|0)]: the sources to read
    local eureka="    eureka:\n      enabled: false" kube=""
    [ "$1" = 1 ] && eureka="    eureka:\n      urls: [\"http://127.0.0.1:$EUREKA_PORT/eureka\"]\n      interval: 10s\n      timeout: 10s"
    [ "${2:-1}" = 1 ] && kube="    kubernetes:\n      api_url: $API\n      token_file: $WORK/xipgate.token\n      ca_file: $WORK/ca.pem\n      namespaces: [$NS]"
    cat > "$WORK/xipgate.yaml" <<EOF
version: 1
threads: 1
pid_file: $WORK/xipgate.pid
upgrade_sock: $WORK/xipgate_upgrade.sock
xipgate:
  listen: ["127.0.0.1:$XIP_PORT"]
  domains: ["$DOMAIN"]
  registry:
$(printf "$eureka")
$(printf "$kube")
    startup_wait: 120s
  upstream:
    allow: ["10.244.0.0/16", "127.0.0.0/8"]
  console:
    listen: 127.0.0.1:$CONSOLE_PORT
  log:
    access: false
EOF
    XIP_STARTED=$(now)
    RUST_LOG=${RUST_LOG:-warn} "${ON_PROXY_CPU[@]}" "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" >> "$WORK/xipgate.log" 2>&1 &
    XIP_PID=$!
    PIDS+=("$XIP_PID")
}
xipgate_stop() {
    [ -n "$XIP_PID" ] || return 0
    bench_stop "$XIP_PID" 5
    XIP_PID=
}
# until_status STATUS COUNT SECONDS: polls /metrics every 20 ms until xipgate_instances{status}
# is COUNT; prints the epoch time it was seen. Fails after SECONDS.
until_status() {
    python3 - "$CONSOLE/metrics" "$1" "$2" "$3" "$XIP_PID" <<'EOF'
import os, sys, time, urllib.request
url, status, want, secs, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
line = f'xipgate_instances{{status="{status}"}} '
deadline, seen = time.time() + secs, None
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"xipgate exited while waiting for {want} {status}")
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        seen = next((int(float(l.split()[-1])) for l in text.splitlines() if l.startswith(line)), None)
        if seen == want:
            print(f"{time.time():.3f}")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
sys.exit(f"xipgate_instances{{status={status!r}}} is {seen}, not {want}, after {secs} s")
EOF
}
rss_mb() { awk '/^VmRSS/ { printf "%.1f\n", $2 / 1024 }' "/proc/$XIP_PID/status"; }
kube_field() { # kube_field KEY: KEY of the Kubernetes source's detail in /api/v1/registry
    curl -s "$CONSOLE/api/v1/registry" | python3 -c "
import json, sys
s = [r for r in json.load(sys.stdin).get('registries', []) if r.get('kind') == 'kubernetes']
print(s[0]['detail'].get(sys.argv[1]) if s else None)" "$1"
}
# api_requests: LIST GET WATCH requests the API server has served for endpointslices and
# services so far (its own /metrics, apiserver_request_total).
api_requests() {
    curl -s --cacert "$WORK/ca.pem" -H "Authorization: Bearer xipgate-bench-admin" "$API/metrics" | python3 -c '
import re, sys
n = {"LIST": 0, "GET": 0, "WATCH": 0}
for l in sys.stdin:
    if l.startswith("apiserver_request_total{"):
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", l))
        if labels.get("resource") in ("endpointslices", "services") and labels.get("verb") in n:
            n[labels["verb"]] += int(float(l.split()[-1]))
print(n["LIST"], n["GET"], n["WATCH"])'
}

# --- 1. start → routed, RSS, events/s, API load at rest: the Kubernetes source alone.
echo "$SELF: phase 1: the Kubernetes source alone" >&2
xipgate_start 0
routed=$(until_status UP "$PODS" 120)
ready=$(python3 - "$CONSOLE/readyz" <<'EOF'
import sys, time, urllib.request
while True:
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200:
            break
    except OSError:
        pass
    time.sleep(0.02)
print(f"{time.time():.3f}")
EOF
)
result "start_to_routed_s $(python3 -c "print(f'{$routed - $XIP_STARTED:.2f}')") pods $PODS services $SERVICES"
result "start_to_readyz_s $(python3 -c "print(f'{$ready - $XIP_STARTED:.2f}')")"
for host in "$POD_LABEL" "$SERVICE_LABEL"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host.$DOMAIN" "http://127.0.0.1:$XIP_PORT/")
    [ "$code" = 200 ] || { echo "$SELF: $host.$DOMAIN answered $code through xipgate" >&2; tail -20 "$WORK/xipgate.log" >&2; exit 1; }
done
result "rss_loaded_mb $(rss_mb)"

# The pods in the first CHANGES Services (gen_kube.py spreads PODS evenly).
changed_pods=$(python3 -c "p, s, c = $PODS, $SERVICES, $CHANGES; print(sum(p // s + (i < p % s) for i in range(c)))")
# Live: the poller runs before the first write; applied = seen - first write started.
until_status OUT_OF_SERVICE "$changed_pods" 300 > "$WORK/seen-live.txt" &
POLLER=$!
sleep 0.5
read -r n first last < <(gen flip "$NS" "$SERVICES" "$PODS" "$CHANGES" 0 2> "$WORK/flip-live.txt")
[ "$n" = "$changed_pods" ] || { echo "$SELF: flipped $n pods, expected $changed_pods" >&2; exit 1; }
wait "$POLLER" || { echo "$SELF: the changes were not applied" >&2; exit 1; }
seen=$(cat "$WORK/seen-live.txt")
live=$(python3 -c "print(f'{$seen - $first:.2f}')")
lag=$(python3 -c "print(f'{max(0, $seen - $last):.2f}')")
result "events_live slices $CHANGES pods $changed_pods written_in_s $(python3 -c "print(f'{$last - $first:.2f}')") applied_in_s $live (last applied ${lag}s after the last write) events_per_s $(python3 -c "print(round($CHANGES / max($live, 0.001)))")"

# Backlog: xipgate stopped while the changes are written back; the poller's first request
# waits in the listen queue, so it sees the table right after SIGCONT.
kill -STOP "$XIP_PID"
gen flip "$NS" "$SERVICES" "$PODS" "$CHANGES" 1 > /dev/null 2> "$WORK/flip-backlog.txt"
until_status UP "$PODS" 300 > "$WORK/seen-backlog.txt" &
POLLER=$!
sleep 0.5
t0=$(now)
kill -CONT "$XIP_PID"
wait "$POLLER" || { echo "$SELF: the backlog was not applied" >&2; exit 1; }
seen=$(cat "$WORK/seen-backlog.txt")
backlog=$(python3 -c "print(f'{$seen - $t0:.2f}')")
result "events_backlog slices $CHANGES pods $changed_pods applied_in_s $backlog events_per_s $(python3 -c "print(round($CHANGES / max($backlog, 0.001)))")"
result "rss_after_changes_mb $(rss_mb)"
result "source_status $(curl -s "$CONSOLE/api/v1/registry" | python3 -c '
import json, sys
s = [r for r in json.load(sys.stdin).get("registries", []) if r.get("kind") == "kubernetes"][0]
d = s["detail"]
print("publishes", d.get("publishes"), "errors", d.get("errors"), "api_requests", d.get("api_requests"),
      "reflectors", [(r["what"], r["lists"], r["watches"], r["events"]) for r in d.get("reflectors", [])])')"

read -r l0 g0 w0 < <(api_requests)
r0=$(kube_field api_requests)
sleep "$REST"
read -r l1 g1 w1 < <(api_requests)
r1=$(kube_field api_requests)
per_min() { python3 -c "print(round(($2 - $1) * 60 / $REST, 2))" "$1" "$2"; }
client=n/a
[ "$r0" != None ] && [ "$r1" != None ] && client=$(per_min "$r0" "$r1")
result "api_at_rest_per_min over ${REST}s: list $(per_min "$l0" "$l1") get $(per_min "$g0" "$g1") watch $(per_min "$w0" "$w1") (the API server's count, its own loopback informers and repair loops included); xipgate's own count (detail.api_requests) $client"
result "rss_at_rest_mb $(rss_mb)"
xipgate_stop

# --- 2. per-request cost: a pod host from Kubernetes, an instance host from Eureka.
echo "$SELF: phase 2: per-request cost, Kubernetes and Eureka in one process" >&2
mkdir -p "$WORK/eureka"
python3 bench/gen_registry.py "$PODS" "$POD_PORT" "$WORK/eureka" > /dev/null
{ read -r EUREKA_LABEL; read -r _; } < "$WORK/eureka/labels"
"${ON_LOAD_CPU[@]}" python3 bench/cost/eureka.py "$EUREKA_PORT" "$WORK/eureka" > "$WORK/eureka.log" 2>&1 &
PIDS+=("$!")
# The same PODS instances from the stub Eureka alone, for memory at the same commit.
xipgate_start 1 0
until_status UP "$PODS" 120 > /dev/null
result "rss_eureka_only_mb $(rss_mb) (Eureka $PODS instances, the same xipgate)"
xipgate_stop
xipgate_start 1
until_status UP "$((PODS * 2))" 120 > /dev/null
for host in "$POD_LABEL" "$EUREKA_LABEL"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host.$DOMAIN" "http://127.0.0.1:$XIP_PORT/")
    [ "$code" = 200 ] || { echo "$SELF: $host.$DOMAIN answered $code through xipgate" >&2; exit 1; }
done
CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
: > "$WORK/rows.txt"
measure() { # measure ROW HOST
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Host: $2.$DOMAIN" "http://127.0.0.1:$XIP_PORT/" > /dev/null
    local before after line
    before=$(ticks "$XIP_PID")
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/report.lua -H "Host: $2.$DOMAIN" \
        "http://127.0.0.1:$XIP_PORT/" > "$WORK/wrk-$1-$ROUND.txt"
    after=$(ticks "$XIP_PID")
    line=$(grep '^RESULT ' "$WORK/wrk-$1-$ROUND.txt") || { cat "$WORK/wrk-$1-$ROUND.txt" >&2; exit 1; }
    echo "$1 $ROUND ${line#RESULT } $((after - before))" >> "$WORK/rows.txt"
    echo "  $1 (round $ROUND): ${line#RESULT } cpu_ticks $((after - before))" >&2
}
for ROUND in $(seq 1 "$ROUNDS"); do
    if [ $((ROUND % 2)) = 1 ]; then
        measure pod-kubernetes "$POD_LABEL"; measure instance-eureka "$EUREKA_LABEL"
    else
        measure instance-eureka "$EUREKA_LABEL"; measure pod-kubernetes "$POD_LABEL"
    fi
done
python3 - "$WORK/rows.txt" "$CLK_TCK" <<'EOF' | tee -a "$RESULTS" >&2
import statistics, sys
rows, tck = {}, int(sys.argv[2])
for l in open(sys.argv[1]):
    row, _, req, dur, p50, p99, non2xx, errs, ticks = l.split()
    rows.setdefault(row, []).append((int(req), int(dur), int(p50), int(p99), int(non2xx), int(errs), int(ticks)))
for row, rs in rows.items():
    rps = statistics.median(r[0] / (r[1] / 1e6) for r in rs)
    us = statistics.median(r[6] / tck * 1e6 / r[0] for r in rs)
    p50 = statistics.median(r[2] for r in rs)
    p99 = statistics.median(r[3] for r in rs)
    bad = sum(r[4] + r[5] for r in rs)
    print(f"per_request {row}: {rps:.0f} req/s, {us:.1f} CPU µs/request, p50 {p50} µs, p99 {p99} µs, non-2xx+errors {bad} (median of {len(rs)} rounds)")
EOF
result "rss_both_sources_mb $(rss_mb) (Kubernetes $PODS + Eureka $PODS)"
xipgate_stop

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
result "machine: $(nproc) CPUs, $CPU_MODEL; commit $(git rev-parse --short HEAD 2>/dev/null || echo ?); $(date -u +%Y-%m-%d)"
echo "$SELF: results in $RESULTS:" >&2
cat "$RESULTS"
