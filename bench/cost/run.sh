#!/usr/bin/env bash
# bench/cost/run.sh BIN LABEL [FAST_PATH]: system calls per request of the xipgate binary BIN,
# counted with strace -c over every thread, for 16 keep-alive connections x 2,000 requests
# (after 3,200 warm-up ones) to the host LABEL.xip.test; one worker (threads: 1), access log
# off. A count, not a timing: a debug build counts the same calls as a release one.
#   python3 bench/gen_registry.py 10 18081 /tmp/reg   # its `labels` file names two hosts
#   REG=/tmp/reg bench/cost/run.sh target/debug/xipgate order-service
# Issue 27 asks for this over every mode; this is the keep-alive HTTP/1.1 row only.
set -euo pipefail
BIN=$(realpath "$1"); HOSTLABEL=$2; FAST=${3:-true}; REG=$(realpath "${REG:?REG=<gen_registry.py dir>}")
HERE=$(cd "$(dirname "$0")" && pwd); W=$(mktemp -d); cd "$W"
python3 "$HERE/backend.py" 18081 & B=$!
python3 "$HERE/eureka.py" 18761 "$REG" & E=$!
cat > x.yaml <<Y
threads: 1
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
xipgate:
  listen: ["127.0.0.1:18080"]
  domains: ["xip.test"]
  registry:
    eureka:
      urls: ["http://127.0.0.1:18761/eureka"]
  upstream:
    allow: ["127.0.0.0/8"]
  downstream:
    fast_path: $FAST
  console:
    listen: "127.0.0.1:19080"
  log:
    access: false
Y
$BIN -c x.yaml > x.log 2>&1 & X=$!
for i in $(seq 100); do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOSTLABEL.xip.test" http://127.0.0.1:18080/ || true)
  [ "$c" = 200 ] && break; sleep 0.2
done
python3 "$HERE/load.py" 18080 $HOSTLABEL.xip.test 16 200 >/dev/null   # warm up
strace -c -f -p $X -o strace.out & S=$!
sleep 1
N=$(python3 "$HERE/load.py" 18080 $HOSTLABEL.xip.test 16 2000)
kill -INT $S; wait $S 2>/dev/null || true
kill $X $B $E 2>/dev/null; wait 2>/dev/null || true
total=$(awk '$NF=="total" {print $4}' strace.out)
echo "requests=$N syscalls=$total per_request=$(python3 -c "print(round($total/$N,2))")"
awk 'NR>2 && $NF!="total" && $4+0>0 {printf "  %s %.2f\n", $NF, $4/'"$N"'}' strace.out | sort -k2 -nr | head -6
