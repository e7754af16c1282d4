import FoundationEssentials

/// `linux.resources` of the OCI runtime spec, typed for the cgroup appliers. Decoded from the raw JSON a
/// ``ResourceRequest`` carries (this target does not depend on the spec types). Numbers are read leniently: a
/// value written as a float (the spec's pass-through keeps numbers as doubles) is accepted when it is integral,
/// and a value at or beyond the type's range is clamped to it (2^63-1 means "no limit" to the kernel anyway).
public struct LinuxResources: Codable, Sendable, Equatable {
    public var devices: [DeviceRule]?
    public var memory: Memory?
    public var cpu: CPU?
    public var pids: Pids?
    public var blockIO: BlockIO?
    public var hugepageLimits: [HugepageLimit]?
    public var network: Network?
    public var rdma: [String: Rdma]?
    public var unified: [String: String]?

    public init() {}

    public struct DeviceRule: Codable, Sendable, Equatable {
        public var allow: Bool
        /// `a` (all), `c` (char) or `b` (block); absent means `a`.
        public var type: String?
        public var major: Int64?
        public var minor: Int64?
        /// Some of `r`, `w`, `m`; absent means `rwm`.
        public var access: String?
        public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
            self.allow = allow; self.type = type; self.major = major; self.minor = minor; self.access = access
        }
        enum CodingKeys: String, CodingKey { case allow, type, major, minor, access }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            allow = try c.decodeIfPresent(Bool.self, forKey: .allow) ?? false
            type = try c.decodeIfPresent(String.self, forKey: .type)
            major = try c.lenient(.major); minor = try c.lenient(.minor)
            access = try c.decodeIfPresent(String.self, forKey: .access)
        }
    }

    public struct Memory: Codable, Sendable, Equatable {
        public var limit: Int64?
        public var reservation: Int64?
        public var swap: Int64?
        public var kernel: Int64?
        public var kernelTCP: Int64?
        public var swappiness: UInt64?
        public var disableOOMKiller: Bool?
        public var useHierarchy: Bool?
        public var checkBeforeUpdate: Bool?
        public init(limit: Int64? = nil, reservation: Int64? = nil, swap: Int64? = nil) {
            self.limit = limit; self.reservation = reservation; self.swap = swap
        }
        enum CodingKeys: String, CodingKey {
            case limit, reservation, swap, kernel, kernelTCP, swappiness, disableOOMKiller, useHierarchy, checkBeforeUpdate
        }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            limit = try c.lenient(.limit); reservation = try c.lenient(.reservation); swap = try c.lenient(.swap)
            kernel = try c.lenient(.kernel); kernelTCP = try c.lenient(.kernelTCP)
            // swappiness -1 (as some engines write it) means "not set".
            let s: Int64? = try c.lenient(.swappiness)
            swappiness = s.flatMap { $0 < 0 ? nil : UInt64($0) }
            disableOOMKiller = try c.decodeIfPresent(Bool.self, forKey: .disableOOMKiller)
            useHierarchy = try c.decodeIfPresent(Bool.self, forKey: .useHierarchy)
            checkBeforeUpdate = try c.decodeIfPresent(Bool.self, forKey: .checkBeforeUpdate)
        }
    }

    public struct CPU: Codable, Sendable, Equatable {
        public var shares: UInt64?
        public var quota: Int64?
        public var burst: UInt64?
        public var period: UInt64?
        public var realtimeRuntime: Int64?
        public var realtimePeriod: UInt64?
        public var cpus: String?
        public var mems: String?
        public var idle: Int64?
        public init(shares: UInt64? = nil, quota: Int64? = nil, period: UInt64? = nil, cpus: String? = nil, mems: String? = nil) {
            self.shares = shares; self.quota = quota; self.period = period; self.cpus = cpus; self.mems = mems
        }
        enum CodingKeys: String, CodingKey { case shares, quota, burst, period, realtimeRuntime, realtimePeriod, cpus, mems, idle }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            shares = try c.lenient(.shares); quota = try c.lenient(.quota); burst = try c.lenient(.burst)
            period = try c.lenient(.period); realtimeRuntime = try c.lenient(.realtimeRuntime)
            realtimePeriod = try c.lenient(.realtimePeriod); idle = try c.lenient(.idle)
            cpus = try c.decodeIfPresent(String.self, forKey: .cpus)
            mems = try c.decodeIfPresent(String.self, forKey: .mems)
        }
    }

    public struct Pids: Codable, Sendable, Equatable {
        /// Negative: no limit; 0: not set.
        public var limit: Int64
        public init(limit: Int64) { self.limit = limit }
        enum CodingKeys: String, CodingKey { case limit }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            limit = try c.lenient(.limit) ?? 0
        }
    }

    public struct BlockIO: Codable, Sendable, Equatable {
        public var weight: UInt16?
        public var leafWeight: UInt16?
        public var weightDevice: [WeightDevice]?
        public var throttleReadBpsDevice: [ThrottleDevice]?
        public var throttleWriteBpsDevice: [ThrottleDevice]?
        public var throttleReadIOPSDevice: [ThrottleDevice]?
        public var throttleWriteIOPSDevice: [ThrottleDevice]?
        public init(weight: UInt16? = nil) { self.weight = weight }
        enum CodingKeys: String, CodingKey {
            case weight, leafWeight, weightDevice, throttleReadBpsDevice, throttleWriteBpsDevice, throttleReadIOPSDevice, throttleWriteIOPSDevice
        }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            weight = try c.lenient(.weight); leafWeight = try c.lenient(.leafWeight)
            weightDevice = try c.decodeIfPresent([WeightDevice].self, forKey: .weightDevice)
            throttleReadBpsDevice = try c.decodeIfPresent([ThrottleDevice].self, forKey: .throttleReadBpsDevice)
            throttleWriteBpsDevice = try c.decodeIfPresent([ThrottleDevice].self, forKey: .throttleWriteBpsDevice)
            throttleReadIOPSDevice = try c.decodeIfPresent([ThrottleDevice].self, forKey: .throttleReadIOPSDevice)
            throttleWriteIOPSDevice = try c.decodeIfPresent([ThrottleDevice].self, forKey: .throttleWriteIOPSDevice)
        }
    }

    public struct WeightDevice: Codable, Sendable, Equatable {
        public var major: Int64
        public var minor: Int64
        public var weight: UInt16?
        public var leafWeight: UInt16?
        enum CodingKeys: String, CodingKey { case major, minor, weight, leafWeight }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            major = try c.lenient(.major) ?? 0; minor = try c.lenient(.minor) ?? 0
            weight = try c.lenient(.weight); leafWeight = try c.lenient(.leafWeight)
        }
    }

    public struct ThrottleDevice: Codable, Sendable, Equatable {
        public var major: Int64
        public var minor: Int64
        public var rate: UInt64
        public init(major: Int64, minor: Int64, rate: UInt64) { self.major = major; self.minor = minor; self.rate = rate }
        enum CodingKeys: String, CodingKey { case major, minor, rate }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            major = try c.lenient(.major) ?? 0; minor = try c.lenient(.minor) ?? 0; rate = try c.lenient(.rate) ?? 0
        }
    }

    public struct HugepageLimit: Codable, Sendable, Equatable {
        public var pageSize: String
        public var limit: UInt64
        enum CodingKeys: String, CodingKey { case pageSize, limit }
        public init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            pageSize = try c.decode(String.self, forKey: .pageSize); limit = try c.lenient(.limit) ?? 0
        }
    }

    public struct Network: Codable, Sendable, Equatable {
        public var classID: UInt32?
        public var priorities: [Priority]?
        public struct Priority: Codable, Sendable, Equatable {
            public var name: String
            public var priority: UInt32
        }
    }

    public struct Rdma: Codable, Sendable, Equatable {
        public var hcaHandles: UInt32?
        public var hcaObjects: UInt32?
    }

    /// Decodes `linux.resources` JSON; a malformed section is an error naming its JSON path.
    public static func decode(_ json: [UInt8]) throws -> LinuxResources {
        if json.isEmpty { return LinuxResources() }
        do {
            return try JSONDecoder().decode(LinuxResources.self, from: Data(json))
        } catch let error as DecodingError {
            throw CgroupError("linux.resources: \(describe(error))")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
        }
        switch error {
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
            return "\(path(ctx.codingPath).drop { $0 == "." }): \(ctx.debugDescription)"
        case .keyNotFound(let key, let ctx):
            return "\(path(ctx.codingPath + [key]).drop { $0 == "." }): required field is missing"
        @unknown default:
            return "\(error)"
        }
    }
}

extension KeyedDecodingContainer {
    /// An integer that may arrive written as a float (e.g. `1e+08`); out-of-range values are clamped.
    func lenient<T: FixedWidthInteger & Decodable>(_ key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let v = try? decode(T.self, forKey: key) { return v }
        let d: Double
        do { d = try decode(Double.self, forKey: key) } catch {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath + [key], debugDescription: "expected an integer"))
        }
        guard d.rounded() == d else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "\(d) is not an integer"))
        }
        if d >= Double(T.max) { return T.max }
        if d <= Double(T.min) { return T.min }
        return T(d)
    }
}
