import CDeflate
import CZlib
import Foundation

/// A place in a deflate stream where inflating can start again without what came before: the
/// next compressed byte (and the bits of the byte before it that belong to the stream), the
/// offset of the output there, and the 32 KiB of output before it (zlib's window) — as zlib's
/// `zran.c` keeps them. Stored with a `.tar.gz` version's index.
public struct AccessPoint: Codable, Equatable, Sendable {
    public var compressed: Int64
    public var bits: Int
    public var uncompressed: Int64
    /// Base64 of the window.
    public var window: String
}

/// One inflate stream and where it is: `consumed` compressed bytes in (from the start of
/// `source`), `produced` bytes out. zlib keeps a pointer to its stream inside its state, so the
/// stream lives at a fixed address. Not thread-safe: one owner at a time.
public final class Inflate {
    public enum Framing: Sendable { case raw, gzip }
    private let z: UnsafeMutablePointer<z_stream>
    public private(set) var consumed: Int64 = 0
    public private(set) var produced: Int64 = 0
    public private(set) var ended = false
    /// A gzip stream of several members (what `gzip -d` and `tar` read as one): at each member's
    /// end the next one is inflated on, zero padding skipped; a raw stream restored inside such a
    /// stream steps over its member's trailer the same way.
    public var gzipMembers = false
    /// The gzip trailer (CRC-32 or length) did not match what was inflated.
    public private(set) var checkFailed = false
    /// Where bytes that are not a gzip member follow the stream (ignored, as `gzip -d` does), if any.
    public private(set) var trailingGarbage: Int64?
    private var framing: Framing
    private var input: [UInt8] = []
    private var used = 0
    /// Where inflate writes, reused from call to call.
    private var scratch: [UInt8] = []
    let name: String

    public init(name: String, framing: Framing = .raw) throws(ArchiveError) {
        self.name = name
        self.framing = framing
        gzipMembers = framing == .gzip
        z = .allocate(capacity: 1)
        z.initialize(to: z_stream())
        let rc = framing == .raw ? modelfs_inflate_init_raw(z) : modelfs_inflate_init_gzip(z)
        guard rc == Z_OK else {
            z.deallocate()
            throw ArchiveError("\(name): inflate could not start")
        }
    }

    /// A raw stream restarted at `point` of the deflate data in `source`.
    public convenience init(name: String, restoring point: AccessPoint, from source: some ByteSource) throws(ArchiveError) {
        try self.init(name: name)
        consumed = point.compressed
        produced = point.uncompressed
        if point.bits > 0 {
            let byte = try ZipReader.read(source, point.compressed - 1, 1)
            guard byte.count == 1, inflatePrime(z, Int32(point.bits), Int32(byte[0] >> (8 - point.bits))) == Z_OK else {
                throw ArchiveError("\(name): an access point that does not fit the archive")
            }
        }
        guard let window = Data(base64Encoded: point.window) else { throw ArchiveError("\(name): a damaged access point") }
        if !window.isEmpty {
            let rc = Array(window).withUnsafeBufferPointer { inflateSetDictionary(z, $0.baseAddress, UInt32($0.count)) }
            guard rc == Z_OK else { throw ArchiveError("\(name): an access point that does not fit the archive") }
        }
    }

    private init(copying other: Inflate) throws(ArchiveError) {
        name = other.name
        framing = other.framing
        gzipMembers = other.gzipMembers
        z = .allocate(capacity: 1)
        z.initialize(to: z_stream())
        guard inflateCopy(z, other.z) == Z_OK else {
            z.deallocate()
            throw ArchiveError("\(name): no memory for an access point")
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
    public func copy() throws(ArchiveError) -> Inflate { try Inflate(copying: self) }

    /// An access point here, when the stream stands at a block boundary (after a `stopAtBlocks`
    /// inflate), not in the last block.
    public func accessPoint() -> AccessPoint? {
        let type = z.pointee.data_type
        guard type & 128 != 0, type & 64 == 0, !ended else { return nil }
        var window = [UInt8](repeating: 0, count: 32 << 10)
        var length: UInt32 = 0
        guard window.withUnsafeMutableBufferPointer({ inflateGetDictionary(z, $0.baseAddress, &length) }) == Z_OK else { return nil }
        return AccessPoint(compressed: consumed, bits: Int(type & 7), uncompressed: produced,
                           window: Data(window[0..<Int(length)]).base64EncodedString())
    }

    /// Up to `count` more bytes appended to `result`; none at the stream's end. With
    /// `stopAtBlocks`, returns at each deflate block boundary too (see ``accessPoint()``).
    public func inflate(upTo count: Int, from source: some ByteSource, appendingTo result: inout [UInt8],
                        stopAtBlocks: Bool = false) throws(ArchiveError) {
        if ended || count == 0 { return }
        if scratch.count < count { scratch = [UInt8](repeating: 0, count: count) }
        var filled = 0
        defer { result.append(contentsOf: scratch[0..<filled]) }
        while filled < count && !ended {
            if used == input.count {
                let next = try ZipReader.read(source, consumed, Inflate.chunk)
                if next.isEmpty { throw ArchiveError("\(name): the compressed data ends before its stream does") }
                input = next
                used = 0
            }
            let before = input.count - used
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
                scratch.withUnsafeMutableBufferPointer { outBuf in
                    z.pointee.next_in = inBuf.baseAddress! + used
                    z.pointee.avail_in = UInt32(before)
                    z.pointee.next_out = outBuf.baseAddress! + filled
                    z.pointee.avail_out = UInt32(count - filled)
                    let status = CZlib.inflate(z, stopAtBlocks ? Z_BLOCK : Z_NO_FLUSH)
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
            case Z_STREAM_END: ended = try !nextGzipMember(from: source)
            case Z_OK: if stopAtBlocks && z.pointee.data_type & 128 != 0 { return }
            case Z_BUF_ERROR where took == 0 && gave == 0:
                throw ArchiveError("\(name): the deflate stream stalls (damaged)")
            case Z_BUF_ERROR: break
            case Z_DATA_ERROR where framing == .gzip && ["incorrect data check", "incorrect length check"].contains(message):
                checkFailed = true
                throw ArchiveError("\(name): the gzip trailer does not match the inflated bytes (\(message))")
            default:
                throw ArchiveError("\(name): the deflate data is damaged (zlib \(status)\(message.isEmpty ? "" : ": " + message))")
            }
        }
    }

    private var message: String { z.pointee.msg.map { String(cString: $0) } ?? "" }

    /// At the end of a deflate stream: whether another gzip member follows (and the stream now
    /// stands at its start), as `gzip -d` reads concatenated members. Zero bytes between or after
    /// members are padding; anything else ends the stream there.
    private func nextGzipMember(from source: some ByteSource) throws(ArchiveError) -> Bool {
        guard gzipMembers else { return false }
        if framing == .raw {
            // Restored inside a member: its 8-byte trailer was checked when the index was built.
            for _ in 0..<8 { guard try nextByte(from: source) != nil else { return false }; used += 1; consumed += 1 }
        }
        while let b = try nextByte(from: source), b == 0 { used += 1; consumed += 1 }
        guard let first = try nextByte(from: source) else { return false }
        let second = used + 1 < input.count ? input[used + 1] : try ZipReader.read(source, consumed + 1, 1).first
        guard first == 0x1f, second == 0x8b else {
            trailingGarbage = consumed
            return false
        }
        guard inflateReset2(z, 16 + MAX_WBITS) == Z_OK else { throw ArchiveError("\(name): inflate could not restart") }
        framing = .gzip
        return true
    }

    /// The next compressed byte, without taking it; nil at the end of the source.
    private func nextByte(from source: some ByteSource) throws(ArchiveError) -> UInt8? {
        if used == input.count {
            input = try ZipReader.read(source, consumed, Inflate.chunk)
            used = 0
        }
        return used < input.count ? input[used] : nil
    }

    static let chunk = 256 << 10
}

/// libdeflate's whole-buffer inflate of one raw deflate stream: all of its compressed bytes in,
/// all of its output out, in one call — several times zlib's streaming inflate, for a stream whose
/// compressed bytes are at hand whole and whose inflated size is known (a zip member's).
public enum WholeInflate {
    public enum Outcome: Equatable, Sendable {
        /// `output` holds the stream's bytes, all of it; the stream was the first `consumed`
        /// compressed bytes (rounded up to a byte).
        case inflated(consumed: Int)
        /// The stream inflates to fewer bytes than `output` holds.
        case shorter(produced: Int)
        /// The stream inflates to more bytes than `output` holds.
        case longer
        /// Not a valid deflate stream, or its compressed bytes end before it does.
        case damaged
        case noMemory
    }

    public static func raw(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Outcome {
        guard let d = libdeflate_alloc_decompressor() else { return .noMemory }
        defer { libdeflate_free_decompressor(d) }
        var consumed = 0, produced = 0
        let rc = libdeflate_deflate_decompress_ex(d, input.baseAddress, input.count, output.baseAddress, output.count,
                                                  &consumed, &produced)
        switch rc {
        case LIBDEFLATE_SUCCESS: return produced == output.count ? .inflated(consumed: consumed) : .shorter(produced: produced)
        case LIBDEFLATE_INSUFFICIENT_SPACE: return .longer
        default: return .damaged
        }
    }
}
