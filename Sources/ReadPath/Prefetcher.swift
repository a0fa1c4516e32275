/// Decides, for one open file, how far to read ahead. Short runs get nothing beyond the kernel's
/// own readahead; past `startAfter` bytes, the distance ahead is half what the current sequential
/// run has already read (up to a maximum), and the far end moves in granules of that size. So a run that stops, such as one tensor of a safetensors
/// file or one member of a zip, has fetched at most about twice what it read, while a long scan
/// soon reads far ahead in large requests. A seek starts a new run.
public struct Prefetcher: Sendable {
    /// The distance ahead at the start of a run.
    public let initialWindow: Int64
    /// A run reads this much before anything is fetched ahead of the kernel's requests.
    public let startAfter: Int64
    public let maxWindow: Int64
    /// The size of one prefetch GET once the window is that large.
    public let requestSize: Int64
    /// How far ahead of the last read the next plan reaches.
    public private(set) var window: Int64
    /// Bytes read by the current sequential run.
    public private(set) var runBytes: Int64 = 0
    private var nextOffset: Int64 = 0
    /// Where what this run already asked for ahead ends: each plan hands out only what lies beyond,
    /// so the cache is not asked about the same blocks on every read.
    private var plannedEnd: Int64 = 0

    public init(initialWindow: Int64 = 128 << 10, maxWindow: Int64 = 64 << 20, requestSize: Int64 = 16 << 20,
                startAfter: Int64 = 0) {
        self.initialWindow = initialWindow
        self.startAfter = startAfter
        self.maxWindow = maxWindow
        self.requestSize = requestSize
        window = initialWindow
    }

    /// Whether a read at `offset` continues this run.
    public func continues(offset: Int64, length: Int) -> Bool {
        let near = max(window, 4 * Int64(length))
        let slack = min(near, 4 << 20)
        let reach = max(near, min(runBytes, 16 << 20))
        return offset == nextOffset || (runBytes > 0 && offset >= nextOffset - slack && offset <= nextOffset + reach)
    }

    /// How far a read at `offset` is from where this run stands (to pick among runs).
    func distance(to offset: Int64) -> Int64 { abs(offset - nextOffset) }

    /// The range to fetch ahead of a read of `length` bytes at `offset` that was not planned
    /// before, or nil when there is none (random access, or the far end has not moved).
    public mutating func plan(offset: Int64, length: Int, size: Int64) -> Range<Int64>? {
        let end = offset + Int64(length)
        // The kernel issues readahead asynchronously and may reorder nearby requests: a read that
        // lands within the window of where the last one ended still counts as sequential
        // (backwards by at most 4 MiB, so random access is not mistaken for it).
        // Forward, a gap no longer than the run so far (up to 16 MiB) is still the same run:
        // readers of one file share its page cache, so each one's requests skip what the others
        // already brought in. Random reads have no run to speak of, so their jumps stay jumps.
        let sequential = continues(offset: offset, length: length)
        if sequential {
            runBytes += max(0, end - nextOffset)
            nextOffset = max(end, nextOffset)
        } else {
            runBytes = Int64(length)
            nextOffset = end
            plannedEnd = 0
        }
        window = sequential ? min(max(runBytes / 2, initialWindow), maxWindow) : initialWindow
        guard sequential, end < size, runBytes >= startAfter else { return nil }
        // The far end moves in whole granules, so each new fetch is one large ranged GET rather
        // than a sliver the size of the last read; window + granule stays within what was read.
        let granule = min(Int64(1) << (63 - window.leadingZeroBitCount), requestSize)  // a power of two: stable
        let far = min((end + window + granule - 1) / granule * granule, size)
        let start = max(end, plannedEnd)
        guard far > start else { return nil }
        plannedEnd = far
        return start..<far
    }
}

/// Several sequential runs through one open file at once: a loader's threads each reading their
/// own part of it (the Run:ai streamer: 16 threads, 2 MiB chunks at as many offsets). Each read
/// continues the run it belongs to, so every thread keeps its own window ahead, where one
/// ``Prefetcher`` would see nothing but seeks. A read that continues no run starts one, in place
/// of the run least recently read.
public struct Prefetchers: Sendable {
    public let maxStreams: Int
    private let template: Prefetcher
    private var streams: [Prefetcher] = []
    private var lastUse: [UInt64] = []
    private var clock: UInt64 = 0

    public init(_ template: Prefetcher, maxStreams: Int = 16) {
        self.template = template
        self.maxStreams = max(1, maxStreams)
    }

    /// What to fetch ahead of a read (see ``Prefetcher/plan(offset:length:size:)``), planned by its run.
    public mutating func plan(offset: Int64, length: Int, size: Int64) -> Range<Int64>? {
        clock += 1
        let i: Int
        if let near = streams.indices.filter({ streams[$0].continues(offset: offset, length: length) })
            .min(by: { streams[$0].distance(to: offset) < streams[$1].distance(to: offset) }) {
            i = near
        } else if streams.count < maxStreams {
            streams.append(template)
            lastUse.append(0)
            i = streams.count - 1
        } else {
            i = lastUse.indices.min { lastUse[$0] < lastUse[$1] }!
            streams[i] = template
        }
        lastUse[i] = clock
        return streams[i].plan(offset: offset, length: length, size: size)
    }

    /// Bytes read by the longest run now.
    public var longestRun: Int64 { streams.map(\.runBytes).max() ?? 0 }
    public var count: Int { streams.count }
}
