import Archive
import Foundation
import ModelStore
import ReadPath

/// The inside of archives: `models/X/v1/` beside `v1.zip` (and `datasets/D/` beside `D.tar`), a
/// read-only tree of the archive's members. The view's name is the version's (or dataset's)
/// name; it exists while the version is ready, and follows its renames and its delete.
final class ArchivesProvider: NamespaceProvider {
    unowned let namespace: Namespace
    let parts: Set<TreePart> = [.archives]
    var views: ArchiveViews { namespace.archives }

    init(namespace: Namespace) { self.namespace = namespace }

    static let readOnly = StoreError(.readOnly, "the inside of an archive is read-only: it is a view of the version's bytes")

    /// The member path a directory node stands for ("" for the top).
    private func directoryPath(_ node: Node, _ archive: LoadedArchive) throws(StoreError) -> String {
        switch node {
        case .archive: return ""
        case .member(_, let i):
            guard let m = archive.member(i) else { throw .notFound("no such member") }
            guard m.isDirectory else { throw StoreError(.notDirectory, "\(Names.printable(m.name)) is a file") }
            return m.path
        default: throw .notFound("not in an archive")
        }
    }

    private func owner(_ node: Node) throws(StoreError) -> ArchiveOwner {
        switch node {
        case .archive(let o), .member(let o, _): return o
        default: throw .notFound("not in an archive")
        }
    }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        let (_, archive) = try views.archive(try owner(parent))
        let path = try directoryPath(parent, archive)
        guard let i = archive.byPath[path.isEmpty ? name : path + "/" + name] else {
            throw .notFound("no member \(Names.printable(name)) in the archive")
        }
        return .member(archive.owner, i)
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        if case .archive(let o) = node {
            // The top of the view is the version's row: `ls -l models/X` needs no index (nor
            // object storage, which may be down).
            guard let object = try views.object(o) else { throw .notFound("the archive is gone") }
            return namespace.archiveView(o, modified: object.modified, ownership: object.ownership)
        }
        let (object, archive) = try views.archive(try owner(node))
        guard case .member(_, let i) = node, let m = archive.member(i) else { throw .notFound("no such member") }
        return attributes(node, m, object.ownership)
    }

    /// A member is its version's: the version's owner, and the version's read bits (`r-x` for a
    /// directory), whatever modes the archive recorded (`zipfile.writestr` gives `0600`), so
    /// whoever may read the version reads each of its members, and no one else does.
    private func attributes(_ node: Node, _ m: ArchiveMember, _ ownership: Ownership?) -> Attributes {
        let read = (ownership?.mode ?? Ownership.defaultFileMode) & Ownership.readBits
        var a: Attributes
        if m.isDirectory {
            a = namespace.directory(node, modified: m.modified)
            a.permissions = read | (read >> 2)
            a.cacheSeconds = Namespace.readyAttributeSeconds
        } else {
            a = namespace.file(node, size: m.size, modified: m.modified, ready: true, permissions: read)
        }
        if let ownership { a.uid = ownership.uid; a.gid = ownership.gid }
        return a
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        let (object, archive) = try views.archive(try owner(node))
        let path = try directoryPath(node, archive)
        return (archive.children[path] ?? []).compactMap { i in
            archive.member(i).map { DirectoryEntry(name: $0.name, attributes: attributes(.member(archive.owner, i), $0, object.ownership)) }
        }
    }

    func parent(of node: Node) throws(StoreError) -> Node {
        switch node {
        case .archive(.version(let id)):
            guard let v = try store.version(id) else { throw .notFound("version \(id) is gone") }
            return .model(v.modelID)
        case .archive(.dataset): return .datasetsDir
        case .member(let o, let i):
            let (_, archive) = try views.archive(o)
            guard let m = archive.member(i) else { throw .notFound("no such member") }
            if m.parent.isEmpty { return .archive(o) }
            guard let p = archive.byPath[m.parent] else { return .archive(o) }
            return .member(o, p)
        default: return .root
        }
    }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        guard case .member(let o, let i) = node else { throw StoreError(.isDirectory, "is a directory") }
        let (object, archive) = try views.archive(o)
        guard let m = archive.member(i) else { throw .notFound("no such member") }
        if m.isDirectory { throw StoreError(.isDirectory, "\(Names.printable(m.name)) is a directory") }
        if flags.wantsWrite { throw ArchivesProvider.readOnly }
        return Opened(file: ReaderFile(try views.open(object, archive, member: i)), keepCache: true)
    }

    func create(in parent: Node, name: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Node, Opened) {
        throw ArchivesProvider.readOnly
    }

    func mkdir(in parent: Node, name: String, _ ctx: RequestContext) throws(StoreError) -> Node { throw ArchivesProvider.readOnly }

    func remove(_ node: Node, named name: String, in parent: Node, directory: Bool, _ ctx: RequestContext) throws(StoreError) {
        if case .archive = node {
            throw StoreError(.readOnly, "\(Names.printable(name))/ is the view of an archive version: rm the version's file to delete it")
        }
        throw ArchivesProvider.readOnly
    }

    func rename(_ node: Node, from: Node, to: Node, newName: String, _ ctx: RequestContext) throws(StoreError) {
        if case .archive = node { throw StoreError(.readOnly, "the view follows its version: rename the version's file") }
        throw ArchivesProvider.readOnly
    }

    func truncate(_ node: Node, to size: Int64, _ ctx: RequestContext) throws(StoreError) { throw ArchivesProvider.readOnly }

    func xattrs(of node: Node) throws(StoreError) -> [(String, String)] {
        let (_, archive) = try views.archive(try owner(node))
        switch node {
        case .member(_, let i):
            guard let m = archive.member(i) else { throw .notFound("no such member") }
            var out = [("member", m.path)]
            if !m.isDirectory {
                out += [("size", "\(m.size)"), ("compression", m.method.rawValue), ("stored_size", "\(m.storedSize)")]
                if let crc = m.crc32 { out.append(("crc32", String(format: "%08x", crc))) }
                if let failure = archive.check(i, m).failure { out.append(("archive_error", failure)) }
                if m.path.hasSuffix(".safetensors") {
                    let (object, _) = try views.archive(try owner(node))
                    // A damaged member has no header to show (its reads are EIO); its xattrs still answer.
                    if let parsed = try? views.tensorHeader(object, archive, member: i) { out += TensorHeaders.xattrs(parsed) }
                }
            }
            return namespace.common(out)
        default:
            var out = [("members", "\(archive.index?.members.count ?? 0)")]
            if let e = archive.error { out.append(("archive_error", e)) }
            return namespace.common(out)
        }
    }

    func setxattr(_ node: Node, name: String, value: String, _ ctx: RequestContext) throws(StoreError) { throw ArchivesProvider.readOnly }

    func describe(_ node: Node) -> String {
        guard let o = try? owner(node) else { return "archive" }
        let top: String
        switch o {
        case .version(let id):
            if let v = (try? store.version(id)) ?? nil, let m = (try? store.model(v.modelID)) ?? nil {
                top = "models/\(Names.printable(m.name))/\(Names.printable(v.name))"
            } else { top = "models/?/version \(id)" }
        case .dataset(let id):
            top = "datasets/" + ((((try? store.dataset(id)) ?? nil).map { Names.printable($0.name) }) ?? "?")
        }
        if case .member(_, let i) = node, let (_, archive) = try? views.archive(o), let m = archive.member(i) {
            return top + "/" + Names.printable(m.path)
        }
        return top
    }
}
