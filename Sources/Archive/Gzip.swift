import Foundation

/// The index of a `.tar.gz`: one pass inflating the gzip stream, reading the tar headers from
/// the bytes as they come out, and keeping an access point every `spacing` bytes of output (at
/// the first deflate block boundary past it), so that a member can later be inflated from the
/// nearest point before it instead of from the start.
public enum GzipTarReader {
    /// Output between access points; doubled (every other point dropped) past `maxPoints`.
    public static let spacing: Int64 = 8 << 20
    public static let maxPoints = 512
    /// A member at least this large also gets a point at a deflate block boundary shortly before
    /// its data (the first within `nearHeader` of it): one member's read then inflates nothing of
    /// the one before it (points every 8 MiB alone cost a 64 MiB member's read up to 8 MiB more).
    public static let memberPoint: Int64 = 4 << 20
    static let nearHeader: Int64 = 128 << 10

    public static func index(_ source: some ByteSource) throws(ArchiveError) -> ArchiveIndex {
        let stream = try GzipStream(source)
        let index: ArchiveIndex
        do { index = try TarReader.index(stream) } catch {
            if let failure = stream.failure, stream.produced == 0 { throw ArchiveError("not a gzip stream: \(failure.reason)") }
            throw error
        }
        return try finish(index, stream)
    }

    private static func finish(_ tar: ArchiveIndex, _ stream: GzipStream) throws(ArchiveError) -> ArchiveIndex {
        if stream.produced == 0, let failure = stream.failure { throw ArchiveError("not a gzip stream: \(failure.reason)") }
        var index = tar
        // Inflated to the end: every member's trailer checked, and what a truncated stream cut off.
        try stream.drain()
        var notes = index.notes ?? []
        if let failure = stream.failure {
            if stream.checkFailed {
                // Which member's bytes are wrong no one can tell: none is served.
                index.damage = "the gzip stream is damaged: \(failure.reason); no member is served"
            } else {
                notes.append("the compressed stream stops early: \(failure.reason)")
            }
        }
        if let garbage = stream.trailingGarbage { notes.append("bytes after the gzip stream (from \(garbage)) are not gzip, ignored") }
        index.notes = notes.isEmpty ? nil : notes
        index.cut(at: stream.produced)
        index.kind = .tgz
        index.points = stream.points
        index.inflatedSize = stream.produced
        return index
    }
}

/// The uncompressed bytes of a gzip stream, readable forward only (the tar reader never looks
/// back), with access points taken along the way.
final class GzipStream: ByteSource, @unchecked Sendable {
    // @unchecked: used by one index build at a time, on one thread.
    let source: any ByteSource
    private let inflate: Inflate
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    private(set) var points: [AccessPoint] = []
    private var spacing = GzipTarReader.spacing
    /// A block boundary just before the last header read, kept if its member proves large.
    private var beforeData: (point: AccessPoint, header: Int64)?

    init(_ source: some ByteSource) throws(ArchiveError) {
        self.source = source
        inflate = try Inflate(name: "the gzip stream", framing: .gzip)
    }

    /// Unknown until the end: reads past it come back short.
    var size: Int64 { Int64.max / 4 }
    var produced: Int64 { inflate.produced }
    var checkFailed: Bool { inflate.checkFailed }
    var trailingGarbage: Int64? { inflate.trailingGarbage }

    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= bufferStart else { throw ArchiveError("the gzip stream is read forward only") }
        // The next header far past the last one: the member between them is large.
        if let kept = beforeData, offset - kept.header >= GzipTarReader.memberPoint {
            add(kept.point)
            beforeData = nil
        }
        let header = count <= 512
        // What lies before `offset` is never read again.
        let drop = Int(min(Int64(buffer.count), offset - bufferStart))
        if drop > 0 { buffer.removeFirst(drop); bufferStart += Int64(drop) }
        while bufferStart + Int64(buffer.count) < offset + Int64(count), !inflate.ended, failure == nil {
            try step()
            let end = offset + Int64(count)
            // One point per header (a copy of zlib's window each): the first boundary near it.
            if header, beforeData?.header != offset, inflate.produced <= end, end - inflate.produced <= GzipTarReader.nearHeader,
               inflate.produced - (points.last?.uncompressed ?? 0) >= GzipTarReader.memberPoint / 4,
               let point = inflate.accessPoint() {
                beforeData = (point, offset)
            }
            let drop = Int(min(Int64(buffer.count), offset - bufferStart))
            if drop > 0 { buffer.removeFirst(drop); bufferStart += Int64(drop) }
        }
        let from = Int(offset - bufferStart)
        let to = min(buffer.count, from + count)
        return from < to ? Array(buffer[from..<to]) : []
    }

    /// Why the stream stopped before its end, if it did.
    private(set) var failure: ArchiveError?

    /// Inflates the rest (to measure it and to find where it is damaged).
    func drain() throws(ArchiveError) {
        while !inflate.ended, failure == nil {
            buffer.removeAll(keepingCapacity: true)
            bufferStart = inflate.produced
            try step()
        }
    }

    /// Inflates a little more. A damaged or truncated stream is no error here: what came out so
    /// far stands and the rest reads short (the tar reader says what that cut off); only object
    /// storage failing is.
    private func step() throws(ArchiveError) {
        do {
            try inflate.inflate(upTo: 1 << 20, from: source, appendingTo: &buffer, stopAtBlocks: true)
        } catch {
            if error.unreadable { throw error }
            failure = error
            return
        }
        if let last = points.last?.uncompressed, inflate.produced - last < spacing { return }
        guard let point = inflate.accessPoint() else { return }
        add(point)
    }

    /// Keeps `point` in order; past `maxPoints`, every other one goes and the spacing doubles.
    private func add(_ point: AccessPoint) {
        let at = points.firstIndex { $0.uncompressed >= point.uncompressed } ?? points.count
        guard at == points.count || points[at].uncompressed != point.uncompressed else { return }
        points.insert(point, at: at)
        if points.count > GzipTarReader.maxPoints {
            points = stride(from: 0, to: points.count, by: 2).map { points[$0] }
            spacing *= 2
        }
    }
}
