import Dispatch
import Foundation
import Testing
@testable import ReadPath

/// The pieces that keep the mount's memory bounded: spare chunks and the cap on bytes in the air.
@Suite struct MemoryBoundTests {
    @Test func largeChunksAreReusedAndSmallOnesAreNot() {
        let pool = ChunkPool(chunkSize: 1 << 20, maxFree: 1)
        var first: Chunk? = pool.take(900 << 10)
        let base = first!.base
        #expect(first!.capacity == 1 << 20, "a large share of a chunk gets a whole one")
        first = nil
        #expect(pool.freeCount == 1, "given back, not freed")
        let again = pool.take(1 << 20)
        #expect(again.base == base, "the same memory, already touched")
        #expect(pool.freeCount == 0)
        let small = pool.take(4096)
        #expect(small.capacity == 4096, "a small read gets exactly what it needs")
        var extra: [Chunk] = [pool.take(1 << 20), pool.take(1 << 20)]
        extra.removeAll()
        #expect(pool.freeCount == 1, "no more spares than maxFree")
        _ = again
    }

    @Test func bytesInTheAirWaitForRoom() {
        let budget = ByteBudget(limit: 10)
        budget.acquire(6)
        let admitted = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            budget.acquire(6)
            admitted.signal()
        }
        #expect(admitted.wait(timeout: .now() + .milliseconds(200)) == .timedOut, "6 + 6 does not fit in 10")
        budget.release(6)
        #expect(admitted.wait(timeout: .now() + .seconds(10)) == .success, "admitted once the first left")
        budget.release(6)
        budget.acquire(25)  // larger than the limit: goes alone rather than never
        budget.release(25)
    }
}
