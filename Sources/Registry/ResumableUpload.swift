import Foundation
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

extension Registry {
    /// Gives up a version's interrupted upload: its multipart upload is aborted and the version
    /// `failed` (then deletable as any failed version). Refused (`EBUSY`) while another process
    /// that runs still writes it (an import, a mount, another node); the caller makes sure no
    /// writer of its own process is on it.
    public func abandonUpload(of v: Version, model: String, reason: String) throws(StoreError) {
        if let other = try catalog.writer(versionID: v.id), other != writer {
            let leases = Dictionary(try catalog.nodes().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            if liveness(other, leases) == .alive {
                throw StoreError(.busy, "\(model)/\(v.fileName) is still uploading: another process writes it now")
            }
        }
        let token = UUID().uuidString
        try catalog.transaction { tx in try catalog.claimUpload(tx, versionID: v.id, token: token, writer: writer, node: node) }
        var stillOpen = false
        if let record = try catalog.upload(versionID: v.id) {
            do { try objects.abortMultipartUpload(record.objectKey, uploadID: record.uploadID) } catch { stillOpen = true }
        }
        let line = Registry.failure("version.fail", model: model, target: v.fileName, owner: v.owner, reason: reason)
        try catalog.markVersionFailed(id: v.id, error: reason, uploadStillOpen: stillOpen, token: token, audit: line)
        publishVersionEntry(v.id)
    }
}
