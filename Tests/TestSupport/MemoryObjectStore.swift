import Foundation
import ModelStore

/// Objects in memory, with fault injection and request counters: a test double for the upload
/// and read paths. Never the only test of a path: the same tests run against real stores too.
public final class MemoryObjectStore: ObjectStore {
    public enum Operation: String, Sendable {
        case get, head, put, delete, list, create, uploadPart, complete, abort, listParts, listUploads
    }

    /// Decides, before each call, whether it fails: return an error to inject it.
    public typealias FaultRule = @Sendable (_ operation: Operation, _ key: String, _ partNumber: Int?) -> ObjectStoreError?

    private struct Upload { var key: String; var parts: [Int: [UInt8]] = [:] }
    private struct State {
        var objects: [String: [UInt8]] = [:]
        var uploads: [String: Upload] = [:]
        var calls: [Operation: Int] = [:]
        var bytesRead: Int64 = 0
        var bytesWritten: Int64 = 0
        var nextID = 1
    }

    private let state = Locked(State())
    private let fault: Locked<FaultRule?> = Locked(nil)

    public init() {}

    public var location: String { "memory" }

    public func injectFaults(_ rule: FaultRule?) { fault.withLock { $0 = rule } }

    public func calls(_ operation: Operation) -> Int { state.withLock { $0.calls[operation, default: 0] } }
    public var bytesRead: Int64 { state.withLock { $0.bytesRead } }
    public var keys: [String] { state.withLock { $0.objects.keys.sorted() } }
    public var pendingUploadCount: Int { state.withLock { $0.uploads.count } }

    private func enter(_ op: Operation, _ key: String, part: Int? = nil) throws(ObjectStoreError) {
        state.withLock { $0.calls[op, default: 0] += 1 }
        if let rule = fault.withLock({ $0 }), let error = rule(op, key, part) { throw error }
    }

    public func get(_ key: String, range: Range<Int64>?) throws(ObjectStoreError) -> [UInt8] {
        try enter(.get, key)
        let result: [UInt8]? = state.withLock { s in
            guard let bytes = s.objects[key] else { return nil }
            let lower = Int(min(range?.lowerBound ?? 0, Int64(bytes.count)))
            let upper = Int(min(range?.upperBound ?? Int64(bytes.count), Int64(bytes.count)))
            s.bytesRead += Int64(upper - lower)
            return Array(bytes[lower..<upper])
        }
        guard let result else { throw .notFound(key: key) }
        return result
    }

    public func head(_ key: String) throws(ObjectStoreError) -> ObjectInfo? {
        try enter(.head, key)
        return state.withLock { s in
            s.objects[key].map { ObjectInfo(key: key, size: Int64($0.count), etag: Digest.hex(Digest.md5($0))) }
        }
    }

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        try enter(.put, key)
        state.withLock { $0.objects[key] = bytes; $0.bytesWritten += Int64(bytes.count) }
        return Digest.hex(Digest.md5(bytes))
    }

    public func delete(_ key: String) throws(ObjectStoreError) {
        try enter(.delete, key)
        _ = state.withLock { $0.objects.removeValue(forKey: key) }
    }

    public func list(prefix: String) throws(ObjectStoreError) -> [ObjectInfo] {
        try enter(.list, prefix)
        return state.withLock { s in
            s.objects.filter { $0.key.hasPrefix(prefix) }
                .map { ObjectInfo(key: $0.key, size: Int64($0.value.count), etag: Digest.hex(Digest.md5($0.value))) }
                .sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        }
    }

    public func createMultipartUpload(_ key: String) throws(ObjectStoreError) -> String {
        try enter(.create, key)
        return state.withLock { s in
            let id = "upload-\(s.nextID)"
            s.nextID += 1
            s.uploads[id] = Upload(key: key)
            return id
        }
    }

    public func uploadPart(_ key: String, uploadID: String, number: Int, _ bytes: [UInt8]) throws(ObjectStoreError) -> String {
        try enter(.uploadPart, key, part: number)
        let found = state.withLock { s -> Bool in
            guard s.uploads[uploadID]?.key == key else { return false }
            s.uploads[uploadID]!.parts[number] = bytes
            s.bytesWritten += Int64(bytes.count)
            return true
        }
        guard found else { throw .notFound(key: key) }
        return Digest.hex(Digest.md5(bytes))
    }

    @discardableResult
    public func completeMultipartUpload(_ key: String, uploadID: String, parts: [UploadedPart]) throws(ObjectStoreError) -> String {
        try enter(.complete, key)
        return try state.withLock { (s) throws(ObjectStoreError) -> String in
            guard let upload = s.uploads[uploadID], upload.key == key else { throw .notFound(key: key) }
            guard !parts.isEmpty, zip(parts, parts.dropFirst()).allSatisfy({ $0.number < $1.number }) else {
                throw .server(status: 400, code: "InvalidPartOrder", message: "parts must be given in ascending order")
            }
            var bytes: [UInt8] = []
            for (index, part) in parts.enumerated() {
                guard let data = upload.parts[part.number], Digest.hex(Digest.md5(data)) == part.etag else {
                    throw .server(status: 400, code: "InvalidPart", message: "part \(part.number)")
                }
                if index < parts.count - 1 && data.count < 5 << 20 {
                    throw .server(status: 400, code: "EntityTooSmall", message: "part \(part.number) is \(data.count) bytes")
                }
                bytes += data
            }
            s.objects[key] = bytes
            s.uploads[uploadID] = nil
            return Digest.hex(Digest.md5(parts.flatMap { Digest.unhex($0.etag) })) + "-\(parts.count)"
        }
    }

    public func abortMultipartUpload(_ key: String, uploadID: String) throws(ObjectStoreError) {
        try enter(.abort, key)
        state.withLock { s in
            if s.uploads[uploadID]?.key == key { s.uploads[uploadID] = nil }
        }
    }

    public func listParts(_ key: String, uploadID: String) throws(ObjectStoreError) -> [UploadedPart] {
        try enter(.listParts, key)
        guard let parts = state.withLock({ s in s.uploads[uploadID].flatMap { $0.key == key ? $0.parts : nil } }) else {
            throw .notFound(key: key)
        }
        return parts.map { UploadedPart(number: $0.key, etag: Digest.hex(Digest.md5($0.value)), size: Int64($0.value.count)) }
            .sorted { $0.number < $1.number }
    }

    public func listMultipartUploads(prefix: String) throws(ObjectStoreError) -> [PendingUpload] {
        try enter(.listUploads, prefix)
        return state.withLock { s in
            s.uploads.filter { $0.value.key.hasPrefix(prefix) }.map { PendingUpload(key: $0.value.key, uploadID: $0.key) }
                .sorted { $0.uploadID < $1.uploadID }
        }
    }
}
