#!/usr/bin/env bash
# monitor-datapath-test.sh [CASE...] — ktplay's disruption monitor on the real data path (issue 22,
# parts 1 and 2): `ktplay run` of a playbook whose `monitor` probes the seed gateway Deployment's
# Service ClusterIP while ktplay upgrades it 1.4.1 -> 1.5.0 (3 replicas, maxUnavailable 1,
# maxSurge 1, readinessProbe GET /readyz, port 41002), on the real control plane with the real
# kube-proxy and one real process per pod (the same Deployment as datapath-test.sh).
#   seed         preStop `sleep 10`, grace 30 s   expect: 0 failed requests, exit 0, 1.5.0 everywhere
#   no-prestop   no preStop hook                  expect: failures counted, the budget fails the run,
#                                                 rolled back (exit 1), 1.4.1 everywhere
# Each case also asserts the lock is released, the journal's status, and 3 Ready pods of the final
# version answering through the Service. Run from anywhere: outside the data path it starts one
# itself (REALKUBE_DATAPATH=1 tests/realkube.sh). KTPLAY_BIN: the binary (default: built by cargo).
# With MONITOR_RESULTS=FILE each case's final monitor event goes to FILE as a JSON line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${KTPLAY_BIN:-}" ]]; then
  # Built before entering the namespace (it has no network for cargo).
  (cd "$ROOT" && cargo build --quiet --bin ktplay >&2)
  KTPLAY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/ktplay"
  export KTPLAY_BIN
fi
if [[ "${REALKUBE_DATAPATH:-0}" != 1 || -z "${KTPLAY_TEST_KUBECONFIG:-}" ]]; then
  exec env REALKUBE_DATAPATH=1 "$HERE/../realkube.sh" "$0" "$@"
fi
[[ "$(awk 'NR > 2 { sub(":", "", $1); print $1 }' /proc/self/net/dev | tr '\n' ' ')" == "lo " ]] \
  || { echo "monitor-datapath-test.sh: not in a private network namespace (interfaces other than lo); refusing" >&2; exit 3; }
KUBECTL=$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
K=("$KUBECTL" --kubeconfig "$KTPLAY_TEST_KUBECONFIG")
[[ $# -gt 0 ]] || set -- seed no-prestop
W=$(mktemp -d /tmp/monitor-datapath.XXXXXX)
trap 'rm -rf "$W"' EXIT
trap 'echo "[monitor-datapath] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
say() { echo "[monitor-datapath $(date +%H:%M:%S)] $*" >&2; }
T_START=$(date +%s)
FAILED=0
SUMMARY=()

manifest() { # prestop(seconds|none)
  local prestop=""
  [[ $1 != none ]] && prestop="        lifecycle:
          preStop:
            exec:
              command: [\"sleep\", \"$1\"]"
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: keeptrusts-gateway
  labels: {app: gateway}
spec:
  replicas: 3
  selector:
    matchLabels: {app: gateway}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1, maxSurge: 1}
  template:
    metadata:
      labels: {app: gateway}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: gateway
        image: keeptrusts/gateway:1.4.1
        ports:
        - {name: http, containerPort: 41002}
        readinessProbe:
          httpGet:
            path: /readyz
            port: http
          periodSeconds: 1
          failureThreshold: 3
$prestop
---
apiVersion: v1
kind: Service
metadata:
  name: keeptrusts-gateway
spec:
  selector: {app: gateway}
  ports:
  - {port: 80, targetPort: http}
EOF
}

playbook() { # ns vip
  cat <<EOF
# Written by monitor-datapath-test.sh: the seed gateway upgrade, watched through its ClusterIP.
playbook "monitored-gateway" {
  namespace "$1"
  component gateway {
    deployment "keeptrusts-gateway"
    image "keeptrusts/gateway"
    from 1.4.1
    to 1.5.0
  }
  let gateway_url = "http://$2"
  monitor gateway GET "\${gateway_url}/healthz" {
    expect 200
    every 20ms
    timeout 2s
    budget failures 0
  }
  stage gateways {
    rolling gateway max_unavailable 1 max_surge 1 timeout 3m
    pause 15s
  }
}
EOF
}

ready_endpoints() { # ns
  "${K[@]}" -n "$1" get endpointslices -l kubernetes.io/service-name=keeptrusts-gateway \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | grep -c . || true
}

run_case() { # name prestop expect(ok|rolled_back)
  local name=$1 ns="mon-$1" vip why=() want code
  say "case $name: preStop=$2 (expect $3)"
  "${K[@]}" create ns "$ns" >/dev/null
  manifest "$2" | "${K[@]}" -n "$ns" apply -f - >/dev/null
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=120s >/dev/null
  for _ in $(seq 1 100); do [[ $(ready_endpoints "$ns") -ge 3 ]] && break; sleep 0.2; done
  vip=$("${K[@]}" -n "$ns" get svc keeptrusts-gateway -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 1 50); do curl -fsS -m 1 "http://$vip/" >/dev/null 2>&1 && break; sleep 0.2; done
  sleep 3  # every proxy rule in place, every pod answering
  playbook "$ns" "$vip" > "$W/$name.ktplay"
  local t0 t1
  t0=$(date +%s.%N)
  set +e
  NO_COLOR=1 "$KTPLAY_BIN" run "$W/$name.ktplay" --kubeconfig "$KTPLAY_TEST_KUBECONFIG" --format json \
    > "$W/$name.json" 2> "$W/$name.err"
  code=$?
  set -e
  t1=$(date +%s.%N)
  local mon
  mon=$(python3 - "$W/$name.json" <<'PY'
import json, sys
final = [e for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "monitor" and e.get("final")]
print(json.dumps(final[-1]) if final else "{}")
PY
)
  [[ -n "${MONITOR_RESULTS:-}" ]] && echo "{\"case\": \"$name\", \"seconds\": $(python3 -c "print(round($t1 - $t0, 1))"), \"monitor\": $mon}" >> "$MONITOR_RESULTS"
  echo "$name: exit $code, monitor $mon"
  local failures requests verdict
  failures=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("failures", -1))' "$mon")
  requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("requests", 0))' "$mon")
  verdict=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("verdict", "none"))' "$mon")
  # (a failing run stops early: at 50 probes a second, 50 is one second of probing)
  [[ $requests -ge $([[ $3 == ok ]] && echo 500 || echo 50) ]] || why+=("only $requests probes: the monitor did not run")
  if [[ $3 == ok ]]; then
    want=1.5.0
    [[ $code == 0 ]] || why+=("exit $code, expected 0")
    [[ $failures == 0 ]] || why+=("expected 0 failed requests, the monitor counted $failures")
    [[ $verdict == ok ]] || why+=("verdict $verdict")
  else
    want=1.4.1
    [[ $code == 1 ]] || why+=("exit $code, expected 1 (rolled back)")
    [[ $failures -gt 0 ]] || why+=("expected failed requests, the monitor counted none")
    [[ $verdict == exceeded ]] || why+=("verdict $verdict, expected exceeded")
    grep -q '"event":"failed".*monitor `gateway`' "$W/$name.json" || why+=("no failed event naming the monitor")
    grep -q '"event":"rollback_end".*"ok":true' "$W/$name.json" || why+=("no successful rollback step")
  fi
  # the final state: the Deployment at the expected version, 3 Ready pods of it, the Service
  # answering with it, the lock released, the journal's status
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=120s >/dev/null || why+=("the final rollout did not finish")
  for _ in $(seq 1 300); do
    [[ $("${K[@]}" -n "$ns" get pods -o name | grep -c . || true) -le 3 ]] && break; sleep 0.2
  done
  local images ready dimg last leases status
  images=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
  ready=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  dimg=$("${K[@]}" -n "$ns" get deploy keeptrusts-gateway -o jsonpath='{.spec.template.spec.containers[0].image}')
  [[ "$images" == " 3 keeptrusts/gateway:$want;" ]] || why+=("pods are not 3 x $want: $images")
  [[ "$ready" == 3 ]] || why+=("$ready pods Ready, not 3")
  [[ "$dimg" == "keeptrusts/gateway:$want" ]] || why+=("deployment at $dimg")
  sleep 2
  last=$(curl -fsS -m 2 "http://$vip/version" 2>/dev/null || echo none)
  [[ "$last" == "$want" ]] || why+=("the Service answers version $last")
  leases=$("${K[@]}" -n "$ns" get leases -o name | grep -c ktplay- || true)
  [[ $leases == 0 ]] || why+=("$leases ktplay leases left")
  status=$("${K[@]}" -n "$ns" get configmaps -o jsonpath='{range .items[*]}{.metadata.name}={.data.status}{"\n"}{end}' | grep '^ktplay-journal-' | cut -d= -f2)
  [[ "$status" == "$([[ $3 == ok ]] && echo succeeded || echo rolled_back)" ]] || why+=("journal status $status")
  if [[ ${#why[@]} -gt 0 ]]; then
    FAILED=1
    for w in "${why[@]}"; do say "case $name FAILED: $w"; done
    tail -20 "$W/$name.err" >&2
  fi
  SUMMARY+=("$(printf '%-11s exit %s, monitor: %s failed of %s (%s) %s' "$name" "$code" "$failures" "$requests" "$verdict" \
    "$([[ ${#why[@]} == 0 ]] && echo ok || echo FAILED)")")
  "${K[@]}" delete ns "$ns" --wait=false >/dev/null
}

for c in "$@"; do
  case $c in
    seed) run_case seed 10 ok ;;
    no-prestop) run_case no-prestop none rolled_back ;;
    *) echo "monitor-datapath-test.sh: unknown case $c (seed, no-prestop)" >&2; exit 2 ;;
  esac
done
say "summary ($(( $(date +%s) - T_START )) s):"
for s in "${SUMMARY[@]}"; do echo "  $s" >&2; done
exit $FAILED
