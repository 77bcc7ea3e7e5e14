#!/usr/bin/env bash
# What one request costs each proxy, counted rather than timed (issue 27): system calls per
# request (strace -c over every thread) and user-space instructions per request (valgrind's
# callgrind, counters zeroed before and dumped after a fixed number of requests, minus the
# idle rate over the same time), for xipgate (both engines), nginx and HAProxy, one worker
# each, the same backend, the same certificate. Counts do not move with the machine's noise;
# every row is measured twice and the script prints how far the two land apart.
#
#   bench/cost.sh                                  # builds target/release/xipgate if missing
#   PROXIES="xipgate nginx" ROWS="ka-instance hs-full" COUNT=syscalls bench/cost.sh
#
# Options (environment):
#   XIPGATE_BIN  binary to measure (default target/release/xipgate)
#   PROXIES      any of: xipgate xipgate-pingora nginx haproxy (default all four);
#                xipgate-pingora is xipgate with the fast path off (Pingora's HTTP engine).
#   ROWS         any of the rows below (default all)
#   SIZES        registry sizes (default "10 100000"); the peers have no registry, so they are
#                measured at the first size only, xipgate's keep-alive and idle rows at each.
#   COUNT        syscalls, instructions or both (default both)
#   REQUESTS     requests per keep-alive row (default 2000); CONNECTIONS per connection row
#                (default 300); IDLE seconds of the idle row (default 10)
#   CONCURRENCY  clients at once (default 16, as issue 27's first table); each sends its
#                share of the row one request after another. 1 gives the count of a lone
#                client, where nothing is batched: every wait is its own epoll_wait.
#   KEEP         set: keep the work directory
#   PROFILE      a directory: keep each row's callgrind dump there (callgrind.PROXY-SIZE-ROW-
#                REPEAT), for `callgrind_annotate --inclusive=yes FILE`: where the
#                instructions go
#
# Rows, each sent by $CONCURRENCY clients (curl), every client over its own connection(s):
#   ka-service   keep-alive HTTP/1.1 to a service host
#   ka-instance  keep-alive HTTP/1.1 to an instance host
#   conn         HTTP/1.1, a new connection per request (Connection: close)
#   tls          keep-alive HTTPS over HTTP/1.1
#   h2           keep-alive HTTPS over HTTP/2 (nginx `http2`, HAProxy `alpn h2`)
#   hs-full      a full TLS handshake per connection (the client keeps no session)
#   hs-resumed   a resumed handshake per connection (the client offers its last ticket)
#   idle         no traffic: system calls and instructions per second
# The peers forward to the backend as xipgate does (nginx: an upstream keep-alive pool;
# HAProxy: its default connection reuse); xipgate's registry syncs every 10 minutes, so no
# sync falls inside a row (bench/memory.sh and bench/run.sh's refresh rows count those).
#
# Needs: nginx (nginx-light), haproxy, strace, valgrind, curl, openssl, python3; installed by
# ./dev deps. Results: one line per row and proxy; docs/performance.md keeps a run.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/cost.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

XIPGATE_BIN=$(realpath -m "${XIPGATE_BIN:-target/release/xipgate}")
PROXIES=${PROXIES:-"xipgate xipgate-pingora nginx haproxy"}
ALL_ROWS="ka-service ka-instance conn tls h2 hs-full hs-resumed idle"
ROWS=${ROWS:-$ALL_ROWS}
SIZES=${SIZES:-"10 100000"}
COUNT=${COUNT:-"syscalls instructions"}
REQUESTS=${REQUESTS:-2000}
CONNECTIONS=${CONNECTIONS:-300}
IDLE=${IDLE:-10}
CONCURRENCY=${CONCURRENCY:-16}
DOMAIN=cost.test

need nginx nginx-light
need haproxy haproxy
need strace strace
need valgrind valgrind
need curl curl
need openssl openssl
needs_met
NGINX=$(sbin_tool nginx)
HAPROXY=$(sbin_tool haproxy)
if [ ! -x "$XIPGATE_BIN" ]; then
    echo "$SELF: building $XIPGATE_BIN" >&2
    cargo build --release --locked --bin xipgate >&2
fi

bench_workdir cost
RESULTS=$WORK/results
read -r BACKEND_PORT EUREKA_PORT PORT TLS_PORT CONSOLE_PORT <<< "$(free_ports 5)"

# The certificate every proxy serves (bench_test_cert, as bench/run.sh's); HAProxy takes
# chain and key in one file.
bench_test_cert "$WORK" "$DOMAIN"
cat "$WORK/fullchain.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

# The backend and the stand-in Eureka: one nginx, not measured.
ROOT_USER=
[ "$(id -u)" != 0 ] || ROOT_USER='user root;'   # workers read $WORK
mkdir -p "$WORK/eureka"
cat > "$WORK/backend.conf" <<EOF
daemon off; worker_processes 1; $ROOT_USER
pid $WORK/backend.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type application/json;
    gzip_static on;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { default_type text/plain; return 200 "hello from backend\n"; }
    }
    server {
        listen 127.0.0.1:$EUREKA_PORT;
        location = /eureka/apps { alias $WORK/eureka/apps.json; }
        location = /eureka/apps/ { alias $WORK/eureka/apps.json; }
        location = /eureka/apps/delta { alias $WORK/eureka/delta.json; }
    }
}
EOF
"$NGINX" -p "$WORK" -e "$WORK/backend-error.log" -c "$WORK/backend.conf" > "$WORK/backend.out" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$BACKEND_PORT/" "$!" backend "$WORK/backend-error.log"

# The proxies' configurations. Every one listens on $PORT (HTTP) and $TLS_PORT (HTTPS,
# HTTP/2 and HTTP/1.1 by ALPN) and runs as one process with one worker.
cat > "$WORK/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; $ROOT_USER
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PORT;
        listen 127.0.0.1:$TLS_PORT ssl http2;
        ssl_certificate $WORK/fullchain.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat > "$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend proxy
    bind 127.0.0.1:$PORT
    bind 127.0.0.1:$TLS_PORT ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    default_backend backend
backend backend
    server b 127.0.0.1:$BACKEND_PORT
EOF
xipgate_config() { # xipgate_config FAST_PATH -> $WORK/xipgate.yaml
    cat > "$WORK/xipgate.yaml" <<EOF
threads: 1
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
xipgate:
  listen: ["127.0.0.1:$PORT"]
  domains: ["$DOMAIN"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:$EUREKA_PORT/eureka"]
      interval: 10m   # no sync inside a row (at 100,000 instances one costs millions)
      timeout: 60s
      max_body: 1GiB   # 100,000 instances are ~100 MB of JSON
    startup_wait: 600s
  upstream:
    allow: ["127.0.0.0/8"]
  downstream:
    fast_path: $1
  console:
    listen: 127.0.0.1:$CONSOLE_PORT
  log:
    access: false
  tls:
    listen: ["127.0.0.1:$TLS_PORT"]
    certificates:
      - cert: $WORK/fullchain.pem
        key: $WORK/key.pem
EOF
}

# start_proxy NAME WRAP... : starts NAME (under the WRAP command, e.g. valgrind, if any),
# sets PID and waits until it proxies. Under valgrind a start takes minutes at 100,000.
PID=
start_proxy() {
    local name=$1 cmd
    shift
    case "$name" in
        nginx) cmd=("$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf") ;;
        haproxy) cmd=("$HAPROXY" -db -f "$WORK/haproxy.cfg") ;;
        xipgate) xipgate_config true; cmd=("$XIPGATE_BIN" -c "$WORK/xipgate.yaml") ;;
        xipgate-pingora) xipgate_config false; cmd=("$XIPGATE_BIN" -c "$WORK/xipgate.yaml") ;;
    esac
    RUST_LOG=warn "$@" "${cmd[@]}" > "$WORK/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    # Debian's valgrind is a shell wrapper that may leave valgrind.bin as its child: the
    # measured process is then the child.
    local child _
    if [ $# -gt 0 ]; then
        for _ in $(seq 1 50); do
            child=$(pgrep -P "$PID" | head -1 || true)
            [ -n "$child" ] || grep -q valgrind.bin "/proc/$PID/cmdline" 2>/dev/null && break
            sleep 0.1
        done
        [ -z "$child" ] || { PID=$child; PIDS+=("$PID"); }
    fi
    local url="http://127.0.0.1:$PORT/"
    [[ $name == xipgate* ]] && url="http://127.0.0.1:$CONSOLE_PORT/readyz"
    wait_http "$url" "$PID" "$name" "$WORK/$name.log" 900
    settle
}
# settle: until the proxy's CPU time stops moving (at most 5 minutes): what a start leaves
# for later (at 100,000 instances under valgrind, a minute of it) is not counted in a row.
settle() {
    local before after _
    before=$(bench_ticks "$PID")
    for _ in $(seq 1 300); do
        sleep 1
        after=$(bench_ticks "$PID")
        [ $((after - before)) -gt 1 ] || return 0
        before=$after
    done
}

# client ROW N: N requests of ROW from $CONCURRENCY clients at once, each sending its share
# one after another; fails unless all N answered 200.
client() {
    local row=$1 n=$2 host scheme=http port=$PORT args=(-s --resolve "*:$PORT:127.0.0.1" --resolve "*:$TLS_PORT:127.0.0.1")
    case "$row" in ka-service) host=$SERVICE_HOST ;; *) host=$INSTANCE_HOST ;; esac
    case "$row" in
        ka-*) args+=(--http1.1) ;;
        conn) args+=(--http1.1 -H "Connection: close") ;;
        tls) args+=(--http1.1) ;;
        h2) args+=(--http2) ;;
        hs-full) args+=(--http1.1 --no-sessionid -H "Connection: close") ;;
        hs-resumed) args+=(--http1.1 -H "Connection: close") ;;
    esac
    case "$row" in tls | h2 | hs-*) scheme=https; port=$TLS_PORT; args+=(--cacert "$WORK/ca.pem") ;; esac
    local c from=1 share pids=() ok=0
    for c in $(seq 1 "$CONCURRENCY"); do
        share=$(( n / CONCURRENCY + (c <= n % CONCURRENCY ? 1 : 0) ))
        [ "$share" -gt 0 ] || continue
        curl "${args[@]}" -w '%{stderr}%{http_code}\n' "$scheme://$host:$port/r[$from-$((from + share - 1))]" \
            2> "$WORK/codes.$c" > /dev/null &
        pids+=("$!")
        from=$((from + share))
    done
    wait "${pids[@]}" || true
    for c in $(seq 1 "$CONCURRENCY"); do
        [ -e "$WORK/codes.$c" ] || continue
        ok=$((ok + $(grep -c '^200$' "$WORK/codes.$c" || true)))
        rm -f "$WORK/codes.$c"
    done
    [ "$ok" = "$n" ] || { echo "$SELF: $row: $ok of $n requests answered 200" >&2; return 1; }
}
row_count() { case "$1" in conn | hs-*) echo "$CONNECTIONS" ;; *) echo "$REQUESTS" ;; esac; }

# warm_up ROW: a tenth of the row's requests, unmeasured (none for idle).
warm_up() { [ "$1" = idle ] || client "$1" "$(( $(row_count "$1") / 10 + 1 ))"; }

# Work for one measurement of ROW: requests (after a tenth as warm-up), or IDLE seconds.
run_row() { # run_row ROW -> the row's unit count (requests, or seconds when idle)
    local n
    if [ "$1" = idle ]; then sleep "$IDLE"; echo "$IDLE"; return; fi
    n=$(row_count "$1")
    client "$1" "$n"
    echo "$n"
}

# syscalls PROXY SIZE ROW REPEAT: strace -c over every thread of $PID while the row runs.
measure_syscalls() {
    local out="$WORK/strace-$1-$2-$3-$4" n total _
    warm_up "$3"
    strace -c -f -p "$PID" -o "$out" 2> "$out.err" &
    local s=$!
    for _ in $(seq 1 100); do grep -q attached "$out.err" 2>/dev/null && break; sleep 0.05; done
    sleep 0.5   # every thread attached (one line each)
    n=$(run_row "$3")
    kill -INT "$s"; wait "$s" 2>/dev/null || true
    total=$(awk '$NF=="total" {print $4}' "$out")
    total=${total:-0}   # strace prints no table when there were no calls at all
    local top
    top=$(awk -v n="$n" 'NR>2 && $NF!="total" && $1 ~ /^[0-9.]+$/ && $4+0>0 {printf "%s:%.2f\n", $NF, $4/n}' "$out" \
        | sort -t: -k2 -nr | head -4 | paste -sd, -)
    echo "$1 $2 $3 $4 syscalls $(python3 -c "print(round($total/$n, 3))") $top" >> "$RESULTS"
}

# instructions PROXY SIZE ROW REPEAT: callgrind's instruction count over the row, minus the
# idle rate (measured first, as row idle) over the row's wall time.
IDLE_RATE=0
callgrind_total() { # callgrind_total FILE -> Ir
    awk '/^(totals|summary):/ {print $2; exit}' "$1"
}
measure_instructions() {
    local n t0 t1 before after ir
    warm_up "$3"
    callgrind_control -z "$PID" > /dev/null
    t0=$(date +%s.%N)
    n=$(run_row "$3")
    t1=$(date +%s.%N)
    before=$(ls "$WORK"/callgrind.out.* 2>/dev/null | wc -l)
    callgrind_control -d "$PID" > /dev/null
    after=$(ls -t "$WORK"/callgrind.out.* | head -1)
    [ "$(ls "$WORK"/callgrind.out.* | wc -l)" -gt "$before" ] || { echo "$SELF: callgrind wrote no dump" >&2; return 1; }
    ir=$(callgrind_total "$after")
    if [ "$3" = idle ]; then
        IDLE_RATE=$(python3 -c "print($ir / ($t1 - $t0))")
        echo "$1 $2 $3 $4 instructions $(python3 -c "print(round($ir / $n))")" >> "$RESULTS"
    else
        echo "$1 $2 $3 $4 instructions $(python3 -c "print(round(($ir - $IDLE_RATE * ($t1 - $t0)) / $n))")" >> "$RESULTS"
    fi
    if [ -n "${PROFILE:-}" ]; then
        mkdir -p "$PROFILE"
        mv "$after" "$PROFILE/callgrind.$1-$2-$3-$4"
    else
        rm -f "$after"
    fi
}

# The rows a proxy is measured in at a size: the peers at the first size only; xipgate at
# later sizes only where the registry can show (keep-alive and idle).
rows_for() { # rows_for PROXY SIZE FIRST_SIZE
    local r
    for r in $ROWS; do
        if [ "$2" != "$3" ]; then
            [[ $1 == xipgate* ]] || continue
            case "$r" in ka-* | idle) ;; *) continue ;; esac
        fi
        echo "$r"
    done
}

read -r -a sizes <<< "$SIZES"
for size in "${sizes[@]}"; do
    python3 bench/gen_registry.py "$size" "$BACKEND_PORT" "$WORK/eureka" > /dev/null
    { read -r INSTANCE_LABEL; read -r SERVICE_LABEL; } < "$WORK/eureka/labels"
    INSTANCE_HOST=$INSTANCE_LABEL.$DOMAIN
    SERVICE_HOST=$SERVICE_LABEL.$DOMAIN
    for proxy in $PROXIES; do
        mapfile -t rows < <(rows_for "$proxy" "$size" "${sizes[0]}")
        [ "${#rows[@]}" -gt 0 ] || continue
        # idle first: its rate is what the instruction rows subtract
        mapfile -t rows < <(printf '%s\n' "${rows[@]}" | { grep -x idle || true; }
                            printf '%s\n' "${rows[@]}" | { grep -vx idle || true; })
        if [[ " $COUNT " == *" syscalls "* ]]; then
            echo "$SELF: $proxy at $size instances: system calls" >&2
            start_proxy "$proxy"
            for r in "${rows[@]}"; do
                for rep in 1 2; do measure_syscalls "$proxy" "$size" "$r" "$rep"; done
            done
            bench_stop "$PID" 10   # valgrind writes its last dump
        fi
        if [[ " $COUNT " == *" instructions "* ]]; then
            echo "$SELF: $proxy at $size instances: instructions (callgrind)" >&2
            IDLE_RATE=0
            start_proxy "$proxy" valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
                --dump-instr=no --compress-strings=no
            for r in "${rows[@]}"; do
                for rep in 1 2; do measure_instructions "$proxy" "$size" "$r" "$rep"; done
            done
            bench_stop "$PID" 10   # valgrind writes its last dump
            rm -f "$WORK"/callgrind.out.*
        fi
    done
done

python3 bench/cost_report.py "$RESULTS" "$ALL_ROWS"
