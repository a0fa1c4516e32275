import CFuse
import Foundation
import Glibc
import Logging
import ModelFS
import ModelStore

/// The libfuse low-level callbacks: each translates its arguments, calls the ``FileSystem``,
/// and replies exactly once — with the result, or with the errno of the ``StoreError``.
public final class FUSEAdapter: @unchecked Sendable {
    public let fs: FileSystem
    let logger: Logger
    private let lock = NSLock()
    private var directories: [UInt64: [DirectoryEntry]] = [:]
    private var nextDirectory: UInt64 = 1
    /// Bytes per request the kernel may send, both ways.
    let maxIO: UInt32 = 1 << 20
    /// The session, for the passthrough ioctls; set before requests are served.
    private(set) var session: OpaquePointer?
    /// Whether to ask for passthrough at init (`--passthrough auto`).
    private(set) var passthroughWanted = true
    /// Opens that pass through to a backing file; set before requests are served.
    private(set) var passthrough: PassthroughTable?

    public init(fs: FileSystem, logger: Logger = Logger(label: "modelfs.fuse")) {
        self.fs = fs
        self.logger = logger
    }

    static func from(_ req: fuse_req_t?) -> FUSEAdapter {
        Unmanaged<FUSEAdapter>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Who asks, as the kernel tells it.
    static func context(_ req: fuse_req_t?) -> RequestContext {
        RequestContext(uid: UInt32(cfuse_req_uid(req)), gid: UInt32(cfuse_req_gid(req)), pid: Int32(cfuse_req_pid(req)))
    }

    // MARK: Replies

    /// Replies with the error's errno and logs one line for a refusal a person may wonder about:
    /// the operation, the path, the errno and the reason. Lookups of names that are not there,
    /// probes for attributes that are not there, and `access` answers, are the everyday business of shells and `ls`.
    static func reply(_ req: fuse_req_t?, _ error: any Error, _ op: String, _ inode: UInt64, _ name: UnsafePointer<CChar>?) {
        let storeError = error as? StoreError ?? StoreError(.io, "\(error)")
        let code = errnoValue(for: storeError.code)
        defer { fuse_reply_err(req, code) }  // last: the reply frees the request
        switch (op, storeError.code) {
        case (_, .notFound) where op == "lookup" || op == "getattr", (_, .noAttribute),
             (_, .notSupported) where op.hasSuffix("xattr"),
             (_, _) where op == "access":  // an answer (`test -w`), not a refusal
            return
        default:
            let adapter = FUSEAdapter.from(req)
            var path = inode == 0 ? "" : adapter.fs.describe(inode)
            if let name { path += (path.isEmpty ? "" : op.hasSuffix("xattr") ? " " : "/") + Names.printable(String(cString: name)) }
            let who = context(req)
            adapter.logger.notice("\(op) \(path.isEmpty ? "-" : path): \(String(cString: strerror(code))) (\(storeError.code.rawValue)): \(storeError.message) [uid \(who.uid) pid \(who.pid)]")
        }
    }

    /// From linux/fs.h, which Glibc does not export.
    static let renameExchange: UInt32 = 2

    static func stat(_ a: Attributes) -> stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.inode)
        st.st_mode = (a.isSymlink ? S_IFLNK : a.isDirectory ? S_IFDIR : S_IFREG) | mode_t(a.permissions)
        st.st_nlink = nlink_t(a.links)
        st.st_size = off_t(a.size)
        st.st_blocks = blkcnt_t((a.size + 511) / 512)
        st.st_blksize = 1 << 20
        st.st_uid = a.uid
        st.st_gid = a.gid
        let m = timespec(tv_sec: Int(a.modified), tv_nsec: Int((a.modified - a.modified.rounded(.down)) * 1e9))
        let c = timespec(tv_sec: Int(a.changed), tv_nsec: Int((a.changed - a.changed.rounded(.down)) * 1e9))
        st.st_mtim = m
        st.st_atim = m
        st.st_ctim = c
        return st
    }

    static func entry(_ a: Attributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.inode
        e.generation = 1
        e.attr = stat(a)
        e.attr_timeout = a.cacheSeconds
        e.entry_timeout = a.nameCacheSeconds ?? (a.isDirectory ? 1 : (a.cacheSeconds > 1 ? 1 : a.cacheSeconds))
        return e
    }

    static func replyEntry(_ req: fuse_req_t?, _ a: Attributes) {
        var e = entry(a)
        fuse_reply_entry(req, &e)
    }

    static func bytes(_ name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let name else { return [] }
        return Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    // MARK: The operations table

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            let adapter = Unmanaged<FUSEAdapter>.fromOpaque(userdata).takeUnretainedValue()
            let granted = cfuse_tune(conn, adapter.maxIO, adapter.maxIO, adapter.passthroughWanted ? 1 : 0) != 0
            adapter.negotiated(conn.pointee, passthroughGranted: granted)
        }
        ops.lookup = { req, parent, name in
            do { FUSEAdapter.replyEntry(req, try FUSEAdapter.from(req).fs.lookup(parent: parent, name: FUSEAdapter.bytes(name))) } catch { FUSEAdapter.reply(req, error, "lookup", parent, name) }
        }
        ops.forget = { req, _, _ in fuse_reply_none(req) }  // inodes are derived from ids: nothing to forget
        ops.forget_multi = { req, _, _ in fuse_reply_none(req) }
        ops.getattr = { req, ino, _ in
            do {
                let a = try FUSEAdapter.from(req).fs.getattr(ino)
                var st = FUSEAdapter.stat(a)
                fuse_reply_attr(req, &st, a.cacheSeconds)
            } catch { FUSEAdapter.reply(req, error, "getattr", ino, nil) }
        }
        ops.setattr = { req, ino, attr, toSet, _ in
            do {
                let size: Int64? = toSet & FUSE_SET_ATTR_SIZE != 0 ? Int64(attr!.pointee.st_size) : nil
                let mode: UInt32? = toSet & FUSE_SET_ATTR_MODE != 0 ? UInt32(attr!.pointee.st_mode) : nil
                let uid: UInt32? = toSet & FUSE_SET_ATTR_UID != 0 ? UInt32(attr!.pointee.st_uid) : nil
                let gid: UInt32? = toSet & FUSE_SET_ATTR_GID != 0 ? UInt32(attr!.pointee.st_gid) : nil
                let a = try FUSEAdapter.from(req).fs.setattr(ino, size: size, mode: mode, uid: uid, gid: gid, FUSEAdapter.context(req))
                var st = FUSEAdapter.stat(a)
                fuse_reply_attr(req, &st, a.cacheSeconds)
            } catch { FUSEAdapter.reply(req, error, "setattr", ino, nil) }
        }
        ops.mkdir = { req, parent, name, mode in
            do {
                var ctx = FUSEAdapter.context(req)
                ctx.mode = UInt32(mode) & 0o7777
                FUSEAdapter.replyEntry(req, try FUSEAdapter.from(req).fs.mkdir(parent: parent, name: FUSEAdapter.bytes(name), ctx))
            } catch { FUSEAdapter.reply(req, error, "mkdir", parent, name) }
        }
        ops.rmdir = { req, parent, name in
            do { try FUSEAdapter.from(req).fs.rmdir(parent: parent, name: FUSEAdapter.bytes(name), FUSEAdapter.context(req)); fuse_reply_err(req, 0) } catch { FUSEAdapter.reply(req, error, "rmdir", parent, name) }
        }
        ops.unlink = { req, parent, name in
            do { try FUSEAdapter.from(req).fs.unlink(parent: parent, name: FUSEAdapter.bytes(name), FUSEAdapter.context(req)); fuse_reply_err(req, 0) } catch { FUSEAdapter.reply(req, error, "unlink", parent, name) }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            if flags & FUSEAdapter.renameExchange != 0 { fuse_reply_err(req, EINVAL); return }
            do {
                try FUSEAdapter.from(req).fs.rename(parent: parent, name: FUSEAdapter.bytes(name), newParent: newParent, newName: FUSEAdapter.bytes(newName), FUSEAdapter.context(req))
                fuse_reply_err(req, 0)
            } catch { FUSEAdapter.reply(req, error, "rename", parent, name) }
        }
        // Hard links and device files have no place in a model store; symbolic links are aliases.
        ops.link = { req, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.symlink = { req, target, parent, name in
            do {
                let a = try FUSEAdapter.from(req).fs.symlink(parent: parent, name: FUSEAdapter.bytes(name), target: FUSEAdapter.bytes(target),
                                                              FUSEAdapter.context(req))
                FUSEAdapter.replyEntry(req, a)
            } catch { FUSEAdapter.reply(req, error, "symlink", parent, name) }
        }
        ops.readlink = { req, ino in
            do {
                let target = try FUSEAdapter.from(req).fs.readlink(ino)
                _ = target.withCString { fuse_reply_readlink(req, $0) }
            } catch { FUSEAdapter.reply(req, error, "readlink", ino, nil) }
        }
        ops.mknod = { req, _, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.open = { req, ino, fi in
            do {
                let adapter = FUSEAdapter.from(req)
                let r = try adapter.fs.open(ino, flags: OpenFlags(fi!.pointee.flags), FUSEAdapter.context(req))
                // Generated files (direct I/O) are never passed through, nor counted: the kernel
                // keeps them out of an inode's I/O mode, and they have no backing file.
                let backing = r.directIO ? 0 : adapter.passthrough?.opened(inode: ino, handle: r.handle, wholeFile: r.wholeFile) ?? 0
                // Passing through, the kernel reads the backing file's page cache: pages of the
                // FUSE inode's own would be a second copy of the same bytes, so they are dropped.
                cfuse_fi_set_open(fi, r.handle, r.keepCache && backing == 0 ? 1 : 0, r.directIO ? 1 : 0)
                cfuse_fi_set_backing(fi, backing)
                if fuse_reply_open(req, fi) != 0 { adapter.abandon(r.handle) }  // the opener is gone: no RELEASE comes
            } catch { FUSEAdapter.reply(req, error, "open", ino, nil) }
        }
        ops.create = { req, parent, name, mode, fi in
            do {
                var ctx = FUSEAdapter.context(req)
                ctx.mode = UInt32(mode) & 0o7777
                let adapter = FUSEAdapter.from(req)
                let (a, r) = try adapter.fs.create(parent: parent, name: FUSEAdapter.bytes(name), flags: OpenFlags(fi!.pointee.flags), ctx)
                // Counted as an open through the page cache: a reader of the version must not
                // pass through while the writer's file is still open (the kernel would refuse it).
                _ = adapter.passthrough?.opened(inode: a.inode, handle: r.handle, wholeFile: nil)
                cfuse_fi_set_open(fi, r.handle, 0, 0)
                var e = FUSEAdapter.entry(a)
                fuse_reply_create(req, &e, fi)
            } catch { FUSEAdapter.reply(req, error, "create", parent, name) }
        }
        ops.read = { req, ino, size, offset, fi in
            do {
                switch try FUSEAdapter.from(req).fs.readReply(fi!.pointee.fh, offset: Int64(offset), size: size) {
                case .bytes(let data):
                    data.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
                case .cached(let cached):
                    // Straight from the cache's memory: one copy, into the kernel.
                    cached.withBuffers { buffers in
                        let iov = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
                        _ = fuse_reply_iov(req, iov, Int32(iov.count))
                    }
                case .file(let fd, let offset, let count):
                    _ = cfuse_reply_file(req, fd, off_t(offset), count)
                }
            } catch { FUSEAdapter.reply(req, error, "read", ino, nil) }
        }
        ops.write = { req, ino, buf, size, offset, fi in
            // The buffer belongs to this worker thread: the upload copies it before we return.
            do {
                let n = try FUSEAdapter.from(req).fs.write(fi!.pointee.fh, offset: Int64(offset), bytes: UnsafeRawBufferPointer(start: buf, count: size),
                                                            FUSEAdapter.context(req))
                fuse_reply_write(req, n)
            } catch { FUSEAdapter.reply(req, error, "write", ino, nil) }
        }
        ops.flush = { req, ino, fi in
            do { try FUSEAdapter.from(req).fs.flush(fi!.pointee.fh, FUSEAdapter.context(req)); fuse_reply_err(req, 0) } catch { FUSEAdapter.reply(req, error, "flush", ino, nil) }
        }
        ops.release = { req, ino, fi in
            let adapter = FUSEAdapter.from(req)
            adapter.passthrough?.released(handle: fi!.pointee.fh)
            do { try adapter.fs.release(fi!.pointee.fh); fuse_reply_err(req, 0) } catch { FUSEAdapter.reply(req, error, "release", ino, nil) }
        }
        ops.fsync = { req, _, _, _ in fuse_reply_err(req, 0) }
        ops.opendir = { req, ino, fi in
            do {
                let adapter = FUSEAdapter.from(req)
                let entries = try adapter.fs.readdir(ino)
                let handle = adapter.lock.withLock { () -> UInt64 in
                    let h = adapter.nextDirectory
                    adapter.nextDirectory += 1
                    adapter.directories[h] = entries
                    return h
                }
                cfuse_fi_set_open(fi, handle, 0, 0)
                fuse_reply_open(req, fi)
            } catch { FUSEAdapter.reply(req, error, "opendir", ino, nil) }
        }
        ops.readdir = { req, _, size, offset, fi in FUSEAdapter.from(req).readdir(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: false) }
        ops.readdirplus = { req, _, size, offset, fi in FUSEAdapter.from(req).readdir(req, size: size, offset: offset, handle: fi!.pointee.fh, plus: true) }
        ops.releasedir = { req, _, fi in
            let adapter = FUSEAdapter.from(req)
            _ = adapter.lock.withLock { adapter.directories.removeValue(forKey: fi!.pointee.fh) }
            fuse_reply_err(req, 0)
        }
        ops.statfs = { req, _ in
            do {
                let usage = try FUSEAdapter.from(req).fs.statfs()
                var st = statvfs()
                st.f_bsize = 1 << 20
                st.f_frsize = 4096
                let total: UInt = 1 << 40  // object storage has no fixed size: report 4 PiB
                st.f_blocks = total
                st.f_bfree = total - UInt(min(usage.bytes / 4096, Int64(total - 1)))
                st.f_bavail = st.f_bfree
                st.f_files = 1 << 32
                st.f_ffree = st.f_files - UInt(usage.files)
                st.f_favail = st.f_ffree
                st.f_namemax = 255
                fuse_reply_statfs(req, &st)
            } catch { FUSEAdapter.reply(req, error, "statfs", 0, nil) }
        }
        ops.getxattr = { req, ino, name, size in
            do {
                let value = try FUSEAdapter.from(req).fs.getxattr(ino, name: String(cString: name!))
                FUSEAdapter.replyXattr(req, value, size)
            } catch { FUSEAdapter.reply(req, error, "getxattr", ino, name) }
        }
        ops.listxattr = { req, ino, size in
            do {
                let names = try FUSEAdapter.from(req).fs.listxattr(ino)
                FUSEAdapter.replyXattr(req, names.flatMap { Array($0.utf8) + [0] }, size)
            } catch { FUSEAdapter.reply(req, error, "listxattr", ino, nil) }
        }
        ops.setxattr = { req, ino, name, value, size, _ in
            do {
                let bytes = Array(UnsafeRawBufferPointer(start: value, count: size))
                try FUSEAdapter.from(req).fs.setxattr(ino, name: String(cString: name!), value: bytes, FUSEAdapter.context(req))
                fuse_reply_err(req, 0)
            } catch { FUSEAdapter.reply(req, error, "setxattr", ino, name) }
        }
        ops.removexattr = { req, _, _ in fuse_reply_err(req, EPERM) }
        // Asked only on mounts without default_permissions (no --allow-other): the kernel answers the others.
        ops.access = { req, ino, mask in
            do {
                try FUSEAdapter.from(req).fs.access(ino, mask: mask, FUSEAdapter.context(req))
                fuse_reply_err(req, 0)
            } catch { FUSEAdapter.reply(req, error, "access", ino, nil) }
        }
        return ops
    }

    /// The size-probe protocol of getxattr/listxattr: size 0 asks for the length.
    static func replyXattr(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(req, value.count)
        } else if value.count > size {
            fuse_reply_err(req, ERANGE)
        } else {
            value.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
    }

    /// Fills one reply buffer with entries from `offset` on; each entry's offset is its index + 1.
    func readdir(_ req: fuse_req_t?, size: Int, offset: off_t, handle: UInt64, plus: Bool) {
        guard let entries = lock.withLock({ directories[handle] }) else { fuse_reply_err(req, EBADF); return }
        // The kernel offers up to 1 MiB (what `find` asks getdents for); a buffer of that size per
        // call, zero-filled page by page, cost 2 ms per directory. Size it to the entries left:
        // a direntplus is 152 bytes plus the name padded to 8 (a dirent 24 plus the name).
        var capacity = 0
        for e in entries.dropFirst(max(0, Int(offset))) where capacity < size {
            capacity += (plus ? 152 : 24) + e.name.utf8.count + 8
        }
        let size = min(size, capacity)
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        var index = Int(offset)
        while index < entries.count {
            let e = entries[index]
            let needed: Int = buffer.withUnsafeMutableBufferPointer { b in
                e.name.withCString { name in
                    if plus {
                        var param = FUSEAdapter.entry(e.attributes)
                        // No dentry for "." and "..". Nor attributes for files still changing: the
                        // listing was taken at opendir, and a size from then, applied after a newer
                        // lookup, would cut short a file that completed in between.
                        if e.name == "." || e.name == ".." || e.attributes.cacheSeconds == 0 { param.ino = 0 }
                        return fuse_add_direntry_plus(req, b.baseAddress! + used, size - used, name, &param, off_t(index + 1))
                    }
                    var st = FUSEAdapter.stat(e.attributes)
                    return fuse_add_direntry(req, b.baseAddress! + used, size - used, name, &st, off_t(index + 1))
                }
            }
            if needed > size - used { break }
            used += needed
            index += 1
        }
        buffer.withUnsafeBufferPointer { _ = fuse_reply_buf(req, $0.baseAddress, used) }
    }

    // MARK: Mounting

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
    public func run(mountpoint: String, options: MountOptions, ready: @escaping @Sendable () -> Void) throws(StoreError) {
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
        self.session = session
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
            throw StoreError(.io, "cannot mount at \(mountpoint) (is /dev/fuse there, and the directory empty and not mounted?)")
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
            logger.notice("passthrough on: files with a whole local copy are read by the kernel from it (libfuse \(FUSEAdapter.libfuseVersion))")
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

    /// An open whose reply did not reach the kernel: it will never be released by it.
    func abandon(_ handle: UInt64) {
        passthrough?.released(handle: handle)
        try? fs.release(handle)
    }

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
            return name.withCString { fuse_lowlevel_notify_inval_entry(session, fuse_ino_t(parent), $0, name.utf8.count) }
        }
    }

    func stop() {
        lock.lock()
        session = nil
        lock.unlock()
    }
}
