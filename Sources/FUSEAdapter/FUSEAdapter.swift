import CFuse
import Foundation
import Logging
import ModelFS
import ModelStore

/// libfuse's low-level callbacks over a ``FileSystem``: one method per operation (Operations.swift),
/// named as the operation is, gathered in one table below, as libfuse's `passthrough_ll.c` has one
/// `lo_*` function each and one `lo_oper`. Each translates its arguments, calls the file system and
/// replies exactly once, with the result or with the errno of the ``StoreError`` (Replies.swift).
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

    /// The operations table. A C callback cannot be a method, so each entry finds the adapter from
    /// the request and calls the method of the same name.
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            Unmanaged<FUSEAdapter>.fromOpaque(userdata).takeUnretainedValue().initialize(conn)
        }
        ops.lookup = { FUSEAdapter.from($0).lookup($0, $1, $2) }
        ops.forget = { req, _, _ in fuse_reply_none(req) }  // inodes are derived from ids: nothing to forget
        ops.forget_multi = { req, _, _ in fuse_reply_none(req) }
        ops.getattr = { req, ino, _ in FUSEAdapter.from(req).getattr(req, ino) }
        ops.setattr = { req, ino, attr, toSet, _ in FUSEAdapter.from(req).setattr(req, ino, attr, toSet) }
        ops.mkdir = { FUSEAdapter.from($0).mkdir($0, $1, $2, $3) }
        ops.rmdir = { FUSEAdapter.from($0).rmdir($0, $1, $2) }
        ops.unlink = { FUSEAdapter.from($0).unlink($0, $1, $2) }
        ops.rename = { FUSEAdapter.from($0).rename($0, $1, $2, $3, $4, $5) }
        // Hard links and device files have no place in a model store; symbolic links are aliases.
        ops.link = { req, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.mknod = { req, _, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.symlink = { FUSEAdapter.from($0).symlink($0, $1, $2, $3) }
        ops.readlink = { FUSEAdapter.from($0).readlink($0, $1) }
        ops.open = { FUSEAdapter.from($0).open($0, $1, $2!) }
        ops.create = { FUSEAdapter.from($0).create($0, $1, $2, $3, $4!) }
        ops.read = { FUSEAdapter.from($0).read($0, $1, $2, $3, $4!) }
        ops.write = { FUSEAdapter.from($0).write($0, $1, $2, $3, $4, $5!) }
        ops.flush = { FUSEAdapter.from($0).flush($0, $1, $2!) }
        ops.release = { FUSEAdapter.from($0).release($0, $1, $2!) }
        ops.fsync = { req, _, _, _ in fuse_reply_err(req, 0) }
        ops.opendir = { FUSEAdapter.from($0).opendir($0, $1, $2!) }
        ops.readdir = { FUSEAdapter.from($0).readdir($0, $1, $2, $3, $4!, plus: false) }
        ops.readdirplus = { FUSEAdapter.from($0).readdir($0, $1, $2, $3, $4!, plus: true) }
        ops.releasedir = { FUSEAdapter.from($0).releasedir($0, $2!) }
        ops.statfs = { req, _ in FUSEAdapter.from(req).statfs(req) }
        ops.getxattr = { FUSEAdapter.from($0).getxattr($0, $1, $2, $3) }
        ops.listxattr = { FUSEAdapter.from($0).listxattr($0, $1, $2) }
        ops.setxattr = { req, ino, name, value, size, _ in FUSEAdapter.from(req).setxattr(req, ino, name, value, size) }
        ops.removexattr = { req, _, _ in fuse_reply_err(req, EPERM) }
        ops.access = { FUSEAdapter.from($0).access($0, $1, $2) }
        return ops
    }
}
