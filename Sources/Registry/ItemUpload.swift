import Foundation
import Logging
import ModelStore
import Catalog
import UploadPath
import Archive

/// One version or dataset being written: bytes stream out through a ``StreamingUpload``;
/// `finish` makes it `ready` with its size and sha256 (and, for line-based datasets, its record
/// count); any failure makes it `failed` with the reason and leaves no half object and no open
/// multipart upload behind.
///
/// Its state (``UploadPhase``, size, item, failure) is one value behind one lock, read by any
/// thread; `write`, `resize`, `finish` and `abort` take turns (the writer's side, which does the
/// I/O outside that lock, so `stat` never waits for object storage).
public final class ItemUpload: FileUpload, @unchecked Sendable {
    private let registry: Registry
    private let hooks: UploadHooks
    private let recordID: LockedBox<Int64?>
    private let lines: LineCounterBox?
    /// The archive's index, built from the bytes as they are sealed (nil for other formats, and
    /// for a resumed upload, whose stream starts part way).
    private let index: IndexBox?
    /// This upload's claim on its row, taken in the transaction that created (or restarted) the
    /// row: only it may complete or fail the row, and a row taken from it (deleted, replaced)
    /// makes it abort without touching the key.
    let token: String
    /// One writer's call at a time.
    private let turn = NSLock()
    private let state: Locked<State>
    /// What was sent, kept for a seek back (a mount with a spool).
    private let sent = Locked<SentCopy?>(nil)
    private let space = Locked<SpoolSpace?>(nil)

    /// Where the bytes go in each phase: the stream or the spool file, and whether an object
    /// already stands at the key (put there by a seek back that read the stream back).
    private enum Sink {
        case streaming(StreamingUpload)
        case spooled(SpoolFile, objectAtKey: Bool)
        case completing(StreamingUpload, spool: SpoolFile?, objectAtKey: Bool)
        case ended
    }

    private struct State {
        var shared: UploadState
        var sink: Sink
    }

    init(registry: Registry, item: UploadItem, token: String, resume: (ResumePoint, Int64)?, source: (path: String, size: Int64)?) {
        self.registry = registry
        self.token = token
        let catalog = registry.catalog
        let key = item.objectKey
        var versionID: VersionID?
        var datasetID: DatasetID?
        var lines: LineCounterBox?
        let format: String
        switch item {
        case .version(_, let v):
            versionID = v.id
            format = v.format
        case .dataset(let d):
            datasetID = d.id
            format = d.format
            if Formats.lineRecords.contains(d.format) { lines = LineCounterBox() }
        }
        self.lines = lines
        index = resume == nil && (ArchiveKind(format: format) != nil || format == "safetensors") ? IndexBox(format: format) : nil
        let recordID = LockedBox<Int64?>(resume?.1)
        self.recordID = recordID
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
                guard try catalog.ownsUpload(versionID: versionID, datasetID: datasetID, token: token) else {
                    throw StoreError(.io, "\(item.displayName) was deleted or replaced while it was written")
                }
            })
        self.hooks = hooks
        let stream = ItemUpload.stream(registry, key: key, hooks: hooks, resume: resume?.0, lines: lines, index: index)
        state = Locked(State(shared: UploadState(phase: .streaming, item: item, size: stream.bytesWritten), sink: .streaming(stream)))
        UploadMetrics.started()
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

    /// A mount's spool: where a writer that seeks back into sent bytes goes on, and where what
    /// the stream sends is kept meanwhile (up to ``keptLimit``), so that move reads nothing back.
    /// Without one, such a write is refused (`EINVAL`). Set before the first write.
    public func useSpool(_ spool: SpoolSpace?, keeping limit: Int64 = ItemUpload.keptLimit) {
        space.withLock { $0 = spool }
        guard let spool, case .streaming(let stream) = state.withLock({ $0.sink }), stream.bytesWritten == 0 else { return }
        let copy = SentCopy(space: spool, limit: limit)
        sent.withLock { $0 = copy }
        let previous = stream.sealed
        stream.sealed = { b in
            previous?(b)
            copy.append(b)
        }
    }

    /// How much of what a stream sent is kept for a seek back: past it, a seek back reads the
    /// object back from object storage. Small, because every writer pays for the copy and few
    /// seek back: at 256 MiB a `cp` of 256 MiB cost the mount twice the CPU (bench/ops.py).
    public static let keptLimit: Int64 = 32 << 20

    /// The upload's state now, as one value.
    public var current: UploadState { state.withLock { $0.shared } }

    /// The dataset being written (nil for a version).
    var datasetRow: DatasetID? {
        if case .dataset(let d) = item { return d.id }
        return nil
    }

    /// Runs one of the writer's calls: in turn, on the sink of the phase it finds; the size it
    /// returns is the file's from now on. A failure fails the upload.
    private func writerCall(_ body: (Sink) throws(StoreError) -> Int64) throws(StoreError) {
        turn.lock()
        defer { turn.unlock() }
        let (sink, shared) = state.withLock { ($0.sink, $0.shared) }
        if shared.isEnded {
            throw shared.failure ?? StoreError(.badDescriptor, "\(shared.item.displayName) is already complete: its last close completed it")
        }
        do {
            let size = try body(sink)
            state.withLock { $0.shared.size = size }
        } catch {
            fail(error)
            throw error
        }
    }

    /// Appends bytes; on failure the item is already `failed` when this throws.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        try writerCall { (sink) throws(StoreError) -> Int64 in
            switch sink {
            case .streaming(let stream):
                try stream.write(bytes)
                return stream.bytesWritten
            case .spooled(let file, _):
                try file.write(bytes, at: file.size)
                return file.size
            case .completing, .ended:
                preconditionFailure("a write while the upload ends")
            }
        }
    }

    /// Writes at any offset: in order it streams; a hole is zero-filled; a seek back into the
    /// part not yet sent patches it; a seek back further moves the file to the spool (without one,
    /// refused with `EINVAL`). A failure fails the upload.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError) {
        try writerCall { (sink) throws(StoreError) -> Int64 in
            let file: SpoolFile
            switch sink {
            case .streaming(let stream):
                if try stream.write(bytes, at: offset) { return stream.bytesWritten }
                file = try moveToSpool(stream, seekingTo: offset)
            case .spooled(let spooled, _):
                file = spooled
            case .completing, .ended:
                preconditionFailure("a write while the upload ends")
            }
            try file.write(bytes, at: offset)
            return file.size
        }
    }

    /// `ftruncate` while writing. The same size changes nothing. Longer (a writer that sizes its
    /// file first, as `safetensors` does, or `cp` of a sparse file ending in a hole): a short
    /// extension is zeros in the stream, a long one moves the file to the spool, where the hole
    /// costs nothing until written. Shorter is possible only in the spool; otherwise it fails the
    /// upload (`EINVAL`).
    public func resize(to size: Int64) throws(StoreError) {
        try writerCall { (sink) throws(StoreError) -> Int64 in
            let file: SpoolFile
            switch sink {
            case .streaming(let stream):
                let written = stream.bytesWritten
                if size == written { return written }
                let hasSpool = space.withLock { $0 != nil }
                if size > written && (size - written <= ItemUpload.zeroFillLimit || !hasSpool) {
                    _ = try stream.write(UnsafeRawBufferPointer(start: nil, count: 0), at: size)
                    return stream.bytesWritten
                }
                guard size > written else {
                    throw StoreError(.invalidArgument, "truncate to \(size) bytes after \(written) were written: versions are written from start to end")
                }
                file = try moveToSpool(stream, seekingTo: size)
            case .spooled(let spooled, _):
                if size == spooled.size { return size }
                file = spooled
            case .completing, .ended:
                preconditionFailure("a resize while the upload ends")
            }
            try file.resize(to: size)
            return file.size
        }
    }

    /// How long a hole may be to go into the stream as zeros rather than move the file to the spool.
    static let zeroFillLimit: Int64 = 64 << 20

    /// Leaves the stream for a spool file holding everything written so far. Nothing sent yet (a
    /// writer that seeks back or resizes within its first part): the part being filled is all.
    /// Sent parts kept in the spool: those, and the part being filled; the multipart upload is
    /// aborted. Otherwise (no copy, or too long to keep one): what was streamed is completed as
    /// the object and read back, and that object is replaced at the end.
    private func moveToSpool(_ stream: StreamingUpload, seekingTo offset: Int64) throws(StoreError) -> SpoolFile {
        guard let space = space.withLock({ $0 }) else {
            throw StoreError(.invalidArgument, "write at offset \(offset) after \(stream.bytesWritten) bytes were sent: this mount has no spool for writers that seek back")
        }
        let sentBytes = stream.sentBytes
        let kept = sent.withLock { $0 }?.take(holding: sentBytes)
        if sentBytes == 0 || kept != nil {
            let file: SpoolFile
            if let kept { file = kept } else { file = try space.create() }
            do throws(StoreError) {
                try stream.unsentBytes.withUnsafeBytes { b in
                    Result { () throws(StoreError) in try file.write(b, at: sentBytes) }
                }.get()
            } catch {
                file.close()
                throw error
            }
            guard stream.abort() else {
                file.close()
                throw StoreError(.io, "\(item.displayName): the parts sent before the seek back could not be aborted")
            }
            if let id = recordID.value { try? registry.catalog.deleteUpload(id: id); recordID.value = nil }
            state.withLock { $0.sink = .spooled(file, objectAtKey: false); $0.shared.phase = .spooled }
            registry.logger.notice("\(item.displayName): the writer sought back to \(offset); spooled \(file.size) bytes (\(sentBytes) kept while sent) to \(space.directory)")
            return file
        }
        let file = try space.create()
        let result: UploadResult
        do { result = try stream.finish() } catch {
            file.close()
            throw error
        }
        state.withLock { $0.sink = .spooled(file, objectAtKey: true); $0.shared.phase = .spooled }
        if let id = recordID.value { try? registry.catalog.deleteUpload(id: id); recordID.value = nil }
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var at: Int64 = 0
        let objects = registry.objects
        let key = item.objectKey
        while at < result.size {
            let n = Int(min(Int64(buffer.count), result.size - at))
            let got = try buffer.withUnsafeMutableBytes { b in
                Result { () throws(ObjectStoreError) in
                    try objects.get(key, range: at..<(at + Int64(n)), into: UnsafeMutableRawBufferPointer(rebasing: b[0..<n]))
                }
            }.mapError(\.storeError).get()
            guard got == n else { throw StoreError(.io, "reading back \(item.displayName) for the spool: \(got) of \(n) bytes") }
            try buffer.withUnsafeBytes { b in Result { () throws(StoreError) in try file.write(UnsafeRawBufferPointer(rebasing: b[0..<n]), at: at) } }.get()
            at += Int64(n)
        }
        registry.logger.notice("\(item.displayName): the writer sought back to \(offset); read \(result.size) bytes back into \(space.directory)")
        return file
    }

    /// Uploads the spool file from its start through `stream`, replacing what was streamed before the seek.
    private func uploadSpool(_ file: SpoolFile, _ stream: StreamingUpload) throws(StoreError) {
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var at: Int64 = 0
        while at < file.size {
            let n = file.read(at: at, into: &buffer)
            guard n > 0 else { throw StoreError(.io, "reading the spool file of \(item.displayName)") }
            try buffer.withUnsafeBytes { b in Result { () throws(StoreError) in try stream.write(UnsafeRawBufferPointer(rebasing: b[0..<n])) } }.get()
            at += Int64(n)
        }
    }

    /// Completes the upload: the item becomes `ready`.
    @discardableResult
    public func finish() throws(StoreError) -> UploadItem {
        turn.lock()
        defer { turn.unlock() }
        let (sink, shared) = state.withLock { ($0.sink, $0.shared) }
        if shared.isEnded {
            if let failure = shared.failure { throw failure }
            return shared.item
        }
        let result: UploadResult
        var spool: SpoolFile?
        do {
            let stream: StreamingUpload
            switch sink {
            case .streaming(let streaming):
                stream = streaming
                sent.withLock { $0 }?.drop()  // no seek back can come now: its last part need not be kept
                state.withLock { $0.sink = .completing(stream, spool: nil, objectAtKey: false); $0.shared.phase = .completing }
            case .spooled(let file, let objectAtKey):
                spool = file
                stream = ItemUpload.stream(registry, key: shared.item.objectKey, hooks: hooks, resume: nil, lines: lines, index: index)
                state.withLock { $0.sink = .completing(stream, spool: file, objectAtKey: objectAtKey); $0.shared.phase = .completing }
                try uploadSpool(file, stream)
            case .completing, .ended:
                preconditionFailure("finish while the upload ends")
            }
            result = try stream.finish()
        } catch {
            let failed = ItemUpload.atClose(error)
            fail(failed)
            throw failed
        }
        spool?.close()
        sent.withLock { $0 }?.drop()
        var item = shared.item
        do {
            switch item {
            case .version(let m, var v):
                try registry.catalog.markVersionReady(id: v.id, size: result.size, sha256: result.sha256, token: token)
                storeIndex(result)
                v.status = .ready; v.error = nil; v.size = result.size; v.sha256 = result.sha256
                item = .version(m, v)
                ended(.ready, item, size: result.size)
                registry.publishVersionEntry(v.id)
            case .dataset(var d):
                let records = lines?.records
                try registry.catalog.markDatasetReady(id: d.id, size: result.size, sha256: result.sha256, records: records, token: token)
                storeIndex(result)
                d.status = .ready; d.error = nil; d.size = result.size; d.sha256 = result.sha256; d.records = records
                item = .dataset(d)
                ended(.ready, item, size: result.size)
            }
        } catch {
            // The bytes are complete but the catalog could not say so: remove them rather than
            // leave an object no row vouches for — unless the row was taken from this upload and
            // another row owns the key by now.
            let taken = error.code == .notFound && (try? registry.catalog.objectKeyInUse(item.objectKey)) != false
            if !taken { try? registry.objects.delete(item.objectKey) }
            let failed = ItemUpload.atClose(error)
            ended(.failed, item, size: result.size, failure: failed)
            // The catalog did not answer: the row stays `uploading` until this failure is recorded.
            if error.code != .notFound {
                registry.deferFailure(item, token: token, reason: "its completion could not be recorded: \(error.message)",
                                      size: result.size, uploadStillOpen: false)
            }
            throw failed
        }
        return item
    }

    /// The end of the upload, as other threads see it from now on.
    private func ended(_ phase: UploadPhase, _ item: UploadItem, size: Int64, failure: StoreError? = nil) {
        state.withLock { s in
            s.sink = .ended
            s.shared = UploadState(phase: phase, item: item, size: size, failure: failure)
        }
        UploadMetrics.ended(item, ready: phase == .ready)
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

    /// Continues a resumed upload after the whole parts object storage holds, for a writer that
    /// sends only the rest (``StreamingUpload/continueAfterStoredParts()``). Returns the offset
    /// of the next byte the upload takes. Call before the first write.
    public func continueAfterStoredParts() -> Int64 {
        turn.lock()
        defer { turn.unlock() }
        guard case .streaming(let stream) = state.withLock({ $0.sink }) else { return 0 }
        let offset = stream.continueAfterStoredParts()
        state.withLock { $0.shared.size = offset }
        return offset
    }

    /// The writer is gone before the end (a client whose connection closed mid-body): unlike
    /// ``abort(reason:code:)`` the row stays `uploading` and the multipart upload open with the
    /// parts it holds (those in flight waited for), for a resume from the last whole part. Only
    /// a stream can be left so; anything else fails as an abort does.
    public func leaveForResume(reason: String) {
        turn.lock()
        defer { turn.unlock() }
        let left: StreamingUpload? = state.withLock { s in
            guard !s.shared.isEnded, case .streaming(let stream) = s.sink else { return nil }
            s.sink = .ended
            s.shared.phase = .failed
            s.shared.failure = StoreError(.io, reason)
            return stream
        }
        guard let left else { return fail(StoreError(.io, reason)) }
        UploadMetrics.ended(item, ready: false)
        index?.current?.abandon()
        sent.withLock { $0 }?.drop()
        left.leave()
    }

    /// Gives up on the upload, recording `reason`.
    public func abort(reason: String, code: StoreError.Code = .io) {
        turn.lock()
        defer { turn.unlock() }
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

    /// Ends the upload `failed` (called in turn): aborts what object storage holds of it, then
    /// records the failure on the row this upload owns.
    private func fail(_ error: StoreError) {
        let taken: (Sink, UploadState)? = state.withLock { s in
            guard !s.shared.isEnded else { return nil }
            let before = (s.sink, s.shared)
            s.sink = .ended
            s.shared.phase = .failed
            s.shared.failure = error
            return before
        }
        guard let (sink, shared) = taken else { return }
        UploadMetrics.ended(shared.item, ready: false)
        index?.current?.abandon()
        sent.withLock { $0 }?.drop()
        var aborted = true
        var objectAtKey = false
        switch sink {
        case .streaming(let stream):
            aborted = stream.abort()
        case .spooled(let file, let atKey):
            file.close()
            objectAtKey = atKey
        case .completing(let stream, let file, let atKey):
            aborted = stream.abort()
            file?.close()
            objectAtKey = atKey
        case .ended:
            break
        }
        // What a seek back completed at the key before the spool: nothing may stay there.
        if objectAtKey, (try? registry.catalog.ownsUpload(versionID: version?.id, datasetID: datasetRow, token: token)) == true {
            try? registry.objects.delete(shared.item.objectKey)
        }
        var item = shared.item
        do {
            switch item {
            case .version(let m, var v):
                let line = Registry.failure("version.fail", model: m.name, target: v.fileName, owner: v.owner,
                                            reason: error.message)
                try registry.catalog.markVersionFailed(id: v.id, error: error.message, size: shared.size,
                                                       uploadStillOpen: !aborted, token: token, audit: line)
                v.status = .failed; v.error = error.message
                item = .version(m, v)
                state.withLock { $0.shared.item = item }
                registry.publishVersionEntry(v.id)
            case .dataset(var d):
                let line = Registry.failure("dataset.fail", model: nil, target: d.fileName, owner: d.owner,
                                            reason: error.message)
                try registry.catalog.markDatasetFailed(id: d.id, error: error.message, token: token, audit: line)
                d.status = .failed; d.error = error.message
                item = .dataset(d)
                state.withLock { $0.shared.item = item }
            }
        } catch let unrecorded {
            registry.logger.error("could not mark \(item.displayName) failed (recorded once the catalog answers): \(unrecorded)")
            registry.deferFailure(item, token: token, reason: error.message, size: shared.size, uploadStillOpen: !aborted)
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
