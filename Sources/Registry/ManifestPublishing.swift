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

/// Manifests are written in order: each write carries a generation the catalog bumps in the
/// transaction that reads the rows it describes, writes of one model are serialized within the
/// process, and a writer that finds, after its PUT, that a newer snapshot was taken (by another
/// process, whose PUT may have landed first) writes again. So the last PUT to land is always the
/// newest state, even with 16 uploads of one model completing at once.
extension Registry {
    /// Rewrites the model's manifest in the bucket. When object storage is down the model is
    /// marked dirty and the manifest is written by a later ``retryPending()``; metadata
    /// operations still succeed from SQLite.
    func publishManifest(_ modelID: Int64) {
        manifestLocks.withLock("model \(modelID)") {
            do {
                for _ in 0..<20 {
                    guard let snapshot = try catalog.modelSnapshot(id: modelID) else { return }
                    var manifest = Manifest(model: snapshot.model, versions: snapshot.versions)
                    manifest.generation = snapshot.generation
                    do {
                        try objects.put(Rules.manifestKey(model: snapshot.model.name), manifest.encoded())
                    } catch {
                        logger.warning("manifest of \(snapshot.model.name) not written, will retry: \(error)")
                        try catalog.setManifestDirty(modelID: modelID, true)
                        return
                    }
                    if try catalog.markManifestWritten(modelID: modelID, generation: snapshot.generation) { return }
                }
                try catalog.setManifestDirty(modelID: modelID, true)
            } catch {
                logger.warning("manifest of model \(modelID) not written: \(error)")
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
