#!/usr/bin/env bash
# Side by side, in one run: `bulkhead vm run` vs `qemu-system-x86_64 -M microvm -accel kvm`, both booting the
# same freestanding test guest (Tests/MicroVMTests/Guests/hello.c: writes one line to the UART, then halts).
#   - start: time from the monitor's exec to the guest's first UART byte on the monitor's stdout, and, for
#     bulkhead, to vCPU 0's first entry into the guest (the VMM reports it against BULKHEAD_TRACE_T0_NS; QEMU has
#     no such report, so n/a);
#   - overhead: the monitor's RSS outside the guest-RAM mapping (smaps), sampled once the guest has printed.
# QEMU enters the ELF through its PVH note (32-bit entry in start.S that switches to long mode); Bulkhead enters
# the same ELF at its 64-bit entry. Prints medians and ratios. Run as root from the repository's top.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-15}
MEM=${MEM:-128}
[[ -r /dev/kvm ]] || { echo "bench/vmm.sh: needs /dev/kvm (as root)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "bench/vmm.sh: needs qemu-system-x86 (apt-get install qemu-system-x86)" >&2; exit 1; }
BULKHEAD=${BULKHEAD:-.build/release/bulkhead}
[[ -x $BULKHEAD ]] || { echo "bench/vmm.sh: $BULKHEAD missing; run scripts/setup first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g=Tests/MicroVMTests/Guests
gcc -ffreestanding -nostdlib -static -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only -O2 -fno-stack-protector \
    -fcf-protection=none -Wl,-T,$g/linker.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
    -o "$work/hello.elf" $g/start.S $g/hello.c

exec python3 - "$RUNS" "$MEM" "$work/hello.elf" "$BULKHEAD" <<'PY'
import os, select, signal, statistics, subprocess, sys, time
runs, mem, guest, bulkhead = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
monitors = {
    "bulkhead vm run": [bulkhead, "vm", "run", "--kernel", guest, "--memory", str(mem)],
    "bulkhead vm run --no-jail": [bulkhead, "vm", "run", "--no-jail", "--kernel", guest, "--memory", str(mem)],
    "qemu -M microvm -accel kvm": ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
                                   "-m", str(mem), "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                                   "-serial", "stdio", "-kernel", guest],
}

def overhead_kib(pid, guest_kib):
    """(RSS, anonymous RSS) in KiB of every mapping smaller than guest RAM: the monitor's own code, data, heap,
    stacks and libraries. File-backed pages (code) are shared page cache; anonymous ones are the monitor's alone."""
    total, anon, size = 0, 0, 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and size < guest_kib:
                total += int(line.split()[1])
            elif line.startswith("Anonymous:") and size < guest_kib:
                anon += int(line.split()[1])
    return total, anon

def one(cmd):
    env = dict(os.environ)
    env["BULKHEAD_TRACE_T0_NS"] = str(time.monotonic_ns())  # bulkhead reports its first guest entry against it
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    r, _, _ = select.select([p.stdout], [], [], 20)
    if not r:
        p.kill(); p.wait()
        raise SystemExit(f"{cmd[0]}: no UART output within 20 s")
    os.read(p.stdout.fileno(), 1)
    first = (time.perf_counter() - t0) * 1000
    time.sleep(0.3)  # let the line finish and the monitor settle
    rss, anon = overhead_kib(p.pid, mem * 1024)
    p.send_signal(signal.SIGTERM)
    try: p.wait(5)
    except subprocess.TimeoutExpired: p.kill(); p.wait()
    entry = None
    for line in p.stderr.read().decode(errors="replace").splitlines():
        if line.startswith("bulkhead-trace: first guest entry "):
            entry = float(line.split()[4])
    return first, rss, anon, entry

def baseline():
    """exec → exit of `bulkhead --version`: what starting the binary costs before any VMM work."""
    t0 = time.perf_counter()
    subprocess.run([bulkhead, "--version"], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t0) * 1000

results = {name: [] for name in monitors}
base = []
for i in range(runs):  # interleaved, so load changes hit every monitor alike
    for name, cmd in monitors.items():
        results[name].append(one(cmd))
    base.append(baseline())

print(f"guest: {os.path.basename(guest)} ({mem} MiB RAM, 1 vCPU), {runs} runs each, interleaved; host load {os.getloadavg()[0]:.1f}")
print(f"{'monitor':30} {'exec→first guest entry (ms)':>28} {'exec→first UART byte (ms)':>26} {'overhead RSS (MiB)':>19} {'of it anonymous (MiB)':>22}")
med = {}
for name, rows in results.items():
    t = statistics.median(r[0] for r in rows); m = statistics.median(r[1] for r in rows) / 1024
    a = statistics.median(r[2] for r in rows) / 1024
    entries = [r[3] for r in rows if r[3] is not None]
    e = f"{statistics.median(entries):28.1f}" if entries else f"{'n/a':>28}"
    med[name] = (t, m, a)
    print(f"{name:30} {e} {t:26.1f} {m:19.2f} {a:22.2f}")
print(f"{'(bulkhead --version: exec→exit)':30} {statistics.median(base):26.1f}")
q = med["qemu -M microvm -accel kvm"]
for name in monitors:
    if name.startswith("bulkhead"):
        t, m, a = med[name]
        print(f"ratio {name} / qemu: start {t / q[0]:.2f}x, overhead RSS {m / q[1]:.2f}x, anonymous {a / q[2]:.2f}x")
PY
