import Foundation
import ModelStore

/// A multipart upload in flight, remembered so that an interrupted import can resume.
public struct UploadRecord: Sendable, Equatable {
    public var id: Int64
    public var objectKey: String
    public var uploadID: String
    public var partSize: Int64
    public var versionID: VersionID?
    public var datasetID: DatasetID?
    public var sourcePath: String?
    public var sourceSize: Int64?
    public var created: Date
}

/// Counts for `.stats` and `modelfs stats` (``StoreStats``, as the port shows them).
public typealias CatalogStats = StoreStats

/// The facts about models, versions, datasets and uploads, in SQLite (one node) or PostgreSQL
/// (many). Enforces uniqueness; the rules of what may happen live in ``Registry``.
public final class Catalog: Sendable {
    public let database: any CatalogEngine

    /// The current time, rounded the way SQLite's REAL stores it, so rows compare equal when read back.
    static func now() -> Date { Date(timeIntervalSince1970: Date().timeIntervalSince1970) }

    /// The SQLite catalog in the file at `path`.
    public convenience init(path: String) throws(StoreError) {
        try self.init(engine: try SQLiteEngine(path: path))
    }

    /// A catalog on `engine`, its schema brought up to date.
    public init(engine: any CatalogEngine) throws(StoreError) {
        database = engine
        try migrate()
    }

    /// The catalog a `--catalog` value names: a `postgresql://` URL, or a SQLite file path.
    public static func open(_ location: String) throws(StoreError) -> Catalog {
        if let url = PostgresURL(location) {
            // MODELFS_CATALOG_TIMEOUT: seconds a statement may wait for the server (default 10).
            let setting = ProcessInfo.processInfo.environment["MODELFS_CATALOG_TIMEOUT"].flatMap(Double.init)
            let timeout = setting.map { max($0, 1) } ?? 10
            return try Catalog(engine: try PostgresEngine(url: url, timeout: timeout))
        }
        return try Catalog(path: location)
    }

    /// Where the catalog is, for messages (a URL's password left out).
    public var location: String { database.location }

    private func migrate() throws(StoreError) {
        let engine = database
        try database.write { db in
            let current = try engine.schemaVersion(db)
            guard current <= Migrations.all.count else {
                throw StoreError(.io, "catalog \(engine.location) has schema \(current), newer than this modelfs knows (\(Migrations.all.count))")
            }
            guard current < Migrations.all.count else { return }
            for index in current..<Migrations.all.count {
                try db.executeScript(Migrations.script(index, for: engine.dialect))
            }
            try engine.setSchemaVersion(db, Migrations.all.count)
        }
    }

    public var schemaVersion: Int {
        get throws(StoreError) {
            let engine = database
            return try database.read { try engine.schemaVersion($0) }
        }
    }

    // MARK: Models

    static let modelColumns = "id, name, type, note, created, modified, owner_uid, owner_gid, mode"
    static func model(_ r: Row) -> Model {
        var m = Model(id: ModelID(r.int(0)), name: r.text(1), type: ModelType(rawValue: r.text(2)) ?? .general, note: r.text(3),
                      created: r.date(4), modified: r.date(5))
        m.owner = ownership(r, 6)
        return m
    }

    /// `owner_uid, owner_gid, mode` from column `at` on; nil for a row from before owners.
    static func ownership(_ r: Row, _ at: Int32) -> Ownership? {
        guard !r.isNull(at), !r.isNull(at + 1), !r.isNull(at + 2) else { return nil }
        return Ownership(uid: UInt32(truncatingIfNeeded: r.int(at)), gid: UInt32(truncatingIfNeeded: r.int(at + 1)),
                         mode: UInt32(truncatingIfNeeded: r.int(at + 2)))
    }

    public func createModel(name: String, type: ModelType = .general, note: String = "") throws(StoreError) -> Model {
        try database.write { db in
            try Catalog.insertModel(db, name: name, type: type, note: note)
        }
    }

    static func insertModel(_ db: Connection, name: String, type: ModelType, note: String) throws -> Model {
        let now = Catalog.now()
        let id: Int64?
        do {
            id = try db.first("INSERT INTO models (name, type, note, created, modified) VALUES (?, ?, ?, ?, ?) RETURNING id",
                              [.text(name), .text(type.rawValue), .text(note), .date(now), .date(now)]) { $0.int(0) }
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("model \(name) already exists")
        }
        return Model(id: ModelID(id ?? 0), name: name, type: type, note: note, created: now, modified: now)
    }

    public func model(named name: String) throws(StoreError) -> Model? {
        try database.read { try $0.first("SELECT \(Catalog.modelColumns) FROM models WHERE name = ?", [.text(name)], Catalog.model) }
    }

    public func model(id: ModelID) throws(StoreError) -> Model? {
        try database.read { try $0.first("SELECT \(Catalog.modelColumns) FROM models WHERE id = ?", [.int(id)], Catalog.model) }
    }

    /// Models in name order, optionally of one type and whose name contains `search` (case-insensitive).
    public func models(type: ModelType? = nil, search: String? = nil) throws(StoreError) -> [Model] {
        var sql = "SELECT \(Catalog.modelColumns) FROM models WHERE 1 = 1"
        var args: [SQLValue] = []
        if let type { sql += " AND type = ?"; args.append(.text(type.rawValue)) }
        sql += " ORDER BY name"
        let all = try database.read { try $0.query(sql, args, Catalog.model) }
        // Filtered here rather than in SQL: SQLite's lower() folds ASCII only.
        guard let search, !search.isEmpty else { return all }
        let needle = search.lowercased()
        return all.filter { $0.name.lowercased().contains(needle) }
    }

    public func updateModel(id: ModelID, name: String? = nil, type: ModelType? = nil, note: String? = nil) throws(StoreError) {
        try transaction { try $0.updateModel(id: id, name: name, type: type, note: note) }
    }

    /// Deletes the model row with its versions and upload records.
    public func deleteModel(id: ModelID) throws(StoreError) {
        try database.write { db in _ = try db.execute("DELETE FROM models WHERE id = ?", [.int(id)]) }
    }

    // MARK: Versions

    static let versionColumns = """
        id, model_id, name, format, object_key, size, sha256, status, error, note, parent_version, dataset, job_id, created, modified,
        owner_uid, owner_gid, mode
        """
    static func version(_ r: Row) -> Version {
        var v = Version(id: VersionID(r.int(0)), modelID: ModelID(r.int(1)), name: r.text(2), format: r.text(3), objectKey: r.text(4), size: r.int(5),
                        sha256: r.optionalText(6), status: UploadStatus(rawValue: r.text(7)) ?? .failed, error: r.optionalText(8),
                        note: r.text(9), lineage: Lineage(parentVersion: r.optionalText(10), dataset: r.optionalText(11), job: r.optionalText(12)),
                        created: r.date(13), modified: r.date(14))
        v.owner = ownership(r, 15)
        return v
    }

    public func versions(modelID: ModelID) throws(StoreError) -> [Version] {
        try database.read {
            try $0.query("SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? ORDER BY name", [.int(modelID)], Catalog.version)
        }
    }

    public func version(modelID: ModelID, name: String) throws(StoreError) -> Version? {
        try database.read {
            try $0.first("SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? AND name = ?",
                         [.int(modelID), .text(name)], Catalog.version)
        }
    }

    public func version(id: VersionID) throws(StoreError) -> Version? {
        try database.read { try $0.first("SELECT \(Catalog.versionColumns) FROM versions WHERE id = ?", [.int(id)], Catalog.version) }
    }

    /// Versions in a given status across all models (stale uploads, `verify`).
    public func versions(status: UploadStatus) throws(StoreError) -> [Version] {
        try database.read {
            try $0.query("SELECT \(Catalog.versionColumns) FROM versions WHERE status = ? ORDER BY id", [.text(status.rawValue)], Catalog.version)
        }
    }

    /// Whether any version, dataset, open upload or pending delete already owns `key` (a renamed
    /// version keeps its old key; a deleted one's key waits until its object is gone).
    public func objectKeyInUse(_ key: String) throws(StoreError) -> Bool {
        try database.read { try CatalogTransaction(db: $0).objectKeyInUse(key) }
    }

    /// Adds a version in status `uploading`. Refused with `EEXIST` when the model has a version of
    /// that name under any extension.
    public func insertVersion(modelID: ModelID, name: String, format: String, objectKey: String, note: String = "",
                              lineage: Lineage = Lineage()) throws(StoreError) -> Version {
        try database.write { db in
            try Catalog.insertVersion(db, modelID: modelID, name: name, format: format, objectKey: objectKey, note: note, lineage: lineage)
        }
    }

    static func insertVersion(_ db: Connection, modelID: ModelID, name: String, format: String, objectKey: String, note: String,
                              lineage: Lineage) throws -> Version {
        let now = Catalog.now()
        if let existing = try db.first("SELECT format FROM versions WHERE model_id = ? AND name = ?", [.int(modelID), .text(name)], { $0.text(0) }) {
            throw StoreError.exists("version \(name) already exists (as \(name).\(existing))")
        }
        let id: Int64?
        do {
            id = try db.first("""
                INSERT INTO versions (model_id, name, format, object_key, status, note, parent_version, dataset, job_id, created, modified)
                VALUES (?, ?, ?, ?, 'uploading', ?, ?, ?, ?, ?, ?) RETURNING id
                """, [.int(modelID), .text(name), .text(format), .text(objectKey), .text(note), .optional(lineage.parentVersion),
                      .optional(lineage.dataset), .optional(lineage.job), .date(now), .date(now)]) { $0.int(0) }
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("version \(name) or its object key \(objectKey) already exists")
        }
        return Version(id: VersionID(id ?? 0), modelID: modelID, name: name, format: format, objectKey: objectKey, size: 0, sha256: nil,
                       status: .uploading, error: nil, note: note, lineage: lineage, created: now, modified: now)
    }

    /// Inserts a version as a manifest describes it (recovery).
    public func restoreVersion(modelID: ModelID, name: String, format: String, objectKey: String, size: Int64, sha256: String?,
                               status: UploadStatus, error: String?, note: String, lineage: Lineage, created: Date, modified: Date) throws(StoreError) {
        try database.write { db in
            try db.execute("""
                INSERT INTO versions (model_id, name, format, object_key, size, sha256, status, error, note, parent_version, dataset, job_id, created, modified)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.int(modelID), .text(name), .text(format), .text(objectKey), .int(size), .optional(sha256), .text(status.rawValue),
                      .optional(error), .text(note), .optional(lineage.parentVersion), .optional(lineage.dataset), .optional(lineage.job),
                      .date(created), .date(modified)])
        }
    }

    /// Marks an upload finished: `ready` with its size and sha256; drops its upload record.
    /// With a `token`, only the upload that claimed the row (``claimUpload(version:token:)``) may.
    public func markVersionReady(id: VersionID, size: Int64, sha256: String, token: String? = nil) throws(StoreError) {
        try database.write { db in
            let changed = try db.execute("UPDATE versions SET status = 'ready', size = ?, sha256 = ?, error = NULL, modified = ? WHERE id = ?"
                                         + Catalog.claimed(token), [.int(size), .text(sha256), .date(Date()), .int(id)] + Catalog.claim(token))
            if changed == 0 { throw StoreError.notFound("the version was deleted or replaced while it uploaded") }
            try db.execute("DELETE FROM uploads WHERE version_id = ?", [.int(id)])
        }
    }

    /// Marks an upload failed with its reason. Its upload record is dropped when the multipart
    /// upload was aborted, and kept (to abort later) when `uploadStillOpen`.
    /// With a `token`, a row that another upload claimed since is left alone.
    /// `audit`: the trail's line for the failure, recorded with it when the row changes.
    public func markVersionFailed(id: VersionID, error: String, size: Int64 = 0, uploadStillOpen: Bool = false,
                                  token: String? = nil, audit: AuditEntry? = nil) throws(StoreError) {
        try database.write { db in
            let changed = try db.execute("UPDATE versions SET status = 'failed', error = ?, size = ?, modified = ? WHERE id = ?" + Catalog.claimed(token),
                                         [.text(error), .int(size), .date(Date()), .int(id)] + Catalog.claim(token))
            if changed == 0 && token != nil { return }
            if !uploadStillOpen { try db.execute("DELETE FROM uploads WHERE version_id = ?", [.int(id)]) }
            if changed > 0, let audit { try CatalogTransaction(db: db).record(audit) }
        }
    }

    /// Restarts a failed or interrupted version's upload.
    public func markVersionUploading(id: VersionID) throws(StoreError) {
        try database.write { db in
            try db.execute("UPDATE versions SET status = 'uploading', error = NULL, modified = ? WHERE id = ?", [.date(Date()), .int(id)])
        }
    }

    /// Uploads whose version failed or vanished: multipart uploads that still need an abort.
    public func abandonedUploads() throws(StoreError) -> [UploadRecord] {
        let sql = "SELECT " + Catalog.uploadColumns + """
             FROM uploads WHERE (version_id IS NULL AND dataset_id IS NULL)
              OR version_id IN (SELECT id FROM versions WHERE status = 'failed')
              OR dataset_id IN (SELECT id FROM datasets WHERE status = 'failed')
            ORDER BY id
            """
        return try database.read { try $0.query(sql, [], Catalog.upload) }
    }

    /// Models whose manifest in the bucket is behind the catalog.
    public func dirtyManifestModels() throws(StoreError) -> [Model] {
        try database.read { try $0.query("SELECT \(Catalog.modelColumns) FROM models WHERE manifest_dirty = 1", [], Catalog.model) }
    }

    /// Marks the model's manifest and entries behind the catalog. The generation moves too, so a
    /// publish already under way cannot mark them written.
    public func setManifestDirty(modelID: ModelID) throws(StoreError) {
        try database.write { db in
            _ = try db.execute("UPDATE models SET manifest_dirty = 1, manifest_generation = manifest_generation + 1 WHERE id = ?",
                               [.int(modelID)])
        }
    }

    public func updateVersion(id: VersionID, name: String? = nil, note: String? = nil) throws(StoreError) {
        try transaction { try $0.updateVersion(id: id, name: name, note: note) }
    }

    public func deleteVersion(id: VersionID) throws(StoreError) {
        try database.write { db in _ = try db.execute("DELETE FROM versions WHERE id = ?", [.int(id)]) }
    }

    // MARK: Datasets

    static let datasetColumns = "id, name, format, object_key, size, records, sha256, status, error, note, created, modified, owner_uid, owner_gid, mode"
    static func dataset(_ r: Row) -> Dataset {
        var d = Dataset(id: DatasetID(r.int(0)), name: r.text(1), format: r.text(2), objectKey: r.text(3), size: r.int(4), records: r.optionalInt(5),
                        sha256: r.optionalText(6), status: UploadStatus(rawValue: r.text(7)) ?? .failed, error: r.optionalText(8),
                        note: r.text(9), created: r.date(10), modified: r.date(11))
        d.owner = ownership(r, 12)
        return d
    }

    public func datasets() throws(StoreError) -> [Dataset] {
        try database.read { try $0.query("SELECT \(Catalog.datasetColumns) FROM datasets ORDER BY name", [], Catalog.dataset) }
    }

    public func dataset(named name: String) throws(StoreError) -> Dataset? {
        try database.read { try $0.first("SELECT \(Catalog.datasetColumns) FROM datasets WHERE name = ?", [.text(name)], Catalog.dataset) }
    }

    public func insertDataset(name: String, format: String, objectKey: String, note: String = "") throws(StoreError) -> Dataset {
        try transaction { try $0.insertDataset(name: name, format: format, objectKey: objectKey, note: note) }
    }

    public func markDatasetReady(id: DatasetID, size: Int64, sha256: String, records: Int64?, token: String? = nil) throws(StoreError) {
        try database.write { db in
            let changed = try db.execute("UPDATE datasets SET status = 'ready', size = ?, sha256 = ?, records = ?, error = NULL, modified = ? WHERE id = ?"
                                         + Catalog.claimed(token), [.int(size), .text(sha256), .optional(records), .date(Date()), .int(id)] + Catalog.claim(token))
            if changed == 0 { throw StoreError.notFound("the dataset was deleted or replaced while it uploaded") }
            try db.execute("DELETE FROM uploads WHERE dataset_id = ?", [.int(id)])
        }
    }

    public func markDatasetFailed(id: DatasetID, error: String, token: String? = nil,
                                  audit: AuditEntry? = nil) throws(StoreError) {
        try database.write { db in
            let changed = try db.execute("UPDATE datasets SET status = 'failed', error = ?, modified = ? WHERE id = ?" + Catalog.claimed(token),
                                         [.text(error), .date(Date()), .int(id)] + Catalog.claim(token))
            if changed == 0 && token != nil { return }
            try db.execute("DELETE FROM uploads WHERE dataset_id = ?", [.int(id)])
            if changed > 0, let audit { try CatalogTransaction(db: db).record(audit) }
        }
    }

    public func renameDataset(id: DatasetID, to name: String) throws(StoreError) {
        try transaction { try $0.renameDataset(id: id, to: name) }
    }

    public func dataset(id: DatasetID) throws(StoreError) -> Dataset? {
        try database.read { try $0.first("SELECT \(Catalog.datasetColumns) FROM datasets WHERE id = ?", [.int(id)], Catalog.dataset) }
    }

    public func deleteDataset(id: DatasetID) throws(StoreError) {
        try database.write { db in _ = try db.execute("DELETE FROM datasets WHERE id = ?", [.int(id)]) }
    }

    // MARK: Uploads in flight

    static let uploadColumns = "id, object_key, upload_id, part_size, version_id, dataset_id, source_path, source_size, created"
    static func upload(_ r: Row) -> UploadRecord {
        UploadRecord(id: r.int(0), objectKey: r.text(1), uploadID: r.text(2), partSize: r.int(3), versionID: r.optionalInt(4).map(VersionID.init),
                     datasetID: r.optionalInt(5).map(DatasetID.init), sourcePath: r.optionalText(6), sourceSize: r.optionalInt(7), created: r.date(8))
    }

    public func recordUpload(objectKey: String, uploadID: String, partSize: Int64, versionID: VersionID?, datasetID: DatasetID?,
                             sourcePath: String?, sourceSize: Int64?) throws(StoreError) -> UploadRecord {
        try database.write { db in
            let now = Catalog.now()
            // A new upload at a key replaces the record (and the parts) of an older one.
            try db.execute("DELETE FROM uploads WHERE object_key = ?", [.text(objectKey)])
            let id = try db.first("""
                INSERT INTO uploads (object_key, upload_id, part_size, version_id, dataset_id, source_path, source_size, created)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
                """, [.text(objectKey), .text(uploadID), .int(partSize), .optional(versionID), .optional(datasetID),
                      .optional(sourcePath), .optional(sourceSize), .date(now)]) { $0.int(0) }
            return UploadRecord(id: id ?? 0, objectKey: objectKey, uploadID: uploadID, partSize: partSize, versionID: versionID,
                                datasetID: datasetID, sourcePath: sourcePath, sourceSize: sourceSize, created: now)
        }
    }

    public func upload(versionID: VersionID) throws(StoreError) -> UploadRecord? {
        try database.read { try $0.first("SELECT \(Catalog.uploadColumns) FROM uploads WHERE version_id = ?", [.int(versionID)], Catalog.upload) }
    }

    public func uploads() throws(StoreError) -> [UploadRecord] {
        try database.read { try $0.query("SELECT \(Catalog.uploadColumns) FROM uploads ORDER BY id", [], Catalog.upload) }
    }

    public func deleteUpload(id: Int64) throws(StoreError) {
        try database.write { db in _ = try db.execute("DELETE FROM uploads WHERE id = ?", [.int(id)]) }
    }

    public func recordPart(upload: Int64, _ part: UploadedPart) throws(StoreError) {
        try database.write { db in
            try db.execute("""
                INSERT INTO upload_parts (upload, number, etag, size) VALUES (?, ?, ?, ?)
                ON CONFLICT (upload, number) DO UPDATE SET etag = excluded.etag, size = excluded.size
                """,
                           [.int(upload), .int(Int64(part.number)), .text(part.etag), .int(part.size)])
        }
    }

    public func parts(upload: Int64) throws(StoreError) -> [UploadedPart] {
        try database.read {
            try $0.query("SELECT number, etag, size FROM upload_parts WHERE upload = ? ORDER BY number", [.int(upload)]) {
                UploadedPart(number: Int($0.int(0)), etag: $0.text(1), size: $0.int(2))
            }
        }
    }

    // MARK: Jobs

    static let jobColumns = "id, model, version, dataset, params, status, executor, executor_id, error, exit_code, outputs, created, started, finished, rowid, node, kind, evaluate, owner_uid, owner_gid"
    static func job(_ r: Row) -> Job {
        let params = (try? JSONDecoder().decode([String: String].self, from: Data(r.text(4).utf8))) ?? [:]
        let outputs = (try? JSONDecoder().decode([String].self, from: Data(r.text(10).utf8))) ?? []
        var job = Job(id: JobID(r.text(0)), model: r.text(1), version: r.text(2), dataset: r.text(3), params: params,
                      status: JobStatus(rawValue: r.text(5)) ?? .failed, executor: r.text(6), executorID: r.optionalText(7),
                      error: r.optionalText(8), exitCode: r.optionalInt(9).map(Int.init), outputs: outputs, created: r.date(11),
                      started: r.isNull(12) ? nil : r.date(12), finished: r.isNull(13) ? nil : r.date(13))
        job.number = r.int(14)
        job.node = r.optionalText(15)
        job.kind = JobKind(rawValue: r.text(16)) ?? .train
        job.evaluate = r.optionalText(17)
        if !r.isNull(18), !r.isNull(19) {
            job.owner = JobOwner(uid: UInt32(truncatingIfNeeded: r.int(18)), gid: UInt32(truncatingIfNeeded: r.int(19)))
        }
        return job
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// Adds a queued job; refused with `EEXIST` when the id is taken.
    public func insertJob(_ job: Job) throws(StoreError) {
        try transaction { try $0.insertJob(job) }
    }

    /// The first free id of the form `<prefix><n>`, n from 1.
    public func freeJobID(prefix: String) throws(StoreError) -> JobID {
        try database.read { try CatalogTransaction(db: $0).freeJobID(prefix: prefix) }
    }

    public func job(number: Int64) throws(StoreError) -> Job? {
        try database.read { try $0.first("SELECT \(Catalog.jobColumns) FROM jobs WHERE rowid = ?", [.int(number)], Catalog.job) }
    }

    public func job(id: JobID) throws(StoreError) -> Job? {
        try database.read { try $0.first("SELECT \(Catalog.jobColumns) FROM jobs WHERE id = ?", [.text(id)], Catalog.job) }
    }

    public func jobs(status: JobStatus? = nil) throws(StoreError) -> [Job] {
        try database.read { db in
            if let status {
                return try db.query("SELECT \(Catalog.jobColumns) FROM jobs WHERE status = ? ORDER BY created, id", [.text(status.rawValue)], Catalog.job)
            }
            return try db.query("SELECT \(Catalog.jobColumns) FROM jobs ORDER BY created, id", [], Catalog.job)
        }
    }

    /// Jobs queued or running that use `model` (and `version`, when given).
    public func activeJobs(model: String, version: String? = nil) throws(StoreError) -> [Job] {
        try database.read { try CatalogTransaction(db: $0).activeJobs(model: model, version: version) }
    }

    /// Moves a job from one status to another, only if it is still in one of `from` (so two
    /// runners never both start it). Returns whether it moved.
    @discardableResult
    public func transitionJob(id: JobID, from: [JobStatus], to: JobStatus, executorID: String? = nil, error: String? = nil,
                              exitCode: Int? = nil, outputs: [String]? = nil, node: String? = nil) throws(StoreError) -> Bool {
        try database.write { db in
            guard let current = try db.first("SELECT \(Catalog.jobColumns) FROM jobs WHERE id = ?", [.text(id)], Catalog.job),
                  from.contains(current.status) else { return false }
            let now = SQLValue.date(Date())
            let finishing = [JobStatus.succeeded, .failed, .cancelled].contains(to)
            try db.execute("""
                UPDATE jobs SET status = ?, executor_id = coalesce(?, executor_id), error = coalesce(?, error),
                  exit_code = coalesce(?, exit_code), outputs = coalesce(?, outputs),
                  started = coalesce(started, ?), finished = ?, node = coalesce(?, node)
                WHERE id = ?
                """, [.text(to.rawValue), .optional(executorID), .optional(error), .optional(exitCode.map(Int64.init)),
                      outputs.map { SQLValue.text(Catalog.json($0)) } ?? .null,
                      to == .running ? now : .null, finishing ? now : .null, .optional(node), .text(id)])
            return true
        }
    }

    // MARK: Stats

    public func stats() throws(StoreError) -> CatalogStats {
        try database.read { db in
            var s = CatalogStats()
            for (type, count) in try db.query("SELECT type, count(*) FROM models GROUP BY type", [], { ($0.text(0), Int($0.int(1))) }) {
                s.modelsByType[type] = count
                s.models += count
            }
            for t in ModelType.allCases where s.modelsByType[t.rawValue] == nil { s.modelsByType[t.rawValue] = 0 }
            if let row = try db.first("SELECT count(*), coalesce(sum(CASE WHEN status = 'ready' THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN status = 'ready' THEN size END), 0) FROM versions", [], { ($0.int(0), $0.int(1), $0.int(2)) }) {
                s.versions = Int(row.0); s.readyVersions = Int(row.1); s.bytes = row.2
            }
            if let row = try db.first("SELECT count(*), coalesce(sum(size), 0) FROM datasets", [], { ($0.int(0), $0.int(1)) }) {
                s.datasets = Int(row.0); s.datasetBytes = row.1
            }
            return s
        }
    }

    /// "ok" when the database is sound (SQLite's `PRAGMA integrity_check`).
    public func integrityCheck() throws(StoreError) -> String { try database.integrityCheck() }
}
