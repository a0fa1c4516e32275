import Foundation
import Logging
import ModelStore
import Synchronization

/// An S3 bucket as an ``ObjectStore``: libcurl for transport, SigV4 header signing, retries with
/// full-jitter backoff inside a bounded time per operation. Thread-safe; calls block.
public final class S3ObjectStore: ObjectStore {
    public let config: S3Config
    let signer: SigV4Signer
    let transport: CurlTransport
    let retry: RetryPolicy
    let logger: Logger
    let target: Target

    /// Where requests go: `scheme://authority` plus a raw path prefix (`/bucket` for path-style).
    struct Target: Sendable, Equatable {
        var scheme: String
        var authority: String
        var pathPrefix: String

        /// The raw (unencoded) path of `key`, or of the bucket itself.
        func path(_ key: String?) -> String {
            guard let key else { return pathPrefix.isEmpty ? "/" : pathPrefix }
            return pathPrefix + "/" + key
        }
    }

    public init(config: S3Config, logger: Logger = Logger(label: "modelfs.s3")) throws(S3ConfigError) {
        try S3Config.validateBucket(config.bucket)
        self.config = config
        self.signer = SigV4Signer(credentials: config.credentials, region: config.region)
        self.transport = CurlTransport(settings: .init(connectTimeout: config.connectTimeout, lowSpeedLimit: config.lowSpeedLimit,
                                                       lowSpeedTime: config.lowSpeedTime, maxIdle: config.maxIdleConnections))
        self.retry = RetryPolicy(base: config.retryBase, cap: config.retryCap, maxAttempts: max(1, config.maxAttempts))
        self.logger = logger
        self.target = try Self.target(for: config)
    }

    static func target(for config: S3Config) throws(S3ConfigError) -> Target {
        let bucket = config.bucket
        if let raw = config.endpoint {
            let ep = try S3Endpoint.parse(raw)
            if config.addressing == .virtualHosted {
                return Target(scheme: ep.scheme, authority: bucket.lowercased() + "." + ep.authority, pathPrefix: ep.basePath)
            }
            return Target(scheme: ep.scheme, authority: ep.authority, pathPrefix: ep.basePath + "/" + bucket)
        }
        let host = "s3.\(config.region).amazonaws.com" + (config.region.hasPrefix("cn-") ? ".cn" : "")
        // A dotted bucket breaks the wildcard TLS certificate of virtual-hosted names.
        let pathStyle = config.addressing == .path || (config.addressing == .auto && bucket.contains("."))
        if pathStyle { return Target(scheme: "https", authority: host, pathPrefix: "/" + bucket) }
        return Target(scheme: "https", authority: bucket + "." + host, pathPrefix: "")
    }

    /// `s3://bucket at scheme://host[:port]`: never a credential.
    public var location: String {
        let base = target.pathPrefix.hasSuffix("/" + config.bucket) ? String(target.pathPrefix.dropLast(config.bucket.count + 1)) : target.pathPrefix
        return "s3://\(config.bucket) at \(target.scheme)://\(target.authority)\(base)"
    }

    // MARK: - Objects

    public func get(_ key: String, range: Range<Int64>?) throws(ObjectStoreError) -> [UInt8] {
        guard let range else {
            return try send(Operation(name: "GET", method: "GET", key: key)).body
        }
        let lower = max(range.lowerBound, 0)
        guard range.upperBound > lower else { return [] }
        let wanted = range.upperBound - lower
        var op = Operation(name: "GET", method: "GET", key: key)
        op.headers = [("Range", "bytes=\(lower)-\(range.upperBound - 1)")]
        op.expectedResponseSize = Int(min(wanted, 1 << 31))
        op.acceptedStatuses = [416]
        let response = try send(op)
        switch response.status {
        case 416:
            return []  // the range starts at or past the end
        case 200:
            // The server ignored Range and sent the whole object: cut the range out.
            let count = Int64(response.body.count)
            guard lower < count else { return [] }
            return Array(response.body[Int(lower)..<Int(min(range.upperBound, count))])
        default:
            guard Int64(response.body.count) <= wanted else {
                throw .other("GET \(key) range \(lower)..<\(range.upperBound) answered \(response.body.count) bytes")
            }
            return response.body
        }
    }

    public func get(_ key: String, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        let lower = max(range.lowerBound, 0)
        let wanted = min(range.upperBound - lower, Int64(buffer.count))
        guard wanted > 0 else { return 0 }
        var op = Operation(name: "GET", method: "GET", key: key)
        op.headers = [("Range", "bytes=\(lower)-\(lower + wanted - 1)")]
        op.acceptedStatuses = [416]
        op.sink = ResponseSink(buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(wanted)]))
        let response = try send(op)
        switch response.status {
        case 416:
            return 0
        case 200:
            // The server ignored Range and sent the whole object: keep the range of it.
            if response.sinkCount > 0 {
                let count = Int64(response.sinkCount)
                guard lower < count else { return 0 }
                let n = Int(min(lower + wanted, count) - lower)
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + Int(lower), byteCount: n)  // memmove
                return n
            }
            let count = Int64(response.body.count)
            guard lower < count else { return 0 }
            let n = Int(min(lower + wanted, count) - lower)
            response.body.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(lower), byteCount: n) }
            return n
        default:
            guard response.body.isEmpty else {
                throw .other("GET \(key) range \(lower)..<\(lower + wanted) answered \(response.body.count) bytes")
            }
            return response.sinkCount
        }
    }

    /// A streamed GET's receiving thread is woken once this much of its body waits in the socket
    /// (256 KiB: a whole-load piece), not at every packet. `MODELFS_S3_LOW_WATER_KIB` sets
    /// another (0: off), for benchmarks.
    static let streamLowWater = (ProcessInfo.processInfo.environment["MODELFS_S3_LOW_WATER_KIB"].flatMap { Int($0) } ?? 256) << 10

    public func get(_ key: String, range: Range<Int64>,
                    streamingTo consume: (UnsafeRawBufferPointer) -> Bool) throws(ObjectStoreError) -> Int64 {
        let lower = max(range.lowerBound, 0)
        let wanted = range.upperBound - lower
        guard wanted > 0 else { return 0 }
        let outcome = withoutActuallyEscaping(consume) { consume in
            Result { () throws(ObjectStoreError) -> Int64 in
                let stream = RangeStream(lower: lower, wanted: wanted, consume: consume)
                var op = Operation(name: "GET", method: "GET", key: key)
                op.headers = [("Range", "bytes=\(lower)-\(lower + wanted - 1)")]
                op.acceptedStatuses = [416]
                op.stream = stream
                let response = try send(op)
                guard response.status != 416 else { return 0 }  // the range starts at or past the end
                guard response.body.isEmpty else {
                    throw .other("GET \(key) range \(lower)..<\(lower + wanted) answered \(response.body.count) bytes")
                }
                return stream.delivered
            }
        }
        return try outcome.get()
    }

    public func head(_ key: String) throws(ObjectStoreError) -> ObjectInfo? {
        let response: HTTPResponse
        do {
            response = try send(Operation(name: "HEAD", method: "HEAD", key: key))
        } catch .notFound {
            return nil
        }
        return ObjectInfo(key: key, size: Int64(response.header("content-length") ?? "") ?? 0,
                          etag: S3XML.unquote(response.header("etag") ?? ""),
                          lastModified: response.header("last-modified").flatMap(S3Dates.parseHTTP))
    }

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        var op = Operation(name: "PUT", method: "PUT", key: key)
        op.body = bytes
        let response = try send(op)
        return S3XML.unquote(response.header("etag") ?? "")
    }

    public func delete(_ key: String) throws(ObjectStoreError) {
        do {
            _ = try send(Operation(name: "DELETE", method: "DELETE", key: key))
        } catch .notFound {
            return
        }
    }

    public func list(prefix: String) throws(ObjectStoreError) -> [ObjectInfo] {
        try list(prefix: prefix, pageSize: config.listPageSize)
    }

    /// ``list(prefix:)`` with `pageSize` keys per ListObjectsV2 request (1...1000).
    public func list(prefix: String, pageSize: Int) throws(ObjectStoreError) -> [ObjectInfo] {
        var all: [ObjectInfo] = []
        var token: String?
        repeat {
            var op = Operation(name: "LIST", method: "GET", key: nil)
            op.query = [("list-type", "2"), ("max-keys", String(min(max(pageSize, 1), 1000)))]
            if !prefix.isEmpty { op.query.append(("prefix", prefix)) }
            if let token { op.query.append(("continuation-token", token)) }
            op.notFoundKey = prefix
            op.errorIn200 = true
            let page = try S3XML.parseListObjectsV2(send(op).body)
            all += page.objects
            guard page.isTruncated else { break }
            guard let next = page.nextContinuationToken, next != token else {
                throw .other("ListObjectsV2 of '\(prefix)' is truncated but gives no new continuation token")
            }
            token = next
        } while true
        return all
    }

    // MARK: - Multipart uploads

    public func createMultipartUpload(_ key: String) throws(ObjectStoreError) -> String {
        var op = Operation(name: "CREATE-MULTIPART", method: "POST", key: key)
        op.query = [("uploads", "")]
        op.errorIn200 = true
        return try S3XML.parseInitiateMultipartUpload(send(op).body)
    }

    public func uploadPart(_ key: String, uploadID: String, number: Int, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        guard (1...10000).contains(number) else { throw .other("part number \(number) is outside 1...10000") }
        var op = Operation(name: "UPLOAD-PART \(number)", method: "PUT", key: key)
        op.query = [("partNumber", String(number)), ("uploadId", uploadID)]
        op.body = bytes
        let response = try send(op)
        guard let etag = response.header("etag") else { throw .other("UploadPart \(number) of \(key) answered no ETag") }
        return S3XML.unquote(etag)
    }

    /// Joins the parts into the object. When the answer does not say it happened (lost, timed
    /// out, unreadable, an error — also `<Error>` in a 200), the bucket is asked before deciding:
    /// an object under `key` of the parts' total size and with the ETag these parts make (the MD5
    /// of their MD5s, `-<count>`) means it completed; an upload that ListParts still answers for
    /// is open — the complete is sent once more if the failure was a transient one, otherwise the
    /// error is thrown so the caller aborts. Never returns unless the object exists; never throws
    /// while it knows the object exists.
    @discardableResult
    public func completeMultipartUpload(_ key: String, uploadID: String, parts: [UploadedPart]) throws(ObjectStoreError) -> String {
        var op = Operation(name: "COMPLETE-MULTIPART", method: "POST", key: key)
        op.query = [("uploadId", uploadID)]
        // Parts out of order are the caller's mistake. AWS and s3api refuse them (InvalidPartOrder);
        // Ceph RGW joins them anyway, in number order: refused here, so every server fails alike.
        guard zip(parts, parts.dropFirst()).allSatisfy({ $0.number < $1.number }) else {
            throw .server(status: 400, code: "InvalidPartOrder", message: "parts not in ascending order (refused before sending)")
        }
        op.body = S3XML.completeMultipartUploadBody(parts)
        op.errorIn200 = true
        let expected = Completion(key: key, etag: S3XML.multipartETag(parts), size: parts.reduce(0) { $0 + $1.size }, parts: parts.count)
        var round = 0
        while true {
            round += 1
            let failure: ObjectStoreError
            do {
                let etag = try S3XML.parseCompleteMultipartUpload(send(op).body)
                forgetCompletion(uploadID)
                return etag
            } catch {
                failure = error
            }
            logger.warning("CompleteMultipartUpload gave no clear answer; asking the bucket what happened",
                           metadata: ["key": "\(key)", "upload": "\(uploadID)", "error": "\(failure)"])
            switch settle(expected, uploadID: uploadID) {
            case .completed(let etag):
                logger.info("CompleteMultipartUpload had completed the object", metadata: ["key": "\(key)", "etag": "\(etag)"])
                forgetCompletion(uploadID)
                return etag
            case .open where round == 1 && Self.isTransient(failure):
                logger.info("the multipart upload is still open; completing it once more", metadata: ["key": "\(key)"])
                continue
            case .open, .unknown:
                // The caller aborts next; an abort that meets NoSuchUpload checks this record.
                rememberCompletion(expected, uploadID: uploadID)
                throw failure
            case .gone:
                // No object and no upload: whatever the server said (Ceph RGW answers an unknown
                // upload id with 500 "This multipart completion is already in progress"), the
                // upload is not there.
                if case .server = failure { throw .notFound(key: key) }
                throw failure
            }
        }
    }

    /// What a completion should have made.
    struct Completion: Sendable, Equatable {
        var key: String
        /// Nil when the parts' ETags are not MD5s: then any `-<parts>` ETag of the right size is taken.
        var etag: String?
        var size: Int64
        var parts: Int

        func isMadeBy(_ info: ObjectInfo) -> Bool {
            guard info.size == size else { return false }
            if let etag { return info.etag == etag }
            return info.etag.hasSuffix("-\(parts)")
        }
    }

    enum Settlement: Equatable {
        /// The object is there, made by these parts.
        case completed(etag: String)
        /// The upload still exists: the object was not made.
        case open
        /// Neither: no such object (or another one) and no such upload.
        case gone
        /// The bucket could not be asked.
        case unknown
    }

    /// Finds out whether a completion whose answer was not clear happened.
    func settle(_ expected: Completion, uploadID: String) -> Settlement {
        do {
            if let info = try head(expected.key), expected.isMadeBy(info) { return .completed(etag: info.etag) }
        } catch {
            logger.warning("HeadObject after an unclear completion failed", metadata: ["key": "\(expected.key)", "error": "\(error)"])
            return .unknown
        }
        var op = Operation(name: "LIST-PARTS", method: "GET", key: expected.key)
        op.query = [("uploadId", uploadID), ("max-parts", "1")]
        op.errorIn200 = true
        do {
            _ = try S3XML.parseListParts(send(op).body)
            return .open
        } catch .notFound {
            // Gone: completed meanwhile (look once more) or aborted.
            if let info = try? head(expected.key), expected.isMadeBy(info) { return .completed(etag: info.etag) }
            return .gone
        } catch {
            logger.warning("ListParts after an unclear completion failed", metadata: ["key": "\(expected.key)", "error": "\(error)"])
            return .unknown
        }
    }

    /// Failures after which the same complete may well succeed.
    static func isTransient(_ error: ObjectStoreError) -> Bool {
        switch error {
        case .unreachable, .other: return true
        case .server(let status, let code, _): return RetryPolicy.isRetryable(status: status, code: code)
        case .notFound, .noSpace: return false
        }
    }

    /// Completions reported failed, by upload id, until their upload is aborted: an abort that
    /// finds the upload gone looks here to tell "never completed" from "completed late".
    private let unsettled = Mutex<[String: Completion]>([:])

    private func rememberCompletion(_ completion: Completion, uploadID: String) {
        unsettled.withLock { records in
            if records.count >= 1024 { records.removeAll() }  // bounded; a lost record only loses the late check
            records[uploadID] = completion
        }
    }

    @discardableResult
    private func forgetCompletion(_ uploadID: String) -> Completion? {
        unsettled.withLock { $0.removeValue(forKey: uploadID) }
    }

    /// Discards the upload. `NoSuchUpload` is a question, not an answer: if this store reported
    /// the upload's completion failed and the object its parts make now exists under the key,
    /// the completion happened after all (late, or its answer lost): the object is deleted, so a
    /// version counted failed never leaves its object behind. Otherwise the upload was already
    /// gone, which is what an abort wants.
    public func abortMultipartUpload(_ key: String, uploadID: String) throws(ObjectStoreError) {
        var op = Operation(name: "ABORT-MULTIPART", method: "DELETE", key: key)
        op.query = [("uploadId", uploadID)]
        do {
            _ = try send(op)
            forgetCompletion(uploadID)
        } catch .notFound {
            guard let completion = unsettled.withLock({ $0[uploadID] }), completion.key == key else { return }
            guard let info = try head(key) else { forgetCompletion(uploadID); return }
            if completion.isMadeBy(info) {
                logger.warning("the multipart upload being aborted had completed after all; deleting its object",
                               metadata: ["key": "\(key)", "upload": "\(uploadID)", "etag": "\(info.etag)"])
                try delete(key)
            }
            forgetCompletion(uploadID)
        }
    }

    public func listParts(_ key: String, uploadID: String) throws(ObjectStoreError) -> [UploadedPart] {
        try listParts(key, uploadID: uploadID, pageSize: 1000)
    }

    /// ``listParts(_:uploadID:)`` with `pageSize` parts per request.
    public func listParts(_ key: String, uploadID: String, pageSize: Int) throws(ObjectStoreError) -> [UploadedPart] {
        var all: [UploadedPart] = []
        var marker: Int?
        repeat {
            var op = Operation(name: "LIST-PARTS", method: "GET", key: key)
            op.query = [("uploadId", uploadID), ("max-parts", String(min(max(pageSize, 1), 1000)))]
            if let marker { op.query.append(("part-number-marker", String(marker))) }
            op.errorIn200 = true
            let page = try S3XML.parseListParts(send(op).body)
            all += page.parts
            guard page.isTruncated else { break }
            guard let next = page.nextPartNumberMarker ?? page.parts.last?.number, next != marker else {
                throw .other("ListParts of \(key) is truncated but gives no new part-number marker")
            }
            marker = next
        } while true
        return all.sorted { $0.number < $1.number }
    }

    public func listMultipartUploads(prefix: String) throws(ObjectStoreError) -> [PendingUpload] {
        try listMultipartUploads(prefix: prefix, pageSize: 1000)
    }

    /// ``listMultipartUploads(prefix:)`` with `pageSize` uploads per request.
    public func listMultipartUploads(prefix: String, pageSize: Int) throws(ObjectStoreError) -> [PendingUpload] {
        var all: [PendingUpload] = []
        var keyMarker: String?
        var idMarker: String?
        repeat {
            var op = Operation(name: "LIST-MULTIPART", method: "GET", key: nil)
            op.query = [("uploads", ""), ("max-uploads", String(min(max(pageSize, 1), 1000)))]
            if !prefix.isEmpty { op.query.append(("prefix", prefix)) }
            if let keyMarker { op.query.append(("key-marker", keyMarker)) }
            if let idMarker { op.query.append(("upload-id-marker", idMarker)) }
            op.notFoundKey = prefix
            op.errorIn200 = true
            let page = try S3XML.parseListMultipartUploads(send(op).body)
            all += page.uploads
            guard page.isTruncated else { break }
            let nextKey = page.nextKeyMarker ?? page.uploads.last?.key
            let nextID = page.nextUploadIDMarker ?? page.uploads.last?.uploadID
            guard let nextKey, nextKey != keyMarker || nextID != idMarker else {
                throw .other("ListMultipartUploads of '\(prefix)' is truncated but gives no new marker")
            }
            keyMarker = nextKey
            idMarker = nextID
        } while true
        return all
    }

    // MARK: - Sending with retries

    struct Operation: Sendable {
        /// For logs and messages.
        var name: String
        var method: String
        /// Nil for bucket-level requests.
        var key: String?
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var expectedResponseSize: Int?
        /// Where the body of a 2xx answer goes.
        var sink: ResponseSink?
        /// Where the body of a 2xx answer goes as it arrives.
        var stream: ResponseStream?
        /// Non-2xx statuses handed back as answers rather than errors.
        var acceptedStatuses: Set<Int> = []
        /// A 2xx may carry an `<Error>` body (CompleteMultipartUpload on AWS; set for every
        /// operation whose answer is XML, never for object bytes, which may be anything).
        var errorIn200 = false
        /// The key named by `.notFound` for bucket-level requests.
        var notFoundKey: String?

        init(name: String, method: String, key: String?) {
            self.name = name; self.method = method; self.key = key
        }

        var subject: String { key ?? notFoundKey ?? "" }
    }

    func send(_ op: Operation) throws(ObjectStoreError) -> HTTPResponse {
        var attempts = 0
        return try send(op, attempts: &attempts)
    }

    /// The URL and the payload hash of `op`; both are the same for every attempt.
    func prepare(_ op: Operation) -> (url: String, path: String, payloadHash: String) {
        let path = target.path(op.key)
        var url = target.scheme + "://" + target.authority + S3URIEncoding.encodePath(path)
        if !op.query.isEmpty { url += "?" + S3URIEncoding.canonicalQuery(op.query) }
        let payloadHash: String
        if op.body.isEmpty {
            payloadHash = SigV4Signer.emptyPayloadHash
        } else if config.payloadSigning == .unsignedOverHTTPS && target.scheme == "https" {
            payloadHash = SigV4Signer.unsignedPayload
        } else {
            payloadHash = Digest.hex(Digest.sha256(op.body))
        }
        return (url, path, payloadHash)
    }

    /// Sends `op` until it succeeds, fails for good, or its time is up. Signs each attempt anew
    /// (the payload hash once). `attempts` tells how many requests were made.
    func send(_ op: Operation, attempts: inout Int) throws(ObjectStoreError) -> HTTPResponse {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + config.operationTimeout
        let (url, path, payloadHash) = prepare(op)
        var headers = [("Host", target.authority)]
        headers += op.headers
        var lastFailure: ObjectStoreError = .unreachable("\(op.name) \(op.subject): no attempt made")
        attempts = 0

        while true {
            let remaining = deadline - clock.now
            if remaining <= .zero { break }
            attempts += 1
            // A streamed GET that failed midway asks for the rest of its range only.
            if let ranged = op.stream as? RangeStream, let rest = ranged.nextAttemptRange(),
               let at = headers.firstIndex(where: { $0.0 == "Range" }) {
                headers[at].1 = rest
            }
            let signed = signer.sign(SigV4Signer.Request(method: op.method, path: path, query: op.query, headers: headers,
                                                         payloadHash: payloadHash), date: Date())
            var request = HTTPRequest(method: op.method, url: url, headers: signed.headers, body: op.body,
                                      expectedResponseSize: op.expectedResponseSize, sink: op.sink, stream: op.stream)
            // Not on a retry: a server slower than 256 KiB per low-speed window would stall every attempt.
            request.streamLowWater = attempts == 1 ? Self.streamLowWater : 0
            let reason: String
            let response: HTTPResponse
            do {
                response = try transport.perform(request, timeout: remaining)
            } catch {
                let elapsed = clock.now - start
                lastFailure = .unreachable("\(op.name) \(op.subject) to \(target.scheme)://\(target.authority): \(error.message) after \(attempts) attempt\(attempts == 1 ? "" : "s") in \(Self.seconds(elapsed))")
                guard error.retryable else { throw lastFailure }
                reason = error.message
                if let next = backoff(op, attempts: attempts, deadline: deadline, reason: reason) {
                    Thread.sleep(forTimeInterval: next)
                    continue
                }
                break
            }
            logger.trace("S3 request", metadata: [
                "op": "\(op.name)", "key": "\(op.subject)", "status": "\(response.status)", "attempt": "\(attempts)",
                "bytes_in": "\(response.body.count + response.sinkCount)", "bytes_out": "\(op.body.count)",
            ])
            switch classify(response, op) {
            case .success:
                return response
            case .fatal(let error):
                throw error
            case .retryable(let error, let why):
                lastFailure = error
                reason = why
            }

            guard let next = backoff(op, attempts: attempts, deadline: deadline, reason: reason) else { break }
            Thread.sleep(forTimeInterval: next)
        }

        logger.warning("S3 request failed; giving up", metadata: [
            "op": "\(op.name)", "key": "\(op.subject)", "attempts": "\(attempts)",
            "elapsed": "\(Self.seconds(clock.now - start))", "error": "\(lastFailure)",
        ])
        if case .unreachable = lastFailure { throw lastFailure }
        if case .server = lastFailure { throw lastFailure }
        throw .unreachable("\(op.name) \(op.subject): \(lastFailure)")
    }

    /// The seconds to wait before the next attempt, or nil when attempts or time are used up.
    private func backoff(_ op: Operation, attempts: Int, deadline: ContinuousClock.Instant, reason: String) -> Double? {
        if attempts >= retry.maxAttempts { return nil }
        let delay = retry.delay(afterAttempt: attempts)
        if ContinuousClock.now + delay >= deadline { return nil }
        let level: Logger.Level = attempts >= 3 ? .warning : .debug
        logger.log(level: level, "S3 request failed; retrying", metadata: [
            "op": "\(op.name)", "key": "\(op.subject)", "attempt": "\(attempts)",
            "delay_ms": "\(CurlTransport.milliseconds(delay))", "reason": "\(reason)",
        ])
        return Double(CurlTransport.milliseconds(delay)) / 1000
    }

    enum Outcome {
        case success
        case retryable(ObjectStoreError, String)
        case fatal(ObjectStoreError)
    }

    /// Sorts an answer into success, an error worth retrying, or a final error.
    func classify(_ response: HTTPResponse, _ op: Operation) -> Outcome {
        let status = response.status
        if (200..<300).contains(status) {
            guard op.errorIn200, let error = S3XML.parseError(response.body) else { return .success }
            let failure = ObjectStoreError.server(status: status, code: error.code, message: error.message)
            if RetryPolicy.isRetryable(status: status, code: error.code) {
                return .retryable(failure, "\(status) \(error.code) in a 200 answer")
            }
            return error.code == "NoSuchUpload" || error.code == "NoSuchKey" ? .fatal(.notFound(key: op.subject)) : .fatal(failure)
        }
        if op.acceptedStatuses.contains(status) { return .success }

        let parsed = S3XML.parseError(response.body)
        let code = parsed?.code.isEmpty == false ? parsed!.code : Self.defaultCode(status)
        let message = parsed?.message ?? ""
        let failure = ObjectStoreError.server(status: status, code: code, message: message)
        if RetryPolicy.isRetryable(status: status, code: code) {
            return .retryable(failure, "\(status) \(code)")
        }
        if status == 404 && code != "NoSuchBucket" {
            return .fatal(.notFound(key: op.subject))
        }
        if code == "NoSuchKey" || code == "NoSuchUpload" {
            return .fatal(.notFound(key: op.subject))
        }
        return .fatal(failure)
    }

    static func defaultCode(_ status: Int) -> String {
        switch status {
        case 400: return "BadRequest"
        case 403: return "Forbidden"
        case 404: return "NotFound"
        case 405: return "MethodNotAllowed"
        case 409: return "Conflict"
        case 411: return "MissingContentLength"
        case 412: return "PreconditionFailed"
        case 416: return "InvalidRange"
        case 429: return "TooManyRequests"
        case 500: return "InternalError"
        case 502: return "BadGateway"
        case 503: return "ServiceUnavailable"
        case 504: return "GatewayTimeout"
        default: return "HTTP\(status)"
        }
    }

    static func seconds(_ d: Duration) -> String {
        let ms = CurlTransport.milliseconds(d)
        return "\(ms / 1000).\(String(ms % 1000 / 100)) s"
    }
}

/// Hands one ranged GET's bytes on as they arrive, each byte of the range once and in order
/// across attempts: a retry asks for what is not handed on yet (``nextAttemptRange``), and
/// whatever an answer repeats is passed over. A server that ignores Range and sends the whole
/// object has the bytes before the range passed over too, and its transfer stopped once the
/// range is in.
final class RangeStream: ResponseStream, @unchecked Sendable {
    let lower: Int64
    let wanted: Int64
    private let consume: (UnsafeRawBufferPointer) -> Bool
    /// Bytes of the range handed on so far, over every attempt.
    private(set) var delivered: Int64 = 0
    /// Where in the range the current attempt's next byte belongs (negative: before it).
    private var position: Int64 = 0
    /// The current answer is the whole object, not the range.
    private var whole = false
    /// Where in the range the current attempt's Range header starts.
    private var attemptStart: Int64 = 0

    init(lower: Int64, wanted: Int64, consume: @escaping (UnsafeRawBufferPointer) -> Bool) {
        self.lower = lower; self.wanted = wanted; self.consume = consume
    }

    /// The Range header of the next attempt: what is not handed on yet; nil for the first.
    func nextAttemptRange() -> String? {
        guard delivered > 0, delivered < wanted else { return nil }
        attemptStart = delivered
        return "bytes=\(lower + delivered)-\(lower + wanted - 1)"
    }

    func begin(status: Int) {
        whole = status != 206
        position = whole ? -lower : attemptStart
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let start = position, end = position + Int64(bytes.count)
        position = end
        let from = max(start, delivered), to = min(end, wanted)
        if from < to {
            delivered = to
            guard consume(UnsafeRawBufferPointer(rebasing: bytes[Int(from - start)..<Int(to - start)])) else { return false }
        }
        // The range is in: the rest of a whole object is not wanted. (A 206 ends there anyway,
        // and stopping it would cost its connection.)
        return !whole || end < wanted
    }
}
