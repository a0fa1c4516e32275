import Dispatch
import Foundation
import Logging
import ModelStore

/// The outcome of a finished upload.
public struct UploadResult: Sendable, Equatable {
    public var size: Int64
    public var sha256: String
    public var etag: String
    public var parts: Int
}

/// Callbacks that let the caller remember an upload in flight, so it can be resumed or aborted later.
public struct UploadHooks: Sendable {
    /// The multipart upload was created (after the first part filled).
    public var created: @Sendable (_ uploadID: String, _ sizing: PartSizing) throws(StoreError) -> Void
    /// A part was stored.
    public var partDone: @Sendable (_ part: UploadedPart) -> Void
    /// Just before the object appears (CompleteMultipartUpload or the single PUT): a throw
    /// aborts instead, so an upload whose row was taken from it never writes the key.
    public var completing: @Sendable () throws(StoreError) -> Void

    public init(created: @escaping @Sendable (String, PartSizing) throws(StoreError) -> Void = { _, _ in },
                partDone: @escaping @Sendable (UploadedPart) -> Void = { _ in },
                completing: @escaping @Sendable () throws(StoreError) -> Void = {}) {
        self.created = created
        self.partDone = partDone
        self.completing = completing
    }
}

/// What an interrupted upload had already stored, from ListParts.
public struct ResumePoint: Sendable {
    public var uploadID: String
    public var sizing: PartSizing
    public var parts: [Int: UploadedPart]

    public init(uploadID: String, sizing: PartSizing, parts: [UploadedPart]) {
        self.uploadID = uploadID
        self.sizing = sizing
        self.parts = Dictionary(parts.map { ($0.number, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The longest run of parts 1, 2, … each of the size the schedule gives it: what a writer
    /// that cannot send those bytes again continues after.
    public var wholeParts: [UploadedPart] {
        var run: [UploadedPart] = []
        while let part = parts[run.count + 1], part.size == Int64(sizing.size(ofPart: run.count + 1)) { run.append(part) }
        return run
    }
}

/// Streams bytes of unknown length into one object: cuts parts, uploads several in parallel
/// while the writer keeps writing, hashes everything with SHA-256 on the way, and completes or
/// aborts. Memory is bounded by `concurrency + 1` parts. A stream that ends before its first
/// part fills is stored with a single PUT.
///
/// `write` and `finish` are called from one thread at a time (the writer); parts upload on others.
public final class StreamingUpload: @unchecked Sendable {
    public let key: String
    private let store: any ObjectStore
    private let sizing: PartSizing
    private let hooks: UploadHooks
    private let logger: Logger
    private let slots: DispatchSemaphore
    private let inFlight = DispatchGroup()
    private let queue = DispatchQueue(label: "modelfs.upload", attributes: .concurrent)

    // Writer-side state.
    private var hasher = SHA256Hasher()
    private var buffer: [UInt8] = []
    private var nextPart = 1
    private var total: Int64 = 0
    private var uploadID: String?
    private var resume: ResumePoint?
    private var finished = false
    /// Continued after the parts object storage holds (``continueAfterStoredParts()``): the hasher
    /// never saw those bytes, so the digest is read back from the completed object.
    private var headUnhashed = false

    // Shared with part uploads.
    private let lock = NSLock()
    private var done: [Int: UploadedPart] = [:]
    private var failure: StoreError?
    /// Buffers of uploaded parts, kept for the next parts: a fresh multi-megabyte buffer is a
    /// fresh mapping the kernel zero-fills page by page.
    private var spares: [[UInt8]] = []

    /// A part's bytes, owned by its upload alone, so the buffer can be recycled afterwards.
    private final class PartBuffer: @unchecked Sendable { var bytes: [UInt8] = [] }

    public init(store: any ObjectStore, key: String, sizing: PartSizing = .standard, concurrency: Int = 4,
                hooks: UploadHooks = UploadHooks(), resume: ResumePoint? = nil,
                logger: Logger = Logger(label: "modelfs.upload")) {
        self.store = store
        self.key = key
        self.sizing = resume?.sizing ?? sizing
        self.hooks = hooks
        self.resume = resume
        self.uploadID = resume?.uploadID
        self.logger = logger
        self.slots = DispatchSemaphore(value: max(1, concurrency))
        buffer.reserveCapacity(self.sizing.size(ofPart: 1))
    }

    /// S3's limit for one object.
    public static let maximumObject: Int64 = 5 << 40

    /// Bytes accepted so far.
    public var bytesWritten: Int64 { lock.withLock { total } }

    /// Bytes cut into parts (each passed to `sealed`, and handed to object storage); the rest
    /// are held here, in the part being filled.
    public var sentBytes: Int64 { bytesWritten - Int64(buffer.count) }

    /// The bytes held in the part being filled, which start at `sentBytes`: what a writer that
    /// leaves the stream for a spool file still needs of it.
    public var unsentBytes: [UInt8] { buffer }

    /// Called with the stream's bytes, in order, once they can no longer change (as parts are
    /// cut): hashing and record counting see the final bytes even when a writer patched some.
    public var sealed: ((UnsafeRawBufferPointer) -> Void)?

    /// The first failure of a part upload, if any; `write` throws it too.
    public var error: StoreError? { lock.withLock { failure } }

    /// Appends bytes to the stream. Blocks while `concurrency` parts are in flight.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        if let error { throw error }
        precondition(!finished, "write after finish")
        if bytesWritten + Int64(bytes.count) > StreamingUpload.maximumObject {
            throw record(StoreError(.fileTooBig, "\(key) would pass object storage's 5 TiB limit for one object"))
        }
        lock.withLock { total += Int64(bytes.count) }
        var offset = 0
        while offset < bytes.count {
            // A full part is cut only once more data follows, so a stream of exactly one part is one PUT.
            if buffer.count == sizing.size(ofPart: nextPart) { try flushPart() }
            let take = min(sizing.size(ofPart: nextPart) - buffer.count, bytes.count - offset)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
            offset += take
        }
    }

    /// Writes at `offset`: past the end, the hole is zero-filled into the stream (a sparse `cp`);
    /// before it, the bytes still held in the current part are patched in place (a zip writer
    /// rewriting a member's header). Returns false, writing nothing, when `offset` lies in a part
    /// already handed to object storage.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError) -> Bool {
        let end = bytesWritten
        if offset > end {
            let zeros = [UInt8](repeating: 0, count: 1 << 20)
            var gap = offset - end
            while gap > 0 {
                let n = Int(min(gap, Int64(zeros.count)))
                try zeros.withUnsafeBytes { z in Result { () throws(StoreError) in try write(UnsafeRawBufferPointer(rebasing: z[0..<n])) } }.get()
                gap -= Int64(n)
            }
        }
        if offset >= end || bytes.isEmpty {
            try write(bytes)
            return true
        }
        let bufferStart = end - Int64(buffer.count)
        guard offset >= bufferStart else { return false }
        if let error { throw error }
        let inside = Int(min(Int64(bytes.count), end - offset))
        let at = Int(offset - bufferStart)
        buffer.withUnsafeMutableBytes { b in
            UnsafeMutableRawBufferPointer(rebasing: b[at..<(at + inside)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<inside]))
        }
        if inside < bytes.count { try write(UnsafeRawBufferPointer(rebasing: bytes[inside...])) }
        return true
    }

    /// Continues an interrupted upload from its stored parts rather than from byte 0: the
    /// writer's next byte follows the longest run of whole parts 1, 2, … that object storage
    /// holds (as ListParts said, each of the size the schedule gives it). For a writer that cannot
    /// send those bytes again (a client over HTTP); ``finish()`` then reads the object back for its
    /// sha256. Returns that offset. Call before the first write.
    public func continueAfterStoredParts() -> Int64 {
        precondition(bytesWritten == 0 && nextPart == 1, "continue before the first write")
        guard let resume else { return 0 }
        var offset: Int64 = 0
        for part in resume.wholeParts {
            lock.withLock { done[part.number] = part }
            offset += part.size
            nextPart += 1
        }
        lock.withLock { total = offset }
        headUnhashed = offset > 0
        buffer.reserveCapacity(sizing.size(ofPart: nextPart))
        return offset
    }

    /// The writer went away for good before the end: parts in flight are waited for, and the
    /// multipart upload stays open with what it holds, for a resume. Nothing is aborted.
    public func leave() {
        finished = true
        inFlight.wait()
        buffer = []
    }

    /// The sha256 of the completed object, read back in 8 MiB pieces.
    private func digestReadBack(size: Int64) throws(StoreError) -> String {
        let h = SHA256Hasher()
        var at: Int64 = 0
        while at < size {
            let piece = at..<min(at + (8 << 20), size)
            let bytes: [UInt8]
            do { bytes = try store.get(key, range: piece) } catch { throw error.storeError }
            guard bytes.count == piece.count else { throw StoreError(.io, "reading \(key) back for its sha256: \(bytes.count) of \(piece.count) bytes") }
            h.update(bytes)
            at = piece.upperBound
        }
        return Digest.hex(h.finalize())
    }

    /// Hashes bytes that are final.
    private func seal(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { b in
            hasher.update(b)
            sealed?(b)
        }
    }

    public func write(_ bytes: [UInt8]) throws(StoreError) {
        try bytes.withUnsafeBytes { b in Result { () throws(StoreError) in try write(b) } }.get()
    }

    /// Hands the buffer to a part upload, creating the multipart upload with the first part.
    private func flushPart() throws(StoreError) {
        if uploadID == nil {
            do {
                let id = try store.createMultipartUpload(key)
                uploadID = id
                try hooks.created(id, sizing)
            } catch let e as ObjectStoreError {
                throw record(e.storeError)
            } catch {
                throw record(error as? StoreError ?? StoreError(.io, "\(error)"))
            }
        }
        let number = nextPart
        seal(buffer)
        let part = PartBuffer()
        swap(&part.bytes, &buffer)
        nextPart += 1
        buffer = lock.withLock { spares.popLast() } ?? []
        buffer.reserveCapacity(sizing.size(ofPart: nextPart))
        if let existing = resume?.parts[number], existing.size == Int64(part.bytes.count),
           existing.etag == Digest.hex(Digest.md5(part.bytes)) {
            lock.withLock { done[number] = existing }
            return
        }
        slots.wait()
        if let error { slots.signal(); throw error }
        inFlight.enter()
        queue.async { [self] in
            defer { slots.signal(); inFlight.leave() }
            guard error == nil, let uploadID else { return }
            defer {
                part.bytes.removeAll(keepingCapacity: true)  // the only reference again: kept
                lock.withLock { if spares.count < 2 { spares.append(part.bytes) } }
            }
            do throws(ObjectStoreError) {
                let etag = try store.uploadPart(key, uploadID: uploadID, number: number, part.bytes)
                let uploaded = UploadedPart(number: number, etag: etag, size: Int64(part.bytes.count))
                lock.withLock { done[number] = uploaded }
                hooks.partDone(uploaded)
            } catch {
                logger.warning("part \(number) of \(key) failed: \(error)")
                record(error.storeError)
            }
        }
    }

    @discardableResult
    private func record(_ error: StoreError) -> StoreError {
        lock.withLock {
            if failure == nil { failure = error }
            return failure!
        }
    }

    /// Ends the stream: uploads the last part and completes the object (or PUTs a small one).
    /// On failure the multipart upload is aborted and the error thrown.
    public func finish() throws(StoreError) -> UploadResult {
        precondition(!finished, "finish twice")
        finished = true
        let total = bytesWritten
        do throws(StoreError) {
            // A write already failed: the bytes held here are not the whole stream.
            if let error { throw error }
            if uploadID == nil && resume == nil {
                seal(buffer)
                let digest = Digest.hex(hasher.finalize())
                try hooks.completing()
                let etag: String
                do { etag = try store.put(key, buffer) } catch { throw error.storeError }
                buffer = []
                return UploadResult(size: total, sha256: digest, etag: etag, parts: 0)
            }
            // A resumed upload may have nothing left but the last part, or nothing at all.
            if !buffer.isEmpty || nextPart == 1 { try flushPart() }
            var digest = Digest.hex(hasher.finalize())
            inFlight.wait()
            if let error { throw error }
            let parts = lock.withLock { done.values.sorted { $0.number < $1.number } }
            guard parts.count == nextPart - 1 else {
                throw StoreError(.io, "upload of \(key) lost parts: have \(parts.count) of \(nextPart - 1)")
            }
            try hooks.completing()
            let etag: String
            do { etag = try store.completeMultipartUpload(key, uploadID: uploadID!, parts: parts) } catch { throw error.storeError }
            abortStrays()
            if headUnhashed { digest = try digestReadBack(size: total) }
            return UploadResult(size: total, sha256: digest, etag: etag, parts: parts.count)
        } catch {
            abortQuietly()
            throw error
        }
    }

    /// Gives up: waits for parts in flight and aborts the multipart upload. Returns false when the
    /// abort itself failed, so the caller can remember to retry it.
    @discardableResult
    public func abort() -> Bool {
        finished = true
        record(StoreError(.io, "upload of \(key) aborted"))
        return abortQuietly()
    }

    @discardableResult
    private func abortQuietly() -> Bool {
        inFlight.wait()
        buffer = []
        guard let uploadID else { return true }
        do {
            try store.abortMultipartUpload(key, uploadID: uploadID)
            abortStrays()
            return true
        } catch {
            logger.warning("could not abort upload \(uploadID) of \(key): \(error)")
            abortFailed = true
            return false
        }
    }

    /// A CreateMultipartUpload whose answer was lost and retried leaves a second upload open on
    /// the server under this key; nothing else writes this key, so any other upload is a stray.
    private func abortStrays() {
        guard let pending = try? store.listMultipartUploads(prefix: key) else { return }
        for stray in pending where stray.key == key && stray.uploadID != uploadID {
            try? store.abortMultipartUpload(key, uploadID: stray.uploadID)
        }
    }

    /// True when the multipart upload could not be aborted and is still in the bucket.
    public private(set) var abortFailed = false

    /// The multipart upload id, once one was created.
    public var multipartUploadID: String? { uploadID }
}
