import Foundation
import ModelStore
import ReadPath
import Registry

/// `datasets/`: one file per dataset, written and read like versions.
final class DatasetsProvider: NamespaceProvider {
    unowned let namespace: Namespace
    let parts: Set<TreePart> = [.datasets]

    init(namespace: Namespace) { self.namespace = namespace }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        guard parent == .datasetsDir else { throw StoreError(.notDirectory, "\(Names.printable(name)): the parent is a file, not a directory") }
        if let (datasetName, format) = try? Formats.splitDataset(name),
           let d = try store.dataset(named: datasetName), d.format == format { return .dataset(d.id) }
        if let d = try store.dataset(named: name), d.hasArchiveView { return .archive(.dataset(d.id)) }
        throw .notFound("no such file: \(Names.printable(name))")
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        guard case .dataset(let id) = node else { return namespace.directory(node) }
        guard let d = try store.dataset(id) else { throw .notFound("dataset \(id) is gone") }
        return namespace.uploadedFile(node, status: d.status, size: d.size, modified: d.modified, owner: d.owner)
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        guard node == .datasetsDir else { throw StoreError(.notDirectory, "not a directory") }
        let datasets = try store.datasets()
        let files = datasets.map { d in
            DirectoryEntry(name: d.fileName, attributes: namespace.uploadedFile(.dataset(d.id), status: d.status, size: d.size, modified: d.modified, owner: d.owner))
        }
        let taken = Set(files.map(\.name))
        return files + datasets.filter { $0.hasArchiveView && !taken.contains($0.name) }.map { d in
            DirectoryEntry(name: d.name, attributes: namespace.archiveView(.dataset(d.id), modified: d.modified, ownership: d.owner))
        }
    }

    func parent(of node: Node) throws(StoreError) -> Node { node == .datasetsDir ? .root : .datasetsDir }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        guard case .dataset(let id) = node else { throw StoreError(.isDirectory, "is a directory") }
        if !flags.wantsWrite { namespace.writer(for: node.inode)?.waitIfClosedEmpty() }
        guard let d = try store.dataset(id) else { throw .notFound("dataset \(id) is gone") }
        return try namespace.openUploaded(node, d, flags: flags, ctx) { () throws(StoreError) in
            try registry.restartFailedDataset(id: id)
        }
    }

    func create(in parent: Node, name rawName: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Node, Opened) {
        guard parent == .datasetsDir else { throw StoreError(.notPermitted, "files can only be created in a model directory or in datasets/") }
        let owner = Ownership(uid: ctx.uid, gid: ctx.gid, mode: Ownership.fileMode(requested: ctx.mode ?? Ownership.defaultFileMode))
        let upload = try registry.beginDataset(fileName: try Names.decode(rawName, what: "file name"), owner: owner)
        guard case .dataset(let d) = upload.item else { preconditionFailure("a dataset upload") }
        let node = Node.dataset(d.id)
        return (node, namespace.newWriter(node.inode, upload, ctx))
    }

    func remove(_ node: Node, named name: String, in parent: Node, directory: Bool, _ ctx: RequestContext) throws(StoreError) {
        guard case .dataset(let id) = node else { throw StoreError(.notPermitted, "\(Names.printable(name)) is part of the mount's layout") }
        if directory { throw StoreError(.notDirectory, "\(Names.printable(name)) is a file") }
        namespace.purge(try store.deleteDataset(id, by: ctx.actor).purge)
    }

    func rename(_ node: Node, from: Node, to: Node, newName: String, _ ctx: RequestContext) throws(StoreError) {
        guard case .dataset(let id) = node else { throw StoreError(.notPermitted, "datasets/ cannot be renamed") }
        guard to == .datasetsDir else { throw StoreError(.crossDevice, "\(describe(node)) cannot move there") }
        guard let d = try store.dataset(id) else { throw .notFound("the dataset is gone") }
        let (newDataset, format) = try Formats.splitDataset(newName)
        guard format == d.format else { throw StoreError(.invalidArgument, "a dataset keeps its format") }
        _ = try store.renameDataset(id, to: newDataset, by: ctx.actor)
    }

    func truncate(_ node: Node, to size: Int64, _ ctx: RequestContext) throws(StoreError) {
        try namespace.truncateUpload(node, to: size)
    }

    func xattrs(of node: Node) throws(StoreError) -> [(String, String)] {
        guard case .dataset(let id) = node else { return [] }
        guard let d = try store.dataset(id) else { throw .notFound("gone") }
        var out = [("status", d.status.rawValue), ("size", "\(d.size)"), ("created", d.created.formatted(.iso8601)),
                   ("note", d.note), ("format", d.format)]
        if let r = d.records { out.append(("records", "\(r)")) }
        if let sha = d.sha256 { out.append(("sha256", sha)) }
        if let e = d.error { out.append(("error", e)) }
        return namespace.common(out)
    }

    func setxattr(_ node: Node, name: String, value: String, _ ctx: RequestContext) throws(StoreError) {
        if try xattrs(of: node).contains(where: { $0.0 == name }) { throw StoreError(.notPermitted, "\(name) is read-only") }
        throw StoreError(.notSupported, "only user.modelfs.type and user.modelfs.note can be set")
    }

    func changeOwnership(_ node: Node, mode: UInt32?, uid: UInt32?, gid: UInt32?, lenient: Bool, _ ctx: RequestContext) throws(StoreError) {
        guard case .dataset(let id) = node else {
            try Namespace.keepOwnership(try attributes(of: node), mode: mode, uid: uid, gid: gid, "datasets/")
            return
        }
        _ = try store.changeOwnership(.dataset(id), mode: lenient ? mode.map(Ownership.fileMode(requested:)) : mode,
                                      uid: uid, gid: gid, defaultOwner: namespace.defaultOwner(file: true), by: ctx.actor)
    }

    /// datasets/ takes new entries; a dataset only until it is ready.
    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool {
        switch node {
        case .datasetsDir: return true
        case .dataset(let id): return try store.dataset(id).map { $0.status != .ready } ?? false
        default: return false
        }
    }

    func describe(_ node: Node) -> String {
        guard case .dataset(let id) = node else { return "datasets" }
        return "datasets/" + (((try? store.dataset(id)) ?? nil).map { Names.printable($0.fileName) } ?? "?")
    }
}
