import CCurl
import Foundation
import Logging
import ModelStore
import Testing
@testable import S3

@Suite struct RetryClassificationTests {
    @Test func httpAnswers() {
        for (status, code) in [(500, "InternalError"), (503, "SlowDown"), (503, "ServiceUnavailable"), (502, "BadGateway"),
                               (504, "GatewayTimeout"), (429, "TooManyRequests"), (400, "RequestTimeout"),
                               (200, "InternalError"), (200, "SlowDown"), (408, "HTTP408")] {
            #expect(RetryPolicy.isRetryable(status: status, code: code), "\(status) \(code)")
        }
        for (status, code) in [(400, "InvalidArgument"), (403, "AccessDenied"), (403, "SignatureDoesNotMatch"),
                               (404, "NoSuchKey"), (404, "NoSuchUpload"), (409, "Conflict"), (416, "InvalidRange"),
                               (501, "NotImplemented"), (400, "EntityTooSmall"), (400, "InvalidPart"), (200, "InvalidPart")] {
            #expect(!RetryPolicy.isRetryable(status: status, code: code), "\(status) \(code)")
        }
    }

    @Test func transportFailures() {
        for code in [CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING,
                     CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_COULDNT_RESOLVE_HOST] {
            #expect(RetryPolicy.isRetryable(curlCode: Int(code.rawValue)), "\(code)")
        }
        #expect(RetryPolicy.isRetryable(curlCode: TransportError.truncatedCode))
        for code in [CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_PEER_FAILED_VERIFICATION, CURLE_ABORTED_BY_CALLBACK] {
            #expect(!RetryPolicy.isRetryable(curlCode: Int(code.rawValue)), "\(code)")
        }
    }

    @Test func fullJitterBackoff() {
        let policy = RetryPolicy(base: .milliseconds(100), cap: .seconds(2))
        #expect(policy.delay(afterAttempt: 1, random: 1) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2, random: 1) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 5, random: 1) == .milliseconds(1600))
        #expect(policy.delay(afterAttempt: 6, random: 1) == .seconds(2))
        #expect(policy.delay(afterAttempt: 60, random: 1) == .seconds(2))
        #expect(policy.delay(afterAttempt: 3, random: 0) == .zero)
        #expect(policy.delay(afterAttempt: 3, random: 0.5) == .milliseconds(200))
        for _ in 0..<100 {
            let d = policy.delay(afterAttempt: 4)
            #expect(d >= .zero && d <= .milliseconds(800))
        }
    }
}

let quiet = Logger(label: "modelfs.s3.test") { _ in SwiftLogNoOpLogHandler() }

/// Captures every log line and its metadata, to check that nothing secret is logged.
final class CapturingLog: @unchecked Sendable {
    private let lines = Locked<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    var logger: Logger {
        var logger = Logger(label: "modelfs.s3.test") { _ in Handler(sink: self) }
        logger.logLevel = .trace
        return logger
    }

    struct Handler: LogHandler {
        let sink: CapturingLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.append("\(event.level) \(event.message) \(event.metadata ?? [:])")
        }
    }
}

/// The store against a scripted local server: retries, truncation, time limits, reuse.
@Suite(.serialized) struct FakeServerTests {
    static let secret = "fake-Secret/Key+9"

    static func store(_ server: FakeHTTPServer, timeout: Duration = .seconds(5), log: CapturingLog? = nil,
                      maxAttempts: Int = 10) throws -> S3ObjectStore {
        var config = S3Config(bucket: "models", endpoint: server.endpoint,
                              credentials: S3Credentials(accessKeyID: "AKIDTEST", secretAccessKey: secret, sessionToken: "tok-SECRET-1"))
        config.operationTimeout = timeout
        config.retryBase = .milliseconds(10)
        config.retryCap = .milliseconds(50)
        config.maxAttempts = maxAttempts
        return try S3ObjectStore(config: config, logger: log?.logger ?? quiet)
    }

    static func errorXML(_ code: String, _ message: String = "msg") -> [UInt8] {
        Array("<?xml version=\"1.0\"?><Error><Code>\(code)</Code><Message>\(message)</Message></Error>".utf8)
    }

    @Test func retriesSlowDownThenSucceeds() throws {
        let log = CapturingLog()
        let server = try FakeHTTPServer { _, i in
            i < 2 ? .respond(status: 503, body: Self.errorXML("SlowDown", "Please reduce your request rate."))
                  : .respond(status: 200, headers: [("ETag", "\"abc\"")], body: Array("hello".utf8))
        }
        defer { server.stop() }
        let store = try Self.store(server, log: log)
        #expect(try store.get("k", range: nil) == Array("hello".utf8))
        #expect(server.requests.count == 3)
        #expect(log.all.filter { $0.contains("retrying") }.count == 2)
        for line in log.all {
            #expect(!line.contains(Self.secret))
            #expect(!line.contains("tok-SECRET-1"))
            #expect(!line.contains("Signature="))
        }
    }

    @Test func truncatedBodyIsRetriedNeverReturned() throws {
        let server = try FakeHTTPServer { _, i in
            i == 0 ? .raw(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8))
                   : .respond(status: 200, body: Array("0123456789".utf8))
        }
        defer { server.stop() }
        let store = try Self.store(server)
        #expect(try store.get("k", range: nil) == Array("0123456789".utf8))
        #expect(server.requests.count == 2)
    }

    @Test func alwaysTruncatedEndsUnreachable() throws {
        let server = try FakeHTTPServer { _, _ in .raw(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8)) }
        defer { server.stop() }
        let store = try Self.store(server, maxAttempts: 3)
        #expect {
            _ = try store.get("k", range: nil)
        } throws: { error in
            guard case .unreachable = error as? ObjectStoreError else { return false }
            return true
        }
        #expect(server.requests.count == 3)
    }

    @Test func clientErrorsAreNotRetried() throws {
        let server = try FakeHTTPServer { request, _ in
            if request.method == "HEAD" { return .respond(status: 403) }
            if request.target.contains("missing") {
                return .respond(status: 404, body: Self.errorXML("NoSuchKey", "The specified key does not exist."))
            }
            return .respond(status: 403, body: Self.errorXML("AccessDenied", "Access Denied"))
        }
        defer { server.stop() }
        let store = try Self.store(server)
        #expect(throws: ObjectStoreError.server(status: 403, code: "AccessDenied", message: "Access Denied")) {
            try store.get("k", range: nil)
        }
        #expect(server.requests.count == 1)
        #expect(throws: ObjectStoreError.notFound(key: "missing")) { try store.get("missing", range: nil) }
        #expect(throws: ObjectStoreError.server(status: 403, code: "Forbidden", message: "")) { try store.head("k") }
        #expect(server.requests.count == 3)
    }

    @Test func notFoundSemantics() throws {
        let server = try FakeHTTPServer { request, _ in
            switch request.method {
            case "HEAD": return .respond(status: 404)
            case "DELETE" where request.target.contains("uploadId"):
                return .respond(status: 404, body: Self.errorXML("NoSuchUpload"))
            case "DELETE": return .respond(status: 204)
            case "PUT": return .respond(status: 404, body: Self.errorXML("NoSuchUpload"))
            default: return .respond(status: 404, body: Self.errorXML("NoSuchBucket", "The specified bucket does not exist"))
            }
        }
        defer { server.stop() }
        let store = try Self.store(server)
        #expect(try store.head("gone") == nil)
        try store.delete("gone")
        try store.abortMultipartUpload("gone", uploadID: "u1")
        #expect(throws: ObjectStoreError.notFound(key: "k")) { try store.uploadPart("k", uploadID: "u", number: 1, [1]) }
        #expect(throws: ObjectStoreError.server(status: 404, code: "NoSuchBucket", message: "The specified bucket does not exist")) {
            try store.list(prefix: "")
        }
    }

    @Test func deadServerIsUnreachableWithinTheTimeLimit() throws {
        let server = try FakeHTTPServer { _, _ in .close }
        let port = server.port
        server.stop()
        var config = S3Config(bucket: "models", endpoint: "http://127.0.0.1:\(port)",
                              credentials: S3Credentials(accessKeyID: "a", secretAccessKey: Self.secret))
        config.operationTimeout = .milliseconds(1500)
        config.maxAttempts = 1000
        let store = try S3ObjectStore(config: config, logger: quiet)
        let start = ContinuousClock.now
        #expect {
            _ = try store.get("k", range: nil)
        } throws: { error in
            guard case .unreachable(let why) = error as? ObjectStoreError else { return false }
            return !why.contains(Self.secret)
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .milliseconds(2500))
    }

    @Test func stalledServerEndsWithinTheTimeLimit() throws {
        let server = try FakeHTTPServer { _, _ in .stall(seconds: 4) }
        defer { server.stop() }
        let store = try Self.store(server, timeout: .seconds(1))
        let start = ContinuousClock.now
        #expect {
            _ = try store.head("k")
        } throws: { error in
            guard case .unreachable = error as? ObjectStoreError else { return false }
            return true
        }
        #expect(ContinuousClock.now - start < .milliseconds(2000))
    }

    @Test func connectionsAreReused() throws {
        let server = try FakeHTTPServer { _, _ in .respond(status: 200, headers: [("ETag", "\"e\"")], body: [1, 2, 3]) }
        defer { server.stop() }
        let store = try Self.store(server)
        for _ in 0..<5 { _ = try store.get("k", range: nil) }
        _ = try store.put("k", Array(repeating: 7, count: 100_000))
        _ = try store.head("k")
        #expect(server.requests.count == 7)
        #expect(server.connections == 1)
        #expect(store.transport.idleCount == 1)
    }

    @Test func concurrentCallsUseSeveralHandles() throws {
        let server = try FakeHTTPServer { _, _ in .respond(status: 200, body: Array(repeating: 9, count: 1000)) }
        defer { server.stop() }
        let store = try Self.store(server)
        let failures = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 40) { i in
            do {
                let bytes = try store.get("k\(i)", range: nil)
                if bytes.count != 1000 { failures.withLock { $0 += 1 } }
            } catch {
                failures.withLock { $0 += 1 }
            }
        }
        #expect(failures.withLock { $0 } == 0)
        #expect(server.requests.count == 40)
        #expect(server.connections <= store.transport.idleCount + 40)
    }

    @Test func requestsAreSignedAndEncoded() throws {
        let server = try FakeHTTPServer { _, _ in .respond(status: 200, headers: [("ETag", "\"0a1b\"")]) }
        defer { server.stop() }
        let store = try Self.store(server)
        let body = Array("Welcome to Amazon S3.".utf8)
        #expect(try store.put("dir/a+b%c?d#e&f g 千.zip", body) == "0a1b")
        let request = try #require(server.requests.first)
        #expect(request.method == "PUT")
        #expect(request.target == "/models/dir/a%2Bb%25c%3Fd%23e%26f%20g%20%E5%8D%83.zip")
        #expect(request.body == body)
        #expect(request.headers["x-amz-content-sha256"] == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(request.headers["host"] == "127.0.0.1:\(server.port)")
        #expect(request.headers["x-amz-security-token"] == "tok-SECRET-1")
        #expect(request.headers["expect"] == nil)
        #expect(request.headers["content-length"] == "21")
        let auth = try #require(request.headers["authorization"])
        #expect(auth.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDTEST/"))
        #expect(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"))
    }

    /// Serves `object` for any key, honouring Range; keys naming "ignores" get the whole object
    /// (Range ignored), keys naming "flaky" a 503 the first time.
    static func rangeServer(_ object: [UInt8]) throws -> FakeHTTPServer {
        let flakyAnswered = Locked(false)
        return try FakeHTTPServer { request, _ in
            if request.target.contains("ignores") { return .respond(status: 200, body: object) }
            if request.target.contains("flaky"), !flakyAnswered.withLock({ done in defer { done = true }; return done }) {
                return .respond(status: 503, body: Self.errorXML("SlowDown", "Reduce your request rate."))
            }
            return rangeAnswer(object, request)
        }
    }

    /// What S3 answers a GET of `object` with the request's Range.
    static func rangeAnswer(_ object: [UInt8], _ request: FakeHTTPServer.Request) -> FakeHTTPServer.Action {
        guard let range = request.headers["range"] else { return .respond(status: 200, body: object) }
        let parts = range.dropFirst("bytes=".count).split(separator: "-").map { Int($0)! }
        if parts[0] >= object.count { return .respond(status: 416, body: Self.errorXML("InvalidRange")) }
        let end = min(parts[1], object.count - 1)
        return .respond(status: 206, headers: [("Content-Range", "bytes \(parts[0])-\(end)/\(object.count)")],
                        body: Array(object[parts[0]...end]))
    }

    @Test func rangesAreClampedAndHandled() throws {
        let object = Array(UInt8(0)..<UInt8(100))
        let server = try Self.rangeServer(object)
        defer { server.stop() }
        let store = try Self.store(server)
        #expect(try store.get("k", range: 10..<20) == Array(object[10..<20]))
        #expect(try store.get("k", range: 90..<200) == Array(object[90..<100]))
        #expect(try store.get("k", range: 100..<200) == [])
        #expect(try store.get("k", range: 5..<5) == [])
        #expect(try store.get("ignores", range: 95..<105) == Array(object[95..<100]))
        #expect(try store.get("ignores", range: 150..<160) == [])
        #expect(server.requests.first?.headers["range"] == "bytes=10-19")
        #expect(server.requests.count == 5)  // the empty range asked nothing
    }

    /// GETs into caller memory: a server that ignores Range, and an error body, never land in the
    /// buffer as data.
    @Test func rangedGetsIntoMemoryHandleEveryAnswer() throws {
        let object = Array(UInt8(0)..<UInt8(100))
        let server = try Self.rangeServer(object)
        defer { server.stop() }
        let store = try Self.store(server)
        func get(_ key: String, _ range: Range<Int64>) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0xEE, count: range.count)
            let n = try buffer.withUnsafeMutableBytes { try store.get(key, range: range, into: $0) }
            return Array(buffer[..<n])
        }
        #expect(try get("k", 10..<20) == Array(object[10..<20]))
        #expect(try get("k", 90..<200) == Array(object[90..<100]))
        #expect(try get("k", 100..<200) == [])
        #expect(try get("flaky", 10..<20) == Array(object[10..<20]), "the 503's body is not data")
        #expect(try get("ignores", 95..<105) == Array(object[95..<100]), "the whole object did not fit: cut from it")
        #expect(try get("ignores", 5..<205) == Array(object[5..<100]), "the whole object fit: moved to the start")
        #expect(try get("ignores", 150..<160) == [])
    }

    /// GETs streamed piece by piece: the range's bytes are handed on once each and in order —
    /// from a server that ignores Range (the rest of the object not waited for), across a retry
    /// after an error answer or a body cut short midway (which asks for the rest) — and a
    /// consumer may stop early.
    @Test func streamedRangedGetsHandEachByteOnOnce() throws {
        let object = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let cutOnce = Locked(false), flakyOnce = Locked(false)
        let server = try FakeHTTPServer { request, _ in
            let first = { (flag: Locked<Bool>) in !flag.withLock { done in defer { done = true }; return done } }
            // The first answer for "cut" has all its headers but only part of its body.
            if request.target.contains("cut"), first(cutOnce) {
                let head = "HTTP/1.1 206 X\r\nContent-Length: 3000\r\nContent-Range: bytes 1000-3999/5000\r\n\r\n"
                return .raw(Array(head.utf8) + Array(object[1000..<2200]))
            }
            if request.target.contains("flaky"), first(flakyOnce) {
                return .respond(status: 503, body: Self.errorXML("SlowDown", "Reduce your request rate."))
            }
            if request.target.contains("ignores") { return .respond(status: 200, body: object) }
            return Self.rangeAnswer(object, request)
        }
        defer { server.stop() }
        let store = try Self.store(server)
        func stream(_ key: String, _ range: Range<Int64>, stopAfter: Int = .max) throws -> (bytes: [UInt8], pieces: Int, count: Int64) {
            var out: [UInt8] = []
            var pieces = 0
            let n = try store.get(key, range: range) { piece in
                out += piece
                pieces += 1
                return out.count < stopAfter
            }
            return (out, pieces, n)
        }
        let plain = try stream("k", 10..<4010)
        #expect(plain.bytes == Array(object[10..<4010]) && plain.count == 4000)
        #expect(try stream("k", 4990..<6000).bytes == Array(object[4990...]))
        #expect(try stream("k", 5000..<6000).count == 0)
        #expect(try stream("ignores", 100..<300).bytes == Array(object[100..<300]), "the range cut out of the whole object")
        #expect(try stream("flaky", 10..<20).bytes == Array(object[10..<20]), "the 503's body is not data")
        let cut = try stream("cut", 1000..<4000)
        #expect(cut.bytes == Array(object[1000..<4000]), "what the first answer brought is not handed on again")
        #expect(server.requests.filter { $0.target.contains("cut") }.map { $0.headers["range"] } == ["bytes=1000-3999", "bytes=2200-3999"],
                "the retry asks for the rest only")
        let stopped = try stream("k", 0..<5000, stopAfter: 1)
        #expect(stopped.pieces == 1 && stopped.count == Int64(stopped.bytes.count), "stopped at once, and says how much it handed on")
    }

    /// A streamed GET wakes its thread once 256 KiB wait in the socket (SO_RCVLOWAT), lowered to
    /// what is left as the body ends and set back after. Bodies arriving in parts of 100 KB (the
    /// client drains the socket between them) of every length end without a stall, and the
    /// connection's next requests (streamed or not) are answered at once, on one connection, each
    /// in one attempt: a mark left above what is still to come would wait until the timeout.
    @Test func streamedGetsWaitForWholePiecesYetNeverStallAtTheEnd() throws {
        let object = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        let server = try FakeHTTPServer { request, _ in
            guard case .respond(let status, let headers, let body) = Self.rangeAnswer(object, request) else { return .close }
            return .trickle(status: status, headers: headers, body: body, piece: 100_000)
        }
        defer { server.stop() }
        let store = try Self.store(server, maxAttempts: 1)
        func stream(_ range: Range<Int64>) throws -> [UInt8] {
            var out: [UInt8] = []
            _ = try store.get("k", range: range) { out += $0; return true }
            return out
        }
        for range: Range<Int64> in [0..<(3 << 20), 5..<(300 << 10), 1000..<1100, (1 << 20)..<((1 << 20) + (256 << 10) + 1)] {
            #expect(try stream(range) == Array(object[Int(range.lowerBound)..<Int(range.upperBound)]))
            #expect(try store.get("k", range: 7..<107) == Array(object[7..<107]), "a plain GET after a stream")
        }
        #expect(server.requests.count == 8 && server.connections == 1)
    }

    @Test func errorInside200IsAnError() throws {
        let server = try FakeHTTPServer { request, i in
            if i == 0 { return .respond(status: 200, body: Self.errorXML("InternalError", "We encountered an internal error.")) }
            if request.target.contains("bad") { return .respond(status: 200, body: Self.errorXML("InvalidPart", "One or more parts")) }
            return .respond(status: 200, body: Array("""
                <CompleteMultipartUploadResult><ETag>"abc-2"</ETag></CompleteMultipartUploadResult>
                """.utf8))
        }
        defer { server.stop() }
        let store = try Self.store(server)
        let parts = [UploadedPart(number: 1, etag: "a", size: 5), UploadedPart(number: 2, etag: "b", size: 1)]
        #expect(try store.completeMultipartUpload("k", uploadID: "u", parts: parts) == "abc-2")
        #expect(server.requests.count == 2)
        #expect(server.requests[0].body == server.requests[1].body)
        let sent = String(decoding: server.requests[1].body, as: UTF8.self)
        #expect(sent.range(of: "<PartNumber>1</PartNumber>")!.lowerBound < sent.range(of: "<PartNumber>2</PartNumber>")!.lowerBound)
        #expect(server.requests[1].target == "/models/k?uploadId=u")
        #expect(server.requests[1].headers["content-type"] == nil)
        #expect(throws: ObjectStoreError.server(status: 200, code: "InvalidPart", message: "One or more parts")) {
            try store.completeMultipartUpload("bad", uploadID: "u", parts: parts)
        }
    }
}

/// CompleteMultipartUpload whose answer does not say what happened, against a fake server that
/// keeps a little S3 state (one upload, maybe one object): the store asks HeadObject and ListParts
/// before deciding, and never reports failed an upload whose object exists, nor success one whose
/// object does not.
@Suite(.serialized) struct UnclearCompletionTests {
    /// A 5 MiB part of "x" and a 10-byte part of "y": the object these make has this ETag.
    static let parts = [UploadedPart(number: 1, etag: "4f08eef4096726bff1125e1b1b734644", size: 5_242_880),
                        UploadedPart(number: 2, etag: "0bbc18cdea1c4aaa17777d441214774a", size: 10)]
    static let objectETag = "298c9a5c8205ea8eeef29652993678aa-2"
    static let objectSize = 5_242_890

    /// What the fake bucket holds, and what it does with a complete.
    final class Bucket: @unchecked Sendable {
        enum OnComplete { case complete, completeWithEmptyETag, completeAndDropAnswer, error200(String), answer500, noSuchUpload }
        let lock = NSLock()
        var uploadOpen = true
        var object: (etag: String, size: Int)?
        var onComplete: OnComplete
        /// A complete that the server carries out a while after it reported failure.
        var completesLateOnAbort = false
        /// Answers a complete as `onComplete` says even when there is no upload (Ceph RGW: 500).
        var answersWhenGone = false
        var counts: [String: Int] = [:]

        init(_ onComplete: OnComplete, object: (etag: String, size: Int)? = nil) {
            self.onComplete = onComplete
            self.object = object
        }

        func count(_ what: String) -> Int { lock.withLock { counts[what, default: 0] } }

        func handle(_ request: FakeHTTPServer.Request) -> FakeHTTPServer.Action {
            lock.withLock {
                let upload = request.target.contains("uploadId=")
                switch (request.method, upload) {
                case ("POST", true):
                    counts["complete", default: 0] += 1
                    guard uploadOpen || answersWhenGone else { return .respond(status: 404, body: FakeServerTests.errorXML("NoSuchUpload")) }
                    switch onComplete {
                    case .complete:
                        uploadOpen = false
                        object = (UnclearCompletionTests.objectETag, UnclearCompletionTests.objectSize)
                        return .respond(status: 200, body: Array("<CompleteMultipartUploadResponse><ETag>\"\(UnclearCompletionTests.objectETag)\"</ETag></CompleteMultipartUploadResponse>".utf8))
                    case .completeWithEmptyETag:
                        uploadOpen = false
                        object = (UnclearCompletionTests.objectETag, UnclearCompletionTests.objectSize)
                        return .respond(status: 200, body: Array("<CompleteMultipartUploadResult><Key>k</Key><ETag></ETag></CompleteMultipartUploadResult>".utf8))
                    case .completeAndDropAnswer:
                        uploadOpen = false
                        object = (UnclearCompletionTests.objectETag, UnclearCompletionTests.objectSize)
                        return .close
                    case .error200(let code):
                        return .respond(status: 200, body: FakeServerTests.errorXML(code, "We encountered an internal error. Please try again."))
                    case .answer500:
                        return .respond(status: 500, body: FakeServerTests.errorXML("InternalError"))
                    case .noSuchUpload:
                        return .respond(status: 404, body: FakeServerTests.errorXML("NoSuchUpload"))
                    }
                case ("GET", true):
                    counts["listParts", default: 0] += 1
                    guard uploadOpen else { return .respond(status: 404, body: FakeServerTests.errorXML("NoSuchUpload")) }
                    return .respond(status: 200, body: Array("<ListPartsResponse><IsTruncated>false</IsTruncated></ListPartsResponse>".utf8))
                case ("DELETE", true):
                    counts["abort", default: 0] += 1
                    if completesLateOnAbort && uploadOpen {
                        uploadOpen = false
                        object = (UnclearCompletionTests.objectETag, UnclearCompletionTests.objectSize)
                    }
                    guard uploadOpen else { return .respond(status: 404, body: FakeServerTests.errorXML("NoSuchUpload")) }
                    uploadOpen = false
                    return .respond(status: 204)
                case ("HEAD", _):
                    counts["head", default: 0] += 1
                    guard let object else { return .respond(status: 404) }
                    return .respond(status: 200, headers: [("ETag", "\"\(object.etag)\""), ("Content-Length", "\(object.size)")])
                case ("DELETE", false):
                    counts["delete", default: 0] += 1
                    object = nil
                    return .respond(status: 204)
                default:
                    return .respond(status: 400, body: FakeServerTests.errorXML("InvalidRequest"))
                }
            }
        }
    }

    static func serve(_ bucket: Bucket) throws -> FakeHTTPServer {
        try FakeHTTPServer { request, _ in bucket.handle(request) }
    }

    @Test func aLostAnswerOfACompletionThatHappenedIsSuccess() throws {
        let bucket = Bucket(.completeAndDropAnswer)
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server, maxAttempts: 3)
        #expect(try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts) == Self.objectETag)
        #expect(bucket.count("complete") == 2, "the retry met NoSuchUpload")
        #expect(bucket.count("head") >= 1)
        #expect(bucket.object?.etag == Self.objectETag)
    }

    /// Ceph RGW 16.2 answers the first completion with an empty `<ETag>`: HeadObject gives it.
    @Test func anEmptyETagInTheAnswerIsSettledByHeadObject() throws {
        let bucket = Bucket(.completeWithEmptyETag)
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts) == Self.objectETag)
        #expect(bucket.count("complete") == 1 && bucket.count("head") == 1)
    }

    /// Ceph RGW 16.2 answers a completion of an unknown upload id with 500 "This multipart
    /// completion is already in progress": no object and no upload is still "not found".
    @Test func a500ForAnUploadThatIsNotThereIsNotFound() throws {
        let bucket = Bucket(.answer500)
        bucket.uploadOpen = false
        bucket.answersWhenGone = true
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server, maxAttempts: 2)
        #expect(throws: ObjectStoreError.notFound(key: "k")) {
            try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts)
        }
        #expect(bucket.count("listParts") == 1 && bucket.object == nil)
    }

    /// AWS refuses parts out of order (InvalidPartOrder), Ceph RGW joins them anyway: the store
    /// refuses them itself, without a request, so every server fails alike.
    @Test func partsOutOfOrderAreRefusedWithoutARequest() throws {
        let bucket = Bucket(.complete)
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(throws: ObjectStoreError.server(status: 400, code: "InvalidPartOrder", message: "parts not in ascending order (refused before sending)")) {
            try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts.reversed())
        }
        #expect(bucket.count("complete") == 0 && bucket.object == nil)
    }

    @Test func noSuchUploadWhenTheObjectIsThereIsSuccess() throws {
        let bucket = Bucket(.noSuchUpload, object: (Self.objectETag, Self.objectSize))
        bucket.uploadOpen = false
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts) == Self.objectETag)
        #expect(bucket.count("complete") == 1)
    }

    @Test func noSuchUploadWithAnotherObjectUnderTheKeyIsFailure() throws {
        // An older object of another size and ETag (a copy that failed earlier) is not this upload's.
        let bucket = Bucket(.noSuchUpload, object: ("0123456789abcdef0123456789abcdef", 7))
        bucket.uploadOpen = false
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(throws: ObjectStoreError.notFound(key: "k")) {
            try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts)
        }
        #expect(bucket.count("listParts") == 1)
    }

    @Test func an200WithAnErrorBodyIsAnErrorAndTheAbortLeavesNothing() throws {
        let bucket = Bucket(.error200("InternalError"))
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server, maxAttempts: 2)
        #expect(throws: ObjectStoreError.server(status: 200, code: "InternalError", message: "We encountered an internal error. Please try again.")) {
            try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts)
        }
        #expect(bucket.count("complete") == 4, "two attempts, then once more after ListParts found the upload open")
        #expect(bucket.count("listParts") == 2)
        #expect(bucket.object == nil)
        try store.abortMultipartUpload("k", uploadID: "u")
        #expect(!bucket.uploadOpen && bucket.object == nil)
    }

    @Test func aRefusedCompletionIsNotSentAgain() throws {
        let bucket = Bucket(.error200("InvalidPart"))
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(throws: ObjectStoreError.server(status: 200, code: "InvalidPart", message: "We encountered an internal error. Please try again.")) {
            try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts)
        }
        #expect(bucket.count("complete") == 1)
        #expect(bucket.count("head") == 1 && bucket.count("listParts") == 1)
    }

    @Test func aCompletionCarriedOutAfterItWasReportedFailedIsUndoneByTheAbort() throws {
        let bucket = Bucket(.answer500)
        bucket.completesLateOnAbort = true
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server, maxAttempts: 2)
        #expect(throws: ObjectStoreError.self) { try store.completeMultipartUpload("k", uploadID: "u", parts: Self.parts) }
        #expect(bucket.object == nil)
        // The abort meets NoSuchUpload because the completion went through meanwhile: a question,
        // answered by HeadObject; the caller counts the version failed, so its object must go.
        try store.abortMultipartUpload("k", uploadID: "u")
        #expect(bucket.count("abort") == 1)
        #expect(bucket.count("delete") == 1)
        #expect(bucket.object == nil)
    }

    @Test func anAbortOfAnUploadNeverCompletedDeletesNothing() throws {
        // NoSuchUpload on abort, an object under the key, but no completion of this upload was
        // reported failed by this store: the object is someone else's and stays.
        let bucket = Bucket(.complete, object: (Self.objectETag, Self.objectSize))
        bucket.uploadOpen = false
        let server = try Self.serve(bucket)
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        try store.abortMultipartUpload("k", uploadID: "u")
        #expect(bucket.count("delete") == 0 && bucket.object != nil)
    }

    @Test func listPartsAnsweredAsMotoDoes() throws {
        let server = try FakeHTTPServer { _, _ in
            .respond(status: 200, body: Array("""
                <?xml version="1.0" encoding="UTF-8"?><ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                <IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber><ETag>"4f08eef4096726bff1125e1b1b734644"</ETag>
                <Size>5242880</Size></Part></ListPartsResponse>
                """.utf8))
        }
        defer { server.stop() }
        let store = try FakeServerTests.store(server)
        #expect(try store.listParts("k", uploadID: "u") == [Self.parts[0]])
    }
}
