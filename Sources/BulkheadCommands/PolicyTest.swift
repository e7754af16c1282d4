import ArgumentParser
import Policy

/// `bulkhead policy test POLICY CASES`: run a table of expected decisions against a policy (CI for policies).
struct PolicyTest: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run a case table (deployments and the decisions they must get) against a policy. Exit 1 on any mismatch.").verb

    @OptionGroup var globals: GlobalOptions

    @Argument(help: ArgumentHelp("The policy file.", valueName: "policy"))
    var policyFile: String

    @Argument(help: ArgumentHelp("The case table (YAML; see policies/README.md).", valueName: "cases"))
    var casesFile: String

    func run() throws {
        let policy = try Policy.load(path: policyFile)
        for w in policy.warnings { print(w) }
        let table = try CaseTable.load(path: casesFile)
        let results = table.run(against: policy)
        print(CaseTable.report(results, policy: policyFile), terminator: "")
        if results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}
