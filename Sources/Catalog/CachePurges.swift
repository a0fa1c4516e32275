import Foundation
import ModelStore

/// What each delete leaves in the nodes' caches (its ``Purge``), recorded by the delete's own
/// transaction so that every mount — whoever deleted, on whichever node, the CLI too — reads it
/// after the last record it applied. One row per object; records are numbered in commit order.
extension CatalogTransaction {
    /// How long a record is kept: a mount down for longer misses it, and its disk cache keeps those
    /// bytes until they are evicted (never served for anything else: they are named by content).
    static let cachePurgeSeconds: TimeInterval = 86_400

    /// Records what a delete leaves in the caches, and drops records older than ``cachePurgeSeconds``.
    func recordCachePurge(_ entries: [CachePurgeEntry]) throws {
        try db.execute("DELETE FROM cache_purges WHERE created < ?", [.date(Date().addingTimeInterval(-Self.cachePurgeSeconds))])
        for e in entries {
            try db.execute("INSERT INTO cache_purges (object_id, \(e.column), object_kept, created) VALUES (?, ?, ?, ?)",
                           [.int(Int64(bitPattern: e.object)), .int(e.row), .int(e.kept ? 1 : 0), .date(Date())])
        }
    }
}

/// One deleted version's or dataset's record: its object, and whether another row still has
/// those bytes (then only its views are forgotten).
struct CachePurgeEntry {
    var object: UInt64
    var column: String
    var row: Int64
    var kept: Bool
}

extension Catalog {
    /// Everything the records after `id` purge, and the last record's id (`id` when none came).
    public func cachePurges(after id: Int64) throws(StoreError) -> (through: Int64, purge: Purge) {
        let rows = try database.read {
            try $0.query("SELECT id, object_id, version_id, dataset_id, object_kept FROM cache_purges WHERE id > ? ORDER BY id", [.int(id)]) { r in
                (id: r.int(0), object: UInt64(bitPattern: r.int(1)),
                 version: r.optionalInt(2).map(VersionID.init), dataset: r.optionalInt(3).map(DatasetID.init), kept: r.int(4) != 0)
            }
        }
        let purge = Purge(objects: rows.filter { !$0.kept }.map(\.object), versions: rows.compactMap(\.version),
                          datasets: rows.compactMap(\.dataset))
        return (rows.last?.id ?? id, purge)
    }

    /// The id of the last record (0 before any): where a mount that has applied none starts.
    public func lastCachePurge() throws(StoreError) -> Int64 {
        try database.read { try $0.first("SELECT COALESCE(MAX(id), 0) FROM cache_purges") { $0.int(0) } } ?? 0
    }
}
