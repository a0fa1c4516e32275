import CCurl
import Foundation
import ModelStore

/// One HTTP exchange to perform. Headers are sent exactly as given (curl adds no Accept,
/// Content-Type or Expect of its own).
struct HTTPRequest: Sendable {
    var method: String
    var url: String
    var headers: [(String, String)]
    /// The body of a PUT or POST.
    var body: [UInt8]
    /// How many body bytes the answer will likely have, to allocate once.
    var expectedResponseSize: Int?
    /// Where a successful answer's body goes instead of `HTTPResponse.body`, when it fits.
    var sink: ResponseSink?
    /// Where a successful answer's body goes piece by piece as it arrives (instead of `sink` or `body`).
    var stream: ResponseStream?
    /// For a stream: wake the receiving thread only once this many body bytes are waiting in the
    /// socket (or the body's rest, if less), instead of at every packet (``Exchange/lowWater``).
    var streamLowWater = 0

    init(method: String, url: String, headers: [(String, String)], body: [UInt8] = [], expectedResponseSize: Int? = nil,
         sink: ResponseSink? = nil, stream: ResponseStream? = nil) {
        self.method = method; self.url = url; self.headers = headers; self.body = body
        self.expectedResponseSize = expectedResponseSize
        self.sink = sink
        self.stream = stream
    }
}

/// Takes a 2xx body in the pieces curl receives it in, while they are hot in the CPU's cache,
/// instead of gathering it in memory first. One per request, shared by its attempts; used by one
/// thread at a time.
protocol ResponseStream: AnyObject, Sendable {
    /// A 2xx answer with this status begins (each attempt has its own).
    func begin(status: Int)
    /// The next piece of the body; false stops the transfer (the answer then ends where it stopped).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool
}

/// Caller-owned memory that a 2xx body is written into directly, saving a buffer and a copy per
/// GET. The caller keeps it alive and unshared for the duration of the request.
struct ResponseSink: @unchecked Sendable {
    var buffer: UnsafeMutableRawBufferPointer
}

struct HTTPResponse: Sendable {
    var status: Int
    /// Names lower-cased, values trimmed, in arrival order.
    var headers: [(String, String)]
    var body: [UInt8]
    /// How many body bytes went to the request's sink or stream rather than `body`.
    var sinkCount = 0
    /// The request's stream asked to stop: the body ends early on purpose.
    var stopped = false

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.0 == lower }?.1
    }
}

/// A failure below HTTP: no connection, a reset, a timeout, a short body.
struct TransportError: Error, Sendable, CustomStringConvertible {
    /// The CURLcode, or ``truncatedCode`` for a body shorter than its Content-Length.
    var code: Int
    var message: String
    var retryable: Bool { RetryPolicy.isRetryable(curlCode: code) }

    static let truncatedCode = -1

    var description: String { message }
}

/// A libcurl easy handle with its error buffer. Only one thread uses it at a time: the pool
/// hands it out and takes it back.
final class CurlHandle: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    let errorBuffer: UnsafeMutablePointer<CChar>
    /// The socket of the handle's connection (-1: none), as curl opens and closes it: a handle
    /// talks to one endpoint, one request at a time, so it is the one a transfer runs on.
    let socket: UnsafeMutablePointer<Int32>

    init?() {
        CurlTransport.globalInit()
        guard let easy = curl_easy_init() else { return nil }
        self.easy = easy
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        socket = .allocate(capacity: 1)
        socket.initialize(to: -1)
    }

    deinit {
        curl_easy_cleanup(easy)  // closes its connections, through the callback that reads `socket`
        errorBuffer.deallocate()
        socket.deallocate()
    }
}

/// The state of one transfer that curl's C callbacks reach through their user-data pointer.
private final class Exchange {
    var body: [UInt8] = []
    var headers: [(String, String)] = []
    /// The status of the block of headers being read, from its status line.
    var status = 0
    let sink: UnsafeMutableRawBufferPointer?
    var sinkCount = 0
    let stream: ResponseStream?
    var streamBegun = false
    /// The stream asked to stop.
    var stopped = false
    /// The blank line that ends a header block arrived: a connection closed inside the headers
    /// is a truncated answer, although curl 7.88 reports it as a success.
    var headersComplete = false
    let wantBody: Bool
    let upload: UnsafeRawBufferPointer
    var uploadOffset = 0
    /// The body's length (Content-Length of the last header block), when given.
    var bodyLength: Int?
    /// The low-water mark wanted for a stream's body (0: none), and the one set now on `socket`
    /// (0: none; -1: the socket refused it, not tried again).
    let lowWaterWanted: Int
    var lowWater = 0
    let socket: UnsafeMutablePointer<Int32>

    init(wantBody: Bool, upload: UnsafeRawBufferPointer, sink: UnsafeMutableRawBufferPointer?, stream: ResponseStream?,
         lowWater: Int = 0, socket: UnsafeMutablePointer<Int32>) {
        self.wantBody = wantBody
        self.upload = upload
        self.sink = sink
        self.stream = stream
        self.lowWaterWanted = stream == nil ? 0 : lowWater
        self.socket = socket
    }

    /// A streamed body arrives in packets of at most 64 KiB, and curl's thread is woken for
    /// each. With SO_RCVLOWAT the kernel wakes it once `lowWaterWanted` bytes wait: a cold 1 GiB
    /// whole load cost the mount 15–35% fewer thread switches (bench/RESULTS.md). The mark is
    /// lowered to what is left of the body as it ends, so the last bytes never wait for more
    /// (TLS only adds bytes to what is to come), and is 1 again once the body is in; a transfer
    /// cut short resets it too, for the connection's next request.
    func lowerWater(received: Int) {
        guard lowWaterWanted > 0, lowWater >= 0, let length = bodyLength, socket.pointee >= 0 else { return }
        let mark = max(1, min(lowWaterWanted, length - received))
        if mark != lowWater, lowWater != 0 || mark > 1 { setLowWater(mark) }
    }

    func resetWater() {
        if lowWater > 1 { setLowWater(1) }
    }

    private func setLowWater(_ bytes: Int) {
        guard socket.pointee >= 0, modelfs_set_rcvlowat(socket.pointee, Int32(bytes)) == 0 else { lowWater = -1; return }
        lowWater = bytes
    }

    /// Success bodies go to the stream, or to the sink while they fit; error bodies (and anything
    /// larger) to `body`. False stops the transfer.
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let stream, (200..<300).contains(status) {
            if !streamBegun {
                streamBegun = true
                stream.begin(status: status)
            }
            sinkCount += bytes.count
            if stream.receive(bytes) {
                lowerWater(received: sinkCount)
                return true
            }
            stopped = true
            return false
        }
        if let sink, (200..<300).contains(status), body.isEmpty, sinkCount + bytes.count <= sink.count {
            sink.baseAddress!.advanced(by: sinkCount).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            sinkCount += bytes.count
            return true
        }
        if sinkCount > 0 {  // it did not fit after all: move what the sink holds into the body
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: sink![..<sinkCount]))
            sinkCount = 0
        }
        body.append(contentsOf: bytes)
        return true
    }
}

/// HTTP over libcurl easy handles kept in a pool, so connections (and TLS sessions) are reused
/// across requests and threads. Thread-safe.
final class CurlTransport: Sendable {
    struct Settings: Sendable {
        var connectTimeout: Duration = .seconds(3)
        var lowSpeedLimit: Int = 1024
        var lowSpeedTime: Duration = .seconds(10)
        var maxIdle: Int = 64
    }

    let settings: Settings
    private let idle = Locked<[CurlHandle]>([])

    init(settings: Settings = Settings()) {
        self.settings = settings
    }

    private static let initOnce: Bool = {
        curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK
    }()

    static func globalInit() { _ = initOnce }

    private func checkout() -> CurlHandle? {
        if let handle = idle.withLock({ $0.popLast() }) { return handle }
        return CurlHandle()
    }

    private func checkin(_ handle: CurlHandle) {
        let extra: CurlHandle? = idle.withLock { handles in
            if handles.count < settings.maxIdle { handles.append(handle); return nil }
            return handle
        }
        _ = extra  // cleaned up here, outside the lock
    }

    /// How many idle handles the pool holds (for tests).
    var idleCount: Int { idle.withLock { $0.count } }

    /// Performs `request`, giving up after `timeout` (the whole transfer).
    func perform(_ request: HTTPRequest, timeout: Duration) throws(TransportError) -> HTTPResponse {
        guard let handle = checkout() else {
            throw TransportError(code: Int(CURLE_FAILED_INIT.rawValue), message: "curl_easy_init failed")
        }
        defer { checkin(handle) }
        let result = request.body.withUnsafeBytes { upload in
            Result { () throws(TransportError) -> HTTPResponse in try perform(request, upload: upload, timeout: timeout, on: handle) }
        }
        return try result.get()
    }

    private func perform(_ request: HTTPRequest, upload: UnsafeRawBufferPointer, timeout: Duration,
                         on handle: CurlHandle) throws(TransportError) -> HTTPResponse {
        let h = handle.easy
        curl_easy_reset(h)
        handle.errorBuffer[0] = 0

        let method = request.method.uppercased()
        let exchange = Exchange(wantBody: method != "HEAD", upload: upload, sink: request.sink?.buffer, stream: request.stream,
                                lowWater: request.streamLowWater, socket: handle.socket)
        if let size = request.expectedResponseSize, size > 0 { exchange.body.reserveCapacity(size) }
        let context = Unmanaged.passUnretained(exchange).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>?
        // Suppress curl's own headers: 100-continue waits, an unsigned Accept, a form Content-Type.
        let hasContentType = request.headers.contains { $0.0.lowercased() == "content-type" }
        var lines = ["Expect:", "Accept:"]
        if !hasContentType { lines.append("Content-Type:") }
        for (name, value) in request.headers {
            lines.append(value.isEmpty ? name + ";" : name + ": " + value)
        }
        for line in lines { headerList = curl_slist_append(headerList, line) }
        defer { curl_slist_free_all(headerList) }

        curl_setopt_string(h, CURLOPT_URL, request.url)
        curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        curl_setopt_long(h, CURLOPT_PATH_AS_IS, 1)
        curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0)
        curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, max(1, Self.milliseconds(min(settings.connectTimeout, timeout))))
        curl_setopt_long(h, CURLOPT_TIMEOUT_MS, max(1, Self.milliseconds(timeout)))
        curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, settings.lowSpeedLimit)
        curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Self.milliseconds(settings.lowSpeedTime) / 1000))
        curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
        curl_setopt_long(h, CURLOPT_TCP_KEEPIDLE, 15)
        curl_setopt_long(h, CURLOPT_TCP_KEEPINTVL, 5)
        curl_setopt_long(h, CURLOPT_TCP_NODELAY, 1)
        curl_setopt_long(h, CURLOPT_BUFFERSIZE, 512 * 1024)
        curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(handle.errorBuffer))
        curl_track_socket(h, handle.socket)
        curl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList)

        curl_setopt_header_function(h) { ptr, size, count, userdata in
            let n = size * count
            guard let ptr, let userdata else { return n }
            let exchange = Unmanaged<Exchange>.fromOpaque(userdata).takeUnretainedValue()
            let line = UnsafeRawBufferPointer(start: ptr, count: n)
            if line.starts(with: "HTTP/".utf8) {
                exchange.headers.removeAll(keepingCapacity: true)  // a new response block (after 1xx)
                exchange.bodyLength = nil
                exchange.headersComplete = false
                let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 2)
                exchange.status = fields.count > 1 ? Int(String(decoding: fields[1], as: UTF8.self)) ?? 0 : 0
                return n
            }
            if line.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
                exchange.headersComplete = true
                return n
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return n }
            let name = String(decoding: line[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            exchange.headers.append((name, value))
            if name == "content-length" { exchange.bodyLength = Int(value) }
            if name == "content-length", exchange.wantBody, let length = Int(value), length > exchange.body.capacity,
               length <= 1 << 33, !(exchange.stream != nil && (200..<300).contains(exchange.status)),
               !(exchange.sink != nil && (200..<300).contains(exchange.status) && length <= exchange.sink!.count) {
                exchange.body.reserveCapacity(length)
            }
            return n
        }
        curl_setopt_pointer(h, CURLOPT_HEADERDATA, context)

        curl_setopt_write_function(h) { ptr, size, count, userdata in
            let n = size * count
            guard let ptr, let userdata else { return n }
            let exchange = Unmanaged<Exchange>.fromOpaque(userdata).takeUnretainedValue()
            // Anything but `n` makes curl stop with CURLE_WRITE_ERROR.
            return exchange.receive(UnsafeRawBufferPointer(start: ptr, count: n)) ? n : 0
        }
        curl_setopt_pointer(h, CURLOPT_WRITEDATA, context)

        let hasBody = method == "PUT" || method == "POST"
        if hasBody {
            curl_setopt_read_function(h) { ptr, size, count, userdata in
                guard let ptr, let userdata else { return 0 }
                let exchange = Unmanaged<Exchange>.fromOpaque(userdata).takeUnretainedValue()
                let n = min(size * count, exchange.upload.count - exchange.uploadOffset)
                if n > 0, let base = exchange.upload.baseAddress {
                    UnsafeMutableRawPointer(ptr).copyMemory(from: base + exchange.uploadOffset, byteCount: n)
                    exchange.uploadOffset += n
                }
                return n
            }
            curl_setopt_pointer(h, CURLOPT_READDATA, context)
            // Lets curl resend the body itself when a reused connection turns out dead.
            curl_setopt_seek_function(h) { userdata, offset, origin in
                guard let userdata, origin == SEEK_SET else { return 2 }  // CURL_SEEKFUNC_CANTSEEK
                let exchange = Unmanaged<Exchange>.fromOpaque(userdata).takeUnretainedValue()
                guard offset >= 0, Int(offset) <= exchange.upload.count else { return 1 }  // CURL_SEEKFUNC_FAIL
                exchange.uploadOffset = Int(offset)
                return 0
            }
            curl_setopt_pointer(h, CURLOPT_SEEKDATA, context)
        }

        switch method {
        case "GET":
            curl_setopt_long(h, CURLOPT_HTTPGET, 1)
        case "HEAD":
            curl_setopt_long(h, CURLOPT_NOBODY, 1)
        case "PUT":
            curl_setopt_long(h, CURLOPT_UPLOAD, 1)
            curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(upload.count))
            curl_setopt_long(h, CURLOPT_UPLOAD_BUFFERSIZE, 1024 * 1024)
        case "POST":
            curl_setopt_long(h, CURLOPT_POST, 1)
            curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(upload.count))
        default:
            curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
        }

        let rc = withExtendedLifetime(exchange) { curl_easy_perform(h) }
        exchange.resetWater()
        if rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && exchange.stopped) {
            let detail = String(cString: handle.errorBuffer)
            let text = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
            throw TransportError(code: Int(rc.rawValue), message: "\(method) failed: \(text) (curl \(rc.rawValue))")
        }
        var status = 0
        curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        guard exchange.headersComplete else {
            throw TransportError(code: TransportError.truncatedCode, message: "\(method) answer ended inside its headers")
        }
        let response = HTTPResponse(status: status, headers: exchange.headers, body: exchange.body, sinkCount: exchange.sinkCount,
                                    stopped: exchange.stopped)

        // Never hand back a short body as data (one its stream stopped is short on purpose).
        let received = response.body.count + response.sinkCount
        if exchange.wantBody, !exchange.stopped, let lengthText = response.header("content-length"), let length = Int(lengthText),
           length != received {
            throw TransportError(code: TransportError.truncatedCode,
                                 message: "\(method) answered \(received) of \(length) bytes (Content-Length)")
        }
        return response
    }

    static func milliseconds(_ d: Duration) -> Int {
        let c = d.components
        let ms = c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
        return Int(clamping: ms)
    }
}
