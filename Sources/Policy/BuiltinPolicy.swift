extension Policy {
    /// The policy in force when the host has no policy file. The same text is `policies/default.yaml`
    /// (a test keeps them equal).
    public static let builtInText = """
        # Bulkhead's built-in policy: what runs when /etc/bulkhead/policy.yaml does not exist.
        # The host's own images run as containers; anything from a tenant runs in a microVM, and a tenant
        # never gets privileges that reach the host.
        version: 1
        description: Built-in default. Root's images without a tenant run as containers; tenants get microVMs.

        rules:
          - name: tenant-privileged
            description: Tenants never get escape capabilities or every device.
            match:
              has_tenant: true
              privileged: true
            decide: deny
            reason: privileged containers are not offered to tenants

          - name: tenant-host-namespaces
            match:
              has_tenant: true
              host_namespaces: [pid, network, ipc, uts]
            decide: deny
            reason: tenants may not share the host's pid, network, ipc or uts namespace

          - name: tenant-devices
            match:
              has_tenant: true
              devices: true
            decide: deny
            reason: host devices are not passed to tenants

          - name: tenant-host-mounts
            match:
              has_tenant: true
              host_mounts: ["/", "/proc", "/proc/**", "/sys", "/sys/**", "/dev", "/dev/**", "/etc", "/etc/**",
                            "/root", "/root/**", "/home", "/home/**", "/boot", "/boot/**", "/usr", "/usr/**",
                            "/run/**.sock", "/var/run/**.sock"]
            decide: deny
            reason: tenants may not bind-mount host system paths

          - name: tenants-in-microvms
            match:
              has_tenant: true
            decide: microvm

          - name: root-images-as-containers
            description: Images the host's root imported, run without a tenant.
            match:
              has_tenant: false
              imported_by: root
            decide: namespace

          - name: default
            description: Anything else (unknown origin) gets the strongest tier that runs.
            decide: microvm
        """

    /// The built-in policy, parsed (it is valid: a test checks it).
    public static var builtIn: Policy {
        // swiftlint:disable:next force_try
        try! Policy.parse(builtInText, source: "built-in")
    }
}
