import Foundation
import Testing
@_exported import TestSupport
import ModelStore
import BlobStore
import S3

/// Which store a conformance test runs against.
enum StoreKind: String, Sendable, CustomTestStringConvertible {
    case local, memory, s3

    var testDescription: String { rawValue }

    /// The local and memory stores always; S3 when `MODELFS_TEST_S3_ENDPOINT` is set.
    static var available: [StoreKind] { S3TestEnvironment.endpoint == nil ? [.local, .memory] : [.local, .memory, .s3] }
}

enum S3TestEnvironment {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    static var endpoint: String? { environment["MODELFS_TEST_S3_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } }
    static var bucket: String { environment["MODELFS_TEST_S3_BUCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? "models" }
    static var required: Bool { environment["MODELFS_REQUIRE_S3"] == "1" }
    /// One per test process, so parallel runs against one bucket never meet.
    static let runID = randomHex(6)
}

func randomHex(_ bytes: Int) -> String {
    Digest.hex((0..<bytes).map { _ in UInt8.random(in: 0...255) })
}

/// A fresh store of `kind` with a unique key prefix; everything under the prefix is removed after `body`.
func withStore(_ kind: StoreKind, _ body: (_ store: any ObjectStore, _ prefix: String) throws -> Void) throws {
    let prefix = "conformance-\(S3TestEnvironment.runID)-\(randomHex(4))/"
    switch kind {
    case .memory:
        try body(MemoryObjectStore(), prefix)
    case .local:
        let root = try temporaryDirectory("blobstore")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try body(try LocalObjectStore(root: root), prefix)
    case .s3:
        let endpoint = try #require(S3TestEnvironment.endpoint)
        var config = try S3Config.resolve(bucket: S3TestEnvironment.bucket, endpoint: endpoint)
        config.operationTimeout = .seconds(20)
        let store = try S3ObjectStore(config: config)
        defer {
            for upload in (try? store.listMultipartUploads(prefix: prefix)) ?? [] {
                try? store.abortMultipartUpload(upload.key, uploadID: upload.uploadID)
            }
            for object in (try? store.list(prefix: prefix)) ?? [] { try? store.delete(object.key) }
        }
        try body(store, prefix)
    }
}

/// Asserts that `body` throws an ``ObjectStoreError`` and returns it.
@discardableResult
func expectObjectStoreError<R>(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                               _ body: () throws -> R) -> ObjectStoreError? {
    #expect(throws: ObjectStoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
}

func isNotFound(_ error: ObjectStoreError?) -> Bool {
    if case .notFound = error { return true }
    return false
}
