#!/usr/bin/env python3
"""Writes a synthetic Nacos registry (v1 open API answers, as static files) for bench/run.sh
with SPLIT=1, next to the stub Eureka's half written by gen_registry.py.

    gen_nacos.py N BACKEND_PORT OUTDIR

OUTDIR gets:
  list/page-K.json   /nacos/v1/ns/service/list?pageNo=K&pageSize=500 for K = 1..pages:
                     {"count": <services>, "doms": [up to 500 names]} (the stub serves the
                     file of $arg_pageNo, and list/empty.json past the last page)
  list/empty.json    {"count": <services>, "doms": []}
  inst/<svc>.json    /nacos/v1/ns/instance/list?serviceName=<svc>: that service's instances,
                     in the shape Nacos answers (DEFAULT_GROUP, cluster DEFAULT)
  labels             two lines: an instance label and a service label to request
  stats              services, pages, instances, and the bytes of one full sync's answers

N instances spread over max(1, N // 10) services (10 instances each, as the Eureka half's
applications), all healthy and enabled, all at 127.0.0.1:BACKEND_PORT (the benchmark
backend). The service names (`<word>-api`, `<word>-api-<k>`) and so the pod names differ
from the Eureka half's (`<word>-service...`). Each instance's metadata carries `pod-name`
(`<svc>-<replicaset hash>-<pod suffix>`), so xipgate labels it `<pod>-<BACKEND_PORT>`; its
Nacos instanceId names a made-up pod IP (10.x.y.z#8080#DEFAULT#DEFAULT_GROUP@@svc) so that
the ids are unique as a real server's are, though every instance answers on the same
loopback port. Deterministic (fixed seed): the same N always gives the same bytes.
"""

import json
import os
import random
import sys

from gen_registry import ALPHABET, WORDS

PAGE_SIZE = 500  # what xipgate asks for (src/registry/nacos/mod.rs); the stub insists on it
GROUP = "DEFAULT_GROUP"


def service_names(count):
    return [f"{WORDS[i % len(WORDS)]}-api" + (f"-{i // len(WORDS)}" if i >= len(WORDS) else "")
            for i in range(count)]


def host(svc, pod, ip, port):
    return {
        "instanceId": f"{ip}#8080#DEFAULT#{GROUP}@@{svc}",
        "ip": "127.0.0.1",
        "port": port,
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": True,
        "clusterName": "DEFAULT",
        "serviceName": f"{GROUP}@@{svc}",
        "metadata": {"pod-name": pod, "preserved.register.source": "SPRING_CLOUD",
                     "management.port": "8080", "zone": "zone-a"},
        "instanceHeartBeatInterval": 5000,
        "instanceHeartBeatTimeOut": 15000,
        "ipDeleteTimeout": 30000,
    }


def write(path, doc):
    data = json.dumps(doc, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def main():
    n, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(20261201)
    svcs = service_names(max(1, n // 10))
    per_svc = {s: [] for s in svcs}
    last_pod = None
    for i in range(n):
        svc = svcs[i % len(svcs)]
        rs = "".join(rng.choice(ALPHABET) for _ in range(9))
        suffix = "".join(rng.choice(ALPHABET) for _ in range(5))
        pod = f"{svc}-{rs}-{suffix}"
        ip = f"10.{((i + 1) >> 16) & 255}.{((i + 1) >> 8) & 255}.{(i + 1) & 255}"
        per_svc[svc].append(host(svc, pod, ip, port))
        last_pod = pod
    os.makedirs(os.path.join(out, "list"), exist_ok=True)
    os.makedirs(os.path.join(out, "inst"), exist_ok=True)
    sync_bytes = 0
    pages = [svcs[k:k + PAGE_SIZE] for k in range(0, len(svcs), PAGE_SIZE)]
    for k, page in enumerate(pages, 1):
        sync_bytes += write(os.path.join(out, "list", f"page-{k}.json"), {"count": len(svcs), "doms": page})
    write(os.path.join(out, "list", "empty.json"), {"count": len(svcs), "doms": []})
    for svc, hosts in per_svc.items():
        sync_bytes += write(os.path.join(out, "inst", f"{svc}.json"), {
            "name": f"{GROUP}@@{svc}", "groupName": GROUP, "clusters": "", "cacheMillis": 10000,
            "hosts": hosts, "lastRefTime": 1700000000000, "checksum": "", "allIPs": False,
            "reachProtectionThreshold": False, "valid": True})
    # The last instance generated, and the first service (10 instances in rotation); a pod
    # name in metadata gives the label `<pod>-<port>`.
    with open(os.path.join(out, "labels"), "w") as f:
        f.write(f"{last_pod}-{port}\n{svcs[0]}\n")
    with open(os.path.join(out, "stats"), "w") as f:
        f.write(f"{len(svcs)} {len(pages)} {n} {sync_bytes}\n")


if __name__ == "__main__":
    main()
