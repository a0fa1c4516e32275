import Foundation
import Testing
import ModelStore
import BlobStore

/// What only the local directory store has: keys that must not escape its root, and files that a
/// crash can never leave half-written under a key.
@Suite final class LocalObjectStoreTests {
    let root: String
    let store: LocalObjectStore

    init() throws {
        root = try temporaryDirectory("localstore")
        store = try LocalObjectStore(root: root)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func entries(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + dir)) ?? []).sorted()
    }

    static let badKeys = ["a/../b", "../x", "..", ".", "a/./b", "a//b", "", "/abs", "a/", "x/..", "a\u{0}b"]

    @Test(arguments: badKeys)
    func refusesKeysThatCouldEscapeOrAlias(_ key: String) {
        expectObjectStoreError("put") { try store.put(key, [1, 2, 3]) }
        expectObjectStoreError("get") { try store.get(key, range: nil) }
        expectObjectStoreError("head") { try store.head(key) }
        expectObjectStoreError("delete") { try store.delete(key) }
        expectObjectStoreError("create") { try store.createMultipartUpload(key) }
        // Nothing landed anywhere: not beside the root, not inside it.
        #expect(!FileManager.default.fileExists(atPath: root + "/x"))
        #expect(!FileManager.default.fileExists(atPath: root + "/b"))
        #expect(entries("objects").isEmpty)
        #expect(entries("multipart").isEmpty)
    }

    @Test func noTemporaryFilesRemainAfterWrites() throws {
        try store.put("m/v1.zip", randomBytes(4096))
        try store.put("m/v1.zip", randomBytes(10))     // overwrite
        try store.put("empty", [])
        #expect(entries("tmp").isEmpty)

        let id = try store.createMultipartUpload("m/v2.zip")
        let e1 = try store.uploadPart("m/v2.zip", uploadID: id, number: 1, randomBytes(5 << 20))
        let e2 = try store.uploadPart("m/v2.zip", uploadID: id, number: 2, randomBytes(3))
        #expect(entries("tmp").isEmpty)
        try store.completeMultipartUpload("m/v2.zip", uploadID: id,
                                          parts: [UploadedPart(number: 1, etag: e1, size: 5 << 20), UploadedPart(number: 2, etag: e2, size: 3)])
        #expect(entries("tmp").isEmpty)
        #expect(entries("multipart").isEmpty, "a completed upload leaves no directory")

        let aborted = try store.createMultipartUpload("m/v3.zip")
        _ = try store.uploadPart("m/v3.zip", uploadID: aborted, number: 1, [1])
        try store.abortMultipartUpload("m/v3.zip", uploadID: aborted)
        #expect(entries("tmp").isEmpty)
        #expect(entries("multipart").isEmpty, "an aborted upload leaves no directory")
        #expect(entries("objects/m") == ["v1.zip", "v2.zip"])
    }

    @Test func deleteRemovesDirectoriesLeftEmpty() throws {
        try store.put("a/b/c/d.bin", [1])
        try store.put("a/keep.bin", [2])
        try store.delete("a/b/c/d.bin")
        #expect(entries("objects/a") == ["keep.bin"])
        try store.delete("a/keep.bin")
        #expect(entries("objects").isEmpty)
        #expect(FileManager.default.fileExists(atPath: root + "/objects"), "the objects directory itself stays")
    }

    @Test func objectsAndUploadsSurviveReopening() throws {
        let data = randomBytes(1000)
        try store.put("千问/v 1.zip", data)
        let id = try store.createMultipartUpload("千问/v2.zip")
        let part = randomBytes(5 << 20)
        let etag = try store.uploadPart("千问/v2.zip", uploadID: id, number: 1, part)

        // A new process on the same directory: what a resumed import sees.
        let reopened = try LocalObjectStore(root: root)
        #expect(same(try reopened.get("千问/v 1.zip", range: nil), data))
        #expect(try reopened.listMultipartUploads(prefix: "").map(\.uploadID) == [id])
        #expect(try reopened.listParts("千问/v2.zip", uploadID: id) == [UploadedPart(number: 1, etag: etag, size: Int64(part.count))])
        try reopened.completeMultipartUpload("千问/v2.zip", uploadID: id, parts: [UploadedPart(number: 1, etag: etag, size: Int64(part.count))])
        #expect(same(try store.get("千问/v2.zip", range: nil), part))
    }

    @Test func uploadIDsThatAreNotOursAreNotFound() throws {
        for id in ["", "../objects", "ZZZZ", "..", "0123/../x"] {
            #expect(isNotFound(expectObjectStoreError { try store.listParts("k", uploadID: id) }), "\(id)")
            #expect(isNotFound(expectObjectStoreError { try store.uploadPart("k", uploadID: id, number: 1, [1]) }), "\(id)")
        }
    }

    @Test(arguments: [0, 10_001, -1])
    func partNumbersOutsideS3RangeAreRefused(_ number: Int) throws {
        let id = try store.createMultipartUpload("k")
        expectObjectStoreError { try store.uploadPart("k", uploadID: id, number: number, [1]) }
        #expect(try store.listParts("k", uploadID: id).isEmpty)
    }

    @Test func locationNamesTheDirectory() {
        #expect(store.location.contains(root))
    }
}
