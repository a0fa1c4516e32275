import Foundation
import Glibc
import Jobs
import Logging
import ModelStore
import ReadPath
import Registry

/// Flags of `open(2)` that matter here, without FUSE types.
public struct OpenFlags: Sendable {
    public var raw: Int32
    public init(_ raw: Int32) { self.raw = raw }
    public var wantsWrite: Bool { raw & O_ACCMODE != O_RDONLY }
    public var truncates: Bool { raw & O_TRUNC != 0 }
    public var appends: Bool { raw & O_APPEND != 0 }
}

/// What `open` or `create` gives back.
public struct OpenResult: Sendable {
    public var handle: UInt64
    /// The kernel may keep cached pages across opens: the bytes never change.
    public var keepCache: Bool
    /// Reads bypass the page cache: generated files (`.stats`, `.next`) whose size may change.
    public var directIO: Bool
    /// A local file with all of the file's bytes, for FUSE passthrough; nil: reads come to us.
    public var wholeFile: Int32? = nil
}

/// The mounted namespace on top of the registry: `models/<model>/<version>.<ext>`,
/// `datasets/<name>.<ext>`, `jobs/`, `.stats`. Knows nothing of FUSE: every operation takes plain
/// values (and who asks) and throws ``StoreError``, so it is tested without a mount.
///
/// It only dispatches: each node belongs to one provider (``RootProvider``, ``ModelsProvider``,
/// ``DatasetsProvider``, ``JobsProvider``), and each open file is one ``OpenFile`` kept under a
/// handle until its last close.
public final class FileSystem: Sendable {
    /// The store's one door (``StorePort``): everything the mount reads and changes, by id.
    public let store: any StorePort
    public let cache: BlockCache
    /// Training jobs behind `jobs/`; nil when the mount runs none.
    public let jobs: JobService?
    let namespace: Namespace
    private let providers: [TreePart: any NamespaceProvider]
    /// What this mount showed, for invalidations after other nodes' changes.
    let shownNames = ShownNames()
    /// Only a shared catalog sends change notices; on one node nothing is recorded.
    var watchesChanges: Bool { store.isShared }

    /// Open files and directories, under handles from one counter.
    private struct Handles {
        var open: [UInt64: any OpenFile] = [:]
        var directories: [UInt64: OpenDirectory] = [:]
        var next: UInt64 = 1
    }
    private let handles = Locked(Handles())

    public typealias ReadReply = ReadPath.ReadReply

    public init(registry: Registry, cache: BlockCache, jobs: JobService? = nil, services: ServiceRunner? = nil, spool: SpoolSpace? = nil,
                logger: Logger = Logger(label: "modelfs.fs")) {
        self.store = registry
        self.cache = cache
        self.jobs = jobs
        registry.useSpool(spool)
        let namespace = Namespace(store: registry, objects: registry.objects, cache: cache, jobs: jobs, services: services, logger: logger)
        self.namespace = namespace
        let others: [any NamespaceProvider] = [ModelsProvider(namespace: namespace), DatasetsProvider(namespace: namespace),
                                               JobsProvider(namespace: namespace), ArchivesProvider(namespace: namespace),
                                               ServicesProvider(namespace: namespace)]
        // The root lists the other parts' top directories, with their providers' attributes.
        let root = RootProvider(namespace: namespace) { (node) throws(StoreError) -> Attributes in
            guard let p = others.first(where: { $0.parts.contains(node.part) }) else { throw .notFound("no provider") }
            return try p.attributes(of: node)
        }
        var byPart: [TreePart: any NamespaceProvider] = [:]
        for p in [root] + others { for part in p.parts { byPart[part] = p } }
        providers = byPart
    }

    /// Called once the mount is live, when `/proc` can tell which descriptors refer to it.
    public func mounted(at mountpoint: String) {
        if let real = ProcWriterProbe(mountpoint: mountpoint) { namespace.writerProbe = real }
        else { namespace.logger.warning("cannot find \(mountpoint) in /proc/self/mountinfo: uploads complete at the creating process's close") }
    }

    private func provider(_ node: Node) -> any NamespaceProvider { providers[node.part]! }

    private func node(_ inode: UInt64) throws(StoreError) -> Node {
        guard let n = Node(inode: inode) else { throw .notFound("no inode \(inode)") }
        return n
    }

    /// A name from the kernel; one that is not UTF-8 names nothing here.
    private func decode(_ name: [UInt8]) throws(StoreError) -> String {
        guard let s = String(validating: name, as: UTF8.self) else { throw .notFound("not a name this store has") }
        return s
    }

    private func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        try provider(parent).child(of: parent, named: name)
    }

    private func attributes(of node: Node) throws(StoreError) -> Attributes { try provider(node).attributes(of: node) }

    /// The path of an inode inside the mount, for log lines; best effort.
    public func describe(_ inode: UInt64) -> String {
        guard let n = Node(inode: inode) else { return "inode \(inode)" }
        return provider(n).describe(n)
    }

    // MARK: Names, attributes, directories

    public func lookup(parent: UInt64, name rawName: [UInt8]) throws(StoreError) -> Attributes {
        let name = try decode(rawName)
        let found = try attributes(of: try child(of: try node(parent), named: name))
        if watchesChanges { shownNames.record(parent, name: name, inode: found.inode) }
        return found
    }

    public func getattr(_ inode: UInt64) throws(StoreError) -> Attributes { try attributes(of: try node(inode)) }

    /// What directory `inode` holds now, without `.` and `..`.
    func listing(_ inode: UInt64) throws(StoreError) -> [DirectoryEntry] {
        let n = try node(inode)
        return try provider(n).entries(of: n)
    }

    /// What `ls -a` of directory `inode` shows now: `.`, `..`, then its entries.
    private func entries(_ inode: UInt64) throws(StoreError) -> [DirectoryEntry] {
        let n = try node(inode)
        let p = provider(n)
        let listed = try p.entries(of: n)
        let up = n == .root ? Node.root : try p.parent(of: n)
        if watchesChanges { shownNames.record(inode, listed) }
        return [DirectoryEntry(name: ".", attributes: try p.attributes(of: n)), DirectoryEntry(name: "..", attributes: try attributes(of: up))]
            + listed
    }

    /// Opens directory `inode` for reading; its listing is taken now (see ``OpenDirectory``).
    public func opendir(_ inode: UInt64) throws(StoreError) -> UInt64 {
        let directory = OpenDirectory(inode: inode, entries: try entries(inode))
        return handles.withLock {
            let h = $0.next
            $0.next += 1
            $0.directories[h] = directory
            return h
        }
    }

    /// The entries of open directory `handle` from `offset` on (0 first, then the index after the
    /// last entry taken): the caller takes as many as fit its reply. A read from 0 after the first
    /// is a rewind and lists the directory again.
    public func readdir(_ handle: UInt64, offset: Int64) throws(StoreError) -> ArraySlice<DirectoryEntry> {
        guard var directory = handles.withLock({ $0.directories[handle] }) else {
            throw StoreError(.badDescriptor, "no open directory \(handle)")
        }
        if offset == 0 {
            // Listed outside the lock, which guards every handle: a listing asks the catalog. The
            // kernel reads an open directory one call at a time, so no other read races this one.
            if directory.read { directory.entries = try entries(directory.inode) }
            directory.read = true
            handles.withLock { $0.directories[handle] = directory }
        }
        return directory.page(from: offset)
    }

    public func releasedir(_ handle: UInt64) {
        _ = handles.withLock { $0.directories.removeValue(forKey: handle) }
    }

    // MARK: Open files

    private func register(_ opened: Opened) -> OpenResult {
        handles.withLock {
            let h = $0.next
            $0.next += 1
            $0.open[h] = opened.file
            return OpenResult(handle: h, keepCache: opened.keepCache, directIO: opened.directIO,
                              wholeFile: opened.directIO ? nil : opened.file.wholeFile)
        }
    }

    private func openFile(_ handle: UInt64) throws(StoreError) -> any OpenFile {
        guard let f = handles.withLock({ $0.open[handle] }) else { throw StoreError(.badDescriptor, "no open file \(handle)") }
        return f
    }

    public func open(_ inode: UInt64, flags: OpenFlags, _ ctx: RequestContext = .mountOwner) throws(StoreError) -> OpenResult {
        let n = try node(inode)
        // Not bound to an Actor: opens and writes are the hot path, and change nothing the audit
        // trail records (a job request binds its writer itself; see SubmissionFile).
        return register(try provider(n).open(n, flags: flags, ctx))
    }

    /// Creates a version (in a model directory) or a dataset (in `datasets/`) and opens it for writing.
    public func create(parent: UInt64, name rawName: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Attributes, OpenResult) {
        let p = try node(parent)
        let (created, opened) = try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(p).create(in: p, name: rawName, flags: flags, ctx) }
        let result = register(opened)
        return (try attributes(of: created), result)
    }

    public func readReply(_ handle: UInt64, offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        try openFile(handle).read(offset: offset, size: size)
    }

    public func write(_ handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Int {
        try openFile(handle).write(offset: offset, bytes: bytes, ctx)
    }

    /// `close()` of one file descriptor (also the kernel closing the files of a process that exits).
    public func flush(_ handle: UInt64, _ ctx: RequestContext) throws(StoreError) {
        try openFile(handle).flush(ctx)
    }

    /// The last close of an open file.
    public func release(_ handle: UInt64) throws(StoreError) {
        guard let file = handles.withLock({ $0.open.removeValue(forKey: handle) }) else { return }
        try file.release()
    }

    /// Unmount or SIGTERM of the mount: uploads still open can never complete, so they fail now
    /// (their multipart uploads aborted) rather than stay `uploading`.
    public func abortOpenUploads(reason: String) {
        for w in namespace.openWriters { w.abort(reason: reason) }
    }

    // MARK: Changing the namespace

    public func mkdir(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Attributes {
        let name = try Names.decode(rawName, what: "model name")
        let p = try node(parent)
        return try attributes(of: try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(p).mkdir(in: p, name: name, ctx) })
    }

    /// `ln -s target name`: in a model directory, an alias of one of its versions.
    public func symlink(parent: UInt64, name rawName: [UInt8], target: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Attributes {
        let name = try Names.decode(rawName, what: "link name")
        guard let target = String(validating: target, as: UTF8.self) else { throw .invalid("a link's target is a version's file name") }
        let p = try node(parent)
        let made = try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(p).symlink(in: p, name: name, target: target, ctx) }
        if watchesChanges { shownNames.record(parent, name: name, inode: made.inode) }
        return try attributes(of: made)
    }

    public func readlink(_ inode: UInt64) throws(StoreError) -> String {
        let n = try node(inode)
        return try provider(n).readlink(n)
    }

    public func rmdir(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        try remove(parent: parent, name: rawName, directory: true, ctx)
    }

    public func unlink(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        try remove(parent: parent, name: rawName, directory: false, ctx)
    }

    private func remove(parent: UInt64, name rawName: [UInt8], directory: Bool, _ ctx: RequestContext) throws(StoreError) {
        let name = try decode(rawName)
        let p = try node(parent)
        let target = try child(of: p, named: name)
        try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(target).remove(target, named: name, in: p, directory: directory, ctx) }
    }

    /// Renames a model, a version within its model, or a dataset: metadata only. An existing
    /// target is refused (`EEXIST`), never replaced; a version cannot move to another model (`EXDEV`).
    public func rename(parent: UInt64, name rawName: [UInt8], newParent: UInt64, newName rawNewName: [UInt8],
                       _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        let name = try decode(rawName)
        let newName = try Names.decode(rawNewName, what: "new name")
        let from = try node(parent)
        let to = try node(newParent)
        let source = try child(of: from, named: name)
        try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(source).rename(source, from: from, to: to, newName: newName, ctx) }
    }

    /// `truncate`, `chmod`, `chown`, `chgrp`, `utimens`. Times are accepted and ignored (so
    /// `cp -p` and `touch` work); owners and modes change by the rules of ``Ownership`` (a file
    /// still being written takes the read bits of any mode: `install`, `cp -p`); a size changes
    /// only for a file being written.
    public func setattr(_ inode: UInt64, size: Int64?, mode: UInt32?, uid: UInt32? = nil, gid: UInt32? = nil,
                        _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Attributes {
        let n = try node(inode)
        try Actor.acting(ctx.actor) { () throws(StoreError) in
            if mode != nil || uid != nil || gid != nil {
                try provider(n).changeOwnership(n, mode: mode, uid: uid, gid: gid, lenient: namespace.writer(for: inode) != nil, ctx)
            }
            if let size { try provider(n).truncate(n, to: size, ctx) }
        }
        return try attributes(of: n)
    }

    // MARK: Extended attributes

    public func listxattr(_ inode: UInt64) throws(StoreError) -> [String] {
        let n = try node(inode)
        return try provider(n).xattrs(of: n).map { $0.0 }
    }

    public func getxattr(_ inode: UInt64, name: String) throws(StoreError) -> [UInt8] {
        // `ls -l` asks every file for security.selinux and system.posix_acl_access. "Not supported"
        // (rather than "no such attribute") is the truth, and `ls` then stops asking for the rest
        // of the directory: two round trips per listing instead of two per file.
        guard name.hasPrefix("user.") else { throw StoreError(.notSupported, "\(name): only user.* attributes exist here") }
        guard name.hasPrefix(Namespace.xattrPrefix) else { throw StoreError(.noAttribute, "no attribute \(name)") }
        let n = try node(inode)
        guard let value = try provider(n).xattrs(of: n).first(where: { $0.0 == name })?.1 else {
            throw StoreError(.noAttribute, "no attribute \(name)")
        }
        return Array(value.utf8)
    }

    /// Sets `user.modelfs.type` (models) or `user.modelfs.note` (models, versions).
    public func setxattr(_ inode: UInt64, name: String, value: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        guard let text = String(validating: value, as: UTF8.self) else { throw StoreError(.invalidArgument, "values are UTF-8 text") }
        let n = try node(inode)
        try Actor.acting(ctx.actor) { () throws(StoreError) in try provider(n).setxattr(n, name: name, value: text, ctx) }
    }

    // MARK: Permissions

    /// `access(2)` (`test -w`, `os.access`): the Unix answer from the node's owner and mode for the
    /// asking user and their groups, and `EACCES` for `W_OK` on what takes no writes whoever asks
    /// (a ready version or dataset, an archive view and its members, the layout), root included.
    /// Mounts with `--allow-other` check permissions in the kernel (`default_permissions`), which
    /// answers `access` itself from the same modes and never asks here.
    public func access(_ inode: UInt64, mask: Int32, _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        let n = try node(inode)
        let a = try attributes(of: n)
        guard mask & (R_OK | W_OK | X_OK) != 0 else { return }  // F_OK: it exists
        if mask & W_OK != 0, !(try provider(n).acceptsWrites(n)) {
            throw StoreError(.accessDenied, "\(describe(inode)) takes no writes")
        }
        let owner = Ownership(uid: a.uid, gid: a.gid, mode: a.permissions)
        guard owner.allows(mask, by: ctx.actor.requester, isDirectory: a.isDirectory) else {
            throw StoreError(.accessDenied, "mode \(String(a.permissions, radix: 8)) of \(a.uid):\(a.gid) says no")
        }
    }

    // MARK: The file system as a whole

    public struct Usage: Sendable { public var bytes: Int64; public var files: Int64 }

    public func statfs() throws(StoreError) -> Usage {
        let s = try store.stats()
        return Usage(bytes: s.bytes + s.datasetBytes, files: Int64(s.versions + s.datasets + s.models))
    }
}
