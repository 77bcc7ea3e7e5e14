#!/usr/bin/env python3
"""Writes a synthetic Eureka registry for bench/run.sh.

    gen_registry.py N BACKEND_PORT OUTDIR [PER_APP]

OUTDIR gets:
  apps.json, apps.json.gz   the full /eureka/apps document (Jackson shape, as modern Eureka
                            servers send it; the .gz is for nginx's gzip_static, as Eureka
                            compresses when asked)
  delta.json, delta.json.gz an /eureka/apps/delta with no changes and the matching
                            apps__hashcode, so xipgate's delta sync stays in steady state
  labels                    two lines: an instance label and a service label to request

N instances spread over max(1, N // PER_APP) applications (PER_APP instances each, 10 unless
given), all UP, all
pointing at 127.0.0.1:BACKEND_PORT. InstanceIds are Spring-style
`<app>-<replicaset hash>-<pod suffix>:<app>:8080`. Deterministic (fixed seed): the same N
always gives the same bytes.
"""

import gzip
import json
import os
import random
import sys

import standin

# Kubernetes' safe alphabet for generated name suffixes (no vowels, no confusable digits).
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
WORDS = [
    "order", "payment", "user", "inventory", "shipping", "catalog", "pricing", "search",
    "review", "notification", "billing", "account", "auth", "cart", "checkout", "invoice",
    "report", "audit", "ledger", "profile",
]


def app_names(count):
    names = []
    for i in range(count):
        word = WORDS[i % len(WORDS)]
        names.append(f"{word}-service" if i < len(WORDS) else f"{word}-service-{i // len(WORDS)}")
    return names


def instance(app, pod, port):
    return standin.instance(app, f"{pod}:{app}:8080", pod, "127.0.0.1", port,
                            metadata={"management.port": "8080", "zone": "zone-a"},
                            registered=1700000000000, renewed=1700000030000 - 90000)


def main():
    n, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    per = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    rng = random.Random(20261124)
    apps = app_names(max(1, n // per))
    per_app = {a: [] for a in apps}
    pods = []
    for i in range(n):
        app = apps[i % len(apps)]
        rs = "".join(rng.choice(ALPHABET) for _ in range(9))
        suffix = "".join(rng.choice(ALPHABET) for _ in range(5))
        pod = f"{app}-{rs}-{suffix}"
        per_app[app].append(instance(app, pod, port))
        pods.append(pod)
    everything = [i for a in apps for i in per_app[a]]
    code = standin.hashcode(i["status"] for i in everything)
    full = standin.applications(everything, code)
    delta = standin.applications([], code, version=2)
    os.makedirs(out, exist_ok=True)
    for name, doc in (("apps.json", full), ("delta.json", delta)):
        data = json.dumps(doc, separators=(",", ":")).encode()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        with open(os.path.join(out, name + ".gz"), "wb") as f:
            f.write(gzip.compress(data, 6))
    # The last instance generated, and the first application (10 instances in rotation).
    # Spring's `pod:app:8080` loses its redundant app part: the label is `pod-8080`.
    with open(os.path.join(out, "labels"), "w") as f:
        f.write(f"{pods[-1]}-8080\n{apps[0]}\n")


if __name__ == "__main__":
    main()
