import Archive
import Foundation
import ModelStore
import ReadPath

/// An archive's index as a view walks it: members by path and by directory.
final class LoadedArchive: Sendable {
    let owner: ArchiveOwner
    let objectKey: String
    let sha256: String
    let size: Int64
    let index: ArchiveIndex?
    /// Why the archive has no view (it cannot be read as one), or what its view leaves out.
    private let indexError: String?
    let byPath: [String: Int]
    let children: [String: [Int]]
    /// Zip members' data offsets, read from their local headers on first open.
    let dataOffsets = Locked<[Int: Int64]>([:])
    /// The verdicts on members' bytes, from their reads (CRC-32, deflate streams).
    private let checks = Locked<[Int: MemberCheck]>([:])

    init(owner: ArchiveOwner, objectKey: String, sha256: String, size: Int64, index: ArchiveIndex?, error: String?) {
        self.owner = owner; self.objectKey = objectKey; self.sha256 = sha256; self.size = size; self.index = index
        indexError = index?.summary ?? error
        var byPath: [String: Int] = [:]
        var children: [String: [Int]] = [:]
        for (i, m) in (index?.members ?? []).enumerated() where i <= Node.maxMemberIndex {
            byPath[m.path] = i
            children[m.parent, default: []].append(i)
        }
        self.byPath = byPath
        self.children = children
    }

    func member(_ i: Int) -> ArchiveMember? {
        guard let members = index?.members, i >= 0, i < members.count else { return nil }
        return members[i]
    }

    /// The shared verdict on member `i`'s bytes.
    func check(_ i: Int, _ m: ArchiveMember) -> MemberCheck {
        checks.withLock { all in
            if let c = all[i] { return c }
            let c = MemberCheck(size: m.size, expected: index?.kind == .zip ? m.crc32 : nil, failure: index?.damage)
            all[i] = c
            return c
        }
    }

    /// What the view leaves out, and the members whose reads found them damaged (one damage of
    /// the whole `.tar.gz` is said once, not for each member).
    var error: String? {
        var parts = indexError.map { [$0] } ?? []
        if index?.damage == nil {
            let failed = checks.withLock { all in all.compactMap { i, c in c.failure.map { (i, $0) } } }.sorted { $0.0 < $1.0 }
            let damaged = failed.compactMap { i, reason in member(i).map { "\(Names.printable($0.path)): \(reason)" } }
            if !damaged.isEmpty {
                parts.append("\(damaged.count) member(s) damaged: " + damaged.prefix(20).joined(separator: "; "))
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }
}

/// The object bytes of a ready version or dataset that is an archive.
struct ArchiveObject: Sendable {
    var owner: ArchiveOwner
    var name: String
    var kind: ArchiveKind
    var key: String
    var size: Int64
    var sha256: String
    var modified: Date
    /// The version's or dataset's owner and mode, for the view's top.
    var ownership: Ownership? = nil
    /// The cache's name for its bytes.
    var identity: UInt64

    init(owner: ArchiveOwner, file: some StoredFile, kind: ArchiveKind) {
        self.owner = owner; name = file.fileName; self.kind = kind; key = file.objectKey; size = file.size
        sha256 = file.sha256 ?? file.objectKey; modified = file.modified; ownership = file.owner; identity = file.objectIdentity
    }
}

/// Reads through an object reader as a ``ByteSource``, a MiB at a time.
struct ReaderSource: ByteSource {
    let reader: any ObjectReader
    let size: Int64

    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var at = max(0, offset)
        let end = min(size, offset + Int64(count))
        while at < end {
            let piece = try reader.read(offset: at, size: Int(min(Int64(1 << 20), end - at))).bytes
            if piece.isEmpty { break }
            out += piece
            at += Int64(piece.count)
        }
        return out
    }
}

/// The indexes of the archives the mount shows as directories: from memory, else from the
/// catalog, else built from the object's bytes (a ranged read of a zip's end; one pass over a
/// tar's headers) and stored in the catalog for every node.
final class ArchiveViews: Sendable {
    unowned let namespace: Namespace
    private let loaded = Locked<[ArchiveOwner: LoadedArchive]>([:])
    /// One build at a time: eight ranks opening one new archive build its index once.
    private let building = NSLock()
    static let keep = 64

    /// Compressed members inflated whole into the disk cache, when the mount has one.
    let inflated: InflatedMembers?

    init(namespace: Namespace) {
        self.namespace = namespace
        inflated = namespace.cache.disk.map { InflatedMembers(disk: $0) }
    }

    /// The ready archive behind `owner`, or nil when it is not one (any more).
    func object(_ owner: ArchiveOwner) throws(StoreError) -> ArchiveObject? {
        let store = namespace.store
        switch owner {
        case .version(let id):
            guard let v = try store.version(id), v.status == .ready, let kind = ArchiveKind(format: v.format) else { return nil }
            return ArchiveObject(owner: owner, file: v, kind: kind)
        case .dataset(let id):
            guard let d = try store.dataset(id), d.status == .ready, let kind = ArchiveKind(format: d.format) else { return nil }
            return ArchiveObject(owner: owner, file: d, kind: kind)
        }
    }

    /// When each owner's row was last read: `ls -lR` of 10,000 members asks about the owner for
    /// every one of them, and a second's staleness is what the rest of the tree has too.
    private let checked = Locked<[ArchiveOwner: (object: ArchiveObject, at: ContinuousClock.Instant)]>([:])
    static let recheckAfter: Duration = .seconds(1)

    /// The archive's index, its view gone (`ENOENT`) once the version is (within a second).
    func archive(_ owner: ArchiveOwner) throws(StoreError) -> (ArchiveObject, LoadedArchive) {
        let now = ContinuousClock.now
        if let recent = checked.withLock({ $0[owner] }), now - recent.at < ArchiveViews.recheckAfter,
           let hit = loaded.withLock({ $0[owner] }), hit.objectKey == recent.object.key, hit.sha256 == recent.object.sha256 {
            return (recent.object, hit)
        }
        guard let object = try object(owner) else {
            checked.withLock { $0[owner] = nil }
            throw .notFound("the archive is gone")
        }
        checked.withLock { all in
            if all.count >= 4 * ArchiveViews.keep { all.removeAll() }
            all[owner] = (object, now)
        }
        if let hit = loaded.withLock({ $0[owner] }), hit.objectKey == object.key, hit.sha256 == object.sha256 { return (object, hit) }
        building.lock()
        defer { building.unlock() }
        if let hit = loaded.withLock({ $0[owner] }), hit.objectKey == object.key, hit.sha256 == object.sha256 { return (object, hit) }
        let archive = try load(object)
        loaded.withLock { all in
            if all.count >= ArchiveViews.keep, let victim = all.keys.first { all[victim] = nil }
            all[owner] = archive
        }
        return (object, archive)
    }

    /// The archive's index if memory or the catalog has it; never reads the archive (for xattrs of
    /// the version's file, which must answer while object storage is down).
    func known(_ owner: ArchiveOwner) throws(StoreError) -> LoadedArchive? {
        guard let object = try object(owner) else { return nil }
        if let hit = loaded.withLock({ $0[owner] }), hit.objectKey == object.key, hit.sha256 == object.sha256 { return hit }
        guard let stored = try namespace.store.archiveIndex(objectKey: object.key, sha256: object.sha256, size: object.size) else { return nil }
        let index = stored.body.flatMap { ArchiveIndex.decodeCurrent(Array($0.utf8)) }
        if index == nil && stored.body != nil { return nil }  // of an older format: the next access builds it again
        return LoadedArchive(owner: owner, objectKey: object.key, sha256: object.sha256, size: object.size, index: index, error: stored.error)
    }

    /// Forgets what this mount knows of an archive whose version or dataset it just deleted.
    func forget(_ owner: ArchiveOwner) {
        checked.withLock { $0[owner] = nil }
        loaded.withLock { $0[owner] = nil }
    }

    private func load(_ object: ArchiveObject) throws(StoreError) -> LoadedArchive {
        let store = namespace.store
        if let stored = try store.archiveIndex(objectKey: object.key, sha256: object.sha256, size: object.size) {
            // An index of an older format is built again (and replaces it) by the rules of this one.
            let index = stored.body.flatMap { ArchiveIndex.decodeCurrent(Array($0.utf8)) }
            if index != nil || (stored.error != nil && stored.body == nil) {
                return LoadedArchive(owner: object.owner, objectKey: object.key, sha256: object.sha256, size: object.size,
                                     index: index, error: stored.error)
            }
        }
        let source = ReaderSource(reader: reader(object), size: object.size)
        var index: ArchiveIndex?
        var failure: String?
        do { index = try ArchiveIndex.build(object.kind, source) } catch {
            // Object storage down is no verdict on the archive: nothing is stored, the next open tries again.
            if error.unreadable { throw StoreError(.io, "\(object.name): \(error.reason)") }
            failure = error.reason
        }
        let body = index.map { String(decoding: $0.encoded(), as: UTF8.self) }
        do {
            try store.storeArchiveIndex(objectKey: object.key, StoredArchiveIndex(sha256: object.sha256, size: object.size, body: body, error: failure))
        } catch {
            namespace.logger.warning("index of \(object.name) not stored: \(error)")
        }
        if let failure { namespace.logger.info("\(object.name) is shown as a file only: \(failure)") }
        return LoadedArchive(owner: object.owner, objectKey: object.key, sha256: object.sha256, size: object.size, index: index, error: failure)
    }

    /// The whole object's reader: members share its blocks.
    func reader(_ object: ArchiveObject) -> any ObjectReader {
        ObjectReaders.open(store: namespace.registry.objects, cache: namespace.cache, key: object.key, size: object.size,
                           id: object.identity)
    }

    /// A reader of one member's bytes, checked as it is read (``VerifyingReader``).
    func open(_ object: ArchiveObject, _ archive: LoadedArchive, member i: Int) throws(StoreError) -> any ObjectReader {
        guard let m = archive.member(i), !m.isDirectory else { throw StoreError(.isDirectory, "is a directory") }
        let name = "\(object.name): \(Names.printable(m.path))"
        let check = archive.check(i, m)
        if let failure = check.failure { throw StoreError(.io, "\(name): \(failure)") }
        let base = reader(object)
        var start = m.dataOffset ?? archive.dataOffsets.withLock { $0[i] }
        if start == nil {
            do { start = try ZipReader.dataOffset(of: m, in: ReaderSource(reader: base, size: object.size)) } catch {
                if !error.unreadable { check.fail(error.reason) }
                throw StoreError(.io, "\(object.name): \(m.path): \(error.reason)")
            }
            archive.dataOffsets.withLock { $0[i] = start }
        }
        if m.method != .stored, let whole = inflatedReader(object, archive, m, start: start!, check: check, name: name, base: base) {
            return whole
        }
        let member: any ObjectReader
        switch m.method {
        case .stored where m.path.hasSuffix(".safetensors"):
            // A stored safetensors member: its reads fetch whole tensors, at their place in the object.
            let parsed = tensorHeader(object, m, start: start!, base: base)
            let tensorReader = ObjectReaders.open(store: namespace.registry.objects, cache: namespace.cache, key: object.key, size: object.size,
                                                  id: object.identity,
                                                  layout: TensorHeaders.layout(parsed, start: start!))
            member = SliceReader(tensorReader, start: start!, size: m.size)
        case .stored: member = SliceReader(base, start: start!, size: m.size)
        case .deflated:
            member = InflatingReader(base, start: start!, storedSize: m.storedSize, size: m.size, name: name, check: check)
        case .inflatedStream:
            member = InflatingReader(base, objectSize: object.size, points: archive.index?.points ?? [], origin: start!, size: m.size,
                                     name: name, compressedEnd: compressedEnd(object, archive, start!, m))
        }
        return check.verified ? member : VerifyingReader(member, check: check, name: name)
    }
}

extension ArchiveViews {
    /// A compressed member's reader from its inflated file in the disk cache (filled once, in
    /// order, whatever order it is read in); nil without a disk cache, for a small member, or
    /// when the cache has no room for it.
    func inflatedReader(_ object: ArchiveObject, _ archive: LoadedArchive, _ m: ArchiveMember, start: Int64, check: MemberCheck,
                        name: String, base: any ObjectReader) -> (any ObjectReader)? {
        guard let inflated, m.size >= inflated.smallest else { return nil }
        let id = InflatedMembers.id(sha256: object.sha256, objectSize: object.size, path: m.path, start: start, size: m.size,
                                    crc32: archive.index?.kind == .zip ? m.crc32 : nil)
        switch m.method {
        case .deflated:
            let member = InflatedMembers.Member(id: id, name: name, size: m.size, crc32: archive.index?.kind == .zip ? m.crc32 : nil,
                                                exact: true, check: check)
            return inflated.reader(member, compressed: SliceReader(base, start: start, size: m.storedSize), compressedSize: m.storedSize)
        case .inflatedStream:
            let point = (archive.index?.points ?? []).filter { $0.uncompressed <= start }.max { $0.uncompressed < $1.uncompressed }
            let member = InflatedMembers.Member(id: id, name: name, size: m.size, crc32: nil, exact: false, origin: start, point: point,
                                                check: check)
            let capped = SliceReader(base, start: 0, size: object.size, aheadEnd: compressedEnd(object, archive, start, m))
            return inflated.reader(member, compressed: capped, compressedSize: object.size)
        case .stored:
            return nil
        }
    }

    /// About where a `.tar.gz` member's compressed bytes end: its reader prefetches no further.
    func compressedEnd(_ object: ArchiveObject, _ archive: LoadedArchive, _ start: Int64, _ m: ArchiveMember) -> Int64 {
        GzipSpans.compressedEnd(of: start..<(start + m.size), points: archive.index?.points ?? [],
                                inflatedSize: archive.index?.inflatedSize, objectSize: object.size)
    }

    /// The header of a `*.safetensors` member starting at `start` of the object.
    func tensorHeader(_ object: ArchiveObject, _ m: ArchiveMember, start: Int64, base: any ObjectReader) -> TensorHeaders.Parsed {
        namespace.tensors.header(key: object.key, member: m.path, sha256: object.sha256, size: object.size,
                                 source: ReaderSource(reader: SliceReader(base, start: start, size: m.size), size: m.size))
    }

    /// The same for a member of any method (a deflated one is inflated for its header).
    func tensorHeader(_ object: ArchiveObject, _ archive: LoadedArchive, member i: Int) throws(StoreError) -> TensorHeaders.Parsed {
        guard let m = archive.member(i) else { throw .notFound("no such member") }
        let reader = try open(object, archive, member: i)
        return namespace.tensors.header(key: object.key, member: m.path, sha256: object.sha256, size: object.size,
                                        source: ReaderSource(reader: reader, size: m.size))
    }
}

extension Version {
    /// A ready zip or tar: shown as a directory too, named as the version.
    var hasArchiveView: Bool { status == .ready && ArchiveKind(format: format) != nil }
}

extension Dataset {
    var hasArchiveView: Bool { status == .ready && ArchiveKind(format: format) != nil }
}
