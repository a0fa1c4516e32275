import Archive
import CDeflate
import Foundation
import Glibc
import Testing
import ModelStore
@testable import ReadPath

/// A zip member whose compressed bytes lie in a local file, inflated into the disk cache by
/// libdeflate in one call past its first `peek` bytes (ReadPath/InflatedMembers.swift), and the
/// streaming inflate it falls back to.
@Suite struct WholeInflateTests {
    /// Compressible, not trivially: 3 MiB of numbered lines.
    static let plain: [UInt8] = Array((0..<90_000).map { "line \($0 * 7919 % 100_003) of the member\n" }.joined().utf8.prefix(3 << 20))

    static func deflate(_ bytes: [UInt8]) -> [UInt8] {
        let c = libdeflate_alloc_compressor(6)!
        defer { libdeflate_free_compressor(c) }
        var out = [UInt8](repeating: 0, count: libdeflate_deflate_compress_bound(c, bytes.count))
        let n = out.withUnsafeMutableBytes { o in bytes.withUnsafeBytes { libdeflate_deflate_compress(c, $0.baseAddress, $0.count, o.baseAddress, o.count) } }
        return Array(out.prefix(n))
    }

    /// An object's bytes in a local file, as the local store's reader has them.
    final class LocalObject: ObjectReader, @unchecked Sendable {
        let fd: Int32
        let size: Int64
        let path: String
        init(_ bytes: [UInt8]) {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-object-\(UUID().uuidString)").path
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            fd = open(path, O_RDONLY | O_CLOEXEC)
            size = Int64(bytes.count)
        }
        deinit { close(fd); unlink(path) }
        func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
            let lower = min(max(offset, 0), size)
            return .file(descriptor: fd, offset: lower, count: Int(min(Int64(length), size - lower)))
        }
        var wholeFile: Int32? { fd }
    }

    /// The same bytes with no local file (an object store's): only the streaming inflate can read them.
    final class RemoteObject: ObjectReader, @unchecked Sendable {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
            let lower = Int(min(max(offset, 0), Int64(bytes.count)))
            return .bytes(Array(bytes[lower..<min(bytes.count, lower + length)]))
        }
    }

    final class Env {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-whole-\(UUID().uuidString)").path
        let inflated: InflatedMembers
        init() throws {
            inflated = InflatedMembers(disk: try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10))
            inflated.smallest = 0
            inflated.peek = 64 << 10
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        /// Files of members in the cache directory, complete or partial.
        var memberFiles: [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".data") || $0.contains(".partial-") }
        }
    }

    /// The compressed stream at an offset that is not a page's, between other bytes, as in a zip.
    static let before = [UInt8](repeating: 0x50, count: 5000)

    func member(_ e: Env, compressed: [UInt8], size: Int, crc: UInt32?, local: Bool = true, storedSize: Int? = nil) -> any ObjectReader {
        let object = WholeInflateTests.before + compressed + [UInt8](repeating: 0x4b, count: 300)
        let base: any ObjectReader = local ? LocalObject(object) : RemoteObject(object)
        let stored = Int64(storedSize ?? compressed.count)
        let member = InflatedMembers.Member(id: UInt64.random(in: 1..<(1 << 62)), name: "m.bin", size: Int64(size), crc32: crc, exact: true)
        return e.inflated.reader(member, compressed: SliceReader(base, start: Int64(WholeInflateTests.before.count), size: stored),
                                 compressedSize: stored)!
    }

    static var crc: UInt32 { plain.withUnsafeBytes { CRCCoverage.crc($0) } }

    @Test func aLocalMemberIsInflatedWholeAndReadOutOfOrder() throws {
        let e = try Env()
        let reader = member(e, compressed: Self.deflate(Self.plain), size: Self.plain.count, crc: Self.crc)
        let n = Self.plain.count
        // The end first (past the peek), then the start, then all of it.
        #expect(try reader.read(offset: Int64(n - 1000), size: 1000).bytes == Array(Self.plain.suffix(1000)))
        #expect(try reader.read(offset: 0, size: 4096).bytes == Array(Self.plain.prefix(4096)))
        #expect(try reader.read(offset: 0, size: n).bytes == Self.plain)
        #expect(e.inflated.wholeInflates == 1)
        #expect(e.inflated.bytesInflated == Int64(n) && e.inflated.fillsFailed == 0)
        #expect(reader.wholeFile != nil)
    }

    @Test func withoutALocalFileTheMemberStreams() throws {
        let e = try Env()
        let reader = member(e, compressed: Self.deflate(Self.plain), size: Self.plain.count, crc: Self.crc, local: false)
        #expect(try reader.read(offset: Int64(Self.plain.count - 10), size: 10).bytes == Array(Self.plain.suffix(10)))
        #expect(try reader.read(offset: 0, size: Self.plain.count).bytes == Self.plain)
        #expect(e.inflated.wholeInflates == 0 && e.inflated.bytesInflated == Int64(Self.plain.count))
    }

    /// A CRC-32 the bytes do not have: libdeflate inflated them, and no reader gets them.
    @Test func aCRCMismatchIsEIO() throws {
        let e = try Env()
        let reader = member(e, compressed: Self.deflate(Self.plain), size: Self.plain.count, crc: Self.crc ^ 1)
        expectStoreError(.io) { _ = try reader.read(offset: Int64(Self.plain.count - 10), size: 10) }
        expectStoreError(.io) { _ = try reader.read(offset: 0, size: Self.plain.count) }
        #expect(e.inflated.wholeInflates == 1 && e.inflated.fillsFailed == 1)
        #expect(e.memberFiles.isEmpty, "\(e.memberFiles)")
    }

    /// Damaged deflate data, a declared size that is wrong either way, compressed bytes that go on
    /// after the stream: libdeflate gives up, the streaming inflate names the damage, readers get EIO.
    @Test(arguments: ["damaged", "larger", "smaller", "trailing"])
    func damageFallsBackToTheStreamingVerdict(_ kind: String) throws {
        let e = try Env()
        var compressed = Self.deflate(Self.plain)
        var size = Self.plain.count
        var stored: Int? = nil
        switch kind {
        case "damaged": for i in stride(from: compressed.count / 2, to: compressed.count / 2 + 64, by: 1) { compressed[i] ^= 0x5a }
        case "larger": size += 1
        case "smaller": size -= 1
        default: stored = compressed.count + 100
        }
        let reader = member(e, compressed: compressed, size: size, crc: Self.crc, storedSize: stored)
        expectStoreError(.io) { _ = try reader.read(offset: Int64(size - 10), size: 10) }
        #expect(e.inflated.wholeInflates == 0 && e.inflated.fillsFailed == 1)
        #expect(e.memberFiles.isEmpty, "\(e.memberFiles)")
    }

    /// Readers of the bytes zlib already wrote, while libdeflate inflates the whole member again
    /// from its start: they must read the member's bytes, never what libdeflate leaves for a moment
    /// past where it is (its fast loop copies matches by words and overwrites the tail later).
    @Test func readersOfWrittenBytesNeverSeeTheWholeInflatesWork() throws {
        let plain = Self.plain
        let compressed = Self.deflate(plain)
        let watched = 1 << 20
        var rounds = 0
        var bad = 0
        while rounds < 60 && bad == 0 {
            rounds += 1
            let e = try Env()
            e.inflated.peek = 2 << 20  // the watcher's reads stay a peek: only the main thread's last one goes past it
            let reader = member(e, compressed: compressed, size: plain.count, crc: Self.crc)
            // zlib writes the first 2 MiB (the filler runs up to 1 MiB ahead of what was asked).
            #expect(try reader.read(offset: 0, size: watched).bytes == Array(plain.prefix(watched)))
            let stop = Locked(false)
            let seen = Locked(0)
            let started = DispatchSemaphore(value: 0)
            let done = DispatchSemaphore(value: 0)
            Thread {
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: watched, alignment: 4096)
                defer { buffer.deallocate() }
                started.signal()
                while !stop.withLock({ $0 }) {
                    guard case .file(let fd, let offset, let count)? = try? reader.read(offset: 0, size: watched) else { continue }
                    let n = pread(fd, buffer, count, off_t(offset))
                    if n != watched || plain.withUnsafeBytes({ memcmp($0.baseAddress!, buffer, watched) }) != 0 { seen.withLock { $0 += 1 } }
                }
                done.signal()
            }.start()
            started.wait()
            // Past the peek: the rest is inflated whole, from the member's first byte.
            #expect(try reader.read(offset: Int64(plain.count - 10), size: 10).bytes == Array(plain.suffix(10)))
            stop.withLock { $0 = true }
            done.wait()
            bad = seen.withLock { $0 }
            #expect(e.inflated.wholeInflates == 1)
            #expect(try reader.read(offset: 0, size: plain.count).bytes == plain)
        }
        #expect(bad == 0, "a reader read wrong bytes of the written part in round \(rounds)")
    }

    /// A peek at a member's first bytes inflates little of it, and nothing whole.
    @Test func aPeekDoesNotInflateTheWholeMember() throws {
        let e = try Env()
        let reader = member(e, compressed: Self.deflate(Self.plain), size: Self.plain.count, crc: Self.crc)
        #expect(try reader.read(offset: 0, size: 100).bytes == Array(Self.plain.prefix(100)))
        Thread.sleep(forTimeInterval: 0.2)
        #expect(e.inflated.wholeInflates == 0 && e.inflated.bytesInflated < Int64(Self.plain.count))
    }

    @Test func theWholeBufferInflateItself() {
        let compressed = Self.deflate(Self.plain)
        var out = [UInt8](repeating: 0, count: Self.plain.count)
        let good = compressed.withUnsafeBytes { i in out.withUnsafeMutableBytes { WholeInflate.raw(i, into: $0) } }
        #expect(good == .inflated(consumed: compressed.count) && out == Self.plain)
        var short = [UInt8](repeating: 0, count: Self.plain.count - 1)
        #expect(compressed.withUnsafeBytes { i in short.withUnsafeMutableBytes { WholeInflate.raw(i, into: $0) } } == .longer)
        var long = [UInt8](repeating: 0, count: Self.plain.count + 1)
        #expect(compressed.withUnsafeBytes { i in long.withUnsafeMutableBytes { WholeInflate.raw(i, into: $0) } } == .shorter(produced: Self.plain.count))
        let junk = [UInt8](repeating: 0xff, count: 1000)
        #expect(junk.withUnsafeBytes { i in out.withUnsafeMutableBytes { WholeInflate.raw(i, into: $0) } } == .damaged)
    }
}
