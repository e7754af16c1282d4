import ArgumentParser
import Runtime

/// Options `create` and the bundle form of `run` share (runc's).
struct BundleCreateOptions: ParsableArguments {
    @Option(name: [.short, .customLong("bundle")], help: ArgumentHelp("The bundle directory (config.json and the rootfs).", valueName: "dir"))
    var bundle: String = "."

    @Option(name: .customLong("console-socket"), help: ArgumentHelp("Unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true.", valueName: "path"))
    var consoleSocket: String?

    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the container's init pid here.", valueName: "path"))
    var pidFile: String?

    @Flag(name: .customLong("no-pivot"), help: "Do not use pivot_root (MS_MOVE + chroot instead), for a rootfs on a ramdisk.")
    var noPivot = false

    @Flag(name: .customLong("no-new-keyring"), help: "Keep the caller's session keyring instead of a new one.")
    var noNewKeyring = false

    @Option(name: .customLong("preserve-fds"), help: ArgumentHelp("Pass this many extra fds (from 3 on) to the container.", valueName: "n"))
    var preserveFds: Int = 0

    @Option(name: .customLong("hypervisor-uri"), help: ArgumentHelp("libvirt URI for microVM containers (default: the embedded QEMU driver under --data-root; also BULKHEAD_HYPERVISOR_URI).", valueName: "uri"))
    var hypervisorURI: String?
}

/// `bulkhead create`: builds the container (namespaces, rootfs, cgroup, devices) and leaves its init waiting.
struct Create: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a container from a bundle; its program waits until `start`.").verb

    @OptionGroup var globals: GlobalOptions
    @OptionGroup var options: BundleCreateOptions
    @OptionGroup var policy: PolicyOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let bundle = RuntimeSupport.absolute(options.bundle)
        let spec = try RuntimeSupport.loadSpec(bundle: bundle)
        _ = try RuntimeSupport.create(globals: globals, id: id, bundle: bundle, spec: spec, pidFile: options.pidFile,
                                      consoleSocket: options.consoleSocket, noPivot: options.noPivot,
                                      noNewKeyring: options.noNewKeyring, preserveFds: options.preserveFds,
                                      foreground: false, policy: policy, hypervisorURI: options.hypervisorURI)
    }
}
