#!/usr/bin/env bash
# Container start-up: bulkhead vs crun vs runc, side by side in one run, on the same bundle.
#   1. `run` of busybox /bin/true from a bundle (create + start + wait + delete in one process)
#   2. create + start + delete --force as three invocations (what container engines do)
# 50 rounds each (ROUNDS=N to change), medians and ratios to crun, and each runtime's peak RSS.
# Run as root from the repository's top after scripts/setup (uses .build/release/bulkhead).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-50}
BH=${BULKHEAD:-$PWD/.build/release/bulkhead}
[[ $(id -u) -eq 0 ]] || { echo "bench/start.sh: run as root" >&2; exit 1; }
for tool in hyperfine jq busybox runc crun python3; do
  command -v $tool >/dev/null || { echo "bench/start.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
[[ -x $BH ]] || { echo "bench/start.sh: $BH missing; run scripts/setup first" >&2; exit 1; }

# crun 1.8 refuses a hybrid cgroup host ("cgroups in hybrid mode not supported"). On such a host the whole
# benchmark runs in a private mount namespace whose /sys/fs/cgroup is the host's cgroup2 hierarchy, so all
# three runtimes work on the same (v2) layout.
if [[ -z ${BENCH_IN_NS:-} && $(stat -f -c %T /sys/fs/cgroup) != cgroup2fs && -d /sys/fs/cgroup/unified ]]; then
  echo "bench: hybrid cgroup host: running in a private mount namespace with cgroup2 at /sys/fs/cgroup (for crun)"
  exec env BENCH_IN_NS=1 unshare -m --propagation private sh -c \
    'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$@"' "$0" "$@"
fi

work=$(mktemp -d /tmp/bulkhead-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"; ln -s busybox "$bundle/rootfs/bin/sh"
(cd "$bundle" && runc spec)
# No linux.resources: crun loads an eBPF device program for it and needs to raise RLIMIT_MEMLOCK, which this
# sandbox refuses; without it all three do the same work (no limits). No seccomp filter either: the annotation keeps
# bulkhead's policy from adding its default profile to a spec without one (bench/seccomp.sh measures the filter).
jq '.process.terminal=false | .process.args=["/bin/true"] | del(.linux.resources) | .annotations["bulkhead.seccomp"]="unconfined"' "$bundle/config.json" > "$bundle/c" && mv "$bundle/c" "$bundle/config.json"

declare -A bin=([bulkhead]=$BH [crun]=$(command -v crun) [runc]=$(command -v runc))
runtimes=(bulkhead crun runc)

echo "bench: $ROUNDS rounds each; bundle: busybox-static, /bin/true; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg)"
for r in "${runtimes[@]}"; do echo "  $r: $(${bin[$r]} --version | head -1)"; done

median() { jq -r '.results[0].median * 1000' "$1"; }
# CPU time (user + system, mean per round) of the runtime and every process it waited for: steadier than wall time
# on a shared machine.
cpu() { jq -r '(.results[0].user + .results[0].system) * 1000' "$1"; }

declare -A run_ms cycle_ms rss_kb run_cpu cycle_cpu
for r in "${runtimes[@]}"; do
  root=$work/root-$r
  b=${bin[$r]}
  hyperfine -N --show-output --warmup 3 --runs "$ROUNDS" --export-json "$work/$r-run.json" \
    "$b --root $root run --bundle $bundle bench-$r" >/dev/null
  run_ms[$r]=$(median "$work/$r-run.json")
  run_cpu[$r]=$(cpu "$work/$r-run.json")
  hyperfine --shell=none --show-output --warmup 3 --runs "$ROUNDS" --export-json "$work/$r-cycle.json" \
    "/bin/sh -c '$b --root $root create --bundle $bundle c-$r && $b --root $root start c-$r && $b --root $root delete --force c-$r'" >/dev/null
  cycle_ms[$r]=$(median "$work/$r-cycle.json")
  cycle_cpu[$r]=$(cpu "$work/$r-cycle.json")
  # Peak RSS of the runtime's process tree (the runtime and its re-exec'd init) for one `run`.
  rss_kb[$r]=$(python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
    "$b" --root "$root" run --bundle "$bundle" rss-$r)
done

printf '\n%-10s %14s %10s %22s %10s %14s\n' runtime "run median" "vs crun" "create+start+delete" "vs crun" "peak RSS"
for r in "${runtimes[@]}"; do
  printf '%-10s %11.2f ms %9.2fx %19.2f ms %9.2fx %11d KiB\n' "$r" "${run_ms[$r]}" \
    "$(echo "${run_ms[$r]} / ${run_ms[crun]}" | bc -l)" "${cycle_ms[$r]}" \
    "$(echo "${cycle_ms[$r]} / ${cycle_ms[crun]}" | bc -l)" "${rss_kb[$r]}"
done
printf '\n%-10s %14s %10s %22s %10s   (CPU: user+sys, mean per round)\n' runtime "run CPU" "vs crun" "create+start+delete" "vs crun"
for r in "${runtimes[@]}"; do
  printf '%-10s %11.2f ms %9.2fx %19.2f ms %9.2fx\n' "$r" "${run_cpu[$r]}" \
    "$(echo "${run_cpu[$r]} / ${run_cpu[crun]}" | bc -l)" "${cycle_cpu[$r]}" \
    "$(echo "${cycle_cpu[$r]} / ${cycle_cpu[crun]}" | bc -l)"
done
echo "load at the end: $(cut -d' ' -f1 /proc/loadavg)"
