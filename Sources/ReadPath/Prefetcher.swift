/// Decides, for one open file, how far to read ahead: a small first window that doubles while
/// reads stay sequential, and nothing ahead after a seek, so random reads fetch little.
public struct Prefetcher: Sendable {
    public let initialWindow: Int64
    public let maxWindow: Int64
    public private(set) var window: Int64
    private var nextOffset: Int64 = 0

    /// The size of one prefetch GET once the window is that large.
    public let requestSize: Int64

    public init(initialWindow: Int64 = 256 << 10, maxWindow: Int64 = 32 << 20, requestSize: Int64 = 8 << 20) {
        self.initialWindow = initialWindow
        self.maxWindow = maxWindow
        self.requestSize = requestSize
        window = initialWindow
    }

    /// The range to fetch ahead of a read of `length` bytes at `offset`, or nil on random access.
    public mutating func plan(offset: Int64, length: Int, size: Int64) -> Range<Int64>? {
        let end = offset + Int64(length)
        // The kernel issues readahead asynchronously and may reorder nearby requests: a read that
        // lands within the current window of where the last one ended still counts as sequential
        // (backwards by at most 4 MiB, so random access is not mistaken for it).
        let slack = min(window, 4 << 20)
        let sequential = offset == nextOffset || (offset >= nextOffset - slack && offset <= nextOffset + window)
        if sequential {
            if offset >= nextOffset { window = min(window * 2, maxWindow) }
        } else {
            window = initialWindow
        }
        nextOffset = max(end, sequential ? nextOffset : end)
        guard sequential, end < size else { return nil }
        // The far end moves in whole granules, so each new fetch is one large ranged GET rather
        // than a sliver the size of the last read.
        let granule = min(window, requestSize)
        let far = (end + window + granule - 1) / granule * granule
        return end..<min(far, size)
    }
}
