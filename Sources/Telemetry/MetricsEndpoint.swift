import Foundation
import Glibc

/// `GET /metrics` on one TCP address, for the mount's `--metrics`: a blocking responder on one
/// thread, one request per connection, closed after the reply. A scraper asks every few seconds;
/// anything more (other paths, keep-alive, TLS) is the web server's business (`modelfs web`).
public final class MetricsEndpoint: @unchecked Sendable {
    public struct Address: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: UInt16

        /// `HOST:PORT` with an IPv4 host (`127.0.0.1:9464`; `0.0.0.0:9464` for every interface).
        public init(parsing text: String) throws(EndpointError) {
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
                throw EndpointError("--metrics \(text): expected HOST:PORT, e.g. 127.0.0.1:9464")
            }
            var probe = in_addr()
            let host = String(text[..<colon])
            guard inet_pton(AF_INET, host, &probe) == 1 else {
                throw EndpointError("--metrics \(text): the host must be an IPv4 address, e.g. 127.0.0.1")
            }
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public struct EndpointError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public let address: Address
    private let socket: Int32
    private let body: @Sendable () -> String

    /// Listens on `address` (port 0: any free port, see ``address``) and serves `body` from a
    /// thread of its own until ``stop()``.
    public init(_ address: Address, body: @escaping @Sendable () -> String = Telemetry.exposition) throws(EndpointError) {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EndpointError("--metrics: socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        inet_pton(AF_INET, address.host, &sin.sin_addr)
        let bound = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw EndpointError("--metrics \(address): cannot listen: \(why)")
        }
        var actual = address
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        actual.port = UInt16(bigEndian: sin.sin_port)
        self.address = actual
        self.socket = fd
        self.body = body
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "metrics-endpoint"
        thread.start()
    }

    /// Stops listening; the thread ends at its next accept.
    public func stop() { shutdown(socket, Int32(SHUT_RDWR)) }

    private func acceptLoop() {
        while true {
            let client = accept(socket, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                close(socket)
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // not inherited by the jobs the mount starts
            answer(client)
            close(client)
        }
    }

    /// Reads the request head (a slow or silent client gets 5 s) and answers it.
    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while head.count < 16 << 10 {
            let n = recv(client, &buffer, buffer.count, 0)
            if n <= 0 { return }
            head += buffer[..<n]
            if head.firstRange(of: [13, 10, 13, 10]) != nil { break }
        }
        let requestLine = String(decoding: head.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let reply: (status: String, type: String, body: String)
        if requestLine.count < 2 {
            reply = ("400 Bad Request", "text/plain", "bad request\n")
        } else if requestLine[0] != "GET" && requestLine[0] != "HEAD" {
            reply = ("405 Method Not Allowed", "text/plain", "GET /metrics only\n")
        } else if requestLine[1].split(separator: "?", maxSplits: 1).first != "/metrics" {
            reply = ("404 Not Found", "text/plain", "GET /metrics only\n")
        } else {
            reply = ("200 OK", Telemetry.contentType, body())
        }
        let bytes = Array(reply.body.utf8)
        var out = Array("HTTP/1.1 \(reply.status)\r\nContent-Type: \(reply.type)\r\nContent-Length: \(bytes.count)\r\nConnection: close\r\n\r\n".utf8)
        if requestLine.first != "HEAD" { out += bytes }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}
