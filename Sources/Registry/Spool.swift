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

    func release(_ bytes: Int64) { used.withLock { $0 -= bytes } }

    public var bytesUsed: Int64 { used.withLock { $0 } }
}

/// One spooled file: random writes, then read back in order for the upload.
final class SpoolFile {
    let space: SpoolSpace
    let fd: Int32
    private(set) var size: Int64 = 0

    init(space: SpoolSpace, fd: Int32) { self.space = space; self.fd = fd }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(StoreError) {
        let end = offset + Int64(bytes.count)
        if end > size {
            try space.reserve(end - size)
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
