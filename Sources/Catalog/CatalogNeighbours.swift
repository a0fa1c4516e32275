import Foundation
import ModelStore

/// A consistent view of one model for its manifest, taken with a new generation number.
public struct ModelSnapshot: Sendable {
    public var model: Model
    public var versions: [Version]
    public var generation: Int64
    /// The bucket may be behind on this model's version entries (a PUT that failed, a model
    /// renamed, a manifest from before entries): the next publish rewrites them all.
    public var dirty: Bool
}

/// One version as one transaction saw it, for its entry in the bucket, with the version's entry
/// generation bumped in that same transaction: snapshots of one version are totally ordered.
public struct VersionSnapshot: Sendable {
    public var model: Model
    public var version: Version
    public var generation: Int64
    public var evaluations: [Evaluation] = []
}

/// A consistent view of every dataset for the datasets manifest, with the generation it reflects.
public struct DatasetsSnapshot: Sendable {
    public var datasets: [Dataset]
    public var generation: Int64
}

/// What neighbours on one data dir or one bucket need from the catalog: its id, who writes each
/// upload, and manifest generations so that manifests are written in order.
extension Catalog {
    // MARK: The catalog's id

    /// This catalog's id, a random UUID made once and kept; the bucket it uses records it.
    public func catalogID() throws(StoreError) -> String {
        try database.write { db in
            if let id = try db.first("SELECT value FROM catalog_meta WHERE key = 'catalog_id'", [], { $0.text(0) }) { return id }
            let id = UUID().uuidString.lowercased()
            try db.execute("INSERT INTO catalog_meta (key, value) VALUES ('catalog_id', ?)", [.text(id)])
            return id
        }
    }

    /// Takes over `id` (recovery into an empty catalog adopts the id its bucket records).
    public func adoptCatalogID(_ id: String) throws(StoreError) { try setMeta("catalog_id", id) }

    /// A value kept in the catalog's small key-value table.
    public func meta(_ key: String) throws(StoreError) -> String? {
        try database.read { try $0.first("SELECT value FROM catalog_meta WHERE key = ?", [.text(key)], { $0.text(0) }) }
    }

    public func setMeta(_ key: String, _ value: String) throws(StoreError) {
        try database.write { db in
            try db.execute("INSERT INTO catalog_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           [.text(key), .text(value)])
        }
    }

    /// Whether the catalog holds no model and no dataset.
    public func isEmpty() throws(StoreError) -> Bool {
        try database.read { db in
            try db.first("SELECT (SELECT count(*) FROM models) + (SELECT count(*) FROM datasets)", [], { $0.int(0) }) == 0
        }
    }

    // MARK: Writers

    /// Records which process writes a version (see `Writer`). With `node`, that node's lease is
    /// renewed in the same transaction: a lease that ran out while the catalog was away (and that
    /// the node's heartbeat has not renewed yet) would otherwise get this new upload failed by
    /// another node's sweep, as a dead node's.
    public func setWriter(versionID: VersionID, _ writer: String, node: String? = nil) throws(StoreError) {
        try database.write { db in
            _ = try db.execute("UPDATE versions SET writer = ? WHERE id = ?", [.text(writer), .int(versionID)])
            if let node { try touchLease(db, node: node) }
        }
    }

    public func setWriter(datasetID: DatasetID, _ writer: String, node: String? = nil) throws(StoreError) {
        try database.write { db in
            _ = try db.execute("UPDATE datasets SET writer = ? WHERE id = ?", [.text(writer), .int(datasetID)])
            if let node { try touchLease(db, node: node) }
        }
    }

    public func writer(versionID: VersionID) throws(StoreError) -> String? {
        try database.read { try $0.first("SELECT writer FROM versions WHERE id = ?", [.int(versionID)], { $0.optionalText(0) }) ?? nil }
    }

    public func writer(datasetID: DatasetID) throws(StoreError) -> String? {
        try database.read { try $0.first("SELECT writer FROM datasets WHERE id = ?", [.int(datasetID)], { $0.optionalText(0) }) ?? nil }
    }

    public func upload(datasetID: DatasetID) throws(StoreError) -> UploadRecord? {
        try database.read { try $0.first("SELECT \(Catalog.uploadColumns) FROM uploads WHERE dataset_id = ?", [.int(datasetID)], Catalog.upload) }
    }

    // MARK: Manifest generations

    /// The model and its versions as one transaction sees them, with the model's manifest
    /// generation bumped in that same transaction: snapshots of one model are totally ordered.
    public func modelSnapshot(id: ModelID) throws(StoreError) -> ModelSnapshot? {
        try database.write { db in
            guard try db.execute("UPDATE models SET manifest_generation = manifest_generation + 1 WHERE id = ?", [.int(id)]) == 1,
                  let m = try db.first("SELECT \(Catalog.modelColumns) FROM models WHERE id = ?", [.int(id)], Catalog.model),
                  let generation = try db.first("SELECT manifest_generation FROM models WHERE id = ?", [.int(id)], { $0.int(0) })
            else { return nil }
            let versions = try db.query("SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? ORDER BY name",
                                        [.int(id)], Catalog.version)
            let dirty = try db.first("SELECT manifest_dirty FROM models WHERE id = ?", [.int(id)], { $0.int(0) }) ?? 0
            return ModelSnapshot(model: m, versions: versions, generation: generation, dirty: dirty != 0)
        }
    }

    /// The version and its model, with the version's entry generation bumped; nil when it is gone.
    public func versionSnapshot(id: VersionID) throws(StoreError) -> VersionSnapshot? {
        try database.write { db in
            guard try db.execute("UPDATE versions SET manifest_generation = manifest_generation + 1 WHERE id = ?", [.int(id)]) == 1,
                  let v = try db.first("SELECT \(Catalog.versionColumns) FROM versions WHERE id = ?", [.int(id)], Catalog.version),
                  let m = try db.first("SELECT \(Catalog.modelColumns) FROM models WHERE id = ?", [.int(v.modelID)], Catalog.model),
                  let generation = try db.first("SELECT manifest_generation FROM versions WHERE id = ?", [.int(id)], { $0.int(0) })
            else { return nil }
            return VersionSnapshot(model: m, version: v, generation: generation,
                                   evaluations: try CatalogTransaction(db: db).evaluations(versionID: id))
        }
    }

    /// The version's latest entry generation, nil when the version is gone.
    public func versionEntryGeneration(id: VersionID) throws(StoreError) -> Int64? {
        try database.read { try $0.first("SELECT manifest_generation FROM versions WHERE id = ?", [.int(id)], { $0.int(0) }) }
    }

    /// Marks the model's manifest written, if no snapshot was taken after `generation`; returns
    /// false when a newer one was (the manifest must be written again).
    public func markManifestWritten(modelID: ModelID, generation: Int64) throws(StoreError) -> Bool {
        try database.write { db in
            if try db.first("SELECT 1 FROM models WHERE id = ?", [.int(modelID)], { _ in true }) == nil { return true }
            return try db.execute("UPDATE models SET manifest_dirty = 0 WHERE id = ? AND manifest_generation = ?",
                                  [.int(modelID), .int(generation)]) == 1
        }
    }

    /// Every dataset and the generation of the datasets manifest that state is.
    public func datasetsSnapshot() throws(StoreError) -> DatasetsSnapshot {
        try database.write { db in
            let generation = try db.first("SELECT generation FROM manifest_state WHERE name = 'datasets'", [], { $0.int(0) }) ?? 0
            let all = try db.query("SELECT \(Catalog.datasetColumns) FROM datasets ORDER BY name", [], Catalog.dataset)
            return DatasetsSnapshot(datasets: all, generation: generation)
        }
    }

    /// Whether the datasets manifest in the bucket is behind the catalog.
    public func datasetsManifestBehind() throws(StoreError) -> Bool {
        try database.read { db in
            try db.first("SELECT CASE WHEN generation > published THEN 1 ELSE 0 END FROM manifest_state WHERE name = 'datasets'", [], { $0.int(0) != 0 }) ?? false
        }
    }

    /// Records that the datasets manifest of `generation` is written; returns false when the
    /// datasets changed since (it must be written again).
    public func markDatasetsManifestWritten(generation: Int64) throws(StoreError) -> Bool {
        try database.write { db in
            try db.execute("UPDATE manifest_state SET published = CASE WHEN published > ?1 THEN published ELSE ?1 END WHERE name = 'datasets'", [.int(generation)])
            return try db.first("SELECT generation FROM manifest_state WHERE name = 'datasets'", [], { $0.int(0) }) == generation
        }
    }

    /// Inserts a dataset as the datasets manifest describes it (recovery).
    public func restoreDataset(name: String, format: String, objectKey: String, size: Int64, records: Int64?, sha256: String?,
                               status: UploadStatus, error: String?, note: String, created: Date, modified: Date) throws(StoreError) {
        try database.write { db in
            try db.execute("""
                INSERT INTO datasets (name, format, object_key, size, records, sha256, status, error, note, created, modified)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(name), .text(format), .text(objectKey), .int(size), .optional(records), .optional(sha256),
                      .text(status.rawValue), .optional(error), .text(note), .date(created), .date(modified)])
        }
    }
}
