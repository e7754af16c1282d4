#!/usr/bin/env bash
# CPU quota, side by side: a busy loop in a container limited to 10% of one CPU (cpu.quota 10000 / period
# 100000, cpuset "0") under bulkhead and under runc, each round next to a host busy loop pinned to the same CPU.
# Per round (WINDOW seconds, default 2): the container's CPU use from its cgroup and the host loop's from
# /proc/PID/stat, as % of one CPU. Prints medians over ROUNDS (default 5) and the ratio bulkhead/runc.
# The seed's example: the container gets ≈10% and the host's own work keeps the rest of that CPU (minus what
# the machine's other load takes). Run as root from the repository's top (uses .build/release/bulkhead, or
# BULKHEAD=path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
WINDOW=${WINDOW:-2}
BH=${BULKHEAD:-$PWD/.build/release/bulkhead}
[[ -x $BH ]] || BH=$PWD/.build/debug/bulkhead
[[ $(id -u) -eq 0 ]] || { echo "bench/cpu-quota.sh: run as root" >&2; exit 1; }
for tool in jq busybox runc taskset python3; do
  command -v $tool >/dev/null || { echo "bench/cpu-quota.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
[[ -x $BH ]] || { echo "bench/cpu-quota.sh: $BH missing; run swift build first" >&2; exit 1; }

work=$(mktemp -d /tmp/bulkhead-cpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/sh"
(cd "$bundle" && runc spec)
jq '.process.terminal=false | .process.args=["sh","-c","while :; do :; done"]
    | .linux.resources.cpu={"quota":10000,"period":100000,"cpus":"0"}' "$bundle/config.json" > "$bundle/c"
mv "$bundle/c" "$bundle/config.json"

ticks=$(getconf CLK_TCK)
# CPU nanoseconds of the container's cgroup (v1 cpuacct, or v2 cpu.stat).
usage() {
  local path=$1
  if [[ -f /sys/fs/cgroup/cpuacct$path/cpuacct.usage ]]; then cat "/sys/fs/cgroup/cpuacct$path/cpuacct.usage"
  else awk '/^usage_usec/ {print $2 * 1000}' "/sys/fs/cgroup$path/cpu.stat"; fi
}
# CPU nanoseconds of a host process.
proc_ns() { awk -v t="$ticks" '{print ($14 + $15) * 1000000000 / t}' "/proc/$1/stat"; }
now_ns() { date +%s%N; }

declare -A bin=([bulkhead]=$BH [runc]=$(command -v runc))
declare -A inside outside
echo "bench: $ROUNDS rounds of ${WINDOW}s each; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg)"
for rt in bulkhead runc; do
  for i in $(seq "$ROUNDS"); do
    id=cpu-$rt-$$-$i
    jq --arg p "/bench-cpu/$id" '.linux.cgroupsPath=$p' "$bundle/config.json" > "$work/config.json"
    cp "$work/config.json" "$bundle/config.json"
    "${bin[$rt]}" --root "$work/$rt" run -d --bundle "$bundle" "$id" </dev/null >/dev/null 2>&1
    taskset -c 0 busybox sh -c 'while :; do :; done' & host=$!
    sleep 0.3
    u0=$(usage "/bench-cpu/$id"); h0=$(proc_ns $host); t0=$(now_ns)
    sleep "$WINDOW"
    u1=$(usage "/bench-cpu/$id"); h1=$(proc_ns $host); t1=$(now_ns)
    kill $host; wait $host 2>/dev/null || true
    "${bin[$rt]}" --root "$work/$rt" delete -f "$id" >/dev/null 2>&1 || true
    inside[$rt]+="$(python3 -c "print(100*($u1-$u0)/($t1-$t0))") "
    outside[$rt]+="$(python3 -c "print(100*($h1-$h0)/($t1-$t0))") "
  done
done
for d in /sys/fs/cgroup/*/bench-cpu /sys/fs/cgroup/bench-cpu; do rmdir "$d" 2>/dev/null || true; done

median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.1f}')" $1; }
printf '%-10s %22s %28s\n' runtime "container (% of 1 CPU)" "host loop on that CPU (%)"
for rt in bulkhead runc; do
  printf '%-10s %22s %28s\n' "$rt" "$(median "${inside[$rt]}")" "$(median "${outside[$rt]}")"
done
printf 'ratio bulkhead/runc (container): %s\n' "$(python3 -c "print(f'{$(median "${inside[bulkhead]}")/$(median "${inside[runc]}"):.2f}')")"
