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
# shellcheck source=tests/realkube/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rk_enter datapath 0 "$@"
[[ $# -gt 0 ]] || set -- seed no-prestop short-grace grace-1 no-probe
W=$(mktemp -d /tmp/datapath-test.XXXXXX)
LOADPID=
cleanup() { [[ -n "$LOADPID" ]] && kill "$LOADPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'echo "[datapath] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
T_START=$(date +%s)
FAILED=0
SUMMARY=()

run_case() { # name prestop grace probe expect(0|>0|any)
  local name=$1 ns="dp-$1" t0 t1 t2 vip out ok=1 why=()
  say "case $name: preStop=$2 grace=$3 probe=$4 (expect failed $5)"
  rk_gateway_up "$ns" 3 "$2" "$3" "$4"
  vip=$VIP
  sleep 3  # every proxy rule in place, every pod answering
  rm -f "$W/stop"; out="$W/$name.json"
  python3 "$HERE/load.py" "$vip" 80 "$W/stop" "$out" --rate "${DATAPATH_RATE:-200}" --max-seconds 240 & LOADPID=$!
  sleep 3
  t0=$(date +%s.%N)
  "${K[@]}" -n "$ns" set image deploy/keeptrusts-gateway gateway=keeptrusts/gateway:1.5.0 >/dev/null
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=180s >/dev/null || why+=("rollout did not finish")
  t1=$(date +%s.%N)
  # the old pods finish terminating (preStop, grace) before the load stops
  rk_wait_pods_at_most "$ns" 3
  t2=$(date +%s.%N)
  sleep 3
  touch "$W/stop"; wait "$LOADPID" || why+=("the load generator failed"); LOADPID=
  # final state: 3 pods, all 1.5.0 and Ready, the Deployment at 1.5.0 with 3 updated, available replicas
  local images ready dimg avail
  images=$(rk_pod_images "$ns")
  ready=$(rk_pods_ready "$ns")
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
  local last; last=$(rk_version "$vip")
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
