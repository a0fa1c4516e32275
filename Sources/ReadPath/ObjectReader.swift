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
}

public enum ObjectReaders {
    /// The object's own file when the store keeps one whole and of the recorded size (the local
    /// store): its page cache is the only cache. Otherwise ranged reads through the node's block
    /// cache, with sequential prefetch, or whole tensors where the object has them (`layout`).
    public static func open(store: any ObjectStore, cache: BlockCache, key: String, size: Int64, id: UInt64,
                            layout: TensorLayout? = nil) -> any ObjectReader {
        if let path = store.localFile(key), let local = LocalFileReader(path: path, size: size, cache: cache) { return local }
        return CachedObjectReader(store: store, cache: cache, key: key, size: size, id: id, layout: layout)
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

/// Which tensors a reader already had fetched, and how many it has touched.
struct TensorPlanner: Sendable {
    let layout: TensorLayout
    private var planned = Set<Int>()

    init(_ layout: TensorLayout) { self.layout = layout }

    /// What to fetch for a read at `offset`: its tensor, whole, the first time it is touched;
    /// once a reader has touched two tensors (a loader, not one `get_tensor`), also the tensors
    /// after it in file order, up to `depth` bytes of them. Nil when `offset` is in no tensor small
    /// enough: the run prefetcher's turn.
    mutating func plan(offset: Int64) -> Range<Int64>?? {
        guard let i = layout.tensor(containing: offset), layout.tensors[i].count <= layout.maxWhole else { return nil }
        var lower: Int64?, upper: Int64 = 0
        var j = i, reach: Int64 = 0
        while j < layout.tensors.count, layout.tensors[j].count <= layout.maxWhole {
            if j > i {
                if planned.count < 2 || reach >= layout.depth { break }
                reach += Int64(layout.tensors[j].count)
            }
            if planned.insert(j).inserted {
                // One contiguous range: a tensor already fetched in the middle is asked again of
                // the cache, which skips what it holds.
                lower = lower ?? layout.tensors[j].lowerBound
                upper = layout.tensors[j].upperBound
            }
            j += 1
        }
        return .some(lower.map { $0..<upper })
    }
}

/// Ranged GETs through the block cache; prefetch once a run is long enough.
public final class CachedObjectReader: ObjectReader {
    let store: any ObjectStore
    let cache: BlockCache
    let key: String
    let size: Int64
    let id: UInt64
    /// Nothing ahead of the kernel's readahead for the first 4 MiB of a run: one tensor or one zip
    /// member costs what the kernel asks for, not a window more.
    private let prefetcher = Locked(Prefetcher(startAfter: 4 << 20))
    private let tensors: Locked<TensorPlanner>?

    init(store: any ObjectStore, cache: BlockCache, key: String, size: Int64, id: UInt64, layout: TensorLayout? = nil) {
        self.store = store; self.cache = cache; self.key = key; self.size = size; self.id = id
        tensors = layout.map { Locked(TensorPlanner($0)) }
    }

    /// What to fetch ahead of a read: whole tensors inside the tensor region, runs elsewhere.
    private func ahead(offset: Int64, length: Int) -> Range<Int64>? {
        if let tensors, case .some(let whole) = tensors.withLock({ $0.plan(offset: offset) }) { return whole }
        return prefetcher.withLock { $0.plan(offset: offset, length: length, size: size) }
    }

    /// When object storage last stayed unreachable for this file, and what it said.
    private let lastFailure = Locked<(at: ContinuousClock.Instant, error: StoreError)?>(nil)
    /// A read failing with `EIO` is followed at once by the kernel's own retry of the same pages
    /// (readahead, then the read itself): within this window it gets the same answer instead of
    /// waiting out another `--s3-timeout`, so a reader sees `EIO` within one timeout.
    static let failFastWindow: Duration = .seconds(2)

    public func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        if let recent = lastFailure.withLock({ $0 }), ContinuousClock.now - recent.at < CachedObjectReader.failFastWindow {
            throw recent.error
        }
        let ahead = self.ahead(offset: offset, length: length)
        let store = self.store
        let key = self.key
        do throws(StoreError) {
            return .cached(try cache.read(object: id, size: size, range: offset..<(offset + Int64(length)), ahead: ahead) {
                (range, buffer) throws(StoreError) -> Int in
                do throws(ObjectStoreError) { return try store.get(key, range: range, into: buffer) } catch {
                    // The version was deleted (by the CLI, another mount) while this file was open.
                    if case .notFound = error { throw StoreError(.stale, "\(key) was deleted while it was open") }
                    throw error.storeError
                }
            })
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

    func read(offset: Int64, size length: Int) throws(StoreError) -> ReadReply {
        let lower = min(max(offset, 0), size)
        let count = Int(min(Int64(length), size - lower))
        cache.countDirect(bytes: count)
        return .file(descriptor: fd, offset: lower, count: count)
    }
}
