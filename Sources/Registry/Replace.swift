import Foundation
import ModelStore

/// A new copy onto a failed version or dataset writes it again, under the same name and key:
/// the restart and the new upload's claim are one transaction, so of two racing copies one wins.
extension Registry {
    func restartFailedVersion(_ id: VersionID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        let token = UUID().uuidString
        let (m, v) = try catalog.transaction { tx in
            guard try catalog.restartFailedUpload(tx, versionID: id) else { throw Registry.noLongerFailed("version") }
            try catalog.claimUpload(tx, versionID: id, token: token, writer: writer, node: node)
            return try Registry.version(tx, id)
        }
        return ItemUpload(registry: self, item: .version(m, v), token: token, resume: nil, source: nil)
    }

    func restartFailedDataset(_ id: DatasetID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        let token = UUID().uuidString
        let d = try catalog.transaction { tx in
            guard try catalog.restartFailedUpload(tx, datasetID: id) else { throw Registry.noLongerFailed("dataset") }
            try catalog.claimUpload(tx, datasetID: id, token: token, writer: writer, node: node)
            return try Registry.dataset(tx, id)
        }
        return ItemUpload(registry: self, item: .dataset(d), token: token, resume: nil, source: nil)
    }

    private static func noLongerFailed(_ what: String) -> StoreError {
        StoreError(.alreadyExists, "the \(what) is no longer failed: \(what)s never change once written")
    }
}
