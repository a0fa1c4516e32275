import Foundation
import Testing
@testable import Catalog
import ModelStore

func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

/// The catalog's cases, each run on every engine by ``CatalogConformance`` with a catalog of
/// its own (a new SQLite file, or a new PostgreSQL database).
final class CatalogCases: @unchecked Sendable {
    let place: CatalogPlace
    let catalog: Catalog
    /// The SQLite file (SQLite-only cases).
    var path: String { place.location }

    init(_ backend: Backend) throws {
        place = try CatalogPlace(backend)
        catalog = try place.open()
    }

    /// A model with one version per name, in `status`.
    @discardableResult
    func model(_ name: String, type: ModelType = .general, versions: [String] = []) throws -> (Model, [Version]) {
        let m = try catalog.createModel(name: name, type: type)
        let vs = try versions.map { try catalog.insertVersion(modelID: m.id, name: $0, format: "zip", objectKey: "\(name)/\($0).zip") }
        return (m, vs)
    }

    // MARK: Schema

    func migrationsSetUserVersionAndReopeningIsANoOp() throws {
        #expect(try catalog.schemaVersion == Migrations.all.count)
        #expect(Migrations.all.count >= 1)
        try model("kept", versions: ["v1"])

        let again = try place.open()
        #expect(try again.schemaVersion == Migrations.all.count)
        #expect(try again.models().map(\.name) == ["kept"])
        let third = try place.open()
        #expect(try third.versions(modelID: try #require(try third.model(named: "kept")).id).map(\.name) == ["v1"])
        #expect(try third.integrityCheck() == "ok")
    }

    func refusesACatalogFromANewerModelfs() throws {
        let engine = catalog.database
        try engine.write { try engine.setSchemaVersion($0, Migrations.all.count + 1) }
        expectStoreError(.io) { try place.open() }
    }

    func usesWALAndForeignKeys() throws {
        #expect(try catalog.database.read { try $0.first("PRAGMA journal_mode") { $0.text(0) } } == "wal")
        #expect(try catalog.database.read { try $0.first("PRAGMA foreign_keys") { $0.int(0) } } == 1)
    }

    func integrityCheckIsOK() throws {
        try model("m", versions: ["v1", "v2"])
        #expect(try catalog.integrityCheck() == "ok")
    }

    // MARK: Models

    func createModelAndDuplicate() throws {
        let m = try catalog.createModel(name: "BERT-Base-Chinese", type: .text, note: "seed")
        #expect(m.name == "BERT-Base-Chinese" && m.type == .text && m.note == "seed")
        let stored = try #require(try catalog.model(named: "BERT-Base-Chinese"))
        #expect(stored.id == m.id && stored.name == m.name && stored.type == m.type && stored.note == m.note)
        #expect(try catalog.model(id: m.id)?.name == "BERT-Base-Chinese")
        expectStoreError(.alreadyExists) { try catalog.createModel(name: "BERT-Base-Chinese") }
        expectStoreError(.alreadyExists) { try catalog.createModel(name: "BERT-Base-Chinese", type: .image) }
        #expect(try catalog.models().count == 1)
        // Names are compared exactly: another case is another model.
        _ = try catalog.createModel(name: "bert-base-chinese")
        #expect(try catalog.models().count == 2)
    }

    /// What an insert returns is what a later read gives, dates included: callers compare and
    /// cache these values (FUSE attributes, manifests).
    func insertedRowsEqualTheirStoredRows() throws {
        // Twenty of each, so that a date that loses precision on the way through SQLite cannot
        // pass by luck.
        var mismatches: [String] = []
        for i in 0..<20 {
            let m = try catalog.createModel(name: "m\(i)", type: .image, note: "n")
            let v = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m\(i)/v1.zip")
            let u = try catalog.recordUpload(objectKey: "m\(i)/v1.zip", uploadID: "u\(i)", partSize: 5 << 20, versionID: v.id,
                                             datasetID: nil, sourcePath: nil, sourceSize: nil)
            if try catalog.model(id: m.id) != m { mismatches.append("model \(i)") }
            if try catalog.version(id: v.id) != v { mismatches.append("version \(i)") }
            if try catalog.upload(versionID: v.id) != u { mismatches.append("upload \(i)") }
        }
        do {
            #expect(mismatches.isEmpty, "returned and stored rows differ (created/modified dates): \(mismatches.count) of 60")
        }
    }

    func modelsFilteredByTypeAndSearch() throws {
        try model("BERT-Base-Chinese", type: .text)
        try model("bert-large", type: .text)
        try model("千问-7B", type: .text)
        try model("千问-VL", type: .image)
        try model("ResNet50", type: .image)
        try model("100%-model", type: .general)
        try model("plain", type: .general)

        #expect(try catalog.models().map(\.name) == ["100%-model", "BERT-Base-Chinese", "ResNet50", "bert-large", "plain", "千问-7B", "千问-VL"])
        #expect(try catalog.models(type: .text).map(\.name) == ["BERT-Base-Chinese", "bert-large", "千问-7B"])
        #expect(try catalog.models(type: .image).map(\.name) == ["ResNet50", "千问-VL"])
        #expect(try catalog.models(search: "BERT").map(\.name) == ["BERT-Base-Chinese", "bert-large"])
        #expect(try catalog.models(search: "bErT").map(\.name) == ["BERT-Base-Chinese", "bert-large"])
        #expect(try catalog.models(search: "chinese").map(\.name) == ["BERT-Base-Chinese"])
        #expect(try catalog.models(search: "千问").map(\.name) == ["千问-7B", "千问-VL"])
        #expect(try catalog.models(search: "问-v").map(\.name) == ["千问-VL"])
        #expect(try catalog.models(type: .image, search: "千问").map(\.name) == ["千问-VL"])
        #expect(try catalog.models(type: .general, search: "bert").isEmpty)
        // The search is a literal substring: no LIKE wildcards.
        #expect(try catalog.models(search: "%").map(\.name) == ["100%-model"])
        #expect(try catalog.models(search: "_").isEmpty)
        #expect(try catalog.models(search: "").count == 7)
        #expect(try catalog.models(search: "nothing").isEmpty)
    }

    func searchFoldsCaseBeyondASCII() throws {
        try model("Émile-LLM")
        try model("ΑΛΦΑ-vision")
        let latin = try catalog.models(search: "émile").map(\.name)
        let greek = try catalog.models(search: "αλφα").map(\.name)
        do {
            #expect(latin == ["Émile-LLM"])
            #expect(greek == ["ΑΛΦΑ-vision"])
        }
        #expect(try catalog.models(search: "Émile").map(\.name) == ["Émile-LLM"], "the exact case always matches")
    }

    func updateModelRenameTypeNoteAndClash() throws {
        let (a, _) = try model("a")
        try model("b")
        try catalog.updateModel(id: a.id, type: .image, note: "n")
        #expect(try catalog.model(id: a.id)?.type == .image)
        #expect(try catalog.model(id: a.id)?.note == "n")
        try catalog.updateModel(id: a.id, name: "a2")
        #expect(try catalog.model(named: "a") == nil)
        #expect(try catalog.model(named: "a2")?.type == .image, "a rename keeps the other fields")

        expectStoreError(.alreadyExists) { try catalog.updateModel(id: a.id, name: "b") }
        #expect(try catalog.model(id: a.id)?.name == "a2")
        expectStoreError(.notFound) { try catalog.updateModel(id: ModelID(9999), name: "z") }
    }

    func deleteModelCascadesToVersionsUploadsAndParts() throws {
        let (m, vs) = try model("gone", versions: ["v1", "v2"])
        let (other, otherVersions) = try model("stays", versions: ["v1"])
        let upload = try catalog.recordUpload(objectKey: vs[1].objectKey, uploadID: "u1", partSize: 8 << 20, versionID: vs[1].id,
                                              datasetID: nil, sourcePath: "/src", sourceSize: 100)
        try catalog.recordPart(upload: upload.id, UploadedPart(number: 1, etag: "e1", size: 8 << 20))
        let otherUpload = try catalog.recordUpload(objectKey: otherVersions[0].objectKey, uploadID: "u2", partSize: 8 << 20,
                                                   versionID: otherVersions[0].id, datasetID: nil, sourcePath: nil, sourceSize: nil)

        try catalog.deleteModel(id: m.id)
        #expect(try catalog.model(named: "gone") == nil)
        #expect(try catalog.versions(modelID: m.id).isEmpty)
        #expect(try catalog.version(id: vs[0].id) == nil)
        #expect(try catalog.upload(versionID: vs[1].id) == nil)
        #expect(try catalog.parts(upload: upload.id).isEmpty)
        #expect(try catalog.uploads().map(\.id) == [otherUpload.id])
        #expect(try catalog.versions(modelID: other.id).count == 1)
        #expect(try catalog.objectKeyInUse(vs[0].objectKey) == false, "a deleted version's key is free again")
        #expect(try catalog.integrityCheck() == "ok")
    }

    // MARK: Versions

    func insertVersionDuplicateNameUnderAnyExtension() throws {
        let (m, _) = try model("m", versions: ["v1"])
        expectStoreError(.alreadyExists) {
            try catalog.insertVersion(modelID: m.id, name: "v1", format: "tar.gz", objectKey: "m/v1.tar.gz")
        }
        expectStoreError(.alreadyExists) {
            try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1-other.zip")
        }
        #expect(try catalog.versions(modelID: m.id).map(\.fileName) == ["v1.zip"])
        // The same version name in another model is fine.
        let (n, _) = try model("n")
        let v = try catalog.insertVersion(modelID: n.id, name: "v1", format: "pth", objectKey: "n/v1.pth",
                                          note: "note", lineage: Lineage(parentVersion: "v0", dataset: "qa", job: "j1"))
        #expect(v.status == .uploading && v.size == 0 && v.sha256 == nil)
        let stored = try #require(try catalog.version(modelID: n.id, name: "v1"))
        #expect(stored.id == v.id && stored.objectKey == "n/v1.pth" && stored.note == "note")
        #expect(stored.lineage == Lineage(parentVersion: "v0", dataset: "qa", job: "j1"))
    }

    func objectKeysAreUnique() throws {
        let (m, vs) = try model("m", versions: ["v1"])
        let (n, _) = try model("n")
        expectStoreError(.alreadyExists) { try catalog.insertVersion(modelID: m.id, name: "v2", format: "zip", objectKey: vs[0].objectKey) }
        expectStoreError(.alreadyExists) { try catalog.insertVersion(modelID: n.id, name: "v9", format: "zip", objectKey: vs[0].objectKey) }
        #expect(try catalog.versions(modelID: m.id).count == 1)
        #expect(try catalog.versions(modelID: n.id).isEmpty)

        #expect(try catalog.objectKeyInUse("m/v1.zip"))
        #expect(try !catalog.objectKeyInUse("m/v2.zip"))
        _ = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        #expect(try catalog.objectKeyInUse(".datasets/qa.jsonl"))
        _ = try catalog.recordUpload(objectKey: "orphan/key.zip", uploadID: "u", partSize: 5 << 20, versionID: nil, datasetID: nil,
                                     sourcePath: nil, sourceSize: nil)
        #expect(try catalog.objectKeyInUse("orphan/key.zip"))
    }

    func markVersionReadyDropsTheUploadRecord() throws {
        let (_, vs) = try model("m", versions: ["v1"])
        let v = vs[0]
        let up = try catalog.recordUpload(objectKey: v.objectKey, uploadID: "u", partSize: 8 << 20, versionID: v.id, datasetID: nil,
                                          sourcePath: "/tmp/src.zip", sourceSize: 123)
        #expect(try catalog.upload(versionID: v.id)?.id == up.id)
        try catalog.markVersionFailed(id: v.id, error: "earlier failure", uploadStillOpen: true)
        try catalog.markVersionUploading(id: v.id)
        #expect(try catalog.version(id: v.id)?.error == nil)
        try catalog.markVersionReady(id: v.id, size: 123, sha256: "abc")

        let ready = try #require(try catalog.version(id: v.id))
        #expect(ready.status == .ready && ready.size == 123 && ready.sha256 == "abc" && ready.error == nil)
        #expect(ready.modified >= v.modified)
        #expect(try catalog.upload(versionID: v.id) == nil)
        #expect(try catalog.uploads().isEmpty)
        #expect(try catalog.versions(status: .ready).map(\.id) == [v.id])
    }

    func markVersionFailedAbortedOrStillOpen() throws {
        let (_, vs) = try model("m", versions: ["aborted", "open", "uploading"])
        var records: [VersionID: UploadRecord] = [:]
        for v in vs {
            records[v.id] = try catalog.recordUpload(objectKey: v.objectKey, uploadID: "id-\(v.name)", partSize: 5 << 20, versionID: v.id,
                                                     datasetID: nil, sourcePath: nil, sourceSize: nil)
        }
        try catalog.markVersionFailed(id: vs[0].id, error: "S3 said no", size: 10)
        try catalog.markVersionFailed(id: vs[1].id, error: "S3 said no, and abort failed", size: 20, uploadStillOpen: true)

        let aborted = try #require(try catalog.version(id: vs[0].id))
        #expect(aborted.status == .failed && aborted.error == "S3 said no" && aborted.size == 10)
        #expect(try catalog.upload(versionID: vs[0].id) == nil, "aborted: nothing left to abort")

        let open = try #require(try catalog.version(id: vs[1].id))
        #expect(open.status == .failed && open.error == "S3 said no, and abort failed")
        #expect(try catalog.upload(versionID: vs[1].id)?.uploadID == "id-open")

        // Abandoned: the still-open upload of the failed version; not the one still uploading.
        #expect(try catalog.abandonedUploads().map(\.uploadID) == ["id-open"])
        #expect(try catalog.versions(status: .failed).map(\.name) == ["aborted", "open"])
        #expect(try catalog.versions(status: .uploading).map(\.name) == ["uploading"])

        // An upload whose version and dataset are gone is abandoned too.
        _ = try catalog.recordUpload(objectKey: "x/orphan.zip", uploadID: "orphan", partSize: 5 << 20, versionID: nil, datasetID: nil,
                                     sourcePath: nil, sourceSize: nil)
        #expect(try catalog.abandonedUploads().map(\.uploadID) == ["id-open", "orphan"])
    }

    func recordUploadAndParts() throws {
        let (_, vs) = try model("m", versions: ["v1"])
        let up = try catalog.recordUpload(objectKey: vs[0].objectKey, uploadID: "upload-1", partSize: 8 << 20, versionID: vs[0].id,
                                          datasetID: nil, sourcePath: "/data/千问 v1.zip", sourceSize: 20 << 20)
        #expect(up.objectKey == "m/v1.zip" && up.partSize == 8 << 20 && up.sourcePath == "/data/千问 v1.zip" && up.sourceSize == 20 << 20)
        let stored = try #require(try catalog.upload(versionID: vs[0].id))
        #expect(stored.id == up.id && stored.uploadID == "upload-1" && stored.versionID == vs[0].id && stored.datasetID == nil)
        #expect(stored.sourcePath == up.sourcePath && stored.sourceSize == up.sourceSize && stored.partSize == up.partSize)
        #expect(try catalog.uploads().map(\.id) == [up.id])

        try catalog.recordPart(upload: up.id, UploadedPart(number: 2, etag: "e2", size: 8 << 20))
        try catalog.recordPart(upload: up.id, UploadedPart(number: 1, etag: "e1", size: 8 << 20))
        try catalog.recordPart(upload: up.id, UploadedPart(number: 3, etag: "e3", size: 4 << 20))
        try catalog.recordPart(upload: up.id, UploadedPart(number: 2, etag: "e2b", size: 8 << 20))   // re-uploaded
        #expect(try catalog.parts(upload: up.id) == [
            UploadedPart(number: 1, etag: "e1", size: 8 << 20),
            UploadedPart(number: 2, etag: "e2b", size: 8 << 20),
            UploadedPart(number: 3, etag: "e3", size: 4 << 20),
        ])
        try catalog.deleteUpload(id: up.id)
        #expect(try catalog.upload(versionID: vs[0].id) == nil)
        #expect(try catalog.parts(upload: up.id).isEmpty, "parts go with their upload")
    }

    func updateVersionRenameNoteAndClash() throws {
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        try catalog.updateVersion(id: vs[0].id, name: "v1.1", note: "renamed")
        let renamed = try #require(try catalog.version(id: vs[0].id))
        #expect(renamed.name == "v1.1" && renamed.note == "renamed")
        #expect(renamed.objectKey == "m/v1.zip", "a rename keeps the object key")
        #expect(try catalog.version(modelID: m.id, name: "v1") == nil)

        expectStoreError(.alreadyExists) { try catalog.updateVersion(id: vs[0].id, name: "v2") }
        #expect(try catalog.version(id: vs[0].id)?.name == "v1.1")
        // Renaming to its own name, or only changing the note, is fine.
        try catalog.updateVersion(id: vs[1].id, name: "v2", note: "same name")
        #expect(try catalog.version(id: vs[1].id)?.note == "same name")
        expectStoreError(.notFound) { try catalog.updateVersion(id: VersionID(9999), name: "x") }
        // The old name is free again, for a version with a new key.
        let v1 = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1~1.zip")
        #expect(try catalog.versions(modelID: m.id).map(\.name) == ["v1", "v1.1", "v2"])
        try catalog.deleteVersion(id: v1.id)
        #expect(try catalog.version(id: v1.id) == nil)
    }

    func aliasesMoveInOneStatementAndGoWithTheirModel() throws {
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        let a = try catalog.transaction { tx in try tx.setAlias(modelID: m.id, name: "@prod", versionID: vs[0].id) }
        let moved = try catalog.transaction { tx in try tx.setAlias(modelID: m.id, name: "@prod", versionID: vs[1].id) }
        #expect(moved.id == a.id && moved.versionID == vs[1].id, "the same alias, pointing elsewhere")
        let temp = try catalog.transaction { tx in try tx.setAlias(modelID: m.id, name: "CuTmp", versionID: vs[0].id) }
        _ = try catalog.transaction { tx in try tx.renameAlias(temp, to: "@prod") }
        #expect(try catalog.aliases(modelID: m.id).map { "\($0.name) \($0.versionID)" } == ["@prod \(vs[0].id)"], "replaced")
        #expect(try catalog.transaction { tx in try tx.aliases(versionID: vs[0].id).map(\.name) } == ["@prod"])
        // An alias of a version's archive view keeps saying so through a move and a rename.
        let view = try catalog.transaction { tx in
            try tx.setAlias(modelID: m.id, name: "CuView", versionID: vs[1].id, view: true)
        }
        _ = try catalog.transaction { tx in try tx.renameAlias(view, to: "@dir") }
        #expect(try catalog.alias(modelID: m.id, name: "@dir")?.view == true)
        #expect(try catalog.alias(modelID: m.id, name: "@prod")?.view == false)
        _ = try catalog.transaction { tx in try tx.setAlias(modelID: m.id, name: "@dir", versionID: vs[0].id) }
        #expect(try catalog.alias(modelID: m.id, name: "@dir")?.view == false, "set again: the file")
        let versions = try catalog.versions(modelID: m.id)
        _ = try catalog.transaction { tx in try tx.deleteModel(m, versions: versions) }
        #expect(try catalog.alias(id: temp.id) == nil)
    }

    func evaluationsAreOnePerDatasetAndGoWithTheirVersion() throws {
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        try catalog.transaction { tx in
            try tx.setEvaluation(Evaluation(versionID: vs[0].id, dataset: "qa", job: "j1", metrics: ["accuracy": 0.5], created: t0))
            try tx.setEvaluation(Evaluation(versionID: vs[0].id, dataset: "test", job: nil, metrics: ["loss": 1e-05], created: t0 + 1))
            try tx.setEvaluation(Evaluation(versionID: vs[0].id, dataset: "qa", job: "j2", metrics: ["accuracy": 0.75, "f1": 0.5], created: t0 + 2))
            try tx.setEvaluation(Evaluation(versionID: vs[1].id, dataset: "qa", job: "j3", metrics: ["accuracy": 1], created: t0))
        }
        let first = try catalog.evaluations(versionID: vs[0].id)
        #expect(first.map(\.dataset) == ["test", "qa"], "oldest first; the one on qa replaced")
        #expect(first.last == Evaluation(versionID: vs[0].id, dataset: "qa", job: "j2", metrics: ["accuracy": 0.75, "f1": 0.5], created: t0 + 2))
        #expect(first.first?.job == nil && first.first?.metrics == ["loss": 1e-05])
        #expect(try catalog.evaluations(modelID: m.id).mapValues { $0.count } == [vs[0].id: 2, vs[1].id: 1])
        let versions = try catalog.versions(modelID: m.id)
        _ = try catalog.transaction { tx in try tx.deleteModel(m, versions: versions) }
        #expect(try catalog.evaluations(versionID: vs[0].id).isEmpty && catalog.evaluations(versionID: vs[1].id).isEmpty)
    }

    func ownersAndTheAuditTrailAreKeptPerRow() throws {
        let (m, vs) = try model("m", versions: ["v1"])
        #expect(try catalog.model(id: m.id)?.owner == nil, "a row from before owners")
        try catalog.transaction { tx in
            try tx.setOwner(.model(m.id), Ownership(uid: 4242, gid: 4343, mode: 0o750))
            try tx.setOwner(.version(vs[0].id), Ownership(uid: 4242, gid: 4343, mode: 0o440))
            try tx.record(AuditEntry(uid: 4242, pid: 7, action: "model.chown", model: "m", target: nil, detail: "mode 755→750"))
            try tx.record(AuditEntry(uid: 0, pid: nil, action: "dataset.create", model: nil, target: "d.csv"))
        }
        #expect(try catalog.model(id: m.id)?.owner == Ownership(uid: 4242, gid: 4343, mode: 0o750))
        #expect(try catalog.version(id: vs[0].id)?.owner == Ownership(uid: 4242, gid: 4343, mode: 0o440))
        let all = try catalog.audit()
        #expect(all.map(\.action) == ["model.chown", "dataset.create"] && all[0].pid == 7 && all[1].pid == nil)
        #expect(try catalog.audit(model: "m").map(\.detail) == ["mode 755→750"])
        // A refused change leaves no audit line: the line is in the change's transaction.
        #expect(throws: StoreError.self) {
            try catalog.transaction { tx in
                try tx.record(AuditEntry(uid: 1, pid: 1, action: "model.delete", model: "m", target: nil))
                throw StoreError(.busy, "refused")
            }
        }
        #expect(try catalog.audit().count == 2)
    }

    /// A failed upload's audit line is written with the failure, and only when the failure is
    /// recorded (another writer's claim on the row leaves both the row and the trail alone).
    func aFailedUploadIsInTheAuditTrailWithItsFailure() throws {
        let (_, vs) = try model("m", versions: ["v1", "v2"])
        let d = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        let line = { (target: String) in AuditEntry(uid: 4242, pid: nil, action: "version.fail", model: "m", target: target, detail: "S3 said no") }
        try catalog.markVersionFailed(id: vs[0].id, error: "S3 said no", audit: line("v1.zip"))
        #expect(try catalog.claimUpload(versionID: vs[1].id, token: "mine"))
        try catalog.markVersionFailed(id: vs[1].id, error: "S3 said no", token: "someone else's", audit: line("v2.zip"))
        #expect(try catalog.version(id: vs[1].id)?.status == .uploading)
        try catalog.markDatasetFailed(id: d.id, error: "disk full",
                                      audit: AuditEntry(uid: 7, pid: 99, action: "dataset.fail", model: nil, target: "qa.jsonl", detail: "disk full"))
        let trail = try catalog.audit()
        #expect(trail.map(\.action) == ["version.fail", "dataset.fail"])
        #expect(trail[0].uid == 4242 && trail[0].target == "v1.zip" && trail[0].detail == "S3 said no" && trail[0].pid == nil)
        #expect(trail[1].uid == 7 && trail[1].pid == 99 && trail[1].target == "qa.jsonl")
    }

    func manifestDirtyFlag() throws {
        let (a, _) = try model("a")
        try model("b")
        #expect(try catalog.dirtyManifestModels().isEmpty)
        try catalog.setManifestDirty(modelID: a.id)
        #expect(try catalog.dirtyManifestModels().map(\.name) == ["a"])
        let snapshot = try #require(try catalog.modelSnapshot(id: a.id))
        #expect(snapshot.dirty)
        #expect(try catalog.markManifestWritten(modelID: a.id, generation: snapshot.generation))
        #expect(try catalog.dirtyManifestModels().isEmpty)
        #expect(try catalog.modelSnapshot(id: a.id)?.dirty == false)
    }

    // MARK: Stats

    func statsCountByTypeAndReadyBytesOnly() throws {
        let empty = try catalog.stats()
        #expect(empty.models == 0 && empty.versions == 0 && empty.bytes == 0)
        #expect(empty.modelsByType == ["text": 0, "image": 0, "general": 0])

        let (_, t) = try model("t1", type: .text, versions: ["v1", "v2", "v3"])
        try model("t2", type: .text)
        let (_, i) = try model("i1", type: .image, versions: ["v1"])
        try catalog.markVersionReady(id: t[0].id, size: 1000, sha256: "a")
        try catalog.markVersionReady(id: t[1].id, size: 234, sha256: "b")
        try catalog.markVersionFailed(id: t[2].id, error: "x", size: 5000)      // failed bytes do not count
        _ = i                                                                      // i1/v1 stays uploading
        let ds = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        try catalog.markDatasetReady(id: ds.id, size: 77, sha256: "d", records: 3)

        let s = try catalog.stats()
        #expect(s.models == 3)
        #expect(s.modelsByType == ["text": 2, "image": 1, "general": 0])
        #expect(s.versions == 4)
        #expect(s.readyVersions == 2)
        #expect(s.bytes == 1234)
        #expect(s.datasets == 1)
        #expect(s.datasetBytes == 77)
    }

    // MARK: Sharing the file

    func twoCatalogsOnOneFileSeeEachOthersWrites() throws {
        let other = try place.open()       // the CLI beside a mount
        let m = try catalog.createModel(name: "shared")
        #expect(try other.model(named: "shared")?.id == m.id)
        let v = try other.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "shared/v1.zip")
        #expect(try catalog.version(modelID: m.id, name: "v1")?.id == v.id)
        try catalog.markVersionReady(id: v.id, size: 5, sha256: "s")
        #expect(try other.version(id: v.id)?.status == .ready)
        expectStoreError(.alreadyExists) { try other.createModel(name: "shared") }
        try other.deleteModel(id: m.id)
        #expect(try catalog.models().isEmpty)
    }

    func concurrentWritesThroughOneCatalog() throws {
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for i in 0..<25 {
                do {
                    let m = try catalog.createModel(name: "t\(thread)-m\(i)")
                    _ = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "t\(thread)-m\(i)/v1.zip")
                } catch {
                    failures.withLock { $0.append("\(thread)/\(i): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(try catalog.models().count == 200)
        #expect(try catalog.stats().versions == 200)
    }

    func concurrentWritesFromEightConnections() throws {
        let failures = Locked<[String]>([])
        let place = self.place
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            do {
                let own = try place.open()     // one connection per thread, like separate processes
                for i in 0..<25 {
                    let m = try own.createModel(name: "c\(thread)-m\(i)")
                    _ = try own.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "c\(thread)-m\(i)/v1.zip")
                    try own.updateModel(id: m.id, note: "written by \(thread)")
                }
            } catch {
                failures.withLock { $0.append("\(thread): \(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [], "no busy errors")
        #expect(try catalog.models().count == 200)
        #expect(try catalog.models().allSatisfy { $0.note.hasPrefix("written by ") })
        #expect(try catalog.integrityCheck() == "ok")
    }

    func failedWriteRollsBackWholly() throws {
        let (m, _) = try model("m", versions: ["v1"])
        expectStoreError(.alreadyExists) {
            try catalog.database.write { db in
                _ = try Catalog.insertVersion(db, modelID: m.id, name: "v2", format: "zip", objectKey: "m/v2.zip", note: "", lineage: Lineage())
                _ = try Catalog.insertVersion(db, modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1b.zip", note: "", lineage: Lineage())
            }
        }
        #expect(try catalog.versions(modelID: m.id).map(\.name) == ["v1"], "v2 was rolled back with the refused v1")
    }

    // MARK: Rules in one transaction

    /// Two connections (two processes) each check "is a ready version left besides mine?" and
    /// delete theirs: one must wait for the other's commit and then see that it is the last one.
    /// With a deferred transaction both would read the same snapshot and both delete.
    func aCheckAndItsChangeCannotInterleaveWithAnotherConnections() throws {
        let place = self.place
        for round in 0..<10 {
            let (m, vs) = try model("race\(round)", versions: ["v1", "v2"])
            for v in vs { try catalog.markVersionReady(id: v.id, size: 1, sha256: "s") }
            let deleted = Locked<[String]>([])
            let refused = Locked<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                do {
                    let own = try place.open()
                    _ = try own.transaction { tx in
                        guard let mine = try tx.version(modelID: m.id, name: vs[i].name) else { throw StoreError.notFound("gone") }
                        try Rules.checkDeletable(version: mine, siblings: try tx.versions(modelID: m.id), modelName: m.name)
                        usleep(20_000)  // widen the window between the check and the change
                        return try tx.deleteVersion(mine)
                    }
                    deleted.withLock { $0.append(vs[i].name) }
                } catch {
                    refused.withLock { $0.append("\(error)") }
                }
            }
            #expect(deleted.withLock { $0.count } == 1, "round \(round): deleted \(deleted.withLock { $0 }), refused \(refused.withLock { $0 })")
            #expect(refused.withLock { $0 }.allSatisfy { $0.contains("last ready version") }, "\(refused.withLock { $0 })")
            #expect(try catalog.versions(modelID: m.id).filter { $0.status == .ready }.count == 1)
        }
    }

    func aDeletedRowsKeyStaysReservedUntilItsObjectIsGone() throws {
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        _ = try catalog.recordUpload(objectKey: "m/v2.zip", uploadID: "up-2", partSize: 8, versionID: vs[1].id, datasetID: nil,
                                     sourcePath: nil, sourceSize: nil)
        let removal = try catalog.transaction { try $0.deleteModel(m, versions: try $0.versions(modelID: m.id)) }
        #expect(removal.keys.sorted() == ["m/v1.zip", "m/v2.zip"])
        #expect(removal.uploads.map(\.uploadID) == ["up-2"])
        #expect(try catalog.model(named: "m") == nil && catalog.version(id: vs[0].id) == nil)
        // The keys are still owned: a new model m's v1.zip gets another one.
        #expect(try catalog.pendingDeletes().sorted() == ["m/v1.zip", "m/v2.zip"])
        #expect(try catalog.objectKeyInUse("m/v1.zip"))
        // The open multipart upload outlives its row, detached, for an abort.
        #expect(try catalog.abandonedUploads().map(\.uploadID) == ["up-2"])
        try catalog.objectDeleted("m/v1.zip")
        #expect(try !catalog.objectKeyInUse("m/v1.zip"))
        #expect(try catalog.pendingDeletes() == ["m/v2.zip"])
        #expect(try catalog.pendingDeletes(before: Date.distantPast).isEmpty)
    }

    func aRefusedTransactionChangesNothing() throws {
        let (m, vs) = try model("m", versions: ["v1"])
        expectStoreError(.notPermitted) {
            try catalog.transaction { tx in
                _ = try tx.deleteVersion(vs[0])
                throw StoreError(.notPermitted, "refused after the change")
            }
        }
        #expect(try catalog.versions(modelID: m.id).map(\.name) == ["v1"])
        #expect(try catalog.pendingDeletes().isEmpty)
    }

    func theCatalogFilesArePrivate() throws {
        try model("m", versions: ["v1"])
        for suffix in ["", "-wal", "-shm"] {
            var st = stat()
            #expect(stat(path + suffix, &st) == 0, "\(path + suffix) exists")
            #expect(st.st_mode & 0o777 == 0o600, "\(suffix): \(String(st.st_mode & 0o777, radix: 8))")
        }
    }
}

/// Every case of ``CatalogCases`` on every engine: the catalog conformance suite.
@Suite struct CatalogConformance {
    @Test(arguments: Backend.all) func migrationsSetUserVersionAndReopeningIsANoOp(_ backend: Backend) throws { try CatalogCases(backend).migrationsSetUserVersionAndReopeningIsANoOp() }
    @Test(arguments: Backend.all) func refusesACatalogFromANewerModelfs(_ backend: Backend) throws { try CatalogCases(backend).refusesACatalogFromANewerModelfs() }
    @Test(arguments: [Backend.sqlite]) func usesWALAndForeignKeys(_ backend: Backend) throws { try CatalogCases(backend).usesWALAndForeignKeys() }
    @Test(arguments: Backend.all) func integrityCheckIsOK(_ backend: Backend) throws { try CatalogCases(backend).integrityCheckIsOK() }
    @Test(arguments: Backend.all) func createModelAndDuplicate(_ backend: Backend) throws { try CatalogCases(backend).createModelAndDuplicate() }
    @Test(arguments: Backend.all) func insertedRowsEqualTheirStoredRows(_ backend: Backend) throws { try CatalogCases(backend).insertedRowsEqualTheirStoredRows() }
    @Test(arguments: Backend.all) func modelsFilteredByTypeAndSearch(_ backend: Backend) throws { try CatalogCases(backend).modelsFilteredByTypeAndSearch() }
    @Test(arguments: Backend.all) func searchFoldsCaseBeyondASCII(_ backend: Backend) throws { try CatalogCases(backend).searchFoldsCaseBeyondASCII() }
    @Test(arguments: Backend.all) func updateModelRenameTypeNoteAndClash(_ backend: Backend) throws { try CatalogCases(backend).updateModelRenameTypeNoteAndClash() }
    @Test(arguments: Backend.all) func deleteModelCascadesToVersionsUploadsAndParts(_ backend: Backend) throws { try CatalogCases(backend).deleteModelCascadesToVersionsUploadsAndParts() }
    @Test(arguments: Backend.all) func insertVersionDuplicateNameUnderAnyExtension(_ backend: Backend) throws { try CatalogCases(backend).insertVersionDuplicateNameUnderAnyExtension() }
    @Test(arguments: Backend.all) func objectKeysAreUnique(_ backend: Backend) throws { try CatalogCases(backend).objectKeysAreUnique() }
    @Test(arguments: Backend.all) func markVersionReadyDropsTheUploadRecord(_ backend: Backend) throws { try CatalogCases(backend).markVersionReadyDropsTheUploadRecord() }
    @Test(arguments: Backend.all) func markVersionFailedAbortedOrStillOpen(_ backend: Backend) throws { try CatalogCases(backend).markVersionFailedAbortedOrStillOpen() }
    @Test(arguments: Backend.all) func recordUploadAndParts(_ backend: Backend) throws { try CatalogCases(backend).recordUploadAndParts() }
    @Test(arguments: Backend.all) func updateVersionRenameNoteAndClash(_ backend: Backend) throws { try CatalogCases(backend).updateVersionRenameNoteAndClash() }
    @Test(arguments: Backend.all) func manifestDirtyFlag(_ backend: Backend) throws { try CatalogCases(backend).manifestDirtyFlag() }
    @Test(arguments: Backend.all) func aFailedUploadIsInTheAuditTrailWithItsFailure(_ backend: Backend) throws {
        try CatalogCases(backend).aFailedUploadIsInTheAuditTrailWithItsFailure()
    }
    @Test(arguments: Backend.all) func aliasesMoveInOneStatementAndGoWithTheirModel(_ backend: Backend) throws {
        try CatalogCases(backend).aliasesMoveInOneStatementAndGoWithTheirModel()
    }
    @Test(arguments: Backend.all) func evaluationsAreOnePerDatasetAndGoWithTheirVersion(_ backend: Backend) throws {
        try CatalogCases(backend).evaluationsAreOnePerDatasetAndGoWithTheirVersion()
    }
    @Test(arguments: Backend.all) func ownersAndTheAuditTrailAreKeptPerRow(_ backend: Backend) throws {
        try CatalogCases(backend).ownersAndTheAuditTrailAreKeptPerRow()
    }
    @Test(arguments: Backend.all) func statsCountByTypeAndReadyBytesOnly(_ backend: Backend) throws { try CatalogCases(backend).statsCountByTypeAndReadyBytesOnly() }
    @Test(arguments: Backend.all) func twoCatalogsOnOneFileSeeEachOthersWrites(_ backend: Backend) throws { try CatalogCases(backend).twoCatalogsOnOneFileSeeEachOthersWrites() }
    @Test(arguments: Backend.all) func concurrentWritesThroughOneCatalog(_ backend: Backend) throws { try CatalogCases(backend).concurrentWritesThroughOneCatalog() }
    @Test(arguments: Backend.all) func concurrentWritesFromEightConnections(_ backend: Backend) throws { try CatalogCases(backend).concurrentWritesFromEightConnections() }
    @Test(arguments: Backend.all) func failedWriteRollsBackWholly(_ backend: Backend) throws { try CatalogCases(backend).failedWriteRollsBackWholly() }
    @Test(arguments: Backend.all) func aCheckAndItsChangeCannotInterleaveWithAnotherConnections(_ backend: Backend) throws { try CatalogCases(backend).aCheckAndItsChangeCannotInterleaveWithAnotherConnections() }
    @Test(arguments: Backend.all) func aDeletedRowsKeyStaysReservedUntilItsObjectIsGone(_ backend: Backend) throws { try CatalogCases(backend).aDeletedRowsKeyStaysReservedUntilItsObjectIsGone() }
    @Test(arguments: Backend.all) func aRefusedTransactionChangesNothing(_ backend: Backend) throws { try CatalogCases(backend).aRefusedTransactionChangesNothing() }
    @Test(arguments: [Backend.sqlite]) func theCatalogFilesArePrivate(_ backend: Backend) throws { try CatalogCases(backend).theCatalogFilesArePrivate() }
}
