#!/usr/bin/env bash
# Policy engine benchmark: a generated 1,000-rule policy, loaded+validated and decided against, side by side
# with other loaders of the same bytes (libyaml's and libfyaml's bare event parsers, PyYAML's C loader, Yams).
# Our load is measured twice: as it runs (the YAML fast path, Sources/Policy/FastYAML.swift, reads the file) and
# with the fast path turned off (libyaml reads it, as it does every file the fast path declines).
# Goals (issue 5): deciding well under 100 µs; loading+validating under 10 ms.
#
#   bench/policy.sh            all of it (builds the release bench; Yams peer is built on first run, ~3 min)
#   NO_YAMS=1 bench/policy.sh  skip the Yams peer
#
# Times are medians, in thread CPU time (the work's own cost; this machine is shared) and, for our own
# numbers, wall time too; loads also print the fastest of the 30 runs (least disturbed by other processes).
# On a busy shared machine even CPU time moves with the load (caches, the hypervisor), so the instruction
# counts at the end are the numbers to compare between versions.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=${RULES:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== build (release)"
swift build -c release --product policy-bench 2>&1 | grep -E 'error|warning: ' || true
bench=.build/release/policy-bench
$bench write "$work/policy.yaml" "$rules"
echo "policy: $rules generated rules + default, $(wc -c <"$work/policy.yaml") bytes"

echo "YAML parser that loads this file: $($bench path "$work/policy.yaml")"

echo
echo "== Bulkhead (Policy target: YAML fast path → located tree → validated policy, lints, decision index)"
$bench run "$work/policy.yaml" | tee "$work/ours.txt"
echo
echo "== Bulkhead with the fast path off (libyaml events → the same tree → the same validation)"
$bench run-libyaml "$work/policy.yaml" | tee "$work/ours-libyaml.txt"

echo
echo "== peers on the same file"
gcc -O2 -o "$work/libyaml-events" bench/libyaml-events.c -lyaml
"$work/libyaml-events" "$work/policy.yaml" | tee "$work/floor.txt"
have_fy=
if [[ -f /usr/include/libfyaml.h ]] && gcc -O2 -o "$work/libfyaml-events" bench/libfyaml-events.c -lfyaml 2>/dev/null; then
  have_fy=1
  "$work/libfyaml-events" "$work/policy.yaml" | tee "$work/fyaml.txt"
else
  echo "libfyaml not installed: its peer skipped (apt-get install libfyaml-dev)"
fi
if python3 -c 'import yaml; yaml.CSafeLoader' 2>/dev/null; then
  python3 - "$work/policy.yaml" <<'PY' | tee "$work/pyyaml.txt"
import sys, time, yaml
text = open(sys.argv[1]).read()
runs = []
for _ in range(30):
    t0 = time.thread_time()
    yaml.load(text, Loader=yaml.CSafeLoader)
    runs.append((time.thread_time() - t0) * 1000)
runs.sort()
print(f"PyYAML {yaml.__version__} CSafeLoader (values, no validation): median {runs[15]:.3f} ms CPU")
PY
else
  echo "PyYAML with libyaml not installed: skipped (apt-get install python3-yaml)"
fi
if [[ -z ${NO_YAMS:-} ]]; then
  (cd bench/yams-peer && swift build -c release 2>&1 | grep -E 'error' || true)
  if [[ -x bench/yams-peer/.build/release/yams-peer ]]; then
    bench/yams-peer/.build/release/yams-peer "$work/policy.yaml" | tee "$work/yams.txt"
  else
    echo "Yams peer did not build: skipped"
  fi
fi

if command -v valgrind >/dev/null; then
  echo
  echo "== instructions (valgrind callgrind: exact counts, not disturbed by other load on the machine)"
  # (perf stat -e instructions needs a hardware PMU, which this kind of VM does not expose; callgrind counts
  # in software. Its DWARF reader chokes on Swift 6.3's debug info, so it runs a copy without it.)
  count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  cp $bench "$work/policy-bench" && strip --strip-debug "$work/policy-bench"
  per() { local a b; a=$(count "$@" 1); b=$(count "$@" 3); echo "$(( (b - a) / 200000 ))" | sed 's/\(.\)$/.\1/'; }
  echo "Bulkhead load+validate, fast path:       $(per "$work/policy-bench" load "$work/policy.yaml") M instructions per load (each load also frees the previous policy)"
  echo "Bulkhead load+validate, libyaml:         $(per "$work/policy-bench" load-libyaml "$work/policy.yaml") M instructions per load"
  gcc -O2 -DRUNS_FROM_ARGV -o "$work/libyaml-events1" bench/libyaml-events.c -lyaml
  echo "libyaml events only:                     $(per "$work/libyaml-events1" "$work/policy.yaml") M instructions per parse"
  if [[ -n $have_fy ]]; then
    echo "libfyaml events only:                    $(per "$work/libfyaml-events" "$work/policy.yaml") M instructions per parse"
  fi
fi

echo
echo "== ratios"
ours=$(sed -n 's/.*wall, \([0-9.]*\) ms CPU (30.*/\1/p' "$work/ours.txt")
oursl=$(sed -n 's/.*wall, \([0-9.]*\) ms CPU (30.*/\1/p' "$work/ours-libyaml.txt")
floor=$(sed -n 's/.*median \([0-9.]*\) ms CPU (fastest.*/\1/p' "$work/floor.txt")
awk -v a="$ours" -v b="$oursl" 'BEGIN { printf "Bulkhead load+validate, fast path / through libyaml: %.2fx\n", a / b }'
awk -v a="$ours" -v b="$floor" 'BEGIN { printf "Bulkhead load+validate (fast path) / bare libyaml events: %.2fx\n", a / b }'
awk -v a="$oursl" -v b="$floor" 'BEGIN { printf "Bulkhead load+validate through libyaml / bare libyaml events: %.2fx\n", a / b }'
if [[ -n $have_fy ]]; then
  fy=$(sed -n 's/.*median \([0-9.]*\) ms CPU (fastest.*/\1/p' "$work/fyaml.txt")
  awk -v a="$ours" -v b="$fy" 'BEGIN { printf "Bulkhead load+validate (fast path) / bare libfyaml events: %.2fx\n", a / b }'
fi
if [[ -f $work/pyyaml.txt ]]; then
  py=$(sed -n 's/.*median \([0-9.]*\) ms CPU.*/\1/p' "$work/pyyaml.txt")
  awk -v a="$ours" -v b="$py" 'BEGIN { printf "Bulkhead load+validate (fast path) / PyYAML CSafeLoader: %.3fx\n", a / b }'
fi
if [[ -f $work/yams.txt ]]; then
  yc=$(sed -n 's/.*compose (node tree): median \([0-9.]*\) ms.*/\1/p' "$work/yams.txt")
  awk -v a="$ours" -v b="$yc" 'BEGIN { printf "Bulkhead load+validate (fast path) / Yams compose alone: %.2fx\n", a / b }'
fi
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
