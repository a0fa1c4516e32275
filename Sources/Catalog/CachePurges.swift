import Foundation
import ModelStore

/// What each delete leaves in the nodes' caches (a ``Purge``), recorded by the delete's own
/// transaction so that every mount — whoever deleted, on whichever node — reads it after the last
/// record it applied. Records are numbered in commit order (one writer at a time).
extension CatalogTransaction {
    /// How long a record is kept: a mount down for longer misses it, and its disk cache keeps those
    /// bytes until they are evicted (never served for anything else: they are named by content).
    static let cachePurgeSeconds: TimeInterval = 86_400

    /// Records what the delete of the row `id` (`column`: `version_id` or `dataset_id`) leaves
    /// in the caches, and drops records older than ``cachePurgeSeconds``.
    func recordCachePurge(_ key: String, sha256: String?, size: Int64, _ column: String, _ id: some RowID) throws {
        try db.execute("DELETE FROM cache_purges WHERE created < ?", [.date(Date().addingTimeInterval(-Self.cachePurgeSeconds))])
        try db.execute("INSERT INTO cache_purges (object_key, sha256, size, \(column), created) VALUES (?, ?, ?, ?, ?)",
                       [.text(key), .optional(sha256), .int(size), .int(id), .date(Date())])
    }
}

extension Catalog {
    /// Everything the records after `id` purge, and the last record's id (`id` when none came).
    public func cachePurges(after id: Int64) throws(StoreError) -> (through: Int64, purge: Purge) {
        let rows = try database.read {
            try $0.query("SELECT id, object_key, sha256, size, version_id, dataset_id FROM cache_purges WHERE id > ? ORDER BY id",
                         [.int(id)]) { r in
                (id: r.int(0), object: ObjectIdentity.id(key: r.text(1), sha256: r.optionalText(2), size: r.int(3)),
                 version: r.optionalInt(4).map(VersionID.init), dataset: r.optionalInt(5).map(DatasetID.init))
            }
        }
        let purge = Purge(objects: rows.map(\.object), versions: rows.compactMap(\.version), datasets: rows.compactMap(\.dataset))
        return (rows.last?.id ?? id, purge)
    }

    /// The id of the last record (0 before any): where a mount that has applied none starts.
    public func lastCachePurge() throws(StoreError) -> Int64 {
        try database.read { try $0.first("SELECT COALESCE(MAX(id), 0) FROM cache_purges") { $0.int(0) } } ?? 0
    }
}
