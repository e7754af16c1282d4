import Testing
@testable import GuestProtocol

/// One of every message, with awkward values where they matter.
let samples: [Message] = [
    .hello(minVersion: 1, maxVersion: 1, software: "bulkhead-agent 0.1 (Linux 6.1.0-bulkhead)"),
    .create(containerID: "c1", spec: Array(#"{"ociVersion":"1.0.2","process":{"args":["sh"]}}"#.utf8)),
    .created(containerID: "c1"),
    .start,
    .exec(process: 7, spec: Array(#"{"args":["uname","-r"],"cwd":"/"}"#.utf8)),
    .started(process: 0, pid: 42),
    .stdin(process: 0, data: Array(0...255)),
    .stdin(process: 3, data: []),
    .closeStdin(process: 0),
    .output(process: 0, stream: .stdout, data: Array("héllo\n".utf8)),
    .output(process: .max - 1, stream: .stderr, data: []),
    .signal(process: 0, signal: 15),
    .windowSize(process: 2, rows: 50, columns: 65535),
    .exited(process: 0, status: .exited(3)),
    .exited(process: 1, status: .exited(-1)),
    .exited(process: 1, status: .signaled(9)),
    .error(process: Message.noProcess, message: "no such process 9"),
    .shutdown,
    .listProcesses,
    .processList([]),
    .processList([GuestProcessInfo(pid: 1, ppid: 0, uid: 0, state: "S", rssKiB: 1 << 40, command: "sh -c 'sleep 1'"),
                  GuestProcessInfo(pid: 7, ppid: 1, uid: 65534, state: "Z", rssKiB: 0, command: "[sleep]")]),
    .statsRequest,
    .stats(GuestStats(cpuUsageNanoseconds: .max, memoryUsageBytes: 123 << 20, memoryLimitBytes: 0, pidsCurrent: 3, pidsLimit: 64)),
]

@Suite struct RoundTrip {
    @Test func everyMessageRoundTrips() throws {
        let encoder = FrameEncoder()
        for message in samples {
            var decoder = FrameDecoder()
            decoder.append(try encoder.encode(message))
            #expect(try decoder.next() == message)
            #expect(try decoder.next() == nil)
            #expect(decoder.pendingByteCount == 0)
        }
    }

    @Test func everyTypeIsCovered() {
        #expect(Set(samples.map(\.type)) == Set(MessageType.allCases))
    }

    @Test func byteAtATimeDecodingYieldsTheSameMessages() throws {
        let encoder = FrameEncoder()
        let stream = try samples.flatMap { try encoder.encode($0) }
        var decoder = FrameDecoder()
        var got: [Message] = []
        for byte in stream {
            decoder.append([byte])
            while let m = try decoder.next() { got.append(m) }
        }
        #expect(got == samples)
    }

    @Test func manyFramesInOneChunk() throws {
        let encoder = FrameEncoder()
        var stream: [UInt8] = []
        for i in 0..<2000 { stream += try encoder.encode(.output(process: UInt32(i), stream: .stdout, data: Array(repeating: 0x61, count: 100))) }
        var decoder = FrameDecoder()
        decoder.append(stream)
        let got = try decoder.drain()
        #expect(got.count == 2000)
        #expect(got.last == .output(process: 1999, stream: .stdout, data: Array(repeating: 0x61, count: 100)))
    }

    @Test func headerLayoutIsAsDocumented() throws {
        let frame = try FrameEncoder().encode(.closeStdin(process: 0x0102_0304))
        #expect(frame == [0x42, 0x48, GuestFrame.version, MessageType.closeStdin.rawValue, 0, 0, 0, 4, 1, 2, 3, 4])
        // Hello always goes out in the oldest version spoken, so an older peer can read it.
        #expect(try FrameEncoder().encode(.hello(minVersion: 1, maxVersion: 2, software: ""))[2] == GuestFrame.minimumVersion)
    }
}

@Suite struct Malformed {
    func decode(_ bytes: [UInt8], limits: GuestProtocolLimits = .default) throws -> Message? {
        var d = FrameDecoder(limits: limits)
        d.append(bytes)
        return try d.next()
    }

    @Test func badMagicIsRefusedFromTheFirstByte() {
        #expect(throws: GuestProtocolError.badMagic(0x47, 0)) { try decode([0x47]) }
        #expect(throws: GuestProtocolError.badMagic(0x42, 0x00)) { try decode([0x42, 0x00]) }
    }

    @Test func wrongVersionIsRefused() throws {
        var frame = try FrameEncoder().encode(.start)
        frame[2] = GuestFrame.version + 1
        #expect(throws: GuestProtocolError.unsupportedVersion(GuestFrame.version + 1)) { try decode(frame) }
        frame[2] = 0
        #expect(throws: GuestProtocolError.unsupportedVersion(0)) { try decode(frame) }
        // Even before the rest of the header arrives.
        #expect(throws: GuestProtocolError.unsupportedVersion(9)) { try decode([0x42, 0x48, 9]) }
    }

    @Test func unknownTypeIsRefused() {
        #expect(throws: GuestProtocolError.unknownMessageType(0)) { try decode([0x42, 0x48, 1, 0, 0, 0, 0, 0]) }
        #expect(throws: GuestProtocolError.unknownMessageType(200)) { try decode([0x42, 0x48, 1, 200]) }
    }

    @Test func oversizeLengthIsRefusedBeforeThePayloadArrives() {
        // Header claims 4 GiB: refused at once, nothing allocated, no waiting for bytes.
        #expect(throws: GuestProtocolError.payloadTooLarge(length: 0xffff_ffff, limit: 1 << 20)) {
            try decode([0x42, 0x48, 1, MessageType.stdin.rawValue, 0xff, 0xff, 0xff, 0xff])
        }
        let small = GuestProtocolLimits(maxPayload: 16)
        #expect(throws: GuestProtocolError.payloadTooLarge(length: 17, limit: 16)) {
            try decode([0x42, 0x48, 1, MessageType.stdin.rawValue, 0, 0, 0, 17], limits: small)
        }
    }

    @Test func truncatedFramesWaitForMoreBytes() throws {
        let frame = try FrameEncoder().encode(.stdin(process: 1, data: [1, 2, 3]))
        for cut in 0..<frame.count {
            #expect(try decode(Array(frame[0..<cut])) == nil, "cut at \(cut)")
        }
    }

    @Test func fieldsRunningPastTheFrameAreTruncationErrors() {
        // stdin with a data length of 100 but only 2 bytes of payload left.
        let payload: [UInt8] = [0, 0, 0, 1, 0, 0, 0, 100, 9, 9]
        let frame: [UInt8] = [0x42, 0x48, 1, MessageType.stdin.rawValue, 0, 0, 0, UInt8(payload.count)] + payload
        #expect(throws: GuestProtocolError.truncated(field: "stdin.data")) { try decode(frame) }
        // signal with only 3 bytes of payload.
        #expect(throws: GuestProtocolError.truncated(field: "signal.process")) {
            try decode([0x42, 0x48, 1, MessageType.signal.rawValue, 0, 0, 0, 3, 0, 0, 0])
        }
    }

    @Test func trailingBytesAreRefused() {
        #expect(throws: GuestProtocolError.trailingBytes(1)) {
            try decode([0x42, 0x48, 1, MessageType.start.rawValue, 0, 0, 0, 1, 0])
        }
    }

    @Test func oversizeFieldsAreRefusedOnBothSides() {
        let limits = GuestProtocolLimits(maxPayload: 1 << 20, maxDataChunk: 8, maxDocument: 16, maxString: 4)
        let encoder = FrameEncoder(limits: limits)
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "stdin.data", length: 9, limit: 8)) {
            try encoder.encode(.stdin(process: 0, data: Array(repeating: 1, count: 9)))
        }
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "create.containerID", length: 5, limit: 4)) {
            try encoder.encode(.create(containerID: "12345", spec: []))
        }
        // A peer with larger limits sends it; our decoder refuses it.
        let frame = try! FrameEncoder().encode(.output(process: 0, stream: .stdout, data: Array(repeating: 1, count: 9)))
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "output.data", length: 9, limit: 8)) { try decode(frame, limits: limits) }
        // A field length bigger than the frame is refused as too large before it is read.
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "error.message", length: 0x7fff_ffff, limit: 4096)) {
            try decode([0x42, 0x48, 1, MessageType.error.rawValue, 0, 0, 0, 8, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])
        }
    }

    @Test func encoderRefusesPayloadsOverTheFrameLimit() {
        let limits = GuestProtocolLimits(maxPayload: 64, maxDataChunk: 1024)
        #expect(throws: GuestProtocolError.payloadTooLarge(length: 108, limit: 64)) {
            try FrameEncoder(limits: limits).encode(.stdin(process: 0, data: Array(repeating: 0, count: 100)))
        }
    }

    @Test func invalidEnumsAndUTF8AreRefused() {
        // output stream 3
        #expect(throws: GuestProtocolError.invalidValue(field: "output.stream", value: 3)) {
            try decode([0x42, 0x48, 1, MessageType.output.rawValue, 0, 0, 0, 9, 0, 0, 0, 0, 3, 0, 0, 0, 0])
        }
        // exit kind 2
        #expect(throws: GuestProtocolError.invalidValue(field: "exited.kind", value: 2)) {
            try decode([0x42, 0x48, 1, MessageType.exited.rawValue, 0, 0, 0, 9, 0, 0, 0, 0, 2, 0, 0, 0, 0])
        }
        // signal 0 and 65
        #expect(throws: GuestProtocolError.invalidValue(field: "signal.signal", value: 65)) {
            try decode([0x42, 0x48, 1, MessageType.signal.rawValue, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 65])
        }
        // created with invalid UTF-8 id
        #expect(throws: GuestProtocolError.invalidUTF8(field: "created.containerID")) {
            try decode([0x42, 0x48, 1, MessageType.created.rawValue, 0, 0, 0, 6, 0, 0, 0, 2, 0xc3, 0x28])
        }
        // hello with min > max
        #expect(throws: GuestProtocolError.invalidValue(field: "hello.maxVersion", value: 1)) {
            try decode([0x42, 0x48, 1, MessageType.hello.rawValue, 0, 0, 0, 6, 2, 1, 0, 0, 0, 0])
        }
    }

    @Test func aFailedDecoderStaysFailed() throws {
        var d = FrameDecoder()
        d.append([0x00, 0x01])
        #expect(throws: GuestProtocolError.badMagic(0, 1)) { try d.next() }
        d.append(try FrameEncoder().encode(.start))
        #expect(throws: GuestProtocolError.badMagic(0, 1)) { try d.next() }
        #expect(d.hasFailed)
    }

    @Test func randomGarbageNeverCrashesAndNeverYieldsOversizeData() {
        var rng = SystemRandomNumberGenerator()
        let limits = GuestProtocolLimits(maxPayload: 4096, maxDataChunk: 512, maxDocument: 1024, maxString: 64)
        for _ in 0..<3000 {
            // Valid header start, random rest: exercises every payload decoder with junk.
            let type = MessageType.allCases.randomElement(using: &rng)!
            let n = Int.random(in: 0...64, using: &rng)
            let payload = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var d = FrameDecoder(limits: limits)
            d.append([0x42, 0x48, 1, type.rawValue, 0, 0, 0, UInt8(n)] + payload)
            if let message = try? d.next() {
                switch message {
                case let .stdin(_, data), let .output(_, _, data): #expect(data.count <= 512)
                case let .error(_, text), let .created(text), let .hello(_, _, text): #expect(text.utf8.count <= 64)
                default: break
                }
            }
        }
    }
}

@Suite struct Versions {
    @Test func version2MessagesAreRefusedInVersion1Frames() throws {
        // An encoder speaking version 1 (negotiated with an old peer) cannot send them.
        #expect(throws: GuestProtocolError.typeNotInVersion(type: MessageType.listProcesses.rawValue, version: 1)) {
            try FrameEncoder(version: 1).encode(.listProcesses)
        }
        // A version-1 frame carrying a version-2 type is refused as soon as its header arrives.
        var frame = try FrameEncoder().encode(.statsRequest)
        frame[2] = 1
        var d = FrameDecoder()
        d.append(frame.prefix(4))
        #expect(throws: GuestProtocolError.typeNotInVersion(type: MessageType.statsRequest.rawValue, version: 1)) { try d.next() }
        // Version-1 messages still encode in version 1.
        #expect(try FrameEncoder(version: 1).encode(.start)[2] == 1)
    }

    @Test func aProcessListOverTheListLimitIsRefusedOnBothSides() throws {
        let limits = GuestProtocolLimits(maxListCount: 2)
        let three = Array(repeating: GuestProcessInfo(pid: 1, ppid: 0, uid: 0, state: "R", rssKiB: 0, command: "x"), count: 3)
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "processList.count", length: 3, limit: 2)) {
            try FrameEncoder(limits: limits).encode(.processList(three))
        }
        let frame = try FrameEncoder().encode(.processList(three))
        var d = FrameDecoder(limits: limits)
        d.append(frame)
        #expect(throws: GuestProtocolError.fieldTooLarge(field: "processList.count", length: 3, limit: 2)) { try d.next() }
    }

    @Test func aProcessListClaimingMoreEntriesThanItCarriesIsTruncated() throws {
        var frame = try FrameEncoder().encode(.processList([]))
        frame[8 + 3] = 5  // count 5, no entries
        var d = FrameDecoder()
        d.append(frame)
        #expect(throws: GuestProtocolError.truncated(field: "processList.pid")) { try d.next() }
    }
}

@Suite struct Negotiation {
    @Test func picksTheHighestCommonVersion() throws {
        #expect(try negotiateVersion(local: 1...3, remoteMin: 2, remoteMax: 5) == 3)
        #expect(try negotiateVersion(local: 1...1, remoteMin: 1, remoteMax: 1) == 1)
    }

    @Test func refusesDisjointRanges() {
        #expect(throws: GuestProtocolError.noCommonVersion(local: 1...1, remote: 2...4)) {
            try negotiateVersion(local: 1...1, remoteMin: 2, remoteMax: 4)
        }
        #expect(throws: GuestProtocolError.invalidValue(field: "hello.maxVersion", value: 1)) {
            try negotiateVersion(local: 1...1, remoteMin: 3, remoteMax: 1)
        }
    }
}
