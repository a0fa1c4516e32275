import Foundation
import ModelStore

/// What each delete leaves in the nodes' caches (its ``Purge``), recorded by the delete's own
/// transaction so that every mount — whoever deleted, on whichever node, the CLI too — reads it
/// after the last record it applied. One row per object; records are numbered in commit order.
extension CatalogTransaction {
    /// How long a record is kept: a mount down for longer misses it, and its disk cache keeps those
    /// bytes until they are evicted (never served for anything else: they are named by content).
    static let cachePurgeSeconds: TimeInterval = 86_400

    /// Records `purge`, and drops records older than ``cachePurgeSeconds``.
    func recordCachePurge(_ purge: Purge) throws {
        try db.execute("DELETE FROM cache_purges WHERE created < ?", [.date(Date().addingTimeInterval(-Self.cachePurgeSeconds))])
        // The objects are in the order of their rows: versions, then a dataset (``Purge/init(_:)``).
        let rows: [(column: String, id: Int64)] = purge.versions.map { ("version_id", $0.rawValue) } + purge.datasets.map { ("dataset_id", $0.rawValue) }
        for (object, row) in zip(purge.objects, rows) {
            try db.execute("INSERT INTO cache_purges (object_id, \(row.column), created) VALUES (?, ?, ?)",
                           [.int(Int64(bitPattern: object)), .int(row.id), .date(Date())])
        }
    }
}

extension Catalog {
    /// Everything the records after `id` purge, and the last record's id (`id` when none came).
    public func cachePurges(after id: Int64) throws(StoreError) -> (through: Int64, purge: Purge) {
        let rows = try database.read {
            try $0.query("SELECT id, object_id, version_id, dataset_id FROM cache_purges WHERE id > ? ORDER BY id", [.int(id)]) { r in
                (id: r.int(0), object: UInt64(bitPattern: r.int(1)),
                 version: r.optionalInt(2).map(VersionID.init), dataset: r.optionalInt(3).map(DatasetID.init))
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
