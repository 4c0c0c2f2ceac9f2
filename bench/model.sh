#!/usr/bin/env bash
# Benchmark the compatibility model's cost against the size of the playbook: `check` and `plan` of
# generated playbooks (S stages over C components; stage i rolls component i mod C to the next of
# V patch versions, cycling, then `guard ready` it: two failure points a stage, every one with a
# rollback path through every stage before it; one matrix, hub c0, rule adjacent_minor). Prints CPU time (user + sys, best of 3), peak RSS, and, with valgrind and
# CALLGRIND=1, the instruction count. Linear means ms/stage stays flat as S grows.
#
#   KTPLAY_BIN=path/to/ktplay bench/model.sh          # one build (default: the debug build)
#   KTPLAY_BIN=/tmp/old-ktplay bench/model.sh          # the numbers of another build
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${KTPLAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/ktplay}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gen() { # gen STAGES COMPONENTS VERSIONS FILE
  python3 - "$@" <<'PY'
import sys
s, c, v, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = ['playbook "scale" {', '  namespace "keeptrusts"', '  matrix scale']
top = {}
for i in range(s):
    top[i % c] = (i // c) % v + 1
for j in range(c):
    lines.append(f'  component c{j} {{ deployment "c{j}" image "org/c{j}" from 1.5.0 to 1.5.{top.get(j, 0)} }}')
for i in range(s):
    j = i % c
    lines.append(f'  stage s{i} {{')
    lines.append(f'    rolling c{j} to 1.5.{(i // c) % v + 1}')
    lines.append(f'    guard ready c{j}')
    lines.append('  }')
lines += ['}', '', 'matrix scale {', '  hub c0', '  rule adjacent_minor', '}', '']
open(out, 'w').write('\n'.join(lines))
PY
}

cpu() { # best of 3: "cpu_ms rss_mib" of one command (its output thrown away)
  python3 - "$@" <<'PY'
import os, sys
best, rss = None, 0
null = os.open(os.devnull, os.O_WRONLY)
for _ in range(3):
    pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
    _, status, u = os.wait4(pid, 0)
    ms = (u.ru_utime + u.ru_stime) * 1000
    best = ms if best is None else min(best, ms)
    rss = max(rss, u.ru_maxrss // 1024)
print(f"{best:.0f} {rss}")
PY
}

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'
}

printf '%7s %6s %8s %9s %9s %10s %9s %9s %5s %s\n' stages comps versions check_ms us/stage check_MiB plan_ms plan_MiB exit instructions
for case in ${CASES:-"64 8 4" "128 8 4" "1024 8 4" "2048 8 4" "3072 8 4" "5000 8 4" "1024 65 4" "1024 128 4" "1024 256 4" "130 2 65"}; do
  set -- $case
  f="$work/s$1-c$2-v$3.ktplay"
  gen "$1" "$2" "$3" "$f"
  read -r cms crss < <(cpu "$bin" check "$f")
  read -r pms prss < <(cpu "$bin" plan "$f")
  code=0; "$bin" check "$f" >/dev/null 2>&1 || code=$?
  ins=-
  if [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null; then ins=$(instructions "$bin" check "$f"); fi
  printf '%7s %6s %8s %9s %9s %10s %9s %9s %5s %s\n' "$1" "$2" "$3" "$cms" "$(( cms * 1000 / $1 ))" "$crss" "$pms" "$prss" "$code" "$ins"
done
