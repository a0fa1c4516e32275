import Testing
@testable import ReadPath

@Suite struct TensorPlannerTests {
    let layout = TensorLayout(tensors: [100..<200, 200..<1000, 1000..<1100, 1100..<(1100 + (80 << 20))], maxWhole: 64 << 20)

    @Test func aReadInATensorFetchesThatTensorWholeOnce() {
        var p = TensorPlanner(layout)
        #expect(p.plan(offset: 250) == .some(200..<1000), "the tensor the read lands in")
        #expect(p.plan(offset: 600) == .some(nil), "already fetched: nothing more, and no run prefetch either")
    }

    @Test func aLoaderTouchingSeveralTensorsGetsTheNextInFileOrderToo() {
        var p = TensorPlanner(layout)
        #expect(p.plan(offset: 150) == .some(100..<200))
        #expect(p.plan(offset: 300) == .some(200..<1100), "the second tensor, and the one after it")
        #expect(p.plan(offset: 1050) == .some(nil))
    }

    @Test func outsideTensorsAndInHugeOnesTheRunPrefetcherDecides() {
        var p = TensorPlanner(layout)
        #expect(p.plan(offset: 10) == nil, "the header")
        #expect(p.plan(offset: 2000) == nil, "a tensor larger than the memory budget allows whole")
        #expect(layout.tensor(containing: 999) == 1 && layout.tensor(containing: 1000) == 2 && layout.tensor(containing: 99) == nil)
    }
}
