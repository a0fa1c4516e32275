import Foundation
import Testing
import Catalog
import ModelStore
import Registry

/// The port's conformance suite: each ``StorePort`` method's rule and the error it answers (the
/// errno of ``StoreError/Code``, mapped in FUSEAdapter/Errno.swift), and the races the port exists
/// to close, on every catalog engine (SQLite; PostgreSQL with `MODELFS_TEST_PG_URL`, required with
/// `MODELFS_REQUIRE_PG=1`). Everything goes through `any StorePort`, as the mount and the CLI do.
/// The races run `raceRounds()` rounds: `MODELFS_RACE_ROUNDS=50` for the soak.
@Suite("StorePort conformance", .serialized)
struct StorePortConformanceTests {
    /// Two nodes on one catalog and one bucket. Node one's next write transaction can be held at
    /// its door (``GatedEngine``), so a race's interleaving is forced, not hoped for.
    final class Nodes: @unchecked Sendable {
        let place: SharedCatalog
        let gated: GatedEngine
        let objects = MemoryObjectStore()
        let oneRegistry: Registry
        let twoRegistry: Registry
        var one: any StorePort { oneRegistry }
        var two: any StorePort { twoRegistry }
        let me = Actor(uid: 1000, gid: 1000, pid: 4242)

        init(_ engine: Engine) throws {
            place = try SharedCatalog(engine)
            gated = GatedEngine(try place.openEngine())
            oneRegistry = Registry(catalog: try Catalog(engine: gated), objects: objects, uploadConcurrency: 2)
            twoRegistry = Registry(catalog: try place.open(), objects: objects, uploadConcurrency: 2)
        }

        @discardableResult
        func model(_ name: String) throws -> Model {
            try two.createModel(named: name, type: .general, note: "", owner: Ownership(uid: 1000, gid: 1000, mode: 0o755), by: me)
        }

        /// A ready version written through node two.
        @discardableResult
        func put(_ model: String, _ fileName: String, _ data: [UInt8]) throws -> Version {
            let upload = try twoRegistry.beginVersion(model: model, fileName: fileName)
            try data.withUnsafeBytes { try upload.write($0) }
            return try upload.finishVersion()
        }

        @discardableResult
        func dataset(_ fileName: String, _ data: [UInt8]) throws -> Dataset {
            let upload = try twoRegistry.beginDataset(fileName: fileName)
            try data.withUnsafeBytes { try upload.write($0) }
            _ = try upload.finish()
            return try #require(try two.dataset(named: String(fileName.prefix { $0 != "." })))
        }

        func bytes(_ v: Version) throws -> [UInt8] { try objects.get(v.objectKey, range: nil) }
    }

    // MARK: Each method's rule

    @Test(arguments: Engine.all)
    func models(_ engine: Engine) throws {
        let n = try Nodes(engine)
        let m = try n.model("m")
        expectStoreError(.invalidArgument, "bad name: EINVAL") { try n.model("a/b") }
        expectStoreError(.alreadyExists, "name taken: EEXIST") { try n.model("m") }
        #expect(try n.one.setModel(m.id, type: .text, note: "n", by: n.me).type == .text)
        #expect(try n.two.model(m.id)?.note == "n", "the row each node reads")

        try n.model("taken")
        expectStoreError(.invalidArgument) { try n.one.renameModel(m.id, to: "..", by: n.me) }
        expectStoreError(.alreadyExists) { try n.one.renameModel(m.id, to: "taken", by: n.me) }
        let same = try n.one.renameModel(m.id, to: "m", by: n.me)
        #expect(try same == n.two.model(m.id), "the same name: no change")
        let renamed = try n.one.renameModel(m.id, to: "m2", by: n.me)
        #expect(renamed.id == m.id && renamed.name == "m2")
        #expect(try n.two.model(named: "m2")?.id == m.id)

        let v1 = try n.put("m2", "v1.pt", pattern(100, seed: 1))
        let upload = try n.twoRegistry.beginVersion(model: "m2", fileName: "v2.pt")
        expectStoreError(.busy, "a version still uploading: EBUSY") { try n.one.deleteModel(m.id, by: n.me) }
        upload.abort(reason: "the test stops it")
        let deleted = try n.one.deleteModel(m.id, by: n.me)
        #expect(deleted.row.id == m.id)
        #expect(deleted.purge.versions.contains(v1.id) && deleted.purge.objects.contains(v1.objectIdentity))
        #expect(try n.two.model(m.id) == nil)
        #expect(try n.two.version(v1.id) == nil)
        expectStoreError(.notFound, "gone: ENOENT") { try n.one.setModel(m.id, type: nil, note: "x", by: n.me) }
        expectStoreError(.notFound) { try n.one.renameModel(m.id, to: "m3", by: n.me) }
        expectStoreError(.notFound) { try n.one.deleteModel(m.id, by: n.me) }
    }

    @Test(arguments: Engine.all)
    func versions(_ engine: Engine) throws {
        let n = try Nodes(engine)
        let m = try n.model("m")
        let v1 = try n.put("m", "v1.pt", pattern(100, seed: 1))
        let v2 = try n.put("m", "v2.zip", pattern(200, seed: 2))
        expectStoreError(.invalidArgument) { try n.one.renameVersion(v1.id, to: "a/b", by: n.me) }
        expectStoreError(.alreadyExists, "a version of that name in any format: EEXIST") { try n.one.renameVersion(v1.id, to: "v2", by: n.me) }
        let renamed = try n.one.renameVersion(v1.id, to: "v3", by: n.me)
        #expect(renamed.id == v1.id && renamed.fileName == "v3.pt", "keeps its format")
        #expect(try n.two.version(in: m.id, named: "v3")?.id == v1.id)
        #expect(try n.two.version(in: m.id, named: "v1") == nil)
        #expect(try n.one.setVersionNote(v1.id, note: "good", by: n.me).note == "good")
        expectStoreError(.invalidArgument, "not a temporary file") { try n.one.adoptScratch(v1.id, as: "v9", format: "pt", by: n.me) }

        let alias = try n.one.linkAlias(in: m.id, named: "@prod", to: v2.id, view: false, by: n.me)
        expectStoreError(.busy, "an alias names it: EBUSY") { try n.one.deleteVersion(v2.id, by: n.me) }
        _ = try n.one.removeAlias(alias.id, by: n.me)
        let deleted = try n.one.deleteVersion(v2.id, by: n.me)
        #expect(deleted.row.id == v2.id && deleted.purge == Purge(objects: [v2.objectIdentity], versions: [v2.id]))
        expectStoreError(.notPermitted, "the model's last ready version: EPERM") { try n.one.deleteVersion(v1.id, by: n.me) }
        let upload = try n.twoRegistry.beginVersion(model: "m", fileName: "v4.pt")
        let uploading = try #require(try n.two.version(in: m.id, named: "v4"))
        expectStoreError(.busy, "still uploading: EBUSY") { try n.one.deleteVersion(uploading.id, by: n.me) }
        upload.abort(reason: "the test stops it")
        for gone in [v2.id] {
            expectStoreError(.notFound) { try n.one.renameVersion(gone, to: "v5", by: n.me) }
            expectStoreError(.notFound) { try n.one.setVersionNote(gone, note: "", by: n.me) }
            expectStoreError(.notFound) { try n.one.deleteVersion(gone, by: n.me) }
        }
    }

    @Test(arguments: Engine.all)
    func aliases(_ engine: Engine) throws {
        let n = try Nodes(engine)
        let m = try n.model("m"), other = try n.model("other")
        let v1 = try n.put("m", "v1.pt", pattern(100, seed: 1))
        let v2 = try n.put("m", "v2.pt", pattern(100, seed: 2))
        let elsewhere = try n.put("other", "v1.pt", pattern(100, seed: 3))
        expectStoreError(.invalidArgument, "not @something") { try n.one.linkAlias(in: m.id, named: "prod", to: v1.id, view: false, by: n.me) }
        expectStoreError(.invalidArgument, "another model's version") { try n.one.linkAlias(in: m.id, named: "@p", to: elsewhere.id, view: false, by: n.me) }
        expectStoreError(.invalidArgument, "no archive, no view") { try n.one.linkAlias(in: m.id, named: "@p", to: v1.id, view: true, by: n.me) }
        let prod = try n.one.linkAlias(in: m.id, named: "@prod", to: v1.id, view: false, by: n.me)
        expectStoreError(.alreadyExists) { try n.one.linkAlias(in: m.id, named: "@prod", to: v2.id, view: false, by: n.me) }
        let next = try n.one.linkAlias(in: m.id, named: "@next", to: v2.id, view: false, by: n.me)
        expectStoreError(.invalidArgument) { try n.one.renameAlias(next.id, to: "prod", by: n.me) }
        let moved = try n.one.renameAlias(next.id, to: "@prod", by: n.me)
        #expect(moved.id == next.id, "replaces the alias of that name (ln -sfn)")
        #expect(try n.two.aliases(of: m.id).map(\.name) == ["@prod"])
        #expect(try n.two.alias(in: m.id, named: "@prod")?.versionID == v2.id)
        expectStoreError(.notFound, "the replaced alias is gone") { try n.one.removeAlias(prod.id, by: n.me) }
        #expect(try n.one.removeAlias(next.id, by: n.me).id == next.id)
        expectStoreError(.notFound) { try n.one.renameAlias(next.id, to: "@x", by: n.me) }

        let set = try n.one.setAlias(in: m.id, named: "@live", to: v1.id, view: false, by: n.me)
        let moved2 = try n.one.setAlias(in: m.id, named: "@live", to: v2.id, view: false, by: n.me)
        #expect(moved2.id == set.id, "set moves the alias it made")
        #expect(try n.two.alias(set.id)?.versionID == v2.id)
        expectStoreError(.invalidArgument) { try n.one.setAlias(in: m.id, named: "@live", to: elsewhere.id, view: false, by: n.me) }
        expectStoreError(.invalidArgument) { try n.one.setAlias(in: m.id, named: "a/b", to: v1.id, view: false, by: n.me) }
        _ = try n.one.deleteModel(other.id, by: n.me)
        expectStoreError(.notFound, "the model is gone") { try n.one.setAlias(in: other.id, named: "@x", to: elsewhere.id, view: false, by: n.me) }
    }

    @Test(arguments: Engine.all)
    func datasetsAndOwners(_ engine: Engine) throws {
        let n = try Nodes(engine)
        let d = try n.dataset("qa.jsonl", Array("{}\n".utf8))
        try n.dataset("taken.jsonl", Array("[]\n".utf8))  // other bytes: deleting qa forgets its own
        expectStoreError(.invalidArgument) { try n.one.renameDataset(d.id, to: "a/b", by: n.me) }
        expectStoreError(.alreadyExists) { try n.one.renameDataset(d.id, to: "taken", by: n.me) }
        #expect(try n.one.renameDataset(d.id, to: "qa2", by: n.me).fileName == "qa2.jsonl")

        let m = try n.model("m")
        let stranger = Actor(uid: 2000, gid: 2000, pid: 4243)
        let owner = Ownership(uid: 1000, gid: 1000, mode: 0o755)
        expectStoreError(.notPermitted, "only its owner or root: EPERM") {
            try n.one.changeOwnership(.model(m.id), mode: 0o700, uid: nil, gid: nil, defaultOwner: owner, by: stranger)
        }
        #expect(try n.one.changeOwnership(.model(m.id), mode: 0o700, uid: nil, gid: nil, defaultOwner: owner, by: n.me).mode == 0o700)

        let deleted = try n.one.deleteDataset(d.id, by: n.me)
        #expect(deleted.purge.datasets == [d.id] && deleted.purge.objects.count == 1)
        expectStoreError(.notFound) { try n.one.renameDataset(d.id, to: "qa3", by: n.me) }
        expectStoreError(.notFound) { try n.one.deleteDataset(d.id, by: n.me) }
        expectStoreError(.notFound) {
            try n.one.changeOwnership(.dataset(d.id), mode: 0o400, uid: nil, gid: nil, defaultOwner: owner, by: n.me)
        }
    }

    /// The purge a delete answers is the one its transaction recorded for every other process and
    /// node: one mechanism, whoever deleted.
    @Test(arguments: Engine.all)
    func aDeletesPurgeReachesTheOtherNodes(_ engine: Engine) throws {
        let n = try Nodes(engine)
        try n.model("m")
        try n.put("m", "keep.pt", pattern(10, seed: 1))
        let v1 = try n.put("m", "v1.pt", pattern(100, seed: 2))
        let start = try n.twoRegistry.lastCachePurge()
        let deleted = try n.one.deleteVersion(v1.id, by: n.me)
        let (through, recorded) = try n.twoRegistry.cachePurges(after: start)
        #expect(recorded == deleted.purge && through > start)
        #expect(recorded.objects == [v1.objectIdentity], "by content: the identity the mounts' caches use")
    }

    // MARK: Races

    /// `rm v1` looked up v1 (row A); meanwhile node two renamed it to `v1-old` and wrote a new
    /// `v1` (row B). The delete through A's id deletes A, never B.
    @Test(arguments: Engine.all)
    func deleteThroughAnOldIDAgainstRenameAndCreate(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let name = "m\(round)"
            let m = try n.model(name)
            try n.put(name, "keep.pt", pattern(10, seed: 7))
            let a = try n.put(name, "v1.pt", pattern(5_000, seed: UInt64(round)))
            let new = pattern(7_000, seed: UInt64(round) + 1000)
            let one = n.one, me = n.me
            let r = try n.gated.race({ try one.deleteVersion(a.id, by: me) }) {
                _ = try n.two.renameVersion(a.id, to: "v1-old", by: n.me)
                try n.put(name, "v1.pt", new)
            }
            let deleted = try r.get()
            #expect(deleted.row.id == a.id && deleted.row.name == "v1-old" && deleted.purge.versions == [a.id], "round \(round)")
            let b = try #require(try n.two.version(in: m.id, named: "v1"), "round \(round): the new v1 is there")
            #expect(b.id != a.id, "round \(round)")
            #expect(sha256Hex(try n.bytes(b)) == sha256Hex(new), "round \(round): the new bytes")
            #expect(try n.two.version(in: m.id, named: "v1-old") == nil, "round \(round)")
        }
    }

    /// A rename through v1's id (row A) races node two renaming A away and creating a new v1 (row
    /// B) under the old name. The rename moves A; B keeps its name and bytes.
    @Test(arguments: Engine.all)
    func renameThroughAnOldIDAgainstCreateOfTheOldName(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let name = "m\(round)"
            let m = try n.model(name)
            let a = try n.put(name, "v1.pt", pattern(5_000, seed: UInt64(round)))
            let new = pattern(6_000, seed: UInt64(round) + 1000)
            let one = n.one, me = n.me
            let r = try n.gated.race({ try one.renameVersion(a.id, to: "v2", by: me) }) {
                _ = try n.two.renameVersion(a.id, to: "v1-old", by: n.me)
                try n.put(name, "v1.pt", new)
            }
            let renamed = try r.get()
            #expect(renamed.id == a.id && renamed.name == "v2", "round \(round)")
            let b = try #require(try n.two.version(in: m.id, named: "v1"), "round \(round): the new v1 keeps its name")
            #expect(b.id != a.id, "round \(round)")
            #expect(sha256Hex(try n.bytes(b)) == sha256Hex(new), "round \(round): the new bytes")
            #expect(try n.two.versions(of: m.id).map(\.name).sorted() == ["v1", "v2"], "round \(round)")
        }
    }

    /// Node one renames `m` to `a`; meanwhile node two renamed `m` to `b` and made a new `m`. Node
    /// one's rename moves the model it looked up (now `b`): the new `m` keeps its name.
    @Test(arguments: Engine.all)
    func twoNodesRenamingOneModel(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let (name, a, b) = ("m\(round)", "a\(round)", "b\(round)")
            let m = try n.model(name)
            try n.put(name, "v1.pt", pattern(1_000, seed: UInt64(round)))
            let one = n.one, me = n.me
            let r = try n.gated.race({ try one.renameModel(m.id, to: a, by: me) }) {
                _ = try n.two.renameModel(m.id, to: b, by: n.me)
                try n.model(name)
            }
            #expect(try r.get().id == m.id, "round \(round)")
            let names = try n.two.models().map(\.name)
            #expect(names.contains(a) && !names.contains(b), "round \(round): \(names)")
            let fresh = try #require(try n.two.model(named: name), "round \(round): the new \(name) keeps its name")
            #expect(fresh.id != m.id, "round \(round)")
            #expect(try n.two.versions(of: fresh.id).isEmpty, "round \(round)")
            #expect(try n.two.versions(of: m.id).map(\.name) == ["v1"], "round \(round): the first model keeps its version")
        }
    }

    /// A service's start and a delete of its version race across nodes: whichever commits first
    /// wins, and the other is refused with the rule's errno — a version is never deleted under a
    /// service, nor a service started on a version deleted meanwhile.
    @Test(arguments: Engine.all)
    func aServiceAndADeleteOfItsVersionRacing(_ engine: Engine) throws {
        let n = try Nodes(engine)
        let owner = JobOwner(uid: 1000, gid: 1000), asker = Ownership.Requester(uid: 1000, groups: [1000])
        for round in 0..<raceRounds() {
            let name = "m\(round)"
            try n.model(name)
            try n.put(name, "keep.pt", pattern(10, seed: 7))
            let a = try n.put(name, "v1.pt", pattern(1_000, seed: UInt64(round)))
            // Node one's delete is held; node two's service starts on v1 and commits first.
            let one = n.oneRegistry, two = n.twoRegistry, me = n.me
            let deleting = try n.gated.race({ try one.deleteVersion(a.id, by: me) }) {
                _ = try two.startService(Registry.ServiceStart(model: name, version: "v1", name: ServiceID("s\(round)")),
                                         executor: "local", owner: owner, requester: asker)
            }
            #expect(throws: StoreError.self, "round \(round)") { _ = try deleting.get() }
            if case .failure(let e) = deleting { #expect(e.code == .busy && e.message.contains("served by service s\(round)")) }
            // Node one's start is held; node two stops that service and deletes v1 first.
            let starting = try n.gated.race({
                try one.startService(Registry.ServiceStart(model: name, version: "v1", name: ServiceID("t\(round)")),
                                     executor: "local", owner: owner, requester: asker)
            }) {
                try two.stopService(ServiceID("s\(round)"), requester: asker)
                _ = try two.deleteVersion(a.id, by: me)
            }
            #expect(throws: StoreError.self, "round \(round)") { _ = try starting.get() }
            if case .failure(let e) = starting { #expect(e.code == .notFound) }
            #expect(try two.service(named: ServiceID("t\(round)")) == nil, "round \(round): nothing recorded")
            // Only the owner or root stops a service, on every engine.
            let stranger = Ownership.Requester(uid: 2000, groups: [2000])
            _ = try two.startService(Registry.ServiceStart(model: name, version: "keep"), executor: "local", owner: owner, requester: asker)
            let s = try #require(try two.services().last)
            #expect(throws: StoreError.self) { try one.stopService(s.id, requester: stranger) }
            #expect(try one.stopService(s.id, requester: Ownership.Requester(uid: 0, groups: [0])).status == .stopped)
        }
    }
}
