import Testing
@testable import UploadPath

@Suite struct PartSizingTests {
    static let MiB = 1 << 20
    static let fiveTiB: Int64 = 5 << 40
    static let fiveGiB = 5 << 30        // S3's largest part

    @Test func standardBaseIs8MiB() {
        #expect(PartSizing.standard.base == 8 * Self.MiB)
        #expect(PartSizing.minimumPart == 5 * Self.MiB)
        #expect(PartSizing.maximumParts == 10_000)
    }

    @Test(arguments: [(1, 8), (2, 8), (900, 8), (901, 16), (1800, 16), (1801, 32), (8101, 8 << 9), (9001, 5 << 10), (10_000, 5 << 10)])
    func standardPartSizes(_ number: Int, _ mebibytes: Int) {
        #expect(PartSizing.standard.size(ofPart: number) == mebibytes * Self.MiB)
    }

    @Test func standardFitsFiveTiBInTenThousandParts() {
        #expect(PartSizing.standard.capacity >= Self.fiveTiB)
    }

    @Test func sizesNeverShrinkAndStayWithinS3Limits() {
        let sizes = (1...PartSizing.maximumParts).map(PartSizing.standard.size(ofPart:))
        #expect(zip(sizes, sizes.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(sizes.min() == PartSizing.minimumPart + 3 * Self.MiB)
        #expect(sizes.max()! <= Self.fiveGiB)
        #expect(sizes.reduce(Int64(0)) { $0 + Int64($1) } == PartSizing.standard.capacity)
    }

    /// Every base the initializer accepts must keep the design's promise: 5 TiB fits in 10,000
    /// parts, and no part is under 5 MiB or over S3's 5 GiB.
    @Test(arguments: [5, 6, 8, 10, 16, 64])
    func everyAcceptedBaseKeepsS3Limits(_ baseMiB: Int) {
        let s = PartSizing(base: baseMiB * Self.MiB)
        do {
            #expect(s.capacity >= Self.fiveTiB, "capacity \(s.capacity)")
            #expect(s.size(ofPart: PartSizing.maximumParts) <= Self.fiveGiB)
        }
        #expect(s.size(ofPart: 1) == baseMiB * Self.MiB)
        #expect((1...PartSizing.maximumParts).allSatisfy { s.size(ofPart: $0) >= PartSizing.minimumPart })
    }

    @Test func scheduleIsAPureFunctionOfBase() {
        // A resumed upload must cut the same parts as the run it continues.
        #expect(PartSizing(base: 5 * Self.MiB) == PartSizing(base: 5 * Self.MiB))
        #expect(PartSizing(base: 5 * Self.MiB).size(ofPart: 1500) == PartSizing(base: 5 * Self.MiB).size(ofPart: 1500))
        #expect(PartSizing(base: 5 * Self.MiB).size(ofPart: 1500) == 10 * Self.MiB)
    }
}
