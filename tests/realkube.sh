#!/usr/bin/env bash
# tests/realkube.sh [COMMAND...] — run COMMAND (default: cargo test) with a real Kubernetes
# control plane up: kube-apiserver + kube-controller-manager v1.34, etcd and a fake kubelet, from
# the repository's own harness in tests/realkube (REALKUBE_DIR to use another copy). The binaries are built
# once into ~/.cache/realkube (about 15 minutes on 2 cores the first time; reused after) and the
# cluster lives in a temporary folder for this command only. COMMAND sees
# KTPLAY_TEST_KUBECONFIG, so every end-to-end scenario also runs on the real backend.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RK="${REALKUBE_DIR:-$ROOT/tests/realkube}"
[[ $# -gt 0 ]] || set -- cargo test
say() { echo "[realkube $(date +%H:%M:%S)] $*" >&2; }

if [[ ! -x "$RK/up.sh" ]]; then
  say "no control-plane harness at $RK (set REALKUBE_DIR): cannot run the real-backend tests"
  exit 3
fi
t0=$(date +%s)
if ! "$RK/build.sh" >&2; then
  say "building the control plane failed (see above)"
  exit 3
fi
t1=$(date +%s)
WORK=$(mktemp -d /tmp/ktplay-realkube.XXXXXX)
cleanup() { "$RK/down.sh" "$WORK/rk" --purge >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
if ! KC=$("$RK/up.sh" "$WORK/rk"); then
  say "the control plane did not start; its logs:"
  tail -n 30 "$WORK"/rk/*.log >&2 2>/dev/null || true
  exit 3
fi
t2=$(date +%s)
say "control plane up (build/reuse $((t1 - t0)) s, start $((t2 - t1)) s): $KC"
export KTPLAY_TEST_KUBECONFIG="$KC"
set +e
"$@"
rc=$?
set -e
say "'$*' exited $rc after $(( $(date +%s) - t2 )) s"
exit $rc
