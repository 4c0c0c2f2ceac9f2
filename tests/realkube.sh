#!/usr/bin/env bash
# tests/realkube.sh [COMMAND...] — run COMMAND (default: cargo test) with a real Kubernetes
# control plane up: kube-apiserver + kube-controller-manager v1.34, etcd and a fake kubelet, from
# the repository's own harness in tests/realkube (REALKUBE_DIR to use another copy). The binaries are built
# once into ~/.cache/realkube (about 15 minutes on 2 cores the first time; reused after) and the
# cluster lives in a temporary folder for this command only. COMMAND sees
# KTPLAY_TEST_KUBECONFIG, so every end-to-end scenario also runs on the real backend.
#
# The real data path (tests/realkube/README.md "Data path") is the default wherever this user may
# make a network namespace (REALKUBE_DATAPATH=0: without it; =1: insist on it). This script then
# re-runs itself in a private network namespace (`unshare -n`, root), and everything — control
# plane, kube-proxy, the fake kubelet's pod processes on 10.244.x.y, and COMMAND — runs in it;
# nothing in it can reach or be reached from the machine's network. COMMAND also sees
# REALKUBE_DATAPATH=1, and the pods of the Keeptrusts images run `$KTPLAY_BIN sim app` (default:
# the debug ktplay of this checkout's target folder). Needs the kube-proxy binary (built with the
# rest) and iptables (or nftables with REALKUBE_PROXY_MODE=nftables). A COMMAND of `cargo test …`
# is compiled (`cargo test --no-run …`) before entering the namespace: it has no network.
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
if [[ -z "${REALKUBE_DATAPATH:-}" && "${REALKUBE_IN_NETNS:-}" != "$$" ]]; then
  if command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
    export REALKUBE_DATAPATH=1
  else
    export REALKUBE_DATAPATH=0
    say "!!! no private network namespace for this user (unshare -n): the real backend runs WITHOUT the data path (HTTP guards answered by the follower simulator)"
  fi
fi
if [[ "${REALKUBE_DATAPATH:-0}" == 1 ]]; then export REALKUBE_KUBE_PROXY=1; fi
if [[ "${REALKUBE_IN_NETNS:-}" != "$$" ]] && ! "$RK/build.sh" >&2; then  # (built before the namespace: it has no network)
  say "building the control plane failed (see above)"
  exit 3
fi
if [[ "${REALKUBE_DATAPATH:-0}" == 1 && "${REALKUBE_IN_NETNS:-}" != "$$" ]]; then
  [[ -x "${REALKUBE_BIN:-${REALKUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realkube}/bin}/kube-proxy" ]] \
    || { say "REALKUBE_DATAPATH=1: kube-proxy could not be built (see above)"; exit 3; }
  command -v unshare >/dev/null || { say "REALKUBE_DATAPATH=1 needs unshare (util-linux)"; exit 3; }
  if [[ "${1:-}" == cargo && "${2:-}" == test ]]; then
    say "compiling before the namespace (no network in it): cargo test --no-run ${*:3}"
    cargo test --no-run "${@:3}" >&2 || { say "cargo test --no-run failed"; exit 3; }
  fi
  export KTPLAY_BIN="${KTPLAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/ktplay}"
  export CARGO_NET_OFFLINE=true
  # exec keeps the pid, so the inner run knows it is the one this namespace was made for
  export REALKUBE_IN_NETNS=$$
  exec unshare -n -- "$0" "$@"
fi
t1=$(date +%s)
WORK=$(mktemp -d /tmp/ktplay-realkube.XXXXXX)
cleanup() { "$RK/down.sh" "$WORK/rk" --purge >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
if ! KC=$("$RK/up.sh" "$WORK/rk"); then
  say "the control plane did not start; its logs:"
  tail -n 30 "$WORK"/rk/logs/*.log >&2 2>/dev/null || true
  exit 3
fi
t2=$(date +%s)
say "control plane up (build/reuse $((t1 - t0)) s, start $((t2 - t1)) s$([[ "${REALKUBE_DATAPATH:-0}" == 1 ]] && echo ", with the data path in a private network namespace")): $KC"
export KTPLAY_TEST_KUBECONFIG="$KC"
set +e
"$@"
rc=$?
set -e
say "'$*' exited $rc after $(( $(date +%s) - t2 )) s"
exit $rc
