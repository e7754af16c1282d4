import Testing
import OCIRuntime

@Suite struct SpecTests {
    @Test func malformedFieldIsRefusedWithItsPath() throws {
        let json = #"{"ociVersion":"1.0.2","process":{"user":{"uid":"zero","gid":0},"args":["sh"],"cwd":"/"}}"#
        let error = #expect(throws: SpecError.self) { try Spec.decode(Array(json.utf8)) }
        #expect(error?.message.contains("process.user.uid") == true)
    }
}

@Suite struct SpecDecodingTests {
    @Test func unknownFieldsAreIgnoredAndVersionsChecked() throws {
        let json = #"{"ociVersion":"1.1.0","future":{"x":1},"process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/","newThing":true},"root":{"path":"rootfs"}}"#
        let spec = try Spec.decode(Array(json.utf8))
        #expect(spec.process?.args == ["sh"])
        let old = #"{"ociVersion":"0.9.0"}"#
        #expect(throws: SpecError.self) { try Spec.decode(Array(old.utf8)) }
    }

    @Test func errorsNameTheirPaths() {
        func message(_ json: String) -> String {
            do { _ = try Spec.decode(Array(json.utf8)); return "" } catch { return "\(error)" }
        }
        #expect(message(#"{"ociVersion":"1.0.0","mounts":[{"destination":"/a"},{"destination":5}]}"#).contains("mounts[1].destination"))
        #expect(message(#"{"ociVersion":"1.0.0","process":{"user":{"uid":0,"gid":0},"cwd":"/"}}"#).contains("process.args"))
        #expect(message(#"{"ociVersion":"1.0.0","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#).contains("linux.namespaces[1].type"))
        #expect(message(#"{"ociVersion":"1.0.0","process":{"user":{"uid":0,"gid":0},"args":["a"],"cwd":"rel"}}"#).contains("process.cwd"))
    }

    @Test func defaultSpecRoundTrips() throws {
        let spec = Spec.defaultSpec()
        let again = try Spec.decode(try spec.encoded())
        #expect(again == spec)
        #expect(spec.linux?.namespaces?.map(\.type) == [.pid, .network, .ipc, .uts, .mount, .cgroup])
    }
}
