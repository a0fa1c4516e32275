import Foundation
import Testing
import ModelStore

/// One contract, every store: what the upload and read paths rely on, checked against the local
/// directory store, the in-memory test double and (when configured) a real S3 endpoint.
@Suite struct ObjectStoreConformanceTests {
    static let fiveMiB = 5 << 20

    @Test func s3RunsWhenRequired() {
        if S3TestEnvironment.required {
            #expect(S3TestEnvironment.endpoint != nil,
                    "MODELFS_REQUIRE_S3=1 but MODELFS_TEST_S3_ENDPOINT is not set: the S3 conformance run would be skipped")
            #expect(StoreKind.available.contains(.s3))
        } else {
            #expect(StoreKind.available.contains(.s3) == (S3TestEnvironment.endpoint != nil))
        }
    }

    @Test(arguments: StoreKind.available)
    func putThenGetWholeObject(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let data = randomBytes(10_000)
            let etag = try store.put(prefix + "whole.bin", data)
            #expect(!etag.isEmpty)
            #expect(!etag.hasPrefix("\""))
            #expect(same(try store.get(prefix + "whole.bin", range: nil), data))
        }
    }

    @Test(arguments: StoreKind.available)
    func putOverwrites(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            try store.put(prefix + "k", Array("first version, longer".utf8))
            try store.put(prefix + "k", Array("second".utf8))
            #expect(same(try store.get(prefix + "k", range: nil), Array("second".utf8)))
            #expect(try store.head(prefix + "k")?.size == 6)
        }
    }

    struct RangeCase: Sendable, CustomTestStringConvertible {
        let range: Range<Int64>, expected: Range<Int>
        var testDescription: String { "\(range)" }
    }

    static let rangeCases: [RangeCase] = [
        RangeCase(range: 10..<20, expected: 10..<20),          // inside
        RangeCase(range: 0..<1, expected: 0..<1),
        RangeCase(range: 0..<1000, expected: 0..<1000),        // exactly the object
        RangeCase(range: 990..<1000, expected: 990..<1000),    // at the end
        RangeCase(range: 995..<2000, expected: 995..<1000),    // past the end: clamped
        RangeCase(range: 1000..<1010, expected: 1000..<1000),  // starts at the end: nothing
        RangeCase(range: 2000..<3000, expected: 1000..<1000),  // starts past the end: nothing
        RangeCase(range: 5..<5, expected: 5..<5),              // empty
    ]

    @Test(arguments: StoreKind.available)
    func rangedGets(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let data = randomBytes(1000)
            try store.put(prefix + "ranged", data)
            for c in Self.rangeCases {
                #expect(try store.get(prefix + "ranged", range: c.range) == Array(data[c.expected]), "range \(c.range)")
            }
        }
    }

    /// The read path's form: bytes written into the caller's memory (a GET's body straight into
    /// the block cache on S3, `pread` on the local store).
    @Test(arguments: StoreKind.available)
    func rangedGetsIntoMemory(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let data = randomBytes(1000)
            try store.put(prefix + "ranged", data)
            for c in Self.rangeCases {
                var buffer = [UInt8](repeating: 0xEE, count: c.range.count + 7)
                let n = try buffer.withUnsafeMutableBytes { raw in
                    try store.get(prefix + "ranged", range: c.range, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<c.range.count]))
                }
                #expect(n == c.expected.count, "range \(c.range)")
                #expect(Array(buffer[..<n]) == Array(data[c.expected]), "range \(c.range)")
                #expect(buffer[c.range.count...].allSatisfy { $0 == 0xEE }, "nothing written past the buffer")
            }
            #expect(throws: ObjectStoreError.self) {
                var buffer = [UInt8](repeating: 0, count: 10)
                _ = try buffer.withUnsafeMutableBytes { try store.get(prefix + "missing", range: 0..<10, into: $0) }
            }
        }
    }

    @Test(arguments: StoreKind.available)
    func headExistingAndMissing(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            try store.put(prefix + "dir/h.bin", randomBytes(1234))
            let info = try #require(try store.head(prefix + "dir/h.bin"))
            #expect(info.key == prefix + "dir/h.bin")
            #expect(info.size == 1234)
            #expect(!info.etag.isEmpty)
            #expect(try store.head(prefix + "dir/missing.bin") == nil)
            #expect(try store.head(prefix + "nodir/missing.bin") == nil)
            #expect(try store.head(prefix + "dir/h.bin/below") == nil)
        }
    }

    @Test(arguments: StoreKind.available)
    func deleteExistingAndMissing(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            try store.put(prefix + "a/b/gone.bin", [1, 2, 3])
            try store.delete(prefix + "a/b/gone.bin")
            #expect(try store.head(prefix + "a/b/gone.bin") == nil)
            #expect(isNotFound(expectObjectStoreError { try store.get(prefix + "a/b/gone.bin", range: nil) }))
            #expect(try store.list(prefix: prefix).isEmpty)
            // Deleting what is not there succeeds, twice, and under a missing directory.
            try store.delete(prefix + "a/b/gone.bin")
            try store.delete(prefix + "never/was.bin")
            // The key can be written again after a delete.
            try store.put(prefix + "a/b/gone.bin", [4])
            #expect(same(try store.get(prefix + "a/b/gone.bin", range: nil), [4]))
        }
    }

    @Test(arguments: StoreKind.available)
    func getOfMissingKeyIsNotFound(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            #expect(isNotFound(expectObjectStoreError { try store.get(prefix + "missing", range: nil) }))
            #expect(isNotFound(expectObjectStoreError { try store.get(prefix + "missing", range: 0..<10) }))
            #expect(isNotFound(expectObjectStoreError { try store.get(prefix + "no/such/dir", range: nil) }))
        }
    }

    @Test(arguments: StoreKind.available)
    func listWithPrefix(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let objects: [(String, Int)] = [
                ("pfx/z", 4), ("pfx/a", 1), ("pfx/B", 7), ("pfx/千", 3), ("pfx/c/d", 2), ("pfx2/x", 5), ("other/y", 6),
            ]
            for (key, size) in objects { try store.put(prefix + key, randomBytes(size)) }

            let listed = try store.list(prefix: prefix + "pfx/")
            // Key order is UTF-8 byte order, as S3 lists: "B" < "a" < "c/d" < "z" < "千".
            #expect(listed.map(\.key) == ["pfx/B", "pfx/a", "pfx/c/d", "pfx/z", "pfx/千"].map { prefix + $0 })
            #expect(listed.map(\.size) == [7, 1, 2, 4, 3])

            // A prefix is a string prefix, not a directory.
            #expect(try store.list(prefix: prefix + "pfx").count == 6)
            #expect(try store.list(prefix: prefix + "pfx/c").map(\.key) == [prefix + "pfx/c/d"])
            #expect(try store.list(prefix: prefix + "pfx/c/").map(\.key) == [prefix + "pfx/c/d"])
            #expect(try store.list(prefix: prefix + "nothing").isEmpty)
            #expect(try store.list(prefix: prefix).count == objects.count)
        }
    }

    static let awkwardKeys = [
        "千问-7B/v 1+%?#&.zip",
        "model/v1~3fa9c0.zip",
        "model/a%20b=c;d,e@f$g!h'i(j)k*l.tar.gz",
        "sp ace/trailing space .pth",
        "ü/é/ñ.safetensors",
    ]

    @Test(arguments: StoreKind.available)
    func utf8AndReservedCharactersInKeysRoundTrip(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            for (index, name) in Self.awkwardKeys.enumerated() {
                let key = prefix + name
                let data = randomBytes(100 + index)
                try store.put(key, data)
                #expect(same(try store.get(key, range: nil), data), "\(name)")
                #expect(try store.get(key, range: 1..<3) == Array(data[1..<3]), "\(name)")
                #expect(try store.head(key)?.size == Int64(data.count), "\(name)")
                #expect(try store.list(prefix: key).map(\.key) == [key], "\(name)")
                try store.delete(key)
                #expect(try store.head(key) == nil, "\(name)")
            }
            #expect(try store.list(prefix: prefix).isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func zeroByteObject(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            try store.put(prefix + "empty", [])
            #expect(same(try store.get(prefix + "empty", range: nil), []))
            #expect(try store.get(prefix + "empty", range: 0..<10) == [])
            #expect(try store.head(prefix + "empty")?.size == 0)
            #expect(try store.list(prefix: prefix).map(\.size) == [0])
        }
    }

    @Test(arguments: StoreKind.available)
    func concurrentPutsAndGets(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let failures = Locked<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 16) { i in
                let data = [UInt8](repeating: UInt8(i), count: 1000 + i)
                do {
                    try store.put(prefix + "c/\(i)", data)
                    if try store.get(prefix + "c/\(i)", range: nil) != data { failures.withLock { $0.append("\(i): bytes differ") } }
                } catch {
                    failures.withLock { $0.append("\(i): \(error)") }
                }
            }
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty)
            let listed = try store.list(prefix: prefix + "c/")
            #expect(listed.count == 16)
        }
    }

    // MARK: Multipart

    @Test(arguments: StoreKind.available)
    func multipartUploadRoundTrip(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "千问/mp v1.zip"
            let part1 = randomBytes(Self.fiveMiB), part2: [UInt8] = [0x5A]
            let id = try store.createMultipartUpload(key)
            #expect(!id.isEmpty)
            let etag1 = try store.uploadPart(key, uploadID: id, number: 1, part1)
            let etag2 = try store.uploadPart(key, uploadID: id, number: 2, part2)
            #expect(etag1 == Digest.hex(Digest.md5(part1)))
            #expect(etag2 == Digest.hex(Digest.md5(part2)))

            let parts = try store.listParts(key, uploadID: id)
            #expect(parts == [UploadedPart(number: 1, etag: etag1, size: Int64(part1.count)),
                              UploadedPart(number: 2, etag: etag2, size: 1)])
            let pending = try store.listMultipartUploads(prefix: prefix)
            #expect(pending.map(\.key) == [key])
            #expect(pending.map(\.uploadID) == [id])
            // The object does not exist until the upload completes.
            #expect(try store.head(key) == nil)

            let etag = try store.completeMultipartUpload(key, uploadID: id, parts: parts)
            // S3's multipart ETag: the MD5 of the parts' binary MD5s, then "-<parts>".
            do {
                #expect(etag == Digest.hex(Digest.md5(Self.unhex(etag1) + Self.unhex(etag2))) + "-2")
            }
            #expect(same(try store.get(key, range: nil), part1 + part2))
            #expect(try store.get(key, range: Int64(part1.count - 2)..<Int64(part1.count + 5)) == Array(part1.suffix(2)) + part2)
            #expect(try store.head(key)?.size == Int64(part1.count + 1))
            #expect(try store.listMultipartUploads(prefix: prefix).isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func uploadingAPartAgainReplacesIt(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "again.bin"
            let id = try store.createMultipartUpload(key)
            _ = try store.uploadPart(key, uploadID: id, number: 1, randomBytes(100))
            let second = randomBytes(30)
            let etag = try store.uploadPart(key, uploadID: id, number: 1, second)
            #expect(try store.listParts(key, uploadID: id) == [UploadedPart(number: 1, etag: etag, size: 30)])
            try store.completeMultipartUpload(key, uploadID: id, parts: [UploadedPart(number: 1, etag: etag, size: 30)])
            #expect(same(try store.get(key, range: nil), second))
        }
    }

    @Test(arguments: StoreKind.available)
    func abortDiscardsTheUpload(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "aborted.bin"
            let other = try store.createMultipartUpload(prefix + "kept.bin")
            let id = try store.createMultipartUpload(key)
            _ = try store.uploadPart(key, uploadID: id, number: 1, randomBytes(1000))
            #expect(try store.listMultipartUploads(prefix: prefix).count == 2)

            try store.abortMultipartUpload(key, uploadID: id)
            #expect(try store.listMultipartUploads(prefix: prefix).map(\.uploadID) == [other])
            #expect(isNotFound(expectObjectStoreError { try store.listParts(key, uploadID: id) }))
            #expect(isNotFound(expectObjectStoreError { try store.uploadPart(key, uploadID: id, number: 2, [1]) }))
            #expect(try store.head(key) == nil)
            // Aborting again, or an upload that never was, succeeds.
            try store.abortMultipartUpload(key, uploadID: id)
            try store.abortMultipartUpload(key, uploadID: "0123456789abcdef")
        }
    }

    @Test(arguments: StoreKind.available)
    func listMultipartUploadsFiltersByPrefix(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let a = try store.createMultipartUpload(prefix + "a/one")
            let b = try store.createMultipartUpload(prefix + "b/two")
            #expect(try store.listMultipartUploads(prefix: prefix + "a/").map(\.uploadID) == [a])
            #expect(try store.listMultipartUploads(prefix: prefix + "b/").map(\.uploadID) == [b])
            #expect(try store.listMultipartUploads(prefix: prefix + "c/").isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func unknownUploadIsNotFound(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "unknown.bin"
            let real = try store.createMultipartUpload(key)
            // A real upload id used with another key is unknown too.
            do {
                #expect(isNotFound(expectObjectStoreError { try store.listParts(prefix + "other.bin", uploadID: real) }))
            }
            #expect(isNotFound(expectObjectStoreError {
                try store.completeMultipartUpload(key, uploadID: "0123456789abcdef0123456789abcdef", parts: [UploadedPart(number: 1, etag: "x", size: 1)])
            }))
        }
    }

    static func unhex(_ s: String) -> [UInt8] {
        var out: [UInt8] = [], chars = Array(s.utf8)[...]
        while chars.count >= 2, let byte = UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16) {
            out.append(byte)
            chars = chars.dropFirst(2)
        }
        return out
    }

    /// Uploads two parts of `sizes`; returns the upload id and the parts as the store answered.
    static func twoParts(_ store: any ObjectStore, _ key: String, _ sizes: (Int, Int)) throws -> (String, [UploadedPart]) {
        let id = try store.createMultipartUpload(key)
        let p1 = randomBytes(sizes.0), p2 = randomBytes(sizes.1)
        let e1 = try store.uploadPart(key, uploadID: id, number: 1, p1)
        let e2 = try store.uploadPart(key, uploadID: id, number: 2, p2)
        return (id, [UploadedPart(number: 1, etag: e1, size: Int64(p1.count)), UploadedPart(number: 2, etag: e2, size: Int64(p2.count))])
    }

    @Test(arguments: StoreKind.available)
    func completeWithPartsOutOfOrderFails(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "order.bin"
            // Both parts are big enough, so only the order is wrong.
            let (id, parts) = try Self.twoParts(store, key, (Self.fiveMiB, Self.fiveMiB))
            do {
                let error = expectObjectStoreError("parts listed 2, 1") {
                    try store.completeMultipartUpload(key, uploadID: id, parts: parts.reversed())
                }
                let stored = try store.head(key)
                #expect(stored == nil, "no object from a refused completion (\(String(describing: error)))")
            }
        }
    }

    @Test(arguments: StoreKind.available)
    func completeWithSmallNonLastPartFails(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "small.bin"
            let (id, parts) = try Self.twoParts(store, key, (1024, 1024))
            do {
                let error = expectObjectStoreError("part 1 is under 5 MiB and not the last") {
                    try store.completeMultipartUpload(key, uploadID: id, parts: parts)
                }
                let stored = try store.head(key)
                #expect(stored == nil, "no object from a refused completion (\(String(describing: error)))")
            }
        }
    }

    @Test(arguments: StoreKind.available)
    func completeWithWrongETagFails(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "etag.bin"
            let (id, parts) = try Self.twoParts(store, key, (Self.fiveMiB, 10))
            var wrong = parts
            wrong[1].etag = Digest.hex(Digest.md5([1, 2, 3]))
            do {
                let error = expectObjectStoreError("ETag of part 2 does not match") {
                    try store.completeMultipartUpload(key, uploadID: id, parts: wrong)
                }
                let stored = try store.head(key)
                #expect(stored == nil, "no object from a refused completion (\(String(describing: error)))")
            }
        }
    }

    @Test(arguments: StoreKind.available)
    func completeWithMissingPartFails(_ kind: StoreKind) throws {
        try withStore(kind) { store, prefix in
            let key = prefix + "missing-part.bin"
            let (id, parts) = try Self.twoParts(store, key, (Self.fiveMiB, 10))
            let error = expectObjectStoreError("part 3 was never uploaded") {
                try store.completeMultipartUpload(key, uploadID: id, parts: [parts[0], UploadedPart(number: 3, etag: parts[1].etag, size: 10)])
            }
            #expect(try store.head(key) == nil, "no object from a refused completion (\(String(describing: error)))")
        }
    }
}
