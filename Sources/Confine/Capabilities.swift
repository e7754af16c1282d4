import CCap
import CShims
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A failure to confine a process, naming the spec field and the value (or the step) at fault.
public struct ConfineError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A set of capabilities as the kernel's 64-bit mask (bit n = capability n).
public struct CapabilityMask: Sendable, Equatable, Hashable {
    public var bits: UInt64
    public init(bits: UInt64 = 0) { self.bits = bits }
    public func contains(_ cap: Int) -> Bool { cap >= 0 && cap < 64 && bits & (1 << UInt64(cap)) != 0 }
    public mutating func insert(_ cap: Int) { bits |= 1 << UInt64(cap) }
    public var members: [Int] { (0..<64).filter { contains($0) } }
}

/// The five capability sets of `process.capabilities`, resolved to numbers, and the steps that give a process
/// exactly those sets. The order matters (as in runc):
///
/// 1. `dropBoundingSet()` while still root (needs CAP_SETPCAP);
/// 2. `keepAcrossUIDChange(true)` (PR_SET_KEEPCAPS), so the permitted set survives setresuid to a non-zero uid;
/// 3. the caller changes groups, gid and uid;
/// 4. `applyProcessSets()`: effective, permitted and inheritable in one capset, then the ambient set.
///
/// A spec without a `capabilities` section gets none: every set empty (runc 1.1 leaves such a process with all
/// of root's capabilities; Bulkhead does not).
public struct CapabilityPlan: Sendable, Equatable {
    public var bounding = CapabilityMask()
    public var effective = CapabilityMask()
    public var permitted = CapabilityMask()
    public var inheritable = CapabilityMask()
    /// The ambient capabilities that will be raised: the kernel raises only those that are both permitted and
    /// inheritable, and the others are left out (runc does the same, with a warning).
    public var ambient = CapabilityMask()
    /// Ambient capabilities the spec names that cannot be raised (not both permitted and inheritable).
    public var ambientSkipped: [String] = []

    public init() {}

    /// The number of the highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
    public static var kernelLastCapability: Int { Int(cap_max_bits()) - 1 }

    /// Resolves the names of `capabilities` (`CAP_SYS_ADMIN`; case-insensitive, the `CAP_` prefix required).
    /// An unknown name is an error naming the field (`process.capabilities.bounding[3]`) and the value. A name
    /// libcap knows but the running kernel does not is left out (runc does the same).
    public static func resolve(_ capabilities: Spec.Capabilities?, field: String = "process.capabilities") throws -> CapabilityPlan {
        var plan = CapabilityPlan()
        guard let capabilities else { return plan }
        let last = kernelLastCapability
        func mask(_ names: [String]?, _ set: String) throws -> CapabilityMask {
            var m = CapabilityMask()
            for (i, name) in (names ?? []).enumerated() {
                let cap = try number(of: name, field: "\(field).\(set)[\(i)]")
                if cap <= last { m.insert(cap) }
            }
            return m
        }
        plan.bounding = try mask(capabilities.bounding, "bounding")
        plan.effective = try mask(capabilities.effective, "effective")
        plan.permitted = try mask(capabilities.permitted, "permitted")
        plan.inheritable = try mask(capabilities.inheritable, "inheritable")
        let ambient = try mask(capabilities.ambient, "ambient")
        for cap in plan.effective.members where !plan.permitted.contains(cap) {
            throw ConfineError("\(field).effective: \(name(of: cap)) is not in \(field).permitted; the kernel refuses an effective capability that is not permitted (add it to permitted, or remove it from effective)")
        }
        for cap in ambient.members {
            if plan.permitted.contains(cap) && plan.inheritable.contains(cap) { plan.ambient.insert(cap) }
            else { plan.ambientSkipped.append(name(of: cap)) }
        }
        return plan
    }

    /// The number of a capability name, or an error naming `field` and the value.
    public static func number(of name: String, field: String) throws -> Int {
        let upper = name.uppercased()
        guard upper.hasPrefix("CAP_"), upper.count > 4 else {
            throw ConfineError("\(field): unknown capability \"\(name)\" (capability names look like CAP_NET_BIND_SERVICE; see capabilities(7))")
        }
        var value: cap_value_t = 0
        guard cap_from_name(upper.lowercased(), &value) == 0, value >= 0, value < 64 else {
            throw ConfineError("\(field): unknown capability \"\(name)\" (not a capability this build's libcap knows; see capabilities(7))")
        }
        return Int(value)
    }

    /// `CAP_SYS_ADMIN` for 21.
    public static func name(of cap: Int) -> String {
        guard let p = cap_to_name(cap_value_t(cap)) else { return "CAP_\(cap)" }
        defer { cap_free(p) }
        let text = String(cString: p)
        return text.hasPrefix("cap_") ? text.uppercased() : "CAP_" + text
    }

    /// Every capability name the running kernel knows, in number order.
    public static var allNames: [String] { (0...kernelLastCapability).map { name(of: $0) } }

    // MARK: applying

    /// Removes every capability not in `bounding` from the calling thread's bounding set (needs CAP_SETPCAP).
    public func dropBoundingSet() throws {
        for cap in 0...Self.kernelLastCapability where !bounding.contains(cap) {
            if cap_drop_bound(cap_value_t(cap)) != 0 {
                throw ConfineError("drop \(Self.name(of: cap)) from the bounding set: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// PR_SET_KEEPCAPS: whether the permitted set survives a change from uid 0 to a non-zero uid.
    public static func keepAcrossUIDChange(_ on: Bool) throws {
        try sys("prctl PR_SET_KEEPCAPS") { bh_prctl(8 /* PR_SET_KEEPCAPS */, on ? 1 : 0, 0, 0, 0) }
    }

    /// Sets the effective, permitted and inheritable sets (one capset), then the ambient set.
    public func applyProcessSets() throws {
        guard let caps = cap_init() else { throw ConfineError("cap_init: \(String(cString: strerror(errno)))") }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        for (flag, mask) in [(CAP_EFFECTIVE, effective), (CAP_PERMITTED, permitted), (CAP_INHERITABLE, inheritable)] {
            let values = mask.members.map { cap_value_t($0) }
            if !values.isEmpty && cap_set_flag(caps, flag, Int32(values.count), values, CAP_SET) != 0 {
                throw ConfineError("cap_set_flag: \(String(cString: strerror(errno)))")
            }
        }
        if cap_set_proc(caps) != 0 {
            let e = errno
            throw ConfineError("set the effective/permitted/inheritable capabilities: \(String(cString: strerror(e)))"
                               + (e == EPERM ? " (an inheritable capability must also be in the bounding set)" : ""))
        }
        if cap_reset_ambient() != 0 && errno != EINVAL {
            throw ConfineError("clear the ambient capabilities: \(String(cString: strerror(errno)))")
        }
        for cap in ambient.members where cap_set_ambient(cap_value_t(cap), CAP_SET) != 0 {
            throw ConfineError("raise ambient \(Self.name(of: cap)): \(String(cString: strerror(errno)))")
        }
    }

    /// The capabilities in the calling process's own bounding set: "all capabilities" for `--privileged` (a
    /// container cannot be given one its runtime has lost, e.g. under a parent runtime that dropped some).
    public static var boundingNamesOfThisProcess: [String] {
        (0...kernelLastCapability).filter { cap_get_bound(cap_value_t($0)) > 0 }.map { name(of: $0) }
    }
}
