import Foundation
import Logging
import ModelStore
import Catalog
import UploadPath

/// What an ``ItemUpload`` writes: a model's version or a dataset.
public enum UploadItem: Sendable, Equatable {
    case version(Model, Version)
    case dataset(Dataset)

    public var objectKey: String {
        switch self {
        case .version(_, let v): return v.objectKey
        case .dataset(let d): return d.objectKey
        }
    }

    /// `model/v1.zip` or `datasets/qa.jsonl`, for messages.
    public var displayName: String {
        switch self {
        case .version(let m, let v): return m.name + "/" + v.fileName
        case .dataset(let d): return "datasets/" + d.fileName
        }
    }
}

/// One version or dataset being written: bytes stream out through a ``StreamingUpload``;
/// `finish` makes it `ready` with its size and sha256 (and, for line-based datasets, its record
/// count); any failure makes it `failed` with the reason and leaves no half object and no open
/// multipart upload behind.
public final class ItemUpload: @unchecked Sendable {
    public private(set) var item: UploadItem
    private let registry: Registry
    private let upload: StreamingUpload
    private var lines: LineCounter?
    private var ended = false
    private var failure: StoreError?

    init(registry: Registry, item: UploadItem, resume: (ResumePoint, Int64)?, source: (path: String, size: Int64)?) {
        self.registry = registry
        self.item = item
        let catalog = registry.catalog
        let key = item.objectKey
        var versionID: Int64?
        var datasetID: Int64?
        switch item {
        case .version(_, let v): versionID = v.id
        case .dataset(let d):
            datasetID = d.id
            if Formats.lineRecords.contains(d.format) { lines = LineCounter() }
        }
        let recordID = LockedBox<Int64?>(resume?.1)
        let hooks = UploadHooks(
            created: { [versionID, datasetID] (uploadID, sizing) throws(StoreError) in
                let record = try catalog.recordUpload(objectKey: key, uploadID: uploadID, partSize: Int64(sizing.base),
                                                      versionID: versionID, datasetID: datasetID, sourcePath: source?.path, sourceSize: source?.size)
                recordID.value = record.id
            },
            partDone: { part in
                guard let id = recordID.value else { return }
                try? catalog.recordPart(upload: id, part)
            })
        upload = StreamingUpload(store: registry.objects, key: key, concurrency: registry.uploadConcurrency, hooks: hooks,
                                 resume: resume?.0, logger: registry.logger)
    }

    public var bytesWritten: Int64 { upload.bytesWritten }
    public var isEnded: Bool { ended }

    /// The version being written (nil for a dataset).
    public var version: Version? {
        if case .version(_, let v) = item { return v }
        return nil
    }

    /// Appends bytes; on failure the item is already `failed` when this throws.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        if ended { throw failure ?? StoreError(.invalidArgument, "\(item.displayName) is already complete") }
        lines?.count(bytes)
        do { try upload.write(bytes) } catch {
            fail(error)
            throw error
        }
    }

    /// Completes the upload: the item becomes `ready`.
    @discardableResult
    public func finish() throws(StoreError) -> UploadItem {
        if ended {
            if let failure { throw failure }
            return item
        }
        let result: UploadResult
        do { result = try upload.finish() } catch {
            fail(error)
            throw error
        }
        ended = true
        do {
            switch item {
            case .version(let m, var v):
                try registry.catalog.markVersionReady(id: v.id, size: result.size, sha256: result.sha256)
                v.status = .ready; v.error = nil; v.size = result.size; v.sha256 = result.sha256
                item = .version(m, v)
                registry.publishManifest(m.id)
            case .dataset(var d):
                let records = lines?.records
                try registry.catalog.markDatasetReady(id: d.id, size: result.size, sha256: result.sha256, records: records)
                d.status = .ready; d.error = nil; d.size = result.size; d.sha256 = result.sha256; d.records = records
                item = .dataset(d)
            }
        } catch {
            // The bytes are complete but the catalog could not say so: remove them rather than
            // leave an object no row vouches for.
            try? registry.objects.delete(item.objectKey)
            failure = error
            throw error
        }
        return item
    }

    /// Completes a version's upload and returns the ready version.
    @discardableResult
    public func finishVersion() throws(StoreError) -> Version {
        guard case .version(_, let v) = try finish() else { preconditionFailure("not a version upload") }
        return v
    }

    /// Gives up on the upload, recording `reason`.
    public func abort(reason: String, code: StoreError.Code = .io) {
        fail(StoreError(code, reason))
    }

    private func fail(_ error: StoreError) {
        guard !ended else { return }
        ended = true
        failure = error
        let aborted = upload.abort()
        do {
            switch item {
            case .version(let m, var v):
                try registry.catalog.markVersionFailed(id: v.id, error: error.message, size: upload.bytesWritten, uploadStillOpen: !aborted)
                v.status = .failed; v.error = error.message
                item = .version(m, v)
                registry.publishManifest(m.id)
            case .dataset(var d):
                try registry.catalog.markDatasetFailed(id: d.id, error: error.message)
                d.status = .failed; d.error = error.message
                item = .dataset(d)
            }
        } catch {
            registry.logger.error("could not mark \(item.displayName) failed: \(error)")
        }
    }
}

/// Counts records of a line-based dataset while it streams: newlines, plus a last line without one.
struct LineCounter {
    private(set) var newlines: Int64 = 0
    private var last: UInt8?

    mutating func count(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var p = base
        var remaining = bytes.count
        while remaining > 0, let hit = memchr(p, 0x0A, remaining) {
            newlines += 1
            let advanced = UnsafeRawPointer(hit) - p + 1
            p += advanced
            remaining -= advanced
        }
        last = bytes[bytes.count - 1]
    }

    var records: Int64 { newlines + (last != nil && last != 0x0A ? 1 : 0) }
}

/// A value shared between the upload's threads.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
