import Foundation
import Glibc
import Testing
import ModelStore
@testable import ReadPath

/// A reader that shows it reads an object whole gets it fetched whole into the disk cache, once,
/// and served from there; one that reads a little still fetches little.
@Suite struct WholeFetchTests {
    static let MiB = 1 << 20
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-whole-\(UUID().uuidString)").path
    let key = "m/v1.safetensors"
    /// 64 tensors of 1 MiB after a 4 KiB header, as safetensors lays them out.
    let size = 4096 + 64 * MiB
    var layout: TensorLayout { TensorLayout(tensors: (0..<64).map { Int64(4096 + $0 * Self.MiB)..<Int64(4096 + ($0 + 1) * Self.MiB) }) }
    let data: [UInt8]

    init() { data = Self.pattern(4096 + 64 * Self.MiB, seed: 1) }

    /// Bytes that differ at every offset (quick to make in a debug build).
    static func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = (UInt64(i) &+ seed) &* 0x9E37_79B9_7F4A_7C15 }
        }
        return out
    }

    func mount(_ store: MemoryObjectStore, capacity: Int64 = 1 << 30) throws -> BlockCache {
        let disk = try DiskCache(directory: dir, capacity: capacity, blockSize: 64 << 10)
        return BlockCache(budget: 16 << 20, blockSize: 64 << 10, disk: disk)
    }

    func open(_ store: MemoryObjectStore, _ cache: BlockCache, layout: TensorLayout? = nil) -> CachedObjectReader {
        ObjectReaders.open(store: store, cache: cache, key: key, size: Int64(size), id: 42, layout: layout, wholeLoads: true)
            as! CachedObjectReader
    }

    func store() throws -> MemoryObjectStore {
        let s = MemoryObjectStore()
        _ = try s.put(key, data)
        return s
    }

    /// Reads `range` in `piece`-byte reads, as the kernel asks.
    func read(_ reader: ObjectReader, _ range: Range<Int>, piece: Int = 128 << 10) throws -> [UInt8] {
        var out: [UInt8] = []
        var at = range.lowerBound
        while at < range.upperBound {
            out += try reader.read(offset: Int64(at), size: min(piece, range.upperBound - at)).bytes
            at += piece
        }
        return out
    }

    func contents(of fd: Int32) -> [UInt8] {
        ReadReply.file(descriptor: fd, offset: 0, count: size).bytes
    }

    @Test func aLoaderReadingTensorAfterTensorGetsTheObjectWholeOnceAndItsFileAtTheEnd() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let reader = open(s, cache, layout: layout)
        #expect(reader.wholeFile == nil)
        let all = try read(reader, 0..<size)
        #expect(all == data)
        #expect(cache.whole!.counters.started == 1)
        #expect(eventually { reader.wholeFile != nil }, "complete and checked: the data file is the object's whole file")
        #expect(contents(of: reader.wholeFile!) == data)
        #expect(s.bytesRead <= Int64(size) + Int64(4 * Self.MiB), "fetched once, give or take the first tensors: \(s.bytesRead)")
        #expect(cache.counters.bytesFetched == s.bytesRead, ".stats counts the whole fetch's GETs")
        // The next open of the same object starts with the whole file, and fetches nothing.
        let before = s.bytesRead
        let again = open(s, cache)
        #expect(again.wholeFile != nil)
        #expect(try read(again, 1000..<(3 * Self.MiB)) == Array(data[1000..<(3 * Self.MiB)]))
        #expect(s.bytesRead == before)
    }

    @Test func oneTensorAndAHeaderStaySmall() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let reader = open(s, cache, layout: layout)
        _ = try read(reader, 0..<4096)
        let t = (4096 + 7 * Self.MiB)..<(4096 + 8 * Self.MiB)
        #expect(try read(reader, t) == Array(data[t]))
        #expect(cache.whole!.counters.started == 0)
        #expect(s.bytesRead <= Int64(Double(Self.MiB) * 1.2) + 4096 + (128 << 10), "\(s.bytesRead)")
    }

    @Test func theKernelsReadaheadPastOneTensorIntoTheNextIsNotALoad() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let reader = open(s, cache, layout: layout)
        let t = (4096 + 7 * Self.MiB)..<(4096 + 8 * Self.MiB + 512 * 1024)  // tensor 7, half of tensor 8
        #expect(try read(reader, t) == Array(data[t]))
        #expect(cache.whole!.counters.started == 0)
        #expect(s.bytesRead <= Int64(3 * Self.MiB), "\(s.bytesRead)")
    }

    @Test func aLongSequentialRunOfAFileWithoutTensorsFetchesItWhole() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let reader = open(s, cache)
        #expect(try read(reader, 0..<size, piece: 1 << 20) == data)
        #expect(cache.whole!.counters.started == 1)
        #expect(eventually { reader.wholeFile != nil })
    }

    @Test func eightReadersOfOneObjectFetchItOnce() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let results = Collected<Bool>()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let reader = open(s, cache)
            results.append((try? read(reader, 0..<size, piece: 1 << 20)) == data)
        }
        #expect(results.all == Array(repeating: true, count: 8))
        #expect(cache.whole!.counters.started == 1)
        // What the readers fetched through memory before their runs made a whole load is read
        // back from disk by the whole fetch, and the readers behind join it: no byte twice.
        #expect(s.bytesRead == Int64(size), "\(s.bytesRead)")
    }

    @Test func chunksFromSeveralOffsetsAddUpToAWholeLoadServedFromDisk() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = 160 * Self.MiB
        let bytes = Self.pattern(big, seed: 2)
        let s = MemoryObjectStore()
        _ = try s.put(key, bytes)
        let cache = try mount(s)
        let reader = ObjectReaders.open(store: s, cache: cache, key: key, size: Int64(big), id: 43, wholeLoads: true)
        // Sixteen streams, 2 MiB chunks, each its own part of the file (the Run:ai streamer).
        let ok = Collected<Bool>()
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            let part = big / 16
            var at = i * part
            var good = true
            while at < (i + 1) * part {
                let n = min(2 << 20, (i + 1) * part - at)
                good = good && (try? reader.read(offset: Int64(at), size: n).bytes) == Array(bytes[at..<(at + n)])
                at += n
            }
            ok.append(good)
        }
        #expect(ok.all == Array(repeating: true, count: 16))
        #expect(cache.whole!.counters.started == 1)
        #expect(s.bytesRead <= Int64(big) + Int64(32 * Self.MiB), "\(s.bytesRead)")
    }

    @Test func aFailureMidWayGivesReadersAnErrorThenANewReaderGetsTheBytes() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        let gets = Locked(0)
        // Object storage goes away two GETs into the whole fetch.
        s.injectFaults { op, _, _ in
            guard op == .get, cache.whole!.counters.started == 1 else { return nil }
            return gets.withLock { $0 += 1; return $0 } > 2 ? .unreachable("injected outage") : nil
        }
        let reader = open(s, cache, layout: layout)
        #expect(throws: StoreError.self) { _ = try read(reader, 0..<size) }
        #expect(eventually { cache.whole!.counters.failed == 1 })
        s.injectFaults(nil)
        let fresh = open(s, cache, layout: layout)
        #expect(try read(fresh, 0..<size) == data)
        #expect(eventually { fresh.wholeFile != nil })
        #expect(contents(of: fresh.wholeFile!) == data)
    }

    @Test func aVersionDeletedWhileItIsFetchedIsStale() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s)
        // Slow GETs: the fetch is still under way when the object goes.
        s.injectFaults { _, _, _ in usleep(30_000); return nil }
        let reader = open(s, cache, layout: layout)
        _ = try read(reader, 0..<(4096 + 10 * Self.MiB))
        #expect(cache.whole!.counters.started == 1)
        try s.delete(key)
        cache.forget(object: 42)
        #expect {
            _ = try read(reader, (size - Self.MiB)..<size)
        } throws: { ($0 as? StoreError)?.code == .stale }
    }

    @Test func anObjectLargerThanTheDiskCacheIsReadAsBefore() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let cache = try mount(s, capacity: 8 << 20)
        let reader = open(s, cache, layout: layout)
        #expect(try read(reader, 0..<size) == data)
        #expect(cache.whole!.counters.started == 0)
        #expect(reader.wholeFile == nil)
        cache.drainDisk()
        #expect(cache.disk!.bytesUsed <= 8 << 20, "the disk cache stays within its size")
    }

    @Test func afterARemountTheCopyOnDiskIsCheckedNotFetchedAndABadBlockIsFetchedAgain() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        do {
            let cache = try mount(s)
            let reader = open(s, cache, layout: layout)
            _ = try read(reader, 0..<size)
            #expect(eventually { reader.wholeFile != nil })
        }
        // A flipped byte in the data file, as a disk might.
        let path = dir + "/objects/" + String(42, radix: 16) + ".data"
        let fd = Glibc.open(path, O_WRONLY)
        var bad: UInt8 = 0x5A
        #expect(pwrite(fd, &bad, 1, off_t(5 * Self.MiB)) == 1)
        // Written after the complete record: the mtime differs from the record's (set, so that a
        // write within the same clock tick cannot hide it).
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(futimens(fd, &times) == 0)
        close(fd)
        let before = s.bytesRead
        let cache = try mount(s)
        let reader = open(s, cache, layout: layout)
        #expect(reader.wholeFile == nil, "the record does not match the data file: not trusted, checked first")
        #expect(try read(reader, 0..<4096) == Array(data[0..<4096]))
        #expect(eventually { reader.wholeFile != nil })
        #expect(contents(of: reader.wholeFile!) == data)
        #expect(s.bytesRead - before == 64 << 10, "only the bad block was fetched again")
    }

    @Test func afterARemountACompleteRecordGivesTheWholeFileAtOnceUntilABadBlockDropsIt() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try store()
        let done = dir + "/objects/" + String(42, radix: 16) + ".done"
        do {
            let cache = try mount(s)
            let reader = open(s, cache, layout: layout)
            _ = try read(reader, 0..<size)
            #expect(eventually { FileManager.default.fileExists(atPath: done) }, "complete and flushed: recorded")
        }
        // A flipped byte that leaves size, inode and mtime as they were: nothing short of reading
        // every byte sees it, and the record is trusted without reading (as passthrough is).
        let path = dir + "/objects/" + String(42, radix: 16) + ".data"
        let fd = Glibc.open(path, O_WRONLY)
        var st = stat()
        #expect(fstat(fd, &st) == 0)
        var bad: UInt8 = 0x5A
        #expect(pwrite(fd, &bad, 1, off_t(5 * Self.MiB)) == 1)
        var times = [st.st_atim, st.st_mtim]
        #expect(futimens(fd, &times) == 0)
        close(fd)
        let before = s.bytesRead
        do {
            let cache = try mount(s)
            let reader = open(s, cache, layout: layout)
            #expect(reader.wholeFile != nil, "the first open after a remount has the whole file")
            #expect(cache.disk!.bytesServed == 0 && s.bytesRead == before, "nothing read to get it")
            // A daemon-path read (no whole load) checks its blocks: the bad one is fetched again
            // and the record dropped.
            let plain = ObjectReaders.open(store: s, cache: cache, key: key, size: Int64(size), id: 42)
            let r = (5 * Self.MiB - 1000)..<(5 * Self.MiB + 1000)
            #expect(try read(plain, r) == Array(data[r]))
            #expect(!FileManager.default.fileExists(atPath: done))
        }
        let cache = try mount(s)
        #expect(open(s, cache, layout: layout).wholeFile == nil, "no record: checked first, as before")
    }

    // MARK: Landing as bytes arrive

    /// An object behind a ``RangeStreamer`` that hands its bytes on in 48 KiB pieces (not block
    /// sized) and may, after `blockAfter` bytes in all, wait at a gate, fail, or end short.
    final class GatedStream: @unchecked Sendable {
        enum Then { case wait, fail, endShort }
        let data: [UInt8]
        let blockAfter: Int
        let then: Then
        let gate = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var handed = 0
        private var _calls: [Range<Int64>] = []
        var calls: [Range<Int64>] { lock.withLock { _calls } }
        /// Waiting at the gate now.
        let waiting = Locked(false)

        init(_ data: [UInt8], blockAfter: Int = .max, then: Then = .wait) {
            self.data = data; self.blockAfter = blockAfter; self.then = then
        }

        var streamer: RangeStreamer {
            { [self] (range, consume) throws(StoreError) -> Int64 in
                lock.withLock { _calls.append(range) }
                var at = Int(range.lowerBound)
                let end = min(Int(range.upperBound), data.count)
                while at < end {
                    if lock.withLock({ handed >= blockAfter }) {
                        switch then {
                        case .wait:
                            waiting.withLock { $0 = true }
                            gate.wait()
                            waiting.withLock { $0 = false }
                            lock.withLock { handed = Int.min }  // once
                        case .fail: throw StoreError(.io, "injected: the connection broke")
                        case .endShort: return Int64(at) - range.lowerBound
                        }
                    }
                    let n = min(48 << 10, end - at)
                    lock.withLock { handed += n }
                    let more = data.withUnsafeBytes { consume(UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
                    at += n
                    if !more { break }
                }
                return Int64(at) - range.lowerBound
            }
        }
    }

    /// One stream, 8 MiB segments, runs of four (one GET asks for up to 32 MiB).
    func wholeFetches(_ disk: DiskCache) -> WholeFetches {
        WholeFetches(disk: disk, segmentSize: 8 << 20, runSize: 32 << 20, streams: 1, maxInFlight: 1, pieceSize: 256 << 10)
    }

    func MiBs(_ range: Range<Int>) -> Range<Int64> {
        Int64(range.lowerBound * Self.MiB)..<min(Int64(range.upperBound * Self.MiB), Int64(size))
    }

    @Test func aReaderOfPartOfASegmentIsServedOnceItsPartHasLandedNotTheWholeSegment() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let source = GatedStream(data, blockAfter: 3 * Self.MiB / 2)
        let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: source.streamer))
        #expect(eventually { source.waiting.withLock { $0 } }, "the GET of the first 8 MiB stops after 1.5 MiB")
        let served = Locked<[UInt8]?>(nil)
        DispatchQueue.global().async {
            let reply = try? fetch.read(offset: 100_000, length: 1 << 20)
            served.withLock { $0 = reply?.bytes }
        }
        #expect(eventually(seconds: 10) { served.withLock { $0 } != nil }, "served while its segment is still being fetched")
        #expect(served.withLock { $0 } == Array(data[100_000..<(100_000 + Self.MiB)]))
        let later = Locked<[UInt8]?>(nil)
        DispatchQueue.global().async {
            let reply = try? fetch.read(offset: Int64(2 * Self.MiB), length: 4096)
            later.withLock { $0 = reply?.bytes }
        }
        usleep(200_000)
        #expect(later.withLock { $0 } == nil, "a range not landed yet waits")
        #expect(disk.has(object: 7, range: 0..<Int64(5 * Self.MiB / 4)) && !disk.has(object: 7, range: 0..<Int64(2 * Self.MiB)),
                "whole pieces are kept as they land, nothing past them")
        source.gate.signal()
        #expect(eventually { later.withLock { $0 } != nil })
        #expect(later.withLock { $0 } == Array(data[(2 * Self.MiB)..<(2 * Self.MiB + 4096)]))
        #expect(eventually { fetch.isComplete })
        #expect(contents(of: fetch.fd) == data)
        #expect(source.calls == [MiBs(0..<32), MiBs(32..<64), MiBs(64..<72)], "one GET per run of four segments")
    }

    @Test func aWaitingReaderIsWokenOnceWhenItsRangeHasLandedNotByEveryPiece() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let source = GatedStream(data, blockAfter: Self.MiB)
        let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: source.streamer))
        #expect(eventually { source.waiting.withLock { $0 } })
        let served = Locked<[UInt8]?>(nil)
        DispatchQueue.global().async {
            let reply = try? fetch.read(offset: Int64(4 * Self.MiB), length: 512 << 10)
            served.withLock { $0 = reply?.bytes }
        }
        #expect(eventually { fetch.waitersAndWakeups.waiting == 1 })
        // 3.5 MiB more land in 14 pieces before the reader's range is in.
        source.gate.signal()
        #expect(eventually(seconds: 10) { served.withLock { $0 } != nil })
        #expect(served.withLock { $0 } == Array(data[(4 * Self.MiB)..<(4 * Self.MiB + (512 << 10))]))
        #expect(fetch.waitersAndWakeups.woken == 1, "woken once, for its range")
        #expect(eventually { fetch.isComplete })
    }

    @Test func aGetFailingMidwayKeepsOnlyWhatLandedAndTheNextFetchGetsTheRest() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let broken = GatedStream(data, blockAfter: 1_000_000, then: .fail)
        do {
            let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: broken.streamer))
            #expect(eventually { fetch.isFailed })
            #expect(try fetch.read(offset: Int64(Self.MiB), length: 4096) == nil, "its readers read as before")
            #expect(fetches.counters.failed == 1)
        }
        // 1,000,000 bytes arrived: the three whole pieces before them landed, nothing after.
        #expect(disk.has(object: 7, range: 0..<Int64(768 << 10)))
        #expect(!disk.has(object: 7, range: Int64(768 << 10)..<Int64(832 << 10)), "no block claimed past what landed")
        let healthy = GatedStream(data)
        let again = try #require(fetches.fetch(object: 7, size: Int64(size), reader: healthy.streamer))
        #expect(eventually { again.isComplete })
        #expect(contents(of: again.fd) == data)
        #expect(healthy.calls.first?.lowerBound == Int64(768 << 10), "what landed is checked, not fetched again")
    }

    @Test func aShortBodyFailsTheFetchAndClaimsNoBlockOfItsTail() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let short = GatedStream(data, blockAfter: 600_000, then: .endShort)
        let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: short.streamer))
        #expect(eventually { fetch.isFailed })
        #expect(fetch.failure?.description.contains("short read") == true, "\(String(describing: fetch.failure))")
        #expect(disk.has(object: 7, range: 0..<Int64(512 << 10)))
        #expect(!disk.has(object: 7, range: Int64(512 << 10)..<Int64(576 << 10)))
        #expect(!disk.isVerified(object: 7))
    }

    // MARK: A directory shared by several mounts

    /// Another mount of the cache directory evicts the object while this one fetches it, before
    /// the stream's first write: the stream writes the file the fetch's readers read (the one it
    /// opened), not a new one under the object's name, and no complete record vouches for the
    /// name's file.
    @Test func aFetchsReadersReadTheFileItsStreamsWriteWhenAnotherMountEvictsTheObject() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let source = GatedStream(data, blockAfter: 0)  // waits before its first byte
        let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: source.streamer))
        #expect(eventually { source.waiting.withLock { $0 } })
        try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10).forget(object: 7)
        source.gate.signal()
        #expect(eventually { fetch.isComplete })
        fetches.drain()
        // Bools first: a failed comparison of 64 MiB arrays would print them.
        let served = try fetch.read(offset: 0, length: 1 << 20)?.bytes == Array(data[0..<(1 << 20)])
        let whole = contents(of: fetch.fd) == data
        #expect(served && whole, "served the first MiB: \(served), the file whole: \(whole)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/objects/7.done"), "no record for a file that is not the one checked")
    }

    /// A copy checked by this mount, evicted by another that then wrote some of it again under its
    /// name: this mount no longer trusts the name's file as the whole object.
    @Test func aCopyCheckedHereIsNotTrustedOnceAnotherMountReplacedItsFile() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        do {
            let first = try #require(fetches.fetch(object: 7, size: Int64(size), reader: GatedStream(data).streamer))
            #expect(eventually { first.isComplete })
        }
        fetches.drain()
        #expect(eventually { fetches.live(object: 7) == nil })
        let other = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        other.forget(object: 7)
        #expect(Array(data[0..<(64 << 10)]).withUnsafeBytes { other.write(object: 7, range: 0..<Int64(64 << 10), bytes: $0) })
        if let again = fetches.complete(object: 7, size: Int64(size)) {
            let whole = contents(of: again.fd) == data
            #expect(whole, "a partial file taken for the whole object")
        }
        // Fetched again, it is whole.
        let again = try #require(fetches.fetch(object: 7, size: Int64(size), reader: GatedStream(data).streamer))
        #expect(eventually { again.isComplete })
        let whole = contents(of: again.fd) == data
        #expect(whole)
    }

    // MARK: Runs

    /// A reader who jumps ahead has its segment fetched next, and that GET carries on from there;
    /// a run stops before a segment another reader waits for, which the next GET takes.
    @Test func readersWhoJumpAreFetchedNextAndARunStopsBeforeAnotherReadersSegment() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try DiskCache(directory: dir, capacity: 1 << 30, blockSize: 64 << 10)
        let fetches = wholeFetches(disk)
        let source = GatedStream(data, blockAfter: Self.MiB)
        let fetch = try #require(fetches.fetch(object: 7, size: Int64(size), reader: source.streamer))
        #expect(eventually { source.waiting.withLock { $0 } }, "the first run's GET stops after 1 MiB")
        // While it waits: a reader at 40 MiB (segment 5), then one at 56 MiB (segment 7).
        let served = Locked<[Int: [UInt8]]>([:])
        for (n, offset) in [40, 56].enumerated() {
            DispatchQueue.global().async {
                let reply = try? fetch.read(offset: Int64(offset * Self.MiB + 100), length: 4096)
                served.withLock { $0[offset] = reply?.bytes }
            }
            #expect(eventually { fetch.waitersAndWakeups.waiting == n + 1 })
        }
        source.gate.signal()
        #expect(eventually(seconds: 10) { served.withLock { $0.count } == 2 })
        for offset in [40, 56] {
            let at = offset * Self.MiB + 100
            #expect(served.withLock { $0[offset] } == Array(data[at..<(at + 4096)]))
        }
        #expect(eventually { fetch.isComplete })
        #expect(contents(of: fetch.fd) == data)
        // The first run; segment 5 and on, up to segment 7 that another reader waits for;
        // segment 7 and on to the end; then what is left, from where the last reader asked.
        #expect(source.calls == [MiBs(0..<32), MiBs(40..<56), MiBs(56..<72), MiBs(32..<40)], "\(source.calls)")
    }
}
