import Foundation
import Testing
@_exported import TestSupport
import ModelStore
import ReadPath

/// The bytes `range` names in `bytes`, clamped the way a read of a file is.
func expected(_ bytes: [UInt8], _ range: Range<Int64>) -> ArraySlice<UInt8> {
    let clamped = range.clamped(to: 0..<Int64(bytes.count))
    return bytes[Int(clamped.lowerBound)..<Int(clamped.upperBound)]
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
