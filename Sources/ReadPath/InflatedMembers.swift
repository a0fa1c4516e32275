import Archive
import Foundation
import Glibc
import ModelStore

/// Compressed archive members inflated once, whole, into files of the disk cache, and read from
/// there: a loader reads a model's tensors in the model's order, not the file's, and each jump
/// back in a deflate stream would inflate again from an access point (a 1 GiB deflated zip of
/// shards loaded 5.5-6.2x slower than a local directory). Here one thread inflates the member
/// sequentially into `<cache>/objects/<id>.data` while readers wait for the ranges they need,
/// served from the file (spliced); the CRC-32 is checked as the bytes are written, and the last
/// byte is readable only once it matched, so no reader sees the whole of a damaged member. Once
/// complete, the file is the member's `wholeFile` (FUSE passthrough), and later opens — after a
/// remount too — read it with no inflating at all.
///
/// The filler stays at most `lead` ahead of what readers asked for (doubling as they read on), so
/// a peek at a member's first bytes does not inflate all of it. The file is counted in the disk
/// cache's capacity and evicted under its LRU; a member larger than half of it is read as before.
///
/// A zip member whose compressed bytes lie whole in a local file (the local store's object, a
/// complete copy in the disk cache) is streamed by zlib only while readers peek at its first
/// `peek` bytes: once they want more, libdeflate inflates all of it in one call (several times
/// zlib's pace), the compressed range and a new file for the member both mapped, and its CRC-32
/// is checked before any byte past what zlib wrote is readable. The new file, not the one readers
/// are reading: libdeflate's fast loop writes words past where it is and puts the right bytes
/// there later, so bytes readers were already given would be wrong for a moment. Anything libdeflate does not take (damage, a
/// size that does not match) goes on with zlib, which names the damage as before. A `.tar.gz`
/// member streams: libdeflate cannot start at an access point (no window, no bit offset).
public final class InflatedMembers: @unchecked Sendable {
    public let disk: DiskCache
    /// Members smaller than this are inflated as they are read (``InflatingReader``): a file
    /// each would cost more than inflating them twice. (Settable for tests of small fixtures.)
    public var smallest: Int64 {
        get { smallestSize.withLock { $0 } }
        set { smallestSize.withLock { $0 = newValue } }
    }
    private let smallestSize = Locked<Int64>(1 << 20)
    /// Once readers want more than this of a member, the rest is inflated whole (when it can be);
    /// until then zlib streams it, so a peek at a member's header does not inflate all of it.
    /// (Settable for tests.)
    public var peek: Int64 {
        get { peekSize.withLock { $0 } }
        set { peekSize.withLock { $0 = newValue } }
    }
    private let peekSize = Locked<Int64>(1 << 20)
    /// Whole-buffer inflates at once, at most (a fill that finds none free streams on): one core each.
    static let wholeSlots = 2
    private let wholeBusy = Locked<Int>(0)
    /// How far the filler runs ahead of the furthest byte asked for, at most.
    static let maxLead: Int64 = 64 << 20

    /// The members being filled, or complete and open, by id: opens of one member share it.
    private let open = Locked<[UInt64: InflatedFile]>([:])
    /// Complete files this process wrote or checked: not read again to check them at open.
    private let checked = Locked<Set<UInt64>>([])
    private let counters = Locked<(inflated: Int64, reused: Int64, failed: Int64, whole: Int64)>((0, 0, 0, 0))
    private static let serial = Locked<Int>(0)

    public init(disk: DiskCache) {
        self.disk = disk
        // Partial files of mounts that died while filling: nothing can finish them.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: disk.directory)) ?? [] {
            guard let dot = name.range(of: ".partial-") else { continue }
            let pid = Int32(name[dot.upperBound...].prefix { $0 != "-" }) ?? 0
            if pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH) { unlink(disk.directory + "/" + name) }
        }
    }

    /// Bytes inflated into member files; complete files opened again; fills that found damage.
    public var bytesInflated: Int64 { counters.withLock { $0.inflated } }
    public var filesReused: Int64 { counters.withLock { $0.reused } }
    public var fillsFailed: Int64 { counters.withLock { $0.failed } }
    /// Members libdeflate inflated whole (in one call), before their CRC-32 was checked.
    public var wholeInflates: Int64 { counters.withLock { $0.whole } }

    /// The name of a member's inflated bytes: the archive's content (sha256 and size) and where
    /// in it the member lies, with its size and CRC-32, so the same name is always the same bytes.
    public static func id(sha256: String, objectSize: Int64, path: String, start: Int64, size: Int64, crc32: UInt32?) -> UInt64 {
        let crc = crc32.map { String($0) } ?? "-"
        let digest = Digest.sha256("modelfs-member\0\(sha256)\0\(objectSize)\0\(path)\0\(start)\0\(size)\0\(crc)")
        return digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } & ~(1 << 63)
    }

    /// How to inflate one member: its compressed bytes, where its stream starts, what it must be.
    public struct Member: Sendable {
        public var id: UInt64
        public var name: String
        public var size: Int64
        /// A zip member's CRC-32 (its bytes are checked against it as they are written).
        public var crc32: UInt32?
        /// A zip member: its deflate stream is its own and must end at `size`, having used all of
        /// `compressed`. A `.tar.gz` member is `size` bytes at `origin` of the whole stream.
        public var exact: Bool
        public var origin: Int64
        /// Where to start inflating (a `.tar.gz` index's access point before `origin`); nil: at 0.
        public var point: AccessPoint?
        public var check: MemberCheck?

        public init(id: UInt64, name: String, size: Int64, crc32: UInt32?, exact: Bool, origin: Int64 = 0,
                    point: AccessPoint? = nil, check: MemberCheck? = nil) {
            self.id = id; self.name = name; self.size = size; self.crc32 = crc32; self.exact = exact
            self.origin = origin; self.point = point; self.check = check
        }
    }

    /// A reader of `member`, inflated from `compressed` (a zip member's stored bytes, or a whole
    /// `.tar.gz`) into its file, or read from the file a earlier fill left; nil when the disk
    /// cache has no room for it (the caller inflates as it reads, as before).
    public func reader(_ member: Member, compressed: any ObjectReader, compressedSize: Int64) -> (any ObjectReader)? {
        let file: InflatedFile? = open.withLock { all in
            if let f = all[member.id] { f.users += 1; return f }
            if let f = existing(member) {
                f.users = 1
                all[member.id] = f
                return f
            }
            guard disk.reserve(object: member.id, bytes: member.size) else { return nil }
            guard let (fd, partial) = newPartialFile(member.id) else { disk.forget(object: member.id); return nil }
            let f = InflatedFile(member: member, fd: fd, partial: partial)
            f.users = 1
            all[member.id] = f
            let source = SliceReaderSource(SliceReader(compressed, start: 0, size: compressedSize))
            let thread = Thread { [self] in fill(f, from: source) }
            thread.name = "modelfs-inflate"
            thread.start()
            return f
        }
        return file.map { InflatedFileReader($0, owner: self) }
    }

    /// A new file to fill `id` into, named for this process (a later mount removes it if this one dies).
    private func newPartialFile(_ id: UInt64) -> (fd: Int32, path: String)? {
        let n = InflatedMembers.serial.withLock { $0 += 1; return $0 }
        let path = disk.directory + "/" + String(id, radix: 16) + ".partial-\(getpid())-\(n)"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        return fd >= 0 ? (fd, path) : nil
    }

    /// A complete file of `member` left by this or an earlier mount, checked: its size, and its
    /// CRC-32 (recorded on the file, and the archive's for a zip member) read whole once per
    /// process. Anything else is dropped.
    private func existing(_ member: Member) -> InflatedFile? {
        guard disk.touch(object: member.id) else { return nil }
        let path = disk.wholeFilePath(member.id)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }  // being filled by another process, or evicted
        var st = stat()
        var good = fstat(fd, &st) == 0 && Int64(st.st_size) == member.size
        if good && !checked.withLock({ $0.contains(member.id) }) {
            let recorded = recordedCRC(member.id)
            good = recorded != nil && (member.crc32 == nil || member.crc32 == recorded)
                && InflatedMembers.crc(of: fd, size: member.size) == recorded
            if good { checked.withLock { _ = $0.insert(member.id) } }
        }
        guard good else {
            close(fd)
            disk.forget(object: member.id)
            return nil
        }
        counters.withLock { $0.reused += 1 }
        return InflatedFile(complete: member, fd: fd)
    }

    /// The CRC-32 a fill recorded beside its file: `<id>.idx` (the disk cache removes it with the
    /// file; no block index is ever read under a member's id), "modelfs-crc32 " and 8 hex digits.
    private func crcPath(_ id: UInt64) -> String { disk.directory + "/" + String(id, radix: 16) + ".idx" }
    private static let crcTag = "modelfs-crc32 "

    private func recordedCRC(_ id: UInt64) -> UInt32? {
        guard let data = FileManager.default.contents(atPath: crcPath(id)), data.count == InflatedMembers.crcTag.utf8.count + 8,
              let text = String(data: data, encoding: .utf8), text.hasPrefix(InflatedMembers.crcTag) else { return nil }
        return UInt32(text.dropFirst(InflatedMembers.crcTag.utf8.count), radix: 16)
    }

    private func recordCRC(_ id: UInt64, _ crc: UInt32) -> Bool {
        let text = InflatedMembers.crcTag + String(format: "%08x", crc)
        return FileManager.default.createFile(atPath: crcPath(id), contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
    }

    static func crc(of fd: Int32, size: Int64) -> UInt32? {
        let scratch = ScratchBuffer.take(1 << 20)
        defer { ScratchBuffer.give(scratch) }
        var crc: UInt32 = 0
        var at: Int64 = 0
        while at < size {
            let n = pread(fd, scratch.memory.baseAddress, min(scratch.memory.count, Int(size - at)), off_t(at))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            crc = CRCCoverage.crc(UnsafeRawBufferPointer(rebasing: scratch.memory[0..<n]), continuing: crc)
            at += Int64(n)
        }
        return crc
    }

    /// One reader fewer; the last one of an incomplete file stops its fill (its partial file and
    /// reservation go), the last one of a complete file lets it go from the table.
    func release(_ file: InflatedFile) {
        let stop = open.withLock { all -> Bool in
            file.users -= 1
            guard file.users == 0 else { return false }
            if all[file.member.id] === file { all[file.member.id] = nil }
            return true
        }
        if stop { file.stop() }
    }

    /// Inflates the member into its file, sequentially, never more than `lead` ahead of the
    /// readers; checks it; makes it the complete file. On damage, every reader gets `EIO`.
    private func fill(_ f: InflatedFile, from source: SliceReaderSource) {
        let m = f.member
        let outcome: Result<UInt32, ArchiveError>
        do throws(ArchiveError) {
            outcome = .success(try inflate(f, from: source))
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success(let crc):
            if !recordCRC(m.id, crc) {
                // Kept for this mount only: without its recorded CRC no later mount can check it.
                f.finish(failure: nil)
                unlink(f.partial)
                return
            }
            checked.withLock { _ = $0.insert(m.id) }
            m.check?.markVerified()
            let path = disk.wholeFilePath(m.id)
            if rename(f.partial, path) != 0 || !disk.touch(object: m.id) { unlink(f.partial); unlink(path) }
            f.finish(failure: nil)
        case .failure(let error) where error.reason == InflatedFile.stopped:
            unlink(f.partial)
            disk.forget(object: m.id)
        case .failure(let error):
            unlink(f.partial)
            disk.forget(object: m.id)
            // The next open starts afresh (object storage may be back); these readers get the error.
            open.withLock { all in if all[m.id] === f { all[m.id] = nil } }
            if error.unreadable {
                f.finish(failure: source.lastFailure ?? StoreError(.io, "\(m.name): \(error.reason)"))
            } else {
                counters.withLock { $0.failed += 1 }
                m.check?.fail(error.reason)
                f.finish(failure: StoreError(.io, "\(m.name): \(error.reason)"))
            }
        }
    }

    /// The file holding `reader`'s bytes whole, and where in it they start.
    static func localFile(of reader: any ObjectReader) -> (fd: Int32, offset: Int64)? {
        var offset: Int64 = 0
        var r = reader
        while let slice = r as? SliceReader {
            offset += slice.start
            r = slice.base
        }
        return r.wholeFile.map { ($0, offset) }
    }

    private func takeWholeSlot() -> Bool {
        wholeBusy.withLock { busy in
            guard busy < InflatedMembers.wholeSlots else { return false }
            busy += 1
            return true
        }
    }

    /// The whole member inflated in one call from its compressed bytes at `local`, into a new
    /// file (blocks reserved first: a write fault on a full disk would be SIGBUS), and checked;
    /// the member's file from then on. Returns its CRC-32, or nil when libdeflate could not
    /// (damage, a size that does not match, no mapping): the streaming inflate goes on in the old
    /// file from where it is and gives the verdict. Readers of the old file keep reading it until
    /// the switch: what they were given is the new file's bytes too (one stream decodes one way).
    private func inflateWhole(_ f: InflatedFile, from local: (fd: Int32, offset: Int64), compressedSize: Int64) throws(ArchiveError) -> UInt32? {
        let m = f.member
        var st = stat()
        guard m.size > 0, compressedSize > 0, fstat(local.fd, &st) == 0, Int64(st.st_size) >= local.offset + compressedSize,
              let (fd, partial) = newPartialFile(m.id) else { return nil }
        var switched = false
        defer { if !switched { close(fd); unlink(partial) } }
        guard posix_fallocate(fd, 0, off_t(m.size)) == 0 else { return nil }
        let page = Int64(sysconf(Int32(_SC_PAGESIZE)))
        let mapStart = local.offset / page * page
        let inLength = Int(local.offset - mapStart + compressedSize)
        let failed = UnsafeMutableRawPointer(bitPattern: -1)
        guard let input = mmap(nil, inLength, PROT_READ, MAP_SHARED, local.fd, off_t(mapStart)), input != failed else { return nil }
        defer { munmap(input, inLength) }
        _ = madvise(input, inLength, MADV_SEQUENTIAL)
        _ = madvise(input, inLength, MADV_WILLNEED)
        let outLength = Int(m.size)
        guard let output = mmap(nil, outLength, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), output != failed else { return nil }
        defer { munmap(output, outLength) }
        let outcome = WholeInflate.raw(UnsafeRawBufferPointer(start: input + Int(local.offset - mapStart), count: Int(compressedSize)),
                                       into: UnsafeMutableRawBufferPointer(start: output, count: outLength))
        guard outcome == .inflated(consumed: Int(compressedSize)) else { return nil }
        counters.withLock { $0.whole += 1 }
        let crc = CRCCoverage.crc(UnsafeRawBufferPointer(start: output, count: outLength))
        try InflatedMembers.check(crc, m)
        unlink(f.switchTo(fd: fd, partial: partial))
        switched = true
        return crc
    }

    static func check(_ crc: UInt32, _ m: Member) throws(ArchiveError) {
        if let expected = m.crc32, crc != expected {
            throw ArchiveError("Bad CRC-32: \(ZipReader.hex(crc)) where the archive records \(ZipReader.hex(expected))")
        }
    }

    /// The inflate itself; returns the CRC-32 of the member's bytes.
    private func inflate(_ f: InflatedFile, from source: SliceReaderSource) throws(ArchiveError) -> UInt32 {
        let m = f.member
        let stream: Inflate
        if let point = m.point {
            stream = try Inflate(name: m.name, restoring: point, from: source)
            stream.gzipMembers = true  // a point of a `.tar.gz`, whose stream may be several gzip members
        } else {
            stream = try Inflate(name: m.name)
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        var crc: UInt32 = 0
        var written: Int64 = 0
        // What comes before the member in a `.tar.gz`'s stream (since the access point) is skipped.
        while stream.produced < m.origin {
            buffer.removeAll(keepingCapacity: true)
            try stream.inflate(upTo: Int(min(1 << 20, m.origin - stream.produced)), from: source, appendingTo: &buffer)
            guard !buffer.isEmpty else { throw ArchiveError("the archive's stream ends before the member starts") }
            counters.withLock { $0.inflated += Int64(buffer.count) }
        }
        var wholeTried = !(m.exact && m.point == nil && m.origin == 0)
        while written < m.size {
            try f.waitForDemand(written: written)
            // Readers want more than a peek: the rest in one call, when the compressed bytes are local and a slot is free.
            if !wholeTried && f.demand > peek, let local = InflatedMembers.localFile(of: source.reader), takeWholeSlot() {
                defer { wholeBusy.withLock { $0 -= 1 } }
                wholeTried = true
                if let crc = try inflateWhole(f, from: local, compressedSize: source.size) {
                    counters.withLock { $0.inflated += m.size - written }
                    return crc
                }
            }
            buffer.removeAll(keepingCapacity: true)
            try stream.inflate(upTo: Int(min(1 << 20, m.size - written)), from: source, appendingTo: &buffer)
            guard !buffer.isEmpty else {
                throw ArchiveError("the member inflates to \(written) bytes, fewer than its declared \(m.size)")
            }
            let failed = buffer.withUnsafeBytes { raw -> Int32? in
                var done = 0
                while done < raw.count {
                    let n = pwrite(f.fd, raw.baseAddress! + done, raw.count - done, off_t(written) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { return n < 0 ? errno : ENOSPC }
                    done += n
                }
                crc = CRCCoverage.crc(raw, continuing: crc)
                return nil
            }
            // A full disk is no verdict on the member (`unreadable`): its readers get EIO, not the archive.
            if let failed { throw ArchiveError("the disk cache could not be written: " + String(cString: strerror(failed)), unreadable: true) }
            written += Int64(buffer.count)
            counters.withLock { $0.inflated += Int64(buffer.count) }
            // The last byte waits for the verdict.
            if written < m.size { f.published(written) }
        }
        if m.exact {
            var more: [UInt8] = []
            try stream.inflate(upTo: 1, from: source, appendingTo: &more)
            guard more.isEmpty else { throw ArchiveError("the member inflates to more than its declared \(m.size) bytes") }
            guard stream.consumed == source.size else {
                throw ArchiveError("its deflate stream ends after \(stream.consumed) of its \(source.size) compressed bytes")
            }
        }
        try InflatedMembers.check(crc, m)
        return crc
    }
}

/// One member's file while it is filled (and while it is open): how much of it is written, what
/// readers want, and the verdict.
final class InflatedFile: @unchecked Sendable {
    let member: InflatedMembers.Member
    /// The file readers read, and its name while it is filled.
    var fd: Int32 { cond.withLock { current.fd } }
    var partial: String { cond.withLock { current.partial } }
    private var current: (fd: Int32, partial: String)
    /// Files this one was filled in before a switch: open until the last reader is gone, since
    /// a reply may still be spliced from one.
    private var retired: [Int32] = []
    /// Under `InflatedMembers.open`'s lock.
    var users = 0
    private let cond = NSCondition()
    private var ready: Int64 = 0
    private var wanted: Int64 = 0
    private var complete = false
    private var stopping = false
    private var failure: StoreError?
    static let stopped = "stopped: no reader is left"

    init(member: InflatedMembers.Member, fd: Int32, partial: String) {
        self.member = member; current = (fd, partial)
    }

    init(complete member: InflatedMembers.Member, fd: Int32) {
        self.member = member; current = (fd, "")
        ready = member.size
        complete = true
    }

    deinit {
        close(current.fd)
        retired.forEach { close($0) }
    }

    /// From now on readers read `fd` (filled whole, holding every byte the old file had);
    /// returns the old file's name.
    func switchTo(fd: Int32, partial: String) -> String {
        cond.withLock {
            let old = current
            retired.append(old.fd)
            current = (fd, partial)
            return old.partial
        }
    }

    var isComplete: Bool { cond.withLock { complete } }
    /// The furthest byte readers asked for.
    var demand: Int64 { cond.withLock { wanted } }

    /// Waits until `0..<end` is written and may be read; throws the member's damage.
    func waitFor(_ end: Int64) throws(StoreError) {
        cond.lock()
        defer { cond.unlock() }
        if end > wanted {
            wanted = end
            cond.broadcast()
        }
        while ready < end && failure == nil { cond.wait() }
        if let failure { throw failure }
    }

    /// The filler waits here while it is far enough ahead of the readers: `lead` is what they
    /// read so far (so a header read inflates a little, a loader's faults a lot), 1 to 64 MiB.
    func waitForDemand(written: Int64) throws(ArchiveError) {
        cond.lock()
        defer { cond.unlock() }
        while !stopping && written >= wanted + min(InflatedMembers.maxLead, max(1 << 20, wanted)) { cond.wait() }
        if stopping { throw ArchiveError(InflatedFile.stopped) }
    }

    func published(_ written: Int64) {
        cond.withLock {
            ready = written
            cond.broadcast()
        }
    }

    func finish(failure: StoreError?) {
        cond.withLock {
            if let failure { self.failure = failure } else { ready = member.size; complete = true }
            cond.broadcast()
        }
    }

    func stop() {
        cond.withLock {
            stopping = true
            cond.broadcast()
        }
    }
}

/// One open of an inflated member: its reads wait for the filler, then come from the file.
final class InflatedFileReader: ObjectReader {
    let file: InflatedFile
    let owner: InflatedMembers

    init(_ file: InflatedFile, owner: InflatedMembers) { self.file = file; self.owner = owner }

    deinit { owner.release(file) }

    func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        let size = file.member.size
        guard offset >= 0, offset < size, length > 0 else { return .bytes([]) }
        let count = Int(min(Int64(length), size - offset))
        try file.waitFor(offset + Int64(count))
        return .file(descriptor: file.fd, offset: offset, count: count)
    }

    /// Once complete and checked, the file is the member, byte for byte.
    var wholeFile: Int32? { file.isComplete ? file.fd : nil }
}
