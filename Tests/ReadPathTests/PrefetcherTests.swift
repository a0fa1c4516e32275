import Foundation
import Testing
import ModelStore
import ReadPath

@Suite struct PrefetcherTests {
    let big = Int64(1) << 40

    @Test func theWindowFollowsWhatTheRunHasReadUpToTheMaximum() {
        var p = Prefetcher(initialWindow: Int64(64 * KiB), maxWindow: Int64(1 * MiB), requestSize: Int64(256 * KiB))
        #expect(p.window == Int64(64 * KiB))
        let length = 16 * KiB
        var offset: Int64 = 0
        var windows: [Int64] = []
        var far: Int64 = 0
        var plans = 0
        for _ in 0..<200 {
            let ahead = p.plan(offset: offset, length: length, size: big)
            let end = offset + Int64(length)
            #expect(p.runBytes == end, "the run is everything read so far")
            #expect(p.window == min(max(p.runBytes / 2, p.initialWindow), p.maxWindow))
            let granule = min(Int64(1) << (63 - p.window.leadingZeroBitCount), p.requestSize)
            #expect(granule <= p.window && 2 * granule > min(p.window, p.requestSize), "a power of two")
            let expectedFar = (end + p.window + granule - 1) / granule * granule
            if expectedFar > max(end, far) {
                #expect(ahead == max(end, far)..<expectedFar, "only what was not planned before")
                far = expectedFar
                plans += 1
            } else {
                #expect(ahead == nil, "the far end did not move: nothing new")
            }
            #expect(far >= end + p.window && far % granule == 0, "the far end moves in whole granules")
            windows.append(p.window)
            offset = end
        }
        #expect(windows.first == p.initialWindow, "a small first window: \(windows)")
        #expect(windows == windows.sorted(), "the window only grows while the run goes on")
        #expect(windows.last == p.maxWindow)
        #expect(plans < 200 / 4, "\(plans) fetches planned for 200 reads")
    }

    /// A training script reads one tensor (or one zip member) and stops: what was planned ahead is
    /// at most about what it read.
    @Test func aRunThatStopsFetchedAtMostTwiceWhatItRead() {
        for reads in 1...12 {
            var p = Prefetcher()
            let start = 300 * Int64(MiB) + Int64(4 * KiB)
            var far = start
            var offset = start
            for _ in 0..<reads {
                if let ahead = p.plan(offset: offset, length: 1 * MiB, size: big) { far = max(far, ahead.upperBound) }
                offset += Int64(MiB)
                far = max(far, offset)
            }
            let read = offset - start
            #expect(far - start <= 2 * read + p.requestSize * (read >= p.requestSize ? 1 : 0), "\(reads) MiB read, \(far - start) bytes planned")
            if reads < 16 { #expect(far - start <= 2 * read, "\(reads) MiB read, \(far - start) bytes planned") }
        }
    }

    @Test func nothingIsPlannedBeforeTheRunReadsStartAfter() {
        var p = Prefetcher(startAfter: 4 * Int64(MiB))
        var offset = 77 * Int64(MiB)
        var planned: [Bool] = []
        for _ in 0..<8 {
            planned.append(p.plan(offset: offset, length: 1 * MiB, size: big) != nil)
            offset += Int64(MiB)
        }
        #expect(planned.prefix(4) == [false, false, false, true], "from the 4th MiB of the run on: \(planned)")
        #expect(p.plan(offset: 0, length: 1 * MiB, size: big) == nil, "a seek starts a new run")
    }

    @Test func aSeekPlansNothingAndResetsTheWindow() throws {
        var p = Prefetcher(initialWindow: Int64(64 * KiB), maxWindow: Int64(1 * MiB))
        var offset: Int64 = 0
        for _ in 0..<12 {
            _ = p.plan(offset: offset, length: 16 * KiB, size: big)
            offset += Int64(16 * KiB)
        }
        #expect(p.window > p.initialWindow)
        // Forward far beyond the window.
        #expect(p.plan(offset: 500 * Int64(MiB), length: 16 * KiB, size: big) == nil)
        #expect(p.window == p.initialWindow)
        // Sequential again from the new place: a small window that grows again.
        let planned = p.plan(offset: 500 * Int64(MiB) + Int64(16 * KiB), length: 16 * KiB, size: big)
        let again = try #require(planned)
        #expect(p.window == p.initialWindow)
        #expect(again.count <= 2 * Int(p.initialWindow), "small again: \(again)")
        // Backward far beyond the window.
        #expect(p.plan(offset: 100 * Int64(MiB), length: 16 * KiB, size: big) == nil)
        #expect(p.window == p.initialWindow)
    }

    /// With the default windows (128 KiB … 64 MiB), jumping back 20 MiB is a seek, not reordering.
    @Test func aBackwardSeekWithTheDefaultWindowsPlansNothing() {
        do {
            var p = Prefetcher()
            var offset = 40 * Int64(MiB)
            _ = p.plan(offset: offset, length: 128 * KiB, size: big)   // the first read after open is a seek anyway
            offset += Int64(128 * KiB)
            #expect(p.plan(offset: offset, length: 128 * KiB, size: big) != nil)
            #expect(p.plan(offset: 20 * Int64(MiB), length: 128 * KiB, size: big) == nil, "a 20 MiB jump backwards is random access")
            #expect(p.window == p.initialWindow)
        }
    }

    @Test func readsSlightlyOutOfOrderStillCountAsSequential() {
        // The kernel's async readahead may deliver nearby requests out of order.
        var p = Prefetcher()
        let r = 128 * KiB
        #expect(p.plan(offset: 0, length: r, size: big) != nil)
        _ = p.plan(offset: Int64(2 * r), length: r, size: big)  // a little ahead of the last read
        _ = p.plan(offset: Int64(r), length: r, size: big)      // the gap filled in afterwards
        _ = p.plan(offset: Int64(3 * r), length: r, size: big)
        #expect(p.runBytes >= Int64(3 * r), "one run, not a seek (the gap filled in later adds nothing)")
        #expect(p.window > p.initialWindow, "reordering is not a seek")
    }

    /// Eight ranks reading one checkpoint share its page cache: each handle's requests skip the
    /// pages another rank brought in, and must still count as one sequential run.
    @Test func aReaderWhoseRequestsSkipWhatOthersReadIsStillSequential() {
        var p = Prefetcher(startAfter: 4 * Int64(MiB))
        var planned = 0
        var offset: Int64 = 0
        for i in 0..<64 {
            if p.plan(offset: offset, length: 512 * KiB, size: big) != nil { planned += 1 }
            offset += Int64(512 * KiB) + Int64((i % 3) * MiB)  // gaps of 0, 1 and 2 MiB
        }
        #expect(planned > 0)
        #expect(p.runBytes == offset - Int64((63 % 3) * MiB), "the run spans the gaps")
        #expect(p.window == p.maxWindow || p.window == p.runBytes / 2)
    }

    @Test func nothingAheadAtTheEndOfTheFile() throws {
        var p = Prefetcher(initialWindow: Int64(64 * KiB), maxWindow: Int64(1 * MiB))
        let size = Int64(160 * KiB)
        let first = p.plan(offset: 0, length: 64 * KiB, size: size)
        let a = try #require(first)
        #expect(a.upperBound <= size)
        let second = p.plan(offset: Int64(64 * KiB), length: 64 * KiB, size: size)
        let b = try #require(second)
        #expect(b.upperBound == size, "clamped to the end: \(b)")
        #expect(p.plan(offset: Int64(128 * KiB), length: 32 * KiB, size: size) == nil, "the read reaches the end")
        #expect(p.plan(offset: Int64(160 * KiB), length: 64 * KiB, size: size) == nil, "a read at the end")
        var q = Prefetcher()
        #expect(q.plan(offset: 0, length: 4096, size: 4096) == nil)
        #expect(q.plan(offset: 0, length: 4096, size: 0) == nil)
    }
}

@Suite struct ReadAmplificationTests {
    /// Random 64 KiB reads through one prefetcher (as one open file) must fetch little beyond what they read.
    @Test func randomReadsFetchLittleMoreThanTheyRead() throws {
        let size = 64 * MiB
        let source = Source(pattern(size, seed: 42))
        let cache = BlockCache()
        var prefetcher = Prefetcher()
        var rng = SplitMix64(seed: 2024)
        let length = 64 * KiB
        let reads = 200
        var wrong = 0
        for _ in 0..<reads {
            let offset = Int64(Int.random(in: 0..<(size / length), using: &rng) * length)
            let ahead = prefetcher.plan(offset: offset, length: length, size: source.size)
            let range = offset..<(offset + Int64(length))
            let got = try cache.read(object: 1, size: source.size, range: range, ahead: ahead, fetch: source.fetch)
            if !same(got, expected(source.bytes, range)) { wrong += 1 }
        }
        #expect(wrong == 0)
        #expect(source.settle(cache), "background fetches end")
        let ratio = Double(cache.counters.bytesFetched) / Double(reads * length)
        #expect(source.bytesFetched == cache.counters.bytesFetched)
        do {
            #expect(ratio <= 2, "fetched \(cache.counters.bytesFetched) bytes for \(reads * length) read: \(ratio)×")
        }
    }

    /// Sequential reads through the same path fetch each byte once.
    @Test func sequentialReadsFetchEachByteOnce() throws {
        let size = 8 * MiB + 1234
        let source = Source(pattern(size, seed: 43))
        let cache = BlockCache()
        var prefetcher = Prefetcher()
        var offset: Int64 = 0
        let length = 128 * KiB
        var planned = 0
        while offset < source.size {
            let ahead = prefetcher.plan(offset: offset, length: length, size: source.size)
            if ahead != nil { planned += 1 }
            let range = offset..<(offset + Int64(length))
            expectSame(try cache.read(object: 1, size: source.size, range: range, ahead: ahead, fetch: source.fetch),
                         expected(source.bytes, range))
            offset += Int64(length)
        }
        #expect(source.settle(cache))
        #expect(planned > 0)
        #expect(cache.counters.bytesFetched == source.size)
        #expect(source.callCount < size / length, "prefetching makes fewer, larger requests than reads")
    }
}

/// Sixteen threads of one open file, each reading its own part in 2 MiB chunks (the Run:ai
/// streamer): each keeps its own run, and its own window ahead.
@Suite struct PrefetchersTests {
    @Test func eachThreadOfAStreamingLoaderKeepsItsOwnRun() {
        let size: Int64 = 1 << 30, part = size / 16, chunk = 2 << 20
        var streams = Prefetchers(Prefetcher(startAfter: 4 << 20))
        var single = Prefetcher(startAfter: 4 << 20)
        var ahead = [Int64](repeating: 0, count: 16), aheadSingle: Int64 = 0
        for step in 0..<8 {
            for t in 0..<16 {  // interleaved, as threads run
                let offset = Int64(t) * part + Int64(step * chunk)
                ahead[t] += Int64(streams.plan(offset: offset, length: chunk, size: size)?.count ?? 0)
                aheadSingle += Int64(single.plan(offset: offset, length: chunk, size: size)?.count ?? 0)
            }
        }
        #expect(streams.count == 16)
        #expect(ahead.allSatisfy { $0 > 0 }, "every thread's run reads ahead: \(ahead)")
        #expect(aheadSingle == 0, "one run sees only seeks")
        #expect(streams.longestRun == 16 << 20)
    }

    @Test func aSeventeenthRunTakesThePlaceOfTheLeastRecentlyRead() {
        var streams = Prefetchers(Prefetcher(), maxStreams: 2)
        _ = streams.plan(offset: 0, length: 1 << 20, size: 1 << 30)
        _ = streams.plan(offset: 100 << 20, length: 1 << 20, size: 1 << 30)
        _ = streams.plan(offset: 1 << 20, length: 1 << 20, size: 1 << 30)   // run 1 goes on
        _ = streams.plan(offset: 500 << 20, length: 1 << 20, size: 1 << 30) // replaces run 2
        #expect(streams.count == 2)
        #expect(streams.longestRun == 2 << 20, "run 1 kept its 2 MiB")
    }
}
