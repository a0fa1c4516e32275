import Foundation
import Glibc
import ModelStore

/// The logs of jobs and services: files of the mount's, in directories of the mount's, that the
/// command writes to (a local child) or that the mount copies the command's own output into
/// (Slurm). Opened as ``JobFiles`` opens anything: never through a link, never waiting.
public enum Logs {
    /// Appends one line of modelfs's own, `modelfs: <line>`. O_APPEND: the command writes to the
    /// same file, and a seek to the end followed by a write would overwrite what it wrote between.
    static func note(_ path: String, _ line: String) {
        append(path, Array("modelfs: \(line)\n".utf8))
    }

    @discardableResult
    static func append(_ path: String, _ bytes: [UInt8]) -> Int {
        let fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return -1 }
        return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Copies what a command wrote to `<dir>/work/output.log` (its user's, `owners`) into `log`,
    /// from where the last copy ended (kept in `<dir>/log.copied`, so a remount does not copy it
    /// twice); at most 8 MiB per call, so that no command holds the following thread for long.
    static func copyOutput(of dir: String, owners: Set<UInt32>, into log: String) {
        var copied = Int64(String(decoding: (try? JobFiles.withDirectory(dir) { (d) throws(StoreError) in
            try JobFiles.contents("log.copied", in: d, limit: 32, owners: [getuid()]) }) ?? [], as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let chunk = try? JobFiles.withDirectory(dir, "work") { (work) throws(StoreError) -> [UInt8] in
            // The user's (Slurm opens it as them), with no other name: not a hard link.
            let (fd, st) = try JobFiles.openFile("output.log", in: work, owners: owners, singleLink: true)
            defer { close(fd) }
            if Int64(st.st_size) < copied { copied = 0 }  // truncated by the command: start again
            return JobFiles.read(fd, offset: copied, size: Int(min(Int64(st.st_size) - copied, 8 << 20)))
        }
        guard let chunk, !chunk.isEmpty else { return }
        let written = append(log, chunk)
        guard written > 0 else { return }
        copied += Int64(written)
        try? JobService.writePrivate(dir + "/log.copied.tmp", Data("\(copied)\n".utf8))
        rename(dir + "/log.copied.tmp", dir + "/log.copied")
    }

    /// Bytes of the log `log` in `dir`: a regular file of one of `owners` with no other name;
    /// empty when there is none such.
    public static func read(_ dir: String, owners: Set<UInt32>, offset: Int64, size: Int) -> [UInt8] {
        (try? JobFiles.withDirectory(dir) { (d) throws(StoreError) -> [UInt8] in
            let (fd, _) = try JobFiles.openFile("log", in: d, owners: owners, singleLink: true)
            defer { close(fd) }
            return JobFiles.read(fd, offset: offset, size: size)
        }) ?? []
    }

    /// The log's size, as `ls -l` shows it (`lstat`: neither follows nor waits).
    public static func size(_ path: String) -> Int64 {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return 0 }
        return Int64(st.st_size)
    }
}

/// A thread that runs `tick` again after the interval it asks for, or at once when woken, until stopped.
final class PollingLoop: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private let wake = DispatchSemaphore(value: 0)

    /// `tick` returns how long to wait before the next one.
    func start(name: String, _ tick: @escaping @Sendable () -> Double) {
        let thread = Thread { [self] in
            while !lock.withLock({ stopped }) {
                let interval = tick()
                _ = wake.wait(timeout: .now() + interval)
            }
        }
        thread.name = name
        thread.start()
    }

    func poke() { wake.signal() }

    func stop() {
        lock.withLock { stopped = true }
        wake.signal()
    }
}
