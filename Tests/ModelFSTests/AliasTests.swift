import Foundation
import Glibc
import Testing
import Catalog
import ModelStore
import Registry
import TestSupport
@testable import ModelFS

/// `models/X/@production`: a symbolic link naming a version, made with `ln -s`, moved with
/// `ln -sfn` (a link under a temporary name renamed onto it), removed with `rm`.
@Suite struct AliasTests {
    func env() throws -> FSEnv {
        let env = try FSEnv()
        _ = try env.mkdir("X")
        _ = try env.put("models/X/v1.pt", [1, 1, 1])
        _ = try env.put("models/X/v2.pt", [2, 2])
        return env
    }

    func link(_ env: FSEnv, _ name: String, _ target: String) throws -> Attributes {
        try env.fs.symlink(parent: try env.inode("models/X"), name: Array(name.utf8), target: Array(target.utf8))
    }

    @Test func lnMakesAnAliasThatReadsAsALinkToItsVersion() throws {
        let env = try env()
        let a = try link(env, "@production", "v1.pt")
        #expect(a.isSymlink && a.size == 5)
        #expect(try env.fs.readlink(a.inode) == "v1.pt")
        #expect(try env.names(env.inode("models/X")).sorted() == [".", "..", "@production", "v1.pt", "v2.pt"])
        #expect(try env.fs.readdir(env.inode("models/X")).first { $0.name == "@production" }?.attributes.isSymlink == true)
        #expect(try env.registry.aliases(of: "X").map { "\($0.alias.name) \($0.version.name)" } == ["@production v1"])
        #expect(try env.registry.version("X", "@production").1.name == "v1", "a version named by its alias")
        #expect(try env.storedManifest("X").aliases == ["@production": "X/v1.pt"], "in the manifest, for recover")
    }

    @Test func aLinkMustNameAVersionOfItsModel() throws {
        let env = try env()
        expectStoreError(.invalidArgument) { try link(env, "@p", "v9.pt") }
        expectStoreError(.invalidArgument) { try link(env, "@p", "../Y/v1.pt") }
        _ = try link(env, "@p", "./v2.pt")
        expectStoreError(.alreadyExists) { try link(env, "@p", "v1.pt") }
        expectStoreError(.notPermitted, "named like a version's file") { try link(env, "v1.pt", "v2.pt") }
        expectStoreError(.notPermitted) { try link(env, "v7.zip", "v2.pt") }
        expectStoreError(.notPermitted) { try env.fs.symlink(parent: try env.inode("models"), name: Array("@p".utf8), target: Array("X".utf8)) }
    }

    @Test func lnSfnMovesTheAliasInOneRename() throws {
        let env = try env()
        let model = try env.inode("models/X")
        let first = try link(env, "@production", "v1.pt")
        // What `ln -sfn v2.pt @production` does: a link under a temporary name, renamed onto the alias.
        _ = try link(env, "CuA1b2C3", "v2.pt")
        try env.fs.rename(parent: model, name: Array("CuA1b2C3".utf8), newParent: model, newName: Array("@production".utf8))
        let moved = try env.fs.lookup(parent: model, name: Array("@production".utf8))
        #expect(try env.fs.readlink(moved.inode) == "v2.pt" && moved.inode != first.inode)
        #expect(try env.names(model).sorted() == [".", "..", "@production", "v1.pt", "v2.pt"], "the temporary name is gone")
        #expect(try env.storedManifest("X").aliases == ["@production": "X/v2.pt"])
        // A rename onto a name that is not an alias's is refused.
        expectStoreError(.invalidArgument) {
            try env.fs.rename(parent: model, name: Array("@production".utf8), newParent: model, newName: Array("v3.pt".utf8))
        }
    }

    @Test func anAliasedVersionIsNotDeletedAndTheAliasFollowsItsRenames() throws {
        let env = try env()
        let model = try env.inode("models/X")
        let a = try link(env, "@production", "v1.pt")
        expectStoreError(.busy, "rm of the version an alias points at") { try env.fs.unlink(parent: model, name: Array("v1.pt".utf8)) }
        do {
            try env.registry.deleteVersion("X", "v1")
        } catch {
            #expect(error.message.contains("@production"), "the refusal names the alias: \(error.message)")
        }
        try env.fs.rename(parent: model, name: Array("v1.pt".utf8), newParent: model, newName: Array("v5.pt".utf8))
        #expect(try env.fs.readlink(a.inode) == "v5.pt")
        try env.fs.unlink(parent: model, name: Array("@production".utf8))
        #expect(try env.registry.aliases(of: "X").isEmpty)
        try env.fs.unlink(parent: model, name: Array("v5.pt".utf8))
        #expect(try env.names(model).sorted() == [".", "..", "v2.pt"])
    }

    @Test func aliasesAreRecoveredFromTheBucket() throws {
        let env = try env()
        _ = try link(env, "@production", "v2.pt")
        try env.registry.setAlias("X", "staging", to: "v1")
        let fresh = Registry(catalog: try Catalog(path: env.dir + "/recovered.sqlite"), objects: env.store)
        #expect(try fresh.claimBucket("bucket b", adopt: true) == .claimed)
        let result = try fresh.recoverFromManifests()
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(try fresh.aliases(of: "X").map { "\($0.alias.name) \($0.version.name)" } == ["@production v2", "@staging v1"])
    }
}
