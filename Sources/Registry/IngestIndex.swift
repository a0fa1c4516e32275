import Archive
import Catalog
import Foundation
import ModelStore

/// Builds an archive's index from its bytes as the upload seals them, in order, so that its
/// directory view is ready the moment the version is: a tar's (or a `.tar.gz`'s) headers are
/// parsed on a thread of its own as the bytes go by; a zip's end record and central directory are
/// read from the last bytes kept when the upload completes. Only a window of the stream is kept
/// (4 MiB): a parser that falls behind it, a central directory larger than it, or a writer that
/// seeks leaves the index to be built on first access instead.
final class IngestIndex: Sendable {
    let kind: ArchiveKind
    private let stream: WindowedStream
    private let result = Locked<Result<ArchiveIndex, ArchiveError>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init?(format: String) {
        guard let kind = ArchiveKind(format: format) else { return nil }
        self.kind = kind
        stream = WindowedStream(keep: IngestIndex.window)
        guard kind != .zip else { return }
        let stream = self.stream, result = self.result, done = self.done
        Thread.detachNewThread {
            let built = Result { () throws(ArchiveError) in try ArchiveIndex.build(kind, stream) }
            result.withLock { $0 = built }
            stream.stop()
            done.signal()
        }
    }

    static let window = 4 << 20

    /// The next sealed bytes.
    func feed(_ bytes: UnsafeRawBufferPointer) { stream.append(bytes) }

    /// The index once the upload's bytes are all sealed (`size` of them), or why the bytes are
    /// no archive; nil when no verdict could be reached on the way (the first access decides).
    func finish(size: Int64) -> Result<ArchiveIndex, ArchiveError>? {
        stream.close(size: size)
        var outcome: Result<ArchiveIndex, ArchiveError>
        if kind == .zip {
            // Local headers are far behind by now: their offsets are read on a member's first open.
            outcome = Result { () throws(ArchiveError) in try ArchiveIndex.build(.zip, stream) }
        } else {
            guard done.wait(timeout: .now() + 30) == .success, let result = result.withLock({ $0 }) else { return nil }
            outcome = result
            // The tar parser read a stream of unknown length: a member the upload's end cut short
            // is found only now.
            if kind == .tar, case .success(var index) = outcome {
                index.cut(at: size)
                outcome = .success(index)
            }
        }
        // A parser that fell behind the window, or lost its bytes, reached no verdict.
        if stream.overrun { return nil }
        if case .failure(let e) = outcome, e.unreadable { return nil }
        return outcome
    }

    /// The upload failed or restarted: the parser stops.
    func abandon() { stream.close(size: -1) }
}

/// The last `keep` bytes of a stream being written, readable by offset; reads wait for bytes not
/// written yet, and fail for bytes already dropped (`overrun`).
final class WindowedStream: ByteSource, Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var start: Int64 = 0
        var closedSize: Int64?
        var overrun = false
        var stopped = false
    }
    private let state = Locked(State())
    private let changed = NSCondition()
    let keep: Int

    init(keep: Int) { self.keep = keep }

    var size: Int64 { state.withLock { $0.closedSize ?? Int64.max / 4 } }
    var overrun: Bool { state.withLock { $0.overrun } }

    func append(_ b: UnsafeRawBufferPointer) {
        state.withLock { s in
            guard !s.stopped, s.closedSize == nil else { return }
            s.bytes.append(contentsOf: b)
            // Dropped in large steps, so each byte moves once.
            if s.bytes.count > 2 * keep {
                let drop = s.bytes.count - keep
                s.bytes.removeFirst(drop)
                s.start += Int64(drop)
            }
        }
        changed.lock(); changed.broadcast(); changed.unlock()
    }

    func close(size: Int64) {
        state.withLock { s in if s.closedSize == nil { s.closedSize = size } }
        changed.lock(); changed.broadcast(); changed.unlock()
    }

    /// The parser is done: further bytes need not be kept.
    func stop() {
        state.withLock { s in s.stopped = true; s.bytes = [] }
    }

    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        changed.lock()
        defer { changed.unlock() }
        while true {
            let answer: Result<[UInt8], ArchiveError>? = state.withLock { s in
                if offset < s.start {
                    s.overrun = true
                    return .failure(ArchiveError("the index fell behind the upload", unreadable: true))
                }
                let end = s.start + Int64(s.bytes.count)
                if let closed = s.closedSize, closed < 0 { return .failure(ArchiveError("the upload stopped", unreadable: true)) }
                if offset + Int64(count) <= end || s.closedSize != nil {
                    let from = Int(min(offset - s.start, Int64(s.bytes.count)))
                    let to = Int(min(offset + Int64(count), end) - s.start)
                    return .success(from < to ? Array(s.bytes[from..<to]) : [])
                }
                return nil
            }
            if let answer { return try answer.get() }
            changed.wait()
        }
    }
}

/// The first bytes of a safetensors file as they are sealed, enough for its header (up to 16 MiB
/// of them), so its xattrs need no read of the object later.
final class HeaderCapture: Sendable {
    private let bytes = Locked<[UInt8]>([])
    static let limit = 16 << 20

    func feed(_ b: UnsafeRawBufferPointer) {
        bytes.withLock { have in
            if have.count < HeaderCapture.limit { have.append(contentsOf: b.prefix(HeaderCapture.limit - have.count)) }
        }
    }

    /// The header of the file of `size` bytes, why it has none, or nil when it is longer than
    /// what was kept (its first reader parses it).
    func header(size: Int64) -> Result<SafetensorsHeader, ArchiveError>? {
        let first = bytes.withLock { $0 }
        let length: Int64
        do { length = try SafetensorsHeader.headerLength(Array(first.prefix(8)), fileSize: size) } catch { return .failure(error) }
        guard 8 + Int(length) <= first.count else { return nil }
        return Result { () throws(ArchiveError) in try SafetensorsHeader.parse(Array(first[8..<(8 + Int(length))]), fileSize: size) }
    }
}
