#!/usr/bin/env bash
# The microVM tier end to end against plain QEMU, side by side in one run (TCG here; KVM where the probe allows):
#  1. time from `bulkhead run --isolation microvm` to the workload's first output (`echo ready`), against
#     `qemu-system-x86_64` booting the same bzImage with a busybox initramfs whose /init echoes and resets;
#  2. host memory (RSS) per idle container: monitor + QEMU of a started `sleep` container, against plain QEMU
#     idling in the same kernel (/init sleeps), both measured 20 s after start.
# Prints medians and ratios (bulkhead / plain QEMU). Usage: bench/microvm-start.sh [ROUNDS] (default 3; root).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bin=${BULKHEAD_BIN:-.build/release}
kdir=$(kernels/build --cached | tail -1)
export BULKHEAD_KERNEL_DIR=$kdir BULKHEAD_AGENT=${BULKHEAD_AGENT:-$bin/bulkhead-agent}
work=$(mktemp -d /tmp/bulkhead-microvm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "bench: kernel $(cat "$kdir/release"); $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds"
echo "bench: $($bin/bulkhead --data-root "$work/data" info | grep '^microvm')"

# A busybox bundle and, for plain QEMU, a busybox initramfs with the same kernel.
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/etc" "$work/init/bin" "$work/init/proc"
cp /bin/busybox "$work/b/rootfs/bin/busybox"; cp /bin/busybox "$work/init/bin/busybox"
for a in sh echo sleep; do ln -s busybox "$work/b/rootfs/bin/$a"; ln -s busybox "$work/init/bin/$a"; done
spec() { echo '{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"terminal":false,"user":{"uid":0,"gid":0},"args":'"$1"',"env":["PATH=/bin"],"cwd":"/"}}' > "$work/b/config.json"; }
initramfs() { # $1: the /init script body
  printf '#!/bin/sh\n%s\n' "$1" > "$work/init/init"; chmod +x "$work/init/init"
  (cd "$work/init" && find . | cpio -o -H newc --quiet) > "$work/plain.cpio"
}
qemu_args=(-accel tcg -M pc -m 256 -smp 1 -nodefaults -no-user-config -nographic -no-reboot -monitor none
           -kernel "$kdir/bzImage" -initrd "$work/plain.cpio" -append "console=ttyS0 reboot=k panic=-1 quiet" -serial stdio)

# Milliseconds from start to the first line containing "ready" on stdout of a command.
first_output() {
  python3 - "$@" <<'PY'
import subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for line in p.stdout:
    if b"ready" in line:
        print(int((time.monotonic() - t) * 1000)); break
p.wait()
PY
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rss_kib() { awk '/VmRSS/ {s+=$2} END {print s+0}' $(for p in "$@"; do echo /proc/$p/status; done) 2>/dev/null; }

spec '["echo","ready"]'
initramfs 'echo ready; echo b > /proc/sysrq-trigger 2>/dev/null; busybox reboot -f'
: > "$work/bh.ms"; : > "$work/q.ms"
for i in $(seq "$rounds"); do
  first_output "$bin/bulkhead" --root "$work/run" --data-root "$work/data" run --isolation microvm -b "$work/b" "s$i" >> "$work/bh.ms"
  first_output qemu-system-x86_64 "${qemu_args[@]}" >> "$work/q.ms"
done
bh=$(median < "$work/bh.ms"); q=$(median < "$work/q.ms")
echo "time to first output (ms, median of $rounds): bulkhead run --isolation microvm $bh | plain qemu $q | ratio $(awk -v a="$bh" -v b="$q" 'BEGIN {printf "%.2f", a/b}')"

spec '["sleep","1000"]'
initramfs 'busybox mount -t proc proc /proc; echo ready; sleep 1000'
: > "$work/bh.kib"; : > "$work/q.kib"
for i in $(seq "$rounds"); do
  "$bin/bulkhead" --root "$work/run" --data-root "$work/data" create -b "$work/b" --isolation microvm "idle$i" </dev/null >/dev/null 2>&1
  "$bin/bulkhead" --root "$work/run" --data-root "$work/data" start "idle$i"
  qemu-system-x86_64 "${qemu_args[@]}" </dev/null >/dev/null 2>&1 & qpid=$!
  sleep 20
  mon=$(jq -r .pid "$work/run/idle$i/state.json"); qb=$(jq -r .extra.qemuPid "$work/run/idle$i/state.json")
  rss_kib "$mon" "$qb" >> "$work/bh.kib"; rss_kib "$qpid" >> "$work/q.kib"
  "$bin/bulkhead" --root "$work/run" --data-root "$work/data" delete --force "idle$i"
  kill -9 "$qpid"; wait "$qpid" 2>/dev/null || true
done
bh=$(median < "$work/bh.kib"); q=$(median < "$work/q.kib")
echo "host RSS per idle microVM (KiB, median of $rounds): bulkhead (monitor + QEMU) $bh | plain qemu $q | ratio $(awk -v a="$bh" -v b="$q" 'BEGIN {printf "%.2f", a/b}')"
