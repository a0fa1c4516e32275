import Foundation
import Logging
import ModelStore
import Testing
@testable import S3

/// Against a real S3 endpoint: runs when `MODELFS_TEST_S3_ENDPOINT` is set (credentials and
/// region from the usual `AWS_*` variables, bucket from `MODELFS_TEST_S3_BUCKET`, default
/// `models`), e.g. after `eval "$(scripts/s3-server start DIR)"` and
/// `export MODELFS_TEST_S3_ENDPOINT=$AWS_ENDPOINT_URL`. With `MODELFS_REQUIRE_S3=1` a missing
/// endpoint is a failure, not a skip.
enum LiveS3 {
    static let environment = ProcessInfo.processInfo.environment
    static var endpoint: String? { environment["MODELFS_TEST_S3_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } }
    static var bucket: String { environment["MODELFS_TEST_S3_BUCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? "models" }
    static var enabled: Bool { endpoint != nil }

    static func config() throws -> S3Config {
        var config = try S3Config.resolve(bucket: bucket, endpoint: endpoint, environment: environment)
        config.operationTimeout = .seconds(30)
        return config
    }

    static func store(_ configure: (inout S3Config) -> Void = { _ in }) throws -> S3ObjectStore {
        var config = try config()
        configure(&config)
        return try S3ObjectStore(config: config, logger: quiet)
    }

    /// A fresh prefix per test so runs and parallel tests never collide.
    static func prefix(_ name: String) -> String { "s3tests-\(name)-\(UUID().uuidString.prefix(8))/" }
}

@Test func liveS3IsConfiguredWhenRequired() {
    if LiveS3.environment["MODELFS_REQUIRE_S3"] == "1" {
        #expect(LiveS3.endpoint != nil, "MODELFS_REQUIRE_S3=1 but MODELFS_TEST_S3_ENDPOINT is not set")
    }
}

@Suite(.enabled(if: LiveS3.enabled, "MODELFS_TEST_S3_ENDPOINT is not set"))
struct LiveS3Tests {
    @Test func putGetRangeHeadDelete() throws {
        let store = try LiveS3.store()
        let key = LiveS3.prefix("basic") + "v1.bin"
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        let etag = try store.put(key, bytes)
        #expect(etag == Digest.hex(Digest.md5(bytes)))

        #expect(try store.get(key, range: nil) == bytes)
        #expect(try store.get(key, range: 0..<10) == Array(bytes[0..<10]))
        #expect(try store.get(key, range: 99_990..<200_000) == Array(bytes[99_990...]))
        #expect(try store.get(key, range: 100_000..<100_010) == [])
        #expect(try store.get(key, range: 500_000..<500_001) == [])
        #expect(try store.get(key, range: 7..<7) == [])

        let info = try #require(try store.head(key))
        #expect(info.key == key)
        #expect(info.size == 100_000)
        #expect(info.etag == etag)
        let modified = try #require(info.lastModified)
        #expect(abs(modified.timeIntervalSinceNow) < 600)

        // Empty objects work too.
        let empty = LiveS3.prefix("basic") + "empty"
        #expect(try store.put(empty, []) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(try store.get(empty, range: nil) == [])
        #expect(try store.get(empty, range: 0..<10) == [])
        #expect(try store.head(empty)?.size == 0)

        try store.delete(key)
        try store.delete(empty)
        #expect(try store.head(key) == nil)
        #expect(throws: ObjectStoreError.notFound(key: key)) { try store.get(key, range: nil) }
        #expect(throws: ObjectStoreError.notFound(key: key)) { try store.get(key, range: 0..<1) }
        try store.delete(key)  // deleting a missing key succeeds
    }

    @Test func listWithPagination() throws {
        let store = try LiveS3.store { $0.listPageSize = 2 }
        let prefix = LiveS3.prefix("list")
        let names = ["a", "b/c", "b/d", "e", "f"]
        for (i, name) in names.enumerated() { try store.put(prefix + name, Array(repeating: UInt8(i), count: i + 1)) }
        try store.put(LiveS3.prefix("list-other") + "x", [1])  // a neighbour that must not show up

        // The server really pages: the first page of two is truncated and has a token.
        var first = S3ObjectStore.Operation(name: "LIST", method: "GET", key: nil)
        first.query = [("list-type", "2"), ("max-keys", "2"), ("prefix", prefix)]
        let page = try S3XML.parseListObjectsV2(store.send(first).body)
        #expect(page.objects.map(\.key) == [prefix + "a", prefix + "b/c"])
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken != nil)

        let all = try store.list(prefix: prefix)
        #expect(all.map(\.key) == names.map { prefix + $0 })
        #expect(all.map(\.size) == [1, 2, 3, 4, 5])
        #expect(all.allSatisfy { !$0.etag.isEmpty && !$0.etag.contains("\"") && $0.lastModified != nil })
        #expect(try store.list(prefix: prefix, pageSize: 1).map(\.key) == all.map(\.key))
        #expect(try store.list(prefix: prefix + "b/").map(\.key) == [prefix + "b/c", prefix + "b/d"])
        #expect(try store.list(prefix: prefix + "zzz") == [])

        for name in names { try store.delete(prefix + name) }
        #expect(try store.list(prefix: prefix) == [])
    }

    @Test func awkwardKeysRoundTrip() throws {
        let store = try LiveS3.store()
        let prefix = LiveS3.prefix("keys")
        let names = ["千问-7B/v1.zip", "a+b", "100%", "what?", "hash#tag", "x&y", "with space", "émoji 🚀.bin",
                     "a=b;c,d@e$f!g*h'i(j)", "&amp;"]
        for name in names {
            let key = prefix + name
            let body = Array(name.utf8)
            try store.put(key, body)
            #expect(try store.get(key, range: nil) == body, "\(name)")
            #expect(try store.head(key)?.size == Int64(body.count), "\(name)")
        }
        let listed = try store.list(prefix: prefix).map(\.key)
        #expect(Set(listed) == Set(names.map { prefix + $0 }))
        #expect(listed == listed.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        // A UTF-8 prefix in the query string.
        #expect(try store.list(prefix: prefix + "千问").map(\.key) == [prefix + "千问-7B/v1.zip"])
        for name in names { try store.delete(prefix + name) }
        #expect(try store.list(prefix: prefix) == [])
    }

    @Test func multipartUpload() throws {
        let store = try LiveS3.store()
        let prefix = LiveS3.prefix("mpu")
        let key = prefix + "model v1.safetensors"
        let part1 = (0..<(5 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let part2: [UInt8] = [42]

        let uploadID = try store.createMultipartUpload(key)
        #expect(!uploadID.isEmpty)
        #expect(try store.listParts(key, uploadID: uploadID) == [])
        let etag1 = try store.uploadPart(key, uploadID: uploadID, number: 1, part1)
        let etag2 = try store.uploadPart(key, uploadID: uploadID, number: 2, part2)
        #expect(etag1 == Digest.hex(Digest.md5(part1)))
        #expect(etag2 == Digest.hex(Digest.md5(part2)))

        let expected = [UploadedPart(number: 1, etag: etag1, size: Int64(part1.count)),
                        UploadedPart(number: 2, etag: etag2, size: 1)]
        #expect(try store.listParts(key, uploadID: uploadID) == expected)
        #expect(try store.listParts(key, uploadID: uploadID, pageSize: 1) == expected)

        let pending = try store.listMultipartUploads(prefix: prefix)
        #expect(pending.map(\.key) == [key])
        #expect(pending.map(\.uploadID) == [uploadID])

        // Parts out of order are refused, and the upload stays usable.
        do {
            try store.completeMultipartUpload(key, uploadID: uploadID, parts: expected.reversed())
            Issue.record("parts out of order were accepted")
        } catch {
            if case .server(let status, let code, _) = error {
                #expect(status == 400)
                #expect(code == "InvalidPartOrder")
            } else {
                Issue.record("unexpected \(error)")
            }
        }
        #expect(try store.head(key) == nil)

        let etag = try store.completeMultipartUpload(key, uploadID: uploadID, parts: expected)
        #expect(etag.hasSuffix("-2"))
        #expect(try store.listMultipartUploads(prefix: prefix) == [])
        let info = try #require(try store.head(key))
        #expect(info.size == Int64(part1.count + 1))
        #expect(info.etag == etag)
        let whole = try store.get(key, range: nil)
        #expect(whole.count == part1.count + 1)
        #expect(Digest.sha256(whole) == Digest.sha256(part1 + part2))
        let boundary = Int64(part1.count)
        #expect(try store.get(key, range: (boundary - 2)..<(boundary + 5)) == Array(part1.suffix(2)) + part2)

        // Aborting a finished upload succeeds and leaves the object whole. (AWS forgets a completed
        // upload at once; OpenStack Swift's s3api still lists its parts for a while, so listParts
        // after Complete is not checked.)
        try store.abortMultipartUpload(key, uploadID: uploadID)
        #expect(try store.head(key)?.size == Int64(part1.count + 1))
        #expect(Digest.sha256(try store.get(key, range: nil)) == Digest.sha256(part1 + part2))
        try store.delete(key)
        #expect(try store.head(key) == nil)
    }

    @Test func abortAndListUploads() throws {
        let store = try LiveS3.store()
        let prefix = LiveS3.prefix("abort")
        var ids: [String: String] = [:]
        for name in ["a", "b", "c & d"] {
            let key = prefix + name
            ids[key] = try store.createMultipartUpload(key)
            _ = try store.uploadPart(key, uploadID: ids[key]!, number: 1, Array("part of \(name)".utf8))
        }
        let second = try store.createMultipartUpload(prefix + "a")  // two uploads of one key

        let all = try store.listMultipartUploads(prefix: prefix)
        #expect(all.count == 4)
        #expect(Set(all.map(\.key)) == Set(ids.keys))
        #expect(all.allSatisfy { $0.initiated != nil })
        #expect(try store.listMultipartUploads(prefix: prefix, pageSize: 1) == all)

        for (key, id) in ids { try store.abortMultipartUpload(key, uploadID: id) }
        #expect(try store.listMultipartUploads(prefix: prefix).map(\.uploadID) == [second])
        try store.abortMultipartUpload(prefix + "a", uploadID: second)
        try store.abortMultipartUpload(prefix + "a", uploadID: second)  // twice is fine
        #expect(try store.listMultipartUploads(prefix: prefix) == [])
        #expect(throws: ObjectStoreError.notFound(key: prefix + "a")) {
            try store.uploadPart(prefix + "a", uploadID: second, number: 1, [1])
        }
        #expect(throws: ObjectStoreError.self) {
            try store.completeMultipartUpload(prefix + "a", uploadID: second, parts: [UploadedPart(number: 1, etag: "x", size: 1)])
        }
    }

    @Test func wrongSecretIsRefusedAndNotRevealed() throws {
        let real = try LiveS3.config().credentials.secretAccessKey
        let wrong = "wrong-Secret/Value+123"
        let store = try LiveS3.store { $0.credentials.secretAccessKey = wrong }
        let key = LiveS3.prefix("auth") + "x"
        for attempt in 0..<2 {
            do {
                if attempt == 0 { _ = try store.get(key, range: nil) } else { try store.put(key, [1, 2, 3]) }
                Issue.record("a wrong secret was accepted")
            } catch {
                guard case .server(let status, let code, let message) = error else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                #expect(status == 403)
                #expect(code == "SignatureDoesNotMatch")
                for text in [message, error.description, "\(error)", error.storeError.message] {
                    #expect(!text.contains(wrong))
                    #expect(!text.contains(real))
                    #expect(!text.contains("Signature="))
                }
            }
        }
        #expect(!store.location.contains(wrong))
    }

    @Test func concurrentReads() throws {
        let store = try LiveS3.store()
        let key = LiveS3.prefix("conc") + "blob"
        let bytes = (0..<(2 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try store.put(key, bytes)
        let chunk = 64 * 1024
        let bad = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            let lower = Int64(i * chunk)
            let got = try? store.get(key, range: lower..<(lower + Int64(chunk)))
            if got.map({ $0 == Array(bytes[Int(lower)..<Int(lower) + chunk]) }) != true { bad.withLock { $0 += 1 } }
        }
        #expect(bad.withLock { $0 } == 0)
        try store.delete(key)
    }
}
