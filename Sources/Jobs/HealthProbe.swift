import CCurl
import Foundation

/// Asks a server's health URL once: the HTTP status, or nil when nothing answered (refused,
/// timed out). libcurl, as the S3 client uses; the body is read and dropped.
enum HealthProbe {
    private static let once: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    static func status(of url: String, timeout: Double = 2) -> Int? {
        _ = once
        guard let h = curl_easy_init() else { return nil }
        defer { curl_easy_cleanup(h) }
        curl_setopt_string(h, CURLOPT_URL, url)
        curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(timeout * 1000))
        curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(timeout * 1000))
        curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        // Never a proxy from the mount's environment: the server is on this network.
        curl_setopt_string(h, CURLOPT_NOPROXY, "*")
        curl_setopt_write_function(h) { _, size, count, _ in size * count }
        guard curl_easy_perform(h) == CURLE_OK else { return nil }
        var code = 0
        curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    /// A port free on this machine now: the kernel's choice for a socket bound to port 0.
    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: addr.sin_port)) : nil
    }
}
