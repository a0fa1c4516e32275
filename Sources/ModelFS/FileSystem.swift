import Catalog
import Dispatch
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
}

/// The mounted namespace on top of the registry: `models/<model>/<version>.<ext>`,
/// `datasets/<name>.<ext>`, `jobs/`, `.stats`. Knows nothing of FUSE: every operation takes
/// and returns plain values and throws ``StoreError``, so it is tested without a mount.
public final class FileSystem: @unchecked Sendable {
    public let registry: Registry
    public let cache: BlockCache
    let logger: Logger
    let uid: UInt32
    let gid: UInt32
    let mountTime = Date().timeIntervalSince1970

    /// Immutable ready files: the kernel may keep their attributes for long.
    static let readyAttributeSeconds = 3600.0
    /// Directories and anything still changing.
    static let shortAttributeSeconds = 1.0

    private let lock = NSLock()
    private var handles: [UInt64: OpenFile] = [:]
    private var nextHandle: UInt64 = 1
    /// The writer of each uploading inode, for `truncate` by path.
    private var writers: [UInt64: Writer] = [:]

    /// Training jobs behind `jobs/`; nil when the mount runs none.
    public let jobs: JobService?
    /// Tells who still holds a file being written, and whether a closing task is dying.
    private var probe: any WriterProbe = BlindWriterProbe()
    var writerProbe: any WriterProbe {
        get { lock.withLock { probe } }
        set { lock.withLock { probe = newValue } }
    }

    /// Called once the mount is live, when `/proc` can tell which descriptors refer to it.
    public func mounted(at mountpoint: String) {
        if let real = ProcWriterProbe(mountpoint: mountpoint) { writerProbe = real }
        else { logger.warning("cannot find \(mountpoint) in /proc/self/mountinfo: uploads complete at the creating process's close") }
    }

    /// Where files whose writer seeks back are held until closed; nil refuses such writes.
    let spool: SpoolSpace?

    public init(registry: Registry, cache: BlockCache, jobs: JobService? = nil, spool: SpoolSpace? = nil,
                logger: Logger = Logger(label: "modelfs.fs")) {
        self.jobs = jobs
        self.spool = spool
        self.registry = registry
        self.cache = cache
        self.logger = logger
        uid = getuid()
        gid = getgid()
    }

    var catalog: Catalog { registry.catalog }

    // MARK: Names → nodes

    private func decode(_ name: [UInt8]) throws(StoreError) -> String {
        guard let s = String(validating: name, as: UTF8.self) else { throw .notFound("not a name this store has") }
        return s
    }

    public func lookup(parent: UInt64, name rawName: [UInt8]) throws(StoreError) -> Attributes {
        let name = try decode(rawName)
        return try attributes(of: try child(of: try node(parent), named: name))
    }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        let missing = StoreError.notFound("no such file: \(Names.printable(name))")
        switch parent {
        case .root:
            switch name {
            case "models": return .modelsDir
            case "datasets": return .datasetsDir
            case "jobs": return .jobsDir
            case ".stats": return .stats
            default: throw missing
            }
        case .modelsDir:
            guard let m = try catalog.model(named: name) else { throw missing }
            return .model(m.id)
        case .model(let modelID):
            if name == ".next" {
                guard try catalog.model(id: modelID) != nil else { throw missing }
                return .next(modelID)
            }
            if Names.isScratch(name) {
                guard let v = try catalog.version(modelID: modelID, name: name), v.isScratch else { throw missing }
                return .version(v.id)
            }
            guard let (versionName, format) = try? Formats.splitVersion(name),
                  let v = try catalog.version(modelID: modelID, name: versionName), v.format == format else { throw missing }
            return .version(v.id)
        case .jobsDir:
            if name == "submit" { return .submit }
            guard let job = try catalog.job(id: name) else { throw missing }
            return .job(job.number)
        case .job(let number):
            guard let file = JobFile(rawValue: name), try catalog.job(number: number) != nil else { throw missing }
            return .jobFile(number, file)
        case .datasetsDir:
            guard let (datasetName, format) = try? Formats.splitDataset(name),
                  let d = try catalog.dataset(named: datasetName), d.format == format else { throw missing }
            return .dataset(d.id)
        default:
            if !parent.isDirectory { throw StoreError(.notDirectory, "\(Names.printable(name)): the parent is a file, not a directory") }
            throw missing
        }
    }

    func node(_ inode: UInt64) throws(StoreError) -> Node {
        guard let n = Node(inode: inode) else { throw .notFound("no inode \(inode)") }
        return n
    }

    /// The path of an inode inside the mount, for log lines; best effort.
    public func describe(_ inode: UInt64) -> String {
        guard let n = Node(inode: inode) else { return "inode \(inode)" }
        switch n {
        case .root: return "."
        case .modelsDir: return "models"
        case .datasetsDir: return "datasets"
        case .jobsDir: return "jobs"
        case .stats: return ".stats"
        case .submit: return "jobs/submit"
        case .model(let id): return "models/" + (((try? catalog.model(id: id)) ?? nil).map { Names.printable($0.name) } ?? "?")
        case .next(let id): return describe(Node.model(id).inode) + "/.next"
        case .version(let id):
            guard let v = (try? catalog.version(id: id)) ?? nil else { return "models/?/version \(id)" }
            return describe(Node.model(v.modelID).inode) + "/" + Names.printable(v.fileName)
        case .dataset(let id): return "datasets/" + (((try? catalog.dataset(id: id)) ?? nil).map { Names.printable($0.fileName) } ?? "?")
        case .job(let number): return "jobs/" + (((try? catalog.job(number: number)) ?? nil)?.id ?? "\(number)")
        case .jobFile(let number, let file): return describe(Node.job(number).inode) + "/" + file.rawValue
        }
    }

    // MARK: Attributes

    public func getattr(_ inode: UInt64) throws(StoreError) -> Attributes {
        try attributes(of: try node(inode))
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        func dir(_ modified: Double = mountTime, links: UInt32 = 2) -> Attributes {
            Attributes(inode: node.inode, isDirectory: true, size: 4096, permissions: 0o755, links: links, modified: modified,
                       changed: modified, uid: uid, gid: gid, cacheSeconds: FileSystem.shortAttributeSeconds)
        }
        // A failed file shows no permission at all (`----------`): it is there to be looked at
        // with getfattr, replaced by a new copy or removed, never read.
        func file(size: Int64, modified: Double, ready: Bool, writable: Bool = false, failed: Bool = false) -> Attributes {
            Attributes(inode: node.inode, isDirectory: false, size: size, permissions: failed ? 0 : writable ? 0o644 : 0o444, links: 1,
                       modified: modified, changed: modified, uid: uid, gid: gid,
                       cacheSeconds: ready ? FileSystem.readyAttributeSeconds : 0)
        }
        switch node {
        case .root: return dir(links: 5)
        case .modelsDir, .datasetsDir, .jobsDir: return dir()
        case .stats:
            return file(size: Int64(try statsContent().count), modified: Date().timeIntervalSince1970, ready: false)
        case .model(let id):
            guard let m = try catalog.model(id: id) else { throw .notFound("model \(id) is gone") }
            return dir(m.modified.timeIntervalSince1970)
        case .next(let modelID):
            guard try catalog.model(id: modelID) != nil else { throw .notFound("model \(modelID) is gone") }
            return file(size: Int64(try nextContent(modelID).count), modified: Date().timeIntervalSince1970, ready: false)
        case .version(let id):
            guard let v = try catalog.version(id: id) else { throw .notFound("version \(id) is gone") }
            let size = v.status == .uploading ? (writer(for: node.inode)?.upload.bytesWritten ?? v.size) : v.size
            return file(size: size, modified: v.modified.timeIntervalSince1970, ready: v.status == .ready, writable: v.status == .uploading,
                        failed: v.status == .failed)
        case .submit:
            var a = file(size: 0, modified: mountTime, ready: false, writable: true)
            a.permissions = 0o666
            return a
        case .job(let number):
            guard let job = try catalog.job(number: number) else { throw .notFound("job \(number) is gone") }
            return dir(job.created.timeIntervalSince1970)
        case .jobFile(let number, let which):
            guard let job = try catalog.job(number: number) else { throw .notFound("job \(number) is gone") }
            let modified = (job.finished ?? job.started ?? job.created).timeIntervalSince1970
            switch which {
            case .control:
                var a = file(size: 0, modified: modified, ready: false, writable: true)
                a.permissions = 0o200
                return a
            case .log:
                return file(size: fileSize(jobs?.logPath(of: job.id)), modified: Date().timeIntervalSince1970, ready: false)
            case .spec, .status:
                return file(size: Int64(try jobContent(job, which).count), modified: modified, ready: false)
            }
        case .dataset(let id):
            guard let d = try catalog.dataset(id: id) else { throw .notFound("dataset \(id) is gone") }
            let size = d.status == .uploading ? (writer(for: node.inode)?.upload.bytesWritten ?? d.size) : d.size
            return file(size: size, modified: d.modified.timeIntervalSince1970, ready: d.status == .ready, writable: d.status == .uploading,
                        failed: d.status == .failed)
        }
    }

    // MARK: Directories

    public func readdir(_ inode: UInt64) throws(StoreError) -> [DirectoryEntry] {
        let n = try node(inode)
        var entries = [DirectoryEntry(name: ".", attributes: try attributes(of: n))]
        entries.append(DirectoryEntry(name: "..", attributes: try attributes(of: n == .root ? .root : parentOf(n))))
        switch n {
        case .root:
            for (name, child) in [("models", Node.modelsDir), ("datasets", .datasetsDir), ("jobs", .jobsDir), (".stats", .stats)] {
                entries.append(DirectoryEntry(name: name, attributes: try attributes(of: child)))
            }
        case .modelsDir:
            for m in try catalog.models() {
                entries.append(DirectoryEntry(name: m.name, attributes: try attributes(of: .model(m.id))))
            }
        case .model(let id):
            // One query for the whole listing: `ls -l` of 1,000 versions stays one SQLite read.
            for v in try catalog.versions(modelID: id) {
                var a = try attributes(of: .version(v.id))
                if v.status != .uploading { a.size = v.size }
                entries.append(DirectoryEntry(name: v.fileName, attributes: a))
            }
        case .datasetsDir:
            for d in try catalog.datasets() {
                entries.append(DirectoryEntry(name: d.fileName, attributes: try attributes(of: .dataset(d.id))))
            }
        case .jobsDir:
            entries.append(DirectoryEntry(name: "submit", attributes: try attributes(of: .submit)))
            for job in try catalog.jobs() {
                entries.append(DirectoryEntry(name: job.id, attributes: try attributes(of: .job(job.number))))
            }
        case .job(let number):
            for file in JobFile.allCases {
                entries.append(DirectoryEntry(name: file.rawValue, attributes: try attributes(of: .jobFile(number, file))))
            }
        default:
            throw StoreError(.notDirectory, "not a directory")
        }
        return entries
    }

    func parentOf(_ n: Node) throws(StoreError) -> Node {
        switch n {
        case .modelsDir, .datasetsDir, .jobsDir, .stats, .root: return .root
        case .model: return .modelsDir
        case .dataset: return .datasetsDir
        case .version(let id):
            guard let v = try catalog.version(id: id) else { throw .notFound("version \(id) is gone") }
            return .model(v.modelID)
        case .next(let modelID): return .model(modelID)
        case .submit, .job: return .jobsDir
        case .jobFile(let number, _): return .job(number)
        }
    }

    // MARK: Generated files

    func statsContent() throws(StoreError) -> [UInt8] {
        let s = try registry.stats()
        let c = cache.counters
        let lines = [
            "models: \(s.models)",
            "models.text: \(s.modelsByType["text"] ?? 0)",
            "models.image: \(s.modelsByType["image"] ?? 0)",
            "models.general: \(s.modelsByType["general"] ?? 0)",
            "versions: \(s.versions)",
            "versions.ready: \(s.readyVersions)",
            "bytes: \(s.bytes)",
            "datasets: \(s.datasets)",
            "datasets.bytes: \(s.datasetBytes)",
            "s3.bytes_fetched: \(c.bytesFetched)",
            "s3.get_requests: \(c.requests)",
            "cache.bytes: \(c.bytesCached)",
            "cache.block_hits: \(c.blockHits)",
            "cache.block_misses: \(c.blockMisses)",
            "disk_cache.bytes: \(c.diskBytesUsed)",
            "disk_cache.bytes_served: \(c.diskBytesServed)",
            "disk_cache.blocks_dropped: \(c.diskBlocksDropped)",
        ]
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    func nextContent(_ modelID: Int64) throws(StoreError) -> [UInt8] {
        guard try catalog.model(id: modelID) != nil else { throw .notFound("model \(modelID) is gone") }
        return Array((Rules.nextVersion(after: try catalog.versions(modelID: modelID).map(\.name)) + "\n").utf8)
    }

    func fileSize(_ path: String?) -> Int64 {
        var st = stat()
        guard let path, lstat(path, &st) == 0 else { return 0 }
        return Int64(st.st_size)
    }

    func jobContent(_ job: Job, _ which: JobFile) throws(StoreError) -> [UInt8] {
        switch which {
        case .status:
            return Array((job.status.rawValue + "\n").utf8)
        case .spec:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            return Array((try? encoder.encode(job)) ?? Data()) + [0x0A]
        default:
            return []
        }
    }

    // MARK: Open files

    enum OpenFile {
        case reader(Reader)
        case writer(Writer)
        case content([UInt8])
        case submission(Submission)
        case log(String)
        case control(String)
    }

    /// One open of `jobs/submit`: the request as it arrives, and the answer a read returns.
    final class Submission: @unchecked Sendable {
        let lock = NSLock()
        var request: [UInt8] = []
        var answer: [UInt8] = []
        var done = false
    }

    final class Reader: @unchecked Sendable {
        let object: UInt64
        let key: String
        let size: Int64
        let lock = NSLock()
        /// Nothing ahead of the kernel's readahead for the first 4 MiB of a run: one tensor or
        /// one zip member costs what the kernel asks for, not a window more.
        var prefetcher = Prefetcher(startAfter: 4 << 20)
        /// The object's own file when the store keeps one (the local store): reads are served
        /// from it directly, so its page cache is the only cache and nothing is copied twice.
        let localFile: Int32

        init(object: UInt64, key: String, size: Int64, localPath: String?) {
            self.object = object; self.key = key; self.size = size
            var fd: Int32 = -1
            if let localPath {
                fd = Glibc.open(localPath, O_RDONLY | O_CLOEXEC)
                var st = stat()
                // A file that is not the recorded size goes through the checked path, which says EIO.
                if fd >= 0, fstat(fd, &st) != 0 || Int64(st.st_size) != size { close(fd); fd = -1 }
                // FUSE hands reads over out of order across threads; a wider readahead on the
                // object file keeps the disk ahead of them.
                if fd >= 0 { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }
            }
            localFile = fd
        }

        deinit { if localFile >= 0 { close(localFile) } }
    }

    final class Writer: @unchecked Sendable {
        let inode: UInt64
        let upload: ItemUpload
        /// The process (thread group) that created the file: its threads are one writer.
        let opener: Int32
        /// The last process id when the file was created: only processes created since can have
        /// inherited its descriptor.
        let created: Int32
        let lock = NSLock()
        /// The creating process closed its descriptor before writing anything and nobody could tell
        /// who else holds it: the upload ends at `release`, which the kernel sends just after that
        /// `close()` returns.
        var closedEmpty = false
        /// Signalled once the upload ended, for readers that arrive in between.
        let ended = DispatchSemaphore(value: 0)
        init(inode: UInt64, upload: ItemUpload, opener: Int32, created: Int32) {
            self.inode = inode; self.upload = upload; self.opener = opener; self.created = created
        }
    }

    private func register(_ file: OpenFile) -> UInt64 {
        lock.withLock {
            let h = nextHandle
            nextHandle += 1
            handles[h] = file
            if case .writer(let w) = file { writers[w.inode] = w }
            return h
        }
    }

    private func openFile(_ handle: UInt64) throws(StoreError) -> OpenFile {
        guard let f = lock.withLock({ handles[handle] }) else { throw StoreError(.badDescriptor, "no open file \(handle)") }
        return f
    }

    private func writer(for inode: UInt64) -> Writer? { lock.withLock { writers[inode] } }

    public func open(_ inode: UInt64, flags: OpenFlags, _ ctx: RequestContext = .mountOwner) throws(StoreError) -> OpenResult {
        let n = try node(inode)
        switch n {
        case .stats, .next:
            if flags.wantsWrite { throw StoreError(.notPermitted, "generated files are read-only") }
            let content = n == .stats ? try statsContent() : try nextContent({ if case .next(let id) = n { return id }; return 0 }())
            return OpenResult(handle: register(.content(content)), keepCache: false, directIO: true)
        case .submit:
            guard jobs != nil else { throw StoreError(.notSupported, "this mount runs no jobs: mount with --train-command") }
            // Jobs run as the mount's user: until they run as the one who asks, only that user
            // (or root) may start one.
            guard ctx.uid == uid || ctx.uid == 0 else {
                logger.warning("job request from uid \(ctx.uid) (pid \(ctx.pid)) refused: jobs run as uid \(uid)")
                throw StoreError(.accessDenied, "jobs run as the mount's user (uid \(uid)); uid \(ctx.uid) may not submit them")
            }
            return OpenResult(handle: register(.submission(Submission())), keepCache: false, directIO: true)
        case .jobFile(let number, let which):
            guard let job = try catalog.job(number: number) else { throw .notFound("job \(number) is gone") }
            switch which {
            case .control:
                guard flags.wantsWrite else { throw StoreError(.notPermitted, "control is written to: echo cancel > control") }
                return OpenResult(handle: register(.control(job.id)), keepCache: false, directIO: true)
            case .log:
                if flags.wantsWrite { throw StoreError(.notPermitted, "the log is written by the job") }
                return OpenResult(handle: register(.log(jobs?.logPath(of: job.id) ?? "/dev/null")), keepCache: false, directIO: true)
            case .spec, .status:
                if flags.wantsWrite { throw StoreError(.notPermitted, "\(which.rawValue) is read-only") }
                return OpenResult(handle: register(.content(try jobContent(job, which))), keepCache: false, directIO: true)
            }
        case .version(let id):
            waitForEmptyClose(inode, flags: flags)
            guard let v = try catalog.version(id: id) else { throw .notFound("version \(id) is gone") }
            if v.status == .failed && flags.wantsWrite && flags.truncates {
                return try reopenForWriting(inode, try registry.restartFailedVersion(id: id), ctx)
            }
            try checkReadable(status: v.status, error: v.error, name: v.fileName, flags: flags)
            return OpenResult(handle: register(.reader(Reader(object: ObjectIdentity.id(sha256: v.sha256 ?? v.objectKey, size: v.size), key: v.objectKey, size: v.size,
                                                                  localPath: registry.objects.localFile(v.objectKey)))), keepCache: true, directIO: false)
        case .dataset(let id):
            waitForEmptyClose(inode, flags: flags)
            guard let d = try catalog.dataset(id: id) else { throw .notFound("dataset \(id) is gone") }
            if d.status == .failed && flags.wantsWrite && flags.truncates {
                return try reopenForWriting(inode, try registry.restartFailedDataset(id: id), ctx)
            }
            try checkReadable(status: d.status, error: d.error, name: d.fileName, flags: flags)
            return OpenResult(handle: register(.reader(Reader(object: ObjectIdentity.id(sha256: d.sha256 ?? d.objectKey, size: d.size), key: d.objectKey, size: d.size,
                                                                  localPath: registry.objects.localFile(d.objectKey)))), keepCache: true, directIO: false)
        default:
            throw StoreError(.isDirectory, "is a directory")
        }
    }

    private func newWriter(_ inode: UInt64, _ upload: ItemUpload, _ ctx: RequestContext) -> Writer {
        let probe = writerProbe
        return Writer(inode: inode, upload: upload, opener: probe.task(ctx.pid)?.process ?? ctx.pid, created: probe.lastProcessID())
    }

    /// `cp` onto a failed version or dataset writes it again (same name, same inode).
    private func reopenForWriting(_ inode: UInt64, _ upload: ItemUpload, _ ctx: RequestContext) throws(StoreError) -> OpenResult {
        OpenResult(handle: register(.writer(newWriter(inode, upload, ctx))), keepCache: false, directIO: false)
    }

    /// `cp` of an empty file returns before the kernel's asynchronous `release` completes the
    /// upload; a reader right behind it waits a moment for that instead of getting `EAGAIN`.
    private func waitForEmptyClose(_ inode: UInt64, flags: OpenFlags) {
        guard !flags.wantsWrite, let w = writer(for: inode), w.lock.withLock({ w.closedEmpty }) else { return }
        _ = w.ended.wait(timeout: .now() + 5)
        w.ended.signal()
    }

    /// Only ready files open, and only for reading: versions never change once written.
    private func checkReadable(status: UploadStatus, error: String?, name: String, flags: OpenFlags) throws(StoreError) {
        if flags.wantsWrite {
            if flags.truncates { throw StoreError(.alreadyExists, "\(name) exists; versions never change: write a new version") }
            throw StoreError(.notPermitted, "\(name) cannot be opened for writing: versions never change")
        }
        switch status {
        case .ready: return
        case .uploading: throw StoreError(.notReady, "\(name) is still uploading")
        case .failed: throw StoreError(.io, "\(name) failed to upload: \(error ?? "unknown error")")
        }
    }

    /// Creates a version (in a model directory) or a dataset (in `datasets/`) and opens it for writing.
    public func create(parent: UInt64, name rawName: [UInt8], flags: OpenFlags, pid: Int32) throws(StoreError) -> (Attributes, OpenResult) {
        try create(parent: parent, name: rawName, flags: flags, RequestContext(uid: uid, gid: gid, pid: pid))
    }

    public func create(parent: UInt64, name rawName: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Attributes, OpenResult) {
        if rawName == Array(".next".utf8) { throw StoreError(.notPermitted, ".next is generated") }
        if case .model(let modelID) = try node(parent), let scratch = String(validating: rawName, as: UTF8.self), Names.isScratch(scratch) {
            guard let m = try catalog.model(id: modelID) else { throw .notFound("model is gone") }
            let upload = try registry.beginScratchVersion(model: m.name, fileName: scratch)
            let inode = Node.version(upload.version!.id).inode
            let handle = register(.writer(newWriter(inode, upload, ctx)))
            return (try attributes(of: try node(inode)), OpenResult(handle: handle, keepCache: false, directIO: false))
        }
        let fileName = try Names.decode(rawName, what: "file name")
        let upload: ItemUpload
        let inode: UInt64
        switch try node(parent) {
        case .model(let modelID):
            guard let m = try catalog.model(id: modelID) else { throw .notFound("model is gone") }
            if fileName == ".next" { throw StoreError(.notPermitted, ".next is generated") }
            upload = try registry.beginVersion(model: m.name, fileName: fileName)
            inode = Node.version(upload.version!.id).inode
        case .datasetsDir:
            upload = try registry.beginDataset(fileName: fileName)
            guard case .dataset(let d) = upload.item else { preconditionFailure() }
            inode = Node.dataset(d.id).inode
        case .modelsDir:
            throw StoreError(.notPermitted, "models/ holds model directories: mkdir models/\(Names.printable(fileName)) first")
        default:
            throw StoreError(.notPermitted, "files can only be created in a model directory or in datasets/")
        }
        let handle = register(.writer(newWriter(inode, upload, ctx)))
        return (try attributes(of: try node(inode)), OpenResult(handle: handle, keepCache: false, directIO: false))
    }

    /// What a read returns, in the form that costs the fewest copies to reply with.
    public enum ReadReply: Sendable {
        case bytes([UInt8])
        /// Straight from the block cache's memory.
        case cached(CachedBytes)
        /// `count` bytes of an open file at `offset` (the local store's object file), which the
        /// FUSE layer can splice to the kernel.
        case file(descriptor: Int32, offset: Int64, count: Int)

        /// The bytes in one array (tests and callers that want them).
        public var bytes: [UInt8] {
            switch self {
            case .bytes(let b): return b
            case .cached(let c): return c.bytes
            case .file(let fd, let offset, let count):
                return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                    var done = 0
                    while done < count {
                        let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { break }
                        done += n
                    }
                    initialized = done
                }
            }
        }
    }

    public func read(_ handle: UInt64, offset: Int64, size: Int) throws(StoreError) -> [UInt8] {
        try readReply(handle, offset: offset, size: size).bytes
    }

    public func readReply(_ handle: UInt64, offset: Int64, size: Int) throws(StoreError) -> ReadReply {
        switch try openFile(handle) {
        case .content(let bytes):
            let lower = Int(min(max(offset, 0), Int64(bytes.count)))
            return .bytes(Array(bytes[lower..<min(lower + size, bytes.count)]))
        case .writer:
            throw StoreError(.notReady, "the file is still being written")
        case .submission(let sub):
            let answer = sub.lock.withLock { sub.answer }
            let lower = Int(min(max(offset, 0), Int64(answer.count)))
            return .bytes(Array(answer[lower..<min(lower + size, answer.count)]))
        case .log(let path):
            return .bytes(readFile(path, offset: offset, size: size))
        case .control:
            return .bytes([])
        case .reader(let r):
            if r.localFile >= 0 {
                let lower = min(max(offset, 0), r.size)
                let count = Int(min(Int64(size), r.size - lower))
                cache.countDirect(bytes: count)
                return .file(descriptor: r.localFile, offset: lower, count: count)
            }
            let ahead = r.lock.withLock { r.prefetcher.plan(offset: offset, length: size, size: r.size) }
            let objects = registry.objects
            let key = r.key
            return .cached(try cache.read(object: r.object, size: r.size, range: offset..<(offset + Int64(size)), ahead: ahead) {
                (range, buffer) throws(StoreError) -> Int in
                do throws(ObjectStoreError) { return try objects.get(key, range: range, into: buffer) } catch {
                    // The version was deleted (by the CLI, another mount) while this file was open.
                    if case .notFound = error { throw StoreError(.stale, "\(key) was deleted while it was open") }
                    throw error.storeError
                }
            })
        }
    }

    /// Appends to a file being created. Anything but the next byte after what was written aborts
    /// the upload (the version becomes `failed`) and is refused with `EINVAL`.
    public func write(_ handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer, _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Int {
        let file = try openFile(handle)
        if case .submission(let sub) = file { return try submit(sub, bytes) }
        if case .control(let id) = file {
            let word = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard word == "cancel" else { throw StoreError(.invalidArgument, "write cancel to control") }
            try jobs?.cancel(id)
            return bytes.count
        }
        guard case .writer(let w) = file else { throw StoreError(.badDescriptor, "not open for writing") }
        return try locked(w.lock) { () throws(StoreError) -> Int in
            if w.upload.isEnded {
                if let failure = w.upload.failure { throw failure }
                throw StoreError(.badDescriptor, "\(w.upload.item.displayName) is already complete: its last close completed it")
            }
            try w.upload.write(bytes, at: offset, spool: spool)
            return bytes.count
        }
    }

    /// `close()` of one file descriptor (also the kernel closing the files of a process that
    /// exits). The upload completes at the close of the last descriptor that refers to the file,
    /// so a descriptor shared with a child never completes it early; a close that comes from a
    /// process dying of a signal fails it instead, since what it wrote is not what it meant to.
    /// Every close after the upload failed reports the failure, on whichever thread it comes.
    public func flush(_ handle: UInt64, _ ctx: RequestContext) throws(StoreError) {
        let file = try openFile(handle)
        if case .submission(let sub) = file {
            // A request without a final newline is taken when the file is closed.
            try locked(sub.lock) { () throws(StoreError) in
                if !sub.done && !sub.request.isEmpty { try process(sub) }
            }
            return
        }
        guard case .writer(let w) = file else { return }
        let probe = writerProbe
        try locked(w.lock) { () throws(StoreError) in
            if let failure = w.upload.failure { throw failure }
            if w.upload.isEnded { return }
            let closer = probe.task(ctx.pid)
            let process = closer?.process ?? ctx.pid
            switch probe.holders(of: w.inode, among: [w.opener, process], createdAfter: w.created) {
            case .some(let others) where others > 0:
                return
            case .some:
                break
            case .none:
                // Nobody can tell who else holds it: the creating process's close completes, once
                // it wrote something (a shell's copy of a redirected descriptor writes nothing).
                guard process == w.opener else { return }
                guard w.upload.bytesWritten > 0 else { w.closedEmpty = true; return }
            }
            if let signal = closer?.killedBy {
                let reason = "the writer (pid \(process)) was killed by signal \(signal) after \(w.upload.bytesWritten) bytes: the file is incomplete"
                logger.warning("\(w.upload.item.displayName): \(reason)")
                w.upload.abort(reason: reason, code: .io)
                throw StoreError(.io, reason)
            }
            try finish(w)
        }
    }

    public func flush(_ handle: UInt64, pid: Int32) throws(StoreError) {
        try flush(handle, RequestContext(uid: uid, gid: gid, pid: pid))
    }

    /// The last close of an open file: completes an upload no close could (the last reference was
    /// a mapping or a descriptor in flight), where an error can only be logged.
    public func release(_ handle: UInt64) throws(StoreError) {
        guard let file = lock.withLock({ handles.removeValue(forKey: handle) }) else { return }
        guard case .writer(let w) = file else { return }
        defer { lock.withLock { if writers[w.inode] === w { writers[w.inode] = nil } } }
        try locked(w.lock) { () throws(StoreError) in try finish(w) }
    }

    /// Unmount or SIGTERM of the mount: uploads still open can never complete, so they fail now
    /// (their multipart uploads aborted) rather than stay `uploading`.
    public func abortOpenUploads(reason: String) {
        let open = lock.withLock { Array(writers.values) }
        for w in open {
            w.lock.withLock {
                guard !w.upload.isEnded else { return }
                logger.warning("\(w.upload.item.displayName): \(reason)")
                w.upload.abort(reason: reason, code: .io)
            }
        }
    }

    private func finish(_ w: Writer) throws(StoreError) {
        defer { if w.upload.isEnded { w.ended.signal() } }
        do { try w.upload.finish() } catch {
            logger.warning("\(w.upload.item.displayName): \(error.message)")
            throw error
        }
    }

    /// Appends to a request; a complete one (ending in a newline, or a whole JSON object) is
    /// submitted at once, so a bad request fails this very `write()`.
    private func submit(_ sub: Submission, _ bytes: UnsafeRawBufferPointer) throws(StoreError) -> Int {
        try locked(sub.lock) { () throws(StoreError) -> Int in
            guard !sub.done else { throw StoreError(.invalidArgument, "one request per open: open jobs/submit again") }
            sub.request.append(contentsOf: bytes)
            if sub.request.count > JobRequest.maxBytes {
                sub.done = true
                let error = StoreError(.invalidArgument, "the request is over \(JobRequest.maxBytes) bytes")
                sub.answer = Array("error: \(error.message)\n".utf8)
                throw error
            }
            let text = String(decoding: sub.request, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            let complete = sub.request.last == 0x0A
                || (text.hasPrefix("{") && (try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil)
            if complete { try process(sub) }
            return bytes.count
        }
    }

    private func process(_ sub: Submission) throws(StoreError) {
        sub.done = true
        do throws(StoreError) {
            guard let jobs else { throw StoreError(.notSupported, "this mount runs no jobs") }
            let job = try jobs.submit(try JobRequest.parse(sub.request))
            sub.answer = Array((job.id + "\n").utf8)
        } catch {
            sub.answer = Array("error: \(error.message)\n".utf8)
            logger.info("job request refused: \(error.message)")
            throw error
        }
    }

    private func readFile(_ path: String, offset: Int64, size: Int) -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: size)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, off_t(offset)) }
        return n > 0 ? Array(out[0..<n]) : []
    }

    // MARK: Changing the namespace

    public func mkdir(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Attributes {
        let name = try Names.decode(rawName, what: "model name")
        guard try node(parent) == .modelsDir else {
            throw StoreError(.notPermitted, "directories can only be created in models/ (one per model)")
        }
        let m = try registry.createModel(name)
        return try attributes(of: .model(m.id))
    }

    public func rmdir(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        let name = try decode(rawName)
        let parentNode = try node(parent)
        guard parentNode == .modelsDir else {
            _ = try child(of: parentNode, named: name)
            throw StoreError(.notPermitted, "\(Names.printable(name)) is part of the mount's layout")
        }
        guard let m = try catalog.model(named: name) else { throw .notFound("no model named \(Names.printable(name))") }
        let versions = try catalog.versions(modelID: m.id)
        try registry.deleteModel(name)
        for v in versions { cache.forget(object: ObjectIdentity.id(sha256: v.sha256 ?? v.objectKey, size: v.size)) }
    }

    public func unlink(parent: UInt64, name rawName: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        let name = try decode(rawName)
        let target = try child(of: try node(parent), named: name)
        switch target {
        case .version(let id):
            guard let v = try catalog.version(id: id), let m = try catalog.model(id: v.modelID) else { throw .notFound("gone") }
            try registry.deleteVersion(m.name, v.name)
            cache.forget(object: ObjectIdentity.id(sha256: v.sha256 ?? v.objectKey, size: v.size))
        case .dataset(let id):
            guard let d = try catalog.dataset(id: id) else { throw .notFound("gone") }
            try registry.deleteDataset(d.name)
            cache.forget(object: ObjectIdentity.id(sha256: d.sha256 ?? d.objectKey, size: d.size))
        default:
            throw StoreError(.notPermitted, "\(Names.printable(name)) cannot be removed")
        }
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
        switch (source, from, to) {
        case (.model(let id), .modelsDir, .modelsDir):
            guard let m = try catalog.model(id: id) else { throw .notFound("gone") }
            try registry.renameModel(m.name, to: newName)
        case (.version(let id), .model(let fromModel), .model(let toModel)):
            guard fromModel == toModel else { throw StoreError(.crossDevice, "a version cannot move to another model") }
            guard let v = try catalog.version(id: id), let m = try catalog.model(id: v.modelID) else { throw .notFound("gone") }
            let (newVersion, format) = try Formats.splitVersion(newName)
            if v.isScratch {
                // An atomic writer's temporary file renamed onto the name it meant: now a version.
                try registry.adoptScratch(m.name, v.name, as: newVersion, format: format)
                return
            }
            guard format == v.format else {
                throw StoreError(.invalidArgument, "a version keeps its format: \(v.fileName) cannot become \(Names.printable(newName))")
            }
            try registry.renameVersion(m.name, v.name, to: newVersion)
        case (.dataset(let id), .datasetsDir, .datasetsDir):
            guard let d = try catalog.dataset(id: id) else { throw .notFound("gone") }
            let (newDataset, format) = try Formats.splitDataset(newName)
            guard format == d.format else { throw StoreError(.invalidArgument, "a dataset keeps its format") }
            try registry.renameDataset(d.name, to: newDataset)
        case (.version, _, _), (.dataset, _, _), (.model, _, _):
            throw StoreError(.crossDevice, "\(Names.printable(name)) cannot move there")
        default:
            throw StoreError(.notPermitted, "\(Names.printable(name)) cannot be renamed")
        }
    }

    /// `truncate`, `chmod`, `chown`, `utimens`. Times are accepted and ignored (so `cp -p` and
    /// `touch` work); modes, owners and sizes never change, except a size equal to what an open
    /// writer has written. Any other size on a file being written aborts it.
    public func setattr(_ inode: UInt64, size: Int64?, mode: UInt32?, owner: Bool, _ ctx: RequestContext = .mountOwner) throws(StoreError) -> Attributes {
        let n = try node(inode)
        // A file still being written takes a chmod or chown as a no-op; a written one accepts
        // only the mode it already has (rsync sets it after writing), and refuses any change.
        if (mode != nil || owner) && writer(for: inode) == nil {
            let current = try attributes(of: n)
            if owner || mode.map({ $0 & 0o7777 != current.permissions }) ?? false {
                throw StoreError(.notPermitted, "modes and owners are fixed")
            }
        }
        if let size {
            guard let w = writer(for: inode) else {
                throw StoreError(.notPermitted, "versions never change once written")
            }
            try locked(w.lock) { () throws(StoreError) in try w.upload.resize(to: size, spool: spool) }
        }
        return try attributes(of: n)
    }

    // MARK: Extended attributes

    static let prefix = "user.modelfs."

    public func listxattr(_ inode: UInt64) throws(StoreError) -> [String] {
        try xattrs(try node(inode)).map { $0.0 }
    }

    public func getxattr(_ inode: UInt64, name: String) throws(StoreError) -> [UInt8] {
        // `ls -l` asks every file for security.selinux and system.posix_acl_access. "Not supported"
        // (rather than "no such attribute") is the truth, and `ls` then stops asking for the rest
        // of the directory: two round trips per listing instead of two per file.
        guard name.hasPrefix("user.") else { throw StoreError(.notSupported, "\(name): only user.* attributes exist here") }
        guard name.hasPrefix(FileSystem.prefix) else { throw StoreError(.noAttribute, "no attribute \(name)") }
        guard let value = try xattrs(try node(inode)).first(where: { $0.0 == name })?.1 else {
            throw StoreError(.noAttribute, "no attribute \(name)")
        }
        return Array(value.utf8)
    }

    private func xattrs(_ n: Node) throws(StoreError) -> [(String, String)] {
        switch n {
        case .model(let id):
            guard let m = try catalog.model(id: id) else { throw .notFound("gone") }
            return [("type", m.type.rawValue), ("note", m.note), ("created", m.created.formatted(.iso8601)),
                    ("versions", "\(try catalog.versions(modelID: id).count)")].map { (FileSystem.prefix + $0.0, $0.1) }
        case .version(let id):
            guard let v = try catalog.version(id: id) else { throw .notFound("gone") }
            var out = [("status", v.status.rawValue), ("size", "\(v.size)"), ("created", v.created.formatted(.iso8601)),
                       ("note", v.note), ("format", v.format)]
            if let sha = v.sha256 { out.append(("sha256", sha)) }
            if let e = v.error { out.append(("error", e)) }
            if let p = v.lineage.parentVersion { out.append(("parent_version", p)) }
            if let d = v.lineage.dataset { out.append(("dataset", d)) }
            if let j = v.lineage.job { out.append(("job", j)) }
            return out.map { (FileSystem.prefix + $0.0, $0.1) }
        case .dataset(let id):
            guard let d = try catalog.dataset(id: id) else { throw .notFound("gone") }
            var out = [("status", d.status.rawValue), ("size", "\(d.size)"), ("created", d.created.formatted(.iso8601)),
                       ("note", d.note), ("format", d.format)]
            if let r = d.records { out.append(("records", "\(r)")) }
            if let sha = d.sha256 { out.append(("sha256", sha)) }
            if let e = d.error { out.append(("error", e)) }
            return out.map { (FileSystem.prefix + $0.0, $0.1) }
        default:
            return []
        }
    }

    /// Sets `user.modelfs.type` (models) or `user.modelfs.note` (models, versions).
    public func setxattr(_ inode: UInt64, name: String, value: [UInt8], _ ctx: RequestContext = .mountOwner) throws(StoreError) {
        guard let text = String(validating: value, as: UTF8.self) else { throw StoreError(.invalidArgument, "values are UTF-8 text") }
        let n = try node(inode)
        switch (n, name) {
        case (.model(let id), FileSystem.prefix + "type"):
            guard let m = try catalog.model(id: id) else { throw .notFound("gone") }
            try registry.setModel(m.name, type: try ModelType(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)))
        case (.model(let id), FileSystem.prefix + "note"):
            guard let m = try catalog.model(id: id) else { throw .notFound("gone") }
            try registry.setModel(m.name, note: text)
        case (.version(let id), FileSystem.prefix + "note"):
            guard let v = try catalog.version(id: id), let m = try catalog.model(id: v.modelID) else { throw .notFound("gone") }
            try registry.setVersionNote(m.name, v.name, note: text)
        default:
            if try xattrs(n).contains(where: { $0.0 == name }) {
                throw StoreError(.notPermitted, "\(name) is read-only")
            }
            throw StoreError(.notSupported, "only user.modelfs.type and user.modelfs.note can be set")
        }
    }

    // MARK: The file system as a whole

    public struct Usage: Sendable { public var bytes: Int64; public var files: Int64 }

    public func statfs() throws(StoreError) -> Usage {
        let s = try registry.stats()
        return Usage(bytes: s.bytes + s.datasetBytes, files: Int64(s.versions + s.datasets + s.models))
    }
}

/// `NSLock.withLock` with typed throws.
func locked<T>(_ lock: NSLock, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
    lock.lock()
    defer { lock.unlock() }
    return try body()
}
