import ArgumentParser
import Confine
import LinuxOS
import OCIImage
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead spec`: writes a default config.json (like `runc spec`) into the bundle directory.
struct SpecCommand: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(commandName: "spec", abstract: "Create a default config.json.").verb
    @OptionGroup var globals: GlobalOptions
    @Option(name: [.short, .customLong("bundle")], help: "Directory to write config.json into.") var bundle: String = "."
    @Option(name: .customLong("image"), help: "Print (to stdout) the config.json `bulkhead run IMAGE` would use.") var image: String?

    func run() throws {
        if let image {
            // The user is resolved through the image's own /etc/passwd: mount its rootfs briefly.
            let store = try ImageStore(dataRoot: globals.dataRoot)
            let stored = try store.resolve(image)
            let id = "spec-" + RuntimeSupport.randomID()
            let rootfs = try store.prepareRootfs(image: stored, containerID: id)
            defer { try? store.releaseRootfs(containerID: id) }
            let dir = try FileDescriptor.open(rootfs, O_RDONLY | O_DIRECTORY)
            let spec = try ImageSpecBuilder.build(image: stored.config, overrides: ImageRunOverrides(), rootfs: "rootfs",
                                                  rootfsDirectory: dir, containerID: RuntimeSupport.randomID())
            print(String(decoding: try spec.encoded(), as: UTF8.self))
            return
        }
        let dir = try FileDescriptor.open(bundle, O_RDONLY | O_DIRECTORY)
        if dir.exists("config.json") {
            throw RuntimeError("\(bundle)/config.json already exists: remove it first (spec does not overwrite)")
        }
        var bytes = try Spec.defaultSpec().encoded()
        bytes.append(0x0a)
        let fd = try dir.openAt("config.json", O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        try fd.writeAll(bytes, path: bundle + "/config.json")
    }
}

/// `bulkhead features`: what this runtime implements, as runc's `features` JSON.
struct Features: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "features", abstract: "Show the features this runtime implements (JSON).").verb
    @OptionGroup var globals: GlobalOptions

    struct Output: Encodable {
        var ociVersionMin = Spec.minimumVersion
        var ociVersionMax = Spec.version
        var hooks = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
        var mountOptions = ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
                            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
                            "nosuid", "nosymfollow", "private", "rbind", "relatime", "remount", "ro", "rprivate",
                            "rshared", "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
                            "unbindable", "idmap", "ridmap"]
        var linux = Linux()
        var annotations: [String: String] = ["org.bulkhead.tier": "namespace"]

        struct Linux: Encodable {
            var namespaces = ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]
            var capabilities = CapabilityPlan.allNames
            var cgroup = Cgroup()
            var seccomp = Seccomp()
            var apparmor = Enabled(enabled: false)
            var selinux = Enabled(enabled: false)
            var mountExtensions = MountExtensions()
        }
        struct MountExtensions: Encodable { var idmap = Enabled(enabled: true) }
        struct Cgroup: Encodable { var v1 = true; var v2 = true; var systemd = false; var systemdUser = false }
        struct Enabled: Encodable { var enabled: Bool }
        struct Seccomp: Encodable {
            var enabled = true
            var actions = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                           "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"]
            var operators = ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"]
            var archs = ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]
            var knownFlags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            var supportedFlags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
        }
    }

    func run() throws {
        try RuntimeSupport.printJSON(Output())
    }
}
