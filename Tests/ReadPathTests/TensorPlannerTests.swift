import Testing
@testable import ReadPath

@Suite struct TensorPlannerTests {
    static let MiB: Int64 = 1 << 20
    /// Ten 4 MiB tensors after a 2,464-byte header (as safetensors lays them out), then one too large to fetch whole.
    let layout = TensorLayout(tensors: (0..<10).map { 2464 + Int64($0) * 4 * MiB..<2464 + Int64($0 + 1) * 4 * MiB }
                                + [2464 + 40 * MiB..<2464 + 120 * MiB], maxWhole: 64 << 20, depth: 12 * MiB)

    func start(_ i: Int64) -> Int64 { 2464 + i * 4 * TensorPlannerTests.MiB }

    @Test func oneTensorReadSequentiallyIsFetchedWholeOnceItIsBeingConsumed() {
        var p = TensorPlanner(layout)
        #expect(p.plan(offset: start(5), length: 512 << 10) == .some(nil), "not yet: this could be a spill")
        #expect(p.plan(offset: start(5) + (512 << 10), length: 512 << 10) == .some((start(5) + TensorPlannerTests.MiB)..<start(6)),
                "a MiB read: the rest of the tensor")
        #expect(p.plan(offset: start(5) + 2 * TensorPlannerTests.MiB, length: 512 << 10) == .some(nil), "fetched already")
    }

    @Test func readAroundAndReadaheadSpillsCostTheNeighboursNothingWhole() {
        var p = TensorPlanner(layout)
        // A fault at tensor 5's start: the read-around begins in tensor 4; the readahead past its end spills into 6.
        #expect(p.plan(offset: start(5) - 264_608, length: 512 << 10) == .some(nil))
        for k in 1..<8 { _ = p.plan(offset: start(5) - 264_608 + Int64(k) * (512 << 10), length: 512 << 10) }
        #expect(p.plan(offset: start(6) - 250_000, length: 512 << 10) == .some(nil), "tensor 6: a spill of 262 KB")
    }

    @Test func theKernelsAsyncReadaheadPastOneSmallTensorCostsTheNextNothingWhole() {
        // safe_open's get_tensor of a 2 MiB tensor on RGW, as the mount saw it: the read-around of
        // the first fault, the readahead through the tensor and 764 KiB past its end.
        let MiB = TensorPlannerTests.MiB, KiB: Int64 = 1 << 10
        let two = TensorLayout(tensors: (0..<48).map { (i: Int64) -> Range<Int64> in 2464 + i * 2 * MiB..<2464 + (i + 1) * 2 * MiB })
        let t: Int64 = 2464 + 29 * 2 * MiB
        let reads: [(Int64, Int64)] = [(-256, 512), (1792, 512), (256, 508), (764, 512), (1276, 512), (1788, 4), (2304, 508)]
        var p = TensorPlanner(two)
        var fetched: [Range<Int64>] = []
        for (at, length) in reads {
            if case .some(.some(let r)) = p.plan(offset: t + at * KiB, length: Int(length * KiB)) { fetched.append(r) }
        }
        #expect(fetched.allSatisfy { $0.upperBound <= t + 2 * MiB }, "nothing of tensor 30 fetched whole: \(fetched)")
        #expect(!p.isLoader)
        // A loader that goes on into tensor 30 gets it whole once it has read more than the readahead could have.
        #expect(p.plan(offset: t + 2812 * KiB, length: 512 * 1024) == .some(nil))
        let rest = p.plan(offset: t + 3324 * KiB, length: 512 * 1024)
        #expect(rest??.lowerBound == t + 3836 * KiB, "the rest of tensor 30 (and the tensors after it)")
        #expect(p.isLoader)
    }

    @Test func aLoaderGetsTheTensorsAfterItTooDepthAhead() {
        var p = TensorPlanner(layout)
        _ = p.plan(offset: start(0), length: 1 << 20)
        #expect(p.plan(offset: start(1), length: 1 << 20) == .some(nil), "what the kernel may have read ahead past tensor 0")
        #expect(p.plan(offset: start(1) + TensorPlannerTests.MiB, length: 1 << 20) == .some((start(1) + 2 * TensorPlannerTests.MiB)..<start(5)),
                "the second tensor consumed: its rest and 12 MiB of tensors after it")
        #expect(p.plan(offset: start(2), length: 1 << 20) == .some(start(5)..<start(6)), "and the window moves with the reader")
        #expect(p.plan(offset: start(2) + TensorPlannerTests.MiB, length: 1 << 20) == .some(nil))
    }

    @Test func outsideTensorsAndInHugeOnesTheRunPrefetcherDecides() {
        var p = TensorPlanner(layout)
        #expect(p.plan(offset: 10, length: 100) == nil, "the header")
        #expect(p.plan(offset: start(10) + 100, length: 1 << 20) == nil, "a tensor larger than the memory budget allows whole")
        #expect(layout.tensor(containing: start(1) - 1) == 0 && layout.tensor(containing: start(1)) == 1 && layout.tensor(containing: 0) == nil)
    }
}
