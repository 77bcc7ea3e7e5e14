#!/usr/bin/env python3
"""A tiny HTTP backend that registers itself with Eureka through py-eureka-client.

    it/.venv/bin/python it/py-client/backend.py --eureka http://127.0.0.1:8761/eureka/ \
        --app py-svc --instance-id 127.0.0.1:py-svc:9301 --port 9301 [--renewal 1 --duration 3] \
        [--metadata key=value ...]

Listens on 127.0.0.1:<port>; GET (any path) answers "py <instance-id>\n" (200, text/plain).
Prints exactly one line "ready" to stdout once the instance can be read back from the server
(GET <eureka>/apps/<APP>/<ID> answers 200); library logging goes to stderr.
SIGTERM/SIGINT: py-eureka-client's stop() (re-register DOWN, then DELETE = cancel), exit 0.
SIGKILL: nothing is cancelled; the lease expires after --duration s and the server evicts it.
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request

from py_eureka_client import eureka_client
from py_eureka_client.logger import get_logger_factory

from textserver import serve_text

handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s py-eureka-client %(message)s"))
get_logger_factory().set_handler(handler)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eureka", required=True, help="e.g. http://127.0.0.1:8761/eureka/")
    ap.add_argument("--app", required=True)
    ap.add_argument("--instance-id", required=True)
    ap.add_argument("--port", type=int, required=True, help="0: any free port")
    ap.add_argument("--port-file", help="written with the port once registered")
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--renewal", type=int, default=1, help="renewal interval in seconds")
    ap.add_argument("--duration", type=int, default=3, help="lease duration in seconds")
    ap.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    a = ap.parse_args()
    body = f"py {a.instance_id}\n".encode()

    httpd = serve_text(a.ip, a.port, lambda _port: body)
    a.port = httpd.server_address[1]

    client = eureka_client.init(
        eureka_server=a.eureka,
        app_name=a.app,
        instance_id=a.instance_id,
        instance_host=a.ip,
        instance_ip=a.ip,
        instance_port=a.port,
        renewal_interval_in_secs=a.renewal,
        duration_in_secs=a.duration,
        metadata=dict(kv.split("=", 1) for kv in a.metadata),
        should_discover=False,
    )

    # The heartbeat thread re-registers when a heartbeat fails (e.g. 404 after our cancel):
    # guard it so no heartbeat runs during or after stop().
    hb_lock = threading.Lock()
    stopping = threading.Event()
    orig_heartbeat = client.send_heartbeat

    async def guarded_heartbeat(*args, **kwargs):
        with hb_lock:
            if not stopping.is_set():
                await orig_heartbeat(*args, **kwargs)

    client.send_heartbeat = guarded_heartbeat

    def on_signal(signum, frame):
        with hb_lock:
            stopping.set()
        eureka_client.stop()  # register(status=DOWN) then cancel (DELETE /apps/APP/ID)
        httpd.server_close()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # register() swallows errors (it retries on the next heartbeat): confirm on the server.
    url = f"{a.eureka.rstrip('/')}/apps/{a.app.upper()}/{urllib.parse.quote(a.instance_id, safe='')}"
    deadline = time.time() + a.ready_timeout
    while True:
        try:
            req = urllib.request.Request(url, headers={"Accept": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200 and json.load(r)["instance"]["instanceId"] == a.instance_id:
                    break
        except Exception:
            pass
        if time.time() > deadline:
            print(f"not registered after {a.ready_timeout} s", file=sys.stderr)
            os._exit(1)
        time.sleep(0.05)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{a.port}\n")
        os.replace(tmp, a.port_file)
    print("ready", flush=True)

    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
