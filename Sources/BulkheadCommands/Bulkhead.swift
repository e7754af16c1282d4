import ArgumentParser
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The version printed by `bulkhead --version`; the build script may stamp a git revision.
public let bulkheadVersion = "0.1.0"

/// The root of the command tree. Subcommands are added by the files beside this one, one per verb.
public struct Bulkhead: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "bulkhead",
        abstract: "A container runtime with two isolation tiers: shared-kernel namespaces or a KVM microVM.",
        discussion: """
            One OCI image and one OCI runtime spec run unchanged in either tier; the host owner's trust-boundary \
            policy decides, per deployment, which tier a workload gets. Bulkhead speaks runc's command-line \
            contract, so containerd, CRI-O and podman can drive it.

            Global options (--root, --data-root, --log, --log-format, --debug) may come before or after the verb.
            """,
        version: "bulkhead version \(bulkheadVersion)\nspec: 1.2.0",
        subcommands: BulkheadCommandRegistry.subcommands
    )

    @OptionGroup public var globals: GlobalOptions
}

/// The verbs, in the order `bulkhead help` lists them.
public enum BulkheadCommandRegistry {
    public static let subcommands: [ParsableCommand.Type] = [
        Create.self,
        Start.self,
        Run.self,
        State.self,
        Kill.self,
        Delete.self,
        Exec.self,
        Ps.self,
        List.self,
        Pause.self,
        Resume.self,
        Events.self,
        Update.self,
        SpecCommand.self,
        Features.self,
        Info.self,
        ImageCommand.self,
        PolicyCommand.self,
        InitPlaceholder.self,

        VMCommand.self,
    ]
}

/// Runs the CLI: parses, configures logging from the global options, runs the verb, and turns a failure
/// into an error line on stderr (and a JSON line in the `--log` file) with exit status 1.
public enum BulkheadMain {
    public static func main(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        var command: ParsableCommand
        do {
            command = try RuncFastParse.parse(arguments) ?? VMRunFastParse.parse(arguments) ?? fastParse(arguments) ?? Bulkhead.parseAsRoot(arguments)
        } catch {
            // --help and --version: ArgumentParser prints them and exits 0. A usage error is an error like any
            // other (exit status 1, as runc), logged to the --log file too.
            if Bulkhead.exitCode(for: error) == .success { Bulkhead.exit(withError: error) }
            LogSink.configure((try? GlobalOptions.parse(GlobalOptionsScanner.extract(arguments))) ?? GlobalOptions())
            Logger(label: "bulkhead").error("\(Bulkhead.fullMessage(for: error))")
            exit(1)
        }
        LogSink.configure(globalOptions(of: command, arguments: arguments))
        do {
            try command.run()
            exit(0)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch let error as CleanExit {
            Bulkhead.exit(withError: error)
        } catch {
            // `bulkhead --help` and `bulkhead help VERB` parse to ArgumentParser's help command, whose run() throws
            // the help request: print it and exit 0 like any --help.
            if Bulkhead.exitCode(for: error) == .success { Bulkhead.exit(withError: error) }
            Logger(label: "bulkhead").error("\(error)")
            exit(1)
        }
    }

    /// Parses a plain verb call (`[GLOBALS] VERB ARGS`, what engines send) with that verb's own parser instead
    /// of the whole command tree, which builds every verb's argument set first: it halves the CLI's start-up
    /// cost of every runc verb. Returns nil, so that the full parser runs and words any error, for help and
    /// version requests and anything that does not parse this way.
    static func fastParse(_ arguments: [String]) -> ParsableCommand? {
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if GlobalOptionsScanner.valued.contains(a) { i += 2; continue }
            if a == "--debug" || a == "--systemd-cgroup" { i += 1; continue }
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "="), GlobalOptionsScanner.valued.contains(String(a[..<eq])) { i += 1; continue }
            break
        }
        guard i < arguments.count, !arguments[i].hasPrefix("-") else { return nil }
        var rest = Array(arguments[..<i]) + arguments[(i + 1)...]
        if rest.contains(where: { $0 == "--help" || $0 == "-h" || $0 == "--version" || $0.hasPrefix("--generate-completion-script") }) {
            return nil
        }
        let verb = arguments[i]
        guard var type = BulkheadCommandRegistry.subcommands.first(where: { $0.configuration.commandName == verb }) else { return nil }
        // A verb group (`vm run`, `image import`): its verb follows at once.
        if !type.configuration.subcommands.isEmpty {
            guard i < rest.count, let sub = type.configuration.subcommands.first(where: { $0.configuration.commandName == rest[i] }),
                  sub.configuration.subcommands.isEmpty else { return nil }
            type = sub
            rest.remove(at: i)
        }
        return try? type.parseAsRoot(rest)
    }

    /// The global options as given, wherever on the command line they stood.
    static func globalOptions(of command: ParsableCommand, arguments: [String]) -> GlobalOptions {
        // The verbs engines call on every container start, by their concrete types first: a cast to a concrete type
        // compares metadata, while the first cast to a protocol makes the runtime scan all of the static binary's
        // conformance records (perf: about 1% of a `run`'s CPU).
        switch command {
        case let c as Run: return c.globals
        case let c as Create: return c.globals
        case let c as Start: return c.globals
        case let c as Delete: return c.globals
        case let c as State: return c.globals
        case let c as Kill: return c.globals
        default: break
        }
        if let carrier = command as? GlobalOptionsCarrier { return carrier.globals }
        return (try? GlobalOptions.parse(GlobalOptionsScanner.extract(arguments))) ?? GlobalOptions()
    }
}

extension CommandConfiguration {
    /// This configuration as a verb of `bulkhead` (`_superCommandName`). Besides naming the tool in a usage line
    /// when the verb is parsed on its own (``BulkheadMain/fastParse(_:)``), it spares that parse ArgumentParser's
    /// probe for `--generate-completion-script`, which parses the whole command line twice more and took over a
    /// third of the CLI's parsing time; fastParse leaves that flag to the full command tree.
    var verb: CommandConfiguration {
        var configuration = self
        configuration._superCommandName = "bulkhead"
        return configuration
    }
}

/// A verb that declares `@OptionGroup var globals: GlobalOptions`.
public protocol GlobalOptionsCarrier {
    var globals: GlobalOptions { get }
}

extension Bulkhead: GlobalOptionsCarrier {}

/// Picks the global options out of an argument list (used when a verb does not carry them itself).
enum GlobalOptionsScanner {
    static let valued: [String] = ["--root", "--data-root", "--log", "--log-format", "--rootless"]
    static func extract(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { break }
            if a == "--debug" || a == "--systemd-cgroup" { out.append(a) }
            else if valued.contains(a), i + 1 < arguments.count { out += [a, arguments[i + 1]]; i += 1 }
            else if let eq = a.firstIndex(of: "="), valued.contains(String(a[..<eq])) { out.append(a) }
            i += 1
        }
        return out
    }
}
