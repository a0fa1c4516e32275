import Foundation
import Glibc
import ModelStore

/// Local disk for files whose writer seeks back into bytes already sent to object storage
/// (`zipfile`, `torch.save`, `numpy.save` rewrite headers): such a file moves to a spool file and
/// is uploaded whole when it is closed. One budget for every spooled file of the mount.
public final class SpoolSpace: Sendable {
    public let directory: String
    public let capacity: Int64
    private let used = Locked<Int64>(0)

    public init(directory: String, capacity: Int64) throws(StoreError) {
        self.directory = directory
        self.capacity = capacity
        guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])) != nil else {
            throw StoreError(.io, "cannot create the spool directory \(directory)")
        }
    }

    /// An unnamed file in the spool directory: it vanishes with its descriptor, even after a crash.
    func create() throws(StoreError) -> SpoolFile {
        let tmpfile: Int32 = 0o20200000  // O_TMPFILE, which Glibc does not export
        var fd = Glibc.open(directory, tmpfile | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 {
            var template = Array((directory + "/spool.XXXXXX").utf8CString)
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            if fd >= 0 { template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) } }
        }
        guard fd >= 0 else { throw StoreError(.io, "cannot create a spool file in \(directory): \(String(cString: strerror(errno)))") }
        return SpoolFile(space: self, fd: fd)
    }

    func reserve(_ bytes: Int64) throws(StoreError) {
        let capacity = self.capacity, directory = self.directory
        try used.withLock { (used) throws(StoreError) in
            guard used + bytes <= capacity else {
                throw StoreError(.noSpace, "the spool (\(directory), \(capacity >> 20) MiB) is full: files written out of order are held there until closed")
            }
            used += bytes
        }
    }

    /// Reserves bytes for a copy kept in case it is needed (``SentCopy``): only while the spool
    /// is less than half full, so files that did move to the spool always have the other half.
    func reserveSpare(_ bytes: Int64) -> Bool {
        let capacity = self.capacity
        return used.withLock { used in
            guard used + bytes <= capacity / 2 else { return false }
            used += bytes
            return true
        }
    }

    func release(_ bytes: Int64) { used.withLock { $0 -= bytes } }

    public var bytesUsed: Int64 { used.withLock { $0 } }
}

/// One spooled file: random writes, then read back in order for the upload. Used by its
/// upload's writer, one call at a time.
final class SpoolFile: @unchecked Sendable {
    let space: SpoolSpace
    let fd: Int32
    private(set) var size: Int64 = 0

    init(space: SpoolSpace, fd: Int32) { self.space = space; self.fd = fd }

    /// `spare`: the bytes are a copy kept in case (``SpoolSpace/reserveSpare(_:)``).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64, spare: Bool = false) throws(StoreError) {
        let end = offset + Int64(bytes.count)
        if end > size {
            if spare {
                guard space.reserveSpare(end - size) else { throw StoreError(.noSpace, "the spool is half full") }
            } else {
                try space.reserve(end - size)
            }
            size = end
        }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                throw StoreError(errno == ENOSPC ? .noSpace : .io, "writing the spool file: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    func resize(to newSize: Int64) throws(StoreError) {
        if newSize > size { try space.reserve(newSize - size) } else { space.release(size - newSize) }
        guard ftruncate(fd, off_t(newSize)) == 0 else {
            let e = errno
            if newSize > size { space.release(newSize - size) } else { try? space.reserve(size - newSize) }
            throw StoreError(e == ENOSPC ? .noSpace : .io, "resizing the spool file: \(String(cString: strerror(e)))")
        }
        size = newSize
    }

    func read(at offset: Int64, into buffer: inout [UInt8]) -> Int {
        buffer.withUnsafeMutableBytes { b in
            var done = 0
            while done < b.count {
                let n = pread(fd, b.baseAddress! + done, b.count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            return done
        }
    }

    func close() {
        Glibc.close(fd)
        space.release(size)
        size = 0
    }
}

/// What a streaming upload sent to object storage, also kept in a spool file (up to `limit`
/// bytes, while the spool is less than half full): a writer that then seeks back into sent bytes
/// goes on in that file rather than completing the object and reading it back. Fed with the
/// stream's sealed bytes, in order, on the writer's thread.
final class SentCopy: Sendable {
    private let space: SpoolSpace
    private let limit: Int64
    /// nil once given up (too long, the spool half full, a write failed): then never again.
    private let file: Locked<SpoolFile??> = Locked(.some(nil))

    init(space: SpoolSpace, limit: Int64) { self.space = space; self.limit = limit }

    func append(_ bytes: UnsafeRawBufferPointer) {
        file.withLock { file in
            guard case .some(let kept) = file else { return }
            do throws(StoreError) {
                guard (kept?.size ?? 0) + Int64(bytes.count) <= limit else { throw StoreError(.fileTooBig, "past the copy's limit") }
                let copy: SpoolFile
                if let kept { copy = kept } else { copy = try space.create() }
                file = copy
                try copy.write(bytes, at: copy.size, spare: true)
            } catch {
                if case .some(let made?) = file { made.close() }
                file = .none
            }
        }
    }

    /// The copy, when it holds the first `count` bytes exactly; the caller owns it from now on.
    func take(holding count: Int64) -> SpoolFile? {
        file.withLock { file in
            defer { file = .none }
            guard case .some(let kept) = file else { return nil }
            if count == 0 { kept?.close(); return nil }
            guard let kept, kept.size == count else { kept?.close(); return nil }
            return kept
        }
    }

    /// Drops the copy (the upload ended).
    func drop() {
        file.withLock { file in
            if case .some(let kept?) = file { kept.close() }
            file = .none
        }
    }
}
