import Catalog
import Foundation
import ModelStore

/// Operator tools over the store: recover from interruptions, verify bytes, rebuild the catalog.
extension Registry {
    /// Uploads a previous process left half-done: versions and datasets being written through a
    /// mount that stopped (their multipart upload is aborted, they become `failed`), and, after
    /// `staleAfter` seconds, uploads with no multipart upload yet. Uploads by `modelfs import`
    /// stay `uploading`, resumable with `--resume`. Returns how many were failed.
    @discardableResult
    public func failInterruptedUploads(staleAfter: TimeInterval = 600) throws(StoreError) -> Int {
        var failed = 0
        let cutoff = Date().addingTimeInterval(-staleAfter)
        for v in try catalog.versions(status: .uploading) {
            let record = try catalog.upload(versionID: v.id)
            if let record, record.sourcePath != nil { continue }  // an import: resumable
            if record == nil && v.modified > cutoff { continue }  // maybe a live import's first part
            var stillOpen = false
            if let record {
                do { try objects.abortMultipartUpload(record.objectKey, uploadID: record.uploadID) } catch { stillOpen = true }
            }
            try catalog.markVersionFailed(id: v.id, error: "interrupted: the process writing it stopped before the upload completed",
                                          uploadStillOpen: stillOpen)
            publishManifest(v.modelID)
            failed += 1
        }
        for d in try catalog.datasets() where d.status == .uploading && d.modified <= cutoff {
            try catalog.markDatasetFailed(id: d.id, error: "interrupted: the process writing it stopped before the upload completed")
            failed += 1
        }
        return failed
    }

    /// One verified object.
    public struct Verification: Sendable {
        public var name: String
        public var ok: Bool
        public var detail: String
    }

    /// Re-reads ready versions from object storage and compares their sha256 and size with the catalog.
    public func verify(model modelName: String? = nil, version versionName: String? = nil,
                       progress: (String) -> Void = { _ in }) throws(StoreError) -> [Verification] {
        let models: [Model]
        if let modelName { models = [try model(modelName)] } else { models = try catalog.models() }
        var out: [Verification] = []
        for m in models {
            for v in try catalog.versions(modelID: m.id) where v.status == .ready && (versionName == nil || v.name == versionName) {
                let name = m.name + "/" + v.fileName
                progress(name)
                let hasher = SHA256Hasher()
                var offset: Int64 = 0
                var failure: String?
                while offset < v.size {
                    do {
                        let bytes = try objects.get(v.objectKey, range: offset..<min(offset + (8 << 20), v.size))
                        if bytes.isEmpty { break }
                        hasher.update(bytes)
                        offset += Int64(bytes.count)
                    } catch {
                        failure = error.description
                        break
                    }
                }
                let digest = Digest.hex(hasher.finalize())
                if let failure {
                    out.append(Verification(name: name, ok: false, detail: failure))
                } else if offset != v.size {
                    out.append(Verification(name: name, ok: false, detail: "object has \(offset) bytes, catalog says \(v.size)"))
                } else if digest != v.sha256 {
                    out.append(Verification(name: name, ok: false, detail: "sha256 \(digest), catalog says \(v.sha256 ?? "none")"))
                } else {
                    out.append(Verification(name: name, ok: true, detail: "\(v.size) bytes, sha256 ok"))
                }
            }
        }
        return out
    }

    /// Rebuilds models and versions from the manifests in the bucket, into this (empty) catalog.
    /// A version the manifest calls ready whose object is missing or of another size is restored
    /// as `failed`. Returns (models, versions) restored.
    public func recoverFromManifests() throws(StoreError) -> (models: Int, versions: Int, problems: [String]) {
        guard try catalog.models().isEmpty else {
            throw StoreError(.invalidArgument, "recover writes into an empty catalog: use a new --data-dir (or --db)")
        }
        let manifests: [ObjectInfo]
        do { manifests = try objects.list(prefix: Rules.manifestPrefix) } catch { throw error.storeError }
        var models = 0, versions = 0
        var problems: [String] = []
        for info in manifests where info.key.hasSuffix(".json") {
            let manifest: Manifest
            do {
                manifest = try Manifest.decode(try objects.get(info.key, range: nil))
            } catch {
                problems.append("\(info.key): unreadable manifest (\(error))")
                continue
            }
            let m = try catalog.createModel(name: manifest.model, type: manifest.type, note: manifest.note)
            models += 1
            for e in manifest.versions {
                var status = e.status
                var error = e.error
                if status == .ready {
                    let head: ObjectInfo?
                    do { head = try objects.head(e.key) } catch { throw error.storeError }
                    if head?.size != e.size {
                        status = .failed
                        error = head == nil ? "object missing at recovery" : "object size \(head!.size) differs from the manifest's \(e.size)"
                        problems.append("\(manifest.model)/\(e.name).\(e.format): \(error!)")
                    }
                } else if status == .uploading {
                    status = .failed
                    error = "interrupted before recovery"
                }
                try catalog.restoreVersion(modelID: m.id, name: e.name, format: e.format, objectKey: e.key, size: e.size,
                                           sha256: e.sha256, status: status, error: error, note: e.note,
                                           lineage: e.lineage ?? Lineage(), created: e.created, modified: e.modified)
                versions += 1
            }
        }
        return (models, versions, problems)
    }
}
