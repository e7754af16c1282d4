import ArgumentParser
import FoundationEssentials
import LinuxOS
import Logging
import MicroVMBackend
import NamespaceBackend
import OCIImage
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// What the runc-style verbs share: the state store, the backend of a container, bundles and output.
enum RuntimeSupport {
    static func store(_ globals: GlobalOptions) -> StateStore { StateStore(root: globals.root) }

    /// The backend a container was created with.
    /// For the microVM tier, the libvirt connection is `--hypervisor-uri`, else `BULKHEAD_HYPERVISOR_URI`, else the
    /// policy's `hypervisor_uri` (`policyURI`), else libvirt's embedded driver.
    static func backend(named name: String, globals: GlobalOptions, hypervisorURI: String? = nil,
                        policyURI: String? = nil) throws -> any Backend {
        switch name {
        case "namespace": return NamespaceBackend()
        case "microvm":
            let uri = [hypervisorURI, getenv("BULKHEAD_HYPERVISOR_URI").map { String(cString: $0) }, policyURI]
                .compactMap { $0 }.first { !$0.isEmpty }
            return MicroVMBackend(dataRoot: globals.dataRoot, hypervisorURI: uri)
        default: throw RuntimeError("container was created by backend \"\(name)\", which this build does not have")
        }
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let joined = path == "." ? cwd : cwd + "/" + path
        return joined.hasSuffix("/.") ? String(joined.dropLast(2)) : joined
    }

    /// Reads and validates `<bundle>/config.json`.
    static func loadSpec(bundle: String) throws -> Spec {
        let path = bundle + "/config.json"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY) } catch let e as SystemError where e.errno == ENOENT {
            throw RuntimeError("\(path) does not exist: give the bundle directory with --bundle (it holds config.json and the rootfs)")
        }
        return try Spec.decode(try fd.readAll(limit: 16 << 20, path: path), source: path)
    }

    /// Creates a container from a bundle: the policy's decision first (before anything is built), then state
    /// directory, record, backend create. On failure nothing is left.
    static func create(globals: GlobalOptions, id: String, bundle: String, spec specAsGiven: Spec, pidFile: String?,
                       consoleSocket: String?, noPivot: Bool, noNewKeyring: Bool, preserveFds: Int,
                       foreground: Bool, policy: PolicyOptions, extra: [String: String]? = nil,
                       hypervisorURI: String? = nil, image: ImageFacts? = nil,
                       userNamespace: AutoUserNamespace? = nil) throws -> ContainerRecord {
        let decision = try PolicyAdmission.admit(policy, id: id, bundle: bundle, spec: specAsGiven, image: image)
        let tier = decision.granted!.rawValue
        var spec = specAsGiven
        // The image form's own user namespace (--userns auto, or a policy that requires one) is a namespace-tier
        // matter: in the microvm tier the guest kernel is the boundary and the host ids are never the container's.
        let userns = tier == "namespace" ? userNamespace : nil
        if let userNamespace, userNamespace.requested, userns == nil {
            Logger(label: "bulkhead.userns").info("--userns auto: not used in the \(tier) tier (the container runs under its own guest kernel)")
        }
        let directory: ContainerDirectory
        do {
            try PolicyAdmission.apply(decision, to: &spec, userNamespace: userns)
            if let userns, userns.requested { try userns.enable(&spec, reason: "--userns auto") }
            if userns?.allocation != nil, let path = extra?["dataRoot"] {
                // The image bundle's config.json says what runs.
                _ = try writeImageBundle(dataRoot: path, id: id, spec: spec)
            }
            directory = try store(globals).create(id: id)
        } catch {
            userns?.release()
            throw error
        }
        let rootPath = spec.root?.path ?? "rootfs"
        let rootfs = rootPath.hasPrefix("/") ? rootPath : bundle + "/" + rootPath
        // The tier, and the rule that chose it, are part of the container's state (`state` shows them).
        var annotations = spec.annotations ?? [:]
        annotations["bulkhead.tier"] = tier
        annotations["bulkhead.policy.rule"] = decision.rule
        var record = ContainerRecord(id: id, backend: tier, bundle: bundle, rootfs: rootfs,
                                     created: Timestamp.now(), annotations: annotations)
        let vm = PolicyAdmission.microVMSettings(decision)
        record.extra = vm.isEmpty ? extra : (extra ?? [:]).merging(vm) { $1 }
        let backend = try backend(named: record.backend, globals: globals, hypervisorURI: hypervisorURI,
                                  policyURI: vm["vm.hypervisorURI"])
        do {
            try directory.save(record)
            let request = CreateRequest(id: id, bundle: bundle, spec: spec, pidFile: pidFile.map(absolute),
                                        consoleSocket: consoleSocket, noPivot: noPivot, noNewKeyring: noNewKeyring,
                                        preserveFds: preserveFds, systemdCgroup: globals.systemdCgroup,
                                        foreground: foreground)
            try backend.create(request, record: &record, directory: directory)
        } catch {
            try? directory.remove()
            userns?.release()
            throw error
        }
        return record
    }

    /// Opens a container (locked) and its backend.
    static func open(_ globals: GlobalOptions, _ id: String) throws -> (ContainerDirectory, ContainerRecord, any Backend) {
        let directory = try store(globals).open(id: id)
        let record = try directory.load()
        return (directory, record, try backend(named: record.backend, globals: globals))
    }

    static func printJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        print(String(decoding: data, as: UTF8.self))
    }

    /// Signal names (with or without SIG) and numbers.
    static func signalNumber(_ text: String) throws -> Int32 {
        if let n = Int32(text), n > 0, n < 65 { return n }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        let table: [String: Int32] = [
            "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
            "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
            "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
            "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
        ]
        if let n = table[name] { return n }
        if name.hasPrefix("RTMIN"), let off = Int32(name.dropFirst(5).replacingPlus()) { return 34 + off }
        if name == "RTMIN" { return 34 }
        if name.hasPrefix("RTMAX"), let off = Int32(name.dropFirst(5)) { return 64 + off }
        if name == "RTMAX" { return 64 }
        throw RuntimeError("unknown signal \"\(text)\": give a name (TERM, SIGKILL) or a number (15)")
    }
}

extension Substring {
    func replacingPlus() -> String { hasPrefix("+") ? String(dropFirst()) : String(self) }
}

/// `bulkhead init` is the container init's entry point, handled before the CLI in main.swift. Listed (hidden)
/// so that a stray `bulkhead init` gets a clear error.
struct InitPlaceholder: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Internal: the container init.",
                                                    shouldDisplay: false)
    func run() throws {
        throw RuntimeError("bulkhead init is run by the runtime itself inside a new container; it is not a command to call")
    }
}

extension RuntimeSupport {
    /// Deletes a container (backend resources, image rootfs of an image-form container, state directory).
    /// `known`: the record as this process last saved it (`run`, which created and started the container), which
    /// spares reading it back; otherwise it is read from the state directory.
    static func deleteContainer(_ globals: GlobalOptions, id: String, force: Bool, known: ContainerRecord? = nil) throws {
        let directory = try store(globals).open(id: id)
        let record = try known ?? directory.load()
        let backend = try backend(named: record.backend, globals: globals)
        try backend.delete(record, directory: directory, force: force)
        try releaseImageResources(record)
        try AutoUserNamespace.release(globals: globals, id: id)
        try directory.remove()
    }

    /// An image-form container's rootfs (overlay) and generated bundle go with it.
    static func releaseImageResources(_ record: ContainerRecord) throws {
        guard let dataRoot = record.extra?["dataRoot"] else { return }
        try ImageStore(dataRoot: dataRoot).releaseRootfs(containerID: record.id)
        removeBundle(dataRoot: dataRoot, id: record.id)
    }

    static func bundlePath(dataRoot: String, id: String) -> String { dataRoot + "/bundles/" + id }

    /// Writes the config.json of an image-form container to `<data-root>/bundles/<id>/`.
    static func writeImageBundle(_ globals: GlobalOptions, id: String, spec: Spec) throws -> String {
        try writeImageBundle(dataRoot: globals.dataRoot, id: id, spec: spec)
    }

    static func writeImageBundle(dataRoot: String, id: String, spec: Spec) throws -> String {
        let path = bundlePath(dataRoot: dataRoot, id: id)
        for dir in [dataRoot + "/bundles", path] where Glibc.mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw SystemError(operation: "mkdir", path: dir, errno: errno)
        }
        let fd = try FileDescriptor.open(path + "/config.json", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try fd.writeAll(try spec.encoded(), path: path + "/config.json")
        return path
    }

    static func removeImageBundle(_ globals: GlobalOptions, id: String) {
        removeBundle(dataRoot: globals.dataRoot, id: id)
    }

    static func removeBundle(dataRoot: String, id: String) {
        guard let dir = try? FileDescriptor.open(dataRoot + "/bundles", O_RDONLY | O_DIRECTORY) else { return }
        try? dir.removeTree(id)
    }

    /// 16 random hex digits.
    static func randomID() -> String {
        var bytes = [UInt8](repeating: 0, count: 8)
        if let fd = try? FileDescriptor.open("/dev/urandom", O_RDONLY) {
            _ = bytes.withUnsafeMutableBytes { try? fd.read(into: $0) }
        }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
