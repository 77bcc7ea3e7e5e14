#!/usr/bin/env bash
# HTTP benchmark: xipgate vs nginx as a plain reverse proxy, same backend, same load, at
# several registry sizes; plus refresh cost, memory and delta-sync bytes at 10,000
# instances. Everything binds 127.0.0.1 only. Not part of `cargo test`.
#
#   bench/run.sh                       # builds target/release/xipgate if it is missing
#   SIZES="10 10000" DURATION=5 bench/run.sh
#   TARGETS="nginx instance" REFRESH=0 bench/run.sh
#   SIZES=10000 SPLIT=1 TLS=0 REFRESH=0 TARGETS="nginx instance instance-nacos nginx-aa" bench/run.sh
#   XIPGATE_TOP="work_stealing: false" bench/run.sh   # extra top-level (Pingora) YAML keys
#
# Options (environment):
#   XIPGATE_BIN   binary to test (default target/release/xipgate)
#   SIZES         registry sizes, instances (default "10 1000 10000")
#   TARGETS       any of: direct nginx instance service nginx-aa (default all five), and
#                 with SPLIT=1 also instance-nacos and service-nacos (default then: the five
#                 and instance-nacos after instance).
#                 nginx-aa is the control: a second nginx, identical to the first, compared
#                 with it exactly as xipgate is. What it shows is how far two identical
#                 proxies land apart on this machine in one run: the noise floor.
#   DURATION      seconds measured per target (default 8); WARMUP seconds before (default 2)
#   ROUNDS        times each proxy row is measured (default 4), interleaved so all proxies
#                 see the same machine conditions, each round in an order rotated by one
#                 (nginx instance service nginx-aa, then instance service nginx-aa nginx,
#                 ...; with 4 proxy rows, 4 rounds give each row each place once).
#                 requests/s: the median of the rounds and their range; the ratio to nginx
#                 is the median of the per-round ratios (nginx ran in the same round, a few
#                 runs away, so slow drift of the machine mostly cancels). p50 and p99: of
#                 all the row's requests, from the rounds' pooled latency histograms.
#                 The direct row is measured once per size.
#   CONNS         wrk connections (default 64); wrk always runs one thread (-t1)
#   PIN           1 (default): the proxy under test on CPU $PROXY_CPU (default 1), wrk, the
#                 backend and the stub Eureka on CPU $LOAD_CPU (default 0); the same pinning
#                 for nginx and xipgate. For the direct row wrk takes the proxy's CPU.
#                 0: no pinning.
#   REFRESH       1 (default): also the 1 s full-refresh and 1 s delta-refresh runs at the
#                 largest size
#   GZIP          1 (default): the stub Eureka gzips as real Eureka does when asked
#   SPLIT         0 (default): every instance comes from the stub Eureka. 1: at each size N,
#                 N/2 instances come from the stub Eureka (gen_registry.py N/2) and the other
#                 N - N/2, of other services with other pod names, from a stub Nacos
#                 (gen_nacos.py: v1 open API answers as static files, 10 instances per
#                 service, a second server block of the stub's nginx); xipgate reads both
#                 (xipgate.registry.eureka and xipgate.registry.nacos). The rows instance
#                 and service then target a host from Eureka; instance-nacos and
#                 service-nacos one from Nacos (label `<pod-name>-<port>`, service host the
#                 service name). Before measuring, the Nacos instance host must answer 200
#                 through xipgate (polled for up to 30 s) and the console must name its
#                 source nacos. At the largest size also: Nacos syncs during the rounds and
#                 xipgate's idle CPU over 12 s with its syncs.
#   NACOS_INTERVAL  the Nacos source's interval with SPLIT=1 (default 10s, xipgate's default)
#   KEEP          set: keep the work directory (configs, logs, raw wrk output)
#   TLS           1 (default): also the HTTPS rows below; 0: none of them, and nothing else
#                 changes (no certificate, no TLS listener, no /etc/hosts entry)
#   TLS_TARGETS   the HTTPS rows (default: those of nginx-tls instance-tls nginx-aa-tls
#                 nginx-hs instance-hs whose plain target is in TARGETS); also possible:
#                 service-tls service-hs nginx-aa-hs. They join the proxy rows' rotation.
#                 *-tls: keep-alive HTTPS requests (wrk -t1 -c$CONNS https://...), as the
#                 plain rows but over TLS. *-hs: every request on a new connection with a
#                 full handshake (wrk -H "Connection: close"): handshakes/s and CPU per
#                 handshake.
#   TLS_RESUME    0 (default): wrk offers no session, so every handshake is a full one
#                 (ECDHE + certificate + signature). 1: wrk keeps its last session per
#                 connection slot and offers it, as it does on its own, and each server
#                 resumes as its defaults allow. Full and resumed handshakes are counted.
#
# HTTPS (TLS=1): one test certificate per run, made with the openssl CLI: an ECDSA P-256
# CA and a P-256 leaf for *.127-0-0-1.sslip.io and 127-0-0-1.sslip.io; both servers serve
# the identical chain file (leaf, then the CA certificate, as a leaf + intermediate would
# be sent) and key. nginx gets a second server block, `listen ... ssl`, in the same
# process as its plain one (as xipgate serves both from one process), with
# `ssl_protocols TLSv1.2 TLSv1.3`, nginx's defaults for the rest, and the same proxy_pass
# to the same upstream keep-alive pool; xipgate gets `xipgate.tls` (h2 offered by ALPN,
# the default; wrk offers no ALPN, so both rows are HTTP/1.1). wrk sends SNI from the URL's
# host and resolves it with getaddrinfo, so the names used (nginx.127-0-0-1.sslip.io and
# each size's instance and service host) must resolve to 127.0.0.1 without DNS: as root
# the script appends a line `127.0.0.1 NAME  # xipgate bench/run.sh` to /etc/hosts for
# each name that does not already resolve there (idempotent; the lines stay), and
# otherwise names the lines to add. wrk runs with bench/tls_client.c preloaded (built with
# gcc into the work directory), which counts full and resumed handshakes, notes what was
# negotiated, and with TLS_RESUME=0 makes each handshake a full one: on its own wrk
# reuses the last session of a connection slot on reconnect, so most handshakes would be
# resumptions, and xipgate (Pingora) has no setting to refuse them.
#
# What runs: one backend (nginx, worker_processes 1, `return 200` with a 19-byte body),
# a stub Eureka (nginx serving a generated /eureka/apps and an unchanged /eureka/apps/delta
# as static files; with SPLIT=1 also a stub Nacos, a second server block of the same nginx
# serving gen_nacos.py's files), the reference proxy (nginx, worker_processes 1,
# proxy_pass with an upstream keepalive pool), a copy of it as the control, and xipgate
# (threads: 1, access log off, RUST_LOG=warn). wrk (-t1 -c$CONNS) asks each target for
# $DURATION s after $WARMUP s of warm-up, $ROUNDS times over, interleaved. CPU per request
# is the user+sys time of the proxy's processes (/proc/PID/stat, all threads and workers)
# during the measured run divided by the requests served.
#
# Needs: nginx (Debian package nginx), wrk (wrk), python3 (python3), curl (curl), pgrep
# (procps), taskset (util-linux); with TLS=1 also openssl (openssl), gcc (gcc) and the
# OpenSSL headers (libssl-dev). Runs about SIZES x (1 + (4 + H) x ROUNDS) x (DURATION +
# WARMUP) + 2 x ROUNDS x (DURATION + WARMUP) + 60 s, H the number of HTTPS rows (5 by
# default with TLS=1, 0 with TLS=0): about 21 min with the defaults, 10.5 min with TLS=0,
# 15 min with SIZES="10 10000". SPLIT=1 adds its default row instance-nacos (one more
# proxy row: 4 rounds then no longer give each row each place once; ROUNDS=5 does) and
# 12 s at the largest size.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/run.sh
. bench/lib.sh

XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
SIZES=${SIZES:-"10 1000 10000"}
SPLIT=${SPLIT:-0}
NACOS_INTERVAL=${NACOS_INTERVAL:-10s}
case $SPLIT in 0 | 1) ;; *) echo "bench/run.sh: SPLIT must be 0 or 1" >&2; exit 2 ;; esac
if [ "$SPLIT" = 1 ]; then
    TARGETS=${TARGETS:-"direct nginx instance instance-nacos service nginx-aa"}
else
    TARGETS=${TARGETS:-"direct nginx instance service nginx-aa"}
fi
if [ "$SPLIT" = 1 ]; then
    for n in $SIZES; do [ "$n" -ge 2 ] || { echo "bench/run.sh: SPLIT=1 needs sizes of 2 or more" >&2; exit 2; }; done
fi
for t in $TARGETS; do
    case $t in
        instance-nacos | service-nacos)
            [ "$SPLIT" = 1 ] || { echo "bench/run.sh: target $t needs SPLIT=1" >&2; exit 2; } ;;
    esac
done
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
REFRESH=${REFRESH:-1}
GZIP=${GZIP:-1}
TLS=${TLS:-1}
TLS_RESUME=${TLS_RESUME:-0}
DOMAIN=127-0-0-1.sslip.io
if [ "$TLS" = 1 ] && [ -z "${TLS_TARGETS+set}" ]; then
    TLS_TARGETS=
    for t in nginx-tls instance-tls nginx-aa-tls nginx-hs instance-hs; do
        [[ " $TARGETS " == *" ${t%-*} "* ]] && TLS_TARGETS+="${TLS_TARGETS:+ }$t"
    done
fi
[ "$TLS" = 1 ] || TLS_TARGETS=

need nginx nginx
need wrk wrk
need python3 python3
need curl curl
need pgrep procps
[ "$PIN" = 0 ] || need taskset util-linux
if [ "$TLS" = 1 ]; then
    need openssl openssl
    need gcc gcc
    [ -e /usr/include/openssl/ssl.h ] || { echo "$SELF: OpenSSL headers not found: apt-get install libssl-dev" >&2; NEEDS_MISSING=1; }
fi
needs_met
NGINX=$(sbin_tool nginx)
if [ "$DURATION" -gt 60 ]; then
    echo "bench/run.sh: DURATION is capped at 60 s" >&2
    DURATION=60
fi
if [ ! -x "$XIPGATE_BIN" ]; then
    if [ "$XIPGATE_BIN" = target/release/xipgate ]; then
        echo "bench/run.sh: building $XIPGATE_BIN (cargo build --release)" >&2
        cargo build --release --bin xipgate >&2
    else
        echo "bench/run.sh: $XIPGATE_BIN is not an executable" >&2
        exit 2
    fi
fi

# Prefixes that pin a command to a CPU. taskset execs the command, so `$!` of a
# backgrounded "${ON_PROXY_CPU[@]}" cmd is the command's own pid.
ON_PROXY_CPU=() ON_LOAD_CPU=()
if [ "$PIN" != 0 ]; then ON_PROXY_CPU=(taskset -c "$PROXY_CPU") ON_LOAD_CPU=(taskset -c "$LOAD_CPU"); fi

bench_workdir bench

# Six free loopback ports: backend, stub Eureka, nginx proxy, xipgate proxy and console,
# and the control nginx proxy; with SPLIT=1 one more, the last: the stub Nacos.
if [ "$TLS" = 1 ]; then
    # With TLS three more: the HTTPS ports of nginx, xipgate and the control.
    read -r BACKEND_PORT EUREKA_PORT NGINX_PORT XIP_PORT CONSOLE_PORT NGINX_AA_PORT \
        NGINX_TLS_PORT XIP_TLS_PORT NGINX_AA_TLS_PORT NACOS_PORT < <(free_ports $((9 + SPLIT)))
else
    read -r BACKEND_PORT EUREKA_PORT NGINX_PORT XIP_PORT CONSOLE_PORT NGINX_AA_PORT NACOS_PORT < <(free_ports $((6 + SPLIT)))
fi

TLS_DIR=$WORK/tls
NGINX_TLS_NAME=nginx.$DOMAIN
if [ "$TLS" = 1 ]; then
    # The test certificate (bench_test_cert): fullchain.pem and key.pem go to both servers.
    bench_test_cert "$TLS_DIR" "$DOMAIN"
    # wrk's helper: counts handshakes, and with TLS_RESUME=0 makes each a full one.
    gcc -shared -fPIC -O2 -o "$WORK/tls_client.so" bench/tls_client.c -ldl -lssl -lcrypto
fi

# hosts_entry NAME...: makes each name resolve to 127.0.0.1 through /etc/hosts, which wrk's
# getaddrinfo reads (wrk takes SNI from the URL's host). Idempotent: a name that already
# resolves to 127.0.0.1 is left alone; a line is appended otherwise (root only).
hosts_entry() {
    local name missing=()
    for name in "$@"; do
        [ "$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }')" = 127.0.0.1 ] || missing+=("$name")
    done
    [ ${#missing[@]} = 0 ] && return 0
    if [ "$(id -u)" != 0 ] || [ ! -w /etc/hosts ]; then
        echo "$SELF: these names must resolve to 127.0.0.1; add to /etc/hosts (or run as root):" >&2
        for name in "${missing[@]}"; do echo "127.0.0.1 $name" >&2; done
        exit 2
    fi
    for name in "${missing[@]}"; do
        if grep -qE "^[^#]*[[:space:]]$name([[:space:]]|\$)" /etc/hosts; then
            echo "$SELF: /etc/hosts maps $name elsewhere than 127.0.0.1; fix that line" >&2
            exit 2
        fi
        echo "127.0.0.1 $name  # xipgate bench/run.sh" >> /etc/hosts
        echo "$SELF: added '127.0.0.1 $name' to /etc/hosts" >&2
    done
}
[ "$TLS" = 1 ] && hosts_entry "$NGINX_TLS_NAME"

# nginx runs in the foreground (daemon off) so $! is its master; as root its workers stay
# root so they can read the work directory.
NGINX_COMMON="daemon off; worker_processes 1; $( [ "$(id -u)" = 0 ] && echo 'user root;' )"
nginx_start() { # nginx_start NAME proxy|load -> sets NGINX_PID
    local wrap=("${ON_LOAD_CPU[@]}")
    [ "$2" = proxy ] && wrap=("${ON_PROXY_CPU[@]}")
    "${wrap[@]}" "$NGINX" -p "$WORK" -e "$WORK/$1-error.log" -c "$WORK/$1.conf" > "$WORK/$1.out" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}
wait_port() { # wait_port PORT PID NAME LOG
    local _
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || { echo "bench/run.sh: $3 exited early:" >&2; cat "$4" >&2; exit 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench/run.sh: $3 does not listen on 127.0.0.1:$1 after 10 s" >&2; cat "$4" >&2; exit 1
}

# Backend: one worker, a fixed 19-byte body, keep-alive without a request limit.
cat > "$WORK/backend.conf" <<EOF
$NGINX_COMMON
pid $WORK/backend.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { default_type text/plain; return 200 "hello from backend\n"; }
    }
}
EOF
nginx_start backend load; BACKEND_PID=$NGINX_PID
wait_port "$BACKEND_PORT" "$BACKEND_PID" backend "$WORK/backend-error.log"

# Stub Eureka: static files, logged with the bytes each answer put on the wire.
# With SPLIT=1 the same nginx also serves the stub Nacos on its own port: the v1 open API's
# service list (one file per page; the page size must be the 500 xipgate asks for, and the
# group DEFAULT_GROUP) and each service's instance list (a file per serviceName).
mkdir -p "$WORK/eureka"
NACOS_SERVER=
if [ "$SPLIT" = 1 ]; then
    mkdir -p "$WORK/nacos"
    NACOS_SERVER="
    server {
        listen 127.0.0.1:$NACOS_PORT;
        access_log $WORK/nacos-access.log bytes;
        root $WORK/nacos;
        location = /nacos/v1/ns/service/list {
            if (\$arg_pageSize != 500) { return 400 'pageSize must be 500'; }
            if (\$arg_groupName != DEFAULT_GROUP) { return 400 'groupName must be DEFAULT_GROUP'; }
            try_files /list/page-\$arg_pageNo.json /list/empty.json;
        }
        location = /nacos/v1/ns/instance/list {
            if (\$arg_groupName != DEFAULT_GROUP) { return 400 'groupName must be DEFAULT_GROUP'; }
            try_files /inst/\$arg_serviceName.json =404;
        }
        location /list/ { internal; }
        location / { return 404; }
    }"
fi
cat > "$WORK/eureka.conf" <<EOF
$NGINX_COMMON
pid $WORK/eureka.pid;
events { worker_connections 256; }
http {
    log_format bytes '\$uri \$status \$bytes_sent';
    access_log $WORK/eureka-access.log bytes;
    gzip_static $( [ "$GZIP" = 1 ] && echo on || echo off );
    default_type application/json;
    server {
        listen 127.0.0.1:$EUREKA_PORT;
        location = /eureka/apps { alias $WORK/eureka/apps.json; }
        location = /eureka/apps/ { alias $WORK/eureka/apps.json; }
        location = /eureka/apps/delta { alias $WORK/eureka/delta.json; }
    }$NACOS_SERVER
}
EOF
nginx_start eureka load; EUREKA_PID=$NGINX_PID
wait_port "$EUREKA_PORT" "$EUREKA_PID" "stub Eureka" "$WORK/eureka-error.log"
[ "$SPLIT" != 1 ] || wait_port "$NACOS_PORT" "$EUREKA_PID" "stub Nacos" "$WORK/eureka-error.log"

# Reference: nginx as a plain reverse proxy with an upstream keep-alive pool; with TLS also
# an HTTPS server in the same process, with the same proxy_pass to the same pool.
NGINX_TLS_SERVER=
if [ "$TLS" = 1 ]; then
    NGINX_TLS_SERVER="
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $TLS_DIR/fullchain.pem;
        ssl_certificate_key $TLS_DIR/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
fi
cat > "$WORK/proxy.conf" <<EOF
$NGINX_COMMON
pid $WORK/proxy.pid;
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
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }$NGINX_TLS_SERVER
}
EOF
nginx_start proxy proxy; PROXY_PID=$NGINX_PID
wait_port "$NGINX_PORT" "$PROXY_PID" "nginx proxy" "$WORK/proxy-error.log"

# The control: the same nginx proxy again, on its own port.
sed -e "s|listen 127.0.0.1:$NGINX_PORT;|listen 127.0.0.1:$NGINX_AA_PORT;|" -e "s|$WORK/proxy.pid|$WORK/proxy-aa.pid|" \
    -e "s|listen 127.0.0.1:${NGINX_TLS_PORT:-none} ssl;|listen 127.0.0.1:${NGINX_AA_TLS_PORT:-none} ssl;|" \
    "$WORK/proxy.conf" > "$WORK/proxy-aa.conf"
nginx_start proxy-aa proxy; PROXY_AA_PID=$NGINX_PID
wait_port "$NGINX_AA_PORT" "$PROXY_AA_PID" "control nginx proxy" "$WORK/proxy-aa-error.log"
if [ "$TLS" = 1 ]; then
    wait_port "$NGINX_TLS_PORT" "$PROXY_PID" "nginx HTTPS proxy" "$WORK/proxy-error.log"
    wait_port "$NGINX_AA_TLS_PORT" "$PROXY_AA_PID" "control nginx HTTPS proxy" "$WORK/proxy-aa-error.log"
    for port in "$NGINX_TLS_PORT" "$NGINX_AA_TLS_PORT"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -H "Host: backend" "https://$NGINX_TLS_NAME:$port/")
        [ "$code" = 200 ] || { echo "bench/run.sh: nginx over HTTPS (port $port) answered $code" >&2; exit 1; }
    done
fi

XIP_PID=
# With SPLIT=1 the stub Nacos is a second source, in the registry block.
NACOS_YAML=
if [ "$SPLIT" = 1 ]; then
    NACOS_YAML=$(printf '%s\n' "    nacos:" "      - urls: [\"http://127.0.0.1:$NACOS_PORT/nacos\"]" \
        "        interval: $NACOS_INTERVAL" "        timeout: 10s")$'\n'
fi
xipgate_start() { # xipgate_start INTERVAL DELTA
    cat > "$WORK/xipgate.yaml" <<EOF
version: 1
threads: 1
pid_file: $WORK/xipgate.pid
upgrade_sock: $WORK/xipgate_upgrade.sock
${XIPGATE_TOP:-}
xipgate:
  listen: ["127.0.0.1:$XIP_PORT"]
  domains: ["$DOMAIN"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:$EUREKA_PORT/eureka"]
      interval: $1
      delta: $2
      timeout: 10s
${NACOS_YAML}    startup_wait: 60s
  upstream:
    allow: ["127.0.0.0/8"]
  console:
    listen: 127.0.0.1:$CONSOLE_PORT
  log:
    access: false
EOF
    if [ "$TLS" = 1 ]; then
        cat >> "$WORK/xipgate.yaml" <<EOF
  tls:
    listen: ["127.0.0.1:$XIP_TLS_PORT"]
    certificates:
      - cert: $TLS_DIR/fullchain.pem
        key: $TLS_DIR/key.pem
EOF
    fi
    RUST_LOG=${RUST_LOG:-warn} "${ON_PROXY_CPU[@]}" "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" >> "$WORK/xipgate.log" 2>&1 &
    XIP_PID=$!
    PIDS+=("$XIP_PID")
    local _
    for _ in $(seq 1 600); do
        kill -0 "$XIP_PID" 2>/dev/null || { echo "bench/run.sh: xipgate exited early:" >&2; cat "$WORK/xipgate.log" >&2; exit 1; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CONSOLE_PORT/readyz")" = 200 ] && break
        sleep 0.1
    done
    wait_port "$XIP_PORT" "$XIP_PID" xipgate "$WORK/xipgate.log"
    [ "$TLS" != 1 ] || wait_port "$XIP_TLS_PORT" "$XIP_PID" "xipgate HTTPS" "$WORK/xipgate.log"
}
xipgate_stop() {
    [ -n "$XIP_PID" ] || return 0
    bench_stop "$XIP_PID"
    XIP_PID=
}
registry_field() { # registry_field KEY -> value from the console's /api/v1/registry
    curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/registry" |
        python3 -c "import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))" "$1"
}
nacos_field() { # nacos_field KEY -> the Nacos source's value from /api/v1/registry (SPLIT=1)
    curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/registry" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['nacos'][0].get(sys.argv[1]))" "$1"
}
# gen_size N: writes size N's registry and reads the labels to request: all N instances in
# the stub Eureka, or with SPLIT=1 N/2 there and N - N/2 in the stub Nacos.
gen_size() {
    if [ "$SPLIT" = 1 ]; then
        python3 bench/gen_registry.py "$(($1 / 2))" "$BACKEND_PORT" "$WORK/eureka"
        rm -rf "$WORK/nacos/list" "$WORK/nacos/inst"
        python3 bench/gen_nacos.py "$(($1 - $1 / 2))" "$BACKEND_PORT" "$WORK/nacos"
        { read -r NACOS_INSTANCE_LABEL; read -r NACOS_SERVICE_LABEL; } < "$WORK/nacos/labels"
    else
        python3 bench/gen_registry.py "$1" "$BACKEND_PORT" "$WORK/eureka"
    fi
    { read -r INSTANCE_LABEL; read -r SERVICE_LABEL; } < "$WORK/eureka/labels"
}
# wait_nacos: with SPLIT=1, polls for up to 30 s until the Nacos instance host answers 200
# through xipgate (its first Nacos sync), then checks that the console has it from Nacos.
wait_nacos() {
    local _ code=000 src
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $NACOS_INSTANCE_LABEL.$DOMAIN" "http://127.0.0.1:$XIP_PORT/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "bench/run.sh: $NACOS_INSTANCE_LABEL.$DOMAIN (from Nacos) answered $code through xipgate after 30 s; nacos: $(nacos_field last_error)" >&2; exit 1; }
    src=$(curl -s "http://127.0.0.1:$CONSOLE_PORT/api/v1/instances/$NACOS_INSTANCE_LABEL" |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('source'))")
    [ "$src" = nacos ] || { echo "bench/run.sh: $NACOS_INSTANCE_LABEL is from source '$src', not nacos" >&2; exit 1; }
}

ticks() { # ticks PID: user+sys clock ticks of the process and its children (nginx workers)
    local t=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
oncpu_ns() { # oncpu_ns PID: nanoseconds on CPU of all threads (finer than ticks)
    # %.0f, not %d: mawk's %d stops at 2^31 - 1, which is 2.1 s.
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
CLK_TCK=$(getconf CLK_TCK)

RESULTS=$WORK/results.tsv
: > "$RESULTS"
ROUND=1
# measure N TARGET PORT HOST CPU-PID-or-empty [TLS-NAME [WRK-ARG...]] (in round $ROUND)
# With TLS-NAME: https://TLS-NAME:PORT/ (SNI TLS-NAME) through bench/tls_client.c, which
# writes the handshake counts of the measured run to tls-N-TARGET-ROUND.txt.
measure() {
    local n=$1 target=$2 port=$3 host=$4 pid=$5 before after line wrap=("${ON_LOAD_CPU[@]}")
    local url="http://127.0.0.1:$3/" tls=() stats=() args=()
    shift 5
    if [ $# -gt 0 ]; then
        url="https://$1:$port/"
        shift
        args=("$@")
        tls=(env LD_PRELOAD="$WORK/tls_client.so" XIPGATE_BENCH_TLS_NO_RESUME=$([ "$TLS_RESUME" = 1 ] && echo 0 || echo 1))
        stats=(XIPGATE_BENCH_TLS_STATS="$WORK/tls-$n-$target-$ROUND.txt")
    fi
    [ "$target" = direct ] && wrap=("${ON_PROXY_CPU[@]}")
    "${wrap[@]}" "${tls[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${args[@]}" -H "Host: $host" "$url" > /dev/null
    [ -n "$pid" ] && before=$(ticks "$pid")
    WRK_HIST="$WORK/hist-$n-$target-$ROUND.txt" "${wrap[@]}" "${tls[@]}" "${stats[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
        -s bench/report.lua "${args[@]}" -H "Host: $host" "$url" > "$WORK/wrk-$n-$target-$ROUND.txt"
    [ -n "$pid" ] && after=$(ticks "$pid")
    line=$(grep '^RESULT ' "$WORK/wrk-$n-$target-$ROUND.txt") ||
        { echo "bench/run.sh: no wrk result for $target:" >&2; cat "$WORK/wrk-$n-$target-$ROUND.txt" >&2; exit 1; }
    # N target round requests duration_us p50_us p99_us non2xx socket_errors cpu_ticks
    echo "$n $target $ROUND ${line#RESULT } ${pid:+$((after - before))}" >> "$RESULTS"
    echo "  $n $target (round $ROUND): ${line#RESULT }" >&2
}

# rotated ROUND TARGET...: the targets in the order of that round. Each round starts one
# place further on (direct stays first), so no proxy always runs right after the same other
# one or first in its round: the place in the order is spread evenly instead of favouring one.
rotated() {
    local round=$1 t rest=() out=()
    shift
    for t in "$@"; do [ "$t" = direct ] && out+=(direct) || rest+=("$t"); done
    local k=$(( (round - 1) % (${#rest[@]} > 0 ? ${#rest[@]} : 1) ))
    echo "${out[@]}" "${rest[@]:k}" "${rest[@]:0:k}"
}

largest=0
for n in $SIZES; do [ "$n" -gt "$largest" ] && largest=$n; done
EXTRA=$WORK/extra.txt
: > "$EXTRA"

for n in $SIZES; do
    echo "N=$n: generating the registry and loading it" >&2
    gen_size "$n"
    started=$(date +%s.%N)
    xipgate_start 5s true
    [ "$SPLIT" != 1 ] || wait_nacos
    loaded=$(registry_field instances)
    echo "  loaded $loaded instances in $(python3 -c "import time; print(round(time.time() - $started, 2))") s" >&2
    [ "$loaded" = "$n" ] || { echo "bench/run.sh: xipgate loaded $loaded instances, expected $n" >&2; exit 1; }
    for host in "$INSTANCE_LABEL" "$SERVICE_LABEL" ${NACOS_INSTANCE_LABEL:-} ${NACOS_SERVICE_LABEL:-}; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host.$DOMAIN" "http://127.0.0.1:$XIP_PORT/")
        [ "$code" = 200 ] || { echo "bench/run.sh: $host.$DOMAIN answered $code through xipgate" >&2; exit 1; }
    done
    if [ "$TLS" = 1 ]; then
        hosts_entry "$INSTANCE_LABEL.$DOMAIN" "$SERVICE_LABEL.$DOMAIN"
        for host in "$INSTANCE_LABEL" "$SERVICE_LABEL"; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" "https://$host.$DOMAIN:$XIP_TLS_PORT/")
            [ "$code" = 200 ] || { echo "bench/run.sh: https://$host.$DOMAIN answered $code through xipgate" >&2; exit 1; }
        done
    fi
    if [ "$SPLIT" = 1 ] && [ "$n" = "$largest" ]; then ns0=$(nacos_field syncs_ok); nt0=$(date +%s); fi
    for ROUND in $(seq 1 "$ROUNDS"); do
        for target in $(rotated "$ROUND" $TARGETS $TLS_TARGETS); do
            case $target in
                direct) [ "$ROUND" != 1 ] || measure "$n" direct "$BACKEND_PORT" "backend" "" ;;
                nginx) measure "$n" nginx "$NGINX_PORT" "backend" "$PROXY_PID" ;;
                nginx-aa) measure "$n" nginx-aa "$NGINX_AA_PORT" "backend" "$PROXY_AA_PID" ;;
                instance) measure "$n" instance "$XIP_PORT" "$INSTANCE_LABEL.$DOMAIN" "$XIP_PID" ;;
                service) measure "$n" service "$XIP_PORT" "$SERVICE_LABEL.$DOMAIN" "$XIP_PID" ;;
                instance-nacos) measure "$n" "$target" "$XIP_PORT" "$NACOS_INSTANCE_LABEL.$DOMAIN" "$XIP_PID" ;;
                service-nacos) measure "$n" "$target" "$XIP_PORT" "$NACOS_SERVICE_LABEL.$DOMAIN" "$XIP_PID" ;;
                nginx-tls) measure "$n" "$target" "$NGINX_TLS_PORT" backend "$PROXY_PID" "$NGINX_TLS_NAME" ;;
                nginx-aa-tls) measure "$n" "$target" "$NGINX_AA_TLS_PORT" backend "$PROXY_AA_PID" "$NGINX_TLS_NAME" ;;
                instance-tls | service-tls)
                    [ "$target" = instance-tls ] && host=$INSTANCE_LABEL.$DOMAIN || host=$SERVICE_LABEL.$DOMAIN
                    measure "$n" "$target" "$XIP_TLS_PORT" "$host" "$XIP_PID" "$host" ;;
                nginx-hs) measure "$n" "$target" "$NGINX_TLS_PORT" backend "$PROXY_PID" "$NGINX_TLS_NAME" -H "Connection: close" ;;
                nginx-aa-hs) measure "$n" "$target" "$NGINX_AA_TLS_PORT" backend "$PROXY_AA_PID" "$NGINX_TLS_NAME" -H "Connection: close" ;;
                instance-hs | service-hs)
                    [ "$target" = instance-hs ] && host=$INSTANCE_LABEL.$DOMAIN || host=$SERVICE_LABEL.$DOMAIN
                    measure "$n" "$target" "$XIP_TLS_PORT" "$host" "$XIP_PID" "$host" -H "Connection: close" ;;
                *) echo "bench/run.sh: unknown target '$target'" >&2; exit 2 ;;
            esac
        done
    done
    if [ "$n" = "$largest" ]; then
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$XIP_PID/status")
        echo "rss_kb $n $rss" >> "$EXTRA"
        # Delta sync in steady state: wait for one delta after the load, then compare the
        # bytes of the last full and the last delta answer (wire bytes from the stub's log,
        # decompressed body bytes from xipgate).
        d0=$(registry_field delta_fetches)
        for _ in $(seq 1 80); do [ "$(registry_field delta_fetches)" != "$d0" ] && break; sleep 0.1; done
        echo "delta_body $(registry_field last_body_bytes) $(registry_field full_fetches) $(registry_field delta_fetches)" >> "$EXTRA"
        echo "full_body $(stat -c %s "$WORK/eureka/apps.json")" >> "$EXTRA"
        echo "wire_full $(awk '$1 == "/eureka/apps" { b = $3 } END { print b + 0 }' "$WORK/eureka-access.log")" >> "$EXTRA"
        echo "wire_delta $(awk '$1 == "/eureka/apps/delta" { b = $3 } END { print b + 0 }' "$WORK/eureka-access.log")" >> "$EXTRA"
        if [ "$SPLIT" = 1 ]; then
            # split: Eureka's instances, then Nacos' services, list pages, instances and the
            # bytes of one sync's answers; the Nacos syncs while the rounds ran; then
            # xipgate's CPU over 12 s idle, with the Nacos syncs and Eureka deltas in them.
            echo "split $((n / 2)) $(cat "$WORK/nacos/stats")" >> "$EXTRA"
            echo "nacos_syncs_during_rounds $(( $(nacos_field syncs_ok) - ns0 )) $(( $(date +%s) - nt0 )) $(nacos_field syncs_failed)" >> "$EXTRA"
            s0=$(nacos_field syncs_ok); d0=$(registry_field delta_fetches); c0=$(oncpu_ns "$XIP_PID")
            sleep 12
            c1=$(oncpu_ns "$XIP_PID")
            echo "idle_12s_cpu_ms $(( (c1 - c0) / 1000000 )) $(( $(nacos_field syncs_ok) - s0 )) $(( $(registry_field delta_fetches) - d0 ))" >> "$EXTRA"
        fi
    fi
    xipgate_stop
done

if [ "$REFRESH" = 1 ] && [[ " $TARGETS " == *" instance "* ]]; then
    n=$largest
    echo "N=$n: full fetch every 1 s (delta off)" >&2
    gen_size "$n"
    xipgate_start 1s false
    # Idle CPU per refresh: nothing else runs, so the process's CPU time is the fetches'
    # (with SPLIT=1 also the Nacos syncs in the same 5 s, counted in a fourth field).
    sleep 2
    f0=$(registry_field full_fetches); c0=$(oncpu_ns "$XIP_PID")
    [ "$SPLIT" != 1 ] || ns0=$(nacos_field syncs_ok)
    sleep 5
    f1=$(registry_field full_fetches); c1=$(oncpu_ns "$XIP_PID"); t1=$(date +%s)
    echo "refresh_cpu_ms $(( (c1 - c0) / 1000000 )) $((f1 - f0)) $(registry_field last_body_bytes)$(
        [ "$SPLIT" != 1 ] || echo " $(( $(nacos_field syncs_ok) - ns0 ))")" >> "$EXTRA"
    for ROUND in $(seq 1 "$ROUNDS"); do
        measure "$n" instance-refresh-1s "$XIP_PORT" "$INSTANCE_LABEL.$DOMAIN" "$XIP_PID"
    done
    f2=$(registry_field full_fetches)
    echo "refresh_fetches_during_load $((f2 - f1)) $(( $(date +%s) - t1 ))" >> "$EXTRA"
    xipgate_stop

    # The default sync mode at the same 1 s interval: one full fetch at start, then deltas.
    echo "N=$n: delta fetch every 1 s (the default mode)" >&2
    xipgate_start 1s true
    d1=$(registry_field delta_fetches); t1=$(date +%s)
    for ROUND in $(seq 1 "$ROUNDS"); do
        measure "$n" instance-delta-1s "$XIP_PORT" "$INSTANCE_LABEL.$DOMAIN" "$XIP_PID"
    done
    d2=$(registry_field delta_fetches)
    echo "delta_fetches_during_load $((d2 - d1)) $(( $(date +%s) - t1 ))" >> "$EXTRA"
    xipgate_stop
fi

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
python3 bench/summary.py "$RESULTS" "$EXTRA" "$WORK" "$CLK_TCK" "$DURATION" "$CONNS" "$PIN" "$(nproc)" "$CPU_MODEL" "$GZIP" "$ROUNDS" "$SPLIT"
