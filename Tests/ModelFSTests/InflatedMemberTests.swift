import Foundation
import Glibc
import Testing
import ModelStore
import ReadPath
import TestSupport
@testable import ModelFS

/// Compressed members inflated once into the disk cache (ReadPath/InflatedMembers.swift), read
/// through the view without a mount. The fixtures are small: every member goes to a file here.
@Suite struct InflatedMemberTests {
    final class Env: @unchecked Sendable {
        let dir: String
        let disk: DiskCache
        let env: FSEnv
        var inflated: InflatedMembers { env.fs.namespace.archives.inflated! }

        init(capacity: Int64 = 1 << 30, dir: String? = nil, memory: Int = 128 << 20) throws {
            self.dir = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-inflated-\(UUID().uuidString)").path
            disk = try DiskCache(directory: self.dir, capacity: capacity, blockSize: 64 << 10)
            env = try FSEnv(cache: BlockCache(budget: memory, disk: disk))
            inflated.smallest = 0
        }

        /// The member files in the cache directory (complete and partial).
        var memberFiles: [String] {
            let all = (try? FileManager.default.contentsOfDirectory(atPath: disk.directory)) ?? []
            // A member's `.idx` is its recorded CRC, not a block index (16-byte records).
            return all.filter { name in
                guard name.hasSuffix(".data") else { return name.contains(".partial-") }
                let idx = disk.directory + "/" + name.dropLast(5) + ".idx"
                return (try? String(contentsOfFile: idx, encoding: .utf8))?.hasPrefix("modelfs-crc32") == true
            }
        }
    }

    func read(_ env: FSEnv, _ handle: UInt64, _ offset: Int, _ size: Int) throws -> [UInt8] {
        try env.fs.read(handle, offset: Int64(offset), size: size)
    }

    @Test func aDeflatedMemberReadOutOfOrderIsInflatedOnce() throws {
        let e = try Env()
        _ = try e.env.mkdir("X")
        _ = try e.env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        _ = try e.env.put("models/X/v2.tar", try archiveFixture("model.tar"))
        let whole = try e.env.readAll(try e.env.inode("models/X/v2/tokenizer.json"))
        let handle = try e.env.fs.open(try e.env.inode("models/X/v1/tokenizer.json"), flags: OpenFlags(O_RDONLY)).handle
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let offset = Int.random(in: 0..<whole.count, using: &rng), size = Int.random(in: 1...300, using: &rng)
            #expect(try read(e.env, handle, offset, size) == Array(whole[offset..<min(whole.count, offset + size)]), "at \(offset)+\(size)")
        }
        // Backwards to the start, then the end again: still one inflate of the member.
        #expect(try read(e.env, handle, whole.count - 10, 10) == Array(whole.suffix(10)))
        #expect(try read(e.env, handle, 0, 10) == Array(whole.prefix(10)))
        try e.env.fs.release(handle)
        #expect(e.inflated.bytesInflated == Int64(whole.count))
        // Complete: the next open has the file to hand to the kernel, and inflates nothing.
        let again = try e.env.fs.open(try e.env.inode("models/X/v1/tokenizer.json"), flags: OpenFlags(O_RDONLY))
        #expect(again.wholeFile != nil)
        #expect(try read(e.env, again.handle, 0, whole.count) == whole)
        try e.env.fs.release(again.handle)
        #expect(e.inflated.bytesInflated == Int64(whole.count))
        #expect((try? e.env.xattr(try e.env.inode("models/X/v1"), "archive_error")) == nil)
    }

    /// Into its file, and without a disk cache inflated as it is read: either way, with a memory
    /// cache too small to hide a second fetch, each compressed byte is fetched once.
    @Test(arguments: [true, false])
    func aTarGzMemberReadInOrderFetchesEachCompressedByteOnce(_ toFile: Bool) throws {
        let e = toFile ? try Env(memory: 64 << 10) : nil
        let env = try e?.env ?? FSEnv(cache: BlockCache(budget: 64 << 10))
        _ = try env.mkdir("X")
        let archive = try archiveFixture("big.tar.gz")
        _ = try env.put("models/X/v1.tar.gz", archive)
        let member = try env.inode("models/X/v1/big/text.txt")
        _ = try env.fs.getattr(member)  // the index is built (and its reads counted) first
        let before = env.cache.counters.bytesFetched
        let got = try env.readAll(member, chunk: 128 << 10)
        let fetched = env.cache.counters.bytesFetched - before
        let block = Array((0..<1000).map { String(format: "line %04d of the big member\n", $0) }.joined().utf8)
        #expect(got.count == block.count * (24 * 1024 * 1024 / block.count))
        #expect(got.prefix(block.count).elementsEqual(block) && got.suffix(block.count).elementsEqual(block))
        // Blocks are 64 KiB: the whole archive, rounded up to them, at most.
        #expect(fetched <= Int64(Double(archive.count) * 1.1), "fetched \(fetched) of a \(archive.count)-byte archive")
        if let e { #expect(e.inflated.bytesInflated <= Int64(got.count) + GzipTarGuess.spacing) }
    }

    @Test func aDamagedMemberIsEIOAndLeavesNoFile() throws {
        let e = try Env()
        _ = try e.env.mkdir("X")
        _ = try e.env.put("models/X/v1.zip", try archiveFixture("bad-crc.zip"))
        // b.txt is deflated and its CRC-32 changed: read in pieces, backwards, the end is EIO.
        let b = try e.env.inode("models/X/v1/b.txt")
        let size = Int(try e.env.fs.getattr(b).size)
        let handle = try e.env.fs.open(b, flags: OpenFlags(O_RDONLY)).handle
        expectStoreError(.io) { try e.env.fs.read(handle, offset: Int64(size - 100), size: 100) }
        expectStoreError(.io) { try e.env.fs.read(handle, offset: 0, size: 100) }
        try e.env.fs.release(handle)
        expectStoreError(.io) { try e.env.readAll(b) }
        #expect(try e.env.xattr(try e.env.inode("models/X/v1"), "archive_error").contains("b.txt: Bad CRC-32"))
        #expect(e.memberFiles.isEmpty, "\(e.memberFiles)")
        #expect(e.inflated.fillsFailed == 1)
    }

    @Test func aCorruptedMemberFileIsNotServedAfterARemount() throws {
        let first = try Env()
        _ = try first.env.mkdir("X")
        _ = try first.env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        let whole = try first.env.readAll(try first.env.inode("models/X/v1/tokenizer.json"))
        let files = first.memberFiles
        #expect(files.count == 1)
        // Another mount of the same cache and store: the file is reused, checked, not inflated again.
        let second = try Env(dir: first.dir)
        _ = try second.env.mkdir("X")
        _ = try second.env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        #expect(try second.env.readAll(try second.env.inode("models/X/v1/tokenizer.json")) == whole)
        #expect(second.inflated.filesReused == 1 && second.inflated.bytesInflated == 0)
        // A byte flipped on disk: a third mount finds it wrong, drops it and inflates again.
        let path = second.disk.directory + "/" + files[0]
        let fd = open(path, O_RDWR)
        var byte: UInt8 = 0
        _ = pread(fd, &byte, 1, 7)
        byte ^= 1
        _ = pwrite(fd, &byte, 1, 7)
        close(fd)
        let third = try Env(dir: first.dir)
        _ = try third.env.mkdir("X")
        _ = try third.env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        #expect(try third.env.readAll(try third.env.inode("models/X/v1/tokenizer.json")) == whole)
        #expect(third.inflated.filesReused == 0 && third.inflated.bytesInflated == Int64(whole.count))
    }

    @Test func twoReadersAtOnceShareOneInflate() throws {
        let e = try Env()
        _ = try e.env.mkdir("X")
        _ = try e.env.put("models/X/v1.tar.gz", try archiveFixture("big.tar.gz"))
        let member = try e.env.inode("models/X/v1/big/text.txt")
        let size = Int(try e.env.fs.getattr(member).size)
        let block = Array((0..<1000).map { String(format: "line %04d of the big member\n", $0) }.joined().utf8)
        let results = Locked<[Bool]>([])
        let group = DispatchGroup()
        for reverse in [false, true] {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let handle = try? e.env.fs.open(member, flags: OpenFlags(O_RDONLY)).handle else { return }
                defer { try? e.env.fs.release(handle) }
                var offsets = Array(stride(from: 0, to: size, by: 1 << 20))
                if reverse { offsets.reverse() }
                var good = true
                for o in offsets {
                    let got = (try? e.env.fs.read(handle, offset: Int64(o), size: 4096)) ?? []
                    let want = (0..<min(4096, size - o)).map { block[(o + $0) % block.count] }
                    good = good && got == want
                }
                results.withLock { $0.append(good) }
            }.start()
        }
        group.wait()
        #expect(results.withLock { $0 } == [true, true])
        #expect(e.inflated.bytesInflated <= Int64(size) + GzipTarGuess.spacing)
    }

    @Test func theDiskCachesCapacityIsKept() throws {
        // Room for the archives' blocks and a small member, not for a 24 MiB one (more than half).
        let e = try Env(capacity: 1 << 20)
        _ = try e.env.mkdir("X")
        _ = try e.env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        _ = try e.env.put("models/X/v2.tar", try archiveFixture("model.tar"))
        _ = try e.env.put("models/X/v3.tar.gz", try archiveFixture("big.tar.gz"))
        let big = try e.env.readAll(try e.env.inode("models/X/v3/big/text.txt"))
        #expect(big.count == 25_144_000)
        #expect(e.memberFiles.isEmpty && e.inflated.bytesInflated == 0)
        // A member that fits is kept, and the cache stays within its size.
        let tokenizer = try e.env.readAll(try e.env.inode("models/X/v1/tokenizer.json"))
        #expect(tokenizer == (try e.env.readAll(try e.env.inode("models/X/v2/tokenizer.json"))))
        #expect(e.memberFiles.count == 1)
        e.env.cache.drainDisk()
        #expect(e.disk.bytesUsed <= e.disk.capacity)
    }
}

/// At most one access point's spacing of a `.tar.gz` stream is inflated before a member.
enum GzipTarGuess {
    static let spacing: Int64 = 8 << 20
}
