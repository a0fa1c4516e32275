import Foundation
import Testing
import ModelStore
import Catalog
import UploadPath
@testable import Registry

@Suite struct RegistryModelTests {
    @Test(arguments: ["", ".hidden", ".", "..", "a/b", "a\u{0}b", "tab\tname", String(repeating: "x", count: 201)])
    func createModelValidatesNames(_ name: String) throws {
        let env = try Env()
        expectStoreError(name.utf8.count > Names.maxBytes ? .nameTooLong : .invalidArgument) { try env.registry.createModel(name) }
        #expect(try env.catalog.models().isEmpty)
        #expect(env.memory.keys.isEmpty, "no manifest for a refused model")
    }

    @Test(arguments: Backend.allCases)
    func createModelWritesItsManifest(_ backend: Backend) throws {
        let env = try Env(backend)
        let m = try env.registry.createModel("千问-7B", type: .text, note: "通义")
        #expect(m.name == "千问-7B" && m.type == .text)
        let manifest = try env.storedManifest("千问-7B")
        #expect(manifest.model == "千问-7B" && manifest.type == .text && manifest.note == "通义" && manifest.versions == nil)
        #expect(manifest.formatVersion == 2)
        #expect(try env.storedVersions("千问-7B").isEmpty)
        expectStoreError(.alreadyExists) { try env.registry.createModel("千问-7B") }
        expectStoreError(.notFound) { try env.registry.model("missing") }
    }

    @Test func setModelTypeAndNoteRewriteTheManifest() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.registry.setModel("m", type: .image, note: "vision")
        let manifest = try env.storedManifest("m")
        #expect(manifest.type == .image && manifest.note == "vision")
        expectStoreError(.notFound) { try env.registry.setModel("missing", type: .text) }
    }

    @Test func nextVersionName() throws {
        let env = try Env()
        try env.registry.createModel("m")
        #expect(try env.registry.nextVersionName(of: "m") == "v1")
        try env.put("m", "v1.zip", [1])
        try env.put("m", "v2.1.tar.gz", [2])
        #expect(try env.registry.nextVersionName(of: "m") == "v3")
        try env.put("m", "v7_base.pth", [3])
        #expect(try env.registry.nextVersionName(of: "m") == "v8")
        expectStoreError(.notFound) { try env.registry.nextVersionName(of: "missing") }
    }

    @Test(arguments: Backend.allCases)
    func renameModelMovesTheManifestAndKeepsKeys(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("A")
        let data = randomBytes(1000)
        let v1 = try env.put("A", "v1.zip", data)
        try env.registry.createModel("C")

        expectStoreError(.alreadyExists) { try env.registry.renameModel("A", to: "C") }
        #expect(try env.hasObject(Rules.manifestKey(model: "A")), "a refused rename moves nothing")
        expectStoreError(.invalidArgument) { try env.registry.renameModel("A", to: ".B") }

        try env.registry.renameModel("A", to: "B")
        #expect(try !env.hasObject(Rules.manifestKey(model: "A")))
        let manifest = try env.storedManifest("B")
        #expect(manifest.model == "B")
        #expect(try env.storedVersions("B").map(\.key) == ["A/v1.zip"], "entries name the model's new name")
        #expect(try env.storedVersions("A").isEmpty)
        let (_, v) = try env.registry.version("B", "v1")
        #expect(v.objectKey == v1.objectKey)
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        expectStoreError(.notFound) { try env.registry.model("A") }

        // A new model A with a v1.zip must not overwrite B's bytes, still at A/v1.zip.
        try env.registry.createModel("A")
        let newData = randomBytes(500)
        let newV1 = try env.put("A", "v1.zip", newData)
        #expect(newV1.objectKey != v1.objectKey)
        #expect(same(try env.objects.get(v1.objectKey, range: nil), data))
        #expect(same(try env.objects.get(newV1.objectKey, range: nil), newData))
    }

    @Test(arguments: Backend.allCases)
    func deleteModelRemovesAllObjectsAndTheManifest(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("gone")
        try env.registry.createModel("stays")
        try env.put("gone", "v1.zip", randomBytes(100))
        try env.put("gone", "v2.safetensors", randomBytes(partSize + 10))      // a multipart object
        try env.put("stays", "v1.zip", [7])
        // While a version is still uploading the model cannot go: its writer would complete
        // into a model that is gone (or, after a new mkdir, into someone else's).
        let open = try env.registry.beginVersion(model: "gone", fileName: "v3.pt")
        try env.feed(open, randomBytes(partSize + 1))
        #expect(try env.pendingUploads() == 1)
        let record = try #require(try env.catalog.upload(versionID: open.version!.id))
        #expect(try eventually { try env.catalog.parts(upload: record.id).count == 1 })
        expectStoreError(.busy, "uploading") { try env.registry.deleteModel("gone") }
        #expect(try env.registry.versions(of: "gone").count == 3 && env.hasObject(Rules.manifestKey(model: "gone")))

        // Once it failed with its multipart upload still open (the abort was refused), the
        // delete aborts that upload too.
        try env.catalog.markVersionFailed(id: open.version!.id, error: "given up", uploadStillOpen: true)
        try env.registry.deleteModel("gone")
        #expect(try env.objects.list(prefix: "gone/").isEmpty)
        #expect(try !env.hasObject(Rules.manifestKey(model: "gone")))
        #expect(try env.pendingUploads() == 0)
        #expect(try env.catalog.model(named: "gone") == nil)
        #expect(try env.catalog.uploads().isEmpty)
        #expect(try env.objects.list(prefix: "").map(\.key).sorted() == [".catalog/.versions/stays/v1.zip.json", ".catalog/stays.json", "stays/v1.zip"])
        expectStoreError(.notFound) { try env.registry.deleteModel("gone") }
    }
}

@Suite struct RegistryVersionTests {
    @Test(arguments: Backend.allCases)
    func beginWriteFinishMakesAReadyVersion(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("BERT-Base-Chinese", type: .text)
        let data = randomBytes(3 * MiB + 17)
        let upload = try env.registry.beginVersion(model: "BERT-Base-Chinese", fileName: "v 1+%?#&.zip", note: "first")
        #expect(upload.version!.status == .uploading)
        // The manifest follows when the upload ends, not when it starts.
        #expect(try env.storedVersions("BERT-Base-Chinese").isEmpty)
        try env.feed(upload, data)
        #expect(upload.bytesWritten == Int64(data.count))
        let v = try upload.finishVersion()

        #expect(v.status == .ready && v.size == Int64(data.count) && v.sha256 == sha256Hex(data))
        #expect(v.name == "v 1+%?#&" && v.format == "zip" && v.objectKey == "BERT-Base-Chinese/v 1+%?#&.zip")
        let (_, stored) = try env.registry.version("BERT-Base-Chinese", "v 1+%?#&")
        #expect(stored.status == .ready && stored.size == v.size && stored.sha256 == v.sha256 && stored.note == "first")
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))

        let entries = try env.storedVersions("BERT-Base-Chinese")
        let entry = try #require(entries.first)
        #expect(entries.count == 1)
        #expect(try env.hasObject(Rules.versionEntryKey(objectKey: v.objectKey)))
        #expect(entry.name == "v 1+%?#&" && entry.format == "zip" && entry.key == v.objectKey)
        #expect(entry.size == v.size && entry.sha256 == v.sha256 && entry.status == .ready && entry.note == "first")
        #expect(try env.registry.manifest(of: "BERT-Base-Chinese").versions.map(\.version.key) == [v.objectKey])
    }

    @Test(arguments: Backend.allCases)
    func multipartVersionLeavesNoUploadBehind(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let data = randomBytes(2 * partSize + 5)
        let v = try env.put("m", "v1.tar.gz", data)
        #expect(v.size == Int64(data.count) && v.sha256 == sha256Hex(data))
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        #expect(try env.pendingUploads() == 0)
        #expect(try env.catalog.uploads().isEmpty)
    }

    @Test func duplicateVersionIsRefused() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1])
        expectStoreError(.alreadyExists) { try env.registry.beginVersion(model: "m", fileName: "v1.zip") }
        expectStoreError(.alreadyExists) { try env.registry.beginVersion(model: "m", fileName: "v1.tar.gz") }
        // Also while the first one is still uploading.
        _ = try env.registry.beginVersion(model: "m", fileName: "v2.pt")
        expectStoreError(.alreadyExists) { try env.registry.beginVersion(model: "m", fileName: "v2.pth") }
        #expect(try env.registry.versions(of: "m").map(\.fileName) == ["v1.zip", "v2.pt"])
    }

    @Test(arguments: ["v1.exe", "v1.gz", "v1", ".zip", "a/b.zip", "v\u{7f}.zip"])
    func badFileNamesAreRefused(_ fileName: String) throws {
        let env = try Env()
        try env.registry.createModel("m")
        expectStoreError(.invalidArgument) { try env.registry.beginVersion(model: "m", fileName: fileName) }
        #expect(try env.registry.versions(of: "m").isEmpty)
    }

    @Test func versionOfAMissingModelIsNotFound() throws {
        let env = try Env()
        expectStoreError(.notFound) { try env.registry.beginVersion(model: "missing", fileName: "v1.zip") }
        try env.registry.createModel("m")
        expectStoreError(.notFound) { try env.registry.version("m", "v9") }
    }

    @Test func failingStoreMidUploadFailsTheVersion() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, _, part in
            op == .uploadPart && part == 2 ? .server(status: 500, code: "InternalError", message: "injected") : nil
        }
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        let error = #expect(throws: StoreError.self) {
            try env.feed(upload, randomBytes(2 * partSize + 1))
            try upload.finishVersion()
        }
        #expect(error?.code == .io)

        let (_, v) = try env.registry.version("m", "v1")
        #expect(v.status == .failed)
        #expect(v.error?.contains("500") == true, "the reason is kept: \(v.error ?? "nil")")
        #expect(upload.version!.status == .failed)
        #expect(try !env.hasObject(v.objectKey), "no half object")
        #expect(env.memory.pendingUploadCount == 0, "no multipart upload left open")
        #expect(try env.catalog.upload(versionID: v.id) == nil)
        let entry = try #require(try env.storedVersions("m").first)
        #expect(entry.status == .failed && entry.error == v.error)
    }

    /// Who changed a note or a type, and whose upload failed, is in the audit trail.
    @Test func noteAndTypeChangesAndFailedUploadsAreAudited() throws {
        let env = try Env()
        let someone = Actor(uid: 4242, gid: 4343, pid: 77)
        try Actor.acting(someone) { () throws(StoreError) in
            try env.registry.createModel("m")
            try env.registry.setModel("m", type: .text)
            try env.registry.setModel("m", type: .text, note: "base\nmodel")
        }
        try env.put("m", "v1.zip", randomBytes(10))
        try Actor.acting(someone) { () throws(StoreError) in try env.registry.setVersionNote("m", "v1", note: "the good one") }
        env.memory.injectFaults { op, _, part in
            op == .uploadPart && part == 2 ? .server(status: 500, code: "InternalError", message: "injected") : nil
        }
        let upload = try env.registry.beginVersion(model: "m", fileName: "v2.zip",
                                                   owner: Ownership(uid: 5151, gid: 5151, mode: 0o444))
        _ = #expect(throws: StoreError.self) {
            try env.feed(upload, randomBytes(2 * partSize + 1))
            try upload.finishVersion()
        }
        let trail = try env.catalog.audit(model: "m").filter { $0.action != "version.create" }
        #expect(trail.map(\.action) == ["model.create", "model.type", "model.note", "version.note", "version.fail"])
        #expect(trail.prefix(4).allSatisfy { $0.uid == 4242 && $0.pid == 77 })
        #expect(trail[1].detail == "general → text")
        #expect(trail[2].detail == "\"base\\nmodel\"", "one line, quoted")
        #expect(trail[3].target == "v1.zip" && trail[3].detail == "\"the good one\"")
        #expect(trail[4].uid == 5151 && trail[4].pid == nil && trail[4].target == "v2.zip" && trail[4].detail.contains("500"),
                "the failure is its owner's: \(trail[4])")
    }

    @Test func failedAbortIsRememberedAndRetried() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, _, part in
            (op == .uploadPart && part == 2) || op == .abort ? .server(status: 503, code: "ServiceUnavailable", message: "") : nil
        }
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        #expect(throws: StoreError.self) {
            try env.feed(upload, randomBytes(2 * partSize + 1))
            try upload.finishVersion()
        }
        let (_, v) = try env.registry.version("m", "v1")
        #expect(v.status == .failed)
        let record = try #require(try env.catalog.upload(versionID: v.id), "the upload record is kept to abort later")
        #expect(try env.catalog.abandonedUploads().map(\.id) == [record.id])
        #expect(env.memory.pendingUploadCount == 1)

        expectStoreError(.io, "still down") { try env.registry.retryAbandonedUploads() }
        #expect(try env.catalog.abandonedUploads().count == 1)

        env.memory.injectFaults(nil)
        #expect(try env.registry.retryAbandonedUploads() == 1)
        #expect(env.memory.pendingUploadCount == 0)
        #expect(try env.catalog.abandonedUploads().isEmpty)
        #expect(try env.catalog.uploads().isEmpty)
        #expect(try env.registry.retryAbandonedUploads() == 0)
    }

    @Test(arguments: Backend.allCases)
    func lastReadyVersionCannotBeDeleted(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let data = randomBytes(100)
        let v1 = try env.put("m", "v1.zip", data)
        // A failed sibling does not make v1 deletable.
        let failing = try env.registry.beginVersion(model: "m", fileName: "v2.zip")
        failing.abort(reason: "given up")
        let before = try env.storedVersions("m")

        expectStoreError(.notPermitted) { try env.registry.deleteVersion("m", "v1") }
        #expect(same(try env.objects.get(v1.objectKey, range: nil), data), "the bytes are still there")
        #expect(try env.registry.version("m", "v1").1.status == .ready)
        #expect(try env.storedVersions("m").map(\.name) == before.map(\.name))

        // The failed one can go.
        try env.registry.deleteVersion("m", "v2")
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1"])
    }

    @Test(arguments: Backend.allCases)
    func deleteVersionRemovesObjectRowAndManifestEntry(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let v1 = try env.put("m", "v1.zip", randomBytes(10))
        let v2Data = randomBytes(20)
        let v2 = try env.put("m", "v2.zip", v2Data)

        try env.registry.deleteVersion("m", "v1")
        #expect(try !env.hasObject(v1.objectKey))
        #expect(try env.catalog.version(id: v1.id) == nil)
        #expect(try env.storedVersions("m").map(\.name) == ["v2"])
        #expect(same(try env.objects.get(v2.objectKey, range: nil), v2Data))
        expectStoreError(.notPermitted) { try env.registry.deleteVersion("m", "v2") }
        expectStoreError(.notFound) { try env.registry.deleteVersion("m", "v1") }
    }

    /// `rm` while `cp` still writes: either the delete is refused while the version uploads, or
    /// the upload must not complete into an object that no row vouches for.
    @Test(arguments: [1000, partSize + 10])
    func deletingAnUploadingVersionLeavesNoOrphan(_ size: Int) throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v0.zip", [0])
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        try env.feed(upload, randomBytes(size))
        var deleted = true
        do { try env.registry.deleteVersion("m", "v1") } catch { deleted = false }
        if deleted {
            do {
                do {
                    let v = try upload.finishVersion()
                    Issue.record("the upload of a deleted version completed: \(v.status), \(v.size) bytes at \(v.objectKey)")
                } catch {}
                let orphan = try env.hasObject("m/v1.zip")
                #expect(!orphan, "no object that no row vouches for")
            }
            #expect(try env.registry.versions(of: "m").map(\.name) == ["v0"])
            #expect(env.memory.pendingUploadCount == 0)
        } else {
            #expect(try upload.finishVersion().status == .ready)
        }
    }

    @Test func deletingAFailedVersionAbortsItsOpenUpload() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, _, part in
            (op == .uploadPart && part == 2) || op == .abort ? .unreachable("injected") : nil
        }
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        _ = try? env.feed(upload, randomBytes(2 * partSize + 1))
        _ = try? upload.finishVersion()
        #expect(env.memory.pendingUploadCount == 1)
        env.memory.injectFaults(nil)
        try env.registry.deleteVersion("m", "v1")
        #expect(env.memory.pendingUploadCount == 0)
        #expect(try env.catalog.uploads().isEmpty)
    }

    @Test(arguments: Backend.allCases)
    func renameVersionKeepsTheObjectAndANewVersionGetsAnotherKey(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let old = randomBytes(300)
        let v1 = try env.put("m", "v1.zip", old)

        try env.registry.renameVersion("m", "v1", to: "v1.1")
        let (_, renamed) = try env.registry.version("m", "v1.1")
        #expect(renamed.id == v1.id && renamed.objectKey == "m/v1.zip")
        expectStoreError(.notFound) { try env.registry.version("m", "v1") }
        let entry = try #require(try env.storedVersions("m").first)
        #expect(entry.name == "v1.1" && entry.key == "m/v1.zip")

        // v1 again: its bytes must not land on the renamed version's key.
        let new = randomBytes(400)
        let v1Again = try env.put("m", "v1.zip", new)
        #expect(v1Again.objectKey != renamed.objectKey)
        #expect(v1Again.objectKey.hasPrefix("m/v1") && v1Again.objectKey.hasSuffix(".zip"))
        #expect(same(try env.objects.get(renamed.objectKey, range: nil), old))
        #expect(same(try env.objects.get(v1Again.objectKey, range: nil), new))
        #expect(try env.registry.version("m", "v1.1").1.sha256 == sha256Hex(old))
        #expect(try env.registry.version("m", "v1").1.sha256 == sha256Hex(new))
        #expect(try env.storedVersions("m").map(\.name).sorted() == ["v1", "v1.1"])
    }

    @Test func renameVersionRefusals() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1])
        try env.put("m", "v2.pt", [2])
        expectStoreError(.alreadyExists) { try env.registry.renameVersion("m", "v1", to: "v2") }
        expectStoreError(.invalidArgument) { try env.registry.renameVersion("m", "v1", to: "a/b") }
        expectStoreError(.invalidArgument) { try env.registry.renameVersion("m", "v1", to: ".v3") }
        expectStoreError(.notFound) { try env.registry.renameVersion("m", "v9", to: "v10") }
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1", "v2"])
        try env.registry.renameVersion("m", "v1", to: "v1")        // a no-op
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1", "v2"])
    }

    @Test func versionNoteReachesTheManifest() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1])
        try env.registry.setVersionNote("m", "v1", note: "best so far")
        #expect(try env.registry.version("m", "v1").1.note == "best so far")
        #expect(try env.storedVersions("m").first?.note == "best so far")
    }
}

@Suite struct RegistryRecoveryTests {
    @Test func manifestIsMarkedDirtyAndRewrittenByRetryPending() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, key, _ in
            op == .put && key.hasPrefix(Rules.manifestPrefix) ? .unreachable("injected") : nil
        }
        // Metadata operations still succeed from SQLite while the bucket refuses.
        try env.registry.setModel("m", type: .text, note: "offline edit")
        try env.registry.createModel("n")
        #expect(try env.registry.model("m").type == .text)
        #expect(try env.catalog.dirtyManifestModels().map(\.name).sorted() == ["m", "n"])
        #expect(try env.storedManifest("m").type == .general, "the bucket still has the old manifest")
        #expect(try !env.hasObject(Rules.manifestKey(model: "n")))

        // Uploads still work: only the manifest puts are refused.
        try env.put("m", "v1.zip", [1])
        #expect(try env.storedVersions("m").isEmpty)

        env.memory.injectFaults(nil)
        try env.registry.retryPending()
        #expect(try env.catalog.dirtyManifestModels().isEmpty)
        #expect(try env.storedManifest("m").type == .text)
        #expect(try env.storedManifest("m").note == "offline edit")
        #expect(try env.storedManifest("n").model == "n")
        #expect(try env.storedVersions("m").map(\.name) == ["v1"])
    }

    /// Starts v1.zip of model "m" from `source`, writes `written` bytes, waits until `parts` parts
    /// are in the bucket and drops the upload without finishing it: a killed process.
    func interruptedImport(_ env: Env, _ data: [UInt8], written: Int, parts: Int, source: String) throws {
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip", source: (source, Int64(data.count)))
        try env.feed(upload, Array(data[0..<written]))
        let versionID = upload.version!.id
        let record = try #require(try env.catalog.upload(versionID: versionID))
        #expect(record.sourcePath == source && record.sourceSize == Int64(data.count) && record.partSize == Int64(partSize))
        #expect(try eventually { try env.objects.listParts(record.objectKey, uploadID: record.uploadID).count == parts })
        #expect(try eventually { try env.catalog.parts(upload: record.id).count == parts }, "parts are remembered as they land")
    }

    @Test(arguments: Backend.allCases)
    func resumeContinuesAnInterruptedUpload(_ backend: Backend) throws {
        let env = try Env(backend)
        try env.registry.createModel("m")
        let data = randomBytes(2 * partSize + 3 * MiB)
        try interruptedImport(env, data, written: 2 * partSize + MiB, parts: 2, source: "/data/v1.zip")

        let interrupted = try #require(try env.registry.interruptedVersion(model: "m", sourcePath: "/data/v1.zip"))
        #expect(interrupted.name == "v1" && interrupted.status == .uploading)
        #expect(try env.registry.interruptedVersion(model: "m", sourcePath: "/data/other.zip") == nil)

        let partsBefore = backend == .memory ? env.memory.calls(.uploadPart) : 0
        let resumed = try env.registry.resumeVersion(model: "m", version: "v1", source: ("/data/v1.zip", Int64(data.count)))
        try env.feed(resumed, data, chunk: 3 * MiB + 1)
        let v = try resumed.finishVersion()
        if backend == .memory {
            #expect(env.memory.calls(.uploadPart) - partsBefore == 1, "only the last part was uploaded again")
            #expect(env.memory.calls(.create) == 1)
        }
        #expect(v.status == .ready && v.size == Int64(data.count) && v.sha256 == sha256Hex(data))
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        #expect(try env.pendingUploads() == 0)
        #expect(try env.catalog.uploads().isEmpty)
        #expect(try env.storedVersions("m").first?.status == .ready)
        expectStoreError(.alreadyExists, "a ready version has nothing to resume") {
            try env.registry.resumeVersion(model: "m", version: "v1", source: ("/data/v1.zip", Int64(data.count)))
        }
    }

    @Test func resumeWithAnotherSourceSizeIsRefused() throws {
        let env = try Env()
        try env.registry.createModel("m")
        let data = randomBytes(partSize + MiB)
        try interruptedImport(env, data, written: partSize + 1, parts: 1, source: "/data/v1.zip")
        expectStoreError(.invalidArgument) {
            try env.registry.resumeVersion(model: "m", version: "v1", source: ("/data/v1.zip", Int64(data.count + 1)))
        }
        let (_, v) = try env.registry.version("m", "v1")
        #expect(v.status == .uploading)
        #expect(try env.catalog.upload(versionID: v.id) != nil, "the interrupted upload is still resumable")
        #expect(env.memory.pendingUploadCount == 1)
    }

    @Test func resumeOfAFailedVersionStartsOver() throws {
        let env = try Env()
        try env.registry.createModel("m")
        env.memory.injectFaults { op, _, part in
            (op == .uploadPart && part == 2) || op == .abort ? .server(status: 500, code: "InternalError", message: "") : nil
        }
        let data = randomBytes(2 * partSize + 1)
        let first = try env.registry.beginVersion(model: "m", fileName: "v1.zip", source: ("/data/v1.zip", Int64(data.count)))
        #expect(throws: StoreError.self) {
            try env.feed(first, data)
            try first.finishVersion()
        }
        #expect(try env.registry.version("m", "v1").1.status == .failed)
        expectStoreError(.io, "the abandoned upload cannot be aborted yet") {
            try env.registry.resumeVersion(model: "m", version: "v1", source: ("/data/v1.zip", Int64(data.count)))
        }

        env.memory.injectFaults(nil)
        let again = try env.registry.resumeVersion(model: "m", version: "v1", source: ("/data/v1.zip", Int64(data.count)))
        try env.feed(again, data)
        let v = try again.finishVersion()
        #expect(v.status == .ready && v.sha256 == sha256Hex(data))
        #expect(try env.registry.version("m", "v1").1.error == nil, "the catalog forgets the old failure")
        do {
            #expect(v.error == nil, "the returned version forgets the old failure too: \(v.error ?? "")")
        }
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        #expect(env.memory.pendingUploadCount == 0)
        #expect(try env.catalog.uploads().isEmpty)
    }

    /// A FUSE `release` after a failed `write` calls `finish`: it must report the failure, not
    /// take the process down.
    @Test func finishAfterAFailedWriteThrowsInsteadOfTrapping() async {
        do {
          await #expect(processExitsWith: .success) {
            let env = try Env(uploadConcurrency: 1)
            try env.registry.createModel("m")
            env.memory.injectFaults { op, _, part in
                op == .uploadPart && part == 1 ? .server(status: 500, code: "InternalError", message: "") : nil
            }
            // exit() skips deinit, and a trap skips everything: remove the files up front (the
            // catalog and the store stay usable while open).
            try? FileManager.default.removeItem(atPath: env.dir)
            let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
            var writeFailed = false
            do { try env.feed(upload, randomBytes(3 * partSize)) } catch { writeFailed = true }
            guard writeFailed else { exit(2) }
            do {
                _ = try upload.finishVersion()
                exit(3)
            } catch {
                exit(0)
            }
          }
        }
    }
}

/// Every rule is checked in the transaction that makes its change: racing callers (threads here,
/// each with its own connection as separate processes have) cannot both pass a rule.
@Suite struct RegistryRaceTests {
    /// Two registries on one catalog file and one bucket: a mount and the CLI beside it.
    static func twoRegistries(_ env: Env) throws -> [Registry] {
        [env.registry, Registry(catalog: try Catalog(path: env.dir + "/catalog.sqlite"), objects: env.objects)]
    }

    /// Runs `body(0)` and `body(1)` at once; returns how they ended.
    static func race(_ body: @Sendable (Int) throws(StoreError) -> Void) -> LockedResults {
        let outcomes = LockedResults()
        DispatchQueue.concurrentPerform(iterations: 2) { i in outcomes.record { () throws(StoreError) in try body(i) } }
        return outcomes
    }

    /// 20 rounds, each with a new model `m<round>`.
    static func rounds(_ body: (Env, [Registry], _ model: String, _ round: Int) throws -> Void) throws {
        let env = try Env()
        let registries = try twoRegistries(env)
        for round in 0..<20 {
            try env.registry.createModel("m\(round)")
            try body(env, registries, "m\(round)", round)
        }
    }

    @Test func twoDeletesOfTheLastTwoReadyVersionsLeaveOne() throws {
        try RegistryRaceTests.rounds { env, registries, model, round in
            try env.put(model, "v1.zip", [1])
            try env.put(model, "v2.zip", [2])
            let outcomes = RegistryRaceTests.race { i throws(StoreError) in try registries[i].deleteVersion(model, "v\(i + 1)") }
            #expect(outcomes.successes == 1, "round \(round): \(outcomes.errors)")
            #expect(outcomes.errors.allSatisfy { $0.code == .notPermitted }, "\(outcomes.errors)")
            let left = try env.registry.versions(of: model)
            #expect(left.count == 1 && left[0].status == .ready)
            #expect(try env.hasObject(left[0].objectKey), "the version left has its bytes")
        }
    }

    @Test func twoCreatesOfOneVersionNameMakeOne() throws {
        let env = try Env()
        let registries = try RegistryRaceTests.twoRegistries(env)
        try env.registry.createModel("m")
        for round in 0..<20 {
            let outcomes = RegistryRaceTests.race { i throws(StoreError) in
                _ = try registries[i].beginVersion(model: "m", fileName: "v\(round).\(i == 0 ? "zip" : "pt")")
            }
            #expect(outcomes.successes == 1, "round \(round): \(outcomes.errors)")
            #expect(outcomes.errors.allSatisfy { $0.code == .alreadyExists && $0.message.contains("already exists") })
        }
        #expect(try env.registry.versions(of: "m").count == 20)
    }

    @Test func rmdirRacingACopyInNeverLeavesAVersionWithoutItsModel() throws {
        try RegistryRaceTests.rounds { env, registries, model, round in
            let created = LockedBox<ItemUpload?>(nil)
            let outcomes = RegistryRaceTests.race { i throws(StoreError) in
                if i == 0 { try registries[0].deleteModel(model) } else {
                    created.value = try registries[1].beginVersion(model: model, fileName: "v1.zip")
                }
            }
            #expect(outcomes.successes == 1, "round \(round): \(outcomes.errors)")
            if let upload = created.value {
                // The copy won: the model stays (rmdir was EBUSY) and the version completes.
                #expect(outcomes.errors.map(\.code) == [.busy])
                try env.feed(upload, [1, 2, 3])
                #expect(try upload.finishVersion().status == .ready)
                #expect(try env.registry.versions(of: model).map(\.name) == ["v1"])
            } else {
                #expect(outcomes.errors.map(\.code) == [.notFound])
                #expect(try env.catalog.model(named: model) == nil)
            }
        }
    }

    @Test func aDeleteThatObjectStorageRefusesKeepsTheKeyUntilRetried() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1])
        let v2 = try env.put("m", "v2.zip", [2, 2])
        env.memory.injectFaults { op, key, _ in op == .delete && key == "m/v2.zip" ? .unreachable("injected") : nil }
        // The delete is committed; the bytes wait for object storage.
        try env.registry.deleteVersion("m", "v2")
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1"])
        #expect(try env.hasObject(v2.objectKey))
        #expect(try env.catalog.pendingDeletes() == ["m/v2.zip"])
        // Meanwhile a new v2.zip must not get that key: the old object's delete would take its bytes.
        env.memory.injectFaults(nil)
        let again = try env.put("m", "v2.zip", [9, 9, 9])
        #expect(again.objectKey != v2.objectKey)
        // Too young to retry (its deleter may still be at it), then retried.
        #expect(try env.registry.retryPendingDeletes() == 0)
        #expect(try env.registry.retryPendingDeletes(olderThan: 0) == 1)
        #expect(try !env.hasObject(v2.objectKey))
        #expect(try env.catalog.pendingDeletes().isEmpty)
        #expect(same(try env.objects.get(again.objectKey, range: nil), [9, 9, 9]))
    }

    @Test func renamesCheckJobsAndNamesInTheirTransaction() throws {
        let env = try Env()
        try env.registry.createModel("m")
        try env.put("m", "v1.zip", [1])
        try env.put("m", "v2.zip", [2])
        let job = Job(id: "j", model: "m", version: "v1", dataset: "d", params: [:], status: .running, executor: "local", created: Date())
        try env.catalog.insertJob(job)
        expectStoreError(.busy) { try env.registry.renameVersion("m", "v1", to: "v1b") }
        expectStoreError(.busy) { try env.registry.renameModel("m", to: "m2") }
        expectStoreError(.busy) { try env.registry.deleteModel("m") }
        try env.registry.renameVersion("m", "v2", to: "v3")
        expectStoreError(.alreadyExists) { try env.registry.renameVersion("m", "v3", to: "v1") }
        #expect(try env.registry.versions(of: "m").map(\.name) == ["v1", "v3"])
    }
}

/// Outcomes of racing calls.
final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var ok = 0
    private var failures: [StoreError] = []
    func record(_ body: () throws(StoreError) -> Void) {
        do throws(StoreError) { try body(); lock.withLock { ok += 1 } } catch { lock.withLock { failures.append(error) } }
    }
    var successes: Int { lock.withLock { ok } }
    var errors: [StoreError] { lock.withLock { failures } }
}
