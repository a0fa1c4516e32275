import Foundation
import Logging
import ModelStore
import Catalog
import UploadPath

/// The store's operations with their rules: the catalog and the object store kept consistent.
/// Shared by the CLI and the mount; knows nothing of either.
public final class Registry: Sendable {
    public let catalog: Catalog
    public let objects: any ObjectStore
    let logger: Logger
    /// Parts uploaded in parallel by each upload.
    public let uploadConcurrency: Int
    /// Orders manifest writes per model (and for the datasets manifest) within this process.
    let manifestLocks = KeyedLocks()

    public init(catalog: Catalog, objects: any ObjectStore, uploadConcurrency: Int = 4,
                logger: Logger = Logger(label: "modelfs.registry")) {
        self.catalog = catalog
        self.objects = objects
        self.uploadConcurrency = uploadConcurrency
        self.logger = logger
    }

    // MARK: Models

    public func model(_ name: String) throws(StoreError) -> Model {
        guard let m = try catalog.model(named: name) else { throw .notFound("no model named \(Names.printable(name))") }
        return m
    }

    @discardableResult
    public func createModel(_ name: String, type: ModelType = .general, note: String = "") throws(StoreError) -> Model {
        try Names.validate(name, what: "model name")
        let m = try catalog.createModel(name: name, type: type, note: note)
        publishManifest(m.id)
        return m
    }

    public func setModel(_ name: String, type: ModelType? = nil, note: String? = nil) throws(StoreError) {
        let m = try model(name)
        try catalog.updateModel(id: m.id, type: type, note: note)
        publishManifest(m.id)
    }

    /// Renames a model: metadata only, its versions keep their object keys.
    /// Jobs name their inputs: renaming what a queued or running job uses is refused.
    func checkNoActiveJob(model: String, version: String? = nil, dataset: String? = nil) throws(StoreError) {
        let active = try catalog.jobs().filter(\.status.isActive)
        if let job = active.first(where: { j in
            (dataset != nil && j.dataset == dataset) || (dataset == nil && j.model == model && (version == nil || j.version == version))
        }) {
            throw StoreError(.busy, "job \(job.id) uses it and is \(job.status.rawValue)")
        }
    }

    public func renameModel(_ from: String, to: String) throws(StoreError) {
        try Names.validate(to, what: "model name")
        let m = try model(from)
        try checkNoActiveJob(model: m.name)
        if from == to { return }
        try catalog.updateModel(id: m.id, name: to)
        publishManifest(m.id)
        do { try objects.delete(Rules.manifestKey(model: from)) } catch {
            logger.warning("could not delete the old manifest of \(from): \(error)")
        }
    }

    /// Deletes a model with all its versions: bytes first, then rows, so a failure halfway leaves
    /// only versions whose bytes still exist.
    public func deleteModel(_ name: String) throws(StoreError) {
        let m = try model(name)
        if let job = try catalog.activeJobs(model: m.name).first {
            throw StoreError(.busy, "model \(m.name) is used by job \(job.id), which is \(job.status.rawValue)")
        }
        for v in try catalog.versions(modelID: m.id) {
            try removeBytes(of: v)
            try catalog.deleteVersion(id: v.id)
        }
        try manifestLocks.withLock("model \(m.id)") { () throws(StoreError) in
            do throws(ObjectStoreError) { try objects.delete(Rules.manifestKey(model: m.name)) } catch { throw error.storeError }
            try catalog.deleteModel(id: m.id)
        }
    }

    // MARK: Versions

    public func versions(of modelName: String) throws(StoreError) -> [Version] {
        try catalog.versions(modelID: try model(modelName).id)
    }

    public func version(_ modelName: String, _ versionName: String) throws(StoreError) -> (Model, Version) {
        let m = try model(modelName)
        guard let v = try catalog.version(modelID: m.id, name: versionName) else {
            throw .notFound("model \(Names.printable(modelName)) has no version \(Names.printable(versionName))")
        }
        return (m, v)
    }

    public func nextVersionName(of modelName: String) throws(StoreError) -> String {
        Rules.nextVersion(after: try versions(of: modelName).map(\.name))
    }

    /// Deletes a version's bytes and row; refused for the last ready version of its model.
    public func deleteVersion(_ modelName: String, _ versionName: String) throws(StoreError) {
        let (m, v) = try version(modelName, versionName)
        if v.status == .uploading {
            throw StoreError(.busy, "\(m.name)/\(v.fileName) is still uploading")
        }
        if let job = try catalog.activeJobs(model: m.name, version: v.name).first {
            throw StoreError(.busy, "\(m.name)/\(v.fileName) is used by job \(job.id), which is \(job.status.rawValue)")
        }
        try Rules.checkDeletable(version: v, siblings: try catalog.versions(modelID: m.id), modelName: m.name)
        try removeBytes(of: v)
        try catalog.deleteVersion(id: v.id)
        publishManifest(m.id)
    }

    private func removeBytes(of v: Version) throws(StoreError) {
        do {
            if let upload = try catalog.upload(versionID: v.id) {
                try objects.abortMultipartUpload(upload.objectKey, uploadID: upload.uploadID)
            }
            try objects.delete(v.objectKey)
        } catch let e as ObjectStoreError {
            throw e.storeError
        } catch {
            throw error as? StoreError ?? .io("\(error)")
        }
    }

    /// Renames a version within its model: metadata only.
    public func renameVersion(_ modelName: String, _ from: String, to: String) throws(StoreError) {
        try Names.validate(to, what: "version name")
        let (m, v) = try version(modelName, from)
        if from == to { return }
        try checkNoActiveJob(model: m.name, version: v.name)
        try catalog.updateVersion(id: v.id, name: to)
        publishManifest(m.id)
    }

    public func setVersionNote(_ modelName: String, _ versionName: String, note: String) throws(StoreError) {
        let (m, v) = try version(modelName, versionName)
        try catalog.updateVersion(id: v.id, note: note)
        publishManifest(m.id)
    }

    // MARK: Uploads

    /// Starts a new version from a file name such as `v2.1.tar.gz`; the model must exist.
    public func beginVersion(model modelName: String, fileName: String, note: String = "", lineage: Lineage = Lineage(),
                             source: (path: String, size: Int64)? = nil) throws(StoreError) -> ItemUpload {
        let (name, format) = try Formats.splitVersion(fileName)
        let m = try model(modelName)
        let key = try freshKey(Rules.versionKey(model: m.name, fileName: fileName), name: "\(m.name)/\(name)", format: format)
        let v = try catalog.insertVersion(modelID: m.id, name: name, format: format, objectKey: key, note: note, lineage: lineage)
        try catalog.setWriter(versionID: v.id, Writer.current)
        // The manifest follows when the upload ends (ready or failed): an uploading version means
        // nothing to another node or to recovery, and each rewrite costs a PUT of the whole manifest.
        return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: source)
    }

    /// Continues an interrupted upload of a version from the parts the bucket already holds, or
    /// starts a failed one again. The source must be the same file (same size).
    public func resumeVersion(model modelName: String, version versionName: String,
                              source: (path: String, size: Int64)) throws(StoreError) -> ItemUpload {
        let (m, v) = try version(modelName, versionName)
        switch v.status {
        case .ready:
            throw .exists("\(m.name)/\(v.fileName) is already complete")
        case .failed:
            try retryAbandonedUploads()
            try catalog.markVersionUploading(id: v.id)
            try catalog.setWriter(versionID: v.id, Writer.current)
            return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: source)
        case .uploading:
            // This process writes it from now on (the one that began it is gone, or its upload is
            // refused below and this one exits, gone too).
            try catalog.setWriter(versionID: v.id, Writer.current)
            guard let record = try catalog.upload(versionID: v.id) else {
                // Interrupted before its first part: nothing to keep.
                return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: source)
            }
            if let size = record.sourceSize, size != source.size {
                throw .invalid("\(source.path) is \(source.size) bytes but the interrupted upload was of \(size) bytes; import it as a new version")
            }
            let parts: [UploadedPart]
            do { parts = try objects.listParts(record.objectKey, uploadID: record.uploadID) } catch {
                if case .notFound = error {
                    try catalog.deleteUpload(id: record.id)
                    return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: source)
                }
                throw error.storeError
            }
            let point = ResumePoint(uploadID: record.uploadID, sizing: PartSizing(base: Int(record.partSize)), parts: parts)
            return ItemUpload(registry: self, item: .version(m, v), resume: (point, record.id), source: source)
        }
    }

    // MARK: Datasets

    public func dataset(_ name: String) throws(StoreError) -> Dataset {
        guard let d = try catalog.dataset(named: name) else { throw .notFound("no dataset named \(Names.printable(name))") }
        return d
    }

    /// Starts a new dataset from a file name such as `finance-qa.jsonl`.
    public func beginDataset(fileName: String, note: String = "") throws(StoreError) -> ItemUpload {
        let (name, format) = try Formats.splitDataset(fileName)
        let key = try freshKey(Rules.datasetKey(fileName: fileName), name: ".datasets/" + name, format: format)
        let d = try catalog.insertDataset(name: name, format: format, objectKey: key, note: note)
        try catalog.setWriter(datasetID: d.id, Writer.current)
        return ItemUpload(registry: self, item: .dataset(d), resume: nil, source: nil)
    }

    public func deleteDataset(_ name: String) throws(StoreError) {
        let d = try dataset(name)
        if let job = try catalog.jobs().first(where: { $0.status.isActive && $0.dataset == d.name }) {
            throw StoreError(.busy, "dataset \(d.fileName) is used by job \(job.id), which is \(job.status.rawValue)")
        }
        if d.status == .uploading { throw StoreError(.busy, "datasets/\(d.fileName) is still uploading") }
        do { try objects.delete(d.objectKey) } catch { throw error.storeError }
        try catalog.deleteDataset(id: d.id)
        publishDatasetsManifest()
    }

    public func renameDataset(_ from: String, to: String) throws(StoreError) {
        try Names.validate(to, what: "dataset name")
        let d = try dataset(from)
        if from == to { return }
        try checkNoActiveJob(model: "", dataset: d.name)
        try catalog.renameDataset(id: d.id, to: to)
        publishDatasetsManifest()
    }

    /// The uploading version of `model` that was interrupted while importing `path`, if any.
    public func interruptedVersion(model modelName: String, sourcePath: String) throws(StoreError) -> Version? {
        let m = try model(modelName)
        for v in try catalog.versions(modelID: m.id) where v.status == .uploading {
            if let record = try catalog.upload(versionID: v.id), record.sourcePath == sourcePath { return v }
        }
        return nil
    }

    /// `base` unless a renamed version or dataset already owns it, or an object is already
    /// there (put by anything else); then a unique variant. A new version never overwrites bytes.
    /// When object storage cannot say (down), a variant too: the upload will tell.
    func freshKey(_ base: String, name: String, format: String) throws(StoreError) -> String {
        let free = try isFree(base)
        if free == true { return base }
        while true {
            let candidate = name + "~" + String(UInt32.random(in: 0...UInt32.max), radix: 16) + "." + format
            // Object storage that could not answer for `base` is not asked again (each try waits
            // out --s3-timeout): a random variant no row owns is taken.
            if free == nil ? try !catalog.objectKeyInUse(candidate) : try isFree(candidate) != false { return candidate }
        }
    }

    /// Whether nothing owns `key` and no object is there; nil when object storage cannot say.
    private func isFree(_ key: String) throws(StoreError) -> Bool? {
        if try catalog.objectKeyInUse(key) { return false }
        do { return try objects.head(key) == nil } catch {
            logger.warning("could not check \(key) in object storage: \(error)")
            return nil
        }
    }

    // MARK: Manifests and housekeeping

    public func manifest(of modelName: String) throws(StoreError) -> Manifest {
        let m = try model(modelName)
        return Manifest(model: m, versions: try catalog.versions(modelID: m.id))
    }

    /// Aborts multipart uploads that failed to abort earlier (object storage was down).
    /// Returns how many it aborted.
    @discardableResult
    public func retryAbandonedUploads() throws(StoreError) -> Int {
        var aborted = 0
        for record in try catalog.abandonedUploads() {
            do {
                try objects.abortMultipartUpload(record.objectKey, uploadID: record.uploadID)
                try catalog.deleteUpload(id: record.id)
                aborted += 1
            } catch let e as ObjectStoreError {
                throw e.storeError
            } catch {
                throw error as? StoreError ?? .io("\(error)")
            }
        }
        return aborted
    }

    /// Catches up on work object storage refused earlier: aborts and manifests.
    public func retryPending() throws(StoreError) {
        try retryAbandonedUploads()
        for m in try catalog.dirtyManifestModels() { publishManifest(m.id) }
        publishDatasetsManifestIfBehind()
    }

    public func stats() throws(StoreError) -> CatalogStats { try catalog.stats() }
}
