import Foundation
import Glibc

/// Memory that fetched bytes are written into, shared by the cache blocks cut from it and freed
/// (or pooled) when the last of them goes. Its address never moves, so replies can point into it.
public final class Chunk: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private let pool: ChunkPool
    /// Whether the memory goes back to the pool's free list (a pooled chunk) or is freed.
    private let pooled: Bool

    fileprivate init(capacity: Int, base: UnsafeMutableRawPointer, pool: ChunkPool, pooled: Bool) {
        self.capacity = capacity
        self.base = base
        self.pool = pool
        self.pooled = pooled
    }

    var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: capacity) }

    deinit {
        if pooled { pool.giveBack(base) } else { pool.release(base, capacity: capacity) }
    }
}

/// A few large chunks kept for reuse. A fresh multi-megabyte allocation is a fresh mapping whose
/// pages the kernel zero-fills on first touch; on sequential reads that cost a sixth of the
/// mount's CPU. Small requests (random reads) get exact-size memory instead.
public final class ChunkPool: @unchecked Sendable {
    public let chunkSize: Int
    public let maxFree: Int
    private let lock = NSLock()
    private var free: [UnsafeMutableRawPointer] = []
    private var allocated = 0
    private var allocatedPeak = 0

    public init(chunkSize: Int, maxFree: Int = 4) {
        self.chunkSize = chunkSize
        self.maxFree = maxFree
    }

    /// Memory for `count` bytes: a pooled chunk when `count` is a large share of one.
    func take(_ count: Int) -> Chunk {
        guard count > chunkSize / 4, count <= chunkSize else {
            account(count)
            return Chunk(capacity: count, base: Self.allocate(count), pool: self, pooled: false)
        }
        let reused = lock.withLock { free.popLast() }
        if reused == nil { account(chunkSize) }
        return Chunk(capacity: chunkSize, base: reused ?? Self.allocate(chunkSize), pool: self, pooled: true)
    }

    /// Memory this large is a mapping of its own, unmapped when freed. From malloc, a freed
    /// multi-megabyte buffer stays in its arena: glibc raises its mmap threshold after the first
    /// such free, so later ones come from the heap, and a loader's cold mount kept 60–90 MiB of
    /// freed chunks resident beyond the cache's budget (issue 21, h-rss).
    static let mappedFrom = 256 << 10

    private static func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        guard count >= mappedFrom else { return .allocate(byteCount: max(count, 1), alignment: 64) }
        guard let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory: mmap of \(count) bytes failed")
        }
        return p
    }

    private static func deallocate(_ base: UnsafeMutableRawPointer, _ count: Int) {
        if count >= mappedFrom { munmap(base, count) } else { base.deallocate() }
    }

    private func account(_ bytes: Int) {
        lock.withLock {
            allocated += bytes
            allocatedPeak = max(allocatedPeak, allocated)
        }
    }

    fileprivate func release(_ base: UnsafeMutableRawPointer, capacity: Int) {
        lock.withLock { allocated -= capacity }
        Self.deallocate(base, capacity)
    }

    fileprivate func giveBack(_ base: UnsafeMutableRawPointer) {
        let kept = lock.withLock { () -> Bool in
            guard free.count < maxFree else { return false }
            free.append(base)
            return true
        }
        if !kept { release(base, capacity: chunkSize) }
    }

    /// Bytes of memory this pool handed out and not yet freed (in use or free for reuse), and
    /// the most there ever were (`.stats`: what the cache's budget does not see).
    public var bytesAllocated: (now: Int, peak: Int) { lock.withLock { (allocated, allocatedPeak) } }

    /// Chunks waiting for reuse (for tests and `.stats`).
    public var freeCount: Int { lock.withLock { free.count } }

    deinit { for base in free { Self.deallocate(base, chunkSize) } }
}

/// Bytes a read returns straight from the cache: pieces of chunks, in order, without a copy.
public struct CachedBytes: Sendable {
    struct Piece: @unchecked Sendable {
        let chunk: Chunk
        let offset: Int
        let count: Int
    }

    let pieces: [Piece]
    public let count: Int

    init(_ pieces: [Piece]) {
        self.pieces = pieces
        count = pieces.reduce(0) { $0 + $1.count }
    }

    /// Calls `body` with each piece's memory, in order; the pointers are valid during the call only.
    public func withBuffers<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        try withExtendedLifetime(pieces) {
            try body(pieces.map { UnsafeRawBufferPointer(start: $0.chunk.base + $0.offset, count: $0.count) })
        }
    }

    /// The bytes, copied into one array.
    public var bytes: [UInt8] {
        withBuffers { buffers in
            var out = [UInt8]()
            out.reserveCapacity(count)
            for b in buffers { out.append(contentsOf: b) }
            return out
        }
    }
}
