import ArgumentParser

/// `bulkhead policy …`: the trust-boundary policy's tools (check, explain, test).
struct PolicyCommand: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check, explain and test the trust-boundary policy that picks each deployment's isolation tier.",
        discussion: """
            The policy is read from --policy FILE, else /etc/bulkhead/policy.yaml, else the built-in policy \
            (root's images without a tenant run as containers, tenants get microVMs, privileged tenants are denied). \
            See policies/README.md for the format.
            """,
        subcommands: [PolicyCheck.self, PolicyExplain.self, PolicyTest.self]
    ).verb

    @OptionGroup var globals: GlobalOptions
}
