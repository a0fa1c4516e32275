import Foundation
import Glibc
import Testing
@testable import Telemetry

/// One HTTP exchange with 127.0.0.1:`port`: sends `request` as is, returns all the answer.
func exchange(port: UInt16, _ request: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
    let connected = withUnsafePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(connected == 0)
    let bytes = Array(request.utf8)
    try #require(send(fd, bytes, bytes.count, 0) == bytes.count)
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        answer += buffer[..<n]
    }
    return String(decoding: answer, as: UTF8.self)
}

@Suite struct EndpointTests {
    @Test func addresses() throws {
        let a = try MetricsEndpoint.Address(parsing: "127.0.0.1:9464")
        #expect(a.host == "127.0.0.1" && a.port == 9464)
        #expect(try MetricsEndpoint.Address(parsing: "0.0.0.0:1").port == 1)
        for bad in ["9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:70000", ":9464", "[::1]:9464"] {
            #expect(throws: MetricsEndpoint.EndpointError.self, "\(bad)") { try MetricsEndpoint.Address(parsing: bad) }
        }
    }

    @Test func servesTheExpositionAtGETMetricsOnly() throws {
        let endpoint = try MetricsEndpoint(try MetricsEndpoint.Address(parsing: "127.0.0.1:0"), body: { "modelfs_up 1\n" })
        defer { endpoint.stop() }
        let port = endpoint.address.port
        #expect(port != 0)

        let ok = try exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(ok)")
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(ok.contains("Content-Length: 13\r\n"))
        #expect(ok.hasSuffix("\r\n\r\nmodelfs_up 1\n"))

        #expect(try exchange(port: port, "GET /other HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 "))
        #expect(try exchange(port: port, "POST /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405 "))
        let head = try exchange(port: port, "HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200 OK") && head.hasSuffix("\r\n\r\n"))
    }

    @Test func aPortInUseIsRefusedWithTheReason() throws {
        let first = try MetricsEndpoint(try MetricsEndpoint.Address(parsing: "127.0.0.1:0"), body: { "" })
        defer { first.stop() }
        let error = #expect(throws: MetricsEndpoint.EndpointError.self) {
            try MetricsEndpoint(try MetricsEndpoint.Address(parsing: "127.0.0.1:\(first.address.port)"), body: { "" })
        }
        #expect(error?.description.contains("Address already in use") == true)
    }
}
