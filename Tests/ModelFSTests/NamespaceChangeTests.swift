import Foundation
import Glibc
import Testing
import ModelStore
import Registry
import ModelFS

@Suite struct UnlinkAndRmdirTests {
    @Test func theLastReadyVersionCannotBeRemoved() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(2000)
        let v1 = try env.put("models/X/v1.zip", data)
        let model = try env.inode("models/X")
        expectStoreError(.notPermitted) { try env.fs.unlink(parent: model, name: bytes("v1.zip")) }
        #expect(try env.inode("models/X/v1.zip") == v1)
        expectSame(try env.readAll(v1), data)
        #expect(env.store.keys.contains("X/v1.zip"))
    }

    @Test func anotherVersionIsRemovedWithItsBytes() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let d1 = pattern(2000, seed: 1), d2 = pattern(3000, seed: 2)
        let v1 = try env.put("models/X/v1.zip", d1)
        let v2 = try env.put("models/X/v2.zip", d2)
        expectSame(try env.readAll(v2), d2)
        let model = try env.inode("models/X")
        try env.fs.unlink(parent: model, name: bytes("v2.zip"))
        expectStoreError(.notFound) { try env.inode("models/X/v2.zip") }
        expectStoreError(.notFound) { try env.fs.getattr(v2) }
        #expect(try env.names(model) == [".", "..", "v1.zip", "v1"])
        #expect(!env.store.keys.contains("X/v2.zip"))
        expectSame(try env.readAll(v1), d1)
        // Now v1 is the last one.
        expectStoreError(.notPermitted) { try env.fs.unlink(parent: model, name: bytes("v1.zip")) }
        expectStoreError(.notFound) { try env.fs.unlink(parent: model, name: bytes("v9.zip")) }
        expectStoreError(.notPermitted) { try env.fs.unlink(parent: model, name: bytes(".next")) }
    }

    @Test func aVersionBeingWrittenCannotBeRemoved() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.put("models/X/v1.zip", pattern(10))
        let (inode, handle) = try env.create("models/X/v2.zip")
        try env.writeAll(handle, pattern(10))
        expectStoreError(.busy) { try env.fs.unlink(parent: try env.inode("models/X"), name: bytes("v2.zip")) }
        try env.fs.release(handle)
        #expect(try env.xattr(inode, "status") == "ready")
    }

    @Test func rmdirRemovesTheModelWithEverything() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.mkdir("Y")
        let keep = pattern(500, seed: 9)
        let y1 = try env.put("models/Y/v1.zip", keep)
        let v1 = try env.put("models/X/v1.zip", pattern(2000))
        try env.put("models/X/v2.pth", pattern(3000))
        let (_, failing) = try env.create("models/X/v3.zip")
        _ = try? env.write(failing, at: 5, pattern(1)[...])
        try? env.fs.release(failing)
        _ = try env.readAll(v1)
        #expect(env.store.keys.contains { $0.hasPrefix("X/") })

        try env.fs.rmdir(parent: try env.inode("models"), name: bytes("X"))
        #expect(env.store.keys.allSatisfy { !$0.hasPrefix("X/") }, "\(env.store.keys)")
        #expect(!env.store.keys.contains(".catalog/X.json"))
        #expect(env.store.pendingUploadCount == 0)
        expectStoreError(.notFound) { try env.inode("models/X") }
        #expect(try env.names(try env.inode("models")) == [".", "..", "Y"])
        #expect(try env.catalog.model(named: "X") == nil)
        expectSame(try env.readAll(y1), keep, "other models stay")
        expectStoreError(.notFound) { try env.fs.rmdir(parent: try env.inode("models"), name: bytes("X")) }
    }

    @Test func theLayoutCannotBeRemoved() throws {
        let env = try FSEnv()
        for name in ["models", "datasets", "jobs", "services", ".stats"] {
            expectStoreError(.notPermitted, "\(name)") { try env.fs.rmdir(parent: rootInode, name: bytes(name)) }
        }
        expectStoreError(.notPermitted) { try env.fs.unlink(parent: rootInode, name: bytes(".stats")) }
        #expect(try env.names(rootInode) == [".", "..", "models", "datasets", "jobs", "services", ".stats"])
    }
}

@Suite struct RenameTests {
    @Test func aVersionIsRenamedWithinItsModel() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let data = pattern(300_000, seed: 5)
        let v2 = try env.put("models/X/v2.zip", data)
        try env.put("models/X/v1.zip", pattern(10, seed: 6))
        let model = try env.inode("models/X")
        _ = try env.readAll(v2)   // cached under its inode
        try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: model, newName: bytes("v2.1.zip"))
        expectStoreError(.notFound) { try env.inode("models/X/v2.zip") }
        let renamed = try env.inode("models/X/v2.1.zip")
        #expect(renamed == v2)
        expectSame(try env.readAll(renamed), data)
        #expect(try env.xattr(renamed, "sha256") == sha256Hex(data))
        #expect(env.store.keys.contains("X/v2.zip"), "metadata only: the key stays")
        #expect(try env.names(model).sorted() == [".", "..", "v1", "v1.zip", "v2.1", "v2.1.zip"], "each zip with its view")
        #expect(try env.registry.manifest(of: "X").versions.contains { $0.version.name == "v2.1" })
    }

    @Test func aVersionRenameThatWouldReplaceOrChangeFormatIsRefused() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.mkdir("Z")
        let d1 = pattern(100, seed: 1), d2 = pattern(200, seed: 2)
        let v1 = try env.put("models/X/v1.zip", d1)
        let v2 = try env.put("models/X/v2.zip", d2)
        let model = try env.inode("models/X")
        expectStoreError(.alreadyExists) { try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: model, newName: bytes("v1.zip")) }
        expectStoreError(.invalidArgument) { try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: model, newName: bytes("v3.pth")) }
        expectStoreError(.invalidArgument) { try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: model, newName: bytes("v3.exe")) }
        expectStoreError(.invalidArgument) { try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: model, newName: bytes(".v3.zip")) }
        expectStoreError(.crossDevice) {
            try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: try env.inode("models/Z"), newName: bytes("v2.zip"))
        }
        expectStoreError(.crossDevice) {
            try env.fs.rename(parent: model, name: bytes("v2.zip"), newParent: try env.inode("datasets"), newName: bytes("v2.zip"))
        }
        expectStoreError(.notFound) { try env.fs.rename(parent: model, name: bytes("v7.zip"), newParent: model, newName: bytes("v8.zip")) }
        expectSame(try env.readAll(v1), d1)
        expectSame(try env.readAll(v2), d2)
        #expect(try env.inode("models/X/v2.zip") == v2)
        #expect(try env.names(try env.inode("models/Z")) == [".", ".."])
    }

    @Test func aModelIsRenamed() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        try env.mkdir("Taken")
        let data = pattern(1000)
        try env.put("models/X/v1.zip", data)
        let models = try env.inode("models")
        expectStoreError(.alreadyExists) { try env.fs.rename(parent: models, name: bytes("X"), newParent: models, newName: bytes("Taken")) }
        expectStoreError(.invalidArgument) { try env.fs.rename(parent: models, name: bytes("X"), newParent: models, newName: bytes(".Y")) }
        #expect(try env.inode("models/X") != 0)
        try env.fs.rename(parent: models, name: bytes("X"), newParent: models, newName: bytes("千问-7B"))
        expectStoreError(.notFound) { try env.inode("models/X") }
        expectSame(try env.readAll(try env.inode("models/千问-7B/v1.zip")), data)
        #expect(try env.names(models).sorted() == [".", "..", "Taken", "千问-7B"].sorted())
        expectStoreError(.notPermitted) { try env.fs.rename(parent: rootInode, name: bytes("models"), newParent: rootInode, newName: bytes("m")) }
    }
}
