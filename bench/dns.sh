#!/usr/bin/env bash
# DNS benchmark: xipgate's built-in DNS server vs dnsmasq, same query mix, same duration,
# both on 127.0.0.1 only. Not part of `cargo test`.
#
#   bench/dns.sh                      # runs target/release/xipgate (cargo build --release first)
#   XIPGATE_BIN=path/to/bin bench/dns.sh
#   DURATION=10 QUERIES=10000 DNSPERF_OPTS="-c 2 -T 1 -q 100" bench/dns.sh
#   KEEP=1 bench/dns.sh               # keep the generated config, query file and logs
#
# Needs: dnsperf (Debian package dnsperf), dnsmasq (package dnsmasq), dig (package
# bind9-dnsutils), python3. Installs nothing itself. Runs about 2 x DURATION + a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=bench/dns.sh
. bench/lib.sh

XIPGATE_BIN=${XIPGATE_BIN:-target/release/xipgate}
DURATION=${DURATION:-10}
QUERIES=${QUERIES:-10000}
DNSPERF_OPTS=${DNSPERF_OPTS:-"-c 2 -T 1 -q 100"}
ZONE=sslip.io

need dnsperf dnsperf
need dnsmasq dnsmasq
need dig bind9-dnsutils
need python3 python3
needs_met
DNSMASQ=$(sbin_tool dnsmasq)
if [ ! -x "$XIPGATE_BIN" ]; then
    echo "bench/dns.sh: $XIPGATE_BIN is not an executable: cargo build --release (or set XIPGATE_BIN)" >&2
    exit 2
fi
if [ "$DURATION" -gt 50 ]; then
    echo "bench/dns.sh: DURATION is capped at 50 s to keep the run under 2 minutes" >&2
    DURATION=50
fi

bench_workdir dnsbench

# Four distinct free loopback ports: xipgate DNS, xipgate proxy, a dead registry, dnsmasq.
# (Bound UDP and TCP: a DNS port must be free for both.)
read -r XIP_DNS_PORT PROXY_PORT DEAD_PORT DNSMASQ_PORT < <(free_ports 4 tcp+udp)

# The query mix, in dnsperf's "name type" format. Fixed seed: every run asks the same.
python3 - "$QUERIES" "$ZONE" > "$WORK/queries.txt" <<'EOF'
import random, sys
n, zone = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
svcs = ["order-service", "user-service", "payment-api", "gateway", "catalog", "search-indexer"]
def pod():
    h = "".join(rnd.choice("0123456789abcdef") for _ in range(5))
    s = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(5))
    return f"{rnd.choice(svcs)}-{h}-{s}-{rnd.choice([8080, 8443, 9090])}"
out = []
for i in range(n):
    r = rnd.random()
    if r < 0.60:   # service / instance hosts as xipgate hands them out: <label>.127-0-0-1.<zone>
        label = rnd.choice(svcs) if rnd.random() < 0.3 else pod()
        out.append(f"{label}.127-0-0-1.{zone} A")
    elif r < 0.80:  # dashed IPv4
        out.append(f"10-{rnd.randrange(256)}-{rnd.randrange(256)}-{rnd.randrange(256)}.{zone} A")
    elif r < 0.90:  # dotted IPv4
        out.append(f"app.10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{zone} A")
    else:           # AAAA: dashed IPv6
        out.append(f"{rnd.choice(svcs)}.fd00--{rnd.randrange(1, 65536):x}.{zone} AAAA")
print("\n".join(out))
EOF

cat > "$WORK/xipgate.yaml" <<EOF
version: 1
threads: 2
pid_file: $WORK/xipgate.pid
upgrade_sock: $WORK/xipgate_upgrade.sock
xipgate:
  listen: ["127.0.0.1:$PROXY_PORT"]
  domains: ["127-0-0-1.$ZONE"]
  edge_ip: 127.0.0.1
  registry:
    eureka:
      urls: ["http://127.0.0.1:$DEAD_PORT/eureka"]
    startup_wait: 1s
  console:
    listen: "off"
  log:
    access: false
  dns:
    listen: ["127.0.0.1:$XIP_DNS_PORT"]
    zones: ["$ZONE"]
    edge_ips: ["127.0.0.1"]
    ttl: 60
EOF

wait_dns() { # wait_dns NAME PORT PID LOG: up to 10 s for an answer
    local _
    for _ in $(seq 1 50); do
        if ! kill -0 "$3" 2>/dev/null; then
            echo "bench/dns.sh: $1 exited early:" >&2; cat "$4" >&2; exit 1
        fi
        if dig @127.0.0.1 -p "$2" +time=1 +tries=1 +short "probe.$ZONE" A 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.2
    done
    echo "bench/dns.sh: $1 does not answer on 127.0.0.1:$2 after 10 s:" >&2; cat "$4" >&2; exit 1
}

run_perf() { # run_perf PORT OUT
    # shellcheck disable=SC2086
    dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$DURATION" $DNSPERF_OPTS > "$2" 2>&1
}

# (1) xipgate
RUST_LOG=${RUST_LOG:-warn} "$XIPGATE_BIN" -c "$WORK/xipgate.yaml" > "$WORK/xipgate.log" 2>&1 &
XIP_PID=$!
PIDS+=("$XIP_PID")
wait_dns xipgate "$XIP_DNS_PORT" "$XIP_PID" "$WORK/xipgate.log"
run_perf "$XIP_DNS_PORT" "$WORK/perf-xipgate.txt"
kill "$XIP_PID" 2>/dev/null || true

# (2) dnsmasq: answers every name under the zone with one A and one AAAA (it decodes no
# address from the name), no cache, no upstream.
"$DNSMASQ" --no-daemon --conf-file=/dev/null --port="$DNSMASQ_PORT" --no-resolv --no-hosts \
    --bind-interfaces --listen-address=127.0.0.1 --address="/$ZONE/127.0.0.1" --address="/$ZONE/::1" \
    --cache-size=0 --pid-file= > "$WORK/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
PIDS+=("$DNSMASQ_PID")
wait_dns dnsmasq "$DNSMASQ_PORT" "$DNSMASQ_PID" "$WORK/dnsmasq.log"
run_perf "$DNSMASQ_PORT" "$WORK/perf-dnsmasq.txt"
kill "$DNSMASQ_PID" 2>/dev/null || true

field() { # field FILE LABEL -> first word after "LABEL:" (plain string match, no regex)
    awk -v k="$2:" '{ i = index($0, k) } i { split(substr($0, i + length(k)), w, " "); print w[1]; exit }' "$1"
}
row() { # row NAME FILE
    local qps avg lost sent codes
    qps=$(field "$2" "Queries per second")
    avg=$(field "$2" "Average Latency (s)")
    lost=$(field "$2" "Queries lost")
    sent=$(field "$2" "Queries sent")
    codes=$(awk -F':[ \t]*' '/Response codes/ { print $2; exit }' "$2")
    if [ -z "$qps" ]; then
        echo "bench/dns.sh: no dnsperf result for $1:" >&2; cat "$2" >&2; exit 1
    fi
    printf '| %-8s | %10.0f | %16.3f | %12s | %s |\n' "$1" "$qps" "$(awk -v a="$avg" 'BEGIN { print a * 1000 }')" "$lost / $sent" "$codes"
}

echo
echo "DNS benchmark: $(date -u +%Y-%m-%d), $(nproc) cores, ${DURATION} s each, $QUERIES-query mix"
echo "(60% service/instance hosts, 20% dashed IPv4, 10% dotted IPv4, 10% AAAA), dnsperf $DNSPERF_OPTS"
echo
echo "| server   |  queries/s | avg latency (ms) | lost / sent  | response codes |"
echo "|----------|-----------:|-----------------:|-------------:|----------------|"
row xipgate "$WORK/perf-xipgate.txt"
row dnsmasq "$WORK/perf-dnsmasq.txt"
