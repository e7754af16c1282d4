#!/usr/bin/env bash
# Unpack benchmark: bulkhead vs umoci on the same multi-layer image, side by side, several rounds.
#
# Builds (once, cached under /var/cache/bulkhead-bench) a Debian 12 minbase rootfs with debootstrap and a
# three-layer OCI image of it with umoci (tag "a"), plus image "b" = a's layers + one small layer. Then, with
# several rounds each of:
#   bulkhead image import LAYOUT --ref a   into an empty store (verify every blob, unpack every layer, syncfs)
#   umoci unpack --image LAYOUT:a          into an empty bundle (unpack every layer into one rootfs + mtree)
# and, into a store already holding "a": the import of "b" (shares three layers) — near zero is the goal.
# Rounds alternate between the two tools (the machine may be shared); prints medians of wall and CPU time and ratios. Run as root: scripts/setup first (or this script builds bulkhead itself).
#   usage: bench/unpack.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cache=/var/cache/bulkhead-bench
[[ $(id -u) -eq 0 ]] || { echo "bench/unpack.sh: run as root (unpacking keeps file owners)" >&2; exit 1; }
for tool in debootstrap umoci jq; do
  command -v $tool >/dev/null || { echo "bench/unpack.sh: $tool missing; run scripts/setup" >&2; exit 1; }
done
bh=$PWD/.build/release/bulkhead
[[ -x $bh ]] || scripts/setup

mkdir -p $cache
if [[ ! -d $cache/minbase ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "bench: debootstrap --variant=minbase bookworm from $mirror (once; cached in $cache/minbase)"
  rm -rf $cache/rootfs.partial
  nice debootstrap --variant=minbase bookworm $cache/rootfs.partial "$mirror" >$cache/debootstrap.log 2>&1 \
    || { echo "bench: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }
  mv $cache/rootfs.partial $cache/minbase
fi

layout=$cache/layout
if [[ ! -f $layout/index.json ]] || ! umoci ls --layout $layout | grep -qx b; then
  echo "bench: building the three-layer image with umoci (once; cached in $layout)"
  rm -rf $layout $cache/bundle
  umoci init --layout $layout
  umoci new --image $layout:a
  add_layer() {   # add_layer TAG PATHS... : one more layer holding PATHS from the minbase tree
    local tag=$1; shift
    umoci unpack --image $layout:$tag $cache/bundle >/dev/null
    for p in "$@"; do cp -a $cache/minbase/$p $cache/bundle/rootfs/; done
    umoci repack --image $layout:$tag $cache/bundle >/dev/null
    rm -rf $cache/bundle
  }
  add_layer a usr
  add_layer a etc var
  others=$(cd $cache/minbase && ls -A | grep -vx -e usr -e etc -e var)
  add_layer a $others
  umoci config --image $layout:a --config.cmd /bin/bash --tag b >/dev/null
  umoci unpack --image $layout:b $cache/bundle >/dev/null
  echo "image b" >$cache/bundle/rootfs/etc/motd.b
  umoci repack --image $layout:b $cache/bundle >/dev/null
  rm -rf $cache/bundle
  umoci gc --layout $layout
fi

work=$(mktemp -d /var/tmp/bulkhead-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
size=$(du -sh --apparent-size $cache/minbase | cut -f1)
files=$(find $cache/minbase | wc -l)
blobs=$(du -shc $(umoci stat --image $layout:a --json | jq -r '.history[] | select(.layer) | .layer.digest | sub("sha256:"; "blobs/sha256/")' | sed "s|^|$layout/|") | tail -1 | cut -f1)
echo "bench: image a = 3 gzip layers ($blobs), $files entries, $size unpacked; $rounds rounds, bulkhead and umoci alternating"

# measure NAME CMD...: runs CMD once, appends "wall user+sys" seconds to $work/NAME.
measure() {
  local name=$1; shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >/dev/null 2>$work/last.err; } 2>$work/last.time || { cat $work/last.err >&2; exit 1; }
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' $work/last.time >>$work/$name
}
median() { sort -n -k"$2" $work/$1 | awk -v k="$2" '{ v[NR] = $k } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ((r = 1; r <= rounds; r++)); do
  rm -rf $work/store $work/bundle; sync
  measure bulkhead $bh --data-root $work/store image import $layout --ref a --name bench:a
  rm -rf $work/bundle; sync
  measure umoci umoci unpack --image $layout:a $work/bundle
  # Into the store that holds a: image b shares a's three layers and adds one small layer.
  $bh --data-root $work/store image rm bench:b >/dev/null 2>&1 || true
  measure shared $bh --data-root $work/store image import $layout --ref b --name bench:b
  echo "round $r: bulkhead $(tail -1 $work/bulkhead | cut -d' ' -f1) s, umoci $(tail -1 $work/umoci | cut -d' ' -f1) s, shared import $(tail -1 $work/shared | cut -d' ' -f1) s"
done

bw=$(median bulkhead 1); bc=$(median bulkhead 2)
uw=$(median umoci 1); uc=$(median umoci 2)
sw=$(median shared 1); sc=$(median shared 2)
echo
echo "== medians over $rounds rounds ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf "%-44s %9s %12s\n" "" "wall (s)" "cpu u+s (s)"
printf "%-44s %9.3f %12.3f\n" "bulkhead image import (verify+unpack+syncfs)" "$bw" "$bc"
printf "%-44s %9.3f %12.3f\n" "umoci unpack" "$uw" "$uc"
printf "%-44s %8.2fx %11.2fx\n" "ratio umoci / bulkhead" "$(awk "BEGIN { print $uw / $bw }")" "$(awk "BEGIN { print $uc / $bc }")"
printf "%-44s %9.3f %12.3f   (%.1f%% of a full import)\n" "bulkhead import of b (3 of 4 layers shared)" "$sw" "$sc" "$(awk "BEGIN { print 100 * $sw / $bw }")"
