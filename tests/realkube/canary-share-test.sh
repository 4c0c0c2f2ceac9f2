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
# shellcheck source=tests/realkube/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rk_enter canary-share 1 "$@"
W=$(mktemp -d /tmp/canary-share.XXXXXX)
RUN=
cleanup() { [[ -n "$RUN" ]] && kill "$RUN" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'echo "[canary-share] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
T_START=$(date +%s)
ns=canary-share

say "9 replicas of keeptrusts/gateway:1.4.1 behind a Service"
rk_gateway_up "$ns" 9 10 30 yes
vip=$VIP
# The monitor's budget is 0 failures from its first request: rk_gateway_up waited until the
# Service had all 9 ready endpoints and answered (a ClusterIP with no rules yet drops the SYN: a
# time-out, not a refusal — CI saw exactly that once); a moment more for every rule to settle.
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
     && $(rk_ready_endpoints "$ns") == 10 ]] && break
  sleep 0.2
done
[[ $(rk_ready_endpoints "$ns") == 10 ]] || { say "the canary never became one of 10 ready endpoints"; cat "$W/run.out" >&2; exit 1; }
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
rk_wait_pods_at_most "$ns" 9
images=$(rk_pod_images "$ns")
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
