#!/usr/bin/env python3
"""podapp.py — the process a data-path pod runs (tests/realkube, README "Data path").

A small HTTP service standing in for a Keeptrusts role or a generic web service. The node agent
(fake_kubelet.py --datapath) starts one per pod container, bound to the pod's IP, with the
container's literal `env` values plus:
  APP_ADDR, APP_PORT    where to listen (the pod IP; the container's first containerPort)
  APP_VERSION           the image tag (the version), APP_IMAGE the full image
  APP_ROLE              what the image table says (e.g. gateway), POD_NAME, POD_NAMESPACE

Behaviour, all settable through the container's env:
  APP_STARTUP_SECONDS   seconds before it listens (loading policy); default 0
  APP_LATENCY_MS        time each request takes; default 0
  APP_SHUTDOWN          on SIGTERM: `exit` (stop at once: in-flight requests are cut, new
                        connections refused) or `drain` (stop accepting, finish in-flight
                        requests for up to APP_DRAIN_SECONDS, then exit); default exit
  APP_DRAIN_SECONDS     default 5

Paths: /readyz (200 when serving, 503 while draining), /healthz, /version (the version), and
anything else: 200 with a JSON body {"role","version","pod"}. Output (the container's log) is one
line per event: started, listening, SIGTERM, exit; not one per request.
"""
import http.server
import json
import os
import signal
import socketserver
import sys
import threading
import time

E = os.environ
ADDR, PORT = E.get("APP_ADDR", "127.0.0.1"), int(E.get("APP_PORT", "8080"))
VERSION, ROLE, POD = E.get("APP_VERSION", "0.0.0"), E.get("APP_ROLE", "web"), E.get("POD_NAME", "")


def num(name, default):
    try:
        return float(E.get(name, default))
    except ValueError:
        say(f"{name}={E.get(name)!r} is not a number: using {default}")
        return float(default)


def say(msg):
    print(f"{time.strftime('%H:%M:%S')} {ROLE} {VERSION} {POD}: {msg}", flush=True)


STARTUP, LATENCY = num("APP_STARTUP_SECONDS", 0), num("APP_LATENCY_MS", 0) / 1000.0
SHUTDOWN, DRAIN = E.get("APP_SHUTDOWN", "exit"), num("APP_DRAIN_SECONDS", 5)
if SHUTDOWN not in ("exit", "drain"):
    say(f"APP_SHUTDOWN={SHUTDOWN!r} is neither exit nor drain: using exit")
    SHUTDOWN = "exit"

state = {"inflight": 0, "served": 0, "draining": False}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"podapp/{VERSION}"
    sys_version = ""

    def log_message(self, *a):
        pass

    def answer(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if state["draining"]:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_one(self):
        path = self.path.split("?", 1)[0]
        if path == "/readyz":
            return self.answer(503 if state["draining"] else 200, "draining\n" if state["draining"] else "ok\n", "text/plain")
        if path == "/healthz":
            return self.answer(200, "ok\n", "text/plain")
        if LATENCY:
            time.sleep(LATENCY)
        if path == "/version":
            return self.answer(200, VERSION + "\n", "text/plain")
        return self.answer(200, json.dumps({"role": ROLE, "version": VERSION, "pod": POD}) + "\n")

    def do_GET(self):
        with lock:
            state["inflight"] += 1
        try:
            self.handle_one()
        finally:
            with lock:
                state["inflight"] -= 1
                state["served"] += 1

    do_POST = do_HEAD = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    say(f"started (startup {STARTUP:g} s, shutdown {SHUTDOWN}" + (f" {DRAIN:g} s" if SHUTDOWN == "drain" else "") + ")")
    srv = None

    def on_term(*_):
        with lock:
            inflight, served = state["inflight"], state["served"]
            state["draining"] = True
        if SHUTDOWN == "exit" or srv is None:
            say(f"SIGTERM: exiting at once ({inflight} in flight, {served} served)")
            os._exit(0)
        say(f"SIGTERM: draining {inflight} in-flight requests for up to {DRAIN:g} s ({served} served)")

        def drain():
            srv.socket.close()  # stop accepting: new connections are refused from here on
            end = time.time() + DRAIN
            while time.time() < end and state["inflight"] > 0:
                time.sleep(0.05)
            say(f"drained: {state['inflight']} still in flight, {state['served']} served; exiting")
            os._exit(0)
        threading.Thread(target=drain, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    if STARTUP > 0:
        say(f"loading for {STARTUP:g} s")
        time.sleep(STARTUP)
    try:
        srv = Server((ADDR, PORT), Handler)
    except OSError as e:
        say(f"cannot listen on {ADDR}:{PORT}: {e}")
        sys.exit(1)
    say(f"listening on {ADDR}:{PORT}")
    try:
        srv.serve_forever(poll_interval=0.1)
    except (OSError, ValueError):
        pass  # the listening socket was closed by the drain; the drain thread exits the process
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
