#!/usr/bin/env bash
# Fault-injection soak of `ktplay run` (tests/soak.rs): SOAK_RUNS iterations (default 50) of the
# seed-like upgrade, each disrupted once at a random moment (SIGKILL, SIGTERM, two SIGTERMs,
# SIGSTOP past the lease, an API-error burst, or nothing; sometimes with the policy fault so it
# rolls back), resumed until it ends; fails if any run ends mixed, locked or unfinished.
# On the simulator always; also on the real backend when KTPLAY_TEST_KUBECONFIG is set
# (SOAK_REAL_RUNS iterations, default SOAK_RUNS). SOAK_SEED=N replays a soak's choices (printed).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${SOAK_RUNS:-50}
soak() {
  cargo test --release --test soak -- --ignored --nocapture --exact soak
}
echo "== soak on the simulator: $runs runs"
SOAK_BACKEND=sim SOAK_RUNS=$runs soak
if [ -n "${KTPLAY_TEST_KUBECONFIG:-}" ]; then
  echo "== soak on the real backend ($KTPLAY_TEST_KUBECONFIG): ${SOAK_REAL_RUNS:-$runs} runs"
  SOAK_BACKEND=real SOAK_RUNS=${SOAK_REAL_RUNS:-$runs} soak
else
  echo "(KTPLAY_TEST_KUBECONFIG not set: the real backend was not soaked)"
fi
