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
    /// This node's id in a shared catalog (its data dir's), recorded with each upload it writes;
    /// nil on a catalog of one node.
    public let node: String?
    /// Uploads that failed while the catalog could not record it, recorded when it is back
    /// (``recordDeferredFailures()``): never `uploading` for good.
    let deferredFailures = Locked<[String: DeferredFailure]>([:])

    public init(catalog: Catalog, objects: any ObjectStore, uploadConcurrency: Int = 4, node: String? = nil,
                logger: Logger = Logger(label: "modelfs.registry")) {
        self.catalog = catalog
        self.objects = objects
        self.uploadConcurrency = uploadConcurrency
        self.node = node
        self.logger = logger
    }

    /// Who writes an upload begun here: this process, and on a shared catalog this node.
    var writer: String { node.map { Writer.current + " " + $0 } ?? Writer.current }

    // MARK: Models

    public func model(_ name: String) throws(StoreError) -> Model {
        guard let m = try catalog.model(named: name) else { throw Registry.noModel(name) }
        return m
    }

    static func noModel(_ name: String) -> StoreError { .notFound("no model named \(Names.printable(name))") }
    static func noVersion(_ model: String, _ version: String) -> StoreError {
        .notFound("model \(Names.printable(model)) has no version \(Names.printable(version))")
    }
    static func noDataset(_ name: String) -> StoreError { .notFound("no dataset named \(Names.printable(name))") }

    // The same look-ups inside a transaction (``Catalog/transaction(_:)``), where every rule is
    // checked together with the change it guards.
    public static func model(_ tx: CatalogTransaction, _ name: String) throws -> Model {
        guard let m = try tx.model(named: name) else { throw noModel(name) }
        return m
    }

    /// A version by name, or by an alias (`@production`: the version it points at now).
    public static func version(_ tx: CatalogTransaction, _ modelName: String, _ versionName: String) throws -> (Model, Version) {
        let m = try model(tx, modelName)
        if versionName.hasPrefix("@") {
            guard let a = try tx.alias(modelID: m.id, name: versionName), let v = try tx.version(id: a.versionID) else {
                throw StoreError.notFound("model \(m.name) has no alias \(versionName)")
            }
            return (m, v)
        }
        guard let v = try tx.version(modelID: m.id, name: versionName) else { throw noVersion(modelName, versionName) }
        return (m, v)
    }

    public static func dataset(_ tx: CatalogTransaction, _ name: String) throws -> Dataset {
        guard let d = try tx.dataset(named: name) else { throw noDataset(name) }
        return d
    }

    /// Jobs name their inputs: what a queued or running job uses is neither deleted nor renamed (`EBUSY`).
    static func refuseIfUsed(_ jobs: [Job], _ what: String) throws {
        if let job = jobs.first { throw StoreError(.busy, "\(what) is used by job \(job.id), which is \(job.status.rawValue)") }
    }

    @discardableResult
    public func createModel(_ name: String, type: ModelType = .general, note: String = "", owner: Ownership? = nil) throws(StoreError) -> Model {
        try Names.validate(name, what: "model name")
        let m = try catalog.transaction { tx in
            var m = try tx.insertModel(name: name, type: type, note: note)
            let o = owner ?? Ownership(uid: Actor.now.uid, gid: Actor.now.gid, mode: Ownership.defaultModelMode)
            try tx.setOwner(.model(m.id), o)
            m.owner = o
            try Registry.audit(tx, "model.create", model: m.name, "type \(type.rawValue), mode \(String(o.mode, radix: 8))")
            return m
        }
        publishManifest(m.id)
        return m
    }

    /// Sets a model's type or note; each change that changes something is in the audit trail.
    public func setModel(_ name: String, type: ModelType? = nil, note: String? = nil) throws(StoreError) {
        _ = try setModel(try model(name).id, type: type, note: note, by: Actor.now)
    }

    /// Renames a model: metadata only, its versions keep their object keys. Refused while a job
    /// uses it (``renameModel(_:to:by:)``).
    public func renameModel(_ from: String, to: String) throws(StoreError) {
        _ = try renameModel(try model(from).id, to: to, by: Actor.now)
    }

    /// Deletes a model with all its versions (``deleteModel(_:by:)``). Returns what the caches forget.
    @discardableResult
    public func deleteModel(_ name: String) throws(StoreError) -> Purge {
        try deleteModel(try model(name).id, by: Actor.now).purge
    }

    // MARK: Versions

    public func versions(of modelName: String) throws(StoreError) -> [Version] {
        try catalog.versions(modelID: try model(modelName).id)
    }

    public func version(_ modelName: String, _ versionName: String) throws(StoreError) -> (Model, Version) {
        if versionName.hasPrefix("@") { return try catalog.transaction { tx in try Registry.version(tx, modelName, versionName) } }
        let m = try model(modelName)
        guard let v = try catalog.version(modelID: m.id, name: versionName) else { throw Registry.noVersion(modelName, versionName) }
        return (m, v)
    }

    public func nextVersionName(of modelName: String) throws(StoreError) -> String {
        Rules.nextVersion(after: try versions(of: modelName).map(\.name))
    }

    /// Deletes a version's row and bytes (``deleteVersion(_:by:)``); `versionName` may be an alias.
    /// Returns what the caches forget.
    @discardableResult
    public func deleteVersion(_ modelName: String, _ versionName: String) throws(StoreError) -> Purge {
        try deleteVersion(try version(modelName, versionName).1.id, by: Actor.now).purge
    }

    /// Removes from object storage what a committed delete left: the multipart uploads still
    /// open, then the objects. What object storage refuses now stays recorded (an abandoned
    /// upload, a pending delete) for ``retryPending()``: gc, the next import, the next mount.
    func remove(_ removal: Removal) {
        for upload in removal.uploads {
            do {
                try objects.abortMultipartUpload(upload.objectKey, uploadID: upload.uploadID)
                try catalog.deleteUpload(id: upload.id)
            } catch {
                logger.warning("multipart upload of \(upload.objectKey) not aborted yet (gc will): \(error)")
            }
        }
        for key in removal.keys {
            do {
                try objects.delete(key)
                try catalog.objectDeleted(key)
            } catch {
                logger.warning("\(key) not deleted yet (gc will): \(error)")
            }
        }
    }

    /// Renames a version within its model: metadata only (``renameVersion(_:to:by:)``).
    public func renameVersion(_ modelName: String, _ from: String, to: String) throws(StoreError) {
        _ = try renameVersion(try version(modelName, from).1.id, to: to, by: Actor.now)
    }

    public func setVersionNote(_ modelName: String, _ versionName: String, note: String) throws(StoreError) {
        _ = try setVersionNote(try version(modelName, versionName).1.id, note: note, by: Actor.now)
    }

    // MARK: Uploads

    /// Starts a new version from a file name such as `v2.1.tar.gz`; the model must exist.
    public func beginVersion(model modelName: String, fileName: String, note: String = "", lineage: Lineage = Lineage(),
                             source: (path: String, size: Int64)? = nil, owner: Ownership? = nil) throws(StoreError) -> ItemUpload {
        let (name, format) = try Formats.splitVersion(fileName)
        // A key no row owns and no object occupies (asked of object storage outside the
        // transaction); then the model, the name's uniqueness (any extension) and the key,
        // checked with the insert.
        let preferred = try freshObjectKey(Rules.versionKey(model: modelName, fileName: fileName), name: "\(modelName)/\(name)", format: format)
        let (m, v) = try catalog.transaction { tx in
            let m = try Registry.model(tx, modelName)
            let key = try Registry.freshKey(tx, preferred, name: "\(m.name)/\(name)", format: format)
            var v = try tx.insertVersion(modelID: m.id, name: name, format: format, objectKey: key, note: note, lineage: lineage)
            let o = owner ?? Ownership(uid: Actor.now.uid, gid: Actor.now.gid, mode: Ownership.defaultFileMode)
            try tx.setOwner(.version(v.id), o)
            v.owner = o
            try Registry.audit(tx, "version.create", model: m.name, target: v.fileName, lineage.job.map { "by job " + $0 } ?? "")
            return (m, v)
        }
        try catalog.setWriter(versionID: v.id, writer, node: node)
        // The version's entry in the bucket follows when the upload ends (ready or failed): an
        // uploading version means nothing to recovery.
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
            try catalog.setWriter(versionID: v.id, writer, node: node)
            return ItemUpload(registry: self, item: .version(m, v), resume: nil, source: source)
        case .uploading:
            // This process writes it from now on (the one that began it is gone, or its upload is
            // refused below and this one exits, gone too).
            try catalog.setWriter(versionID: v.id, writer, node: node)
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
        guard let d = try catalog.dataset(named: name) else { throw Registry.noDataset(name) }
        return d
    }

    /// Starts a new dataset from a file name such as `finance-qa.jsonl`.
    public func beginDataset(fileName: String, note: String = "", owner: Ownership? = nil) throws(StoreError) -> ItemUpload {
        let (name, format) = try Formats.splitDataset(fileName)
        let preferred = try freshObjectKey(Rules.datasetKey(fileName: fileName), name: ".datasets/" + name, format: format)
        let d = try catalog.transaction { tx in
            let key = try Registry.freshKey(tx, preferred, name: ".datasets/" + name, format: format)
            var d = try tx.insertDataset(name: name, format: format, objectKey: key, note: note)
            let o = owner ?? Ownership(uid: Actor.now.uid, gid: Actor.now.gid, mode: Ownership.defaultFileMode)
            try tx.setOwner(.dataset(d.id), o)
            d.owner = o
            try Registry.audit(tx, "dataset.create", model: nil, target: d.fileName)
            return d
        }
        try catalog.setWriter(datasetID: d.id, writer, node: node)
        return ItemUpload(registry: self, item: .dataset(d), resume: nil, source: nil)
    }

    /// Deletes a dataset (``deleteDataset(_:by:)``). Returns what the caches forget.
    @discardableResult
    public func deleteDataset(_ name: String) throws(StoreError) -> Purge {
        try deleteDataset(try dataset(name).id, by: Actor.now).purge
    }

    public func renameDataset(_ from: String, to: String) throws(StoreError) {
        _ = try renameDataset(try dataset(from).id, to: to, by: Actor.now)
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
    func freshObjectKey(_ base: String, name: String, format: String) throws(StoreError) -> String {
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

    /// `base` unless a renamed version or dataset (or one whose object is still being deleted)
    /// owns it; then a unique variant.
    static func freshKey(_ tx: CatalogTransaction, _ base: String, name: String, format: String) throws -> String {
        if try !tx.objectKeyInUse(base) { return base }
        while true {
            let candidate = name + "~" + String(UInt32.random(in: 0...UInt32.max), radix: 16) + "." + format
            if try !tx.objectKeyInUse(candidate) { return candidate }
        }
    }

    // MARK: Manifests and housekeeping

    /// The model's manifest and its versions' entries as they would be written now.
    public func manifest(of modelName: String) throws(StoreError) -> (manifest: Manifest, versions: [VersionEntry]) {
        let m = try model(modelName)
        return (Manifest(model: m), try catalog.versions(modelID: m.id).map { VersionEntry(model: m.name, version: $0, generation: 0) })
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

    /// Deletes the objects of deleted rows that object storage refused to delete earlier (or a
    /// crash interrupted), once they are `olderThan` seconds old: younger ones may still be being
    /// deleted by the process that deleted their rows, and a key freed early could be given to a
    /// new version whose object that process would then delete. Returns how many it deleted.
    @discardableResult
    public func retryPendingDeletes(olderThan age: TimeInterval = 600) throws(StoreError) -> Int {
        var deleted = 0
        for key in try catalog.pendingDeletes(before: Date().addingTimeInterval(-age)) {
            do { try objects.delete(key) } catch { throw error.storeError }
            try catalog.objectDeleted(key)
            deleted += 1
        }
        return deleted
    }

    /// Catches up on work object storage refused earlier: aborts, deletes and manifests.
    public func retryPending() throws(StoreError) {
        try retryAbandonedUploads()
        try retryPendingDeletes()
        for m in try catalog.dirtyManifestModels() { publishManifest(m.id) }
        publishDatasetsManifestIfBehind()
    }

    public func stats() throws(StoreError) -> CatalogStats { try catalog.stats() }
}
