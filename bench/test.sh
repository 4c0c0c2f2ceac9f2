#!/usr/bin/env bash
# CPU of `ktplay test playbooks/` (the shipped tests, each on its own simulator and virtual
# clock): the whole suite once, then each test alone. CPU time is user + sys of the process, so a
# busy second core does not change it much; wall time is shown too.
#
#   KTPLAY_BIN=path/to/ktplay bench/test.sh     # default: the debug build
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${KTPLAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/ktplay}
cpu() { # "cpu_s wall_s" of one command, its output thrown away
  python3 - "$@" <<'PY'
import os, sys, time
null = os.open(os.devnull, os.O_WRONLY)
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
_, status, u = os.wait4(pid, 0)
print(f"{u.ru_utime + u.ru_stime:.2f} {time.perf_counter() - t:.2f} {os.waitstatus_to_exitcode(status)}")
PY
}
read -r c w code < <(cpu "$bin" test playbooks/)
echo "whole suite: cpu ${c}s wall ${w}s exit $code"
printf '%8s %8s %10s  %s\n' cpu_s wall_s simulated test
"$bin" test playbooks/ 2>/dev/null | sed -n 's/^ok   \(.*\)  (simulated \([^,]*\),.*/\2\t\1/p; s/^FAIL \(.*\)  (simulated \([^,]*\),.*/\2\t\1/p' |
  while IFS=$'\t' read -r sim name; do
    read -r c w code < <(cpu "$bin" test playbooks/ --test "$name")
    printf '%8s %8s %10s  %s\n' "$c" "$w" "$sim" "$name"
  done
