import Foundation
import ModelStore

/// A running job belongs to the node that started it. When that node's lease runs out, the other
/// nodes fail its jobs; a node that was only cut off from the catalog takes them back when it
/// returns (its processes ran on), and a job's checkpoints are imported once: the import is
/// claimed in one statement (the job's exit code recorded while it is still `running`), so a
/// job taken back after its import began is concluded from the versions it made, never imported
/// again.
extension Catalog {
    /// What a job failed for its node's lease says, and how such a job is found again.
    static let leaseRanOut = "(lease ran out)"

    /// Fails the running jobs of every node (but `except`) whose lease has run out, by the
    /// database's clock, in the statement that checks the lease: a node that renewed meanwhile
    /// keeps its jobs. Returns the ids of the jobs failed.
    @discardableResult
    public func failJobsOfExpiredNodes(except node: String?) throws(StoreError) -> [String] {
        let clock = database.clockSQL
        return try database.write { db in
            try db.query("""
                UPDATE jobs SET status = 'failed', finished = ?1,
                  error = 'its node ' || node || ' stopped \(Catalog.leaseRanOut) while it ran'
                WHERE status = 'running' AND node IS NOT NULL AND node != ?2 AND NOT EXISTS
                  (SELECT 1 FROM nodes WHERE nodes.id = jobs.node AND nodes.heartbeat + nodes.lease >= \(clock))
                RETURNING id
                """, [.date(Date()), .text(node ?? "")]) { $0.text(0) }
        }
    }

    /// Jobs of `node` that other nodes failed because its lease ran out: the node's to take back.
    public func jobsFailedForLease(node: String) throws(StoreError) -> [Job] {
        try database.read {
            try $0.query("""
                SELECT \(Catalog.jobColumns) FROM jobs WHERE status = 'failed' AND node = ? AND error LIKE ? ORDER BY created, id
                """, [.text(node), .text("%" + Catalog.leaseRanOut + "%")], Catalog.job)
        }
    }

    /// Takes back a job of `node` failed for its lease: `running` again, as it was. False when it
    /// is not such a job (any more).
    public func reclaimJob(id: JobID, node: String) throws(StoreError) -> Bool {
        try database.write { db in
            try db.execute("""
                UPDATE jobs SET status = 'running', error = NULL, finished = NULL
                WHERE id = ? AND node = ? AND status = 'failed' AND error LIKE ?
                """, [.text(id), .text(node), .text("%" + Catalog.leaseRanOut + "%")]) == 1
        }
    }

    /// Claims the import of a running job's checkpoints: true for exactly one caller, ever.
    public func claimJobImport(id: JobID) throws(StoreError) -> Bool {
        try database.write { db in
            try db.execute("UPDATE jobs SET exit_code = 0 WHERE id = ? AND status = 'running' AND exit_code IS NULL",
                           [.text(id)]) == 1
        }
    }

    /// The versions a job's checkpoints became (ready ones), in the order they were made.
    public func versionsMade(byJob id: JobID) throws(StoreError) -> [Version] {
        try database.read {
            try $0.query("SELECT \(Catalog.versionColumns) FROM versions WHERE job_id = ? AND status = 'ready' ORDER BY id",
                         [.text(id)], Catalog.version)
        }
    }
}
