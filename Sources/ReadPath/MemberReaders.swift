import Archive
import Foundation
import ModelStore

/// A byte range of an object (an archive's stored member) read through the object's own reader,
/// so its blocks are the object's blocks: the same cache, prefetch and single-flight fetches.
/// Nothing is prefetched past the slice's end, or past `aheadEnd` (offsets in the slice) when the
/// caller knows it reads less: a member's sequential read fetched half again its size past it.
public final class SliceReader: ObjectReader {
    let base: any ObjectReader
    let start: Int64
    let size: Int64
    let aheadEnd: Int64

    public init(_ base: any ObjectReader, start: Int64, size: Int64, aheadEnd: Int64? = nil) {
        self.base = base; self.start = start; self.size = size
        self.aheadEnd = min(aheadEnd ?? size, size)
    }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        try read(offset: offset, size: length, aheadEnd: aheadEnd)
    }

    public func read(offset: Int64, size length: Int, aheadEnd limit: Int64) throws(StoreError) -> ReadReply {
        guard offset >= 0, offset < size, length > 0 else { return .bytes([]) }
        let count = Int(min(Int64(length), size - offset))
        switch try base.read(offset: start + offset, size: count, aheadEnd: start + min(limit, aheadEnd)) {
        case .file(let fd, let at, let n): return .file(descriptor: fd, offset: at, count: min(n, count))
        case let other: return other
        }
    }
}

/// Where a `.tar.gz` member's compressed bytes end, about: between the access points around the
/// end of its inflated bytes, at the same ratio, plus a margin for a ratio that varies. What a
/// member's reader prefetches stops there (an estimate short of the end leaves only the last
/// bytes fetched as the inflater asks for them).
public enum GzipSpans {
    public static func compressedEnd(of range: Range<Int64>, points: [AccessPoint], inflatedSize: Int64?, objectSize: Int64) -> Int64 {
        let end = range.upperBound
        let sorted = points.sorted { $0.uncompressed < $1.uncompressed }
        let before = sorted.last { $0.uncompressed <= end }.map { ($0.uncompressed, $0.compressed) } ?? (0, 0)
        guard let after = sorted.first(where: { $0.uncompressed > end }).map({ ($0.uncompressed, $0.compressed) })
                ?? inflatedSize.map({ ($0, objectSize) }), after.0 > before.0 else { return objectSize }
        let ratio = Double(after.1 - before.1) / Double(after.0 - before.0)
        let estimate = before.1 + Int64((Double(end - before.0) * ratio).rounded(.up))
        let margin = max(Int64(256) << 10, (after.1 - before.1) / 32)
        return min(objectSize, estimate + margin)
    }
}

/// A deflated member inflated as it is read. Sequential reads stream through one inflate; an
/// access point (zlib's state, copied) is kept every `spacing` bytes of output, so a read far
/// from the stream restarts from the nearest one rather than from the start (as zlib's `zran.c`
/// does); a `.tar.gz` member starts from the access points its index stored. The last `window`
/// bytes inflated stay for reads that come slightly out of order, as the kernel's parallel
/// readahead does. Never more than the declared size comes out; a zip member's deflate stream
/// must end exactly there, having used exactly its compressed size: one that inflates to more or
/// to less, or ends before or after its compressed bytes do, is an `EIO` (and its `check` fails).
public final class InflatingReader: ObjectReader {
    private let compressed: SliceReaderSource
    /// Where the member starts in the inflated stream (0 for a zip member) and its length.
    private let origin: Int64
    private let size: Int64
    private let name: String
    private let spacing: Int64
    private let stored: [AccessPoint]
    /// A zip member: its stream is its own, and must end where the archive says.
    private let exact: Bool
    private let check: MemberCheck?
    private let state = Locked(State())
    static let window = 4 << 20
    /// At most this many access points per open member (each about 43 KiB of zlib state).
    static let maxPoints = 64
    /// The most one read returns (FUSE asks for at most 1 MiB).
    static let maxRead = 1 << 20

    private struct State {
        var stream: Inflate?
        var points: [Inflate] = []
        /// The last bytes inflated, ending where `stream` stands (offsets in the inflated stream).
        var recent: [UInt8] = []
        var recentStart: Int64 = 0

        func slice(_ from: Int64, _ to: Int64) -> [UInt8]? {
            guard from >= recentStart, to <= recentStart + Int64(recent.count) else { return nil }
            return Array(recent[Int(from - recentStart)..<Int(to - recentStart)])
        }
    }

    /// A zip member's raw deflate data: `storedSize` bytes at `start` of the object.
    public init(_ base: any ObjectReader, start: Int64, storedSize: Int64, size: Int64, name: String, check: MemberCheck? = nil) {
        compressed = SliceReaderSource(SliceReader(base, start: start, size: storedSize))
        origin = 0
        stored = []
        exact = true
        self.check = check
        self.size = size
        self.name = name
        spacing = max(Int64(4 << 20), size / Int64(InflatingReader.maxPoints) + 1)
    }

    /// A member of a `.tar.gz` (`objectSize` bytes): `size` bytes at `origin` of its inflated
    /// stream, reached from the nearest of `points`; nothing prefetched past `compressedEnd`.
    public init(_ base: any ObjectReader, objectSize: Int64, points: [AccessPoint], origin: Int64, size: Int64, name: String,
                compressedEnd: Int64? = nil) {
        compressed = SliceReaderSource(SliceReader(base, start: 0, size: objectSize, aheadEnd: compressedEnd))
        self.origin = origin
        stored = points.sorted { $0.uncompressed < $1.uncompressed }
        exact = false
        check = nil
        self.size = size
        self.name = name
        spacing = max(Int64(4 << 20), size / Int64(InflatingReader.maxPoints) + 1)
    }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        guard offset >= 0, offset < size, length > 0 else { return .bytes([]) }
        let from = origin + offset
        let end = origin + min(size, offset + Int64(min(length, InflatingReader.maxRead)))
        do {
            return try state.withLock { (s) throws(ArchiveError) -> ReadReply in
                if let hit = s.slice(from, end) { return .bytes(hit) }
                // A read that starts in what is kept and runs past it goes on with the same stream:
                // restarting from an access point there re-read (and re-fetched) the compressed
                // bytes since it at every such read — with a `.tar.gz` member's origin off the
                // 1 MiB steps, one in every eight 128 KiB reads (3.4x its compressed size fetched).
                let kept = s.stream != nil && from >= s.recentStart && from <= s.recentStart + Int64(s.recent.count)
                if !kept { try position(&s, for: from) }
                while s.recentStart + Int64(s.recent.count) < end { try inflateMore(&s, until: end) }
                return .bytes(s.slice(from, end) ?? [])
            }
        } catch {
            if error.unreadable, let cause = compressed.lastFailure { throw cause }
            if !error.unreadable { check?.fail(error.reason) }
            throw StoreError(.io, "\(name): \(error.reason)")
        }
    }

    /// Puts the stream where it reaches `offset` by going forward: the current one when it is
    /// before `offset` and no access point is nearer, else the nearest point before it (one
    /// taken while reading, or one the archive's index stored).
    private func position(_ s: inout State, for offset: Int64) throws(ArchiveError) {
        let copy = s.points.last { $0.produced <= offset }
        let point = stored.last { $0.uncompressed <= offset }
        let bestStart = max(copy?.produced ?? -1, point?.uncompressed ?? -1, origin == 0 ? 0 : -1)
        if let current = s.stream, current.produced <= offset,
           offset - current.produced < spacing || bestStart <= current.produced { return }
        let fresh: Inflate
        if let copy, copy.produced >= (point?.uncompressed ?? -1) {
            fresh = try copy.copy()
        } else if let point {
            fresh = try Inflate(name: name, restoring: point, from: compressed)
            fresh.gzipMembers = true  // a point of a `.tar.gz`, whose stream may be several gzip members
        } else {
            fresh = try Inflate(name: name)
        }
        s.stream = fresh
        s.recent = []
        s.recentStart = fresh.produced
    }

    private func inflateMore(_ s: inout State, until end: Int64) throws(ArchiveError) {
        guard let stream = s.stream else { return }
        let want = Int(min(Int64(InflatingReader.maxRead), origin + size - stream.produced))
        let before = s.recent.count
        try stream.inflate(upTo: want, from: compressed, appendingTo: &s.recent)
        guard s.recent.count > before else {
            throw ArchiveError("the member inflates to \(stream.produced - origin) bytes, fewer than its declared \(size)")
        }
        if exact && stream.produced == size { try checkEnd(stream) }
        // Trimmed to the window only once it is twice as long: each byte is moved once.
        if s.recent.count > 2 * InflatingReader.window {
            let drop = s.recent.count - InflatingReader.window
            s.recent.removeFirst(drop)
            s.recentStart += Int64(drop)
        }
        if stream.produced >= (s.points.last?.produced ?? 0) + spacing, s.points.count < InflatingReader.maxPoints {
            s.points.append(try stream.copy())
        }
    }
}

extension InflatingReader {
    /// At a zip member's declared size its deflate stream must end, and there only, having used
    /// its compressed size exactly.
    private func checkEnd(_ stream: Inflate) throws(ArchiveError) {
        var more: [UInt8] = []
        try stream.inflate(upTo: 1, from: compressed, appendingTo: &more)
        guard more.isEmpty else { throw ArchiveError("the member inflates to more than its declared \(size) bytes") }
        guard stream.consumed == compressed.size else {
            throw ArchiveError("its deflate stream ends after \(stream.consumed) of its \(compressed.size) compressed bytes")
        }
    }
}

/// A slice of an object as the inflater's byte source; remembers the store's own error, so a
/// read that failed because object storage did is reported as what it was.
final class SliceReaderSource: ByteSource {
    let reader: SliceReader
    private let failure = Locked<StoreError?>(nil)

    init(_ reader: SliceReader) { self.reader = reader }

    var size: Int64 { reader.size }
    var lastFailure: StoreError? { failure.withLock { $0 } }

    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        do { return try reader.read(offset: offset, size: count).bytes } catch {
            failure.withLock { $0 = error }
            throw error
        }
    }
}

/// The verdict on one archive member's bytes, shared by every open of it: the CRC-32 of what the
/// readers saw (``CRCCoverage``), and, once it covers the member, whether it matches the
/// archive's; or why the member is damaged. A member found damaged stays so (every read `EIO`).
public final class MemberCheck: Sendable {
    public let size: Int64
    public let expected: UInt32?
    private struct State {
        var coverage = CRCCoverage()
        var verified = false
        var failure: String?
    }
    private let state = Locked(State())
    /// One reader fills the gaps at a time.
    private let filling = NSLock()

    /// `failure`: damage known before any read (a `.tar.gz` whose gzip check failed).
    public init(size: Int64, expected: UInt32?, failure: String? = nil) {
        self.size = size
        self.expected = expected
        state.withLock { $0.failure = failure }
        if expected == nil && failure == nil { state.withLock { $0.verified = true } }
        if size == 0, let expected, expected != 0 { fail("an empty member whose recorded CRC-32 is \(ZipReader.hex(expected)), not 0") }
    }

    public var failure: String? { state.withLock { $0.failure } }
    public var verified: Bool { state.withLock { $0.verified } }

    public func fail(_ reason: String) { state.withLock { if $0.failure == nil { $0.failure = reason } } }

    /// The member's bytes were read whole elsewhere (inflated into its file) and matched.
    func markVerified() { state.withLock { if $0.failure == nil { $0.verified = true; $0.coverage = CRCCoverage() } } }

    func add(_ bytes: [UInt8], at offset: Int64) { state.withLock { $0.coverage.add(bytes, at: offset) } }

    /// Counts a reply's bytes without changing how it is answered: the block cache's memory is
    /// checked where it lies, and a local file's range is read once into a buffer to be checked
    /// while the reply still splices it from the page cache (turning every reply into a copied
    /// array made a stored member's read 0.43x as fast).
    func add(_ reply: ReadReply, at offset: Int64) -> Int {
        switch reply {
        case .bytes(let b):
            add(b, at: offset)
            return b.count
        case .cached(let c):
            c.withBuffers { buffers in
                var at = offset
                for b in buffers {
                    state.withLock { $0.coverage.add(b, at: at) }
                    at += Int64(b.count)
                }
            }
            return c.count
        case .file(let fd, let fileOffset, let count):
            let scratch = ScratchBuffer.take(count)
            defer { ScratchBuffer.give(scratch) }
            let buffer = scratch.memory
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(fileOffset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            state.withLock { $0.coverage.add(UnsafeRawBufferPointer(rebasing: buffer[0..<done]), at: offset) }
            return done
        }
    }

    /// The verdict, reading through `reader` whatever the readers skipped. Throws the damage.
    func complete(through reader: any ObjectReader) throws(StoreError) {
        filling.lock()
        defer { filling.unlock() }
        if let failure { throw StoreError(.io, failure) }
        if verified { return }
        for gap in state.withLock({ $0.coverage.gaps(size: size) }) {
            var at = gap.lowerBound
            while at < gap.upperBound {
                let piece = try reader.read(offset: at, size: Int(min(Int64(1 << 20), gap.upperBound - at))).bytes
                guard !piece.isEmpty else { fail("the member's data ends at \(at) of its \(size) bytes"); break }
                add(piece, at: at)
                at += Int64(piece.count)
            }
        }
        let crc = state.withLock { $0.coverage.whole(size: size) }
        if let crc, crc == expected {
            state.withLock { $0.verified = true; $0.coverage = CRCCoverage() }
            return
        }
        if let crc { fail("Bad CRC-32: \(ZipReader.hex(crc)) where the archive records \(ZipReader.hex(expected ?? 0))") }
        throw StoreError(.io, failure ?? "the member could not be read whole to check its CRC-32")
    }
}

/// A member's reads checked against its ``MemberCheck``: a damaged member's reads are `EIO`; the
/// read that reaches the member's end gets the CRC-32 verdict (the gaps the readers left read
/// first), so no reader sees the whole of a member whose bytes are wrong without an error.
public final class VerifyingReader: ObjectReader {
    let base: any ObjectReader
    let check: MemberCheck
    let name: String

    public init(_ base: any ObjectReader, check: MemberCheck, name: String) { self.base = base; self.check = check; self.name = name }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        if let failure = check.failure { throw StoreError(.io, "\(name): \(failure)") }
        let reply = try base.read(offset: offset, size: length)
        if check.verified { return reply }
        let count = check.add(reply, at: offset)
        if offset + Int64(count) >= check.size && count > 0 {
            do { try check.complete(through: base) } catch { throw StoreError(.io, "\(name): \(error.message)") }
        }
        return reply
    }
}

/// Buffers a read's bytes are copied into to be checked, kept for the next read: a new 1 MiB
/// allocation per read is fresh pages from the kernel each time, and their faults and zeroing cost
/// more than the copy and the CRC together (perf: a stored member's read at 0.44x unchecked).
final class ScratchBuffer: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer
    private init(_ count: Int) { memory = .allocate(byteCount: count, alignment: 64) }
    deinit { memory.deallocate() }

    private static let kept = Locked<[ScratchBuffer]>([])
    private static let keptAtMost = 16

    static func take(_ count: Int) -> ScratchBuffer {
        let found = kept.withLock { all -> ScratchBuffer? in
            guard let i = all.firstIndex(where: { $0.memory.count >= count }) else { return nil }
            return all.remove(at: i)
        }
        return found ?? ScratchBuffer(max(count, 1 << 20))
    }

    static func give(_ buffer: ScratchBuffer) {
        kept.withLock { all in if all.count < keptAtMost { all.append(buffer) } }
    }
}
