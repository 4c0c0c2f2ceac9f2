#!/usr/bin/env bash
# The long run of the check fuzz target (tests/fuzz_check.rs): generated and mutated playbooks for
# FUZZ_SECONDS (default 600); prints cases, crashes and false "ok"s, and fails on any. Inputs that
# fail are written to $TMPDIR/ktplay-fuzz-N.ktplay. Run from anywhere; PROFILE=release for speed.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[ "${PROFILE:-dev}" = release ] && profile=(--release)
FUZZ_SECONDS=${FUZZ_SECONDS:-600} cargo test "${profile[@]}" -p ktplay --test fuzz_check fuzz_for_a_while \
  -- --ignored --nocapture 2>&1 | grep -E '^(fuzz:|FAIL)|panicked'
