import Foundation
import Testing
@_exported import TestSupport
import ModelStore
import BlobStore
import Catalog
import Registry

/// The registry's uploads use the standard 8 MiB parts.
let partSize = 8 << 20

enum Backend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case memory, local
    var testDescription: String { rawValue }
}

/// A registry over a catalog in a temporary SQLite file and a memory or local object store.
final class Env: @unchecked Sendable {
    let dir: String
    let catalog: Catalog
    let objects: any ObjectStore
    let registry: Registry

    init(_ backend: Backend = .memory, uploadConcurrency: Int = 2) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        catalog = try Catalog(path: dir + "/catalog.sqlite")
        switch backend {
        case .memory: objects = MemoryObjectStore()
        case .local: objects = try LocalObjectStore(root: dir + "/blobs")
        }
        registry = Registry(catalog: catalog, objects: objects, uploadConcurrency: uploadConcurrency)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// The memory store, for fault injection and counters.
    var memory: MemoryObjectStore { objects as! MemoryObjectStore }

    /// Writes `data` to `upload` in chunks.
    func feed(_ upload: ItemUpload, _ data: [UInt8], chunk: Int = MiB + 3) throws {
        var offset = 0
        while offset < data.count {
            let n = min(chunk, data.count - offset)
            try data[offset..<offset + n].withUnsafeBytes { try upload.write($0) }
            offset += n
        }
    }

    /// A whole version upload: begin, write, finish.
    @discardableResult
    func put(_ model: String, _ fileName: String, _ data: [UInt8]) throws -> Version {
        let upload = try registry.beginVersion(model: model, fileName: fileName)
        try feed(upload, data)
        return try upload.finishVersion()
    }

    /// The manifest as stored in the bucket.
    func storedManifest(_ model: String) throws -> Manifest {
        try Manifest.decode(objects.get(Rules.manifestKey(model: model), range: nil))
    }

    /// The entries of the model's versions as stored in the bucket, by name.
    func storedVersions(_ model: String) throws -> [Manifest.Entry] {
        try objects.list(prefix: Rules.versionEntryPrefix)
            .map { try VersionEntry.decode(objects.get($0.key, range: nil)) }
            .filter { $0.model == model }.map(\.version).sorted { $0.name < $1.name }
    }

    func hasObject(_ key: String) throws -> Bool { try objects.head(key) != nil }

    func pendingUploads() throws -> Int { try objects.listMultipartUploads(prefix: "").count }
}
