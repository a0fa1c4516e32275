import Foundation
import ModelStore

/// The catalog seen from inside one write transaction (``Catalog/transaction(_:)``). Both engines
/// let one writer in at a time (SQLite's `BEGIN IMMEDIATE`; PostgreSQL's advisory lock, across
/// every node), so what a rule reads here cannot change before its change commits: every rule of the
/// store (the last ready version stays, names are unique, nothing a queued or running job uses
/// goes away or changes name, nothing still uploading goes away) checks and changes through one
/// of these. The rules themselves live in ``Rules`` and in the Registry and JobService.
public struct CatalogTransaction {
    let db: Connection

    // MARK: Reading

    public func model(named name: String) throws -> Model? {
        try db.first("SELECT \(Catalog.modelColumns) FROM models WHERE name = ?", [.text(name)], Catalog.model)
    }

    public func versions(modelID: ModelID) throws -> [Version] {
        try db.query("SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? ORDER BY name", [.int(modelID)], Catalog.version)
    }

    public func version(modelID: ModelID, name: String) throws -> Version? {
        try db.first("SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? AND name = ?", [.int(modelID), .text(name)], Catalog.version)
    }

    public func dataset(named name: String) throws -> Dataset? {
        try db.first("SELECT \(Catalog.datasetColumns) FROM datasets WHERE name = ?", [.text(name)], Catalog.dataset)
    }

    public func job(id: JobID) throws -> Job? {
        try db.first("SELECT \(Catalog.jobColumns) FROM jobs WHERE id = ?", [.text(id)], Catalog.job)
    }

    /// Queued or running jobs that use `model` (and `version`, when given). The CAST types the
    /// parameter for PostgreSQL, which cannot tell the type of a NULL that `IS NULL` tests.
    public func activeJobs(model: String, version: String? = nil) throws -> [Job] {
        try db.query("""
            SELECT \(Catalog.jobColumns) FROM jobs
            WHERE status IN ('queued', 'running') AND model = ?1 AND (CAST(?2 AS TEXT) IS NULL OR version = ?2)
            """, [.text(model), .optional(version)], Catalog.job)
    }

    /// Queued or running jobs that use dataset `name`.
    public func activeJobs(dataset name: String) throws -> [Job] {
        try db.query("SELECT \(Catalog.jobColumns) FROM jobs WHERE status IN ('queued', 'running') AND dataset = ?", [.text(name)], Catalog.job)
    }

    /// Whether any version, dataset, open upload or pending delete owns `key`.
    public func objectKeyInUse(_ key: String) throws -> Bool {
        try db.first("""
            SELECT 1 FROM versions WHERE object_key = ?1 UNION ALL SELECT 1 FROM datasets WHERE object_key = ?1
            UNION ALL SELECT 1 FROM uploads WHERE object_key = ?1 UNION ALL SELECT 1 FROM pending_deletes WHERE object_key = ?1
            """, [.text(key)]) { _ in true } ?? false
    }

    /// The first free job id of the form `<prefix><n>`, n from 1.
    public func freeJobID(prefix: String) throws -> JobID {
        let taken = Set(try db.query("SELECT id FROM jobs WHERE substr(id, 1, length(?1)) = ?1", [.text(prefix)]) { $0.text(0) })
        var n = 1
        while taken.contains(prefix + "\(n)") { n += 1 }
        return JobID(prefix + "\(n)")
    }

    // MARK: Changing

    public func insertVersion(modelID: ModelID, name: String, format: String, objectKey: String, note: String,
                              lineage: Lineage) throws -> Version {
        try Catalog.insertVersion(db, modelID: modelID, name: name, format: format, objectKey: objectKey, note: note, lineage: lineage)
    }

    public func insertDataset(name: String, format: String, objectKey: String, note: String) throws -> Dataset {
        let now = Catalog.now()
        if let existing = try db.first("SELECT format FROM datasets WHERE name = ?", [.text(name)], { $0.text(0) }) {
            throw StoreError.exists("dataset \(name) already exists (as \(name).\(existing))")
        }
        let id: Int64?
        do {
            id = try db.first("""
                INSERT INTO datasets (name, format, object_key, status, note, created, modified) VALUES (?, ?, ?, 'uploading', ?, ?, ?) RETURNING id
                """, [.text(name), .text(format), .text(objectKey), .text(note), .date(now), .date(now)]) { $0.int(0) }
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("dataset \(name) or its object key already exists")
        }
        return Dataset(id: DatasetID(id ?? 0), name: name, format: format, objectKey: objectKey, size: 0, records: nil, sha256: nil,
                       status: .uploading, error: nil, note: note, created: now, modified: now)
    }

    /// Changes a model's name, type or note; `EEXIST` when the new name is taken.
    public func updateModel(id: ModelID, name: String? = nil, type: ModelType? = nil, note: String? = nil) throws {
        guard let current = try db.first("SELECT \(Catalog.modelColumns) FROM models WHERE id = ?", [.int(id)], Catalog.model) else {
            throw StoreError.notFound("no such model")
        }
        do {
            try db.execute("UPDATE models SET name = ?, type = ?, note = ?, modified = ? WHERE id = ?",
                           [.text(name ?? current.name), .text((type ?? current.type).rawValue), .text(note ?? current.note),
                            .date(Date()), .int(id)])
            // Every version entry in the bucket names its model: a rename rewrites them all.
            if let name, name != current.name { try db.execute("UPDATE models SET manifest_dirty = 1, manifest_generation = manifest_generation + 1 WHERE id = ?", [.int(id)]) }
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("model \(name ?? "") already exists")
        }
    }

    /// Changes a version's name or note; `EEXIST` when the model has a version of the new name
    /// under any extension.
    public func updateVersion(id: VersionID, name: String? = nil, note: String? = nil) throws {
        guard let v = try db.first("SELECT \(Catalog.versionColumns) FROM versions WHERE id = ?", [.int(id)], Catalog.version) else {
            throw StoreError.notFound("no such version")
        }
        if let name, name != v.name,
           let other = try db.first("SELECT format FROM versions WHERE model_id = ? AND name = ?", [.int(v.modelID), .text(name)], { $0.text(0) }) {
            throw StoreError.exists("version \(name) already exists (as \(name).\(other))")
        }
        try db.execute("UPDATE versions SET name = ?, note = ?, modified = ? WHERE id = ?",
                       [.text(name ?? v.name), .text(note ?? v.note), .date(Date()), .int(id)])
    }

    public func renameDataset(id: DatasetID, to name: String) throws {
        if try db.first("SELECT 1 FROM datasets WHERE name = ? AND id != ?", [.text(name), .int(id)], { _ in true }) != nil {
            throw StoreError.exists("dataset \(name) already exists")
        }
        try db.execute("UPDATE datasets SET name = ?, modified = ? WHERE id = ?", [.text(name), .date(Date()), .int(id)])
    }

    /// Adds a queued job; `EEXIST` when the id is taken.
    public func insertJob(_ job: Job) throws {
        do {
            try db.execute("""
                INSERT INTO jobs (id, model, version, dataset, params, status, executor, created, kind, evaluate, owner_uid, owner_gid)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                           [.text(job.id), .text(job.model), .text(job.version), .text(job.dataset), .text(Catalog.json(job.params)),
                            .text(job.status.rawValue), .text(job.executor), .date(job.created), .text(job.kind.rawValue),
                            .optional(job.evaluate), .optional(job.owner.map { Int64($0.uid) }), .optional(job.owner.map { Int64($0.gid) })])
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("job \(job.id) already exists")
        }
    }

    // MARK: Deleting

    /// Deletes the rows of versions (of one model, or the model itself with `model`) or of a
    /// dataset, and keeps what their bytes need until ``Catalog/objectDeleted(_:)`` says they
    /// are gone: each object key in `pending_deletes` (so that no new version or dataset is
    /// given that key while the old object is still there), and each multipart upload left open
    /// in `uploads`, detached from its row (an abandoned upload, aborted by `retryAbandonedUploads`).
    /// Returns what the caller removes from object storage once this transaction has committed,
    /// and what the caches forget (also recorded here for the other processes and nodes).
    func delete(versions: [Version], dataset: Dataset?, model: Model?) throws -> Removal {
        var removal = Removal()
        func keep(_ key: String, uploadsOf column: String, _ id: some RowID) throws {
            removal.uploads += try db.query("SELECT \(Catalog.uploadColumns) FROM uploads WHERE \(column) = ?", [.int(id)], Catalog.upload)
            try db.execute("UPDATE uploads SET \(column) = NULL WHERE \(column) = ?", [.int(id)])
            try db.execute("INSERT INTO pending_deletes (object_key, created) VALUES (?, ?) ON CONFLICT (object_key) DO UPDATE SET created = excluded.created",
                           [.text(key), .date(Date())])
            removal.keys.append(key)
            try db.execute("DELETE FROM archive_indexes WHERE object_key = ?", [.text(key)])
            try db.execute("DELETE FROM tensor_headers WHERE object_key = ?", [.text(key)])
        }
        // A model's aliases go with it (the registry refuses a version's delete while one points at it).
        if let m = model { try db.execute("DELETE FROM aliases WHERE model_id = ?", [.int(m.id)]) }
        for v in versions {
            try keep(v.objectKey, uploadsOf: "version_id", v.id)
            try db.execute("DELETE FROM versions WHERE id = ?", [.int(v.id)])
        }
        if let d = dataset {
            try keep(d.objectKey, uploadsOf: "dataset_id", d.id)
            try db.execute("DELETE FROM datasets WHERE id = ?", [.int(d.id)])
        }
        if let m = model { try db.execute("DELETE FROM models WHERE id = ?", [.int(m.id)]) }
        // Bytes another version or dataset still has (a `cp` of a version, one file imported
        // twice) stay in the caches: named by their content they are still right, and that
        // version's readers, who share their fetch, read on rather than get ESTALE.
        var entries: [CachePurgeEntry] = []
        for v in versions {
            entries.append(CachePurgeEntry(object: v.objectIdentity, column: "version_id", row: v.id.rawValue,
                                           kept: try stillHeld(sha256: v.sha256, size: v.size)))
        }
        if let d = dataset {
            entries.append(CachePurgeEntry(object: d.objectIdentity, column: "dataset_id", row: d.id.rawValue,
                                           kept: try stillHeld(sha256: d.sha256, size: d.size)))
        }
        removal.purge = Purge(objects: entries.filter { !$0.kept }.map(\.object), versions: versions.map(\.id), datasets: dataset.map { [$0.id] } ?? [])
        try recordCachePurge(entries)
        return removal
    }

    /// Whether a version or dataset left has these bytes (by content: the cache's name for them).
    private func stillHeld(sha256: String?, size: Int64) throws -> Bool {
        guard let sha256 else { return false }  // no content name yet: the object is the row's own
        return try db.first("""
            SELECT 1 FROM versions WHERE sha256 = ? AND size = ?
            UNION ALL SELECT 1 FROM datasets WHERE sha256 = ? AND size = ? LIMIT 1
            """, [.text(sha256), .int(size), .text(sha256), .int(size)]) { _ in true } ?? false
    }

    public func deleteVersion(_ v: Version) throws -> Removal { try delete(versions: [v], dataset: nil, model: nil) }

    /// Deletes a model with all its versions (`versions` must be all of them, read in this transaction).
    public func deleteModel(_ m: Model, versions: [Version]) throws -> Removal { try delete(versions: versions, dataset: nil, model: m) }

    public func deleteDataset(_ d: Dataset) throws -> Removal { try delete(versions: [], dataset: d, model: nil) }
}

/// What a committed delete left to remove from object storage: the objects, and the multipart
/// uploads that were still open; and what every node's caches forget (recorded for them in the
/// same transaction: ``Catalog/cachePurges(after:)``).
public struct Removal: Sendable, Equatable {
    public var keys: [String] = []
    public var uploads: [UploadRecord] = []
    public var purge = Purge()
}

extension Catalog {
    /// Runs `body` in one write transaction (``CatalogEngine/write(_:)``): its checks and its changes land together
    /// or not at all, and no other writer (thread or process) comes in between. A ``StoreError``
    /// thrown by `body` refuses the operation and rolls everything back.
    public func transaction<T>(_ body: (CatalogTransaction) throws -> T) throws(StoreError) -> T {
        try database.write { db in try body(CatalogTransaction(db: db)) }
    }

    /// Object keys whose rows are gone but whose objects may still exist (a delete that object
    /// storage refused, or a crash right after the commit), recorded before `before`.
    public func pendingDeletes(before: Date = .distantFuture) throws(StoreError) -> [String] {
        try database.read {
            try $0.query("SELECT object_key FROM pending_deletes WHERE created < ? ORDER BY created, object_key", [.date(before)]) { $0.text(0) }
        }
    }

    /// The object under `key` is gone: the key may be given to a new version or dataset again.
    public func objectDeleted(_ key: String) throws(StoreError) {
        try database.write { db in _ = try db.execute("DELETE FROM pending_deletes WHERE object_key = ?", [.text(key)]) }
    }
}
