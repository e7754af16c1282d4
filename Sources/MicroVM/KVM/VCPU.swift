import CKVM
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// One vCPU: its fd, its mmap'd `struct kvm_run`, and its register set-up.
public final class VCPU: @unchecked Sendable {
    public let index: Int
    let fd: FileDescriptor
    let run: UnsafeMutablePointer<kvm_run>
    let runSize: Int
    /// The pthread running it, once started (for kicks).
    var thread: pthread_t?

    init(index: Int, vm: KVMVirtualMachineFD, mapSize: Int) throws {
        self.index = index
        fd = FileDescriptor(adopting: try vm.createVCPU(id: Int32(index)))
        guard let area = mmap(nil, mapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.raw, 0), area != MAP_FAILED else {
            throw SystemError(operation: "mmap kvm_run", path: "vcpu \(index)", errno: errno)
        }
        run = area.bindMemory(to: kvm_run.self, capacity: 1)
        runSize = mapSize
    }

    deinit { munmap(run, runSize) }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        try sys("ioctl KVM_SET_CPUID2", "vcpu \(index)") {
            entries.withUnsafeBufferPointer { bh_kvm_set_cpuid2(fd.raw, $0.baseAddress, UInt32($0.count)) }
        }
    }

    public func setMSRs(_ msrs: [(UInt32, UInt64)]) throws -> Int {
        let indices = msrs.map(\.0), values = msrs.map(\.1)
        return Int(try sys("ioctl KVM_SET_MSRS", "vcpu \(index)") { bh_kvm_set_msrs(fd.raw, indices, values, UInt32(msrs.count)) })
    }

    public func sregs() throws -> kvm_sregs {
        var s = kvm_sregs()
        try sys("ioctl KVM_GET_SREGS", "vcpu \(index)") { bh_kvm_get_sregs(fd.raw, &s) }
        return s
    }

    public func setSregs(_ s: kvm_sregs) throws {
        var copy = s
        try sys("ioctl KVM_SET_SREGS", "vcpu \(index)") { bh_kvm_set_sregs(fd.raw, &copy) }
    }

    public func regs() throws -> kvm_regs {
        var r = kvm_regs()
        try sys("ioctl KVM_GET_REGS", "vcpu \(index)") { bh_kvm_get_regs(fd.raw, &r) }
        return r
    }

    public func setRegs(_ r: kvm_regs) throws {
        var copy = r
        try sys("ioctl KVM_SET_REGS", "vcpu \(index)") { bh_kvm_set_regs(fd.raw, &copy) }
    }

    /// x87 control word and MXCSR at their reset values.
    public func setBootFPU() throws {
        var fpu = kvm_fpu()
        fpu.fcw = 0x37F
        fpu.mxcsr = 0x1F80
        try sys("ioctl KVM_SET_FPU", "vcpu \(index)") { bh_kvm_set_fpu(fd.raw, &fpu) }
    }

    /// LAPIC LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a BIOS would leave them.
    public func setBootLAPIC() throws {
        var lapic = kvm_lapic_state()
        try sys("ioctl KVM_GET_LAPIC", "vcpu \(index)") { bh_kvm_get_lapic(fd.raw, &lapic) }
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            func setMode(_ offset: Int, _ mode: UInt32) {
                var v = regs.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                v = (v & ~0x700) | (mode << 8)
                regs.storeBytes(of: v, toByteOffset: offset, as: UInt32.self)
            }
            setMode(0x350, 7) // LINT0: ExtINT
            setMode(0x360, 4) // LINT1: NMI
        }
        try sys("ioctl KVM_SET_LAPIC", "vcpu \(index)") { bh_kvm_set_lapic(fd.raw, &lapic) }
    }

    /// Makes a blocked or about-to-block KVM_RUN return (immediate_exit + a signal).
    func kick() {
        bh_run_set_immediate_exit(run, 1)
        if let thread { pthread_kill(thread, vcpuKickSignal) }
    }

    /// Runs the vCPU until the machine stops or it hits an exit that ends the VM.
    func runLoop(bus: Bus, stopping: () -> Bool) -> VMExit {
        while true {
            if stopping() { return .stopped }
            let result = bh_kvm_run(fd.raw)
            if result < 0 {
                let code = errno
                if code == EINTR || code == EAGAIN {
                    bh_run_set_immediate_exit(run, 0)
                    continue
                }
                return .failed("vcpu \(index): KVM_RUN failed: \(String(cString: strerror(code)))")
            }
            let reason = bh_run_exit_reason(run)
            switch reason {
            case UInt32(KVM_EXIT_IO):
                let size = Int(bh_run_io_size(run)), count = Int(bh_run_io_count(run)), port = bh_run_io_port(run)
                let base = UnsafeMutableRawPointer(run) + Int(bh_run_io_data_offset(run))
                guard size >= 1, size <= 4, size * count <= runSize - Int(bh_run_io_data_offset(run)) else {
                    return .failed("vcpu \(index): port I/O exit with impossible size \(size)×\(count)")
                }
                for i in 0..<count {
                    let data = UnsafeMutableRawBufferPointer(start: base + i * size, count: size)
                    if bh_run_io_direction(run) == UInt8(KVM_EXIT_IO_OUT) { bus.portWrite(port, data: UnsafeRawBufferPointer(data)) }
                    else { bus.portRead(port, into: data) }
                }
            case UInt32(KVM_EXIT_MMIO):
                let length = min(Int(bh_run_mmio_len(run)), 8)
                let data = UnsafeMutableRawBufferPointer(start: bh_run_mmio_data(run), count: length)
                if bh_run_mmio_is_write(run) != 0 { bus.mmioWrite(bh_run_mmio_phys_addr(run), data: UnsafeRawBufferPointer(data)) }
                else { bus.mmioRead(bh_run_mmio_phys_addr(run), into: data) }
            case UInt32(KVM_EXIT_INTR):
                continue
            case UInt32(KVM_EXIT_HLT):
                return .shutdown("vcpu \(index) halted with interrupts off")
            case UInt32(KVM_EXIT_SHUTDOWN):
                return .shutdown("vcpu \(index): triple fault (the guest reset the CPU)\(where_())")
            case UInt32(KVM_EXIT_SYSTEM_EVENT):
                switch Int32(bh_run_system_event_type(run)) {
                case KVM_SYSTEM_EVENT_RESET: return .reset
                case KVM_SYSTEM_EVENT_SHUTDOWN: return .shutdown("guest powered off")
                default: return .failed("vcpu \(index): guest crashed (system event \(bh_run_system_event_type(run)))")
                }
            case UInt32(KVM_EXIT_FAIL_ENTRY):
                return .failed("vcpu \(index): KVM could not enter the guest (hardware reason \(hex(bh_run_fail_entry_reason(run))))\(where_())")
            case UInt32(KVM_EXIT_INTERNAL_ERROR):
                let n = min(bh_run_internal_ndata(run), 4)
                let data = (0..<n).map { hex(bh_run_internal_data(run, $0)) }.joined(separator: " ")
                let kind = bh_run_internal_suberror(run) == 1 ? "emulation failure" : "suberror \(bh_run_internal_suberror(run))"
                return .failed("vcpu \(index): KVM internal error (\(kind)) [\(data)]\(where_())")
            case UInt32(KVM_EXIT_EXCEPTION):
                return .failed("vcpu \(index): unhandled exception \(bh_run_exception(run)) (error code \(bh_run_exception_error_code(run)))\(where_())")
            default:
                return .failed("vcpu \(index): unhandled KVM exit reason \(reason)\(where_())")
            }
        }
    }

    /// " at rip 0x…" when the registers can be read.
    func where_() -> String {
        guard let r = try? regs() else { return "" }
        return " at rip \(hex(r.rip))"
    }
}
