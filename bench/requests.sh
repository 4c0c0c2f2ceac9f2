#!/usr/bin/env bash
# Requests ktplay sends to a real control plane, counted from the apiserver's audit log
# (tests/realkube/up.sh with REALKUBE_AUDIT=1; ktplay's requests are those whose user agent is
# `ktplay/…`), against the bare client's (bench/bare_client.py: one PATCH and one watch per
# deployment). Cases:
#   - generated playbooks of N components (default N = 4 16 64; NS="4 16 32 64" to choose), one
#     `rolling` each, one matrix (hub c0, adjacent_minor) so every action has its live check, 2
#     replicas per deployment; the same N deployments in another namespace for the bare client;
#   - the seed upgrade (tests/cases/run/upgrade.ktplay, the test harness's seed, 2 replicas), by
#     the ignored test `bench_seed_requests` of tests/run_e2e.rs (its recording proxy counts;
#     the audit log's count is printed beside it).
# Prints requests by verb and resource, ktplay's CPU (user + sys) and wall time.
#
#   bench/requests.sh                    # debug build of this tree
#   KTPLAY_BIN=/tmp/old-ktplay SEED=0 bench/requests.sh   # another build, generated cases only
#   BARE=0 NS="4 16" bench/requests.sh    # without the bare client's runs (they do not change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ -n "${KTPLAY_BIN:-}" ]] || cargo build --quiet --bin ktplay
bin=${KTPLAY_BIN:-$CARGO_TARGET_DIR/debug/ktplay}
kubectl=${KUBECTL:-$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)}
work=$(mktemp -d /tmp/ktplay-bench-requests.XXXXXX)
trap 'tests/realkube/down.sh "$work/rk" --purge >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
tests/realkube/build.sh >&2
KC=$(REALKUBE_AUDIT=1 tests/realkube/up.sh "$work/rk" 2>"$work/up.log") || { cat "$work/up.log" >&2; exit 3; }
set -a; . "$work/rk/env"; set +a
AUDIT=$work/rk/logs/audit.log
k() { "$kubectl" --kubeconfig "$KC" "$@"; }
lines() { wc -l < "$AUDIT"; }

count() { # count FROM TO AGENT_PREFIX: requests by verb and resource in the audit log's lines FROM..TO
  python3 - "$AUDIT" "$1" "$2" "$3" <<'PY'
import json, sys, collections
path, a, b, agent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
by = collections.Counter()
with open(path) as f:
    for i, line in enumerate(f):
        if i < a or i >= b:
            continue
        e = json.loads(line)
        if e.get("stage") != "ResponseComplete" or not e.get("userAgent", "").startswith(agent):
            continue
        o = e.get("objectRef", {})
        res = o.get("resource", e.get("requestURI", "?").split("?")[0])
        if o.get("subresource"):
            res += "/" + o["subresource"]
        by[f'{e["verb"]} {res}'] += 1
print(sum(by.values()), " ".join(f"{k.replace(' ', ':')}={v}" for k, v in sorted(by.items())))
PY
}

cpu_wall() { # cpu_wall OUTFILE CMD...: runs CMD (stdout and stderr to OUTFILE), prints "cpu_s wall_s exit"
  python3 - "$@" <<'PY'
import os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
null = os.open(os.devnull, os.O_RDONLY)
t = time.monotonic()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=[
    (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)])
_, status, u = os.wait4(pid, 0)
print(f"{u.ru_utime + u.ru_stime:.2f} {time.monotonic() - t:.2f} {os.waitstatus_to_exitcode(status)}")
PY
}

deployments() { # deployments NS N
  python3 - "$1" "$2" <<'PY'
import sys, json
ns, n = sys.argv[1], int(sys.argv[2])
items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
for j in range(n):
    lab = {"app": f"c{j}"}
    items.append({"apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": f"c{j}", "namespace": ns, "labels": lab},
      "spec": {"replicas": 2, "selector": {"matchLabels": lab},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": lab},
          "spec": {"containers": [{"name": "app", "image": f"org/c{j}:1.5.0"}]}}}})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}

playbook() { # playbook NS N FILE
  python3 - "$@" <<'PY'
import sys
ns, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
l = [f'playbook "{ns}" {{', f'  namespace "{ns}"', '  matrix scale']
l += [f'  component c{j} {{ deployment "c{j}" container "app" image "org/c{j}" from 1.5.0 to 1.5.1 }}' for j in range(n)]
l += [f'  stage s{j} {{\n    rolling c{j}\n  }}' for j in range(n)]
l += ['}', '', 'matrix scale {', '  hub c0', '  rule adjacent_minor', '}', '']
open(out, 'w').write('\n'.join(l))
PY
}

seeded() { # seeded NS N: create and wait until every deployment is available
  deployments "$1" "$2" | k apply -f - >/dev/null
  k -n "$1" rollout status deploy --timeout=300s >/dev/null
}

if [[ "${SEED:-1}" == 1 ]]; then
  a=$(lines)
  if [[ -n "${SEED_TEST_BIN:-}" ]]; then  # a run_e2e test binary built earlier (its ktplay where it was built)
    KTPLAY_TEST_KUBECONFIG=$KC "$SEED_TEST_BIN" bench_seed_requests --ignored --nocapture > "$work/seed.log" 2>&1 \
      || { cat "$work/seed.log" >&2; exit 1; }
  else
    KTPLAY_TEST_KUBECONFIG=$KC cargo test --quiet --test run_e2e bench_seed_requests -- --ignored --nocapture \
      > "$work/seed.log" 2>&1 || { cat "$work/seed.log" >&2; exit 1; }
  fi
  sleep 1; b=$(lines)
  grep '^BENCH' "$work/seed.log" | sed 's/^BENCH //'
  read -r total by < <(count "$a" "$b" ktplay/)
  echo "seed   ktplay (audit log) $total  $by"
fi

printf '%-6s %-7s %8s %7s %7s  %s\n' case client requests cpu_s wall_s by_verb_and_resource
for n in ${NS:-4 16 64}; do
  ns=bench-n$n; seeded "$ns" "$n"; playbook "$ns" "$n" "$work/n$n.ktplay"
  a=$(lines); read -r cpu wall rc < <(cpu_wall "$work/n$n.out" "$bin" run "$work/n$n.ktplay" --kubeconfig "$KC" --approve; true)
  sleep 1; b=$(lines)
  [[ "$rc" == 0 ]] || { echo "ktplay run N=$n exited $rc:" >&2; tail -20 "$work/n$n.out" >&2; exit 1; }
  read -r total by < <(count "$a" "$b" ktplay/)
  printf '%-6s %-7s %8s %7s %7s  %s\n' "N=$n" ktplay "$total" "$cpu" "$wall" "$by"
  if [[ "${BARE:-1}" == 0 ]]; then k delete ns "$ns" --wait=false >/dev/null; continue; fi
  bns=bench-bare-n$n; seeded "$bns" "$n"
  targets=(); for ((j = 0; j < n; j++)); do targets+=("c$j/app=org/c$j:1.5.1"); done
  a=$(lines); read -r cpu wall rc < <(cpu_wall "$work/bare$n.out" "$(command -v python3)" "$ROOT/bench/bare_client.py" "$bns" "${targets[@]}"; true)
  sleep 1; b=$(lines)
  [[ "$rc" == 0 ]] || { echo "bare client N=$n exited $rc:" >&2; tail -20 "$work/bare$n.out" >&2; exit 1; }
  read -r total by < <(count "$a" "$b" bare-client/)
  printf '%-6s %-7s %8s %7s %7s  %s\n' "N=$n" bare "$total" "$cpu" "$wall" "$by"
  k delete ns "$ns" "$bns" --wait=false >/dev/null
done

