#!/usr/bin/env python3
"""A tiny HTTP service that publishes itself to the local Rumor agent with a TTL heartbeat.

Standard library only. It registers on start, reports "alive" to its TTL check every few
seconds, and deregisters on Ctrl-C or SIGTERM. Stop the heartbeat (Ctrl-Z) and within the TTL
the instance turns critical: it leaves DNS answers and LB pools; resume it (fg) and it is back.

    python3 ttl_service.py --name hello --port 8080
    dig @127.0.0.1 -p 8600 hello.service.rumor SRV
"""

import argparse
import json
import os
import signal
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT = "http://" + os.environ.get("RUMOR_HTTP_ADDR", "127.0.0.1:8500")
TOKEN = os.environ.get("RUMOR_HTTP_TOKEN", "")


def agent(method: str, path: str, body: object = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(AGENT + path, data=data, method=method)
    if TOKEN:
        req.add_header("X-Consul-Token", TOKEN)
    urllib.request.urlopen(req, timeout=5).close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="hello")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ttl", type=float, default=10.0, help="seconds")
    args = p.parse_args()
    sid = f"{args.name}-{socket.gethostname()}-{args.port}"
    check = f"{sid}-ttl"

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"hello from {sid}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("0.0.0.0", args.port), Hello)
    agent("PUT", "/v1/agent/service/register", {
        "Name": args.name, "ID": sid, "Port": args.port, "Tags": ["ttl-example"],
        "Check": {"CheckID": check, "TTL": f"{args.ttl}s",
                  "DeregisterCriticalServiceAfter": "10m"},
    })
    print(f"registered {sid}; serving on :{args.port}; Ctrl-C to stop", flush=True)

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(args.ttl / 3):     # three beats per TTL: one lost beat is fine
            try:
                agent("PUT", f"/v1/agent/check/pass/{check}?note=alive")
            except OSError as e:                # the agent restarting: keep trying
                print(f"heartbeat failed: {e}", flush=True)

    agent("PUT", f"/v1/agent/check/pass/{check}?note=started")
    threading.Thread(target=heartbeat, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        agent("PUT", f"/v1/agent/service/deregister/{sid}")
        print(f"deregistered {sid}", flush=True)


if __name__ == "__main__":
    main()
