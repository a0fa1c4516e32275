import Foundation
import Testing
import ModelStore
import ReadPath

let KiB = 1 << 10
let MiB = 1 << 20

func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

/// A deterministic generator, so a failing run can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `count` pseudo-random bytes from `seed`, quickly even in a debug build.
func pattern(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var rng = SplitMix64(seed: seed)
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var i = 0
        while i + 8 <= count { raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
        while i < count { raw[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
        initialized = count
    }
}

/// Byte-wise equality at memcmp speed.
func same<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
    a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0) }
    }
}

/// Expects equal bytes; on a mismatch says where, instead of printing megabytes.
func expectSame<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B, _ comment: Comment? = nil,
                                                          sourceLocation: SourceLocation = #_sourceLocation) {
    guard !same(a, b) else { return }
    let detail: String = a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            let first = zip(x, y).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            return "\(x.count) bytes vs \(y.count) expected; first difference at \(first.map(String.init) ?? "the end")"
        }
    }
    Issue.record("bytes differ: \(detail)\(comment.map { " (\($0))" } ?? "")", sourceLocation: sourceLocation)
}

/// The bytes `range` names in `bytes`, clamped the way a read of a file is.
func expected(_ bytes: [UInt8], _ range: Range<Int64>) -> ArraySlice<UInt8> {
    let clamped = range.clamped(to: 0..<Int64(bytes.count))
    return bytes[Int(clamped.lowerBound)..<Int(clamped.upperBound)]
}

/// Polls `condition` until it holds or `seconds` pass: a safety net against hangs, not a measurement.
func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.002)
    }
    return condition()
}

/// An object in memory behind a ``RangeFetcher`` that counts what it is asked for.
final class Source: @unchecked Sendable {
    enum Behaviour: Sendable { case healthy, failing(StoreError), short(Int), long(Int) }

    let bytes: [UInt8]
    let delay: Double
    private let lock = NSLock()
    private var _calls: [Range<Int64>] = []
    private var _bytes: Int64 = 0
    private var _active = 0
    private let behaviour: Behaviour

    init(_ bytes: [UInt8], delay: Double = 0, behaviour: Behaviour = .healthy) {
        self.bytes = bytes
        self.delay = delay
        self.behaviour = behaviour
    }

    var size: Int64 { Int64(bytes.count) }
    var calls: [Range<Int64>] { lock.withLock { _calls } }
    var callCount: Int { lock.withLock { _calls.count } }
    var bytesFetched: Int64 { lock.withLock { _bytes } }
    /// Fetches running right now.
    var active: Int { lock.withLock { _active } }

    var fetch: RangeFetcher {
        { [self] (range: Range<Int64>) throws(StoreError) -> [UInt8] in
            lock.withLock { _calls.append(range); _active += 1 }
            defer { lock.withLock { _active -= 1 } }
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            let lower = Int(min(range.lowerBound, size))
            let upper = Int(min(range.upperBound, size))
            var out = Array(bytes[lower..<upper])
            switch behaviour {
            case .healthy: break
            case .failing(let error): throw error
            case .short(let n): out.removeLast(min(n, out.count))
            case .long(let n): out += [UInt8](repeating: 0xAB, count: n)
            }
            lock.withLock { _bytes += Int64(out.count) }
            return out
        }
    }

    /// Waits until no fetch runs and the cache has accounted for every one that ran.
    func settle(_ cache: BlockCache) -> Bool {
        eventually { active == 0 && cache.counters.requests == Int64(callCount) }
    }
}

/// Results gathered from several threads.
final class Collected<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}
