import ArgumentParser

/// `bulkhead vm run` in the shape the microVM backend's monitor and bench/vmm.sh send it (`vm run --kernel K
/// [--initrd I] [--cmdline C] [--disk D]… [--memory N] [--vcpus N] [--console C] [--port P]… [--die-with-parent]
/// [--no-jail] [--huge-pages]`), turned into the `VMRun` value ArgumentParser would make without its first-parse
/// machinery (reflection over every argument set, run-time generic metadata: milliseconds of a VMM start whose
/// goal is 10 ms to the first guest instruction). As `RuncFastParse`: anything else — global options, help, a
/// repeated single option, a value that looks like an option, a malformed number — returns nil and ArgumentParser
/// parses the call and words any error. `FastParseTests` compare both parsers.
enum VMRunFastParse {
    static func parse(_ arguments: [String]) -> ParsableCommand? {
        guard arguments.count >= 2, arguments[0] == "vm", arguments[1] == "run" else { return nil }
        var command = VMRun()
        // Every value set, as ArgumentParser sets them (an unset property wrapper would still be a definition).
        var globals = GlobalOptions()
        globals.root = "/run/bulkhead"
        globals.dataRoot = "/var/lib/bulkhead"
        globals.log = nil
        globals.logFormat = .text
        globals.debug = false
        globals.systemdCgroup = false
        globals.rootless = nil
        command.globals = globals
        command.initrd = nil
        command.cmdline = "console=ttyS0 reboot=k panic=-1"
        command.disks = []
        command.memory = 128
        command.vcpus = 1
        command.console = "stdio"
        command.ports = []
        command.dieWithParent = false
        command.noJail = false
        command.hugePages = false
        var kernel: String?
        var seen: [String] = []
        var words = FastParseWords(arguments, from: 2)
        while !words.atEnd {
            let (word, inline) = words.current()
            guard word.hasPrefix("--") else { return nil } // no positional arguments
            let repeatable = word == "--disk" || word == "--port"
            if !repeatable && seen.contains(word) { return nil }
            seen.append(word)
            let isFlag = inline == nil
            switch word {
            case "--kernel": guard let x = words.value(inline) else { return nil }; kernel = x
            case "--initrd": guard let x = words.value(inline) else { return nil }; command.initrd = x
            case "--cmdline": guard let x = words.value(inline) else { return nil }; command.cmdline = x
            case "--disk": guard let x = words.value(inline) else { return nil }; command.disks.append(x)
            case "--memory": guard let x = words.value(inline), let n = Int(x) else { return nil }; command.memory = n
            case "--vcpus": guard let x = words.value(inline), let n = Int(x) else { return nil }; command.vcpus = n
            case "--console": guard let x = words.value(inline) else { return nil }; command.console = x
            case "--port": guard let x = words.value(inline) else { return nil }; command.ports.append(x)
            case "--die-with-parent": guard isFlag else { return nil }; command.dieWithParent = true
            case "--no-jail": guard isFlag else { return nil }; command.noJail = true
            case "--huge-pages": guard isFlag else { return nil }; command.hugePages = true
            default: return nil
            }
            words.index += 1
        }
        guard let kernel else { return nil }
        command.kernel = kernel
        return command
    }
}

/// The word walk both fast parsers share: `--name=value` is split at the first "=", and an option's value is the
/// inline one or else the next word, unless that word looks like an option (then there is none: the caller gives
/// the call to ArgumentParser).
struct FastParseWords {
    let arguments: [String]
    var index: Int

    init(_ arguments: [String], from index: Int = 0) {
        self.arguments = arguments
        self.index = index
    }

    var atEnd: Bool { index >= arguments.count }

    /// The current word, a long option's inline value split off.
    func current() -> (word: String, inline: String?) {
        let word = arguments[index]
        if word.hasPrefix("--"), let eq = word.firstIndex(of: "=") {
            return (String(word[..<eq]), String(word[word.index(after: eq)...]))
        }
        return (word, nil)
    }

    /// The value of the option at the current word (moving past the next word when that is the value).
    mutating func value(_ inline: String?) -> String? {
        if let inline { return inline }
        guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("-") else { return nil }
        index += 1
        return arguments[index]
    }
}
