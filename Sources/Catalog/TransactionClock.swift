import Dispatch
import Metrics
import ModelStore

/// `modelfs_catalog_transaction_seconds`: each write transaction, from asking for the write lock
/// (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's advisory lock, shared by every node) to its commit
/// or rollback: what every change through the store waits for.
struct TransactionClock: Sendable {
    private let seconds = Metrics.Timer(label: "modelfs_catalog_transaction_seconds")

    func timed<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- start)) }
        return try body()
    }
}
