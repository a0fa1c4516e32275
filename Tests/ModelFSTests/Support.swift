import Foundation
import Glibc
import Testing
@_exported import TestSupport
import ModelStore
import Catalog
import Registry
import ReadPath
import ModelFS

let rootInode: UInt64 = 1

/// Results gathered from several threads.
final class Collected<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}

/// A ``FileSystem`` over a registry with a catalog in a temporary SQLite file, a memory object
/// store (fault injection, counters) and a block cache; no mount.
final class FSEnv: @unchecked Sendable {
    let dir: String
    let catalog: Catalog
    let store = MemoryObjectStore()
    let registry: Registry
    let cache: BlockCache
    let fs: FileSystem
    /// The pid of the process that writes files in these tests.
    static let writerPid: Int32 = 4242

    init(cache: BlockCache = BlockCache(), spoolBytes: Int64? = nil) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-fs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        catalog = try Catalog(path: dir + "/catalog.sqlite")
        registry = Registry(catalog: catalog, objects: store, uploadConcurrency: 2)
        self.cache = cache
        let spoolDir = dir + "/spool"
        let spool = try spoolBytes.map { (cap) throws(StoreError) in try SpoolSpace(directory: spoolDir, capacity: cap) }
        fs = FileSystem(registry: registry, cache: cache, spool: spool)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// The inode of `path` (relative to the mount), walking lookups from the root.
    func inode(_ path: String) throws -> UInt64 {
        var inode = rootInode
        for component in path.split(separator: "/") {
            inode = try fs.lookup(parent: inode, name: bytes(String(component))).inode
        }
        return inode
    }

    /// The parent's inode and the last component of `path`.
    func split(_ path: String) throws -> (UInt64, [UInt8]) {
        let parts = path.split(separator: "/")
        let parent = try inode(parts.dropLast().joined(separator: "/"))
        return (parent, bytes(String(parts.last!)))
    }

    @discardableResult
    func mkdir(_ model: String) throws -> Attributes {
        try fs.mkdir(parent: try inode("models"), name: bytes(model))
    }

    /// Creates `path` for writing by `pid`; returns its inode and handle.
    func create(_ path: String, pid: Int32 = FSEnv.writerPid) throws -> (inode: UInt64, handle: UInt64) {
        let (parent, name) = try split(path)
        let (attributes, opened) = try fs.create(parent: parent, name: name, flags: OpenFlags(O_WRONLY | O_CREAT | O_TRUNC), pid: pid)
        return (attributes.inode, opened.handle)
    }

    @discardableResult
    func write(_ handle: UInt64, at offset: Int64, _ data: ArraySlice<UInt8>) throws(StoreError) -> Int {
        try data.withUnsafeBytes { b in Result { () throws(StoreError) in try fs.write(handle, offset: offset, bytes: b) } }.get()
    }

    /// Writes all of `data` in chunks, from the start.
    func writeAll(_ handle: UInt64, _ data: [UInt8], chunk: Int = 100_000) throws(StoreError) {
        var offset = 0
        while offset < data.count {
            let n = min(chunk, data.count - offset)
            let written = try write(handle, at: Int64(offset), data[offset..<(offset + n)])
            precondition(written == n)
            offset += n
        }
    }

    /// `cp`: create, write, close (flush by the writer, then release). Returns the inode.
    @discardableResult
    func put(_ path: String, _ data: [UInt8], chunk: Int = 100_000) throws -> UInt64 {
        let (inode, handle) = try create(path)
        try writeAll(handle, data, chunk: chunk)
        try fs.flush(handle, pid: FSEnv.writerPid)
        try fs.release(handle)
        return inode
    }

    /// `cat`: open, read in `chunk`s until a short read, release.
    func readAll(_ inode: UInt64, chunk: Int = 128 * KiB) throws -> [UInt8] {
        let handle = try fs.open(inode, flags: OpenFlags(O_RDONLY)).handle
        defer { try? fs.release(handle) }
        var out: [UInt8] = []
        while true {
            let got = try fs.read(handle, offset: Int64(out.count), size: chunk)
            out += got
            if got.count < chunk { return out }
        }
    }

    func xattr(_ inode: UInt64, _ name: String) throws -> String {
        String(decoding: try fs.getxattr(inode, name: "user.modelfs." + name), as: UTF8.self)
    }

    func names(_ inode: UInt64) throws -> [String] { try fs.readdir(inode).map(\.name) }

    /// The model's manifest as stored in the bucket.
    func storedManifest(_ model: String) throws -> Manifest {
        try Manifest.decode(store.get(Rules.manifestKey(model: model), range: nil))
    }

    /// A generated file's content (`.stats`, `.next`).
    func content(_ path: String) throws -> String {
        String(decoding: try readAll(try inode(path), chunk: 64 * KiB), as: UTF8.self)
    }
}

/// Test entry points: the writer as a bare pid (the mount's user), whole reads and listings.
extension FileSystem {
    func create(parent: UInt64, name: [UInt8], flags: OpenFlags,
                pid: Int32) throws(StoreError) -> (Attributes, OpenResult) {
        try create(parent: parent, name: name, flags: flags, RequestContext(uid: getuid(), gid: getgid(), pid: pid))
    }

    func flush(_ handle: UInt64, pid: Int32) throws(StoreError) {
        try flush(handle, RequestContext(uid: getuid(), gid: getgid(), pid: pid))
    }

    func read(_ handle: UInt64, offset: Int64, size: Int) throws(StoreError) -> [UInt8] {
        try readReply(handle, offset: offset, size: size).bytes
    }

    /// What `ls -a` reads of directory `inode`: opendir, pages of `pageSize` entries, releasedir.
    func readdir(_ inode: UInt64, pageSize: Int = 1_000) throws(StoreError) -> [DirectoryEntry] {
        let handle = try opendir(inode)
        defer { releasedir(handle) }
        var entries: [DirectoryEntry] = []
        while true {
            let page = try readdir(handle, offset: Int64(entries.count)).prefix(pageSize)
            if page.isEmpty { return entries }
            entries += page
        }
    }
}
