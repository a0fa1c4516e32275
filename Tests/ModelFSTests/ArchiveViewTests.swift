import Foundation
import Glibc
import Testing
import Archive
import Catalog
import ModelStore
import ReadPath
import TestSupport
@testable import ModelFS

func archiveFixture(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../ArchiveTests/Fixtures/" + name).standardized
    return Array(try Data(contentsOf: url))
}

/// `models/X/v1/` beside `v1.zip` and `v1.tar`: the members of the same model directory, packed
/// both ways (Tests/ArchiveTests/Fixtures/make.py), read through the view without a mount.
@Suite struct ArchiveViewTests {
    let members = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "nested", "tokenizer.json"]

    func modelEnv() throws -> FSEnv {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("model.zip"))
        _ = try env.put("models/X/v2.tar", try archiveFixture("model.tar"))
        _ = try env.put("models/X/v3.tar.gz", try archiveFixture("model.tar.gz"))
        return env
    }

    @Test func theViewListsTheArchiveBesideTheVersionFile() throws {
        let env = try modelEnv()
        #expect(try env.names(env.inode("models/X")).sorted() == [".", "..", "v1", "v1.zip", "v2", "v2.tar", "v3", "v3.tar.gz"])
        for view in ["models/X/v1", "models/X/v2", "models/X/v3"] {
            #expect(try env.names(env.inode(view)).sorted() == [".", ".."] + members, "\(view)")
            #expect(try env.names(env.inode(view + "/nested/deeper")).sorted() == [".", "..", "notes.txt"])
            let a = try env.fs.getattr(try env.inode(view))
            #expect(a.isDirectory && a.permissions == 0o555)
            let file = try env.fs.getattr(try env.inode(view + "/config.json"))
            #expect(!file.isDirectory && file.size == 41 && file.permissions == 0o444)
        }
    }

    @Test func everyMemberReadsTheSameFromTheZipAsFromTheTar() throws {
        let env = try modelEnv()
        for path in ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "nested/deeper/notes.txt"] {
            let zipped = try env.readAll(try env.inode("models/X/v1/" + path), chunk: 4096)
            let tarred = try env.readAll(try env.inode("models/X/v2/" + path), chunk: 4096)
            let gzipped = try env.readAll(try env.inode("models/X/v3/" + path), chunk: 4096)
            #expect(!zipped.isEmpty && zipped == tarred && gzipped == tarred, "\(path)")
            #expect(Int64(zipped.count) == (try env.fs.getattr(try env.inode("models/X/v1/" + path))).size)
        }
        #expect(String(decoding: try env.readAll(try env.inode("models/X/v1/config.json")), as: UTF8.self)
                == #"{"model_type": "bert", "hidden_size": 8}"# + "\n")
    }

    @Test func randomReadsOfADeflatedMemberMatchItsBytes() throws {
        let env = try modelEnv()
        let deflated = "models/X/v1/tokenizer.json"
        #expect(try env.xattr(try env.inode(deflated), "compression") == "deflated")
        let whole = try env.readAll(try env.inode("models/X/v2/tokenizer.json"))
        let handle = try env.fs.open(try env.inode(deflated), flags: OpenFlags(O_RDONLY)).handle
        defer { try? env.fs.release(handle) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let offset = Int.random(in: 0..<whole.count, using: &rng), size = Int.random(in: 1...300, using: &rng)
            let got = try env.fs.read(handle, offset: Int64(offset), size: size)
            #expect(got == Array(whole[offset..<min(whole.count, offset + size)]), "at \(offset)+\(size)")
        }
    }

    @Test func aLargeTarGzMemberIsReadAtRandomFromItsAccessPoints() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.tar.gz", try archiveFixture("big.tar.gz"))
        let block = Array((0..<1000).map { String(format: "line %04d of the big member\n", $0) }.joined().utf8)
        let member = try env.inode("models/X/v1/big/text.txt")
        let size = Int(try env.fs.getattr(member).size)
        #expect(size == block.count * (24 * 1024 * 1024 / block.count))
        let handle = try env.fs.open(member, flags: OpenFlags(O_RDONLY)).handle
        defer { try? env.fs.release(handle) }
        for offset in [size - 5000, 17 << 20, 3, 9 << 20, size - 1, 20 << 20, 0] {
            let got = try env.fs.read(handle, offset: Int64(offset), size: 4096)
            let want = (offset..<min(size, offset + 4096)).map { block[$0 % block.count] }
            #expect(got == want, "at \(offset)")
        }
        #expect(try env.xattr(try env.inode("models/X/v1/big/text.txt"), "compression") == "gzip")
    }

    @Test func theViewIsItsVersionsOwnersAndOnlyForThoseWhoMayReadIt() throws {
        let env = try modelEnv()
        let view = try env.inode("models/X/v1")
        #expect(try env.fs.getattr(view).permissions == 0o555, "r-x where the file is r--")
        _ = try env.fs.setattr(try env.inode("models/X/v1.zip"), size: nil, mode: 0o440)
        #expect(try env.fs.getattr(view).permissions == 0o550, "the group may look in, others not")
        let listed = try env.fs.readdir(try env.inode("models/X")).first { $0.name == "v1" }
        #expect(listed?.attributes.permissions == 0o550, "the listing says the same")
        _ = try env.fs.setattr(try env.inode("models/X/v1.zip"), size: nil, mode: nil, uid: 4242)
        #expect(try env.fs.getattr(view).uid == 4242)
    }

    @Test func theInsideIsReadOnly() throws {
        let env = try modelEnv()
        let view = try env.inode("models/X/v1")
        expectStoreError(.readOnly) { try env.fs.create(parent: view, name: Array("new.txt".utf8), flags: OpenFlags(O_WRONLY | O_CREAT), pid: 1) }
        expectStoreError(.readOnly) { try env.fs.mkdir(parent: view, name: Array("d".utf8)) }
        expectStoreError(.readOnly) { try env.fs.unlink(parent: view, name: Array("config.json".utf8)) }
        expectStoreError(.readOnly) { try env.fs.rmdir(parent: try env.inode("models/X"), name: Array("v1".utf8)) }
        expectStoreError(.readOnly) {
            try env.fs.rename(parent: view, name: Array("config.json".utf8), newParent: view, newName: Array("c.json".utf8))
        }
        expectStoreError(.readOnly) { try env.fs.open(try env.inode("models/X/v1/config.json"), flags: OpenFlags(O_WRONLY)) }
        #expect(try env.names(view).count == members.count + 2, "nothing changed")
    }

    @Test func theViewFollowsItsVersionsRenameAndDelete() throws {
        let env = try modelEnv()
        let before = try env.inode("models/X/v1/config.json")
        let model = try env.inode("models/X")
        try env.fs.rename(parent: model, name: Array("v1.zip".utf8), newParent: model, newName: Array("v9.zip".utf8))
        #expect(try env.names(model).sorted() == [".", "..", "v2", "v2.tar", "v3", "v3.tar.gz", "v9", "v9.zip"])
        #expect(try env.inode("models/X/v9/config.json") == before, "the same member, the same inode")
        try env.fs.unlink(parent: model, name: Array("v9.zip".utf8))
        expectStoreError(.notFound) { try env.inode("models/X/v9") }
        expectStoreError(.notFound) { try env.fs.getattr(before) }
    }

    @Test func theIndexIsBuiltWhileTheBytesStreamIn() throws {
        let env = try modelEnv()
        let gets = env.store.calls(.get)
        for name in ["v1", "v2", "v3"] {
            let (_, v) = try env.registry.version("X", name)
            let stored = try #require(try env.catalog.archiveIndex(objectKey: v.objectKey, sha256: v.sha256!, size: v.size), "\(name)")
            #expect(stored.body != nil && stored.error == nil)
            #expect(try env.names(env.inode("models/X/\(name)")).sorted() == [".", ".."] + members)
        }
        #expect(env.store.calls(.get) == gets, "listing read nothing back from the store")
        // A zip member's data offset comes from its local header, read at first open.
        #expect(try env.readAll(try env.inode("models/X/v1/config.json")).count == 41)
    }

    @Test func listingAModelNeedsNoObjectStorageAndBadBytesGetTheirVerdictOnTheWay() throws {
        let env = try modelEnv()
        _ = try env.put("models/X/v4.zip", [UInt8](repeating: 7, count: 5000))
        let (_, v4) = try env.registry.version("X", "v4")
        #expect(try env.catalog.archiveIndex(objectKey: v4.objectKey, sha256: v4.sha256!, size: v4.size)?.error?.contains("end of central directory") == true,
                "not a zip: said so at ingest, no read needed later")
        env.store.injectFaults { _, _, _ in .unreachable("injected") }
        defer { env.store.injectFaults(nil) }
        #expect(try env.names(env.inode("models/X")).sorted() == [".", "..", "v1", "v1.zip", "v2", "v2.tar", "v3", "v3.tar.gz", "v4", "v4.zip"])
        #expect(try env.fs.getattr(try env.inode("models/X/v1")).isDirectory)
        #expect(try env.xattr(try env.inode("models/X/v4.zip"), "archive_error").contains("end of central directory"))
        #expect(try env.names(env.inode("models/X/v2")).count == members.count + 2, "the index is the catalog's")
    }

    @Test func aSafetensorsHeaderIsKeptAtIngestSoItsXattrsNeedNoObjectStorage() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        let json = #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[16,24]}}"#
        var n = UInt64(json.utf8.count)
        _ = try env.put("models/X/v1.safetensors", withUnsafeBytes(of: &n) { Array($0) } + Array(json.utf8) + [UInt8](repeating: 1, count: 24))
        _ = try env.put("models/X/v2.safetensors", [UInt8](repeating: 0xff, count: 64))
        env.store.injectFaults { _, _, _ in .unreachable("injected") }
        defer { env.store.injectFaults(nil) }
        let v1 = try env.inode("models/X/v1.safetensors")
        #expect(try env.xattr(v1, "tensors") == "2" && env.xattr(v1, "parameters") == "8" && env.xattr(v1, "dtypes") == "F16,F32")
        #expect(try env.xattr(try env.inode("models/X/v2.safetensors"), "safetensors_error").contains("not a safetensors file"))
    }

    @Test func theIndexIsBuiltOnceAndKeptInTheCatalog() throws {
        let env = try modelEnv()
        _ = try env.names(env.inode("models/X/v1"))
        let (_, v) = try env.registry.version("X", "v1")
        #expect(try env.catalog.archiveIndex(objectKey: v.objectKey, sha256: v.sha256!, size: v.size)?.body != nil)
        // A second mount of the catalog lists the view without reading the archive.
        let other = FileSystem(registry: env.registry, cache: BlockCache())
        let gets = env.store.calls(.get)
        var inode: UInt64 = 1
        for name in ["models", "X", "v1"] { inode = try other.lookup(parent: inode, name: Array(name.utf8)).inode }
        #expect(try other.readdir(inode).count == members.count + 2)
        #expect(env.store.calls(.get) == gets, "the stored index is used")
    }

    @Test func aDamagedArchiveIsAFileWithAnEmptyViewThatSaysWhy() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        let bytes = try archiveFixture("truncated.zip")
        _ = try env.put("models/X/v1.zip", bytes)
        let view = try env.inode("models/X/v1")
        #expect(try env.names(view) == [".", ".."])
        #expect(try env.xattr(view, "archive_error").contains("end of central directory"))
        #expect(try env.readAll(try env.inode("models/X/v1.zip")) == bytes, "the version stays a readable file")
    }

    @Test func hostileMembersAreLeftOutAndABombIsRefused() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("traversal.zip"))
        _ = try env.put("models/X/v2.zip", try archiveFixture("bomb.zip"))
        #expect(try env.names(env.inode("models/X/v1")).sorted() == [".", "..", "dup.txt", "ok.txt"])
        #expect(try env.xattr(try env.inode("models/X/v1"), "archive_error").contains("../evil.txt: leaves the archive"))
        // Its local header says 1 MiB where the central directory says 100 bytes: damage, not a shorter file.
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/v2/bomb.bin")) }
        #expect(try env.xattr(try env.inode("models/X/v2"), "archive_error").contains("bomb.bin: its local header's sizes"))
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/v2/short.bin")) }
    }

    @Test func aMemberWhoseCRCIsWrongIsEIOWhenAReadReachesItsEnd() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("bad-crc.zip"))
        // Stored a.txt (a bit flipped) and deflated b.txt (its CRC changed): whole reads fail.
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/v1/a.txt")) }
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/v1/b.txt")) }
        #expect(try env.readAll(try env.inode("models/X/v1/c.txt")) == Array("c".utf8))
        // Read backwards, in pieces: the read that reaches the end still gets the verdict, and the
        // member stays damaged for later readers.
        _ = try env.put("models/X/v2.zip", try archiveFixture("bad-crc.zip"))
        let a = try env.inode("models/X/v2/a.txt")
        let handle = try env.fs.open(a, flags: OpenFlags(O_RDONLY)).handle
        expectStoreError(.io) { try env.fs.read(handle, offset: 600, size: 400) }
        expectStoreError(.io) { try env.fs.read(handle, offset: 0, size: 100) }
        try env.fs.release(handle)
        let error = try env.xattr(try env.inode("models/X/v2"), "archive_error")
        #expect(error.contains("a.txt: Bad CRC-32"), "\(error)")
        #expect(try env.xattr(a, "archive_error").contains("Bad CRC-32"))
    }

    @Test func anIndexStoredByAnEarlierFormatIsBuiltAgain() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("dup-last.zip"))
        _ = try env.names(env.inode("models/X/v1"))
        let (_, v) = try env.registry.version("X", "v1")
        let stored = try #require(try env.catalog.archiveIndex(objectKey: v.objectKey, sha256: v.sha256!, size: v.size))
        // What an earlier modelfs stored, by earlier rules: format 1, another member list.
        let current = "\"formatVersion\":\(ArchiveIndex.currentFormat)"
        let body = try #require(stored.body).replacingOccurrences(of: current, with: "\"formatVersion\":1")
            .replacingOccurrences(of: "\"path\":\"dup.txt\"", with: "\"path\":\"stale.txt\"")
        try env.catalog.storeArchiveIndex(objectKey: v.objectKey, StoredArchiveIndex(sha256: v.sha256!, size: v.size, body: body, error: nil))
        let other = FileSystem(registry: env.registry, cache: BlockCache())
        var inode: UInt64 = 1
        for name in ["models", "X", "v1"] { inode = try other.lookup(parent: inode, name: Array(name.utf8)).inode }
        #expect(try other.readdir(inode).map(\.name).sorted() == [".", "..", "dup.txt", "inside.txt"])
        let rebuilt = try env.catalog.archiveIndex(objectKey: v.objectKey, sha256: v.sha256!, size: v.size)?.body
        #expect(rebuilt?.contains(current) == true, "the stored index is replaced")
    }

    @Test func aZipWrittenToAPipeIsReadWhole() throws {
        // Its local headers leave the CRC-32 and sizes to data descriptors: that is no disagreement.
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture("streamed.zip"))
        for (name, byte, count) in [("a.txt", UInt8(ascii: "a"), 1000), ("b.txt", UInt8(ascii: "b"), 5000), ("c.txt", UInt8(ascii: "c"), 1)] {
            #expect(try env.readAll(try env.inode("models/X/v1/" + name)) == [UInt8](repeating: byte, count: count))
        }
        #expect((try? env.xattr(try env.inode("models/X/v1"), "archive_error")) == nil)
    }

    @Test func aGoodMemberReadOutOfOrderIsServedAndVerified() throws {
        let env = try modelEnv()
        let name = "models/X/v1/model-00001-of-00002.safetensors"
        let handle = try env.fs.open(try env.inode(name), flags: OpenFlags(O_RDONLY)).handle
        var got = [UInt8](repeating: 0, count: 16384)
        for offset in [12288, 4096, 0, 8192] {
            let piece = try env.fs.read(handle, offset: Int64(offset), size: 4096)
            got.replaceSubrange(offset..<(offset + 4096), with: piece)
        }
        try env.fs.release(handle)
        #expect(got == Array((0..<64).map { _ in (0...255).map { UInt8($0) } }.joined()))
        #expect((try? env.xattr(try env.inode("models/X/v1"), "archive_error")) == nil)
    }

    @Test(arguments: [("understated.zip", "its local header's sizes"), ("overlap.zip", "runs into the next member's header"),
                      ("local-name.zip", "its local header names x.txt")])
    func sizesAndNamesThatDisagreeAreEIONotAShorterFile(_ fixture: String, _ reason: String) throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.zip", try archiveFixture(fixture))
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/v1/a.txt")) }
        #expect(try env.readAll(try env.inode("models/X/v1/b.txt")) == [UInt8](repeating: UInt8(ascii: "b"), count: 5000))
        #expect(try env.xattr(try env.inode("models/X/v1"), "archive_error").contains(reason))
    }

    @Test func selfExtractingZipsDuplicatesAndGzipMembersAreReadAsToolsDo() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/sfx.zip", try archiveFixture("sfx.zip"))
        _ = try env.put("models/X/dup.zip", try archiveFixture("dup-last.zip"))
        _ = try env.put("models/X/dupt.tar", try archiveFixture("dup-last.tar"))
        _ = try env.put("models/X/multi.tar.gz", try archiveFixture("multi.tar.gz"))
        _ = try env.put("models/X/trailer.tar.gz", try archiveFixture("bad-trailer.tar.gz"))
        #expect(try env.readAll(try env.inode("models/X/sfx/b.txt")) == [UInt8](repeating: UInt8(ascii: "b"), count: 5000))
        #expect(try env.readAll(try env.inode("models/X/dup/dup.txt")) == Array("second".utf8))
        #expect(try env.readAll(try env.inode("models/X/dup/inside.txt")) == Array("in".utf8))
        #expect(try env.readAll(try env.inode("models/X/dupt/w.txt")) == Array("fresh".utf8))
        #expect(try env.readAll(try env.inode("models/X/multi/two.txt")) == [UInt8](repeating: UInt8(ascii: "2"), count: 3000))
        expectStoreError(.io) { try env.readAll(try env.inode("models/X/trailer/one.txt")) }
        let error = try env.xattr(try env.inode("models/X/trailer"), "archive_error")
        #expect(error.contains("incorrect data check") && !error.contains("left out"), "\(error)")
    }

    @Test func membersAreTheirVersionsOwnersWithItsReadBits() throws {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.tar", try archiveFixture("dup-last.tar"))
        let member = try env.inode("models/X/v1/w.txt")
        #expect(try env.fs.getattr(member).permissions == 0o444, "0600 in the archive, the version's 0444 here")
        _ = try env.fs.setattr(try env.inode("models/X/v1.tar"), size: nil, mode: 0o440)
        _ = try env.fs.setattr(try env.inode("models/X/v1.tar"), size: nil, mode: nil, uid: 4242)
        // As another mount sees it (this one keeps the version's row for a second).
        let other = FileSystem(registry: env.registry, cache: BlockCache())
        var inode: UInt64 = 1
        for name in ["models", "X", "v1", "w.txt"] { inode = try other.lookup(parent: inode, name: Array(name.utf8)).inode }
        let after = try other.getattr(inode)
        #expect(after.permissions == 0o440 && after.uid == 4242, "\(after)")
    }
}
