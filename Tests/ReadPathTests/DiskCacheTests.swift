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
