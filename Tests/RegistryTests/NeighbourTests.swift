import Foundation
import Testing
import ModelStore
import Catalog
@testable import Registry

/// One bucket, one catalog; keys never overwrite; the sweep spares live writers; manifests in
/// order; datasets recovered.
@Suite struct NeighbourTests {
    @Test(arguments: Backend.allCases)
    func anObjectAtTheNaturalKeyIsNotOverwritten(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let theirs = randomBytes(100)
        try env.objects.put("m/v1.zip", theirs)
        try env.objects.put(".datasets/qa.jsonl", theirs)
        let v = try env.put("m", "v1.zip", randomBytes(200))
        #expect(v.objectKey != "m/v1.zip" && v.objectKey.hasPrefix("m/v1~") && v.objectKey.hasSuffix(".zip"))
        let d = try env.registry.beginDataset(fileName: "qa.jsonl")
        try env.feed(d, Array("a\n".utf8))
        let ready = try d.finish()
        #expect(ready.objectKey != ".datasets/qa.jsonl")
        #expect(same(try env.objects.get("m/v1.zip", range: nil), theirs))
        #expect(same(try env.objects.get(".datasets/qa.jsonl", range: nil), theirs))
        // A free natural key is still used as it is.
        #expect(try env.put("m", "v2.zip", [1]).objectKey == "m/v2.zip")
    }

    @Test func keysWhenObjectStorageCannotSayAreFreshVariants() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, _, _ in op == .head ? .unreachable("down") : nil }
        let heads = env.memory.calls(.head)
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        #expect(upload.item.objectKey.hasPrefix("m/v1~"))
        #expect(env.memory.calls(.head) == heads + 1, "storage that could not answer is not asked again")
    }

    @Test func aBucketBelongsToOneCatalog() throws {
        let env = try Env()
        #expect(try env.registry.claimBucket("bucket b") == .claimed)
        #expect(try env.registry.claimBucket("bucket b") == .owned)
        let owner = try #require(try env.registry.bucketOwner())
        #expect(owner.catalog == (try env.catalog.catalogID()))

        // A second catalog on the same bucket is refused, naming the owner.
        let other = try Catalog(path: env.dir + "/other.sqlite")
        let second = Registry(catalog: other, objects: env.objects)
        let refusal = #expect(throws: StoreError.self) { try second.claimBucket("bucket b") }
        #expect(refusal?.code == .notPermitted)
        #expect(refusal?.message.contains("bucket b belongs to catalog \(owner.catalog)") == true)
        #expect(try env.registry.bucketOwner() == owner, "a refused claim changes nothing")

        // Recovery into an empty catalog takes the bucket's id over; a non-empty one may not.
        #expect(try second.claimBucket("bucket b", adopt: true) == .adopted)
        #expect(try other.catalogID() == owner.catalog)
        let third = Registry(catalog: try Catalog(path: env.dir + "/third.sqlite"), objects: env.objects)
        try third.createModel("x")
        expectStoreError(.notPermitted) { try third.claimBucket("bucket b", adopt: true) }
    }

    @Test func aBucketCheckedBeforeStaysUsableWhileObjectStorageIsDown() throws {
        let env = try Env()
        try env.registry.claimBucket("bucket b")
        let fresh = Registry(catalog: try Catalog(path: env.dir + "/fresh.sqlite"), objects: env.objects)
        env.memory.injectFaults { _, _, _ in .unreachable("down") }
        #expect(try env.registry.claimBucket("bucket b") == .owned)
        expectStoreError(.io) { try fresh.claimBucket("bucket b") }
    }

    // MARK: The sweep spares live writers

    @Test func theSweepFailsOnlyUploadsWhoseWriterIsGone() throws {
        let env = try Env()
        try env.registry.createModel("m")
        let live = try env.registry.beginVersion(model: "m", fileName: "live.zip")
        try env.feed(live, randomBytes(partSize + 10))  // a multipart upload in flight
        let dead = try env.registry.beginVersion(model: "m", fileName: "dead.zip")
        try env.feed(dead, randomBytes(partSize + 10))
        let elsewhere = try env.registry.beginVersion(model: "m", fileName: "elsewhere.zip")
        let liveSet = try env.registry.beginDataset(fileName: "live.jsonl")
        let deadSet = try env.registry.beginDataset(fileName: "dead.jsonl")
        #expect(try env.catalog.writer(versionID: live.version!.id) == Writer.current)
        // A writer that stopped: pid 1's start time is not this; a writer on another host.
        let pid1Gone = "\(Writer.hostname()) 1 999999999999"
        try env.catalog.setWriter(versionID: dead.version!.id, pid1Gone)
        try env.catalog.setWriter(versionID: elsewhere.version!.id, "other-host 1 1")
        guard case .dataset(let deadRow) = deadSet.item else { Issue.record("not a dataset"); return }
        try env.catalog.setWriter(datasetID: deadRow.id, pid1Gone)

        #expect(try env.registry.failInterruptedUploads() == 2)
        let status = Dictionary(uniqueKeysWithValues: try env.registry.versions(of: "m").map { ($0.name, $0.status) })
        #expect(status == ["live": .uploading, "dead": .failed, "elsewhere": .uploading])
        #expect(try env.catalog.dataset(named: "live")?.status == .uploading)
        #expect(try env.catalog.dataset(named: "dead")?.status == .failed)
        #expect(try env.pendingUploads() == 1, "the dead writer's multipart upload is aborted, the live one's is not")

        // The live writer finishes as if nothing happened.
        #expect(try live.finishVersion().status == .ready)
        try env.feed(liveSet, Array("x\n".utf8))
        _ = try liveSet.finish()
        #expect(try env.catalog.dataset(named: "live")?.status == .ready)
    }

    /// Two nodes of one catalog; `n1`'s lease ran out while the catalog was away and its heartbeat
    /// has not renewed it yet.
    static func nodeBack(_ env: Env) throws -> (n1: Registry, n2: Registry) {
        try env.registry.createModel("m")
        let n1 = Registry(catalog: try Catalog(path: env.catalog.location), objects: env.objects, node: "n1")
        let n2 = Registry(catalog: try Catalog(path: env.catalog.location), objects: env.objects, node: "n2")
        for node in ["n1", "n2"] { try env.catalog.renewLease(node: node, host: "h", pid: 1, role: "mount", seconds: 60) }
        try env.catalog.releaseLease(node: "n1")
        return (n1, n2)
    }

    @Test func anUploadBegunJustAfterTheCatalogCameBackIsNotSweptAsADeadNodes() throws {
        let env = try Env()
        let (n1, n2) = try NeighbourTests.nodeBack(env)
        let upload = try n1.beginVersion(model: "m", fileName: "v1.zip")
        try env.feed(upload, randomBytes(partSize + 10))
        #expect(try n2.failInterruptedUploads() == 0, "the node that writes is alive")
        #expect(try upload.finishVersion().status == .ready)
        let set = try n1.beginDataset(fileName: "qa.jsonl")
        try env.catalog.releaseLease(node: "n1")
        _ = try n1.beginDataset(fileName: "qa2.jsonl")
        #expect(try n2.failInterruptedUploads() == 0)
        try env.feed(set, Array("x\n".utf8))
        _ = try set.finish()
        #expect(try env.catalog.dataset(named: "qa")?.status == .ready)
    }

    /// An upload taken from its writer (its node's lease ran out mid-write, and another node failed
    /// it) fails its close with `EIO`, whether the sweep came before the completion (the multipart
    /// upload is gone) or between the object's completion and its recording (the row is failed).
    @Test func anUploadSweptFromUnderItsWriterFailsItsCloseWithEIO() throws {
        let env = try Env()
        let (n1, n2) = try NeighbourTests.nodeBack(env)
        try env.catalog.renewLease(node: "n1", host: "h", pid: 1, role: "mount", seconds: 60)
        let swept = try n1.beginVersion(model: "m", fileName: "v1.zip")
        try env.feed(swept, randomBytes(partSize + 10))
        try env.catalog.releaseLease(node: "n1")
        #expect(try n2.failInterruptedUploads() == 1)
        expectStoreError(.io) { try swept.finishVersion() }
        #expect(swept.failure?.code == .io)

        try env.catalog.renewLease(node: "n1", host: "h", pid: 1, role: "mount", seconds: 60)
        let late = try n1.beginVersion(model: "m", fileName: "v2.zip")
        try env.feed(late, [1, 2, 3])
        env.memory.injectFaults { op, key, _ in
            // Between the ownership check and the row's completion.
            if op == .put && key == late.item.objectKey, let id = late.version?.id { try? env.catalog.markVersionFailed(id: id, error: "swept") }
            return nil
        }
        expectStoreError(.io) { try late.finishVersion() }
        env.memory.injectFaults(nil)
        #expect(try env.registry.versions(of: "m").map(\.status) == [.failed, .failed], "neither is ever ready")
    }

    @Test func writerLiveness() {
        #expect(Writer.liveness(Writer.current) == .alive)
        #expect(Writer.liveness("\(Writer.hostname()) \(getpid()) 1") == .gone, "a recycled pid is another process")
        #expect(Writer.liveness("\(Writer.hostname()) 2147483646 1") == .gone)
        #expect(Writer.liveness("other-host \(getpid()) 1") == .unknown)
        #expect(Writer.liveness("garbage") == .unknown)
    }

    // MARK: Manifests in order

    /// Two registries on one catalog file and one bucket (a mount and a CLI beside it), 16
    /// uploads of one model completing at once, manifest PUTs delayed at random so that they
    /// land out of order: the manifest left in the bucket lists all 16 ready.
    @Test func sixteenParallelCompletionsLeaveTheNewestManifest() throws {
        let env = try Env()
        try env.registry.createModel("m")
        let other = Registry(catalog: try Catalog(path: env.catalog.location), objects: env.objects, uploadConcurrency: 2)
        env.memory.injectFaults { op, key, _ in
            if op == .put && key.hasPrefix(".catalog/") { usleep(UInt32.random(in: 0...20_000)) }
            return nil
        }
        let uploads = try (0..<16).map { i in
            try (i % 2 == 0 ? env.registry : other).beginVersion(model: "m", fileName: "v\(i).zip")
        }
        for u in uploads { try env.feed(u, randomBytes(1000 + Int.random(in: 0..<1000))) }
        DispatchQueue.concurrentPerform(iterations: 16) { i in _ = try? uploads[i].finishVersion() }
        let stored = try env.storedVersions("m")
        #expect(stored.count == 16)
        #expect(stored.allSatisfy { $0.status == .ready }, "\(stored.map { "\($0.name) \($0.status)" })")
        #expect(try env.catalog.dirtyManifestModels().isEmpty)
    }

    /// Two registries on one catalog change one version's note 32 times at once, entry PUTs
    /// delayed at random so that they land out of order: the entry left in the bucket is the
    /// catalog's last note.
    @Test func racingChangesOfOneVersionLeaveItsNewestEntry() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1, 2, 3])
        let other = Registry(catalog: try Catalog(path: env.catalog.location), objects: env.objects, uploadConcurrency: 2)
        env.memory.injectFaults { op, key, _ in
            if op == .put && key.hasPrefix(Rules.versionEntryPrefix) { usleep(UInt32.random(in: 0...20_000)) }
            return nil
        }
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            try? (i % 2 == 0 ? env.registry : other).setVersionNote("m", "v1", note: "note \(i)")
        }
        let note = try env.registry.version("m", "v1").1.note
        #expect(try env.storedVersions("m").map(\.note) == [note])
    }

    /// Writing a version writes one small entry, never its model's manifest: the cost of the
    /// 40th version is that of the first.
    @Test func aNewVersionWritesOnlyItsOwnEntry() throws {
        let env = try Env()
        try env.registry.createModel("m")
        let puts = Locked<[String]>([])
        env.memory.injectFaults { op, key, _ in
            if op == .put && key.hasPrefix(Rules.manifestPrefix) { puts.withLock { $0.append(key) } }
            return nil
        }
        for i in 1...40 {
            puts.withLock { $0.removeAll() }
            let v = try env.put("m", "v\(i).zip", [UInt8(i)])
            #expect(puts.withLock { $0 } == [Rules.versionEntryKey(objectKey: v.objectKey)])
        }
        #expect(try env.storedVersions("m").count == 40)
    }

    // MARK: Datasets in the manifests, recovered, verified

    @Test func datasetsAreInTheManifestsAndRecovered() throws {
        let env = try Env()
        try env.registry.createModel("m")
        let weights = randomBytes(3000)
        let v1 = try env.put("m", "v1.zip", weights)
        let lines = Array("a\nb\nc\n".utf8)
        for name in ["qa.jsonl", "old.csv", "gone.txt"] {
            let d = try env.registry.beginDataset(fileName: name)
            try env.feed(d, lines)
            _ = try d.finish()
        }
        // Every dataset change moves the manifest's generation, whichever code made it.
        #expect(try env.catalog.datasetsManifestBehind())
        env.registry.publishDatasetsManifestIfBehind()
        #expect(try !env.catalog.datasetsManifestBehind())
        try env.registry.renameDataset("old", to: "new")
        try env.registry.deleteDataset("gone")
        let stored = try DatasetsManifest.decode(env.objects.get(Rules.datasetsManifestKey, range: nil))
        #expect(stored.datasets.map(\.name) == ["new", "qa"])
        #expect(stored.datasets.allSatisfy { $0.status == .ready && $0.records == 3 && $0.sha256 == sha256Hex(lines) })

        // A new catalog on the same bucket gets every ready version and dataset back, ready.
        let fresh = Registry(catalog: try Catalog(path: env.dir + "/recovered.sqlite"), objects: env.objects)
        #expect(try fresh.claimBucket("bucket b", adopt: true) == .claimed)
        let result = try fresh.recoverFromManifests()
        #expect(result.models == 1 && result.versions == 1 && result.datasets == 2 && result.problems.isEmpty)
        let (_, back) = try fresh.version("m", "v1")
        #expect(back.status == .ready && back.sha256 == v1.sha256 && back.objectKey == v1.objectKey)
        let datasets = try fresh.catalog.datasets()
        #expect(datasets.map(\.name) == ["new", "qa"] && datasets.allSatisfy { $0.status == .ready && $0.records == 3 })
        #expect(try fresh.verify().allSatisfy(\.ok))
    }

    /// A bucket written before version entries (format 1: the versions in the model's manifest)
    /// and after (entries): recover merges them, an entry winning over the old listing of its
    /// key; a catalog from before writes every entry on its first publish.
    @Test func recoverReadsFormatOneManifestsAndEntriesTogether() throws {
        let env = try Env()
        try env.registry.createModel("m", type: .text, note: "old")
        let v1 = try env.put("m", "v1.zip", randomBytes(100))
        let v2 = try env.put("m", "v2.zip", randomBytes(200))
        // As an old modelfs left it: one format-1 manifest listing both (v2 still uploading), no entries.
        var old = Manifest(model: try env.registry.model("m"))
        old.formatVersion = 1
        old.versions = try env.registry.manifest(of: "m").versions.map(\.version)
        old.versions![1].status = .uploading
        try env.objects.put(Rules.manifestKey(model: "m"), old.encoded())
        for v in [v1, v2] { try env.objects.delete(Rules.versionEntryKey(objectKey: v.objectKey)) }
        // v2's entry is newer than the old listing; so is v3.
        try env.registry.setVersionNote("m", "v2", note: "entry wins")
        let v3 = try env.put("m", "v3.zip", randomBytes(300))

        let fresh = Registry(catalog: try Catalog(path: env.dir + "/recovered.sqlite"), objects: env.objects)
        #expect(try fresh.claimBucket("bucket b", adopt: true) == .claimed)
        let result = try fresh.recoverFromManifests()
        #expect(result.models == 1 && result.versions == 3, "\(result)")
        #expect(result.problems.isEmpty, "\(result.problems)")
        let back = try fresh.versions(of: "m")
        #expect(back.map(\.name) == ["v1", "v2", "v3"] && back.allSatisfy { $0.status == .ready })
        #expect(back[1].note == "entry wins" && back[2].sha256 == v3.sha256)
        #expect(try fresh.model("m").type == .text)

        // The old catalog, marked dirty as migration 8 marks every model, writes all entries back.
        try env.catalog.setManifestDirty(modelID: try env.registry.model("m").id)
        for v in [v1, v2, v3] { try env.objects.delete(Rules.versionEntryKey(objectKey: v.objectKey)) }
        try env.registry.retryPending()
        #expect(try env.storedVersions("m").map(\.name) == ["v1", "v2", "v3"])
        #expect(try env.storedManifest("m").versions == nil && env.catalog.dirtyManifestModels().isEmpty)
    }

    @Test func verifyChecksDatasetsToo() throws {
        let env = try Env()
        let d = try env.registry.beginDataset(fileName: "qa.jsonl")
        try env.feed(d, Array("a\n".utf8))
        let ready = try d.finish()
        #expect(try env.registry.verify().map(\.name) == ["datasets/qa.jsonl"])
        try env.objects.put(ready.objectKey, Array("b\n".utf8))
        let results = try env.registry.verify()
        #expect(results.count == 1 && !results[0].ok && results[0].detail.contains("sha256"))
    }
}
