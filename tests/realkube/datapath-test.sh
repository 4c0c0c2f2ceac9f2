#!/usr/bin/env bash
# datapath-test.sh [CASE...] — the data-path proof as a test (README "Data path"): the seed's gateway
# Deployment (3 replicas, maxUnavailable 1, maxSurge 1, readinessProbe GET /readyz, preStop
# `sleep 10`, port 41002) upgraded 1.4.1 -> 1.5.0 with `kubectl set image` under a steady load
# through its Service's ClusterIP, on the real control plane with the real kube-proxy and one real
# process per pod. Counts the failed requests of each case:
#   seed         the Deployment as the seed writes it                  expect 0 failed
#   no-prestop   the same without the preStop hook                     expect > 0
#   short-grace  preStop sleep 10 with terminationGracePeriodSeconds 5  measured (no expectation)
#   grace-1      preStop sleep 10 with terminationGracePeriodSeconds 1  measured (no expectation)
#   no-probe     the same as seed without the readiness probe          expect > 0 (the app loads 2 s)
# Default: all five. Exit 0 only when every expectation holds and every case ends with 3 pods of
# 1.5.0, all of them Ready. Run from anywhere: outside the data path it starts one itself
# (REALKUBE_DATAPATH=1 tests/realkube.sh). Numbers go to stdout and, with DATAPATH_RESULTS=FILE,
# as JSON lines to FILE. DATAPATH_RATE (requests/s in all, default 200).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${REALKUBE_DATAPATH:-0}" != 1 || -z "${KTPLAY_TEST_KUBECONFIG:-}" ]]; then
  exec env REALKUBE_DATAPATH=1 "$HERE/../realkube.sh" "$0" "$@"
fi
[[ "$(awk 'NR > 2 { sub(":", "", $1); print $1 }' /proc/self/net/dev | tr '\n' ' ')" == "lo " ]] \
  || { echo "datapath-test.sh: not in a private network namespace (interfaces other than lo); refusing" >&2; exit 3; }
KUBECTL=$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
K=("$KUBECTL" --kubeconfig "$KTPLAY_TEST_KUBECONFIG")
[[ $# -gt 0 ]] || set -- seed no-prestop short-grace grace-1 no-probe
W=$(mktemp -d /tmp/datapath-test.XXXXXX)
LOADPID=
cleanup() { [[ -n "$LOADPID" ]] && kill "$LOADPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'echo "[datapath] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
say() { echo "[datapath $(date +%H:%M:%S)] $*" >&2; }
T_START=$(date +%s)
FAILED=0
SUMMARY=()

manifest() { # name prestop(seconds|none) grace probe(yes|no)
  local prestop="" probe=""
  [[ $2 != none ]] && prestop="        lifecycle:
          preStop:
            exec:
              command: [\"sleep\", \"$2\"]"
  [[ $4 == yes ]] && probe="        readinessProbe:
          httpGet:
            path: /readyz
            port: http
          periodSeconds: 1
          failureThreshold: 3"
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
      terminationGracePeriodSeconds: $3
      containers:
      - name: gateway
        image: keeptrusts/gateway:1.4.1
        ports:
        - {name: http, containerPort: 41002}
$probe
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

ready_endpoints() { # ns: ready addresses in the Service's EndpointSlices
  "${K[@]}" -n "$1" get endpointslices -l kubernetes.io/service-name=keeptrusts-gateway \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | grep -c . || true
}

run_case() { # name prestop grace probe expect(0|>0|any)
  local name=$1 ns="dp-$1" t0 t1 t2 n vip out ok=1 why=()
  say "case $name: preStop=$2 grace=$3 probe=$4 (expect failed $5)"
  "${K[@]}" create ns "$ns" >/dev/null
  manifest "$@" | "${K[@]}" -n "$ns" apply -f - >/dev/null
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=120s >/dev/null
  for _ in $(seq 1 100); do [[ $(ready_endpoints "$ns") -ge 3 ]] && break; sleep 0.2; done
  vip=$("${K[@]}" -n "$ns" get svc keeptrusts-gateway -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 1 50); do curl -fsS -m 1 "http://$vip/" >/dev/null 2>&1 && break; sleep 0.2; done
  sleep 3  # every proxy rule in place, every pod answering
  rm -f "$W/stop"; out="$W/$name.json"
  python3 "$HERE/load.py" "$vip" 80 "$W/stop" "$out" --rate "${DATAPATH_RATE:-200}" --max-seconds 240 & LOADPID=$!
  sleep 3
  t0=$(date +%s.%N)
  "${K[@]}" -n "$ns" set image deploy/keeptrusts-gateway gateway=keeptrusts/gateway:1.5.0 >/dev/null
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=180s >/dev/null || why+=("rollout did not finish")
  t1=$(date +%s.%N)
  # the old pods finish terminating (preStop, grace) before the load stops
  for _ in $(seq 1 300); do
    n=$("${K[@]}" -n "$ns" get pods -o name | grep -c . || true)
    [[ $n -le 3 ]] && break; sleep 0.2
  done
  t2=$(date +%s.%N)
  sleep 3
  touch "$W/stop"; wait "$LOADPID" || why+=("the load generator failed"); LOADPID=
  # final state: 3 pods, all 1.5.0 and Ready, the Deployment at 1.5.0 with 3 updated, available replicas
  local images ready dimg avail
  images=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
  ready=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  dimg=$("${K[@]}" -n "$ns" get deploy keeptrusts-gateway -o jsonpath='{.spec.template.spec.containers[0].image}')
  avail=$("${K[@]}" -n "$ns" get deploy keeptrusts-gateway -o jsonpath='{.status.updatedReplicas}/{.status.availableReplicas}')
  [[ "$images" == " 3 keeptrusts/gateway:1.5.0;" ]] || why+=("pods are not 3 x 1.5.0: $images")
  [[ "$ready" == 3 ]] || why+=("$ready pods Ready, not 3")
  [[ "$dimg" == keeptrusts/gateway:1.5.0 && "$avail" == 3/3 ]] || why+=("deployment $dimg $avail")
  local failed requests
  failed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$out")
  requests=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$out")
  [[ $requests -ge 1000 ]] || why+=("only $requests requests: the load did not run")
  case $5 in
    0) [[ $failed == 0 ]] || why+=("expected 0 failed requests, got $failed") ;;
    '>0') [[ $failed -gt 0 ]] || why+=("expected failed requests, got none") ;;
  esac
  # the last requests all reached 1.5.0 (a version seen at the end is checked through the Service)
  local last; last=$(curl -fsS -m 2 "http://$vip/version" 2>/dev/null || echo none)
  [[ "$last" == 1.5.0 ]] || why+=("the Service answers version $last after the rollout")
  local line
  line=$(python3 - "$out" "$name" "$2" "$3" "$4" "$5" "$t0" "$t1" "$t2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); name, prestop, grace, probe, expect = sys.argv[2:7]; t0, t1, t2 = map(float, sys.argv[7:10])
r.update(case=name, prestop=prestop, grace=int(grace), probe=probe, expect=expect,
         rollout_s=round(t1 - t0, 1), terminated_s=round(t2 - t0, 1))
r.pop("examples", None)
print(json.dumps(r, sort_keys=True))
PY
)
  [[ -n "${DATAPATH_RESULTS:-}" ]] && echo "$line" >> "$DATAPATH_RESULTS"
  echo "$line"
  if [[ ${#why[@]} -gt 0 ]]; then
    ok=0; FAILED=1
    for w in "${why[@]}"; do say "case $name FAILED: $w"; done
    python3 -c 'import json,sys; print("  examples:", json.load(open(sys.argv[1]))["examples"])' "$out" >&2
  fi
  SUMMARY+=("$(printf '%-12s failed %5s of %6s (%s) %s' "$name" "$failed" "$requests" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kinds"] or "-")' "$out")" \
    "$([[ $ok == 1 ]] && echo ok || echo FAILED)")")
  "${K[@]}" delete ns "$ns" --wait=false >/dev/null
}

for c in "$@"; do
  case $c in
    seed) run_case seed 10 30 yes 0 ;;
    no-prestop) run_case no-prestop none 30 yes '>0' ;;
    short-grace) run_case short-grace 10 5 yes any ;;
    grace-1) run_case grace-1 10 1 yes any ;;
    no-probe) run_case no-probe 10 30 no '>0' ;;
    *) echo "datapath-test.sh: unknown case $c (seed, no-prestop, short-grace, grace-1, no-probe)" >&2; exit 2 ;;
  esac
done
say "summary ($(( $(date +%s) - T_START )) s):"
for s in "${SUMMARY[@]}"; do echo "  $s" >&2; done
exit $FAILED
