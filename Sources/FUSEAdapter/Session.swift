import CFuse
import Foundation
import Glibc
import Logging
import ModelFS
import ModelStore

/// The session's life: mount, signals, the request loop, the kernel told of other nodes' changes,
/// unmount; and what init negotiates. The requests themselves are the adapter's (Operations.swift).
extension FUSEAdapter {
    public struct MountOptions: Sendable {
        public var allowOther = false
        /// Ask the kernel for FUSE passthrough (`--passthrough auto`): files with a whole local copy
        /// are then read by the kernel from that file, never through the daemon.
        public var passthrough = true
        public var threads: UInt32 = 16
        /// Kernel readahead for the mount, KiB; `conn.max_readahead` above 128 KiB is ignored, so
        /// it is written to the mount's backing device info after mounting.
        public var readAheadKB = 512
        public init() {}
    }

    /// Mounts at `mountpoint` and serves requests until unmounted (`fusermount3 -u`, SIGINT,
    /// SIGTERM). `ready` runs once the mount is live.
    public func run(mountpoint: String, options: MountOptions,
                    ready: @escaping @Sendable () -> Void) throws(StoreError) {
        cfuse_tune_allocator()  // before the worker threads exist
        var arguments = ["modelfs", "-o", "fsname=modelfs,subtype=modelfs"]
        if options.allowOther { arguments += ["-o", "allow_other,default_permissions"] }
        var args = fuse_args()
        for a in arguments { _ = a.withCString { fuse_opt_add_arg(&args, $0) } }
        defer { fuse_opt_free_args(&args) }

        var ops = FUSEAdapter.operations()
        let me = Unmanaged.passRetained(self)
        defer { me.release() }
        guard let session = cfuse_session_new(&args, &ops, me.toOpaque()) else {
            throw StoreError(.io, "cannot start a FUSE session")
        }
        defer { fuse_session_destroy(session) }
        passthroughWanted = options.passthrough
        let log = logger
        passthrough = PassthroughTable(
            off: options.passthrough ? nil : "--passthrough off",
            register: { fd in cfuse_backing_open(session, fd) },
            unregister: { id in
                let rc = cfuse_backing_close(session, id)
                if rc != 0 { log.debug("closing backing id \(id): \(String(cString: strerror(-rc)))") }
            },
            say: { log.notice("\($0)") })
        guard fuse_set_signal_handlers(session) == 0 else { throw StoreError(.io, "cannot install signal handlers") }
        defer { fuse_remove_signal_handlers(session) }
        guard fuse_session_mount(session, mountpoint) == 0 else {
            throw StoreError(.io, "cannot mount at \(mountpoint) "
                                  + "(is /dev/fuse there, and the directory empty and not mounted?)")
        }
        defer { fuse_session_unmount(session) }

        let readAhead = options.readAheadKB
        let fs = self.fs
        // Changes other nodes make to a shared catalog: the kernel forgets what they touched.
        let notifier = Notifier(session: session)
        fs.registry.catalog.database.watchChanges { notice in
            let changes = fs.catalogChanged(notice)
            for change in changes {
                let rc = notifier.invalidate(change)
                log.debug("catalog change \(notice): \(change) -> \(rc)")
            }
        }
        defer { notifier.stop() }
        Thread.detachNewThread {
            FUSEAdapter.setReadAhead(mountpoint: mountpoint, kb: readAhead)
            fs.mounted(at: mountpoint)
            ready()
        }
        let rc = cfuse_loop_mt(session, options.threads)
        if rc != 0 && rc != -EINTR && rc != SIGINT && rc != SIGTERM {
            logger.warning("FUSE loop ended with \(rc)")
        }
        fs.abortOpenUploads(reason: "the mount stopped while the file was being written")
        fs.cache.drainDisk()
    }

    /// What init settled, said once per mount: whether files with a local copy pass through.
    func negotiated(_ conn: fuse_conn_info, passthroughGranted: Bool) {
        guard passthroughWanted, let passthrough else { return }
        // The kernel offers passthrough to any server but registers backing files only for one
        // with CAP_SYS_ADMIN: a user's mount would be refused at its first open.
        if passthroughGranted && !FUSEAdapter.hasSysAdmin() {
            let why = "only a mount by root (CAP_SYS_ADMIN) may hand files to the kernel"
            passthrough.turnOff(why)
            logger.notice("passthrough off: \(why); reads go through the daemon")
            return
        }
        if passthroughGranted {
            let how = "files with a whole local copy are read by the kernel from it"
            logger.notice("passthrough on: \(how) (libfuse \(FUSEAdapter.libfuseVersion))")
            return
        }
        let why = cfuse_version() < 317
            ? "this build's libfuse \(FUSEAdapter.libfuseVersion) has none (scripts/lib.sh builds 3.18)"
            : "the kernel did not offer it (it needs Linux >= 6.9 with FUSE passthrough and a mount by root)"
        passthrough.turnOff(why)
        logger.notice("passthrough off: \(why); reads go through the daemon")
    }

    /// Whether this process holds CAP_SYS_ADMIN (bit 21 of CapEff in /proc/self/status).
    static func hasSysAdmin() -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let caps = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return geteuid() == 0 }
        return caps & (1 << 21) != 0
    }

    /// The libfuse this binary was built with, e.g. "3.18".
    public static var libfuseVersion: String { "\(cfuse_version() / 100).\(cfuse_version() % 100)" }

    /// The kernel caps `max_readahead` negotiated in init at 128 KiB; the per-mount value lives
    /// in `/sys/class/bdi/<major>:<minor>/read_ahead_kb`.
    static func setReadAhead(mountpoint: String, kb: Int) {
        guard let device = mountedDevice(mountpoint) else { return }
        try? "\(kb)\n".write(toFile: "/sys/class/bdi/\(device)/read_ahead_kb", atomically: false, encoding: .utf8)
    }

    /// The mount's `major:minor`, from /proc/self/mountinfo rather than a `stat` of the mountpoint:
    /// a stat sends the new mount its first request, and while that waits on the daemon an
    /// unmount right after mounting fails with EBUSY.
    static func mountedDevice(_ mountpoint: String) -> String? {
        let path = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
        guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        // Fields: id, parent, major:minor, root, mount point (spaces as \040), ...; the last match is the newest.
        return info.split(separator: "\n").last { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].replacingOccurrences(of: "\\040", with: " ") == path
        }.map { String($0.split(separator: " ")[2]) }
    }
}

/// Tells the kernel what to forget, from the catalog's change thread (never from a request
/// handler, where an invalidation of the directory being served could deadlock). Stops before
/// the session is destroyed.
final class Notifier: @unchecked Sendable {
    private let lock = NSLock()
    private var session: OpaquePointer?

    init(session: OpaquePointer) { self.session = session }

    /// libfuse's answer: 0, or -ENOENT when the kernel did not hold it anyway.
    @discardableResult
    func invalidate(_ change: Invalidation) -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        guard let session else { return 0 }
        switch change {
        case .inode(let ino):
            return fuse_lowlevel_notify_inval_inode(session, fuse_ino_t(ino), 0, 0)
        case .entry(let parent, let name):
            return name.withCString {
                fuse_lowlevel_notify_inval_entry(session, fuse_ino_t(parent), $0, name.utf8.count)
            }
        }
    }

    func stop() {
        lock.lock()
        session = nil
        lock.unlock()
    }
}
