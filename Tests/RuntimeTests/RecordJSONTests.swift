import Testing
import Foundation
import JSONText
import OCIRuntime
@testable import Runtime

/// state.json is written by hand (JSONObjectWriter); JSONDecoder must read back exactly the record, whatever its strings hold.
@Suite struct RecordJSONTests {
    static let awkward = ["plain", "", "quote \" and backslash \\ and slash /", "line\nbreak\ttab\rcr", "\u{01}\u{1f}\u{7f} controls",
                          "ünïcødé ✓ 😀", "\u{2028}\u{2029}", "{\"json\": [1, 2]}"]

    @Test(arguments: awkward)
    func recordRoundTripsThroughJSONDecoder(_ text: String) throws {
        var record = ContainerRecord(id: "c1", backend: "namespace", bundle: "/b/" + text, rootfs: text, created: "2026-11-29T15:00:00.123456789Z",
                                     annotations: ["bulkhead.tier": "namespace", text: text, "k": ""])
        record.pid = Int32.max
        record.pidStartTime = UInt64.max
        record.cgroupPath = "/bulkhead/" + text
        record.status = .running
        record.ownPidNamespace = false
        record.extra = [text: "x", "dataRoot": "/var/lib/bulkhead"]
        record.hooks = Spec.Hooks()
        record.hooks?.poststop = [Spec.Hook(path: "/bin/echo", args: ["echo", text], env: ["A=" + text], timeout: 5)]
        let hand = try record.json()
        #expect(try JSONDecoder().decode(ContainerRecord.self, from: Data(hand)) == record)
        // The same JSON value JSONEncoder writes.
        let reference = try JSONEncoder().encode(record)
        #expect(try JSONSerialization.jsonObject(with: Data(hand)) as? NSDictionary == JSONSerialization.jsonObject(with: reference) as? NSDictionary)
    }

    @Test func nilOptionalsAreLeftOutAsJSONEncoderLeavesThemOut() throws {
        let record = ContainerRecord(id: "c2", backend: "microvm", bundle: "/b", rootfs: "/b/rootfs", created: "t")
        let hand = String(decoding: try record.json(), as: UTF8.self)
        #expect(hand == #"{"id":"c2","backend":"microvm","bundle":"/b","rootfs":"/b/rootfs","pid":0,"pidStartTime":0,"created":"t","owner":"root","status":"creating","ownPidNamespace":true}"#)
        #expect(try JSONDecoder().decode(ContainerRecord.self, from: Data(hand.utf8)) == record)
    }

    @Test func controlCharactersAreEscapedAsRFC8259Says() {
        var w = JSONObjectWriter()
        w.field("s", "a\u{0}b\u{1b}c\"d\\e/f")
        w.field("n", Int64(-42))
        w.field("u", UInt64(42))
        w.field("t", true)
        w.field("none", nil as String?)
        w.field("d", ["b": "2", "a": "1"])
        #expect(String(decoding: w.finish(), as: UTF8.self) == #"{"s":"a\u0000b\u001bc\"d\\e/f","n":-42,"u":42,"t":true,"d":{"a":"1","b":"2"}}"#)
    }
}
