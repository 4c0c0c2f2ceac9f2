#!/usr/bin/env bash
# monitor-datapath-test.sh [CASE...] — ktplay's disruption monitor on the real data path (issue 22,
# parts 1, 2 and 3): `ktplay run` of a playbook whose `monitor` probes the seed gateway Deployment's
# Service ClusterIP while ktplay upgrades it 1.4.1 -> 1.5.0 (3 replicas, maxUnavailable 1,
# maxSurge 1, readinessProbe GET /readyz, port 41002), on the real control plane with the real
# kube-proxy and one real process per pod (the same Deployment as datapath-test.sh).
#   seed         preStop `sleep 10`, grace 30 s   expect: no drop predicted by the preflight, 0 failed
#                                                 requests, exit 0, 1.5.0 everywhere
#   no-prestop   no preStop hook                  expect: the preflight's `hazard::no_prestop` before
#                                                 the first action, failures counted, the budget fails
#                                                 the run, rolled back (exit 1), 1.4.1 everywhere
# Each case also asserts the lock is released, the journal's status, and 3 Ready pods of the final
# version answering through the Service. Run from anywhere: outside the data path it starts one
# itself (REALKUBE_DATAPATH=1 tests/realkube.sh). KTPLAY_BIN: the binary (default: built by cargo).
# With MONITOR_RESULTS=FILE each case's final monitor event goes to FILE as a JSON line.
set -euo pipefail
# shellcheck source=tests/realkube/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rk_enter monitor-datapath 1 "$@"
[[ $# -gt 0 ]] || set -- seed no-prestop
W=$(mktemp -d /tmp/monitor-datapath.XXXXXX)
trap 'rm -rf "$W"' EXIT
trap 'echo "[monitor-datapath] FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
T_START=$(date +%s)
FAILED=0
SUMMARY=()

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

run_case() { # name prestop expect(ok|rolled_back)
  local name=$1 ns="mon-$1" vip why=() want code
  say "case $name: preStop=$2 (expect $3)"
  rk_gateway_up "$ns" 3 "$2" 30 yes
  vip=$VIP
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
  # the preflight (issue 22 part 3) predicted the drop before the first action, or did not
  local predicted
  predicted=$(python3 - "$W/$name.json" <<'PY'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
first = next((i for i, e in enumerate(evs) if e.get("event") == "start"), len(evs))
drops = {"ktplay::hazard::no_prestop", "ktplay::hazard::short_prestop",
         "ktplay::hazard::grace_too_short", "ktplay::hazard::no_readiness_probe"}
print(" ".join(sorted({e["code"] for e in evs[:first] if e.get("event") == "hazard" and e.get("code") in drops})) or "none")
PY
)
  echo "$name: hazards predicted before the first action: $predicted"
  if [[ $2 == none ]]; then
    [[ $predicted == *ktplay::hazard::no_prestop* ]] || why+=("the preflight did not warn of the missing preStop before the first action ($predicted)")
  else
    [[ $predicted == none ]] || why+=("the preflight predicted drops for a safe Deployment: $predicted")
  fi
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
  rk_wait_pods_at_most "$ns" 3
  local images ready dimg last leases status
  images=$(rk_pod_images "$ns")
  ready=$(rk_pods_ready "$ns")
  dimg=$("${K[@]}" -n "$ns" get deploy keeptrusts-gateway -o jsonpath='{.spec.template.spec.containers[0].image}')
  [[ "$images" == " 3 keeptrusts/gateway:$want;" ]] || why+=("pods are not 3 x $want: $images")
  [[ "$ready" == 3 ]] || why+=("$ready pods Ready, not 3")
  [[ "$dimg" == "keeptrusts/gateway:$want" ]] || why+=("deployment at $dimg")
  sleep 2
  last=$(rk_version "$vip")
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
