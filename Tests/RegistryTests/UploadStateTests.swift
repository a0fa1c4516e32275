import Foundation
import Testing
import ModelStore
import BlobStore
import Catalog
@testable import Registry

/// The phases of one upload (``UploadPhase``), each transition and each fault on the way, over
/// the memory store (fault injection, request counters) and a real spool directory.
@Suite struct UploadStateTests {
    /// A registry with model `m` and a spool of `spoolBytes`.
    static func env(spoolBytes: Int64 = 256 << 20) throws -> (Env, SpoolSpace) {
        let env = try Env()
        try env.registry.createModel("m")
        return (env, try SpoolSpace(directory: env.dir + "/spool", capacity: spoolBytes))
    }

    static func write(_ upload: ItemUpload, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try upload.write($0, at: offset) }
    }

    /// Nothing of a failed upload stays: no object, no multipart upload, no spool bytes.
    static func expectNothingLeft(_ env: Env, _ space: SpoolSpace, _ upload: ItemUpload,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(upload.current.phase == .failed, sourceLocation: sourceLocation)
        #expect(try env.registry.version("m", "v1").1.status == .failed, sourceLocation: sourceLocation)
        #expect(try !env.hasObject(upload.item.objectKey), "no half version", sourceLocation: sourceLocation)
        #expect(try env.pendingUploads() == 0, "no open multipart upload", sourceLocation: sourceLocation)
        #expect(space.bytesUsed == 0, "the spool files are gone", sourceLocation: sourceLocation)
    }

    /// Each begin through the port (a version, a temporary file, a dataset, a restart of a failed
    /// version) claims its row in its creating transaction: the writer and the upload's token are
    /// there before any byte, and nothing claims the row again on the way to `ready` (a trigger
    /// counts every change of the claim's columns).
    @Test func eachBeginThroughThePortClaimsItsRowOnce() throws {
        let (env, space) = try UploadStateTests.env()
        try env.catalog.database.write { db in
            try db.executeScript("""
                CREATE TABLE claims (tbl TEXT, id INTEGER);
                CREATE TRIGGER version_claimed AFTER UPDATE OF upload_token, writer ON versions
                  BEGIN INSERT INTO claims VALUES ('versions', NEW.id); END;
                CREATE TRIGGER dataset_claimed AFTER UPDATE OF upload_token, writer ON datasets
                  BEGIN INSERT INTO claims VALUES ('datasets', NEW.id); END;
                """)
        }
        func claims(_ upload: ItemUpload) throws -> Int {
            let (tbl, id) = upload.version.map { ("versions", $0.id.rawValue) } ?? ("datasets", upload.datasetRow?.rawValue ?? -1)
            return try env.catalog.database.read { db in
                try db.first("SELECT count(*) FROM claims WHERE tbl = ? AND id = ?", [.text(tbl), .int(id)]) { Int($0.int(0)) } ?? 0
            }
        }
        env.registry.useSpool(space)
        let port: any StorePort = env.registry
        let m = try #require(try port.model(named: "m"))
        let owner = Ownership(uid: 1000, gid: 1000, mode: 0o644)
        let who = Actor(uid: 1000, gid: 1000, pid: 7)
        let begun = [try port.beginVersion(in: m.id, fileName: "v1.zip", owner: owner, by: who),
                     try port.beginScratch(in: m.id, fileName: ".tmp1", owner: owner, by: who),
                     try port.beginDataset(fileName: "qa.jsonl", owner: owner, by: who)]
        for upload in begun.map({ $0 as! ItemUpload }) {
            let (v, d) = (upload.version?.id, upload.datasetRow)
            #expect(try claims(upload) == 1, "\(upload.item.displayName): claimed as it was created")
            #expect(try (v.map { try env.catalog.writer(versionID: $0) } ?? env.catalog.writer(datasetID: d!)) == env.registry.writer)
            try env.feed(upload, pattern(2 * partSize + 1))  // parts sent and recorded for a resume
            try UploadStateTests.write(upload, [1], at: 0)  // a seek back: the spool
            #expect(try env.catalog.ownsUpload(versionID: v, datasetID: d, token: upload.token))
            try upload.finish()
            #expect(upload.current.phase == .ready)
            #expect(try claims(upload) == 1, "\(upload.item.displayName): claimed once")
        }
        // A failed version written again: the restart claims it, once more only.
        let broken = try env.registry.beginVersion(model: "m", fileName: "v2.zip")
        broken.abort(reason: "the writer died")
        let again = try port.restartFailedVersion(broken.version!.id, by: who) as! ItemUpload
        #expect(try claims(again) == 2, "the first upload's claim and the restart's")
        #expect(try env.catalog.ownsUpload(versionID: broken.version!.id, token: again.token))
        #expect(try !env.catalog.ownsUpload(versionID: broken.version!.id, token: broken.token))
        try env.feed(again, pattern(1000))
        #expect(try again.finishVersion().status == .ready)
        #expect(try claims(again) == 2)
        expectStoreError(.alreadyExists, "a ready version is not restarted") {
            _ = try port.restartFailedVersion(broken.version!.id, by: who)
        }
    }

    /// A row taken from its upload (claimed by another) makes it end `failed` without an object.
    @Test func aRowTakenFromTheUploadFailsItsCompletion() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        try env.feed(upload, pattern(2 * partSize))
        try env.catalog.transaction { try env.catalog.claimUpload($0, versionID: upload.version!.id, token: "another", writer: "w", node: nil) }
        expectStoreError(.io) { try upload.finish() }
        #expect(upload.current.phase == .failed)
        #expect(try !env.hasObject(upload.item.objectKey))
        #expect(try env.pendingUploads() == 0)
        #expect(try env.registry.version("m", "v1").1.status == .uploading, "the row is the other upload's")
    }

    /// streaming → completing → ready, the size growing with each write.
    @Test func aStreamedUploadGoesStreamingCompletingReady() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        #expect(upload.current.phase == .streaming && upload.current.size == 0)
        let data = pattern(2 * partSize + 5)
        try env.feed(upload, data)
        #expect(upload.current.phase == .streaming && upload.current.size == Int64(data.count))
        let phases = Locked<[UploadPhase]>([])
        env.memory.injectFaults { op, _, _ in
            if op == .complete { phases.withLock { $0.append(upload.current.phase) } }
            return nil
        }
        let v = try upload.finishVersion()
        #expect(phases.withLock { $0 } == [.completing], "what another thread sees while the object completes")
        #expect(upload.current.phase == .ready && upload.current.size == Int64(data.count) && upload.current.status == .ready)
        #expect(v.sha256 == sha256Hex(data))
        #expect(space.bytesUsed == 0, "the copy kept while streaming is dropped")
        expectStoreError(.badDescriptor) { try UploadStateTests.write(upload, [1], at: 0) }
    }

    /// A writer that sizes its file first (a long hole) before its first part is sent: spooled
    /// without a request to object storage, then uploaded whole.
    @Test func aResizeBeforeTheFirstPartSpoolsWithoutARoundTrip() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.safetensors")
        upload.useSpool(space)
        let ops: [MemoryObjectStore.Operation] = [.put, .create, .uploadPart, .complete, .abort, .get, .delete]
        let before = ops.map { env.memory.calls($0) }
        let head = pattern(1000)
        try env.feed(upload, head)
        let size: Int64 = 80 << 20
        try upload.resize(to: size)
        #expect(upload.current.phase == .spooled && upload.current.size == size)
        #expect(ops.map { env.memory.calls($0) } == before, "nothing went to object storage")
        try UploadStateTests.write(upload, [7, 7], at: Int64(size) - 2)
        let v = try upload.finishVersion()
        let expected = head + [UInt8](repeating: 0, count: Int(size) - 1002) + [7, 7]
        #expect(v.sha256 == sha256Hex(expected) && v.size == size)
        #expect(try env.pendingUploads() == 0 && space.bytesUsed == 0)
    }

    /// A seek back after parts were sent, while the spool keeps what was sent: nothing is read
    /// back nor completed; the multipart upload is aborted and the file goes on in the spool.
    @Test func aSeekBackIntoSentPartsReadsNothingBack() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        var data = pattern(2 * partSize + 100)
        try env.feed(upload, data)
        #expect(eventually(seconds: 30) { env.memory.calls(.uploadPart) >= 1 }, "a part reached object storage")
        try UploadStateTests.write(upload, [1, 2, 3], at: 5)
        data.replaceSubrange(5..<8, with: [1, 2, 3])
        #expect(upload.current.phase == .spooled && upload.current.size == Int64(data.count))
        #expect(env.memory.calls(.get) == 0 && env.memory.calls(.complete) == 0, "no round trip")
        #expect(try env.pendingUploads() == 0, "the parts sent are aborted")
        #expect(try !env.hasObject(upload.item.objectKey))
        #expect(try env.catalog.upload(versionID: upload.version!.id) == nil, "nor recorded for a resume")
        try UploadStateTests.write(upload, [9], at: Int64(data.count))
        data.append(9)
        let v = try upload.finishVersion()
        #expect(v.sha256 == sha256Hex(data))
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        #expect(try env.pendingUploads() == 0 && space.bytesUsed == 0)
    }

    /// Past what the spool keeps (a long file, or a spool half full), a seek back reads the
    /// object back as before; the version is still what was written.
    @Test(arguments: [false, true])
    func withoutAKeptCopyASeekBackReadsTheObjectBack(_ halfFull: Bool) throws {
        let (env, space) = try UploadStateTests.env(spoolBytes: 40 << 20)
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        // Half of 40 MiB holds two parts, not three; a limit of one part holds one.
        upload.useSpool(space, keeping: halfFull ? ItemUpload.keptLimit : Int64(partSize))
        var data = pattern(3 * partSize + 1)
        try env.feed(upload, data)
        try UploadStateTests.write(upload, [1], at: 0)
        data[0] = 1
        #expect(upload.current.phase == .spooled)
        #expect(env.memory.calls(.complete) == 1 && env.memory.calls(.get) > 0, "the round trip")
        let v = try upload.finishVersion()
        #expect(v.sha256 == sha256Hex(data))
        #expect(same(try env.objects.get(v.objectKey, range: nil), data))
        #expect(try env.pendingUploads() == 0 && space.bytesUsed == 0)
    }

    /// streaming → failed: a part refused after its retries.
    @Test func aPartRefusedFailsTheStreamingUpload() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        env.memory.injectFaults { op, _, part in op == .uploadPart && part == 2 ? .server(status: 500, code: "InternalError", message: "") : nil }
        #expect(throws: StoreError.self) {
            try env.feed(upload, pattern(4 * partSize))
            try upload.finish()
        }
        env.memory.injectFaults(nil)
        try UploadStateTests.expectNothingLeft(env, space, upload)
        #expect(upload.current.failure != nil)
    }

    /// A seek back whose sent parts cannot be aborted fails the upload; the multipart upload
    /// stays recorded, and is aborted once object storage answers.
    @Test func aSeekBackWhoseAbortFailsFailsTheUploadAndRemembersIt() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        try env.feed(upload, pattern(2 * partSize + 1))
        env.memory.injectFaults { op, _, _ in op == .abort ? .server(status: 503, code: "SlowDown", message: "") : nil }
        expectStoreError(.io) { try UploadStateTests.write(upload, [1], at: 0) }
        #expect(upload.current.phase == .failed)
        #expect(try env.pendingUploads() == 1 && env.catalog.abandonedUploads().count == 1, "remembered")
        env.memory.injectFaults(nil)
        #expect(try env.registry.retryAbandonedUploads() == 1)
        try UploadStateTests.expectNothingLeft(env, space, upload)
    }

    /// spooled → completing → failed: the spool's upload refused, or its completion refused.
    @Test(arguments: [MemoryObjectStore.Operation.uploadPart, .complete])
    func aSpooledUploadRefusedAtTheEndLeavesNothing(_ refused: MemoryObjectStore.Operation) throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        try env.feed(upload, pattern(2 * partSize + 1))
        try UploadStateTests.write(upload, [1], at: 0)
        #expect(upload.current.phase == .spooled)
        env.memory.injectFaults { op, _, _ in op == refused ? .server(status: 400, code: "InvalidRequest", message: "") : nil }
        #expect(throws: StoreError.self) { try upload.finish() }
        env.memory.injectFaults(nil)
        try UploadStateTests.expectNothingLeft(env, space, upload)
        #expect(throws: StoreError.self, "every later close reports it") { try upload.finish() }
    }

    /// The read-back fallback with a failure after the object was made: the object is removed.
    @Test func aFailureAfterTheReadBackRemovesTheObject() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space, keeping: 0)
        try env.feed(upload, pattern(2 * partSize + 1))
        try UploadStateTests.write(upload, [1], at: 0)
        #expect(try env.hasObject(upload.item.objectKey), "the round trip made the object")
        upload.abort(reason: "the mount stops")
        try UploadStateTests.expectNothingLeft(env, space, upload)
    }

    /// A full spool at the seek back: `ENOSPC`, and the upload fails cleanly.
    @Test func aFullSpoolFailsTheSeekBackWithNoSpace() throws {
        let (env, space) = try UploadStateTests.env(spoolBytes: 4 << 20)
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        upload.useSpool(space)
        try env.feed(upload, pattern(2 * partSize + 1))
        expectStoreError(.noSpace) { try UploadStateTests.write(upload, [1], at: 0) }
        try UploadStateTests.expectNothingLeft(env, space, upload)
    }

    /// Without a spool a seek back into sent parts is `EINVAL`; the upload fails cleanly.
    @Test func withoutASpoolASeekBackIsInvalid() throws {
        let (env, space) = try UploadStateTests.env()
        let upload = try env.registry.beginVersion(model: "m", fileName: "v1.zip")
        try env.feed(upload, pattern(2 * partSize + 1))
        expectStoreError(.invalidArgument) { try UploadStateTests.write(upload, [1], at: 0) }
        try UploadStateTests.expectNothingLeft(env, space, upload)
    }
}
