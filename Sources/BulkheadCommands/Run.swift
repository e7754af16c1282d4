import ArgumentParser
import LinuxOS
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead run`: create + start, then (unless --detach) wait and exit with the container's status.
struct Run: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        abstract: "Create and start a container from a bundle, and wait for it.")

    @OptionGroup var globals: GlobalOptions
    @OptionGroup var options: BundleCreateOptions
    @Flag(name: [.short, .customLong("detach")], help: "Do not wait for the container.") var detach = false
    @Flag(name: .customLong("keep"), help: "Do not delete the container after it exits.") var keep = false
    @Flag(name: .customLong("no-subreaper"), help: "Accepted for runc compatibility.") var noSubreaper = false
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let bundle = RuntimeSupport.absolute(options.bundle)
        let spec = try RuntimeSupport.loadSpec(bundle: bundle)
        let record = try RuntimeSupport.create(globals: globals, id: id, bundle: bundle, spec: spec, pidFile: options.pidFile,
                                               consoleSocket: options.consoleSocket, noPivot: options.noPivot,
                                               noNewKeyring: options.noNewKeyring, preserveFds: options.preserveFds,
                                               foreground: !detach, isolation: options.isolation,
                                               hypervisorURI: options.hypervisorURI)
        let backend = try RuntimeSupport.backend(named: record.backend, globals: globals)
        do {
            let directory = try RuntimeSupport.store(globals).open(id: id)
            var r = try directory.load()
            try backend.start(&r, directory: directory)
        } catch {
            if let directory = try? RuntimeSupport.store(globals).open(id: id), let r = try? directory.load() {
                try? backend.delete(r, directory: directory, force: true)
                try? directory.remove()
            }
            throw error
        }
        if detach { return }
        let code = backend.wait(forChild: record.pid)
        if !keep, let directory = try? RuntimeSupport.store(globals).open(id: id), let r = try? directory.load() {
            try? backend.delete(r, directory: directory, force: true)
            try? directory.remove()
        }
        throw ExitCode(code)
    }
}
