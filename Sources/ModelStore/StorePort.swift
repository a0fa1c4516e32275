import Foundation

/// The one door to the store for the mount (and the CLI and HTTP API, which resolve names to ids
/// in front of it). Implemented by `Registry`.
///
/// Every change names its rows by id and is ONE catalog transaction: the rule is checked inside
/// it, against rows read inside it, so nothing can slip between the check and the change. An id
/// whose row is gone (deleted, or never was) is `notFound` (`ENOENT`); an operation through an id
/// acts on that row only, never on whatever holds its name now: a rename between a lookup and an
/// `unlink` of the old inode does not remove the new holder of the name. Changes return the row
/// as it is after the change; deletes also say what the caches and archive views must forget
/// (``Purge``). `who` is the person or process the change is made for: the audit trail's user,
/// and whose rights are checked where the rule is about who asks.
public protocol StorePort: Sendable {
    // MARK: Reading (each one read of the catalog)

    func model(_ id: ModelID) throws(StoreError) -> Model?
    func model(named name: String) throws(StoreError) -> Model?
    /// All models, in name order.
    func models() throws(StoreError) -> [Model]
    func version(_ id: VersionID) throws(StoreError) -> Version?
    /// The version of `model` named `name` (its name without the extension), whatever its format.
    func version(in model: ModelID, named name: String) throws(StoreError) -> Version?
    /// The model's versions in name order (temporary files included): one read, for `ls -l`.
    func versions(of model: ModelID) throws(StoreError) -> [Version]
    func alias(_ id: AliasID) throws(StoreError) -> Alias?
    func alias(in model: ModelID, named name: String) throws(StoreError) -> Alias?
    func aliases(of model: ModelID) throws(StoreError) -> [Alias]
    func dataset(_ id: DatasetID) throws(StoreError) -> Dataset?
    func dataset(named name: String) throws(StoreError) -> Dataset?
    /// All datasets, in name order.
    func datasets() throws(StoreError) -> [Dataset]
    func job(_ id: JobID) throws(StoreError) -> Job?
    /// A job by its number (its inode), which is never reused.
    func job(number: Int64) throws(StoreError) -> Job?
    /// All jobs, oldest first.
    func jobs() throws(StoreError) -> [Job]
    func service(_ id: ServiceID) throws(StoreError) -> Service?
    /// A service by its number (its directory's inode), which is never reused.
    func service(number: Int64) throws(StoreError) -> Service?
    /// All services, oldest first.
    func services() throws(StoreError) -> [Service]
    /// Asks a service to stop (its owner or root: `EACCES` otherwise); the node running it stops it.
    @discardableResult
    func stopService(_ id: ServiceID, requester: Ownership.Requester) throws(StoreError) -> Service
    /// Starts a service again, on its alias's version now for one that follows an alias.
    @discardableResult
    func restartService(_ id: ServiceID, requester: Ownership.Requester) throws(StoreError) -> Service
    /// A version's evaluations, oldest first (the last is the one its xattrs show).
    func evaluations(of version: VersionID) throws(StoreError) -> [Evaluation]
    /// Counts for `.stats`.
    func stats() throws(StoreError) -> StoreStats

    /// The archive index stored for the object at `key`, if it describes these bytes.
    func archiveIndex(objectKey key: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex?
    /// Keeps an archive's index (or why it has none) for every node; a later delete of the row drops it.
    func storeArchiveIndex(objectKey key: String, _ index: StoredArchiveIndex) throws(StoreError)
    /// The safetensors header stored for `member` of the object at `key` ("" for the file itself).
    func tensorHeader(objectKey key: String, member: String, sha256: String, size: Int64) throws(StoreError) -> StoredArchiveIndex?
    func storeTensorHeader(objectKey key: String, member: String, _ header: StoredArchiveIndex) throws(StoreError)

    /// Whether other nodes change this catalog too (PostgreSQL): only then do change notices come.
    var isShared: Bool { get }
    /// Calls `handler` with each change notice of other nodes (`models`, `datasets`, `jobs`,
    /// `versions:<model id>`); does nothing on a catalog of one node.
    func watchChanges(_ handler: @escaping @Sendable (String) -> Void)

    // MARK: Models

    /// A new model named `name`. `EINVAL` for a bad name, `EEXIST` when the name is taken.
    func createModel(named name: String, type: ModelType, note: String, owner: Ownership, by who: Actor) throws(StoreError) -> Model
    /// Sets the model's type and/or note. `ENOENT` when the model is gone.
    func setModel(_ id: ModelID, type: ModelType?, note: String?, by who: Actor) throws(StoreError) -> Model
    /// Renames the model (metadata only). `EINVAL` bad name, `EEXIST` name taken, `EBUSY` while a
    /// queued or running job uses it, `ENOENT` when it is gone. The same name: no change.
    func renameModel(_ id: ModelID, to name: String, by who: Actor) throws(StoreError) -> Model
    /// Deletes the model with all its versions and aliases. `EBUSY` while a job uses it or one of
    /// its versions is still uploading; `ENOENT` when it is gone.
    func deleteModel(_ id: ModelID, by who: Actor) throws(StoreError) -> Deleted<Model>

    // MARK: Versions

    /// Renames the version within its model, keeping its format. `EINVAL` bad name,
    /// `EEXIST` when the model has a version of that name (any format), `EBUSY` while a job
    /// uses it, `ENOENT` when it is gone.
    func renameVersion(_ id: VersionID, to name: String, by who: Actor) throws(StoreError) -> Version
    /// A writer's temporary file becomes version `name` of `format` (`mv .tmpXYZ v2.zip`).
    /// `EINVAL` when it is not a temporary file or the name is bad, `EEXIST` when the name is
    /// taken, `ENOENT` when it is gone.
    func adoptScratch(_ id: VersionID, as name: String, format: String, by who: Actor) throws(StoreError) -> Version
    /// Sets the version's note. `ENOENT` when it is gone. (Who may annotate a file is the file
    /// system's rule: the mount checks the owner's write bit, as the kernel would.)
    func setVersionNote(_ id: VersionID, note: String, by who: Actor) throws(StoreError) -> Version
    /// Deletes the version (its links under temporary names too). `EPERM` for the model's last
    /// ready version, `EBUSY` while it uploads, a job uses it or an alias names it, `ENOENT`
    /// when it is gone.
    func deleteVersion(_ id: VersionID, by who: Actor) throws(StoreError) -> Deleted<Version>

    // MARK: Writing files
    // Each begin is one transaction that creates (or restarts) the row `uploading`, records this
    // process as its writer (the sweep fails the upload once the writer is gone) and the
    // returned upload's claim on it (only that upload completes or fails it). The upload then
    // owns the file's state (``FileUpload/current``) until its end.

    /// A new version of `model` from a file name such as `v2.1.tar.gz`. `EINVAL` for a bad name
    /// or format, `EEXIST` when the model has a version of that name (any format), `ENOENT` when
    /// the model is gone.
    func beginVersion(in model: ModelID, fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload
    /// A writer's temporary file `fileName` (``Names/isScratch(_:)``) in `model`, which
    /// ``adoptScratch(_:as:format:by:)`` turns into a version. Errors as ``beginVersion(in:fileName:owner:by:)``.
    func beginScratch(in model: ModelID, fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload
    /// A new dataset from a file name such as `qa.jsonl`. `EINVAL` for a bad name or format,
    /// `EEXIST` when the name is taken.
    func beginDataset(fileName: String, owner: Ownership, by who: Actor) throws(StoreError) -> any FileUpload
    /// A failed version written again under its name and key (a copy onto it). `EEXIST` when it
    /// is no longer failed (another copy won, or it is ready), `ENOENT` when it is gone.
    func restartFailedVersion(_ id: VersionID, by who: Actor) throws(StoreError) -> any FileUpload
    /// A failed dataset written again. Errors as ``restartFailedVersion(_:by:)``.
    func restartFailedDataset(_ id: DatasetID, by who: Actor) throws(StoreError) -> any FileUpload

    // MARK: Aliases

    /// A link `name` in `model` to `version` (its file, or its archive view with `view`): an
    /// alias `@name`, or `ln -sfn`'s temporary name. `EINVAL` for another name, a version of
    /// another model or not ready, or a view of no archive; `EEXIST` when the name is taken.
    func linkAlias(in model: ModelID, named name: String, to version: VersionID, view: Bool, by who: Actor) throws(StoreError) -> Alias
    /// Points the alias `name` (`@something`) of `model` at `version` (its file, or its view with
    /// `view`), making it if needed (`modelfs alias set`). `EINVAL` as for ``linkAlias(in:named:to:view:by:)``.
    func setAlias(in model: ModelID, named name: String, to version: VersionID, view: Bool, by who: Actor) throws(StoreError) -> Alias
    /// Renames the alias, replacing the alias of that name if there is one (`ln -sfn`).
    /// `EINVAL` unless the name starts with `@`; `ENOENT` when it is gone.
    func renameAlias(_ id: AliasID, to name: String, by who: Actor) throws(StoreError) -> Alias
    /// Removes the alias. `ENOENT` when it is gone.
    func removeAlias(_ id: AliasID, by who: Actor) throws(StoreError) -> Alias

    // MARK: Datasets

    /// Renames the dataset, keeping its format. `EINVAL` bad name, `EEXIST` name taken, `EBUSY`
    /// while a job uses it, `ENOENT` when it is gone.
    func renameDataset(_ id: DatasetID, to name: String, by who: Actor) throws(StoreError) -> Dataset
    /// Deletes the dataset. `EBUSY` while it uploads or a job uses it; `ENOENT` when it is gone.
    func deleteDataset(_ id: DatasetID, by who: Actor) throws(StoreError) -> Deleted<Dataset>

    // MARK: Owners

    /// `chmod`, `chown`, `chgrp` by the rules of ``Ownership/changed(mode:uid:gid:by:isFile:what:)``
    /// (`EPERM` with the reason). A row from before owners counts as `defaultOwner`'s. Returns the
    /// ownership it has now. `ENOENT` when it is gone.
    func changeOwnership(_ row: OwnedRow, mode: UInt32?, uid: UInt32?, gid: UInt32?, defaultOwner: Ownership,
                         by who: Actor) throws(StoreError) -> Ownership
}

/// What a committed delete answers: the row as it was, and what caches and views must forget.
public struct Deleted<Row: Sendable>: Sendable {
    public var row: Row
    public var purge: Purge
    public init(row: Row, purge: Purge) { self.row = row; self.purge = purge }
}

/// What the node's caches must forget after a delete: the cached bytes of each object that went
/// (by ``ObjectIdentity``; not those another version or dataset still has), and the archive views
/// of the versions and datasets that went.
public struct Purge: Sendable, Equatable {
    public var objects: [UInt64] = []
    public var versions: [VersionID] = []
    public var datasets: [DatasetID] = []
    public init(objects: [UInt64] = [], versions: [VersionID] = [], datasets: [DatasetID] = []) {
        self.objects = objects; self.versions = versions; self.datasets = datasets
    }
}

/// An archive's index (or a safetensors header) as the catalog keeps it: the encoded index, or
/// why there is none, for the bytes of `sha256` and `size`.
public struct StoredArchiveIndex: Sendable, Equatable {
    public var sha256: String
    public var size: Int64
    public var body: String?
    public var error: String?

    public init(sha256: String, size: Int64, body: String?, error: String?) {
        self.sha256 = sha256; self.size = size; self.body = body; self.error = error
    }
}

/// Counts for `.stats` and `modelfs stats`.
public struct StoreStats: Sendable, Equatable, Codable {
    public var models = 0
    public var modelsByType: [String: Int] = [:]
    public var versions = 0
    public var readyVersions = 0
    public var bytes: Int64 = 0
    public var datasets = 0
    public var datasetBytes: Int64 = 0
    public init() {}
}

/// What a cached object is named by: its content (sha256) and size, so the same name always means
/// the same bytes, whichever mount, catalog or bucket they were read from.
public enum ObjectIdentity {
    public static func id(sha256: String, size: Int64) -> UInt64 {
        let digest = Digest.sha256("modelfs-object\0\(sha256)\0\(size)")
        // The top bit stays clear: ids never collide with the inode-like numbers of generated files.
        return digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } & ~(1 << 63)
    }
}

/// A version or a dataset: a file whose bytes are one object.
public protocol StoredFile: Sendable {
    var fileName: String { get }
    var format: String { get }
    var objectKey: String { get }
    var size: Int64 { get }
    var sha256: String? { get }
    var status: UploadStatus { get }
    var error: String? { get }
    var modified: Date { get }
    var owner: Ownership? { get }
}

extension StoredFile {
    /// The cache's name for its bytes: by its sha256 once known, else by its key.
    public var objectIdentity: UInt64 { ObjectIdentity.id(sha256: sha256 ?? objectKey, size: size) }
}

extension Version: StoredFile {}
extension Dataset: StoredFile {}
