import ArgumentParser
import CShims
import LinuxOS
import OCIImage
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead run` in two forms that must never be confused:
///
///   runc form:   bulkhead run [--bundle DIR] [--detach] [--console-socket S] [--pid-file F] … ID
///   image form:  bulkhead run [--name ID] [--rm] [-d] [-i] [-t] [-e K=V] [--workdir D] [--user U]
///                             [--hostname H] [-v SRC:DST[:ro]] IMAGE [CMD…]
///
/// The rule: `--bundle`/`-b` (or any other runc-only flag) means the runc form, any image-only flag means the
/// image form, and both together are refused. With neither, a single argument is the runc form only when the
/// working directory holds a config.json (runc's `cd bundle && runc run ID`) and no image of that name
/// exists; when both exist the call is refused as ambiguous; everything else is the image form.
struct Run: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a container from a bundle (runc form) or from an image (image form).",
        discussion: """
            runc form:  bulkhead run --bundle DIR [--detach] [--console-socket S] [--pid-file F] ID
            image form: bulkhead run [--name ID] [--rm] [-d] [-i] [-t] [-e K=V] [--workdir D] [--user U] \
            [--hostname H] [-v SRC:DST[:ro]] [--cap-add C] [--cap-drop C] [--security-opt O] [--privileged] [--userns host|auto] IMAGE [CMD…]
            The image form runs with Docker's secure defaults: its capability set, the default seccomp profile, \
            masked /proc paths, no_new_privs, a pids limit of 4096.
            --bundle (or another runc-only flag) selects the runc form; an image-only flag selects the image form.
            """).verb

    @OptionGroup var globals: GlobalOptions
    @OptionGroup var options: BundleCreateOptions
    @OptionGroup var policy: PolicyOptions
    @Flag(name: [.short, .customLong("detach")], help: "Do not wait for the container.") var detach = false
    @Flag(name: .customLong("keep"), help: "runc form: do not delete the container after it exits.") var keep = false
    @Flag(name: .customLong("no-subreaper"), help: "runc form: accepted for runc compatibility.") var noSubreaper = false

    @Option(name: .customLong("name"), help: "image form: the container ID (default: random).") var name: String?
    @Flag(name: .customLong("rm"), help: "image form: delete the container and its rootfs when it exits.") var rm = false
    @Flag(name: [.short, .customLong("interactive")], help: "image form: keep stdin open.") var interactive = false
    @Flag(name: [.short, .customLong("tty")], help: "image form: give the program a terminal.") var tty = false
    @Option(name: [.short, .customLong("env")], help: "image form: KEY=VALUE; repeatable.") var env: [String] = []
    @Option(name: [.short, .customLong("workdir")], help: "image form: working directory.") var workdir: String?
    @Option(name: [.short, .customLong("user")], help: "image form: user[:group], names from the image's /etc/passwd.") var user: String?
    @Option(name: .customLong("hostname"), help: "image form: the container's hostname.") var hostname: String?
    @Option(name: [.short, .customLong("volume")], help: "image form: SRC:DST[:ro] bind mount; repeatable.") var volume: [String] = []
    @Flag(name: .customLong("privileged"), help: "image form: all capabilities, no seccomp filter, no masked paths, the host's devices (refused unless the policy allows privileged containers).") var privileged = false
    @Option(name: .customLong("cap-add"), help: "image form: add a capability (NET_ADMIN, CAP_NET_ADMIN or ALL) to Docker's default set; repeatable.") var capAdd: [String] = []
    @Option(name: .customLong("cap-drop"), help: "image form: drop a capability (or ALL) from the default set; repeatable.") var capDrop: [String] = []
    @Option(name: .customLong("security-opt"), help: "image form: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges[=false]; repeatable.") var securityOpt: [String] = []
    @Option(name: .customLong("userns"), help: ArgumentHelp("image form: host (default), or auto[:size=N]: container root is an unprivileged host uid from a range of its own.", valueName: "mode"))
    var userns: String?

    @Argument(help: "runc form: the container ID; image form: the image.") var target: String
    @Argument(parsing: .captureForPassthrough, help: "image form: the command (replaces the image's Cmd).") var command: [String] = []

    static let bothForms = """
        runc form:  bulkhead run --bundle DIR [--detach] [--console-socket S] [--pid-file F] ID
          image form: bulkhead run [--name ID] [--rm] [-d] [-t] [-e K=V] IMAGE [CMD…]
        """

    enum Form { case bundle, image }

    func form(bundleGiven: Bool) throws -> Form {
        let runcOnly = bundleGiven || options.consoleSocket != nil || options.pidFile != nil || options.noPivot
            || options.noNewKeyring || options.preserveFds != 0 || keep || noSubreaper
        let imageOnly = name != nil || rm || interactive || tty || !env.isEmpty || workdir != nil || user != nil
            || hostname != nil || !volume.isEmpty || !command.isEmpty || privileged || !capAdd.isEmpty || !capDrop.isEmpty
            || !securityOpt.isEmpty || userns != nil
        if runcOnly && imageOnly {
            throw RuntimeError("run: runc-form flags (--bundle, --console-socket, --pid-file, …) and image-form flags (--name, --rm, -t, -e, CMD, …) cannot be mixed; use one form:\n  \(Self.bothForms)")
        }
        if runcOnly { return .bundle }
        if imageOnly { return .image }
        let haveConfig = access("config.json", F_OK) == 0
        let haveImage = (try? ImageStore(dataRoot: globals.dataRoot).resolve(target)) != nil
        if haveConfig && haveImage {
            throw RuntimeError("run \(target): ambiguous: the working directory holds a config.json and an image named \(target) exists; say which:\n  \(Self.bothForms)")
        }
        return haveConfig ? .bundle : .image
    }

    func run() throws {
        let bundleGiven = CommandLine.arguments.contains { $0 == "--bundle" || $0 == "-b" || $0.hasPrefix("--bundle=") }
        switch try form(bundleGiven: bundleGiven) {
        case .bundle: try runBundle()
        case .image: try runImage()
        }
    }

    // MARK: runc form

    func runBundle() throws {
        let bundle = RuntimeSupport.absolute(options.bundle)
        let spec = try RuntimeSupport.loadSpec(bundle: bundle)
        let code = try createStartWait(id: target, bundle: bundle, spec: spec, consoleSocket: options.consoleSocket,
                                       deleteAfter: !keep, extra: nil)
        if let code { throw ExitCode(code) }
    }

    /// create + start; unless detached, waits and returns the exit status (deleting the container afterwards).
    func createStartWait(id: String, bundle: String, spec: Spec, consoleSocket: String?, deleteAfter: Bool,
                         extra: [String: String]?, relay: ConsoleRelay? = nil, image: ImageFacts? = nil,
                         userNamespace: AutoUserNamespace? = nil) throws -> Int32? {
        let record = try RuntimeSupport.create(globals: globals, id: id, bundle: bundle, spec: spec, pidFile: options.pidFile,
                                               consoleSocket: consoleSocket, noPivot: options.noPivot,
                                               noNewKeyring: options.noNewKeyring, preserveFds: options.preserveFds,
                                               foreground: !detach, policy: policy, extra: extra,
                                               hypervisorURI: options.hypervisorURI, image: image,
                                               userNamespace: userNamespace)
        let backend = try RuntimeSupport.backend(named: record.backend, globals: globals)
        // The record create returned is the one it saved (this process wrote it; opening the directory again takes
        // its lock and fails if another verb deleted the container meanwhile), so it is not read back and decoded
        // again, neither for start nor for the delete at the end.
        var started = record
        do {
            let directory = try RuntimeSupport.store(globals).open(id: id)
            try backend.start(&started, directory: directory)
        } catch {
            try? RuntimeSupport.deleteContainer(globals, id: id, force: true)
            throw error
        }
        if detach { return nil }
        let code = relay.map { $0.relay(untilExitOf: record.pid) } ?? backend.wait(forChild: record.pid)
        if deleteAfter { try? RuntimeSupport.deleteContainer(globals, id: id, force: true, known: started) }
        return code
    }

    // MARK: image form

    func runImage() throws {
        let store = try ImageStore(dataRoot: globals.dataRoot)
        let image = try store.resolve(target)
        let id = name ?? RuntimeSupport.randomID()
        try StateStore.validate(id: id)
        if (try? RuntimeSupport.store(globals).open(id: id)) != nil {
            throw RuntimeError("container with id \(id) already exists")
        }
        let rootfs = try store.prepareRootfs(image: image, containerID: id)
        var relay: ConsoleRelay?
        do {
            let overrides = ImageRunOverrides(command: command.first == "--" ? Array(command.dropFirst()) : command,
                                              env: env, workdir: workdir, user: user, hostname: hostname,
                                              volumes: volume, tty: tty, interactive: interactive, privileged: privileged,
                                              capAdd: capAdd, capDrop: capDrop, securityOpts: securityOpt)
            let spec = try ImageSpecBuilder.build(image: image.config, overrides: overrides, rootfs: rootfs,
                                                  // A temporary: closed before create, which may remount the rootfs (--userns auto).
                                                  rootfsDirectory: try FileDescriptor.open(rootfs, O_RDONLY | O_DIRECTORY),
                                                  containerID: id)
            let bundle = try RuntimeSupport.writeImageBundle(globals, id: id, spec: spec)
            if tty {
                if detach { throw RuntimeError("run -t -d: a detached terminal needs an engine; drop -t or -d") }
                relay = try ConsoleRelay(path: globals.root + "/.tty-\(getpid()).sock", interactive: interactive)
            }
            let code = try createStartWait(id: id, bundle: bundle, spec: spec, consoleSocket: relay?.path,
                                           deleteAfter: rm, extra: ["image": target, "dataRoot": globals.dataRoot,
                                                   "imageDigest": image.manifestDigest],
                                           relay: relay, image: ImageFacts(image, reference: target),
                                           userNamespace: AutoUserNamespace(mode: try userns.map(UserNamespaceMode.init(parsing:)) ?? UserNamespaceMode(kind: .host),
                                                                            containerID: id, globals: globals))
            if detach { print(id); return }
            if !rm { print(id, to: &StandardError.shared) }
            throw ExitCode(code ?? 0)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            if (try? RuntimeSupport.store(globals).open(id: id)) == nil {
                try? store.releaseRootfs(containerID: id)
                RuntimeSupport.removeImageBundle(globals, id: id)
            }
            throw error
        }
    }
}

/// stderr as a TextOutputStream.
struct StandardError: TextOutputStream {
    nonisolated(unsafe) static var shared = StandardError()
    mutating func write(_ string: String) { _ = string.withCString { Glibc.write(2, $0, strlen($0)) } }
}
