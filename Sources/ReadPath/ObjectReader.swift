import Foundation
import Glibc
import ModelStore

/// What a read returns, in the form that costs the fewest copies to reply with.
public enum ReadReply: Sendable {
    case bytes([UInt8])
    /// Straight from the block cache's memory.
    case cached(CachedBytes)
    /// `count` bytes of an open file at `offset` (the local store's object file), which the FUSE
    /// layer can splice to the kernel.
    case file(descriptor: Int32, offset: Int64, count: Int)

    /// The bytes in one array (tests and callers that want them).
    public var bytes: [UInt8] {
        switch self {
        case .bytes(let b): return b
        case .cached(let c): return c.bytes
        case .file(let fd, let offset, let count):
            return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                var done = 0
                while done < count {
                    let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    done += n
                }
                initialized = done
            }
        }
    }
}

/// One open file's reads of one immutable object. The read path picks the reader; the
/// filesystem only asks it for ranges.
public protocol ObjectReader: Sendable {
    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply
    /// The same, fetching nothing ahead at or past `aheadEnd`: the caller (an archive member's
    /// reader) will read no further, so bytes prefetched there would be fetched for nothing.
    func read(offset: Int64, size: Int, aheadEnd: Int64) throws(StoreError) -> ReadReply
    /// A local file that holds the whole object, byte for byte at the same offsets, checked, now:
    /// the kernel may read it directly (FUSE passthrough) instead of asking the daemon. Nil while
    /// there is none. The reader owns the descriptor; it stays valid while the reader lives.
    var wholeFile: Int32? { get }
}

extension ObjectReader {
    public var wholeFile: Int32? { nil }
    /// Readers that fetch nothing ahead have no prefetch to cap.
    public func read(offset: Int64, size: Int, aheadEnd: Int64) throws(StoreError) -> ReadReply {
        try read(offset: offset, size: size)
    }
}

public enum ObjectReaders {
    /// The object's own file when the store keeps one whole and of the recorded size (the local
    /// store): its page cache is the only cache. Otherwise ranged reads through the node's block
    /// cache, with sequential prefetch, or whole tensors where the object has them (`layout`).
    /// `wholeLoads`: the reader may fetch the object whole into the disk cache once its reads
    /// show a whole load (a version's file; an archive's reader leaves it to its members).
    public static func open(store: any ObjectStore, cache: BlockCache, key: String, size: Int64, id: UInt64,
                            layout: TensorLayout? = nil, wholeLoads: Bool = false) -> any ObjectReader {
        if let path = store.localFile(key), let local = LocalFileReader(path: path, size: size, cache: cache) { return local }
        return CachedObjectReader(store: store, cache: cache, key: key, size: size, id: id, layout: layout, wholeLoads: wholeLoads)
    }
}

/// Where an object's tensors lie (absolute byte ranges, in file order), so that a read touching
/// a tensor fetches that tensor whole, in large parallel GETs, and nothing around it: mmap page
/// faults look random to a FUSE daemon, but each lands in a tensor the reader will read entirely.
public struct TensorLayout: Sendable {
    public let tensors: [Range<Int64>]
    /// A tensor larger than this is read as a sequential run instead (the memory budget).
    public let maxWhole: Int64
    /// How far past the tensor being read a loader's next tensors are fetched.
    public let depth: Int64

    public init(tensors: [Range<Int64>], maxWhole: Int64 = 64 << 20, depth: Int64 = 64 << 20) {
        self.tensors = tensors.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        self.maxWhole = maxWhole
        self.depth = depth
    }

    /// The index of the tensor holding `offset`.
    func tensor(containing offset: Int64) -> Int? {
        var lo = 0, hi = tensors.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if tensors[mid].upperBound <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo < tensors.count && tensors[lo].contains(offset) ? lo : nil
    }
}

/// Which tensors a reader is consuming, and what was fetched for them.
struct TensorPlanner: Sendable {
    let layout: TensorLayout
    /// Bytes read so far in each tensor touched.
    private var read: [Int: Int64] = [:]
    private var planned = Set<Int>()
    /// A reader has read this much of a tensor (or a quarter of a small one) before the
    /// rest is fetched whole: the kernel's read-around spills a few hundred KiB into the
    /// neighbours of the tensor it reads, which must not cost those neighbours whole.
    static let consuming: Int64 = 1 << 20
    /// What the kernel reads past a tensor being consumed, on top: its async readahead runs up to
    /// two windows (2 x the mount's 512 KiB) ahead of the last fault, so a `get_tensor` of a 2 MiB
    /// tensor spilled 764 KiB into the next one and fetched that one whole (issue 21: 2.4x).
    static let spill: Int64 = 1 << 20

    init(_ layout: TensorLayout) { self.layout = layout }

    /// Whether the reader consumes tensor after tensor (a loader, not one `get_tensor`).
    var isLoader: Bool { planned.count >= 2 }

    /// What to fetch for a read of `length` bytes at `offset`. Once the reader has read enough
    /// of a tensor, the rest of it, whole; once it has done so for two tensors (a loader such
    /// as `load_file`, not one `get_tensor`), also the tensors after it in file order, up to
    /// `depth` bytes of them. `.some(nil)`: nothing to fetch, and no run prefetch either (the read
    /// is in a tensor); nil when the read is in no tensor small enough: the run prefetcher's turn.
    mutating func plan(offset: Int64, length: Int) -> Range<Int64>?? {
        let end = offset + Int64(max(length, 1))
        guard let first = layout.tensor(containing: offset) ?? layout.tensor(containing: end - 1) else { return nil }
        var last = first
        while last + 1 < layout.tensors.count, layout.tensors[last + 1].lowerBound < end { last += 1 }
        guard layout.tensors[first...last].allSatisfy({ $0.count <= layout.maxWhole }) else { return nil }
        var lower: Int64?, upper: Int64 = 0
        for i in first...last {
            let t = layout.tensors[i]
            read[i, default: 0] += min(end, t.upperBound) - max(offset, t.lowerBound)
            guard !planned.contains(i), read[i]! >= threshold(i) else { continue }
            planned.insert(i)
            lower = lower ?? max(end, t.lowerBound)
            upper = t.upperBound
        }
        // A loader: the tensors after the one being read too, kept `depth` ahead as it moves on.
        if planned.count >= 2, planned.contains(last) {
            var j = last + 1, reach: Int64 = 0
            while j < layout.tensors.count, layout.tensors[j].count <= layout.maxWhole, reach < layout.depth {
                if planned.insert(j).inserted {
                    lower = lower ?? layout.tensors[j].lowerBound
                    upper = layout.tensors[j].upperBound
                }
                reach += Int64(layout.tensors[j].count)
                j += 1
            }
        }
        guard let lower, lower < upper else { return .some(nil) }
        return .some(lower..<upper)
    }

    /// Bytes of tensor `i` read that show it is being consumed: beside one that is, what the
    /// kernel's readahead may have read of it does not count.
    private func threshold(_ i: Int) -> Int64 {
        let own = min(TensorPlanner.consuming, Int64(layout.tensors[i].count) / 4)
        return planned.contains(i - 1) || planned.contains(i + 1) ? own + TensorPlanner.spill : own
    }
}

/// Ranged GETs through the block cache; prefetch once a run is long enough. Once the reader shows
/// it reads the object whole, a ``WholeFetch`` into the disk cache serves it instead.
public final class CachedObjectReader: ObjectReader {
    let store: any ObjectStore
    let cache: BlockCache
    let key: String
    let size: Int64
    let id: UInt64
    /// Nothing ahead of the kernel's readahead for the first 4 MiB of a run: one tensor or one zip
    /// member costs what the kernel asks for, not a window more.
    /// One run per thread of a streaming loader.
    private let prefetcher = Locked(Prefetchers(Prefetcher(startAfter: 4 << 20)))
    private let tensors: Locked<TensorPlanner>?
    /// The whole-object fetch serving this reader, once there is one.
    private let whole = Locked<WholeFetch?>(nil)
    /// Whether this reader may start one (a version's file, not an archive's member).
    private let wholeLoads: Bool
    /// Bytes read in all that make a whole load: an eighth of the object, at least `wholeRead`
    /// (one large tensor read with `safe_open` is not a load of the file).
    private var wholeRead: Int64 { max(Self.wholeRead, size / 8) }
    /// Bytes this reader was asked for: many chunks from several offsets (a streaming loader's
    /// threads) add up to a whole load without any one run being long.
    private let bytesRead = Locked<Int64>(0)
    private let firstRead = Locked(true)

    /// A sequential run this long, or this many bytes read in all, is a whole-object load. One
    /// tensor read by `safe_open` stays under both unless it is this large.
    static let wholeRun: Int64 = 16 << 20
    static let wholeRead: Int64 = 32 << 20
    /// A loader (tensors consumed one after another) is a whole load once it has read this much:
    /// the kernel's readahead past one small tensor may look like a second.
    static let loaderRead: Int64 = 8 << 20

    init(store: any ObjectStore, cache: BlockCache, key: String, size: Int64, id: UInt64, layout: TensorLayout? = nil,
         wholeLoads: Bool = false) {
        self.store = store; self.cache = cache; self.key = key; self.size = size; self.id = id
        let loads = wholeLoads && cache.whole != nil
        self.wholeLoads = loads
        // A loader's next tensors come with the whole fetch: none fetched ahead through memory first.
        tensors = layout.map { Locked(TensorPlanner(loads ? TensorLayout(tensors: $0.tensors, maxWhole: $0.maxWhole, depth: 0) : $0)) }
        // A copy complete and checked in this mount: the kernel may read it directly from the start.
        if self.wholeLoads, let done = cache.whole?.complete(object: id, size: size) { whole.withLock { $0 = done } }
    }

    public var wholeFile: Int32? {
        guard let w = whole.withLock({ $0 }), w.isComplete else { return nil }
        return w.fd
    }

    /// What to fetch ahead of a read: whole tensors inside the tensor region, runs elsewhere; and
    /// whether the reads so far make a whole-object load.
    private func ahead(offset: Int64, length: Int, aheadEnd: Int64) -> (Range<Int64>?, whole: Bool) {
        let total = bytesRead.withLock { $0 += Int64(length); return $0 }
        if let tensors {
            let (plan, loader) = tensors.withLock { ($0.plan(offset: offset, length: length), $0.isLoader) }
            if case .some(let whole) = plan { return (whole, (loader && total >= Self.loaderRead) || total >= wholeRead) }
        }
        let (plan, run) = prefetcher.withLock { ($0.plan(offset: offset, length: length, size: min(size, aheadEnd)), $0.longestRun) }
        // In a safetensors file a long run may be one large tensor: its tensors say when it is a load.
        return (plan, (tensors == nil && run >= Self.wholeRun) || total >= wholeRead)
    }

    /// When object storage last stayed unreachable for this file, and what it said.
    private let lastFailure = Locked<(at: ContinuousClock.Instant, error: StoreError)?>(nil)
    /// A read failing with `EIO` is followed at once by the kernel's own retry of the same pages
    /// (readahead, then the read itself): within this window it gets the same answer instead of
    /// waiting out another `--s3-timeout`, so a reader sees `EIO` within one timeout.
    static let failFastWindow: Duration = .seconds(2)

    /// Ranged reads of the object into memory, counted as fetched; a deleted version answers `ESTALE`.
    private var rangeReader: RangeReader {
        let store = self.store, key = self.key
        return { (range, buffer) throws(StoreError) -> Int in
            do throws(ObjectStoreError) { return try store.get(key, range: range, into: buffer) } catch {
                throw Self.readError(error, key: key)
            }
        }
    }

    private static func readError(_ error: ObjectStoreError, key: String) -> StoreError {
        // The version was deleted (by the CLI, another mount) while this file was open.
        if case .notFound = error { return StoreError(.stale, "\(key) was deleted while it was open") }
        return error.storeError
    }

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        try read(offset: offset, size: length, aheadEnd: size)
    }

    public func read(offset: Int64, size length: Int, aheadEnd: Int64) throws(StoreError) -> ReadReply {
        if let w = whole.withLock({ $0 }), let reply = try w.read(offset: offset, length: length) { return reply }
        // Another reader of the object started its whole fetch: this one's bytes come with it.
        if wholeLoads, whole.withLock({ $0 }) == nil, let live = cache.whole!.live(object: id) {
            whole.withLock { $0 = live }
            if let reply = try live.read(offset: offset, length: length) { return reply }
        }
        if let recent = lastFailure.withLock({ $0 }), ContinuousClock.now - recent.at < CachedObjectReader.failFastWindow {
            throw recent.error
        }
        let (ahead, wholeLoad) = self.ahead(offset: offset, length: length, aheadEnd: aheadEnd)
        // Every block on disk already (a remount): checking it into a whole copy costs no fetch.
        let onDisk = wholeLoads && firstRead.withLock { first in defer { first = false }; return first }
            && cache.whole!.onDisk(object: id, size: size)
        if wholeLoads, wholeLoad || onDisk, whole.withLock({ $0 }) == nil {
            let cache = self.cache, store = self.store, key = self.key
            let counted: RangeStreamer = { (range, consume) throws(StoreError) -> Int64 in
                do throws(ObjectStoreError) {
                    let n = try store.get(key, range: range, streamingTo: consume)
                    cache.countDirect(bytes: Int(n))
                    return n
                } catch {
                    throw Self.readError(error, key: key)
                }
            }
            if let w = cache.whole!.fetch(object: id, size: size, reader: counted) {
                whole.withLock { $0 = w }
                if let reply = try w.read(offset: offset, length: length) { return reply }
            }
        }
        do throws(StoreError) {
            return .cached(try cache.read(object: id, size: size, range: offset..<(offset + Int64(length)), ahead: ahead, reader: rangeReader))
        } catch {
            if error.code == .io { lastFailure.withLock { $0 = (ContinuousClock.now, error) } }
            throw error
        }
    }
}

/// The object's own local file, spliced to the kernel.
final class LocalFileReader: ObjectReader {
    let fd: Int32
    let size: Int64
    let cache: BlockCache

    /// Nil when the file is not there or not the recorded size: the checked path says why.
    init?(path: String, size: Int64, cache: BlockCache) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, Int64(st.st_size) == size else { close(fd); return nil }
        // FUSE hands reads over out of order across threads; a wider readahead on the object
        // file keeps the disk ahead of them.
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        self.fd = fd; self.size = size; self.cache = cache
    }

    deinit { close(fd) }

    var wholeFile: Int32? { fd }

    func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        let lower = min(max(offset, 0), size)
        let count = Int(min(Int64(length), size - lower))
        cache.countDirect(bytes: count)
        return .file(descriptor: fd, offset: lower, count: count)
    }
}
