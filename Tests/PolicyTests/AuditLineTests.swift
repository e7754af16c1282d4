import Testing
import Foundation
import PolicyGate

/// The audit line is written by hand; it must be byte for byte what JSONEncoder with sorted keys wrote before.
@Suite struct AuditLineTests {
    @Test(arguments: [true, false])
    func auditLineIsWhatJSONEncoderWrites(_ full: Bool) throws {
        let optional = full ? #""tenant":"acme \"quoted\" \\ ünï ✓","image":"docker.io/acme/app:1","image_digest":"sha256:abc","requested":"microvm","granted":"microvm","# : ""
        let json = #"{"time":"2026-11-29T15:00:00Z","container_id":"c/1",\#(optional)"decided":"microvm","outcome":"granted","rule":"tenants\nnewline","rule_location":"/etc/bulkhead/policy.yaml:12:5","policy":"/etc/bulkhead/policy.yaml","policy_sha256":"0123"}"#
        let record = try JSONDecoder().decode(AuditRecord.self, from: Data(json.utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(String(decoding: record.json(), as: UTF8.self) == String(decoding: try encoder.encode(record), as: UTF8.self))
    }
}
