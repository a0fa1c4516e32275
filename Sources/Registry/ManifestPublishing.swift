import Foundation
import ModelStore
import Catalog

extension Rules {
    /// The datasets' manifest: `.catalog/.datasets.json` (no model name starts with a dot).
    public static let datasetsManifestKey = ".catalog/.datasets.json"
    /// Which catalog the bucket belongs to: `.catalog/.owner.json`.
    public static let ownerKey = ".catalog/.owner.json"
}

/// One lock per key, made on first use: manifest writes of one model go out one at a time.
final class KeyedLocks: Sendable {
    private let locks = Locked<[String: NSLock]>([:])

    func withLock<T, E: Error>(_ key: String, _ body: () throws(E) -> T) throws(E) -> T {
        let lock = locks.withLock { all in
            if let l = all[key] { return l }
            let l = NSLock()
            all[key] = l
            return l
        }
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

/// Manifests and version entries are written in order: each write carries a generation the
/// catalog bumps in the transaction that reads the rows it describes, writes of one model (or one
/// version) are serialized within the process, and a writer that finds, after its PUT, that a
/// newer snapshot was taken (by another process, whose PUT may have landed first) writes again.
/// So the last PUT to land is always the newest state, even with 16 uploads of one model
/// completing at once on several nodes.
///
/// A change of a version writes only that version's entry: the cost of a version is the same
/// whether its model has one version or ten thousand.
extension Registry {
    /// Rewrites the model's manifest in the bucket, and first all its versions' entries when the
    /// catalog says the bucket is behind on them (a failed PUT, a rename, a model from before
    /// entries). When object storage is down the model stays marked dirty and is written by a
    /// later ``retryPending()``; metadata operations still succeed from the catalog.
    func publishManifest(_ modelID: ModelID) {
        manifestLocks.withLock("model \(modelID)") {
            do {
                for _ in 0..<20 {
                    guard let snapshot = try catalog.modelSnapshot(id: modelID) else { return }
                    if snapshot.dirty {
                        for v in snapshot.versions where !publishVersionEntry(v.id) { return }
                    }
                    var manifest = Manifest(model: snapshot.model)
                    manifest.generation = snapshot.generation
                    // Read after the snapshot: a newer alias than it, never an older one (an alias's
                    // change publishes again, with a newer generation).
                    let keys = Dictionary(snapshot.versions.map { ($0.id, $0.objectKey) }, uniquingKeysWith: { a, _ in a })
                    let aliases = try catalog.aliases(modelID: modelID).filter(\.isNamed)
                    if !aliases.isEmpty {
                        manifest.aliases = Dictionary(aliases.compactMap { a in keys[a.versionID].map { (a.name, $0) } },
                                                      uniquingKeysWith: { a, _ in a })
                        let views = aliases.filter(\.view).map(\.name)
                        manifest.aliasViews = views.isEmpty ? nil : views
                    }
                    do {
                        try objects.put(Rules.manifestKey(model: snapshot.model.name), manifest.encoded())
                    } catch {
                        logger.warning("manifest of \(snapshot.model.name) not written, will retry: \(error)")
                        try catalog.setManifestDirty(modelID: modelID)
                        return
                    }
                    if try catalog.markManifestWritten(modelID: modelID, generation: snapshot.generation) { return }
                }
                try catalog.setManifestDirty(modelID: modelID)
            } catch {
                logger.warning("manifest of model \(modelID) not written: \(error)")
            }
        }
    }

    /// Writes one version's entry (`.catalog/.versions/<object key>.json`). Returns false when
    /// it could not be written; the model is then marked dirty, for ``retryPending()``.
    @discardableResult
    func publishVersionEntry(_ versionID: VersionID) -> Bool {
        manifestLocks.withLock("version \(versionID)") {
            var modelID: ModelID?
            do {
                for _ in 0..<20 {
                    guard let snapshot = try catalog.versionSnapshot(id: versionID) else { return true }
                    modelID = snapshot.model.id
                    let key = Rules.versionEntryKey(objectKey: snapshot.version.objectKey)
                    let entry = VersionEntry(model: snapshot.model.name, version: snapshot.version, generation: snapshot.generation,
                                             evaluations: snapshot.evaluations)
                    do {
                        try objects.put(key, entry.encoded())
                    } catch {
                        logger.warning("entry of \(snapshot.model.name)/\(snapshot.version.fileName) not written, will retry: \(error)")
                        try catalog.setManifestDirty(modelID: snapshot.model.id)
                        return false
                    }
                    switch try catalog.versionEntryGeneration(id: versionID) {
                    case snapshot.generation: return true
                    case nil:
                        // Deleted meanwhile: this PUT may have landed after the deleter removed the entry.
                        try? objects.delete(key)
                        return true
                    default: continue
                    }
                }
                if let modelID { try catalog.setManifestDirty(modelID: modelID) }
            } catch {
                logger.warning("entry of version \(versionID) not written: \(error)")
                if let modelID { try? catalog.setManifestDirty(modelID: modelID) }
            }
            return false
        }
    }

    /// Removes the entries of deleted versions, before their objects go: until then their keys
    /// stay reserved, so no new version can have written an entry under the same name.
    func removeVersionEntries(_ versions: [Version]) {
        for v in versions {
            do { try objects.delete(Rules.versionEntryKey(objectKey: v.objectKey)) } catch {
                logger.warning("entry of \(v.fileName) not deleted yet (gc --delete-orphans removes it): \(error)")
            }
        }
    }

    /// Rewrites `.catalog/.datasets.json`. When object storage is down it stays behind, and a
    /// later ``retryPending()`` (or the mount's next check) writes it.
    public func publishDatasetsManifest() {
        manifestLocks.withLock("datasets") {
            do {
                for _ in 0..<20 {
                    let snapshot = try catalog.datasetsSnapshot()
                    let manifest = DatasetsManifest(datasets: snapshot.datasets, generation: snapshot.generation)
                    do {
                        try objects.put(Rules.datasetsManifestKey, manifest.encoded())
                    } catch {
                        logger.warning("datasets manifest not written, will retry: \(error)")
                        return
                    }
                    if try catalog.markDatasetsManifestWritten(generation: snapshot.generation) { return }
                }
            } catch {
                logger.warning("datasets manifest not written: \(error)")
            }
        }
    }

    /// Writes the datasets manifest if any dataset changed since it was last written (every
    /// change to a dataset row, by any code path, moves its generation).
    public func publishDatasetsManifestIfBehind() {
        if (try? catalog.datasetsManifestBehind()) == true { publishDatasetsManifest() }
    }

    /// The datasets manifest as it would be written now.
    public func datasetsManifest() throws(StoreError) -> DatasetsManifest {
        let snapshot = try catalog.datasetsSnapshot()
        return DatasetsManifest(datasets: snapshot.datasets, generation: snapshot.generation)
    }
}
