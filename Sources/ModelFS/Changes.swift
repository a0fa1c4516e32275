import ModelStore

/// What the kernel must forget after another node changed the catalog.
public enum Invalidation: Equatable, Sendable {
    /// A directory's attributes and cached contents.
    case inode(UInt64)
    /// One name in a directory (deleted, renamed, or now naming another file).
    case entry(parent: UInt64, name: String)
}

/// The names this mount has shown in each directory, so that a change notice from another node
/// can tell which of them the kernel may still hold and must drop: a version deleted or renamed
/// on node A disappears from node B's cached lookups at once, not after the entry timeout.
final class ShownNames: Sendable {
    private let shown = Locked<[UInt64: [String: UInt64]]>([:])

    func record(_ parent: UInt64, _ entries: [DirectoryEntry]) {
        let names = Dictionary(entries.filter { $0.name != "." && $0.name != ".." }.map { ($0.name, $0.attributes.inode) },
                               uniquingKeysWith: { a, _ in a })
        shown.withLock { $0[parent] = names }
    }

    func record(_ parent: UInt64, name: String, inode: UInt64) {
        shown.withLock { $0[parent, default: [:]][name] = inode }
    }

    var parents: [UInt64] { shown.withLock { Array($0.keys) } }

    /// Replaces what was shown in `parent` with `now`; returns the shown names that now name
    /// nothing or another file (new names need nothing: no negative entry is ever cached).
    func update(_ parent: UInt64, to now: [String: UInt64]) -> [String] {
        shown.withLock { all in
            let before = all[parent] ?? [:]
            all[parent] = now
            return before.keys.filter { before[$0] != now[$0] }.sorted()
        }
    }
}

extension FileSystem {
    /// The directories a catalog change notice (see ``CatalogEngine/watchChanges(_:)``) touches.
    func directories(for notice: String) -> [Node] {
        if notice.hasPrefix("versions:"), let id = Int64(notice.dropFirst("versions:".count)) { return [.model(ModelID(id))] }
        switch notice {
        case "models": return [.modelsDir]
        case "datasets": return [.datasetsDir]
        case "jobs": return [.jobsDir]
        case "services": return [.servicesDir]
        default: return shownNames.parents.compactMap { Node(inode: $0) } + [.modelsDir, .datasetsDir, .jobsDir, .servicesDir]
        }
    }

    /// What the kernel must forget after `notice`: each touched directory, and each name in it
    /// that was shown and now names nothing or another file.
    public func catalogChanged(_ notice: String) -> [Invalidation] {
        // Another node moved an alias or changed a service: the services this mount runs look now.
        if notice.hasPrefix("versions:") || notice == "services" { namespace.services?.poke() }
        var out: [Invalidation] = []
        var seen = Set<UInt64>()
        for dir in directories(for: notice) where seen.insert(dir.inode).inserted {
            let now: [String: UInt64]
            if let entries = try? listing(dir.inode) {
                now = Dictionary(entries.filter { $0.name != "." && $0.name != ".." }.map { ($0.name, $0.attributes.inode) },
                                 uniquingKeysWith: { a, _ in a })
            } else {
                now = [:]  // the directory itself is gone (a deleted model)
            }
            out.append(.inode(dir.inode))
            for name in shownNames.update(dir.inode, to: now) { out.append(.entry(parent: dir.inode, name: name)) }
        }
        return out
    }
}

extension FileSystem {
    /// Drops what deletes left in this mount's caches (see ``Namespace/purge(_:)``): applied for
    /// every delete, whichever process or node made it (`modelfs version rm` too), by the mount's
    /// purge follower; the deletes this mount makes purge at once from the port's answer.
    public func purge(_ purge: Purge) { namespace.purge(purge) }
}
