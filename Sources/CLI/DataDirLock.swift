import Foundation
import Glibc

/// One data dir, one mount: `<data-dir>/mount.lock`, locked (`flock`) by the mount for as long
/// as it runs, and by `modelfs recover` and the `modelfs gc` runs that delete, for as long as they
/// run. The holder writes its pid, what it is and where it is mounted into the file, so that a
/// refused process can name it. The kernel drops the lock when the holder exits, however it exits;
/// the descriptor is close-on-exec, so jobs and other children never inherit it.
final class DataDirLock {
    private let fd: Int32

    static func path(_ dataDir: String) -> String { dataDir + "/mount.lock" }

    private init(fd: Int32) { self.fd = fd }

    deinit {
        _ = ftruncate(fd, 0)
        close(fd)
    }

    /// Takes the lock for `holder` ("mount", "recover", "gc"), or says who holds it: `refused`
    /// turns the holder's description into the message.
    static func acquire(dataDir: String, holder: String, mountpoint: String? = nil,
                        refused: (String) -> String) throws -> DataDirLock {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let file = path(dataDir)
        let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIError("cannot open \(file): \(String(cString: strerror(errno)))") }
        // A mount that was just unmounted still holds the lock while it winds down (failing open
        // uploads, writing the disk cache's last blocks): `fusermount3 -u D && modelfs mount D`
        // waits for it, up to 10 s, rather than being refused.
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let why = errno
            if why == EWOULDBLOCK && waited < 200 && holderIsWindingDown(file) {
                waited += 1
                usleep(50_000)
                continue
            }
            close(fd)
            guard why == EWOULDBLOCK else { throw CLIError("cannot lock \(file): \(String(cString: strerror(why)))") }
            throw CLIError(refused(describeHolder(file)))
        }
        let text = "\(getpid())\n\(holder)\n\(mountpoint ?? "")\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return DataDirLock(fd: fd)
    }

    /// The holder is a mount whose mountpoint is no longer mounted: it is exiting.
    private static func holderIsWindingDown(_ file: String) -> Bool {
        let lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 3, lines[1] == "mount", !lines[2].isEmpty else { return false }
        return !MountCommand.isMounted(String(lines[2]))
    }

    /// Refuses (throws) when another process holds the lock, without keeping it.
    static func check(dataDir: String, refused: (String) -> String) throws {
        _ = try acquire(dataDir: dataDir, holder: "check", refused: refused)
    }

    /// "the modelfs mount at /mnt (pid 123)", from the holder's file. The holder writes it just
    /// after locking: a reader that comes in between waits a little for it.
    private static func describeHolder(_ file: String) -> String {
        var lines: [Substring] = []
        for _ in 0..<20 {
            lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
            if lines.count >= 3 { break }
            usleep(10_000)
        }
        guard lines.count >= 3, let pid = Int32(lines[0]) else { return "another modelfs process (pid unknown)" }
        switch lines[1] {
        case "mount": return "the modelfs mount at \(lines[2]) (pid \(pid))"
        case "check": return "another modelfs process (pid \(pid))"
        default: return "modelfs \(lines[1]) (pid \(pid))"
        }
    }
}
