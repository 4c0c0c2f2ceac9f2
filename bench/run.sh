#!/usr/bin/env bash
# Benchmark `ktplay run`: the seed-like upgrade (tests/cases/run/upgrade.ktplay, canary `for`
# kept at 1s) against `ktplay sim serve` at zero pace in another process, so the numbers are
# ktplay's own: wall time (best of 5), time the run spends waiting (the 1s canary), and peak RSS.
# Also `rehearse` (simulator in-process) at zero pace. BIN=path/to/ktplay to reuse a build
# (default: a release build). The fault→rollback latency is the ignored test
# `cargo test --test run_e2e -- --ignored --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/ktplay
fi
work=$(mktemp -d)
pb=tests/cases/run/upgrade.ktplay
serve() {
  "$BIN" sim serve --seed "$pb" --env staging --pace 0s --kubeconfig "$work/kc" > "$work/serve.log" 2>&1 &
  sim=$!
  for _ in $(seq 1 100); do grep -q "service workers" "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
  sed -i 's/name: "sim"/name: "staging"/; s/cluster: "sim"/cluster: "staging"/; s/user: "sim"/user: "staging"/; s/current-context: "sim"/current-context: "staging"/' "$work/kc"
  url() { grep "^service $1: " "$work/serve.log" | head -1 | awk '{print $NF}'; }
  colour() { grep "^service console ($1): " "$work/serve.log" | awk '{print $NF}'; }
  routes=(--route "api.staging.example.com=$(url api)" --route "gateway.staging.example.com=$(url gateway)"
          --route "console-blue.staging.internal=$(colour blue)" --route "console-green.staging.internal=$(colour green)")
}
trap 'kill $sim 2>/dev/null || true; rm -rf "$work"' EXIT
best_ms=999999; rss=0
for i in 1 2 3 4 5; do
  serve
  TEST_KEY=k ADMIN_TOKEN=a /usr/bin/time -o "$work/t" -f '%e %M' "$BIN" run "$pb" --env staging --approve \
    --kubeconfig "$work/kc" "${routes[@]}" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
  line=$(tail -1 "$work/t")
  kill $sim; wait $sim 2>/dev/null || true
  s=${line% *}; kb=${line#* }
  ms=$(python3 -c "print(int(float('$s')*1000))")
  (( ms < best_ms )) && best_ms=$ms
  (( kb > rss )) && rss=$kb
done
echo "run (sim in another process, zero pace): best ${best_ms} ms wall, of which 1000 ms canary wait; peak RSS $((rss / 1024)) MiB"
best_ms=999999; rss=0
for i in 1 2 3 4 5; do
  /usr/bin/time -o "$work/t" -f '%e %M' "$BIN" rehearse "$pb" --env staging --approve --pace 0s --max-wait 0s >/dev/null 2>&1
  line=$(tail -1 "$work/t")
  s=${line% *}; kb=${line#* }
  ms=$(python3 -c "print(int(float('$s')*1000))")
  (( ms < best_ms )) && best_ms=$ms
  (( kb > rss )) && rss=$kb
done
echo "rehearse (sim in-process, zero pace, no waits): best ${best_ms} ms wall; peak RSS $((rss / 1024)) MiB"
