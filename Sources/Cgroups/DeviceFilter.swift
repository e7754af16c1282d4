import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The cgroup v2 device controller: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, assembled here from the device
/// rules (as runc and crun do), loaded with bpf(BPF_PROG_LOAD) and attached to the container's cgroup directory.
///
/// The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }` where access_type is
/// `(access << 16) | type` (type: 1 block, 2 char; access: 1 mknod, 2 read, 4 write) and returns 1 to allow.
/// Rules are checked newest first and the first one that matches decides (the last matching rule in the spec
/// wins); nothing matching means deny. An allow rule matches when it grants every access asked for; a deny rule
/// matches when it covers any of them.
public enum DeviceFilter {
    /// One eBPF instruction, encoded as the kernel reads it (little-endian `struct bpf_insn`).
    public struct Instruction: Equatable, Sendable {
        public var code: UInt8
        public var dst: UInt8
        public var src: UInt8
        public var offset: Int16
        public var imm: Int32
        public var encoded: UInt64 {
            UInt64(code) | UInt64((src << 4) | (dst & 0xf)) << 8 | UInt64(UInt16(bitPattern: offset)) << 16
                | UInt64(UInt32(bitPattern: imm)) << 32
        }
        // Opcodes (class | op | source).
        static func loadWord(_ dst: UInt8, _ src: UInt8, _ off: Int16) -> Self { .init(code: 0x61, dst: dst, src: src, offset: off, imm: 0) }
        static func and32(_ dst: UInt8, _ imm: Int32) -> Self { .init(code: 0x54, dst: dst, src: 0, offset: 0, imm: imm) }
        static func rsh32(_ dst: UInt8, _ imm: Int32) -> Self { .init(code: 0x74, dst: dst, src: 0, offset: 0, imm: imm) }
        static func mov32(_ dst: UInt8, _ src: UInt8) -> Self { .init(code: 0xbc, dst: dst, src: src, offset: 0, imm: 0) }
        static func mov64(_ dst: UInt8, _ src: UInt8) -> Self { .init(code: 0xbf, dst: dst, src: src, offset: 0, imm: 0) }
        static func mov32(_ dst: UInt8, imm: Int32) -> Self { .init(code: 0xb4, dst: dst, src: 0, offset: 0, imm: imm) }
        static func jne(_ dst: UInt8, _ imm: Int32, _ off: Int16) -> Self { .init(code: 0x55, dst: dst, src: 0, offset: off, imm: imm) }
        static func jeq(_ dst: UInt8, _ imm: Int32, _ off: Int16) -> Self { .init(code: 0x15, dst: dst, src: 0, offset: off, imm: imm) }
        static let exit = Self(code: 0x95, dst: 0, src: 0, offset: 0, imm: 0)
    }

    static let accessBits: [Character: Int32] = ["m": 1, "r": 2, "w": 4]

    /// RLIMIT_MEMLOCK (glibc's enum constant is __RLIMIT_MEMLOCK).
    static let memlock = __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)

    /// The program for `rules` (already including the standard devices).
    ///
    /// Each rule's block loads the context fields it compares afresh (from R6, the context pointer), rather than
    /// comparing registers loaded once at the start. The result is the same; the verifier's work is not: a compare
    /// teaches it the register's value on each side of the jump, so registers carried from block to block reached
    /// each block in a different state, and every path was verified again (228 instructions processed, 25 states,
    /// for the standard rules). Registers a block reloads are dead where it starts, the states reaching it are
    /// equal and are verified once (147 processed): about a quarter less of the load's cost, which is a large part
    /// of every container start on cgroup v2.
    public static func program(for rules: [DeviceAccessRule]) -> [Instruction] {
        // R6 = context; per block: R2 = type, R1 = requested access, R4 = major, R5 = minor.
        var out: [Instruction] = [.mov64(6, 1)]
        for rule in rules.reversed() {
            // Each check jumps past the end of this rule's block when it does not match. Offsets are patched
            // once the block's length is known.
            var block: [Instruction] = []
            var jumps: [Int] = []
            if rule.kind != .all {
                block.append(.loadWord(2, 6, 0)); block.append(.and32(2, 0xffff))
                jumps.append(block.count); block.append(.jne(2, rule.kind == .block ? 1 : 2, 0))
            }
            let access = rule.access.reduce(Int32(0)) { $0 | (accessBits[$1] ?? 0) }
            if access != 7 {
                block.append(.loadWord(1, 6, 0)); block.append(.rsh32(1, 16))
                if rule.allow {
                    // Every requested bit must be granted: (req & ~access) == 0.
                    block.append(.and32(1, ~access & 7))
                    jumps.append(block.count); block.append(.jne(1, 0, 0))
                } else {
                    // Any requested bit denied: (req & access) != 0.
                    block.append(.and32(1, access))
                    jumps.append(block.count); block.append(.jeq(1, 0, 0))
                }
            }
            if let major = rule.major {
                block.append(.loadWord(4, 6, 4))
                jumps.append(block.count); block.append(.jne(4, Int32(bitPattern: major), 0))
            }
            if let minor = rule.minor {
                block.append(.loadWord(5, 6, 8))
                jumps.append(block.count); block.append(.jne(5, Int32(bitPattern: minor), 0))
            }
            block.append(.mov32(0, imm: rule.allow ? 1 : 0))
            block.append(.exit)
            for j in jumps { block[j].offset = Int16(block.count - j - 1) }
            out += block
            // A rule that matches every request (`a *:* rwm`) decides alone: nothing after it can run, and the
            // verifier refuses unreachable instructions.
            if jumps.isEmpty { return out }
        }
        out.append(.mov32(0, imm: 0))
        out.append(.exit)
        return out
    }

    /// Loads `program` and attaches it to the cgroup2 directory `dir`. With `replacing`, the device programs
    /// attached before are detached once the new one is in (so there is no moment without a filter).
    public static func attach(_ program: [Instruction], toCgroup dir: String, replacing: Bool = false) throws {
        let cgroupFD = try FileDescriptor.open(dir, O_RDONLY | O_DIRECTORY)
        var old: [UInt32] = []
        if replacing { old = (try? attachedPrograms(cgroupFD: cgroupFD.raw)) ?? [] }
        let prog = try load(program)
        if bh_bpf_attach_cgroup_device(prog.raw, cgroupFD.raw, bh_bpf_allow_multi()) != 0 {
            let code = bh_errno()
            throw CgroupError("linux.resources.devices: attaching the device filter (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) to \(dir) failed: \(String(cString: strerror(code)))")
        }
        for id in old {
            let fd = bh_bpf_prog_fd_by_id(id)
            guard fd >= 0 else { continue }
            let owned = FileDescriptor(adopting: fd)
            _ = bh_bpf_detach_cgroup_device(owned.raw, cgroupFD.raw)
        }
    }

    /// Loads the program (the verifier checks it); returns its fd. The verifier writes no log on the way (its log
    /// at level 1 costs more than the check itself); after a failure the load is repeated once with the log on, for
    /// the error message.
    public static func load(_ program: [Instruction]) throws -> FileDescriptor {
        let encoded = program.map(\.encoded)
        var log: [CChar] = []
        func attempt() -> Int32 {
            encoded.withUnsafeBufferPointer { insns in
                log.withUnsafeMutableBufferPointer { buf in
                    bh_bpf_load_cgroup_device(insns.baseAddress, UInt32(insns.count), "Apache-2.0", buf.baseAddress, UInt32(buf.count))
                }
            }
        }
        var fd = attempt()
        if fd < 0 && bh_errno() == EPERM {
            // Kernels before 5.11 charge BPF programs to RLIMIT_MEMLOCK: lift it for the load (as runc and crun
            // do), then put it back so the container does not inherit the lifted limit.
            var old = rlimit()
            if getrlimit(Self.memlock, &old) == 0 {
                var unlimited = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)   // RLIM_INFINITY
                if setrlimit(Self.memlock, &unlimited) == 0 {
                    fd = attempt()
                    let saved = bh_errno()
                    _ = setrlimit(Self.memlock, &old)
                    bh_set_errno(saved)
                }
            }
        }
        if fd < 0 {
            let code = bh_errno()
            if code != EPERM {
                log = [CChar](repeating: 0, count: 64 * 1024)
                let again = attempt()
                if again >= 0 { return FileDescriptor(adopting: again) }
            }
            let verifier = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw CgroupError("linux.resources.devices: loading the device filter (BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE) failed: \(String(cString: strerror(code)))\(verifier.isEmpty ? "" : "; verifier: \(verifier)")\(code == EPERM ? " (needs CAP_SYS_ADMIN or CAP_BPF)" : "")")
        }
        return FileDescriptor(adopting: fd)
    }

    /// Ids of the device programs attached to a cgroup directory.
    public static func attachedPrograms(cgroupFD: Int32) throws -> [UInt32] {
        var ids = [UInt32](repeating: 0, count: 64)
        var count = UInt32(ids.count)
        let r = ids.withUnsafeMutableBufferPointer { bh_bpf_query_cgroup_device(cgroupFD, $0.baseAddress, &count) }
        if r != 0 { throw SystemError(operation: "bpf(BPF_PROG_QUERY)", errno: bh_errno()) }
        return Array(ids.prefix(Int(count)))
    }
}
