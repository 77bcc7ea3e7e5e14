#!/usr/bin/env bash
# The console at a large registry: how big each page and API answer is and how long xipgate
# takes to produce it, with live traffic in the per-instance series.
#
#     bash bench/console.sh            # N=100000 instances, PER=100 per service (1,000 services)
#     N=10000 PER=10 bash bench/console.sh
#
# A stub Eureka (nginx serving bench/gen_registry.py's registry) feeds a release xipgate;
# wrk sends load for LOAD seconds (default 10) through one service host and each of
# TRAFFIC_INSTANCES instance hosts (curl, one request each), so the traffic series exist.
# Then each URL is fetched ROUNDS times (default 21) by curl on a fresh connection: the
# median total time and the body size are printed as a Markdown table. /healthz is the
# control row (the console's cheapest answer: what curl and the connection cost).
# Also printed: xipgate's resident memory after loading the registry and after the load.
set -euo pipefail
SELF=bench/console.sh
cd "$(dirname "$0")/.."
. bench/lib.sh

N=${N:-100000}
PER=${PER:-100}
ROUNDS=${ROUNDS:-21}
LOAD=${LOAD:-10}
TRAFFIC_INSTANCES=${TRAFFIC_INSTANCES:-2000}
DOMAIN=127-0-0-1.sslip.io
need nginx nginx
need wrk wrk
need curl curl
need python3 python3
needs_met
NGINX=$(sbin_tool nginx)
XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
[ -x "$XIPGATE_BIN" ] || cargo build --release --locked
bench_workdir console

read -r BACKEND_PORT EUREKA_PORT XIP_PORT CONSOLE_PORT < <(free_ports 4)
python3 bench/gen_registry.py "$N" "$BACKEND_PORT" "$WORK/eureka" "$PER"
{ read -r INSTANCE_LABEL; read -r SERVICE_LABEL; } < "$WORK/eureka/labels"

cat > "$WORK/nginx.conf" <<EOF
daemon off; worker_processes 1; $( [ "$(id -u)" = 0 ] && echo 'user root;' )
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
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
      interval: 30s
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
RUST_LOG=warn "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" > "$WORK/xipgate.log" 2>&1 &
XIP_PID=$!
PIDS+=("$XIP_PID")
wait_http "http://127.0.0.1:$CONSOLE_PORT/readyz" "$XIP_PID" xipgate "$WORK/xipgate.log" 120
rss() { awk '/VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$XIP_PID/status"; }
RSS_LOADED=$(rss)

# Traffic: one instance request each to TRAFFIC_INSTANCES instances, then wrk on a service.
curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/instances?limit=$TRAFFIC_INSTANCES" |
    python3 -c "import json,sys; print('\n'.join(i['label'] for i in json.load(sys.stdin)['instances']))" \
        > "$WORK/instances"
while read -r label; do
    curl -s -o /dev/null -H "Host: $label.$DOMAIN" "http://127.0.0.1:$XIP_PORT/"
done < "$WORK/instances"
wrk -t1 -c8 -d"${LOAD}s" -H "Host: $SERVICE_LABEL.$DOMAIN" "http://127.0.0.1:$XIP_PORT/" > "$WORK/wrk.txt"
RSS_TRAFFIC=$(rss)
SERIES=$(curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/traffic" |
    python3 -c "import json,sys; k=json.load(sys.stdin)['kept']; print(k['services'], 'service and', k['instances'], 'instance series')")

POD=${INSTANCE_LABEL%-8080}
printf '| what | URL | bytes | median ms | max ms |\n|---|---|---:|---:|---:|\n'
row() { # row WHAT PATH
    local times=() t size
    for _ in $(seq 1 "$ROUNDS"); do
        read -r size t < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "http://127.0.0.1:$CONSOLE_PORT$2")
        times+=("$t")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v what="$1" -v url="$2" -v size="$size" \
        '{ t[NR] = $1 } END { printf "| %s | `%s` | %d | %.1f | %.1f |\n", what, url, size, t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }'
}
row "control: health" "/healthz"
row "page" "/"
row "page, busiest first" "/?sort=rps"
row "page, filtered to one instance" "/?q=$POD"
row "page, one service unfolded" "/?open=$SERVICE_LABEL"
row "page, one service's own view" "/?service=$SERVICE_LABEL"
row "live charts of the page" "/api/v1/traffic"
row "API services (a page of 500)" "/api/v1/services"
row "API one service (a page of its instances)" "/api/v1/services/$SERVICE_LABEL"
row "API instances filtered" "/api/v1/instances?q=$POD"
row "metrics" "/metrics"
row "legacy /api/services (a page of 500)" "/api/services"
echo
echo "N=$N instances in $((N / PER)) services; xipgate RSS $RSS_LOADED after loading, $RSS_TRAFFIC after the load ($SERIES)"
grep -E "Requests/sec" "$WORK/wrk.txt" | sed 's/^/wrk on the service host: /'
