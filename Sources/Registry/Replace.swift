import ModelStore

/// A new copy onto a failed version or dataset writes it again, under the same name and key.
extension Registry {
    public func restartFailedVersion(id: VersionID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        guard try catalog.restartFailedUpload(versionID: id), let v = try catalog.version(id: id),
              let m = try catalog.model(id: v.modelID) else {
            throw StoreError(.alreadyExists, "the version is no longer failed: versions never change once written")
        }
        return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: nil)
    }

    public func restartFailedDataset(id: DatasetID) throws(StoreError) -> ItemUpload {
        try retryAbandonedUploads()
        guard try catalog.restartFailedUpload(datasetID: id), let d = try catalog.dataset(id: id) else {
            throw StoreError(.alreadyExists, "the dataset is no longer failed: datasets never change once written")
        }
        return ItemUpload(registry: self, item: .dataset(d), resume: nil, source: nil)
    }
}
