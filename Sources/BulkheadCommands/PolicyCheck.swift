import ArgumentParser
import LinuxOS
import Policy
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead policy check FILE`: validate and lint a policy file.
struct PolicyCheck: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate and lint a policy file: every problem with file:line:column. Exit 1 on errors.").verb

    @OptionGroup var globals: GlobalOptions

    @Argument(help: ArgumentHelp("The policy file to check.", valueName: "file"))
    var file: String

    @Flag(help: "Treat warnings (shadowed rules, settings without effect) as errors.")
    var strict: Bool = false

    func run() throws {
        let bytes: [UInt8]
        do {
            let fd = try FileDescriptor.open(file, O_RDONLY)
            bytes = try fd.readAll(limit: 8 << 20, path: file)
        }
        let (policy, diagnostics) = Policy.check(bytes, source: file)
        for d in diagnostics { print(d) }
        let errors = diagnostics.filter { $0.severity == .error }.count
        let warnings = diagnostics.count - errors
        if let policy {
            print("\(file): valid policy, version \(policy.version), \(policy.rules.count) rules"
                  + (warnings > 0 ? ", \(warnings) warning\(warnings == 1 ? "" : "s")" : ""))
            if strict && warnings > 0 { throw ExitCode(1) }
        } else {
            print("\(file): not a valid policy: \(errors) error\(errors == 1 ? "" : "s")"
                  + (warnings > 0 ? ", \(warnings) warning\(warnings == 1 ? "" : "s")" : ""))
            throw ExitCode(1)
        }
    }
}
