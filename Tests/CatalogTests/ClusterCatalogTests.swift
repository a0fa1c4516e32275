import Foundation
import Glibc
import Testing
@testable import Catalog
import ModelStore

/// Cases for what a shared catalog adds (jobs across nodes, leases) and for statements no other
/// case ran, each on every engine (``StatementCoverage`` checks that nothing is left out).
extension CatalogCases {
    func job(_ id: JobID, model: String = "m", version: String = "v1", dataset: String = "qa", status: JobStatus = .queued) -> Job {
        Job(id: id, model: model, version: version, dataset: dataset, params: ["lr": "0.1"], status: status, executor: "local",
            created: Date(timeIntervalSince1970: 1_800_000_000))
    }

    func jobsMoveOnlyFromTheStatusesGivenAndAreFoundByWhatTheyUse() throws {
        try catalog.insertJob(job("m-v1-ft-1"))
        expectStoreError(.alreadyExists) { try catalog.insertJob(job("m-v1-ft-1")) }
        #expect(try catalog.freeJobID(prefix: "m-v1-ft-") == "m-v1-ft-2")
        #expect(try catalog.transaction { tx in try tx.freeJobID(prefix: "m-v1-ft-") } == "m-v1-ft-2")
        try catalog.transaction { tx in try tx.setJobOwner(id: "m-v1-ft-1", uid: 4242, gid: 4343) }
        let j = try #require(try catalog.job(id: "m-v1-ft-1"))
        #expect(j.owner == JobOwner(uid: 4242, gid: 4343) && j.params == ["lr": "0.1"])
        #expect(try catalog.job(number: j.number)?.id == j.id)
        #expect(try catalog.transaction { tx in try tx.job(id: j.id)?.id } == j.id)
        // What a queued or running job uses, with and without a version (a NULL PostgreSQL must be told the type of).
        #expect(try catalog.activeJobs(model: "m").map(\.id) == [j.id])
        #expect(try catalog.activeJobs(model: "m", version: "v1").map(\.id) == [j.id])
        #expect(try catalog.activeJobs(model: "m", version: "v2").isEmpty)
        #expect(try catalog.transaction { tx in try tx.activeJobs(dataset: "qa").map(\.id) } == [j.id])
        #expect(try catalog.transitionJob(id: j.id, from: [.queued], to: .running, node: "n1"))
        #expect(try !catalog.transitionJob(id: j.id, from: [.queued], to: .running), "no longer queued")
        #expect(try catalog.transitionJob(id: j.id, from: [.running], to: .running, executorID: "123"))
        #expect(try catalog.jobs(status: .running).map(\.id) == [j.id])
        #expect(try catalog.transitionJob(id: j.id, from: [.running], to: .succeeded, exitCode: 0, outputs: ["v2.pt"]))
        let done = try #require(try catalog.job(id: j.id))
        #expect(done.status == .succeeded && done.outputs == ["v2.pt"] && done.executorID == "123" && done.node == "n1" && done.finished != nil)
        #expect(try catalog.jobs().map(\.id) == [j.id] && catalog.activeJobs(model: "m").isEmpty)
    }

    func aModelIsDeletedAndRenamedWithTheRulesTransactionsOnEveryEngine() throws {
        // What Registry.deleteModel and renameModel run, in their transactions.
        let (m, vs) = try model("m", versions: ["v1"])
        try catalog.markVersionReady(id: vs[0].id, size: 1, sha256: "a")
        try catalog.insertJob(job("m-v1-ft-1"))
        let busy = try catalog.transaction { tx in try tx.activeJobs(model: "m") }
        #expect(busy.map(\.id) == ["m-v1-ft-1"], "a job that uses the model keeps it")
        try catalog.transitionJob(id: "m-v1-ft-1", from: [.queued], to: .cancelled)
        try catalog.transaction { tx in
            #expect(try tx.activeJobs(model: "m").isEmpty)
            try tx.updateModel(id: m.id, name: "m2")
        }
        #expect(try catalog.model(named: "m2")?.id == m.id)
        let removal = try catalog.transaction { tx in
            #expect(try tx.activeJobs(model: "m2").isEmpty)
            let m2 = try #require(try tx.model(named: "m2"))
            return try tx.deleteModel(m2, versions: try tx.versions(modelID: m2.id))
        }
        #expect(try removal.keys == ["m/v1.zip"] && catalog.models().isEmpty)
    }

    func datasetsAreClaimedCompletedFailedRenamedAndDeleted() throws {
        let d = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        expectStoreError(.alreadyExists) { try catalog.insertDataset(name: "qa", format: "csv", objectKey: ".datasets/qa.csv") }
        #expect(try catalog.claimUpload(datasetID: d.id, token: "t1"))
        #expect(try catalog.ownsUpload(datasetID: d.id, token: "t1") && !catalog.ownsUpload(datasetID: d.id, token: "t2"))
        try catalog.setWriter(datasetID: d.id, "host 1 2 n1")
        #expect(try catalog.writer(datasetID: d.id) == "host 1 2 n1")
        _ = try catalog.recordUpload(objectKey: d.objectKey, uploadID: "u1", partSize: 8, versionID: nil, datasetID: d.id,
                                     sourcePath: nil, sourceSize: nil)
        #expect(try catalog.upload(datasetID: d.id)?.uploadID == "u1")
        try catalog.markDatasetFailed(id: d.id, error: "x", token: "t2")
        #expect(try catalog.dataset(id: d.id)?.status == .uploading, "another upload's token changes nothing")
        try catalog.markDatasetFailed(id: d.id, error: "x", token: "t1")
        #expect(try catalog.dataset(named: "qa")?.status == .failed && catalog.upload(datasetID: d.id) == nil)
        #expect(try catalog.restartFailedUpload(datasetID: d.id) && !catalog.restartFailedUpload(datasetID: d.id))
        #expect(try catalog.claimUpload(datasetID: d.id, token: "t3"))
        try catalog.markDatasetReady(id: d.id, size: 10, sha256: "s", records: 2, token: "t3")
        #expect(try catalog.dataset(id: d.id)?.records == 2)
        try catalog.renameDataset(id: d.id, to: "qa2")
        let other = try catalog.insertDataset(name: "other", format: "csv", objectKey: ".datasets/other.csv")
        expectStoreError(.alreadyExists) { try catalog.renameDataset(id: other.id, to: "qa2") }
        #expect(try catalog.datasets().map(\.name) == ["other", "qa2"])
        let removal = try catalog.transaction { tx in try tx.deleteDataset(try #require(try tx.dataset(named: "qa2"))) }
        #expect(removal.keys == [".datasets/qa.jsonl"])
        try catalog.deleteDataset(id: other.id)
        #expect(try catalog.datasets().isEmpty)
        try catalog.restoreDataset(name: "back", format: "csv", objectKey: ".datasets/back.csv", size: 3, records: 1, sha256: "b",
                                   status: .ready, error: nil, note: "", created: Date(), modified: Date())
        #expect(try catalog.dataset(named: "back")?.status == .ready)
    }

    func leasesRunOutByTheDatabasesClock() throws {
        try catalog.renewLease(node: "alive", host: "h1", pid: 1, role: "mount", seconds: 60)
        try catalog.renewLease(node: "gone", host: "h2", pid: 2, role: "mount", seconds: 60)
        try catalog.releaseLease(node: "gone")
        let nodes = try catalog.nodes()
        #expect(nodes.map(\.id) == ["alive", "gone"] && nodes.map(\.expired) == [false, true])
        // A node that records itself as an upload's writer is alive: the same transaction renews its lease.
        try catalog.renewLease(node: "back", host: "h3", pid: 3, role: "mount", seconds: 60)
        try catalog.releaseLease(node: "back")
        let (_, written) = try model("w", versions: ["v1"])
        let set = try catalog.insertDataset(name: "w", format: "csv", objectKey: ".datasets/w.csv")
        try catalog.setWriter(versionID: written[0].id, "h3 3 3 back", node: "back")
        #expect(try catalog.nodes().first { $0.id == "back" }?.expired == false)
        try catalog.releaseLease(node: "back")
        try catalog.setWriter(datasetID: set.id, "h3 3 3 back", node: "back")
        #expect(try catalog.nodes().first { $0.id == "back" }?.expired == false)
        try catalog.releaseLease(node: "back")
        // Running jobs of each node (and of one without any lease row).
        for (id, node) in [("a", "alive"), ("g", "gone"), ("x", "never")] as [(JobID, String)] {
            try catalog.insertJob(job(id))
            try catalog.transitionJob(id: id, from: [.queued], to: .running, executorID: "1", node: node)
        }
        #expect(try Set(catalog.failJobsOfExpiredNodes(except: "alive")) == ["g", "x"])
        #expect(try catalog.job(id: "a")?.status == .running)
        let g = try #require(try catalog.job(id: "g"))
        #expect(g.status == .failed && g.error?.contains("lease ran out") == true)
        // The node comes back: its job is its own again; the import is claimed once.
        #expect(try catalog.jobsFailedForLease(node: "gone").map(\.id) == ["g"])
        #expect(try catalog.reclaimJob(id: "g", node: "gone") && !catalog.reclaimJob(id: "g", node: "gone"))
        #expect(try !catalog.reclaimJob(id: "x", node: "gone"), "another node's job")
        #expect(try catalog.job(id: "g")?.status == .running && catalog.job(id: "g")?.error == nil)
        #expect(try catalog.claimJobImport(id: "g") && !catalog.claimJobImport(id: "g"))
        #expect(try catalog.job(id: "g")?.exitCode == 0)
        let (m, vs) = try model("m", versions: ["v2", "v3"])
        try catalog.restoreVersion(modelID: m.id, name: "v4", format: "pt", objectKey: "m/v4.pt", size: 1, sha256: "s", status: .ready,
                                   error: nil, note: "", lineage: Lineage(parentVersion: "v1", dataset: "qa", job: "g"),
                                   created: Date(), modified: Date())
        _ = vs
        #expect(try catalog.versionsMade(byJob: "g").map(\.fileName) == ["v4.pt"])
    }

    func archiveIndexesAndTensorHeadersAreKeptPerObject() throws {
        let unowned = StoredArchiveIndex(sha256: "s", size: 10, body: "{}", error: nil)
        try catalog.storeArchiveIndex(objectKey: "m/v1.zip", unowned)
        #expect(try catalog.archiveIndex(objectKey: "m/v1.zip", sha256: "s", size: 10) == nil, "no row owns the key")
        try model("m", versions: ["v1"])
        let index = StoredArchiveIndex(sha256: "s", size: 10, body: "{}", error: nil)
        try catalog.storeArchiveIndex(objectKey: "m/v1.zip", index)
        try catalog.storeArchiveIndex(objectKey: "m/v1.zip", index)
        #expect(try catalog.archiveIndex(objectKey: "m/v1.zip", sha256: "s", size: 10) == index)
        #expect(try catalog.archiveIndex(objectKey: "m/v1.zip", sha256: "other", size: 10) == nil)
        let header = StoredArchiveIndex(sha256: "s", size: 10, body: nil, error: "not safetensors")
        try catalog.storeTensorHeader(objectKey: "m/v1.zip", member: "a.safetensors", header)
        #expect(try catalog.tensorHeader(objectKey: "m/v1.zip", member: "a.safetensors", sha256: "s", size: 10) == header)
    }

    func aScratchFileIsAdoptedOnlyUnderAFreeName() throws {
        let (m, _) = try model("m", versions: ["v1"])
        let scratch = try catalog.insertVersion(modelID: m.id, name: ".tmp1", format: "", objectKey: "m/.tmp1")
        expectStoreError(.alreadyExists) { try catalog.adoptScratch(id: scratch.id, name: "v1", format: "pt") }
        try catalog.adoptScratch(id: scratch.id, name: "v2", format: "pt")
        #expect(try catalog.version(id: scratch.id)?.fileName == "v2.pt")
        expectStoreError(.notFound) { try catalog.adoptScratch(id: scratch.id, name: "v3", format: "pt") }
        #expect(try catalog.versions(status: .uploading).count == 2)
        try catalog.markVersionUploading(id: scratch.id)
        #expect(try catalog.abandonedUploads().isEmpty && catalog.uploads().isEmpty)
        #expect(try !catalog.isEmpty())
        let (alias, removed) = try catalog.transaction { tx in
            let a = try tx.setAlias(modelID: m.id, name: "@prod", versionID: scratch.id)
            #expect(try tx.aliases(modelID: m.id).map(\.name) == ["@prod"] && tx.version(id: a.versionID)?.name == "v2")
            #expect(try tx.model(id: m.id)?.name == "m" && tx.dataset(id: DatasetID(12345)) == nil)
            try tx.deleteAlias(id: a.id)
            return (a, try tx.alias(modelID: m.id, name: "@prod"))
        }
        #expect(try removed == nil && catalog.alias(modelID: m.id, name: alias.name) == nil)
        try catalog.setMeta("k", "v")
        #expect(try catalog.meta("k") == "v")
    }
}

@Suite struct ClusterCatalogConformance {
    @Test(arguments: Backend.all) func jobsMoveOnlyFromTheStatusesGivenAndAreFoundByWhatTheyUse(_ backend: Backend) throws {
        try CatalogCases(backend).jobsMoveOnlyFromTheStatusesGivenAndAreFoundByWhatTheyUse()
    }
    @Test(arguments: Backend.all) func aModelIsDeletedAndRenamedWithTheRulesTransactionsOnEveryEngine(_ backend: Backend) throws {
        try CatalogCases(backend).aModelIsDeletedAndRenamedWithTheRulesTransactionsOnEveryEngine()
    }
    @Test(arguments: Backend.all) func datasetsAreClaimedCompletedFailedRenamedAndDeleted(_ backend: Backend) throws {
        try CatalogCases(backend).datasetsAreClaimedCompletedFailedRenamedAndDeleted()
    }
    @Test(arguments: Backend.all) func leasesRunOutByTheDatabasesClock(_ backend: Backend) throws {
        try CatalogCases(backend).leasesRunOutByTheDatabasesClock()
    }
    @Test(arguments: Backend.all) func archiveIndexesAndTensorHeadersAreKeptPerObject(_ backend: Backend) throws {
        try CatalogCases(backend).archiveIndexesAndTensorHeadersAreKeptPerObject()
    }
    @Test(arguments: Backend.all) func aScratchFileIsAdoptedOnlyUnderAFreeName(_ backend: Backend) throws {
        try CatalogCases(backend).aScratchFileIsAdoptedOnlyUnderAFreeName()
    }
}

/// PostgreSQL's waits have deadlines: for a connection from the pool, for a server that accepts
/// and never answers (a stalled host or a black-holed port).
@Suite struct PostgresDeadlines {
    @Test(.enabled(if: Backend.serverURL != nil)) func aCallerWaitsForAPooledConnectionAtMostTheTimeout() throws {
        let server = try #require(Backend.serverURL)
        let engine = try PostgresEngine(url: try #require(PostgresURL(server)), timeout: 1, poolSize: 1)
        defer { engine.close() }
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            _ = try? engine.read { _ in holding.signal(); _ = release.wait(timeout: .now() + 5) }
        }
        holder.start()
        holding.wait()
        // The only connection is held (as by a statement stuck on a stalled server): refused, not queued for ever.
        let error = #expect(throws: StoreError.self) { try engine.read { try $0.first("SELECT 1") { $0.int(0) } } }
        #expect(error?.code == .io)
        release.signal()
        var answer: Int64?
        for _ in 0..<100 where answer == nil {
            answer = try? engine.read { try $0.first("SELECT 1") { $0.int(0) } }
            if answer == nil { usleep(50_000) }
        }
        #expect(answer == 1, "the connection serves again once it is free")
    }

    @Test func aServerThatAcceptsButNeverAnswersFailsTheConnect() throws {
        // A listening socket nobody answers on: the kernel completes the handshake, nothing follows.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        #expect(bound && listen(fd, 16) == 0)
        let port = UInt16(bigEndian: address.sin_port)
        let url = try #require(PostgresURL("postgresql://modelfs@127.0.0.1:\(port)/stalled"))
        let error = #expect(throws: StoreError.self) { _ = try PostgresEngine(url: url, timeout: 1) }
        #expect(error?.code == .io && error?.message.contains("no answer") == true, "\(error?.message ?? "")")
    }
}
