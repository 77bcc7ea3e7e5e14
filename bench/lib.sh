# Sourced by the bench scripts (run.sh, soak.sh, dns.sh, cost.sh, ...): the checks and the
# cleanup they all need. Set SELF (the script's name, for messages) before sourcing.

# need TOOL DEBIAN-PACKAGE: notes a missing tool; `needs_met` then stops the script once,
# after every missing tool has been named.
NEEDS_MISSING=0
need() {
    # nginx and dnsmasq live in /usr/sbin, which is not always on PATH for non-root users.
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
        echo "$SELF: '$1' not found: apt-get install $2" >&2
        NEEDS_MISSING=1
    fi
}
needs_met() { [ "$NEEDS_MISSING" = 0 ] || exit 2; }

# sbin_tool TOOL: the tool's path, also when /usr/sbin is not on PATH.
sbin_tool() { command -v "$1" || echo "/usr/sbin/$1"; }

# bench_workdir NAME: makes $WORK (readable by nginx workers that drop root) and arranges
# that every pid added to PIDS is stopped and $WORK removed (unless KEEP is set) at exit.
PIDS=()
bench_workdir() {
    WORK=$(mktemp -d "/tmp/xipgate-$1.XXXXXX")
    chmod 755 "$WORK"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "$SELF: kept $WORK" >&2; else rm -rf "$WORK"; fi
}

# free_ports N [tcp+udp]: N distinct free loopback ports, on one line. With tcp+udp each
# port is free for both (a DNS server binds both).
free_ports() {
    python3 - "$1" "${2:-tcp}" <<'EOF'
import socket, sys
n, both = int(sys.argv[1]), sys.argv[2] == "tcp+udp"
ports, socks = [], []  # held open until every port is chosen, so none repeats
while len(ports) < n:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    socks.append(t)
    if both:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        socks.append(u)
    ports.append(port)
print(*ports)
EOF
}

# wait_http URL PID NAME LOG [SECONDS]: until URL answers 200 (default within 20 s); stops
# the script, showing LOG, when the process PID exits first or the time runs out.
wait_http() {
    local _ tries=$(( ${5:-20} * 10 ))
    for _ in $(seq 1 "$tries"); do
        kill -0 "$2" 2>/dev/null || { echo "$SELF: $3 exited early:" >&2; cat "$4" >&2; exit 1; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    echo "$SELF: $3 did not answer 200 at $1 in ${5:-20} s" >&2; cat "$4" >&2; exit 1
}

# bench_ticks PID...: user+sys clock ticks of the processes and their children.
bench_ticks() {
    local t=0 p q
    for p in "$@"; do
        for q in "$p" $(pgrep -P "$p" || true); do
            t=$((t + $(awk '{ print $14 + $15 }' "/proc/$q/stat")))
        done
    done
    echo "$t"
}

# bench_wrk ROW ROUND PORT "PIDS" [wrk args...]: $WARMUP s of load, then one measured wrk run
# of $DURATION s (wrk -t1 -c$CONNS, bench/report.lua, on $ON_LOAD_CPU) against
# http://127.0.0.1:PORT/; appends "ROW ROUND <report.lua's RESULT fields> <ticks of PIDS>" to
# $RESULTS. The rows of bench/access.sh and bench/steer.sh are measured by this one function.
bench_wrk() {
    local row=$1 round=$2 port=$3 pids=$4 before after line out
    shift 4
    out="$WORK/wrk-$row-$round.txt"
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "http://127.0.0.1:$port/" > /dev/null
    # shellcheck disable=SC2086
    before=$(bench_ticks $pids)
    "${ON_LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/report.lua "$@" \
        "http://127.0.0.1:$port/" > "$out"
    # shellcheck disable=SC2086
    after=$(bench_ticks $pids)
    line=$(grep '^RESULT ' "$out") || { cat "$out" >&2; exit 1; }
    echo "$row $round ${line#RESULT } $((after - before))" >> "$RESULTS"
    echo "  $row (round $round): ${line#RESULT } ticks $((after - before))" >&2
}

# bench_rounds FN: FN ROW ROUND for every row of $TARGETS in each of $ROUNDS rounds, each
# round's order rotated by one, so every row sees the machine's conditions in turn.
bench_rounds() {
    local order round k t
    read -r -a order <<< "$TARGETS"
    for round in $(seq 1 "$ROUNDS"); do
        k=$(( (round - 1) % ${#order[@]} ))
        for t in "${order[@]:k}" "${order[@]:0:k}"; do "$1" "$t" "$round"; done
    done
}

# bench_stop PID [SECONDS]: stops a proxy with SIGINT (Pingora's fast shutdown; SIGTERM is its
# graceful one, minutes long; nginx and HAProxy stop on SIGINT too), and with SIGKILL if it
# still runs after SECONDS (default 5).
bench_stop() {
    local _
    kill -INT "$1" 2>/dev/null || true
    for _ in $(seq 1 $(( ${2:-5} * 10 ))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# bench_test_cert DIR DOMAIN: the test certificate, made with the openssl CLI in DIR: an
# ECDSA P-256 CA (ca.pem) and a P-256 leaf for *.DOMAIN and DOMAIN (key.pem, leaf.pem), valid
# for two days; fullchain.pem is the leaf, then the CA. Stops the script, showing openssl's
# output, when it fails.
bench_test_cert() {
    mkdir -p "$1"
    (
        cd "$1"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=xipgate bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem
        openssl req -new -key key.pem -subj "/CN=*.$2" -out leaf.csr
        printf '%s\n' "subjectAltName=DNS:*.$2,DNS:$2" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
            -extfile leaf.ext -out leaf.pem
        cat leaf.pem ca.pem > fullchain.pem
    ) > "$1/openssl.log" 2>&1 || { echo "$SELF: making the test certificate failed:" >&2; cat "$1/openssl.log" >&2; exit 1; }
}
