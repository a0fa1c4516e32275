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
        expectStoreError(.invalidArgument, "named like a version's file") { try link(env, "v1.pt", "v2.pt") }
        expectStoreError(.invalidArgument) { try link(env, "v7.zip", "v2.pt") }
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

    /// Issue 20: `ln -s v1.pt prod` made an alias `alias list` did not show, and one named `v8`
    /// hid the view `v8/` of a later `v8.zip` and was listed twice. Links are @names only (and
    /// `ln -sfn`'s temporary `CuXXXXXX`, renamed onto an @name at once).
    @Test func linksNotNamedLikeAnAliasAreRefused() throws {
        let env = try env()
        for name in ["prod", "v8", "production.link", "Cu12345", "CuA1b2C3d", "Cu-1b2C3"] {
            expectStoreError(.invalidArgument, "\(name)") { try link(env, name, "v1.pt") }
        }
        expectStoreError(.invalidArgument, "an alias's name after @") { try link(env, "@.x", "v1.pt") }
        #expect(try env.catalog.aliases(modelID: env.catalog.model(named: "X")!.id).isEmpty)
        _ = try link(env, "CuA1b2C3", "v1.pt")  // ln -sfn's temporary name
        let model = try env.inode("models/X")
        try env.fs.rename(parent: model, name: Array("CuA1b2C3".utf8), newParent: model, newName: Array("@p".utf8))
        #expect(try env.registry.aliases(of: "X").map(\.alias.name) == ["@p"])
    }

    @Test func aLinkFromBeforeAtNamesNeverHidesAVersionsView() throws {
        let env = try env()
        let m = try env.catalog.model(named: "X")!
        // What an older modelfs let `ln -s v1.pt v8` make.
        let v1 = try env.registry.version("X", "v1").1.id
        _ = try env.catalog.transaction { tx in try tx.setAlias(modelID: m.id, name: "v8", versionID: v1) }
        _ = try env.put("models/X/v8.zip", try archiveFixture("model.zip"))
        let model = try env.inode("models/X")
        #expect(try env.names(model).filter { $0 == "v8" }.count == 1, "listed once")
        let v8 = try env.fs.lookup(parent: model, name: Array("v8".utf8))
        #expect(v8.isDirectory && !v8.isSymlink, "the archive's view, not the old link")
        #expect(try env.fs.readdir(model).first { $0.name == "v8" }?.attributes.isDirectory == true)
    }

    /// Issue 20: `from_pretrained("models/X/@production")` for a zip version: `ln -s v1 @production`
    /// names the view (a directory), `ln -s v1.zip @production` still the file.
    @Test func anAliasNamesAnArchiveVersionsView() throws {
        let env = try env()
        _ = try env.put("models/X/v3.zip", try archiveFixture("model.zip"))
        let model = try env.inode("models/X")
        let view = try link(env, "@production", "v3")
        #expect(view.isSymlink)
        #expect(try env.fs.readlink(view.inode) == "v3", "the kernel follows it to the directory v3/")
        #expect(try env.fs.readlink(try link(env, "@file", "v3.zip").inode) == "v3.zip")
        #expect(try env.fs.readlink(try link(env, "@slash", "./v3/").inode) == "v3")
        #expect(try env.fs.readlink(try link(env, "@copy", "@production").inode) == "v3",
                "an alias of an alias takes what it names")
        expectStoreError(.invalidArgument, "a .pt version has no view") { try link(env, "@p", "v1") }
        expectStoreError(.invalidArgument) { try link(env, "@p", "v9") }
        #expect(try env.registry.resolveVersion("X", "@production").name == "v3", "jobs and the CLI take it as v3")
        #expect(try env.storedManifest("X").aliasViews?.sorted() == ["@copy", "@production", "@slash"])
        // The CLI: v3/ for the view; another alias's target is copied, view and all.
        _ = try env.registry.setAlias("X", "staging", to: "v3/")
        _ = try env.registry.setAlias("X", "next", to: "@staging")
        #expect(throws: StoreError.self) { try env.registry.setAlias("X", "bad", to: "v1/") }
        #expect(try env.registry.aliases(of: "X").filter(\.alias.view).map(\.alias.name)
                == ["@copy", "@next", "@production", "@slash", "@staging"])
        // A move keeps what it names; recover too.
        try env.fs.rename(parent: model, name: Array("v3.zip".utf8), newParent: model, newName: Array("v4.zip".utf8))
        #expect(try env.fs.readlink(view.inode) == "v4")
        let fresh = Registry(catalog: try Catalog(path: env.dir + "/recovered.sqlite"), objects: env.store)
        #expect(try fresh.claimBucket("bucket b", adopt: true) == .claimed)
        #expect(try fresh.recoverFromManifests().problems.isEmpty)
        let recovered = try fresh.aliases(of: "X").map { a, v in a.name + " " + v.linkTarget(view: a.view) }
        #expect(recovered == ["@copy v4", "@file v4.zip", "@next v4", "@production v4", "@slash v4", "@staging v4"])
    }

    /// An alias of an alias is resolved once, when it is made (docs/SEMANTICS.md): it names a
    /// version, and does not follow the other alias's later moves.
    @Test func anAliasOfAnAliasIsResolvedWhenMade() throws {
        let env = try env()
        let production = try link(env, "@production", "v1.pt")
        let copy = try link(env, "@previous", "@production")
        _ = try env.registry.setAlias("X", "production", to: "v2")
        #expect(try env.fs.readlink(production.inode) == "v2.pt")
        #expect(try env.fs.readlink(copy.inode) == "v1.pt")
    }
}
