import Catalog
import Foundation
import ModelStore

/// The store's port (``StorePort``): every change by id, in one transaction that reads the row
/// by that id, checks its rule and changes it. The methods by name (the CLI's, the jobs') find
/// the row's id and call these, so each rule is written once.
extension Registry: StorePort {
    // MARK: Reading

    public func model(_ id: ModelID) throws(StoreError) -> Model? { try catalog.model(id: id) }
    public func model(named name: String) throws(StoreError) -> Model? { try catalog.model(named: name) }
    public func models() throws(StoreError) -> [Model] { try catalog.models() }
    public func version(_ id: VersionID) throws(StoreError) -> Version? { try catalog.version(id: id) }
    public func version(in model: ModelID, named name: String) throws(StoreError) -> Version? {
        try catalog.version(modelID: model, name: name)
    }
    public func versions(of model: ModelID) throws(StoreError) -> [Version] { try catalog.versions(modelID: model) }
    public func alias(_ id: AliasID) throws(StoreError) -> Alias? { try catalog.alias(id: id) }
    public func alias(in model: ModelID, named name: String) throws(StoreError) -> Alias? {
        try catalog.alias(modelID: model, name: name)
    }
    public func aliases(of model: ModelID) throws(StoreError) -> [Alias] { try catalog.aliases(modelID: model) }
    public func dataset(_ id: DatasetID) throws(StoreError) -> Dataset? { try catalog.dataset(id: id) }
    public func dataset(named name: String) throws(StoreError) -> Dataset? { try catalog.dataset(named: name) }
    public func datasets() throws(StoreError) -> [Dataset] { try catalog.datasets() }
    public func job(_ id: JobID) throws(StoreError) -> Job? { try catalog.job(id: id) }
    public func job(number: Int64) throws(StoreError) -> Job? { try catalog.job(number: number) }
    public func jobs() throws(StoreError) -> [Job] { try catalog.jobs() }
    public func service(_ id: ServiceID) throws(StoreError) -> Service? { try catalog.service(named: id) }
    public func evaluations(of version: VersionID) throws(StoreError) -> [Evaluation] { try catalog.evaluations(versionID: version) }

    public func archiveIndex(objectKey key: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex? {
        try catalog.archiveIndex(objectKey: key, sha256: sha256, size: size)
    }
    public func storeArchiveIndex(objectKey key: String, _ index: StoredArchiveIndex) throws(StoreError) {
        try catalog.storeArchiveIndex(objectKey: key, index)
    }
    public func tensorHeader(objectKey key: String, member: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex? {
        try catalog.tensorHeader(objectKey: key, member: member, sha256: sha256, size: size)
    }
    public func storeTensorHeader(objectKey key: String, member: String, _ header: StoredArchiveIndex) throws(StoreError) {
        try catalog.storeTensorHeader(objectKey: key, member: member, header)
    }

    public var isShared: Bool { catalog.database.isShared }
    public func watchChanges(_ handler: @escaping @Sendable (String) -> Void) { catalog.database.watchChanges(handler) }

    // MARK: Rows by id inside a transaction: gone is ENOENT

    static func model(_ tx: CatalogTransaction, _ id: ModelID) throws -> Model {
        guard let m = try tx.model(id: id) else { throw StoreError.notFound("the model is gone") }
        return m
    }

    static func version(_ tx: CatalogTransaction, _ id: VersionID) throws -> (Model, Version) {
        guard let v = try tx.version(id: id), let m = try tx.model(id: v.modelID) else { throw StoreError.notFound("the version is gone") }
        return (m, v)
    }

    static func dataset(_ tx: CatalogTransaction, _ id: DatasetID) throws -> Dataset {
        guard let d = try tx.dataset(id: id) else { throw StoreError.notFound("the dataset is gone") }
        return d
    }

    static func alias(_ tx: CatalogTransaction, _ id: AliasID) throws -> (Model, Alias) {
        guard let a = try tx.alias(id: id), let m = try tx.model(id: a.modelID) else { throw StoreError.notFound("the alias is gone") }
        return (m, a)
    }

    /// `body` on behalf of `who` (the audit trail's user).
    func acting<R>(_ who: Actor, _ body: () throws(StoreError) -> R) throws(StoreError) -> R { try Actor.acting(who, body) }

    // MARK: Models

    public func createModel(named name: String, type: ModelType, note: String, owner: Ownership, by who: Actor) throws(StoreError) -> Model {
        try acting(who) { () throws(StoreError) in try createModel(name, type: type, note: note, owner: owner) }
    }

    public func setModel(_ id: ModelID, type: ModelType?, note: String?, by who: Actor) throws(StoreError) -> Model {
        let m = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                var m = try Registry.model(tx, id)
                try tx.updateModel(id: m.id, type: type, note: note)
                if let type, type != m.type {
                    try Registry.audit(tx, "model.type", model: m.name, "\(m.type.rawValue) → \(type.rawValue)")
                }
                if let note, note != m.note { try Registry.audit(tx, "model.note", model: m.name, Registry.quoted(note)) }
                m.type = type ?? m.type
                m.note = note ?? m.note
                return m
            }
        }
        publishManifest(m.id)
        return m
    }

    public func renameModel(_ id: ModelID, to name: String, by who: Actor) throws(StoreError) -> Model {
        try Names.validate(name, what: "model name")
        let (before, after) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx -> (Model, Model) in
                let m = try Registry.model(tx, id)
                try Registry.refuseIfUsed(try tx.activeJobs(model: m.name), "model \(m.name)")
                if m.name == name { return (m, m) }
                try tx.updateModel(id: m.id, name: name)
                try Registry.audit(tx, "model.rename", model: name, "from \(m.name)")
                var renamed = m
                renamed.name = name
                return (m, renamed)
            }
        }
        guard before.name != after.name else { return after }
        publishManifest(id)
        do { try objects.delete(Rules.manifestKey(model: before.name)) } catch {
            logger.warning("could not delete the old manifest of \(before.name): \(error)")
        }
        return after
    }

    /// Order, for the bytes' sake: the rules and the rows go in one transaction, and the objects
    /// after it commits. A failure after the commit leaves objects no row owns, whose keys stay
    /// reserved (`pending_deletes`) until ``retryPending()`` or `gc` removes them; the other way
    /// round a failure would leave rows whose bytes are gone, which nothing can repair.
    public func deleteModel(_ id: ModelID, by who: Actor) throws(StoreError) -> Deleted<Model> {
        let (m, versions, removal) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let m = try Registry.model(tx, id)
                try Registry.refuseIfUsed(try tx.activeJobs(model: m.name), "model \(m.name)")
                try Registry.refuseIfServed(try tx.servicesHolding(modelID: m.id), "model \(m.name)")
                let versions = try tx.versions(modelID: m.id)
                if let uploading = versions.first(where: { $0.status == .uploading }) {
                    throw StoreError(.busy, "\(m.name)/\(uploading.fileName) is still uploading: wait for it to end (or finish it with import --resume)")
                }
                try Registry.audit(tx, "model.delete", model: m.name, "\(versions.count) versions")
                return (m, versions, try tx.deleteModel(m, versions: versions))
            }
        }
        removeVersionEntries(versions)
        remove(removal)
        let manifest = Rules.manifestKey(model: m.name)
        // Under the model's manifest lock: a publish in flight cannot put the manifest back.
        manifestLocks.withLock("model \(m.id)") {
            do { try objects.delete(manifest) } catch {
                logger.warning("could not delete the manifest of \(m.name) (gc --delete-orphans removes it): \(error)")
            }
        }
        // A model of the same name made meanwhile keeps its manifest.
        if let again = try catalog.model(named: m.name) { publishManifest(again.id) }
        return Deleted(row: m, purge: removal.purge)
    }

    // MARK: Versions

    public func renameVersion(_ id: VersionID, to name: String, by who: Actor) throws(StoreError) -> Version {
        try Names.validate(name, what: "version name")
        try Names.validateVersion(name)
        let (v, changed) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx -> (Version, Bool) in
                let (m, v) = try Registry.version(tx, id)
                if v.name == name { return (v, false) }
                try Registry.refuseIfUsed(try tx.activeJobs(model: m.name, version: v.name), "\(m.name)/\(v.fileName)")
                try tx.updateVersion(id: v.id, name: name)
                try Registry.audit(tx, "version.rename", model: m.name, target: name + (v.format.isEmpty ? "" : "." + v.format),
                                   "from \(v.fileName)")
                var renamed = v
                renamed.name = name
                return (renamed, true)
            }
        }
        if changed { publishVersionEntry(v.id) }
        return v
    }

    public func adoptScratch(_ id: VersionID, as name: String, format: String, by who: Actor) throws(StoreError) -> Version {
        try Names.validate(name, what: "version name")
        let v = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let (m, v) = try Registry.version(tx, id)
                guard v.isScratch else { throw StoreError.invalid("\(v.fileName) is not a temporary file") }
                try tx.adoptScratch(id: v.id, name: name, format: format)
                try Registry.audit(tx, "version.create", model: m.name, target: name + "." + format, "renamed from \(v.name)")
                var adopted = v
                adopted.name = name
                adopted.format = format
                return adopted
            }
        }
        publishVersionEntry(v.id)
        return v
    }

    public func setVersionNote(_ id: VersionID, note: String, by who: Actor) throws(StoreError) -> Version {
        let v = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let (m, v) = try Registry.version(tx, id)
                try tx.updateVersion(id: v.id, note: note)
                if note != v.note { try Registry.audit(tx, "version.note", model: m.name, target: v.fileName, Registry.quoted(note)) }
                var noted = v
                noted.note = note
                return noted
            }
        }
        publishVersionEntry(v.id)
        return v
    }

    /// Refused for the last ready version of its model, for a version still uploading, for one a
    /// job uses and for one an alias names. The rules and the row's delete are one transaction,
    /// so two deletes racing for a model's last two ready versions cannot both pass; the object
    /// goes after the commit (see ``deleteModel(_:by:)`` for why in that order).
    public func deleteVersion(_ id: VersionID, by who: Actor) throws(StoreError) -> Deleted<Version> {
        let (v, removal) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let (m, v) = try Registry.version(tx, id)
                let what = "\(m.name)/\(v.fileName)"
                if v.status == .uploading { throw StoreError(.busy, "\(what) is still uploading") }
                try Registry.refuseIfUsed(try tx.activeJobs(model: m.name, version: v.name), what)
                try Registry.refuseIfServed(try tx.servicesHolding(modelID: m.id, versionID: v.id), what)
                try Rules.checkDeletable(version: v, siblings: try tx.versions(modelID: m.id), modelName: m.name)
                let aliases = try tx.aliases(versionID: v.id)
                if let named = aliases.first(where: \.isNamed) {
                    throw StoreError(.busy, "\(what) is what \(named.name) points at: move or remove the alias first")
                }
                for pending in aliases { try tx.deleteAlias(id: pending.id) }
                if !v.isScratch {
                    try Registry.audit(tx, "version.delete", model: m.name, target: v.fileName, v.sha256.map { "sha256 " + $0 } ?? "")
                }
                return (v, try tx.deleteVersion(v))
            }
        }
        removeVersionEntries([v])
        remove(removal)
        return Deleted(row: v, purge: removal.purge)
    }

    // MARK: Writing files

    public func beginVersion(in model: ModelID, fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload {
        try writing(acting(who) { () throws(StoreError) in
            guard let m = try catalog.model(id: model) else { throw StoreError.notFound("the model is gone") }
            return try beginVersion(in: m, fileName: fileName, owner: owner)
        })
    }

    public func beginScratch(in model: ModelID, fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload {
        try writing(acting(who) { () throws(StoreError) in
            guard let m = try catalog.model(id: model) else { throw StoreError.notFound("the model is gone") }
            return try beginScratch(in: m, fileName: fileName, owner: owner)
        })
    }

    public func beginDataset(fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload {
        try writing(acting(who) { () throws(StoreError) in try beginDataset(fileName: fileName, owner: owner) })
    }

    public func restartFailedVersion(_ id: VersionID, by who: Actor) throws(StoreError) -> any FileUpload {
        try writing(acting(who) { () throws(StoreError) in try restartFailedVersion(id) })
    }

    public func restartFailedDataset(_ id: DatasetID, by who: Actor) throws(StoreError) -> any FileUpload {
        try writing(acting(who) { () throws(StoreError) in try restartFailedDataset(id) })
    }

    /// A file written through the port may seek back: it goes on in the writers' spool.
    private func writing(_ upload: ItemUpload) -> any FileUpload {
        upload.useSpool(writerSpool.withLock { $0 })
        return upload
    }

    // MARK: Aliases

    public func linkAlias(in model: ModelID, named name: String, to version: VersionID, view: Bool, by who: Actor) throws(StoreError) -> Alias {
        try acting(who) { () throws(StoreError) in try linkAlias(modelID: model, name: name, versionID: version, view: view) }
    }

    public func setAlias(in model: ModelID, named name: String, to version: VersionID, view: Bool, by who: Actor) throws(StoreError) -> Alias {
        let checked = try Names.alias(name)
        let a = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let m = try Registry.model(tx, model)
                let v = try Registry.checkedAliasTarget(tx, m.id, version, view: view)
                try Registry.audit(tx, "alias.set", model: m.name, target: checked, "→ \(v.linkTarget(view: view))")
                return try tx.setAlias(modelID: m.id, name: checked, versionID: v.id, view: view)
            }
        }
        publishManifest(a.modelID)
        return a
    }

    public func renameAlias(_ id: AliasID, to name: String, by who: Actor) throws(StoreError) -> Alias {
        guard name.hasPrefix("@") else { throw .invalid("an alias's name starts with @: \(Names.printable(name)) is not one") }
        let checked = try Names.alias(name)
        let a = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let (m, a) = try Registry.alias(tx, id)
                let renamed = try tx.renameAlias(a, to: checked)
                let target = try tx.version(id: a.versionID).map { $0.linkTarget(view: a.view) } ?? "?"
                try Registry.audit(tx, "alias.set", model: m.name, target: checked, "→ \(target)")
                return renamed
            }
        }
        publishManifest(a.modelID)
        return a
    }

    public func removeAlias(_ id: AliasID, by who: Actor) throws(StoreError) -> Alias {
        let a = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let (m, a) = try Registry.alias(tx, id)
                try tx.deleteAlias(id: a.id)
                try Registry.audit(tx, "alias.remove", model: m.name, target: a.name)
                return a
            }
        }
        publishManifest(a.modelID)
        return a
    }

    // MARK: Datasets

    public func renameDataset(_ id: DatasetID, to name: String, by who: Actor) throws(StoreError) -> Dataset {
        try Names.validate(name, what: "dataset name")
        let (d, changed) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx -> (Dataset, Bool) in
                let d = try Registry.dataset(tx, id)
                if d.name == name { return (d, false) }
                try Registry.refuseIfUsed(try tx.activeJobs(dataset: d.name), "dataset \(d.fileName)")
                try tx.renameDataset(id: d.id, to: name)
                try Registry.audit(tx, "dataset.rename", model: nil, target: name + "." + d.format, "from \(d.fileName)")
                var renamed = d
                renamed.name = name
                return (renamed, true)
            }
        }
        if changed { publishDatasetsManifest() }
        return d
    }

    public func deleteDataset(_ id: DatasetID, by who: Actor) throws(StoreError) -> Deleted<Dataset> {
        let (d, removal) = try acting(who) { () throws(StoreError) in
            try catalog.transaction { tx in
                let d = try Registry.dataset(tx, id)
                try Registry.refuseIfUsed(try tx.activeJobs(dataset: d.name), "dataset \(d.fileName)")
                if d.status == .uploading { throw StoreError(.busy, "datasets/\(d.fileName) is still uploading") }
                try Registry.audit(tx, "dataset.delete", model: nil, target: d.fileName)
                return (d, try tx.deleteDataset(d))
            }
        }
        remove(removal)
        publishDatasetsManifest()
        return Deleted(row: d, purge: removal.purge)
    }

    // MARK: Owners

    public func changeOwnership(_ row: OwnedRow, mode: UInt32?, uid: UInt32?, gid: UInt32?, defaultOwner: Ownership,
                                by who: Actor) throws(StoreError) -> Ownership {
        try acting(who) { () throws(StoreError) in
            try changeOwnership(row, mode: mode, uid: uid, gid: gid, defaultOwner: defaultOwner)
        }
    }
}
