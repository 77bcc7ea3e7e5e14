#!/usr/bin/env python3
"""A stand-in Eureka for bench/soak.sh whose registry keeps changing.

    soak_eureka.py --port P --core PORTS --churn PORTS --dead PORT [--tick 2] [--seed 1]
                   [--retention 180]

Serves, on 127.0.0.1:P:
  GET /eureka/apps          the full registry (Jackson JSON shape, as modern Eureka sends)
  GET /eureka/apps/delta    what changed in the last --retention seconds (Eureka's
                            default: 180), with actionType ADDED / MODIFIED / DELETED and
                            the apps__hashcode of the full registry (as Eureka's delta
                            queue does). The delta's size grows with the retention
                            window until it is full: a client's memory settles only then.
  GET /soak/stats           counters: ticks, adds, removes, status flips, fetches

The registry (SERVICES below; labels are the ids, lower-case with dashes):
  core     two instances per service, `<service>-core-<n>`, always UP, each on its own
           port of --core. The soak's traffic goes only to these and to the service hosts.
  churn    per service up to three extra instances `<service>-churn-<slot>-<generation>`
           that are added, removed, and flipped between UP, DOWN, STARTING and
           OUT_OF_SERVICE every --tick seconds. An UP churn instance points at a live
           port of --churn (those backends never stop); any other status points at --dead
           (nothing listens there), so a proxy that forgot a removed instance still finds
           a live backend. Exception, unless --no-lame: now and then an UP churn instance
           is "lame", registered UP on --dead (a crashed instance whose lease has not
           expired), at most one per service at any time. A request that tries it first
           is refused at connect, which a correct proxy retries on another instance for
           every method, and the next instance is live. A correct proxy therefore gives
           ZERO client errors, whatever the timing of the churn.
  ephemeral a whole service `EPHEMERAL-<generation>` that appears and disappears.
Lease renewal timestamps advance on every tick, as heartbeats do.
"""

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standin

SERVICES = ["ORDER-SERVICE", "PAY-SERVICE", "USER-SERVICE", "CATALOG-SERVICE"]
CHURN_SLOTS = 3
STATUSES = ["UP", "DOWN", "STARTING", "OUT_OF_SERVICE"]


def now_ms():
    return int(time.time() * 1000)


class Registry:
    def __init__(self, core_ports, churn_ports, dead_port, seed, retention_s, lame):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.retention_ms = int(retention_s * 1000)
        self.lame = lame
        self.churn_ports = churn_ports
        self.dead_port = dead_port
        self.instances = {}  # instanceId -> dict(app, id, port, status, weight, dirty, renewal)
        self.changes = []  # (ms, action, instance snapshot)
        self.generation = 0
        self.stats = {"ticks": 0, "adds": 0, "removes": 0, "flips": 0, "lame": 0, "full_fetches": 0, "delta_fetches": 0}
        ports = iter(core_ports)
        for app in SERVICES:
            for n in (1, 2):
                self._put(app, f"{app.lower()}-core-{n}", next(ports), "UP", 1, record=False)

    def _put(self, app, iid, port, status, weight, record=True):
        t = now_ms()
        old = self.instances.get(iid)
        inst = {"app": app, "id": iid, "port": port, "status": status, "weight": weight,
                "dirty": t, "renewal": t, "registered": old["registered"] if old else t}
        self.instances[iid] = inst
        if record:
            self.changes.append((t, "MODIFIED" if old else "ADDED", dict(inst)))

    def _remove(self, iid):
        inst = self.instances.pop(iid)
        self.changes.append((now_ms(), "DELETED", dict(inst)))

    def _port_for(self, app, status):
        """A live churn port for UP, the dead port otherwise; but now and then an UP
        instance is "lame" (registered UP, nothing listening: a crashed instance whose
        lease has not expired yet), at most one per service at any time."""
        if status != "UP":
            return self.dead_port
        lame = any(i["app"] == app and i["status"] == "UP" and i["port"] == self.dead_port
                   for i in self.instances.values())
        if self.lame and not lame and self.rng.random() < 0.3:
            self.stats["lame"] += 1
            return self.dead_port
        return self.rng.choice(self.churn_ports)

    def tick(self):
        with self.lock:
            self.stats["ticks"] += 1
            self.generation += 1
            g = self.generation
            for app in SERVICES:
                churn = [i for i in self.instances.values() if i["app"] == app and "-churn-" in i["id"]]
                used = {int(i["id"].split("-churn-")[1].split("-")[0]) for i in churn}
                r = self.rng.random()
                if r < 0.35 and len(used) < CHURN_SLOTS:
                    slot = min(set(range(CHURN_SLOTS)) - used)
                    status = self.rng.choice(["UP", "UP", "STARTING"])
                    port = self._port_for(app, status)
                    self._put(app, f"{app.lower()}-churn-{slot}-{g}", port, status, self.rng.randint(1, 3))
                    self.stats["adds"] += 1
                elif r < 0.6 and churn:
                    self._remove(self.rng.choice(churn)["id"])
                    self.stats["removes"] += 1
                elif churn:
                    inst = self.rng.choice(churn)
                    status = self.rng.choice([s for s in STATUSES if s != inst["status"]])
                    port = self._port_for(app, status)
                    self._put(app, inst["id"], port, status, inst["weight"])
                    self.stats["flips"] += 1
            eph = [i for i in self.instances.values() if i["app"].startswith("EPHEMERAL-")]
            if eph and self.rng.random() < 0.3:
                for i in eph:
                    self._remove(i["id"])
            elif not eph and self.rng.random() < 0.3:
                self._put(f"EPHEMERAL-{g}", f"ephemeral-{g}", self.dead_port, "UP", 1)
            # Heartbeats: renewals move on without being changes.
            t = now_ms()
            for i in self.instances.values():
                i["renewal"] = t
            cutoff = t - self.retention_ms
            self.changes = [c for c in self.changes if c[0] >= cutoff]

    @staticmethod
    def instance_json(i, action):
        return standin.instance(i["app"], i["id"], i["id"], "127.0.0.1", i["port"], status=i["status"],
                                metadata={"weight": str(i["weight"]), "zone": "soak"},
                                registered=i["registered"], renewed=i["renewal"], dirty=i["dirty"],
                                action=action)

    def hashcode(self):
        return standin.hashcode(i["status"] for i in self.instances.values())

    @staticmethod
    def document(entries, hashcode):
        return json.dumps(standin.applications(entries, hashcode)).encode()

    def full(self):
        with self.lock:
            self.stats["full_fetches"] += 1
            entries = [self.instance_json(i, "ADDED") for _, i in sorted(self.instances.items())]
            return self.document(entries, self.hashcode())

    def delta(self):
        with self.lock:
            self.stats["delta_fetches"] += 1
            latest = {}
            for _, action, inst in self.changes:
                latest[inst["id"]] = (action, inst)
            entries = []
            for iid, (action, inst) in sorted(latest.items()):
                if action != "DELETED":
                    # The delta carries the instance as it is now (renewals included).
                    inst = self.instances.get(iid, inst)
                entries.append(self.instance_json(inst, action))
            return self.document(entries, self.hashcode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--core", required=True, help="comma-separated ports, 2 per service")
    ap.add_argument("--churn", required=True, help="comma-separated live ports for UP churn instances")
    ap.add_argument("--dead", type=int, required=True, help="a port nothing listens on")
    ap.add_argument("--tick", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retention", type=float, default=180.0, help="seconds a change stays in the delta")
    ap.add_argument("--no-lame", action="store_true", help="every UP instance has a live backend")
    args = ap.parse_args()
    core = [int(p) for p in args.core.split(",")]
    if len(core) < 2 * len(SERVICES):
        raise SystemExit(f"--core needs {2 * len(SERVICES)} ports")
    reg = Registry(core, [int(p) for p in args.churn.split(",")], args.dead, args.seed, args.retention,
                   not args.no_lame)

    def churn():
        while True:
            time.sleep(args.tick)
            reg.tick()

    threading.Thread(target=churn, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/eureka/apps":
                body, ctype = reg.full(), "application/json"
            elif path == "/eureka/apps/delta":
                body, ctype = reg.delta(), "application/json"
            elif path == "/soak/stats":
                with reg.lock:
                    stats = dict(reg.stats, instances=len(reg.instances))
                body, ctype = json.dumps(stats).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
