import Foundation
import Testing
import ModelStore
import BlobStore
import Catalog
import Registry

let MiB = 1 << 20
/// The registry's uploads use the standard 8 MiB parts.
let partSize = 8 << 20

func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

/// `count` random bytes, quickly even in a debug build (SplitMix64 from a random seed: one
/// system call per buffer, not one per word).
func randomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var state = UInt64.random(in: 0...UInt64.max)
    out.withUnsafeMutableBytes { raw in
        var i = 0
        while i < raw.count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            if i + 8 <= raw.count {
                raw.storeBytes(of: z, toByteOffset: i, as: UInt64.self)
                i += 8
            } else {
                while i < raw.count { raw[i] = UInt8(truncatingIfNeeded: z); z >>= 8; i += 1 }
            }
        }
    }
    return out
}

/// Byte-wise equality at memcmp speed (a debug build compares arrays element by element).
func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

func sha256Hex(_ bytes: [UInt8]) -> String { Digest.hex(Digest.sha256(bytes)) }

/// Polls `condition` until it holds or a generous deadline passes (a safety net, not a measurement).
func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.005)
    }
    return try condition()
}

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

    func hasObject(_ key: String) throws -> Bool { try objects.head(key) != nil }

    func pendingUploads() throws -> Int { try objects.listMultipartUploads(prefix: "").count }
}
