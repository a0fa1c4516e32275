import Archive
import Foundation
import Testing
@testable import ReadPath

/// A member's reader prefetches up to the member's end and no further: a sequential read of one
/// member of an archive fetches about that member, not half again its size past it.
@Suite struct MemberPrefetchTests {
    static let MiB: Int64 = 1 << 20
    let key = "m/v1.tar.gz"
    let size = 64 * MiB

    func reader() throws -> (MemoryObjectStore, ObjectReader) {
        let s = MemoryObjectStore()
        _ = try s.put(key, [UInt8](repeating: 7, count: Int(size)))
        let cache = BlockCache(budget: 128 << 20, blockSize: 64 << 10)
        return (s, ObjectReaders.open(store: s, cache: cache, key: key, size: size, id: 7))
    }

    /// Reads `count` bytes at `start` of `reader` in the kernel's 128 KiB pieces, then lets what
    /// was prefetched land.
    func readSequentially(_ reader: ObjectReader, count: Int64) throws {
        var at: Int64 = 0
        while at < count {
            _ = try reader.read(offset: at, size: Int(min(128 << 10, count - at)))
            at += 128 << 10
        }
        Thread.sleep(forTimeInterval: 0.3)
    }

    @Test func aStoredMembersSequentialReadFetchesNothingPastItsEnd() throws {
        let (s, base) = try reader()
        let member = SliceReader(base, start: 3 * Self.MiB, size: 24 * Self.MiB)
        try readSequentially(member, count: 24 * Self.MiB)
        #expect(s.bytesRead <= 24 * Self.MiB + (64 << 10), "\(s.bytesRead)")
        #expect(s.bytesRead >= 24 * Self.MiB)
    }

    @Test func aGzipMembersReaderStopsWhereTheCallerSaysItsBytesEnd() throws {
        let (s, base) = try reader()
        // A `.tar.gz` member's compressed bytes: the object from its start, read up to 20 MiB.
        let compressed = SliceReader(base, start: 0, size: size, aheadEnd: 20 * Self.MiB)
        try readSequentially(compressed, count: 20 * Self.MiB)
        #expect(s.bytesRead <= 20 * Self.MiB + (64 << 10), "\(s.bytesRead)")
        // Without a limit the run prefetcher reads far past it: the cap is what keeps it there.
        let (t, again) = try reader()
        try readSequentially(SliceReader(again, start: 0, size: size), count: 20 * Self.MiB)
        #expect(t.bytesRead > 22 * Self.MiB, "\(t.bytesRead)")
    }

    @Test func aGzipMembersCompressedEndIsInterpolatedBetweenAccessPoints() {
        let MiB = Self.MiB
        func point(_ u: Int64, _ c: Int64) -> AccessPoint {
            try! JSONDecoder().decode(AccessPoint.self, from: Data(#"{"compressed":\#(c),"bits":0,"uncompressed":\#(u),"window":""}"#.utf8))
        }
        let points = [point(8 * MiB, 4 * MiB), point(16 * MiB, 8 * MiB), point(24 * MiB, 10 * MiB)]
        // Ends at 10 MiB inflated: between the points at 8 and 16 MiB (2:1), so about 5 MiB, plus a 256 KiB margin.
        #expect(GzipSpans.compressedEnd(of: 2 * MiB..<10 * MiB, points: points, inflatedSize: nil, objectSize: 30 * MiB) == 5 * MiB + (256 << 10))
        // Before the first point: from the stream's start.
        #expect(GzipSpans.compressedEnd(of: 0..<4 * MiB, points: points, inflatedSize: nil, objectSize: 30 * MiB) == 2 * MiB + (256 << 10))
        // Past the last point: towards the object's end at the stream's inflated size, or the object's end when unknown.
        #expect(GzipSpans.compressedEnd(of: 24 * MiB..<28 * MiB, points: points, inflatedSize: 32 * MiB, objectSize: 14 * MiB) == 12 * MiB + (256 << 10))
        #expect(GzipSpans.compressedEnd(of: 24 * MiB..<28 * MiB, points: points, inflatedSize: nil, objectSize: 14 * MiB) == 14 * MiB)
    }
}
