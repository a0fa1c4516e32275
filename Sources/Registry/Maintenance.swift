import Catalog
import Foundation
import ModelStore

/// Operator tools over the store: recover from interruptions, verify bytes, rebuild the catalog.
extension Registry {
    /// Uploads whose writer is gone: versions and datasets being written by a process that
    /// stopped (a killed mount) become `failed` and their multipart uploads are aborted. Uploads
    /// whose writer still runs on this host (a `modelfs import` beside the mount) are left alone,
    /// and so are those of a writer on another host, which nothing here can tell — unless the
    /// catalog is shared: then another node's writer is gone when its node's lease ran out. Uploads by
    /// `modelfs import` stay `uploading` even when it is gone, resumable with `--resume`.
    /// Rows from before writers were recorded fall back to age: after `staleAfter` seconds, those
    /// with no multipart upload yet. Returns how many were failed.
    @discardableResult
    public func failInterruptedUploads(staleAfter: TimeInterval = 600) throws(StoreError) -> Int {
        var failed = 0
        let cutoff = Date().addingTimeInterval(-staleAfter)
        let reason = "interrupted: the process writing it stopped before the upload completed"
        let uploading = try catalog.versions(status: .uploading)
        let datasets = try catalog.datasets().filter { $0.status == .uploading }
        if uploading.isEmpty && datasets.isEmpty { return 0 }
        // Writers before leases: a writer is recorded together with its node's lease renewal,
        // so a lease read after the writer is at least that fresh.
        var versionWriters: [String?] = []
        for v in uploading { versionWriters.append(try catalog.writer(versionID: v.id)) }
        var datasetWriters: [String?] = []
        for d in datasets { datasetWriters.append(try catalog.writer(datasetID: d.id)) }
        let leases = Dictionary(try catalog.nodes().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for (v, writer) in zip(uploading, versionWriters) {
            let record = try catalog.upload(versionID: v.id)
            if let writer {
                if liveness(writer, leases) != .gone { continue }
            } else if record == nil && v.modified > cutoff {
                continue  // maybe a live import's first part
            }
            if let record, record.sourcePath != nil { continue }  // an import: resumable
            let stillOpen = !abort(record)
            let model = try catalog.model(id: v.modelID)?.name
            let line = Registry.failure("version.fail", model: model, target: v.fileName, owner: v.owner,
                                        reason: reason)
            try catalog.markVersionFailed(id: v.id, error: reason, uploadStillOpen: stillOpen, audit: line)
            publishVersionEntry(v.id)
            failed += 1
        }
        for (d, writer) in zip(datasets, datasetWriters) {
            if let writer {
                if liveness(writer, leases) != .gone { continue }
            } else if d.modified > cutoff {
                continue
            }
            _ = abort(try catalog.upload(datasetID: d.id))
            let line = Registry.failure("dataset.fail", model: nil, target: d.fileName, owner: d.owner, reason: reason)
            try catalog.markDatasetFailed(id: d.id, error: reason, audit: line)
            failed += 1
        }
        if failed > 0 { publishDatasetsManifestIfBehind() }
        return failed
    }

    /// Whether the writer of an upload runs. `<host> <pid> <start> <node>`: a writer of another
    /// node lives as long as its node's lease; one of this node (this process, a killed mount
    /// before a restart, an import beside it) is looked up among this host's processes.
    func liveness(_ writer: String, _ leases: [String: NodeLease]) -> Writer.Liveness {
        let fields = writer.split(separator: " ").map(String.init)
        if fields.count == 4, fields[3] != node {
            guard let lease = leases[fields[3]] else { return .gone }
            return lease.expired ? .gone : .alive
        }
        return Writer.liveness(fields.prefix(3).joined(separator: " "))
    }

    /// Aborts an upload's multipart upload; false when object storage refused.
    private func abort(_ record: UploadRecord?) -> Bool {
        guard let record else { return true }
        do { try objects.abortMultipartUpload(record.objectKey, uploadID: record.uploadID) } catch { return false }
        return true
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
                out.append(verifyObject(name: name, key: v.objectKey, size: v.size, sha256: v.sha256))
            }
        }
        // Datasets too, when no model is named.
        if modelName == nil {
            for d in try catalog.datasets() where d.status == .ready {
                let name = "datasets/" + d.fileName
                progress(name)
                out.append(verifyObject(name: name, key: d.objectKey, size: d.size, sha256: d.sha256))
            }
        }
        return out
    }

    private func verifyObject(name: String, key: String, size: Int64, sha256: String?) -> Verification {
        let hasher = SHA256Hasher()
        var offset: Int64 = 0
        var failure: String?
        while offset < size {
            do {
                let bytes = try objects.get(key, range: offset..<min(offset + (8 << 20), size))
                if bytes.isEmpty { break }
                hasher.update(bytes)
                offset += Int64(bytes.count)
            } catch {
                failure = error.description
                break
            }
        }
        let digest = Digest.hex(hasher.finalize())
        if let failure { return Verification(name: name, ok: false, detail: failure) }
        if offset != size { return Verification(name: name, ok: false, detail: "object has \(offset) bytes, catalog says \(size)") }
        if digest != sha256 { return Verification(name: name, ok: false, detail: "sha256 \(digest), catalog says \(sha256 ?? "none")") }
        return Verification(name: name, ok: true, detail: "\(size) bytes, sha256 ok")
    }

    /// Rebuilds models, versions and datasets from the manifests in the bucket, into this
    /// (empty) catalog. A version or dataset the manifest calls ready whose object is missing or
    /// of another size is restored as `failed`; one the manifest calls uploading is `failed`.
    public func recoverFromManifests() throws(StoreError) -> (models: Int, versions: Int, datasets: Int, problems: [String]) {
        guard try catalog.isEmpty() else {
            throw StoreError(.invalidArgument, "recover writes into an empty catalog: use a new --data-dir (or --db)")
        }
        let listing: [ObjectInfo]
        do { listing = try objects.list(prefix: Rules.manifestPrefix) } catch { throw error.storeError }
        var models = 0, versions = 0, datasets = 0
        var problems: [String] = []
        // Each version's own entry, by model name; for a model whose manifest is of format 1,
        // entries written after it are newer than the versions it lists.
        var entries: [String: [Manifest.Entry]] = [:]
        var evaluations: [String: [VersionEntry.Evaluated]] = [:]  // by object key
        for info in listing where info.key.hasPrefix(Rules.versionEntryPrefix) && info.key.hasSuffix(".json") {
            do {
                let entry = try VersionEntry.decode(try objects.get(info.key, range: nil))
                entries[entry.model, default: []].append(entry.version)
                if let e = entry.evaluations { evaluations[entry.version.key] = e }
            } catch {
                problems.append("\(info.key): unreadable version entry (\(error))")
            }
        }
        var manifests: [Manifest] = []
        // `.catalog/.<name>.json` are the datasets and the owner, and `.catalog/.versions/` the entries, not models.
        for info in listing where info.key.hasSuffix(".json") && !info.key.hasPrefix(Rules.manifestPrefix + ".") {
            do {
                manifests.append(try Manifest.decode(try objects.get(info.key, range: nil)))
            } catch {
                problems.append("\(info.key): unreadable manifest (\(error))")
            }
        }
        for name in Set(entries.keys).subtracting(manifests.map(\.model)).sorted() {
            problems.append("\(name): version entries but no manifest; restored as a general model")
            let now = Date()
            manifests.append(Manifest(model: Model(id: ModelID(0), name: name, type: .general, note: "", created: now, modified: now)))
        }
        for manifest in manifests {
            let m = try catalog.createModel(name: manifest.model, type: manifest.type, note: manifest.note)
            if let owner = manifest.owner { try catalog.transaction { tx in try tx.setOwner(.model(m.id), owner) } }
            models += 1
            var byKey: [String: Manifest.Entry] = [:]
            for e in (manifest.versions ?? []) + (entries[manifest.model] ?? []) { byKey[e.key] = e }
            // One name per model: an entry a failed delete left behind loses to the newer version of its name.
            var byName: [String: Manifest.Entry] = [:]
            for e in byKey.values {
                if let other = byName[e.name] {
                    let (kept, dropped) = other.modified >= e.modified ? (other, e) : (e, other)
                    problems.append("\(manifest.model)/\(e.name): two entries (\(kept.key), \(dropped.key)); kept the newer")
                    byName[e.name] = kept
                } else {
                    byName[e.name] = e
                }
            }
            for e in byName.values.sorted(by: { $0.created < $1.created }) {
                let (status, error) = try recoveredStatus(e.status, e.error, key: e.key, size: e.size,
                                                          name: "\(manifest.model)/\(e.name).\(e.format)", problems: &problems)
                try catalog.restoreVersion(modelID: m.id, name: e.name, format: e.format, objectKey: e.key, size: e.size,
                                           sha256: e.sha256, status: status, error: error, note: e.note,
                                           lineage: e.lineage ?? Lineage(), created: e.created, modified: e.modified)
                if e.owner != nil || evaluations[e.key]?.isEmpty == false {
                    try catalog.transaction { tx in
                        guard let v = try tx.version(modelID: m.id, name: e.name) else { return }
                        if let owner = e.owner { try tx.setOwner(.version(v.id), owner) }
                        for x in evaluations[e.key] ?? [] {
                            try tx.setEvaluation(Evaluation(versionID: v.id, dataset: x.dataset, job: x.job, metrics: x.metrics, created: x.created))
                        }
                    }
                }
                versions += 1
            }
            for (alias, key) in (manifest.aliases ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard let e = byName.values.first(where: { $0.key == key }) else {
                    problems.append("\(manifest.model)/\(alias): points at \(key), which no version has")
                    continue
                }
                try catalog.transaction { tx in
                    guard let v = try tx.version(modelID: m.id, name: e.name) else { return }
                    try tx.setAlias(modelID: m.id, name: alias, versionID: v.id,
                                    view: manifest.aliasViews?.contains(alias) ?? false)
                }
            }
        }
        if let bytes = try optionalObject(Rules.datasetsManifestKey) {
            do {
                for e in try DatasetsManifest.decode(bytes).datasets {
                    let (status, error) = try recoveredStatus(e.status, e.error, key: e.key, size: e.size,
                                                              name: "datasets/\(e.name).\(e.format)", problems: &problems)
                    try catalog.restoreDataset(name: e.name, format: e.format, objectKey: e.key, size: e.size, records: e.records,
                                               sha256: e.sha256, status: status, error: error, note: e.note,
                                               created: e.created, modified: e.modified)
                    if let owner = e.owner {
                        try catalog.transaction { tx in
                            if let d = try tx.dataset(named: e.name) { try tx.setOwner(.dataset(d.id), owner) }
                        }
                    }
                    datasets += 1
                }
            } catch let e as StoreError {
                throw e
            } catch {
                problems.append("\(Rules.datasetsManifestKey): unreadable manifest (\(error))")
            }
        }
        return (models, versions, datasets, problems)
    }

    /// The status a recovered version or dataset gets: ready only when its object is there with
    /// the manifest's size.
    private func recoveredStatus(_ status: UploadStatus, _ error: String?, key: String, size: Int64, name: String,
                                 problems: inout [String]) throws(StoreError) -> (UploadStatus, String?) {
        switch status {
        case .ready:
            let head: ObjectInfo?
            do { head = try objects.head(key) } catch { throw error.storeError }
            guard let head else {
                problems.append("\(name): object missing at recovery")
                return (.failed, "object missing at recovery")
            }
            guard head.size == size else {
                let why = "object size \(head.size) differs from the manifest's \(size)"
                problems.append("\(name): \(why)")
                return (.failed, why)
            }
            return (.ready, error)
        case .uploading:
            return (.failed, "interrupted before recovery")
        case .failed:
            return (.failed, error)
        }
    }

    /// The object's bytes, or nil when there is none.
    func optionalObject(_ key: String) throws(StoreError) -> [UInt8]? {
        do { return try objects.get(key, range: nil) } catch {
            if case .notFound = error { return nil }
            throw error.storeError
        }
    }
}
