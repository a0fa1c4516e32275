import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import Jobs
import ModelStore

/// A log file read from a byte offset, for a live tail over HTTP: `text/plain`, the bytes from
/// `offset` (at most ``piece`` of them: a client asks again from where it got to), and the file's
/// size so far in `X-Log-Size`. An offset at or past the end gives no bytes: nothing new yet.
struct LogTail: Encodable, Sendable {
    static let piece = 1 << 20
    static let sizeHeader = HTTPField.Name("X-Log-Size")!

    let bytes: [UInt8]
    let size: Int64

    /// The log of the mount's directory `dir` (a service's) from `offset`; nil when it has none.
    /// Read as the mount reads it (``Logs``): never through a link, never waiting on a FIFO, only
    /// a file of this process's user.
    static func read(directory dir: String, from offset: Int64) -> LogTail? {
        var st = stat()
        guard lstat(dir + "/log", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int64(st.st_size)
        return LogTail(bytes: offset < size ? Logs.read(dir, owners: [getuid()], offset: offset, size: Int(min(size - offset, Int64(piece)))) : [],
                       size: size)
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
