#!/usr/bin/env python3
"""A tiny HTTP backend that registers itself with Nacos through nacos-sdk-python (the
HTTP open-API client: POST /nacos/v1/ns/instance, then a heartbeat every second).

    it/.venv/bin/python it/py-client/nacos_backend.py --server 127.0.0.1:8848 \
        --service py-nacos --port 0 --port-file F [--namespace NS] [--group G] \
        [--username U --password P] [--metadata key=value ...]

Listens on 127.0.0.1:<port>; GET (any path) answers "py-nacos <service> <port>\n".
Writes the port to --port-file (renamed into place) once registered.
SIGTERM/SIGINT: remove_naming_instance (deregister), exit 0.
SIGKILL: nothing is removed; the heartbeats stop and the server expires the instance.
"""
import argparse
import os
import signal
import sys
import threading

import nacos

from textserver import serve_text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="host:port of the Nacos server")
    ap.add_argument("--service", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--group", default="DEFAULT_GROUP")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()

    httpd = serve_text(a.ip, a.port, lambda port: f"py-nacos {a.service} {port}\n".encode())
    a.port = httpd.server_address[1]

    kwargs = {"namespace": a.namespace}
    if a.username:
        kwargs.update(username=a.username, password=a.password)
    client = nacos.NacosClient(a.server, **kwargs)
    metadata = dict(kv.split("=", 1) for kv in a.metadata)
    ok = client.add_naming_instance(
        a.service, a.ip, a.port, metadata=metadata, group_name=a.group,
        ephemeral=True, heartbeat_interval=1,
    )
    if not ok:
        print("registration refused", file=sys.stderr)
        sys.exit(1)

    def stop(*_):
        client.remove_naming_instance(a.service, a.ip, a.port, group_name=a.group, ephemeral=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(a.port))
    os.rename(tmp, a.port_file)
    threading.Event().wait()


if __name__ == "__main__":
    main()
