#!/usr/bin/env bash
# Time to the workload's first output in a microVM under QEMU TCG: Bulkhead's guest path (our kernel,
# the agent initramfs, the shared rootfs image, GuestProtocol over virtio-console, `echo` as the container
# process) against plain qemu-system-x86_64 booting the same kernel with a trivial busybox /init.
# Both run interleaved in one run; prints medians and ratios, for the vmlinux (PVH) and bzImage entries.
# Usage: bench/microvm-boot.sh [ROUNDS]   (default 5; run as root on an otherwise quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
kdir=$(kernels/build | tail -1)
echo "bench: kernel $(cat "$kdir/release") from $kdir"
swift build -c release --product bulkhead-agent -Xswiftc -static-executable -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors 2>&1 | grep -E 'error' || true
swift build -c release --product bulkhead-guest-bench 2>&1 | grep -E 'error' || true
bin=$(swift build -c release --show-bin-path)
echo "bench: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds"
"$bin/bulkhead-guest-bench" "$kdir" "$bin/bulkhead-agent" "$rounds" "${BENCH_WORKDIR:-/tmp/bulkhead-guest-bench}"
