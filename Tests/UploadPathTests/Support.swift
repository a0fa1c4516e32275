import Foundation
import Testing
@_exported import TestSupport
import ModelStore

/// Small parts keep the tests quick: 5 MiB is S3's minimum.
let partSize = 5 << 20

func md5Hex<C: Collection<UInt8>>(_ bytes: C) -> String { Digest.hex(Digest.md5(Array(bytes))) }

/// A value shared with the store's and the upload's threads.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
    func update<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&stored) } }
}

/// How many calls are inside a section at once, and the most there ever were.
final class InFlightCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var current = 0
    private(set) var maximum = 0
    func enter() { lock.withLock { current += 1; maximum = max(maximum, current) } }
    func leave() { lock.withLock { current -= 1 } }
    var peak: Int { lock.withLock { maximum } }
}
