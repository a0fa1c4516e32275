import Foundation
import ModelStore

/// A new copy onto a failed version or dataset writes it again, under the same name and key:
/// the restart and the new upload's claim are one transaction, so of two racing copies one wins.
extension Registry {
    public func restartFailedVersion(id: VersionID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        let token = UUID().uuidString
        let restarted = try catalog.transaction { tx in
            guard try catalog.restartFailedUpload(tx, versionID: id) else { return false }
            try catalog.claimUpload(tx, versionID: id, token: token, writer: writer, node: node)
            return true
        }
        guard restarted, let v = try catalog.version(id: id), let m = try catalog.model(id: v.modelID) else {
            throw StoreError(.alreadyExists, "the version is no longer failed: versions never change once written")
        }
        return ItemUpload(registry: self, item: .version(m, v), token: token, resume: nil, source: nil)
    }

    public func restartFailedDataset(id: DatasetID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        let token = UUID().uuidString
        let restarted = try catalog.transaction { tx in
            guard try catalog.restartFailedUpload(tx, datasetID: id) else { return false }
            try catalog.claimUpload(tx, datasetID: id, token: token, writer: writer, node: node)
            return true
        }
        guard restarted, let d = try catalog.dataset(id: id) else {
            throw StoreError(.alreadyExists, "the dataset is no longer failed: datasets never change once written")
        }
        return ItemUpload(registry: self, item: .dataset(d), token: token, resume: nil, source: nil)
    }
}
