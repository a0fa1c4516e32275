import ModelStore
import UploadPath

extension Registry {
    /// What object storage holds of a version's interrupted upload: the bytes of its whole parts
    /// in a row (where a writer that cannot send them again, a client over HTTP, goes on from),
    /// and the size the upload was begun for (nil before its first part: nothing recorded yet).
    public func storedPrefix(of v: Version) throws(StoreError) -> (received: Int64, size: Int64?) {
        guard v.status == .uploading, let record = try catalog.upload(versionID: v.id) else { return (0, nil) }
        let parts: [UploadedPart]
        do { parts = try objects.listParts(record.objectKey, uploadID: record.uploadID) } catch {
            if case .notFound = error { return (0, record.sourceSize) }
            throw error.storeError
        }
        let point = ResumePoint(uploadID: record.uploadID, sizing: PartSizing(base: Int(record.partSize)), parts: parts)
        return (point.wholeParts.reduce(0) { $0 + $1.size }, record.sourceSize)
    }
}
