import Foundation

/// Memory that fetched bytes are written into, shared by the cache blocks cut from it and freed
/// (or pooled) when the last of them goes. Its address never moves, so replies can point into it.
public final class Chunk: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private let pool: ChunkPool?

    fileprivate init(capacity: Int, base: UnsafeMutableRawPointer, pool: ChunkPool?) {
        self.capacity = capacity
        self.base = base
        self.pool = pool
    }

    var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: capacity) }

    deinit {
        if let pool { pool.giveBack(base) } else { base.deallocate() }
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

    public init(chunkSize: Int, maxFree: Int = 4) {
        self.chunkSize = chunkSize
        self.maxFree = maxFree
    }

    /// Memory for `count` bytes: a pooled chunk when `count` is a large share of one.
    func take(_ count: Int) -> Chunk {
        guard count > chunkSize / 4, count <= chunkSize else {
            return Chunk(capacity: count, base: .allocate(byteCount: max(count, 1), alignment: 64), pool: nil)
        }
        let reused = lock.withLock { free.popLast() }
        return Chunk(capacity: chunkSize, base: reused ?? .allocate(byteCount: chunkSize, alignment: 4096), pool: self)
    }

    fileprivate func giveBack(_ base: UnsafeMutableRawPointer) {
        let kept = lock.withLock { () -> Bool in
            guard free.count < maxFree else { return false }
            free.append(base)
            return true
        }
        if !kept { base.deallocate() }
    }

    /// Chunks waiting for reuse (for tests and `.stats`).
    public var freeCount: Int { lock.withLock { free.count } }

    deinit { for base in free { base.deallocate() } }
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
