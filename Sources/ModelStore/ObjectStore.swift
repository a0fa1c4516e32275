import Foundation

/// An object's facts from a HEAD or a listing.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// Without quotes.
    public var etag: String
    public var lastModified: Date?

    public init(key: String, size: Int64, etag: String, lastModified: Date? = nil) {
        self.key = key; self.size = size; self.etag = etag; self.lastModified = lastModified
    }
}

/// One uploaded part of a multipart upload.
public struct UploadedPart: Sendable, Equatable, Codable {
    public var number: Int
    /// Without quotes.
    public var etag: String
    public var size: Int64

    public init(number: Int, etag: String, size: Int64) {
        self.number = number; self.etag = etag; self.size = size
    }
}

/// A multipart upload that was started and neither completed nor aborted.
public struct PendingUpload: Sendable, Equatable {
    public var key: String
    public var uploadID: String
    public var initiated: Date?

    public init(key: String, uploadID: String, initiated: Date? = nil) {
        self.key = key; self.uploadID = uploadID; self.initiated = initiated
    }
}

/// Why an object-store call failed.
public enum ObjectStoreError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The key (or upload) does not exist.
    case notFound(key: String)
    /// The server answered with an error that retrying did not cure.
    case server(status: Int, code: String, message: String)
    /// The server could not be reached, or stayed silent, within the time allowed.
    case unreachable(String)
    /// The local disk backing a store is full.
    case noSpace(String)
    /// Anything else: a local I/O error, a malformed answer.
    case other(String)

    public var description: String {
        switch self {
        case .notFound(let key): return "no such object: \(key)"
        case .server(let status, let code, let message): return "object storage answered \(status) \(code)\(message.isEmpty ? "" : ": " + message)"
        case .unreachable(let why): return "object storage unreachable: \(why)"
        case .noSpace(let why): return "no space left: \(why)"
        case .other(let why): return why
        }
    }

    /// The store error this becomes at the domain boundary.
    public var storeError: StoreError {
        switch self {
        case .notFound: return StoreError(.notFound, description)
        case .noSpace: return StoreError(.noSpace, description)
        default: return StoreError(.io, description)
        }
    }
}

/// Object storage: S3, a local directory, or memory. All calls block; every implementation is
/// safe to call from many threads at once. Keys are raw UTF-8 strings; encoding is the store's job.
public protocol ObjectStore: Sendable {
    /// Reads the whole object, or `range` of it (clamped to the object's end).
    func get(_ key: String, range: Range<Int64>?) throws(ObjectStoreError) -> [UInt8]
    /// Reads `range` (clamped to the object's end) into `buffer`, which has room for all of it;
    /// returns how many bytes were read. Readers that keep bytes in their own memory use this to
    /// avoid a buffer per request.
    func get(_ key: String, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int
    /// Reads `range` (clamped to the object's end), handing its bytes to `consume` in order as
    /// they arrive, each once; `consume` answers false to stop early. Returns how many bytes were
    /// handed over. A whole-object load lands each piece while it is hot in the CPU's cache.
    func get(_ key: String, range: Range<Int64>,
             streamingTo consume: (UnsafeRawBufferPointer) -> Bool) throws(ObjectStoreError) -> Int64
    /// The path of a local file holding exactly the object's bytes, when the store keeps objects
    /// as files (the local directory store): reads can then be served from it directly.
    func localFile(_ key: String) -> String?
    /// The object's facts, or nil when it does not exist.
    func head(_ key: String) throws(ObjectStoreError) -> ObjectInfo?
    /// Writes a whole object in one request; returns its ETag.
    @discardableResult
    func put(_ key: String, _ bytes: [UInt8]) throws(ObjectStoreError) -> String
    /// Deletes the object; deleting a missing key succeeds.
    func delete(_ key: String) throws(ObjectStoreError)
    /// Every object under `prefix`, in key order, following pagination.
    func list(prefix: String) throws(ObjectStoreError) -> [ObjectInfo]

    /// Starts a multipart upload; returns its upload id.
    func createMultipartUpload(_ key: String) throws(ObjectStoreError) -> String
    /// Uploads part `number` (1...10000); returns its ETag.
    func uploadPart(_ key: String, uploadID: String, number: Int, _ bytes: [UInt8]) throws(ObjectStoreError) -> String
    /// Joins the parts, in order, into the object; returns its ETag.
    @discardableResult
    func completeMultipartUpload(_ key: String, uploadID: String, parts: [UploadedPart]) throws(ObjectStoreError) -> String
    /// Discards the upload and its parts; aborting a missing upload succeeds.
    func abortMultipartUpload(_ key: String, uploadID: String) throws(ObjectStoreError)
    /// The parts uploaded so far, in part order.
    func listParts(_ key: String, uploadID: String) throws(ObjectStoreError) -> [UploadedPart]
    /// Multipart uploads in progress under `prefix`.
    func listMultipartUploads(prefix: String) throws(ObjectStoreError) -> [PendingUpload]

    /// Where the store is, for logs: a URL or a path, never a credential.
    var location: String { get }
}

extension ObjectStore {
    public func get(_ key: String, range: Range<Int64>, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        let bytes = try get(key, range: range)
        let n = min(bytes.count, buffer.count)
        bytes.withUnsafeBytes { buffer.baseAddress?.copyMemory(from: $0.baseAddress!, byteCount: n) }
        return n
    }

    /// One ranged GET into memory, handed over in pieces.
    public func get(_ key: String, range: Range<Int64>,
                    streamingTo consume: (UnsafeRawBufferPointer) -> Bool) throws(ObjectStoreError) -> Int64 {
        let bytes = try get(key, range: range)
        return bytes.withUnsafeBytes { all -> Int64 in
            var at = 0
            while at < all.count {
                let n = min(256 << 10, all.count - at)
                at += n
                guard consume(UnsafeRawBufferPointer(rebasing: all[(at - n)..<at])) else { break }
            }
            return Int64(at)
        }
    }

    public func localFile(_ key: String) -> String? { nil }
}
