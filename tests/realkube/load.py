#!/usr/bin/env python3
"""load.py HOST PORT STOPFILE OUT [--rate N] [--threads N] [--max-seconds S] [--timeout S] [--path P]

A steady, bounded HTTP load for the data-path test: GET --path (default /healthz, which every pod
app answers 200 with its version) at about --rate requests a second in all
(default 200) from --threads workers (default 4), a new connection per request (so every request
goes through the Service's load balancing), until STOPFILE exists or --max-seconds (default 240)
have passed. Writes OUT as JSON: requests, ok, failed, failures by kind (refused, reset, timeout,
status NNN, other), the first and last failure (seconds from the start), the longest run of
consecutive failed requests, and how many answers each version gave.
"""
import argparse
import http.client
import json
import os
import socket
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("stopfile")
    p.add_argument("out")
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--max-seconds", type=float, default=240)
    p.add_argument("--timeout", type=float, default=2)
    p.add_argument("--path", default="/healthz")
    a = p.parse_args()
    t0 = time.time()
    res = {"requests": 0, "ok": 0, "failed": 0, "kinds": {}, "versions": {}, "first_failure_s": None,
           "last_failure_s": None, "longest_failed_run": 0, "examples": []}
    run = [0]
    lock = threading.Lock()
    gap = a.threads / a.rate

    def one():
        c = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout)
        try:
            c.request("GET", a.path, headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                return f"status {r.status}", None
            try:
                return "ok", json.loads(body).get("version", "?")
            except ValueError:
                return "ok", "?"
        except ConnectionRefusedError:
            return "refused", None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                http.client.IncompleteRead):
            return "reset", None
        except (socket.timeout, TimeoutError):
            return "timeout", None
        except OSError as e:
            return f"other {type(e).__name__} {e.errno}", None
        finally:
            c.close()

    def worker():
        nxt = time.time()
        while time.time() - t0 < a.max_seconds and not os.path.exists(a.stopfile):
            kind, version = one()
            at = round(time.time() - t0, 2)
            with lock:
                res["requests"] += 1
                if kind == "ok":
                    res["ok"] += 1
                    res["versions"][version] = res["versions"].get(version, 0) + 1
                    run[0] = 0
                else:
                    res["failed"] += 1
                    res["kinds"][kind] = res["kinds"].get(kind, 0) + 1
                    res["first_failure_s"] = res["first_failure_s"] if res["first_failure_s"] is not None else at
                    res["last_failure_s"] = at
                    run[0] += 1
                    res["longest_failed_run"] = max(res["longest_failed_run"], run[0])
                    if len(res["examples"]) < 10:
                        res["examples"].append([at, kind])
            nxt += gap
            time.sleep(max(0.0, nxt - time.time()))

    ts = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res["seconds"] = round(time.time() - t0, 1)
    res["rate"] = round(res["requests"] / max(res["seconds"], 0.1), 1)
    with open(a.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
