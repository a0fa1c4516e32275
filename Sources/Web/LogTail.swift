import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import ModelStore

/// A log file read from a byte offset, for a live tail over HTTP: `text/plain`, the bytes from
/// `offset` (at most ``piece`` of them: a client asks again from where it got to), and the file's
/// size so far in `X-Log-Size`. An offset at or past the end gives no bytes: nothing new yet.
struct LogTail: Encodable, Sendable {
    static let piece = 1 << 20
    static let sizeHeader = HTTPField.Name("X-Log-Size")!

    let bytes: [UInt8]
    let size: Int64

    /// The log at `path` from `offset`; nil when there is no such regular file. Never follows a
    /// link nor waits on a FIFO: a command may have put anything in its directory.
    static func read(_ path: String, from offset: Int64) -> LogTail? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int64(st.st_size)
        let count = Int(max(0, min(size - offset, Int64(piece))))
        var bytes = [UInt8](repeating: 0, count: count)
        let got = count == 0 ? 0 : bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return LogTail(bytes: Array(bytes.prefix(max(0, got))), size: size)
    }

    /// `?offset=N`: a byte offset, 0 when not given.
    static func offset(_ query: [String: String]) throws(StoreError) -> Int64 {
        guard let text = query["offset"], !text.isEmpty else { return 0 }
        guard let n = Int64(text), n >= 0 else { throw StoreError.invalid("offset is a number of bytes from 0, not \(Names.printable(text))") }
        return n
    }

    /// As JSON (never sent: the route answers with the bytes) a tail is its size.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(["size": size])
    }
}

extension LogTail: OwnResponse {
    func response() -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8", LogTail.sizeHeader: "\(size)"],
                 body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// An answer that makes its own response (its bytes, its headers) rather than being sent as JSON.
protocol OwnResponse: Sendable {
    func response() -> Response
}

extension Download: OwnResponse {}
