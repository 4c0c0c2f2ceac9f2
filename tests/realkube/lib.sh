# tests/realkube/lib.sh — what the data-path scripts (datapath-test.sh, monitor-datapath-test.sh,
# canary-share-test.sh) share. Source it, then call rk_enter first:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   rk_enter NAME KTPLAY(0|1) "$@"
# rk_enter builds ktplay (KTPLAY=1, unless KTPLAY_BIN is set) before the network namespace (it has
# no network for cargo), re-runs the script under `REALKUBE_DATAPATH=1 tests/realkube.sh` unless it
# already runs on the data path, refuses to run outside a private network namespace, and sets HERE,
# ROOT, KUBECTL, K (kubectl with the harness's kubeconfig) and say(). The pods of the Keeptrusts
# images run `$KTPLAY_BIN sim app` (tests/realkube/images.json; podapp.py without a binary).
# shellcheck shell=bash

rk_enter() { # name ktplay(0|1) script-args...
  RK_NAME=$1
  local want_ktplay=$2
  shift 2
  HERE="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  ROOT="$(cd "$HERE/../.." && pwd)"
  if [[ -z "${KTPLAY_BIN:-}" && $want_ktplay == 1 ]]; then
    (cd "$ROOT" && cargo build --quiet --bin ktplay >&2)
    KTPLAY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/ktplay"
    export KTPLAY_BIN
  fi
  if [[ "${REALKUBE_DATAPATH:-0}" != 1 || -z "${KTPLAY_TEST_KUBECONFIG:-}" ]]; then
    exec env REALKUBE_DATAPATH=1 "$HERE/../realkube.sh" "$0" "$@"
  fi
  [[ "$(awk 'NR > 2 { sub(":", "", $1); print $1 }' /proc/self/net/dev | tr '\n' ' ')" == "lo " ]] \
    || { echo "$RK_NAME: not in a private network namespace (interfaces other than lo); refusing" >&2; exit 3; }
  KUBECTL=$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
  K=("$KUBECTL" --kubeconfig "$KTPLAY_TEST_KUBECONFIG")
}

say() { echo "[$RK_NAME $(date +%H:%M:%S)] $*" >&2; }

# The seed's gateway Deployment (maxUnavailable 1, maxSurge 1, port `http` 41002) at 1.4.1 and its
# Service (port 80), as the three scripts vary it.
rk_gateway_manifest() { # replicas prestop(seconds|none) grace probe(yes|no)
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
  replicas: $1
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

rk_ready_endpoints() { # ns: ready addresses in keeptrusts-gateway's EndpointSlices
  "${K[@]}" -n "$1" get endpointslices -l kubernetes.io/service-name=keeptrusts-gateway \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | grep -c . || true
}

# Apply the manifest in a new namespace, wait for the rollout, `replicas` ready endpoints and the
# ClusterIP answering; sets VIP.
rk_gateway_up() { # ns replicas prestop grace probe
  local ns=$1
  "${K[@]}" create ns "$ns" >/dev/null
  rk_gateway_manifest "${@:2}" | "${K[@]}" -n "$ns" apply -f - >/dev/null
  "${K[@]}" -n "$ns" rollout status deploy/keeptrusts-gateway --timeout=180s >/dev/null
  for _ in $(seq 1 150); do [[ $(rk_ready_endpoints "$ns") -ge $2 ]] && break; sleep 0.2; done
  VIP=$("${K[@]}" -n "$ns" get svc keeptrusts-gateway -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 1 50); do curl -fsS -m 1 "http://$VIP/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
}

rk_version() { # vip: the version the Service answers with (`none` if it does not)
  local body
  body=$(curl -fsS -m 2 "http://$1/version" 2>/dev/null) || { echo none; return 0; }
  python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get("version", "none"))
except ValueError: print(sys.argv[1].strip() or "none")' "$body"
}

# The pods' images as " N image;" per image, and how many are Ready.
rk_pod_images() { # ns
  "${K[@]}" -n "$1" get pods -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort | uniq -c | tr -s ' ' | tr '\n' ';'
}
rk_pods_ready() { # ns
  "${K[@]}" -n "$1" get pods -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
rk_wait_pods_at_most() { # ns n: the old pods finish terminating (preStop, grace)
  for _ in $(seq 1 300); do
    [[ $("${K[@]}" -n "$1" get pods -o name | grep -c . || true) -le $2 ]] && return 0
    sleep 0.2
  done
}
