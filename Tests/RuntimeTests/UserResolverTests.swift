import Runtime
import Testing

@Suite struct UserResolverTests {
    let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
    let group = "root:x:0:\napp:x:1001:\nwheel:x:10:app,root\ndocker:x:999:app\n"

    @Test func namesNumbersAndGroups() throws {
        #expect(try UserResolver.resolve("app", passwd: passwd, group: group) == ResolvedUser(uid: 1000, gid: 1001, additionalGids: [10, 999], home: "/home/app"))
        #expect(try UserResolver.resolve("1000:wheel", passwd: passwd, group: group).gid == 10)
        #expect(try UserResolver.resolve("4242", passwd: passwd, group: group) == ResolvedUser(uid: 4242, gid: 0))
        #expect(try UserResolver.resolve("4242:77", passwd: passwd, group: group).gid == 77)
        #expect(throws: RuntimeError.self) { try UserResolver.resolve("ghost", passwd: passwd, group: group) }
        #expect(throws: RuntimeError.self) { try UserResolver.resolve("app:ghosts", passwd: passwd, group: group) }
    }
}
