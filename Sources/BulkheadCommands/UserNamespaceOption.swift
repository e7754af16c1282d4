import ArgumentParser
import LinuxOS
import Logging
import OCIImage
import OCIRuntime
import Runtime

/// `run --userns MODE` (image form): `host` (the default: no user namespace) or
/// `auto[:size=N][,shift=idmapped-layers|chown]` (its own user namespace, container ids 0..N-1 mapped to a host
/// range nobody else holds).
struct UserNamespaceMode: Equatable, Sendable {
    enum Kind: Equatable, Sendable { case host, auto }
    var kind: Kind
    var size: UInt32 = IDRangeAllocator.defaultSize
    /// Forces how the rootfs is made to belong to the range (default: idmapped layers where possible).
    var shift: RootfsShiftMethod?

    static let usage = "give host, or auto[:size=N][,shift=idmapped-layers|chown]"

    init(kind: Kind) { self.kind = kind }

    init(parsing text: String) throws {
        if text == "host" { kind = .host; return }
        guard text == "auto" || text.hasPrefix("auto:") else {
            throw RuntimeError("--userns \(text): unknown mode; \(Self.usage)")
        }
        kind = .auto
        for option in text.dropFirst(5).split(separator: ",") where !option.isEmpty {
            let kv = option.split(separator: "=", maxSplits: 1).map(String.init)
            switch (kv.first, kv.count) {
            case ("size", 2):
                guard let n = UInt32(kv[1]), n > 0, n <= 1 << 24 else {
                    throw RuntimeError("--userns \(text): size must be a number of ids from 1 to 16777216")
                }
                size = n
            case ("shift", 2):
                guard let m = RootfsShiftMethod(rawValue: kv[1]) else {
                    throw RuntimeError("--userns \(text): shift must be one of \(RootfsShiftMethod.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                shift = m
            default:
                throw RuntimeError("--userns \(text): unknown option \"\(option)\"; \(Self.usage)")
            }
        }
    }
}

/// The user namespace of one image-form container: a host id range from ``IDRangeAllocator``, the container's
/// prepared rootfs shifted to it, and the user namespace with its mappings added to the spec. Turned on by
/// `--userns auto`, or by a policy whose namespace settings require a user namespace.
final class AutoUserNamespace {
    let mode: UserNamespaceMode
    let containerID: String
    let runtimeRoot: String
    let dataRoot: String
    /// Whether `--userns auto` was given (otherwise only a policy can turn it on).
    var requested: Bool { mode.kind == .auto }
    private(set) var allocation: IDAllocation?
    private let logger = Logger(label: "bulkhead.userns")

    init(mode: UserNamespaceMode, containerID: String, globals: GlobalOptions) {
        self.mode = mode
        self.containerID = containerID
        runtimeRoot = globals.root
        dataRoot = globals.dataRoot
    }

    /// Allocates the range, shifts the rootfs, and adds the user namespace to `spec`. `reason` says who asked.
    func enable(_ spec: inout Spec, reason: String) throws {
        if allocation != nil { return }
        let allocator = IDRangeAllocator(runtimeRoot: runtimeRoot)
        // Never adopt (and on failure release) the range of another container of the same name.
        let a = try allocator.allocate(containerID: containerID, size: mode.size, reuse: false)
        allocation = a
        let method: RootfsShiftMethod
        do {
            method = try ImageStore(dataRoot: dataRoot).shiftRootfs(containerID: containerID,
                                                                    shift: IDShift(uid: a.uid, gid: a.gid, size: a.size),
                                                                    method: mode.shift)
        } catch {
            release()
            throw RuntimeError("\(reason): cannot give the rootfs of \(containerID) to host ids \(a.uidRange): \(error)")
        }
        var linux = spec.linux ?? Spec.Linux()
        var namespaces = (linux.namespaces ?? []).filter { $0.type != .user }
        namespaces.insert(Spec.Namespace(type: .user), at: 0)
        linux.namespaces = namespaces
        linux.uidMappings = [Spec.IDMapping(containerID: 0, hostID: a.uid, size: a.size)]
        linux.gidMappings = [Spec.IDMapping(containerID: 0, hostID: a.gid, size: a.size)]
        spec.linux = linux
        logger.info("\(reason): container \(containerID) runs in its own user namespace: container ids 0-\(a.size - 1) are host uids \(a.uidRange) and gids \(a.gidRange) (\(a.pool) pool); rootfs shifted with \(method == .idmappedLayers ? "idmapped layers (no copy)" : "chown of the container's upper layer")")
    }

    /// Gives the range back (a failed create). Delete releases it through ``release(globals:id:)``.
    func release() {
        guard allocation != nil else { return }
        try? IDRangeAllocator(runtimeRoot: runtimeRoot).release(containerID: containerID)
        allocation = nil
    }

    /// Releases the range a deleted container held, if any.
    static func release(globals: GlobalOptions, id: String) throws {
        try IDRangeAllocator(runtimeRoot: globals.root).release(containerID: id)
    }
}
