import Foundation
import HTTPTypes
import Hummingbird
import ModelStore

/// A version's bytes, or one range of them (`Range: bytes=A-B`, `bytes=A-`, `bytes=-N`), streamed
/// from the object store in pieces: a 100 GiB version never sits in memory.
struct Download: Encodable, Sendable {
    static let piece: Int64 = 4 << 20

    let objects: any ObjectStore
    let key: String
    let fileName: String
    let size: Int64
    let sha256: String?
    /// nil: all of it (200); else the range asked for (206).
    let range: Range<Int64>?

    /// As JSON (never sent: the route answers with the bytes) a download is its facts.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(["file": fileName, "size": "\(size)"])
    }

    func response() -> Response {
        let part = range ?? 0..<size
        var headers: HTTPFields = [.contentType: "application/octet-stream", .acceptRanges: "bytes",
                                   .contentDisposition: "attachment; filename=\"\(fileName)\""]
        if let sha256 { headers[.eTag] = "\"\(sha256)\"" }
        if range != nil { headers[.contentRange] = "bytes \(part.lowerBound)-\(part.upperBound - 1)/\(size)" }
        let (objects, key) = (objects, key)
        let body = ResponseBody(contentLength: Int(part.count)) { writer in
            var offset = part.lowerBound
            while offset < part.upperBound {
                let piece = offset..<min(offset + Download.piece, part.upperBound)
                let bytes = try await offloaded { () throws -> [UInt8] in
                    do { return try objects.get(key, range: piece) } catch let e as ObjectStoreError { throw e.storeError }
                }
                try await writer.write(ByteBuffer(bytes: bytes))
                offset = piece.upperBound
            }
            try await writer.finish(nil)
        }
        return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: body)
    }

    /// The one range of a `Range` header over `size` bytes; nil for none (or one this server does
    /// not take: several ranges, other units: then the whole file, as RFC 9110 allows).
    /// Unsatisfiable (starting at or past the end) is an error: 416.
    static func range(_ header: String?, size: Int64) throws(WebError) -> Range<Int64>? {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        let unsatisfiable = WebError(.rangeNotSatisfiable, "the range \(spec) is not within the file's \(size) bytes")
        if first.isEmpty {
            guard let n = Int64(last), n > 0 else { return nil }
            guard size > 0 else { throw unsatisfiable }
            return max(0, size - n)..<size
        }
        guard let start = Int64(first), start >= 0 else { return nil }
        guard start < size else { throw unsatisfiable }
        if last.isEmpty { return start..<size }
        guard let end = Int64(last), end >= start else { return nil }
        return start..<min(end + 1, size)
    }
}
