import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A scripted HTTP/1.1 server on 127.0.0.1 for testing retries, truncation, stalls and connection
/// reuse without a real S3. Each request is answered by `handler`; connections are kept alive.
final class FakeHTTPServer: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var target: String
        var headers: [String: String]  // lower-cased names
        var body: [UInt8]
    }

    enum Action: Sendable {
        /// Answer with a status, headers and a body; Content-Length is added unless given.
        case respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
        /// The same, the body sent `piece` bytes at a time a millisecond apart: it arrives in parts.
        case trickle(status: Int, headers: [(String, String)] = [], body: [UInt8], piece: Int)
        /// Send these raw bytes, then close the connection.
        case raw([UInt8])
        /// Close the connection without answering.
        case close
        /// Say nothing for this long, then close.
        case stall(seconds: Double)
    }

    let port: Int
    private let listener: Int32
    private let handler: @Sendable (Request, Int) -> Action
    private let lock = NSLock()
    private var _requests: [Request] = []
    private var _connections = 0
    private var stopped = false
    /// Connections being served: stop() shuts them too. Left open, a kept-alive one went on
    /// answering with this server's handler after a later test's server got the same port, and
    /// the client's connection cache sent that test's requests to it.
    private var open: Set<Int32> = []

    init(handler: @escaping @Sendable (Request, Int) -> Action) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }
    var requests: [Request] { lock.withLock { _requests } }
    var connections: Int { lock.withLock { _connections } }

    /// Idempotent: closing the listener twice could close a descriptor someone else now owns.
    func stop() {
        let first: Bool = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        // Under the lock: serve() closes a descriptor only after taking it out of `open`.
        lock.withLock { for conn in open { shutdown(conn, Int32(SHUT_RDWR)) } }
    }

    deinit { stop() }

    private func acceptLoop() {
        while true {
            let conn = accept(listener, nil, nil)
            if conn < 0 {
                if lock.withLock({ stopped }) { return }
                if errno == EINTR { continue }
                return
            }
            let late: Bool = lock.withLock {
                _connections += 1
                if !stopped { open.insert(conn) }
                return stopped
            }
            if late { close(conn); return }
            let thread = Thread { [self] in serve(conn) }
            thread.start()
        }
    }

    private func serve(_ conn: Int32) {
        defer {
            lock.withLock { _ = open.remove(conn) }
            close(conn)
        }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        func fill() -> Bool {
            let n = chunk.withUnsafeMutableBytes { recv(conn, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            var headerEnd: Int?
            while headerEnd == nil {
                if let r = buffer.firstRange(of: separator) { headerEnd = r.upperBound; break }
                if !fill() { return }
            }
            let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
            buffer.removeFirst(headerEnd!)
            var lines = head.components(separatedBy: "\r\n")
            let requestLine = lines.removeFirst().split(separator: " ")
            guard requestLine.count >= 2 else { return }
            var headers: [String: String] = [:]
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while buffer.count < length { if !fill() { return } }
            let body = Array(buffer[0..<length])
            buffer.removeFirst(length)
            let request = Request(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body)
            let index: Int = lock.withLock { _requests.append(request); return _requests.count - 1 }

            func responseHead(_ status: Int, _ extra: [(String, String)], _ body: [UInt8]) -> [UInt8] {
                var text = "HTTP/1.1 \(status) X\r\n"
                for (name, value) in extra { text += "\(name): \(value)\r\n" }
                if !extra.contains(where: { $0.0.lowercased() == "content-length" }) {
                    text += "Content-Length: \(body.count)\r\n"
                }
                return Array((text + "\r\n").utf8)
            }
            switch handler(request, index) {
            case .respond(let status, let extra, let body):
                var out = responseHead(status, extra, body)
                if request.method != "HEAD" { out += body }
                if !send(conn, out) { return }
            case .trickle(let status, let extra, let body, let piece):
                if !send(conn, responseHead(status, extra, body)) { return }
                for start in stride(from: 0, to: request.method == "HEAD" ? 0 : body.count, by: max(1, piece)) {
                    Thread.sleep(forTimeInterval: 0.001)
                    if !send(conn, Array(body[start..<min(start + piece, body.count)])) { return }
                }
            case .raw(let bytes):
                _ = send(conn, bytes)
                return
            case .close:
                return
            case .stall(let seconds):
                Thread.sleep(forTimeInterval: seconds)
                return
            }
        }
    }

    private func send(_ conn: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}
