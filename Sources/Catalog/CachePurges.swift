import Foundation
import ModelStore

/// The deletes' purges (``CachePurge``): recorded by the delete's own transaction, read by every
/// mount after the last one it applied.
extension CatalogTransaction {
    /// How long a purge is kept: a mount down for longer misses it, and its disk cache keeps those
    /// bytes until they are evicted (never served for anything else: they are named by content).
    static let cachePurgeSeconds: TimeInterval = 86_400

    /// Records what the delete of the row `id` (`column`: `version_id` or `dataset_id`) leaves
    /// in the caches, and drops records older than ``cachePurgeSeconds``.
    func recordCachePurge(_ key: String, sha256: String?, size: Int64, _ column: String, _ id: Int64) throws {
        try db.execute("DELETE FROM cache_purges WHERE created < ?", [.date(Date().addingTimeInterval(-Self.cachePurgeSeconds))])
        try db.execute("INSERT INTO cache_purges (object_key, sha256, size, \(column), created) VALUES (?, ?, ?, ?, ?)",
                       [.text(key), .optional(sha256), .int(size), .int(id), .date(Date())])
    }
}

extension Catalog {
    /// The purges recorded after `id`, oldest first.
    public func cachePurges(after id: Int64) throws(StoreError) -> [CachePurge] {
        try database.read {
            try $0.query("SELECT id, object_key, sha256, size, version_id, dataset_id FROM cache_purges WHERE id > ? ORDER BY id",
                         [.int(id)]) { r in
                CachePurge(id: r.int(0), objectKey: r.text(1), sha256: r.optionalText(2), size: r.int(3),
                           versionID: r.optionalInt(4), datasetID: r.optionalInt(5))
            }
        }
    }

    /// The id of the last purge recorded (0 before any): where a mount starts reading.
    public func lastCachePurge() throws(StoreError) -> Int64 {
        try database.read { try $0.first("SELECT COALESCE(MAX(id), 0) FROM cache_purges") { $0.int(0) } } ?? 0
    }
}
