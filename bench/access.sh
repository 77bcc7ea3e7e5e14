#!/usr/bin/env bash
# Access benchmark: what a signed-in request costs at the edge, beside an open one, nginx,
# and the way teams do it today (nginx auth_request in front of oauth2-proxy v7).
# Everything binds 127.0.0.1. Not part of `cargo test`.
#
#   bench/access.sh                 # builds target/release/xipgate if it is missing
#   ROUNDS=2 DURATION=5 bench/access.sh
#
# Rows (each a wrk -t1 -c$CONNS keep-alive run of $DURATION s after $WARMUP s, $ROUNDS
# rounds interleaved, each round in an order rotated by one):
#   nginx           nginx as a plain reverse proxy (the reference)
#   nginx-aa        a second, identical nginx: the noise floor of the ratios
#   open            xipgate without access rules, an instance host
#   session         xipgate with a rule `authenticated: true`, the request carrying a
#                   session cookie (sealed by bench/access_seal.py as the login would)
#   bearer          the same xipgate, `Authorization: Bearer` with a real client-credentials
#                   token from the provider
#   oauth2-proxy    nginx with auth_request to oauth2-proxy (cookie sessions), the request
#                   carrying the session oauth2-proxy set after a real login
# CPU per request: user+sys ticks of the proxy's processes (nginx workers, oauth2-proxy,
# xipgate) during the measured run / requests. The provider is Spring Authorization Server
# (it/auth-server, built by it/build.sh); oauth2-proxy is built from the Go module proxy into
# ~/.cache/xipgate/bin once (go install github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION).
#
# Options: XIPGATE_BIN, ROUNDS (3), DURATION (8), WARMUP (2), CONNS (64), PIN (1: proxies
# on CPU $PROXY_CPU=1, wrk and the backend on $LOAD_CPU=0), KEEP (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/access.sh
. bench/lib.sh

O2P_VERSION=v7.15.6
XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
DOMAIN=127-0-0-1.sslip.io
TARGETS="nginx open session bearer oauth2-proxy nginx-aa"
O2P=${O2P:-$HOME/.cache/xipgate/bin/oauth2-proxy}
IDP_JAR=it/auth-server/target/auth-server.jar

need nginx nginx
need wrk wrk
need python3 python3
need curl curl
need java openjdk-17-jdk-headless
need go "golang (for oauth2-proxy)"
[ "$PIN" = 0 ] || need taskset util-linux
python3 -c 'import cryptography' 2>/dev/null || { echo "$SELF: python3-cryptography is missing: apt-get install python3-cryptography" >&2; NEEDS_MISSING=1; }
needs_met
NGINX=$(sbin_tool nginx)
[ -f "$IDP_JAR" ] || { echo "$SELF: building it/ (the provider)" >&2; it/build.sh >&2; }
if [ ! -x "$O2P" ]; then
    echo "$SELF: building oauth2-proxy $O2P_VERSION into $(dirname "$O2P")" >&2
    mkdir -p "$(dirname "$O2P")"
    GOBIN=$(dirname "$O2P") go install "github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION" >&2
fi
if [ ! -x "$XIPGATE_BIN" ]; then
    echo "$SELF: building $XIPGATE_BIN (cargo build --release)" >&2
    cargo build --release --bin xipgate >&2
fi
ON_PROXY_CPU=() ON_LOAD_CPU=()
if [ "$PIN" != 0 ]; then ON_PROXY_CPU=(taskset -c "$PROXY_CPU") ON_LOAD_CPU=(taskset -c "$LOAD_CPU"); fi

bench_workdir access
read -r BACKEND_PORT EUREKA_PORT NGINX_PORT NGINX_AA_PORT OPEN_PORT OPEN_CONSOLE ACC_PORT \
    ACC_CONSOLE IDP_PORT O2P_PORT NGINX_O2P_PORT < <(free_ports 11)
NGINX_COMMON="daemon off; worker_processes 1; $( [ "$(id -u)" = 0 ] && echo 'user root;' )"
start() { # start NAME proxy|load CMD... -> pid in STARTED
    local wrap=("${ON_LOAD_CPU[@]}")
    [ "$2" = proxy ] && wrap=("${ON_PROXY_CPU[@]}")
    local name=$1
    shift 2
    "${wrap[@]}" "$@" > "$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}
nginx_conf() { # nginx_conf NAME HTTP-BLOCK-BODY
    printf '%s\npid %s;\nevents { worker_connections 1024; }\nhttp {\naccess_log off;\n%s\n}\n' \
        "$NGINX_COMMON" "$WORK/$1.pid" "$2" > "$WORK/$1.conf"
}
UPSTREAM="upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }"
PROXY_LOC='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'

# Backend and stub Eureka (static files from gen_registry.py: 10 instances).
python3 bench/gen_registry.py 10 "$BACKEND_PORT" "$WORK/eureka" > /dev/null
INSTANCE_LABEL=$(sed -n 1p "$WORK/eureka/labels")
nginx_conf load "
server { listen 127.0.0.1:$BACKEND_PORT; location / { default_type text/plain; return 200 \"hello from backend\n\"; } }
server { listen 127.0.0.1:$EUREKA_PORT; default_type application/json;
  location = /eureka/apps { alias $WORK/eureka/apps.json; }
  location = /eureka/apps/ { alias $WORK/eureka/apps.json; }
  location = /eureka/apps/delta { alias $WORK/eureka/delta.json; } }"
start load load "$NGINX" -p "$WORK" -e "$WORK/load-error.log" -c "$WORK/load.conf"

# The reference and its control.
for n in nginx nginx-aa; do
    port=$NGINX_PORT; [ "$n" = nginx-aa ] && port=$NGINX_AA_PORT
    nginx_conf "$n" "$UPSTREAM server { listen 127.0.0.1:$port; location / { $PROXY_LOC } }"
    start "$n" proxy "$NGINX" -p "$WORK" -e "$WORK/$n-error.log" -c "$WORK/$n.conf"
    [ "$n" = nginx ] && NGINX_PID=$STARTED || NGINX_AA_PID=$STARTED
done

# The provider, with oauth2-proxy's callback registered (127.x matches on any port).
start idp load java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m -jar "$IDP_JAR" \
    --server.port="$IDP_PORT" --xipgate.redirect-uris="http://127.0.0.1:$NGINX_O2P_PORT/oauth2/callback" \
    --xipgate.post-logout-redirect-uris="http://127.0.0.1:$NGINX_O2P_PORT/" --xipgate.token-ttl=3600000ms
IDP_PID=$STARTED
ISSUER="http://127.0.0.1:$IDP_PORT"
wait_http "$ISSUER/.well-known/openid-configuration" "$IDP_PID" provider "$WORK/idp.log" 120

# oauth2-proxy behind nginx auth_request, as its documentation configures it.
COOKIE_SECRET=$(python3 -c 'import os,base64; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
GOMAXPROCS=1 start o2p proxy "$O2P" --provider=oidc --oidc-issuer-url="$ISSUER" \
    --client-id=xipgate --client-secret=xipgate-secret --code-challenge-method=S256 \
    --redirect-url="http://127.0.0.1:$NGINX_O2P_PORT/oauth2/callback" \
    --cookie-secret="$COOKIE_SECRET" --cookie-secure=false --email-domain='*' \
    --http-address="127.0.0.1:$O2P_PORT" --reverse-proxy=true --set-xauthrequest=true \
    --upstream=static://202 --skip-provider-button=true --request-logging=false \
    --auth-logging=false --standard-logging=false
O2P_PID=$STARTED
nginx_conf nginx-o2p "$UPSTREAM
upstream o2p { server 127.0.0.1:$O2P_PORT; keepalive 64; }
server { listen 127.0.0.1:$NGINX_O2P_PORT;
  location /oauth2/ { proxy_pass http://o2p; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header Host \$host; proxy_set_header X-Real-IP \$remote_addr; proxy_set_header X-Auth-Request-Redirect \$request_uri; }
  location = /oauth2/auth { proxy_pass http://o2p; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header Host \$host; proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header Content-Length \"\"; proxy_pass_request_body off; }
  location / { auth_request /oauth2/auth; error_page 401 = /oauth2/sign_in;
    auth_request_set \$user \$upstream_http_x_auth_request_user; proxy_set_header X-User \$user; $PROXY_LOC } }"
start nginx-o2p proxy "$NGINX" -p "$WORK" -e "$WORK/nginx-o2p-error.log" -c "$WORK/nginx-o2p.conf"
NGINX_O2P_PID=$STARTED
wait_http "http://127.0.0.1:$O2P_PORT/ping" "$O2P_PID" oauth2-proxy "$WORK/o2p.log" 60
O2P_COOKIE=$(python3 bench/access_login.py "http://127.0.0.1:$NGINX_O2P_PORT/oauth2/start?rd=%2F" alice alice-pw _oauth2_proxy)

# xipgate twice: open, and with a rule that needs a signed-in identity.
KEY_FILE=$WORK/session-keys
python3 -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())' > "$KEY_FILE"
echo xipgate-secret > "$WORK/client-secret"
xipgate_conf() { # xipgate_conf NAME PORT CONSOLE [ACCESS-YAML]
    cat > "$WORK/$1.yaml" <<EOF
threads: 1
pid_file: $WORK/$1.pid
upgrade_sock: $WORK/$1.sock
xipgate:
  listen: ["127.0.0.1:$2"]
  domains: ["$DOMAIN"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:$EUREKA_PORT/eureka"]
  upstream:
    allow: ["127.0.0.0/8"]
  console:
    listen: 127.0.0.1:$3
  log:
    access: false
${4:-}
EOF
}
xipgate_conf open "$OPEN_PORT" "$OPEN_CONSOLE"
xipgate_conf access "$ACC_PORT" "$ACC_CONSOLE" "  access:
    login:
      issuer: $ISSUER
      client_id: xipgate
      client_secret_file: $WORK/client-secret
      keys_file: $KEY_FILE
    bearer:
      issuer: $ISSUER
      audiences: [xipgate]
    rules:
      - name: signed-in
        authenticated: true"
for x in open access; do
    RUST_LOG=warn start "$x" proxy "$XIPGATE_BIN" -c "$WORK/$x.yaml"
    [ "$x" = open ] && OPEN_PID=$STARTED || ACC_PID=$STARTED
done
wait_http "http://127.0.0.1:$OPEN_CONSOLE/readyz" "$OPEN_PID" "xipgate (open)" "$WORK/open.log" 60
wait_http "http://127.0.0.1:$ACC_CONSOLE/readyz" "$ACC_PID" "xipgate (access)" "$WORK/access.log" 60
SESSION=$(python3 bench/access_seal.py "$KEY_FILE" _xipgate alice devs 7200)
TOKEN=$(curl -s -u robot:robot-secret -d grant_type=client_credentials "$ISSUER/oauth2/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
HOST="$INSTANCE_LABEL.$DOMAIN"

# Every row must answer 200 before it is measured, and the access edge must refuse without.
check() { # check NAME EXPECTED URL CURL-ARGS...
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "${@:4}" "$3")
    [ "$code" = "$2" ] || { echo "$SELF: $1 answered $code, expected $2" >&2; exit 1; }
}
check nginx 200 "http://127.0.0.1:$NGINX_PORT/"
check open 200 "http://127.0.0.1:$OPEN_PORT/" -H "Host: $HOST"
check "access without credentials" 401 "http://127.0.0.1:$ACC_PORT/" -H "Host: $HOST"
check session 200 "http://127.0.0.1:$ACC_PORT/" -H "Host: $HOST" -H "Cookie: _xipgate=$SESSION"
check bearer 200 "http://127.0.0.1:$ACC_PORT/" -H "Host: $HOST" -H "Authorization: Bearer $TOKEN"
check "oauth2-proxy without a session" 401 "http://127.0.0.1:$NGINX_O2P_PORT/oauth2/auth"
check oauth2-proxy 200 "http://127.0.0.1:$NGINX_O2P_PORT/" -H "Cookie: $O2P_COOKIE"

RESULTS=$WORK/results.tsv
: > "$RESULTS"
measure() { # measure TARGET ROUND
    local port pids hdr=()
    case $1 in
        nginx) port=$NGINX_PORT pids="$NGINX_PID" ;;
        nginx-aa) port=$NGINX_AA_PORT pids="$NGINX_AA_PID" ;;
        open) port=$OPEN_PORT pids="$OPEN_PID" hdr=(-H "Host: $HOST") ;;
        session) port=$ACC_PORT pids="$ACC_PID" hdr=(-H "Host: $HOST" -H "Cookie: _xipgate=$SESSION") ;;
        bearer) port=$ACC_PORT pids="$ACC_PID" hdr=(-H "Host: $HOST" -H "Authorization: Bearer $TOKEN") ;;
        oauth2-proxy) port=$NGINX_O2P_PORT pids="$NGINX_O2P_PID $O2P_PID" hdr=(-H "Cookie: $O2P_COOKIE") ;;
    esac
    bench_wrk "$1" "$2" "$port" "$pids" "${hdr[@]}"
}
bench_rounds measure

python3 - "$RESULTS" "$(getconf CLK_TCK)" "$TARGETS" <<'EOF'
import statistics, sys
path, tck, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
rows = {}
for line in open(path):
    t, rnd, req, dur, p50, p99, non2xx, errs, ticks = line.split()
    rows.setdefault(t, []).append((int(rnd), int(req), int(dur), int(p50), int(p99), int(non2xx), int(errs), int(ticks)))
def rps(r): return r[1] / (r[2] / 1e6)
def cpu_us(r): return r[7] / tck * 1e6 / r[1]
nginx = {r[0]: r for r in rows["nginx"]}
print("| row | requests/s (median, range) | vs nginx | CPU µs/request | p50 µs | p99 µs | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in targets:
    rs = rows[t]
    v = [rps(r) for r in rs]
    ratio = statistics.median(rps(r) / rps(nginx[r[0]]) for r in rs)
    print(f"| {t} | {statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f}) | {ratio:.2f} | "
          f"{statistics.median(cpu_us(r) for r in rs):.1f} | {statistics.median(r[3] for r in rs)} | "
          f"{statistics.median(r[4] for r in rs)} | {sum(r[5] for r in rs)} |")
med = {t: statistics.median(rps(r) for r in rows[t]) for t in targets}
cpu = {t: statistics.median(cpu_us(r) for r in rows[t]) for t in targets}
print(f"\nsession vs open, CPU per request: {cpu['session'] / cpu['open']:.3f}x (target: within 1.10)")
print(f"session vs oauth2-proxy, requests/s: {med['session'] / med['oauth2-proxy']:.2f}x (target: at least 3)")
EOF
