import Foundation
import ModelStore
import Testing

// Helpers every test target shares: sizes, expected errors, fast test bytes, polling.

public let KiB = 1 << 10
public let MiB = 1 << 20

/// Expects `body` to throw a ``StoreError`` with `code`.
public func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                                sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

/// A deterministic generator, so a failing run can be replayed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `count` pseudo-random bytes from `seed`, quickly even in a debug build.
public func pattern(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var rng = SplitMix64(seed: seed)
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var i = 0
        while i + 8 <= count { raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
        while i < count { raw[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
        initialized = count
    }
}

/// `count` random bytes (a random seed each call).
public func randomBytes(_ count: Int) -> [UInt8] {
    pattern(count, seed: UInt64.random(in: 0...UInt64.max))
}

/// Byte-wise equality at memcmp speed (a debug build compares arrays element by element).
public func same<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B) -> Bool {
    a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0) }
    }
}

/// Expects equal bytes; on a mismatch says where, instead of printing megabytes.
public func expectSame<A: ContiguousBytes, B: ContiguousBytes>(_ a: A, _ b: B, _ comment: Comment? = nil,
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

public func sha256Hex(_ bytes: [UInt8]) -> String { Digest.hex(Digest.sha256(bytes)) }

public func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A new empty directory under the system's temporary directory.
public func temporaryDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Polls `condition` until it holds or `seconds` pass: a safety net against hangs, not a measurement.
public func eventually(seconds: Double = 60, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// The error `body` throws, or nil (and an issue) when it throws none.
public func storeError<R>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) -> StoreError? {
    #expect(throws: StoreError.self, sourceLocation: sourceLocation) { _ = try body() }
}
