import ArgumentParser
import Runtime

/// `bulkhead delete`: releases a stopped (or, with --force, any) container.
struct Delete: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a container and everything it holds.").verb
    @OptionGroup var globals: GlobalOptions
    @Flag(name: [.short, .customLong("force")], help: "Kill the container first if it is running.") var force = false
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let directory: ContainerDirectory
        do { directory = try RuntimeSupport.store(globals).open(id: id) } catch let e as RuntimeError {
            // runc: deleting a missing container with --force is not an error.
            if force && e.message.hasSuffix("does not exist") { return }
            throw e
        }
        let record: ContainerRecord
        do { record = try directory.load() } catch {
            if force { try directory.remove(); return }
            throw error
        }
        let backend = try RuntimeSupport.backend(named: record.backend, globals: globals)
        try backend.delete(record, directory: directory, force: force)
        try RuntimeSupport.releaseImageResources(record)
        try AutoUserNamespace.release(globals: globals, id: id)
        try directory.remove()
    }
}
