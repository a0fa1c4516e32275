import Dispatch
import Foundation
import Metrics
import ModelStore

/// Fetches a byte range of one object: a ranged GET, or `pread` on the local store.
public typealias RangeFetcher = @Sendable (_ range: Range<Int64>) throws(StoreError) -> [UInt8]
/// Reads a byte range of one object into the given memory (room for all of it); returns how many
/// bytes it read.
public typealias RangeReader = @Sendable (_ range: Range<Int64>, _ into: UnsafeMutableRawBufferPointer) throws(StoreError) -> Int

/// The node-wide cache of object bytes, shared by every open file, with one memory budget.
///
/// Bytes live in fixed blocks keyed by (object id, block index). A block is fetched once even when
/// many readers want it at the same time (single flight): eight training ranks reading one
/// version fetch it from object storage once. Objects never change once ready, so entries never
/// need invalidation; least recently used blocks are dropped when the budget is exceeded.
public final class BlockCache: @unchecked Sendable {
    public let blockSize: Int
    public let budget: Int
    /// The largest single ranged GET; longer runs of missing blocks are split and fetched in parallel.
    public let maxRequest: Int

    private struct Key: Hashable { var object: UInt64; var block: Int64 }

    /// One ranged GET in flight; waiters block on `done` and read the result from here, so a
    /// block evicted right after it landed is still served.
    private final class Flight: @unchecked Sendable {
        let firstBlock: Int64
        let blocks: Int
        var chunk: Chunk?
        var count = 0
        var error: StoreError?
        let done = DispatchSemaphore(value: 0)
        private var waiters = 0
        init(firstBlock: Int64, blocks: Int) { self.firstBlock = firstBlock; self.blocks = blocks }

        /// Block `index` of this flight's bytes (only once it landed without error).
        func piece(_ index: Int64, blockSize: Int) -> CachedBytes.Piece {
            let lower = min(Int(index) * blockSize, count)
            return CachedBytes.Piece(chunk: chunk!, offset: lower, count: min(lower + blockSize, count) - lower)
        }
    }

    private final class Node {
        let key: Key
        let piece: CachedBytes.Piece
        var prev: Node?
        var next: Node?
        init(key: Key, piece: CachedBytes.Piece) { self.key = key; self.piece = piece }
    }

    private let lock = NSLock()
    private var entries: [Key: Node] = [:]
    private var flights: [Key: Flight] = [:]
    private var head: Node?   // most recently used
    private var tail: Node?   // least recently used
    /// Memory the cached blocks hold: whole chunks, counted while any block cut from one is
    /// cached. A block's chunk stays in memory as long as one of its blocks does, so counting
    /// only the blocks' bytes let chunks pinned by a few recently read blocks (and pooled chunks
    /// holding less than their size) add ~100 MiB to the budget (issue 21, h-rss).
    private var used = 0
    private var chunkBlocks: [ObjectIdentifier: Int] = [:]
    private let fetchSlots: DispatchSemaphore
    /// Bytes of fetches in the air, bounded: eight readers each planning their own window would
    /// otherwise have sixteen 16 MiB GETs (256 MiB) landing at once on top of the cache.
    private let inFlight: ByteBudget
    private let queue = DispatchQueue(label: "modelfs.fetch", attributes: .concurrent)
    /// Copies to the disk cache happen behind the readers: at most `diskBacklog` fetched ranges
    /// wait for the disk (their chunks kept alive); only a disk slower than the network holds a
    /// fetch back.
    private let diskQueue = DispatchQueue(label: "modelfs.disk-cache")
    private let diskBacklog = DispatchSemaphore(value: 4)

    // Counters for `.stats`.
    private var fetchedBytes: Int64 = 0
    private var fetchRequests: Int64 = 0
    private var hitBlocks: Int64 = 0
    private var missBlocks: Int64 = 0
    /// The same and more, for `/metrics`.
    let metrics: ReadMetrics

    /// Where fetched bytes also go, when the mount has `--cache-dir`.
    public let disk: DiskCache?
    /// Memory for fetches, reused.
    public let chunks: ChunkPool
    /// Whole-object fetches into the disk cache (none without one).
    public let whole: WholeFetches?

    public init(budget: Int = 128 << 20, blockSize: Int = 64 << 10, maxRequest: Int = 16 << 20, maxConcurrentFetches: Int = 16,
                maxBytesInFlight: Int = 64 << 20, disk: DiskCache? = nil) {
        self.disk = disk
        self.budget = budget
        self.blockSize = blockSize
        self.maxRequest = max(maxRequest, blockSize)
        self.fetchSlots = DispatchSemaphore(value: maxConcurrentFetches)
        chunks = ChunkPool(chunkSize: self.maxRequest, maxFree: 2)
        inFlight = ByteBudget(limit: max(maxBytesInFlight, self.maxRequest))
        // `MODELFS_WHOLE_LOADS=0`: the read path without whole-object fetches (for benchmarks).
        // `MODELFS_WHOLE_STREAMS`, `MODELFS_WHOLE_SEGMENT_MIB` and `MODELFS_WHOLE_RUN_MIB` tune its
        // GETs (for benchmarks).
        let env = ProcessInfo.processInfo.environment
        let streams = env["MODELFS_WHOLE_STREAMS"].flatMap { Int($0) } ?? 8
        let segment = (env["MODELFS_WHOLE_SEGMENT_MIB"].flatMap { Int($0) } ?? 8) << 20
        let run = (env["MODELFS_WHOLE_RUN_MIB"].flatMap { Int($0) } ?? 32) << 20
        let metrics = ReadMetrics()
        self.metrics = metrics
        whole = env["MODELFS_WHOLE_LOADS"] == "0" ? nil
            : disk.map { WholeFetches(disk: $0, segmentSize: segment, runSize: run, streams: streams, maxInFlight: streams, served: metrics.diskBytes) }
        whole?.settle = { [weak self] object, range in self?.settle(object: object, range: range) }
    }

    /// Waits for this cache's GETs of `range` of `object` in the air, and for their copies to the
    /// disk cache: a whole fetch starting while readers still fetched through memory then finds
    /// those bytes on disk instead of fetching them again (eight readers fetch a version once).
    func settle(object: UInt64, range: Range<Int64>) {
        guard !range.isEmpty else { return }
        let bs = Int64(blockSize)
        let pending: [Flight] = lock.withLock {
            var seen = Set<ObjectIdentifier>()
            var pending: [Flight] = []
            for b in (range.lowerBound / bs)...((range.upperBound - 1) / bs) {
                if let flight = flights[Key(object: object, block: b)], seen.insert(ObjectIdentifier(flight)).inserted {
                    pending.append(flight)
                }
            }
            return pending
        }
        for flight in pending {
            flight.done.wait()
            flight.done.signal()  // let the next waiter through
        }
        // A GET that landed just before is queued for the disk (queued before its flight ended).
        diskQueue.sync {}
    }

    public struct Counters: Sendable, Equatable, Codable {
        public var bytesFetched: Int64
        public var requests: Int64
        public var blockHits: Int64
        public var blockMisses: Int64
        public var bytesCached: Int
        public var diskBytesServed: Int64
        public var diskBytesUsed: Int64
        public var diskBlocksDropped: Int64
    }

    public var counters: Counters {
        lock.withLock {
            Counters(bytesFetched: fetchedBytes, requests: fetchRequests, blockHits: hitBlocks, blockMisses: missBlocks, bytesCached: used,
                     diskBytesServed: disk?.bytesServed ?? 0, diskBytesUsed: disk?.bytesUsed ?? 0,
                     diskBlocksDropped: disk?.blocksDropped ?? 0)
        }
    }

    /// Counts bytes a reader took from the store without the cache (the local store's files), so
    /// `.stats` tells what was read from the store whichever path served it.
    public func countDirect(bytes: Int) {
        lock.withLock {
            fetchRequests += 1
            fetchedBytes += Int64(bytes)
        }
        metrics.objectStoreBytes.increment(by: bytes)
    }

    /// Reads `range` of object `object` (of `size` bytes) into an array, fetching with `fetch`.
    public func read(object: UInt64, size: Int64, range: Range<Int64>, ahead: Range<Int64>? = nil,
                     fetch: @escaping RangeFetcher) throws(StoreError) -> [UInt8] {
        try read(object: object, size: size, range: range, ahead: ahead, reader: { (range, buffer) throws(StoreError) -> Int in
            let bytes = try fetch(range)
            let n = min(bytes.count, buffer.count)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
            return bytes.count  // a longer answer than asked for is an error the caller reports
        }).bytes
    }

    /// Reads `range` of object `object` (of `size` bytes), fetching what is missing with `reader`,
    /// and starts fetching `ahead` in the background. The bytes stay in the cache's memory.
    public func read(object: UInt64, size: Int64, range: Range<Int64>, ahead: Range<Int64>? = nil,
                     reader: @escaping RangeReader) throws(StoreError) -> CachedBytes {
        let wanted = range.clamped(to: 0..<size)
        guard !wanted.isEmpty else { return CachedBytes([]) }
        let bs = Int64(blockSize)
        let neededBlocks = (wanted.lowerBound / bs)...((wanted.upperBound - 1) / bs)
        var aheadBlocks: ClosedRange<Int64>?
        if let ahead = ahead?.clamped(to: 0..<size), !ahead.isEmpty {
            let first = max(ahead.lowerBound / bs, neededBlocks.upperBound + 1)
            let last = (ahead.upperBound - 1) / bs
            if first <= last { aheadBlocks = first...last }
        }

        // Under the lock: take what is cached, join flights in the air, plan fetches for the rest.
        var have: [Int64: CachedBytes.Piece] = [:]
        var waitOn: [Int64: Flight] = [:]
        var toStart: [Flight] = []
        var hits = 0, misses = 0
        lock.withLock {
            var run: [Int64] = []
            func flushRun() {
                guard !run.isEmpty else { return }
                let perRequest = max(1, maxRequest / blockSize)
                var i = 0
                while i < run.count {
                    let n = min(perRequest, run.count - i)
                    let flight = Flight(firstBlock: run[i], blocks: n)
                    for b in run[i..<(i + n)] {
                        flights[Key(object: object, block: b)] = flight
                        if neededBlocks.contains(b) { waitOn[b] = flight }
                    }
                    toStart.append(flight)
                    i += n
                }
                run = []
            }
            // The blocks read, then those ahead (which may start further on: a flight covers
            // contiguous blocks only, so a gap ends the run). The blocks read go in flights of
            // their own: the reader waits for them, not for a large GET of what lies ahead.
            var all = Array(neededBlocks)
            if let aheadBlocks { all += aheadBlocks }
            var previous: Int64?
            for b in all {
                if let previous, b != previous + 1 || b == neededBlocks.upperBound + 1 { flushRun() }
                previous = b
                let key = Key(object: object, block: b)
                let needed = neededBlocks.contains(b)
                if let node = entries[key] {
                    flushRun()
                    if needed {
                        have[b] = node.piece
                        touch(node)
                        hitBlocks += 1
                        hits += 1
                    }
                } else if let flight = flights[key] {
                    flushRun()
                    if needed { waitOn[b] = flight }
                } else {
                    if needed { missBlocks += 1; misses += 1 }
                    run.append(b)
                }
            }
            flushRun()
        }

        if hits > 0 { metrics.memoryHits.increment(by: hits) }
        if misses > 0 { metrics.memoryMisses.increment(by: misses) }
        for flight in toStart { start(flight, object: object, size: size, reader: reader) }

        var pieces: [CachedBytes.Piece] = []
        pieces.reserveCapacity(neededBlocks.count)
        var total = 0
        var fromMemory = 0
        for b in neededBlocks {
            let block: CachedBytes.Piece
            var inMemory = false
            if let cached = have[b] {
                block = cached
                inMemory = true
            } else if let flight = waitOn[b] {
                flight.done.wait()
                flight.done.signal()  // let the next waiter through
                if let error = flight.error { throw error }
                block = flight.piece(b - flight.firstBlock, blockSize: blockSize)
            } else {
                preconditionFailure("block \(b) neither cached nor in flight")
            }
            let blockStart = b * bs
            let lower = Int(max(wanted.lowerBound, blockStart) - blockStart)
            let upper = Int(min(wanted.upperBound, blockStart + Int64(block.count)) - blockStart)
            guard lower <= upper else { throw StoreError(.io, "object \(object) is shorter than its recorded size") }
            if upper > lower {
                pieces.append(CachedBytes.Piece(chunk: block.chunk, offset: block.offset + lower, count: upper - lower))
                total += upper - lower
                if inMemory { fromMemory += upper - lower }
            }
        }
        if fromMemory > 0 { metrics.memoryBytes.increment(by: fromMemory) }
        guard total == wanted.count else {
            throw StoreError(.io, "object \(object): read \(total) of \(wanted.count) bytes")
        }
        return CachedBytes(pieces)
    }

    private func start(_ flight: Flight, object: UInt64, size: Int64, reader: @escaping RangeReader) {
        let bs = Int64(blockSize)
        let range = flight.firstBlock * bs..<min((flight.firstBlock + Int64(flight.blocks)) * bs, size)
        queue.async { [self] in
            fetchSlots.wait()
            defer { fetchSlots.signal() }
            inFlight.acquire(Int(range.count))
            defer { inFlight.release(Int(range.count)) }
            var fromDisk = false
            let chunk = chunks.take(Int(range.count))
            let target = UnsafeMutableRawBufferPointer(rebasing: chunk.buffer[..<Int(range.count)])
            do throws(StoreError) {
                if disk?.read(object: object, range: range, into: target) == true {
                    fromDisk = true
                    metrics.diskHits.increment()
                    metrics.diskBytes.increment(by: range.count)
                } else {
                    if disk != nil { metrics.diskMisses.increment() }
                    let n = try reader(range, target)
                    guard n == range.count else {
                        throw StoreError(.io, "short read: \(n) of \(range.count) bytes at \(range.lowerBound)")
                    }
                    metrics.objectStoreBytes.increment(by: n)
                    if let disk {
                        diskBacklog.wait()
                        // The chunk is captured: its memory stays until the copy is written.
                        diskQueue.async { [chunk, diskBacklog] in
                            disk.write(object: object, range: range, bytes: UnsafeRawBufferPointer(start: chunk.base, count: Int(range.count)))
                            diskBacklog.signal()
                        }
                    }
                }
                flight.chunk = chunk
                flight.count = Int(range.count)
            } catch {
                flight.error = error
            }
            lock.withLock {
                if !fromDisk {
                    fetchRequests += 1
                    if flight.error == nil { fetchedBytes += Int64(flight.count) }
                }
                for i in 0..<flight.blocks {
                    let key = Key(object: object, block: flight.firstBlock + Int64(i))
                    // A flight no longer registered was forgotten (its version deleted): its bytes
                    // go to the readers already waiting, never into the cache.
                    guard flights[key] === flight else { continue }
                    flights[key] = nil
                    guard flight.error == nil else { continue }
                    insert(Node(key: key, piece: flight.piece(Int64(i), blockSize: blockSize)))
                }
                evictOverBudget()
            }
            flight.done.signal()
        }
    }

    // MARK: LRU list (under the lock)

    private func insert(_ node: Node) {
        if let old = entries[node.key] { unlink(old); uncount(old) }
        entries[node.key] = node
        let chunk = ObjectIdentifier(node.piece.chunk)
        if chunkBlocks[chunk, default: 0] == 0 { used += node.piece.chunk.capacity }
        chunkBlocks[chunk, default: 0] += 1
        node.next = head
        head?.prev = node
        head = node
        if tail == nil { tail = node }
    }

    private func touch(_ node: Node) {
        guard head !== node else { return }
        unlink(node)
        node.next = head
        head?.prev = node
        head = node
        if tail == nil { tail = node }
    }

    private func unlink(_ node: Node) {
        node.prev?.next = node.next
        node.next?.prev = node.prev
        if head === node { head = node.next }
        if tail === node { tail = node.prev }
        node.prev = nil
        node.next = nil
    }

    /// A cached block no longer counts; its chunk's memory stops counting with its last block.
    private func uncount(_ node: Node) {
        let chunk = ObjectIdentifier(node.piece.chunk)
        let left = chunkBlocks[chunk, default: 1] - 1
        chunkBlocks[chunk] = left == 0 ? nil : left
        if left == 0 { used -= node.piece.chunk.capacity }
    }

    private func evictOverBudget() {
        while used > budget, let victim = tail {
            unlink(victim)
            entries[victim.key] = nil
            uncount(victim)
        }
    }

    /// Waits until every fetched range bound for the disk cache is written, and every complete
    /// whole copy recorded (unmount, tests).
    public func drainDisk() {
        diskQueue.sync {}
        whole?.drain()
    }

    /// Drops every block of `object` (its version was deleted).
    public func forget(object: UInt64) {
        whole?.forget(object: object)
        disk?.forget(object: object)
        lock.withLock {
            for key in flights.keys where key.object == object { flights[key] = nil }
            for (key, node) in entries where key.object == object {
                unlink(node)
                entries[key] = nil
                uncount(node)
            }
        }
    }
}

/// A counting limit on bytes, for memory in the air: `acquire` waits until the bytes fit (one
/// request larger than the limit still goes alone).
final class ByteBudget: @unchecked Sendable {
    let limit: Int
    private var used = 0
    private let condition = NSCondition()

    init(limit: Int) { self.limit = limit }

    func acquire(_ bytes: Int) {
        condition.lock()
        while used > 0 && used + bytes > limit { condition.wait() }
        used += bytes
        condition.unlock()
    }

    func release(_ bytes: Int) {
        condition.lock()
        used -= bytes
        condition.broadcast()
        condition.unlock()
    }
}
