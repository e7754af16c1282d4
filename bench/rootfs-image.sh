#!/usr/bin/env bash
# Rootfs image build: erofs (mkfs.erofs, uncompressed) vs ext4 (mke2fs -d, no journal) on the same trees,
# with the options Bulkhead's RootfsImageStore uses. Prints build time per MB of input and image sizes
# (apparent and allocated), medians of N runs, side by side. Usage: bench/rootfs-image.sh [RUNS] [DIR...]
# Default trees: /usr/lib/python3.11 (many small files) and a tree with one 256 MiB random file.
set -euo pipefail
runs=${1:-5}; shift || true
work=$(mktemp -d /tmp/bh-rootfs-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
trees=("$@")
if ((${#trees[@]} == 0)); then
  mkdir -p "$work/bigfile" && head -c 256M /dev/urandom >"$work/bigfile/blob"
  trees=(/usr/lib/python3.11 "$work/bigfile")
fi
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '%-28s %8s %8s | %10s %9s %9s | %10s %9s %9s %9s | %s\n' tree MB files erofs-s s/GB erofs-MB ext4-s s/GB ext4-MB ext4-alloc ext4/erofs-time
for tree in "${trees[@]}"; do
  bytes=$(du -sb --apparent-size "$tree" | cut -f1); mb=$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}')
  files=$(find "$tree" | wc -l); blocks=$(find "$tree" -type f -printf '%s\n' | awk '{s+=int(($1+4095)/4096)*4096} END{print s+0}')
  dirs=$(find "$tree" -type d -o -type l | wc -l)
  inodes=$((files + 64)); raw=$((blocks + dirs * 4096 + inodes * 256)); kib=$(((raw + raw / 10 + 8388608) / 1024))
  et=(); xt=()
  for _ in $(seq "$runs"); do
    rm -f "$work/i.erofs" "$work/i.ext4"; sync
    s=$(date +%s.%N); mkfs.erofs --quiet --preserve-mtime -x 1 "$work/i.erofs" "$tree"; e=$(date +%s.%N); et+=("$(echo "$e - $s" | bc)")
    s=$(date +%s.%N); mke2fs -q -F -t ext4 -O ^has_journal,^resize_inode -b 4096 -m 0 -N "$inodes" -E root_owner=0:0,lazy_itable_init=0 -L bulkhead-rootfs -d "$tree" "$work/i.ext4" "${kib}k" >/dev/null; e=$(date +%s.%N); xt+=("$(echo "$e - $s" | bc)")
  done
  em=$(printf '%s\n' "${et[@]}" | median); xm=$(printf '%s\n' "${xt[@]}" | median)
  esz=$(stat -c %s "$work/i.erofs"); xsz=$(stat -c %s "$work/i.ext4"); xal=$(( $(stat -c %b "$work/i.ext4") * 512 ))
  awk -v t="$(basename "$tree")" -v mb="$mb" -v f="$files" -v em="$em" -v xm="$xm" -v es="$esz" -v xs="$xsz" -v xa="$xal" 'BEGIN {
    printf "%-28s %8s %8d | %9.3fs %9.2f %9.1f | %9.3fs %9.2f %9.1f %9.1f | %.2f\n", t, mb, f, em, em / mb * 1024, es / 1048576, xm, xm / mb * 1024, xs / 1048576, xa / 1048576, xm / em }'
done
echo "(s/GB = seconds of build per GiB of input; ext4-MB is the file's apparent size, ext4-alloc its allocated blocks; load $(cut -d' ' -f1-3 /proc/loadavg))"
