import Catalog
import Foundation
import ModelStore

/// An upload that failed while the catalog was away (stalled, down, cut off): its row stays
/// `uploading` until this is recorded. The process that wrote it records it when the catalog
/// answers again (its node's lease renewals try every third of the lease); if the process dies
/// first, its node's next mount or, once the node's lease runs out, any other node fails it.
struct DeferredFailure: Sendable {
    var item: UploadItem
    var token: String
    var reason: String
    var size: Int64
    var uploadStillOpen: Bool
}

extension Registry {
    func deferFailure(_ item: UploadItem, token: String, reason: String, size: Int64, uploadStillOpen: Bool) {
        let key: String
        switch item {
        case .version(_, let v): key = "version \(v.id)"
        case .dataset(let d): key = "dataset \(d.id)"
        }
        deferredFailures.withLock {
            $0[key] = DeferredFailure(item: item, token: token, reason: reason, size: size,
                                      uploadStillOpen: uploadStillOpen)
        }
    }

    /// Records the failures the catalog could not take when they happened; returns how many are
    /// still waiting (the catalog is still away).
    @discardableResult
    public func recordDeferredFailures() -> Int {
        for (key, f) in deferredFailures.withLock({ $0 }) {
            do throws(StoreError) {
                switch f.item {
                case .version(_, let v):
                    try catalog.markVersionFailed(id: v.id, error: f.reason, size: f.size, uploadStillOpen: f.uploadStillOpen,
                                                  token: f.token)
                    publishVersionEntry(v.id)
                case .dataset(let d):
                    try catalog.markDatasetFailed(id: d.id, error: f.reason, token: f.token)
                }
                _ = deferredFailures.withLock { $0.removeValue(forKey: key) }
                logger.notice("\(f.item.displayName): failure recorded now that the catalog answers: \(f.reason)")
            } catch {
                continue
            }
        }
        return deferredFailures.withLock { $0.count }
    }
}
