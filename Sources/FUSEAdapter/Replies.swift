import CFuse
import Foundation
import Glibc
import ModelFS
import ModelStore

/// How results become replies: attributes as `stat`, entries, xattr values, directory pages, and
/// errors as errnos.
extension FUSEAdapter {
    /// Replies with the error's errno and logs one line for a refusal a person may wonder about:
    /// the operation, the path, the errno and the reason. Lookups of names that are not there,
    /// probes for attributes that are not there, and `access` answers, are the everyday business
    /// of shells and `ls`.
    func reply(_ req: fuse_req_t?, _ error: any Error, _ op: String, _ inode: UInt64, _ name: UnsafePointer<CChar>?) {
        let (storeError, code) = refusal(error, op)
        defer { fuse_reply_err(req, code) }  // last: the reply frees the request
        switch (op, storeError.code) {
        case (_, .notFound) where op == "lookup" || op == "getattr", (_, .noAttribute),
             (_, .notSupported) where op.hasSuffix("xattr"),
             (_, _) where op == "access":  // an answer (`test -w`), not a refusal
            return
        default:
            var path = inode == 0 ? "" : fs.describe(inode)
            if let name {
                path += (path.isEmpty ? "" : op.hasSuffix("xattr") ? " " : "/") + Names.printable(String(cString: name))
            }
            let who = FUSEAdapter.context(req)
            let why = "\(String(cString: strerror(code))) (\(storeError.code.rawValue)): \(storeError.message)"
            logger.notice("\(op) \(path.isEmpty ? "-" : path): \(why) [uid \(who.uid) pid \(who.pid)]")
        }
    }

    /// The errno `error` refuses `op` with, counted by errno for `/metrics`.
    func refusal(_ error: any Error, _ op: String) -> (StoreError, Int32) {
        let storeError = error as? StoreError ?? StoreError(.io, "\(error)")
        let code = errnoValue(for: storeError.code)
        metrics.refused(op, storeError.code)
        return (storeError, code)
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

    func replyEntry(_ req: fuse_req_t?, _ a: Attributes) {
        var e = FUSEAdapter.entry(a)
        fuse_reply_entry(req, &e)
    }

    func replyAttributes(_ req: fuse_req_t?, _ a: Attributes) {
        var st = FUSEAdapter.stat(a)
        fuse_reply_attr(req, &st, a.cacheSeconds)
    }

    func replyBytes(_ req: fuse_req_t?, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// The size-probe protocol of getxattr/listxattr: size 0 asks for the length.
    func replyXattr(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(req, value.count)
        } else if value.count > size {
            fuse_reply_err(req, ERANGE)
        } else {
            replyBytes(req, value)
        }
    }

    /// A name from the kernel, as bytes: names need not be UTF-8.
    func bytes(_ name: UnsafePointer<CChar>?) -> [UInt8] {
        guard let name else { return [] }
        return Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
    }

    /// Packs as many entries of `page` as fit in `size` bytes; each carries the offset the next
    /// read continues from (its index + 1, see ``FileSystem/readdir(_:offset:)``).
    func replyDirectory(_ req: fuse_req_t?, _ page: ArraySlice<DirectoryEntry>, size: Int, plus: Bool) {
        // The kernel offers up to 1 MiB (what `find` asks getdents for); a buffer of that size per
        // call, zero-filled page by page, cost 2 ms per directory. Size it to the entries left:
        // a direntplus is 152 bytes plus the name padded to 8 (a dirent 24 plus the name).
        var capacity = 0
        for e in page where capacity < size {
            capacity += (plus ? 152 : 24) + e.name.utf8.count + 8
        }
        let size = min(size, capacity)
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        for index in page.indices {
            let e = page[index]
            let next = off_t(index + 1)
            let needed: Int = buffer.withUnsafeMutableBufferPointer { b in
                e.name.withCString { name in
                    if plus {
                        var param = FUSEAdapter.entry(e.attributes)
                        // No dentry for "." and "..". Nor attributes for files still changing: the
                        // listing was taken at opendir, and a size from then, applied after a newer
                        // lookup, would cut short a file that completed in between.
                        if e.name == "." || e.name == ".." || e.attributes.cacheSeconds == 0 { param.ino = 0 }
                        return fuse_add_direntry_plus(req, b.baseAddress! + used, size - used, name, &param, next)
                    }
                    var st = FUSEAdapter.stat(e.attributes)
                    return fuse_add_direntry(req, b.baseAddress! + used, size - used, name, &st, next)
                }
            }
            if needed > size - used { break }
            used += needed
        }
        buffer.withUnsafeBufferPointer { _ = fuse_reply_buf(req, $0.baseAddress, used) }
    }
}
