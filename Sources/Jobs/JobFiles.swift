import Foundation
import Glibc
import ModelStore

/// Opening what a job's user can change (their `output/` and `work/`, and anything in a job
/// directory of the layout before the mount kept job directories for itself) without trusting it:
/// no symbolic link is followed (`O_NOFOLLOW`, each step from a directory descriptor), no open
/// waits (`O_NONBLOCK`: a FIFO answers at once instead of holding the thread), and what was
/// opened is checked on its descriptor (`fstat`), then read from that descriptor — never
/// checked by path and opened again, which a swap between the two would defeat.
enum JobFiles {
    /// A directory (not a link to one) under `parent`; an absolute `name` with `AT_FDCWD`.
    static func openDirectory(_ name: String, in parent: Int32 = AT_FDCWD) -> Int32? {
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    /// Runs `body` with the descriptor of the directory at `path` (`name` under it, when given).
    static func withDirectory<R>(_ path: String, _ name: String? = nil,
                                 _ body: (Int32) throws(StoreError) -> R) throws(StoreError) -> R {
        guard let top = openDirectory(path) else {
            throw StoreError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(top) }
        guard let name else { return try body(top) }
        guard let fd = openDirectory(name, in: top) else {
            throw StoreError(.io, "\(path)/\(name) is not a directory (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        return try body(fd)
    }

    /// A regular file `name` of the directory `dir`, open for reading, and its `stat`. Refused
    /// (with the reason) when it is a link, a FIFO, a socket, a device or a directory; when its
    /// owner is not one of `owners` (a hard link to another user's file); and, with `singleLink`,
    /// when it has other names (a hard link to a file of the mount's own user).
    static func openFile(_ name: String, in dir: Int32, owners: Set<UInt32>? = nil,
                         singleLink: Bool = false) throws(StoreError) -> (fd: Int32, stat: stat) {
        let fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            let reason = e == ELOOP ? "\(name) is a symbolic link" : "cannot open \(name): \(String(cString: strerror(e)))"
            throw StoreError(e == ENOENT ? .notFound : e == ELOOP ? .accessDenied : .io, reason)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { close(fd); throw StoreError(.io, "cannot stat \(name)") }
        let refusal: String? =
            (st.st_mode & S_IFMT) != S_IFREG ? "\(name) is not a regular file"
            : owners.map { !$0.contains(st.st_uid) } == true ? "\(name) belongs to uid \(st.st_uid), not to the job's user"
            : singleLink && st.st_nlink != 1 ? "\(name) has \(st.st_nlink) names (a hard link)"
            : nil
        if let refusal { close(fd); throw StoreError(.accessDenied, refusal) }
        // A regular file never blocks: reads may wait for the disk again.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, st)
    }

    /// Up to `size` bytes at `offset` of an open file.
    static func read(_ fd: Int32, offset: Int64, size: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, size))
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        return n > 0 ? Array(out[0..<n]) : []
    }

    /// The whole of a small file `name` in `dir` (at most `limit` bytes), or nil.
    static func contents(_ name: String, in dir: Int32, limit: Int,
                         owners: Set<UInt32>? = nil) throws(StoreError) -> [UInt8] {
        let (fd, st) = try openFile(name, in: dir, owners: owners)
        defer { close(fd) }
        guard st.st_size <= limit else { throw .invalid("\(name) is \(st.st_size) bytes; at most \(limit) are allowed") }
        return read(fd, offset: 0, size: limit)
    }
}
