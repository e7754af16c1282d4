#!/usr/bin/env bash
# Unpack benchmark: bulkhead vs umoci on the same multi-layer image, side by side, several rounds.
#
# Builds (once, cached under /var/cache/bulkhead-bench) a Debian 12 minbase rootfs with debootstrap and a
# three-layer OCI image of it with umoci (tag "a"), plus image "b" = a's layers + one small layer. Then, with
# hyperfine, several rounds each of:
#   bulkhead image import LAYOUT --ref a   into an empty store (verify every blob, unpack every layer, syncfs)
#   umoci unpack --image LAYOUT:a          into an empty bundle (unpack every layer into one rootfs + mtree)
# and, into a store already holding "a": the import of "b" (shares three layers) — near zero is the goal.
# Prints medians and the ratio. Run as root: scripts/setup first (or this script builds bulkhead itself).
#   usage: bench/unpack.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cache=/var/cache/bulkhead-bench
[[ $(id -u) -eq 0 ]] || { echo "bench/unpack.sh: run as root (unpacking keeps file owners)" >&2; exit 1; }
for tool in debootstrap umoci hyperfine jq; do
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
blobs=$(du -sh $layout/blobs | cut -f1)
echo "bench: image a = 3 layers ($blobs of gzip blobs), $files entries, $size unpacked; $rounds rounds"
echo

hyperfine --runs "$rounds" --style basic --export-json $work/unpack.json \
  --prepare "rm -rf $work/store" -n "bulkhead image import" \
  "$bh --data-root $work/store image import $layout --ref a --name bench:a" \
  --prepare "rm -rf $work/bundle" -n "umoci unpack" \
  "umoci unpack --image $layout:a $work/bundle"

rm -rf $work/store $work/bundle
$bh --data-root $work/shared image import $layout --ref a --name bench:a >/dev/null
hyperfine --runs "$rounds" --style basic --export-json $work/shared.json \
  --prepare "$bh --data-root $work/shared image rm bench:b >/dev/null 2>&1 || true" -n "bulkhead import b (shares 3 layers with a)" \
  "$bh --data-root $work/shared image import $layout --ref b --name bench:b"

median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
b=$(median $work/unpack.json "bulkhead image import")
u=$(median $work/unpack.json "umoci unpack")
s=$(median $work/shared.json "bulkhead import b (shares 3 layers with a)")
echo
echo "== medians over $rounds rounds ($(nproc) cores, warm page cache)"
printf "bulkhead image import (3 layers)   %8.3f s\n" "$b"
printf "umoci unpack (3 layers)            %8.3f s\n" "$u"
printf "ratio umoci / bulkhead             %8.2fx\n" "$(echo "$u / $b" | bc -l)"
printf "bulkhead import of b (shared)      %8.3f s  (%.1f%% of a full import)\n" "$s" "$(echo "100 * $s / $b" | bc -l)"
