import ArgumentParser
import PolicyGate

/// The runc verbs in the shapes container engines send them (`[GLOBALS] create --bundle B --pid-file F
/// [--console-socket S] ID`, `start ID`, `state ID`, `kill [--all] ID [SIGNAL]`, `delete [--force] ID`, and the runc
/// form of `run`), turned into the same command values ArgumentParser would make, without its machinery: the
/// first parse in a process builds every argument set through reflection and resolves its generic metadata and
/// protocol conformances at run time, about 6 ms of CPU per invocation, a third of a whole `run`.
///
/// It only fills in values (the property wrappers' setters); ArgumentParser still defines every verb and parses
/// everything else. Any word it does not know, a repeated option, a value that looks like an option, `--`, help,
/// version, the image form of `run` or a policy option: it returns nil, and ArgumentParser parses the call and
/// words any error. `FastParseTests` check that both parsers make the same values for the shapes it takes.
enum RuncFastParse {
    static let verbs: [String] = ["create", "start", "state", "kill", "delete", "run"]

    static func parse(_ arguments: [String]) -> ParsableCommand? {
        // The defaults are those the option declarations give (the tests compare the two parsers).
        var root = "/run/bulkhead", dataRoot = "/var/lib/bulkhead", log: String?, logFormat = LogFormat.text
        var debug = false, systemdCgroup = false, rootless: String?
        var bundle = ".", consoleSocket: String?, pidFile: String?, noPivot = false, noNewKeyring = false, preserveFds = 0
        var detach = false, keep = false, noSubreaper = false, force = false, all = false
        var verb: String?
        var positionals: [String] = []
        var seen: [String] = []

        var words = FastParseWords(arguments)
        while !words.atEnd {
            let (word, inline) = words.current()
            guard word.hasPrefix("-") else {
                if verb == nil {
                    guard verbs.contains(word) else { return nil }
                    verb = word
                } else {
                    positionals.append(word)
                }
                words.index += 1
                continue
            }
            // Options: known to this parser, given once.
            if seen.contains(word) { return nil }
            seen.append(word)
            func value() -> String? { words.value(inline) }
            func flag() -> Bool { inline == nil }
            let v = verb ?? ""
            let creates = v == "create" || v == "run"
            switch word {
            case "--root": guard let x = value() else { return nil }; root = x
            case "--data-root": guard let x = value() else { return nil }; dataRoot = x
            case "--log": guard let x = value() else { return nil }; log = x
            case "--log-format": guard let x = value(), let f = LogFormat(rawValue: x) else { return nil }; logFormat = f
            case "--rootless": guard let x = value() else { return nil }; rootless = x
            case "--debug": guard flag() else { return nil }; debug = true
            case "--systemd-cgroup": guard flag() else { return nil }; systemdCgroup = true
            case "--bundle" where creates, "-b" where creates: guard let x = value() else { return nil }; bundle = x
            case "--console-socket" where creates: guard let x = value() else { return nil }; consoleSocket = x
            case "--pid-file" where creates: guard let x = value() else { return nil }; pidFile = x
            case "--preserve-fds" where creates: guard let x = value(), let n = Int(x) else { return nil }; preserveFds = n
            case "--no-pivot" where creates: guard flag() else { return nil }; noPivot = true
            case "--no-new-keyring" where creates: guard flag() else { return nil }; noNewKeyring = true
            case "--detach" where v == "run", "-d" where v == "run": guard flag() else { return nil }; detach = true
            case "--keep" where v == "run": guard flag() else { return nil }; keep = true
            case "--no-subreaper" where v == "run": guard flag() else { return nil }; noSubreaper = true
            case "--force" where v == "delete", "-f" where v == "delete": guard flag() else { return nil }; force = true
            case "--all" where v == "kill", "-a" where v == "kill": guard flag() else { return nil }; all = true
            default: return nil
            }
            words.index += 1
        }
        // `-b`/`-d`/`-f`/`-a` and their long forms are one option each.
        for (long, short) in [("--bundle", "-b"), ("--detach", "-d"), ("--force", "-f"), ("--all", "-a")]
        where seen.contains(long) && seen.contains(short) {
            return nil
        }
        guard let verb else { return nil }

        var globals = GlobalOptions()
        globals.root = root
        globals.dataRoot = dataRoot
        globals.log = log
        globals.logFormat = logFormat
        globals.debug = debug
        globals.systemdCgroup = systemdCgroup
        globals.rootless = rootless

        switch verb {
        case "create", "run":
            guard positionals.count == 1 else { return nil }
            var options = BundleCreateOptions()
            options.bundle = bundle
            options.consoleSocket = consoleSocket
            options.pidFile = pidFile
            options.noPivot = noPivot
            options.noNewKeyring = noNewKeyring
            options.preserveFds = preserveFds
            options.hypervisorURI = nil
            var policy = PolicyOptions()
            policy.policy = nil
            policy.tenant = nil
            policy.isolation = nil
            policy.auditLog = PolicyGate.defaultAuditPath
            if verb == "create" {
                var c = Create()
                c.globals = globals
                c.options = options
                c.policy = policy
                c.id = positionals[0]
                return c
            }
            var r = Run()
            r.globals = globals
            r.options = options
            r.policy = policy
            r.detach = detach
            r.keep = keep
            r.noSubreaper = noSubreaper
            r.name = nil
            r.rm = false
            r.interactive = false
            r.tty = false
            r.env = []
            r.workdir = nil
            r.user = nil
            r.hostname = nil
            r.volume = []
            r.privileged = false
            r.capAdd = []
            r.capDrop = []
            r.securityOpt = []
            r.userns = nil
            r.target = positionals[0]
            r.command = []
            return r
        case "start":
            guard positionals.count == 1 else { return nil }
            var c = Start()
            c.globals = globals
            c.id = positionals[0]
            return c
        case "state":
            guard positionals.count == 1 else { return nil }
            var c = State()
            c.globals = globals
            c.id = positionals[0]
            return c
        case "delete":
            guard positionals.count == 1 else { return nil }
            var c = Delete()
            c.globals = globals
            c.force = force
            c.id = positionals[0]
            return c
        case "kill":
            guard positionals.count == 1 || positionals.count == 2 else { return nil }
            var c = Kill()
            c.globals = globals
            c.all = all
            c.id = positionals[0]
            c.signal = positionals.count == 2 ? positionals[1] : "SIGTERM"
            return c
        default:
            return nil
        }
    }
}
