#!/usr/bin/env bash
# User namespaces, side by side in one run:
#   1. `run` of busybox /bin/true from a bundle with uidMappings/gidMappings: bulkhead vs runc (same bundle)
#   2. image form `run --rm IMAGE true`: no user namespace vs `--userns auto` (idmapped layers) vs
#      `--userns auto:shift=chown` (metacopy chown of the upper layer): what the rootfs shift costs per container
# ROUNDS=N rounds each (default 30); medians and ratios. Run as root from the repository's top after scripts/setup
# (uses .build/release/bulkhead, else .build/debug/bulkhead; BULKHEAD=path to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-30}
BH=${BULKHEAD:-$PWD/.build/release/bulkhead}
[[ -x $BH ]] || BH=$PWD/.build/debug/bulkhead
[[ $(id -u) -eq 0 ]] || { echo "bench/userns.sh: run as root" >&2; exit 1; }
for tool in hyperfine jq busybox runc umoci; do
  command -v $tool >/dev/null || { echo "bench/userns.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
[[ -x $BH ]] || { echo "bench/userns.sh: no bulkhead binary; run swift build first" >&2; exit 1; }

work=$(mktemp -d /tmp/bulkhead-bench-userns.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # the mapped root must be able to reach the bundle's rootfs (runc's rule too)
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"
(cd "$bundle" && runc spec)
jq '.process.terminal=false | .process.args=["/bin/true"] | del(.linux.resources)
    | .linux.namespaces += [{"type":"user"}]
    | .linux.uidMappings=[{"containerID":0,"hostID":100000,"size":65536}]
    | .linux.gidMappings=[{"containerID":0,"hostID":100000,"size":65536}]' "$bundle/config.json" > "$bundle/c"
mv "$bundle/c" "$bundle/config.json"

scripts/make-busybox-image "$work/bb.tar" >/dev/null
B="$BH --root $work/state --data-root $work/data"
$B image import "$work/bb.tar" --name bb >/dev/null

echo "bench: $ROUNDS rounds each; $BH; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg)"
median() { jq '.results[0].median * 1000' "$1"; }
run() { # name command
  hyperfine -N --style none --warmup 2 --runs "$ROUNDS" --export-json "$work/$1.json" "$2" >/dev/null 2>"$work/$1.err" ||
    { echo "bench: $1 failed:" >&2; cat "$work/$1.err" >&2; return 1; }
  median "$work/$1.json"
}

echo
echo "1. run /bin/true from a user-namespace bundle"
b=$(run bundle-bulkhead "$BH --root $work/bh run --bundle $bundle bench-u")
r=$(run bundle-runc "runc --root $work/runc run --bundle $bundle bench-u")
printf '| runtime | median | vs runc |\n|---|---|---|\n'
printf '| bulkhead | %.2f ms | %.2f× |\n' "$b" "$(jq -n "$b / $r")"
printf '| runc | %.2f ms | 1.00× |\n' "$r"

echo
echo "2. image form: run --rm bb true"
h=$(run image-host "$B run --rm --name bench-h bb true")
i=$(run image-idmap "$B run --rm --name bench-i --userns auto bb true")
c=$(run image-chown "$B run --rm --name bench-c --userns auto:shift=chown bb true")
printf '| --userns | median | vs host |\n|---|---|---|\n'
printf '| host | %.2f ms | 1.00× |\n' "$h"
printf '| auto (idmapped layers) | %.2f ms | %.2f× |\n' "$i" "$(jq -n "$i / $h")"
printf '| auto:shift=chown (metacopy) | %.2f ms | %.2f× |\n' "$c" "$(jq -n "$c / $h")"
