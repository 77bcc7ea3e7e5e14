#!/usr/bin/env bash
# Records tests/fixtures/eureka-<eureka-core version>-* from a real Spring Cloud Eureka server:
# starts it/eureka-server on a free loopback port, registers a fixed set of instances with the
# same JSON the Spring client sends, saves the answers byte for byte, stops the server.
# Needs: it/eureka-server/target/eureka-server.jar (cd it && mvn -q -B -o package -DskipTests), curl, python3.
set -euo pipefail
IT=$(cd "$(dirname "$0")" && pwd)
OUT="$IT/../tests/fixtures"
VER=$(unzip -l "$IT/eureka-server/target/eureka-server.jar" | sed -n 's#.*BOOT-INF/lib/eureka-core-\([0-9][0-9.]*\)\.jar#\1#p' | head -1)
[ -n "$VER" ] || { echo "cannot find eureka-core in the jar" >&2; exit 1; }
P="eureka-$VER"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
E="http://127.0.0.1:$PORT/eureka"
TMP=$(mktemp -d)
java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss512k -jar "$IT/eureka-server/target/eureka-server.jar" \
  --server.port="$PORT" >"$TMP/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 1 1200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "$E/apps")" = 200 ] && break; sleep 0.05
done

# register APP ID PORT STATUS [metadata-json]: POST /eureka/apps/APP, body as Spring's client sends it
register() {
  local now; now=$(date +%s%3N)
  curl -sf -o /dev/null -X POST "$E/apps/$1" -H 'Content-Type: application/json' -H 'Accept-Encoding: gzip' --data-binary @- <<JSON
{"instance":{"instanceId":"$2","app":"$1","appGroupName":null,"ipAddr":"127.0.0.1","sid":"na","homePageUrl":"http://127.0.0.1:$3/","statusPageUrl":"http://127.0.0.1:$3/actuator/info","healthCheckUrl":"http://127.0.0.1:$3/actuator/health","secureHealthCheckUrl":null,"vipAddress":"${1,,}","secureVipAddress":"${1,,}","countryId":1,"dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo\$DefaultDataCenterInfo","name":"MyOwn"},"hostName":"127.0.0.1","status":"$4","overriddenStatus":"UNKNOWN","leaseInfo":{"renewalIntervalInSecs":30,"durationInSecs":90,"registrationTimestamp":0,"lastRenewalTimestamp":0,"evictionTimestamp":0,"serviceUpTimestamp":0},"isCoordinatingDiscoveryServer":false,"lastUpdatedTimestamp":$now,"lastDirtyTimestamp":$now,"actionType":null,"asgName":null,"port":{"\$":$3,"@enabled":"true"},"securePort":{"\$":443,"@enabled":"false"},"metadata":${5:-{\"management.port\":\"$3\"\}}}}
JSON
}
status() { curl -sf -o /dev/null -X PUT "$E/apps/$1/$2/status?value=$3&lastDirtyTimestamp=$(date +%s%3N)"; }

register ALPHA-SVC 127.0.0.1:alpha-svc:9101 9101 UP \
  '{"management.port":"9101","zone":"zone-a","version":"1.2.3","weight":"10"}'
register ALPHA-SVC 127.0.0.1:alpha-svc:9102 9102 DOWN
register ALPHA-SVC 127.0.0.1:alpha-svc:9103 9103 UP
status   ALPHA-SVC 127.0.0.1:alpha-svc:9103 OUT_OF_SERVICE          # status=overriddenStatus=OUT_OF_SERVICE
register ALPHA-SVC 127.0.0.1:alpha-svc:9104 9104 DOWN
status   ALPHA-SVC 127.0.0.1:alpha-svc:9104 UP                      # stores override UP (only if status differs)
register ALPHA-SVC 127.0.0.1:alpha-svc:9104 9104 DOWN               # client re-registers DOWN: status=DOWN, overriddenStatus=UP
register ALPHA-SVC 127.0.0.1:shared:9200 9200 UP
register BETA-SVC 127.0.0.1:beta-svc:9201 9201 UP '{"management.port":"9201","zone":"zone-b"}'
register BETA-SVC 127.0.0.1:shared:9200 9202 UP                     # same instanceId as in ALPHA-SVC, other port
register GAMMA-SVC 127.0.0.1:gamma-svc:9301 9301 UP
curl -sf -o /dev/null -X DELETE "$E/apps/GAMMA-SVC/127.0.0.1:gamma-svc:9301"   # cancel: only in the delta, as DELETED
sleep 2.5   # read-only response cache refreshes every 1000 ms

get() { # file accept [extra curl args]: saves the body byte for byte, prints the status
  local f=$1 a=$2; shift 2
  curl -s -o "$TMP/$f" -w '%{http_code}' -H "Accept: $a" "$@"
}
c1=$(get apps.json application/json "$E/apps")
c2=$(get apps.json.gz application/json -H 'Accept-Encoding: gzip' -D "$TMP/gz.headers" "$E/apps")
c3=$(get delta.json application/json "$E/apps/delta")
c4=$(get app-ALPHA-SVC.json application/json "$E/apps/ALPHA-SVC")
c5=$(get unknown-app.json application/json "$E/apps/NO-SUCH-APP")
c6=$(get apps.xml application/xml "$E/apps")
[ "$c1$c2$c3$c4$c6" = 200200200200200 ] || { echo "unexpected status $c1 $c2 $c3 $c4 $c6" >&2; exit 1; }
grep -qi '^content-encoding: gzip' "$TMP/gz.headers" || { echo "gzip answer not gzipped" >&2; exit 1; }
cp "$TMP/apps.json"          "$OUT/$P-apps.json"
cp "$TMP/apps.json.gz"       "$OUT/$P-apps.json.gz"
cp "$TMP/delta.json"         "$OUT/$P-delta.json"
cp "$TMP/app-ALPHA-SVC.json" "$OUT/$P-app-ALPHA-SVC.json"
cp "$TMP/unknown-app.json"   "$OUT/$P-unknown-app-$c5.json"
cp "$TMP/apps.xml"           "$OUT/$P-apps.xml"
ls -l "$OUT"/$P-*
