import Foundation
import CDeflate
import Glibc
import ModelStore

/// The second level under the memory cache: fetched bytes also land on local disk, one sparse
/// data file per object, up to a size cap (least recently used objects go first), so re-reads
/// larger than the memory budget — and re-reads after a remount or a restart — come from disk.
///
/// Objects are named by what they hold (``ObjectIdentity``: the ready version's sha256 and size),
/// never by inode or catalog id, so the directory stays valid across mounts and may be shared by
/// every mount on the node that names it: same name, same bytes, whichever catalog or bucket they
/// came from. Each block's checksum is kept beside the data (`<id>.idx`, appended under `flock`), and
/// a block that is missing, truncated or not what its checksum says is dropped and fetched again,
/// never served. The checksum covers the block's identity as well as its bytes — the object's id
/// (the digest of its sha256 and size) and the block's offset — so a block file and index copied
/// or moved under another object's name, or a record moved to another offset, never check out.
public final class DiskCache: @unchecked Sendable {
    public let directory: String
    public let capacity: Int64
    let blockSize: Int64

    private struct Entry {
        /// Block index → checksum of its bytes.
        var blocks: [Int64: UInt64] = [:]
        var bytes: Int64 = 0
        var lastUse: UInt64 = 0
        var loaded = false
    }

    private let lock = NSLock()
    private var entries: [UInt64: Entry] = [:]
    private var used: Int64 = 0
    private var clock: UInt64 = 0
    private var hitBytes: Int64 = 0
    private var dropped: Int64 = 0
    /// Objects a whole-object fetch is filling or serving (``WholeFetch``): never evicted while
    /// one is open, since their readers serve straight from the data file. Count of holders.
    private var pinned: [UInt64: Int] = [:]
    /// Objects whose every block landed and checked out in this process, and the data file that
    /// holds them: that file may be handed to the kernel whole. The file, not the name: another
    /// mount of a shared directory may evict the object and write some of it again under it.
    private var verified: [UInt64: FileID] = [:]

    /// Which file a descriptor or a path is, as it was: its inode, and its size and mtime, since
    /// a file system gives a removed file's inode number to the next file made (another mount's
    /// partial copy under the same name). A complete copy is never written again (``keep``), so
    /// its size and mtime stay.
    struct FileID: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, modified: Int64, modifiedNanoseconds: Int64
        init(_ st: stat) {
            device = UInt64(st.st_dev); inode = UInt64(st.st_ino); size = Int64(st.st_size)
            modified = Int64(st.st_mtim.tv_sec); modifiedNanoseconds = Int64(st.st_mtim.tv_nsec)
        }
        init?(fd: Int32) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return nil }
            self.init(st)
        }
        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            self.init(st)
        }
    }

    public init(directory: String, capacity: Int64, blockSize: Int) throws(StoreError) {
        self.directory = directory + "/objects"
        self.capacity = capacity
        self.blockSize = Int64(blockSize)
        // A directory that cannot be written to (read-only, another user's) would fail every
        // block silently: say so now, once, so the mount reads without it.
        let refused = {
            StoreError(.io, "cache directory \(directory) cannot be written to: " + String(cString: strerror(errno)))
        }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        guard mkdir(self.directory, 0o700) == 0 || errno == EEXIST else { throw refused() }
        let probe = self.directory + "/.probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw refused() }
        close(fd)
        unlink(probe)
        // What earlier mounts left: known by size and age; their blocks are read on first use.
        var found: [(UInt64, Int64, Double)] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: self.directory)) ?? [] where name.hasSuffix(".data") {
            guard let id = UInt64(name.dropLast(5), radix: 16) else { continue }
            var st = stat()
            guard stat(self.directory + "/" + name, &st) == 0 else { continue }
            found.append((id, Int64(st.st_blocks) * 512, Double(st.st_mtim.tv_sec)))
        }
        for (id, bytes, _) in found.sorted(by: { $0.2 < $1.2 }) {
            clock += 1
            entries[id] = Entry(bytes: bytes, lastUse: clock)
            used += bytes
        }
        evict(keeping: nil)
    }

    public var bytesUsed: Int64 { lock.withLock { used } }
    public var bytesServed: Int64 { lock.withLock { hitBytes } }
    /// Blocks found truncated or corrupt, dropped and fetched again.
    public var blocksDropped: Int64 { lock.withLock { dropped } }

    fileprivate func dataPath(_ object: UInt64) -> String { directory + "/" + String(object, radix: 16) + ".data" }
    fileprivate func indexPath(_ object: UInt64) -> String { directory + "/" + String(object, radix: 16) + ".idx" }

    private func blocks(_ range: Range<Int64>) -> ClosedRange<Int64> {
        (range.lowerBound / blockSize)...((range.upperBound - 1) / blockSize)
    }

    /// The block's bytes bound to where they belong: object and offset go in with the bytes. An
    /// Adler-32 of them (libdeflate: AVX2, about 70 GB/s here), not a cryptographic hash: it
    /// catches a flipped bit, a torn write or a block under the wrong name, and a whole-object
    /// load checks every byte it fetches. SHA-256 was 40% of the mount's CPU there, and even
    /// libdeflate's CRC-32 (PCLMUL, about 11 GB/s here) a sixth of it; over a 64 KiB block an
    /// Adler-32 misses nothing those threats make. Anyone able to write the cache directory
    /// could rewrite the index as well, so a hash without a key never stopped a forger. The top
    /// half names the format (``checksumFormat``).
    static func checksum(object: UInt64, block: Int64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var where_ = (UInt64(0x6d6f64656c66732d).littleEndian, object.littleEndian, UInt64(bitPattern: block).littleEndian)
        return withUnsafeBytes(of: &where_) { tag -> UInt64 in
            var sum = libdeflate_adler32(1, tag.baseAddress, tag.count)
            if let base = bytes.baseAddress, bytes.count > 0 { sum = libdeflate_adler32(sum, base, bytes.count) }
            return checksumFormat | UInt64(sum)
        }
    }

    /// The top half of every checksum recorded now ("ADL1"). Records of an earlier format (a
    /// CRC-32 and an Adler-32) never have it: they are ignored, so their blocks are fetched again.
    static let checksumFormat: UInt64 = 0x4144_4C31 << 32

    /// Reads the object's index file (blocks written by this or another mount).
    private func loadIndex(_ object: UInt64) -> [Int64: UInt64] {
        guard let data = FileManager.default.contents(atPath: indexPath(object)) else { return [:] }
        var blocks: [Int64: UInt64] = [:]
        data.withUnsafeBytes { raw in
            var at = 0
            while at + 16 <= raw.count {
                let block = raw.loadUnaligned(fromByteOffset: at, as: Int64.self)
                let sum = raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)
                if sum & 0xFFFF_FFFF_0000_0000 == Self.checksumFormat { blocks[block] = sum }
                at += 16
            }
        }
        return blocks
    }

    /// The entry of `object`, its index loaded; nil when nothing of it is cached.
    private func entry(_ object: UInt64) -> Entry? {
        if let e = lock.withLock({ entries[object] }), e.loaded { return e }
        let blocks = loadIndex(object)
        return lock.withLock {
            let known = entries[object] != nil
            var e = entries[object] ?? Entry()
            for (b, sum) in blocks where e.blocks[b] == nil { e.blocks[b] = sum }
            e.loaded = true
            // An entry already known (held for a whole fetch) remembers its index was read.
            if known || !e.blocks.isEmpty { entries[object] = e }
            return e.blocks.isEmpty ? nil : e
        }
    }

    /// Fills `buffer` with `range` when every block of it is on disk and checks out; false
    /// otherwise (a bad block is forgotten, so it is fetched again). Read from `file` when given
    /// (a whole fetch's data file: what its readers will read), else from the object's data file.
    public func read(object: UInt64, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer, file: Int32? = nil) -> Bool {
        guard !range.isEmpty else { return true }
        guard let e = entry(object), blocks(range).allSatisfy({ e.blocks[$0] != nil }) else { return false }
        let fd = file ?? open(dataPath(object), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { forget(object: object); return false }
        defer { if file == nil { close(fd) } }
        let count = min(Int(range.count), buffer.count)
        var done = 0
        while done < count {
            let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(range.lowerBound) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        // Every block must be what its checksum says: a truncated file or a flipped byte is a miss.
        for b in blocks(range) {
            let start = Int(b * blockSize - range.lowerBound)
            let end = min(start + Int(blockSize), count)
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
            guard end <= done, Self.checksum(object: object, block: b, bytes) == e.blocks[b] else {
                lock.withLock {
                    entries[object]?.blocks[b] = nil
                    dropped += 1
                }
                dropComplete(object: object)
                return false
            }
        }
        lock.withLock {
            clock += 1
            entries[object]?.lastUse = clock
            hitBytes += Int64(count)
        }
        return true
    }

    /// Keeps `bytes`, which start on a block boundary and end on one or at the object's end.
    /// False when they could not be kept (a full disk, a directory gone).
    @discardableResult
    public func write(object: UInt64, range: Range<Int64>, bytes: UnsafeRawBufferPointer) -> Bool {
        Writer(cache: self, object: object).write(range: range, bytes: bytes)
    }

    /// Keeps one object's blocks as they come: its data file and index stay open from one write
    /// to the next (a whole fetch lands a segment in many pieces). One thread at a time.
    final class Writer {
        let cache: DiskCache
        let object: UInt64
        private var data: Int32 = -1
        private var index: Int32 = -1
        /// The data file was given (a whole fetch's, which its readers read): written, never closed here.
        private let borrowed: Bool

        /// Writes into `data` when given (a whole fetch's data file, open for writing), else into
        /// the object's data file, opened at the first write.
        init(cache: DiskCache, object: UInt64, data: Int32? = nil) {
            self.cache = cache; self.object = object
            self.data = data ?? -1
            borrowed = data != nil
        }

        deinit {
            if data >= 0 && !borrowed { close(data) }
            if index >= 0 { close(index) }
        }

        /// ``DiskCache/write(object:range:bytes:)``.
        func write(range: Range<Int64>, bytes: UnsafeRawBufferPointer) -> Bool {
            guard !range.isEmpty, bytes.count == range.count else { return false }
            return cache.keep(object: object, range: range, bytes: bytes) { records throws(Refusal) in
                // Opened at the first write that needs them: nothing is created for bytes kept already.
                if index < 0 { index = open(cache.indexPath(object), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600) }
                guard index >= 0 else { throw Refusal() }
                if data < 0 { data = open(cache.dataPath(object), O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
                guard data >= 0 else { throw Refusal() }
                // Data first, then the records that vouch for it. Writers of one object share the lock
                // (their blocks are other blocks or the same bytes, and each append of records is one
                // write): a whole fetch's streams copy in parallel, not one after another. Flushing a
                // complete copy and removing one take it alone.
                flock(index, LOCK_SH)
                defer { flock(index, LOCK_UN) }
                let written = pwrite(data, bytes.baseAddress, bytes.count, off_t(range.lowerBound))
                guard written == bytes.count else { throw Refusal() }  // a full disk just means less cache
                guard records.withUnsafeBytes({ Glibc.write(index, $0.baseAddress, $0.count) }) == records.count else { throw Refusal() }
            }
        }
    }

    struct Refusal: Error {}

    /// Checksums the blocks of `bytes`, makes room for them, has `store` write them and their
    /// index records, then counts them as kept.
    private func keep(object: UInt64, range: Range<Int64>, bytes: UnsafeRawBufferPointer,
                      store: ([UInt8]) throws(Refusal) -> Void) -> Bool {
        var records: [UInt8] = []
        var sums: [(Int64, UInt64)] = []
        for b in blocks(range) {
            let start = Int(b * blockSize - range.lowerBound)
            let end = min(start + Int(blockSize), bytes.count)
            let sum = Self.checksum(object: object, block: b, UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            sums.append((b, sum))
            withUnsafeBytes(of: b) { records += $0 }
            withUnsafeBytes(of: sum) { records += $0 }
        }
        // Blocks already kept as they are (a memory-path copy landing after a whole fetch) are not
        // written again: the data file of a complete copy keeps the mtime its record names.
        if lock.withLock({ sums.allSatisfy { entries[object]?.blocks[$0.0] == $0.1 } }) { return true }
        // Room first: an object larger than the cache keeps what fits, never more.
        guard makeRoom(object: object, range: range) else { return false }
        do throws(Refusal) { try store(records) } catch { return false }
        lock.withLock {
            // In place: a large object's block table is not copied on every write.
            if entries[object] == nil { entries[object] = Entry() }
            for (b, sum) in sums { entries[object]!.blocks[b] = sum }
            let before = entries[object]!.bytes
            entries[object]!.bytes = max(before, Int64(entries[object]!.blocks.count) * blockSize)
            clock += 1
            entries[object]!.lastUse = clock
            used += entries[object]!.bytes - before
        }
        evict(keeping: object)
        return true
    }

    // MARK: Whole objects (``WholeFetch``)

    /// Whether every block of `range` is on disk by the index (not yet checked).
    public func has(object: UInt64, range: Range<Int64>) -> Bool {
        guard !range.isEmpty else { return true }
        guard let e = entry(object) else { return false }
        return blocks(range).allSatisfy { e.blocks[$0] != nil }
    }

    /// From `at` (a block's start) up to `end`: whether its first block is on disk by the index
    /// (not yet checked), and where the run of blocks alike ends. One look at the index per run.
    func run(object: UInt64, from at: Int64, to end: Int64) -> (present: Bool, end: Int64) {
        let blocks = entry(object)?.blocks ?? [:]
        let present = blocks[at / blockSize] != nil
        var next = at / blockSize + 1
        while next * blockSize < end, (blocks[next] != nil) == present { next += 1 }
        return (present, min(next * blockSize, end))
    }

    /// Holds `object` (of `size` bytes) in the cache while a whole-object fetch uses its data
    /// file: false when it cannot fit beside the other objects held (then the reader reads as
    /// before, block by block through memory). Makes room for it now, so filling it evicts no
    /// object that is held.
    public func pin(object: UInt64, size: Int64) -> Bool {
        let fits = lock.withLock { () -> Bool in
            let held = pinned.keys.filter { $0 != object }.reduce(Int64(0)) { $0 + max(entries[$1]?.bytes ?? 0, 0) }
            guard size + held <= capacity else { return false }
            pinned[object, default: 0] += 1
            // Room for the whole object now: what it already has on disk counts toward it.
            used += max(0, size - (entries[object]?.bytes ?? 0))
            var e = entries[object] ?? Entry()
            clock += 1
            e.lastUse = clock
            e.bytes = max(e.bytes, size)
            entries[object] = e
            return true
        }
        if fits { evict(keeping: object) }
        return fits
    }

    public func unpin(object: UInt64) {
        lock.withLock {
            if let n = pinned[object] { pinned[object] = n > 1 ? n - 1 : nil }
        }
        evict(keeping: nil)
    }

    /// Records that every block of `object` landed and checked out in this process, in `file`.
    private func markVerified(object: UInt64, file: FileID) { lock.withLock { verified[object] = file } }

    /// Whether every block of `object` checked out in this process, and it is still kept.
    public func isVerified(object: UInt64) -> Bool { lock.withLock { verified[object] != nil && entries[object] != nil } }

    /// Whether `object` (of `size` bytes) is a checked whole copy in `fd` (its data file, open):
    /// checked in this process in that very file, or checked by an earlier mount that left its
    /// complete record (``markComplete``) and the file and index are still as that record saw
    /// them. Then it is trusted without reading it, as passthrough trusts a copy checked earlier
    /// in the same mount. Without `fd`, of the file under the object's name now (a first look:
    /// ``WholeFetches`` asks again of the file it opened).
    public func isVerified(object: UInt64, size: Int64, fd: Int32? = nil) -> Bool {
        guard let file = fd.flatMap(FileID.init(fd:)) ?? FileID(path: dataPath(object)) else { return false }
        if lock.withLock({ verified[object] == file && entries[object] != nil }) { return true }
        guard lock.withLock({ entries[object] != nil }), let record = readComplete(object),
              record == completeRecord(object: object, size: size, fd: fd) else { return false }
        markVerified(object: object, file: file)
        return true
    }

    /// Records durably that `object` is whole and every block checked out: its data and index
    /// are flushed first, then `<id>.done` names the object, its size, the data file's inode,
    /// size and mtime, and a digest of every block's checksum. A later mount trusts the copy
    /// while all of these still hold (``isVerified(object:size:)``): the data file rewritten or
    /// replaced changes its mtime or inode, the index changed changes the digest. A flipped bit
    /// on the disk changes neither; that is the trust a whole copy handed to the kernel already
    /// has (nothing checks what passthrough reads), and a daemon-path read that finds a bad block
    /// drops the record.
    ///
    /// `fd` is the data file the blocks were written to. Should another mount have evicted the
    /// object and written some of it again under its name meanwhile, the file under the name is
    /// not that one: nothing is recorded (and only `fd` is checked, for this process).
    public func markComplete(object: UInt64, size: Int64, fd: Int32) {
        guard let file = FileID(fd: fd) else { return }
        markVerified(object: object, file: file)
        let index = open(indexPath(object), O_WRONLY | O_CLOEXEC)
        guard index >= 0 else { return }
        defer { close(index) }
        // Under the object's lock: no other mount's write lands between the flush and the record.
        flock(index, LOCK_EX)
        defer { flock(index, LOCK_UN) }
        let flushed = fsync(fd) == 0 && fsync(index) == 0
        guard flushed, let record = completeRecord(object: object, size: size, fd: fd) else { return }
        let temporary = completePath(object) + ".\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let bytes = Array(record.utf8)
        let wrote = Glibc.write(fd, bytes, bytes.count) == bytes.count && fsync(fd) == 0
        close(fd)
        guard wrote, rename(temporary, completePath(object)) == 0 else { unlink(temporary); return }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }

    /// Drops the complete record of `object`: a block of it no longer checks out.
    public func dropComplete(object: UInt64) {
        lock.withLock { _ = verified.removeValue(forKey: object) }
        unlink(completePath(object))
    }

    private func completePath(_ object: UInt64) -> String { directory + "/" + String(object, radix: 16) + ".done" }

    private func readComplete(_ object: UInt64) -> String? {
        FileManager.default.contents(atPath: completePath(object)).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// The complete record `object` would have now: nil unless its data file is `size` bytes and
    /// its index vouches for every block. With `fd`, of that file, and nil unless it is still the
    /// one under the object's name.
    private func completeRecord(object: UInt64, size: Int64, fd: Int32? = nil) -> String? {
        var st = stat()
        guard size > 0, (fd.map { fstat($0, &st) } ?? stat(dataPath(object), &st)) == 0, Int64(st.st_size) == size else { return nil }
        if fd != nil {
            guard FileID(path: dataPath(object)) == FileID(st) else { return nil }
        }
        let blocks = loadIndex(object)
        let count = (size + blockSize - 1) / blockSize
        guard blocks.count == count else { return nil }
        var sums: [UInt64] = []
        sums.reserveCapacity(Int(count))
        for b in 0..<count {
            guard let sum = blocks[b] else { return nil }
            sums.append(sum.littleEndian)
        }
        let digest = sums.withUnsafeBytes { Self.checksum(object: object, block: -1, $0) }
        return "modelfs-complete 2 \(String(object, radix: 16)) \(size) \(st.st_dev) \(st.st_ino) "
            + "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(String(digest, radix: 16))\n"
    }

    /// The object's data file, opened for reading (nil when it is not there); with `create`, for
    /// reading and writing, made empty first when there is none (a whole fetch writes it).
    public func openData(object: UInt64, create: Bool = false) -> Int32? {
        let fd = open(dataPath(object), (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0o600)
        return fd >= 0 ? fd : nil
    }

    /// Evicts other objects (least recently used first, never a held one) until the blocks of
    /// `range` not yet kept fit under the cap; false when they cannot.
    private func makeRoom(object: UInt64, range: Range<Int64>) -> Bool {
        var victims: [UInt64] = []
        let fits = lock.withLock { () -> Bool in
            let e = entries[object]
            let newBlocks = Int64(blocks(range).filter { e?.blocks[$0] == nil }.count)
            let adding = max(0, (Int64(e?.blocks.count ?? 0) + newBlocks) * blockSize - (e?.bytes ?? 0))
            while used + adding > capacity,
                  let (victim, entry) = entries.filter({ $0.key != object && pinned[$0.key] == nil }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
                entries[victim] = nil
                verified[victim] = nil
                used -= entry.bytes
                victims.append(victim)
            }
            return used + adding <= capacity
        }
        for v in victims { remove(v) }
        return fits
    }

    private func evict(keeping: UInt64?) {
        var victims: [UInt64] = []
        lock.withLock {
            while used > capacity,
                  let (victim, entry) = entries.filter({ $0.key != keeping && pinned[$0.key] == nil }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
                entries[victim] = nil
                verified[victim] = nil
                used -= entry.bytes
                victims.append(victim)
            }
        }
        for v in victims { remove(v) }
    }

    private func remove(_ object: UInt64) {
        // Under the object's lock, so another mount's write does not land between the two unlinks.
        let index = open(indexPath(object), O_WRONLY | O_CLOEXEC)
        if index >= 0 { flock(index, LOCK_EX) }
        unlink(completePath(object))
        unlink(dataPath(object))
        unlink(indexPath(object))
        if index >= 0 { flock(index, LOCK_UN); close(index) }
    }

    /// Drops an object.
    public func forget(object: UInt64) {
        lock.withLock {
            if let e = entries.removeValue(forKey: object) { used -= e.bytes }
            verified[object] = nil
        }
        remove(object)
    }
}

// MARK: Whole files beside the blocks (added for archive members inflated whole; additive only)

extension DiskCache {
    /// Where the whole file named `object` lives once complete: an object's data file name, so it
    /// is counted at start-up, evicted under the same LRU and removed by `forget` like any other.
    public func wholeFilePath(_ object: UInt64) -> String { dataPath(object) }

    /// Makes room for `bytes` of `object` (the least recently used others go first) and counts
    /// them; false when they would take more than half the capacity (the caller does without).
    public func reserve(object: UInt64, bytes: Int64) -> Bool {
        guard bytes >= 0, bytes <= capacity / 2 else { return false }
        lock.withLock {
            var e = entries[object] ?? Entry()
            clock += 1
            e.lastUse = clock
            e.loaded = true
            used += bytes - e.bytes
            e.bytes = bytes
            entries[object] = e
        }
        evict(keeping: object)
        return true
    }

    /// Whether `object` is still counted (not evicted), marking it used.
    public func touch(object: UInt64) -> Bool {
        lock.withLock {
            guard entries[object] != nil else { return false }
            clock += 1
            entries[object]!.lastUse = clock
            return true
        }
    }

    // MARK: Preallocation (``WholeFetch``)

    /// Allocates the blocks of `object`'s data file for `size` bytes before a whole fetch fills
    /// it, keeping its size (`FALLOC_FL_KEEP_SIZE`): ext4 then maps each 8 MiB `pwrite` onto
    /// extents that exist instead of allocating them page by page (about a third less of the
    /// write's kernel CPU measured here). The bytes were counted already when the object was
    /// pinned. Best effort: a file system without `fallocate` just allocates as it writes.
    public func preallocate(fd: Int32, size: Int64) {
        guard size > 0, let call = Self.fallocateCall else { return }
        _ = call(fd, 0x01 /* FALLOC_FL_KEEP_SIZE */, 0, off_t(size))
    }

    /// glibc's `fallocate(2)`, which Swift's Glibc module does not import (it needs `_GNU_SOURCE`).
    private static let fallocateCall: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32)? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "fallocate") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
    }()
}
