import CFuse
import Glibc
import ModelFS
import ModelStore

/// One method per FUSE operation, in the order of `fuse_lowlevel_ops`: translate, call the file
/// system, reply once.
extension FUSEAdapter {
    func initialize(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        let granted = cfuse_tune(conn, maxIO, maxIO, passthroughWanted ? 1 : 0) != 0
        negotiated(conn.pointee, passthroughGranted: granted)
    }

    // MARK: Names and attributes

    func lookup(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        do {
            replyEntry(req, try fs.lookup(parent: parent, name: bytes(name)))
        } catch { reply(req, error, "lookup", parent, name) }
    }

    func getattr(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        do { replyAttributes(req, try fs.getattr(ino)) } catch { reply(req, error, "getattr", ino, nil) }
    }

    func setattr(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ attr: UnsafeMutablePointer<stat>?, _ toSet: Int32) {
        do {
            let asked = attr!.pointee
            let size: Int64? = toSet & FUSE_SET_ATTR_SIZE != 0 ? Int64(asked.st_size) : nil
            let mode: UInt32? = toSet & FUSE_SET_ATTR_MODE != 0 ? UInt32(asked.st_mode) : nil
            let uid: UInt32? = toSet & FUSE_SET_ATTR_UID != 0 ? UInt32(asked.st_uid) : nil
            let gid: UInt32? = toSet & FUSE_SET_ATTR_GID != 0 ? UInt32(asked.st_gid) : nil
            let ctx = FUSEAdapter.context(req)
            replyAttributes(req, try fs.setattr(ino, size: size, mode: mode, uid: uid, gid: gid, ctx))
        } catch { reply(req, error, "setattr", ino, nil) }
    }

    // MARK: Changing the namespace

    func mkdir(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ mode: mode_t) {
        do {
            var ctx = FUSEAdapter.context(req)
            ctx.mode = UInt32(mode) & 0o7777
            replyEntry(req, try fs.mkdir(parent: parent, name: bytes(name), ctx))
        } catch { reply(req, error, "mkdir", parent, name) }
    }

    func rmdir(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        do {
            try fs.rmdir(parent: parent, name: bytes(name), FUSEAdapter.context(req))
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "rmdir", parent, name) }
    }

    func unlink(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        do {
            try fs.unlink(parent: parent, name: bytes(name), FUSEAdapter.context(req))
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "unlink", parent, name) }
    }

    func rename(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ newParent: fuse_ino_t,
                _ newName: UnsafePointer<CChar>?, _ flags: UInt32) {
        if flags & FUSEAdapter.renameExchange != 0 { refuse(req, .invalidArgument, "rename"); return }
        do {
            let ctx = FUSEAdapter.context(req)
            try fs.rename(parent: parent, name: bytes(name), newParent: newParent, newName: bytes(newName), ctx)
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "rename", parent, name) }
    }

    func symlink(_ req: fuse_req_t?, _ target: UnsafePointer<CChar>?, _ parent: fuse_ino_t,
                 _ name: UnsafePointer<CChar>?) {
        do {
            let ctx = FUSEAdapter.context(req)
            replyEntry(req, try fs.symlink(parent: parent, name: bytes(name), target: bytes(target), ctx))
        } catch { reply(req, error, "symlink", parent, name) }
    }

    func readlink(_ req: fuse_req_t?, _ ino: fuse_ino_t) {
        do {
            let target = try fs.readlink(ino)
            _ = target.withCString { fuse_reply_readlink(req, $0) }
        } catch { reply(req, error, "readlink", ino, nil) }
    }

    // MARK: Files

    func open(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        do {
            let r = try fs.open(ino, flags: OpenFlags(fi.pointee.flags), FUSEAdapter.context(req))
            // Generated files (direct I/O) are never passed through, nor counted: the kernel
            // keeps them out of an inode's I/O mode, and they have no backing file.
            let backing = r.directIO
                ? 0 : passthrough?.opened(inode: ino, handle: r.handle, wholeFile: r.wholeFile) ?? 0
            if backing > 0 { metrics.passthroughOpens.increment() }
            // Passing through, the kernel reads the backing file's page cache: pages of the
            // FUSE inode's own would be a second copy of the same bytes, so they are dropped.
            cfuse_fi_set_open(fi, r.handle, r.keepCache && backing == 0 ? 1 : 0, r.directIO ? 1 : 0)
            cfuse_fi_set_backing(fi, backing)
            if fuse_reply_open(req, fi) != 0 { abandon(r.handle) }  // the opener is gone: no RELEASE comes
        } catch { reply(req, error, "open", ino, nil) }
    }

    func create(_ req: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ mode: mode_t,
                _ fi: UnsafeMutablePointer<fuse_file_info>) {
        do {
            var ctx = FUSEAdapter.context(req)
            ctx.mode = UInt32(mode) & 0o7777
            let (a, r) = try fs.create(parent: parent, name: bytes(name), flags: OpenFlags(fi.pointee.flags), ctx)
            // Counted as an open through the page cache: a reader of the version must not
            // pass through while the writer's file is still open (the kernel would refuse it).
            _ = passthrough?.opened(inode: a.inode, handle: r.handle, wholeFile: nil)
            cfuse_fi_set_open(fi, r.handle, 0, 0)
            var e = FUSEAdapter.entry(a)
            fuse_reply_create(req, &e, fi)
        } catch { reply(req, error, "create", parent, name) }
    }

    func read(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
              _ fi: UnsafeMutablePointer<fuse_file_info>) {
        do {
            switch try fs.readReply(fi.pointee.fh, offset: Int64(offset), size: size) {
            case .bytes(let data):
                replyBytes(req, data)
            case .cached(let cached):
                // Straight from the cache's memory: one copy, into the kernel.
                cached.withBuffers { buffers in
                    let iov = buffers.map {
                        iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
                    }
                    _ = fuse_reply_iov(req, iov, Int32(iov.count))
                }
            case .file(let fd, let offset, let count):
                _ = cfuse_reply_file(req, fd, off_t(offset), count)
            }
        } catch { reply(req, error, "read", ino, nil) }
    }

    func write(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ buf: UnsafePointer<CChar>?, _ size: Int, _ offset: off_t,
               _ fi: UnsafeMutablePointer<fuse_file_info>) {
        // The buffer belongs to this worker thread: the upload copies it before we return.
        do {
            let bytes = UnsafeRawBufferPointer(start: buf, count: size)
            let ctx = FUSEAdapter.context(req)
            fuse_reply_write(req, try fs.write(fi.pointee.fh, offset: Int64(offset), bytes: bytes, ctx))
        } catch { reply(req, error, "write", ino, nil) }
    }

    func flush(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        do {
            try fs.flush(fi.pointee.fh, FUSEAdapter.context(req))
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "flush", ino, nil) }
    }

    func release(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        passthrough?.released(handle: fi.pointee.fh)
        do {
            try fs.release(fi.pointee.fh)
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "release", ino, nil) }
    }

    /// An open whose reply did not reach the kernel: it will never be released by it.
    func abandon(_ handle: UInt64) {
        passthrough?.released(handle: handle)
        try? fs.release(handle)
    }

    // MARK: Directories

    func opendir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        do {
            cfuse_fi_set_open(fi, try fs.opendir(ino), 0, 0)
            if fuse_reply_open(req, fi) != 0 { fs.releasedir(fi.pointee.fh) }  // no RELEASEDIR comes
        } catch { reply(req, error, "opendir", ino, nil) }
    }

    func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
                 _ fi: UnsafeMutablePointer<fuse_file_info>, plus: Bool) {
        do { replyDirectory(req, try fs.readdir(fi.pointee.fh, offset: Int64(offset)), size: size, plus: plus) }
        catch { reply(req, error, plus ? "readdirplus" : "readdir", ino, nil) }
    }

    func releasedir(_ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        fs.releasedir(fi.pointee.fh)
        fuse_reply_err(req, 0)
    }

    // MARK: The file system as a whole

    func statfs(_ req: fuse_req_t?) {
        do {
            let usage = try fs.statfs()
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
        } catch { reply(req, error, "statfs", 0, nil) }
    }

    // MARK: Extended attributes and permissions

    func getxattr(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ size: Int) {
        do {
            replyXattr(req, try fs.getxattr(ino, name: String(cString: name!)), size)
        } catch { reply(req, error, "getxattr", ino, name) }
    }

    func listxattr(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int) {
        do {
            replyXattr(req, try fs.listxattr(ino).flatMap { Array($0.utf8) + [0] }, size)
        } catch { reply(req, error, "listxattr", ino, nil) }
    }

    func setxattr(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                  _ size: Int) {
        do {
            let bytes = Array(UnsafeRawBufferPointer(start: value, count: size))
            try fs.setxattr(ino, name: String(cString: name!), value: bytes, FUSEAdapter.context(req))
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "setxattr", ino, name) }
    }

    /// Asked only on mounts without default_permissions (no --allow-other): the kernel answers the others.
    func access(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ mask: Int32) {
        do {
            try fs.access(ino, mask: mask, FUSEAdapter.context(req))
            fuse_reply_err(req, 0)
        } catch { reply(req, error, "access", ino, nil) }
    }
}
