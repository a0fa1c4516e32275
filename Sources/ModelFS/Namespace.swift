import Foundation
import Glibc
import Jobs
import Logging
import ModelStore
import ReadPath

/// One part of the tree (the root, `models/`, `datasets/`, `jobs/`): the nodes it owns, what
/// they look like and what may be done to them. ``FileSystem`` routes each operation to the
/// provider of the node it is about; a new kind of node is a new provider (or new cases in one),
/// never a new case in every operation. What a provider does not support is refused as the
/// defaults below say.
protocol NamespaceProvider: AnyObject, Sendable {
    /// What every provider works with.
    var namespace: Namespace { get }
    /// The parts of the tree this provider owns.
    var parts: Set<TreePart> { get }
    func child(of parent: Node, named name: String) throws(StoreError) -> Node
    func attributes(of node: Node) throws(StoreError) -> Attributes
    /// A directory's entries other than `.` and `..`.
    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry]
    func parent(of node: Node) throws(StoreError) -> Node
    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened
    func create(in parent: Node, name: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Node, Opened)
    func mkdir(in parent: Node, name: String, _ ctx: RequestContext) throws(StoreError) -> Node
    func remove(_ node: Node, named name: String, in parent: Node, directory: Bool, _ ctx: RequestContext) throws(StoreError)
    func rename(_ node: Node, from: Node, to: Node, newName: String, _ ctx: RequestContext) throws(StoreError)
    func truncate(_ node: Node, to size: Int64, _ ctx: RequestContext) throws(StoreError)
    func xattrs(of node: Node) throws(StoreError) -> [(String, String)]
    func setxattr(_ node: Node, name: String, value: String, _ ctx: RequestContext) throws(StoreError)
    /// `chmod`, `chown`, `chgrp`. `lenient`: the file is still being written (or is a writer's
    /// temporary file), so bits a version cannot have are dropped rather than refused.
    func changeOwnership(_ node: Node, mode: UInt32?, uid: UInt32?, gid: UInt32?, lenient: Bool, _ ctx: RequestContext) throws(StoreError)
    /// `ln -s target name` in `parent`.
    func symlink(in parent: Node, name: String, target: String, _ ctx: RequestContext) throws(StoreError) -> Node
    func readlink(_ node: Node) throws(StoreError) -> String
    func describe(_ node: Node) -> String
    /// Whether anything may be written to the node at all (a file opened for writing, a
    /// directory given a new entry), whoever asks: what `access(W_OK)` says no to otherwise.
    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool
}

extension NamespaceProvider {
    var store: any StorePort { namespace.store }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] { throw StoreError(.notDirectory, "not a directory") }
    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        throw StoreError(.isDirectory, "is a directory")
    }
    func create(in parent: Node, name: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Node, Opened) {
        throw StoreError(.notPermitted, "files can only be created in a model directory or in datasets/")
    }
    func mkdir(in parent: Node, name: String, _ ctx: RequestContext) throws(StoreError) -> Node {
        throw StoreError(.notPermitted, "directories can only be created in models/ (one per model)")
    }
    func remove(_ node: Node, named name: String, in parent: Node, directory: Bool, _ ctx: RequestContext) throws(StoreError) {
        throw StoreError(.notPermitted, "\(Names.printable(name)) is part of the mount's layout")
    }
    func rename(_ node: Node, from: Node, to: Node, newName: String, _ ctx: RequestContext) throws(StoreError) {
        throw StoreError(.notPermitted, "this cannot be renamed")
    }
    func truncate(_ node: Node, to size: Int64, _ ctx: RequestContext) throws(StoreError) {
        throw StoreError(.notPermitted, "versions never change once written")
    }
    func xattrs(of node: Node) throws(StoreError) -> [(String, String)] { [] }
    func symlink(in parent: Node, name: String, target: String, _ ctx: RequestContext) throws(StoreError) -> Node {
        throw StoreError(.notPermitted, "links can only be made in a model directory, as aliases of its versions (ln -s v3.zip @production)")
    }
    func readlink(_ node: Node) throws(StoreError) -> String { throw StoreError(.invalidArgument, "not a symbolic link") }
    /// The layout, generated files and archive views take no writes.
    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool { false }
    func setxattr(_ node: Node, name: String, value: String, _ ctx: RequestContext) throws(StoreError) {
        throw StoreError(.notSupported, "only user.modelfs.type and user.modelfs.note can be set")
    }
    /// The layout's own nodes keep their owner and mode: asking for what they have succeeds.
    func changeOwnership(_ node: Node, mode: UInt32?, uid: UInt32?, gid: UInt32?, lenient: Bool, _ ctx: RequestContext) throws(StoreError) {
        try Namespace.keepOwnership(try attributes(of: node), mode: mode, uid: uid, gid: gid, "the mount's layout")
    }
}

/// The parts of the tree, each owned by one provider.
enum TreePart: Hashable, Sendable { case root, models, datasets, jobs, archives, services }

extension Node {
    var part: TreePart {
        switch self {
        case .root, .stats: return .root
        case .modelsDir, .model, .version, .next, .alias: return .models
        case .datasetsDir, .dataset: return .datasets
        case .jobsDir, .submit, .evaluate, .job, .jobFile: return .jobs
        case .archive, .member: return .archives
        case .servicesDir, .serviceSubmit, .service, .serviceFile: return .services
        }
    }
}

/// A file just opened, and how the kernel may cache it.
struct Opened {
    var file: any OpenFile
    /// The kernel may keep cached pages across opens: the bytes never change.
    var keepCache = false
    /// Reads bypass the page cache: generated files whose size may change.
    var directIO = false
}

/// What the providers share: the store, the cache, the mount's user, the files being written.
final class Namespace: Sendable {
    /// The store's door: what providers read and change, by id.
    let store: any StorePort
    /// Where the bytes are, for readers.
    let objects: any ObjectStore
    let cache: BlockCache
    let jobs: JobService?
    /// Inference services behind `services/`; nil when the mount runs none (it still lists them).
    let services: ServiceRunner?
    let logger: Logger
    let uid = getuid()
    let gid = getgid()
    let mountTime = Date().timeIntervalSince1970

    /// Immutable ready files: the kernel may keep their attributes for long.
    static let readyAttributeSeconds = 3600.0
    /// Directories and anything still changing.
    static let shortAttributeSeconds = 1.0
    static let xattrPrefix = "user.modelfs."

    /// The writer of each inode being written: its upload's state for `stat`, `truncate` by path,
    /// unmount.
    private let writers = Locked<[UInt64: WriterFile]>([:])
    private let probe = Locked<any WriterProbe>(BlindWriterProbe())

    init(store: any StorePort, objects: any ObjectStore, cache: BlockCache, jobs: JobService?, services: ServiceRunner? = nil,
         logger: Logger) {
        self.store = store; self.objects = objects; self.cache = cache; self.jobs = jobs; self.services = services; self.logger = logger
    }

    /// Archive indexes, made on first use (they need the namespace).
    private let archiveViews = Locked<ArchiveViews?>(nil)
    var archives: ArchiveViews {
        archiveViews.withLock { a in
            if let a { return a }
            let made = ArchiveViews(namespace: self)
            a = made
            return made
        }
    }

    /// Safetensors headers, made on first use (they need the namespace).
    private let tensorHeaders = Locked<TensorHeaders?>(nil)
    var tensors: TensorHeaders {
        tensorHeaders.withLock { t in
            if let t { return t }
            let made = TensorHeaders(namespace: self)
            t = made
            return made
        }
    }

    var writerProbe: any WriterProbe {
        get { probe.withLock { $0 } }
        set { probe.withLock { $0 = newValue } }
    }

    func writer(for inode: UInt64) -> WriterFile? { writers.withLock { $0[inode] } }
    var openWriters: [WriterFile] { writers.withLock { Array($0.values) } }
    func track(_ w: WriterFile) { writers.withLock { $0[w.inode] = w } }
    func untrack(_ w: WriterFile) { writers.withLock { if $0[w.inode] === w { $0[w.inode] = nil } } }

    /// A writer for an upload that has begun, owned by whoever asked.
    func newWriter(_ inode: UInt64, _ upload: any FileUpload, _ ctx: RequestContext) -> Opened {
        let probe = writerProbe
        let w = WriterFile(namespace: self, inode: inode, upload: upload, opener: probe.task(ctx.pid)?.process ?? ctx.pid,
                           created: probe.lastProcessID())
        track(w)
        return Opened(file: w)
    }

    // MARK: Attributes

    func directory(_ node: Node, modified: Double? = nil, links: UInt32 = 2, owner: Ownership? = nil) -> Attributes {
        let modified = modified ?? mountTime
        // models/ and datasets/ are like /tmp: anyone may add, only owners (and root) remove.
        let shared = node == .modelsDir || node == .datasetsDir
        let o = owner ?? Ownership(uid: uid, gid: gid, mode: shared ? 0o1777 : Ownership.defaultModelMode)
        return Attributes(inode: node.inode, isDirectory: true, size: 4096, permissions: o.mode, links: links, modified: modified,
                          changed: modified, uid: o.uid, gid: o.gid, cacheSeconds: Namespace.shortAttributeSeconds)
    }

    /// The top of an archive's view: read-only, and as lasting as its version. It is its
    /// version's (or dataset's): its owner, and `r-x` for whoever may read the file, so a
    /// version whose read bits were taken away shows none of its members either.
    func archiveView(_ owner: ArchiveOwner, modified: Date, ownership: Ownership?) -> Attributes {
        var a = directory(.archive(owner), modified: modified.timeIntervalSince1970)
        let read = (ownership?.mode ?? Ownership.defaultFileMode) & Ownership.readBits
        a.permissions = read | (read >> 2)
        if let ownership { a.uid = ownership.uid; a.gid = ownership.gid }
        a.cacheSeconds = Namespace.readyAttributeSeconds
        // Its name is the version's name without the version's file: an `rm` or `mv` of
        // `v1.zip` cannot tell the kernel about `v1` (an invalidation from inside the request
        // would wait for it), so the kernel asks about the name each time.
        a.nameCacheSeconds = 0
        return a
    }

    func file(_ node: Node, size: Int64, modified: Double, ready: Bool = false, writable: Bool = false, permissions: UInt32? = nil) -> Attributes {
        Attributes(inode: node.inode, isDirectory: false, size: size, permissions: permissions ?? (writable ? 0o644 : 0o444), links: 1,
                   modified: modified, changed: modified, uid: uid, gid: gid,
                   cacheSeconds: ready ? Namespace.readyAttributeSeconds : 0)
    }

    /// A version or dataset: ready files their read bits (`0444` by default) and cached long,
    /// files being written the same plus the owner's write bit, with the size written so far,
    /// failed ones no permission at all (`----------`): there to be looked at with getfattr,
    /// replaced by a new copy or removed, never read. An `annotatable` one (a version: its owner
    /// sets its note) shows its owner's write bit when ready too: the kernel lets only who may write
    /// a file set its `user.*` attributes; every write to it is still refused here (`EEXIST`, `EPERM`).
    /// A file this mount is writing is what its upload's state says (``now(_:status:size:)``).
    func uploadedFile(_ node: Node, status: UploadStatus, size: Int64, modified: Date, owner: Ownership? = nil,
                      annotatable: Bool = false) -> Attributes {
        let (status, size) = now(node, status: status, size: size)
        var a: Attributes
        let read = (owner?.mode ?? Ownership.defaultFileMode) & Ownership.readBits
        switch status {
        case .ready:
            a = file(node, size: size, modified: modified.timeIntervalSince1970, ready: true,
                     permissions: annotatable ? read | 0o200 : read)
        case .uploading:
            a = file(node, size: size, modified: modified.timeIntervalSince1970, permissions: read | 0o200)
        case .failed: a = file(node, size: size, modified: modified.timeIntervalSince1970, permissions: 0)
        }
        if let owner { a.uid = owner.uid; a.gid = owner.gid }
        return a
    }

    /// A file's status and size now: a file this mount is writing is what its upload's state says
    /// (read under the upload's lock, never the row, which says 0 until the end); any other the row's.
    func now(_ node: Node, status: UploadStatus, size: Int64) -> (UploadStatus, Int64) {
        guard let upload = writer(for: node.inode)?.upload.current else { return (status, size) }
        return (upload.status, upload.size)
    }

    /// For what keeps its owner and mode: asking for what it has succeeds, anything else is `EPERM`.
    static func keepOwnership(_ a: Attributes, mode: UInt32?, uid: UInt32?, gid: UInt32?, _ what: String) throws(StoreError) {
        if (mode.map { $0 & 0o7777 != a.permissions } ?? false) || (uid.map { $0 != a.uid } ?? false) || (gid.map { $0 != a.gid } ?? false) {
            throw StoreError(.notPermitted, "\(what) keeps its owner and mode")
        }
    }

    /// What a row from before owners is taken to be: the mount's user's, default mode.
    func defaultOwner(file: Bool) -> Ownership {
        Ownership(uid: uid, gid: gid, mode: file ? Ownership.defaultFileMode : Ownership.defaultModelMode)
    }

    // MARK: Versions and datasets alike

    /// Opens a version or dataset: for reading when ready; a copy onto a failed one (`O_TRUNC`)
    /// writes it again; anything else for writing is refused, as versions never change.
    func openUploaded(_ node: Node, _ file: some StoredFile, flags: OpenFlags, _ ctx: RequestContext,
                      restart: () throws(StoreError) -> any FileUpload) throws(StoreError) -> Opened {
        let name = file.fileName
        if file.status == .failed && flags.wantsWrite && flags.truncates {
            return newWriter(node.inode, try restart(), ctx)
        }
        // O_TRUNC asks to write even with O_RDONLY (the kernel checks write permission for it; a
        // version's owner has that bit, for its note).
        if flags.wantsWrite || flags.truncates {
            if flags.truncates { throw StoreError(.alreadyExists, "\(name) exists; versions never change: write a new version") }
            throw StoreError(.notPermitted, "\(name) cannot be opened for writing: versions never change")
        }
        switch file.status {
        case .ready: break
        case .uploading: throw StoreError(.notReady, "\(name) is still uploading")
        case .failed: throw StoreError(.io, "\(name) failed to upload: \(file.error ?? "unknown error")")
        }
        // A safetensors file's reads fetch whole tensors.
        let layout = file.format == "safetensors" ? TensorHeaders.layout(tensorHeader(of: file)) : nil
        let reader = ObjectReaders.open(store: objects, cache: cache, key: file.objectKey, size: file.size,
                                        id: file.objectIdentity, layout: layout, wholeLoads: true)
        return Opened(file: ReaderFile(reader), keepCache: true)
    }

    /// What a delete answered the node must forget: the cached bytes and the archive views.
    func purge(_ p: Purge) {
        for object in p.objects { cache.forget(object: object) }
        for v in p.versions { archives.forget(.version(v)) }
        for d in p.datasets { archives.forget(.dataset(d)) }
    }

    /// `ftruncate` of a file being written (its writer decides); anything else never changes.
    func truncateUpload(_ node: Node, to size: Int64) throws(StoreError) {
        guard let w = writer(for: node.inode) else { throw StoreError(.notPermitted, "versions never change once written") }
        try w.resize(to: size)
    }

    func common(_ pairs: [(String, String)]) -> [(String, String)] { pairs.map { (Namespace.xattrPrefix + $0.0, $0.1) } }
}
