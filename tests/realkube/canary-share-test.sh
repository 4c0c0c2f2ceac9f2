#!/usr/bin/env bash
# canary-share-test.sh — the share of real requests a ktplay canary gets on the real data path
# (issue 22): the seed's gateway Deployment at 9 replicas (readinessProbe /readyz, preStop
# `sleep 10`), `ktplay run` with `canary gateway weight 10% for 45s` (no `traffic`: the
# replica-ratio canary, 1 canary pod beside 9 behind the same Service), and during the canary a
# steady load through the Service's ClusterIP (a new connection per request, load.py) counted by
# the version each pod answers with. Expects 10% +- 2% from 1.5.0, no failed request, the run to
# exit 0, and 9 pods of 1.5.0 at the end with the canary Deployment gone and the lock released.
# There is no Gateway dataplane here: an HTTPRoute's weights are written by ktplay
# (tests/traffic_real.rs) but carried by nothing; this measures the share the real kube-proxy
# gives a replica-ratio canary. Run from anywhere (it starts its own data-path cluster).
# KTPLAY_BIN: the binary (default: built by cargo).
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
  || { echo "canary-share-test.sh: not in a private network namespace (interfaces other than lo); refusing" >&2; exit 3; }
KUBECTL=$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
K=("$KUBECTL" --kubeconfig "$KTPLAY_TEST_KUBECONFIG")
W=$(mktemp -d /tmp/canary-share.XXXXXX)
RUN=
cleanup() { [[ -n "$RUN" ]] && kill "$RUN" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'echo "[canary-share] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
say() { echo "[canary-share $(date +%H:%M:%S)] $*" >&2; }
T_START=$(date +%s)
ns=canary-share

say "9 replicas of keeptrusts/gateway:1.4.1 behind a Service"
"${K[@]}" create ns "$ns" >/dev/null
"${K[@]}" -n "$ns" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: keeptrusts-gateway
  labels: {app: gateway}
spec:
  replicas: 9
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
          httpGet: {path: /readyz, port: http}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {command: ["sleep", "10"]}
---
apiVersion: v1
kind: Service
metadata:
  name: keeptrusts-gateway
spec:
  selector: {app: gateway}
  ports:
  - {port: 80, targetPort: http}
YAML
"${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=180s >/dev/null
ready_endpoints() {
  "${K[@]}" -n "$ns" get endpointslices -l kubernetes.io/service-name=keeptrusts-gateway \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | grep -c . || true
}
vip=$("${K[@]}" -n "$ns" get svc keeptrusts-gateway -o jsonpath='{.spec.clusterIP}')
# The monitor's budget is 0 failures from its first request: wait until kube-proxy has programmed
# the Service with all 9 endpoints (a ClusterIP with no rules yet drops the SYN: a time-out, not a
# refusal — CI saw exactly that once), then a moment more for every rule to settle.
for _ in $(seq 1 150); do [[ $(ready_endpoints) -ge 9 ]] && break; sleep 0.2; done
for _ in $(seq 1 50); do curl -fsS -m 1 "http://$vip/" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 3
{
  echo 'playbook "canary-share" {'
  echo "  namespace \"$ns\""
  echo '  component gateway {'
  echo '    deployment "keeptrusts-gateway"'
  echo '    image "keeptrusts/gateway"'
  echo '    from 1.4.1'
  echo '    to 1.5.0'
  echo '  }'
  echo "  let gateway_url = \"http://$vip\""
  echo '  monitor gateway GET "${gateway_url}/healthz" every 50ms timeout 2s budget failures 0'
  echo '  stage gateways {'
  echo '    canary gateway weight 10% for 45s timeout 3m'
  echo '  }'
  echo '}'
} > "$W/canary.ktplay"
NO_COLOR=1 "$KTPLAY_BIN" run "$W/canary.ktplay" --kubeconfig "$KTPLAY_TEST_KUBECONFIG" > "$W/run.out" 2>&1 &
RUN=$!
for _ in $(seq 1 300); do
  [[ "$("${K[@]}" -n "$ns" get deploy keeptrusts-gateway-canary -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)" == 1 \
     && $(ready_endpoints) == 10 ]] && break
  sleep 0.2
done
[[ $(ready_endpoints) == 10 ]] || { say "the canary never became one of 10 ready endpoints"; cat "$W/run.out" >&2; exit 1; }
sleep 3  # every proxy rule in place (min sync 2 s)
say "canary ready: 1 of 10 endpoints; load through $vip for 20 s"
python3 "$HERE/load.py" "$vip" 80 "$W/stop" "$W/load.json" --rate 150 --threads 6 --max-seconds 20
code=0
wait "$RUN" || code=$?
RUN=
read -r requests canary failed < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests"], r["versions"].get("1.5.0", 0), r["failed"])' "$W/load.json")
share=$(python3 -c "print(round(100.0 * $canary / max($requests, 1), 2))")
say "canary share: $canary of $requests requests = $share% (failed $failed); ktplay exit $code"
why=()
[[ $requests -ge 1500 ]] || why+=("only $requests requests")
python3 -c "import sys; sys.exit(0 if 8.0 <= $share <= 12.0 else 1)" || why+=("share $share% is not 10% +- 2%")
[[ $failed == 0 ]] || why+=("$failed requests failed during the canary")
[[ $code == 0 ]] || why+=("ktplay exit $code")
"${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=120s >/dev/null || why+=("the final rollout did not finish")
for _ in $(seq 1 300); do [[ $("${K[@]}" -n "$ns" get pods -o name | grep -c . || true) -le 9 ]] && break; sleep 0.2; done
images=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
[[ "$images" == " 9 keeptrusts/gateway:1.5.0;" ]] || why+=("pods: $images")
if "${K[@]}" -n "$ns" get deploy keeptrusts-gateway-canary >/dev/null 2>&1; then why+=("the canary Deployment is still there"); fi
[[ $("${K[@]}" -n "$ns" get leases -o name | grep -c ktplay- || true) == 0 ]] || why+=("the lock is still held")
grep '^monitor gateway' "$W/run.out" >&2 || why+=("no monitor line")
if [[ ${#why[@]} -gt 0 ]]; then
  for w in "${why[@]}"; do say "FAILED: $w"; done
  tail -30 "$W/run.out" >&2
  exit 1
fi
echo "{\"canary_requests\": $canary, \"requests\": $requests, \"share_percent\": $share}"
say "ok ($(( $(date +%s) - T_START )) s)"
