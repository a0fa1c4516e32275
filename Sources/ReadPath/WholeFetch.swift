import Dispatch
import Foundation
import Metrics
import Glibc
import ModelStore

/// Streams `range` of an object to `consume` in order, piece by piece as it arrives; returns how
/// many bytes were handed over. `consume` answers false to stop the transfer.
public typealias RangeStreamer = @Sendable (_ range: Range<Int64>, _ consume: (UnsafeRawBufferPointer) -> Bool) throws(StoreError) -> Int64

/// Whole-object loads at the wire's rate. Once a reader shows it will read an object whole (a
/// loader's tensor after tensor, a long sequential run, many chunks from several offsets), the
/// object is fetched with parallel ranged GETs straight into its disk-cache data file — each GET's
/// bytes gathered as they arrive into a small piece buffer, then checksummed and written while
/// still in the CPU's cache, never through the memory cache — and readers are served from that
/// file (spliced to the kernel) as soon as their range has landed, piece by piece, not segment by
/// segment. A reader ahead of the fetch has its range fetched next, and the fetch carries on from
/// there. Once every block has landed and checked out, the data file is the object's `wholeFile`.
///
/// One fetch per object, shared by every reader of it, so eight readers fetch it once.
public final class WholeFetches: @unchecked Sendable {
    public let disk: DiskCache
    /// What a waiting reader asks for first, and the unit of progress (a multiple of the disk
    /// cache's block size).
    public let segmentSize: Int
    /// The most one ranged GET asks for: a run of consecutive missing segments. Fewer, longer GETs
    /// cost the server less per byte (on RGW, a GET of 8 MiB costs it a third more CPU per byte
    /// than one of 32 MiB), while a reader who jumps still waits for one segment, not a run.
    public let runSize: Int
    /// GETs in the air for one object.
    public let streams: Int
    /// What a GET gathers before it lands (checksummed, written, readers told): a multiple of the
    /// disk cache's block size that stays in the CPU's cache.
    public let pieceSize: Int
    /// GETs in the air across objects, each with a buffer of `pieceSize`: the memory bound.
    private let slots: DispatchSemaphore
    private let buffers: ChunkPool
    private let queue = DispatchQueue(label: "modelfs.whole-fetch", attributes: .concurrent)
    /// Complete copies being flushed and recorded: an unmount waits for them (``drain``), or the
    /// next mount would check the copy again.
    private let recording = DispatchGroup()

    private struct Weak { weak var fetch: WholeFetch? }
    private let lock = NSLock()
    private var fetches: [UInt64: Weak] = [:]
    /// Waits until reads of a range already in the air by another path (the memory cache's
    /// ranged GETs and their copies to disk) have landed: a segment is then read back from disk,
    /// not fetched a second time. Set once, by the cache that owns this.
    var settle: (@Sendable (_ object: UInt64, _ range: Range<Int64>) -> Void)?

    // Counters for `.stats`.
    private var started: Int64 = 0
    private var completed: Int64 = 0
    private var failed: Int64 = 0
    private var served: Int64 = 0
    /// `modelfs_read_bytes_total{source="disk"}`: a whole copy is in the disk cache.
    private let servedMetric: Counter?

    public init(disk: DiskCache, segmentSize: Int = 8 << 20, runSize: Int = 32 << 20, streams: Int = 8, maxInFlight: Int = 8,
                pieceSize: Int = WholeFetches.defaultPieceSize, served: Counter? = nil) {
        self.disk = disk
        servedMetric = served
        let block = Int(disk.blockSize)
        self.segmentSize = max(block, segmentSize / block * block)
        self.runSize = max(self.segmentSize, runSize)
        self.streams = max(1, streams)
        self.pieceSize = min(self.segmentSize, max(block, pieceSize / block * block))
        slots = DispatchSemaphore(value: max(1, maxInFlight))
        buffers = ChunkPool(chunkSize: self.pieceSize, maxFree: max(1, maxInFlight))
    }

    /// 256 KiB: eight of them in flight stay within a 2 MiB L2 cache. `MODELFS_WHOLE_PIECE_KIB`
    /// sets another (for benchmarks).
    public static let defaultPieceSize = (ProcessInfo.processInfo.environment["MODELFS_WHOLE_PIECE_KIB"].flatMap { Int($0) } ?? 256) << 10

    public struct Counters: Sendable, Equatable {
        public var started: Int64
        public var completed: Int64
        public var failed: Int64
        public var bytesServed: Int64
    }

    public var counters: Counters {
        lock.withLock { Counters(started: started, completed: completed, failed: failed, bytesServed: served) }
    }

    /// The complete, checked copy of `object` when this process has one: no fetch, no wait.
    func complete(object: UInt64, size: Int64) -> WholeFetch? {
        if let live = lock.withLock({ fetches[object]?.fetch }), live.isComplete { return live }
        guard disk.isVerified(object: object, size: size) else { return nil }
        return attach(object: object, size: size, reader: nil)
    }

    /// The fetch of `object`, started now unless one is under way or done; nil when the object
    /// cannot be held in the disk cache (larger than what is free of other held objects).
    func fetch(object: UInt64, size: Int64, reader: @escaping RangeStreamer) -> WholeFetch? {
        attach(object: object, size: size, reader: reader)
    }

    /// The fetch of `object` under way (or done) in this process: a reader that has not yet
    /// shown a whole load joins it rather than fetching the same bytes through memory.
    func live(object: UInt64) -> WholeFetch? {
        lock.withLock {
            guard let live = fetches[object]?.fetch, !live.isFailed else { return nil }
            return live
        }
    }

    /// Whether `object`'s every block is on disk by the index (a warm cache after a remount): its
    /// first reader checks it into a whole copy instead of reading it block by block.
    func onDisk(object: UInt64, size: Int64) -> Bool {
        size > 0 && disk.has(object: object, range: 0..<size)
    }

    private func attach(object: UInt64, size: Int64, reader: RangeStreamer?) -> WholeFetch? {
        lock.lock()
        if let live = fetches[object]?.fetch, !live.isFailed {
            lock.unlock()
            return live
        }
        lock.unlock()
        guard size > 0, disk.pin(object: object, size: size) else { return nil }
        // One descriptor for all of it: readers, the streams' writes, the blocks found on disk, and
        // the check of a complete copy. Another mount of the directory may evict the object and
        // write some of it again under its name meanwhile: this fetch goes on in the file it opened.
        guard let fd = disk.openData(object: object, create: reader != nil) else {
            disk.unpin(object: object)
            return nil
        }
        let verified = disk.isVerified(object: object, size: size, fd: fd)
        // Without a reader to fetch with, only a checked copy will do (it may have gone meanwhile).
        guard verified || reader != nil else {
            close(fd)
            disk.unpin(object: object)
            return nil
        }
        let fetch = WholeFetch(owner: self, object: object, size: size, segmentSize: segmentSize,
                               runSegments: runSize / segmentSize, fd: fd, complete: verified)
        lock.lock()
        // Another reader may have attached meanwhile: one fetch per object.
        if let live = fetches[object]?.fetch, !live.isFailed {
            lock.unlock()
            return live  // `fetch` unpins and closes as it goes
        }
        fetches[object] = Weak(fetch: fetch)
        if !verified { started += 1 }
        lock.unlock()
        if !verified, let reader {
            disk.preallocate(fd: fetch.fd, size: size)
            for _ in 0..<min(streams, fetch.segments) { queue.async { self.work(fetch, reader: reader) } }
        }
        return fetch
    }

    /// One stream: takes runs of segments (a waiting reader's first) until none is left.
    private func work(_ fetch: WholeFetch, reader: RangeStreamer) {
        let writer = DiskCache.Writer(cache: disk, object: fetch.object, data: fetch.fd)
        while let run = fetch.next() {
            slots.wait()
            let chunk = buffers.take(pieceSize)
            let outcome = fill(fetch, segments: run, buffer: chunk.buffer, writer: writer, reader: reader)
            slots.signal()
            withExtendedLifetime(chunk) {}
            switch outcome {
            case .success:
                // Counted before the last segment wakes its readers: one who then unmounts waits.
                recording.enter()
                if fetch.landed(run) {
                    disk.markComplete(object: fetch.object, size: fetch.size, fd: fetch.fd)
                    lock.withLock { completed += 1 }
                }
                recording.leave()
            case .failure(let error):
                if fetch.fail(error) { lock.withLock { failed += 1 } }
                return
            }
        }
    }

    /// Brings a run of segments onto disk, from its start on: blocks already there (another
    /// mount's, an earlier reader's) are read back and checked, the rest fetched, checked and written.
    private func fill(_ fetch: WholeFetch, segments: Range<Int>, buffer: UnsafeMutableRawBufferPointer, writer: DiskCache.Writer,
                      reader: RangeStreamer) -> Result<Void, StoreError> {
        let range = fetch.range(of: segments)
        settle?(fetch.object, range)
        var at = range.lowerBound
        var retried: Int64 = -1
        while at < range.upperBound {
            if let failure = fetch.failure { return .failure(failure) }
            // The next run of blocks that are all on disk, or all missing.
            let (present, end) = disk.run(object: fetch.object, from: at, to: range.upperBound)
            if present && retried != at {
                // Checked a buffer at a time; a bad block is dropped from the index, and the run
                // is split around it next time (or, failing again, fetched).
                let upTo = min(end, at + Int64(buffer.count))
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(upTo - at)])
                if disk.read(object: fetch.object, range: at..<upTo, into: piece, file: fetch.fd) {
                    at = upTo
                    fetch.progress(segments, to: at)
                } else {
                    retried = at
                }
                continue
            }
            if case .failure(let error) = land(fetch, segments: segments, run: at..<end, buffer: buffer, writer: writer, reader: reader) {
                return .failure(error)
            }
            at = end
        }
        return .success(())
    }

    /// Fetches `run` with one GET and lands it as it arrives: a buffer full at a time (whole
    /// blocks, or the run's end) is checksummed and written, then readers waiting on it are told.
    /// A failed or short GET leaves what it landed (checked bytes of the object) and claims no
    /// block beyond it.
    private func land(_ fetch: WholeFetch, segments: Range<Int>, run: Range<Int64>, buffer: UnsafeMutableRawBufferPointer,
                      writer: DiskCache.Writer, reader: RangeStreamer) -> Result<Void, StoreError> {
        var staged = 0
        var landed = run.lowerBound
        var kept = true
        let received: Int64
        do throws(StoreError) {
            received = try reader(run) { bytes in
                var rest = bytes
                while !rest.isEmpty {
                    let n = min(rest.count, buffer.count - staged, Int(run.upperBound - landed) - staged)
                    guard n > 0 else { return false }  // more than the run: never kept
                    (buffer.baseAddress! + staged).copyMemory(from: rest.baseAddress!, byteCount: n)
                    staged += n
                    rest = UnsafeRawBufferPointer(rebasing: rest[n...])
                    if staged == buffer.count || landed + Int64(staged) == run.upperBound {
                        let piece = landed..<(landed + Int64(staged))
                        kept = writer.write(range: piece, bytes: UnsafeRawBufferPointer(rebasing: buffer[..<staged]))
                        guard kept else { return false }
                        landed = piece.upperBound
                        staged = 0
                        fetch.progress(segments, to: landed)
                    }
                }
                return !fetch.isFailed
            }
        } catch {
            return .failure(error)
        }
        if let failure = fetch.failure { return .failure(failure) }
        guard kept else { return .failure(StoreError(.io, "the disk cache could not keep the bytes at \(landed)")) }
        guard received == run.count, landed == run.upperBound else {
            return .failure(StoreError(.io, "short read: \(received) of \(run.count) bytes at \(run.lowerBound)"))
        }
        return .success(())
    }

    /// Waits until every complete copy is recorded (unmount, `.stats`, tests).
    public func drain() { recording.wait() }

    func countServed(_ bytes: Int) {
        lock.withLock { served += Int64(bytes) }
        servedMetric?.increment(by: bytes)
    }

    /// The object's version was deleted: its fetch stops and its readers answer `ESTALE`.
    public func forget(object: UInt64) {
        lock.withLock { fetches.removeValue(forKey: object)?.fetch }?.fail(StoreError(.stale, "the version was deleted while it was open"),
                                                                           stale: true)
    }

    /// The last reader and stream of a fetch are gone. Later, on the queue: a fetch may go
    /// while this registry's lock is held (a weak reference loaded under it).
    fileprivate func release(object: UInt64) {
        queue.async { [self] in
            lock.withLock {
                if let entry = fetches[object], entry.fetch == nil { fetches[object] = nil }
            }
            disk.unpin(object: object)
        }
    }
}

/// One object's whole fetch: which segments have landed, and who waits for which.
public final class WholeFetch: @unchecked Sendable {
    let object: UInt64
    let size: Int64
    let segmentSize: Int64
    let segments: Int
    /// The most segments one GET takes on.
    let runSegments: Int
    /// The data file: the streams write it, replies splice from it, and once complete it is the
    /// object's whole file. Only ever this descriptor, never the name again.
    let fd: Int32
    /// Held strongly: a stream may let go of the last fetch after the registry went (tests).
    private let owner: WholeFetches

    private enum State { case missing, fetching, landed }
    private let lock = NSLock()
    private var state: [State]
    /// Of a segment being fetched: up to where (an offset in the object) its bytes have landed.
    private var landedTo: [Int64]
    /// Readers waiting, each for its own range: woken once, when all of it has landed (or the
    /// fetch failed), not by every piece of every stream. A wake-up per landed piece cost each
    /// waiting 512 KiB read several thread switches (8 streams land pieces at once).
    private var waiters: [Waiter] = []
    /// Waiters woken so far (tests).
    private var wakeups = 0
    private var remaining: Int
    /// Segments readers wait for, first come first fetched.
    private var urgent: [Int] = []
    /// Where the next stream goes when no reader waits: after the last segment a reader asked for.
    private var cursor = 0
    private var error: StoreError?
    private var stale = false

    fileprivate init(owner: WholeFetches, object: UInt64, size: Int64, segmentSize: Int, runSegments: Int, fd: Int32, complete: Bool) {
        self.owner = owner
        self.object = object
        self.size = size
        self.segmentSize = Int64(segmentSize)
        self.runSegments = max(1, runSegments)
        self.fd = fd
        segments = Int((size + Int64(segmentSize) - 1) / Int64(segmentSize))
        state = Array(repeating: complete ? .landed : .missing, count: segments)
        landedTo = Array(repeating: 0, count: segments)
        remaining = complete ? 0 : segments
    }

    deinit {
        close(fd)
        owner.release(object: object)
    }

    var isComplete: Bool { lock.withLock { remaining == 0 && error == nil } }
    var isFailed: Bool { lock.withLock { error != nil } }
    var failure: StoreError? { lock.withLock { error } }
    /// Readers waiting now, and how many times a waiting reader was woken (tests).
    var waitersAndWakeups: (waiting: Int, woken: Int) { lock.withLock { (waiters.count, wakeups) } }

    func range(of segment: Int) -> Range<Int64> {
        Int64(segment) * segmentSize..<min(Int64(segment + 1) * segmentSize, size)
    }

    func range(of run: Range<Int>) -> Range<Int64> {
        range(of: run.lowerBound).lowerBound..<range(of: run.upperBound - 1).upperBound
    }

    /// The next run to fetch — a waiting reader's segment first, then on from the last one asked
    /// for — or nil when none is left (or the fetch failed). A run is consecutive missing segments
    /// up to `runSegments`; it stops before a segment another reader waits for, which the next
    /// free stream takes.
    fileprivate func next() -> Range<Int>? {
        lock.withLock {
            guard error == nil else { return nil }
            while let s = urgent.first {
                urgent.removeFirst()
                if state[s] == .missing { return claim(from: s) }
            }
            for i in 0..<segments {
                let s = (cursor + i) % segments
                if state[s] == .missing { return claim(from: s) }
            }
            return nil
        }
    }

    /// Under the lock: marks the run from `first` as being fetched.
    private func claim(from first: Int) -> Range<Int> {
        var end = first + 1
        while end < segments, end - first < runSegments, state[end] == .missing, !urgent.contains(end) { end += 1 }
        for s in first..<end { state[s] = .fetching }
        cursor = end
        return first..<end
    }

    /// Records that the run's bytes up to `offset` are on disk and checked.
    fileprivate func progress(_ run: Range<Int>, to offset: Int64) {
        wake(lock.withLock {
            for s in run where offset > range(of: s).lowerBound {
                landedTo[s] = min(offset, range(of: s).upperBound)
            }
            return takeReady()
        })
    }

    /// One reader waiting for `range` (segments `first...last`).
    private final class Waiter {
        let range: Range<Int64>
        let segments: ClosedRange<Int>
        let woken = DispatchSemaphore(value: 0)
        init(range: Range<Int64>, segments: ClosedRange<Int>) { self.range = range; self.segments = segments }
    }

    /// Whether all of `range` (in `segments`) is on disk.
    private func hasLanded(_ segments: ClosedRange<Int>, _ range: Range<Int64>) -> Bool {
        segments.allSatisfy { hasLanded($0, range) }
    }

    /// Under the lock: the waiters that can go on now (their range landed, or the fetch failed),
    /// taken off the list.
    private func takeReady() -> [Waiter] {
        guard !waiters.isEmpty else { return [] }
        if error != nil || stale {
            defer { waiters = [] }
            return waiters
        }
        var ready: [Waiter] = []
        waiters.removeAll { w in
            guard hasLanded(w.segments, w.range) else { return false }
            ready.append(w)
            return true
        }
        wakeups += ready.count
        return ready
    }

    /// Outside the lock, so a woken reader does not block on it at once.
    private func wake(_ ready: [Waiter]) {
        for w in ready { w.woken.signal() }
    }

    /// Whether `range`'s bytes in `segment` are on disk.
    private func hasLanded(_ segment: Int, _ range: Range<Int64>) -> Bool {
        switch state[segment] {
        case .landed: return true
        case .missing: return false
        case .fetching: return landedTo[segment] >= min(range.upperBound, self.range(of: segment).upperBound)
        }
    }

    /// Records a run of segments on disk; true when it held the last one.
    fileprivate func landed(_ run: Range<Int>) -> Bool {
        let (last, ready) = lock.withLock { () -> (Bool, [Waiter]) in
            var changed = false
            for s in run where state[s] != .landed {
                state[s] = .landed
                remaining -= 1
                changed = true
            }
            guard changed else { return (false, []) }
            return (remaining == 0 && error == nil, takeReady())
        }
        wake(ready)
        return last
    }

    /// Stops the fetch; true the first time.
    @discardableResult
    fileprivate func fail(_ error: StoreError, stale: Bool = false) -> Bool {
        let (first, ready) = lock.withLock { () -> (Bool, [Waiter]) in
            if stale { self.stale = true }
            let first = self.error == nil
            if first { self.error = error }
            return (first, takeReady())
        }
        wake(ready)
        return first
    }

    /// Waits until `range` has landed, asking for it first; false when the fetch failed (the
    /// reader reads as before). Throws `ESTALE` once the version was deleted.
    func wait(for range: Range<Int64>) throws(StoreError) -> Bool {
        let wanted = range.clamped(to: 0..<size)
        guard !wanted.isEmpty else { return true }
        let segments = Int(wanted.lowerBound / segmentSize)...Int((wanted.upperBound - 1) / segmentSize)
        var asked = false
        while true {
            lock.lock()
            if stale {
                lock.unlock()
                throw StoreError(.stale, "the version was deleted while it was open")
            }
            let landed = hasLanded(segments, wanted), failed = error != nil
            if landed || failed {
                lock.unlock()
                return landed
            }
            if !asked {
                asked = true
                for s in segments where state[s] == .missing && !urgent.contains(s) { urgent.append(s) }
            }
            let waiter = Waiter(range: wanted, segments: segments)
            waiters.append(waiter)
            lock.unlock()
            waiter.woken.wait()
        }
    }

    /// Serves `length` bytes at `offset` from the data file once they have landed; nil when the
    /// fetch failed (the caller reads as before).
    func read(offset: Int64, length: Int) throws(StoreError) -> ReadReply? {
        let lower = min(max(offset, 0), size)
        let count = Int(min(Int64(length), size - lower))
        guard try wait(for: lower..<(lower + Int64(count))) else { return nil }
        owner.countServed(count)
        return .file(descriptor: fd, offset: lower, count: count)
    }
}
