import Foundation
import Glibc
import Testing
import ModelStore
import ModelFS

@Suite struct XattrTests {
    @Test func theModelTypeIsSetByXattr() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let model = try env.inode("models/X")
        for type in ["text", "image", "general", "text\n"] {
            try env.fs.setxattr(model, name: "user.modelfs.type", value: bytes(type))
            #expect(try env.xattr(model, "type") == type.trimmingCharacters(in: .newlines))
            #expect(try env.catalog.model(named: "X")?.type.rawValue == type.trimmingCharacters(in: .newlines))
        }
        try env.fs.setxattr(model, name: "user.modelfs.type", value: bytes("image"))
        for bogus in ["bogus", "", "TEXT"] {
            expectStoreError(.invalidArgument, "\(bogus)") { try env.fs.setxattr(model, name: "user.modelfs.type", value: bytes(bogus)) }
        }
        expectStoreError(.invalidArgument) { try env.fs.setxattr(model, name: "user.modelfs.type", value: [0xff]) }
        #expect(try env.xattr(model, "type") == "image")
        #expect(try env.registry.manifest(of: "X").manifest.type == .image)
        #expect(try env.content(".stats").contains("models.image: 1\n"))
    }

    @Test func notesOnModelsAndVersions() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let v1 = try env.put("models/X/v1.zip", pattern(10))
        let model = try env.inode("models/X")
        try env.fs.setxattr(model, name: "user.modelfs.note", value: bytes("中文 BERT base"))
        try env.fs.setxattr(v1, name: "user.modelfs.note", value: bytes("first cut"))
        #expect(try env.xattr(model, "note") == "中文 BERT base")
        #expect(try env.xattr(v1, "note") == "first cut")
        #expect(try env.catalog.model(named: "X")?.note == "中文 BERT base")
        #expect(try env.registry.version("X", "v1").1.note == "first cut")
    }

    @Test func computedAttributesAreReadOnlyAndUnknownOnesUnsupported() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(10)
        let v1 = try env.put("models/X/v1.zip", data)
        let model = try env.inode("models/X")
        for name in ["sha256", "status", "size", "created", "format"] {
            expectStoreError(.notPermitted, "\(name)") { try env.fs.setxattr(v1, name: "user.modelfs." + name, value: bytes("x")) }
        }
        expectStoreError(.notPermitted) { try env.fs.setxattr(model, name: "user.modelfs.created", value: bytes("x")) }
        expectStoreError(.notSupported) { try env.fs.setxattr(v1, name: "user.modelfs.bogus", value: bytes("x")) }
        expectStoreError(.notSupported) { try env.fs.setxattr(v1, name: "user.other", value: bytes("x")) }
        expectStoreError(.notSupported) { try env.fs.setxattr(v1, name: "user.modelfs.type", value: bytes("text")) }
        expectStoreError(.notSupported) { try env.fs.setxattr(rootInode, name: "user.modelfs.note", value: bytes("x")) }
        #expect(try env.xattr(v1, "sha256") == sha256Hex(data))
        #expect(try env.xattr(v1, "status") == "ready")
    }

    @Test func getAndListAttributes() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(1234)
        let v1 = try env.put("models/X/v1.zip", data)
        let names = try env.fs.listxattr(v1)
        for name in ["status", "sha256", "size", "created", "note"] {
            #expect(names.contains("user.modelfs." + name), "\(names)")
        }
        #expect(names.allSatisfy { $0.hasPrefix("user.modelfs.") })
        for name in names {
            _ = try env.fs.getxattr(v1, name: name)   // every listed attribute can be read
        }
        #expect(try env.xattr(v1, "size") == "1234")
        #expect(try env.xattr(v1, "format") == "zip")
        #expect(ISO8601DateFormatter().date(from: try env.xattr(v1, "created")) != nil)
        expectStoreError(.noAttribute) { try env.fs.getxattr(v1, name: "user.modelfs.error") }
        expectStoreError(.noAttribute) { try env.fs.getxattr(v1, name: "user.modelfs.nope") }
        expectStoreError(.notSupported) { try env.fs.getxattr(v1, name: "security.selinux") }  // ls stops asking per file
        expectStoreError(.notSupported) { try env.fs.getxattr(v1, name: "system.posix_acl_access") }
        expectStoreError(.noAttribute) { try env.fs.getxattr(rootInode, name: "user.modelfs.status") }
        #expect(try env.fs.listxattr(rootInode).isEmpty)
        let model = try env.inode("models/X")
        #expect(try env.fs.listxattr(model).contains("user.modelfs.type"))
        #expect(try env.xattr(model, "versions") == "1")
    }

    @Test func aFailedVersionSaysWhy() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let (inode, handle) = try env.create("models/X/v1.zip")
        try env.writeAll(handle, pattern(10))
        _ = try? env.fs.setattr(inode, size: 5, mode: nil)
        try? env.fs.release(handle)
        #expect(try env.fs.listxattr(inode).contains("user.modelfs.error"))
        #expect(try env.xattr(inode, "error").contains("truncate"))
        #expect(try env.fs.getattr(inode).permissions == 0, "a failed file shows no permission bits")
        #expect(try env.xattr(inode, "status") == "failed")
    }
}

@Suite struct GeneratedFileTests {
    @Test func nextSuggestsTheNextVersionName() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        #expect(try env.content("models/X/.next") == "v1\n")
        try env.put("models/X/v1.zip", pattern(1))
        #expect(try env.content("models/X/.next") == "v2\n")
        try env.put("models/X/v2.zip", pattern(1))
        try env.put("models/X/v2.1.tar.gz", pattern(1))
        #expect(try env.content("models/X/.next") == "v3\n")
        let next = try env.inode("models/X/.next")
        #expect(try env.fs.getattr(next).size == Int64("v3\n".utf8.count))
        #expect(!(try env.fs.getattr(next).isDirectory))
        let opened = try env.fs.open(next, flags: OpenFlags(O_RDONLY))
        #expect(opened.directIO)
        try env.fs.release(opened.handle)
        expectStoreError(.notPermitted) { try env.fs.open(next, flags: OpenFlags(O_WRONLY)) }
        #expect(!(try env.names(try env.inode("models/X")).contains(".next")), "generated, not listed")
    }

    @Test func statsCountsModelsVersionsAndFetchedBytes() throws {
        let env = try FSEnv()
        try env.mkdir("A")
        try env.mkdir("B")
        try env.fs.setxattr(try env.inode("models/B"), name: "user.modelfs.type", value: bytes("text"))
        let data = pattern(700_000)
        let v1 = try env.put("models/A/v1.zip", data)
        try env.put("models/A/v2.zip", pattern(5))
        try env.put("models/B/v1.zip", pattern(6))

        func value(_ stats: String, _ key: String) -> Int64? {
            stats.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.flatMap { Int64($0.dropFirst(key.count + 2)) }
        }
        let before = try env.content(".stats")
        #expect(value(before, "models") == 2)
        #expect(value(before, "models.text") == 1)
        #expect(value(before, "models.general") == 1)
        #expect(value(before, "versions") == 3)
        #expect(value(before, "bytes") == 700_011)
        let fetchedBefore = try #require(value(before, "s3.bytes_fetched"))

        expectSame(try env.readAll(v1), data)
        let after = try env.content(".stats")
        let fetchedAfter = try #require(value(after, "s3.bytes_fetched"))
        #expect(fetchedAfter >= fetchedBefore + 700_000, "\(fetchedBefore) → \(fetchedAfter)")

        // The size stat reports is the size read gives.
        let stats = try env.inode(".stats")
        let size = try env.fs.getattr(stats).size
        let read = try env.readAll(stats, chunk: 1 << 20)
        #expect(Int64(read.count) == size)
        #expect(try env.fs.open(stats, flags: OpenFlags(O_RDONLY)).directIO)
        expectStoreError(.notPermitted) { try env.fs.open(stats, flags: OpenFlags(O_WRONLY)) }
    }
}

@Suite struct DatasetTests {
    @Test func aLineDatasetCountsItsRecords() throws {
        let env = try FSEnv()
        let data = bytes("{\"q\":1}\n{\"q\":2}\n{\"q\":3}")
        let inode = try env.put("datasets/qa.jsonl", data, chunk: 5)
        #expect(try env.xattr(inode, "status") == "ready")
        #expect(try env.xattr(inode, "records") == "3")
        #expect(try env.xattr(inode, "size") == "\(data.count)")
        #expect(try env.xattr(inode, "sha256") == sha256Hex(data))
        expectSame(try env.readAll(inode), data)
        #expect(env.store.keys.contains(".datasets/qa.jsonl"))
        let listing = try env.fs.readdir(try env.inode("datasets"))
        #expect(listing.map(\.name) == [".", "..", "qa.jsonl"])
        #expect(listing[2].attributes.size == Int64(data.count))
        #expect(try env.content(".stats").contains("datasets: 1\n"))
    }

    @Test func aParquetDatasetHasNoRecordCount() throws {
        let env = try FSEnv()
        let inode = try env.put("datasets/table.parquet", pattern(5000))
        #expect(try env.xattr(inode, "status") == "ready")
        expectStoreError(.noAttribute) { try env.fs.getxattr(inode, name: "user.modelfs.records") }
        #expect(!(try env.fs.listxattr(inode).contains("user.modelfs.records")))
        #expect(try env.names(try env.inode("datasets")) == [".", "..", "table.parquet"])
    }

    @Test func datasetNamesAndExtensionsAreChecked() throws {
        let env = try FSEnv()
        for name in ["data.exe", "data.pth", "data", ".data.csv"] {
            expectStoreError(.invalidArgument, "\(name)") { try env.create("datasets/" + name) }
        }
        try env.put("datasets/qa.csv", bytes("a,b\n"))
        expectStoreError(.alreadyExists) { try env.create("datasets/qa.jsonl") }
        #expect(try env.names(try env.inode("datasets")) == [".", "..", "qa.csv"])
        #expect(try env.catalog.datasets().count == 1)
    }
}

/// `access(2)` as the mount answers it (mounts without `--allow-other`; the kernel answers the others
/// from the same modes): no write where nothing is written, whoever asks, and Unix rules elsewhere.
@Suite struct AccessTests {
    let root = RequestContext(uid: 0, gid: 0, pid: getpid())
    let alice = RequestContext(uid: 5001, gid: 5001, pid: 1)
    let bob = RequestContext(uid: 5002, gid: 5002, pid: 1)

    func allowed(_ env: FSEnv, _ path: String, _ mask: Int32, _ ctx: RequestContext) throws -> Bool {
        do { try env.fs.access(try env.inode(path), mask: mask, ctx); return true } catch let e as StoreError {
            #expect(e.code == .accessDenied, "\(path): \(e)")
            return false
        }
    }

    @Test func writesAreRefusedWhereNothingIsWrittenEvenForRoot() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        let readOnly = ["models/X/v1.zip", "models/X/v1", "models/X/v1/config.json", "models/X/v1/nested", "models/X/.next", ".stats", "",
                        "jobs"]
        for path in readOnly {
            #expect(try !allowed(env, path, W_OK, root), "\(path)")
            #expect(try !allowed(env, path, R_OK | W_OK, root), "\(path)")
            #expect(try allowed(env, path, R_OK, root), "\(path)")
            #expect(try allowed(env, path, F_OK, root), "\(path)")
        }
        for path in ["models", "models/X", "datasets", "jobs/submit", "jobs/evaluate"] {
            #expect(try allowed(env, path, W_OK, root), "\(path)")
        }
        #expect(try allowed(env, "models/X/v1", X_OK, root) && !allowed(env, "models/X/v1.zip", X_OK, root), "root executes only what has an x bit")
        // Being written, a version takes its writer's writes; ready, none.
        let (inode, handle) = try env.create("models/X/v2.pt")
        #expect(throws: Never.self) { try env.fs.access(inode, mask: W_OK, root) }
        try env.fs.flush(handle, pid: FSEnv.writerPid)
        try env.fs.release(handle)
        #expect(try !allowed(env, "models/X/v2.pt", W_OK, root))
    }

    @Test func elsewhereTheAnswerIsUnixForTheAskingUser() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        _ = try env.fs.setattr(try env.inode("models/X"), size: nil, mode: 0o750, uid: 5001, gid: 5001)
        _ = try env.fs.setattr(try env.inode("models/X/v1.zip"), size: nil, mode: 0o440, uid: 5001, gid: 5001)
        #expect(try allowed(env, "models/X", R_OK | W_OK | X_OK, alice))
        #expect(try !allowed(env, "models/X", W_OK, bob) && !allowed(env, "models/X", R_OK, bob) && !allowed(env, "models/X", X_OK, bob))
        #expect(try allowed(env, "models/X/v1.zip", R_OK, alice) && !allowed(env, "models/X/v1.zip", R_OK, bob))
        #expect(try !allowed(env, "models/X/v1.zip", W_OK, alice), "the owner may not write a ready version either")
        #expect(try allowed(env, "models/X/v1/config.json", R_OK, alice) && !allowed(env, "models/X/v1/config.json", W_OK, alice))
        #expect(try allowed(env, "models", W_OK | X_OK, bob), "models/ is like /tmp")
    }
}
