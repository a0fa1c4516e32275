import Foundation
import Glibc
import Testing
import ModelStore
@testable import ReadPath

/// The on-disk cache names objects by content, survives its process, may be shared, and never
/// serves a block that is not what it claims.
@Suite struct DiskCacheTests {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-disk-\(UUID().uuidString)").path
    let block = 64 << 10

    func bytes(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed } }

    func read(_ cache: DiskCache, _ object: UInt64, _ range: Range<Int64>) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: Int(range.count))
        let ok = out.withUnsafeMutableBytes { cache.read(object: object, range: range, into: $0) }
        return ok ? out : nil
    }

    @Test func aNewInstanceOnTheSameDirectoryServesWhatAnEarlierOneKept() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = ObjectIdentity.id(sha256: "abc", size: 3 * Int64(block))
        let data = bytes(3 * block, seed: 1)
        do {
            let first = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
            data.withUnsafeBytes { first.write(object: id, range: 0..<Int64(data.count), bytes: $0) }
        }
        let second = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        #expect(second.bytesUsed >= Int64(data.count), "the earlier bytes are counted against the cap")
        #expect(read(second, id, 0..<Int64(data.count)) == data)
        #expect(read(second, id, Int64(block)..<Int64(2 * block)) == Array(data[block..<2 * block]))
        #expect(read(second, ObjectIdentity.id(sha256: "abd", size: 3 * Int64(block)), 0..<10) == nil, "another object is a miss")
    }

    @Test func aCorruptOrTruncatedBlockIsAMissNeverServed() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = ObjectIdentity.id(sha256: "def", size: 2 * Int64(block))
        let data = bytes(2 * block, seed: 7)
        let cache = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        data.withUnsafeBytes { cache.write(object: id, range: 0..<Int64(data.count), bytes: $0) }
        let path = dir + "/objects/" + String(id, radix: 16) + ".data"
        // A flipped byte in the second block.
        let fd = open(path, O_WRONLY)
        var flipped: UInt8 = data[block + 5] ^ 0xFF
        #expect(pwrite(fd, &flipped, 1, off_t(block + 5)) == 1)
        close(fd)
        let other = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        #expect(read(other, id, 0..<Int64(block)) == Array(data[0..<block]), "the good block still serves")
        #expect(read(other, id, 0..<Int64(data.count)) == nil)
        #expect(other.blocksDropped == 1)
        // Truncated: the first block is gone too.
        #expect(truncate(path, off_t(block / 2)) == 0)
        #expect(read(other, id, 0..<Int64(block)) == nil)
    }

    /// The attack: what one object left on disk, copied or moved under another object's name (or a
    /// block's record moved to another offset), is refused and the right bytes are fetched again.
    @Test func aBlockUnderAnotherObjectsNameOrOffsetIsRefusedAndRefetched() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = 3 * Int64(block)
        let a = ObjectIdentity.id(sha256: "aaaa", size: size), b = ObjectIdentity.id(sha256: "bbbb", size: size)
        let aBytes = bytes(Int(size), seed: 1), bBytes = bytes(Int(size), seed: 2)
        let files = dir + "/objects/"
        func name(_ id: UInt64) -> String { files + String(id, radix: 16) }
        do {
            let first = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
            aBytes.withUnsafeBytes { first.write(object: a, range: 0..<size, bytes: $0) }
        }
        // A's files copied under B's name: no block of them serves B.
        for ext in [".data", ".idx"] { try FileManager.default.copyItem(atPath: name(a) + ext, toPath: name(b) + ext) }
        let cache = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        #expect(read(cache, b, 0..<size)?.count == nil, "a miss, not bytes")
        #expect(read(cache, b, Int64(block)..<Int64(2 * block))?.count == nil, "a miss, not bytes")
        #expect(cache.blocksDropped >= 2)
        #expect(read(cache, a, 0..<size) == aBytes, "A's own blocks still serve A")

        // Through the block cache: B's bytes are fetched from the store, never A's from disk.
        let fetched = Locked(0)
        let blocks = BlockCache(budget: 16 << 20, blockSize: block, disk: cache)
        let got = try blocks.read(object: b, size: size, range: 0..<size) { (range) throws(StoreError) -> [UInt8] in
            fetched.withLock { $0 += 1 }
            return Array(bBytes[Int(range.lowerBound)..<Int(range.upperBound)])
        }
        #expect(got == bBytes)
        #expect(fetched.withLock { $0 } >= 1)
        blocks.drainDisk()
        #expect(read(cache, b, 0..<size) == bBytes, "the refetched bytes are B's on disk now")

        // A's first block claimed at A's second offset (record and bytes moved there): refused.
        try FileManager.default.removeItem(atPath: name(a) + ".idx")
        try FileManager.default.removeItem(atPath: name(a) + ".data")
        do {
            let writer = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
            aBytes.withUnsafeBytes { writer.write(object: a, range: 0..<Int64(block), bytes: UnsafeRawBufferPointer(rebasing: $0[0..<block])) }
        }
        let index = try Data(contentsOf: URL(fileURLWithPath: name(a) + ".idx"))
        var moved = [UInt8](index)
        withUnsafeBytes(of: Int64(1)) { for (i, byte) in $0.enumerated() { moved[i] = byte } }
        try Data(moved).write(to: URL(fileURLWithPath: name(a) + ".idx"))
        let fd = open(name(a) + ".data", O_WRONLY)
        _ = aBytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, block, off_t(block)) }
        close(fd)
        let later = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        #expect(read(later, a, Int64(block)..<Int64(2 * block))?.count == nil, "a miss, not bytes")
        #expect(later.blocksDropped == 1)
    }

    @Test func twoInstancesShareOneDirectory() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        let b = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        let one = ObjectIdentity.id(sha256: "one", size: Int64(block))
        let two = ObjectIdentity.id(sha256: "two", size: Int64(block))
        let x = bytes(block, seed: 3), y = bytes(block, seed: 9)
        x.withUnsafeBytes { a.write(object: one, range: 0..<Int64(block), bytes: $0) }
        y.withUnsafeBytes { b.write(object: two, range: 0..<Int64(block), bytes: $0) }
        #expect(read(b, one, 0..<Int64(block)) == x, "b reads what a kept")
        #expect(read(a, two, 0..<Int64(block)) == y)
    }

    /// Another writer of the same object in the middle of its write (a whole fetch's other stream,
    /// another mount) holds the object's lock shared: this write goes on beside it, not after it.
    @Test func writersOfOneObjectDoNotWaitForEachOther() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: block)
        let id = ObjectIdentity.id(sha256: "shared", size: 2 * Int64(block))
        let data = bytes(2 * block, seed: 5)
        data.withUnsafeBytes { cache.write(object: id, range: 0..<Int64(block), bytes: UnsafeRawBufferPointer(rebasing: $0[0..<block])) }
        let other = open(dir + "/objects/" + String(id, radix: 16) + ".idx", O_RDONLY | O_CLOEXEC)
        #expect(other >= 0)
        defer { close(other) }
        #expect(flock(other, LOCK_SH) == 0)
        let written = DispatchSemaphore(value: 0)
        Thread {
            data.withUnsafeBytes {
                _ = cache.write(object: id, range: Int64(block)..<Int64(2 * block), bytes: UnsafeRawBufferPointer(rebasing: $0[block...]))
            }
            written.signal()
        }.start()
        // Not a timing: a writer that took the lock alone would wait here for ever.
        let finished = written.wait(timeout: .now() + 30) == .success
        flock(other, LOCK_UN)
        if !finished { written.wait() }
        #expect(finished, "the write went on while another writer held the lock")
        #expect(read(cache, id, 0..<Int64(2 * block)) == data)
    }

    @Test func theCapEvictsTheLeastRecentlyUsed() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = try DiskCache(directory: dir, capacity: 2 * Int64(block), blockSize: block)
        let ids = (0..<3).map { ObjectIdentity.id(sha256: "o\($0)", size: Int64(block)) }
        for (i, id) in ids.enumerated() {
            bytes(block, seed: UInt8(i)).withUnsafeBytes { cache.write(object: id, range: 0..<Int64(block), bytes: $0) }
        }
        #expect(cache.bytesUsed <= 2 * Int64(block))
        #expect(read(cache, ids[0], 0..<Int64(block)) == nil)
        #expect(read(cache, ids[2], 0..<Int64(block)) == bytes(block, seed: 2))
    }
}
