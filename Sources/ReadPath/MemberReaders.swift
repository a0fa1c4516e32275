import CZlib
import Foundation
import ModelStore

/// A byte range of an object (an archive's stored member) read through the object's own reader,
/// so its blocks are the object's blocks: the same cache, prefetch and single-flight fetches.
public final class SliceReader: ObjectReader {
    let base: any ObjectReader
    let start: Int64
    let size: Int64

    public init(_ base: any ObjectReader, start: Int64, size: Int64) { self.base = base; self.start = start; self.size = size }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        guard offset >= 0, offset < size, length > 0 else { return .bytes([]) }
        let count = Int(min(Int64(length), size - offset))
        switch try base.read(offset: start + offset, size: count) {
        case .file(let fd, let at, let n): return .file(descriptor: fd, offset: at, count: min(n, count))
        case let other: return other
        }
    }
}

/// A deflated member inflated as it is read. Sequential reads stream through one inflate; an
/// access point (zlib's state, copied) is kept every `spacing` bytes of output, so a read far
/// from the stream restarts from the nearest one rather than from the start (as zlib's `zran.c`
/// does); the last `window` bytes inflated stay for reads that come slightly out of order, as
/// the kernel's parallel readahead does. Never more than the declared size comes out: a member
/// that inflates to more is cut there, one that inflates to less is an `EIO`.
public final class InflatingReader: ObjectReader {
    private let compressed: SliceReader
    private let size: Int64
    private let name: String
    private let spacing: Int64
    private let state = Locked(State())
    static let window = 4 << 20
    /// At most this many access points per open member (each about 43 KiB of zlib state).
    static let maxPoints = 64
    /// The most one read returns (FUSE asks for at most 1 MiB).
    static let maxRead = 1 << 20

    private struct State {
        var stream: Inflate?
        var points: [Inflate] = []
        /// The last bytes inflated, ending where `stream` stands.
        var recent: [UInt8] = []
        var recentStart: Int64 = 0

        func slice(_ from: Int64, _ to: Int64) -> [UInt8]? {
            guard from >= recentStart, to <= recentStart + Int64(recent.count) else { return nil }
            return Array(recent[Int(from - recentStart)..<Int(to - recentStart)])
        }
    }

    public init(_ base: any ObjectReader, start: Int64, storedSize: Int64, size: Int64, name: String) {
        compressed = SliceReader(base, start: start, size: storedSize)
        self.size = size
        self.name = name
        spacing = max(Int64(4 << 20), size / Int64(InflatingReader.maxPoints) + 1)
    }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        guard offset >= 0, offset < size, length > 0 else { return .bytes([]) }
        let end = min(size, offset + Int64(min(length, InflatingReader.maxRead)))
        return try state.withLock { (s) throws(StoreError) -> ReadReply in
            if let hit = s.slice(offset, end) { return .bytes(hit) }
            try position(&s, for: offset)
            while s.recentStart + Int64(s.recent.count) < end { try inflateMore(&s) }
            return .bytes(s.slice(offset, end) ?? [])
        }
    }

    /// Puts the stream where it reaches `offset` by going forward: the current one when it is
    /// before `offset` and no access point is nearer, else a copy of the nearest point before it.
    private func position(_ s: inout State, for offset: Int64) throws(StoreError) {
        let best = s.points.last { $0.produced <= offset }
        if let current = s.stream, current.produced <= offset,
           offset - current.produced < spacing || (best?.produced ?? 0) <= current.produced { return }
        let fresh: Inflate
        if let best { fresh = try best.copy() } else { fresh = try Inflate(name: name) }
        s.stream = fresh
        s.recent = []
        s.recentStart = fresh.produced
    }

    private func inflateMore(_ s: inout State) throws(StoreError) {
        guard let stream = s.stream else { return }
        let want = Int(min(Int64(InflatingReader.maxRead), size - stream.produced))
        let out = try stream.inflate(upTo: want, from: compressed)
        guard !out.isEmpty else {
            throw StoreError(.io, "\(name): the member inflates to \(stream.produced) bytes, fewer than its declared \(size)")
        }
        s.recent += out
        if s.recent.count > InflatingReader.window {
            let drop = s.recent.count - InflatingReader.window
            s.recent.removeFirst(drop)
            s.recentStart += Int64(drop)
        }
        if stream.produced >= (s.points.last?.produced ?? 0) + spacing, s.points.count < InflatingReader.maxPoints {
            s.points.append(try stream.copy())
        }
    }
}

/// One raw-deflate stream and where it is: `consumed` compressed bytes in, `produced` out.
/// zlib keeps a pointer to its stream inside its state, so the stream lives at a fixed address.
final class Inflate {
    private let z: UnsafeMutablePointer<z_stream>
    private(set) var consumed: Int64 = 0
    private(set) var produced: Int64 = 0
    private var ended = false
    private var input: [UInt8] = []
    private var used = 0
    let name: String

    init(name: String) throws(StoreError) {
        self.name = name
        z = .allocate(capacity: 1)
        z.initialize(to: z_stream())
        guard modelfs_inflate_init_raw(z) == Z_OK else {
            z.deallocate()
            throw StoreError(.io, "\(name): inflate could not start")
        }
    }

    private init(copying other: Inflate) throws(StoreError) {
        name = other.name
        z = .allocate(capacity: 1)
        z.initialize(to: z_stream())
        guard inflateCopy(z, other.z) == Z_OK else {
            z.deallocate()
            throw StoreError(.io, "\(name): no memory for an access point")
        }
        consumed = other.consumed
        produced = other.produced
        ended = other.ended
    }

    deinit {
        inflateEnd(z)
        z.deallocate()
    }

    /// A copy standing where this one stands; its input is read again from `consumed`.
    func copy() throws(StoreError) -> Inflate { try Inflate(copying: self) }

    /// Up to `count` more bytes; empty at the stream's end.
    func inflate(upTo count: Int, from source: SliceReader) throws(StoreError) -> [UInt8] {
        if ended || count == 0 { return [] }
        var out = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count && !ended {
            if used == input.count {
                let next = try source.read(offset: consumed, size: Inflate.chunk).bytes
                if next.isEmpty { throw StoreError(.io, "\(name): the member's compressed data ends before its stream does") }
                input = next
                used = 0
            }
            let before = input.count - used
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
                out.withUnsafeMutableBufferPointer { outBuf in
                    z.pointee.next_in = inBuf.baseAddress! + used
                    z.pointee.avail_in = UInt32(before)
                    z.pointee.next_out = outBuf.baseAddress! + filled
                    z.pointee.avail_out = UInt32(count - filled)
                    let status = CZlib.inflate(z, Z_NO_FLUSH)
                    z.pointee.next_in = nil
                    z.pointee.next_out = nil
                    return status
                }
            }
            let took = before - Int(z.pointee.avail_in)
            let gave = (count - filled) - Int(z.pointee.avail_out)
            used += took
            consumed += Int64(took)
            filled += gave
            produced += Int64(gave)
            switch status {
            case Z_STREAM_END: ended = true
            case Z_OK: break
            case Z_BUF_ERROR where took == 0 && gave == 0:
                throw StoreError(.io, "\(name): the deflate stream stalls (damaged)")
            case Z_BUF_ERROR: break
            default: throw StoreError(.io, "\(name): the member's deflate data is damaged (zlib \(status))")
            }
        }
        return Array(out[0..<filled])
    }

    static let chunk = 256 << 10
}
