#!/usr/bin/env bash
# What confinement costs at container start: bulkhead vs runc, side by side in one run, on the same bundles.
#   plain:   busybox /bin/true, runc spec's capabilities, no seccomp filter
#   default: the same plus policies/seccomp/default.json in linux.seccomp (both runtimes build and load it)
# `run` (create + start + wait + delete in one process), ROUNDS rounds each (default 30); medians, the added
# cost of the filter per runtime, and the ratio bulkhead / runc. Bulkhead runs under a policy whose seccomp setting
# is `unconfined`, so that the spec alone decides (as for runc). Run as root from the repository's top after
# scripts/setup (uses .build/release/bulkhead).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-30}
BH=${BULKHEAD:-$PWD/.build/release/bulkhead}
[[ $(id -u) -eq 0 ]] || { echo "bench/seccomp.sh: run as root" >&2; exit 1; }
for tool in hyperfine jq busybox runc; do
  command -v $tool >/dev/null || { echo "bench/seccomp.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
[[ -x $BH ]] || { echo "bench/seccomp.sh: $BH missing; run scripts/setup first" >&2; exit 1; }

work=$(mktemp -d /tmp/bulkhead-bench-seccomp.XXXXXX)
trusted=$(mktemp -d /run/bulkhead-bench-seccomp.XXXXXX)   # a policy file must sit where only root can write
chmod 755 "$trusted"
trap 'rm -rf "$work" "$trusted"' EXIT
printf 'version: 1\nrules:\n  - name: spec-decides\n    decide: namespace\n    namespace: {seccomp: unconfined}\n' >"$trusted/policy.yaml"

for kind in plain default; do
  b=$work/$kind
  mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
  cp "$(command -v busybox)" "$b/rootfs/bin/busybox"
  ln -s busybox "$b/rootfs/bin/true"
  (cd "$b" && runc spec)
  if [[ $kind == default ]]; then
    jq --slurpfile p policies/seccomp/default.json '.linux.seccomp = $p[0]' "$b/config.json" >"$b/c" && mv "$b/c" "$b/config.json"
  fi
  jq '.process.terminal=false | .process.args=["/bin/true"] | del(.linux.resources)' "$b/config.json" >"$b/c" && mv "$b/c" "$b/config.json"
done

echo "bench: $ROUNDS rounds each; busybox /bin/true; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg)"
echo "  bulkhead: $($BH --version | head -1); runc: $(runc --version | head -1)"
median() { jq -r '.results[0].median * 1000' "$1"; }
declare -A ms
for kind in plain default; do
  hyperfine -N --show-output --warmup 3 --runs "$ROUNDS" --export-json "$work/bh-$kind.json" \
    "$BH --root $work/bh run --policy $trusted/policy.yaml --audit-log $work/audit --bundle $work/$kind s-$kind" >/dev/null
  ms[bh-$kind]=$(median "$work/bh-$kind.json")
  hyperfine -N --show-output --warmup 3 --runs "$ROUNDS" --export-json "$work/runc-$kind.json" \
    "runc --root $work/runc run --bundle $work/$kind s-$kind" >/dev/null
  ms[runc-$kind]=$(median "$work/runc-$kind.json")
done
printf '\n%-10s %12s %14s %14s\n' runtime "plain (ms)" "default (ms)" "filter costs"
for r in bh runc; do
  printf '%-10s %12.2f %14.2f %+13.2f\n' "$([[ $r == bh ]] && echo bulkhead || echo runc)" "${ms[$r-plain]}" "${ms[$r-default]}" \
    "$(echo "${ms[$r-default]} - ${ms[$r-plain]}" | bc -l)"
done
printf 'bulkhead / runc: plain %.2f×, default %.2f×\n' "$(echo "${ms[bh-plain]} / ${ms[runc-plain]}" | bc -l)" \
  "$(echo "${ms[bh-default]} / ${ms[runc-default]}" | bc -l)"
