/// How big each part of a multipart upload is, for a stream whose length is not known up front.
///
/// Parts start at `base` (8 MiB: S3's minimum is 5 MiB) and double every 900 parts, never above
/// S3's 5 GiB part limit, so 10,000 parts hold more than S3's 5 TiB object limit for any base of
/// 5 MiB or more, while files under 7 GiB use 8 MiB parts throughout. The schedule is a pure function of `base`, so a resumed upload cuts the
/// same parts as the run it continues.
public struct PartSizing: Sendable, Equatable {
    public static let minimumPart = 5 << 20
    public static let maximumParts = 10_000
    public static let maximumPart = 5 << 30
    public static let standard = PartSizing(base: 8 << 20)

    public let base: Int

    public init(base: Int) {
        precondition(base >= PartSizing.minimumPart, "S3 parts are at least 5 MiB")
        self.base = base
    }

    /// The size of part `number` (1-based).
    public func size(ofPart number: Int) -> Int {
        min(base << min((number - 1) / 900, 10), max(base, PartSizing.maximumPart))
    }

    /// The largest stream this schedule fits into 10,000 parts.
    public var capacity: Int64 {
        (1...PartSizing.maximumParts).reduce(Int64(0)) { $0 + Int64(size(ofPart: $1)) }
    }
}
