#!/usr/bin/env bash
# Steering benchmark (issue 26, docs/steering.md): what a weighted, a sticky and a pinned
# service-host request cost beside a plain round-robin one, with nginx's own `weight=` and
# `hash $cookie_...` upstreams as the peers. Everything binds 127.0.0.1. Not part of
# `cargo test`.
#
#   bench/steer.sh                  # builds target/release/xipgate if it is missing
#   ROUNDS=3 DURATION=6 bench/steer.sh
#
# A script of its own, not rows of bench/run.sh: its rows need three backends (run.sh has
# one), a registry of three services over them with weights in their metadata, per-service
# `xipgate.balance` settings and request headers per row (a cookie taken from a first
# answer, a pin header), none of which run.sh's sizes x targets loop has; and they answer
# one question (does steering keep the plain service host's cost?), which needs neither
# run.sh's registry sizes nor its HTTPS and refresh rows.
#
# Rows (each a wrk -t1 -c$CONNS keep-alive run of $DURATION s after $WARMUP s, $ROUNDS
# rounds interleaved, each round in an order rotated by one):
#   nginx           nginx, a plain round-robin upstream over the three backends (keepalive)
#   nginx-weight    the same with `server ... weight=1/2/3`
#   nginx-hash      the same with `hash $cookie_xipgate_instance consistent`, the request
#                   carrying that cookie (nginx variable names take no '-', so nginx's
#                   cookie is spelled with '_'; the value is the same instance label)
#   nginx-aa        a second nginx identical to `nginx`: the noise floor of the ratios
#   plain           xipgate, service host plain-service.<domain>: three instances, no
#                   weights, plain round robin
#   weighted        service host weighted-service.<domain>: the same three backends, Eureka
#                   metadata `weight` 1, 2, 3 (nginx's smooth weighted round robin)
#   sticky          service host sticky-service.<domain> (`xipgate.balance.services.
#                   sticky-service.sticky: true`), the request carrying the cookie
#                   `xipgate-instance=<label>` its first answer set
#   pinned          service host plain-service.<domain>, the request carrying
#                   `X-Xipgate-Instance: <label of one of its instances>`
# The xipgate rows are one xipgate process (one config, one table): only the host and the
# request's headers differ. Before measuring, each row's routing is checked: the weighted
# rows spread 60 requests 10/20/30, the sticky, pinned and hash rows stay on one backend,
# and a sticky request with its cookie gets no new Set-Cookie.
# CPU per request: user+sys ticks of the proxy's processes (nginx workers, xipgate) during
# the measured run / requests. The registry is a stand-in Eureka (nginx serving static
# /eureka/apps and an unchanged /eureka/apps/delta in the shape bench/standin.py takes
# from a recorded Eureka answer).
#
# Options: XIPGATE_BIN, ROUNDS (3), DURATION (8), WARMUP (2), CONNS (64), PIN (1: proxies
# on CPU $PROXY_CPU=1, wrk, the backends and the stand-in Eureka on $LOAD_CPU=0), KEEP
# (keep the work directory). Runs about 8 x ROUNDS x (DURATION + WARMUP) + 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/steer.sh
. bench/lib.sh

XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
DOMAIN=127-0-0-1.sslip.io
TARGETS="nginx plain weighted sticky pinned nginx-weight nginx-hash nginx-aa"

need nginx nginx
need wrk wrk
need python3 python3
need curl curl
need pgrep procps
[ "$PIN" = 0 ] || need taskset util-linux
needs_met
NGINX=$(sbin_tool nginx)
if [ ! -x "$XIPGATE_BIN" ]; then
    echo "$SELF: building $XIPGATE_BIN (cargo build --release)" >&2
    cargo build --release --bin xipgate >&2
fi
ON_PROXY_CPU=() ON_LOAD_CPU=()
if [ "$PIN" != 0 ]; then ON_PROXY_CPU=(taskset -c "$PROXY_CPU") ON_LOAD_CPU=(taskset -c "$LOAD_CPU"); fi

bench_workdir steer
read -r B1 B2 B3 EUREKA_PORT NGINX_PORT NGINX_AA_PORT NGINX_W_PORT NGINX_H_PORT XG_PORT \
    XG_CONSOLE < <(free_ports 10)
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

# The stand-in Eureka's files: three services over the same three backends.
python3 - "$WORK/eureka" "$B1" "$B2" "$B3" <<'EOF'
import json, os, sys
sys.path.insert(0, "bench")
import standin
out, ports = sys.argv[1], [int(p) for p in sys.argv[2:5]]
# Spring-style instanceIds (`<pod>:<app>:8080`, label `<pod>-8080`), one pod per backend.
PODS = ["7d9f8b6c5-x2k4q", "7d9f8b6c5-m8n2z", "7d9f8b6c5-q4w7t"]
insts, labels = [], []
for app, weights in (("plain-service", None), ("weighted-service", [1, 2, 3]),
                     ("sticky-service", None)):
    for n, (pod, port) in enumerate(zip(PODS, ports)):
        pod = f"{app}-{pod}"
        meta = {"management.port": "8080", "zone": "zone-a"}
        if weights:
            meta["weight"] = str(weights[n])
        insts.append(standin.instance(app, f"{pod}:{app}:8080", pod, "127.0.0.1", port,
                                      metadata=meta, registered=1700000000000,
                                      renewed=1700000030000 - 90000))
        labels.append(f"{app} {n + 1} {pod}-8080")
code = standin.hashcode(i["status"] for i in insts)
os.makedirs(out, exist_ok=True)
for name, doc in (("apps.json", standin.applications(insts, code)),
                  ("delta.json", standin.applications([], code, version=2))):
    with open(os.path.join(out, name), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
with open(os.path.join(out, "labels"), "w") as f:
    f.write("\n".join(labels) + "\n")
EOF
label_of() { awk -v a="$1" -v n="$2" '$1 == a && $2 == n { print $3 }' "$WORK/eureka/labels"; }

# Backends (answers of equal length that say which backend it was) and the stand-in Eureka.
nginx_conf load "
server { listen 127.0.0.1:$B1; location / { default_type text/plain; return 200 \"backend 1 says hi\n\"; } }
server { listen 127.0.0.1:$B2; location / { default_type text/plain; return 200 \"backend 2 says hi\n\"; } }
server { listen 127.0.0.1:$B3; location / { default_type text/plain; return 200 \"backend 3 says hi\n\"; } }
server { listen 127.0.0.1:$EUREKA_PORT; default_type application/json;
  location = /eureka/apps { alias $WORK/eureka/apps.json; }
  location = /eureka/apps/ { alias $WORK/eureka/apps.json; }
  location = /eureka/apps/delta { alias $WORK/eureka/delta.json; } }"
start load load "$NGINX" -p "$WORK" -e "$WORK/load-error.log" -c "$WORK/load.conf"

# The nginx rows: one upstream each, otherwise the same proxy.
PROXY_LOC='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
upstream() { # upstream HEAD-LINE W1 W2 W3
    printf 'upstream backend { %s server 127.0.0.1:%s%s; server 127.0.0.1:%s%s; server 127.0.0.1:%s%s; keepalive 64; }' \
        "$1" "$B1" "$2" "$B2" "$3" "$B3" "$4"
}
for n in nginx nginx-aa nginx-weight nginx-hash; do
    case $n in
        nginx) port=$NGINX_PORT up=$(upstream "" "" "" "") ;;
        nginx-aa) port=$NGINX_AA_PORT up=$(upstream "" "" "" "") ;;
        nginx-weight) port=$NGINX_W_PORT up=$(upstream "" " weight=1" " weight=2" " weight=3") ;;
        nginx-hash) port=$NGINX_H_PORT up=$(upstream "hash \$cookie_xipgate_instance consistent;" "" "" "") ;;
    esac
    nginx_conf "$n" "$up server { listen 127.0.0.1:$port; location / { $PROXY_LOC } }"
    start "$n" proxy "$NGINX" -p "$WORK" -e "$WORK/$n-error.log" -c "$WORK/$n.conf"
    case $n in
        nginx) NGINX_PID=$STARTED ;;
        nginx-aa) NGINX_AA_PID=$STARTED ;;
        nginx-weight) NGINX_W_PID=$STARTED ;;
        nginx-hash) NGINX_H_PID=$STARTED ;;
    esac
done

# One xipgate for the four xipgate rows.
cat > "$WORK/xipgate.yaml" <<EOF
threads: 1
pid_file: $WORK/xipgate.pid
upgrade_sock: $WORK/xipgate.sock
xipgate:
  listen: ["127.0.0.1:$XG_PORT"]
  domains: ["$DOMAIN"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:$EUREKA_PORT/eureka"]
  upstream:
    allow: ["127.0.0.0/8"]
  console:
    listen: 127.0.0.1:$XG_CONSOLE
  log:
    access: false
  balance:
    services:
      sticky-service:
        sticky: true
EOF
RUST_LOG=warn start xipgate proxy "$XIPGATE_BIN" -c "$WORK/xipgate.yaml"
XG_PID=$STARTED
# Pingora takes SIGTERM (lib.sh's cleanup) as a graceful shutdown of up to 5 minutes;
# SIGINT is its fast one.
stop_xipgate() { bench_stop "$XG_PID" 5; }
trap 'stop_xipgate; bench_cleanup' EXIT
wait_http "http://127.0.0.1:$XG_CONSOLE/readyz" "$XG_PID" xipgate "$WORK/xipgate.log" 60
for (( i = 0; i < 300; i++ )); do # the table is loaded when the three service hosts answer
    ok=0
    for s in plain weighted sticky; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $s-service.$DOMAIN" "http://127.0.0.1:$XG_PORT/")
        [ "$code" = 200 ] && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && break
    sleep 0.1
done
[ "$ok" = 3 ] || { echo "$SELF: the service hosts did not answer 200 in 30 s" >&2; cat "$WORK/xipgate.log" >&2; exit 1; }

# The request keys: a pin for plain-service's second instance; the sticky cookie its first
# answer sets; nginx's hash cookie with the same kind of value.
PIN_LABEL=$(label_of plain-service 2)
SET_COOKIE=$(curl -s -o /dev/null -D - -H "Host: sticky-service.$DOMAIN" "http://127.0.0.1:$XG_PORT/" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(xipgate-instance=[^;]*\).*/\1/p')
[ -n "$SET_COOKIE" ] || { echo "$SELF: sticky-service's first answer set no xipgate-instance cookie" >&2; exit 1; }
HASH_COOKIE="xipgate_instance=$(label_of sticky-service 1)"

# headers_of ROW: the wrk/curl arguments of a row, into HDR; port into PORT; pids into PROC.
headers_of() {
    HDR=()
    case $1 in
        nginx) PORT=$NGINX_PORT PROC="$NGINX_PID" ;;
        nginx-aa) PORT=$NGINX_AA_PORT PROC="$NGINX_AA_PID" ;;
        nginx-weight) PORT=$NGINX_W_PORT PROC="$NGINX_W_PID" ;;
        nginx-hash) PORT=$NGINX_H_PORT PROC="$NGINX_H_PID" HDR=(-H "Cookie: $HASH_COOKIE") ;;
        plain) PORT=$XG_PORT PROC="$XG_PID" HDR=(-H "Host: plain-service.$DOMAIN") ;;
        weighted) PORT=$XG_PORT PROC="$XG_PID" HDR=(-H "Host: weighted-service.$DOMAIN") ;;
        sticky) PORT=$XG_PORT PROC="$XG_PID" HDR=(-H "Host: sticky-service.$DOMAIN" -H "Cookie: $SET_COOKIE") ;;
        pinned) PORT=$XG_PORT PROC="$XG_PID" HDR=(-H "Host: plain-service.$DOMAIN" -H "X-Xipgate-Instance: $PIN_LABEL") ;;
    esac
}

# Every row must route as its name says before it is measured: 60 requests, the count per
# backend against what is expected, and for the sticky row no new cookie.
check() { # check ROW "N1 N2 N3"|one
    headers_of "$1"
    local got i
    got=$(for (( i = 0; i < 60; i++ )); do
        curl -s -H "Connection: close" "${HDR[@]}" "http://127.0.0.1:$PORT/"
    done | awk '{ c[$2]++ } END { printf "%d %d %d", c[1], c[2], c[3] }')
    case $2 in
        one) case $got in "60 0 0" | "0 60 0" | "0 0 60") ;; *) got="$got (expected all on one)" ;; esac ;;
        *) [ "$got" = "$2" ] || got="$got (expected $2)" ;;
    esac
    case $got in *expected*) echo "$SELF: $1 spread 60 requests $got" >&2; exit 1 ;; esac
    echo "  $1: 60 requests to backends 1/2/3: $got" >&2
}
check nginx "20 20 20"
check nginx-aa "20 20 20"
check nginx-weight "10 20 30"
check nginx-hash one
check plain "20 20 20"
check weighted "10 20 30"
check sticky one
check pinned "0 60 0"
headers_of sticky
if curl -s -o /dev/null -D - "${HDR[@]}" "http://127.0.0.1:$PORT/" | grep -qi '^set-cookie:'; then
    echo "$SELF: a sticky request with a valid cookie got a new Set-Cookie" >&2
    exit 1
fi

RESULTS=$WORK/results.tsv
: > "$RESULTS"
measure() { # measure TARGET ROUND
    headers_of "$1"
    bench_wrk "$1" "$2" "$PORT" "$PROC" "${HDR[@]}"
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
cpu = {t: statistics.median(cpu_us(r) for r in rows[t]) for t in targets}
def base(t): return "nginx" if t.startswith("nginx") else "plain"
print("| row | requests/s (median, range) | CPU µs/request (median, range) | CPU vs plain / nginx | p50 µs | p99 µs | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in targets:
    rs = rows[t]
    v = [rps(r) for r in rs]
    c = [cpu_us(r) for r in rs]
    print(f"| {t} | {statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f}) | "
          f"{cpu[t]:.1f} ({min(c):.1f}-{max(c):.1f}) | {cpu[t] / cpu[base(t)]:.3f} | "
          f"{statistics.median(r[3] for r in rs)} | {statistics.median(r[4] for r in rs)} | "
          f"{sum(r[5] + r[6] for r in rs)} |")
print()
def per_round(t, b):
    by = {r[0]: r for r in rows[b]}
    return sorted(cpu_us(r) / cpu_us(by[r[0]]) for r in rows[t] if r[0] in by)
for t in ("weighted", "sticky", "pinned"):
    q = per_round(t, "plain")
    verdict = "met" if cpu[t] / cpu["plain"] <= 1.05 else "NOT met"
    print(f"{t} vs plain, CPU per request: {cpu[t] / cpu['plain']:.3f}x (per round: "
          f"{', '.join(f'{x:.3f}' for x in q)}) (target: at most 1.05: {verdict})")
for t in ("nginx-weight", "nginx-hash", "nginx-aa"):
    q = per_round(t, "nginx")
    print(f"{t} vs nginx, CPU per request: {cpu[t] / cpu['nginx']:.3f}x (per round: "
          f"{', '.join(f'{x:.3f}' for x in q)})" + ("  <- the noise floor" if t == "nginx-aa" else ""))
EOF
