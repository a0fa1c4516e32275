import CFuse
import Foundation
import Logging
import ModelFS
import ModelStore

/// libfuse's low-level callbacks over a ``FileSystem``: one method per operation (Operations.swift),
/// named as the operation is, gathered in one table below, as libfuse's `passthrough_ll.c` has one
/// `lo_*` function each and one `lo_oper`. Each translates its arguments, calls the file system and
/// replies exactly once, with the result or with the errno of the ``StoreError`` (Replies.swift);
/// the table serves each through ``serve(_:_:_:)``, which counts and times it (RequestMetrics.swift).
/// The session's life, mount to unmount, is in Session.swift.
public final class FUSEAdapter: @unchecked Sendable {
    public let fs: FileSystem
    let logger: Logger
    /// Bytes per request the kernel may send, both ways.
    let maxIO: UInt32 = 1 << 20
    // Set by the session before it serves requests, read-only after.
    /// Whether to ask for passthrough at init (`--passthrough auto`).
    var passthroughWanted = true
    /// Opens that pass through to a backing file.
    var passthrough: PassthroughTable?
    /// Requests, their latency and refusals, for `/metrics`.
    let metrics = RequestMetrics()

    public init(fs: FileSystem, logger: Logger = Logger(label: "modelfs.fuse")) {
        self.fs = fs
        self.logger = logger
    }

    static func from(_ req: fuse_req_t?) -> FUSEAdapter {
        Unmanaged<FUSEAdapter>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Serves one request with `body` (which replies), counted and timed as `op`.
    static func serve(_ req: fuse_req_t?, _ op: RequestMetrics.Operation, _ body: (FUSEAdapter) -> Void) {
        let adapter = from(req)
        let start = RequestMetrics.now()
        body(adapter)  // replied: `req` is freed
        adapter.metrics.served(op, since: start)
    }

    /// Refuses a request the store has no operation for.
    func refuse(_ req: fuse_req_t?, _ code: StoreError.Code, _ op: String) {
        metrics.refused(op, code)
        fuse_reply_err(req, errnoValue(for: code))
    }

    /// Who asks, as the kernel tells it.
    static func context(_ req: fuse_req_t?) -> RequestContext {
        RequestContext(uid: UInt32(cfuse_req_uid(req)), gid: UInt32(cfuse_req_gid(req)), pid: Int32(cfuse_req_pid(req)))
    }

    /// The operations table. A C callback cannot be a method, so each entry finds the adapter from
    /// the request and calls the method of the same name.
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            Unmanaged<FUSEAdapter>.fromOpaque(userdata).takeUnretainedValue().initialize(conn)
        }
        ops.lookup = { req, parent, name in FUSEAdapter.serve(req, .lookup) { $0.lookup(req, parent, name) } }
        ops.forget = { req, _, _ in fuse_reply_none(req) }  // inodes are derived from ids: nothing to forget
        ops.forget_multi = { req, _, _ in fuse_reply_none(req) }
        ops.getattr = { req, ino, _ in FUSEAdapter.serve(req, .getattr) { $0.getattr(req, ino) } }
        ops.setattr = { req, ino, attr, toSet, _ in FUSEAdapter.serve(req, .setattr) { $0.setattr(req, ino, attr, toSet) } }
        ops.mkdir = { req, parent, name, mode in FUSEAdapter.serve(req, .mkdir) { $0.mkdir(req, parent, name, mode) } }
        ops.rmdir = { req, parent, name in FUSEAdapter.serve(req, .rmdir) { $0.rmdir(req, parent, name) } }
        ops.unlink = { req, parent, name in FUSEAdapter.serve(req, .unlink) { $0.unlink(req, parent, name) } }
        ops.rename = { req, parent, name, newParent, newName, flags in
            FUSEAdapter.serve(req, .rename) { $0.rename(req, parent, name, newParent, newName, flags) }
        }
        // Hard links and device files have no place in a model store; symbolic links are aliases.
        ops.link = { req, _, _, _ in FUSEAdapter.serve(req, .link) { $0.refuse(req, .notPermitted, "link") } }
        ops.mknod = { req, _, _, _, _ in FUSEAdapter.serve(req, .mknod) { $0.refuse(req, .notPermitted, "mknod") } }
        ops.symlink = { req, target, parent, name in FUSEAdapter.serve(req, .symlink) { $0.symlink(req, target, parent, name) } }
        ops.readlink = { req, ino in FUSEAdapter.serve(req, .readlink) { $0.readlink(req, ino) } }
        ops.open = { req, ino, fi in FUSEAdapter.serve(req, .open) { $0.open(req, ino, fi!) } }
        ops.create = { req, parent, name, mode, fi in FUSEAdapter.serve(req, .create) { $0.create(req, parent, name, mode, fi!) } }
        ops.read = { req, ino, size, offset, fi in FUSEAdapter.serve(req, .read) { $0.read(req, ino, size, offset, fi!) } }
        ops.write = { req, ino, buf, size, offset, fi in FUSEAdapter.serve(req, .write) { $0.write(req, ino, buf, size, offset, fi!) } }
        ops.flush = { req, ino, fi in FUSEAdapter.serve(req, .flush) { $0.flush(req, ino, fi!) } }
        ops.release = { req, ino, fi in FUSEAdapter.serve(req, .release) { $0.release(req, ino, fi!) } }
        ops.fsync = { req, _, _, _ in FUSEAdapter.serve(req, .fsync) { _ in fuse_reply_err(req, 0) } }
        ops.opendir = { req, ino, fi in FUSEAdapter.serve(req, .opendir) { $0.opendir(req, ino, fi!) } }
        ops.readdir = { req, ino, size, offset, fi in FUSEAdapter.serve(req, .readdir) { $0.readdir(req, ino, size, offset, fi!, plus: false) } }
        ops.readdirplus = { req, ino, size, offset, fi in
            FUSEAdapter.serve(req, .readdirplus) { $0.readdir(req, ino, size, offset, fi!, plus: true) }
        }
        ops.releasedir = { req, _, fi in FUSEAdapter.serve(req, .releasedir) { $0.releasedir(req, fi!) } }
        ops.statfs = { req, _ in FUSEAdapter.serve(req, .statfs) { $0.statfs(req) } }
        ops.getxattr = { req, ino, name, size in FUSEAdapter.serve(req, .getxattr) { $0.getxattr(req, ino, name, size) } }
        ops.listxattr = { req, ino, size in FUSEAdapter.serve(req, .listxattr) { $0.listxattr(req, ino, size) } }
        ops.setxattr = { req, ino, name, value, size, _ in FUSEAdapter.serve(req, .setxattr) { $0.setxattr(req, ino, name, value, size) } }
        ops.removexattr = { req, _, _ in FUSEAdapter.serve(req, .removexattr) { $0.refuse(req, .notPermitted, "removexattr") } }
        ops.access = { req, ino, mask in FUSEAdapter.serve(req, .access) { $0.access(req, ino, mask) } }
        return ops
    }
}
