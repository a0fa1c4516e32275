import Testing
import ModelStore

/// The Unix rules a job's request is checked by (the kernel's, for what it does not check itself).
@Suite("Ownership.allows")
struct PermissionsTests {
    let o = Ownership(uid: 1000, gid: 50, mode: 0o750)

    @Test func theOwnersBitsForTheOwnerTheGroupsForAMemberTheOthersForTheRest() {
        let owner = Ownership.Requester(uid: 1000, groups: [1000])
        let member = Ownership.Requester(uid: 1001, groups: [1001, 50])
        let other = Ownership.Requester(uid: 1002, groups: [1002])
        #expect(o.allows(.read, to: owner) && o.allows(.write, to: owner) && o.allows(.search, to: owner))
        #expect(o.allows(.read, to: member) && !o.allows(.write, to: member) && o.allows(.search, to: member))
        #expect(!o.allows(.read, to: other) && !o.allows(.write, to: other) && !o.allows(.search, to: other))
        // The owner's bits apply to the owner even when the group's would give more.
        let closed = Ownership(uid: 1000, gid: 50, mode: 0o070)
        #expect(!closed.allows(.read, to: Ownership.Requester(uid: 1000, groups: [50])))
        #expect(o.allows(.write, to: Ownership.Requester(uid: 0, groups: [0])), "root")
    }
}
