import Foundation
import Dispatch
import Glibc
import ModelStore
import ReadPath

/// Who asks: the uid, gid and pid (a thread id, as the kernel reports it) of the FUSE request.
/// Every operation of ``FileSystem`` takes one, so nothing runs as the mount's user on behalf
/// of someone else.
public struct RequestContext: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// The mode `mkdir` or `creat` asks for (the kernel applied the umask); nil for other requests.
    public var mode: UInt32? = nil

    public init(uid: UInt32, gid: UInt32, pid: Int32) {
        self.uid = uid; self.gid = gid; self.pid = pid
    }

    /// Who the registry records (and checks) a change for.
    public var actor: Actor { Actor(uid: uid, gid: gid, pid: pid) }

    /// The mount's own user (tests, internal calls).
    public static var mountOwner: RequestContext { RequestContext(uid: getuid(), gid: getgid(), pid: getpid()) }
}

/// A task as `/proc` shows it at the moment a request arrives.
public struct TaskState: Sendable, Equatable {
    /// The process (thread group) the thread belongs to.
    public var process: Int32
    /// The signal the task is dying of, when it is exiting because of one (SIGKILL, SIGINT…).
    public var killedBy: Int32?
    /// When the process started, in clock ticks since boot.
    public var started: UInt64

    public init(process: Int32, killedBy: Int32? = nil, started: UInt64 = 0) {
        self.process = process; self.killedBy = killedBy; self.started = started
    }
}

/// What the write path needs to know about the processes that hold a file being written.
/// The real one reads `/proc`; unit tests script one.
public protocol WriterProbe: Sendable {
    /// The state of the task behind a request, nil when it cannot be told.
    func task(_ pid: Int32) -> TaskState?
    /// The last process id handed out: processes created later have ids after it.
    func lastProcessID() -> Int32
    /// How many open descriptors other than the one being closed still refer to `inode` of this
    /// mount, looking at the processes that could hold one (those named, and those created after
    /// `lastProcessID` was `since`); nil when the kernel does not say (no `ino:` in fdinfo).
    func holders(of inode: UInt64, among processes: Set<Int32>, createdAfter since: Int32) -> Int?
}

/// Reads `/proc`. A task that is exiting has `PF_EXITING` in its flags, and its exit code (field
/// 52 of `stat`) holds the signal that killed it: a close that comes from such a task is the kernel
/// closing a dead writer's files, not the writer saying it is done.
public final class ProcWriterProbe: WriterProbe {
    /// The mount's id in `/proc/self/mountinfo`, to match descriptors (`mnt_id:` in fdinfo).
    private let mountID: Int
    private let mountpoint: String

    public init?(mountpoint: String) {
        guard let id = ProcWriterProbe.mountID(of: mountpoint) else { return nil }
        self.mountID = id
        self.mountpoint = mountpoint
    }

    static func mountID(of mountpoint: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        let escaped = mountpoint.replacingOccurrences(of: " ", with: "\\040")
        // The last matching line is the mount on top.
        var found: Int?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4] == escaped, line.contains(" - fuse") else { continue }
            found = Int(fields[0])
        }
        return found
    }

    private static let exiting: UInt64 = 0x4  // PF_EXITING

    public func task(_ pid: Int32) -> TaskState? {
        guard pid > 0, let stat = ProcWriterProbe.read("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // Fields after the command name, which may hold spaces and parentheses: field 3 is first.
        let fields = stat[(close + 2)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        func field(_ n: Int) -> UInt64? { n - 3 < fields.count ? UInt64(fields[n - 3].trimmingCharacters(in: .whitespacesAndNewlines)) : nil }
        var state = TaskState(process: pid, started: field(22) ?? 0)
        if let status = ProcWriterProbe.read("/proc/\(pid)/status"),
           let line = String(decoding: status, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }),
           let tgid = Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) {
            state.process = tgid
        }
        if let flags = field(9), flags & ProcWriterProbe.exiting != 0, let code = field(52), code & 0x7f != 0 {
            state.killedBy = Int32(code & 0x7f)
        }
        return state
    }

    /// The last field of `/proc/loadavg`.
    public func lastProcessID() -> Int32 {
        guard let text = ProcWriterProbe.read("/proc/loadavg"),
              let last = String(decoding: text, as: UTF8.self).split(separator: " ").last else { return 0 }
        return Int32(last.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    public func holders(of inode: UInt64, among processes: Set<Int32>, createdAfter since: Int32) -> Int? {
        guard ProcWriterProbe.kernelReportsInodes,
              let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        // Ids are handed out in increasing order, wrapping at pid_max: those after `since` up to
        // the last one are the processes created since. No per-process read to tell.
        let now = lastProcessID()
        func createdSince(_ pid: Int32) -> Bool { now >= since ? (pid > since && pid <= now) : (pid > since || pid <= now) }
        let prefix = mountpoint.hasSuffix("/") ? mountpoint : mountpoint + "/"
        let ourNamespace = link("/proc/self/ns/mnt")
        var count = 0
        for entry in pids {
            guard let pid = Int32(entry) else { continue }
            // Only a process named, or one forked after the file was created, can hold it (a
            // descriptor passed over a socket is the exception, and then `release` completes).
            guard processes.contains(pid) || createdSince(pid) else { continue }
            let sameNamespace = link("/proc/\(pid)/ns/mnt") == ourNamespace
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                // A path outside the mount cannot be ours; another mount namespace shows other paths.
                if sameNamespace { guard let target = link("/proc/\(pid)/fd/\(fd)"), target.hasPrefix(prefix) else { continue } }
                guard let info = ProcWriterProbe.read("/proc/\(pid)/fdinfo/\(fd)") else { continue }
                var mnt: Int?
                var ino: UInt64?
                for line in String(decoding: info, as: UTF8.self).split(separator: "\n") {
                    if line.hasPrefix("mnt_id:") { mnt = Int(line.dropFirst(7).trimmingCharacters(in: .whitespaces)) }
                    if line.hasPrefix("ino:") { ino = UInt64(line.dropFirst(4).trimmingCharacters(in: .whitespaces)) }
                }
                if mnt == mountID && ino == inode { count += 1 }
            }
        }
        return count
    }

    /// Whether fdinfo carries `ino:` (Linux 5.14 and later), checked once on our own descriptor.
    static let kernelReportsInodes: Bool = {
        let fd = Glibc.open("/proc/self/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        guard let info = read("/proc/self/fdinfo/\(fd)") else { return false }
        return String(decoding: info, as: UTF8.self).contains("\nino:")
    }()

    private func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func read(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }
}

/// Without a mount (unit tests) or without `/proc`: nothing can be told, and the old rule holds
/// (the creating process's close completes).
public struct BlindWriterProbe: WriterProbe {
    public init() {}
    public func task(_ pid: Int32) -> TaskState? { nil }
    public func lastProcessID() -> Int32 { 0 }
    public func holders(of inode: UInt64, among processes: Set<Int32>, createdAfter since: Int32) -> Int? { nil }
}

/// A version or dataset being written. It completes at the close of the last descriptor that
/// refers to it, so a descriptor shared with a child never completes it early; a close that comes
/// from a process dying of a signal fails it instead, since what it wrote is not what it meant to;
/// every close after the upload failed reports the failure, on whichever thread it comes.
final class WriterFile: OpenFile {
    unowned let namespace: Namespace
    let inode: UInt64
    let upload: any FileUpload
    /// The process (thread group) that created the file: its threads are one writer.
    let opener: Int32
    /// The last process id when the file was created: only processes created since can have
    /// inherited its descriptor.
    let created: Int32
    let lock = NSLock()
    /// The creating process closed its descriptor before writing anything and nobody could tell
    /// who else holds it: the upload ends at `release`, which the kernel sends just after that
    /// `close()` returns.
    private let closedEmpty = Locked(false)
    /// Signalled once the upload ended, for readers that arrive in between.
    private let ended = DispatchSemaphore(value: 0)

    init(namespace: Namespace, inode: UInt64, upload: any FileUpload, opener: Int32, created: Int32) {
        self.namespace = namespace; self.inode = inode; self.upload = upload; self.opener = opener; self.created = created
    }

    func read(offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        throw StoreError(.notReady, "the file is still being written")
    }

    /// In order it streams; holes are zeros; seeks back are patched or spooled (``FileUpload``).
    func write(offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext) throws(StoreError) -> Int {
        try locked(lock) { () throws(StoreError) -> Int in
            try upload.write(bytes, at: offset)
            return bytes.count
        }
    }

    func resize(to size: Int64) throws(StoreError) {
        try locked(lock) { () throws(StoreError) in try upload.resize(to: size) }
    }

    func flush(_ ctx: RequestContext) throws(StoreError) {
        let probe = namespace.writerProbe
        try locked(lock) { () throws(StoreError) in
            let state = upload.current
            if let failure = state.failure { throw failure }
            if state.isEnded { return }
            let closer = probe.task(ctx.pid)
            let process = closer?.process ?? ctx.pid
            switch probe.holders(of: inode, among: [opener, process], createdAfter: created) {
            case .some(let others) where others > 0:
                return
            case .some:
                break
            case .none:
                // Nobody can tell who else holds it: the creating process's close completes, once
                // it wrote something (a shell's copy of a redirected descriptor writes nothing).
                guard process == opener else { return }
                guard state.size > 0 else { closedEmpty.withLock { $0 = true }; return }
            }
            if let signal = closer?.killedBy {
                let reason = "the writer (pid \(process)) was killed by signal \(signal) after \(state.size) bytes: the file is incomplete"
                namespace.logger.warning("\(state.item.displayName): \(reason)")
                upload.abort(reason: reason, code: .io)
                throw StoreError(.io, reason)
            }
            try finish()
        }
    }

    /// The last close: completes an upload no close could (the last reference was a mapping or a
    /// descriptor in flight), where an error can only be logged.
    func release() throws(StoreError) {
        defer { namespace.untrack(self) }
        try locked(lock) { () throws(StoreError) in try finish() }
    }

    /// Unmount or SIGTERM of the mount: the upload can never complete.
    func abort(reason: String) {
        lock.withLock {
            guard !upload.isEnded else { return }
            namespace.logger.warning("\(upload.item.displayName): \(reason)")
            upload.abort(reason: reason, code: .io)
        }
    }

    /// `cp` of an empty file returns before the kernel's asynchronous `release` completes the
    /// upload; a reader right behind it waits a moment for that instead of getting `EAGAIN`.
    func waitIfClosedEmpty() {
        guard closedEmpty.withLock({ $0 }) else { return }
        _ = ended.wait(timeout: .now() + 5)
        ended.signal()
    }

    private func finish() throws(StoreError) {
        defer { if upload.isEnded { ended.signal() } }
        do { try upload.finish() } catch {
            namespace.logger.warning("\(upload.item.displayName): \(error.message)")
            throw error
        }
    }
}

/// `NSLock.withLock` with typed throws.
func locked<T>(_ lock: NSLock, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
    lock.lock()
    defer { lock.unlock() }
    return try body()
}
