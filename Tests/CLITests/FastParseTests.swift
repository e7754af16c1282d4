import ArgumentParser
@testable import BulkheadCommands
import Testing

/// `RuncFastParse` (the runc verbs in the shapes engines send, parsed without ArgumentParser's machinery) must
/// make exactly the command values ArgumentParser makes, and must leave every other call to ArgumentParser.
@Suite struct FastParseTests {
    /// Every stored value of a command, property wrappers' states included (an option the fast path forgot to
    /// fill in would show as a definition instead of a value).
    static func render(_ command: ParsableCommand) -> String {
        var text = ""
        dump(command, to: &text)
        return text
    }

    static let taken: [[String]] = [
        ["create", "--bundle", "/b", "c1"],
        ["--root", "/r", "--log", "/l.json", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p",
         "--console-socket", "/s.sock", "c1"],
        ["--root=/r", "--systemd-cgroup", "--debug", "create", "-b", "/b", "--no-pivot", "--no-new-keyring",
         "--preserve-fds", "2", "c1"],
        ["create", "c1", "--root", "/r", "--bundle=/b"],
        ["--rootless", "false", "--data-root", "/d", "start", "c1"],
        ["--root", "/r", "state", "c1"],
        ["--root", "/r", "kill", "c1"],
        ["--root", "/r", "kill", "--all", "c1", "9"],
        ["kill", "-a", "c1", "SIGKILL"],
        ["--root", "/r", "delete", "c1"],
        ["delete", "--force", "c1"],
        ["delete", "-f", "c1", "--log-format=text"],
        ["--root", "/r", "run", "--bundle", "/b", "c1"],
        ["run", "-b", "/b", "-d", "--pid-file", "/p", "c1"],
        ["run", "--bundle", "/b", "--keep", "--no-subreaper", "--detach", "c1"],
    ]

    @Test(arguments: taken) func sameValuesAsArgumentParser(_ arguments: [String]) throws {
        let fast = try #require(RuncFastParse.parse(arguments), "the fast path should take \(arguments)")
        let full = try Bulkhead.parseAsRoot(arguments)
        #expect(ObjectIdentifier(type(of: fast)) == ObjectIdentifier(type(of: full)))
        #expect(Self.render(fast) == Self.render(full))
    }

    static let refused: [[String]] = [
        [], ["--help"], ["create", "--help"], ["create", "-h", "c1"], ["--version"],
        ["create"], ["create", "--bundle"], ["create", "--bundle", "--pid-file", "c1"], ["create", "a", "b"],
        ["create", "--bundle", "/a", "--bundle", "/b", "c1"], ["create", "-b", "/a", "--bundle", "/b", "c1"],
        ["--log-format", "yaml", "state", "c1"], ["create", "--policy", "/p", "c1"], ["create", "--tenant", "t", "c1"],
        ["start", "--bundle", "/b", "c1"], ["state", "--force", "c1"], ["kill", "c1", "9", "extra"],
        ["delete", "--all", "c1"], ["run", "--name", "x", "busybox"], ["run", "-it", "busybox"],
        ["run", "busybox", "sh"], ["run", "--rm", "busybox"], ["exec", "c1", "true"], ["list"], ["spec"],
        ["create", "--", "c1"], ["--debug=yes", "state", "c1"], ["create", "--bundle", "/b", "--bogus", "c1"],
        ["--bundle", "/b", "create", "c1"], ["create", "--preserve-fds", "two", "c1"],
    ]

    @Test(arguments: refused) func leftToArgumentParser(_ arguments: [String]) {
        #expect(RuncFastParse.parse(arguments) == nil)
    }

    /// `vm run` as the microVM backend's monitor and bench/vmm.sh send it.
    static let vmTaken: [[String]] = [
        ["vm", "run", "--kernel", "/k"],
        ["vm", "run", "--kernel", "/vmlinux", "--initrd", "/i.cpio", "--cmdline", "console=ttyS0 reboot=k panic=-1 quiet",
         "--disk", "/r.erofs:ro", "--memory", "256", "--vcpus", "2", "--console", "/s/console.log",
         "--port", "bulkhead.control=/s/ctl.sock", "--port", "bulkhead.stdio=/s/io.sock", "--die-with-parent"],
        ["vm", "run", "--no-jail", "--kernel=/k", "--memory=64", "--huge-pages", "--disk", "/a", "--disk", "/b:rw"],
    ]

    @Test(arguments: vmTaken) func vmRunSameValuesAsArgumentParser(_ arguments: [String]) throws {
        let fast = try #require(VMRunFastParse.parse(arguments), "the fast path should take \(arguments)")
        let full = try Bulkhead.parseAsRoot(arguments)
        #expect(ObjectIdentifier(type(of: fast)) == ObjectIdentifier(type(of: full)))
        #expect(Self.render(fast) == Self.render(full))
    }

    static let vmRefused: [[String]] = [
        ["vm"], ["vm", "run"], ["vm", "run", "--help"], ["--debug", "vm", "run", "--kernel", "/k"],
        ["vm", "run", "--kernel", "/k", "--kernel", "/j"], ["vm", "run", "--kernel", "/k", "--memory", "lots"],
        ["vm", "run", "--kernel", "--initrd", "/i"], ["vm", "run", "--kernel", "/k", "extra"],
        ["vm", "run", "--kernel", "/k", "--no-jail=yes"], ["vm", "run", "--kernel", "/k", "--bogus"],
        ["vm", "run", "-h"], ["run", "--kernel", "/k"],
    ]

    @Test(arguments: vmRefused) func vmRunLeftToArgumentParser(_ arguments: [String]) {
        #expect(VMRunFastParse.parse(arguments) == nil)
    }
}
