import Foundation
import ModelStore

/// A node of a shared catalog and its lease.
public struct NodeLease: Sendable, Equatable {
    public var id: String
    public var host: String
    public var pid: Int64
    public var role: String
    public var started: Date
    public var heartbeat: Date
    /// Seconds after `heartbeat` that the node counts as alive.
    public var lease: Double
    /// Whether the lease had run out when it was read (by the database's clock).
    public var expired: Bool
}

/// Nodes hold leases: each process working on a node's data dir renews the node's row, and an
/// upload whose writer's node let its lease run out is failed and aborted by whoever sweeps.
extension Catalog {
    /// Renews (or takes) node `id`'s lease for `seconds`, by the database's clock.
    public func renewLease(node id: String, host: String, pid: Int32, role: String, seconds: Double) throws(StoreError) {
        let clock = database.clockSQL
        try database.write { db in
            try db.execute("""
                INSERT INTO nodes (id, host, pid, role, started, heartbeat, lease) VALUES (?1, ?2, ?3, ?4, \(clock), \(clock), ?5)
                ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, role = excluded.role,
                    heartbeat = excluded.heartbeat, lease = excluded.lease
                """, [.text(id), .text(host), .int(Int64(pid)), .text(role), .double(seconds)])
        }
    }

    /// Renews node `id`'s lease (its own length) from now, inside a write transaction; a node
    /// with no lease row gets none.
    func touchLease(_ db: Connection, node id: String) throws {
        _ = try db.execute("UPDATE nodes SET heartbeat = \(database.clockSQL) WHERE id = ?", [.text(id)])
    }

    /// Ends node `id`'s lease now (a clean shutdown of the last process on it).
    public func releaseLease(node id: String) throws(StoreError) {
        let clock = database.clockSQL
        try database.write { db in
            try db.execute("UPDATE nodes SET heartbeat = \(clock) - lease - 1 WHERE id = ?", [.text(id)])
        }
    }

    /// Every node with a lease row, with whether it has run out.
    public func nodes() throws(StoreError) -> [NodeLease] {
        let clock = database.clockSQL
        return try database.read { db in
            try db.query("""
                SELECT id, host, pid, role, started, heartbeat, lease, CASE WHEN heartbeat + lease < \(clock) THEN 1 ELSE 0 END
                FROM nodes ORDER BY id
                """) {
                NodeLease(id: $0.text(0), host: $0.text(1), pid: $0.int(2), role: $0.text(3), started: $0.date(4), heartbeat: $0.date(5),
                          lease: $0.double(6), expired: $0.int(7) != 0)
            }
        }
    }
}
