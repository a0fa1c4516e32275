import Foundation
import Logging
import ModelStore
import Catalog
import UploadPath
import Archive

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
    private var upload: StreamingUpload
    private let hooks: UploadHooks
    private let recordID: LockedBox<Int64?>
    private let lines: LineCounterBox?
    /// The archive's index, built from the bytes as they are sealed (nil for other formats, and
    /// for a resumed upload, whose stream starts part way).
    private let index: IndexBox?
    /// Set once a writer sought back into bytes already uploaded: the file is written here and
    /// uploaded whole at `finish`.
    private var spool: SpoolFile?
    private var ended = false
    /// Why the upload failed, once it did.
    public private(set) var failure: StoreError?
    /// This upload's claim on its row: only it may complete or fail the row, and a row taken
    /// from it (deleted, replaced) makes it abort without touching the key.
    let token = UUID().uuidString
    /// Whether the claim reached the catalog.
    private let claimed: LockedBox<Bool>

    init(registry: Registry, item: UploadItem, resume: (ResumePoint, Int64)?, source: (path: String, size: Int64)?) {
        self.registry = registry
        self.item = item
        let catalog = registry.catalog
        let key = item.objectKey
        var versionID: VersionID?
        var datasetID: DatasetID?
        var lines: LineCounterBox?
        switch item {
        case .version(_, let v): versionID = v.id
        case .dataset(let d):
            datasetID = d.id
            if Formats.lineRecords.contains(d.format) { lines = LineCounterBox() }
        }
        self.lines = lines
        let format: String
        switch item {
        case .version(_, let v): format = v.format
        case .dataset(let d): format = d.format
        }
        index = resume == nil && (ArchiveKind(format: format) != nil || format == "safetensors") ? IndexBox(format: format) : nil
        let recordID = LockedBox<Int64?>(resume?.1)
        self.recordID = recordID
        let token = self.token
        // A claim the catalog could not take now is taken before completing (or failing).
        let claim = try? catalog.claimUpload(versionID: versionID, datasetID: datasetID, token: token)
        let claimed = LockedBox<Bool>(claim != nil)
        self.claimed = claimed
        let hooks = UploadHooks(
            created: { [versionID, datasetID] (uploadID, sizing) throws(StoreError) in
                let record = try catalog.recordUpload(objectKey: key, uploadID: uploadID, partSize: Int64(sizing.base),
                                                      versionID: versionID, datasetID: datasetID, sourcePath: source?.path, sourceSize: source?.size)
                recordID.value = record.id
            },
            partDone: { part in
                guard let id = recordID.value else { return }
                try? catalog.recordPart(upload: id, part)
            },
            completing: { [versionID, datasetID] () throws(StoreError) in
                if !claimed.value {
                    _ = try catalog.claimUpload(versionID: versionID, datasetID: datasetID, token: token)
                    claimed.value = true
                }
                guard try catalog.ownsUpload(versionID: versionID, datasetID: datasetID, token: token) else {
                    throw StoreError(.io, "\(item.displayName) was deleted or replaced while it was written")
                }
            })
        self.hooks = hooks
        upload = ItemUpload.stream(registry, key: key, hooks: hooks, resume: resume?.0, lines: lines, index: index)
    }

    private static func stream(_ registry: Registry, key: String, hooks: UploadHooks, resume: ResumePoint?,
                               lines: LineCounterBox?, index: IndexBox?) -> StreamingUpload {
        let upload = StreamingUpload(store: registry.objects, key: key, concurrency: registry.uploadConcurrency, hooks: hooks,
                                     resume: resume, logger: registry.logger)
        lines?.counter.withLock { $0 = LineCounter() }
        // Each stream from its first byte: a restart (from the spool) starts a new index.
        let indexer = index?.restart()
        if lines != nil || indexer != nil {
            upload.sealed = { b in
                lines?.counter.withLock { $0.count(b) }
                indexer?(b)
            }
        }
        return upload
    }

    public var bytesWritten: Int64 { spool?.size ?? upload.bytesWritten }
    public var isEnded: Bool { ended }

    private var datasetID: DatasetID? {
        if case .dataset(let d) = item { return d.id }
        return nil
    }

    /// The version being written (nil for a dataset).
    public var version: Version? {
        if case .version(_, let v) = item { return v }
        return nil
    }

    /// Appends bytes; on failure the item is already `failed` when this throws.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        if ended { throw failure ?? StoreError(.badDescriptor, "\(item.displayName) is already complete: its last close completed it") }
        do { try upload.write(bytes) } catch {
            fail(error)
            throw error
        }
    }

    /// Writes at any offset: in order it streams; a hole is zero-filled; a seek back into the
    /// part not yet sent patches it; a seek back further moves the file to `spool` (without one,
    /// refused with `EINVAL`). A failure fails the upload.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64, spool space: SpoolSpace?) throws(StoreError) {
        if ended { throw failure ?? StoreError(.badDescriptor, "\(item.displayName) is already complete: its last close completed it") }
        do throws(StoreError) {
            if spool == nil, try upload.write(bytes, at: offset) { return }
            if spool == nil { try moveToSpool(space, seekingTo: offset) }
            try spool!.write(bytes, at: offset)
        } catch {
            fail(error)
            throw error
        }
    }

    /// `ftruncate` while writing. The same size changes nothing. Longer (a writer that sizes its
    /// file first, as `safetensors` does, or `cp` of a sparse file ending in a hole): a short
    /// extension is zeros in the stream, a long one moves the file to the spool, where the hole
    /// costs nothing until written. Shorter is possible only in the spool; otherwise it fails the
    /// upload (`EINVAL`).
    public func resize(to size: Int64, spool space: SpoolSpace?) throws(StoreError) {
        if ended { throw failure ?? StoreError(.badDescriptor, "\(item.displayName) is already complete: its last close completed it") }
        let written = bytesWritten
        if size == written { return }
        do throws(StoreError) {
            if spool == nil && size > written && (size - written <= ItemUpload.zeroFillLimit || space == nil) {
                _ = try upload.write(UnsafeRawBufferPointer(start: nil, count: 0), at: size)
                return
            }
            if spool == nil {
                guard size > written else {
                    throw StoreError(.invalidArgument, "truncate to \(size) bytes after \(written) were written: versions are written from start to end")
                }
                try moveToSpool(space, seekingTo: size)
            }
            try spool!.resize(to: size)
        } catch {
            fail(error)
            throw error
        }
    }

    /// How long a hole may be to go into the stream as zeros rather than move the file to the spool.
    static let zeroFillLimit: Int64 = 64 << 20

    /// Stores what was streamed so far, reads it back into a spool file and goes on there.
    private func moveToSpool(_ space: SpoolSpace?, seekingTo offset: Int64) throws(StoreError) {
        guard let space else {
            throw StoreError(.invalidArgument, "write at offset \(offset) after \(upload.bytesWritten) bytes were sent: this mount has no spool for writers that seek back")
        }
        let file = try space.create()
        spool = file
        let result = try upload.finish()
        if let id = recordID.value { try? registry.catalog.deleteUpload(id: id); recordID.value = nil }
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var at: Int64 = 0
        while at < result.size {
            let n = Int(min(Int64(buffer.count), result.size - at))
            let objects = registry.objects
            let key = item.objectKey
            let got = try buffer.withUnsafeMutableBytes { b in
                Result { () throws(ObjectStoreError) in
                    try objects.get(key, range: at..<(at + Int64(n)), into: UnsafeMutableRawBufferPointer(rebasing: b[0..<n]))
                }
            }.mapError(\.storeError).get()
            guard got == n else { throw StoreError(.io, "reading back \(item.displayName) for the spool: \(got) of \(n) bytes") }
            try buffer.withUnsafeBytes { b in Result { () throws(StoreError) in try file.write(UnsafeRawBufferPointer(rebasing: b[0..<n]), at: at) } }.get()
            at += Int64(n)
        }
        registry.logger.info("\(item.displayName): the writer sought back to \(offset); spooled \(result.size) bytes to \(space.directory)")
    }

    /// Uploads the spool file from its start, replacing what was streamed before the seek.
    private func uploadSpool(_ file: SpoolFile) throws(StoreError) {
        upload = ItemUpload.stream(registry, key: item.objectKey, hooks: hooks, resume: nil, lines: lines, index: index)
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var at: Int64 = 0
        while at < file.size {
            let n = file.read(at: at, into: &buffer)
            guard n > 0 else { throw StoreError(.io, "reading the spool file of \(item.displayName)") }
            try buffer.withUnsafeBytes { b in Result { () throws(StoreError) in try upload.write(UnsafeRawBufferPointer(rebasing: b[0..<n])) } }.get()
            at += Int64(n)
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
        do {
            if let spool { try uploadSpool(spool) }
            result = try upload.finish()
        } catch {
            let failed = ItemUpload.atClose(error)
            fail(failed)
            throw failed
        }
        ended = true
        spool?.close()
        do {
            switch item {
            case .version(let m, var v):
                try registry.catalog.markVersionReady(id: v.id, size: result.size, sha256: result.sha256, token: token)
                storeIndex(result)
                v.status = .ready; v.error = nil; v.size = result.size; v.sha256 = result.sha256
                item = .version(m, v)
                registry.publishVersionEntry(v.id)
            case .dataset(var d):
                let records = lines?.records
                try registry.catalog.markDatasetReady(id: d.id, size: result.size, sha256: result.sha256, records: records, token: token)
                storeIndex(result)
                d.status = .ready; d.error = nil; d.size = result.size; d.sha256 = result.sha256; d.records = records
                item = .dataset(d)
            }
        } catch {
            // The bytes are complete but the catalog could not say so: remove them rather than
            // leave an object no row vouches for — unless the row was taken from this upload and
            // another row owns the key by now.
            let taken = error.code == .notFound && (try? registry.catalog.objectKeyInUse(item.objectKey)) != false
            if !taken { try? registry.objects.delete(item.objectKey) }
            let failed = ItemUpload.atClose(error)
            failure = failed
            // The catalog did not answer: the row stays `uploading` until this failure is recorded.
            if error.code != .notFound {
                registry.deferFailure(item, token: token, claimed: claimed.value,
                                      reason: "its completion could not be recorded: \(error.message)", size: result.size,
                                      uploadStillOpen: false)
            }
            throw failed
        }
        return item
    }

    /// The file being closed exists: a row or multipart upload taken from this upload while it
    /// was written (failed by a sweep, deleted) makes the close fail with `EIO`, not `ENOENT`.
    private static func atClose(_ error: StoreError) -> StoreError {
        error.code == .notFound ? StoreError(.io, error.message) : error
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

    /// The index (or safetensors header) built on the way, kept for the view and the xattrs
    /// (which read it on first access otherwise: not while object storage is down).
    private func storeIndex(_ result: UploadResult) {
        if let capture = index?.capture, let header = capture.header(size: result.size) {
            var body: String?, reason: String?
            switch header {
            case .success(let h): body = String(decoding: h.encoded(), as: UTF8.self)
            case .failure(let e): reason = e.reason
            }
            try? registry.catalog.storeTensorHeader(objectKey: item.objectKey, member: "",
                                                    StoredArchiveIndex(sha256: result.sha256, size: result.size, body: body, error: reason))
            return
        }
        guard let built = index?.current?.finish(size: result.size) else { return }
        var body: String?, reason: String?
        switch built {
        case .success(let index): body = String(decoding: index.encoded(), as: UTF8.self)
        case .failure(let e): reason = e.reason
        }
        do {
            try registry.catalog.storeArchiveIndex(objectKey: item.objectKey,
                                                   StoredArchiveIndex(sha256: result.sha256, size: result.size, body: body, error: reason))
        } catch {
            registry.logger.warning("index of \(item.displayName) not stored (built on first access instead): \(error)")
        }
    }

    private func fail(_ error: StoreError) {
        guard !ended else { return }
        index?.current?.abandon()
        ended = true
        failure = error
        let aborted = upload.abort()
        if let spool {
            // What was streamed before the seek was stored at the key: nothing may stay there.
            spool.close()
            if (try? registry.catalog.ownsUpload(versionID: version?.id, datasetID: datasetID, token: token)) == true {
                try? registry.objects.delete(item.objectKey)
            }
        }
        do {
            if !claimed.value {
                _ = try registry.catalog.claimUpload(versionID: version?.id, datasetID: datasetID, token: token)
                claimed.value = true
            }
            switch item {
            case .version(let m, var v):
                let line = Registry.failure("version.fail", model: m.name, target: v.fileName, owner: v.owner,
                                            reason: error.message)
                try registry.catalog.markVersionFailed(id: v.id, error: error.message, size: upload.bytesWritten,
                                                       uploadStillOpen: !aborted, token: token, audit: line)
                v.status = .failed; v.error = error.message
                item = .version(m, v)
                registry.publishVersionEntry(v.id)
            case .dataset(var d):
                let line = Registry.failure("dataset.fail", model: nil, target: d.fileName, owner: d.owner,
                                            reason: error.message)
                try registry.catalog.markDatasetFailed(id: d.id, error: error.message, token: token, audit: line)
                d.status = .failed; d.error = error.message
                item = .dataset(d)
            }
        } catch {
            registry.logger.error("could not mark \(item.displayName) failed (recorded once the catalog answers): \(error)")
            registry.deferFailure(item, token: token, claimed: claimed.value, reason: self.failure?.message ?? "\(error)",
                                  size: upload.bytesWritten, uploadStillOpen: !aborted)
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

/// The archive index being built from the current stream's sealed bytes.
final class IndexBox: Sendable {
    let format: String
    private let indexer = Locked<IngestIndex?>(nil)

    init(format: String) { self.format = format }

    /// An upload dropped without an end: its parser stops rather than wait for bytes forever.
    deinit { indexer.withLock { $0?.abandon() } }

    /// What takes a new stream's bytes from byte 0; the previous index is abandoned.
    func restart() -> (@Sendable (UnsafeRawBufferPointer) -> Void)? {
        if format == "safetensors" {
            let c = HeaderCapture()
            captured.withLock { $0 = c }
            return { c.feed($0) }
        }
        let made: IngestIndex? = indexer.withLock { current in
            current?.abandon()
            current = IngestIndex(format: format)
            return current
        }
        guard let made else { return nil }
        return { made.feed($0) }
    }

    var current: IngestIndex? { indexer.withLock { $0 } }
    private let captured = Locked<HeaderCapture?>(nil)
    var capture: HeaderCapture? { captured.withLock { $0 } }
}

/// The record count, fed from the stream's sealed bytes.
final class LineCounterBox: Sendable {
    let counter = Locked(LineCounter())
    var records: Int64 { counter.withLock { $0.records } }
}

/// A value shared between the upload's threads.
final class LockedBox<T: Sendable>: Sendable {
    private let stored: Locked<T>
    init(_ value: T) { stored = Locked(value) }
    var value: T {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}
