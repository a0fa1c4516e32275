import Foundation
import ModelStore
import ReadPath

/// `models/`: one directory per model, one file per version, `.next`, and atomic writers'
/// temporary files (`.tmpXYZ`) until they are renamed onto a version's name.
final class ModelsProvider: NamespaceProvider {
    unowned let namespace: Namespace
    let parts: Set<TreePart> = [.models]

    init(namespace: Namespace) { self.namespace = namespace }

    /// The name each alias had when it was looked up. `ln -sfn` renames a new link onto an
    /// alias, which removes the old one's row; a path walk that found the old one just before
    /// still ends, at the alias of that name now (`alias(_:)`), as a replaced file stays readable.
    private let lookedUpAliases = Locked([AliasID: (model: ModelID, name: String)]())

    func alias(_ id: AliasID) throws(StoreError) -> Alias? {
        if let a = try store.alias(id) { return a }
        guard let seen = lookedUpAliases.withLock({ $0[id] }) else { return nil }
        return try store.alias(in: seen.model, named: seen.name)
    }

    func child(of parent: Node, named name: String) throws(StoreError) -> Node {
        let missing = StoreError.notFound("no such file: \(Names.printable(name))")
        switch parent {
        case .modelsDir:
            guard let m = try store.model(named: name) else { throw missing }
            return .model(m.id)
        case .model(let modelID):
            if name == ".next" {
                guard try store.model(modelID) != nil else { throw missing }
                return .next(modelID)
            }
            if Names.isScratch(name) {
                guard let v = try store.version(in: modelID, named: name), v.isScratch else { throw missing }
                return .version(v.id)
            }
            if let (versionName, format) = try? Formats.splitVersion(name),
               let v = try store.version(in: modelID, named: versionName), v.format == format { return .version(v.id) }
            // `v1/` beside `v1.zip`: the archive's view. Before links: no link hides a version's view
            // (version names never start with @; a link from before @-only names may be called `v8`).
            if !name.hasPrefix("@"), let v = try store.version(in: modelID, named: name), v.hasArchiveView {
                return .archive(.version(v.id))
            }
            if let a = try store.alias(in: modelID, named: name) {
                lookedUpAliases.withLock { seen in
                    if seen.count > 4096 { seen.removeAll() }  // bounded: only the last moments matter
                    seen[a.id] = (modelID, name)
                }
                return .alias(a.id)
            }
            throw missing
        default:
            throw StoreError(.notDirectory, "\(Names.printable(name)): the parent is a file, not a directory")
        }
    }

    func attributes(of node: Node) throws(StoreError) -> Attributes {
        switch node {
        case .model(let id):
            guard let m = try store.model(id) else { throw .notFound("model \(id) is gone") }
            return namespace.directory(node, modified: m.modified.timeIntervalSince1970, owner: m.owner)
        case .next(let modelID):
            return namespace.file(node, size: Int64(try nextContent(modelID).count), modified: Date().timeIntervalSince1970)
        case .version(let id):
            guard let v = try store.version(id) else { throw .notFound("version \(id) is gone") }
            return namespace.uploadedFile(node, status: v.status, size: v.size, modified: v.modified, owner: v.owner,
                                          annotatable: true)
        case .alias(let id):
            guard let a = try alias(id) else { throw .notFound("alias \(id) is gone") }
            return link(a, target: try readlink(node))
        default:
            return namespace.directory(node)
        }
    }

    /// An alias as `ls -l` shows it: `@production -> v3.safetensors`. Its name is looked up each
    /// time, so a moved alias is followed at once.
    private func link(_ a: Alias, target: String) -> Attributes {
        var attributes = namespace.file(.alias(a.id), size: Int64(target.utf8.count), modified: a.modified.timeIntervalSince1970,
                                        permissions: 0o777)
        attributes.isSymlink = true
        attributes.cacheSeconds = 0
        attributes.nameCacheSeconds = 0
        return attributes
    }

    func readlink(_ node: Node) throws(StoreError) -> String {
        guard case .alias(let id) = node else { throw StoreError(.invalidArgument, "not a symbolic link") }
        guard let a = try alias(id), let v = try store.version(a.versionID) else { throw .notFound("alias \(id) is gone") }
        return v.linkTarget(view: a.view)
    }

    /// `ln -s v3.safetensors @production` in a model directory: alias `@production` of v3. The
    /// target is a version's file name in the same directory (`./` allowed), an archive version's
    /// view (`ln -s v1 @production`: the directory `from_pretrained` loads), or another alias
    /// (what it names now). Links are aliases only, named `@something` (or ln's temporary name).
    func symlink(in parent: Node, name: String, target: String, _ ctx: RequestContext) throws(StoreError) -> Node {
        guard case .model(let modelID) = parent else {
            throw StoreError(.notPermitted, "links can only be made in a model directory, as aliases of its versions (ln -s v3.zip @production)")
        }
        try Names.checkLinkName(name)
        let sameNamed = try store.version(in: modelID, named: name)
        if sameNamed != nil || (try? child(of: parent, named: name)) != nil {
            throw StoreError.exists("\(Names.printable(name)) exists")
        }
        var file = target.hasPrefix("./") ? String(target.dropFirst(2)) : target
        if file.hasSuffix("/") { file.removeLast() }
        let refused = StoreError(.invalidArgument, "an alias points at a version of its own model, by its file name: \(Names.printable(target)) is none")
        var found: (versionID: VersionID, view: Bool)?
        if let (versionName, format) = try? Formats.splitVersion(file), let v = try store.version(in: modelID, named: versionName),
           v.format == format {
            found = (v.id, false)
        } else if file.hasPrefix("@"), let a = try store.alias(in: modelID, named: file) {
            found = (a.versionID, a.view)
        } else if let v = try store.version(in: modelID, named: file), v.hasArchiveView {
            found = (v.id, true)
        }
        guard let found else { throw refused }
        let made = try store.linkAlias(in: modelID, named: name, to: found.versionID, view: found.view, by: ctx.actor)
        namespace.services?.poke()  // a service following the alias moves now, not at its next look
        return .alias(made.id)
    }

    func entries(of node: Node) throws(StoreError) -> [DirectoryEntry] {
        switch node {
        case .modelsDir:
            return try store.models().map { m in
                DirectoryEntry(name: m.name, attributes: namespace.directory(.model(m.id), modified: m.modified.timeIntervalSince1970, owner: m.owner))
            }
        case .model(let id):
            // One query for the whole listing: `ls -l` of 1,000 versions stays one SQLite read.
            let versions = try store.versions(of: id)
            let files = versions.map { v in
                var a = namespace.uploadedFile(.version(v.id), status: v.status, size: v.size, modified: v.modified,
                                               owner: v.owner, annotatable: true)
                if v.status != .uploading { a.size = v.size }
                return DirectoryEntry(name: v.fileName, attributes: a)
            }
            let taken = Set(files.map(\.name))
            let views = versions.filter { $0.hasArchiveView && !taken.contains($0.name) }.map { v in
                DirectoryEntry(name: v.name, attributes: namespace.archiveView(.version(v.id), modified: v.modified, ownership: v.owner))
            }
            let byID = Dictionary(versions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            // A name once: a link from before @-only names never lists over a version's view.
            let shown = taken.union(views.map(\.name))
            let links = try store.aliases(of: id).filter { !shown.contains($0.name) }.compactMap { a in
                byID[a.versionID].map {
                    DirectoryEntry(name: a.name, attributes: link(a, target: $0.linkTarget(view: a.view)))
                }
            }
            return files + views + links
        default:
            throw StoreError(.notDirectory, "not a directory")
        }
    }

    func parent(of node: Node) throws(StoreError) -> Node {
        switch node {
        case .modelsDir: return .root
        case .model: return .modelsDir
        case .next(let modelID): return .model(modelID)
        case .version(let id):
            guard let v = try store.version(id) else { throw .notFound("version \(id) is gone") }
            return .model(v.modelID)
        case .alias(let id):
            guard let a = try store.alias(id) else { throw .notFound("alias \(id) is gone") }
            return .model(a.modelID)
        default: return .root
        }
    }

    func open(_ node: Node, flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> Opened {
        switch node {
        case .next(let modelID):
            if flags.wantsWrite { throw StoreError(.notPermitted, "generated files are read-only") }
            return Opened(file: ContentFile(try nextContent(modelID)), directIO: true)
        case .version(let id):
            if !flags.wantsWrite { namespace.writer(for: node.inode)?.waitIfClosedEmpty() }
            guard let v = try store.version(id) else { throw .notFound("version \(id) is gone") }
            return try namespace.openUploaded(node, v, flags: flags, ctx) { () throws(StoreError) in
                try store.restartFailedVersion(id, by: ctx.actor)
            }
        default:
            throw StoreError(.isDirectory, "is a directory")
        }
    }

    /// A version (a temporary file when the name starts with `.`) in a model directory.
    func create(in parent: Node, name rawName: [UInt8], flags: OpenFlags, _ ctx: RequestContext) throws(StoreError) -> (Node, Opened) {
        guard case .model(let modelID) = parent else {
            if parent == .modelsDir {
                let shown = Names.printable(String(decoding: rawName, as: UTF8.self))
                throw StoreError(.notPermitted, "models/ holds model directories: mkdir models/\(shown) first")
            }
            throw StoreError(.notPermitted, "files can only be created in a model directory or in datasets/")
        }
        if rawName == Array(".next".utf8) { throw StoreError(.notPermitted, ".next is generated") }
        let upload: any FileUpload
        let owner = Ownership(uid: ctx.uid, gid: ctx.gid, mode: Ownership.fileMode(requested: ctx.mode ?? Ownership.defaultFileMode))
        if let scratch = String(validating: rawName, as: UTF8.self), Names.isScratch(scratch) {
            upload = try store.beginScratch(in: modelID, fileName: scratch, owner: owner, by: ctx.actor)
        } else {
            upload = try store.beginVersion(in: modelID, fileName: try Names.decode(rawName, what: "file name"), owner: owner, by: ctx.actor)
        }
        let node = Node.version(upload.version!.id)
        return (node, namespace.newWriter(node.inode, upload, ctx))
    }

    func mkdir(in parent: Node, name: String, _ ctx: RequestContext) throws(StoreError) -> Node {
        guard parent == .modelsDir else { throw StoreError(.notPermitted, "directories can only be created in models/ (one per model)") }
        try Names.validate(name, what: "model name")
        let owner = Ownership(uid: ctx.uid, gid: ctx.gid, mode: ctx.mode ?? Ownership.defaultModelMode)
        return .model(try store.createModel(named: name, type: .general, note: "", owner: owner, by: ctx.actor).id)
    }

    func remove(_ node: Node, named name: String, in parent: Node, directory: Bool, _ ctx: RequestContext) throws(StoreError) {
        switch (node, directory) {
        case (.model(let id), true):
            namespace.purge(try store.deleteModel(id, by: ctx.actor).purge)
        case (.version(let id), false):
            namespace.purge(try store.deleteVersion(id, by: ctx.actor).purge)
        case (.alias(let id), false):
            _ = try store.removeAlias(id, by: ctx.actor)
        case (.model, false): throw StoreError(.isDirectory, "\(Names.printable(name)) is a model directory: rmdir it")
        case (.version, true), (.next, true): throw StoreError(.notDirectory, "\(Names.printable(name)) is a file")
        default: throw StoreError(.notPermitted, "\(Names.printable(name)) cannot be removed")
        }
    }

    /// A model, or a version within its model: metadata only. An existing target is refused
    /// (`EEXIST`), never replaced; a version cannot move to another model (`EXDEV`).
    func rename(_ node: Node, from: Node, to: Node, newName: String, _ ctx: RequestContext) throws(StoreError) {
        switch (node, from, to) {
        case (.model(let id), .modelsDir, .modelsDir):
            _ = try store.renameModel(id, to: newName, by: ctx.actor)
        case (.version(let id), .model(let fromModel), .model(let toModel)):
            guard fromModel == toModel else { throw StoreError(.crossDevice, "a version cannot move to another model") }
            guard let v = try store.version(id) else { throw .notFound("the version is gone") }
            let (newVersion, format) = try Formats.splitVersion(newName)
            if v.isScratch {
                // An atomic writer's temporary file renamed onto the name it meant: now a version.
                _ = try store.adoptScratch(id, as: newVersion, format: format, by: ctx.actor)
                return
            }
            guard format == v.format else {
                throw StoreError(.invalidArgument, "a version keeps its format: \(v.fileName) cannot become \(Names.printable(newName))")
            }
            _ = try store.renameVersion(id, to: newVersion, by: ctx.actor)
        case (.alias(let id), .model(let fromModel), .model(let toModel)):
            guard fromModel == toModel else { throw StoreError(.crossDevice, "an alias cannot move to another model") }
            // Onto another alias: that one is replaced, in the same transaction (ln -sfn, mv link @name).
            _ = try store.renameAlias(id, to: newName, by: ctx.actor)
            namespace.services?.poke()
        case (.version, _, _), (.model, _, _), (.alias, _, _):
            throw StoreError(.crossDevice, "\(describe(node)) cannot move there")
        default:
            throw StoreError(.notPermitted, "\(describe(node)) cannot be renamed")
        }
    }

    func truncate(_ node: Node, to size: Int64, _ ctx: RequestContext) throws(StoreError) {
        try namespace.truncateUpload(node, to: size)
    }

    func xattrs(of node: Node) throws(StoreError) -> [(String, String)] {
        switch node {
        case .model(let id):
            guard let m = try store.model(id) else { throw .notFound("gone") }
            return namespace.common([("type", m.type.rawValue), ("note", m.note), ("created", m.created.formatted(.iso8601)),
                                     ("versions", "\(try store.versions(of: id).count)")])
        case .version(let id):
            guard let v = try store.version(id) else { throw .notFound("gone") }
            let (status, size) = namespace.now(node, status: v.status, size: v.size)
            var out = [("status", status.rawValue), ("size", "\(size)"), ("created", v.created.formatted(.iso8601)),
                       ("note", v.note), ("format", v.format)]
            if let sha = v.sha256 { out.append(("sha256", sha)) }
            if let e = v.error { out.append(("error", e)) }
            if let p = v.lineage.parentVersion { out.append(("parent_version", p)) }
            if let d = v.lineage.dataset { out.append(("dataset", d)) }
            if let j = v.lineage.job { out.append(("job", j)) }
            // The latest evaluation: all its numbers as one JSON object, and one xattr each.
            if let e = try store.evaluations(of: v.id).last {
                out.append(("metrics", Evaluation.json(e.metrics)))
                out += e.metrics.sorted { $0.key < $1.key }.map { ("metric." + $0.key, Evaluation.text($0.value)) }
                out.append(("metrics_dataset", e.dataset))
                if let job = e.job { out.append(("metrics_job", job)) }
            }
            if v.format == "safetensors" && v.status == .ready {
                out += TensorHeaders.xattrs(namespace.tensorHeader(of: v))
            }
            // What its view leaves out, or why it has none, on the file too.
            if v.hasArchiveView, let archive = try? namespace.archives.known(.version(v.id)), let e = archive.error {
                out.append(("archive_error", e))
            }
            return namespace.common(out)
        default:
            return []
        }
    }

    /// `user.modelfs.type` of a model, `user.modelfs.note` of a model or a version.
    func setxattr(_ node: Node, name: String, value: String, _ ctx: RequestContext) throws(StoreError) {
        switch (node, name) {
        case (.model(let id), Namespace.xattrPrefix + "type"):
            let type = try ModelType(parsing: value.trimmingCharacters(in: .whitespacesAndNewlines))
            _ = try store.setModel(id, type: type, note: nil, by: ctx.actor)
        case (.model(let id), Namespace.xattrPrefix + "note"):
            _ = try store.setModel(id, type: nil, note: value, by: ctx.actor)
        case (.version(let id), Namespace.xattrPrefix + "note"):
            guard let v = try store.version(id), let m = try store.model(v.modelID) else { throw .notFound("gone") }
            try v.checkMayAnnotate(uid: ctx.uid, defaultOwner: namespace.defaultOwner(file: true), model: m.name)
            _ = try store.setVersionNote(id, note: value, by: ctx.actor)
        default:
            if try xattrs(of: node).contains(where: { $0.0 == name }) { throw StoreError(.notPermitted, "\(name) is read-only") }
            throw StoreError(.notSupported, "only user.modelfs.type and user.modelfs.note can be set")
        }
    }

    func changeOwnership(_ node: Node, mode: UInt32?, uid: UInt32?, gid: UInt32?, lenient: Bool, _ ctx: RequestContext) throws(StoreError) {
        switch node {
        case .model(let id):
            _ = try store.changeOwnership(.model(id), mode: mode, uid: uid, gid: gid, defaultOwner: namespace.defaultOwner(file: false),
                                          by: ctx.actor)
        case .version(let id):
            let scratch = (try store.version(id))?.isScratch ?? false
            _ = try store.changeOwnership(.version(id), mode: (lenient || scratch) ? mode.map(Ownership.fileMode(requested:)) : mode,
                                          uid: uid, gid: gid, defaultOwner: namespace.defaultOwner(file: true), by: ctx.actor)
        default:
            try Namespace.keepOwnership(try attributes(of: node), mode: mode, uid: uid, gid: gid, describe(node))
        }
    }

    /// models/ and model directories take new entries; a version only until it is ready
    /// (its writer writes it; a failed one is replaced by a new copy).
    func acceptsWrites(_ node: Node) throws(StoreError) -> Bool {
        switch node {
        case .modelsDir, .model: return true
        case .version(let id): return try store.version(id).map { $0.status != .ready } ?? false
        default: return false
        }
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .model(let id): return "models/" + (((try? store.model(id)) ?? nil).map { Names.printable($0.name) } ?? "?")
        case .next(let id): return describe(.model(id)) + "/.next"
        case .alias(let id):
            guard let a = (try? store.alias(id)) ?? nil else { return "models/?/alias \(id)" }
            return describe(.model(a.modelID)) + "/" + Names.printable(a.name)
        case .version(let id):
            guard let v = (try? store.version(id)) ?? nil else { return "models/?/version \(id)" }
            return describe(.model(v.modelID)) + "/" + Names.printable(v.fileName)
        default: return "models"
        }
    }

    func nextContent(_ modelID: ModelID) throws(StoreError) -> [UInt8] {
        guard try store.model(modelID) != nil else { throw .notFound("model \(modelID) is gone") }
        return Array((Rules.nextVersion(after: try store.versions(of: modelID).map(\.name)) + "\n").utf8)
    }
}
