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
  local best=999999 rss=0
  for _ in $(seq 1 10); do
    /usr/bin/time -o "$work/t" -f '%e %M' "$BIN" plan "$pb" --env staging "$@" >/dev/null 2>&1 || true
    line=$(tail -1 "$work/t"); s=${line% *}; kb=${line#* }
    ms=$(python3 -c "print(int(float('$s')*1000))")
    (( ms < best )) && best=$ms
    (( kb > rss )) && rss=$kb
  done
  echo "$best $((rss / 1024))"
}
read -r plain_ms plain_rss < <(measure)
before=$(curl -s "$api" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
"$BIN" plan "$pb" --env staging --kubeconfig "$work/kc" --context sim >/dev/null 2>&1 || true
after=$(curl -s "$api" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
read -r cluster_ms cluster_rss < <(measure --kubeconfig "$work/kc" --context sim)
echo "plan: best ${plain_ms} ms wall, peak RSS ${plain_rss} MiB"
echo "plan --cluster (hazards of the live objects): best ${cluster_ms} ms wall, peak RSS ${cluster_rss} MiB; $((after - before)) API requests"
