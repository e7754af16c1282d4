import CKVM
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Something the host's KVM cannot do, or refused to do, said so that an operator knows what to check.
public struct KVMError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A KVM capability the VMM relies on, with the reason it is needed (shown when it is missing).
public struct KVMCapability: Sendable, Hashable {
    public let number: Int32
    public let name: String
    public let neededFor: String

    public static let irqchip = KVMCapability(number: 0, name: "KVM_CAP_IRQCHIP", neededFor: "the in-kernel interrupt controllers")
    public static let userMemory = KVMCapability(number: 3, name: "KVM_CAP_USER_MEMORY", neededFor: "guest memory")
    public static let setTSSAddr = KVMCapability(number: 4, name: "KVM_CAP_SET_TSS_ADDR", neededFor: "the TSS region")
    public static let extCPUID = KVMCapability(number: 7, name: "KVM_CAP_EXT_CPUID", neededFor: "guest CPUID")
    public static let irqfd = KVMCapability(number: 32, name: "KVM_CAP_IRQFD", neededFor: "virtio interrupts")
    public static let pit2 = KVMCapability(number: 33, name: "KVM_CAP_PIT2", neededFor: "the in-kernel PIT")
    public static let ioeventfd = KVMCapability(number: 36, name: "KVM_CAP_IOEVENTFD", neededFor: "virtio notifications")
    public static let immediateExit = KVMCapability(number: 136, name: "KVM_CAP_IMMEDIATE_EXIT", neededFor: "stopping vCPUs")

    /// What the VMM cannot run without.
    public static let required: [KVMCapability] = [.irqchip, .userMemory, .setTSSAddr, .extCPUID, .irqfd, .pit2,
                                                   .ioeventfd, .immediateExit]
}

/// The system fd (`/dev/kvm`): API version and capability checks, VM creation, supported CPUID.
public final class KVMSystem: @unchecked Sendable {
    public static let expectedAPIVersion: Int32 = 12
    let fd: FileDescriptor
    public var raw: Int32 { fd.raw }

    /// Opens `path` and checks the API version and every capability in ``KVMCapability/required``.
    public init(path: String = "/dev/kvm") throws {
        let opened: FileDescriptor
        do {
            opened = try FileDescriptor.open(path, O_RDWR)
        } catch let error as SystemError {
            throw KVMError("cannot open \(path): \(error.reason) (this host needs KVM: load kvm_intel/kvm_amd or "
                           + "kvm_pvm, and run as root or as a member of the kvm group)")
        }
        fd = opened
        let version = bh_kvm_get_api_version(fd.raw)
        guard version == Self.expectedAPIVersion else {
            throw KVMError("\(path) speaks KVM API version \(version), Bulkhead needs \(Self.expectedAPIVersion)")
        }
        let missing = KVMCapability.required.filter { !has($0) }
        if !missing.isEmpty {
            throw KVMError("\(path) lacks " + missing.map { "\($0.name) (needed for \($0.neededFor))" }.joined(separator: ", ")
                           + "; use the libvirt driver on this host")
        }
    }

    public func has(_ capability: KVMCapability) -> Bool { bh_kvm_check_extension(fd.raw, capability.number) > 0 }

    /// The size of each vCPU's `struct kvm_run` mapping.
    public func vcpuMapSize() throws -> Int {
        Int(try sys("ioctl KVM_GET_VCPU_MMAP_SIZE", "/dev/kvm") { bh_kvm_get_vcpu_mmap_size(fd.raw) })
    }

    /// KVM_GET_SUPPORTED_CPUID: every leaf this host's KVM can offer a guest.
    public func supportedCPUID() throws -> [kvm_cpuid_entry2] {
        var count: UInt32 = 256
        var entries = [kvm_cpuid_entry2](repeating: kvm_cpuid_entry2(), count: Int(count))
        try sys("ioctl KVM_GET_SUPPORTED_CPUID", "/dev/kvm") {
            entries.withUnsafeMutableBufferPointer { bh_kvm_get_supported_cpuid(fd.raw, $0.baseAddress, &count) }
        }
        return Array(entries.prefix(Int(count)))
    }

    /// KVM_CREATE_VM.
    public func createVM() throws -> KVMVirtualMachineFD {
        let vm = try sys("ioctl KVM_CREATE_VM", "/dev/kvm", hint: "the host may be out of memory or KVM slots") {
            bh_kvm_create_vm(fd.raw)
        }
        // The VM fd must not leak into children either.
        _ = bh_fcntl_int_cloexec(vm)
        return KVMVirtualMachineFD(fd: FileDescriptor(adopting: vm))
    }
}

@inline(__always) func bh_fcntl_int_cloexec(_ fd: Int32) -> Int32 { fcntl(fd, F_SETFD, FD_CLOEXEC) }

/// A VM fd: memory slots, TSS, interrupt controllers, irqfd/ioeventfd, vCPU creation.
public final class KVMVirtualMachineFD: @unchecked Sendable {
    let fd: FileDescriptor
    public var raw: Int32 { fd.raw }
    init(fd: consuming FileDescriptor) { self.fd = fd }

    public func setUserMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64, host: UnsafeMutableRawPointer) throws {
        try sys("ioctl KVM_SET_USER_MEMORY_REGION", "slot \(slot) at \(hex(guestAddress))") {
            bh_kvm_set_user_memory_region(fd.raw, slot, guestAddress, size, UInt64(UInt(bitPattern: host)))
        }
    }

    public func setTSSAddress(_ address: UInt64) throws {
        try sys("ioctl KVM_SET_TSS_ADDR", hex(address)) { bh_kvm_set_tss_addr(fd.raw, address) }
    }

    public func setIdentityMapAddress(_ address: UInt64) throws {
        try sys("ioctl KVM_SET_IDENTITY_MAP_ADDR", hex(address)) { bh_kvm_set_identity_map_addr(fd.raw, address) }
    }

    public func createIRQChip() throws { try sys("ioctl KVM_CREATE_IRQCHIP") { bh_kvm_create_irqchip(fd.raw) } }
    public func createPIT() throws { try sys("ioctl KVM_CREATE_PIT2") { bh_kvm_create_pit2(fd.raw) } }

    public func setIRQLine(_ irq: UInt32, level: Bool) throws {
        try sys("ioctl KVM_IRQ_LINE", "irq \(irq)") { bh_kvm_irq_line(fd.raw, irq, level ? 1 : 0) }
    }

    public func registerIRQFD(_ eventFD: Int32, gsi: UInt32) throws {
        try sys("ioctl KVM_IRQFD", "gsi \(gsi)") { bh_kvm_irqfd(fd.raw, eventFD, gsi) }
    }

    public func registerIOEventFD(_ eventFD: Int32, mmioAddress: UInt64, datamatch: UInt32) throws {
        try sys("ioctl KVM_IOEVENTFD", hex(mmioAddress)) { bh_kvm_ioeventfd_mmio(fd.raw, eventFD, mmioAddress, datamatch) }
    }

    public func createVCPU(id: Int32) throws -> Int32 {
        let vcpu = try sys("ioctl KVM_CREATE_VCPU", "vcpu \(id)") { bh_kvm_create_vcpu(fd.raw, id) }
        _ = bh_fcntl_int_cloexec(vcpu)
        return vcpu
    }
}

func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
