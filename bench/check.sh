#!/usr/bin/env bash
# Benchmark `ktplay check`: 100 generated playbooks the size of keeptrusts-1.5.ktplay, and one.
# Prints wall time (best of N runs), peak RSS and, with valgrind installed, the instruction count
# (callgrind: exact, unlike wall time on a busy machine). Builds the release binary unless
# KTPLAY_BIN names one (to compare two builds: KTPLAY_BIN=/tmp/old-ktplay bench/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KTPLAY_BIN:-}" ]; then
  bin=$KTPLAY_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/ktplay
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/hooks"
cp playbooks/hooks/*.rhai "$work/hooks/"
for i in $(seq 1 100); do
  sed "s/playbook \"keeptrusts-1.5\"/playbook \"keeptrusts-1.5-$i\"/" playbooks/keeptrusts-1.5.ktplay > "$work/p$i.ktplay"
done
best() { # wall time in ms of 20 runs (best and mean, spawn to exit) and peak RSS
  python3 - "$@" <<'PY'
import os, sys, time
times, rss = [], 0
null = os.open(os.devnull, os.O_WRONLY)
for _ in range(20):
    t = time.perf_counter()
    pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
    _, _, usage = os.wait4(pid, 0)
    times.append((time.perf_counter() - t) * 1000)
    rss = max(rss, usage.ru_maxrss)
print(f"best {min(times):.1f} ms, mean {sum(times) / len(times):.1f} ms, peak RSS {rss // 1024} MiB")
PY
}
echo "100 playbooks: $(best "$bin" check "$work")"
echo "1 playbook:    $(best "$bin" check "$work/p1.ktplay")"
# The same from hyperfine (300 runs, no shell), if present: the numbers the README gives.
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 10 --runs 300 "$bin check $work/p1.ktplay" "$bin check $work" 2>/dev/null | grep -E 'Time|Range|check'
fi
if command -v valgrind >/dev/null; then
  instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'
  }
  echo "instructions, 100 playbooks: $(instructions "$bin" check "$work")"
  echo "instructions, 1 playbook:    $(instructions "$bin" check "$work/p1.ktplay")"
fi

# Scaling: one file of N copies of the seed playbook with 3 errors each (an unknown component, a
# status out of range, a missing hook), human and JSON output. Linear means ms/copy stays flat.
echo
echo "scaling (N copies with 3 errors each, one file; best of 3):"
printf '%8s %12s %12s %10s\n' copies human_ms json_ms errors
one=$(sed -e 's/rolling api timeout 10m/rolling apx timeout 10m/' \
          -e 's/expect 200 within 2m/expect 2000 within 2m/' \
          -e 's/hooks\/backup_recent.rhai/hooks\/missing.rhai/' playbooks/keeptrusts-1.5.ktplay)
best3() { # best wall ms of 3 runs
  local best=999999
  for _ in 1 2 3; do
    local s e
    s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N)
    local ms=$(( (e - s) / 1000000 ))
    (( ms < best )) && best=$ms
  done
  echo "$best"
}
for n in 100 400 800; do
  f="$work/many-$n.ktplay"
  : > "$f"
  for i in $(seq 1 "$n"); do
    printf '%s\n' "${one//\"keeptrusts-1.5\"/\"keeptrusts-1.5-$i\"}" >> "$f"
  done
  cp -r playbooks/hooks "$work/" 2>/dev/null || true
  human=$(COLUMNS=100 best3 "$bin" check "$f")
  json=$(best3 "$bin" check --format json "$f")
  errors=$( ("$bin" check --format json "$f" 2>/dev/null || true) | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"])')
  printf '%8s %12s %12s %10s\n' "$n" "$human" "$json" "$errors"
done
