import Dispatch
import Foundation
import Testing
import ModelStore
import ReadPath

/// Small blocks keep objects of a few blocks small.
let block = 4 * KiB

@Suite struct BlockCacheRangeTests {
    /// Object sizes: several whole blocks, and a size that is not a multiple of the block size.
    static let sizes = [4 * block, 5 * block + 123, 1, block - 1]

    /// Ranges relative to the object's size `s`.
    static func ranges(_ s: Int64) -> [(String, Range<Int64>)] {
        let b = Int64(block)
        return [
            ("inside one block", 10..<20),
            ("one whole aligned block", b..<(2 * b)),
            ("spanning two blocks", (b - 100)..<(b + 200)),
            ("unaligned start and end over three blocks", 100..<(2 * b + 300)),
            ("the first byte", 0..<1),
            ("the last byte", (s - 1)..<s),
            ("the end of the object", max(0, s - 50)..<s),
            ("past the end (clamped)", max(0, s - 50)..<(s + 1000)),
            ("entirely past the end", (s + 10)..<(s + 20)),
            ("the whole object", 0..<s),
            ("empty", 7..<7),
        ]
    }

    @Test(arguments: sizes)
    func readsReturnExactlyTheRequestedBytes(_ size: Int) throws {
        let bytes = pattern(size, seed: UInt64(size))
        let shared = BlockCache(budget: 64 * block, blockSize: block)
        let sharedSource = Source(bytes)
        for (what, range) in Self.ranges(Int64(size)) {
            // A cold cache: every block fetched.
            let cold = Source(bytes)
            let fresh = try BlockCache(budget: 64 * block, blockSize: block)
                .read(object: 1, size: Int64(size), range: range, fetch: cold.fetch)
            expectSame(fresh, expected(bytes, range), "cold read of \(what) \(range) of \(size) bytes")
            // A warm cache: a mix of cached blocks and fetched ones.
            let warm = try shared.read(object: 1, size: Int64(size), range: range, fetch: sharedSource.fetch)
            expectSame(warm, expected(bytes, range), "warm read of \(what) \(range) of \(size) bytes")
            // Nothing outside the object was ever asked for.
            #expect(cold.calls.allSatisfy { $0.lowerBound >= 0 && $0.upperBound <= Int64(size) })
        }
        #expect(sharedSource.calls.allSatisfy { $0.upperBound <= Int64(size) })
        #expect(sharedSource.bytesFetched <= Int64(size), "a cache large enough for the object fetches each byte at most once")
    }

    @Test func emptyObjectReadsNothing() throws {
        let source = Source([])
        let cache = BlockCache(blockSize: block)
        #expect(try cache.read(object: 1, size: 0, range: 0..<10, fetch: source.fetch).isEmpty)
        #expect(try cache.read(object: 1, size: 0, range: 0..<0, ahead: 0..<100, fetch: source.fetch).isEmpty)
        #expect(source.callCount == 0)
        #expect(cache.counters.requests == 0)
    }

    @Test func cachedBlocksAreNotFetchedAgain() throws {
        let bytes = pattern(8 * block)
        let source = Source(bytes)
        let cache = BlockCache(blockSize: block)
        _ = try cache.read(object: 1, size: source.size, range: 0..<source.size, fetch: source.fetch)
        #expect(cache.counters.blockMisses == 8 && cache.counters.blockHits == 0)
        #expect(cache.counters.bytesCached == bytes.count)
        let calls = source.callCount
        #expect(source.bytesFetched == source.size)
        for range: Range<Int64> in [5..<9000, 0..<source.size, Int64(3 * block)..<Int64(3 * block + 1)] {
            expectSame(try cache.read(object: 1, size: source.size, range: range, fetch: source.fetch), expected(bytes, range))
        }
        #expect(source.callCount == calls)
        #expect(cache.counters.bytesFetched == source.size)
        #expect(cache.counters.blockHits > 0)
    }
}

@Suite struct BlockCacheSingleFlightTests {
    @Test func concurrentReadersOfOneObjectFetchItOnce() throws {
        let bytes = pattern(1 * MiB + 777, seed: 7)
        let source = Source(bytes, delay: 0.02)
        let cache = BlockCache(blockSize: 64 * KiB, maxRequest: 256 * KiB)
        let results = Collected<Result<[UInt8], StoreError>>()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            results.append(Result { () throws(StoreError) in
                try cache.read(object: 9, size: source.size, range: 0..<source.size, fetch: source.fetch)
            })
        }
        #expect(results.all.count == 8)
        for result in results.all {
            let got = try result.get()
            expectSame(got, bytes)
        }
        #expect(source.bytesFetched == source.size, "each byte fetched once")
        #expect(cache.counters.bytesFetched == source.size)
        #expect(cache.counters.requests == Int64(source.callCount))
        // No two requests overlap.
        let sorted = source.calls.sorted { $0.lowerBound < $1.lowerBound }
        #expect(zip(sorted, sorted.dropFirst()).allSatisfy { $0.upperBound <= $1.lowerBound })
    }

    @Test func concurrentReadersInDifferentOrdersFetchOnce() throws {
        let bytes = pattern(2 * MiB, seed: 8)
        let source = Source(bytes, delay: 0.005)
        let cache = BlockCache(blockSize: 64 * KiB, maxRequest: 256 * KiB)
        let chunk = Int64(128 * KiB)
        let chunks = Int(source.size / chunk)
        let mismatches = Collected<String>()
        DispatchQueue.concurrentPerform(iterations: 8) { reader in
            for i in 0..<chunks {
                // Each reader starts somewhere else and wraps around.
                let c = Int64((i + reader * 3) % chunks)
                let range = (c * chunk)..<((c + 1) * chunk)
                do {
                    let got = try cache.read(object: 1, size: source.size, range: range, fetch: source.fetch)
                    if !same(got, expected(bytes, range)) { mismatches.append("reader \(reader) \(range)") }
                } catch {
                    mismatches.append("reader \(reader) \(range): \(error)")
                }
            }
        }
        #expect(mismatches.all.isEmpty)
        #expect(source.bytesFetched == source.size)
        #expect(cache.counters.bytesFetched == source.size)
    }

    @Test func aFailedFetchFailsEveryWaiter() throws {
        let source = Source(pattern(256 * KiB), delay: 0.02, behaviour: .failing(StoreError(.io, "connection reset")))
        let cache = BlockCache(blockSize: 64 * KiB)
        let codes = Collected<StoreError.Code?>()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do throws(StoreError) {
                _ = try cache.read(object: 1, size: source.size, range: 0..<source.size, fetch: source.fetch)
                codes.append(nil)
            } catch {
                codes.append(error.code)
            }
        }
        #expect(codes.all.count == 4)
        #expect(codes.all.allSatisfy { $0 == .io }, "\(codes.all)")
    }
}

@Suite struct BlockCacheBudgetTests {
    @Test func lruStaysWithinTheBudget() throws {
        let blocks = 16
        let budget = 4 * block
        let bytes = pattern(blocks * block, seed: 3)
        let source = Source(bytes)
        let cache = BlockCache(budget: budget, blockSize: block)
        for i in 0..<blocks {
            let range = Int64(i * block)..<Int64((i + 1) * block)
            let got = try cache.read(object: 1, size: source.size, range: range, fetch: source.fetch)
            expectSame(got, expected(bytes, range))
            #expect(cache.counters.bytesCached <= budget, "after block \(i)")
        }
        #expect(cache.counters.bytesCached == budget, "the budget is used, not wasted")
        #expect(source.callCount == blocks)

        // The most recently used block is still cached.
        let last = Int64((blocks - 1) * block)..<Int64(blocks * block)
        expectSame(try cache.read(object: 1, size: source.size, range: last, fetch: source.fetch), expected(bytes, last))
        #expect(source.callCount == blocks, "the last block was not evicted")

        // The least recently used one was evicted and is fetched again.
        let first = Int64(0)..<Int64(block)
        expectSame(try cache.read(object: 1, size: source.size, range: first, fetch: source.fetch), expected(bytes, first))
        #expect(source.callCount == blocks + 1, "the first block was evicted")
        #expect(cache.counters.bytesCached <= budget)
    }

    @Test func touchingABlockKeepsIt() throws {
        let bytes = pattern(8 * block, seed: 4)
        let source = Source(bytes)
        let cache = BlockCache(budget: 3 * block, blockSize: block)
        func read(_ i: Int) throws -> [UInt8] {
            try cache.read(object: 1, size: source.size, range: Int64(i * block)..<Int64((i + 1) * block), fetch: source.fetch)
        }
        _ = try read(0); _ = try read(1); _ = try read(2)
        _ = try read(0)           // a hit: block 0 becomes the most recent
        _ = try read(3)           // evicts block 1, the least recent
        let calls = source.callCount
        #expect(calls == 4)
        _ = try read(0)
        #expect(source.callCount == calls, "block 0 was touched, so it stayed")
        _ = try read(1)
        #expect(source.callCount == calls + 1, "block 1 was the least recently used")
    }

    /// The budget is memory: a block keeps the whole chunk it was cut from, so the chunk counts
    /// whole until its last block goes (counting blocks' bytes let the mount go ~100 MiB past
    /// the budget during an archive view's load).
    @Test func aChunkCountsWholeWhileAnyOfItsBlocksIsCached() throws {
        let bytes = pattern(8 * block, seed: 15)
        let source = Source(bytes)
        let cache = BlockCache(budget: 4 * block, blockSize: block, maxRequest: 4 * block)
        func read(_ blocks: Range<Int>) throws -> [UInt8] {
            try cache.read(object: 1, size: source.size, range: Int64(blocks.lowerBound * block)..<Int64(blocks.upperBound * block),
                           fetch: source.fetch)
        }
        _ = try read(0..<4)  // one GET, one chunk of 4 blocks
        _ = try read(3..<4)  // a hit: block 3 becomes the most recent
        _ = try read(4..<7)  // 3 blocks in a chunk of 4
        #expect(cache.counters.bytesCached == 4 * block, "the new chunk counts whole, and the first one is gone")
        let calls = source.callCount
        expectSame(try read(3..<4), expected(bytes, Int64(3 * block)..<Int64(4 * block)))
        #expect(source.callCount == calls + 1, "block 3 alone held its chunk's 4 blocks of memory, so it was evicted")
        #expect(cache.counters.bytesCached <= 4 * block)
    }

    @Test func aReadLargerThanTheBudgetIsServedWhole() throws {
        let bytes = pattern(16 * block + 5, seed: 5)
        let source = Source(bytes)
        let cache = BlockCache(budget: 2 * block, blockSize: block, maxRequest: 2 * block)
        let got = try cache.read(object: 1, size: source.size, range: 0..<source.size, fetch: source.fetch)
        expectSame(got, bytes)
        #expect(cache.counters.bytesCached <= 2 * block)
        // A zero budget caches nothing but still reads.
        let none = BlockCache(budget: 0, blockSize: block)
        expectSame(try none.read(object: 1, size: source.size, range: 100..<9000, fetch: source.fetch), expected(bytes, 100..<9000))
        #expect(none.counters.bytesCached == 0)
    }
}

@Suite struct BlockCachePrefetchTests {
    @Test func aheadIsFetchedInTheBackgroundAndServedLater() throws {
        let bytes = pattern(32 * block, seed: 6)
        let source = Source(bytes)
        let cache = BlockCache(blockSize: block, maxRequest: 4 * block)
        let first = Int64(0)..<Int64(block)
        let ahead = Int64(block)..<Int64(16 * block)
        let got = try cache.read(object: 1, size: source.size, range: first, ahead: ahead, fetch: source.fetch)
        expectSame(got, expected(bytes, first))
        #expect(eventually { cache.counters.bytesFetched == Int64(16 * block) }, "the ahead range arrives without another read")
        #expect(source.settle(cache))
        #expect(source.bytesFetched == Int64(16 * block), "only the read and the ahead range: \(source.calls)")
        let calls = source.callCount
        let hits = cache.counters.blockHits
        let later = try cache.read(object: 1, size: source.size, range: ahead, fetch: source.fetch)
        expectSame(later, expected(bytes, ahead))
        #expect(source.callCount == calls, "a read of the prefetched range fetches nothing")
        #expect(cache.counters.blockHits == hits + 15)
    }

    @Test func aheadIsClampedToTheObject() throws {
        let bytes = pattern(4 * block + 10, seed: 7)
        let source = Source(bytes)
        let cache = BlockCache(blockSize: block)
        _ = try cache.read(object: 1, size: source.size, range: 0..<10, ahead: 10..<(100 * Int64(block)), fetch: source.fetch)
        #expect(eventually { cache.counters.bytesFetched == source.size })
        #expect(source.settle(cache))
        #expect(source.calls.allSatisfy { $0.upperBound <= source.size })
        #expect(source.bytesFetched == source.size)
    }
}

@Suite struct BlockCacheSplittingTests {
    @Test(arguments: [4 * block, 4 * block + 1000])
    func longRunsAreSplitIntoRequestsOfAtMostMaxRequest(_ maxRequest: Int) throws {
        let bytes = pattern(3 * 4 * block, seed: 8)
        let source = Source(bytes)
        let cache = BlockCache(blockSize: block, maxRequest: maxRequest)
        let got = try cache.read(object: 1, size: source.size, range: 0..<source.size, fetch: source.fetch)
        expectSame(got, bytes)
        #expect(source.callCount >= 3)
        #expect(source.calls.allSatisfy { $0.count <= maxRequest }, "\(source.calls)")
        #expect(source.bytesFetched == source.size)
    }
}

@Suite struct BlockCacheErrorTests {
    @Test func aFailingFetchThrowsIOAndCachesNothing() throws {
        let bytes = pattern(4 * block, seed: 9)
        let cache = BlockCache(blockSize: block)
        let failing = Source(bytes, behaviour: .failing(StoreError(.io, "object storage unreachable")))
        expectStoreError(.io) { try cache.read(object: 1, size: Int64(bytes.count), range: 0..<Int64(bytes.count), fetch: failing.fetch) }
        #expect(failing.callCount > 0)
        #expect(cache.counters.bytesCached == 0)
        #expect(cache.counters.bytesFetched == 0)

        let healthy = Source(bytes)
        let got = try cache.read(object: 1, size: healthy.size, range: 0..<healthy.size, fetch: healthy.fetch)
        expectSame(got, bytes)
        #expect(healthy.bytesFetched == healthy.size, "the failed blocks were fetched again")
    }

    @Test func aFailedPrefetchIsFetchedAgainByTheRead() throws {
        let bytes = pattern(8 * block, seed: 10)
        let cache = BlockCache(blockSize: block)
        let healthy = Source(bytes)
        let failing = Source(bytes, behaviour: .failing(StoreError(.io, "reset")))
        // The read's own block comes from a healthy fetcher, the ahead range from a failing one.
        _ = try cache.read(object: 1, size: healthy.size, range: 0..<Int64(block), fetch: healthy.fetch)
        _ = try? cache.read(object: 1, size: healthy.size, range: 0..<Int64(block), ahead: Int64(block)..<healthy.size, fetch: failing.fetch)
        #expect(eventually { failing.callCount > 0 && failing.active == 0 && cache.counters.requests == Int64(healthy.callCount + failing.callCount) })
        let before = healthy.callCount
        let range = Int64(block)..<healthy.size
        expectSame(try cache.read(object: 1, size: healthy.size, range: range, fetch: healthy.fetch), expected(bytes, range))
        #expect(healthy.callCount > before, "the failed prefetch left nothing cached")
    }

    @Test(arguments: [Source.Behaviour.short(1), .short(block), .long(3)])
    func aFetchOfTheWrongLengthIsAnIOError(_ behaviour: Source.Behaviour) throws {
        let bytes = pattern(3 * block + 17, seed: 11)
        let cache = BlockCache(blockSize: block)
        let bad = Source(bytes, behaviour: behaviour)
        expectStoreError(.io) { try cache.read(object: 1, size: bad.size, range: 0..<bad.size, fetch: bad.fetch) }
        expectStoreError(.io) { try cache.read(object: 1, size: bad.size, range: 5..<100, fetch: bad.fetch) }
        #expect(cache.counters.bytesCached == 0)
        let healthy = Source(bytes)
        expectSame(try cache.read(object: 1, size: healthy.size, range: 0..<healthy.size, fetch: healthy.fetch), bytes)
    }

    @Test func anObjectShorterThanItsRecordedSizeIsAnIOErrorNotShortData() throws {
        let bytes = pattern(2 * block + 100, seed: 12)
        let cache = BlockCache(blockSize: block)
        let source = Source(bytes)
        // The catalog says 3 blocks; the store has fewer bytes (the fetcher clamps like a ranged GET).
        expectStoreError(.io) { try cache.read(object: 1, size: Int64(3 * block), range: 0..<Int64(3 * block), fetch: source.fetch) }
        expectStoreError(.io) {
            try cache.read(object: 1, size: Int64(3 * block), range: Int64(2 * block)..<Int64(3 * block), fetch: source.fetch)
        }
    }
}

@Suite struct BlockCacheForgetTests {
    @Test func forgetDropsOnlyThatObject() throws {
        let a = Source(pattern(4 * block, seed: 13))
        let b = Source(pattern(4 * block, seed: 14))
        let cache = BlockCache(blockSize: block)
        _ = try cache.read(object: 1, size: a.size, range: 0..<a.size, fetch: a.fetch)
        _ = try cache.read(object: 2, size: b.size, range: 0..<b.size, fetch: b.fetch)
        #expect(cache.counters.bytesCached == Int(a.size + b.size))
        cache.forget(object: 1)
        #expect(cache.counters.bytesCached == Int(b.size))
        let aCalls = a.callCount, bCalls = b.callCount
        expectSame(try cache.read(object: 1, size: a.size, range: 0..<a.size, fetch: a.fetch), a.bytes)
        #expect(a.callCount > aCalls, "the forgotten object is fetched again")
        expectSame(try cache.read(object: 2, size: b.size, range: 0..<b.size, fetch: b.fetch), b.bytes)
        #expect(b.callCount == bCalls, "the other object stayed cached")
    }

    @Test func objectsAreKeptApart() throws {
        let a = Source(pattern(2 * block, seed: 15))
        let b = Source(pattern(2 * block, seed: 16))
        let cache = BlockCache(blockSize: block)
        expectSame(try cache.read(object: 1, size: a.size, range: 0..<a.size, fetch: a.fetch), a.bytes)
        expectSame(try cache.read(object: 2, size: b.size, range: 0..<b.size, fetch: b.fetch), b.bytes)
        expectSame(try cache.read(object: 1, size: a.size, range: 0..<a.size, fetch: b.fetch), a.bytes)
    }
}

@Suite struct BlockCacheForgetInFlightTests {
    /// A version deleted while a prefetch of it is in the air: the blocks landing afterwards must
    /// not be cached under its id, which the catalog may hand to the next version.
    @Test func blocksLandingAfterForgetAreNotCached() throws {
        let old = pattern(8 * block, seed: 21)
        let gate = DispatchSemaphore(value: 0)
        let calls = Collected<Range<Int64>>()
        let slow: RangeFetcher = { (range: Range<Int64>) throws(StoreError) -> [UInt8] in
            calls.append(range)
            if range.lowerBound >= Int64(block) { gate.wait() }   // the prefetch waits for the test
            return Array(old[Int(range.lowerBound)..<Int(range.upperBound)])
        }
        let cache = BlockCache(blockSize: block)
        // Block 0 first, alone, so that the prefetch is a request of its own.
        _ = try cache.read(object: 7, size: Int64(old.count), range: 0..<Int64(block), fetch: slow)
        _ = try cache.read(object: 7, size: Int64(old.count), range: 0..<Int64(block), ahead: Int64(block)..<Int64(old.count), fetch: slow)
        #expect(eventually { calls.all.count == 2 }, "the prefetch started")
        cache.forget(object: 7)
        gate.signal()
        #expect(eventually { cache.counters.requests == 2 }, "the prefetch landed")

        let cachedAfterForget = cache.counters.bytesCached
        let new = Source(pattern(8 * block, seed: 22))
        let got = try cache.read(object: 7, size: new.size, range: 0..<new.size, fetch: new.fetch)
        do {
            #expect(cachedAfterForget == 0, "nothing of the forgotten object is cached")
            expectSame(got, new.bytes, "the object read after forget is the new one")
        }
    }
}
