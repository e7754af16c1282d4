import Testing
import OCIRuntime

@Suite struct SpecTests {
    @Test func malformedFieldIsRefusedWithItsPath() throws {
        let json = #"{"ociVersion":"1.0.2","process":{"user":{"uid":"zero","gid":0},"args":["sh"],"cwd":"/"}}"#
        let error = #expect(throws: SpecError.self) { try Spec.decode(Array(json.utf8)) }
        #expect(error?.message.contains("process.user.uid") == true)
    }
}
