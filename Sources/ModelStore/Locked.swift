import Foundation

/// A value behind a lock: the one place shared mutable state is made `Sendable` by hand.
/// (The standard library's `Mutex` would do, but on Linux its futex is invisible to the thread
/// sanitizer, which then reports every guarded access as a race; an `NSLock` it understands.)
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
