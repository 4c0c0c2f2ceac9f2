"""pod_agent.py — real pod processes for the data path (fake_kubelet.py --datapath).

One PodRunner per pod whose image the image table (images.json) knows: for each such container a
process bound to the pod IP (podapp.py for every image listed today), and what a kubelet does to it:
  * readinessProbe (httpGet, tcpSocket, exec; initialDelaySeconds, periodSeconds, timeoutSeconds,
    successThreshold, failureThreshold) decides the container's `ready`; no probe: ready as soon as
    the process is started (whether it listens yet or not, as with a real kubelet);
  * a process that exits on its own is started again after 1 s (restartPolicy Always), restartCount+1;
  * on deletion: lifecycle.preStop (exec, httpGet) first, then SIGTERM, then SIGKILL when the grace
    period (metadata.deletionGracePeriodSeconds) is over. As in the kubelet, a preStop hook still
    running when the grace ends is abandoned and the container gets a last 2 s between SIGTERM and
    SIGKILL; the time the hook took is taken from the grace, with at least 2 s left for SIGTERM;
  * the container's log is the process's output (stdout and stderr), each line stamped when read;
  * its environment is the image table's env, then the container's literal env, then the pod's
    address, port, version and names: nothing of the test runner's environment but PATH.
exec (probes and hooks) runs the command as given, with the container's env, in the pod's own
folder: on this machine, inside the run's network namespace, not in a container.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

MIN_GRACE = 2.0  # the kubelet's minimumGracePeriodInSeconds


def log(*a):
    print(datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), *a, flush=True, file=sys.stderr)


def image_repo(image):
    """The image without its tag or digest (registry and path kept)."""
    if "@" in image:
        image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: len(image) - len(last)] + last.split(":", 1)[0]
    return image


def table_entry(table, image):
    """The image table's entry for an image: its repository's, else the longest `PREFIX/*` key
    whose prefix the repository starts with (`acme/*`: every image of the tests' `acme/`)."""
    repo = image_repo(image)
    if repo in table:
        return table[repo]
    best = None
    for k in table:
        if k.endswith("/*") and repo.startswith(k[:-1]) and (best is None or len(k) > len(best)):
            best = k
    return table[best] if best else None


def resolve_entry(entry):
    """The image table's entry with `{ktplay}` (the first word of its command) replaced by the
    ktplay binary of $KTPLAY_BIN (`ktplay sim app`: the simulator's app of the pod's role); without
    one, its `fallback` (podapp.py)."""
    cmd = entry.get("command") or []
    if not cmd or cmd[0] != "{ktplay}":
        return entry
    b = os.environ.get("KTPLAY_BIN", "")
    if b and os.access(b, os.X_OK):
        return dict(entry, command=[b] + cmd[1:])
    fb = entry.get("fallback")
    if not fb:
        raise ValueError("the image table's command needs $KTPLAY_BIN (the ktplay binary) and has no fallback")
    return dict(entry, command=fb["command"], env=dict(entry.get("env") or {}, **(fb.get("env") or {})))


def literal_env(c):
    return {e["name"]: str(e.get("value", "")) for e in c.get("env") or [] if "name" in e and "valueFrom" not in e}


def resolve_port(c, port):
    """A probe's or hook's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    raise ValueError(f"port {port!r} is not a number nor a named port of container {c.get('name')}")


def http_get(ip, c, h, timeout):
    """(ok, detail): a kubelet httpGet action; success is a status in 200..399."""
    scheme = (h.get("scheme") or "HTTP").lower()
    host = h.get("host") or ip
    path = h.get("path") or "/"
    url = f"{scheme}://{host}:{resolve_port(c, h.get('port'))}{path}"
    req = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.34"})
    for hd in h.get("httpHeaders") or []:
        req.add_header(hd.get("name", ""), hd.get("value", ""))
    ctx = None
    if scheme == "https":
        import ssl
        ctx = ssl._create_unverified_context()  # the kubelet does not verify probe certificates
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return 200 <= r.status < 400, f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 400, f"HTTP {e.code}"
    except Exception as e:  # refused, reset, timeout
        return False, f"{type(e).__name__}: {e}"


class Container:
    def __init__(self, runner, spec, entry, here):
        self.r, self.spec, self.entry, self.here = runner, spec, entry, here
        self.name = spec["name"]
        self.proc = None
        self.ready = False
        self.restarts = 0
        self.started_at = None
        self.lines = []  # [(datetime, line)]
        self.stopping = False
        ports = [p.get("containerPort") for p in spec.get("ports") or [] if p.get("containerPort")]
        self.port = int(ports[0]) if ports else 8080
        # as in a container: only the image's env, the container's and the kubelet's own, not the
        # test runner's (which may hold a kubeconfig path or a secret)
        self.env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}
        entry = resolve_entry(entry)
        self.entry = entry
        self.env.update({k: str(v).replace("{workdir}", runner.cluster_dir) for k, v in (entry.get("env") or {}).items()})
        self.env.update(literal_env(spec))
        image = spec.get("image", "")
        tag = image.rsplit("/", 1)[-1].split(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
        self.env.update({"APP_ADDR": runner.ip, "APP_PORT": str(self.port), "APP_VERSION": tag,
                         "APP_IMAGE": image, "POD_NAME": runner.name, "POD_NAMESPACE": runner.ns,
                         "POD_IP": runner.ip, "CONTAINER_NAME": self.name, "PYTHONUNBUFFERED": "1"})
        self.pidfile = os.path.join(runner.workdir, f"{runner.ns}_{runner.name}_{self.name}.pid")

    def cmd(self):
        out = []
        for i, a in enumerate(self.entry["command"]):
            p = os.path.join(self.here, a)
            out.append(p if i > 0 and not os.path.isabs(a) and os.path.exists(p) else a)
        return out

    def start(self):
        self.ready = False
        self.proc = subprocess.Popen(self.cmd(), env=self.env, cwd=self.r.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.time()
        with open(self.pidfile, "w") as f:
            f.write(f"{self.proc.pid}\n")
        log(f"pod {self.r.key}: container {self.name} started pid {self.proc.pid} on {self.r.ip}:{self.port}")
        threading.Thread(target=self.read_output, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self.watch_exit, args=(self.proc,), daemon=True).start()
        if not self.spec.get("readinessProbe"):
            self.set_ready(True, "no readiness probe: ready once started")

    def read_output(self, proc):
        with open(os.path.join(self.r.workdir, f"{self.r.ns}_{self.r.name}_{self.name}.log"), "a") as f:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append((datetime.now(timezone.utc), line))
                f.write(line + "\n")
                f.flush()

    def watch_exit(self, proc):
        code = proc.wait()
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass
        if self.stopping or self.r.stopping:
            log(f"pod {self.r.key}: container {self.name} exited {code} (terminating)")
            return
        log(f"pod {self.r.key}: container {self.name} exited {code} on its own: restarting in 1 s")
        self.set_ready(False, f"exited {code}")
        time.sleep(1)
        if not (self.stopping or self.r.stopping):
            self.restarts += 1
            self.start()

    def set_ready(self, ready, why):
        if ready != self.ready:
            self.ready = ready
            log(f"pod {self.r.key}: container {self.name} ready={ready} ({why})")
            self.r.changed()

    # ---- probes ----
    def probe_loop(self):
        p = self.spec.get("readinessProbe")
        if not p:
            return
        delay = float(p.get("initialDelaySeconds", 0))
        period = max(1.0, float(p.get("periodSeconds", 10)))
        timeout = max(1.0, float(p.get("timeoutSeconds", 1)))
        need_ok, need_fail = max(1, int(p.get("successThreshold", 1))), max(1, int(p.get("failureThreshold", 3)))
        oks = fails = 0
        time.sleep(delay)
        while not self.r.gone:
            if self.proc is None or self.proc.poll() is not None:
                oks = 0
                ok, detail = False, "process not running"
            else:
                ok, detail = self.run_action(p, timeout)
            if ok:
                oks, fails = oks + 1, 0
                if oks >= need_ok:
                    self.set_ready(True, f"readiness probe: {detail}")
            else:
                oks, fails = 0, fails + 1
                if fails >= need_fail:
                    self.set_ready(False, f"readiness probe failed {fails}x: {detail}")
            time.sleep(period)

    def run_action(self, a, timeout):
        """(ok, detail) of an exec / httpGet / tcpSocket handler (probe or hook)."""
        try:
            if "httpGet" in a:
                return http_get(self.r.ip, self.spec, a["httpGet"], timeout)
            if "tcpSocket" in a:
                t = a["tcpSocket"]
                with socket.create_connection((t.get("host") or self.r.ip, resolve_port(self.spec, t.get("port"))),
                                              timeout=timeout):
                    return True, "connected"
            if "exec" in a:
                argv = (a["exec"] or {}).get("command") or []
                if not argv:
                    return False, "exec with no command"
                r = subprocess.run(argv, env=self.env, cwd=self.r.workdir, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
                return r.returncode == 0, f"exit {r.returncode}"
            if "sleep" in a:  # lifecycle sleep action (PodLifecycleSleepAction)
                time.sleep(float(a["sleep"].get("seconds", 0)))
                return True, "slept"
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:g} s"
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"
        return False, "no handler"

    # ---- termination ----
    def stop(self, grace, t0):
        """preStop, SIGTERM, SIGKILL at the end of the grace period (counted from t0)."""
        hook = ((self.spec.get("lifecycle") or {}).get("preStop"))
        if hook and self.proc is not None and self.proc.poll() is None:
            left = t0 + grace - time.time()
            log(f"pod {self.r.key}: container {self.name} preStop ({left:.1f} s of grace left)")
            done = threading.Event()
            result = {}

            def run_hook():
                result["r"] = self.run_action(hook, max(0.1, left))
                done.set()
            threading.Thread(target=run_hook, daemon=True).start()
            if done.wait(max(0.0, left)):
                log(f"pod {self.r.key}: container {self.name} preStop done: {result['r'][1]}")
            else:
                log(f"pod {self.r.key}: container {self.name} preStop still running when the grace "
                    f"period ({grace:g} s) ended: abandoned")
        self.stopping = True
        self.ready = False
        if self.proc is None:
            return
        left = max(MIN_GRACE, t0 + grace - time.time())
        if self.proc.poll() is None:
            log(f"pod {self.r.key}: container {self.name} SIGTERM (SIGKILL in {left:.1f} s)")
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                log(f"pod {self.r.key}: container {self.name} SIGKILL (grace period over)")
                self.kill()
                self.proc.wait()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass


class PodRunner:
    def __init__(self, pod, ip, table, here, podsdir, on_change):
        md = pod["metadata"]
        self.ns, self.name, self.uid, self.ip = md["namespace"], md["name"], md["uid"], ip
        self.key = f"{self.ns}/{self.name}"
        self.on_change = on_change
        self.workdir = os.path.join(podsdir, f"{self.ns}_{self.name}_{self.uid[:8]}")
        self.cluster_dir = os.path.dirname(os.path.abspath(podsdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.stopping = False
        self.done = threading.Event()
        self.gone = False
        self.containers = {}
        for c in pod["spec"].get("containers", []):
            entry = table_entry(table, c.get("image", ""))
            if entry:
                self.containers[c["name"]] = Container(self, c, entry, here)

    def start(self):
        r = subprocess.run(["ip", "addr", "add", f"{self.ip}/32", "dev", "lo"], capture_output=True, text=True)
        if r.returncode != 0 and "File exists" not in r.stderr:
            log(f"pod {self.key}: ip addr add {self.ip}: {r.stderr.strip()}")
        for c in self.containers.values():
            c.start()
            threading.Thread(target=c.probe_loop, daemon=True).start()

    def changed(self):
        try:
            self.on_change()
        except Exception as e:
            log(f"pod {self.key}: change callback: {e!r}")

    def ready(self, cname):
        c = self.containers.get(cname)
        return None if c is None else c.ready

    def restarts(self, cname):
        c = self.containers.get(cname)
        return None if c is None else c.restarts

    def terminate(self, grace):
        """Start the kubelet's termination once (preStop, SIGTERM, SIGKILL); done is set after."""
        if self.stopping:
            return
        self.stopping = True
        t0 = time.time()
        log(f"pod {self.key}: deletion seen, grace period {grace:g} s")

        def run():
            ts = [threading.Thread(target=c.stop, args=(grace, t0), daemon=True) for c in self.containers.values()]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            log(f"pod {self.key}: containers stopped after {time.time() - t0:.1f} s")
            self.done.set()
            self.changed()
        threading.Thread(target=run, daemon=True).start()

    def kill_all(self):
        self.stopping = True
        self.gone = True
        for c in self.containers.values():
            c.stopping = True
            c.kill()

    def forget(self):
        """The pod object is gone: processes killed, its IP taken off lo."""
        self.kill_all()
        subprocess.run(["ip", "addr", "del", f"{self.ip}/32", "dev", "lo"], capture_output=True)
