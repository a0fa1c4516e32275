import Foundation
import Glibc
import ModelStore

/// An optional second level under the memory cache: fetched bytes also land in one sparse file
/// per object under a directory, up to a size cap, so re-reads larger than the memory budget come
/// from local disk. The directory is emptied when the mount starts: object ids are only
/// meaningful to the catalog that made them, and a crash must never serve stale blocks.
public final class DiskCache: @unchecked Sendable {
    public let directory: String
    public let capacity: Int64
    let blockSize: Int64

    private struct Entry {
        var blocks: Set<Int64> = []
        var bytes: Int64 = 0
        var lastUse: UInt64 = 0
    }

    private let lock = NSLock()
    private var entries: [UInt64: Entry] = [:]
    private var used: Int64 = 0
    private var clock: UInt64 = 0
    private var hitBytes: Int64 = 0

    public init(directory: String, capacity: Int64, blockSize: Int) throws(StoreError) {
        self.directory = directory + "/blocks"
        self.capacity = capacity
        self.blockSize = Int64(blockSize)
        do {
            if FileManager.default.fileExists(atPath: self.directory) {
                try FileManager.default.removeItem(atPath: self.directory)
            }
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "cache directory \(directory): \(error.localizedDescription)")
        }
    }

    public var bytesUsed: Int64 { lock.withLock { used } }
    public var bytesServed: Int64 { lock.withLock { hitBytes } }

    private func path(_ object: UInt64) -> String { directory + "/" + String(object, radix: 16) }

    private func blocks(_ range: Range<Int64>) -> ClosedRange<Int64> {
        (range.lowerBound / blockSize)...((range.upperBound - 1) / blockSize)
    }

    /// Fills `buffer` with `range` when every block of it is on disk; false otherwise.
    public func read(object: UInt64, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard !range.isEmpty else { return true }
        let present = lock.withLock { () -> Bool in
            guard var e = entries[object], blocks(range).allSatisfy({ e.blocks.contains($0) }) else { return false }
            clock += 1
            e.lastUse = clock
            entries[object] = e
            return true
        }
        guard present else { return false }
        let fd = open(path(object), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let count = min(Int(range.count), buffer.count)
        var done = 0
        while done < count {
            let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(range.lowerBound) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        lock.withLock { hitBytes += Int64(count) }
        return true
    }

    /// Keeps `bytes`, which start on a block boundary and end on one or at the object's end.
    public func write(object: UInt64, range: Range<Int64>, bytes: UnsafeRawBufferPointer) {
        guard !range.isEmpty, bytes.count == range.count else { return }
        let fd = open(path(object), O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = pwrite(fd, bytes.baseAddress, bytes.count, off_t(range.lowerBound))
        close(fd)
        guard written == bytes.count else { return }  // a full disk just means less cache
        var victims: [UInt64] = []
        lock.withLock {
            var e = entries[object] ?? Entry()
            for b in blocks(range) where !e.blocks.contains(b) { e.blocks.insert(b) }
            let before = e.bytes
            e.bytes = max(e.bytes, Int64(e.blocks.count) * blockSize)
            clock += 1
            e.lastUse = clock
            entries[object] = e
            used += e.bytes - before
            while used > capacity, let (victim, entry) = entries.filter({ $0.key != object }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
                entries[victim] = nil
                used -= entry.bytes
                victims.append(victim)
            }
        }
        for v in victims { unlink(path(v)) }
    }

    /// Drops an object (its version was deleted).
    public func forget(object: UInt64) {
        let known = lock.withLock { () -> Bool in
            guard let e = entries.removeValue(forKey: object) else { return false }
            used -= e.bytes
            return true
        }
        if known { unlink(path(object)) }
    }
}
