import Foundation
import Testing
import ModelStore

let MiB = 1 << 20
/// Small parts keep the tests quick: 5 MiB is S3's minimum.
let partSize = 5 << 20

func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

/// `count` random bytes, quickly even in a debug build (SplitMix64 from a random seed: one
/// system call per buffer, not one per word).
func randomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var state = UInt64.random(in: 0...UInt64.max)
    out.withUnsafeMutableBytes { raw in
        var i = 0
        while i < raw.count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            if i + 8 <= raw.count {
                raw.storeBytes(of: z, toByteOffset: i, as: UInt64.self)
                i += 8
            } else {
                while i < raw.count { raw[i] = UInt8(truncatingIfNeeded: z); z >>= 8; i += 1 }
            }
        }
    }
    return out
}

/// Byte-wise equality at memcmp speed (a debug build compares arrays element by element).
func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

func sha256Hex(_ bytes: [UInt8]) -> String { Digest.hex(Digest.sha256(bytes)) }
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
