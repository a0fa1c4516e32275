import Foundation
import Glibc
import Testing
@testable import FUSEAdapter

/// A kernel stand-in: hands out backing ids, or refuses with one errno, and remembers what is open.
final class FakeKernel: @unchecked Sendable {
    var refuse: Int32? = nil
    var nextID: Int32 = 1
    var registered: [Int32: Int32] = [:]  // id -> fd
    var said: [String] = []

    func table(off: String? = nil) -> PassthroughTable {
        PassthroughTable(off: off, register: { fd in
            if let e = self.refuse { return -e }
            let id = self.nextID
            self.nextID += 1
            self.registered[id] = fd
            return id
        }, unregister: { id in self.registered[id] = nil }, say: { self.said.append($0) })
    }
}

@Test func anOpenWithAWholeFilePassesThroughAndItsReleaseForgetsTheBackingID() {
    let k = FakeKernel()
    let t = k.table()
    let id = t.opened(inode: 7, handle: 1, wholeFile: 42)
    #expect(id == 1 && k.registered == [1: 42])
    #expect(t.passes(handle: 1))
    t.released(handle: 1)
    #expect(k.registered.isEmpty)
}

@Test func opensOfOneInodeShareOneBackingIDUntilTheLastRelease() {
    let k = FakeKernel()
    let t = k.table()
    #expect(t.opened(inode: 7, handle: 1, wholeFile: 42) == 1)
    // The kernel refuses a second backing file for an inode that has one (EBUSY, then EIO at open).
    #expect(t.opened(inode: 7, handle: 2, wholeFile: 43) == 1)
    // Even an open whose reader has no whole file (the bytes are the same: a version never changes).
    #expect(t.opened(inode: 7, handle: 3, wholeFile: nil) == 1)
    #expect(k.registered.count == 1)
    t.released(handle: 1)
    t.released(handle: 3)
    #expect(k.registered == [1: 42])
    t.released(handle: 2)
    #expect(k.registered.isEmpty)
    // A later open registers afresh.
    #expect(t.opened(inode: 7, handle: 4, wholeFile: 44) == 2)
}

@Test func anInodeOpenThroughTheDaemonStaysThereUntilThatOpenIsReleased() {
    let k = FakeKernel()
    let t = k.table()
    // Opened while no whole copy existed (a disk-cache copy still filling): the page cache path.
    #expect(t.opened(inode: 7, handle: 1, wholeFile: nil) == 0)
    // The copy completes; a second open must not pass through while the first is open (ETXTBSY).
    #expect(t.opened(inode: 7, handle: 2, wholeFile: 42) == 0)
    #expect(k.registered.isEmpty)
    t.released(handle: 1)
    t.released(handle: 2)
    #expect(t.opened(inode: 7, handle: 3, wholeFile: 42) == 1)
    // Other inodes are not held back by one another.
    #expect(t.opened(inode: 8, handle: 4, wholeFile: nil) == 0)
    #expect(t.opened(inode: 9, handle: 5, wholeFile: 50) == 2)
}

@Test func offMeansTheDaemonPathForEveryOpen() {
    let k = FakeKernel()
    let t = k.table(off: "--passthrough off")
    #expect(t.opened(inode: 7, handle: 1, wholeFile: 42) == 0)
    #expect(k.registered.isEmpty && k.said.isEmpty)
}

@Test func aRefusalForTheWholeMountTurnsPassthroughOffAndIsSaidOnce() {
    let k = FakeKernel()
    k.refuse = EPERM
    let t = k.table()
    #expect(t.opened(inode: 7, handle: 1, wholeFile: 42) == 0)
    #expect(t.off != nil)
    k.refuse = nil
    #expect(t.opened(inode: 8, handle: 2, wholeFile: 43) == 0)
    #expect(k.said.count == 1)
    t.released(handle: 1)
    t.released(handle: 2)
    #expect(k.registered.isEmpty)
}

@Test func aRefusalOfOneFileFallsBackForThatFileAndIsSaidOncePerReason() {
    let k = FakeKernel()
    k.refuse = ELOOP  // a backing file on overlayfs
    let t = k.table()
    #expect(t.opened(inode: 7, handle: 1, wholeFile: 42) == 0)
    #expect(t.opened(inode: 8, handle: 2, wholeFile: 43) == 0)
    #expect(k.said.count == 1 && t.off == nil)
    k.refuse = nil
    #expect(t.opened(inode: 9, handle: 3, wholeFile: 44) == 1)
    // Inode 7 still has its daemon-path open: it stays there.
    #expect(t.opened(inode: 7, handle: 4, wholeFile: 42) == 0)
}

@Test func aReleaseOfAnUnknownHandleChangesNothing() {
    let k = FakeKernel()
    let t = k.table()
    #expect(t.opened(inode: 7, handle: 1, wholeFile: 42) == 1)
    t.released(handle: 99)
    t.released(handle: 1)
    t.released(handle: 1)
    #expect(k.registered.isEmpty)
}
