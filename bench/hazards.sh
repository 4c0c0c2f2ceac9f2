#!/usr/bin/env bash
# Benchmark the preflight that predicts drops (issue 22): `ktplay plan` of the seed-like upgrade
# (tests/cases/run/upgrade.ktplay) without and with `--cluster` against `ktplay sim serve` in
# another process at zero pace, so the difference is the hazards' reading and rules: wall time
# (best of 10 each), peak RSS, and the API requests the preflight sends (from the simulator's
# request log). BIN=path/to/ktplay to reuse a build (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/ktplay
fi
work=$(mktemp -d)
pb=tests/cases/run/upgrade.ktplay
"$BIN" sim serve --seed "$pb" --env staging --pace 0s --kubeconfig "$work/kc" > "$work/serve.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q "service workers" "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
api=$(grep -o 'request log: [^ ]*' "$work/serve.log" | awk '{print $3}')
measure() {
  # Best wall time of 10 (ms, 0.1 resolution) and the largest RSS (MiB) of the child processes.
  python3 - "$BIN" "$pb" "$@" <<'PY'
import resource, subprocess, sys, time
best = 1e9
for _ in range(10):
    t = time.perf_counter()
    subprocess.run([sys.argv[1], "plan", sys.argv[2], "--env", "staging", *sys.argv[3:]],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    best = min(best, (time.perf_counter() - t) * 1000)
print(f"{best:.1f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024}")
PY
}
read -r plain_ms plain_rss < <(measure)
before=$(curl -s "$api" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
"$BIN" plan "$pb" --env staging --kubeconfig "$work/kc" --context sim >/dev/null 2>&1 || true
after=$(curl -s "$api" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
read -r cluster_ms cluster_rss < <(measure --kubeconfig "$work/kc" --context sim)
echo "plan: best ${plain_ms} ms wall, peak RSS ${plain_rss} MiB"
echo "plan --cluster (hazards of the live objects): best ${cluster_ms} ms wall, peak RSS ${cluster_rss} MiB; $((after - before)) API requests"
