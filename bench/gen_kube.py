#!/usr/bin/env python3
"""Writes a synthetic cluster into a real kube-apiserver for bench/kubernetes.sh.

    gen_kube.py URL CA_FILE ADMIN_TOKEN_FILE COMMAND ...

Commands:
  rbac NS ROLES_YAML TOKEN_OUT
        the ServiceAccount xipgate/xipgate, a Role and RoleBinding in NS with exactly the
        rules of the first Role in ROLES_YAML (k8s/registry-rbac/roles.yaml: what xipgate is
        given in production), and a token for it (TokenRequest, a day) written to TOKEN_OUT
  create NS SERVICES PODS PORT OUTDIR
        the namespace NS, SERVICES Services (port `http` PORT) and one EndpointSlice per
        Service holding its share of PODS ready pods (10.244.<a>.<b>, all on PORT), as the
        EndpointSlice controller writes them; OUTDIR/labels gets a pod label and a service
        label to request
  flip NS SERVICES PODS COUNT READY
        the first COUNT Services' EndpointSlices (of `create NS SERVICES PODS`) with every endpoint ready (READY=1) or
        serving but not ready (READY=0, OUT_OF_SERVICE in xipgate); one merge patch per
        slice. Prints the number of endpoints changed and the epoch times the first write
        was started and the last one answered.

Deterministic: the same SERVICES and PODS always give the same names and addresses.
Writes with 8 connections in parallel; prints objects/s to stderr.
"""

import http.client
import json
import random
import ssl
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import yaml

# Kubernetes' alphabet for generated name suffixes (no vowels, no confusable digits).
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
WORDS = [
    "order", "payment", "user", "inventory", "shipping", "catalog", "pricing", "search",
    "review", "notification", "billing", "account", "auth", "cart", "checkout", "invoice",
    "report", "audit", "ledger", "profile",
]
PARALLEL = 8


class Api:
    def __init__(self, url, ca_file, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.token = token
        self.local = threading.local()

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
            self.local.conn = conn
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise
        if resp.status not in ok:
            raise SystemExit(f"gen_kube.py: {method} {path}: {resp.status} {text[:400]!r}")
        return json.loads(text) if text else None


def service_names(count):
    return [f"{WORDS[i % len(WORDS)]}-{i // len(WORDS)}" for i in range(count)]


def pods_of(services, pods):
    """(service, [(pod name, address)]) for every service; PODS spread evenly."""
    rng = random.Random(42)
    out, n = [], 0
    for i, svc in enumerate(services):
        share = pods // len(services) + (1 if i < pods % len(services) else 0)
        rs = "".join(rng.choice(ALPHABET) for _ in range(10))
        members = []
        for _ in range(share):
            suffix = "".join(rng.choice(ALPHABET) for _ in range(5))
            # 10.244.1.2 onwards, 250 a /24, inside the bench's pod network on lo.
            members.append((f"{svc}-{rs}-{suffix}", f"10.244.{1 + n // 250}.{2 + n % 250}"))
            n += 1
        out.append((svc, members))
    return out


def slice_name(svc):
    return f"{svc}-{''.join(random.Random(svc).choice(ALPHABET) for _ in range(5))}"


def endpoints(ns, members, ready):
    return [{
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": ns, "name": pod},
    } for pod, ip in members]


def parallel(what, items, fn):
    start = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as ex:
        for _ in ex.map(fn, items):
            pass
    secs = time.monotonic() - start
    print(f"gen_kube.py: {len(items)} {what} in {secs:.1f} s ({len(items) / secs:.0f}/s)",
          file=sys.stderr)


def rbac(api, ns, roles_yaml, token_out):
    role = next(d for d in yaml.safe_load_all(open(roles_yaml)) if d and d["kind"] == "Role")
    for n in ("xipgate", ns):
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": n}}, ok=(201, 409))
    api.call("POST", "/api/v1/namespaces/xipgate/serviceaccounts",
             {"metadata": {"name": "xipgate"}}, ok=(201, 409))
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    api.call("POST", f"{base}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "xipgate-registry"}, "rules": role["rules"]}, ok=(201, 409))
    api.call("POST", f"{base}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "xipgate-registry"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "xipgate-registry"},
        "subjects": [{"kind": "ServiceAccount", "name": "xipgate", "namespace": "xipgate"}]},
        ok=(201, 409))
    # RBAC reads its objects through informers: wait until the grant counts.
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": "system:serviceaccount:xipgate:xipgate",
                       "groups": ["system:serviceaccounts", "system:authenticated"],
                       "resourceAttributes": {"namespace": ns, "verb": "watch",
                                              "group": "discovery.k8s.io",
                                              "resource": "endpointslices"}}}
    deadline = time.monotonic() + 20
    while not api.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                       review)["status"].get("allowed"):
        if time.monotonic() > deadline:
            raise SystemExit("gen_kube.py: the RoleBinding did not take effect in 20 s")
        time.sleep(0.05)
    tr = api.call("POST", "/api/v1/namespaces/xipgate/serviceaccounts/xipgate/token",
                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": 86400}})
    with open(token_out, "w") as f:
        f.write(tr["status"]["token"])


def create(api, ns, services, pods, port, outdir):
    api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}, ok=(201, 409))
    plan = pods_of(service_names(services), pods)
    uids = {}

    def svc(item):
        name, _ = item
        s = api.call("POST", f"/api/v1/namespaces/{ns}/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": port, "targetPort": port}]}})
        uids[name] = s["metadata"]["uid"]

    def eps(item):
        name, members = item
        api.call("POST", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name(name), "generateName": f"{name}-",
                "labels": {"app": name, "kubernetes.io/service-name": name,
                           "endpointslice.kubernetes.io/managed-by":
                               "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                     "uid": uids[name], "controller": True,
                                     "blockOwnerDeletion": True}]},
            "addressType": "IPv4",
            "endpoints": endpoints(ns, members, True),
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})

    parallel("Services", plan, svc)
    parallel("EndpointSlices", plan, eps)
    svc0, members0 = plan[0]
    with open(f"{outdir}/labels", "w") as f:
        f.write(f"{members0[0][0]}-{port}\n{svc0}\n")


def flip(api, ns, services, pods, count, ready):
    plan = pods_of(service_names(services), pods)[:count]
    changed = [0]
    lock = threading.Lock()

    def one(item):
        name, members = item
        path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{slice_name(name)}"
        api.call("PATCH", path, {"endpoints": endpoints(ns, members, ready)},
                 content_type="application/merge-patch+json")
        with lock:
            changed[0] += len(members)

    first = time.time()
    parallel("EndpointSlices flipped", plan, one)
    print(changed[0], f"{first:.3f}", f"{time.time():.3f}")


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    url, ca, token_file, cmd, *args = sys.argv[1:]
    api = Api(url, ca, open(token_file).read().strip())
    if cmd == "rbac":
        rbac(api, args[0], args[1], args[2])
    elif cmd == "create":
        create(api, args[0], int(args[1]), int(args[2]), int(args[3]), args[4])
    elif cmd == "flip":
        flip(api, args[0], int(args[1]), int(args[2]), int(args[3]), args[4] == "1")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
